-- Two instances behind haproxy (Debian's), restarted one after the other
-- under HTTP keep-alive load: no request fails. haproxy checks each
-- instance's health endpoint (--metrics: GET /healthz, 503 once it drains)
-- every 100 ms, retries a request that met a refused connect or a
-- connection closed before any answer on the other instance (retry-on,
-- redispatch: GET is idempotent), and the instance stopping drains
-- (SIGTERM) what it has.
-- The configuration is deploy/haproxy/haproxy.cfg's, with the ports and
-- check timings of a test.
local ringline = require "ringline"
local support = require "support"
local ops = require "hostops"

local proc = ops.proc

local function haproxy_cfg(front, a, b, ma, mb)
  return ([[
global
  maxconn 4096
defaults
  mode http
  timeout connect 1s
  timeout client 10s
  timeout server 10s
  retries 3
  option redispatch 1
  retry-on all-retryable-errors
  http-reuse safe
  default-server inter 100ms fall 1 rise 1
frontend front
  bind 127.0.0.1:%d
  default_backend ringline
backend ringline
  balance roundrobin
  option httpchk GET /healthz
  http-check expect status 200
  server a 127.0.0.1:%d check port %d
  server b 127.0.0.1:%d check port %d
]]):format(front, a, ma, b, mb)
end

describe("behind haproxy", function()
  teardown(ops.cleanup)

  it("a rolling restart of two instances under load loses no request", function()
    local front, pa, pb = ops.free_port(), ops.free_port(), ops.free_port()
    local ma, mb = ops.free_port(), ops.free_port()
    local cfg = ops.file(haproxy_cfg(front, pa, pb, ma, mb), ".cfg")
    local ha = proc.spawn("haproxy -db -f " .. proc.quote(cfg), 60)
    finally(function() ha:stop() end)
    local function instance(name, port)
      return ops.spawn(ops.file(ops.http_script(name)), "127.0.0.1:" .. port,
        ("--drain-timeout 2 --metrics 127.0.0.1:%d"):format(port == pa and ma or mb))
    end
    local a = instance("a1", pa)
    local b = instance("b1", pb)
    local out = ringline.run({ timeout = 40 }, function()
      -- haproxy is up and sees both
      assert(support.eventually(function()
        local c = ringline.connect("127.0.0.1", front, { timeout = 1 })
        if c then c:close() end
        return c ~= nil
      end, 10), "haproxy listens")
      local stats, stop = ops.load(front, 8, { fresh = true, http = true })
      assert(support.eventually(function()
        return (stats.seen.a1 or 0) > 50 and (stats.seen.b1 or 0) > 50
      end, 10), "both instances serve")
      -- restart a, wait until its new process answers through haproxy,
      -- then the same with b
      local codes = {}
      codes[1] = { a:stop() }
      a = instance("a2", pa)
      assert(support.eventually(function() return (stats.seen.a2 or 0) > 50 end, 10),
        "a's new process serves")
      codes[2] = { b:stop() }
      b = instance("b2", pb)
      assert(support.eventually(function() return (stats.seen.b2 or 0) > 50 end, 10),
        "b's new process serves")
      stop()
      return { stats = stats, codes = codes }
    end)
    for _, srv in ipairs { a, b } do
      local code, _, err = srv:stop()
      assert.are.equal(0, code, err)
    end
    for _, c in ipairs(out.codes) do assert.are.equal(0, c[1], c[3]) end
    local s = out.stats
    assert.are.equal(0, s.fail, tostring(s.why))
    assert.is_true(s.ok >= 200)
  end)
end)
