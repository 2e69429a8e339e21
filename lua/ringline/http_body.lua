-- ringline.http_body: reading a request body for ringline.http (Content-Length
-- and chunked, trailers read and ignored), bounded by max_body_bytes, through
-- conn:view/consume.
--
-- The state lives in the connection's table st (one request is read at a
-- time): st.bkind (0 none, 1 length, 2 chunked), st.bleft (bytes left of the
-- body or of the current chunk), st.cstate (chunked: SIZE, DATA, CRLF,
-- TRAILER), st.btotal, st.bdone, st.bfail (a status when the body was bad:
-- 400, 413; the connection must then close).
local ffi = require "ffi"
local parse = require "ringline.http_parse"

local ffi_string = ffi.string
local chunk_size, trailer_line = parse.chunk_size, parse.trailer_line

local M = {}

local SIZE, DATA, CRLF, TRAILER = 1, 2, 3, 4
local CONTINUE = "HTTP/1.1 100 Continue\r\n\r\n"

-- Sets st up for a request's body.
function M.start(st, clen, chunked, expect)
  st.btotal, st.bfail = 0, nil
  if chunked then
    st.bkind, st.cstate, st.bleft, st.bdone = 2, SIZE, 0, false
  elseif clen > 0 then
    st.bkind, st.bleft, st.bdone = 1, clen, false
  else
    st.bkind, st.bleft, st.bdone = 0, 0, true
  end
  st.expect = expect and not st.bdone
end

local function fail(st, status, err)
  st.bfail, st.bdone = status, true
  return nil, err
end

-- The next piece of the body: a string (or, with discard, a byte count),
-- nil at the end, or nil, err.
local function piece(st, discard)
  if st.bdone then return nil end
  local conn = st.conn
  if st.expect then
    -- the client waits for this before it sends the body
    st.expect = false
    if not st.res_started then
      st.out:put(CONTINUE)
      local ok, err = st.flush(st)
      if not ok then return fail(st, nil, err) end
    end
  end
  while true do
    local p, len, err
    if st.bkind == 1 or st.cstate == DATA then
      p, len, err = conn:view(1)
      if not p then return fail(st, nil, err) end
      local take = st.bleft
      if take > len then take = len end
      local s = discard and take or ffi_string(p, take)
      conn:consume(take)
      st.bleft = st.bleft - take
      if st.bleft == 0 then
        if st.bkind == 1 then st.bdone = true else st.cstate = CRLF end
      end
      return s
    elseif st.cstate == CRLF then
      p, len, err = conn:view(2)
      if not p then return fail(st, nil, err) end
      if p[0] ~= 13 or p[1] ~= 10 then return fail(st, 400, "bad chunk") end
      conn:consume(2)
      st.cstate = SIZE
    else
      -- a size line or a trailer line: wait until it is whole
      local need = 1
      while true do
        p, len, err = conn:view(need)
        if not p then return fail(st, nil, err) end
        local n, used
        if st.cstate == SIZE then
          n, used = chunk_size(p, len)
        else
          used = trailer_line(p, len)
          n = used
          if n == nil and len >= st.max_header then n = false end
        end
        if n == false then return fail(st, 400, "bad chunk") end
        if n ~= nil then
          if st.cstate == SIZE then
            conn:consume(used)
            if n == 0 then
              st.cstate, st.btotal = TRAILER, 0     -- btotal now counts trailer bytes
            else
              if st.btotal + n > st.max_body then return fail(st, 413, "too large") end
              st.btotal = st.btotal + n
              st.bleft, st.cstate = n, DATA
            end
          else
            conn:consume(used)
            if used == 2 then
              st.bdone = true
              return nil
            end
            st.btotal = st.btotal + used
            if st.btotal > st.max_header then return fail(st, 431, "too large") end
          end
          break
        end
        need = len + 1
      end
    end
  end
end
M.piece = piece

-- The whole body as one string ("" when there is none), or nil, err.
function M.read_all(st)
  local parts, n = nil, 0
  local first
  while true do
    local s, err = piece(st, false)
    if not s then
      if err then return nil, err end
      break
    end
    if not first then
      first = s
    else
      if not parts then parts = { first } n = 1 end
      n = n + 1
      parts[n] = s
    end
  end
  if parts then return table.concat(parts) end
  return first or ""
end

-- Reads and drops what is left of the body; true when all of it was read.
function M.drain(st)
  while true do
    local s, err = piece(st, true)
    if not s then return err == nil and st.bfail == nil end
  end
end

return M
