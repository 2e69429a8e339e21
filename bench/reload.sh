#!/usr/bin/env bash
# bench/reload.sh: requests lost during reloads (SIGHUP) and rolling
# restarts behind haproxy under HTTP keep-alive load, and the time from
# SIGHUP to the new code answering (issue 16; goal: 0 lost of at least
# 100,000). Not run by CI: spec/reload_spec.lua and spec/haproxy_spec.lua
# are the short versions.
#
#   bench/reload.sh                    # 100000 requests each, 16 clients, 2 workers
#   REQUESTS=5000 bench/reload.sh      # a sanity run
#
# Prints one line per part:
#   reload: requests N, lost 0, retried R, reloads K, SIGHUP to new code: median X ms, max Y ms
#   rolling: requests N, lost 0, retried R, restarts K
# Needs haproxy (Debian's: .ci/setup installs it). Build first.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
REQUESTS=${REQUESTS:-100000}
CLIENTS=${CLIENTS:-16}
WORKERS=${WORKERS:-2}
BUILD=${RINGLINE_BUILD:-$PWD/build}
[ -x "$BUILD/bindings/ringline-lua" ] || { echo "reload.sh: build first" >&2; exit 2; }
export RINGLINE_BUILD=$BUILD RINGLINE_LIB=${RINGLINE_LIB:-$BUILD/libringline.so}
export RINGLINE_LOG_LEVEL=${RINGLINE_LOG_LEVEL:-warn}
echo "# $(date -u +%FT%TZ) $(uname -r) requests=$REQUESTS clients=$CLIENTS workers=$WORKERS"
luajit bench/reload.lua reload "$REQUESTS" "$CLIENTS" "$WORKERS"
command -v haproxy >/dev/null || { echo "rolling: skipped (no haproxy; bash .ci/setup installs it)"; exit 1; }
luajit bench/reload.lua rolling "$REQUESTS" "$CLIENTS" "$WORKERS"
