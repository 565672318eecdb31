//! Password key derivation: PBKDF2-HMAC-SHA256 with a calibrated iteration count and an
//! enforced floor (BRIEF R2, R3; THREATS C7; docs/spec/keyring.md §3).
//!
//! ```text
//! M            = PBKDF2-HMAC-SHA256(password, salt, iterations, dkLen = 32)
//! unlock_key   = HKDF-Expand(PRK = M, info = "vault/v1/password/unlock", 32)
//! login_secret = HKDF-Expand(PRK = M, info = "vault/v1/password/login", 32)
//! ```
//!
//! One PBKDF2 block (dkLen = 32) so that the defender pays exactly what an attacker pays per
//! guess. The two outputs are independent HKDF-Expand outputs of `M`: knowing the login
//! secret gives no information about the unlock key beyond what a password guess gives.

use core::fmt;
use std::time::{Duration, Instant};

use hkdf::Hkdf;
use rand_core::CryptoRngCore;
use sha2::Sha256;
use zeroize::{ZeroizeOnDrop, Zeroizing};

use crate::error::{auth_failed, Error};
use crate::keys::{HKDF_LOGIN, HKDF_UNLOCK};
use crate::secret::{Password, SymmetricKey};

/// The iteration floor the client enforces on every parameter set it reads or writes
/// (OWASP's 2023 figure for PBKDF2-HMAC-SHA256; THREATS C7).
pub const MIN_ITERATIONS: u32 = 600_000;
/// The cap on iterations read from outside, so a hostile server cannot make a client spin
/// for hours. 100 million is about a minute on a 2026 laptop core.
pub const MAX_ITERATIONS: u32 = 100_000_000;
/// The default calibration target: how long one unlock takes on this device.
pub const DEFAULT_TARGET: Duration = Duration::from_millis(500);
/// Length of the random PBKDF2 salt.
pub const SALT_LEN: usize = 16;

/// PBKDF2 parameters: a random 128-bit salt and an iteration count.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct KdfParams {
    salt: [u8; SALT_LEN],
    iterations: u32,
}

impl KdfParams {
    /// Parameters with a fresh salt and an iteration count calibrated so that one derivation
    /// takes about `target` on this device, never below [`MIN_ITERATIONS`] nor above
    /// [`MAX_ITERATIONS`].
    pub fn calibrate(target: Duration) -> Self {
        Self::calibrate_with_rng(&mut rand_core::OsRng, target)
    }

    /// [`KdfParams::calibrate`] with a caller-supplied random generator for the salt.
    pub fn calibrate_with_rng(rng: &mut impl CryptoRngCore, target: Duration) -> Self {
        let iterations = calibrate_iterations(target);
        Self::random_salt(rng, iterations)
    }

    /// Parameters with a fresh salt and an explicit iteration count, which must be within
    /// [`MIN_ITERATIONS`]..=[`MAX_ITERATIONS`].
    pub fn with_iterations(iterations: u32) -> Result<Self, Error> {
        if !(MIN_ITERATIONS..=MAX_ITERATIONS).contains(&iterations) {
            return Err(Error::WeakKdfParameters);
        }
        Ok(Self::random_salt(&mut rand_core::OsRng, iterations))
    }

    pub(crate) fn random_salt(rng: &mut impl CryptoRngCore, iterations: u32) -> Self {
        let mut salt = [0u8; SALT_LEN];
        rng.fill_bytes(&mut salt);
        Self { salt, iterations }
    }

    /// Parameters as read from a stored keyring or a server; not yet checked against a
    /// policy (that happens in [`PasswordKeys::derive`]).
    pub(crate) fn from_parts(salt: [u8; SALT_LEN], iterations: u32) -> Self {
        Self { salt, iterations }
    }

    /// The salt.
    pub fn salt(&self) -> &[u8; SALT_LEN] {
        &self.salt
    }

    /// The iteration count.
    pub fn iterations(&self) -> u32 {
        self.iterations
    }
}

/// Bounds on the iteration counts a client accepts. The default is the only one an
/// application can build: [`MIN_ITERATIONS`]..=[`MAX_ITERATIONS`]. Parameters outside it
/// fail with [`Error::WeakKdfParameters`] before any key derivation runs (THREATS C7).
///
/// Tests build a lower floor through `danger::insecure_test_policy`, which exists only with
/// the `danger-insecure-test-kdf` cargo feature.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KdfPolicy {
    pub(crate) min_iterations: u32,
    pub(crate) max_iterations: u32,
}

impl Default for KdfPolicy {
    fn default() -> Self {
        Self {
            min_iterations: MIN_ITERATIONS,
            max_iterations: MAX_ITERATIONS,
        }
    }
}

impl KdfPolicy {
    pub(crate) fn check(&self, params: &KdfParams) -> Result<(), Error> {
        if params.iterations < self.min_iterations {
            tracing::debug!(target: "vault_keyring", iterations = params.iterations, "iteration count below the floor");
            return Err(Error::WeakKdfParameters);
        }
        if params.iterations > self.max_iterations {
            tracing::debug!(target: "vault_keyring", iterations = params.iterations, "iteration count above the cap");
            return Err(Error::WeakKdfParameters);
        }
        Ok(())
    }
}

/// The login secret: what the client sends to the server at login instead of the password
/// (BRIEF R3). The server stores only a slow hash of it. Zeroized on drop.
#[derive(ZeroizeOnDrop)]
pub struct LoginSecret([u8; 32]);

impl LoginSecret {
    /// The 32 bytes to send over the (TLS) login request.
    pub fn expose_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for LoginSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LoginSecret([redacted])")
    }
}

/// Both keys a password yields under one parameter set: the unlock key, which never leaves
/// the device, and the login secret. One PBKDF2 run gives both.
pub struct PasswordKeys {
    params: KdfParams,
    pub(crate) unlock: SymmetricKey,
    login: LoginSecret,
}

impl fmt::Debug for PasswordKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PasswordKeys")
            .field("params", &self.params)
            .finish_non_exhaustive()
    }
}

impl PasswordKeys {
    /// Runs PBKDF2 on `password` with `params`, after checking the parameters against the
    /// default policy (the 600,000 floor; THREATS C7). Parameters that came from outside
    /// and fall below the floor fail with [`Error::WeakKdfParameters`] before any work.
    /// An empty password is refused with [`Error::EmptyPassword`].
    pub fn derive(password: &Password, params: &KdfParams) -> Result<Self, Error> {
        Self::derive_with_policy(password, params, &KdfPolicy::default())
    }

    /// [`PasswordKeys::derive`] under an explicit policy. With the default policy this is
    /// the same function; only the `danger-insecure-test-kdf` feature can build another.
    pub fn derive_with_policy(
        password: &Password,
        params: &KdfParams,
        policy: &KdfPolicy,
    ) -> Result<Self, Error> {
        if password.is_empty() {
            return Err(Error::EmptyPassword);
        }
        policy.check(params)?;
        let mut master = Zeroizing::new([0u8; 32]);
        pbkdf2::pbkdf2_hmac::<Sha256>(
            password.as_bytes(),
            &params.salt,
            params.iterations,
            &mut *master,
        );
        let hk = Hkdf::<Sha256>::from_prk(&*master)
            .map_err(|_| auth_failed("PBKDF2 output is not a valid PRK"))?;
        let mut unlock = [0u8; 32];
        let mut login = [0u8; 32];
        // 32-byte outputs: HKDF-Expand cannot fail.
        let _ = hk.expand(HKDF_UNLOCK, &mut unlock);
        let _ = hk.expand(HKDF_LOGIN, &mut login);
        let unlock = SymmetricKey::from_bytes(unlock).ok_or(Error::AuthenticationFailed)?;
        Ok(Self {
            params: *params,
            unlock,
            login: LoginSecret(login),
        })
    }

    /// The parameters these keys were derived with.
    pub fn params(&self) -> &KdfParams {
        &self.params
    }

    /// The login secret for the server.
    pub fn login_secret(&self) -> &LoginSecret {
        &self.login
    }
}

/// Measures this device's PBKDF2 rate and returns the count that takes about `target`,
/// clamped to the floor and the cap and rounded up to a multiple of 10,000.
pub(crate) fn calibrate_iterations(target: Duration) -> u32 {
    let mut out = [0u8; 32];
    let mut sample: u32 = 10_000;
    let elapsed = loop {
        let start = Instant::now();
        pbkdf2::pbkdf2_hmac::<Sha256>(b"calibration", b"calibration salt", sample, &mut out);
        let elapsed = start.elapsed();
        // 50 ms is long enough that timer resolution and warm-up do not matter.
        if elapsed >= Duration::from_millis(50) || sample >= MAX_ITERATIONS / 2 {
            break elapsed;
        }
        sample = sample.saturating_mul(2);
    };
    let rate = f64::from(sample) / elapsed.as_secs_f64().max(1e-9);
    let wanted = (rate * target.as_secs_f64()).ceil();
    let clamped = wanted.clamp(f64::from(MIN_ITERATIONS), f64::from(MAX_ITERATIONS)) as u32;
    clamped
        .div_ceil(10_000)
        .saturating_mul(10_000)
        .min(MAX_ITERATIONS)
}
