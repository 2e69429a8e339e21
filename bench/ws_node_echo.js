// bench/ws_node_echo.js: Node's ws echo server, the peer of bench/ws.sh.
//   node bench/ws_node_echo.js PORT   (NODE_PATH must hold ws)
const WebSocket = require("ws");
const wss = new WebSocket.Server({ host: "127.0.0.1", port: +process.argv[2] });
wss.on("connection", (ws) => ws.on("message", (m, b) => ws.send(m, { binary: b })));
