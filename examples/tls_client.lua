-- tls_client.lua: fetch one URL over HTTPS, print the body, and say what
-- TLS negotiated.
--
--   ringline-lua examples/tls_client.lua HOST [PORT] [PATH]    (PORT 443, PATH /)
--   e.g. with examples/https_hello.lua running (it prints its CAFILE):
--        CAFILE=/tmp/ringline-https-hello.N/cert.pem \
--          ringline-lua examples/tls_client.lua 127.0.0.1 8443 /
--
-- The server's certificate is verified against CAFILE, or the system store
-- without it, and its name against HOST (SERVER_NAME= to check another);
-- VERIFY=0 turns that off. The protocol, cipher, ALPN choice and the
-- server's subject go to stderr, the body to stdout. Exit status 0 when
-- the server answered 200, 1 otherwise (the reason on stderr).
local ringline = require "ringline"

local host, port, path = arg[1], tonumber(arg[2] or "443"), arg[3] or "/"
if not host or not port then
  io.stderr:write("usage: ringline-lua examples/tls_client.lua HOST [PORT] [PATH]\n")
  error("missing arguments", 0)
end

local function fail(what, err)
  error(("tls_client: %s: %s"):format(what, tostring(err)), 0)
end

local conn, err = ringline.connect(host, port, { timeout = 10, ssl = {
  ca = os.getenv("CAFILE"), server_name = os.getenv("SERVER_NAME"),
  verify = os.getenv("VERIFY") ~= "0", alpn = { "http/1.1" },
} })
if not conn then fail("connect to " .. host .. ":" .. port, err) end
conn:settimeout(10000)

local info = conn:sslinfo()
io.stderr:write(("tls_client: %s %s, alpn %s, server %s (%s)\n"):format(
  info.protocol, info.cipher, tostring(info.alpn), tostring(info.peer_subject),
  info.peer_verified and "verified" or "not verified"))

local hosthdr = host:find(":", 1, true) and "[" .. host .. "]" or host
local ok, serr = conn:send("GET ", path, " HTTP/1.1\r\nHost: ", hosthdr, ":", port,
                           "\r\nUser-Agent: ringline-tls-client\r\nConnection: close\r\n\r\n")
if not ok then fail("send", serr) end

local status, rerr = conn:receive("*l")
if not status then fail("status line", rerr) end
local code = tonumber(status:match("^HTTP/1%.%d (%d%d%d)"))
if not code then fail("status line", status) end
local length
while true do
  local line, herr = conn:receive("*l")
  if not line then fail("headers", herr) end
  if line == "" then break end
  local v = line:match("^[Cc]ontent%-[Ll]ength:%s*(%d+)%s*$")
  if v then length = tonumber(v) end
end
-- a Content-Length, or the body until the server closes (no chunked: this
-- asks with Connection: close, and https_hello answers with a length)
local body, berr
if length then body, berr = conn:receive(length) else body, berr = conn:receive("*a") end
if not body then fail("body", berr) end
conn:close()
io.stdout:write(body)
if code ~= 200 then fail("status", status) end
