//! The `vault-server` binary: the HTTP API (docs/spec/api.md) over a sled data directory, or
//! over PostgreSQL when given a database URL (the `postgres` feature, on by default).
//!
//! ```text
//! cargo run --release -p vault-server -- --data-dir ./vault-data
//! cargo run --release -p vault-server -- --database-url postgres://…
//! cargo run --release -p vault-server -- gen-cert --out-dir ./tls
//! cargo run --release -p vault-server -- --data-dir ./vault-data --backup-dir ./backups
//! cargo run --release -p vault-server -- restore --from ./backups/vault-backup-….vbk \
//!     --data-dir ./vault-data
//! cargo run --release -p vault-server -- serve --listen 0.0.0.0:8443 \
//!     --tls-cert ./tls/cert.pem --tls-key ./tls/key.pem
//! ```
//!
//! Without a subcommand the flags are those of `serve`. With `--tls-cert` and `--tls-key`
//! the API is served over TLS only (docs/spec/tls.md); without them plain HTTP, on a
//! loopback address only unless `--allow-plain-http-on-public-address` (development).
//!
//! Start-up: load the TLS certificate and key if given (a key that is not the certificate's
//! is refused, exit code 1), open and check the store (a damaged one is refused, exit code 1), calibrate the
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

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;
use vault_server::api::{self, AppState};
use vault_server::audit;
use vault_server::auth::VerifierPolicy;
use vault_server::backup;
use vault_server::config::{Config, Limits, DEFAULT_DECOY_KDF_ITERATIONS};
use vault_server::store::{Backend, SledBackend};
use vault_server::tls::{self, SelfSigned, TlsServer};

/// The thin server of the end-to-end encrypted vault: stores opaque bytes, never a key.
///
/// Without a subcommand, `vault-server [FLAGS]` is `vault-server serve [FLAGS]`.
#[derive(Parser, Debug)]
#[command(
    name = "vault-server",
    version,
    about,
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,

    #[command(flatten)]
    serve: ServeArgs,
}

/// The subcommands of the binary.
#[derive(Subcommand, Debug)]
enum Command {
    /// Serve the HTTP API (the default when no subcommand is given).
    Serve(Box<ServeArgs>),
    /// Write a self-signed certificate and its private key (cert.pem, key.pem) for local use.
    GenCert(GenCertArgs),
    /// Back up a sled data directory that no server has open (a running server backs
    /// itself up: `serve --backup-dir`). docs/spec/backup.md.
    Backup(BackupArgs),
    /// Restore a backup into a data directory (missing or empty, or `--force`).
    Restore(RestoreArgs),
    /// Read a backup and check its format, counts and SHA-256 without restoring it.
    VerifyBackup(VerifyBackupArgs),
    /// Verify the audit log's hash chain (docs/spec/audit.md §4.3). Exit code 0: intact;
    /// 1: broken (the first broken seq is printed); 2: the store could not be read.
    AuditVerify(AuditVerifyArgs),
}

/// The flags of `vault-server audit-verify`.
#[derive(clap::Args, Debug)]
struct AuditVerifyArgs {
    /// The sled data directory (no server may have it open: stop it, or verify a copy).
    #[arg(long, value_name = "DIR", default_value = "./vault-data")]
    data_dir: PathBuf,

    /// A PostgreSQL URL: verify the log in PostgreSQL instead (works while servers run).
    #[arg(
        long,
        value_name = "URL",
        env = "VAULT_DATABASE_URL",
        hide_env_values = true
    )]
    database_url: Option<String>,

    /// The PostgreSQL schema of the tables (default `public`).
    #[arg(long, value_name = "NAME")]
    database_schema: Option<String>,
}

/// The flags of `vault-server backup`.
#[derive(clap::Args, Debug)]
struct BackupArgs {
    /// The sled data directory to back up (no server may have it open).
    #[arg(long, value_name = "DIR", default_value = "./vault-data")]
    data_dir: PathBuf,

    /// The directory to write the backup into (created if missing).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
}

/// The flags of `vault-server restore`.
#[derive(clap::Args, Debug)]
struct RestoreArgs {
    /// The backup file (`vault-backup-<UTC time>.vbk`).
    #[arg(long, value_name = "FILE")]
    from: PathBuf,

    /// The data directory to restore into.
    #[arg(long, value_name = "DIR")]
    data_dir: PathBuf,

    /// Restore over a non-empty data directory: it is moved aside to
    /// `<DIR>.replaced-<UTC time>`, never deleted.
    #[arg(long)]
    force: bool,

    /// Leave every session of the backup out, so that every user signs in again (after a
    /// restore because of a compromise, or when sessions must not outlive the restore).
    #[arg(long)]
    drop_sessions: bool,
}

/// The flags of `vault-server verify-backup`.
#[derive(clap::Args, Debug)]
struct VerifyBackupArgs {
    /// The backup file.
    #[arg(value_name = "FILE")]
    backup: PathBuf,
}

/// The flags of `vault-server gen-cert`.
#[derive(clap::Args, Debug)]
struct GenCertArgs {
    /// The directory to write cert.pem and key.pem into (created if missing).
    #[arg(long, value_name = "DIR")]
    out_dir: PathBuf,

    /// A DNS name or IP address for the certificate (repeatable; default: localhost,
    /// 127.0.0.1 and ::1).
    #[arg(long = "name", value_name = "NAME")]
    names: Vec<String>,

    /// The validity of the certificate, in days.
    #[arg(long, value_name = "N", default_value_t = vault_server::tls::DEFAULT_CERT_DAYS)]
    days: u32,

    /// Overwrite cert.pem and key.pem if they exist.
    #[arg(long)]
    force: bool,
}

/// The flags of `vault-server serve` (and of `vault-server` without a subcommand).
#[derive(clap::Args, Debug)]
struct ServeArgs {
    /// The sled data directory (the embedded default store); created if missing.
    #[arg(long, value_name = "DIR", default_value = "./vault-data")]
    data_dir: PathBuf,

    /// The file of the server's MFA key (64 hex digits), which encrypts TOTP/HOTP secrets at
    /// rest (docs/spec/mfa.md §3); created on first start. Default: `mfa.key` in the sled
    /// data directory, or `./vault-mfa.key` with PostgreSQL (every node needs the same
    /// file). Back it up apart from the store.
    #[arg(long, value_name = "FILE")]
    mfa_key_file: Option<PathBuf>,

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

    /// The TLS certificate chain (PEM, leaf first). With `--tls-key`, the server speaks
    /// HTTPS only (TLS 1.3 and 1.2, docs/spec/tls.md).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,

    /// The TLS private key (PEM: PKCS#8, SEC 1 or PKCS#1) matching `--tls-cert`.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,

    /// Development only: serve plain HTTP on a non-loopback address without TLS (tokens
    /// and login secrets then cross the network unencrypted unless a TLS-terminating proxy
    /// is in front). Without `--tls-cert`/`--tls-key`, plain HTTP is otherwise served on
    /// loopback only.
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

    /// The longest a client may take to send a request's head, idle keep-alive time
    /// included, in seconds; then the connection is closed (slow clients).
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    header_timeout_secs: u64,

    /// The longest a write to a client may wait without progress, in seconds; then the
    /// connection is closed (a client that stopped reading its answer).
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    send_stall_timeout_secs: u64,

    /// How long shutdown waits for requests in flight, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    shutdown_grace_secs: u64,

    /// Back the sled store up into this directory while serving (docs/spec/backup.md §5).
    /// PostgreSQL is backed up with its own tools (§6).
    #[arg(long, value_name = "DIR")]
    backup_dir: Option<PathBuf>,

    /// Hours between two backups (with `--backup-dir`).
    #[arg(long, value_name = "N", default_value_t = 4)]
    backup_every_hours: u32,

    /// Days a backup is kept (with `--backup-dir`); the newest is always kept.
    #[arg(long, value_name = "D", default_value_t = 7)]
    backup_keep_days: u32,
}

impl ServeArgs {
    fn config(&self) -> Result<Config, String> {
        if self.request_timeout_secs == 0 {
            return Err("--request-timeout-secs must be at least 1".into());
        }
        if self.header_timeout_secs == 0 || self.send_stall_timeout_secs == 0 {
            return Err(
                "--header-timeout-secs and --send-stall-timeout-secs must be at least 1".into(),
            );
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
                header_timeout: Duration::from_secs(self.header_timeout_secs),
                send_stall_timeout: Duration::from_secs(self.send_stall_timeout_secs),
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
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let result = match cli.command {
        None => run(cli.serve),
        Some(Command::Serve(args)) => run(*args),
        Some(Command::GenCert(args)) => gen_cert(&args),
        Some(Command::Backup(args)) => backup_command(&args),
        Some(Command::Restore(args)) => restore_command(&args),
        Some(Command::VerifyBackup(args)) => verify_backup_command(&args),
        Some(Command::AuditVerify(args)) => return audit_verify_command(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            tracing::error!("{message}");
            ExitCode::FAILURE
        }
    }
}

/// `vault-server audit-verify`: recomputes the audit chain and reports its first broken
/// link (exit 1), or that it is intact (exit 0); 2 if the store cannot be read.
fn audit_verify_command(args: &AuditVerifyArgs) -> ExitCode {
    let report = match &args.database_url {
        Some(url) => audit_verify_postgres(url, args.database_schema.as_deref()),
        None if !args.data_dir.is_dir() => {
            Err(format!("no data directory at {}", args.data_dir.display()))
        }
        None => SledBackend::open(&args.data_dir)
            .map_err(|e| {
                format!(
                    "cannot open the data directory {}: {e}",
                    args.data_dir.display()
                )
            })
            .and_then(|b| audit::verify_chain(&b).map_err(|e| e.to_string())),
    };
    let hex = |h: &[u8; 32]| h.iter().map(|b| format!("{b:02x}")).collect::<String>();
    let head = |r: &audit::Report| match r.head {
        Some((seq, hash)) => format!("seq {seq}, hash {}", hex(&hash)),
        None => "none".to_owned(),
    };
    match report {
        Err(message) => {
            tracing::error!("audit-verify: {message}");
            ExitCode::from(2)
        }
        Ok(r) => match r.first_broken {
            None => {
                println!(
                    "audit log intact: {} entries; head {} (record it elsewhere as a checkpoint)",
                    r.entries,
                    head(&r)
                );
                ExitCode::SUCCESS
            }
            Some(b) => {
                println!(
                    "audit log broken at seq {}: {}; {} entries stored; last intact entry: {}",
                    b.seq,
                    b.reason,
                    r.entries,
                    head(&r)
                );
                ExitCode::from(1)
            }
        },
    }
}

#[cfg(feature = "postgres")]
fn audit_verify_postgres(url: &str, schema: Option<&str>) -> Result<audit::Report, String> {
    let backend = vault_server::store::PgBackend::connect(url, schema, 1)
        .map_err(|e| format!("cannot open the PostgreSQL database: {e}"))?;
    audit::verify_chain(&backend).map_err(|e| e.to_string())
}

#[cfg(not(feature = "postgres"))]
fn audit_verify_postgres(_: &str, _: Option<&str>) -> Result<audit::Report, String> {
    Err("this build has no PostgreSQL support (rebuild with `--features postgres`)".into())
}

/// `vault-server gen-cert`: a self-signed certificate and key for local use.
fn gen_cert(args: &GenCertArgs) -> Result<(), String> {
    let names = if args.names.is_empty() {
        tls::DEFAULT_CERT_NAMES.map(str::to_owned).to_vec()
    } else {
        args.names.clone()
    };
    let pair = SelfSigned::generate(&names, args.days).map_err(|e| e.to_string())?;
    let (cert, key) = pair
        .write(&args.out_dir, args.force)
        .map_err(|e| e.to_string())?;
    println!("certificate: {}", cert.display());
    println!("private key: {} (mode 0600)", key.display());
    println!("names: {}", names.join(", "));
    println!("valid for: {} days", args.days);
    println!(
        "SHA-256 fingerprint: {}",
        tls::fingerprint_hex(&pair.fingerprint())
    );
    Ok(())
}

fn print_backup(info: &backup::BackupInfo) {
    println!("backup: {}", info.path.display());
    println!("created: {} (Unix seconds, UTC)", info.created);
    println!(
        "trees: {}, entries: {}, pages: {}, page bytes: {}",
        info.trees, info.entries, info.pages, info.page_bytes
    );
    println!("SHA-256: {}", info.sha256_hex());
}

/// `vault-server backup`: a backup of a data directory no server has open.
fn backup_command(args: &BackupArgs) -> Result<(), String> {
    if !args.data_dir.is_dir() {
        return Err(format!("no data directory at {}", args.data_dir.display()));
    }
    let store = SledBackend::open(&args.data_dir).map_err(|e| {
        format!(
            "cannot open the data directory {} (a running server backs itself up: \
             serve --backup-dir): {e}",
            args.data_dir.display()
        )
    })?;
    let info = store
        .backup_to(&args.out)
        .map_err(|e| format!("backup failed: {e}"))?;
    print_backup(&info);
    Ok(())
}

/// `vault-server restore`.
fn restore_command(args: &RestoreArgs) -> Result<(), String> {
    let options = backup::RestoreOptions {
        force: args.force,
        drop_sessions: args.drop_sessions,
    };
    let restored = backup::restore_with(&args.from, &args.data_dir, options)
        .map_err(|e| format!("restore failed: {e}"))?;
    if args.drop_sessions {
        println!("sessions were left out: every user signs in again");
    }
    print_backup(&restored.backup);
    println!("restored into: {}", args.data_dir.display());
    if let Some(aside) = &restored.moved_aside {
        println!("the previous directory was moved to: {}", aside.display());
    }
    for file in &restored.left_behind {
        println!(
            "not in the backup, left in the previous directory (copy it back if the server \
             needs it): {}",
            file.display()
        );
    }
    Ok(())
}

/// `vault-server verify-backup`.
fn verify_backup_command(args: &VerifyBackupArgs) -> Result<(), String> {
    let info = backup::verify(&args.backup).map_err(|e| format!("{e}"))?;
    print_backup(&info);
    println!("the backup is intact");
    Ok(())
}

/// Starts the backup scheduler when `--backup-dir` is given (sled only).
fn start_backups<B: Backend>(
    state: &Arc<AppState<B>>,
    args: &ServeArgs,
    runtime: &tokio::runtime::Runtime,
) -> Result<(), String> {
    let Some(dir) = &args.backup_dir else {
        return Ok(());
    };
    if args.backup_every_hours == 0 || args.backup_keep_days == 0 {
        return Err("--backup-every-hours and --backup-keep-days must be at least 1".into());
    }
    let any: &dyn std::any::Any = state;
    let Some(sled) = any.downcast_ref::<Arc<AppState<SledBackend>>>() else {
        tracing::warn!(
            "--backup-dir applies to the sled store: back PostgreSQL up with its own tools \
             (pg_dump, or base backups with WAL archiving; docs/spec/backup.md §6)"
        );
        return Ok(());
    };
    let _entered = runtime.enter();
    backup::spawn_scheduler(
        Arc::clone(sled),
        AppState::backend,
        backup::Schedule {
            dir: dir.clone(),
            every: Duration::from_secs(u64::from(args.backup_every_hours) * 3600),
            keep: Duration::from_secs(u64::from(args.backup_keep_days) * 86_400),
        },
    );
    Ok(())
}

fn run(args: ServeArgs) -> Result<(), String> {
    // Loaded before the store is opened: a bad certificate or key fails fast.
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(
            TlsServer::from_files(cert, key)
                .map_err(|e| format!("cannot use the TLS certificate and key: {e}"))?,
        ),
        (None, None) => None,
        _ => return Err("--tls-cert and --tls-key go together".into()),
    };
    if tls.is_none() && !args.listen.ip().is_loopback() {
        if !args.allow_plain_http_on_public_address {
            return Err(format!(
                "refusing to listen on {} over plain HTTP: give --tls-cert and --tls-key \
                 (`vault-server gen-cert` makes a self-signed pair), listen on loopback \
                 behind a TLS-terminating proxy, or, for development only, pass \
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
        Some(url) => run_postgres(&args, &url, config, tls),
        None => {
            let backend = SledBackend::open(&args.data_dir).map_err(|e| {
                format!(
                    "cannot open the data directory {}: {e}",
                    args.data_dir.display()
                )
            })?;
            tracing::info!(data_dir = %args.data_dir.display(), "sled store opened");
            run_with(backend, &args, config, tls)
        }
    }
}

#[cfg(feature = "postgres")]
fn run_postgres(
    args: &ServeArgs,
    url: &str,
    config: Config,
    tls: Option<TlsServer>,
) -> Result<(), String> {
    let backend = vault_server::store::PgBackend::connect(
        url,
        args.database_schema.as_deref(),
        args.database_pool_size,
    )
    .map_err(|e| format!("cannot open the PostgreSQL database: {e}"))?;
    tracing::info!(schema = backend.schema(), "PostgreSQL store opened");
    run_with(backend, args, config, tls)
}

#[cfg(not(feature = "postgres"))]
fn run_postgres(args: &ServeArgs, _: &str, _: Config, _: Option<TlsServer>) -> Result<(), String> {
    let _ = (&args.database_schema, args.database_pool_size);
    Err(
        "a database URL was given (--database-url or VAULT_DATABASE_URL), but this build has no \
         PostgreSQL support: rebuild with `--features postgres`, or unset it to use the sled \
         data directory"
            .into(),
    )
}

fn run_with<B: Backend>(
    backend: B,
    args: &ServeArgs,
    config: Config,
    tls: Option<TlsServer>,
) -> Result<(), String> {
    backend
        .check()
        .map_err(|e| format!("the store failed its start-up check: {e}"))?;
    let policy = args.policy()?;
    let decoy =
        api::load_decoy_key(&backend).map_err(|e| format!("cannot load the decoy key: {e}"))?;
    let key_file = match (&args.mfa_key_file, &args.database_url) {
        (Some(file), _) => file.clone(),
        (None, None) => args.data_dir.join("mfa.key"),
        (None, Some(_)) => PathBuf::from("vault-mfa.key"),
    };
    let mfa_key =
        vault_server::auth::mfa::MfaKey::load_or_create(&key_file, &mut rand_core::OsRng)?;
    let state = Arc::new(AppState::new(backend, policy, decoy, config).with_mfa_key(mfa_key));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    start_backups(&state, args, &runtime)?;
    let grace = Duration::from_secs(args.shutdown_grace_secs);
    // Held outside the runtime, so the store is closed here, after every task is gone
    // (a backend may block when it closes, which an async worker must not do).
    let store = Arc::clone(&state);
    let result = runtime.block_on(serve_until_signal(state, args.listen, grace, tls));
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
    tls: Option<TlsServer>,
) -> Result<(), String> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    let local = listener
        .local_addr()
        .map_err(|e| format!("cannot read the listening address: {e}"))?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let stopped = async {
        let _ = stopped.await;
    };
    let mut server = match tls {
        Some(tls) => {
            tracing::info!(
                address = %local,
                handshake_timeout_secs = tls.handshake_timeout().as_secs(),
                "vault-server listening (HTTPS: TLS 1.3 and 1.2, ECDHE with AEAD suites only, HSTS)"
            );
            tokio::spawn(tls::serve_tls(listener, state, tls, stopped))
        }
        None => {
            tracing::info!(address = %local, "vault-server listening (plain HTTP)");
            tokio::spawn(api::serve(listener, state, stopped))
        }
    };
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
