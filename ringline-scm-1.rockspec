-- LuaRocks: `luarocks --lua-version 5.1 make` from the repository root
-- builds libringline with CMake and installs the Lua modules (ringline.*)
-- and the library (as ringline/libringline.so in the tree's C module
-- directory, where ringline.lib finds it through package.cpath). The host
-- ringline-lua is not part of the rock: `cmake --install` installs it.
-- Needs LuaJIT (the modules use its FFI), liburing, CMake and a compiler.
rockspec_format = "3.0"
package = "ringline"
version = "scm-1"
source = {
  url = "git+file://./",   -- `luarocks make` builds the checkout it runs in
}
description = {
  summary = "io_uring network runtime with an OpenResty-style cosocket API for LuaJIT",
  detailed = [[
A C core (libringline) owns io_uring rings, buffers and connections;
LuaJIT coroutines drive it through the FFI with OpenResty's names
(listen, connect, receive, send, settimeout, udp, timers).]],
  license = "MIT",
}
dependencies = {
  "lua == 5.1",   -- LuaJIT
}
build = {
  type = "cmake",
  variables = {
    CMAKE_BUILD_TYPE = "Release",
    BUILD_TESTING = "OFF",
    RL_LUAROCKS = "ON",
    RL_LUA_MODDIR = "$(LUADIR)",
    RL_LUA_CLIBDIR = "$(LIBDIR)",
    CMAKE_INSTALL_PREFIX = "$(PREFIX)",
  },
}
