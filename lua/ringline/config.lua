-- ringline.config: a run's configuration and the C worker made from it.
--
-- S.cfg (made by sched's new_state) mirrors the core's struct rl_config;
-- configure() applies keys to it all or nothing (the core checks each key
-- and then the whole), plus the Lua-level keys of LUA_KEYS kept on S. The
-- C worker is created from it on first use (start), so ringline.configure
-- works until the first call that needs the worker (listen, connect, sleep,
-- now, metrics).
local ffi = require "ffi"
local C = require "ringline.lib"
local errors = require "ringline.errors"
local check = require "ringline.check"
local H = require "ringline.host"
local shdict = getmetatable(require "ringline.shdict")   -- check, open_all

local type, error, tostring, pairs = type, error, tostring, pairs
local errstr = errors.errstr
local ffi_string, ffi_new = ffi.string, ffi.new

local M = {}

local NEVS = 256          -- events per poll; the array is allocated once per worker
local MSGLEN = 256        -- the core's error message buffer (S.msg)
M.NEVS, M.MSGLEN = NEVS, MSGLEN

-- The lifecycle hooks, set with sched.hook (ringline.sched lists them and
-- who sets each). This module runs two: started(S, w) in start below and
-- configured(S) in configure.
local hooks = {}
M.hooks = hooks

-- Lua-level configuration keys (not in struct rl_config): min, max, doc,
-- default. Each is kept on the worker state as S[key]; add a row here and
-- read S[key] where it applies (--help, --set and ringline.config see it).
local LUA_KEYS = {
  line_max = { 1, 2 ^ 31 - 1,
    "longest line or receiveuntil part buffered before \"too long\"", 1048576 },
  -- Every wait has a finite default, as OpenResty's lua_socket_*_timeout
  -- (60 s): a peer that sends nothing cannot hold a slot for ever.
  connect_timeout = { 0, 2 ^ 31 - 1,
    "ms ringline.connect waits when opts.timeout is not given (0 = no limit)", 60000 },
  read_timeout = { 0, 2 ^ 31 - 1,
    "ms a receive waits, the default of each connection's settimeout(s) (0 = no limit)", 60000 },
  send_timeout = { 0, 2 ^ 31 - 1,
    "ms a send or flush waits, the default of each connection's settimeout(s) (0 = no limit)", 60000 },
  max_tasks = { 1, 2 ^ 31 - 1,
    "live tasks per worker; spawn past it returns nil, \"too many tasks\" and accepts are reset", 100000 },
  max_connections_per_ip = { 0, 2 ^ 20,
    "accepted connections per peer address per worker, the rest reset (0 = no limit)", 0 },
  shed_idle = { 0, 1,
    "1: an accept that leaves at most one free slot resets the longest-idle accepted connection", 0 },
  watchdog_timeout = { 0, 2 ^ 31 - 1,
    "ms a worker may run without its loop turning before the host's watchdog reports it (0 = off)", 5000 },
  watchdog_abort = { 0, 1, "1: the watchdog aborts the process (a supervisor restarts it)", 0 },
  max_receive = { 1, 2 ^ 30,
    "most bytes receive(n), receive(\"*a\") or view(min) buffers before \"too large\"", 67108864 },
}
M.LUA_KEYS = LUA_KEYS

-- What the keys mean in the units the Lua layer uses: a new connection's
-- timeouts in seconds (false = none), kept so conn.new only copies them.
local function derive(S)
  local r, w = S.read_timeout, S.send_timeout
  S.read_to_s = r > 0 and r / 1000 or false
  S.send_to_s = w > 0 and w / 1000 or false
  local h = hooks.configured
  if h then h(S) end
end

-- Set every Lua-level key of S to its default.
function M.lua_defaults(S)
  for k, v in pairs(LUA_KEYS) do S[k] = v[4] end
  derive(S)
end

-- Every configuration key (the core's and LUA_KEYS) plus the keys of skip,
-- as the valid-key table of ringline.check: what an unknown key's message lists.
local function valid_keys(skip)
  local v = {}
  local n = ffi_new("int[1]")
  local keys = C.rl_config_keys(n)
  for i = 0, n[0] - 1 do v[ffi_string(keys[i].name)] = true end
  for k in pairs(LUA_KEYS) do v[k] = true end
  v.metrics = true
  v.shared_dicts = true      -- a table, not a number: see configure
  if skip then
    for k in pairs(skip) do v[k] = true end
  end
  return v
end
M.valid_keys = valid_keys

-- Apply a table of configuration keys to S (all or nothing). lvl: the error level.
local function configure(S, t, lvl, skip)
  lvl = lvl + 1
  local what = skip and "ringline.run" or "ringline.configure"   -- skip: run's own keys
  local tmp = ffi_new("struct rl_config")
  ffi.copy(tmp, S.cfg, ffi.sizeof(tmp))
  local lua_vals, valid, metrics, dicts = {}, nil, nil, nil
  for k, v in pairs(t) do
    if k == "metrics" and not (skip and skip[k]) then
      -- the host's endpoint (bindings/host/metrics.c): an address, not a number
      if type(v) ~= "string" or v == "" then
        error(what .. ": metrics: expected an address (host:port), got " .. tostring(v), lvl)
      end
      if not H then
        error(what .. ": metrics: only the ringline-lua host serves metrics", lvl)
      end
      metrics = v
    elseif k == "shared_dicts" then
      -- name -> size ("10m"): process-wide dictionaries (ringline.shdict),
      -- opened once every other key passed
      local err
      dicts, err = shdict.check(v)
      if not dicts then error(what .. ": shared_dicts: " .. err, lvl) end
    elseif not (skip and skip[k]) then
      if type(k) ~= "string" then
        error(what .. ": keys must be strings, got " .. type(k), lvl)
      end
      valid = valid or valid_keys(skip)
      if not valid[k] then
        error(("%s: unknown configuration key '%s' (valid: %s)"):format(what, k, check.list(valid)),
          lvl)
      end
      if type(v) ~= "number" or v ~= v or v % 1 ~= 0 then
        error(what .. ": " .. k .. ": expected an integer, got " .. tostring(v), lvl)
      end
      local lk = LUA_KEYS[k]
      if lk then
        if v < lk[1] or v > lk[2] then
          error(("%s: %s: %s is out of range (%d..%d)"):format(what, k, tostring(v),
            lk[1], lk[2]), lvl)
        end
        lua_vals[k] = v
      else
        local rc = C.rl_config_set(tmp, k, v, S.msg, MSGLEN)
        if rc < 0 then error(what .. ": " .. ffi_string(S.msg), lvl) end
      end
    end
  end
  local rc = C.rl_config_validate(tmp, S.msg, MSGLEN)
  if rc < 0 then error(what .. ": " .. ffi_string(S.msg), lvl) end
  if dicts then
    local ok, err = shdict.open_all(dicts)
    if not ok then error(what .. ": shared_dicts: " .. err, lvl) end
  end
  if metrics then
    rc = H.rl_host_metrics_listen(metrics, S.msg, MSGLEN)
    if rc < 0 then error(what .. ": metrics: " .. ffi_string(S.msg), lvl) end
  end
  ffi.copy(S.cfg, tmp, ffi.sizeof(tmp))
  for k, v in pairs(lua_vals) do S[k] = v end
  derive(S)
end
M.configure = configure

-- Create the C worker on first use, so configure() works until the first I/O.
local function start(S)
  local w = S.w
  if w then return w end
  if S.dead then error("ringline: the worker of this run is gone", 3) end
  local pw = ffi_new("struct rl_worker *[1]")
  ffi.fill(S.msg, MSGLEN)
  local rc = C.rl_worker_new(S.cfg, pw, S.msg, MSGLEN)
  if rc < 0 then
    local m = ffi_string(S.msg)
    error("ringline: cannot create the worker: " .. (m ~= "" and m or errstr(rc)), 3)
  end
  w = pw[0]
  S.w = w
  -- the values in effect (max_connections = 0 is resolved by the core):
  -- ringline.config and shed_idle read them
  ffi.copy(S.cfg, C.rl_worker_config(w), ffi.sizeof("struct rl_config"))
  S.evs = ffi_new("struct rl_event[?]", NEVS)
  S.hiwat = S.cfg.send_high_watermark
  S.lowat = S.cfg.send_low_watermark
  -- a copied send waits for room before unsent would pass this (conn_send)
  S.sendcap = S.hiwat + S.cfg.send_slot_size
  local h = hooks.started
  if h then h(S, w) end
  return w
end
M.start = start

return M
