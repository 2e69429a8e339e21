-- Bad input on a TLS listener (issue 11, "Bad input"): a flood of
-- handshakes that send a ClientHello and stall, a peer that resets in the
-- middle of a record, garbage and oversized records after the handshake, a
-- TLS 1.2 renegotiation attempt. Each costs only its own connection, is
-- counted in metrics().tls_failures, and the worker's connections, buffers
-- and descriptors are back at their idle values afterwards; a good TLS
-- connection open all along still works. The raw peers are Python's ssl
-- module (through memory BIOs, so the test can cut and forge records) and
-- openssl s_client; the certificate is made at test time.
local ffi = require "ffi"
local ringline = require "ringline"
local support = require "support"

local run = support.run

local function sh(cmd)
  local ok = os.execute("unset LD_PRELOAD; " .. cmd)
  return ok == 0 or ok == true
end

pcall(ffi.cdef, "int getpid(void);")

local dir, cert, key, peer_py
-- A TLS 1.3 client over a raw socket that misbehaves after its handshake:
-- argv: mode port ca; prints "done" once it has sent its bad bytes.
local PEER = [[
import os, socket, ssl, struct, sys
mode, port, ca = sys.argv[1], int(sys.argv[2]), sys.argv[3]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.load_verify_locations(ca)
s = socket.create_connection(("127.0.0.1", port))
inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
obj = ctx.wrap_bio(inc, out, server_hostname="localhost")
while True:
    try:
        obj.do_handshake()
        break
    except ssl.SSLWantReadError:
        s.sendall(out.read())
        data = s.recv(65536)
        if not data:
            sys.exit("closed in the handshake")
        inc.write(data)
s.sendall(out.read())
if mode == "reset":
    obj.write(b"x" * 10000)
    rec = out.read()
    s.sendall(rec[: len(rec) // 2])
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
elif mode == "garbage":
    s.sendall(b"\x17\x03\x03\x00\x40" + b"\x5a" * 64)
elif mode == "oversized":
    s.sendall(b"\x17\x03\x03\xff\xff" + b"\x00" * 4096)
print("done", flush=True)
if mode != "reset":
    try:
        while s.recv(65536):
            pass
    except OSError:
        pass
s.close()
]]

setup(function()
  dir = os.tmpname()
  os.remove(dir)
  assert(sh("mkdir -p " .. dir))
  cert, key = dir .. "/cert.pem", dir .. "/key.pem"
  assert(sh("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 "
    .. "-subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 "
    .. "-keyout " .. key .. " -out " .. cert .. " >/dev/null 2>&1"), "the openssl CLI makes a certificate")
  peer_py = dir .. "/peer.py"
  local f = assert(io.open(peer_py, "w"))
  f:write(PEER)
  f:close()
end)
teardown(function()
  if dir then os.execute("rm -rf " .. dir) end
end)

local function fds()
  local p = assert(io.popen("unset LD_PRELOAD; ls /proc/" .. ffi.C.getpid() .. "/fd | wc -l"))
  local n = tonumber(p:read("*a"))
  p:close()
  return n
end

-- The gauges that must come back to idle.
local function idle()
  local m = ringline.metrics()
  return { conns = m.conns_open, accum = m.accum_bytes, slots = m.send_slots_used,
           queued = m.send_bytes_queued, heap = m.send_heap_bytes }
end

local function file(path)
  local f = io.open(path)
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

-- An echo server on a TLS port, and a good client kept open across the
-- bad peers: returns the listener, its port, the handler's results and
-- a function checking the good client still echoes.
local function setup_server(extra)
  local ends = {}
  local ssl = { cert = cert, key = key }
  for k, v in pairs(extra or {}) do ssl[k] = v end
  local lst, port = support.server(function(c)
    while true do
      local l, err = c:receive("*l")
      if not l then ends[#ends + 1] = err; return end
      c:send(l, "\n")
    end
  end, { ssl = ssl })
  local good = assert(ringline.connect("localhost", port, { ssl = { ca = cert }, timeout = 5 }))
  local function still_good(tag)
    assert(good:send(tag, "\n"))
    return good:receive("*l") == tag
  end
  return lst, port, ends, good, still_good
end

describe("TLS bad input", function()
  it("a handshake flood: each stalled ClientHello times out alone, metrics and descriptors back to idle", function()
    local N = 48
    local r = run(function()
      local fd0, idle0 = fds(), idle()
      -- a real ClientHello, captured by a plaintext listener
      local hello
      local cap, cport = support.server(function(c)
        local h = assert(c:receive(5))
        local len = h:byte(4) * 256 + h:byte(5)
        hello = h .. assert(c:receive(len))
      end)
      ringline.connect("127.0.0.1", cport, { ssl = { verify = false }, timeout = 2 })
      cap:close()
      assert(hello and hello:byte(1) == 0x16, "captured a handshake record")
      local lst, port, ends, good, still_good = setup_server()
      local t0 = ringline.now()
      local tasks, results = {}, {}
      for i = 1, N do
        tasks[i] = ringline.spawn(function()
          local c = assert(ringline.connect("127.0.0.1", port))
          assert(c:send(hello))
          -- the server's flight arrives; we never answer it
          local all, err = c:receive("*a")
          results[i] = { ok = all ~= nil, err = err, waited = ringline.now() - t0 }
          c:close()
        end)
      end
      for i = 1, N do ringline.wait(tasks[i]) end
      local good_during = still_good("during")
      good:close()
      assert(support.eventually(function() return lst:connections() == 0 end))
      lst:close()
      assert(support.eventually(function() return idle().conns == idle0.conns end))
      return { results = results, good = good_during, failures = lst:tls_failures(),
               m = ringline.metrics().tls_failures, idle0 = idle0, idle1 = idle(),
               fds_back = support.eventually(function() return fds() == fd0 end), ends = ends }
    end, { tls_handshake_timeout = 300 })
    assert.are.equal(N, #r.results)
    for i = 1, N do
      assert.is_false(r.results[i].ok, "flood connection " .. i .. " was reset")
      assert.is_true(r.results[i].waited >= 0.29, "timed out at its own deadline")
    end
    assert.is_true(r.good)
    assert.are.equal(N, r.failures)
    assert.are.equal(N + 1, r.m)    -- and the capturing client's, refused by a plaintext peer
    assert.are.same(r.idle0, r.idle1)
    assert.is_true(r.fds_back)  -- the listener's socket closes a moment later
    assert.are.same({ "closed" }, r.ends) -- only the good client reached the handler
  end)

  it("a reset mid-record, a garbage record and an oversized one cost only their connection", function()
    if not sh("python3 -c 'import ssl' 2>/dev/null") then
      pending("no python3 with ssl")
      return
    end
    local r = run(function()
      local fd0, idle0 = fds(), idle()
      local lst, port, ends, good, still_good = setup_server()
      local out = {}
      for i, mode in ipairs { "reset", "garbage", "oversized" } do
        local f = dir .. "/" .. mode .. ".out"
        assert(sh(("python3 %s %s %d %s > %s 2>&1 &"):format(peer_py, mode, port, cert, f)))
        -- the handler sees its connection end; the good one goes on
        assert(support.eventually(function() return #ends == i end, 10), mode)
        support.eventually(function() return (file(f) or ""):find("done") ~= nil end, 10)
        out[mode] = { err = ends[i], peer = file(f), good = still_good(mode) }
      end
      good:close()
      assert(support.eventually(function() return lst:connections() == 0 end))
      lst:close()
      assert(support.eventually(function() return idle().conns == idle0.conns end))
      return { out = out, failures = ringline.metrics().tls_failures, idle0 = idle0,
               idle1 = idle(), fds_back = support.eventually(function() return fds() == fd0 end) }
    end)
    for _, mode in ipairs { "reset", "garbage", "oversized" } do
      local o = r.out[mode]
      assert.matches("^done", o.peer, nil, false, mode .. " peer: " .. tostring(o.peer))
      assert.is_true(o.good, mode)
    end
    -- the kernel reports a reset once: a receive armed after another
    -- operation took the error reads the end of stream instead
    assert.is_truthy(r.out.reset.err == "connection reset by peer" or r.out.reset.err == "closed",
                     r.out.reset.err)
    assert.are.equal("protocol error", r.out.garbage.err)
    assert.are.equal("protocol error", r.out.oversized.err)
    assert.are.equal(2, r.failures)  -- the refused records; a reset is the peer's
    assert.are.same(r.idle0, r.idle1)
    assert.is_true(r.fds_back)  -- the listener's socket closes a moment later
  end)

  it("refuses a TLS 1.2 renegotiation: that connection ends, no second handshake", function()
    local r = run(function()
      local lst, port, ends, good, still_good = setup_server()
      local f = dir .. "/reneg.out"
      -- s_client's "R" line renegotiates; its stdin stays open (the sleep)
      -- so it does not quit before the answer: the test waits on the
      -- server's side and s_client's output, then kills it
      local pidf, pidf2 = dir .. "/reneg.pid", dir .. "/reneg2.pid"
      assert(sh(("(sh -c 'echo $$ > %s; printf \"R\\n\"; exec sleep 10' | openssl s_client -tls1_2 "
        .. "-connect 127.0.0.1:%d > %s 2>&1 & echo $! > %s)"):format(pidf2, port, f, pidf)))
      assert(support.eventually(function() return #ends == 1 end, 10))
      assert(support.eventually(function()
        local s = file(f)
        return s and s:find("no renegotiation", 1, true) ~= nil
      end, 10))
      for _, pf in ipairs { pidf, pidf2 } do
        local pid = tonumber(file(pf))
        if pid then os.execute("kill " .. pid .. " 2>/dev/null") end
      end
      local hs = ringline.metrics().tls_handshakes
      local ok = still_good("after")
      good:close()
      lst:close()
      return { err = ends[1], hs = hs, ok = ok, failures = ringline.metrics().tls_failures, out = file(f) }
    end)
    assert.are.equal("protocol error", r.err, r.out)
    assert.are.equal(3, r.hs)       -- the good client's (both ends) and s_client's: no more
    assert.is_true(r.ok)
    assert.are.equal(1, r.failures)
  end)
end)
