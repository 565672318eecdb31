#!/usr/bin/env bash
# The reviewer's tour: the known-answer vectors, the malicious-store and malicious-server
# tests, the fuzz smoke run and the benchmarks, each step with what it shows.
#
#   scripts/tour.sh            # everything: tests, fuzz 60 s per target, benchmarks (~1 h)
#   scripts/tour.sh --quick    # tests, fuzz 10 s per target, benchmarks compiled only
#   scripts/tour.sh --check    # every step's target exists; fuzz and benchmarks build (CI)
#
# Nothing here needs ../shared: the vectors are in the repository (see each vectors
# folder's LICENSE and SOURCE). The corpus benchmark beside restic, borg and rage needs the
# shared corpus and is run separately: benches/corpus.sh (docs/PERFORMANCE.md).
set -euo pipefail
cd "$(dirname "$0")/.."

mode="${1:-full}"
case "$mode" in
full | --quick | --check) ;;
*)
    echo "usage: scripts/tour.sh [--quick | --check]" >&2
    exit 2
    ;;
esac

step() { printf '\n==> %s\n' "$*"; }

if [ "$mode" = --check ]; then
    metadata="$(mktemp)"
    trap 'rm -f "$metadata"' EXIT
    cargo metadata --locked --no-deps --format-version 1 >"$metadata"
fi

# test WHAT -p PACKAGE ARGS…: runs the named tests; with --check, checks that the package
# has every named test target (CI builds and runs them all through scripts/test.sh).
test_step() {
    local what="$1"
    shift
    step "$what"
    if [ "$mode" = --check ]; then
        python3 - "$metadata" "$@" <<'PY'
import json, sys
meta = json.load(open(sys.argv[1]))
args = sys.argv[2:]
package = args[args.index("-p") + 1]
targets = {(t["name"], tuple(t["kind"])) for p in meta["packages"] if p["name"] == package for t in p["targets"]}
if not targets:
    sys.exit(f"tour: no package {package}")
for i, a in enumerate(args):
    if a == "--test" and (args[i + 1], ("test",)) not in targets:
        sys.exit(f"tour: {package} has no test target {args[i + 1]}")
    if a == "--lib" and not any("lib" in k for _, k in targets):
        sys.exit(f"tour: {package} has no library")
print(f"   {package}: {' '.join(args[2:])}: present")
PY
    else
        cargo test --locked "$@"
    fi
}

test_step "keyring: our known-answer vectors (docs/spec/keyring.md §9)" \
    -p vault-keyring --test vectors
test_step "keyring: Wycheproof ECDH P-256, RSA-PSS, RSA PKCS#1" \
    -p vault-keyring --test wycheproof
test_step "keyring: SP 800-38A CTR, RFC 4231 HMAC, RFC 5869 HKDF, RFC 7914 PBKDF2 (unit KATs)" \
    -p vault-keyring --lib kat
test_step "keyring: every bit flip, truncation and splice of a sealed keyring is refused" \
    -p vault-keyring --test tamper
test_step "handover: RFC 9180 HPKE P-256, Wycheproof RSA-OAEP-4096, envelope checks and vectors" \
    -p vault-keyring --test hpke_vectors --test oaep_wycheproof --test envelope
test_step "pages and manifests: format vectors (docs/spec/pages.md)" \
    -p vault-core --features remote --test vectors --test manifest_vectors
test_step "the malicious store: pages, headers and manifests flipped, swapped, replayed" \
    -p vault-core --features remote --test tamper
test_step "groups: signed rosters and their vectors" \
    -p vault-core --features remote --test roster --test roster_vectors
test_step "the malicious server against sharing and groups (key substitution, withheld envelopes)" \
    -p vault-core --features remote --test sharing
test_step "end to end: the real client and server through a tampering proxy (THREATS C2-C16), the marker scan" \
    -p vault-core --features remote --test malicious_server
test_step "concurrent writers merge and nothing is lost; the offline cache takes only verified bytes" \
    -p vault-core --features remote --test merge --test offline

step "fuzz: every decoder and request-body parser on the stable toolchain (fuzz/README.md)"
case "$mode" in
full) fuzz/run.sh smoke 60 ;;
--quick) fuzz/run.sh smoke 10 ;;
--check) fuzz/run.sh build ;;
esac

step "benchmarks: each against a named reference in the same run (docs/PERFORMANCE.md)"
if [ "$mode" = full ]; then
    for b in keyring pages streaming handover server sync; do
        cargo bench --locked -p vault-benches --bench "$b"
    done
else
    cargo bench --locked -p vault-benches --no-run
fi

step "tour done ($mode)"
