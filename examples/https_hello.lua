-- https_hello.lua: examples/http_hello.lua over TLS (TLS 1.2/1.3, ALPN
-- http/1.1), the server of the TLS benchmark (bench/tls.sh).
--
--   ringline-lua examples/https_hello.lua       (PORT=8443; CERT=, KEY=: PEM files)
--   then: curl --cacert CERT https://127.0.0.1:8443/   (the line it prints)
--
-- Without CERT and KEY it makes a self-signed ECDSA P-256 certificate for
-- localhost and 127.0.0.1 with the openssl CLI, into a directory of its own
-- under TMPDIR (one per process: with -w N the workers share it; the first
-- worker makes it, the others wait for it), and prints the curl line with
-- --cacert naming it. The HTTP side is http_hello.lua's, unchanged: it
-- listens with TLS when given a certificate.
local ffi = require "ffi"
local ringline = require "ringline"

ffi.cdef [[
int https_hello_setenv(const char *name, const char *value, int overwrite) __asm__("setenv");
int https_hello_getpid(void) __asm__("getpid");
]]
local C = ffi.C

-- A shell command through ringline.exec (os.execute would stall the loop).
local function sh(cmd)
  local _, ok = ringline.exec_capture({ "sh", "-c", cmd })
  return ok == true
end

local function exists(path)
  local f = io.open(path)
  if f then f:close() end
  return f ~= nil
end

local cert, key = os.getenv("CERT"), os.getenv("KEY")
if (cert == nil) ~= (key == nil) then error("https_hello: give both CERT and KEY, or neither", 0) end
if not cert then
  local dir = ("%s/ringline-https-hello.%d"):format(os.getenv("TMPDIR") or "/tmp", C.https_hello_getpid())
  cert, key = dir .. "/cert.pem", dir .. "/key.pem"
  if sh("mkdir -m 700 " .. dir .. " 2>/dev/null") then
    -- made under other names and renamed, key first: a worker waiting for
    -- cert.pem finds both whole
    local made = sh(("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 "
      .. "-subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 "
      .. "-keyout %s/key.tmp -out %s/cert.tmp >/dev/null 2>&1 && mv %s/key.tmp %s && mv %s/cert.tmp %s")
      :format(dir, dir, dir, key, dir, cert))
    if not made then
      error("https_hello: the openssl CLI could not make a certificate (install openssl, or give CERT and KEY)", 0)
    end
  else
    local deadline = ringline.now() + 10
    while not exists(cert) do
      if ringline.now() > deadline then error("https_hello: no certificate in " .. dir, 0) end
      ringline.sleep(0.01)
    end
  end
end
C.https_hello_setenv("HTTP_HELLO_CERT", cert, 1)
C.https_hello_setenv("HTTP_HELLO_KEY", key, 1)
C.https_hello_setenv("PORT", os.getenv("PORT") or "8443", 1)

local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
dofile(here .. "/http_hello.lua")
