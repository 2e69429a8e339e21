-- ringline.conn: every receive pattern against fragmented arrivals and big
-- messages, partial results, receiveuntil, zero-copy reads, sends of every
-- argument kind, backpressure, timeouts, shutdown, close and reset, names,
-- options, ids. Server and clients run as tasks of one worker.
local ffi = require "ffi"
local bit = require "bit"
local buffer = require "string.buffer"
local ringline = require "ringline"
local support = require "support"

local run, server, connect, dribble = support.run, support.server, support.connect, support.dribble

-- Runs a server whose handler is `serve(conn)` and a client `client(conn)`;
-- returns what the handler returned (as a table) and the client's results.
local function pair(serve, client, opts)
  return run(function()
    local done = support.event()
    local lst, port = server(function(c) done.set({ serve(c) }) end)
    local c = connect(port)
    local cres = { client(c) }
    c:close()
    local sres = done.wait()
    lst:close()
    return sres, cres
  end, opts)
end

-- Collects every value of fn(conn) until it returns nil, plus the final
-- (nil, err, partial).
local function drain(fn)
  local got = {}
  while true do
    local v, err, partial = fn()
    if v == nil then return got, err, partial end
    got[#got + 1] = v
  end
end

describe("conn:receive", function()
  it('"*l" strips \\n and \\r\\n, keeps empty lines, fragmented one byte per arrival', function()
    local s = pair(function(c)
      return drain(function() return c:receive("*l") end)
    end, function(c)
      dribble(c, "one\r\ntwo\n\nthree\r\n\r\nfour")
    end)
    assert.are.same({ "one", "two", "", "three", "" }, s[1])
    assert.are.equal("closed", s[2])
    assert.are.equal("four", s[3])
  end)

  it("defaults to \"*l\"; a lone \\r stays in the line", function()
    local s = pair(function(c)
      return c:receive(), c:receive()
    end, function(c)
      assert(c:send("a\rb\nx\r\r\n"))
    end)
    assert.are.same({ "a\rb", "x\r" }, s)
  end)

  it("number: exact sizes over one-byte arrivals; partial on close", function()
    local s = pair(function(c)
      return drain(function() return c:receive(3) end)
    end, function(c)
      dribble(c, "abcdefghij")
    end)
    assert.are.same({ "abc", "def", "ghi" }, s[1])
    assert.are.equal("closed", s[2])
    assert.are.equal("j", s[3])
  end)

  it("number 0 returns the empty string without waiting", function()
    local s = pair(function(c) return c:receive(0) end, function() end)
    assert.are.same({ "" }, s)
  end)

  it('"*a" returns everything at the peer\'s close, fragmented', function()
    local s = pair(function(c)
      return c:receive("*a"), c:receive("*a")
    end, function(c)
      dribble(c, "hello world")
    end)
    assert.are.same({ "hello world", "" }, s)
  end)

  it('"*a" returns "" when the peer closes without sending', function()
    local s = pair(function(c) return c:receive("*a") end, function() end)
    assert.are.same({ "" }, s)
  end)

  it("after EOF a sized read returns nil, \"closed\" and the partial data", function()
    local s = pair(function(c)
      return { c:receive(100) }
    end, function(c)
      assert(c:send("short"))
    end)
    assert.are.same({ nil, "closed", "short" }, s[1])
  end)

  for _, mode in ipairs({ "number", "*a", "receiveuntil" }) do
    it("8 MiB byte-exact with " .. mode .. ", echoed back", function()
      local N = 8 * 1024 * 1024
      local msg = support.pattern(N, 7)
      local s, cl = pair(function(c)
        local data
        if mode == "number" then
          data = c:receive(N)
        elseif mode == "*a" then
          data = c:receive("*a")
        else
          data = c:receiveuntil("\255\255END")()
        end
        assert(c:send(data))
        return #data, data == msg
      end, function(c)
        local delim = mode == "receiveuntil" and "\255\255END" or ""
        assert.are.equal(N + #delim, c:send(msg, delim))
        if mode == "*a" then assert(c:shutdown("send")) end
        local back = c:receive(N)
        return back == msg
      end, { line_max = 16 * 1024 * 1024 })
      assert.are.same({ N, true }, s)
      assert.are.same({ true }, cl)
    end)
  end

  it("a second reader gets nil, \"socket busy reading\"", function()
    local checked = support.event()
    local s = pair(function(c)
      local t = ringline.spawn(function() return c:receive(5) end)
      ringline.sleep(0)                          -- t runs and parks in receive
      local a, b = c:receive(1)
      checked.set()
      local ok, data = t:join()
      return a, b, ok, data
    end, function(c)
      checked.wait()
      assert(c:send("12345"))
    end)
    assert.are.same({ nil, "socket busy reading", true, "12345" }, s)
  end)

  it("misuse raises: bad pattern, negative size", function()
    local s = pair(function(c)
      local ok1, e1 = pcall(c.receive, c, "*x")
      local ok2, e2 = pcall(c.receive, c, -1)
      return ok1, e1, ok2, e2
    end, function() end)
    assert.is_false(s[1])
    assert.matches("bad pattern", s[2])
    assert.is_false(s[3])
    assert.matches("bad size", s[4])
  end)
end)

describe("conn:receiveany", function()
  it("returns what is buffered up to max, waiting only when nothing is", function()
    local s = pair(function(c)
      assert(c:view(6))
      return c:receiveany(4), c:receiveany(100), { c:receiveany(10) }
    end, function(c)
      assert(c:send("abcdef"))
    end)
    assert.are.equal("abcd", s[1])
    assert.are.equal("ef", s[2])
    assert.are.same({ nil, "closed" }, s[3])
  end)

  it("waits for one-byte arrivals", function()
    local s = pair(function(c)
      local got = {}
      while true do
        local d = c:receiveany(1024)
        if not d then break end
        got[#got + 1] = d
      end
      return table.concat(got)
    end, function(c)
      dribble(c, "fragmented")
    end)
    assert.are.same({ "fragmented" }, s)
  end)

  it("raises on a bad max", function()
    local s = pair(function(c) return pcall(c.receiveany, c, 0) end, function() end)
    assert.is_false(s[1])
  end)
end)

describe("conn:receiveuntil", function()
  it("finds a delimiter split across one-byte arrivals; the tail comes as partial", function()
    local s = pair(function(c)
      local it = c:receiveuntil("--XY")
      return drain(function() return it() end)
    end, function(c)
      dribble(c, "part1--XYpart2--X--XY--XYtail-")
    end)
    assert.are.same({ "part1", "part2--X", "" }, s[1])
    assert.are.equal("closed", s[2])
    assert.are.equal("tail-", s[3])
  end)

  it("inclusive returns the delimiter too", function()
    local s = pair(function(c)
      local it = c:receiveuntil("\r\n", { inclusive = true })
      return it(), it()
    end, function(c)
      dribble(c, "ab\r\ncd\r\n")
    end)
    assert.are.same({ "ab\r\n", "cd\r\n" }, s)
  end)

  it("iter(size) hands out pieces, then nil, nil at each delimiter", function()
    local s = pair(function(c)
      local it = c:receiveuntil("--")
      local got = {}
      for _ = 1, 9 do
        local d, err = it(3)
        got[#got + 1] = d == nil and (err or "END") or d
      end
      return got
    end, function(c)
      dribble(c, "abcdefgh--ij----k")
    end)
    -- "abcdefgh" in 3s, END; "ij", END; empty part: END at once; then "k" + EOF
    assert.are.same({ "abc", "def", "gh", "END", "ij", "END", "END", "closed", "closed" }, s[1])
  end)

  it("iter(size) with inclusive counts the delimiter in the pieces", function()
    local s = pair(function(c)
      local it = c:receiveuntil("XYZ", { inclusive = true })
      local got = {}
      for _ = 1, 4 do
        local d, err = it(2)
        got[#got + 1] = d == nil and (err or "END") or d
      end
      return got
    end, function(c)
      assert(c:send("aXYZb"))
    end)
    assert.are.same({ "aX", "YZ", "END", "closed" }, s[1])
  end)

  it('an endless part returns "too long", consumes nothing, costs only its connection', function()
    local s = pair(function(c)
      local it = c:receiveuntil("\n")
      local a, b = it()
      local rest = c:receive(5000)             -- nothing was consumed
      return a, b, #rest
    end, function(c)
      assert(c:send(("x"):rep(5000)))
    end, { line_max = 4096 })
    assert.are.same({ nil, "too long", 5000 }, s)
  end)

  it("opts.max bounds a part for one iterator", function()
    local s = pair(function(c)
      local a, b = c:receiveuntil("|", { max = 3 })()
      local d = c:receiveuntil("|")()
      return a, b, d
    end, function(c)
      assert(c:send("abcdef|"))
    end)
    assert.are.same({ nil, "too long", "abcdef" }, s)
  end)

  it("raises on an empty delimiter", function()
    local s = pair(function(c) return pcall(c.receiveuntil, c, "") end, function() end)
    assert.is_false(s[1])
  end)
end)

describe("conn:lines", function()
  it("iterates lines until the peer closes", function()
    local s = pair(function(c)
      local got = {}
      for l in c:lines() do got[#got + 1] = l end
      return got
    end, function(c)
      dribble(c, "a\nbb\r\n\nccc\n")
    end)
    assert.are.same({ "a", "bb", "", "ccc" }, s[1])
  end)

  it('"*l" over line_max returns "too long" and the connection stays usable', function()
    local s = pair(function(c)
      local a, b = c:receive("*l")
      local rest = c:receive(5001)
      return a, b, #rest
    end, function(c)
      assert(c:send(("y"):rep(5000) .. "\n"))
    end, { line_max = 1000 })
    assert.are.same({ nil, "too long", 5001 }, s)
  end)
end)

describe("receiveuntil's max", function()
  it("past max_receive counts as max_receive: \"too long\", not the core's refusal", function()
    local s = pair(function(c)
      local it = c:receiveuntil("--", { max = 2 ^ 40 })
      return it()
    end, function(c)
      c:send(("z"):rep(3000))
    end, { max_receive = 2048, line_max = 100 })
    assert.are.same({ nil, "too long" }, { s[1], s[2] })
  end)
end)

describe("conn:view / consume / with_data", function()
  it("view gives a pointer into the buffer; consume drops bytes", function()
    local s = pair(function(c)
      local p, n = c:view(6)
      local first = ffi.string(p, 5)
      assert(c:consume(6))
      p, n = c:view(5)
      local second = ffi.string(p, 5)
      local ok = pcall(c.consume, c, n + 1)
      assert(c:consume(n))
      return first, second, ok, ffi.typeof(p) == ffi.typeof("const uint8_t *")
    end, function(c)
      dribble(c, "hello world")
    end)
    assert.are.same({ "hello", "world", false, true }, s)
  end)

  it("view(0) of an empty buffer gives a usable pointer, never a NULL one", function()
    local s = pair(function(c)
      local p, n = c:view(0)
      return p ~= nil, n, ffi.typeof(p) == ffi.typeof("const uint8_t *")
    end, function(c)
      c:close()
    end)
    assert.are.same({ true, 0, true }, s)
  end)

  it("view(min, timeout) times out without consuming", function()
    local done = support.event()
    local s = pair(function(c)
      local a, b = c:view(100, 50)
      local p, n = c:view(3)
      done.set()
      return a, b, ffi.string(p, n)
    end, function(c)
      assert(c:send("abc"))
      done.wait()
    end)
    assert.are.same({ nil, "timeout", "abc" }, s)
  end)

  it("with_data runs a parser over fragments until it consumes", function()
    local s = pair(function(c)
      local function parse(p, len)
        -- "<digits>:<payload>"
        local i, n = 0, 0
        while i < len and p[i] >= 48 and p[i] <= 57 do n = n * 10 + p[i] - 48; i = i + 1 end
        if i == len then return 0 end
        if len - i - 1 < n then return 0 end
        return i + 1 + n, ffi.string(p + i + 1, n)
      end
      return c:with_data(parse), c:with_data(parse), { c:with_data(parse) }
    end, function(c)
      dribble(c, "5:hello12:abcdefghijkl")
    end)
    assert.are.equal("hello", s[1])
    assert.are.equal("abcdefghijkl", s[2])
    assert.are.same({ nil, "closed" }, s[3])
  end)

  it("a with_data parser that raises leaves the connection and the task clean", function()
    local more = support.event()
    local s = pair(function(c)
      c:settimeout(5000)
      local ok, err = pcall(c.with_data, c, function() error("bad parser") end)
      local timers = ringline.metrics().timers_active
      more.set()
      return ok, err:match("bad parser"), timers, c:receive(6)
    end, function(c)
      assert(c:send("abc"))
      more.wait()
      assert(c:send("def"))
    end)
    -- at most the task's own deadline timer, kept lazily for its next timed
    -- wait (task.lua): it wakes nobody, as the receive after it shows
    assert.are.same({ false, "bad parser", "abcdef" }, { s[1], s[2], s[4] })
    assert.is_true(s[3] <= 1, tostring(s[3]))
  end)

  it("with_data returns the count when fn gives no result, and rejects over-consumption", function()
    local s = pair(function(c)
      local n = c:with_data(function(_, len) return len >= 4 and 4 or 0 end)
      local ok = pcall(c.with_data, c, function(_, len) return len + 1 end)
      return n, ok
    end, function(c)
      assert(c:send("abcdef"))
    end)
    assert.are.same({ 4, false }, s)
  end)
end)

describe("conn:send", function()
  it("sends strings, numbers, nested arrays and string.buffers in order", function()
    local b = buffer.new()
    b:put("buf", "fer")
    local expect = "abc1" .. "buffer" .. "2.5" .. "xyz"
    local s, cl = pair(function(c)
      return c:receive(#expect)
    end, function(c)
      return c:send({ "a", { "b", { "c", 1 } } }, b, 2.5, { {}, "xyz" })
    end)
    assert.are.same({ expect }, s)
    assert.are.same({ #expect }, cl)
    assert.are.equal(6, #b)                     -- the buffer is left as it was
  end)

  it("raises on a value it cannot send, and on nothing to send", function()
    local _, cl = pair(function() end, function(c)
      local ok1, e1 = pcall(function() c:send(true) end)   -- the error names this line
      local ok2 = pcall(c.send, c, { "a", { false } })
      local ok3 = pcall(c.send, c)
      local cyc = {}
      cyc[1] = cyc
      local ok4 = pcall(c.send, c, cyc)
      -- nested arrays: still the caller's line, at every depth
      local line = debug.getinfo(1, "l").currentline
      local _, e5 = pcall(function() c:send({ { true } }) end)            -- line + 1
      local _, e6 = pcall(function() c:send("x", { { { true } } }) end)   -- line + 2
      return ok1, e1, ok2, ok3, ok4, e5, e6, line
    end)
    assert.is_false(cl[1])
    assert.matches("conn_spec.lua:%d+: ringline: conn:send: cannot send a boolean", cl[2])
    assert.is_false(cl[3])
    assert.is_false(cl[4])
    assert.is_false(cl[5])
    assert.matches("conn_spec.lua:" .. (cl[8] + 1) .. ": ringline: conn:send: cannot send a boolean", cl[6])
    assert.matches("conn_spec.lua:" .. (cl[8] + 2) .. ": ringline: conn:send: cannot send a boolean", cl[7])
  end)

  it('send_nowait says "busy" above the high watermark; flush drains', function()
    local go = support.event()
    local s, cl = pair(function(c)
      go.wait()
      local total = 0
      while true do
        local d = c:receiveany(1048576)
        if not d then break end
        total = total + #d
      end
      return total
    end, function(c)
      local chunk = ("z"):rep(65536)
      local queued, busy = 0, false
      for _ = 1, 4096 do
        local n, err = c:send_nowait(chunk)
        if not n then
          busy = err
          break
        end
        queued = queued + n
      end
      go.set()
      local ok = c:flush(10000)
      return busy, queued, ok
    end)
    assert.are.equal("busy", cl[1])
    assert.are.equal(true, cl[3])
    assert.are.equal(cl[2], s[1])
  end)
  it("send waits above the high watermark and returns when the peer reads", function()
    local s, cl = pair(function(c)
      return #assert(c:receive(4 * 1024 * 1024))
    end, function(c)
      local big = ("q"):rep(4 * 1024 * 1024)
      return c:send(big), c.io.unsent <= 16384
    end, { send_high_watermark = 65536, send_low_watermark = 16384 })
    assert.are.same({ 4 * 1024 * 1024 }, s)
    assert.are.same({ 4 * 1024 * 1024, true }, cl)
  end)

  it("send and flush time out while the peer does not read", function()
    local hold = support.event()
    local _, cl = pair(function(c)
      hold.wait()
    end, function(c)
      -- More than the kernel's socket buffers and the peer's receive window
      -- can hold, so the queue cannot drain while the peer does not read.
      c:settimeouts(nil, 50, nil)
      local n, err = c:send(("w"):rep(32 * 1048576))
      local a, b = c:flush(50)
      hold.set()
      c:close("reset")
      return n, err, a, b
    end)
    assert.are.same({ nil, "timeout", nil, "timeout" }, { cl[1], cl[2], cl[3], cl[4] })
  end)
end)

describe("timeouts", function()
  it("a timed-out receive consumes nothing; the connection stays usable", function()
    local more = support.event()
    local _, cl = pair(function(c)
      assert(c:send("abc"))
      more.wait()
      assert(c:send("de"))
      c:receive("*a")
    end, function(c)
      c:settimeout(50)
      local a, b = c:receive(5)
      more.set()
      c:settimeout(5000)
      local d = c:receive(5)
      return a, b, d
    end)
    assert.are.same({ nil, "timeout", "abcde" }, cl)
  end)

  it("settimeouts sets the read timeout separately; 0 means none", function()
    local _, cl = pair(function(c)
      c:receive("*a")
    end, function(c)
      c:settimeouts(0, 0, 30)
      local a, b = c:receive("*l")
      c:settimeouts(1000, 1000, 0)
      return a, b, c.read_to, c.send_to, pcall(c.settimeout, c, -1)
    end)
    assert.are.same({ nil, "timeout", false, 1, false }, { cl[1], cl[2], cl[3], cl[4], cl[5] })
  end)
end)

describe("shutdown and close", function()
  it('shutdown("send") gives the peer EOF; the other direction still works', function()
    local s, cl = pair(function(c)
      local req = c:receive("*a")
      assert(c:send("pong:" .. req))
      return req
    end, function(c)
      assert(c:send("ping"))
      assert(c:shutdown("send"))
      return c:receive("*a")
    end)
    assert.are.same({ "ping" }, s)
    assert.are.same({ "pong:ping" }, cl)
  end)

  it("close twice and every call after close return nil, \"closed\"", function()
    local _, cl = pair(function() end, function(c)
      local r = { c:close() }
      r[#r + 1] = select(2, c:close())
      r[#r + 1] = select(2, c:receive(1))
      r[#r + 1] = select(2, c:send("x"))
      r[#r + 1] = select(2, c:shutdown("send"))
      r[#r + 1] = select(2, c:getpeername())
      return r
    end)
    assert.are.same({ true, "closed", "closed", "closed", "closed", "closed" }, cl[1])
  end)

  it("close from another task wakes a parked reader with \"closed\"", function()
    local _, cl = pair(function(c) c:receive("*a") end, function(c)
      local t = ringline.spawn(function() return c:receive(10) end)
      ringline.sleep(0)
      c:close()
      return t:join()
    end)
    assert.are.same({ true, nil, "closed" }, cl)
  end)

  it("a peer reset mid-receive gives \"connection reset by peer\"", function()
    local reading = support.event()
    local s = pair(function(c)
      local head = c:receive(4)
      reading.set()
      return head, { c:receive(100) }
    end, function(c)
      assert(c:send("head"))
      reading.wait()                           -- the server is in receive(100) now
      assert(c:send("part"))
      assert(c:flush())
      assert(c:close("reset"))
    end)
    assert.are.equal("head", s[1])
    assert.are.equal(nil, s[2][1])
    assert.are.equal("connection reset by peer", s[2][2])
    assert.are.equal("string", type(s[2][3]))
  end)

  it("every method returns nil, \"closed\" after close; misuse raises", function()
    local _, cl = pair(function() end, function(c)
      local raised = {
        (pcall(c.view, c, "x")), (pcall(c.view, c, 1, "soon")), (pcall(c.with_data, c, 42)),
        (pcall(c.consume, c, -1)), (pcall(c.consume, c, 1.5)), (pcall(c.flush, c, "x")),
        (pcall(c.shutdown, c, "recv")), (pcall(c.settimeouts, c, "x")),
        (pcall(c.receiveuntil, c, "x", 5)), (pcall(c.receiveuntil(c, "x"), 0)),
      }
      c:close()
      local closed = {
        select(2, c:receiveany(1)), select(2, c:view()), select(2, c:with_data(function() return 0 end)),
        select(2, c:consume(0)), select(2, c:send_nowait("x")), select(2, c:flush()),
        select(2, c:setoption("keepalive", true)), select(2, c:getsockname()),
        select(2, c:receiveuntil("x")()), select(2, c:receive("*a")),
      }
      return raised, closed
    end)
    assert.are.same({ false, false, false, false, false, false, false, false, false, false }, cl[1])
    for i = 1, 10 do assert.are.equal("closed", cl[2][i], "call " .. i) end
  end)

  it("close(how) raises on a bad how", function()
    local _, cl = pair(function() end, function(c) return pcall(c.close, c, "later") end)
    assert.is_false(cl[1])
  end)
end)

describe("names, options, ids", function()
  it("getpeername/getsockname agree between the two ends", function()
    local s, cl = pair(function(c)
      local ph, pp = c:getpeername()
      local sh, sp = c:getsockname()
      return ph, pp, sh, sp
    end, function(c)
      local ph, pp = c:getpeername()
      local sh, sp = c:getsockname()
      return ph, pp, sh, sp
    end)
    assert.are.equal("127.0.0.1", s[1])
    assert.are.equal(cl[4], s[2])          -- server's peer port = client's own port
    assert.are.equal(cl[2], s[4])          -- client's peer port = server's port
    assert.are.equal("127.0.0.1", cl[3])
  end)

  it("setoption accepts the four options and rejects others", function()
    local s = pair(function(c)
      return c:setoption("tcp-nodelay", true), c:setoption("keepalive", true),
             c:setoption("sndbuf", 65536), c:setoption("rcvbuf", 65536),
             pcall(c.setoption, c, "linger", 1), pcall(c.setoption, c, "sndbuf", "big")
    end, function() end)
    assert.are.same({ true, true, true, true, false, false }, { s[1], s[2], s[3], s[4], s[5], s[6] })
  end)

  it("id() is unique among live connections, and differs after slot reuse", function()
    local ids = run(function()
      local lst, port = server(function(c) c:receive("*a") end)
      local seen, list = {}, {}
      for _ = 1, 10 do
        local c = connect(port)
        local id = c:id()
        assert.is_nil(seen[id])
        seen[id] = true
        list[#list + 1] = c
      end
      local first = list[1]
      local fid = first:id()
      for _, c in ipairs(list) do c:close() end
      assert(support.eventually(function() return ringline.metrics().conns_open == 0 end))
      local again = connect(port)
      local nid = again:id()
      again:close()
      lst:close()
      return fid ~= nid and not seen[nid]
    end)
    assert.is_true(ids)
  end)
end)

describe("ringline.connect", function()
  -- a port nobody listens on gives nil, "connection refused": listener_spec
  -- ("close stops accepting") checks exactly that

  it("works over a unix socket, and for \"localhost\"", function()
    local path = os.tmpname()
    os.remove(path)
    local got = run(function()
      local lst = assert(ringline.listen("unix:" .. path, function(c)
        c:send(c:receive("*l"), "\n")
      end))
      local c = assert(ringline.connect("unix:" .. path))
      c:send("over unix\n")
      local r = c:receive("*l")
      c:close()
      local lst2, port = server(function(c2) c2:send("hi\n") end)
      local c2 = assert(ringline.connect("localhost", port, { timeout = 2 }))
      local r2 = c2:receive("*l")
      c2:close()
      lst:close()
      lst2:close()
      return r .. "|" .. r2
    end)
    os.remove(path)
    assert.are.equal("over unix|hi", got)
  end)

  it("raises on misuse: bad port, bad host type, bad timeout", function()
    local r = run(function()
      return { (pcall(ringline.connect, "127.0.0.1", 70000)), (pcall(ringline.connect, 1, 80)),
               (pcall(ringline.connect, "127.0.0.1", 80, { timeout = "x" })) }
    end)
    assert.are.same({ false, false, false }, r)
  end)

  it('opts.timeout: a connect the peer never answers gives nil, "timeout"', function()
    local port, close_stuck = support.stuck_listener()
    local r = run(function()
      local conns, out = {}, nil
      for _ = 1, 8 do
        local t0 = ringline.now()
        local c, err = ringline.connect("127.0.0.1", port, { timeout = 0.2 })
        if not c then
          out = { err, ringline.now() - t0 }
          break
        end
        conns[#conns + 1] = c
      end
      for _, c in ipairs(conns) do c:close() end
      return out
    end)
    close_stuck()
    assert.are.equal("timeout", r[1])
    assert.is_true(r[2] >= 0.15 and r[2] < 5)
  end)

  it("a non-numeric host fails with an error string (resolution comes later)", function()
    local a, b = run(function() return ringline.connect("no-such-host.invalid", 80) end)
    assert.is_nil(a)
    assert.are.equal("string", type(b))
  end)
end)
