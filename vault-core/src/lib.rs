//! # vault-core
//!
//! The data half of the end-to-end encrypted vault: objects of any size stored as
//! zstd-compressed, AES-256-CTR-encrypted, HMAC-SHA256-sealed pages under keys unique to the
//! object; collections with their own keys and a signed, hash-chained manifest; one
//! [`Store`] trait with an in-memory store and the embedded default, [`SledStore`].
//!
//! Everything that leaves this library is an opaque sealed page, header or manifest; names,
//! sizes and times live inside them. The byte formats are in `docs/spec/pages.md`.
//!
//! ```
//! use vault_core::{LocalState, MemoryStore, Vault};
//! use vault_keyring::{Keyring, KeyringOptions};
//!
//! let keyring = Keyring::generate(&mut rand_core::OsRng, &KeyringOptions::new())?;
//! let vault = Vault::open(MemoryStore::new(), keyring, LocalState::in_memory());
//! let mut notes = vault.collection("notes")?;
//! notes.put("2026/11/22.txt", b"meeting at noon")?;
//! assert_eq!(notes.get("2026/11/22.txt")?, b"meeting at noon");
//! assert_eq!(notes.list().len(), 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Every integrity failure is the one [`Error::Integrity`]; no plaintext of a page that
//! failed is released (THREATS I1, I2).

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod cache;
mod error;
mod group;
mod ids;
mod keys;
mod manifest;
mod object;
mod page;
mod parked;
#[cfg(feature = "remote")]
pub mod remote;
mod roster;
mod share;
mod store;
mod vault;
mod wire;

pub use cache::{
    is_unavailable, CacheOptions, CachedStore, CatchUp, Change, ChangeFeed, ChangePage, ScopeKind,
    CATCH_UP_PAGE, MAX_CATCH_UP_ROUNDS,
};
pub use error::Error;
pub use group::{group_key_fingerprint, Group};
pub use ids::{CollectionId, GroupId, ObjectId, VaultId};
pub use keys::DataKey;
pub use manifest::{Entry, Manifest, Share, ShareKind, MAX_SHARES};
pub use object::{
    ObjectMeta, ObjectReader, MAX_CONTENT_TYPE_LEN, MAX_NAME_LEN, MAX_RECORDS, MAX_RECORD_KEY_LEN,
};
pub use page::{Compression, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, MIN_PAGE_SIZE};
pub use parked::Queued;
pub use roster::{Member, Role, Roster, RosterUpdate, MAX_MEMBERS};
pub use share::{Incoming, Pinned};
pub use store::{
    MemoryStore, ObjectAddress, PageAddress, RecordKind, SledStore, Store, StoreError, Swap,
    Verified,
};
pub use vault::{
    Batch, Collection, Listing, LocalState, PutOptions, Vault, MAX_COLLECTION_NAME_LEN,
    MERGE_ATTEMPTS,
};

/// Building blocks for the vectors, the tests and the fuzz targets. Not a stable API.
#[doc(hidden)]
pub mod internal {
    pub use crate::page::{open_page, padded_len, seal_page, PagePosition};

    /// Decodes a signed manifest's bytes (`tbs || signature`) without verifying anything;
    /// `Some(entry count)` if it is well formed. For the fuzz targets.
    pub fn decode_manifest(signed: &[u8]) -> Option<usize> {
        crate::manifest::Manifest::decode(signed)
            .ok()
            .map(|(m, _)| m.entries.len())
    }

    /// Signs and seals a manifest (vectors and tests; the vault does this on commit).
    pub fn seal_manifest(
        rng: &mut impl rand_core::CryptoRngCore,
        manifest: &crate::Manifest,
        writer: &vault_keyring::Keyring,
        collection_key: &vault_keyring::SymmetricKey,
    ) -> Vec<u8> {
        manifest.seal(rng, writer, collection_key)
    }

    /// Opens and verifies a stored manifest expected at (`vault`, `collection`, `version`),
    /// signed by `writer`.
    pub fn open_manifest(
        sealed: &[u8],
        vault: &crate::VaultId,
        collection: &crate::CollectionId,
        version: u64,
        collection_key: &vault_keyring::SymmetricKey,
        writer: &vault_keyring::IdentityBundle,
    ) -> Result<crate::Manifest, crate::Error> {
        crate::manifest::Manifest::open(sealed, vault, collection, version, collection_key, &|id| {
            (*id == writer.keyring_id()).then(|| writer.clone())
        })
    }

    /// The successor rule of docs/spec/pages.md §6: may `next` follow `previous`?
    pub fn check_successor(
        next: &crate::Manifest,
        previous: &crate::Manifest,
    ) -> Result<(), crate::Error> {
        next.check_successor(previous)
    }

    /// Decodes a signed roster (`tbs || signature`) without verifying the signature;
    /// `Some(member count)` if it is well formed. For the fuzz target.
    pub fn decode_roster(signed: &[u8]) -> Option<usize> {
        crate::roster::Roster::decode_unverified(signed)
    }

    /// Decodes the plaintext of a parked-commit record (docs/spec/client.md §8.6) for the
    /// owner and collection it names itself; `Some(change count)` if it is well formed.
    /// For the fuzz target.
    pub fn decode_parked(plain: &[u8]) -> Option<usize> {
        crate::parked::decode_any(plain).map(|p| p.entries.len())
    }

    /// Decodes an object header's plaintext (including a record index) without opening
    /// anything; `Some(page count)` if it is well formed. For the fuzz targets.
    pub fn decode_object_header(plain: &[u8]) -> Option<usize> {
        crate::object::Header::decode(plain)
            .ok()
            .map(|h| h.tags.len())
    }
}
