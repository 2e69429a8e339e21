-- The front door: bad input is refused where it is given. Unknown option
-- keys (named, with the valid ones listed, raised at the caller's line),
-- TLS options refused until TLS exists, malformed addresses reported as
-- "invalid address", and one rule for time units (socket-object methods
-- in milliseconds, everything else in seconds; negative, NaN and infinite
-- timeouts raise).
local ringline = require "ringline"
local support = require "support"

local run, server = support.run, support.server
local SPEC = "frontdoor_spec.lua:"

-- The error of fn(...) and the line of this file that made the call.
local function raised(fn, ...)
  local line = debug.getinfo(2, "l").currentline
  local ok, err = pcall(fn, ...)
  assert.is_false(ok, "expected an error")
  return tostring(err), line
end

describe("unknown options", function()
  it("are refused by listen, connect, udp, region and configure, naming the key and the valid ones", function()
    local r = run(function()
      local out = {}
      out.listen = { pcall(ringline.listen, 0, function() end, { max_conections = 5 }) }
      out.connect = { pcall(ringline.connect, "127.0.0.1", 1, { timout = 1 }) }
      out.udp = { pcall(ringline.udp, { bind = "x" }) }
      out.region = { pcall(ringline.region, 4096, { huge = true }) }
      return out
    end)
    -- configure works until the first I/O: a run without support.run's deadline
    r.configure = ringline.run(function()
      return { pcall(ringline.configure, { recv_windw = 4096 }) }
    end)
    assert.is_false(r.listen[1])
    assert.matches("ringline.listen: unknown option 'max_conections' (valid: accept, backlog, "
      .. "max_connections, mode, nodelay, reuseport, ssl)", r.listen[2], 1, true)
    assert.is_false(r.connect[1])
    assert.matches("ringline.connect: unknown option 'timout' (valid: backlog, bind, pool, pool_size, ssl, timeout)",
      r.connect[2], 1, true)
    assert.is_false(r.udp[1])
    assert.matches("ringline.udp: unknown option 'bind' (valid: none)", r.udp[2], 1, true)
    assert.is_false(r.region[1])
    assert.matches("ringline.region: unknown option 'huge' (valid: none)", r.region[2], 1, true)
    assert.is_false(r.configure[1])
    assert.matches("line_max, ", r.configure[2], 1, true)
    assert.matches("ringline.configure: unknown configuration key 'recv_windw' (valid: ",
      r.configure[2], 1, true)
    assert.matches("recv_window", r.configure[2], 1, true)
  end)

  it("raise at the caller's line", function()
    local r = run(function()
      local out = {}
      local function at(fn, ...)
        -- the call is made by the function on the next line (a Lua caller, with a line)
        local ok, err = pcall(function(...) fn(...) end, ...)
        return { ok, err, debug.getinfo(1, "l").currentline - 1 }
      end
      out[1] = at(ringline.listen, 0, function() end, { bogus = 1 })
      out[2] = at(ringline.connect, "127.0.0.1", 1, { bogus = 1 })
      out[3] = at(ringline.udp, { bogus = 1 })
      out[4] = at(ringline.region, 4096, { bogus = 1 })
      out[5] = at(ringline.connect, "127.0.0.1", 1, { ssl_verify = true })
      out[6] = at(ringline.sleep, -1)
      out[7] = at(ringline.connect, "127.0.0.1", 1, { timeout = -1 })
      -- the calls' other misuses too (ringline.listen/connect tail-call the
      -- modules that check)
      out[8] = at(ringline.listen, -5, function() end)
      out[9] = at(ringline.listen, 0, function() end, { accept = "x" })
      out[10] = at(ringline.connect, "127.0.0.1", -5)
      out[11] = at(ringline.connect, "127.0.0.1", 1, { bind = "127.0.0.1:99999" })
      return out
    end)
    r[0] = ringline.run(function()
      local line = debug.getinfo(1, "l").currentline
      local ok, err = pcall(function() ringline.configure({ bogus = 1 }) end)
      return { ok, err, line + 1 }
    end)
    for i = 0, 11 do
      local o = r[i]
      assert.is_false(o[1], i)
      assert.matches(SPEC .. o[3] .. ":", o[2], 1, true)
    end
  end)

  it("called straight from pcall, raise at the line of the pcall", function()
    local r = run(function()
      local line = debug.getinfo(1, "l").currentline
      local _, e1 = pcall(ringline.listen, 0, function() end, { bogus = 1 })
      local _, e2 = pcall(ringline.connect, "127.0.0.1", 1, { ssl_verify = true })
      return { e1, e2, line }
    end)
    assert.matches(SPEC .. (r[3] + 1) .. ": ringline.listen: unknown option 'bogus'", r[1], 1, true)
    assert.matches(SPEC .. (r[3] + 2) .. ": ringline.connect: option 'ssl_verify'", r[2], 1, true)
  end)

  it("ringline.config names an unknown key and lists the valid ones", function()
    local err = ringline.run(function()
      return select(2, pcall(ringline.config, "recv_windw"))
    end)
    assert.matches("ringline.config: unknown configuration key 'recv_windw' (valid: ", err, 1, true)
    assert.matches("line_max, ", err, 1, true)
  end)

  it("ringline.run's opts list the configuration keys and run's own", function()
    local err = raised(function() ringline.run({ timeuot = 1 }, function() end) end)
    assert.matches("ringline.run: unknown configuration key 'timeuot' (valid: ", err, 1, true)
    assert.matches("drain_timeout, ", err, 1, true)
    assert.matches("on_error", err, 1, true)
    assert.matches(SPEC, err, 1, true)
  end)

  it("flat ssl_verify, server_name, ssl_ca: refused (TLS is asked with ssl = {...}), nothing goes out in plaintext", function()
    local r = run(function()
      local accepted = 0
      local lst, port = server(function() accepted = accepted + 1 end)
      local out = {}
      for _, o in ipairs { { ssl = true, ssl_verify = true }, { ssl_verify = true },
                           { server_name = "example.com" }, { ssl_ca = "x.pem" } } do
        out[#out + 1] = { pcall(ringline.connect, "127.0.0.1", port, o) }
      end
      out.listen = { pcall(ringline.listen, 0, function() end, { ssl = true }) }
      out.listen2 = { pcall(ringline.listen, 0, function() end, { ssl_cert = "x.pem" }) }
      -- a plain connect afterwards is accepted: had one of those connected,
      -- the count would be above 1
      local c = assert(ringline.connect("127.0.0.1", port))
      c:close()
      assert(support.eventually(function() return accepted >= 1 end))
      lst:close()
      out.accepted = accepted
      return out
    end)
    for i = 1, 4 do
      assert.is_false(r[i][1])
      assert.matches("ringline.connect: option '[%w_]+' is not supported %(use ssl = { ... }; the "
        .. "connection would be plaintext%)", r[i][2])
    end
    assert.is_false(r.listen[1])
    assert.matches("ringline.listen: opts.ssl must be a table { cert = ..., key = ... }", r.listen[2], 1, true)
    assert.is_false(r.listen2[1])
    assert.matches("ringline.listen: option 'ssl_cert' is not supported (use ssl = {", r.listen2[2], 1, true)
    assert.are.equal(1, r.accepted)
  end)

  it("non-table opts are refused", function()
    local r = run(function()
      return { (pcall(ringline.udp, 1)), (pcall(ringline.region, 4096, 1)),
               (pcall(ringline.connect, "127.0.0.1", 1, 5)),
               pcall(ringline.listen, 0, function() end, "x") }
    end)
    assert.are.same({ false, false, false, false }, { r[1], r[2], r[3], r[4] })
    assert.matches("ringline.listen: opts must be a table", r[5], 1, true)
  end)
end)

describe("addresses", function()
  it("a malformed numeric address is \"invalid address\" for listen, connect and udp", function()
    local r = run(function()
      local u = ringline.udp()
      return {
        { ringline.listen("300.1.1.1:80", function() end) },
        { ringline.listen("[::zz]:80", function() end) },
        { ringline.listen("127.0.0.1:99999", function() end) },
        { ringline.connect("300.1.1.1", 80) },
        { ringline.connect("[1:2:3:4:5:6:7:8:9]", 80) },
        { ringline.connect("127.0.0.1", 80, { bind = "300.1.1.1" }) },
        { u:bind("300.1.1.1", 0) },
        { ringline.udp():sendto("300.1.1.1", 53, "x") },
        { ringline.udp():setpeername("[::zz]", 53) },
      }
    end)
    for i, res in ipairs(r) do
      assert.are.same({ nil, "invalid address" }, res, "case " .. i)
    end
  end)
end)

describe("time units", function()
  it("conn:view and conn:flush take milliseconds, as settimeout", function()
    local r = run(function()
      local lst, port = server(function(c)
        c:receive(1)          -- holds the connection open, sends nothing
      end)
      local c = assert(ringline.connect("127.0.0.1", port))
      local t0 = ringline.now()
      local a = { c:view(1, 30) }          -- 30 ms, not 30 s
      local waited = ringline.now() - t0
      local ok = { c:flush(20) }           -- nothing queued: at once
      c:send("x")
      c:close()
      lst:close()
      return { a, waited, ok }
    end)
    assert.are.same({ nil, "timeout" }, r[1])
    assert.is_true(r[2] >= 0.025 and r[2] < 5, "waited " .. r[2] .. " s")
    assert.are.same({ true }, r[3])
  end)

  it("conn:view(min, 0) and conn:flush(0) mean no limit, as settimeout(0)", function()
    local r = run(function()
      local lst, port = server(function(c)
        c:receive(1)
        ringline.sleep(0.02)      -- the reply comes later than "at once"
        c:send("y")
      end)
      local c = assert(ringline.connect("127.0.0.1", port))
      c:settimeout(5000)
      c:send("x")
      local p, n = c:view(1, 0)
      local got = p and require("ffi").string(p, n)
      local ok = { c:flush(0) }
      c:close()
      lst:close()
      return { got, ok }
    end)
    assert.are.equal("y", r[1])
    assert.are.same({ true }, r[2])
  end)

  it("negative, NaN and infinite timeouts raise, in either unit", function()
    local bad = { -1, 0 / 0, 1 / 0, "5" }
    local r = run(function()
      local lst, port = server(function(c) c:receive(1) end)
      local c = assert(ringline.connect("127.0.0.1", port))
      local u = ringline.udp()
      local sem, ch = ringline.semaphore(0), ringline.channel(1)
      local task = ringline.spawn(function() end)
      local calls = {
        ["ringline.sleep"] = function(v) return ringline.sleep(v) end,
        ["ringline.timer.at"] = function(v) return ringline.timer.at(v, function() end) end,
        ["ringline.timer.every"] = function(v) return ringline.timer.every(v, function() end) end,
        ["ringline.connect"] = function(v) return ringline.connect("127.0.0.1", port, { timeout = v }) end,
        ["task:join"] = function(v) return task:join(v) end,
        ["semaphore:wait"] = function(v) return sem:wait(v) end,
        ["channel:get"] = function(v) return ch:get(v) end,
        ["channel:put"] = function(v) return ch:put(1, v) end,
        ["conn:view"] = function(v) return c:view(1, v) end,
        ["conn:flush"] = function(v) return c:flush(v) end,
        ["udp:settimeout"] = function(v) return u:settimeout(v) end,
      }
      local out = {}
      for name, f in pairs(calls) do
        for _, v in ipairs(bad) do
          local ok, err = pcall(f, v)
          out[#out + 1] = { name, tostring(v), ok, err }
        end
      end
      c:close()
      lst:close()
      return out
    end)
    assert.are.equal(11 * #bad, #r)
    for _, o in ipairs(r) do
      assert.is_false(o[3], o[1] .. "(" .. o[2] .. ") did not raise")
      local unit = (o[1]:find("^conn:") or o[1]:find("^udp:")) and "milliseconds" or "seconds"
      assert.matches(o[1], o[4], 1, true)
      assert.matches("expected " .. unit .. " (a finite number >= 0)", o[4], 1, true)
    end
  end)

  it("ringline.run's timeout and drain_timeout are checked seconds", function()
    for _, k in ipairs { "timeout", "drain_timeout" } do
      for _, v in ipairs { -1, 0 / 0, 1 / 0 } do
        local err = raised(ringline.run, { [k] = v }, function() end)
        assert.matches("ringline.run: opts." .. k .. ": expected seconds", err, 1, true)
      end
    end
  end)
end)
