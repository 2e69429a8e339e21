-- ringline.fs_path: the operations of ringline.fs on a path alone (stat,
-- unlink, rmdir, rename, mkdir, listdir), each one core file operation
-- awaited through ringline.fs_op, and the stat table both these and an
-- open file's f:stat() return. ringline.fs re-exports them; files,
-- readfile and writefile live there.
local ffi = require "ffi"
local bit = require "bit"
local C = require "ringline.lib"
local errors = require "ringline.errors"
local check = require "ringline.check"
local fs_op = require "ringline.fs_op"

local type, tonumber = type, tonumber
local ffi_new, ffi_string = ffi.new, ffi.string
local band = bit.band
local begin, await = fs_op.begin, fs_op.await

local _ = C.rl_fs_stat, C.rl_fs_unlink, C.rl_fs_rename, C.rl_fs_mkdir, C.rl_fs_listdir

local M = {}

local function misuse(msg)
  error("ringline.fs: " .. msg, errors.caller_level())
end

local TYPES = { [0x8000] = "file", [0x4000] = "directory", [0xA000] = "link", [0x2000] = "char",
  [0x6000] = "block", [0x1000] = "fifo", [0xC000] = "socket" }

function M.stat_table(s)
  local mode = s.mode
  return {
    size = tonumber(s.size), type = TYPES[band(mode, 0xF000)] or "other",
    perm = band(mode, 0xFFF), mode = mode, nlink = s.nlink, uid = s.uid, gid = s.gid,
    ino = tonumber(s.ino), dev = tonumber(s.dev), blocks = tonumber(s.blocks), blksize = s.blksize,
    mtime = tonumber(s.mtime_sec) + s.mtime_nsec * 1e-9,
    atime = tonumber(s.atime_sec) + s.atime_nsec * 1e-9,
    ctime = tonumber(s.ctime_sec) + s.ctime_nsec * 1e-9,
    dio_mem_align = s.dio_mem_align, dio_offset_align = s.dio_offset_align,
  }
end

local function check_path(p, what)
  if type(p) ~= "string" or #p == 0 then misuse(what .. ": path must be a non-empty string") end
end

function M.stat(path, opts)
  check_path(path, "stat")
  check.options(opts, { nofollow = true }, "ringline.fs.stat")
  local S, t, tok, rec = begin("stat")
  if not S then return nil, t end
  local out = ffi_new("struct rl_stat")
  rec.anchor = out
  local r, err = await(S, t, tok, rec, C.rl_fs_stat(S.w, path, opts and opts.nofollow and 1 or 0, out, tok))
  if not r then return nil, err end
  return M.stat_table(out)
end

local function path_op(what, call, a, b)
  local S, t, tok, rec = begin(what)
  if not S then return nil, t end
  local r, err = await(S, t, tok, rec, call(S.w, a, b, tok))
  if not r then return nil, err end
  return true
end

local function unlink_call(w, p, rmdir, tok) return C.rl_fs_unlink(w, p, rmdir, tok) end
local function rename_call(w, a, b, tok) return C.rl_fs_rename(w, a, b, tok) end
local function mkdir_call(w, p, perm, tok) return C.rl_fs_mkdir(w, p, perm, tok) end

function M.unlink(path)
  check_path(path, "unlink")
  return path_op("unlink", unlink_call, path, 0)
end

function M.rmdir(path)
  check_path(path, "rmdir")
  return path_op("rmdir", unlink_call, path, 1)
end

function M.rename(from, to)
  check_path(from, "rename")
  check_path(to, "rename")
  return path_op("rename", rename_call, from, to)
end

function M.mkdir(path, perm)
  check_path(path, "mkdir")
  if perm ~= nil and (type(perm) ~= "number" or perm < 0 or perm > 4095 or perm % 1 ~= 0) then
    misuse("mkdir: perm must be an integer 0..4095 (0755 is 493)")
  end
  return path_op("mkdir", mkdir_call, path, perm or 493)
end

local LTYPES = { f = "file", d = "directory", l = "link" }

-- listdir(path): the names (sorted) and a table name -> "file",
-- "directory", "link" or "other". On the fallback pool (no ring op).
function M.listdir(path)
  check_path(path, "listdir")
  local cap = 16384
  for _ = 1, 8 do
    local S, t, tok, rec = begin("listdir")
    if not S then return nil, t end
    local buf = ffi_new("uint8_t[?]", cap)
    rec.anchor = buf
    local n, err, need = await(S, t, tok, rec, C.rl_fs_listdir(S.w, path, buf, cap, tok))
    if n then
      local names, types = {}, {}
      local s = ffi_string(buf, n)
      for ty, name in s:gmatch("(.)([^%z]*)%z") do
        names[#names + 1] = name
        types[name] = LTYPES[ty] or "other"
      end
      table.sort(names)
      return names, types
    end
    if not (need and need > cap) then return nil, err end
    cap = need + 4096           -- the directory grew or was bigger: again
  end
  return nil, "directory keeps changing"
end

M.check_path = check_path

return M
