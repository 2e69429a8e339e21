-- ringline.websocket: both ends in-process (handshakes, text, binary,
-- fragments, ping/pong, close codes), hand-made frames that break the
-- protocol (masking, UTF-8, lengths, opcodes) and the close code each one
-- gets, a real peer (a Python one written from RFC 6455 with hashlib and
-- base64, not with this module), and a seeded mutation fuzz of frames.
local ffi = require "ffi"
local bit = require "bit"
local ringline = require "ringline"
local websocket = require "ringline.websocket"
local support = require "support"
local run = support.run

local function sh(cmd)
  local ok = os.execute("unset LD_PRELOAD; " .. cmd)
  return ok == 0 or ok == true
end

-- A frame's bytes, built here independently of the module. mask: a
-- 4-byte key or nil. len_override: the length field to claim instead.
local function frame(b1, payload, mask, len_field)
  local len = #payload
  local out = { string.char(b1) }
  local mbit = mask and 0x80 or 0
  local lf = len_field or (len <= 125 and "7" or len <= 65535 and "16" or "64")
  if lf == "7" then
    out[2] = string.char(mbit + len)
  elseif lf == "16" then
    out[2] = string.char(mbit + 126, math.floor(len / 256), len % 256)
  else
    local t = { string.char(mbit + 127) }
    for i = 7, 0, -1 do t[#t + 1] = string.char(math.floor(len / 2 ^ (8 * i)) % 256) end
    out[2] = table.concat(t)
  end
  if mask then
    out[3] = mask
    local m = { mask:byte(1, 4) }
    local p = {}
    for i = 1, len do p[i] = string.char(bit.bxor(payload:byte(i), m[(i - 1) % 4 + 1])) end
    out[4] = table.concat(p)
  else
    out[3] = payload
  end
  return table.concat(out)
end

local MASK = "\1\2\3\4"
local function cframe(b1, payload, len_field) return frame(b1, payload, MASK, len_field) end

-- Reads one frame a server sent (unmasked): fin+opcode byte, payload.
local function read_frame(c)
  local h = c:receive(2)
  if not h then return nil end
  local b1, b2 = h:byte(1, 2)
  assert(bit.band(b2, 0x80) == 0, "a server frame was masked")
  local len = bit.band(b2, 0x7f)
  if len == 126 then
    local x = assert(c:receive(2)); len = x:byte(1) * 256 + x:byte(2)
  elseif len == 127 then
    local x = assert(c:receive(8)); len = 0
    for i = 1, 8 do len = len * 256 + x:byte(i) end
  end
  return b1, assert(c:receive(len))
end

local function close_code(payload)
  return payload:byte(1) * 256 + payload:byte(2)
end

-- A server end over a raw listener connection (no handshake), fed bytes
-- by a raw client. Returns what the server's recv_frame calls gave and
-- what the server sent back.
local function feed(bytes, opts)
  return run(function()
    local got = {}
    local done = support.event()
    local lst, port = support.server(function(c)
      local ws = websocket.new(c, opts)
      for _ = 1, 64 do
        local data, typ, err = ws:recv_frame()
        got[#got + 1] = { data, typ, err }
        if not data or typ == "close" then break end
      end
      c:close()
      done.set(true)
    end)
    local c = support.connect(port)
    assert(c:send(bytes))
    local back = {}
    while true do
      local b1, payload = read_frame(c)
      if not b1 then break end
      back[#back + 1] = { b1, payload }
    end
    done.wait()
    lst:close()
    return { got = got, back = back }
  end)
end

describe("ringline.websocket", function()
  it("computes RFC 6455's sample Sec-WebSocket-Accept", function()
    assert.are.equal("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", websocket._accept_key("dGhlIHNhbXBsZSBub25jZQ=="))
  end)

  it("checks UTF-8 as RFC 3629 has it", function()
    local valid = { "", "ascii", "é", "€", "\240\159\152\128", "\244\143\191\191", "\237\159\191",
                    "\239\191\191", "a\0b" }
    local invalid = { "\128", "\192\128", "\193\191", "\224\128\128", "\237\160\128",
                      "\240\128\128\128", "\244\144\128\128", "\245\128\128\128", "\255",
                      "\226\130", "\226\40\172", "é\128" }
    for _, v in ipairs(valid) do assert.is_true(websocket._utf8_valid(v), v) end
    for _, v in ipairs(invalid) do assert.is_false(websocket._utf8_valid(v), v) end
    -- split anywhere across two fragments, a valid text stays valid
    local text = "aé€\240\159\152\128z"
    for cut = 0, #text do
      local r = feed(cframe(0x01, text:sub(1, cut)) .. cframe(0x80, text:sub(cut + 1)) .. cframe(0x88, ""))
      assert.are.equal("continuation", r.got[2][2], "cut at " .. cut)
      assert.are.equal(text, r.got[1][1] .. r.got[2][1])
    end
  end)

  it("client and server: text, binary, 64-bit lengths, fragments, ping/pong, close", function()
    local big = support.pattern(70000, 5)
    local r = run(function()
      local srv = {}
      local done = support.event()
      local lst, port = support.server(function(c)
        local ws = assert(websocket.accept(c, nil, { max_payload_len = 100000, auto_pong = false }))
        while true do
          local data, typ, err = ws:recv_frame()
          srv[#srv + 1] = { data, typ, err }
          if not data or typ == "close" then break end
          if typ == "ping" then assert(ws:send_pong("re:" .. data))
          elseif typ == "text" or typ == "continuation" then assert(ws:send_text("echo:" .. data))
          else assert(ws:send_binary(data)) end
        end
        done.set(true)
      end)
      local ws = assert(websocket.connect("ws://127.0.0.1:" .. port .. "/chat",
        { max_payload_len = 100000, timeout = 5000 }))
      local out = {}
      assert(ws:send_text("héllo"))
      out.text = { ws:recv_frame() }
      assert(ws:send_binary(big))
      out.big = { ws:recv_frame() }
      assert(ws:send_ping("p1"))
      out.pong = { ws:recv_frame() }
      assert(ws:send_frame(false, 1, "frag"))
      assert(ws:send_ping("mid"))
      assert(ws:send_frame(true, 0, "ment"))
      out.f1 = { ws:recv_frame() }
      out.fping = { ws:recv_frame() }
      out.f2 = { ws:recv_frame() }
      assert(ws:send_close(1001, "going"))
      out.close = { ws:recv_frame() }
      out.after = { ws:send_text("late") }
      done.wait()
      lst:close()
      out.srv = srv
      return out
    end)
    assert.are.same({ "echo:héllo", "text" }, r.text)
    assert.are.equal("binary", r.big[2])
    assert.is_true(r.big[1] == big)
    assert.are.same({ "re:p1", "pong" }, r.pong)
    assert.are.same({ "echo:frag", "text" }, r.f1)
    assert.are.same({ "re:mid", "pong" }, r.fping)
    assert.are.same({ "echo:ment", "text" }, r.f2)
    assert.are.same({ "", "close", 1001 }, r.close)   -- the server's answer echoes the code
    assert.are.same({ nil, "closed" }, r.after)
    local s = r.srv
    assert.are.same({ "héllo", "text" }, s[1])
    assert.are.same({ "p1", "ping" }, s[3])
    assert.are.same({ "frag", "text", "again" }, s[4])
    assert.are.same({ "mid", "ping" }, s[5])
    assert.are.same({ "ment", "continuation" }, s[6])
    assert.are.same({ "going", "close", 1001 }, s[7])
  end)

  it("a timeout, even inside a frame, consumes nothing and leaves the ws usable", function()
    local r = run(function()
      local out = {}
      local step, half, done = support.event(), support.event(), support.event()
      local lst, port = support.server(function(c)
        local ws = websocket.new(c, { timeout = 50 })
        out[1] = { ws:recv_frame() }            -- nothing yet
        step.set(true)
        out[2] = { ws:recv_frame() }            -- half a frame
        half.set(true)
        ws:set_timeout(5000)
        out[3] = { ws:recv_frame() }            -- the rest came
        c:close()
        done.set(true)
      end)
      local c = support.connect(port)
      local f = cframe(0x81, "whole")
      step.wait()
      assert(c:send(f:sub(1, 5)))
      assert(c:flush())
      half.wait()
      assert(c:send(f:sub(6)))
      done.wait()
      lst:close()
      return out
    end)
    assert.are.same({ nil, nil, "timeout" }, { r[1][1], r[1][2], r[1][3] })
    assert.are.same({ nil, nil, "timeout" }, { r[2][1], r[2][2], r[2][3] })
    assert.are.same({ "whole", "text" }, r[3])
  end)

  it("answers pings itself unless auto_pong = false", function()
    local r = feed(cframe(0x89, "hi") .. cframe(0x81, "after") .. cframe(0x88, "\3\232"))
    assert.are.same({ "after", "text" }, r.got[1])         -- the ping was not returned
    assert.are.same({ 0x8A, "hi" }, r.back[1])              -- it was answered
    assert.are.same({ "", "close", 1000 }, r.got[2])
    assert.are.same({ 0x88, "\3\232" }, r.back[2])
  end)

  -- bytes a client sends -> the close code the server answers with
  local violations = {
    ["an unmasked frame from a client"] = { frame(0x81, "hi"), 1002 },
    ["reserved bits"] = { cframe(0xC1, "hi"), 1002 },
    ["an unknown opcode"] = { cframe(0x83, "hi"), 1002 },
    ["a control frame over 125 bytes"] = { cframe(0x89, ("x"):rep(126)), 1002 },
    ["a fragmented ping"] = { cframe(0x09, "x"), 1002 },
    ["a continuation without a message"] = { cframe(0x80, "x"), 1002 },
    ["a new message inside a fragmented one"] = { cframe(0x01, "a") .. cframe(0x81, "b"), 1002 },
    ["a close frame of one byte"] = { cframe(0x88, "\3"), 1002 },
    ["close code 1005"] = { cframe(0x88, "\3\237"), 1002 },
    ["close code 999"] = { cframe(0x88, "\3\231"), 1002 },
    ["a close reason not UTF-8"] = { cframe(0x88, "\3\232\255"), 1007 },
    ["invalid UTF-8"] = { cframe(0x81, "a\192\128"), 1007 },
    ["a surrogate"] = { cframe(0x81, "\237\160\128"), 1007 },
    ["UTF-8 cut at the end of the message"] = { cframe(0x01, "a\226\130") .. cframe(0x80, ""), 1007 },
    ["a frame over max_payload_len"] = { cframe(0x82, ("x"):rep(101)), 1009 },
    ["a 16-bit length under 126"] = { cframe(0x82, "abc", "16"), 1002 },
    ["a 64-bit length with the top bit"] = { "\130\255\128\0\0\0\0\0\0\1" .. MASK, 1002 },
  }
  for name, case in pairs(violations) do
    it("closes with " .. case[2] .. " on " .. name, function()
      local r = feed(case[1], { max_payload_len = 100 })
      local last = r.got[#r.got]
      assert.is_nil(last[1])
      assert.is_string(last[3])
      assert.are.equal(1, #r.back)
      assert.are.equal(0x88, r.back[1][1])
      assert.are.equal(case[2], close_code(r.back[1][2]))
    end)
  end

  it("accepts UTF-8 split across fragments, and text up to max_payload_len", function()
    local r = feed(cframe(0x01, "a\226") .. cframe(0x00, "\130") .. cframe(0x80, "\172!")
      .. cframe(0x81, ("é"):rep(50)) .. cframe(0x88, ""), { max_payload_len = 100 })
    assert.are.same({ "a\226", "text", "again" }, r.got[1])
    assert.are.same({ "\130", "continuation", "again" }, r.got[2])
    assert.are.same({ "\172!", "continuation" }, r.got[3])
    assert.are.same({ ("é"):rep(50), "text" }, r.got[4])
    assert.are.same({ "", "close" }, r.got[5])
    assert.are.same({ { 0x88, "" } }, r.back)
  end)

  it("a client refuses a masked frame from a server with 1002", function()
    local r = run(function()
      local back = {}
      local done = support.event()
      local lst, port = support.server(function(c)
        local line = c:receive("*l")
        local key
        repeat
          line = c:receive("*l")
          key = key or line:match("^Sec%-WebSocket%-Key: (%S+)")
        until line == ""
        c:send("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n",
          "Sec-WebSocket-Accept: ", websocket._accept_key(key), "\r\n\r\n", cframe(0x81, "masked"))
        local h = c:receive(2)
        local k = c:receive(4)
        local p = c:receive(bit.band(h:byte(2), 0x7f))
        back[1] = { h:byte(1), bit.band(h:byte(2), 0x80) }
        local code = bit.bxor(p:byte(1), k:byte(1)) * 256 + bit.bxor(p:byte(2), k:byte(2))
        back[2] = code
        done.set(true)
      end)
      local ws = assert(websocket.connect("ws://127.0.0.1:" .. port .. "/"))
      local got = { ws:recv_frame() }
      done.wait()
      lst:close()
      return { got = got, back = back }
    end)
    assert.are.same({ nil, nil, "masked frame from a server" }, { r.got[1], r.got[2], r.got[3] })
    assert.are.same({ 0x88, 0x80 }, r.back[1])   -- a close, masked as a client's must be
    assert.are.equal(1002, r.back[2])
  end)

  it("accept refuses bad upgrade requests and writes nothing; connect checks the answer", function()
    local key = "dGhlIHNhbXBsZSBub25jZQ=="
    local base = { ["upgrade"] = "websocket", ["connection"] = "keep-alive, Upgrade",
                   ["sec-websocket-version"] = "13", ["sec-websocket-key"] = key }
    local function with(k, v)
      local h = {}
      for a, b in pairs(base) do h[a] = b end
      h[k] = v
      return h
    end
    local r = run(function()
      local out = {}
      local lst, port = support.server(function(c)
        local reqs = {
          { method = "POST", version = "1.1", headers = base },
          { method = "GET", version = "1.0", headers = base },
          { method = "GET", version = "1.1", headers = with("upgrade", nil) },
          { method = "GET", version = "1.1", headers = with("connection", "close") },
          { method = "GET", version = "1.1", headers = with("sec-websocket-version", "8") },
          { method = "GET", version = "1.1", headers = with("sec-websocket-key", "short") },
        }
        for i, req in ipairs(reqs) do out[i] = { websocket.accept(c, req) } end
        -- then a good one, read from the connection
        local ws = websocket.accept(c, nil, { protocol = "chat" })
        out.ok = ws ~= nil
        c:close()
      end)
      local c = support.connect(port)
      c:send("GET /x HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n",
        "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: ", key, "\r\n\r\n")
      out.answer = c:receive("*a")
      -- connect against a server that answers 200, then one with a wrong accept
      local l2, p2 = support.server(function(cc)
        repeat local l = cc:receive("*l") until l == ""
        cc:send("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
      end)
      out.not101 = { websocket.connect("ws://127.0.0.1:" .. p2 .. "/") }
      local l3, p3 = support.server(function(cc)
        repeat local l = cc:receive("*l") until l == ""
        cc:send("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n",
          "Sec-WebSocket-Accept: ", websocket._accept_key(key), "\r\n\r\n")
      end)
      out.badaccept = { websocket.connect("ws://127.0.0.1:" .. p3 .. "/") }
      out.scheme = { websocket.connect("http://127.0.0.1:" .. p3 .. "/") }
      lst:close(); l2:close(); l3:close()
      return out
    end)
    assert.are.same({ nil, "not a GET", 400 }, r[1])
    assert.are.same({ nil, "not HTTP/1.1", 400 }, r[2])
    assert.are.same({ nil, "no upgrade: websocket", 400 }, r[3])
    assert.are.same({ nil, "no connection: upgrade", 400 }, r[4])
    assert.are.same({ nil, "unsupported version", 426 }, r[5])
    assert.are.same({ nil, "bad sec-websocket-key", 400 }, r[6])
    assert.is_true(r.ok)
    assert.are.equal("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
      .. "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nSec-WebSocket-Protocol: chat\r\n\r\n",
      r.answer)
    assert.are.same({ nil, "bad status: 200" }, r.not101)
    assert.are.same({ nil, "bad sec-websocket-accept" }, r.badaccept)
    assert.are.same({ nil, "unsupported scheme" }, r.scheme)
  end)

  it("connects to wss:// through the TLS support", function()
    local dir = os.tmpname()
    os.remove(dir)
    assert(sh("mkdir -p " .. dir))
    finally(function() os.execute("rm -rf " .. dir) end)
    local cert, key = dir .. "/cert.pem", dir .. "/key.pem"
    assert(sh("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 "
      .. "-subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 >/dev/null 2>&1 "
      .. "-keyout " .. key .. " -out " .. cert))
    local r = run(function()
      local lst, port = support.server(function(c)
        local ws = assert(websocket.accept(c))
        local d = ws:recv_frame()
        ws:send_text("tls:" .. d .. ":" .. tostring(c:sslinfo() and c:sslinfo().protocol))
        ws:recv_frame()
      end, { ssl = { cert = cert, key = key } })
      local out = {}
      local ws = assert(websocket.connect("wss://localhost:" .. port .. "/", { ssl = { ca = cert } }))
      ws:send_text("hi")
      out.echo = ws:recv_frame()
      ws:send_close(1000)
      out.refused = { websocket.connect("wss://localhost:" .. port .. "/") }   -- not verified
      lst:close()
      return out
    end)
    assert.matches("^tls:hi:TLSv1", r.echo)
    assert.is_nil(r.refused[1])
    assert.matches("^certificate verify failed", r.refused[2])
  end)

  -- A peer written from RFC 6455 with Python's hashlib and base64: as a
  -- server it echoes frames (unmasked); as a client it sends masked frames
  -- and prints what comes back.
  local PEER = [=[
import base64, hashlib, os, socket, struct, sys
G = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
def accept(k): return base64.b64encode(hashlib.sha1(k + G).digest())
def recvn(s, n):
    b = b""
    while len(b) < n:
        x = s.recv(n - len(b))
        if not x: raise EOFError
        b += x
    return b
def rframe(s):
    b1, b2 = recvn(s, 2)
    n = b2 & 127
    if n == 126: n = struct.unpack(">H", recvn(s, 2))[0]
    elif n == 127: n = struct.unpack(">Q", recvn(s, 8))[0]
    m = recvn(s, 4) if b2 & 128 else None
    p = recvn(s, n)
    if m: p = bytes(c ^ m[i % 4] for i, c in enumerate(p))
    return b1, bool(m), p
def wframe(s, b1, p, mask):
    h = bytes([b1])
    mb = 128 if mask else 0
    if len(p) < 126: h += bytes([mb | len(p)])
    elif len(p) < 65536: h += bytes([mb | 126]) + struct.pack(">H", len(p))
    else: h += bytes([mb | 127]) + struct.pack(">Q", len(p))
    if mask:
        m = os.urandom(4)
        p = bytes(c ^ m[i % 4] for i, c in enumerate(p))
        h += m
    s.sendall(h + p)
def head(s):
    b = b""
    while not b.endswith(b"\r\n\r\n"): b += recvn(s, 1)
    return b.decode()
if sys.argv[1] == "server":
    ls = socket.socket(); ls.bind(("127.0.0.1", 0)); ls.listen(1)
    print("port", ls.getsockname()[1], flush=True)
    s, _ = ls.accept()
    h = head(s)
    k = [l.split(":", 1)[1].strip() for l in h.split("\r\n") if l.lower().startswith("sec-websocket-key:")][0]
    s.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " + accept(k.encode()) + b"\r\n\r\n")
    while True:
        b1, masked, p = rframe(s)
        assert masked, "client frame not masked"
        op = b1 & 15
        if op == 8:
            wframe(s, 0x88, p[:2], False); break
        if op == 9: wframe(s, 0x8A, p, False)
        else: wframe(s, b1, p, False)
    print("done", flush=True)
else:
    s = socket.create_connection(("127.0.0.1", int(sys.argv[2])))
    k = base64.b64encode(os.urandom(16))
    s.sendall(b"GET /py HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " + k + b"\r\n\r\n")
    h = head(s)
    ok = ("\r\nSec-WebSocket-Accept: " + accept(k).decode() + "\r\n") in h
    out = ["accept-ok" if ok else "accept-bad"]
    wframe(s, 0x81, "héllo".encode(), True)
    wframe(s, 0x02, b"ab", True); wframe(s, 0x80, b"cd", True)
    wframe(s, 0x89, b"pp", True)
    wframe(s, 0x82, b"z" * 70000, True)
    for _ in range(4):
        b1, masked, p = rframe(s)
        out.append("%x:%s:%d:%s" % (b1, masked, len(p), p[:12].hex()))
    wframe(s, 0x88, struct.pack(">H", 1000) + b"ok", True)
    b1, masked, p = rframe(s)
    out.append("%x:%s:%d" % (b1, masked, struct.unpack(">H", p[:2])[0]))
    print(" ".join(out), flush=True)
]=]

  it("talks to a Python RFC 6455 peer, as client and as server", function()
    local dir = os.tmpname()
    os.remove(dir)
    assert(sh("mkdir -p " .. dir))
    local f = assert(io.open(dir .. "/peer.py", "wb"))
    f:write(PEER)
    f:close()
    finally(function() os.execute("rm -rf " .. dir) end)
    local function slurp(p)
      local h = io.open(p)
      if not h then return "" end
      local s = h:read("*a")
      h:close()
      return s
    end
    assert(sh(("python3 -u %s/peer.py server > %s/srv.log 2>&1 &"):format(dir, dir)))
    local r = run(function()
      local out = {}
      local port
      assert(support.eventually(function()
        port = slurp(dir .. "/srv.log"):match("port (%d+)")
        return port ~= nil
      end, 10), "the python peer did not start")
      -- our client against the Python server
      local ws = assert(websocket.connect("ws://127.0.0.1:" .. port .. "/", { max_payload_len = 100000 }))
      assert(ws:send_text("héllo"))
      out.text = { ws:recv_frame() }
      assert(ws:send_ping("x"))
      out.pong = { ws:recv_frame() }
      local big = ("b"):rep(70000)
      assert(ws:send_binary(big))
      local d, t = ws:recv_frame()
      out.big = { d == big, t }
      assert(ws:send_close(1000))
      out.close = { ws:recv_frame() }
      -- the Python client against our server
      local seen = {}
      local done = support.event()
      local lst, sport = support.server(function(c)
        local sws = assert(websocket.accept(c, nil, { max_payload_len = 100000 }))
        while true do
          local data, typ, err = sws:recv_frame()
          seen[#seen + 1] = { data and #data, typ, err }
          if not data or typ == "close" then break end
          if typ == "text" then sws:send_text(data)
          elseif typ == "binary" and not err then sws:send_binary(data)
          elseif typ == "continuation" and not err then sws:send_binary("abcd") end
        end
        done.set(true)
      end)
      assert(sh(("python3 -u %s/peer.py client %d > %s/cli.log 2>&1 &"):format(dir, sport, dir)))
      done.wait()
      assert(support.eventually(function() return slurp(dir .. "/cli.log"):find("\n") ~= nil end, 10))
      out.cli = slurp(dir .. "/cli.log")
      out.seen = seen
      lst:close()
      return out
    end)
    assert.are.same({ "héllo", "text" }, r.text)
    assert.are.same({ "x", "pong" }, r.pong)
    assert.are.same({ true, "binary" }, r.big)
    assert.are.same({ "", "close", 1000 }, r.close)
    assert.are.equal("accept-ok 81:False:6:68c3a96c6c6f 82:False:4:61626364 8a:False:2:7070 "
      .. "82:False:70000:7a7a7a7a7a7a7a7a7a7a7a7a 88:False:1000\n", r.cli)
    assert.are.same({ 6, "text" }, r.seen[1])
    assert.are.same({ 2, "binary", "again" }, r.seen[2])
    assert.are.same({ 2, "continuation" }, r.seen[3])
    assert.are.same({ 70000, "binary" }, r.seen[4])
    assert.are.same({ 2, "close", 1000 }, r.seen[5])
  end)

  it("survives a seeded mutation fuzz of frames: a frame, a close with a code, or an error", function()
    local seed = tonumber(os.getenv("RINGLINE_FUZZ_SEED") or "") or 12
    math.randomseed(seed)
    local corpus = {
      cframe(0x81, "hello") .. cframe(0x82, "\0\1\2") .. cframe(0x89, "p") .. cframe(0x88, "\3\232bye"),
      cframe(0x01, "fr") .. cframe(0x89, "") .. cframe(0x80, "ag") .. cframe(0x8A, "x"),
      cframe(0x81, ("é"):rep(70)) .. cframe(0x82, ("y"):rep(300)),
      cframe(0x81, "a\226\130\172") .. cframe(0x88, ""),
    }
    local TYPES = { text = true, binary = true, continuation = true, close = true, ping = true, pong = true }
    local CODES = { [1000] = true, [1001] = true, [1002] = true, [1003] = true, [1007] = true,
                    [1009] = true, [1010] = true, [1011] = true }
    local rounds = 1000
    local r = run(function()
      local stats = { frames = 0, closes = 0, errors = 0, rounds = 0 }
      local lst, port = support.server(function(c)
        local ws = websocket.new(c, { max_payload_len = 200 })
        c:settimeout(2000)
        for _ = 1, 100 do
          local data, typ, err = ws:recv_frame()
          if not data then
            assert(typ == nil and type(err) == "string", "a failure is nil, nil, err")
            assert(err ~= "timeout", "the server waited for bytes that never come")
            stats.errors = stats.errors + 1
            break
          end
          assert(TYPES[typ], "unknown type")
          if typ == "close" then
            assert(err == nil or CODES[err] or (err >= 3000 and err <= 4999), "close code")
            stats.closes = stats.closes + 1
            break
          end
          assert(#data <= 200)
          if typ == "text" and not err then
            -- an unfragmented text message is whole UTF-8
            assert(websocket._utf8_valid(data), "invalid UTF-8 returned as text")
          end
          stats.frames = stats.frames + 1
        end
        c:close()
      end)
      for _ = 1, rounds do
        local s = corpus[math.random(#corpus)]
        local t = {}
        for i = 1, #s do t[i] = s:sub(i, i) end
        for _ = 1, math.random(1, 4) do
          local op, i = math.random(3), math.random(#t)
          if op == 1 then t[i] = string.char(bit.bxor(t[i]:byte(), bit.lshift(1, math.random(0, 7))))
          elseif op == 2 then table.remove(t, i)
          else table.insert(t, i, t[i]) end
        end
        local c = support.connect(port)
        c:settimeout(3000)
        c:send(table.concat(t))
        c:shutdown("send")
        -- whatever comes back is frames a server may send: pongs and one close with a code
        while true do
          local b1, payload = read_frame(c)
          if not b1 then break end
          assert(b1 == 0x8A or b1 == 0x88, ("server sent %x"):format(b1))
          if b1 == 0x88 and #payload >= 2 then
            local code = close_code(payload)
            assert(CODES[code] or (code >= 3000 and code <= 4999), "close code " .. code)
          end
        end
        c:close()
        stats.rounds = stats.rounds + 1
      end
      lst:close()
      return stats
    end, { timeout = 20 })
    assert.are.equal(rounds, r.rounds)
    assert.is_true(r.frames > 0 and r.closes > 0 and r.errors > 0)
  end)
end)

-- Node's ws (npm) as the peer, when RINGLINE_NODE_WS names a directory
-- holding node_modules/ws (`npm install ws` there): the package comes from
-- the network, so CI runs the Python peer above and this runs on demand.
local node_dir = os.getenv("RINGLINE_NODE_WS")
if node_dir then
  describe("ringline.websocket against Node's ws", function()
    local NODE = [=[
const WebSocket = require("ws");
if (process.argv[2] === "server") {
  const wss = new WebSocket.Server({ host: "127.0.0.1", port: 0 }, () =>
    console.log("port " + wss.address().port));
  wss.on("connection", (ws) => {
    ws.on("message", (m, isBinary) => ws.send(m, { binary: isBinary }));
    ws.on("close", (code) => { console.log("closed " + code); process.exit(0); });
  });
} else {
  const ws = new WebSocket("ws://127.0.0.1:" + process.argv[3] + "/node");
  const got = [];
  ws.on("open", () => { ws.send("héllo"); ws.send(Buffer.alloc(70000, 7)); ws.ping("pp"); });
  ws.on("message", (m, isBinary) => { got.push((isBinary ? "b" : "t") + m.length); });
  ws.on("pong", (m) => { got.push("pong:" + m.toString()); if (got.length >= 3) ws.close(1000, "bye"); });
  ws.on("close", (code, reason) => { console.log(got.sort().join(" ") + " close " + code); process.exit(0); });
}
]=]
    it("echoes through Node's ws server and serves Node's ws client", function()
      local dir = os.tmpname()
      os.remove(dir)
      assert(sh("mkdir -p " .. dir))
      local f = assert(io.open(dir .. "/peer.js", "wb"))
      f:write(NODE)
      f:close()
      finally(function() os.execute("rm -rf " .. dir) end)
      local function slurp(p)
        local h = io.open(p)
        if not h then return "" end
        local s = h:read("*a")
        h:close()
        return s
      end
      local env = "NODE_PATH=" .. node_dir .. "/node_modules "
      assert(sh(("%s node %s/peer.js server > %s/srv.log 2>&1 &"):format(env, dir, dir)))
      local r = run(function()
        local out = {}
        local port
        assert(support.eventually(function()
          port = slurp(dir .. "/srv.log"):match("port (%d+)")
          return port ~= nil
        end, 10), "node did not start")
        local ws = assert(websocket.connect("ws://127.0.0.1:" .. port .. "/", { max_payload_len = 100000 }))
        assert(ws:send_text("héllo"))
        out.text = { ws:recv_frame() }
        assert(ws:send_frame(false, 2, "ab"))
        assert(ws:send_frame(true, 0, "cd"))
        out.frag = { ws:recv_frame() }
        assert(ws:send_ping("x"))
        out.pong = { ws:recv_frame() }
        assert(ws:send_close(1000, "done"))
        out.close = { ws:recv_frame() }
        local seen = {}
        local done = support.event()
        local lst, sport = support.server(function(c)
          local sws = assert(websocket.accept(c, nil, { max_payload_len = 100000 }))
          while true do
            local data, typ, err = sws:recv_frame()
            seen[#seen + 1] = { data and #data, typ, err }
            if not data or typ == "close" then break end
            if typ == "text" then sws:send_text(data) else sws:send_binary(data) end
          end
          done.set(true)
        end)
        assert(sh(("%s node %s/peer.js client %d > %s/cli.log 2>&1 &"):format(env, dir, sport, dir)))
        done.wait()
        assert(support.eventually(function() return slurp(dir .. "/cli.log"):find("\n") ~= nil end, 10))
        out.cli = slurp(dir .. "/cli.log")
        support.eventually(function() return slurp(dir .. "/srv.log"):find("closed") ~= nil end, 10)
        out.srvlog = slurp(dir .. "/srv.log")
        out.seen = seen
        lst:close()
        return out
      end)
      assert.are.same({ "héllo", "text" }, r.text)
      assert.are.same({ "abcd", "binary" }, r.frag)
      assert.are.same({ "x", "pong" }, r.pong)
      assert.are.same({ "done", "close", 1000 }, r.close)   -- ws echoes the reason too
      assert.matches("closed 1000", r.srvlog)
      assert.are.equal("b70000 pong:pp t6 close 1000\n", r.cli)
      assert.are.same({ 6, "text" }, r.seen[1])
      assert.are.same({ 70000, "binary" }, r.seen[2])
      assert.are.same({ 3, "close", 1000 }, r.seen[3])
    end)
  end)
end

describe("http.websocket (the HTTP server's upgrade)", function()
  local http = require "ringline.http"

  it("upgrades inside an http.listen handler; a non-upgrade gets 400, another version 426", function()
    local r = run(function()
      local lst = assert(http.listen("127.0.0.1:0", function(req, res)
        local ws, err = http.websocket(req, res)
        if not ws then return end
        while true do
          local data, typ = ws:recv_frame()
          if not data or typ == "close" then return end
          ws:send_text("echo:" .. data)
        end
      end))
      local _, port = lst:getsockname()
      local ws = assert(http.websocket_connect("ws://127.0.0.1:" .. port .. "/chat"))
      assert(ws:send_text("hi"))
      local got, typ = ws:recv_frame()
      ws:send_close(1000, "bye")
      -- a plain GET: 400; a wrong version: 426 naming the one spoken
      local function raw(head)
        local c = assert(ringline.connect("127.0.0.1", port))
        c:settimeout(2000)
        c:send(head)
        local all = c:receive("*a")
        c:close()
        return all
      end
      local plain = raw("GET /chat HTTP/1.1\r\nHost: x\r\n\r\n")
      local v8 = raw("GET /chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        .. "Sec-WebSocket-Version: 8\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
      lst:close()
      return { got, typ, plain, v8 }
    end)
    assert.are.same({ "echo:hi", "text" }, { r[1], r[2] })
    assert.matches("^HTTP/1%.1 400 ", r[3])
    assert.matches("^HTTP/1%.1 426 ", r[4])
    assert.matches("\r\nSec%-WebSocket%-Version: 13\r\n", r[4])
  end)
end)
