-- Binary upgrade on SIGUSR2: a new process of the executable takes the
-- listening sockets over (RINGLINE_INHERIT), the old one drains and exits
-- once it is ready; under load no request fails. A new process that fails
-- leaves the old one serving, its descriptors as before.
local ringline = require "ringline"
local support = require "support"
local ops = require "hostops"

local proc = ops.proc

local fds, alive = ops.fds, ops.alive

describe("SIGUSR2 upgrade", function()
  teardown(ops.cleanup)

  -- GET /healthz on the --metrics port: the status line's code.
  local function healthz(mport)
    local c = ringline.connect("127.0.0.1", mport, { timeout = 2 })
    if not c then return nil end
    c:settimeout(2000)
    c:send("GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    local line = c:receive("*l")
    c:close()
    return line and line:match("^HTTP/1%.%d (%d+)")
  end

  it("a new process takes the sockets over under load; the old one exits 0, no request fails", function()
    local port, mport = ops.free_port(), ops.free_port()
    local path = ops.file(ops.script("v1"))
    local note = ops.notify_socket()
    finally(note.close)
    -- --metrics: the host's own listener goes over to the new process too
    local srv, pid = ops.spawn(path, "127.0.0.1:" .. port,
      "-w 2 --no-pin --metrics 127.0.0.1:" .. mport, "NOTIFY_SOCKET=" .. proc.quote(note.env) .. " ")
    local newpid
    finally(function() if newpid then ops.kill(newpid, "KILL") end end)
    local out = ringline.run({ timeout = 30 }, function()
      assert(note.expect("READY=1"))
      local stats, stop = ops.load(port, 8, { fresh = true })
      assert(support.eventually(function() return stats.ok >= 300 end, 5))
      ops.write(path, ops.script("v2"))
      ops.kill(pid, "USR2")
      local mainpid = note.expect("MAINPID=", 10)
      assert(mainpid, "the new process says MAINPID")
      newpid = tonumber(mainpid:match("MAINPID=(%d+)"))
      assert(support.eventually(function() return stats.first.v2 ~= nil end, 5))
      -- the old process exits by itself
      assert(support.eventually(function() return not alive(pid) end, 10), "the old one exits")
      local n = stats.ok
      assert(support.eventually(function() return stats.ok >= n + 300 end, 5))
      stop()
      return { stats = stats, health = healthz(mport) }
    end)
    local code, stdout, err = srv:wait()
    assert.are.equal(0, code, err)
    assert.matches("upgrade: the new process " .. newpid .. " is ready", err, 1, true)
    assert.are_not.equal(pid, newpid)
    assert.matches("pid " .. newpid .. " port " .. port, stdout, 1, true)
    local s = out.stats
    assert.are.equal(0, s.fail, tostring(s.why))
    assert.is_true(s.seen.v2 > 0)
    assert.are.equal("200", out.health)
    -- the new process stops as usual
    ops.kill(newpid, "TERM")
    assert(ringline.run(function()
      return support.eventually(function() return not alive(newpid) end, 10)
    end), "the new process stops on SIGTERM")
    newpid = nil
  end)

  it("a new process that fails leaves the old one serving, its descriptors as before", function()
    local port = ops.free_port()
    local path = ops.file(ops.script("v1"))
    local note = ops.notify_socket()
    finally(note.close)
    local srv, pid = ops.spawn(path, "127.0.0.1:" .. port, "",
      "NOTIFY_SOCKET=" .. proc.quote(note.env) .. " ")
    local before
    local out = ringline.run({ timeout = 20 }, function()
      assert(note.expect("READY=1"))
      before = fds(pid)
      local stats, stop = ops.load(port, 4)
      ops.write(path, "error('this binary cannot start')")
      ops.kill(pid, "USR2")
      local log = ops.file_has(srv.errfile, "upgrade failed")
      local n = stats.ok
      assert(support.eventually(function() return stats.ok >= n + 200 end, 5))
      stop()
      local after
      support.eventually(function() after = fds(pid); return after == before end, 5)
      return { stats = stats, log = log, after = after }
    end)
    local code, _, err = srv:stop()
    assert.are.equal(0, code, err)
    assert.are.equal(before, out.after)
    assert.matches("upgrade failed: the new process %d+ exited before it was ready", out.log)
    assert.matches("this binary cannot start", out.log, 1, true)
    assert.are.equal(0, out.stats.fail, tostring(out.stats.why))
  end)
end)
