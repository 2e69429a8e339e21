-- ringline.region: registered memory regions, slices of them, and guarded
-- (zero-copy) sends.
--
--   local r = ringline.region(1024 * 1024)  -- mapped and registered by the core
--   ffi.copy(r:ptr(), payload, #payload)
--   conn:send(header, r:slice(0, #payload)) -- one rl_conn_sendv, the slice a guard
--
-- A send that carries a slice, or a Lua string of at least zc_threshold
-- bytes, anywhere in its arguments (alone, or in nested arrays) becomes ONE
-- rl_conn_sendv call with the parts in argument order.
-- Parts at or above the worker's zc_threshold are guarded: slices name their
-- region, Lua strings go as RL_PART_PINNED (they are immutable, so the
-- kernel may read them in place). Smaller parts, numbers and string.buffers
-- are RL_PART_COPY (copied before rl_conn_sendv returns, so nothing needs to
-- stay alive for them). When no part ends up guarded (a slice below the
-- threshold) the parts are queued with rl_conn_send instead, in the same
-- order: the core's plain copy path is much cheaper for small sends. Sends
-- with neither never come here (conn_send.lua's fast path).
--
-- Guards and anchors
-- ------------------
-- Each guarded part gets a token; the anchor tables map token -> the object
-- whose memory the kernel may still read (the slice, which holds its region,
-- or the string) and token -> the connection. RL_EV_GUARD (exactly one per
-- guarded part, after the send's completion and every zero-copy
-- notification) drops the anchor and decrements the connection's guard
-- count; a flush waiting for that count to reach 0 is woken. Tokens come from
-- a free list, so the anchor tables stay dense arrays whatever the traffic.
--
-- The GC never frees memory the kernel may read: a region is only reachable
-- through its Lua object, the object through its slices, and an outstanding
-- guard anchors its slice. When the object becomes garbage its proxy's
-- finalizer frees the region in the core, which by then holds no guard on it
-- (the core releases a guard before Lua drops the anchor, never after).
--
-- At the end of a run the scheduler's drain waits (bounded) for every guard
-- to come back as an event; after rl_worker_destroy (which waits for the
-- kernel itself) the anchors left are dropped - or kept for good if destroy
-- timed out, since the kernel may then still read them.
local ffi = require "ffi"
local bit = require "bit"
local C = require "ringline.lib"
local sched = require "ringline.sched"
local errors = require "ringline.errors"
local log = require "ringline.log"
local check = require "ringline.check"
local is_buffer = check.is_buffer

local type, tostring, tonumber, error, select = type, tostring, tonumber, error, select
local getmetatable, setmetatable = getmetatable, setmetatable
local ffi_new, ffi_cast, ffi_string = ffi.new, ffi.cast, ffi.string
local errstr = errors.errstr

-- resolved at load time: a trace cannot look up a new symbol
local _ = C.rl_region_new, C.rl_region_free, C.rl_region_inflight, C.rl_conn_sendv,
  C.rl_worker_features, C.rl_conn_send, C.rl_conn_sendv_upto

local PART_COPY, PART_PINNED = C.RL_PART_COPY, C.RL_PART_PINNED
local EV_GUARD = C.RL_EV_GUARD
local FEAT_SENDMSG_ZC = C.RL_FEAT_SENDMSG_ZC
local PARTS0 = 16                    -- initial parts array (grown by doubling)
local PART_SIZE = ffi.sizeof("struct rl_part")
local MAX_DEPTH = 32                 -- nested arrays (deeper: a cycle, refused)

-- The options of ringline.region(size [, opts]), one entry each
-- (ringline.check): none yet; the table is where one goes.
local VALID = {}

local M = {}
M.VALID = VALID

-- Anchors kept forever: rl_worker_destroy timed out, so the kernel may still
-- read what they hold.
local graveyard = {}

local function misuse(msg, lvl)
  error("ringline: " .. msg, lvl + 1)
end

------------------------------------------------------------------------
-- Per-run guard state (S.rguards), made on first use.
------------------------------------------------------------------------

local function gstate(S)
  local g = S.rguards
  if g then return g end
  local w = S.w or sched.start(S)
  local thr = tonumber(S.cfg.zc_threshold)
  -- Without SENDMSG_ZC the core copies every part anyway: do not make
  -- guards (and events) for nothing.
  if bit.band(C.rl_worker_features(w), FEAT_SENDMSG_ZC) == 0 then thr = 2 ^ 53 end
  S.zc_thr = thr                     -- conn_send.lua's test for a lone big string
  g = {
    obj = {}, conn = {},             -- the anchors: token -> object, token -> conn
    free = {}, nfree = 0, top = 0,   -- token free list; top = highest token made
    parts = ffi_new("struct rl_part[?]", PARTS0), cap = PARTS0, n = 0,
    ng = 0,                          -- guarded parts in the build
    ncopy = 0,                       -- bytes of its copied parts
    keep = {}, nkeep = 0,            -- strings made during one build (numbers)
    thr = thr,
    anchored = 0, released = 0, dropped = 0, unknown = 0,
    zombies = {},                    -- region ids whose free waits for guards
  }
  S.rguards = g
  return g
end

local function new_token(g)
  local n = g.nfree
  if n > 0 then
    local t = g.free[n]
    g.free[n] = nil
    g.nfree = n - 1
    return t
  end
  local t = g.top + 1
  g.top = t
  return t
end

local function drop_token(g, t)
  g.obj[t] = nil
  g.conn[t] = nil
  local n = g.nfree + 1
  g.nfree = n
  g.free[n] = t
end

------------------------------------------------------------------------
-- Regions
------------------------------------------------------------------------

local methods = {}
local mt = {
  __index = methods,
  __name = "ringline.region",
  __tostring = function(r)
    return ("ringline.region(%d, %d bytes%s)"):format(r.rid, r.nbytes, r.freed and ", freed" or "")
  end,
}
M.mt = mt

-- A slice is a small table {r = region, p = pointer, off, n}, not a cdata: it must keep
-- its region object alive, and a cdata cannot reference a Lua object (that
-- would take a weak side table written on every slice made). Either way a
-- slice costs one allocation; its pointer is computed once, so sending a
-- slice kept by the caller (a static file, a canned reply) allocates nothing.
local slice_methods = {}
local slice_mt = {
  __index = slice_methods,
  __name = "ringline.slice",
  __tostring = function(s)
    return ("ringline.slice(region %d, %d+%d)"):format(s.r.rid, s.off, s.n)
  end,
}
M.slice_mt = slice_mt

-- Freed explicitly, or its worker is gone (destroy unmapped it).
local function gone(r)
  if r.freed then return true end
  if r.S.dead then
    r.freed = true
    return true
  end
  return false
end

-- The finalizer of a region's proxy: free it in the core when the region
-- object was dropped without r:free(). Captures only S and the id, never
-- the region object (that would keep the proxy reachable for ever).
local function finalizer(S, id)
  return function()
    local w = S.w
    if S.dead or not w then return end
    local rc = C.rl_region_free(w, id)
    if rc == -errors.EBUSY then
      -- Cannot happen while anchors hold slices (see the top comment);
      -- kept safe anyway: freed when its last guard comes back.
      gstate(S).zombies[id] = true
    end
  end
end

-- ringline.region(size): a region of size bytes, registered with the ring.
function M.new(size, opts)
  local S = sched.need("ringline.region")
  if type(size) ~= "number" or size < 1 or size % 1 ~= 0 or size > 2 ^ 32 then
    error("ringline.region: size must be an integer 1..2^32, got " .. tostring(size), 2)
  end
  check.options(opts, VALID, "ringline.region")
  local w = S.w or sched.start(S)
  local pp = ffi_new("void *[1]")
  local id = C.rl_region_new(w, size, pp)
  if id < 0 then return nil, errstr(id) end
  local proxy = ffi.gc(ffi_new("uint8_t[1]"), finalizer(S, id))
  return setmetatable({
    S = S, rid = id, base = ffi_cast("uint8_t *", pp[0]), nbytes = size,
    freed = false, proxy = proxy,
  }, mt)
end

local function check_region(r, what)
  if getmetatable(r) ~= mt then misuse("region:" .. what .. ": not a region (use r:" .. what .. ")", 3) end
end

function methods.ptr(r)
  check_region(r, "ptr")
  if gone(r) then misuse("region:ptr: the region is freed", 2) end
  return r.base
end

function methods.size(r)
  check_region(r, "size")
  return r.nbytes
end

function methods.id(r)
  check_region(r, "id")
  return r.rid
end

-- Guards on the region the core has not released yet.
function methods.inflight(r)
  check_region(r, "inflight")
  if gone(r) then return 0 end
  local n = C.rl_region_inflight(r.S.w, r.rid)
  if n < 0 then return 0 end
  return n
end

-- true, or nil, "busy" while guards are outstanding. Idempotent.
function methods.free(r)
  check_region(r, "free")
  if gone(r) then return true end
  local rc = C.rl_region_free(r.S.w, r.rid)
  if rc == -errors.EBUSY then return nil, "busy" end
  r.freed = true
  ffi.gc(r.proxy, nil)
  if rc < 0 then return nil, errstr(rc) end
  return true
end

-- r:load(f, offset, len [, at]): len bytes of file f from offset into the
-- region at byte at (default 0), read by the ring straight into registered
-- memory (READ_FIXED; direct I/O files need aligned offset, len and at).
-- The bytes read (fewer at the end of the file), or nil, err.
function methods.load(r, f, offset, len, at)
  check_region(r, "load")
  if gone(r) then misuse("region:load: the region is freed", 2) end
  return require("ringline.fs").load(r, f, offset, len, at)
end

local function check_int(v, what, lvl)
  if type(v) ~= "number" or v < 0 or v % 1 ~= 0 then
    misuse(what .. " must be an integer >= 0, got " .. tostring(v), lvl + 1)
  end
end

-- r:slice(off [, len]): bytes [off, off+len) of the region (len defaults to
-- the rest). Bounds are checked against the size asked for at creation.
function methods.slice(r, off, len)
  check_region(r, "slice")
  check_int(off, "region:slice: offset", 2)
  if len == nil then len = r.nbytes - off end
  check_int(len, "region:slice: length", 2)
  if off + len > r.nbytes then
    misuse(("region:slice: %d+%d is outside the region's %d bytes"):format(off, len, r.nbytes), 2)
  end
  if gone(r) then misuse("region:slice: the region is freed", 2) end
  return setmetatable({ r = r, p = r.base + off, off = off, n = len }, slice_mt)
end

local function check_slice(s, what)
  if getmetatable(s) ~= slice_mt then misuse("slice:" .. what .. ": not a slice (use s:" .. what .. ")", 3) end
end

function slice_methods.ptr(s)
  check_slice(s, "ptr")
  if gone(s.r) then misuse("slice:ptr: its region is freed", 2) end
  return s.p
end
function slice_methods.len(s) check_slice(s, "len"); return s.n end
function slice_methods.offset(s) check_slice(s, "offset"); return s.off end
function slice_methods.region(s) check_slice(s, "region"); return s.r end
-- A copy of the bytes as a Lua string.
function slice_methods.string(s)
  check_slice(s, "string")
  if gone(s.r) then misuse("slice:string: its region is freed", 2) end
  return ffi_string(s.p, s.n)
end

function M.is_slice(x)
  return getmetatable(x) == slice_mt
end

------------------------------------------------------------------------
-- Guarded sends
------------------------------------------------------------------------

-- Does x (a table) hold a slice, itself or in its (nested) elements, or a
-- Lua string of at least thr bytes (sent zero-copy, guarded, like a
-- slice)? The first four elements are unrolled: conn_send.lua's fast path
-- calls this for every array argument, and a loop that runs once or twice
-- per call would make LuaJIT abort the caller's trace.
local has_slice
local function elem_has_slice(v, d, thr)
  local tv = type(v)
  if tv == "string" then return #v >= thr end
  return tv == "table" and has_slice(v, d + 1, thr)
end
has_slice = function(x, d, thr)
  if getmetatable(x) == slice_mt then return true end
  local n = #x
  if n == 0 or d > MAX_DEPTH then return false end
  if elem_has_slice(x[1], d, thr) then return true end
  if n == 1 then return false end
  if elem_has_slice(x[2], d, thr) then return true end
  if n == 2 then return false end
  if elem_has_slice(x[3], d, thr) then return true end
  if n == 3 then return false end
  if elem_has_slice(x[4], d, thr) then return true end
  for i = 5, n do
    if elem_has_slice(x[i], d, thr) then return true end
  end
  return false
end
-- has_slice(x [, thr]): thr nil counts slices only.
M.has_slice = function(x, thr) return has_slice(x, 0, thr or 2 ^ 53) end

-- The size from which a Lua string goes zero-copy (guarded) on c's worker:
-- zc_threshold, or never without SENDMSG_ZC.
function M.threshold(S)
  return (S.rguards or gstate(S)).thr
end

-- Does any of the nargs arguments hold a slice or a string of at least thr
-- bytes (itself or in an array)?
function M.any_slice(thr, nargs, ...)
  local a, b, x = ...
  local ta = type(a)
  if (ta == "table" and has_slice(a, 0, thr)) or (ta == "string" and #a >= thr) then return true end
  if nargs == 1 then return false end
  local tb = type(b)
  if (tb == "table" and has_slice(b, 0, thr)) or (tb == "string" and #b >= thr) then return true end
  if nargs == 2 then return false end
  -- the third unrolled too: a loop that runs once would abort the caller's
  -- trace ("leaving loop in root trace")
  local tx = type(x)
  if (tx == "table" and has_slice(x, 0, thr)) or (tx == "string" and #x >= thr) then return true end
  for i = 4, nargs do
    local v = select(i, ...)
    local tv = type(v)
    if (tv == "table" and has_slice(v, 0, thr)) or (tv == "string" and #v >= thr) then return true end
  end
  return false
end

-- Undo a build that will not be sent: its tokens go back, unanchored.
local function unbuild(g)
  local parts = g.parts
  for i = 0, g.n - 1 do
    if parts[i].region ~= PART_COPY then drop_token(g, parts[i].token) end
  end
  g.n = 0
  local keep = g.keep
  for i = 1, g.nkeep do keep[i] = nil end
  g.nkeep = 0
end

local function build_fail(g, msg, lvl)
  unbuild(g)
  misuse(msg, lvl + 1)
end

local function grow(g)
  local cap = g.cap * 2
  local np = ffi_new("struct rl_part[?]", cap)
  ffi.copy(np, g.parts, g.cap * PART_SIZE)
  g.parts, g.cap = np, cap
end

-- Append one part; guarded (with a token anchoring obj) when kind is not
-- PART_COPY. Returns the part's length.
local function put(g, c, ptr, len, kind, obj)
  local i = g.n
  if i >= g.cap then grow(g) end
  local p = g.parts[i]
  p.ptr = ptr
  p.len = len
  p.region = kind
  if kind ~= PART_COPY then
    local t = new_token(g)
    g.obj[t] = obj
    g.conn[t] = c
    p.token = t
    g.ng = g.ng + 1
  else
    p.token = 0
    g.ncopy = g.ncopy + len
  end
  g.n = i + 1
  return len
end

-- Append the parts of one argument; returns its byte count. lvl names the
-- caller of conn:send for misuse errors.
local add
add = function(S, g, c, x, lvl, d)
  local tx = type(x)
  if tx == "string" then
    local n = #x
    if n == 0 then return 0 end
    return put(g, c, x, n, n >= g.thr and PART_PINNED or PART_COPY, x)
  elseif tx == "table" then
    if getmetatable(x) == slice_mt then
      local r = x.r
      if gone(r) then build_fail(g, "conn:send: a slice of a freed region", lvl) end
      if r.S ~= S then build_fail(g, "conn:send: a slice of another run's region", lvl) end
      local n = x.n
      if n == 0 then return 0 end
      return put(g, c, x.p, n, n >= g.thr and r.rid or PART_COPY, x)
    end
    if d > MAX_DEPTH then build_fail(g, "conn:send: arrays nested too deep (a cycle?)", lvl) end
    local total = 0
    for i = 1, #x do
      total = total + add(S, g, c, x[i], lvl + 1, d + 1)
    end
    return total
  elseif tx == "number" then
    local s = tostring(x)
    local k = g.nkeep + 1       -- alive until rl_conn_sendv has copied it
    g.nkeep = k
    g.keep[k] = s
    return put(g, c, s, #s, PART_COPY, nil)
  elseif is_buffer(x) then
    local p, n = x:ref()
    if n == 0 then return 0 end
    return put(g, c, p, n, PART_COPY, nil)   -- mutable: always copied
  end
  build_fail(g, "conn:send: cannot send a " .. tx
    .. " (strings, numbers, arrays, string.buffers, region slices)", lvl)
end

-- Nothing guarded (every part below zc_threshold): the plain copy path,
-- which appends to the connection's current send chunk, where
-- rl_conn_sendv would take a slab entry and a send operation of its own
-- (about ten times the cost of a 1 KiB send, bench/zc_crossover.lua). Only
-- the first call can fail for a reason other than memory, so all or
-- nothing holds as it does for rl_conn_sendv. The first two are unrolled
-- (a loop that runs twice would abort a serving loop's trace).
local function copy_parts(c, parts, n)
  local w, slot, gen = c.w, c.slot, c.gen
  local rc = C.rl_conn_send(w, slot, gen, parts[0].ptr, parts[0].len)
  if rc < 0 or n == 1 then return rc end
  rc = C.rl_conn_send(w, slot, gen, parts[1].ptr, parts[1].len)
  if rc < 0 or n == 2 then return rc end
  for i = 2, n - 1 do
    rc = C.rl_conn_send(w, slot, gen, parts[i].ptr, parts[i].len)
    if rc < 0 then return rc end
  end
  return rc
end

-- Count guarded parts among parts[from, to) and hand them to c's books.
local function account(c, g, parts, from, to)
  local guarded = 0
  for i = from, to - 1 do
    if parts[i].region ~= PART_COPY then guarded = guarded + 1 end
  end
  if guarded > 0 then
    local S = c.S
    c.guards = c.guards + guarded
    S.guards_out = S.guards_out + guarded
    g.anchored = g.anchored + guarded
  end
end

-- Where a send that may wait stops before copying more: the first copied
-- part among parts[from, n) that takes the copied bytes from `from` on past
-- S.sendcap (conn_send then queues it piece by piece, waiting for the low
-- watermark, as a big copied string of a send without slices), else n.
local function copy_limit(c, parts, from, n)
  local cap, copied = c.S.sendcap, 0
  for i = from, n - 1 do
    if parts[i].region == PART_COPY then
      copied = copied + parts[i].len
      if copied > cap then return i end
    end
  end
  return n
end

-- The slab was full at part k of the build (rl_conn_sendv_upto): the parts
-- before it are queued, the rest move out of the shared build into a state
-- of their own (the sender waits, and other sends build meanwhile). Their
-- tokens stay anchored; strings made for numbers stay alive with them.
-- Copied parts keep pointing into the caller's strings and string.buffers,
-- which stay alive (send's arguments) and unchanged (send has not returned).
local function pending(c, g, k, total)
  local n = g.n
  local parts = g.parts
  account(c, g, parts, 0, k)
  local rest = ffi_new("struct rl_part[?]", n - k)
  ffi.copy(rest, parts + k, (n - k) * PART_SIZE)
  local keep = false
  if g.nkeep > 0 then
    keep = {}
    local gk = g.keep
    for i = 1, g.nkeep do keep[i] = gk[i]; gk[i] = nil end
    g.nkeep = 0
  end
  g.n = 0
  return { parts = rest, off = 0, n = n - k, keep = keep, total = total }
end

-- Queue more of a pending send after a slab entry came free (or its next
-- copied part was queued): true when all of it is queued, false when it
-- stopped again - before a guarded part (the slab is full) or a copied one
-- past the copy limit (copy_limit) - or nil, err (then what is left was
-- dropped, as by M.abandon).
function M.resume(c, st)
  local g = c.S.rguards
  local off, n = st.off, st.n
  local j = copy_limit(c, st.parts, off, n)
  local rc = C.rl_conn_sendv_upto(c.w, c.slot, c.gen, st.parts + off, j - off)
  if rc < 0 then
    M.abandon(c, st)
    return nil, errstr(rc)
  end
  account(c, g, st.parts, off, off + rc)
  off = off + rc
  st.off = off
  return off == n
end

-- Give up a pending send: the tokens of the parts never queued go back.
function M.abandon(c, st)
  local g = c.S.rguards
  local parts = st.parts
  for i = st.off, st.n - 1 do
    if parts[i].region ~= PART_COPY then drop_token(g, parts[i].token) end
  end
  st.off = st.n
  st.keep = false
end

-- send(c, wait, lvl, nargs, ...): queue every argument as one rl_conn_sendv.
-- Returns the byte count or nil, err (then nothing was queued). lvl: the
-- misuse level of the caller of conn:send, seen from here. With wait, a
-- full slab does not make a guarded part copied, and copied parts past
-- S.sendcap are not copied at once: the parts up to there are queued and
-- the third value is the pending rest (M.resume, M.abandon), for the caller
-- to send when an entry comes free or piece by piece (conn_send.lua).
function M.send(c, wait, lvl, nargs, ...)
  local S = c.S
  local g = S.rguards or gstate(S)
  g.n, g.ng, g.ncopy = 0, 0, 0
  local total = 0
  local a, b = ...
  total = add(S, g, c, a, lvl + 1, 0)
  if nargs > 1 then
    total = total + add(S, g, c, b, lvl + 1, 0)
    for i = 3, nargs do
      total = total + add(S, g, c, (select(i, ...)), lvl + 1, 0)
    end
  end
  local n = g.n
  if n == 0 then return 0 end
  local rc
  if wait and g.ncopy > S.sendcap then
    -- more to copy than a send may queue without waiting: up to the limit
    -- now, the rest as a pending send (conn_send.lua)
    local j = copy_limit(c, g.parts, 0, n)
    rc = C.rl_conn_sendv_upto(c.w, c.slot, c.gen, g.parts, j)
    if rc >= 0 then
      if rc < n then return total, nil, pending(c, g, rc, total) end
      rc = 0
    end
  elseif g.ng == 0 then
    rc = copy_parts(c, g.parts, n)
  elseif wait then
    rc = C.rl_conn_sendv_upto(c.w, c.slot, c.gen, g.parts, n)
    if rc >= 0 then
      if rc < n then return total, nil, pending(c, g, rc, total) end
      rc = 0
    end
  else
    rc = C.rl_conn_sendv(c.w, c.slot, c.gen, g.parts, n)
  end
  if rc < 0 then
    unbuild(g)
    return nil, errstr(rc)
  end
  local guarded = g.ng
  if g.nkeep > 0 then
    local keep = g.keep
    for i = 1, g.nkeep do keep[i] = nil end
    g.nkeep = 0
  end
  g.n = 0
  if guarded > 0 then
    c.guards = c.guards + guarded
    S.guards_out = S.guards_out + guarded
    g.anchored = g.anchored + guarded
  end
  return total
end

-- hooks.conn_idle(c) (ringline.conn_send's): wakes c's parked writers and
-- flushers when its last guard is released.
local hooks = sched.hooks

-- RL_EV_GUARD: data = token, slot = region id (or RL_PART_PINNED).
local function on_guard(S, ev)
  local g = S.rguards
  local t = ev.data
  local obj = g and g.obj[t]
  if obj == nil then
    -- never handed out, or a second release: the core broke its promise
    if g then g.unknown = g.unknown + 1 end
    log.log(log.ERR, "guard release for an unknown token ", tonumber(t))
    return
  end
  local c = g.conn[t]
  drop_token(g, t)
  g.released = g.released + 1
  S.guards_out = S.guards_out - 1
  local n = c.guards - 1
  c.guards = n
  if n == 0 and c.nwriters > 0 then hooks.conn_idle(c) end
  local id = ev.slot
  local z = g.zombies
  if z[id] and C.rl_region_inflight(S.w, id) == 0 then
    z[id] = nil
    C.rl_region_free(S.w, id)
  end
end

-- After rl_worker_destroy: it waited for the kernel to give everything back
-- (then every anchor left can go), unless it timed out (then the kernel may
-- still read them: keep them for the life of the process).
local function on_destroyed(S, rc)
  local g = S.rguards
  if not g then return end
  local left = S.guards_out
  if left > 0 then
    if rc == -errors.ETIMEDOUT then
      graveyard[#graveyard + 1] = g.obj
      log.log(log.ERR, left, " guarded part(s) kept: the worker's teardown timed out")
    end
    g.dropped = g.dropped + left
    g.obj, g.conn = {}, {}
    S.guards_out = 0
  end
end

-- ringline (init.lua) installs this module's event and hook (ringline.sched
-- lists them).
function M.attach(sched_)
  sched_.on_event(EV_GUARD, on_guard)
  sched_.hook("destroyed", on_destroyed)
end

-- Guard statistics of a run's state (specs): anchored = guards handed out,
-- released = RL_EV_GUARD events, dropped = anchors left at teardown,
-- unknown = releases of tokens not outstanding, out = outstanding now.
function M.stats(S)
  local g = S and S.rguards
  if not g then return { anchored = 0, released = 0, dropped = 0, unknown = 0, out = 0 } end
  return { anchored = g.anchored, released = g.released, dropped = g.dropped,
           unknown = g.unknown, out = S.guards_out }
end

return M
