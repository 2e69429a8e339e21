-- ringline.lib: the C namespace of libringline, with the declarations of
-- ringline.cdef loaded.
--
-- Inside the host (ringline-lua) the core is linked into the executable and
-- exported, so the namespace is ffi.C: no second copy of the library, no
-- search. ringline.host is the one module that says whether this is the
-- host (it looks at the "ringline.hostinfo" module the host preloads).
-- Anywhere else (plain luajit, busted, an embedding program) the shared
-- library is loaded from the first of these that exists:
--   1. $RINGLINE_LIB, when set (a path; failure to load it is an error, not
--      a reason to try the others, so a wrong setting is never masked);
--   2. ../../build/libringline.so relative to this file (the source tree
--      with the default build directory);
--   3. installed by cmake --install: installdirs.lua beside this file
--      (written at install time) gives the library directory relative to
--      this file's, then as installed, and the SONAME;
--   4. installed by luarocks: ringline/libringline.so on package.cpath;
--   5. the dynamic linker's search: the SONAME (libringline.so.0: a
--      runtime package has no unversioned link), then "ringline".
-- So an installed tree needs no LD_LIBRARY_PATH.
local ffi = require "ffi"
require "ringline.cdef"

if require "ringline.host" then
  return ffi.C
end

local function exists(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end

local tried = {}

local function try(name)
  local ok, lib = pcall(ffi.load, name)
  if ok then return lib end
  tried[#tried + 1] = ("  %s: %s"):format(name, tostring(lib))
  return nil
end

-- A path that must exist to be worth loading (a missing one is noted, so
-- the final message lists every place looked at).
local function try_file(path)
  if exists(path) then return try(path) end
  tried[#tried + 1] = ("  %s: no such file"):format(path)
  return nil
end

local env = os.getenv("RINGLINE_LIB")
if env and env ~= "" then
  local lib = try(env)
  if lib then return lib end
  error("ringline.lib: cannot load RINGLINE_LIB=" .. env .. "\n" .. table.concat(tried, "\n"), 0)
end

-- This file's directory: "@bindings/ringline/lib.lua" -> "bindings/ringline".
local src = debug.getinfo(1, "S").source
local dir = src:sub(1, 1) == "@" and (src:sub(2):match("^(.*)/[^/]*$") or ".") or nil
local soname = "libringline.so.0"
if dir then
  local lib = try_file(dir .. "/../../build/libringline.so")
  if lib then return lib end
  -- installed by cmake: the directories recorded beside this file
  local ok, dirs = pcall(dofile, dir .. "/installdirs.lua")
  if ok and type(dirs) == "table" then
    soname = dirs.soname or soname
    lib = try_file(dir .. "/" .. dirs.libdir_rel .. "/" .. soname)
        or try_file(dirs.libdir .. "/" .. soname)
    if lib then return lib end
  end
end

-- installed by luarocks: the library is a file of the rock's C directory
local path = package.searchpath and package.searchpath("ringline.libringline", package.cpath)
if path then
  local lib = try(path)
  if lib then return lib end
end

local lib = try(soname) or try("ringline")
if lib then return lib end

error("ringline.lib: libringline.so not found. Build it (cmake -B build && "
  .. "cmake --build build), install it, or set RINGLINE_LIB to its path. Tried:\n"
  .. table.concat(tried, "\n"), 0)
