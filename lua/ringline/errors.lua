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

-- Linux errno values (the same on every architecture ringline runs on).
M.EPERM = 1
M.ENOENT = 2
M.EINTR = 4
M.EBADF = 9
M.EAGAIN = 11
M.ENOMEM = 12
M.EBUSY = 16
M.EINVAL = 22
M.EPIPE = 32
M.ECONNABORTED = 103
M.ECONNRESET = 104
M.ENOBUFS = 105
M.ENOTCONN = 107
M.ETIMEDOUT = 110
M.ECONNREFUSED = 111
M.ESTALE = 116
M.EMSGSIZE = 90
M.EOPNOTSUPP = 95
M.ECANCELED = 125

-- The fixed strings of the contract.
local cache = {
  [M.ETIMEDOUT] = "timeout",
  [M.ECANCELED] = "canceled",
  [M.ECONNRESET] = "connection reset by peer",
  [M.ECONNREFUSED] = "connection refused",
  -- A stale (slot, gen) means the connection is gone: for the caller it is closed.
  [M.ESTALE] = "closed",
  [M.ENOTCONN] = "closed",
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

-- The level, for error() in the function calling this, of the nearest
-- frame outside ringline's own modules: a misuse found deep inside (a wait
-- with no task to park) then names the user's line, however many of our
-- frames lie between. Only error paths call it.
function M.caller_level()
  local lvl = 3                 -- the caller of the function that asks
  while true do
    local info = debug.getinfo(lvl, "S")
    if not info then return 1 end
    if not info.source:find("/ringline/[%w_]+%.lua$") then return lvl - 1 end
    lvl = lvl + 1
  end
end

return M
