#!/usr/bin/env bash
# The vault's row in the side-by-side corpus benchmark: runs the shared anchor benchmark
# (restic, borg, rage, zstd -> openssl CTR -> HMAC on a fixed 512 MiB corpus) with the vault
# added through its EXTRA_TOOLS hook, so every ratio comes from one run on one machine.
#
#   benches/corpus.sh [anchor-bench.sh options, e.g. --reps 1 --tools "zstd3-ctr-hmac restic borg"]
#
# ANCHOR_BENCH points at anchor-bench.sh (default: ../shared/bench/anchor-bench.sh beside
# this repository). The vault side is `cargo run --release -p vault-examples --example tree`:
# store = a new keyring sealed at 600,000 PBKDF2 iterations + a sled vault of the tree, two
# writer threads; restore = unlock + write every file back, two threads.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
anchor="${ANCHOR_BENCH:-$repo/../shared/bench/anchor-bench.sh}"
[ -x "$anchor" ] || { echo "anchor benchmark not found at $anchor (set ANCHOR_BENCH)" >&2; exit 2; }
cargo build --release --locked -p vault-examples --example tree --manifest-path "$repo/Cargo.toml"
export VAULT_TREE="$repo/target/release/examples/tree"
export EXTRA_TOOLS="vault ${EXTRA_TOOLS:-}"
export EXTRA_vault_WRITE='cd "$RUN_CORPUS" && "$VAULT_TREE" store "$O/vault" $SRCS'
export EXTRA_vault_READ='"$VAULT_TREE" restore "$O/vault" "$D"'
exec "$anchor" "$@"
