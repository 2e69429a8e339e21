-- ringline.http_parse: the HTTP/1.x request-head parser of ringline.http,
-- reading the receive buffer in place (a const uint8_t * from conn:view).
--
-- parse_head(p, len, lim) has the core (rl_http_head_parse, in
-- core/src/http_head.c) find a complete head in p[0, len), check it byte by
-- byte and record where its parts lie; then it makes the Lua strings the
-- API needs (method, target, header names and values) and applies the
-- fields' meaning (framing, Connection, Expect, Host); nothing else is
-- allocated.
local ffi = require "ffi"

local C = require "ringline.lib"
local ffi_string, ffi_new = ffi.string, ffi.new
local lower = string.lower
local ok_new, table_new = pcall(require, "table.new")
if not ok_new then table_new = function() return {} end end

local M = {}

local CR, LF, SP, HT = 13, 10, 32, 9
local K_HOST, K_EXPECT, K_CONNECTION = C.RL_HTTP_HOST, C.RL_HTTP_EXPECT, C.RL_HTTP_CONNECTION
local K_CLEN, K_TE = C.RL_HTTP_CONTENT_LENGTH, C.RL_HTTP_TRANSFER_ENCODING
local EMSGSIZE, E2BIG, EBADMSG = -C.RL_EMSGSIZE, -C.RL_E2BIG, -C.RL_EBADMSG

-- At most this many fields in a head (431 past it): the core records each
-- field's offsets in an array of this size.
local FIELDS_MAX = 1024
M.FIELDS_MAX = FIELDS_MAX

-- The worker's one scratch head (parsing never yields): the field array
-- and the lower-cased names, grown to the largest lim asked for.
local head = ffi_new("struct rl_http_head")
local fields = ffi_new("struct rl_http_field[?]", FIELDS_MAX)
head.fields, head.max_fields = fields, FIELDS_MAX
local lowbuf, lowcap = nil, 0
local function scratch(lim)
  if lim > lowcap then
    lowbuf, lowcap = ffi_new("uint8_t[?]", lim), lim
    head.lower = lowbuf
  end
end
scratch(8192)


-- The headers table of a head (keys lower case): repeated fields joined
-- with ", " (Cookie with "; ", Set-Cookie an array, a repeated
-- Content-Length, already checked equal, kept once). p holds the head's
-- fields as the last rl_http_head_parse left them in `fields`.
local function build_headers(p, nf)
  local headers = table_new(0, nf)      -- one key per field at most: never a rehash
  for k = 0, nf - 1 do
    local f = fields[k]
    local name = ffi_string(lowbuf + f.name_off, f.name_len)
    local value = ffi_string(p + f.value_off, f.value_len)
    local old = headers[name]
    if old == nil then
      headers[name] = value
    elseif f.kind == K_CLEN then
      -- keep one copy
    elseif name == "set-cookie" then
      if type(old) == "table" then old[#old + 1] = value else headers[name] = { old, value } end
    elseif name == "cookie" then
      headers[name] = old .. "; " .. value
    else
      headers[name] = old .. ", " .. value
    end
  end
  return headers
end

-- The headers table of a head string parse_head returned: the head is
-- parsed again (it parsed once, so it does again), only when a handler
-- asks for req.headers.
local u8p = ffi.typeof("const uint8_t *")
function M.headers(head_s)
  local n = #head_s
  if n > lowcap then scratch(n) end
  local p = ffi.cast(u8p, head_s)
  local e = C.rl_http_head_parse(p, n, n, head)
  if e ~= n then error("ringline.http: a head that parsed once did not parse again") end
  return build_headers(p, head.nfields)
end

-- Parses the head at p[0, len) with at most lim bytes (request line and
-- fields). Returns nil when it is not complete yet; a status (400, 431,
-- 501, 505) when it is bad; else
--   e (bytes of the head), method, target, version ("1.0"/"1.1"), the
--   head as a string (M.headers makes its table when asked),
--   content-length (-1: none), chunked, close, keepalive, expect-continue
-- Only the fields that frame the request (and Connection, Expect) are
-- read here; no other string is made.
function M.parse_head(p, len, lim)
  if lim > lowcap then scratch(lim) end
  local e = C.rl_http_head_parse(p, len, lim, head)
  if e <= 0 then
    if e == 0 then return nil end
    if e == EMSGSIZE or e == E2BIG then return 431 end
    if e == EBADMSG then return 400 end
    return 505
  end
  local ml = head.method_len
  local method
  if ml == 3 and p[0] == 71 and p[1] == 69 and p[2] == 84 then method = "GET"
  else method = ffi_string(p, ml) end
  local target = ffi_string(p + head.target_off, head.target_len)
  local v10 = head.minor == 0
  local nf = head.nfields
  local clen, chunked, close, keepalive, expect, hosts = -1, false, false, false, false, 0
  local te
  for k = 0, nf - 1 do
    local f = fields[k]
    local kind = f.kind
    if kind ~= 0 then
      local vs, vl = f.value_off, f.value_len
      if kind == K_CLEN then
        if vl == 0 or vl > 15 then return 400 end
        local v = 0
        for j = vs, vs + vl - 1 do
          local d = p[j] - 48
          if d < 0 or d > 9 then return 400 end
          v = v * 10 + d
        end
        if clen >= 0 and clen ~= v then return 400 end
        clen = v
      elseif kind == K_HOST then
        hosts = hosts + 1
      else
        local value = lower(ffi_string(p + vs, vl))
        if kind == K_TE then
          te = te and te .. ", " .. value or value
        elseif kind == K_CONNECTION then
          if value:find("close", 1, true) then close = true end
          if value:find("keep-alive", 1, true) then keepalive = true end
        elseif kind == K_EXPECT then
          if value == "100-continue" then expect = true end
        end
      end
    end
  end
  if te then
    if clen >= 0 or v10 then return 400 end   -- request smuggling / 1.0 cannot
    if te ~= "chunked" then return 501 end
    chunked = true
  end
  if hosts > 1 or (hosts == 0 and not v10) then return 400 end
  return e, method, target, v10 and "1.0" or "1.1", ffi_string(p, e), clen, chunked, close,
         keepalive, expect
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
