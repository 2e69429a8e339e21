-- chat.lua: a line chat. Every line a client sends goes to every other
-- client of this worker, prefixed with the sender's number.
--
--   ringline-lua examples/chat.lua          (PORT=8080, BENCH_HOST=127.0.0.1)
--   then, in two terminals: nc 127.0.0.1 8080
--
-- What a client sees:
--   * welcome #1, 1 online          on connecting
--   * #2 joined / * #2 left         others coming and going
--   #2: hello                       a line from #2
local ringline = require "ringline"

local host = os.getenv("BENCH_HOST") or "127.0.0.1"
local port = tonumber(os.getenv("PORT") or "8080")

local members = {}      -- conn -> number, for everyone connected
local online, last = 0, 0

-- Never wait on a reader: a member whose unsent backlog is over the high
-- watermark is not reading its messages, and is disconnected instead of
-- slowing everyone else down (its own task then sees the close and leaves).
local function broadcast(from, msg)
  for conn in pairs(members) do
    if conn ~= from and not conn:send_nowait(msg) then
      conn:close("reset")
    end
  end
end

local function chat(conn)
  last = last + 1
  local me = last
  members[conn] = me
  online = online + 1
  conn:send(("* welcome #%d, %d online\n"):format(me, online))
  broadcast(conn, ("* #%d joined\n"):format(me))
  local prefix = ("#%d: "):format(me)
  for line in conn:lines() do
    broadcast(conn, prefix .. line .. "\n")
  end
  members[conn] = nil
  online = online - 1
  broadcast(conn, ("* #%d left\n"):format(me))
end

local addr = (host:find(":", 1, true) and "[" .. host .. "]" or host) .. ":" .. port
local lst = assert(ringline.listen(addr, chat))
local h, p = lst:getsockname()
print(("chat server listening on %s:%d"):format(h, p))
print(("try: nc %s %d   in two terminals, and type (Ctrl-C stops the server)"):format(h, p))
