#!/usr/bin/env bash
# Large responses: examples/static_region.lua with copied bodies
# (STATIC_MODE=copy), with zero-copy bodies (guarded sends of region slices)
# and Debian nginx (sendfile on, one worker) serving the same files, on demand
# (not CI). Three parts, each compared within one run:
#
#   1. throughput: wrk (one thread, CONNS keep-alive connections) fetching one
#      file of 64 KiB, 256 KiB, 1 MiB, 4 MiB; req/s, MB/s, and requests per
#      server CPU second (the server's utime+stime from /proc over the run).
#   2. the zero-copy crossover: bench/zc_crossover.lua sends a 64-byte head
#      and a body slice of 1..64 KiB again and again, copied (zc_threshold
#      above the body: the plain copy path) or SENDMSG_ZC (zc_threshold =
#      the body size: the body guarded, the head copied),
#      plus the body as a plain Lua string; sends per sender CPU second.
#   3. memory per in-flight response: SLOW slow readers (tiny receive
#      buffers, never read) each ask for the 4 MiB file; the server's RSS
#      growth divided by SLOW, copied vs zero-copy (and nginx).
#
#   bench/large.sh [throughput|crossover|memory|all]     (default all)
#
# The server is pinned to SERVER_CPU (0), the clients to CLIENT_CPU (1).
# Knobs: DURATION (s per measurement, 5), RUNS (3, medians reported),
# CONNS (16), SLOW (100), PORT (18090), OUT (results dir). Loopback caveat:
# the kernel copies "zero-copy" sends on loopback (every notification says
# so, KERNEL-FACTS.md), so zero copy shows its overheads here but not its
# saving; a real NIC would not copy.
# Build first: cmake -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo && cmake --build build
set -euo pipefail
RL_ROOT="$(cd "$(dirname "$0")/.." && pwd)"
RL_BUILD="${RL_BUILD:-$RL_ROOT/build}"
HOST="$RL_BUILD/bindings/ringline-lua"
DURATION=${DURATION:-5}
RUNS=${RUNS:-3}
CONNS=${CONNS:-16}
SLOW=${SLOW:-100}
PORT=${PORT:-18090}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
WHAT=${1:-all}
OUT=${OUT:-/tmp/ringline-large/$(date +%Y%m%d-%H%M%S)}
TMP=$(mktemp -d /tmp/ringline-large.XXXXXX)
mkdir -p "$OUT"
TCK=$(getconf CLK_TCK)
SPID=

say() { printf '%s\n' "$*" >&2; }
cleanup() {
  [ -n "$SPID" ] && kill "$SPID" 2>/dev/null && wait "$SPID" 2>/dev/null
  rm -rf "$TMP"
}
trap cleanup EXIT

for t in taskset wrk nginx curl python3; do
  command -v "$t" >/dev/null || { say "large.sh: $t is missing (see ../shared/bench/setup.sh)"; exit 1; }
done
[ -x "$HOST" ] || { say "build ringline-lua first ($HOST)"; exit 1; }

{
  echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "host: $(uname -srm), $(nproc) CPUs: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
  echo "ringline-lua: $("$HOST" --version 2>&1 | head -1), build $RL_BUILD ($(grep -m1 CMAKE_BUILD_TYPE "$RL_BUILD/CMakeCache.txt" | cut -d= -f2))"
  echo "nginx: $(nginx -v 2>&1)"
  echo "wrk: $(wrk -v 2>&1 | head -1)"
  echo "settings: DURATION=$DURATION RUNS=$RUNS CONNS=$CONNS SLOW=$SLOW server cpu $SERVER_CPU, clients cpu $CLIENT_CPU"
} | tee "$OUT/env.txt" >&2

# ---- the files (the same bytes for every server) ----
FILES="$TMP/files"
mkdir -p "$FILES"
SIZES="64k:65536 256k:262144 1m:1048576 4m:4194304"
for s in $SIZES; do head -c "${s#*:}" /dev/urandom > "$FILES/f${s%%:*}.bin"; done

# ---- servers ----
cat > "$TMP/nginx.conf" <<EOF
daemon off;
master_process off;
worker_processes 1;
error_log $TMP/nginx-error.log warn;
pid $TMP/nginx.pid;
events { worker_connections 4096; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  tcp_nodelay on;
  keepalive_requests 1000000;
  keepalive_timeout 65;
  client_body_temp_path $TMP/nginx-body;
  proxy_temp_path $TMP/nginx-proxy;
  fastcgi_temp_path $TMP/nginx-fastcgi;
  uwsgi_temp_path $TMP/nginx-uwsgi;
  scgi_temp_path $TMP/nginx-scgi;
  default_type application/octet-stream;
  server {
    listen 127.0.0.1:$PORT;
    root $FILES;
    location / { }
  }
}
EOF

server_cmd() { # name
  case $1 in
    copy|zc) echo "env PORT=$PORT BENCH_HOST=127.0.0.1 STATIC_MODE=$1 $HOST $RL_ROOT/examples/static_region.lua $FILES" ;;
    nginx) echo "nginx -p $TMP -e $TMP/nginx-error.log -c $TMP/nginx.conf" ;;
  esac
}

start_server() { # name
  taskset -c "$SERVER_CPU" $(server_cmd "$1") >"$TMP/server-$1.log" 2>&1 &
  SPID=$!
  for _ in $(seq 100); do
    if curl -s -o "$TMP/probe" "http://127.0.0.1:$PORT/f64k.bin" && cmp -s "$TMP/probe" "$FILES/f64k.bin"; then
      # every file byte-exact before measuring anything
      for s in $SIZES; do
        curl -s "http://127.0.0.1:$PORT/f${s%%:*}.bin" | cmp -s - "$FILES/f${s%%:*}.bin" ||
          { say "$1: f${s%%:*}.bin differs"; exit 1; }
      done
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

# The machine is shared: before each measurement wait (up to QUIET_WAIT s)
# until both CPUs were more than 90% idle over one second, so another
# benchmark does not run on top of this one. NOISY counts the measurements
# that started anyway.
QUIET_WAIT=${QUIET_WAIT:-300}
NOISY=0
busy_total() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8, $2 + $3 + $4 + $5 + $6 + $7 + $8 }' /proc/stat; }
wait_quiet() {
  local end=$((SECONDS + QUIET_WAIT)) a b
  while :; do
    a=$(busy_total); sleep 1; b=$(busy_total)
    if awk -v a="$a" -v b="$b" 'BEGIN { split(a, x, " "); split(b, y, " ");
         exit !((y[1] - x[1]) < 0.1 * (y[2] - x[2])) }'; then return 0; fi
    if ((SECONDS >= end)); then
      NOISY=$((NOISY + 1))
      say "  (the machine is busy with something else; measuring anyway)"
      return 0
    fi
  done
}
calc() { awk "BEGIN { printf \"%.3f\", $1 }"; }
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$SPID/stat"; }
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$SPID/status"; }

cat > "$TMP/large.lua" <<'EOF'
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("BENCH requests=%d bytes=%d duration_us=%d p50_us=%d p99_us=%d errors=%d\n",
    summary.requests, summary.bytes, summary.duration, latency:percentile(50),
    latency:percentile(99), e.connect + e.read + e.write + e.status + e.timeout))
end
EOF

# ---- 1. throughput ----
throughput() {
  local tsv="$OUT/throughput.tsv"
  printf 'run\tserver\tsize\trequests\tbytes\tseconds\tcpu_s\terrors\tp50_us\tp99_us\n' > "$tsv"
  local servers=(copy zc nginx)
  for run in $(seq "$RUNS"); do
    for k in 0 1 2; do
      local srv=${servers[$(( (k + run) % 3 ))]}   # rotate the order per run
      wait_quiet
      start_server "$srv"
      taskset -c "$CLIENT_CPU" wrk -t1 -c"$CONNS" -d2s "http://127.0.0.1:$PORT/f256k.bin" >/dev/null   # warm-up
      for s in $SIZES; do
        local f="f${s%%:*}.bin" c0 c1 line
        wait_quiet
        c0=$(cpu_ticks)
        line=$(taskset -c "$CLIENT_CPU" wrk -t1 -c"$CONNS" -d"${DURATION}s" -s "$TMP/large.lua" \
          "http://127.0.0.1:$PORT/$f" | grep '^BENCH')
        c1=$(cpu_ticks)
        eval "$(sed -E 's/^BENCH //; s/ /;/g' <<<"$line")"
        # shellcheck disable=SC2154  # set by the eval above
        printf '%d\t%s\t%s\t%d\t%d\t%.3f\t%.2f\t%d\t%d\t%d\n' "$run" "$srv" "${s%%:*}" "$requests" "$bytes" \
          "$(calc "$duration_us / 1000000")" "$(calc "($c1 - $c0) / $TCK")" "$errors" "$p50_us" "$p99_us" >> "$tsv"
        say "  run $run $srv $f: $requests requests, cpu $(calc "($c1 - $c0) / $TCK") s, errors $errors"
      done
      stop_server
    done
  done
}

# ---- 2. crossover ----
crossover() {
  local tsv="$OUT/crossover.tsv"
  printf 'run\tmode\tsize\tsends\tcpu_s\tsends_per_cpu_s\tzc_sends\tzc_copied\n' > "$tsv"
  local d=$(( DURATION > 2 ? 2 : DURATION ))
  for run in $(seq "$RUNS"); do
    for size in 1024 2048 4096 8192 16384 32768 65536; do
      for mode in copy zc plain; do
        local opts=() extra=()
        case $mode in
          copy) opts=(--set zc_threshold=1g) ;;
          zc) opts=(--set "zc_threshold=$size") ;;   # the body guarded, the head copied
          plain) extra=(plain) ;;
        esac
        wait_quiet
        PORT=$PORT taskset -c "$SERVER_CPU" "$HOST" "${opts[@]}" "$RL_ROOT/bench/zc_crossover.lua" \
          send "$size" "$d" "${extra[@]}" > "$TMP/cx.out" 2>&1 &
        SPID=$!
        for _ in $(seq 100); do grep -q '^listening' "$TMP/cx.out" && break; sleep 0.05; done
        taskset -c "$CLIENT_CPU" "$HOST" "$RL_ROOT/bench/zc_crossover.lua" sink "$PORT"
        wait "$SPID"
        SPID=
        local line
        line=$(grep '^RESULT' "$TMP/cx.out") || { cat "$TMP/cx.out" >&2; exit 1; }
        eval "$(sed -E 's/^RESULT //; s/ /;/g' <<<"$line")"
        # shellcheck disable=SC2154
        printf '%d\t%s\t%d\t%d\t%s\t%s\t%d\t%d\n' "$run" "$mode" "$size" "$sends" "$cpu_s" \
          "$sends_per_cpu_s" "$zc_sends" "$zc_copied" >> "$tsv"
        say "  run $run crossover $mode $size B: $sends_per_cpu_s sends per CPU s (zc_copied $zc_copied of $zc_sends)"
      done
    done
  done
}

# ---- 3. memory per in-flight response ----
cat > "$TMP/slow.py" <<'EOF'
# SLOW connections with a 4 KiB receive buffer, each asking for one file
# and never reading; prints "ready" and holds them until stdin closes.
import socket, sys
port, n, path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
socks = []
for _ in range(n):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("127.0.0.1", port))
    s.sendall(("GET /%s HTTP/1.1\r\nHost: bench\r\n\r\n" % path).encode())
    socks.append(s)
print("ready", flush=True)
sys.stdin.read()
EOF

memory() {
  local tsv="$OUT/memory.tsv"
  printf 'run\tserver\tslow\tbase_kib\tloaded_kib\tper_response_kib\n' > "$tsv"
  for run in $(seq "$RUNS"); do
    for srv in copy zc nginx; do
      wait_quiet
      start_server "$srv"
      local base loaded prev
      base=$(rss_kib)
      coproc SLOWPROC { taskset -c "$CLIENT_CPU" python3 "$TMP/slow.py" "$PORT" "$SLOW" f4m.bin; }
      read -r _ <&"${SLOWPROC[0]}"
      # the server queues what the kernel does not take: wait until RSS settles
      prev=-1 loaded=$(rss_kib)
      for _ in $(seq 50); do
        [ "$loaded" = "$prev" ] && break
        sleep 0.2
        prev=$loaded loaded=$(rss_kib)
      done
      eval "exec ${SLOWPROC[1]}>&-"
      wait "$SLOWPROC_PID" 2>/dev/null || true
      printf '%d\t%s\t%d\t%d\t%d\t%.1f\n' "$run" "$srv" "$SLOW" "$base" "$loaded" \
        "$(calc "($loaded - $base) / $SLOW")" >> "$tsv"
      say "  run $run memory $srv: RSS $base -> $loaded KiB with $SLOW responses in flight"
      stop_server
    done
  done
}

case $WHAT in
  throughput) throughput ;;
  crossover) crossover ;;
  memory) memory ;;
  all) throughput; crossover; memory ;;
  *) say "usage: $0 [throughput|crossover|memory|all]"; exit 2 ;;
esac

# ---- summary: medians, and ratios within this run ----
python3 - "$OUT" <<'EOF' | tee "$OUT/summary.md"
import csv, os, statistics, sys
out = sys.argv[1]
def rows(name):
    p = os.path.join(out, name)
    return list(csv.DictReader(open(p), delimiter="\t")) if os.path.exists(p) else []
med = statistics.median

t = rows("throughput.tsv")
if t:
    print("### Throughput (medians of %d runs)\n" % len({r["run"] for r in t}))
    print("| body | server | req/s | MB/s | req per server CPU s | server CPU % | errors |")
    print("|---|---|---:|---:|---:|---:|---:|")
    res = {}
    for size in ["64k", "256k", "1m", "4m"]:
        for srv in ["copy", "zc", "nginx"]:
            rs = [r for r in t if r["size"] == size and r["server"] == srv]
            if not rs: continue
            rps = med(float(r["requests"]) / float(r["seconds"]) for r in rs)
            mbs = med(float(r["bytes"]) / float(r["seconds"]) / 1e6 for r in rs)
            eff = med(float(r["requests"]) / max(float(r["cpu_s"]), 0.01) for r in rs)
            cpu = med(100 * float(r["cpu_s"]) / float(r["seconds"]) for r in rs)
            err = sum(int(r["errors"]) for r in rs)
            res[size, srv] = (rps, eff)
            print("| %s | %s | %.0f | %.0f | %.0f | %.0f | %d |" % (size, srv, rps, mbs, eff, cpu, err))
    print("\nRatios (req/s; req per server CPU s):\n")
    print("| body | zc / copy | zc / nginx | copy / nginx |")
    print("|---|---|---|---|")
    for size in ["64k", "256k", "1m", "4m"]:
        if (size, "zc") not in res: continue
        z, c, n = res[size, "zc"], res[size, "copy"], res[size, "nginx"]
        print("| %s | %.2f; %.2f | %.2f; %.2f | %.2f; %.2f |" % (size, z[0] / c[0], z[1] / c[1],
              z[0] / n[0], z[1] / n[1], c[0] / n[0], c[1] / n[1]))
    print()

x = rows("crossover.tsv")
if x:
    print("### Zero-copy crossover: head + body sends per sender CPU second (medians of %d runs)\n"
          % len({r["run"] for r in x}))
    print("| body size | copied (slice below zc_threshold) | zero-copy | plain Lua string | zc / copied | zc notifications saying copied |")
    print("|---:|---:|---:|---:|---:|---:|")
    for size in sorted({int(r["size"]) for r in x}):
        v = {}
        for mode in ["copy", "zc", "plain"]:
            rs = [r for r in x if int(r["size"]) == size and r["mode"] == mode]
            v[mode] = med(float(r["sends_per_cpu_s"]) for r in rs)
        zc = [r for r in x if int(r["size"]) == size and r["mode"] == "zc"]
        copied = "%d%%" % (100 * sum(int(r["zc_copied"]) for r in zc) / max(1, sum(int(r["zc_sends"]) for r in zc)))
        print("| %d | %.0f | %.0f | %.0f | %.2f | %s |" % (size, v["copy"], v["zc"], v["plain"],
              v["zc"] / v["copy"], copied))
    print()

m = rows("memory.tsv")
if m:
    print("### Memory per in-flight 4 MiB response (%s slow readers, medians of %d runs)\n"
          % (m[0]["slow"], len({r["run"] for r in m})))
    print("| server | RSS before (KiB) | RSS loaded (KiB) | per response (KiB) |")
    print("|---|---:|---:|---:|")
    for srv in ["copy", "zc", "nginx"]:
        rs = [r for r in m if r["server"] == srv]
        if not rs: continue
        print("| %s | %.0f | %.0f | %.1f |" % (srv, med(float(r["base_kib"]) for r in rs),
              med(float(r["loaded_kib"]) for r in rs), med(float(r["per_response_kib"]) for r in rs)))
EOF
echo "measurements started on a busy machine: $NOISY" | tee -a "$OUT/env.txt" >&2
say "results: $OUT"
