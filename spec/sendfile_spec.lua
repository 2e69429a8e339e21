-- conn:sendfile and res:sendfile: a file's bytes spliced by the kernel
-- (file -> pipe -> socket) through the connection's ordered send queue.
-- In order with the sends around it, under the watermarks, flushed by
-- flush; a file truncated while it is sent ends with "file truncated";
-- TLS connections take the read-and-encrypt path; descriptors and gauges
-- go back to idle.
local ffi = require "ffi"
local bit = require "bit"
local C = require "ringline.lib"
local ringline = require "ringline"
local http = require "ringline.http"
local support = require "support"

local run, server, connect = support.run, support.server, support.connect
local fs = ringline.fs
local MiB = 1048576

pcall(ffi.cdef, [[
  int getpid(void);
  int truncate(const char *path, int64_t length);
  int setenv(const char *name, const char *value, int overwrite);
  int posix_fadvise(int fd, int64_t offset, int64_t len, int advice);
  int open(const char *path, int flags, ...);
  int fsync(int fd);
  int close(int fd);
  int unsetenv(const char *name);
  typedef struct rl_spec_DIR rl_spec_DIR;
  rl_spec_DIR *opendir(const char *name);
  void *readdir(rl_spec_DIR *d);
  int closedir(rl_spec_DIR *d);
]])

local function count_fds()
  collectgarbage(); collectgarbage()
  local d = ffi.C.opendir("/proc/self/fd")
  local n = 0
  while ffi.C.readdir(d) ~= nil do n = n + 1 end
  ffi.C.closedir(d)
  return n - 3
end

local function sh(cmd)
  local ok = os.execute("unset LD_PRELOAD; " .. cmd)
  return ok == 0 or ok == true
end

local DIR = ("/tmp/rl_sendfile_spec_%d"):format(ffi.C.getpid())
local data

local function idle_gauges()
  assert.is_true(support.eventually(function()
    local m = ringline.metrics()
    return tonumber(m.send_bytes_queued) == 0 and tonumber(m.fs_inflight) == 0
      and tonumber(m.conns_open) == 0 and tonumber(m.sendfile_pipes) <= 4
  end))
end

describe("conn:sendfile", function()
  local fds0
  setup(function()
    assert(sh("rm -rf " .. DIR .. " && mkdir -p " .. DIR))
    data = support.pattern(3 * MiB + 333, 9)
    local f = assert(io.open(DIR .. "/data.bin", "wb"))
    f:write(data)
    f:close()
    run(function() assert(fs.open("/dev/null", "r")):close() end)   -- one-time probes
  end)
  teardown(function() sh("rm -rf " .. DIR) end)
  before_each(function() fds0 = count_fds() end)
  after_each(function() assert.are.equal(fds0, count_fds()) end)

  it("sends a file between other sends, in order, then flushes", function()
    local got = run(function()
      local lst, port = server(function(c)
        local f = assert(fs.open(DIR .. "/data.bin", "r"))
        assert(c:send("HEAD"))
        assert.are.equal(#data - 10, c:sendfile(f, 10))          -- to the end
        assert(c:send("MID"))
        assert.are.equal(100, c:sendfile(f, 0, 100))
        f:close()                                                -- the queue has its own
        assert(c:send("TAIL"))
        assert(c:flush())
        assert.are.equal(0, c.io.unsent)
        c:close()
      end)
      local c = connect(port)
      local s = assert(c:receive("*a"))
      c:close()
      lst:close()
      idle_gauges()
      return s
    end)
    assert.are.equal(4 + #data - 10 + 3 + 100 + 4, #got)
    assert.is_true(got == "HEAD" .. data:sub(11) .. "MID" .. data:sub(1, 100) .. "TAIL",
      "the bytes arrived in queue order")
  end)

  it("sends a head (a string or a string.buffer, not consumed) with the file, in order", function()
    local buffer = require "string.buffer"
    local got = run(function()
      local lst, port = server(function(c)
        local f = assert(fs.open(DIR .. "/data.bin", "r"))
        assert.has_error(function() c:sendfile(f, 0, 1, 42) end)
        assert.are.equal(100, c:sendfile(f, 0, 100, "H1:"))
        local b = buffer.new():put("H2:")
        assert.are.equal(#data - 7, c:sendfile(f, 7, nil, b))
        assert.are.equal("H2:", b:tostring())                  -- not consumed
        assert.are.equal(0, c:sendfile(f, #data, nil, "H3:"))   -- no file bytes: the head alone
        f:close()
        assert(c:flush())
        c:close()
      end)
      local c = connect(port)
      local s = assert(c:receive("*a"))
      c:close()
      lst:close()
      idle_gauges()
      return s
    end)
    assert.is_true(got == "H1:" .. data:sub(1, 100) .. "H2:" .. data:sub(8) .. "H3:", "in call order")
  end)

  it("from the page cache, with nothing queued, goes out from the call itself: no queue node", function()
    run(function()
      local lst, port = server(function(c)
        local f = assert(fs.open(DIR .. "/data.bin", "r"))
        assert.are.equal(4096, c:sendfile(f, 0, 4096, "A"))  -- the first installs a descriptor
        assert(c:flush())
        local cachestat = bit.band(C.rl_worker_features(c.w), C.RL_FEAT_CACHESTAT) ~= 0
        local p0 = tonumber(ringline.metrics().sendfile_pipes)
        assert.are.equal(4096, c:sendfile(f, 4096, 4096, "B"))
        if cachestat then
          assert.are.equal(0, c.io.unsent)                  -- all of it went already
          assert.are.equal(p0, tonumber(ringline.metrics().sendfile_pipes))
        end
        f:close()
        c:close()
      end)
      local c = connect(port)
      local s = assert(c:receive("*a"))
      assert.is_true(s == "A" .. data:sub(1, 4096) .. "B" .. data:sub(4097, 8192))
      c:close()
      lst:close()
      idle_gauges()
    end)
  end)

  it("bytes not in the page cache are read by the ring (sendfile_fills), the rest by the worker", function()
    -- in the working directory: a tmpfs /tmp could not drop its pages
    local path = ("./.rl_sendfile_cold_%d.bin"):format(ffi.C.getpid())
    local cold = support.pattern(3 * MiB, 5)
    local w = assert(io.open(path, "wb"))
    w:write(cold)
    w:close()
    local fd = ffi.C.open(path, 0)
    assert.is_true(fd >= 0)
    assert.are.equal(0, ffi.C.fsync(fd))                      -- clean pages can be dropped
    assert.are.equal(0, ffi.C.posix_fadvise(fd, 0, 0, 4))    -- POSIX_FADV_DONTNEED
    ffi.C.close(fd)
    local ok, err = pcall(run, function()
      local fills0 = tonumber(ringline.metrics().sendfile_fills)
      local lst, port = server(function(c)
        local f = assert(fs.open(path, "r"))
        assert.are.equal(#cold, c:sendfile(f))
        f:close()
        assert(c:flush())
        c:close()
      end)
      local c = connect(port)
      local s = assert(c:receive("*a"))
      assert.is_true(s == cold)
      assert.is_true(tonumber(ringline.metrics().sendfile_fills) > fills0)
      c:close()
      lst:close()
      idle_gauges()
    end)
    os.remove(path)
    assert(ok, err)
  end)

  it("without cachestat (RINGLINE_DISABLE_FEATURES=cachestat) the ring splices every byte", function()
    local f0 = os.getenv("RINGLINE_DISABLE_FEATURES")
    ffi.C.setenv("RINGLINE_DISABLE_FEATURES", f0 and (f0 .. ",cachestat") or "cachestat", 1)
    local ok, err = pcall(run, function()
      local fills0 = tonumber(ringline.metrics().sendfile_fills)
      local lst, port = server(function(c)
        local f = assert(fs.open(DIR .. "/data.bin", "r"))
        assert.are.equal(#data - 3, c:sendfile(f, 3, nil, "<"))
        assert.are.equal(10, c:sendfile(f, 0, 10, "|"))
        assert(c:send(">"))
        f:close()
        assert(c:flush())
        c:close()
      end)
      local c = connect(port)
      local s = assert(c:receive("*a"))
      assert.is_true(s == "<" .. data:sub(4) .. "|" .. data:sub(1, 10) .. ">")
      assert.is_true(tonumber(ringline.metrics().sendfile_fills) >= fills0 + 4)  -- 3 MiB in 1 MiB pipefuls, and one
      c:close()
      lst:close()
      idle_gauges()
    end)
    if f0 then ffi.C.setenv("RINGLINE_DISABLE_FEATURES", f0, 1) else ffi.C.unsetenv("RINGLINE_DISABLE_FEATURES") end
    assert(ok, err)
  end)

  it("obeys backpressure: a reader that does not read holds the sender", function()
    local big = support.pattern(24 * MiB, 8)
    local fb = assert(io.open(DIR .. "/big.bin", "wb"))
    fb:write(big)
    fb:close()
    run(function()
      local ch = ringline.channel(1)
      local lst, port = server(function(c)
        local f = assert(fs.open(DIR .. "/big.bin", "r"))
        c:settimeout(100)
        local ok, err = c:sendfile(f, 0, #big)    -- waits above the high watermark
        local spliced = bit.band(C.rl_worker_features(c.w), C.RL_FEAT_SPLICE) ~= 0
        ch:put({ ok, err, c.io.unsent, spliced })
        c:settimeout(5000)
        assert(c:flush())
        f:close()
        c:close()
      end)
      local c = connect(port)
      local r = ch:get(5)
      assert.is_nil(r[1])
      assert.are.equal("timeout", r[2])            -- still queued, as a timed-out send
      assert.is_true(r[3] > 0)
      local s = assert(c:receive("*a"))
      if r[4] then
        assert.are.equal(#big, #s)               -- spliced: all of it was queued at once
        assert.is_true(s == big)
      else
        -- without splice the file is read and sent piece by piece: a
        -- timeout leaves the part queued so far, as a bounded send does
        assert.is_true(#s < #big)
        assert.is_true(s == big:sub(1, #s))
      end
      c:close()
      lst:close()
      idle_gauges()
    end)
  end)

  it("a file truncated while it is sent fails the send with \"file truncated\"", function()
    local big = DIR .. "/trunc.bin"
    local content = support.pattern(16 * MiB, 3)
    local f0 = assert(io.open(big, "wb"))
    f0:write(content)
    f0:close()
    run(function()
      local result = ringline.channel(1)
      local lst, port = server(function(c)
        local f = assert(fs.open(big, "r"))
        c:settimeout(5000)
        result:put({ c:sendfile(f, 0, 16 * MiB) })
        f:close()
        c:close()
      end)
      local c = connect(port)
      -- the sender is under way (its queue holds the file), the reader
      -- reads nothing yet: cut the file short now
      assert.is_true(support.eventually(function()
        return tonumber(ringline.metrics().send_bytes_queued) > 0
      end))
      assert.are.equal(0, ffi.C.truncate(big, MiB))
      local s, err, partial = c:receive("*a")
      s = s or partial
      assert.is_true(#s < 16 * MiB, "fewer bytes than promised: " .. #s)
      assert.is_true(#s >= MiB)
      -- what the file still holds came as it is; bytes past the cut that
      -- were already in the pipe or the socket are the kernel's (spliced
      -- pages are referenced, not copied: a truncation may zero them)
      assert.is_true(s:sub(1, MiB) == content:sub(1, MiB), "the file's first MiB differs")
      local r = result:get(5)
      assert.are.same({ nil, "file truncated" }, { r[1], r[2] })
      c:close()
      lst:close()
      idle_gauges()
    end)
  end)

  it("without splice (RINGLINE_DISABLE_FEATURES=splice) reads and sends instead", function()
    local f0 = os.getenv("RINGLINE_DISABLE_FEATURES")   -- CI's second pass sets some
    ffi.C.setenv("RINGLINE_DISABLE_FEATURES", f0 and (f0 .. ",splice") or "splice", 1)
    local ok, err = pcall(run, function()
      local lst, port = server(function(c)
        local f = assert(fs.open(DIR .. "/data.bin", "r"))
        assert(c:send("["))
        assert.are.equal(#data - 1, c:sendfile(f, 1))
        assert(c:send("]"))
        f:close()
        c:close()
      end)
      local c = connect(port)
      local s = assert(c:receive("*a"))
      assert.is_true(s == "[" .. data:sub(2) .. "]")
      assert.are.equal(0, tonumber(ringline.metrics().sendfile_pipes))
      c:close()
      lst:close()
      idle_gauges()
    end)
    if f0 then ffi.C.setenv("RINGLINE_DISABLE_FEATURES", f0, 1) else ffi.C.unsetenv("RINGLINE_DISABLE_FEATURES") end
    assert(ok, err)
  end)

  it("the read-and-send path makes no Lua string per piece (a 4 MiB file, the collector stopped)", function()
    local f0 = os.getenv("RINGLINE_DISABLE_FEATURES")
    ffi.C.setenv("RINGLINE_DISABLE_FEATURES", f0 and (f0 .. ",splice") or "splice", 1)
    local big = support.pattern(4 * 1048576, 7)
    local path = DIR .. "/big.bin"
    local w = assert(io.open(path, "wb"))
    w:write(big)
    w:close()
    local ok, err = pcall(run, function()
      local grew
      local lst, port = server(function(c)
        local f = assert(fs.open(path, "r"))
        collectgarbage("collect")
        collectgarbage("stop")
        local k0 = collectgarbage("count")
        local n = c:sendfile(f)
        grew = collectgarbage("count") - k0
        collectgarbage("restart")
        assert.are.equal(#big, n)
        f:close()
        c:close()
      end)
      local c = connect(port)
      local s = assert(c:receive("*a"))
      assert.is_true(s == big)
      c:close()
      lst:close()
      -- a string and a string.buffer per 64 KiB piece made 8 MiB here
      assert.is_true(grew < 1024, ("the Lua heap grew %.0f KiB"):format(grew))
      idle_gauges()
    end)
    if f0 then ffi.C.setenv("RINGLINE_DISABLE_FEATURES", f0, 1) else ffi.C.unsetenv("RINGLINE_DISABLE_FEATURES") end
    os.remove(path)
    assert(ok, err)
  end)

  it("refuses what is not a file, a closed file, bad numbers", function()
    run(function()
      local lst, port = server(function(c)
        local f = assert(fs.open(DIR .. "/data.bin", "r"))
        assert.has_error(function() c:sendfile("x") end)
        assert.has_error(function() c:sendfile(f, -1) end)
        assert.has_error(function() c:sendfile(f, 0, 1.5) end)
        assert.are.equal(0, c:sendfile(f, 0, 0))
        assert.are.equal(0, c:sendfile(f, #data + 5))       -- past the end: nothing
        f:close()
        assert.are.same({ nil, "file closed" }, { c:sendfile(f, 0, 1) })
        c:close()
        assert.are.same({ nil, "closed" }, { c:sendfile(f, 0, 1) })
      end)
      local c = connect(port)
      assert.are.equal("", c:receive("*a"))
      c:close()
      lst:close()
      idle_gauges()
    end)
  end)

  it("works on TLS connections by reading and encrypting", function()
    local cert, key = DIR .. "/cert.pem", DIR .. "/key.pem"
    assert(sh("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 "
      .. "-subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 >/dev/null 2>&1 "
      .. "-keyout " .. key .. " -out " .. cert), "the openssl CLI makes a certificate")
    run(function()
      local lst = assert(ringline.listen("127.0.0.1:0", function(c)
        local f = assert(fs.open(DIR .. "/data.bin", "r"))
        assert(c:send("<"))
        assert.are.equal(#data, c:sendfile(f))
        assert(c:send(">"))
        f:close()
        c:close()
      end, { ssl = { cert = cert, key = key } }))
      local _, port = lst:getsockname()
      local c = assert(ringline.connect("localhost", port, { ssl = { ca = cert }, timeout = 5 }))
      local s = assert(c:receive("*a"))
      assert.is_true(s == "<" .. data .. ">")
      c:close()
      lst:close()
      idle_gauges()
    end)
  end)
end)

describe("res:sendfile", function()
  setup(function()
    assert(sh("rm -rf " .. DIR .. " && mkdir -p " .. DIR))
    data = support.pattern(200000, 4)
    local f = assert(io.open(DIR .. "/page.bin", "wb"))
    f:write(data)
    f:close()
  end)
  teardown(function() sh("rm -rf " .. DIR) end)

  it("answers with Content-Length and the file; HEAD gets the head only; chunked after writes", function()
    run(function()
      local hl = assert(http.listen("127.0.0.1:0", function(req, res)
        local f = assert(fs.open(DIR .. "/page.bin", "r"))
        if req.path == "/part" then
          res:write("<")
          assert(res:sendfile(f, 5, 10))
          res:finish(">")
        else
          assert.has_error(function() res:sendfile("not a file") end)
          assert(res:sendfile(f))
        end
        f:close()
      end))
      local port = select(2, hl:getsockname())
      local c = connect(port)
      c:send("GET / HTTP/1.1\r\nHost: t\r\n\r\nHEAD / HTTP/1.1\r\nHost: t\r\n\r\n"
        .. "GET /part HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
      local s = assert(c:receive("*a"))
      c:close()
      hl:close()
      local h1, rest = s:match("^(.-\r\n\r\n)(.*)$")
      assert.matches("Content%-Length: 200000\r\n", h1)
      assert.is_true(rest:sub(1, 200000) == data)
      rest = rest:sub(200001)
      local h2, rest2 = rest:match("^(.-\r\n\r\n)(.*)$")
      assert.matches("^HTTP/1.1 200", h2)
      assert.matches("Content%-Length: 200000\r\n", h2)    -- HEAD: the length, no body
      local h3, body3 = rest2:match("^(HTTP/1.1 200.-\r\n\r\n)(.*)$")
      assert.matches("Transfer%-Encoding: chunked", h3)
      assert.are.equal("1\r\n<\r\na\r\n" .. data:sub(6, 15) .. "\r\n1\r\n>\r\n0\r\n\r\n", body3)
    end)
  end)
end)
