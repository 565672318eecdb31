//! The simple layer: open a vault with an unlocked keyring, open collections by name, put,
//! get, list and delete objects (docs/spec/pages.md §8).

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use rand_core::OsRng;
use sha2::Sha256;
use vault_keyring::seal::{self, Context};
use vault_keyring::{IdentityBundle, KeyPurpose, Keyring, KeyringId, SymmetricKey};

use crate::error::{integrity, Error};
use crate::ids::{CollectionId, ObjectId, VaultId};
use crate::keys::SEAL_COLLECTION_KEY;
use crate::manifest::{Entry, Manifest};
use crate::object::{
    io_to_vault_error, load_header, IndexEntry, ObjectMeta, ObjectPlace, ObjectReader,
    ObjectWriter, MAX_RECORDS, MAX_RECORD_KEY_LEN,
};
use crate::page::{Compression, DEFAULT_PAGE_SIZE};
use crate::parked::Parked;
use crate::store::{ObjectAddress, Store, StoreError, Swap, Verified};

const COLLECTION_KEY: Context = Context::new(SEAL_COLLECTION_KEY);
const LOCAL_HIGH_WATER: Context = Context::new("vault/v1/local/high-water");
const LABEL_COLLECTION_ID: &[u8] = b"vault/v1/collection-id\0";
/// Longest collection name in bytes.
pub const MAX_COLLECTION_NAME_LEN: usize = 1024;

pub(crate) fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Per-device memory of the last manifest accepted for each collection: the high-water
/// mark that refuses rollback, forks and silent deletion (THREATS C14–C16); and the pins,
/// accepted rosters and group secrets of sharing (docs/spec/handover.md §3, §6). Records are
/// sealed under the keyring's local-state key by the vault.
pub struct LocalState {
    high_water: Records,
    /// Keyed by namespace byte || key.
    sharing: Records,
}

type RecordMap = BTreeMap<Vec<u8>, Vec<u8>>;

/// One table of local records: a sled tree, or a map in memory.
enum Records {
    Sled(sled::Tree),
    Memory(Mutex<RecordMap>),
}

fn local_err(e: sled::Error) -> Error {
    StoreError::new(format!("local state: {e}")).into()
}

impl Records {
    fn memory() -> Self {
        Records::Memory(Mutex::new(BTreeMap::new()))
    }

    fn map(m: &Mutex<RecordMap>) -> Result<std::sync::MutexGuard<'_, RecordMap>, Error> {
        m.lock()
            .map_err(|_| StoreError::new("local state lock poisoned").into())
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, Error> {
        match self {
            Records::Sled(t) => Ok(t.get(key).map_err(local_err)?.map(|v| v.to_vec())),
            Records::Memory(m) => Ok(Self::map(m)?.get(key).cloned()),
        }
    }

    /// Stores durably (the sled tree is flushed before this returns).
    fn put(&self, key: &[u8], value: Vec<u8>) -> Result<(), Error> {
        match self {
            Records::Sled(t) => {
                t.insert(key, value).map_err(local_err)?;
                t.flush().map_err(local_err)?;
            }
            Records::Memory(m) => {
                Self::map(m)?.insert(key.to_vec(), value);
            }
        }
        Ok(())
    }

    /// Removes durably.
    fn remove(&self, key: &[u8]) -> Result<(), Error> {
        match self {
            Records::Sled(t) => {
                t.remove(key).map_err(local_err)?;
                t.flush().map_err(local_err)?;
            }
            Records::Memory(m) => {
                Self::map(m)?.remove(key);
            }
        }
        Ok(())
    }

    /// The keys starting with `prefix`, without it.
    fn keys_under(&self, prefix: &[u8]) -> Result<Vec<Vec<u8>>, Error> {
        match self {
            Records::Sled(t) => t
                .scan_prefix(prefix)
                .keys()
                .map(|k| k.map(|k| k[prefix.len()..].to_vec()).map_err(local_err))
                .collect(),
            Records::Memory(m) => Ok(Self::map(m)?
                .keys()
                .filter(|k| k.starts_with(prefix))
                .map(|k| k[prefix.len()..].to_vec())
                .collect()),
        }
    }
}

impl LocalState {
    /// State kept in memory only (forgotten when the process ends).
    pub fn in_memory() -> Self {
        Self {
            high_water: Records::memory(),
            sharing: Records::memory(),
        }
    }

    /// State kept in a sled database in `path` (a directory of this device only).
    pub fn open(path: impl AsRef<Path>) -> Result<Self, Error> {
        let db =
            crate::store::open_sled(&sled::Config::new().path(path.as_ref())).map_err(local_err)?;
        Ok(Self {
            high_water: Records::Sled(db.open_tree("high-water").map_err(local_err)?),
            sharing: Records::Sled(db.open_tree("sharing").map_err(local_err)?),
        })
    }

    fn local_key(namespace: u8, key: &[u8]) -> Vec<u8> {
        let mut k = Vec::with_capacity(1 + key.len());
        k.push(namespace);
        k.extend_from_slice(key);
        k
    }

    pub(crate) fn get_local(&self, namespace: u8, key: &[u8]) -> Result<Option<Vec<u8>>, Error> {
        self.sharing.get(&Self::local_key(namespace, key))
    }

    pub(crate) fn put_local(&self, namespace: u8, key: &[u8], value: Vec<u8>) -> Result<(), Error> {
        self.sharing.put(&Self::local_key(namespace, key), value)
    }

    pub(crate) fn remove_local(&self, namespace: u8, key: &[u8]) -> Result<(), Error> {
        self.sharing.remove(&Self::local_key(namespace, key))
    }

    /// The keys (without the namespace byte) of a namespace.
    pub(crate) fn list_local(&self, namespace: u8) -> Result<Vec<Vec<u8>>, Error> {
        self.sharing.keys_under(&[namespace])
    }

    fn get(&self, collection: &CollectionId) -> Result<Option<Vec<u8>>, Error> {
        self.high_water.get(collection.as_bytes())
    }

    fn put(&self, collection: &CollectionId, record: Vec<u8>) -> Result<(), Error> {
        self.high_water.put(collection.as_bytes(), record)
    }
}

/// A vault: the collections of one keyring in one store.
pub struct Vault<S: Store> {
    pub(crate) store: S,
    pub(crate) keyring: Keyring,
    pub(crate) identity: IdentityBundle,
    pub(crate) id: VaultId,
    pub(crate) state: LocalState,
    writers: Mutex<BTreeMap<KeyringId, IdentityBundle>>,
    /// The rosters this process verified (the local state holds them sealed; this saves
    /// decoding and re-verifying them on every write to a group-shared collection).
    pub(crate) rosters: Mutex<BTreeMap<crate::ids::GroupId, crate::roster::Roster>>,
    /// Hand keys to users by RSA-4096 OAEP when they publish such a key (off by default).
    pub(crate) rsa_handover: std::sync::atomic::AtomicBool,
}

/// Options of a write.
#[derive(Clone, Copy, Debug)]
pub struct PutOptions<'a> {
    /// Content bytes per page (a power of two from 4 KiB to 16 MiB; default 1 MiB).
    pub page_size: u32,
    /// Compression (default zstd level 3).
    pub compression: Compression,
    /// MIME type, stored in the sealed header.
    pub content_type: &'a str,
}

impl PutOptions<'_> {
    /// Options for record tables: 64 KiB pages, so a lookup opens 64 KiB, not 1 MiB.
    pub fn records() -> Self {
        Self {
            page_size: 64 * 1024,
            ..Self::default()
        }
    }
}

impl Default for PutOptions<'_> {
    fn default() -> Self {
        Self {
            page_size: DEFAULT_PAGE_SIZE,
            compression: Compression::default(),
            content_type: "",
        }
    }
}

/// One object as the manifest lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listing {
    /// Name.
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// Version (raised by every overwrite).
    pub version: u64,
    /// Object id.
    pub id: ObjectId,
}

impl<S: Store> Vault<S> {
    /// Opens the vault of `keyring` in `store`, remembering accepted manifests in `state`.
    /// The vault id is the keyring id.
    pub fn open(store: S, keyring: Keyring, state: LocalState) -> Self {
        let id = VaultId::from_bytes(*keyring.id().as_bytes());
        let identity = keyring.identity_bundle(&mut OsRng);
        let mut writers = BTreeMap::new();
        writers.insert(keyring.id(), identity.clone());
        Self {
            store,
            keyring,
            identity,
            id,
            state,
            writers: Mutex::new(writers),
            rsa_handover: std::sync::atomic::AtomicBool::new(false),
            rosters: Mutex::new(BTreeMap::new()),
        }
    }

    /// Closes the vault and gives back the store, the keyring and the local state (e.g. to
    /// reopen the same sled directory).
    pub fn into_parts(self) -> (S, Keyring, LocalState) {
        (self.store, self.keyring, self.state)
    }

    /// The vault id.
    pub fn id(&self) -> VaultId {
        self.id
    }

    /// The store (e.g. to inspect what a server would hold).
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The keyring.
    pub fn keyring(&self) -> &Keyring {
        &self.keyring
    }

    /// This vault owner's identity bundle.
    pub fn identity(&self) -> &IdentityBundle {
        &self.identity
    }

    /// The collection id of `name`: HMAC-SHA256 under the keyring's name-index key, so the
    /// store learns nothing of the name (THREATS C12).
    pub fn collection_id(&self, name: &str) -> CollectionId {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(
            self.keyring.key(KeyPurpose::NameIndex).expose_bytes(),
        )
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
        mac.update(LABEL_COLLECTION_ID);
        mac.update(self.id.as_bytes());
        mac.update(name.as_bytes());
        let out = mac.finalize().into_bytes();
        let mut id = [0u8; 16];
        id.copy_from_slice(&out[..16]);
        CollectionId::from_bytes(id)
    }

    fn key_ad(&self, collection: &CollectionId, epoch: u32) -> Vec<u8> {
        Self::key_ad_of(&self.id, collection, epoch)
    }

    fn key_ad_of(owner: &VaultId, collection: &CollectionId, epoch: u32) -> Vec<u8> {
        let mut ad = Vec::with_capacity(36);
        ad.extend_from_slice(owner.as_bytes());
        ad.extend_from_slice(collection.as_bytes());
        ad.extend_from_slice(&epoch.to_be_bytes());
        ad
    }

    /// The owner's own wrapping of a collection key (`None` if the store has none).
    pub(crate) fn load_own_key(
        &self,
        collection: &CollectionId,
        epoch: u32,
    ) -> Result<Option<SymmetricKey>, Error> {
        let Some(wrapped) = self.store.get_collection_key(collection, epoch)? else {
            return Ok(None);
        };
        let plain = seal::open(
            self.keyring.key(KeyPurpose::CollectionWrap),
            COLLECTION_KEY,
            &self.key_ad(collection, epoch),
            &wrapped,
        )?;
        let key = crate::keys::symmetric_key(&plain, "wrapped collection key")?;
        self.store.verified(Verified::CollectionKey {
            collection,
            epoch,
            wrapped: &wrapped,
        });
        Ok(Some(key))
    }

    pub(crate) fn trusted_writer(&self, id: &KeyringId) -> Option<IdentityBundle> {
        if let Some(w) = self.writers.lock().ok()?.get(id).cloned() {
            return Some(w);
        }
        // Every identity pinned on this device may write what it holds keys for; remember it
        // so the next manifest does not decode and verify the pinned bundle again.
        let pinned = self.pinned_identity(id).ok().flatten()?;
        self.trust_writer(pinned.clone());
        Some(pinned)
    }

    /// Wraps a collection key for the owner (this vault) and stores it.
    pub(crate) fn store_own_key(
        &self,
        collection: &CollectionId,
        epoch: u32,
        ck: &SymmetricKey,
    ) -> Result<(), Error> {
        let wrapped = seal::seal(
            &mut OsRng,
            self.keyring.key(KeyPurpose::CollectionWrap),
            COLLECTION_KEY,
            &self.key_ad(collection, epoch),
            ck.expose_bytes(),
        );
        self.store.put_collection_key(collection, epoch, &wrapped)?;
        Ok(())
    }

    /// Lets `identity` write collections this vault reads. Only call it after checking the
    /// identity's fingerprint (the handover issue pins fingerprints for you).
    pub fn trust_writer(&self, identity: IdentityBundle) {
        if let Ok(mut w) = self.writers.lock() {
            w.insert(identity.keyring_id(), identity);
        }
    }

    /// Opens the collection `name`, creating it if it does not exist.
    pub fn collection(&self, name: &str) -> Result<Collection<'_, S>, Error> {
        if name.len() > MAX_COLLECTION_NAME_LEN {
            return Err(Error::InvalidInput("collection name too long"));
        }
        let id = self.collection_id(name);
        let mut keys = self.load_collection_keys(&self.id, &id)?;
        if keys.is_empty() {
            if self.store.get_manifest(&id)?.is_some() || self.state.get(&id)?.is_some() {
                // A manifest (or our memory of one) without its key: the key was removed.
                return Err(integrity("collection key missing"));
            }
            let ck = SymmetricKey::generate(&mut OsRng);
            self.store_own_key(&id, 1, &ck)?;
            keys.insert(1, ck);
        }
        let mut c = Collection {
            vault: self,
            owner: self.id,
            id,
            keys,
            manifest: Manifest::first(self.id, id, self.keyring.id(), name.to_owned()),
            names: BTreeMap::new(),
            parked: Parked::default(),
        };
        c.refresh()?;
        if c.manifest.name != name {
            return Err(integrity("collection manifest carries another name"));
        }
        c.parked = self.load_parked(&self.id, &id)?;
        Ok(c)
    }

    /// Opens a collection of another vault (`owner`) that was shared with this user or with
    /// a group this user belongs to. The keys come from envelopes signed by identities
    /// pinned on this device; the manifest must be signed by a pinned identity.
    pub fn shared_collection(
        &self,
        owner: VaultId,
        collection: CollectionId,
    ) -> Result<Collection<'_, S>, Error> {
        let keys = self.load_collection_keys(&owner, &collection)?;
        if keys.is_empty() {
            return Err(Error::NoAccess);
        }
        let mut c = Collection {
            vault: self,
            owner,
            id: collection,
            keys,
            manifest: Manifest::first(owner, collection, self.keyring.id(), String::new()),
            names: BTreeMap::new(),
            parked: Parked::default(),
        };
        c.refresh()?;
        if c.manifest.version == 0 {
            return Err(Error::NotFound);
        }
        c.parked = self.load_parked(&owner, &collection)?;
        Ok(c)
    }

    fn remembered(
        &self,
        owner: &VaultId,
        id: &CollectionId,
        keys: &BTreeMap<u32, SymmetricKey>,
    ) -> Result<Option<Manifest>, Error> {
        let Some(record) = self.state.get(id)? else {
            return Ok(None);
        };
        let plain = seal::open(
            self.keyring.key(KeyPurpose::LocalState),
            LOCAL_HIGH_WATER,
            &Self::key_ad_of(owner, id, 0),
            &record,
        )?;
        if plain.len() < 8 {
            return Err(integrity("local state record"));
        }
        let mut v = [0u8; 8];
        v.copy_from_slice(&plain[..8]);
        let epoch = Manifest::stored_epoch(&plain[8..])?;
        // A key epoch this device accepted before but cannot open now: for a collection of
        // another owner, access was removed; for one of this vault's own, nobody can remove
        // its owner's key, so the store withheld it (THREATS C16).
        let Some(ck) = keys.get(&epoch) else {
            return Err(if *owner == self.id {
                integrity("the owner's key of an accepted epoch is missing")
            } else {
                Error::NoAccess
            });
        };
        let manifest = Manifest::open(&plain[8..], owner, id, u64::from_be_bytes(v), ck, &|w| {
            self.trusted_writer(w)
        })?;
        Ok(Some(manifest))
    }

    fn remember(
        &self,
        owner: &VaultId,
        id: &CollectionId,
        version: u64,
        sealed: &[u8],
    ) -> Result<(), Error> {
        let mut plain = Vec::with_capacity(8 + sealed.len());
        plain.extend_from_slice(&version.to_be_bytes());
        plain.extend_from_slice(sealed);
        let record = seal::seal(
            &mut OsRng,
            self.keyring.key(KeyPurpose::LocalState),
            LOCAL_HIGH_WATER,
            &Self::key_ad_of(owner, id, 0),
            &plain,
        );
        self.state.put(id, record)
    }
}

/// An open collection. Reads verify against the manifest this handle holds; writes commit
/// a new signed manifest with a compare-and-swap on its version.
pub struct Collection<'v, S: Store> {
    pub(crate) vault: &'v Vault<S>,
    /// The vault the collection belongs to (this vault, or the sharer's).
    pub(crate) owner: VaultId,
    pub(crate) id: CollectionId,
    /// The collection keys this user holds, by key epoch.
    pub(crate) keys: BTreeMap<u32, SymmetricKey>,
    pub(crate) manifest: Manifest,
    /// Name → object id of the manifest's entries (names are unique in a collection).
    names: BTreeMap<String, ObjectId>,
    /// Changes of this device not yet committed to the store (it was unreachable): shown
    /// over the manifest, merged into the next commit (docs/spec/client.md §8.6).
    pub(crate) parked: Parked,
}

impl<'v, S: Store> Collection<'v, S> {
    /// The collection id.
    pub fn id(&self) -> CollectionId {
        self.id
    }

    /// The vault the collection belongs to.
    pub fn owner(&self) -> VaultId {
        self.owner
    }

    /// The collection key of `epoch`.
    pub(crate) fn key(&self, epoch: u32) -> Result<&SymmetricKey, Error> {
        self.keys.get(&epoch).ok_or(Error::NoAccess)
    }

    /// The key epoch new objects and manifests are sealed under: the newest this user holds.
    pub(crate) fn write_epoch(&self) -> u32 {
        self.keys.keys().next_back().copied().unwrap_or(1)
    }

    /// The verified manifest this handle reads from.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Reloads the manifest from the store and verifies it: signature by a trusted writer,
    /// no rollback below what this device accepted before, no fork, no silent deletion.
    pub fn refresh(&mut self) -> Result<(), Error> {
        let v = self.vault;
        let stored = v.store.get_manifest(&self.id)?;
        if let Some((_, sealed)) = &stored {
            let epoch = Manifest::stored_epoch(sealed)?;
            if !self.keys.contains_key(&epoch) {
                // A newer key epoch: fetch the keys handed since.
                self.keys = v.load_collection_keys(&self.owner, &self.id)?;
            }
        }
        let remembered = v.remembered(&self.owner, &self.id, &self.keys)?;
        let Some((version, sealed)) = stored else {
            if remembered.is_some() {
                return Err(integrity("the store lost a manifest this device accepted"));
            }
            return Ok(());
        };
        let epoch = Manifest::stored_epoch(&sealed)?;
        let ck = match self.keys.get(&epoch) {
            Some(ck) => ck,
            // The owner holds every epoch it made: a manifest under any other is forged.
            None if self.owner == v.id => {
                return Err(integrity("manifest under a key epoch the owner never made"))
            }
            None => return Err(Error::NoAccess),
        };
        let manifest = Manifest::open(&sealed, &self.owner, &self.id, version, ck, &|w| {
            v.trusted_writer(w)
        })?;
        if let Some(previous) = &remembered {
            manifest.check_successor(previous)?;
        }
        manifest.check_successor(&self.manifest)?;
        if remembered.as_ref().map(|m| m.version) != Some(manifest.version) {
            v.remember(&self.owner, &self.id, version, &sealed)?;
        }
        v.store.verified(Verified::Manifest {
            collection: &self.id,
            version,
            sealed: &sealed,
        });
        self.set_manifest(manifest);
        Ok(())
    }

    /// Whether the store's manifest moved past the one this handle holds (another writer
    /// committed since).
    fn is_stale(&self) -> Result<bool, Error> {
        let stored = self.vault.store.get_manifest(&self.id)?;
        Ok(stored.map_or(0, |(version, _)| version) != self.manifest.version)
    }

    fn place(&self, object: ObjectId, version: u64, key_epoch: u32) -> ObjectPlace {
        ObjectPlace {
            vault: self.owner,
            collection: self.id,
            object,
            version,
            key_epoch,
        }
    }

    /// The entry of `name`: parked on this device, or in the manifest.
    fn find(&self, name: &str) -> Option<(ObjectId, &Entry)> {
        if let Some(found) = self.parked.find(name) {
            return Some(found);
        }
        let id = self.names.get(name)?;
        self.manifest.entries.get(id).map(|e| (*id, e))
    }

    fn set_manifest(&mut self, manifest: Manifest) {
        self.names = manifest
            .entries
            .iter()
            .map(|(id, e)| (e.name.clone(), *id))
            .collect();
        self.manifest = manifest;
    }

    /// The live objects, sorted by name.
    pub fn list(&self) -> Vec<Listing> {
        let mut out: Vec<Listing> = self
            .manifest
            .entries
            .iter()
            .filter(|(id, _)| !self.parked.entries.contains_key(id))
            .chain(self.parked.entries.iter().map(|(id, (_, e))| (id, e)))
            .filter(|(_, e)| e.live)
            .map(|(id, e)| Listing {
                name: e.name.clone(),
                size: e.size,
                version: e.version,
                id: *id,
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// Starts a batch: several writes and deletions committed with one signed manifest
    /// (one RSA signature instead of one per object). Nothing is visible until
    /// [`Batch::commit`]; a batch dropped without committing removes what it wrote.
    pub fn batch(&mut self) -> Batch<'_, 'v, S> {
        Batch {
            collection: self,
            pending: BTreeMap::new(),
            pending_names: BTreeMap::new(),
            written: Vec::new(),
            superseded: Vec::new(),
            committed: false,
            epochs_checked: false,
        }
    }

    /// Stores `data` under `name` (replacing a previous version).
    pub fn put(&mut self, name: &str, data: &[u8]) -> Result<(), Error> {
        self.put_reader(name, &mut &data[..], &PutOptions::default())
    }

    /// Streams `reader` into the object `name`. Memory stays at about one page whatever
    /// the object's size. The new version becomes visible when the manifest commits; if
    /// another writer committed first, the write merges with theirs (see [`Batch::commit`]).
    pub fn put_reader(
        &mut self,
        name: &str,
        reader: &mut dyn Read,
        options: &PutOptions<'_>,
    ) -> Result<(), Error> {
        let mut batch = self.batch();
        batch.put_reader(name, reader, options)?;
        batch.commit()
    }

    /// Stores a **record table**: many small records (key → value) packed together into
    /// pages, with the index (key, offset, length) inside the sealed header, so 10,000
    /// records of 200 bytes take a few pages, not 10,000. Replaces the previous version of
    /// the table. Keys are at most 1024 bytes; values at most 4 GiB − 1.
    ///
    /// Records of one table are compressed together: put records from different origins
    /// (e.g. other people's messages beside your secrets) in different tables, or use
    /// `Compression::None` (docs/spec/pages.md §8).
    pub fn put_records(
        &mut self,
        name: &str,
        records: &BTreeMap<Vec<u8>, Vec<u8>>,
        options: &PutOptions<'_>,
    ) -> Result<(), Error> {
        let mut batch = self.batch();
        batch.put_records(name, records, options)?;
        batch.commit()
    }

    /// One record of the record table `name`; reads only the pages that hold it. For many
    /// lookups, [`Collection::open_records`] keeps the index and the last page open.
    pub fn get_record(&self, name: &str, key: &[u8]) -> Result<Option<Vec<u8>>, Error> {
        self.open_records(name)?.get(key)
    }

    /// Opens the record table `name` for lookups: the index is read and verified once.
    pub fn open_records(&self, name: &str) -> Result<RecordTable<'_>, Error> {
        let reader = self.open(name)?;
        if reader.records().is_none() {
            return Err(Error::InvalidInput("the object is not a record table"));
        }
        Ok(RecordTable { reader })
    }

    /// Every record of the record table `name`.
    pub fn records(&self, name: &str) -> Result<BTreeMap<Vec<u8>, Vec<u8>>, Error> {
        let mut reader = self.open(name)?;
        let index = reader
            .records()
            .ok_or(Error::InvalidInput("the object is not a record table"))?
            .to_vec();
        let mut out = BTreeMap::new();
        for entry in index {
            let mut value = vec![0u8; entry.len as usize];
            reader.read_exact(&mut value).map_err(io_to_vault_error)?;
            out.insert(entry.key, value);
        }
        Ok(out)
    }

    fn fresh_object_id(&self, pending: &BTreeMap<ObjectId, Entry>) -> ObjectId {
        loop {
            let id = ObjectId::generate(&mut OsRng);
            if !self.manifest.entries.contains_key(&id)
                && !pending.contains_key(&id)
                && !self.parked.entries.contains_key(&id)
            {
                return id;
            }
        }
    }

    fn commit_entries(&mut self, entries: BTreeMap<ObjectId, Entry>) -> Result<(), Error> {
        let next = self.manifest.clone();
        self.commit_manifest(next, entries)
    }

    /// Signs, seals and swaps in `next` (the current manifest with changes) plus `entries`.
    pub(crate) fn commit_manifest(
        &mut self,
        mut next: Manifest,
        entries: BTreeMap<ObjectId, Entry>,
    ) -> Result<(), Error> {
        next.version = self.manifest.version + 1;
        next.prev_hash = self.manifest.link_hash();
        next.writer = self.vault.keyring.id();
        next.timestamp = now();
        next.key_epoch = self.write_epoch().max(self.manifest.key_epoch);
        next.entries.extend(entries);
        let sealed = next.seal(&mut OsRng, &self.vault.keyring, self.key(next.key_epoch)?);
        match self.vault.store.swap_manifest(
            &self.id,
            self.manifest.version,
            next.version,
            &sealed,
        )? {
            Swap::Done => {
                self.vault
                    .remember(&self.owner, &self.id, next.version, &sealed)?;
                self.vault.store.verified(Verified::Manifest {
                    collection: &self.id,
                    version: next.version,
                    sealed: &sealed,
                });
                self.set_manifest(next);
                Ok(())
            }
            Swap::Conflict { .. } => Err(Error::Conflict),
        }
    }

    /// Opens the object `name` for streaming reads.
    pub fn open(&self, name: &str) -> Result<ObjectReader<'_>, Error> {
        let (id, entry) = self.find(name).ok_or(Error::NotFound)?;
        if !entry.live {
            return Err(Error::NotFound);
        }
        let place = self.place(id, entry.version, entry.key_epoch);
        let header = load_header(
            &self.vault.store,
            self.key(entry.key_epoch)?,
            &place,
            &entry.digest,
        )?;
        if header.meta.name != entry.name
            || header.meta.size != entry.size
            || header.tags.len() as u64 != u64::from(entry.page_count)
        {
            return Err(integrity("object header disagrees with the manifest"));
        }
        Ok(ObjectReader::new(&self.vault.store, place, header))
    }

    /// Reads the whole object `name`. All pages are verified before the bytes are
    /// returned; on any failure nothing is returned.
    pub fn get(&self, name: &str) -> Result<Vec<u8>, Error> {
        let mut reader = self.open(name)?;
        let mut out = Vec::with_capacity(usize::try_from(reader.meta().size).unwrap_or(0));
        if let Err(e) = reader.read_to_end(&mut out) {
            zeroize::Zeroize::zeroize(&mut out);
            return Err(io_to_vault_error(e));
        }
        Ok(out)
    }

    /// The metadata of `name` from its sealed header.
    pub fn meta(&self, name: &str) -> Result<ObjectMeta, Error> {
        Ok(self.open(name)?.meta().clone())
    }

    /// Deletes `name`: a signed tombstone in the manifest, then the pages are reclaimed.
    pub fn delete(&mut self, name: &str) -> Result<(), Error> {
        let mut batch = self.batch();
        batch.delete(name)?;
        batch.commit()
    }
}

/// Writes and deletions of one collection, committed together with one signed manifest.
pub struct Batch<'c, 'v, S: Store> {
    collection: &'c mut Collection<'v, S>,
    pending: BTreeMap<ObjectId, Entry>,
    pending_names: BTreeMap<String, ObjectId>,
    /// Object versions written by this batch (removed if it does not commit).
    written: Vec<ObjectAddress>,
    /// Object versions that the commit makes unreferenced (removed after it).
    superseded: Vec<ObjectAddress>,
    committed: bool,
    /// Whether the group epochs of the collection's shares were checked (once per batch,
    /// before the first write).
    epochs_checked: bool,
}

impl<S: Store> Batch<'_, '_, S> {
    /// The current entry of `name`: written earlier in this batch, or in the manifest.
    fn current(&self, name: &str) -> Option<(ObjectId, Entry)> {
        self.pending_names
            .get(name)
            .and_then(|id| self.pending.get(id).map(|e| (*id, e.clone())))
            .or_else(|| self.collection.find(name).map(|(id, e)| (id, e.clone())))
    }

    fn supersede(&mut self, id: ObjectId, old: &Entry) {
        if old.live {
            let address = self
                .collection
                .place(id, old.version, old.key_epoch)
                .address();
            if self.written.contains(&address) {
                // Written and replaced within this batch: never referenced, remove now.
                let _ = self.collection.vault.store.delete_object_version(&address);
                self.written.retain(|a| a != &address);
            } else {
                self.superseded.push(address);
            }
        }
    }

    /// Stores `data` under `name`.
    pub fn put(&mut self, name: &str, data: &[u8]) -> Result<(), Error> {
        self.put_reader(name, &mut &data[..], &PutOptions::default())
    }

    /// Streams `reader` into the object `name` (see [`Collection::put_reader`]).
    pub fn put_reader(
        &mut self,
        name: &str,
        reader: &mut dyn Read,
        options: &PutOptions<'_>,
    ) -> Result<(), Error> {
        self.write(name, reader, options, None)
    }

    /// Stores a record table (see [`Collection::put_records`]).
    pub fn put_records(
        &mut self,
        name: &str,
        records: &BTreeMap<Vec<u8>, Vec<u8>>,
        options: &PutOptions<'_>,
    ) -> Result<(), Error> {
        if records.len() > MAX_RECORDS as usize {
            return Err(Error::InvalidInput("too many records"));
        }
        let mut index = Vec::with_capacity(records.len());
        let mut offset = 0u64;
        for (key, value) in records {
            if key.len() > MAX_RECORD_KEY_LEN {
                return Err(Error::InvalidInput("record key longer than 1024 bytes"));
            }
            let len = u32::try_from(value.len())
                .map_err(|_| Error::InvalidInput("record value of 4 GiB or more"))?;
            index.push(IndexEntry {
                key: key.clone(),
                offset,
                len,
            });
            offset += u64::from(len);
        }
        let mut values = RecordValues {
            values: records.values(),
            current: &[],
        };
        self.write(name, &mut values, options, Some(index))
    }

    fn write(
        &mut self,
        name: &str,
        reader: &mut dyn Read,
        options: &PutOptions<'_>,
        records: Option<Vec<IndexEntry>>,
    ) -> Result<(), Error> {
        if !self.epochs_checked {
            self.collection.enforce_group_epochs()?;
            self.epochs_checked = true;
        }
        let c = &*self.collection;
        let existing = self.current(name);
        let (object, version) = match &existing {
            Some((id, e)) => (*id, next_version(e.version)?),
            None => (c.fresh_object_id(&self.pending), 1),
        };
        let created_at = match &existing {
            Some((id, e)) if e.live => {
                let place = c.place(*id, e.version, e.key_epoch);
                match load_header(&c.vault.store, c.key(e.key_epoch)?, &place, &e.digest) {
                    Ok(header) => header.meta.created_at,
                    // Another writer replaced this version and reclaimed it since this
                    // device read the manifest: the commit will merge (pages.md §6.1).
                    // With the manifest unchanged, a missing header is tampering.
                    Err(Error::Integrity) if c.is_stale()? => now(),
                    Err(e) => return Err(e),
                }
            }
            _ => now(),
        };
        let epoch = c.write_epoch();
        let place = c.place(object, version, epoch);
        let meta = ObjectMeta {
            name: name.to_owned(),
            size: 0,
            created_at,
            modified_at: now(),
            author: c.vault.keyring.id(),
            content_type: options.content_type.to_owned(),
        };
        let mut writer = ObjectWriter::new(
            OsRng,
            &c.vault.store,
            c.key(epoch)?,
            place,
            meta,
            options.page_size,
            options.compression,
        )?;
        if let Some(index) = records {
            writer.set_records(index);
        }
        self.written.push(place.address());
        writer.read_from(reader).map_err(io_to_vault_error)?;
        let written = writer.finish()?;
        if let Some((id, old)) = &existing {
            self.supersede(*id, old);
        }
        self.pending_names.insert(name.to_owned(), object);
        self.pending.insert(
            object,
            Entry {
                version,
                key_epoch: epoch,
                live: true,
                size: written.meta.size,
                page_count: written.page_count,
                digest: written.digest,
                name: name.to_owned(),
            },
        );
        Ok(())
    }

    /// Deletes `name` (a signed tombstone when the batch commits).
    pub fn delete(&mut self, name: &str) -> Result<(), Error> {
        let (id, old) = self.current(name).ok_or(Error::NotFound)?;
        if !old.live {
            return Err(Error::NotFound);
        }
        self.supersede(id, &old);
        self.pending_names.insert(old.name.clone(), id);
        self.pending.insert(
            id,
            Entry {
                version: old.version + 1,
                key_epoch: old.key_epoch,
                live: false,
                size: 0,
                page_count: 0,
                digest: [0; 32],
                name: old.name.clone(),
            },
        );
        Ok(())
    }

    /// Commits every write and deletion of the batch with one signed manifest, then
    /// reclaims the versions it replaced.
    ///
    /// When another writer (another device, or a user the collection is shared with)
    /// committed first, the batch **merges** with it (docs/spec/pages.md §6.1): it
    /// re-reads and verifies the new manifest, keeps the other writer's changes, and
    /// re-applies its own; an object both changed is kept twice, the other writer's under
    /// its name and this batch's as a conflict copy (`name (conflict YYYY-MM-DD hhmmss)`),
    /// and an object one side deleted while the other changed it stays, changed. Nothing
    /// either writer stored is lost. [`Error::Conflict`] comes back only after
    /// [`MERGE_ATTEMPTS`] merges in a row lost the race again; then nothing changed (the
    /// batch's pages are removed).
    ///
    /// **Offline** (docs/spec/client.md §8.6): when the store keeps writes made while it is
    /// unreachable ([`Store::keeps_offline_writes`], the `CachedStore`) and the swap fails
    /// because it is unreachable, the changes are **parked** on this device instead: the
    /// commit returns `Ok`, [`Collection::queued`] counts them, the listing shows them, and
    /// the next commit of the collection (or [`Collection::push`]) merges and commits them.
    /// While changes are parked, a commit that fails for another reason keeps this batch's
    /// changes parked too, and returns the error.
    pub fn commit(mut self) -> Result<(), Error> {
        let c = &*self.collection;
        let parked = c.parked.clone();
        // What each change was made on, and the changes: the parked ones first, this
        // batch's over them.
        let mut before: BTreeMap<ObjectId, Option<Entry>> = BTreeMap::new();
        let mut pending: BTreeMap<ObjectId, Entry> = BTreeMap::new();
        for (id, (b, ours)) in &parked.entries {
            before.insert(*id, b.clone());
            pending.insert(*id, ours.clone());
        }
        for (id, ours) in std::mem::take(&mut self.pending) {
            before
                .entry(id)
                .or_insert_with(|| c.manifest.entries.get(&id).cloned());
            pending.insert(id, ours);
        }
        for address in &parked.superseded {
            if !self.superseded.contains(address) {
                self.superseded.push(*address);
            }
        }
        let result = self.commit_pending(&mut before, &mut pending, !parked.is_empty());
        let c = &mut *self.collection;
        match result {
            Ok(()) => {
                self.committed = true;
                if !parked.is_empty() {
                    c.parked = Parked::default();
                    c.vault
                        .save_parked(&c.owner, &c.id, &c.manifest.name, &c.parked)?;
                }
                for address in std::mem::take(&mut self.superseded) {
                    c.vault.store.delete_object_version(&address)?;
                }
                Ok(())
            }
            Err(e) => {
                let offline =
                    matches!(&e, Error::Store(s) if c.vault.store.keeps_offline_writes(s));
                if !offline && parked.is_empty() {
                    // Nothing parked: the batch fails and its pages are removed (Drop).
                    return Err(e);
                }
                let entries = pending
                    .into_iter()
                    .map(|(id, ours)| (id, (before.remove(&id).flatten(), ours)))
                    .collect();
                let now = Parked::new(entries, std::mem::take(&mut self.superseded));
                c.vault
                    .save_parked(&c.owner, &c.id, &c.manifest.name, &now)?;
                c.parked = now;
                // Its pages stay: the parked changes reference them.
                self.committed = true;
                if offline {
                    tracing::info!(
                        target: "vault_core",
                        queued = c.parked.entries.len(),
                        "store unreachable: the commit is parked on this device"
                    );
                    Ok(())
                } else {
                    Err(e)
                }
            }
        }
    }

    /// Commits `pending` (each made on `before`), merging with other writers: first onto
    /// the manifest held now when changes were parked (they were made on an older one),
    /// then after every lost compare-and-swap.
    fn commit_pending(
        &mut self,
        before: &mut BTreeMap<ObjectId, Option<Entry>>,
        pending: &mut BTreeMap<ObjectId, Entry>,
        had_parked: bool,
    ) -> Result<(), Error> {
        if had_parked {
            *pending = self.rebase(before, std::mem::take(pending))?;
            self.rebased(before, pending);
        }
        let mut merges = 0;
        while !pending.is_empty() {
            match self.collection.commit_entries(pending.clone()) {
                Ok(()) => return Ok(()),
                Err(Error::Conflict) if merges < MERGE_ATTEMPTS => {
                    merges += 1;
                    self.collection.refresh()?;
                    *pending = self.rebase(before, std::mem::take(pending))?;
                    self.rebased(before, pending);
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// After a rebase, the changes are made on the manifest held now.
    fn rebased(
        &self,
        before: &mut BTreeMap<ObjectId, Option<Entry>>,
        pending: &BTreeMap<ObjectId, Entry>,
    ) {
        let entries = &self.collection.manifest.entries;
        *before = pending
            .keys()
            .map(|id| (*id, entries.get(id).cloned()))
            .collect();
    }
}

impl<S: Store> Batch<'_, '_, S> {
    /// Re-applies `pending`, each change made on its entry in `base` (`None`: a new
    /// object), on top of the manifest the collection holds now (refreshed and verified):
    /// the merge of pages.md §6.1.
    fn rebase(
        &mut self,
        base: &BTreeMap<ObjectId, Option<Entry>>,
        pending: BTreeMap<ObjectId, Entry>,
    ) -> Result<BTreeMap<ObjectId, Entry>, Error> {
        let mut out: BTreeMap<ObjectId, Entry> = BTreeMap::new();
        for (id, ours) in pending {
            let before = base.get(&id).and_then(Option::as_ref);
            let now = self.collection.manifest.entries.get(&id).cloned();
            if now.as_ref() != before {
                // The other writer changed this object too.
                match now {
                    // Their change wins over our deletion: nothing is lost.
                    Some(_) if !ours.live => {}
                    // Both wrote it: keep both, ours as a conflict copy.
                    Some(theirs) if theirs.live => {
                        let (to, entry) = self.conflict_copy(id, &ours, &out)?;
                        out.insert(to, entry);
                    }
                    // They deleted it, we changed it: ours stays, as the next version.
                    Some(theirs) => {
                        let entry = if ours.version > theirs.version {
                            ours
                        } else {
                            let version = next_version(theirs.version)?;
                            self.recopy(id, &ours, id, version, &ours.name)?
                        };
                        out.insert(id, entry);
                    }
                    // A verified successor never drops an entry (refresh checked it).
                    None => return Err(integrity("an object vanished without a deletion")),
                }
                continue;
            }
            if before.is_none() {
                if !ours.live {
                    // Created and deleted within this batch: nothing to record.
                    continue;
                }
                // A new object: its name may have been taken meanwhile.
                let taken = self.collection.names.get(&ours.name).copied();
                if let Some(other) = taken.filter(|other| *other != id) {
                    let theirs = self.collection.manifest.entries.get(&other).cloned();
                    match theirs {
                        Some(theirs) if !theirs.live => {
                            // The name's object was deleted: ours becomes its next version.
                            let version = next_version(theirs.version)?;
                            let entry = self.recopy(id, &ours, other, version, &ours.name)?;
                            out.insert(other, entry);
                        }
                        _ => {
                            let (to, entry) = self.conflict_copy(id, &ours, &out)?;
                            out.insert(to, entry);
                        }
                    }
                    continue;
                }
            }
            out.insert(id, ours);
        }
        Ok(out)
    }

    /// Copies our version of `id` to a new object named as a conflict copy.
    fn conflict_copy(
        &mut self,
        id: ObjectId,
        ours: &Entry,
        out: &BTreeMap<ObjectId, Entry>,
    ) -> Result<(ObjectId, Entry), Error> {
        let c = &*self.collection;
        let taken = |name: &str| c.names.contains_key(name) || out.values().any(|e| e.name == name);
        let name = conflict_name(&ours.name, now(), taken);
        let to = c.fresh_object_id(out);
        let entry = self.recopy(id, ours, to, 1, &name)?;
        Ok((to, entry))
    }

    /// Re-writes our version of `id` (written by this batch) as `to` at `version` named
    /// `name` (a name lives in the sealed header, and the version in every page's address
    /// and seal), then removes the original.
    fn recopy(
        &mut self,
        id: ObjectId,
        ours: &Entry,
        to: ObjectId,
        version: u64,
        name: &str,
    ) -> Result<Entry, Error> {
        let c = &*self.collection;
        let from = c.place(id, ours.version, ours.key_epoch);
        let header = load_header(&c.vault.store, c.key(ours.key_epoch)?, &from, &ours.digest)?;
        let mut meta = header.meta.clone();
        meta.name = name.to_owned();
        meta.modified_at = now();
        let page_size = header.page_size;
        let records = header.records.clone();
        let epoch = c.write_epoch();
        let place = c.place(to, version, epoch);
        let mut writer = ObjectWriter::new(
            OsRng,
            &c.vault.store,
            c.key(epoch)?,
            place,
            meta,
            page_size,
            Compression::default(),
        )?;
        if let Some(index) = records {
            writer.set_records(index);
        }
        self.written.push(place.address());
        let mut reader = ObjectReader::new(&c.vault.store, from, header);
        writer.read_from(&mut reader).map_err(io_to_vault_error)?;
        let written = writer.finish()?;
        let old = from.address();
        let _ = c.vault.store.delete_object_version(&old);
        self.written.retain(|a| a != &old);
        Ok(Entry {
            version,
            key_epoch: epoch,
            live: true,
            size: written.meta.size,
            page_count: written.page_count,
            digest: written.digest,
            name: name.to_owned(),
        })
    }
}

/// How many merges a batch makes (each after losing the compare-and-swap) before it gives
/// up with [`Error::Conflict`].
pub const MERGE_ATTEMPTS: u32 = 8;

/// The version of an object's next write: the previous plus 1 plus a uniformly random
/// 32-bit step, so that two writers overwriting the same object at once write to different
/// addresses and neither can overwrite the other's pages (pages.md §6.1).
fn next_version(previous: u64) -> Result<u64, Error> {
    let step = 1 + u64::from(rand_core::RngCore::next_u32(&mut OsRng));
    previous
        .checked_add(step)
        .ok_or(Error::InvalidInput("object version space exhausted"))
}

/// `dir/report.txt` → `dir/report (conflict 2026-12-04 231500).txt`; then ` 2`, ` 3`, …
/// before the extension while the name is taken. Kept within the name limit.
fn conflict_name(name: &str, at: u64, taken: impl Fn(&str) -> bool) -> String {
    let file_start = name.rfind('/').map_or(0, |i| i + 1);
    let (stem, ext) = match name[file_start..].rfind('.') {
        Some(dot) if dot > 0 => name.split_at(file_start + dot),
        _ => (name, ""),
    };
    let stamp = utc_stamp(at);
    let mut n = 1u64;
    loop {
        let tag = if n == 1 {
            format!(" (conflict {stamp})")
        } else {
            format!(" (conflict {stamp} {n})")
        };
        let room = crate::object::MAX_NAME_LEN.saturating_sub(tag.len() + ext.len());
        let mut cut = stem.len().min(room);
        while !stem.is_char_boundary(cut) {
            cut -= 1;
        }
        let candidate = format!("{}{tag}{ext}", &stem[..cut]);
        if !taken(&candidate) {
            return candidate;
        }
        n += 1;
    }
}

/// `YYYY-MM-DD hhmmss` (UTC) of Unix seconds (the civil-from-days algorithm).
fn utc_stamp(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}{:02}{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

impl<S: Store> Drop for Batch<'_, '_, S> {
    fn drop(&mut self) {
        if !self.committed {
            for address in &self.written {
                let _ = self.collection.vault.store.delete_object_version(address);
            }
        }
    }
}

/// An open record table: its verified index, and the last page read.
pub struct RecordTable<'a> {
    reader: ObjectReader<'a>,
}

impl RecordTable<'_> {
    fn index(&self) -> &[IndexEntry] {
        self.reader.records().unwrap_or(&[])
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        self.index().len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.index().is_empty()
    }

    /// The keys, in order.
    pub fn keys(&self) -> impl Iterator<Item = &[u8]> {
        self.index().iter().map(|e| e.key.as_slice())
    }

    /// The value of `key`, verifying the page(s) that hold it.
    pub fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, Error> {
        let Ok(i) = self.index().binary_search_by(|e| e.key.as_slice().cmp(key)) else {
            return Ok(None);
        };
        let (offset, len) = (self.index()[i].offset, self.index()[i].len);
        Ok(Some(self.reader.read_range(offset, len)?))
    }
}

/// Reads the values of a record table in key order, without copying them into one buffer.
struct RecordValues<'a, I: Iterator<Item = &'a Vec<u8>>> {
    values: I,
    current: &'a [u8],
}

impl<'a, I: Iterator<Item = &'a Vec<u8>>> Read for RecordValues<'a, I> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.values.next() {
                Some(v) => self.current = v,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        self.current = &self.current[n..];
        Ok(n)
    }
}
