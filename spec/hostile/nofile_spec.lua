-- Descriptor exhaustion: the host runs with RLIMIT_NOFILE lowered and its
-- script takes every descriptor left; accepts that need one (the
-- plain-descriptor path of kernels before 6.8, forced here with
-- RINGLINE_DISABLE_FEATURES=fd_install) are refused, the worker neither
-- dies nor spins, and it serves again once descriptors are free.
local support = require "support"
local H = require "hostile.host"

local SERVER = [[
local ringline = require "ringline"
local hog = {}
local lst = assert(ringline.listen("127.0.0.1:0", function(c)
  for line in c:lines() do
    if line == "hog" then
      -- every descriptor the process has left
      while true do
        local f = io.open("/dev/null")
        if not f then break end
        hog[#hog + 1] = f
      end
      c:send("hogged ", #hog, "\n")
    elseif line == "free" then
      for i = #hog, 1, -1 do hog[i]:close(); hog[i] = nil end
      c:send("freed\n")
    elseif line == "cpu" then
      c:send(("%.3f\n"):format(os.clock()))
    else
      c:send("ok ", line, "\n")
    end
  end
end))
local host, port = lst:getsockname()
print("listening on " .. host .. ":" .. port)
]]

describe("hostile: descriptor exhaustion", function()
  teardown(H.cleanup)

  it("accepts are refused while no descriptor is left, without a spin, and served after", function()
    local srv, port = H.serve("--set max_connections=64 " .. H.file(SERVER),
      "RINGLINE_DISABLE_FEATURES=fd_install", "ulimit -n 256")
    local ok, res = pcall(support.run, function()
      local ctl = support.connect(port, { timeout = 2 })
      ctl:settimeout(5000)
      assert(ctl:send("hog\n"))
      local hogged = ctl:receive("*l")
      assert(ctl:send("cpu\n"))
      local cpu0 = tonumber((ctl:receive("*l")))
      -- clients now: each refused (closed without a reply), none left hanging
      local refused = 0
      for _ = 1, 8 do
        local c = require("ringline").connect("127.0.0.1", port, { timeout = 2 })
        if c then
          c:settimeout(5000)
          c:send("x\n")
          local d, err = c:receive("*l")
          if d == nil and err ~= "timeout" then refused = refused + 1 end
          c:close()
        else
          refused = refused + 1
        end
      end
      assert(ctl:send("cpu\n"))
      local cpu1 = tonumber((ctl:receive("*l")))
      assert(ctl:send("free\n"))
      local freed = ctl:receive("*l")
      local c = support.connect(port, { timeout = 2 })
      c:settimeout(5000)
      assert(c:send("again\n"))
      local reply = c:receive("*l")
      c:close()
      ctl:close()
      return { hogged, refused, cpu1 - cpu0, freed, reply }
    end, { timeout = 30 })
    local code, _, err = srv:stop()
    assert(ok, res)
    assert.matches("^hogged %d+$", res[1])
    assert.are.equal(8, res[2])
    -- the refusals took CPU for 8 accepts, not a busy loop
    assert.is_true(res[3] < 1, ("server CPU during the exhaustion: %.3f s"):format(res[3]))
    assert.are.equal("freed", res[4])
    assert.are.equal("ok again", res[5])
    assert.are.equal(0, code, err)
  end)
end)
