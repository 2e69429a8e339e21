-- proc.lua: run programs from specs (the host, the generator, example
-- servers) and get their exit status and output.
--
--   local proc = dofile("bindings/test/proc.lua")
--   local code, out, err = proc.run("ringline-lua --version")
--   local srv = proc.spawn("PORT=0 ringline-lua examples/echo.lua")
--   local port = srv:expect("listening on [^:]+:(%d+)")
--   local code, out, err = srv:stop()        -- SIGTERM, then the exit status
--
-- os.execute gives the status (LuaJIT's popen close does not); io.popen
-- gives a server's stdout line by line, so a spec waits for "listening on"
-- instead of sleeping. Every spawned server runs under timeout(1), so a
-- wedged one cannot hang the spec run.
local M = {}

local function quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end
M.quote = quote

local function slurp(path)
  local f = io.open(path, "rb")
  if not f then return "" end
  local s = f:read("*a")
  f:close()
  return s
end

-- The exit code from os.execute's result, plain LuaJIT (a wait status) or
-- built with Lua 5.2 compatibility (ok, "exit"|"signal", n).
local function exit_code(a, how, n)
  if type(a) == "number" then
    if a % 256 == 0 then return a / 256 end
    return 128 + a % 128
  end
  if how == "signal" then return 128 + n end
  return n
end

-- Runs `cmd` (a shell command line) with stdin from the string `input` (or
-- /dev/null). Returns exit code, stdout, stderr.
function M.run(cmd, input)
  local out, err, inp = os.tmpname(), os.tmpname(), os.tmpname()
  local f = assert(io.open(inp, "wb"))
  f:write(input or "")
  f:close()
  local code = exit_code(os.execute(("(%s) <%s >%s 2>%s"):format(
    cmd, quote(inp), quote(out), quote(err))))
  local o, e = slurp(out), slurp(err)
  os.remove(out); os.remove(err); os.remove(inp)
  return code, o, e
end

local Server = {}
Server.__index = Server
Server.__name = "proc.server"

-- Starts `cmd` in the background. Its stdout is read with :expect(), its
-- stderr collected for :stop().
function M.spawn(cmd, limit_s)
  local errfile = os.tmpname()
  local line = ("timeout -s KILL %d sh -c %s 2>%s & echo \"pid=$!\"; wait $!; echo \"exit=$?\""):format(
    limit_s or 60, quote("exec env " .. cmd), quote(errfile))
  local p = assert(io.popen(line, "r"))
  local self = setmetatable({ p = p, errfile = errfile, lines = {}, early = {} }, Server)
  -- The shell's "pid=" line races the program's own first lines (the
  -- program starts before the shell's echo runs): keep those for :expect().
  while true do
    local l = p:read("*l")
    if not l then break end
    local pid = l:match("^pid=(%d+)$")
    if pid then self.pid = tonumber(pid) break end
    self.early[#self.early + 1] = l
  end
  assert(self.pid, "spawn: no pid from the shell: " .. table.concat(self.early, "\n"))
  return self
end

-- The next stdout line: one read before the pid first.
function Server:read_line()
  if #self.early > 0 then return table.remove(self.early, 1) end
  return self.p:read("*l")
end

-- Reads stdout lines until one matches `pattern`; returns its captures, or
-- nil and everything seen (stdout and stderr) when the program ended first.
function Server:expect(pattern)
  while true do
    local l = self:read_line()
    if not l then
      return nil, table.concat(self.lines, "\n") .. "\n" .. slurp(self.errfile)
    end
    self.lines[#self.lines + 1] = l
    local exit = l:match("^exit=(%d+)$")
    if exit then self.code = tonumber(exit) end
    local caps = { l:match(pattern) }
    if caps[1] then return unpack(caps) end
  end
end

-- Sends `sig` (default TERM) to the program, unless it already ended.
-- timeout(1) forwards TERM, INT and HUP to the program it runs (twice: to
-- the program and to its process group). Other signals would end timeout
-- itself: send those to the program's own pid (pid = its pid, when known).
function Server:signal(sig, pid)
  if not self.code then
    os.execute(("kill -%s %d 2>/dev/null"):format(sig or "TERM", pid or self.pid))
  end
end

-- Waits for the program to end; returns its exit code, stdout and stderr.
function Server:wait()
  if not self.code then self:expect("^exit=%d+$") end
  self.p:close()
  local err = slurp(self.errfile)
  os.remove(self.errfile)
  return self.code, table.concat(self.lines, "\n"), err
end

-- Sends `sig` (default TERM) unless the program already ended, waits for it,
-- and returns its exit code, its stdout and its stderr.
function Server:stop(sig)
  self:signal(sig)
  return self:wait()
end

return M
