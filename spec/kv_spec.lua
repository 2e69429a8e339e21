-- examples/kv.lua run by the built host, driven by the real Redis tools:
-- redis-cli for every command (replies compared with redis-server 7.0's,
-- as redis-cli prints them), raw RESP for the exact bytes of errors,
-- pipelining and QUIT, expiry waited for as a condition, and
-- redis-benchmark (correctness only: no timing is asserted).
local root = debug.getinfo(1, "S").source:match("^@(.*)/spec/[^/]+$") or "."
if root:sub(1, 1) ~= "/" then root = os.getenv("PWD") .. "/" .. root end
package.path = ("%s/lua/?.lua;%s/lua/?/init.lua;%s/bindings/?.lua;%s/spec/?.lua;"):format(root, root, root, root)
  .. package.path
local ringline = require "ringline"
local ex = dofile(root .. "/spec/example_host.lua")(root)
local proc, client, stop_cleanly = ex.proc, ex.client, ex.stop_cleanly

-- redis-cli reading commands from stdin, one a line, printing replies as
-- on a terminal ("(integer) 1", "(nil)", "(error) ERR ...").
local function cli(port, lines)
  local code, out, err = proc.run(("redis-cli -p %d --no-raw"):format(port), table.concat(lines, "\n") .. "\n")
  assert(code == 0, "redis-cli failed: " .. err)
  local t = {}
  for l in out:gmatch("([^\n]*)\n") do t[#t + 1] = l end
  return t
end

-- Raw RESP: sends `req`, reads exactly #want bytes back.
local function raw(port, req, n)
  return client(port, function(c)
    assert(c:send(req))
    return c:receive(n)
  end)
end

describe("examples/kv.lua", function()
  local srv, port, hint
  setup(function() srv, port, hint = ex.start("kv", nil, nil, true) end)
  teardown(function() if srv and not srv.code then srv:stop("KILL") end end)

  before_each(function()
    assert.are.same({ "OK" }, cli(port, { "FLUSHALL" }))
  end)

  it("says how to try it", function()
    assert.matches("redis-cli -p " .. port, hint, 1, true)
  end)

  it("answers every command as redis-server does (redis-cli)", function()
    local got = cli(port, {
      "PING", "PING hello", "ECHO 'a b'",
      "SET k v", "GET k", "GET nokey", "SET k w NX", "SET j w XX", "GET j",
      "SET k z XX", "GET k", "SET k old GET", "SET n 10 KEEPTTL",
      "INCR n", "INCRBY n -15", "DECR n", "INCR fresh", "DECR fresh2",
      "SET big 9223372036854775806", "INCR big", "INCR big",
      "SET big -9223372036854775807", "DECR big", "DECR big",
      "SET s abc", "INCR s", "INCRBY n x",
      "MSET a 1 b 2", "MGET a b nokey", "EXISTS a b nokey a", "DEL a b nokey a", "EXISTS a",
      "DBSIZE",
      "SET t v", "TTL t", "TTL nokey", "EXPIRE t 100", "TTL t", "EXPIRE t 100 NX", "EXPIRE t 50 GT",
      "EXPIRE t 50 LT", "TTL t", "EXPIRE nokey 10", "SET t v", "TTL t", "SET t v EX 30", "TTL t",
      "SET t v PX 40000", "TTL t", "EXPIRE t -1", "EXISTS t",
      "SET t v EX 0", "SET t v EX x", "SET t v NX XX", "SET t v EX 1 PX 1", "SET t v EX",
      "EXPIRE t 10 NX XX", "EXPIRE t 10 GT LT", "EXPIRE t 10 foo",
      "GET", "GET a b", "FOO a b", "get k", "FLUSHALL", "DBSIZE",
    })
    assert.are.same({
      "PONG", '"hello"', '"a b"',
      "OK", '"v"', "(nil)", "(nil)", "(nil)", "(nil)",
      "OK", '"z"', '"z"', "OK",
      "(integer) 11", "(integer) -4", "(integer) -5", "(integer) 1", "(integer) -1",
      "OK", "(integer) 9223372036854775807", "(error) ERR increment or decrement would overflow",
      "OK", "(integer) -9223372036854775808", "(error) ERR increment or decrement would overflow",
      "OK", "(error) ERR value is not an integer or out of range",
      "(error) ERR value is not an integer or out of range",
      "OK", '1) "1"', '2) "2"', "3) (nil)", "(integer) 3", "(integer) 2", "(integer) 0",
      "(integer) 6",
      "OK", "(integer) -1", "(integer) -2", "(integer) 1", "(integer) 100", "(integer) 0", "(integer) 0",
      "(integer) 1", "(integer) 50", "(integer) 0", "OK", "(integer) -1", "OK", "(integer) 30",
      "OK", "(integer) 40", "(integer) 1", "(integer) 0",
      "(error) ERR invalid expire time in 'set' command",
      "(error) ERR value is not an integer or out of range",
      "(error) ERR syntax error", "(error) ERR syntax error", "(error) ERR syntax error",
      "(error) ERR NX and XX, GT or LT options at the same time are not compatible",
      "(error) ERR GT and LT options at the same time are not compatible",
      "(error) ERR Unsupported option foo",
      "(error) ERR wrong number of arguments for 'get' command",
      "(error) ERR wrong number of arguments for 'get' command",
      "(error) ERR unknown command 'FOO', with args beginning with: 'a' 'b' ",
      '"old"', "OK", "(integer) 0",
    }, got)
  end)

  it("gives redis-server's exact bytes for errors, arity and binary values (raw RESP)", function()
    local req = "*2\r\n$3\r\nFOO\r\n$5\r\na\r\nbc\r\n" .. "*1\r\n$0\r\n\r\n"
      .. "*3\r\n$3\r\nSET\r\n$3\r\nb\0k\r\n$4\r\n\0\r\n\255\r\n" .. "*2\r\n$3\r\nGET\r\n$3\r\nb\0k\r\n"
      .. "MSET a\r\nDBSIZE x\r\nFLUSHALL x\r\nPING a b\r\n"
    local want = "-ERR unknown command 'FOO', with args beginning with: 'a  bc' \r\n"
      .. "-ERR unknown command '', with args beginning with: \r\n"
      .. "+OK\r\n" .. "$4\r\n\0\r\n\255\r\n"
      .. "-ERR wrong number of arguments for 'mset' command\r\n"
      .. "-ERR wrong number of arguments for 'dbsize' command\r\n"
      .. "-ERR syntax error\r\n"
      .. "-ERR wrong number of arguments for 'ping' command\r\n"
    assert.are.equal(want, raw(port, req, #want))
  end)

  it("answers 1000 pipelined commands in order", function()
    local req, want = {}, {}
    for i = 1, 500 do
      req[#req + 1] = ("*3\r\n$3\r\nSET\r\n$%d\r\nk%d\r\n$%d\r\n%d\r\n"):format(#tostring(i) + 1, i, #tostring(i), i)
      want[#want + 1] = "+OK\r\n"
    end
    for i = 1, 500 do
      req[#req + 1] = ("GET k%d\r\n"):format(i)
      want[#want + 1] = ("$%d\r\n%d\r\n"):format(#tostring(i), i)
    end
    want = table.concat(want)
    assert.are.equal(want, raw(port, table.concat(req), #want))
  end)

  it("QUIT answers +OK and closes; the commands after it are not run", function()
    local got = client(port, function(c)
      assert(c:send("SET q 1\r\nQUIT\r\nSET q 2\r\n"))
      return { c:receive("*a") }
    end)
    assert.are.same({ "+OK\r\n+OK\r\n" }, got)
    assert.are.same({ '"1"' }, cli(port, { "GET q" }))
  end)

  it("a protocol error is answered as redis-server answers it, then the connection closes", function()
    local got = client(port, function(c)
      assert(c:send("PING\r\n*1\r\n$x\r\nPING\r\n"))
      return { c:receive("*a") }
    end)
    assert.are.same({ "+PONG\r\n-ERR Protocol error: invalid bulk length\r\n" }, got)
  end)

  it("expires keys: lazily when read, and by the sweep when nobody reads them", function()
    local r = client(port, function(c)
      -- one reply: a line, and a bulk string's payload after its header
      local function cmd(s)
        assert(c:send(s))
        local l = assert(c:receive())
        if l:match("^%$%d") then assert(c:receive()) end
        return l
      end
      assert.are.equal("+OK", cmd("SET gone v PX 20\r\n"))
      assert.are.equal("+OK", cmd("SET swept v PX 20\r\n"))
      assert.are.equal("+OK", cmd("SET kept v\r\n"))
      -- waits until GET sees it expire (bounded), never a fixed sleep
      local deadline = ringline.now() + 5
      local seen_gone = false
      while ringline.now() < deadline do
        if cmd("GET gone\r\n") == "$-1" then seen_gone = true break end
        ringline.sleep(0.005)
      end
      -- "swept" is never read: DBSIZE drops to 1 only by the sweep
      local swept = false
      while ringline.now() < deadline do
        if cmd("DBSIZE\r\n") == ":1" then swept = true break end
        ringline.sleep(0.01)
      end
      return { seen_gone, swept, cmd("EXISTS swept kept\r\n"), cmd("TTL kept\r\n") }
    end)
    assert.are.same({ true, true, ":1", ":-1" }, r)
  end)

  it("completes redis-benchmark -t set,get -P 16 without errors", function()
    local code, out, err = proc.run(("redis-benchmark -p %d -t set,get -n 2000 -c 10 -P 16 -q"):format(port))
    assert.are.equal(0, code, err)
    out = out:gsub("\r", "\n")
    assert.matches("SET: [%d.]+ requests per second", out)
    assert.matches("GET: [%d.]+ requests per second", out)
    assert.is_nil((out .. err):lower():find("error"), out .. err)
    assert.is_nil((out .. err):find("WARNING"), out .. err)
    -- the benchmark's key holds its 3-byte value (-d 3)
    local v = cli(port, { "GET key:__rand_int__" })
    assert.matches('^"..."$', v[1])
  end)

  it("stops cleanly on SIGTERM", function()
    stop_cleanly(srv)
  end)
end)
