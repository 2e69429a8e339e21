-- ringline.errors: negative errno values from the core -> the short error
-- strings of the Lua API.
--
-- Libraries written for OpenResty compare error strings literally, so the
-- ones it defines are reproduced exactly ("timeout", "closed", ...). Every
-- other errno becomes the lower-cased OS message, which is what OpenResty
-- does with ngx_strerror() too. Strings are interned per errno on first use,
-- so mapping an error never allocates twice.
local ffi = require "ffi"
local C = require "ringline.lib"

local ffi_string = ffi.string
local string_lower = string.lower

local M = {}

-- The errno values callers test for, from enum rl_errno of the header
-- (M.ETIMEDOUT == C.RL_ETIMEDOUT == 110): numbers are never copied here.
for name in ([[EPERM ENOENT ESRCH EINTR EBADF EAGAIN ENOMEM EBUSY ENODEV ENOTTY EINVAL ENOSPC EPIPE EDESTADDRREQ
    EMSGSIZE EOPNOTSUPP EAFNOSUPPORT ECONNABORTED ECONNRESET ENOBUFS ENOTCONN ESHUTDOWN
    ETIMEDOUT ECONNREFUSED ESTALE ECANCELED ENODATA EISDIR EEXIST ERANGE]]):gmatch("%S+") do
  M[name] = C["RL_" .. name]
end

-- The fixed strings of the API (docs/api.md, Conventions).
local cache = {
  [M.ETIMEDOUT] = "timeout",
  [M.ECANCELED] = "canceled",
  [M.ECONNRESET] = "connection reset by peer",
  [M.ECONNREFUSED] = "connection refused",
  -- A stale (slot, gen) means the connection is gone: for the caller it is closed.
  [M.ESTALE] = "closed",
  [M.ENOTCONN] = "closed",
  -- sendfile: the file ended before the count promised (truncated while sent)
  [M.ENODATA] = "file truncated",
}

-- errstr(rc): rc is a negative errno as returned by the core (a positive
-- one is accepted too).
function M.errstr(rc)
  local e = rc < 0 and -rc or rc
  local s = cache[e]
  if s then return s end
  local p = C.rl_strerror(e)
  s = p ~= nil and string_lower(ffi_string(p)) or ("error " .. e)
  cache[e] = s
  return s
end

-- The error of a core call given an address (rl_listen, rl_connect,
-- rl_udp_*): its parser refuses a malformed one with -EINVAL before any
-- socket exists, so at these call sites EINVAL means the address.
function M.addr_errstr(rc)
  if rc == -M.EINVAL then return "invalid address" end
  return M.errstr(rc)
end

-- The level, for error() in the function calling this, of the nearest
-- Lua frame outside ringline's own modules: a misuse found deep inside (a wait
-- with no task to park) then names the user's line, however many of our
-- frames lie between. Only error paths call it.
function M.caller_level()
  local lvl = 3                 -- the caller of the function that asks
  while true do
    local info = debug.getinfo(lvl, "S")
    if not info then return 1 end
    -- a C frame (pcall(ringline.listen, ...)) has no line: the Lua one
    -- that called it does
    if info.what ~= "C" and not info.source:find("/ringline/[%w_]+%.lua$") then return lvl - 1 end
    lvl = lvl + 1
  end
end

return M
