-- echo.lua: a TCP echo server. Every byte received is sent back, in order.
--
--   ringline-lua examples/echo.lua          (PORT=8080, BENCH_HOST=127.0.0.1)
--   then: nc 127.0.0.1 8080   (type lines, they come back)
--
-- PORT=0 picks a free port; the line printed at start says which.
local ringline = require "ringline"

local host = os.getenv("BENCH_HOST") or "127.0.0.1"
local port = tonumber(os.getenv("PORT") or "8080")

-- One task per connection. send_from moves whatever arrived from the
-- connection's receive buffer into its own send queue (one copy, no Lua
-- string), waiting only when nothing is buffered; it yields while the peer
-- is slow to read (above the send high watermark), which is the
-- backpressure: this connection stops reading until its peer catches up.
local function echo(conn)
  while conn:send_from(conn) do end     -- ends when closed, reset or failed
end

local addr = (host:find(":", 1, true) and "[" .. host .. "]" or host) .. ":" .. port
local lst = assert(ringline.listen(addr, echo))
local h, p = lst:getsockname()
print(("echo server listening on %s:%d"):format(h, p))
print(("try: nc %s %d   (type a line, it comes back; Ctrl-C stops the server)"):format(h, p))
