-- bench/resty_redis.lua: redis-benchmark-shaped load through lua-resty-redis
-- (unchanged; not in this repository: RESTY_REDIS names its lib/
-- directory), the same code under ringline-lua (require "ringline.ngx")
-- and under nginx + lua-nginx-module (bench/resty_redis.sh loads it from
-- init_worker_by_lua). CLIENTS light threads each run SET and GET on their
-- own key in a loop on a pooled connection, for DURATION seconds; the result line
-- counts requests, wall time and this process's CPU time (getrusage), the
-- figure compared being requests per client CPU-second.
--
--   RESTY_REDIS=/path/lua-resty-redis/lib REDIS_PORT=6379 CLIENTS=50 DURATION=5 \
--     build/bindings/ringline-lua bench/resty_redis.lua
local ffi = require "ffi"

pcall(ffi.cdef, [[
struct rl_bench_rusage { long utime_s, utime_us, stime_s, stime_us; long rest[14]; };
int getrusage(int who, struct rl_bench_rusage *ru);
]])

local function cpu()
  local r = ffi.new("struct rl_bench_rusage")
  ffi.C.getrusage(0, r)
  return tonumber(r.utime_s + r.stime_s) + tonumber(r.utime_us + r.stime_us) / 1e6
end

local M = {}

-- Runs the load; returns the result line.
function M.run(port, clients, seconds)
  local redis = require "resty.redis"
  local n, stop, errs = 0, false, 0
  local c0, t0 = cpu(), ngx.now()
  local threads = {}
  for i = 1, clients do
    threads[i] = ngx.thread.spawn(function()
      local key = "bench:" .. i
      while not stop do
        local red = redis:new()
        red:set_timeouts(1000, 1000, 1000)
        local ok, err = red:connect("127.0.0.1", port, { pool_size = clients })
        if not ok then
          errs = errs + 1
          ngx.log(ngx.ERR, "connect: ", err)
          return
        end
        for _ = 1, 100 do
          if not red:set(key, "value") or not red:get(key) then errs = errs + 1 end
          n = n + 2
        end
        red:set_keepalive(10000, clients)
      end
    end)
  end
  ngx.sleep(seconds)
  stop = true
  for i = 1, clients do ngx.thread.wait(threads[i]) end
  ngx.update_time()
  local c, t = cpu() - c0, ngx.now() - t0
  return ("requests %d wall %.3f cpu %.3f errors %d req_per_cpu_s %.0f req_per_s %.0f"):format(
    n, t, c, errs, n / c, n / t)
end

-- Under ringline-lua: run from the environment and print the line.
-- (nginx has its ngx already and calls M.run from a timer.)
if not rawget(_G, "ngx") then
  local dir = os.getenv("RESTY_REDIS") or error("RESTY_REDIS: lua-resty-redis's lib/ directory")
  package.path = dir .. "/?.lua;" .. package.path
  require "ringline.ngx"
  print(M.run(tonumber(os.getenv("REDIS_PORT") or 6379), tonumber(os.getenv("CLIENTS") or 50),
              tonumber(os.getenv("DURATION") or 5)))
end

return M
