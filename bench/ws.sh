#!/usr/bin/env bash
# bench/ws.sh: WebSocket echo, examples/ws_echo.lua against Node's ws
# (issue 12: at least 1.5x Node per server CPU-second), on demand, never
# in CI. 64 connections x 64 B messages, one in flight per connection,
# driven by bench/ws_load.js (Node's ws client).
#
#   bench/ws.sh
#
# Each server (one worker / one Node process) is pinned to CPU_SERVER, the
# load to CPU_CLIENT; the servers alternate, RUNS rounds, a fresh process
# each time. Per run: echoes, the server's CPU ticks over the load's whole
# life (utime + stime from /proc) and echoes per server CPU-second.
# Knobs: RL_BUILD (build), RUNS (3), SECS (5), CONNS (64), SIZE (64),
# CPU_SERVER (0), CPU_CLIENT (1), PORT (18383), WS_DIR (where `npm install
# ws` puts node_modules; default /tmp/ringline-ws-bench, installed from the
# npm registry when missing).
set -euo pipefail
RL_ROOT="$(cd "$(dirname "$0")/.." && pwd)"
RL_BUILD="${RL_BUILD:-$RL_ROOT/build}"
HOST="$RL_BUILD/bindings/ringline-lua"
RUNS=${RUNS:-3} SECS=${SECS:-5} CONNS=${CONNS:-64} SIZE=${SIZE:-64}
CPU_SERVER=${CPU_SERVER:-0} CPU_CLIENT=${CPU_CLIENT:-1} PORT=${PORT:-18383}
WS_DIR=${WS_DIR:-/tmp/ringline-ws-bench}
HZ=$(getconf CLK_TCK)

if [ ! -d "$WS_DIR/node_modules/ws" ]; then
  mkdir -p "$WS_DIR"
  (cd "$WS_DIR" && npm install --silent ws >/dev/null)
fi
export NODE_PATH="$WS_DIR/node_modules"

ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
wait_port() {
  for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && return 0; sleep 0.05; done
  echo "server did not listen on $PORT" >&2; return 1
}

one() { # label command...
  local label=$1; shift
  PORT=$PORT taskset -c "$CPU_SERVER" "$@" >/dev/null 2>&1 &
  local pid=$!
  wait_port
  local t0 out t1
  t0=$(ticks "$pid")
  out=$(taskset -c "$CPU_CLIENT" node "$RL_ROOT/bench/ws_load.js" "$PORT" "$SECS" "$CONNS" "$SIZE")
  t1=$(ticks "$pid")
  kill "$pid"; wait "$pid" 2>/dev/null || true
  local msgs=${out#*msgs=}; msgs=${msgs%% *}
  local dt=$((t1 - t0)); [ "$dt" -gt 0 ] || dt=1
  printf '%-12s msgs=%-9s cpu_ticks=%-5s per_cpu_s=%s %s\n' "$label" "$msgs" "$dt" \
    "$((msgs * HZ / dt))" "${out##*errors=}errors"
}

echo "# bench/ws.sh $(date -u +%FT%TZ) conns=$CONNS size=$SIZE secs=$SECS"
for _ in $(seq "$RUNS"); do
  one ringline "$HOST" -w 1 "$RL_ROOT/examples/ws_echo.lua"
  one node node "$RL_ROOT/bench/ws_node_echo.js" "$PORT"
done
