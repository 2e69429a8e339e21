-- ringline.fs: files through the ring.
--
--   local f = assert(ringline.fs.open("/var/www/index.html", "r"))
--   local body = f:read(f:size())
--   f:close()
--
-- Every call queues one core file operation (rl_fs_* / rl_file_*: OPENAT,
-- READ, WRITE, FSYNC, STATX, ... in the ring, or the fallback pool) and
-- parks the task until its RL_EV_FILE, in the scheduler's one wait: other
-- tasks and connections run meanwhile, a file's timeout (f:settimeout, ms)
-- and task:cancel() end the wait with nil, "timeout" / nil, "canceled".
--
-- Anchors: the core writes into (or reads from) memory the call names
-- until the event. Each operation's record keeps that memory (a
-- string.buffer, the strings written, a region) and the file reachable
-- until the event arrives, also when the waiting task gave up (timeout,
-- cancel): the record stays in S.fs.ops until then, and an open that
-- completes for nobody has its descriptor closed there.
local ffi = require "ffi"
local bit = require "bit"
local buffer = require "string.buffer"
local C = require "ringline.lib"
local errors = require "ringline.errors"
local check = require "ringline.check"
local region = require "ringline.region"
local fs_op = require "ringline.fs_op"
local paths = require "ringline.fs_path"

local type, tostring, error, setmetatable, getmetatable = type, tostring, error, setmetatable, getmetatable
local ffi_new, ffi_cast, ffi_string, ffi_gc = ffi.new, ffi.cast, ffi.string, ffi.gc
local band, bor = bit.band, bit.bor
local errstr = errors.errstr

local _ = C.rl_fs_open, C.rl_file_read, C.rl_file_write, C.rl_file_readv, C.rl_file_writev,
  C.rl_file_fsync, C.rl_file_stat_now, C.rl_fs_open_now, C.rl_file_close, C.rl_file_close_now

local O_RDONLY, O_WRONLY, O_RDWR = C.RL_O_RDONLY, C.RL_O_WRONLY, C.RL_O_RDWR
local O_CREAT, O_EXCL, O_TRUNC, O_APPEND = C.RL_O_CREAT, C.RL_O_EXCL, C.RL_O_TRUNC, C.RL_O_APPEND
local O_DIRECT, O_DIRECTORY = C.RL_O_DIRECT, C.RL_O_DIRECTORY
local ERANGE, EINVAL = C.RL_ERANGE, C.RL_EINVAL
local EAGAIN_NOW = -C.RL_EAGAIN   -- rl_fs_open_now: "use the ring"
local MAX_OP = 2 ^ 30          -- bytes per read/write operation (the core's length is 32-bit)
local MAX_IOV = 1024
local CHUNK = 65536            -- lines() and readfile's read-ahead
local SCRATCH_MAX = 1048576    -- reads up to this size reuse the file's buffer

local M = {}

local function misuse(msg)
  error("ringline.fs: " .. msg, errors.caller_level())
end

-- Operations: ringline.fs_op (begin, await, the token table, RL_EV_FILE)
local state, begin, await, need_task = fs_op.state, fs_op.begin, fs_op.await, fs_op.need_task
local stat_table, check_path = paths.stat_table, paths.check_path

------------------------------------------------------------------------
-- Files
------------------------------------------------------------------------

local File = {}
local File_mt = { __index = File, __name = "ringline.file",
  __tostring = function(f)
    return ("ringline.file(%s%s)"):format(f.path, f.closed and ", closed" or "")
  end }
M.File_mt = File_mt

local function is_file(x) return getmetatable(x) == File_mt end
M.is_file = is_file

local function check_file(f, what)
  if getmetatable(f) ~= File_mt then misuse("file:" .. what .. ": not a file (use f:" .. what .. ")") end
end

-- io.open's modes plus "x" (exclusive create) and "d" (O_DIRECT).
local modes = {}   -- mode string -> { flags, append, direct }: parsed once

local function parse_mode_new(mode)
  if type(mode) ~= "string" then misuse("open: mode must be a string, got " .. type(mode)) end
  local base, plus, rest = mode:match("^([rwax])(%+?)([bxd]*)$")
  if not base then misuse("open: bad mode '" .. mode .. "' (r, w, a, r+, w+, a+, with x and d)") end
  local flags
  if base == "r" then flags = plus == "+" and O_RDWR or O_RDONLY
  elseif base == "w" or base == "x" then flags = bor(plus == "+" and O_RDWR or O_WRONLY, O_CREAT, O_TRUNC)
  else flags = bor(plus == "+" and O_RDWR or O_WRONLY, O_CREAT, O_APPEND) end
  if base == "x" or rest:find("x", 1, true) then
    if base == "r" then misuse("open: 'x' creates a file: use it with w (\"wx\")") end
    flags = bor(flags, O_EXCL)
  end
  local direct = rest:find("d", 1, true) ~= nil
  if direct then flags = bor(flags, O_DIRECT) end
  return flags, base == "a", direct
end

local function parse_mode(mode)
  if mode == nil then mode = "r" end
  local m = modes[mode]
  if m then return m[1], m[2], m[3] end
  if type(mode) ~= "string" then misuse("open: mode must be a string, got " .. type(mode)) end
  local flags, append, direct = parse_mode_new(mode)
  modes[mode] = { flags, append, direct }
  return flags, append, direct
end


-- A file collected while open is closed: its guard (an int holding the
-- descriptor) has one shared finalizer, no closure per file.
local function guard_close(g) C.rl_file_close_now(g[0]) end

function M.open(path, mode, perm)
  if type(path) ~= "string" then misuse("open: path must be a string") end
  local flags, append, direct = parse_mode(mode)
  if perm ~= nil and (type(perm) ~= "number" or perm < 0 or perm > 4095 or perm % 1 ~= 0) then
    misuse("open: perm must be an integer 0..4095 (0644 is 420)")
  end
  -- what the ring would open at once (the path in the dentry cache, no
  -- create) is opened now: no round trip through the loop
  local S = need_task("ringline.fs.open")
  local fd, err = C.rl_fs_open_now(S.w, path, flags), nil
  if fd == EAGAIN_NOW then
    local t, tok, rec
    S, t, tok, rec = begin("open")
    if not S then return nil, t end
    rec.open = true
    fd, err = await(S, t, tok, rec, C.rl_fs_open(S.w, path, flags, perm or 420, tok))
  elseif fd < 0 then
    fd, err = nil, errstr(fd)
  end
  if not fd then
    if direct and err == errstr(EINVAL) then err = "direct I/O not supported here" end
    return nil, err
  end
  local f = setmetatable({ S = S, fd = fd, path = path, pos = 0, append = append, direct = direct,
    align = 1, closed = false, timeout = false, rbuf = false, scratch = false,
    ro = band(flags, 3) == O_RDONLY,
    proxy = ffi_gc(ffi_new("int[1]", fd), guard_close) }, File_mt)
  state(S).files[f] = true
  if direct then
    -- the alignment direct I/O wants (STATX_DIOALIGN; 512 when unknown)
    local st = f:stat()
    local a = st and st.dio_offset_align or 0
    local m = st and st.dio_mem_align or 0
    f.align = math.max(a > 0 and a or 512, m > 0 and m or 512)
  end
  return f
end

-- The file's timeout for every call on it (ms; 0 or nil: none).
function File.settimeout(f, ms)
  check_file(f, "settimeout")
  check.milliseconds(ms, "file:settimeout: timeout")
  f.timeout = ms and ms > 0 and ms / 1000 or false
end

local function closed_err(f)
  if f.closed then return "closed" end
  if f.S.dead then f.closed = true return "closed" end
end

-- A buffer bounce region for direct I/O of n bytes (page-aligned, registered).
local function bounce_get(S, n)
  local st = state(S)
  local b = st.bounce
  for i = #b, 1, -1 do
    local r = b[i]
    if r.nbytes >= n then table.remove(b, i) return r end
  end
  local size = 65536
  while size < n do size = size * 2 end
  return region.new(size)
end
local function bounce_put(S, r)
  local b = state(S).bounce
  if #b < 2 then b[#b + 1] = r else r:free() end
end

local function check_off(offset, what)
  if offset ~= nil and (type(offset) ~= "number" or offset < 0 or offset % 1 ~= 0 or offset >= 2 ^ 62) then
    misuse(what .. ": offset must be an integer >= 0")
  end
end

local function misaligned(f, off, n)
  local a = f.align
  return off % a ~= 0 or n % a ~= 0
end

-- One read of at most n bytes at off into p (region rid or -1); bytes or nil, err.
local function read_op(f, p, n, off, rid, anchor)
  local S, t, tok, rec = begin("read", f.timeout)
  if not S then return nil, t end
  rec.anchor, rec.file = anchor, f
  return await(S, t, tok, rec, C.rl_file_read(S.w, f.fd, p, n, off, rid, tok))
end

-- Read n bytes at off (nil: the file position, advanced) as a string:
-- fewer at the end of the file, nil, "eof" when nothing is left.
local function read_bytes(f, n, off)
  local seq = off == nil
  if seq then off = f.pos end
  if f.direct then
    if misaligned(f, off, n) then return nil, "misaligned" end
    local r, err = bounce_get(f.S, n)
    if not r then return nil, err end
    local got, e = read_op(f, r.base, n, off, r.rid, r)
    local s = got and ffi_string(r.base, got)
    bounce_put(f.S, r)
    if not got then return nil, e end
    if seq then f.pos = off + got end
    if got == 0 and n > 0 then return nil, "eof" end
    return s
  end
  -- the file's scratch buffer, when no other read of it holds it; given
  -- back after, unless the kernel may still write into it (a read that
  -- timed out or was cancelled: the operation's anchor keeps it alive)
  local buf = f.scratch
  if buf then
    f.scratch = false
    buf:reset()
  else
    buf = buffer.new(n > 0 and n < SCRATCH_MAX and n or 1)
  end
  local total = 0
  while total < n do
    local want = n - total
    if want > MAX_OP then want = MAX_OP end
    local p = buf:reserve(want)
    local got, err = read_op(f, p, want, off + total, -1, buf)
    if not got then
      if err ~= "timeout" and err ~= "canceled" then f.scratch = buf end
      return nil, err
    end
    buf:commit(got)
    total = total + got
    if got == 0 then break end
  end
  if seq then f.pos = off + total end
  local s = total > 0 and buf:tostring() or nil
  -- a huge read's buffer is not kept: the file would hold its memory
  if n <= SCRATCH_MAX then f.scratch = buf end
  if total == 0 and n > 0 then return nil, "eof" end
  return s or ""
end

-- Read at most n bytes at off into p (memory the caller owns, anchored by
-- `anchor` until the kernel is done with it, also after a timeout or a
-- cancel): the count read (0 at the end of the file), or nil, err. For
-- callers that reuse one buffer instead of making a string per read
-- (conn:sendfile's read-and-send path).
function M.read_into(f, p, n, off, anchor)
  local e = closed_err(f)
  if e then return nil, e end
  return read_op(f, p, n, off, -1, anchor)
end

local read_line   -- below

function File.read(f, n, offset)
  check_file(f, "read")
  check_off(offset, "file:read")
  local e = closed_err(f)
  if e then return nil, e end
  if n == "a" or n == "*a" then
    local sz, err = f:size()
    if not sz then return nil, err end
    local from = offset or f.pos
    local left = sz - from
    if left <= 0 then return "" end
    local s
    s, err = read_bytes(f, left, offset)
    if not s then return err == "eof" and "" or nil, err end
    return s
  elseif n == "l" or n == "*l" or n == "L" or n == "*L" then
    if offset then misuse("file:read: lines are read at the file position (no offset)") end
    return read_line(f, n == "L" or n == "*L")
  end
  if type(n) ~= "number" or n < 0 or n % 1 ~= 0 or n >= 2 ^ 53 then
    misuse("file:read: n must be a byte count, \"a\" or \"l\"")
  end
  local rb = f.rbuf
  if rb and #rb > 0 and not offset then
    -- bytes lines() read ahead come first
    local take = math.min(#rb, n)
    local head = rb:get(take)
    if take == n then return head end
    local rest, err = read_bytes(f, n - take)
    if not rest then return err == "eof" and head or nil, err end
    return head .. rest
  end
  return read_bytes(f, n, offset)
end

read_line = function(f, keep)
  local rb = f.rbuf
  if not rb then rb = buffer.new(); f.rbuf = rb end
  local from = 0
  while true do
    local s = rb:tostring()
    local i = s:find("\n", from + 1, true)
    if i then
      rb:skip(i)
      return keep and s:sub(1, i) or s:sub(1, i - 1)
    end
    from = #s
    local chunk, err = read_bytes(f, CHUNK)
    if not chunk then
      if err ~= "eof" then return nil, err end
      if #rb == 0 then return nil end
      local last = rb:get()
      return last
    end
    rb:put(chunk)
  end
end

-- for line in f:lines() do ... end: lines without "\n" (with, for "L").
-- An error ends the loop by raising it.
function File.lines(f, fmt)
  check_file(f, "lines")
  local keep = fmt == "L" or fmt == "*L"
  return function()
    if f.closed then return nil end
    local l, err = read_line(f, keep)
    if l == nil and err then error("ringline.fs: " .. f.path .. ": " .. err, 2) end
    return l
  end
end

-- Flatten data (strings, numbers, arrays, string.buffers, region slices)
-- into parts: ptr, len, region id, anchor.
local function flatten(x, out, depth)
  local tx = type(x)
  if tx == "string" then
    if #x > 0 then out[#out + 1] = { x, #x, -1, x } end
  elseif tx == "number" then
    local s = tostring(x)
    out[#out + 1] = { s, #s, -1, s }
  elseif tx == "table" and region.is_slice(x) then
    if x.n > 0 then out[#out + 1] = { x.p, x.n, x.r.rid, x } end
  elseif tx == "table" then
    if depth > 32 then misuse("file:write: arrays nested too deep (a cycle?)") end
    for i = 1, #x do flatten(x[i], out, depth + 1) end
  elseif check.is_buffer(x) then
    local p, n = x:ref()
    if n > 0 then out[#out + 1] = { p, n, -1, x } end
  else
    misuse("file:write: cannot write a " .. tx .. " (strings, numbers, arrays, string.buffers, slices)")
  end
  return out
end

local function write_op(f, p, n, off, rid, anchor)
  local S, t, tok, rec = begin("write", f.timeout)
  if not S then return nil, t end
  rec.anchor, rec.file = anchor, f
  return await(S, t, tok, rec, C.rl_file_write(S.w, f.fd, p, n, off, rid, tok))
end

local function writev_op(f, parts, from, to, off)
  local S, t, tok, rec = begin("write", f.timeout)
  if not S then return nil, t end
  local n = to - from + 1
  local v = ffi_new("struct rl_part[?]", n)
  for i = 0, n - 1 do
    local p = parts[from + i]
    v[i].ptr = p[1]
    v[i].len = p[2]
    v[i].region = -1
  end
  rec.anchor, rec.file = parts, f
  return await(S, t, tok, rec, C.rl_file_writev(S.w, f.fd, v, n, off, tok))
end

-- Write one part whole (short writes continue).
local function write_part(f, p, off)
  local ptr, len, rid, anchor = p[1], p[2], p[3], p[4]
  local done = 0
  while done < len do
    local n = len - done
    if n > MAX_OP then n = MAX_OP end
    local q = ffi_cast("const uint8_t *", ptr) + done
    local got, err = write_op(f, q, n, off < 0 and -1 or off + done, rid, anchor)
    if not got then return nil, err end
    if got == 0 then return nil, "short write" end
    done = done + got
  end
  return done
end

local function write_direct(f, parts, off, total)
  if misaligned(f, off, total) then return nil, "misaligned" end
  local p = parts[1]
  -- one aligned slice: WRITE_FIXED from the caller's region as it is
  if #parts == 1 and p[3] >= 0 and tonumber(ffi_cast("uintptr_t", p[1])) % f.align == 0 then
    return write_part(f, p, off)
  end
  local S = f.S
  local r, err = bounce_get(S, total)
  if not r then return nil, err end
  local at = 0
  for i = 1, #parts do
    ffi.copy(r.base + at, parts[i][1], parts[i][2])
    at = at + parts[i][2]
  end
  local n
  n, err = write_part(f, { r.base, total, r.rid, r }, off)
  bounce_put(S, r)
  return n, err
end

-- f:write(data [, offset]): bytes written, or nil, err. Without an offset
-- at the file position (appended in mode "a").
function File.write(f, data, offset)
  check_file(f, "write")
  check_off(offset, "file:write")
  local e = closed_err(f)
  if e then return nil, e end
  local parts = flatten(data, {}, 0)
  local total = 0
  for i = 1, #parts do total = total + parts[i][2] end
  local seq = offset == nil
  local off = offset or (f.append and -1 or f.pos)
  if f.rbuf then f.rbuf:reset() end
  local n, err
  if f.direct then
    if off < 0 then return nil, "misaligned" end
    n, err = write_direct(f, parts, off, total)
  elseif #parts == 0 then
    n = 0
  elseif #parts == 1 then
    n, err = write_part(f, parts[1], off)
  else
    -- vectored, 1024 parts an operation; a short one goes on part by part
    n = 0
    local i = 1
    while i <= #parts do
      local j = math.min(#parts, i + MAX_IOV - 1)
      local want = 0
      for k = i, j do want = want + parts[k][2] end
      local got
      if want > MAX_OP then
        got, err = write_part(f, parts[i], off < 0 and -1 or off + n)
        j = i
      else
        got, err = writev_op(f, parts, i, j, off < 0 and -1 or off + n)
      end
      if not got then n = nil break end
      n = n + got
      if got < want and want <= MAX_OP then
        -- short: the rest of this batch, part by part
        local k, skip = i, got
        while skip >= parts[k][2] do skip = skip - parts[k][2]; k = k + 1 end
        local p = parts[k]
        local rest = { ffi_cast("const uint8_t *", p[1]) + skip, p[2] - skip, p[3], p[4] }
        local g2
        g2, err = write_part(f, rest, off < 0 and -1 or off + n)
        if not g2 then n = nil break end
        n = n + g2
        for q = k + 1, j do
          g2, err = write_part(f, parts[q], off < 0 and -1 or off + n)
          if not g2 then n = nil break end
          n = n + g2
        end
        if not n then break end
      end
      i = j + 1
    end
  end
  if not n then return nil, err end
  if seq and not f.append then f.pos = off + n end
  return n
end

-- f:readv({n1, n2, ...} [, offset]): one READV into pieces of those sizes;
-- the strings (shorter at the end of the file, "" past it).
function File.readv(f, sizes, offset)
  check_file(f, "readv")
  check_off(offset, "file:readv")
  if type(sizes) ~= "table" or #sizes == 0 or #sizes > MAX_IOV then
    misuse("file:readv: sizes must be an array of 1..1024 byte counts")
  end
  local e = closed_err(f)
  if e then return nil, e end
  if f.direct then misuse("file:readv: not for direct I/O files (use read)") end
  local total = 0
  for i = 1, #sizes do
    local n = sizes[i]
    if type(n) ~= "number" or n < 0 or n % 1 ~= 0 then misuse("file:readv: bad size " .. tostring(n)) end
    total = total + n
  end
  if total > MAX_OP then misuse("file:readv: at most 2^30 bytes at once") end
  local buf = buffer.new(total > 0 and total or 1)
  local base = buf:reserve(total)
  local v = ffi_new("struct rl_part[?]", #sizes)
  local at = 0
  for i = 1, #sizes do
    v[i - 1].ptr = base + at
    v[i - 1].len = sizes[i]
    at = at + sizes[i]
  end
  local seq = offset == nil
  local off = offset or f.pos
  local S, t, tok, rec = begin("readv", f.timeout)
  if not S then return nil, t end
  rec.anchor, rec.file = { buf, v }, f
  local got, err = await(S, t, tok, rec, C.rl_file_readv(S.w, f.fd, v, #sizes, off, tok))
  if not got then return nil, err end
  if seq then f.pos = off + got end
  local out = {}
  at = 0
  for i = 1, #sizes do
    local n = math.max(0, math.min(sizes[i], got - at))
    out[i] = ffi_string(base + at, n)
    at = at + sizes[i]
  end
  return out
end

-- f:writev(parts [, offset]): f:write with an array.
function File.writev(f, parts, offset)
  check_file(f, "writev")
  if type(parts) ~= "table" then misuse("file:writev: parts must be an array") end
  return File.write(f, parts, offset)
end

local function simple(f, what, call, a)
  local e = closed_err(f)
  if e then return nil, e end
  local S, t, tok, rec = begin(what, f.timeout)
  if not S then return nil, t end
  rec.file = f
  return await(S, t, tok, rec, call(S.w, f.fd, a, tok))
end

local function fsync_call(w, fd, datasync, tok) return C.rl_file_fsync(w, fd, datasync, tok) end

function File.fsync(f)
  check_file(f, "fsync")
  local r, err = simple(f, "fsync", fsync_call, 0)
  if not r then return nil, err end
  return true
end

function File.fdatasync(f)
  check_file(f, "fdatasync")
  local r, err = simple(f, "fdatasync", fsync_call, 1)
  if not r then return nil, err end
  return true
end

-- An open file's attributes by statx(2) from the worker, not the ring:
-- they are in memory (the ring's STATX always costs an io-wq thread hop,
-- more than the whole of a small static response).
local stat_out = ffi_new("struct rl_stat")
function File.stat(f)
  check_file(f, "stat")
  local e = closed_err(f)
  if e then return nil, e end
  local rc = C.rl_file_stat_now(f.fd, stat_out)
  if rc < 0 then return nil, errstr(rc) end
  return stat_table(stat_out)
end

function File.size(f)
  check_file(f, "size")
  local st, err = f:stat()
  if not st then return nil, err end
  return st.size
end

-- f:seek([whence [, offset]]): as io's ("set", "cur", "end"); the position.
function File.seek(f, whence, offset)
  check_file(f, "seek")
  whence = whence or "cur"
  offset = offset or 0
  if type(offset) ~= "number" or offset % 1 ~= 0 then misuse("file:seek: offset must be an integer") end
  local base
  if whence == "set" then base = 0
  elseif whence == "cur" then base = f.pos - (f.rbuf and #f.rbuf or 0)
  elseif whence == "end" then
    local sz, err = f:size()
    if not sz then return nil, err end
    base = sz
  else misuse("file:seek: whence must be \"set\", \"cur\" or \"end\"") end
  local pos = base + offset
  if pos < 0 then return nil, "invalid argument" end
  f.pos = pos
  if f.rbuf then f.rbuf:reset() end
  return pos
end

local function close_call(w, fd, tok) return C.rl_file_close(w, fd, tok) end

function File.close(f)
  check_file(f, "close")
  if f.closed then return nil, "closed" end
  f.closed = true
  ffi_gc(f.proxy, nil)
  if f.S.dead then
    C.rl_file_close_now(f.fd)
    return true
  end
  local st = state(f.S)
  st.files[f] = nil
  -- a file opened read-only closes now: the ring's CLOSE would run at once
  -- too (it goes to a worker thread only for a file system with a flush,
  -- NFS, which flushes only what was written)
  if f.ro then
    C.rl_file_close_now(f.fd)
    return true
  end
  local S, t, tok, rec = begin("close")
  if not S then
    C.rl_file_close_now(f.fd)
    return true
  end
  local r, err = await(S, t, tok, rec, close_call(S.w, f.fd, tok))
  if not r then return nil, err end
  return true
end

------------------------------------------------------------------------
-- Paths
------------------------------------------------------------------------

-- stat, unlink, rmdir, rename, mkdir, listdir: ringline.fs_path
M.stat, M.unlink, M.rmdir, M.rename, M.mkdir, M.listdir =
  paths.stat, paths.unlink, paths.rmdir, paths.rename, paths.mkdir, paths.listdir

-- readfile(path): the whole file, or nil, err.
function M.readfile(path)
  check_path(path, "readfile")
  local f, err = M.open(path, "r")
  if not f then return nil, err end
  local st
  st, err = f:stat()
  if st and st.type == "directory" then
    f:close()
    return nil, "is a directory"
  end
  local s
  if st then
    -- one read of the size it has, then until the end (it may grow)
    local parts = {}
    s, err = read_bytes(f, st.size)
    while s do
      parts[#parts + 1] = s
      s, err = read_bytes(f, CHUNK)
    end
    if err == "eof" then s, err = table.concat(parts), nil end
  end
  f:close()
  if err then return nil, err end
  return s
end

local nonce = 0

-- writefile(path, data [, {fsync = true, perm = n}]): atomically, as a
-- temporary file in the same directory renamed over path; with fsync the
-- data and then the directory reach the disk before it returns.
local WF_VALID = { fsync = true, perm = true }
function M.writefile(path, data, opts)
  check_path(path, "writefile")
  check.options(opts, WF_VALID, "ringline.fs.writefile")
  nonce = nonce + 1
  -- created exclusively ("wx"): a name taken already fails, never clobbers
  local tmp = ("%s.tmp.%d.%d"):format(path, nonce, math.random(1, 1e9))
  local f, err = M.open(tmp, "wx", opts and opts.perm or 420)
  if not f then return nil, err end
  local ok
  ok, err = f:write(data)
  if ok and opts and opts.fsync then ok, err = f:fsync() end
  local ok2, err2 = f:close()
  if ok and not ok2 then ok, err = nil, err2 end
  if ok then ok, err = M.rename(tmp, path) end
  if not ok then
    M.unlink(tmp)
    return nil, err
  end
  if opts and opts.fsync then
    local dir = path:match("^(.*)/[^/]*$") or "."
    if dir == "" then dir = "/" end
    local d = M.open(dir, "r")
    if d then d:fsync(); d:close() end
  end
  return true
end

------------------------------------------------------------------------
-- region:load and conn:sendfile's helpers
------------------------------------------------------------------------

-- Read len bytes of file f at offset into region r at its offset at (READ_FIXED).
function M.load(r, f, offset, len, at)
  check_file(f, "load")
  check_off(offset, "region:load")
  at = at or 0
  local e = closed_err(f)
  if e then return nil, e end
  if type(len) ~= "number" or len < 0 or len % 1 ~= 0 then misuse("region:load: len must be a byte count") end
  if type(at) ~= "number" or at < 0 or at % 1 ~= 0 or at + len > r.nbytes then
    misuse(("region:load: %d+%d is outside the region's %d bytes"):format(at, len, r.nbytes))
  end
  if f.direct and (misaligned(f, offset, len) or at % f.align ~= 0) then return nil, "misaligned" end
  local done = 0
  while done < len do
    local n = len - done
    if n > MAX_OP then n = MAX_OP end
    local got, err = read_op(f, r.base + at + done, n, offset + done, r.rid, r)
    if not got then return nil, err end
    if got == 0 then break end
    done = done + got
  end
  return done
end

-- The worker's files left open at the end of a run are closed (drain).
local function drain(S)
  local st = S.fs
  if not st then return end
  for f in pairs(st.files) do
    if not f.closed then
      f.closed = true
      ffi_gc(f.proxy, nil)
      C.rl_file_close(S.w, f.fd, 0)
    end
  end
  st.files = setmetatable({}, { __mode = "k" })
  for _, r in ipairs(st.bounce) do r:free() end
  st.bounce = {}
end

-- In-flight file operations (for specs: back to 0 at idle).
M.pending = fs_op.pending

function M.attach(sched_)
  fs_op.attach(sched_)
  sched_.on_drain(drain)
end

return M
