#!/usr/bin/env bash
# bench/resty_redis.sh: lua-resty-redis, unchanged, driving redis-server
# from ringline-lua (require "ringline.ngx") and from nginx +
# lua-nginx-module (OpenResty's model), the same Lua (bench/resty_redis.lua)
# in both (issue 13: at least 1.3x requests per client CPU-second). On
# demand, never in CI.
#
#   git clone https://github.com/openresty/lua-resty-redis /tmp/lua-resty-redis
#   RESTY_REDIS=/tmp/lua-resty-redis/lib bench/resty_redis.sh
#
# redis-server (no persistence) is pinned to CPU_SERVER, the client (one
# ringline worker, or one nginx worker process) to CPU_CLIENT; CLIENTS
# light threads each run SET and GET in a loop for DURATION s on pooled
# connections. Each run prints the client's line (requests, wall and CPU
# seconds from getrusage in the client process, requests per CPU-second);
# RUNS runs, interleaved.
#
# nginx's lua module: /usr/lib/nginx/modules/ngx_http_lua_module.so, or the
# copy ../shared/bench/setup.sh unpacks (NGX_LUA_DEPS, default
# ../shared/bench/.deps/nginx-lua/root), which needs its own libluajit2.
#
# Knobs: RESTY_REDIS (required), RL_BUILD (build), RUNS (3), CLIENTS (50),
# DURATION (5 s), CPU_SERVER (1), CPU_CLIENT (0), PORT (16480).
set -euo pipefail
RL_ROOT="$(cd "$(dirname "$0")/.." && pwd)"
RL_BUILD="${RL_BUILD:-$RL_ROOT/build}"
HOST="$RL_BUILD/bindings/ringline-lua"
RUNS=${RUNS:-3}
CLIENTS=${CLIENTS:-50}
DURATION=${DURATION:-5}
CPU_SERVER=${CPU_SERVER:-1}
CPU_CLIENT=${CPU_CLIENT:-0}
PORT=${PORT:-16480}
: "${RESTY_REDIS:?the lib/ directory of lua-resty-redis (see the top of this script)}"
[ -f "$RESTY_REDIS/resty/redis.lua" ] || { echo "no resty/redis.lua under $RESTY_REDIS" >&2; exit 2; }

WORK=$(mktemp -d)
REDIS_PID=
NGX_PID=
cleanup() {
  [ -n "$NGX_PID" ] && kill "$NGX_PID" 2>/dev/null || true
  [ -n "$REDIS_PID" ] && kill "$REDIS_PID" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

taskset -c "$CPU_SERVER" redis-server --port "$PORT" --bind 127.0.0.1 --save '' --appendonly no \
  --io-threads 1 --dir "$WORK" >"$WORK/redis.log" 2>&1 &
REDIS_PID=$!
for _ in $(seq 100); do
  redis-cli -p "$PORT" ping >/dev/null 2>&1 && break
  sleep 0.05
done

# nginx + lua-nginx-module
MODDIR=/usr/lib/nginx/modules
LUA_MOD="$MODDIR/ngx_http_lua_module.so"
LUAPATH=""
NGX_ENV=()
if [ ! -f "$LUA_MOD" ]; then
  DEPS="${NGX_LUA_DEPS:-$RL_ROOT/../shared/bench/.deps/nginx-lua/root}"
  LUA_MOD="$DEPS/usr/lib/nginx/modules/ngx_http_lua_module.so"
  LJ=$(ls "$DEPS"/usr/lib/*/libluajit-5.1.so.2 2>/dev/null | head -1 || true)
  if [ ! -f "$LUA_MOD" ] || [ -z "$LJ" ]; then
    echo "resty_redis.sh: nginx's lua module not found (run ../shared/bench/setup.sh)" >&2
    LUA_MOD=
  else
    LUAPATH="$DEPS/usr/share/lua/5.1/?.lua;"
    NGX_ENV=(env "LD_LIBRARY_PATH=$(dirname "$LJ")")
  fi
fi

run_nginx() { # -> the result line
  local d="$WORK/nginx" out="$WORK/nginx/result"
  rm -rf "$d"
  mkdir -p "$d/logs" "$d/tmp"
  chmod 755 "$WORK"
  chmod 777 "$d"   # the worker process runs as nobody when started as root
  cat >"$d/nginx.conf" <<CONF
load_module $MODDIR/ndk_http_module.so;
load_module $LUA_MOD;
worker_processes 1;
daemon off;
master_process on;
pid $d/nginx.pid;
error_log $d/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $d/tmp; proxy_temp_path $d/tmp;
  fastcgi_temp_path $d/tmp; uwsgi_temp_path $d/tmp; scgi_temp_path $d/tmp;
  lua_package_path "$RESTY_REDIS/?.lua;${LUAPATH};";
  lua_socket_pool_size $CLIENTS;
  init_worker_by_lua_block {
    local bench = dofile("$RL_ROOT/bench/resty_redis.lua")
    ngx.timer.at(0, function()
      local line = bench.run($PORT, $CLIENTS, $DURATION)
      local f = io.open("$out.tmp", "w") f:write(line, "\n") f:close()
      os.rename("$out.tmp", "$out")
    end)
  }
}
CONF
  taskset -c "$CPU_CLIENT" "${NGX_ENV[@]}" nginx -p "$d" -c "$d/nginx.conf" -e "$d/error.log" &
  NGX_PID=$!
  local limit=$((DURATION * 20 + 200))
  for _ in $(seq "$limit"); do
    [ -f "$out" ] && break
    sleep 0.05
  done
  kill "$NGX_PID" 2>/dev/null || true
  wait "$NGX_PID" 2>/dev/null || true
  NGX_PID=
  if [ -f "$out" ]; then cat "$out"; else echo "nginx: no result"; tail -5 "$d/error.log" >&2; fi
}

run_ringline() {
  RESTY_REDIS="$RESTY_REDIS" REDIS_PORT="$PORT" CLIENTS="$CLIENTS" DURATION="$DURATION" \
    taskset -c "$CPU_CLIENT" "$HOST" "$RL_ROOT/bench/resty_redis.lua"
}

for r in $(seq "$RUNS"); do
  echo "run $r ringline-lua: $(run_ringline)"
  [ -n "$LUA_MOD" ] && echo "run $r nginx-lua:    $(run_nginx)"
done
