-- chat.lua: a line chat. Every line a client sends goes to every other
-- client, prefixed with the sender's number - across all workers.
--
--   ringline-lua examples/chat.lua          (PORT=8080, BENCH_HOST=127.0.0.1)
--   ringline-lua -w 2 examples/chat.lua     (two workers, one port)
--   then, in two terminals: nc 127.0.0.1 8080
--
-- What a client sees:
--   * welcome #1, 1 online          on connecting (", on worker N" with -w > 1)
--   * #2 joined / * #2 left         others coming and going
--   #2: hello                       a line from #2
--
-- With several workers each one listens on the same port (SO_REUSEPORT, the
-- kernel spreads the clients) and has its own members; a line is written to
-- this worker's members directly and posted to the other workers, which
-- write it to theirs (ringline.worker.broadcast / on_message). Give a fixed
-- PORT then: with PORT=0 every worker would pick a port of its own.
local ringline = require "ringline"

local host = os.getenv("BENCH_HOST") or "127.0.0.1"
local port = tonumber(os.getenv("PORT") or "8080")

local id, workers = ringline.worker_id(), ringline.workers()
local members = {}      -- conn -> number, for everyone connected to this worker
local here, there = 0, 0   -- members online on this worker, on the others
local last = 0

-- Never wait on a reader: a member whose unsent backlog is over the high
-- watermark is not reading its messages, and is disconnected instead of
-- slowing everyone else down (its own task then sees the close and leaves).
local function deliver(from, msg)
  for conn in pairs(members) do
    if conn ~= from and not conn:send_nowait(msg) then
      conn:close("reset")
    end
  end
end

-- To this worker's members and to every other worker's. The first byte
-- tells the others how their count of remote members changes.
local function broadcast(from, change, msg)
  deliver(from, msg)
  if workers > 1 then ringline.worker.broadcast(change .. msg) end
end

ringline.worker.on_message(function(_, m)
  local change = m:sub(1, 1)
  if change == "+" then there = there + 1 elseif change == "-" then there = there - 1 end
  deliver(nil, m:sub(2))
end)

local function chat(conn)
  last = last + 1
  -- unique over all workers: worker i numbers i+1, i+1+workers, ...
  local me = (last - 1) * workers + id + 1
  members[conn] = me
  here = here + 1
  conn:send(("* welcome #%d, %d online%s\n"):format(me, here + there,
    workers > 1 and ", on worker " .. id or ""))
  broadcast(conn, "+", ("* #%d joined\n"):format(me))
  local prefix = ("#%d: "):format(me)
  for line in conn:lines() do
    broadcast(conn, "=", prefix .. line .. "\n")
  end
  members[conn] = nil
  here = here - 1
  broadcast(conn, "-", ("* #%d left\n"):format(me))
end

local addr = (host:find(":", 1, true) and "[" .. host .. "]" or host) .. ":" .. port
local lst = assert(ringline.listen(addr, chat))
local h, p = lst:getsockname()
if workers > 1 then
  print(("chat server (worker %d of %d) listening on %s:%d"):format(id, workers, h, p))
else
  print(("chat server listening on %s:%d"):format(h, p))
end
if id == 0 then
  print(("try: nc %s %d   in two terminals, and type (Ctrl-C stops the server)"):format(h, p))
end
