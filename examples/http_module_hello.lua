-- http_module_hello.lua: "Hello, World!" through ringline.http, the
-- module's side of the benchmark against examples/http_hello.lua (the raw
-- parser).
--
--   ringline-lua examples/http_module_hello.lua    (PORT=8080, BENCH_HOST=127.0.0.1)
--   then: curl http://127.0.0.1:8080/
local http = require "ringline.http"

local host = os.getenv("BENCH_HOST") or "127.0.0.1"
local port = tonumber(os.getenv("PORT") or "8080")

local addr = (host:find(":", 1, true) and "[" .. host .. "]" or host) .. ":" .. port
local lst = assert(http.listen(addr, function(req, res)
  res:header("Content-Type", "text/plain")
  res:finish("Hello, World!")
end))
local h, p = lst:getsockname()
local url = ("http://%s:%d/"):format(h:find(":", 1, true) and "[" .. h .. "]" or h, p)
print("http_module_hello listening on " .. url)
print("try: curl " .. url .. "   (Ctrl-C stops the server)")
