-- tools/callgraph.lua: which file of core/src/ calls which, from the objects'
-- symbol tables, and the groups of files that call each other in a circle.
--
--   luajit tools/callgraph.lua [builddir | file.c.o...] [--allow a,b,c] [--dot]
--
-- Objects named on the command line are read as given (ctest passes the
-- library's own object list, so a stale object of a deleted source cannot
-- count); otherwise every object of builddir's ringline_obj is read.
--
-- An edge a -> b means a.o references a function that b.o defines (nm: U in
-- a, T in b). Static and inline functions do not appear: they cannot make a
-- circle between files. Prints every edge, then each strongly connected
-- component of more than one file, and the tops (files no other file calls).
-- Exits 1 when a component is not a subset of the --allow list (the accept
-- group shares the fixed-file install and is allowed to), so ctest
-- (core_callgraph) pins "no file calls a file that calls it back".
local builddir, allow, dot = "build", {}, false
local objs = {}
local i = 1
while arg[i] do
  local a = arg[i]
  if a == "--allow" then
    i = i + 1
    for f in arg[i]:gmatch("[^,]+") do allow[f] = true end
  elseif a == "--dot" then
    dot = true
  elseif a:match("%.o$") then
    objs[#objs + 1] = a
  else
    builddir = a
  end
  i = i + 1
end

local objdir = builddir .. "/CMakeFiles/ringline_obj.dir/core/src"
if #objs == 0 then
  local ls = assert(io.popen("ls " .. objdir .. "/*.c.o 2>/dev/null"))
  for path in ls:lines() do objs[#objs + 1] = path end
  ls:close()
end
if #objs == 0 then
  io.stderr:write("callgraph: no objects under ", objdir, " (build first)\n")
  os.exit(2)
end

local defs, uses, files = {}, {}, {}
for _, path in ipairs(objs) do
  local file = path:match("([^/]+)%.o$")
  files[#files + 1] = file
  uses[file] = {}
  local nm = assert(io.popen("nm " .. path))
  for line in nm:lines() do
    local kind, sym = line:match("^%s*%x*%s+(%a)%s+(%S+)$")
    if kind == "T" then
      defs[sym] = file
    elseif kind == "U" then
      uses[file][#uses[file] + 1] = sym
    end
  end
  nm:close()
end
table.sort(files)

local edges = {}
for _, f in ipairs(files) do
  local seen = {}
  edges[f] = {}
  for _, sym in ipairs(uses[f]) do
    local g = defs[sym]
    if g and g ~= f and not seen[g] then
      seen[g] = true
      edges[f][#edges[f] + 1] = g
    end
  end
  table.sort(edges[f])
end

if dot then print("digraph core {") end
for _, f in ipairs(files) do
  for _, g in ipairs(edges[f]) do
    print(dot and ('  "%s" -> "%s";'):format(f, g) or (f .. " -> " .. g))
  end
end
if dot then print("}") return end

-- The tops: files no other file calls (entered by the poll loop or by the
-- caller's public calls only).
local called, tops = {}, {}
for _, f in ipairs(files) do
  for _, g in ipairs(edges[f]) do called[g] = true end
end
for _, f in ipairs(files) do
  if not called[f] then tops[#tops + 1] = f end
end
print("tops: " .. table.concat(tops, " "))

-- Tarjan's strongly connected components.
local index, low, onstack, stack, n, sccs = {}, {}, {}, {}, 0, {}
local function visit(v)
  n = n + 1
  index[v], low[v] = n, n
  stack[#stack + 1] = v
  onstack[v] = true
  for _, w in ipairs(edges[v]) do
    if not index[w] then
      visit(w)
      low[v] = math.min(low[v], low[w])
    elseif onstack[w] then
      low[v] = math.min(low[v], index[w])
    end
  end
  if low[v] == index[v] then
    local comp = {}
    repeat
      local w = table.remove(stack)
      onstack[w] = false
      comp[#comp + 1] = w
    until w == v
    if #comp > 1 then
      table.sort(comp)
      sccs[#sccs + 1] = comp
    end
  end
end
for _, f in ipairs(files) do
  if not index[f] then visit(f) end
end

local bad = 0
for _, comp in ipairs(sccs) do
  local ok = true
  for _, f in ipairs(comp) do ok = ok and allow[f] or false end
  print(("cycle%s: %s"):format(ok and " (allowed)" or "", table.concat(comp, " ")))
  if not ok then bad = bad + 1 end
end
print(("%d files, %d cycles outside the allowed group"):format(#files, bad))
os.exit(bad == 0 and 0 or 1)
