-- Loaded by busted before the specs (see .busted): makes the source tree's
-- modules findable, so `require "ringline"` loads lua/ringline/init.lua and
-- `require "ringline.lib"` loads bindings/ringline/lib.lua (which finds
-- build/libringline.so relative to itself).
local root = debug.getinfo(1, "S").source:match("^@(.*)/spec/[^/]+$") or "."
if root:sub(1, 1) ~= "/" then root = (os.getenv("PWD") or ".") .. "/" .. root end
package.path = ("%s/lua/?.lua;%s/lua/?/init.lua;%s/bindings/?.lua;%s/spec/?.lua;"):format(
  root, root, root, root) .. package.path
