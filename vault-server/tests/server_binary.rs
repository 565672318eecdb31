//! The `vault-server` binary: it serves on a fresh sled directory, keeps its decoy key
//! across restarts, finishes a request in flight on SIGTERM and exits 0, and refuses a
//! public address, a damaged store and (without the feature) a database URL with exit
//! code 1 and a clear message.
#![cfg(unix)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_vault-server");

/// A running server and its log lines.
struct Running {
    child: Child,
    addr: String,
    log: mpsc::Receiver<String>,
}

fn start(data_dir: &Path) -> Running {
    let mut child = Command::new(BIN)
        .args([
            "--listen",
            "127.0.0.1:0",
            "--iterations",
            "100000",
            "--data-dir",
        ])
        .arg(data_dir)
        .env("RUST_LOG", "info")
        .env_remove("VAULT_DATABASE_URL")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, log) = mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let addr = loop {
        let line = log
            .recv_timeout(Duration::from_secs(30))
            .expect("the server did not start");
        if let Some((_, rest)) = line.split_once("address=") {
            break rest.split_whitespace().next().unwrap().to_owned();
        }
    };
    Running { child, addr, log }
}

fn terminate(child: &Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

fn wait_exit(child: &mut Child) -> i32 {
    for _ in 0..300 {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code().expect("exited by a signal");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    panic!("the server did not exit");
}

/// One request on a new connection; the status and body of the answer.
fn exchange(addr: &str, request: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    read_answer(&mut stream)
}

fn read_answer(stream: &mut TcpStream) -> (u16, String) {
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    let status = text.split(' ').nth(1).unwrap().parse().unwrap();
    let body = text.split_once("\r\n\r\n").unwrap().1.to_owned();
    (status, body)
}

fn prelogin(name: &str) -> String {
    let body = format!("{{\"name\":\"{name}\"}}");
    format!(
        "POST /v1/prelogin HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

#[test]
fn serves_keeps_its_decoy_key_and_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = start(dir.path());
    let (status, doc) = exchange(
        &server.addr,
        "GET /v1/openapi.json HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status, 200);
    assert!(doc.contains("\"/v1/changes\""));
    let (status, decoy) = exchange(&server.addr, &prelogin("nobody"));
    assert_eq!(status, 200, "{decoy}");

    // A request in flight when SIGTERM arrives is finished before the exit.
    let mut slow = TcpStream::connect(&server.addr).unwrap();
    let request = prelogin("nobody");
    let (head, tail) = request.split_at(request.len() - 5);
    slow.write_all(head.as_bytes()).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    terminate(&server.child);
    std::thread::sleep(Duration::from_millis(300));
    slow.write_all(tail.as_bytes()).unwrap();
    let (status, body) = read_answer(&mut slow);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, decoy);
    assert_eq!(wait_exit(&mut server.child), 0);
    let log: Vec<String> = server.log.try_iter().collect();
    assert!(log.iter().any(|l| l.contains("stopped")), "{log:?}");

    // Restarted on the same directory: the same decoy for the same name.
    let mut again = start(dir.path());
    let (status, body) = exchange(&again.addr, &prelogin("nobody"));
    assert_eq!(status, 200);
    assert_eq!(body, decoy);
    terminate(&again.child);
    assert_eq!(wait_exit(&mut again.child), 0);
}

fn refused(args: &[&str], data_dir: &Path) -> String {
    let out = Command::new(BIN)
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--iterations", "100000"])
        .env_remove("VAULT_DATABASE_URL")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn refuses_a_public_address_without_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let err = refused(&["--listen", "0.0.0.0:0"], dir.path());
    assert!(
        err.contains("--allow-plain-http-on-public-address"),
        "{err}"
    );
}

#[test]
fn refuses_a_damaged_store() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = sled::open(dir.path()).unwrap();
        // A keyring record without its 8-byte version, as no backend writes it.
        db.open_tree("keyrings")
            .unwrap()
            .insert([0xa1; 16], &b"short"[..])
            .unwrap();
        db.flush().unwrap();
    }
    let err = refused(&["--listen", "127.0.0.1:0"], dir.path());
    assert!(err.contains("corrupt"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[cfg(not(feature = "postgres"))]
#[test]
fn refuses_a_database_url_without_the_postgres_feature() {
    let dir = tempfile::tempdir().unwrap();
    let err = refused(
        &[
            "--listen",
            "127.0.0.1:0",
            "--database-url",
            "postgres://u@127.0.0.1/db",
        ],
        dir.path(),
    );
    assert!(err.contains("--features postgres"), "{err}");
    assert!(
        !err.contains("postgres://u@"),
        "the URL is not echoed: {err}"
    );
}

#[cfg(feature = "postgres")]
#[test]
fn refuses_an_unreachable_database_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    // Port 1 on loopback: nothing listens there.
    let err = refused(
        &[
            "--listen",
            "127.0.0.1:0",
            "--database-url",
            "postgres://someone:hunter2@127.0.0.1:1/db",
        ],
        dir.path(),
    );
    assert!(err.contains("cannot open the PostgreSQL database"), "{err}");
    assert!(!err.contains("hunter2"), "the URL is not echoed: {err}");
    assert!(!err.contains("panicked"), "{err}");
}
