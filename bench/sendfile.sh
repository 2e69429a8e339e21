#!/usr/bin/env bash
# Files by sendfile: examples/static_files.lua (res:sendfile: the kernel
# splices file -> pipe -> socket through the ring; STATIC_CACHE=0, so every
# response is a sendfile, and again with its region cache) against Debian
# nginx (sendfile on, one worker) serving the same files, on demand (not CI).
#
#   bench/sendfile.sh [SIZES]      e.g. bench/sendfile.sh "64k:65536 1m:1048576"
#
# Per server and file size: wrk (one thread, CONNS keep-alive connections)
# for DURATION s; requests/s, MB/s, and bytes per server CPU-second (the
# server's utime+stime from /proc over the run: io-wq workers, which run
# the splices, are threads of the process and counted), the server's RSS
# after each size and its peak (VmHWM): RSS must not grow with the file
# size. BIG=<MiB> adds one file of that many MiB: one larger than the page
# cache can hold here (see env.txt's MemAvailable) is read from the disk;
# it is written once, and removed at the end. MEMCG=<MiB> runs each server
# in a memory cgroup of that size (v1 or v2; root) and drops the page cache
# before each measurement, so a BIG file larger than MEMCG is read from
# the disk without filling the machine's memory: e.g. BIG=2048 MEMCG=512.
# The server is pinned to SERVER_CPU (0), the client to CLIENT_CPU (1).
# Knobs: DURATION (5), RUNS (3, medians in summary.txt), CONNS (8), PORT
# (18095), OUT (results dir), SERVERS ("ringline ringline-cache nginx").
# A quick sanity run: DURATION=1 RUNS=1 bench/sendfile.sh
# Build first: cmake -B build -DCMAKE_BUILD_TYPE=Release && cmake --build build
set -euo pipefail
RL_ROOT="$(cd "$(dirname "$0")/.." && pwd)"
RL_BUILD="${RL_BUILD:-$RL_ROOT/build}"
HOST="$RL_BUILD/bindings/ringline-lua"
DURATION=${DURATION:-5}
RUNS=${RUNS:-3}
CONNS=${CONNS:-8}
PORT=${PORT:-18095}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
SERVERS=${SERVERS:-"ringline ringline-cache nginx"}
SIZES=${1-"64k:65536 1m:1048576 64m:67108864"}   # "" with BIG: the big file only
BIG=${BIG:-}
MEMCG=${MEMCG:-}
OUT=${OUT:-/tmp/ringline-sendfile/$(date +%Y%m%d-%H%M%S)}
TMP=$(mktemp -d /tmp/ringline-sendfile.XXXXXX)
mkdir -p "$OUT"
TCK=$(getconf CLK_TCK)
SPID=

say() { printf '%s\n' "$*" >&2; }
CG=
cleanup() {
  [ -n "$SPID" ] && kill "$SPID" 2>/dev/null && wait "$SPID" 2>/dev/null
  rm -rf "$TMP"
  [ -n "$CG" ] && rmdir "$CG" 2>/dev/null
  return 0
}
trap cleanup EXIT

for t in taskset wrk nginx curl awk; do
  command -v "$t" >/dev/null || { say "sendfile.sh: $t is missing (see ../shared/bench/setup.sh)"; exit 1; }
done
[ -x "$HOST" ] || { say "build ringline-lua first ($HOST)"; exit 1; }

if [ -n "$MEMCG" ]; then   # a memory cgroup for the servers: their page cache is charged there
  if [ -d /sys/fs/cgroup/memory ]; then
    CG=/sys/fs/cgroup/memory/ringline-sendfile-$$
    mkdir "$CG" && echo $((MEMCG * 1048576)) > "$CG/memory.limit_in_bytes"
  else
    CG=/sys/fs/cgroup/ringline-sendfile-$$
    mkdir "$CG" && echo $((MEMCG * 1048576)) > "$CG/memory.max"
  fi || { say "sendfile.sh: MEMCG needs root and a memory cgroup controller"; exit 1; }
  [ -w /proc/sys/vm/drop_caches ] || { say "sendfile.sh: MEMCG needs /proc/sys/vm/drop_caches"; exit 1; }
fi

FILES="$TMP/files"
mkdir -p "$FILES"
if [ -n "$BIG" ]; then SIZES="${SIZES:+$SIZES }big:$((BIG * 1048576))"; fi
for s in $SIZES; do head -c "${s#*:}" /dev/urandom > "$FILES/f${s%%:*}.bin"; done

{
  echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "host: $(uname -srm), $(nproc) CPUs: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
  echo "memory: $(awk '/^MemTotal:|^MemAvailable:/ { printf "%s %d MiB ", $1, $2 / 1024 }' /proc/meminfo)"
  echo "ringline-lua: $("$HOST" --version 2>&1 | head -1), build $(basename "$RL_BUILD") ($(grep -m1 CMAKE_BUILD_TYPE "$RL_BUILD/CMakeCache.txt" | cut -d= -f2))"
  echo "nginx: $(nginx -v 2>&1)"
  echo "wrk: $(wrk -v 2>&1 | head -1)"
  echo "settings: SIZES=\"$SIZES\" DURATION=$DURATION RUNS=$RUNS CONNS=$CONNS server cpu $SERVER_CPU, client cpu $CLIENT_CPU${MEMCG:+, servers in a ${MEMCG} MiB memory cgroup, page cache dropped before each measurement}"
} | tee "$OUT/env.txt" >&2

cat > "$TMP/nginx.conf" <<EOF
daemon off;
master_process off;
worker_processes 1;
error_log $TMP/nginx-error.log warn;
pid $TMP/nginx.pid;
events { worker_connections 4096; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  tcp_nodelay on;
  keepalive_requests 1000000;
  keepalive_timeout 65;
  client_body_temp_path $TMP/nginx-body;
  proxy_temp_path $TMP/nginx-proxy;
  fastcgi_temp_path $TMP/nginx-fastcgi;
  uwsgi_temp_path $TMP/nginx-uwsgi;
  scgi_temp_path $TMP/nginx-scgi;
  default_type application/octet-stream;
  server {
    listen 127.0.0.1:$PORT;
    root $FILES;
    location / { }
  }
}
EOF

server_cmd() { # name
  case $1 in
    ringline) echo "env PORT=$PORT BENCH_HOST=127.0.0.1 STATIC_CACHE=0 $HOST $RL_ROOT/examples/static_files.lua $FILES" ;;
    ringline-cache) echo "env PORT=$PORT BENCH_HOST=127.0.0.1 $HOST $RL_ROOT/examples/static_files.lua $FILES" ;;
    nginx) echo "nginx -p $TMP -e $TMP/nginx-error.log -c $TMP/nginx.conf" ;;
  esac
}

start_server() { # name
  if [ -n "$CG" ]; then   # into the cgroup before exec: every thread is charged there
    taskset -c "$SERVER_CPU" sh -c "echo \$\$ > $CG/cgroup.procs && exec $(server_cmd "$1")" >"$TMP/server-$1.log" 2>&1 &
  else
    taskset -c "$SERVER_CPU" $(server_cmd "$1") >"$TMP/server-$1.log" 2>&1 &
  fi
  SPID=$!
  local first=${SIZES%% *}
  first="f${first%%:*}.bin"
  for _ in $(seq 100); do
    if curl -s -o "$TMP/probe" "http://127.0.0.1:$PORT/$first" && cmp -s "$TMP/probe" "$FILES/$first"; then
      for s in $SIZES; do   # every file byte-exact before measuring anything
        curl -s "http://127.0.0.1:$PORT/f${s%%:*}.bin" | cmp -s - "$FILES/f${s%%:*}.bin" ||
          { say "$1: f${s%%:*}.bin differs"; exit 1; }
      done
      return 0
    fi
    sleep 0.1
  done
  say "$1 did not start:"; cat "$TMP/server-$1.log" >&2; exit 1
}

stop_server() {
  kill "$SPID" 2>/dev/null || true
  wait "$SPID" 2>/dev/null || true
  SPID=
}

calc() { awk "BEGIN { printf \"%.3f\", $1 }"; }
# the server's CPU ticks, its threads (io-wq workers) included
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$SPID/stat"; }
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$SPID/status"; }
hwm_kib() { awk '/^VmHWM:/ { print $2 }' "/proc/$SPID/status"; }

cat > "$TMP/bench.lua" <<'EOF'
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("BENCH requests=%d bytes=%d duration_us=%d p50_us=%d p99_us=%d errors=%d\n",
    summary.requests, summary.bytes, summary.duration, latency:percentile(50),
    latency:percentile(99), e.connect + e.read + e.write + e.status + e.timeout))
end
EOF

TSV="$OUT/sendfile.tsv"
printf 'run\tserver\tsize\trequests\tbytes\tseconds\tcpu_s\tmb_per_cpu_s\trss_kib\thwm_kib\terrors\tp50_us\tp99_us\n' > "$TSV"
read -r -a servers <<<"$SERVERS"
n=${#servers[@]}
for run in $(seq "$RUNS"); do
  for k in $(seq 0 $((n - 1))); do
    srv=${servers[$(( (k + run) % n ))]}   # rotate the order per run
    start_server "$srv"
    taskset -c "$CLIENT_CPU" wrk -t1 -c"$CONNS" -d1s "http://127.0.0.1:$PORT/f${SIZES%%:*}.bin" >/dev/null   # warm-up
    for s in $SIZES; do
      f="f${s%%:*}.bin"
      if [ -n "$CG" ]; then sync; echo 1 > /proc/sys/vm/drop_caches; fi
      c0=$(cpu_ticks)
      line=$(taskset -c "$CLIENT_CPU" wrk -t1 -c"$CONNS" -d"${DURATION}s" --timeout 30s -s "$TMP/bench.lua" \
        "http://127.0.0.1:$PORT/$f" | grep '^BENCH')
      c1=$(cpu_ticks)
      eval "$(sed -E 's/^BENCH //; s/ /;/g' <<<"$line")"
      # shellcheck disable=SC2154  # set by the eval above
      cpu=$(calc "($c1 - $c0) / $TCK")
      mbcpu=$(calc "(($cpu > 0) ? ($bytes / 1048576 / $cpu) : 0)")
      printf '%d\t%s\t%s\t%d\t%d\t%.3f\t%.2f\t%.1f\t%d\t%d\t%d\t%d\t%d\n' "$run" "$srv" "${s%%:*}" "$requests" \
        "$bytes" "$(calc "$duration_us / 1000000")" "$cpu" "$mbcpu" "$(rss_kib)" "$(hwm_kib)" "$errors" \
        "$p50_us" "$p99_us" >> "$TSV"
      say "  run $run $srv $f: $requests requests, cpu $cpu s, $mbcpu MiB per CPU s, rss $(rss_kib) KiB, errors $errors"
    done
    stop_server
  done
done

# medians per server and size; the ratio to nginx per server CPU-second
awk -F'\t' 'NR > 1 { k = $2 "\t" $3; v[k] = v[k] " " $8; if ($9 > v2[k]) v2[k] = $9 }
  function median(s,   a, n, i, j, t) {
    n = split(s, a, " ")
    for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
    return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
  }
  END {
    for (k in v) { split(k, p, "\t"); m[k] = median(v[k]) }
    for (k in v) {
      split(k, p, "\t")
      ng = m["nginx\t" p[2]]
      printf "%-16s %-6s %16.1f %10s %14d\n", p[1], p[2], m[k], ((ng > 0) ? sprintf("%.2fx", m[k] / ng) : "-"), v2[k]
    }
  }' "$TSV" | sort > "$TMP/summary"
{ printf "%-16s %-6s %16s %10s %14s\n" server size MiB/CPU-s "vs nginx" "max RSS KiB"; cat "$TMP/summary"; } |
  tee "$OUT/summary.txt" >&2
say "results: $OUT"
