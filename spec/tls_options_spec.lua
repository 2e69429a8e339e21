-- TLS options (ringline.tls): ALPN on both sides, certificates chosen by SNI,
-- protocols and ciphers, client certificates, session resumption (TLS 1.2
-- and 1.3). Certificates are made at test time with the openssl CLI (a
-- test CA signs the SNI and client certificates): no private key is
-- committed.
local ffi = require "ffi"
local ringline = require "ringline"
local support = require "support"

local run = support.run

local function sh(cmd)
  local ok = os.execute("unset LD_PRELOAD; " .. cmd)
  return ok == 0 or ok == true
end

local dir
local P = {} -- name -> { cert = PATH, key = PATH }
setup(function()
  dir = os.tmpname()
  os.remove(dir)
  assert(sh("mkdir -p " .. dir))
  local mk = "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 "
  local function pair(name, subj, san, ca)
    P[name] = { cert = dir .. "/" .. name .. ".pem", key = dir .. "/" .. name .. ".key" }
    local cmd = mk .. "-subj " .. subj .. (san and (" -addext subjectAltName=" .. san) or "")
      .. (ca and (" -CA " .. P[ca].cert .. " -CAkey " .. P[ca].key) or "")
      .. " -keyout " .. P[name].key .. " -out " .. P[name].cert .. " >/dev/null 2>&1"
    assert(sh(cmd), "the openssl CLI makes " .. name)
  end
  pair("ca", "/CN=ringline-test-ca", nil, nil)
  pair("default", "/CN=localhost", "DNS:localhost,IP:127.0.0.1", "ca")
  pair("a", "/CN=a.example", "DNS:a.example", "ca")
  pair("b", "/CN=wild.b.example", "DNS:*.b.example", "ca")
  pair("client", "/CN=client", nil, "ca")
  pair("rogue", "/CN=rogue", nil, nil) -- self-signed: not from the CA
end)
teardown(function()
  if dir then os.execute("rm -rf " .. dir) end
end)

local function server(handler, ssl)
  ssl.cert = ssl.cert or P.default.cert
  ssl.key = ssl.key or P.default.key
  return support.server(handler, { ssl = ssl })
end

-- One request: the server answers a line with its sslinfo's fields.
local function ask(port, ssl)
  ssl.ca = ssl.ca or P.ca.cert
  local c, err = ringline.connect("127.0.0.1", port, { ssl = ssl, timeout = 5 })
  if not c then return { err = err } end
  local out = { info = c:sslinfo() }
  c:send("?\n")
  out.line, out.rerr = c:receive("*l")
  out.session = c:sslinfo().session -- after a read: a TLS 1.3 ticket came
  c:close()
  return out
end

local function echo_info(c)
  local i = c:sslinfo()
  assert(c:receive("*l"))
  c:send(("%s|%s|%s|%s|%s\n"):format(i.protocol, tostring(i.alpn), tostring(i.server_name),
    tostring(i.peer_subject), tostring(i.peer_verified)))
end

describe("TLS options", function()
  it("ALPN: the server picks its first the client offers; sslinfo().alpn on both sides", function()
    local r = run(function()
      local lst, port = server(echo_info, { alpn = { "h2", "http/1.1" } })
      local out = {
        ask(port, { server_name = "localhost", alpn = { "http/1.1" } }),
        ask(port, { server_name = "localhost", alpn = { "http/1.1", "h2" } }),
        ask(port, { server_name = "localhost" }),
        ask(port, { server_name = "localhost", alpn = { "spdy/3" } }),
      }
      out.failures = lst:tls_failures()
      lst:close()
      return out
    end)
    assert.are.equal("http/1.1", r[1].info.alpn)
    assert.matches("^TLSv1.3|http/1.1|", r[1].line)
    assert.are.equal("h2", r[2].info.alpn)          -- the server's preference
    assert.matches("^TLSv1.3|h2|", r[2].line)
    assert.is_nil(r[3].info.alpn)                   -- none offered: none chosen
    assert.matches("^TLSv1.3|nil|", r[3].line)
    assert.matches("no application protocol", r[4].err, 1, true)
    assert.are.equal(1, r.failures)
  end)

  it("SNI: exact names, then one-label wildcards, else the default pair", function()
    local sni = { ["a.example"] = P.a, ["*.b.example"] = P.b }
    local r = run(function()
      local lst, port = server(echo_info, { sni = sni })
      local out = {
        ask(port, { server_name = "a.example" }),
        ask(port, { server_name = "x.B.example" }),
        ask(port, { server_name = "localhost" }),
        ask(port, { server_name = "y.x.b.example" }),   -- too deep: the default
      }
      lst:close()
      return out
    end)
    assert.matches("CN=a.example", r[1].info.peer_subject, 1, true)
    assert.matches("|a.example|", r[1].line, 1, true)
    assert.matches("CN=wild.b.example", r[2].info.peer_subject, 1, true)
    assert.matches("CN=localhost", r[3].info.peer_subject, 1, true)
    assert.matches("certificate verify failed", r[4].err, 1, true)
    assert.matches("not valid for y.x.b.example", r[4].err, 1, true)
  end)

  it("protocols and ciphers limit what is negotiated; a bad list fails listen", function()
    local r = run(function()
      local l12, p12 = server(echo_info, { protocols = { "TLSv1.2" },
                                           ciphers = "ECDHE-ECDSA-AES128-GCM-SHA256" })
      local l13, p13 = server(echo_info, { ciphers = "TLS_CHACHA20_POLY1305_SHA256" })
      local out = {
        ask(p12, { server_name = "localhost" }),
        ask(p12, { server_name = "localhost", protocols = { "TLSv1.3" } }),
        ask(p13, { server_name = "localhost", protocols = { "TLSv1.3" } }),
        { ringline.listen(0, echo_info, { ssl = { cert = P.default.cert, key = P.default.key,
                                                  ciphers = "NO-SUCH-CIPHER" } }) },
        { pcall(ringline.listen, 0, echo_info, { ssl = { cert = P.default.cert, key = P.default.key,
                                                         protocols = { "SSLv3" } } }) },
      }
      l12:close()
      l13:close()
      return out
    end)
    assert.are.equal("TLSv1.2", r[1].info.protocol)
    assert.are.equal("ECDHE-ECDSA-AES128-GCM-SHA256", r[1].info.cipher)
    assert.matches("handshake failed", r[2].err, 1, true)
    assert.are.equal("TLS_CHACHA20_POLY1305_SHA256", r[3].info.cipher)
    assert.is_nil(r[4][1])
    assert.matches("ciphers", r[4][2], 1, true)
    assert.is_false(r[5][1])
    assert.matches("unknown protocol SSLv3", r[5][2], 1, true)
  end)

  it("client_ca: a client certificate from the CA is verified; none or a rogue one never reaches the handler", function()
    local r = run(function()
      local seen = {}
      local lst, port = server(function(c)
        local i = c:sslinfo()
        seen[#seen + 1] = { i.peer_subject, i.peer_verified }
        assert(c:receive("*l"))
        c:send("ok\n")
      end, { client_ca = P.ca.cert })
      local out = {
        ask(port, { server_name = "localhost", cert = P.client.cert, key = P.client.key }),
        ask(port, { server_name = "localhost" }),
        ask(port, { server_name = "localhost", cert = P.rogue.cert, key = P.rogue.key }),
        ask(port, { server_name = "localhost", cert = P.client.cert, key = P.client.key,
                    protocols = { "TLSv1.2" } }),
      }
      out.seen, out.failures = seen, lst:tls_failures()
      lst:close()
      return out
    end)
    assert.are.equal("ok", r[1].line)
    assert.are.equal("ok", r[4].line)
    -- TLS 1.3: the client finishes first; the server's refusal ends its reads
    assert.is_nil(r[2].line)
    assert.is_nil(r[3].line)
    assert.are.equal(2, #r.seen)
    assert.matches("CN=client", r.seen[1][1], 1, true)
    assert.is_true(r.seen[1][2])
    assert.are.equal(2, r.failures)
  end)

  for _, proto in ipairs { "TLSv1.3", "TLSv1.2" } do
    it("resumes a session over " .. proto .. ": ssl.session, reused_session, sslinfo().resumed", function()
      local r = run(function()
        local resumed = {}
        local lst, port = server(function(c)
          resumed[#resumed + 1] = c:sslinfo().resumed
          assert(c:receive("*l"))
          c:send("ok\n")
        end, { protocols = { proto } })
        local first = ask(port, { server_name = "localhost" })
        local second = ask(port, { server_name = "localhost", session = first.session })
        -- STARTTLS style: sslhandshake returns the session and takes it back
        local function upgrade(sess)
          local c = assert(ringline.connect("127.0.0.1", port))
          local s = assert(c:sslhandshake(sess, "localhost", true, { ca = P.ca.cert }))
          local info = c:sslinfo()
          c:send("?\n")
          assert(c:receive("*l") == "ok")
          c:close()
          return s, info.resumed
        end
        local s1, r1 = upgrade(nil)
        local s2, r2 = upgrade(s1)
        local t = { upgrade(false) }
        lst:close()
        return { first = first, second = second, r1 = r1, r2 = r2, s1 = s1, s2 = s2,
                 t = t, resumed = resumed }
      end)
      assert.are.equal(proto, r.first.info.protocol)
      assert.is_false(r.first.info.resumed)
      assert.is_true(ffi.istype("struct rl_tls_session *", r.first.session))
      assert.is_true(r.second.info.resumed)
      assert.are.equal("ok", r.second.line)
      assert.is_false(r.r1)
      assert.is_true(r.r2)
      assert.is_true(ffi.istype("struct rl_tls_session *", r.s2))
      assert.are.same({ true, false }, r.t)             -- reused_session false: true
      assert.are.same({ false, true, false, true, false }, r.resumed)
    end)
  end

  it("refuses misused options with the caller's line", function()
    local r = run(function()
      local c = P.default
      return {
        { pcall(ringline.listen, 0, echo_info, { ssl = { cert = c.cert, key = c.key, alpn = "h2" } }) },
        { pcall(ringline.listen, 0, echo_info, { ssl = { cert = c.cert, key = c.key,
                                                         sni = { ["a.*.example"] = P.a } } }) },
        { pcall(ringline.listen, 0, echo_info, { ssl = { cert = c.cert, key = c.key,
                                                         sni = { ["a.example"] = { cert = P.a.cert } } } }) },
        { pcall(ringline.connect, "127.0.0.1", 1, { ssl = { cert = c.cert } }) },
        { pcall(ringline.connect, "127.0.0.1", 1, { ssl = { session = "x" } }) },
      }
    end)
    assert.matches("ssl.alpn must be a list", r[1][2], 1, true)
    assert.matches("ssl.sni names must be", r[2][2], 1, true)
    assert.matches("ssl.sni key must be a file name", r[3][2], 1, true)
    assert.matches("ssl.cert and ssl.key go together", r[4][2], 1, true)
    assert.matches("ssl.session must be a session", r[5][2], 1, true)
  end)
end)
