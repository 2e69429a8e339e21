-- bench/reload.lua: requests lost during reloads and rolling restarts under
-- HTTP keep-alive load, and the time from SIGHUP to the new code answering.
-- Run by bench/reload.sh (which says how); not a test.
--
--   luajit bench/reload.lua reload  REQUESTS CLIENTS WORKERS
--   luajit bench/reload.lua rolling REQUESTS CLIENTS WORKERS
--
-- reload: one instance; every REQUESTS/10 answered requests the script on
-- disk gets a new body and the host a SIGHUP; the time from the signal to
-- the first answer carrying the new body is recorded.
-- rolling: two instances behind haproxy (deploy/haproxy/haproxy.cfg's
-- settings); they are stopped (SIGTERM) and started again one after the
-- other, over and over, until REQUESTS were answered.
-- A request is lost unless it was answered, or met a reused keep-alive
-- connection closed before any answer and was sent again (RFC 9112 9.3.1;
-- counted as "retried"): spec/hostops.lua's load.
local root = debug.getinfo(1, "S").source:match("^@(.*)/bench/[^/]+$") or "."
if root:sub(1, 1) ~= "/" then root = os.getenv("PWD") .. "/" .. root end
package.path = root .. "/spec/?.lua;" .. root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;"
  .. root .. "/bindings/?.lua;" .. package.path
local ringline = require "ringline"
local support = require "support"
local ops = require "hostops"

local mode, total, clients, workers = arg[1], tonumber(arg[2] or 100000), tonumber(arg[3] or 16),
  tonumber(arg[4] or 1)
assert(mode == "reload" or mode == "rolling", "usage: reload|rolling REQUESTS CLIENTS WORKERS")
local LIMIT = 3600
local function dbg(...) io.stderr:write(table.concat({...}, " "), "\n") end

local function pct(t, p)
  if #t == 0 then return 0 end
  table.sort(t)
  return t[math.max(1, math.ceil(#t * p))]
end

local function report(stats, extra)
  print(("%s: requests %d, lost %d, retried %d%s"):format(mode, stats.ok, stats.fail,
    stats.retried, extra or ""))
  if stats.fail > 0 then print("  last failure: " .. tostring(stats.why)) end
end

if mode == "reload" then
  local port = ops.free_port()
  local path = ops.file(ops.http_script("v0"))
  local srv, pid = ops.spawn(path, "127.0.0.1:" .. port, "-w " .. workers .. " --no-pin", nil, LIMIT)
  local times = {}
  local stats = ringline.run({ timeout = LIMIT }, function()
    local stats, stop = ops.load(port, clients, { http = true })
    local step = math.max(1000, math.floor(total / 10))
    local v = 0
    while stats.ok < total do
      local n = stats.ok
      assert(support.eventually(function() return stats.ok >= n + step end, 60), "load stalled")
      v = v + 1
      ops.write(path, ops.http_script("v" .. v))
      local t0 = ringline.now()
      ops.kill(pid, "HUP")
      assert(support.eventually(function() return stats.first["v" .. v] ~= nil end, 30),
        "reload " .. v .. " never answered")
      times[#times + 1] = (stats.first["v" .. v] - t0) * 1000
    end
    stop()
    return stats
  end)
  srv:stop()
  report(stats, (", reloads %d, SIGHUP to new code: median %.1f ms, max %.1f ms"):format(
    #times, pct(times, 0.5), pct(times, 1.0)))
else
  local front, pa, pb = ops.free_port(), ops.free_port(), ops.free_port()
  local cfg = ops.file(([[
global
  maxconn 4096
defaults
  mode http
  timeout connect 1s
  timeout client 30s
  timeout server 30s
  retries 3
  option redispatch 1
  retry-on all-retryable-errors
  http-reuse safe
  default-server inter 100ms fall 1 rise 1
frontend front
  bind 127.0.0.1:%d
  default_backend ringline
backend ringline
  balance roundrobin
  server a 127.0.0.1:%d check
  server b 127.0.0.1:%d check
]]):format(front, pa, pb), ".cfg")
  local ha = ops.proc.spawn("haproxy -db -f " .. ops.proc.quote(cfg), LIMIT)
  local function instance(name, port)
    return ops.spawn(ops.file(ops.http_script(name)), "127.0.0.1:" .. port,
      "-w " .. workers .. " --no-pin --drain-timeout 2", nil, LIMIT)
  end
  local inst = { instance("a0", pa), instance("b0", pb) }
  local restarts = 0
  local stats = ringline.run({ timeout = LIMIT }, function()
    assert(support.eventually(function()
      local c = ringline.connect("127.0.0.1", front, { timeout = 1 })
      if c then c:close() end
      return c ~= nil
    end, 10), "haproxy listens")
    dbg("haproxy up")
    local stats, stop = ops.load(front, clients, { http = true })
    local gen = 0
    while stats.ok < total do
      gen = gen + 1
      for i, name in ipairs { "a", "b" } do
        dbg("stop", name, stats.ok, stats.fail, tostring(stats.why)); inst[i]:stop(); dbg("stopped")
        local tag = name .. gen
        inst[i] = instance(tag, i == 1 and pa or pb)
        restarts = restarts + 1
        assert(support.eventually(function() return (stats.seen[tag] or 0) > 100 end, 30),
          tag .. " never answered")
      end
    end
    dbg("loop done")
    stop()
    dbg("clients stopped")
    return stats
  end)
  dbg("run done")
  for _, s in ipairs(inst) do s:stop() end
  dbg("inst stopped")
  ha:stop()
  dbg("ha stopped")
  report(stats, (", restarts %d"):format(restarts))
end
ops.cleanup()
