-- ringline.ngx.string: ngx's encoding and digest helpers - base64 (and
-- ngx.base64's URL form), md5, md5_bin, sha1_bin, hmac_sha1 (libcrypto,
-- linked for TLS), crc32_short/long (zlib's crc32), escape_uri,
-- unescape_uri, encode_args, decode_args, quote_sql_str.
--
-- The FFI declarations carry their own names (asm labels onto the real
-- symbols), so they never clash with another module's cdef of the same
-- function.
local ffi = require "ffi"
local urlargs = require "ringline.urlargs"

pcall(ffi.cdef, [[
int rl_ngx_b64enc(unsigned char *t, const unsigned char *f, int n) __asm__("EVP_EncodeBlock");
int rl_ngx_b64dec(unsigned char *t, const unsigned char *f, int n) __asm__("EVP_DecodeBlock");
unsigned char *rl_ngx_md5(const unsigned char *d, size_t n, unsigned char *md) __asm__("MD5");
unsigned char *rl_ngx_sha1(const unsigned char *d, size_t n, unsigned char *md) __asm__("SHA1");
const void *rl_ngx_evp_sha1(void) __asm__("EVP_sha1");
unsigned char *rl_ngx_hmac(const void *md, const void *key, int klen, const unsigned char *d,
                           size_t n, unsigned char *out, unsigned int *outlen) __asm__("HMAC");
unsigned long rl_ngx_crc32(unsigned long crc, const unsigned char *buf, unsigned int len) __asm__("crc32");
]])

local function lib(names, probe)
  if pcall(function() return ffi.C[probe] end) then return ffi.C end
  for _, n in ipairs(names) do
    local ok, l = pcall(ffi.load, n)
    if ok and pcall(function() return l[probe] end) then return l end
  end
  error("ringline.ngx: " .. names[1] .. " not found (needed for " .. probe .. ")")
end

local crypto = lib({ "crypto", "libcrypto.so.3" }, "rl_ngx_b64enc")
local zlib -- loaded at the first crc32

local ffi_string, ffi_new = ffi.string, ffi.new
local type, tostring, tonumber, error, pairs, ipairs = type, tostring, tonumber, error, pairs, ipairs
local byte, char, format, gsub = string.byte, string.char, string.format, string.gsub
local concat, sort = table.concat, table.sort
local floor = math.floor

local M = {}

local buf, bufn = ffi_new("unsigned char[256]"), 256
local function scratch(n)
  if n > bufn then
    bufn = n
    buf = ffi_new("unsigned char[?]", n)
  end
  return buf
end

local function need_string(s, what)
  local ts = type(s)
  if ts == "string" then return s end
  if ts == "number" then return tostring(s) end
  if s == nil then return "" end
  error(what .. ": expected a string", 3)
end

------------------------------------------------------------------------
-- base64
------------------------------------------------------------------------

local function b64enc(s)
  local out = scratch(floor((#s + 2) / 3) * 4 + 1)
  return ffi_string(out, crypto.rl_ngx_b64enc(out, s, #s))
end

function M.encode_base64(s, no_padding)
  s = need_string(s, "ngx.encode_base64")
  local r = b64enc(s)
  if no_padding then r = r:gsub("=+$", "") end
  return r
end

-- nil for anything that is not base64 (padding optional, as nginx's).
local function b64dec(s)
  if s:find("[^%w+/=]") then return nil end
  local body = s:match("^([^=]*)=?=?$")
  if not body then return nil end
  local r = #body % 4
  if r == 1 then return nil end
  if r > 0 then body = body .. ("="):rep(4 - r) end
  local out = scratch(#body / 4 * 3 + 1)
  local n = crypto.rl_ngx_b64dec(out, body, #body)
  if n < 0 then return nil end
  -- EVP_DecodeBlock counts the padding as zero bytes
  if r > 0 then n = n - (4 - r) end
  return ffi_string(out, n)
end

function M.decode_base64(s)
  if type(s) ~= "string" then error("ngx.decode_base64: expected a string", 2) end
  return b64dec(s)
end

-- ngx.base64 (resty.core's module): the URL-safe alphabet, no padding.
M.base64 = {
  encode_base64url = function(s)
    if type(s) ~= "string" then return nil, "must provide a string" end
    return (b64enc(s):gsub("[+/=]", { ["+"] = "-", ["/"] = "_", ["="] = "" }))
  end,
  decode_base64url = function(s)
    if type(s) ~= "string" then return nil, "must provide a string" end
    local r = b64dec((s:gsub("[-_]", { ["-"] = "+", ["_"] = "/" })))
    if not r or s:find("[+/=]") then return nil, "invalid input" end
    return r
  end,
}

------------------------------------------------------------------------
-- digests
------------------------------------------------------------------------

local md = ffi_new("unsigned char[64]")
local mdlen = ffi_new("unsigned int[1]")

local function hex(s)
  return (s:gsub(".", function(c) return format("%02x", byte(c)) end))
end

function M.md5_bin(s)
  s = need_string(s, "ngx.md5_bin")
  crypto.rl_ngx_md5(s, #s, md)
  return ffi_string(md, 16)
end

function M.md5(s)
  s = need_string(s, "ngx.md5")
  crypto.rl_ngx_md5(s, #s, md)
  return hex(ffi_string(md, 16))
end

function M.sha1_bin(s)
  s = need_string(s, "ngx.sha1_bin")
  crypto.rl_ngx_sha1(s, #s, md)
  return ffi_string(md, 20)
end

function M.hmac_sha1(key, s)
  key = need_string(key, "ngx.hmac_sha1")
  s = need_string(s, "ngx.hmac_sha1")
  crypto.rl_ngx_hmac(crypto.rl_ngx_evp_sha1(), key, #key, s, #s, md, mdlen)
  return ffi_string(md, mdlen[0])
end

-- nginx's two are the same CRC-32 computed two ways.
function M.crc32_long(s)
  s = need_string(s, "ngx.crc32_long")
  if not zlib then zlib = lib({ "z", "libz.so.1" }, "rl_ngx_crc32") end
  return tonumber(zlib.rl_ngx_crc32(0, s, #s))
end
M.crc32_short = M.crc32_long

------------------------------------------------------------------------
-- URIs and arguments
------------------------------------------------------------------------

local function pct(c) return format("%%%02X", byte(c)) end

-- type 2 (the default) escapes a URI component: all but A-Z a-z 0-9 - . _ ~;
-- type 0 a whole URI: spaces, control characters, # % ? and non-ASCII.
function M.escape_uri(s, kind)
  s = need_string(s, "ngx.escape_uri")
  if kind == nil or kind == 2 then return (gsub(s, "[^%w%-%._~]", pct)) end
  if kind == 0 then return (gsub(s, "[%c%s#%%%?\128-\255]", pct)) end
  error("ngx.escape_uri: type " .. tostring(kind) .. " is not supported (0 or 2)", 2)
end

local function unhex(h) return char(tonumber(h, 16)) end

-- %XX decoded, + as a space; bad escapes left as they are.
function M.unescape_uri(s)
  return urlargs.unescape(need_string(s, "ngx.unescape_uri"))
end

-- A path: %XX decoded, + kept (for ngx.var.uri).
function M.unescape_path(s)
  return (gsub(s, "%%(%x%x)", unhex))
end

local esc = M.escape_uri

-- name=value&...: true gives the bare name, false is left out, an array
-- repeats the name. Names are sorted (OpenResty's order is the hash's).
function M.encode_args(t)
  if type(t) ~= "table" then error("ngx.encode_args: expected a table", 2) end
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = tostring(k) end
  sort(keys)
  local out = {}
  local function add(k, v)
    local tv = type(v)
    if v == true then
      out[#out + 1] = esc(k)
    elseif v == false then
      return
    elseif tv == "string" or tv == "number" then
      out[#out + 1] = esc(k) .. "=" .. esc(tostring(v))
    else
      error("ngx.encode_args: bad value for " .. k .. " (" .. tv .. ")", 4)
    end
  end
  for _, k in ipairs(keys) do
    local v = t[k]
    if v == nil then v = t[tonumber(k)] end
    if type(v) == "table" then
      for i = 1, #v do add(k, v[i]) end
    else
      add(k, v)
    end
  end
  return concat(out, "&")
end

-- At most max (default 100; 0 = no limit) arguments.
function M.decode_args(s, max)
  if type(s) ~= "string" then error("ngx.decode_args: expected a string", 2) end
  return urlargs.decode(s, max or 100)
end

local SQL = { ["\0"] = "\\0", ["\b"] = "\\b", ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t",
              ["\26"] = "\\Z", ["\\"] = "\\\\", ["'"] = "\\'", ['"'] = '\\"' }

-- MySQL's escapes, quoted.
function M.quote_sql_str(s)
  s = need_string(s, "ngx.quote_sql_str")
  return "'" .. gsub(s, "[%z\b\n\r\t\26\\'\"]", SQL) .. "'"
end

return M
