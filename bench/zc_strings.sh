#!/usr/bin/env bash
# Big Lua strings, copied vs zero-copy (issue 15): bench/zc_crossover.lua in
# its "plain" mode sends a 64-byte head and a body that is a Lua string,
# again and again for DURATION seconds, to a sink; the body is copied when
# zc_threshold is above its size and sent with SENDMSG_ZC (anchored as a
# guard) when it is at or below. Sizes 16 KiB, 64 KiB, 1 MiB; one line per
# run with sends per sender CPU second. Not CI; a quick sanity run:
#
#   DURATION=1 bench/zc_strings.sh
#
# Loopback caveat (bench/large.sh): the kernel copies zero-copy sends on
# loopback, so this shows zero copy's overheads, not its saving; a NIC
# would not copy. Knobs: DURATION (3), SIZES, SERVER_CPU (0), CLIENT_CPU (1).
set -euo pipefail
RL_ROOT="$(cd "$(dirname "$0")/.." && pwd)"
RL_BUILD="${RL_BUILD:-$RL_ROOT/build}"
HOST="$RL_BUILD/bindings/ringline-lua"
DURATION="${DURATION:-3}"
SIZES="${SIZES:-16384 65536 1048576}"
SERVER_CPU="${SERVER_CPU:-0}" CLIENT_CPU="${CLIENT_CPU:-1}"
TMP=$(mktemp -d /tmp/zc_strings.XXXXXX)
trap 'rm -rf "$TMP"' EXIT

one() { # one SIZE THRESHOLD
  PORT=0 taskset -c "$SERVER_CPU" "$HOST" --set "zc_threshold=$2" "$RL_ROOT/bench/zc_crossover.lua" \
    send "$1" "$DURATION" plain >"$TMP/out" &
  local srv=$!
  for _ in $(seq 100); do grep -q "listening on port" "$TMP/out" 2>/dev/null && break; sleep 0.05; done
  local port
  port=$(sed -n 's/^listening on port //p' "$TMP/out")
  taskset -c "$CLIENT_CPU" "$HOST" "$RL_ROOT/bench/zc_crossover.lua" sink "$port"
  wait "$srv"
  grep '^RESULT' "$TMP/out"
}

for size in $SIZES; do
  one "$size" 1073741824      # copy: the threshold above the body
  one "$size" "$size"         # zero-copy: the body guarded
done
