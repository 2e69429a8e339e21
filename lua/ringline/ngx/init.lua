-- ringline.ngx: OpenResty's ngx API on ringline, so lua-resty-* libraries
-- run unchanged. `require "ringline.ngx"` installs the global `ngx` (once;
-- it returns the same table again) and package.preload entries for the
-- modules libraries require by name (ngx.semaphore, ngx.base64, ngx.re,
-- resty.core). docs/openresty.md lists every name: supported, not, and the
-- differences. A name that cannot be mapped raises, naming itself.
--
-- The parts: ringline.ngx.socket (cosockets), .tasks (sleep, timer,
-- thread, worker, exit, get_phase), .time, .string (encodings, digests,
-- URI helpers), .req (ngx.req/var/header/status/ctx and the output calls
-- inside a ringline.http handler). ngx.re and ngx.shared come from
-- ringline.re and ringline.shdict, loaded at first use.
local ringline = require "ringline"
local log = require "ringline.log"
local sync = require "ringline.sync"
local socket = require "ringline.ngx.socket"
local req = require "ringline.ngx.req"
local tasks = require "ringline.ngx.tasks"
local time = require "ringline.ngx.time"
local str = require "ringline.ngx.string"

local type, error, tostring, pcall, require, setmetatable, rawset =
  type, error, tostring, pcall, require, setmetatable, rawset

local ngx = {}

-- OpenResty's coroutine.resume/wrap let cosocket calls inside user
-- coroutines (lua-resty-http's body readers) wait: ringline.coroutine's
-- do the same. The originals go to the registry first, where ringline.task
-- finds them for its own tasks.
do
  local reg = debug.getregistry()
  if not reg["ringline.rawco"] then
    local raw = {}
    for k, v in pairs(coroutine) do raw[k] = v end
    reg["ringline.rawco"] = raw
  end
  coroutine.resume = ringline.coroutine.resume
  coroutine.wrap = ringline.coroutine.wrap
end

-- ngx.null: cjson's null (a NULL light userdata, as OpenResty's), so the
-- two compare equal; a private sentinel when cjson is absent.
do
  local ok, cjson = pcall(require, "cjson")
  ngx.null = ok and cjson.null or setmetatable({}, { __tostring = function() return "null" end })
end

-- Levels, nginx's numbers; STDERR..CRIT log as ERR (ringline's most severe).
ngx.STDERR, ngx.EMERG, ngx.ALERT, ngx.CRIT = 0, 1, 2, 3
ngx.ERR, ngx.WARN, ngx.NOTICE, ngx.INFO, ngx.DEBUG = 4, 5, 6, 7, 8

function ngx.log(level, ...)
  if type(level) ~= "number" or level < 0 or level > 8 or level % 1 ~= 0 then
    error("ngx.log: bad log level " .. tostring(level), 2)
  end
  if level < 4 then level = 4 end
  local n = select("#", ...)
  local parts = { ... }
  for i = 1, n do
    local v = parts[i]
    if v == ngx.null then parts[i] = "null" elseif type(v) ~= "string" then parts[i] = tostring(v) end
  end
  return log.log(level, table.concat(parts, "", 1, n))
end

ngx.OK, ngx.ERROR, ngx.AGAIN, ngx.DONE, ngx.DECLINED = 0, -1, -2, -4, -5
for k, v in pairs({
  HTTP_CONTINUE = 100, HTTP_SWITCHING_PROTOCOLS = 101, HTTP_OK = 200, HTTP_CREATED = 201,
  HTTP_ACCEPTED = 202, HTTP_NO_CONTENT = 204, HTTP_PARTIAL_CONTENT = 206,
  HTTP_SPECIAL_RESPONSE = 300, HTTP_MOVED_PERMANENTLY = 301, HTTP_MOVED_TEMPORARILY = 302,
  HTTP_SEE_OTHER = 303, HTTP_NOT_MODIFIED = 304, HTTP_TEMPORARY_REDIRECT = 307,
  HTTP_PERMANENT_REDIRECT = 308, HTTP_BAD_REQUEST = 400, HTTP_UNAUTHORIZED = 401,
  HTTP_PAYMENT_REQUIRED = 402, HTTP_FORBIDDEN = 403, HTTP_NOT_FOUND = 404,
  HTTP_NOT_ALLOWED = 405, HTTP_NOT_ACCEPTABLE = 406, HTTP_REQUEST_TIMEOUT = 408,
  HTTP_CONFLICT = 409, HTTP_GONE = 410, HTTP_UPGRADE_REQUIRED = 426,
  HTTP_TOO_MANY_REQUESTS = 429, HTTP_CLOSE = 444, HTTP_ILLEGAL = 451,
  HTTP_INTERNAL_SERVER_ERROR = 500, HTTP_METHOD_NOT_IMPLEMENTED = 501, HTTP_BAD_GATEWAY = 502,
  HTTP_SERVICE_UNAVAILABLE = 503, HTTP_GATEWAY_TIMEOUT = 504, HTTP_VERSION_NOT_SUPPORTED = 505,
  HTTP_INSUFFICIENT_STORAGE = 507,
  HTTP_GET = 2, HTTP_HEAD = 4, HTTP_POST = 8, HTTP_PUT = 16, HTTP_DELETE = 32,
  HTTP_MKCOL = 64, HTTP_COPY = 128, HTTP_MOVE = 256, HTTP_OPTIONS = 512,
  HTTP_PROPFIND = 1024, HTTP_PROPPATCH = 2048, HTTP_LOCK = 4096, HTTP_UNLOCK = 8192,
  HTTP_PATCH = 16384, HTTP_TRACE = 32768,
}) do ngx[k] = v end

ngx.config = {
  ngx_lua_version = 10026,      -- the lua-nginx-module API this follows (0.10.26)
  nginx_version = 1025003,
  subsystem = "http",
  debug = false,
  is_console = false,
  prefix = function() return (os.getenv("PWD") or ".") .. "/" end,
  nginx_configure = function() return "" end,
}

ngx.socket = { tcp = socket.tcp, udp = socket.udp, connect = socket.connect, stream = socket.tcp }

ngx.sleep = tasks.sleep
ngx.timer = tasks.timer
ngx.thread = tasks.thread
ngx.worker = tasks.worker
ngx.exit = tasks.exit
ngx.get_phase = tasks.get_phase

for _, k in ipairs({ "now", "time", "update_time", "today", "localtime", "utctime", "http_time",
                     "cookie_time", "parse_http_time" }) do
  ngx[k] = time[k]
end

for _, k in ipairs({ "encode_base64", "decode_base64", "md5", "md5_bin", "sha1_bin", "hmac_sha1",
                     "crc32_short", "crc32_long", "escape_uri", "unescape_uri", "encode_args",
                     "decode_args", "quote_sql_str" }) do
  ngx[k] = str[k]
end

ngx.req = req.req
ngx.var = req.var
ngx.header = req.header
ngx.say = function(...) return req.output(ngx.null, true, ...) end
ngx.print = function(...) return req.output(ngx.null, false, ...) end
ngx.flush = req.flush
ngx.eof = req.eof
ngx.send_headers = req.send_headers
ngx.headers_sent = function() return req.headers_sent() end
ngx.redirect = req.redirect
ngx.is_subrequest = false

-- What nginx has and ringline does not: each raises, naming itself.
local function unsupported(name, why)
  return function()
    error(name .. ": not supported by ringline" .. (why and (" (" .. why .. ")") or ""), 2)
  end
end
ngx.exec = unsupported("ngx.exec", "no internal redirects")
ngx.on_abort = unsupported("ngx.on_abort")
ngx.location = {
  capture = unsupported("ngx.location.capture", "no subrequests"),
  capture_multi = unsupported("ngx.location.capture_multi", "no subrequests"),
}
ngx.resp = { get_headers = req.resp_get_headers }
ngx.run_worker_thread = unsupported("ngx.run_worker_thread")
ngx.arg = setmetatable({}, { __index = function(_, k)
  error("ngx.arg[" .. tostring(k) .. "]: not supported by ringline (no output filters)", 2)
end })

-- ngx.status and ngx.ctx (per request or task), ngx.re and ngx.shared (at
-- first use, from their ringline modules), everything else absent (nil,
-- as OpenResty answers for a name it does not have).
local lazy = {}

local function missing_module(name, mod, err)
  return setmetatable({}, { __index = function(_, k)
    error(name .. "." .. tostring(k) .. ": not available: " .. name .. " is provided by " .. mod
      .. ", which failed to load (" .. tostring(err):match("^[^\n]*") .. ")", 2)
  end })
end

function lazy.re()
  local ok, m = pcall(require, "ringline.re")
  if not ok then return missing_module("ngx.re", "ringline.re", m) end
  return m
end

function lazy.shared()
  local ok, m = pcall(require, "ringline.shdict")
  if not ok then return missing_module("ngx.shared", "ringline.shdict", m) end
  -- the module's value is the name -> dictionary table itself (ringline.shared);
  -- any other key of it is a dictionary's name
  return m
end

setmetatable(ngx, {
  __index = function(t, k)
    if k == "status" then return req.get_status() end
    if k == "ctx" then return req.get_ctx() end
    local f = lazy[k]
    if f then
      local v = f()
      rawset(t, k, v)
      return v
    end
    return nil
  end,
  __newindex = function(t, k, v)
    if k == "status" then return req.set_status(v) end
    if k == "ctx" then return req.set_ctx(v) end
    rawset(t, k, v)
  end,
})

------------------------------------------------------------------------
-- Modules libraries require by name
------------------------------------------------------------------------

-- ngx.semaphore: OpenResty's API on ringline.semaphore (timeouts in
-- seconds; wait returns true or nil, "timeout").
local Sema = {}
local sema_mt = { __index = Sema }
local semaphore = {
  new = function(n)
    n = n or 0
    if type(n) ~= "number" or n < 0 or n % 1 ~= 0 then return nil, "bad resource count" end
    return setmetatable({ s = sync.semaphore(n) }, sema_mt)
  end,
}
function Sema.post(self, n)
  n = n or 1
  if n > 0 then self.s:post(n) end
  return true
end
function Sema.wait(self, timeout)
  if timeout == nil then timeout = 0 end
  local ok, err = self.s:wait(timeout)
  if ok then return true end
  return nil, err
end
function Sema.count(self) return self.s:count() end

local preload = {
  ["ngx.semaphore"] = function() return semaphore end,
  ["ngx.base64"] = function() return str.base64 end,
  ["ngx.re"] = function() return ngx.re end,
  -- resty.core is built into this API: requiring it loads nothing more
  ["resty.core"] = function() return true end,
  ["ngx.process"] = function()
    return { type = function() return "worker" end,
             enable_privileged_agent = unsupported("ngx.process.enable_privileged_agent"),
             signal_graceful_exit = function() return ringline.exit() end,
             get_master_pid = function() return nil end }
  end,
}
-- The entries look the module up at require time, in the ringline.ngx
-- loaded then: an entry left from an earlier load (busted's insulation
-- reloads modules, package.preload stays) never hands out stale state.
rawset(ngx, "_preload", preload)
local function entry(name)
  return require("ringline.ngx")._preload[name]()
end
for name in pairs(preload) do
  if package.preload[name] == nil and package.loaded[name] == nil then package.preload[name] = entry end
end

rawset(_G, "ngx", ngx)
return ngx
