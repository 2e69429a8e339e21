-- Reload on SIGHUP: new workers from the script as it is on disk take the
-- listening sockets over, the old ones drain; under load no request fails.
-- A script that does not load leaves the old workers serving; a script's
-- own SIGHUP handler keeps its behaviour; TLS certificates are read again.
-- The host's readiness messages (sd_notify) are read from a socket bound
-- here. Each case runs the built host as a process.
local ringline = require "ringline"
local support = require "support"
local ops = require "hostops"

local proc = ops.proc

local fds = ops.fds

describe("SIGHUP reload", function()
  teardown(ops.cleanup)

  local function under_load(mode)
    local port = ops.free_port()
    local path = ops.file(ops.script("v1"))
    local note = ops.notify_socket()
    finally(note.close)
    local srv, pid = ops.spawn(path, "127.0.0.1:" .. port, "-w 2 --no-pin " .. mode,
      "NOTIFY_SOCKET=" .. proc.quote(note.env) .. " ")
    local result = ringline.run({ timeout = 20 }, function()
      assert(note.expect("READY=1"), "READY=1 at start")
      local stats, stop = ops.load(port, 8, { fresh = true })
      assert(support.eventually(function() return stats.ok >= 300 end, 5), "load runs")
      ops.write(path, ops.script("v2"))
      local t0 = ringline.now()
      ops.kill(pid, "HUP")
      local reloading = note.expect("RELOADING=1")
      assert(support.eventually(function() return stats.first.v2 ~= nil end, 5),
        "the new code answers")
      local ready = note.expect("READY=1")
      local n = stats.ok
      -- and keeps answering, the old workers gone
      assert(support.eventually(function() return stats.ok >= n + 300 end, 5))
      local v1_after = stats.seen.v1
      assert(support.eventually(function() return stats.ok >= n + 600 end, 5))
      stop()
      return { stats = stats, took = stats.first.v2 - t0, reloading = reloading, ready = ready,
               v1_settled = v1_after == stats.seen.v1 }
    end)
    local code, _, err = srv:stop()
    local s = result.stats
    assert.are.equal(0, s.fail, tostring(s.why))
    assert.is_true(s.seen.v1 > 0 and s.seen.v2 > 0)
    assert.is_true(result.took < 1.0, "SIGHUP to new code: " .. result.took .. " s")
    assert.is_true(result.v1_settled, "only the new generation answers once it serves")
    assert.matches("MONOTONIC_USEC=%d+", result.reloading)
    assert.is_not_nil(result.ready)
    assert.are.equal(0, code, err)
    assert.matches("reloaded: generation 2 serving", err, 1, true)
  end

  it("under keep-alive load: the new code answers within a second, no request fails", function()
    under_load("")
  end)

  it("the same with --accept acceptor: the new workers join the acceptor's groups", function()
    under_load("--accept acceptor")
  end)

  it("a script that does not compile, or fails at start, leaves the old workers serving", function()
    local port = ops.free_port()
    local path = ops.file(ops.script("v1"))
    local note = ops.notify_socket()
    finally(note.close)
    local srv, pid = ops.spawn(path, "127.0.0.1:" .. port, "-w 2 --no-pin",
      "NOTIFY_SOCKET=" .. proc.quote(note.env) .. " ")
    local before
    local out = ringline.run({ timeout = 20 }, function()
      assert(note.expect("READY=1"), "every worker listens")
      before = fds(pid)
      local stats, stop = ops.load(port, 4)
      assert(support.eventually(function() return stats.ok >= 100 end, 5))
      -- a syntax error: refused before any worker starts
      ops.write(path, "local x = \n")
      ops.kill(pid, "HUP")
      local log1 = ops.file_has(srv.errfile, "reload failed")
      -- an error at start: the new workers start, fail, and are retired
      ops.write(path, ops.script("v2", { prelude = "error('no database here')" }))
      ops.kill(pid, "HUP")
      ops.file_has(srv.errfile, "no database here")
      local log2 = ops.file_has(srv.errfile, "the new script failed at start")
      local n = stats.ok
      assert(support.eventually(function() return stats.ok >= n + 200 end, 5))
      stop()
      return { stats = stats, log1 = log1, log2 = log2 }
    end)
    -- the failed generation's threads are joined and its descriptors closed
    local after
    assert(ringline.run(function()
      return support.eventually(function() after = fds(pid); return after == before end, 5)
    end), ("descriptors: %d before, %d after"):format(before, after or -1))
    local code, _, err = srv:stop()
    assert.are.equal(0, code, err)
    local s = out.stats
    assert.are.equal(0, s.fail, tostring(s.why))
    assert.is_nil(s.seen.v2)
    assert.matches("reload failed: " .. path:gsub("%p", "%%%0") .. ":%d+: unexpected symbol", out.log1)
    assert.matches("reload failed: the new script failed at start", out.log2, 1, true)
  end)

  it("a script's own on_signal('HUP') handler runs instead; ringline.reload() reloads", function()
    local port = ops.free_port()
    local handler = [[
ringline.on_signal("HUP", function()
  io.stderr:write("script got HUP\n")
  if io.open(os.getenv("FLAG")) then ringline.reload() end
end)]]
    local flag = os.tmpname()
    os.remove(flag)
    finally(function() os.remove(flag) end)
    local path = ops.file(ops.script("v1", { prelude = handler }))
    local srv, pid = ops.spawn(path, "127.0.0.1:" .. port, "",
      "FLAG=" .. proc.quote(flag) .. " ")
    local out = ringline.run({ timeout = 20 }, function()
      local stats, stop = ops.load(port, 2)
      ops.write(path, ops.script("v2", { prelude = handler }))
      ops.kill(pid, "HUP")
      ops.file_has(srv.errfile, "script got HUP")
      -- the handler ran and did not reload: still v1 after a round trip
      local n = stats.ok
      assert(support.eventually(function() return stats.ok >= n + 50 end, 5))
      local v2_before = stats.seen.v2
      io.open(flag, "w"):close()
      ops.kill(pid, "HUP")
      assert(support.eventually(function() return stats.first.v2 ~= nil end, 5),
        "ringline.reload() from the handler reloads")
      stop()
      return { stats = stats, v2_before = v2_before }
    end)
    local code, _, err = srv:stop()
    assert.are.equal(0, code, err)
    assert.is_nil(out.v2_before)
    assert.are.equal(0, out.stats.fail, tostring(out.stats.why))
  end)

  it("reads TLS certificates again: a certificate swapped on disk is served after SIGHUP", function()
    local dir = os.tmpname()
    os.remove(dir)
    assert(select(2, ops.sh({ "mkdir", "-p", dir })))
    finally(function() ops.sh({ "rm", "-rf", dir }) end)
    local cert, key = dir .. "/cert.pem", dir .. "/key.pem"
    local function mk(cn)
      assert(select(2, ops.sh({ "sh", "-c", ("openssl req -x509 -newkey ec -pkeyopt "
        .. "ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=%s -keyout %s.new -out %s.new "
        .. ">/dev/null 2>&1 && mv %s.new %s && mv %s.new %s"):format(cn, key, cert, key, key,
        cert, cert) })))
    end
    mk("first")
    local port = ops.free_port()
    local path = ops.file(ops.script("v1", { ssl = { cert = cert, key = key } }))
    local srv, pid = ops.spawn(path, "127.0.0.1:" .. port, "")
    local function subject()
      local c = assert(ringline.connect("127.0.0.1", port, { ssl = { verify = false } }))
      local info = c:sslinfo()
      c:send("GET\n")
      local line = c:receive("*l")
      c:close()
      return info.peer_subject, line
    end
    local out = ringline.run({ timeout = 20 }, function()
      local s1 = subject()
      mk("second")
      ops.kill(pid, "HUP")
      local s2
      assert(support.eventually(function()
        s2 = subject()
        return s2 ~= s1
      end, 5), "the new certificate is served")
      return { s1 = s1, s2 = s2 }
    end)
    local code, _, err = srv:stop()
    assert.are.equal(0, code, err)
    assert.matches("CN%s*=%s*first", out.s1)
    assert.matches("CN%s*=%s*second", out.s2)
  end)

  it("tells the service manager STOPPING=1 when the drain begins", function()
    local note = ops.notify_socket()
    finally(note.close)
    local path = ops.file(ops.script("v1"))
    local srv, pid = ops.spawn(path, "127.0.0.1:0", "",
      "NOTIFY_SOCKET=" .. proc.quote(note.env) .. " ")
    local got = ringline.run({ timeout = 10 }, function()
      local ready = note.expect("READY=1")
      ops.kill(pid, "TERM")
      return { ready = ready, stopping = note.expect("STOPPING=1") }
    end)
    local code, _, err = srv:wait()
    assert.are.equal(0, code, err)
    assert.are.equal("READY=1", got.ready)
    assert.are.equal("STOPPING=1", got.stopping)
  end)
end)
