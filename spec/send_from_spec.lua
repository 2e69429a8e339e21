-- conn:send_from(src [, max]): bytes move from one connection's receive
-- buffer into another's (or its own) send queue, in order, once, with the
-- side of a failure reported.
local ringline = require "ringline"
local support = require "support"

describe("conn:send_from", function()
  it("echoes 8 MiB byte-exact from a connection into itself", function()
    local big = support.pattern(8 * 1024 * 1024, 7)
    local got = support.run(function()
      local lst, port = support.server(function(c)
        while c:send_from(c) do end
      end)
      local c = support.connect(port)
      local reader = ringline.spawn(function() return c:receive(#big) end)
      assert(c:send(big))
      local ok, data = reader:join()
      assert(ok)
      c:close()
      lst:close()
      return data
    end)
    assert.are.equal(#big, #got)
    assert(got == big, "echoed bytes differ")
  end)

  it("relays between two connections in order, one-byte arrivals included", function()
    local msg = support.pattern(5000, 3)
    local got = support.run(function()
      local sink_data = {}
      local done = support.event()
      local sink, sport = support.server(function(c)
        local d = c:receive("*a")
        sink_data[1] = d
        done.set(true)
      end)
      local relay, rport = support.server(function(c)
        local up = support.connect(sport)
        while true do
          local n, err, side = up:send_from(c, 7)   -- at most 7 bytes a call
          if not n then
            assert.are.equal("receive", side)
            assert.are.equal("closed", err)
            break
          end
          assert(n >= 1 and n <= 7)
        end
        up:close()
      end)
      local c = support.connect(rport)
      support.dribble(c, msg:sub(1, 50))
      assert(c:send(msg:sub(51)))
      c:close()
      done.wait()
      sink:close()
      relay:close()
      return sink_data[1]
    end)
    assert(got == msg, "relayed bytes differ")
  end)

  it("reports a closed destination as a send failure and consumes nothing", function()
    support.run(function()
      local sink, sport = support.server(function(c) c:receive("*a") end)
      local lst, port = support.server(function(c)
        local other = support.connect(sport)
        other:close()
        local p, n = c:view(3)
        assert(p and n >= 3)
        local r, err, side = other:send_from(c)
        assert.is_nil(r)
        assert.are.equal("closed", err)
        assert.are.equal("send", side)
        assert.are.equal("abc", c:receive(3))   -- still there
        assert(c:send("ok"))
      end)
      local c = support.connect(port)
      assert(c:send("abc"))
      assert.are.equal("ok", c:receive(2))
      c:close()
      lst:close()
      sink:close()
    end)
  end)

  it("refuses a source that is not a connection and a bad max", function()
    support.run(function()
      local lst, port = support.server(function(c)
        assert.has_error(function() c:send_from("x") end)
        assert.has_error(function() c:send_from(c, 0) end)
        assert.has_error(function() c:send_from(c, "7") end)
      end)
      local c = support.connect(port)
      assert.are.equal("closed", select(2, c:receive(1)))
      lst:close()
    end)
  end)
end)
