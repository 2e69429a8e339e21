-- ringline.re: OpenResty's ngx.re on PCRE2. The documented examples of
-- lua-nginx-module's README (ngx.re.*) and lua-resty-core's ngx.re.split,
-- every option letter, named captures, replacement templates and
-- functions, errors, and the bound of the "o" cache.
local re = require "ringline.re"

describe("ringline.re.match", function()
  it("returns the documented capture tables", function()
    local m = re.match("hello, 1234", "[0-9]+")
    assert.are.same({ [0] = "1234" }, m)
    m = re.match("hello, 1234", "([0-9])[0-9]+")
    assert.are.same({ [0] = "1234", "1" }, m)
    m = re.match("hello, 1234", "([0-9])(?<remaining>[0-9]+)")
    assert.are.same({ [0] = "1234", "1", "234", remaining = "234" }, m)
    m = re.match("hello, world", "(world)|(hello)|(?<named>howdy)")
    assert.are.same({ [0] = "hello", false, "hello", false, named = false }, m)
    assert.is_nil(re.match("hello", "[0-9]+"))
  end)

  it("starts at ctx.pos and leaves it after the match", function()
    local ctx = { pos = 2 }
    local m = re.match("1234, hello", "[0-9]+", "", ctx)
    assert.are.equal("234", m[0])
    assert.are.equal(5, ctx.pos)
    ctx = {}
    m = re.match("1234, hello", "[0-9]+", "", ctx)
    assert.are.equal("1234", m[0])
    assert.are.equal(5, ctx.pos)
    assert.is_nil(re.match("abc", "c", "", { pos = 5 }))
  end)

  it("fills res_table when given", function()
    local res = {}
    local m = re.match("hello, 1234", "([0-9])[0-9]+", "jo", nil, res)
    assert.are.equal(res, m)
    assert.are.same({ [0] = "1234", "1" }, res)
  end)

  it("accepts a number as the subject", function()
    assert.are.equal("34", re.match(1234, "3.")[0])
  end)

  it("returns a compile error for a bad regex, raises for a bad flag", function()
    local m, err = re.match("abc", "(abc")
    assert.is_nil(m)
    assert.are.equal('failed to compile regex "(abc": missing closing parenthesis at offset 4', err)
    assert.has_error(function() re.match("abc", "a", "z") end,
      'match: unknown flag "z" (flags "z")')
    assert.has_error(function() re.match("abc", 3) end)
  end)
end)

describe("ringline.re option letters", function()
  it("i: caseless", function()
    assert.is_nil(re.match("HELLO", "hello"))
    assert.are.equal("HELLO", re.match("HELLO", "hello", "i")[0])
  end)
  it("x: extended (whitespace and comments ignored)", function()
    assert.is_nil(re.match("ab", "a b"))
    assert.are.equal("ab", re.match("ab", "a b # c", "x")[0])
  end)
  it("m: multiline", function()
    assert.is_nil(re.match("x\nyz", "^y"))
    assert.are.equal("y", re.match("x\nyz", "^y", "m")[0])
  end)
  it("s: dot matches newline", function()
    assert.is_nil(re.match("a\nb", "a.b"))
    assert.are.equal("a\nb", re.match("a\nb", "a.b", "s")[0])
  end)
  it("u: UTF-8 characters, checked; U: not checked", function()
    assert.are.equal("\xc3", re.match("\xc3\xa9", ".")[0])
    assert.are.equal("\xc3\xa9", re.match("\xc3\xa9", ".", "u")[0])
    assert.are.equal("\xc3\xa9", re.match("\xc3\xa9", ".", "U")[0])
    local m, err = re.match("\xff", ".", "u")
    assert.is_nil(m)
    assert.matches("^pcre2_match%(%) failed: UTF%-8 error", err)
  end)
  it("a: anchored at the start position", function()
    assert.are.equal("b", re.match("ab", "b")[0])
    assert.is_nil(re.match("ab", "b", "a"))
    assert.are.equal("b", re.match("ab", "b", "a", { pos = 2 })[0])
  end)
  it("d: DFA, the longest match", function()
    assert.are.equal("a", re.match("aaa", "a|aa|aaa")[0])
    assert.are.equal("aaa", re.match("aaa", "a|aa|aaa", "d")[0])
    assert.are.same({ [0] = "aaa" }, re.match("aaa", "(a)+", "d"))
  end)
  it("D: duplicate names give arrays", function()
    local m, err = re.match("hello, world", "(?<n>\\w+), (?<n>\\w+)")
    assert.is_nil(m)
    assert.matches("two named subpatterns have the same name", err)
    m = re.match("hello, world", "(?<n>\\w+), (?<n>\\w+)", "D")
    assert.are.same({ "hello", "world" }, m.n)
    assert.are.equal("hello", m[1])
  end)
  it("J: JavaScript escapes (\\u0041)", function()
    local m, err = re.match("A", "\\u0041")
    assert.is_nil(m)
    assert.is_string(err)
    assert.are.equal("A", re.match("A", "\\u0041", "J")[0])
  end)
  it("j and o: same answers, the pattern kept once per options string", function()
    local before = re.cache_count()
    for _ = 1, 3 do
      assert.are.same({ [0] = "1234#", "1" }, re.match("hello, 1234#once", "([0-9])[0-9]+#", "jo"))
    end
    assert.are.equal(before + 1, re.cache_count())
    re.match("x", "([0-9])[0-9]+#", "j")          -- no o: not cached
    assert.are.equal(before + 1, re.cache_count())
    re.match("x", "([0-9])[0-9]+#", "o")          -- other options: another entry
    assert.are.equal(before + 2, re.cache_count())
  end)
  it("o: the cache is bounded (regex_cache_max_entries)", function()
    local before = re.cache_count()
    re.opt("regex_cache_max_entries", before + 3)
    for i = 1, 10 do
      assert.are.equal("x", re.match("x", "x|bound" .. i, "o")[0])
    end
    assert.are.equal(before + 3, re.cache_count())
    re.opt("regex_cache_max_entries", 1024)
  end)
  it("opt: jit_stack_size", function()
    assert.is_true(re.opt("jit_stack_size", 128 * 1024))
    assert.are.equal("ab", re.match("ab", "(a|b)+", "jo")[0])
    assert.has_error(function() re.opt("nope", 1) end, "opt: unknown option 'nope'")
  end)
end)

describe("ringline.re.find", function()
  it("returns from, to (the nth capture with nth)", function()
    assert.are.same({ 8, 11 }, { re.find("hello, 1234", "([0-9]+)", "jo") })
    assert.are.same({ 8, 8 }, { re.find("hello, 1234", "([0-9])([0-9]+)", "jo", nil, 1) })
    assert.are.same({ 9, 11 }, { re.find("hello, 1234", "([0-9])([0-9]+)", "jo", nil, 2) })
    assert.is_nil(re.find("hello", "[0-9]+"))
    assert.is_nil((re.find("hello", "(x)?h", "", nil, 1)))
    local ctx = { pos = 9 }
    assert.are.same({ 9, 11 }, { re.find("hello, 1234", "[0-9]+", "", ctx) })
    assert.are.equal(12, ctx.pos)
    local a, b, err = re.find("x", "(")
    assert.is_nil(a); assert.is_nil(b); assert.is_string(err)
  end)
end)

describe("ringline.re.gmatch", function()
  it("iterates over the matches", function()
    local got = {}
    for m in re.gmatch("hello, world", "([a-z])[a-z]+", "i") do
      got[#got + 1] = m[0] .. "/" .. m[1]
    end
    assert.are.same({ "hello/h", "world/w" }, got)
    local it = re.gmatch("hello, world!", "[a-z]+")
    assert.are.equal("hello", it()[0])
    assert.are.equal("world", it()[0])
    assert.is_nil(it())
    assert.is_nil(it())
  end)
  it("steps over empty matches, by characters in u mode", function()
    local n = 0
    for m in re.gmatch("abc", "") do assert.are.equal("", m[0]); n = n + 1 end
    assert.are.equal(4, n)
    n = 0
    for _ in re.gmatch("\xc3\xa9\xc3\xa9", "", "u") do n = n + 1 end
    assert.are.equal(3, n)
  end)
  it("returns the compile error", function()
    local it, err = re.gmatch("x", "[")
    assert.is_nil(it)
    assert.matches("^failed to compile regex", err)
  end)
end)

describe("ringline.re.sub and gsub", function()
  it("expands $0, $1, ${1}, ${name} and $$", function()
    assert.are.same({ "hello, [12][1]34", 1 },
      { re.sub("hello, 1234", "([0-9])[0-9]", "[$0][$1]") })
    assert.are.same({ "hello, ${1}234", 1 }, { re.sub("hello, 1234", "[0-9]", "$${${0}}") })
    assert.are.same({ "hello, 100234", 1 }, { re.sub("hello, 1234", "[0-9]", "${0}00") })
    assert.are.same({ "hello, $234", 1 }, { re.sub("hello, 1234", "[0-9]", "$$") })
    assert.are.same({ "hello, [12][1]34", 1 }, { re.sub("hello, 1234", "( [0-9] ) [0-9]",
      function(m) return "[" .. m[0] .. "][" .. m[1] .. "]" end, "x") })
    assert.are.same({ "[hello,h], [world,w]", 2 },
      { re.gsub("hello, world", "([a-z])[a-z]+", "[$0,$1]", "i") })
    assert.are.same({ "<world>, <hello>", 1 },
      { re.sub("hello, world", "(?<a>\\w+), (?<b>\\w+)", "<${b}>, <${a}>") })
    assert.are.same({ "x-y", 1 }, { re.sub("x y", "(\\w) (?:(z)|\\w)", "$1-y$2") })
    assert.are.same({ "hello", 0 }, { re.gsub("hello", "[0-9]", "x") })
  end)
  it("calls a function with the capture table", function()
    local s, n = re.gsub("hello, world", "([a-z])[a-z]+", function(m)
      return "[" .. m[0] .. "," .. m[1] .. "]"
    end, "i")
    assert.are.equal("[hello,h], [world,w]", s)
    assert.are.equal(2, n)
    assert.are.equal("12", (re.gsub("ab", "[ab]", function(m) return m[0] == "a" and 1 or 2 end)))
    assert.has_error(function() re.gsub("ab", "a", function() return {} end) end)
  end)
  it("replaces empty matches between characters", function()
    assert.are.same({ "-a-b-c-", 4 }, { re.gsub("abc", "", "-") })
    assert.are.same({ "--b-", 3 }, { re.gsub("aab", "a*", "-") })   -- as Perl
  end)
  it("reports a bad template and a bad regex", function()
    assert.are.same({ nil, nil, "failed to compile the replacement template" },
      { re.sub("abc", "b", "${x") })
    assert.are.same({ nil, nil, "failed to compile the replacement template" },
      { re.sub("abc", "b", "x$") })
    local s, n, err = re.gsub("abc", "(", "x")
    assert.is_nil(s); assert.is_nil(n)
    assert.matches("^failed to compile regex", err)
  end)
end)

describe("ringline.re.split", function()
  it("splits as lua-resty-core's ngx.re.split", function()
    assert.are.same({ "a", "b", "c", "d" }, re.split("a,b,c,d", ","))
    assert.are.same({ "a", ",", "b", ",", "c", ",", "d" }, re.split("a,b,c,d", "(,)"))
    assert.are.same({ "a", "b", "c", "d", "e" }, re.split("a,b,c,d,e", "(;)|,"))
    assert.are.same({ "a", "b", "c", "d" }, re.split("abcd", ""))
    assert.are.same({ "c", "d" }, re.split("a,b,c,d", ",", nil, { pos = 5 }))
    assert.are.same({ "a", "b", "c,d" }, re.split("a,b,c,d", ",", nil, nil, 3))
    assert.are.same({ "a,b,c,d" }, re.split("a,b,c,d", ",", nil, nil, 1))
    assert.are.same({ "a", ",", "b", ",", "c,d,e" }, re.split("a,b,c,d,e", "(,)", nil, nil, 3))
    assert.are.same({ "a", "b", "c", "d" }, re.split("a,b,c,d", ",", nil, nil, -1))
    assert.are.same({ "", "a", "b", "c", "d" }, re.split(",a,b,c,d,", ","))
    assert.are.same({ "1", "2", "345" }, re.split("12345", "", "jo", nil, 3))
    assert.are.same({}, re.split("a,b,c,d,e", ",", nil, { pos = 10 }))
    assert.are.same({ "1", "451", "45" }, re.split(1234512345, "23", "jo"))
  end)
  it("reuses res with a trailing nil", function()
    local t = { "W", "X", "Y", "Z" }
    local r = re.split("a,b", ",", nil, nil, nil, t)
    assert.are.equal(t, r)
    assert.are.same({ "a", "b", nil, "Z" }, { r[1], r[2], r[3], r[4] })
  end)
  it("returns the compile error", function()
    local r, err = re.split("a", "(")
    assert.is_nil(r)
    assert.matches("^failed to compile regex", err)
  end)
end)

describe("ringline.re unloaded", function()
  -- Collected with its patterns (busted unloads modules between spec files,
  -- a Lua state closes): the library stays mapped for their finalizers.
  -- Crashed (SIGSEGV in the collector) before the library was pinned.
  it("frees its patterns after the library handle is collected, without crashing", function()
    local root = debug.getinfo(1, "S").source:match("^@(.*)/spec/[^/]+$") or "."
    local code = ([[
      package.path = %q .. "/lua/?.lua;" .. package.path
      do
        local re = require "ringline.re"
        local it = re.gmatch("abc", "b")
        re.match("abc", "(b)", "o")
        package.loaded["ringline.re"] = nil
      end
      collectgarbage(); collectgarbage()
      io.write("alive")
    ]]):format(root)
    local path = os.tmpname()
    local w = assert(io.open(path, "wb"))
    w:write(code)
    w:close()
    local f = assert(io.popen("luajit " .. path .. " 2>&1"))
    local out = f:read("*a")
    local ok, how, status = f:close()
    os.remove(path)
    assert.are.equal("alive", out)
    assert.is_true(ok, tostring(how) .. " " .. tostring(status))
  end)
end)
