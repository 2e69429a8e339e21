-- ringline.shdict: shared dictionaries, OpenResty's ngx.shared.DICT, for
-- every worker of the process (the store is in C: core/src/shdict.c).
--
--   ringline.configure{ shared_dicts = { cache = "10m" } }   -- or --shared-dict cache=10m
--   local cache = ringline.shared.cache
--   local ok, err, forcible = cache:set("k", "v", 60)
--   local v, flags = cache:get("k")
--
-- The module's value is that table (ringline.shared; the ngx shim sets
-- ngx.shared = require "ringline.shdict"): names are dictionaries only.
-- What the rest of ringline uses (configure's checks, the methods table
-- for the API spec) is on its metatable: getmetatable(shared).check etc.
--
-- ringline.shared is a table keyed by name; a dictionary opened by any
-- worker (or by the host's --shared-dict before they started) is found
-- there by every worker, and is the same C object in each. The dictionary
-- objects are cdata (struct rl_shdict *) with the methods below as their
-- metatype; return values are OpenResty's: ok, err, forcible for stores,
-- value, flags (, stale) for reads, nil, err for failures with its
-- messages ("no memory", "exists", "not found", "not a number", "value
-- not a list", "value is a list", "bad value type", "nil key", "empty
-- key", "key too long").
local ffi = require "ffi"
local C = require "ringline.lib"

local type, error, tostring, tonumber, setmetatable = type, error, tostring, tonumber, setmetatable
local ffi_string, ffi_new, ffi_istype = ffi.string, ffi.new, ffi.istype

local M = {}

local NIL, BOOLEAN, NUMBER, STRING, LIST = 0, 1, 3, 4, 5
local SET, SAFE_SET, ADD, SAFE_ADD, REPLACE = 0, 1, 2, 3, 4
local ENOENT, EEXIST, ENOMEM, EINVAL, ENOBUFS = -2, -17, -12, -22, -105

local dict_t = ffi.typeof("struct rl_shdict *")

-- One value box and one growing copy buffer per worker (Lua state): a get
-- allocates only the string it returns.
local v = ffi_new("struct rl_shdict_value")
local bufsz = 4096
local buf = ffi_new("char[?]", bufsz)
local nkeys = ffi_new("int[1]")
local ttl_out = ffi_new("double[1]")

local function grow(n)
  while bufsz < n do bufsz = bufsz * 2 end
  buf = ffi_new("char[?]", bufsz)
end

local function check_self(self)
  if not ffi_istype(dict_t, self) then error('bad "zone" argument', 3) end
end

-- key, or nil and the error OpenResty gives.
local function check_key(key)
  if key == nil then return nil, "nil key" end
  if type(key) ~= "string" then key = tostring(key) end
  local n = #key
  if n == 0 then return nil, "empty key" end
  if n > 65535 then return nil, "key too long" end
  return key
end

local function check_time(t, what)
  if t == nil then return 0 end
  if type(t) ~= "number" or t < 0 then error('bad "' .. what .. '" argument', 3) end
  return t
end

-- The value just read into v/buf.
local function value_of()
  local t = v.type
  if t == STRING then return ffi_string(buf, v.len) end
  if t == NUMBER then return tonumber(v.num) end
  if t == BOOLEAN then return v.num ~= 0 end
  return nil
end

-- A value bigger than the buffer: grow it and read again (the value may
-- have grown meanwhile: again). Out of get's body, so the hot path has no
-- loop for the JIT to leave.
local function get_big(self, k, stale)
  local rc
  repeat
    grow(tonumber(v.len))
    rc = C.rl_shdict_get(self, k, #k, stale, v, buf, bufsz)
  until rc ~= ENOBUFS
  return rc
end

local function get(self, key, stale)
  check_self(self)
  local k, err = check_key(key)
  if not k then return nil, err end
  local rc = C.rl_shdict_get(self, k, #k, stale, v, buf, bufsz)
  if rc == ENOBUFS then rc = get_big(self, k, stale) end
  if rc == 0 then return nil end
  if v.type == LIST then return nil, "value is a list" end
  local val = value_of()
  local flags = v.flags
  if stale == 1 then
    return val, flags ~= 0 and tonumber(flags) or nil, v.stale ~= 0
  end
  return val, flags ~= 0 and tonumber(flags) or nil
end

local STORE_ERR = { [EEXIST] = "exists", [ENOENT] = "not found", [ENOMEM] = "no memory" }

local function store(self, op, key, value, exptime, flags)
  check_self(self)
  local k, err = check_key(key)
  if not k then return nil, err end
  exptime = check_time(exptime, "exptime")
  if flags ~= nil and (type(flags) ~= "number" or flags < 0 or flags % 1 ~= 0 or flags > 4294967295) then
    error('bad "flags" argument', 3)
  end
  local tv = type(value)
  local str = nil
  v.flags = flags or 0
  v.len = 0
  if tv == "string" then
    v.type, v.len, str = STRING, #value, value
  elseif tv == "number" then
    v.type, v.num = NUMBER, value
  elseif tv == "boolean" then
    v.type, v.num = BOOLEAN, value and 1 or 0
  elseif tv == "nil" then
    v.type = NIL
  else
    return nil, "bad value type"
  end
  local rc = C.rl_shdict_store(self, op, k, #k, v, str, exptime)
  local forcible = v.forcible ~= 0
  if rc == 0 then return true, nil, forcible end
  return false, STORE_ERR[rc] or "error " .. tostring(rc), forcible
end

local methods = {}
M.methods = methods

function methods.get(self, key) return get(self, key, 0) end
function methods.get_stale(self, key) return get(self, key, 1) end
function methods.set(self, key, value, exptime, flags)
  return store(self, SET, key, value, exptime, flags)
end
function methods.safe_set(self, key, value, exptime, flags)
  return store(self, SAFE_SET, key, value, exptime, flags)
end
function methods.add(self, key, value, exptime, flags)
  return store(self, ADD, key, value, exptime, flags)
end
function methods.safe_add(self, key, value, exptime, flags)
  return store(self, SAFE_ADD, key, value, exptime, flags)
end
function methods.replace(self, key, value, exptime, flags)
  return store(self, REPLACE, key, value, exptime, flags)
end
function methods.delete(self, key)
  return store(self, SET, key, nil)
end

-- newval, err, forcible = dict:incr(key, value, init?, init_ttl?)
function methods.incr(self, key, value, init, init_ttl)
  check_self(self)
  local k, err = check_key(key)
  if not k then return nil, err end
  local by = tonumber(value)
  if not by then return nil, "value not a number" end
  local has_init, ini = 0, 0
  if init ~= nil then
    ini = tonumber(init)
    if not ini then return nil, "init not a number" end
    has_init = 1
  elseif init_ttl ~= nil then
    error('must provide "init" when providing "init_ttl"', 2)
  end
  local ttl = check_time(init_ttl, "init_ttl")
  local rc = C.rl_shdict_incr(self, k, #k, by, has_init, ini, ttl, v)
  local forcible = v.forcible ~= 0
  if rc == 0 then return tonumber(v.num), nil, forcible end
  if rc == EINVAL then return nil, "not a number", forcible end
  return nil, STORE_ERR[rc] or "error " .. tostring(rc), forcible
end

local function push(self, key, value, left)
  check_self(self)
  local k, err = check_key(key)
  if not k then return nil, err end
  local tv = type(value)
  local str = nil
  if tv == "string" then
    v.type, v.len, str = STRING, #value, value
  elseif tv == "number" then
    v.type, v.num, v.len = NUMBER, value, 0
  else
    return nil, "bad value type"
  end
  local rc = C.rl_shdict_push(self, k, #k, left, v, str)
  if rc >= 0 then return rc end
  if rc == EINVAL then return nil, "value not a list" end
  return nil, STORE_ERR[rc] or "error " .. tostring(rc)
end

local function pop_big(self, k, left)
  local rc
  repeat
    grow(tonumber(v.len))
    rc = C.rl_shdict_pop(self, k, #k, left, v, buf, bufsz)
  until rc ~= ENOBUFS
  return rc
end

local function pop(self, key, left)
  check_self(self)
  local k, err = check_key(key)
  if not k then return nil, err end
  local rc = C.rl_shdict_pop(self, k, #k, left, v, buf, bufsz)
  if rc == ENOBUFS then rc = pop_big(self, k, left) end
  if rc == 0 then return nil end
  if rc == EINVAL then return nil, "value not a list" end
  return value_of()
end

function methods.lpush(self, key, value) return push(self, key, value, 1) end
function methods.rpush(self, key, value) return push(self, key, value, 0) end
function methods.lpop(self, key) return pop(self, key, 1) end
function methods.rpop(self, key) return pop(self, key, 0) end

function methods.llen(self, key)
  check_self(self)
  local k, err = check_key(key)
  if not k then return nil, err end
  local rc = C.rl_shdict_llen(self, k, #k)
  if rc >= 0 then return rc end
  return nil, "value not a list"
end

function methods.ttl(self, key)
  check_self(self)
  local k, err = check_key(key)
  if not k then return nil, err end
  if C.rl_shdict_ttl(self, k, #k, ttl_out) == 1 then return tonumber(ttl_out[0]) end
  return nil, "not found"
end

function methods.expire(self, key, exptime)
  check_self(self)
  local k, err = check_key(key)
  if not k then return nil, err end
  if exptime == nil then error('bad "exptime" argument', 2) end
  exptime = check_time(exptime, "exptime")
  if C.rl_shdict_expire(self, k, #k, exptime) == 1 then return true end
  return nil, "not found"
end

function methods.flush_all(self)
  check_self(self)
  C.rl_shdict_flush_all(self)
end

function methods.flush_expired(self, max_count)
  check_self(self)
  if max_count ~= nil and type(max_count) ~= "number" then error('bad "max_count" argument', 2) end
  return C.rl_shdict_flush_expired(self, max_count or 0)
end

-- keys = dict:get_keys(max_count?): at most 1024 by default, 0 = all.
function methods.get_keys(self, max_count)
  check_self(self)
  if max_count == nil then max_count = 1024 end
  if type(max_count) ~= "number" or max_count < 0 then error('bad "max_count" argument', 2) end
  local need = C.rl_shdict_keys(self, max_count, buf, bufsz, nkeys)
  while need > bufsz do
    grow(tonumber(need))
    need = C.rl_shdict_keys(self, max_count, buf, bufsz, nkeys)
  end
  local keys, p = {}, 0
  for i = 1, nkeys[0] do
    local n = ffi.cast("uint32_t *", buf + p)[0]
    keys[i] = ffi_string(buf + p + 4, n)
    p = p + 4 + n
  end
  return keys
end

function methods.capacity(self)
  check_self(self)
  return tonumber(C.rl_shdict_capacity(self))
end

function methods.free_space(self)
  check_self(self)
  return tonumber(C.rl_shdict_free_space(self))
end

-- A metatype is set once per Lua state: a second load of this module (busted
-- unloads modules between spec files) keeps the first one's methods, which
-- work the same.
pcall(ffi.metatype, "struct rl_shdict", {
  __index = methods,
  __tostring = function(self) return "shdict: " .. ffi_string(C.rl_shdict_name(self)) end,
})

-- ringline.shared: name -> dictionary, looked up in the process's registry
-- on first use (a dictionary another worker opened later is found too).
-- The objects are kept in `found`, not in the table itself, so the table
-- stays empty to pairs() and the same object comes back each time.
local found = {}
local shared_mt = M
M.__index = function(_, name)
    local d = found[name]
    if d then return d end
    if type(name) ~= "string" then return nil end
    local p = C.rl_shdict_find(name)
    if p == nil then return nil end
    found[name] = p
    return p
end
M.__newindex = function() error("ringline.shared is read-only: declare dictionaries with "
    .. "ringline.configure{ shared_dicts = {...} } or --shared-dict", 2) end

local ERRS = { [EINVAL] = "bad name or size", [EEXIST] = "exists with another size",
               [-28] = "too many dictionaries (64)", [ENOMEM] = "out of memory" }

-- Parse a size: a number of bytes or "10m"/"512k"/"1g". Returns bytes or
-- nil, why.
function M.parse_size(size)
  if type(size) == "number" then
    if size % 1 ~= 0 or size < 0 then return nil, "bad size " .. tostring(size) end
    return size
  end
  if type(size) ~= "string" then return nil, "bad size type " .. type(size) end
  local out = ffi_new("size_t[1]")
  local rc = C.rl_shdict_parse_size(size, out)
  if rc < 0 then return nil, "bad size '" .. size .. "'" end
  return tonumber(out[0])
end

-- Check a shared_dicts table (name -> size) without opening anything:
-- a list of {name, bytes}, or nil, why.
function M.check(t)
  if type(t) ~= "table" then return nil, "expected a table of name = size" end
  local list = {}
  for name, size in pairs(t) do
    if type(name) ~= "string" or not name:match("^[%w_]+$") or #name > 63 then
      return nil, "bad dictionary name '" .. tostring(name) .. "' (1-63 of A-Z a-z 0-9 _)"
    end
    local bytes, err = M.parse_size(size)
    if not bytes then return nil, name .. ": " .. err end
    if bytes < 16384 or bytes > 64 * 2 ^ 30 then
      return nil, name .. ": size " .. tostring(size) .. " out of range (16k..64g)"
    end
    list[#list + 1] = { name, bytes }
  end
  return list
end

-- Open the dictionaries of a checked list; nil, why on the first failure.
function M.open_all(list)
  local out = ffi_new("struct rl_shdict *[1]")
  for i = 1, #list do
    local rc = C.rl_shdict_open(list[i][1], list[i][2], out)
    if rc < 0 then
      return nil, list[i][1] .. ": " .. (ERRS[rc] or ("error " .. rc))
    end
  end
  return true
end

return setmetatable({}, shared_mt)
