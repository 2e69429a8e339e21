-- tls_idle.lua: open N TLS connections to HOST:PORT, finish each handshake,
-- print "ready N", then hold them idle until killed. For bench/tls.sh's
-- memory per idle TLS connection (the server's RSS before and after).
--
--   N=2000 PORT=8443 ringline-lua bench/tls_idle.lua
local ringline = require "ringline"

local n = tonumber(os.getenv("N") or "2000")
local host, port = os.getenv("HOST") or "127.0.0.1", tonumber(os.getenv("PORT") or "8443")
local plain = os.getenv("PLAIN") == "1" -- for the baseline: the same without TLS
local conns, failed = {}, 0
local sem = ringline.semaphore(32) -- handshakes in flight at once
local done = ringline.semaphore(0)
for i = 1, n do
  ringline.spawn(function()
    sem:wait()
    local c, err = ringline.connect(host, port, { ssl = (not plain) and { verify = false } or nil, timeout = 30 })
    sem:post()
    if c then conns[i] = c else failed = failed + 1; io.stderr:write("tls_idle: ", err, "\n") end
    done:post()
    if c then ringline.sleep(1e6) end -- the task owns its connection: keep it open
  end)
end
for _ = 1, n do done:wait() end
print(("ready %d failed %d"):format(n - failed, failed))
io.stdout:flush()
ringline.sleep(1e6)
