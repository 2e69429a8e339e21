#!/usr/bin/env bash
# bench/kv.sh: examples/kv.lua against redis-server with redis-benchmark
# (issue 12: at least 1.0x per server CPU-second at -P 1 and at -P 16).
# On demand, never in CI.
#
#   bench/kv.sh
#
# Each set-up serves `redis-benchmark -t set,get -c 50 -n N -P P -q` in
# turn, RUNS times interleaved: kv.lua (one worker) and redis-server (one
# I/O thread, no persistence), each pinned to CPU_SERVER, the benchmark to
# CPU_CLIENT. Reported per run: SET and GET requests per second and the
# server's CPU seconds for the whole run (utime + stime from /proc, in
# clock ticks), and the requests per server CPU-second.
#
# Knobs: RL_BUILD (default build: the host build/bindings/ringline-lua),
# RUNS (2), N1 (requests per test at -P 1, 200000), N16 (at -P 16,
# 1000000), CPU_SERVER (1), CPU_CLIENT (0), PORT_BASE (16410), SERVERS
# ("kv plain redis"; plain is bench/resp_plain.lua, the cosocket server of
# issue 15).
set -euo pipefail
RL_ROOT="$(cd "$(dirname "$0")/.." && pwd)"
RL_BUILD="${RL_BUILD:-$RL_ROOT/build}"
HOST="$RL_BUILD/bindings/ringline-lua"
RUNS=${RUNS:-2}
N1=${N1:-200000}
N16=${N16:-1000000}
CPU_SERVER=${CPU_SERVER:-1}
CPU_CLIENT=${CPU_CLIENT:-0}
PORT_BASE=${PORT_BASE:-16410}
SERVERS=${SERVERS:-kv plain redis}
HZ=$(getconf CLK_TCK)

ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

wait_port() { # port: until the server answers PING (bounded)
  for _ in $(seq 100); do
    redis-cli -p "$1" ping >/dev/null 2>&1 && return 0
    sleep 0.05
  done
  echo "kv.sh: nothing answers on port $1" >&2
  return 1
}

one() { # server P N
  local server=$1 P=$2 N=$3 port pid
  if [ "$server" = kv ]; then
    port=$PORT_BASE
    PORT=$port taskset -c "$CPU_SERVER" "$HOST" "$RL_ROOT/examples/kv.lua" >/dev/null 2>&1 &
  elif [ "$server" = plain ]; then
    port=$((PORT_BASE + 2))
    PORT=$port taskset -c "$CPU_SERVER" "$HOST" "$RL_ROOT/bench/resp_plain.lua" >/dev/null 2>&1 &
  else
    port=$((PORT_BASE + 1))
    taskset -c "$CPU_SERVER" redis-server --port "$port" --save "" --appendonly no \
      --io-threads 1 >/dev/null 2>&1 &
  fi
  pid=$!
  wait_port "$port"
  local t0 t1 out
  t0=$(ticks "$pid")
  out=$(taskset -c "$CPU_CLIENT" redis-benchmark -p "$port" -t set,get -c 50 -n "$N" -P "$P" -q 2>&1 |
        tr '\r' '\n' | grep -E '^(SET|GET): [0-9.]+ requests' | sed -E 's/ requests per second.*/ rps/' | tr '\n' ' ')
  t1=$(ticks "$pid")
  kill "$pid"
  wait "$pid" 2>/dev/null || true
  awk -v s="$server" -v p="$P" -v o="$out" -v t=$((t1 - t0)) -v hz="$HZ" -v n="$N" 'BEGIN {
    cpu = t / hz
    printf "%-6s -P %-2s %s server CPU %.2f s, %.0f requests per CPU-second\n", s, p, o, cpu,
      (cpu > 0 ? 2 * n / cpu : 0) }'
}

echo "kv.sh: $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg); server on CPU $CPU_SERVER, client on CPU $CPU_CLIENT"
for P in 16 1; do
  N=$N16
  [ "$P" = 1 ] && N=$N1
  for _ in $(seq "$RUNS"); do
    for s in $SERVERS; do one "$s" "$P" "$N"; done
  done
done
