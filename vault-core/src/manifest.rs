//! Signed, hash-chained collection manifests (docs/spec/pages.md §6; THREATS C13–C16).
//!
//! ```text
//! tbs      = "VMAN" || u8 version (1) || u8 suite (1) || vault_id || collection_id
//!            || u64 manifest_version || prev_hash[32] || u32 key_epoch || writer[16]
//!            || u64 timestamp || vec16 collection_name
//!            || u16 share_count || shares || u32 entry_count || entries
//! share    = u8 kind (1 user, 2 group) || id[16] || key_fingerprint[32] || u32 group_epoch
//!            (sorted by kind, then id; unique; group_epoch 0 for users)
//! entry    = object_id[16] || u64 object_version || u32 key_epoch (1..=manifest key_epoch)
//!            || u8 state (1 live, 2 deleted)
//!            || u64 size || u32 page_count || digest[32] || vec16 name
//! signed   = tbs || signature[256]     (RSASSA-PSS-SHA256 by the writer over
//!                                       "vault/v1/manifest-signature\0" || tbs)
//! stored   = u32 key_epoch || seal(collection key of key_epoch, "vault/v1/manifest",
//!                 ad = "VMAN" || u8 1 || u8 1 || vault_id || collection_id || u64 version
//!                      || u32 key_epoch,
//!                 signed)
//! hash     = SHA-256("vault/v1/manifest-hash\0" || tbs)
//! ```
//!
//! Entries are sorted by object id, strictly increasing; a deleted object stays as a
//! tombstone entry, so a manifest that lost an object without a signed deletion is detected
//! by comparing it with the last one this device accepted.

use std::collections::BTreeMap;

use rand_core::CryptoRngCore;
use sha2::{Digest, Sha256};
use vault_keyring::seal::{self, Context};
use vault_keyring::{IdentityBundle, Keyring, KeyringId, SymmetricKey, SIGNATURE_LEN};

use crate::error::{integrity, Error};
use crate::ids::{CollectionId, ObjectId, VaultId};
use crate::keys::{HASH_MANIFEST, SEAL_MANIFEST, SIG_MANIFEST};
use crate::object::MAX_NAME_LEN;
use crate::wire::{Malformed, Reader, Writer};

const SEALED: Context = Context::new(SEAL_MANIFEST);
const STATE_LIVE: u8 = 1;
const STATE_DELETED: u8 = 2;
/// Most entries a manifest may hold.
pub const MAX_ENTRIES: u32 = 1_000_000;
/// Most users and groups a collection may be shared with.
pub const MAX_SHARES: u16 = 10_000;

/// Whom a collection's current key is handed to besides its owner (docs/spec/handover.md
/// §4): signed in the manifest, so a rotation re-hands the new key to exactly these and the
/// server cannot add a recipient.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Share {
    /// A user or a group.
    pub kind: ShareKind,
    /// The keyring id or group id.
    pub id: [u8; 16],
    /// The fingerprint of the key the collection key was handed to: the user's identity
    /// fingerprint, or the group's exchange key fingerprint of `group_epoch`.
    pub key_fingerprint: [u8; 32],
    /// The group epoch the current collection key was handed at (0 for a user).
    pub group_epoch: u32,
}

/// What a [`Share`] names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ShareKind {
    /// A user (keyring id).
    User,
    /// A security group (group id).
    Group,
}

/// One object of a manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The object's current version.
    pub version: u64,
    /// The collection key epoch its header and pages are sealed under.
    pub key_epoch: u32,
    /// `false` for a tombstone (a signed deletion).
    pub live: bool,
    /// Content size.
    pub size: u64,
    /// Number of pages.
    pub page_count: u32,
    /// Digest of the sealed header (which lists every page tag).
    pub digest: [u8; 32],
    /// The object's name.
    pub name: String,
}

/// A decoded, verified manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Manifest {
    /// Vault.
    pub vault: VaultId,
    /// Collection.
    pub collection: CollectionId,
    /// Monotonic version, from 1.
    pub version: u64,
    /// Hash of the previous manifest (zero for version 1).
    pub prev_hash: [u8; 32],
    /// Collection key epoch.
    pub key_epoch: u32,
    /// The keyring that signed it.
    pub writer: KeyringId,
    /// Signing time, seconds since the Unix epoch (as the writer claims).
    pub timestamp: u64,
    /// The collection's name.
    pub name: String,
    /// Whom the current collection key is handed to besides the owner, sorted.
    pub shares: Vec<Share>,
    /// The objects, by id.
    pub entries: BTreeMap<ObjectId, Entry>,
}

impl Manifest {
    /// An empty first manifest.
    pub fn first(
        vault: VaultId,
        collection: CollectionId,
        writer: KeyringId,
        name: String,
    ) -> Self {
        Self {
            vault,
            collection,
            version: 0,
            prev_hash: [0; 32],
            key_epoch: 1,
            writer,
            timestamp: 0,
            name,
            shares: Vec::new(),
            entries: BTreeMap::new(),
        }
    }

    fn tbs(&self) -> Vec<u8> {
        let mut t = Vec::with_capacity(128 + self.entries.len() * 96);
        t.extend_from_slice(b"VMAN");
        t.extend_from_slice(&[1, 1]);
        t.extend_from_slice(self.vault.as_bytes());
        t.extend_from_slice(self.collection.as_bytes());
        t.put_u64(self.version);
        t.extend_from_slice(&self.prev_hash);
        t.put_u32(self.key_epoch);
        t.extend_from_slice(self.writer.as_bytes());
        t.put_u64(self.timestamp);
        t.put_vec16(self.name.as_bytes());
        t.put_u16(self.shares.len() as u16);
        for share in &self.shares {
            t.put_u8(match share.kind {
                ShareKind::User => 1,
                ShareKind::Group => 2,
            });
            t.extend_from_slice(&share.id);
            t.extend_from_slice(&share.key_fingerprint);
            t.put_u32(share.group_epoch);
        }
        t.put_u32(self.entries.len() as u32);
        for (id, e) in &self.entries {
            t.extend_from_slice(id.as_bytes());
            t.put_u64(e.version);
            t.put_u32(e.key_epoch);
            t.put_u8(if e.live { STATE_LIVE } else { STATE_DELETED });
            t.put_u64(e.size);
            t.put_u32(e.page_count);
            t.extend_from_slice(&e.digest);
            t.put_vec16(e.name.as_bytes());
        }
        t
    }

    /// The chain hash of this manifest.
    pub fn hash(&self) -> [u8; 32] {
        Sha256::new()
            .chain_update(HASH_MANIFEST)
            .chain_update(self.tbs())
            .finalize()
            .into()
    }

    /// What the next manifest's `prev_hash` must be: this manifest's hash, or zero when
    /// this is the empty version 0 of a new collection (never stored).
    pub fn link_hash(&self) -> [u8; 32] {
        if self.version == 0 {
            [0; 32]
        } else {
            self.hash()
        }
    }

    fn outer_ad(vault: &VaultId, collection: &CollectionId, version: u64, epoch: u32) -> Vec<u8> {
        let mut ad = Vec::with_capacity(50);
        ad.extend_from_slice(b"VMAN");
        ad.extend_from_slice(&[1, 1]);
        ad.extend_from_slice(vault.as_bytes());
        ad.extend_from_slice(collection.as_bytes());
        ad.put_u64(version);
        ad.put_u32(epoch);
        ad
    }

    /// Signs with the writer's keyring and seals under the collection key of the manifest's
    /// key epoch (`ck`), prefixed with that epoch.
    pub(crate) fn seal(
        &self,
        rng: &mut impl CryptoRngCore,
        keyring: &Keyring,
        ck: &SymmetricKey,
    ) -> Vec<u8> {
        let tbs = self.tbs();
        let mut signed = tbs.clone();
        signed.extend_from_slice(&keyring.sign(rng, SIG_MANIFEST, &tbs));
        let ad = Self::outer_ad(&self.vault, &self.collection, self.version, self.key_epoch);
        let mut out = self.key_epoch.to_be_bytes().to_vec();
        out.extend_from_slice(&seal::seal(rng, ck, SEALED, &ad, &signed));
        out
    }

    /// The key epoch a stored manifest claims (unauthenticated until [`Manifest::open`]).
    pub(crate) fn stored_epoch(stored: &[u8]) -> Result<u32, Error> {
        let prefix: [u8; 4] = stored
            .get(..4)
            .and_then(|p| p.try_into().ok())
            .ok_or_else(|| integrity("stored manifest too short"))?;
        match u32::from_be_bytes(prefix) {
            0 => Err(integrity("stored manifest key epoch 0")),
            e => Ok(e),
        }
    }

    /// Opens a stored manifest of `version` for the expected vault and collection, and
    /// verifies its signature with the identity of the writer it names, looked up in
    /// `writers` (the identities this device trusts to write the collection). `ck` is the
    /// collection key of the epoch [`Manifest::stored_epoch`] read from `stored`.
    pub(crate) fn open(
        stored: &[u8],
        vault: &VaultId,
        collection: &CollectionId,
        version: u64,
        ck: &SymmetricKey,
        writers: &dyn Fn(&KeyringId) -> Option<IdentityBundle>,
    ) -> Result<Self, Error> {
        let epoch = Self::stored_epoch(stored)?;
        let ad = Self::outer_ad(vault, collection, version, epoch);
        let signed = seal::open(ck, SEALED, &ad, &stored[4..])?;
        let (manifest, tbs_len) = Self::decode(&signed).map_err(integrity)?;
        if &manifest.vault != vault
            || &manifest.collection != collection
            || manifest.version != version
            || manifest.key_epoch != epoch
        {
            return Err(integrity("manifest is of another place or version"));
        }
        let writer = writers(&manifest.writer)
            .ok_or_else(|| integrity("manifest writer is not a trusted writer"))?;
        writer
            .verify(SIG_MANIFEST, &signed[..tbs_len], &signed[tbs_len..])
            .map_err(|_| integrity("manifest signature"))?;
        Ok(manifest)
    }

    /// Decodes `tbs || signature` (the signature is not checked here). Public for the fuzz
    /// target through `internal`.
    pub(crate) fn decode(signed: &[u8]) -> Result<(Self, usize), Malformed> {
        let mut r = Reader::new(signed);
        if r.take(4)? != b"VMAN" || r.u8()? != 1 || r.u8()? != 1 {
            return Err("manifest magic, version or suite");
        }
        let vault = VaultId::from_bytes(r.array()?);
        let collection = CollectionId::from_bytes(r.array()?);
        let version = r.u64()?;
        let prev_hash = r.array()?;
        let key_epoch = r.u32()?;
        if key_epoch == 0 {
            return Err("manifest key epoch 0");
        }
        let writer = KeyringId::from_bytes(r.array()?);
        let timestamp = r.u64()?;
        let name = r.string16()?;
        let share_count = r.u16()?;
        if share_count > MAX_SHARES {
            return Err("too many shares");
        }
        let mut shares: Vec<Share> = Vec::with_capacity(usize::from(share_count));
        for _ in 0..share_count {
            let kind = match r.u8()? {
                1 => ShareKind::User,
                2 => ShareKind::Group,
                _ => return Err("unknown share kind"),
            };
            let id = r.array()?;
            let key_fingerprint = r.array()?;
            let group_epoch = r.u32()?;
            if (kind == ShareKind::User) != (group_epoch == 0) {
                return Err("share group epoch");
            }
            let share = Share {
                kind,
                id,
                key_fingerprint,
                group_epoch,
            };
            if shares.last().is_some_and(|l| (l.kind, l.id) >= (kind, id)) {
                return Err("shares not sorted and unique");
            }
            shares.push(share);
        }
        let count = r.u32()?;
        if count > MAX_ENTRIES {
            return Err("too many manifest entries");
        }
        let mut entries = BTreeMap::new();
        let mut names = std::collections::BTreeSet::new();
        let mut last: Option<ObjectId> = None;
        for _ in 0..count {
            let id = ObjectId::from_bytes(r.array()?);
            if last.is_some_and(|l| l >= id) {
                return Err("manifest entries not strictly increasing");
            }
            last = Some(id);
            let version = r.u64()?;
            let entry_epoch = r.u32()?;
            if entry_epoch == 0 || entry_epoch > key_epoch {
                return Err("entry key epoch outside 1..=manifest key epoch");
            }
            let live = match r.u8()? {
                STATE_LIVE => true,
                STATE_DELETED => false,
                _ => return Err("unknown entry state"),
            };
            let size = r.u64()?;
            let page_count = r.u32()?;
            let digest = r.array()?;
            let name = r.string16()?;
            if name.len() > MAX_NAME_LEN {
                return Err("entry name too long");
            }
            if !names.insert(name.clone()) {
                return Err("two entries with the same name");
            }
            entries.insert(
                id,
                Entry {
                    version,
                    key_epoch: entry_epoch,
                    live,
                    size,
                    page_count,
                    digest,
                    name,
                },
            );
        }
        if r.remaining() != SIGNATURE_LEN {
            return Err("manifest signature length");
        }
        let tbs_len = signed.len() - SIGNATURE_LEN;
        r.take(SIGNATURE_LEN)?;
        r.finish()?;
        Ok((
            Self {
                vault,
                collection,
                version,
                prev_hash,
                key_epoch,
                writer,
                timestamp,
                name,
                shares,
                entries,
            },
            tbs_len,
        ))
    }

    /// Checks that `self` may follow `previous` (the last manifest this device accepted):
    /// a higher version (or the same manifest again), a hash chain when it is the direct
    /// successor, and no object that `previous` listed is missing or older (THREATS C14,
    /// C15, C16).
    pub(crate) fn check_successor(&self, previous: &Manifest) -> Result<(), Error> {
        if self.version < previous.version {
            return Err(integrity("manifest rolled back"));
        }
        if self.version == previous.version {
            return if self.hash() == previous.hash() {
                Ok(())
            } else {
                Err(integrity(
                    "two different manifests of the same version (fork)",
                ))
            };
        }
        if self.version == previous.version + 1 && self.prev_hash != previous.link_hash() {
            return Err(integrity("manifest does not chain to the previous one"));
        }
        if self.key_epoch < previous.key_epoch {
            return Err(integrity("key epoch went back"));
        }
        for (id, old) in &previous.entries {
            let Some(new) = self.entries.get(id) else {
                return Err(integrity("an object vanished without a signed deletion"));
            };
            if new.version < old.version || (new.version == old.version && new != old) {
                return Err(integrity("an object went back to an older version"));
            }
        }
        Ok(())
    }
}
