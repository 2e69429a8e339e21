#!/usr/bin/env bash
# TLS: ringline-lua against Debian nginx (ssl) and Node's https, one
# worker each, the same ECDSA P-256 certificate, on demand (not CI):
#
#   1. handshakes: wrk with "Connection: close" (a full TLS handshake per
#      request: wrk does not resume sessions); requests/s and per server
#      CPU second;
#   2. keepalive: wrk over kept-alive TLS connections, "Hello, World!";
#   3. bulk: wrk fetching a 1 MiB body over kept-alive connections; MB/s
#      and MB per server CPU second;
#   4. memory: the server's RSS growth over IDLE idle TLS connections
#      (bench/tls_idle.lua holds them after their handshakes), per
#      connection.
#
#   bench/tls.sh [handshakes|keepalive|bulk|memory|all]     (default all)
#
# ringline-lua serves examples/https_hello.lua (the hello) and
# bench/tls_bulk.lua (the 1 MiB body). The server is pinned to SERVER_CPU
# (0), the clients to CLIENT_CPU (1). Knobs: DURATION (s, 5), RUNS (3;
# every run is in the TSV), CONNS (16), IDLE (2000), PORT (18443), OUT.
# wrk counts a "read" socket error for every "Connection: close" request
# ringline-lua answers (plaintext http_hello.lua too; the responses are
# whole and the requests counted): the handshakes TSV's errors column
# shows it, nginx's shows 0.
# Build first: cmake -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo && cmake --build build
set -euo pipefail
RL_ROOT="$(cd "$(dirname "$0")/.." && pwd)"
RL_BUILD="${RL_BUILD:-$RL_ROOT/build}"
HOST="$RL_BUILD/bindings/ringline-lua"
DURATION=${DURATION:-5}
RUNS=${RUNS:-3}
CONNS=${CONNS:-16}
IDLE=${IDLE:-2000}
PORT=${PORT:-18443}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
WHAT=${1:-all}
OUT=${OUT:-/tmp/ringline-tls/$(date +%Y%m%d-%H%M%S)}
TMP=$(mktemp -d /tmp/ringline-tls.XXXXXX)
mkdir -p "$OUT"
TCK=$(getconf CLK_TCK)
SPID=
CPID=

say() { printf '%s\n' "$*" >&2; }
cleanup() {
  [ -n "$CPID" ] && kill "$CPID" 2>/dev/null && wait "$CPID" 2>/dev/null
  [ -n "$SPID" ] && kill "$SPID" 2>/dev/null && wait "$SPID" 2>/dev/null
  rm -rf "$TMP"
}
trap cleanup EXIT

for t in taskset wrk nginx node curl openssl; do
  command -v "$t" >/dev/null || { say "tls.sh: $t is missing"; exit 1; }
done
[ -x "$HOST" ] || { say "build ringline-lua first ($HOST)"; exit 1; }
(( $(ulimit -n) > IDLE * 2 + 100 )) || { say "tls.sh: ulimit -n must exceed $((IDLE * 2 + 100))"; exit 1; }

{
  echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "host: $(uname -srm), $(nproc) CPUs: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
  echo "ringline-lua: $("$HOST" --version 2>&1 | head -1), build $RL_BUILD ($(grep -m1 CMAKE_BUILD_TYPE "$RL_BUILD/CMakeCache.txt" | cut -d= -f2))"
  echo "openssl: $(openssl version)"
  echo "nginx: $(nginx -v 2>&1)"
  echo "node: $(node --version)"
  echo "wrk: $(wrk -v 2>&1 | head -1)"
  echo "settings: DURATION=$DURATION RUNS=$RUNS CONNS=$CONNS IDLE=$IDLE server cpu $SERVER_CPU, clients cpu $CLIENT_CPU"
} | tee "$OUT/env.txt" >&2

# ---- the certificate and the bodies (the same for every server) ----
CERT=$TMP/cert.pem KEY=$TMP/key.pem
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=localhost \
  -addext subjectAltName=DNS:localhost,IP:127.0.0.1 -keyout "$KEY" -out "$CERT" >/dev/null 2>&1
mkdir -p "$TMP/www"
printf 'Hello, World!' > "$TMP/www/hello"
awk 'BEGIN { for (i = 0; i < 65536; i++) printf "0123456789abcdef" }' > "$TMP/www/1m"

cat > "$TMP/nginx.conf" <<NGX
daemon off;
master_process off;
worker_processes 1;
error_log $TMP/nginx-error.log warn;
pid $TMP/nginx.pid;
events { worker_connections $((IDLE + 1024)); }
http {
  access_log off;
  keepalive_requests 1000000;
  keepalive_timeout 65;
  client_body_temp_path $TMP/nginx-body;
  proxy_temp_path $TMP/nginx-proxy;
  fastcgi_temp_path $TMP/nginx-fastcgi;
  uwsgi_temp_path $TMP/nginx-uwsgi;
  scgi_temp_path $TMP/nginx-scgi;
  ssl_certificate $CERT;
  ssl_certificate_key $KEY;
  ssl_protocols TLSv1.2 TLSv1.3;
  ssl_session_tickets off;
  server {
    listen 127.0.0.1:$PORT ssl;
    root $TMP/www;
    location = / { default_type text/plain; return 200 "Hello, World!"; }
    location = /1m { default_type application/octet-stream; }
  }
}
NGX

cat > "$TMP/node.js" <<'NODE'
const https = require("https"), fs = require("fs");
const body = Buffer.from(fs.readFileSync(process.env.WWW + "/1m"));
https.createServer({ cert: fs.readFileSync(process.env.CERT), key: fs.readFileSync(process.env.KEY),
                     keepAliveTimeout: 65000 }, (req, res) => {
  if (req.url === "/1m") { res.writeHead(200, { "Content-Type": "application/octet-stream", "Content-Length": body.length }); res.end(body); }
  else { res.writeHead(200, { "Content-Type": "text/plain", "Content-Length": 13 }); res.end("Hello, World!"); }
}).listen(+process.env.PORT, "127.0.0.1", () => console.log("listening"));
NODE

# server_cmd NAME WHAT: the command serving WHAT (hello or bulk)
server_cmd() {
  case $1 in
    ringline)
      if [ "$2" = bulk ]; then echo "env CERT=$CERT KEY=$KEY PORT=$PORT $HOST $RL_ROOT/bench/tls_bulk.lua"
      else echo "env CERT=$CERT KEY=$KEY PORT=$PORT BENCH_HOST=127.0.0.1 $HOST $RL_ROOT/examples/https_hello.lua"; fi ;;
    nginx) echo "nginx -p $TMP -e $TMP/nginx-error.log -c $TMP/nginx.conf" ;;
    node) echo "env CERT=$CERT KEY=$KEY WWW=$TMP/www PORT=$PORT node $TMP/node.js" ;;
  esac
}
url_of() { [ "$1" = bulk ] && echo "https://127.0.0.1:$PORT/1m" || echo "https://127.0.0.1:$PORT/"; }

start_server() { # name what
  # shellcheck disable=SC2046  # the command line, split into words
  taskset -c "$SERVER_CPU" $(server_cmd "$1" "$2") >"$TMP/server-$1.log" 2>&1 &
  SPID=$!
  for _ in $(seq 100); do
    if curl -s --cacert "$CERT" -o "$TMP/probe" "$(url_of "$2")"; then
      if [ "$2" = bulk ]; then cmp -s "$TMP/probe" "$TMP/www/1m" || { say "$1: the 1 MiB body differs"; exit 1; }
      else [ "$(cat "$TMP/probe")" = "Hello, World!" ] || { say "$1: not the hello"; exit 1; }; fi
      return 0
    fi
    sleep 0.1
  done
  say "$1 did not start:"; cat "$TMP/server-$1.log" >&2; exit 1
}
stop_server() {
  kill "$SPID" 2>/dev/null || true
  wait "$SPID" 2>/dev/null || true
  SPID=
}

# The machine is shared: wait (up to QUIET_WAIT s) for both CPUs to be 90%
# idle over a second before each measurement; NOISY counts those that
# started anyway.
QUIET_WAIT=${QUIET_WAIT:-300}
NOISY=0
busy_total() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8, $2 + $3 + $4 + $5 + $6 + $7 + $8 }' /proc/stat; }
wait_quiet() {
  local end=$((SECONDS + QUIET_WAIT)) a b
  while :; do
    a=$(busy_total); sleep 1; b=$(busy_total)
    if awk -v a="$a" -v b="$b" 'BEGIN { split(a, x, " "); split(b, y, " ");
         exit !((y[1] - x[1]) < 0.1 * (y[2] - x[2])) }'; then return 0; fi
    if ((SECONDS >= end)); then NOISY=$((NOISY + 1)); say "  (busy machine; measuring anyway)"; return 0; fi
  done
}
calc() { awk "BEGIN { printf \"%.3f\", $1 }"; }
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$SPID/stat"; }
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$SPID/status"; }

cat > "$TMP/report.lua" <<'WRK'
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("BENCH requests=%d bytes=%d duration_us=%d errors=%d\n",
    summary.requests, summary.bytes, summary.duration,
    e.connect + e.read + e.write + e.status + e.timeout))
end
WRK

# measure KIND: wrk runs for every server, RUNS times, rotating the order
measure() {
  local kind=$1 what=hello hdr=() tsv="$OUT/$1.tsv"
  [ "$kind" = bulk ] && what=bulk
  [ "$kind" = handshakes ] && hdr=(-H "Connection: close")
  printf 'run\tserver\trequests\tbytes\tseconds\tcpu_s\terrors\n' > "$tsv"
  local servers=(ringline nginx node)
  for run in $(seq "$RUNS"); do
    for k in 0 1 2; do
      local srv=${servers[$(( (k + run) % 3 ))]} c0 c1 line
      wait_quiet
      start_server "$srv" "$what"
      taskset -c "$CLIENT_CPU" wrk -t1 -c"$CONNS" -d1s "${hdr[@]}" "$(url_of "$what")" >/dev/null  # warm-up
      c0=$(cpu_ticks)
      line=$(taskset -c "$CLIENT_CPU" wrk -t1 -c"$CONNS" -d"${DURATION}s" "${hdr[@]}" -s "$TMP/report.lua" \
        "$(url_of "$what")" | grep '^BENCH')
      c1=$(cpu_ticks)
      stop_server
      eval "$(sed -E 's/^BENCH //; s/ /;/g' <<<"$line")"
      # shellcheck disable=SC2154  # set by the eval above
      printf '%d\t%s\t%d\t%d\t%.3f\t%.2f\t%d\n' "$run" "$srv" "$requests" "$bytes" \
        "$(calc "$duration_us / 1000000")" "$(calc "($c1 - $c0) / $TCK")" "$errors" >> "$tsv"
      say "  $kind run $run $srv: $requests requests, cpu $(calc "($c1 - $c0) / $TCK") s, errors $errors"
    done
  done
  # medians per server: requests/s, MB/s, requests (and MB) per server CPU second
  awk -F'\t' -v kind="$kind" 'NR > 1 { n[$2]++; r[$2, n[$2]] = $3 / $5; m[$2, n[$2]] = $4 / $5 / 1e6;
        rc[$2, n[$2]] = $6 > 0 ? $3 / $6 : 0; mc[$2, n[$2]] = $6 > 0 ? $4 / $6 / 1e6 : 0 }
    function med(a, s, k,   v, i, j, t) { for (i = 1; i <= k; i++) v[i] = a[s, i]
      for (i = 1; i <= k; i++) for (j = i + 1; j <= k; j++) if (v[j] < v[i]) { t = v[i]; v[i] = v[j]; v[j] = t }
      return v[int((k + 1) / 2)] }
    END { for (s in n) printf "%-10s %-9s %10.0f req/s %8.1f MB/s %10.0f req/cpu-s %8.1f MB/cpu-s\n",
      kind, s, med(r, s, n[s]), med(m, s, n[s]), med(rc, s, n[s]), med(mc, s, n[s]) }' "$tsv" | sort | tee -a "$OUT/summary.txt"
}

memory() {
  local tsv="$OUT/memory.tsv"
  printf 'server\tconns\trss0_kib\trss1_kib\tbytes_per_conn\n' > "$tsv"
  for srv in ringline nginx node; do
    wait_quiet
    start_server "$srv" hello
    local r0 r1
    r0=$(rss_kib)
    taskset -c "$CLIENT_CPU" env N="$IDLE" PORT="$PORT" "$HOST" "$RL_ROOT/bench/tls_idle.lua" >"$TMP/idle.out" 2>&1 &
    CPID=$!
    for _ in $(seq 600); do grep -q '^ready' "$TMP/idle.out" && break; sleep 0.1; done
    grep -q "^ready $IDLE failed 0" "$TMP/idle.out" || { say "$srv: idle connections failed:"; cat "$TMP/idle.out" >&2; exit 1; }
    sleep 1   # let the last handshakes' buffers be released before reading RSS
    r1=$(rss_kib)
    kill "$CPID"; wait "$CPID" 2>/dev/null || true; CPID=
    stop_server
    printf '%s\t%d\t%d\t%d\t%d\n' "$srv" "$IDLE" "$r0" "$r1" $(( (r1 - r0) * 1024 / IDLE )) >> "$tsv"
    printf 'memory     %-9s %d idle TLS connections: %d KiB -> %d KiB RSS, %d bytes each\n' \
      "$srv" "$IDLE" "$r0" "$r1" $(( (r1 - r0) * 1024 / IDLE )) | tee -a "$OUT/summary.txt"
  done
}

case $WHAT in
  handshakes|keepalive|bulk) measure "$WHAT" ;;
  memory) memory ;;
  all) measure handshakes; measure keepalive; measure bulk; memory ;;
  *) say "usage: bench/tls.sh [handshakes|keepalive|bulk|memory|all]"; exit 2 ;;
esac
say "results in $OUT (NOISY=$NOISY measurements started on a busy machine)"
