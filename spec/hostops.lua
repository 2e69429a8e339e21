-- hostops: what the operations specs (reload_spec, activation_spec,
-- haproxy_spec) share: the built host, scripts written to temporary files,
-- a free port, a keep-alive load that counts failed requests, and an
-- sd_notify socket to read the host's readiness messages from.
--
-- The load: each client task sends "GET\n" and reads one reply line, over
-- and over. A request counts as failed when it gets no whole reply, with
-- one exception that every HTTP client makes (RFC 9112, 9.3.1): a request
-- sent on a reused keep-alive connection that the server closed meanwhile
-- (nothing of the reply came, the connection ended) is sent again on a new
-- connection; that is a retry, not a failure. A refused connect, a fresh
-- connection closed without a reply, a reset after part of a reply, a
-- timeout: failures.
local ffi = require "ffi"
local bit = require "bit"
local ringline = require "ringline"
local support = require "support"

local M = {}

-- These specs start servers (proc.spawn: io.popen) and read their stdout
-- in the middle of a run on purpose, a blocking moment each; the warning
-- ringline gives a script doing so is not for them.
do
  local warned = require("ringline.exec").warned
  warned["io.popen"], warned["os.execute"] = true, true
end

local root = debug.getinfo(1, "S").source:match("^@(.*)/spec/[^/]+$") or "."
if root:sub(1, 1) ~= "/" then root = os.getenv("PWD") .. "/" .. root end
M.root = root
M.proc = dofile(root .. "/bindings/test/proc.lua")
M.build = os.getenv("RINGLINE_BUILD") or (root .. "/build")
M.host = M.build .. "/bindings/ringline-lua"

pcall(ffi.cdef, [[
  struct hostops_sun { uint16_t family; char path[108]; };
  int hostops_socket(int domain, int type, int proto) __asm__("socket");
  int hostops_bind(int fd, const void *a, uint32_t len) __asm__("bind");
  long hostops_recv(int fd, void *buf, size_t len, int flags) __asm__("recv");
  int hostops_close(int fd) __asm__("close");
  int hostops_kill(int pid, int sig) __asm__("kill");
  int hostops_getpid(void) __asm__("getpid");
]])
local C = ffi.C

local tmp = {}
function M.file(text, suffix)
  local path = os.tmpname() .. (suffix or ".lua")
  M.write(path, text)
  tmp[#tmp + 1] = path
  return path
end

function M.write(path, text)
  -- a new file renamed over the old: a reader sees the old or the new
  local f = assert(io.open(path .. ".new", "wb"))
  f:write(text)
  f:close()
  assert(os.rename(path .. ".new", path))
end

function M.cleanup()
  for _, p in ipairs(tmp) do os.remove(p) end
  tmp = {}
end

-- A port nobody listens on now (the kernel's pick, released at once).
function M.free_port()
  return ringline.run(function()
    local l, port = support.server(function() end)
    l:close()
    return port
  end)
end

-- A server script: replies `version` to each line; its worker 0 prints
-- "pid N port P" once it listens. opts.ssl: { cert, key } paths.
function M.script(version, opts)
  opts = opts or {}
  local ssl = opts.ssl and ("{ ssl = { cert = %q, key = %q } }"):format(opts.ssl.cert, opts.ssl.key)
    or "nil"
  return ([[
local ringline = require "ringline"
local ffi = require "ffi"
pcall(ffi.cdef, "int getpid(void);")
%s
local l = assert(ringline.listen(os.getenv("ADDR"), function(c)
  while true do
    local line = c:receive("*l")
    if not line then return end
    c:send(%q .. "\n")
  end
end, %s))
if ringline.worker.id() == 0 then
  print("pid " .. ffi.C.getpid() .. " port " .. select(2, l:getsockname()))
end
]]):format(opts.prelude or "", version, ssl)
end

-- The same over HTTP (ringline.http): the body is `version`.
function M.http_script(version)
  return ([[
local ringline = require "ringline"
local http = require "ringline.http"
local ffi = require "ffi"
pcall(ffi.cdef, "int getpid(void);")
local l = assert(http.listen(os.getenv("ADDR"), function(req, res)
  res:finish(%q)
end))
if ringline.worker.id() == 0 then
  print("pid " .. ffi.C.getpid() .. " port " .. select(2, l:getsockname()))
end
]]):format(version)
end

-- One HTTP/1.1 request on conn: the body, or nil, err, partial (what of
-- the response came).
local function http_request(conn)
  conn:send("GET / HTTP/1.1\r\nHost: test\r\n\r\n")
  local status, err, partial = conn:receive("*l")
  if not status then return nil, err, partial end
  if not status:match("^HTTP/1%.1 200 ") then return nil, "status: " .. status, status end
  local len
  while true do
    local h, herr = conn:receive("*l")
    if not h then return nil, herr, status end
    if h == "\r" or h == "" then break end
    local n = h:lower():match("^content%-length:%s*(%d+)")
    if n then len = tonumber(n) end
  end
  if not len then return nil, "no content-length", status end
  local body, berr = conn:receive(len)
  if not body then return nil, berr, status end
  return body
end

-- Starts the host on `script` with ADDR=addr; returns the server and the
-- host's own pid (from the script's first line).
function M.spawn(script, addr, args, env, limit_s)
  local srv = M.proc.spawn(("%sADDR=%s %s %s %s"):format(env or "", addr, M.proc.quote(M.host),
    args or "", M.proc.quote(script)), limit_s or 60)
  local pid, seen = srv:expect("^pid (%d+) port %d+$")
  assert(pid, seen)
  return srv, tonumber(pid)
end

-- Sent by kill(1), a new process each time: the host takes one signal
-- sent twice by the same process within 0.25 s as one (timeout(1) sends
-- it to the program and to its group), and two reloads asked for in a row
-- must both arrive.
function M.kill(pid, sig)
  return M.sh({ "kill", "-s", sig, tostring(pid) })
end

-- Runs argv to its end: its stdout and whether it exited 0 (inside a run
-- without blocking the loop: ringline.exec_capture).
function M.sh(argv)
  if require("ringline.sched").state() then
    local out, ok = ringline.exec_capture(argv)
    return out, ok == true
  end
  local q = {}
  for i, a in ipairs(argv) do q[i] = M.proc.quote(a) end
  local p = io.popen(table.concat(q, " ") .. " 2>/dev/null; echo \"rc=$?\"")
  local out = p:read("*a")
  p:close()
  local rc = out:match("rc=(%d+)\n$")
  return out:gsub("rc=%d+\n$", ""), rc == "0"
end

-- The open descriptors of process pid (its /proc/PID/fd entries).
function M.fds(pid)
  local out = M.sh({ "ls", "/proc/" .. pid .. "/fd" })
  local n = 0
  for _ in out:gmatch("[^\n]+") do n = n + 1 end
  return n
end

-- Whether process pid runs (not gone, not a zombie).
function M.alive(pid)
  local f = io.open("/proc/" .. pid .. "/stat", "rb")
  if not f then return false end
  local st = f:read("*a")
  f:close()
  return st:match("^%d+ %b() (%a)") ~= "Z"
end

-- The load. stats: ok, fail, retried, seen[reply] = count, why (the last
-- failure), first[reply] = ringline.now() of its first answer. Returns
-- stats and a function that stops the clients and waits for them.
function M.load(port, nclients, opts)
  opts = opts or {}
  local stats = { ok = 0, fail = 0, retried = 0, seen = {}, first = {}, why = nil }
  local stop = false
  local tasks = {}
  local function client(fresh)
    local conn, reused = nil, false
    while not stop do
      if not conn then
        local err
        conn, err = ringline.connect(opts.host or "127.0.0.1", port, { timeout = 2 })
        if not conn then
          stats.fail = stats.fail + 1
          stats.why = "connect: " .. tostring(err)
        else
          conn:settimeout(3000)
          reused = false
        end
      end
      if conn then
        local line, err, partial
        if opts.http then
          line, err, partial = http_request(conn)
        else
          conn:send("GET\n")
          line, err, partial = conn:receive("*l")
        end
        if line then
          stats.ok = stats.ok + 1
          stats.seen[line] = (stats.seen[line] or 0) + 1
          if not stats.first[line] then stats.first[line] = ringline.now() end
          reused = true
          if fresh then conn:close(); conn = nil end
        else
          conn:close()
          conn = nil
          if reused and (partial == nil or partial == "") and err ~= "timeout" then
            stats.retried = stats.retried + 1
          else
            stats.fail = stats.fail + 1
            stats.why = "receive: " .. tostring(err)
          end
        end
      end
    end
    if conn then conn:close() end
  end
  for i = 1, nclients do
    tasks[#tasks + 1] = ringline.spawn(client, opts.fresh and i % 2 == 0)
  end
  return stats, function()
    stop = true
    for _, t in ipairs(tasks) do t:join() end
  end
end

-- An sd_notify socket (abstract name) to give the host as NOTIFY_SOCKET.
-- :next(limit) returns the next datagram (waiting, bounded), or nil.
function M.notify_socket()
  local name = ("hostops-%d-%d"):format(C.hostops_getpid(), math.random(1e9))
  local fd = C.hostops_socket(1, 2 + 2048 + 524288, 0)  -- AF_UNIX, SOCK_DGRAM|NONBLOCK|CLOEXEC
  assert(fd >= 0, "socket")
  local sa = ffi.new("struct hostops_sun")
  sa.family = 1
  ffi.copy(sa.path + 1, name, #name)      -- path[0] = 0: abstract
  assert(C.hostops_bind(fd, sa, 2 + 1 + #name) == 0, "bind")
  local buf = ffi.new("char[4096]")
  local s = { env = "@" .. name, msgs = {} }
  function s.next(limit)
    local got
    support.eventually(function()
      local n = C.hostops_recv(fd, buf, 4096, 0)
      if n > 0 then got = ffi.string(buf, n) end
      return got ~= nil
    end, limit or 5)
    if got then s.msgs[#s.msgs + 1] = got end
    return got
  end
  -- The next datagram holding `text` (others before it are kept in msgs).
  function s.expect(text, limit)
    local deadline = ringline.now() + (limit or 5)
    while ringline.now() < deadline do
      local m = s.next(deadline - ringline.now())
      if m and m:find(text, 1, true) then return m end
    end
    return nil
  end
  function s.close() C.hostops_close(fd) end
  return s
end

-- Waits (bounded) until the file at path holds `text`; returns its content.
function M.file_has(path, text, limit)
  local content = ""
  support.eventually(function()
    local f = io.open(path, "rb")
    content = f and f:read("*a") or ""
    if f then f:close() end
    return content:find(text, 1, true) ~= nil
  end, limit or 5)
  return content
end

return M
