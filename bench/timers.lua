-- bench/timers.lua: what 100k idle timers cost (issue 5). On demand.
--
--   build-rel/bindings/ringline-lua bench/timers.lua [N]      (default N = 100000)
--   or: luajit bench/timers.lua [N]    (from the repository root, against build/)
--
-- Measures, for N pending ringline.timer.at timers (due in an hour):
--   memory     the Lua heap (collectgarbage "count" after full collections)
--              and the process RSS, per timer; the same for N tasks each
--              sleeping an hour (a coroutine per sleeper), for comparison
--   arm/cancel time per timer.at and per h:cancel
--   loop       time per loop iteration (a task yielding with sleep(0):
--              each iteration is one round: poll, dispatch, resume) with no
--              timer pending and with the N idle timers pending
--   firing     N timers due within 0.1 s, each running an empty fn in its
--              own task: CPU time per fired timer
-- Prints a markdown table (one line per figure).
local ringline = require "ringline"
local ffi = require "ffi"

local N = tonumber(arg and arg[1]) or 100000

pcall(ffi.cdef, [[
  struct bench_ts { long sec; long nsec; };
  int bench_clock_gettime(int clk, struct bench_ts *ts) __asm__("clock_gettime");
]])
local tsb = ffi.new("struct bench_ts")
local function mono()
  ffi.C.bench_clock_gettime(1, tsb)
  return tonumber(tsb.sec) + tonumber(tsb.nsec) * 1e-9
end

local function rss_kb()
  local f = io.open("/proc/self/status")
  local s = f:read("*a")
  f:close()
  return tonumber(s:match("VmRSS:%s*(%d+)"))
end

local function heap_kb()
  collectgarbage("collect")
  collectgarbage("collect")
  return collectgarbage("count")
end

local rows = {}
local function row(what, value, unit)
  rows[#rows + 1] = ("| %s | %s | %s |"):format(what, value, unit)
end

-- Seconds per iteration of a loop that only yields (sleep(0)).
local function loop_cost(iters)
  local m0 = ringline.metrics().loop_iterations
  local t0 = mono()
  for _ = 1, iters do ringline.sleep(0) end
  local dt = mono() - t0
  return dt / iters, (ringline.metrics().loop_iterations - m0) / iters
end

local function main()
  local fn = function() end
  loop_cost(20000)                                  -- warm up (JIT)
  local idle_iter = loop_cost(200000)

  -- N idle timers
  local h0, r0 = heap_kb(), rss_kb()
  local hs = {}
  local t0 = mono()
  for i = 1, N do hs[i] = ringline.timer.at(3600 + i * 1e-6, fn) end
  local arm = (mono() - t0) / N
  local h1, r1 = heap_kb(), rss_kb()
  local busy_iter, polls = loop_cost(200000)
  assert(ringline.metrics().timers_active >= N)
  t0 = mono()
  for i = 1, N do hs[i]:cancel() end
  local cancel = (mono() - t0) / N
  hs = nil
  local after = ringline.metrics().timers_active

  -- N sleeping tasks, for comparison
  local h2, r2 = heap_kb(), rss_kb()
  local ts = {}
  for i = 1, N do ts[i] = ringline.spawn(ringline.sleep, 3600) end
  ringline.sleep(0)                                 -- they all park
  local h3, r3 = heap_kb(), rss_kb()
  for i = 1, N do ts[i]:cancel() end
  for i = 1, N do ts[i]:join() end
  ts = nil

  -- N timers firing within 0.1 s
  local fired = 0
  local count = function() fired = fired + 1 end
  local c0 = os.clock()
  for i = 1, N do ringline.timer.at(0.1 * i / N, count) end
  while fired < N do ringline.sleep(0.01) end
  local fire = (os.clock() - c0) / N

  row("timers", N, "")
  row("Lua heap per idle timer", ("%.0f"):format((h1 - h0) * 1024 / N), "bytes")
  row("RSS per idle timer (Lua heap + core heap)", ("%.0f"):format((r1 - r0) * 1024 / N), "bytes")
  row("Lua heap per sleeping task (coroutine), for comparison", ("%.0f"):format((h3 - h2) * 1024 / N), "bytes")
  row("RSS per sleeping task, for comparison", ("%.0f"):format((r3 - r2) * 1024 / N), "bytes")
  row("timer.at", ("%.2f"):format(arm * 1e6), "us per call")
  row("h:cancel", ("%.2f"):format(cancel * 1e6), "us per call")
  row("loop iteration, no timer pending", ("%.2f"):format(idle_iter * 1e6), "us")
  row(("loop iteration, %d idle timers pending"):format(N), ("%.2f"):format(busy_iter * 1e6), "us")
  row("loop iterations per sleep(0)", ("%.2f"):format(polls), "")
  row("timers_active after cancelling them all", after, "")
  row("fired timer (fn in a new task), CPU", ("%.2f"):format(fire * 1e6), "us per timer")
  print("| figure | value | unit |")
  print("|---|---|---|")
  print(table.concat(rows, "\n"))
end

if ringline.current() then
  main()                                            -- the host: the script is the main task
else
  package.path = "./lua/?.lua;./lua/?/init.lua;./bindings/?.lua;" .. package.path
  ringline.run(main)
end
