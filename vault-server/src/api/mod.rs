//! The HTTP API (issue #5; docs/spec/api.md): axum routes under `/v1` over any storage
//! [`Backend`], with the OpenAPI document generated from the same handlers.
//!
//! - [`router`] builds the routes for a shared [`AppState`]; [`serve`] runs them on a
//!   listener until a shutdown signal, with a background sweep of expired sessions.
//! - Every failure is an [`ApiError`], answered as `{"error": {"code", "message"}}` with one
//!   status per code ([`error`]); extractor rejections, unknown routes, wrong methods,
//!   time-outs and panics included.
//! - Backends are synchronous: every call runs in `tokio::task::spawn_blocking`, except
//!   the session check of the `Auth` extractor when the backend can answer it from memory
//!   (`SessionStore::authenticate_without_io`; the sled backend's session mirror).
//! - Routes are registered only through [`routes!`](crate::api) (a thin copy of
//!   `utoipa_axum::routes!` that accepts generic handlers), which takes the route and its
//!   OpenAPI entry from the same `#[utoipa::path]` attribute: a route cannot exist without
//!   its documentation.
//!
//! ```no_run
//! use std::sync::Arc;
//! use vault_server::api::{self, AppState};
//! use vault_server::auth::VerifierPolicy;
//! use vault_server::config::Config;
//! use vault_server::store::SledBackend;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let backend = SledBackend::open("vault-data")?;
//! let decoy = api::load_decoy_key(&backend)?;
//! let policy = VerifierPolicy::calibrate(vault_server::auth::verifier::DEFAULT_TARGET);
//! let state = Arc::new(AppState::new(backend, policy, decoy, Config::default()));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! api::serve(listener, state, async { let _ = tokio::signal::ctrl_c().await; }).await?;
//! # Ok(()) }
//! ```

mod accounts;
mod audit;
mod changes;
mod collections;
pub mod error;
mod extract;
mod mfa;
mod recovery;
mod sharing;
mod validate;

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request};
use axum::http::header::CACHE_CONTROL;
use axum::http::HeaderValue;
use axum::middleware::{from_fn, Next};
use axum::response::{IntoResponse, Response};
use axum::serve::ListenerExt;
use axum::{Extension, Router};
use rand_core::{OsRng, RngCore};
use tower_http::catch_panic::CatchPanicLayer;
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi as OpenApiDoc, Ref, RefOr, ResponseBuilder};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use zeroize::Zeroizing;

use crate::auth::{Backoff, BackoffPolicy, DecoyKey, VerifierPolicy};
use crate::config::Config;
use crate::store::{Backend, BackendError};

pub use error::{ApiError, ErrorBody, ErrorObject};
pub use extract::{Base64Url, Counter, HexId, MAX_COUNTER, VERSION_HEADER};
pub use validate::{normalize_name, MAX_NAME_LEN};

/// The key of the decoy key in the backend's shared settings
/// ([`Backend::setting_or_insert`]).
pub const DECOY_KEY_SETTING: &str = "decoy-key";

/// The time source of the API, in Unix seconds: the system clock, or a manual clock that
/// tests and simulations move forward (session expiry, backoff).
#[derive(Clone, Debug, Default)]
pub struct Clock {
    manual: Option<Arc<AtomicU64>>,
}

impl Clock {
    /// The system clock.
    pub fn system() -> Self {
        Self { manual: None }
    }

    /// A clock that stands at `start` until [`Clock::advance`] moves it.
    pub fn manual(start: u64) -> Self {
        Self {
            manual: Some(Arc::new(AtomicU64::new(start))),
        }
    }

    /// The current time in Unix seconds.
    pub fn now(&self) -> u64 {
        match &self.manual {
            Some(t) => t.load(Ordering::SeqCst),
            None => crate::auth::unix_now(),
        }
    }

    /// Moves a manual clock forward by `secs` (no effect on the system clock).
    pub fn advance(&self, secs: u64) {
        if let Some(t) = &self.manual {
            t.fetch_add(secs, Ordering::SeqCst);
        }
    }
}

/// What every request handler shares: the backend, the login policy and decoy key, the
/// failed-login backoff, the configuration and the clock.
pub struct AppState<B> {
    backend: Arc<B>,
    policy: VerifierPolicy,
    decoy: DecoyKey,
    backoff: Backoff,
    config: Config,
    clock: Clock,
    mfa_key: crate::auth::mfa::MfaKey,
}

impl<B: Backend> AppState<B> {
    /// The state of a server over `backend`, creating verifiers with `policy` (calibrated
    /// or pinned at start-up), answering pre-logins of unknown names with `decoy`
    /// ([`load_decoy_key`]), with the default backoff and the system clock.
    pub fn new(backend: B, policy: VerifierPolicy, decoy: DecoyKey, config: Config) -> Self {
        Self {
            backend: Arc::new(backend),
            policy,
            decoy,
            backoff: Backoff::default(),
            config,
            clock: Clock::system(),
            mfa_key: crate::auth::mfa::MfaKey::random(&mut OsRng),
        }
    }

    /// The same state with the server's MFA key (docs/spec/mfa.md §3; the binary reads it
    /// from its key file). Without it, a random key of this process seals MFA records, so
    /// they do not open after a restart.
    pub fn with_mfa_key(mut self, key: crate::auth::mfa::MfaKey) -> Self {
        self.mfa_key = key;
        self
    }

    /// The same state with another clock.
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// The same state with another backoff policy.
    pub fn with_backoff(mut self, policy: BackoffPolicy) -> Self {
        self.backoff = Backoff::new(policy);
        self
    }

    /// The backend.
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The verifier policy.
    pub fn policy(&self) -> &VerifierPolicy {
        &self.policy
    }

    /// The clock.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// Appends `event` to the audit log (docs/spec/audit.md), stamped with the clock's
    /// time. The append starts in the blocking pool *now*, so it happens even if the
    /// request is abandoned before the returned future is awaited; awaiting it waits until
    /// the entry is durable, so the answer follows its event. It never fails the request:
    /// the handlers record an event after what it reports was committed, so a failed append
    /// is logged as an error (target `vault_server::audit`) and the request goes on.
    pub fn audit(&self, event: crate::audit::Event) -> impl Future<Output = ()> + Send + 'static {
        let backend = Arc::clone(&self.backend);
        let time = self.clock.now();
        let task =
            tokio::task::spawn_blocking(move || crate::audit::record(&*backend, time, &event));
        async move {
            if task.await.is_err() {
                tracing::error!(
                    target: "vault_server::audit",
                    "the audit append task failed (the event may be lost)"
                );
            }
        }
    }

    /// Removes expired sessions and forgotten backoff entries; how many sessions. Blocking:
    /// call it from `spawn_blocking` (as [`serve`] does).
    pub fn sweep(&self) -> Result<usize, BackendError> {
        let now = self.clock.now();
        self.backoff.sweep(now);
        self.backend.sweep(now)
    }
}

/// The decoy key of login.md §7, shared by every node of a deployment: the one stored in
/// the backend's settings, or a fresh random key stored now. Call it once at start-up;
/// it blocks (call it from `spawn_blocking` inside an async runtime).
pub fn load_decoy_key<B: Backend>(backend: &B) -> Result<DecoyKey, BackendError> {
    let mut fresh = Zeroizing::new([0u8; 32]);
    OsRng.fill_bytes(&mut fresh[..]);
    let stored = Zeroizing::new(backend.setting_or_insert(DECOY_KEY_SETTING, &fresh[..])?);
    let bytes: [u8; 32] = stored
        .as_slice()
        .try_into()
        .map_err(|_| BackendError::new("the stored decoy key is not 32 bytes"))?;
    Ok(DecoyKey::from_bytes(bytes))
}

/// Runs `f` on the backend in the blocking thread pool. A backend error becomes
/// `503 unavailable` (logged); a panic in `f` becomes `500 internal` (logged).
pub(crate) async fn blocking<B: Backend, T: Send + 'static>(
    state: &Arc<AppState<B>>,
    f: impl FnOnce(&B) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let backend = Arc::clone(&state.backend);
    match tokio::task::spawn_blocking(move || f(&backend)).await {
        Ok(result) => result,
        Err(e) => {
            tracing::error!(target: "vault_server", panicked = e.is_panic(), "backend task failed");
            Err(ApiError::Internal)
        }
    }
}

/// Registers handlers, each with its `#[utoipa::path]` entry: like `utoipa_axum::routes!`,
/// for handlers generic over the backend (`$b`). All handlers of one call share a path.
macro_rules! routes {
    ($b:ident: $($module:ident :: $handler:ident),+ $(,)?) => {{
        #[allow(unused_imports)]
        use utoipa::{Path as _, __dev::{SchemaReferences as _, Tags as _}};
        use utoipa_axum::PathItemExt as _;
        let mut paths = utoipa::openapi::path::Paths::new();
        let mut schemas =
            Vec::<(String, utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>)>::new();
        let mut router = axum::routing::MethodRouter::new();
        $(
            utoipa_axum::paste! {
                let path = $module::[<__path_ $handler>]::path();
                let mut operation = $module::[<__path_ $handler>]::operation();
                let methods = $module::[<__path_ $handler>]::methods();
                let tags = $module::[<__path_ $handler>]::tags();
                $module::[<__path_ $handler>]::schemas(&mut schemas);
            }
            if !tags.is_empty() {
                operation
                    .tags
                    .get_or_insert_with(Vec::new)
                    .extend(tags.iter().map(ToString::to_string));
            }
            for method in methods.iter() {
                router = router.on(method.to_method_filter(), $module::$handler::<$b>);
            }
            paths.add_path_operation(&path, methods, operation);
        )+
        (schemas, paths, router)
    }};
}

/// The document's fixed parts; the paths come from the handlers.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "vault-server",
        version = "1",
        description = "The thin server of the end-to-end encrypted vault: it stores opaque \
            bytes (sealed pages, headers, manifests, keyrings, envelopes, rosters) and never \
            holds a key that opens them. See docs/spec/api.md.",
        license(name = "MIT OR Apache-2.0")
    ),
    components(schemas(HexId, Counter, ErrorBody)),
    tags(
        (name = "meta", description = "The API document"),
        (name = "accounts", description = "Registration, login, sessions, the account, its keyring"),
        (name = "identities", description = "Public identity bundles and the name directory"),
        (name = "collections", description = "Collections: pages, object headers, keys, manifests"),
        (name = "groups", description = "Groups and their roster versions"),
        (name = "envelopes", description = "Key envelopes"),
        (name = "changes", description = "The change feed"),
        (name = "mfa", description = "Second factors, backup codes, trusted devices, elevations, the IP allow-list"),
        (name = "recovery", description = "Account recovery with the recovery code when the password is lost")
    )
)]
struct ApiDoc;

/// Every route of the API with its documentation, before the fixed layers.
fn api_routes<B: Backend>() -> OpenApiRouter<Arc<AppState<B>>> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(B: accounts::get_openapi))
        .routes(routes!(B: accounts::register))
        .routes(routes!(B: accounts::prelogin))
        .routes(routes!(B: accounts::login, accounts::revoke_all))
        .routes(routes!(B: accounts::logout))
        .routes(routes!(B: accounts::get_account, accounts::delete_account))
        .routes(routes!(B: accounts::get_keyring, accounts::put_keyring))
        .routes(routes!(B: accounts::change_password))
        .routes(routes!(B: accounts::lookup_user))
        .routes(routes!(B: accounts::get_identity, accounts::put_identity))
        .routes(routes!(B: collections::list_scopes))
        .routes(routes!(
            B: collections::create_collection,
            collections::delete_collection
        ))
        .routes(routes!(B: collections::put_page, collections::get_page))
        .routes(routes!(
            B: collections::put_header,
            collections::get_header,
            collections::delete_object
        ))
        .routes(routes!(B: collections::put_key, collections::get_key))
        .routes(routes!(
            B: collections::get_manifest,
            collections::put_manifest
        ))
        .routes(routes!(B: sharing::create_group, sharing::delete_group))
        .routes(routes!(B: sharing::list_rosters))
        .routes(routes!(B: sharing::put_roster, sharing::get_roster))
        .routes(routes!(
            B: sharing::put_envelope,
            sharing::get_envelope,
            sharing::delete_envelope
        ))
        .routes(routes!(B: sharing::list_envelopes))
        .routes(routes!(B: changes::changes))
        .routes(routes!(B: audit::account_audit))
        .routes(routes!(B: mfa::get_mfa, mfa::disable))
        .routes(routes!(B: mfa::enrol))
        .routes(routes!(B: mfa::confirm))
        .routes(routes!(B: mfa::regenerate_backup_codes))
        .routes(routes!(B: mfa::elevate))
        .routes(routes!(B: mfa::revoke_device))
        .routes(routes!(B: mfa::put_allowlist))
        .routes(routes!(B: recovery::recovery_keyring))
        .routes(routes!(B: recovery::recover))
        .routes(routes!(B: recovery::set_recovery))
}

/// The OpenAPI document of the API, as served at `GET /v1/openapi.json` and committed as
/// `docs/api/openapi.json`. It does not depend on the backend type; any implementation
/// gives the same document.
pub fn openapi<B: Backend>() -> OpenApiDoc {
    let (_, doc) = api_routes::<B>().split_for_parts();
    complete(doc)
}

/// The document as pretty JSON, in the stable order of the committed copy.
pub fn openapi_json<B: Backend>() -> String {
    document_text(&openapi::<B>())
}

fn document_text(doc: &OpenApiDoc) -> String {
    // Serialising a document of strings and maps cannot fail; "{}" keeps the route total.
    let mut json = serde_json::to_string_pretty(doc).unwrap_or_else(|_| String::from("{}"));
    json.push('\n');
    json
}

/// Adds what every operation shares: the bearer security scheme, and the error answers any
/// operation can give (401 where a session is required; 408, 500 and 503 everywhere).
fn complete(mut doc: OpenApiDoc) -> OpenApiDoc {
    let components = doc.components.get_or_insert_with(Default::default);
    components.security_schemes.insert(
        "session".to_owned(),
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .description(Some(
                    "The session token from POST /v1/sessions (43 base64url characters).",
                ))
                .build(),
        ),
    );
    let error = |description: &str| -> RefOr<utoipa::openapi::Response> {
        ResponseBuilder::new()
            .description(description)
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("ErrorBody")))
                    .build(),
            )
            .into()
    };
    let add = |op: &mut Operation| {
        let secured = op.security.as_ref().is_some_and(|s| !s.is_empty());
        let responses = &mut op.responses.responses;
        if secured {
            responses
                .entry("401".to_owned())
                .or_insert_with(|| error("unauthenticated: no valid session token"));
        }
        responses
            .entry("408".to_owned())
            .or_insert_with(|| error("request_timeout"));
        responses
            .entry("500".to_owned())
            .or_insert_with(|| error("internal: a bug caught by the safety net"));
        responses
            .entry("503".to_owned())
            .or_insert_with(|| error("unavailable: the storage backend failed"));
    };
    for item in doc.paths.paths.values_mut() {
        for op in [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
            &mut item.head,
            &mut item.options,
            &mut item.trace,
        ]
        .into_iter()
        .flatten()
        {
            add(op);
        }
    }
    doc
}

/// The served copy of the document.
#[derive(Clone)]
pub(crate) struct OpenApiText(pub(crate) Arc<str>);

/// The router of the whole API over `state`: every route, the fallbacks for unknown paths
/// (`404 not_found`) and methods (`405 method_not_allowed`), the request time-out
/// (`408 request_timeout`), the panic safety net (`500 internal`) and a request log that
/// names the route template, the status and the duration (never ids, tokens or bodies).
pub fn router<B: Backend>(state: Arc<AppState<B>>) -> Router {
    let (routes, doc) = api_routes::<B>().split_for_parts();
    let text = document_text(&complete(doc));
    let timeout = state.config.limits.request_timeout;
    with_layers(
        routes.layer(Extension(OpenApiText(Arc::from(text)))),
        timeout,
    )
    .with_state(state)
}

/// The fallbacks and layers every route gets (innermost first).
fn with_layers<S: Clone + Send + Sync + 'static>(
    routes: Router<S>,
    timeout: Duration,
) -> Router<S> {
    routes
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        .layer(from_fn(move |req: Request, next: Next| {
            enforce_timeout(timeout, req, next)
        }))
        .layer(from_fn(error::normalize_errors))
        .layer(CatchPanicLayer::custom(error::panic_response))
        .layer(from_fn(log_requests))
}

async fn enforce_timeout(limit: Duration, req: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(response) => response,
        Err(_) => ApiError::RequestTimeout.into_response(),
    }
}

async fn log_requests(req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned());
    let start = Instant::now();
    let mut response = next.run(req).await;
    // Nothing the API answers may be kept by a cache on the way.
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    tracing::debug!(
        target: "vault_server::http",
        %method,
        route = route.as_deref().unwrap_or("(none)"),
        status = response.status().as_u16(),
        micros = u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX),
        "request"
    );
    response
}

/// Serves the API on `listener` until `shutdown` completes, then stops accepting and waits
/// for the requests in flight (bound the wait from outside, as the binary does). Sweeps
/// expired sessions every [`Config::sweep_interval`] meanwhile. Client addresses (for the
/// backoff) come from the connections.
pub async fn serve<B: Backend>(
    listener: tokio::net::TcpListener,
    state: Arc<AppState<B>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = router(Arc::clone(&state));
    let listener = listener.tap_io(|tcp| {
        // Small answers go out at once; a failure only costs latency.
        let _ = tcp.set_nodelay(true);
    });
    crate::transport::serve_api(listener, app, state, shutdown).await
}

pub(crate) async fn sweep_periodically<B: Backend>(state: Arc<AppState<B>>) {
    let period = state.config.sweep_interval.max(Duration::from_secs(1));
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    loop {
        ticks.tick().await;
        let s = Arc::clone(&state);
        match tokio::task::spawn_blocking(move || s.sweep()).await {
            Ok(Ok(n)) => {
                tracing::debug!(target: "vault_server", swept = n, "expired sessions swept")
            }
            Ok(Err(e)) => {
                tracing::warn!(target: "vault_server", error = %e, "session sweep failed")
            }
            Err(_) => tracing::warn!(target: "vault_server", "session sweep task failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use axum::http::StatusCode;
    use axum::routing::get;

    use super::*;

    /// The safety nets, on routes that misbehave as no real route should: a panic becomes
    /// `500 internal`, a slow handler `408 request_timeout`, a bare status the error shape.
    #[tokio::test]
    async fn safety_nets_answer_in_the_error_shape() {
        let routes: Router = Router::new()
            .route(
                "/panic",
                get(|| async {
                    if std::hint::black_box(true) {
                        panic!("a bug");
                    }
                    StatusCode::OK
                }),
            )
            .route(
                "/slow",
                get(|| async {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    StatusCode::OK
                }),
            )
            .route("/bare", get(|| async { StatusCode::IM_A_TEAPOT }))
            .route(
                "/unavailable",
                get(|| async { StatusCode::SERVICE_UNAVAILABLE }),
            );
        let app = with_layers(routes, Duration::from_millis(200));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        // With the sync client's feature on in the same build (the workspace test run), reqwest
        // uses rustls, which needs a process-wide crypto provider: ring, as everywhere.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder().no_proxy().build().unwrap();
        for (path, status, code) in [
            ("/panic", 500, "internal"),
            ("/slow", 408, "request_timeout"),
            ("/bare", 400, "bad_request"),
            ("/unavailable", 503, "unavailable"),
            ("/nowhere", 404, "not_found"),
        ] {
            let r = client.get(format!("{base}{path}")).send().await.unwrap();
            assert_eq!(r.status().as_u16(), status, "{path}");
            assert_eq!(r.headers()["cache-control"], "no-store");
            let v: serde_json::Value = r.json().await.unwrap();
            assert_eq!(v["error"]["code"], code, "{path}");
            assert!(v["error"]["message"].is_string());
        }
        let r = client.post(format!("{base}/panic")).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 405);
    }

    /// `serve` sweeps expired sessions in the background.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn serve_sweeps_expired_sessions() {
        use crate::auth::SessionStore;
        let dir = tempfile::tempdir().unwrap();
        let backend = crate::store::SledBackend::open(dir.path()).unwrap();
        let clock = Clock::manual(1_000);
        let config = Config {
            sweep_interval: Duration::from_secs(1),
            ..Config::default()
        };
        let (expired, valid) = (
            backend.issue(&mut OsRng, [1; 16], 1_000, 10).unwrap(),
            backend.issue(&mut OsRng, [1; 16], 1_000, 1_000).unwrap(),
        );
        let state = Arc::new(
            AppState::new(
                backend,
                VerifierPolicy::insecure_test_policy(1),
                DecoyKey::from_bytes([0; 32]),
                config,
            )
            .with_clock(clock.clone()),
        );
        clock.advance(100);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(listener, Arc::clone(&state), async {
            let _ = stopped.await;
        }));
        let hash = expired.hash();
        let mut swept = false;
        for _ in 0..40 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let s = Arc::clone(&state);
            let gone =
                tokio::task::spawn_blocking(move || s.backend().get(&hash).unwrap().is_none())
                    .await
                    .unwrap();
            if gone {
                swept = true;
                break;
            }
        }
        assert!(swept, "the expired session was not swept");
        let s = Arc::clone(&state);
        let kept = tokio::task::spawn_blocking(move || s.backend().get(&valid.hash()).unwrap())
            .await
            .unwrap();
        assert!(kept.is_some());
        let _ = stop.send(());
        server.await.unwrap().unwrap();
    }
}
