-- JSON in scripts: `require "cjson"` (Debian's lua-cjson) inside the host,
-- and the JSON example of docs/api.md run as it is written there (on a
-- free port) and asked a question.
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

  it("the example of docs/api.md answers JSON", function()
    local code = slurp("docs/api.md"):match("\n## JSON\n.-```lua\n(.-)```")
    assert.is_truthy(code, "no JSON example in docs/api.md")
    local src = code:gsub("127%.0%.0%.1:8080", "127.0.0.1:0")
    assert.are_not.equal(code, src)
    local path = os.tmpname()
    local f = assert(io.open(path, "wb"))
    f:write(src)
    f:close()
    finally(function() os.remove(path) end)
    local srv = proc.spawn(proc.quote(host) .. " " .. proc.quote(path))
    local port, seen = srv:expect("listening on%s+127%.0%.0%.1%s+(%d+)")
    assert(port, "the example did not start:\n" .. tostring(seen))
    local got = client(tonumber(port), function(c)
      assert(c:send('{"a":[1,2]}\nnot json\n'))
      return { c:receive(), c:receive() }
    end)
    local code_, _, err = srv:stop("TERM")
    assert.are.equal(0, code_, err)
    -- compared decoded, not as text: the key order is cjson's
    local cjson = require "cjson"
    assert.are.same({ ok = true, echo = { a = { 1, 2 } }, worker = 0 }, cjson.decode(got[1]))
    assert.are.same({ ok = false, error = "bad json" }, cjson.decode(got[2]))
  end)
end)
