-- static_files.lua: serve a directory from disk through ringline.http,
-- bodies by sendfile, hot small files from a region cache.
--
--   ringline-lua examples/static_files.lua [dir]    (PORT=8080, BENCH_HOST=127.0.0.1)
--   then: curl http://127.0.0.1:8080/echo.lua
--
-- A request opens its path through the ring (ringline.fs), stats the open
-- file and sends it with res:sendfile: bytes the page cache holds go by
-- sendfile(2), the others are spliced from the disk by the ring, so there
-- is no Lua string, no copy in userspace, and a large or cold file never
-- stalls the other connections. A file asked for HOT_HITS times and at
-- most CACHE_FILE bytes is read once into a region of its own (region:load,
-- straight into registered memory) and then answered from it with
-- res:finish(slice): zero copy, after the open and stat that check it has
-- not changed (size and mtime; a changed file is read again). At most CACHE_FILES files are cached; the
-- least recently used one whose sends are over makes room.
--
-- GET and HEAD; "/" is index.html when there is one, else a plain-text
-- list of the directory's files. Paths with "..", a NUL or anything but
-- [%w._-/] get 404, as do directories and missing files; other methods 405.
-- STATIC_CACHE=0 turns the cache off (every response by sendfile).
local ringline = require "ringline"
local http = require "ringline.http"
local fs = ringline.fs

local host = os.getenv("BENCH_HOST") or "127.0.0.1"
local port = tonumber(os.getenv("PORT") or "8080")
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]+$") or "."
local dir = (arg and arg[1] or os.getenv("STATIC_DIR") or here):gsub("/+$", "")
if dir == "" then dir = "/" end

local HOT_HITS = 2
local CACHE_FILE = 256 * 1024
local CACHE_FILES = tonumber(os.getenv("STATIC_CACHE") or "32")

local TYPES = {
  html = "text/html; charset=utf-8", txt = "text/plain; charset=utf-8",
  lua = "text/plain; charset=utf-8", md = "text/markdown; charset=utf-8",
  css = "text/css", js = "text/javascript", json = "application/json",
  png = "image/png", jpg = "image/jpeg", svg = "image/svg+xml",
}
local function ctype(path)
  return TYPES[path:match("%.(%w+)$") or ""] or "application/octet-stream"
end

-- The cache: path -> { r = region, slice, size, mtime, used = clock };
-- hits counts requests of paths not cached yet.
local cache, ncached, hits, clock = {}, 0, {}, 0

local function evict_one()
  local victim, vpath
  for p, e in pairs(cache) do
    -- a region with sends in flight cannot be freed: pick another
    if e.r:inflight() == 0 and (not victim or e.used < victim.used) then victim, vpath = e, p end
  end
  if not victim then return false end
  victim.r:free()
  cache[vpath] = nil
  ncached = ncached - 1
  return true
end

-- Read the file into a region of its own; the entry, or nil.
local function load(path, f, st)
  if ncached >= CACHE_FILES and not evict_one() then return nil end
  local r = ringline.region(math.max(st.size, 1))
  if not r then return nil end
  local n = r:load(f, 0, st.size)
  if n ~= st.size then r:free() return nil end   -- changed under us: not cached
  local e = { r = r, slice = r:slice(0, n), size = st.size, mtime = st.mtime, used = clock }
  cache[path] = e
  ncached = ncached + 1
  return e
end

local function drop(path)
  local e = cache[path]
  if e and e.r:free() then
    cache[path] = nil
    ncached = ncached - 1
  end
end

local function listing(res)
  local names, types = fs.listdir(dir)
  if not names then res:status(500) return res:finish("cannot list the directory\n") end
  local out = {}
  for _, n in ipairs(names) do
    if types[n] == "file" and n:sub(1, 1) ~= "." then out[#out + 1] = n .. "\n" end
  end
  res:header("Content-Type", "text/plain; charset=utf-8")
  return res:finish(table.concat(out))
end

local function not_found(res)
  res:status(404)
  res:header("Content-Type", "text/plain")
  return res:finish("not found\n")
end

local function serve(req, res)
  if req.method ~= "GET" and req.method ~= "HEAD" then
    res:status(405)
    res:header("Allow", "GET, HEAD")
    return res:finish("method not allowed\n")
  end
  local path = req.path
  if path == "/" then
    if not fs.stat(dir .. "/index.html") then return listing(res) end
    path = "/index.html"
  end
  if not path:match("^/[%w%._%-/]+$") or path:find("/%.") then return not_found(res) end
  -- open, then stat the open file: one path lookup, no race between the
  -- two, and f:stat() needs no ring operation (see docs/api.md)
  local f = fs.open(dir .. path, "r")
  local st = f and f:stat()
  if not st or st.type ~= "file" then
    if f then f:close() end
    return not_found(res)
  end
  clock = clock + 1
  local e = cache[path]
  if e and (e.size ~= st.size or e.mtime ~= st.mtime) then
    drop(path)           -- changed: read again
    e = nil
  end
  res:header("Content-Type", ctype(path))
  if e then
    f:close()
    e.used = clock
    return res:finish(e.slice)            -- from registered memory, zero copy
  end
  if CACHE_FILES > 0 and st.size <= CACHE_FILE then
    local n = (hits[path] or 0) + 1
    hits[path] = n
    if n >= HOT_HITS then
      hits[path] = nil
      e = load(path, f, st)
      if e then
        f:close()
        return res:finish(e.slice)
      end
    end
  end
  local ok, err = res:sendfile(f, 0, st.size)
  f:close()
  return ok, err
end

local addr = (host:find(":", 1, true) and "[" .. host .. "]" or host) .. ":" .. port
local lst = assert(http.listen(addr, serve))
local h, p = lst:getsockname()
local url = ("http://%s:%d/"):format(h:find(":", 1, true) and "[" .. h .. "]" or h, p)
print("static_files serving " .. dir .. ", listening on " .. url)
print("try: curl " .. url .. "   (Ctrl-C stops the server)")
