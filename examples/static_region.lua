-- static_region.lua: a static file server whose bodies go out zero-copy.
--
--   ringline-lua examples/static_region.lua [dir]    (PORT=8080, BENCH_HOST=127.0.0.1)
--   then: curl http://127.0.0.1:8080/echo.lua
--
-- At start every regular file of dir (arg[1], else STATIC_DIR, else this
-- examples/ folder) is read into ONE region registered with the ring, and a
-- slice and a response head are made per file. A response is then one
-- guarded send, conn:send(head, slice): the head is copied, the body is
-- handed to the kernel in place (SENDMSG_ZC) and the slice stays anchored
-- until the kernel is done with it. Nothing is allocated per response but
-- the request's path string and the guard's anchor.
--
-- STATIC_MODE=copy serves the same files from Lua strings (made once at
-- start) instead: the ordinary send path, which copies each body into the
-- connection's send queue. bench/large.sh compares the two and nginx.
--
-- HTTP/1.1 with keep-alive and pipelining; GET and HEAD; "/" is index.html
-- when there is one, else a plain-text list of the files. Unknown paths get
-- 404 (the connection stays open); a malformed request 400, a head over
-- 8 KiB 431, other methods 405, each then closes. "Connection: close" (or
-- HTTP/1.0 without keep-alive) closes after the response.
local ringline = require "ringline"
local ffi = require "ffi"

ffi.cdef [[
const uint8_t *static_region_memmem(const uint8_t *h, size_t hl, const char *n, size_t nl) __asm__("memmem");
const uint8_t *static_region_memchr(const uint8_t *s, int c, size_t n) __asm__("memchr");
typedef struct static_region_dir static_region_dir;
static_region_dir *static_region_opendir(const char *name) __asm__("opendir");
int static_region_closedir(static_region_dir *d) __asm__("closedir");
struct static_region_dirent {
  uint64_t d_ino; int64_t d_off; uint16_t d_reclen; uint8_t d_type; char d_name[256];
};
struct static_region_dirent *static_region_readdir(static_region_dir *d) __asm__("readdir64");
]]
local libc = ffi.C

local host = os.getenv("BENCH_HOST") or "127.0.0.1"
local port = tonumber(os.getenv("PORT") or "8080")
local mode = os.getenv("STATIC_MODE") or "zc"
if mode ~= "zc" and mode ~= "copy" then
  error("STATIC_MODE must be zc or copy, got " .. mode)
end
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]+$") or "."
local dir = arg and arg[1] or os.getenv("STATIC_DIR") or here

local TYPES = {
  html = "text/html; charset=utf-8", txt = "text/plain; charset=utf-8",
  lua = "text/plain; charset=utf-8", md = "text/markdown; charset=utf-8",
  css = "text/css", js = "text/javascript", json = "application/json",
  png = "image/png", jpg = "image/jpeg", svg = "image/svg+xml",
}

-- The regular files of dir (not recursive), sorted by name.
local function list(path)
  local d = libc.static_region_opendir(path)
  if d == nil then error("static_region: cannot open directory " .. path) end
  local names = {}
  while true do
    local e = libc.static_region_readdir(d)
    if e == nil then break end
    local name = ffi.string(e.d_name)
    if name:sub(1, 1) ~= "." then names[#names + 1] = name end
  end
  libc.static_region_closedir(d)
  table.sort(names)
  local files = {}
  for _, name in ipairs(names) do
    local f = io.open(path .. "/" .. name, "rb")
    local data = f and f:read("*a")    -- nil for a directory
    if f then f:close() end
    if data then files[#files + 1] = { name = name, data = data } end
  end
  return files
end

local function head(status, ctype, len, extra)
  return ("HTTP/1.1 %s\r\nServer: ringline\r\nContent-Type: %s\r\nContent-Length: %d\r\n%s\r\n")
    :format(status, ctype, len, extra or "")
end

-- Load everything into one region; per path: {head, head_close, body}
-- where body is a slice (zc) or a Lua string (copy).
local files = list(dir)
local example = files[1] and files[1].name or ""   -- for the "try:" line
local routes = {}
local total = 0
for _, f in ipairs(files) do total = total + #f.data end
local region = assert(ringline.region(total > 0 and total or 1))
do
  local off = 0
  local base = region:ptr()
  for _, f in ipairs(files) do
    local n = #f.data
    ffi.copy(base + off, f.data, n)
    local slice = region:slice(off, n)
    local ctype = TYPES[f.name:match("%.([%w]+)$") or ""] or "application/octet-stream"
    routes["/" .. f.name] = {
      head = head("200 OK", ctype, n),
      head_close = head("200 OK", ctype, n, "Connection: close\r\n"),
      body = mode == "zc" and slice or slice:string(),
    }
    off = off + n
  end
  if not routes["/index.html"] then
    local names = {}
    for i, f in ipairs(files) do names[i] = f.name .. "\n" end
    local index = table.concat(names)
    routes["/"] = { head = head("200 OK", TYPES.txt, #index),
                    head_close = head("200 OK", TYPES.txt, #index, "Connection: close\r\n"),
                    body = index }
  else
    routes["/"] = routes["/index.html"]
  end
end
files = nil  -- the strings are in the region now (or in routes, copy mode)

local NOT_FOUND_BODY = "not found\n"
local NOT_FOUND = head("404 Not Found", TYPES.txt, #NOT_FOUND_BODY) .. NOT_FOUND_BODY
local NOT_FOUND_CLOSE = head("404 Not Found", TYPES.txt, #NOT_FOUND_BODY, "Connection: close\r\n")
  .. NOT_FOUND_BODY
local function fatal(status, extra)
  return head(status, TYPES.txt, 0, (extra or "") .. "Connection: close\r\n")
end
local BAD_REQUEST = fatal("400 Bad Request")
local TOO_LARGE = fatal("431 Request Header Fields Too Large")
local NOT_ALLOWED = fatal("405 Method Not Allowed", "Allow: GET, HEAD\r\n")

local MAX_HEAD = 8192
local CR, LF, SP = 13, 10, 32

-- Does p[s, e) equal the lower-case name `lit`, ignoring ASCII case?
local function name_is(p, s, e, lit)
  if e - s ~= #lit then return false end
  for k = 1, #lit do
    local c = p[s + k - 1]
    if c >= 65 and c <= 90 then c = c + 32 end
    if c ~= lit:byte(k) then return false end
  end
  return true
end

local function value_has(p, s, e, lit)
  local n = #lit
  for i = s, e - n do
    local k = 1
    while k <= n do
      local c = p[i + k - 1]
      if c >= 65 and c <= 90 then c = c + 32 end
      if c ~= lit:byte(k) then break end
      k = k + 1
    end
    if k > n then return true end
  end
  return false
end

-- A Content-Length value p[s, e): 1 to 15 decimal digits and nothing else,
-- or nil. No sign, no "0x", no exponent, no space inside: a value another
-- parser (a proxy in front) could read differently is a request-smuggling
-- primitive. 15 digits stay exact in a double.
local function content_length(p, s, e)
  if e == s or e - s > 15 then return nil end
  local v = 0
  for k = s, e - 1 do
    local d = p[k] - 48
    if d < 0 or d > 9 then return nil end
    v = v * 10 + d
  end
  return v
end

-- One request head p[s, e) (e just past "\r\n\r\n"). Returns the route (or
-- false: 404), whether it is HEAD, whether to close after it, the body
-- length to skip; or nil and an error response.
local function parse_head(p, s, e)
  local i = s
  while i < e and p[i] >= 65 and p[i] <= 90 do i = i + 1 end
  local mlen = i - s
  local is_get = mlen == 3 and p[s] == 71 and p[s + 1] == 69 and p[s + 2] == 84
  local is_head = mlen == 4 and p[s] == 72 and p[s + 1] == 69 and p[s + 2] == 65 and p[s + 3] == 68
  if mlen == 0 or p[i] ~= SP then return nil, BAD_REQUEST end
  if not (is_get or is_head) then return nil, NOT_ALLOWED end
  i = i + 1
  local ts = i
  while i < e and p[i] > 32 and p[i] < 127 and p[i] ~= 63 do i = i + 1 end  -- up to "?"
  local te = i
  while i < e and p[i] > 32 and p[i] < 127 do i = i + 1 end                 -- the query
  if te == ts or p[i] ~= SP then return nil, BAD_REQUEST end
  i = i + 1
  if i + 10 > e or ffi.string(p + i, 7) ~= "HTTP/1." or (p[i + 7] ~= 49 and p[i + 7] ~= 48)
     or p[i + 8] ~= CR or p[i + 9] ~= LF then
    return nil, BAD_REQUEST
  end
  local http10 = p[i + 7] == 48
  i = i + 10
  local close, keepalive, body, has_length = false, false, 0, false
  while i < e - 2 do
    local ns = i
    while p[i] > 32 and p[i] < 127 and p[i] ~= 58 do i = i + 1 end
    if i == ns or p[i] ~= 58 then return nil, BAD_REQUEST end
    local ne = i
    i = i + 1
    while p[i] == SP or p[i] == 9 do i = i + 1 end
    local vs = i
    i = libc.static_region_memchr(p + i, CR, e - i) - p   -- the head ends in CRLFCRLF
    if p[i + 1] ~= LF then return nil, BAD_REQUEST end
    -- a bare LF inside the value ends the line for other parsers (a proxy
    -- in front would see a header this parser does not)
    if i > vs and libc.static_region_memchr(p + vs, LF, i - vs) ~= nil then
      return nil, BAD_REQUEST
    end
    local ve = i
    i = i + 2
    if name_is(p, ns, ne, "connection") then
      if value_has(p, vs, ve, "close") then close = true end
      if value_has(p, vs, ve, "keep-alive") then keepalive = true end
    elseif name_is(p, ns, ne, "content-length") then
      local e2 = ve                                 -- without trailing white space
      while e2 > vs and (p[e2 - 1] == SP or p[e2 - 1] == 9) do e2 = e2 - 1 end
      local v = content_length(p, vs, e2)
      -- repeated: only the same value again (RFC 9110 8.6)
      if not v or (has_length and v ~= body) then return nil, BAD_REQUEST end
      body, has_length = v, true
    elseif name_is(p, ns, ne, "transfer-encoding") then
      return nil, BAD_REQUEST
    end
  end
  local route = routes[ffi.string(p + ts, te - ts)] or false
  return route, is_head, close or (http10 and not keepalive), body
end

local function respond(conn, route, is_head, close)
  if not route then
    return conn:send(close and NOT_FOUND_CLOSE or NOT_FOUND)
  end
  local h = close and route.head_close or route.head
  if is_head then return conn:send(h) end
  return conn:send(h, route.body)   -- zc: one rl_conn_sendv, the body a guard
end

local function serve(conn)
  local skip = 0
  while true do
    local p, len = conn:view(1)
    if not p then return end                       -- closed, reset or timeout
    if skip > 0 then                               -- a request body: dropped
      local n = len < skip and len or skip
      conn:consume(n)
      skip = skip - n
    else
      local q = libc.static_region_memmem(p, len, "\r\n\r\n", 4)
      if q == nil then
        if len > MAX_HEAD then conn:send(TOO_LARGE) return end
        p, len = conn:view(len + 1)                -- wait for more of the head
        if not p then return end
      else
        local e = q - p + 4
        if e > MAX_HEAD then conn:send(TOO_LARGE) return end
        local route, is_head, close, body = parse_head(p, 0, e)
        conn:consume(e)
        if route == nil then
          conn:send(is_head)                       -- the error response
          return                                   -- closes after flushing
        end
        if not respond(conn, route, is_head, close) or close then return end
        skip = body
      end
    end
  end
end

local addr = (host:find(":", 1, true) and "[" .. host .. "]" or host) .. ":" .. port
local lst = assert(ringline.listen(addr, serve))
local h, p = lst:getsockname()
local url = ("http://%s:%d/"):format(h:find(":", 1, true) and "[" .. h .. "]" or h, p)
print(("static_region listening on %s (%d bytes of %s in one region, %s)"):format(
  url, total, dir, mode == "zc" and "zero-copy sends" or "copied sends"))
print("try: curl " .. url .. example .. "   (curl " .. url .. " lists the files; Ctrl-C stops the server)")
