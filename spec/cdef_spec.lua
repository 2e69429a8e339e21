-- The FFI declarations against the C header and the built library:
-- the generated cdef is current, C and LuaJIT agree on every layout and
-- constant, and every declared function exists in the library.
local ffi = require "ffi"

local root = debug.getinfo(1, "S").source:match("^@(.*)/spec/[^/]+$") or "."
if root:sub(1, 1) ~= "/" then root = os.getenv("PWD") .. "/" .. root end
package.path = root .. "/bindings/?.lua;" .. package.path
local proc = dofile(root .. "/bindings/test/proc.lua")
local build = os.getenv("RINGLINE_BUILD") or (root .. "/build")
local luajit = os.getenv("LUAJIT") or "luajit"

local CDEF = require "ringline.cdef"

local function read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end

-- Function names declared in the cdef: what precedes "(" in a top-level
-- declaration (struct and enum bodies removed first).
local function declared_functions(text)
  local names = {}
  local flat = text:gsub("%b{}", "")
  for decl in flat:gmatch("[^;]+") do
    local name = decl:match("([%a_][%w_]*)%s*%(")
    if name then names[#names + 1] = name end
  end
  return names
end

describe("ringline.cdef", function()
  it("is what tools/gen_cdef.lua makes of the header", function()
    local code, out, err = proc.run(("%s %s/tools/gen_cdef.lua --check"):format(luajit, root))
    assert.are.equal(0, code, out .. err)
  end)

  it("is reported stale, with a diff, when it differs from the header", function()
    local stale = os.tmpname()
    local f = assert(io.open(stale, "wb"))
    f:write((read(root .. "/bindings/ringline/cdef.lua"):gsub("uint32_t rlen;", "uint16_t rlen;")))
    f:close()
    local code, _, err = proc.run(("%s %s/tools/gen_cdef.lua --check --out %s"):format(
      luajit, root, proc.quote(stale)))
    os.remove(stale)
    assert.are.equal(1, code)
    assert.matches("is stale", err, 1, true)
    assert.matches("%-%d+: \tuint16_t rlen;", err)   -- the committed line
    assert.matches("%+%d+: \tuint32_t rlen;", err)   -- what the header says
  end)

  it("holds only the header's region, without comments", function()
    assert.matches("struct rl_event {", CDEF, 1, true)
    assert.matches("const char *rl_version(void);", CDEF, 1, true)
    assert.is_nil(CDEF:find("/*", 1, true))
    assert.is_nil(CDEF:find("RL_FFI_", 1, true))
    assert.is_nil(CDEF:find("\n%s*\n"))
  end)

  it("can be loaded twice, and after another cdef of some of its types", function()
    -- A fresh VM: this one has the declarations already.
    local script = ([[
      package.path = %q .. package.path
      local ffi = require "ffi"
      ffi.cdef "struct rl_event { uint32_t type; int32_t res; uint32_t slot; uint32_t gen; uint32_t data; uint32_t pad; };"
      require "ringline.cdef"
      package.loaded["ringline.cdef"] = nil
      require "ringline.cdef"
      io.write(ffi.sizeof("struct rl_metrics"), " ", tonumber(ffi.C.RL_OPT_RCVBUF))
    ]]):format(root .. "/bindings/?.lua;")
    local code, out, err = proc.run(luajit .. " -e " .. proc.quote(script))
    assert.are.equal(0, code, err)
    assert.are.equal(ffi.sizeof("struct rl_metrics") .. " 4", out)
  end)
end)

describe("C and FFI layouts", function()
  local compare = dofile(root .. "/bindings/test/layout_check.lua")

  it("agree on every size, alignment, offset and enum value", function()
    local code, out, err = proc.run(proc.quote(build .. "/bindings/rl_layout"))
    assert.are.equal(0, code, err)
    local rows = compare(out)
    local seen = {}
    for _, r in ipairs(rows) do
      seen[r.name] = true
      assert.are.equal(r.c, r.ffi, r.name .. (r.err and (": " .. r.err) or ""))
    end
    -- The probe covers what the Lua side reads in place.
    for _, s in ipairs { "rl_event", "rl_conn_io", "rl_metrics", "rl_config", "rl_config_key" } do
      assert.is_true(seen["sizeof." .. s], "no sizeof." .. s)
    end
    for _, n in ipairs { "offsetof.rl_conn_io.rdata", "offsetof.rl_conn_io.unsent",
                         "offsetof.rl_metrics.accept_errors", "RL_EV_LISTENER",
                         "RL_CLOSE_RESET", "RL_FEAT_MSG_RING" } do
      assert.is_true(seen[n], "no " .. n)
    end
  end)

  it("would catch a mismatch", function()
    local rows = compare("sizeof.rl_event 23\nRL_EV_RECV 3\n")
    assert.are.equal(2, #rows)
    assert.are_not.equal(rows[1].c, rows[1].ffi)
    assert.are_not.equal(rows[2].c, rows[2].ffi)
  end)
end)

describe("ringline.lib", function()
  local names = declared_functions(CDEF)

  it("finds the library and every declared function in it", function()
    local C = require "ringline.lib"
    assert.is_true(#names >= 30, "only " .. #names .. " functions parsed")
    for _, name in ipairs(names) do
      local ok, err = pcall(function() return C[name] end)
      assert.is_true(ok, name .. ": " .. tostring(err))
    end
    local header = read(root .. "/core/include/ringline.h")
    assert.are.equal(header:match('#define RL_VERSION_STRING "([^"]+)"'), ffi.string(C.rl_version()))
  end)

  it("names the path it could not load from RINGLINE_LIB", function()
    local code, _, err = proc.run(("RINGLINE_LIB=/nonexistent/libringline.so %s -e %s"):format(
      luajit, proc.quote(("package.path=%q..package.path; require 'ringline.lib'"):format(
        root .. "/bindings/?.lua;"))))
    assert.are.equal(1, code)
    assert.matches("RINGLINE_LIB=/nonexistent/libringline.so", err, 1, true)
  end)
end)
