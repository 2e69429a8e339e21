#!/usr/bin/env bash
# bench/udp.sh: UDP echo, ringline-lua against peers in the same run. On
# demand, never in CI.
#
#   bench/udp.sh
#   RL_BUILD_B=/path/to/other/build-rel bench/udp.sh     (A/B of two builds)
#
# Every peer is a UDP echo server on BENCH_HOST:PORT, pinned to CPU 0; the
# load generator (bench/udp_client.c, built into $OUT) runs on CPU 1 with
# SOCKETS connected sockets (each its own source port: the server sees
# several peers), WINDOW datagrams outstanding on each, an unanswered one
# counted lost after 200 ms and replaced. Peers:
#   ringline-lua    examples/udp_echo.lua under $RL_BUILD's host, -w 1
#   ringline-lua-B  the same script under $RL_BUILD_B's host (added when
#                   RL_BUILD_B is set; that host finds its own lua/ tree)
#   c-udp           bench/udp_peers/c_udp.c: blocking recvfrom/sendto, the
#                   one-syscall-per-datagram baseline
#   luv             bench/udp_peers/luv.lua: libuv recv_start/send, under
#                   luajit, else lua5.1 (skipped if neither has luv)
#   node            bench/udp_peers/node.js: dgram (skipped without node)
# For each run and datagram size (SIZES) every peer runs once, the order
# rotated from run to run so no peer always goes first: start, wait until a
# probe datagram comes back, WARMUP s of load (not counted), then DURATION s
# measured, with the server's CPU time (utime+stime of all its threads,
# /proc/PID/stat) sampled around it, then SIGTERM.
#
# What it reports, per size and peer, medians over the runs:
#   dgrams/s         echoes received per second; bounded by the server
#                    when its cpu-s is close to DURATION (so far always, at
#                    the default window), else by the load generator
#   dgrams/cpu-s     echoes per server CPU-second: the column to read, the
#                    cost per datagram of each server
#   lost/late/errors summed over the runs: unanswered within 200 ms, answered
#                    after that, wrong (length, sequence or bytes)
#   rl/peer          ringline-lua's ratio to the peer, median of the ratios
#                    within each run (> 1: ringline-lua is ahead)
# Raw rows in $OUT/runs.tsv, the table in $OUT/summary.txt, the machine in
# $OUT/env.txt, each server's output in $OUT/server-<peer>.log.
#
# Knobs: RL_BUILD (default build-rel: cmake -B build-rel
# -DCMAKE_BUILD_TYPE=Release), RL_BUILD_B (unset), PEERS ("ringline-lua
# c-udp luv node"), RUNS (3), DURATION (5), WARMUP (1), SIZES ("64 1024"),
# SOCKETS (4), WINDOW (16), PORT (18090), OUT
# (/tmp/ringline-bench/udp-<stamp>).
set -euo pipefail
RL_ROOT="$(cd "$(dirname "$0")/.." && pwd)"
RL_BUILD="${RL_BUILD:-$RL_ROOT/build-rel}"
RL_BUILD_B="${RL_BUILD_B:-}"
PEERS=${PEERS:-"ringline-lua c-udp luv node"}
RUNS=${RUNS:-3}
DURATION=${DURATION:-5}
WARMUP=${WARMUP:-1}
SIZES=${SIZES:-"64 1024"}
SOCKETS=${SOCKETS:-4}
WINDOW=${WINDOW:-16}
PORT=${PORT:-18090}
OUT=${OUT:-/tmp/ringline-bench/udp-$(date +%Y%m%d-%H%M%S)}
export PORT BENCH_HOST=127.0.0.1
HOST="$RL_BUILD/bindings/ringline-lua"
SCRIPT="$RL_ROOT/examples/udp_echo.lua"
T0=$(date +%s)

[ -x "$HOST" ] || { echo "build the host first: $HOST" >&2; exit 1; }
if [ -n "$RL_BUILD_B" ]; then
  [ -x "$RL_BUILD_B/bindings/ringline-lua" ] || { echo "no host in RL_BUILD_B: $RL_BUILD_B" >&2; exit 1; }
  case " $PEERS " in *" ringline-lua-B "*) ;; *) PEERS="$PEERS ringline-lua-B" ;; esac
fi
# luv: the Debian package (lua-luv) serves lua5.1 and may not reach LuaJIT
LUV=""
for lua in luajit lua5.1; do
  if command -v "$lua" >/dev/null && "$lua" -e 'require("luv")' 2>/dev/null; then LUV=$lua; break; fi
done

# Drop the peers that cannot run here, saying why; stop at unknown names.
peers=()
for p in $PEERS; do
  case $p in
    ringline-lua|c-udp) peers+=("$p") ;;
    ringline-lua-B) [ -n "$RL_BUILD_B" ] && peers+=("$p") || echo "skip ringline-lua-B: RL_BUILD_B is not set" >&2 ;;
    luv) [ -n "$LUV" ] && peers+=("$p") || echo "skip luv: neither luajit nor lua5.1 can require luv (apt-get install lua-luv)" >&2 ;;
    node) command -v node >/dev/null && peers+=("$p") || echo "skip node: node is not installed" >&2 ;;
    *) echo "unknown peer: $p" >&2; exit 2 ;;
  esac
done
[ ${#peers[@]} -gt 0 ] || { echo "no peer to run" >&2; exit 1; }

mkdir -p "$OUT"
cc -O2 -Wall -o "$OUT/udp_client" "$RL_ROOT/bench/udp_client.c"
cc -O2 -Wall -o "$OUT/c_udp" "$RL_ROOT/bench/udp_peers/c_udp.c"

{
  echo "date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
  echo "kernel: $(uname -r)"
  echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //') x $(nproc)"
  echo "commit: $(git -C "$RL_ROOT" rev-parse --short HEAD 2>/dev/null || echo -)$(git -C "$RL_ROOT" diff --quiet HEAD 2>/dev/null || echo ' (working tree differs)')"
  echo "host: $("$HOST" --version) ($RL_BUILD)"
  if [ -n "$RL_BUILD_B" ]; then
    # the source tree build B was configured from, and its commit
    src_b=$(sed -n 's/^CMAKE_HOME_DIRECTORY:INTERNAL=//p' "$RL_BUILD_B/CMakeCache.txt" 2>/dev/null)
    echo "host B: $("$RL_BUILD_B/bindings/ringline-lua" --version) ($RL_BUILD_B)"
    echo "commit B: $(git -C "${src_b:-/nonexistent}" rev-parse --short HEAD 2>/dev/null || echo -) (${src_b:-?})"
  fi
  [ -n "$LUV" ] && echo "luv: $("$LUV" -e 'print(require("luv").version_string())') under $LUV"
  command -v node >/dev/null && echo "node: $(node --version)"
  echo "cc: $(cc --version | head -n 1)"
  echo "net.core.rmem_default: $(cat /proc/sys/net/core/rmem_default)"
  echo "peers: ${peers[*]}"
  echo "load: $SOCKETS sockets x $WINDOW outstanding, sizes: $SIZES B"
  echo "duration: ${DURATION}s (after ${WARMUP}s warm-up) x $RUNS runs (median, interleaved, order rotated)"
} | tee "$OUT/env.txt"

peer_cmd() { # peer -> the server's command line in CMD
  case $1 in
    ringline-lua) CMD=("$HOST" -w 1 "$SCRIPT") ;;
    ringline-lua-B) CMD=("$RL_BUILD_B/bindings/ringline-lua" -w 1 "$SCRIPT") ;;
    c-udp) CMD=("$OUT/c_udp") ;;
    luv) CMD=("$LUV" "$RL_ROOT/bench/udp_peers/luv.lua") ;;
    node) CMD=(node "$RL_ROOT/bench/udp_peers/node.js") ;;
  esac
}

SPID=""
start() { # peer: start its server on CPU 0, wait until it echoes
  local log="$OUT/server-$1.log"
  peer_cmd "$1"
  echo "== $(date -u +%T) ${CMD[*]}" >>"$log"
  taskset -c 0 "${CMD[@]}" >>"$log" 2>&1 &
  SPID=$!
  # each probe waits 50 ms for its echo: 100 of them bound the wait to ~5 s
  for _ in $(seq 100); do
    kill -0 "$SPID" 2>/dev/null || break
    "$OUT/udp_client" -H "$BENCH_HOST" -p "$PORT" -P 1 && return 0
  done
  echo "$1 did not start: $(tail -n 5 "$log")" >&2
  return 1
}
stop() { # SIGTERM, then SIGKILL if it has not exited within 10 s
  [ -n "$SPID" ] || return 0
  kill -TERM "$SPID" 2>/dev/null || true
  for _ in $(seq 100); do
    kill -0 "$SPID" 2>/dev/null || break
    sleep 0.1
  done
  kill -0 "$SPID" 2>/dev/null && { echo "server $SPID ignored SIGTERM: killed" >&2; kill -KILL "$SPID"; }
  wait "$SPID" 2>/dev/null || true
  SPID=""
}
trap stop EXIT
cpu_ticks() { # utime + stime of the whole server process, in clock ticks
  local stat
  read -r stat <"/proc/$SPID/stat"
  stat=${stat##*) }   # the command name may hold spaces: fields from 3 on
  # shellcheck disable=SC2086
  set -- $stat
  echo $(( ${12} + ${13} ))   # fields 14 (utime) and 15 (stime)
}
hz=$(getconf CLK_TCK)

client() { # size seconds: the client's result line
  taskset -c 1 "$OUT/udp_client" -H "$BENCH_HOST" -p "$PORT" -s "$1" -c "$SOCKETS" -w "$WINDOW" -d "$2" -t 200
}
field() { # name line -> value
  sed -n "s/.*\<$1=\([0-9.]*\).*/\1/p" <<<"$2"
}

TSV="$OUT/runs.tsv"
printf 'run\tsize\tpeer\tdgrams_per_s\tok\tsent\tlost\tlate\terrors\tsrv_cpu_s\tdgrams_per_cpu_s\n' >"$TSV"
n=${#peers[@]}
for r in $(seq "$RUNS"); do
  for size in $SIZES; do
    for i in $(seq 0 $((n - 1))); do
      p=${peers[$(( (i + r - 1) % n ))]}
      start "$p"
      client "$size" "$WARMUP" >/dev/null
      c0=$(cpu_ticks)
      line=$(client "$size" "$DURATION")
      kill -0 "$SPID" 2>/dev/null || { echo "$p exited during the run: $(tail -n 5 "$OUT/server-$p.log")" >&2; exit 1; }
      c1=$(cpu_ticks)
      stop
      ok=$(field ok "$line")
      cpu=$(awk -v a="$c0" -v b="$c1" -v hz="$hz" 'BEGIN { printf "%.2f", (b - a) / hz }')
      printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$r" "$size" "$p" \
        "$(field dgrams_per_s "$line")" "$ok" "$(field sent "$line")" "$(field lost "$line")" \
        "$(field late "$line")" "$(field errors "$line")" "$cpu" \
        "$(awk -v ok="$ok" -v c="$cpu" 'BEGIN { printf "%.0f", (c > 0 ? ok / c : 0) }')" | tee -a "$TSV"
    done
  done
done

# Medians per size and peer; ratios are ringline-lua's over the peer's in
# the same run and size, then the median of those (the VM drifts between
# runs, less within one).
awk -F'\t' -v order="${peers[*]}" -v sizes="$SIZES" -v socks="$SOCKETS" -v win="$WINDOW" -v d="$DURATION" '
  function med(a, k, c,   i, j, t, v) { for (i = 1; i <= c; i++) v[i] = a[k, i]
    for (i = 1; i <= c; i++) for (j = i + 1; j <= c; j++) if (v[j] < v[i]) { t = v[i]; v[i] = v[j]; v[j] = t }
    return c % 2 ? v[(c + 1) / 2] : (v[c / 2] + v[c / 2 + 1]) / 2 }
  NR > 1 { k = $2 SUBSEP $3; c = ++n[k]; runs[$1] = 1
    dps[k, c] = $4; cpu[k, c] = $10; dpc[k, c] = $11
    lost[k] += $7; late[k] += $8; err[k] += $9
    rdps[$1, $2, $3] = $4; rdpc[$1, $2, $3] = $11 }
  END { np = split(order, P, " "); ns = split(sizes, S, " ")
    for (si = 1; si <= ns; si++) { s = S[si]
      printf "== %s B datagrams, %d sockets x %d outstanding, %ss per run: medians over %d runs\n", s, socks, win, d, length(runs)
      printf "%-15s %10s %8s %12s %7s %7s %7s %12s %12s\n", "peer", "dgrams/s", "cpu-s", "dgrams/cpu-s",
        "lost", "late", "errors", "rl/peer d/s", "rl/peer d/cpu"
      for (pi = 1; pi <= np; pi++) { p = P[pi]; k = s SUBSEP p; c = n[k]; if (!c) continue
        rc = 0
        for (r in runs) if ((r, s, "ringline-lua") in rdps && (r, s, p) in rdps && rdps[r, s, p] > 0 && rdpc[r, s, p] > 0) {
          rc++; q1[k, rc] = rdps[r, s, "ringline-lua"] / rdps[r, s, p]; q2[k, rc] = rdpc[r, s, "ringline-lua"] / rdpc[r, s, p] }
        printf "%-15s %10.0f %8.2f %12.0f %7d %7d %7d", p, med(dps, k, c), med(cpu, k, c), med(dpc, k, c), lost[k], late[k], err[k]
        if (rc) printf " %11.2fx %11.2fx\n", med(q1, k, rc), med(q2, k, rc); else printf " %12s %12s\n", "-", "-" }
      print "" } }' "$TSV" | tee "$OUT/summary.txt"
echo "took $(( $(date +%s) - T0 )) s; results in $OUT" | tee -a "$OUT/summary.txt"
