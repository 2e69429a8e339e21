-- udp_echo.lua: a UDP echo server. Every datagram is sent back to its
-- sender, whole.
--
--   ringline-lua examples/udp_echo.lua      (PORT=8082, BENCH_HOST=127.0.0.1)
--   then: nc -u 127.0.0.1 8082   (type lines, each comes back)
--
-- PORT=0 picks a free port; the line printed at start says which.
local ringline = require "ringline"

local host = os.getenv("BENCH_HOST") or "127.0.0.1"
local port = tonumber(os.getenv("PORT") or "8082")

local u = ringline.udp()
assert(u:bind(host, port))
local h, p = u:getsockname()
print(("udp echo listening on %s:%d"):format(h, p))
print(("try: nc -u %s %d   (type a line, it comes back; Ctrl-C stops the server)"):format(h, p))

-- One datagram at a time: receivefrom waits only when none is queued, and
-- sendto copies, so the next datagram is taken at once. A datagram larger
-- than 64 KiB cannot exist, so none is truncated here.
while true do
  local data, ip, from = u:receivefrom()
  if not data then
    if ip ~= "timeout" then break end   -- closed (the run is stopping) or failed
  else
    u:sendto(ip, from, data)
  end
end
