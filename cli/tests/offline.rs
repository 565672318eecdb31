//! Offline use of the `vault` binary (docs/cli.md "Offline and the local cache"): a second
//! device of alice syncs (the change feed, then the new objects fetched into its cache); a
//! second sync reports exactly what was written since; the server is stopped, and `ls` and
//! `get` still work from the cache (same bytes, a warning on stderr only) while whatever
//! needs the server fails with exit 5, except `put` and `rm`, which are queued on the device;
//! the server comes back, `vault sync` sends them, and the other device sees them. Same
//! in-process server as `cli.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
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
    work: PathBuf,
    port: u16,
    /// The certificate and key (PEM), to come back with the same ones.
    pem: (String, String),
}

impl TestServer {
    fn start(work: &Path) -> Self {
        let names: Vec<String> = tls::DEFAULT_CERT_NAMES.map(str::to_owned).to_vec();
        let pair = SelfSigned::generate(&names, 1).unwrap();
        Self::start_with(
            work,
            0,
            (pair.cert_pem().to_owned(), pair.key_pem().to_owned()),
        )
    }

    /// The same server again (same data, port and certificate) after [`TestServer::stop`].
    fn restart(&mut self) {
        self.stop();
        let again = Self::start_with(&self.work, self.port, self.pem.clone());
        *self = again;
    }

    fn start_with(work: &Path, port: u16, pem: (String, String)) -> Self {
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
            .block_on(tokio::net::TcpListener::bind(("127.0.0.1", port)))
            .unwrap();
        let port = listener.local_addr().unwrap().port();
        let (stop, stopped) = oneshot::channel::<()>();
        let shutdown = async {
            let _ = stopped.await;
        };
        let server = TlsServer::from_pem(pem.0.as_bytes(), pem.1.as_bytes()).unwrap();
        let task = runtime.spawn(tls::serve_tls(listener, state, server, shutdown));
        let ca_file = work.join("server-cert.pem");
        std::fs::write(&ca_file, &pem.0).unwrap();
        Self {
            runtime,
            url: format!("https://localhost:{port}"),
            ca_file,
            stop: Some(stop),
            task: Some(task),
            work: work.to_path_buf(),
            port,
            pem,
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

fn names(v: &Value, field: &str) -> Vec<String> {
    let mut out: Vec<String> = v[field]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap().to_owned())
        .collect();
    out.sort_unstable();
    out
}

fn collection<'a>(sync: &'a Value, name: &str) -> &'a Value {
    sync["collections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no collection {name} in {sync}"))
}

/// Bytes that do not compress much.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[test]
fn a_synced_device_reads_offline() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let mut server = TestServer::start(w);
    let ca = server.ca_file.to_str().unwrap().to_owned();
    let laptop = Device::new(w, "laptop", "alice pass");
    let phone = Device::new(w, "phone", "alice pass");
    let server_args = ["--server", server.url.as_str(), "--ca-file", ca.as_str()];

    laptop
        .run(&[&["register", "--user", "alice"][..], &server_args[..]].concat())
        .ok();
    let files = w.join("files");
    std::fs::create_dir_all(&files).unwrap();
    let write = |name: &str, data: &[u8]| {
        let p = files.join(name);
        std::fs::write(&p, data).unwrap();
        p.to_str().unwrap().to_owned()
    };
    let mut expected: Vec<(String, Vec<u8>)> = vec![
        ("notes.txt".into(), b"meeting at noon\n".to_vec()),
        ("big.bin".into(), noise(300_000, 1)),
        ("empty".into(), Vec::new()),
    ];
    let paths: Vec<String> = expected.iter().map(|(n, d)| write(n, d)).collect();
    let mut put = vec!["put", "-c", "docs"];
    put.extend(paths.iter().map(String::as_str));
    laptop.run(&put).ok();
    laptop
        .run(&["put", "-c", "other", &write("x.txt", b"untouched")])
        .ok();

    // The phone logs in and syncs: everything is discovered and fetched.
    phone
        .run(&[&["login", "--user", "alice"][..], &server_args[..]].concat())
        .ok();
    let first = phone.run(&["--json", "sync"]).ok().json();
    assert_eq!(first["full"], true);
    assert_eq!(
        names(collection(&first, "docs"), "added"),
        ["big.bin", "empty", "notes.txt"]
    );
    assert_eq!(first["fetched"]["objects"], 4);
    assert!(first["fetched"]["pages"].as_u64().unwrap() >= 4);
    assert!(phone.dir.join("cache").is_dir());

    // Nothing new: the feed names nothing, nothing is fetched.
    let again = phone.run(&["--json", "sync"]).ok().json();
    assert_eq!(again["full"], false);
    assert_eq!(again["fetched"]["objects"], 0);
    for c in again["collections"].as_array().unwrap() {
        assert!(
            names(c, "added").is_empty() && names(c, "changed").is_empty(),
            "{again}"
        );
    }

    // The laptop adds two files and replaces one: the next sync reports exactly those.
    let new1 = noise(50_000, 2);
    let new2 = b"second new file".to_vec();
    let notes2 = b"meeting moved to two\n".to_vec();
    laptop
        .run(&[
            "put",
            "-c",
            "docs",
            &write("new1.bin", &new1),
            &write("new2.txt", &new2),
            &write("notes.txt", &notes2),
        ])
        .ok();
    expected.push(("new1.bin".into(), new1));
    expected.push(("new2.txt".into(), new2));
    expected[0].1 = notes2;
    let second = phone.run(&["--json", "sync"]).ok().json();
    assert_eq!(second["full"], false);
    let docs = collection(&second, "docs");
    assert_eq!(names(docs, "added"), ["new1.bin", "new2.txt"]);
    assert_eq!(names(docs, "changed"), ["notes.txt"]);
    assert!(names(docs, "removed").is_empty());
    let other = collection(&second, "other");
    assert!(names(other, "added").is_empty() && names(other, "changed").is_empty());
    assert_eq!(second["fetched"]["objects"], 3);
    let text = phone.run(&["sync"]).ok();
    assert!(text.stdout.contains("docs: up to date"), "{}", text.stdout);

    // Bob, with whom alice shares "docs": his first sync discovers it, the next one
    // refreshes it because the feed names it, and reports exactly the new file.
    let bob = Device::new(w, "bob", "bob pass");
    bob.run(&[&["register", "--user", "bob"][..], &server_args[..]].concat())
        .ok();
    let fp = |d: &Device| {
        d.run(&["--json", "fingerprint"]).ok().json()["fingerprint"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let (alice_fp, bob_fp) = (fp(&laptop), fp(&bob));
    laptop
        .run(&["share", "docs", "bob", "--yes", "--fingerprint", &bob_fp])
        .ok();
    bob.run(&["trust", "alice", "--yes", "--fingerprint", &alice_fp])
        .ok();
    let b1 = bob.run(&["--json", "sync"]).ok().json();
    assert_eq!(b1["full"], true);
    let shared = collection(&b1, "docs");
    assert_eq!(shared["own"], false);
    assert_eq!(names(shared, "added").len(), 5);
    laptop
        .run(&["put", "-c", "docs", &write("for-bob.txt", b"hello bob")])
        .ok();
    expected.push(("for-bob.txt".into(), b"hello bob".to_vec()));
    let b2 = bob.run(&["--json", "sync"]).ok().json();
    assert_eq!(b2["full"], false, "{b2}");
    assert_eq!(names(collection(&b2, "docs"), "added"), ["for-bob.txt"]);
    assert_eq!(b2["fetched"]["objects"], 1);
    // The phone: the share changed the sharing state, so it re-reads everything (and fetches
    // only the new file).
    let p3 = phone.run(&["--json", "sync"]).ok().json();
    assert_eq!(p3["full"], true);
    assert_eq!(names(collection(&p3, "docs"), "added"), ["for-bob.txt"]);
    assert_eq!(p3["fetched"]["objects"], 1);

    // An object the phone only saw listed (never synced).
    laptop
        .run(&[
            "put",
            "-c",
            "docs",
            &write("late.txt", b"written after the sync"),
        ])
        .ok();
    let listed = phone.run(&["ls", "-c", "docs"]).ok();
    assert!(listed.stdout.contains("late.txt"));
    assert!(!listed.stderr.contains("unreachable"));

    // The server goes away.
    server.stop();

    let ls = phone.run(&["--json", "ls", "-c", "docs"]).ok();
    assert!(ls.stderr.contains("server unreachable"), "{}", ls.stderr);
    let mut listed: Vec<String> = ls.json()["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["name"].as_str().unwrap().to_owned())
        .collect();
    listed.sort_unstable();
    assert_eq!(
        listed,
        [
            "big.bin",
            "empty",
            "for-bob.txt",
            "late.txt",
            "new1.bin",
            "new2.txt",
            "notes.txt"
        ]
    );
    let text = phone.run(&["ls", "-c", "docs"]).ok();
    assert!(text.stdout.contains("new1.bin") && !text.stdout.contains("unreachable"));
    assert!(text.stderr.contains("synced at"), "{}", text.stderr);

    // Every synced object reads back byte for byte (text on stdout, all of them to files).
    let notes = phone
        .run(&["get", "notes.txt", "-o", "-", "-c", "docs"])
        .ok();
    assert_eq!(notes.stdout.as_bytes(), &expected[0].1[..]);
    for (name, data) in &expected {
        let path = w.join(format!("copy-{name}"));
        phone
            .run(&["get", name, "-o", path.to_str().unwrap(), "-c", "docs"])
            .ok();
        assert_eq!(&std::fs::read(&path).unwrap(), data, "{name}");
    }
    let restore = w.join("restore");
    phone
        .run(&[
            "get",
            "--all",
            "-o",
            restore.to_str().unwrap(),
            "-c",
            "other",
        ])
        .ok();
    assert_eq!(std::fs::read(restore.join("x.txt")).unwrap(), b"untouched");
    // Listed but never fetched: needs the server (5), no file left behind.
    let late = w.join("late.txt");
    let r = phone.run(&[
        "--json",
        "get",
        "late.txt",
        "-o",
        late.to_str().unwrap(),
        "-c",
        "docs",
    ]);
    assert_eq!(r.code, 5, "{}", r.stderr);
    assert_eq!(r.json()["error"], "unreachable");
    assert!(r.stderr.contains("vault sync"), "{}", r.stderr);
    assert!(!late.exists());

    // `put` and `rm` are queued on the device (client.md §8.6), listed and readable here.
    let r = phone
        .run(&[
            "--json",
            "put",
            "-c",
            "docs",
            &write("offline.txt", b"queued"),
        ])
        .ok();
    assert_eq!(r.json()["queued"], 1);
    let r = phone.run(&["rm", "notes.txt", "-c", "docs"]).ok();
    assert!(r.stdout.contains("2 change(s) queued"), "{}", r.stdout);
    let ls = phone.run(&["--json", "ls", "-c", "docs"]).ok();
    let listed: Vec<String> = ls.json()["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["name"].as_str().unwrap().to_owned())
        .collect();
    assert!(listed.iter().any(|n| n == "offline.txt"), "{listed:?}");
    assert!(!listed.iter().any(|n| n == "notes.txt"), "{listed:?}");
    let back = phone
        .run(&["get", "offline.txt", "-o", "-", "-c", "docs"])
        .ok();
    assert_eq!(back.stdout, "queued");
    // Whatever else writes or needs the server fails with 5; `sync` says what waits.
    let r = phone.run(&["sync"]);
    assert_eq!(r.code, 5, "{}", r.stderr);
    assert!(r.stderr.contains("still queued"), "{}", r.stderr);
    let r = phone.run(&["share", "docs", "bob", "--yes", "--fingerprint", "00"]);
    assert_eq!(r.code, 5, "{}", r.stderr);
    assert!(r.stderr.contains("needs the server"), "{}", r.stderr);

    // A collection this device never read: nothing cached, 5.
    let r = laptop.run(&["ls", "-c", "nothing-here"]);
    assert_eq!(r.code, 5, "{}", r.stderr);
    // A collection shared with bob that his sync read: listed and read from his cache (the
    // envelope he opened is kept); `--owner` needs the server (it looks the name up).
    let r = bob.run(&["--json", "ls", "-c", "docs"]).ok();
    assert!(r.stderr.contains("server unreachable"), "{}", r.stderr);
    let objects = r.json()["objects"].clone();
    assert!(
        objects
            .as_array()
            .unwrap()
            .iter()
            .any(|o| o["name"] == "for-bob.txt"),
        "{objects}"
    );
    let got = bob
        .run(&["get", "for-bob.txt", "-o", "-", "-c", "docs"])
        .ok();
    assert_eq!(got.stdout, "hello bob");
    let r = bob.run(&["ls", "-c", "docs", "--owner", "alice"]);
    assert_eq!(r.code, 5, "{}", r.stderr);

    // The server is back: the phone's sync sends the queued changes, the laptop sees them.
    server.restart();
    let r = phone.run(&["--json", "sync"]).ok();
    assert_eq!(r.json()["pushed"], 1, "{}", r.stdout);
    let r = laptop.run(&["--json", "sync"]).ok();
    let docs = collection(&r.json(), "docs").clone();
    assert!(
        names(&docs, "added").contains(&"offline.txt".to_owned()),
        "{docs}"
    );
    // (The laptop's first sync: everything is new to it, and notes.txt is gone.)
    assert!(
        !names(&docs, "added").contains(&"notes.txt".to_owned()),
        "{docs}"
    );
    let back = laptop
        .run(&["get", "offline.txt", "-o", "-", "-c", "docs"])
        .ok();
    assert_eq!(back.stdout, "queued");
}
