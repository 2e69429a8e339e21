-- idle_echo.lua: a line echo server written the plain way (receive("*l"),
-- one send per line), the server of bench/idle_conns.sh; plus a control
-- port that answers one command and closes:
--   "stats" -> lua_kb=<collectgarbage count> and every ringline.metrics() key
--   "gc"    -> a full collection first, then the same
-- PORT / CTL_PORT (0: pick one; the lines printed at start say which).
local ringline = require "ringline"

local port = tonumber(os.getenv("PORT") or "8080")
local ctl_port = tonumber(os.getenv("CTL_PORT") or "0")

local function echo(conn)
  while true do
    local line = conn:receive("*l")
    if not line then return end
    conn:send(line .. "\n")
  end
end

local function stats()
  local out = { ("lua_kb=%.1f"):format(collectgarbage("count")) }
  local m = ringline.metrics()
  local keys = {}
  for k in pairs(m) do keys[#keys + 1] = k end
  table.sort(keys)
  for _, k in ipairs(keys) do out[#out + 1] = k .. "=" .. tostring(m[k]) end
  return table.concat(out, "\n") .. "\n"
end

local function control(conn)
  local cmd = conn:receive("*l")
  if cmd == "gc" then collectgarbage(); collectgarbage() end
  if cmd then conn:send(stats()) end
end

local lst = assert(ringline.listen("127.0.0.1:" .. port, echo))
local ctl = assert(ringline.listen("127.0.0.1:" .. ctl_port, control))
print(("idle_echo listening on %d control %d"):format(select(2, lst:getsockname()),
                                                       select(2, ctl:getsockname())))
io.stdout:flush()
