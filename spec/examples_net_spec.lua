-- The client-side examples, run by the built host: examples/proxy.lua (a
-- 16 MiB stream each way with half-close, through an upstream that lives
-- in this process), examples/udp_echo.lua, and examples/http_client.lua
-- fetching from examples/http_hello.lua.
local root = debug.getinfo(1, "S").source:match("^@(.*)/spec/[^/]+$") or "."
if root:sub(1, 1) ~= "/" then root = os.getenv("PWD") .. "/" .. root end
package.path = ("%s/lua/?.lua;%s/lua/?/init.lua;%s/bindings/?.lua;%s/spec/?.lua;"):format(root, root, root, root)
  .. package.path
local ringline = require "ringline"
local support = require "support"
local ex = dofile(root .. "/spec/example_host.lua")(root)
local proc, host, stop_cleanly = ex.proc, ex.host, ex.stop_cleanly

local function start(name, env) return ex.start(name, env) end

describe("examples/proxy.lua", function()
  it("relays a 16 MiB stream each way at once, and each side's half-close", function()
    local MiB = 1048576
    local up_data = support.pattern(16 * MiB, 11)
    local client_data = support.pattern(16 * MiB, 12)
    local srv
    local r = ringline.run({ timeout = 60 }, function()
      local upstream_got = support.event()
      -- The upstream: streams up_data while it reads everything the client
      -- sends; after the client's EOF it still sends a last line (the
      -- half-closed connection goes on in the other direction), then ends.
      local lst, uport = support.server(function(c)
        local sender = ringline.spawn(function() return c:send(up_data) end)
        local got, err = c:receive("*a")
        assert(sender:join())
        assert(c:send("ack:" .. #(got or "")))
        upstream_got.set({ got, err })
      end)
      local port
      srv, port = start("proxy", "UPSTREAM=127.0.0.1:" .. uport)
      local c = assert(ringline.connect("127.0.0.1", port, { timeout = 5 }))
      c:settimeout(30000)
      local sender = ringline.spawn(function()
        assert(c:send(client_data))
        return c:shutdown("send")
      end)
      local back, err = c:receive("*a")
      local sent = { sender:join() }
      local up = upstream_got.wait()
      c:close()
      lst:close()
      return { back = back, err = err, sent = sent, up = up }
    end)
    stop_cleanly(srv)
    assert.are.same({ true, true }, r.sent)
    assert.is_nil(r.up[2])
    assert.are.equal(#client_data, #r.up[1])
    assert.is_true(r.up[1] == client_data, "upstream: the client's bytes differ")
    assert.is_nil(r.err)
    local tail = "ack:" .. #client_data
    assert.are.equal(#up_data + #tail, #r.back)
    assert.is_true(r.back:sub(1, #up_data) == up_data, "client: the upstream's bytes differ")
    assert.are.equal(tail, r.back:sub(#up_data + 1))
  end)

  it("an upstream nobody listens on: the client's connection ends at once", function()
    local lst_port = ringline.run(function()
      local lst, p = support.server(function() end)
      lst:close()
      return p
    end)
    local srv, port = start("proxy", "UPSTREAM=127.0.0.1:" .. lst_port)
    local r = ringline.run({ timeout = 20 }, function()
      local c = assert(ringline.connect("127.0.0.1", port, { timeout = 5 }))
      c:settimeout(5000)
      local d, err = c:receive("*a")
      c:close()
      return { d, err }
    end)
    local code, _, err = srv:stop("TERM")
    assert.are.equal(0, code)
    assert.matches("upstream 127%.0%.0%.1:%d+: connection refused", err)
    -- reset by the proxy, or an orderly end with nothing
    assert.is_truthy(r[2] == "connection reset by peer" or (r[1] == "" and r[2] == nil), tostring(r[2]))
  end)
end)

describe("examples/udp_echo.lua", function()
  it("sends every datagram back whole, up to 60000 bytes", function()
    local srv, port = start("udp_echo")
    local r = ringline.run({ timeout = 20 }, function()
      local u = ringline.udp()
      assert(u:setpeername("127.0.0.1", port))
      u:settimeout(5000)
      local out = {}
      for i, n in ipairs({ 1, 5, 1400, 60000 }) do
        local msg = support.pattern(n, i)
        assert(u:send(msg))
        local d, err = u:receive()
        out[i] = d == msg or tostring(err)
      end
      u:close()
      return out
    end)
    stop_cleanly(srv)
    assert.are.same({ true, true, true, true }, r)
  end)
end)

describe("examples/http_client.lua", function()
  -- One canned response to the client: the server runs in this process
  -- while the client runs in its own.
  local function serve_one(response)
    return ringline.run({ timeout = 20 }, function()
      local done = ringline.semaphore(0)
      local lst = assert(ringline.listen("127.0.0.1:0", function(c)
        repeat local line = c:receive("*l") until line == "" or not line
        c:send(response)
        done:post()
      end))
      local _, port = lst:getsockname()
      local client = proc.spawn(("%s %s/examples/http_client.lua 127.0.0.1 %d /"):format(
        proc.quote(host), root, port), 20)
      assert(done:wait(15))
      lst:close()
      return client
    end)
  end

  it("fetches from http_hello.lua, prints the body and exits 0", function()
    local srv, port = start("http_hello")
    local code, out, err = proc.run(("%s %s/examples/http_client.lua 127.0.0.1 %d /"):format(
      proc.quote(host), root, port))
    local code2, out2 = proc.run(("%s %s/examples/http_client.lua localhost %d"):format(
      proc.quote(host), root, port))
    stop_cleanly(srv)
    assert.are.equal(0, code, err)
    assert.are.equal("Hello, World!\n", out)
    assert.are.equal("", err)
    assert.are.same({ 0, "Hello, World!\n" }, { code2, out2 })
  end)

  it("reads a chunked body; a bad chunk size exits 1 naming it", function()
    local good = serve_one("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
      .. "5\r\nHello\r\n8;ext=1\r\n, World!\r\n0\r\nX-Trailer: 1\r\n\r\n")
    local code, out, err = good:wait()
    assert.are.equal(0, code, err)
    assert.are.equal("Hello, World!", out:match("^[^\n]*"))   -- (wait() adds an exit= line)
    local bad = serve_one("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")
    code, out, err = bad:wait()
    assert.are.equal(1, code)
    assert.matches("bad chunk size line: zz", err, 1, true)
  end)

  it("refuses a loose or conflicting Content-Length: exit 1 naming it", function()
    local clients = {}
    for _, v in ipairs({ "0x4", "+4", "1e0", "-0", "1e20", "4.0", ("9"):rep(16), "4\r\nContent-Length: 5" }) do
      clients[#clients + 1] = { v, serve_one("HTTP/1.1 200 OK\r\nContent-Length: " .. v
        .. "\r\nConnection: close\r\n\r\nabcdefghij") }
    end
    for _, vc in ipairs(clients) do
      local code, _, err = vc[2]:wait()
      assert.are.equal(1, code, vc[1])
      assert.matches("bad Content-Length", err, 1, true)
    end
    -- the same length twice is one length
    local same = serve_one("HTTP/1.1 200 OK\r\nContent-Length: 4\r\nContent-Length: 4\r\n"
      .. "Connection: close\r\n\r\nabcd")
    local code, out, err = same:wait()
    assert.are.equal(0, code, err)
    assert.are.equal("abcd", out:match("^[^\n]*"))
  end)

  it("exits 1 naming the reason when the server is not there, 1 without arguments", function()
    local lst_port = ringline.run(function()
      local lst, p = support.server(function() end)
      lst:close()
      return p
    end)
    local code, out, err = proc.run(("%s %s/examples/http_client.lua 127.0.0.1 %d"):format(
      proc.quote(host), root, lst_port))
    assert.are.equal(1, code)
    assert.are.equal("", out)
    assert.matches("connection refused", err)
    local code2, _, err2 = proc.run(("%s %s/examples/http_client.lua"):format(proc.quote(host), root))
    assert.are.equal(1, code2)
    assert.matches("usage:", err2)
  end)
end)
