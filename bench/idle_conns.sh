#!/usr/bin/env bash
# Idle connections: what one idle connection costs in process RSS on an echo
# server written with receive("*l") (bench/idle_echo.lua, one worker).
#
#   bench/idle_conns.sh [N]            (default 10000; 100000 works as root)
#   RL_BUILD=/other/build bench/idle_conns.sh 100000
#   RL_SET="sqpoll=1" bench/idle_conns.sh    (extra --set key=value, space-separated)
#   LUA_ALLOC=luajit bench/idle_conns.sh     (the host's --lua-alloc; default malloc, which gives the Lua pages back)
#
# bench/idle_client.c opens N connections (from 127.0.0.1..127.0.0.k, ~20k
# per source address), makes each echo one line, and holds them. Printed:
# RSS before, at peak (after a full Lua GC), per connection, after all
# closed (and a GC), and the server's metrics at idle with the connections
# open, for two rounds (ROUNDS) in the same server. Raises the open-file limit (needs root or a high hard limit) and
# max_connections to fit N.
set -euo pipefail
RL_ROOT="$(cd "$(dirname "$0")/.." && pwd)"
RL_BUILD="${RL_BUILD:-$RL_ROOT/build}"
N="${1:-10000}"
TMP=$(mktemp -d /tmp/idle_conns.XXXXXX)
SRV=""
trap '[ -n "$SRV" ] && kill "$SRV" 2>/dev/null; rm -rf "$TMP"' EXIT

cc -O2 -o "$TMP/idle_client" "$RL_ROOT/bench/idle_client.c"
# the server's fixed file table (max_connections) must fit its RLIMIT_NOFILE
want=$((N + 1024))
if [ "$(ulimit -Hn)" != unlimited ] && [ "$(ulimit -Hn)" -lt "$want" ]; then
  ulimit -Hn "$want" 2>/dev/null || {
    echo "cannot raise the open-file limit to $want (hard limit $(ulimit -Hn); needs CAP_SYS_RESOURCE)" >&2; exit 1; }
fi
PER_CLIENT=$(( $(ulimit -Hn) - 100 )); [ "$PER_CLIENT" -gt 20000 ] && PER_CLIENT=20000
ulimit -n "$want"

sets=(--set "max_connections=$((N + 64))" --set "max_tasks=$((N + 64))" --set listen_backlog=4096)
for kv in ${RL_SET:-}; do sets+=(--set "$kv"); done
PORT=0 CTL_PORT=0 "$RL_BUILD/bindings/ringline-lua" --lua-alloc "${LUA_ALLOC:-malloc}" "${sets[@]}" \
  "$RL_ROOT/bench/idle_echo.lua" \
  >"$TMP/srv.out" 2>"$TMP/srv.err" &
SRV=$!
for _ in $(seq 100); do grep -q listening "$TMP/srv.out" 2>/dev/null && break; sleep 0.1; done
read -r _ _ _ PORT _ CTL < "$TMP/srv.out" || { cat "$TMP/srv.err" >&2; exit 1; }

ctl() { # ctl gc|stats -> key=value lines
  exec 5<>"/dev/tcp/127.0.0.1/$CTL"
  echo "$1" >&5
  cat <&5
  exec 5>&-
}
get() { sed -n "s/^$1=//p"; }
rss() { awk '/^VmRSS/ {print $2}' "/proc/$SRV/status"; }

round() { # one burst of N connections: before, peak, after
ctl gc >"$TMP/before.txt"
before=$(rss)
mkfifo "$TMP/hold"
# clients of at most PER_CLIENT connections each (a process's own open-file
# limit), each from its own source addresses
clis=() k=0 left=$N
while [ "$left" -gt 0 ]; do
  n=$(( left < PER_CLIENT ? left : PER_CLIENT ))
  "$TMP/idle_client" 127.0.0.1 "$PORT" "$n" 1 $((1 + k)) <"$TMP/hold" >"$TMP/cli.$k.out" &
  clis+=($!) k=$((k + 1)) left=$((left - n))
done
exec 3>"$TMP/hold"
for ((j = 0; j < k; j++)); do
  until grep -q '^ready' "$TMP/cli.$j.out" 2>/dev/null; do
    kill -0 "${clis[$j]}" 2>/dev/null || { echo "client failed" >&2; cat "$TMP/srv.err" >&2; exit 1; }
    sleep 0.2
  done
done
ctl gc >"$TMP/idle.txt"
peak=$(rss)
exec 3>&-
wait "${clis[@]}"
rm -f "$TMP/hold" "$TMP"/cli.*.out
for _ in $(seq 300); do
  [ "$(ctl stats | get conns_open)" = 0 ] && break
  sleep 0.1
done
# the server trims by itself once idle after the burst; the stats wait for it
sleep 0.5
ctl stats >"$TMP/after.txt"
after=$(rss)
share=$((peak - before))
echo "=== round $1: $N connections"
echo "rss_before_kb      $before"
echo "rss_peak_kb        $peak"
awk -v p="$share" -v n="$N" 'BEGIN { printf "per_conn_bytes     %.0f\n", p * 1024 / n }'
echo "rss_after_kb       $after   (before + 10%: $((before * 11 / 10)))"
echo "lua_kb before/idle/after  $(get lua_kb <"$TMP/before.txt") / $(get lua_kb <"$TMP/idle.txt") / $(get lua_kb <"$TMP/after.txt")"
echo "--- metrics at idle (connections open)"
grep -E '^(conns_open|tasks|accum_bytes|timers_active|ops_inflight|recv_buffers_free|send_slots_used|send_heap_chunks|slab_used)=' "$TMP/idle.txt" | tr '\n' ' '; echo
echo "--- metrics after close"
grep -E '^(conns_open|tasks|accum_bytes|timers_active|ops_inflight|recv_buffers_free|send_slots_used|send_heap_chunks|slab_used)=' "$TMP/after.txt" | tr '\n' ' '; echo
}
# Round 1 starts cold; round 2 from what round 1 left: the worker's fixed
# pools (receive ring, send pool) and tables are warm, so its after-close
# RSS shows what the connections themselves leave behind.
for r in $(seq "${ROUNDS:-2}"); do round "$r"; done
