-- ringline.http_parse: the HTTP/1.x request-head parser of ringline.http,
-- reading the receive buffer in place (a const uint8_t * from conn:view).
--
-- parse_head(p, len, lim) looks for a complete head in p[0, len) and, when
-- there is one, checks it byte by byte and makes the Lua strings the API
-- needs (method, target, header names and values); nothing else is
-- allocated. It never reads past the head's final CRLFCRLF: every scan stops
-- at a byte the grammar does not allow there, and a CR always comes before
-- that end.
local ffi = require "ffi"

ffi.cdef [[
const uint8_t *ringline_http_memmem(const uint8_t *h, size_t hl, const char *n, size_t nl) __asm__("memmem");
const uint8_t *ringline_http_memchr(const uint8_t *s, int c, size_t n) __asm__("memchr");
size_t ringline_http_strspn(const uint8_t *s, const char *accept) __asm__("strspn");
]]
local C = ffi.C
local ffi_string = ffi.string
local lower = string.lower
local ok_new, table_new = pcall(require, "table.new")
if not ok_new then table_new = function() return {} end end

local M = {}

local CR, LF, SP, HT, COLON = 13, 10, 32, 9, 58

-- tchar of RFC 9110 (method and field-name characters): 1, else 0.
local TCHAR = ffi.new("uint8_t[256]")
for c = 0, 255 do
  local ch = string.char(c)
  if ch:match("[%w]") and c < 128 or ("!#$%&'*+-.^_`|~"):find(ch, 1, true) then TCHAR[c] = 1 end
end
M.TCHAR = TCHAR
-- The same sets as strings for strspn: a scan stops at the first byte not in
-- the set, and a head always holds a CR (in no set) before its end, so
-- strspn never reads past it.
local TCHARS, VCHARS = {}, {}
for c = 1, 255 do
  if TCHAR[c] == 1 then TCHARS[#TCHARS + 1] = string.char(c) end
  if c > 32 and c < 127 then VCHARS[#VCHARS + 1] = string.char(c) end
end
TCHARS, VCHARS = table.concat(TCHARS), table.concat(VCHARS)
local OWS = " \t"

-- Index just past the first CRLFCRLF in p[0, n), or nil.
local function head_end(p, n)
  if n < 4 then return nil end
  local q = C.ringline_http_memmem(p, n, "\r\n\r\n", 4)
  if q == nil then return nil end
  return (q - p) + 4
end

-- Parses the head at p[0, len) with at most lim bytes (request line and
-- fields). Returns nil when it is not complete yet; a status (400, 431,
-- 501, 505) when it is bad; else
--   e (bytes of the head), req fields (method, target, version, headers),
--   content-length (-1: none), chunked, close, keepalive, expect-continue
function M.parse_head(p, len, lim)
  local e = head_end(p, len < lim and len or lim)
  if not e then
    if len >= lim then return 431 end
    return nil
  end
  -- request line: method SP target SP HTTP/d.d CRLF
  local i, method
  if p[0] == 71 and p[1] == 69 and p[2] == 84 and p[3] == SP then      -- "GET "
    i, method = 3, "GET"
  else
    i = tonumber(C.ringline_http_strspn(p, TCHARS))
    if i == 0 or p[i] ~= SP then return 400 end
    method = ffi_string(p, i)
  end
  i = i + 1
  local t = i
  i = i + tonumber(C.ringline_http_strspn(p + i, VCHARS))
  if i == t or p[i] ~= SP then return 400 end
  local target = ffi_string(p + t, i - t)
  i = i + 1
  if i + 10 > e or p[i] ~= 72 or p[i + 1] ~= 84 or p[i + 2] ~= 84 or p[i + 3] ~= 80
     or p[i + 4] ~= 47 or p[i + 6] ~= 46 or p[i + 8] ~= CR or p[i + 9] ~= LF then
    return 400
  end
  local major, minor = p[i + 5] - 48, p[i + 7] - 48
  if major < 0 or major > 9 or minor < 0 or minor > 9 then return 400 end
  if major ~= 1 or minor > 1 then return 505 end
  local v10 = minor == 0
  i = i + 10
  -- fields: name ":" OWS value OWS CRLF, until the empty line
  local headers = table_new(0, 8)     -- room for a browser's fields without a rehash
  local clen, chunked, close, keepalive, expect, hosts = -1, false, false, false, false, 0
  local te
  while i < e - 2 do
    local ns = i
    i = i + tonumber(C.ringline_http_strspn(p + i, TCHARS))
    -- an empty name is also how obs-fold (a line starting with SP/HT) shows
    if i == ns or p[i] ~= COLON then return 400 end
    local ne = i
    i = i + 1
    i = i + tonumber(C.ringline_http_strspn(p + i, OWS))
    local vs = i
    -- value: up to the CR of its CRLF (the head ends in CRLFCRLF, so there
    -- is one before e); a NUL or a bare LF in it is refused (libc scans: a
    -- byte loop here costs more than the rest of the parse)
    local q = C.ringline_http_memchr(p + i, CR, e - i) - p
    if p[q + 1] ~= LF then return 400 end
    if q > i and (C.ringline_http_memchr(p + i, LF, q - i) ~= nil
                  or C.ringline_http_memchr(p + i, 0, q - i) ~= nil) then
      return 400
    end
    i = q
    local ve = i
    while ve > vs and (p[ve - 1] == SP or p[ve - 1] == HT) do ve = ve - 1 end
    i = i + 2
    local name = lower(ffi_string(p + ns, ne - ns))
    local value = ffi_string(p + vs, ve - vs)
    if name == "content-length" then
      local n = ve - vs
      if n == 0 or n > 15 then return 400 end
      local v = 0
      for k = vs, ve - 1 do
        local d = p[k] - 48
        if d < 0 or d > 9 then return 400 end
        v = v * 10 + d
      end
      if clen >= 0 and clen ~= v then return 400 end
      clen = v
    elseif name == "transfer-encoding" then
      te = te and te .. ", " .. value or value
    elseif name == "connection" then
      local l = lower(value)
      if l:find("close", 1, true) then close = true end
      if l:find("keep-alive", 1, true) then keepalive = true end
    elseif name == "expect" then
      if lower(value) == "100-continue" then expect = true end
    elseif name == "host" then
      hosts = hosts + 1
    end
    local old = headers[name]
    if old == nil then
      headers[name] = value
    elseif name == "content-length" then      -- a repeat of the same length
      -- keep one copy
    elseif name == "set-cookie" then
      if type(old) == "table" then old[#old + 1] = value else headers[name] = { old, value } end
    elseif name == "cookie" then
      headers[name] = old .. "; " .. value
    else
      headers[name] = old .. ", " .. value
    end
  end
  if te then
    if clen >= 0 or v10 then return 400 end   -- request smuggling / 1.0 cannot
    if lower(te) ~= "chunked" then return 501 end
    chunked = true
  end
  if hosts > 1 or (hosts == 0 and not v10) then return 400 end
  return e, method, target, v10 and "1.0" or "1.1", headers, clen, chunked, close, keepalive, expect
end

-- A chunk-size line at p[0, len): returns the size and the line's length
-- (CRLF included); nil when not complete yet; false when bad (not hex, too
-- many digits, a control byte in the extension). Lines are at most 4096 bytes.
local LINE_MAX = 4096
M.CHUNK_LINE_MAX = LINE_MAX
function M.chunk_size(p, len)
  local i, v = 0, 0
  while i < len do
    local c = p[i]
    local d
    if c >= 48 and c <= 57 then d = c - 48
    elseif c >= 97 and c <= 102 then d = c - 87
    elseif c >= 65 and c <= 70 then d = c - 55
    else break end
    if i >= 15 then return false end         -- past 2^60: no body is that long
    v = v * 16 + d
    i = i + 1
  end
  if i == len then
    if len < LINE_MAX then return nil end
    return false
  end
  if i == 0 then return false end
  -- chunk-ext: ";" and anything printable (read and ignored); then CRLF
  local c = p[i]
  if c ~= CR and c ~= SP and c ~= HT and c ~= 59 then return false end
  while i < len do
    c = p[i]
    if c == CR then
      if i + 1 >= len then break end
      if p[i + 1] ~= LF then return false end
      return v, i + 2
    end
    if (c < 32 and c ~= HT) or c == 127 then return false end
    i = i + 1
  end
  if len < LINE_MAX then return nil end
  return false
end

-- A trailer line at p[0, len): its length with CRLF (2 for the empty line
-- that ends the body), nil when not complete, false when bad.
function M.trailer_line(p, len)
  for i = 0, len - 1 do
    local c = p[i]
    if c == CR then
      if i + 1 >= len then return nil end
      if p[i + 1] ~= LF then return false end
      return i + 2
    end
    if (c < 32 and c ~= HT) or c == 127 then return false end
  end
  return nil
end

return M
