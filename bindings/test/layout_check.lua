-- layout_check.lua: compare the C compiler's view of the header (the output
-- of rl_layout) with LuaJIT's view of the generated cdef.
--
-- As a script (ctest):   luajit bindings/test/layout_check.lua path/to/rl_layout
--   prints every mismatch and exits 1 on any, or when nothing was compared.
-- As a module (spec):    local check = dofile("bindings/test/layout_check.lua")
--   check(text) -> rows, each { name = "sizeof.rl_event", c = 24, ffi = 24 }
--   (ffi is nil with an error string in row.err when LuaJIT cannot answer).
local ffi = require "ffi"

local here = (debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$")) or "."
dofile(here .. "/../ringline/cdef.lua")   -- guarded: harmless when loaded already

local function ffi_value(name)
  local kind, a, b = name:match("^(%a+)%.([%w_]+)%.?([%w_]*)$")
  if kind == "sizeof" then
    return ffi.sizeof("struct " .. a)
  elseif kind == "alignof" then
    return ffi.alignof("struct " .. a)
  elseif kind == "offsetof" then
    return ffi.offsetof("struct " .. a, b)
  end
  return tonumber(ffi.C[name])          -- an enum constant
end

local function compare(text)
  local rows = {}
  for line in text:gmatch("[^\n]+") do
    local name, value = line:match("^(%S+) (%-?%d+)$")
    if not name then error("rl_layout: unexpected line '" .. line .. "'", 2) end
    local ok, v = pcall(ffi_value, name)
    rows[#rows + 1] = { name = name, c = tonumber(value), ffi = ok and v or nil,
                        err = not ok and tostring(v) or nil }
  end
  return rows
end

local prog = ...
if type(prog) == "string" and arg and arg[1] == prog then
  -- os.execute, not io.popen: LuaJIT's popen close does not report the
  -- exit status.
  local tmp = os.tmpname()
  local status = os.execute(("'%s' > '%s'"):format(prog:gsub("'", "'\\''"), tmp))
  local f = assert(io.open(tmp, "rb"))
  local text = f:read("*a")
  f:close()
  os.remove(tmp)
  if status ~= 0 or text == "" then
    io.stderr:write("layout_check: ", prog, " failed (status ", tostring(status),
      ") or printed nothing\n")
    os.exit(1)
  end
  local bad = 0
  local rows = compare(text)
  for _, r in ipairs(rows) do
    if r.c ~= r.ffi then
      bad = bad + 1
      io.stderr:write(("layout mismatch: %s C=%d FFI=%s\n"):format(
        r.name, r.c, r.err or tostring(r.ffi)))
    end
  end
  io.write(("layout_check: %d values compared, %d mismatches\n"):format(#rows, bad))
  os.exit(bad == 0 and 0 or 1)
end

return compare
