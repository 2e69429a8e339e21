-- ringline.resp: the reader fed a corpus of RESP and inline commands split
-- at every byte boundary and byte by byte (through a stand-in connection
-- whose view hands out what has "arrived"), its bounds and protocol errors
-- (answered with redis-server 7.0's words, then closed), a seeded mutation
-- fuzz against a reference parser, real connections, and the encoders'
-- exact bytes.
local ffi = require "ffi"
local ringline = require "ringline"
local resp = require "ringline.resp"
local support = require "support"

-- A connection stand-in: view(min) appends the next chunks until min bytes
-- are there (none left: nil, "closed", as at EOF); consume drops bytes;
-- send/close are recorded. views counts view calls (a parser that loops
-- without progress shows here, not as a hang).
local function fake(chunks)
  local c = { buf = "", i = 1, sent = {}, closed = false, views = 0 }
  function c:view(min)
    self.views = self.views + 1
    assert(self.views < 100000, "the reader does not progress")
    min = min or 1
    while #self.buf < min and self.i <= #chunks do
      self.buf = self.buf .. chunks[self.i]
      self.i = self.i + 1
    end
    if #self.buf < min then return nil, "closed" end
    return ffi.cast("const uint8_t *", self.buf), #self.buf
  end
  function c:consume(n)
    assert(n >= 0 and n <= #self.buf, "consumed more than was viewed")
    self.buf = self.buf:sub(n + 1)
    return true
  end
  function c:send(...)
    for _, v in ipairs({ ... }) do self.sent[#self.sent + 1] = v end
    return true
  end
  function c:close()
    self.closed = true
    return true
  end
  return c
end

-- Every command the reader gives for these chunks, then its error and the
-- protocol error's words; plus the connection stand-in.
local function read_all(chunks, opts)
  local c = fake(chunks)
  local r = resp.reader(c, opts)
  local cmds = {}
  while true do
    local cmd, err, why = r:read()
    if not cmd then return cmds, err, why, c end
    cmds[#cmds + 1] = cmd
  end
end

-- In a run (the reader reads the max_receive key).
local function in_run(fn)
  return support.run(fn)
end

-- The corpus: input, the commands it holds.
local CORPUS = {
  { "*1\r\n$4\r\nPING\r\n", { { "PING" } } },
  { "*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$5\r\nvalue\r\n", { { "SET", "key", "value" } } },
  { "*2\r\n$3\r\nGET\r\n$0\r\n\r\n", { { "GET", "" } } },
  { "*2\r\n$4\r\nECHO\r\n$6\r\na\r\nb\0c\r\n", { { "ECHO", "a\r\nb\0c" } } },  -- binary safe
  { "*0\r\n*-1\r\n*1\r\n$4\r\nPING\r\n", { { "PING" } } },                       -- no command
  { "*1\r\n$10\r\n0123456789\r\n", { { "0123456789" } } },
  { "*1\r\n$4\r\nPINGxx", { { "PING" } } },            -- redis skips the two bytes unseen
  { "PING\r\n", { { "PING" } } },
  { "PING\n", { { "PING" } } },
  { "\r\n\n  \r\nPING\r\n", { { "PING" } } },             -- empty lines: no command
  { "set  key\tvalue  \r\n", { { "set", "key", "value" } } },
  { "SET k \"a b\\x41\\n\\\"\"\r\n", { { "SET", "k", "a bA\n\"" } } },
  { "SET k 'it\\'s'\r\n", { { "SET", "k", "it's" } } },
  { "SET k ab\"c d\"\r\n", { { "SET", "k", "abc d" } } },   -- a quote inside a token
  { "SET k \"\"\r\n", { { "SET", "k", "" } } },
  { "a\vb \vc\r\n", { { "a\vb", "c" } } },                   -- \v starts no token, ends none
  { "*2\r\n$3\r\nGET\r\n$1\r\nk\r\nPING\r\n*1\r\n$4\r\nQUIT\r\n",
    { { "GET", "k" }, { "PING" }, { "QUIT" } } },
}

local function concat_corpus()
  local s, cmds = {}, {}
  for _, e in ipairs(CORPUS) do
    s[#s + 1] = e[1]
    for _, c in ipairs(e[2]) do cmds[#cmds + 1] = c end
  end
  return table.concat(s), cmds
end

describe("resp.reader", function()
  it("reads each command of the corpus, split at every byte boundary", function()
    in_run(function()
      for _, e in ipairs(CORPUS) do
        local input, want = e[1], e[2]
        for split = 0, #input do
          local cmds, err, _, c = read_all({ input:sub(1, split), input:sub(split + 1) })
          assert.are.same(want, cmds, ("%q split at %d"):format(input, split))
          assert.are.equal("closed", err)
          assert.are.same({}, c.sent)
        end
      end
    end)
  end)

  it("reads the whole corpus arriving in one piece, byte by byte, and in threes", function()
    in_run(function()
      local input, want = concat_corpus()
      local bytes, threes = {}, {}
      for i = 1, #input do bytes[i] = input:sub(i, i) end
      for i = 1, #input, 3 do threes[#threes + 1] = input:sub(i, i + 2) end
      for _, chunks in ipairs({ { input }, bytes, threes }) do
        local cmds, err = read_all(chunks)
        assert.are.same(want, cmds)
        assert.are.equal("closed", err)
      end
    end)
  end)

  it("pending() counts the commands parsed from one view", function()
    in_run(function()
      local c = fake({ "PING\r\nPING\r\nPING\r\nPI", "NG\r\n" })
      local r = resp.reader(c)
      assert.are.same({ "PING" }, r:read())
      assert.are.equal(2, r:pending())
      r:read()
      r:read()
      assert.are.equal(0, r:pending())
      assert.are.same({ "PING" }, r:read())
      assert.are.equal(0, r:pending())
    end)
  end)

  it("more commands than one batch in one buffer are all read", function()
    in_run(function()
      local cmds, err = read_all({ ("*1\r\n$4\r\nPING\r\n"):rep(2500) .. "ECHO x\r\n" })
      assert.are.equal(2501, #cmds)
      assert.are.same({ "ECHO", "x" }, cmds[2501])
      assert.are.equal("closed", err)
    end)
  end)

  -- Input, the commands before the error, redis-server's words (each
  -- checked against redis-server 7.0.15).
  local ERRORS = {
    { "*x\r\n", {}, "invalid multibulk length" },
    { "*-0\r\n", {}, "invalid multibulk length" },
    { "*01\r\n", {}, "invalid multibulk length" },
    { "*+1\r\n", {}, "invalid multibulk length" },
    { "*2147483648\r\n", {}, "invalid multibulk length" },
    { "*-9223372036854775809\r\n", {}, "invalid multibulk length" },   -- below the 64-bit range
    { "*-9223372036854775808\r\n*1\r\n$1\r\nx\r\n*1\r\n@\r\n", { { "x" } },
      "expected '$', got '@'" },                                        -- the least: no command
    { "*1\r\n$-1\r\n", {}, "invalid bulk length" },
    { "*1\r\n$x\r\n", {}, "invalid bulk length" },
    { "*1\r\n$01\r\n", {}, "invalid bulk length" },
    { "*1\r\n$99999999999999999999\r\n", {}, "invalid bulk length" },
    { "*1\r\n+4\r\n", {}, "expected '$', got '+'" },
    { "*1\r\n\r\n", {}, "expected '$', got ' '" },        -- CR/LF shown as a space
    { "*1\r\n\n\r\n", {}, "expected '$', got ' '" },
    { "PING \"a\r\n", {}, "unbalanced quotes in request" },
    { "PING \"a\"b\r\n", {}, "unbalanced quotes in request" },
    { "PING 'a\r\n", {}, "unbalanced quotes in request" },
    { "PING\r\n*1\r\n$4\r\nPING\r\n*1\r\n@", { { "PING" }, { "PING" } }, nil },   -- needs a CR first
    { "PING\r\n*1\r\n$4\r\nPING\r\n*1\r\n@\r\n", { { "PING" }, { "PING" } }, "expected '$', got '@'" },
  }

  it("answers a protocol error with redis-server's words after the commands before it, and closes", function()
    in_run(function()
      for _, e in ipairs(ERRORS) do
        local input, want, words = e[1], e[2], e[3]
        for split = 0, #input do
          local cmds, err, why, c = read_all({ input:sub(1, split), input:sub(split + 1) })
          local what = ("%q split at %d"):format(input, split)
          assert.are.same(want, cmds, what)
          if words then
            assert.are.equal("protocol error", err, what)
            assert.are.equal(words, why, what)
            assert.are.equal("-ERR Protocol error: " .. words .. "\r\n", table.concat(c.sent), what)
            assert.is_true(c.closed, what)
          else
            assert.are.equal("closed", err, what)
            assert.are.same({}, c.sent, what)
          end
        end
      end
    end)
  end)

  it("after a protocol error every read is nil, \"closed\"", function()
    in_run(function()
      local r = resp.reader(fake({ "*x\r\n" }))
      assert.are.same({ nil, "protocol error", "invalid multibulk length" }, { r:read() })
      assert.are.same({ nil, "closed" }, { r:read() })
    end)
  end)

  it("bounds: max_bulk_bytes, max_array_len, max_inline_bytes", function()
    in_run(function()
      local _, err, why = read_all({ "*1\r\n$11\r\n" }, { max_bulk_bytes = 10 })
      assert.are.same({ "protocol error", "invalid bulk length" }, { err, why })
      local cmds = read_all({ "*1\r\n$10\r\n0123456789\r\n" }, { max_bulk_bytes = 10 })
      assert.are.same({ { "0123456789" } }, cmds)
      _, err, why = read_all({ "*4\r\n" }, { max_array_len = 3 })
      assert.are.same({ "protocol error", "invalid multibulk length" }, { err, why })
      cmds = read_all({ "*3\r\n$1\r\na\r\n$1\r\nb\r\n$1\r\nc\r\n" }, { max_array_len = 3 })
      assert.are.same({ { "a", "b", "c" } }, cmds)
      -- a line without its end past max_inline_bytes
      local _, e1, w1 = read_all({ ("x"):rep(101) }, { max_inline_bytes = 100 })
      local _, e2, w2 = read_all({ "*" .. ("1"):rep(101) }, { max_inline_bytes = 100 })
      local _, e3, w3 = read_all({ "*1\r\n$" .. ("1"):rep(101) }, { max_inline_bytes = 100 })
      assert.are.same({ "protocol error", "too big inline request" }, { e1, w1 })
      assert.are.same({ "protocol error", "too big mbulk count string" }, { e2, w2 })
      assert.are.same({ "protocol error", "too big bulk count string" }, { e3, w3 })
      -- at the bound, a line that ends is read
      cmds = read_all({ ("x"):rep(99) .. "\n" }, { max_inline_bytes = 100 })
      assert.are.same({ { ("x"):rep(99) } }, cmds)
    end)
  end)

  it("the default max_bulk_bytes is max_receive (a bulk string must fit the window)", function()
    support.run(function()
      local r = resp.reader(fake({}))
      assert.are.equal(ringline.config("max_receive"), r.max_bulk)
      r = resp.reader(fake({}), { max_command_bytes = 4096 })
      assert.are.equal(4096, r.max_bulk)
    end)
    support.run(function()
      -- past 512 MiB (redis' proto-max-bulk-len) only when asked
      assert.are.equal(512 * 1048576, resp.reader(fake({})).max_bulk)
    end, { max_receive = 2 ^ 30 })
  end)

  it("raises on bad options, naming them", function()
    in_run(function()
      local c = fake({})
      assert.has_error(function() resp.reader(c, { max_bulk = 1 }) end,
        "ringline.resp: reader: unknown option max_bulk (max_bulk_bytes, max_array_len, max_inline_bytes, max_command_bytes)")
      assert.has_error(function() resp.reader(c, { max_array_len = 0 }) end)
      assert.has_error(function() resp.reader(c, { max_array_len = 1.5 }) end)
      assert.has_error(function() resp.reader(c, { max_bulk_bytes = 2000, max_command_bytes = 1000 }) end)
      assert.has_error(function() resp.reader(c, 5) end)
      assert.has_error(function() resp.reader(nil) end)
    end)
  end)
end)

------------------------------------------------------------------------
-- The fuzz
------------------------------------------------------------------------

-- string2ll, written out another way: optional '-', then "0" alone or no
-- leading zero, within [-2^63, 2^63 - 1]; the value (inexact past 2^53).
local function ref_ll(s)
  if s == "0" then return 0 end
  local sign, digits = s:match("^(%-?)([1-9]%d*)$")
  if not digits or #digits > 19 then return nil end
  local limit = sign == "-" and "9223372036854775808" or "9223372036854775807"
  if #digits == 19 and digits > limit then return nil end
  return tonumber(s)
end

-- The reference: what a whole input holds, parsed over a Lua string with
-- string.find (the inline split is the module's own, checked by the
-- corpus above). Returns the commands and the protocol error's words, or
-- nil when the input ends inside a command.
local function ref_parse(s, max_bulk, max_array)
  local cmds, i, n = {}, 1, #s
  while i <= n do
    if s:byte(i) == 42 then                              -- '*'
      local cr = s:find("\r", i, true)
      if not cr or cr == n then return cmds end
      local count = ref_ll(s:sub(i + 1, cr - 1))
      if not count or count > max_array then return cmds, "invalid multibulk length" end
      i = cr + 2
      if count > 0 then
        local cmd = {}
        for a = 1, count do
          local cr2 = s:find("\r", i, true)
          if not cr2 or cr2 == n then return cmds end
          local first = s:sub(i, i)
          if first ~= "$" then
            if first == "\r" or first == "\n" then first = " " end
            return cmds, "expected '$', got '" .. first .. "'"
          end
          local len = ref_ll(s:sub(i + 1, cr2 - 1))
          if not len or len < 0 or len > max_bulk then return cmds, "invalid bulk length" end
          i = cr2 + 2
          if n - i + 1 < len + 2 then return cmds end
          cmd[a] = s:sub(i, i + len - 1)
          i = i + len + 2
        end
        cmds[#cmds + 1] = cmd
      end
    else
      local lf = s:find("\n", i, true)
      if not lf then return cmds end
      local line = s:sub(i, lf - 1):gsub("\r$", "")
      local args = resp._split_inline(line)
      if not args then return cmds, "unbalanced quotes in request" end
      if #args > 0 then cmds[#cmds + 1] = args end
      i = lf + 1
    end
  end
  return cmds
end

describe("resp.reader under a seeded mutation fuzz", function()
  it("gives the reference's commands and error, never a Lua error or a hang", function()
    in_run(function()
      local seed = tonumber(os.getenv("RESP_FUZZ_SEED") or "12") or 12
      math.randomseed(seed)
      local rnd = math.random
      local inputs = {}
      for _, e in ipairs(CORPUS) do inputs[#inputs + 1] = e[1] end
      local MAX_BULK, MAX_ARRAY = 64, 16
      local opts = { max_bulk_bytes = MAX_BULK, max_array_len = MAX_ARRAY }
      local counts = { ok = 0, err = 0, partial = 0 }
      local t0 = os.clock()
      for iter = 1, 20000 do
        -- two or three corpus entries, then 1..4 mutations
        local parts = {}
        for k = 1, rnd(2, 3) do parts[k] = inputs[rnd(#inputs)] end
        local s = table.concat(parts)
        for _ = 1, rnd(4) do
          local at = rnd(#s)
          local how = rnd(3)
          if how == 1 then                                   -- flip: any byte
            s = s:sub(1, at - 1) .. string.char(rnd(0, 255)) .. s:sub(at + 1)
          elseif how == 2 then                               -- drop
            s = s:sub(1, at - 1) .. s:sub(at + 1)
          else                                               -- duplicate
            s = s:sub(1, at) .. s:sub(at)
          end
          if #s == 0 then s = "x" end
        end
        -- fed in random pieces
        local chunks, i = {}, 1
        while i <= #s do
          local k = rnd(1, 8)
          chunks[#chunks + 1] = s:sub(i, i + k - 1)
          i = i + k
        end
        local want, werr = ref_parse(s, MAX_BULK, MAX_ARRAY)
        local ok, cmds, err, why, c = pcall(read_all, chunks, opts)
        local what = ("seed %d, iteration %d: %q"):format(seed, iter, s)
        assert(ok, what .. ": " .. tostring(cmds))
        assert.are.same(want, cmds, what)
        if werr then
          assert.are.same({ "protocol error", werr }, { err, why }, what)
          assert.are.equal("-ERR Protocol error: " .. werr .. "\r\n", table.concat(c.sent), what)
          assert.is_true(c.closed, what)
          counts.err = counts.err + 1
        else
          assert.are.equal("closed", err, what)
          assert.are.same({}, c.sent, what)
          counts[#c.buf > 0 and "partial" or "ok"] = counts[#c.buf > 0 and "partial" or "ok"] + 1
        end
      end
      -- the mutations reach all three outcomes
      assert.is_true(counts.ok > 1000 and counts.err > 1000 and counts.partial > 500,
        ("ok %d, errors %d, partial %d"):format(counts.ok, counts.err, counts.partial))
      assert.is_true(os.clock() - t0 < 20, "the fuzz took too long")
    end)
  end)
end)

------------------------------------------------------------------------
-- Over real connections
------------------------------------------------------------------------

-- A server answering each command with the array of its arguments, the
-- replies to what one view held in one send; reads' ends go to `ends`.
local function echo_server(opts, ends)
  return support.server(function(conn)
    local r = resp.reader(conn, opts)
    local out = {}
    while true do
      local cmd, err, why = r:read()
      if not cmd then
        if ends then ends[#ends + 1] = { err, why } end
        return
      end
      out[#out + 1] = resp.array(cmd)
      if r:pending() == 0 then
        assert(conn:send(out))
        out = {}
      end
    end
  end)
end

describe("resp.reader on a connection", function()
  it("answers pipelined commands, then a protocol error, then closes", function()
    local got, ends = support.run(function()
      local ends = {}
      local lst, port = echo_server(nil, ends)
      local c = support.connect(port)
      c:settimeout(5000)
      assert(c:send("*2\r\n$4\r\nECHO\r\n$2\r\nhi\r\nPING\r\n*1\r\n$x\r\nPING\r\n"))
      local all, err = c:receive("*a")
      lst:close()
      assert(support.eventually(function() return #ends == 1 end))
      return { all, err }, ends
    end)
    assert.are.same({ "*2\r\n$4\r\nECHO\r\n$2\r\nhi\r\n*1\r\n$4\r\nPING\r\n"
      .. "-ERR Protocol error: invalid bulk length\r\n" }, got)
    assert.are.same({ { "protocol error", "invalid bulk length" } }, ends)
  end)

  it("reads a command dribbled a byte at a time", function()
    local got = support.run(function()
      local lst, port = echo_server()
      local c = support.connect(port)
      c:settimeout(5000)
      support.dribble(c, "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$3\r\nv\0v\r\n")
      local r = c:receive(#"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$3\r\nv\0v\r\n")
      lst:close()
      return r
    end)
    assert.are.equal("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$3\r\nv\0v\r\n", got)
  end)

  it("a command bigger than the window closes without a reply; a timeout keeps the partial command", function()
    local r1, r2 = support.run(function()
      local ends = {}
      local lst, port = echo_server({ max_command_bytes = 1024 }, ends)
      local c = support.connect(port)
      c:settimeout(5000)
      -- two bulks of 600: the command needs more than 1024 bytes at once
      assert(c:send("*2\r\n$600\r\n" .. ("a"):rep(600) .. "\r\n$600\r\n"))
      local all, err = c:receive("*a")
      c:close()
      assert(support.eventually(function() return #ends == 1 end))
      local first = { all, err, ends[1][1] }
      -- a read that times out half-way goes on where it stopped
      local step = support.event()
      local results = {}
      local lst2, port2 = support.server(function(conn)
        local r = resp.reader(conn)
        conn:settimeout(30)
        results[1] = { r:read() }           -- times out: half a command
        step.set()
        conn:settimeout(5000)
        results[2] = r:read()
        conn:send("+done\r\n")
      end)
      local c2 = support.connect(port2)
      c2:settimeout(5000)
      assert(c2:send("*2\r\n$4\r\nECHO\r\n$5\r\nhel"))
      step.wait()
      assert(c2:send("lo\r\n"))
      assert.are.equal("+done", c2:receive())
      lst:close()
      lst2:close()
      return first, results
    end)
    assert.are.same({ "", nil, "too large" }, { r1[1], r1[2], r1[3] })
    assert.are.same({ nil, "timeout" }, r2[1])
    assert.are.same({ "ECHO", "hello" }, r2[2])
  end)
end)

------------------------------------------------------------------------
-- Encoders
------------------------------------------------------------------------

-- What conn:send would put on the wire for a value.
local function wire(v)
  if type(v) == "string" then return v end
  local t = {}
  for i, x in ipairs(v) do t[i] = wire(x) end
  return table.concat(t)
end

describe("resp encoders", function()
  it("give redis' exact bytes", function()
    assert.are.equal("+OK\r\n", resp.simple("OK"))
    assert.are.equal("-ERR bad thing\r\n", resp.error("ERR bad thing"))
    assert.are.equal("-ERR a  b\r\n", resp.error("ERR a\r\nb"))          -- as redis: spaces
    assert.are.equal(":0\r\n", resp.integer(0))
    assert.are.equal(":-2\r\n", resp.integer(-2))
    assert.are.equal(":123456789012\r\n", resp.integer(123456789012))
    assert.are.equal(":-9223372036854775808\r\n", resp.integer(-2 ^ 63))
    assert.are.equal(":9223372036854775807\r\n", resp.integer(9223372036854775807LL))
    assert.are.equal(":18446744073709551615\r\n", resp.integer(18446744073709551615ULL))
    assert.are.equal("$5\r\nhello\r\n", wire(resp.bulk("hello")))
    assert.are.equal("$0\r\n\r\n", wire(resp.bulk("")))
    assert.are.equal("$2\r\n42\r\n", wire(resp.bulk(42)))
    assert.are.equal("$-1\r\n", resp.bulk(nil))
    assert.are.equal("$-1\r\n", resp.null)
    local big = ("x"):rep(5000)
    assert.are.equal("$5000\r\n" .. big .. "\r\n", wire(resp.bulk(big)))
    assert.are.equal("*0\r\n", wire(resp.array({})))
    assert.are.equal("*3\r\n$1\r\na\r\n$-1\r\n$1\r\n7\r\n", wire(resp.array({ "a", false, 7 })))
    assert.are.equal("*2\r\n$1\r\na\r\n$-1\r\n", wire(resp.array({ "a" }, 2)))
    assert.are.equal("*3\r\n:5\r\n$-1\r\n*1\r\n$1\r\nb\r\n",
      wire(resp.array({ { resp.integer(5) }, { resp.null }, resp.array({ "b" }) })))
  end)

  it("a long bulk string is not copied: its parts are sent as they are", function()
    local big = ("y"):rep(100000)
    local v = resp.bulk(big)
    assert.are.equal("table", type(v))
    assert.is_true(rawequal(v[2], big))
  end)

  it("raise on misuse, at the caller's line", function()
    assert.has_error(function() resp.simple("a\r\nb") end,
      "ringline.resp: simple: a simple string cannot hold CR or LF")
    assert.has_error(function() resp.simple(5) end)
    assert.has_error(function() resp.error(nil) end)
    assert.has_error(function() resp.integer(1.5) end)
    assert.has_error(function() resp.integer(2 ^ 63) end)
    assert.has_error(function() resp.integer("1") end)
    assert.has_error(function() resp.bulk({}) end)
    assert.has_error(function() resp.array("x") end)
    assert.has_error(function() resp.array({ true }) end)
    local ok, err = pcall(function() local v = resp.integer(0.5); return v end)
    assert.is_false(ok)
    assert.matches("resp_spec%.lua:%d+: ringline%.resp: integer", err)
  end)

  it("what they return conn:send takes", function()
    local got = support.run(function()
      local lst, port = support.server(function(conn)
        conn:send(resp.simple("OK"), resp.integer(7), resp.bulk(("z"):rep(300)),
                  resp.array({ "a", false }), resp.null, resp.error("ERR x"))
      end)
      local c = support.connect(port)
      c:settimeout(5000)
      local all = c:receive("*a")
      lst:close()
      return all
    end)
    assert.are.equal("+OK\r\n:7\r\n$300\r\n" .. ("z"):rep(300) .. "\r\n*2\r\n$1\r\na\r\n$-1\r\n"
      .. "$-1\r\n-ERR x\r\n", got)
  end)
end)
