-- ringline.resp: the Redis protocol (RESP2), server side.
--
--   local resp = require "ringline.resp"
--   local r = resp.reader(conn)
--   local cmd, err = r:read()          -- { "SET", "k", "v" } or nil, err
--   conn:send(resp.bulk(v))            -- encoders return what conn:send takes
--
-- The reader parses the receive buffer in place (conn:view, then
-- conn:consume of what whole commands used): one view, as many complete
-- commands as it holds, each argument made a Lua string once (ffi.string);
-- line ends are found with memchr, bulk payloads are skipped by their
-- length, never scanned. A command that arrives in pieces is parsed
-- where it stopped, never from its start again.
--
-- The parse follows redis-server (networking.c, processMultibulkBuffer and
-- processInlineBuffer; 7.0): a buffer that starts with '*' is an array of
-- bulk strings, anything else an inline command (a line split like
-- sdssplitargs, with "double" and 'single' quotes); counts are read as
-- string2ll reads them (no '+', no leading zeros, "-0" refused); the two
-- bytes after a count's '\r' and after a bulk's payload are skipped unseen,
-- as redis does; "*0" / "*-1" and empty inline lines are no command. A
-- protocol error answers "-ERR Protocol error: <why>" with redis-server's
-- words, after the replies to the commands before it, and closes the
-- connection.
--
-- Bounds: a bulk string longer than max_bulk_bytes and an array longer than
-- max_array_len are protocol errors (redis' "invalid bulk length" /
-- "invalid multibulk length"); a line without its end past
-- max_inline_bytes (redis' PROTO_INLINE_MAX_SIZE, 64 KiB) too. A whole
-- command must fit in the connection's receive window (max_receive, or the
-- reader's max_command_bytes): a bigger one closes the connection without
-- a reply, as redis-server's client-query-buffer-limit does. At most
-- BATCH commands are parsed from one view, so a flood of tiny pipelined
-- commands never turns a buffer into millions of tables at once.
local ffi = require "ffi"
local ringline = require "ringline"

local ffi_string, ffi_cast = ffi.string, ffi.cast
local type, tostring, tonumber, error, setmetatable = type, tostring, tonumber, error, setmetatable
local math_floor, math_huge = math.floor, math.huge
local string_format, string_byte, string_char = string.format, string.byte, string.char
local table_concat = table.concat
local new_tab = require "table.new"

-- memchr under a private name (asm label): never clashes with another
-- module's declaration of it.
ffi.cdef [[
const uint8_t *ringline_resp_memchr(const uint8_t *s, int c, size_t n) __asm__("memchr");
]]
local libc = ffi.C
local memchr = libc.ringline_resp_memchr
local _ = memchr   -- resolved now, not inside a trace

local CR, LF, STAR, DOLLAR, MINUS = 13, 10, 42, 36, 45
local INT_MAX = 2147483647
local MiB = 1048576
local DEFAULT_MAX_BULK = 512 * MiB         -- redis' proto-max-bulk-len
local DEFAULT_MAX_ARRAY = MiB              -- arguments of one command
local DEFAULT_MAX_INLINE = 65536           -- redis' PROTO_INLINE_MAX_SIZE
local BATCH = 1024                         -- commands parsed from one view

local M = {}

local function misuse(msg, lvl)
  error("ringline.resp: " .. msg, lvl + 1)
end

------------------------------------------------------------------------
-- Numbers as redis' string2ll reads them
------------------------------------------------------------------------

-- The value of s as string2ll accepts it (an optional '-', then "0" alone
-- or a digit 1-9 and more digits, within the 64-bit range), else nil.
-- Exact up to 2^53; past that the magnitude is approximate (the callers
-- only compare it with bounds far below).
local function str2ll(s)
  local n = #s
  if n == 0 or n >= 21 then return nil end
  if s == "0" then return 0 end
  local neg = string_byte(s, 1) == MINUS
  local d = neg and s:sub(2) or s
  if not d:find("^[1-9]%d*$") or #d > 19 then return nil end
  if #d == 19 and d > (neg and "9223372036854775808" or "9223372036854775807") then
    return nil                              -- same length: string order is numeric order
  end
  local v = tonumber(d)
  return neg and -v or v
end
M._str2ll = str2ll   -- for the specs

------------------------------------------------------------------------
-- Inline commands: one line split as sdssplitargs splits it
------------------------------------------------------------------------

local function is_space(c)   -- isspace() in the C locale
  return c == 32 or (c >= 9 and c <= 13)
end

local function hexval(c)
  if c >= 48 and c <= 57 then return c - 48 end
  if c >= 97 and c <= 102 then return c - 87 end
  if c >= 65 and c <= 70 then return c - 55 end
  return nil
end

local ESC = { [110] = "\n", [114] = "\r", [116] = "\t", [98] = "\b", [97] = "\a" }

-- A line with quotes: sdssplitargs' state machine, byte by byte (only
-- lines that hold a quote come here). nil when the quotes are unbalanced
-- or a closing quote is not followed by a space or the end.
local function split_quoted(line)
  local args, nargs = {}, 0
  local i, n = 1, #line
  while true do
    while i <= n and is_space(string_byte(line, i)) do i = i + 1 end
    if i > n then return args end
    local cur, nc = {}, 0
    local inq, insq, done = false, false, false
    while not done do
      local c = string_byte(line, i)        -- nil past the end
      if inq then
        if c == nil then return nil end
        if c == 92 and string_byte(line, i + 1) == 120 and i + 3 <= n
           and hexval(string_byte(line, i + 2)) and hexval(string_byte(line, i + 3)) then
          nc = nc + 1
          cur[nc] = string_char(hexval(string_byte(line, i + 2)) * 16 + hexval(string_byte(line, i + 3)))
          i = i + 3
        elseif c == 92 and i < n then
          i = i + 1
          local e = string_byte(line, i)
          nc = nc + 1
          cur[nc] = ESC[e] or string_char(e)
        elseif c == 34 then
          local nx = string_byte(line, i + 1)
          if nx and not is_space(nx) then return nil end
          done = true
        else
          nc = nc + 1
          cur[nc] = string_char(c)
        end
      elseif insq then
        if c == nil then return nil end
        if c == 92 and string_byte(line, i + 1) == 39 then
          i = i + 1
          nc = nc + 1
          cur[nc] = "'"
        elseif c == 39 then
          local nx = string_byte(line, i + 1)
          if nx and not is_space(nx) then return nil end
          done = true
        else
          nc = nc + 1
          cur[nc] = string_char(c)
        end
      else
        if c == nil or c == 32 or c == 10 or c == 13 or c == 9 then
          done = true
        elseif c == 34 then
          inq = true
        elseif c == 39 then
          insq = true
        else
          nc = nc + 1
          cur[nc] = string_char(c)
        end
      end
      i = i + 1
    end
    nargs = nargs + 1
    args[nargs] = table_concat(cur)
  end
end

-- The arguments of an inline line (without its line end), or nil for
-- unbalanced quotes. A token starts at a byte that is not isspace() and
-- ends at a space, tab, CR or LF.
local function split_inline(line)
  if line:find("[\"']") then return split_quoted(line) end
  local args, n = {}, 0
  for w in line:gmatch("[^%s][^ \t\r\n]*") do
    n = n + 1
    args[n] = w
  end
  return args
end
M._split_inline = split_inline   -- for the specs

------------------------------------------------------------------------
-- The reader
------------------------------------------------------------------------

local Reader = {}
Reader.__index = Reader
Reader.__name = "ringline.resp.reader"

-- "expected '$', got 'x'": redis prints the byte as it is, but a CR or LF
-- as a space (its error replies never hold a line end).
local function expected_dollar(c)
  if c == CR or c == LF then c = 32 end
  return "expected '$', got '" .. string_char(c) .. "'"
end

-- Parses p[0, len) from the reader's saved state. Fills r.q[1..n] with
-- the complete commands. Returns n, the bytes they used (to consume), the
-- buffer length needed to go on (after that consume), and the protocol
-- error's words when the bytes after the n commands are not RESP.
local function parse(r, p, len)
  local q = r.q
  local n = 0
  local start = 0                  -- where the current command begins
  local pos = r.pos                -- the parse cursor
  local cmd, nargs, argi, bulklen = r.cmd, r.nargs, r.argi, r.bulklen
  local max_bulk, max_inline = r.max_bulk, r.max_inline
  local need, perr
  while true do
    if not cmd then
      -- between commands
      if pos >= len then need = len + 1; break end
      if n >= BATCH then need = pos + 1; break end   -- more is buffered: parse it next time
      if p[pos] == STAR then
        -- "*<count>\r\n": digits read on the way to the CR (the common
        -- case: 1..10 digits, no sign); anything else takes the slow path
        local v, i = 0, pos + 1
        while i < len do
          local c = p[i]
          if c < 48 or c > 57 then break end
          v = v * 10 + (c - 48)
          i = i + 1
        end
        local nd = i - pos - 1
        if i < len and p[i] == CR and nd >= 1 and nd <= 10 and (p[pos + 1] ~= 48 or nd == 1) then
          if i + 1 >= len then need = len + 1; break end
        else
          local e = memchr(p + pos, CR, len - pos)
          if e == nil then
            if len - pos > max_inline then perr = "too big mbulk count string" end
            need = len + 1
            break
          end
          i = e - p
          if i + 1 >= len then need = len + 1; break end
          v = str2ll(ffi_string(p + pos + 1, i - pos - 1))
          if v == nil then perr = "invalid multibulk length"; break end
        end
        if v > INT_MAX or v > r.max_array then perr = "invalid multibulk length"; break end
        pos = i + 2
        if v <= 0 then
          start = pos                        -- "*0", "*-1": no command
        else
          nargs, argi, bulklen = v, 0, -1
          cmd = new_tab(v < 16 and v or 16, 0)
        end
      else
        -- an inline command: one line
        local e = memchr(p + pos, LF, len - pos)
        if e == nil then
          if len - pos > max_inline then perr = "too big inline request" end
          need = len + 1
          break
        end
        local nl = e - p
        local le = nl
        if le > pos and p[le - 1] == CR then le = le - 1 end
        local args = split_inline(ffi_string(p + pos, le - pos))
        if not args then perr = "unbalanced quotes in request"; break end
        pos = nl + 1
        start = pos
        if args[1] then
          n = n + 1
          q[n] = args
        end
      end
    end
    if cmd then
      -- inside an array: its bulk strings
      local done = true
      while argi < nargs do
        if bulklen < 0 then
          local v, i = 0, pos + 1
          while i < len do
            local c = p[i]
            if c < 48 or c > 57 then break end
            v = v * 10 + (c - 48)
            i = i + 1
          end
          local nd = i - pos - 1
          if i < len and p[pos] == DOLLAR and p[i] == CR and nd >= 1 and nd <= 15
             and (p[pos + 1] ~= 48 or nd == 1) then
            if i + 1 >= len then need = len + 1; done = false; break end
          else
            local e = pos < len and memchr(p + pos, CR, len - pos) or nil
            if e == nil then
              if len - pos > max_inline then perr = "too big bulk count string" end
              need = len + 1
              done = false
              break
            end
            i = e - p
            if i + 1 >= len then need = len + 1; done = false; break end
            if p[pos] ~= DOLLAR then perr = expected_dollar(p[pos]); done = false; break end
            v = str2ll(ffi_string(p + pos + 1, i - pos - 1))
            if v == nil or v < 0 then perr = "invalid bulk length"; done = false; break end
          end
          if v > max_bulk then perr = "invalid bulk length"; done = false; break end
          pos = i + 2
          bulklen = v
        end
        if len - pos < bulklen + 2 then
          need = pos + bulklen + 2
          done = false
          break
        end
        argi = argi + 1
        cmd[argi] = ffi_string(p + pos, bulklen)
        pos = pos + bulklen + 2
        bulklen = -1
      end
      if not done then break end
      n = n + 1
      q[n] = cmd
      cmd = nil
      start = pos
    end
  end
  -- save the partial command, its positions made relative to `start`
  -- (the caller consumes what the whole commands used)
  r.cmd, r.nargs, r.argi, r.bulklen = cmd, nargs, argi, bulklen
  r.pos = pos - start
  return n, start, (need or 0) - start, perr
end
M._parse = parse   -- for the specs

-- An integer option of resp.reader: opts[name] in lo..hi, or def.
local function count(opts, name, def, lo, hi)
  local v = opts[name]
  if v == nil then return def end
  if type(v) ~= "number" or v ~= v or v < lo or v > hi or v % 1 ~= 0 then
    misuse(("reader: %s must be an integer in %d..%d, got %s"):format(name, lo, hi, tostring(v)), 3)
  end
  return v
end

-- resp.reader(conn [, opts]): a reader of the commands conn receives.
function M.reader(conn, opts)
  if type(conn) ~= "table" and type(conn) ~= "userdata" then
    misuse("reader: expected a connection", 2)
  end
  if opts ~= nil and type(opts) ~= "table" then misuse("reader: opts must be a table", 2) end
  opts = opts or {}
  for k in pairs(opts) do
    if k ~= "max_bulk_bytes" and k ~= "max_array_len" and k ~= "max_inline_bytes"
       and k ~= "max_command_bytes" then
      misuse("reader: unknown option " .. tostring(k)
        .. " (max_bulk_bytes, max_array_len, max_inline_bytes, max_command_bytes)", 2)
    end
  end
  local max_cmd = count(opts, "max_command_bytes", nil, 1, 2 ^ 30)
  local window = max_cmd or ringline.config("max_receive")
  local max_bulk = count(opts, "max_bulk_bytes", nil, 0, 2 ^ 30)
  if max_bulk == nil then
    max_bulk = DEFAULT_MAX_BULK < window and DEFAULT_MAX_BULK or window
  elseif max_bulk > window then
    misuse(("reader: max_bulk_bytes %d is more than the %d bytes a command may take "
      .. "(max_receive, or max_command_bytes)"):format(max_bulk, window), 2)
  end
  return setmetatable({
    conn = conn,
    vopts = max_cmd and { max = max_cmd } or nil,
    max_bulk = max_bulk,
    max_array = count(opts, "max_array_len", DEFAULT_MAX_ARRAY, 1, INT_MAX),
    max_inline = count(opts, "max_inline_bytes", DEFAULT_MAX_INLINE, 1, 2 ^ 30),
    q = new_tab(16, 0), qh = 1, qn = 0,     -- parsed commands not yet returned
    cmd = false, nargs = 0, argi = 0, bulklen = -1, pos = 0,   -- a partial command
    need = 1,                                -- bytes to view before parsing again
    perr = false,                            -- a protocol error after the queue
    dead = false,                            -- the error every read returns now
  }, Reader)
end

-- Answers a protocol error and closes the connection.
local function protocol_error(r)
  local why = r.perr
  r.perr = false
  r.dead = "closed"
  local conn = r.conn
  conn:send("-ERR Protocol error: ", why, "\r\n")
  conn:close()
  return nil, "protocol error", why
end

-- r:read(): the next command (an array of strings), or nil, err.
function Reader:read()
  local qh = self.qh
  if qh <= self.qn then
    local q = self.q
    local cmd = q[qh]
    q[qh] = nil
    self.qh = qh + 1
    return cmd
  end
  if self.perr then return protocol_error(self) end
  if self.dead then return nil, self.dead end
  local conn = self.conn
  while true do
    local p, len = conn:view(self.need, self.vopts)
    if not p then
      if len == "too large" then
        self.dead = "closed"
        conn:close()
      elseif len == "closed" then
        self.dead = "closed"
      end
      return nil, len
    end
    local n, used, need, perr = parse(self, p, len)
    if used > 0 then conn:consume(used) end
    self.need = need > 0 and need or 1
    if perr then self.perr = perr end
    if n > 0 then
      self.qn = n
      local q = self.q
      local cmd = q[1]
      q[1] = nil
      self.qh = 2
      return cmd
    end
    if perr then return protocol_error(self) end
  end
end

-- r:pending(): how many commands read() returns without touching the
-- connection (those already parsed).
function Reader:pending()
  return self.qn - self.qh + 1
end

------------------------------------------------------------------------
-- Encoders: what conn:send takes
------------------------------------------------------------------------

-- Cached reply lines: "$<n>\r\n" headers of bulk strings and ":<n>\r\n"
-- integers, for the small numbers most replies use.
local CACHE = 1024
local bulk_head, int_line = {}, {}
for i = 0, CACHE do
  bulk_head[i] = "$" .. i .. "\r\n"
  int_line[i] = ":" .. i .. "\r\n"
end
for i = 1, 16 do int_line[-i] = ":-" .. i .. "\r\n" end

local NULL = "$-1\r\n"
M.null = NULL

-- Strings up to this size are joined into one string (one short copy is
-- cheaper than a table and a send per part); longer ones go out as they
-- are, in an array { header, s, "\r\n" }.
local JOIN_MAX = 256

local function bulk(s)
  local ts = type(s)
  if ts ~= "string" then
    if s == nil then return NULL end
    if ts == "number" then
      s = tostring(s)
    else
      misuse("bulk: expected a string, a number or nil, got " .. ts, 2)
    end
  end
  local n = #s
  if n <= JOIN_MAX then return bulk_head[n] .. s .. "\r\n" end
  return { bulk_head[n] or ("$" .. n .. "\r\n"), s, "\r\n" }
end

M.bulk = bulk

function M.simple(s)
  if type(s) ~= "string" then misuse("simple: expected a string", 2) end
  if s:find("[\r\n]") then misuse("simple: a simple string cannot hold CR or LF", 2) end
  return "+" .. s .. "\r\n"
end

-- Error replies hold the words given ("ERR ...", "WRONGTYPE ..."); CR and
-- LF become spaces, as redis-server's addReplyError makes them (a message
-- built from what a client sent must not break the protocol).
function M.error(s)
  if type(s) ~= "string" then misuse("error: expected a string", 2) end
  if s:find("[\r\n]") then s = s:gsub("[\r\n]", " ") end
  return "-" .. s .. "\r\n"
end

-- 64-bit integers: a whole number of magnitude up to 2^63, or an int64_t /
-- uint64_t cdata (the value as it is, beyond 2^53).
local int64_t = ffi.typeof("int64_t")
local uint64_t = ffi.typeof("uint64_t")

function M.integer(n)
  if type(n) == "number" then
    local s = int_line[n]
    if s then return s end
    if n % 1 ~= 0 or n >= 2 ^ 63 or n < -2 ^ 63 then
      misuse("integer: expected a whole number in the 64-bit range, got " .. tostring(n), 2)
    end
    return string_format(":%d\r\n", n)
  end
  if type(n) == "cdata" and (ffi.istype(int64_t, n) or ffi.istype(uint64_t, n)) then
    return ":" .. tostring(n):gsub("U?LL$", "") .. "\r\n"
  end
  misuse("integer: expected a number, got " .. type(n), 2)
end

-- An array of n elements (default #t): a string or number element is a
-- bulk string, false (or nil below n) a null bulk string, a table an
-- already encoded value (resp.null, resp.bulk(s), a nested resp.array,
-- { resp.integer(5) }, ...) sent as it is.
function M.array(t, n)
  if type(t) ~= "table" then misuse("array: expected a table", 2) end
  if n == nil then
    n = #t
  elseif type(n) ~= "number" or n < 0 or n % 1 ~= 0 then
    misuse("array: bad count " .. tostring(n), 2)
  end
  local out = new_tab(n + 1, 0)
  out[1] = "*" .. n .. "\r\n"
  for i = 1, n do
    local v = t[i]
    local tv = type(v)
    if tv == "table" then
      out[i + 1] = v
    elseif v == nil or v == false then
      out[i + 1] = NULL
    elseif tv == "string" or tv == "number" then
      out[i + 1] = bulk(v)
    else
      misuse("array: element " .. i .. " is a " .. tv, 2)
    end
  end
  return out
end

return M
