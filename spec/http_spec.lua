-- ringline.http, the server: byte-level checks with ringline.connect
-- clients in the same run, bad input, limits and timeouts, the parser on
-- every split of a corpus, a seeded mutation fuzzer, and real clients (curl,
-- Python's http.client) against a server run by the host.
local root = debug.getinfo(1, "S").source:match("^@(.*)/spec/[^/]+$") or "."
if root:sub(1, 1) ~= "/" then root = os.getenv("PWD") .. "/" .. root end
package.path = ("%s/lua/?.lua;%s/lua/?/init.lua;%s/bindings/?.lua;"):format(root, root, root)
  .. package.path
local ringline = require "ringline"
local http = require "ringline.http"
local parse = require "ringline.http_parse"
local ffi = require "ffi"

-- Runs a server with handler and opts, then fn(port) as a client task;
-- returns fn's results.
local function with_server(opts, handler, fn)
  return ringline.run({ timeout = 20 }, function()
    local lst = assert(http.listen("127.0.0.1:0", handler, opts))
    local _, port = lst:getsockname()
    local r = { pcall(fn, port) }
    lst:close()
    assert(r[1], r[2])
    return unpack(r, 2)
  end)
end

local function connect(port)
  local c = assert(ringline.connect("127.0.0.1", port, { timeout = 5 }))
  c:settimeout(5000)
  return c
end

-- Reads one response: status, headers (lower-case keys), body. head = a
-- response to HEAD (no body).
local function read_response(c, head)
  local line, err = c:receive("*l")
  if not line then return nil, err end
  local status = tonumber(line:match("^HTTP/1%.1 (%d%d%d) "))
  assert(status, "bad status line: " .. line)
  local h = {}
  while true do
    local l = assert(c:receive("*l"))
    if l == "" then break end
    local k, v = l:match("^([^:]+): (.*)$")
    assert(k, "bad header line: " .. l)
    h[k:lower()] = v
  end
  local body
  if head or status < 200 or status == 204 or status == 304 then
    body = ""
  elseif h["content-length"] then
    body = assert(c:receive(tonumber(h["content-length"])))
  elseif h["transfer-encoding"] == "chunked" then
    local parts = {}
    while true do
      local n = tonumber(assert(c:receive("*l")), 16)
      if n == 0 then
        assert.are.equal("", c:receive("*l"))
        break
      end
      parts[#parts + 1] = assert(c:receive(n))
      assert.are.equal("", c:receive("*l"))
    end
    body = table.concat(parts)
  else
    body = assert(c:receive("*a"))
  end
  return status, h, body
end

-- Is the connection closed by the server (EOF, nothing more)?
local function closed(c)
  local s, err, partial = c:receive("*a")
  return s == "" or (s == nil and err == "closed" and (partial or "") == "")
end

local GET = "GET / HTTP/1.1\r\nHost: t\r\n\r\n"

describe("ringline.http server", function()
  it("gives the handler the request and answers with its response", function()
    local seen
    local status, h, body = with_server(nil, function(req, res)
      seen = { method = req.method, target = req.target, path = req.path, query = req.query,
               version = req.version, headers = req.headers, args = req:args() }
      res:status(201)
      res:header("Content-Type", "text/plain")
      res:header("X-Two", { "a", "b" })
      res:finish("hello\n")
    end, function(port)
      local c = connect(port)
      assert(c:send("GET /p/a%20th?x=1&y=a%2Bb+c&x=2&flag HTTP/1.1\r\nHost: example\r\n",
                    "X-Multi: one\r\nx-multi: two\r\nCookie: a=1\r\nCOOKIE: b=2\r\n",
                    "Set-Cookie: s=1\r\nSet-Cookie: s=2\r\nEmpty:\r\nSpaces:  v w \t\r\n\r\n"))
      return read_response(c)
    end)
    assert.are.equal(201, status)
    assert.are.equal("hello\n", body)
    assert.are.equal("6", h["content-length"])
    assert.are.equal("ringline", h.server)
    assert.matches("^%a%a%a, %d%d %a%a%a %d%d%d%d %d%d:%d%d:%d%d GMT$", h.date)
    -- the time is now (UTC), to the second the timer last updated it
    local near = false
    for dt = -3, 1 do
      if os.date("!%a, %d %b %Y %H:%M:%S GMT", os.time() + dt) == h.date then near = true end
    end
    assert.is_true(near, h.date)
    assert.are.equal("text/plain", h["content-type"])
    assert.are.equal("GET", seen.method)
    assert.are.equal("/p/a%20th?x=1&y=a%2Bb+c&x=2&flag", seen.target)
    assert.are.equal("/p/a%20th", seen.path)
    assert.are.equal("x=1&y=a%2Bb+c&x=2&flag", seen.query)
    assert.are.same({ x = { "1", "2" }, y = "a+b c", flag = true }, seen.args)
    assert.are.equal("1.1", seen.version)
    assert.are.same({ host = "example", ["x-multi"] = "one, two", cookie = "a=1; b=2",
                      ["set-cookie"] = { "s=1", "s=2" }, empty = "", spaces = "v w" },
                    seen.headers)
  end)

  it("sends a repeated response header as one line each, in order", function()
    local raw = with_server(nil, function(_, res)
      res:header("X-Two", { "a", "b" })
      res:header("X-One", "1")
      res:header("x-one", "2")              -- replaces, whatever the case
      res:header("Connection", "close")
      res:finish()
    end, function(port)
      local c = connect(port)
      assert(c:send(GET))
      return c:receive("*a")
    end)
    assert.matches("\r\nX%-Two: a\r\nX%-Two: b\r\nx%-one: 2\r\nContent%-Length: 0\r\n"
                   .. "Connection: close\r\n\r\n$", raw)
    assert.is_nil(raw:find("X-One", 1, true))
  end)

  it("answers pipelined requests in order, also when a handler blocks", function()
    local got = with_server(nil, function(req, res)
      if req.path == "/slow" then ringline.sleep(0.02) end
      res:finish(req.path)
    end, function(port)
      local c = connect(port)
      assert(c:send("GET /slow HTTP/1.1\r\nHost: t\r\n\r\nGET /b HTTP/1.1\r\nHost: t\r\n\r\n",
                    "\r\nGET /c HTTP/1.1\r\nHost: t\r\n\r\n"))
      local t = {}
      for i = 1, 3 do
        local status, _, body = read_response(c)
        assert.are.equal(200, status)
        t[i] = body
      end
      return t
    end)
    assert.are.same({ "/slow", "/b", "/c" }, got)
  end)

  it("answers HEAD without a body but with the body's length", function()
    local raw = with_server(nil, function(_, res) res:finish("twelve bytes") end, function(port)
      local c = connect(port)
      assert(c:send("HEAD / HTTP/1.1\r\nHost: t\r\n\r\nHEAD / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"))
      return c:receive("*a")
    end)
    local _, n = raw:gsub("Content%-Length: 12\r\n", "")
    assert.are.equal(2, n)
    assert.is_nil(raw:find("twelve", 1, true))
  end)

  it("reads Content-Length and chunked bodies (extensions and trailers ignored)", function()
    local bodies = {}
    with_server(nil, function(req, res)
      if req.path == "/reader" then
        local t = {}
        for piece in req:body_reader() do t[#t + 1] = piece end
        bodies[#bodies + 1] = table.concat(t)
      else
        bodies[#bodies + 1] = assert(req:body())
        assert.are.equal(bodies[#bodies], req:body())     -- a second call: the same
      end
      res:finish("ok")
    end, function(port)
      local c = connect(port)
      assert(c:send("POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello"))
      assert.are.equal(200, read_response(c))
      assert(c:send("POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n",
                    "3;ext=1\r\nabc\r\nA\r\n0123456789\r\n0\r\nX-Trailer: 1\r\n\r\n"))
      assert.are.equal(200, read_response(c))
      assert(c:send("POST /reader HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: Chunked\r\n\r\n2\r\nxy\r\n"))
      ringline.sleep(0.01)
      assert(c:send("1\r\nz\r\n0\r\n\r\n"))
      assert.are.equal(200, read_response(c))
      -- equal duplicates of Content-Length are one length
      assert(c:send("POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nhi"))
      assert.are.equal(200, read_response(c))
      -- a body the handler does not read is skipped, the connection goes on
      assert(c:send("POST /ignored HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc", GET))
      assert.are.equal(200, read_response(c))
      assert.are.equal(200, read_response(c))
    end)
    assert.are.same({ "hello", "abc0123456789", "xyz", "hi", "abc", "" }, bodies)
  end)

  it("sends 100 Continue when the handler reads the body, not before", function()
    local got = with_server(nil, function(req, res)
      res:finish(assert(req:body()))
    end, function(port)
      local c = connect(port)
      assert(c:send("POST / HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n"))
      assert.are.equal("HTTP/1.1 100 Continue", c:receive("*l"))
      assert.are.equal("", c:receive("*l"))
      assert(c:send("body"))
      local status, _, body = read_response(c)
      return status, body
    end)
    assert.are.equal(200, got)
  end)

  it("with Expect: 100-continue, a body past the limit is refused without 100; an unread one closes", function()
    local got = with_server({ max_body_bytes = 10 }, function(_, res)
      res:finish("no need")
    end, function(port)
      local c = connect(port)
      assert(c:send("POST / HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 11\r\n\r\n"))
      local s1, h1 = read_response(c)
      local r1 = { s1, h1.connection, closed(c) }
      c = connect(port)
      assert(c:send("POST / HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n"))
      local s2, h2, b2 = read_response(c)
      return { r1, { s2, h2.connection, b2, closed(c) } }
    end)
    assert.are.same({ { 413, "close", true }, { 200, "close", "no need", true } }, got)
  end)

  it("closes after Connection: close, and after HTTP/1.0 unless asked to keep alive", function()
    with_server(nil, function(_, res) res:finish("x") end, function(port)
      local c = connect(port)
      assert(c:send("GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"))
      local _, h = read_response(c)
      assert.are.equal("close", h.connection)
      assert.is_true(closed(c))
      c = connect(port)
      assert(c:send("GET / HTTP/1.0\r\n\r\n"))
      _, h = read_response(c)
      assert.are.equal("close", h.connection)
      assert.is_true(closed(c))
      c = connect(port)
      assert(c:send("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"))
      _, h = read_response(c)
      assert.are.equal("keep-alive", h.connection)
      assert(c:send("GET / HTTP/1.0\r\n\r\n"))
      assert.are.equal(200, read_response(c))
      assert.is_true(closed(c))
    end)
  end)

  it("streams: chunked for 1.1, close-delimited for 1.0; takes arrays, buffers, slices", function()
    local out = with_server(nil, function(_, res)
      local reg = assert(ringline.region(4096))
      ffi.copy(reg:ptr(), "SLICE", 5)
      local b = require("string.buffer").new():put("buf")
      res:header("Content-Type", "text/plain")
      assert(res:write("one,"))
      assert(res:write({ "two", ",", 3, "," }))
      assert(res:write(b))
      assert(res:write(""))
      res:finish(reg:slice(0, 5))
    end, function(port)
      local c = connect(port)
      assert(c:send(GET))
      local status, h, body = read_response(c)
      assert.are.equal("chunked", h["transfer-encoding"])
      c = connect(port)
      assert(c:send("GET / HTTP/1.0\r\n\r\n"))
      local raw = c:receive("*a")
      return { body, raw }
    end)
    assert.are.equal("one,two,3,bufSLICE", out[1])
    assert.matches("\r\nConnection: close\r\n\r\none,two,3,bufSLICE$", out[2])
    assert.is_nil(out[2]:find("Content-Length", 1, true))
  end)

  it("finishes a response the handler left, and sends a slice zero copy with finish", function()
    local got = with_server(nil, function(req, res)
      if req.path == "/slice" then
        local reg = assert(ringline.region(8192))
        ffi.fill(reg:ptr(), 8192, 65)
        res:finish(reg:slice(0, 8192))
      end
    end, function(port)
      local c = connect(port)
      assert(c:send(GET, "GET /slice HTTP/1.1\r\nHost: t\r\n\r\n"))
      local s1, h1, b1 = read_response(c)
      local s2, _, b2 = read_response(c)
      return { s1, h1["content-length"], b1, s2, b2 }
    end)
    assert.are.same({ 200, "0", "", 200, ("A"):rep(8192) }, got)
  end)

  it("answers 500 to a handler that raises, and keeps the connection when its body was read", function()
    local lines = {}
    local rlog = require "ringline.log"
    local old = rlog.set_sink(function(l) lines[#lines + 1] = l end)
    finally(function() rlog.set_sink(old) end)
    local got = with_server(nil, function(req, res)
      if req.path == "/boom" then error("boom!") end
      if req.path == "/late" then res:write("partial") error("late") end
      res:finish("fine")
    end, function(port)
      local c = connect(port)
      assert(c:send("POST /boom HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc", GET))
      local s1, h1 = read_response(c)
      local s2, _, b2 = read_response(c)
      -- after part of a response went out, the connection closes
      local c2 = connect(port)
      assert(c2:send("GET /late HTTP/1.1\r\nHost: t\r\n\r\n"))
      local raw = c2:receive("*a")
      return { s1, h1.connection, s2, b2, raw:find("partial", 1, true) ~= nil,
               raw:find("0\r\n\r\n$") == nil }
    end)
    assert.are.same({ 500, nil, 200, "fine", true, true }, got)
    assert.are.equal(2, #lines)
    -- once each, with the peer's address and the traceback
    assert.matches("%[error%].*http handler error %(peer 127%.0%.0%.1:%d+%): .*boom!.*stack traceback", lines[1])
    assert.matches("http handler error %(peer 127%.0%.0%.1:%d+%): .*late", lines[2])
  end)

  -- Each: raw request -> the status expected; the connection then closes.
  local BAD = {
    { "GET  / HTTP/1.1\r\nHost: t\r\n\r\n", 400 },                   -- two spaces
    { "GET /\r\nHost: t\r\n\r\n", 400 },                             -- no version
    { "G@T / HTTP/1.1\r\nHost: t\r\n\r\n", 400 },                    -- not a token
    { "GET / HTTP/1.1\nHost: t\r\n\r\n", 400 },                      -- bare LF
    { "GET / HTTP/1.1\r\nHost: t\r\nX: a\r\n b\r\n\r\n", 400 },      -- obs-fold
    { "GET / HTTP/1.1\r\nHost: t\r\nX: a\0b\r\n\r\n", 400 },         -- NUL
    { "GET / HTTP/1.1\r\nHost: t\r\nX : a\r\n\r\n", 400 },           -- space before colon
    { "GET / HTTP/1.1\r\nHost: t\r\nX: a\rb\r\n\r\n", 400 },         -- bare CR
    { "GET / HTTP/1.1\r\n\r\n", 400 },                               -- no Host
    { "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400 },         -- two Hosts
    { "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", 400 },
    { "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", 400 },
    { "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: +3\r\n\r\nabc", 400 },
    { "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 3, 3\r\n\r\nabc", 400 },
    { "POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400 },
    { "POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n", 400 },
    { "POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n1111111111111111\r\n", 400 },
    { "POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\n", 501 },
    { "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400 },
    { ("\r\n"):rep(33) .. GET, 400 },                                 -- a stream of empty lines
    { "GET / HTTP/2.0\r\nHost: t\r\n\r\n", 505 },
    { "GET / HTTP/1.2\r\nHost: t\r\n\r\n", 505 },
    { "GET / HTTP/1.x\r\nHost: t\r\n\r\n", 400 },
    { "GET / HTTP/1.1\r\nHost: t\r\nX: " .. ("a"):rep(300) .. "\r\n\r\n", 431 },
    { "GET /" .. ("a"):rep(400) .. " HTTP/1.1\r\n", 431 },           -- never ends
    { "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 101\r\n\r\n", 413 },
    { "POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n64\r\n" .. ("b"):rep(100)
      .. "\r\n1\r\nc\r\n0\r\n\r\n", 413 },
  }

  it("takes 1024 fields in a head and refuses 1025 with 431", function()
    local got = with_server({ max_header_bytes = 65536 }, function(req, res)
      local n = 0
      for _ in pairs(req.headers) do n = n + 1 end
      res:finish(tostring(#req.headers.a:gsub("[^,]", "")) .. " " .. n)
    end, function(port)
      local function head(n)
        return "GET / HTTP/1.1\r\nHost: t\r\n" .. ("A: 1\r\n"):rep(n - 1) .. "\r\n"
      end
      local c = connect(port)
      assert(c:send(head(1024)))
      local s1, _, b1 = read_response(c)
      assert(c:send(head(1025)))
      local s2 = read_response(c)
      return { s1, b1, s2, closed(c) }
    end)
    assert.are.same({ 200, "1022 2", 431, true }, got)
  end)

  it("refuses bad input with the right status, then closes", function()
    local calls = 0
    local got = with_server({ max_header_bytes = 256, max_body_bytes = 100 }, function(req, res)
      calls = calls + 1
      local b, err = req:body()
      res:finish(b or err)
    end, function(port)
      local t = {}
      for i, case in ipairs(BAD) do
        local c = connect(port)
        -- a good request first: answered, then the bad one refused
        assert(c:send(GET, case[1]))
        local s1 = read_response(c)
        local s2, h = read_response(c)
        t[i] = { s1, s2, h and h.connection, closed(c) }
      end
      return t
    end)
    for i, case in ipairs(BAD) do
      assert.are.same({ 200, case[2], "close", true }, got[i], "case " .. i .. ": " .. case[1]:sub(1, 60))
    end
    -- one call per good request, and the chunked bodies (their faults are
    -- seen as the handler reads); a handler's answer then gives way to the refusal
    assert.are.equal(#BAD + 4, calls)
  end)

  it("408 when the head stalls past header_timeout; an idle connection closes quietly", function()
    local got = with_server({ header_timeout = 50 }, function(_, res)
      res:finish("x")
    end, function(port)
      local c = connect(port)
      assert(c:send("GET / HTTP/1.1\r\nHost:"))
      local s, h = read_response(c)
      return { s, h.connection, closed(c) }
    end)
    assert.are.same({ 408, "close", true }, got)
    got = with_server({ keepalive_timeout = 300 }, function(_, res)
      res:finish("x")
    end, function(port)
      local c = connect(port)
      assert(c:send(GET))
      assert.are.equal(200, read_response(c))
      assert(c:send(GET))                  -- still open between requests
      assert.are.equal(200, read_response(c))
      return closed(c)                     -- nothing sent: closed without an answer
    end)
    assert.is_true(got)
  end)

  it("serves HTTPS with ssl = { cert, key } (passed to ringline.listen)", function()
    local dir = os.tmpname()
    os.remove(dir)
    finally(function() os.execute("rm -rf " .. dir) end)
    assert(os.execute("mkdir -p " .. dir) == 0)
    local cert, key = dir .. "/cert.pem", dir .. "/key.pem"
    assert(os.execute("unset LD_PRELOAD; openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 "
      .. "-nodes -days 1 -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 "
      .. "-keyout " .. key .. " -out " .. cert .. " >/dev/null 2>&1") == 0, "openssl makes a certificate")
    local got = with_server({ ssl = { cert = cert, key = key } }, function(req, res)
      res:finish(req.method .. " " .. assert(req:body()))
    end, function(port)
      local c = assert(ringline.connect("localhost", port, { ssl = { ca = cert }, timeout = 5 }))
      c:settimeout(5000)
      assert(c:send("POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nhi", GET))
      local s1, _, b1 = read_response(c)
      local s2, _, b2 = read_response(c)
      return { s1, b1, s2, b2 }
    end)
    assert.are.same({ 200, "POST hi", 200, "GET " }, got)
    -- a plaintext client gets no HTTP answer
    local raw = with_server({ ssl = { cert = cert, key = key } }, function(_, res) res:finish("x") end,
      function(port)
        local c = connect(port)
        assert(c:send(GET))
        return c:receive("*a") or ""
      end)
    assert.is_nil(raw:find("HTTP/1.1", 1, true))
  end)

  it("refuses bad options at the caller's line", function()
    assert.has_error(function() http.listen("127.0.0.1:0", function() end, { bogus = 1 }) end)
    assert.has_error(function() http.listen("127.0.0.1:0", function() end, { max_body_bytes = -1 }) end)
    assert.has_error(function() http.listen("127.0.0.1:0", "no") end)
  end)

  it("writes an access log in the combined format", function()
    local path = os.tmpname()
    finally(function() os.remove(path) end)
    with_server({ access_log = path }, function(_, res) res:finish("hello") end, function(port)
      local c = connect(port)
      assert(c:send("GET /a?b HTTP/1.1\r\nHost: t\r\nUser-Agent: ua \"q\"\r\nReferer: r\r\n\r\n",
                    "GET /z HTTP/1.1\r\nHost: t\r\n\r\n", "BAD\r\n\r\n"))
      read_response(c)
      read_response(c)
      read_response(c)
    end)
    collectgarbage()
    local f = assert(io.open(path))
    local text = f:read("*a")
    f:close()
    local lines = {}
    for l in text:gmatch("[^\n]+") do lines[#lines + 1] = l end
    assert.are.equal(3, #lines)
    assert.matches('^127%.0%.0%.1 %- %- %[%d%d/%a%a%a/%d%d%d%d:%d%d:%d%d:%d%d %+0000%] '
                   .. '"GET /a%?b HTTP/1%.1" 200 5 "r" "ua \\x22q\\x22"$', lines[1])
    assert.matches('"GET /z HTTP/1%.1" 200 5 "%-" "%-"$', lines[2])
    assert.matches('"%-" 400 %- "%-" "%-"$', lines[3])
  end)

  it("misuse of res raises at the caller's line", function()
    local seen
    with_server(nil, function(_, res)
      local t = {}
      t[1] = select(2, pcall(res.status, res, 42))
      t[2] = select(2, pcall(res.header, res, "Bad Name", "v"))
      t[3] = select(2, pcall(res.header, res, "X", "a\r\nb"))
      t[4] = select(2, pcall(res.header, res, "Content-Length", "1"))
      res:finish("x")
      t[5] = { res:finish("again") }
      seen = t
    end, function(port)
      local c = connect(port)
      assert(c:send(GET))
      assert.are.equal(200, read_response(c))
    end)
    local errs = seen
    assert.matches("bad status 42", errs[1])
    assert.matches("bad header name", errs[2])
    assert.matches("CR, LF or NUL", errs[3])
    assert.matches("set by ringline.http", errs[4])
    assert.are.same({ nil, "finished" }, errs[5])
  end)
end)

------------------------------------------------------------------------
-- The parser: every split of a corpus, and a mutation fuzzer
------------------------------------------------------------------------

local CORPUS = {
  "GET / HTTP/1.1\r\nHost: a\r\n\r\n",
  "GET /x?y=1 HTTP/1.0\r\nUser-Agent: u\r\nAccept: */*\r\n\r\n",
  "POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\nContent-Type: t\r\n\r\nhello world",
  "PUT /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;e=1\r\nhello\r\n6\r\n world\r\n0\r\nT: 1\r\n\r\n",
  "OPTIONS * HTTP/1.1\r\nHost: a\r\nX-A: 1\r\nx-a: 2\r\n\r\n",
  "GET http://h:1/abs?q HTTP/1.1\r\nHost: h\r\nConnection: keep-alive\r\n\r\n",
}
-- what the echo handler answers for each
local EXPECT = {
  "GET / 1.1 0 ", "GET /x 1.0 0 ", "POST /p 1.1 11 hello world", "PUT /c 1.1 11 hello world",
  "OPTIONS * 1.1 0 ", "GET /abs 1.1 0 ",
}

local function echo(req, res)
  local b, err = req:body()
  res:finish(("%s %s %s %d %s"):format(req.method, req.path, req.version, b and #b or -1,
                                       b or err))
end

describe("ringline.http parser", function()
  it("parse_head sees every proper prefix of a head as incomplete", function()
    for _, r in ipairs(CORPUS) do
      local e = r:find("\r\n\r\n", 1, true) + 3
      for n = 0, e - 1 do
        local buf = ffi.new("uint8_t[?]", n + 1)
        ffi.copy(buf, r, n)
        assert.is_nil(parse.parse_head(buf, n, 8192), r:sub(1, n))
      end
      local buf = ffi.new("uint8_t[?]", #r)
      ffi.copy(buf, r, #r)
      assert.are.equal(e, (parse.parse_head(buf, #r, 8192)))
    end
  end)

  it("answers each request of the corpus the same, split at every byte", function()
    local got = with_server(nil, echo, function(port)
      local c = connect(port)
      local t = {}
      for i, r in ipairs(CORPUS) do
        local keep = r:gsub("HTTP/1%.0\r\n", "HTTP/1.0\r\nConnection: keep-alive\r\n")
        for k = 1, #keep - 1 do
          assert(c:send(keep:sub(1, k)))
          ringline.sleep(0)                  -- let the server see the first part alone
          assert(c:send(keep:sub(k + 1)))
          local s, _, body = read_response(c)
          if s ~= 200 or body ~= EXPECT[i] then
            t[#t + 1] = ("request %d split at %d: %s %s"):format(i, k, tostring(s), tostring(body))
          end
        end
      end
      return t
    end)
    assert(#got == 0, table.concat(got, "\n"))
  end)

  it("mutated requests get a correct answer or a 4xx/5xx refusal, never an error or a hang", function()
    local seed = tonumber(os.getenv("HTTP_FUZZ_SEED") or "12345")
    math.randomseed(seed)
    local function mutate(s)
      local b = { s:byte(1, -1) }
      for _ = 1, math.random(1, 3) do
        local i = math.random(1, #b)
        local op = math.random(1, 3)
        if op == 1 then
          b[i] = math.random(0, 255)                    -- flip
        elseif op == 2 then
          table.remove(b, i)                            -- drop
        else
          table.insert(b, i, b[i])                      -- duplicate
        end
      end
      return string.char(unpack(b))
    end
    local errors = {}
    local N = 2000
    local bad = with_server({ max_body_bytes = 64, header_timeout = 2000 }, echo, function(port)
      ringline.on_error(function(err) errors[#errors + 1] = tostring(err) end)
      local t = {}
      collectgarbage()
      local mem0
      for n = 1, N do
        if n == N / 2 then collectgarbage() collectgarbage() mem0 = collectgarbage("count") end
        local src = CORPUS[(n % #CORPUS) + 1]
        local m = mutate(src)
        local c = connect(port)
        assert(c:send(m))
        c:shutdown("send")                    -- an incomplete request ends at EOF
        local raw = c:receive("*a") or ""
        c:close()
        -- every answer is a status line we expect
        for code in raw:gmatch("HTTP/1%.1 (%d%d%d) ") do
          local k = tonumber(code)
          if not (k == 200 or (k >= 400 and k < 500) or k == 501 or k == 505) then
            t[#t + 1] = ("seed %d case %d: status %d for %q"):format(seed, n, k, m)
          end
        end
      end
      collectgarbage() collectgarbage()
      t.growth = collectgarbage("count") - mem0
      return t
    end)
    assert.are.same({}, errors)
    assert.is_true(bad.growth < 2048, "memory grew by " .. bad.growth .. " KiB")
    bad.growth = nil
    assert.are.same({}, bad)
  end)
end)

------------------------------------------------------------------------
-- Real clients against a host-run server
------------------------------------------------------------------------

describe("ringline.http with real clients", function()
  local ex = dofile(root .. "/spec/example_host.lua")(root)
  local proc = ex.proc
  local srv, port

  setup(function()
    srv, port = ex.start("http_module_hello")
  end)
  teardown(function() if srv and not srv.code then srv:stop("KILL") end end)

  it("answers curl (keep-alive, HEAD, POST)", function()
    local url = ("http://127.0.0.1:%d/"):format(port)
    local code, out, err = proc.run(("curl -s -i --max-time 5 %s %s -d x=1"):format(url, url))
    assert.are.equal(0, code, err)
    local _, n = out:gsub("HTTP/1%.1 200 OK\r\n", "")
    assert.are.equal(2, n)
    assert.matches("Hello, World!$", out)
    code, out = proc.run(("curl -s -I --max-time 5 %s"):format(url))
    assert.are.equal(0, code)
    assert.matches("Content%-Length: 13\r\n", out)
  end)

  it("answers Python's http.client (keep-alive, chunked upload, HTTP/1.0)", function()
    local py = ([[
import http.client, sys
c = http.client.HTTPConnection("127.0.0.1", %d, timeout=5)
for i in range(3):
    c.request("GET", "/n%%d" %% i)
    r = c.getresponse()
    assert r.status == 200 and r.read() == b"Hello, World!", r.status
c.request("POST", "/up", body=iter([b"ab", b"cd"]), encode_chunked=True)
r = c.getresponse()
assert r.status == 200 and r.read() == b"Hello, World!"
http.client.HTTPConnection._http_vsn = 10
http.client.HTTPConnection._http_vsn_str = "HTTP/1.0"
c2 = http.client.HTTPConnection("127.0.0.1", %d, timeout=5)
c2.request("GET", "/")
r = c2.getresponse()
assert r.status == 200 and r.getheader("Connection") == "close"
print("ok")
]]):format(port, port)
    local code, out, err = proc.run("python3 -", py)
    assert.are.equal(0, code, err)
    assert.are.equal("ok\n", out)
  end)

  it("stops with status 0 on SIGTERM", function() ex.stop_cleanly(srv) end)
end)
