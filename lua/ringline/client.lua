-- ringline.client: outbound connections (ringline.connect) and name
-- resolution (ringline.resolve).
--
-- Names are resolved off the loop: rl_resolve hands the name to the
-- worker's resolver thread and the answer comes back as an inbox message
-- (RL_MSG_RESOLVED, from = our token), which the handler below turns into a
-- wake-up of the task that asked (S.resolving[token]). A task that stops
-- waiting (timeout, cancel) leaves false behind, so the late answer is
-- dropped.
--
-- A connect tries the addresses in the order the resolver gave them until
-- one connects, all within the one deadline of the call: each attempt is an
-- rl_connect whose linked timeout is the time left. Refused or unreachable
-- addresses move on to the next; a timeout or a cancel ends the call. A
-- canceled attempt is aborted in the kernel with rl_connect_cancel, whose
-- single RL_EV_CONNECTED(-ECANCELED) the dispatcher drops.
local ffi = require "ffi"
local C = require "ringline.lib"
local sched = require "ringline.sched"
local conn = require "ringline.conn"
local errors = require "ringline.errors"
local check = require "ringline.check"
local tls = require "ringline.tls"
local pool = require "ringline.pool"

local ffi_string = ffi.string
local type, tostring, tonumber, error = type, tostring, tonumber, error
local math_ceil = math.ceil
local errstr = errors.errstr
local wake = sched.wake
local wait_begin, wait_park, wait_end = sched.wait_begin, sched.wait_park, sched.wait_end

local _ = C.rl_resolve, C.rl_connect, C.rl_connect_from, C.rl_connect_cancel  -- resolved at load, not in a trace

local MSG_RESOLVED = C.RL_MSG_RESOLVED
local RESET = C.RL_CLOSE_RESET
local U32MAX = 0xffffffff
local EAFNOSUPPORT = errors.EAFNOSUPPORT

-- The options of connect, one entry each (ringline.check: true = valid, a
-- string = refused with that reason). TLS is asked for with ssl only: the
-- flat names of other APIs are refused, so a connection asked to be
-- encrypted never goes out in clear.
local FLAT = "not supported (use ssl = { ... }; the connection would be plaintext)"
local VALID = {
  timeout = true,           -- seconds for the whole call (resolve + connect + handshake)
  bind = true,              -- the local address
  ssl = true,               -- true or { verify, server_name, ca }: TLS (ringline.tls)
  pool = true,              -- the keep-alive pool's name (ringline.pool); default host:port
  pool_size = true,         -- its size (created now if it does not exist)
  backlog = true,           -- connects queued when pool_size are open (bounds them)
  ssl_verify = FLAT, server_name = FLAT, ssl_ca = FLAT, ssl_cert = FLAT, ssl_key = FLAT,
}

local M = {}
M.VALID = VALID

-- A misuse raises at the user's line (ringline.connect tail-calls connect
-- below, so a fixed level would name no line); lvl is not needed.
local function misuse(msg)
  error("ringline: " .. msg, errors.caller_level())
end

-- The resolver's answer, an inbox message of kind RL_MSG_RESOLVED from
-- "worker" tok (the resolve's token).
local function on_resolved(S, from, ptr, len)
  local r = S.resolving
  local t = r and r[from]
  if t == nil then return end
  r[from] = nil
  if t then
    t.rres = ffi_string(ptr, len)
    wake(S, t, nil)
  end
end

-- RL_EV_CONNECTED: a connect attempt ended (res: 0 or a negative errno).
local function on_connected(S, ev)
  local tok = ev.data
  local t = S.connecting[tok]
  S.connecting[tok] = nil
  if t then
    -- a task, or an adoption's record (ringline.exec: a process's streams
    -- are adopted together, each its own token) whose task is `adopter`
    t.cres, t.cslot, t.cgen = ev.res, ev.slot, ev.gen
    wake(S, t.adopter or t, nil)
  elseif ev.res >= 0 then
    -- Nobody waits any more (the connecting task was canceled and the
    -- connect completed before rl_connect_cancel reached it): drop it.
    C.rl_conn_close(S.w, ev.slot, ev.gen, RESET)
  end
end

-- ringline (init.lua) installs this module's event and message handler
-- (ringline.sched lists them).
function M.attach(sched_)
  sched_.on_event(C.RL_EV_CONNECTED, on_connected)
  sched_.on_message(MSG_RESOLVED, on_resolved)
end

local addr_errstr = errors.addr_errstr
M.addr_errstr = addr_errstr

-- A numeric address the core takes as it is (names go to the resolver).
local function numeric(host)
  return host:find(":", 1, true) or host:match("^%d+%.%d+%.%d+%.%d+$")
end
M.numeric = numeric

-- host:port in the core's address syntax.
local function join_addr(host, port)
  if host:find(":", 1, true) then return "[" .. host .. "]:" .. port end
  return host .. ":" .. port
end
M.join_addr = join_addr

-- "[v6]" -> "v6"; anything else unchanged.
local function unbracket(host)
  return host:match("^%[(.*)%]$") or host
end
M.unbracket = unbracket

-- Resolve host on the resolver thread; the running task t waits (at most
-- timeout seconds, if given). Returns an array of numeric addresses, or
-- nil and "<host> could not be resolved (<resolver message>)", "timeout"
-- or "canceled".
-- wait_park's ready for a resolve: the answer came.
local function resolved(t) return t.rres end

local function resolve(S, t, host, family, timeout)
  local w = sched.start(S)
  local ok, err = wait_begin(S, t, timeout)
  if not ok then return nil, err end
  local tok = (S.rtok or 0) + 1
  if tok > U32MAX then tok = 1 end
  S.rtok = tok
  local rc = C.rl_resolve(w, host, family, tok)
  if rc < 0 then
    wait_end(S, t)
    return nil, host .. " could not be resolved (" .. errstr(rc) .. ")"
  end
  local r = S.resolving
  if not r then r = {}; S.resolving = r end
  r[tok] = t
  t.rres = nil
  local why = wait_park(S, t, resolved, t)
  wait_end(S, t)
  local res = t.rres
  t.rres = nil
  if why then
    if r[tok] == t then r[tok] = false end
    return nil, why
  end
  if res:sub(1, 1) == "!" then
    return nil, host .. " could not be resolved (" .. res:sub(2) .. ")"
  end
  local list = {}
  for a in res:gmatch("[^\n]+") do list[#list + 1] = a end
  return list
end
M.resolve = resolve

-- wait_park's ready for a connect attempt: its completion came.
local function connected(t) return t.cres ~= nil end

-- One connect attempt to addr (from the local address from, if given) with
-- a linked timeout of ms (0 = none). Returns the connection, or nil, err
-- and whether the call must end there (a timeout or a cancel) rather than
-- try the next address.
local function attempt(S, t, w, addr, from, ms)
  local tok = S.ctok + 1
  if tok > U32MAX then tok = 1 end
  S.ctok = tok
  local rc
  if from then
    rc = C.rl_connect_from(w, addr, from, ms, tok)
  else
    rc = C.rl_connect(w, addr, ms, tok)
  end
  if rc < 0 then return nil, addr_errstr(rc), false end
  S.connecting[tok] = t   -- no deadline of ours: the kernel's linked timeout is it
  t.cres = nil
  local why = wait_park(S, t, connected, t)
  local res, slot, gen = t.cres, t.cslot, t.cgen
  t.cres, t.cslot, t.cgen = nil, nil, nil
  if why then
    if res then
      -- connected in the same batch as the cancel: not wanted any more
      if res >= 0 then C.rl_conn_close(w, slot, gen, RESET) end
    else
      -- Still in progress: abort it in the kernel. Its one RL_EV_CONNECTED
      -- (-ECANCELED, or a success that got there first) finds no waiter
      -- and the dispatcher drops it.
      S.connecting[tok] = nil
      C.rl_connect_cancel(w, tok)
    end
    return nil, why, true
  end
  if res < 0 then return nil, errstr(res), res == -errors.ETIMEDOUT end
  return conn.new(S, slot, gen)
end

-- opts.bind -> host, port: "host", "host:port", "[v6]" or "[v6]:port"
-- (a bare IPv6 address takes no port); port 0 = any.
local function split_bind(b)
  local h, p = b:match("^%[(.+)%]:(%d+)$")
  if not h then h, p = b:match("^([^:]+):(%d+)$") end
  if not h then return unbracket(b), 0 end
  p = tonumber(p)
  if p > 65535 then misuse("ringline.connect: opts.bind: bad port in " .. b) end
  return h, p
end

-- The local address to bind for the destination address dest (same
-- family), from the bind host's addresses; nil and an error if none fits.
local function bind_for(dest, hosts, port)
  local v6 = dest:sub(1, 1) == "["
  for i = 1, #hosts do
    local h = hosts[i]
    if (h:find(":", 1, true) ~= nil) == v6 then return join_addr(h, port) end
  end
  return nil, errstr(-EAFNOSUPPORT)
end

-- connect(S, host, port, opts): "unix:/path", IPv4, IPv6 ("::1" or
-- "[::1]") or a name; opts.timeout in seconds for the whole call (the
-- connect_timeout key's when not given; 0 = no limit);
-- opts.bind the local address (a unix path for unix sockets).
function M.connect(S, host, port, opts)
  if type(host) ~= "string" or host == "" then misuse("ringline.connect: host must be a string") end
  check.options(opts, VALID, "ringline.connect")
  local unix = host:sub(1, 5) == "unix:"
  if not unix and (type(port) ~= "number" or port < 0 or port > 65535 or port % 1 ~= 0) then
    misuse("ringline.connect: bad port " .. tostring(port))
  end
  local timeout = check.seconds(opts and opts.timeout, "ringline.connect: opts.timeout")
  -- not given: the run's default (connect_timeout, ms; 0 = none)
  if timeout == nil then timeout = S.connect_timeout / 1000 end
  local bind = opts and opts.bind
  if bind ~= nil and (type(bind) ~= "string" or bind == "") then
    misuse("ringline.connect: opts.bind must be an address string")
  end
  local ssl = tls.client_opts(opts and opts.ssl, host, "ringline.connect")
  local pname, psize, pbacklog = opts and opts.pool, opts and opts.pool_size, opts and opts.backlog
  if pname ~= nil and (type(pname) ~= "string" or pname == "") then
    misuse("ringline.connect: opts.pool must be a non-empty string")
  end
  if psize ~= nil and (type(psize) ~= "number" or psize < 1 or psize % 1 ~= 0) then
    misuse("ringline.connect: opts.pool_size must be an integer >= 1")
  end
  if pbacklog ~= nil and (type(pbacklog) ~= "number" or pbacklog < 0 or pbacklog % 1 ~= 0) then
    misuse("ringline.connect: opts.backlog must be an integer >= 0")
  end
  local bunix = bind and (unix or bind:sub(1, 5) == "unix:")
  local bh, bport
  if bind and not bunix then bh, bport = split_bind(bind) end
  if timeout == 0 then timeout = nil end
  local t = sched.current(S, "ringline.connect")
  local w = sched.start(S)
  local deadline = timeout and C.rl_worker_now(w) + timeout
  -- The keep-alive pool: an idle connection of the key, or the right to
  -- open one (a slot, with backlog), or a wait for either.
  local key = pname or (unix and host or join_addr(unbracket(host), port))
  if ssl and not pname then key = key .. " tls " .. tostring(ssl.server_name) end
  local p = pool.get(S, key, psize, pbacklog)
  while p do
    local left = deadline and deadline - C.rl_worker_now(w)
    if left and left <= 0 then return nil, "timeout" end
    local pc, perr = pool.acquire(S, t, p, left)
    if pc == nil then return nil, perr end
    if not pc then break end        -- a slot: open a new one
    if not ssl or pc.tls == true then return pc end
    pc:close()  -- plaintext, in a pool named by opts.pool used with ssl: never handed over
  end
  local c, err = M.open(S, t, w, host, port, bind, ssl, deadline, timeout, unix, bh, bport)
  if p then
    if c then pool.adopt(p, c) else pool.release_slot(p) end
  end
  if c then c.pool_key = key end
  return c, err
end

function M.open(S, t, w, host, port, bind, ssl, deadline, timeout, unix, bh, bport)
  local addrs
  if unix then
    addrs = { host }
  else
    host = unbracket(host)
    if numeric(host) then
      addrs = { join_addr(host, port) }
    else
      local list, err = resolve(S, t, host, 0, timeout)
      if not list then return nil, err end
      addrs = list
      for i = 1, #list do addrs[i] = join_addr(list[i], port) end
    end
  end
  local bhosts
  if bh then
    if numeric(bh) then
      bhosts = { bh }
    else
      local left = deadline and deadline - C.rl_worker_now(w)
      if left and left <= 0 then return nil, "timeout" end
      local list, err = resolve(S, t, bh, 0, left)
      if not list then return nil, err end
      bhosts = list
    end
  end
  local err
  for i = 1, #addrs do
    local ms = 0
    if deadline then
      local left = deadline - C.rl_worker_now(w)
      if left <= 0 then return nil, "timeout" end
      ms = math_ceil(left * 1000)
    end
    local from, c, e, final = nil, nil, nil, nil
    if bhosts then
      from, e = bind_for(addrs[i], bhosts, bport)
    elseif bind then
      from = bind                       -- unix: the path as given
    end
    if from or not bind then
      c, e, final = attempt(S, t, w, addrs[i], from, ms)
    end
    if c then
      sched.own(t, c) -- the connecting task's: closed when it ends
      if ssl then
        local ctx, ok
        ctx, e = tls.client_ctx(S, ssl)
        if ctx then
          ok, e = tls.handshake(S, t, c, ctx, ssl.server_name or nil,
                                deadline and deadline - C.rl_worker_now(w), ssl.session)
        end
        if not ok then
          c:close()
          return nil, e
        end
      end
      return c
    end
    if final then return nil, e end
    err = e
  end
  return nil, err
end

return M
