-- ringline.nvme without a device (this machine has none; the device test is
-- core/test/test_nvme_device.c, skipped by ctest here): the identify data
-- parsers on synthetic data, the refusals of open, misuse, and the whole
-- Lua path of a command (build, submit on the worker's NVMe ring, the
-- RL_EV_NVME wake-up, the result) over /dev/null standing in for a device
-- through rl_nvme_open_fd.
local ffi = require "ffi"
local ringline = require "ringline"
local nvme = require "ringline.nvme"
local support = require "support"

pcall(ffi.cdef, [[
  int open(const char *path, int flags, ...);
]])
local O_RDWR, O_CLOEXEC = 2, 0x80000

-- 4096 bytes with the given bytes at offsets.
local function page(fields)
  local t = {}
  for i = 1, 4096 do t[i] = "\0" end
  for off, s in pairs(fields) do
    for i = 1, #s do t[off + i] = s:sub(i, i) end
  end
  return table.concat(t)
end

describe("ringline.nvme identify data", function()
  it("parses the controller's fields", function()
    local s = page {
      [0] = "\x4d\x14", [2] = "\x4d\x14",
      [4] = "S1234567890         ", [24] = ("Example NVMe SSD"):rep(1) .. (" "):rep(24),
      [64] = "FW1.0   ", [77] = "\5", [516] = "\1\0\0\0",
    }
    local c = assert(nvme.parse_controller(s))
    assert.are.same({ vid = 0x144d, ssvid = 0x144d, serial = "S1234567890",
                      model = "Example NVMe SSD", firmware = "FW1.0", mdts = 5, nn = 1 }, c)
    assert.are.same({ nil, "short identify data" }, { nvme.parse_controller("x") })
  end)

  it("finds the LBA size of the format in use (FLBAS, both index fields)", function()
    -- format 1 in use: 4096-byte blocks (LBADS 12); format 0: 512 (9)
    local s = page { [26] = "\1", [128 + 2] = "\9", [132 + 2] = "\12" }
    assert.are.equal(4096, nvme.lba_size(s))
    assert.are.equal(512, nvme.lba_size(page { [26] = "\0", [128 + 2] = "\9" }))
    -- index 17: low bits 1, high bits (5-6) 1 -> 0x11
    local hi = page { [26] = string.char(0x21), [128 + 4 * 17 + 2] = "\13" }
    assert.are.equal(8192, nvme.lba_size(hi))
    assert.are.same({ nil, "unusable LBA format (2^0 bytes)" }, { nvme.lba_size(page {}) })
  end)
end)

local function fd_count()
  local d = io.popen("ls /proc/self/fd")  -- counts ls's own: compared with itself
  local n = 0
  for _ in d:lines() do n = n + 1 end
  d:close()
  return n
end

describe("ringline.nvme.open", function()
  local fds0
  before_each(function() fds0 = fd_count() end)
  after_each(function() assert.are.equal(fds0, fd_count()) end)

  it("refuses what is not an NVMe generic device, clearly", function()
    local r = support.run(function()
      local a, ea = ringline.nvme.open("/dev/null")
      local b, eb = ringline.nvme.open("/nonexistent/ng0n1")
      return { a, ea, b, eb, ringline.metrics().nvme_inflight }
    end)
    assert.are.same({ nil, "/dev/null: not an NVMe generic device (/dev/ngXnY)",
                      nil, "/nonexistent/ng0n1: no such file or directory", 0 }, r)
  end)

  it("raises on misuse at the caller's line", function()
    support.run(function()
      for _, bad in ipairs {
        function() ringline.nvme.open() end,
        function() ringline.nvme.open("/dev/ng0n1", { lba_size = 1000 }) end,
        function() ringline.nvme.open("/dev/ng0n1", { bogus = 1 }) end,
      } do
        local ok, err = pcall(bad)
        assert.is_false(ok)
        assert.matches("nvme_spec.lua:%d+: ringline", err)
      end
    end)
  end)
end)

describe("an NVMe command's way through the worker (/dev/null for a device)", function()
  local fds0
  before_each(function() fds0 = fd_count() end)
  after_each(function() assert.are.equal(fds0, fd_count()) end)

  it("read, write, flush and identify complete and wake their task; nothing is left in flight", function()
    local r = support.run(function()
      local S = require("ringline.sched").state()
      local w = require("ringline.sched").start(S)
      local fd = ffi.C.open("/dev/null", O_RDWR + O_CLOEXEC)
      local afd = ffi.C.open("/dev/null", O_RDWR + O_CLOEXEC)
      assert(fd >= 0 and afd >= 0)
      local id = require("ringline.lib").rl_nvme_open_fd(w, fd, afd, 1)
      assert(id >= 0)
      local d = assert(nvme.device(S, "/dev/null", id, 1, true, 512))
      local out = {}
      -- a kernel whose /dev/null implements uring_cmd completes each with
      -- 0 (the buffer untouched: zeros); an older one refuses them
      local data, err = d:read(7, 2)
      out.read = data and #data or err
      local ok, werr = d:write(7, ("x"):rep(1024))
      out.write = ok or werr
      out.flush = d:flush() or "refused"
      local id_, ierr = d:identify()
      out.identify = id_ and id_.vid or ierr
      out.inflight = ringline.metrics().nvme_inflight
      assert(pcall(d.write, d, 0, "short") == false)   -- not whole blocks: misuse
      out.close = d:close()
      out.again = { d:read(0, 1) }
      return out
    end)
    if r.read == 1024 then
      assert.are.same({ read = 1024, write = true, flush = true, identify = 0, inflight = 0,
                        close = true, again = { nil, "closed" } }, r)
    else
      assert.are.equal(0, r.inflight)
      assert.is_string(r.read)
      assert.is_true(r.close)
    end
  end)
end)
