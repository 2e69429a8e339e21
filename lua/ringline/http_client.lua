-- ringline.http_client: an HTTP/1.1 client over ringline connections.
--
--   local hc = require "ringline.http_client"
--   local res, err = hc.request{ method = "GET", url = "http://127.0.0.1:8080/x",
--                                headers = { accept = "text/plain" }, body = nil,
--                                timeout = 5000 }
--   res.status, res.headers["content-type"], res:body() / res:body_reader()
--
-- The ringline.http facade exports request, get and websocket_connect from
-- here under its own name (http.request, http.get, http.websocket_connect).
--
-- Connections are kept alive and pooled per origin (scheme, host, port):
-- a response read to its end puts its connection back, an idle connection
-- is reused by the next request to the same origin, and one the peer has
-- closed (or that has stray bytes buffered, or sat idle past
-- idle_timeout) is discarded. A request on a reused connection that fails
-- before any byte of the answer came is retried once on a new connection
-- (the peer may have closed it while it was handed out).
local ringline = require "ringline"
local sched = require "ringline.sched"

local type, tonumber, tostring, error, pairs, ipairs = type, tonumber, tostring, error, pairs, ipairs
local setmetatable, select = setmetatable, select
local concat = table.concat
local lower, sub, find, match, format = string.lower, string.sub, string.find, string.match, string.format

local M = {}

-- Defaults (documented in docs/operations.md's limits table).
M._defaults = {
  timeout = 60000,            -- ms, each connect, send and read
  max_header_bytes = 65536,   -- status line + header block
  max_body_bytes = 64 * 1024 * 1024,   -- res:body() (body_reader is not bounded)
  pool_size = 16,             -- idle connections kept per origin
  idle_timeout = 60000,       -- ms an idle pooled connection is kept
}

local MAX_CHUNK = 1024 * 1024 * 1024

------------------------------------------------------------------------
-- URLs
------------------------------------------------------------------------

-- "http://host:port/path?q" -> scheme, host (no brackets), port, target,
-- host header value; nil, "invalid url" otherwise.
function M._parse_url(url)
  if type(url) ~= "string" then return nil, "invalid url" end
  local scheme, rest = match(url, "^(%a[%w+.-]*)://(.*)$")
  if not scheme then return nil, "invalid url" end
  scheme = lower(scheme)
  local default = (scheme == "http" or scheme == "ws") and 80
    or (scheme == "https" or scheme == "wss") and 443
  if not default then return nil, "unsupported scheme" end
  local authority, target = match(rest, "^([^/?#]*)(.*)$")
  target = target:gsub("#.*$", "")
  if target == "" then target = "/" elseif sub(target, 1, 1) == "?" then target = "/" .. target end
  if find(authority, "@", 1, true) then return nil, "invalid url" end
  local host, port
  if sub(authority, 1, 1) == "[" then
    host, port = match(authority, "^%[([%x:.]+)%]:?(%d*)$")
  else
    host, port = match(authority, "^([^:]+):?(%d*)$")
  end
  if not host or host == "" then return nil, "invalid url" end
  local p = default
  if port ~= "" then
    p = #port <= 5 and tonumber(port)
    if not p or p < 1 or p > 65535 then return nil, "invalid url" end
  end
  local hosthdr = find(host, ":", 1, true) and "[" .. host .. "]" or host
  if p ~= default then hosthdr = hosthdr .. ":" .. p end
  if find(target, "[%s%c]") then return nil, "invalid url" end
  return scheme, host, p, target, hosthdr
end

------------------------------------------------------------------------
-- The pool
------------------------------------------------------------------------

-- pools[origin] = array of { conn, since } (the newest last). Per worker
-- (every worker has its own Lua state) and per run: the first use in a
-- new run drops the last run's (closed) connections.
local pools, pools_run = {}, false

local function current_pools()
  local S = sched.state()
  if S ~= pools_run then
    pools, pools_run = {}, S
  end
  return pools
end

-- Usable: open, the peer has not closed it, nothing unasked-for buffered.
-- (Reads the connection's own fields: there is no public "is it still
-- open" probe yet.)
local function alive(c)
  if c.closed then return false end
  local io = c.io
  return io.reof == 0 and io.rlen == 0
end

local function take(origin, idle_timeout)
  local list = current_pools()[origin]
  if not list then return nil end
  local now = ringline.now()
  while #list > 0 do
    local e = list[#list]
    list[#list] = nil
    local c = e[1]
    if alive(c) and (now - e[2]) * 1000 < idle_timeout then
      c:setowner(ringline.current())
      return c
    end
    c:close()
  end
  return nil
end

local function give(origin, c, pool_size)
  if not alive(c) or pool_size <= 0 then c:close() return end
  local p = current_pools()
  local list = p[origin]
  if not list then list = {} p[origin] = list end
  if #list >= pool_size then
    local old = table.remove(list, 1)
    old[1]:close()
  end
  if not c:setowner(nil) then return end
  list[#list + 1] = { c, ringline.now() }
end

-- Idle connections of an origin ("http://host:port") or of all; for tests
-- and for a program that wants to drop them.
function M._pool_count(origin)
  if origin then return pools[origin] and #pools[origin] or 0 end
  local n = 0
  for _, l in pairs(pools) do n = n + #l end
  return n
end

-- Whether an idle connection of origin is still usable (for tests).
function M._pool_alive(origin)
  for _, e in ipairs(pools[origin] or {}) do
    if alive(e[1]) then return true end
  end
  return false
end

function M._pool_close()
  for k, l in pairs(pools) do
    for _, e in ipairs(l) do e[1]:close() end
    pools[k] = nil
  end
end

------------------------------------------------------------------------
-- Responses
------------------------------------------------------------------------

local response = {}
local response_mt = { __index = response, __name = "ringline.http_client.response" }

-- Called when the body has been read to its end (or failed): the connection
-- goes back to the pool or is closed.
local function done(res, ok)
  local c = res._conn
  if not c then return end
  res._conn = false
  if ok and res._keepalive then
    give(res._origin, c, res._pool_size)
  else
    c:close()
  end
end

-- An iterator of the body's pieces: each call returns the next piece, nil
-- at the end, or nil, err.
function response:body_reader(size)
  if self._reading then error("ringline.http: the body is already being read", 2) end
  self._reading = true
  size = size or 65536
  local c = self._conn
  local kind, left = self._kind, self._length
  local finished = not c
  local chunk_left = 0
  return function()
    if finished then return nil end
    local function fail(err)
      finished = true
      self._err = err
      done(self, false)
      return nil, err
    end
    if kind == "none" then
      finished = true
      done(self, true)
      return nil
    elseif kind == "length" then
      if left == 0 then finished = true done(self, true) return nil end
      local n = left < size and left or size
      local data, err = c:receive(n)
      if not data then return fail(err == "closed" and "closed before the end of the body" or err) end
      left = left - n
      if left == 0 then finished = true done(self, true) end
      return data
    elseif kind == "close" then
      local data, err = c:receiveany(size)
      if not data then
        if err == "closed" then finished = true done(self, false) return nil end
        return fail(err)
      end
      return data
    else  -- chunked
      while chunk_left == 0 do
        local line, err = c:receive("*l")
        if not line then return fail(err) end
        local hex = match(line, "^(%x+)[ \t]*;?") or match(line, "^(%x+)$")
        local n = hex and #hex <= 8 and tonumber(hex, 16)
        if not n or n > MAX_CHUNK then return fail("bad chunk size") end
        if n == 0 then
          -- trailers, read and ignored
          local budget = self._max_header
          repeat
            line, err = c:receive("*l")
            if not line then return fail(err) end
            budget = budget - #line - 2
            if budget < 0 then return fail("trailers too large") end
          until line == ""
          finished = true
          done(self, true)
          return nil
        end
        chunk_left = n
      end
      local n = chunk_left < size and chunk_left or size
      local data, err = c:receive(n)
      if not data then return fail(err) end
      chunk_left = chunk_left - n
      if chunk_left == 0 then
        local crlf
        crlf, err = c:receive(2)
        if crlf ~= "\r\n" then return fail(err or "bad chunk end") end
      end
      return data
    end
  end
end

-- The whole body (cached: a second call returns it again), at most
-- max_body_bytes; nil, err otherwise.
function response:body()
  if self._body then return self._body end
  local max = self._max_body
  if self._kind == "length" and self._length > max then
    done(self, false)
    return nil, "too large"
  end
  local parts, n = {}, 0
  local total = 0
  local it = self:body_reader()
  while true do
    local data, err = it()
    if not data then
      if err then return nil, err end
      break
    end
    total = total + #data
    if total > max then done(self, false) return nil, "too large" end
    n = n + 1
    parts[n] = data
  end
  self._body = concat(parts, "", 1, n)
  return self._body
end

-- Closes the connection under an unread body (it is not reused).
function response:close()
  done(self, false)
  return true
end

------------------------------------------------------------------------
-- Requests
------------------------------------------------------------------------

local METHOD_OK = "^[!#$%%&'*+%-.^_`|~%w]+$"

local function header_parse(c, max)
  local line, err = c:receive("*l")
  if not line then return nil, err, true end
  local used = #line + 2
  -- "HTTP/1.x NNN[ reason]" with NNN in 100..599
  local version, status = match(line, "^HTTP/1%.([01]) ([1-5]%d%d)")
  if not version or not (#line == 12 or sub(line, 13, 13) == " ") then return nil, "bad status line" end
  local headers = {}
  while true do
    line, err = c:receive("*l")
    if not line then return nil, err end
    used = used + #line + 2
    if used > max then return nil, "header too large" end
    if line == "" then break end
    local name, value = match(line, "^([!#$%%&'*+%-.^_`|~%w]+):[ \t]*(.-)[ \t]*$")
    if not name then return nil, "bad header line" end
    name = lower(name)
    local old = headers[name]
    headers[name] = old and (old .. ", " .. value) or value
  end
  return tonumber(status), headers, version
end

local function has_token(v, token)
  if not v then return false end
  for t in v:gmatch("[^,]+") do
    if lower(t:match("^%s*(.-)%s*$")) == token then return true end
  end
  return false
end

-- Sends the request and reads the status and headers; returns the
-- response, or nil, err, retryable (nothing of the answer came).
local function exchange(c, method, target, hosthdr, headers, body, o)
  local parts = { method, " ", target, " HTTP/1.1\r\n" }
  local have_host, have_len, have_te, have_ua
  if headers then
    for k, v in pairs(headers) do
      local vals = type(v) == "table" and v or { v }
      for _, x in ipairs(vals) do
        x = tostring(x)
        parts[#parts + 1] = k
        parts[#parts + 1] = ": "
        parts[#parts + 1] = x
        parts[#parts + 1] = "\r\n"
      end
      local lk = lower(k)
      if lk == "host" then have_host = true
      elseif lk == "content-length" then have_len = true
      elseif lk == "transfer-encoding" then have_te = true
      elseif lk == "user-agent" then have_ua = true end
    end
  end
  if not have_host then parts[#parts + 1] = "Host: " .. hosthdr .. "\r\n" end
  if not have_ua then parts[#parts + 1] = "User-Agent: ringline\r\n" end
  if not o.keepalive then parts[#parts + 1] = "Connection: close\r\n" end
  if body ~= nil and not have_len and not have_te then
    parts[#parts + 1] = "Content-Length: " .. #body .. "\r\n"
  elseif body == nil and not have_len and not have_te
      and (method == "POST" or method == "PUT" or method == "PATCH") then
    parts[#parts + 1] = "Content-Length: 0\r\n"
  end
  parts[#parts + 1] = "\r\n"
  if body ~= nil then parts[#parts + 1] = body end
  local ok, err = c:send(parts)
  if not ok then return nil, err, true end
  local status, headers_or_err, version
  repeat
    status, headers_or_err, version = header_parse(c, o.max_header_bytes)
    if not status then return nil, headers_or_err, version end
    -- 1xx interim answers (100 Continue, 103) are skipped; 101 is final
  until status < 100 or status > 199 or status == 101
  local rh = headers_or_err
  local res = setmetatable({
    status = status, headers = rh, version = "1." .. version,
    _conn = c, _origin = false, _kind = "none", _length = 0, _keepalive = false,
    _pool_size = o.pool_size, _max_body = o.max_body_bytes, _max_header = o.max_header_bytes,
    _reading = false, _body = false, _err = false,
  }, response_mt)
  local conn_hdr = rh["connection"]
  local keep = o.keepalive and not has_token(conn_hdr, "close")
    and (version == "1" or has_token(conn_hdr, "keep-alive"))
  local te, cl = rh["transfer-encoding"], rh["content-length"]
  if method == "HEAD" or status == 204 or status == 304 or status == 101 then
    res._kind = "none"
  elseif te then
    if cl then return nil, "both content-length and transfer-encoding" end
    local last = lower(te):match("([^,%s]+)%s*$")
    if last == "chunked" then
      res._kind = "chunked"
    else
      res._kind, keep = "close", false
    end
  elseif cl then
    -- strict decimal; repeated values (joined with ", ") must agree
    local n
    for v in (cl .. ","):gmatch("%s*([^,]-)%s*,") do
      local x = #v <= 15 and match(v, "^%d+$") and tonumber(v)
      if not x or (n and x ~= n) then return nil, "bad content-length" end
      n = x
    end
    if not n then return nil, "bad content-length" end
    if n == 0 then res._kind = "none" else res._kind, res._length = "length", n end
  else
    res._kind, keep = "close", false
  end
  if status == 101 then keep = false end
  res._keepalive = keep
  return res
end

local REQ_KEYS = {
  method = true, url = true, headers = true, body = true, timeout = true, ssl = true,
  keepalive = true, pool_size = true, idle_timeout = true, max_header_bytes = true,
  max_body_bytes = true, redirects = true,
}

local function opt(t, k)
  local v = t[k]
  if v == nil then return M._defaults[k] end
  if type(v) ~= "number" or v ~= v or v < 0 or v == math.huge then
    error("ringline.http: " .. k .. " must be a non-negative number", 3)
  end
  return v
end

local IDEMPOTENT = { GET = true, HEAD = true, OPTIONS = true, TRACE = true, PUT = true, DELETE = true }

local function request_once(t, url, method, body, o)
  local scheme, host, port, target, hosthdr = M._parse_url(url)
  if not scheme then return nil, host end
  if scheme ~= "http" and scheme ~= "https" then return nil, "unsupported scheme" end
  local origin = scheme .. "://" .. hosthdr .. (find(hosthdr, ":%d+$") and "" or ":" .. port)
  -- a connection is reused only under the same TLS settings
  if scheme == "https" and type(t.ssl) == "table" then
    local ssl = t.ssl
    origin = origin .. " " .. tostring(ssl.verify) .. " " .. tostring(ssl.server_name) .. " "
      .. tostring(ssl.ca or ssl.cafile)
  end
  for attempt = 1, 2 do
    local c = o.keepalive and take(origin, o.idle_timeout)
    local reused = c and true or false
    if not c then
      local copts = { timeout = o.timeout / 1000 }
      if scheme == "https" then copts.ssl = t.ssl or true end
      local err
      c, err = ringline.connect(host, port, copts)
      if not c then return nil, err end
    end
    c:settimeout(o.timeout)
    local res, err, retry = exchange(c, method, target, hosthdr, t.headers, body, o)
    if res then
      res._origin = origin
      if res._kind == "none" then done(res, true) end
      return res
    end
    c:close()
    -- a reused connection the peer closed meanwhile: once more on a new
    -- one, when the request may be repeated (RFC 9110's idempotent methods)
    if not (reused and retry and attempt == 1 and IDEMPOTENT[method]
            and err ~= "timeout" and err ~= "canceled") then
      return nil, err
    end
  end
end

-- request{ method, url, headers, body, timeout (ms), ssl, keepalive,
-- pool_size, idle_timeout, max_header_bytes, max_body_bytes, redirects }
function M.request(t)
  if type(t) ~= "table" then error("ringline.http.request: a table expected", 2) end
  for k in pairs(t) do
    if not REQ_KEYS[k] then error("ringline.http.request: unknown option " .. tostring(k), 2) end
  end
  local method = t.method or "GET"
  if type(method) ~= "string" or not match(method, METHOD_OK) then
    error("ringline.http.request: bad method", 2)
  end
  local body = t.body
  if body ~= nil and type(body) ~= "string" then error("ringline.http.request: body must be a string", 2) end
  if type(t.url) ~= "string" then error("ringline.http.request: url must be a string", 2) end
  if t.headers ~= nil then
    if type(t.headers) ~= "table" then error("ringline.http.request: headers must be a table", 2) end
    for k, v in pairs(t.headers) do
      if type(k) ~= "string" or not match(k, METHOD_OK) then
        error("ringline.http.request: bad header name " .. tostring(k), 2)
      end
      for _, x in ipairs(type(v) == "table" and v or { v }) do
        if find(tostring(x), "[\r\n%z]") then error("ringline.http.request: bad header value for " .. k, 2) end
      end
    end
  end
  local o = {
    timeout = opt(t, "timeout"), max_header_bytes = opt(t, "max_header_bytes"),
    max_body_bytes = opt(t, "max_body_bytes"), pool_size = opt(t, "pool_size"),
    idle_timeout = opt(t, "idle_timeout"), keepalive = t.keepalive ~= false,
  }
  local redirects = t.redirects or 0
  if type(redirects) ~= "number" or redirects < 0 then error("ringline.http.request: bad redirects", 2) end
  local url = t.url
  while true do
    local res, err = request_once(t, url, method, body, o)
    if not res then return nil, err end
    local loc = res.headers.location
    if redirects <= 0 or not loc or not (res.status == 301 or res.status == 302 or res.status == 303
        or res.status == 307 or res.status == 308) then
      return res
    end
    redirects = redirects - 1
    -- the body of a redirect is read and dropped so its connection is reused
    local _, berr = res:body()
    if berr then res:close() end
    local scheme, host, port, target, hosthdr = M._parse_url(url)
    if sub(loc, 1, 2) == "//" then
      loc = scheme .. ":" .. loc
    elseif not match(loc, "^%a[%w+.-]*://") then
      if sub(loc, 1, 1) == "/" then
        loc = scheme .. "://" .. hosthdr .. loc
      else
        loc = scheme .. "://" .. hosthdr .. match(target, "^[^?]*/") .. loc
      end
    end
    -- credentials do not follow a redirect to another origin
    local s2, h2, p2 = M._parse_url(loc)
    if t.headers and (s2 ~= scheme or h2 ~= host or p2 ~= port) then
      local kept = {}
      for k, v in pairs(t.headers) do
        local lk = lower(k)
        if lk ~= "authorization" and lk ~= "cookie" and lk ~= "proxy-authorization" and lk ~= "host" then
          kept[k] = v
        end
      end
      t = setmetatable({ headers = kept }, { __index = t })
    end
    url = loc
    if res.status == 303 or ((res.status == 301 or res.status == 302) and method == "POST") then
      method, body = (method == "HEAD") and "HEAD" or "GET", nil
    end
  end
end

-- get(url [, opts]): request{ method = "GET", url = url, ... }
function M.get(url, opts)
  local t = { method = "GET", url = url }
  if opts ~= nil then
    if type(opts) ~= "table" then error("ringline.http.get: opts must be a table", 2) end
    for k, v in pairs(opts) do t[k] = v end
    t.url, t.method = url, "GET"
  end
  return M.request(t)
end

-- websocket_connect(url [, opts]): ringline.websocket's client handshake.
function M.websocket_connect(url, opts)
  return require("ringline.websocket").connect(url, opts)
end

return M
