//! Errors of keyring operations (one enum for the family, one variant for every integrity
//! failure, THREATS I2).

/// What went wrong in a keyring, identity or sealing operation.
///
/// Every failure to authenticate or decrypt — wrong password, wrong recovery code, a flipped
/// bit, a truncated blob, a downgraded iteration count, a forged signature — is the single
/// variant [`Error::AuthenticationFailed`]. Why it failed is logged locally at `debug` level
/// (target `vault_keyring`) and never returned, so no caller can build an oracle from it.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone, Copy)]
#[non_exhaustive]
pub enum Error {
    /// The credentials are wrong or the data was altered. Deliberately carries no detail.
    #[error("authentication failed")]
    AuthenticationFailed,
    /// The data declares a format version or algorithm suite this library does not
    /// implement (a newer writer, or a retired suite). Nothing was decrypted.
    #[error("unsupported format version or algorithm suite")]
    UnsupportedFormat,
    /// The caller asked for KDF parameters below the enforced floor (or above the cap).
    #[error("key derivation parameters outside the allowed range")]
    WeakKdfParameters,
    /// An empty password was offered when creating or changing a password.
    #[error("the password is empty")]
    EmptyPassword,
    /// Generating an RSA key pair failed (the operating system's random source failed).
    #[error("key generation failed")]
    KeyGeneration,
    /// The caller passed a value outside the documented bounds (nothing was processed).
    #[error("invalid input: {0}")]
    InvalidInput(&'static str),
}

/// Why a typed recovery code was refused. These are checked before any key derivation,
/// so a typo costs nothing and reveals nothing about the keyring.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone, Copy)]
#[non_exhaustive]
pub enum RecoveryCodeError {
    /// The code has too few or too many characters (hyphens and spaces do not count).
    #[error("a recovery code has 56 characters; this one has {0}")]
    Length(usize),
    /// A character outside the recovery-code alphabet.
    #[error("the recovery code contains a character that is not in its alphabet")]
    Character,
    /// Every character is valid but the checksum does not match: a typo.
    #[error("the recovery code has a typo (checksum mismatch)")]
    Checksum,
}

/// Logs the local-only reason of an integrity failure and returns the generic error.
pub(crate) fn auth_failed(reason: &'static str) -> Error {
    tracing::debug!(target: "vault_keyring", reason, "authentication failed");
    Error::AuthenticationFailed
}
