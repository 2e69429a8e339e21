-- bench/resp_plain.lua: a Redis-protocol server written the way a user of
-- the cosocket API would, without ringline.resp and without tricks:
-- receive("*l") for each header line, receive(n + 2) for each bulk
-- string, one conn:send per reply (issue 15's per-request cost target:
-- at least redis-server's speed; bench/kv.sh runs it as `plain`).
-- GET, SET (no options), DEL, PING and anything else as an error.
--
--   PORT=6381 ringline-lua bench/resp_plain.lua
local ringline = require "ringline"

local port = tonumber(os.getenv("PORT") or "6381")
local store = {}

local function read_command(c)
  local line, err = c:receive("*l")
  if not line then return nil, err end
  if line:byte(1) ~= 42 then return nil, "inline commands are not served" end   -- '*'
  local n = tonumber(line:sub(2))
  if not n or n < 1 or n > 1024 then return nil, "bad array" end
  local args = {}
  for i = 1, n do
    local h = c:receive("*l")
    if not h or h:byte(1) ~= 36 then return nil, "bad bulk" end               -- '$'
    local len = tonumber(h:sub(2))
    if not len or len < 0 or len > 512 * 1024 * 1024 then return nil, "bad bulk" end
    local s = c:receive(len + 2)
    if not s then return nil, "closed" end
    args[i] = s:sub(1, len)
  end
  return args
end

local function serve(c)
  while true do
    local args = read_command(c)
    if not args then return end
    local cmd = args[1]:upper()
    local reply
    if cmd == "GET" then
      local v = store[args[2]]
      reply = v and ("$" .. #v .. "\r\n" .. v .. "\r\n") or "$-1\r\n"
    elseif cmd == "SET" then
      store[args[2]] = args[3]
      reply = "+OK\r\n"
    elseif cmd == "DEL" then
      local n = 0
      for i = 2, #args do
        if store[args[i]] then store[args[i]] = nil; n = n + 1 end
      end
      reply = ":" .. n .. "\r\n"
    elseif cmd == "PING" then
      reply = "+PONG\r\n"
    else
      reply = "-ERR unknown command '" .. args[1] .. "'\r\n"
    end
    if not c:send(reply) then return end
  end
end

assert(ringline.listen("127.0.0.1:" .. port, serve))
print("resp_plain listening on 127.0.0.1:" .. port)
