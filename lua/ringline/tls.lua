-- ringline.tls: TLS on connections. The core runs the record layer
-- (core/src/tls.c, OpenSSL through memory BIOs): after a handshake the
-- connection's receive, view and send calls see plaintext as on any other
-- connection. This module makes the contexts (one per certificate pair or
-- CA choice, cached for the run), runs a handshake for a task (the core
-- ends it with one RL_EV_TLS, within tls_handshake_timeout) and reads
-- conn:sslinfo().
--
-- Options (checked here, so listen and connect refuse the same way):
--   server: ssl = { cert = PATH, key = PATH }
--   client: ssl = true | { verify = true, server_name = NAME, ca = PATH }
-- Keys of the issue not in this slice are refused by name.
local ffi = require "ffi"
local C = require "ringline.lib"
local sched = require "ringline.sched"
local errors = require "ringline.errors"
local check = require "ringline.check"

local ffi_string, ffi_new, ffi_gc = ffi.string, ffi.new, ffi.gc
local type, error, tostring = type, error, tostring
local errstr = errors.errstr
local wake = sched.wake
local wait_begin, wait_park, wait_end = sched.wait_begin, sched.wait_park, sched.wait_end

local _ = C.rl_conn_tls_start, C.rl_conn_tls_info  -- resolved at load

local LATER = "not supported yet (TLS without it for now)"

local SERVER_VALID = {
  cert = true, key = true,
  alpn = LATER, sni = LATER, handshake_timeout = "not supported (configure tls_handshake_timeout)",
  protocols = LATER, ciphers = LATER, client_ca = LATER,
}
local CLIENT_VALID = {
  verify = true, server_name = true, ca = true,
  cafile = true,  -- the issue's name for ca
  alpn = LATER, cert = LATER, key = LATER,
}

local M = {}
M.SERVER_VALID, M.CLIENT_VALID = SERVER_VALID, CLIENT_VALID

local function misuse(msg)
  error(msg, errors.caller_level())
end

local function path(v, what)
  if type(v) ~= "string" or v == "" then misuse(what .. " must be a file name") end
  return v
end

-- opts.ssl of listen: nil (plaintext) or the checked table.
function M.server_opts(ssl, what)
  if ssl == nil or ssl == false then return nil end
  if type(ssl) ~= "table" then misuse(what .. ": opts.ssl must be a table { cert = ..., key = ... }") end
  check.options(ssl, SERVER_VALID, what .. " ssl")
  return { cert = path(ssl.cert, what .. ": ssl.cert"), key = path(ssl.key, what .. ": ssl.key") }
end

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
  return { verify = verify ~= false, server_name = name or false, ca = ca or false }
end

-- The run's contexts, one per (cert, key) or (ca, verify); freed with the
-- run (ffi.gc: each connection holds its own reference in the core).
local function ctx_cache(S)
  local cache = S.tls_ctx
  if not cache then cache = {}; S.tls_ctx = cache end
  return cache
end

local msgbuf = ffi_new("char[256]")
local ctxp = ffi_new("struct rl_tls_ctx *[1]")

function M.server_ctx(S, o)
  local cache = ctx_cache(S)
  local k = "s\0" .. o.cert .. "\0" .. o.key
  local ctx = cache[k]
  if ctx then return ctx end
  local rc = C.rl_tls_ctx_new_server(o.cert, o.key, ctxp, msgbuf, 256)
  if rc < 0 then return nil, rc == -errors.EINVAL and ffi_string(msgbuf) or errstr(rc) end
  ctx = ffi_gc(ctxp[0], C.rl_tls_ctx_free)
  cache[k] = ctx
  return ctx
end

function M.client_ctx(S, o)
  local cache = ctx_cache(S)
  local k = "c\0" .. (o.ca or "") .. "\0" .. tostring(o.verify)
  local ctx = cache[k]
  if ctx then return ctx end
  local rc = C.rl_tls_ctx_new_client(o.ca or nil, o.verify and 1 or 0, ctxp, msgbuf, 256)
  if rc < 0 then return nil, rc == -errors.EINVAL and ffi_string(msgbuf) or errstr(rc) end
  ctx = ffi_gc(ctxp[0], C.rl_tls_ctx_free)
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
function M.handshake(S, t, c, ctx, server_name, timeout)
  if c.closed then return nil, "closed" end
  if c.tls then return nil, "already TLS" end
  local rc = C.rl_conn_tls_start(c.w, c.slot, c.gen, ctx, server_name or nil)
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

function M.sslinfo(c)
  if c.closed then return nil, "closed" end
  local rc = C.rl_conn_tls_info(c.w, c.slot, c.gen, info)
  if rc == -errors.ENOENT then return nil, "not a TLS connection" end
  if rc < 0 then return nil, errstr(rc) end
  local function s(f) local v = ffi_string(f); return v ~= "" and v or nil end
  return {
    protocol = s(info.protocol), cipher = s(info.cipher), server_name = s(info.server_name),
    peer_subject = s(info.peer_subject), peer_verified = info.peer_verified ~= 0,
    resumed = info.resumed ~= 0, alpn = nil,
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
