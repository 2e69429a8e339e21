-- The host's logs (bindings/host/logw.c, lua/ringline/log.lua): --log-file,
-- --log-format json (every line parsed), --log-level, SIGUSR1 reopening the
-- file after a rename, and a log that cannot be written (a FIFO nobody
-- reads) costing dropped lines, counted, never a blocked worker.
local ffi = require "ffi"
local cjson = require "cjson"

local root = debug.getinfo(1, "S").source:match("^@(.*)/spec/[^/]+$") or "."
if root:sub(1, 1) ~= "/" then root = os.getenv("PWD") .. "/" .. root end
package.path = ("%s/lua/?.lua;%s/lua/?/init.lua;%s/bindings/?.lua;"):format(root, root, root)
  .. package.path
local proc = dofile(root .. "/bindings/test/proc.lua")
local build = os.getenv("RINGLINE_BUILD") or (root .. "/build")
local host = build .. "/bindings/ringline-lua"
local ringline = require "ringline"
local http = require "ringline.http"

pcall(ffi.cdef, [[
  int ringline_logs_open(const char *path, int flags) __asm__("open");
  long ringline_logs_read(int fd, char *buf, size_t n) __asm__("read");
  int ringline_logs_close(int fd) __asm__("close");
  int ringline_logs_fcntl(int fd, int cmd, int arg) __asm__("fcntl");
]])
local libc = ffi.C

local tmpfiles = {}
local function tmp(suffix)
  local p = os.tmpname()
  os.remove(p)
  p = p .. (suffix or "")
  tmpfiles[#tmpfiles + 1] = p
  return p
end
local function script(text)
  local path = tmp(".lua")
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
  return path
end
local function slurp(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end
local function lines_of(s)
  local t = {}
  for l in (s or ""):gmatch("([^\n]*)\n") do t[#t + 1] = l end
  return t
end

teardown(function()
  for _, p in ipairs(tmpfiles) do os.remove(p) end
end)

local function run(args, env)
  return proc.run((env and "env " .. env .. " " or "") .. proc.quote(host) .. " " .. args)
end

describe("ringline-lua --log-file --log-format json", function()
  it("writes one JSON object a line: time, level, worker, msg, caller", function()
    local log = tmp(".log")
    local s = script [[
      local ringline = require "ringline"
      ringline.log(ringline.WARN, "from worker ", ringline.worker_id(), ": \"quoted\"\tand\nnewline")
      ringline.log(ringline.DEBUG, "hidden at info")
      local lst = assert(ringline.listen("127.0.0.1:0", function(c)
        c:receive("*l")
        error("handler failed")
      end))
      if ringline.worker_id() == 0 then
        local _, port = lst:getsockname()
        local c = assert(ringline.connect("127.0.0.1", port))
        c:send("x\n")
        c:receive("*a")
        ringline.exit(0)
      end
    ]]
    local code, out, err = run("-w 2 --no-pin --log-file " .. log .. " --log-format json " .. s)
    assert.are.equal(0, code, err)
    assert.are.equal("", out)
    assert.is_nil(err:find("from worker", 1, true), err)     -- not on stderr
    local seen, errors = {}, 0
    for _, l in ipairs(lines_of(slurp(log))) do
      local ok, o = pcall(cjson.decode, l)
      assert(ok and type(o) == "table", "not a JSON object: " .. l)
      assert.is_truthy(o.time:match("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d%d%dZ$"), o.time)
      assert.is_truthy(({ error = 1, warn = 1, notice = 1, info = 1, debug = 1 })[o.level], l)
      assert.are.equal("number", type(o.worker))
      assert.are.equal("string", type(o.msg))
      assert.are.equal("string", type(o.caller))
      if o.msg:find("^from worker") then
        assert.are.equal("warn", o.level)
        assert.are.equal("from worker " .. o.worker .. ": \"quoted\"\tand\nnewline", o.msg)
        assert.is_truthy(o.caller:match("%.lua:2$"), o.caller)   -- the script's line 2
        seen[o.worker] = true
      end
      if o.msg:find("handler failed", 1, true) then
        errors = errors + 1
        assert.are.equal("error", o.level)
        assert.is_truthy(o.msg:find("^task error %(peer 127%.0%.0%.1:%d+%): .*handler failed\nstack traceback"), o.msg)
      end
      assert.is_nil(o.msg:find("hidden", 1, true))
    end
    assert.are.same({ [0] = true, [1] = true }, seen)
    assert.are.equal(1, errors)
  end)

  it("keeps what was logged before os.exit ends the process from a worker", function()
    local log = tmp(".log")
    local code = run("--log-file " .. log .. [[ -e '
      local ringline = require "ringline"
      for i = 1, 500 do ringline.log(ringline.WARN, "line ", i) end
      os.exit(3)']])
    assert.are.equal(3, code)
    local _, n = slurp(log):gsub("%[warn%] ringline worker 0: line %d+\n", "")
    assert.are.equal(500, n)
  end)

  it("--log-level sets the threshold, over RINGLINE_LOG_LEVEL", function()
    local s = script [[
      local ringline = require "ringline"
      ringline.log(ringline.DEBUG, "a debug line")
      ringline.log(ringline.WARN, "a warn line")
    ]]
    local code, _, err = run("--log-level debug " .. s, "RINGLINE_LOG_LEVEL=error")
    assert.are.equal(0, code, err)
    assert.is_truthy(err:find("[debug] ringline worker 0: a debug line", 1, true), err)
    code, _, err = run("--log-level=4 " .. s)
    assert.are.equal(0, code, err)
    assert.is_nil(err:find("a warn line", 1, true), err)
    code, _, err = run(s, "RINGLINE_LOG_LEVEL=warn")
    assert.is_truthy(err:find("a warn line", 1, true), err)
    assert.is_nil(err:find("a debug line", 1, true), err)
  end)

  it("refuses bad values with clear errors", function()
    local cases = {
      { "--log-level bogus", 2, "--log-level: expected error, warn, notice, info, debug or 4..8, got 'bogus'" },
      { "--log-level 9", 2, "got '9'" },
      { "--log-format yaml", 2, "--log-format: expected text or json, got 'yaml'" },
      { "--log-file=", 2, "--log-file: expected a path" },
      { "--log-file /nonexistent-dir/x.log", 1, "--log-file: cannot open /nonexistent-dir/x.log: No such file or directory" },
      { "--log-format", 2, "option '--log-format' needs text or json" },
    }
    for _, c in ipairs(cases) do
      local code, _, err = run(c[1] .. " -e 'x=1'")
      if c[1] == "--log-format" then code, _, err = run("-e 'x=1' " .. c[1]) end
      assert.are.equal(c[2], code, c[1] .. ": " .. err)
      assert.is_truthy(err:find(c[3], 1, true), c[1] .. ": " .. err)
    end
  end)
end)

describe("ringline-lua --lua-alloc", function()
  it("runs the script on either allocator and refuses any other", function()
    for _, a in ipairs({ "luajit", "malloc" }) do
      local code, out, err = run("--lua-alloc " .. a ..
        " -e 'local t = {} for i = 1, 100000 do t[i] = { i } end print(#t)'")
      assert.are.equal(0, code, a .. ": " .. err)
      assert.are.equal("100000\n", out, a)
    end
    local code, _, err = run("--lua-alloc jemalloc -e 'x=1'")
    assert.are.equal(2, code, err)
    assert.is_truthy(err:find("--lua-alloc: expected luajit or malloc, got 'jemalloc'", 1, true), err)
  end)
end)

describe("SIGUSR1", function()
  it("reopens the log file: after a rename, the next line goes to a new file at the path", function()
    local log = tmp(".log")
    local s = script [[
      local ffi = require "ffi"
      pcall(ffi.cdef, "int getpid(void);")
      local ringline = require "ringline"
      local n = 0
      local lst = assert(ringline.listen("127.0.0.1:0", function(c)
        for line in c:lines() do
          ringline.log(ringline.INFO, "request ", line)
          c:send("logged\n")
        end
      end))
      ringline.on_signal("USR1", function() end)   -- the script's own handler still runs
      local _, port = lst:getsockname()
      print("pid " .. ffi.C.getpid() .. " port " .. port)
    ]]
    local srv = proc.spawn(proc.quote(host) .. " --log-file " .. log .. " " .. s, 30)
    local pid, port = srv:expect("^pid (%d+) port (%d+)$")
    assert(pid, port)
    ringline.run({ timeout = 20 }, function()
      local c = assert(ringline.connect("127.0.0.1", tonumber(port)))
      c:settimeout(5000)
      assert(c:send("one\n"))
      assert.are.equal("logged", c:receive("*l"))
      -- the line reached the file (the writer is asynchronous): observed
      for _ = 1, 500 do
        if (slurp(log) or ""):find("request one", 1, true) then break end
        ringline.sleep(0.01)
      end
      assert.is_truthy((slurp(log) or ""):find("request one", 1, true))
      assert(os.rename(log, log .. ".1"))
      tmpfiles[#tmpfiles + 1] = log .. ".1"
      srv:signal("USR1", tonumber(pid))
      -- the reopen creates the file at the path: wait until it exists
      for _ = 1, 500 do
        if slurp(log) then break end
        ringline.sleep(0.01)
      end
      assert.is_truthy(slurp(log), "SIGUSR1 did not reopen the log")
      assert(c:send("two\n"))
      assert.are.equal("logged", c:receive("*l"))
      for _ = 1, 500 do
        if slurp(log):find("request two", 1, true) then break end
        ringline.sleep(0.01)
      end
      c:close()
    end)
    local code, _, err = srv:stop("TERM")
    assert.are.equal(0, code, err)
    local old, new = slurp(log .. ".1"), slurp(log)
    assert.is_truthy(old:find("request one", 1, true), old)
    assert.is_nil(old:find("request two", 1, true), old)
    assert.is_truthy(new:find("request two", 1, true), new)
    assert.is_nil(new:find("request one", 1, true), new)
  end)
end)

describe("a log that cannot keep up", function()
  it("drops and counts lines (ringline_log_dropped_total) instead of blocking the worker", function()
    local fifo = tmp(".fifo")
    assert(os.execute("mkfifo " .. fifo) == 0)
    -- our read end, open first (the host's open for writing needs a reader),
    -- not read until the end: the pipe fills and the host's writer blocks
    local rfd = libc.ringline_logs_open(fifo, 0x800)   -- O_RDONLY | O_NONBLOCK
    assert(rfd >= 0, "open fifo")
    local N = 3000
    local s = script((([[
      local ringline = require "ringline"
      local lst = assert(ringline.listen("127.0.0.1:0", function(c) ringline.exit(0) end))
      local pad = ("x"):rep(100)
      for i = 1, @N@ do ringline.log(ringline.INFO, pad, " ", i) end
      local _, port = lst:getsockname()
      print("logged port " .. port .. " metrics " .. ringline.metric.address())
    ]]):gsub("@N@", tostring(N))))
    local srv = proc.spawn("env RINGLINE_LOG_BUFFER=4096 " .. proc.quote(host)
      .. " --metrics 127.0.0.1:0 --log-file " .. fifo .. " " .. s, 30)
    -- the worker logged everything and went on (a blocked worker never prints this)
    local port, maddr = srv:expect("^logged port (%d+) metrics (%S+)$")
    assert(port, maddr)
    local dropped
    ringline.run({ timeout = 20 }, function()
      local res = assert(http.get("http://" .. maddr .. "/metrics", { timeout = 5000 }))
      local body = res:body()
      dropped = tonumber(body:match('\nringline_log_dropped_total{worker="0"} (%d+)\n'))
      assert.are.equal(dropped, tonumber(body:match("\nringline_log_dropped_total (%d+)\n")))
      local c = assert(ringline.connect("127.0.0.1", tonumber(port)))   -- ends the run
      c:close()
    end)
    assert.is_true(dropped > 0, "nothing dropped")
    -- read the rest: the host's writer drains as we read, and exits
    libc.ringline_logs_fcntl(rfd, 4, 0)                -- F_SETFL: blocking
    local buf, parts = ffi.new("char[65536]"), {}
    while true do
      local n = tonumber(libc.ringline_logs_read(rfd, buf, 65536))
      if n <= 0 then break end
      parts[#parts + 1] = ffi.string(buf, n)
    end
    libc.ringline_logs_close(rfd)
    local code, _, err = srv:wait()
    assert.are.equal(0, code, err)
    local written = 0
    for _ in table.concat(parts):gmatch("x %d+\n") do written = written + 1 end
    -- every line is either in the log or counted as dropped
    assert.are.equal(N, written + dropped)
  end)
end)
