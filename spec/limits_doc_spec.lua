-- docs/operations.md states every limit and default in one table, "## Limits
-- and defaults" (issue 17). It cannot fall behind the code: every
-- configuration key (the core's and the Lua layer's, as ringline-lua --help
-- lists them) and every option of the host has a row, and a row about one
-- key states that key's default.
local ringline = require "ringline"

local root = debug.getinfo(1, "S").source:match("^@(.*)/spec/[^/]+$") or "."
if root:sub(1, 1) ~= "/" then root = (os.getenv("PWD") or ".") .. "/" .. root end

-- The table's rows: first column -> default column.
local function rows()
  local f = assert(io.open(root .. "/docs/operations.md", "rb"))
  local doc = f:read("*a")
  f:close()
  local section = doc:match("\n## Limits and defaults\n(.-)\n## ") or
    doc:match("\n## Limits and defaults\n(.*)$")
  assert(section, "docs/operations.md has no \"## Limits and defaults\" section")
  local t = {}
  for line in section:gmatch("[^\n]+") do
    local first, default = line:match("^| ([^|]+) | ([^|]+) |")
    if first and not first:match("^%-") and first ~= "limit" then t[#t + 1] = { first, default } end
  end
  return t
end

local UNIT = { KiB = 1024, MiB = 1024 ^ 2, GiB = 1024 ^ 3, ms = 1 }

-- The number a default column starts with, in the key's unit (ms, bytes).
local function value(s)
  local n, unit = s:match("^(%d+) ?(%a*)")
  if not n then return nil end
  return tonumber(n) * (UNIT[unit] or 1)
end

describe("docs/operations.md, Limits and defaults", function()
  it("has a row for every configuration key, stating its default", function()
    local keys = ringline.config_keys()
    local found = {}
    for _, r in ipairs(rows()) do
      local names = {}
      for k in r[1]:gmatch("`([%w_]+)`") do
        if keys[k] then names[#names + 1] = k end
      end
      for _, k in ipairs(names) do found[k] = true end
      -- a row about one key (not max_connections, whose 0 means "16000
      -- or what fits"): its default column starts with the default
      if #names == 1 and names[1] ~= "max_connections" then
        local k = names[1]
        assert.are.equal(keys[k].default, value(r[2]),
          ("the row of %s says %q, the default is %d"):format(k, r[2], keys[k].default))
      end
    end
    local missing = {}
    for k in pairs(keys) do if not found[k] then missing[#missing + 1] = k end end
    table.sort(missing)
    assert.are.same({}, missing)
  end)

  it("has a row for every option of the host that sets a limit or a default", function()
    local text = {}
    for _, r in ipairs(rows()) do text[#text + 1] = r[1] .. " | " .. r[2] end
    text = table.concat(text, "\n")
    local f = assert(io.open(root .. "/docs/operations.md", "rb"))
    local doc = f:read("*a")
    f:close()
    local section = doc:match("\n## Limits and defaults\n(.-)\n## ") or doc
    for _, opt in ipairs({ "`-w`", "`--accept`", "`--pin`", "`--drain-timeout`",
      "`--allow-bytecode`", "`--shared-dict`" }) do
      assert(section:find(opt, 1, true), "no row names " .. opt)
    end
    assert(text:find("script size", 1, true), "no row for the script size")
  end)
end)
