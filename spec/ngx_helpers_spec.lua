-- ngx's helpers (ringline.ngx.string, .time, init.lua): encodings and
-- digests against known vectors, URI and argument helpers, time formats,
-- ngx.log onto ringline.log, ngx.say outside a request, ngx.null,
-- ngx.config, the modules libraries require by name, and the lazy ngx.re
-- and ngx.shared.
local ngx = require "ringline.ngx"
local ringline = require "ringline"
local log = require "ringline.log"
local support = require "support"

describe("ngx helpers", function()
  it("installs the global once", function()
    assert.are.equal(ngx, _G.ngx)
    assert.are.equal(ngx, require("ringline.ngx"))
  end)

  it("base64 (with and without padding), ngx.base64's URL form", function()
    assert.are.equal("aGVsbG8=", ngx.encode_base64("hello"))
    assert.are.equal("aGVsbG8", ngx.encode_base64("hello", true))
    assert.are.equal("", ngx.encode_base64(""))
    assert.are.equal("hello", ngx.decode_base64("aGVsbG8="))
    assert.are.equal("hello", ngx.decode_base64("aGVsbG8"))
    assert.are.equal("\0\1\2\255", ngx.decode_base64(ngx.encode_base64("\0\1\2\255")))
    assert.is_nil(ngx.decode_base64("a"))
    assert.is_nil(ngx.decode_base64("aGV$bG8="))
    local b64 = require "ngx.base64"
    assert.are.equal("_-8", b64.encode_base64url("\255\239"))
    assert.are.equal("\255\239", b64.decode_base64url("_-8"))
    assert.are.same({ nil, "invalid input" }, { b64.decode_base64url("a+b") })
  end)

  it("md5, md5_bin, sha1_bin, hmac_sha1, crc32 (RFC and zlib vectors)", function()
    assert.are.equal("d41d8cd98f00b204e9800998ecf8427e", ngx.md5(""))
    assert.are.equal("5d41402abc4b2a76b9719d911017c592", ngx.md5("hello"))
    assert.are.equal(16, #ngx.md5_bin("x"))
    assert.are.equal("qZk+NkcGgWq6PiVxeFDCbJzQ2J0=", ngx.encode_base64(ngx.sha1_bin("abc")))
    assert.are.equal("3nybhbi3iqa8ino29wqQcBydtNk=",
      ngx.encode_base64(ngx.hmac_sha1("key", "The quick brown fox jumps over the lazy dog")))
    assert.are.equal(0xCBF43926, ngx.crc32_long("123456789"))
    assert.are.equal(0xCBF43926, ngx.crc32_short("123456789"))
    assert.are.equal(0, ngx.crc32_short(""))
  end)

  it("escape_uri, unescape_uri, encode_args, decode_args, quote_sql_str", function()
    assert.are.equal("a%20b%2Fc%3Fd~._-", ngx.escape_uri("a b/c?d~._-"))
    assert.are.equal("/a%20b/c?", ngx.escape_uri("/a b/c?", 0):gsub("%%3F", "?"))
    assert.are.equal("b r56 7", ngx.unescape_uri("b%20r56+7"))
    assert.are.equal("%zz", ngx.unescape_uri("%zz"))
    assert.are.equal("a=1&a=2&b%20r=hello%20world&foo=3&t",
      ngx.encode_args({ foo = 3, ["b r"] = "hello world", t = true, f = false, a = { 1, 2 } }))
    assert.are.same({ a = { "1", "2" }, b = "x y", c = true, d = "" }, ngx.decode_args("a=1&a=2&b=x+y&c&d="))
    assert.are.same({ a = "1" }, ngx.decode_args("a=1&b=2", 1))
    assert.are.equal([['a\'b\"c\\d\n\r\t\Z\0']], ngx.quote_sql_str("a'b\"c\\d\n\r\t\26\0"))
  end)

  it("time formats and parse_http_time (the three HTTP date forms)", function()
    assert.are.equal("Thu, 18 Nov 2010 11:27:35 GMT", ngx.http_time(1290079655))
    assert.are.equal("Thu, 18-Nov-10 11:27:35 GMT", ngx.cookie_time(1290079655))
    assert.are.equal(1290079655, ngx.parse_http_time("Thu, 18 Nov 2010 11:27:35 GMT"))
    assert.are.equal(784111777, ngx.parse_http_time("Sunday, 06-Nov-94 08:49:37 GMT"))
    assert.are.equal(784111777, ngx.parse_http_time("Sun Nov  6 08:49:37 1994"))
    assert.is_nil(ngx.parse_http_time("yesterday"))
    local now = ngx.now()
    assert.is_true(math.abs(now - os.time()) < 2)
    assert.are.equal(now * 1000, math.floor(now * 1000 + 0.5))   -- milliseconds
    assert.are.equal(math.floor(ngx.time()), ngx.time())
    assert.matches("^%d%d%d%d%-%d%d%-%d%d$", ngx.today())
    assert.matches("^%d%d%d%d%-%d%d%-%d%d %d%d:%d%d:%d%d$", ngx.localtime())
    assert.matches("^%d%d%d%d%-%d%d%-%d%d %d%d:%d%d:%d%d$", ngx.utctime())
    assert.is_nil(ngx.update_time())
  end)

  it("ngx.log writes to ringline's log with nginx's levels; bad levels raise", function()
    local lines = {}
    local old = log.set_sink(function(l) lines[#lines + 1] = l end)
    local ok, err = pcall(function()
      ngx.log(ngx.ERR, "boom ", 42, " ", nil, " ", ngx.null)
      ngx.log(ngx.CRIT, "crit")
      ngx.log(ngx.DEBUG, "hidden")      -- below the default threshold (INFO)
    end)
    log.set_sink(old)
    assert(ok, err)
    assert.are.equal(2, #lines)
    assert.matches("boom 42 nil null", lines[1], 1, true)
    assert.matches("crit", lines[2], 1, true)
    assert.has_error(function() ngx.log(9, "x") end, "ngx.log: bad log level 9")
    assert.are.same({ 0, 1, 2, 3, 4, 5, 6, 7, 8 },
      { ngx.STDERR, ngx.EMERG, ngx.ALERT, ngx.CRIT, ngx.ERR, ngx.WARN, ngx.NOTICE, ngx.INFO, ngx.DEBUG })
  end)

  it("ngx.say/print outside a request write to stdout", function()
    local got = {}
    local real = io.stdout
    local fake = { write = function(_, s) got[#got + 1] = s end, flush = function() end }
    io.stdout = fake
    local ok, err = pcall(function()
      assert.are.equal(1, ngx.say("a", 1, true, nil, { "b", { "c" } }, ngx.null))
      assert.are.equal(1, ngx.print("x"))
      assert.are.equal(1, ngx.flush())
    end)
    io.stdout = real
    assert(ok, err)
    assert.are.same({ "a1truenilbcnull\n", "x" }, got)
    assert.has_error(function() ngx.say(function() end) end)
  end)

  it("ngx.null is cjson's; ngx.config; table.new/clear", function()
    assert.are.equal(require("cjson").null, ngx.null)
    assert.are.equal("http", ngx.config.subsystem)
    assert.is_number(ngx.config.ngx_lua_version)
    assert.is_false(ngx.config.debug)
    assert.matches("/$", ngx.config.prefix())
    local t = require("table.new")(4, 4)
    t[1], t.x = 1, 2
    require("table.clear")(t)
    assert.is_nil(next(t))
  end)

  it("ngx.semaphore: new, post, wait (true / nil, \"timeout\"), count", function()
    local r = { support.run(function()
      local sem = require("ngx.semaphore").new(1)
      local a = sem:wait(0)
      local b, e = sem:wait(0.01)
      ringline.spawn(function() sem:post(2) end)
      local c = sem:wait(1)
      return a, b, e, c, sem:count()
    end) }
    assert.are.same({ true, nil, "timeout", true, 1 }, r)
  end)

  it("ngx.re and ngx.shared come from ringline.re / ringline.shdict; absent, they name the call", function()
    local saved_re, saved_sh = rawget(ngx, "re"), rawget(ngx, "shared")
    local p_re, p_sh = package.preload["ringline.re"], package.preload["ringline.shdict"]
    local l_re, l_sh = package.loaded["ringline.re"], package.loaded["ringline.shdict"]
    rawset(ngx, "re", nil)
    rawset(ngx, "shared", nil)
    package.loaded["ringline.re"], package.loaded["ringline.shdict"] = nil, nil
    package.preload["ringline.re"] = function() error("gone") end
    package.preload["ringline.shdict"] = function() error("gone") end
    local e1 = select(2, pcall(function() return ngx.re.match("a", "a") end))
    local e2 = select(2, pcall(function() return ngx.shared.cache end))
    -- present: the module's table is ngx.re
    rawset(ngx, "re", nil)
    package.loaded["ringline.re"] = nil      -- the failed load's mark
    local fake = { match = function() return { "m" } end }
    package.preload["ringline.re"] = function() return fake end
    local m = ngx.re.match("a", "a")
    rawset(ngx, "re", saved_re)
    rawset(ngx, "shared", saved_sh)
    package.preload["ringline.re"], package.preload["ringline.shdict"] = p_re, p_sh
    package.loaded["ringline.re"], package.loaded["ringline.shdict"] = l_re, l_sh
    assert.matches("ngx.re.match: not available: ngx.re is provided by ringline.re", e1, 1, true)
    assert.matches("ngx.shared.cache: not available: ngx.shared is provided by ringline.shdict", e2, 1, true)
    assert.are.same({ "m" }, m)
  end)

  it("what cannot be mapped raises, naming the function", function()
    assert.has_error(function() ngx.location.capture("/x") end,
      "ngx.location.capture: not supported by ringline (no subrequests)")
    assert.has_error(function() ngx.exec("/x") end, "ngx.exec: not supported by ringline (no internal redirects)")
  end)
end)
