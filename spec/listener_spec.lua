-- ringline.listen: the listener object, handler tasks and their connections'
-- lifetime, handler errors, per-listener caps, many concurrent connections,
-- and the worker's counters returning to idle after a load.
local ringline = require "ringline"
local support = require "support"

local run, server, connect = support.run, support.server, support.connect

describe("ringline.listen", function()
  it("returns a listener with getsockname() and close()", function()
    local r = run(function()
      local lst = assert(ringline.listen("127.0.0.1:0", function() end))
      local host, port = lst:getsockname()
      local ok = lst:close()
      local again = { lst:close() }
      local name = { lst:getsockname() }
      return { host, port, ok, again, name, tostring(lst):match("^ringline.listener") }
    end)
    assert.are.equal("127.0.0.1", r[1])
    assert.is_true(r[2] > 0 and r[2] < 65536)
    assert.is_true(r[3])
    assert.are.same({ nil, "closed" }, r[4])
    assert.are.same({ nil, "closed" }, r[5])
    assert.are.equal("ringline.listener", r[6])
  end)

  it("accepts a port number and \":port\"", function()
    local r = run(function()
      local a = assert(ringline.listen(0, function(c) c:send("A") end))
      local b = assert(ringline.listen(":0", function(c) c:send("B") end))
      local _, pa = a:getsockname()
      local hb, pb = b:getsockname()
      local ca, cb = connect(pa), connect(pb)
      local out = ca:receive(1) .. cb:receive(1)
      ca:close(); cb:close(); a:close(); b:close()
      return out, hb
    end)
    assert.are.equal("AB", r)
  end)

  it("returns nil, err for an address it cannot use, and raises on misuse", function()
    local r = run(function()
      local lst, port = server(function() end)
      local a, b = ringline.listen("127.0.0.1:" .. port, function() end, { reuseport = false })
      local c, d = ringline.listen("not an address", function() end)
      lst:close()
      return { a, b, c, d,
               (pcall(ringline.listen, "127.0.0.1:0")),
               (pcall(ringline.listen, true, function() end)),
               (pcall(ringline.listen, 70000, function() end)),
               (pcall(ringline.listen, 0, function() end, { max_connections = -1 })) }
    end)
    assert.is_nil(r[1])
    assert.are.equal("address already in use", r[2])
    assert.is_nil(r[3])
    assert.are.equal("string", type(r[4]))
    assert.are.same({ false, false, false, false }, { r[5], r[6], r[7], r[8] })
  end)

  it("a listener whose socket fails is dropped; an event for an earlier one with its id is not", function()
    local ffi = require "ffi"
    local sched = require "ringline.sched"
    local C_ = require "ringline.lib"
    pcall(ffi.cdef, [[
      int ringline_spec_shutdown(int fd, int how) __asm__("shutdown");
      struct ringline_spec_sin2 { uint16_t family; uint16_t port; uint32_t addr; uint8_t zero[8]; };
      int ringline_spec_getsockname2(int fd, struct ringline_spec_sin2 *a, uint32_t *len) __asm__("getsockname");
    ]])
    -- our listening socket on port, among the process's descriptors
    local function fd_of(port)
      local sin, len = ffi.new("struct ringline_spec_sin2"), ffi.new("uint32_t[1]")
      for fd = 3, 4096 do
        len[0] = 16
        if ffi.C.ringline_spec_getsockname2(fd, sin, len) == 0 and sin.family == 2
           and bit.rshift(bit.bswap(sin.port), 16) == port then
          return fd
        end
      end
    end
    local r = run(function()
      local old, port = server(function() end)
      -- a listening socket shut down for reading fails its accept for good
      assert(ffi.C.ringline_spec_shutdown(assert(fd_of(port)), 0) == 0)
      assert(support.eventually(function() return old.closed end))
      local again = { old:close() }
      -- a new listener takes the freed id; a late event for the old one
      -- (same id, the old generation) must leave it alone
      local new, nport = server(function(c) c:send("still here") end)
      assert(new.id == old.id and new.gen ~= old.gen)
      sched.dispatch[C_.RL_EV_LISTENER](sched.state(), { slot = old.id, gen = old.gen, res = -22 })
      -- and a late accept of the old one is not the new one's connection
      sched.dispatch[C_.RL_EV_ACCEPTED](sched.state(), { slot = 0, gen = 12345, data = old.id, aux = old.gen })
      assert(new.nconns == 0 and new.refused == 0)
      local c = connect(nport)
      local reply = c:receive("*a")
      c:close()
      local open = not new.closed
      sched.dispatch[C_.RL_EV_LISTENER](sched.state(), { slot = new.id, gen = new.gen, res = -22 })
      -- that one was made up: the core's listener is still there
      require("ringline.lib").rl_listener_close(sched.state().w, new.id)
      return { again, reply, open, new.closed }
    end)
    assert.are.same({ nil, "closed" }, r[1])
    assert.are.equal("still here", r[2])
    assert.is_true(r[3])
    assert.is_true(r[4])
  end)

  it("close stops accepting: a new connect is refused", function()
    local a, b = run(function()
      local lst, port = server(function() end)
      lst:close()
      return ringline.connect("127.0.0.1", port)
    end)
    assert.are.same({ nil, "connection refused" }, { a, b })
  end)

  -- A reload's retiring worker releases its listener (ringline.worker);
  -- the peers the core accepts for it after that (before the accept's
  -- cancel, or queued peers its sweep takes) come when nothing else is
  -- left to run: the run goes on until the core let the listener go, so
  -- their handlers run (they used to be spawned in the teardown's drain,
  -- which never runs tasks: the peer waited for the drain's deadline).
  it("a released listener's late peer is served though nothing else is left to run", function()
    local ffi = require "ffi"
    pcall(ffi.cdef, [[
      struct ringline_spec_sin3 { uint16_t family; uint16_t port; uint32_t addr; uint8_t zero[8]; };
      int ringline_spec_socket3(int domain, int type, int proto) __asm__("socket");
      int ringline_spec_connect3(int fd, const struct ringline_spec_sin3 *a, uint32_t len) __asm__("connect");
      long ringline_spec_read3(int fd, char *buf, size_t n) __asm__("read");
      int ringline_spec_close3(int fd) __asm__("close");
    ]])
    local C = ffi.C
    local fd = -1
    run(function()
      local lst, port = server(function(c) c:send("late\n") end)
      -- a blocking connect: the kernel queues the peer before the
      -- worker's accept ever ran
      fd = C.ringline_spec_socket3(2, 1, 0)
      assert(fd >= 0, "socket")
      local sin = ffi.new("struct ringline_spec_sin3",
        { family = 2, port = require("bit").rshift(require("bit").bswap(port), 16), addr = 0x0100007f })
      assert(C.ringline_spec_connect3(fd, sin, 16) == 0, "connect")
      assert(lst:_release())
    end, { drain_timeout = 1 })
    -- the run returned cleanly (not an unclean teardown) and the peer got
    -- its line, then the close
    local buf = ffi.new("char[16]")
    local got = {}
    while true do
      local n = tonumber(C.ringline_spec_read3(fd, buf, 16))
      if n <= 0 then break end
      got[#got + 1] = ffi.string(buf, n)
    end
    C.ringline_spec_close3(fd)
    assert.are.equal("late\n", table.concat(got))
  end)

  it("the connection closes after flushing when the handler returns", function()
    local N = 4 * 1024 * 1024
    local r = run(function()
      local lst, port = server(function(c)
        c:send(support.pattern(N, 3))          -- queued; the handler returns at once
      end)
      local c = connect(port)
      local data = c:receive(N)
      local after = { c:receive(1) }
      c:close()
      lst:close()
      return { data == support.pattern(N, 3), after }
    end)
    assert.is_true(r[1])
    assert.are.same({ nil, "closed", "" }, r[2])
  end)

  it("a handler that raises: the error is reported, only its connection goes, the worker goes on", function()
    local errs = {}
    local r = run(function()
      ringline.on_error(function(err, tb) errs[#errs + 1] = { err, tb } end)
      local lst, port = server(function(c)
        local line = c:receive("*l")
        if line == "die" then error("handler died on purpose") end
        c:send("ok:", line, "\n")
      end)
      local good = connect(port)
      local bad = connect(port)
      assert(bad:send("die\n"))
      local a, b = bad:receive("*a")
      assert(good:send("fine\n"))
      local g = good:receive("*l")
      local third = connect(port)
      assert(third:send("again\n"))
      local t3 = third:receive("*l")
      good:close(); bad:close(); third:close()
      lst:close()
      return { a, b, g, t3 }
    end, { errors_ok = true })
    assert.are.equal(1, #errs)
    assert.matches("handler died on purpose", errs[1][1])
    assert.matches("stack traceback", errs[1][2])
    assert.is_nil(r[1])                          -- reset (or closed) at once
    assert.is_truthy(r[2] == "connection reset by peer" or r[2] == "closed")
    assert.are.equal("ok:fine", r[3])
    assert.are.equal("ok:again", r[4])
  end)

  it("max_connections: connections over the cap are closed at once", function()
    local r = run(function()
      local release = support.event()
      local lst, port = server(function(c)
        c:send("hello\n")
        release.wait()
      end, { max_connections = 2 })
      local c1, c2 = connect(port), connect(port)
      assert.are.equal("hello", c1:receive("*l"))
      assert.are.equal("hello", c2:receive("*l"))
      local c3 = connect(port)
      local a, b = c3:receive("*l")
      local refused = lst.refused
      release.set()
      c1:close(); c2:close(); c3:close()
      -- under the cap again: a new connection is served
      assert(support.eventually(function() return lst:connections() == 0 end))
      local c4 = connect(port)
      local d = c4:receive("*l")
      c4:close()
      lst:close()
      return { a, b, refused, d }
    end)
    assert.is_nil(r[1])
    assert.is_truthy(r[2] == "connection reset by peer" or r[2] == "closed")
    assert.are.equal(1, r[3])
    assert.are.equal("hello", r[4])
  end)

  it("max_connections = 0 is no cap of the listener's own", function()
    local r = run(function()
      local lst, port = server(function(c) c:send("hello\n") end, { max_connections = 0 })
      local c = connect(port)
      local line, err = c:receive("*l")
      c:close()
      lst:close()
      return { line, err, lst.refused }
    end)
    assert.are.same({ "hello", nil, 0 }, { r[1], r[2], r[3] })
  end)

  it("opts.nodelay = false and reuseport are accepted", function()
    local r = run(function()
      local lst = assert(ringline.listen("127.0.0.1:0", function(c) c:send("x") end,
        { nodelay = false, reuseport = true, backlog = 16 }))
      local _, port = lst:getsockname()
      local c = connect(port)
      local d = c:receive(1)
      c:close()
      lst:close()
      return d
    end)
    assert.are.equal("x", r)
  end)
end)

describe("load", function()
  it("1000 concurrent connections in one worker, then the counters return to idle", function()
    local N = 1000
    local RECV_BUFFERS = 512
    local busy, idle = run(function()
      local lst, port = server(function(c)
        while true do
          local d = c:receiveany(4096)
          if not d then return end
          c:send(d)
        end
      end)
      -- Phase 1: every client connects and completes one round trip, and
      -- keeps its connection open (returned to the main task).
      local tasks = {}
      for i = 1, N do
        tasks[i] = ringline.spawn(function()
          local c = connect(port, { timeout = 10 })
          local msg = ("client %d\n"):format(i)
          assert(c:send(msg))
          assert.are.equal(msg:sub(1, -2), c:receive("*l"))
          return c
        end)
      end
      local conns = {}
      for i = 1, N do
        local ok, c = tasks[i]:join()
        assert(ok, c)
        conns[i] = c
      end
      local busy = ringline.metrics()
      -- Phase 2: all at once open; now close them all.
      for i = 1, N do conns[i]:close() end
      assert(support.eventually(function()
        local m = ringline.metrics()
        return m.conns_open == 0 and m.send_slots_used == 0 and m.send_bytes_queued == 0
           and m.accum_bytes == 0 and m.recv_buffers_free == RECV_BUFFERS
      end, 10))
      lst:close()
      local idle = ringline.metrics()
      return busy, idle
    end, { max_connections = 2 * N + 16, listen_backlog = 4096, recv_buffers = RECV_BUFFERS,
           timeout = 40 })
    assert.are.equal(2 * N, busy.conns_open)
    assert.are.equal(N, busy.conns_accepted)
    assert.are.equal(N, busy.conns_connected)
    assert.are.equal(0, idle.conns_open)
    assert.are.equal(RECV_BUFFERS, idle.recv_buffers_free)
  end)

  it("metrics are back at idle after a load with big transfers and resets", function()
    local RECV_BUFFERS = 64
    local idle = run(function()
      local lst, port = server(function(c)
        local d = c:receive("*a")
        if d then c:send(d) end
      end)
      local ts = {}
      for i = 1, 20 do
        ts[i] = ringline.spawn(function()
          local c = connect(port)
          local msg = support.pattern(100000 + i * 997, i)
          c:send(msg)
          if i % 5 == 0 then
            c:close("reset")                   -- abandon mid-exchange
            return true
          end
          c:shutdown("send")
          local back = c:receive("*a")
          c:close()
          return back == msg
        end)
      end
      for i = 1, 20 do
        local ok, good = ts[i]:join()
        assert(ok and good, "client " .. i)
      end
      lst:close()
      assert(support.eventually(function() return ringline.metrics().conns_open == 0 end, 10))
      ringline.sleep(0)
      return ringline.metrics()
    end, { recv_buffers = RECV_BUFFERS })
    assert.are.equal(0, idle.conns_open)
    assert.are.equal(0, idle.send_slots_used)
    assert.are.equal(0, idle.send_heap_chunks)
    assert.are.equal(0, idle.send_bytes_queued)
    assert.are.equal(0, idle.accum_bytes)
    assert.are.equal(RECV_BUFFERS, idle.recv_buffers_free)
    assert.are.equal(0, idle.timers_active)
  end)
end)
