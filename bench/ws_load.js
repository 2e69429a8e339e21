// bench/ws_load.js: the WebSocket echo load of bench/ws.sh. N connections
// each keep one message of SIZE bytes in flight (send, wait for the echo,
// send again) for SECS seconds; prints the echoes received. bench/ws.sh
// reads the server's CPU time around this whole process, so every echo
// it served is counted.
//   node bench/ws_load.js PORT [SECS] [N] [SIZE]   (NODE_PATH must hold ws)
const WebSocket = require("ws");
const port = +process.argv[2], secs = +process.argv[3] || 5;
const N = +process.argv[4] || 64, size = +process.argv[5] || 64;
const msg = Buffer.alloc(size, 97);
let count = 0, failed = 0;
for (let i = 0; i < N; i++) {
  const ws = new WebSocket("ws://127.0.0.1:" + port + "/");
  ws.on("open", () => ws.send(msg));
  ws.on("message", () => { count++; ws.send(msg); });
  ws.on("error", () => { failed++; });
}
setTimeout(() => {
  console.log("BENCH msgs=" + count + " per_s=" + Math.round(count / secs) + " errors=" + failed);
  process.exit(0);
}, secs * 1000);
