-- bench/ngx_ops.lua: the loop bench/ngx.sh times in both runtimes (the
-- same code in ringline-lua and in nginx + lua-nginx-module). Returns a
-- function run(o) with o = { re = <ngx.re or ringline.re>, dict = <a shared
-- dict>, workers = W, id = this worker, n = iterations, emit = fn(line) }.
-- Workers line up on the dictionary before each phase, so with 2 workers
-- both hammer it at once; each emits "RESULT <op> <worker> <ops/s> <ops
-- per CPU-second>" (wall clock and the thread's own CPU time: on a loaded
-- machine the second is the steadier; under lock contention a worker that
-- sleeps on the mutex spends less CPU, so read both).
local ffi = require "ffi"
pcall(ffi.cdef, [[
struct bench_ts { long sec; long nsec; };
int clock_gettime(int, struct bench_ts *);
]])
local ts = ffi.new("struct bench_ts")
local function clock(id)
  ffi.C.clock_gettime(id, ts)
  return tonumber(ts.sec) + tonumber(ts.nsec) * 1e-9
end
local function now() return clock(1) end        -- CLOCK_MONOTONIC
local function cpu() return clock(3) end        -- CLOCK_THREAD_CPUTIME_ID

return function(o)
  local re, dict, n, W = o.re, o.dict, o.n, o.workers
  local keys = {}
  for i = 1, 1000 do keys[i] = "key:" .. i end
  local value = ("v"):rep(64)

  -- every worker arrives, then all start (a spin on the dictionary)
  local phase = 0
  local function line_up()
    phase = phase + 1
    local k = "ready" .. phase
    dict:incr(k, 1, 0)
    while (dict:get(k) or 0) < W do end
  end

  local subject = "GET /api/v1/users/12345/orders?limit=10 HTTP/1.1"
  local regex = [[^(\w+) /api/v1/users/(\d+)/(\w+)\?limit=(\d+) HTTP/(\d)\.(\d)$]]
  assert(re.match(subject, regex, "jo")[2] == "12345")
  local function report(op, t0, c0)
    o.emit(("RESULT %s %d %.0f %.0f"):format(op, o.id, n / (now() - t0), n / (cpu() - c0)))
  end

  line_up()
  local t0, c0 = now(), cpu()
  for _ = 1, n do
    local m = re.match(subject, regex, "jo")
    if not m then error("no match") end
  end
  report("re_match_jo", t0, c0)

  line_up()
  t0, c0 = now(), cpu()
  for i = 1, n do
    dict:set(keys[i % 1000 + 1], value)
  end
  report("shdict_set", t0, c0)

  line_up()
  t0, c0 = now(), cpu()
  for i = 1, n do
    if not dict:get(keys[i % 1000 + 1]) then error("missing") end
  end
  report("shdict_get", t0, c0)
end
