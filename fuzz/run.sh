#!/usr/bin/env bash
# Builds and runs the libFuzzer targets on the STABLE toolchain (no nightly, no cargo-fuzz).
#
#   fuzz/run.sh build                 build every target
#   fuzz/run.sh smoke [seconds]       build, then run every target for N seconds (default 20)
#   fuzz/run.sh run <target> [args]   run one target with libFuzzer arguments (long runs)
#   fuzz/run.sh list                  list the targets
#
# cargo-fuzz passes nightly-only -Zsanitizer flags; the SanitizerCoverage pass itself is
# reachable on stable through -Cpasses/-Cllvm-args, which is all libFuzzer needs for its
# coverage feedback. There is no AddressSanitizer on stable; our crates forbid unsafe code,
# and debug assertions and overflow checks stay on (see fuzz/README.md).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here"

export RUSTFLAGS="--cfg fuzzing -Cpasses=sancov-module \
  -Cllvm-args=-sanitizer-coverage-level=4 \
  -Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
  -Cllvm-args=-sanitizer-coverage-pc-table \
  -Cllvm-args=-sanitizer-coverage-trace-compares \
  -Cdebug-assertions -Coverflow-checks"
export CARGO_TARGET_DIR="$here/target"
# An explicit --target keeps RUSTFLAGS off build scripts and proc macros (which must not be
# instrumented: they do not link libFuzzer).
host="$(rustc -vV | sed -n 's/^host: //p')"

targets() {
  sed -n 's/^name = "\(.*\)"/\1/p' Cargo.toml | grep -v '^vault-fuzz$'
}

build() {
  cargo build --release --locked --bins --target "$host"
}

run_one() {
  local target="$1"; shift
  local corpus="$here/corpus/$target"
  mkdir -p "$corpus" "$here/artifacts/$target"
  if [ -d "$here/seeds/$target" ]; then
    cp -n "$here/seeds/$target"/* "$corpus/" 2>/dev/null || true
  fi
  "$CARGO_TARGET_DIR/$host/release/$target" -artifact_prefix="$here/artifacts/$target/" \
    -rss_limit_mb=2048 "$@" "$corpus"
}

case "${1:-smoke}" in
  list) targets ;;
  build) build ;;
  run)
    [ $# -ge 2 ] || { echo "usage: fuzz/run.sh run <target> [libfuzzer args]" >&2; exit 2; }
    build
    target="$2"; shift 2
    run_one "$target" "$@"
    ;;
  smoke)
    seconds="${2:-20}"
    build
    for t in $(targets); do
      echo "--- fuzz smoke: $t (${seconds}s)"
      run_one "$t" -max_total_time="$seconds" -print_final_stats=1 2>&1 | grep -E "^(INFO: Loaded|#[0-9]+ +DONE|Done|stat::number_of_executed_units|stat::new_units_added)|ERROR|panicked|SUMMARY" || true
      # grep hides libFuzzer's chatter; the exit status of the target is what counts.
      if [ "${PIPESTATUS[0]}" -ne 0 ]; then
        echo "fuzz target $t FAILED (artifacts in fuzz/artifacts/$t/)" >&2
        exit 1
      fi
    done
    ;;
  *) echo "usage: fuzz/run.sh build | smoke [seconds] | run <target> [args] | list" >&2; exit 2 ;;
esac
