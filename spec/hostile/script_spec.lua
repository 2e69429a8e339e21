-- Loading the script: precompiled bytecode only with --allow-bytecode, a
-- size cap with a clear error, and no module the runtime requires can be
-- shadowed by a file in the working directory.
local H = require "hostile.host"
local proc = H.proc

describe("hostile: script loading", function()
  teardown(H.cleanup)

  it("refuses precompiled bytecode unless --allow-bytecode", function()
    local src = H.file('print("ran " .. select("#", ...))\n')
    local bc = os.tmpname() .. ".ljbc"
    assert.are.equal(0, (proc.run("luajit -b " .. proc.quote(src) .. " " .. proc.quote(bc))))
    local code, out, err = H.run(proc.quote(bc) .. " a b")
    assert.are.equal(1, code)
    assert.are.equal("", out)
    assert.matches("precompiled bytecode refused", err, 1, true)
    assert.matches("--allow-bytecode", err, 1, true)
    -- from stdin too
    local f = assert(io.open(bc, "rb"))
    local bytes = f:read("*a")
    f:close()
    code, _, err = H.run("-", bytes)
    assert.are.equal(1, code)
    assert.matches("precompiled bytecode refused", err, 1, true)
    code, out, err = H.run("--allow-bytecode " .. proc.quote(bc) .. " a b")
    os.remove(bc)
    assert.are.equal(0, code, err)
    assert.are.equal("ran 2\n", out)
  end)

  it("refuses a script over 16 MiB with a clear error", function()
    local big = H.file(("-- padding\n"):rep(math.floor(16 * 1048576 / 11) + 100) .. "print('ran')\n")
    local code, out, err = H.run(proc.quote(big))
    assert.are.equal(1, code)
    assert.are.equal("", out)
    assert.matches("script too large", err, 1, true)
    assert.matches("16 MiB", err, 1, true)
    -- just under the cap runs
    local fits = H.file(("-- padding\n"):rep(math.floor(15 * 1048576 / 11)) .. "print('ran')\n")
    code, out, err = H.run(proc.quote(fits))
    assert.are.equal(0, code, err)
    assert.are.equal("ran\n", out)
  end)

  it("no module the runtime requires is shadowed by the working directory", function()
    -- which modules a run loads: every one of them is planted in a
    -- directory as a file that announces itself, and the run from there
    -- must not load any
    local lister = H.file([[
local ringline = require "ringline"
local lst = assert(ringline.listen("127.0.0.1:0", function(c) c:send((c:receive() or ""), "\n") end))
local _, port = lst:getsockname()
local c = assert(ringline.connect("127.0.0.1", port))
c:send("x\n")
assert(c:receive() == "x")
c:close()
lst:close()
local names = {}
for name in pairs(package.loaded) do names[#names + 1] = name end
table.sort(names)
print(table.concat(names, " "))
]])
    local dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir -p " .. proc.quote(dir)))
    local code, out, err = H.run(proc.quote(lister))
    assert.are.equal(0, code, err)
    local names = {}
    for n in out:gmatch("%S+") do names[#names + 1] = n end
    assert.is_true(#names > 10, out)
    local seen_ringline = false
    for _, n in ipairs(names) do
      seen_ringline = seen_ringline or n == "ringline.sched"
      local rel = n:gsub("%.", "/")
      assert(os.execute(("mkdir -p %s/%s"):format(proc.quote(dir), proc.quote(rel))))
      for _, p in ipairs { rel .. ".lua", rel .. "/init.lua" } do
        local f = assert(io.open(dir .. "/" .. p, "wb"))
        f:write(("io.stderr:write('SHADOWED %s\\n') os.exit(3)\n"):format(n))
        f:close()
      end
    end
    assert.is_true(seen_ringline)
    code, out, err = proc.run("cd " .. proc.quote(dir) .. " && " .. proc.quote(H.bin) .. " "
      .. proc.quote(lister))
    os.execute("rm -rf " .. proc.quote(dir))
    assert.are.equal(0, code, err)
    assert.is_nil(err:find("SHADOWED", 1, true), err)
  end)
end)
