-- ringline.fs (lua/ringline/fs.lua on core/src/fileop.c): files through
-- the ring. Each case runs twice: with the ring's file operations, and
-- with RINGLINE_DISABLE_FEATURES=fs_ring, where the fallback thread pool
-- runs them (visible in metrics().fs_pool_ops). Bad input ends with the
-- short error strings and leaves descriptors (/proc/self/fd) and the
-- file gauges at idle.
local ffi = require "ffi"
local ringline = require "ringline"
local support = require "support"
local fs_mod = require "ringline.fs"

local run = support.run
local fs = ringline.fs

pcall(ffi.cdef, [[
  int setenv(const char *name, const char *value, int overwrite);
  int unsetenv(const char *name);
  int mkfifo(const char *path, unsigned int mode);
  int getpid(void);
  typedef struct rl_spec_DIR rl_spec_DIR;
  rl_spec_DIR *opendir(const char *name);
  void *readdir(rl_spec_DIR *d);
  int closedir(rl_spec_DIR *d);
]])

local DIR = ("/tmp/rl_fs_spec_%d"):format(ffi.C.getpid())

-- CI's second pass runs every spec with RINGLINE_DISABLE_FEATURES set:
-- the pool mode adds to it, and it is put back after.
local FEATURES0 = os.getenv("RINGLINE_DISABLE_FEATURES")
-- Do file operations run on the pool in this mode (also when the
-- environment disables the ring's already)?
local function pooled(mode)
  if mode == "pool" then return true end
  for name in (FEATURES0 or ""):gmatch("[^,]+") do   -- whole names: "fd_install" is not "all"
    if name == "fs_ring" or name == "all" then return true end
  end
  return false
end

local function features(extra)
  if extra then
    ffi.C.setenv("RINGLINE_DISABLE_FEATURES", FEATURES0 and (FEATURES0 .. "," .. extra) or extra, 1)
  elseif FEATURES0 then
    ffi.C.setenv("RINGLINE_DISABLE_FEATURES", FEATURES0, 1)
  else
    ffi.C.unsetenv("RINGLINE_DISABLE_FEATURES")
  end
end

local function count_fds()
  collectgarbage(); collectgarbage()
  -- readdir in this process (a popen'd ls races with its own pipe)
  local d = ffi.C.opendir("/proc/self/fd")
  local n = 0
  while ffi.C.readdir(d) ~= nil do n = n + 1 end
  ffi.C.closedir(d)
  return n - 3   -- ".", ".." and the directory's own descriptor
end

local function sh(cmd)
  local rc = os.execute("unset LD_PRELOAD; " .. cmd)
  assert(rc == 0 or rc == true, cmd)
end

local function idle()
  local m = ringline.metrics()
  assert.are.equal(0, tonumber(m.fs_inflight))
  assert.are.equal(0, fs_mod.pending())
end

for _, mode in ipairs({ "ring", "pool" }) do
  describe("ringline.fs (" .. mode .. ")", function()
    local fds0
    -- a first run opens what a process keeps for good (one-time probes)
    setup(function()
      run(function() assert(fs.open("/dev/null", "r")):close() end)
    end)
    before_each(function()
      if mode == "pool" then features("fs_ring") end
      os.execute("unset LD_PRELOAD; rm -rf " .. DIR .. " && mkdir -p " .. DIR)
      fds0 = count_fds()
    end)
    after_each(function()
      features(nil)
      -- every descriptor of the run is closed once it ended
      assert.are.equal(fds0, count_fds())
      os.execute("unset LD_PRELOAD; rm -rf " .. DIR)
    end)

    it("opens, writes, reads at offsets and sequentially, stats, syncs, closes", function()
      run(function()
        local p = DIR .. "/a.txt"
        local f = assert(fs.open(p, "w+"))
        assert.are.equal(11, f:write("hello world"))
        local sb = require("string.buffer").new():put("bc")
        assert.are.equal(6, f:write({ "a", { sb, 1 }, "de" }))
        assert.are.equal(1, f:write("W", 6))                 -- at an offset: position kept
        assert.are.equal("hello World", f:read(11, 0))
        assert.are.equal("abc1de", f:read(6, 11))
        assert.is_true(f:fsync())
        assert.is_true(f:fdatasync())
        local st = assert(f:stat())
        assert.are.equal(17, st.size)
        assert.are.equal("file", st.type)
        assert.are.equal(17, f:size())
        assert.are.equal(0, f:seek("set"))
        assert.are.equal("hello", f:read(5))
        assert.are.equal(" World", f:read(6))
        assert.are.equal("abc1de", f:read("a"))
        local s, err = f:read(10)
        assert.is_nil(s); assert.are.equal("eof", err)
        local v = assert(f:readv({ 5, 1, 100 }, 0))
        assert.are.same({ "hello", " ", "World" .. "abc1de" }, v)
        assert.are.equal(4, f:writev({ "x", "yz", "w" }, 17))
        assert.are.equal("xyzw", f:read(4, 17))
        assert.is_true(f:close())
        assert.are.same({ nil, "closed" }, { f:read(1) })
        assert.are.same({ nil, "closed" }, { f:close() })
        local m = ringline.metrics()
        if pooled(mode) then
          assert.is_true(tonumber(m.fs_pool_ops) >= 15)
          assert.are.equal(0, tonumber(m.fs_ops))
        else
          assert.is_true(tonumber(m.fs_ops) >= 15)
          assert.are.equal(0, tonumber(m.fs_pool_ops))
        end
        idle()
      end)
    end)

    it("reads reuse the file's buffer: only the strings returned stay on the heap", function()
      run(function()
        local p = DIR .. "/r.bin"
        local K = 64 * 1024
        assert(fs.writefile(p, string.rep("r", K)))
        local f = assert(fs.open(p, "r"))
        assert.are.equal(K, #f:read(K, 0))                   -- the buffer exists now
        collectgarbage("collect")
        collectgarbage("stop")
        local k0 = collectgarbage("count")
        local keep = {}
        for i = 1, 64 do keep[i] = f:read(K, 0) end          -- the same bytes: one interned string
        local grew = (collectgarbage("count") - k0) * 1024
        collectgarbage("restart")
        assert.are.equal(K, #keep[64])
        -- a string.buffer per read grew it by 64 of them (4 MiB)
        assert.is_true(grew < 8 * K, ("the heap grew %.0f KiB"):format(grew / 1024))
        assert(f:close())
      end)
    end)

    it("appends, creates exclusively, reads lines", function()
      run(function()
        local p = DIR .. "/l.txt"
        local f = assert(fs.open(p, "wx"))
        f:write("one\ntwo\r\n")
        f:close()
        local g, err = fs.open(p, "wx")
        assert.is_nil(g); assert.are.equal("file exists", err)
        f = assert(fs.open(p, "a"))
        f:write("three")
        f:close()
        f = assert(fs.open(p, "r"))
        local lines = {}
        for l in f:lines() do lines[#lines + 1] = l end
        assert.are.same({ "one", "two\r", "three" }, lines)
        f:close()
        f = assert(fs.open(p, "r"))
        assert.are.equal("one\n", f:read("L"))
        assert.are.equal("tw", f:read(2))               -- after the read-ahead, in order
        f:close()
        idle()
      end)
    end)

    it("stat, mkdir, rename, listdir, unlink, rmdir, readfile, writefile", function()
      run(function()
        assert.is_true(fs.mkdir(DIR .. "/sub"))
        assert.are.same({ nil, "file exists" }, { fs.mkdir(DIR .. "/sub") })
        assert.is_true(fs.writefile(DIR .. "/sub/x", { "1", "23" }))
        assert.is_true(fs.writefile(DIR .. "/y", "yy", { fsync = true }))
        assert.is_true(fs.writefile(DIR .. "/y", "y2"))           -- replaced atomically
        assert.are.equal("y2", fs.readfile(DIR .. "/y"))
        assert.are.equal("123", fs.readfile(DIR .. "/sub/x"))
        assert.is_true(fs.rename(DIR .. "/sub/x", DIR .. "/z"))
        local names, types = fs.listdir(DIR)
        assert.are.same({ "sub", "y", "z" }, names)             -- no temporary left
        assert.are.equal("directory", types.sub)
        assert.are.equal("file", types.y)
        assert.are.equal("directory", fs.stat(DIR .. "/sub").type)
        assert.are.equal(2, fs.stat(DIR .. "/y").size)
        assert.is_true(fs.rmdir(DIR .. "/sub"))
        assert.is_true(fs.unlink(DIR .. "/z"))
        assert.are.same({ nil, "no such file or directory" }, { fs.unlink(DIR .. "/z") })
        -- a directory with more entries than the first buffer holds
        for i = 1, 700 do assert(fs.writefile(("%s/%s%04d"):format(DIR, ("n"):rep(40), i), "")) end
        names = assert(fs.listdir(DIR))
        assert.are.equal(701, #names)
        idle()
      end)
    end)

    it("bad input: missing, a directory, permission, no space, misuse", function()
      run(function()
        assert.are.same({ nil, "no such file or directory" }, { fs.open(DIR .. "/none/x", "r") })
        assert.are.same({ nil, "no such file or directory" }, { fs.stat(DIR .. "/none") })
        assert.are.same({ nil, "no such file or directory" }, { fs.readfile(DIR .. "/none") })
        assert.are.same({ nil, "is a directory" }, { fs.open(DIR, "w") })
        assert.are.same({ nil, "is a directory" }, { fs.readfile(DIR) })
        assert.are.same({ nil, "not a directory" }, { fs.listdir("/etc/hostname") })
        -- a read-only sysctl refuses writing even to root
        assert.are.same({ nil, "permission denied" }, { fs.open("/proc/sys/kernel/osrelease", "w") })
        -- /dev/full: every write fails with ENOSPC
        local f = assert(fs.open("/dev/full", "w"))
        assert.are.same({ nil, "no space left on device" }, { f:write("data") })
        f:close()
        -- writefile into a missing directory leaves nothing behind
        assert.are.same({ nil, "no such file or directory" }, { fs.writefile(DIR .. "/none/f", "x") })
        assert.has_error(function() fs.open(DIR .. "/a", "q") end)
        assert.has_error(function() fs.open(DIR .. "/a", "rx") end)
        assert.has_error(function() fs.open(42) end)
        f = assert(fs.open(DIR .. "/b", "w"))
        assert.has_error(function() f:write(true) end)
        assert.has_error(function() f:read(-1) end)
        assert.has_error(function() f:read(1, -5) end)
        f:close()
        idle()
      end)
    end)

    it("a reader cancelled or timed out mid-read leaves nothing behind", function()
      assert.are.equal(0, ffi.C.mkfifo(DIR .. "/fifo", 420))
      run(function()
        local f = assert(fs.open(DIR .. "/fifo", "r+"))  -- O_RDWR: no writer needed to open
        local t = ringline.spawn(function() return f:read(10) end)
        ringline.sleep(0.02)
        assert.are.equal("parked", t:status())
        t:cancel()
        assert.are.same({ true, nil, "canceled" }, { t:join() })
        f:settimeout(30)
        local t0 = ringline.now()
        assert.are.same({ nil, "timeout" }, { f:read(10) })
        assert.is_true(ringline.now() - t0 >= 0.025)
        f:settimeout(0)
        if pooled(mode) then
          -- a pool thread blocked in read(2) cannot be interrupted: the two
          -- abandoned reads still run (holding both threads: the bytes
          -- come from outside the pool), take what comes and are dropped
          local w = assert(io.open(DIR .. "/fifo", "w"))
          w:write(("x"):rep(20))
          w:close()
        end
        assert.is_true(support.eventually(function()
          return tonumber(ringline.metrics().fs_inflight) == 0 and fs_mod.pending() == 0
        end))
        assert.are.equal(3, f:write("abc"))
        assert.are.equal("abc", f:read(3))          -- the abandoned reads took nothing more
        assert.is_true(f:close())
      end)
    end)

    it("region:load reads a file into registered memory; direct I/O is aligned or refused", function()
      run(function()
        local data = support.pattern(3 * 65536, 5)
        assert(fs.writefile(DIR .. "/d.bin", data))
        local f = assert(fs.open(DIR .. "/d.bin", "r"))
        local r = assert(ringline.region(4 * 65536))
        assert.are.equal(1000, r:load(f, 5, 1000, 10))
        assert.are.equal(data:sub(6, 1005), r:slice(10, 1000):string())
        assert.are.equal(#data - 100, r:load(f, 100, 200000))      -- short at the end
        f:close()
        local d, err = fs.open(DIR .. "/d.bin", "rd")
        if not d then
          assert.are.equal("direct I/O not supported here", err)
          return
        end
        assert.is_true(d.align >= 512)
        assert.are.same({ nil, "misaligned" }, { d:read(100, 0) })
        assert.are.same({ nil, "misaligned" }, { d:read(4096, 7) })
        assert.are.same({ nil, "misaligned" }, { r:load(d, 0, 100) })
        assert.are.equal(data:sub(4097, 4096 + 8192), d:read(8192, 4096))
        assert.are.equal(65536, r:load(d, 65536, 65536))
        assert.are.equal(data:sub(65537, 131072), r:slice(0, 65536):string())
        d:close()
        local w = assert(fs.open(DIR .. "/w.bin", "wd"))
        assert.are.same({ nil, "misaligned" }, { w:write("abc", 0) })
        assert.are.equal(4096, w:write(r:slice(0, 4096), 0))        -- WRITE_FIXED as it is
        assert.are.equal(4096, w:write(("z"):rep(4096), 4096))      -- through a bounce region
        w:close()
        local back = fs.readfile(DIR .. "/w.bin")
        assert.are.equal(data:sub(65537, 65536 + 4096) .. ("z"):rep(4096), back)
        idle()
      end)
    end)

    it("a large file read does not stall a 10 ms ticker", function()
      local MiB = 1048576
      local big = DIR .. "/big.bin"
      sh(("dd if=/dev/zero of=%s bs=1M count=32 status=none"):format(big))
      run(function()
        local ticks = 0
        local tm = ringline.timer.every(0.01, function() ticks = ticks + 1 end)
        local t0 = ringline.now()
        local total = 0
        local r = assert(ringline.region(32 * MiB))
        -- read the file again and again for at least 0.3 s: whole into a
        -- region (one operation, no copy in Lua), then in 1 MiB strings
        repeat
          local f = assert(fs.open(big, "r"))
          total = total + assert(r:load(f, 0, 32 * MiB))
          for _ = 1, 32 do total = total + #assert(f:read(MiB)) end
          f:close()
        until ringline.now() - t0 >= 0.3
        r:free()
        local elapsed = ringline.now() - t0
        tm:cancel()
        assert.is_true(total >= 64 * MiB)
        -- the ticker kept (generously) half its period meanwhile
        assert.is_true(ticks >= math.floor(elapsed / 0.01 * 0.5),
          ("%d ticks in %.3f s"):format(ticks, elapsed))
      end, { timeout = 30 })
    end)
  end)
end
