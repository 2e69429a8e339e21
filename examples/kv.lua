-- kv.lua: a Redis-compatible in-memory key-value server on ringline.resp.
--
--   ringline-lua examples/kv.lua          (PORT=6380, BENCH_HOST=127.0.0.1)
--   then: redis-cli -p 6380 set greeting hello
--         redis-benchmark -p 6380 -t set,get -P 16 -q
--
-- Commands: GET, SET (EX, PX, NX, XX, KEEPTTL, GET), DEL, EXISTS, INCR,
-- INCRBY, DECR, MGET, MSET, EXPIRE (NX, XX, GT, LT), TTL, PING, ECHO,
-- DBSIZE, FLUSHALL, QUIT, and CONFIG GET (of "save" and "appendonly" only,
-- which redis-benchmark asks for when it starts: nothing is persisted). Replies and errors are byte for
-- byte those of redis-server 7.0, unknown commands and wrong arity
-- included. Integers are 64-bit as in redis (INCR past 2^53 is exact).
--
-- Expiry is lazy (a key past its deadline is dropped when a command
-- touches it) plus a sweep every 100 ms that looks at a bounded number of
-- keys with a deadline, so keys nobody reads go away too. Deadlines use
-- ringline.now(), the loop's monotonic clock.
--
-- Pipelining: the reader parses every command that has arrived; the
-- replies to all of them go out with one send.
--
-- One store per worker: run it with one worker (the default), as
-- redis-server is one thread.
local ringline = require "ringline"
local resp = require "ringline.resp"
local ffi = require "ffi"
local string_buffer = require "string.buffer"

local host = os.getenv("BENCH_HOST") or "127.0.0.1"
local port = tonumber(os.getenv("PORT") or "6380")

local now = ringline.now
local bulk, integer, rerror, null = resp.bulk, resp.integer, resp.error, resp.null
local type, tonumber, select = type, tonumber, select
local string_format, string_lower, string_byte = string.format, string.lower, string.byte

local OK = resp.simple("OK")
local PONG = resp.simple("PONG")
local ZERO, ONE = integer(0), integer(1)
local SYNTAX = rerror("ERR syntax error")
local NOT_INT = rerror("ERR value is not an integer or out of range")
local OVERFLOW = rerror("ERR increment or decrement would overflow")
local CONFIG_SAVE = { bulk("save"), bulk("") }              -- no snapshots
local CONFIG_APPENDONLY = { bulk("appendonly"), bulk("no") }  -- no log

local store = {}      -- key -> value (a string)
local expires = {}    -- key -> deadline (ringline.now() seconds), for keys that have one
local nkeys, nexpires = 0, 0

------------------------------------------------------------------------
-- The store
------------------------------------------------------------------------

local function drop(k)
  if store[k] ~= nil then
    store[k] = nil
    nkeys = nkeys - 1
  end
  if expires[k] then
    expires[k] = nil
    nexpires = nexpires - 1
  end
end

-- The value of k, dropping it first when its deadline has passed.
local function lookup(k)
  local v = store[k]
  if v ~= nil and nexpires > 0 then
    local e = expires[k]
    if e and e <= now() then
      drop(k)
      return nil
    end
  end
  return v
end

local function set_value(k, v)
  if store[k] == nil then nkeys = nkeys + 1 end
  store[k] = v
end

local function set_deadline(k, e)   -- e: a deadline, or nil for none
  local old = expires[k]
  if e then
    if not old then nexpires = nexpires + 1 end
  elseif old then
    nexpires = nexpires - 1
  end
  expires[k] = e
end

-- The sweep: looks at up to SWEEP keys with a deadline per run, from where
-- the last run stopped (when that key is still there; else from the
-- start), and drops those past it (after the walk: next() must not see
-- its current key removed).
local SWEEP = 200
local cursor = nil
local function sweep()
  if nexpires == 0 then return end
  local t = now()
  local k = cursor
  if k ~= nil and expires[k] == nil then k = nil end
  local dead, nd = {}, 0
  for _ = 1, SWEEP do
    local e
    k, e = next(expires, k)
    if k == nil then break end
    if e <= t then
      nd = nd + 1
      dead[nd] = k
    end
  end
  for i = 1, nd do drop(dead[i]) end
  cursor = k
end

------------------------------------------------------------------------
-- 64-bit integers, as redis' string2ll reads and its INCR adds
------------------------------------------------------------------------

local int64_t = ffi.typeof("int64_t")
local LLMAX = ffi.new(int64_t, 0x7fffffffffffffffLL)
local LLMIN = ffi.new(int64_t, -0x7fffffffffffffffLL - 1)
local EXACT = 2 ^ 53

-- The integer value of s (a number when it is exact as a double, else an
-- int64_t cdata), or nil when redis would refuse it.
local function to_int(s)
  local n = #s
  if n == 0 or n >= 21 then return nil end
  if n <= 15 then
    if s == "0" then return 0 end
    if s:find("^%-?[1-9]%d*$") then return tonumber(s) end
    return nil
  end
  local neg = string_byte(s, 1) == 45
  local d = neg and s:sub(2) or s
  if not d:find("^[1-9]%d*$") or #d > 19 then return nil end
  if #d == 19 and d > (neg and "9223372036854775808" or "9223372036854775807") then return nil end
  local v = ffi.new(int64_t, 0)
  for i = 1, #d do v = v * 10 - (string_byte(d, i) - 48) end   -- negative: reaches LLMIN
  if not neg then v = -v end
  return v
end

local function int_string(v)
  return string_format("%d", v)
end

-- old + by with redis' overflow check: the sum, or nil.
local function add(old, by)
  if type(old) == "number" and type(by) == "number" then
    local r = old + by
    if r < EXACT and r > -EXACT then return r end
  end
  local a, b = ffi.new(int64_t, old), ffi.new(int64_t, by)
  if (b < 0 and a < 0 and b < LLMIN - a) or (b > 0 and a > 0 and b > LLMAX - a) then
    return nil
  end
  return a + b
end

------------------------------------------------------------------------
-- Commands: each takes the command (an array of strings) and its length,
-- and returns the reply
------------------------------------------------------------------------

local function arity_error(name)
  return rerror("ERR wrong number of arguments for '" .. name .. "' command")
end

-- redis-server's words for a command it does not know: the name and the
-- first arguments, each cut at a NUL byte (it prints them with %s), at
-- most 128 bytes of them.
local function unknown(cmd, n)
  local args, len = {}, 0
  for i = 2, n do
    if len >= 128 then break end
    local a = cmd[i]:match("^[^%z]*"):sub(1, 128 - len)
    args[#args + 1] = "'" .. a .. "' "
    len = len + #a + 3
  end
  return rerror("ERR unknown command '" .. cmd[1]:match("^[^%z]*"):sub(1, 128)
    .. "', with args beginning with: " .. table.concat(args))
end

local function lower_is(s, word)   -- ASCII case-insensitive s == word (lower case)
  return #s == #word and (s == word or string_lower(s) == word)
end

local C = {}

function C.get(cmd, n)
  if n ~= 2 then return arity_error("get") end
  return bulk(lookup(cmd[2]))
end

local function invalid_expire(name)
  return rerror("ERR invalid expire time in '" .. name .. "' command")
end

-- SET key value [NX|XX] [GET] [EX s|PX ms|KEEPTTL], options parsed as
-- redis parses them (an option may repeat; EX with PX, NX with XX, KEEPTTL
-- with EX or PX are syntax errors).
function C.set(cmd, n)
  if n < 3 then return arity_error("set") end
  local k, v = cmd[2], cmd[3]
  if n == 3 then
    if nexpires > 0 and expires[k] then set_deadline(k, nil) end
    set_value(k, v)
    return OK
  end
  local nx, xx, get, keepttl, unit, expire = false, false, false, false, nil, nil
  local j = 4
  while j <= n do
    local o = cmd[j]
    local has_next = j < n
    if lower_is(o, "nx") and not xx then
      nx = true
    elseif lower_is(o, "xx") and not nx then
      xx = true
    elseif lower_is(o, "get") then
      get = true
    elseif lower_is(o, "keepttl") and not unit then
      keepttl = true
    elseif lower_is(o, "ex") and not keepttl and unit ~= "ms" and has_next then
      unit, expire, j = "s", cmd[j + 1], j + 1
    elseif lower_is(o, "px") and not keepttl and unit ~= "s" and has_next then
      unit, expire, j = "ms", cmd[j + 1], j + 1
    else
      return SYNTAX
    end
    j = j + 1
  end
  local deadline
  if expire then
    local e = to_int(expire)
    if e == nil then return NOT_INT end
    e = tonumber(e)
    if e <= 0 or (unit == "s" and e > 9223372036854775807 / 1000) then return invalid_expire("set") end
    local ms = unit == "s" and e * 1000 or e
    if ms + os.time() * 1000 >= 2 ^ 63 then return invalid_expire("set") end
    deadline = now() + ms / 1000
  end
  local old = lookup(k)
  if (nx and old ~= nil) or (xx and old == nil) then
    return get and bulk(old) or null
  end
  set_value(k, v)
  if deadline then
    set_deadline(k, deadline)
  elseif not keepttl and nexpires > 0 and expires[k] then
    set_deadline(k, nil)
  end
  if get then return bulk(old) end
  return OK
end

function C.del(cmd, n)
  if n < 2 then return arity_error("del") end
  local c = 0
  for i = 2, n do
    local k = cmd[i]
    if lookup(k) ~= nil then
      drop(k)
      c = c + 1
    end
  end
  return integer(c)
end

function C.exists(cmd, n)
  if n < 2 then return arity_error("exists") end
  local c = 0
  for i = 2, n do
    if lookup(cmd[i]) ~= nil then c = c + 1 end
  end
  return integer(c)
end

local function incr_by(k, by)
  local old = lookup(k)
  local v = 0
  if old ~= nil then
    v = to_int(old)
    if v == nil then return NOT_INT end
  end
  local r = add(v, by)
  if r == nil then return OVERFLOW end
  store[k] = int_string(r)          -- keeps the key's deadline, as redis does
  if old == nil then nkeys = nkeys + 1 end
  return integer(r)
end

function C.incr(cmd, n)
  if n ~= 2 then return arity_error("incr") end
  return incr_by(cmd[2], 1)
end

function C.decr(cmd, n)
  if n ~= 2 then return arity_error("decr") end
  return incr_by(cmd[2], -1)
end

function C.incrby(cmd, n)
  if n ~= 3 then return arity_error("incrby") end
  local by = to_int(cmd[3])
  if by == nil then return NOT_INT end
  return incr_by(cmd[2], by)
end

function C.mget(cmd, n)
  if n < 2 then return arity_error("mget") end
  local vals = {}
  for i = 2, n do vals[i - 1] = lookup(cmd[i]) or false end
  return resp.array(vals, n - 1)
end

function C.mset(cmd, n)
  if n < 3 or n % 2 == 0 then return arity_error("mset") end
  for i = 2, n, 2 do
    local k = cmd[i]
    if nexpires > 0 and expires[k] then set_deadline(k, nil) end
    set_value(k, cmd[i + 1])
  end
  return OK
end

-- EXPIRE key seconds [NX|XX|GT|LT]: options first, then the number, as
-- redis checks them. A deadline already past deletes the key.
function C.expire(cmd, n)
  if n < 3 then return arity_error("expire") end
  local nx, xx, gt, lt = false, false, false, false
  for j = 4, n do
    local o = string_lower(cmd[j])
    if o == "nx" then nx = true
    elseif o == "xx" then xx = true
    elseif o == "gt" then gt = true
    elseif o == "lt" then lt = true
    else return rerror("ERR Unsupported option " .. cmd[j]:match("^[^%z]*")) end
  end
  if nx and (xx or gt or lt) then
    return rerror("ERR NX and XX, GT or LT options at the same time are not compatible")
  end
  if gt and lt then return rerror("ERR GT and LT options at the same time are not compatible") end
  local s = to_int(cmd[3])
  if s == nil then return NOT_INT end
  s = tonumber(s)
  if s > 9223372036854775807 / 1000 or s < -9223372036854775808 / 1000
     or s * 1000 + os.time() * 1000 >= 2 ^ 63 then
    return invalid_expire("expire")
  end
  local k = cmd[2]
  if lookup(k) == nil then return ZERO end
  local deadline = now() + s
  local cur = expires[k]
  if nx and cur then return ZERO end
  if xx and not cur then return ZERO end
  if gt and (not cur or deadline <= cur) then return ZERO end
  if lt and cur and deadline >= cur then return ZERO end
  if s <= 0 then
    drop(k)
  else
    set_deadline(k, deadline)
  end
  return ONE
end

function C.ttl(cmd, n)
  if n ~= 2 then return arity_error("ttl") end
  local k = cmd[2]
  if lookup(k) == nil then return integer(-2) end
  local e = expires[k]
  if not e then return integer(-1) end
  local ms = math.floor((e - now()) * 1000 + 0.5)
  if ms < 0 then ms = 0 end
  return integer(math.floor((ms + 500) / 1000))
end

function C.ping(cmd, n)
  if n == 1 then return PONG end
  if n == 2 then return bulk(cmd[2]) end
  return arity_error("ping")
end

function C.echo(cmd, n)
  if n ~= 2 then return arity_error("echo") end
  return bulk(cmd[2])
end

function C.dbsize(cmd, n)
  if n ~= 1 then return arity_error("dbsize") end
  return integer(nkeys)
end

function C.flushall(cmd, n)
  if n > 2 then return SYNTAX end
  if n == 2 then
    local o = string_lower(cmd[2])
    if o ~= "sync" and o ~= "async" then return SYNTAX end
  end
  store, expires, nkeys, nexpires, cursor = {}, {}, 0, 0, nil
  return OK
end

-- CONFIG GET parameter: nothing is configurable here; "save" and
-- "appendonly" (redis-benchmark asks for both when it starts) say that
-- nothing is persisted, any other name matches nothing.
function C.config(cmd, n)
  if n < 2 then return arity_error("config") end
  if lower_is(cmd[2], "get") then
    if n < 3 then return arity_error("config|get") end
    local out = {}
    for i = 3, n do
      local what = string_lower(cmd[i])
      if what == "save" then out[#out + 1] = CONFIG_SAVE end
      if what == "appendonly" then out[#out + 1] = CONFIG_APPENDONLY end
    end
    return { "*" .. 2 * #out .. "\r\n", out }
  end
  return rerror("ERR unknown subcommand '" .. cmd[2]:match("^[^%z]*"):sub(1, 128)
    .. "'. Try CONFIG HELP.")
end

local QUIT = {}   -- the marker of QUIT: answer +OK, then close
function C.quit()
  return QUIT
end

-- Command names as sent are looked up as they are, then in lower case;
-- the upper-case spellings are filled in so the usual case is one lookup.
local commands = {}
for name, fn in pairs(C) do
  commands[name] = fn
  commands[name:upper()] = fn
end

local function dispatch(cmd)
  local n = #cmd
  local name = cmd[1]
  local fn = commands[name]
  if not fn then
    fn = commands[string_lower(name)]
    if not fn then return unknown(cmd, n) end
    commands[name] = fn   -- a spelling seen once is seen again (bounded: names of real commands)
  end
  return fn(cmd, n)
end

------------------------------------------------------------------------
-- Connections
------------------------------------------------------------------------

-- A reply into the batch's buffer: a string, or an array of them (nested).
local function put(buf, v)
  if type(v) == "string" then
    buf:put(v)
  else
    for i = 1, #v do put(buf, v[i]) end
  end
end

local function serve(conn)
  local r = resp.reader(conn)
  local buf = string_buffer.new()   -- the replies to one batch: one send, one copy into the queue
  while true do
    local cmd = r:read()
    if not cmd then return end                 -- closed, or a protocol error answered
    local reply = dispatch(cmd)
    if reply == QUIT then
      buf:put(OK)
      conn:send(buf)
      return                                   -- closes after flushing
    end
    if #buf == 0 and r:pending() == 0 then
      if not conn:send(reply) then return end  -- one command: no batch
    else
      put(buf, reply)
      if r:pending() == 0 then
        if not conn:send(buf) then return end
        buf:reset()
      end
    end
  end
end

local function start()
  local addr = (host:find(":", 1, true) and "[" .. host .. "]" or host) .. ":" .. port
  local lst = assert(ringline.listen(addr, serve))
  assert(ringline.timer.every(0.1, function(premature)
    if not premature then sweep() end
  end))
  local h, p = lst:getsockname()
  print(("kv listening on %s:%d"):format(h:find(":", 1, true) and "[" .. h .. "]" or h, p))
  print(("try: redis-cli -p %d set greeting hello   (Ctrl-C stops the server)"):format(p))
end

start()
