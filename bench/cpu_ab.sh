#!/usr/bin/env bash
# bench/cpu_ab.sh: requests per server CPU-second of two ringline-lua builds
# serving examples/http_hello.lua, in alternating rounds (fresh process
# each), server pinned to CPU 0 and wrk to CPU 1. Server CPU is read from
# /proc/PID/stat around a measured wrk run after a 1 s warm-up.
#
#   A=build B=/path/to/other/build ROUNDS=5 bench/cpu_ab.sh
#
# Prints one line per run: "<label> reqs=N cpu_ticks=N per_cpu_s=N".
# Each build serves the examples/ of its own source tree.
set -euo pipefail
A=${A:-build} B=${B:?set B to the other build directory} ROUNDS=${ROUNDS:-5}
PORT=${PORT:-18090} SECS=${SECS:-4}
src_of() { sed -n 's/^CMAKE_HOME_DIRECTORY:INTERNAL=//p' "$1/CMakeCache.txt"; }
one() { # label builddir
  local host=$2/bindings/ringline-lua script pid t0 t1 out reqs
  script=$(src_of "$2")/examples/http_hello.lua
  PORT=$PORT taskset -c 0 "$host" "$script" >/dev/null 2>&1 &
  pid=$!
  for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.1; done
  taskset -c 1 wrk -t1 -c64 -d1s "http://127.0.0.1:$PORT/" >/dev/null 2>&1
  t0=$(awk '{print $14 + $15}' "/proc/$pid/stat")
  out=$(taskset -c 1 wrk -t1 -c64 -d"${SECS}s" "http://127.0.0.1:$PORT/" 2>&1)
  t1=$(awk '{print $14 + $15}' "/proc/$pid/stat")
  kill "$pid"; wait "$pid" 2>/dev/null || true
  reqs=$(awk '/requests in/ {print $1}' <<<"$out")
  echo "$1 reqs=$reqs cpu_ticks=$((t1 - t0)) per_cpu_s=$((reqs * $(getconf CLK_TCK) / (t1 - t0)))"
}
for _ in $(seq "$ROUNDS"); do one B "$B"; one A "$A"; done
