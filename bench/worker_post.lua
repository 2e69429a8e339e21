-- worker_post.lua: what a message between two workers costs
-- (ringline.worker.post: copy into the target's inbox, MSG_RING doorbell,
-- the target's on_message task).
--
--   ringline-lua -w 2 bench/worker_post.lua [N]       (N = 200000)
--
-- one-way    worker 0 posts N 64-byte messages as fast as it can; worker 1
--            answers once it has all of them: messages per second.
-- ping-pong  one message back and forth, N/10 times: the round trip.
local ringline = require "ringline"
local H = require "ringline.host"
local N = tonumber(arg[1]) or 200000
-- DOORBELL=eventfd: post with the eventfd wake instead of a MSG_RING (to
-- compare the two doorbells of rl_worker_post)
local eventfd = os.getenv("DOORBELL") == "eventfd"
local function post(to, m)
  if eventfd then return H.rl_host_post(to, ringline.worker_id(), 16, m, #m, nil) == 0 end
  return ringline.worker.post(to, m)
end
local id = ringline.worker_id()
local msg = ("m"):rep(64)

if ringline.workers() ~= 2 then error("run with -w 2") end

if id == 1 then
  local got, done = 0, ringline.semaphore(0)
  ringline.worker.on_message(function(from, m)
    if m == "ping" then post(0, "pong") return end
    if m == "end" then done:post() return end
    got = got + 1
    if got == N then post(0, "all") end
  end)
  done:wait(600)
  return
end

local sema = ringline.semaphore(0)
ringline.worker.on_message(function(_, m) sema:post() end)
ringline.sleep(0.1)                       -- let worker 1 set its handler
local t0 = ringline.now()
for i = 1, N do
  assert(post(1, msg))
  if i % 256 == 0 then ringline.sleep(0) end   -- let the loop submit the doorbells
end
assert(sema:wait(600))
local t1 = ringline.now()
print(("doorbell %s\n"):format(eventfd and "eventfd" or "MSG_RING") .. ("one-way: %d messages in %.3f s: %.0f msg/s"):format(N, t1 - t0, N / (t1 - t0)))
local rounds = math.floor(N / 10)
t0 = ringline.now()
for _ = 1, rounds do
  post(1, "ping")
  sema:wait(10)
end
t1 = ringline.now()
print(("ping-pong: %d round trips in %.3f s: %.1f us per round trip"):format(
  rounds, t1 - t0, (t1 - t0) / rounds * 1e6))
ringline.worker.post(1, "end")
