-- The examples, run by the built host on a free port (PORT=0: the example
-- prints the port it got), and driven by clients written with the Lua API
-- itself (ringline.connect inside ringline.run) plus curl.
local root = debug.getinfo(1, "S").source:match("^@(.*)/spec/[^/]+$") or "."
if root:sub(1, 1) ~= "/" then root = os.getenv("PWD") .. "/" .. root end
package.path = ("%s/lua/?.lua;%s/lua/?/init.lua;%s/bindings/?.lua;"):format(root, root, root)
  .. package.path
local ringline = require "ringline"
local ex = dofile(root .. "/spec/example_host.lua")(root)
local proc, host, client, stop_cleanly = ex.proc, ex.host, ex.client, ex.stop_cleanly

local function start(name) return ex.start(name, nil, nil, true) end

describe("examples/echo.lua", function()
  local srv, port, hint
  setup(function() srv, port, hint = start("echo") end)
  teardown(function() if srv and not srv.code then srv:stop("KILL") end end)

  it("says how to try it", function()
    assert.matches("nc 127.0.0.1 " .. port, hint, 1, true)
  end)

  it("echoes a line", function()
    local line = client(port, function(c)
      assert(c:send("hello, echo\n"))
      return assert(c:receive("*l"))
    end)
    assert.are.equal("hello, echo", line)
  end)

  it("echoes 100 kB byte-exact on two connections at once", function()
    local function pattern(seed, n)
      local t = {}
      for i = 1, n do t[i] = string.char((i * seed + math.floor(i / 7)) % 256) end
      return table.concat(t)
    end
    local a, b = pattern(31, 100000), pattern(97, 100000)
    local ra, rb = ringline.run({ timeout = 20 }, function()
      local function roundtrip(data)
        local c = assert(ringline.connect("127.0.0.1", port, { timeout = 5 }))
        c:settimeout(5000)
        assert(c:send(data))
        local got = assert(c:receive(#data))
        c:close()
        return got
      end
      local ta, tb = ringline.spawn(roundtrip, a), ringline.spawn(roundtrip, b)
      local oka, ga = ta:join()
      local okb, gb = tb:join()
      assert(oka, ga)
      assert(okb, gb)
      return ga, gb
    end)
    assert.is_true(ra == a, "connection 1: echoed bytes differ")
    assert.is_true(rb == b, "connection 2: echoed bytes differ")
  end)

  it("stops with status 0 on SIGTERM", function() stop_cleanly(srv) end)
end)

describe("examples/http_hello.lua", function()
  local RESP = "HTTP/1.1 200 OK\r\nServer: ringline\r\nContent-Type: text/plain\r\n"
            .. "Content-Length: 13\r\n\r\nHello, World!"
  local GET = "GET / HTTP/1.1\r\nHost: test\r\n\r\n"
  local GET_CLOSE = "GET / HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
  local srv, port, hint
  setup(function() srv, port, hint = start("http_hello") end)
  teardown(function() if srv and not srv.code then srv:stop("KILL") end end)

  it("answers curl, as its start-up line suggests", function()
    assert.are.equal("curl http://127.0.0.1:" .. port .. "/   (Ctrl-C stops the server)", hint)
    local code, out, err = proc.run(("curl -s -i --max-time 5 http://127.0.0.1:%d/"):format(port))
    assert.are.equal(0, code, err)
    assert.matches("^HTTP/1.1 200 OK\r\n", out)
    assert.matches("\r\nContent%-Length: 13\r\n", out)
    assert.matches("\r\n\r\nHello, World!$", out)
  end)

  it("sends exactly the bench response, and closes on Connection: close", function()
    local all = client(port, function(c)
      assert(c:send(GET .. GET_CLOSE))
      return assert(c:receive("*a"))
    end)
    assert.are.equal(RESP .. RESP, all)
  end)

  it("keeps the connection alive between requests", function()
    local n = client(port, function(c)
      for i = 1, 5 do
        assert(c:send(GET))
        assert.are.equal(RESP, assert(c:receive(#RESP)), "response " .. i)
      end
      return 5
    end)
    assert.are.equal(5, n)
  end)

  it("answers 50 pipelined requests in order", function()
    local got = client(port, function(c)
      assert(c:send(GET:rep(49) .. GET_CLOSE))
      return assert(c:receive("*a"))
    end)
    assert.are.equal(RESP:rep(50), got)
  end)

  it("answers a request split over three writes", function()
    local got = client(port, function(c)
      c:setoption("tcp-nodelay", true)
      assert(c:send("GET / HTTP/1.1\r\nHo"))
      ringline.sleep(0.05)   -- let each part reach the server on its own
      assert(c:send("st: test\r"))
      ringline.sleep(0.05)
      assert(c:send("\n\r\n"))
      return assert(c:receive(#RESP))
    end)
    assert.are.equal(RESP, got)
  end)

  it("reads and discards a request body with Content-Length", function()
    local got = client(port, function(c)
      local body = ("x"):rep(100000)
      assert(c:send("POST /upload HTTP/1.1\r\nHost: test\r\nContent-Length: " .. #body
                    .. "\r\n\r\n", body, GET_CLOSE))
      return assert(c:receive("*a"))
    end)
    assert.are.equal(RESP .. RESP, got)
  end)

  it("answers 400 and closes on a malformed request, after the good ones before it", function()
    local got = client(port, function(c)
      assert(c:send(GET .. "GET / HTTP/1.1\r\nno colon here\r\n\r\n" .. GET))
      return assert(c:receive("*a"))
    end)
    assert.are.equal(RESP, got:sub(1, #RESP))
    assert.matches("^HTTP/1.1 400 Bad Request\r\n", got:sub(#RESP + 1))
    assert.matches("\r\n\r\n$", got)                -- and nothing after it
  end)

  it("answers 400 to a loose or repeated Content-Length (request smuggling)", function()
    for _, v in ipairs({ "0x4", "+4", "1e0", "-0", "1e20", "4.0", "4, 4", ("9"):rep(16),
                         "4\r\nContent-Length: 5", "4\r\nContent-Length: 4" }) do
      local got = client(port, function(c)
        assert(c:send("POST / HTTP/1.1\r\nHost: test\r\nContent-Length: " .. v .. "\r\n\r\nabcd"))
        return assert(c:receive("*a"))
      end)
      assert.matches("^HTTP/1.1 400 Bad Request\r\n", got, nil, false, v)
    end
  end)

  it("answers 400 to a bare LF inside a header line", function()
    local got = client(port, function(c)
      assert(c:send("GET / HTTP/1.1\r\nHost: test\r\nX-A: 1\nX-B: 2\r\n\r\n"))
      return assert(c:receive("*a"))
    end)
    assert.matches("^HTTP/1.1 400 Bad Request\r\n", got)
  end)

  it("answers 400 to a request line that is not HTTP", function()
    local got = client(port, function(c)
      assert(c:send("hello there\r\n\r\n"))
      return assert(c:receive("*a"))
    end)
    assert.matches("^HTTP/1.1 400 Bad Request\r\n", got)
  end)

  it("answers 431 and closes when the request head passes 8 KiB", function()
    local got = client(port, function(c)
      assert(c:send("GET / HTTP/1.1\r\nHost: test\r\nX-Big: " .. ("a"):rep(10000)))
      return assert(c:receive("*a"))
    end)
    assert.matches("^HTTP/1.1 431 ", got)
  end)

  it("stops with status 0 on SIGTERM", function() stop_cleanly(srv) end)
end)

describe("examples/chat.lua", function()
  local srv, port, hint
  setup(function() srv, port, hint = start("chat") end)
  teardown(function() if srv and not srv.code then srv:stop("KILL") end end)

  it("says how to try it", function()
    assert.matches("nc 127.0.0.1 " .. port, hint, 1, true)
  end)

  it("sends every line to every other member, and tells who joins and leaves", function()
    local log = ringline.run({ timeout = 20 }, function()
      local function join()
        local c = assert(ringline.connect("127.0.0.1", port, { timeout = 5 }))
        c:settimeout(5000)
        local welcome = assert(c:receive("*l"))
        return c, tonumber(welcome:match("^%* welcome #(%d+), %d+ online$")), welcome
      end
      local a, ida, wa = join()
      assert(ida, wa)
      local b, idb = join()
      local c, idc = join()
      assert.are.equal("* #" .. idb .. " joined", a:receive("*l"))
      assert.are.equal("* #" .. idc .. " joined", a:receive("*l"))
      assert.are.equal("* #" .. idc .. " joined", b:receive("*l"))

      assert(a:send("hello from a\n"))
      assert.are.equal("#" .. ida .. ": hello from a", b:receive("*l"))
      assert.are.equal("#" .. ida .. ": hello from a", c:receive("*l"))
      assert(b:send("hi from b\r\n"))
      -- a's next line is b's, not an echo of its own
      assert.are.equal("#" .. idb .. ": hi from b", a:receive("*l"))
      assert.are.equal("#" .. idb .. ": hi from b", c:receive("*l"))

      c:close()
      assert.are.equal("* #" .. idc .. " left", a:receive("*l"))
      assert.are.equal("* #" .. idc .. " left", b:receive("*l"))
      a:close()
      assert.are.equal("* #" .. ida .. " left", b:receive("*l"))
      b:close()
      return "done"
    end)
    assert.are.equal("done", log)
  end)

  it("stops with status 0 on SIGTERM", function() stop_cleanly(srv) end)
end)

describe("examples/ws_echo.lua", function()
  local websocket = require "ringline.websocket"
  local srv, port, hint
  setup(function() srv, port, hint = start("ws_echo") end)
  teardown(function() if srv and not srv.code then srv:stop("KILL") end end)

  it("says how to try it", function()
    assert.matches("ws://127.0.0.1:" .. port .. "/", hint, 1, true)
  end)

  it("echoes text, binary and fragments, answers pings, echoes the close", function()
    local r = ringline.run({ timeout = 20 }, function()
      local ws = assert(websocket.connect("ws://127.0.0.1:" .. port .. "/",
        { timeout = 5000, max_payload_len = 200000 }))
      local out = {}
      assert(ws:send_text("héllo"))
      out.text = { ws:recv_frame() }
      local big = ("x"):rep(100000)
      assert(ws:send_binary(big))
      local d, t = ws:recv_frame()
      out.big = { d == big, t }
      assert(ws:send_frame(false, 1, "fr"))
      assert(ws:send_frame(true, 0, "ag"))
      out.f1 = { ws:recv_frame() }
      out.f2 = { ws:recv_frame() }
      assert(ws:send_ping("p"))
      out.pong = { ws:recv_frame() }
      assert(ws:send_close(1000, "bye"))
      out.close = { ws:recv_frame() }
      -- not an upgrade: 400
      local c = assert(ringline.connect("127.0.0.1", port, { timeout = 5 }))
      c:settimeout(5000)
      assert(c:send("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
      out.plain = c:receive("*l")
      c:close()
      return out
    end)
    assert.are.same({ "héllo", "text" }, r.text)
    assert.are.same({ true, "binary" }, r.big)
    assert.are.same({ "fr", "text", "again" }, r.f1)
    assert.are.same({ "ag", "continuation" }, r.f2)
    assert.are.same({ "p", "pong" }, r.pong)
    assert.are.same({ "", "close", 1000 }, r.close)
    assert.are.equal("HTTP/1.1 400 Bad Request", r.plain)
  end)

  it("stops with status 0 on SIGTERM", function() stop_cleanly(srv) end)
end)
