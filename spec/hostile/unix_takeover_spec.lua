-- Hostile neighbours: a second server on a unix socket path must not take
-- the path from a live one (issue 17, defect 6); a stale socket file is
-- replaced; opts.mode sets the socket file's permissions.
local ringline = require "ringline"
local support = require "support"

local run = support.run

local function tmp_path()
  local p = os.tmpname()
  os.remove(p)
  return p
end

-- stat(1) of path: "%a" the permission bits as octal text ("660"), "%F"
-- the kind of file ("socket").
local function stat(fmt, path)
  local f = assert(io.popen("stat -c " .. fmt .. " " .. path))
  local m = f:read("*l")
  f:close()
  return m
end
local function mode_of(path) return stat("%a", path) end

local function echo(c)
  local line = c:receive("*l")
  if line then c:send(line, "\n") end
end

local function ask(path, text)
  local c = assert(ringline.connect("unix:" .. path, nil, { timeout = 5 }))
  c:settimeout(5000)
  assert(c:send(text, "\n"))
  local got, err = c:receive("*l")
  c:close()
  return got, err
end

describe("hostile: unix socket takeover", function()
  it("a second listen on a live socket's path fails; the first server keeps it", function()
    local path = tmp_path()
    run(function()
      local first = assert(ringline.listen("unix:" .. path, echo))
      local second, err = ringline.listen("unix:" .. path, function(c) c:send("intruder\n") end)
      assert.is_nil(second)
      assert.are.equal("address already in use", err)
      assert.are.equal("still mine", ask(path, "still mine"))
      first:close()
    end)
    os.remove(path)
  end)

  it("a stale socket file (its server gone) is replaced", function()
    local path = tmp_path()
    run(function()
      local old = assert(ringline.listen("unix:" .. path, echo))
      old:close()   -- the file stays, nobody listens on it
      assert.are.equal("socket", stat("%F", path))
      local new = assert(ringline.listen("unix:" .. path, echo))
      assert.are.equal("new one", ask(path, "new one"))
      new:close()
    end)
    os.remove(path)
  end)

  it("opts.mode sets the socket file's permissions (number or octal string)", function()
    local path = tmp_path()
    run(function()
      local l = assert(ringline.listen("unix:" .. path, echo, { mode = "0660" }))
      assert.are.equal("660", mode_of(path))
      assert.are.equal("ok", ask(path, "ok"))
      l:close()
      l = assert(ringline.listen("unix:" .. path, echo, { mode = tonumber("600", 8) }))
      assert.are.equal("600", mode_of(path))
      l:close()
      l = assert(ringline.listen("unix:" .. path, echo, { mode = "640" }))
      assert.are.equal("640", mode_of(path))
      l:close()
    end)
    os.remove(path)
  end)

  it("a bad mode, or a mode for a TCP address, raises at the call", function()
    local path = tmp_path()
    run(function()
      for _, bad in ipairs({ "abc", "0999", "66", 512, -1, 1.5, true }) do
        local ok, err = pcall(ringline.listen, "unix:" .. path, echo, { mode = bad })
        assert.is_false(ok)
        assert.matches("opts.mode must be permissions", err)
      end
      local ok, err = pcall(ringline.listen, "127.0.0.1:0", echo, { mode = "0600" })
      assert.is_false(ok)
      assert.matches("opts.mode is for unix sockets only", err)
    end)
    os.remove(path)
  end)
end)
