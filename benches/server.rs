//! Server benchmark (issue #5): the HTTP API under load against its own storage engine, in
//! the same run. Not criterion (it is poor at concurrent load): a load test with its own
//! harness that prints `SERVER`, `RATIO`, `RSS` and `LOGIN` lines and a summary table.
//!
//! For each backend (sled always; PostgreSQL when `VAULT_BENCH_DATABASE_URL` is set and the
//! bench is built with `--features postgres`):
//!
//! 1. **Engine reference**: the backend's own `DataStore::put_page` of 64 KiB pages (random,
//!    incompressible bytes, a distinct address per page) from 64 threads for a fixed time,
//!    then `get_page` of random pages among those written, from 64 threads: ops/s, p50, p99.
//! 2. **HTTP**: the real server (`vault_server::api::serve`, what the `vault-server` binary
//!    runs) in a **child process** — this bench executable started again in server mode,
//!    with a fresh backend of the same kind — on 127.0.0.1; one account registered
//!    (`POST /v1/accounts`) and logged in (`POST /v1/sessions`), one collection created
//!    (`PUT /v1/collections/{c}`). A load generator in this process (tokio + hyper,
//!    HTTP/1.1 keep-alive, one connection per task) keeps 64 connections busy with
//!    `PUT …/pages/{i}` of the same 64 KiB pages for a fixed time, then `GET`s of random
//!    pages among those written: requests/s, p50, p99. Any answer but the expected status
//!    (and, for a GET, the exact bytes) aborts the bench with an error.
//! 3. `RATIO` = HTTP rate / engine rate, against the goals of issue #5: ≥ 0.5, and HTTP
//!    p99 < 50 ms.
//! 4. The server's resident memory from `/proc/<child>/status`: `VmRSS` when idle and
//!    `VmHWM` (peak) after the PUT and GET loads — the server alone, not the load
//!    generator. CPU seconds of the server and of the load generator per phase, from
//!    `/proc/<pid>/stat`.
//!
//! And login verifications per second at the calibrated cost
//! (`VerifierPolicy::calibrate(DEFAULT_TARGET)`): `Verifier::verify` in-process on one and
//! on two threads, and `POST /v1/sessions` through the sled server with 4 connections.
//!
//! ```text
//! cargo bench -p vault-benches --bench server            # sled; about 1 minute
//! VAULT_BENCH_DATABASE_URL="$(scripts/postgres.sh | tail -n 1)" \
//!     cargo bench -p vault-benches --features postgres --bench server
//! ```
//!
//! Knobs (environment): `VAULT_BENCH_SECS` (each load phase, default 5),
//! `VAULT_BENCH_LOGIN_SECS` (each login phase, default 3), `VAULT_BENCH_CONNECTIONS`
//! (connections and engine threads, default 64), `VAULT_BENCH_CLIENT_THREADS` (load
//! generator threads, default 1), `VAULT_BENCH_DIR` (where the sled directories go, default
//! the system temporary directory), `VAULT_BENCH_DATABASE_URL`, `VAULT_BENCH_PG_POOL`
//! (PostgreSQL connection pool of the engine reference and of the server, default 16).
//! PostgreSQL runs in a fresh schema `vault_bench_<random>`, dropped at the end. For
//! experiments only: `VAULT_BENCH_SERVER_BLOCKING_THREADS` caps the server's blocking pool
//! (the binary keeps tokio's default).
// A panicked worker thread is a bug of this benchmark: `expect` says which.
#![allow(clippy::expect_used)]

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Barrier, OnceLock};
use std::time::{Duration, Instant};

use data_encoding::{BASE64URL_NOPAD, HEXLOWER};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, HOST};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use rand_core::{OsRng, RngCore};
use serde_json::{json, Value};
use vault_keyring::{KdfParams, Keyring, KeyringOptions, Password, PasswordKeys, SealedKeyring};
use vault_server::api::{self, AppState};
use vault_server::auth::verifier::DEFAULT_TARGET;
use vault_server::auth::{LoginSecret, Verifier, VerifierPolicy};
use vault_server::config::{Config, Limits};
use vault_server::store::{
    Backend, Created, DataStore, Id, NewAccount, PageKey, ScopeKind, SledBackend, Write,
};

type Error = Box<dyn std::error::Error + Send + Sync>;
type Result<T, E = Error> = std::result::Result<T, E>;

/// One page: 64 KiB.
const PAGE: usize = 64 * 1024;
/// Distinct random pages in the pool the benchmark cycles through (4 MiB).
const POOL: usize = 64;
/// The quota of the benchmark's accounts: 1 PiB, so that long runs never hit it (the
/// check costs the same at any value).
const QUOTA: u64 = 1 << 50;
/// Connections of the HTTP login phase.
const LOGIN_CONNECTIONS: usize = 4;

/// Set in the environment of the child process: run the server, not the benchmark.
const CHILD_ENV: &str = "VAULT_BENCH_SERVER_CHILD";
/// The child's store: the sled directory or the database URL.
const CHILD_STORE_ENV: &str = "VAULT_BENCH_SERVER_STORE";
/// The child's login verifier iteration count (the parent's calibration).
const CHILD_ITERATIONS_ENV: &str = "VAULT_BENCH_SERVER_ITERATIONS";
/// The first line the child prints: `LISTENING 127.0.0.1:port`.
const LISTENING: &str = "LISTENING ";

fn main() {
    let outcome = match std::env::var(CHILD_ENV) {
        Ok(kind) => child_main(&kind),
        Err(_) => bench_main(),
    };
    if let Err(e) = outcome {
        eprintln!("server bench: error: {e}");
        std::process::exit(1);
    }
}

// ---------------------------------------------------------------------------------------
// Knobs, pages, statistics.

struct Knobs {
    secs: Duration,
    login_secs: Duration,
    connections: usize,
    client_threads: usize,
    dir: PathBuf,
    database_url: Option<String>,
}

fn env_number(name: &str, default: u64) -> Result<u64> {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse::<u64>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| format!("{name}={v:?} is not a positive integer").into()),
        Err(_) => Ok(default),
    }
}

impl Knobs {
    fn from_env() -> Result<Self> {
        let secs = env_number("VAULT_BENCH_SECS", 5)?.min(600);
        let login_secs = env_number("VAULT_BENCH_LOGIN_SECS", 3)?.min(600);
        let connections = env_number("VAULT_BENCH_CONNECTIONS", 64)?.min(1024) as usize;
        let client_threads = env_number("VAULT_BENCH_CLIENT_THREADS", 1)?.min(64) as usize;
        let dir = std::env::var_os("VAULT_BENCH_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir);
        let database_url = std::env::var("VAULT_BENCH_DATABASE_URL")
            .ok()
            .filter(|u| !u.is_empty());
        Ok(Self {
            secs: Duration::from_secs(secs),
            login_secs: Duration::from_secs(login_secs),
            connections,
            client_threads,
            dir,
            database_url,
        })
    }
}

/// `POOL` random 64 KiB pages in one buffer; page `n` is `n % POOL`.
struct Pages {
    pool: Bytes,
}

impl Pages {
    fn new() -> Self {
        let mut v = vec![0u8; POOL * PAGE];
        OsRng.fill_bytes(&mut v);
        Self {
            pool: Bytes::from(v),
        }
    }

    fn index(worker: usize, i: u32) -> usize {
        (worker * 7 + i as usize) % POOL * PAGE
    }

    /// The page stored at `(worker, i)`, as a slice.
    fn slice(&self, worker: usize, i: u32) -> &[u8] {
        let at = Self::index(worker, i);
        &self.pool[at..at + PAGE]
    }

    /// The same page as a shared buffer (no copy).
    fn bytes(&self, worker: usize, i: u32) -> Bytes {
        let at = Self::index(worker, i);
        self.pool.slice(at..at + PAGE)
    }
}

/// A small, fast generator for picking pages to read (not for secrets).
struct XorShift(u64);

impl XorShift {
    fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

/// The result of one load phase.
struct Run {
    ops: u64,
    elapsed: Duration,
    /// Latencies in nanoseconds, sorted.
    latencies: Vec<u64>,
}

/// What one worker returns: its latencies, what it wrote (page count), when it finished.
struct WorkerOut {
    latencies: Vec<u64>,
    written: u32,
    finished: Instant,
}

impl Run {
    fn merge(start: Instant, outs: &mut [WorkerOut]) -> Self {
        let mut latencies = Vec::with_capacity(outs.iter().map(|o| o.latencies.len()).sum());
        let mut end = start;
        for o in outs.iter_mut() {
            latencies.append(&mut o.latencies);
            end = end.max(o.finished);
        }
        latencies.sort_unstable();
        Self {
            ops: latencies.len() as u64,
            elapsed: end - start,
            latencies,
        }
    }

    fn rate(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// The `p`-th percentile (nearest rank).
    fn pct(&self, p: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        let rank = ((p / 100.0) * self.latencies.len() as f64).ceil() as usize;
        Duration::from_nanos(self.latencies[rank.clamp(1, self.latencies.len()) - 1])
    }

    fn p50(&self) -> Duration {
        self.pct(50.0)
    }

    fn p99(&self) -> Duration {
        self.pct(99.0)
    }

    fn describe(&self) -> String {
        format!(
            "{} ops in {:.2} s = {:.0}/s ({:.1} MB/s), p50 {}, p99 {}, max {}",
            self.ops,
            self.elapsed.as_secs_f64(),
            self.rate(),
            self.rate() * PAGE as f64 / 1e6,
            ms(self.p50()),
            ms(self.p99()),
            ms(self.pct(100.0)),
        )
    }
}

fn ms(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us < 1000.0 {
        format!("{us:.0} µs")
    } else {
        format!("{:.2} ms", us / 1000.0)
    }
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

fn random_id() -> Id {
    let mut id = [0u8; 16];
    OsRng.fill_bytes(&mut id);
    id
}

/// The object id of worker `w` in a run whose prefix is `run`.
fn object_id(run: &Id, w: usize) -> Id {
    let mut id = *run;
    id[12..].copy_from_slice(&(w as u32).to_be_bytes());
    id
}

/// Every `(worker, index)` written, to pick reads from.
fn written_list(written: &[u32]) -> Vec<(u32, u32)> {
    written
        .iter()
        .enumerate()
        .flat_map(|(w, &n)| (0..n).map(move |i| (w as u32, i)))
        .collect()
}

// ---------------------------------------------------------------------------------------
// /proc: memory and CPU of a process.

/// `VmRSS` and `VmHWM` (peak) of process `pid` (`"self"` for this one), in KiB.
fn memory(pid: &str) -> Result<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| -> Result<u64> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| format!("/proc/{pid}/status has no {name}").into())
    };
    Ok((field("VmRSS:")?, field("VmHWM:")?))
}

/// Clock ticks per second of `/proc/<pid>/stat` (`getconf CLK_TCK`; 100 on Linux).
fn clock_ticks() -> f64 {
    static TICKS: OnceLock<f64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse::<f64>().ok())
            .filter(|t| *t > 0.0)
            .unwrap_or(100.0)
    })
}

/// User + system CPU time of process `pid` so far.
fn cpu(pid: &str) -> Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which may contain spaces): state is field 3, utime
    // field 14 and stime field 15.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or("malformed /proc/<pid>/stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| -> Result<f64> {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .ok_or_else(|| "malformed /proc/<pid>/stat".into())
    };
    Ok(Duration::from_secs_f64(
        (ticks(11)? + ticks(12)?) / clock_ticks(),
    ))
}

// ---------------------------------------------------------------------------------------
// The child process: the server.

fn child_main(kind: &str) -> Result<()> {
    let store = std::env::var(CHILD_STORE_ENV).map_err(|_| format!("{CHILD_STORE_ENV} unset"))?;
    let iterations: u32 = std::env::var(CHILD_ITERATIONS_ENV)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("{CHILD_ITERATIONS_ENV} unset or not a number"))?;
    let policy = VerifierPolicy::with_iterations(iterations)?;
    match kind {
        "sled" => serve_child(SledBackend::open(&store)?, policy),
        #[cfg(feature = "postgres")]
        "postgres" => {
            let schema =
                std::env::var(CHILD_SCHEMA_ENV).map_err(|_| format!("{CHILD_SCHEMA_ENV} unset"))?;
            serve_child(pg_connect(&store, &schema)?, policy)
        }
        other => Err(format!("unknown backend {other:?} in {CHILD_ENV}").into()),
    }
}

/// Serves the API as the binary does (start-up check, decoy key, a multi-thread tokio
/// runtime with one worker per core, `api::serve`) with the default configuration except
/// the quota; stops when standard input closes.
fn serve_child<B: Backend>(backend: B, policy: VerifierPolicy) -> Result<()> {
    backend.check()?;
    let decoy = api::load_decoy_key(&backend)?;
    let config = Config {
        limits: Limits {
            quota: QUOTA,
            ..Limits::default()
        },
        ..Config::default()
    };
    let state = Arc::new(AppState::new(backend, policy, decoy, config));
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    runtime.enable_all();
    // An experiment, not the binary's setting: a smaller blocking pool than tokio's 512.
    if let Ok(n) = std::env::var("VAULT_BENCH_SERVER_BLOCKING_THREADS") {
        runtime.max_blocking_threads(
            n.parse()
                .map_err(|_| "VAULT_BENCH_SERVER_BLOCKING_THREADS: not a number")?,
        );
    }
    let runtime = runtime.build()?;
    let served = Arc::clone(&state);
    let result = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let mut out = std::io::stdout();
        writeln!(out, "{LISTENING}{addr}")?;
        out.flush()?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        std::thread::spawn(move || {
            // The parent closes our standard input to stop us.
            let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
            let _ = stop.send(());
        });
        api::serve(listener, served, async {
            let _ = stopped.await;
        })
        .await?;
        Ok::<(), Error>(())
    });
    // The last reference to the backend is dropped here, outside the runtime: the
    // synchronous PostgreSQL client blocks on a runtime of its own when it closes, which
    // panics (and aborts the process) on a tokio worker thread.
    drop(runtime);
    drop(state);
    result
}

/// A server child process; killed if dropped without [`Server::stop`].
struct Server {
    child: Child,
    stdin: Option<ChildStdin>,
    addr: SocketAddr,
    host: HeaderValue,
}

impl Server {
    /// Starts the bench executable in server mode over store `kind` at `store`.
    fn start(kind: &str, store: &str, iterations: u32, env: &[(&str, &str)]) -> Result<Self> {
        let exe = std::env::current_exe()?;
        let mut child = Command::new(exe)
            .envs(env.iter().copied())
            .env(CHILD_ENV, kind)
            .env(CHILD_STORE_ENV, store)
            .env(CHILD_ITERATIONS_ENV, iterations.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().ok_or("no child stdout")?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        let addr = match line.trim().strip_prefix(LISTENING) {
            Some(a) => a.parse::<SocketAddr>()?,
            None => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("the server child did not start (printed {line:?})").into());
            }
        };
        if !addr.ip().is_loopback() {
            return Err(format!("the server child listens on {addr}, not loopback").into());
        }
        Ok(Self {
            host: HeaderValue::from_str(&addr.to_string())?,
            child,
            stdin,
            addr,
        })
    }

    fn pid(&self) -> String {
        self.child.id().to_string()
    }

    /// Closes the child's standard input (graceful shutdown) and waits up to 15 s.
    fn stop(mut self) -> Result<()> {
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = self.child.try_wait()? {
                return if status.success() {
                    Ok(())
                } else {
                    Err(format!("the server child exited with {status}").into())
                };
            }
            if Instant::now() > deadline {
                self.child.kill()?;
                self.child.wait()?;
                return Err("the server child did not stop within 15 s".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

// ---------------------------------------------------------------------------------------
// The account the benchmark registers.

struct Account {
    user: Id,
    secret: [u8; 32],
    sealed: Vec<u8>,
    identity: Vec<u8>,
}

impl Account {
    /// A real keyring (RSA key generation) sealed at the client's floor of 600,000
    /// iterations, its identity bundle and login secret.
    fn new() -> Result<Self> {
        let keyring = Keyring::generate(&mut OsRng, &KeyringOptions::new())?;
        let keys = PasswordKeys::derive(
            &Password::from("server benchmark password"),
            &KdfParams::with_iterations(600_000)?,
        )?;
        let (sealed, _) = SealedKeyring::seal(&mut OsRng, &keyring, &keys);
        Ok(Self {
            user: *keyring.id().as_bytes(),
            secret: *keys.login_secret().expose_bytes(),
            sealed: sealed.to_bytes(),
            identity: keyring.identity_bundle(&mut OsRng).to_bytes(),
        })
    }

    fn login_secret(&self) -> Result<LoginSecret> {
        Ok(LoginSecret::from_bytes(self.secret).ok_or("all-zero login secret")?)
    }
}

fn random_name() -> String {
    let mut b = [0u8; 6];
    OsRng.fill_bytes(&mut b);
    format!("bench-{}", HEXLOWER.encode(&b))
}

// ---------------------------------------------------------------------------------------
// Engine reference: the backend's own put_page / get_page from `workers` threads.

#[derive(Clone, Copy, PartialEq, Eq)]
enum Op {
    Put,
    Get,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Put => "PUT",
            Op::Get => "GET",
        }
    }
}

/// Creates an account and a collection directly in the store, for the engine reference.
fn engine_collection<B: Backend>(b: &B, account: &Account, policy: &VerifierPolicy) -> Result<Id> {
    let user = random_id();
    let verifier = Verifier::create(&mut OsRng, &account.login_secret()?, policy).to_bytes();
    let created = b.create_account(&NewAccount {
        user,
        name: &random_name(),
        verifier: &verifier,
        keyring: &account.sealed,
        identity: &account.identity,
    })?;
    if !created {
        return Err("engine reference: the account exists already".into());
    }
    let collection = random_id();
    match b.create_scope(&collection, ScopeKind::Collection, &user)? {
        Created::Created => Ok(collection),
        other => Err(format!("engine reference: collection not created: {other:?}").into()),
    }
}

/// One engine phase. PUT: worker `w` writes pages `0, 1, …` of its own object until the
/// time is up. GET: every worker reads random pages among `targets`, checking the bytes.
#[allow(clippy::too_many_arguments)]
fn engine_phase<B: DataStore>(
    b: &B,
    op: Op,
    collection: Id,
    run: Id,
    workers: usize,
    secs: Duration,
    pages: &Pages,
    targets: &[(u32, u32)],
) -> Result<(Run, Vec<u32>)> {
    if op == Op::Get && targets.is_empty() {
        return Err("engine GET: nothing was written".into());
    }
    let barrier = Barrier::new(workers);
    let start = OnceLock::new();
    let mut outs: Vec<WorkerOut> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|w| {
                let (barrier, start) = (&barrier, &start);
                s.spawn(move || -> Result<WorkerOut> {
                    let mut latencies = Vec::with_capacity(4096);
                    let mut rng = XorShift::new(w as u64 + 1);
                    let mut i = 0u32;
                    barrier.wait();
                    let deadline = *start.get_or_init(Instant::now) + secs;
                    while Instant::now() < deadline {
                        let t = Instant::now();
                        match op {
                            Op::Put => {
                                let key = PageKey {
                                    collection,
                                    object: object_id(&run, w),
                                    version: 1,
                                    index: i,
                                };
                                match b.put_page(&key, pages.slice(w, i), QUOTA)? {
                                    Write::Done => {}
                                    other => {
                                        return Err(format!("engine put_page: {other:?}").into())
                                    }
                                }
                                i += 1;
                            }
                            Op::Get => {
                                let (tw, ti) = targets[rng.below(targets.len())];
                                let key = PageKey {
                                    collection,
                                    object: object_id(&run, tw as usize),
                                    version: 1,
                                    index: ti,
                                };
                                let page = b
                                    .get_page(&key)?
                                    .ok_or("engine get_page: a written page is missing")?;
                                if page != pages.slice(tw as usize, ti) {
                                    return Err("engine get_page: wrong bytes".into());
                                }
                            }
                        }
                        latencies.push(t.elapsed().as_nanos() as u64);
                    }
                    Ok(WorkerOut {
                        latencies,
                        written: i,
                        finished: Instant::now(),
                    })
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("an engine worker panicked"))
            .collect::<Result<Vec<_>>>()
    })?;
    let start = *start.get().ok_or("no worker started")?;
    let written = outs.iter().map(|o| o.written).collect();
    Ok((Run::merge(start, &mut outs), written))
}

// ---------------------------------------------------------------------------------------
// The load generator: one HTTP/1.1 connection per task.

type Sender = SendRequest<Full<Bytes>>;

async fn connect(addr: SocketAddr) -> Result<Sender> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    // A connection error shows up in the request that was using it.
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

/// Sends one request and reads the whole answer.
async fn send(
    sender: &mut Sender,
    server: &Server,
    method: Method,
    path: &str,
    auth: Option<&HeaderValue>,
    content_type: Option<&'static str>,
    body: Bytes,
) -> Result<(StatusCode, Bytes)> {
    sender.ready().await?;
    let mut request = Request::builder()
        .method(method)
        .uri(path)
        .header(HOST, server.host.clone());
    if let Some(auth) = auth {
        request = request.header(AUTHORIZATION, auth.clone());
    }
    if let Some(ct) = content_type {
        request = request.header(CONTENT_TYPE, ct);
    }
    let response = sender.send_request(request.body(Full::new(body))?).await?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((status, body))
}

/// A JSON request that must answer `expect`; the answer's JSON.
async fn json_call(
    server: &Server,
    method: Method,
    path: &str,
    auth: Option<&HeaderValue>,
    body: Option<Value>,
    expect: StatusCode,
) -> Result<Value> {
    let mut sender = connect(server.addr).await?;
    let (content_type, bytes) = match body {
        Some(v) => (
            Some("application/json"),
            Bytes::from(serde_json::to_vec(&v)?),
        ),
        None => (None, Bytes::new()),
    };
    let (status, answer) = send(
        &mut sender,
        server,
        method.clone(),
        path,
        auth,
        content_type,
        bytes,
    )
    .await?;
    if status != expect {
        return Err(format!(
            "{method} {path}: {status} (expected {expect}): {}",
            String::from_utf8_lossy(&answer)
        )
        .into());
    }
    Ok(serde_json::from_slice(&answer)?)
}

/// What the HTTP phases share: the server, the session, the collection.
struct HttpSetup {
    auth: HeaderValue,
    collection: String,
    name: String,
}

/// Registers `account` under a fresh name, logs in, creates a collection.
async fn http_setup(server: &Server, account: &Account) -> Result<HttpSetup> {
    let name = random_name();
    let secret = BASE64URL_NOPAD.encode(&account.secret);
    json_call(
        server,
        Method::POST,
        "/v1/accounts",
        None,
        Some(json!({
            "name": name,
            "user": HEXLOWER.encode(&account.user),
            "login_secret": secret,
            "keyring": BASE64URL_NOPAD.encode(&account.sealed),
            "identity": BASE64URL_NOPAD.encode(&account.identity),
        })),
        StatusCode::CREATED,
    )
    .await?;
    let session = json_call(
        server,
        Method::POST,
        "/v1/sessions",
        None,
        Some(json!({"name": name, "login_secret": secret})),
        StatusCode::CREATED,
    )
    .await?;
    let token = session["token"].as_str().ok_or("login: no token")?;
    let auth = HeaderValue::from_str(&format!("Bearer {token}"))?;
    let collection = HEXLOWER.encode(&random_id());
    json_call(
        server,
        Method::PUT,
        &format!("/v1/collections/{collection}"),
        Some(&auth),
        None,
        StatusCode::CREATED,
    )
    .await?;
    Ok(HttpSetup {
        auth,
        collection,
        name,
    })
}

/// One HTTP phase over `connections` connections, opened before the clock starts. PUT:
/// connection `w` writes pages `0, 1, …` of its own object; GET: random pages among
/// `targets`, checking the bytes.
#[allow(clippy::too_many_arguments)]
async fn http_phase(
    server: &Arc<Server>,
    setup: &Arc<HttpSetup>,
    op: Op,
    run: Id,
    connections: usize,
    secs: Duration,
    pages: &Arc<Pages>,
    targets: &Arc<Vec<(u32, u32)>>,
) -> Result<(Run, Vec<u32>)> {
    if op == Op::Get && targets.is_empty() {
        return Err("HTTP GET: nothing was written".into());
    }
    let mut senders = Vec::with_capacity(connections);
    for _ in 0..connections {
        senders.push(connect(server.addr).await?);
    }
    let barrier = Arc::new(tokio::sync::Barrier::new(connections));
    let start = Arc::new(OnceLock::new());
    let mut tasks = Vec::with_capacity(connections);
    for (w, mut sender) in senders.into_iter().enumerate() {
        let (server, setup, pages, targets) = (
            Arc::clone(server),
            Arc::clone(setup),
            Arc::clone(pages),
            Arc::clone(targets),
        );
        let (barrier, start) = (Arc::clone(&barrier), Arc::clone(&start));
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(4096);
            let mut rng = XorShift::new(w as u64 + 1);
            let mut i = 0u32;
            let object = |w: usize| HEXLOWER.encode(&object_id(&run, w));
            let own = object(w);
            barrier.wait().await;
            let deadline = *start.get_or_init(Instant::now) + secs;
            while Instant::now() < deadline {
                let t = Instant::now();
                match op {
                    Op::Put => {
                        let path = format!(
                            "/v1/collections/{}/objects/{own}/versions/1/pages/{i}",
                            setup.collection
                        );
                        let (status, answer) = send(
                            &mut sender,
                            &server,
                            Method::PUT,
                            &path,
                            Some(&setup.auth),
                            Some("application/octet-stream"),
                            pages.bytes(w, i),
                        )
                        .await?;
                        if status != StatusCode::NO_CONTENT {
                            return Err(format!(
                                "PUT {path}: {status}: {}",
                                String::from_utf8_lossy(&answer)
                            )
                            .into());
                        }
                        i += 1;
                    }
                    Op::Get => {
                        let (tw, ti) = targets[rng.below(targets.len())];
                        let path = format!(
                            "/v1/collections/{}/objects/{}/versions/1/pages/{ti}",
                            setup.collection,
                            object(tw as usize)
                        );
                        let (status, answer) = send(
                            &mut sender,
                            &server,
                            Method::GET,
                            &path,
                            Some(&setup.auth),
                            None,
                            Bytes::new(),
                        )
                        .await?;
                        if status != StatusCode::OK {
                            return Err(format!(
                                "GET {path}: {status}: {}",
                                String::from_utf8_lossy(&answer)
                            )
                            .into());
                        }
                        if answer[..] != *pages.slice(tw as usize, ti) {
                            return Err(format!("GET {path}: wrong bytes").into());
                        }
                    }
                }
                latencies.push(t.elapsed().as_nanos() as u64);
            }
            Ok::<_, Error>(WorkerOut {
                latencies,
                written: i,
                finished: Instant::now(),
            })
        }));
    }
    let mut outs = Vec::with_capacity(connections);
    for t in tasks {
        outs.push(t.await??);
    }
    let start = *start.get().ok_or("no connection started")?;
    let written = outs.iter().map(|o| o.written).collect();
    Ok((Run::merge(start, &mut outs), written))
}

/// `POST /v1/sessions` from `connections` connections for `secs`.
async fn http_logins(
    server: &Arc<Server>,
    name: &str,
    secret: &[u8; 32],
    connections: usize,
    secs: Duration,
) -> Result<Run> {
    let body = Bytes::from(serde_json::to_vec(
        &json!({"name": name, "login_secret": BASE64URL_NOPAD.encode(secret)}),
    )?);
    let mut senders = Vec::with_capacity(connections);
    for _ in 0..connections {
        senders.push(connect(server.addr).await?);
    }
    let start = Instant::now();
    let deadline = start + secs;
    let mut tasks = Vec::new();
    for mut sender in senders {
        let (server, body) = (Arc::clone(server), body.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while Instant::now() < deadline {
                let t = Instant::now();
                let (status, answer) = send(
                    &mut sender,
                    &server,
                    Method::POST,
                    "/v1/sessions",
                    None,
                    Some("application/json"),
                    body.clone(),
                )
                .await?;
                if status != StatusCode::CREATED {
                    return Err(format!(
                        "POST /v1/sessions: {status}: {}",
                        String::from_utf8_lossy(&answer)
                    )
                    .into());
                }
                latencies.push(t.elapsed().as_nanos() as u64);
            }
            Ok::<_, Error>(WorkerOut {
                latencies,
                written: 0,
                finished: Instant::now(),
            })
        }));
    }
    let mut outs = Vec::new();
    for t in tasks {
        outs.push(t.await??);
    }
    Ok(Run::merge(start, &mut outs))
}

// ---------------------------------------------------------------------------------------
// One backend: engine reference, then the server under load.

/// The numbers of one backend, for the summary.
struct BackendResult {
    name: &'static str,
    engine: [Run; 2],
    http: [Run; 2],
    rss_idle: u64,
    hwm_put: u64,
    hwm_get: u64,
    http_login: Option<Run>,
}

struct Ctx {
    knobs: Knobs,
    pages: Arc<Pages>,
    account: Account,
    policy: VerifierPolicy,
    client: tokio::runtime::Runtime,
}

/// The engine reference on `backend` (PUT then GET).
fn engine_reference<B: Backend>(ctx: &Ctx, name: &str, backend: &B) -> Result<[Run; 2]> {
    let collection = engine_collection(backend, &ctx.account, &ctx.policy)?;
    let run = random_id();
    let n = ctx.knobs.connections;
    let cpu_line = |label: &str, before: Duration, r: &Run| -> Result<()> {
        let used = cpu("self")? - before;
        println!(
            "CPU {name} engine {label}: {:.2} s ({:.2} cores, {:.0} µs/op)",
            used.as_secs_f64(),
            used.as_secs_f64() / r.elapsed.as_secs_f64(),
            used.as_secs_f64() * 1e6 / r.ops.max(1) as f64,
        );
        Ok(())
    };
    let before = cpu("self")?;
    let (put, written) = engine_phase(
        backend,
        Op::Put,
        collection,
        run,
        n,
        ctx.knobs.secs,
        &ctx.pages,
        &[],
    )?;
    println!(
        "SERVER {name} engine PUT put_page, {n} threads: {}",
        put.describe()
    );
    cpu_line("PUT", before, &put)?;
    let targets = written_list(&written);
    let before = cpu("self")?;
    let (get, _) = engine_phase(
        backend,
        Op::Get,
        collection,
        run,
        n,
        ctx.knobs.secs,
        &ctx.pages,
        &targets,
    )?;
    println!(
        "SERVER {name} engine GET get_page, {n} threads, random among the {} written: {}",
        targets.len(),
        get.describe()
    );
    cpu_line("GET", before, &get)?;
    if let Err(e) = backend.delete_scope(&collection) {
        println!("SERVER {name} engine: cleaning up the collection failed: {e}");
    }
    Ok([put, get])
}

/// The server child over store `kind` at `store` under load (PUT then GET), its memory,
/// and with `logins`, the HTTP login phase.
fn http_load(
    ctx: &Ctx,
    name: &'static str,
    kind: &str,
    store: &str,
    child_env: &[(&str, &str)],
    engine: [Run; 2],
    logins: bool,
) -> Result<BackendResult> {
    let server = Arc::new(Server::start(
        kind,
        store,
        ctx.policy.iterations(),
        child_env,
    )?);
    let pid = server.pid();
    let n = ctx.knobs.connections;
    let secs = ctx.knobs.secs;
    let out = ctx.client.block_on(async {
        let setup = Arc::new(http_setup(&server, &ctx.account).await?);
        let (rss_idle, _) = memory(&pid)?;
        println!(
            "RSS {name} server child (pid {pid}) idle (registered, logged in, collection created): VmRSS {}",
            mib(rss_idle)
        );
        let run = random_id();
        let cpu_phase = |label: &str, before: (Duration, Duration), r: &Run| -> Result<()> {
            let server_cpu = cpu(&pid)? - before.0;
            let client_cpu = cpu("self")? - before.1;
            println!(
                "CPU {name} HTTP {label}: server {:.2} s ({:.2} cores, {:.0} µs/request), load generator {:.2} s ({:.0} µs/request)",
                server_cpu.as_secs_f64(),
                server_cpu.as_secs_f64() / r.elapsed.as_secs_f64(),
                server_cpu.as_secs_f64() * 1e6 / r.ops.max(1) as f64,
                client_cpu.as_secs_f64(),
                client_cpu.as_secs_f64() * 1e6 / r.ops.max(1) as f64,
            );
            Ok(())
        };
        let before = (cpu(&pid)?, cpu("self")?);
        let (put, written) = http_phase(
            &server,
            &setup,
            Op::Put,
            run,
            n,
            secs,
            &ctx.pages,
            &Arc::new(Vec::new()),
        )
        .await?;
        println!(
            "SERVER {name} HTTP PUT /v1/collections/{{c}}/objects/{{o}}/versions/1/pages/{{i}}, {n} connections: {}",
            put.describe()
        );
        cpu_phase("PUT", before, &put)?;
        let (_, hwm_put) = memory(&pid)?;
        let targets = Arc::new(written_list(&written));
        let before = (cpu(&pid)?, cpu("self")?);
        let (get, _) = http_phase(
            &server, &setup, Op::Get, run, n, secs, &ctx.pages, &targets,
        )
        .await?;
        println!(
            "SERVER {name} HTTP GET …/pages/{{i}}, {n} connections, random among the {} written: {}",
            targets.len(),
            get.describe()
        );
        cpu_phase("GET", before, &get)?;
        let (_, hwm_get) = memory(&pid)?;
        println!(
            "RSS {name} server child peak (VmHWM): {} after the PUT load, {} after the GET load (idle {})",
            mib(hwm_put),
            mib(hwm_get),
            mib(rss_idle)
        );
        let http_login = if logins {
            let r = http_logins(
                &server,
                &setup.name,
                &ctx.account.secret,
                LOGIN_CONNECTIONS,
                ctx.knobs.login_secs,
            )
            .await?;
            println!(
                "LOGIN {name} HTTP POST /v1/sessions, {LOGIN_CONNECTIONS} connections, {} iterations: {} logins in {:.2} s = {:.1}/s, p50 {}, p99 {}",
                ctx.policy.iterations(),
                r.ops,
                r.elapsed.as_secs_f64(),
                r.rate(),
                ms(r.p50()),
                ms(r.p99())
            );
            Some(r)
        } else {
            None
        };
        // Clean up (matters on PostgreSQL, whose database outlives the run).
        let (status, _) = send(
            &mut connect(server.addr).await?,
            &server,
            Method::DELETE,
            &format!("/v1/collections/{}", setup.collection),
            Some(&setup.auth),
            None,
            Bytes::new(),
        )
        .await?;
        if status != StatusCode::NO_CONTENT {
            println!("SERVER {name}: deleting the benchmark collection answered {status}");
        }
        Ok::<_, Error>(BackendResult {
            name,
            engine,
            http: [put, get],
            rss_idle,
            hwm_put,
            hwm_get,
            http_login,
        })
    })?;
    match Arc::try_unwrap(server) {
        Ok(server) => server.stop()?,
        Err(_) => return Err("the server handle is still shared".into()),
    }
    for (op, (e, h)) in [Op::Put, Op::Get]
        .iter()
        .zip(out.engine.iter().zip(out.http.iter()))
    {
        let ratio = h.rate() / e.rate();
        println!(
            "RATIO {name} {} HTTP/engine = {ratio:.2} ({:.0}/s vs {:.0}/s; goal >= 0.5: {}); HTTP p99 {} (goal < 50 ms: {}); p50 {} vs engine {}",
            op.name(),
            h.rate(),
            e.rate(),
            verdict(ratio >= 0.5),
            ms(h.p99()),
            verdict(h.p99() < Duration::from_millis(50)),
            ms(h.p50()),
            ms(e.p50()),
        );
    }
    Ok(out)
}

fn verdict(met: bool) -> &'static str {
    if met {
        "met"
    } else {
        "NOT met"
    }
}

fn bench_sled(ctx: &Ctx) -> Result<BackendResult> {
    let dir = tempfile::Builder::new()
        .prefix("vault-server-bench-")
        .tempdir_in(&ctx.knobs.dir)?;
    let engine = {
        let backend = SledBackend::open(dir.path().join("engine"))?;
        engine_reference(ctx, "sled", &backend)?
    };
    let (rss, hwm) = memory("self")?;
    println!(
        "RSS sled engine reference (this process, before any HTTP; includes the 4 MiB page pool and the latency lists): VmHWM {}, VmRSS {} after closing the store",
        mib(hwm),
        mib(rss)
    );
    // The engine's data goes before the server starts, so both see the same disk.
    std::fs::remove_dir_all(dir.path().join("engine"))?;
    let store = dir.path().join("server");
    http_load(ctx, "sled", "sled", path_str(&store)?, &[], engine, true)
}

fn path_str(p: &Path) -> Result<&str> {
    p.to_str()
        .ok_or_else(|| format!("not a UTF-8 path: {}", p.display()).into())
}

/// The child's PostgreSQL schema.
#[cfg(feature = "postgres")]
const CHILD_SCHEMA_ENV: &str = "VAULT_BENCH_SERVER_SCHEMA";

/// The connection pool size of both the engine reference and the server
/// (`VAULT_BENCH_PG_POOL`, default 16).
#[cfg(feature = "postgres")]
fn pg_pool() -> Result<u32> {
    Ok(env_number("VAULT_BENCH_PG_POOL", 16)?.min(256) as u32)
}

#[cfg(feature = "postgres")]
fn pg_connect(url: &str, schema: &str) -> Result<vault_server::store::PgBackend> {
    Ok(vault_server::store::PgBackend::connect(
        url,
        Some(schema),
        pg_pool()?,
    )?)
}

/// A fresh schema for one run, dropped (with everything in it) when this goes out of scope.
#[cfg(feature = "postgres")]
struct PgSchema {
    url: String,
    name: String,
}

#[cfg(feature = "postgres")]
impl PgSchema {
    fn new(url: &str) -> Self {
        let mut b = [0u8; 6];
        OsRng.fill_bytes(&mut b);
        Self {
            url: url.to_owned(),
            name: format!("vault_bench_{}", HEXLOWER.encode(&b)),
        }
    }
}

#[cfg(feature = "postgres")]
impl Drop for PgSchema {
    fn drop(&mut self) {
        let dropped = postgres::Client::connect(&self.url, postgres::NoTls).and_then(|mut c| {
            c.batch_execute(&format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", self.name))
        });
        if let Err(e) = dropped {
            eprintln!(
                "server bench: could not drop the benchmark schema {}: {e}",
                self.name
            );
        }
    }
}

#[cfg(feature = "postgres")]
fn bench_postgres(ctx: &Ctx, url: &str) -> Result<Option<BackendResult>> {
    let schema = PgSchema::new(url);
    println!(
        "SETUP postgres: schema {} (dropped at the end), a pool of {} connections in the engine reference and in the server",
        schema.name,
        pg_pool()?
    );
    let engine = {
        let backend = pg_connect(url, &schema.name)?;
        engine_reference(ctx, "postgres", &backend)?
    };
    let env = [(CHILD_SCHEMA_ENV, schema.name.as_str())];
    let result = http_load(ctx, "postgres", "postgres", url, &env, engine, false)?;
    Ok(Some(result))
}

#[cfg(not(feature = "postgres"))]
fn bench_postgres(_: &Ctx, _: &str) -> Result<Option<BackendResult>> {
    println!(
        "SKIP postgres: VAULT_BENCH_DATABASE_URL is set but this build has no PostgreSQL support (cargo bench -p vault-benches --features postgres --bench server)"
    );
    Ok(None)
}

// ---------------------------------------------------------------------------------------
// Login verifications in-process.

/// `Verifier::verify` at the calibrated cost on `threads` threads for `secs`: how many,
/// per second of wall-clock time, and per CPU-second this process used meanwhile (what one
/// core would give if it were not shared).
fn verifications(
    policy: &VerifierPolicy,
    secret: &LoginSecret,
    threads: usize,
    secs: Duration,
) -> Result<(u64, f64, f64)> {
    let verifier = Verifier::create(&mut OsRng, secret, policy);
    let cpu_before = cpu("self")?;
    let start = Instant::now();
    let deadline = start + secs;
    let count: u64 = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let verifier = &verifier;
                s.spawn(move || {
                    let mut n = 0u64;
                    while Instant::now() < deadline {
                        assert!(verifier.verify(secret), "the verifier refused its secret");
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a verification thread panicked"))
            .sum()
    });
    let wall = count as f64 / start.elapsed().as_secs_f64();
    let used = (cpu("self")? - cpu_before).as_secs_f64();
    Ok((count, wall, count as f64 / used.max(1e-9)))
}

// ---------------------------------------------------------------------------------------

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".to_owned())
}

fn bench_main() -> Result<()> {
    let knobs = Knobs::from_env()?;
    let bench_start = Instant::now();
    println!(
        "SETUP {} cores, 1-minute load average {} at start; {} connections / engine threads, {:.0} s per load phase, {:.0} s per login phase, load generator on {} thread(s); sled directories under {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load_average(),
        knobs.connections,
        knobs.secs.as_secs_f64(),
        knobs.login_secs.as_secs_f64(),
        knobs.client_threads,
        knobs.dir.display(),
    );
    let t = Instant::now();
    let policy = VerifierPolicy::calibrate(DEFAULT_TARGET);
    println!(
        "SETUP login verifier calibrated to {} iterations for a target of {} ms (calibration took {})",
        policy.iterations(),
        DEFAULT_TARGET.as_millis(),
        ms(t.elapsed())
    );
    let t = Instant::now();
    let account = Account::new()?;
    println!(
        "SETUP keyring generated and sealed at 600,000 iterations in {}",
        ms(t.elapsed())
    );
    let client = if knobs.client_threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(knobs.client_threads)
            .enable_all()
            .build()?
    };
    let ctx = Ctx {
        pages: Arc::new(Pages::new()),
        account,
        policy,
        client,
        knobs,
    };

    let mut results = vec![bench_sled(&ctx)?];
    match &ctx.knobs.database_url {
        Some(url) => results.extend(bench_postgres(&ctx, url)?),
        None => println!(
            "SKIP postgres: VAULT_BENCH_DATABASE_URL is not set (scripts/postgres.sh prints a URL)"
        ),
    }

    let secret = ctx.account.login_secret()?;
    let (n1, one, per_cpu) = verifications(&ctx.policy, &secret, 1, ctx.knobs.login_secs)?;
    let (n2, two, _) = verifications(&ctx.policy, &secret, 2, ctx.knobs.login_secs)?;
    println!(
        "LOGIN in-process Verifier::verify at {} iterations: one thread {one:.1}/s ({n1} in {:.0} s), two threads {two:.1}/s ({n2}): {:.2}x; per CPU-second used {per_cpu:.1} ({} of CPU each)",
        ctx.policy.iterations(),
        ctx.knobs.login_secs.as_secs_f64(),
        two / one.max(1e-9),
        ms(Duration::from_secs_f64(1.0 / per_cpu.max(1e-9))),
    );

    println!("{}", summary(&results, [one, two, per_cpu], &ctx));
    println!(
        "DONE in {:.0} s; 1-minute load average {} at the end",
        bench_start.elapsed().as_secs_f64(),
        load_average()
    );
    Ok(())
}

fn summary(results: &[BackendResult], logins: [f64; 3], ctx: &Ctx) -> String {
    let [one, two, per_cpu] = logins;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "\n| backend | op | engine ops/s | engine p50 / p99 | HTTP req/s | HTTP p50 / p99 | ratio (goal ≥ 0.5) | p99 < 50 ms |"
    );
    let _ = writeln!(s, "|---|---|---:|---|---:|---|---|---|");
    for r in results {
        for (i, op) in [Op::Put, Op::Get].iter().enumerate() {
            let (e, h) = (&r.engine[i], &r.http[i]);
            let ratio = h.rate() / e.rate();
            let _ = writeln!(
                s,
                "| {} | {} | {:.0} | {} / {} | {:.0} | {} / {} | {ratio:.2} ({}) | {} |",
                r.name,
                op.name(),
                e.rate(),
                ms(e.p50()),
                ms(e.p99()),
                h.rate(),
                ms(h.p50()),
                ms(h.p99()),
                verdict(ratio >= 0.5),
                verdict(h.p99() < Duration::from_millis(50)),
            );
        }
    }
    let _ = writeln!(s);
    for r in results {
        let _ = writeln!(
            s,
            "server RSS ({}): idle {}, peak {} (PUT) / {} (GET)",
            r.name,
            mib(r.rss_idle),
            mib(r.hwm_put),
            mib(r.hwm_get)
        );
        if let Some(l) = &r.http_login {
            let _ = writeln!(
                s,
                "logins over HTTP ({}, {LOGIN_CONNECTIONS} connections): {:.1}/s, p50 {}, p99 {}",
                r.name,
                l.rate(),
                ms(l.p50()),
                ms(l.p99())
            );
        }
    }
    let _ = write!(
        s,
        "login verifications in-process at {} iterations: {one:.1}/s on one thread, {two:.1}/s on two; {per_cpu:.1} per CPU-second",
        ctx.policy.iterations()
    );
    s
}
