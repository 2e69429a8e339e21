-- zc_crossover.lua: what one send of SIZE bytes costs the sender, copied
-- or zero-copy (bench/large.sh runs it; not part of CI).
--
--   ringline-lua --set zc_threshold=SIZE bench/zc_crossover.lua send SIZE SECONDS (zc)
--   ringline-lua --set zc_threshold=1g bench/zc_crossover.lua send SIZE SECONDS   (copy)
--   ringline-lua bench/zc_crossover.lua send SIZE SECONDS plain                  (string)
--     (a Lua string body goes zero-copy too when SIZE >= zc_threshold: bench/zc_strings.sh)
--   ringline-lua bench/zc_crossover.lua sink PORT
--
-- send: listens on PORT (env, 0 = any; the port is printed), waits for one
-- connection and sends it a 64-byte head and one slice of a region (a
-- response, as examples/static_region.lua sends them; with "plain" the body
-- is a Lua string on the ordinary copy path) again and again for SECONDS, then
-- prints one line: sends, bytes, the process's CPU seconds (getrusage:
-- user + system, which on loopback includes the kernel's receive side run
-- in the sender's softirq context) and sends per CPU second. zc_threshold
-- decides the body's fate: at or above it the slice is guarded and goes out
-- with SENDMSG_ZC (the 64-byte head, below it, copied into the same slab
-- entry); below it nothing is guarded and both parts take the plain copy
-- path.
--
-- sink: connects to PORT and discards everything until EOF.
local ringline = require "ringline"
local ffi = require "ffi"

ffi.cdef [[
struct zc_crossover_rusage { long t[4]; long rest[14]; };
int zc_crossover_getrusage(int who, struct zc_crossover_rusage *r) __asm__("getrusage");
]]

local role = arg[1]

if role == "sink" then
  local c = assert(ringline.connect("127.0.0.1", tonumber(arg[2]), { timeout = 5 }))
  while true do
    local p, len = c:view(1)
    if not p then break end
    c:consume(len)
  end
  c:close()
  return
end

assert(role == "send", "usage: zc_crossover.lua send SIZE SECONDS [plain] | sink PORT")
local size = assert(tonumber(arg[2]), "SIZE")
local seconds = assert(tonumber(arg[3]), "SECONDS")
local plain = arg[4] == "plain"

local ru = ffi.new("struct zc_crossover_rusage")
local function cpu()
  ffi.C.zc_crossover_getrusage(0, ru)
  return tonumber(ru.t[0]) + tonumber(ru.t[1]) / 1e6 + tonumber(ru.t[2]) + tonumber(ru.t[3]) / 1e6
end

local r = assert(ringline.region(size))
ffi.fill(r:ptr(), size, 120)
local slice = r:slice(0, size)
local str = slice:string()
local msg = plain and str or slice
local head = ("H"):rep(62) .. "\r\n"

local lst
lst = assert(ringline.listen("127.0.0.1:" .. (os.getenv("PORT") or "0"), function(c)
  lst:close()
  local m0 = ringline.metrics()
  local c0, t0 = cpu(), ringline.now()
  local n = 0
  repeat
    for _ = 1, 64 do c:send(head, msg) end
    n = n + 64
  until ringline.now() - t0 >= seconds
  assert(c:flush())
  local dc, dt = cpu() - c0, ringline.now() - t0
  local m1 = ringline.metrics()
  print(("RESULT size=%d mode=%s sends=%d bytes=%d wall_s=%.3f cpu_s=%.3f sends_per_cpu_s=%.0f "
    .. "gbit_per_cpu_s=%.3f zc_sends=%d zc_copied=%d"):format(size,
    (plain and "string-" or "") .. (ringline.config("zc_threshold") <= size and "zc" or "copy"),
    n, n * (size + 64), dt, dc, n / dc, n * (size + 64) * 8 / dc / 1e9,
    m1.zc_sends - m0.zc_sends, m1.zc_copied - m0.zc_copied))
  io.stdout:flush()
end))
local _, port = lst:getsockname()
print("listening on port " .. port)
io.stdout:flush()
