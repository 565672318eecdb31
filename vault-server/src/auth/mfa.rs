//! Multi-factor authentication (issue #6; docs/spec/mfa.md): the per-account MFA record
//! and the decisions taken on it.
//!
//! One record per account holds everything about its second factors: the confirmed TOTP
//! and HOTP secrets with their replay counters, an enrolment waiting for its first code,
//! the hashes of the unused backup codes, the trusted devices (hashes of their tokens),
//! the short-lived elevations of sessions that proved a second factor for a sensitive
//! operation, and the IP allow-list. The server stores the record encrypted under its
//! MFA key ([`MfaKey`], AES-256-GCM bound to the account id), kept in a file outside the
//! store, so a copy of the database or of a backup does not reveal a TOTP secret. The
//! backend swaps the record by compare-and-swap, so two logins cannot both use one code.

use std::net::IpAddr;
use std::path::Path;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use data_encoding::BASE64URL_NOPAD;
use ipnet::IpNet;
use rand_core::CryptoRngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use super::otp::{self, OtpAlgorithm};
use super::UserId;

/// The magic and version in front of a sealed record.
const MAGIC: &[u8; 5] = b"VMFA\x01";
/// The AES-GCM nonce length.
const NONCE_LEN: usize = 12;
/// The associated-data label of a sealed record.
const AAD_LABEL: &[u8] = b"vault-server mfa record v1";
/// The bytes of a TOTP/HOTP secret the server generates (RFC 4226 §4: at least 128, 160
/// recommended).
pub const SECRET_LEN: usize = 20;
/// Digits of the codes the server enrols.
pub const DIGITS: u32 = 6;
/// The TOTP step in seconds.
pub const PERIOD: u64 = 30;
/// TOTP steps accepted on either side of the current one (clock drift): ±1 step.
pub const TOTP_SKEW: u64 = 1;
/// HOTP counters accepted ahead of the expected one (RFC 4226 §7.4 look-ahead).
pub const HOTP_LOOK_AHEAD: u64 = 10;
/// How many backup codes an enrolment or a regeneration makes.
pub const BACKUP_CODES: usize = 10;
/// Characters of a backup code (Crockford base32, 80 bits).
const BACKUP_CODE_CHARS: usize = 16;
/// The Crockford base32 alphabet of backup codes.
const CROCKFORD: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
/// How long a device stays trusted: 30 days.
pub const DEVICE_TTL: u64 = 30 * 24 * 3600;
/// The most trusted devices per account (the oldest goes first).
pub const MAX_DEVICES: usize = 20;
/// The longest device label, in bytes.
pub const MAX_LABEL: usize = 64;
/// How long an elevation lasts: 5 minutes.
pub const ELEVATION_TTL: u64 = 5 * 60;
/// The most live elevations per account.
pub const MAX_ELEVATIONS: usize = 8;
/// How long an enrolment waits for its first code: 15 minutes.
pub const PENDING_TTL: u64 = 15 * 60;
/// The most ranges in an allow-list.
pub const MAX_ALLOWLIST: usize = 32;

/// The server's key for MFA records at rest: 32 bytes, from a file outside the store.
pub struct MfaKey(Zeroizing<[u8; 32]>);

impl std::fmt::Debug for MfaKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MfaKey([redacted])")
    }
}

impl MfaKey {
    /// A key from its bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// A fresh random key (tests, and servers whose records need not outlive the process).
    pub fn random(rng: &mut impl CryptoRngCore) -> Self {
        let mut bytes = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(&mut bytes[..]);
        Self(bytes)
    }

    /// Reads the key file at `path` (64 hex digits and an optional newline), creating it
    /// with a random key (mode 0600 on Unix) when it does not exist.
    pub fn load_or_create(path: &Path, rng: &mut impl CryptoRngCore) -> Result<Self, String> {
        match std::fs::read(path) {
            Ok(text) => {
                let text = Zeroizing::new(text);
                let trimmed = text.trim_ascii();
                let mut bytes = Zeroizing::new([0u8; 32]);
                let decoded = data_encoding::HEXLOWER_PERMISSIVE
                    .decode(trimmed)
                    .map(Zeroizing::new)
                    .map_err(|_| {
                        format!(
                            "the MFA key file {} is not 64 hexadecimal digits",
                            path.display()
                        )
                    })?;
                if decoded.len() != 32 {
                    return Err(format!(
                        "the MFA key file {} is not 64 hexadecimal digits",
                        path.display()
                    ));
                }
                bytes.copy_from_slice(&decoded);
                Ok(Self(bytes))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = Self::random(rng);
                let text =
                    Zeroizing::new(format!("{}\n", data_encoding::HEXLOWER.encode(&key.0[..])));
                write_new_private(path, text.as_bytes()).map_err(|e| {
                    format!("cannot create the MFA key file {}: {e}", path.display())
                })?;
                tracing::warn!(
                    path = %path.display(),
                    "created a new MFA key file: keep it (and back it up) apart from the store; without it, enrolled second factors cannot be read"
                );
                Ok(key)
            }
            Err(e) => Err(format!(
                "cannot read the MFA key file {}: {e}",
                path.display()
            )),
        }
    }

    /// Seals `record` for `user`: `VMFA 01 ‖ nonce ‖ AES-256-GCM(JSON)`, the associated
    /// data binding it to the account.
    pub fn seal(&self, rng: &mut impl CryptoRngCore, user: &UserId, record: &MfaRecord) -> Vec<u8> {
        let plain = Zeroizing::new(serde_json::to_vec(record).unwrap_or_default());
        let mut nonce = [0u8; NONCE_LEN];
        rng.fill_bytes(&mut nonce);
        let aad = aad(user);
        let cipher = Aes256Gcm::new((&*self.0).into());
        // Encryption of a buffer this small cannot fail.
        let sealed = cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: &plain,
                    aad: &aad,
                },
            )
            .unwrap_or_default();
        let mut out = Vec::with_capacity(MAGIC.len() + NONCE_LEN + sealed.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        out
    }

    /// Opens a sealed record of `user`; `None` if it is not one (damaged, another account's,
    /// another key).
    pub fn open(&self, user: &UserId, sealed: &[u8]) -> Option<MfaRecord> {
        let rest = sealed.strip_prefix(MAGIC)?;
        if rest.len() < NONCE_LEN {
            return None;
        }
        let (nonce, body) = rest.split_at(NONCE_LEN);
        let aad = aad(user);
        let cipher = Aes256Gcm::new((&*self.0).into());
        let plain = Zeroizing::new(
            cipher
                .decrypt(
                    Nonce::from_slice(nonce),
                    Payload {
                        msg: body,
                        aad: &aad,
                    },
                )
                .ok()?,
        );
        serde_json::from_slice(&plain).ok()
    }
}

fn aad(user: &UserId) -> Vec<u8> {
    let mut aad = AAD_LABEL.to_vec();
    aad.extend_from_slice(user);
    aad
}

/// Creates `path` with `bytes`, readable only by its owner; refuses an existing file.
fn write_new_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// A second factor of the OTP kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OtpKind {
    /// Time-based (RFC 6238).
    Totp,
    /// Counter-based (RFC 4226).
    Hotp,
}

/// Secret bytes, hex in the record's JSON, wiped on drop.
#[derive(Clone, Zeroize, ZeroizeOnDrop, PartialEq, Eq)]
pub struct SecretBytes(Vec<u8>);

impl std::fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretBytes([redacted])")
    }
}

impl SecretBytes {
    /// The bytes.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl Serialize for SecretBytes {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let text = Zeroizing::new(data_encoding::HEXLOWER.encode(&self.0));
        s.serialize_str(&text)
    }
}

impl<'de> Deserialize<'de> for SecretBytes {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = Zeroizing::new(String::deserialize(d)?);
        data_encoding::HEXLOWER
            .decode(text.as_bytes())
            .map(SecretBytes)
            .map_err(serde::de::Error::custom)
    }
}

/// An enrolled OTP factor.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct OtpFactor {
    /// TOTP or HOTP.
    pub kind: OtpKind,
    /// The HMAC.
    pub algorithm: OtpAlgorithm,
    /// Code length.
    pub digits: u32,
    /// TOTP: the step in seconds (unused for HOTP).
    pub period: u64,
    /// The shared secret.
    pub secret: SecretBytes,
    /// TOTP: the last time step accepted (a code of it or an earlier step is refused);
    /// HOTP: the next counter expected.
    pub counter: u64,
    /// When it was confirmed, Unix seconds.
    pub since: u64,
}

impl OtpFactor {
    /// Checks `code` at time `now`; on success moves the counter so the code (and every
    /// earlier one) is never accepted again.
    fn accept(&mut self, code: &str, now: u64) -> bool {
        match self.kind {
            OtpKind::Totp => {
                let current = otp::time_step(now, self.period);
                let low = current.saturating_sub(TOTP_SKEW);
                let mut hit = None;
                // Every candidate is computed (no early exit on a match).
                for step in low..=current.saturating_add(TOTP_SKEW) {
                    let fresh = self.counter == 0 || step > self.counter;
                    let ok = otp::code_matches(
                        self.algorithm,
                        self.secret.expose(),
                        step,
                        self.digits,
                        code,
                    );
                    if ok && fresh && hit.is_none() {
                        hit = Some(step);
                    }
                }
                match hit {
                    Some(step) => {
                        self.counter = step;
                        true
                    }
                    None => false,
                }
            }
            OtpKind::Hotp => {
                let mut hit = None;
                for c in self.counter..self.counter.saturating_add(HOTP_LOOK_AHEAD) {
                    let ok = otp::code_matches(
                        self.algorithm,
                        self.secret.expose(),
                        c,
                        self.digits,
                        code,
                    );
                    if ok && hit.is_none() {
                        hit = Some(c);
                    }
                }
                match hit {
                    Some(c) => {
                        self.counter = c.saturating_add(1);
                        true
                    }
                    None => false,
                }
            }
        }
    }
}

/// A trusted device: its token's hash, label and lifetime.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Device {
    /// Random id (hex in the API).
    pub id: [u8; 16],
    /// SHA-256 of the device token (labelled).
    pub token_hash: [u8; 32],
    /// The label the user gave (e.g. "laptop"), at most [`MAX_LABEL`] bytes.
    pub label: String,
    /// Created, Unix seconds.
    pub created: u64,
    /// Trusted until, Unix seconds.
    pub expires: u64,
    /// Last login that used it, Unix seconds.
    pub last_used: u64,
}

/// A session's proof of a second factor, for sensitive operations.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Elevation {
    /// SHA-256 of the elevation token (labelled).
    pub token_hash: [u8; 32],
    /// The hash of the session token it belongs to.
    pub session: [u8; 32],
    /// Valid until, Unix seconds.
    pub expires: u64,
}

/// The MFA state of one account.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct MfaRecord {
    /// The confirmed OTP factors (at most one TOTP and one HOTP).
    pub factors: Vec<OtpFactor>,
    /// An enrolment waiting for its first code, and until when.
    pub pending: Option<(OtpFactor, u64)>,
    /// Hashes of the unused backup codes.
    pub backup_codes: Vec<[u8; 32]>,
    /// Trusted devices.
    pub devices: Vec<Device>,
    /// Live elevations.
    pub elevations: Vec<Elevation>,
    /// The IP allow-list: empty means every address.
    pub allowlist: Vec<IpNet>,
}

/// A second factor presented by a client.
#[derive(Debug, Clone, Copy)]
pub enum Factor<'a> {
    /// A TOTP code.
    Totp(&'a str),
    /// An HOTP code.
    Hotp(&'a str),
    /// A backup code (any case, dashes and spaces ignored).
    BackupCode(&'a str),
}

/// What accepting a factor did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accepted {
    /// An OTP code of this kind.
    Otp(OtpKind),
    /// A backup code; this many are left.
    BackupCode {
        /// Unused backup codes left.
        left: usize,
    },
}

impl MfaRecord {
    /// Whether a second factor is required (an OTP factor is confirmed).
    pub fn enabled(&self) -> bool {
        !self.factors.is_empty()
    }

    /// Drops what has expired at `now`: devices, elevations, a stale enrolment.
    pub fn prune(&mut self, now: u64) {
        self.devices.retain(|d| d.expires > now);
        self.elevations.retain(|e| e.expires > now);
        if matches!(&self.pending, Some((_, until)) if *until <= now) {
            self.pending = None;
        }
    }

    /// Whether `addr` may log in (and elevate): the list is empty or a range holds it.
    /// IPv4-mapped IPv6 addresses count as their IPv4 address.
    pub fn allows(&self, addr: IpAddr) -> bool {
        let addr = canonical(addr);
        self.allowlist.is_empty() || self.allowlist.iter().any(|net| net.contains(&addr))
    }

    /// Checks a second factor at `now`; on success the record changed (the code cannot be
    /// used again) and must be stored before the caller acts on it.
    pub fn accept(&mut self, user: &UserId, factor: Factor<'_>, now: u64) -> Option<Accepted> {
        match factor {
            Factor::Totp(code) | Factor::Hotp(code) => {
                let kind = if matches!(factor, Factor::Totp(_)) {
                    OtpKind::Totp
                } else {
                    OtpKind::Hotp
                };
                let f = self.factors.iter_mut().find(|f| f.kind == kind)?;
                f.accept(code, now).then_some(Accepted::Otp(kind))
            }
            Factor::BackupCode(code) => {
                let hash = backup_code_hash(user, &normalize_backup_code(code)?);
                let mut hit = None;
                for (i, stored) in self.backup_codes.iter().enumerate() {
                    if bool::from(stored.ct_eq(&hash)) && hit.is_none() {
                        hit = Some(i);
                    }
                }
                let i = hit?;
                self.backup_codes.remove(i);
                Some(Accepted::BackupCode {
                    left: self.backup_codes.len(),
                })
            }
        }
    }

    /// Starts an enrolment of `kind` with a fresh secret (replacing any pending one);
    /// returns the secret to show the user once.
    pub fn begin_enrolment(
        &mut self,
        rng: &mut impl CryptoRngCore,
        kind: OtpKind,
        now: u64,
    ) -> SecretBytes {
        let mut secret = vec![0u8; SECRET_LEN];
        rng.fill_bytes(&mut secret);
        let secret = SecretBytes(secret);
        let factor = OtpFactor {
            kind,
            algorithm: OtpAlgorithm::Sha1,
            digits: DIGITS,
            period: PERIOD,
            secret: secret.clone(),
            counter: 0,
            since: now,
        };
        self.pending = Some((factor, now.saturating_add(PENDING_TTL)));
        secret
    }

    /// Confirms the pending enrolment of `kind` with its first code: the factor replaces
    /// any confirmed one of the same kind. `None` if there is none or the code is wrong.
    pub fn confirm_enrolment(&mut self, kind: OtpKind, code: &str, now: u64) -> Option<()> {
        let (mut factor, until) = self.pending.take()?;
        if factor.kind != kind || until <= now || !factor.accept(code, now) {
            self.pending = Some((factor, until));
            return None;
        }
        factor.since = now;
        self.factors.retain(|f| f.kind != kind);
        self.factors.push(factor);
        Some(())
    }

    /// Replaces the backup codes with [`BACKUP_CODES`] fresh ones; returns them (shown
    /// once, formatted `XXXX-XXXX-XXXX-XXXX`).
    pub fn new_backup_codes(
        &mut self,
        rng: &mut impl CryptoRngCore,
        user: &UserId,
    ) -> Vec<Zeroizing<String>> {
        let mut shown = Vec::with_capacity(BACKUP_CODES);
        self.backup_codes.clear();
        for _ in 0..BACKUP_CODES {
            let mut raw = Zeroizing::new([0u8; BACKUP_CODE_CHARS]);
            rng.fill_bytes(&mut raw[..]);
            let plain: Zeroizing<String> = Zeroizing::new(
                raw.iter()
                    .map(|b| char::from(CROCKFORD[usize::from(b & 31)]))
                    .collect(),
            );
            self.backup_codes.push(backup_code_hash(user, &plain));
            let formatted = Zeroizing::new(
                plain
                    .as_bytes()
                    .chunks(4)
                    .map(|c| String::from_utf8_lossy(c).into_owned())
                    .collect::<Vec<_>>()
                    .join("-"),
            );
            shown.push(formatted);
        }
        shown
    }

    /// Disables MFA: factors, pending enrolment, backup codes, devices and elevations go;
    /// the allow-list stays (it is a policy of its own).
    pub fn disable(&mut self) {
        self.factors.clear();
        self.pending = None;
        self.backup_codes.clear();
        self.devices.clear();
        self.elevations.clear();
    }

    /// Trusts a new device until `now + DEVICE_TTL`; returns its id and token (shown once).
    pub fn trust_device(
        &mut self,
        rng: &mut impl CryptoRngCore,
        label: &str,
        now: u64,
    ) -> ([u8; 16], Zeroizing<String>) {
        let mut id = [0u8; 16];
        rng.fill_bytes(&mut id);
        let mut token = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(&mut token[..]);
        let encoded = Zeroizing::new(BASE64URL_NOPAD.encode(&token[..]));
        self.devices.push(Device {
            id,
            token_hash: token_hash(b"vault-server device token v1", &token[..]),
            label: label.to_owned(),
            created: now,
            expires: now.saturating_add(DEVICE_TTL),
            last_used: now,
        });
        while self.devices.len() > MAX_DEVICES {
            self.devices.remove(0);
        }
        (id, encoded)
    }

    /// Whether `token` (base64url as issued) is a live trusted device at `now`; marks it
    /// used.
    pub fn use_device(&mut self, token: &str, now: u64) -> bool {
        let Some(raw) = decode_token(token) else {
            return false;
        };
        let hash = token_hash(b"vault-server device token v1", &raw[..]);
        let mut hit = false;
        for d in &mut self.devices {
            if bool::from(d.token_hash.ct_eq(&hash)) && d.expires > now {
                d.last_used = now;
                hit = true;
            }
        }
        hit
    }

    /// Revokes the device `id`; `false` if there is none.
    pub fn revoke_device(&mut self, id: &[u8; 16]) -> bool {
        let before = self.devices.len();
        self.devices.retain(|d| &d.id != id);
        self.devices.len() != before
    }

    /// Records an elevation of the session `session` (its token hash) until
    /// `now + ELEVATION_TTL`; returns the elevation token (shown once).
    pub fn elevate(
        &mut self,
        rng: &mut impl CryptoRngCore,
        session: [u8; 32],
        now: u64,
    ) -> Zeroizing<String> {
        let mut token = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(&mut token[..]);
        self.elevations.push(Elevation {
            token_hash: token_hash(b"vault-server elevation v1", &token[..]),
            session,
            expires: now.saturating_add(ELEVATION_TTL),
        });
        while self.elevations.len() > MAX_ELEVATIONS {
            self.elevations.remove(0);
        }
        Zeroizing::new(BASE64URL_NOPAD.encode(&token[..]))
    }

    /// Whether `token` is a live elevation of the session `session` at `now`.
    pub fn is_elevated(&self, token: &str, session: &[u8; 32], now: u64) -> bool {
        let Some(raw) = decode_token(token) else {
            return false;
        };
        let hash = token_hash(b"vault-server elevation v1", &raw[..]);
        let mut hit = false;
        for e in &self.elevations {
            let same = bool::from(e.token_hash.ct_eq(&hash)) & bool::from(e.session.ct_eq(session));
            hit |= same && e.expires > now;
        }
        hit
    }
}

/// An IP address as the allow-list compares it (IPv4-mapped IPv6 as IPv4).
pub fn canonical(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

fn decode_token(token: &str) -> Option<Zeroizing<Vec<u8>>> {
    if token.len() != 43 {
        return None;
    }
    let raw = Zeroizing::new(BASE64URL_NOPAD.decode(token.as_bytes()).ok()?);
    (raw.len() == 32).then_some(raw)
}

fn token_hash(label: &[u8], token: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(label);
    h.update([0]);
    h.update(token);
    h.finalize().into()
}

/// A backup code in canonical form: Crockford base32, upper case, without dashes or spaces
/// (`O` read as `0`, `I` and `L` as `1`); `None` if it cannot be one.
fn normalize_backup_code(code: &str) -> Option<Zeroizing<String>> {
    let mut out = Zeroizing::new(String::with_capacity(BACKUP_CODE_CHARS));
    for c in code.chars() {
        let c = match c.to_ascii_uppercase() {
            '-' | ' ' => continue,
            'O' => '0',
            'I' | 'L' => '1',
            c => c,
        };
        if !c.is_ascii() || !CROCKFORD.contains(&(c as u8)) || out.len() >= BACKUP_CODE_CHARS {
            return None;
        }
        out.push(c);
    }
    (out.len() == BACKUP_CODE_CHARS).then_some(out)
}

/// The stored hash of a backup code: SHA-256 over a label, the account id and the code.
fn backup_code_hash(user: &UserId, code: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"vault-server backup code v1\0");
    h.update(user);
    h.update(code.as_bytes());
    h.finalize().into()
}

/// The `otpauth://` URI an authenticator app scans (Key Uri Format).
pub fn otpauth_uri(
    kind: OtpKind,
    issuer: &str,
    account: &str,
    secret: &SecretBytes,
) -> Zeroizing<String> {
    let secret32 = Zeroizing::new(data_encoding::BASE32_NOPAD.encode(secret.expose()));
    let kind_name = match kind {
        OtpKind::Totp => "totp",
        OtpKind::Hotp => "hotp",
    };
    let extra = match kind {
        OtpKind::Totp => format!("&period={PERIOD}"),
        OtpKind::Hotp => "&counter=0".to_owned(),
    };
    Zeroizing::new(format!(
        "otpauth://{kind_name}/{}:{}?secret={}&issuer={}&algorithm={}&digits={DIGITS}{extra}",
        percent(issuer),
        percent(account),
        &*secret32,
        percent(issuer),
        OtpAlgorithm::Sha1.uri_name(),
    ))
}

/// Percent-encodes everything but unreserved characters (RFC 3986).
fn percent(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use rand_core::OsRng;

    use super::*;

    const USER: UserId = [7; 16];

    fn enrolled(kind: OtpKind, now: u64) -> (MfaRecord, Vec<u8>) {
        let mut r = MfaRecord::default();
        let secret = r.begin_enrolment(&mut OsRng, kind, now);
        let code = match kind {
            OtpKind::Totp => otp::totp(OtpAlgorithm::Sha1, secret.expose(), now, PERIOD, DIGITS),
            OtpKind::Hotp => otp::hotp(OtpAlgorithm::Sha1, secret.expose(), 0, DIGITS),
        };
        assert!(!r.enabled());
        r.confirm_enrolment(kind, &code, now).unwrap();
        assert!(r.enabled());
        (r, secret.expose().to_vec())
    }

    #[test]
    fn totp_codes_are_single_use_and_drift_is_bounded() {
        let t0 = 1_700_000_000;
        let (mut r, secret) = enrolled(OtpKind::Totp, t0);
        let code = |t| otp::totp(OtpAlgorithm::Sha1, &secret, t, PERIOD, DIGITS);
        // The enrolment code's step is used: the same code again is a replay.
        assert!(r.accept(&USER, Factor::Totp(&code(t0)), t0 + 1).is_none());
        // The next step's code works once.
        let t1 = t0 + PERIOD;
        assert!(r.accept(&USER, Factor::Totp(&code(t1)), t1).is_some());
        assert!(r.accept(&USER, Factor::Totp(&code(t1)), t1 + 5).is_none());
        // One step of drift either way is fine, two are not.
        let t3 = t1 + 3 * PERIOD;
        assert!(r
            .accept(&USER, Factor::Totp(&code(t3 + PERIOD)), t3)
            .is_some());
        let t9 = t3 + 10 * PERIOD;
        assert!(r
            .accept(&USER, Factor::Totp(&code(t9 + 2 * PERIOD)), t9)
            .is_none());
        assert!(r
            .accept(&USER, Factor::Totp(&code(t9 - 2 * PERIOD)), t9)
            .is_none());
        assert!(r
            .accept(&USER, Factor::Totp(&code(t9 - PERIOD)), t9)
            .is_some());
        // An HOTP code is not a TOTP factor.
        assert!(r
            .accept(&USER, Factor::Hotp(&code(t9 + PERIOD)), t9)
            .is_none());
    }

    #[test]
    fn hotp_look_ahead_and_resynchronisation() {
        let (mut r, secret) = enrolled(OtpKind::Hotp, 1);
        let code = |c| otp::hotp(OtpAlgorithm::Sha1, &secret, c, DIGITS);
        assert!(
            r.accept(&USER, Factor::Hotp(&code(0)), 2).is_none(),
            "replay"
        );
        assert!(r.accept(&USER, Factor::Hotp(&code(1)), 2).is_some());
        // Within the look-ahead: accepted, and the counter jumps past it.
        assert!(r.accept(&USER, Factor::Hotp(&code(9)), 2).is_some());
        assert!(r.accept(&USER, Factor::Hotp(&code(5)), 2).is_none());
        // Beyond it: refused.
        assert!(r
            .accept(&USER, Factor::Hotp(&code(10 + HOTP_LOOK_AHEAD)), 2)
            .is_none());
    }

    #[test]
    fn enrolment_needs_the_right_code_in_time() {
        let now = 1_000_000;
        let mut r = MfaRecord::default();
        let secret = r.begin_enrolment(&mut OsRng, OtpKind::Totp, now);
        assert!(r.confirm_enrolment(OtpKind::Totp, "000000x", now).is_none());
        assert!(r.confirm_enrolment(OtpKind::Hotp, "123456", now).is_none());
        assert!(r.pending.is_some(), "a wrong code keeps the enrolment");
        let late = now + PENDING_TTL;
        let code = otp::totp(OtpAlgorithm::Sha1, secret.expose(), late, PERIOD, DIGITS);
        assert!(r.confirm_enrolment(OtpKind::Totp, &code, late).is_none());
        assert!(!r.enabled());
    }

    #[test]
    fn backup_codes_are_single_use_and_forgiving_in_form() {
        let mut r = MfaRecord::default();
        let codes = r.new_backup_codes(&mut OsRng, &USER);
        assert_eq!(codes.len(), BACKUP_CODES);
        assert_eq!(codes[0].len(), 19);
        assert!(codes[0]
            .chars()
            .all(|c| c == '-' || CROCKFORD.contains(&(c as u8))));
        let lower = codes[0].to_lowercase().replace('-', " ");
        assert_eq!(
            r.accept(&USER, Factor::BackupCode(&lower), 0),
            Some(Accepted::BackupCode { left: 9 })
        );
        assert!(r.accept(&USER, Factor::BackupCode(&codes[0]), 0).is_none());
        // Bound to the account.
        assert!(r
            .accept(&[8; 16], Factor::BackupCode(&codes[1]), 0)
            .is_none());
        assert!(r
            .accept(&USER, Factor::BackupCode("not a code"), 0)
            .is_none());
        // Regenerating invalidates the old ones.
        let fresh = r.new_backup_codes(&mut OsRng, &USER);
        assert!(r.accept(&USER, Factor::BackupCode(&codes[1]), 0).is_none());
        assert!(r.accept(&USER, Factor::BackupCode(&fresh[1]), 0).is_some());
        // The record keeps only hashes.
        let json = serde_json::to_string(&r).unwrap();
        assert!(!json.contains(&fresh[2].replace('-', "")));
    }

    #[test]
    fn devices_expire_and_are_revocable() {
        let mut r = MfaRecord::default();
        let (id, token) = r.trust_device(&mut OsRng, "laptop", 100);
        assert!(r.use_device(&token, 101));
        assert!(!r.use_device(&token, 100 + DEVICE_TTL));
        assert!(!r.use_device("x", 101));
        assert!(r.revoke_device(&id));
        assert!(!r.use_device(&token, 101));
        for i in 0..MAX_DEVICES + 3 {
            r.trust_device(&mut OsRng, &format!("d{i}"), 200);
        }
        assert_eq!(r.devices.len(), MAX_DEVICES);
        r.prune(200 + DEVICE_TTL);
        assert!(r.devices.is_empty());
    }

    #[test]
    fn elevations_belong_to_one_session_and_expire() {
        let mut r = MfaRecord::default();
        let token = r.elevate(&mut OsRng, [1; 32], 10);
        assert!(r.is_elevated(&token, &[1; 32], 10 + ELEVATION_TTL - 1));
        assert!(!r.is_elevated(&token, &[2; 32], 11));
        assert!(!r.is_elevated(&token, &[1; 32], 10 + ELEVATION_TTL));
    }

    #[test]
    fn allowlist() {
        let mut r = MfaRecord::default();
        assert!(r.allows("203.0.113.9".parse().unwrap()));
        r.allowlist = vec![
            "192.0.2.0/24".parse().unwrap(),
            "2001:db8::/32".parse().unwrap(),
        ];
        assert!(r.allows("192.0.2.77".parse().unwrap()));
        assert!(r.allows("::ffff:192.0.2.1".parse().unwrap()));
        assert!(r.allows("2001:db8::1".parse().unwrap()));
        assert!(!r.allows("203.0.113.9".parse().unwrap()));
        assert!(!r.allows("2001:db9::1".parse().unwrap()));
    }

    #[test]
    fn sealed_records_are_bound_to_key_and_account() {
        let key = MfaKey::random(&mut OsRng);
        let (r, secret) = enrolled(OtpKind::Totp, 5_000);
        let sealed = key.seal(&mut OsRng, &USER, &r);
        assert_eq!(key.open(&USER, &sealed).unwrap(), r);
        // The secret is not in the sealed bytes in any form.
        let hex = data_encoding::HEXLOWER.encode(&secret);
        let b32 = data_encoding::BASE32_NOPAD.encode(&secret);
        let text = String::from_utf8_lossy(&sealed);
        assert!(!text.contains(&hex) && !text.contains(&b32));
        assert!(!sealed.windows(secret.len()).any(|w| w == secret.as_slice()));
        assert!(key.open(&[8; 16], &sealed).is_none());
        assert!(MfaKey::random(&mut OsRng).open(&USER, &sealed).is_none());
        let mut flipped = sealed.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert!(key.open(&USER, &flipped).is_none());
        assert!(key.open(&USER, &sealed[..20]).is_none());
        assert!(key.open(&USER, b"").is_none());
    }

    #[test]
    fn key_file_is_created_private_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mfa.key");
        let a = MfaKey::load_or_create(&path, &mut OsRng).unwrap();
        let b = MfaKey::load_or_create(&path, &mut OsRng).unwrap();
        assert_eq!(*a.0, *b.0);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::write(&path, "not hex").unwrap();
        assert!(MfaKey::load_or_create(&path, &mut OsRng).is_err());
        std::fs::write(&path, "00").unwrap();
        assert!(MfaKey::load_or_create(&path, &mut OsRng).is_err());
    }

    #[test]
    fn otpauth_uri_names_the_parameters() {
        let s = SecretBytes(b"12345678901234567890".to_vec());
        let uri = otpauth_uri(OtpKind::Totp, "vault", "alice smith", &s);
        assert_eq!(
            uri.as_str(),
            "otpauth://totp/vault:alice%20smith?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=vault&algorithm=SHA1&digits=6&period=30"
        );
    }
}
