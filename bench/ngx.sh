#!/usr/bin/env bash
# bench/ngx.sh: ngx.re.match with "jo" and ngx.shared.DICT set/get per
# second, ringline-lua (ringline.re, ringline.shared) against nginx +
# lua-nginx-module (ngx.re, lua_shared_dict), with 1 and 2 workers. The
# same loop (bench/ngx_ops.lua) runs in both; each worker reports its own
# rate, the table gives the sum over workers (the median of ROUNDS runs).
#
#   bench/ngx.sh                 N=2000000 ROUNDS=3, workers 1 and 2
#   N=200000 ROUNDS=1 bench/ngx.sh   (a quick sanity run)
#
# nginx's lua module is Debian's libnginx-mod-http-lua when installed, else
# the copy the shared harness unpacks (../shared/bench/setup.sh into
# $BENCH_DIR/.deps, see bench/run.sh): installing the package would remove
# the luajit the project builds against. Needs a Release build in build/.
set -euo pipefail
RL_ROOT="$(cd "$(dirname "$0")/.." && pwd)"
RL_BUILD="${RL_BUILD:-$RL_ROOT/build}"
BENCH_DIR="${BENCH_DIR:-/tmp/ringline-bench}"
N="${N:-2000000}"
ROUNDS="${ROUNDS:-3}"
WORKER_COUNTS="${WORKER_COUNTS:-1 2}"
HOST="$RL_BUILD/bindings/ringline-lua"
[ -x "$HOST" ] || { echo "build ringline-lua first ($RL_BUILD)" >&2; exit 1; }

MODDIR=/usr/lib/nginx/modules
LUA_MOD="$MODDIR/ngx_http_lua_module.so"
LD_EXTRA=""
if [ ! -f "$LUA_MOD" ]; then
  DEPS="$BENCH_DIR/.deps/nginx-lua/root"
  if [ ! -f "$DEPS/usr/lib/nginx/modules/ngx_http_lua_module.so" ]; then
    [ -d "$BENCH_DIR" ] || cp -r "$RL_ROOT/../shared/bench" "$BENCH_DIR"
    bash "$BENCH_DIR/setup.sh" >&2
  fi
  LUA_MOD="$DEPS/usr/lib/nginx/modules/ngx_http_lua_module.so"
  LJ=$(ls "$DEPS"/usr/lib/*/libluajit-5.1.so.2 2>/dev/null | head -1)
  LD_EXTRA="$(dirname "$LJ")"
  NGX_LUA_PATH="$DEPS/usr/share/lua/5.1/?.lua;"
fi
command -v nginx >/dev/null || { echo "nginx missing (apt-get install nginx)" >&2; exit 1; }

WORK="$(mktemp -d "${TMPDIR:-/tmp}/ngx-bench.XXXXXX")"
NGX_PID=""
cleanup() { [ -n "$NGX_PID" ] && kill -TERM "$NGX_PID" 2>/dev/null; wait 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT

# waits until file $1 has $2 lines (at most 300 s)
wait_lines() {
  local i
  for ((i = 0; i < 3000; i++)); do
    [ -f "$1" ] && [ "$(grep -c '^RESULT' "$1")" -ge "$2" ] && return 0
    sleep 0.1
  done
  echo "timed out waiting for $1" >&2; cat "$1" >&2 || true; return 1
}

run_ringline() {   # workers out
  cat > "$WORK/rl.lua" <<LUA
local ringline = require "ringline"
ringline.configure{ shared_dicts = { bench = "64m" } }
local run = dofile("$RL_ROOT/bench/ngx_ops.lua")
local f = assert(io.open("$2", "a"))
run{ re = require "ringline.re", dict = ringline.shared.bench, workers = $1,
     id = ringline.worker_id(), n = $N,
     emit = function(l) f:write(l, "\n"); f:flush() end }
f:close()
LUA
  "$HOST" -w "$1" --no-pin "$WORK/rl.lua"
  wait_lines "$2" $((3 * $1))
}

run_nginx() {      # workers out
  mkdir -p "$WORK/ngx/logs" "$WORK/ngx/tmp"
  # nginx's workers may run as another user (nobody when started as root)
  chmod 0755 "$WORK"; : > "$2"; chmod 0666 "$2"
  cat > "$WORK/ngx/nginx.conf" <<CONF
load_module $MODDIR/ndk_http_module.so;
load_module $LUA_MOD;
worker_processes $1;
daemon off;
master_process on;
pid $WORK/ngx/nginx.pid;
error_log stderr warn;
events { worker_connections 64; }
http {
  access_log off;
  client_body_temp_path $WORK/ngx/tmp; proxy_temp_path $WORK/ngx/tmp;
  fastcgi_temp_path $WORK/ngx/tmp; uwsgi_temp_path $WORK/ngx/tmp; scgi_temp_path $WORK/ngx/tmp;
  lua_package_path "${NGX_LUA_PATH:-};";
  lua_shared_dict bench 64m;
  init_worker_by_lua_block {
    ngx.timer.at(0, function()
      local run = dofile("$RL_ROOT/bench/ngx_ops.lua")
      local f = assert(io.open("$2", "a"))
      run{ re = ngx.re, dict = ngx.shared.bench, workers = $1, id = ngx.worker.id(), n = $N,
           emit = function(l) f:write(l, "\n"); f:flush() end }
      f:close()
    end)
  }
  server { listen unix:$WORK/ngx/sock; location / { return 204; } }
}
CONF
  LD_LIBRARY_PATH="${LD_EXTRA}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" \
    nginx -p "$WORK/ngx" -c "$WORK/ngx/nginx.conf" -e stderr &
  NGX_PID=$!
  wait_lines "$2" $((3 * $1))
  kill -TERM "$NGX_PID"; wait "$NGX_PID" 2>/dev/null || true
  NGX_PID=""
}

# sum over workers of one op in one results file (column 4: per wall
# second, 5: per CPU-second)
sum_op() { awk -v op="$2" -v col="$3" '$1 == "RESULT" && $2 == op { s += $col } END { printf "%.0f", s }' "$1"; }
median() { sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }

printf "N=%s ROUNDS=%s (sum over workers, median of rounds; wall: ops per second,\n" "$N" "$ROUNDS"
printf "cpu: ops per CPU-second of the worker threads)\n"
printf "%-14s %8s %12s %12s %6s %12s %12s %6s\n" op workers rl-wall ngx-wall ratio rl-cpu ngx-cpu ratio
for w in $WORKER_COUNTS; do
  for r in $(seq "$ROUNDS"); do
    run_ringline "$w" "$WORK/rl.$w.$r"
    run_nginx "$w" "$WORK/ngx.$w.$r"
  done
  for op in re_match_jo shdict_set shdict_get; do
    a=$(for r in $(seq "$ROUNDS"); do sum_op "$WORK/rl.$w.$r" "$op" 4; echo; done | median)
    b=$(for r in $(seq "$ROUNDS"); do sum_op "$WORK/ngx.$w.$r" "$op" 4; echo; done | median)
    c=$(for r in $(seq "$ROUNDS"); do sum_op "$WORK/rl.$w.$r" "$op" 5; echo; done | median)
    d=$(for r in $(seq "$ROUNDS"); do sum_op "$WORK/ngx.$w.$r" "$op" 5; echo; done | median)
    printf "%-14s %8s %12s %12s %6.2f %12s %12s %6.2f\n" "$op" "$w" "$a" "$b" \
      "$(echo "$a / $b" | bc -l)" "$c" "$d" "$(echo "$c / $d" | bc -l)"
  done
done
