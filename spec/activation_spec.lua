-- systemd socket activation: listening sockets passed from descriptor 3
-- (LISTEN_FDS, LISTEN_PID, LISTEN_FDNAMES) are adopted by the listen whose
-- address matches; one no listen takes is reported. A peer that connected
-- before the host started is served (the socket, and its queue, were
-- systemd's all along). READY=1 goes to NOTIFY_SOCKET once every worker
-- listens.
local ffi = require "ffi"
local bit = require "bit"
local ringline = require "ringline"
local support = require "support"
local ops = require "hostops"

local proc = ops.proc

pcall(ffi.cdef, [[
  struct activation_sin { uint16_t family; uint16_t port; uint32_t addr; uint8_t zero[8]; };
  int activation_socket(int domain, int type, int proto) __asm__("socket");
  int activation_bind(int fd, const struct activation_sin *a, uint32_t len) __asm__("bind");
  int activation_listen(int fd, int backlog) __asm__("listen");
  int activation_getsockname(int fd, struct activation_sin *a, uint32_t *len) __asm__("getsockname");
  int activation_close(int fd) __asm__("close");
]])
local C = ffi.C

-- A listening TCP socket on 127.0.0.1 (the kernel's port), inheritable
-- (no close-on-exec): what systemd would hand over. Returns fd, port.
local function passed_socket()
  local fd = C.activation_socket(2, 1, 0)
  assert(fd >= 0)
  local sin = ffi.new("struct activation_sin", { family = 2, port = 0, addr = 0x0100007f })
  assert(C.activation_bind(fd, sin, 16) == 0)
  assert(C.activation_listen(fd, 64) == 0)
  assert(C.activation_getsockname(fd, sin, ffi.new("uint32_t[1]", 16)) == 0)
  return fd, bit.rshift(bit.bswap(sin.port), 16)
end

describe("socket activation", function()
  teardown(ops.cleanup)

  it("adopts the passed socket whose address matches, serves a peer queued before, reports the other", function()
    local fd, port = passed_socket()
    local fd2, port2 = passed_socket()
    finally(function() C.activation_close(fd); C.activation_close(fd2) end)
    local note = ops.notify_socket()
    finally(note.close)
    local path = ops.file(ops.script("activated"))
    local out = ringline.run({ timeout = 20 }, function()
      -- queued on the socket before any server runs
      local early = assert(ringline.connect("127.0.0.1", port))
      early:settimeout(5000)
      early:send("GET\n")
      -- LISTEN_PID is the host's pid: the shell's, which exec makes the host
      local srv = proc.spawn(("NOTIFY_SOCKET=%s LISTEN_FDS=2 LISTEN_FDNAMES=web:spare "
        .. "ADDR=127.0.0.1:%d sh -c %s 3<&%d 4<&%d"):format(proc.quote(note.env), port,
        proc.quote("LISTEN_PID=$$ exec " .. proc.quote(ops.host) .. " -w 2 --no-pin "
          .. proc.quote(path)), fd, fd2), 30)
      local pid = srv:expect("^pid (%d+) port %d+$")
      assert(pid, "the host listens")
      local ready = note.expect("READY=1")
      local reply = early:receive("*l")
      early:close()
      -- our own copy closed: the host's is the socket now
      C.activation_close(fd)
      fd = -1
      local stats, stop = ops.load(port, 4)
      assert(support.eventually(function() return stats.ok >= 100 end, 5))
      stop()
      local log = ops.file_has(srv.errfile, "matches no listen")
      return { srv = srv, ready = ready, reply = reply, stats = stats, log = log }
    end)
    local code, _, err = out.srv:stop()
    assert.are.equal(0, code, err)
    assert.are.equal("READY=1", out.ready)
    assert.are.equal("activated", out.reply)
    assert.are.equal(0, out.stats.fail, tostring(out.stats.why))
    assert.matches("socket activation: descriptor 4 (127.0.0.1, spare) matches no listen", out.log,
      1, true)
    assert.is_nil(err:find("descriptor 3", 1, true), err)
    -- no bind of its own: the address was taken (by the passed socket)
    assert.is_nil(err:find("address already in use", 1, true), err)
    assert.is_truthy(port2)
  end)

  it("ignores LISTEN_FDS meant for another process (LISTEN_PID)", function()
    local fd, port = passed_socket()
    finally(function() C.activation_close(fd) end)
    local path = ops.file(ops.script("own"))
    -- the host binds the address itself: the passed socket (same port)
    -- is not its own, so the bind fails
    local code, _, err = proc.run(("LISTEN_PID=1 LISTEN_FDS=1 ADDR=127.0.0.1:%d %s %s 3<&%d")
      :format(port, proc.quote(ops.host), proc.quote(path), fd))
    assert.are.equal(1, code)
    assert.matches("address already in use", err, 1, true)
  end)
end)
