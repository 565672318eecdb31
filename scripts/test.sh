#!/usr/bin/env bash
# The README's test command: every test of the workspace, the PostgreSQL backend's included.
#
#   scripts/test.sh [extra cargo test arguments]
#
# Starts a throwaway PostgreSQL on 127.0.0.1 with scripts/postgres.sh (installing the
# distribution's package the first time, which needs root or sudo), then runs
# `cargo test --workspace --locked --features vault-core/remote` (the sync client's tests,
# vault-core/tests/remote.rs, need that feature) with VAULT_TEST_DATABASE_URL set and
# VAULT_REQUIRE_POSTGRES=1, so the PostgreSQL suites fail rather than skip.
#
# Without PostgreSQL (no root, no package manager): VAULT_SKIP_POSTGRES=1 scripts/test.sh
# runs the rest; the PostgreSQL suites then print that they are skipped.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${VAULT_SKIP_POSTGRES:-0}" = 1 ]; then
    echo "test.sh: VAULT_SKIP_POSTGRES=1: the PostgreSQL suites are skipped" >&2
    unset VAULT_TEST_DATABASE_URL VAULT_REQUIRE_POSTGRES
else
    url="$(scripts/postgres.sh start | tail -n 1)"
    export VAULT_TEST_DATABASE_URL="$url" VAULT_REQUIRE_POSTGRES=1
    echo "test.sh: PostgreSQL at $url" >&2
fi
exec cargo test --workspace --locked --features vault-core/remote "$@"
