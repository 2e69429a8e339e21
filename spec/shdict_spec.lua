-- ringline.shared: OpenResty's ngx.shared.DICT across the workers of one
-- process. In-process cases use dictionaries opened with
-- ringline.configure{ shared_dicts = ... }; the host cases run two workers
-- that see the same dictionary (expiry on a clock is checked in C, in
-- core/test/test_shdict.c, with an injected clock).
local ffi = require "ffi"
local ringline = require "ringline"

local root = debug.getinfo(1, "S").source:match("^@(.*)/spec/[^/]+$") or "."
if root:sub(1, 1) ~= "/" then root = os.getenv("PWD") .. "/" .. root end
local proc = dofile(root .. "/bindings/test/proc.lua")
local build = os.getenv("RINGLINE_BUILD") or (root .. "/build")
local host = build .. "/bindings/ringline-lua"

-- A dictionary of this process, opened through ringline.configure.
local function dict(name, size)
  ringline.run({ shared_dicts = { [name] = size or "1m" } }, function() end)
  local d = ringline.shared[name]
  assert(d, name)
  d:flush_all()
  d:flush_expired()
  return d
end

describe("ringline.shared", function()
  it("stores strings, numbers and booleans with flags; nil deletes", function()
    local d = dict("spec_values")
    assert.are.same({ true, nil, false }, { d:set("s", "hello") })
    assert.are.same({ "hello" }, { d:get("s") })
    assert.is_true((d:set("n", 3.25, 0, 42)))
    assert.are.same({ 3.25, 42 }, { d:get("n") })
    assert.is_true((d:set("t", true)))
    assert.is_true((d:set("f", false)))
    assert.is_true(d:get("t"))
    assert.is_false(d:get("f"))
    assert.are.equal(("x"):rep(100000), (d:set("big", ("x"):rep(100000))) and d:get("big"))
    assert.is_true((d:set("s", nil)))
    assert.is_nil(d:get("s"))
    assert.is_true((d:delete("n")))
    assert.is_nil(d:get("n"))
    assert.are.same({ nil, "bad value type" }, { d:set("x", {}) })
    assert.are.same({ nil, "nil key" }, { d:get(nil) })
    assert.are.same({ nil, "empty key" }, { d:get("") })
    assert.are.same({ nil, "key too long" }, { d:set(("k"):rep(65536), 1) })
    assert.is_true((d:set(12, "num key")))
    assert.are.equal("num key", d:get("12"))
    assert.has_error(function() d.get("s") end, 'bad "zone" argument')
    assert.has_error(function() d:set("a", 1, -1) end, 'bad "exptime" argument')
  end)

  it("add, replace, safe_add and safe_set follow OpenResty's rules", function()
    local d = dict("spec_ops")
    assert.are.same({ true, nil, false }, { d:add("k", 1) })
    assert.are.same({ false, "exists", false }, { d:add("k", 2) })
    assert.are.same({ false, "exists", false }, { d:safe_add("k", 2) })
    assert.are.same({ false, "not found", false }, { d:replace("nope", 2) })
    assert.are.same({ true, nil, false }, { d:replace("k", "two") })
    assert.are.equal("two", d:get("k"))
    assert.are.same({ true, nil, false }, { d:safe_set("k", "three") })
  end)

  it("incr: init, init_ttl, not found, not a number", function()
    local d = dict("spec_incr")
    assert.are.same({ nil, "not found", false }, { d:incr("c", 1) })
    assert.are.same({ 11, nil, false }, { d:incr("c", 1, 10) })
    assert.are.same({ 8.5, nil, false }, { d:incr("c", -2.5, 100) })
    assert.are.equal(0, d:ttl("c"))
    assert.are.same({ 1, nil, false }, { d:incr("t", 1, 0, 100) })
    local ttl = d:ttl("t")
    assert.is_true(ttl > 99 and ttl <= 100, tostring(ttl))
    d:set("s", "str")
    assert.are.same({ nil, "not a number", false }, { d:incr("s", 1) })
    assert.are.same({ nil, "value not a number" }, { d:incr("c", "x") })
    assert.has_error(function() d:incr("c", 1, nil, 10) end,
      'must provide "init" when providing "init_ttl"')
  end)

  it("lists: lpush/rpush/lpop/rpop/llen", function()
    local d = dict("spec_lists")
    assert.are.equal(0, d:llen("q"))
    assert.is_nil(d:lpop("q"))
    assert.are.equal(1, d:rpush("q", "b"))
    assert.are.equal(2, d:lpush("q", "a"))
    assert.are.equal(3, d:rpush("q", 3))
    assert.are.equal(3, d:llen("q"))
    assert.are.same({ nil, "value is a list" }, { d:get("q") })
    assert.are.same({ nil, "bad value type" }, { d:lpush("q", true) })
    assert.are.equal("a", d:lpop("q"))
    assert.are.equal(3, d:rpop("q"))
    assert.are.equal("b", d:rpop("q"))
    assert.is_nil(d:rpop("q"))
    assert.are.equal(0, d:llen("q"))
    d:set("s", "x")
    assert.are.same({ nil, "value not a list" }, { d:lpush("s", 1) })
    assert.are.same({ nil, "value not a list" }, { d:lpop("s") })
    assert.are.same({ nil, "value not a list" }, { d:llen("s") })
    local long = ("y"):rep(20000)      -- bigger than the copy buffer
    d:rpush("big", long)
    assert.are.equal(long, d:lpop("big"))
  end)

  it("ttl, expire, flush_all, get_stale, flush_expired, get_keys", function()
    local d = dict("spec_ttl")
    d:set("a", "1", 50)
    d:set("b", "2")
    local ttl = d:ttl("a")
    assert.is_true(ttl > 49 and ttl <= 50, tostring(ttl))
    assert.are.equal(0, d:ttl("b"))
    assert.are.same({ nil, "not found" }, { d:ttl("zz") })
    assert.is_true(d:expire("b", 10))
    assert.is_true(d:ttl("b") > 9)
    assert.is_true(d:expire("b", 0))
    assert.are.equal(0, d:ttl("b"))
    assert.are.same({ nil, "not found" }, { d:expire("zz", 1) })
    local keys = d:get_keys()
    table.sort(keys)
    assert.are.same({ "a", "b" }, keys)
    assert.are.equal(1, #d:get_keys(1))
    d:flush_all()
    assert.is_nil(d:get("a"))
    assert.are.same({ "1", nil, true }, { d:get_stale("a") })
    assert.are.same({}, d:get_keys(0))
    assert.are.equal(2, d:flush_expired())
    assert.is_nil(d:get_stale("a"))
    assert.are.equal(d:capacity(), d:free_space())
  end)

  it("evicts the least recently used when full (forcible); safe_set says no memory", function()
    local d = dict("spec_evict", "16k")
    assert.are.equal(16384, d:capacity())
    local v = ("v"):rep(500)
    local forced = 0
    for i = 1, 100 do
      local ok, err, forcible = d:set("k" .. i, v)
      assert.is_true(ok, err)
      if forcible then forced = forced + 1 end
    end
    assert.is_true(forced > 50, forced)
    assert.are.equal(v, d:get("k100"))
    assert.is_nil(d:get("k1"))
    assert.are.same({ false, "no memory", false }, { d:safe_set("new", v) })
    assert.are.same({ false, "no memory", false }, { d:safe_add("new", v) })
    assert.are.same({ false, "no memory", false }, { d:set("huge", ("h"):rep(20000)) })
    assert.are.equal(v, d:get("k100"))
  end)

  it("is one object per name; unknown names are nil; the table is read-only", function()
    local d = dict("spec_same")
    assert.are.equal(d, ringline.shared.spec_same)
    assert.is_nil(ringline.shared.no_such_dict)
    -- the module is the table (ngx.shared = require "ringline.shdict"): only dictionaries
    assert.are.equal(ringline.shared, require "ringline.shdict")
    assert.is_nil(ringline.shared.check)
    assert.is_nil(ringline.shared.methods)
    assert.has_error(function() ringline.shared.x = 1 end)
    assert.matches("^shdict: spec_same$", tostring(d))
  end)

  it("is ngx.shared under the ngx shim (and ngx.re is ringline.re)", function()
    local d = dict("spec_ngx")
    require "ringline.ngx"
    assert.are.equal(d, ngx.shared.spec_ngx)
    assert.is_true((ngx.shared.spec_ngx:set("k", "v")))
    assert.are.equal("v", d:get("k"))
    assert.is_nil(ngx.shared.no_such_dict)
    assert.are.equal("1234", ngx.re.match("hello, 1234", "[0-9]+", "jo")[0])
  end)

  it("configure rejects bad names and sizes, and another size for a name", function()
    ringline.run(function()
      assert.has_error(function() ringline.configure{ shared_dicts = { ["bad name"] = "1m" } } end,
        "ringline.configure: shared_dicts: bad dictionary name 'bad name' (1-63 of A-Z a-z 0-9 _)")
      assert.has_error(function() ringline.configure{ shared_dicts = { x = "10q" } } end,
        "ringline.configure: shared_dicts: x: bad size '10q'")
      assert.has_error(function() ringline.configure{ shared_dicts = { x = "1k" } } end,
        "ringline.configure: shared_dicts: x: size 1k out of range (16k..64g)")
      assert.has_error(function() ringline.configure{ shared_dicts = "x" } end,
        "ringline.configure: shared_dicts: expected a table of name = size")
      ringline.configure{ shared_dicts = { spec_sz = "64k" } }
      ringline.configure{ shared_dicts = { spec_sz = 65536 } }   -- the same: fine
      assert.has_error(function() ringline.configure{ shared_dicts = { spec_sz = "128k" } } end,
        "ringline.configure: shared_dicts: spec_sz: exists with another size")
    end)
  end)
end)

describe("ringline.shared across workers (host)", function()
  local tmp = {}
  local function script(text)
    local path = os.tmpname() .. ".lua"
    local f = assert(io.open(path, "wb"))
    f:write(text)
    f:close()
    tmp[#tmp + 1] = path
    return path
  end
  teardown(function() for _, p in ipairs(tmp) do os.remove(p) end end)

  it("a value set in one worker is read in the other; incr from both sums exactly", function()
    local s = script [[
      local ffi = require "ffi"
      local ringline = require "ringline"
      ringline.configure{ shared_dicts = { conf = "256k" } }
      local id = ringline.worker_id()
      local hd, conf = ringline.shared.hd, ringline.shared.conf
      -- ringline.re in every worker too (CI runs this under ASan's leak check)
      local re = require "ringline.re"
      assert(re.match("worker " .. id, "([0-9]+)$", "jo")[1] == tostring(id))
      assert(re.gsub("a-b", "-", "+") == "a+b")
      print(("addr %d %s %s"):format(id, tostring(ffi.cast("uintptr_t", hd)),
        tostring(ffi.cast("uintptr_t", conf))))
      local got = ringline.semaphore(0)
      local msg
      ringline.worker.on_message(function(_, m) msg = m; got:post() end)
      for _ = 1, 20000 do assert(conf:incr("n", 1, 0)) end
      if id == 0 then
        assert(hd:set("greeting", "from worker 0", 0, 7))
        assert(ringline.worker.post(1, "go"))
        assert(got:wait(20))
        print("sum " .. conf:get("n") .. " " .. msg)
      else
        assert(got:wait(20))
        local v, flags = hd:get("greeting")
        print(("read %s %s"):format(v, flags))
        assert(hd:set("reply", "from worker 1"))
        assert(ringline.worker.post(0, hd:get("reply")))
      end
    ]]
    local code, out, err = proc.run(proc.quote(host) .. " -w 2 --no-pin --shared-dict hd=1m " .. s)
    assert.are.equal(0, code, err)
    assert.matches("read from worker 0 7\n", out, 1, true)
    assert.matches("sum 40000 from worker 1\n", out, 1, true)
    local a0 = out:match("addr 0 ([^\n]+)")
    local a1 = out:match("addr 1 ([^\n]+)")
    assert.is_string(a0)
    assert.are.equal(a0, a1)
  end)

  it("rejects bad --shared-dict values with status 2", function()
    local s = script "print('ran')"
    for _, bad in ipairs({ "nosize", "x=10q", "x=1k", "bad-name=1m", "=1m" }) do
      local code, out, err = proc.run(proc.quote(host) .. " --shared-dict " .. bad .. " " .. s)
      assert.are.equal(2, code, bad)
      assert.are.equal("", out)
      assert.matches("--shared-dict", err, 1, true)
    end
    local code, _, err = proc.run(proc.quote(host) .. " --shared-dict a=1m --shared-dict a=2m " .. s)
    assert.are.equal(2, code)
    assert.matches("given with another size", err, 1, true)
    code = proc.run(proc.quote(host) .. " --shared-dict a=1m --shared-dict=a=1m " .. s)
    assert.are.equal(0, code)
  end)
end)
