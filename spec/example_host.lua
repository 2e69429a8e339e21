-- Running an example under the built host and talking to it: shared by the
-- example specs. dofile(root .. "/spec/example_host.lua")(root) returns the
-- helpers for the checkout at root (RINGLINE_BUILD picks another build).
return function(root)
  local proc = dofile(root .. "/bindings/test/proc.lua")
  local build = os.getenv("RINGLINE_BUILD") or (root .. "/build")
  local host = build .. "/bindings/ringline-lua"
  local ringline = require "ringline"
  local M = { proc = proc, host = host }

  -- Starts examples/<name>.lua on a free port (PORT=0: the example prints
  -- the port it got) with env ("VAR=value ..." words) and args; returns the
  -- process, the port and, with want_hint, its "try: ..." line.
  function M.start(name, env, args, want_hint)
    local srv = proc.spawn(("PORT=0 BENCH_HOST=127.0.0.1 %s %s %s/examples/%s.lua %s"):format(
      env or "", proc.quote(host), root, name, args or ""))
    local port, seen = srv:expect("listening on [^\n]-127%.0%.0%.1:(%d+)")
    assert(port, "the example did not start:\n" .. tostring(seen))
    local hint = want_hint and srv:expect("^try: (.*)$") or nil
    return srv, tonumber(port), hint
  end

  -- Runs fn(conn) in a ringline loop, connected to the server; the loop's
  -- own deadline keeps a wrong answer from hanging the spec.
  function M.client(port, fn)
    return ringline.run({ timeout = 30 }, function()
      local conn = assert(ringline.connect("127.0.0.1", port, { timeout = 5 }))
      conn:settimeout(10000)
      local r = { fn(conn) }
      conn:close()
      return unpack(r)
    end)
  end

  -- SIGTERM: the example must stop with status 0 and nothing on stderr.
  function M.stop_cleanly(srv)
    local code, out, err = srv:stop("TERM")
    if code ~= 0 then error(("exit status %s\n%s\n%s"):format(tostring(code), out, err), 2) end
    if err ~= "" then error("unexpected stderr:\n" .. err, 2) end
  end

  return M
end
