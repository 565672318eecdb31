#!/usr/bin/env bash
# Builds and runs the libFuzzer targets on the STABLE toolchain (no nightly, no cargo-fuzz).
#
#   fuzz/run.sh build                      build every target
#   fuzz/run.sh smoke [seconds]            build, then run every target for N seconds (default 20);
#                                          non-zero exit if any target crashes
#   fuzz/run.sh run <target> [args]        build, then fuzz one target with libFuzzer arguments
#                                          (long runs; stop with Ctrl-C)
#   fuzz/run.sh replay <target> <file>...  build, then run a target once on the given inputs
#   fuzz/run.sh seeds                      regenerate fuzz/seeds/*/…-generated (make_seeds)
#   fuzz/run.sh list                       list the targets
#
# Works from any directory. cargo-fuzz passes nightly-only -Zsanitizer flags; the
# SanitizerCoverage pass itself is reachable on stable through -Cpasses/-Cllvm-args, which is
# all libFuzzer needs for its coverage feedback. There is no AddressSanitizer on stable; our
# crates forbid unsafe code, and debug assertions and overflow checks stay on (README.md).
#
# Environment: FUZZ_TARGET_DIR (default fuzz/target), CXX (the C++ compiler that builds
# libFuzzer; default c++, then g++, then clang++).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
target_dir="${FUZZ_TARGET_DIR:-$here/target}"
fuzz_rustflags="--cfg fuzzing -Cpasses=sancov-module \
-Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
-Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares \
-Cdebug-assertions -Coverflow-checks"

die() { echo "fuzz/run.sh: $*" >&2; exit 2; }

# Cargo runs from the repository root so that the repository's toolchain settings apply.
cargo_root() { (cd "$root" && cargo "$@"); }

host() { (cd "$root" && rustc -vV) | sed -n 's/^host: //p'; }

targets() {
  local f
  for f in "$here"/fuzz_targets/*.rs; do
    basename "$f" .rs
  done
}

bin_dir() { echo "$target_dir/$(host)/release"; }

# libfuzzer-sys compiles libFuzzer (C++17) with the `cc` crate and links libstdc++: a C++
# compiler is required. A root shell with apt-get (a fresh CI container) installs g++; anyone
# else gets told what to install.
need_cxx() {
  if [ -n "${CXX:-}" ]; then
    command -v "$CXX" >/dev/null || die "CXX=$CXX not found"
    return
  fi
  local c
  for c in c++ g++ clang++; do
    if command -v "$c" >/dev/null; then
      export CXX="$c"
      return
    fi
  done
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "fuzz/run.sh: no C++ compiler (libFuzzer is C++); installing g++ with apt-get" >&2
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends g++ >/dev/null
    export CXX=g++
    return
  fi
  die "no C++ compiler found: libfuzzer-sys builds libFuzzer from C++ source. Install g++ (Debian/Ubuntu: apt-get install g++) or set CXX."
}

build() {
  need_cxx
  # An explicit --target keeps RUSTFLAGS off build scripts and proc macros, which must not be
  # instrumented (they do not link libFuzzer). CARGO_ENCODED_RUSTFLAGS would win over
  # RUSTFLAGS, so it is cleared.
  local triple
  triple="$(host)"
  (
    unset CARGO_ENCODED_RUSTFLAGS
    export RUSTFLAGS="$fuzz_rustflags"
    cargo_root build --release --locked --manifest-path "$here/Cargo.toml" \
      --target-dir "$target_dir" --target "$triple" --bins
  )
}

check_target() {
  [[ "$1" != */* && -f "$here/fuzz_targets/$1.rs" ]] || die "unknown target '$1' (fuzz/run.sh list)"
}

# run_one <target> [libFuzzer args]: fuzz with the target's corpus, seeded from fuzz/seeds/.
run_one() {
  local target="$1"; shift
  local corpus="$here/corpus/$target" artifacts="$here/artifacts/$target"
  mkdir -p "$corpus" "$artifacts"
  if [ -d "$here/seeds/$target" ]; then
    cp -n "$here/seeds/$target"/* "$corpus/" 2>/dev/null || true
  fi
  "$(bin_dir)/$target" -artifact_prefix="$artifacts/" -rss_limit_mb=2048 "$@" "$corpus"
}

smoke() {
  local seconds="$1" t status log last stats failed=()
  local logs="$target_dir/smoke-logs"
  mkdir -p "$logs"
  local summary=()
  for t in $(targets); do
    log="$logs/$t.log"
    echo "--- fuzz smoke: $t (${seconds}s, log $log)"
    if run_one "$t" -max_total_time="$seconds" -timeout=60 -print_final_stats=1 >"$log" 2>&1; then
      status=0
    else
      status=$?
    fi
    grep -E '^INFO: Loaded [0-9]+ modules|^INFO: seed corpus|^#[0-9]+[[:space:]]+INITED|^Done [0-9]+ runs' "$log" || true
    # The last status line: "#<runs> <event> cov: <edges> ft: <features> corp: … exec/s: …".
    last="$(grep -E '^#[0-9]+[[:space:]].*cov: ' "$log" | tail -n 1 || true)"
    if [ -n "$last" ]; then echo "$last"; fi
    stats="$(grep -E '^stat::(number_of_executed_units|average_exec_per_sec|new_units_added|peak_rss_mb)' "$log" \
      | sed 's/^stat:://' | tr '\n' ' ' || true)"
    if [ "$status" -ne 0 ]; then
      echo "!!! fuzz target $t FAILED (exit $status); last lines of $log:" >&2
      tail -n 40 "$log" >&2
      echo "!!! crash inputs: $(ls "$here/artifacts/$t"/ 2>/dev/null | tr '\n' ' ')" >&2
      echo "!!! replay: fuzz/run.sh replay $t fuzz/artifacts/$t/<file>" >&2
      failed+=("$t")
      summary+=("$t: FAILED (exit $status)")
    else
      summary+=("$t: $(sed -E 's/^#([0-9]+)[[:space:]]+[A-Z_]+[[:space:]]+(cov: [0-9]+ ft: [0-9]+).*/\2/' <<<"${last:-no status line}") | $stats")
    fi
  done
  echo "=== fuzz smoke summary (${seconds}s per target)"
  printf '%s\n' "${summary[@]}"
  if [ "${#failed[@]}" -ne 0 ]; then
    echo "fuzz smoke FAILED: ${failed[*]} (inputs in fuzz/artifacts/<target>/)" >&2
    exit 1
  fi
}

cmd="${1:-}"
[ $# -gt 0 ] && shift
case "$cmd" in
  list) targets ;;
  build) build ;;
  smoke)
    seconds="${1:-20}"
    [[ "$seconds" =~ ^[0-9]+$ ]] || die "smoke takes a number of seconds, not '$seconds'"
    build
    smoke "$seconds"
    ;;
  run)
    [ $# -ge 1 ] || die "usage: fuzz/run.sh run <target> [libFuzzer args]"
    target="$1"; shift
    check_target "$target"
    build
    run_one "$target" "$@"
    ;;
  replay)
    [ $# -ge 2 ] || die "usage: fuzz/run.sh replay <target> <input file>..."
    target="$1"; shift
    check_target "$target"
    build
    "$(bin_dir)/$target" -rss_limit_mb=2048 "$@"
    ;;
  seeds)
    # A plain (uninstrumented) build: make_seeds does not link libFuzzer. It lands in
    # <target dir>/release/, apart from the instrumented <target dir>/<host>/release/.
    (
      unset CARGO_ENCODED_RUSTFLAGS RUSTFLAGS
      cargo_root run --release --locked --manifest-path "$here/Cargo.toml" \
        --target-dir "$target_dir" --features make-seeds --bin make_seeds -- "$here/seeds"
    )
    ;;
  *) die "usage: fuzz/run.sh build | smoke [seconds] | run <target> [args] | replay <target> <file>... | seeds | list" ;;
esac
