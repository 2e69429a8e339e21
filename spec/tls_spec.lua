-- TLS (ringline.tls, core/src/tls.c): listen and connect with ssl = {...},
-- plaintext seen through the usual receive patterns, view and send; a
-- certificate the client cannot verify fails by default; a real TLS client
-- (curl, openssl s_client) against the Lua server. The certificate is made
-- at test time with the openssl CLI: no private key is committed.
local ffi = require "ffi"
local ringline = require "ringline"
local support = require "support"

local run = support.run

-- Children run without LD_PRELOAD: CI loads the sanitizer runtimes into
-- luajit that way, and curl or openssl must not inherit them.
local function sh(cmd)
  local ok = os.execute("unset LD_PRELOAD; " .. cmd)
  return ok == 0 or ok == true
end

local dir, cert, key, other_cert, other_key
setup(function()
  dir = os.tmpname()
  os.remove(dir)
  assert(sh("mkdir -p " .. dir))
  cert, key = dir .. "/cert.pem", dir .. "/key.pem"
  other_cert, other_key = dir .. "/other.pem", dir .. "/other.key"
  local mk = "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 "
    .. "-subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 >/dev/null 2>&1 "
  assert(sh(mk .. "-keyout " .. key .. " -out " .. cert), "the openssl CLI makes a certificate")
  assert(sh(mk .. "-keyout " .. other_key .. " -out " .. other_cert))
end)
teardown(function()
  if dir then os.execute("rm -rf " .. dir) end
end)

local function tls_server(handler, extra)
  local opts = { ssl = { cert = cert, key = key } }
  for k, v in pairs(extra or {}) do opts[k] = v end
  local lst = assert(ringline.listen("127.0.0.1:0", handler, opts))
  local _, port = lst:getsockname()
  return lst, port
end

describe("TLS", function()
  it("echoes through receive patterns, view and send; sslinfo says what was negotiated", function()
    local big = support.pattern(300000, 3)
    local r = run(function()
      local sinfo
      local lst, port = tls_server(function(c)
        sinfo = c:sslinfo()
        local line = assert(c:receive("*l"))
        assert(c:send("line:", line, "\n"))
        local n = tonumber(assert(c:receive("*l")))
        local body = assert(c:receive(n))
        assert(c:send(body))
        local ptr, len = assert(c:view(5))
        assert(c:send(ffi.string(ptr, 5)))
        c:consume(5)
        assert(c:receive("*a") == "")
      end)
      local c = assert(ringline.connect("localhost", port, { ssl = { ca = cert }, timeout = 5 }))
      assert(c:send("hello\n", #big, "\n", big, "12345"))
      local out = { c:receive("*l"), c:receive(#big) == big, c:receive(5) }
      out.info = c:sslinfo()
      assert(c:shutdown("send"))
      out.eof = { c:receive("*a") }
      c:close()
      lst:close()
      out.sinfo = sinfo
      return out
    end)
    assert.are.equal("line:hello", r[1])
    assert.is_true(r[2])
    assert.are.equal("12345", r[3])
    assert.are.same({ "" }, r.eof)
    assert.are.equal("TLSv1.3", r.info.protocol)
    assert.is_true(r.info.peer_verified)
    assert.are.equal("localhost", r.info.server_name)
    assert.matches("CN=localhost", r.info.peer_subject, 1, true)
    assert.is_false(r.info.resumed)
    assert.are.equal("TLSv1.3", r.sinfo.protocol)
    assert.are.equal("localhost", r.sinfo.server_name) -- the SNI the client sent
  end)

  it("verifies by default: the system store refuses a self-signed certificate", function()
    local r = run(function()
      local reached = 0
      local lst, port = tls_server(function() reached = reached + 1 end)
      local out = {}
      out.default = { ringline.connect("localhost", port, { ssl = true, timeout = 5 }) }
      out.wrong_ca = { ringline.connect("localhost", port, { ssl = { ca = other_cert }, timeout = 5 }) }
      out.wrong_name = { ringline.connect("127.0.0.1", port,
        { ssl = { ca = cert, server_name = "example.com" }, timeout = 5 }) }
      local c = assert(ringline.connect("127.0.0.1", port, { ssl = { verify = false }, timeout = 5 }))
      out.noverify = c:sslinfo().peer_verified
      c:close()
      assert(support.eventually(function() return reached == 1 and lst:tls_failures() == 3 end))
      out.failures = lst:tls_failures()
      lst:close()
      return out
    end)
    assert.is_nil(r.default[1])
    assert.matches("^certificate verify failed: self.signed certificate", r.default[2])
    assert.matches("^certificate verify failed: ", r.wrong_ca[2])
    assert.matches("^certificate verify failed: .*example%.com", r.wrong_name[2])
    assert.is_false(r.noverify)
    assert.are.equal(3, r.failures)
  end)

  it("a plaintext client on a TLS port costs only its own connection", function()
    local r = run(function()
      local reached = 0
      local lst, port = tls_server(function(c) reached = reached + 1; c:send(c:receive("*l"), "\n") end)
      local plain = assert(ringline.connect("127.0.0.1", port))
      assert(plain:send("GET / HTTP/1.1\r\n\r\n"))
      local got = { plain:receive("*a") }
      local c = assert(ringline.connect("localhost", port, { ssl = { ca = cert }, timeout = 5 }))
      assert(c:send("still here\n"))
      local line = c:receive("*l")
      c:close()
      assert(support.eventually(function() return lst:tls_failures() == 1 end))
      lst:close()
      return { got = got, line = line, reached = reached }
    end)
    -- the server answers garbage with an alert and a reset: never a handler
    assert.are_not.equal("GET", (r.got[1] or ""):sub(1, 3))
    assert.are.equal("still here", r.line)
    assert.are.equal(1, r.reached)
  end)

  it("a peer silent in the handshake is reset after tls_handshake_timeout, never a handler", function()
    local r = run(function()
      local reached = 0
      local lst, port = tls_server(function() reached = reached + 1 end)
      local t0 = ringline.now()
      local silent = assert(ringline.connect("127.0.0.1", port))
      local got = { silent:receive("*a") }
      local waited = ringline.now() - t0
      silent:close()
      assert(support.eventually(function() return lst:tls_failures() == 1 end))
      lst:close()
      return { got = got, waited = waited, reached = reached, m = ringline.metrics().tls_failures }
    end, { tls_handshake_timeout = 200 })
    assert.is_nil(r.got[1])              -- reset, not a clean end
    assert.is_true(r.waited >= 0.19, tostring(r.waited))
    assert.are.equal(0, r.reached)
    assert.are.equal(1, r.m)
  end)

  it("ssl.handshake_timeout bounds one listener's handshakes below the global key", function()
    local r = run(function()
      local lst = assert(ringline.listen("127.0.0.1:0", function() end,
        { ssl = { cert = cert, key = key, handshake_timeout = 150 } }))
      local _, port = lst:getsockname()
      local t0 = ringline.now()
      local silent = assert(ringline.connect("127.0.0.1", port))
      local got = { silent:receive("*a") }
      local waited = ringline.now() - t0
      silent:close()
      assert(support.eventually(function() return lst:tls_failures() == 1 end))
      lst:close()
      return { got = got, waited = waited }
    end) -- tls_handshake_timeout stays at its default, 10 s
    assert.is_nil(r.got[1])
    assert.is_true(r.waited >= 0.14 and r.waited < 5, tostring(r.waited))
  end)

  it("refuses ssl keys it does not implement by name, and flat ssl_* options", function()
    local r = run(function()
      return {
        { pcall(ringline.listen, 0, function() end, { ssl = { cert = cert, key = key, handshake_timeout = 0 } }) },
        { pcall(ringline.listen, 0, function() end, { ssl = { cert = cert } }) },
        { pcall(ringline.connect, "127.0.0.1", 1, { ssl = { bogus = 1 } }) },
        { pcall(ringline.connect, "127.0.0.1", 1, { ssl_verify = true }) },
        { ringline.listen(0, function() end, { ssl = { cert = cert, key = dir .. "/none.key" } }) },
      }
    end)
    assert.is_false(r[1][1])
    assert.matches("ssl.handshake_timeout must be milliseconds, 1..3600000", r[1][2], 1, true)
    assert.matches("ssl.key must be a file name", r[2][2], 1, true)
    assert.matches("unknown option 'bogus'", r[3][2], 1, true)
    assert.matches("option 'ssl_verify' is not supported (use ssl = {", r[4][2], 1, true)
    assert.is_nil(r[5][1])
    assert.matches("none.key", r[5][2], 1, true)
  end)

  it("conn:sslhandshake upgrades a plaintext connection (STARTTLS) on both sides", function()
    local r = run(function()
      local lst, port = support.server(function(c)
        assert(c:receive("*l") == "STARTTLS")
        assert(c:send("go\n"))
        assert(c:sslhandshake({ cert = cert, key = key }))
        c:send("secret:", c:receive("*l"), "\n")
      end)
      local c = support.connect(port)
      assert(c:send("STARTTLS\n"))
      assert(c:receive("*l") == "go")
      local ok, err = c:sslhandshake(nil, "localhost", true, { ca = cert })
      assert(ok, err)
      assert(c:send("x\n"))
      local line = c:receive("*l")
      local again = { c:sslhandshake(nil, "localhost") }
      c:close()
      lst:close()
      return { line, again }
    end)
    assert.are.equal("secret:x", r[1])
    assert.are.same({ nil, "already TLS" }, r[2])
  end)

  it("serves curl (when installed) over TLS 1.3 and 1.2: a real client verifies the Lua server", function()
    if not sh("command -v curl >/dev/null 2>&1") then
      pending("no curl on this machine")
      return
    end
    local r = run(function()
      local got = {}
      local lst, port = tls_server(function(c)
        local line = c:receive("*l")
        while true do
          local l = c:receive("*l")
          if not l or l == "" then break end
        end
        got[#got + 1] = { line = line, protocol = c:sslinfo().protocol }
        c:send("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nhi\n")
      end)
      local bodies = {}
      for i, extra in ipairs { "", "--tls-max 1.2" } do
        -- curl runs in the background (a blocking popen would stop the
        -- loop it talks to); its output file says when it is done
        local outf = dir .. "/curl" .. i .. ".out"
        assert(sh(("(curl -s --max-time 5 %s --cacert %s https://localhost:%d/x; echo \" rc=$?\") > %s 2>&1 &")
          :format(extra, cert, port, outf)))
        assert(support.eventually(function()
          local f = io.open(outf)
          local body = f and f:read("*a")
          if f then f:close() end
          bodies[i] = body
          return body and body:find("rc=%d+") ~= nil
        end, 10))
      end
      lst:close()
      return { got = got, bodies = bodies }
    end)
    assert.are.same({ "hi\n rc=0\n", "hi\n rc=0\n" }, r.bodies)
    assert.are.same({ { line = "GET /x HTTP/1.1", protocol = "TLSv1.3" },
                      { line = "GET /x HTTP/1.1", protocol = "TLSv1.2" } }, r.got)
  end)
end)
