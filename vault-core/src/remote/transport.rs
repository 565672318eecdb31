//! HTTPS to the server (docs/spec/client.md §2–§5): the rustls configuration (ring provider,
//! TLS 1.3/1.2, trust anchors or a pinned certificate), the loopback rule for plain HTTP,
//! retries with exponential backoff and jitter, capped answer bodies, and the mapping of the
//! server's error answers to [`RemoteError`].

use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

use rand_core::RngCore;
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use reqwest::{Method, StatusCode};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{ring, CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use vault_keyring::KdfPolicy;
use zeroize::Zeroizing;

use super::RemoteError;

/// The request header of an elevation token (docs/spec/mfa.md §6).
pub(crate) const ELEVATION_HEADER: &str = "vault-elevation";
/// The response header of blob versions (keyring, manifest).
pub(crate) const VERSION_HEADER: &str = "vault-version";

/// Caps on answer bodies (docs/spec/client.md §6): the server's own limits (api.md §6), so a
/// hostile or broken server cannot make the client allocate without bound.
pub(crate) mod limits {
    /// A sealed page: 16 MiB of content plus framing (the server's page limit).
    pub const PAGE: usize = 16 * 1024 * 1024 + 64;
    /// A manifest.
    pub const MANIFEST: usize = 16 * 1024 * 1024;
    /// A roster version.
    pub const ROSTER: usize = 1024 * 1024;
    /// An object header, wrapped collection key, envelope, identity bundle or keyring.
    pub const SMALL_BLOB: usize = 64 * 1024;
    /// A JSON answer (session, listings of scopes, envelopes, roster versions).
    pub const JSON: usize = 8 * 1024 * 1024;
    /// An answer whose body is not used (204, or an error's JSON).
    pub const ERROR: usize = 64 * 1024;
}

/// How often and how patiently a request is retried (docs/spec/client.md §4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (at least 1).
    pub max_attempts: u32,
    /// The delay before the first retry; it doubles with every further one.
    pub base_delay: Duration,
    /// The longest delay between two attempts; a `Retry-After` asking for more is not
    /// waited for (the answer is returned as [`RemoteError::RateLimited`]).
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 4,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(10),
        }
    }
}

impl RetryPolicy {
    /// No retries: every request is sent once.
    pub fn none() -> Self {
        Self {
            max_attempts: 1,
            ..Self::default()
        }
    }

    /// The delay before attempt `attempt + 1` (`attempt` ≥ 1): `base · 2^(attempt−1)`,
    /// capped at `max_delay`, then drawn uniformly from its upper half (jitter, so that
    /// clients that failed together do not return together).
    pub(crate) fn backoff(&self, attempt: u32) -> Duration {
        let exp = attempt.saturating_sub(1).min(20);
        let full = self
            .base_delay
            .saturating_mul(1u32 << exp)
            .min(self.max_delay);
        let half = full / 2;
        let span = u64::try_from(half.as_micros()).unwrap_or(u64::MAX);
        let jitter = if span == 0 {
            0
        } else {
            rand_core::OsRng.next_u64() % (span + 1)
        };
        half + Duration::from_micros(jitter)
    }
}

/// How to reach a server: trust, timeouts, retries and the client's KDF policy.
///
/// By default the server's certificate must chain to a root of the Mozilla root program
/// (the `webpki-roots` crate) and name the host. [`ServerOptions::trust_ca_pem`] replaces
/// those roots by your own CA (or a self-signed certificate); [`ServerOptions::pin_sha256`]
/// pins the server's certificate.
#[derive(Clone)]
pub struct ServerOptions {
    pub(crate) roots: Option<Vec<CertificateDer<'static>>>,
    pub(crate) pin: Option<[u8; 32]>,
    pub(crate) connect_timeout: Duration,
    pub(crate) timeout: Duration,
    pub(crate) retry: RetryPolicy,
    pub(crate) kdf_policy: KdfPolicy,
}

impl std::fmt::Debug for ServerOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerOptions")
            .field("custom_roots", &self.roots.as_ref().map(Vec::len))
            .field("pinned", &self.pin.is_some())
            .field("connect_timeout", &self.connect_timeout)
            .field("timeout", &self.timeout)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

impl Default for ServerOptions {
    fn default() -> Self {
        Self {
            roots: None,
            pin: None,
            connect_timeout: Duration::from_secs(10),
            timeout: Duration::from_secs(120),
            retry: RetryPolicy::default(),
            kdf_policy: KdfPolicy::default(),
        }
    }
}

impl ServerOptions {
    /// The defaults: public roots, 10 s to connect, 120 s per request, [`RetryPolicy`]'s
    /// defaults, the strict KDF policy.
    pub fn new() -> Self {
        Self::default()
    }

    /// Trusts only the certificates in `pem` (one or more `CERTIFICATE` blocks: your CA, or
    /// the server's self-signed certificate) instead of the public roots. The server's
    /// certificate must still chain to one of them and name the host.
    pub fn trust_ca_pem(mut self, pem: &[u8]) -> Result<Self, RemoteError> {
        let mut certs = Vec::new();
        for cert in CertificateDer::pem_slice_iter(pem) {
            certs.push(cert.map_err(|_| RemoteError::InvalidConfig("unreadable PEM certificate"))?);
        }
        if certs.is_empty() {
            return Err(RemoteError::InvalidConfig(
                "no certificate in the PEM input",
            ));
        }
        self.roots = Some(certs);
        Ok(self)
    }

    /// Pins the server's certificate: the SHA-256 of its DER encoding (what `vault-server
    /// gen-cert` prints). The handshake must present exactly this end-entity certificate and
    /// prove its key; chain, names and dates are not consulted unless a CA is also given
    /// with [`ServerOptions::trust_ca_pem`], in which case both must hold.
    pub fn pin_sha256(mut self, fingerprint: [u8; 32]) -> Self {
        self.pin = Some(fingerprint);
        self
    }

    /// [`ServerOptions::pin_sha256`] from 64 hex digits (colons and spaces allowed, any
    /// case).
    pub fn pin_sha256_hex(self, fingerprint: &str) -> Result<Self, RemoteError> {
        let hex: String = fingerprint
            .chars()
            .filter(|c| *c != ':' && !c.is_whitespace())
            .collect::<String>()
            .to_ascii_lowercase();
        let bytes = data_encoding::HEXLOWER
            .decode(hex.as_bytes())
            .map_err(|_| RemoteError::InvalidConfig("pin: not 64 hex digits"))?;
        let pin: [u8; 32] = bytes
            .try_into()
            .map_err(|_| RemoteError::InvalidConfig("pin: not 64 hex digits"))?;
        Ok(self.pin_sha256(pin))
    }

    /// Time to establish a connection (TCP and TLS).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Time for a whole request, upload and answer included.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The retry policy.
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// The bounds on KDF iteration counts this client accepts from the server and uses for
    /// new keyrings. Only the default exists outside tests (`vault_keyring::KdfPolicy`).
    pub fn kdf_policy(mut self, policy: KdfPolicy) -> Self {
        self.kdf_policy = policy;
        self
    }
}

/// The error a pinned verifier returns for another certificate; found again in the
/// connection error's source chain to report [`RemoteError::PinMismatch`].
#[derive(Debug)]
struct PinMismatch;

impl std::fmt::Display for PinMismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the server certificate is not the pinned one")
    }
}

impl std::error::Error for PinMismatch {}

/// Accepts exactly the pinned end-entity certificate (after the CA check, if a CA is
/// given), and verifies the handshake signature with its key by the ring provider's
/// algorithms, so a server must hold the pinned certificate's private key.
#[derive(Debug)]
struct PinnedVerifier {
    pin: [u8; 32],
    chain: Option<Arc<WebPkiServerVerifier>>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for PinnedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Some(chain) = &self.chain {
            chain.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)?;
        }
        let digest: [u8; 32] = Sha256::digest(end_entity.as_ref()).into();
        if bool::from(digest.ct_eq(&self.pin)) {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::Other(rustls::OtherError(Arc::new(PinMismatch))),
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// The rustls configuration: ring provider, TLS 1.3 and 1.2, HTTP/1.1 by ALPN.
fn tls_config(options: &ServerOptions) -> Result<rustls::ClientConfig, RemoteError> {
    let provider: Arc<CryptoProvider> = Arc::new(ring::default_provider());
    let algorithms = provider.signature_verification_algorithms;
    let mut roots = RootCertStore::empty();
    match &options.roots {
        Some(certs) => {
            for cert in certs {
                roots
                    .add(cert.clone())
                    .map_err(|_| RemoteError::InvalidConfig("unusable CA certificate"))?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|_| RemoteError::InvalidConfig("TLS configuration"))?;
    let mut config = match options.pin {
        None => builder.with_root_certificates(roots).with_no_client_auth(),
        Some(pin) => {
            let chain = match &options.roots {
                Some(_) => Some(
                    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                        .build()
                        .map_err(|_| RemoteError::InvalidConfig("TLS trust anchors"))?,
                ),
                None => None,
            };
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(PinnedVerifier {
                    pin,
                    chain,
                    algorithms,
                }))
                .with_no_client_auth()
        }
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Whether the URL's host is a loopback name or address (`localhost`, 127.0.0.0/8, ::1).
pub(crate) fn is_loopback(url: &reqwest::Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    match bare.parse::<std::net::IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => bare.eq_ignore_ascii_case("localhost"),
    }
}

/// A request body.
pub(crate) enum Body<'a> {
    /// None.
    Empty,
    /// An opaque blob (`application/octet-stream`).
    Blob(&'a [u8]),
    /// JSON, possibly holding a secret (wiped when dropped).
    Json(Zeroizing<Vec<u8>>),
}

/// One request to the API.
pub(crate) struct Request<'a> {
    pub method: Method,
    /// Path and query, starting with `/v1/`.
    pub path: String,
    pub body: Body<'a>,
    /// The session token, if the route needs one.
    pub token: Option<&'a str>,
    /// An elevation token for a sensitive operation.
    pub elevation: Option<&'a str>,
    /// The most bytes a successful answer's body may have.
    pub limit: usize,
}

impl<'a> Request<'a> {
    pub(crate) fn new(method: Method, path: String, limit: usize) -> Self {
        Self {
            method,
            path,
            body: Body::Empty,
            token: None,
            elevation: None,
            limit,
        }
    }

    pub(crate) fn token(mut self, token: &'a str) -> Self {
        self.token = Some(token);
        self
    }

    pub(crate) fn blob(mut self, blob: &'a [u8]) -> Self {
        self.body = Body::Blob(blob);
        self
    }

    pub(crate) fn json(mut self, value: &impl serde::Serialize) -> Result<Self, RemoteError> {
        let bytes = serde_json::to_vec(value)
            .map_err(|_| RemoteError::InvalidConfig("request not encodable"))?;
        self.body = Body::Json(Zeroizing::new(bytes));
        Ok(self)
    }
}

/// An answer: status, headers and the body (read up to its limit; wiped when dropped).
pub(crate) struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Zeroizing<Vec<u8>>,
    /// How many attempts it took (more than 1: an earlier attempt may have taken effect).
    pub attempts: u32,
}

impl Answer {
    /// The `Vault-Version` header, strictly decimal.
    pub(crate) fn version(&self) -> Result<u64, RemoteError> {
        let value = self
            .headers
            .get(VERSION_HEADER)
            .ok_or(RemoteError::Protocol("missing version header"))?;
        parse_decimal(value.as_bytes()).ok_or(RemoteError::Protocol("malformed version header"))
    }

    /// The body as JSON of type `T`.
    pub(crate) fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, RemoteError> {
        serde_json::from_slice(&self.body).map_err(|_| RemoteError::Protocol("malformed JSON"))
    }

    /// The body, moved out.
    pub(crate) fn into_bytes(mut self) -> Vec<u8> {
        std::mem::take(&mut *self.body)
    }

    /// The error this (non-success) answer stands for (docs/spec/client.md §5). Only the
    /// status, the error code and `current` are used; the server's message text never is.
    pub(crate) fn error(&self) -> RemoteError {
        error_of(self.status, &self.headers, &self.body)
    }
}

fn parse_decimal(bytes: &[u8]) -> Option<u64> {
    if bytes.is_empty() || bytes.len() > 19 || !bytes.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(bytes).ok()?.parse().ok()
}

#[derive(serde::Deserialize)]
struct ErrorBody {
    error: ErrorObject,
}

#[derive(serde::Deserialize)]
struct ErrorObject {
    code: String,
    #[serde(default)]
    current: Option<u64>,
}

/// `Retry-After` in seconds (the only form the server sends), at most a day.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let secs = parse_decimal(headers.get(RETRY_AFTER)?.as_bytes())?;
    Some(Duration::from_secs(secs.min(86_400)))
}

pub(crate) fn error_of(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> RemoteError {
    let parsed: Option<ErrorObject> = serde_json::from_slice::<ErrorBody>(body)
        .ok()
        .map(|b| b.error);
    let code = parsed.as_ref().map_or("", |e| e.code.as_str());
    match (status.as_u16(), code) {
        (401, "authentication_failed") => RemoteError::AuthenticationFailed,
        (401, "mfa_required") => RemoteError::MfaRequired,
        (401, "mfa_failed") => RemoteError::MfaFailed,
        (401, _) => RemoteError::SessionEnded,
        (403, "elevation_required") => RemoteError::ElevationRequired,
        (403, "address_not_allowed") => RemoteError::AddressNotAllowed,
        (404, _) => RemoteError::NotFound,
        (408, _) => RemoteError::TimedOut,
        (409, "exists") => RemoteError::Exists,
        (409, "conflict") => match parsed.and_then(|e| e.current) {
            Some(current) => RemoteError::Conflict { current },
            None => RemoteError::Protocol("conflict without the current version"),
        },
        (413, "quota_exceeded") => RemoteError::QuotaExceeded,
        (413, _) => RemoteError::TooLarge,
        (429, _) => RemoteError::RateLimited {
            retry_after: retry_after(headers),
        },
        (s @ 500..=599, _) => RemoteError::Server { status: s },
        (s @ 400..=499, _) => RemoteError::Refused { status: s },
        _ => RemoteError::Protocol("unexpected status"),
    }
}

/// Whether an answer with this status may be retried (idempotent requests only).
fn retryable_status(status: StatusCode) -> bool {
    matches!(status.as_u16(), 408 | 429 | 502 | 503 | 504)
}

/// Why an attempt failed before an answer arrived.
enum Failure {
    /// The connection was not established: nothing was sent, any request may be retried.
    Connect,
    /// The request may have reached the server: only idempotent requests are retried.
    Lost { timeout: bool },
    /// Not retried.
    Final(RemoteError),
}

impl Failure {
    fn into_error(self) -> RemoteError {
        match self {
            Failure::Connect => RemoteError::Unreachable,
            Failure::Lost { timeout: true } => RemoteError::TimedOut,
            Failure::Lost { timeout: false } => RemoteError::Unreachable,
            Failure::Final(e) => e,
        }
    }
}

/// The rustls error behind a transport error, if any. `io::Error` wrappers (nested ones
/// too) are opened with `get_ref`, since their `source` skips the wrapped error.
fn find_tls_error<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    let mut current = Some(e);
    while let Some(err) = current {
        if let Some(tls) = err.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        current = match err.downcast_ref::<std::io::Error>() {
            Some(io) => io
                .get_ref()
                .map(|inner| inner as &(dyn std::error::Error + 'static)),
            None => err.source(),
        };
    }
    None
}

fn classify(e: &reqwest::Error) -> Failure {
    if let Some(tls) = find_tls_error(e) {
        let pin = matches!(
            tls,
            rustls::Error::InvalidCertificate(rustls::CertificateError::Other(other))
                if other.0.downcast_ref::<PinMismatch>().is_some()
        );
        tracing::debug!(target: "vault_core::remote", error = %tls, "TLS handshake failed");
        return Failure::Final(if pin {
            RemoteError::PinMismatch
        } else {
            RemoteError::Tls
        });
    }
    if e.is_connect() {
        Failure::Connect
    } else if e.is_timeout() {
        Failure::Lost { timeout: true }
    } else if e.is_builder() || e.is_request() && e.url().is_none() {
        Failure::Final(RemoteError::InvalidUrl)
    } else {
        Failure::Lost { timeout: false }
    }
}

fn classify_read(e: &std::io::Error) -> Failure {
    let timeout = matches!(
        e.kind(),
        std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
    ) || e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<reqwest::Error>())
        .is_some_and(reqwest::Error::is_timeout);
    Failure::Lost { timeout }
}

/// The HTTP side of a connection to one server.
pub(crate) struct Http {
    client: reqwest::blocking::Client,
    /// The base URL without a trailing slash.
    base: String,
    retry: RetryPolicy,
    pub(crate) kdf_policy: KdfPolicy,
}

impl Http {
    pub(crate) fn new(url: &str, options: &ServerOptions) -> Result<Self, RemoteError> {
        let base = reqwest::Url::parse(url).map_err(|_| RemoteError::InvalidUrl)?;
        let loopback = is_loopback(&base);
        match base.scheme() {
            "https" => {}
            "http" if loopback => {}
            "http" => return Err(RemoteError::PlainHttpRefused),
            _ => return Err(RemoteError::InvalidUrl),
        }
        if base.cannot_be_a_base()
            || base.host_str().is_none()
            || base.query().is_some()
            || base.fragment().is_some()
            || !base.username().is_empty()
            || base.password().is_some()
        {
            return Err(RemoteError::InvalidUrl);
        }
        let mut builder = reqwest::blocking::Client::builder()
            .use_preconfigured_tls(tls_config(options)?)
            .https_only(base.scheme() == "https")
            // The API never redirects; following one could carry the token elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(options.connect_timeout)
            .timeout(options.timeout)
            .user_agent(concat!("vault-core/", env!("CARGO_PKG_VERSION")));
        if loopback {
            builder = builder.no_proxy();
        }
        let client = builder
            .build()
            .map_err(|_| RemoteError::InvalidConfig("HTTP client"))?;
        Ok(Self {
            client,
            base: base.as_str().trim_end_matches('/').to_owned(),
            retry: options.retry,
            kdf_policy: options.kdf_policy,
        })
    }

    /// The base URL.
    pub(crate) fn base(&self) -> &str {
        &self.base
    }

    /// Sends `request`, retrying as docs/spec/client.md §4 says; returns the answer whatever
    /// its status (callers map non-success with [`Answer::error`]).
    pub(crate) fn send(&self, request: &Request<'_>) -> Result<Answer, RemoteError> {
        let idempotent = matches!(request.method, Method::GET | Method::PUT | Method::DELETE);
        let max = self.retry.max_attempts.max(1);
        let mut attempt = 1u32;
        loop {
            let result = self.send_once(request);
            let wait = match &result {
                Ok(a) if idempotent && retryable_status(a.status) => {
                    Some(retry_after(&a.headers).unwrap_or_else(|| self.retry.backoff(attempt)))
                }
                Err(Failure::Connect) => Some(self.retry.backoff(attempt)),
                Err(Failure::Lost { .. }) if idempotent => Some(self.retry.backoff(attempt)),
                _ => None,
            };
            match wait {
                Some(delay) if attempt < max && delay <= self.retry.max_delay => {
                    tracing::debug!(target: "vault_core::remote", attempt, ?delay, "retrying");
                    std::thread::sleep(delay);
                    attempt += 1;
                }
                _ => {
                    return result
                        .map(|mut a| {
                            a.attempts = attempt;
                            a
                        })
                        .map_err(Failure::into_error)
                }
            }
        }
    }

    fn send_once(&self, request: &Request<'_>) -> Result<Answer, Failure> {
        let url = format!("{}{}", self.base, request.path);
        let mut builder = self.client.request(request.method.clone(), url);
        if let Some(token) = request.token {
            let value = Zeroizing::new(format!("Bearer {token}"));
            builder = builder.header(AUTHORIZATION, secret_header(&value)?);
        }
        if let Some(elevation) = request.elevation {
            builder = builder.header(ELEVATION_HEADER, secret_header(elevation)?);
        }
        builder = match &request.body {
            Body::Empty => builder,
            Body::Blob(b) => builder
                .header(CONTENT_TYPE, "application/octet-stream")
                .body(b.to_vec()),
            Body::Json(j) => builder
                .header(CONTENT_TYPE, "application/json")
                .body(j.to_vec()),
        };
        let mut response = builder.send().map_err(|e| classify(&e))?;
        let status = response.status();
        let headers = response.headers().clone();
        let limit = if status.is_success() {
            request.limit
        } else {
            limits::ERROR
        };
        let declared = response.content_length().unwrap_or(0);
        if declared > limit as u64 {
            return Err(Failure::Final(RemoteError::Protocol(
                "answer larger than its limit",
            )));
        }
        let mut body = Zeroizing::new(Vec::with_capacity(declared as usize));
        (&mut response)
            .take(limit as u64 + 1)
            .read_to_end(&mut body)
            .map_err(|e| classify_read(&e))?;
        if body.len() > limit {
            return Err(Failure::Final(RemoteError::Protocol(
                "answer larger than its limit",
            )));
        }
        Ok(Answer {
            status,
            headers,
            body,
            attempts: 1,
        })
    }
}

/// A header value marked sensitive (kept out of the HTTP library's debug output).
fn secret_header(value: &str) -> Result<HeaderValue, Failure> {
    let mut header = HeaderValue::from_str(value)
        .map_err(|_| Failure::Final(RemoteError::Protocol("token is not a valid header")))?;
    header.set_sensitive(true);
    Ok(header)
}
