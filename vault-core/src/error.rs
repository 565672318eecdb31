//! Errors of vault operations.

/// What went wrong in a vault operation.
///
/// Every failure to authenticate — a flipped bit, a truncated, dropped, duplicated,
/// reordered, spliced, replayed or injected page, header or manifest, a rolled-back or
/// forked manifest, an object lost without a signed deletion, a signature that does not
/// verify — is the one variant [`Error::Integrity`], which carries no detail (THREATS I2).
/// The reason is logged locally at `debug` level (target `vault_core`).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The data failed an integrity check. No plaintext of the failed unit was released.
    #[error("integrity check failed: the stored data was altered or is not what was written")]
    Integrity,
    /// The data declares a format version or suite this library does not implement.
    #[error("unsupported format version or algorithm suite")]
    UnsupportedFormat,
    /// No such collection or object.
    #[error("not found")]
    NotFound,
    /// Another writer changed the collection since this handle read it (the manifest
    /// compare-and-swap failed). Re-open the collection and retry.
    #[error("the collection was changed by another writer")]
    Conflict,
    /// The caller passed an argument outside what the format allows.
    #[error("invalid input: {0}")]
    InvalidInput(&'static str),
    /// The storage backend failed (disk, database). Nothing is known to be corrupt.
    #[error("storage backend: {0}")]
    Store(#[from] crate::store::StoreError),
    /// An I/O error of a caller's reader or writer while streaming.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// A keyring operation failed.
    #[error("keyring: {0}")]
    Keyring(vault_keyring::Error),
}

impl From<vault_keyring::Error> for Error {
    fn from(e: vault_keyring::Error) -> Self {
        match e {
            vault_keyring::Error::AuthenticationFailed => Error::Integrity,
            vault_keyring::Error::UnsupportedFormat => Error::UnsupportedFormat,
            other => Error::Keyring(other),
        }
    }
}

/// Logs the local-only reason of an integrity failure and returns the generic error.
pub(crate) fn integrity(reason: &'static str) -> Error {
    tracing::debug!(target: "vault_core", reason, "integrity check failed");
    Error::Integrity
}
