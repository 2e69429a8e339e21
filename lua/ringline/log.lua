-- ringline.log: leveled logging, tagged with the worker id.
--
-- The levels use nginx's numbers (ERR 4 .. DEBUG 8) so code written against
-- ngx.log reads the same. Arguments are concatenated without separators, as
-- ngx.log does. Logging is not a hot path: it allocates freely.
--
-- Where lines go: outside the host, stderr (a blocking write). In the host,
-- the worker's bounded buffer, which the host's writer thread writes to the
-- log (--log-file, else stderr; bindings/host/logw.c): a line never blocks
-- the worker, and one that finds the buffer full is dropped and counted
-- (ringline_log_dropped_total). The host also says the format: text (the
-- line below) or json (--log-format json: one object a line with time,
-- level, worker, msg and caller), and the level (--log-level).
local ffi = require "ffi"
-- the host's settings, inside the host (ringline.host says whether it is)
local H = require "ringline.host"
local hostinfo = H and require "ringline.hostinfo" or nil

local select, tostring, type = select, tostring, type
local concat = table.concat
local os_date = os.date

local M = {}

M.ERR, M.WARN, M.NOTICE, M.INFO, M.DEBUG = 4, 5, 6, 7, 8

local names = { [4] = "error", [5] = "warn", [6] = "notice", [7] = "info", [8] = "debug" }

-- Messages above this level are dropped. Process-wide on purpose: in the
-- host every worker has its own VM (and so its own copy), and a second
-- ringline.run in one process should keep the setting.
local threshold = M.INFO

-- RINGLINE_LOG_LEVEL: a level name (any case) or its number 4..8. Anything
-- else is reported (below, once the sink exists) and INFO kept.
local bad_env
do
  local env = os.getenv("RINGLINE_LOG_LEVEL")
  if env and env ~= "" then
    local lv = tonumber(env) or M[env:upper()]
    if type(lv) == "number" and names[lv] then threshold = lv else bad_env = env end
  end
end

M.worker_id = hostinfo and tonumber(hostinfo.worker_id) or 0
M.workers = hostinfo and tonumber(hostinfo.workers) or 1

-- In the host: its format and level (the level: --log-level, else
-- RINGLINE_LOG_LEVEL as read above, the same rule).
local json = false
if H then
  local buf = ffi.new("char[16]")
  threshold = tonumber(H.rl_host_log_config(buf, 16))
  json = ffi.string(buf) == "json"
end
M.json = json

-- the host's buffer of this worker's slot (see ringline.metric)
local WID = hostinfo and tonumber(hostinfo.slot) or M.worker_id
local default_sink
if H then
  default_sink = function(line) H.rl_host_log(WID, line, #line) end
else
  default_sink = function(line) io.stderr:write(line) end
end

-- The sink is replaceable for tests (spec code captures log output).
local sink = default_sink

function M.set_sink(fn)
  local old = sink
  sink = fn or default_sink
  return old
end

-- Wall-clock time with milliseconds, for the json format's RFC 3339 stamp.
pcall(ffi.cdef, [[
struct ringline_log_ts { long sec; long nsec; };
int ringline_log_clock(int id, struct ringline_log_ts *ts) __asm__("clock_gettime");
]])
local ts = ffi.new("struct ringline_log_ts")
local function rfc3339()
  ffi.C.ringline_log_clock(0, ts)       -- CLOCK_REALTIME
  return os_date("!%Y-%m-%dT%H:%M:%S", tonumber(ts.sec)) ..
    (".%03dZ"):format(math.floor(tonumber(ts.nsec) / 1e6))
end

local JSON_ESC = { ['"'] = '\\"', ["\\"] = "\\\\", ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t" }
local function json_str(s)
  return (s:gsub('[%c"\\]', function(c)
    return JSON_ESC[c] or ("\\u%04x"):format(c:byte())
  end))
end

-- The json line: depth is the caller's stack level (its file:line).
local function json_line(level, msg, depth)
  local info = debug.getinfo(depth, "Sl")
  local caller = info and (info.short_src .. ":" .. tostring(info.currentline)) or "?"
  return concat({ '{"time":"', rfc3339(), '","level":"', names[level], '","worker":',
                  tostring(M.worker_id), ',"msg":"', json_str(msg), '","caller":"',
                  json_str(caller), '"}\n' })
end

function M.level(lv)
  local old = threshold
  if lv ~= nil then
    if type(lv) ~= "number" or not names[lv] then
      error("ringline.log_level: unknown level " .. tostring(lv), 2)
    end
    threshold = lv
  end
  return old
end

function M.log(level, ...)
  if type(level) ~= "number" or not names[level] then
    error("ringline.log: bad level " .. tostring(level) .. " (use ringline.ERR, WARN, INFO or DEBUG)", 2)
  end
  if level > threshold then return end
  local n = select("#", ...)
  if json then
    local parts = {}
    for i = 1, n do parts[i] = tostring((select(i, ...))) end
    return sink(json_line(level, concat(parts), 3))
  end
  local parts = { os_date("%Y/%m/%d %H:%M:%S"), " [", names[level], "] ringline worker ",
                  tostring(M.worker_id), ": " }
  for i = 1, n do
    parts[#parts + 1] = tostring((select(i, ...)))
  end
  parts[#parts + 1] = "\n"
  sink(concat(parts))
end

-- Once per process in the host (worker 0 says it), once per VM elsewhere.
if bad_env and M.worker_id == 0 then
  M.log(M.WARN, "RINGLINE_LOG_LEVEL: unknown value '", bad_env, "' ignored (valid: ",
    "ERR, WARN, NOTICE, INFO, DEBUG or 4..8); logging at INFO")
end

return M
