-- ringline.http_client: requests against an in-process server that answers
-- exact bytes (Content-Length, chunked, close-delimited, HEAD, redirects,
-- malformed lengths), the keep-alive pool seen through the server's
-- connection counter, timeouts, https through the TLS support, and a real
-- server (Python's http.server).
local bit = require "bit"
local ringline = require "ringline"
local hc = require "ringline.http_client"
local support = require "support"
local run = support.run

local function sh(cmd)
  local ok = os.execute("unset LD_PRELOAD; " .. cmd)
  return ok == 0 or ok == true
end

-- A server that reads each request head (and a Content-Length body) and
-- answers what answer(req, n) returns: a string sent as is, or a function
-- given the connection. Counts connections; records requests.
local function server(answer, opts)
  local st = { conns = 0, reqs = {} }
  local lst, port = support.server(function(c)
    st.conns = st.conns + 1
    local n = 0
    while true do
      local line = c:receive("*l")
      if not line then return end
      local head, len = { line }, 0
      while true do
        local l = assert(c:receive("*l"))
        head[#head + 1] = l
        if l == "" then break end
        local v = l:lower():match("^content%-length:%s*(%d+)")
        if v then len = tonumber(v) end
      end
      local body = len > 0 and assert(c:receive(len)) or ""
      n = n + 1
      local req = { head = table.concat(head, "\r\n"), line = line, body = body, path = line:match(" (%S+) ") }
      st.reqs[#st.reqs + 1] = req
      local a = answer(req, n)
      if type(a) == "function" then
        if a(c) == "close" then return end
      else
        assert(c:send(a))
      end
    end
  end, opts)
  st.lst, st.port = lst, port
  st.url = "http://127.0.0.1:" .. port
  return st
end

local function finish(st)
  hc._pool_close()
  st.lst:close()
end

describe("ringline.http_client", function()
  after_each(function() hc._pool_close() end)

  it("sends an exact request and reads a Content-Length body; get is the shortcut", function()
    local r = run(function()
      local st = server(function() return "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: 1\r\nx-a: 2\r\n\r\nhello" end)
      local res = assert(hc.request{ method = "POST", url = st.url .. "/p?q=1", body = "abc",
                                     headers = { ["X-Test"] = "v" }, timeout = 5000 })
      local out = { status = res.status, headers = res.headers, body = res:body() }
      local res2 = assert(hc.get(st.url .. "/g"))
      out.body2 = res2:body()
      out.again = res2:body()
      out.head = st.reqs[1].head
      out.reqbody = st.reqs[1].body
      out.line2 = st.reqs[2].line
      finish(st)
      return out
    end)
    assert.are.equal(200, r.status)
    assert.are.equal("1, 2", r.headers["x-a"])
    assert.are.equal("5", r.headers["content-length"])
    assert.are.equal("hello", r.body)
    assert.are.equal("hello", r.body2)
    assert.are.equal("hello", r.again)
    assert.are.equal("abc", r.reqbody)
    assert.are.equal("GET /g HTTP/1.1", r.line2)
    assert.matches("^POST /p%?q=1 HTTP/1%.1\r\n", r.head)
    assert.matches("\r\nX%-Test: v\r\n", r.head)
    assert.matches("\r\nHost: 127%.0%.0%.1:%d+\r\n", r.head)
    assert.matches("\r\nContent%-Length: 3\r\n", r.head)
  end)

  it("reads chunked bodies (extensions, trailers, split at every byte) and reuses the connection", function()
    local resp = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
      .. "5;ext=1\r\nhello\r\n1\r\n,\r\n0006\r\n world\r\n0\r\nTrailer: x\r\n\r\n"
    local r = run(function()
      local st = server(function(_, n)
        return function(c)
          if n == 1 then support.dribble(c, resp) else assert(c:send(resp)) end
        end
      end)
      local out = {}
      for i = 1, 3 do
        local res = assert(hc.get(st.url .. "/" .. i, { timeout = 5000 }))
        local pieces = {}
        for piece in res:body_reader(4) do pieces[#pieces + 1] = piece end
        out[i] = table.concat(pieces, "|")
      end
      out.conns = st.conns
      out.idle = hc._pool_count()
      finish(st)
      return out
    end)
    assert.are.equal("hell|o|,| wor|ld", r[1])
    assert.are.equal(r[1], r[2])
    assert.are.equal(r[1], r[3])
    assert.are.equal(1, r.conns)   -- three requests, one connection
    assert.are.equal(1, r.idle)
  end)

  it("reads a close-delimited body and does not pool its connection", function()
    local r = run(function()
      local st = server(function()
        return function(c)
          assert(c:send("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the ", "end"))
          return "close"
        end
      end)
      local a = assert(hc.get(st.url .. "/")):body()
      local b = assert(hc.get(st.url .. "/")):body()
      local out = { a = a, b = b, conns = st.conns, idle = hc._pool_count() }
      finish(st)
      return out
    end)
    assert.are.equal("until the end", r.a)
    assert.are.equal("until the end", r.b)
    assert.are.equal(2, r.conns)
    assert.are.equal(0, r.idle)
  end)

  it("HEAD and 204 have no body; Connection: close and HTTP/1.0 are not pooled", function()
    local r = run(function()
      local st = server(function(req)
        if req.path == "/head" then return "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" end
        if req.path == "/204" then return "HTTP/1.1 204 No Content\r\n\r\n" end
        if req.path == "/empty" then return "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n" end
        if req.path == "/close" then
          return function(c)
            assert(c:send("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"))
            return "close"
          end
        end
        return function(c)
          assert(c:send("HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok"))
          return "close"
        end
      end)
      local out = {}
      local res = assert(hc.request{ method = "HEAD", url = st.url .. "/head" })
      out.head_len, out.head_body = res.headers["content-length"], res:body()
      out.no_content = assert(hc.get(st.url .. "/204")):body()
      -- an empty body needs no reading to give the connection back
      assert(hc.get(st.url .. "/empty"))
      out.idle_empty = hc._pool_count()
      out.conns1 = st.conns
      out.close = assert(hc.get(st.url .. "/close")):body()
      out.conns2 = st.conns
      out.v10 = assert(hc.get(st.url .. "/v10")):body()
      out.idle = hc._pool_count()
      finish(st)
      return out
    end)
    assert.are.equal("1000", r.head_len)
    assert.are.equal("", r.head_body)
    assert.are.equal("", r.no_content)
    assert.are.equal(1, r.idle_empty)
    assert.are.equal(1, r.conns1)   -- HEAD, 204 and the empty 200 on one connection
    assert.are.equal("ok", r.close)
    assert.are.equal(1, r.conns2)   -- the pooled one answered and then closed
    assert.are.equal("ok", r.v10)
    assert.are.equal(0, r.idle)
  end)

  it("discards a pooled connection the peer closed", function()
    local r = run(function()
      local closed = support.event()
      local st = server(function(_, n)
        return function(c)
          assert(c:send("HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n" .. n))
          if n == 1 then
            assert(c:flush())
            c:close()
            closed.set(true)
            return "close"
          end
        end
      end)
      local out = {}
      out.a = assert(hc.get(st.url .. "/")):body()
      closed.wait()
      -- the FIN reaches the pooled connection: it is dropped, not reused
      out.saw_fin = support.eventually(function()
        return hc._pool_count() == 1 and not hc._pool_alive(st.url)
      end)
      out.b = assert(hc.get(st.url .. "/")):body()
      out.conns = st.conns
      finish(st)
      return out
    end)
    assert.is_true(r.saw_fin)
    assert.are.equal("1", r.a)
    assert.are.equal("1", r.b)   -- the new connection's first answer
    assert.are.equal(2, r.conns)
  end)

  it("retries once when a reused connection fails before the answer", function()
    local r = run(function()
      local st = server(function(_, n)
        return function(c)
          if n == 2 then return "close" end     -- reads the request, answers nothing
          assert(c:send("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"))
        end
      end)
      local out = {}
      out.a = assert(hc.get(st.url .. "/")):body()
      out.b = assert(hc.get(st.url .. "/")):body()
      out.conns = st.conns
      out.reqs = #st.reqs
      finish(st)
      return out
    end)
    assert.are.equal("ok", r.a)
    assert.are.equal("ok", r.b)
    assert.are.equal(2, r.conns)
    assert.are.equal(3, r.reqs)
  end)

  it("does not repeat a POST the reused connection may have delivered", function()
    local r = run(function()
      local st = server(function(_, n)
        return function(c)
          if n == 2 then return "close" end
          assert(c:send("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"))
        end
      end)
      local out = {}
      out.a = assert(hc.get(st.url .. "/")):body()
      out.b = { hc.request{ method = "POST", url = st.url .. "/", body = "x" } }
      out.reqs = #st.reqs
      finish(st)
      return out
    end)
    assert.are.equal("ok", r.a)
    assert.are.same({ nil, "closed" }, r.b)
    assert.are.equal(2, r.reqs)
  end)

  it("bounds the pool per origin and drops connections idle past idle_timeout", function()
    local r = run(function()
      local st = server(function() return "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx" end)
      -- three responses held open at once: three connections
      local held = {}
      for i = 1, 3 do held[i] = assert(hc.get(st.url .. "/", { pool_size = 2 })) end
      for i = 1, 3 do assert(held[i]:body()) end
      local out = { conns = st.conns, idle = hc._pool_count() }
      -- idle_timeout 0: the next request cannot reuse any of them
      assert(hc.get(st.url .. "/", { idle_timeout = 0 }):body())
      out.conns2 = st.conns
      finish(st)
      return out
    end)
    assert.are.equal(3, r.conns)
    assert.are.equal(2, r.idle)
    assert.are.equal(4, r.conns2)
  end)

  it("times out a silent server after timeout ms", function()
    local r = run(function()
      local st = server(function() return function(c) c:receive("*a") end end)
      local t0 = ringline.now()
      local res, err = hc.get(st.url .. "/", { timeout = 100 })
      local out = { res = res, err = err, took = ringline.now() - t0 }
      finish(st)
      return out
    end)
    assert.is_nil(r.res)
    assert.are.equal("timeout", r.err)
    assert.is_true(r.took >= 0.09 and r.took < 2, tostring(r.took))
  end)

  it("refuses malformed lengths, chunk sizes and status lines", function()
    local cases = {
      ["/cl-sign"] = { "HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\nhello", "bad content-length" },
      ["/cl-hex"] = { "HTTP/1.1 200 OK\r\nContent-Length: 0x5\r\n\r\nhello", "bad content-length" },
      ["/cl-two"] = { "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello", "bad content-length" },
      ["/cl-te"] = { "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
                     "both content-length and transfer-encoding" },
      ["/chunk"] = { "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "bad chunk size" },
      ["/status"] = { "HTTP/2 200 OK\r\n\r\n", "bad status line" },
      ["/status0"] = { "HTTP/1.1 000 Zero\r\nContent-Length: 0\r\n\r\n", "bad status line" },
      ["/status4"] = { "HTTP/1.1 2000 OK\r\nContent-Length: 0\r\n\r\n", "bad status line" },
      ["/short"] = { "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", "closed before the end of the body" },
    }
    local r = run(function()
      local st = server(function(req)
        return function(c) assert(c:send(cases[req.path][1])) return "close" end
      end)
      local out = {}
      for path in pairs(cases) do
        local res, err = hc.get(st.url .. path, { keepalive = false })
        if res then res, err = res:body() end
        out[path] = { res, err }
      end
      finish(st)
      return out
    end, { errors_ok = true })
    for path, case in pairs(cases) do
      assert.is_nil(r[path][1], path)
      assert.are.equal(case[2], r[path][2], path)
    end
  end)

  it("does not follow redirects unless asked", function()
    local r = run(function()
      local st = server(function(req)
        if req.path == "/old" then
          return "HTTP/1.1 302 Found\r\nLocation: /new\r\nContent-Length: 3\r\n\r\nold"
        end
        return "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nnew"
      end)
      local a = assert(hc.get(st.url .. "/old"))
      local out = { status = a.status, loc = a.headers.location, body = a:body() }
      local b = assert(hc.get(st.url .. "/old", { redirects = 1 }))
      out.status2, out.body2 = b.status, b:body()
      -- relative to the path; to another origin without the credentials
      local st2 = server(function(req)
        if req.path == "/a/rel" then return "HTTP/1.1 301 Moved\r\nLocation: next\r\nContent-Length: 0\r\n\r\n" end
        if req.path == "/a/next" then
          return "HTTP/1.1 307 Moved\r\nLocation: " .. st.url .. "/new\r\nContent-Length: 0\r\n\r\n"
        end
      end)
      local c = assert(hc.get(st2.url .. "/a/rel", { redirects = 5,
        headers = { Authorization = "secret", ["X-Keep"] = "1" } }))
      out.body3 = c:body()
      out.paths2 = st2.reqs[2].path
      out.auth_same = st2.reqs[2].head:match("Authorization: (%S+)")
      out.last_head = st.reqs[#st.reqs].head
      finish(st2)
      finish(st)
      return out
    end)
    assert.are.equal(302, r.status)
    assert.are.equal("/new", r.loc)
    assert.are.equal("old", r.body)
    assert.are.equal(200, r.status2)
    assert.are.equal("new", r.body2)
    assert.are.equal("new", r.body3)
    assert.are.equal("/a/next", r.paths2)
    assert.are.equal("secret", r.auth_same)
    assert.is_nil(r.last_head:find("Authorization", 1, true))
    assert.is_truthy(r.last_head:find("X-Keep: 1", 1, true))
  end)

  it("raises on misuse and returns nil, err for bad URLs", function()
    local r = run(function()
      return {
        { hc.request{ url = "ftp://x/" } },
        { hc.request{ url = "http://" } },
        { hc.request{ url = "http://h:99999/" } },
        { pcall(hc.request, { url = "http://h/", bogus = 1 }) },
        { pcall(hc.request, { url = "http://h/", method = "G T" }) },
        { pcall(hc.request, { url = "http://127.0.0.1:1/", headers = { ["X"] = "a\r\nb" } }) },
      }
    end)
    assert.are.same({ nil, "unsupported scheme" }, r[1])
    assert.are.same({ nil, "invalid url" }, r[2])
    assert.are.same({ nil, "invalid url" }, r[3])
    assert.is_false(r[4][1])
    assert.matches("unknown option bogus", r[4][2])
    assert.is_false(r[5][1])
    assert.is_false(r[6][1])
  end)

  it("survives a seeded mutation fuzz of responses: a response or nil, err", function()
    local seed = tonumber(os.getenv("RINGLINE_FUZZ_SEED") or "") or 5
    math.randomseed(seed)
    local corpus = {
      "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n0\r\nT: 1\r\n\r\n",
      "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\nX: y\r\n\r\n",
      "HTTP/1.0 200 OK\r\nA: b\r\n\r\nuntil close",
    }
    local rounds = 400
    local r = run(function()
      local answer
      local st = server(function()
        return function(c)
          assert(c:send(answer))
          return "close"
        end
      end)
      local stats = { ok = 0, err = 0, rounds = 0 }
      for i = 1, rounds do
        local s = corpus[math.random(#corpus)]
        local t = {}
        for j = 1, #s do t[j] = s:sub(j, j) end
        for _ = 1, math.random(1, 4) do
          local op, j = math.random(3), math.random(#t)
          if op == 1 then t[j] = string.char(bit.bxor(t[j]:byte(), bit.lshift(1, math.random(0, 7))))
          elseif op == 2 then table.remove(t, j)
          else table.insert(t, j, t[j]) end
        end
        answer = table.concat(t)
        local res, err = hc.get(st.url .. "/", { keepalive = false, timeout = 2000 })
        if res then
          assert(type(res.status) == "number" and res.status >= 100 and res.status <= 599)
          res, err = res:body()
        end
        assert(err ~= "timeout", "a mutated response hung the client")
        if res then stats.ok = stats.ok + 1 else
          assert(type(err) == "string")
          stats.err = stats.err + 1
        end
        stats.rounds = stats.rounds + 1
      end
      finish(st)
      return stats
    end, { timeout = 30 })
    assert.are.equal(rounds, r.rounds)
    assert.is_true(r.ok > 0 and r.err > 0, ("%d ok, %d errors"):format(r.ok, r.err))
  end)

  it("speaks https:// through the TLS support", function()
    local dir = os.tmpname()
    os.remove(dir)
    assert(sh("mkdir -p " .. dir))
    finally(function() os.execute("rm -rf " .. dir) end)
    local cert, key = dir .. "/cert.pem", dir .. "/key.pem"
    assert(sh("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 "
      .. "-subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 >/dev/null 2>&1 "
      .. "-keyout " .. key .. " -out " .. cert))
    local r = run(function()
      local st = server(function() return "HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nsecret" end,
        { ssl = { cert = cert, key = key } })
      local url = "https://localhost:" .. st.port .. "/"
      local out = {}
      out.a = assert(hc.get(url, { ssl = { ca = cert } })):body()
      out.b = assert(hc.get(url, { ssl = { ca = cert } })):body()
      out.conns = st.conns
      out.unverified = { hc.get(url .. "x") }     -- the system store does not know the certificate
      finish(st)
      return out
    end)
    assert.are.equal("secret", r.a)
    assert.are.equal("secret", r.b)
    assert.are.equal(1, r.conns)
    assert.is_nil(r.unverified[1])
    assert.matches("^certificate verify failed", r.unverified[2])
  end)

  it("fetches from a real server (python3 -m http.server)", function()
    if not sh("command -v python3 >/dev/null") then
      error("python3 is needed for this spec")
    end
    local dir = os.tmpname()
    os.remove(dir)
    assert(sh("mkdir -p " .. dir))
    local content = support.pattern(200000, 7)
    local f = assert(io.open(dir .. "/data.bin", "wb"))
    f:write(content)
    f:close()
    local log = dir .. "/log"
    assert(sh(("cd %s && (python3 -u -m http.server 0 --bind 127.0.0.1 > %s 2>&1 & echo $! > %s/pid)")
      :format(dir, log, dir)))
    finally(function()
      local p = io.open(dir .. "/pid"):read("*l")
      os.execute("kill " .. p .. " 2>/dev/null")
      os.execute("rm -rf " .. dir)
    end)
    local r = run(function()
      local port
      -- its first line names the port it listens on
      assert(support.eventually(function()
        local lf = io.open(log)
        local s = lf and lf:read("*a") or ""
        if lf then lf:close() end
        port = s:match("port (%d+)")
        return port ~= nil
      end, 10), "python3's http.server did not start")
      local res = assert(hc.get("http://127.0.0.1:" .. port .. "/data.bin", { timeout = 10000 }))
      local out = { status = res.status, len = res.headers["content-length"], body = res:body() }
      local miss = assert(hc.get("http://127.0.0.1:" .. port .. "/none"))
      out.miss = miss.status
      miss:body()
      return out
    end)
    assert.are.equal(200, r.status)
    assert.are.equal(tostring(#content), r.len)
    assert.is_true(r.body == content)
    assert.are.equal(404, r.miss)
  end)
end)
