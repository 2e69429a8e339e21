-- bench/receive_cost.lua: what the cosocket calls cost when the bytes are
-- already buffered (issue 15: "as cheap as a C function call"), in ns per
-- call of receive("*l") on 4-byte lines, receive(5), and a 5-byte send
-- that does not wait. On demand: ringline-lua bench/receive_cost.lua [N]
local ringline = require "ringline"

local N = tonumber(arg and arg[1]) or 200000

local function loaded(payload)
  local lst = assert(ringline.listen("127.0.0.1:0", function(c)
    assert(c:send(payload))
    c:close()
  end))
  local _, port = lst:getsockname()
  local c = assert(ringline.connect("127.0.0.1", port))
  assert(c:view(#payload, { max = 2 ^ 29 }))    -- every byte buffered
  lst:close()
  return c
end

local function per_call(what, fn)
  local t0 = os.clock()
  fn()
  print(("%-34s %6.1f ns/call"):format(what, (os.clock() - t0) / N * 1e9))
end

ringline.spawn(function()
  local c = loaded(("$3\r\n"):rep(N))
  per_call('receive("*l"), 4-byte lines', function()
    for _ = 1, N do c:receive("*l") end
  end)
  c:close()
  c = loaded(("x"):rep(5 * N))
  per_call("receive(5)", function()
    for _ = 1, N do c:receive(5) end
  end)
  c:close()
  -- sends to a peer that reads everything: each call queues 5 bytes
  local sink = assert(ringline.listen("127.0.0.1:0", function(s)
    while s:receiveany(65536) do end
  end))
  local _, port = sink:getsockname()
  c = assert(ringline.connect("127.0.0.1", port))
  per_call('send("+OK\\r\\n")', function()
    for _ = 1, N do c:send("+OK\r\n") end
  end)
  c:close()
  sink:close()
end)
