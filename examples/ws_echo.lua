-- ws_echo.lua: a WebSocket echo server (RFC 6455) with ringline.websocket
-- on a bare listener: every text or binary message comes back as it came,
-- fragments included; pings are answered by the module; a close is echoed.
--
--   ringline-lua examples/ws_echo.lua          (PORT=8083, BENCH_HOST=127.0.0.1)
--   then, e.g. with Python's websockets or Node's ws as the client:
--        node -e 'const W=require("ws");const w=new W("ws://127.0.0.1:8083/");
--                 w.on("open",()=>w.send("hi"));w.on("message",m=>{console.log(""+m);w.close()})'
--
-- PORT=0 picks a free port; the line printed at start says which.
local ringline = require "ringline"
local websocket = require "ringline.websocket"

local host = os.getenv("BENCH_HOST") or "127.0.0.1"
local port = tonumber(os.getenv("PORT") or "8083")

local function echo(conn)
  -- reads the upgrade request itself; a bad one gets its status and ends
  local ws, err, status = websocket.accept(conn, nil, { max_payload_len = 1048576 })
  if not ws then
    if status then
      conn:send("HTTP/1.1 ", status, status == 426 and " Upgrade Required\r\nSec-WebSocket-Version: 13"
        or " Bad Request", "\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
    end
    return nil, err
  end
  while true do
    local data, typ, e = ws:recv_frame()
    if not data or typ == "close" then return end
    if typ == "text" or typ == "binary" or typ == "continuation" then
      -- a fragment goes back as a fragment of the same kind
      local op = typ == "text" and 1 or typ == "binary" and 2 or 0
      if not ws:send_frame(e ~= "again", op, data) then return end
    end
  end
end

local addr = (host:find(":", 1, true) and "[" .. host .. "]" or host) .. ":" .. port
local lst = assert(ringline.listen(addr, echo))
local h, p = lst:getsockname()
print(("websocket echo server listening on %s:%d"):format(h, p))
print(("try: a WebSocket client on ws://%s:%d/ (Ctrl-C stops the server)"):format(h, p))
