-- The Lua layer's shape (docs/lua.md, Scheduler): one dispatch table keyed
-- by the header's event numbers, filled only by the attach calls of
-- init.lua; hooks set only through sched.hook.
local ringline = require "ringline"
local sched = require "ringline.sched"
local C = require "ringline.lib"

local root = debug.getinfo(1, "S").source:match("^@(.*)/spec/[^/]+$") or "."

local function read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end

describe("the Lua layer's shape", function()
  it("has one handler for each event type of the header, and nothing else", function()
    assert(ringline.run)
    local body = require("ringline.cdef"):match("enum%s+rl_event_type%s*(%b{})")
    assert.is_string(body)
    local want, n = {}, 0
    for name in body:gmatch("(RL_EV_[%w_]+)%s*=") do
      want[tonumber(C[name])] = name
      n = n + 1
    end
    assert.is_true(n >= 13)
    local missing, extra = {}, {}
    for ty, name in pairs(want) do
      if type(sched.dispatch[ty]) ~= "function" then missing[#missing + 1] = name end
    end
    for ty in pairs(sched.dispatch) do
      if not want[ty] then extra[#extra + 1] = tostring(ty) end
    end
    assert.are.same({}, missing)
    assert.are.same({}, extra)
  end)

  it("refuses a second handler for an event type, an unknown hook, a second hook", function()
    assert.has_error(function() sched.on_event(C.RL_EV_RECV, function() end) end,
      "ringline.sched: event type " .. tonumber(C.RL_EV_RECV) .. " is handled already")
    assert.has_error(function() sched.hook("no_such_hook", function() end) end,
      "ringline.sched: no hook named no_such_hook")
    assert.has_error(function() sched.hook("ending", function() end) end,
      "ringline.sched: hook ending is set already")
  end)

  it("installs events and hooks only inside the modules' attach functions", function()
    local p = io.popen("ls '" .. root .. "/lua/ringline'")
    local outside = {}
    for name in p:lines() do
      if name:match("%.lua$") then
        local inside = false
        local ln = 0
        for line in (read(root .. "/lua/ringline/" .. name) .. "\n"):gmatch("([^\n]*)\n") do
          ln = ln + 1
          if line:match("^function M%.attach%(") then
            inside = true
          elseif line:match("^end") then
            inside = false
          elseif not inside and not line:match("^%s*%-%-") and not line:match("^function M%.") and not line:match("^local function ")
              and (line:match("on_event%(") or line:match("%.hook%(") or line:match("on_message%(")
                   or line:match("on_stop%(") or line:match("on_drain%(")) then
            outside[#outside + 1] = name .. ":" .. ln .. ": " .. line
          end
        end
      end
    end
    p:close()
    -- ringline.worker.on_message is the public API's (a user handler), not sched's
    for i = #outside, 1, -1 do
      if outside[i]:match("^worker%.lua:.*M%.on_message") or outside[i]:match("^init%.lua:.*on_message = worker") then
        table.remove(outside, i)
      end
    end
    assert.are.same({}, outside)
  end)
end)
