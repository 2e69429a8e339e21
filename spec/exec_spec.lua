-- ringline.exec / exec_capture: processes without blocking the worker,
-- and what they leave behind (nothing: no zombie, no descriptor, metrics
-- at idle), on both wait paths: IORING_OP_WAITID and, with
-- RINGLINE_DISABLE_FEATURES=waitid, a poll on the pidfd.
local ffi = require "ffi"
local bit = require "bit"
local ringline = require "ringline"
local support = require "support"

pcall(ffi.cdef, [[
  int setenv(const char *name, const char *value, int overwrite);
  int unsetenv(const char *name);
  int getpid(void);
  uint32_t rl_worker_features(const struct rl_worker *w);
]])
local C = ffi.C
local lib = require "ringline.lib"

-- This process's children, from /proc (each /proc/<pid>/stat names its
-- parent): a zombie is a child too, so an empty list means none is left.
local function children()
  local me = C.getpid()
  local kids = {}
  local d = io.popen("ls /proc")   -- outside a run: no warning, no stall
  local pids = d:read("*a")
  d:close()
  for pid in pids:gmatch("%d+") do
    local f = io.open("/proc/" .. pid .. "/stat")
    if f then
      local s = f:read("*a") or ""
      f:close()
      -- pid (comm) state ppid ...: comm may hold spaces and parentheses
      local state, ppid = s:match("%) (%a) (%d+)")
      if tonumber(ppid) == me then kids[#kids + 1] = pid .. ":" .. state end
    end
  end
  return kids
end

local function fd_count()
  local d = io.popen("ls /proc/self/fd")  -- counts ls's own: compared with itself
  local n = 0
  for _ in d:lines() do n = n + 1 end
  d:close()
  return n
end

-- The in-run view of the same: sampled from /proc directly (no popen in a run).
local function proc_state(pid)
  local f = io.open("/proc/" .. pid .. "/stat")
  if not f then return nil end
  local s = f:read("*a") or ""
  f:close()
  return s:match("%) (%a) ")
end

-- Processes, connections and receive buffers once closes have settled
-- (a close completes in the core after the call returns).
-- Bytes a process has written (its own /proc/<pid>/io).
local function wchar(pid)
  local f = assert(io.open("/proc/" .. pid .. "/io"))
  local s = f:read("*a")
  f:close()
  return tonumber(s:match("wchar:%s*(%d+)"))
end

local function idle_metrics()
  local m
  support.eventually(function()
    m = ringline.metrics()
    return m.procs_running == 0 and m.conns_open == 0 and m.accum_bytes == 0
  end)
  return m.procs_running, m.conns_open, m.accum_bytes
end

for _, path in ipairs { "waitid", "poll" } do
  describe("ringline.exec (" .. path .. " path)", function()
    -- whatever else the environment disables (CI's fallback pass) stays so
    local orig = os.getenv("RINGLINE_DISABLE_FEATURES")
    setup(function()
      local list = {}
      for f in (orig or ""):gmatch("[^,]+") do
        if f ~= "waitid" then list[#list + 1] = f end
      end
      if path == "poll" then list[#list + 1] = "waitid" end
      if #list > 0 then
        C.setenv("RINGLINE_DISABLE_FEATURES", table.concat(list, ","), 1)
      else
        C.unsetenv("RINGLINE_DISABLE_FEATURES")
      end
    end)
    teardown(function()
      if orig then C.setenv("RINGLINE_DISABLE_FEATURES", orig, 1) else C.unsetenv("RINGLINE_DISABLE_FEATURES") end
    end)

    local fds0
    before_each(function() fds0 = fd_count() end)
    after_each(function()
      assert.are.same({}, children())
      assert.are.equal(fds0, fd_count())
    end)

    it("uses the path it is named for", function()
      local feats = support.run(function()
        ringline.sleep(0)
        return lib.rl_worker_features(require("ringline.sched").state().w)
      end)
      local has = bit.band(feats, lib.RL_FEAT_WAITID) ~= 0
      assert.are.equal(path == "waitid", has)
    end)

    it("runs a program: stdout, stderr and the exit status as os.execute gives them", function()
      local r = support.run(function()
        local p = assert(ringline.exec({ "sh", "-c", "echo out; echo err >&2; exit 3" },
                                       { stderr = "pipe" }))
        assert.is_number(p:pid())
        local out = p.stdout:receive("*a")
        local err = p.stderr:receive("*a")
        local a, b, c = p:wait()
        p:close()
        local out2, ok2, how2, code2 = ringline.exec_capture({ "true" })
        return { out, err, a, b, c, out2, ok2, how2, code2, idle_metrics() }
      end)
      assert.are.same({ "out\n", "err\n", nil, "exit", 3, "", true, "exit", 0, 0, 0, 0 }, r)
    end)

    it("feeds stdin from a pipe or a string, and reports a signal", function()
      local r = support.run(function()
        local p = assert(ringline.exec({ "cat" }, { stdin = "pipe" }))
        assert(p.stdin:send("line one\n", "line two\n"))
        p.stdin:close()
        local lines = {}
        for l in p.stdout:lines() do lines[#lines + 1] = l end
        assert.are.same({ true, "exit", 0 }, { p:wait() })
        p:close()
        local fed = assert(ringline.exec_capture({ "tr", "a-z", "A-Z" }, { stdin = "fed\n" }))
        local q = assert(ringline.exec({ "sleep", "30" }, { stdout = "null" }))
        assert(q:kill())                      -- SIGTERM, restored to its default in the child
        local a, how, sig = q:wait()
        assert.are.same({ nil, "exited" }, { q:kill() })
        return { lines, fed, a, how, sig }
      end)
      assert.are.same({ { "line one", "line two" }, "FED\n", nil, "signal", 15 }, r)
    end)

    it("passes argv as is, cwd and env", function()
      local out = support.run(function()
        return assert(ringline.exec_capture({ "sh", "-c", 'printf "%s|" "$1" "$PWD" "$ONLY"', "-",
                                              "a b;$x" }, { cwd = "/tmp", env = { ONLY = "yes" } }))
      end)
      assert.are.equal("a b;$x|/tmp|yes|", out)
    end)

    it("a missing program: a clear error at once, nothing left behind", function()
      local r = support.run(function()
        local p, err = ringline.exec({ "/nonexistent/prog" })
        local q, err2 = ringline.exec({ "no-such-program-ringline" })
        local c, err3 = ringline.exec_capture({ "true" }, { cwd = "/nonexistent" })
        return { p, err, q, err2, c, err3, idle_metrics() }
      end)
      assert.are.same({ nil, "/nonexistent/prog: no such program", nil,
                        "no-such-program-ringline: no such program", nil,
                        "true: no such program or directory", 0, 0, 0 }, r)
    end)

    it("a process that never exits: opts.timeout kills it, then it is reaped", function()
      local r = support.run(function()
        local t0 = ringline.now()
        local p = assert(ringline.exec({ "sleep", "30" }, { timeout = 100 }))
        local a, how, sig = p:wait()
        local took = ringline.now() - t0
        local timedout = p:timedout()
        p:close()
        -- p:wait's own timeout leaves the process running
        local q = assert(ringline.exec({ "sleep", "30" }))
        local w1, w2 = q:wait(0.05)
        local still = proc_state(q:pid()) ~= nil
        q:close()
        return { a, how, sig, timedout, took >= 0.09 and took < 3, w1, w2, still }
      end)
      assert.are.same({ nil, "signal", 9, true, true, nil, "timeout", true }, r)
    end)

    it("a child flooding stdout while nobody reads blocks: memory stays bounded", function()
      local r = support.run(function()
        local window = ringline.config("recv_window")
        local bufsz = ringline.config("recv_buffer_size")
        local p = assert(ringline.exec({ "yes", "flood" }))
        -- the child ends up asleep in write(2) on a full socket
        assert(support.eventually(function() return proc_state(p:pid()) == "S" end))
        ringline.sleep(0.05)
        local w1 = wchar(p:pid())
        local m = ringline.metrics()
        -- still blocked a while later: it wrote nothing more
        ringline.sleep(0.05)
        local w2 = wchar(p:pid())
        local m2 = ringline.metrics()
        -- reading drains it and it goes on
        local got = assert(p.stdout:receive(1000000))
        p:close()
        local a, how, sig = p:wait()
        return { m.accum_bytes <= window + bufsz and m2.accum_bytes <= window + bufsz,
                 w1 == w2 and w1 > 0, m2.recv_pauses > 0, #got, a, how, sig }
      end)
      assert.are.same({ true, true, true, 1000000, nil, "signal", 9 }, r)
    end)

    it("the owning task's end kills and reaps its process (canceled in p:wait)", function()
      local r = support.run(function()
        local pid
        local t = ringline.spawn(function()
          local p = assert(ringline.exec({ "sleep", "30" }))
          pid = p:pid()
          return p:wait()
        end)
        ringline.sleep(0.02)
        assert(proc_state(pid))
        t:cancel()
        local ok, a, b = t:join()
        assert(support.eventually(function() return proc_state(pid) == nil end))
        return { ok, a, b, idle_metrics() }
      end)
      assert.are.same({ true, nil, "canceled", 0, 0, 0 }, r)
    end)

    it("the end of a run kills and reaps what is still running", function()
      local pid = support.run(function()
        local t = ringline.spawn(function()
          local p = assert(ringline.exec({ "sleep", "30" }))
          return p          -- handed to the joiner, which drops it
        end)
        local _, p = t:join()
        return p:pid()
      end)
      assert.is_nil(proc_state(pid))
    end)

    it("exec_capture bounds what it keeps: max_output", function()
      local r = support.run(function()
        local out, err = ringline.exec_capture({ "yes" }, { max_output = 100000 })
        local ok = ringline.exec_capture({ "head", "-c", "100000", "/dev/zero" },
                                         { max_output = 100000 })
        return { out, err, #ok, idle_metrics() }
      end)
      assert.are.same({ nil, "output too large", 100000, 0, 0, 0 }, r)
    end)

    it("a 50 ms ticker keeps firing during a 0.5 s child", function()
      local r = support.run(function()
        local ticks = 0
        local h = ringline.timer.every(0.05, function(premature)
          if not premature then ticks = ticks + 1 end
        end)
        local t0 = ringline.now()
        local out, ok, how, code = ringline.exec_capture({ "sleep", "0.5" })
        assert.are.same({ "", true, "exit", 0 }, { out, ok, how, code })
        local elapsed = ringline.now() - t0
        h:cancel()
        return { ticks, elapsed }
      end)
      local ticks, elapsed = r[1], r[2]
      assert.is_true(elapsed >= 0.45, "elapsed " .. elapsed)
      -- one tick per 50 ms of the wait; generous for a loaded 2-core box
      assert.is_true(ticks >= math.floor(elapsed / 0.05) * 0.5, ticks .. " ticks in " .. elapsed)
      assert.is_true(ticks <= elapsed / 0.05 + 1, ticks .. " ticks in " .. elapsed)
    end)
  end)
end

describe("ringline.exec misuse", function()
  it("raises at the caller's line", function()
    support.run(function()
      for _, bad in ipairs {
        function() ringline.exec("ls") end,
        function() ringline.exec({}) end,
        function() ringline.exec({ "ls", 3 }) end,
        function() ringline.exec({ "ls" }, { stdout = "file" }) end,
        function() ringline.exec({ "ls" }, { stderr = 1 }) end,
        function() ringline.exec({ "ls" }, { bogus = 1 }) end,
        function() ringline.exec({ "ls" }, { env = { ["A=B"] = "x" } }) end,
        function() ringline.exec({ "ls" }, { timeout = -1 }) end,
        function() ringline.exec_capture({ "ls" }, { stdout = "null" }) end,
        function() ringline.exec_capture({ "ls" }, { max_output = -1 }) end,
        function() ringline.exec_capture({ "ls" }, { stdin = "pipe" }) end,
      } do
        local ok, err = pcall(bad)
        assert.is_false(ok)
        assert.matches("exec_spec.lua:%d+: ringline", err)
      end
    end)
  end)

  it("os.execute and io.popen in a run log one warning pointing to ringline.exec", function()
    local log = require "ringline.log"
    local lines = {}
    local old = log.set_sink(function(l) lines[#lines + 1] = l end)
    local exec = require "ringline.exec"
    exec.warned["os.execute"], exec.warned["io.popen"] = nil, nil
    local ok, err = pcall(support.run, function()
      os.execute("true")
      os.execute("true")
      local f = io.popen("true")
      f:close()
    end)
    log.set_sink(old)
    assert(ok, err)
    assert.are.equal(2, #lines, table.concat(lines))
    assert.matches("os.execute blocks the whole worker .* use ringline.exec", lines[1])
    assert.matches("io.popen blocks the whole worker .* use ringline.exec", lines[2])
  end)
end)
