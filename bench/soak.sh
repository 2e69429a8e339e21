#!/usr/bin/env bash
# bench/soak.sh: the hostile suite's heavier variants, run for minutes before
# a release (issue 17). Not run by CI, which runs the short ones (.ci/run).
#
#   bench/soak.sh                        # everything below, defaults (~30 min on 2 cores)
#   FUZZ_SEEDS=5000 ROUNDS=2 bench/soak.sh   # a shorter pass
#
# Stages (each one result; the last line is "N passed, N failed"):
#   1. the receive fuzz (spec/hostile/receive_fuzz_spec.lua) with FUZZ_SEEDS
#      seeds per configuration (default 100000) from FUZZ_FIRST (default
#      1000: past the seeds CI runs; pick another start to explore others);
#   2. the same with single-shot receives (RINGLINE_DISABLE_FEATURES=
#      fd_install,recv_limit, as on kernels before 6.17), FUZZ_SEEDS/4 seeds;
#   3. the same under ASan+UBSan (the library of build-asan/ loaded into
#      luajit, as CI's in-process ASan stage), FUZZ_SEEDS/20 seeds, when
#      build-asan/libringline.so.0 exists;
#   4. connection churn with CHURN_WAVES waves of 50 connections (default
#      200; CI runs 8);
#   5. the whole spec/hostile suite ROUNDS times (default 5): races that
#      show in some runs only (issue 17's defect 3 showed in 4 of 11).
# A failing fuzz seed is printed with the command that reruns it alone.
# Logs: $SOAK_DIR (default /tmp/ringline-soak), one file per stage.
# Build first: cmake -B build -DCMAKE_BUILD_TYPE=Release && cmake --build build
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

FUZZ_SEEDS=${FUZZ_SEEDS:-100000}
FUZZ_FIRST=${FUZZ_FIRST:-1000}
CHURN_WAVES=${CHURN_WAVES:-200}
ROUNDS=${ROUNDS:-5}
SOAK_DIR=${SOAK_DIR:-/tmp/ringline-soak}
BUILD=${RINGLINE_BUILD:-$PWD/build}

[ -e "$BUILD/libringline.so" ] && [ -x "$BUILD/bindings/ringline-lua" ] ||
  { echo "soak: build first (no $BUILD/libringline.so or host)" >&2; exit 2; }
# Bring the builds up to date with the tree: a stale library (one without a
# newer function the Lua side declares) fails the stages for no real reason.
cmake --build "$BUILD" -j2 >/dev/null || { echo "soak: $BUILD does not build" >&2; exit 2; }
if [ -d build-asan ]; then
  cmake --build build-asan -j2 >/dev/null || { echo "soak: build-asan does not build" >&2; exit 2; }
fi
mkdir -p "$SOAK_DIR"

passed=0 failed=0
start=$SECONDS

stage() { # name command...
  local name=$1 log t0=$SECONDS
  shift
  log="$SOAK_DIR/$(tr -c 'a-z0-9\n' '_' <<<"$name").log"
  printf '== %s ... ' "$name"
  if "$@" >"$log" 2>&1; then
    passed=$((passed + 1))
    printf 'ok (%d s)\n' $((SECONDS - t0))
  else
    failed=$((failed + 1))
    printf 'FAILED (%d s), log: %s\n' $((SECONDS - t0)) "$log"
    grep -E -A6 'diverge|^seed |Failure|Error ->' "$log" | head -n 40
  fi
}

fuzz() { # seeds [env...]
  local n=$1
  shift
  env RINGLINE_FUZZ_SEEDS="$n" RINGLINE_FUZZ_FIRST="$FUZZ_FIRST" RINGLINE_FUZZ_VERBOSE=1 "$@" \
    busted --lua=luajit spec/hostile/receive_fuzz_spec.lua
}

stage "receive fuzz, $FUZZ_SEEDS seeds per configuration from $FUZZ_FIRST" fuzz "$FUZZ_SEEDS"
stage "receive fuzz, single-shot receives, $((FUZZ_SEEDS / 4)) seeds per configuration" \
  fuzz $((FUZZ_SEEDS / 4)) RINGLINE_DISABLE_FEATURES=fd_install,recv_limit
asan=$PWD/build-asan/libringline.so.0
if [ -e "$asan" ]; then
  stage "receive fuzz under ASan+UBSan, $((FUZZ_SEEDS / 20)) seeds per configuration" \
    fuzz $((FUZZ_SEEDS / 20)) RINGLINE_LIB="$asan" \
      LD_PRELOAD="$(gcc -print-file-name=libasan.so) $(gcc -print-file-name=libubsan.so)" \
      ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:verify_asan_link_order=0 \
      UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1:abort_on_error=1
else
  echo "== receive fuzz under ASan+UBSan: skipped (no $asan; see .ci/run stage 4)"
fi
stage "connection churn, $CHURN_WAVES waves of 50" \
  env RINGLINE_CHURN_WAVES="$CHURN_WAVES" busted --lua=luajit spec/hostile/churn_spec.lua
for r in $(seq 1 "$ROUNDS"); do
  stage "spec/hostile, round $r of $ROUNDS" busted --lua=luajit spec/hostile
done

echo "== total time $((SECONDS - start)) s"
echo "$passed passed, $failed failed"
((failed == 0))
