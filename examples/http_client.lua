-- http_client.lua: fetch one URL over HTTP/1.1 and print the body.
--
--   ringline-lua examples/http_client.lua HOST PORT [PATH]
--   e.g. with examples/http_hello.lua running:
--        ringline-lua examples/http_client.lua 127.0.0.1 8080 /
--
-- Exit status 0 when the server answered 200 (the body is on stdout), 1
-- otherwise (the reason on stderr). HOST may be a name (resolved without
-- blocking the loop), an IPv4 or IPv6 address. The body may come with a
-- Content-Length, chunked, or until the server closes.
local ringline = require "ringline"

local host, port, path = arg[1], tonumber(arg[2]), arg[3] or "/"
if not host or not port then
  io.stderr:write("usage: ringline-lua examples/http_client.lua HOST PORT [PATH]\n")
  error("missing arguments", 0)
end

local function fail(what, err)
  error(("http_client: %s: %s"):format(what, tostring(err)), 0)
end

local conn, err = ringline.connect(host, port, { timeout = 10 })
if not conn then fail("connect to " .. host .. ":" .. port, err) end
conn:settimeout(10000)

local hosthdr = host:find(":", 1, true) and "[" .. host .. "]" or host
local ok, serr = conn:send("GET ", path, " HTTP/1.1\r\nHost: ", hosthdr, ":", port,
                           "\r\nUser-Agent: ringline-http-client\r\nConnection: close\r\n\r\n")
if not ok then fail("send", serr) end

local status, rerr = conn:receive("*l")
if not status then fail("status line", rerr) end
local code = tonumber(status:match("^HTTP/1%.%d (%d%d%d)"))
if not code then fail("status line", status) end

local length, chunked
while true do
  local line, herr = conn:receive("*l")
  if not line then fail("headers", herr) end
  if line == "" then break end
  local name, value = line:match("^([^:]+):%s*(.-)%s*$")
  if name then
    name = name:lower()
    if name == "content-length" then
      -- decimal digits only (no sign, "0x" or exponent), at most 15 of them
      -- (exact in a double); a repeat must say the same
      local v = #value <= 15 and value:match("^%d+$") and tonumber(value)
      if not v or (length and v ~= length) then fail("headers", "bad Content-Length: " .. line) end
      length = v
    end
    if name == "transfer-encoding" then chunked = value:lower() ~= "identity" end
  end
end
-- Chunked: lines "<hex size>[;extensions]", each followed by that many
-- bytes and CRLF, until a size of 0; then trailer lines up to an empty one.
local MAX_CHUNK = 1024 * 1024 * 1024
local function receive_chunked()
  local parts = {}
  while true do
    local line, lerr = conn:receive("*l")
    if not line then return nil, lerr end
    local hex = line:match("^(%x+)%s*;?")
    local size = hex and #hex <= 8 and tonumber(hex, 16)
    if not size or size > MAX_CHUNK then return nil, "bad chunk size line: " .. line end
    if size == 0 then
      repeat
        line, lerr = conn:receive("*l")
        if not line then return nil, lerr end
      until line == ""
      return table.concat(parts)
    end
    local data, derr = conn:receive(size)
    if not data then return nil, derr end
    parts[#parts + 1] = data
    line, lerr = conn:receive("*l")
    if line ~= "" then return nil, lerr or "chunk data not followed by CRLF" end
  end
end

local body, berr
if chunked then
  body, berr = receive_chunked()
elseif length then
  body, berr = conn:receive(length)
else
  body, berr = conn:receive("*a")      -- until the server closes
end
if not body then fail("body", berr) end
conn:close()

io.write(body, "\n")
if code ~= 200 then fail("status", status) end
