//! Accounts over the API (docs/spec/client.md §7): registration, pre-login and login (with
//! a second factor), the sealed keyring, password change, elevation, MFA enrolment and
//! management (docs/spec/mfa.md §4), logout, the name directory and identity bundles.

use std::sync::{Arc, Mutex};

use rand_core::OsRng;
use reqwest::{Method, StatusCode};
use vault_keyring::{
    IdentityBundle, KdfParams, Keyring, KeyringId, KeyringOptions, Password, PasswordKeys,
    RecoveryCode, SealedKeyring, FORMAT_VERSION, SALT_LEN, SUITE,
};
use zeroize::Zeroizing;

use super::store::RemoteStore;
use super::transport::{limits, Answer, Http, Request, ServerOptions};
use super::{b64, hex, unb64, unhex16, RemoteError};

/// A server: its URL, the TLS trust and the client's policies. Cheap to clone.
#[derive(Clone)]
pub struct Server {
    http: Arc<Http>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("url", &self.http.base())
            .finish()
    }
}

/// What a new account needs to keep: the keyring (to open a vault now) and the recovery
/// code, to show the user once.
pub struct Registration {
    /// The new keyring, unlocked.
    pub keyring: Keyring,
    /// The recovery code of the sealed keyring (docs/spec/keyring.md §5): show it to the
    /// user once; it is the only way back in without the password.
    pub recovery_code: RecoveryCode,
}

impl std::fmt::Debug for Registration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registration")
            .field("user", &self.keyring.id())
            .finish_non_exhaustive()
    }
}

/// A second factor for a login or an elevation (docs/spec/mfa.md §1).
pub enum SecondFactor {
    /// A 6-digit TOTP code.
    Totp(Zeroizing<String>),
    /// A 6-digit HOTP code.
    Hotp(Zeroizing<String>),
    /// A backup code (`XXXX-XXXX-XXXX-XXXX`).
    BackupCode(Zeroizing<String>),
}

impl std::fmt::Debug for SecondFactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SecondFactor::Totp(_) => "SecondFactor::Totp([redacted])",
            SecondFactor::Hotp(_) => "SecondFactor::Hotp([redacted])",
            SecondFactor::BackupCode(_) => "SecondFactor::BackupCode([redacted])",
        })
    }
}

impl SecondFactor {
    /// A TOTP code.
    pub fn totp(code: &str) -> Self {
        SecondFactor::Totp(Zeroizing::new(code.to_owned()))
    }

    /// An HOTP code.
    pub fn hotp(code: &str) -> Self {
        SecondFactor::Hotp(Zeroizing::new(code.to_owned()))
    }

    /// A backup code.
    pub fn backup_code(code: &str) -> Self {
        SecondFactor::BackupCode(Zeroizing::new(code.to_owned()))
    }

    fn body(&self) -> FactorBody<'_> {
        let (kind, code) = match self {
            SecondFactor::Totp(c) => ("totp", c),
            SecondFactor::Hotp(c) => ("hotp", c),
            SecondFactor::BackupCode(c) => ("backup_code", c),
        };
        FactorBody {
            kind,
            code: code.as_str(),
        }
    }
}

/// Options of a login: a second factor, a trusted device's token, or a request to trust
/// this device (docs/spec/mfa.md §5).
#[derive(Default)]
pub struct Login {
    second_factor: Option<SecondFactor>,
    device_token: Option<Zeroizing<String>>,
    trust_device: Option<String>,
}

impl std::fmt::Debug for Login {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Login")
            .field("second_factor", &self.second_factor)
            .field(
                "device_token",
                &self.device_token.as_ref().map(|_| "[redacted]"),
            )
            .field("trust_device", &self.trust_device)
            .finish()
    }
}

impl Login {
    /// A login without a second factor.
    pub fn new() -> Self {
        Self::default()
    }

    /// With a second factor.
    pub fn second_factor(mut self, factor: SecondFactor) -> Self {
        self.second_factor = Some(factor);
        self
    }

    /// With the token of a device trusted earlier ([`Session::device_token`]).
    pub fn device_token(mut self, token: &str) -> Self {
        self.device_token = Some(Zeroizing::new(token.to_owned()));
        self
    }

    /// Asks the server to trust this device for 30 days under `label` (with a second
    /// factor); the token comes back in [`Session::device_token`].
    pub fn trust_device(mut self, label: &str) -> Self {
        self.trust_device = Some(label.to_owned());
        self
    }
}

/// The kind of a one-time-password factor (docs/spec/mfa.md §1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OtpKind {
    /// RFC 6238 time-based codes (authenticator apps): 6 digits, 30-second steps.
    Totp,
    /// RFC 4226 counter-based codes: 6 digits.
    Hotp,
}

impl OtpKind {
    /// The API's name: `totp` or `hotp`.
    pub fn as_str(self) -> &'static str {
        match self {
            OtpKind::Totp => "totp",
            OtpKind::Hotp => "hotp",
        }
    }

    fn parse(text: &str) -> Result<Self, RemoteError> {
        match text {
            "totp" => Ok(OtpKind::Totp),
            "hotp" => Ok(OtpKind::Hotp),
            _ => Err(RemoteError::Protocol("unknown second-factor kind")),
        }
    }
}

impl std::fmt::Display for OtpKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A confirmed factor in [`MfaStatus`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct MfaFactor {
    /// TOTP or HOTP.
    pub kind: OtpKind,
    /// Confirmed at (Unix seconds, the server's clock).
    pub since: u64,
}

/// A trusted device in [`MfaStatus`] (docs/spec/mfa.md §2).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct TrustedDevice {
    /// The device id (16 bytes; for revocation).
    pub id: [u8; 16],
    /// The label given when it was trusted (the server's word: show it as untrusted text).
    pub label: String,
    /// Trusted since (Unix seconds).
    pub created: u64,
    /// Trusted until (Unix seconds).
    pub expires: u64,
    /// The last login that used it (Unix seconds).
    pub last_used: u64,
}

/// The account's MFA settings (`GET /v1/account/mfa`): never a secret or a code.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct MfaStatus {
    /// Whether logins and sensitive operations need a second factor.
    pub enabled: bool,
    /// The confirmed factors.
    pub factors: Vec<MfaFactor>,
    /// The kind of an enrolment waiting for its first code ([`Session::confirm_otp`]).
    pub pending: Option<OtpKind>,
    /// Unused backup codes.
    pub backup_codes_left: u64,
    /// Trusted devices.
    pub devices: Vec<TrustedDevice>,
    /// The IP allow-list (CIDR ranges as the server wrote them); empty: every address.
    pub allowlist: Vec<String>,
}

/// A new TOTP/HOTP secret from [`Session::enroll_otp`], to put into an authenticator
/// (shown once). The secret and the URI (which holds the secret) are wiped when dropped
/// and never shown in `Debug`.
pub struct OtpEnrolment {
    kind: OtpKind,
    secret: Zeroizing<String>,
    uri: Zeroizing<String>,
    algorithm: String,
    digits: u32,
    period: Option<u64>,
    confirm_before: u64,
}

impl std::fmt::Debug for OtpEnrolment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtpEnrolment")
            .field("kind", &self.kind)
            .field("secret", &"[redacted]")
            .field("uri", &"[redacted]")
            .field("algorithm", &self.algorithm)
            .field("digits", &self.digits)
            .field("period", &self.period)
            .field("confirm_before", &self.confirm_before)
            .finish()
    }
}

impl OtpEnrolment {
    /// TOTP or HOTP.
    pub fn kind(&self) -> OtpKind {
        self.kind
    }

    /// The secret in base32 (RFC 4648, no padding), as authenticator apps take it typed
    /// in. A secret: show it to the user once, never log it.
    pub fn expose_secret(&self) -> &str {
        &self.secret
    }

    /// The secret's bytes.
    pub fn secret_bytes(&self) -> Zeroizing<Vec<u8>> {
        // Checked to decode when the answer was read.
        Zeroizing::new(
            data_encoding::BASE32_NOPAD
                .decode(self.secret.as_bytes())
                .unwrap_or_default(),
        )
    }

    /// The `otpauth://` URI (for a QR code). It holds the secret: same care.
    pub fn expose_uri(&self) -> &str {
        &self.uri
    }

    /// The HMAC (`SHA1`).
    pub fn algorithm(&self) -> &str {
        &self.algorithm
    }

    /// Digits per code (6).
    pub fn digits(&self) -> u32 {
        self.digits
    }

    /// TOTP: seconds per code (30); HOTP: `None`.
    pub fn period(&self) -> Option<u64> {
        self.period
    }

    /// Until when the enrolment waits for its first code (Unix seconds, server clock).
    pub fn confirm_before(&self) -> u64 {
        self.confirm_before
    }
}

/// Backup codes (`XXXX-XXXX-XXXX-XXXX`, single use), shown once: wiped when dropped,
/// never shown in `Debug` (only their number).
pub struct BackupCodes(Vec<Zeroizing<String>>);

impl std::fmt::Debug for BackupCodes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BackupCodes({} [redacted])", self.0.len())
    }
}

impl BackupCodes {
    /// How many.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// None: the account had codes already, and they stay valid
    /// ([`Session::confirm_otp`]).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The codes. Secrets: show them to the user once, never log them.
    pub fn expose(&self) -> impl Iterator<Item = &str> + '_ {
        self.0.iter().map(|c| c.as_str())
    }
}

#[derive(serde::Serialize)]
struct FactorBody<'a> {
    kind: &'a str,
    code: &'a str,
}

#[derive(serde::Serialize)]
struct RegisterBody<'a> {
    name: &'a str,
    user: String,
    login_secret: &'a str,
    keyring: String,
    identity: String,
    /// The recovery code's recovery login secret (api.md §5.1), so that the code can later
    /// recover the account through the server (`Server::recover`).
    recovery_secret: &'a str,
}

#[derive(serde::Serialize)]
struct NameBody<'a> {
    name: &'a str,
}

#[derive(serde::Serialize)]
struct LoginBody<'a> {
    name: &'a str,
    login_secret: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    second_factor: Option<FactorBody<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    device_token: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    trust_device: Option<&'a str>,
}

#[derive(serde::Serialize)]
struct PasswordBody<'a> {
    expected: u64,
    keyring: String,
    login_secret: &'a str,
    new_login_secret: &'a str,
}

#[derive(serde::Serialize)]
struct ElevationBody<'a> {
    second_factor: FactorBody<'a>,
}

#[derive(serde::Serialize)]
struct EnrolBody<'a> {
    kind: &'a str,
    login_secret: &'a str,
}

#[derive(serde::Serialize)]
struct ConfirmBody<'a> {
    kind: &'a str,
    code: &'a str,
}

#[derive(serde::Serialize)]
struct SecretBody<'a> {
    login_secret: &'a str,
}

#[derive(serde::Deserialize)]
struct FactorAnswer {
    kind: String,
    since: u64,
}

#[derive(serde::Deserialize)]
struct DeviceAnswer {
    id: String,
    label: String,
    created: u64,
    expires: u64,
    last_used: u64,
}

#[derive(serde::Deserialize)]
struct MfaStatusAnswer {
    enabled: bool,
    factors: Vec<FactorAnswer>,
    pending: Option<String>,
    backup_codes_left: u64,
    devices: Vec<DeviceAnswer>,
    allowlist: Vec<String>,
}

#[derive(serde::Deserialize)]
struct EnrolAnswer {
    kind: String,
    secret: String,
    uri: String,
    algorithm: String,
    digits: u32,
    #[serde(default)]
    period: Option<u64>,
    confirm_before: u64,
}

#[derive(serde::Deserialize)]
struct BackupCodesAnswer {
    backup_codes: Vec<String>,
}

/// Text from the server that is shown to the user: printable ASCII, bounded.
fn printable(text: &str, max: usize) -> bool {
    !text.is_empty() && text.len() <= max && text.bytes().all(|b| b.is_ascii_graphic())
}

impl MfaStatusAnswer {
    fn check(self) -> Result<MfaStatus, RemoteError> {
        let factors = self
            .factors
            .into_iter()
            .map(|f| {
                Ok(MfaFactor {
                    kind: OtpKind::parse(&f.kind)?,
                    since: f.since,
                })
            })
            .collect::<Result<Vec<_>, RemoteError>>()?;
        let devices = self
            .devices
            .into_iter()
            .map(|d| {
                if d.label.len() > 256 || d.label.chars().any(char::is_control) {
                    return Err(RemoteError::Protocol("malformed device label"));
                }
                Ok(TrustedDevice {
                    id: unhex16(&d.id)?,
                    label: d.label,
                    created: d.created,
                    expires: d.expires,
                    last_used: d.last_used,
                })
            })
            .collect::<Result<Vec<_>, RemoteError>>()?;
        if self.allowlist.iter().any(|r| !printable(r, 64)) {
            return Err(RemoteError::Protocol("malformed allow-list"));
        }
        Ok(MfaStatus {
            enabled: self.enabled,
            factors,
            pending: self.pending.as_deref().map(OtpKind::parse).transpose()?,
            backup_codes_left: self.backup_codes_left,
            devices,
            allowlist: self.allowlist,
        })
    }
}

impl EnrolAnswer {
    fn check(self, asked: OtpKind) -> Result<OtpEnrolment, RemoteError> {
        let secret = Zeroizing::new(self.secret);
        let uri = Zeroizing::new(self.uri);
        if OtpKind::parse(&self.kind)? != asked {
            return Err(RemoteError::Protocol("enrolment answered another kind"));
        }
        let bytes = Zeroizing::new(
            data_encoding::BASE32_NOPAD
                .decode(secret.as_bytes())
                .map_err(|_| RemoteError::Protocol("malformed second-factor secret"))?,
        );
        if !(10..=64).contains(&bytes.len()) {
            return Err(RemoteError::Protocol("second-factor secret length"));
        }
        // The URI an app scans must hold the secret shown in text.
        let prefix = format!("otpauth://{}/", asked.as_str());
        let holds_secret = uri
            .split_once('?')
            .is_some_and(|(_, query)| query.split('&').any(|p| p == format!("secret={}", *secret)));
        if !printable(&uri, 2048) || !uri.starts_with(&prefix) || !holds_secret {
            return Err(RemoteError::Protocol("malformed otpauth URI"));
        }
        if !printable(&self.algorithm, 16) || !(6..=10).contains(&self.digits) {
            return Err(RemoteError::Protocol("second-factor parameters"));
        }
        let period = match (asked, self.period) {
            (OtpKind::Totp, Some(p)) if (1..=3600).contains(&p) => Some(p),
            (OtpKind::Hotp, None) => None,
            _ => return Err(RemoteError::Protocol("second-factor parameters")),
        };
        Ok(OtpEnrolment {
            kind: asked,
            secret,
            uri,
            algorithm: self.algorithm,
            digits: self.digits,
            period,
            confirm_before: self.confirm_before,
        })
    }
}

impl BackupCodesAnswer {
    fn check(self) -> Result<BackupCodes, RemoteError> {
        let codes: Vec<Zeroizing<String>> =
            self.backup_codes.into_iter().map(Zeroizing::new).collect();
        if codes.len() > 100 || codes.iter().any(|c| !printable(c, 64)) {
            return Err(RemoteError::Protocol("malformed backup codes"));
        }
        Ok(BackupCodes(codes))
    }
}

#[derive(serde::Serialize)]
struct RecoveryKeyringBody<'a> {
    name: &'a str,
    recovery_secret: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    second_factor: Option<FactorBody<'a>>,
}

#[derive(serde::Serialize)]
struct RecoveryBody<'a> {
    name: &'a str,
    recovery_secret: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    second_factor: Option<FactorBody<'a>>,
    expected: u64,
    keyring: String,
    new_login_secret: &'a str,
    new_recovery_secret: &'a str,
}

#[derive(serde::Deserialize)]
struct UserAnswer {
    user: String,
}

#[derive(serde::Deserialize)]
struct PreloginAnswer {
    kdf_salt: String,
    kdf_iterations: u32,
}

#[derive(serde::Deserialize)]
struct SessionAnswer {
    token: String,
    user: String,
    expires: u64,
    #[serde(default)]
    device_token: Option<String>,
    #[serde(default)]
    backup_codes_left: Option<u64>,
}

#[derive(serde::Deserialize)]
struct TokenAnswer {
    token: String,
}

#[derive(serde::Deserialize)]
struct VersionAnswer {
    version: u64,
}

fn success(answer: Answer) -> Result<Answer, RemoteError> {
    if answer.status.is_success() {
        Ok(answer)
    } else {
        Err(answer.error())
    }
}

/// The login secret in the API's encoding, in wiped memory.
fn secret_text(keys: &PasswordKeys) -> Zeroizing<String> {
    Zeroizing::new(b64(keys.login_secret().expose_bytes()))
}

/// KDF parameters from the salt and count a server sent. `vault-keyring` has no public
/// constructor from parts yet (only its test-only `danger` module has one), so they are
/// read through its sealed-keyring decoder from a stand-in header (keyring.md §4.2) that
/// carries them; nothing else of it is used. They are checked against the policy when the
/// keys are derived.
fn kdf_params_from(salt: &[u8; SALT_LEN], iterations: u32) -> Result<KdfParams, RemoteError> {
    let mut blob = Vec::with_capacity(64 + 160 + 512);
    blob.extend_from_slice(b"VKRG");
    blob.extend_from_slice(&FORMAT_VERSION.to_be_bytes());
    blob.extend_from_slice(&SUITE.to_be_bytes());
    blob.extend_from_slice(&[0u8; 16]); // keyring id
    blob.extend_from_slice(&0u32.to_be_bytes()); // generation
    blob.extend_from_slice(&iterations.to_be_bytes());
    blob.extend_from_slice(salt);
    blob.extend_from_slice(&[0u8; SALT_LEN]); // recovery salt
    blob.resize(blob.len() + 2 * 80 + 512, 0); // both wraps and a body
    let params = SealedKeyring::from_bytes(&blob)
        .map_err(|_| RemoteError::Protocol("KDF parameters"))?
        .kdf_params();
    if params.salt() != salt || params.iterations() != iterations {
        return Err(RemoteError::Protocol("KDF parameters"));
    }
    Ok(params)
}

impl Server {
    /// A server at `url` (`https://host[:port][/prefix]`; `http://` only to a loopback
    /// host). Nothing is sent yet.
    pub fn connect(url: &str, options: ServerOptions) -> Result<Self, RemoteError> {
        Ok(Self {
            http: Arc::new(Http::new(url, &options)?),
        })
    }

    /// The base URL.
    pub fn url(&self) -> &str {
        self.http.base()
    }

    /// A session resumed from a token saved by an earlier [`Server::login`] (e.g. a
    /// command-line tool's session file): `token` as [`Session::expose_token`] gave it,
    /// `user` and `expires` as [`Session::user`] and [`Session::expires`] did. Nothing is
    /// sent: a token the server no longer accepts shows up as
    /// [`RemoteError::SessionEnded`] on the first request.
    pub fn resume(
        &self,
        token: &str,
        user: KeyringId,
        expires: u64,
    ) -> Result<Session, RemoteError> {
        if token.is_empty() || token.len() > 256 || !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(RemoteError::InvalidConfig("malformed session token"));
        }
        Ok(Session {
            connection: Arc::new(Connection {
                http: self.http.clone(),
                token: Zeroizing::new(token.to_owned()),
                elevation: Mutex::new(None),
            }),
            user,
            expires,
            device_token: None,
            backup_codes_left: None,
        })
    }

    /// Recovers the account `name` with its recovery code after the password was lost
    /// (api.md §5.1 "Recovery"; keyring.md §5.1): the sealed keyring is fetched against the
    /// code's recovery secret (`POST /v1/recovery/keyring`; with MFA on, `factor` is
    /// needed), opened here with the code, sealed under `new_password` with `new_kdf` and
    /// under a **new** recovery code, and sent back with the new login secret and the new
    /// code's recovery secret (`POST /v1/recovery`). The server ends every session: log in
    /// with the new password. Returns the keyring and the new recovery code (show it once;
    /// the old one no longer opens anything). A wrong name or code is
    /// [`RemoteError::AuthenticationFailed`] (one answer, as for a login).
    pub fn recover(
        &self,
        name: &str,
        code: &RecoveryCode,
        new_password: &Password,
        new_kdf: &KdfParams,
        factor: Option<&SecondFactor>,
    ) -> Result<Registration, RemoteError> {
        let secret = Zeroizing::new(b64(code.recovery_secret().expose_bytes()));
        let request = Request::new(
            Method::POST,
            "/v1/recovery/keyring".to_owned(),
            limits::SMALL_BLOB,
        )
        .json(&RecoveryKeyringBody {
            name,
            recovery_secret: &secret,
            second_factor: factor.map(SecondFactor::body),
        })?;
        let answer = success(self.http.send(&request)?)?;
        let version = answer.version()?;
        let elevation = match answer.headers.get(super::transport::ELEVATION_HEADER) {
            Some(v) => {
                let text = v
                    .to_str()
                    .map_err(|_| RemoteError::Protocol("malformed elevation token"))?;
                if text.is_empty()
                    || text.len() > 256
                    || !text.bytes().all(|b| b.is_ascii_graphic())
                {
                    return Err(RemoteError::Protocol("malformed elevation token"));
                }
                Some(Zeroizing::new(text.to_owned()))
            }
            None => None,
        };
        let sealed = SealedKeyring::from_bytes(&answer.body)?;
        let new_keys = self.derive(new_password, new_kdf)?;
        // The code opens the recovery wrap; a blob it does not open was altered (the server
        // just accepted the code's recovery secret).
        let (_, rewrapped) = sealed
            .recover(&mut OsRng, code, &new_keys)
            .map_err(|_| RemoteError::Integrity)?;
        // A new recovery code: the old one was typed somewhere and is now retired.
        let (resealed, new_code) = rewrapped
            .rotate_recovery(&mut OsRng, &new_keys)
            .map_err(RemoteError::from)?;
        let keyring = resealed.unlock(&new_keys).map_err(RemoteError::from)?;
        if keyring.id() != sealed.keyring_id() {
            return Err(RemoteError::Integrity);
        }
        let new_secret = secret_text(&new_keys);
        let new_recovery = Zeroizing::new(b64(new_code.recovery_secret().expose_bytes()));
        let body = RecoveryBody {
            name,
            recovery_secret: &secret,
            // An elevation from the first step stands for the second factor.
            second_factor: if elevation.is_some() {
                None
            } else {
                factor.map(SecondFactor::body)
            },
            expected: version,
            keyring: b64(&resealed.to_bytes()),
            new_login_secret: &new_secret,
            new_recovery_secret: &new_recovery,
        };
        let mut request =
            Request::new(Method::POST, "/v1/recovery".to_owned(), limits::JSON).json(&body)?;
        request.elevation = elevation.as_ref().map(|e| e.as_str());
        let answer: VersionAnswer = success(self.http.send(&request)?)?.json()?;
        if answer.version != version + 1 {
            return Err(RemoteError::Protocol("recovery answered another version"));
        }
        Ok(Registration {
            keyring,
            recovery_code: new_code,
        })
    }

    fn derive(&self, password: &Password, params: &KdfParams) -> Result<PasswordKeys, RemoteError> {
        PasswordKeys::derive_with_policy(password, params, &self.http.kdf_policy)
            .map_err(RemoteError::Keyring)
    }

    /// Creates an account: a new keyring (with `keyring_options`), sealed under `password`
    /// with `kdf` (normally `KdfParams::calibrate(vault_keyring::DEFAULT_TARGET)`), its
    /// identity bundle, and the login secret (keyring.md §3) — never the password. A taken
    /// name is [`RemoteError::Exists`].
    pub fn register(
        &self,
        name: &str,
        password: &Password,
        kdf: &KdfParams,
        keyring_options: &KeyringOptions,
    ) -> Result<Registration, RemoteError> {
        let keys = self.derive(password, kdf)?;
        let keyring =
            Keyring::generate(&mut OsRng, keyring_options).map_err(RemoteError::Keyring)?;
        let (sealed, recovery_code) = SealedKeyring::seal(&mut OsRng, &keyring, &keys);
        let identity = keyring.identity_bundle(&mut OsRng);
        let secret = secret_text(&keys);
        let recovery_secret = Zeroizing::new(b64(recovery_code.recovery_secret().expose_bytes()));
        let body = RegisterBody {
            name,
            user: hex(keyring.id().as_bytes()),
            login_secret: &secret,
            keyring: b64(&sealed.to_bytes()),
            identity: b64(identity.as_bytes()),
            recovery_secret: &recovery_secret,
        };
        let request =
            Request::new(Method::POST, "/v1/accounts".to_owned(), limits::JSON).json(&body)?;
        let answer: UserAnswer = success(self.http.send(&request)?)?.json()?;
        if unhex16(&answer.user)? != *keyring.id().as_bytes() {
            return Err(RemoteError::Protocol("registration answered another user"));
        }
        Ok(Registration {
            keyring,
            recovery_code,
        })
    }

    /// The KDF parameters of `name`'s keyring (for an unknown name the server answers a
    /// decoy that looks alike; login.md §7).
    fn prelogin(&self, name: &str) -> Result<KdfParams, RemoteError> {
        let request = Request::new(Method::POST, "/v1/prelogin".to_owned(), limits::JSON)
            .json(&NameBody { name })?;
        let answer: PreloginAnswer = success(self.http.send(&request)?)?.json()?;
        let salt: [u8; SALT_LEN] = unb64(&answer.kdf_salt)?
            .try_into()
            .map_err(|_| RemoteError::Protocol("KDF salt length"))?;
        kdf_params_from(&salt, answer.kdf_iterations)
    }

    fn login_with_keys(
        &self,
        name: &str,
        keys: &PasswordKeys,
        options: &Login,
    ) -> Result<Session, RemoteError> {
        let secret = secret_text(keys);
        let body = LoginBody {
            name,
            login_secret: &secret,
            second_factor: options.second_factor.as_ref().map(SecondFactor::body),
            device_token: options.device_token.as_ref().map(|t| t.as_str()),
            trust_device: options.trust_device.as_deref(),
        };
        let request =
            Request::new(Method::POST, "/v1/sessions".to_owned(), limits::JSON).json(&body)?;
        let answer = success(self.http.send(&request)?)?;
        let session: SessionAnswer = answer.json()?;
        let token = Zeroizing::new(session.token);
        if token.is_empty() || token.len() > 256 || !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(RemoteError::Protocol("malformed session token"));
        }
        Ok(Session {
            connection: Arc::new(Connection {
                http: self.http.clone(),
                token,
                elevation: Mutex::new(None),
            }),
            user: KeyringId::from_bytes(unhex16(&session.user)?),
            expires: session.expires,
            device_token: session.device_token.map(Zeroizing::new),
            backup_codes_left: session.backup_codes_left,
        })
    }

    /// Logs in: pre-login for the KDF parameters, the password keys derived here (the
    /// parameters checked against the policy first: a server offering a weak count is
    /// refused), and the login secret sent. [`RemoteError::AuthenticationFailed`] for a
    /// wrong name or password, [`RemoteError::MfaRequired`] / [`RemoteError::MfaFailed`]
    /// for the second factor.
    pub fn login(
        &self,
        name: &str,
        password: &Password,
        options: &Login,
    ) -> Result<Session, RemoteError> {
        let params = self.prelogin(name)?;
        let keys = self.derive(password, &params)?;
        self.login_with_keys(name, &keys, options)
    }

    /// [`Server::login`], then the sealed keyring downloaded and opened with the same
    /// password keys (one PBKDF2 run). A keyring that does not open with the password the
    /// server just accepted was altered: [`RemoteError::Integrity`].
    pub fn login_and_unlock(
        &self,
        name: &str,
        password: &Password,
        options: &Login,
    ) -> Result<(Session, Keyring), RemoteError> {
        let params = self.prelogin(name)?;
        let keys = self.derive(password, &params)?;
        let session = self.login_with_keys(name, &keys, options)?;
        let (_, sealed) = session.download_keyring()?;
        let keyring = if sealed.kdf_params() == *keys.params() {
            sealed.unlock(&keys)?
        } else {
            // Changed since the pre-login (another device changed the password).
            session.open_keyring(&sealed, password)?
        };
        Ok((session, keyring))
    }
}

/// What a session and its stores share: the server and the token.
pub(crate) struct Connection {
    pub(crate) http: Arc<Http>,
    token: Zeroizing<String>,
    elevation: Mutex<Option<Zeroizing<String>>>,
}

impl Connection {
    /// Sends `request` with the session's token.
    pub(crate) fn send(&self, request: Request<'_>) -> Result<Answer, RemoteError> {
        self.http.send(&request.token(&self.token))
    }

    /// Sends a sensitive request: with the elevation token, if there is one.
    fn send_sensitive(&self, request: Request<'_>) -> Result<Answer, RemoteError> {
        let elevation = self
            .elevation
            .lock()
            .map_err(|_| RemoteError::Protocol("session lock poisoned"))?
            .clone();
        fn with<'b>(mut request: Request<'b>, elevation: Option<&'b str>) -> Request<'b> {
            request.elevation = elevation;
            request
        }
        let request = with(request, elevation.as_ref().map(|e| e.as_str()));
        self.http.send(&request.token(&self.token))
    }
}

/// A logged-in session of one account. The token is kept in wiped memory and never shown
/// in `Debug`.
pub struct Session {
    connection: Arc<Connection>,
    user: KeyringId,
    expires: u64,
    device_token: Option<Zeroizing<String>>,
    backup_codes_left: Option<u64>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("server", &self.connection.http.base())
            .field("user", &self.user)
            .field("expires", &self.expires)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// The account's user id (its keyring id).
    pub fn user(&self) -> KeyringId {
        self.user
    }

    /// When the session ends (Unix seconds, as the server said).
    pub fn expires(&self) -> u64 {
        self.expires
    }

    /// The trusted-device token the server issued at this login (with
    /// [`Login::trust_device`]): keep it secret, pass it to [`Login::device_token`].
    pub fn device_token(&self) -> Option<&str> {
        self.device_token.as_ref().map(|t| t.as_str())
    }

    /// How many backup codes are left, when one was used to log in.
    pub fn backup_codes_left(&self) -> Option<u64> {
        self.backup_codes_left
    }

    /// The session token, for calling routes this client does not wrap yet (the audit
    /// log, trusted-device revocation, the IP allow-list) and for saving the session
    /// ([`Server::resume`]). It is a bearer secret: never log or show it.
    pub fn expose_token(&self) -> &str {
        &self.connection.token
    }

    /// A [`crate::Store`] on the server acting for this session, for
    /// [`crate::Vault::open`].
    pub fn store(&self) -> RemoteStore {
        RemoteStore::new(self.connection.clone())
    }

    /// The sealed keyring and its version (`GET /v1/account/keyring`). Its keyring id must
    /// be this account's.
    pub fn download_keyring(&self) -> Result<(u64, SealedKeyring), RemoteError> {
        let answer = success(self.connection.send(Request::new(
            Method::GET,
            "/v1/account/keyring".to_owned(),
            limits::SMALL_BLOB,
        ))?)?;
        let version = answer.version()?;
        let sealed = SealedKeyring::from_bytes(&answer.body)?;
        if sealed.keyring_id() != self.user {
            return Err(RemoteError::Integrity);
        }
        Ok((version, sealed))
    }

    fn open_keyring(
        &self,
        sealed: &SealedKeyring,
        password: &Password,
    ) -> Result<Keyring, RemoteError> {
        let keys = PasswordKeys::derive_with_policy(
            password,
            &sealed.kdf_params(),
            &self.connection.http.kdf_policy,
        )
        .map_err(RemoteError::Keyring)?;
        match sealed.unlock(&keys) {
            Ok(keyring) => Ok(keyring),
            // A wrong password and an altered blob are one error (THREATS I2).
            Err(vault_keyring::Error::AuthenticationFailed) => {
                Err(RemoteError::AuthenticationFailed)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Downloads the sealed keyring and opens it with `password`. A wrong password (or an
    /// altered keyring; they cannot be told apart) is [`RemoteError::AuthenticationFailed`].
    pub fn unlock_keyring(&self, password: &Password) -> Result<Keyring, RemoteError> {
        let (_, sealed) = self.download_keyring()?;
        self.open_keyring(&sealed, password)
    }

    /// Changes the password (`POST /v1/account/password`): the keyring is re-sealed here
    /// under `new` with `new_kdf` (normally freshly calibrated), and the server replaces
    /// keyring and login verifier together after checking the current login secret. The
    /// server then ends every session of the account, this one included: log in again.
    /// With MFA on, [`Session::elevate`] first.
    pub fn change_password(
        &self,
        current: &Password,
        new: &Password,
        new_kdf: &KdfParams,
    ) -> Result<(), RemoteError> {
        let policy = self.connection.http.kdf_policy;
        let (version, sealed) = self.download_keyring()?;
        let old_keys = PasswordKeys::derive_with_policy(current, &sealed.kdf_params(), &policy)
            .map_err(RemoteError::Keyring)?;
        let new_keys = PasswordKeys::derive_with_policy(new, new_kdf, &policy)
            .map_err(RemoteError::Keyring)?;
        let resealed = match sealed.change_password(&mut OsRng, &old_keys, &new_keys) {
            Ok(s) => s,
            Err(vault_keyring::Error::AuthenticationFailed) => {
                return Err(RemoteError::AuthenticationFailed)
            }
            Err(e) => return Err(e.into()),
        };
        let (old_secret, new_secret) = (secret_text(&old_keys), secret_text(&new_keys));
        let body = PasswordBody {
            expected: version,
            keyring: b64(&resealed.to_bytes()),
            login_secret: &old_secret,
            new_login_secret: &new_secret,
        };
        let request = Request::new(
            Method::POST,
            "/v1/account/password".to_owned(),
            limits::JSON,
        )
        .json(&body)?;
        let answer: VersionAnswer = success(self.connection.send_sensitive(request)?)?.json()?;
        if answer.version != version + 1 {
            return Err(RemoteError::Protocol(
                "password change answered another version",
            ));
        }
        Ok(())
    }

    /// Elevates this session for sensitive operations with a second factor (mfa.md §6):
    /// the token (5 minutes) is kept and sent with the next sensitive requests.
    pub fn elevate(&self, factor: &SecondFactor) -> Result<(), RemoteError> {
        let request = Request::new(
            Method::POST,
            "/v1/account/mfa/elevation".to_owned(),
            limits::JSON,
        )
        .json(&ElevationBody {
            second_factor: factor.body(),
        })?;
        let answer: TokenAnswer = success(self.connection.send(request)?)?.json()?;
        let token = Zeroizing::new(answer.token);
        if token.is_empty() || token.len() > 256 || !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(RemoteError::Protocol("malformed elevation token"));
        }
        *self
            .connection
            .elevation
            .lock()
            .map_err(|_| RemoteError::Protocol("session lock poisoned"))? = Some(token);
        Ok(())
    }

    /// The login secret of `password` under the KDF parameters of the account's current
    /// sealed keyring (the login verifier is replaced with it, keyring.md §3), for the
    /// routes that check the password again. Never the password itself.
    fn login_secret(&self, password: &Password) -> Result<Zeroizing<String>, RemoteError> {
        let (_, sealed) = self.download_keyring()?;
        let keys = PasswordKeys::derive_with_policy(
            password,
            &sealed.kdf_params(),
            &self.connection.http.kdf_policy,
        )
        .map_err(RemoteError::Keyring)?;
        Ok(secret_text(&keys))
    }

    /// The account's MFA settings (`GET /v1/account/mfa`, docs/spec/mfa.md §4): factors,
    /// a pending enrolment, backup codes left, trusted devices, the allow-list.
    pub fn mfa_status(&self) -> Result<MfaStatus, RemoteError> {
        let answer: MfaStatusAnswer = success(self.connection.send(Request::new(
            Method::GET,
            "/v1/account/mfa".to_owned(),
            limits::JSON,
        ))?)?
        .json()?;
        answer.check()
    }

    /// Starts enrolling a TOTP or HOTP factor (`POST /v1/account/mfa/otp`, mfa.md §4): the
    /// password is checked again by the server through its login secret (derived here, as
    /// at login; a wrong one is [`RemoteError::AuthenticationFailed`]). The answer is a
    /// fresh secret to put into an authenticator, shown once; the factor is active only
    /// after [`Session::confirm_otp`] (within 15 minutes). With MFA already on this is a
    /// sensitive operation: [`Session::elevate`] first ([`RemoteError::ElevationRequired`]
    /// otherwise).
    pub fn enroll_otp(
        &self,
        kind: OtpKind,
        password: &Password,
    ) -> Result<OtpEnrolment, RemoteError> {
        let secret = self.login_secret(password)?;
        let request = Request::new(Method::POST, "/v1/account/mfa/otp".to_owned(), limits::JSON)
            .json(&EnrolBody {
                kind: kind.as_str(),
                login_secret: &secret,
            })?;
        let answer: EnrolAnswer = success(self.connection.send_sensitive(request)?)?.json()?;
        answer.check(kind)
    }

    /// Confirms the pending enrolment of `kind` with the first code the authenticator shows
    /// (`POST /v1/account/mfa/otp/confirm`): the factor becomes active (replacing one of
    /// the same kind), so logins and sensitive operations need a second factor from now
    /// on. Returns ten backup codes to show once when the account had none (empty
    /// otherwise: the existing ones stay valid). A wrong code, or no pending enrolment, is
    /// [`RemoteError::MfaFailed`] (counted as a failed login attempt).
    pub fn confirm_otp(&self, kind: OtpKind, code: &str) -> Result<BackupCodes, RemoteError> {
        let code = Zeroizing::new(code.trim().to_owned());
        let request = Request::new(
            Method::POST,
            "/v1/account/mfa/otp/confirm".to_owned(),
            limits::JSON,
        )
        .json(&ConfirmBody {
            kind: kind.as_str(),
            code: &code,
        })?;
        let answer: BackupCodesAnswer = success(self.connection.send(request)?)?.json()?;
        answer.check()
    }

    /// Replaces every backup code with ten new ones, shown once
    /// (`POST /v1/account/mfa/backup-codes`); the old ones stop working. Sensitive:
    /// [`Session::elevate`] first. With MFA off the server refuses
    /// ([`RemoteError::Refused`] with status 400).
    pub fn new_backup_codes(&self) -> Result<BackupCodes, RemoteError> {
        let request = Request::new(
            Method::POST,
            "/v1/account/mfa/backup-codes".to_owned(),
            limits::JSON,
        );
        let answer: BackupCodesAnswer =
            success(self.connection.send_sensitive(request)?)?.json()?;
        answer.check()
    }

    /// Turns MFA off (`DELETE /v1/account/mfa`): factors, backup codes, trusted devices and
    /// elevations go; the allow-list stays. The password is checked again (its login
    /// secret, as for [`Session::enroll_otp`]). Sensitive: [`Session::elevate`] first.
    pub fn disable_mfa(&self, password: &Password) -> Result<(), RemoteError> {
        let secret = self.login_secret(password)?;
        let request = Request::new(Method::DELETE, "/v1/account/mfa".to_owned(), limits::ERROR)
            .json(&SecretBody {
                login_secret: &secret,
            })?;
        success(self.connection.send_sensitive(request)?)?;
        // The server dropped every elevation with the factors.
        *self
            .connection
            .elevation
            .lock()
            .map_err(|_| RemoteError::Protocol("session lock poisoned"))? = None;
        Ok(())
    }

    /// The user id of a login name (`GET /v1/users/{name}`); [`RemoteError::NotFound`] if
    /// there is none. The answer is the server's word: pin the identity and compare
    /// fingerprints before trusting it ([`crate::Vault::fetch_identity`]).
    pub fn lookup_user(&self, name: &str) -> Result<KeyringId, RemoteError> {
        if name.is_empty()
            || name.len() > 64
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b".-_@+".contains(&b))
        {
            return Err(RemoteError::InvalidConfig("not a valid login name"));
        }
        let answer: UserAnswer = success(self.connection.send(Request::new(
            Method::GET,
            format!("/v1/users/{name}"),
            limits::JSON,
        ))?)?
        .json()?;
        Ok(KeyringId::from_bytes(unhex16(&answer.user)?))
    }

    /// The identity bundle of `user` from the server's directory, its self-signature
    /// verified and its keyring id checked. Not pinned: to share with someone, use
    /// [`crate::Vault::fetch_identity`], which pins (a changed key is then
    /// [`crate::Error::KeyChanged`]).
    pub fn identity(&self, user: KeyringId) -> Result<IdentityBundle, RemoteError> {
        let answer = success(self.connection.send(Request::new(
            Method::GET,
            format!("/v1/identities/{}", hex(user.as_bytes())),
            limits::SMALL_BLOB,
        ))?)?;
        let bundle = IdentityBundle::from_bytes(&answer.body)?;
        if bundle.keyring_id() != user {
            return Err(RemoteError::Integrity);
        }
        Ok(bundle)
    }

    /// Ends this session (`DELETE /v1/sessions/current`).
    pub fn logout(self) -> Result<(), RemoteError> {
        self.end("/v1/sessions/current")
    }

    /// Ends every session of the account, on every device (`DELETE /v1/sessions`).
    pub fn logout_everywhere(self) -> Result<(), RemoteError> {
        self.end("/v1/sessions")
    }

    fn end(self, path: &str) -> Result<(), RemoteError> {
        let answer =
            self.connection
                .send(Request::new(Method::DELETE, path.to_owned(), limits::ERROR))?;
        match answer.status {
            s if s.is_success() => Ok(()),
            // Already over.
            StatusCode::UNAUTHORIZED => Ok(()),
            _ => Err(answer.error()),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn kdf_parameters_from_a_prelogin_answer() {
        let p = kdf_params_from(&[7; SALT_LEN], 600_000).unwrap();
        assert_eq!(p.salt(), &[7; SALT_LEN]);
        assert_eq!(p.iterations(), 600_000);
        // A weak count is carried as is and refused when the keys are derived.
        let weak = kdf_params_from(&[7; SALT_LEN], 1).unwrap();
        assert!(matches!(
            PasswordKeys::derive(&Password::from("pw"), &weak),
            Err(vault_keyring::Error::WeakKdfParameters)
        ));
    }

    #[test]
    fn secrets_stay_out_of_debug_output() {
        let login = Login::new()
            .second_factor(SecondFactor::totp("123456"))
            .device_token("device-token-secret");
        let text = format!("{login:?}");
        assert!(!text.contains("123456") && !text.contains("device-token-secret"));
        assert!(!format!("{:?}", SecondFactor::backup_code("ABCD-EFGH")).contains("ABCD"));
        let codes = BackupCodesAnswer {
            backup_codes: vec!["ABCD-EFGH-JKMN-PQRS".to_owned()],
        }
        .check()
        .unwrap();
        assert_eq!(codes.len(), 1);
        assert!(!format!("{codes:?}").contains("ABCD"));
    }

    fn enrol_answer(kind: &str, secret: &str, uri: &str, period: Option<u64>) -> EnrolAnswer {
        EnrolAnswer {
            kind: kind.to_owned(),
            secret: secret.to_owned(),
            uri: uri.to_owned(),
            algorithm: "SHA1".to_owned(),
            digits: 6,
            period,
            confirm_before: 1,
        }
    }

    #[test]
    fn enrolment_answers_are_checked_and_redacted() {
        let secret = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP";
        let uri = format!("otpauth://totp/vault:alice?secret={secret}&issuer=vault&period=30");
        let e = enrol_answer("totp", secret, &uri, Some(30))
            .check(OtpKind::Totp)
            .unwrap();
        assert_eq!(e.expose_secret(), secret);
        assert_eq!(e.secret_bytes().len(), 20);
        let text = format!("{e:?}");
        assert!(!text.contains(secret) && !text.contains("otpauth"));
        // Another kind, a URI with another secret, a secret that is not base32: refused.
        assert!(enrol_answer("totp", secret, &uri, Some(30))
            .check(OtpKind::Hotp)
            .is_err());
        let other = uri.replace("secret=J", "secret=K");
        assert!(enrol_answer("totp", secret, &other, Some(30))
            .check(OtpKind::Totp)
            .is_err());
        assert!(enrol_answer("totp", "not base32!", &uri, Some(30))
            .check(OtpKind::Totp)
            .is_err());
    }
}
