-- bench/http_lua_cost.lua: the Lua cost of one request through ringline.http,
-- without the kernel: the server's request loop (http_server.serve) runs on a
-- mock connection whose buffer already holds N pipelined hello requests (as
-- wrk sends them), answering each with the hello of
-- examples/http_module_hello.lua. Prints ns per request (CPU time).
--   ringline-lua bench/http_lua_cost.lua [N]
local ringline = require "ringline"
local ffi = require "ffi"
local server = require "ringline.http_server"

local N = tonumber(arg and arg[1]) or 200000
local all = ("GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n"):rep(N)
local buf = ffi.new("uint8_t[?]", #all)
ffi.copy(buf, all, #all)
local io = ffi.new("struct { const uint8_t *rdata; uint32_t rlen; }")
io.rdata, io.rlen = buf, #all
local off, sent = 0, 0

-- what http_server uses of a connection
local conn = { io = io, closed = false, reading = false }
function conn.view()
  if io.rlen == 0 then return nil, "closed" end
  return io.rdata, io.rlen
end
function conn.consume(_, n)
  off = off + n
  io.rdata, io.rlen = buf + off, #all - off
  return true
end
function conn.send(_, x) sent = sent + #x; return true end
function conn.shutdown() end

local cfg = { max_body_bytes = 1048576, max_header_bytes = 8192, header_timeout = 10000,
              keepalive_timeout = 60000 }
ringline.spawn(function()
  local t0 = os.clock()
  server.serve(conn, cfg, function(_, res)
    res:header("Content-Type", "text/plain")
    res:finish("Hello, World!")
  end)
  print(("ringline.http: %.0f ns of Lua per request (%d requests, %d bytes answered)")
    :format((os.clock() - t0) / N * 1e9, N, sent))
end)
