-- ringline.http_server: one connection of ringline.http: the request loop
-- (keep-alive, pipelining), the req and res objects, error responses.
--
-- Requests are parsed in place from conn:view(0); complete pipelined
-- requests are answered in order into one string.buffer (st.out), sent when
-- no further complete request is buffered (one send per batch), before any
-- wait, and when it grows past OUT_FLUSH. Bodies that are not strings
-- (slices, arrays, string.buffers) are sent with it in one conn:send, so a
-- region slice goes out zero copy.
local ffi = require "ffi"
local buffer = require "string.buffer"
local ringline = require "ringline"
local region = require "ringline.region"
local parse = require "ringline.http_parse"
local decode_args = require("ringline.urlargs").decode
local body = require "ringline.http_body"

local type, tostring, error, xpcall, select = type, tostring, error, xpcall, select
local traceback = debug.traceback
local is_slice = region.is_slice
local is_buffer = require("ringline.check").is_buffer
local parse_head = parse.parse_head
local fmt = string.format
local ok_clear, clear = pcall(require, "table.clear")
if not ok_clear then clear = function(t) for k in pairs(t) do t[k] = nil end end end

local M = {}

local OUT_FLUSH = 65536     -- bytes of answers held before they are sent
local INLINE_BODY = 16384   -- string bodies up to this are copied into st.out
local BLANK_MAX = 64        -- bytes of empty lines taken before a request

local REASONS = {
  [100] = "Continue", [101] = "Switching Protocols",
  [200] = "OK", [201] = "Created", [202] = "Accepted", [204] = "No Content",
  [206] = "Partial Content",
  [301] = "Moved Permanently", [302] = "Found", [303] = "See Other", [304] = "Not Modified",
  [307] = "Temporary Redirect", [308] = "Permanent Redirect",
  [400] = "Bad Request", [401] = "Unauthorized", [403] = "Forbidden", [404] = "Not Found",
  [405] = "Method Not Allowed", [408] = "Request Timeout", [409] = "Conflict",
  [410] = "Gone", [411] = "Length Required", [413] = "Content Too Large",
  [415] = "Unsupported Media Type", [417] = "Expectation Failed",
  [429] = "Too Many Requests", [431] = "Request Header Fields Too Large",
  [500] = "Internal Server Error", [501] = "Not Implemented", [502] = "Bad Gateway",
  [503] = "Service Unavailable", [504] = "Gateway Timeout",
  [505] = "HTTP Version Not Supported",
}
-- "HTTP/1.1 200 OK\r\nServer: ringline\r\n", made once per status.
local STATUS_LINE = setmetatable({}, { __index = function(t, code)
  local s = fmt("HTTP/1.1 %d %s\r\nServer: ringline\r\n", code, REASONS[code] or "Unknown")
  t[code] = s
  return s
end })
M.REASONS = REASONS

-- The module's shared clock strings (http.lua's timer updates them).
local clock = { date = "Date: Thu, 01 Jan 1970 00:00:00 GMT\r\n", log = "" }
M.clock = clock

------------------------------------------------------------------------
-- Sizes of what conn:send takes
------------------------------------------------------------------------

local function size_of(x, depth)
  local tx = type(x)
  if tx == "string" then return #x end
  if tx == "number" then return #tostring(x) end
  if tx == "table" then
    if is_slice(x) then return x:len() end
    if depth > 60 then error("res: arrays nested too deep (a cycle?)", 4) end
    local n = 0
    for i = 1, #x do n = n + size_of(x[i], depth + 1) end
    return n
  end
  if is_buffer(x) then return #x end
  error("res: cannot send a " .. tx .. " (strings, numbers, arrays, string.buffers, slices)", 4)
end

-- Sends st.out (and x, when given) and empties st.out.
local function flush(st, x)
  local out = st.out
  if #out == 0 and x == nil then return true end
  -- the buffer itself: send copies its bytes (or waits for room) and does
  -- not consume it, so it is emptied after, with no Lua string made
  local ok, err
  if x == nil then ok, err = st.conn:send(out) else ok, err = st.conn:send(out, x) end
  out:reset()
  if not ok then st.close, st.broken = true, true end
  return ok, err
end
M.flush = flush

------------------------------------------------------------------------
-- req
------------------------------------------------------------------------

local Req = {}
-- req.headers is made the first time it is read (parse.headers, from the
-- head kept as one string): a handler that never looks costs no table and
-- no string per field.
local parse_headers = parse.headers
local req_mt = { __name = "ringline.http.req", methods = Req }
local function req_index(req, k)
  local m = Req[k]
  if m ~= nil or k ~= "headers" then return m end
  local h = parse_headers(rawget(req, "_head"))
  rawset(req, "headers", h)
  return h
end
req_mt.__index = req_index
M.req_mt = req_mt

-- The query's arguments: name -> value (a string; true for a name with no
-- "="; an array when the name repeats).
function Req.args(req)
  local q = req.query
  if not q then return {} end
  return decode_args(q, 0)
end

local function current(req)
  local st = req._st
  if st.seq ~= req._seq then return nil end
  return st
end

function Req.body(req)
  if req._body then return req._body end
  local st = current(req)
  if not st then return nil, "request finished" end
  local s, err = body.read_all(st)
  if not s then return nil, err end
  req._body = s
  return s
end

function Req.body_reader(req)
  return function()
    local st = current(req)
    if not st then return nil, "request finished" end
    return body.piece(st, false)
  end
end

------------------------------------------------------------------------
-- res
------------------------------------------------------------------------

local Res = {}
local res_mt = { __index = Res, __name = "ringline.http.res" }
M.res_mt = res_mt

function Res.status(res, code)
  if type(code) ~= "number" or code < 100 or code > 999 or code % 1 ~= 0 then
    error("res:status: bad status " .. tostring(code), 2)
  end
  if res.started then error("res:status: the response head is already sent", 2) end
  res.code = code
  return res
end

-- Header names already checked (a handler sets the same few again and
-- again; a pattern match is not compiled by the JIT), at most NAMES_MAX
-- of each.
local names_ok, names_n, NAMES_MAX = {}, 0, 1024
-- and values, the short ones a handler sets per request ("text/plain")
local values_ok, values_n = {}, 0

local function check_field(k, v)
  if not names_ok[k] then
    if type(k) ~= "string" or k == "" or k:find("[^%w!#$%%&'*+%-.^_`|~]") then
      error("res:header: bad header name " .. tostring(k), 3)
    end
    if names_n < NAMES_MAX then names_ok[k], names_n = true, names_n + 1 end
  end
  local tv = type(v)
  if tv == "string" then
    if not values_ok[v] then
      if v:find("\r", 1, true) or v:find("\n", 1, true) or v:find("\0", 1, true) then
        error("res:header: a value cannot hold CR, LF or NUL", 3)
      end
      if values_n < NAMES_MAX and #v <= 256 then values_ok[v], values_n = true, values_n + 1 end
    end
  elseif tv ~= "number" then
    error("res:header: value must be a string, a number or an array of them", 3)
  end
end

-- Each name's lower-case form, cached (bounded as names_ok): res:header
-- compares names without making a string per call.
local lower_of, lower_n = {}, 0
local function lower_name(k)
  local l = lower_of[k]
  if l then return l end
  l = k:lower()
  if lower_n < NAMES_MAX then lower_of[k], lower_n = l, lower_n + 1 end
  return l
end

-- Sets header k (replacing an earlier one of the same name); v an array gives
-- one line each (Set-Cookie); v nil removes it. The names and values wait
-- in the connection's one array (st.hdrs, emptied for each response: only
-- the response being answered can still take headers).
function Res.header(res, k, v)
  if res.started then error("res:header: the response head is already sent", 2) end
  if type(k) ~= "string" then error("res:header: bad header name " .. tostring(k), 2) end
  local lk = lower_name(k)
  if lk == "content-length" or lk == "transfer-encoding" then
    error("res:header: " .. k .. " is set by ringline.http", 2)
  end
  if lk == "connection" then
    if v ~= nil and tostring(v):lower() == "close" then res._st.close = true end
    return res
  end
  local h = res.hdrs
  if not h then
    h = res._st.hdrs
    clear(h)
    res.hdrs = h
  else
    local n = #h
    local i = 1
    while i < n do
      if lower_name(h[i]) == lk then
        table.remove(h, i)
        table.remove(h, i)
        n = n - 2
      else
        i = i + 2
      end
    end
  end
  if v == nil then return res end
  if type(v) == "table" then
    for i = 1, #v do
      check_field(k, v[i])
      h[#h + 1] = k
      h[#h + 1] = v[i]
    end
  else
    check_field(k, v)
    h[#h + 1] = k
    h[#h + 1] = v
  end
  return res
end

-- Does the response carry no body (HEAD, 1xx, 204, 304)?
local function bodiless(res)
  local c = res.code
  return res.head or c < 200 or c == 204 or c == 304
end

-- Writes the head into st.out: len a number (Content-Length) or nil
-- (chunked for 1.1, close-delimited for 1.0).
local function put_head(res, st, len)
  local out = st.out
  res.started, st.res_started = true, true
  out:put(STATUS_LINE[res.code], clock.date)
  local h = res.hdrs
  if h then
    for i = 1, #h, 2 do out:put(h[i], ": ", h[i + 1], "\r\n") end
  end
  local c = res.code
  if c >= 200 and c ~= 204 and c ~= 304 then
    if len then
      out:put("Content-Length: ", len, "\r\n")
    elseif st.v10 then
      st.close = true
    else
      res.chunked = true
      out:put("Transfer-Encoding: chunked\r\n")
    end
  end
  -- a client still waiting for 100 Continue may or may not send its body:
  -- the connection closes after this response, and says so
  if st.expect then st.close = true end
  if st.close then
    out:put("Connection: close\r\n\r\n")
  elseif st.v10 then
    out:put("Connection: keep-alive\r\n\r\n")
  else
    out:put("\r\n")
  end
end

-- Queues x (anything conn:send takes) after st.out.
local function put_body(st, x)
  if type(x) == "string" and #x <= INLINE_BODY then
    st.out:put(x)
    if #st.out >= OUT_FLUSH then return flush(st) end
    return true
  end
  return flush(st, x)
end

-- Sends chunk now: the head first if not sent yet (then chunked for 1.1,
-- close-delimited for 1.0). An empty chunk sends only the head.
function Res.write(res, x)
  if res.done then return nil, "finished" end
  local st = res._st
  if st.bfail and not res.started then return nil, "bad request body" end
  local n = size_of(x, 0)
  res.bytes = res.bytes + n
  if not res.started then put_head(res, st, nil) end
  if n > 0 and not bodiless(res) then
    if res.chunked then
      st.out:put(fmt("%x\r\n", n))
      if type(x) == "string" then
        st.out:put(x, "\r\n")
      else
        local ok, err = flush(st, x)
        if not ok then return nil, err end
        st.out:put("\r\n")
      end
    else
      local ok, err = put_body(st, x)
      if not ok then return nil, err end
    end
  end
  return flush(st)
end

-- Ends the response: with the head not sent, one response with
-- Content-Length; after writes, x is the last piece.
function Res.finish(res, x)
  if res.done then return nil, "finished" end
  local st = res._st
  if st.bfail and not res.started then return nil, "bad request body" end
  local n = 0
  if x ~= nil then n = size_of(x, 0) end
  res.bytes = res.bytes + n
  res.done = true
  if not res.started then
    put_head(res, st, n)
    if n > 0 and not bodiless(res) then return put_body(st, x) end
    if #st.out >= OUT_FLUSH then return flush(st) end
    return true
  end
  if bodiless(res) then return true end
  local ok, err = true, nil
  if res.chunked then
    if n > 0 then
      st.out:put(fmt("%x\r\n", n))
      if type(x) == "string" then st.out:put(x) else ok, err = flush(st, x) end
      if not ok then return nil, err end
      st.out:put("\r\n")
    end
    st.out:put("0\r\n\r\n")
  elseif n > 0 then
    ok, err = put_body(st, x)
  end
  if not ok then return nil, err end
  return true
end

-- res:sendfile(f [, offset [, count]]): count bytes of file f (default:
-- to its end) as the body, by conn:sendfile with the head (the kernel
-- sends them; no Lua string). As the whole response: the head says Content-Length. After
-- writes: one more chunk (chunked) or more of the close-delimited body.
-- HEAD and bodiless statuses send the head only.
function Res.sendfile(res, f, offset, count)
  if not require("ringline.fs").is_file(f) then
    error("res:sendfile: expected a file (ringline.fs.open)", 2)
  end
  if res.done then return nil, "finished" end
  local st = res._st
  if st.bfail and not res.started then return nil, "bad request body" end
  offset = offset or 0
  if not count then
    local size, err = f:size()
    if not size then return nil, err end
    count = size > offset and size - offset or 0
  end
  res.bytes = res.bytes + count
  local whole = not res.started
  if whole then
    res.done = true
    put_head(res, st, count)
  end
  if bodiless(res) or count == 0 then
    if whole then return flush(st) end
    return true
  end
  if res.chunked then st.out:put(fmt("%x\r\n", count)) end
  -- what is buffered (the head, a chunk's size) goes with the file: the
  -- same call, the same packets
  local out = st.out
  local ok, err = st.conn:sendfile(f, offset, count, #out > 0 and out or nil)
  out:reset()
  if not ok then
    st.close, st.broken = true, true
    return nil, err
  end
  if res.chunked then st.out:put("\r\n") end
  return true
end

-- http.websocket(req, res [, opts]): upgrade this request's connection to
-- a WebSocket (ringline.websocket.accept with the parsed request). Answers
-- still queued for earlier pipelined requests go out first; after the 101
-- the connection is the ws object's, and it closes when the handler
-- returns. A request that is no valid upgrade gets its status (400, or 426
-- with Sec-WebSocket-Version: 13) and the connection closes.
function M.websocket(req, res, opts)
  if getmetatable(req) ~= req_mt or getmetatable(res) ~= res_mt then
    error("http.websocket: the handler's req and res expected", 2)
  end
  if res.started or res.done then error("http.websocket: the response has begun", 2) end
  local st = req._st
  local ok, err = flush(st)
  if not ok then return nil, err end
  local ws, why, status = require("ringline.websocket").accept(st.conn, req, opts)
  st.close = true                        -- no request follows on this connection
  if not ws then
    if status then
      res:status(status)
      if status == 426 then res:header("Sec-WebSocket-Version", "13") end
      res:finish(why .. "\n")
      flush(st)
    end
    return nil, why
  end
  res.code, res.started, res.done = 101, true, true   -- the 101 is written
  return ws
end

------------------------------------------------------------------------
-- The connection loop
------------------------------------------------------------------------

local function error_response(code)
  return fmt("HTTP/1.1 %d %s\r\nServer: ringline\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
             code, REASONS[code])
end
local ERRORS = setmetatable({}, { __index = function(t, code)
  local s = error_response(code)
  t[code] = s
  return s
end })

-- After an error response: stop sending, then read and drop what the
-- client still sends for a moment (at most 2 s in all), so closing with
-- unread bytes does not reset the connection before the client has read
-- the response.
local function linger(conn)
  conn:shutdown("send")
  local stop = ringline.now() + 2
  while true do
    local left = stop - ringline.now()
    if left <= 0 then return end
    local p, n = conn:view(1, left < 1 and left * 1000 or 1000)
    if not p then return end
    conn:consume(n)
  end
end

-- Answers an error status (queued answers first), then closes.
local function refuse(st, code)
  st.out:put(ERRORS[code])
  if st.log then st.log(st, nil, code, 0) end
  if flush(st) then linger(st.conn) end
end

-- target -> path, query
local function split_target(target)
  local q = target:find("?", 1, true)
  local path, query = target, nil
  if q then path, query = target:sub(1, q - 1), target:sub(q + 1) end
  if path:byte(1) ~= 47 and path ~= "*" then
    -- absolute-form: scheme://authority/path
    local rest = path:match("^[%a][%w+.-]*://[^/]*(.*)$")
    if rest then path = rest ~= "" and rest or "/" end
  end
  return path, query
end

-- Every field a response gets is in its constructor, and there are 8 (a
-- hash part of 8): a field added later would grow (rehash) the table, per
-- request. Connection: close from the handler goes to st.close.
-- The connection's state by its task (weak), so code that has no req/res
-- in hand (ringline.ngx's ngx.req, ngx.var, ngx.say) finds the request the
-- task serves: st.req/st.res while st.active. Only once ringline.ngx has
-- set M.track: keeping req and res in st makes them escape, and the JIT
-- can then no longer sink their allocations (a hello request's Lua cost
-- tripled with it).
local by_task = setmetatable({}, { __mode = "k" })
M.by_task = by_task
M.track = false

-- A handler that raises this ends normally (ngx.exit: the response is done).
M.EXIT = setmetatable({}, { __tostring = function() return "ngx.exit" end })
local EXIT = M.EXIT

local function new_res(st, code, head)
  return setmetatable({ code = code, _st = st, bytes = 0, head = head, started = false,
                        done = false, chunked = false, hdrs = false }, res_mt)
end

-- Runs one request whose head is already consumed. Returns true to go on
-- with the next request.
local function exchange(st, handler, method, target, version, head_s, clen, chunked, close,
                        keepalive, expect)
  local v10 = version == "1.0"
  st.v10 = v10
  st.close = close or (v10 and not keepalive)
  st.seq = st.seq + 1
  st.res_started = false
  if clen > st.max_body then
    st.close = true
    refuse(st, 413)
    return false
  end
  body.start(st, clen, chunked, expect)
  local path, query = split_target(target)
  -- 8 fields (a hash part of 8); a query makes the 9th
  local req = setmetatable({
    method = method, target = target, path = path, version = version,
    _head = head_s, _st = st, _seq = st.seq, _body = false,
  }, req_mt)
  if query then req.query = query end
  local res = new_res(st, 200, method == "HEAD")
  local track = M.track
  if track then st.req, st.res, st.active = req, res, true end
  local ok, err = xpcall(handler, traceback, req, res)
  if track then st.active = false end
  if not ok and err == EXIT then ok = true end
  if st.broken then return false end
  if not ok then
    local host, port = st.conn:getpeername()
    ringline.log(ringline.ERR, "http handler error (peer ",
      host and ((host:find(":", 1, true) and "[" .. host .. "]" or host) .. ":" .. port) or "?",
      "): ", tostring(err))
    if res.started then
      st.close = true
      if st.log then st.log(st, req, res.code, res.bytes) end
      return false
    end
    if st.bfail then
      st.close = true
      refuse(st, st.bfail)               -- the body was bad: that is the answer
      return false
    end
    -- a new answer: 500, kept alive only when the body can be read to its end
    if not st.bdone and (st.expect or not body.drain(st)) then st.close = true end
    if st.bfail then st.close = true end
    res = new_res(st, 500, req.method == "HEAD")
    res:finish()
    if st.log then st.log(st, req, 500, 0) end
    return not st.close and not st.broken
  end
  if st.bfail and not res.started then
    -- the body was bad or too large: that is the answer
    st.close = true
    refuse(st, st.bfail)
    return false
  end
  if not res.done then res:finish() end
  if st.log then st.log(st, req, res.code, res.bytes) end
  if st.broken then return false end
  if not st.bdone then
    -- a client still waiting for 100 Continue may or may not send its
    -- body: close rather than guess
    if st.expect or not body.drain(st) then st.close = true end
  end
  if st.bfail then st.close = true end
  return not st.close
end

-- The handler of ringline.listen for one http.listen: cfg holds the options.
function M.serve(conn, cfg, handler)
  local st = {
    conn = conn, out = buffer.new(), flush = flush, seq = 0, hdrs = {},
    max_body = cfg.max_body_bytes, max_header = cfg.max_header_bytes, log = cfg.log,
    close = false, broken = false, req = false, res = false, active = false,
  }
  if M.track then
    local t = ringline.current()
    if t then by_task[t] = st end
  end
  local lim = cfg.max_header_bytes
  local idle = cfg.header_timeout       -- the first request must come in time too
  local deadline
  local blank = 0                       -- bytes of empty lines before this request
  local io = conn.io
  while true do
    -- conn:view(0) without its argument checks: the bytes already buffered
    local p, len
    local n = io.rlen
    if n > 0 and not conn.closed and not conn.reading then
      p, len = io.rdata, n
    else
      p, len = conn:view(0)
      if not p then return end
    end
    -- empty lines before a request are ignored (RFC 9112 2.2), a few: a
    -- stream of them would hold the connection past every timeout
    if len >= 2 and p[0] == 13 and p[1] == 10 then
      local k = 0
      while k + 1 < len and p[k] == 13 and p[k + 1] == 10 do k = k + 2 end
      blank = blank + k
      if blank > BLANK_MAX then
        refuse(st, 400)
        return
      end
      conn:consume(k)
      p, len = conn:view(0)
    end
    local e, method, target, version, head_s, clen, chunked, close, keepalive, expect =
      parse_head(p, len, lim)
    if e == nil then
      if not flush(st) then return end
      local err
      if len == 0 then
        p, err = conn:view(1, idle)
        if not p then return end         -- idle too long, closed or reset
        deadline = ringline.now() + cfg.header_timeout / 1000
      elseif cfg.header_timeout == 0 then
        p = conn:view(len + 1)           -- no limit but the read timeout
        if not p then return end
      else
        deadline = deadline or ringline.now() + cfg.header_timeout / 1000
        local left = deadline - ringline.now()
        if left > 0 then p, err = conn:view(len + 1, left * 1000) end
        if left <= 0 or (not p and err == "timeout") then
          refuse(st, 408)
          return
        end
        if not p then return end
      end
    elseif method == nil then
      refuse(st, e)                      -- a bad head: e is the status
      return
    else
      conn:consume(e)
      deadline, blank = nil, 0
      if not exchange(st, handler, method, target, version, head_s, clen, chunked, close,
                      keepalive, expect) then
        flush(st)
        return
      end
      idle = cfg.keepalive_timeout
    end
  end
end

return M
