//! Login verifiers: what the server stores instead of anything that would let it log in as
//! the user (BRIEF R3; docs/spec/login.md §2–§5).
//!
//! The client never sends the password: it sends a 32-byte *login secret*, an HKDF output
//! of its own PBKDF2 run (docs/spec/keyring.md §3). The server keeps only a [`Verifier`] of
//! that secret. Scheme 1 is
//!
//! ```text
//! hash = PBKDF2-HMAC-SHA256(P = login_secret[32],
//!                           S = "vault/v1/server/login-verifier\0" || salt[16],
//!                           c = iterations, dkLen = 32)
//! ```
//!
//! The scheme is a byte of the stored record and a variant of [`Scheme`]: a later scheme (an
//! augmented PAKE such as OPAQUE) is a new variant and a new record body, decoded by the same
//! [`Verifier::from_bytes`]; the callers of [`Verifier::verify`] and [`check_login`] do not
//! change.
//!
//! Enumeration resistance: a login for an account that does not exist must cost what a
//! login for one that does costs. [`check_login`] takes the stored verifier as an `Option`
//! and runs [`dummy_verify`] when there is none; a caller that looks the account up itself
//! must do the same (login.md §7).

use core::fmt;
use core::hint::black_box;
use std::time::{Duration, Instant};

use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};
use rand_core::CryptoRngCore;
use sha2::Sha256;
use subtle::ConstantTimeEq;
use zeroize::{ZeroizeOnDrop, Zeroizing};

/// The iteration floor of every policy a server can build outside tests. Lower than the
/// client's 600,000 because the input is already a 256-bit secret, not a password
/// (login.md §4).
pub const MIN_ITERATIONS: u32 = 100_000;
/// The cap: no policy asks for more, and no stored verifier that asks for more is decoded,
/// so a damaged record cannot make one login burn a core for minutes. About 1.2 s of one
/// SHA-NI core in 2026.
pub const MAX_ITERATIONS: u32 = 10_000_000;
/// The default calibration target: the time one verification takes on this server.
/// Lower than the client's 0.5 s because the server pays it on every login (login.md §4).
pub const DEFAULT_TARGET: Duration = Duration::from_millis(100);
/// Length of the random per-user salt.
pub const SALT_LEN: usize = 16;
/// Length of the login secret and of the stored hash.
pub const SECRET_LEN: usize = 32;
/// Length of an encoded scheme-1 verifier.
pub const ENCODED_LEN: usize = 58;

/// Magic of an encoded verifier (login.md §2).
const MAGIC: [u8; 4] = *b"VLGV";
/// Format version of the encoded record (the envelope around the scheme's body).
const FORMAT_VERSION: u8 = 1;
/// Prefix of the PBKDF2 salt input, so this PBKDF2 run is never another one (THREATS C21).
const VERIFIER_LABEL: &[u8] = b"vault/v1/server/login-verifier\0";
/// HMAC input prefix of the decoy client-KDF salt of unknown accounts.
const DECOY_SALT_LABEL: &[u8] = b"vault/v1/server/decoy-kdf-salt\0";
/// The salt of [`dummy_verify`]: fixed, because nothing is protected by it.
const DUMMY_SALT: [u8; SALT_LEN] = *b"vault/v1/dummy\0\0";
/// Iterations of each calibration sample before doubling.
const CALIBRATION_START: u32 = 10_000;
/// Calibrated counts are rounded up to a multiple of this.
const CALIBRATION_STEP: u32 = 10_000;

/// Why a verifier could not be decoded or a policy could not be built.
///
/// These are server-local errors for the storage layer and the operator; a client is never
/// told anything but "authentication failed" (THREATS I2).
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone, Copy)]
#[non_exhaustive]
pub enum VerifierError {
    /// The bytes are not a verifier: wrong magic, wrong length for the scheme, trailing
    /// bytes, or an iteration count outside 1..=[`MAX_ITERATIONS`].
    #[error("malformed login verifier")]
    Malformed,
    /// A verifier of a format version or scheme this server does not implement.
    #[error("unsupported login verifier version or scheme")]
    Unsupported,
    /// A policy was asked for an iteration count outside
    /// [`MIN_ITERATIONS`]..=[`MAX_ITERATIONS`].
    #[error("iteration count outside {MIN_ITERATIONS}..={MAX_ITERATIONS}")]
    IterationsOutOfRange,
}

/// The login secret as the server receives it: 32 bytes derived by the client (never the
/// password). Zeroized on drop; `Debug` prints nothing of it; no `Clone`.
#[derive(ZeroizeOnDrop)]
pub struct LoginSecret([u8; SECRET_LEN]);

impl LoginSecret {
    /// Wraps the 32 bytes of a login secret. Refuses the all-zero value, which only a bug or
    /// an attacker sends (THREATS C5). The caller's copy of `bytes` is not wiped.
    pub fn from_bytes(bytes: [u8; SECRET_LEN]) -> Option<Self> {
        let secret = Self(bytes);
        if bool::from(secret.0.ct_eq(&[0u8; SECRET_LEN])) {
            None
        } else {
            Some(secret)
        }
    }

    /// [`LoginSecret::from_bytes`] from a slice that must be exactly 32 bytes long.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        let array: [u8; SECRET_LEN] = bytes.try_into().ok()?;
        Self::from_bytes(array)
    }

    fn expose(&self) -> &[u8; SECRET_LEN] {
        &self.0
    }
}

impl fmt::Debug for LoginSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LoginSecret([redacted])")
    }
}

/// A verifier scheme: the algorithm a stored [`Verifier`] was made with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Scheme {
    /// Scheme 1: PBKDF2-HMAC-SHA256 over the 32-byte login secret, 16-byte salt, 32-byte
    /// hash.
    Pbkdf2Sha256,
}

impl Scheme {
    /// The scheme new verifiers are created with.
    pub const CURRENT: Scheme = Scheme::Pbkdf2Sha256;

    /// The scheme's byte in the encoded record.
    pub fn id(self) -> u8 {
        match self {
            Scheme::Pbkdf2Sha256 => 1,
        }
    }

    /// The scheme with this byte, if this server implements it.
    pub fn from_id(id: u8) -> Option<Self> {
        match id {
            1 => Some(Scheme::Pbkdf2Sha256),
            _ => None,
        }
    }
}

/// How new verifiers are made on this server, and what counts as outdated: the PBKDF2
/// iteration count of scheme 1.
///
/// A policy built by [`VerifierPolicy::calibrate`], [`VerifierPolicy::from_rate`] or
/// [`VerifierPolicy::with_iterations`] is always within
/// [`MIN_ITERATIONS`]..=[`MAX_ITERATIONS`]. Tests build lower counts only through
/// `insecure_test_policy`, which exists only with the `danger-insecure-test-policy` cargo
/// feature.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VerifierPolicy {
    iterations: u32,
}

impl Default for VerifierPolicy {
    /// The floor: [`MIN_ITERATIONS`]. A server should [`calibrate`](Self::calibrate) instead.
    fn default() -> Self {
        Self {
            iterations: MIN_ITERATIONS,
        }
    }
}

impl VerifierPolicy {
    /// Measures this machine (0.2–0.5 s of one core) and returns the policy whose
    /// verification takes about `target`, within [`MIN_ITERATIONS`]..=[`MAX_ITERATIONS`]
    /// and rounded up to a multiple of 10,000. Call it once at start-up; [`DEFAULT_TARGET`]
    /// is 100 ms.
    pub fn calibrate(target: Duration) -> Self {
        Self::from_rate(measure_rate(), target)
    }

    /// The policy for a machine that computes `iterations_per_second` PBKDF2-HMAC-SHA256
    /// iterations per second, as [`measure_rate`] returns. The count is
    /// `ceil(rate × target)` clamped to [`MIN_ITERATIONS`]..=[`MAX_ITERATIONS`] and rounded
    /// up to a multiple of 10,000; it never decreases when the rate or the target grows. A
    /// rate that is not a positive finite number yields the floor.
    pub fn from_rate(iterations_per_second: f64, target: Duration) -> Self {
        let wanted = (iterations_per_second * target.as_secs_f64()).ceil();
        let count = if wanted.is_nan() || wanted <= f64::from(MIN_ITERATIONS) {
            MIN_ITERATIONS
        } else if wanted >= f64::from(MAX_ITERATIONS) {
            MAX_ITERATIONS
        } else {
            // In range, so the conversion is exact up to the fraction `ceil` removed.
            wanted as u32
        };
        let iterations = count
            .div_ceil(CALIBRATION_STEP)
            .saturating_mul(CALIBRATION_STEP)
            .min(MAX_ITERATIONS);
        Self { iterations }
    }

    /// A policy with an explicit count, for operators who pin it in configuration (a
    /// cluster whose nodes must agree; login.md §4). Refuses counts outside
    /// [`MIN_ITERATIONS`]..=[`MAX_ITERATIONS`].
    pub fn with_iterations(iterations: u32) -> Result<Self, VerifierError> {
        if (MIN_ITERATIONS..=MAX_ITERATIONS).contains(&iterations) {
            Ok(Self { iterations })
        } else {
            Err(VerifierError::IterationsOutOfRange)
        }
    }

    /// **Insecure, tests only**: a policy with any count from 1 to [`MAX_ITERATIONS`]
    /// (0 becomes 1), so that tests verify in microseconds. Present only with the
    /// `danger-insecure-test-policy` cargo feature, which a server never enables; every
    /// other constructor enforces the [`MIN_ITERATIONS`] floor.
    #[cfg(any(test, feature = "danger-insecure-test-policy"))]
    pub fn insecure_test_policy(iterations: u32) -> Self {
        Self {
            iterations: iterations.clamp(1, MAX_ITERATIONS),
        }
    }

    /// The policy of **recovery verifiers** (login.md §11): the floor, [`MIN_ITERATIONS`],
    /// or this policy's count if that is lower (a test policy). A recovery verifier checks
    /// the recovery login secret, an HKDF output of a 256-bit random recovery code
    /// (keyring.md §5.1) with nothing to guess, so calibrated slowness would buy nothing
    /// against a stolen verifier; the floor keeps the unauthenticated recovery routes cheap
    /// for the server. Its checks, real and dummy, all use this one count, so they take
    /// equal time.
    pub fn for_recovery(&self) -> Self {
        Self {
            iterations: self.iterations.min(MIN_ITERATIONS),
        }
    }

    /// The PBKDF2 iteration count of new verifiers, and of [`dummy_verify`].
    pub fn iterations(&self) -> u32 {
        self.iterations
    }

    /// The scheme of new verifiers.
    pub fn scheme(&self) -> Scheme {
        Scheme::CURRENT
    }
}

/// Measures this machine's PBKDF2-HMAC-SHA256 rate in iterations per second: runs samples
/// from 10,000 iterations, doubling until one takes at least 50 ms (timer resolution and
/// warm-up no longer matter), then takes the fastest of three runs at that size (the run
/// least disturbed by other load).
pub fn measure_rate() -> f64 {
    let mut sample = CALIBRATION_START;
    loop {
        let elapsed = time_pbkdf2(sample);
        if elapsed >= Duration::from_millis(50) || sample >= MAX_ITERATIONS / 2 {
            let best = elapsed.min(time_pbkdf2(sample)).min(time_pbkdf2(sample));
            return f64::from(sample) / best.as_secs_f64().max(1e-9);
        }
        sample = sample.saturating_mul(2);
    }
}

fn time_pbkdf2(iterations: u32) -> Duration {
    let start = Instant::now();
    black_box(pbkdf2_hash(
        black_box(&[0x5a; SECRET_LEN]),
        &DUMMY_SALT,
        iterations,
    ));
    start.elapsed()
}

/// Scheme 1's function (login.md §3).
fn pbkdf2_hash(secret: &[u8; SECRET_LEN], salt: &[u8; SALT_LEN], iterations: u32) -> [u8; 32] {
    #[cfg(test)]
    tests::count_iterations(iterations);
    let mut salt_input = [0u8; VERIFIER_LABEL.len() + SALT_LEN];
    salt_input[..VERIFIER_LABEL.len()].copy_from_slice(VERIFIER_LABEL);
    salt_input[VERIFIER_LABEL.len()..].copy_from_slice(salt);
    let mut out = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<Sha256>(secret, &salt_input, iterations, &mut out);
    out
}

/// A stored login verifier (login.md §2): the scheme and its parameters and hash. Encoded by
/// [`Verifier::to_bytes`] for the storage layer and decoded strictly by
/// [`Verifier::from_bytes`].
///
/// `Debug` prints the scheme and the iteration count, not the salt or the hash (a stolen
/// hash can be attacked offline, guess by guess).
#[derive(Clone)]
pub struct Verifier {
    kind: Kind,
}

#[derive(Clone)]
enum Kind {
    Pbkdf2Sha256 {
        iterations: u32,
        salt: [u8; SALT_LEN],
        hash: [u8; 32],
    },
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("scheme", &self.scheme())
            .field("iterations", &self.iterations())
            .finish_non_exhaustive()
    }
}

impl Verifier {
    /// A new verifier of `secret` under `policy`'s scheme and count, with a fresh random
    /// salt (pass `rand_core::OsRng`). Costs one verification. Made at registration, at a
    /// password change, and when [`Verifier::needs_rehash`] says so after a login.
    pub fn create(
        rng: &mut impl CryptoRngCore,
        secret: &LoginSecret,
        policy: &VerifierPolicy,
    ) -> Self {
        let mut salt = [0u8; SALT_LEN];
        rng.fill_bytes(&mut salt);
        let hash = pbkdf2_hash(secret.expose(), &salt, policy.iterations);
        Self {
            kind: Kind::Pbkdf2Sha256 {
                iterations: policy.iterations,
                salt,
                hash,
            },
        }
    }

    /// Whether `secret` is the one this verifier was made of. Recomputes the hash with the
    /// stored parameters and compares in constant time; the time taken depends on the stored
    /// iteration count only, not on the secret.
    #[must_use]
    pub fn verify(&self, secret: &LoginSecret) -> bool {
        match &self.kind {
            Kind::Pbkdf2Sha256 {
                iterations,
                salt,
                hash,
            } => {
                let computed = pbkdf2_hash(secret.expose(), salt, *iterations);
                bool::from(computed.ct_eq(hash))
            }
        }
    }

    /// Whether the caller should replace this verifier, after a successful login, by
    /// [`Verifier::create`] of the secret the user just proved: true when its scheme is not
    /// the policy's, when its count is below the policy's (the calibrated count has risen,
    /// or the verifier predates the floor), or when its count is more than twice the
    /// policy's (a verification that costs far more than [`dummy_verify`] tells by its
    /// timing that the account exists; login.md §5).
    #[must_use]
    pub fn needs_rehash(&self, policy: &VerifierPolicy) -> bool {
        if self.scheme() != policy.scheme() {
            return true;
        }
        match &self.kind {
            Kind::Pbkdf2Sha256 { iterations, .. } => {
                *iterations < policy.iterations
                    || u64::from(*iterations) > 2 * u64::from(policy.iterations)
            }
        }
    }

    /// The scheme this verifier was made with.
    pub fn scheme(&self) -> Scheme {
        match self.kind {
            Kind::Pbkdf2Sha256 { .. } => Scheme::Pbkdf2Sha256,
        }
    }

    /// The PBKDF2 iteration count, for schemes that have one (all so far).
    pub fn iterations(&self) -> Option<u32> {
        match self.kind {
            Kind::Pbkdf2Sha256 { iterations, .. } => Some(iterations),
        }
    }

    /// The encoded record (login.md §2): `"VLGV" || u8 version = 1 || u8 scheme || body`,
    /// scheme 1's body being `u32 iterations || salt[16] || hash[32]` (58 bytes in all).
    pub fn to_bytes(&self) -> Vec<u8> {
        match &self.kind {
            Kind::Pbkdf2Sha256 {
                iterations,
                salt,
                hash,
            } => {
                let mut out = Vec::with_capacity(ENCODED_LEN);
                out.extend_from_slice(&MAGIC);
                out.push(FORMAT_VERSION);
                out.push(Scheme::Pbkdf2Sha256.id());
                out.extend_from_slice(&iterations.to_be_bytes());
                out.extend_from_slice(salt);
                out.extend_from_slice(hash);
                out
            }
        }
    }

    /// Decodes a record written by [`Verifier::to_bytes`], refusing anything else: a wrong
    /// magic, a truncated record or trailing bytes, an iteration count outside
    /// 1..=[`MAX_ITERATIONS`] ([`VerifierError::Malformed`]); an unknown version or scheme
    /// ([`VerifierError::Unsupported`]). Counts below [`MIN_ITERATIONS`] are accepted so that
    /// such a verifier still opens and is then replaced ([`Verifier::needs_rehash`]).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, VerifierError> {
        let Some((header, body)) = bytes.split_first_chunk::<6>() else {
            return Err(malformed("shorter than the header"));
        };
        if header[..4] != MAGIC {
            return Err(malformed("wrong magic"));
        }
        if header[4] != FORMAT_VERSION {
            tracing::debug!(target: "vault_server", version = header[4], "unknown verifier version");
            return Err(VerifierError::Unsupported);
        }
        match Scheme::from_id(header[5]) {
            Some(Scheme::Pbkdf2Sha256) => {
                let body: &[u8; ENCODED_LEN - 6] = body
                    .try_into()
                    .map_err(|_| malformed("wrong length for scheme 1"))?;
                let (count, rest) = body.split_at(4);
                let (salt, hash) = rest.split_at(SALT_LEN);
                let mut count_bytes = [0u8; 4];
                count_bytes.copy_from_slice(count);
                let iterations = u32::from_be_bytes(count_bytes);
                if !(1..=MAX_ITERATIONS).contains(&iterations) {
                    return Err(malformed("iteration count out of range"));
                }
                let mut salt_bytes = [0u8; SALT_LEN];
                salt_bytes.copy_from_slice(salt);
                let mut hash_bytes = [0u8; 32];
                hash_bytes.copy_from_slice(hash);
                Ok(Self {
                    kind: Kind::Pbkdf2Sha256 {
                        iterations,
                        salt: salt_bytes,
                        hash: hash_bytes,
                    },
                })
            }
            None => {
                tracing::debug!(target: "vault_server", scheme = header[5], "unknown verifier scheme");
                Err(VerifierError::Unsupported)
            }
        }
    }
}

fn malformed(reason: &'static str) -> VerifierError {
    tracing::debug!(target: "vault_server", reason, "malformed login verifier");
    VerifierError::Malformed
}

/// Does the work of one verification under `policy` — the same PBKDF2 count, the same
/// constant-time comparison — and returns `false`. For a login to an account that does not
/// exist, so that its answer takes as long as a wrong secret for one that does (login.md §7).
///
/// **Caller's duty**: every login request for an unknown account must go through this (or
/// through [`check_login`] with `None`) before answering, and the answer must be the same
/// "authentication failed" a wrong secret gets, after the same backoff bookkeeping.
#[must_use]
pub fn dummy_verify(policy: &VerifierPolicy, secret: &LoginSecret) -> bool {
    let dummy = Verifier {
        kind: Kind::Pbkdf2Sha256 {
            iterations: policy.iterations,
            salt: DUMMY_SALT,
            hash: [0u8; 32],
        },
    };
    // `black_box` keeps the optimiser from removing work whose result is discarded.
    let _ = black_box(dummy.verify(black_box(secret)));
    false
}

/// The result of [`check_login`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub enum LoginCheck {
    /// Wrong secret, or no such account: answer "authentication failed" either way.
    Rejected,
    /// The secret is right.
    Accepted {
        /// The caller should store `Verifier::create(OsRng, secret, policy)` in place of the
        /// old verifier ([`Verifier::needs_rehash`]).
        rehash: bool,
    },
}

/// One login check that costs the same whether the account exists or not: verifies against
/// `stored`, or runs [`dummy_verify`] when the account has no verifier (`None`). Unknown
/// accounts and wrong secrets both give [`LoginCheck::Rejected`].
pub fn check_login(
    stored: Option<&Verifier>,
    secret: &LoginSecret,
    policy: &VerifierPolicy,
) -> LoginCheck {
    match stored {
        Some(verifier) => {
            if verifier.verify(secret) {
                LoginCheck::Accepted {
                    rehash: verifier.needs_rehash(policy),
                }
            } else {
                LoginCheck::Rejected
            }
        }
        None => {
            let _ = dummy_verify(policy, secret);
            LoginCheck::Rejected
        }
    }
}

/// The server's key for the decoy client-KDF salts it answers for accounts that do not
/// exist (login.md §7): before login, a client asks for its account's KDF salt and count
/// (docs/spec/keyring.md §3); an unknown account must get a salt that looks random and is
/// the same on every request, so that asking twice does not tell.
///
/// The key must persist with the server's configuration: a new key changes every decoy.
/// Zeroized on drop; `Debug` redacted.
#[derive(ZeroizeOnDrop)]
pub struct DecoyKey([u8; 32]);

impl DecoyKey {
    /// A fresh key (pass `rand_core::OsRng`), made once when the server is set up.
    pub fn generate(rng: &mut impl CryptoRngCore) -> Self {
        let mut key = [0u8; 32];
        rng.fill_bytes(&mut key);
        Self(key)
    }

    /// The key from its stored bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The bytes to store in the server's configuration.
    pub fn expose_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The decoy salt for `account` (the login name as the server normalises it):
    /// `HMAC-SHA256(key, "vault/v1/server/decoy-kdf-salt\0" || account)[0..16]`.
    pub fn client_kdf_salt(&self, account: &[u8]) -> [u8; SALT_LEN] {
        // HMAC pads a key shorter than the 64-byte block with zeros (RFC 2104 §2), so the
        // padded block is the same key, and `KeyInit::new` has no failure path.
        let mut block = Zeroizing::new([0u8; 64]);
        block[..32].copy_from_slice(&self.0);
        let mut mac = <Hmac<Sha256> as KeyInit>::new(&(*block).into());
        mac.update(DECOY_SALT_LABEL);
        mac.update(account);
        let tag = mac.finalize().into_bytes();
        let mut salt = [0u8; SALT_LEN];
        salt.copy_from_slice(&tag[..SALT_LEN]);
        salt
    }
}

impl fmt::Debug for DecoyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DecoyKey([redacted])")
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::cell::Cell;

    use rand_chacha::rand_core::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    use super::*;

    thread_local! {
        /// PBKDF2 iterations run on this thread since the last `take_iterations`.
        static ITERATIONS_RUN: Cell<u64> = const { Cell::new(0) };
    }

    pub(super) fn count_iterations(iterations: u32) {
        ITERATIONS_RUN.with(|c| c.set(c.get() + u64::from(iterations)));
    }

    fn take_iterations() -> u64 {
        ITERATIONS_RUN.with(|c| c.replace(0))
    }

    fn secret(byte: u8) -> LoginSecret {
        LoginSecret::from_bytes([byte; 32]).unwrap()
    }

    #[test]
    fn dummy_verify_runs_the_policy_count_and_real_verify_the_stored_count() {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let policy = VerifierPolicy::insecure_test_policy(3_210);
        let other = VerifierPolicy::insecure_test_policy(1_234);
        let verifier = Verifier::create(&mut rng, &secret(1), &other);
        take_iterations();

        assert!(!dummy_verify(&policy, &secret(1)));
        assert_eq!(take_iterations(), 3_210);

        assert_eq!(check_login(None, &secret(1), &policy), LoginCheck::Rejected);
        assert_eq!(take_iterations(), 3_210);

        // A real account pays its stored count; after a rehash it pays the policy's.
        assert!(matches!(
            check_login(Some(&verifier), &secret(1), &policy),
            LoginCheck::Accepted { rehash: true }
        ));
        assert_eq!(take_iterations(), 1_234);
        let rehashed = Verifier::create(&mut rng, &secret(1), &policy);
        take_iterations();
        assert_eq!(
            check_login(Some(&rehashed), &secret(2), &policy),
            LoginCheck::Rejected
        );
        assert_eq!(take_iterations(), 3_210);
    }

    #[test]
    fn from_rate_is_monotonic_and_clamped() {
        let t = Duration::from_millis(100);
        assert_eq!(
            VerifierPolicy::from_rate(0.0, t).iterations(),
            MIN_ITERATIONS
        );
        assert_eq!(
            VerifierPolicy::from_rate(-5.0, t).iterations(),
            MIN_ITERATIONS
        );
        assert_eq!(
            VerifierPolicy::from_rate(f64::NAN, t).iterations(),
            MIN_ITERATIONS
        );
        assert_eq!(
            VerifierPolicy::from_rate(f64::INFINITY, t).iterations(),
            MAX_ITERATIONS
        );
        assert_eq!(
            VerifierPolicy::from_rate(1e12, t).iterations(),
            MAX_ITERATIONS
        );
        // 8 M/s × 100 ms = 800,000 exactly; 8,000,001/s rounds up to the next step.
        assert_eq!(VerifierPolicy::from_rate(8e6, t).iterations(), 800_000);
        assert_eq!(
            VerifierPolicy::from_rate(8_000_001.0, t).iterations(),
            810_000
        );

        let mut last = 0;
        for step in 0..2_000u32 {
            let rate = f64::from(step) * 10_000.0;
            let n = VerifierPolicy::from_rate(rate, t).iterations();
            assert!(n >= last, "not monotonic in the rate at {rate}");
            assert!((MIN_ITERATIONS..=MAX_ITERATIONS).contains(&n));
            assert_eq!(n % CALIBRATION_STEP, 0);
            last = n;
        }
        let mut last = 0;
        for ms in 0..3_000u64 {
            let n = VerifierPolicy::from_rate(5e6, Duration::from_millis(ms)).iterations();
            assert!(n >= last, "not monotonic in the target at {ms} ms");
            last = n;
        }
    }

    #[test]
    fn decoy_salts_are_stable_per_account_and_key() {
        let a = DecoyKey::from_bytes([7; 32]);
        let b = DecoyKey::generate(&mut ChaCha20Rng::seed_from_u64(2));
        assert_eq!(a.client_kdf_salt(b"alice"), a.client_kdf_salt(b"alice"));
        assert_ne!(a.client_kdf_salt(b"alice"), a.client_kdf_salt(b"alicf"));
        assert_ne!(a.client_kdf_salt(b"alice"), b.client_kdf_salt(b"alice"));
        assert_eq!(format!("{a:?}"), "DecoyKey([redacted])");
        // Pinned: HMAC-SHA256 with the label, truncated to 16 bytes.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&[7; 32]).unwrap();
        mac.update(b"vault/v1/server/decoy-kdf-salt\0alice");
        assert_eq!(
            a.client_kdf_salt(b"alice")[..],
            mac.finalize().into_bytes()[..16]
        );
    }

    #[test]
    fn scheme_one_is_pbkdf2_over_the_labelled_salt() {
        let mut rng = ChaCha20Rng::seed_from_u64(3);
        let policy = VerifierPolicy::insecure_test_policy(1_000);
        let v = Verifier::create(&mut rng, &secret(9), &policy);
        let bytes = v.to_bytes();
        let mut salt = b"vault/v1/server/login-verifier\0".to_vec();
        salt.extend_from_slice(&bytes[10..26]);
        let mut expected = [0u8; 32];
        pbkdf2::pbkdf2_hmac::<Sha256>(&[9; 32], &salt, 1_000, &mut expected);
        assert_eq!(bytes[26..], expected);
        assert_eq!(bytes[6..10], 1_000u32.to_be_bytes());
    }

    #[test]
    fn recovery_policy_is_the_floor_or_lower() {
        let calibrated = VerifierPolicy::with_iterations(2_000_000).unwrap();
        assert_eq!(calibrated.for_recovery().iterations(), MIN_ITERATIONS);
        assert_eq!(
            VerifierPolicy::default().for_recovery().iterations(),
            MIN_ITERATIONS
        );
        let test = VerifierPolicy::insecure_test_policy(1_000);
        assert_eq!(test.for_recovery().iterations(), 1_000);
        // A recovery verifier made at the floor needs no rehash under the recovery policy.
        let v = Verifier::create(&mut ChaCha20Rng::seed_from_u64(4), &secret(3), &test);
        assert!(!v.needs_rehash(&test.for_recovery()));
    }
}
