-- ringline.log: leveled logging to stderr, tagged with the worker id.
--
-- The levels use nginx's numbers (ERR 4 .. DEBUG 8) so code written against
-- ngx.log reads the same. Arguments are concatenated without separators, as
-- ngx.log does. Logging is not a hot path: it allocates freely.
-- the host's settings, inside the host (ringline.host says whether it is)
local hostinfo = require "ringline.host" and require "ringline.hostinfo" or nil

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

-- The sink is replaceable for tests (spec code captures log output).
local sink = function(line) io.stderr:write(line) end

function M.set_sink(fn)
  local old = sink
  sink = fn or function(line) io.stderr:write(line) end
  return old
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
