#!/usr/bin/env bash
# bench/workers.sh: several workers (issue 6). On demand, never in CI.
#
#   bench/workers.sh [scaling|spread|accept|all]
#
# scaling  HTTP hello (examples/http_hello.lua) and echo (examples/echo.lua)
#          with one and two workers. On a 2-CPU machine the load generator
#          needs CPU too, so four set-ups are compared in the same run:
#            1w-pinned  server -w 1 on CPU 0, load generator on CPU 1 (the
#                       harness's usual set-up: the server has one whole CPU)
#            1w-shared  server -w 1, load generator with 2 threads, nobody
#                       pinned: both share both CPUs
#            2w-shared  server -w 2 (one worker pinned per CPU), load
#                       generator as in 1w-shared
#            2w-nopin   the same with --no-pin: the scheduler may move a
#                       worker away from a busy load-generator thread
#          2w-shared vs 1w-shared is what a second worker buys when the
#          cores are shared; vs 1w-pinned, what it costs to share them.
# spread   how SO_REUSEPORT spreads connections over 2 workers
#          (bench/lb_hello.lua counts per worker): an even load (64
#          connections) and an uneven one (4 heavy pipelined connections,
#          TRIALS fresh trials: the kernel hashes each connection to a worker).
# accept   SO_REUSEPORT against the acceptor (--accept acceptor), 2 workers
#          serving bench/lb_hello.lua, the two modes interleaved, each run
#          with the server's CPU time (all threads, the acceptor's too):
#            even-c64  64 keep-alive connections (wrk -c64), DURATION s
#            heavy-c4  4 heavy pipelined connections, 1 s per trial,
#                      TRIALS/RUNS fresh trials per run
#            churn     a connection per request: wrk -c64 with
#                      "Connection: close" against CLOSE=1 (the server
#                      closes after one answer), DURATION s
#
# Knobs: RL_BUILD (default build-rel: cmake -B build-rel
# -DCMAKE_BUILD_TYPE=Release), DURATION (5), RUNS (3), TRIALS (20),
# PORT (18080), OUT (/tmp/ringline-bench/workers-<stamp>).
# Needs wrk and the shared harness's echo client (built from
# ../shared/bench/client/echo_client.c into $OUT).
set -euo pipefail
RL_ROOT="$(cd "$(dirname "$0")/.." && pwd)"
RL_BUILD="${RL_BUILD:-$RL_ROOT/build-rel}"
SHARED="${SHARED:-$RL_ROOT/../shared/bench}"
HOST="$RL_BUILD/bindings/ringline-lua"
DURATION=${DURATION:-5}
RUNS=${RUNS:-3}
TRIALS=${TRIALS:-20}
PORT=${PORT:-18080}
OUT=${OUT:-/tmp/ringline-bench/workers-$(date +%Y%m%d-%H%M%S)}
export PORT BENCH_HOST=127.0.0.1

[ -x "$HOST" ] || { echo "build the host first: $HOST" >&2; exit 1; }
mkdir -p "$OUT"
cc -O2 -o "$OUT/echo_client" "$SHARED/client/echo_client.c" -lm 2>/dev/null ||
  cc -O2 -o "$OUT/echo_client" "$SHARED/client/echo_client.c" -lm -lpthread
{
  echo "date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
  echo "kernel: $(uname -r)"
  echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //') x $(nproc)"
  echo "host: $("$HOST" --version)"
  echo "duration: ${DURATION}s x $RUNS runs (median, interleaved), trials: $TRIALS"
} | tee "$OUT/env.txt"

SPID=""
start() { # taskset-cpus|- args... : start the server, wait for the port
  local cpus=$1; shift
  if [ "$cpus" = - ]; then "$HOST" "$@" >"$OUT/server.log" 2>&1 &
  else taskset -c "$cpus" "$HOST" "$@" >"$OUT/server.log" 2>&1 & fi
  SPID=$!
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "server did not start: $(cat "$OUT/server.log")" >&2
  return 1
}
stop() {
  kill -TERM "$SPID" 2>/dev/null || true
  wait "$SPID" 2>/dev/null || true
  SPID=""
}
trap stop EXIT
cpu_ticks() { # utime + stime of the server process, in clock ticks
  awk '{ print $14 + $15 }' "/proc/$SPID/stat"
}
hz=$(getconf CLK_TCK)

# One measured run: prints "rps server_cpu_seconds".
load() { # set-up workload scenario seconds
  local setup=$1 wl=$2 sc=$3 d=$4 pin="" threads=2 c0 c1 rps
  if [ "$setup" = 1w-pinned ]; then pin="taskset -c 1"; threads=1; fi
  c0=$(cpu_ticks)
  case $wl/$sc in
    http/c64)
      rps=$($pin wrk -t$threads -c64 -d"${d}s" -s "$SHARED/wrk/hello.lua" "http://127.0.0.1:$PORT/" |
            sed -n 's/^BENCH rps=\([0-9]*\).*/\1/p') ;;
    http/c64-pipe16)
      rps=$($pin wrk -t$threads -c64 -d"${d}s" -s "$SHARED/wrk/pipeline.lua" "http://127.0.0.1:$PORT/" -- 16 |
            sed -n 's/^BENCH rps=\([0-9]*\).*/\1/p') ;;
    echo/c64-64B)
      rps=$($pin "$OUT/echo_client" -H 127.0.0.1 -p "$PORT" -c 64 -s 64 -d "$d" -w 0 |
            sed -n 's/^rps=\([0-9]*\).*/\1/p') ;;
  esac
  c1=$(cpu_ticks)
  echo "${rps:-0} $(awk -v a="$c0" -v b="$c1" -v hz="$hz" 'BEGIN { printf "%.2f", (b - a) / hz }')"
}

server_args() { # set-up workload -> cpus and host arguments
  local ex=examples/http_hello.lua
  [ "$2" = echo ] && ex=examples/echo.lua
  case $1 in
    1w-pinned) echo "0 -w 1 $RL_ROOT/$ex" ;;
    1w-shared) echo "- -w 1 --no-pin $RL_ROOT/$ex" ;;
    2w-shared) echo "- -w 2 --pin $RL_ROOT/$ex" ;;
    2w-nopin) echo "- -w 2 --no-pin $RL_ROOT/$ex" ;;
  esac
}

scaling() {
  local tsv="$OUT/scaling.tsv" r setup wl sc
  printf 'workload\tscenario\tsetup\trun\trps\tsrv_cpu_s\n' >"$tsv"
  for r in $(seq "$RUNS"); do
    for wl_sc in http/c64 http/c64-pipe16 echo/c64-64B; do
      wl=${wl_sc%/*} sc=${wl_sc#*/}
      for setup in 1w-pinned 1w-shared 2w-shared 2w-nopin; do
        # shellcheck disable=SC2046
        start $(server_args "$setup" "$wl")
        load "$setup" "$wl" "$sc" 1 >/dev/null      # warm-up
        read -r rps cpu < <(load "$setup" "$wl" "$sc" "$DURATION")
        stop
        printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$wl" "$sc" "$setup" "$r" "$rps" "$cpu" | tee -a "$tsv"
      done
    done
  done
  echo "== medians (rps, server CPU-seconds per run, rps per server CPU-second)"
  awk -F'\t' 'NR > 1 { k = $1 "/" $2 " " $3; n[k]++; rps[k, n[k]] = $5; cpu[k, n[k]] = $6 }
    function med(a, k, c,   i, j, t, v) { for (i = 1; i <= c; i++) v[i] = a[k, i]
      for (i = 1; i <= c; i++) for (j = i + 1; j <= c; j++) if (v[j] < v[i]) { t = v[i]; v[i] = v[j]; v[j] = t }
      return v[int((c + 1) / 2)] }
    END { for (k in n) { r = med(rps, k, n[k]); c = med(cpu, k, n[k])
      printf "%-28s %9d rps  %5.2f cpu-s  %8.0f rps/cpu-s\n", k, r, c, (c > 0 ? r / c : 0) } }' "$tsv" |
    sort | tee "$OUT/scaling.txt"
}

# Per-worker counts since the last call: "w0_conns w0_reqs w1_conns w1_reqs".
counts() {
  local before
  before=$(grep -c '^lb ' "$OUT/server.log" || true)
  kill -USR1 "$SPID"
  for _ in $(seq 100); do
    [ "$(grep -c '^lb ' "$OUT/server.log")" -ge $((before + 2)) ] && break
    sleep 0.02
  done
  grep '^lb ' "$OUT/server.log" | tail -n 2 | sort -k2,2n | awk '{ printf "%s %s ", $3, $4 }'
  echo
}

spread() {
  local tsv="$OUT/spread.tsv" t rps c
  printf 'load\ttrial\tw0_conns\tw0_reqs\tw1_conns\tw1_reqs\trps\n' >"$tsv"
  start - -w 2 --pin "$RL_ROOT/bench/lb_hello.lua"
  counts >/dev/null
  for t in $(seq "$RUNS"); do
    rps=$(wrk -t2 -c64 -d"${DURATION}s" -s "$SHARED/wrk/hello.lua" "http://127.0.0.1:$PORT/" |
          sed -n 's/^BENCH rps=\([0-9]*\).*/\1/p')
    c=$(counts)
    printf 'even-c64\t%s\t%s\t%s\n' "$t" "$(tr ' ' '\t' <<<"${c% }")" "$rps" | tee -a "$tsv"
  done
  for t in $(seq "$TRIALS"); do
    rps=$(wrk -t2 -c4 -d1s -s "$SHARED/wrk/pipeline.lua" "http://127.0.0.1:$PORT/" -- 16 |
          sed -n 's/^BENCH rps=\([0-9]*\).*/\1/p')
    c=$(counts)
    printf 'heavy-c4\t%s\t%s\t%s\n' "$t" "$(tr ' ' '\t' <<<"${c% }")" "$rps" | tee -a "$tsv"
  done
  stop
  echo "== heavy-c4: trials by connection split (worker 0 / worker 1), median rps"
  awk -F'\t' '$1 == "heavy-c4" { a = $3 < $5 ? $3 : $5; b = $3 < $5 ? $5 : $3
      k = a "+" b; n[k]++; v[k, n[k]] = $7 }
    END { for (k in n) { c = n[k]; for (i = 1; i <= c; i++) w[i] = v[k, i]
      for (i = 1; i <= c; i++) for (j = i + 1; j <= c; j++) if (w[j] < w[i]) { x = w[i]; w[i] = w[j]; w[j] = x }
      printf "split %s: %2d trials, median %d rps\n", k, c, w[int((c + 1) / 2)] } }' "$tsv" |
    sort | tee "$OUT/spread.txt"
}

accept_row() { # mode load trial counts rps cpu
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$(tr ' ' '\t' <<<"${4% }")" "$5" "$6" |
    tee -a "$OUT/accept.tsv"
}

cpu_since() { # ticks -> server CPU-seconds since then
  awk -v a="$1" -v b="$(cpu_ticks)" -v hz="$hz" 'BEGIN { printf "%.2f", (b - a) / hz }'
}

accept_modes() {
  local tsv="$OUT/accept.tsv" r t mode rps c0 cpu c per=$(( (TRIALS + RUNS - 1) / RUNS ))
  printf 'mode\tload\ttrial\tw0_conns\tw0_reqs\tw1_conns\tw1_reqs\trps\tsrv_cpu_s\n' >"$tsv"
  for r in $(seq "$RUNS"); do
    # the order alternates between runs: neither mode always goes first
    for mode in $( ((r % 2)) && echo reuseport acceptor || echo acceptor reuseport); do
      start - -w 2 --pin --accept "$mode" "$RL_ROOT/bench/lb_hello.lua"
      wrk -t2 -c64 -d1s -s "$SHARED/wrk/hello.lua" "http://127.0.0.1:$PORT/" >/dev/null  # warm-up
      counts >/dev/null
      c0=$(cpu_ticks)
      rps=$(wrk -t2 -c64 -d"${DURATION}s" -s "$SHARED/wrk/hello.lua" "http://127.0.0.1:$PORT/" |
            sed -n 's/^BENCH rps=\([0-9]*\).*/\1/p')
      cpu=$(cpu_since "$c0")
      accept_row "$mode" even-c64 "$r" "$(counts)" "$rps" "$cpu"
      for t in $(seq "$per"); do
        c0=$(cpu_ticks)
        rps=$(wrk -t2 -c4 -d1s -s "$SHARED/wrk/pipeline.lua" "http://127.0.0.1:$PORT/" -- 16 |
              sed -n 's/^BENCH rps=\([0-9]*\).*/\1/p')
        cpu=$(cpu_since "$c0")
        accept_row "$mode" heavy-c4 "$(( (r - 1) * per + t ))" "$(counts)" "$rps" "$cpu"
      done
      stop
      CLOSE=1 start - -w 2 --pin --accept "$mode" "$RL_ROOT/bench/lb_hello.lua"
      wrk -t2 -c64 -d1s -H "Connection: close" -s "$SHARED/wrk/hello.lua" \
        "http://127.0.0.1:$PORT/" >/dev/null  # warm-up
      counts >/dev/null
      c0=$(cpu_ticks)
      rps=$(wrk -t2 -c64 -d"${DURATION}s" -H "Connection: close" -s "$SHARED/wrk/hello.lua" \
            "http://127.0.0.1:$PORT/" | sed -n 's/^BENCH rps=\([0-9]*\).*/\1/p')
      cpu=$(cpu_since "$c0")
      accept_row "$mode" churn "$r" "$(counts)" "$rps" "$cpu"
      stop
    done
  done
  echo "== medians per mode and load: rps, server CPU-s, requests per server CPU-s, worker 0's share of requests"
  awk -F'\t' -v d="$DURATION" 'NR > 1 && $2 != "heavy-c4" { k = $1 " " $2; n[k]++; rps[k, n[k]] = $8; cpu[k, n[k]] = $9
      sh[k, n[k]] = ($5 + $7 > 0 ? $5 / ($5 + $7) : 0) }
    function med(a, k, c,   i, j, t, v) { for (i = 1; i <= c; i++) v[i] = a[k, i]
      for (i = 1; i <= c; i++) for (j = i + 1; j <= c; j++) if (v[j] < v[i]) { t = v[i]; v[i] = v[j]; v[j] = t }
      return v[int((c + 1) / 2)] }
    END { for (k in n) { r = med(rps, k, n[k]); c = med(cpu, k, n[k])
      printf "%-20s %9d rps  %5.2f cpu-s  %8.0f req/cpu-s  w0 share %.2f\n", k, r, c,
        (c > 0 ? r * d / c : 0), med(sh, k, n[k]) } }' "$tsv" | sort | tee "$OUT/accept.txt"
  echo "== heavy-c4: trials by connection split, median rps" | tee -a "$OUT/accept.txt"
  awk -F'\t' '$2 == "heavy-c4" { a = $4 < $6 ? $4 : $6; b = $4 < $6 ? $6 : $4
      k = $1 " " a "+" b; n[k]++; v[k, n[k]] = $8 }
    END { for (k in n) { c = n[k]; for (i = 1; i <= c; i++) w[i] = v[k, i]
      for (i = 1; i <= c; i++) for (j = i + 1; j <= c; j++) if (w[j] < w[i]) { x = w[i]; w[i] = w[j]; w[j] = x }
      printf "%-9s split %s: %2d trials, median %d rps\n", substr(k, 1, index(k, " ") - 1),
        substr(k, index(k, " ") + 1), c, w[int((c + 1) / 2)] } }' "$tsv" | sort | tee -a "$OUT/accept.txt"
}

case "${1:-all}" in
  scaling) scaling ;;
  spread) spread ;;
  accept) accept_modes ;;
  all) scaling; spread; accept_modes ;;
  *) echo "usage: $0 [scaling|spread|accept|all]" >&2; exit 2 ;;
esac
echo "results in $OUT"
