-- JSON in scripts: `require "cjson"` (Debian's lua-cjson) inside the host,
-- and the JSON examples of docs/api.md (a plain connection, ringline.http)
-- run as they are written there (on a free port) and asked questions, the
-- HTTP one with curl.
local root = debug.getinfo(1, "S").source:match("^@(.*)/spec/[^/]+$") or "."
if root:sub(1, 1) ~= "/" then root = os.getenv("PWD") .. "/" .. root end
local ex = dofile(root .. "/spec/example_host.lua")(root)
local proc, host, client = ex.proc, ex.host, ex.client

local function slurp(path)
  local f = assert(io.open(root .. "/" .. path, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end

describe("JSON", function()
  it("require \"cjson\" works inside the host", function()
    local code, out, err = proc.run(proc.quote(host)
      .. [[ -e 'local cjson = require "cjson"; print(cjson.encode({ a = { 1, 2 } }))']])
    assert.are.equal(0, code, err)
    assert.are.equal('{"a":[1,2]}\n', out)
  end)

  -- Runs the n-th lua example of docs/api.md's JSON section on a free port;
  -- returns the process and its port.
  local function run_example(n)
    local section = slurp("docs/api.md"):match("\n## JSON\n(.-)\n## ")
    assert.is_truthy(section, "no JSON section in docs/api.md")
    local i, code = 0, nil
    for c in section:gmatch("```lua\n(.-)```") do
      i = i + 1
      if i == n then code = c end
    end
    assert.is_truthy(code, "no example " .. n .. " in the JSON section")
    local src = code:gsub("127%.0%.0%.1:8080", "127.0.0.1:0")
    assert.are_not.equal(code, src)
    local path = os.tmpname()
    local f = assert(io.open(path, "wb"))
    f:write(src)
    f:close()
    local srv = proc.spawn(proc.quote(host) .. " " .. proc.quote(path))
    local port, seen = srv:expect("listening on%s+127%.0%.0%.1%s+(%d+)")
    os.remove(path)
    assert(port, "the example did not start:\n" .. tostring(seen))
    return srv, tonumber(port)
  end

  it("the example of docs/api.md answers JSON on a connection", function()
    local srv, port = run_example(1)
    local got = client(port, function(c)
      assert(c:send('{"a":[1,2]}\nnot json\n'))
      return { c:receive(), c:receive() }
    end)
    local code, _, err = srv:stop("TERM")
    assert.are.equal(0, code, err)
    -- compared decoded, not as text: the key order is cjson's
    local cjson = require "cjson"
    assert.are.same({ ok = true, echo = { a = { 1, 2 } }, worker = 0 }, cjson.decode(got[1]))
    assert.are.same({ ok = false, error = "bad json" }, cjson.decode(got[2]))
  end)

  it("the ringline.http example of docs/api.md answers JSON to curl", function()
    local srv, port = run_example(2)
    local url = ("http://127.0.0.1:%d/sum?x=1"):format(port)
    local c1, out1 = proc.run("curl -s -d '{\"n\":1}' -w ' %{http_code} %{content_type}' " .. proc.quote(url))
    local c2, out2 = proc.run("curl -s -d 'nope' -w ' %{http_code}' " .. proc.quote(url))
    local code, _, err = srv:stop("TERM")
    assert.are.equal(0, code, err)
    assert.are.same({ 0, 0 }, { c1, c2 })
    local body1, status1, ctype = out1:match("^(.*) (%d+) (%S+)$")
    local body2, status2 = out2:match("^(.*) (%d+)$")
    local cjson = require "cjson"
    assert.are.same({ "200", "application/json" }, { status1, ctype })
    assert.are.same({ path = "/sum", args = { x = "1" }, got = { n = 1 } }, cjson.decode(body1))
    assert.are.equal("400", status2)
    assert.are.same({ error = "bad json" }, cjson.decode(body2))
  end)
end)
