-- ringline.ngx.req: where nginx has a request - ngx.req, ngx.var,
-- ngx.header, ngx.status, ngx.ctx, and ngx.say/print/flush/eof/exit/redirect
-- inside a ringline.http handler - mapped onto its req and res.
--
-- The request is found by the running task (ringline.http_server.by_task:
-- a connection's task serves one request at a time; ngx.thread.spawn makes
-- a thread inherit its parent's). Outside a request the request APIs raise
-- OpenResty's own error, "API disabled in the current context".
local ringline = require "ringline"
local http_server = require "ringline.http_server"
local str = require "ringline.ngx.string"

local type, error, tostring, tonumber, pairs, setmetatable, rawget, select =
  type, error, tostring, tonumber, pairs, setmetatable, rawget, select
local concat = table.concat

local M = {}

local by_task = http_server.by_task
local EXIT = http_server.EXIT
-- from now on every ringline.http connection records its request (off
-- until ringline.ngx is loaded: it costs the JIT its allocation sinking)
http_server.track = true

-- The serving state of the running task's request, or nil.
local function state()
  local t = ringline.current()
  local st = t and by_task[t]
  if st and st.active then return st end
end

function M.active() return state() ~= nil end

-- A thread made by ngx.thread.spawn shares its parent's request.
function M.inherit(child, parent)
  local st = by_task[parent]
  if st then by_task[child] = st end
end

local function need(what)
  local st = state()
  if not st then error(what .. ": API disabled in the current context", 3) end
  return st
end

------------------------------------------------------------------------
-- ngx.req
------------------------------------------------------------------------

-- Headers: names lower case; a lookup in any case, with _ for -, works
-- (OpenResty's get_headers table does the same).
local hdr_mt = {
  __index = function(t, k)
    if type(k) ~= "string" then return nil end
    return rawget(t, (k:lower():gsub("_", "-")))
  end,
}

local function form(body)
  return str.decode_args(body)
end

M.req = {
  get_method = function() return need("ngx.req.get_method").req.method end,
  http_version = function()
    return tonumber(need("ngx.req.http_version").req.version)
  end,
  get_uri_args = function(max)
    local q = need("ngx.req.get_uri_args").req.query
    return str.decode_args(q or "", max)
  end,
  get_headers = function(max, raw)
    local h = need("ngx.req.get_headers").req.headers
    local t = {}
    for k, v in pairs(h) do t[k] = v end
    if raw then return t end
    return setmetatable(t, hdr_mt)
  end,
  read_body = function()
    local st = need("ngx.req.read_body")
    local ok, err = st.req:body()
    if not ok then error("ngx.req.read_body: " .. tostring(err), 2) end
  end,
  get_body_data = function()
    local b = need("ngx.req.get_body_data").req._body
    if not b or b == "" then return nil end
    return b
  end,
  get_body_file = function() need("ngx.req.get_body_file") return nil end,
  discard_body = function() need("ngx.req.discard_body") end,  -- the server drains it
  get_post_args = function(max)
    local st = need("ngx.req.get_post_args")
    local b = st.req._body
    if not b then return nil, "request body not read" end
    local ct = st.req.headers["content-type"] or ""
    if not ct:lower():find("application/x-www-form-urlencoded", 1, true) then return {} end
    return str.decode_args(b, max)
  end,
  start_time = function()
    local st = need("ngx.req.start_time")
    return st.req._start or require("ringline.ngx.time").now()
  end,
  is_internal = function() need("ngx.req.is_internal") return false end,
  -- the head as it came (ringline.http keeps it whole: req._head)
  raw_header = function(no_request_line)
    local h = rawget(need("ngx.req.raw_header").req, "_head")
    if no_request_line then h = h:match("^[^\n]*\n(.*)$") or "" end
    return h
  end,
}
for _, name in ipairs({ "set_header", "clear_header", "set_uri", "set_uri_args", "set_method",
                        "set_body_data", "set_body_file", "init_body", "append_body",
                        "finish_body", "socket" }) do
  M.req[name] = function()
    error("ngx.req." .. name .. ": not supported by ringline (the request is read-only)", 2)
  end
end

------------------------------------------------------------------------
-- ngx.var
------------------------------------------------------------------------

local function host_of(st)
  local h = st.req.headers.host
  if h then return (h:match("^%[[^%]]*%]") or h:match("^[^:]*")):lower() end
  return (st.conn:getsockname())
end

-- $binary_remote_addr: the peer's address in network byte order (4 or 16
-- bytes), the key lua-resty-limit-traffic uses.
local ffi = require "ffi"
pcall(ffi.cdef, "int inet_pton(int af, const char *src, void *dst);")
pcall(ffi.cdef, "int getpid(void);")
local addrbuf = ffi.new("uint8_t[16]")
local function binary_addr(ip)
  if not ip then return nil end
  if ffi.C.inet_pton(2, ip, addrbuf) == 1 then return ffi.string(addrbuf, 4) end
  if ffi.C.inet_pton(10, ip, addrbuf) == 1 then return ffi.string(addrbuf, 16) end
  return nil
end

local VARS = {
  binary_remote_addr = function(st) return binary_addr((st.conn:getpeername())) end,
  msec = function() return ("%.3f"):format(require("ringline.ngx.time").now()) end,
  pid = function() return tostring(ffi.C.getpid()) end,
  request_uri = function(st) return st.req.target end,
  uri = function(st) return str.unescape_path(st.req.path) end,
  document_uri = function(st) return str.unescape_path(st.req.path) end,
  args = function(st) return st.req.query end,
  query_string = function(st) return st.req.query end,
  is_args = function(st) return st.req.query and "?" or "" end,
  host = host_of,
  server_name = host_of,
  remote_addr = function(st) return (st.conn:getpeername()) end,
  remote_port = function(st) return tostring(select(2, st.conn:getpeername())) end,
  server_addr = function(st) return (st.conn:getsockname()) end,
  server_port = function(st) return tostring(select(2, st.conn:getsockname())) end,
  request_method = function(st) return st.req.method end,
  server_protocol = function(st) return "HTTP/" .. st.req.version end,
  scheme = function(st) return st.conn.tls and "https" or "http" end,
  https = function(st) return st.conn.tls and "on" or "" end,
  request = function(st) return st.req.method .. " " .. st.req.target .. " HTTP/" .. st.req.version end,
  content_type = function(st) return st.req.headers["content-type"] end,
  content_length = function(st) return st.req.headers["content-length"] end,
  request_body = function(st) local b = st.req._body return b ~= "" and b or nil end,
  status = function(st) return tostring(st.res.code) end,
}

M.var = setmetatable({}, {
  __index = function(_, k)
    local st = need("ngx.var")
    local f = VARS[k]
    if f then return f(st) end
    if type(k) ~= "string" then return nil end
    local name = k:match("^arg_(.+)$")
    if name then
      local q = st.req.query
      if not q then return nil end
      local v = str.decode_args(q)[name]
      if type(v) == "table" then v = v[1] end
      if v == true then return "" end
      return v
    end
    name = k:match("^http_(.+)$")
    if name then return st.req.headers[(name:gsub("_", "-"))] end
    name = k:match("^cookie_(.+)$")
    if name then
      local c = st.req.headers.cookie
      if not c then return nil end
      for part in c:gmatch("[^;]+") do
        local ck, cv = part:match("^%s*([^=]-)%s*=%s*(.-)%s*$")
        if ck == name then return cv end
      end
      return nil
    end
    return nil
  end,
  __newindex = function(_, k)
    need("ngx.var")
    error("ngx.var." .. tostring(k) .. ": variables cannot be set (ringline has no nginx variables)", 2)
  end,
})

------------------------------------------------------------------------
-- ngx.header, ngx.status, ngx.ctx
------------------------------------------------------------------------

-- ngx.header.content_type -> "Content-Type"; a name with capitals is kept
-- as written (with - for _), as OpenResty sends it.
local function header_name(k)
  local name = tostring(k):gsub("_", "-")
  if not name:find("%u") then
    name = name:gsub("^%l", string.upper):gsub("%-%l", string.upper)
  end
  return name
end

M.header = setmetatable({}, {
  __index = function(_, k)
    local res = need("ngx.header").res
    local h = res.hdrs
    if not h then return nil end
    local want = header_name(k):lower()
    -- res.hdrs: name, value, name, value... (an array value: one pair each)
    local vals
    for i = 1, #h, 2 do
      if h[i]:lower() == want then
        if vals then vals[#vals + 1] = h[i + 1] else vals = { h[i + 1] } end
      end
    end
    if vals and #vals == 1 then return vals[1] end
    return vals
  end,
  __newindex = function(_, k, v)
    local res = need("ngx.header").res
    local name = header_name(k)
    local lk = name:lower()
    -- ringline.http frames the body itself
    if lk == "content-length" or lk == "transfer-encoding" then return end
    if res.started then
      ringline.log(ringline.ERR, "attempt to set ngx.header.", name, " after sending out response headers")
      return
    end
    res:header(name, v)
  end,
})

-- ngx.resp.get_headers([max [, raw]]): the response headers set so far
-- (lower-case names unless raw; a name set several times: an array).
function M.resp_get_headers(max, raw)
  local res = need("ngx.resp.get_headers").res
  local t = {}
  local h = res.hdrs
  if h then
    for i = 1, #h, 2 do
      local k = raw and h[i] or h[i]:lower()
      local v = tostring(h[i + 1])
      local old = t[k]
      if old == nil then
        t[k] = v
      elseif type(old) == "table" then
        old[#old + 1] = v
      else
        t[k] = { old, v }
      end
    end
  end
  if raw then return t end
  return setmetatable(t, hdr_mt)
end

function M.get_status()
  return need("ngx.status").res.code
end

function M.set_status(v)
  local res = need("ngx.status").res
  if res.started then
    ringline.log(ringline.ERR, "attempt to set ngx.status after sending out response headers")
    return
  end
  res:status(tonumber(v))
end

-- ngx.ctx: one table per request inside one, per task outside.
local ctxs = setmetatable({}, { __mode = "k" })
function M.get_ctx()
  local st = state()
  local key = st and st.req or ringline.current()
  if not key then error("ngx.ctx: API disabled in the current context", 3) end
  local c = ctxs[key]
  if not c then c = {}; ctxs[key] = c end
  return c
end
function M.set_ctx(v)
  local st = state()
  local key = st and st.req or ringline.current()
  if not key then error("ngx.ctx: API disabled in the current context", 3) end
  if type(v) ~= "table" then error("ngx.ctx: expected a table", 3) end
  ctxs[key] = v
end

------------------------------------------------------------------------
-- Output
------------------------------------------------------------------------

-- Flatten ngx.say/print's arguments (nested arrays, nil, booleans, ngx.null).
local function flatten(out, n, v, null)
  local tv = type(v)
  if tv == "string" then
    n = n + 1; out[n] = v
  elseif tv == "number" then
    n = n + 1; out[n] = tostring(v)
  elseif tv == "nil" then
    n = n + 1; out[n] = "nil"
  elseif tv == "boolean" then
    n = n + 1; out[n] = v and "true" or "false"
  elseif v == null then
    n = n + 1; out[n] = "null"
  elseif tv == "table" then
    for i = 1, #v do n = flatten(out, n, v[i], null) end
  else
    error("bad argument: expected a string, number, boolean, nil, ngx.null or an array, got " .. tv, 4)
  end
  return n
end

function M.output(null, nl, ...)
  local out, n = {}, 0
  for i = 1, select("#", ...) do n = flatten(out, n, (select(i, ...)), null) end
  if nl then n = n + 1; out[n] = "\n" end
  local s = concat(out, "", 1, n)
  local st = state()
  if not st then
    io.stdout:write(s)
    return 1
  end
  local ok, err = st.res:write(s)
  if not ok then return nil, err end
  return 1
end

function M.flush()
  if not state() then io.stdout:flush() end
  return 1
end

function M.eof()
  local st = state()
  if not st then return 1 end
  if not st.res.done then st.res:finish() end
  return 1
end

function M.send_headers()
  local res = need("ngx.send_headers").res
  if not res.started then res:write("") end
  return 1
end

function M.headers_sent()
  return need("ngx.headers_sent").res.started and true or false
end

-- ngx.exit(status) in a request: status >= 200 sets it (when the head is
-- not out yet); the response is finished and the handler unwinds.
function M.exit(status)
  local res = state().res
  if not res.started and status >= 200 then res:status(status) end
  if not res.done then res:finish() end
  error(EXIT, 0)
end

function M.redirect(uri, status)
  local res = need("ngx.redirect").res
  status = status or 302
  if type(uri) ~= "string" or uri:find("[\r\n]") then error("ngx.redirect: bad uri", 2) end
  if res.started then error("ngx.redirect: the response head is already sent", 2) end
  res:status(status)
  res:header("Location", uri)
  res:finish()
  error(EXIT, 0)
end

return M
