-- ringline.nvme: NVMe passthrough (IORING_OP_URING_CMD) to a namespace's
-- generic character device, /dev/ngXnY.
--
--   local dev = assert(ringline.nvme.open("/dev/ng0n1"))
--   local block = assert(dev:read(0, 1))          -- dev:lba_size() bytes
--   assert(dev:write(2048, block))
--   assert(dev:flush())
--   local id = assert(dev:identify())              -- id.model, id.serial, ...
--
-- The core builds each command block (rl_nvme_cmd_*) and submits it on the
-- worker's NVMe ring (SQE128/CQE32, made on first use); RL_EV_NVME carries
-- the result back to the waiting task. The memory a command reads or writes
-- is a 4096-aligned buffer kept alive here until its completion, even when
-- the waiting task was canceled or timed out meanwhile (the kernel owns it
-- until then). Admin commands (identify) go to the controller's device,
-- /dev/nvmeX. None of this has run on a device: see docs/core.md.
local ffi = require "ffi"
local bit = require "bit"
local C = require "ringline.lib"
local sched = require "ringline.sched"
local errors = require "ringline.errors"
local check = require "ringline.check"

local type, tostring, error, setmetatable = type, tostring, error, setmetatable
local ffi_string, ffi_cast = ffi.string, ffi.cast
local errstr = errors.errstr
local wake = sched.wake
local wait_begin, wait_park, wait_end = sched.wait_begin, sched.wait_park, sched.wait_end

local _ = C.rl_nvme_open, C.rl_nvme_submit, C.rl_nvme_close, C.rl_nvme_cmd_rw  -- resolved at load

local U32MAX = 0xffffffff
local READ, WRITE = C.RL_NVME_READ, C.RL_NVME_WRITE
local MAX_BLOCKS = C.RL_NVME_MAX_BLOCKS
local IDSIZE = C.RL_NVME_IDENTIFY_SIZE

local M = {}

local function misuse(msg)
  error("ringline: " .. msg, errors.caller_level())
end

------------------------------------------------------------------------
-- Identify data (pure: tested without a device)
------------------------------------------------------------------------

local function le16(s, off) return s:byte(off + 1) + s:byte(off + 2) * 256 end
local function le32(s, off) return le16(s, off) + le16(s, off + 2) * 65536 end
local function text(s, off, len) return (s:sub(off + 1, off + len):gsub("[%s%z]+$", "")) end

-- The identify controller data structure (CNS 1), 4096 bytes: the fields
-- a user asks for first.
function M.parse_controller(s)
  if type(s) ~= "string" or #s < IDSIZE then return nil, "short identify data" end
  return {
    vid = le16(s, 0), ssvid = le16(s, 2),
    serial = text(s, 4, 20), model = text(s, 24, 40), firmware = text(s, 64, 8),
    mdts = s:byte(77 + 1),   -- max data transfer: 2^mdts minimum pages (0: no limit)
    nn = le32(s, 516),       -- number of namespaces
  }
end

-- The LBA size of a namespace from its identify data (CNS 0): FLBAS names
-- the format in use (bits 0-3, and 5-6 as the high bits since NVMe 2.0),
-- whose LBADS (byte 2 of its LBA format entry at 128 + 4 * index) is the
-- size's power of two.
function M.lba_size(s)
  if type(s) ~= "string" or #s < IDSIZE then return nil, "short identify data" end
  local flbas = s:byte(26 + 1)
  local idx = bit.bor(bit.band(flbas, 0x0f), bit.band(bit.rshift(flbas, 1), 0x30))
  local lbads = s:byte(128 + 4 * idx + 2 + 1)
  if lbads < 9 or lbads > 16 then return nil, "unusable LBA format (2^" .. lbads .. " bytes)" end
  return 2 ^ lbads
end

------------------------------------------------------------------------
-- Devices
------------------------------------------------------------------------

local Dev = {}
local mt = { __index = Dev, __name = "ringline.nvme",
             __tostring = function(d) return "ringline.nvme(" .. d.path .. ")" end }
M.mt = mt

-- RL_EV_NVME: a command completed. Its record keeps the buffer alive.
local function on_nvme(S, ev)
  local w = S.nvme_waits
  local r = w and w[ev.data]
  if not r then return end
  w[ev.data] = nil
  r.res, r.aux = ev.res, ev.aux
  local t = r.task
  if t then wake(S, t, nil) end
end

local function done(r) return r.res ~= nil end

-- A 4096-aligned buffer of n bytes: the pointer and its anchor.
local function aligned(n)
  local raw = ffi.new("uint8_t[?]", n + 4096)
  local addr = ffi_cast("uintptr_t", raw)
  local p = ffi_cast("uint8_t *", raw) + (4096 - tonumber(addr % 4096)) % 4096
  return p, raw
end

local function status_err(res)
  if res < 0 then return errstr(res) end
  -- status code type (bits 8-10) and status code (0-7)
  return ("nvme status 0x%x"):format(res)
end

-- Submit cmd (built by the caller into d.cmd) and wait; the buffer anchor
-- stays referenced by the record until the completion, whatever happens
-- to the wait.
local function submit(d, admin, anchor, what)
  if d.closed then return nil, "closed" end
  local S = d.S
  local t = sched.current(S, what)
  local ok, err = wait_begin(S, t, d.timeout or nil)
  if not ok then return nil, err end
  local tok = (S.nvme_tok or 0) + 1
  if tok > U32MAX then tok = 1 end
  S.nvme_tok = tok
  local rc = C.rl_nvme_submit(S.w, d.id, d.cmd, admin and 1 or 0, tok)
  if rc < 0 then
    wait_end(S, t)
    return nil, errstr(rc)
  end
  local waits = S.nvme_waits
  if not waits then waits = {}; S.nvme_waits = waits end
  local r = { task = t, anchor = anchor, res = nil, aux = 0 }
  waits[tok] = r
  local why = wait_park(S, t, done, r)
  wait_end(S, t)
  r.task = false
  if why then return nil, why end       -- the record (and buffer) stay until the completion
  if r.res ~= 0 then return nil, status_err(r.res) end
  return true
end

local function check_lba(lba, what)
  if type(lba) ~= "number" or lba < 0 or lba % 1 ~= 0 or lba >= 2 ^ 53 then
    misuse(what .. ": lba must be a whole number >= 0")
  end
end

-- read(lba, nblocks): nblocks * lba_size bytes as a string.
function Dev.read(d, lba, nblocks)
  check_lba(lba, "nvme:read")
  if type(nblocks) ~= "number" or nblocks < 1 or nblocks > MAX_BLOCKS or nblocks % 1 ~= 0 then
    misuse("nvme:read: nblocks must be 1.." .. MAX_BLOCKS)
  end
  local len = nblocks * d.bs
  if len > 0xffffffff then misuse("nvme:read: too many bytes for one command") end
  local p, anchor = aligned(len)
  C.rl_nvme_cmd_rw(d.cmd, READ, d.nsid, lba, nblocks, p, len)
  local ok, err = submit(d, false, anchor, "nvme:read")
  if not ok then return nil, err end
  return ffi_string(p, len)
end

-- write(lba, data): data (a string) of a whole number of blocks.
function Dev.write(d, lba, data)
  check_lba(lba, "nvme:write")
  if type(data) ~= "string" then misuse("nvme:write: data must be a string") end
  local len = #data
  if len == 0 or len % d.bs ~= 0 or len / d.bs > MAX_BLOCKS then
    misuse(("nvme:write: data must be 1..%d blocks of %d bytes (got %d bytes)")
      :format(MAX_BLOCKS, d.bs, len))
  end
  local p, anchor = aligned(len)
  ffi.copy(p, data, len)
  C.rl_nvme_cmd_rw(d.cmd, WRITE, d.nsid, lba, len / d.bs, p, len)
  return submit(d, false, anchor, "nvme:write")
end

function Dev.flush(d)
  C.rl_nvme_cmd_flush(d.cmd, d.nsid)
  return submit(d, false, nil, "nvme:flush")
end

-- identify(): the controller's identify data, parsed (raw: the 4096 bytes).
function Dev.identify(d)
  local p, anchor = aligned(IDSIZE)
  C.rl_nvme_cmd_identify(d.cmd, 0, C.RL_NVME_CNS_CONTROLLER, p)
  local ok, err = submit(d, true, anchor, "nvme:identify")
  if not ok then return nil, err end
  local raw = ffi_string(p, IDSIZE)
  local t = M.parse_controller(raw)
  t.raw = raw
  return t
end

function Dev.lba_size(d) return d.bs end
function Dev.nsid(d) return d.nsid end

-- close(): nil, "busy" while a command of a canceled wait is still with
-- the kernel (the end of the run closes it then).
function Dev.close(d)
  if d.closed then return nil, "closed" end
  local S = d.S
  local rc = C.rl_nvme_close(S.w, d.id)
  if rc == -errors.EBUSY then return nil, "busy" end
  d.closed = true
  S.nvmes[d] = nil
  if rc < 0 then return nil, errstr(rc) end
  return true
end

local VALID = { lba_size = true, timeout = true }

-- open(S, path [, opts]): opts.lba_size skips the identify namespace that
-- learns it (which needs the controller's device); opts.timeout (seconds)
-- bounds each command's wait.
function M.open(S, path, opts)
  if type(path) ~= "string" or path == "" then misuse("ringline.nvme.open: path must be a string") end
  check.options(opts, VALID, "ringline.nvme.open")
  local bs = opts and opts.lba_size
  if bs ~= nil and (type(bs) ~= "number" or bs < 512 or bs > 65536 or bs % 512 ~= 0) then
    misuse("ringline.nvme.open: opts.lba_size must be a multiple of 512 up to 65536")
  end
  local timeout = check.seconds(opts and opts.timeout, "ringline.nvme.open: opts.timeout")
  local w = sched.start(S)
  local info = ffi.new("struct rl_nvme_info")
  local rc = C.rl_nvme_open(w, path, info)
  if rc < 0 then
    if rc == -errors.ENOTTY then return nil, path .. ": not an NVMe generic device (/dev/ngXnY)" end
    return nil, path .. ": " .. errstr(rc)
  end
  return M.device(S, path, info.id, info.nsid, info.admin ~= 0, bs, timeout)
end

-- The device object of core device id (rl_nvme_open or rl_nvme_open_fd):
-- learns the LBA size (identify namespace) unless given.
function M.device(S, path, id, nsid, admin, bs, timeout)
  local d = setmetatable({ S = S, id = id, nsid = nsid, path = path, bs = bs or 0,
                           cmd = ffi.new("struct rl_nvme_cmd"), closed = false,
                           timeout = timeout ~= 0 and timeout or false }, mt)
  local nv = S.nvmes
  if not nv then nv = {}; S.nvmes = nv end
  nv[d] = true
  if not bs then
    if not admin then
      d:close()
      return nil, path .. ": its controller device did not open (give opts.lba_size)"
    end
    local p, anchor = aligned(IDSIZE)
    C.rl_nvme_cmd_identify(d.cmd, d.nsid, C.RL_NVME_CNS_NAMESPACE, p)
    local ok, err = submit(d, true, anchor, "ringline.nvme.open")
    local size
    if ok then size, err = M.lba_size(ffi_string(p, IDSIZE)) end
    if not size then
      d:close()
      return nil, path .. ": " .. err
    end
    d.bs = size
  end
  return d
end

local function drain(S)
  local nv = S.nvmes
  if not nv then return end
  for d in pairs(nv) do d:close() end
end

function M.attach(sched_)
  sched_.on_event(C.RL_EV_NVME, on_nvme)
  sched_.on_drain(drain)
end

return M
