-- bench/ngx_ops.lua: the loop bench/ngx.sh times in both runtimes (the
-- same code in ringline-lua and in nginx + lua-nginx-module). Returns a
-- function run(o) with o = { re = <ngx.re or ringline.re>, dict = <a shared
-- dict>, workers = W, id = this worker, n = iterations, emit = fn(line) }.
-- Workers line up on the dictionary before each phase, so with 2 workers
-- both hammer it at once; each emits "RESULT <op> <worker> <ops/s>".
local ffi = require "ffi"
pcall(ffi.cdef, [[
struct bench_ts { long sec; long nsec; };
int clock_gettime(int, struct bench_ts *);
]])
local ts = ffi.new("struct bench_ts")
local function now()
  ffi.C.clock_gettime(1, ts)
  return tonumber(ts.sec) + tonumber(ts.nsec) * 1e-9
end

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
  line_up()
  local t0 = now()
  for _ = 1, n do
    local m = re.match(subject, regex, "jo")
    if not m then error("no match") end
  end
  o.emit(("RESULT re_match_jo %d %.0f"):format(o.id, n / (now() - t0)))

  line_up()
  t0 = now()
  for i = 1, n do
    dict:set(keys[i % 1000 + 1], value)
  end
  o.emit(("RESULT shdict_set %d %.0f"):format(o.id, n / (now() - t0)))

  line_up()
  t0 = now()
  for i = 1, n do
    if not dict:get(keys[i % 1000 + 1]) then error("missing") end
  end
  o.emit(("RESULT shdict_get %d %.0f"):format(o.id, n / (now() - t0)))
end
