#!/usr/bin/env bash
# bench/metrics_ab.sh: what serving /metrics costs the workers. HTTP hello
# throughput (examples/http_hello.lua under wrk) of one build in alternating
# rounds, fresh process each, three ways:
#   none    no --metrics
#   idle    --metrics, nobody scrapes
#   scrape  --metrics, /metrics fetched once a second (curl) during the run
# Server pinned to CPU 0; wrk and the scraper on CPU 1. Server CPU is read
# from /proc/PID/stat around the measured wrk run (after a 1 s warm-up), so
# the scrapes' own CPU (the host's metrics thread, same process) counts.
#
#   ROUNDS=5 SECS=10 bench/metrics_ab.sh            # build/ of this tree
#   A=/path/to/build ROUNDS=3 bench/metrics_ab.sh
#
# Prints one line per run: "<mode> reqs=N rps=N cpu_ticks=N per_cpu_s=N scrapes=N",
# then the mean rps of each mode.
set -euo pipefail
A=${A:-build} ROUNDS=${ROUNDS:-5} SECS=${SECS:-10}
PORT=${PORT:-18091} MPORT=${MPORT:-19091} CONNS=${CONNS:-64}
src_of() { sed -n 's/^CMAKE_HOME_DIRECTORY:INTERNAL=//p' "$1/CMakeCache.txt"; }
host=$A/bindings/ringline-lua
script=$(src_of "$A")/examples/http_hello.lua
results=$(mktemp)
trap 'rm -f "$results"' EXIT

one() { # mode
  local mode=$1 pid t0 t1 out reqs spid=0 n=0 args=()
  [ "$mode" != none ] && args=(--metrics "127.0.0.1:$MPORT")
  PORT=$PORT taskset -c 0 "$host" "${args[@]}" "$script" >/dev/null 2>&1 &
  pid=$!
  for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.1; done
  taskset -c 1 wrk -t1 -c"$CONNS" -d1s "http://127.0.0.1:$PORT/" >/dev/null 2>&1
  if [ "$mode" = scrape ]; then
    ( while :; do
        taskset -c 1 curl -sf -o /dev/null "http://127.0.0.1:$MPORT/metrics" && echo x
        sleep 1
      done ) >"$results.scrapes" &
    spid=$!
  fi
  t0=$(awk '{print $14 + $15}' "/proc/$pid/stat")
  out=$(taskset -c 1 wrk -t1 -c"$CONNS" -d"${SECS}s" "http://127.0.0.1:$PORT/" 2>&1)
  t1=$(awk '{print $14 + $15}' "/proc/$pid/stat")
  if [ "$spid" != 0 ]; then
    kill "$spid"; wait "$spid" 2>/dev/null || true
    n=$(wc -l <"$results.scrapes"); rm -f "$results.scrapes"
  fi
  kill "$pid"; wait "$pid" 2>/dev/null || true
  reqs=$(awk '/requests in/ {print $1}' <<<"$out")
  echo "$mode reqs=$reqs rps=$((reqs / SECS)) cpu_ticks=$((t1 - t0))" \
    "per_cpu_s=$((reqs * $(getconf CLK_TCK) / (t1 - t0 > 0 ? t1 - t0 : 1))) scrapes=$n" | tee -a "$results"
}
for _ in $(seq "$ROUNDS"); do one none; one idle; one scrape; done
for m in none idle scrape; do
  awk -v m="$m" '$1 == m { split($3, a, "="); s += a[2]; n++ }
    END { if (n) printf "%-6s mean rps %d over %d runs\n", m, s / n, n }' "$results"
done
