//! `vault mfa …` against an in-process server (as `tests/cli.rs`: TLS with a self-signed
//! certificate, a temporary sled directory, a fast login verifier, the test-only fast KDF).
//! The server's clock is manual, started at the real time (the command checks the session's
//! expiry against its own clock), so that TOTP steps move only when the test says: TOTP is
//! enabled and confirmed, a wrong code is exit 4, a login without a factor is exit 4 and
//! with the right code works, new backup codes and turning MFA off need a factor.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use tokio::sync::oneshot;
use vault_server::api::{self, AppState, Clock};
use vault_server::auth::otp::{self, OtpAlgorithm};
use vault_server::auth::VerifierPolicy;
use vault_server::config::Config;
use vault_server::store::SledBackend;
use vault_server::tls::{self, SelfSigned, TlsServer};

/// A TLS server on 127.0.0.1 over a fresh sled directory, with a manual clock.
struct TestServer {
    runtime: tokio::runtime::Runtime,
    url: String,
    ca_file: PathBuf,
    clock: Clock,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl TestServer {
    fn start(work: &Path) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let backend = SledBackend::open(work.join("server-data")).unwrap();
        let decoy = api::load_decoy_key(&backend).unwrap();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let clock = Clock::manual(now);
        let state = Arc::new(
            AppState::new(
                backend,
                VerifierPolicy::insecure_test_policy(1_000),
                decoy,
                Config::default(),
            )
            .with_clock(clock.clone()),
        );
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let port = listener.local_addr().unwrap().port();
        let (stop, stopped) = oneshot::channel::<()>();
        let shutdown = async {
            let _ = stopped.await;
        };
        let names: Vec<String> = tls::DEFAULT_CERT_NAMES.map(str::to_owned).to_vec();
        let pair = SelfSigned::generate(&names, 1).unwrap();
        let server =
            TlsServer::from_pem(pair.cert_pem().as_bytes(), pair.key_pem().as_bytes()).unwrap();
        let task = runtime.spawn(tls::serve_tls(listener, state, server, shutdown));
        let ca_file = work.join("server-cert.pem");
        std::fs::write(&ca_file, pair.cert_pem()).unwrap();
        Self {
            runtime,
            url: format!("https://localhost:{port}"),
            ca_file,
            clock,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// The TOTP code of `secret` at the server's time.
    fn totp(&self, secret: &[u8]) -> String {
        otp::totp(OtpAlgorithm::Sha1, secret, self.clock.now(), 30, 6)
    }

    /// The next TOTP step (a code is accepted once).
    fn next_step(&self) {
        self.clock.advance(30);
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = self
                .runtime
                .block_on(async { tokio::time::timeout(Duration::from_secs(10), task).await });
        }
    }
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(self.stdout.trim())
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?} / {}", self.stdout, self.stderr))
    }

    fn ok(self) -> Self {
        assert_eq!(
            self.code, 0,
            "stdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        self
    }
}

/// Runs `vault --dir DIR ARGS` with the password in VAULT_PASSWORD.
fn vault(dir: &Path, password: &str, args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_vault"))
        .arg("--dir")
        .arg(dir)
        .args(args)
        .env("VAULT_INSECURE_FAST_KDF", "1")
        .env("VAULT_PASSWORD", password)
        .env_remove("VAULT_NEW_PASSWORD")
        .env_remove("VAULT_RECOVERY_CODE")
        .env_remove("VAULT_DIR")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// RFC 4648 base32 without padding (what the server sends), for the test only.
fn base32(text: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let (mut bits, mut acc, mut out) = (0u32, 0u64, Vec::new());
    for c in text.bytes() {
        let v = ALPHABET.iter().position(|&a| a == c).expect("base32") as u64;
        acc = (acc << 5) | v;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

#[test]
fn enable_confirm_login_and_disable() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let server = TestServer::start(w);
    let ca = server.ca_file.to_str().unwrap().to_owned();
    let dir = w.join("alice");
    let pw = "alice pass";
    let run = |args: &[&str]| vault(&dir, pw, args);

    run(&[
        "register",
        "-u",
        "alice",
        "--server",
        &server.url,
        "--ca-file",
        &ca,
    ])
    .ok();
    let status = run(&["--json", "mfa", "status"]).ok().json();
    assert_eq!(status["enabled"], false);
    assert_eq!(status["pending"], Value::Null);

    // Enable: the secret and the otpauth URI, once.
    let enable = run(&["--json", "mfa", "enable"]).ok().json();
    assert_eq!(enable["kind"], "totp");
    assert_eq!(enable["digits"], 6);
    assert_eq!(enable["period"], 30);
    let secret_text = enable["secret"].as_str().unwrap().to_owned();
    let uri = enable["uri"].as_str().unwrap();
    assert!(uri.starts_with("otpauth://totp/"));
    assert!(uri.contains(&secret_text));
    let secret = base32(&secret_text);
    assert_eq!(secret.len(), 20);
    assert_eq!(
        run(&["--json", "mfa", "status"]).ok().json()["pending"],
        "totp"
    );

    // A wrong code: exit 4, and the code is not echoed.
    let right = server.totp(&secret);
    let wrong = if right == "000000" {
        "111111"
    } else {
        "000000"
    };
    let r = run(&["--json", "mfa", "confirm", wrong]);
    assert_eq!(r.code, 4, "{}", r.stderr);
    assert_eq!(r.json()["error"], "mfa");
    assert!(!r.stdout.contains(&secret_text) && !r.stderr.contains(&secret_text));

    // The right code: TOTP is on, ten backup codes shown once.
    let confirm = run(&["--json", "mfa", "confirm", &right]).ok().json();
    assert_eq!(confirm["enabled"], true);
    let codes: Vec<String> = confirm["backup_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(codes.len(), 10);
    let status = run(&["--json", "mfa", "status"]).ok().json();
    assert_eq!(status["enabled"], true);
    assert_eq!(status["factors"][0]["kind"], "totp");
    assert_eq!(status["backup_codes_left"], 10);

    // Login: without a factor exit 4; a wrong code exit 4; the right code works.
    server.next_step();
    let r = run(&["--json", "login"]);
    assert_eq!(r.code, 4, "{}", r.stderr);
    assert_eq!(r.json()["error"], "mfa");
    let r = run(&["login", "--totp", wrong]);
    assert_eq!(r.code, 4, "{}", r.stderr);
    run(&["login", "--totp", &server.totp(&secret)]).ok();
    // A backup code works once.
    let login = run(&["--json", "login", "--backup-code", &codes[0]])
        .ok()
        .json();
    assert_eq!(login["backup_codes_left"], 9);
    let r = run(&["login", "--backup-code", &codes[0]]);
    assert_eq!(r.code, 4, "{}", r.stderr);

    // Sensitive commands need a factor.
    let r = run(&["mfa", "backup-codes"]);
    assert_eq!(r.code, 4, "{}", r.stderr);
    let r = run(&["mfa", "disable"]);
    assert_eq!(r.code, 4, "{}", r.stderr);
    server.next_step();
    let fresh = run(&[
        "--json",
        "mfa",
        "backup-codes",
        "--totp",
        &server.totp(&secret),
    ])
    .ok()
    .json();
    assert_eq!(fresh["backup_codes"].as_array().unwrap().len(), 10);
    // The old codes no longer work; a new one turns MFA off.
    let r = run(&["mfa", "disable", "--backup-code", &codes[1]]);
    assert_eq!(r.code, 4, "{}", r.stderr);
    let new_code = fresh["backup_codes"][0].as_str().unwrap().to_owned();
    let off = run(&["--json", "mfa", "disable", "--backup-code", &new_code])
        .ok()
        .json();
    assert_eq!(off["disabled"], true);
    assert_eq!(
        run(&["--json", "mfa", "status"]).ok().json()["enabled"],
        false
    );
    run(&["login"]).ok();
}
