-- Shared helpers for the specs (require "support"; spec/helper.lua puts
-- spec/ on package.path).
local ffi = require "ffi"
local bit = require "bit"
local ringline = require "ringline"

local M = {}

-- ringline.run with a deadline, so a bug hangs nothing. Task errors are
-- collected; unless opts.errors_ok, the first one is raised after the run
-- (an assertion failing inside a handler task then fails the spec).
function M.run(fn, opts)
  opts = opts or {}
  local errs = {}
  local ro = { timeout = opts.timeout or 15 }
  for k, v in pairs(opts) do
    if k ~= "errors_ok" and k ~= "timeout" then ro[k] = v end
  end
  ro.on_error = function(err, tb) errs[#errs + 1] = { err = err, tb = tb } end
  local r = { n = 0 }
  local function capture(...) r = { n = select("#", ...), ... } end
  capture(ringline.run(ro, fn))
  if not opts.errors_ok and errs[1] then
    local e = errs[1].err
    if type(e) == "table" then error(e, 0) end
    error(errs[1].tb, 0)
  end
  return unpack(r, 1, r.n)
end

-- A listener on a free loopback port; returns it and the port.
function M.server(handler, opts)
  local lst = assert(ringline.listen("127.0.0.1:0", handler, opts))
  local _, port = lst:getsockname()
  return lst, port
end

function M.connect(port, opts)
  return assert(ringline.connect("127.0.0.1", port, opts))
end

-- n deterministic pseudo-random bytes (an LCG), different per seed.
function M.pattern(n, seed)
  local buf = ffi.new("uint8_t[?]", n)
  local x = (seed or 1) * 2654435761 % 4294967296
  for i = 0, n - 1 do
    x = (x * 1103515245 + 12345) % 2147483648
    buf[i] = x % 251
  end
  return ffi.string(buf, n)
end

-- Send s one byte per send, each handed to the kernel before the next, so
-- the peer sees it in many small arrivals.
function M.dribble(conn, s)
  for i = 1, #s do
    assert(conn:send(s:sub(i, i)))
    assert(conn:flush())
    ringline.sleep(0)
  end
end

-- Wait (bounded) until pred() is true, checking after each short sleep.
-- For states that settle asynchronously (a close completes in the core),
-- not a stand-in for synchronising tasks.
function M.eventually(pred, limit)
  local deadline = ringline.now() + (limit or 5)
  while not pred() do
    if ringline.now() > deadline then return false end
    ringline.sleep(0.002)
  end
  return true
end

-- A listening socket that never accepts, with backlog 0: once its accept
-- queue holds one connection the kernel drops further SYNs, so a connect
-- to it hangs. Returns the port and a function that closes the socket.
function M.stuck_listener()
  pcall(ffi.cdef, [[
    struct ringline_spec_sin { uint16_t family; uint16_t port; uint32_t addr; uint8_t zero[8]; };
    int ringline_spec_socket(int domain, int type, int proto) __asm__("socket");
    int ringline_spec_bind(int fd, const struct ringline_spec_sin *a, uint32_t len) __asm__("bind");
    int ringline_spec_listen(int fd, int backlog) __asm__("listen");
    int ringline_spec_getsockname(int fd, struct ringline_spec_sin *a, uint32_t *len) __asm__("getsockname");
    int ringline_spec_close(int fd) __asm__("close");
  ]])
  local C = ffi.C
  local fd = C.ringline_spec_socket(2, 1, 0)            -- AF_INET, SOCK_STREAM
  assert(fd >= 0, "socket")
  local sin = ffi.new("struct ringline_spec_sin", { family = 2, port = 0, addr = 0x0100007f })
  assert(C.ringline_spec_bind(fd, sin, 16) == 0, "bind")
  assert(C.ringline_spec_listen(fd, 0) == 0, "listen")
  assert(C.ringline_spec_getsockname(fd, sin, ffi.new("uint32_t[1]", 16)) == 0, "getsockname")
  local port = bit.rshift(bit.bswap(sin.port), 16)
  return port, function() C.ringline_spec_close(fd) end
end

-- Connect to a stuck listener until a connect hangs: fills its queue. The
-- connections made are returned (close them).
function M.fill_queue(port)
  local conns = {}
  for _ = 1, 8 do
    local c = ringline.connect("127.0.0.1", port, { timeout = 0.05 })
    if not c then return conns end
    conns[#conns + 1] = c
  end
  error("the stuck listener kept accepting")
end

-- A one-shot event between tasks: wait() parks until set(v). Built on the
-- scheduler's park/wake (ringline has no public semaphore yet).
function M.event()
  local sched = require "ringline.sched"
  local ev = { done = false, value = nil, waiters = {} }
  function ev.set(v)
    ev.done, ev.value = true, v
    local S = sched.state()
    for _, t in ipairs(ev.waiters) do sched.wake(S, t, nil) end
    ev.waiters = {}
  end
  function ev.wait()
    local S = sched.state()
    local t = S.current
    while not ev.done do
      ev.waiters[#ev.waiters + 1] = t
      sched.park(S, t)
    end
    return ev.value
  end
  return ev
end

return M
