-- The host executable ringline-lua: options, exit status, arg, errors,
-- module path, signals. Each case runs the built host as a process.
local ffi = require "ffi"

local root = debug.getinfo(1, "S").source:match("^@(.*)/spec/[^/]+$") or "."
if root:sub(1, 1) ~= "/" then root = os.getenv("PWD") .. "/" .. root end
package.path = root .. "/bindings/?.lua;" .. package.path
local proc = dofile(root .. "/bindings/test/proc.lua")
local build = os.getenv("RINGLINE_BUILD") or (root .. "/build")
local host = build .. "/bindings/ringline-lua"
package.path = root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;" .. package.path
local C = require "ringline.lib"

local function script(text)
  local path = os.tmpname() .. ".lua"
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
  return path
end

local function ringline_lua(args, input)
  return proc.run(proc.quote(host) .. " " .. args, input)
end

local function config_keys()
  local n = ffi.new("int[1]")
  local keys = C.rl_config_keys(n)
  local t = {}
  for i = 0, n[0] - 1 do
    t[#t + 1] = { name = ffi.string(keys[i].name), def = keys[i].def,
                  min = keys[i].min, max = keys[i].max }
  end
  return t
end

describe("ringline-lua", function()
  local tmp = {}
  local function tmpscript(text)
    local p = script(text)
    tmp[#tmp + 1] = p
    return p
  end
  teardown(function()
    for _, p in ipairs(tmp) do os.remove(p) end
  end)

  describe("options", function()
    it("--version prints the host, core and LuaJIT versions", function()
      local code, out = ringline_lua("--version")
      assert.are.equal(0, code)
      assert.matches("^ringline%-lua %d+%.%d+%.%d+", out)
      assert.matches("libringline " .. ffi.string(C.rl_version()), out, 1, true)
      assert.matches(jit.version, out, 1, true)
    end)

    it("--help lists the options and every configuration key with its default and range", function()
      local code, out = ringline_lua("--help")
      assert.are.equal(0, code)
      for _, opt in ipairs { "--help", "--version", "-w N|auto", "--set key=value", "--" } do
        assert.matches(opt, out, 1, true)
      end
      local keys = config_keys()
      assert.is_true(#keys > 0)
      local core = {}
      for _, k in ipairs(keys) do core[k.name] = true end
      for name, k in pairs(require("ringline").config_keys()) do   -- the Lua API's own, too
        if not core[name] then
          keys[#keys + 1] = { name = name, def = k.default, min = k.min, max = k.max }
        end
      end
      for _, k in ipairs(keys) do
        local line = out:match("\n%s*" .. k.name .. " [^\n]*")
        assert.is_not_nil(line, "key " .. k.name .. " missing from --help")
        assert.matches("default " .. k.def, line, 1, true)
        assert.matches(k.min .. ".." .. k.max, line, 1, true)
      end
    end)

    it("rejects an unknown option with status 2, naming it", function()
      local code, out, err = ringline_lua("--frobnicate x.lua")
      assert.are.equal(2, code)
      assert.are.equal("", out)
      assert.matches("unknown option '--frobnicate'", err, 1, true)
      assert.matches("--help", err, 1, true)
    end)

    it("requires a script (status 2)", function()
      local code, _, err = ringline_lua("")
      assert.are.equal(2, code)
      assert.matches("no script", err, 1, true)
    end)

    it("validates -w", function()
      local code, _, err = ringline_lua("-w 0 x.lua")
      assert.are.equal(2, code)
      assert.matches("-w", err, 1, true)
      assert.matches("'0'", err, 1, true)
      code, _, err = ringline_lua("-w lots x.lua")
      assert.are.equal(2, code)
      assert.matches("'lots'", err, 1, true)
      code, _, err = ringline_lua("-w")
      assert.are.equal(2, code)
      assert.matches("'-w' needs a value", err, 1, true)
    end)

    it("rejects an unknown --set key with status 2, naming it and listing the valid ones", function()
      local code, _, err = ringline_lua("--set no_such_key=1 x.lua")
      assert.are.equal(2, code)
      assert.matches("unknown configuration key 'no_such_key' (valid: ", err, 1, true)
      -- the core's keys and the Lua API's, sorted
      local list = err:match("%(valid: ([^)]*)%)")
      local names = {}
      for k in list:gmatch("[%w_]+") do names[#names + 1] = k end
      local want = {}
      for _, k in ipairs(config_keys()) do want[#want + 1] = k.name end
      for k in pairs(require("ringline.config").LUA_KEYS) do want[#want + 1] = k end
      table.sort(want)
      assert.are.same(want, names)
    end)

    it("rejects an out-of-range --set value with status 2, naming the key and range", function()
      local k = config_keys()[1]
      local code, _, err = ringline_lua(("--set %s=%d x.lua"):format(k.name, k.max + 1))
      assert.are.equal(2, code)
      assert.matches(k.name, err, 1, true)
      assert.matches(k.min .. ".." .. k.max, err, 1, true)
    end)

    it("rejects a --set value that is not a number, and one without '='", function()
      local k = config_keys()[1]
      local code, _, err = ringline_lua(("--set %s=lots x.lua"):format(k.name))
      assert.are.equal(2, code)
      assert.matches(k.name, err, 1, true)
      assert.matches("'lots'", err, 1, true)
      code, _, err = ringline_lua(("--set %s x.lua"):format(k.name))
      assert.are.equal(2, code)
      assert.matches("key=value", err, 1, true)
    end)

    it("rejects --set values that contradict each other", function()
      local code, _, err = ringline_lua("--set send_high_watermark=1024 --set send_low_watermark=2048 x.lua")
      assert.are.equal(2, code)
      assert.matches("send_low_watermark", err, 1, true)
    end)

    it("hands valid --set values to the script's worker", function()
      local s = tmpscript [[
        local ringline = require "ringline"
        local cfg = require("ringline.hostinfo").config
        io.write(cfg.send_high_watermark, " ", cfg.send_low_watermark, " ",
                 ringline.config("send_high_watermark"), " ", ringline.config("line_max"))
      ]]
      local code, out, err = ringline_lua("--set send_high_watermark=128k --set send_low_watermark=1000 "
        .. "--set line_max=4096 -w 1 " .. s)
      assert.are.equal(0, code, err)
      assert.are.equal("131072 1000 131072 4096", out)
    end)

    it("checks --set keys of the Lua API (line_max) too, naming the key and range", function()
      local k = require("ringline").config_keys().line_max
      local code, _, err = ringline_lua(("--set line_max=%d x.lua"):format(k.max + 1))
      assert.are.equal(2, code)
      assert.matches(("line_max: %d is out of range (%d..%d)"):format(k.max + 1, k.min, k.max), err, 1, true)
    end)

    it("treats what follows -- as the script", function()
      local s = tmpscript [[io.write(arg[0], " ", tostring(arg[1]))]]
      local code, out, err = ringline_lua("-- " .. s .. " --version")
      assert.are.equal(0, code, err)
      assert.are.equal(s .. " --version", out)
    end)
  end)

  describe("running a script", function()
    it("exits 0 when the script returns, after its output", function()
      local s = tmpscript [[print("hello from the script")]]
      local code, out, err = ringline_lua(s)
      assert.are.equal(0, code, err)
      assert.are.equal("hello from the script\n", out)
      assert.are.equal("", err)
    end)

    it("passes arguments as arg and ... the way luajit does", function()
      local s = tmpscript [[
        local n = select("#", ...)
        io.write(arg[-1], "|", arg[0], "|", arg[1], "|", arg[2], "|", #arg, "|", n, "|", (select(2, ...)))
      ]]
      local code, out, err = ringline_lua("--set recv_window=65536 " .. s .. " one 'two words'")
      assert.are.equal(0, code, err)
      assert.are.equal("recv_window=65536|" .. s .. "|one|two words|2|2|two words", out)
      code, out = ringline_lua(s .. " a b")
      assert.are.equal(0, code)
      assert.are.equal(host .. "|" .. s .. "|a|b|2|2|b", out)
    end)

    it("reads the script from stdin for '-'", function()
      local code, out, err = ringline_lua("- x", "io.write('stdin:', ...)")
      assert.are.equal(0, code, err)
      assert.are.equal("stdin:x", out)
    end)

    it("-e runs a chunk, as lua -e: no script needed, several in order, then the script", function()
      local code, out, err = ringline_lua([[-e 'io.write(type(require("ringline").run))']])
      assert.are.equal(0, code, err)
      assert.are.equal("function", out)
      -- the chunks share the VM's globals, run in order, get no arguments;
      -- the script after them gets its own; -ecode works too
      local s = tmpscript "io.write('|script:', x, ':', ...)"
      code, out, err = ringline_lua("-e 'x = 1' '-ex = x + 1 io.write(x, select(\"#\", ...))' "
        .. s .. " a b")
      assert.are.equal(0, code, err)
      assert.are.equal("20|script:2:ab", out)
      -- with '-' the script comes from stdin, after the chunk
      code, out, err = ringline_lua("-e 'io.write(\"e;\")' - x", "io.write('stdin:', ...)")
      assert.are.equal(0, code, err)
      assert.are.equal("e;stdin:x", out)
      -- options after -e still apply (blocking calls work in the chunk: it
      -- is the main task)
      code, out, err = ringline_lua([[-e 'local r = require "ringline"; r.sleep(0.001)
        io.write(r.config("recv_window"))' --set recv_window=65536]])
      assert.are.equal(0, code, err)
      assert.are.equal("65536", out)
    end)

    it("-e: a chunk that does not compile or raises exits 1 naming the command line", function()
      local code, out, err = ringline_lua("-e 'x ='")
      assert.are.equal(1, code)
      assert.are.equal("", out)
      assert.matches("(command line):1:", err, 1, true)
      code, out, err = ringline_lua("-e 'error(\"boom\")' -e 'io.write(\"not reached\")'")
      assert.are.equal(1, code)
      assert.are.equal("", out)
      assert.matches("(command line):1: boom", err, 1, true)
      code, _, err = ringline_lua("-e")
      assert.are.equal(2, code)
      assert.matches("'-e' needs a Lua chunk", err, 1, true)
    end)

    it("fits the default max_connections to a low hard RLIMIT_NOFILE, warning once", function()
      local s = tmpscript [[
        local ringline = require "ringline"
        local l = assert(ringline.listen("127.0.0.1:0", function() end))
        l:close()
        -- one write: two workers' stdout must not interleave inside it
        io.write(("ok%d;"):format(ringline.worker_id()))
        io.flush()
      ]]
      local function under_4096(args)
        return proc.run("sh -c " .. proc.quote("ulimit -Sn 1024 && ulimit -Hn 4096 && exec "
          .. proc.quote(host) .. " " .. args))
      end
      local code, out, err = under_4096("-w 2 --no-pin " .. s)
      assert.are.equal(0, code, err)
      assert.matches("ok0;", out, 1, true)
      assert.matches("ok1;", out, 1, true)
      local _, n = err:gsub("max_connections: 4032 per worker %(not 16000%): the hard "
        .. "RLIMIT_NOFILE is 4096", "")
      assert.are.equal(1, n, err)
      -- an explicit value that cannot fit is still refused
      code, out, err = under_4096("--set max_connections=16000 " .. s)
      assert.are.equal(1, code)
      assert.are.equal("", out)
      assert.matches("max_connections: 16000 needs RLIMIT_NOFILE >= 16064", err, 1, true)
    end)

    it("exits 1 with the message when the script does not compile", function()
      local s = tmpscript "local x = = 1\n"
      local code, out, err = ringline_lua(s)
      assert.are.equal(1, code)
      assert.are.equal("", out)
      assert.matches(s .. ":1:", err, 1, true)
      assert.matches("'='", err, 1, true)
    end)

    it("exits 1 when the script does not exist", function()
      local code, _, err = ringline_lua("/nonexistent/script.lua")
      assert.are.equal(1, code)
      assert.matches("/nonexistent/script.lua", err, 1, true)
    end)

    it("exits 1 with the error and a traceback through the script when it raises", function()
      local s = tmpscript "local function explode()\n  error('boom')\nend\nexplode()\n"
      local code, _, err = ringline_lua(s)
      assert.are.equal(1, code)
      assert.matches(s .. ":2: boom", err, 1, true)
      assert.matches("stack traceback:", err, 1, true)
      assert.matches("explode", err, 1, true)
    end)

    it("exits 1 for an error value that is not a string", function()
      local s = tmpscript "error({})"
      local code, _, err = ringline_lua(s)
      assert.are.equal(1, code)
      assert.matches("table value", err, 1, true)
    end)
  end)

  describe("inside the host", function()
    it("reaches every function of the cdef through ffi.C", function()
      local s = tmpscript [[
        local ffi = require "ffi"
        local C = require "ringline.lib"
        assert(C == ffi.C, "ringline.lib is not ffi.C in the host")
        local text = require "ringline.cdef"
        local n, missing = 0, {}
        for decl in text:gsub("%b{}", ""):gmatch("[^;]+") do
          local name = decl:match("([%a_][%w_]*)%s*%(")
          if name then
            n = n + 1
            if not pcall(function() return C[name] end) then missing[#missing + 1] = name end
          end
        end
        io.write(n, " ", table.concat(missing, ","))
      ]]
      local code, out, err = ringline_lua(s)
      assert.are.equal(0, code, err)
      local n, missing = out:match("^(%d+) (.*)$")
      assert.is_true(tonumber(n) >= 30, out)
      assert.are.equal("", missing)
    end)

    it("provides ringline.hostinfo", function()
      local s = tmpscript [[
        local hi = require "ringline.hostinfo"
        io.write(tostring(hi.host), " ", hi.worker_id, " ", hi.workers, " ", hi.version)
      ]]
      local code, out, err = ringline_lua(s)
      assert.are.equal(0, code, err)
      assert.are.equal("true 0 1 " .. ffi.string(C.rl_version()), out)
    end)

    it("finds the ringline modules from any working directory", function()
      local s = tmpscript [[
        io.write(package.searchpath("ringline", package.path), " ",
                 package.searchpath("ringline.lib", package.path))
      ]]
      local code, out, err = proc.run("cd / && " .. proc.quote(host) .. " " .. s)
      assert.are.equal(0, code, err)
      local a, b = out:match("^(%S+) (%S+)$")
      assert.matches("/lua/ringline/init.lua$", a)
      assert.matches("/bindings/ringline/lib.lua$", b)
    end)

    it("ignores SIGPIPE", function()
      local s = tmpscript [[
        for line in io.lines("/proc/self/status") do
          local mask = line:match("^SigIgn:%s*(%x+)")
          if mask then io.write(mask) end
        end
      ]]
      local code, out, err = ringline_lua(s)
      assert.are.equal(0, code, err)
      local low = tonumber(out:sub(-8), 16)       -- signals 1..32
      assert.are.equal(1, math.floor(low / 2 ^ 12) % 2, "SIGPIPE (13) not ignored: " .. out)
    end)

    for _, sig in ipairs { "TERM", "INT" } do
      it("exits 0 on SIG" .. sig .. " while serving", function()
        local s = tmpscript [[
          local ringline = require "ringline"
          local lst = assert(ringline.listen("127.0.0.1:0", function(conn) end))
          local _, port = lst:getsockname()
          print("listening on " .. port)
        ]]
        local srv = proc.spawn(proc.quote(host) .. " " .. s)
        local port, seen = srv:expect("^listening on (%d+)$")
        assert.is_not_nil(port, seen)
        local code, _, err = srv:stop(sig)
        assert.are.equal(0, code, err)
      end)
    end
  end)

  describe("installed", function()
    it("runs from an installation prefix with its modules under share/lua/5.1", function()
      local prefix = os.tmpname()
      os.remove(prefix)
      finally(function() os.execute("rm -rf " .. proc.quote(prefix)) end)
      local code, out, err = proc.run(("cmake --install %s --prefix %s"):format(
        proc.quote(build), proc.quote(prefix)))
      assert.are.equal(0, code, out .. err)
      local s = tmpscript [[
        io.write(package.searchpath("ringline", package.path), " ",
                 package.searchpath("ringline.lib", package.path))
      ]]
      code, out, err = proc.run(("cd / && %s/bin/ringline-lua %s"):format(proc.quote(prefix), s))
      assert.are.equal(0, code, err)
      assert.are.equal(("%s/share/lua/5.1/ringline/init.lua %s/share/lua/5.1/ringline/lib.lua"):format(
        prefix, prefix), out)
      -- Plain luajit with the installed modules loads the installed library,
      -- with no LD_LIBRARY_PATH (ringline/installdirs.lua), also once the
      -- tree has moved (its path relative to the modules).
      local libdir = select(2, proc.run("dirname " .. prefix .. "/lib*/libringline.so")):gsub("\n$", "")
      -- A sanitizer build's library needs its runtimes loaded first.
      local preload = {}
      for rt in select(2, proc.run("ldd " .. proc.quote(libdir .. "/libringline.so")))
          :gmatch("=> (/%S+/lib%a*san%.so[%.%d]*)") do
        preload[#preload + 1] = rt
      end
      local function installed_lib(at)
        return proc.run(("cd / && LD_LIBRARY_PATH= LD_PRELOAD=%s %s -e %s"):format(
          proc.quote(table.concat(preload, ":")),
          os.getenv("LUAJIT") or "luajit", proc.quote(([[
            package.path = %q
            local ffi = require "ffi"
            local lib = require "ringline.lib"
            io.write(ffi.string(lib.rl_version()), " ", tostring(lib ~= ffi.C))
          ]]):format(at .. "/share/lua/5.1/?.lua;" .. at .. "/share/lua/5.1/?/init.lua"))))
      end
      code, out, err = installed_lib(prefix)
      assert.are.equal(0, code, err)
      assert.are.equal(ffi.string(C.rl_version()) .. " true", out)
      local moved = prefix .. "-moved"
      finally(function() os.execute("rm -rf " .. proc.quote(moved)) end)
      assert.are.equal(0, (proc.run(("mv %s %s"):format(proc.quote(prefix), proc.quote(moved)))))
      code, out, err = installed_lib(moved)
      assert.are.equal(0, code, err)
      assert.are.equal(ffi.string(C.rl_version()) .. " true", out)
      -- ringline.pc names the prefix installed into
      local pcpath = select(2, proc.run("ls " .. moved .. "/lib*/pkgconfig/ringline.pc")):gsub("\n$", "")
      local pc = assert(io.open(pcpath))
      local text = pc:read("*a")
      pc:close()
      assert.matches("prefix=" .. prefix .. "\n", text, 1, true)
    end)
  end)
end)
