//! The server's request decoders (issue #5): every route of the HTTP API, driven in-process
//! through the real router (`vault_server::api::router`) over a sled store, with a
//! fuzzer-chosen path parameter, query, content type, authentication and body.
//!
//! Checked for every input:
//! 1. nothing panics (the router's panic safety net would answer 500; a panic that escapes
//!    it aborts the process);
//! 2. no answer is a 5xx (`500 internal`, or `503 unavailable`, which only a failing store
//!    may give);
//! 3. every 4xx answer is the one JSON error shape with a non-empty stable code.
//!
//! Input layout: `route u8 ‖ flags u8 ‖ segment_len u8 ‖ segment ‖ body`. `route` picks a
//! (method, path template) of [`ROUTES`]; `{id}` in the template is a fixed valid id, or
//! the fuzzer's segment when flag bit 0 is set; `{n}` is a counter, or the segment when bit
//! 1 is set. Bits 2–3 pick the content type (octet-stream, JSON, none, text); bit 4 drops
//! the session token. Writes are capped by a small quota so the store stays small and
//! most page writes are refused before they reach the disk.
//!
//! The fixture — one registered, logged-in account and a collection and a group it owns —
//! is made once per process. `fuzz/seeds/api_request/` holds one seed per route.
#![no_main]

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Method, Request, StatusCode};
use axum::Router;
use libfuzzer_sys::fuzz_target;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use serde_json::{json, Value};
use tower::ServiceExt;
use vault_keyring::danger::{insecure_test_params, insecure_test_policy};
use vault_keyring::{Keyring, KeyringOptions, Password, PasswordKeys, SealedKeyring};
use vault_server::api::{self, AppState};
use vault_server::auth::VerifierPolicy;
use vault_server::config::{Config, Limits};
use vault_server::store::SledBackend;

/// The routes, as (method, path template). Logout and revoke-all are left out: they would
/// end the fixture's session for every later input. The fixture account has no recovery
/// secret, so the recovery routes run their decoders and checks but never succeed (a
/// recovery ends every session too).
const ROUTES: &[(&str, &str)] = &[
    ("GET", "/v1/openapi.json"),
    ("POST", "/v1/accounts"),
    ("POST", "/v1/prelogin"),
    ("POST", "/v1/sessions"),
    ("GET", "/v1/account"),
    ("DELETE", "/v1/account"),
    ("GET", "/v1/users/{x}"),
    ("GET", "/v1/account/keyring"),
    ("PUT", "/v1/account/keyring?expected={n}"),
    ("GET", "/v1/identities/{me}"),
    ("PUT", "/v1/identities/{me}"),
    ("GET", "/v1/collections"),
    ("PUT", "/v1/collections/{c}"),
    (
        "PUT",
        "/v1/collections/{c}/objects/{o}/versions/{n}/pages/{n}",
    ),
    (
        "GET",
        "/v1/collections/{c}/objects/{o}/versions/{n}/pages/{n}",
    ),
    ("PUT", "/v1/collections/{c}/objects/{o}/versions/{n}"),
    ("GET", "/v1/collections/{c}/objects/{o}/versions/{n}"),
    ("DELETE", "/v1/collections/{c}/objects/{o}/versions/{n}"),
    ("PUT", "/v1/collections/{c}/keys/{n}"),
    ("GET", "/v1/collections/{c}/keys/{n}"),
    ("GET", "/v1/collections/{c}/manifest"),
    (
        "PUT",
        "/v1/collections/{c}/manifest?expected={n}&version={n}",
    ),
    ("PUT", "/v1/groups/{g}"),
    ("PUT", "/v1/groups/{g}/rosters/{n}"),
    ("GET", "/v1/groups/{g}/rosters"),
    ("GET", "/v1/groups/{g}/rosters/{n}"),
    ("PUT", "/v1/envelopes/{me}/{me}/{c}/{n}"),
    ("GET", "/v1/envelopes/{me}/{me}/{c}/{n}"),
    ("DELETE", "/v1/envelopes/{x}/{me}/{c}/{n}"),
    ("GET", "/v1/envelopes?recipient={me}"),
    ("GET", "/v1/changes?after={n}&limit={n}"),
    ("PATCH", "/v1/collections/{c}"),
    ("GET", "/{x}"),
    ("POST", "/v1/account/password"),
    ("GET", "/v1/account/audit?after={n}&limit={n}"),
    ("GET", "/v1/account/mfa"),
    ("POST", "/v1/account/mfa/otp"),
    ("POST", "/v1/account/mfa/otp/confirm"),
    ("POST", "/v1/account/mfa/elevation"),
    ("POST", "/v1/account/mfa/backup-codes"),
    ("DELETE", "/v1/account/mfa"),
    ("DELETE", "/v1/account/mfa/devices/{x}"),
    ("PUT", "/v1/account/mfa/allowlist"),
    ("POST", "/v1/recovery/keyring"),
    ("POST", "/v1/recovery"),
    ("PUT", "/v1/account/recovery"),
];

/// The fixture's ids and session.
struct Fixture {
    me: String,
    token: String,
}

impl Fixture {
    /// `template` with its placeholders filled: fixed valid values, or `segment` for the
    /// first id (flag bit 0) and every counter (flag bit 1).
    fn fill(&self, template: &str, flags: u8, segment: &str) -> String {
        let mut path = template.to_owned();
        if flags & 1 == 1 {
            for p in ["{x}", "{c}", "{g}", "{o}", "{me}"] {
                if let Some(at) = path.find(p) {
                    path.replace_range(at..at + p.len(), segment);
                    break;
                }
            }
        }
        if flags & 2 == 2 {
            path = path.replace("{n}", segment);
        }
        path.replace("{me}", &self.me)
            .replace("{x}", &self.me)
            .replace("{c}", &hex([0xc1; 16]))
            .replace("{g}", &hex([0x91; 16]))
            .replace("{o}", &hex([0x0b; 16]))
            .replace("{n}", "1")
    }
}

fn hex(bytes: impl AsRef<[u8]>) -> String {
    bytes.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

fn b64(bytes: &[u8]) -> String {
    data_encoding::BASE64URL_NOPAD.encode(bytes)
}

async fn call(
    router: &Router,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Value,
) -> (StatusCode, Value) {
    let mut b = Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", "application/json");
    if let Some(t) = token {
        b = b.header("authorization", format!("Bearer {t}"));
    }
    let mut req = b.body(Body::from(body.to_string())).expect("request");
    req.extensions_mut()
        .insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 40_001))));
    let response = router.clone().oneshot(req).await.expect("infallible");
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .expect("body");
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// A server over a sled store in `dir` with a small quota, one account (registered through
/// the API with a real keyring sealed at 10 KDF iterations), logged in, owning collection
/// `c1…` and group `91…`.
async fn start(dir: &std::path::Path) -> (Router, Fixture) {
    let backend = SledBackend::open(dir).expect("sled store");
    let decoy = api::load_decoy_key(&backend).expect("decoy key");
    let config = Config {
        limits: Limits {
            quota: 256 * 1024,
            ..Limits::default()
        },
        ..Config::default()
    };
    let state = AppState::new(
        backend,
        VerifierPolicy::insecure_test_policy(100),
        decoy,
        config,
    );
    let router = api::router(Arc::new(state));

    let mut rng = ChaCha20Rng::from_seed([0xa9; 32]);
    let keyring = Keyring::generate(&mut rng, &KeyringOptions::new()).expect("keyring");
    let params = insecure_test_params(&mut rng, 10);
    let keys = PasswordKeys::derive_with_policy(
        &Password::from("fuzz"),
        &params,
        &insecure_test_policy(10),
    )
    .expect("password keys");
    let (sealed, _) = SealedKeyring::seal(&mut rng, &keyring, &keys);
    let me = hex(keyring.id().as_bytes());
    let secret = b64(keys.login_secret().expose_bytes());
    let register = json!({
        "name": "fuzz",
        "user": me,
        "login_secret": secret,
        "keyring": b64(&sealed.to_bytes()),
        "identity": b64(&keyring.identity_bundle(&mut rng).to_bytes()),
    });
    let (status, body) = call(&router, Method::POST, "/v1/accounts", None, register).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = call(
        &router,
        Method::POST,
        "/v1/sessions",
        None,
        json!({"name": "fuzz", "login_secret": secret}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let token = body["token"].as_str().expect("token").to_owned();
    for path in [
        format!("/v1/collections/{}", hex([0xc1; 16])),
        format!("/v1/groups/{}", hex([0x91; 16])),
    ] {
        let (status, body) = call(&router, Method::PUT, &path, Some(&token), Value::Null).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    (router, Fixture { me, token })
}

/// Asserts the one error shape: `{"error": {"code": "<non-empty>", "message": "..."}}`.
fn assert_error_shape(status: StatusCode, bytes: &[u8]) {
    let v: Value =
        serde_json::from_slice(bytes).unwrap_or_else(|e| panic!("{status}: not JSON: {e}"));
    let code = v["error"]["code"].as_str().unwrap_or_default();
    assert!(!code.is_empty(), "{status}: no error code in {v}");
    assert!(
        v["error"]["message"].is_string(),
        "{status}: no message in {v}"
    );
}

struct State {
    runtime: tokio::runtime::Runtime,
    router: Router,
    fixture: Fixture,
    _dir: tempfile::TempDir,
}

fn state() -> &'static State {
    static STATE: OnceLock<State> = OnceLock::new();
    STATE.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let dir = tempfile::tempdir().expect("temporary directory");
        let (router, fixture) = runtime.block_on(start(dir.path()));
        State {
            runtime,
            router,
            fixture,
            _dir: dir,
        }
    })
}

fn request(s: &State, data: &[u8]) -> Option<Request<Body>> {
    let (&route, rest) = data.split_first()?;
    let (&flags, rest) = rest.split_first()?;
    let (&seg_len, rest) = rest.split_first()?;
    let seg_len = usize::from(seg_len).min(rest.len());
    let (segment, body) = rest.split_at(seg_len);
    let segment = String::from_utf8_lossy(segment);
    let (method, template) = ROUTES[usize::from(route) % ROUTES.len()];
    let path = s.fixture.fill(template, flags, &segment);
    let mut builder = Request::builder()
        .method(Method::from_bytes(method.as_bytes()).ok()?)
        .uri(path);
    match (flags >> 2) & 3 {
        0 => builder = builder.header("content-type", "application/octet-stream"),
        1 => builder = builder.header("content-type", "application/json"),
        2 => {}
        _ => builder = builder.header("content-type", "text/plain; charset=utf-8"),
    }
    if flags & 0x10 == 0 {
        builder = builder.header("authorization", format!("Bearer {}", s.fixture.token));
    }
    let mut req = builder.body(Body::from(body.to_vec())).ok()?;
    req.extensions_mut()
        .insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 40_000))));
    Some(req)
}

fuzz_target!(|data: &[u8]| {
    let s = state();
    let Some(req) = request(s, data) else {
        return;
    };
    let router = s.router.clone();
    s.runtime.block_on(async move {
        let response = router.oneshot(req).await.expect("infallible");
        let status = response.status();
        assert!(
            !status.is_server_error(),
            "a request got {status}: no input may give a 5xx"
        );
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 24)
            .await
            .expect("the answer is readable");
        if status.is_client_error() {
            assert_error_shape(status, &bytes);
        } else {
            assert!(
                status.is_success() || status == StatusCode::NOT_MODIFIED,
                "unexpected status {status}"
            );
        }
    });
});
