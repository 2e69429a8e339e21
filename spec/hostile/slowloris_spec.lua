-- Slowloris: connections that send nothing hold the connection table until
-- the default read timeout ends them; then a new client is served. Before
-- issue 17 nothing timed them out: max_connections idle sockets shut out
-- every new client of the worker for good.
local ringline = require "ringline"
local support = require "support"
local H = require "hostile.host"

local SERVER = [[
local ringline = require "ringline"
-- small, so the spec is fast; the default is 60 s (read_timeout)
ringline.configure { read_timeout = 300, max_connections = 16 }
local lst = assert(ringline.listen("127.0.0.1:0", function(c)
  local line = c:receive("*l")
  if line then c:send("ok ", line, "\n") end
end))
local host, port = lst:getsockname()
print("listening on " .. host .. ":" .. port)
]]

describe("hostile: slowloris", function()
  teardown(H.cleanup)

  it("idle connections are timed out by the default read timeout, and a new client is served", function()
    local srv, port = H.serve(H.file(SERVER))
    local ok, res = pcall(support.run, function()
      -- 16 connections that send nothing fill the worker's table
      local idle = {}
      for i = 1, 16 do idle[i] = support.connect(port, { timeout = 2 }) end
      -- each is closed by the server at its read deadline, not before
      -- the client waited for it
      local closed = 0
      for i = 1, 16 do
        idle[i]:settimeout(5000)
        local d, err = idle[i]:receive("*l")
        if d == nil and (err == "closed" or err:find("reset")) then closed = closed + 1 end
      end
      for i = 1, 16 do idle[i]:close() end
      -- a client that sends its request is served now
      local c = support.connect(port, { timeout = 2 })
      c:settimeout(5000)
      assert(c:send("hello\n"))
      local reply, err = c:receive("*l")
      c:close()
      return { closed, reply, err }
    end, { timeout = 20 })
    local code, _, err = srv:stop()
    assert(ok, res)
    assert.are.equal(16, res[1])
    assert.are.equal("ok hello", res[2], res[3])
    assert.are.equal(0, code, err)
  end)
end)
