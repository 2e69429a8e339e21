#!/usr/bin/env bash
# bench/proxy.sh: what examples/proxy.lua adds to an echo round trip
# (issue 5). On demand, never in CI.
#
#   bench/proxy.sh
#
# The upstream is the core's C echo server (rl_echo). The load generator
# (the shared harness's echo_client) talks to it three ways, in the same
# run, interleaved:
#   direct    client -> rl_echo
#   ringline  client -> examples/proxy.lua (one worker) -> rl_echo
#   haproxy   client -> haproxy (mode tcp, one thread) -> rl_echo, when
#             haproxy is installed: the proxy a user would pick instead
# Placement: the proxy has CPU 0 to itself; client and upstream share
# CPU 1 in every set-up (also for direct), so the set-ups differ only by
# the proxy hop.
# Workloads (echo_client flags):
#   latency   -c 1 -s 64 -P 1        one connection, one message in flight
#   rate      -c 32 -s 64 -P 1       small messages on many connections
#   bulk      -c 4 -s 65536 -P 4     streaming
# Reported per set-up and workload: medians of RUNS runs of rps, MB/s,
# p50/p99 latency (us), and the proxy's CPU seconds per second of run
# (utime + stime from /proc), with the added latency and the throughput
# ratios against direct.
#
# Knobs: RL_BUILD (default build-rel: cmake -B build-rel
# -DCMAKE_BUILD_TYPE=Release), DURATION (5), RUNS (3), OUT
# (/tmp/ringline-bench/proxy-<stamp>), PORT_BASE (18090).
set -euo pipefail
RL_ROOT="$(cd "$(dirname "$0")/.." && pwd)"
RL_BUILD="${RL_BUILD:-$RL_ROOT/build-rel}"
SHARED="${SHARED:-$RL_ROOT/../shared/bench}"
HOST="$RL_BUILD/bindings/ringline-lua"
ECHO="$RL_BUILD/rl_echo"
DURATION=${DURATION:-5}
RUNS=${RUNS:-3}
PORT_BASE=${PORT_BASE:-18090}
OUT=${OUT:-/tmp/ringline-bench/proxy-$(date +%Y%m%d-%H%M%S)}
UPORT=$PORT_BASE PPORT=$((PORT_BASE + 1)) HPORT=$((PORT_BASE + 2))

[ -x "$HOST" ] && [ -x "$ECHO" ] || { echo "build first: $HOST, $ECHO" >&2; exit 1; }
mkdir -p "$OUT"
cc -O2 -o "$OUT/echo_client" "$SHARED/client/echo_client.c" -lm
HAPROXY=$(command -v haproxy || true)
{
  echo "date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
  echo "kernel: $(uname -r)"
  echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //') x $(nproc)"
  echo "host: $("$HOST" --version | head -n 1)"
  echo "haproxy: ${HAPROXY:+$("$HAPROXY" -v | head -n 1)}"
  echo "duration: ${DURATION}s x $RUNS runs (median, interleaved)"
} | tee "$OUT/env.txt"

PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

wait_port() {
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "nothing listens on $1" >&2
  exit 1
}

taskset -c 1 "$ECHO" "127.0.0.1:$UPORT" >"$OUT/upstream.log" 2>&1 &
PIDS+=($!)
wait_port "$UPORT"
PORT=$PPORT BENCH_HOST=127.0.0.1 UPSTREAM=127.0.0.1:$UPORT \
  taskset -c 0 "$HOST" "$RL_ROOT/examples/proxy.lua" >"$OUT/proxy.log" 2>&1 &
RLPID=$!
PIDS+=($RLPID)
wait_port "$PPORT"
SETUPS="direct:$UPORT:0 ringline:$PPORT:$RLPID"
if [ -n "$HAPROXY" ]; then
  cat >"$OUT/haproxy.cfg" <<EOF
global
  nbthread 1
  maxconn 4096
defaults
  mode tcp
  timeout connect 5s
  timeout client 60s
  timeout server 60s
listen proxy
  bind 127.0.0.1:$HPORT
  server upstream 127.0.0.1:$UPORT
EOF
  taskset -c 0 "$HAPROXY" -db -f "$OUT/haproxy.cfg" >"$OUT/haproxy.log" 2>&1 &
  HAPID=$!
  PIDS+=($HAPID)
  wait_port "$HPORT"
  SETUPS="$SETUPS haproxy:$HPORT:$HAPID"
fi

cpu_ticks() { # pid -> utime + stime in clock ticks (0 for none)
  [ "$1" = 0 ] && { echo 0; return; }
  awk '{ print $14 + $15 }' "/proc/$1/stat"
}

WORKLOADS="latency:-c 1 -s 64 -P 1|rate:-c 32 -s 64 -P 1|bulk:-c 4 -s 65536 -P 4"
TSV="$OUT/runs.tsv"
echo -e "run\tworkload\tsetup\trps\tmbps\tp50_us\tp99_us\terrors\tproxy_cpu" >"$TSV"
HZ=$(getconf CLK_TCK)
for run in $(seq "$RUNS"); do
  IFS='|' read -ra WLS <<<"$WORKLOADS"
  for wl in "${WLS[@]}"; do
    name=${wl%%:*} flags=${wl#*:}
    for s in $SETUPS; do
      IFS=: read -r setup port pid <<<"$s"
      c0=$(cpu_ticks "$pid")
      # shellcheck disable=SC2086
      line=$(taskset -c 1 "$OUT/echo_client" -H 127.0.0.1 -p "$port" $flags -d "$DURATION" -w 1)
      c1=$(cpu_ticks "$pid")
      get() { sed -E "s/.*(^| )$1=([^ ]*).*/\2/" <<<"$line"; }
      # CPU seconds per second, over the warm-up and the measured part
      cpu=$(awk -v a="$c0" -v b="$c1" -v hz="$HZ" -v d="$DURATION" 'BEGIN { printf "%.3f", (b - a) / hz / (d + 1) }')
      printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$run" "$name" "$setup" "$(get rps)" "$(get mbps)" \
        "$(get p50_us)" "$(get p99_us)" "$(($(get errors) + $(get verify_errors)))" "$cpu" | tee -a "$TSV"
    done
  done
done

python3 - "$TSV" <<'PY' | tee "$OUT/summary.md"
import sys, statistics as st
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])][1:]
med = {}
for r in rows:
    med.setdefault((r[1], r[2]), []).append(r)
def m(k, i):
    return st.median(float(r[i]) for r in med[k])
print("| workload | set-up | rps | MB/s | p50 us | p99 us | errors | proxy CPU s/s | rps vs direct | added p50 us |")
print("|---|---|---|---|---|---|---|---|---|---|")
for wl in ("latency", "rate", "bulk"):
    d = (wl, "direct")
    for setup in ("direct", "ringline", "haproxy"):
        k = (wl, setup)
        if k not in med:
            continue
        print("| %s | %s | %.0f | %.1f | %.0f | %.0f | %d | %.2f | %.2f | %+.0f |" % (
            wl, setup, m(k, 3), m(k, 4), m(k, 5), m(k, 6), sum(int(r[7]) for r in med[k]), m(k, 8),
            m(k, 3) / m(d, 3), m(k, 5) - m(d, 5)))
PY
echo "results: $OUT"
