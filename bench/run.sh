#!/usr/bin/env bash
# Run the shared peer harness (../shared/bench) with ringline-lua and the
# C core's own echo server added as peers, in the same run as the others.
#
#   bench/run.sh [all|http|echo] [peer...]     e.g. bench/run.sh echo ringline-lua ringline-c c-uring luv
#   bench/run.sh http ringline-lua ringline-http   (ringline-http: the ringline.http module
#   serving examples/http_module_hello.lua, against the raw parser of http_hello.lua)
#   RL_BUILD_B=/path/to/other/build bench/run.sh echo ringline-lua ringline-lua-B   (A/B of two
#   builds in the same run; each host finds its own lua/ tree)
#   bench/run.sh echo ringline-lua ringline-lua-sqpoll   (SQPOLL against the default in one run;
#   SQPOLL_CPU=1 pins the kernel's SQ thread, e.g. away from SERVER_CPU; docs/operations.md "SQPOLL")
#   WORKERS=2 SERVER_CPU=0,1 CLIENT_CPU=0,1 bench/run.sh http ringline-lua   (ringline-lua -w 2;
#   on a 2-CPU machine the load generator then shares the cores: see bench/workers.sh)
#
# The harness is copied to $BENCH_DIR (default /tmp/ringline-bench) because
# ../shared may be read-only; its results land in $BENCH_DIR/out/latest.
# Build first (cmake -B build -DCMAKE_BUILD_TYPE=Release && cmake --build build).
set -euo pipefail
RL_ROOT="$(cd "$(dirname "$0")/.." && pwd)"
SHARED="${SHARED:-$RL_ROOT/../shared/bench}"
BENCH_DIR="${BENCH_DIR:-/tmp/ringline-bench}"
RL_BUILD="${RL_BUILD:-$RL_ROOT/build}"
RL_BUILD_B="${RL_BUILD_B:-}"
RL_ROOT_B=""
if [ -n "$RL_BUILD_B" ]; then
  [ -x "$RL_BUILD_B/bindings/ringline-lua" ] || { echo "no host in RL_BUILD_B: $RL_BUILD_B" >&2; exit 1; }
  RL_ROOT_B=$(sed -n 's/^CMAKE_HOME_DIRECTORY:INTERNAL=//p' "$RL_BUILD_B/CMakeCache.txt")
fi
# ringline-lua-sqpoll: the same servers with --set sqpoll=1 (issue 15);
# SQPOLL_CPU pins its kernel thread (65535: not pinned)
SQPOLL_CPU="${SQPOLL_CPU:-65535}"
export RL_ROOT RL_BUILD RL_BUILD_B RL_ROOT_B SQPOLL_CPU

[ -x "$RL_BUILD/bindings/ringline-lua" ] || { echo "build ringline-lua first ($RL_BUILD)" >&2; exit 1; }
mkdir -p "$BENCH_DIR"
# refresh the harness but keep earlier results and the unpacked nginx module
rsync -a --exclude out --exclude .deps --exclude build "$SHARED/" "$BENCH_DIR/" 2>/dev/null ||
  cp -r "$SHARED/." "$BENCH_DIR/"
chmod -R u+w "$BENCH_DIR"
# the peers' own dependencies (nginx's lua module is unpacked into .deps)
[ -d "$BENCH_DIR/.deps" ] || bash "$BENCH_DIR/setup.sh" >&2

# Register our peers right after the shared registry (one line per workload).
python3 - "$BENCH_DIR/run.sh" <<'PY'
import sys
p = sys.argv[1]
s = open(p).read()
mark = "peer redis      resp       './peers/redis.sh'\n"
ours = (
  "peer ringline-lua http     '$RL_BUILD/bindings/ringline-lua -w $WORKERS $RL_ROOT/examples/http_hello.lua'\n"
  "peer ringline-lua echo     '$RL_BUILD/bindings/ringline-lua -w $WORKERS $RL_ROOT/examples/echo.lua'\n"
  "peer ringline-c   echo     '$RL_BUILD/rl_echo'\n"
  "peer ringline-http http    '$RL_BUILD/bindings/ringline-lua -w $WORKERS $RL_ROOT/examples/http_module_hello.lua'\n"
  "peer ringline-lua-B http   '$RL_BUILD_B/bindings/ringline-lua -w $WORKERS $RL_ROOT_B/examples/http_hello.lua'\n"
  "peer ringline-lua-B echo   '$RL_BUILD_B/bindings/ringline-lua -w $WORKERS $RL_ROOT_B/examples/echo.lua'\n"
  "peer ringline-lua-sqpoll http '$RL_BUILD/bindings/ringline-lua -w $WORKERS --set sqpoll=1 --set sqpoll_cpu=$SQPOLL_CPU $RL_ROOT/examples/http_hello.lua'\n"
  "peer ringline-lua-sqpoll echo '$RL_BUILD/bindings/ringline-lua -w $WORKERS --set sqpoll=1 --set sqpoll_cpu=$SQPOLL_CPU $RL_ROOT/examples/echo.lua'\n"
)
if "peer ringline-http " not in s:
    s = "\n".join(l for l in s.split("\n") if not l.startswith("peer ringline-"))
    s = s.replace(mark, mark + ours)
open(p, "w").write(s)
PY
exec "$BENCH_DIR/run.sh" "$@"
