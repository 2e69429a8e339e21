// node.js: the Node peer of bench/udp.sh: a dgram UDP echo; every
// 'message' is sent back to its sender.
//
//   PORT=18090 BENCH_HOST=127.0.0.1 node bench/udp_peers/node.js
'use strict';
const dgram = require('dgram');
const net = require('net');

const host = process.env.BENCH_HOST || '127.0.0.1';
const port = Number(process.env.PORT || 8082);

const sock = dgram.createSocket(net.isIPv6(host) ? 'udp6' : 'udp4');
sock.on('message', (msg, rinfo) => sock.send(msg, rinfo.port, rinfo.address));
sock.on('error', (err) => { console.error(err); process.exit(1); });
sock.bind(port, host, () => console.log(`node udp echo listening on ${host}:${port}`));
// SIGTERM: close the socket and let the loop end, exit status 0
process.on('SIGTERM', () => sock.close());
