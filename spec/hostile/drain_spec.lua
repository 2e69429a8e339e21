-- Hostile: SIGTERM under load (issue 17, defects 4 and 5). The built host
-- runs a server script as a process; the spec is its clients.
--   * zero-copy sends to peers that never read must not hold a graceful
--     stop past its deadline: exit 0 within --drain-timeout and a margin;
--   * requests that reached the server's kernel before the stop are all
--     answered in full, even those no receive had taken yet.
local ffi = require "ffi"
local bit = require "bit"

local root = debug.getinfo(1, "S").source:match("^@(.*)/spec/hostile/[^/]+$") or "."
if root:sub(1, 1) ~= "/" then root = os.getenv("PWD") .. "/" .. root end
package.path = ("%s/lua/?.lua;%s/lua/?/init.lua;%s/bindings/?.lua;"):format(root, root, root)
  .. package.path
local proc = dofile(root .. "/bindings/test/proc.lua")
local ringline = require "ringline"
local support = require "support"
local build = os.getenv("RINGLINE_BUILD") or (root .. "/build")
local host = build .. "/bindings/ringline-lua"

pcall(ffi.cdef, [[
  struct ringline_drain_sin { uint16_t family; uint16_t port; uint32_t addr; uint8_t zero[8]; };
  struct ringline_drain_ts { long sec; long nsec; };
  int ringline_drain_socket(int domain, int type, int proto) __asm__("socket");
  int ringline_drain_setsockopt(int fd, int level, int name, const int *v, uint32_t len) __asm__("setsockopt");
  int ringline_drain_connect(int fd, const struct ringline_drain_sin *a, uint32_t len) __asm__("connect");
  long ringline_drain_send(int fd, const char *p, size_t n, int flags) __asm__("send");
  long ringline_drain_recv(int fd, char *p, size_t n, int flags) __asm__("recv");
  int ringline_drain_close(int fd) __asm__("close");
  int ringline_drain_clock(int id, struct ringline_drain_ts *ts) __asm__("clock_gettime");
]])
local libc = ffi.C

local function now()
  local ts = ffi.new("struct ringline_drain_ts")
  libc.ringline_drain_clock(1, ts)          -- CLOCK_MONOTONIC
  return tonumber(ts.sec) + tonumber(ts.nsec) / 1e9
end

-- A blocking loopback client that sends `req` (rcvbuf: its receive buffer,
-- set before the handshake so the window stays small).
local function raw_client(port, req, rcvbuf)
  local fd = libc.ringline_drain_socket(2, 1, 0)           -- AF_INET, SOCK_STREAM
  assert(fd >= 0, "socket")
  if rcvbuf then
    local v = ffi.new("int[1]", rcvbuf)
    assert(libc.ringline_drain_setsockopt(fd, 1, 8, v, 4) == 0, "SO_RCVBUF")   -- SOL_SOCKET
  end
  local sin = ffi.new("struct ringline_drain_sin",
    { family = 2, port = bit.rshift(bit.bswap(port), 16), addr = 0x0100007f })
  assert(libc.ringline_drain_connect(fd, sin, 16) == 0, "connect")
  assert(libc.ringline_drain_send(fd, req, #req, 0) == #req, "send")
  return fd
end

-- One that never reads, with a 4 KiB receive buffer.
local function non_reader(port, req)
  return raw_client(port, req, 4096)
end

-- Everything up to EOF (blocking).
local function read_all(fd)
  local buf, parts = ffi.new("char[?]", 4096), {}
  while true do
    local n = tonumber(libc.ringline_drain_recv(fd, buf, 4096, 0))
    if n <= 0 then break end
    parts[#parts + 1] = ffi.string(buf, n)
  end
  return table.concat(parts)
end

local tmpfiles = {}
local function script(text)
  local path = os.tmpname() .. ".lua"
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
  tmpfiles[#tmpfiles + 1] = path
  return path
end

local function spawn(args)
  return proc.spawn(proc.quote(host) .. " " .. args, 30)
end

describe("hostile: SIGTERM under load", function()
  teardown(function()
    for _, p in ipairs(tmpfiles) do os.remove(p) end
  end)

  it("zero-copy sends to peers that never read: exit 0 within the drain timeout", function()
    -- Each reply is 1 MiB of a region, sent zero-copy: the send completes
    -- into the socket's send queue, but the kernel keeps the pages until
    -- the peer takes them, which it never does.
    local s = script [[
      local ringline = require "ringline"
      local N = 1024 * 1024
      local r = assert(ringline.region(N))
      require("ffi").fill(r:ptr(), N, 0x5a)
      local slice = r:slice(0, N)
      local l = assert(ringline.listen("127.0.0.1:0", function(conn)
        assert(conn:receive("*l"))
        assert(conn:send(slice))
        print("sent")
      end))
      local _, port = l:getsockname()
      print("port " .. port)
    ]]
    local srv = spawn("--drain-timeout 1 " .. s)
    local port = tonumber(srv:expect("^port (%d+)$"))
    assert(port, "the server did not start")
    local fds = {}
    for i = 1, 8 do
      fds[i] = non_reader(port, "get\n")
      assert(srv:expect("^sent$"))
    end
    local t0 = now()
    local code, _, err = srv:stop("TERM")
    local took = now() - t0
    for _, fd in ipairs(fds) do libc.ringline_drain_close(fd) end
    assert.are.equal(0, code, err)
    assert.is_true(took < 2.5, ("the stop took %.2f s (--drain-timeout 1)"):format(took))
    assert.matches("drain timeout: resetting what is left", err, 1, true)
  end)

  it("answers every request that reached the server before the stop", function()
    -- recv_window 1 KiB: while the handler is busy with a big reply, most
    -- of the pipelined requests behind it wait in the kernel, not in the
    -- connection's buffer. The "watch" connection's handler prints
    -- "draining" when its receive ends, so the client knows the stop began
    -- before it lets the big reply finish.
    local s = script [[
      local ringline = require "ringline"
      local BLOB = ("0123456789abcdef"):rep(2 * 1024 * 1024)     -- 32 MiB
      local l = assert(ringline.listen("127.0.0.1:0", function(conn)
        while true do
          local line, err = conn:receive("*l")
          if not line then return end
          if line == "watch" then
            conn:send("watching\n")
            local _, why = conn:receive("*l")
            print("draining " .. tostring(why))
            return
          elseif line == "big" then
            assert(conn:send(BLOB))
          else
            assert(conn:send("answer " .. line:match("^req (%d+)") .. "\n"))
          end
        end
      end))
      local _, port = l:getsockname()
      print("port " .. port)
    ]]
    local srv = spawn("--drain-timeout 5 --set recv_window=1024 --set recv_buffer_size=256 " .. s)
    local port = tonumber(srv:expect("^port (%d+)$"))
    assert(port, "the server did not start")
    local NREQ = 300
    local got = ringline.run({ timeout = 20 }, function()
      local watch = assert(ringline.connect("127.0.0.1", port))
      watch:settimeout(10000)
      assert(watch:send("watch\n"))
      assert.are.equal("watching", watch:receive("*l"))
      local c = assert(ringline.connect("127.0.0.1", port))
      c:settimeout(10000)
      local reqs = { "big\n" }
      for i = 1, NREQ do reqs[#reqs + 1] = ("req %d %s\n"):format(i, ("x"):rep(90)) end
      assert(c:send(table.concat(reqs)))
      assert(c:flush())
      -- the handler is in its big send now, the requests behind it unread
      local head = assert(c:receive(65536))
      srv:signal("TERM")
      assert.are.equal("draining closed", srv:expect("^(draining %S+)$"))
      local rest = assert(c:receive(32 * 1024 * 1024 - #head))
      assert.is_true(head .. rest == ("0123456789abcdef"):rep(2 * 1024 * 1024), "the big reply differs")
      local answers = {}
      for i = 1, NREQ do
        local line, err = c:receive("*l")
        if not line then answers.err = err break end
        answers[i] = line
      end
      c:close()
      watch:close()
      return answers
    end)
    assert.is_nil(got.err, "reply lost after " .. #got .. " answers")
    for i = 1, NREQ do assert.are.equal("answer " .. i, got[i]) end
    local code, _, err = srv:wait()
    assert.are.equal(0, code, err)
  end)

  it("in-process: a request in the kernel when the stop begins, not yet read by any receive", function()
    -- The request is sent on a plain socket (on loopback it is in the
    -- server's receive queue when send(2) returns) and the stop starts
    -- before the worker polls again: the handler's receive is woken by the
    -- stop with the bytes still in the kernel. The reply is read after the
    -- run (the worker is gone; the socket holds it).
    local fd
    local got = ringline.run({ timeout = 10 }, function()
      local got = {}
      local receiving = support.event()
      local l = assert(ringline.listen("127.0.0.1:0", function(conn)
        receiving.set()                                  -- runs on into its receive
        local line, err = conn:receive("*l")
        got[#got + 1] = { line, err }
        if line then conn:send("answer " .. line .. "\n") end
        local again, err2 = conn:receive("*l")          -- nothing more: closed
        got[#got + 1] = { again, err2 }
      end))
      local _, port = l:getsockname()
      fd = raw_client(port, "")
      receiving.wait()
      assert(libc.ringline_drain_send(fd, "hello\n", 6, 0) == 6)
      ringline.exit()
      return got
    end)
    local reply = read_all(fd)
    libc.ringline_drain_close(fd)
    assert.are.same({ { "hello" }, { nil, "closed" } }, got)
    assert.are.equal("answer hello\n", reply)
  end)
end)
