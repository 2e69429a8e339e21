-- ringline.http: an HTTP/1.1 server on ringline.listen.
--
--   local http = require "ringline.http"
--   assert(http.listen("127.0.0.1:8080", function(req, res)
--     res:header("Content-Type", "text/plain")
--     res:finish("hello\n")
--   end))
--
-- This file holds the options, the cached Date header (one timer per
-- worker, once a second) and the access log; the connection loop and the
-- req/res objects are ringline.http_server, the parser ringline.http_parse,
-- request bodies ringline.http_body. docs/api.md is the reference.
local ringline = require "ringline"
local check = require "ringline.check"
local server = require "ringline.http_server"
local client = require "ringline.http_client"

local type, tostring, error = type, tostring, error
local clock = server.clock

local M = {}

-- The client (ringline.http_client) and the server's WebSocket upgrade.
M.request, M.get, M.websocket_connect = client.request, client.get, client.websocket_connect
M.websocket = server.websocket

-- The options of http.listen and their defaults; PASS: ringline.listen's
-- own, handed to it as they are (`ssl = { cert = ..., key = ... }` for TLS,
-- checked there).
local DEFAULTS = {
  max_header_bytes = 8192, max_body_bytes = 1048576,
  header_timeout = 10000, keepalive_timeout = 60000,
}
local PASS = {
  ssl = true, max_connections = true, accept = true,
  reuseport = true, nodelay = true, backlog = true, mode = true,
}
local VALID = { access_log = true }
for k in pairs(DEFAULTS) do VALID[k] = true end
for k in pairs(PASS) do VALID[k] = true end

------------------------------------------------------------------------
-- The clock: "Date: ...\r\n" and the access log's time, once a second
------------------------------------------------------------------------

local timer

-- English names whatever the C locale says (strftime's %a and %b follow it).
local DAYS = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" }
local MONTHS = { "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" }

local function tick()
  local d = os.date("!*t")
  clock.date = ("Date: %s, %02d %s %04d %02d:%02d:%02d GMT\r\n"):format(
    DAYS[d.wday], d.day, MONTHS[d.month], d.year, d.hour, d.min, d.sec)
  clock.log = ("%02d/%s/%04d:%02d:%02d:%02d +0000"):format(
    d.day, MONTHS[d.month], d.year, d.hour, d.min, d.sec)
end

local function start_clock()
  if timer and timer:pending() then return end
  tick()
  timer = ringline.timer.every(1, function(premature)
    if not premature then tick() end
  end)
end

------------------------------------------------------------------------
-- Access log (combined log format)
------------------------------------------------------------------------

local function quote(s)
  if not s then return "-" end
  if type(s) == "table" then s = table.concat(s, ", ") end
  if s:find('["\\]') then
    s = s:gsub('["\\]', function(c) return ("\\x%02X"):format(c:byte()) end)
  end
  return s
end

local function open_log(where)
  if where == "stderr" then return io.stderr end
  local f, err = io.open(where, "a")
  if not f then return nil, err end
  f:setvbuf("line")   -- one write per line: workers appending never mix lines
  return f
end

-- The log function for one listener: st.log(st, req or nil, status, bytes).
local function logger(f)
  return function(st, req, status, bytes)
    local peer = st.peer
    if not peer then
      peer = st.conn:getpeername() or "-"
      st.peer = peer
    end
    local line
    if req then
      local h = req.headers
      line = ('%s - - [%s] "%s %s HTTP/%s" %d %s "%s" "%s"\n'):format(
        peer, clock.log, req.method, quote(req.target), req.version, status,
        bytes > 0 and tostring(bytes) or "-", quote(h.referer), quote(h["user-agent"]))
    else
      line = ('%s - - [%s] "-" %d - "-" "-"\n'):format(peer, clock.log, status)
    end
    f:write(line)
  end
end

------------------------------------------------------------------------
-- http.listen
------------------------------------------------------------------------

local function limit(opts, k, lo, hi)
  local v = opts[k]
  if v == nil then return DEFAULTS[k] end
  if type(v) ~= "number" or v ~= v or v < lo or v > hi or v % 1 ~= 0 then
    error(("http.listen: opts.%s must be an integer in %d..%d"):format(k, lo, hi), 3)
  end
  return v
end

-- http.listen(addr, handler(req, res) [, opts]) -> a ringline listener, or nil, err
function M.listen(addr, handler, opts)
  if type(handler) ~= "function" then error("http.listen: handler must be a function", 2) end
  check.options(opts, VALID, "http.listen")
  opts = opts or {}
  local cfg = {
    max_header_bytes = limit(opts, "max_header_bytes", 64, 1048576),
    max_body_bytes = limit(opts, "max_body_bytes", 0, 1073741824),
    header_timeout = limit(opts, "header_timeout", 0, 86400000),
    keepalive_timeout = limit(opts, "keepalive_timeout", 0, 86400000),
  }
  local lopts
  for k in pairs(PASS) do
    if opts[k] ~= nil then
      lopts = lopts or {}
      lopts[k] = opts[k]
    end
  end
  local log = opts.access_log
  if log ~= nil then
    if type(log) ~= "string" or log == "" then
      error("http.listen: opts.access_log must be a path or \"stderr\"", 2)
    end
    local f, err = open_log(log)
    if not f then return nil, err end
    cfg.log = logger(f)
  end
  start_clock()
  local serve = server.serve
  local lst, err = ringline.listen(addr, function(conn)
    return serve(conn, cfg, handler)
  end, lopts)
  if not lst then return nil, err end
  return lst
end

return M
