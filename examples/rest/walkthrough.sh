#!/usr/bin/env bash
# The REST API by hand: a documented sequence of HTTP calls against a real vault-server,
# for integrators (docs/spec/api.md; the OpenAPI document is docs/api/openapi.json, and
# `cargo test -p vault-examples --test rest_walkthrough` checks that every call below is a
# route and method of that document).
#
#   examples/rest/walkthrough.sh            # builds the server and the `vault` command
#
# Needs curl and python3 (for reading JSON). It starts vault-server on 127.0.0.1 with a
# temporary sled directory (plain HTTP is allowed only on loopback; use TLS anywhere else,
# docs/spec/tls.md), and stops it at the end.
#
# What a REST client cannot do with curl alone is the cryptography: the password becomes a
# login secret through PBKDF2, and the keyring, pages, headers and manifests are sealed on
# the device (docs/spec/keyring.md, pages.md). Here the `vault` command does those parts
# (register, put) and curl shows every route the bytes travel through; a client in another
# language implements the spec and calls the same routes.
set -euo pipefail
cd "$(dirname "$0")/../.."

cargo build --release --locked -q -p vault-server -p vault-cli
target="${CARGO_TARGET_DIR:-target}"
server="$target/release/vault-server"
vault="$target/release/vault"

work="$(mktemp -d)"
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
base="http://127.0.0.1:$port"
"$server" --data-dir "$work/data" --listen "127.0.0.1:$port" >"$work/server.log" 2>&1 &
server_pid=$!
cleanup() {
    kill -TERM "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

say() { printf '\n== %s\n' "$*"; }
# json FIELD: one field of the JSON object on standard input (a.b for nested fields).
json() { python3 -c 'import json,sys
v=json.load(sys.stdin)
for k in sys.argv[1].split("."): v=v[int(k)] if isinstance(v,list) else v[k]
print(v)' "$1"; }
# expect CODE CURL-ARGS…: runs curl, prints the status line, fails unless the status is CODE.
# The body goes to $work/body.
expect() {
    local want="$1"
    shift
    local got method="" url="" prev=""
    for a in "$@"; do
        [ "$prev" = "-X" ] && method="$a"
        prev="$a"
        case "$a" in "$base"/*) url="$a" ;; esac
    done
    got="$(curl -sS -o "$work/body" -w '%{http_code}' "$@")"
    # The method and path only: never the token.
    printf '   %s %s -> %s\n' "$method" "${url#"$base"}" "$got"
    if [ "$got" != "$want" ]; then
        echo "unexpected status $got (wanted $want); body:" >&2
        cat "$work/body" >&2
        exit 1
    fi
}

for _ in $(seq 1 100); do
    curl -s -o /dev/null "$base/v1/openapi.json" && break
    sleep 0.1
done

say "1. The API describes itself: GET /v1/openapi.json (no session needed)"
expect 200 -X GET "$base/v1/openapi.json"
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print("   OpenAPI", d["openapi"], "-", len(d["paths"]), "paths")' "$work/body"

say "2. Register alice with the vault command (PBKDF2, sealed keyring, identity: client side)"
export VAULT_DIR="$work/alice" VAULT_PASSWORD='correct horse battery staple'
"$vault" --quiet register --user alice --server "$base" >/dev/null
printf 'a file for the walkthrough\n' >"$work/notes.txt"
"$vault" --quiet put "$work/notes.txt" --collection docs >/dev/null
unset VAULT_PASSWORD
token="$(json token <"$work/alice/session.json")"
auth=(-H "Authorization: Bearer $token")
echo "   registered; the session token is in $work/alice/session.json (mode 0600)"

say "3. Pre-login: the KDF parameters of a name (answered for any name, so it does not reveal who exists)"
expect 200 -X POST -H 'Content-Type: application/json' -d '{"name":"alice"}' "$base/v1/prelogin"
echo "   kdf_iterations: $(json kdf_iterations <"$work/body")"

say "4. Without a session: 401 with the one JSON error shape"
expect 401 -X GET "$base/v1/account"
echo "   error code: $(json error.code <"$work/body")"

say "5. The account, the name directory and a public identity bundle"
expect 200 -X GET "${auth[@]}" "$base/v1/account"
user="$(json user <"$work/body")"
echo "   user $user, bytes stored: $(json usage <"$work/body")"
expect 200 -X GET "${auth[@]}" "$base/v1/users/alice"
expect 200 -X GET "${auth[@]}" "$base/v1/identities/$user"
echo "   identity bundle: $(wc -c <"$work/body") bytes (public keys, self-signed)"

say "6. What the server holds for alice: scopes, and the sealed manifest of her collection"
expect 200 -X GET "${auth[@]}" "$base/v1/collections"
collection="$(json scopes.0.id <"$work/body")"
echo "   collection $collection (a random id: the name 'docs' is inside the sealed manifest)"
curl -sS -D "$work/headers" -o "$work/body" "${auth[@]}" "$base/v1/collections/$collection/manifest"
version="$(tr -d '\r' <"$work/headers" | sed -n 's/^[Vv]ault-[Vv]ersion: //p')"
echo "   manifest: version $version, $(wc -c <"$work/body") opaque bytes"
if grep -q "notes.txt" "$work/body"; then
    echo "the manifest shows a file name in clear" >&2
    exit 1
fi
expect 200 -X GET "${auth[@]}" "$base/v1/collections/$collection/keys/1"
echo "   collection key of epoch 1: $(wc -c <"$work/body") bytes, wrapped under alice's keyring"

say "7. The change feed: what changed after a cursor (GET /v1/changes?after=0)"
expect 200 -X GET "${auth[@]}" "$base/v1/changes?after=0&limit=100"
python3 -c 'import json,sys
d=json.load(open(sys.argv[1]))
for c in d["changes"]: print("   seq", c["seq"], c["kind"])
print("   next", d["next"], "more", d["more"])' "$work/body"

say "8. The store is opaque bytes: a scope of our own, a page, and the manifest compare-and-swap"
scope="$(python3 -c 'import secrets; print(secrets.token_hex(16))')"
object="$(python3 -c 'import secrets; print(secrets.token_hex(16))')"
expect 201 -X PUT "${auth[@]}" "$base/v1/collections/$scope"
printf 'any bytes: the server never reads them' >"$work/page"
expect 204 -X PUT "${auth[@]}" -H 'Content-Type: application/octet-stream' \
    --data-binary @"$work/page" "$base/v1/collections/$scope/objects/$object/versions/1/pages/0"
expect 200 -X GET "${auth[@]}" "$base/v1/collections/$scope/objects/$object/versions/1/pages/0"
cmp -s "$work/page" "$work/body" && echo "   the page comes back byte for byte"
expect 200 -X PUT "${auth[@]}" -H 'Content-Type: application/octet-stream' \
    --data-binary @"$work/page" "$base/v1/collections/$scope/manifest?expected=0&version=1"
echo "   swap 0 -> 1: $(cat "$work/body")"
expect 409 -X PUT "${auth[@]}" -H 'Content-Type: application/octet-stream' \
    --data-binary @"$work/page" "$base/v1/collections/$scope/manifest?expected=0&version=1"
echo "   a second swap from 0 loses: $(cat "$work/body")"
echo "   (a vault client would refuse these bytes: they are neither sealed nor signed)"
expect 204 -X DELETE "${auth[@]}" "$base/v1/collections/$scope"

say "9. Log out: the token stops working"
expect 204 -X DELETE "${auth[@]}" "$base/v1/sessions/current"
expect 401 -X GET "${auth[@]}" "$base/v1/account"

say "done: every call above is in docs/api/openapi.json"
