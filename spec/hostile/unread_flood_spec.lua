-- Hostile peers: unread floods (issue 17, defect 10). Clients stream into a
-- server that never reads: what the core holds for each connection stays at
-- most its window plus one provided buffer (accum_bytes, the gauge of the
-- receive buffers' allocation, likewise), the flooders' sends stall, and
-- other clients of the same worker keep being served.
local ffi = require "ffi"
local bit = require "bit"
local ringline = require "ringline"
local support = require "support"

-- A flooder outside the worker: a plain nonblocking socket this thread fills
-- up to what the kernel takes (several MB across both socket buffers)
-- before the server's first receive, so the kernel holds far more than the
-- window when receiving starts.
pcall(ffi.cdef, [[
  struct ringline_flood_sin { uint16_t family; uint16_t port; uint32_t addr; uint8_t zero[8]; };
  int ringline_flood_socket(int domain, int type, int proto) __asm__("socket");
  int ringline_flood_connect(int fd, const struct ringline_flood_sin *a, uint32_t len) __asm__("connect");
  long ringline_flood_send(int fd, const char *buf, size_t len, int flags) __asm__("send");
  int ringline_flood_close(int fd) __asm__("close");
]])
local libc = ffi.C
local MSG_DONTWAIT, MSG_NOSIGNAL = 0x40, 0x4000

local function raw_flood(port, chunk)
  local fd = libc.ringline_flood_socket(2, 1, 0)
  assert(fd >= 0, "socket")
  local sin = ffi.new("struct ringline_flood_sin", { family = 2, addr = 0x0100007f,
    port = bit.rshift(bit.bswap(port), 16) })
  assert(libc.ringline_flood_connect(fd, sin, 16) == 0, "connect")
  local total = 0
  while true do
    local n = libc.ringline_flood_send(fd, chunk, #chunk, bit.bor(MSG_DONTWAIT, MSG_NOSIGNAL))
    if n <= 0 then break end
    total = total + tonumber(n)
  end
  return fd, total
end

local run, server, connect = support.run, support.server, support.connect

local WINDOW, BUF, NFLOOD = 65536, 16384, 4

describe("hostile: unread floods", function()
  it("a server that never reads holds at most window + one buffer per connection", function()
    local full, held, accum, pong, queued = run(function()
      local sinks, release = {}, support.event()
      local sink, sport = server(function(c)
        sinks[#sinks + 1] = c
        release.wait()                      -- never reads until released
      end)
      local echo, eport = server(function(c)
        local line = c:receive("*l")
        if line then c:send(line .. "\n") end
      end)
      local base = ringline.metrics().accum_bytes
      local flooders, queued = {}, {}
      local chunk = ("f"):rep(65536)
      for i = 1, NFLOOD do
        flooders[i], queued[i] = raw_flood(sport, chunk)
      end
      -- every sink connection fills its window and then nothing more
      -- arrives: bytes_in stays put over 25 checks in a row
      local last, still = -1, 0
      local full = support.eventually(function()
        if #sinks < NFLOOD then return false end
        for _, c in ipairs(sinks) do
          if c.io.rlen < WINDOW then return false end
        end
        local now = ringline.metrics().bytes_in
        if now ~= last then last, still = now, 0 return false end
        still = still + 1
        return still >= 25
      end, 10)
      local held, accum = {}, ringline.metrics().accum_bytes - base
      for i, c in ipairs(sinks) do held[i] = c.io.rlen end
      -- meanwhile another client is served as usual
      local e = connect(eport)
      assert(e:send("ping\n"))
      local pong = e:receive("*l")
      e:close()
      for _, fd in ipairs(flooders) do libc.ringline_flood_close(fd) end
      release.set()
      sink:close()
      echo:close()
      return full, held, accum, pong, queued
    end, { recv_window = WINDOW, recv_buffer_size = BUF })
    assert.is_true(full)
    for i = 1, NFLOOD do assert.is_true(queued[i] > 4 * (WINDOW + BUF), "flood " .. queued[i]) end
    assert.are.equal(NFLOOD, #held)
    for i = 1, NFLOOD do
      assert.is_true(held[i] >= WINDOW and held[i] <= WINDOW + BUF,
        ("connection %d holds %d bytes (window %d + buffer %d)"):format(i, held[i], WINDOW, BUF))
    end
    -- allocation: the window plus one buffer, page-rounded, per connection
    local per = math.ceil((WINDOW + BUF) / 4096) * 4096
    assert.is_true(accum <= NFLOOD * per, ("accum_bytes %d for %d connections"):format(accum, NFLOOD))
    assert.are.equal("ping", pong)
  end)
end)
