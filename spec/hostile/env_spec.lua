-- Environment variables with values the runtime does not know are reported
-- (once per process, naming the value and the valid ones), not ignored.
local H = require "hostile.host"

local function count(s, pat)
  local n = 0
  for _ in s:gmatch(pat) do n = n + 1 end
  return n
end

describe("hostile: unknown environment values", function()
  teardown(H.cleanup)
  local s = H.file([[
local ringline = require "ringline"
ringline.sleep(0.01)
print("ran")
]])

  it("RINGLINE_DISABLE_FEATURES names an unknown feature once", function()
    local code, out, err = H.run("-w 2 --no-pin " .. s, nil, "RINGLINE_DISABLE_FEATURES=fd_install,bogus")
    assert.are.equal(0, code, err)
    assert.are.equal("ran\nran\n", out)
    assert.are.equal(1, count(err, "unknown feature 'bogus'"), err)
    assert.matches("valid: defer_taskrun", err, 1, true)
  end)

  it("RINGLINE_LOG_LEVEL names an unknown level once", function()
    local code, out, err = H.run("-w 2 --no-pin " .. s, nil, "RINGLINE_LOG_LEVEL=chatty")
    assert.are.equal(0, code, err)
    assert.are.equal("ran\nran\n", out)
    assert.are.equal(1, count(err, "RINGLINE_LOG_LEVEL: unknown value 'chatty'"), err)
    assert.matches("ERR, WARN, NOTICE, INFO, DEBUG", err, 1, true)
  end)

  it("known values say nothing", function()
    local code, _, err = H.run("-w 2 --no-pin " .. s, nil,
      "RINGLINE_DISABLE_FEATURES=fd_install,sendto RINGLINE_LOG_LEVEL=warn")
    assert.are.equal(0, code, err)
    assert.is_nil(err:find("RINGLINE_", 1, true), err)
  end)
end)
