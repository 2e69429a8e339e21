-- ringline.urlargs: query strings (application/x-www-form-urlencoded), one
-- decoder for req:args() (ringline.http) and ngx.decode_args /
-- ngx.req.get_uri_args (ringline.ngx).
local gsub, char, tonumber = string.gsub, string.char, tonumber

local M = {}

local function unhex(h) return char(tonumber(h, 16)) end

-- %XX decoded, + as a space; bad escapes left as they are.
function M.unescape(s)
  return (gsub(gsub(s, "+", " "), "%%(%x%x)", unhex))
end
local unescape = M.unescape

-- "a=1&b&a=2" -> { a = { "1", "2" }, b = true }: a value is a string, true
-- for a name with no "=", an array when the name repeats; an empty name is
-- left out. At most max arguments (0: no limit).
function M.decode(s, max)
  local t, n = {}, 0
  for part in s:gmatch("[^&]+") do
    if max > 0 and n >= max then break end
    local k, v = part:match("^([^=]*)=(.*)$")
    if k then v = unescape(v) else k, v = part, true end
    k = unescape(k)
    if k ~= "" then
      n = n + 1
      local old = t[k]
      if old == nil then
        t[k] = v
      elseif type(old) == "table" then
        old[#old + 1] = v
      else
        t[k] = { old, v }
      end
    end
  end
  return t
end

return M
