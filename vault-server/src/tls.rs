//! TLS for the HTTP API (docs/spec/tls.md): rustls with the *ring* provider only, TLS 1.3 and
//! TLS 1.2, ECDHE key exchange with AEAD cipher suites only, the certificate chain and private
//! key from PEM files, and `Strict-Transport-Security` on every answer.
//!
//! [`serve_tls`] is [`api::serve`] over TLS: the same router, graceful shutdown and client
//! addresses (`ConnectInfo<SocketAddr>`, which the login backoff keys on). Handshakes run
//! concurrently, each bounded by a timeout, so a stalled client holds one task and one of
//! [`MAX_PENDING_HANDSHAKES`] slots for at most [`DEFAULT_HANDSHAKE_TIMEOUT`], never the
//! accept loop.
//!
//! [`SelfSigned`] makes a certificate and key for local use (`vault-server gen-cert`).
//!
//! ```
//! use vault_server::tls::{SelfSigned, TlsServer, DEFAULT_CERT_DAYS};
//!
//! let pair = SelfSigned::generate(&["localhost".to_owned()], DEFAULT_CERT_DAYS)?;
//! let tls = TlsServer::from_pem(pair.cert_pem().as_bytes(), pair.key_pem().as_bytes())?;
//! assert_eq!(tls.config().alpn_protocols, [b"http/1.1".to_vec()]);
//! # Ok::<(), vault_server::tls::TlsError>(())
//! ```

use std::fmt::Write as _;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::http::header::STRICT_TRANSPORT_SECURITY;
use axum::http::HeaderValue;
use axum::response::Response;
use axum::serve::Listener;
use rustls::crypto::{ring, CryptoProvider};
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::ServerConfig;
use rustls::sign::CertifiedKey;
use rustls::{SupportedCipherSuite, SupportedProtocolVersion};
use sha2::{Digest, Sha256};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use zeroize::Zeroizing;

use crate::api::{self, AppState};
use crate::store::Backend;

/// The value of the `Strict-Transport-Security` header on every answer over TLS: one year.
pub const HSTS: &str = "max-age=31536000";

/// How long a client has to complete its TLS handshake after the TCP connection is accepted.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The most TLS handshakes in progress at once; further connections wait in the kernel's
/// accept queue until a slot frees.
pub const MAX_PENDING_HANDSHAKES: usize = 1024;

/// The default validity of a `gen-cert` certificate, in days.
pub const DEFAULT_CERT_DAYS: u32 = 365;

/// The longest validity `gen-cert` accepts, in days (ten years).
pub const MAX_CERT_DAYS: u32 = 3650;

/// The names a `gen-cert` certificate is valid for when none are given.
pub const DEFAULT_CERT_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// The file names `gen-cert` writes into its output directory.
pub const CERT_FILE: &str = "cert.pem";
/// The private key file `gen-cert` writes (mode 0600 on Unix).
pub const KEY_FILE: &str = "key.pem";

/// The protocol versions served, newest first (docs/spec/tls.md §1). TLS 1.1 and older are
/// not implemented by rustls at all.
pub static PROTOCOL_VERSIONS: &[&SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

/// The cipher suites served, in the server's order of preference (docs/spec/tls.md §2):
/// the three TLS 1.3 AEAD suites, and for TLS 1.2 only ECDHE key exchange (ECDSA or RSA
/// certificates) with AES-GCM or ChaCha20-Poly1305. The *ring* provider has no CBC, RC4,
/// 3DES, static-RSA or finite-field DH suite to begin with; the list is still spelled out
/// here so a provider update cannot widen it silently.
pub static CIPHER_SUITES: &[SupportedCipherSuite] = &[
    ring::cipher_suite::TLS13_AES_256_GCM_SHA384,
    ring::cipher_suite::TLS13_AES_128_GCM_SHA256,
    ring::cipher_suite::TLS13_CHACHA20_POLY1305_SHA256,
    ring::cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    ring::cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    ring::cipher_suite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    ring::cipher_suite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
    ring::cipher_suite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    ring::cipher_suite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
];

/// Why TLS could not be set up, or a certificate could not be made or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A certificate or key file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The certificate input holds no usable `CERTIFICATE` PEM section.
    #[error("no certificate: {0}")]
    Certificate(String),
    /// The key input holds no usable private key PEM section (the detail never quotes the
    /// key's bytes).
    #[error("no private key: {0}")]
    Key(String),
    /// The private key is not the key of the first (leaf) certificate.
    #[error("the private key does not match the certificate (the first certificate in the chain must be the server's own, and the key must be its key)")]
    KeyMismatch,
    /// rustls refused the configuration.
    #[error("TLS configuration refused: {0}")]
    Config(rustls::Error),
    /// A name given for a certificate is neither an IP address nor a DNS name, or the
    /// validity is out of range.
    #[error("{0}")]
    InvalidRequest(String),
    /// The certificate could not be generated.
    #[error("cannot generate the certificate: {0}")]
    Generate(rcgen::Error),
    /// A file to write exists already (and overwriting was not asked for).
    #[error("{} exists already (pass --force to overwrite)", .0.display())]
    Exists(PathBuf),
    /// A certificate or key file could not be written.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
}

/// The crypto provider of the server: *ring*, restricted to [`CIPHER_SUITES`], key exchange
/// over X25519, P-256 or P-384 (ephemeral only: every suite is ECDHE or TLS 1.3).
pub fn provider() -> CryptoProvider {
    CryptoProvider {
        cipher_suites: CIPHER_SUITES.to_vec(),
        kx_groups: vec![
            ring::kx_group::X25519,
            ring::kx_group::SECP256R1,
            ring::kx_group::SECP384R1,
        ],
        ..ring::default_provider()
    }
}

/// A TLS server configuration with its handshake timeout, ready for [`serve_tls`].
#[derive(Clone, Debug)]
pub struct TlsServer {
    config: Arc<ServerConfig>,
    handshake_timeout: Duration,
}

impl TlsServer {
    /// Reads the certificate chain (PEM `CERTIFICATE` sections, the server's own first) and
    /// its private key (PEM PKCS#8, SEC 1 or PKCS#1) from files.
    pub fn from_files(cert: &Path, key: &Path) -> Result<Self, TlsError> {
        let cert_pem = std::fs::read(cert).map_err(|source| TlsError::Read {
            path: cert.to_owned(),
            source,
        })?;
        let key_pem = Zeroizing::new(std::fs::read(key).map_err(|source| TlsError::Read {
            path: key.to_owned(),
            source,
        })?);
        Self::from_pem(&cert_pem, &key_pem).map_err(|e| match e {
            TlsError::Certificate(why) => {
                TlsError::Certificate(format!("{}: {why}", cert.display()))
            }
            TlsError::Key(why) => TlsError::Key(format!("{}: {why}", key.display())),
            other => other,
        })
    }

    /// The configuration from PEM text: the certificate chain (server's own certificate
    /// first) and its private key. A key that is not the leaf certificate's is refused.
    pub fn from_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<Self, TlsError> {
        let chain = CertificateDer::pem_slice_iter(cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| TlsError::Certificate(pem_problem(&e).into()))?;
        if chain.is_empty() {
            return Err(TlsError::Certificate(
                "no CERTIFICATE section in the PEM input".into(),
            ));
        }
        let key = PrivateKeyDer::from_pem_slice(key_pem)
            .map_err(|e| TlsError::Key(pem_problem(&e).into()))?;
        let provider = Arc::new(provider());
        let signing_key = provider
            .key_provider
            .load_private_key(key)
            .map_err(|_| TlsError::Key("not an RSA, ECDSA or Ed25519 private key".into()))?;
        let certified = CertifiedKey::new(chain, signing_key);
        // Stricter than `with_single_cert`, which lets a key whose public half is unknown
        // pass: every *ring* key has one, so anything but a positive match is refused.
        match certified.keys_match() {
            Ok(()) => {}
            Err(rustls::Error::InconsistentKeys(_)) => return Err(TlsError::KeyMismatch),
            Err(e) => return Err(TlsError::Certificate(e.to_string())),
        }
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(PROTOCOL_VERSIONS)
            .map_err(TlsError::Config)?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(certified)));
        // The server's order of CIPHER_SUITES wins over the client's.
        config.ignore_client_order = true;
        // The server speaks HTTP/1.1 only (src/transport.rs).
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self {
            config: Arc::new(config),
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
        })
    }

    /// The same configuration with another handshake timeout (at least one millisecond).
    #[must_use]
    pub fn with_handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout.max(Duration::from_millis(1));
        self
    }

    /// The rustls configuration.
    pub fn config(&self) -> &Arc<ServerConfig> {
        &self.config
    }

    /// How long a client has to complete its handshake.
    pub fn handshake_timeout(&self) -> Duration {
        self.handshake_timeout
    }
}

/// What went wrong in a PEM input, without quoting any of its bytes (the input may be a key).
fn pem_problem(e: &pem::Error) -> &'static str {
    match e {
        pem::Error::MissingSectionEnd { .. } => "a PEM section has no END line",
        pem::Error::IllegalSectionStart { .. } => "a malformed PEM BEGIN line",
        pem::Error::Base64Decode(_) => "a PEM section is not valid base64",
        pem::Error::NoItemsFound => "no PEM section of the expected kind",
        pem::Error::SectionTooLarge => "a PEM section is too large",
        _ => "unreadable PEM",
    }
}

/// Serves the API over TLS on `listener` until `shutdown` completes, as [`api::serve`] does
/// over plain HTTP (the same graceful shutdown, session sweeping and client addresses),
/// with `Strict-Transport-Security: max-age=31536000` on every answer.
pub async fn serve_tls<B: Backend>(
    listener: TcpListener,
    state: Arc<AppState<B>>,
    tls: TlsServer,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let local = listener.local_addr()?;
    let app = api::router(Arc::clone(&state)).layer(axum::middleware::map_response(hsts));
    let (ready, incoming) = mpsc::channel(64);
    let acceptor = tokio::spawn(accept_loop(
        listener,
        TlsAcceptor::from(Arc::clone(&tls.config)),
        tls.handshake_timeout,
        ready,
    ));
    let listener = TlsListener {
        incoming,
        local,
        acceptor,
    };
    crate::transport::serve_api(listener, app, state, shutdown).await
}

async fn hsts(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(STRICT_TRANSPORT_SECURITY, HeaderValue::from_static(HSTS));
    response
}

/// Accepts TCP connections and runs each handshake in its own task, bounded by `timeout`
/// and by [`MAX_PENDING_HANDSHAKES`]; completed connections go to `ready`. Aborting this
/// task (dropping the [`TlsListener`]) aborts the handshakes in progress.
async fn accept_loop(
    mut tcp: TcpListener,
    acceptor: TlsAcceptor,
    timeout: Duration,
    ready: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
) {
    let slots = Arc::new(Semaphore::new(MAX_PENDING_HANDSHAKES));
    let mut handshakes = JoinSet::new();
    loop {
        let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
            return; // never closed
        };
        // axum's accept retries on errors (and pauses on resource exhaustion).
        let (stream, peer) = Listener::accept(&mut tcp).await;
        while handshakes.try_join_next().is_some() {}
        // Small answers go out at once; a failure only costs latency.
        let _ = stream.set_nodelay(true);
        let acceptor = acceptor.clone();
        let ready = ready.clone();
        handshakes.spawn(async move {
            let handshake = tokio::time::timeout(timeout, acceptor.accept(stream)).await;
            drop(slot);
            match handshake {
                Ok(Ok(stream)) => {
                    let _ = ready.send((stream, peer)).await;
                }
                Ok(Err(e)) => {
                    tracing::debug!(target: "vault_server::tls", %peer, error = %e, "TLS handshake failed")
                }
                Err(_) => {
                    tracing::debug!(target: "vault_server::tls", %peer, "TLS handshake timed out")
                }
            }
        });
    }
}

/// The completed TLS connections of [`accept_loop`], as an axum listener.
struct TlsListener {
    incoming: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
    acceptor: JoinHandle<()>,
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.acceptor.abort();
    }
}

impl Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.incoming.recv().await {
            Some(connection) => connection,
            None => {
                // Only if the accept loop died (it never returns on its own).
                tracing::error!(target: "vault_server::tls", "the TLS accept loop stopped; no new connections");
                std::future::pending().await
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.local)
    }
}

/// A self-signed certificate (ECDSA P-256 with SHA-256) and its private key, for local use.
pub struct SelfSigned {
    cert_pem: String,
    key_pem: Zeroizing<String>,
    fingerprint: [u8; 32],
}

impl std::fmt::Debug for SelfSigned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SelfSigned")
            .field("fingerprint", &fingerprint_hex(&self.fingerprint))
            .finish_non_exhaustive()
    }
}

impl SelfSigned {
    /// A new key pair and a certificate for `names` (IP addresses or DNS names; the first
    /// is also the subject's common name), valid from one hour ago for `days` days
    /// (1 to [`MAX_CERT_DAYS`]).
    pub fn generate(names: &[String], days: u32) -> Result<Self, TlsError> {
        if names.is_empty() {
            return Err(TlsError::InvalidRequest(
                "a certificate needs at least one name".into(),
            ));
        }
        if !(1..=MAX_CERT_DAYS).contains(&days) {
            return Err(TlsError::InvalidRequest(format!(
                "the validity must be 1 to {MAX_CERT_DAYS} days, not {days}"
            )));
        }
        let mut params = rcgen::CertificateParams::new(names.to_vec())
            .map_err(|e| TlsError::InvalidRequest(format!("not a DNS name or IP address: {e}")))?;
        let mut subject = rcgen::DistinguishedName::new();
        subject.push(rcgen::DnType::CommonName, names[0].as_str());
        params.distinguished_name = subject;
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::hours(1);
        params.not_after = now + time::Duration::days(i64::from(days));
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map_err(TlsError::Generate)?;
        let cert = params.self_signed(&key).map_err(TlsError::Generate)?;
        Ok(Self {
            cert_pem: cert.pem(),
            key_pem: Zeroizing::new(key.serialize_pem()),
            fingerprint: Sha256::digest(cert.der()).into(),
        })
    }

    /// The certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The private key, PEM (PKCS#8).
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// The SHA-256 of the certificate's DER encoding (what a client pins).
    pub fn fingerprint(&self) -> [u8; 32] {
        self.fingerprint
    }

    /// Writes [`CERT_FILE`] and [`KEY_FILE`] (mode 0600 on Unix) into `dir`, creating the
    /// directory if missing. Existing files are refused unless `force`; then they are
    /// overwritten and the key file's mode reset to 0600. Returns the two paths.
    pub fn write(&self, dir: &Path, force: bool) -> Result<(PathBuf, PathBuf), TlsError> {
        std::fs::create_dir_all(dir).map_err(|source| TlsError::Write {
            path: dir.to_owned(),
            source,
        })?;
        let cert = dir.join(CERT_FILE);
        let key = dir.join(KEY_FILE);
        if !force {
            // Both checked first, so neither is written when one is in the way.
            for path in [&cert, &key] {
                if path.symlink_metadata().is_ok() {
                    return Err(TlsError::Exists(path.clone()));
                }
            }
        }
        write_file(&key, self.key_pem.as_bytes(), 0o600, force)?;
        write_file(&cert, self.cert_pem.as_bytes(), 0o644, force)?;
        Ok((cert, key))
    }
}

fn write_file(path: &Path, bytes: &[u8], mode: u32, force: bool) -> Result<(), TlsError> {
    use std::io::Write as _;
    let fail = |source| TlsError::Write {
        path: path.to_owned(),
        source,
    };
    let mut options = std::fs::OpenOptions::new();
    options.write(true);
    if force {
        options.create(true).truncate(true);
    } else {
        options.create_new(true);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(mode);
    }
    let mut file = options.open(path).map_err(|e| {
        if e.kind() == io::ErrorKind::AlreadyExists {
            TlsError::Exists(path.to_owned())
        } else {
            fail(e)
        }
    })?;
    // An existing file keeps its mode on open; reset it before the key goes in.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        file.set_permissions(std::fs::Permissions::from_mode(mode))
            .map_err(fail)?;
    }
    #[cfg(not(unix))]
    let _ = mode;
    file.write_all(bytes).map_err(fail)?;
    file.sync_all().map_err(fail)
}

/// A fingerprint as colon-separated upper-case hex pairs (`AB:CD:…`), as `openssl x509
/// -fingerprint -sha256` prints it.
pub fn fingerprint_hex(fingerprint: &[u8; 32]) -> String {
    let mut out = String::with_capacity(95);
    for (i, byte) in fingerprint.iter().enumerate() {
        if i > 0 {
            out.push(':');
        }
        let _ = write!(out, "{byte:02X}");
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn names() -> Vec<String> {
        DEFAULT_CERT_NAMES.iter().map(|n| (*n).to_owned()).collect()
    }

    #[test]
    fn a_generated_pair_loads() {
        let pair = SelfSigned::generate(&names(), 2).unwrap();
        assert!(pair.cert_pem().starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(pair.key_pem().starts_with("-----BEGIN PRIVATE KEY-----"));
        let tls =
            TlsServer::from_pem(pair.cert_pem().as_bytes(), pair.key_pem().as_bytes()).unwrap();
        assert_eq!(tls.handshake_timeout(), DEFAULT_HANDSHAKE_TIMEOUT);
        assert!(tls.config().ignore_client_order);
        // The fingerprint is the SHA-256 of the DER in the PEM.
        let der = CertificateDer::from_pem_slice(pair.cert_pem().as_bytes()).unwrap();
        assert_eq!(pair.fingerprint(), <[u8; 32]>::from(Sha256::digest(&der)));
    }

    #[test]
    fn a_key_of_another_certificate_is_refused() {
        let a = SelfSigned::generate(&names(), 1).unwrap();
        let b = SelfSigned::generate(&names(), 1).unwrap();
        let err = TlsServer::from_pem(a.cert_pem().as_bytes(), b.key_pem().as_bytes()).unwrap_err();
        assert!(matches!(err, TlsError::KeyMismatch), "{err}");
    }

    #[test]
    fn inputs_without_the_right_sections_are_refused() {
        let a = SelfSigned::generate(&names(), 1).unwrap();
        let key = a.key_pem().as_bytes();
        let cert = a.cert_pem().as_bytes();
        assert!(matches!(
            TlsServer::from_pem(b"", key),
            Err(TlsError::Certificate(_))
        ));
        assert!(matches!(
            TlsServer::from_pem(key, key),
            Err(TlsError::Certificate(_))
        ));
        assert!(matches!(
            TlsServer::from_pem(cert, cert),
            Err(TlsError::Key(_))
        ));
        // A truncated key: the error does not quote it.
        let cut = &key[..key.len() / 2];
        let err = TlsServer::from_pem(cert, cut).unwrap_err();
        assert!(matches!(err, TlsError::Key(_)), "{err}");
        assert!(!err.to_string().contains(&a.key_pem()[30..60]), "{err}");
    }

    #[test]
    fn only_ecdhe_aead_suites_and_modern_versions() {
        let p = provider();
        assert_eq!(p.cipher_suites.len(), 9);
        for suite in &p.cipher_suites {
            let name = format!("{:?}", suite.suite());
            assert!(
                name.starts_with("TLS13_") || name.starts_with("TLS_ECDHE_"),
                "{name}"
            );
            assert!(
                name.contains("_GCM_") || name.contains("CHACHA20_POLY1305"),
                "{name}"
            );
        }
        let versions: Vec<_> = PROTOCOL_VERSIONS.iter().map(|v| v.version).collect();
        assert_eq!(
            versions,
            [
                rustls::ProtocolVersion::TLSv1_3,
                rustls::ProtocolVersion::TLSv1_2
            ]
        );
    }

    #[test]
    fn bad_names_and_validity_are_refused() {
        assert!(SelfSigned::generate(&[], 1).is_err());
        assert!(SelfSigned::generate(&names(), 0).is_err());
        assert!(SelfSigned::generate(&names(), MAX_CERT_DAYS + 1).is_err());
        assert!(SelfSigned::generate(&["bad name é".to_owned()], 1).is_err());
    }

    #[test]
    fn files_are_not_overwritten_without_force() {
        let dir = tempfile::tempdir().unwrap();
        let a = SelfSigned::generate(&names(), 1).unwrap();
        let (cert, key) = a.write(dir.path(), false).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        let b = SelfSigned::generate(&names(), 1).unwrap();
        assert!(matches!(
            b.write(dir.path(), false),
            Err(TlsError::Exists(_))
        ));
        assert_eq!(std::fs::read_to_string(&cert).unwrap(), a.cert_pem());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
        b.write(dir.path(), true).unwrap();
        assert_eq!(std::fs::read_to_string(&cert).unwrap(), b.cert_pem());
        assert_eq!(std::fs::read_to_string(&key).unwrap(), b.key_pem());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        TlsServer::from_files(&cert, &key).unwrap();
    }

    #[test]
    fn fingerprints_print_as_openssl_does() {
        let mut fp = [0u8; 32];
        fp[0] = 0xab;
        fp[31] = 0x01;
        let hex = fingerprint_hex(&fp);
        assert_eq!(hex.len(), 95);
        assert!(hex.starts_with("AB:00:"));
        assert!(hex.ends_with(":00:01"));
    }
}
