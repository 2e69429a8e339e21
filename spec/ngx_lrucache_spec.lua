-- Debian's lua-resty-lrucache, unchanged, under the ngx shim: both
-- implementations (resty.lrucache and resty.lrucache.pureffi) - set/get,
-- LRU eviction, TTL expiry through ngx.now, delete, count, capacity,
-- get_keys, flush_all. .ci/setup unpacks the package into build/deps/
-- (installing it would replace Debian's luajit with OpenResty's).
require "ringline.ngx"
local support = require "support"

local root = debug.getinfo(1, "S").source:match("^@(.*)/spec/[^/]+$") or "."
local dir = root .. "/build/deps/lrucache/usr/share/lua/5.1"
local f = io.open(dir .. "/resty/lrucache.lua")
assert(f, "lua-resty-lrucache is not unpacked in build/deps/lrucache: run bash .ci/setup")
f:close()
package.path = dir .. "/?.lua;" .. package.path

local function exercise(mod)
  local lrucache = require(mod)
  return support.run(function()
    local c = assert(lrucache.new(2))
    local out = {}
    c:set("a", 1)
    c:set("b", { x = 2 })
    out[#out + 1] = c:get("b").x
    out[#out + 1] = c:get("a")           -- a is now the most recently used
    c:set("c", 3)                    -- evicts the least recently used: b
    out[#out + 1] = c:get("b") == nil
    out[#out + 1] = c:get("c")
    c:set("t", "ttl", 0.01)           -- evicts a
    out[#out + 1] = c:get("t")
    ngx.sleep(0.03)
    local v, stale = c:get("t")
    out[#out + 1] = v == nil and stale == "ttl"
    c:delete("c")
    out[#out + 1] = c:get("c") == nil
    if c.count then
      c:set("k", 1)
      out[#out + 1] = c:count() >= 1 and c:capacity() == 2
    else
      out[#out + 1] = true
    end
    if c.get_keys then
      c:flush_all()
      c:set("k1", 1)
      out[#out + 1] = #c:get_keys() == 1
    else
      out[#out + 1] = true
    end
    c:flush_all()
    out[#out + 1] = c:get("k1") == nil
    return out
  end)
end

describe("lua-resty-lrucache (Debian's, unchanged) under ringline.ngx", function()
  for _, mod in ipairs({ "resty.lrucache", "resty.lrucache.pureffi" }) do
    it(mod, function()
      assert.are.same({ 2, 1, true, 3, "ttl", true, true, true, true, true }, exercise(mod))
    end)
  end
end)
