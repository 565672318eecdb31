//! Slow and stalled clients (issue #6, robustness; src/transport.rs): a client that trickles
//! its headers, keeps an idle connection, or stops reading its answer is disconnected after
//! the configured time-out, while the server goes on answering everyone else; protocol
//! garbage gets a 4xx or a closed connection, never a crash. Transport-level, so one
//! backend (sled) is enough.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::oneshot;
use vault_server::api::{self, AppState};
use vault_server::auth::VerifierPolicy;
use vault_server::config::{Config, Limits};
use vault_server::store::SledBackend;

const HEADER_TIMEOUT: Duration = Duration::from_secs(1);
const SEND_STALL: Duration = Duration::from_secs(1);

struct Server {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    _dir: tempfile::TempDir,
}

impl Server {
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        let (backend, decoy) = tokio::task::spawn_blocking(move || {
            let backend = SledBackend::open(path).unwrap();
            let decoy = api::load_decoy_key(&backend).unwrap();
            (backend, decoy)
        })
        .await
        .unwrap();
        let config = Config {
            limits: Limits {
                header_timeout: HEADER_TIMEOUT,
                send_stall_timeout: SEND_STALL,
                request_timeout: Duration::from_secs(3),
                ..Limits::default()
            },
            ..Config::default()
        };
        let state = Arc::new(AppState::new(
            backend,
            VerifierPolicy::insecure_test_policy(1_000),
            decoy,
            config,
        ));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(api::serve(listener, state, async {
            let _ = stopped.await;
        }));
        Self {
            addr,
            stop: Some(stop),
            task,
            _dir: dir,
        }
    }

    /// A whole `GET /v1/openapi.json` on a new connection answers 200.
    async fn answers(&self) -> bool {
        let mut c = TcpStream::connect(self.addr).await.unwrap();
        c.write_all(b"GET /v1/openapi.json HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut answer = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(10), c.read_to_end(&mut answer));
        read.await.is_ok() && answer.starts_with(b"HTTP/1.1 200 ")
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("the server stops")
            .unwrap()
            .unwrap();
    }
}

/// Reads until the peer closes (or resets) the connection; how many bytes came and when.
async fn until_closed(c: &mut TcpStream, limit: Duration) -> (usize, Instant) {
    let mut got = 0;
    let mut buf = vec![0u8; 64 * 1024];
    let deadline = tokio::time::sleep(limit);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            r = c.read(&mut buf) => match r {
                Ok(0) | Err(_) => return (got, Instant::now()),
                Ok(n) => got += n,
            },
            () = &mut deadline => panic!("the server kept the connection open for {limit:?}"),
        }
    }
}

/// Headers trickled one byte every 200 ms never finish: the connection is closed about one
/// header time-out after it began, and other clients are served meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trickled_headers_are_cut_off() {
    let server = Server::start().await;
    let started = Instant::now();
    let mut slow = TcpStream::connect(server.addr).await.unwrap();
    slow.write_all(b"GET /v1/openapi.json HTTP/1.1\r\nHost: t\r\n")
        .await
        .unwrap();
    let trickle = tokio::spawn(async move {
        for _ in 0..50 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if slow.write_all(b"X").await.is_err() {
                break;
            }
        }
        slow
    });
    assert!(
        server.answers().await,
        "a normal client is served meanwhile"
    );
    let mut slow = trickle.await.unwrap();
    let (got, closed) = until_closed(&mut slow, Duration::from_secs(10)).await;
    let took = closed - started;
    assert!(took >= HEADER_TIMEOUT, "closed after {took:?}");
    assert!(took < HEADER_TIMEOUT * 6, "closed only after {took:?}");
    // Nothing but perhaps an error status was sent: never the document.
    assert!(
        got < 1024,
        "{got} bytes sent to a client whose headers never ended"
    );
    server.stop().await;
}

/// Many connections that send nothing hold nothing for long: each is closed after the
/// header time-out (also the idle keep-alive limit), and the server answers throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_closed() {
    let server = Server::start().await;
    let mut idle = Vec::new();
    for _ in 0..200 {
        idle.push(TcpStream::connect(server.addr).await.unwrap());
    }
    assert!(server.answers().await);
    // An idle keep-alive connection after one answer is closed too.
    let mut kept = TcpStream::connect(server.addr).await.unwrap();
    kept.write_all(b"GET /v1/openapi.json HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    for c in &mut idle {
        until_closed(c, Duration::from_secs(10)).await;
    }
    let (got, _) = until_closed(&mut kept, Duration::from_secs(10)).await;
    assert!(
        got > 100_000,
        "the kept connection got its answer first ({got} bytes)"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(server.answers().await);
    server.stop().await;
}

/// A client that asks for a large answer and never reads it is disconnected after the
/// send-stall time-out: reading afterwards gives less than the whole answer, then the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_disconnected() {
    let server = Server::start().await;
    let full = {
        let mut c = TcpStream::connect(server.addr).await.unwrap();
        c.write_all(b"GET /v1/openapi.json HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut all = Vec::new();
        c.read_to_end(&mut all).await.unwrap();
        all.len()
    };
    // A small receive window, so that the answer cannot all sit in socket buffers.
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut c = socket.connect(server.addr).await.unwrap();
    // Ask three times on one connection (pipelined): more than any buffer holds.
    for _ in 0..3 {
        c.write_all(b"GET /v1/openapi.json HTTP/1.1\r\nHost: t\r\n\r\n")
            .await
            .unwrap();
    }
    tokio::time::sleep(SEND_STALL * 4).await;
    assert!(server.answers().await, "others are served while one stalls");
    let (got, _) = until_closed(&mut c, Duration::from_secs(10)).await;
    assert!(
        got < 3 * full,
        "the stalled connection was kept: it got all {got} bytes"
    );
    server.stop().await;
}

/// Protocol garbage below the API (not HTTP, a huge header, too many headers, a bad
/// request line, a bad header value) gets a 4xx status or a closed connection; the server
/// answers normally afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_garbage_gets_4xx_or_a_close() {
    let server = Server::start().await;
    let mut huge = b"GET /v1/openapi.json HTTP/1.1\r\nHost: t\r\nX-Big: ".to_vec();
    huge.extend(std::iter::repeat_n(b'a', 1024 * 1024));
    huge.extend_from_slice(b"\r\n\r\n");
    let mut many = b"GET /v1/openapi.json HTTP/1.1\r\nHost: t\r\n".to_vec();
    for i in 0..500 {
        many.extend_from_slice(format!("X-H{i}: v\r\n").as_bytes());
    }
    many.extend_from_slice(b"\r\n");
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("binary", vec![0u8, 159, 146, 150, 255, 0, 13, 10, 13, 10]),
        ("tls hello on plain http", vec![0x16, 3, 1, 0, 5, 1, 0, 0, 1, 0]),
        ("huge header", huge),
        ("too many headers", many),
        ("bad request line", b"GET\r\n\r\n".to_vec()),
        ("bad method", b"G(T / HTTP/1.1\r\nHost: t\r\n\r\n".to_vec()),
        (
            "bad header value",
            b"GET / HTTP/1.1\r\nHost: t\r\nX: a\x00b\r\n\r\n".to_vec(),
        ),
        (
            "two content lengths",
            b"PUT /v1/collections/00 HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab"
                .to_vec(),
        ),
        (
            "bad chunk",
            b"POST /v1/sessions HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\nZZ\r\n"
                .to_vec(),
        ),
        ("http/0.9", b"GET /\r\n".to_vec()),
    ];
    for (what, bytes) in cases {
        let mut c = TcpStream::connect(server.addr).await.unwrap();
        // The server may close before it has read everything: a failed write is fine.
        let _ = c.write_all(&bytes).await;
        let mut answer = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(10), async {
            let mut buf = [0u8; 4096];
            loop {
                match c.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => answer.extend_from_slice(&buf[..n]),
                }
            }
        });
        read.await
            .unwrap_or_else(|_| panic!("{what}: no answer and no close"));
        if !answer.is_empty() {
            let head = String::from_utf8_lossy(&answer[..answer.len().min(12)]).into_owned();
            assert!(head.starts_with("HTTP/1.1 4"), "{what}: answered {head:?}");
        }
        assert!(
            server.answers().await,
            "{what}: the server stopped answering"
        );
    }
    server.stop().await;
}
