-- lb_hello.lua: HTTP "Hello, World!" (pipelining, keep-alive) that counts,
-- per worker, the connections it accepted and the requests it answered, to
-- see how a load is spread over the workers, by SO_REUSEPORT or by the
-- acceptor (bench/workers.sh).
--
--   ringline-lua -w 2 [--accept acceptor] bench/lb_hello.lua   (PORT=18080)
--
-- SIGUSR1 makes every worker print "lb <worker> <connections> <requests>"
-- and start counting again. Requests are counted by their head's end
-- ("\r\n\r\n"); bodies are not supported (as in the shared harness's peers).
local ringline = require "ringline"
local ffi = require "ffi"

pcall(ffi.cdef, [[
const uint8_t *lb_hello_memmem(const uint8_t *h, size_t hl, const char *n, size_t nl) __asm__("memmem");
]])
local libc = ffi.C

local port = tonumber(os.getenv("PORT") or "18080")
local host = os.getenv("BENCH_HOST") or "127.0.0.1"
local RESP = "HTTP/1.1 200 OK\r\nServer: ringline\r\nContent-Type: text/plain\r\n"
          .. "Content-Length: 13\r\n\r\nHello, World!"
local batch = setmetatable({}, { __index = function(t, n)
  local s = RESP:rep(n)
  t[n] = s
  return s
end })

local conns, reqs = 0, 0

-- Complete requests in the buffer: the bytes they take and how many.
local function parse(p, len)
  local off, n = 0, 0
  while len - off >= 4 do
    local q = libc.lb_hello_memmem(p + off, len - off, "\r\n\r\n", 4)
    if q == nil then break end
    off = tonumber(q - p) + 4
    n = n + 1
  end
  return off, n
end

-- CLOSE=1: answer the first request, then close (a connection per request:
-- the accept path under churn).
local close_after_one = os.getenv("CLOSE") == "1"

local function serve(conn)
  local counted = false     -- a connection counts once it sent a request
  while true do
    local n = conn:with_data(function(p, len)
      local used, k = parse(p, len)
      return used, k
    end)
    if not n then return end
    if not counted then
      counted = true
      conns = conns + 1
    end
    reqs = reqs + n
    if not conn:send(batch[n]) then return end
    if close_after_one then return end
  end
end

ringline.on_signal("USR1", function()
  print(("lb %d %d %d"):format(ringline.worker_id(), conns, reqs))
  conns, reqs = 0, 0
end)

assert(ringline.listen(host .. ":" .. port, serve))
print(("lb_hello worker %d listening on %s:%d"):format(ringline.worker_id(), host, port))
