-- tls_bulk.lua: a TLS server answering every GET with the same 1 MiB body
-- (keep-alive), for bench/tls.sh's bulk measurement: the TLS record layer's
-- cost per byte, not the parser's.
--
--   CERT=... KEY=... PORT=8443 ringline-lua bench/tls_bulk.lua
local ringline = require "ringline"

local cert, key = assert(os.getenv("CERT"), "CERT"), assert(os.getenv("KEY"), "KEY")
local port = tonumber(os.getenv("PORT") or "8443")
local BODY = string.rep("0123456789abcdef", 65536)
local HEAD = "HTTP/1.1 200 OK\r\nServer: ringline\r\nContent-Type: application/octet-stream\r\n"
          .. "Content-Length: " .. #BODY .. "\r\n\r\n"

local lst = assert(ringline.listen("127.0.0.1:" .. port, function(c)
  while true do
    local line = c:receive("*l")
    if not line then return end
    repeat
      local h = c:receive("*l")
      if not h then return end
    until h == ""
    if not c:send(HEAD, BODY) then return end
  end
end, { ssl = { cert = cert, key = key, alpn = { "http/1.1" } } }))
local _, p = lst:getsockname()
print("tls_bulk listening on https://127.0.0.1:" .. p .. "/")
