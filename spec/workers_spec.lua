-- Several workers, messages between them, signals and the graceful stop,
-- the host's options for them. The host cases start the built ringline-lua
-- as a process (bindings/test/proc.lua) and talk to it from a ringline loop
-- in this process; the in-process cases run the same Lua code on the one
-- worker of ringline.run.
local ffi = require "ffi"

local root = debug.getinfo(1, "S").source:match("^@(.*)/spec/[^/]+$") or "."
if root:sub(1, 1) ~= "/" then root = os.getenv("PWD") .. "/" .. root end
package.path = ("%s/lua/?.lua;%s/lua/?/init.lua;%s/bindings/?.lua;"):format(root, root, root)
  .. package.path
local proc = dofile(root .. "/bindings/test/proc.lua")
local support = require "support"
local build = os.getenv("RINGLINE_BUILD") or (root .. "/build")
local host = build .. "/bindings/ringline-lua"
local ringline = require "ringline"
local C = require "ringline.lib"
local sched = require "ringline.sched"
local log = require "ringline.log"

local tmpfiles = {}
local function script(text)
  local path = os.tmpname() .. ".lua"
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
  tmpfiles[#tmpfiles + 1] = path
  return path
end

local function ringline_lua(args, env)
  return proc.run((env and env .. " " or "") .. proc.quote(host) .. " " .. args)
end

local function spawn(args)
  return proc.spawn(proc.quote(host) .. " " .. args, 30)
end

-- A loopback port nobody listens on (bound and released here; the server
-- then binds it with SO_REUSEPORT in every worker).
local function free_port()
  return ringline.run(function()
    local l = assert(ringline.listen("127.0.0.1:0", function() end))
    local _, port = l:getsockname()
    l:close()
    return port
  end)
end

-- Reads `n` lines matching pattern (in any order); returns their captures.
local function expect_n(srv, pattern, n)
  local got = {}
  for i = 1, n do
    local caps = { srv:expect(pattern) }
    assert(caps[1], "line " .. i .. " matching " .. pattern .. " missing:\n" .. tostring(caps[2]))
    got[i] = caps
  end
  return got
end

-- The number of CPUs this process may use (what -w auto counts).
local function ncpus()
  local _, out = proc.run("nproc")
  return tonumber(out:match("%d+"))
end

-- Shared by several server scripts: print our pid (signals that timeout(1)
-- does not forward go straight to us).
local PID = [[
local ffi = require "ffi"
pcall(ffi.cdef, "int getpid(void);")
local ringline = require "ringline"
local id = ringline.worker_id()
if id == 0 then print("pid " .. ffi.C.getpid()) end
]]

-- Connects n times to addr (host:port or unix:/path); each server reply is
-- the id of the worker that served it. Returns the count per id.
local function spread(addr, n)
  return ringline.run({ timeout = 20 }, function()
    local count = { ["0"] = 0, ["1"] = 0 }
    local host, port = addr:match("^(.*):(%d+)$")
    local tasks = {}
    for i = 1, n do
      tasks[i] = ringline.spawn(function()
        local c = assert(ringline.connect(host or addr, tonumber(port), { timeout = 5 }))
        c:settimeout(5000)
        local who = assert(c:receive("*a"))
        c:close()
        return who
      end)
    end
    for i = 1, n do
      local ok, who = tasks[i]:join()
      assert(ok, who)
      count[who] = count[who] + 1
    end
    return count
  end)
end

teardown(function()
  for _, p in ipairs(tmpfiles) do os.remove(p) end
end)

describe("ringline-lua -w N", function()
  it("runs the script on every worker, and each accepts some of 100 connections", function()
    local port = free_port()
    local s = script [[
      local ringline = require "ringline"
      local port = tonumber(arg[1])
      assert(ringline.listen("127.0.0.1:" .. port, function(conn)
        conn:send(tostring(ringline.worker_id()))
      end))
      print(("listening %d/%d"):format(ringline.worker_id(), ringline.workers()))
    ]]
    local srv = spawn("-w 2 " .. s .. " " .. port)
    local seen = {}
    for _, caps in ipairs(expect_n(srv, "^listening (%d)/(%d)$", 2)) do
      assert.are.equal("2", caps[2])
      seen[caps[1]] = true
    end
    assert.are.same({ ["0"] = true, ["1"] = true }, seen)
    local served = spread("127.0.0.1:" .. port, 100)
    assert.are.equal(100, served["0"] + served["1"])
    assert.is_true(served["0"] > 0 and served["1"] > 0,
      ("worker 0 served %d, worker 1 served %d"):format(served["0"], served["1"]))
    local code, _, err = srv:stop("TERM")
    assert.are.equal(0, code, err)
  end)

  it("warns once when several workers listen on port 0 (each would get its own port)", function()
    local s = script [[
      local ringline = require "ringline"
      local l = assert(ringline.listen("127.0.0.1:0", function() end))
      l:close()
      l = assert(ringline.listen("127.0.0.1:" .. arg[1], function() end))
      l:close()
    ]]
    local code, _, err = ringline_lua("-w 2 --no-pin " .. s .. " " .. free_port())
    assert.are.equal(0, code, err)
    local _, n = err:gsub("listening on port 0 with 2 workers", "")
    assert.are.equal(1, n, err)
    code, _, err = ringline_lua(s .. " " .. free_port())
    assert.are.equal(0, code, err)
    assert.are.equal("", err)
  end)

  it("-w auto runs one worker per CPU", function()
    local s = script [[
      local ringline = require "ringline"
      if ringline.worker_id() == 0 then print("workers " .. ringline.workers()) end
    ]]
    local code, out, err = ringline_lua("-w auto --no-pin " .. s)
    assert.are.equal(0, code, err)
    assert.are.equal("workers " .. ncpus() .. "\n", out)
  end)

  it("print writes whole lines: lines of workers printing at once never mix", function()
    local s = script [[
      local ringline = require "ringline"
      local id = ringline.worker_id()
      for i = 1, 3000 do print("worker", id, "line", i, ("x"):rep(i % 50)) end
    ]]
    local code, out, err = ringline_lua("-w 2 --no-pin " .. s)
    assert.are.equal(0, code, err)
    local n = { ["0"] = 0, ["1"] = 0 }
    for line in out:gmatch("[^\n]*\n") do
      local w, i, xs = line:match("^worker\t(%d)\tline\t(%d+)\t(x*)\n$")
      assert(w and #xs == tonumber(i) % 50, "mixed line: " .. line)
      n[w] = n[w] + 1
    end
    assert.are.same({ ["0"] = 3000, ["1"] = 3000 }, n)
  end)

  it("exports the host's registry functions to the workers' FFI", function()
    local s = script [[
      local ffi = require "ffi"
      local H = require "ringline.host"
      assert(H == ffi.C, "ringline.host is not ffi.C in the host")
      for _, name in ipairs { "rl_host_register", "rl_host_unregister", "rl_host_post", "rl_host_exit",
                              "rl_host_listen_shared" } do
        assert(pcall(function() return H[name] end), name .. " does not resolve")
      end
      io.write("ok")
    ]]
    local code, out, err = ringline_lua(s)
    assert.are.equal(0, code, err)
    assert.are.equal("ok", out)
    -- and outside the host there is none
    assert.is_false(require "ringline.host")
  end)
end)

describe("one address shared by the workers (an acceptor thread)", function()
  local SERVE_ID = [[
      local ringline = require "ringline"
      local l = assert(ringline.listen(arg[1], function(conn)
        conn:send(tostring(ringline.worker_id()))
      end, arg[2] and { accept = arg[2] } or nil))
      print(("listening %d %s %s"):format(ringline.worker_id(), l:getsockname()))
  ]]

  it("--accept acceptor: one socket (port 0 is one port), connections alternate between workers", function()
    local s = script(SERVE_ID)
    local srv = spawn("-w 2 --no-pin --accept acceptor " .. s .. " 127.0.0.1:0")
    local got = expect_n(srv, "^listening (%d) 127%.0%.0%.1 (%d+)$", 2)
    assert.are.equal(got[1][2], got[2][2])
    assert.are_not.equal(got[1][1], got[2][1])
    local served = spread("127.0.0.1:" .. got[1][2], 100)
    assert.are.same({ ["0"] = 50, ["1"] = 50 }, served)
    local code, _, err = srv:stop("TERM")
    assert.are.equal(0, code, err)
    assert.are.equal("", (err:gsub("[^\n]*pinned[^\n]*\n", "")))
  end)

  it("listen{accept = \"acceptor\"} shares one address while the default stays reuseport", function()
    local s = script(SERVE_ID)
    local srv = spawn("-w 2 --no-pin " .. s .. " 127.0.0.1:0 acceptor")
    local got = expect_n(srv, "^listening (%d) 127%.0%.0%.1 (%d+)$", 2)
    assert.are.equal(got[1][2], got[2][2])
    assert.are.same({ ["0"] = 10, ["1"] = 10 }, spread("127.0.0.1:" .. got[1][2], 20))
    local code, _, err = srv:stop("TERM")
    assert.are.equal(0, code, err)
  end)

  it("a worker can close its shared listener and listen again on the address", function()
    local port = free_port()
    local s = script [[
      local ringline = require "ringline"
      local addr = "127.0.0.1:" .. arg[1]
      local function serve(conn) conn:send(tostring(ringline.worker_id())) end
      local l = assert(ringline.listen(addr, serve))
      if ringline.worker_id() == 1 then
        assert(l:close())
        l = assert(ringline.listen(addr, serve))
      end
      print("listening " .. ringline.worker_id())
    ]]
    local srv = spawn("-w 2 --no-pin --accept acceptor " .. s .. " " .. port)
    expect_n(srv, "^listening %d$", 2)
    assert.are.same({ ["0"] = 10, ["1"] = 10 }, spread("127.0.0.1:" .. port, 20))
    local code, _, err = srv:stop("TERM")
    assert.are.equal(0, code, err)
  end)

  it("every worker closes the address, then listens again: a new socket, served by both", function()
    local port = free_port()
    local s = script [[
      local ringline = require "ringline"
      local addr = "127.0.0.1:" .. arg[1]
      local id = ringline.worker_id()
      local function serve(conn) conn:send(tostring(id)) end
      local other_closed = ringline.semaphore(0)
      ringline.worker.on_message(function() other_closed:post() end)
      assert(assert(ringline.listen(addr, serve)):close())
      assert(ringline.worker.post(1 - id, "closed"))
      assert(other_closed:wait(10))           -- the group is empty now
      assert(ringline.listen(addr, serve))
      print("listening " .. id)
    ]]
    local srv = spawn("-w 2 --no-pin --accept acceptor " .. s .. " " .. port)
    expect_n(srv, "^listening %d$", 2)
    assert.are.same({ ["0"] = 10, ["1"] = 10 }, spread("127.0.0.1:" .. port, 20))
    local code, _, err = srv:stop("TERM")
    assert.are.equal(0, code, err)
  end)

  it("a unix socket with several workers is one socket that every worker serves", function()
    local path = os.tmpname()
    os.remove(path)
    -- worker 1 asks for other options: still the one socket (a second
    -- would replace the first one's file)
    local s = script [[
      local ringline = require "ringline"
      local l = assert(ringline.listen(arg[1], function(conn)
        conn:send(tostring(ringline.worker_id()))
      end, ringline.worker_id() == 1 and { nodelay = false } or nil))
      print(("listening %d %s %s"):format(ringline.worker_id(), l:getsockname()))
    ]]
    local srv = spawn("-w 2 --no-pin " .. s .. " unix:" .. path)
    expect_n(srv, "^listening %d " .. path:gsub("%p", "%%%0") .. " 0$", 2)
    assert.are.same({ ["0"] = 10, ["1"] = 10 }, spread("unix:" .. path, 20))
    local code, _, err = srv:stop("TERM")
    assert.are.equal(0, code, err)
    os.remove(path)
  end)

  it("the acceptor fits the descriptor limit a script's configure fits (max_connections)", function()
    local s = script [[
      local ringline = require "ringline"
      ringline.configure({ max_connections = 1000 })
      local l = assert(ringline.listen(arg[1], function(conn)
        conn:send(tostring(ringline.worker_id()))
      end, { accept = "acceptor" }))
      print(("listening %d %s %s"):format(ringline.worker_id(), l:getsockname()))
    ]]
    -- 8000 descriptors: enough for two workers of 1000, not for a table of
    -- the default 16000
    local srv = proc.spawn("sh -c " .. proc.quote("ulimit -n 8000 && exec " .. proc.quote(host)
      .. " -w 2 --no-pin " .. s .. " 127.0.0.1:0"), 30)
    local got = expect_n(srv, "^listening (%d) 127%.0%.0%.1 (%d+)$", 2)
    assert.are.same({ ["0"] = 5, ["1"] = 5 }, spread("127.0.0.1:" .. got[1][2], 10))
    local code, _, err = srv:stop("TERM")
    assert.are.equal(0, code, err)
  end)

  it("an acceptor that cannot start fails the listens that needed it, not the process", function()
    local s = script [[
      local ringline = require "ringline"
      ringline.configure({ max_connections = 100 })
      local l, err = ringline.listen("127.0.0.1:0", function() end, { accept = "acceptor" })
      print(("worker %d: %s"):format(ringline.worker_id(), l and "listening" or err))
      local l2 = assert(ringline.listen("127.0.0.1:0", function() end))   -- reuseport still works
      l2:close()
    ]]
    -- 1000 descriptors, hard: enough for two workers of 100, not for the
    -- acceptor's table of 1024
    local code, out, err = proc.run("sh -c " .. proc.quote("ulimit -n 1000 && exec "
      .. proc.quote(host) .. " -w 2 --no-pin " .. s))
    assert.are.equal(0, code, err)
    assert.matches("worker 0: too many open files", out, 1, true)
    assert.matches("worker 1: too many open files", out, 1, true)
    assert.matches("cannot start: max_connections", err, 1, true)
  end)

  it("on a kernel that cannot pass connections, listen says why and what to do", function()
    local s = script [[
      local ringline = require "ringline"
      local ok, err = ringline.listen("127.0.0.1:0", function() end, { accept = "acceptor" })
      print(tostring(ok) .. " " .. tostring(err))
      ok, err = ringline.listen("unix:" .. arg[1], function() end)
      print(tostring(ok) .. " " .. tostring(err))
      -- messages between workers still work (an eventfd instead of MSG_RING)
      if ringline.worker_id() == 0 then
        local got = ringline.semaphore(0)
        ringline.worker.on_message(function(from, msg) if msg == "pong" then got:post() end end)
        assert(ringline.worker.post(1, "ping"))
        assert(got:wait(10))
        print("messages ok")
        ringline.worker.broadcast("bye")
      else
        local bye = ringline.semaphore(0)
        ringline.worker.on_message(function(from, msg)
          if msg == "ping" then ringline.worker.post(from, "pong") else bye:post() end
        end)
        assert(bye:wait(10))
      end
    ]]
    local path = os.tmpname()
    os.remove(path)
    local code, out, err = ringline_lua("-w 2 --no-pin " .. s .. " " .. path, "RINGLINE_DISABLE_FEATURES=msg_ring")
    assert.are.equal(0, code, err)
    local _, n = out:gsub("nil the kernel cannot pass connections between workers %([^)]*%); use %-%-accept reuseport\n", "")
    assert.are.equal(2, n, out)
    _, n = out:gsub("nil the kernel cannot pass connections between workers %([^)]*%); listen on a TCP address, or run one worker %(%-w 1%)\n", "")
    assert.are.equal(2, n, out)
    assert.matches("messages ok", out, 1, true)
  end)

  it("reports the bind error of a shared address to every worker's listen", function()
    local port, release = support.stuck_listener()   -- bound without SO_REUSEPORT
    local s = script [[
      local ringline = require "ringline"
      local ok, err = ringline.listen("127.0.0.1:" .. arg[1], function() end, { accept = "acceptor" })
      print("shared " .. tostring(ok) .. " " .. tostring(err))
      local bad, msg = pcall(ringline.listen, "127.0.0.1:0", function() end, { accept = "both" })
      print("bad accept: " .. tostring(not bad and msg))
    ]]
    local code, out, err = ringline_lua("-w 2 --no-pin " .. s .. " " .. port)
    release()
    assert.are.equal(0, code, err)
    local _, n = out:gsub("shared nil address already in use\n", "")
    assert.are.equal(2, n, out)
    assert.matches('bad accept: [^\n]*:4: ringline.listen: opts.accept must be "reuseport" or "acceptor"', out)
  end)
end)

describe("messages between workers", function()
  it("post, broadcast and on_message carry strings in order, and a post to an ended worker is closed", function()
    local s = script [[
      local ringline = require "ringline"
      local id = ringline.worker_id()
      if id == 1 then
        -- worker 1 answers every message, then ends at "bye"
        local done = ringline.semaphore(0)
        ringline.worker.on_message(function(from, msg)
          if msg == "bye" then done:post() return end
          assert(ringline.worker.post(from, "re:" .. msg))
        end)
        assert(done:wait(20))
        return
      end
      local got, all = {}, ringline.semaphore(0)
      ringline.worker.on_message(function(from, msg)
        got[#got + 1] = from .. ">" .. msg
        if #got == 51 then all:post() end
      end)
      for i = 1, 50 do assert(ringline.worker.post(1, "m" .. i)) end
      assert(ringline.worker.post(1, ("x"):rep(100000)))
      assert(all:wait(20))
      for i = 1, 50 do assert(got[i] == "1>re:m" .. i, got[i]) end
      assert(#got[51] == 100005)
      assert(ringline.worker.broadcast("bye") == 1)
      -- worker 1 ends: its inbox closes (bounded wait for that)
      local ok, err
      for _ = 1, 500 do
        ok, err = ringline.worker.post(1, "late")
        if not ok then break end
        ringline.sleep(0.01)
      end
      print("after end: " .. tostring(ok) .. " " .. tostring(err))
      print("bad id: " .. tostring(select(2, pcall(ringline.worker.post, 2, "x"))))
    ]]
    local code, out, err = ringline_lua("-w 2 --no-pin " .. s)
    assert.are.equal(0, code, err)
    assert.matches("after end: nil closed\n", out, 1, true)
    assert.matches("bad id: .-no worker 2 %(ids are 0..1%)", out)
  end)

  it("examples/chat.lua: lines from a client on worker 0 reach clients on worker 1 and back", function()
    local port = free_port()
    local srv = proc.spawn(("PORT=%d BENCH_HOST=127.0.0.1 %s -w 2 --no-pin %s/examples/chat.lua"):format(
      port, proc.quote(host), root), 30)
    expect_n(srv, "^chat server %(worker %d of 2%) listening on 127%.0%.0%.1:" .. port .. "$", 2)
    local result = ringline.run({ timeout = 20 }, function()
      -- join until there is a client on each worker (the kernel picks)
      local on, extra = {}, {}
      for _ = 1, 40 do
        local c = assert(ringline.connect("127.0.0.1", port, { timeout = 5 }))
        c:settimeout(5000)
        local welcome = assert(c:receive("*l"))
        local num, w = welcome:match("^%* welcome #(%d+), %d+ online, on worker (%d)$")
        assert(num, welcome)
        if not on[w] then on[w] = { c = c, num = num } else extra[#extra + 1] = c end
        if on["0"] and on["1"] then break end
      end
      assert(on["0"] and on["1"], "40 clients all went to one worker")
      for _, c in ipairs(extra) do c:close() end
      -- skip the join/leave notices; the first chat line must be the other's
      local function next_chat(c)
        while true do
          local line = assert(c:receive("*l"))
          if line:sub(1, 2) ~= "* " then return line end
        end
      end
      local a, b = on["0"], on["1"]
      assert(a.c:send("hello from worker 0\n"))
      assert.are.equal("#" .. a.num .. ": hello from worker 0", next_chat(b.c))
      assert(b.c:send("hi from worker 1\n"))
      assert.are.equal("#" .. b.num .. ": hi from worker 1", next_chat(a.c))
      b.c:close()
      -- b's leaving is announced on the other worker too
      local left
      repeat left = assert(a.c:receive("*l")) until left == "* #" .. b.num .. " left"
      a.c:close()
      return "done"
    end)
    assert.are.equal("done", result)
    local code, _, err = srv:stop("TERM")
    assert.are.equal(0, code, err)
  end)
end)

-- SIGTERM under load, with the workers' listeners made as `args` says.
local function drain_under_load(args)
    local port = free_port()
    local s = script [[
      local ringline = require "ringline"
      local port = tonumber(arg[1])
      local BIG = 8 * 1024 * 1024
      local block = {}
      for i = 0, 255 do block[#block + 1] = string.char(i) end
      local reply = table.concat(block):rep(BIG / 256)
      assert(ringline.listen("127.0.0.1:" .. port, function(conn)
        local req = conn:receive("*l")
        if req == "big" then
          assert(conn:send(reply))
        elseif req == "idle" then
          conn:send("waiting\n")
          local line, err = conn:receive("*l")     -- blocked when the stop comes
          conn:send("drained: " .. tostring(line) .. " " .. tostring(err) .. "\n")
        end
      end))
      print("listening " .. ringline.worker_id())
    ]]
    local srv = spawn("-w 2 --no-pin " .. args .. " " .. s .. " " .. port)
    expect_n(srv, "^listening %d$", 2)
    local BIG = 8 * 1024 * 1024
    local res = ringline.run({ timeout = 30 }, function()
      local bigs, idles = {}, {}
      for i = 1, 4 do
        local c = assert(ringline.connect("127.0.0.1", port, { timeout = 5 }))
        c:settimeout(10000)
        assert(c:send("big\n"))
        bigs[i] = { c = c, head = assert(c:receive(65536)) }   -- the rest is in flight
      end
      for i = 1, 2 do
        local c = assert(ringline.connect("127.0.0.1", port, { timeout = 5 }))
        c:settimeout(10000)
        assert(c:send("idle\n"))
        assert.are.equal("waiting", c:receive("*l"))
        idles[i] = c
      end
      srv:signal("TERM")
      for i = 1, 2 do
        assert.are.equal("drained: nil closed", idles[i]:receive("*l"))
        assert.are.equal("", idles[i]:receive("*a"))
        idles[i]:close()
      end
      local block = {}
      for i = 0, 255 do block[#block + 1] = string.char(i) end
      local want = table.concat(block):rep(BIG / 256)
      for i = 1, 4 do
        local rest = assert(bigs[i].c:receive("*a"))
        assert.are.equal(BIG, #bigs[i].head + #rest, "connection " .. i .. " lost bytes")
        assert.is_true(bigs[i].head .. rest == want, "connection " .. i .. ": bytes differ")
        bigs[i].c:close()
      end
      -- the listeners are gone: nobody accepts any more (a worker the
      -- stop reaches a moment later may still take one: bounded retries)
      local err
      for _ = 1, 100 do
        local c
        c, err = ringline.connect("127.0.0.1", port, { timeout = 5 })
        if not c then break end
        c:close()
        ringline.sleep(0.01)
      end
      return err
    end)
    local code, _, err = srv:wait()
    assert.are.equal(0, code, err)
    assert.are.equal("connection refused", res)
end

describe("signals and the graceful stop", function()
  it("SIGTERM under load: listeners close, idle readers get closed, replies in flight are delivered, exit 0", function()
    drain_under_load("")
  end)

  it("the same with --accept acceptor: the shared socket closes with the last listener", function()
    drain_under_load("--accept acceptor")
  end)

  it("a second SIGTERM while draining exits 1 at once, saying so", function()
    local s = script(PID .. [[
      local l = assert(ringline.listen("127.0.0.1:0", function(conn)
        local _, err = conn:receive("*l")
        print("draining: " .. tostring(err))
        while true do ringline.sleep(0.05) end     -- never finishes
      end))
      local _, port = l:getsockname()
      local c = assert(ringline.connect("127.0.0.1", port))
      print("ready")
      ringline.sleep(3600)
    ]])
    local srv = spawn("--drain-timeout 60 " .. s)
    local pid = tonumber(srv:expect("^pid (%d+)$"))
    assert(srv:expect("^ready$"))
    srv:signal("TERM")
    assert.are.equal("closed", srv:expect("^draining: (%S+)$"))
    srv:signal("TERM", pid)
    local code, _, err = srv:wait()
    assert.are.equal(1, code, err)
    assert.matches("second SIGTERM: exiting now", err, 1, true)
  end)

  it("the drain timeout resets what is left and still exits 0", function()
    local s = script(PID .. [[
      local l = assert(ringline.listen("127.0.0.1:0", function(conn)
        conn:receive("*l")
        while true do ringline.sleep(0.02) end     -- ignores the stop
      end))
      local _, port = l:getsockname()
      local c = assert(ringline.connect("127.0.0.1", port))
      ringline.spawn(function()
        local data, err = c:receive("*a")          -- reset at the deadline
        print("client: " .. tostring(data) .. " " .. tostring(err))
      end)
      print("ready")
    ]])
    local srv = spawn("--drain-timeout 0.3 " .. s)
    assert(srv:expect("^ready$"))
    local t0 = os.time()
    srv:signal("TERM")
    local code, _, err = srv:wait()
    assert.are.equal(0, code, err)
    assert.is_true(os.time() - t0 <= 3)
    assert.matches("drain timeout: resetting what is left", err, 1, true)
  end)

  it("on_signal(\"HUP\") runs the handler on every worker; USR1 without one is logged", function()
    local s = script(PID .. [[
      ringline.on_signal("HUP", function(name)
        print(("got %s on %d"):format(name, ringline.worker_id()))
      end)
      assert(ringline.listen("127.0.0.1:0", function() end))
      print("ready " .. id)
    ]])
    local srv = spawn("-w 2 --no-pin " .. s)
    -- worker 1 may say "ready" before worker 0 says its pid: take both kinds
    local pid, ready = nil, 0
    while not pid or ready < 2 do
      local what, n = srv:expect("^(%a+) (%d+)$")
      assert(what, n)
      if what == "pid" then pid = tonumber(n) elseif what == "ready" then ready = ready + 1 end
    end
    srv:signal("HUP", pid)
    local seen = {}
    for _, caps in ipairs(expect_n(srv, "^got HUP on (%d)$", 2)) do seen[caps[1]] = true end
    assert.are.same({ ["0"] = true, ["1"] = true }, seen)
    srv:signal("USR1", pid)
    local code, _, err = srv:stop("TERM")
    assert.are.equal(0, code, err)
    -- USR1 had no handler: each worker said so (it came before the TERM)
    local _, n = err:gsub("SIGUSR1 ignored", "")
    assert.are.equal(2, n, err)
  end)

  it("ringline.exit(3) on one worker stops all of them; the status is 3", function()
    local s = script [[
      local ringline = require "ringline"
      assert(ringline.listen("127.0.0.1:0", function() end))
      if ringline.worker_id() == 1 then
        ringline.sleep(0.01)
        return ringline.exit(3)
      end
      print("worker 0 serving")
    ]]
    local code, out, err = ringline_lua("-w 2 --no-pin " .. s)
    assert.are.equal(3, code, err)
    assert.are.equal("worker 0 serving\n", out)
  end)
end)

describe("failures", function()
  it("a worker failing at load stops the process with status 1, naming it", function()
    local s = script [[
      local ringline = require "ringline"
      if ringline.worker_id() == 1 then error("worker one refuses") end
      assert(ringline.listen("127.0.0.1:0", function() end))
    ]]
    local code, _, err = ringline_lua("-w 2 --no-pin " .. s)
    assert.are.equal(1, code)
    assert.matches("ringline-lua: worker 1: " .. s .. ":2: worker one refuses", err, 1, true)
    assert.not_matches("ringline-lua: worker 0:", err, 1, true)
  end)

  it("a script that does not compile is reported once, not once per worker", function()
    local s = script "local x = = 1\n"
    local code, _, err = ringline_lua("-w 2 --no-pin " .. s)
    assert.are.equal(1, code)
    local _, n = err:gsub("'='", "")
    assert.are.equal(1, n, err)
  end)

  it("a raise at the top level after serving a while stops everything with status 1", function()
    local s = script [[
      local ringline = require "ringline"
      assert(ringline.listen("127.0.0.1:0", function() end))
      if ringline.worker_id() == 0 then
        ringline.sleep(0.02)
        error("late failure")
      end
    ]]
    local code, _, err = ringline_lua("-w 2 --no-pin " .. s)
    assert.are.equal(1, code)
    assert.matches("worker 0: " .. s .. ":5: late failure", err, 1, true)
  end)

  it("a handler that raises costs only its connection", function()
    local s = script [[
      local ringline = require "ringline"
      local l = assert(ringline.listen("127.0.0.1:0", function(conn)
        local line = conn:receive("*l")
        if line == "boom" then error("handler exploded") end
        conn:send("ok " .. line .. "\n")
      end))
      local _, port = l:getsockname()
      local a = assert(ringline.connect("127.0.0.1", port))
      a:send("boom\n")
      print("a: " .. tostring(select(2, a:receive("*l"))))
      local b = assert(ringline.connect("127.0.0.1", port))
      b:send("fine\n")
      print("b: " .. tostring(b:receive("*l")))
      return ringline.exit(0)
    ]]
    local code, out, err = ringline_lua(s)
    assert.are.equal(0, code, err)
    assert.matches("a: connection reset by peer\nb: ok fine\n", out, 1, true)
    assert.matches("handler exploded", err, 1, true)
  end)
end)

describe("processes a script starts", function()
  it("get an empty signal mask and default dispositions: SIGTERM ends them", function()
    local s = script [[
      local p = io.popen("grep -E '^Sig(Blk|Ign)' /proc/self/status")
      io.write(p:read("*a"))
      assert(p:close())
      -- a child that SIGTERM must end; status 143 = 128 + SIGTERM
      print("execute " .. os.execute("kill -TERM $$; sleep 5"))
      local w = assert(io.popen("cat > /dev/null", "w"))
      assert(w:write("x"))
      assert(w:close())
    ]]
    local code, out, err = ringline_lua("-w 2 --no-pin " .. s)
    assert.are.equal(0, code, err)
    local blk, ign = {}, {}
    for mask in out:gmatch("SigBlk:%s*(%x+)") do blk[#blk + 1] = tonumber(mask, 16) end
    for mask in out:gmatch("SigIgn:%s*(%x+)") do ign[#ign + 1] = tonumber(mask:sub(-8), 16) end
    assert.are.same({ 0, 0 }, blk)
    for _, m in ipairs(ign) do   -- SIGPIPE (13), SIGINT (2), SIGTERM (15), SIGHUP (1)
      for _, sig in ipairs { 1, 2, 13, 15 } do
        assert.are.equal(0, bit.band(m, bit.lshift(1, sig - 1)), "signal " .. sig .. " ignored")
      end
    end
    local _, n = out:gsub("execute 15\n", "")
    assert.are.equal(2, n, out)   -- os.execute gives the wait status: killed by 15
  end)

  it("keep a signal ignored when the host itself started with it ignored (nohup)", function()
    local s = script [[
      local p = io.popen("grep -E '^SigIgn' /proc/self/status")
      io.write(p:read("*a"))
      p:close()
      print("mode rw: " .. tostring(io.popen("true", "rw")))
    ]]
    local code, out, err = proc.run("trap '' HUP; exec " .. proc.quote(host) .. " " .. s)
    assert.are.equal(0, code, err)
    local ign = tonumber(out:match("SigIgn:%s*(%x+)"):sub(-8), 16)
    assert.are.equal(1, bit.band(ign, 1), "SIGHUP not ignored: " .. out)        -- kept
    assert.are.equal(0, bit.band(ign, bit.lshift(1, 14)), "SIGTERM ignored")   -- default
    assert.matches("mode rw: nil\n", out, 1, true)
  end)

  it("ringline.exec starts them the same way: mask empty, defaults, SIGHUP kept under nohup", function()
    local s = script [[
      local ringline = require "ringline"
      local out = assert(ringline.exec_capture({ "grep", "-E", "^Sig(Blk|Ign)", "/proc/self/status" }))
      io.write(out)
      -- SIGTERM, blocked in every thread of the host, reaches the child
      local p = assert(ringline.exec({ "sleep", "30" }, { stdout = "null" }))
      p:kill("TERM")
      print("exec " .. table.concat({ tostring(select(1, p:wait())), select(2, p:wait()) }, " "))
    ]]
    local code, out, err = proc.run("trap '' HUP; exec " .. proc.quote(host) .. " --no-pin -w 2 " .. s)
    assert.are.equal(0, code, err)
    local n = 0
    for blk, ign in out:gmatch("SigBlk:%s*(%x+)%s+SigIgn:%s*(%x+)") do
      n = n + 1
      assert.are.equal(0, tonumber(blk:sub(-8), 16), out)
      ign = tonumber(ign:sub(-8), 16)
      assert.are.equal(1, bit.band(ign, 1), "SIGHUP not ignored: " .. out)   -- kept
      for _, sig in ipairs { 2, 13, 15 } do                                   -- defaults
        assert.are.equal(0, bit.band(ign, bit.lshift(1, sig - 1)), "signal " .. sig .. " ignored")
      end
    end
    assert.are.equal(2, n, out)
    local _, k = out:gsub("exec nil signal 15\n", "")
    assert.are.equal(2, k, out)
  end)
end)

describe("options", function()
  local function bad(args, ...)
    local code, out, err = ringline_lua(args)
    assert.are.equal(2, code, "status for " .. args)
    assert.are.equal("", out)
    for _, m in ipairs { ... } do assert.matches(m, err, 1, true) end
    assert.matches("--help", err, 1, true)
  end

  it("rejects bad worker counts with status 2, naming the option and range", function()
    bad("-w 0 x.lua", "-w", "1..1024 or 'auto'", "'0'")
    bad("-w 1025 x.lua", "'1025'")
    bad("-w two x.lua", "'two'")
    bad("-w -3 x.lua", "'-3'")
    bad("--workers=0 x.lua", "'0'")
    bad("-w", "'-w' needs a value")
    bad("--workers", "'--workers' needs a value")
  end)

  it("rejects a bad --accept mode with status 2", function()
    bad("--accept both x.lua", "--accept", "reuseport or acceptor", "'both'")
    bad("--accept", "'--accept' needs a mode")
  end)

  it("rejects bad drain timeouts with status 2", function()
    bad("--drain-timeout -1 x.lua", "--drain-timeout", "0..86400", "'-1'")
    bad("--drain-timeout soon x.lua", "'soon'")
    bad("--drain-timeout=1e9 x.lua", "'1e9'")
    bad("--drain-timeout nan x.lua", "'nan'")
    bad("--drain-timeout", "'--drain-timeout' needs seconds")
  end)

  it("rejects --pin with a value, unknown options, and bad --set keys, values and forms", function()
    bad("--pin=yes x.lua", "unknown option '--pin=yes'")
    bad("--workers2 x.lua", "unknown option '--workers2'")
    bad("--set nope=1 x.lua", "nope")
    bad("--set=recv_window x.lua", "key=value")
    bad("--set sq_entries=lots x.lua", "sq_entries", "'lots'")
    local k = ringline.config_keys().send_slots
    bad(("--set send_slots=%d x.lua"):format(k.max + 1), "send_slots", k.min .. ".." .. k.max)
  end)

  it("--help lists every option with its default", function()
    local code, out = ringline_lua("--help")
    assert.are.equal(0, code)
    for _, opt in ipairs { "-w N|auto", "(default 1;", "--pin, --no-pin", "--drain-timeout s",
                           "--accept MODE", "reuseport (default)",
                           "(default 5)", "--set key=value", "SIGHUP", "ringline.exit" } do
      assert.matches(opt, out, 1, true)
    end
  end)

  it("accepts --drain-timeout 0 and fractions, and -w with --set", function()
    local s = script [[print(require("ringline.hostinfo").drain_timeout, require("ringline").config("recv_window"))]]
    local code, out, err = ringline_lua("--drain-timeout=0.25 -w 1 --set recv_window=128k " .. s)
    assert.are.equal(0, code, err)
    assert.are.equal("0.25\t131072\n", out)
  end)
end)

describe("pinning", function()
  -- Each worker prints the CPUs its thread may run on.
  local s = script [[
    local ringline = require "ringline"
    for line in io.lines("/proc/thread-self/status") do
      local cpus = line:match("^Cpus_allowed_list:%s*(%S+)")
      if cpus then print(("cpus %d %s"):format(ringline.worker_id(), cpus)) end
    end
  ]]

  local function run(args, env)
    local code, out, err = proc.run((env or "") .. " " .. proc.quote(host) .. " " .. args .. " " .. s)
    assert.are.equal(0, code, err)
    local cpus, pinned = {}, {}
    for w, list in out:gmatch("cpus (%d+) (%S+)") do cpus[tonumber(w)] = list end
    for w, cpu in err:gmatch("ringline worker (%d+): pinned to CPU (%d+)") do pinned[tonumber(w)] = cpu end
    return cpus, pinned, err
  end

  it("--pin puts each worker on its own CPU and reports it, one line per worker", function()
    local n = ncpus()
    local w = math.min(n, 2)
    local cpus, pinned = run("-w " .. w .. " --pin")
    local used = {}
    for i = 0, w - 1 do
      assert.is_not_nil(pinned[i], "no pinning line for worker " .. i)
      assert.are.equal(pinned[i], cpus[i], "worker " .. i .. " runs elsewhere than reported")
      assert.is_nil(used[pinned[i]], "two workers on CPU " .. pinned[i])
      used[pinned[i]] = true
    end
  end)

  it("the acceptor thread keeps every CPU, whichever pinned worker starts it", function()
    local a = script [[
      local ffi = require "ffi"
      pcall(ffi.cdef, "int getpid(void);")
      local ringline = require "ringline"
      local l = assert(ringline.listen("127.0.0.1:0", function() end, { accept = "acceptor" }))
      if ringline.worker_id() == 0 then
        local p = io.popen(("for t in /proc/%d/task/*; do echo \"$(cat $t/comm) "
          .. "$(grep Cpus_allowed_list $t/status | cut -f2)\"; done"):format(ffi.C.getpid()))
        io.write(p:read("*a"))
        p:close()
      end
      l:close()
    ]]
    local _, all = proc.run("grep Cpus_allowed_list /proc/self/status")
    all = all:match("Cpus_allowed_list:%s*(%S+)")
    local code, out, err = ringline_lua("-w 2 --pin " .. a)
    assert.are.equal(0, code, err)
    assert.matches("ringline%-w0 %d", out)
    assert.matches("\nringline%-accept " .. all:gsub("%p", "%%%0") .. "\n", "\n" .. out)
  end)

  it("--no-pin leaves the workers on every CPU and reports nothing", function()
    local _, all = proc.run("grep Cpus_allowed_list /proc/self/status")
    all = all:match("Cpus_allowed_list:%s*(%S+)")
    local cpus, pinned = run("-w 2 --no-pin")
    assert.are.same({}, pinned)
    assert.are.equal(all, cpus[0])
    assert.are.equal(all, cpus[1])
  end)

  it("pins by default when there are as many workers as CPUs (more than one)", function()
    local n = ncpus()
    local _, pinned = run("-w " .. n)
    local k = 0
    for _ in pairs(pinned) do k = k + 1 end
    assert.are.equal(n > 1 and n or 0, k)
    _, pinned = run("-w 1")
    assert.are.same({}, pinned)
  end)

  it("follows the SMT topology it is given (siblings last)", function()
    -- a fake topology in which CPUs 0 and 1 are one core: worker 0 gets the
    -- core's first CPU, worker 1 the sibling (there is no second core)
    local dir = os.tmpname()
    os.remove(dir)
    finally(function() os.execute("rm -rf " .. proc.quote(dir)) end)
    for i = 0, 1 do
      os.execute(("mkdir -p %s/cpu%d/topology && echo 0-1 > %s/cpu%d/topology/thread_siblings_list")
        :format(dir, i, dir, i))
    end
    if ncpus() < 2 then return end
    local _, pinned = run("-w 2 --pin", "RINGLINE_SYSFS_CPU=" .. proc.quote(dir))
    assert.are.same({ [0] = "0", [1] = "1" }, pinned)
  end)
end)

describe("in one process (ringline.run)", function()
  it("has one worker, id 0, that can post to itself", function()
    local logged = {}
    local old = log.set_sink(function(line) logged[#logged + 1] = line end)
    local ok, got = pcall(ringline.run, { timeout = 10 }, function()
      assert.are.equal(0, ringline.worker.id())
      assert.are.equal(1, ringline.worker.count())
      local got, five = {}, ringline.semaphore(0)
      -- messages posted before a handler exists wait for it
      assert(ringline.worker.post(0, "early"))
      ringline.sleep(0.01)
      ringline.worker.on_message(function(from, msg)
        if msg == "raise" then error("handler raised") end
        got[#got + 1] = from .. ":" .. msg
        if #got == 5 then five:post() end
      end)
      for i = 1, 3 do assert(ringline.worker.post(0, "m" .. i)) end
      assert(ringline.worker.post(0, "raise"))
      assert(ringline.worker.post(0, ""))
      assert.are.equal(0, ringline.worker.broadcast("to nobody else"))
      assert(five:wait(5))
      return got
    end)
    log.set_sink(old)
    assert(ok, got)
    assert.are.same({ "0:early", "0:m1", "0:m2", "0:m3", "0:" }, got)
    -- the raising handler was reported like any task's error, and cost only its message
    assert.matches("handler raised", table.concat(logged), 1, true)
  end)

  it("checks its arguments", function()
    ringline.run({ timeout = 10 }, function()
      assert.has_error(function() ringline.worker.post(1, "x") end)
      assert.has_error(function() ringline.worker.post(0, 5) end)
      assert.has_error(function() ringline.worker.post(0.5, "x") end)
      assert.has_error(function() ringline.worker.on_message(5) end)
      assert.has_error(function() ringline.exit(256) end)
      assert.has_error(function() ringline.exit(-1) end)
      assert.has_error(function() ringline.exit("x") end)
      assert.has_error(function() ringline.on_signal("TERM", print) end)
      assert.has_error(function() ringline.on_signal("INT", print) end)
      assert.has_error(function() ringline.on_signal("KILL", print) end)
      assert.has_error(function() ringline.on_signal("HUP", 5) end)
      assert.is_nil(ringline.on_signal("SIGUSR1", print))
      assert.are.equal(print, ringline.on_signal("usr1", nil))
    end)
    assert.has_error(function() ringline.exit() end)
    assert.is_false(ringline.exiting())
  end)

  it("runs on_signal handlers for a signal in the inbox", function()
    local names = ringline.run({ timeout = 10 }, function()
      local names, two = {}, ringline.semaphore(0)
      local function h(name)
        names[#names + 1] = name
        if #names == 2 then two:post() end
      end
      ringline.on_signal("HUP", h)
      ringline.on_signal("USR2", h)
      local w = sched.start(sched.state())
      assert(C.rl_worker_post(w, 1, 2, nil, 0, nil) == 0)    -- SIGHUP
      assert(C.rl_worker_post(w, 12, 2, nil, 0, nil) == 0)   -- SIGUSR2
      assert(two:wait(5))
      return names
    end)
    assert.are.same({ "HUP", "USR2" }, names)
  end)

  it("stops gracefully on ringline.exit: listeners close, idle readers get closed, "
    .. "timers run premature, outbound reads go on", function()
    local r = ringline.run({ timeout = 10 }, function()
      local r = {}
      local l = assert(ringline.listen("127.0.0.1:0", function(conn)
        local line = conn:receive("*l")
        if line == "slow" then
          conn:send("working\n")
          ringline.sleep(0.05)                       -- answers after the stop began
          conn:send("late answer\n")
          return
        end
        conn:send("ready\n")
        local data, err, partial = conn:receive("*l")
        r.idle = { data, err, partial }
        conn:send("bye\n")
      end))
      local _, port = l:getsockname()
      local idle = assert(ringline.connect("127.0.0.1", port))
      assert(idle:send("hi\npart"))
      assert.are.equal("ready", idle:receive("*l"))
      local slow = assert(ringline.connect("127.0.0.1", port))
      assert(slow:send("slow\n"))
      assert.are.equal("working", slow:receive("*l"))
      local slow_task = ringline.spawn(function()
        return slow:receive("*l")                    -- outbound: not cut short
      end)
      ringline.timer.at(3600, function(premature) r.premature = premature end)
      assert.is_false(ringline.exiting())
      assert.is_true(ringline.exit())
      assert.is_true(ringline.exiting())
      assert.are.same({ nil, "process exiting" }, { ringline.timer.at(1, print) })
      r.bye = idle:receive("*l")
      r.slow = { slow_task:join() }
      r.refused = select(2, ringline.connect("127.0.0.1", port))
      return r
    end)
    assert.are.same({ nil, "closed", "part" }, r.idle)
    assert.are.equal("bye", r.bye)
    assert.are.same({ true, "late answer" }, r.slow)
    assert.is_true(r.premature)
    assert.are.equal("connection refused", r.refused)
  end)

  it("lets guarded (zero-copy) sends in flight finish during a stop and releases their guards", function()
    local N = 4 * 1024 * 1024
    local got, inflight = ringline.run({ timeout = 10 }, function()
      local reg = ringline.region(N)
      ffi.fill(reg:ptr(), N, 0x61)
      local l = assert(ringline.listen("127.0.0.1:0", function(conn)
        conn:receive("*l")
        assert(conn:send("head:", reg:slice(0, N)))
      end))
      local _, port = l:getsockname()
      local c = assert(ringline.connect("127.0.0.1", port))
      assert(c:send("go\n"))
      local head = assert(c:receive(65536))        -- the rest is still in flight
      ringline.exit()
      local rest = assert(c:receive("*a"))
      local body = head .. rest
      -- guards come back after the kernel's zero-copy notifications
      local deadline = ringline.now() + 5
      while reg:inflight() > 0 and ringline.now() < deadline do ringline.sleep(0.005) end
      return body, reg:inflight()
    end)
    assert.are.equal(5 + N, #got)
    assert.is_true(got == "head:" .. ("a"):rep(N), "bytes differ")
    assert.are.equal(0, inflight)
  end)

  it("ends a stop at the drain timeout, resetting what is left, without raising", function()
    local lines = {}
    local old = log.set_sink(function(line) lines[#lines + 1] = line end)
    local ok, err = pcall(ringline.run, { timeout = 10, drain_timeout = 0.1 }, function()
      ringline.spawn(function()
        while true do ringline.sleep(0.01) end
      end)
      ringline.exit()
    end)
    log.set_sink(old)
    assert.is_true(ok, err)
    assert.matches("drain timeout: resetting what is left %(1 task", table.concat(lines))
  end)
end)
