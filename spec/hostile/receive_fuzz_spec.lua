-- Hostile peers: a seeded randomized-split fuzz of every receive pattern
-- (issue 17, "The attacks become tests").
--
-- Per seed, a generator makes a script of reads (receive "*l"/"l"/default,
-- lines(), receive(n) with and without opts.max, receive("*a"/"a"),
-- receiveany(max), receiveuntil iterators whole and in pieces, inclusive or
-- not, with and without opts.max, view(min) + consume, with_data) and a byte
-- stream shaped to exercise them: lines ending "\r\n" or "\n", lines and
-- parts near line_max, delimiters and their prefixes, binary bytes, lengths
-- past max_receive, and in some seeds an EOF in the middle of a pattern.
-- The client sends the stream over loopback in writes of random sizes,
-- letting the loop turn between them (ringline.sleep(0)) so reads see the
-- bytes arrive in arbitrary pieces; the server runs the script. A pure-Lua
-- model (below, written from docs/api.md, no ringline) computes from the
-- whole stream what each call must return: the split points must not
-- matter. The few results that depend on timing by definition (receiveany's
-- and view's lengths, with_data on a message past line_max) are checked as
-- constraints and the model follows what was observed.
--
-- A failure names the seed and the first divergence; rerun one seed with
--   RINGLINE_FUZZ_SEED=n busted --lua=luajit spec/hostile/receive_fuzz_spec.lua
-- RINGLINE_FUZZ_SEEDS=n runs n seeds per configuration (default 200;
-- bench/soak.sh runs many more), from RINGLINE_FUZZ_FIRST (default 1);
-- RINGLINE_FUZZ_VERBOSE=1 prints every divergence and the outcomes seen.
local ffi = require "ffi"
local ringline = require "ringline"
local support = require "support"

-- A call's results, trailing nils dropped: `return s` and `return s, nil`
-- are the same to any caller (the iterator's paths differ that way).
local function pack(...)
  local t = { n = select("#", ...), ... }
  while t.n > 0 and t[t.n] == nil do t.n = t.n - 1 end
  return t
end

local ONE = tonumber(os.getenv("RINGLINE_FUZZ_SEED"))
local NSEEDS = tonumber(os.getenv("RINGLINE_FUZZ_SEEDS")) or 200
local FIRST = tonumber(os.getenv("RINGLINE_FUZZ_FIRST")) or 1

-- The configurations: default buffers with short lines; many small buffers
-- and a small window; lines longer than the window (a reader waiting for
-- one raises it); several connections sharing a tiny buffer ring.
local CONFIGS = {
  { name = "default buffers", line_max = 200, max_receive = 4000 },
  { name = "recv_window=1024 recv_buffer_size=256", line_max = 600, max_receive = 3000,
    recv_window = 1024, recv_buffer_size = 256, expect = { "recv_pauses" } },
  { name = "line_max=3000 past recv_window=1024", line_max = 3000, max_receive = 6000,
    recv_window = 1024, recv_buffer_size = 256, expect = { "recv_pauses" } },
  -- four connections at once on a ring of 2 small buffers: it runs dry
  -- (ENOBUFS) and receives are re-armed
  { name = "4 connections at once on recv_buffers=2 of 256 bytes", line_max = 400,
    max_receive = 2000, recv_window = 1024, recv_buffer_size = 256, recv_buffers = 2,
    parallel = 4, expect = { "recv_pauses", "recv_enobufs" } },
}

---------------------------------------------------------------------------
-- A seeded generator (Park-Miller minimal standard: exact in doubles).

local function prng(seed)
  local x = (seed * 69069 + 12345) % 2147483646 + 1
  for _ = 1, 4 do x = x * 48271 % 2147483647 end
  local R = {}
  function R.int(a, b)
    x = x * 48271 % 2147483647
    return a + x % (b - a + 1)
  end
  function R.chance(p)
    x = x * 48271 % 2147483647
    return x / 2147483647 < p
  end
  function R.pick(t) return t[R.int(1, #t)] end
  return R
end

local DELIMS = { "\r\n--abc", "--", "\r\n\r\n", "X", "aab", "abcab", "\n" }
local TEXT = "abcdefghijklmnopqrstuvwxyz0123456789 -_.:;/XYZ"

-- n bytes of a kind: "text" (no "\n"), "mixed" (text with lone "\r"s and
-- some delimiter pieces), "bin" (any byte).
local function gen_bytes(R, n, kind, delim)
  local t = {}
  local i = 0
  while i < n do
    local b
    if kind == "bin" then
      b = string.char(R.int(0, 255))
    elseif kind == "mixed" and R.chance(0.08) then
      b = R.chance(0.3) and "\r" or (delim and delim:sub(1, R.int(1, #delim)) or "-")
      if #b + i > n then b = b:sub(1, n - i) end
      if delim and (t[#t] or "") .. b == delim then b = "." end  -- keep delimiters where meant
    else
      local k = R.int(1, #TEXT)
      b = TEXT:sub(k, k)
    end
    t[#t + 1] = b
    i = i + #b
  end
  local s = table.concat(t)
  if delim and kind ~= "bin" then
    -- no whole delimiter inside a part, except by accident in "bin"
    local j = s:find(delim, 1, true)
    while j do
      s = s:sub(1, j - 1) .. "." .. s:sub(j + 1)
      j = s:find(delim, 1, true)
    end
  end
  return s
end

-- A length: mostly small, sometimes at the limit +-3, sometimes up to it.
local function gen_len(R, limit, small)
  local r = R.int(1, 10)
  if r <= 6 then return R.int(0, small or 20) end
  if r <= 8 then return math.max(0, R.int(limit - 3, limit + 3)) end
  return R.int(0, limit)
end

local function gen_line(R, lim, out)
  local kind = R.chance(0.1) and "mixed" or "text"
  out[#out + 1] = gen_bytes(R, gen_len(R, lim.line_max), kind)
  local e = R.int(1, 10)
  out[#out + 1] = e <= 4 and "\r\n" or e <= 9 and "\n" or ""
end

-- A script and its stream for one seed and configuration.
local function generate(seed, lim)
  local R = prng(seed)
  local ops, out = {}, {}
  local nops = R.int(4, 24)
  for k = 1, nops do
    local w = R.int(1, 100)
    local op
    if w <= 18 then
      op = { k = "line", pat = R.pick({ "*l", "l", false }) }
      gen_line(R, lim, out)
    elseif w <= 23 then
      op = { k = "lines", count = R.int(1, 4) }
      for _ = 1, op.count do gen_line(R, lim, out) end
    elseif w <= 38 then
      local n = R.chance(0.12) and R.int(lim.max_receive - 2, lim.max_receive + 2) or R.int(0, 40)
      if R.chance(0.05) then n = n + 0.5 end
      op = { k = "n", n = n, max = R.chance(0.2) and R.int(1, 60) or nil }
      out[#out + 1] = gen_bytes(R, math.min(math.floor(n), lim.max_receive), "bin")
    elseif w <= 48 then
      op = { k = "any", max = R.int(1, 64) + (R.chance(0.1) and 0.5 or 0) }
      out[#out + 1] = gen_bytes(R, R.int(1, 64), "bin")
    elseif w <= 70 then
      local delim = R.pick(DELIMS)
      op = { k = "until", delim = delim, inclusive = R.chance(0.5),
        max = R.chance(0.3) and R.int(0, 60) or nil, parts = {} }
      local partmax = op.max or lim.line_max
      for p = 1, R.int(1, 3) do
        local sizes = nil
        if R.chance(0.5) then
          sizes = {}
          for s = 1, R.int(1, 3) do sizes[s] = R.int(1, R.chance(0.5) and #delim + 2 or 40) end
        end
        op.parts[p] = sizes or false
        out[#out + 1] = gen_bytes(R, gen_len(R, partmax, 30), R.chance(0.1) and "bin" or "mixed", delim)
        out[#out + 1] = delim
      end
    elseif w <= 82 then
      local m = R.chance(0.2) and R.int(1, 50) or nil
      local min = R.chance(0.1) and R.int(lim.max_receive - 1, lim.max_receive + 1) or R.int(0, 40)
      op = { k = "view", min = min + (R.chance(0.1) and 0.5 or 0), max = m,
        consume = R.int(0, min), slot = R.chance(0.5) and 2 or 3 }
      out[#out + 1] = gen_bytes(R, min + R.int(0, 10), "bin")
    elseif w <= 94 then
      local L = R.chance(0.25) and math.max(0, R.int(lim.line_max - 5, lim.line_max + 3))
        or R.int(0, 40)
      op = { k = "with", retcount = R.chance(0.3), nilmore = R.chance(0.5) }
      out[#out + 1] = string.char(math.floor(L / 256) % 256, L % 256)
      out[#out + 1] = gen_bytes(R, L, "bin")
    else
      op = { k = "all", pat = R.pick({ "*a", "a" }), max = R.chance(0.3) and R.int(1, 200) or nil }
      out[#out + 1] = gen_bytes(R, R.int(0, 300), "bin")
    end
    ops[k] = op
  end
  if R.chance(0.5) then
    ops[#ops + 1] = { k = "all", pat = R.pick({ "*a", "a" }),
      max = R.chance(0.3) and R.int(1, 200) or nil }
    out[#out + 1] = gen_bytes(R, R.int(0, 100), "bin")
  end
  local stream = table.concat(out)
  if R.chance(0.4) then stream = stream:sub(1, R.int(0, #stream)) end  -- EOF mid-pattern
  -- write sizes 1..maxw, some of 1..3 anywhere; at most about 250 writes
  -- (a loop turn each), so long streams get longer writes
  local maxw = math.max(R.pick({ 1, 3, 16, 64, 512, 4096 }), math.ceil(#stream / 100))
  local writes = {}
  local i = 0
  while i < #stream do
    local n = math.min(R.chance(0.2) and R.int(1, 3) or R.int(1, maxw), #stream - i)
    writes[#writes + 1] = { n = n, turn = R.chance(0.8) }
    i = i + n
  end
  return ops, stream, writes
end

---------------------------------------------------------------------------
-- The server side: run the script, record every call's results.

-- with_data's parser: a 2-byte big-endian length L, then L bytes.
local function with_fn(op)
  return function(p, n)
    if n < 2 then return op.nilmore and nil or 0 end
    local need = 2 + p[0] * 256 + p[1]
    if n < need then return op.nilmore and nil or 0 end
    if op.retcount then return need end
    return need, ffi.string(p + 2, need - 2)
  end
end

local function exec(c, op)
  local out = {}
  local function rec(r) out[#out + 1] = r end
  local k = op.k
  if k == "line" then
    if op.pat then rec(pack(c:receive(op.pat))) else rec(pack(c:receive())) end
  elseif k == "lines" then
    local i = 0
    for line in c:lines() do
      rec(pack(line))
      i = i + 1
      if i == op.count then break end
    end
  elseif k == "n" then
    rec(pack(c:receive(op.n, op.max and { max = op.max } or nil)))
  elseif k == "all" then
    rec(pack(c:receive(op.pat, op.max and { max = op.max } or nil)))
  elseif k == "any" then
    rec(pack(c:receiveany(op.max)))
  elseif k == "view" then
    local r
    local opts = op.max and { max = op.max } or nil
    if op.slot == 2 and opts then r = pack(c:view(op.min, opts)) else r = pack(c:view(op.min, nil, opts)) end
    if type(r[1]) == "cdata" then  -- (NULL, 0 for view(0) on an empty buffer)
      rec(pack("view", ffi.string(r[1], r[2]), r[2], r.n))
      rec(pack(c:consume(op.consume)))
    else
      rec(r)
    end
  elseif k == "with" then
    rec(pack(c:with_data(with_fn(op))))
  elseif k == "until" then
    local it = c:receiveuntil(op.delim, { inclusive = op.inclusive, max = op.max })
    for _, sizes in ipairs(op.parts) do
      if sizes then
        local calls, r = 0, nil
        repeat
          calls = calls + 1
          r = pack(it(sizes[(calls - 1) % #sizes + 1]))
          rec(r)
        until r[1] == nil or calls > 100000
        if r[2] ~= nil then break end
      else
        local r = pack(it())
        rec(r)
        if r[1] == nil then break end
      end
    end
  end
  return out
end

---------------------------------------------------------------------------
-- The reference model: the stream S, the read position p; each function
-- returns the expected calls of one op (a list of packed results), or
-- checks what was observed where the result depends on timing. Written
-- from docs/api.md; the bounds are those the docs state:
-- a line or receiveuntil part is "too long" when more than its limit of
-- bytes precede its terminator (a line's "\r" counts, as it is buffered);
-- without a terminator before EOF, when more than the limit can no longer
-- be part of one (the last #delimiter-1 bytes could begin a delimiter).

local function model(S, lim)
  local M = { p = 1 }
  local LM, MR = lim.line_max, lim.max_receive

  local function avail() return #S - M.p + 1 end
  local function take(n)
    local s = S:sub(M.p, M.p + n - 1)
    M.p = M.p + n
    return s
  end
  local function rest() return take(avail()) end

  function M.line()
    local j = S:find("\n", M.p, true)
    if j then
      if j - M.p > LM then return pack(nil, "too long") end
      local s = take(j - M.p + 1):sub(1, -2)
      if s:sub(-1) == "\r" then s = s:sub(1, -2) end
      return pack(s)
    end
    if avail() > LM then return pack(nil, "too long") end
    return pack(nil, "closed", rest())
  end

  -- Expected calls of op, or nil and a checker for ops that depend on timing.
  function M.expect(op)
    local k = op.k
    if k == "line" then return { M.line() } end
    if k == "lines" then
      local t = {}
      for _ = 1, op.count do
        local r = M.line()
        if r[1] == nil then break end
        t[#t + 1] = r
      end
      return t
    end
    if k == "n" then
      local n, max = math.floor(op.n), op.max or MR
      if n == 0 then return { pack("") } end
      if n > max then return { pack(nil, "too large") } end
      if avail() >= n then return { pack(take(n)) } end
      return { pack(nil, "closed", rest()) }
    end
    if k == "all" then
      if avail() > (op.max or MR) then return { pack(nil, "too large") } end
      return { pack(rest()) }
    end
    if k == "until" then
      local t = {}
      local d, dlen = op.delim, #op.delim
      local max = op.max or LM
      for _, sizes in ipairs(op.parts) do
        local j = S:find(d, M.p, true)
        if not sizes then
          if j then
            if j - M.p > max then t[#t + 1] = pack(nil, "too long"); break end
            local part = take(j - M.p + dlen)
            t[#t + 1] = pack(op.inclusive and part or part:sub(1, -dlen - 1))
          else
            if avail() - dlen + 1 > max then t[#t + 1] = pack(nil, "too long")
            else t[#t + 1] = pack(nil, "closed", rest()) end
            break
          end
        else
          local calls = 0
          local function size()
            calls = calls + 1
            return sizes[(calls - 1) % #sizes + 1]
          end
          if j then
            local part = take(j - M.p + dlen)
            if not op.inclusive then part = part:sub(1, -dlen - 1) end
            local i = 1
            while i <= #part do
              local s = size()
              t[#t + 1] = pack(part:sub(i, i + s - 1))
              i = i + s
            end
            t[#t + 1] = pack(nil, nil)
          else
            -- pieces while they cannot hold the start of a delimiter
            while true do
              local s = sizes[calls % #sizes + 1]
              if avail() - dlen + 1 < s then break end
              size()
              t[#t + 1] = pack(take(s))
            end
            t[#t + 1] = pack(nil, "closed", rest())
            break
          end
        end
      end
      return t
    end
    return nil
  end

  -- The ops whose results depend on arrival timing: check got (the calls
  -- recorded) against what the docs allow, and follow it. Returns nil or a
  -- description of what was expected.
  function M.check(op, got)
    local k = op.k
    local r = got[1]
    if k == "any" then
      if avail() == 0 then
        if #got == 1 and r.n == 2 and r[1] == nil and r[2] == "closed" then return nil end
        return "nil, \"closed\" (at EOF, nothing buffered)"
      end
      local max = math.min(math.floor(op.max), avail())
      if #got == 1 and r.n == 1 and type(r[1]) == "string" and #r[1] >= 1 and #r[1] <= max
        and r[1] == S:sub(M.p, M.p + #r[1] - 1) then
        take(#r[1])
        return nil
      end
      return ("1..%d bytes, a prefix of %q"):format(max, S:sub(M.p, M.p + max - 1))
    end
    if k == "view" then
      local min = math.ceil(op.min)
      if min > (op.max or MR) then
        if #got == 1 and r.n == 2 and r[1] == nil and r[2] == "too large" then return nil end
        return "nil, \"too large\""
      end
      if avail() < min then
        if #got == 1 and r.n == 2 and r[1] == nil and r[2] == "closed" then return nil end
        return "nil, \"closed\" (EOF before min bytes)"
      end
      if #got == 2 and r[1] == "view" and r.n == 4 and r[4] == 2 and #r[2] == r[3]
        and #r[2] >= min and r[2] == S:sub(M.p, M.p + #r[2] - 1)
        and got[2].n == 1 and got[2][1] == true then
        take(op.consume)
        return nil
      end
      return ("ptr, len >= %d (a prefix of %q), then consume(%d) == true"):format(
        min, S:sub(M.p, M.p + min - 1), op.consume)
    end
    if k == "with" then
      local a = avail()
      if a == 0 then
        if #got == 1 and r.n == 2 and r[1] == nil and r[2] == "closed" then return nil end
        return "nil, \"closed\""
      end
      local need = a >= 2 and 2 + S:byte(M.p) * 256 + S:byte(M.p + 1) or math.huge
      if need > a then
        local why = a >= LM and "too long" or "closed"
        if #got == 1 and r.n == 2 and r[1] == nil and r[2] == why then return nil end
        return ("nil, %q (the stream ends inside a message)"):format(why)
      end
      local want = op.retcount and need or S:sub(M.p + 2, M.p + need - 1)
      if #got == 1 and r.n == 1 and r[1] == want then
        take(need)
        return nil
      end
      -- past line_max: the docs bound what is buffered for one message,
      -- but a single arrival can complete it first
      if need > LM and #got == 1 and r.n == 2 and r[1] == nil and r[2] == "too long" then
        return nil
      end
      return ("%s%s"):format(type(want) == "string" and ("%q"):format(want) or tostring(want),
        need > LM and " or nil, \"too long\"" or "")
    end
    error("no model for " .. k)
  end
  return M
end

---------------------------------------------------------------------------
-- Printing.

local function show(v)
  if type(v) ~= "string" then return tostring(v) end
  local s = #v > 80 and (v:sub(1, 40) .. "..." .. v:sub(-30)) or v
  s = s:gsub("[%c\128-\255\"\\]", function(ch) return ("\\%d"):format(ch:byte()) end)
  return ("\"%s\"%s"):format(s, #v > 80 and ("(%d bytes)"):format(#v) or "")
end

local function show_call(r)
  if r.n == 0 then return "(nil)" end
  local t = {}
  for i = 1, r.n do t[i] = show(r[i]) end
  return "(" .. table.concat(t, ", ") .. ")"
end

local function show_op(op)
  local t = {}
  for _, key in ipairs({ "pat", "n", "count", "max", "min", "consume", "delim", "inclusive",
    "retcount", "nilmore", "slot" }) do
    if op[key] ~= nil then t[#t + 1] = key .. "=" .. show(op[key]) end
  end
  if op.parts then
    local p = {}
    for i, sizes in ipairs(op.parts) do p[i] = sizes and table.concat(sizes, ",") or "whole" end
    t[#t + 1] = "parts=" .. table.concat(p, "|")
  end
  return op.k .. "(" .. table.concat(t, " ") .. ")"
end

local function show_calls(list)
  local t = {}
  for i, r in ipairs(list) do t[i] = show_call(r) end
  return "{" .. table.concat(t, " ") .. "}"
end

-- The index of the first call that differs, or nil.
local function first_diff(a, b)
  for i = 1, math.max(#a, #b) do
    local x, y = a[i], b[i]
    if not x or not y or x.n ~= y.n then return i end
    for j = 1, x.n do if x[j] ~= y[j] then return i end end
  end
  return nil
end

-- Compare one seed's results with the model: nil, or the first divergence.
local function verify(ops, stream, results, lim, tally)
  local M = model(stream, lim)
  for i, op in ipairs(ops) do
    local got = results[i]
    if got == nil then return ("op %d %s: no result (the server ended early)"):format(i, show_op(op)) end
    if got.raised then
      return ("op %d %s: raised %s"):format(i, show_op(op), tostring(got.raised))
    end
    local p0 = M.p
    local want = M.expect(op)
    if want then
      local k = first_diff(want, got)
      if k then
        return ("op %d %s at stream offset %d, call %d (of %d expected, %d made): expected %s, got %s")
          :format(i, show_op(op), p0 - 1, k, #want, #got, want[k] and show_call(want[k]) or "no call",
            got[k] and show_call(got[k]) or "no call")
      end
    else
      local bad = M.check(op, got)
      if bad then
        return ("op %d %s at stream offset %d: expected %s, got %s"):format(i, show_op(op),
          p0 - 1, bad, show_calls(got))
      end
    end
    for _, r in ipairs(got) do
      local key = op.k .. ":" .. (r[1] == nil and tostring(r[2]) .. (r.n == 3 and #r[3] > 0
        and "+partial" or "") or "ok")
      tally[key] = (tally[key] or 0) + 1
    end
  end
  return nil
end

---------------------------------------------------------------------------
-- One configuration: every seed over one worker, one connection per seed.

-- One configuration: every seed over one worker, a connection per seed,
-- cfg.parallel of them at a time (default 1). The client first sends the
-- seed as 10 digits, so the handler knows its script.
local function fuzz(cfg, seeds)
  local lim = { line_max = cfg.line_max, max_receive = cfg.max_receive }
  local ropts = { timeout = math.max(30, #seeds * 0.2), read_timeout = 5000, send_timeout = 5000 }
  for k, v in pairs(cfg) do if k ~= "name" and k ~= "parallel" and k ~= "expect" then ropts[k] = v end end
  local failures, tally = {}, {}
  support.run(function()
    local jobs = {}
    local lst, port = support.server(function(c)
      local j = jobs[tonumber(c:receive(10))]
      local res = {}
      for i, op in ipairs(j.ops) do
        local ok, r = pcall(exec, c, op)
        if not ok then res[i] = { raised = r }; break end
        res[i] = r
      end
      c:close()
      j.results = res
      j.done.set()
    end)
    local function one(seed)
      local ops, stream, writes = generate(seed, lim)
      local job = { ops = ops, done = support.event() }
      jobs[seed] = job
      local c = support.connect(port)
      local i = 0
      if c:send(("%010d"):format(seed)) then
        for _, w in ipairs(writes) do
          if not c:send(stream:sub(i + 1, i + w.n)) then break end
          i = i + w.n
          if w.turn then
            if not c:flush() then break end
            ringline.sleep(0)
          end
        end
      end
      c:flush()
      c:close()
      job.done.wait()
      jobs[seed] = nil
      local bad = verify(ops, stream, job.results, lim, tally)
      if bad then
        failures[#failures + 1] = ("seed %d [%s]: %s\n  (stream %d bytes, %d writes; rerun: RINGLINE_FUZZ_SEED=%d)")
          :format(seed, cfg.name, bad, #stream, #writes, seed)
      end
    end
    local par = cfg.parallel or 1
    local tasks = {}
    for k = 1, par do
      tasks[k] = ringline.spawn(function()
        for n = k, #seeds, par do one(seeds[n]) end
      end)
    end
    for k = 1, par do assert(tasks[k]:join()) end
    local m = ringline.metrics()
    tally["metrics:recv_enobufs"], tally["metrics:recv_pauses"] = m.recv_enobufs, m.recv_pauses
    lst:close()
  end, ropts)
  table.sort(failures)
  return failures, tally
end

local function seed_list()
  local t = {}
  if ONE then return { ONE } end
  for s = 1, NSEEDS do t[s] = FIRST + s - 1 end
  return t
end

describe("hostile: receive fuzz against a reference model", function()
  it("the model agrees with the documented results on hand-made streams", function()
    local lim = { line_max = 5, max_receive = 8 }
    local function r(...) return pack(...) end
    local M = model("ab\r\ncdefgh\nxy\r\n12345\n--zz--q", lim)
    assert.are.same({ r("ab") }, M.expect({ k = "line" }))
    assert.are.same({ r(nil, "too long") }, M.expect({ k = "line" }))
    assert.are.same({ r("cdefg") }, M.expect({ k = "n", n = 5.7 }))
    assert.are.same({ r("h"), r("xy") }, M.expect({ k = "lines", count = 2 }))
    assert.are.same({ r(nil, "too large") }, M.expect({ k = "n", n = 9 }))
    assert.are.same({ r("123"), r("45"), r(nil, nil), r(nil, "closed", "zz--q") },
      M.expect({ k = "until", delim = "\n--", parts = { { 3 }, false } }))
    local m2 = model("abcdefg", lim)
    assert.are.same({ r("ab"), r("cd"), r("ef"), r(nil, "closed", "g") },
      m2.expect({ k = "until", delim = "--", parts = { { 2 } } }))
    assert.are.same({ r(nil, "closed", "") }, m2.expect({ k = "line" }))
    assert.are.same({ r("") }, m2.expect({ k = "all", pat = "*a" }))
    assert.are.same({ r("ab-"), r("-"), r(nil, nil), r("c--") },
      model("ab--c--", lim).expect({ k = "until", delim = "--", inclusive = true,
        parts = { { 3 }, false } }))
    assert.are.same({ r(nil, "too long") },
      model("abcdefg", lim).expect({ k = "until", delim = "--", parts = { false } }))
    assert.are.same({ r(nil, "closed", "abcdef") },
      model("abcdef", lim).expect({ k = "until", delim = "--", parts = { false } }))
    assert.are.same({ r(nil, "too large") }, model("abcdefghi", lim).expect({ k = "all" }))
    assert.is_nil(model("\0\3abcd", lim).check({ k = "with" }, { r("abc") }))
    assert.is_string(model("\0\3abcd", lim).check({ k = "with" }, { r("abcd") }))
    assert.is_nil(model("abc", lim).check({ k = "any", max = 2 }, { r("a") }))
    assert.is_string(model("abc", lim).check({ k = "any", max = 2 }, { r("abc") }))
  end)

  for _, cfg in ipairs(CONFIGS) do
    it(("%s: every pattern, random splits, %s"):format(ONE and ("seed " .. ONE)
      or (NSEEDS .. " seeds from " .. FIRST), cfg.name), function()
      local failures, tally = fuzz(cfg, seed_list())
      if os.getenv("RINGLINE_FUZZ_VERBOSE") then
        local keys = {}
        for key in pairs(tally) do keys[#keys + 1] = key end
        table.sort(keys)
        for _, key in ipairs(keys) do keys[_] = key .. "=" .. tally[key] end
        io.stderr:write(cfg.name, ": ", table.concat(keys, " "), "\n")
      end
      if os.getenv("RINGLINE_FUZZ_VERBOSE") then
        for _, f in ipairs(failures) do io.stderr:write(f, "\n") end
      end
      if failures[1] then
        error(("%d of %d seeds diverge from the model; the first:\n%s"):format(#failures,
          #seed_list(), failures[1]), 0)
      end
      if not ONE and NSEEDS >= 100 then
        -- the generator reaches every outcome (else the fuzz proves little)
        for _, key in ipairs({ "line:ok", "line:too long", "line:closed+partial", "lines:ok",
          "n:ok", "n:too large", "n:closed+partial", "any:ok", "until:ok", "until:nil",
          "until:too long", "view:ok", "view:too large", "with:ok", "with:too long", "all:ok",
          "all:too large" }) do
          assert(tally[key], "no " .. key .. " result in " .. NSEEDS .. " seeds")
        end
        -- and the configuration does what it is for: a full window pauses
        -- receiving, a dry ring ends receives with ENOBUFS (metrics)
        for _, key in ipairs(cfg.expect or {}) do
          assert(tally["metrics:" .. key] > 0, "metrics()." .. key .. " stayed 0")
        end
      end
    end)
  end
end)
