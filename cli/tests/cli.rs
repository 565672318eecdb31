//! The `vault` binary against an in-process server (TLS with a self-signed certificate, a
//! temporary sled directory, a fast login verifier), each user with their own state
//! directory, the keyrings sealed with the test-only 10-iteration KDF
//! (`VAULT_INSECURE_FAST_KDF=1`; the binary is built with `danger-insecure-test-kdf` for the
//! tests only).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::oneshot;
use vault_server::api::{self, AppState};
use vault_server::auth::VerifierPolicy;
use vault_server::config::Config;
use vault_server::store::SledBackend;
use vault_server::tls::{self, SelfSigned, TlsServer};

/// A TLS server on 127.0.0.1 over a fresh sled directory, on its own runtime.
struct TestServer {
    runtime: tokio::runtime::Runtime,
    url: String,
    /// The certificate (PEM) in a file, for `--ca-file`.
    ca_file: PathBuf,
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
        let state = Arc::new(AppState::new(
            backend,
            VerifierPolicy::insecure_test_policy(1_000),
            decoy,
            Config::default(),
        ));
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
            stop: Some(stop),
            task: Some(task),
        }
    }

    fn stop(&mut self) {
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

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One user's device: a state directory and a password.
struct Device {
    dir: PathBuf,
    password: String,
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

impl Device {
    fn new(work: &Path, name: &str, password: &str) -> Self {
        Self {
            dir: work.join(name),
            password: password.to_owned(),
        }
    }

    /// Runs `vault --dir DIR ARGS` with the password in VAULT_PASSWORD.
    fn run(&self, args: &[&str]) -> Run {
        self.run_with(args, Some(&self.password), None)
    }

    fn run_with(&self, args: &[&str], env_password: Option<&str>, stdin: Option<&str>) -> Run {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_vault"));
        cmd.arg("--dir")
            .arg(&self.dir)
            .args(args)
            .env("VAULT_INSECURE_FAST_KDF", "1")
            .env_remove("VAULT_PASSWORD")
            .env_remove("VAULT_NEW_PASSWORD")
            .env_remove("VAULT_RECOVERY_CODE")
            .env_remove("VAULT_DIR")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .stdin(Stdio::piped());
        if let Some(p) = env_password {
            cmd.env("VAULT_PASSWORD", p);
        }
        let mut child = cmd.spawn().unwrap();
        {
            let mut input = child.stdin.take().unwrap();
            if let Some(s) = stdin {
                input.write_all(s.as_bytes()).unwrap();
            }
        }
        let Output {
            status,
            stdout,
            stderr,
        } = child.wait_with_output().unwrap();
        Run {
            code: status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
        }
    }
}

fn tree(root: &Path) {
    std::fs::create_dir_all(root.join("sub/deeper")).unwrap();
    std::fs::write(root.join("notes.txt"), b"meeting at noon\n").unwrap();
    std::fs::write(
        root.join("sub/data.bin"),
        (0..70_000u32).map(|i| (i % 251) as u8).collect::<Vec<_>>(),
    )
    .unwrap();
    std::fs::write(root.join("sub/deeper/empty"), b"").unwrap();
}

#[test]
fn the_whole_flow() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let mut server = TestServer::start(w);
    let ca = server.ca_file.to_str().unwrap().to_owned();
    let alice = Device::new(w, "alice", "alice pass 1");
    let bob = Device::new(w, "bob", "bob pass 2");

    // Register both (password on stdin for alice, in the environment for bob).
    let reg = alice
        .run_with(
            &[
                "--json",
                "--password-stdin",
                "register",
                "--user",
                "alice",
                "--server",
                &server.url,
                "--ca-file",
                &ca,
            ],
            None,
            Some("alice pass 1\n"),
        )
        .ok()
        .json();
    let recovery_code = reg["recovery_code"].as_str().unwrap().to_owned();
    let alice_fp = reg["fingerprint"].as_str().unwrap().to_owned();
    assert_eq!(alice_fp.len(), 64);
    bob.run(&[
        "register",
        "-u",
        "bob",
        "--server",
        &server.url,
        "--ca-file",
        &ca,
    ])
    .ok();
    let bob_fp = bob.run(&["--json", "fingerprint"]).ok().json()["fingerprint"]
        .as_str()
        .unwrap()
        .to_owned();
    // The session file is private.
    let mode = std::fs::metadata(alice.dir.join("session.json"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let status = alice.run(&["--json", "status"]).ok().json();
    assert_eq!(status["logged_in"], true);
    assert_eq!(status["user"], "alice");

    // Alice stores a directory, lists it and gets it back byte for byte.
    let src = w.join("src").join("photos");
    tree(&src);
    let put = alice
        .run(&["--json", "put", src.to_str().unwrap(), "-c", "trip"])
        .ok()
        .json();
    assert_eq!(put["objects"].as_array().unwrap().len(), 3);
    let ls = alice.run(&["--json", "ls", "-c", "trip"]).ok().json();
    let mut names: Vec<&str> = ls["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["name"].as_str().unwrap())
        .collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "photos/notes.txt",
            "photos/sub/data.bin",
            "photos/sub/deeper/empty"
        ]
    );
    let back = w.join("back");
    alice
        .run(&["get", "--all", "-o", back.to_str().unwrap(), "-c", "trip"])
        .ok();
    for rel in ["notes.txt", "sub/data.bin", "sub/deeper/empty"] {
        assert_eq!(
            std::fs::read(back.join("photos").join(rel)).unwrap(),
            std::fs::read(src.join(rel)).unwrap(),
            "{rel}"
        );
    }
    let one = w.join("one.txt");
    alice
        .run(&[
            "get",
            "photos/notes.txt",
            "-o",
            one.to_str().unwrap(),
            "-c",
            "trip",
        ])
        .ok();
    assert_eq!(std::fs::read(&one).unwrap(), b"meeting at noon\n");

    // An object name that would leave the output directory is never written.
    let evil = w.join("evil.txt");
    std::fs::write(&evil, b"x").unwrap();
    alice
        .run(&[
            "put",
            evil.to_str().unwrap(),
            "-c",
            "odd",
            "--prefix",
            "../",
        ])
        .ok();
    let out_dir = w.join("out").join("inner");
    let r = alice.run(&["get", "--all", "-o", out_dir.to_str().unwrap(), "-c", "odd"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(!w.join("out").join("evil.txt").exists());

    // Server trust: a wrong certificate pin is 7, no trust anchor at all is 5.
    let carol = Device::new(w, "carol", "carol pass");
    let r = carol.run(&[
        "register",
        "-u",
        "carol",
        "--server",
        &server.url,
        "--pin-sha256",
        &"ab".repeat(32),
    ]);
    assert_eq!(r.code, 7, "{}", r.stderr);
    let dave = Device::new(w, "dave", "dave pass");
    let r = dave.run(&["register", "-u", "dave", "--server", &server.url]);
    assert_eq!(r.code, 5, "{}", r.stderr);

    // Sharing: a wrong fingerprint is refused (7), the right one shares.
    let wrong = "00".repeat(32);
    let r = alice.run(&["share", "trip", "bob", "--yes", "--fingerprint", &wrong]);
    assert_eq!(r.code, 7, "{}", r.stderr);
    let r = alice.run(&["share", "trip", "bob", "--yes"]);
    assert_eq!(r.code, 2, "--yes without --fingerprint is a usage error");
    alice
        .run(&["share", "trip", "bob", "--yes", "--fingerprint", &bob_fp])
        .ok();

    // Bob trusts Alice (after comparing her fingerprint), syncs, lists and reads.
    bob.run(&["trust", "alice", "--yes", "--fingerprint", &alice_fp])
        .ok();
    let sync = bob.run(&["--json", "sync"]).ok().json();
    let shared = sync["collections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "trip")
        .expect("the shared collection");
    assert_eq!(shared["own"], false);
    assert_eq!(shared["added"].as_array().unwrap().len(), 3);
    let ls = bob.run(&["ls", "-c", "trip"]).ok();
    assert!(ls.stdout.contains("photos/notes.txt"), "{}", ls.stdout);
    let out = bob
        .run(&[
            "get",
            "photos/notes.txt",
            "-o",
            "-",
            "-c",
            "trip",
            "--owner",
            "alice",
        ])
        .ok();
    assert_eq!(out.stdout, "meeting at noon\n");

    // Groups: Alice creates one, adds Bob (pinned above: no question), shares another
    // collection with it; Bob reads it through the group.
    let group = alice.run(&["--json", "groups", "create"]).ok().json()["group"]
        .as_str()
        .unwrap()
        .to_owned();
    alice.run(&["groups", "add", &group, "bob"]).ok();
    let members = alice.run(&["--json", "groups", "ls", &group]).ok().json();
    assert_eq!(members["members"].as_array().unwrap().len(), 2);
    let listed = bob.run(&["--json", "groups", "ls"]).ok().json();
    assert!(listed["groups"]
        .as_array()
        .unwrap()
        .iter()
        .any(|g| g == group.as_str()));
    let team_file = w.join("plan.txt");
    std::fs::write(&team_file, b"the team plan").unwrap();
    alice
        .run(&["put", team_file.to_str().unwrap(), "-c", "team"])
        .ok();
    alice.run(&["groups", "share", "team", &group]).ok();
    let out = bob.run(&["get", "plan.txt", "-o", "-", "-c", "team"]).ok();
    assert_eq!(out.stdout, "the team plan");

    // Unsharing: done once, then there is nothing to unshare (8).
    alice.run(&["unshare", "trip", "bob"]).ok();
    let r = alice.run(&["unshare", "trip", "bob"]);
    assert_eq!(r.code, 8, "{}", r.stderr);

    // A wrong password: exit 3, and the password is not in the output.
    let r = alice.run_with(&["ls", "-c", "trip"], Some("not the password xyzzy"), None);
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(!r.stderr.contains("xyzzy") && !r.stdout.contains("xyzzy"));
    let r = alice.run_with(
        &["--json", "--password-stdin", "login"],
        None,
        Some("wrong horse xyzzy\n"),
    );
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(!r.stderr.contains("xyzzy") && !r.stdout.contains("xyzzy"));
    assert_eq!(r.json()["error"], "authentication_failed");

    // rm, then get: not found (8).
    alice.run(&["rm", "photos/notes.txt", "-c", "trip"]).ok();
    let r = alice.run(&["get", "photos/notes.txt", "-o", "-", "-c", "trip"]);
    assert_eq!(r.code, 8, "{}", r.stderr);
    let r = alice.run(&["ls", "-c", "no-such-collection"]);
    assert_eq!(r.code, 8, "{}", r.stderr);

    // passwd, then a login with the new password; the old one fails.
    alice
        .run_with(
            &["--password-stdin", "passwd"],
            None,
            Some("alice pass 1\nalice pass 3\n"),
        )
        .ok();
    let r = alice.run_with(&["login"], Some("alice pass 1"), None);
    assert_eq!(r.code, 3, "{}", r.stderr);
    alice.run_with(&["login"], Some("alice pass 3"), None).ok();
    let ls = alice
        .run_with(&["--json", "ls", "-c", "trip"], Some("alice pass 3"), None)
        .ok()
        .json();
    assert_eq!(ls["objects"].as_array().unwrap().len(), 2);

    // Recovery with the code printed at registration: a new password and a new code.
    let fresh = Device::new(w, "alice-new-laptop", "alice pass 4");
    let rec = fresh
        .run_with(
            &[
                "--json",
                "--password-stdin",
                "recover",
                "-u",
                "alice",
                "--server",
                &server.url,
                "--ca-file",
                &ca,
            ],
            None,
            Some(&format!("{recovery_code}\nalice pass 4\n")),
        )
        .ok()
        .json();
    let new_code = rec["recovery_code"].as_str().unwrap();
    assert_ne!(new_code, recovery_code);
    assert_eq!(rec["logged_in"], true);
    let ls = fresh.run(&["--json", "ls", "-c", "trip"]).ok().json();
    assert_eq!(ls["objects"].as_array().unwrap().len(), 2);
    // The old code no longer works, and is not echoed.
    let r = fresh.run_with(
        &["--password-stdin", "recover", "-u", "alice"],
        None,
        Some(&format!("{recovery_code}\nalice pass 5\n")),
    );
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(!r.stderr.contains(&recovery_code));

    // Logout ends the session: commands then need a login.
    fresh.run(&["logout", "--all"]).ok();
    assert!(!fresh.dir.join("session.json").exists());
    let r = fresh.run(&["ls"]);
    assert_eq!(r.code, 3, "{}", r.stderr);

    // The server is gone: what bob's sync read is listed from his cache (with a warning);
    // the discovery of shares needs the server: unreachable (5).
    server.stop();
    let r = bob.run(&["--json", "ls", "-c", "trip"]).ok();
    assert!(r.stderr.contains("server unreachable"), "{}", r.stderr);
    let r = bob.run(&["--json", "ls", "--collections"]);
    assert_eq!(r.code, 5, "{}", r.stderr);
    assert_eq!(r.json()["error"], "unreachable");
}

#[test]
fn usage_errors_exit_2() {
    let work = tempfile::tempdir().unwrap();
    let d = Device::new(work.path(), "x", "pw");
    assert_eq!(d.run(&["no-such-command"]).code, 2);
    assert_eq!(d.run(&["put"]).code, 2);
    assert_eq!(d.run(&["get", "a", "--all"]).code, 2);
    let help = d.run(&["--help"]);
    assert_eq!(help.code, 0);
    assert!(help.stdout.contains("Exit codes"));
    // Not logged in: 3 (before any network).
    assert_eq!(d.run(&["ls"]).code, 3);
}

#[test]
fn tampering_by_the_server_is_exit_6() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let server = TestServer::start(w);
    let ca = server.ca_file.to_str().unwrap().to_owned();
    let alice = Device::new(w, "alice", "alice pass");
    alice
        .run(&[
            "register",
            "-u",
            "alice",
            "--server",
            &server.url,
            "--ca-file",
            &ca,
        ])
        .ok();
    let file = w.join("report.bin");
    std::fs::write(&file, vec![42u8; 100_000]).unwrap();
    alice.run(&["put", file.to_str().unwrap()]).ok();
    drop(server);

    // The operator flips bits in every stored page (the pack files of docs/spec/storage.md).
    let mut flipped = 0;
    for entry in std::fs::read_dir(w.join("server-data").join("packs")).unwrap() {
        let path = entry.unwrap().path();
        let mut bytes = std::fs::read(&path).unwrap();
        // Past the pages' version bytes (altered, those are "unsupported format", exit 1).
        for b in bytes.iter_mut().skip(64).step_by(97) {
            *b ^= 0x01;
            flipped += 1;
        }
        std::fs::write(&path, bytes).unwrap();
    }
    assert!(flipped > 0, "no pack file to alter");

    let server = TestServer::start(w);
    alice.run(&["login", "--server", &server.url]).ok();
    let target = w.join("report.out");
    let r = alice.run(&[
        "--json",
        "get",
        "report.bin",
        "-o",
        target.to_str().unwrap(),
    ]);
    assert_eq!(r.code, 6, "{}", r.stderr);
    assert_eq!(r.json()["error"], "integrity");
    assert!(
        r.stderr.contains("tampering") || r.stderr.contains("integrity"),
        "{}",
        r.stderr
    );
    // Nothing of the altered object was written.
    assert!(!target.exists());
    assert!(std::fs::read_dir(w).unwrap().all(|e| !e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .contains("vault-partial")));
}

/// The first 16 random bytes asked are `prefix`, the rest from the OS: a keyring generated
/// with it has the keyring id `prefix` and keys of its own (what a server substituting a
/// user's key would publish).
struct FixedPrefix {
    prefix: Vec<u8>,
}

impl rand_core::RngCore for FixedPrefix {
    fn next_u32(&mut self) -> u32 {
        rand_core::OsRng.next_u32()
    }
    fn next_u64(&mut self) -> u64 {
        rand_core::OsRng.next_u64()
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        let n = dest.len().min(self.prefix.len());
        dest[..n].copy_from_slice(&self.prefix[..n]);
        self.prefix.drain(..n);
        rand_core::OsRng.fill_bytes(&mut dest[n..]);
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}
impl rand_core::CryptoRng for FixedPrefix {}

/// **A changed identity key (THREATS C2, C3).** Alice pinned Bob's key when she shared
/// with him; the operator then replaces Bob's published identity with an impostor's (same
/// id, other keys). Alice's next `share` to Bob is exit 7 (`key_changed`) naming both
/// fingerprints and hands nothing over; `trust --accept-change` with a wrong fingerprint is
/// exit 7 too; with the offered one (after comparing it in person) the new key is pinned
/// and the share goes ahead.
#[test]
fn a_changed_identity_key_is_exit_7_until_accepted() {
    use vault_server::store::AccountStore;

    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let server = TestServer::start(w);
    let ca = server.ca_file.to_str().unwrap().to_owned();
    let alice = Device::new(w, "alice", "alice pass");
    let bob = Device::new(w, "bob", "bob pass");
    for (d, name) in [(&alice, "alice"), (&bob, "bob")] {
        d.run(&[
            "register",
            "-u",
            name,
            "--server",
            &server.url,
            "--ca-file",
            &ca,
        ])
        .ok();
    }
    let file = w.join("plan.txt");
    std::fs::write(&file, b"the plan").unwrap();
    for c in ["trip", "later"] {
        alice.run(&["put", "-c", c, file.to_str().unwrap()]).ok();
    }
    let bob_status = bob.run(&["--json", "status"]).ok().json();
    let bob_fp = bob_status["fingerprint"].as_str().unwrap().to_owned();
    let bob_id: [u8; 16] = hex::decode(bob_status["user_id"].as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    alice
        .run(&["share", "trip", "bob", "--yes", "--fingerprint", &bob_fp])
        .ok();
    drop(server);

    // The operator publishes an impostor's identity under Bob's id.
    let impostor = vault_keyring::Keyring::generate(
        &mut FixedPrefix {
            prefix: bob_id.to_vec(),
        },
        &vault_keyring::KeyringOptions::new(),
    )
    .unwrap();
    assert_eq!(impostor.id().as_bytes(), &bob_id);
    let bundle = impostor.identity_bundle(&mut rand_core::OsRng);
    let impostor_fp = hex::encode(bundle.fingerprint().as_bytes());
    {
        let backend = SledBackend::open(w.join("server-data")).unwrap();
        assert!(backend.set_identity(&bob_id, &bundle.to_bytes()).unwrap());
    }

    let server = TestServer::start(w);
    alice.run(&["login", "--server", &server.url]).ok();
    let r = alice.run(&["--json", "share", "later", "bob"]);
    assert_eq!(r.code, 7, "{}", r.stderr);
    assert_eq!(r.json()["error"], "key_changed");
    assert!(
        r.stderr
            .to_uppercase()
            .replace([' ', ':'], "")
            .contains(&impostor_fp.to_uppercase()),
        "the offered fingerprint is shown: {}",
        r.stderr
    );
    // Nothing was handed over: Bob (with his real key) finds "trip" but no "later".
    let alice_fp = alice.run(&["--json", "status"]).ok().json()["fingerprint"]
        .as_str()
        .unwrap()
        .to_owned();
    bob.run(&["login", "--server", &server.url]).ok();
    bob.run(&["trust", "alice", "--yes", "--fingerprint", &alice_fp])
        .ok();
    let sync = bob.run(&["--json", "sync"]).ok().json();
    let names: Vec<&str> = sync["collections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"trip") && !names.contains(&"later"),
        "{names:?}"
    );
    // A wrong fingerprint does not accept the change.
    let r = alice.run(&["trust", "bob", "--accept-change", "--fingerprint", &bob_fp]);
    assert_eq!(r.code, 7, "{}", r.stderr);
    let r = alice.run(&["share", "later", "bob"]);
    assert_eq!(r.code, 7, "still refused: {}", r.stderr);
    // Accepted with the fingerprint offered now: the new key is pinned, the share goes on.
    alice
        .run(&[
            "trust",
            "bob",
            "--accept-change",
            "--fingerprint",
            &impostor_fp,
        ])
        .ok();
    alice.run(&["share", "later", "bob"]).ok();
}
