//! The `vault-server` binary as a process (issue #5, "Storage"): acknowledged writes survive
//! SIGKILL during a write burst, SIGTERM shuts down gracefully, and a damaged data directory
//! is refused at start-up with a clear message.
//!
//! These tests run the real binary (`CARGO_BIN_EXE_vault-server`) on 127.0.0.1 with a
//! temporary sled directory, and talk to it through real HTTP.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod api;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use api::{b64, hex, user};
use reqwest::StatusCode;
use serde_json::{json, Value};

/// A running `vault-server` process.
struct Server {
    child: Child,
    base: String,
    client: reqwest::Client,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

fn command(dir: &Path, port: u16) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_vault-server"));
    c.arg("--data-dir")
        .arg(dir)
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        // The floor of the verifier policy: no calibration at start-up, fast logins.
        .arg("--iterations")
        .arg("100000")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    c
}

async fn start(dir: &Path) -> Server {
    let port = free_port();
    let child = command(dir, port).spawn().unwrap();
    // With the sync client's feature on in the same build (the workspace test run), reqwest
    // uses rustls, which needs a process-wide crypto provider: ring, as everywhere.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = client.get(format!("{base}/v1/openapi.json")).send().await {
            if r.status() == StatusCode::OK {
                break;
            }
        }
        assert!(Instant::now() < deadline, "the server did not come up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Server {
        child,
        base,
        client,
    }
}

impl Server {
    async fn login(&self, name: &str) -> String {
        let who = user(0);
        let r = self
            .client
            .post(format!("{}/v1/sessions", self.base))
            .json(&json!({"name": name, "login_secret": b64(&who.login_secret)}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
        let v: Value = r.json().await.unwrap();
        v["token"].as_str().unwrap().to_owned()
    }

    async fn signup(&self, name: &str) -> String {
        let r = self
            .client
            .post(format!("{}/v1/accounts", self.base))
            .json(&user(0).register_body(name))
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            StatusCode::CREATED,
            "{}",
            r.text().await.unwrap()
        );
        self.login(name).await
    }
}

/// The page content of writer `w`, page `n`: deterministic, so a reader can check every
/// byte, and different for every page.
fn page_bytes(w: u32, n: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 * 1024);
    let mut x = u64::from(w) << 32 | u64::from(n) | 1;
    while out.len() < 16 * 1024 {
        // xorshift64*: a cheap, fixed stream.
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    out
}

fn page_path(collection: &str, w: u32, n: u32) -> String {
    format!(
        "/v1/collections/{collection}/objects/{}/versions/1/pages/{n}",
        hex(&[w as u8; 16])
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_sigkill_during_a_write_burst() {
    let dir = tempfile::tempdir().unwrap();
    let collection = hex(&[0xc7; 16]);
    let mut server = start(dir.path()).await;
    let token = server.signup("crash-test").await;
    let r = server
        .client
        .put(format!("{}/v1/collections/{collection}", server.base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);

    // 16 writers upload pages as fast as they can; a 17th advances the manifest head.
    let acked_pages = Arc::new(Mutex::new(Vec::<(u32, u32)>::new()));
    let acked_manifest = Arc::new(Mutex::new(0u64));
    let mut tasks = Vec::new();
    for w in 0..16u32 {
        let (client, base, token, collection) = (
            server.client.clone(),
            server.base.clone(),
            token.clone(),
            collection.clone(),
        );
        let acked = acked_pages.clone();
        tasks.push(tokio::spawn(async move {
            for n in 0.. {
                let sent = client
                    .put(format!("{base}{}", page_path(&collection, w, n)))
                    .bearer_auth(&token)
                    .header("content-type", "application/octet-stream")
                    .body(page_bytes(w, n))
                    .send()
                    .await;
                match sent {
                    Ok(r) if r.status().is_success() => acked.lock().unwrap().push((w, n)),
                    Ok(r) => panic!("a write was refused: {}", r.status()),
                    Err(_) => return, // the server is gone
                }
            }
        }));
    }
    {
        let (client, base, token, collection) = (
            server.client.clone(),
            server.base.clone(),
            token.clone(),
            collection.clone(),
        );
        let acked = acked_manifest.clone();
        tasks.push(tokio::spawn(async move {
            for v in 1u64.. {
                let sent = client
                    .put(format!(
                        "{base}/v1/collections/{collection}/manifest?expected={}&version={v}",
                        v - 1
                    ))
                    .bearer_auth(&token)
                    .header("content-type", "application/octet-stream")
                    .body(format!("manifest {v}").into_bytes())
                    .send()
                    .await;
                match sent {
                    Ok(r) if r.status().is_success() => *acked.lock().unwrap() = v,
                    Ok(r) => panic!("a manifest swap was refused: {}", r.status()),
                    Err(_) => return,
                }
            }
        }));
    }

    // Kill the server in the middle of the burst, once a fair number of writes landed.
    let deadline = Instant::now() + Duration::from_secs(60);
    while acked_pages.lock().unwrap().len() < 300 || *acked_manifest.lock().unwrap() < 20 {
        assert!(Instant::now() < deadline, "the write burst is too slow");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.child.kill().unwrap(); // SIGKILL
    server.child.wait().unwrap();
    for t in tasks {
        t.await.unwrap();
    }
    let acked_pages = acked_pages.lock().unwrap().clone();
    let acked_manifest = *acked_manifest.lock().unwrap();
    drop(server);

    // Restart on the same directory: the start-up check passes, and every acknowledged
    // write is there, bit for bit.
    let server = start(dir.path()).await;
    let token = server.login("crash-test").await;
    let mut last_per_writer = BTreeMap::<u32, u32>::new();
    for &(w, n) in &acked_pages {
        let r = server
            .client
            .get(format!("{}{}", server.base, page_path(&collection, w, n)))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "acknowledged page {w}/{n} lost");
        assert_eq!(
            r.bytes().await.unwrap().as_ref(),
            page_bytes(w, n),
            "page {w}/{n}"
        );
        let last = last_per_writer.entry(w).or_default();
        *last = (*last).max(n);
    }
    // The write in flight when the server died (one per writer, past the last
    // acknowledged) is either absent or whole: nothing is corrupt.
    for w in 0..16u32 {
        let n = last_per_writer.get(&w).map_or(0, |n| n + 1);
        let r = server
            .client
            .get(format!("{}{}", server.base, page_path(&collection, w, n)))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        match r.status() {
            StatusCode::NOT_FOUND => {}
            StatusCode::OK => assert_eq!(r.bytes().await.unwrap().as_ref(), page_bytes(w, n)),
            s => panic!("in-flight page {w}/{n}: {s}"),
        }
    }
    // The manifest head is at least the last acknowledged version, and whole.
    let r = server
        .client
        .get(format!(
            "{}/v1/collections/{collection}/manifest",
            server.base
        ))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let version: u64 = r
        .headers()
        .get("vault-version")
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(version >= acked_manifest, "{version} < {acked_manifest}");
    assert!(version <= acked_manifest + 1);
    assert_eq!(
        r.bytes().await.unwrap().as_ref(),
        format!("manifest {version}").as_bytes()
    );
    // Writes go on after the restart.
    let r = server
        .client
        .put(format!(
            "{}/v1/collections/{collection}/manifest?expected={version}&version={}",
            server.base,
            version + 1
        ))
        .bearer_auth(&token)
        .header("content-type", "application/octet-stream")
        .body(b"after the crash".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_the_server_gracefully_and_the_data_stays() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = start(dir.path()).await;
    let _token = server.signup("graceful").await;
    let pid = server.child.id().to_string();
    let status = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    let exit = loop {
        if let Some(exit) = server.child.try_wait().unwrap() {
            break exit;
        }
        assert!(Instant::now() < deadline, "no exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(exit.success(), "{exit:?}");
    drop(server);
    let server = start(dir.path()).await;
    let _ = server.login("graceful").await;
}

#[test]
fn a_damaged_data_directory_is_refused_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = sled::open(dir.path()).unwrap();
        db.open_tree("keyrings")
            .unwrap()
            .insert([0xa1; 16], &b"short"[..])
            .unwrap();
        db.flush().unwrap();
    }
    let out = command(dir.path(), free_port())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("corrupt keyring record"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
