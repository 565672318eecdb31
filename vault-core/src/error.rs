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
    /// The identity bundle offered for a user is not the one this device pinned: their key
    /// changed, or someone (the server) substitutes a key (THREATS C2, C3). Nothing was
    /// handed to it. Show both fingerprints (or the safety numbers) to the user; only
    /// [`crate::Vault::accept_key_change`] clears it.
    #[error("the identity key of {id} changed (pinned {pinned}, offered {offered}): compare fingerprints before accepting")]
    KeyChanged {
        /// Whose key.
        id: vault_keyring::KeyringId,
        /// The fingerprint pinned on this device.
        pinned: vault_keyring::Fingerprint,
        /// The fingerprint of the bundle offered now.
        offered: vault_keyring::Fingerprint,
    },
    /// No identity is pinned on this device for this keyring id: fetch it
    /// ([`crate::Vault::fetch_identity`]) and compare its fingerprint first.
    #[error("no pinned identity for {0}")]
    UnknownIdentity(vault_keyring::KeyringId),
    /// This vault holds no key that opens the collection or group: it was never shared with
    /// this user, access was removed, or the store withholds the envelope.
    #[error("no key for this collection or group: not shared with this user")]
    NoAccess,
    /// A group this collection is shared with removed a member, and only the collection's
    /// owner can rotate its key; until the owner has, writes are refused so that the removed
    /// member cannot read them (THREATS C18).
    #[error("the collection key must be rotated by its owner before new writes")]
    RotationPending,
    /// The operation needs a group admin.
    #[error("only a group admin can change the group")]
    NotAdmin,
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
