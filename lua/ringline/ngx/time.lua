-- ringline.ngx.time: ngx.now, time, update_time, today, localtime, utctime,
-- http_time, cookie_time, parse_http_time.
--
-- nginx caches the wall clock once per event-loop turn; here every call
-- reads CLOCK_REALTIME (a vDSO call, no system call), so update_time has
-- nothing to do. Names of days and months are fixed English (os.date's %a
-- and %b follow the locale).
local ffi = require "ffi"

pcall(ffi.cdef, [[
struct rl_ngx_timespec { long tv_sec; long tv_nsec; };
int clock_gettime(int clk, struct rl_ngx_timespec *tp);
]])

local C = ffi.C
local floor, tonumber, type, error = math.floor, tonumber, type, error
local os_date = os.date
local ts = ffi.new("struct rl_ngx_timespec")
local CLOCK_REALTIME = 0

local M = {}

local function wall()
  C.clock_gettime(CLOCK_REALTIME, ts)
  return tonumber(ts.tv_sec), tonumber(ts.tv_nsec)
end

-- Seconds since the epoch with milliseconds, as nginx's cached time.
function M.now()
  local s, ns = wall()
  return s + floor(ns / 1e6) / 1000
end

function M.time()
  return (wall())
end

function M.update_time() end

function M.today() return os_date("%Y-%m-%d") end
function M.localtime() return os_date("%Y-%m-%d %H:%M:%S") end
function M.utctime() return os_date("!%Y-%m-%d %H:%M:%S") end

local DAYS = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" }
local MONTHS = { "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" }
local MONTH_NO = {}
for i, m in ipairs(MONTHS) do MONTH_NO[m] = i end

local function secs(sec, what)
  if type(sec) ~= "number" then
    sec = tonumber(sec)
    if not sec then error(what .. ": expected a number of seconds", 3) end
  end
  return floor(sec)
end

-- "Thu, 18 Nov 2010 11:27:35 GMT"
function M.http_time(sec)
  local t = os_date("!*t", secs(sec, "ngx.http_time"))
  return ("%s, %02d %s %d %02d:%02d:%02d GMT"):format(DAYS[t.wday], t.day, MONTHS[t.month],
    t.year, t.hour, t.min, t.sec)
end

-- "Thu, 18-Nov-10 11:27:35 GMT"
function M.cookie_time(sec)
  local t = os_date("!*t", secs(sec, "ngx.cookie_time"))
  return ("%s, %02d-%s-%02d %02d:%02d:%02d GMT"):format(DAYS[t.wday], t.day, MONTHS[t.month],
    t.year % 100, t.hour, t.min, t.sec)
end

-- Days from 1970-01-01 to y-m-d (proleptic Gregorian; Howard Hinnant's
-- days_from_civil).
local function days(y, m, d)
  if m <= 2 then y = y - 1 end
  local era = floor(y / 400)
  local yoe = y - era * 400
  local mp = (m + 9) % 12
  local doy = floor((153 * mp + 2) / 5) + d - 1
  local doe = yoe * 365 + floor(yoe / 4) - floor(yoe / 100) + doy
  return era * 146097 + doe - 719468
end

local function epoch(y, mon, d, h, mi, s)
  local m = MONTH_NO[mon]
  y, d, h, mi, s = tonumber(y), tonumber(d), tonumber(h), tonumber(mi), tonumber(s)
  if not m or d < 1 or d > 31 or h > 23 or mi > 59 or s > 60 then return nil end
  if y < 100 then y = y + (y < 70 and 2000 or 1900) end
  return days(y, m, d) * 86400 + h * 3600 + mi * 60 + s
end

-- The three forms HTTP dates take (RFC 9110 5.6.7): IMF-fixdate, RFC 850,
-- asctime. nil for anything else.
function M.parse_http_time(str)
  if type(str) ~= "string" then return nil end
  local d, mon, y, h, mi, s = str:match("^%a+, (%d%d?) (%a%a%a) (%d%d%d%d) (%d%d):(%d%d):(%d%d) GMT$")
  if not d then
    d, mon, y, h, mi, s = str:match("^%a+, (%d%d?)%-(%a%a%a)%-(%d%d) (%d%d):(%d%d):(%d%d) GMT$")
  end
  if not d then
    d, mon, y, h, mi, s = str:match("^%a+, (%d%d?)%-(%a%a%a)%-(%d%d%d%d) (%d%d):(%d%d):(%d%d) GMT$")
  end
  if not d then
    mon, d, h, mi, s, y = str:match("^%a+ (%a%a%a) +(%d%d?) (%d%d):(%d%d):(%d%d) (%d%d%d%d)$")
  end
  if not d then return nil end
  return epoch(y, mon, d, h, mi, s)
end

return M
