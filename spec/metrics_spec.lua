-- The host's metrics endpoint (--metrics, ringline.configure{metrics=},
-- bindings/host/metrics.c) and a script's own metrics (ringline.metric):
-- /metrics is read by a Prometheus text-format parser that checks every
-- line, with two workers serving; /healthz turns 503 while the process
-- drains; bad values are refused with clear errors.
local root = debug.getinfo(1, "S").source:match("^@(.*)/spec/[^/]+$") or "."
if root:sub(1, 1) ~= "/" then root = os.getenv("PWD") .. "/" .. root end
package.path = ("%s/lua/?.lua;%s/lua/?/init.lua;%s/bindings/?.lua;"):format(root, root, root)
  .. package.path
local proc = dofile(root .. "/bindings/test/proc.lua")
local build = os.getenv("RINGLINE_BUILD") or (root .. "/build")
local host = build .. "/bindings/ringline-lua"
local ringline = require "ringline"
local http = require "ringline.http"

local tmpfiles = {}
local function script(text)
  local path = os.tmpname() .. ".lua"
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
  tmpfiles[#tmpfiles + 1] = path
  return path
end

teardown(function()
  for _, p in ipairs(tmpfiles) do os.remove(p) end
end)

local function free_port()
  return ringline.run(function()
    local l = assert(ringline.listen("127.0.0.1:0", function() end))
    local _, port = l:getsockname()
    l:close()
    return port
  end)
end

------------------------------------------------------------------------
-- A parser of the Prometheus text exposition format (0.0.4) that checks
-- every line: HELP and TYPE once per family and before its samples, the
-- samples of a family together, names and labels well formed, label
-- values escaped, counters named _total, no series twice, and for each
-- histogram series: buckets in increasing le, counts not decreasing, the
-- last +Inf and equal to _count, a _sum.
------------------------------------------------------------------------
local NAME = "^[%a_:][%w_:]*$"
local LABEL = "^[%a_][%w_]*$"

local function parse_labels(s, where)
  local labels, keys, pos = {}, {}, 1
  if s:sub(pos, pos) ~= "{" then return labels, keys, s end
  pos = pos + 1
  while s:sub(pos, pos) ~= "}" do
    local name = s:match("^([%a_][%w_]*)=\"", pos)
    assert(name, where .. ": bad label at " .. s:sub(pos))
    assert(name:match(LABEL) and name:sub(1, 2) ~= "__", where .. ": bad label name " .. name)
    assert(labels[name] == nil, where .. ": label " .. name .. " twice")
    pos = pos + #name + 2
    local v = {}
    while true do
      local c = s:sub(pos, pos)
      assert(c ~= "" and c ~= "\n", where .. ": unterminated label value")
      if c == "\\" then
        local e = s:sub(pos + 1, pos + 1)
        assert(e == "\\" or e == '"' or e == "n", where .. ": bad escape \\" .. e)
        v[#v + 1] = e == "n" and "\n" or e
        pos = pos + 2
      elseif c == '"' then
        pos = pos + 1
        break
      else
        v[#v + 1] = c
        pos = pos + 1
      end
    end
    labels[name] = table.concat(v)
    keys[#keys + 1] = name
    local sep = s:sub(pos, pos)
    if sep == "," then pos = pos + 1 else assert(sep == "}", where .. ": expected , or }") end
  end
  return labels, keys, s:sub(pos + 1)
end

local function number(v)
  if v == "+Inf" then return math.huge elseif v == "-Inf" then return -math.huge
  elseif v == "NaN" then return 0 / 0 end
  return tonumber(v)
end

local function series_key(labels, skip)
  local ks = {}
  for k in pairs(labels) do if k ~= skip then ks[#ks + 1] = k end end
  table.sort(ks)
  for i, k in ipairs(ks) do ks[i] = k .. "=" .. labels[k] end
  return table.concat(ks, ",")
end

local function parse(text)
  assert(text:sub(-1) == "\n", "the exposition must end with a newline")
  local fams, done, current = {}, {}, nil
  local series = {}
  local n = 0
  for line in text:gmatch("([^\n]*)\n") do
    n = n + 1
    local where = "line " .. n .. " (" .. line .. ")"
    assert(line ~= "", where .. ": empty line")
    if line:sub(1, 1) == "#" then
      local kind, name, rest = line:match("^# (%u+) (%S+) ?(.*)$")
      assert(kind == "HELP" or kind == "TYPE", where .. ": not HELP or TYPE")
      assert(name:match(NAME), where .. ": bad name")
      assert(not done[name], where .. ": family " .. name .. " appears twice")
      if current and current ~= name then done[current] = true end
      current = name
      local f = fams[name] or { samples = {} }
      fams[name] = f
      assert(#f.samples == 0, where .. ": " .. kind .. " after samples")
      if kind == "HELP" then
        assert(not f.help, where .. ": HELP twice")
        assert(not rest:gsub("\\[\\n]", ""):find("\\", 1, true), where .. ": bad escape in HELP")
        f.help = rest
      else
        assert(not f.type, where .. ": TYPE twice")
        assert(rest == "counter" or rest == "gauge" or rest == "histogram" or rest == "summary"
          or rest == "untyped", where .. ": bad type " .. rest)
        f.type = rest
      end
    else
      local name, rest = line:match("^([%a_:][%w_:]*)(.*)$")
      assert(name, where .. ": bad metric name")
      local labels, _, tail = parse_labels(rest, where)
      local v = tail:match("^ (%S+)$")
      assert(v and number(v), where .. ": bad value")
      local fam = name
      local base, suffix = name:match("^(.-)_(%a+)$")
      if base and fams[base] and fams[base].type == "histogram" and
         (suffix == "bucket" or suffix == "sum" or suffix == "count") then
        fam = base
      end
      local f = fams[fam]
      assert(f and f.help and f.type, where .. ": sample before its HELP and TYPE")
      assert(fam == current, where .. ": samples of " .. fam .. " not together")
      if f.type == "counter" then assert(name:match("_total$"), where .. ": counter not _total") end
      if f.type == "histogram" then
        assert(fam ~= name, where .. ": histogram sample without _bucket/_sum/_count")
        if suffix == "bucket" then assert(labels.le, where .. ": bucket without le") end
      end
      local key = name .. "{" .. series_key(labels) .. "}"
      assert(not series[key], where .. ": series twice")
      series[key] = true
      f.samples[#f.samples + 1] = { name = name, labels = labels, value = number(v) }
    end
  end
  -- histograms: per series (labels without le)
  for fname, f in pairs(fams) do
    if f.type == "histogram" then
      local by = {}
      for _, s in ipairs(f.samples) do
        local k = series_key(s.labels, "le")
        local h = by[k] or { buckets = {} }
        by[k] = h
        if s.name == fname .. "_bucket" then
          h.buckets[#h.buckets + 1] = { le = number(s.labels.le), n = s.value }
        elseif s.name == fname .. "_sum" then h.sum = s.value
        else h.count = s.value end
      end
      for k, h in pairs(by) do
        local what = fname .. "{" .. k .. "}"
        assert(#h.buckets > 0 and h.sum and h.count, what .. ": incomplete histogram")
        for i = 2, #h.buckets do
          assert(h.buckets[i].le > h.buckets[i - 1].le, what .. ": le not increasing")
          assert(h.buckets[i].n >= h.buckets[i - 1].n, what .. ": bucket counts decrease")
        end
        local last = h.buckets[#h.buckets]
        assert(last.le == math.huge, what .. ": the last bucket is not +Inf")
        assert(last.n == h.count, what .. ": +Inf bucket ~= _count")
      end
    end
  end
  return fams
end

-- The value of the sample `name` whose labels are exactly `labels`.
local function value(fams, name, labels)
  local want = series_key(labels or {})
  for _, f in pairs(fams) do
    for _, s in ipairs(f.samples) do
      if s.name == name and series_key(s.labels) == want then return s.value end
    end
  end
  return nil
end

local function fetch(addr, path)
  local res, err = http.get("http://" .. addr .. path, { timeout = 5000, keepalive = false })
  assert(res, err)
  return res.status, res:body()
end

describe("the parser of this spec", function()
  it("refuses what Prometheus would", function()
    local bad = {
      "x 1\n",                                                   -- no HELP/TYPE
      "# HELP x_total a\n# TYPE x_total counter\nx_total{a=\"1} 1\n", -- unterminated
      "# HELP x a\n# TYPE x counter\nx 1\n",                   -- counter not _total
      "# HELP h h\n# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n",
      "# HELP h h\n# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 1\nh_count 3\n",
      "# HELP g g\n# TYPE g gauge\ng 1\ng 2\n",                  -- series twice
      "# HELP g g\n# TYPE g gauge\ng 1",                          -- no final newline
      "# HELP g g\n# TYPE g gauge\ng{1a=\"x\"} 1\n",               -- bad label name
    }
    for i, t in ipairs(bad) do
      assert.is_false(pcall(parse, t), "case " .. i)
    end
    assert.is_truthy(parse("# HELP g a \\\\ b\n# TYPE g gauge\ng{a=\"q\\\"\\n\"} 1.5\ng 2\n"))
  end)
end)

describe("ringline-lua --metrics", function()
  local SERVER = [[
    local ringline = require "ringline"
    local port, maddr = tonumber(arg[1]), arg[2]
    local id = ringline.worker_id()
    ringline.configure{ metrics = maddr }   -- every worker: the same address is no change
    local hits = ringline.metric.counter("app_hits", "Requests by route.", { "route" })
    local who = ringline.metric.gauge("app_worker", "This worker's id plus one.")
    who:set(id + 1)
    local size = ringline.metric.histogram("app_line_bytes", "Request line sizes.", { 1, 10, 100 })
    -- escaping: a label value and a help text with quote, backslash, newline
    ringline.metric.gauge("app_odd", "Odd \\ help\nwith a newline.", { "v" })
      :labels('q"b\\n\n'):set(1)
    assert(ringline.listen("127.0.0.1:" .. port, function(conn)
      local line = assert(conn:receive("*l"))
      hits:labels{ route = line }:inc()
      size:observe(#line)
      local gate = tonumber(line:match("^hold (%d+)$"))
      if gate then
        -- the drain waits for this handler: it waits on an outbound
        -- connection (those keep working) until the spec says go
        local g = assert(ringline.connect("127.0.0.1", gate))
        conn:send(id .. "\n")
        g:receive("*l")
        g:close()
      else
        conn:send(id .. "\n")
      end
      conn:close()
    end))
    print(("listening %d %s"):format(id, ringline.metric.address()))
  ]]

  it("serves every core, Lua and script metric per worker and in total, and /healthz", function()
    local port = free_port()
    local srv = proc.spawn(proc.quote(host) .. " -w 2 --no-pin " .. script(SERVER) .. " "
      .. port .. " 127.0.0.1:0", 30)
    local addrs = {}
    for i = 1, 2 do
      local w, a = srv:expect("^listening (%d) (%S+)$")
      assert(w, "worker " .. i .. " did not start: " .. tostring(a))
      addrs[#addrs + 1] = a
    end
    assert.are.equal(addrs[1], addrs[2])
    local maddr = addrs[1]
    assert.is_truthy(maddr:match("^127%.0%.0%.1:%d+$"), maddr)

    local N = 40
    local fams, served, holder
    ringline.run({ timeout = 20 }, function()
      served = { ["0"] = 0, ["1"] = 0, a = 0, bb = 0 }
      local tasks = {}
      for i = 1, N do
        tasks[i] = ringline.spawn(function()
          local route = i % 4 == 0 and "bb" or "a"
          local c = assert(ringline.connect("127.0.0.1", port, { timeout = 5 }))
          c:settimeout(5000)
          assert(c:send(route .. "\n"))
          local w = assert(c:receive("*l"))
          c:close()
          return w, route
        end)
      end
      for i = 1, N do
        local ok, w, route = tasks[i]:join()
        assert(ok, w)
        served[w] = served[w] + 1
        served[route] = served[route] + 1
      end
      local status, body = fetch(maddr, "/metrics")
      assert.are.equal(200, status)
      fams = parse(body)
      status, body = fetch(maddr, "/healthz")
      assert.are.equal(200, status)
      assert.are.equal("ok\n", body)
      assert.are.equal(404, (fetch(maddr, "/nope")))
      local mh, mp = maddr:match("^(.*):(%d+)$")
      local function raw(req)
        local c = assert(ringline.connect(mh, tonumber(mp), { timeout = 5 }))
        c:settimeout(5000)
        assert(c:send(req))
        local all = c:receive("*a")
        c:close()
        return all
      end
      assert.is_truthy(raw("POST /metrics HTTP/1.0\r\n\r\n"):find("^HTTP/1.1 405 "))
      assert.is_truthy(raw("GET /metrics HTTP/1.0\r\nX: " .. ("a"):rep(5000) .. "\r\n\r\n")
        :find("^HTTP/1.1 431 "))
      local head = raw("HEAD /metrics HTTP/1.0\r\n\r\n")
      assert.is_truthy(head:find("^HTTP/1.1 200 "))
      assert.is_truthy(head:find("\r\n\r\n$"), head)          -- no body
      assert.is_truthy(tonumber(head:match("Content%-Length: (%d+)")) > 1000)

      -- a connection the drain waits for, then the stop: /healthz turns
      -- 503 while the process still serves (observed, then released)
      local gate, release = ringline.channel(1), ringline.channel(1)
      local gl = assert(ringline.listen("127.0.0.1:0", function(c)
        gate:put(c)
        release:get()    -- the connection lives while its handler does
      end))
      local _, gport = gl:getsockname()
      holder = assert(ringline.connect("127.0.0.1", port, { timeout = 5 }))
      holder:settimeout(5000)
      assert(holder:send("hold " .. gport .. "\n"))
      assert(holder:receive("*l"))
      local gc = gate:get()
      srv:signal("TERM")
      local seen
      for _ = 1, 500 do
        local st = fetch(maddr, "/healthz")
        if st == 503 then seen = st break end
        assert.are.equal(200, st)
        ringline.sleep(0.01)
      end
      assert.are.equal(503, seen, "/healthz never answered 503 during the drain")
      status = fetch(maddr, "/metrics")      -- still served while draining
      assert.are.equal(200, status)
      assert(gc:send("go\n"))
      assert(gc:flush())
      release:put(true)
      gl:close()
      holder:close()
    end)
    local code, _, err = srv:wait()
    assert.are.equal(0, code, err)

    -- every counter of ringline.metrics(): per worker, and the total their sum
    local gauges = {}
    for _, k in ipairs(ringline._METRICS) do
      local name = "ringline_" .. k
      local f = fams[name] or fams[name .. "_total"]
      assert(f, "missing: " .. name)
      if fams[name] then gauges[k] = true; assert.are.equal("gauge", f.type, name)
      else name = name .. "_total"; assert.are.equal("counter", f.type, name) end
      assert.is_true(#f.help > 0, name)
      local w0, w1 = value(fams, name, { worker = "0" }), value(fams, name, { worker = "1" })
      assert(w0 and w1, name .. ": a worker's series is missing")
      assert.are.equal(w0 + w1, value(fams, name), name)
    end
    assert.is_true(gauges.conns_open and gauges.ops_inflight and not gauges.bytes_in)
    -- the Lua layer's counters and the host's
    for _, name in ipairs({ "ringline_tasks", "ringline_listeners", "ringline_tasks_refused_total",
                            "ringline_conns_refused_per_ip_total", "ringline_conns_shed_total",
                            "ringline_watchdog_stalls_total", "ringline_log_dropped_total" }) do
      assert(value(fams, name, { worker = "0" }) and value(fams, name, { worker = "1" })
        and value(fams, name), name)
    end
    assert.are.equal(1, value(fams, "ringline_listeners", { worker = "0" }))
    assert.are.equal(1, value(fams, "ringline_listeners", { worker = "1" }))
    -- what this spec did, counted where it happened
    for _, w in ipairs({ "0", "1" }) do
      local acc = value(fams, "ringline_conns_accepted_total", { worker = w })
      assert.are.equal(served[w], acc, "worker " .. w)
      -- each connection sent its line: one accept-to-first-byte each
      assert.are.equal(acc, value(fams, "ringline_accept_first_byte_seconds_count", { worker = w }))
      assert.is_true(value(fams, "ringline_loop_seconds_count", { worker = w }) > 0)
      assert(value(fams, "ringline_guard_hold_seconds_count", { worker = w }), "guard hold")
    end
    assert.are.equal("histogram", fams.ringline_loop_seconds.type)
    assert.are.equal("histogram", fams.ringline_guard_hold_seconds.type)
    -- the script's metrics, from both workers, summed
    assert.are.equal("counter", fams.app_hits_total.type)
    assert.are.equal(served.a, value(fams, "app_hits_total", { route = "a" }))
    assert.are.equal(served.bb, value(fams, "app_hits_total", { route = "bb" }))
    assert.are.equal(served["0"], (value(fams, "app_hits_total", { route = "a", worker = "0" }) or 0)
      + (value(fams, "app_hits_total", { route = "bb", worker = "0" }) or 0))
    assert.are.equal(1, value(fams, "app_worker", { worker = "0" }))
    assert.are.equal(2, value(fams, "app_worker", { worker = "1" }))
    assert.are.equal(3, value(fams, "app_worker"))
    assert.are.equal(2, value(fams, "app_odd", { v = 'q"b\\n\n' }))
    assert.are.equal("Odd \\\\ help\\nwith a newline.", fams.app_odd.help)   -- escaped as the format says
    assert.are.equal(N, value(fams, "app_line_bytes_count"))
    assert.are.equal(N, value(fams, "app_line_bytes_bucket", { le = "10" }))
    assert.are.equal(served.a, value(fams, "app_line_bytes_bucket", { le = "1" }))   -- le: <=
    assert.are.equal(served.a * 1 + served.bb * 2, value(fams, "app_line_bytes_sum"))
  end)

  it("keeps the counters of a worker that ended, and drops its gauges", function()
    local port = free_port()
    local srv = proc.spawn(proc.quote(host) .. " -w 2 --no-pin --metrics 127.0.0.1:0 " .. script [[
      local ringline = require "ringline"
      local id = ringline.worker_id()
      local c = ringline.metric.counter("app_done", "Work done.")
      local g = ringline.metric.gauge("app_busy", "Busy.")
      c:inc(id + 1)
      g:set(10 * (id + 1))
      if id == 0 then
        assert(ringline.listen("127.0.0.1:" .. arg[1], function(conn) ringline.exit(0) end))
        -- no scrape before worker 1 is on its way out
        local bye = ringline.channel(1)
        ringline.worker.on_message(function(_, m) bye:put(m) end)
        bye:get()
        print("serving " .. ringline.metric.address())
      else
        ringline.sleep(0)          -- the worker exists (registered)
        ringline.worker.post(0, "bye")
      end
    ]] .. " " .. port, 30)
    local maddr = srv:expect("^serving (%S+)$")
    assert(maddr, "did not start")
    local fams
    ringline.run({ timeout = 20 }, function()
      for _ = 1, 500 do        -- until worker 1 has counted and ended (observed)
        local _, body = fetch(maddr, "/metrics")
        fams = parse(body)
        if value(fams, "app_done_total", { worker = "1" }) and
           not value(fams, "app_busy", { worker = "1" }) then break end
        ringline.sleep(0.01)
      end
      local c = assert(ringline.connect("127.0.0.1", port))
      c:close()
    end)
    local code, _, err = srv:wait()
    assert.are.equal(0, code, err)
    assert.is_nil(value(fams, "app_busy", { worker = "1" }))
    assert.are.equal(10, value(fams, "app_busy", { worker = "0" }))
    assert.are.equal(10, value(fams, "app_busy"))
    assert.are.equal(1, value(fams, "app_done_total", { worker = "0" }))
    assert.are.equal(2, value(fams, "app_done_total", { worker = "1" }))
    assert.are.equal(3, value(fams, "app_done_total"))
    assert.are.equal(0, value(fams, "ringline_timers_active", { worker = "1" }))
    assert.is_true(value(fams, "ringline_loop_iterations_total", { worker = "1" }) > 0)
  end)

  it("refuses a bad address (status 2) and one in use (status 1), saying why", function()
    local code, out, err = proc.run(proc.quote(host) .. " --metrics nonsense:x -e 'x=1'")
    assert.are.equal(2, code)
    assert.is_truthy(err:find("--metrics: 'nonsense:x': expected host:port", 1, true), err)
    code, _, err = proc.run(proc.quote(host) .. " -e 'x=1' --metrics")
    assert.are.equal(2, code)
    assert.is_truthy(err:find("option '--metrics' needs an address", 1, true), err)
    ringline.run(function()
      local l = assert(ringline.listen("127.0.0.1:0", function() end))
      local _, port = l:getsockname()
      code, _, err = proc.run(proc.quote(host) .. " --metrics 127.0.0.1:" .. port .. " -e 'x=1'")
      l:close()
    end)
    assert.are.equal(1, code)
    assert.is_truthy(err:find("--metrics: '127.0.0.1:%d+': Address already in use"), err)
    -- from the script: a failed bind leaves no descriptor behind
    ringline.run(function()
      local l = assert(ringline.listen("127.0.0.1:0", function() end))
      local _, port = l:getsockname()
      code, out, err = proc.run(proc.quote(host) .. " " .. script([[
        local ffi = require "ffi"
        pcall(ffi.cdef, "int getpid(void);")
        local ringline = require "ringline"
        local function nfd()
          -- not the pipes: popen's own come and go while ls looks
          local p = io.popen("ls -l /proc/" .. ffi.C.getpid() .. "/fd | grep -vc 'pipe:'")
          local n = tonumber(p:read("*a"))
          p:close()
          return n
        end
        local before = nfd()
        for _ = 1, 5 do
          local ok, e = pcall(ringline.configure, { metrics = arg[1] })
          assert(not ok and e:find("Address already in use", 1, true), e)
        end
        print("fds " .. before .. " " .. nfd() .. " " .. tostring(ringline.metric.address()))
      ]]) .. " 127.0.0.1:" .. port)
      l:close()
    end)
    assert.are.equal(0, code, err)
    local before, after, addr = out:match("fds (%d+) (%d+) (%S+)")
    assert.are.equal(before, after)
    assert.are.equal("nil", addr)
    -- from the script: a second, different address is refused
    code, _, err = proc.run(proc.quote(host) .. [[ --metrics 127.0.0.1:0 -e '
      local ringline = require "ringline"
      ringline.configure{ metrics = "127.0.0.1:1" }']])
    assert.are.equal(1, code)
    assert.is_truthy(err:find("metrics: already serving metrics on 127.0.0.1:0", 1, true), err)
  end)
end)

describe("ringline.metric", function()
  it("validates names, labels, buckets and values with clear errors", function()
    local m = ringline.metric
    local function fails(pat, fn, ...)
      local ok, err = pcall(fn, ...)
      assert.is_false(ok)
      assert.is_truthy(tostring(err):find(pat, 1, true), tostring(err))
    end
    fails("bad metric name '1x'", m.counter, "1x", "h")
    fails("bad metric name 'a-b'", m.gauge, "a-b", "h")
    fails("names starting with 'ringline_' are the runtime's", m.counter, "ringline_x", "h")
    fails("help must be a string", m.counter, "spec_c", nil)
    fails("bad label name 'a b'", m.counter, "spec_c", "h", { "a b" })
    fails("bad label name '__x'", m.counter, "spec_c", "h", { "__x" })
    fails("the label name 'worker' is reserved", m.counter, "spec_c", "h", { "worker" })
    fails("the label name 'le' is reserved", m.histogram, "spec_h", "h", nil, { "le" })
    fails("label name 'a' given twice", m.counter, "spec_c", "h", { "a", "a" })
    fails("strictly increasing", m.histogram, "spec_h", "h", { 1, 1 })
    fails("strictly increasing", m.histogram, "spec_h", "h", { 1, math.huge })
    fails("non-empty list", m.histogram, "spec_h", "h", {})
    fails("may not end in _count", m.histogram, "spec_h_count", "h")
    local c = m.counter("spec_requests", "Requests.", { "route", "code" })
    assert.are.equal(c, m.counter("spec_requests_total", "Requests.", { "route", "code" }))
    fails("registered already", m.gauge, "spec_requests_total", "h")
    fails("registered already", m.counter, "spec_requests", "h", { "route" })
    fails("expected 2 label value(s) (route, code), got 1", c.labels, c, "/x")
    fails("label 'code' missing", c.labels, c, { route = "/x" })
    fails("unknown label", c.labels, c, { route = "/x", code = 200, x = 1 })
    fails("label values must be strings or numbers", c.labels, c, "/x", true)
    fails("this metric has no labels", m.gauge("spec_g", "g").labels, m.gauge("spec_g", "g"), "x")
    local child = c:labels("/x", 200)
    assert.are.equal(child, c:labels{ route = "/x", code = 200 })
    child:inc()
    child:inc(2)
    assert.are.equal(3, child.cell[0])
    fails("a counter only goes up", child.inc, child, -1)
    fails("expected a number", child.inc, child, "1")
    local g = m.gauge("spec_temp", "Temperature.")
    g:set(5); g:inc(); g:dec(2)
    assert.are.equal(4, g.cell[0])
    local h = m.histogram("spec_lat", "Latency.", { 0.1, 1 })
    h:observe(0.1); h:observe(0.5); h:observe(3)
    assert.are.same({ 1, 1, 1, 3.6 }, { h.cell[0], h.cell[1], h.cell[2], h.cell[3] })
  end)

  it("configure{metrics=} wants an address, and the host", function()
    ringline.run(function()
      local ok, err = pcall(ringline.configure, { metrics = 9090 })
      assert.is_false(ok)
      assert.is_truthy(err:find("metrics: expected an address (host:port), got 9090", 1, true), err)
      ok, err = pcall(ringline.configure, { metrics = "127.0.0.1:9090" })
      assert.is_false(ok)
      assert.is_truthy(err:find("only the ringline-lua host serves metrics", 1, true), err)
    end)
  end)
end)
