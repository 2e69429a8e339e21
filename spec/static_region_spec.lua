-- examples/static_region.lua, run by the built host on a free port over a
-- directory of test files (sizes around the zero-copy threshold up to a few
-- MiB), in both modes; fetched byte-exact by clients written with the Lua
-- API (ringline.connect inside ringline.run), plus curl as the start-up
-- line suggests.
local root = debug.getinfo(1, "S").source:match("^@(.*)/spec/[^/]+$") or "."
if root:sub(1, 1) ~= "/" then root = os.getenv("PWD") .. "/" .. root end
package.path = ("%s/lua/?.lua;%s/lua/?/init.lua;%s/bindings/?.lua;%s/spec/?.lua;"):format(
  root, root, root, root) .. package.path
local ringline = require "ringline"
local support = require "support"
local ex = dofile(root .. "/spec/example_host.lua")(root)
local proc, host, client, stop_cleanly = ex.proc, ex.host, ex.client, ex.stop_cleanly

-- The test directory: name -> content.
local FILES = {
  ["empty.txt"] = "",
  ["one.txt"] = "x",
  ["small.txt"] = "hello, static world\n",
  ["below.bin"] = support.pattern(4095, 1),
  ["at.bin"] = support.pattern(4096, 2),
  ["page.html"] = "<p>" .. ("ringline "):rep(2000) .. "</p>\n",
  ["medium.bin"] = support.pattern(100000, 3),
  ["large.bin"] = support.pattern(3 * 1048576 + 7, 4),
}

local function make_dir()
  local dir = os.tmpname()
  os.remove(dir)
  os.execute("mkdir -p " .. proc.quote(dir .. "/subdir"))   -- a directory: never served
  for name, data in pairs(FILES) do
    local f = assert(io.open(dir .. "/" .. name, "wb"))
    f:write(data)
    f:close()
  end
  return dir
end

local function start(env, args) return ex.start("static_region", env, args, true) end

-- One response off conn: status, headers (lower-case names), body.
local function response(c, is_head)
  local status = assert(c:receive("*l"))
  local hdr = {}
  while true do
    local l = assert(c:receive("*l"))
    if l == "" then break end
    local k, v = l:match("^([^:]+):%s*(.*)$")
    hdr[k:lower()] = v
  end
  local n = tonumber(hdr["content-length"])
  local body = ""
  if n and n > 0 and not is_head then body = assert(c:receive(n)) end
  return status, hdr, body
end

local names = {}
for name in pairs(FILES) do names[#names + 1] = name end
table.sort(names)

for _, mode in ipairs({ "zc", "copy" }) do
  describe("examples/static_region.lua (" .. mode .. ")", function()
    local srv, port, hint, dir
    setup(function()
      dir = make_dir()
      srv, port, hint = start("STATIC_MODE=" .. mode, proc.quote(dir))
    end)
    teardown(function()
      if srv and not srv.code then srv:stop("KILL") end
      if dir then os.execute("rm -rf " .. proc.quote(dir)) end
    end)

    it("says how to try it, and curl gets that file", function()
      local url = hint:match("^curl (%S+)")
      assert.are.equal("http://127.0.0.1:" .. port .. "/" .. names[1], url)
      local code, out, err = proc.run("curl -s --max-time 10 " .. url)
      assert.are.equal(0, code, err)
      assert.are.equal(FILES[names[1]], out)
    end)

    it("serves every file byte-exact, all on one kept-alive connection", function()
      local got = client(port, function(c)
        local r = {}
        for _, name in ipairs(names) do
          assert(c:send("GET /" .. name .. " HTTP/1.1\r\nHost: t\r\n\r\n"))
          local status, hdr, body = response(c)
          r[name] = { status, hdr["content-length"], body }
        end
        return r
      end)
      for _, name in ipairs(names) do
        assert.are.equal("HTTP/1.1 200 OK", got[name][1], name)
        assert.are.equal(tostring(#FILES[name]), got[name][2], name)
        assert.is_true(got[name][3] == FILES[name], name .. ": body differs")
      end
    end)

    it("answers pipelined requests in order, HEAD without a body, 404 without closing", function()
      local got = client(port, function(c)
        assert(c:send("GET /large.bin HTTP/1.1\r\nHost: t\r\n\r\n"
          .. "HEAD /medium.bin HTTP/1.1\r\nHost: t\r\n\r\n"
          .. "GET /missing HTTP/1.1\r\nHost: t\r\n\r\n"
          .. "GET /at.bin?query=1 HTTP/1.1\r\nHost: t\r\n\r\n"
          .. "GET /subdir HTTP/1.1\r\nHost: t\r\n\r\n"
          .. "GET /below.bin HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"))
        local r = {}
        r[1] = { response(c) }
        r[2] = { response(c, true) }
        r[3] = { response(c) }
        r[4] = { response(c) }
        r[5] = { response(c) }
        r[6] = { response(c) }
        r.rest = { c:receive("*a") }
        return r
      end)
      assert.are.equal("HTTP/1.1 200 OK", got[1][1])
      assert.is_true(got[1][3] == FILES["large.bin"])
      assert.are.equal("HTTP/1.1 200 OK", got[2][1])
      assert.are.equal("100000", got[2][2]["content-length"])
      assert.are.equal("", got[2][3])
      assert.are.equal("HTTP/1.1 404 Not Found", got[3][1])
      assert.is_true(got[4][3] == FILES["at.bin"])
      assert.are.equal("HTTP/1.1 404 Not Found", got[5][1])
      assert.are.equal("close", got[6][2]["connection"])
      assert.is_true(got[6][3] == FILES["below.bin"])
      assert.are.same({ "" }, got.rest)                  -- then it closed
    end)

    it("lists the files at /", function()
      local status, _, body = client(port, function(c)
        assert(c:send("GET / HTTP/1.1\r\nHost: t\r\n\r\n"))
        return response(c)
      end)
      assert.are.equal("HTTP/1.1 200 OK", status)
      assert.are.equal(table.concat(names, "\n") .. "\n", body)
    end)

    it("20 clients at once, each fetching every file", function()
      local ok = client(port, function()
        local tasks = {}
        for i = 1, 20 do
          tasks[i] = ringline.spawn(function()
            local c = assert(ringline.connect("127.0.0.1", port, { timeout = 5 }))
            c:settimeout(10000)
            local good = 0
            for k = 0, #names - 1 do
              local name = names[(i + k) % #names + 1]
              assert(c:send("GET /" .. name .. " HTTP/1.1\r\nHost: t\r\n\r\n"))
              local _, _, body = response(c)
              if body == FILES[name] then good = good + 1 end
            end
            c:close()
            return good
          end)
        end
        local total = 0
        for i = 1, 20 do
          local okj, good = tasks[i]:join()
          assert(okj, good)
          total = total + good
        end
        return total
      end)
      assert.are.equal(20 * #names, ok)
    end)

    it("answers 400, 405 and 431, then closes", function()
      local a = client(port, function(c)
        assert(c:send("GET / HTTX/1.1\r\n\r\n"))
        return c:receive("*a")
      end)
      assert.matches("^HTTP/1.1 400 Bad Request\r\n", a)
      local b = client(port, function(c)
        assert(c:send("POST /one.txt HTTP/1.1\r\nHost: t\r\n\r\n"))
        return c:receive("*a")
      end)
      assert.matches("^HTTP/1.1 405 Method Not Allowed\r\n", b)
      local d = client(port, function(c)
        assert(c:send("GET /one.txt HTTP/1.1\r\nX-Big: " .. ("a"):rep(10000)))
        return c:receive("*a")
      end)
      assert.matches("^HTTP/1.1 431 ", d)
    end)

    it("answers 400 to a loose or conflicting Content-Length (request smuggling)", function()
      local hostile = {
        { "0x4" }, { "+4" }, { "1e0" }, { "-0" }, { "1e20" }, { "4.0" }, { " 4 4" }, { "4, 4" },
        { "" }, { "0004x" }, { ("9"):rep(16) }, { "4", "5" }, { "5", "4" },
      }
      for _, values in ipairs(hostile) do
        local head = "GET /one.txt HTTP/1.1\r\nHost: t\r\n"
        for _, v in ipairs(values) do head = head .. "Content-Length: " .. v .. "\r\n" end
        local got = client(port, function(c)
          assert(c:send(head .. "\r\nabcd"))
          return c:receive("*a")
        end)
        assert.matches("^HTTP/1.1 400 Bad Request\r\n", got, nil, false,
          "Content-Length " .. table.concat(values, " / "))
      end
      -- the same value twice is one length; trailing white space is allowed
      local got = client(port, function(c)
        assert(c:send("GET /one.txt HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n"
          .. "Content-Length: 4 \r\n\r\nabcdGET /small.txt HTTP/1.1\r\nHost: t\r\n"
          .. "Connection: close\r\n\r\n"))
        return c:receive("*a")
      end)
      local _, n = got:gsub("HTTP/1.1 200 OK\r\n", "")
      assert.are.equal(2, n, got)
      assert.matches(FILES["small.txt"] .. "$", got)
    end)

    it("answers 400 to a bare LF inside a header value (request smuggling)", function()
      -- A proxy that ends lines at a bare LF sees "Content-Length: 4" here
      -- and forwards 4 body bytes; the server must not read the line as
      -- one X-Pad value with no length (the body would be a second request).
      local got = client(port, function(c)
        assert(c:send("GET /one.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
          .. "X-Pad: a\nContent-Length: 4\r\n\r\nabcd"))
        return c:receive("*a")
      end)
      assert.matches("^HTTP/1.1 400 Bad Request\r\n", got)
    end)

    it("stops with status 0 on SIGTERM", function() stop_cleanly(srv) end)
  end)
end

describe("examples/static_region.lua (default directory)", function()
  it("serves the examples folder itself", function()
    local srv, port = start()
    local ok, body = pcall(client, port, function(c)
      assert(c:send("GET /static_region.lua HTTP/1.1\r\nHost: t\r\n\r\n"))
      local _, _, b = response(c)
      return b
    end)
    if not ok then srv:stop("KILL") error(body, 0) end
    local f = assert(io.open(root .. "/examples/static_region.lua", "rb"))
    local want = f:read("*a")
    f:close()
    assert.is_true(body == want)
    stop_cleanly(srv)
  end)
end)
