-- luv.lua: the luv (libuv) peer of bench/udp.sh: a UDP echo on one
-- uv_udp handle. recv_start hands each datagram to the callback, which
-- sends it back to its sender; libuv tries the send at once and queues
-- it only when the socket is full.
--
--   PORT=18090 BENCH_HOST=127.0.0.1 luajit bench/udp_peers/luv.lua
local uv = require "luv"

local host = os.getenv("BENCH_HOST") or "127.0.0.1"
local port = tonumber(os.getenv("PORT") or "8082")

local udp = uv.new_udp()
assert(udp:bind(host, port))
udp:recv_start(function(err, data, addr)
  -- data == nil with no error: libuv found nothing more to read
  if err or not data or not addr then return end
  udp:send(data, addr.ip, addr.port)
end)
-- SIGTERM: stop the loop, so the process exits 0 like the other peers
local sig = uv.new_signal()
sig:start("sigterm", function() udp:close() sig:close() uv.stop() end)
print(("luv udp echo listening on %s:%d"):format(host, port))
io.stdout:flush()
uv.run()
