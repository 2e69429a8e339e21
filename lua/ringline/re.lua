-- ringline.re: OpenResty's ngx.re API (match, find, gmatch, sub, gsub, and
-- the ngx.re module's split and opt) on PCRE2 through the FFI.
--
--   local re = require "ringline.re"
--   local m, err = re.match("hello, 1234", "([0-9])[0-9]+", "jo")
--   -- m[0] == "1234", m[1] == "1"
--
-- Options (letters of the options string):
--   a anchored   d DFA (pcre2_dfa_match: the longest match, no captures)
--   D duplicate names (a named capture becomes an array of values)
--   i caseless   j JIT (pcre2_jit_compile)   J JavaScript compatibility
--   (PCRE2 has no such mode; as OpenResty on PCRE2: ALT_BSUX and
--   MATCH_UNSET_BACKREF)   m multiline   o compile once: the pattern is
--   kept in this worker's cache (bounded: regex_cache_max_entries, 1024 by
--   default; past it patterns are compiled per call, as OpenResty does)
--   s dotall   u UTF-8 (subject checked)   U UTF-8, subject not checked
--   x extended.
--
-- Capture tables are as OpenResty returns them: [0] the whole match,
-- [1..n] the groups, named groups also under their name, a group that did
-- not take part is false. Errors are returned (nil, err): a pattern that
-- does not compile gives 'failed to compile regex "<re>": <why> at offset
-- N'. An unknown option letter or a bad argument type is a misuse and
-- raises.
--
-- Each worker (Lua state) has its own cache and one match-data block that
-- grows to the largest capture count seen: a match allocates nothing but
-- its result table (and the strings of the captures).
local ffi = require "ffi"
local bit = require "bit"

local type, error, tostring, tonumber, setmetatable = type, error, tostring, tonumber, setmetatable
local byte, sub, find, concat = string.byte, string.sub, string.find, table.concat
local band, bor = bit.band, bit.bor
local ffi_string, ffi_cast, ffi_gc, ffi_new = ffi.string, ffi.cast, ffi.gc, ffi.new
-- capture tables are made at their final size: growing one from {} rehashes
-- it several times, which costs more than the match
local ok_new, new_tab = pcall(require, "table.new")
if not ok_new then new_tab = function() return {} end end

pcall(ffi.cdef, [[
typedef struct pcre2_real_code_8 pcre2_code_8;
typedef struct pcre2_real_match_data_8 pcre2_match_data_8;
typedef struct pcre2_real_match_context_8 pcre2_match_context_8;
typedef struct pcre2_real_jit_stack_8 pcre2_jit_stack_8;
pcre2_code_8 *pcre2_compile_8(const unsigned char *, size_t, uint32_t, int *, size_t *, void *);
void pcre2_code_free_8(pcre2_code_8 *);
int pcre2_jit_compile_8(pcre2_code_8 *, uint32_t);
int pcre2_pattern_info_8(const pcre2_code_8 *, uint32_t, void *);
int pcre2_get_error_message_8(int, unsigned char *, size_t);
pcre2_match_data_8 *pcre2_match_data_create_8(uint32_t, void *);
void pcre2_match_data_free_8(pcre2_match_data_8 *);
size_t *pcre2_get_ovector_pointer_8(pcre2_match_data_8 *);
int pcre2_match_8(const pcre2_code_8 *, const char *, size_t, size_t, uint32_t,
                  pcre2_match_data_8 *, pcre2_match_context_8 *);
int pcre2_dfa_match_8(const pcre2_code_8 *, const char *, size_t, size_t, uint32_t,
                      pcre2_match_data_8 *, pcre2_match_context_8 *, int *, size_t);
pcre2_match_context_8 *pcre2_match_context_create_8(void *);
pcre2_jit_stack_8 *pcre2_jit_stack_create_8(size_t, size_t, void *);
void pcre2_jit_stack_free_8(pcre2_jit_stack_8 *);
void pcre2_jit_stack_assign_8(pcre2_match_context_8 *, void *, void *);
void pcre2_match_context_free_8(pcre2_match_context_8 *);
]])

-- The runtime package's SONAME first (libpcre2-8.so comes only with
-- libpcre2-dev). The library is then pinned (RTLD_NODELETE): when this
-- module is collected (a Lua state closing, or busted unloading modules
-- between spec files) the finalizers of its compiled patterns and match
-- data may run after the library handle's own, which would dlclose it
-- under them.
local P
do
  local names = { "libpcre2-8.so.0", "pcre2-8" }
  local lib, why
  for i = 1, #names do
    local ok, l = pcall(ffi.load, names[i])
    if ok then lib = l; break end
    why = l
  end
  if not lib then
    error("ringline.re: cannot load libpcre2-8 (install libpcre2-8-0): " .. tostring(why), 0)
  end
  pcall(ffi.cdef, "void *dlopen(const char *, int);")
  local RTLD_NOW, RTLD_NODELETE = 0x2, 0x1000
  pcall(function() ffi.C.dlopen("libpcre2-8.so.0", RTLD_NOW + RTLD_NODELETE) end)
  P = lib
  -- the matchers resolved now: a symbol first looked up inside a trace
  -- aborts it ("symbol not in cache"), and the match loop would run
  -- interpreted until the next try
  local _ = P.pcre2_match_8, P.pcre2_dfa_match_8, P.pcre2_get_ovector_pointer_8
end

local M = {}

local CASELESS, DOTALL, DUPNAMES, EXTENDED = 0x8, 0x20, 0x40, 0x80
local MULTILINE, UTF, ALT_BSUX, UNSET_BACKREF = 0x400, 0x80000, 0x2, 0x200
local ANCHORED, NO_UTF_CHECK = 0x80000000, 0x40000000
local JIT_COMPLETE, NOMATCH, DFA_WSSIZE = 1, -1, -43
local INFO_CAPTURECOUNT, INFO_NAMECOUNT, INFO_NAMEENTRYSIZE, INFO_NAMETABLE = 4, 17, 18, 19
-- Ovector entries are size_t; reading them as such boxes a 64-bit cdata per
-- read. Subjects are Lua strings (under 2 GiB in LuaJIT), so the low 32-bit
-- word of each (little-endian x86-64/arm64) is the whole offset and
-- PCRE2_UNSET reads as 0xffffffff: group g's start is ov32[4g], its end
-- ov32[4g + 2].
local UNSET32 = 0xffffffff

-- Our own flags beside PCRE2's compile options (kept in one number per
-- options string).
local F_JIT, F_ONCE, F_DFA, F_NOCHECK = 0x1, 0x2, 0x4, 0x8

local LETTERS = {
  a = { ANCHORED, 0 }, d = { 0, F_DFA }, D = { DUPNAMES, 0 }, i = { CASELESS, 0 },
  j = { 0, F_JIT }, J = { bor(ALT_BSUX, UNSET_BACKREF), 0 }, m = { MULTILINE, 0 },
  o = { 0, F_ONCE }, s = { DOTALL, 0 }, u = { UTF, 0 }, U = { UTF, F_NOCHECK },
  x = { EXTENDED, 0 },
}

-- options string -> { compile options, our flags }; parsed once per string.
local parsed = {}
local function parse_opts(opts, fname)
  if opts == nil then opts = "" end
  local p = parsed[opts]
  if p then return p end
  if type(opts) ~= "string" then
    error(fname .. ": options must be a string, got " .. type(opts), 3)
  end
  local copt, flags = 0, 0
  for i = 1, #opts do
    local c = sub(opts, i, i)
    local l = LETTERS[c]
    if not l then
      error(("%s: unknown flag \"%s\" (flags \"%s\")"):format(fname, c, opts), 3)
    end
    copt, flags = bor(copt, l[1]), bor(flags, l[2])
  end
  p = { copt, flags }
  parsed[opts] = p
  return p
end

-- ---- compiled patterns ----

local errbuf = ffi_new("unsigned char[256]")
local errcode, erroff = ffi_new("int[1]"), ffi_new("size_t[1]")
local info_u32 = ffi_new("uint32_t[1]")
local info_ptr = ffi_new("const unsigned char *[1]")

local function pcre_message(code)
  local n = P.pcre2_get_error_message_8(code, errbuf, 256)
  if n < 0 then return "error " .. code end
  return ffi_string(errbuf, n)
end

-- The match data: one per worker, grown to the largest pattern.
local md, md_pairs, ov32 = nil, 0, nil
local function need_pairs(n)
  if n <= md_pairs then return end
  if n < 16 then n = 16 end
  local m = P.pcre2_match_data_create_8(n, nil)
  if m == nil then error("ringline.re: out of memory", 0) end
  if md ~= nil then P.pcre2_match_data_free_8(ffi_gc(md, nil)) end
  md = ffi_gc(m, P.pcre2_match_data_free_8)
  md_pairs = n
  ov32 = ffi_cast("uint32_t *", P.pcre2_get_ovector_pointer_8(md))
end
need_pairs(16)

-- for a JIT stack set by opt(); freed with the Lua state (a sanitized
-- host's leak check sees everything given back)
local mctx = ffi_gc(P.pcre2_match_context_create_8(nil), P.pcre2_match_context_free_8)
local jit_stack = nil
local dfa_ws_n = 100
local dfa_ws = ffi_new("int[?]", dfa_ws_n)

-- A compiled pattern: { code, ncap, names ({num, name} pairs or false),
-- flags, match options, number of names }.
local function compile(regex, copt, flags)
  local code = P.pcre2_compile_8(regex, #regex, copt, errcode, erroff, nil)
  if code == nil then
    return nil, ('failed to compile regex "%s": %s at offset %d'):format(regex,
      pcre_message(errcode[0]), tonumber(erroff[0]))
  end
  code = ffi_gc(code, P.pcre2_code_free_8)
  if band(flags, F_JIT) ~= 0 then
    P.pcre2_jit_compile_8(code, JIT_COMPLETE)   -- no JIT: the interpreter runs it
  end
  P.pcre2_pattern_info_8(code, INFO_CAPTURECOUNT, info_u32)
  local ncap = tonumber(info_u32[0])
  local names = false
  P.pcre2_pattern_info_8(code, INFO_NAMECOUNT, info_u32)
  local nnames = tonumber(info_u32[0])
  if nnames > 0 then
    P.pcre2_pattern_info_8(code, INFO_NAMEENTRYSIZE, info_u32)
    local esz = tonumber(info_u32[0])
    P.pcre2_pattern_info_8(code, INFO_NAMETABLE, info_ptr)
    local t = info_ptr[0]
    names = {}
    for i = 0, nnames - 1 do
      local e = t + i * esz
      names[#names + 1] = e[0] * 256 + e[1]
      names[#names + 1] = ffi_string(e + 2)
    end
  end
  need_pairs(ncap + 1)
  return { code, ncap, names, flags, band(flags, F_NOCHECK) ~= 0 and NO_UTF_CHECK or 0, nnames }
end

-- The per-worker cache of "o" patterns: cache[options][regex].
local cache, cache_n, cache_max = {}, 0, 1024

local function get(regex, opts, fname)
  if type(regex) ~= "string" then
    error(fname .. ": regex must be a string, got " .. type(regex), 3)
  end
  local p = parse_opts(opts, fname)
  local once = band(p[2], F_ONCE) ~= 0
  if once then
    local byopt = cache[opts or ""]
    local c = byopt and byopt[regex]
    if c then return c end
  end
  local c, err = compile(regex, p[1], p[2])
  if not c then return nil, err end
  if once and cache_n < cache_max then
    local k = opts or ""
    local byopt = cache[k]
    if not byopt then byopt = {}; cache[k] = byopt end
    byopt[regex] = c
    cache_n = cache_n + 1
    c.cached = true
  end
  return c
end

-- A pattern compiled for this call only gives its memory back now, not at
-- the next collection.
local function release(c)
  if not c.cached then P.pcre2_code_free_8(ffi_gc(c[1], nil)) end
end

-- Run c on subject from byte offset `off` (0-based). Returns the number of
-- pairs set (> 0), 0 for no match, or nil, err.
local function exec(c, subject, len, off, mopt)
  local rc
  if band(c[4], F_DFA) ~= 0 then
    rc = P.pcre2_dfa_match_8(c[1], subject, len, off, c[5] + mopt, md, mctx, dfa_ws, dfa_ws_n)
    if rc == DFA_WSSIZE then return nil, "pcre2_dfa_match() failed: " .. pcre_message(rc) end
    if rc == 0 then rc = 1 end     -- more matches than pairs: the longest is first
    if rc > 0 then return 1 end
  else
    rc = P.pcre2_match_8(c[1], subject, len, off, c[5] + mopt, md, mctx)
    if rc > 0 then return rc end
    if rc == 0 then return nil, "pcre2_match() failed: ovector too small" end
  end
  if rc == NOMATCH then return 0 end
  return nil, "pcre2_match() failed: " .. pcre_message(rc)
end

local function check_subject(subject, fname)
  local ts = type(subject)
  if ts == "string" then return subject end
  if ts == "number" then return tostring(subject) end
  error(fname .. ": subject must be a string, got " .. ts, 3)
end

-- 0-based start offset from ctx.pos (1-based).
local function start_of(ctx, len)
  if ctx == nil then return 0 end
  local pos = ctx.pos
  if pos == nil then return 0 end
  pos = tonumber(pos)
  if not pos or pos < 1 then return 0 end
  return pos - 1
end

-- The capture table of the last match (rc pairs set).
local function captures(c, subject, rc, res)
  local ncap = c[2]
  if band(c[4], F_DFA) ~= 0 then ncap = 0 end
  local t = res or new_tab(ncap, c[6] + 1)   -- [0] lives in the hash part
  for i = 0, ncap do
    local s = i < rc and ov32[4 * i] or UNSET32
    if s == UNSET32 then
      t[i] = false
    else
      t[i] = sub(subject, s + 1, ov32[4 * i + 2])
    end
  end
  local names = ncap > 0 and c[3]
  if names then
    local dup = c.dup   -- some name used twice ("D"): arrays of values
    if dup == nil then
      dup = false
      local seen = {}
      for i = 2, #names, 2 do
        if seen[names[i]] then dup = true end
        seen[names[i]] = true
      end
      c.dup = dup
    end
    if dup then
      for i = 2, #names, 2 do t[names[i]] = nil end
      for i = 1, #names, 2 do
        local name = names[i + 1]
        local a = t[name]
        if not a then a = {}; t[name] = a end
        a[#a + 1] = t[names[i]]
      end
    else
      for i = 1, #names, 2 do t[names[i + 1]] = t[names[i]] end
    end
  end
  return t
end

-- captures, err = match(subject, regex, options?, ctx?, res_table?)
function M.match(subject, regex, opts, ctx, res)
  subject = check_subject(subject, "match")
  local c, err = get(regex, opts, "match")
  if not c then return nil, err end
  local len = #subject
  local off = start_of(ctx, len)
  if off > len then release(c); return nil end
  local rc
  rc, err = exec(c, subject, len, off, 0)
  if not rc then release(c); return nil, err end
  if rc == 0 then release(c); return nil end
  if ctx then ctx.pos = ov32[2] + 1 end
  local t = captures(c, subject, rc, res)
  release(c)
  return t
end

-- from, to, err = find(subject, regex, options?, ctx?, nth?)
function M.find(subject, regex, opts, ctx, nth)
  subject = check_subject(subject, "find")
  nth = nth or 0
  if type(nth) ~= "number" or nth < 0 or nth % 1 ~= 0 then
    error("find: nth must be a non-negative integer", 2)
  end
  local c, err = get(regex, opts, "find")
  if not c then return nil, nil, err end
  local len = #subject
  local off = start_of(ctx, len)
  if off > len then release(c); return nil end
  local rc
  rc, err = exec(c, subject, len, off, 0)
  local ncap = band(c[4], F_DFA) ~= 0 and 0 or c[2]
  release(c)
  if not rc then return nil, nil, err end
  if rc == 0 then return nil end
  if ctx then ctx.pos = ov32[2] + 1 end
  if nth > ncap then return nil, nil, "nth out of bound" end
  if nth >= rc or ov32[4 * nth] == UNSET32 then return nil end
  return ov32[4 * nth] + 1, ov32[4 * nth + 2]
end

-- The byte offset after an empty match at off: one character further (one
-- UTF-8 sequence in u/U mode).
local function step(c, subject, off, len)
  if off >= len then return off + 1 end
  if c.utf == nil then
    P.pcre2_pattern_info_8(c[1], 0, info_u32)   -- PCRE2_INFO_ALLOPTIONS
    c.utf = band(info_u32[0], UTF) ~= 0
  end
  if not c.utf then return off + 1 end
  local o = off + 1
  while o < len do
    local b = byte(subject, o + 1)
    if b < 0x80 or b >= 0xc0 then break end
    o = o + 1
  end
  return o
end

-- iterator, err = gmatch(subject, regex, options?)
function M.gmatch(subject, regex, opts)
  subject = check_subject(subject, "gmatch")
  local c, err = get(regex, opts, "gmatch")
  if not c then return nil, err end
  local len, off, done = #subject, 0, false
  return function()
    if done then return nil end
    if off > len then done = true; release(c); return nil end
    local rc, e = exec(c, subject, len, off, 0)
    if not rc then done = true; release(c); return nil, e end
    if rc == 0 then done = true; release(c); return nil end
    local s, e2 = ov32[0], ov32[2]
    local t = captures(c, subject, rc)
    if s == e2 then off = step(c, subject, e2, len) else off = e2 end
    return t
  end
end

-- ---- replacement templates ----

-- template -> array of pieces: a string (literal), a number (group), or
-- { name }; false when the template is bad. Bounded like the regex cache.
local templates, templates_n = {}, 0

local function parse_template(tpl)
  local t = templates[tpl]
  if t ~= nil then return t end
  t = {}
  local i, n, lit = 1, #tpl, {}
  local ok = true
  while i <= n do
    local d = find(tpl, "$", i, true)
    if not d then lit[#lit + 1] = sub(tpl, i); break end
    if d > i then lit[#lit + 1] = sub(tpl, i, d - 1) end
    local ch = sub(tpl, d + 1, d + 1)
    if ch == "$" then
      lit[#lit + 1] = "$"
      i = d + 2
    elseif ch:match("^%d$") then
      local digits = tpl:match("^%d+", d + 1)
      if #lit > 0 then t[#t + 1] = concat(lit); lit = {} end
      t[#t + 1] = tonumber(digits)
      i = d + 1 + #digits
    elseif ch == "{" then
      local close = find(tpl, "}", d + 2, true)
      local name = close and sub(tpl, d + 2, close - 1)
      if not name or not name:match("^[%w_]+$") then ok = false; break end
      if #lit > 0 then t[#t + 1] = concat(lit); lit = {} end
      t[#t + 1] = name:match("^%d+$") and tonumber(name) or { name }
      i = close + 1
    else
      ok = false
      break
    end
  end
  if ok and #lit > 0 then t[#t + 1] = concat(lit) end
  if not ok then t = false end
  if templates_n < 1024 then
    templates[tpl] = t
    templates_n = templates_n + 1
  end
  return t
end

-- Append the expansion of template t for the current match to buf.
local function expand(c, t, subject, rc, buf, nb)
  for k = 1, #t do
    local p = t[k]
    local tp = type(p)
    if tp == "string" then
      nb = nb + 1; buf[nb] = p
    else
      local g = p
      if tp == "table" then
        g = nil
        local names = c[3]
        if names then
          for i = 1, #names, 2 do
            if names[i + 1] == p[1] and g == nil then
              g = names[i]
              -- with duplicate names, the first that took part
              if not (g < rc and ov32[4 * g] ~= UNSET32) then g = nil end
            end
          end
          if g == nil then
            for i = 1, #names, 2 do
              if names[i + 1] == p[1] then g = names[i]; break end
            end
          end
        end
        if g == nil then return nil, "invalid capturing variable name: " .. p[1] end
      end
      if g <= c[2] and g < rc and ov32[4 * g] ~= UNSET32 then
        nb = nb + 1; buf[nb] = sub(subject, ov32[4 * g] + 1, ov32[4 * g + 2])
      end
    end
  end
  return nb
end

local function replace(fname, subject, regex, repl, opts, global)
  subject = check_subject(subject, fname)
  local tr = type(repl)
  local tpl
  if tr == "string" or tr == "number" then
    tpl = parse_template(tostring(repl))
    if not tpl then
      return nil, nil, "failed to compile the replacement template"
    end
  elseif tr ~= "function" then
    error(fname .. ": replace must be a string or a function, got " .. tr, 2)
  end
  local c, err = get(regex, opts, fname)
  if not c then return nil, nil, err end
  local len, off, last, n = #subject, 0, 0, 0
  local buf, nb = {}, 0
  while off <= len do
    local rc
    rc, err = exec(c, subject, len, off, 0)
    if not rc then release(c); return nil, nil, err end
    if rc == 0 then break end
    local s, e = ov32[0], ov32[2]
    if s > last then nb = nb + 1; buf[nb] = sub(subject, last + 1, s) end
    if tpl then
      nb, err = expand(c, tpl, subject, rc, buf, nb)
      if not nb then release(c); return nil, nil, err end
    else
      local r = repl(captures(c, subject, rc))
      local t = type(r)
      if t == "number" then r = tostring(r)
      elseif t ~= "string" then
        release(c)
        error(fname .. ": the replace function returned a " .. t .. ", not a string", 2)
      end
      -- the function may have matched other patterns: the ovector is ours again
      nb = nb + 1; buf[nb] = r
    end
    n = n + 1
    last = e
    if not global then break end
    if s == e then
      local o = step(c, subject, e, len)
      if o > e and e < len then nb = nb + 1; buf[nb] = sub(subject, e + 1, o) end
      last = o
      off = o
    else
      off = e
    end
  end
  release(c)
  if n == 0 then return subject, 0 end
  if last < len then nb = nb + 1; buf[nb] = sub(subject, last + 1) end
  return concat(buf, "", 1, nb), n
end

-- newstr, n, err = sub(subject, regex, replace, options?)
function M.sub(subject, regex, repl, opts)
  return replace("sub", subject, regex, repl, opts, false)
end

-- newstr, n, err = gsub(subject, regex, replace, options?)
function M.gsub(subject, regex, repl, opts)
  return replace("gsub", subject, regex, repl, opts, true)
end

-- res, err = split(subject, regex, options?, ctx?, max?, res?): the pieces
-- between matches; the first group of a match (when it took part) between
-- them; trailing empty pieces dropped; at most max pieces when max > 0
-- (the last holds the rest).
function M.split(subject, regex, opts, ctx, max, res)
  subject = check_subject(subject, "split")
  if max ~= nil and type(max) ~= "number" then error("split: max must be a number", 2) end
  local c, err = get(regex, opts, "split")
  if not c then return nil, err end
  local t = res or {}
  local len = #subject
  local off = start_of(ctx, len)
  local n = 0
  if off >= len then
    release(c)
    t[1] = nil
    return t
  end
  max = max or 0
  local piece = off      -- where the current piece starts
  local search = off
  local pieces = 0       -- max counts pieces, not the captures between them
  while search <= len do
    if max > 0 and pieces >= max - 1 then break end
    local rc
    rc, err = exec(c, subject, len, search, 0)
    if not rc then release(c); return nil, err end
    if rc == 0 then break end
    local s, e = ov32[0], ov32[2]
    if s == e then
      -- an empty match: split after the next character
      if s >= len then break end
      if s == piece then
        local o = step(c, subject, s, len)
        s, e = o, o
        if o >= len then break end
      end
    end
    n = n + 1; t[n] = sub(subject, piece + 1, s)
    pieces = pieces + 1
    if c[2] >= 1 and rc > 1 and ov32[4] ~= UNSET32 then
      n = n + 1; t[n] = sub(subject, ov32[4] + 1, ov32[6])
    end
    piece = e
    search = e
  end
  if piece < len then n = n + 1; t[n] = sub(subject, piece + 1) end
  release(c)
  -- trailing empty pieces are dropped
  while n > 0 and t[n] == "" do t[n] = nil; n = n - 1 end
  t[n + 1] = nil
  return t
end

-- opt(name, value): "jit_stack_size" (bytes, the JIT stack of this
-- worker's matches; default PCRE2's 32 KiB) and "regex_cache_max_entries"
-- (patterns the "o" option keeps per worker; default 1024, as OpenResty's
-- lua_regex_cache_max_entries).
function M.opt(name, value)
  if type(value) ~= "number" or value < 0 or value % 1 ~= 0 then
    error("opt: value must be a non-negative integer", 2)
  end
  if name == "jit_stack_size" then
    if value < 32768 then error("opt: jit_stack_size must be at least 32768", 2) end
    local s = P.pcre2_jit_stack_create_8(32768, value, nil)
    if s == nil then return nil, "no memory" end
    P.pcre2_jit_stack_assign_8(mctx, nil, s)
    if jit_stack ~= nil then P.pcre2_jit_stack_free_8(ffi_gc(jit_stack, nil)) end
    jit_stack = ffi_gc(s, P.pcre2_jit_stack_free_8)
    return true
  elseif name == "regex_cache_max_entries" then
    cache_max = value
    return true
  end
  error("opt: unknown option '" .. tostring(name) .. "'", 2)
end

-- The number of patterns in this worker's "o" cache.
function M.cache_count() return cache_n end

return M
