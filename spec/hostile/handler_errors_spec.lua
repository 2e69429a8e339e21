-- Handler errors: a handler that raises costs its own connection (reset,
-- the error logged with its traceback) and nothing else: the other
-- connections keep being served, new ones are accepted, and a graceful
-- stop still exits 0.
local ringline = require "ringline"
local support = require "support"
local H = require "hostile.host"

local SERVER = [[
local ringline = require "ringline"
local lst = assert(ringline.listen("127.0.0.1:0", function(c)
  for line in c:lines() do
    if line == "boom" then error("handler exploded on purpose") end
    if line == "nil" then local t = nil; t.x = 1 end
    c:send("ok ", line, "\n")
  end
end))
local host, port = lst:getsockname()
print("listening on " .. host .. ":" .. port)
]]

describe("hostile: handler errors", function()
  teardown(H.cleanup)

  it("a raising handler costs only its connection", function()
    local srv, port = H.serve(H.file(SERVER))
    local ok, res = pcall(support.run, function()
      local others = {}
      for i = 1, 4 do
        others[i] = support.connect(port, { timeout = 5 })
        others[i]:settimeout(5000)
        assert(others[i]:send("hello\n"))
        assert(others[i]:receive("*l") == "ok hello")
      end
      local lost = {}
      for _, what in ipairs { "boom", "nil" } do
        local b = support.connect(port, { timeout = 5 })
        b:settimeout(5000)
        assert(b:send(what .. "\n"))
        local d, err = b:receive("*l")
        lost[#lost + 1] = d == nil and (err == "closed" or err:find("reset")) and true or err
        b:close()
      end
      -- the others are still served, and new ones too
      local still = 0
      for i = 1, 4 do
        assert(others[i]:send("again\n"))
        if others[i]:receive("*l") == "ok again" then still = still + 1 end
        others[i]:close()
      end
      local n = support.connect(port, { timeout = 5 })
      n:settimeout(5000)
      assert(n:send("new\n"))
      local reply = n:receive("*l")
      n:close()
      return { lost, still, reply }
    end, { timeout = 30 })
    local code, _, err = srv:stop()
    assert(ok, res)
    assert.are.same({ true, true }, res[1])
    assert.are.equal(4, res[2])
    assert.are.equal("ok new", res[3])
    assert.are.equal(0, code, err)
    assert.matches("handler exploded on purpose", err, 1, true)
    assert.matches("attempt to index", err, 1, true)
    -- each error once, with the peer's address and its traceback
    local _, n = err:gsub("task error %(peer 127%.0%.0%.1:%d+%): [^\n]*handler exploded on purpose\nstack traceback", "")
    assert.are.equal(1, n, err)
    _, n = err:gsub("handler exploded on purpose", "")
    assert.are.equal(1, n, err)
    _, n = err:gsub("task error %(peer 127%.0%.0%.1:%d+%): [^\n]*attempt to index", "")
    assert.are.equal(1, n, err)
  end)
end)
