-- ringline.websocket: RFC 6455 over a ringline connection, with
-- lua-resty-websocket's method names.
--
--   local websocket = require "ringline.websocket"
--   local ws = assert(websocket.connect("ws://127.0.0.1:8080/chat"))   -- a client
--   local ws = assert(websocket.accept(conn))        -- a server, on a raw connection
--   local data, typ, err = ws:recv_frame()           -- "text", "binary", "close", ...
--   ws:send_text("hi"); ws:send_close(1000, "bye")
--
-- The seam with the HTTP server: http.websocket(req, res) calls
-- websocket.accept(conn, req, opts) with the request it has already parsed
-- (req.method, req.version, req.headers with lower-case keys) and the
-- connection under res; accept validates it, writes the 101 and returns
-- the ws object. On a bad request it writes nothing and returns
-- nil, err, status (400, or 426 for a version other than 13): the server
-- answers it.
--
-- SHA-1, base64 and the random masks and keys come from OpenSSL's
-- libcrypto (linked by the core), through the FFI.
local ffi = require "ffi"
local bit = require "bit"
local ringline = require "ringline"

local band, bor, bxor, rshift, lshift = bit.band, bit.bor, bit.bxor, bit.rshift, bit.lshift
local byte, char, sub, lower, match, find = string.byte, string.char, string.sub, string.lower,
  string.match, string.find
local type, tostring, tonumber, error, setmetatable, pairs = type, tostring, tonumber, error,
  setmetatable, pairs
local ffi_string = ffi.string
local concat = table.concat

ffi.cdef [[
unsigned char *SHA1(const unsigned char *d, size_t n, unsigned char *md);
int EVP_EncodeBlock(unsigned char *t, const unsigned char *f, int n);
int RAND_bytes(unsigned char *buf, int num);
]]

-- libcrypto: already in the process with libringline; else load it.
local crypto
do
  local ok = pcall(function() return ffi.C.SHA1 end)
  if ok then
    crypto = ffi.C
  else
    local ok2, lib = pcall(ffi.load, "crypto")
    if not ok2 then ok2, lib = pcall(ffi.load, "libcrypto.so.3") end
    if not ok2 then error("ringline.websocket: libcrypto not found: " .. tostring(lib)) end
    crypto = lib
  end
end

local M = {}

M._defaults = { max_payload_len = 65535, timeout = 60000, max_header_bytes = 16384 }

local GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

local digest = ffi.new("unsigned char[20]")
local b64out = ffi.new("unsigned char[64]")
local randbuf = ffi.new("unsigned char[16]")

local function base64(s)
  local n = crypto.EVP_EncodeBlock(b64out, s, #s)
  return ffi_string(b64out, n)
end

-- base64(SHA-1(key .. GUID)): the Sec-WebSocket-Accept for a key.
function M._accept_key(key)
  local s = key .. GUID
  crypto.SHA1(s, #s, digest)
  return base64(ffi_string(digest, 20))
end

local function random_bytes(n)
  if crypto.RAND_bytes(randbuf, n) ~= 1 then error("ringline.websocket: RAND_bytes failed") end
  return ffi_string(randbuf, n)
end

-- Masking keys, 4 bytes each, taken from a block of 1024 random bytes
-- refilled when used up (one RAND_bytes call per 256 frames).
local keybuf = ffi.new("unsigned char[1024]")
local keypos = 1024
local function mask_key()
  if keypos >= 1024 then
    if crypto.RAND_bytes(keybuf, 1024) ~= 1 then error("ringline.websocket: RAND_bytes failed") end
    keypos = 0
  end
  local k = ffi_string(keybuf + keypos, 4)
  keypos = keypos + 4
  return k
end

------------------------------------------------------------------------
-- UTF-8
------------------------------------------------------------------------

-- Validates p[0..n-1]. Returns the number of bytes at the end that begin a
-- sequence the data cuts short (0..3; a later fragment may complete it),
-- or nil when the bytes are not UTF-8 (overlongs, surrogates, > U+10FFFF).
-- The ranges of a sequence's bytes after its first: the second's is
-- narrower after E0, ED, F0 and F4 (no overlongs, surrogates or code
-- points past U+10FFFF), the others are 80..BF.
local function lead(c)
  if c >= 0xC2 and c <= 0xDF then return 1, 0x80, 0xBF end
  if c == 0xE0 then return 2, 0xA0, 0xBF end
  if c == 0xED then return 2, 0x80, 0x9F end
  if c >= 0xE1 and c <= 0xEF then return 2, 0x80, 0xBF end
  if c == 0xF0 then return 3, 0x90, 0xBF end
  if c >= 0xF1 and c <= 0xF3 then return 3, 0x80, 0xBF end
  if c == 0xF4 then return 3, 0x80, 0x8F end
  return nil
end

-- A sequence the data cuts short at p[i]: its bytes so far must be right.
local function utf8_tail(p, i, n, lo, hi)
  if i + 1 < n and (p[i + 1] < lo or p[i + 1] > hi) then return nil end
  if i + 2 < n and (p[i + 2] < 0x80 or p[i + 2] > 0xBF) then return nil end
  return n - i
end

-- Validates p[0..n-1]. Returns the number of bytes at the end that begin a
-- sequence the data cuts short (0..3; a later fragment may complete it),
-- or nil when the bytes are not UTF-8. One loop, no inner one, so it
-- compiles to one trace.
local function utf8_check(p, n)
  local i = 0
  while i < n do
    local c = p[i]
    if c < 0x80 then
      i = i + 1
    else
      local need, lo, hi = lead(c)
      if not need then return nil end
      if i + need >= n then return utf8_tail(p, i, n, lo, hi) end
      local d = p[i + 1]
      if d < lo or d > hi then return nil end
      if need >= 2 then
        d = p[i + 2]
        if d < 0x80 or d > 0xBF then return nil end
        if need == 3 then
          d = p[i + 3]
          if d < 0x80 or d > 0xBF then return nil end
        end
      end
      i = i + need + 1
    end
  end
  return 0
end

-- Whole-string check, for close reasons and tests.
function M._utf8_valid(s)
  local p = ffi.cast("const uint8_t *", s)
  return utf8_check(p, #s) == 0
end

------------------------------------------------------------------------
-- The ws object
------------------------------------------------------------------------

local ws = {}
local ws_mt = { __index = ws, __name = "ringline.websocket" }

local OP = { [0] = "continuation", [1] = "text", [2] = "binary", [8] = "close", [9] = "ping", [10] = "pong" }
local OPCODE = { continuation = 0, text = 1, binary = 2, close = 8, ping = 9, pong = 10 }

local function check_opts(opts, allowed, who)
  if opts == nil then return {} end
  if type(opts) ~= "table" then error(who .. ": opts must be a table", 3) end
  for k in pairs(opts) do
    if not allowed[k] then error(who .. ": unknown option " .. tostring(k), 3) end
  end
  return opts
end

-- new(conn, opts): a ws object over a connection whose handshake is done.
-- opts.client: this end is the client (masks what it sends, refuses
-- masked frames).
local function new(conn, opts, client)
  local max = opts.max_payload_len or M._defaults.max_payload_len
  if type(max) ~= "number" or max < 0 or max > 1073741800 then
    error("ringline.websocket: max_payload_len must be 0..1073741800", 3)
  end
  if opts.timeout ~= nil then conn:settimeout(opts.timeout) end
  return setmetatable({
    conn = conn, client = client, max_payload_len = max,
    auto_pong = opts.auto_pong ~= false,
    fragment = false,        -- the type of the message being received in fragments
    utf8_tail = "",          -- a text message's cut-short UTF-8 sequence so far
    close_sent = false, close_received = false, fatal = false,
    sbuf = false,
  }, ws_mt)
end

function M.new(conn, opts)
  opts = check_opts(opts, { max_payload_len = true, auto_pong = true, timeout = true, client = true },
    "ringline.websocket.new")
  return new(conn, opts, opts.client and true or false)
end

-- out[i] = src[i] xor k[i % 4]. A function of its own: its loop is a
-- trace of its own, not an inner loop of its callers' traces.
local function xor_mask(out, src, k, len)
  for i = 0, len - 1 do out[i] = bxor(src[i], k[band(i, 3)]) end
end

-- The masked copy of a client's payload (grown, never shrunk; one per
-- worker: it is turned into a string before anything can yield).
local mask_buf, mask_cap = nil, 0

-- One frame's bytes: header, mask, (masked) payload.
local function build(fin, opcode, payload, mask)
  local len = #payload
  local b1 = bor(fin and 0x80 or 0, opcode)
  local mbit = mask and 0x80 or 0
  local hdr
  if len <= 125 then
    hdr = char(b1, bor(mbit, len))
  elseif len <= 65535 then
    hdr = char(b1, bor(mbit, 126), rshift(len, 8), band(len, 255))
  else
    local hi = math.floor(len / 4294967296)
    local lo = len % 4294967296
    hdr = char(b1, bor(mbit, 127),
      band(rshift(hi, 24), 255), band(rshift(hi, 16), 255), band(rshift(hi, 8), 255), band(hi, 255),
      band(rshift(lo, 24), 255), band(rshift(lo, 16), 255), band(rshift(lo, 8), 255), band(lo, 255))
  end
  if not mask then return hdr, payload end
  local key = mask_key()
  if len == 0 then return hdr .. key, "" end
  if mask_cap < len then
    mask_cap = len < 4096 and 4096 or len
    mask_buf = ffi.new("uint8_t[?]", mask_cap)
  end
  local out = mask_buf
  local src = ffi.cast("const uint8_t *", payload)
  xor_mask(out, src, ffi.cast("const uint8_t *", key), len)
  return hdr .. key, ffi_string(out, len)
end

-- send_frame(fin, opcode, payload): one frame. Returns bytes, or nil, err.
function ws:send_frame(fin, opcode, payload)
  if self.fatal then return nil, "closed" end
  if self.close_sent then return nil, "closed" end
  payload = payload == nil and "" or payload
  if type(payload) ~= "string" then payload = tostring(payload) end
  if type(opcode) ~= "number" or not OP[opcode] then error("ringline.websocket: bad opcode", 2) end
  if opcode >= 8 and (#payload > 125 or not fin) then
    return nil, "control frame too long or fragmented"
  end
  local hdr, data = build(fin, opcode, payload, self.client)
  local n, err = self.conn:send(hdr, data)
  if not n then self.fatal = true return nil, err end
  if opcode == 8 then self.close_sent = true end
  return n
end

function ws:send_text(data) return self:send_frame(true, 1, data) end
function ws:send_binary(data) return self:send_frame(true, 2, data) end
function ws:send_ping(data) return self:send_frame(true, 9, data) end
function ws:send_pong(data) return self:send_frame(true, 10, data) end

-- send_close([code [, reason]]): a close frame (no body without a code).
function ws:send_close(code, reason)
  local payload = ""
  if code ~= nil then
    if type(code) ~= "number" or code < 0 or code > 65535 or code % 1 ~= 0 then
      error("ringline.websocket: bad close code", 2)
    end
    payload = char(rshift(code, 8), band(code, 255)) .. (reason and tostring(reason) or "")
  elseif reason ~= nil then
    error("ringline.websocket: a close reason needs a code", 2)
  end
  return self:send_frame(true, 8, payload)
end

-- A protocol violation: close with `code`, stop, and report.
local function violation(self, code, msg)
  if not self.close_sent and not self.fatal then
    self:send_frame(true, 8, char(rshift(code, 8), band(code, 255)))
  end
  self.fatal = true
  self.close_code = code
  self.conn:close()
  return nil, nil, msg
end

local function valid_close_code(c)
  return (c >= 1000 and c <= 1003) or (c >= 1007 and c <= 1014) or (c >= 3000 and c <= 4999)
end

local unmask_buf, unmask_cap = nil, 0

-- Errors after which the ws is still usable: nothing was consumed.
local SOFT = { timeout = true, canceled = true, ["socket busy reading"] = true }

-- recv_frame(): the next frame: data, typ, err. typ is "text", "binary",
-- "continuation", "close", "ping" or "pong". A fragment that is not the
-- last of its message gives err "again". A close frame gives its reason
-- as data and its code as err (nil when it had none). Failures: nil, nil,
-- err (a protocol violation has sent a close frame with its code first).
function ws:recv_frame()
  if self.fatal then return nil, nil, "closed" end
  local c = self.conn
  do
    -- The frame is parsed in place in the receive buffer and consumed
    -- whole at the end: a timeout anywhere consumes nothing, so the ws
    -- stays usable; one view for the header, one more for the payload
    -- when it has not all arrived.
    local p, n = c:view(2)
    if not p then
      if not SOFT[n] then self.fatal = true end
      return nil, nil, n
    end
    local b1, b2 = p[0], p[1]
    local fin = band(b1, 0x80) ~= 0
    if band(b1, 0x70) ~= 0 then return violation(self, 1002, "reserved bits set") end
    local opcode = band(b1, 0x0f)
    local typ = OP[opcode]
    if not typ then return violation(self, 1002, "unknown opcode") end
    local masked = band(b2, 0x80) ~= 0
    if masked == self.client then
      return violation(self, 1002, masked and "masked frame from a server" or "unmasked frame from a client")
    end
    local len = band(b2, 0x7f)
    if opcode >= 8 then
      if not fin then return violation(self, 1002, "fragmented control frame") end
      if len > 125 then return violation(self, 1002, "control frame too long") end
    end
    local hlen = 2 + (len == 126 and 2 or len == 127 and 8 or 0) + (masked and 4 or 0)
    if n < hlen then
      p, n = c:view(hlen)
      if not p then
        if not SOFT[n] then self.fatal = true end
        return nil, nil, n
      end
    end
    if len == 126 then
      len = p[2] * 256 + p[3]
      if len < 126 then return violation(self, 1002, "length not minimal") end
    elseif len == 127 then
      if p[2] >= 0x80 then return violation(self, 1002, "length with the top bit set") end
      len = 0
      for i = 2, 9 do len = len * 256 + p[i] end
      if len < 65536 then return violation(self, 1002, "length not minimal") end
    end
    if len > self.max_payload_len then return violation(self, 1009, "frame too large") end
    -- message state: a continuation needs a message under way, a new data
    -- frame needs none
    if opcode == 0 then
      if not self.fragment then return violation(self, 1002, "continuation without a message") end
    elseif opcode < 8 then
      if self.fragment then return violation(self, 1002, "data frame inside a fragmented message") end
    end
    local total = hlen + len
    if n < total then
      p, n = c:view(total, { max = total })
      if not p then
        if not SOFT[n] then self.fatal = true end
        return nil, nil, n
      end
    end
    local data = ""
    if len > 0 then
      if masked then
        if unmask_cap < len then
          unmask_cap = len < 4096 and 4096 or len
          unmask_buf = ffi.new("uint8_t[?]", unmask_cap)
        end
        local k = p + (hlen - 4)
        local src = p + hlen
        local out = unmask_buf
        xor_mask(out, src, k, len)
        data = ffi_string(out, len)
      else
        data = ffi_string(p + hlen, len)
      end
    end
    c:consume(total)
    if opcode == 8 then
      self.close_received = true
      local code, reason
      if len == 1 then return violation(self, 1002, "close frame with one byte") end
      if len >= 2 then
        code = byte(data, 1) * 256 + byte(data, 2)
        reason = sub(data, 3)
        if not valid_close_code(code) then return violation(self, 1002, "bad close code") end
        if not M._utf8_valid(reason) then return violation(self, 1007, "close reason not UTF-8") end
      else
        reason = ""
      end
      -- answer the close (echoing its code) unless this end began it
      if not self.close_sent then self:send_frame(true, 8, code and char(rshift(code, 8), band(code, 255)) or "") end
      -- the closing handshake is done: nothing more may come or go
      self.fatal = true
      self.conn:close()
      return reason, "close", code
    elseif opcode == 9 and self.auto_pong then
      local ok, serr = self:send_frame(true, 10, data)
      if not ok and not self.close_sent then return nil, nil, serr end
      -- answered: read on (a tail call, no loop: the frame path is one
      -- trace, and a run of pings does not grow the stack)
      return self:recv_frame()
    else
      local mtyp = opcode == 0 and self.fragment or typ
      if opcode < 8 then
        if mtyp == "text" then
          local s = self.utf8_tail == "" and data or self.utf8_tail .. data
          local tail = utf8_check(ffi.cast("const uint8_t *", s), #s)
          if not tail or (fin and tail ~= 0) then
            return violation(self, 1007, "invalid UTF-8 in a text message")
          end
          self.utf8_tail = tail > 0 and sub(s, -tail) or ""
        end
        if fin then
          self.fragment, self.utf8_tail = false, ""
        else
          self.fragment = mtyp
        end
      end
      if not fin then return data, typ, "again" end
      return data, typ, nil
    end
  end
end

-- The connection under the ws (after close, closed).
function ws:close()
  self.fatal = true
  return self.conn:close()
end

function ws:set_timeout(ms)
  return self.conn:settimeout(ms)
end

------------------------------------------------------------------------
-- Handshakes
------------------------------------------------------------------------

local function has_token(v, token)
  if not v then return false end
  for t in v:gmatch("[^,]+") do
    if lower(t:match("^%s*(.-)%s*$")) == token then return true end
  end
  return false
end

-- Reads a request line and its headers from a raw connection.
local function read_request(conn, max)
  local line, err = conn:receive("*l")
  if not line then return nil, err end
  local method, target, version = match(line, "^(%u+) (%S+) HTTP/1%.(%d)$")
  if not method then return nil, "bad request line" end
  local headers, used = {}, #line
  while true do
    line, err = conn:receive("*l")
    if not line then return nil, err end
    used = used + #line + 2
    if used > max then return nil, "header too large" end
    if line == "" then break end
    local name, value = match(line, "^([!#$%%&'*+%-.^_`|~%w]+):[ \t]*(.-)[ \t]*$")
    if not name then return nil, "bad header line" end
    name = lower(name)
    headers[name] = headers[name] and headers[name] .. ", " .. value or value
  end
  return { method = method, target = target, version = "1." .. version, headers = headers }
end

-- accept(conn [, req [, opts]]): the server's handshake. req is the parsed
-- request ({ method, version, headers = lower-case keys }); without it the
-- request is read from conn. Writes the 101 and returns the ws object,
-- or nil, err, status and writes nothing (the caller answers status).
function M.accept(conn, req, opts)
  opts = check_opts(opts, { max_payload_len = true, auto_pong = true, timeout = true, protocol = true,
                            max_header_bytes = true }, "ringline.websocket.accept")
  if type(conn) ~= "table" then error("ringline.websocket.accept: a connection expected", 2) end
  if req == nil then
    local err
    req, err = read_request(conn, opts.max_header_bytes or M._defaults.max_header_bytes)
    if not req then return nil, err, 400 end
  elseif type(req) ~= "table" or type(req.headers) ~= "table" then
    error("ringline.websocket.accept: req must be a table with headers", 2)
  end
  local h = req.headers
  if req.method ~= "GET" then return nil, "not a GET", 400 end
  if req.version and req.version ~= "1.1" then return nil, "not HTTP/1.1", 400 end
  if not has_token(h["upgrade"], "websocket") then return nil, "no upgrade: websocket", 400 end
  if not has_token(h["connection"], "upgrade") then return nil, "no connection: upgrade", 400 end
  if h["sec-websocket-version"] ~= "13" then return nil, "unsupported version", 426 end
  local key = h["sec-websocket-key"]
  -- 16 bytes, base64: 22 characters and "=="
  if type(key) ~= "string" or not match(key, "^[%w+/]+==$") or #key ~= 24 then
    return nil, "bad sec-websocket-key", 400
  end
  local parts = { "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n",
                  "Sec-WebSocket-Accept: ", M._accept_key(key), "\r\n" }
  if opts.protocol then parts[#parts + 1] = "Sec-WebSocket-Protocol: " .. opts.protocol .. "\r\n" end
  parts[#parts + 1] = "\r\n"
  local ok, err = conn:send(parts)
  if not ok then return nil, err end
  return new(conn, opts, false)
end

-- connect(url [, opts]): the client's handshake over a new connection.
function M.connect(url, opts)
  opts = check_opts(opts, { max_payload_len = true, auto_pong = true, timeout = true, protocols = true,
                            origin = true, headers = true, ssl = true, max_header_bytes = true },
                    "ringline.websocket.connect")
  local hc = require "ringline.http_client"
  local scheme, host, port, target, hosthdr = hc._parse_url(url)
  if not scheme then return nil, host end
  if scheme ~= "ws" and scheme ~= "wss" then return nil, "unsupported scheme" end
  local timeout = opts.timeout or M._defaults.timeout
  local copts = { timeout = timeout / 1000 }
  if scheme == "wss" then copts.ssl = opts.ssl or true end
  local conn, err = ringline.connect(host, port, copts)
  if not conn then return nil, err end
  conn:settimeout(timeout)
  local key = base64(random_bytes(16))
  local parts = { "GET ", target, " HTTP/1.1\r\nHost: ", hosthdr,
                  "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ", key,
                  "\r\nSec-WebSocket-Version: 13\r\n" }
  local protos = opts.protocols
  if protos then
    if type(protos) == "table" then protos = concat(protos, ", ") end
    parts[#parts + 1] = "Sec-WebSocket-Protocol: " .. protos .. "\r\n"
  end
  if opts.origin then parts[#parts + 1] = "Origin: " .. opts.origin .. "\r\n" end
  for k, v in pairs(opts.headers or {}) do
    if find(k .. tostring(v), "[\r\n]") then error("ringline.websocket.connect: bad header", 2) end
    parts[#parts + 1] = k .. ": " .. tostring(v) .. "\r\n"
  end
  parts[#parts + 1] = "\r\n"
  local function fail(e) conn:close() return nil, e end
  local ok
  ok, err = conn:send(parts)
  if not ok then return fail(err) end
  local line
  line, err = conn:receive("*l")
  if not line then return fail(err) end
  local status = match(line, "^HTTP/1%.1 (%d%d%d)")
  if status ~= "101" then return fail("bad status: " .. (status or "?")) end
  local h, used, max = {}, #line, opts.max_header_bytes or M._defaults.max_header_bytes
  while true do
    line, err = conn:receive("*l")
    if not line then return fail(err) end
    used = used + #line + 2
    if used > max then return fail("header too large") end
    if line == "" then break end
    local name, value = match(line, "^([^:%s]+):[ \t]*(.-)[ \t]*$")
    if not name then return fail("bad header line") end
    name = lower(name)
    h[name] = h[name] and h[name] .. ", " .. value or value
  end
  if not has_token(h["upgrade"], "websocket") then return fail("no upgrade: websocket") end
  if not has_token(h["connection"], "upgrade") then return fail("no connection: upgrade") end
  if h["sec-websocket-accept"] ~= M._accept_key(key) then return fail("bad sec-websocket-accept") end
  local w = new(conn, opts, true)
  w.protocol = h["sec-websocket-protocol"]
  return w
end

return M
