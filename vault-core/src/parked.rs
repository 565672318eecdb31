//! Commits parked on the device while the store is unreachable (docs/spec/client.md §8.6).
//!
//! When a store keeps writes made offline ([`Store::keeps_offline_writes`], the
//! `CachedStore`'s outbox) and the manifest swap of a commit fails because the store is
//! unreachable, the vault does not throw the batch away: it **parks** its changes in the
//! device's local state, sealed under the keyring's local-state key, and shows them in the
//! collection's listing. The next commit of the collection (or [`Collection::push`],
//! [`Vault::push_queued`]) merges them onto the store's current manifest like any concurrent
//! write (pages.md §6.1) and commits them; only then is the parked record removed.
//!
//! A parked change is never signed into a manifest the store has not taken: the device's
//! high-water mark stays at the last manifest it read or committed, so nothing about the
//! rollback and fork checks changes.

use std::collections::BTreeMap;

use rand_core::OsRng;
use vault_keyring::seal::{self, Context};
use vault_keyring::KeyPurpose;

use crate::error::{integrity, Error};
use crate::ids::{CollectionId, ObjectId, VaultId};
use crate::manifest::Entry;
use crate::store::{ObjectAddress, Store};
use crate::vault::{Collection, Vault};
use crate::wire::{Reader, Writer};

/// Local-state namespace of parked commits (key: owner ‖ collection).
const NS_PARKED: u8 = 4;
const LOCAL_PARKED: Context = Context::new("vault/v1/local/parked");
const PARKED_FORMAT: u8 = 1;

/// The changes of a collection parked on this device.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Parked {
    /// Object → its entry in the manifest the change was made on (`None`: a new object),
    /// and this device's entry.
    pub(crate) entries: BTreeMap<ObjectId, (Option<Entry>, Entry)>,
    /// Name → object of the parked entries.
    pub(crate) names: BTreeMap<String, ObjectId>,
    /// Object versions the parked changes replaced: reclaimed once they are committed.
    pub(crate) superseded: Vec<ObjectAddress>,
}

impl Parked {
    pub(crate) fn new(
        entries: BTreeMap<ObjectId, (Option<Entry>, Entry)>,
        superseded: Vec<ObjectAddress>,
    ) -> Self {
        let names = entries
            .iter()
            .map(|(id, (_, e))| (e.name.clone(), *id))
            .collect();
        Self {
            entries,
            names,
            superseded,
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The parked entry of `name`.
    pub(crate) fn find(&self, name: &str) -> Option<(ObjectId, &Entry)> {
        let id = self.names.get(name)?;
        self.entries.get(id).map(|(_, e)| (*id, e))
    }
}

/// A collection with changes parked on this device, waiting for the store
/// ([`Vault::queued`]).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Queued {
    /// The vault the collection belongs to (this one, or the sharer's).
    pub owner: VaultId,
    /// The collection.
    pub collection: CollectionId,
    /// Its name (from its manifest).
    pub name: String,
    /// How many objects the parked changes write or delete.
    pub changes: usize,
}

fn put_entry(out: &mut Vec<u8>, e: &Entry) {
    out.put_u64(e.version);
    out.put_u32(e.key_epoch);
    out.put_u8(u8::from(e.live));
    out.put_u64(e.size);
    out.put_u32(e.page_count);
    out.extend_from_slice(&e.digest);
    out.put_vec16(e.name.as_bytes());
}

fn read_entry(r: &mut Reader<'_>) -> Result<Entry, &'static str> {
    Ok(Entry {
        version: r.u64()?,
        key_epoch: r.u32()?,
        live: match r.u8()? {
            0 => false,
            1 => true,
            _ => return Err("entry state"),
        },
        size: r.u64()?,
        page_count: r.u32()?,
        digest: r.array()?,
        name: r.string16()?,
    })
}

/// `u8 1 ‖ owner ‖ collection ‖ vec16 name ‖ u32 n ‖ n × (object ‖ u8 has_before ‖
/// [entry] ‖ entry) ‖ u32 m ‖ m × (object ‖ u64 version)`; an entry is `u64 version ‖ u32
/// key_epoch ‖ u8 live ‖ u64 size ‖ u32 page_count ‖ digest[32] ‖ vec16 name`.
fn encode(owner: &VaultId, collection: &CollectionId, name: &str, parked: &Parked) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + parked.entries.len() * 160);
    out.put_u8(PARKED_FORMAT);
    out.extend_from_slice(owner.as_bytes());
    out.extend_from_slice(collection.as_bytes());
    out.put_vec16(name.as_bytes());
    out.put_u32(parked.entries.len() as u32);
    for (id, (before, ours)) in &parked.entries {
        out.extend_from_slice(id.as_bytes());
        match before {
            Some(b) => {
                out.put_u8(1);
                put_entry(&mut out, b);
            }
            None => out.put_u8(0),
        }
        put_entry(&mut out, ours);
    }
    out.put_u32(parked.superseded.len() as u32);
    for a in &parked.superseded {
        out.extend_from_slice(a.object.as_bytes());
        out.put_u64(a.version);
    }
    out
}

fn decode(
    plain: &[u8],
    owner: &VaultId,
    collection: &CollectionId,
) -> Result<(String, Parked), &'static str> {
    let mut r = Reader::new(plain);
    if r.u8()? != PARKED_FORMAT {
        return Err("parked record format");
    }
    if r.array::<16>()? != *owner.as_bytes() || r.array::<16>()? != *collection.as_bytes() {
        return Err("parked record of another collection");
    }
    let name = r.string16()?;
    let n = r.u32()?;
    let mut entries = BTreeMap::new();
    for _ in 0..n {
        let id = ObjectId::from_bytes(r.array()?);
        let before = match r.u8()? {
            0 => None,
            1 => Some(read_entry(&mut r)?),
            _ => return Err("parked before flag"),
        };
        let ours = read_entry(&mut r)?;
        entries.insert(id, (before, ours));
    }
    let m = r.u32()?;
    let mut superseded = Vec::new();
    for _ in 0..m {
        superseded.push(ObjectAddress {
            collection: *collection,
            object: ObjectId::from_bytes(r.array()?),
            version: r.u64()?,
        });
    }
    r.finish()?;
    Ok((name, Parked::new(entries, superseded)))
}

/// Decodes a record for the owner and collection it names (the fuzz target's entry).
pub(crate) fn decode_any(plain: &[u8]) -> Option<Parked> {
    let owner = VaultId::from_bytes(plain.get(1..17)?.try_into().ok()?);
    let collection = CollectionId::from_bytes(plain.get(17..33)?.try_into().ok()?);
    decode(plain, &owner, &collection).ok().map(|(_, p)| p)
}

fn state_key(owner: &VaultId, collection: &CollectionId) -> [u8; 32] {
    let mut k = [0u8; 32];
    k[..16].copy_from_slice(owner.as_bytes());
    k[16..].copy_from_slice(collection.as_bytes());
    k
}

fn ad(owner: &VaultId, collection: &CollectionId) -> Vec<u8> {
    state_key(owner, collection).to_vec()
}

impl<S: Store> Vault<S> {
    fn read_parked(
        &self,
        owner: &VaultId,
        collection: &CollectionId,
    ) -> Result<Option<(String, Parked)>, Error> {
        let Some(record) = self
            .state
            .get_local(NS_PARKED, &state_key(owner, collection))?
        else {
            return Ok(None);
        };
        let plain = seal::open(
            self.keyring.key(KeyPurpose::LocalState),
            LOCAL_PARKED,
            &ad(owner, collection),
            &record,
        )?;
        let parsed = decode(&plain, owner, collection).map_err(|reason| {
            tracing::debug!(target: "vault_core", reason, "parked record malformed");
            integrity("parked record")
        })?;
        Ok(Some(parsed))
    }

    /// The changes parked for a collection (none: empty).
    pub(crate) fn load_parked(
        &self,
        owner: &VaultId,
        collection: &CollectionId,
    ) -> Result<Parked, Error> {
        Ok(self
            .read_parked(owner, collection)?
            .map(|(_, p)| p)
            .unwrap_or_default())
    }

    /// Keeps `parked` (durably) for the collection; an empty one removes the record.
    pub(crate) fn save_parked(
        &self,
        owner: &VaultId,
        collection: &CollectionId,
        name: &str,
        parked: &Parked,
    ) -> Result<(), Error> {
        let key = state_key(owner, collection);
        if parked.is_empty() {
            return self.state.remove_local(NS_PARKED, &key);
        }
        let plain = zeroize::Zeroizing::new(encode(owner, collection, name, parked));
        let record = seal::seal(
            &mut OsRng,
            self.keyring.key(KeyPurpose::LocalState),
            LOCAL_PARKED,
            &ad(owner, collection),
            &plain,
        );
        self.state.put_local(NS_PARKED, &key, record)
    }

    /// The collections with changes parked on this device while the store was unreachable
    /// (docs/spec/client.md §8.6).
    pub fn queued(&self) -> Result<Vec<Queued>, Error> {
        let mut out = Vec::new();
        for key in self.state.list_local(NS_PARKED)? {
            let Ok(key) = <[u8; 32]>::try_from(key.as_slice()) else {
                return Err(integrity("parked record key"));
            };
            let mut owner = [0u8; 16];
            owner.copy_from_slice(&key[..16]);
            let mut collection = [0u8; 16];
            collection.copy_from_slice(&key[16..]);
            let (owner, collection) = (
                VaultId::from_bytes(owner),
                CollectionId::from_bytes(collection),
            );
            if let Some((name, parked)) = self.read_parked(&owner, &collection)? {
                out.push(Queued {
                    owner,
                    collection,
                    name,
                    changes: parked.entries.len(),
                });
            }
        }
        Ok(out)
    }

    /// Commits every parked change (merging with what other writers committed since) and
    /// returns how many collections were pushed. A collection still unreachable stays
    /// parked (not an error). A collection that fails otherwise (access removed, tampering
    /// detected) keeps its changes parked and does not hold up the others: every collection
    /// is tried, then the first such error is returned.
    pub fn push_queued(&self) -> Result<usize, Error> {
        let mut pushed = 0;
        let mut first_error = None;
        for q in self.queued()? {
            let result = if q.owner == self.id {
                self.collection(&q.name)
            } else {
                self.shared_collection(q.owner, q.collection)
            }
            .and_then(|mut c| c.push());
            match result {
                Ok(true) => pushed += 1,
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(
                        target: "vault_core",
                        error = %e,
                        "parked changes of a collection could not be pushed"
                    );
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(pushed),
        }
    }
}

impl<S: Store> Collection<'_, S> {
    /// How many objects this device wrote or deleted in the collection while the store was
    /// unreachable, not yet committed to it (they are listed and readable here already).
    pub fn queued(&self) -> usize {
        self.parked.entries.len()
    }

    /// Commits the changes parked on this device (see [`Collection::queued`]), merging
    /// them with what other writers committed meanwhile (nothing is lost: pages.md §6.1).
    /// `true` when nothing is left parked; `false` when the store is still unreachable.
    pub fn push(&mut self) -> Result<bool, Error> {
        if self.parked.is_empty() {
            return Ok(true);
        }
        self.batch().commit()?;
        Ok(self.parked.is_empty())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn entry(version: u64, name: &str, live: bool) -> Entry {
        Entry {
            version,
            key_epoch: 1,
            live,
            size: 5,
            page_count: 1,
            digest: [7; 32],
            name: name.to_owned(),
        }
    }

    #[test]
    fn parked_records_round_trip_and_refuse_other_collections() {
        let owner = VaultId::from_bytes([1; 16]);
        let c = CollectionId::from_bytes([2; 16]);
        let mut entries = BTreeMap::new();
        entries.insert(ObjectId::from_bytes([3; 16]), (None, entry(1, "new", true)));
        entries.insert(
            ObjectId::from_bytes([4; 16]),
            (Some(entry(9, "old", true)), entry(20, "old", false)),
        );
        let parked = Parked::new(
            entries,
            vec![ObjectAddress {
                collection: c,
                object: ObjectId::from_bytes([4; 16]),
                version: 9,
            }],
        );
        let bytes = encode(&owner, &c, "docs", &parked);
        let (name, back) = decode(&bytes, &owner, &c).unwrap();
        assert_eq!((name.as_str(), &back), ("docs", &parked));
        assert_eq!(back.find("new").unwrap().1.version, 1);
        assert!(decode(&bytes, &owner, &CollectionId::from_bytes([5; 16])).is_err());
        for cut in 0..bytes.len() {
            assert!(decode(&bytes[..cut], &owner, &c).is_err());
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(decode(&longer, &owner, &c).is_err());
    }
}
