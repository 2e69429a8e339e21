-- The API reference cannot drift from the code: every function and method
-- the Lua API exports is documented in docs/api.md and declared in the
-- LuaCATS file types/ringline.d.lua, and neither names anything that does
-- not exist. Also: every link of the docs resolves inside the repository,
-- and no absolute path of a machine appears in the docs, the README or the
-- Lua sources.
--
-- The convention docs/api.md follows: every entry is a level-3 heading
-- whose text starts with a backquoted name, e.g.
--   ### `conn:receive([pattern])`
--   ### `ringline.spawn(fn, ...)`
--   ### `ringline.ERR`, `ringline.WARN`          (several names, one entry)
-- Functions of the ringline table and of its sub-tables are written
-- ringline.name / ringline.sub.name, methods object:name with the objects
-- named conn, listener, udp, region, slice, timer (a timer handle), task, process, nvme,
-- semaphore, channel, file (ringline.fs.open's) and dict (a shared dictionary,
-- ringline.shared.NAME); ringline.re is written re.name. The module ringline.http is written http.name, its
-- request and response objects req:name and res:name; ringline.resp is
-- written resp.name and its reader's methods reader:name (declared in
-- types/ringline.resp.d.lua). The client and WebSocket modules' functions
-- are written http.name (ringline.http_client: request, get,
-- websocket_connect, which the ringline.http facade exports again) and
-- websocket.name (ringline.websocket), the methods of their objects
-- response:name and ws:name. Other level-3 headings do not start with a
-- backquote.
local ringline = require "ringline"
local http = require "ringline.http"
local resp = require "ringline.resp"

local root = debug.getinfo(1, "S").source:match("^@(.*)/spec/[^/]+$") or "."
if root:sub(1, 1) ~= "/" then root = (os.getenv("PWD") or ".") .. "/" .. root end

local function slurp(path)
  local f = assert(io.open(root .. "/" .. path, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end

-- Methods exported by the runtime but not part of the API: the scheduler
-- calls a timer handle's fire when the timer is due.
local INTERNAL = { ["timer:fire"] = true, ["process:fire"] = true }

local function public(name) return name:sub(1, 1) ~= "_" end

-- Modules outside the ringline table: { module, the name the docs use }.
local MODULES = { { "ringline.http_client", "http" }, { "ringline.websocket", "websocket" },
                  { "ringline.re", "re" } }

-- The exported API: names that must be documented (required) and names a
-- document may also mention (the sub-tables themselves).
local function exported()
  local required, tables = {}, {}
  for k, v in pairs(ringline) do
    if public(k) or k == "_VERSION" then
      local name = "ringline." .. k
      if type(v) == "table" then
        tables[name] = true
        for k2 in pairs(v) do
          if public(k2) then required[name .. "." .. k2] = true end
        end
      else
        required[name] = true
      end
    end
  end
  for k, v in pairs(http) do
    if public(k) and type(v) == "function" then required["http." .. k] = true end
  end
  -- The modules beside ringline: resp.name
  for k in pairs(resp) do
    if public(k) then required["resp." .. k] = true end
  end
  -- The protocol modules, under the names the docs give them.
  for _, m in ipairs(MODULES) do
    tables[m[2]] = true
    for k, v in pairs(require(m[1])) do
      if type(v) == "function" and public(k) then required[m[2] .. "." .. k] = true end
    end
  end
  -- The objects' methods, from real objects made in a run.
  local objects = ringline.run({ timeout = 5 }, function()
    local lst = assert(ringline.listen("127.0.0.1:0", function(c) c:receive() end))
    local _, port = lst:getsockname()
    local c = assert(ringline.connect("127.0.0.1", port))
    local hreq, hres
    local hl = assert(http.listen("127.0.0.1:0", function(q, s) hreq, hres = q, s end))
    local hc = assert(ringline.connect("127.0.0.1", select(2, hl:getsockname())))
    assert(hc:send("GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"))
    assert(hc:receive("*a"))
    hc:close()
    hl:close()
    local r = assert(ringline.region(4096))
    local h = assert(ringline.timer.at(60, function() end))
    local t = ringline.spawn(function() end)
    -- a client response, from a server that answers 204
    local cl = assert(ringline.listen("127.0.0.1:0", function(sc)
      sc:receive()
      sc:send("HTTP/1.1 204 No Content\r\n\r\n")
    end))
    local cres = assert(require("ringline.http_client").request{
      url = "http://127.0.0.1:" .. select(2, cl:getsockname()) .. "/", keepalive = false })
    local o = {
      conn = c, listener = lst, udp = ringline.udp(), region = r, slice = r:slice(0, 16),
      timer = h, task = t, semaphore = ringline.semaphore(1), channel = ringline.channel(1),
      req = hreq, res = hres,
      reader = resp.reader(c),
      response = cres, ws = require("ringline.websocket").new(c),
      process = assert(ringline.exec({ "true" }, { stdout = "null" })),
      -- no NVMe device here: an object of its kind, for its methods
      nvme = setmetatable({}, require("ringline.nvme").mt),
      file = assert(ringline.fs.open("/dev/null", "r")),
    }
    o.file:close()
    o.process:wait()
    o.process:close()
    cl:close()
    h:cancel()
    t:join()
    c:close()
    lst:close()
    o.udp:close()
    return o
  end)
  -- shared dictionaries are cdata (their metatable is hidden): their methods table
  for k, v in pairs(getmetatable(require "ringline.shdict").methods) do
    if type(v) == "function" and public(k) then required["dict:" .. k] = true end
  end
  for kind, obj in pairs(objects) do
    local mt = getmetatable(obj)
    -- a metatable whose __index is a function (req: headers made when
    -- first read) names its methods table `methods`
    local methods = mt and (type(mt.__index) == "table" and mt.__index or mt.methods)
    assert(type(methods) == "table", kind .. " has no methods table")
    for k, v in pairs(methods) do
      local name = kind .. ":" .. k
      if type(v) == "function" and public(k) and not INTERNAL[name] then required[name] = true end
    end
  end
  return required, tables
end

-- Names documented in the text of docs/api.md, and those given twice.
local function documented(text)
  local names, dup = {}, {}
  for line in text:gmatch("[^\n]+") do
    if line:match("^###%s+`") then
      for entry in line:gmatch("`([^`]+)`") do
        local name = entry:gsub("%b()", ""):match("^%s*([%w_.:]+)%s*$")
        assert(name, "docs/api.md: cannot read the entry heading: " .. line)
        if names[name] then dup[#dup + 1] = name end
        names[name] = true
      end
    end
  end
  return names, dup
end

-- Names declared in the LuaCATS file: `function a.b(`, `function obj:m(`,
-- and fields `ringline.x = ...` (constants and sub-tables).
local function declared(text)
  local names = {}
  for line in text:gmatch("[^\n]+") do
    local f = line:match("^function%s+([%w_.:]+)%s*%(")
    if f then names[f] = true end
    local v = line:match("^(ringline%.[%w_.]+)%s*=") or line:match("^(resp%.[%w_.]+)%s*=")
    if v then names[v] = true end
  end
  -- methods are written on the locals named after the objects' kinds
  return names
end

-- What is missing from `have` and what it names that does not exist;
-- nil when they agree, else a message listing the names.
local function compare(what, required, tables, have)
  local missing, unknown = {}, {}
  for n in pairs(required) do
    if not have[n] then missing[#missing + 1] = n end
  end
  for n in pairs(have) do
    if not required[n] and not tables[n] then unknown[#unknown + 1] = n end
  end
  table.sort(missing)
  table.sort(unknown)
  if #missing == 0 and #unknown == 0 then return nil end
  local msg = {}
  if #missing > 0 then msg[#msg + 1] = "not in " .. what .. ": " .. table.concat(missing, ", ") end
  if #unknown > 0 then
    msg[#msg + 1] = "in " .. what .. " but not exported: " .. table.concat(unknown, ", ")
  end
  return table.concat(msg, "; ")
end

-- The LuaCATS definitions: ringline's and the protocol modules'.
local TYPES = { "types/ringline.d.lua", "types/ringline.resp.d.lua" }
local function types_text()
  local t = {}
  for i, f in ipairs(TYPES) do t[i] = slurp(f) end
  return table.concat(t, "\n")
end

describe("the API reference", function()
  local required, tables = exported()
  local doc = slurp("docs/api.md")

  it("finds the exported API (the walk itself works)", function()
    for _, n in ipairs({ "ringline.listen", "ringline.timer.at", "ringline.worker.post",
                         "ringline.coroutine.wrap", "ringline.ERR", "conn:receive",
                         "listener:close", "udp:receivefrom", "region:slice", "slice:string",
                         "timer:cancel", "task:join", "semaphore:wait", "channel:get",
                         "http.listen", "req:body", "res:finish",
                         "resp.reader", "resp.null", "reader:read", "reader:pending",
                         "http.request", "http.websocket_connect", "websocket.accept",
                         "response:body", "ws:recv_frame", "ringline.exec", "process:wait" }) do
      assert.is_true(required[n], n)
    end
    assert.is_nil(required["timer:fire"])
  end)

  it("docs/api.md documents every export and nothing else, once each", function()
    local names, dup = documented(doc)
    assert.are.same({}, dup)
    local msg = compare("docs/api.md", required, tables, names)
    assert(msg == nil, msg)
  end)

  it("the check fails, naming it, when an entry is removed or invented", function()
    local cut = doc:gsub("\n### `conn:receiveany%(max%)`\n", "\n", 1)
    assert.are_not.equal(doc, cut)
    local msg = compare("docs/api.md", required, tables, (documented(cut)))
    assert.is_truthy(msg and msg:find("not in docs/api.md: conn:receiveany", 1, true))
    local extra = doc .. "\n### `conn:frobnicate(x)`\n"
    msg = compare("docs/api.md", required, tables, (documented(extra)))
    assert.is_truthy(msg and msg:find("but not exported: conn:frobnicate", 1, true))
  end)

  it("types/ringline.d.lua declares the same names, and loads", function()
    for _, f in ipairs(TYPES) do
      local one = slurp(f)
      assert.is_truthy(one:find("^%-%-%-@meta"), f)
      assert(loadstring(one, "=" .. f))
    end
    local text = types_text()
    local msg = compare("types/ringline.d.lua", required, tables, declared(text))
    assert(msg == nil, msg)
  end)

  -- "[opts,] fn, ..." -> "opts, fn, ..."
  local function arglist(s)
    local t = {}
    for a in s:gsub("[%[%]]", ""):gmatch("[^,]+") do t[#t + 1] = a:match("^%s*(.-)%s*$") end
    return table.concat(t, ", ")
  end

  it("docs/api.md and types/ringline.d.lua give the same arguments", function()
    local meta = {}
    for name, a in types_text():gmatch("\nfunction%s+([%w_.:]+)%s*(%b())") do
      meta[name] = arglist(a:sub(2, -2))
    end
    local bad = {}
    for line in doc:gmatch("[^\n]+") do
      if line:match("^###%s+`") then
        for entry in line:gmatch("`([^`]+)`") do
          local name, a = entry:match("^([%w_.:]+)(%b())")
          if name and meta[name] ~= arglist(a:sub(2, -2)) then
            bad[#bad + 1] = ("%s: (%s) in docs/api.md, (%s) in types/ringline.d.lua"):format(
              name, arglist(a:sub(2, -2)), tostring(meta[name]))
          end
        end
      end
    end
    assert(#bad == 0, table.concat(bad, "\n"))
  end)

  it("types/ringline.d.lua has a @param for each parameter, and no other", function()
    local params, bad = {}, {}
    for line in types_text():gmatch("([^\n]*)\n") do
      local p = line:match("^%-%-%-@param%s+([%w_.]+)")
      local fname, a = line:match("^function%s+([%w_.:]+)%s*%((.-)%)")
      if p then
        params[#params + 1] = p
      elseif fname then
        local want, got = {}, {}
        for x in a:gmatch("[^,%s]+") do want[x] = true end
        for _, x in ipairs(params) do
          got[x] = true
          if not want[x] then bad[#bad + 1] = fname .. ": @param " .. x .. " is not a parameter" end
        end
        for x in pairs(want) do
          if not got[x] then bad[#bad + 1] = fname .. ": no @param for " .. x end
        end
        params = {}
      elseif not line:match("^%-%-%-") then
        params = {}
      end
    end
    assert(#bad == 0, table.concat(bad, "\n"))
  end)

  it("each object kind has its LuaCATS class", function()
    local text = slurp("types/ringline.d.lua")
    for _, kind in ipairs({ "conn", "listener", "udp", "region", "slice", "timer", "task",
                            "semaphore", "channel", "response", "ws", "process", "nvme",
                            "file" }) do
      assert.is_truthy(text:find("\n%-%-%-@class ringline%." .. kind .. "\n"), "no class for " .. kind)
      assert.is_truthy(text:find("\nlocal " .. kind .. " = {}\n"), "no methods table for " .. kind)
    end
    for kind, class in pairs({ http = "ringline.http", req = "ringline.http.req",
                               res = "ringline.http.res" }) do
      assert.is_truthy(text:find("\n%-%-%-@class " .. class:gsub("%.", "%%.") .. "\n"), "no class for " .. kind)
      assert.is_truthy(text:find("\nlocal " .. kind .. " = {}\n"), "no methods table for " .. kind)
    end
    local rtext = slurp("types/ringline.resp.d.lua")
    assert.is_truthy(rtext:find("\n%-%-%-@class ringline%.resp%.reader\n"), "no class for reader")
    assert.is_truthy(rtext:find("\nlocal reader = {}\n"), "no methods table for reader")
  end)
end)

------------------------------------------------------------------------
-- Links and paths
------------------------------------------------------------------------

-- GitHub's anchor of a heading: lower case, punctuation but - and _
-- dropped, spaces to dashes.
local function slug(h)
  return (h:lower():gsub("[^%w_%- ]", ""):gsub(" ", "-"))
end

local function anchors(text)
  local set = {}
  local fence = false
  for line in text:gmatch("[^\n]*") do
    if line:match("^```") then fence = not fence end
    local h = not fence and line:match("^#+%s+(.-)%s*$")
    if h then set[slug(h)] = true end
  end
  return set
end

-- a/b/../c -> a/c; nil when it leaves the repository.
local function normalize(path)
  local out = {}
  for part in path:gmatch("[^/]+") do
    if part == ".." then
      if #out == 0 then return nil end
      out[#out] = nil
    elseif part ~= "." then
      out[#out + 1] = part
    end
  end
  return table.concat(out, "/")
end

local function exists(path)
  local f = io.open(root .. "/" .. path, "rb")
  if f then f:close() return true end
  return os.execute("test -d '" .. root .. "/" .. path .. "'") == 0
end

local function markdown_files()
  local list = { "README.md", "BENCHMARKS.md" }
  local p = io.popen("ls '" .. root .. "/docs'")
  for name in p:lines() do
    if name:match("%.md$") then list[#list + 1] = "docs/" .. name end
  end
  p:close()
  return list
end

describe("the docs", function()
  it("link only to files and headings inside the repository", function()
    local bad = {}
    for _, file in ipairs(markdown_files()) do
      local text = slurp(file)
      local dir = file:match("^(.*)/[^/]+$") or ""
      -- links outside code spans and fences
      local prose = text:gsub("```.-```", ""):gsub("`[^`\n]*`", "")
      for target in prose:gmatch("%]%(([^)%s]+)%)") do
        if not target:match("^%a[%w+.-]*:") then            -- not http:, mailto:, ...
          local path, anchor = target:match("^([^#]*)#?(.*)$")
          local full = path == "" and file or normalize((dir ~= "" and dir .. "/" or "") .. path)
          if not full or not exists(full) then
            bad[#bad + 1] = file .. ": " .. target .. " (no such file in the repository)"
          elseif anchor ~= "" and full:match("%.md$") and not anchors(slurp(full))[anchor] then
            bad[#bad + 1] = file .. ": " .. target .. " (no such heading)"
          end
        end
      end
    end
    assert(#bad == 0, table.concat(bad, "\n"))
  end)

  it("have examples that are valid Lua (LuaJIT's)", function()
    local bad = {}
    for _, file in ipairs(markdown_files()) do
      local i = 0
      for code in slurp(file):gmatch("```lua\n(.-)```") do
        i = i + 1
        local ok, err = loadstring(code, "=" .. file .. ", example " .. i)
        if not ok then bad[#bad + 1] = err end
      end
    end
    assert(#bad == 0, table.concat(bad, "\n"))
  end)

  -- The files checked: those git tracks (else the docs and the Lua and C
  -- sources), but this spec (it spells the patterns) and the benchmark
  -- harness's scripts and records (bench/, BENCHMARKS.md), which drive a
  -- peer harness kept outside the repository.
  local function tracked()
    local files = {}
    local p = io.popen("cd '" .. root .. "' && git ls-files 2>/dev/null")
    for f in p:lines() do files[#files + 1] = f end
    p:close()
    if #files == 0 then
      files = { "README.md", "CMakeLists.txt", "types/ringline.d.lua", "docs/ringline-lua.1" }
      for _, f in ipairs(markdown_files()) do
        if f:match("^docs/") then files[#files + 1] = f end
      end
      for _, dir in ipairs({ "lua/ringline", "bindings/ringline", "bindings/host", "core/src",
                             "core/include", "examples", "tools" }) do
        local q = io.popen("ls '" .. root .. "/" .. dir .. "'")
        for name in q:lines() do files[#files + 1] = dir .. "/" .. name end
        q:close()
      end
    end
    local keep = {}
    for _, f in ipairs(files) do
      if not (f:match("^bench/") or f == "BENCHMARKS.md") then
        keep[#keep + 1] = f
      end
    end
    return keep
  end

  it("name no absolute path of a machine, nor files outside the repository", function()
    local files = tracked()
    assert.is_true(#files > 50, "found too few files")
    local bad = {}
    for _, f in ipairs(files) do
      local ok, text = pcall(slurp, f)
      if not ok then text = "" end      -- a file deleted but not yet committed
      -- written as classes so that this file does not name them itself
      for _, pat in ipairs({ "/wor[k]/", "/hom[e]/", "/roo[t]/", "%.%./share[d]", "LUA_AP[I]%.md" }) do
        if text:find(pat) then bad[#bad + 1] = f .. ": " .. pat:gsub("[%%%[%]]", "") end
      end
    end
    assert(#bad == 0, table.concat(bad, "\n"))
  end)
end)

------------------------------------------------------------------------
-- The man page
------------------------------------------------------------------------

local build = os.getenv("RINGLINE_BUILD") or (root .. "/build")
local host = build .. "/bindings/ringline-lua"

local function sh(cmd)
  local p = io.popen(cmd)
  local out = p:read("*a")
  p:close()
  return out
end

-- The man page's text without roff escapes for the minus sign and
-- hyphen, so "\-\-drain\-timeout" reads "--drain-timeout".
local function man_text()
  return (slurp("docs/ringline-lua.1"):gsub("\\%-", "-"):gsub("\\%(hy", "-"))
end

describe("the man page ringline-lua(1)", function()
  it("names every option and configuration key that --help prints", function()
    local help = sh("'" .. host .. "' --help 2>&1")
    assert.is_truthy(help:find("Usage:", 1, true), help)
    local man = man_text()
    local seen, missing = 0, {}
    for line in help:gmatch("[^\n]+") do
      -- option lines: "  -h, --help ...", "  --set key=value ...";
      -- key lines: "  sq_entries           default 256 ..."
      local opts = line:match("^  (%-[^%s].-)%s%s") or line:match("^  (%-%S+)$")
      if opts then
        for o in opts:gmatch("%-%-?[%w-]+") do
          seen = seen + 1
          if not man:find(o, 1, true) then missing[#missing + 1] = o end
        end
      end
      local key, def = line:match("^  ([%w_]+)%s+default (%S+)")
      if key then
        seen = seen + 1
        -- the key's paragraph: from ".B key" to the next paragraph macro
        local para = man:match("\n%.B " .. key .. "\n(.-)\n%.[TS]")
        if not para then
          missing[#missing + 1] = key
        elseif not para:gsub("%s+", " "):find("(default " .. def, 1, true) then
          missing[#missing + 1] = key .. " (default " .. def .. ")"
        end
      end
    end
    assert.is_true(seen > 10, "read too few options from --help")
    assert(#missing == 0, "not in docs/ringline-lua.1: " .. table.concat(missing, ", "))
  end)

  it("has the sections of a man page", function()
    local man = man_text()
    for _, s in ipairs({ "NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "EXIT STATUS",
                         "ENVIRONMENT", "SIGNALS", "FILES", "EXAMPLES", "SEE ALSO" }) do
      assert.is_truthy(man:find("\n%.SH " .. s .. "\n") or man:find('\n%.SH "' .. s .. '"\n'), s)
    end
    for _, v in ipairs({ "RINGLINE_LOG_LEVEL", "RINGLINE_DISABLE_FEATURES", "RINGLINE_LIB" }) do
      assert.is_truthy(man:find(v, 1, true), v)
    end
  end)

  it("is installed by cmake --install, with the LuaCATS definitions", function()
    local prefix = os.tmpname()
    os.remove(prefix)
    finally(function() os.execute("rm -rf '" .. prefix .. "'") end)
    local out = sh(("cmake --install '%s' --prefix '%s' 2>&1; echo rc=$?"):format(build, prefix))
    assert.is_truthy(out:find("rc=0\n$"), out)
    assert.is_truthy(out:find("/share/man/man1/ringline-lua.1", 1, true), out)
    assert.is_truthy(out:find("/share/ringline/types/ringline.d.lua", 1, true), out)
    local f = assert(io.open(prefix .. "/share/man/man1/ringline-lua.1", "rb"))
    assert.are.equal(slurp("docs/ringline-lua.1"), f:read("*a"))
    f:close()
  end)
end)

-- require "ringline.ngx": every name of the ngx table it installs (and of
-- its sub-tables, the cosocket objects' methods and the modules it
-- preloads) has a row in docs/openresty.md, written in backquotes.
describe("docs/openresty.md", function()
  it("lists every ngx name the shim installs", function()
    local ngx = require "ringline.ngx"
    local text = slurp("docs/openresty.md")
    local names = {}
    local OPAQUE = { null = true, var = true, header = true, arg = true }
    for k, v in pairs(ngx) do
      if public(k) then
        if type(v) == "table" and not OPAQUE[k] then
          for k2 in pairs(v) do names[#names + 1] = "ngx." .. k .. "." .. k2 end
        else
          names[#names + 1] = "ngx." .. k
        end
      end
    end
    local sock = require "ringline.ngx.socket"
    for k in pairs(sock.tcp_mt.__index) do names[#names + 1] = "tcpsock:" .. k end
    for k in pairs(getmetatable(sock.udp()).__index) do names[#names + 1] = "udpsock:" .. k end
    for _, m in ipairs({ "ngx.semaphore", "ngx.base64", "ngx.process", "resty.core" }) do
      names[#names + 1] = m
    end
    assert.is_true(#names > 150)
    local missing = {}
    for _, n in ipairs(names) do
      if not text:find("`" .. n .. "`", 1, true) then missing[#missing + 1] = n end
    end
    table.sort(missing)
    assert.are.equal("", table.concat(missing, " "))
  end)
end)
