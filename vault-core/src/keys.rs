//! Keys of the data layer and every label that separates them (THREATS C21;
//! docs/spec/pages.md §1).

use core::fmt;

use rand_core::CryptoRngCore;
use vault_keyring::SymmetricKey;
use zeroize::{ZeroizeOnDrop, Zeroizing};

use crate::error::{integrity, Error};

/// Seal context: a collection key wrapped under the owner's keyring key.
pub(crate) const SEAL_COLLECTION_KEY: &str = "vault/v1/collection-key";
/// Seal context: an object header under the collection key.
pub(crate) const SEAL_OBJECT_HEADER: &str = "vault/v1/object-header";
/// Seal context: a manifest under the collection key.
pub(crate) const SEAL_MANIFEST: &str = "vault/v1/manifest";
/// Signature domain of manifests.
pub(crate) const SIG_MANIFEST: &[u8] = b"vault/v1/manifest-signature\0";
/// Hash domain of the manifest chain.
pub(crate) const HASH_MANIFEST: &[u8] = b"vault/v1/manifest-hash\0";
/// Hash domain of an object digest (sealed header and page tags).
pub(crate) const HASH_OBJECT: &[u8] = b"vault/v1/object-digest\0";
/// Signature domain of group rosters (docs/spec/groups.md §1).
pub(crate) const SIG_ROSTER: &[u8] = b"vault/v1/roster-signature\0";
/// Hash domain of the group roster chain (docs/spec/groups.md §1).
pub(crate) const HASH_ROSTER: &[u8] = b"vault/v1/roster-hash\0";

/// A 32-byte symmetric key from decrypted bytes (a collection key, a group key): refuses
/// another length and the all-zero key with the one integrity error, and leaves no copy of
/// the bytes on the stack.
pub(crate) fn symmetric_key(bytes: &[u8], what: &'static str) -> Result<SymmetricKey, Error> {
    let mut key = Zeroizing::new([0u8; 32]);
    if bytes.len() != key.len() {
        return Err(integrity(what));
    }
    key.copy_from_slice(bytes);
    SymmetricKey::from_bytes(*key).ok_or_else(|| integrity(what))
}

/// The random key of one object version; every page key derives from it.
#[derive(ZeroizeOnDrop)]
pub struct DataKey([u8; 32]);

impl DataKey {
    /// A fresh key.
    pub fn generate(rng: &mut impl CryptoRngCore) -> Self {
        let mut k = [0u8; 32];
        rng.fill_bytes(&mut k);
        Self(k)
    }

    /// A key from its bytes (object headers, vectors).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The bytes.
    pub fn expose_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DataKey([redacted])")
    }
}
