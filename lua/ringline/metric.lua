-- ringline.metric: a script's own counters, gauges and histograms, served
-- by the host's metrics endpoint (--metrics ADDR, bindings/host/metrics.c)
-- with the core's, in the Prometheus text format.
--
-- The convention is the Prometheus clients' (Python's prometheus_client):
--   local hits = ringline.metric.counter("app_hits", "Requests served.", { "route" })
--   hits:labels("/x"):inc()          -- label values in the order of the names
--   hits:labels{ route = "/x" }:inc(2)
--   local up = ringline.metric.gauge("app_up", "Up.")   -- no labels:
--   up:set(1)                                            -- the methods are its own
-- A counter's name gets "_total" when it does not end so (as the Python
-- client does). Every worker runs the script and so makes the same metric:
-- the host keeps one family per name (the same definition again is the
-- same metric, another is an error), each worker writes its own cell of
-- each label set (plain stores into host memory, no lock, no message) and a
-- scrape prints every worker's value (label worker="N") and their sum.
--
-- Outside the host (busted, plain LuaJIT) the same calls work on cells of
-- their own that nothing serves, so a module using them runs anywhere.
local ffi = require "ffi"
local H = require "ringline.host"
local log = require "ringline.log"

local type, error, tostring, tonumber, select = type, error, tostring, tonumber, select
local setmetatable, pairs, ipairs = setmetatable, pairs, ipairs
local concat = table.concat
local ffi_new, ffi_string = ffi.new, ffi.string
local huge = math.huge

local M = {}

-- Host memory is indexed by this worker's slot (hostinfo.slot where the
-- host runs generations of workers side by side, else the worker id).
local hostinfo = H and require "ringline.hostinfo"
local WORKER = hostinfo and tonumber(hostinfo.slot) or log.worker_id
local MSGLEN = 256
local msg = ffi_new("char[?]", MSGLEN)

-- The Lua side's own counters, read by a scrape (rl_host_stats): the
-- host's slot of this worker, or a private one nobody reads (the loop
-- writes the same fields either way, without a branch).
local stats_t = ffi.typeof("struct { double tasks, listeners, tasks_refused, " ..
  "conns_refused_per_ip, conns_shed; }")
function M._stats_slot()
  local s = H and H.rl_host_stats(WORKER)
  if s ~= nil and s then return s end
  return stats_t()
end

local TYPES = { counter = 1, gauge = 2, histogram = 3 }
local DEFAULT_BUCKETS = { 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10 }
local MAX_BUCKETS = 64

-- This VM's families by name: a second call with the same definition
-- returns the same object.
local families = {}

local function check_name(fn, name)
  if type(name) ~= "string" or not name:match("^[%a_:][%w_:]*$") then
    error(("%s: bad metric name %s (want [a-zA-Z_:][a-zA-Z0-9_:]*)"):format(fn,
      type(name) == "string" and ("'" .. name .. "'") or tostring(name)), 3)
  end
  if name:sub(1, 9) == "ringline_" then
    error(fn .. ": metric names starting with 'ringline_' are the runtime's", 3)
  end
end

local function check_labels(fn, labels, histogram)
  if labels == nil then return {} end
  if type(labels) ~= "table" then
    error(fn .. ": labels must be a list of label names, got " .. type(labels), 3)
  end
  local seen, out = {}, {}
  for i, l in ipairs(labels) do
    if type(l) ~= "string" or not l:match("^[%a_][%w_]*$") or l:sub(1, 2) == "__" then
      error(("%s: bad label name %s (want [a-zA-Z_][a-zA-Z0-9_]*, not starting with __)")
        :format(fn, type(l) == "string" and ("'" .. l .. "'") or tostring(l)), 3)
    end
    if l == "worker" or (histogram and l == "le") then
      error(fn .. ": the label name '" .. l .. "' is reserved", 3)
    end
    if seen[l] then error(fn .. ": label name '" .. l .. "' given twice", 3) end
    seen[l] = true
    out[i] = l
  end
  if #out ~= (function() local n = 0 for _ in pairs(labels) do n = n + 1 end return n end)() then
    error(fn .. ": labels must be a list of label names", 3)
  end
  return out
end

local function check_buckets(fn, buckets)
  if buckets == nil then buckets = DEFAULT_BUCKETS end
  if type(buckets) ~= "table" or #buckets == 0 then
    error(fn .. ": buckets must be a non-empty list of increasing numbers", 3)
  end
  if #buckets > MAX_BUCKETS then error(fn .. ": at most " .. MAX_BUCKETS .. " buckets", 3) end
  local out, prev = {}, -huge
  for i, b in ipairs(buckets) do
    if type(b) ~= "number" or b ~= b or b == huge or b == -huge or b <= prev then
      error(fn .. ": buckets must be finite and strictly increasing (at " .. i .. ")", 3)
    end
    out[i], prev = b, b
  end
  return out
end

-- A label value in the text format: backslash, quote and newline escaped.
local function escape(v)
  return (v:gsub('[\\"\n]', { ["\\"] = "\\\\", ['"'] = '\\"', ["\n"] = "\\n" }))
end

local function value_of(fn, v)
  if type(v) == "number" then return tostring(v) end
  if type(v) ~= "string" then
    error(fn .. ": label values must be strings or numbers, got " .. type(v), 3)
  end
  return v
end

-- The cell of one label set (see rl_host_metric_cell for its layout).
local function new_cell(fam, rendered)
  if H then
    local c = H.rl_host_metric_cell(fam.id, WORKER, rendered, msg, MSGLEN)
    if c == nil then return nil, ffi_string(msg) end
    return c
  end
  return ffi_new("double[?]", fam.ncell)
end

-- Children: what :labels() returns (and the metric itself without labels).
local Counter, Gauge, Histogram = {}, {}, {}
Counter.__index, Gauge.__index, Histogram.__index = Counter, Gauge, Histogram

local function num(fn, v, default)
  if v == nil then return default end
  if type(v) ~= "number" or v ~= v then error(fn .. ": expected a number, got " .. tostring(v), 3) end
  return v
end

function Counter:inc(v)
  v = num("counter:inc", v, 1)
  if v < 0 then error("counter:inc: a counter only goes up (got " .. v .. ")", 2) end
  local c = self.cell
  c[0] = c[0] + v
end
Counter.add = Counter.inc

function Gauge:set(v)
  self.cell[0] = num("gauge:set", v, 0)
end
function Gauge:inc(v)
  local c = self.cell
  c[0] = c[0] + num("gauge:inc", v, 1)
end
Gauge.add = Gauge.inc
function Gauge:dec(v)
  local c = self.cell
  c[0] = c[0] - num("gauge:dec", v, 1)
end

function Histogram:observe(v)
  v = num("histogram:observe", v)
  if v == nil then error("histogram:observe: expected a number", 2) end
  local c, b = self.cell, self.bounds
  local n = #b
  local i = 0
  while i < n and v > b[i + 1] do i = i + 1 end   -- le: v <= bound
  c[i] = c[i] + 1
  c[n + 1] = c[n + 1] + v
end

-- The metric object: :labels(...) and, without label names, the child's
-- methods on itself.
local Family = {}
Family.__index = Family

function Family:labels(...)
  local names = self.labelnames
  local nl = #names
  local first = ...
  -- the common case without allocating: one label, a string value seen before
  if nl == 1 and type(first) == "string" and select("#", ...) == 1 then
    local child = self.children[first]
    if child then return child end
  end
  if nl == 0 then error(self.name .. ": this metric has no labels", 2) end
  local vals = {}
  if select("#", ...) == 1 and type(first) == "table" then
    local given = 0
    for k in pairs(first) do
      given = given + 1
      if type(k) ~= "string" then error(self.name .. ": label names must be strings", 2) end
    end
    for i = 1, nl do
      local v = first[names[i]]
      if v == nil then error(self.name .. ": label '" .. names[i] .. "' missing", 2) end
      vals[i] = value_of(self.name, v)
    end
    if given ~= nl then
      error(self.name .. ": unknown label (labels: " .. concat(names, ", ") .. ")", 2)
    end
  else
    if select("#", ...) ~= nl then
      error(("%s: expected %d label value(s) (%s), got %d"):format(self.name, nl,
        concat(names, ", "), select("#", ...)), 2)
    end
    for i = 1, nl do vals[i] = value_of(self.name, (select(i, ...))) end
  end
  local key = concat(vals, "\0")
  local child = self.children[key]
  if child then return child end
  local parts = {}
  for i = 1, nl do parts[i] = names[i] .. '="' .. escape(vals[i]) .. '"' end
  local cell, err = new_cell(self, concat(parts, ","))
  if not cell then error(self.name .. ": " .. err, 2) end
  child = setmetatable({ cell = cell, bounds = self.bounds }, self.child_mt)
  self.children[key] = child
  return child
end

local function make(fn, kind, name, help, buckets, labels)
  check_name(fn, name)
  if type(help) ~= "string" then error(fn .. ": help must be a string", 3) end
  local names = check_labels(fn, labels, kind == "histogram")
  local bounds
  if kind == "histogram" then
    bounds = check_buckets(fn, buckets)
    for _, s in ipairs({ "_bucket", "_sum", "_count" }) do
      if name:sub(-#s) == s then error(fn .. ": a histogram's name may not end in " .. s, 3) end
    end
  elseif kind == "counter" and name:sub(-6) ~= "_total" then
    name = name .. "_total"
  end
  local lnames = concat(names, ",")
  local old = families[name]
  if old then
    if old.kind ~= kind or old.lnames ~= lnames or
       concat(old.bounds or {}, ",") ~= concat(bounds or {}, ",") then
      error(fn .. ": '" .. name .. "' is registered already with another type, labels or buckets", 3)
    end
    return old
  end
  local fam = setmetatable({ name = name, kind = kind, labelnames = names, lnames = lnames,
                             bounds = bounds, children = {}, id = -1,
                             ncell = bounds and #bounds + 2 or 1,
                             child_mt = kind == "counter" and Counter or kind == "gauge" and Gauge
                               or Histogram }, Family)
  if H then
    local nb = bounds and #bounds or 0
    local cb = nb > 0 and ffi_new("double[?]", nb, bounds) or nil
    local id = H.rl_host_metric_family(name, help, TYPES[kind], lnames, cb, nb, msg, MSGLEN)
    if id < 0 then error(fn .. ": " .. ffi_string(msg), 3) end
    fam.id = tonumber(id)
  end
  if #names == 0 then
    -- no labels: the one child's cell and methods are the metric's own
    local cell, err = new_cell(fam, "")
    if not cell then error(fn .. ": " .. err, 3) end
    fam.cell = cell
    for k, f in pairs(fam.child_mt) do
      if k ~= "__index" then fam[k] = f end
    end
  end
  families[name] = fam
  return fam
end

function M.counter(name, help, labels)
  return make("ringline.metric.counter", "counter", name, help, nil, labels)
end

function M.gauge(name, help, labels)
  return make("ringline.metric.gauge", "gauge", name, help, nil, labels)
end

function M.histogram(name, help, buckets, labels)
  return make("ringline.metric.histogram", "histogram", name, help, buckets, labels)
end

-- The address the metrics endpoint listens on ("host:port"), nil when none.
function M.address()
  if not H then return nil end
  local n = H.rl_host_metrics_address(msg, MSGLEN)
  if n <= 0 then return nil end
  return ffi_string(msg, n)
end

return M
