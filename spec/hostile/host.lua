-- Shared by the hostile specs: run the built host (ringline-lua) on a
-- script as a server or to completion. RINGLINE_BUILD selects the build
-- (the sanitized one in CI's ASan stage), as for spec/host_spec.lua.
local root = debug.getinfo(1, "S").source:match("^@(.*)/spec/hostile/[^/]+$") or "."
if root:sub(1, 1) ~= "/" then root = (os.getenv("PWD") or ".") .. "/" .. root end
local proc = dofile(root .. "/bindings/test/proc.lua")
local build = os.getenv("RINGLINE_BUILD") or (root .. "/build")

local M = { root = root, proc = proc, bin = build .. "/bindings/ringline-lua" }

local tmp = {}

-- A file holding text; removed by M.cleanup().
function M.file(text, suffix)
  local path = os.tmpname() .. (suffix or ".lua")
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
  tmp[#tmp + 1] = path
  return path
end

function M.cleanup()
  for _, p in ipairs(tmp) do os.remove(p) end
  tmp = {}
end

-- `env` and `pre`: environment assignments and shell commands (ulimit)
-- put before the host's command line.
local function cmdline(args, env, pre)
  return (pre and pre .. "; " or "") .. (env and "env " .. env .. " " or "")
    .. proc.quote(M.bin) .. " " .. args
end

-- Runs the host to its end: exit code, stdout, stderr.
function M.run(args, input, env, pre)
  return proc.run(cmdline(args, env, pre), input)
end

-- Starts the host as a server; its script prints "listening on HOST:PORT".
-- Returns the server (proc.lua's, :stop() for code, out, err) and the port.
function M.serve(args, env, pre, limit_s)
  local cmd = (pre and pre .. "; " or "") .. "exec " .. (env and "env " .. env .. " " or "")
    .. proc.quote(M.bin) .. " " .. args
  local srv = proc.spawn("sh -c " .. proc.quote(cmd), limit_s or 60)
  local port, seen = srv:expect("listening on [^:]+:(%d+)")
  assert(port, "the server did not start: " .. tostring(seen))
  return srv, tonumber(port)
end

return M
