//! # vault-keyring
//!
//! The keyring of the end-to-end encrypted vault: a user's password unlocks a sealed blob
//! holding three AES-256 keys, an RSA-2048 signing pair, a P-256 exchange pair and an
//! optional RSA-4096 exchange pair. A recovery code opens the same blob through a second
//! wrapping. The public half is published as a self-signed [`IdentityBundle`] with a
//! [`Fingerprint`] people compare out of band.
//!
//! The byte formats are specified in `docs/spec/` (conventions, seal, keyring) and pinned by
//! the vectors in `vectors/keyring/`.
//!
//! ```
//! use rand_core::OsRng;
//! use vault_keyring::{KdfParams, Keyring, KeyringOptions, Password, PasswordKeys, SealedKeyring};
//!
//! // Create: calibrate PBKDF2 to this device (never below 600,000 iterations), generate the
//! // keys, seal them. Show the recovery code to the user once.
//! let password = Password::from("correct horse battery staple");
//! let params = KdfParams::calibrate(vault_keyring::DEFAULT_TARGET);
//! let keys = PasswordKeys::derive(&password, &params)?;
//! let keyring = Keyring::generate(&mut OsRng, &KeyringOptions::new())?;
//! let (sealed, recovery_code) = SealedKeyring::seal(&mut OsRng, &keyring, &keys);
//! let stored: Vec<u8> = sealed.to_bytes();
//!
//! // Later, on any device: decode, derive, unlock.
//! let sealed = SealedKeyring::from_bytes(&stored)?;
//! let (unlocked, keys) = sealed.unlock_with_password(&password)?;
//! assert_eq!(unlocked.id(), keyring.id());
//! # let _ = (recovery_code, keys);
//! # Ok::<(), vault_keyring::Error>(())
//! ```
//!
//! Every failure to authenticate — wrong password, wrong recovery code, altered or truncated
//! bytes, a forged signature — is the one [`Error::AuthenticationFailed`] (THREATS I2).

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod envelope;
mod error;
pub mod exchange;
mod identity;
mod kdf;
mod keyring;
mod keys;
mod recovery;
pub mod seal;
mod secret;
mod wire;

#[cfg(feature = "danger-insecure-test-kdf")]
pub mod danger;

pub use error::{Error, RecoveryCodeError};
pub use identity::{
    ExchangePublicKey, Fingerprint, IdentityBundle, KeyringId, P256_POINT_LEN,
    RSA_EXCHANGE_KEY_BITS, SIGNATURE_LEN, SIGNING_KEY_BITS,
};
pub use kdf::{
    KdfParams, KdfPolicy, LoginSecret, PasswordKeys, DEFAULT_TARGET, MAX_ITERATIONS,
    MIN_ITERATIONS, SALT_LEN,
};
pub use keyring::{KeyPurpose, Keyring, KeyringOptions, SealedKeyring, FORMAT_VERSION, SUITE};
pub use recovery::{RecoveryCode, RecoverySecret, RECOVERY_CODE_CHARS};
pub use secret::{Password, SymmetricKey};

/// Re-exports of the public-key crates whose types appear in this API, so callers use the
/// same versions.
pub mod reexports {
    pub use p256;
    pub use rand_core;
    pub use rsa;
}

/// Building blocks exposed for the test suites (Wycheproof, known-answer vectors) and the
/// fuzz targets. Not part of the stable API.
#[doc(hidden)]
pub mod internal {
    pub use crate::identity::{decode_rsa_public_strict, verify_pss_public};
}
