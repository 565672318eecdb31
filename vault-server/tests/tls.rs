//! TLS (docs/spec/tls.md): the API served in-process over TLS with a generated certificate
//! negotiates TLS 1.3 (or TLS 1.2 with an ECDHE-AEAD suite for a client limited to it),
//! answers HTTP with HSTS and sees client addresses; a TLS 1.1 ClientHello and a TLS 1.2 one
//! offering only weak suites are refused with an alert and never get a ServerHello; a
//! stalled client neither blocks another's handshake nor lives past the handshake timeout.
//! The binary: `gen-cert`, then `serve` with the pair answers over TLS; a mismatched key, a
//! missing file or half of the pair is refused at start-up.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::crypto::ring;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ProtocolVersion, RootCertStore, SupportedProtocolVersion};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;
use vault_server::api::{self, AppState};
use vault_server::auth::VerifierPolicy;
use vault_server::config::Config;
use vault_server::store::SledBackend;
use vault_server::tls::{self, SelfSigned, TlsServer};

/// A TLS server on 127.0.0.1 over a fresh sled directory, stopped when dropped.
struct Server {
    addr: SocketAddr,
    cert: CertificateDer<'static>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

impl Server {
    async fn start(handshake_timeout: Duration) -> Self {
        let names: Vec<String> = tls::DEFAULT_CERT_NAMES.map(str::to_owned).to_vec();
        let pair = SelfSigned::generate(&names, 1).unwrap();
        let tls = TlsServer::from_pem(pair.cert_pem().as_bytes(), pair.key_pem().as_bytes())
            .unwrap()
            .with_handshake_timeout(handshake_timeout);
        let cert = CertificateDer::from_pem_slice(pair.cert_pem().as_bytes()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_owned();
        let (backend, decoy) = tokio::task::spawn_blocking(move || {
            let backend = SledBackend::open(&path).unwrap();
            let decoy = api::load_decoy_key(&backend).unwrap();
            (backend, decoy)
        })
        .await
        .unwrap();
        let state = Arc::new(AppState::new(
            backend,
            VerifierPolicy::insecure_test_policy(1_000),
            decoy,
            Config::default(),
        ));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(tls::serve_tls(listener, state, tls, async {
            let _ = stopped.await;
        }));
        Self {
            addr,
            cert,
            stop: Some(stop),
            task: Some(task),
            _dir: dir,
        }
    }

    /// Stops the server; it must stop cleanly.
    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(10), task)
                .await
                .expect("the server did not stop")
                .unwrap()
                .unwrap();
        }
    }
}

/// A rustls client (ring provider) that trusts only `cert`, limited to `versions`.
fn client(
    cert: &CertificateDer<'static>,
    versions: &[&'static SupportedProtocolVersion],
) -> TlsConnector {
    let mut roots = RootCertStore::empty();
    roots.add(cert.clone()).unwrap();
    let mut config = ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    TlsConnector::from(Arc::new(config))
}

async fn connect(
    addr: SocketAddr,
    cert: &CertificateDer<'static>,
    versions: &[&'static SupportedProtocolVersion],
) -> TlsStream<TcpStream> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    tokio::time::timeout(
        Duration::from_secs(5),
        client(cert, versions).connect(name, tcp),
    )
    .await
    .expect("the handshake took too long")
    .unwrap()
}

/// One HTTP/1.1 request; the status, the header lines (lower-case names) and the body.
async fn http<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    method: &str,
    path: &str,
    body: &str,
) -> (u16, Vec<(String, String)>, String) {
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    stream.flush().await.unwrap();
    let mut answer = Vec::new();
    // The server closes after the answer; a missing close_notify is no concern here.
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer))
        .await
        .expect("no answer");
    let text = String::from_utf8_lossy(&answer).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("no HTTP head");
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .expect("no status line");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    (status, headers, body.to_owned())
}

fn suite_name(stream: &TlsStream<TcpStream>) -> String {
    let suite = stream.get_ref().1.negotiated_cipher_suite().unwrap();
    format!("{:?}", suite.suite())
}

#[tokio::test]
async fn tls13_is_negotiated_with_an_aead_suite() {
    let server = Server::start(tls::DEFAULT_HANDSHAKE_TIMEOUT).await;
    let stream = connect(server.addr, &server.cert, rustls::ALL_VERSIONS).await;
    let conn = stream.get_ref().1;
    assert_eq!(conn.protocol_version(), Some(ProtocolVersion::TLSv1_3));
    let suite = suite_name(&stream);
    assert!(
        [
            "TLS13_AES_256_GCM_SHA384",
            "TLS13_AES_128_GCM_SHA256",
            "TLS13_CHACHA20_POLY1305_SHA256"
        ]
        .contains(&suite.as_str()),
        "{suite}"
    );
    // The server's preference wins: AES-256-GCM first.
    assert_eq!(suite, "TLS13_AES_256_GCM_SHA384");
    assert_eq!(conn.alpn_protocol(), Some(&b"http/1.1"[..]));
    drop(stream);
    server.stop().await;
}

#[tokio::test]
async fn a_tls12_client_gets_an_ecdhe_aead_suite() {
    let server = Server::start(tls::DEFAULT_HANDSHAKE_TIMEOUT).await;
    let mut stream = connect(server.addr, &server.cert, &[&rustls::version::TLS12]).await;
    assert_eq!(
        stream.get_ref().1.protocol_version(),
        Some(ProtocolVersion::TLSv1_2)
    );
    let suite = suite_name(&stream);
    assert!(suite.starts_with("TLS_ECDHE_"), "{suite}");
    assert!(
        suite.ends_with("_GCM_SHA256")
            || suite.ends_with("_GCM_SHA384")
            || suite.ends_with("_CHACHA20_POLY1305_SHA256"),
        "{suite}"
    );
    // The API works over TLS 1.2 too.
    let (status, _, _) = http(&mut stream, "GET", "/v1/openapi.json", "").await;
    assert_eq!(status, 200);
    server.stop().await;
}

#[tokio::test]
async fn http_over_tls_answers_with_hsts_and_sees_the_client_address() {
    let server = Server::start(tls::DEFAULT_HANDSHAKE_TIMEOUT).await;
    let mut stream = connect(server.addr, &server.cert, rustls::ALL_VERSIONS).await;
    let (status, headers, body) = http(&mut stream, "GET", "/v1/openapi.json", "").await;
    assert_eq!(status, 200);
    assert!(body.contains("\"openapi\""), "{body}");
    let hsts: Vec<_> = headers
        .iter()
        .filter(|(n, _)| n == "strict-transport-security")
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(hsts, ["max-age=31536000"]);

    // An error answer carries it too.
    let mut stream = connect(server.addr, &server.cert, rustls::ALL_VERSIONS).await;
    let (status, headers, _) = http(&mut stream, "GET", "/no/such/route", "").await;
    assert_eq!(status, 404);
    assert!(headers
        .iter()
        .any(|(n, _)| n == "strict-transport-security"));

    // A login reads the client's address from the connection (the backoff keys on it):
    // without it the answer would be 500, not the generic authentication failure.
    let mut stream = connect(server.addr, &server.cert, rustls::ALL_VERSIONS).await;
    let secret = data_encoding::BASE64URL_NOPAD.encode(&[7; 32]);
    let login = format!(r#"{{"name":"nobody","login_secret":"{secret}"}}"#);
    let (status, _, body) = http(&mut stream, "POST", "/v1/sessions", &login).await;
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("authentication_failed"), "{body}");
    server.stop().await;
}

/// A ClientHello record: `record_version` on the record, `client_version` in the hello,
/// the given suites, no compression, and `extensions` (already encoded).
fn client_hello(
    record_version: u16,
    client_version: u16,
    suites: &[u16],
    extensions: &[u8],
) -> Vec<u8> {
    let mut hello = Vec::new();
    hello.extend_from_slice(&client_version.to_be_bytes());
    hello.extend_from_slice(&[0x42; 32]); // random
    hello.push(0); // no session id
    hello.extend_from_slice(&u16::try_from(suites.len() * 2).unwrap().to_be_bytes());
    for suite in suites {
        hello.extend_from_slice(&suite.to_be_bytes());
    }
    hello.extend_from_slice(&[1, 0]); // compression: null only
    if !extensions.is_empty() {
        hello.extend_from_slice(&u16::try_from(extensions.len()).unwrap().to_be_bytes());
        hello.extend_from_slice(extensions);
    }
    let mut handshake = vec![0x01]; // client_hello
    handshake.extend_from_slice(&u32::try_from(hello.len()).unwrap().to_be_bytes()[1..]);
    handshake.extend_from_slice(&hello);
    let mut record = vec![0x16]; // handshake
    record.extend_from_slice(&record_version.to_be_bytes());
    record.extend_from_slice(&u16::try_from(handshake.len()).unwrap().to_be_bytes());
    record.extend_from_slice(&handshake);
    record
}

fn extension(kind: u16, body: &[u8]) -> Vec<u8> {
    let mut out = kind.to_be_bytes().to_vec();
    out.extend_from_slice(&u16::try_from(body.len()).unwrap().to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// supported_groups (x25519, secp256r1) and ec_point_formats (uncompressed).
fn ec_extensions() -> Vec<u8> {
    let mut out = extension(0x000a, &[0x00, 0x04, 0x00, 0x1d, 0x00, 0x17]);
    out.extend(extension(0x000b, &[0x01, 0x00]));
    out
}

/// What the server answered to a raw ClientHello.
#[derive(Debug, PartialEq)]
enum Answer {
    /// A fatal alert with this description.
    Alert(u8),
    /// The connection closed with no alert.
    Closed,
    /// A ServerHello: the hello was accepted.
    ServerHello,
    /// Something else (an unexpected record).
    Other(Vec<u8>),
}

async fn answer_to(addr: SocketAddr, hello: &[u8]) -> Answer {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(hello).await.unwrap();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), async {
        let mut chunk = [0u8; 4096];
        loop {
            match tcp.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
            if buf.len() >= 5 {
                let len = usize::from(u16::from_be_bytes([buf[3], buf[4]]));
                if buf.len() >= 5 + len {
                    break;
                }
            }
        }
    })
    .await;
    assert!(read.is_ok(), "the server neither answered nor closed");
    if buf.is_empty() {
        return Answer::Closed;
    }
    assert!(buf.len() >= 6, "a truncated record: {buf:?}");
    match (buf[0], buf[5]) {
        (0x16, 0x02) => Answer::ServerHello,
        (0x15, 2) if buf.len() >= 7 => Answer::Alert(buf[6]),
        _ => Answer::Other(buf),
    }
}

#[tokio::test]
async fn a_tls11_client_hello_is_refused() {
    let server = Server::start(tls::DEFAULT_HANDSHAKE_TIMEOUT).await;
    // TLS 1.0/1.1 suites: ECDHE-RSA and RSA with AES-CBC-SHA, RSA with 3DES.
    let suites = [0xc013, 0xc014, 0x002f, 0x0035, 0x000a];
    for record_version in [0x0301, 0x0302] {
        // As a TLS 1.1 client sends it (no signature_algorithms, a TLS 1.2 extension):
        // rustls wants that extension first, so handshake_failure.
        let hello = client_hello(record_version, 0x0302, &suites, &ec_extensions());
        assert_eq!(
            answer_to(server.addr, &hello).await,
            Answer::Alert(40),
            "record version {record_version:#06x}"
        );
        // With it, the version itself is refused: protocol_version.
        let hello = client_hello(
            record_version,
            0x0302,
            &suites,
            &ec_extensions_with_sigalgs(),
        );
        assert_eq!(
            answer_to(server.addr, &hello).await,
            Answer::Alert(70),
            "record version {record_version:#06x}"
        );
    }
    // The same hello with client_version 0x0303 is answered: the refusal above is the
    // version's, not a malformed hello's.
    let modern = client_hello(
        0x0301,
        0x0303,
        &[0xc02b, 0xc02f],
        &ec_extensions_with_sigalgs(),
    );
    assert_eq!(answer_to(server.addr, &modern).await, Answer::ServerHello);
    server.stop().await;
}

/// The EC extensions plus signature_algorithms (ecdsa_secp256r1_sha256, rsa_pss_rsae_sha256,
/// rsa_pkcs1_sha256), as a TLS 1.2 client sends them.
fn ec_extensions_with_sigalgs() -> Vec<u8> {
    let mut out = ec_extensions();
    out.extend(extension(
        0x000d,
        &[0x00, 0x06, 0x04, 0x03, 0x08, 0x04, 0x04, 0x01],
    ));
    out
}

#[tokio::test]
async fn a_tls12_client_hello_with_only_weak_suites_is_refused() {
    let server = Server::start(tls::DEFAULT_HANDSHAKE_TIMEOUT).await;
    // TLS_RSA_WITH_AES_128_CBC_SHA, TLS_RSA_WITH_3DES_EDE_CBC_SHA, TLS_RSA_WITH_RC4_128_SHA,
    // and the CBC ECDHE suites: no AEAD suite offered.
    for suites in [
        &[0x002f, 0x000a, 0x0005][..],
        &[0x002f, 0x000a, 0x0005, 0xc009, 0xc013, 0xc023, 0xc027][..],
    ] {
        let hello = client_hello(0x0301, 0x0303, suites, &ec_extensions_with_sigalgs());
        assert_eq!(
            answer_to(server.addr, &hello).await,
            Answer::Alert(40),
            "{suites:04x?}"
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn a_stalled_client_does_not_block_others_and_is_dropped_after_the_timeout() {
    let server = Server::start(Duration::from_millis(1500)).await;
    // Connections that send nothing, and one that stops inside its ClientHello.
    let mut stalled = Vec::new();
    for _ in 0..8 {
        stalled.push(TcpStream::connect(server.addr).await.unwrap());
    }
    let hello = client_hello(0x0301, 0x0303, &[0xc02b], &ec_extensions_with_sigalgs());
    let mut partial = TcpStream::connect(server.addr).await.unwrap();
    partial.write_all(&hello[..hello.len() / 2]).await.unwrap();
    stalled.push(partial);

    let started = std::time::Instant::now();
    let mut stream = connect(server.addr, &server.cert, rustls::ALL_VERSIONS).await;
    assert!(started.elapsed() < Duration::from_millis(1500));
    let (status, _, _) = http(&mut stream, "GET", "/v1/openapi.json", "").await;
    assert_eq!(status, 200);

    // The stalled connections are closed by the server once their time is up.
    for mut tcp in stalled {
        let mut byte = [0u8; 1];
        let closed = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut byte))
            .await
            .expect("a stalled handshake outlived its timeout");
        assert!(matches!(closed, Ok(0) | Err(_)), "{closed:?}");
    }
    assert!(started.elapsed() >= Duration::from_millis(1000));
    server.stop().await;
}

#[tokio::test]
async fn plain_http_on_the_tls_port_gets_no_answer() {
    let server = Server::start(tls::DEFAULT_HANDSHAKE_TIMEOUT).await;
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    tcp.write_all(b"GET /v1/openapi.json HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut answer))
        .await
        .expect("the server neither answered nor closed");
    assert!(!answer.starts_with(b"HTTP/"), "{answer:?}");
    server.stop().await;
}

/// The binary: `gen-cert`, then `serve` over TLS; and what it refuses.
#[cfg(unix)]
mod binary {
    use std::io::{BufRead, BufReader};
    use std::path::Path;
    use std::process::{Child, Command, Output, Stdio};
    use std::sync::mpsc;

    use sha2::{Digest, Sha256};

    use super::*;

    const BIN: &str = env!("CARGO_BIN_EXE_vault-server");

    fn run(args: &[&str]) -> Output {
        Command::new(BIN)
            .args(args)
            .env_remove("VAULT_DATABASE_URL")
            .env("RUST_LOG", "info")
            .output()
            .unwrap()
    }

    fn gen_cert(dir: &Path) -> Output {
        let out = run(&[
            "gen-cert",
            "--out-dir",
            dir.to_str().unwrap(),
            "--days",
            "2",
        ]);
        assert_eq!(out.status.code(), Some(0), "{out:?}");
        out
    }

    fn serve_args<'a>(data: &'a str, cert: &'a str, key: &'a str) -> Vec<&'a str> {
        vec![
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--iterations",
            "100000",
            "--data-dir",
            data,
            "--tls-cert",
            cert,
            "--tls-key",
            key,
        ]
    }

    fn terminate(child: &mut Child) -> i32 {
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        for _ in 0..300 {
            if let Some(status) = child.try_wait().unwrap() {
                return status.code().expect("exited by a signal");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        panic!("the server did not exit");
    }

    #[tokio::test]
    async fn gen_cert_then_serve_over_tls() {
        let dir = tempfile::tempdir().unwrap();
        let tls_dir = dir.path().join("tls");
        let out = gen_cert(&tls_dir);
        let cert_path = tls_dir.join("cert.pem");
        let key_path = tls_dir.join("key.pem");
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&key_path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // The printed fingerprint is the certificate's SHA-256.
        let cert = CertificateDer::from_pem_file(&cert_path).unwrap();
        let expected = tls::fingerprint_hex(&Sha256::digest(&cert).into());
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains(&expected), "{stdout}");

        // Not overwritten without --force; overwritten with it.
        let again = run(&["gen-cert", "--out-dir", tls_dir.to_str().unwrap()]);
        assert_eq!(again.status.code(), Some(1), "{again:?}");
        assert!(String::from_utf8_lossy(&again.stderr).contains("--force"));
        assert_eq!(CertificateDer::from_pem_file(&cert_path).unwrap(), cert);
        let forced = run(&[
            "gen-cert",
            "--out-dir",
            tls_dir.to_str().unwrap(),
            "--force",
        ]);
        assert_eq!(forced.status.code(), Some(0), "{forced:?}");
        let cert = CertificateDer::from_pem_file(&cert_path).unwrap();

        let data = dir.path().join("data");
        let mut child = Command::new(BIN)
            .args(serve_args(
                data.to_str().unwrap(),
                cert_path.to_str().unwrap(),
                key_path.to_str().unwrap(),
            ))
            .env_remove("VAULT_DATABASE_URL")
            .env("RUST_LOG", "info")
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
        let (addr, line) = loop {
            let line = log
                .recv_timeout(Duration::from_secs(30))
                .expect("the server did not start");
            if let Some((_, rest)) = line.split_once("address=") {
                let addr: SocketAddr = rest.split_whitespace().next().unwrap().parse().unwrap();
                break (addr, line);
            }
        };
        assert!(line.contains("HTTPS"), "{line}");

        let mut stream = connect(addr, &cert, rustls::ALL_VERSIONS).await;
        assert_eq!(
            stream.get_ref().1.protocol_version(),
            Some(ProtocolVersion::TLSv1_3)
        );
        let (status, headers, _) = http(&mut stream, "GET", "/v1/openapi.json", "").await;
        assert_eq!(status, 200);
        assert!(headers
            .iter()
            .any(|(n, v)| n == "strict-transport-security" && v == "max-age=31536000"));
        assert_eq!(terminate(&mut child), 0);
    }

    fn refused(args: &[&str]) -> String {
        let out = run(args);
        assert_eq!(out.status.code(), Some(1), "{out:?}");
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    #[test]
    fn a_mismatched_or_missing_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        gen_cert(&a);
        gen_cert(&b);
        let data = dir.path().join("data");
        let data = data.to_str().unwrap();
        let cert = a.join("cert.pem");
        let other_key = b.join("key.pem");
        let err = refused(&serve_args(
            data,
            cert.to_str().unwrap(),
            other_key.to_str().unwrap(),
        ));
        assert!(err.contains("does not match the certificate"), "{err}");
        // Refused before the store is touched.
        assert!(!Path::new(data).exists());

        let missing = dir.path().join("missing.pem");
        let err = refused(&serve_args(
            data,
            cert.to_str().unwrap(),
            missing.to_str().unwrap(),
        ));
        assert!(
            err.contains("cannot read") && err.contains("missing.pem"),
            "{err}"
        );

        // The certificate given as the key.
        let err = refused(&serve_args(
            data,
            cert.to_str().unwrap(),
            cert.to_str().unwrap(),
        ));
        assert!(err.contains("no private key"), "{err}");

        // Half of the pair is a usage error.
        let out = run(&[
            "serve",
            "--tls-cert",
            cert.to_str().unwrap(),
            "--data-dir",
            data,
        ]);
        assert_eq!(out.status.code(), Some(2), "{out:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("--tls-key"));
    }

    #[test]
    fn plain_http_on_a_public_address_is_refused_without_the_flag() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        for args in [
            &["--listen", "0.0.0.0:0"][..],
            &["serve", "--listen", "0.0.0.0:0"][..],
        ] {
            let mut all = args.to_vec();
            all.extend([
                "--iterations",
                "100000",
                "--data-dir",
                data.to_str().unwrap(),
            ]);
            let err = refused(&all);
            assert!(
                err.contains("--allow-plain-http-on-public-address"),
                "{err}"
            );
            assert!(err.contains("--tls-cert"), "{err}");
        }
    }
}
