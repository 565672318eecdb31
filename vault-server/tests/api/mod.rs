//! The API test suite, shared by every backend: `tests/api_sled.rs` (and the PostgreSQL
//! runner) instantiate every test below with [`api_suite!`] and a function that makes a
//! fresh, empty backend. Each test gets its own server on 127.0.0.1:0 and talks to it
//! through real HTTP.
//!
//! Servers here use a fast login verifier (`danger-insecure-test-policy`), keyrings sealed
//! with a 10-iteration KDF (`danger-insecure-test-kdf`), small limits (so limit and quota
//! tests move little data) and a manual clock (so expiry and backoff tests never sleep).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod accounts;
pub mod audit;
pub mod authz;
pub mod changes;
pub mod data;
pub mod limits;
pub mod malformed;
pub mod mfa;
pub mod recovery;
pub mod robustness;
pub mod sharing;

use std::any::Any;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use data_encoding::{BASE64URL_NOPAD, HEXLOWER};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use reqwest::{Method, Response, StatusCode};
use serde_json::{json, Value};
use tokio::sync::oneshot;
use vault_keyring::danger::{insecure_test_params, insecure_test_policy};
use vault_keyring::{Keyring, KeyringOptions, Password, PasswordKeys, SealedKeyring};
use vault_server::api::{self, AppState, Clock};
use vault_server::auth::VerifierPolicy;
use vault_server::config::{Config, Limits};
use vault_server::store::Backend;

/// Instantiates every test of the suite for one backend. `$make` is an async function
/// returning `Some((backend, guard))`, or `None` when the backend is not available (after
/// printing why; the PostgreSQL runner); the guard (a temporary directory, a database
/// schema) lives as long as the test.
#[macro_export]
macro_rules! api_suite {
    ($make:path) => {
        $crate::api_suite!(@tests $make;
            accounts::full_account_flow,
            accounts::registration_checks,
            accounts::prelogin_decoys_look_like_real_answers,
            accounts::wrong_secret_and_unknown_name_answer_alike,
            accounts::login_backoff,
            accounts::refused_registrations_count_as_failures,
            accounts::expired_and_forged_tokens,
            accounts::keyring_compare_and_swap,
            accounts::password_change,
            accounts::identities_and_directory,
            accounts::account_deletion,
            data::collections_create_list_delete,
            data::pages_and_headers,
            data::manifest_compare_and_swap,
            data::manifest_writers_race,
            data::collection_keys_are_owner_only,
            limits::quotas,
            limits::body_limits,
            limits::request_timeout,
            robustness::concurrent_writers_and_readers,
            sharing::envelopes_grant_and_revoke_access,
            sharing::groups_rosters_and_membership,
            authz::authorization_matrix,
            changes::change_feed_cursor,
            changes::change_feed_visibility,
            malformed::malformed_requests_get_json_4xx,
            malformed::unknown_routes_and_methods,
            malformed::openapi_is_served,
            audit::audit_events_of_the_owner,
            audit::audit_records_account_and_sharing_events,
            mfa::totp_enrolment_login_and_replay,
            mfa::hotp_enrolment_and_counter,
            mfa::trusted_devices,
            mfa::sensitive_operations_need_elevation,
            mfa::ip_allowlist,
            recovery::recovery_with_the_code,
            recovery::recovery_failures_answer_alike_and_back_off,
            recovery::recovery_needs_the_second_factor,
            recovery::recovery_code_replaced,
        );
    };
    (@tests $make:path; $($module:ident :: $name:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                // `None`: the backend is not available here and the maker said why.
                let Some((backend, guard)) = $make().await else {
                    return;
                };
                let server = api::TestServer::start(backend, guard).await;
                api::$module::$name(&server).await;
                server.stop().await;
            }
        )+
    };
}

/// The test servers' clock starts here (Unix seconds).
pub const T0: u64 = 1_700_000_000;

/// The limits of test servers: small, so that limit and quota tests move little data.
pub fn test_config() -> Config {
    Config {
        limits: Limits {
            page: 64 * 1024 + 64,
            manifest: 128 * 1024,
            roster: 32 * 1024,
            quota: 1024 * 1024,
            request_timeout: Duration::from_secs(3),
            ..Limits::default()
        },
        ..Config::default()
    }
}

/// A server on 127.0.0.1 with a fresh backend, stopped when dropped.
pub struct TestServer {
    /// `http://127.0.0.1:port`.
    pub base: String,
    /// The client (no proxy).
    pub client: reqwest::Client,
    /// The server's clock.
    pub clock: Clock,
    /// The server's configuration.
    pub config: Config,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    _guard: Box<dyn Any + Send>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

impl TestServer {
    /// Starts a server over `backend`; `guard` is kept alive with it.
    pub async fn start<B: Backend>(backend: B, guard: impl Any + Send) -> Self {
        let config = test_config();
        let clock = Clock::manual(T0);
        // Backends block: set-up calls run in the blocking pool.
        let (backend, decoy) = tokio::task::spawn_blocking(move || {
            let decoy = api::load_decoy_key(&backend).unwrap();
            (backend, decoy)
        })
        .await
        .unwrap();
        let state = Arc::new(
            AppState::new(
                backend,
                VerifierPolicy::insecure_test_policy(1_000),
                decoy,
                config,
            )
            .with_clock(clock.clone()),
        );
        // With the sync client's feature on in the same build (the workspace test run), reqwest
        // uses rustls, which needs a process-wide crypto provider: ring, as everywhere.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(api::serve(listener, state, async {
            let _ = stopped.await;
        }));
        Self {
            base,
            client: reqwest::Client::builder().no_proxy().build().unwrap(),
            clock,
            config,
            stop: Some(stop),
            task: Some(task),
            _guard: Box::new(guard),
        }
    }

    /// Stops the server and waits until it has let go of the backend.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
    }

    /// The URL of `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A request with the session's token (if any).
    pub fn request(
        &self,
        method: Method,
        path: &str,
        session: Option<&Session>,
    ) -> reqwest::RequestBuilder {
        let r = self.client.request(method, self.url(path));
        match session {
            Some(s) => r.bearer_auth(&s.token),
            None => r,
        }
    }

    /// POST JSON without a session.
    pub async fn post_json(&self, path: &str, body: &Value) -> Response {
        self.client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .unwrap()
    }

    /// Registers `who` as `name`.
    pub async fn register(&self, who: &TestUser, name: &str) -> Response {
        self.post_json("/v1/accounts", &who.register_body(name))
            .await
    }

    /// Logs in with a login secret.
    pub async fn login_with(&self, name: &str, secret: &[u8; 32]) -> Response {
        self.post_json(
            "/v1/sessions",
            &json!({"name": name, "login_secret": b64(secret)}),
        )
        .await
    }

    /// Logs `who` in as `name`, asserting success.
    pub async fn login(&self, who: &TestUser, name: &str) -> Session {
        let r = self.login_with(name, &who.login_secret).await;
        assert_eq!(r.status(), StatusCode::CREATED);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["user"], json!(hex(&who.id)));
        Session {
            token: v["token"].as_str().unwrap().to_owned(),
            user: who.id,
        }
    }

    /// Registers and logs in test user number `index` as `name`.
    pub async fn signup(&self, index: usize, name: &str) -> Session {
        let who = user(index);
        let r = self.register(who, name).await;
        assert_eq!(
            r.status(),
            StatusCode::CREATED,
            "{}",
            r.text().await.unwrap()
        );
        self.login(who, name).await
    }

    /// GET with a session.
    pub async fn get(&self, s: &Session, path: &str) -> Response {
        self.request(Method::GET, path, Some(s))
            .send()
            .await
            .unwrap()
    }

    /// GET expecting 200; the body bytes.
    pub async fn get_bytes(&self, s: &Session, path: &str) -> Vec<u8> {
        let r = self.get(s, path).await;
        assert_eq!(r.status(), StatusCode::OK, "GET {path}");
        r.bytes().await.unwrap().to_vec()
    }

    /// GET expecting 200; the JSON body.
    pub async fn get_json(&self, s: &Session, path: &str) -> Value {
        let r = self.get(s, path).await;
        assert_eq!(r.status(), StatusCode::OK, "GET {path}");
        r.json().await.unwrap()
    }

    /// PUT an opaque blob.
    pub async fn put(&self, s: &Session, path: &str, bytes: &[u8]) -> Response {
        self.request(Method::PUT, path, Some(s))
            .header("content-type", "application/octet-stream")
            .body(bytes.to_vec())
            .send()
            .await
            .unwrap()
    }

    /// PUT without a body (scope creation).
    pub async fn put_empty(&self, s: &Session, path: &str) -> Response {
        self.request(Method::PUT, path, Some(s))
            .send()
            .await
            .unwrap()
    }

    /// DELETE.
    pub async fn delete(&self, s: &Session, path: &str) -> Response {
        self.request(Method::DELETE, path, Some(s))
            .send()
            .await
            .unwrap()
    }
}

/// A logged-in client.
#[derive(Clone, Debug)]
pub struct Session {
    /// The bearer token.
    pub token: String,
    /// The user id.
    pub user: [u8; 16],
}

impl Session {
    /// The user id in hex.
    pub fn id(&self) -> String {
        hex(&self.user)
    }
}

/// A user with a real keyring (sealed with a fast test KDF) and its identity bundle.
pub struct TestUser {
    /// The keyring id = the user id.
    pub id: [u8; 16],
    /// The sealed keyring.
    pub sealed: Vec<u8>,
    /// The same keyring sealed again under the same password and KDF parameters (a key
    /// rotation would look like this): another blob of the same user.
    pub resealed: Vec<u8>,
    /// The same keyring sealed under a new password with new KDF parameters (a password
    /// change), and that password's login secret.
    pub new_password: (Vec<u8>, [u8; 32]),
    /// The identity bundle.
    pub identity: Vec<u8>,
    /// The identity bundle signed again (same keys, new signature).
    pub identity_resigned: Vec<u8>,
    /// The login secret of the password `sealed` is under.
    pub login_secret: [u8; 32],
    /// The client-KDF salt and count in `sealed`.
    pub kdf_salt: [u8; 16],
    /// The client-KDF count in `sealed`.
    pub kdf_iterations: u32,
    /// The password `sealed` is under.
    pub password: String,
    /// The recovery code of `sealed`, as the user writes it down.
    pub recovery_code: String,
    /// Its recovery login secret (keyring.md §5.1).
    pub recovery_secret: [u8; 32],
}

impl TestUser {
    /// The registration body for `name`.
    pub fn register_body(&self, name: &str) -> Value {
        json!({
            "name": name,
            "user": hex(&self.id),
            "login_secret": b64(&self.login_secret),
            "keyring": b64(&self.sealed),
            "identity": b64(&self.identity),
        })
    }
}

const POOL: usize = 5;

fn make_user(seed: u64) -> TestUser {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let keyring = Keyring::generate(&mut rng, &KeyringOptions::new()).unwrap();
    let policy = insecure_test_policy(10);
    let password = Password::from(format!("password number {seed}").as_str());
    let params = insecure_test_params(&mut rng, 10);
    let keys = PasswordKeys::derive_with_policy(&password, &params, &policy).unwrap();
    let (sealed, code) = SealedKeyring::seal(&mut rng, &keyring, &keys);
    let (resealed, _) = SealedKeyring::seal(&mut rng, &keyring, &keys);
    let params2 = insecure_test_params(&mut rng, 10);
    let password2 = Password::from(format!("new password number {seed}").as_str());
    let keys2 = PasswordKeys::derive_with_policy(&password2, &params2, &policy).unwrap();
    let (sealed2, _) = SealedKeyring::seal(&mut rng, &keyring, &keys2);
    TestUser {
        id: *keyring.id().as_bytes(),
        sealed: sealed.to_bytes(),
        resealed: resealed.to_bytes(),
        new_password: (sealed2.to_bytes(), *keys2.login_secret().expose_bytes()),
        identity: keyring.identity_bundle(&mut rng).to_bytes(),
        identity_resigned: keyring.identity_bundle(&mut rng).to_bytes(),
        login_secret: *keys.login_secret().expose_bytes(),
        kdf_salt: *params.salt(),
        kdf_iterations: params.iterations(),
        password: format!("password number {seed}"),
        recovery_code: code.expose_formatted().to_string(),
        recovery_secret: *code.recovery_secret().expose_bytes(),
    }
}

/// Test user `index` (0..5), made once per test binary (RSA key generation is the slow
/// part, so the users are made in parallel and shared by every test).
pub fn user(index: usize) -> &'static TestUser {
    static USERS: OnceLock<Vec<TestUser>> = OnceLock::new();
    let users = USERS.get_or_init(|| {
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..POOL)
                .map(|i| s.spawn(move || make_user(1000 + i as u64)))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        })
    });
    &users[index]
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    HEXLOWER.encode(bytes)
}

/// Base64url without padding.
pub fn b64(bytes: &[u8]) -> String {
    BASE64URL_NOPAD.encode(bytes)
}

/// Decodes base64url without padding.
pub fn unb64(s: &str) -> Vec<u8> {
    BASE64URL_NOPAD.decode(s.as_bytes()).unwrap()
}

/// A fixed id from a byte.
pub fn id(byte: u8) -> String {
    hex(&[byte; 16])
}

/// Asserts that `r` is an error in the one shape with `status` and `code`; the error object.
pub async fn expect_error(r: Response, status: StatusCode, code: &str) -> Value {
    let got = r.status();
    let body = error_object(r).await;
    assert_eq!(got, status, "{body}");
    assert_eq!(body["code"], json!(code), "{body}");
    body
}

/// Asserts that `r` has the error shape (any status); the error object.
pub async fn error_object(r: Response) -> Value {
    let status = r.status();
    let content_type = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned());
    let text = r.text().await.unwrap();
    assert_eq!(
        content_type.as_deref(),
        Some("application/json"),
        "{status}: {text}"
    );
    let v: Value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"));
    let obj = v.as_object().unwrap();
    assert_eq!(obj.len(), 1, "{text}");
    let error = &v["error"];
    let code = error["code"].as_str().unwrap();
    assert!(
        !code.is_empty() && code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
        "{text}"
    );
    assert!(error["message"].is_string(), "{text}");
    for key in error.as_object().unwrap().keys() {
        assert!(
            ["code", "message", "current"].contains(&key.as_str()),
            "{text}"
        );
    }
    error.clone()
}

/// The `Vault-Version` header of a response.
pub fn version_of(r: &Response) -> u64 {
    r.headers()
        .get("vault-version")
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

/// Paths of a collection's parts.
pub fn page_path(c: &str, o: &str, v: u64, i: u32) -> String {
    format!("/v1/collections/{c}/objects/{o}/versions/{v}/pages/{i}")
}

/// The path of an object version (its header).
pub fn object_path(c: &str, o: &str, v: u64) -> String {
    format!("/v1/collections/{c}/objects/{o}/versions/{v}")
}

/// The path of an envelope.
pub fn envelope_path(recipient: &str, owner: &str, target: &str, epoch: u32) -> String {
    format!("/v1/envelopes/{recipient}/{owner}/{target}/{epoch}")
}

/// The changes visible to `s` after `after` (one page of up to 1000).
pub async fn changes(server: &TestServer, s: &Session, after: u64) -> Value {
    server
        .get_json(s, &format!("/v1/changes?after={after}&limit=1000"))
        .await
}
