-- examples/https_hello.lua and examples/tls_client.lua, run by the built
-- host: the server makes its own certificate when given none (into TMPDIR,
-- here the spec's directory) and says how to try it; curl, a Lua client in
-- this process and tls_client.lua verify it; given CERT and KEY it serves
-- those.
local root = debug.getinfo(1, "S").source:match("^@(.*)/spec/[^/]+$") or "."
if root:sub(1, 1) ~= "/" then root = os.getenv("PWD") .. "/" .. root end
package.path = ("%s/lua/?.lua;%s/lua/?/init.lua;%s/bindings/?.lua;"):format(root, root, root)
  .. package.path
local ringline = require "ringline"
local ex = dofile(root .. "/spec/example_host.lua")(root)
local proc, host, stop_cleanly = ex.proc, ex.host, ex.stop_cleanly

local function sh(cmd)
  local ok = os.execute("unset LD_PRELOAD; " .. cmd)
  return ok == 0 or ok == true
end

local dir
setup(function()
  dir = os.tmpname()
  os.remove(dir)
  assert(sh("mkdir -p " .. dir))
end)
teardown(function()
  if dir then os.execute("rm -rf " .. dir) end
end)

-- GET / over TLS from this process: the status line, the body, sslinfo.
local function get(port, ca)
  return ringline.run({ timeout = 20 }, function()
    local c = assert(ringline.connect("127.0.0.1", port, { timeout = 5,
      ssl = { ca = ca, server_name = "localhost", alpn = { "h2", "http/1.1" } } }))
    c:settimeout(5000)
    assert(c:send("GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"))
    local status = c:receive("*l")
    repeat local l = c:receive("*l") until l == "" or not l
    local body = c:receive(13)
    local info = c:sslinfo()
    c:close()
    return { status = status, body = body, info = info }
  end)
end

describe("examples/https_hello.lua", function()
  local srv, port, hint, cafile
  setup(function()
    srv, port, hint = ex.start("https_hello", "TMPDIR=" .. dir, nil, true)
    cafile = hint and hint:match("%-%-cacert (%S+)")
  end)
  teardown(function() if srv and not srv.code then srv:stop("KILL") end end)

  it("makes a certificate and says how to try it with curl", function()
    assert.matches("^curl %-%-cacert " .. dir:gsub("%p", "%%%0") .. "/ringline%-https%-hello%.%d+/cert%.pem "
      .. "https://127%.0%.0%.1:" .. port .. "/ ", hint)
    if not sh("command -v curl >/dev/null 2>&1") then
      pending("no curl on this machine")
      return
    end
    local code, out, err = proc.run(("unset LD_PRELOAD; curl -s -i --max-time 5 --cacert %s https://127.0.0.1:%d/")
      :format(cafile, port))
    assert.are.equal(0, code, err)
    assert.matches("^HTTP/1.1 200 OK\r\n", out)
    assert.matches("\r\n\r\nHello, World!$", out)
  end)

  it("serves a verifying Lua client, choosing http/1.1 by ALPN", function()
    local r = get(port, cafile)
    assert.are.equal("HTTP/1.1 200 OK", r.status)
    assert.are.equal("Hello, World!", r.body)
    assert.are.equal("http/1.1", r.info.alpn)
    assert.is_true(r.info.peer_verified)
  end)

  it("is fetched by examples/tls_client.lua, which verifies it and says what was negotiated", function()
    local code, out, err = proc.run(("CAFILE=%s %s %s/examples/tls_client.lua 127.0.0.1 %d /")
      :format(cafile, proc.quote(host), root, port))
    assert.are.equal(0, code, err)
    assert.are.equal("Hello, World!", out)
    assert.matches("tls_client: TLSv1.3 %S+, alpn http/1.1, server /CN=localhost %(verified%)", err)
    -- the system store does not know the self-signed certificate
    local code2, out2, err2 = proc.run(("%s %s/examples/tls_client.lua localhost %d")
      :format(proc.quote(host), root, port))
    assert.are.equal(1, code2)
    assert.are.equal("", out2)
    assert.matches("certificate verify failed", err2, 1, true)
  end)

  it("stops with status 0 on SIGTERM", function() stop_cleanly(srv) end)
end)

describe("examples/https_hello.lua with CERT and KEY", function()
  it("serves the pair given", function()
    local cert, key = dir .. "/given.pem", dir .. "/given.key"
    assert(sh("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 "
      .. "-subj /CN=given.example -addext subjectAltName=DNS:localhost "
      .. "-keyout " .. key .. " -out " .. cert .. " >/dev/null 2>&1"))
    local srv, port, hint = ex.start("https_hello", ("CERT=%s KEY=%s"):format(cert, key), nil, true)
    local r = get(port, cert)
    stop_cleanly(srv)
    assert.matches("--cacert " .. cert, hint, 1, true)
    assert.are.equal("Hello, World!", r.body)
    assert.matches("CN=given.example", r.info.peer_subject, 1, true)
  end)
end)
