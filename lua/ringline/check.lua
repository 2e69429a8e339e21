-- ringline.check: argument checks shared by the public API, so a misuse
-- reads the same wherever it is made.
--
-- Option tables: each call keeps its valid keys in one table (VALID below
-- in its own module; adding an option is adding a key there), and
-- options() refuses any other key, naming it and listing the valid ones.
-- A key mapped to a string is known but refused with that reason ("not
-- supported"): accepting it and ignoring it would be worse (ssl = true
-- must never speak plaintext).
--
-- Time units (docs/lua.md, "Time units"): methods of socket objects
-- (connection, UDP socket) take milliseconds, as OpenResty's do; ringline.*
-- functions, their option tables, timers and the task, semaphore and
-- channel methods take seconds. A negative, NaN or infinite timeout is a
-- misuse; nil means no limit.
local errors = require "ringline.errors"

local type, error, tostring, pairs = type, error, tostring, pairs
local table_sort, table_concat = table.sort, table.concat

local M = {}

-- A string.buffer? Its metatable hides behind __metatable = "buffer", and
-- getmetatable of a userdata aborts a trace ("bad argument type"); the real
-- metatable compared with debug.getmetatable compiles.
local BUFFER_MT = debug.getmetatable(require("string.buffer").new())
local getmt = debug.getmetatable
function M.is_buffer(x)
  return type(x) == "userdata" and getmt(x) == BUFFER_MT
end

-- The valid keys of valid, sorted, as one string ("a, b, c" or "none").
local function list(valid)
  local names = {}
  for k, v in pairs(valid) do
    if v == true then names[#names + 1] = k end
  end
  if #names == 0 then return "none" end
  table_sort(names)
  return table_concat(names, ", ")
end
M.list = list

-- Every check raises at the line of the user's code that made the call
-- (errors.caller_level: the nearest frame outside ringline's modules), not
-- at a fixed level: the API's entry points tail-call the modules that
-- check, so a fixed level would miss the caller.

-- options(opts, valid, what): opts nil or a table whose keys are all
-- valid[k] == true; else an error naming the key.
-- The caller's level is found only on the way to an error: it walks the
-- stack with debug.getinfo, which is slow and stops JIT traces, and
-- connect (every ngx cosocket connect passes options) checks each call.
function M.options(opts, valid, what)
  if opts == nil then return end
  if type(opts) ~= "table" then error(what .. ": opts must be a table", errors.caller_level()) end
  for k in pairs(opts) do
    local v = valid[k]
    if v ~= true then
      local lvl = errors.caller_level()
      if type(v) == "string" then
        error(("%s: option '%s' is %s"):format(what, tostring(k), v), lvl)
      end
      error(("%s: unknown option '%s' (valid: %s)"):format(what, tostring(k), list(valid)), lvl)
    end
  end
end

-- A finite number >= 0, or nil unless required: the timeout checks.
-- Returns v.
local function bad_time(v)
  return type(v) ~= "number" or v ~= v or v < 0 or v == 1 / 0
end

function M.seconds(v, what, required)
  if (v ~= nil or required) and bad_time(v) then
    error(("%s: expected seconds (a finite number >= 0), got %s"):format(what, tostring(v)),
      errors.caller_level())
  end
  return v
end

-- A socket method's per-call timeout in ms (checked by milliseconds()) as
-- the seconds a wait takes: nil -> dflt (the connection's settimeout), 0 ->
-- false (no limit, as settimeout(0)).
function M.call_ms(v, dflt)
  if v == nil then return dflt end
  return v > 0 and v / 1000
end

function M.milliseconds(v, what, required)
  if (v ~= nil or required) and bad_time(v) then
    error(("%s: expected milliseconds (a finite number >= 0), got %s"):format(what, tostring(v)),
      errors.caller_level())
  end
  return v
end

return M
