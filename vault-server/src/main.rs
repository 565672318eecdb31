//! The `vault-server` binary: the HTTP API (docs/spec/api.md) over a sled data directory, or
//! over PostgreSQL when given a database URL (the `postgres` feature, on by default).
//!
//! ```text
//! cargo run --release -p vault-server -- --data-dir ./vault-data
//! cargo run --release -p vault-server -- --database-url postgres://…
//! ```
//!
//! Start-up: open and check the store (a damaged one is refused, exit code 1), calibrate the
//! login verifier (or take `--iterations`), load the shared decoy key, bind, serve. SIGTERM
//! or Ctrl-C stops accepting, lets requests in flight finish (bounded by
//! `--shutdown-grace-secs`) and exits 0. Logs go to standard error, filtered by `RUST_LOG`
//! (default `info`); they never contain tokens, secrets or stored bytes.

#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use tracing_subscriber::EnvFilter;
use vault_server::api::{self, AppState};
use vault_server::auth::VerifierPolicy;
use vault_server::config::{Config, Limits, DEFAULT_DECOY_KDF_ITERATIONS};
use vault_server::store::{Backend, SledBackend};

/// The thin server of the end-to-end encrypted vault: stores opaque bytes, never a key.
#[derive(Parser, Debug)]
#[command(name = "vault-server", version, about)]
struct Args {
    /// The sled data directory (the embedded default store); created if missing.
    #[arg(long, value_name = "DIR", default_value = "./vault-data")]
    data_dir: PathBuf,

    /// A PostgreSQL URL: use PostgreSQL instead of sled (the `postgres` feature, on by
    /// default).
    #[arg(
        long,
        value_name = "URL",
        env = "VAULT_DATABASE_URL",
        hide_env_values = true
    )]
    database_url: Option<String>,

    /// The PostgreSQL schema of the tables (default `public`; created if missing).
    #[arg(long, value_name = "NAME")]
    database_schema: Option<String>,

    /// The most PostgreSQL connections this node opens.
    #[arg(long, value_name = "N", default_value_t = 16)]
    database_pool_size: u32,

    /// The address to listen on.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,

    /// Allow listening on a non-loopback address over plain HTTP (TLS is not built in yet:
    /// put a TLS-terminating proxy in front).
    #[arg(long)]
    allow_plain_http_on_public_address: bool,

    /// The time one login verification should take on this machine, in milliseconds
    /// (the calibration target).
    #[arg(long, value_name = "MS", default_value_t = 100)]
    login_target_ms: u64,

    /// Pin the login verifier's PBKDF2 iteration count instead of calibrating (100,000 to
    /// 10,000,000). Recommended for deployments of several nodes (docs/spec/login.md §4).
    #[arg(long, value_name = "N")]
    iterations: Option<u32>,

    /// The client-KDF iteration count answered for unknown login names.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_DECOY_KDF_ITERATIONS)]
    decoy_kdf_iterations: u32,

    /// The lifetime of a session, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = Config::default().session_ttl)]
    session_ttl_secs: u64,

    /// The storage quota of each account, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = Limits::default().quota)]
    quota_bytes: u64,

    /// The largest JSON request body, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = Limits::default().json_body)]
    max_json_bytes: usize,

    /// The largest sealed page, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = Limits::default().page)]
    max_page_bytes: usize,

    /// The largest object header, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = Limits::default().header)]
    max_header_bytes: usize,

    /// The largest wrapped collection key, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = Limits::default().collection_key)]
    max_collection_key_bytes: usize,

    /// The largest envelope, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = Limits::default().envelope)]
    max_envelope_bytes: usize,

    /// The largest identity bundle, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = Limits::default().identity)]
    max_identity_bytes: usize,

    /// The largest sealed keyring, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = Limits::default().keyring)]
    max_keyring_bytes: usize,

    /// The largest roster version, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = Limits::default().roster)]
    max_roster_bytes: usize,

    /// The largest manifest, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = Limits::default().manifest)]
    max_manifest_bytes: usize,

    /// The longest a request may take, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    request_timeout_secs: u64,

    /// How long shutdown waits for requests in flight, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    shutdown_grace_secs: u64,
}

impl Args {
    fn config(&self) -> Result<Config, String> {
        if self.request_timeout_secs == 0 {
            return Err("--request-timeout-secs must be at least 1".into());
        }
        if self.session_ttl_secs == 0 {
            return Err("--session-ttl-secs must be at least 1".into());
        }
        Ok(Config {
            limits: Limits {
                json_body: self.max_json_bytes,
                page: self.max_page_bytes,
                header: self.max_header_bytes,
                collection_key: self.max_collection_key_bytes,
                envelope: self.max_envelope_bytes,
                identity: self.max_identity_bytes,
                keyring: self.max_keyring_bytes,
                roster: self.max_roster_bytes,
                manifest: self.max_manifest_bytes,
                quota: self.quota_bytes,
                request_timeout: Duration::from_secs(self.request_timeout_secs),
            },
            decoy_kdf_iterations: self.decoy_kdf_iterations,
            session_ttl: self.session_ttl_secs,
            ..Config::default()
        })
    }

    fn policy(&self) -> Result<VerifierPolicy, String> {
        match self.iterations {
            Some(n) => {
                let policy = VerifierPolicy::with_iterations(n)
                    .map_err(|e| format!("--iterations {n}: {e}"))?;
                tracing::info!(iterations = n, "login verifier iteration count pinned");
                Ok(policy)
            }
            None => {
                let target = Duration::from_millis(self.login_target_ms.max(1));
                let policy = VerifierPolicy::calibrate(target);
                tracing::info!(
                    iterations = policy.iterations(),
                    target_ms = self.login_target_ms,
                    "login verifier calibrated"
                );
                Ok(policy)
            }
        }
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            tracing::error!("{message}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<(), String> {
    if !args.listen.ip().is_loopback() {
        if !args.allow_plain_http_on_public_address {
            return Err(format!(
                "refusing to listen on {} over plain HTTP: TLS is not built in yet. Listen on \
                 loopback behind a TLS-terminating proxy, or pass \
                 --allow-plain-http-on-public-address",
                args.listen
            ));
        }
        tracing::warn!(
            listen = %args.listen,
            "serving plain HTTP on a non-loopback address: tokens and login secrets cross the network unencrypted unless a TLS proxy is in front"
        );
    }
    let config = args.config()?;
    match args.database_url.clone() {
        Some(url) => run_postgres(&args, &url, config),
        None => {
            let backend = SledBackend::open(&args.data_dir).map_err(|e| {
                format!(
                    "cannot open the data directory {}: {e}",
                    args.data_dir.display()
                )
            })?;
            tracing::info!(data_dir = %args.data_dir.display(), "sled store opened");
            run_with(backend, &args, config)
        }
    }
}

#[cfg(feature = "postgres")]
fn run_postgres(args: &Args, url: &str, config: Config) -> Result<(), String> {
    let backend = vault_server::store::PgBackend::connect(
        url,
        args.database_schema.as_deref(),
        args.database_pool_size,
    )
    .map_err(|e| format!("cannot open the PostgreSQL database: {e}"))?;
    tracing::info!(schema = backend.schema(), "PostgreSQL store opened");
    run_with(backend, args, config)
}

#[cfg(not(feature = "postgres"))]
fn run_postgres(args: &Args, _: &str, _: Config) -> Result<(), String> {
    let _ = (&args.database_schema, args.database_pool_size);
    Err(
        "a database URL was given (--database-url or VAULT_DATABASE_URL), but this build has no \
         PostgreSQL support: rebuild with `--features postgres`, or unset it to use the sled \
         data directory"
            .into(),
    )
}

fn run_with<B: Backend>(backend: B, args: &Args, config: Config) -> Result<(), String> {
    backend
        .check()
        .map_err(|e| format!("the store failed its start-up check: {e}"))?;
    let policy = args.policy()?;
    let decoy =
        api::load_decoy_key(&backend).map_err(|e| format!("cannot load the decoy key: {e}"))?;
    let state = Arc::new(AppState::new(backend, policy, decoy, config));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    let grace = Duration::from_secs(args.shutdown_grace_secs);
    // Held outside the runtime, so the store is closed here, after every task is gone
    // (a backend may block when it closes, which an async worker must not do).
    let store = Arc::clone(&state);
    let result = runtime.block_on(serve_until_signal(state, args.listen, grace));
    runtime.shutdown_timeout(Duration::from_secs(5));
    drop(store);
    if result.is_ok() {
        tracing::info!("store closed");
    }
    result
}

async fn serve_until_signal<B: Backend>(
    state: Arc<AppState<B>>,
    listen: SocketAddr,
    grace: Duration,
) -> Result<(), String> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    let local = listener
        .local_addr()
        .map_err(|e| format!("cannot read the listening address: {e}"))?;
    tracing::info!(address = %local, "vault-server listening (plain HTTP)");

    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let mut server = tokio::spawn(api::serve(listener, state, async {
        let _ = stopped.await;
    }));
    tokio::select! {
        result = &mut server => {
            return match result {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(format!("the server failed: {e}")),
                Err(e) => Err(format!("the server task failed: {e}")),
            };
        }
        () = shutdown_signal() => {}
    }
    tracing::info!(
        grace_secs = grace.as_secs(),
        "shutting down: no new connections, finishing requests in flight"
    );
    let _ = stop.send(());
    match tokio::time::timeout(grace, &mut server).await {
        Ok(Ok(Ok(()))) => tracing::info!("stopped"),
        Ok(Ok(Err(e))) => return Err(format!("the server failed while stopping: {e}")),
        Ok(Err(e)) => return Err(format!("the server task failed while stopping: {e}")),
        Err(_) => {
            tracing::warn!("requests still running after the grace period; stopping anyway");
            server.abort();
        }
    }
    Ok(())
}

/// Completes on Ctrl-C (SIGINT) or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}
