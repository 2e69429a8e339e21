-- ringline.tls: TLS on connections. The core runs the record layer
-- (core/src/tls.c, OpenSSL through memory BIOs): after a handshake the
-- connection's receive, view and send calls see plaintext as on any other
-- connection. This module makes the contexts (one per certificate pair or
-- CA choice, cached for the run), runs a handshake for a task (the core
-- ends it with one RL_EV_TLS, within tls_handshake_timeout) and reads
-- conn:sslinfo().
--
-- Options (checked here, so listen and connect refuse the same way):
--   server: ssl = { cert = PATH, key = PATH, alpn = {...}, protocols = {...},
--                   ciphers = "...", client_ca = PATH, handshake_timeout = MS,
--                   sni = { ["a.example"] = { cert = PATH, key = PATH }, ... } }
--   client: ssl = true | { verify = true, server_name = NAME, ca = PATH,
--                          alpn = {...}, cert = PATH, key = PATH,
--                          protocols = {...}, ciphers = "...", session = S,
--                          handshake_timeout = MS }
local ffi = require "ffi"
local C = require "ringline.lib"
local sched = require "ringline.sched"
local errors = require "ringline.errors"
local check = require "ringline.check"

local ffi_string, ffi_new, ffi_gc, ffi_istype = ffi.string, ffi.new, ffi.gc, ffi.istype
local type, error, tostring, tonumber, pairs, ipairs = type, error, tostring, tonumber, pairs, ipairs
local concat, sort, char = table.concat, table.sort, string.char
local errstr = errors.errstr
local wake = sched.wake
local wait_begin, wait_park, wait_end = sched.wait_begin, sched.wait_park, sched.wait_end

local _ = C.rl_conn_tls_start, C.rl_conn_tls_info  -- resolved at load

local SERVER_VALID = {
  cert = true, key = true, alpn = true, sni = true, protocols = true, ciphers = true,
  client_ca = true, handshake_timeout = true,
}
local CLIENT_VALID = {
  verify = true, server_name = true, ca = true,
  cafile = true,  -- the issue's name for ca
  alpn = true, cert = true, key = true, protocols = true, ciphers = true, session = true,
  handshake_timeout = true,
}
local SNI_VALID = { cert = true, key = true }

local session_t = ffi.typeof("struct rl_tls_session *")

local M = {}
M.SERVER_VALID, M.CLIENT_VALID = SERVER_VALID, CLIENT_VALID

local function misuse(msg)
  error(msg, errors.caller_level())
end

local function path(v, what)
  if type(v) ~= "string" or v == "" then misuse(what .. " must be a file name") end
  return v
end

-- {"h2", "http/1.1"} -> the wire format (length-prefixed names)
local function alpn_wire(v, what)
  if v == nil then return false end
  if type(v) ~= "table" or #v == 0 then misuse(what .. " must be a list of protocol names") end
  local parts = {}
  for i, name in ipairs(v) do
    if type(name) ~= "string" or #name == 0 or #name > 255 then
      misuse(what .. " must be a list of protocol names (1..255 bytes)")
    end
    parts[i] = char(#name) .. name
  end
  return concat(parts)
end

local VERSIONS = { ["TLSv1.2"] = 12, ["TLSv1.3"] = 13 }
-- {"TLSv1.2", "TLSv1.3"} -> "12-13" (min-max)
local function protocols(v, what)
  if v == nil then return false end
  if type(v) ~= "table" or #v == 0 then misuse(what .. ' must be a list such as {"TLSv1.3"}') end
  local lo, hi = 99, 0
  for _, name in ipairs(v) do
    local n = VERSIONS[name]
    if not n then misuse(what .. ': unknown protocol ' .. tostring(name) .. ' (TLSv1.2, TLSv1.3)') end
    if n < lo then lo = n end
    if n > hi then hi = n end
  end
  return lo .. "-" .. hi
end

-- ms, 1..3600000 (as the tls_handshake_timeout key); false: that key's value.
local function handshake_ms(v, what)
  if v == nil then return false end
  if type(v) ~= "number" or v ~= v or v < 1 or v > 3600000 then
    misuse(what .. " must be milliseconds, 1..3600000")
  end
  return math.floor(v)
end

local function ciphers(v, what)
  if v == nil then return false end
  if type(v) ~= "string" or v == "" then misuse(what .. " must be an OpenSSL cipher list string") end
  return v
end

-- opts.ssl of listen: nil (plaintext) or the checked table.
function M.server_opts(ssl, what)
  if ssl == nil or ssl == false then return nil end
  if type(ssl) ~= "table" then misuse(what .. ": opts.ssl must be a table { cert = ..., key = ... }") end
  check.options(ssl, SERVER_VALID, what .. " ssl")
  local sni = false
  if ssl.sni ~= nil then
    if type(ssl.sni) ~= "table" then misuse(what .. ": ssl.sni must be a table { [name] = { cert = ..., key = ... } }") end
    sni = {}
    for name, pair in pairs(ssl.sni) do
      if type(name) ~= "string" or name == "" or (name:find("*", 1, true) and not name:match("^%*%.[^*]+$")) then
        misuse(what .. ": ssl.sni names must be host names or *.domain")
      end
      if type(pair) ~= "table" then misuse(what .. ": ssl.sni[" .. name .. "] must be { cert = ..., key = ... }") end
      check.options(pair, SNI_VALID, what .. " ssl.sni[" .. name .. "]")
      sni[#sni + 1] = { name = name:lower(), cert = path(pair.cert, what .. ": ssl.sni cert"),
                        key = path(pair.key, what .. ": ssl.sni key") }
    end
    sort(sni, function(a, b) return a.name < b.name end)
  end
  return {
    cert = path(ssl.cert, what .. ": ssl.cert"), key = path(ssl.key, what .. ": ssl.key"),
    alpn = alpn_wire(ssl.alpn, what .. ": ssl.alpn"),
    protocols = protocols(ssl.protocols, what .. ": ssl.protocols"),
    ciphers = ciphers(ssl.ciphers, what .. ": ssl.ciphers"),
    client_ca = ssl.client_ca ~= nil and path(ssl.client_ca, what .. ": ssl.client_ca") or false,
    handshake_timeout = handshake_ms(ssl.handshake_timeout, what .. ": ssl.handshake_timeout"),
    sni = sni,
  }
end

-- A session object (from conn:sslhandshake or sslinfo().session), or nil.
local function session(v, what)
  if v == nil or v == false then return false end
  if not ffi_istype(session_t, v) then misuse(what .. " must be a session from conn:sslhandshake or sslinfo().session") end
  return v
end
M.session = session

-- opts.ssl of connect: nil (plaintext) or the checked table; verify on
-- unless false, server_name the host unless given.
function M.client_opts(ssl, host, what)
  if ssl == nil or ssl == false then return nil end
  if ssl == true then ssl = {} end
  if type(ssl) ~= "table" then misuse(what .. ": opts.ssl must be true or a table") end
  check.options(ssl, CLIENT_VALID, what .. " ssl")
  local verify = ssl.verify
  if verify ~= nil and type(verify) ~= "boolean" then misuse(what .. ": ssl.verify must be a boolean") end
  local name = ssl.server_name
  if name ~= nil and (type(name) ~= "string" or name == "") then
    misuse(what .. ": ssl.server_name must be a string")
  end
  local ca = ssl.ca or ssl.cafile
  if ca ~= nil then path(ca, what .. ": ssl.ca") end
  if name == nil and host and host:sub(1, 5) ~= "unix:" then
    name = host:match("^%[(.*)%]$") or host
  end
  if (ssl.cert == nil) ~= (ssl.key == nil) then misuse(what .. ": ssl.cert and ssl.key go together") end
  return {
    verify = verify ~= false, server_name = name or false, ca = ca or false,
    alpn = alpn_wire(ssl.alpn, what .. ": ssl.alpn"),
    protocols = protocols(ssl.protocols, what .. ": ssl.protocols"),
    ciphers = ciphers(ssl.ciphers, what .. ": ssl.ciphers"),
    cert = ssl.cert ~= nil and path(ssl.cert, what .. ": ssl.cert") or false,
    key = ssl.key ~= nil and path(ssl.key, what .. ": ssl.key") or false,
    session = session(ssl.session, what .. ": ssl.session"),
    handshake_timeout = handshake_ms(ssl.handshake_timeout, what .. ": ssl.handshake_timeout"),
  }
end

-- The run's contexts, one per distinct option set; freed with the run
-- (ffi.gc: each connection holds its own reference in the core).
local function ctx_cache(S)
  local cache = S.tls_ctx
  if not cache then cache = {}; S.tls_ctx = cache end
  return cache
end

local msgbuf = ffi_new("char[256]")
local ctxp = ffi_new("struct rl_tls_ctx *[1]")

local function fail(rc)
  return nil, rc == -errors.EINVAL and msgbuf[0] ~= 0 and ffi_string(msgbuf) or errstr(rc)
end

-- The options both sides share, on a fresh context: nil, err on failure.
local function configure(ctx, o, server)
  msgbuf[0] = 0
  local rc = 0
  if o.alpn then rc = C.rl_tls_ctx_set_alpn(ctx, o.alpn, #o.alpn) end
  if rc == 0 and o.protocols then
    local lo, hi = o.protocols:match("^(%d+)-(%d+)$")
    rc = C.rl_tls_ctx_set_protocols(ctx, tonumber(lo), tonumber(hi))
  end
  if rc == 0 and o.ciphers then rc = C.rl_tls_ctx_set_ciphers(ctx, o.ciphers, msgbuf, 256) end
  if rc == 0 and o.handshake_timeout then
    rc = C.rl_tls_ctx_set_handshake_timeout(ctx, o.handshake_timeout)
  end
  if rc == 0 and server and o.client_ca then
    rc = C.rl_tls_ctx_set_client_ca(ctx, o.client_ca, msgbuf, 256)
  end
  if rc == 0 and not server and o.cert then
    rc = C.rl_tls_ctx_use_cert(ctx, o.cert, o.key, msgbuf, 256)
  end
  if rc < 0 then return fail(rc) end
  return true
end

local function key_of(o, fields)
  local k = {}
  for i, f in ipairs(fields) do k[i] = tostring(o[f]) end
  return concat(k, "\0")
end
local SERVER_KEY = { "cert", "key", "alpn", "protocols", "ciphers", "client_ca", "handshake_timeout" }
local CLIENT_KEY = { "ca", "verify", "alpn", "protocols", "ciphers", "cert", "key", "handshake_timeout" }

local function new_server(o, pair)
  msgbuf[0] = 0
  local rc = C.rl_tls_ctx_new_server(pair.cert, pair.key, ctxp, msgbuf, 256)
  if rc < 0 then return fail(rc) end
  local ctx = ffi_gc(ctxp[0], C.rl_tls_ctx_free)
  local ok, err = configure(ctx, o, true)
  if not ok then return nil, err end
  return ctx
end

function M.server_ctx(S, o)
  local cache = ctx_cache(S)
  local k = "s\0" .. key_of(o, SERVER_KEY)
  if o.sni then
    for _, e in ipairs(o.sni) do k = k .. "\0" .. e.name .. "\0" .. e.cert .. "\0" .. e.key end
  end
  local ctx = cache[k]
  if ctx then return ctx end
  local err
  ctx, err = new_server(o, o)
  if not ctx then return nil, err end
  for _, e in ipairs(o.sni or {}) do
    -- configured as the default: after the switch OpenSSL asks it for ALPN
    -- and the client CA; ctx keeps its own reference
    local sub
    sub, err = new_server(o, e)
    if not sub then return nil, err end
    local rc = C.rl_tls_ctx_add_sni(ctx, e.name, sub)
    if rc < 0 then return nil, errstr(rc) end
  end
  cache[k] = ctx
  return ctx
end

function M.client_ctx(S, o)
  local cache = ctx_cache(S)
  local k = "c\0" .. key_of(o, CLIENT_KEY)
  local ctx = cache[k]
  if ctx then return ctx end
  msgbuf[0] = 0
  local rc = C.rl_tls_ctx_new_client(o.ca or nil, o.verify and 1 or 0, ctxp, msgbuf, 256)
  if rc < 0 then return fail(rc) end
  ctx = ffi_gc(ctxp[0], C.rl_tls_ctx_free)
  local ok, err = configure(ctx, o, false)
  if not ok then return nil, err end
  cache[k] = ctx
  return ctx
end

local info = ffi_new("struct rl_tls_info")

-- wait_park's ready: the handshake's RL_EV_TLS came.
local function ended(c) return c.tls ~= 1 end

-- Run the handshake on c for the running task t: true, or nil and
-- "handshake failed: <reason>", "certificate verify failed: <reason>",
-- "timeout" (tls_handshake_timeout) or "closed".
-- timeout (seconds, optional): the caller's own deadline, besides the
-- core's tls_handshake_timeout.
-- session: a client's session object to resume, or false/nil.
function M.handshake(S, t, c, ctx, server_name, timeout, sess)
  if c.closed then return nil, "closed" end
  if c.tls then return nil, "already TLS" end
  local rc = C.rl_conn_tls_start(c.w, c.slot, c.gen, ctx, server_name or nil, sess or nil)
  if rc < 0 then return nil, errstr(rc) end
  c.tls = 1                -- running; the event sets 0 or its -errno
  local ok, err = wait_begin(S, t, timeout)
  if not ok then return nil, err end
  c.rtask = t
  local why = wait_park(S, t, ended, c)
  wait_end(S, t)
  if c.rtask == t then c.rtask = false end
  if why then return nil, why end
  local res = c.tls
  if res == 0 then c.tls = true; return true end
  if C.rl_conn_tls_info(c.w, c.slot, c.gen, info) == 0 and info.error[0] ~= 0 then
    return nil, ffi_string(info.error)
  end
  return nil, errstr(res)
end

local sessp = ffi_new("struct rl_tls_session *[1]")

-- The client connection's session object (fills in when the server's
-- ticket arrives), or nil.
function M.session_of(c)
  if C.rl_conn_tls_session(c.w, c.slot, c.gen, sessp) ~= 0 then return nil end
  return ffi_gc(sessp[0], C.rl_tls_session_free)
end

function M.sslinfo(c)
  if c.closed then return nil, "closed" end
  local rc = C.rl_conn_tls_info(c.w, c.slot, c.gen, info)
  if rc == -errors.ENOENT then return nil, "not a TLS connection" end
  if rc < 0 then return nil, errstr(rc) end
  local function s(f) local v = ffi_string(f); return v ~= "" and v or nil end
  return {
    protocol = s(info.protocol), cipher = s(info.cipher), server_name = s(info.server_name),
    peer_subject = s(info.peer_subject), peer_verified = info.peer_verified ~= 0,
    resumed = info.resumed ~= 0, alpn = s(info.alpn), session = M.session_of(c),
  }
end

-- RL_EV_TLS: the handshake of (slot, gen) ended with res.
local function on_tls(S, ev)
  local c = S.conns[ev.slot]
  if c and c.gen == ev.gen and c.tls == 1 then
    c.tls = ev.res
    local t = c.rtask
    if t then
      c.rtask = false
      wake(S, t, nil)
    end
  end
end

function M.attach(sched_)
  sched_.on_event(C.RL_EV_TLS, on_tls)
end

return M
