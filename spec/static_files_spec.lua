-- examples/static_files.lua, run by the built host on a free port over a
-- directory of test files (empty up to a few MiB: sendfile, and the region
-- cache for hot small ones); fetched byte-exact by clients written with the
-- Lua API (ringline.connect inside ringline.run), plus curl as the start-up
-- line suggests.
local root = debug.getinfo(1, "S").source:match("^@(.*)/spec/[^/]+$") or "."
if root:sub(1, 1) ~= "/" then root = os.getenv("PWD") .. "/" .. root end
package.path = ("%s/lua/?.lua;%s/lua/?/init.lua;%s/bindings/?.lua;%s/spec/?.lua;"):format(
  root, root, root, root) .. package.path
local support = require "support"
local ex = dofile(root .. "/spec/example_host.lua")(root)
local proc, client, stop_cleanly = ex.proc, ex.client, ex.stop_cleanly

local FILES = {
  ["empty.txt"] = "",
  ["small.txt"] = "hello, static world\n",
  ["page.html"] = "<p>" .. ("ringline "):rep(2000) .. "</p>\n",
  ["medium.bin"] = support.pattern(100000, 3),
  ["large.bin"] = support.pattern(3 * 1048576 + 7, 4),
}

local function write(path, data)
  local f = assert(io.open(path, "wb"))
  f:write(data)
  f:close()
end

local function make_dir()
  local dir = os.tmpname()
  os.remove(dir)
  os.execute("mkdir -p " .. proc.quote(dir .. "/subdir"))
  for name, data in pairs(FILES) do write(dir .. "/" .. name, data) end
  return dir
end

-- One response from c: status, headers (lower-case names), body.
local function response(c, head_only)
  local status = assert(c:receive("*l"))
  local hdrs = {}
  while true do
    local l = assert(c:receive("*l"))
    if l == "" then break end
    local k, v = l:match("^([^:]+):%s*(.*)$")
    hdrs[k:lower()] = v
  end
  local n = tonumber(hdrs["content-length"] or "0")
  local body = ""
  if n > 0 and not head_only then body = assert(c:receive(n)) end
  return tonumber(status:match("^HTTP/1%.1 (%d+)")), hdrs, body
end

local function get(c, path, method)
  assert(c:send(("%s %s HTTP/1.1\r\nHost: t\r\n\r\n"):format(method or "GET", path)))
  return response(c, method == "HEAD")
end

for _, cache in ipairs({ "32", "0" }) do
  describe("examples/static_files.lua (STATIC_CACHE=" .. cache .. ")", function()
    local srv, port, hint, dir
    setup(function()
      dir = make_dir()
      srv, port, hint = ex.start("static_files", "STATIC_CACHE=" .. cache, proc.quote(dir), true)
    end)
    teardown(function()
      if srv and not srv.code then srv:stop("KILL") end
      if dir then os.execute("rm -rf " .. proc.quote(dir)) end
    end)

    it("says how to try it", function()
      assert.matches("curl http://127.0.0.1:" .. port .. "/", hint, 1, true)
    end)

    it("serves every file byte-exact, three times each on one connection", function()
      client(port, function(c)
        for _ = 1, 3 do   -- the third time the small ones come from the cache
          for name, data in pairs(FILES) do
            local code, h, body = get(c, "/" .. name)
            assert.are.equal(200, code)
            assert.are.equal(#data, tonumber(h["content-length"]))
            assert.is_true(body == data, name .. " differs")
          end
        end
        local code, h = get(c, "/page.html", "HEAD")
        assert.are.equal(200, code)
        assert.are.equal(#FILES["page.html"], tonumber(h["content-length"]))
        assert.matches("text/html", h["content-type"])
      end)
    end)

    it("lists the directory at /, refuses what is not a file", function()
      client(port, function(c)
        local code, _, body = get(c, "/")
        assert.are.equal(200, code)
        assert.are.equal("empty.txt\nlarge.bin\nmedium.bin\npage.html\nsmall.txt\n", body)
        assert.are.equal(404, (get(c, "/missing")))
        assert.are.equal(404, (get(c, "/subdir")))
        assert.are.equal(404, (get(c, "/../etc/passwd")))
        assert.are.equal(404, (get(c, "/.hidden")))
        assert.are.equal(405, (get(c, "/small.txt", "DELETE")))
      end)
    end)

    it("serves a file changed after it was cached as it is now", function()
      client(port, function(c)
        for _ = 1, 3 do assert.are.equal(FILES["small.txt"], select(3, get(c, "/small.txt"))) end
        write(dir .. "/small.txt", "changed, and longer than before\n")
        assert.are.equal("changed, and longer than before\n", select(3, get(c, "/small.txt")))
        write(dir .. "/small.txt", FILES["small.txt"])
      end)
    end)

    it("answers curl", function()
      local p = io.popen(("unset LD_PRELOAD; curl -s http://127.0.0.1:%d/medium.bin | cksum"):format(port))
      local out = p:read("*a")
      p:close()
      local p2 = io.popen("cksum < " .. proc.quote(dir .. "/medium.bin"))
      local want = p2:read("*a")
      p2:close()
      assert.are.equal(want, out)
    end)

    it("stops with status 0 on SIGTERM", function() stop_cleanly(srv) end)
  end)
end
