-- proxy.lua: a TCP proxy. Every connection accepted is relayed, byte for
-- byte and in both directions, to UPSTREAM.
--
--   UPSTREAM=127.0.0.1:8080 ringline-lua examples/proxy.lua   (PORT=8081, BENCH_HOST=127.0.0.1)
--   then: nc 127.0.0.1 8081   (talks to whatever listens on 127.0.0.1:8080)
--
-- UPSTREAM is "host:port" (a name, IPv4 or "[v6]:port") or "unix:/path".
-- PORT=0 picks a free port; the line printed at start says which.
local ringline = require "ringline"

local host = os.getenv("BENCH_HOST") or "127.0.0.1"
local port = tonumber(os.getenv("PORT") or "8081")
local upstream = os.getenv("UPSTREAM") or "127.0.0.1:8080"

local up_host, up_port
if upstream:sub(1, 5) == "unix:" then
  up_host = upstream
else
  up_host, up_port = upstream:match("^%[(.+)%]:(%d+)$")
  if not up_host then up_host, up_port = upstream:match("^(.+):(%d+)$") end
  up_port = tonumber(up_port)
  if not up_host or not up_port then
    error("UPSTREAM must be host:port, [v6]:port or unix:/path, not " .. upstream, 0)
  end
end

-- One direction: whatever arrives on src goes to dst. send_from hands over
-- what is buffered without waiting for more and yields while dst's peer is
-- slow to read, and meanwhile src is not read: that is the backpressure.
-- When src's peer half-closes (EOF: "closed"), dst is half-closed too after
-- the queued bytes, so the far end sees the same EOF. Any other failure
-- (a reset, a send error) resets both sides, which also ends the other
-- direction's pump.
local function pump(src, dst)
  while true do
    -- one copy from src's receive buffer into dst's send queue
    local n, err, side = dst:send_from(src)
    if not n then
      if side == "receive" and err == "closed" then
        dst:shutdown("send")
        return true
      end
      src:close("reset")
      dst:close("reset")
      return nil, err
    end
  end
end

local function relay(client)
  -- Opened in this handler's task, so owned by it: both connections close
  -- (after flushing) when the handler returns.
  local up, err = ringline.connect(up_host, up_port, { timeout = 10 })
  if not up then
    ringline.log(ringline.WARN, "proxy: upstream ", upstream, ": ", err)
    client:close("reset")
    return
  end
  local back = ringline.spawn(pump, up, client)   -- upstream -> client
  pump(client, up)                                -- client -> upstream
  back:join()
end

local addr = (host:find(":", 1, true) and "[" .. host .. "]" or host) .. ":" .. port
local lst = assert(ringline.listen(addr, relay))
local h, p = lst:getsockname()
print(("proxy listening on %s:%d -> %s"):format(h, p, upstream))
print(("try: nc %s %d   (relayed to %s; Ctrl-C stops the proxy)"):format(h, p, upstream))
