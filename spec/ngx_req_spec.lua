-- ngx.req, ngx.var, ngx.header, ngx.status, ngx.ctx and the output calls
-- inside a ringline.http handler (ringline.ngx.req), and OpenResty's error
-- outside a request.
require "ringline.ngx"
local ringline = require "ringline"
local http = require "ringline.http"
local support = require "support"

local run = support.run

-- Serve handler on a free port, send raw requests, return everything the
-- server answered (the last request says Connection: close).
local function exchange(handler, raw)
  return run(function()
    local lst = assert(http.listen("127.0.0.1:0", handler))
    local _, port = lst:getsockname()
    local c = assert(ringline.connect("127.0.0.1", port))
    assert(c:send(raw))
    local out = assert(c:receive("*a"))
    lst:close()
    return out
  end)
end

-- The body of a chunked response, joined.
local function dechunk(s)
  local body = s:match("\r\n\r\n(.*)$")
  local out = {}
  while true do
    local n, rest = body:match("^(%x+)\r\n(.*)$")
    n = tonumber(n, 16)
    if not n or n == 0 then break end
    out[#out + 1] = rest:sub(1, n)
    body = rest:sub(n + 3)
  end
  return table.concat(out)
end

describe("ngx.req / ngx.var in a ringline.http handler", function()
  it("maps the request", function()
    local got
    exchange(function()
      ngx.req.read_body()
      local h = ngx.req.get_headers()
      got = {
        method = ngx.req.get_method(), version = ngx.req.http_version(),
        args = ngx.req.get_uri_args(), ua = h["User-Agent"], ua2 = h.user_agent,
        body = ngx.req.get_body_data(), post = ngx.req.get_post_args(),
        request_uri = ngx.var.request_uri, uri = ngx.var.uri, qs = ngx.var.args,
        host = ngx.var.host, remote_addr = ngx.var.remote_addr,
        request_method = ngx.var.request_method, arg_a = ngx.var.arg_a, arg_z = ngx.var.arg_z,
        http_user_agent = ngx.var.http_user_agent, cookie_s = ngx.var.cookie_s,
        phase = ngx.get_phase(), bin = ngx.var.binary_remote_addr,
        raw = ngx.req.raw_header(true):match("^Host: [^\r]*\r\n"),
        line = ngx.req.raw_header():match("^[^\r]*"),
      }
    end, "POST /p%20q?a=1&b=x+y&a=2 HTTP/1.1\r\nHost: Example.com:8080\r\nUser-Agent: ua/1\r\n"
      .. "Cookie: t=1; s=abc\r\nContent-Type: application/x-www-form-urlencoded\r\n"
      .. "Content-Length: 7\r\nConnection: close\r\n\r\nk=v%21&")
    assert.are.same({
      method = "POST", version = 1.1, args = { a = { "1", "2" }, b = "x y" }, ua = "ua/1", ua2 = "ua/1",
      body = "k=v%21&", post = { k = "v!" },
      request_uri = "/p%20q?a=1&b=x+y&a=2", uri = "/p q", qs = "a=1&b=x+y&a=2",
      host = "example.com", remote_addr = "127.0.0.1", request_method = "POST", arg_a = "1",
      http_user_agent = "ua/1", cookie_s = "abc", phase = "content", bin = "\127\0\0\1",
      raw = "Host: Example.com:8080\r\n", line = "POST /p%20q?a=1&b=x+y&a=2 HTTP/1.1",
    }, got)
  end)

  it("ngx.header, ngx.status, ngx.say/print, ngx.ctx per request, threads share the request", function()
    local logged = {}
    local old = require("ringline.log").set_sink(function(l) logged[#logged + 1] = l end)
    local out = exchange(function()
      ngx.ctx.n = (ngx.ctx.n or 0) + 1
      ngx.status = 201
      ngx.header.content_type = "text/plain"
      ngx.header["X_Multi"] = { "a", "b" }
      local rh = ngx.resp.get_headers()
      assert.are.same({ "a", "b" }, rh.x_multi)
      assert.are.equal("text/plain", rh["Content-Type"])
      local t = ngx.thread.spawn(function() return ngx.var.uri end)
      local _, uri = ngx.thread.wait(t)
      ngx.print("uri=", uri, " ")
      ngx.say("ctx=", ngx.ctx.n, " status=", ngx.status, " sent=", ngx.headers_sent())
      ngx.status = 500                         -- too late: logged and ignored
    end, "GET /one HTTP/1.1\r\nHost: x\r\n\r\nGET /two HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    require("ringline.log").set_sink(old)
    assert.are.equal(2, #logged)
    assert.matches("attempt to set ngx.status after sending out response headers", logged[1], 1, true)
    local first, second = out:match("^(.-\r\n0\r\n\r\n)(.*)$")
    assert.matches("^HTTP/1.1 201 Created\r\n", first)
    assert.matches("\r\nContent-Type: text/plain\r\n", first, 1, true)
    assert.matches("\r\nX-Multi: a\r\nX-Multi: b\r\n", first, 1, true)
    assert.are.equal("uri=/one ctx=1 status=201 sent=true\n", dechunk(first))
    assert.are.equal("uri=/two ctx=1 status=201 sent=true\n", dechunk(second))
  end)

  it("ngx.exit and ngx.redirect end the handler; the connection goes on", function()
    local after = false
    local out = exchange(function()
      if ngx.var.uri == "/r" then return ngx.redirect("/there", 301) end
      ngx.exit(404)
      after = true
    end, "GET /x HTTP/1.1\r\nHost: x\r\n\r\nGET /r HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert.is_false(after)
    assert.matches("^HTTP/1.1 404 Not Found\r\n.-Content%-Length: 0\r\n\r\nHTTP/1.1 301 Moved Permanently\r\n", out)
    assert.matches("\r\nLocation: /there\r\n", out, 1, true)
  end)

  it("setters that nginx has and ringline cannot map raise, naming themselves", function()
    local errs = {}
    exchange(function()
      errs[1] = select(2, pcall(ngx.req.set_header, "a", "b"))
      errs[2] = select(2, pcall(function() ngx.var.foo = 1 end))
    end, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert.matches("ngx.req.set_header: not supported", errs[1], 1, true)
    assert.matches("ngx.var.foo: variables cannot be set", errs[2], 1, true)
  end)

  it("outside a request: \"API disabled in the current context\"", function()
    local errs = { run(function()
      return select(2, pcall(ngx.req.get_method)), select(2, pcall(function() return ngx.var.uri end)),
             select(2, pcall(function() ngx.header.x = 1 end)),
             select(2, pcall(function() return ngx.status end))
    end) }
    for _, e in ipairs(errs) do assert.matches("API disabled in the current context", e, 1, true) end
    assert.are.equal(4, #errs)
    assert.has_error(function() ngx.req.get_uri_args() end,
      "ngx.req.get_uri_args: API disabled in the current context")
  end)
end)
