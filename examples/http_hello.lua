-- http_hello.lua: the "Hello, World!" HTTP/1.1 server of the benchmarks.
--
--   ringline-lua examples/http_hello.lua    (PORT=8080, BENCH_HOST=127.0.0.1)
--   then: curl http://127.0.0.1:8080/
--
-- Keep-alive and pipelining: every complete request in what has arrived is
-- answered, all of them with one send. Request bodies with Content-Length are
-- read and discarded. A malformed request gets 400, a request head over 8 KiB
-- gets 431, Transfer-Encoding gets 501; each then closes the connection.
-- "Connection: close" (or HTTP/1.0 without keep-alive) closes after the
-- response. The parser reads the receive buffer in place through
-- conn:view() (a const uint8_t * into the core's buffer): no Lua string is
-- made of a request.
local ringline = require "ringline"
local ffi = require "ffi"

-- memmem/memchr under private names, so this never clashes with another
-- declaration of them; scanning with libc runs at C speed.
ffi.cdef [[
const uint8_t *http_hello_memmem(const uint8_t *h, size_t hl, const char *n, size_t nl) __asm__("memmem");
const uint8_t *http_hello_memchr(const uint8_t *s, int c, size_t n) __asm__("memchr");
]]
local libc = ffi.C

local host = os.getenv("BENCH_HOST") or "127.0.0.1"
local port = tonumber(os.getenv("PORT") or "8080")

-- The bench harness's response format (see bench/README.md, "HTTP hello
-- semantics"), with our own Server name: 96 bytes.
local RESP = "HTTP/1.1 200 OK\r\nServer: ringline\r\nContent-Type: text/plain\r\n"
          .. "Content-Length: 13\r\n\r\nHello, World!"

local function error_response(status)
  return "HTTP/1.1 " .. status .. "\r\nServer: ringline\r\nContent-Length: 0\r\n"
      .. "Connection: close\r\n\r\n"
end
local BAD_REQUEST = error_response("400 Bad Request")
local TOO_LARGE = error_response("431 Request Header Fields Too Large")
local NOT_IMPLEMENTED = error_response("501 Not Implemented")

local MAX_HEAD = 8192         -- request line + headers
local CR, LF, SP, HT, COLON = 13, 10, 32, 9, 58

-- The answer to n pipelined requests, made once per n.
local batch = setmetatable({}, { __index = function(t, n)
  local s = RESP:rep(n)
  if n <= 256 then t[n] = s end
  return s
end })

-- Index just past the first "\r\n\r\n" in p[from, len), or nil.
local function head_end(p, from, len)
  if len - from < 4 then return nil end
  local q = libc.http_hello_memmem(p + from, len - from, "\r\n\r\n", 4)
  if q == nil then return nil end
  return (q - p) + 4
end

-- Does p[s, e) equal the lower-case name `lit`, ignoring ASCII case?
local function name_is(p, s, e, lit)
  if e - s ~= #lit then return false end
  for k = 1, #lit do
    local c = p[s + k - 1]
    if c >= 65 and c <= 90 then c = c + 32 end
    if c ~= lit:byte(k) then return false end
  end
  return true
end

-- Does p[s, e) contain `lit` (lower case), ignoring ASCII case?
local function contains(p, s, e, lit)
  local n = #lit
  for i = s, e - n do
    local k = 1
    while k <= n do
      local c = p[i + k - 1]
      if c >= 65 and c <= 90 then c = c + 32 end
      if c ~= lit:byte(k) then break end
      k = k + 1
    end
    if k > n then return true end
  end
  return false
end

local function is_token(c)   -- visible ASCII except the header separator
  return c > 32 and c < 127 and c ~= COLON
end

-- Checks one request head p[s, e) (e is just past "\r\n\r\n"). Returns
-- the body length and whether to close after answering, or nil and the
-- error response.
local function check_head(p, s, e)
  -- request line: METHOD SP target SP HTTP/1.x CRLF
  local i = s
  while i < e and p[i] >= 65 and p[i] <= 90 do i = i + 1 end
  if i == s or p[i] ~= SP then return nil, BAD_REQUEST end
  i = i + 1
  local t = i
  while i < e and p[i] > 32 and p[i] < 127 do i = i + 1 end
  if i == t or p[i] ~= SP then return nil, BAD_REQUEST end
  i = i + 1
  if i + 10 > e or p[i] ~= 72 or p[i + 1] ~= 84 or p[i + 2] ~= 84 or p[i + 3] ~= 80
     or p[i + 4] ~= 47 or p[i + 5] ~= 49 or p[i + 6] ~= 46
     or (p[i + 7] ~= 49 and p[i + 7] ~= 48) or p[i + 8] ~= CR or p[i + 9] ~= LF then
    return nil, BAD_REQUEST                       -- not "HTTP/1.1" / "HTTP/1.0"
  end
  local http10 = p[i + 7] == 48
  i = i + 10
  -- header fields: name ":" value CRLF, until the empty line
  local body, close, keepalive, has_host = -1, false, false, false
  while i < e - 2 do
    local ns = i
    while is_token(p[i]) do i = i + 1 end
    if i == ns or p[i] ~= COLON then return nil, BAD_REQUEST end
    local ne = i
    i = i + 1
    while p[i] == SP or p[i] == HT do i = i + 1 end
    local vs = i
    -- the head ends in CRLFCRLF, so a CR is always found before e
    i = libc.http_hello_memchr(p + i, CR, e - i) - p
    if p[i + 1] ~= LF then return nil, BAD_REQUEST end
    -- a bare LF inside the value would end the line for other parsers
    if i > vs and libc.http_hello_memchr(p + vs, LF, i - vs) ~= nil then
      return nil, BAD_REQUEST
    end
    local ve = i
    while ve > vs and (p[ve - 1] == SP or p[ve - 1] == HT) do ve = ve - 1 end
    i = i + 2
    if name_is(p, ns, ne, "content-length") then
      if body >= 0 or ve == vs or ve - vs > 15 then return nil, BAD_REQUEST end
      body = 0
      for k = vs, ve - 1 do
        local d = p[k] - 48
        if d < 0 or d > 9 then return nil, BAD_REQUEST end
        body = body * 10 + d
      end
    elseif name_is(p, ns, ne, "transfer-encoding") then
      return nil, NOT_IMPLEMENTED
    elseif name_is(p, ns, ne, "connection") then
      if contains(p, vs, ve, "close") then close = true end
      if contains(p, vs, ve, "keep-alive") then keepalive = true end
    elseif name_is(p, ns, ne, "host") then
      has_host = true
    end
  end
  if not http10 and not has_host then return nil, BAD_REQUEST end
  -- HTTP/1.0 closes unless asked to keep alive; HTTP/1.1 keeps alive unless
  -- asked to close.
  return body < 0 and 0 or body, close or (http10 and not keepalive)
end

-- Parses what is buffered: p[0, len), with `body` bytes of an earlier
-- request's body still to skip. Returns the bytes used, the number of
-- complete requests, the body bytes still to skip, and nil (go on),
-- "close" (answer, then close) or an error response (answer the complete
-- requests, then this one, then close).
local function parse(p, len, body)
  local pos, n = 0, 0
  while true do
    if body > 0 then
      local take = len - pos
      if take > body then take = body end
      pos, body = pos + take, body - take
      if body > 0 then return pos, n, body, nil end
    end
    while pos + 1 < len and p[pos] == CR and p[pos + 1] == LF do
      pos = pos + 2                       -- empty lines between requests
    end
    local e = head_end(p, pos, len)
    if not e then
      if len - pos > MAX_HEAD then return pos, n, 0, TOO_LARGE end
      return pos, n, 0, nil
    end
    if e - pos > MAX_HEAD then return pos, n, 0, TOO_LARGE end
    local b, close = check_head(p, pos, e)
    if not b then return pos, n, 0, close end
    n, pos, body = n + 1, e, b
    if close then return pos, n, body, "close" end
  end
end

-- After an error response: stop sending, then read and drop what the client
-- still sends for a moment, so closing with unread bytes does not reset the
-- connection before the client has read the response.
local function linger(conn)
  conn:shutdown("send")
  conn:settimeout(1000)
  repeat until not conn:receiveany(65536)
end

local function serve(conn)
  local body, need = 0, 1
  while true do
    local p, len = conn:view(need)
    if not p then return end                   -- closed, reset or timeout
    local used, n, b, verdict = parse(p, len, body)
    body = b
    if used > 0 then conn:consume(used) end
    if verdict then
      if n > 0 then conn:send(batch[n]) end
      if verdict ~= "close" then
        conn:send(verdict)
        linger(conn)
      end
      return                                   -- closes after flushing
    end
    if n > 0 and not conn:send(batch[n]) then return end
    need = len - used + 1                      -- wait for more than is here
  end
end

-- Over TLS when HTTP_HELLO_CERT and HTTP_HELLO_KEY name PEM files
-- (examples/https_hello.lua sets them).
local cert, key = os.getenv("HTTP_HELLO_CERT"), os.getenv("HTTP_HELLO_KEY")
local opts = cert and key and { ssl = { cert = cert, key = key, alpn = { "http/1.1" } } } or nil

local addr = (host:find(":", 1, true) and "[" .. host .. "]" or host) .. ":" .. port
local lst = assert(ringline.listen(addr, serve, opts))
local h, p = lst:getsockname()
local url = ("%s://%s:%d/"):format(opts and "https" or "http",
                                   h:find(":", 1, true) and "[" .. h .. "]" or h, p)
print((opts and "https_hello" or "http_hello") .. " listening on " .. url)
print("try: curl " .. (opts and "--cacert " .. cert .. " " or "") .. url .. "   (Ctrl-C stops the server)")
