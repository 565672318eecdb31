//! Where sealed bytes live: one trait for every backend (memory, sled, and the server-sync
//! store of the sync issue). A store sees only opaque bytes under random ids; it is not
//! trusted — everything read from it is authenticated by the caller (docs/spec/pages.md §7).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;

use crate::ids::{CollectionId, ObjectId};

/// A failure of the storage backend itself (I/O, database, the server). Carries the
/// backend's message, which never contains user data (the store only holds sealed bytes),
/// and optionally the backend's own error as its [`std::error::Error::source`] (the sync
/// client's `RemoteError`, so that a caller can tell "unreachable" from "refused").
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct StoreError {
    message: String,
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

impl StoreError {
    /// An error with a message.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            source: None,
        }
    }

    /// An error with a message and the backend's error behind it.
    pub fn with_source(
        message: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self {
            message: message.into(),
            source: Some(Box::new(source)),
        }
    }

    /// The backend's error behind this one, if it gave one.
    pub fn into_source(self) -> Option<Box<dyn std::error::Error + Send + Sync + 'static>> {
        self.source
    }
}

/// Opens a sled database. A database this process closed a moment ago may still be held
/// by sled's background flusher for a few milliseconds: its file lock is waited for up to
/// two seconds before the error is returned (another process holding it fails then too).
pub(crate) fn open_sled(config: &sled::Config) -> Result<sled::Db, sled::Error> {
    let mut waited = 0u32;
    loop {
        match config.open() {
            Err(sled::Error::Io(e))
                if e.kind() == std::io::ErrorKind::WouldBlock && waited < 40 =>
            {
                waited += 1;
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            other => return other,
        }
    }
}

/// The address of one sealed page.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PageAddress {
    /// Collection.
    pub collection: CollectionId,
    /// Object.
    pub object: ObjectId,
    /// Object version.
    pub version: u64,
    /// Page index.
    pub index: u32,
}

/// The address of one object version (its sealed header).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectAddress {
    /// Collection.
    pub collection: CollectionId,
    /// Object.
    pub object: ObjectId,
    /// Object version.
    pub version: u64,
}

/// Outcome of a manifest compare-and-swap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Swap {
    /// The manifest was replaced (and is durable).
    Done,
    /// The stored manifest's version was not the expected one; nothing changed.
    Conflict {
        /// The version the store holds now (0: none).
        current: u64,
    },
}

/// Storage of opaque sealed bytes.
///
/// Writes of pages and headers are idempotent puts. [`Store::swap_manifest`] is the commit
/// point: when it returns [`Swap::Done`], the manifest and everything written before it
/// through this store are durable (a crash after it loses nothing it references).
pub trait Store: Send + Sync {
    /// Stores a sealed page.
    fn put_page(&self, address: &PageAddress, page: &[u8]) -> Result<(), StoreError>;
    /// Reads a sealed page.
    fn get_page(&self, address: &PageAddress) -> Result<Option<Vec<u8>>, StoreError>;
    /// Stores the sealed header of an object version.
    fn put_header(&self, address: &ObjectAddress, header: &[u8]) -> Result<(), StoreError>;
    /// Reads the sealed header of an object version.
    fn get_header(&self, address: &ObjectAddress) -> Result<Option<Vec<u8>>, StoreError>;
    /// Removes an object version: its header and its pages.
    fn delete_object_version(&self, address: &ObjectAddress) -> Result<(), StoreError>;
    /// Stores a wrapped collection key of a key epoch.
    fn put_collection_key(
        &self,
        collection: &CollectionId,
        epoch: u32,
        wrapped: &[u8],
    ) -> Result<(), StoreError>;
    /// Reads a wrapped collection key.
    fn get_collection_key(
        &self,
        collection: &CollectionId,
        epoch: u32,
    ) -> Result<Option<Vec<u8>>, StoreError>;
    /// The current manifest of a collection and its version, if any.
    fn get_manifest(&self, collection: &CollectionId)
        -> Result<Option<(u64, Vec<u8>)>, StoreError>;
    /// Replaces the manifest if the stored version is `expected` (0: no manifest yet).
    /// Makes all earlier writes durable before it returns `Done`.
    fn swap_manifest(
        &self,
        collection: &CollectionId,
        expected: u64,
        version: u64,
        manifest: &[u8],
    ) -> Result<Swap, StoreError>;
    /// The collections this store holds manifests for.
    fn list_collections(&self) -> Result<Vec<CollectionId>, StoreError>;
    /// Stores (or replaces) a small sharing record.
    fn put_record(&self, kind: RecordKind, key: &[u8], value: &[u8]) -> Result<(), StoreError>;
    /// Stores a record only if none exists under `key`; `false` if one did (nothing
    /// changed). Roster versions use it: the first writer of a version wins.
    fn insert_record(&self, kind: RecordKind, key: &[u8], value: &[u8])
        -> Result<bool, StoreError>;
    /// Reads a record.
    fn get_record(&self, kind: RecordKind, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;
    /// The keys of the records of `kind` whose key starts with `prefix`, in byte order.
    fn list_records(&self, kind: RecordKind, prefix: &[u8]) -> Result<Vec<Vec<u8>>, StoreError>;
    /// Told by the vault after bytes this store gave (or took) passed every check: a
    /// caching store keeps only such bytes, so a hostile server cannot plant anything in
    /// a device's cache (docs/spec/client.md §8.1). The default does nothing.
    fn verified(&self, item: Verified<'_>) {
        let _ = item;
    }
    /// Whether this store kept the pages, headers and keys written while its backend
    /// failed with `error`, to upload them before its next manifest swap (the offline
    /// writes of docs/spec/client.md §8.6). When [`Store::swap_manifest`] fails with such an
    /// error, the vault **parks** the commit on the device and pushes it later. The default
    /// (a store that keeps nothing) says no.
    fn keeps_offline_writes(&self, error: &StoreError) -> bool {
        let _ = error;
        false
    }
}

/// Bytes the vault has authenticated, passed to [`Store::verified`].
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub enum Verified<'a> {
    /// A sealed page whose tag is in its verified header and whose MAC checked.
    Page {
        /// Its address.
        address: &'a PageAddress,
        /// The sealed page.
        sealed: &'a [u8],
    },
    /// A sealed object header matching its manifest digest and opened.
    Header {
        /// Its address.
        address: &'a ObjectAddress,
        /// The sealed header.
        sealed: &'a [u8],
    },
    /// A wrapped collection key the vault unwrapped.
    CollectionKey {
        /// The collection.
        collection: &'a CollectionId,
        /// The key epoch.
        epoch: u32,
        /// The wrapped key.
        wrapped: &'a [u8],
    },
    /// A key envelope (a record of [`RecordKind::Envelope`]) whose signature by a pinned
    /// identity verified and which the vault opened: a collection key handed to this user
    /// or a group this user holds.
    Envelope {
        /// Its record key (`recipient ‖ owner ‖ target ‖ epoch`).
        key: &'a [u8],
        /// The envelope.
        sealed: &'a [u8],
    },
    /// A manifest the vault accepted (signature, chain and high-water checks passed), or
    /// committed itself.
    Manifest {
        /// The collection.
        collection: &'a CollectionId,
        /// The stored version.
        version: u64,
        /// The sealed, signed manifest.
        sealed: &'a [u8],
    },
}

fn page_key(a: &PageAddress) -> [u8; 44] {
    let mut k = [0u8; 44];
    k[..16].copy_from_slice(a.collection.as_bytes());
    k[16..32].copy_from_slice(a.object.as_bytes());
    k[32..40].copy_from_slice(&a.version.to_be_bytes());
    k[40..].copy_from_slice(&a.index.to_be_bytes());
    k
}

fn object_key(a: &ObjectAddress) -> [u8; 40] {
    let mut k = [0u8; 40];
    k[..16].copy_from_slice(a.collection.as_bytes());
    k[16..32].copy_from_slice(a.object.as_bytes());
    k[32..].copy_from_slice(&a.version.to_be_bytes());
    k
}

fn ckey_key(c: &CollectionId, epoch: u32) -> [u8; 20] {
    let mut k = [0u8; 20];
    k[..16].copy_from_slice(c.as_bytes());
    k[16..].copy_from_slice(&epoch.to_be_bytes());
    k
}

#[derive(Default)]
struct Maps {
    pages: BTreeMap<Vec<u8>, Vec<u8>>,
    headers: BTreeMap<Vec<u8>, Vec<u8>>,
    keys: BTreeMap<Vec<u8>, Vec<u8>>,
    manifests: BTreeMap<CollectionId, (u64, Vec<u8>)>,
    records: BTreeMap<Vec<u8>, Vec<u8>>,
}

/// The kinds of small records a store keeps for sharing (docs/spec/handover.md §5). Like
/// everything else in a store they are untrusted: identity bundles are self-signed and
/// pinned by fingerprint, envelopes and rosters are signed by their makers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum RecordKind {
    /// A published identity bundle; key: keyring id (16 bytes).
    Identity,
    /// An envelope; key: `recipient[16] || owner[16] || target[16] || u32 epoch`.
    Envelope,
    /// A group roster version; key: `group id[16] || u64 roster version`.
    Roster,
}

impl RecordKind {
    /// The one-byte code of the kind (used as a key prefix by the stores).
    pub fn code(self) -> u8 {
        match self {
            RecordKind::Identity => 1,
            RecordKind::Envelope => 2,
            RecordKind::Roster => 3,
        }
    }
}

fn record_key(kind: RecordKind, key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + key.len());
    k.push(kind.code());
    k.extend_from_slice(key);
    k
}

/// A store in memory, for tests and short-lived vaults.
#[derive(Default)]
pub struct MemoryStore {
    maps: Mutex<Maps>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn maps(&self) -> Result<std::sync::MutexGuard<'_, Maps>, StoreError> {
        self.maps
            .lock()
            .map_err(|_| StoreError::new("memory store lock poisoned"))
    }
}

impl Store for MemoryStore {
    fn put_page(&self, address: &PageAddress, page: &[u8]) -> Result<(), StoreError> {
        // Copy before taking the lock: writers on other threads only wait for the insert.
        let (key, page) = (page_key(address).to_vec(), page.to_vec());
        let replaced = self.maps()?.pages.insert(key, page);
        drop(replaced); // freed outside the lock
        Ok(())
    }
    fn get_page(&self, address: &PageAddress) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.maps()?.pages.get(&page_key(address)[..]).cloned())
    }
    fn put_header(&self, address: &ObjectAddress, header: &[u8]) -> Result<(), StoreError> {
        self.maps()?
            .headers
            .insert(object_key(address).to_vec(), header.to_vec());
        Ok(())
    }
    fn get_header(&self, address: &ObjectAddress) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.maps()?.headers.get(&object_key(address)[..]).cloned())
    }
    fn delete_object_version(&self, address: &ObjectAddress) -> Result<(), StoreError> {
        let prefix = object_key(address);
        let removed: Vec<Vec<u8>> = {
            let mut m = self.maps()?;
            m.headers.remove(&prefix[..]);
            let keys: Vec<Vec<u8>> = m
                .pages
                .range(prefix.to_vec()..)
                .take_while(|(k, _)| k.starts_with(&prefix))
                .map(|(k, _)| k.clone())
                .collect();
            keys.iter().filter_map(|k| m.pages.remove(k)).collect()
        };
        drop(removed); // freed outside the lock
        Ok(())
    }
    fn put_collection_key(
        &self,
        collection: &CollectionId,
        epoch: u32,
        wrapped: &[u8],
    ) -> Result<(), StoreError> {
        self.maps()?
            .keys
            .insert(ckey_key(collection, epoch).to_vec(), wrapped.to_vec());
        Ok(())
    }
    fn get_collection_key(
        &self,
        collection: &CollectionId,
        epoch: u32,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .maps()?
            .keys
            .get(&ckey_key(collection, epoch)[..])
            .cloned())
    }
    fn get_manifest(
        &self,
        collection: &CollectionId,
    ) -> Result<Option<(u64, Vec<u8>)>, StoreError> {
        Ok(self.maps()?.manifests.get(collection).cloned())
    }
    fn swap_manifest(
        &self,
        collection: &CollectionId,
        expected: u64,
        version: u64,
        manifest: &[u8],
    ) -> Result<Swap, StoreError> {
        let mut m = self.maps()?;
        let current = m.manifests.get(collection).map_or(0, |(v, _)| *v);
        if current != expected {
            return Ok(Swap::Conflict { current });
        }
        m.manifests
            .insert(*collection, (version, manifest.to_vec()));
        Ok(Swap::Done)
    }
    fn list_collections(&self) -> Result<Vec<CollectionId>, StoreError> {
        Ok(self.maps()?.manifests.keys().copied().collect())
    }
    fn put_record(&self, kind: RecordKind, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.maps()?
            .records
            .insert(record_key(kind, key), value.to_vec());
        Ok(())
    }
    fn insert_record(
        &self,
        kind: RecordKind,
        key: &[u8],
        value: &[u8],
    ) -> Result<bool, StoreError> {
        let mut m = self.maps()?;
        let k = record_key(kind, key);
        if m.records.contains_key(&k) {
            return Ok(false);
        }
        m.records.insert(k, value.to_vec());
        Ok(true)
    }
    fn get_record(&self, kind: RecordKind, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.maps()?.records.get(&record_key(kind, key)).cloned())
    }
    fn list_records(&self, kind: RecordKind, prefix: &[u8]) -> Result<Vec<Vec<u8>>, StoreError> {
        let p = record_key(kind, prefix);
        Ok(self
            .maps()?
            .records
            .range(p.clone()..)
            .take_while(|(k, _)| k.starts_with(&p))
            .map(|(k, _)| k[1..].to_vec())
            .collect())
    }
}

/// The embedded default: a directory with a sled database and append-only pack files,
/// nothing to install.
///
/// Pages (the bulk of the data) are appended to pack files (`packs/NNNNNNNN.pack`, a new
/// one per open and every 256 MiB); sled holds the page index (where each page lies), the
/// headers, the wrapped keys and the manifests. Keeping the pages out of sled keeps memory
/// bounded and the disk footprint equal to the sealed bytes (sled 0.34 keeps written values
/// resident and takes about 1.8× their size on disk).
///
/// Nothing waits for the disk until [`Store::swap_manifest`]: it fsyncs the pack being
/// written, then swaps and flushes sled, so an acknowledged manifest and every page it
/// references survive a crash. Space of deleted object versions is not reclaimed yet
/// (compaction of pack files is future work).
pub struct SledStore {
    db: sled::Db,
    pages: sled::Tree,
    headers: sled::Tree,
    keys: sled::Tree,
    manifests: sled::Tree,
    records: sled::Tree,
    swap_lock: Mutex<()>,
    packs: Packs,
}

const PACK_LIMIT: u64 = 256 * 1024 * 1024;

struct PackWriter {
    id: u32,
    file: std::fs::File,
    len: u64,
    dirty: bool,
}

struct Packs {
    dir: std::path::PathBuf,
    writer: Mutex<PackWriter>,
    readers: Mutex<std::collections::HashMap<u32, std::sync::Arc<std::fs::File>>>,
}

fn io_err(what: &str, e: std::io::Error) -> StoreError {
    StoreError::new(format!("pack files: {what}: {e}"))
}

impl Packs {
    fn open(dir: std::path::PathBuf) -> Result<Self, StoreError> {
        std::fs::create_dir_all(&dir).map_err(|e| io_err("create directory", e))?;
        // Never append to an existing pack (its tail may be torn by a crash): start a new one
        // after the highest id present.
        let mut next = 0u32;
        for entry in std::fs::read_dir(&dir).map_err(|e| io_err("list", e))? {
            let name = entry.map_err(|e| io_err("list", e))?.file_name();
            if let Some(id) = name
                .to_str()
                .and_then(|n| n.strip_suffix(".pack"))
                .and_then(|n| n.parse::<u32>().ok())
            {
                next = next.max(id.saturating_add(1));
            }
        }
        let writer = Self::create(&dir, next)?;
        Ok(Self {
            dir,
            writer: Mutex::new(writer),
            readers: Mutex::new(std::collections::HashMap::new()),
        })
    }

    fn path(dir: &Path, id: u32) -> std::path::PathBuf {
        dir.join(format!("{id:08}.pack"))
    }

    fn create(dir: &Path, id: u32) -> Result<PackWriter, StoreError> {
        let file = std::fs::OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(Self::path(dir, id))
            .map_err(|e| io_err("create pack", e))?;
        // The new file's directory entry must be durable too, or a crash could lose the
        // whole pack after its pages were acknowledged.
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io_err("sync directory", e))?;
        Ok(PackWriter {
            id,
            file,
            len: 0,
            dirty: false,
        })
    }

    /// Appends a page; returns (pack id, offset).
    fn append(&self, page: &[u8]) -> Result<(u32, u64), StoreError> {
        use std::io::Write;
        let mut w = self
            .writer
            .lock()
            .map_err(|_| StoreError::new("pack writer lock poisoned"))?;
        if w.len >= PACK_LIMIT {
            w.file.sync_data().map_err(|e| io_err("sync pack", e))?;
            let next =
                w.id.checked_add(1)
                    .ok_or(StoreError::new("pack ids exhausted"))?;
            *w = Self::create(&self.dir, next)?;
        }
        let offset = w.len;
        w.file.write_all(page).map_err(|e| io_err("append", e))?;
        w.len += page.len() as u64;
        w.dirty = true;
        Ok((w.id, offset))
    }

    /// Makes every appended page durable.
    fn sync(&self) -> Result<(), StoreError> {
        let mut w = self
            .writer
            .lock()
            .map_err(|_| StoreError::new("pack writer lock poisoned"))?;
        if w.dirty {
            w.file.sync_data().map_err(|e| io_err("sync pack", e))?;
            w.dirty = false;
        }
        Ok(())
    }

    fn read(&self, id: u32, offset: u64, len: u32) -> Result<Option<Vec<u8>>, StoreError> {
        use std::os::unix::fs::FileExt;
        let file = {
            let mut readers = self
                .readers
                .lock()
                .map_err(|_| StoreError::new("pack reader lock poisoned"))?;
            match readers.get(&id) {
                Some(f) => f.clone(),
                None => match std::fs::File::open(Self::path(&self.dir, id)) {
                    Ok(f) => {
                        let f = std::sync::Arc::new(f);
                        readers.insert(id, f.clone());
                        f
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                    Err(e) => return Err(io_err("open pack", e)),
                },
            }
        };
        let mut buf = vec![0u8; len as usize];
        match file.read_exact_at(&mut buf, offset) {
            Ok(()) => Ok(Some(buf)),
            // A page whose bytes never reached the disk (a crash before its commit): absent.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(None),
            Err(e) => Err(io_err("read pack", e)),
        }
    }
}

fn sled_err(e: sled::Error) -> StoreError {
    StoreError::new(format!("sled: {e}"))
}

impl SledStore {
    /// Opens (or creates) the store in `path`, with a 64 MiB page cache.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::open_with_cache(path, 64 * 1024 * 1024)
    }

    /// Opens (or creates) the store in `path` with a cache of `cache_bytes` (sled's own
    /// default of 1 GiB is more than an embedded vault should take).
    pub fn open_with_cache(path: impl AsRef<Path>, cache_bytes: u64) -> Result<Self, StoreError> {
        let path = path.as_ref();
        let db = open_sled(
            &sled::Config::new()
                .path(path.join("index"))
                .cache_capacity(cache_bytes),
        )
        .map_err(sled_err)?;
        let packs = Packs::open(path.join("packs"))?;
        let tree = |name: &str| db.open_tree(name).map_err(sled_err);
        Ok(Self {
            pages: tree("pages")?,
            headers: tree("headers")?,
            keys: tree("collection-keys")?,
            manifests: tree("manifests")?,
            records: tree("records")?,
            db,
            swap_lock: Mutex::new(()),
            packs,
        })
    }

    /// Flushes everything written so far to disk.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.packs.sync()?;
        self.db.flush().map(|_| ()).map_err(sled_err)
    }
}

impl Store for SledStore {
    fn put_page(&self, address: &PageAddress, page: &[u8]) -> Result<(), StoreError> {
        let len = u32::try_from(page.len()).map_err(|_| StoreError::new("page over 4 GiB"))?;
        let (id, offset) = self.packs.append(page)?;
        let mut location = [0u8; 16];
        location[..4].copy_from_slice(&id.to_be_bytes());
        location[4..12].copy_from_slice(&offset.to_be_bytes());
        location[12..].copy_from_slice(&len.to_be_bytes());
        self.pages
            .insert(page_key(address), &location[..])
            .map(|_| ())
            .map_err(sled_err)
    }
    fn get_page(&self, address: &PageAddress) -> Result<Option<Vec<u8>>, StoreError> {
        let Some(location) = self.pages.get(page_key(address)).map_err(sled_err)? else {
            return Ok(None);
        };
        let location: [u8; 16] = location
            .as_ref()
            .try_into()
            .map_err(|_| StoreError::new("sled: malformed page location"))?;
        let id = u32::from_be_bytes([location[0], location[1], location[2], location[3]]);
        let mut offset = [0u8; 8];
        offset.copy_from_slice(&location[4..12]);
        let len = u32::from_be_bytes([location[12], location[13], location[14], location[15]]);
        self.packs.read(id, u64::from_be_bytes(offset), len)
    }
    fn put_header(&self, address: &ObjectAddress, header: &[u8]) -> Result<(), StoreError> {
        self.headers
            .insert(object_key(address), header)
            .map(|_| ())
            .map_err(sled_err)
    }
    fn get_header(&self, address: &ObjectAddress) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .headers
            .get(object_key(address))
            .map_err(sled_err)?
            .map(|v| v.to_vec()))
    }
    fn delete_object_version(&self, address: &ObjectAddress) -> Result<(), StoreError> {
        let prefix = object_key(address);
        self.headers.remove(prefix).map_err(sled_err)?;
        for key in self.pages.scan_prefix(prefix).keys() {
            self.pages
                .remove(key.map_err(sled_err)?)
                .map_err(sled_err)?;
        }
        Ok(())
    }
    fn put_collection_key(
        &self,
        collection: &CollectionId,
        epoch: u32,
        wrapped: &[u8],
    ) -> Result<(), StoreError> {
        self.keys
            .insert(ckey_key(collection, epoch), wrapped)
            .map(|_| ())
            .map_err(sled_err)
    }
    fn get_collection_key(
        &self,
        collection: &CollectionId,
        epoch: u32,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .keys
            .get(ckey_key(collection, epoch))
            .map_err(sled_err)?
            .map(|v| v.to_vec()))
    }
    fn get_manifest(
        &self,
        collection: &CollectionId,
    ) -> Result<Option<(u64, Vec<u8>)>, StoreError> {
        let Some(v) = self
            .manifests
            .get(collection.as_bytes())
            .map_err(sled_err)?
        else {
            return Ok(None);
        };
        if v.len() < 8 {
            return Err(StoreError::new(
                "sled: manifest record shorter than its version",
            ));
        }
        let mut version = [0u8; 8];
        version.copy_from_slice(&v[..8]);
        Ok(Some((u64::from_be_bytes(version), v[8..].to_vec())))
    }
    fn swap_manifest(
        &self,
        collection: &CollectionId,
        expected: u64,
        version: u64,
        manifest: &[u8],
    ) -> Result<Swap, StoreError> {
        let _guard = self
            .swap_lock
            .lock()
            .map_err(|_| StoreError::new("sled store lock poisoned"))?;
        let current = self.get_manifest(collection)?.map_or(0, |(v, _)| v);
        if current != expected {
            return Ok(Swap::Conflict { current });
        }
        // The pages the manifest references must be on disk before the manifest can be:
        // sled may write the swap out by itself at any moment after the insert.
        self.packs.sync()?;
        let mut record = Vec::with_capacity(8 + manifest.len());
        record.extend_from_slice(&version.to_be_bytes());
        record.extend_from_slice(manifest);
        self.manifests
            .insert(collection.as_bytes(), record)
            .map_err(sled_err)?;
        self.flush()?;
        Ok(Swap::Done)
    }
    fn list_collections(&self) -> Result<Vec<CollectionId>, StoreError> {
        let mut out = Vec::new();
        for key in self.manifests.iter().keys() {
            let key = key.map_err(sled_err)?;
            let bytes: [u8; 16] = key
                .as_ref()
                .try_into()
                .map_err(|_| StoreError::new("sled: malformed collection key"))?;
            out.push(CollectionId::from_bytes(bytes));
        }
        Ok(out)
    }
    fn put_record(&self, kind: RecordKind, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.records
            .insert(record_key(kind, key), value)
            .map_err(sled_err)?;
        self.records.flush().map(|_| ()).map_err(sled_err)
    }
    fn insert_record(
        &self,
        kind: RecordKind,
        key: &[u8],
        value: &[u8],
    ) -> Result<bool, StoreError> {
        let swapped = self
            .records
            .compare_and_swap(record_key(kind, key), None as Option<&[u8]>, Some(value))
            .map_err(sled_err)?;
        self.records.flush().map_err(sled_err)?;
        Ok(swapped.is_ok())
    }
    fn get_record(&self, kind: RecordKind, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .records
            .get(record_key(kind, key))
            .map_err(sled_err)?
            .map(|v| v.to_vec()))
    }
    fn list_records(&self, kind: RecordKind, prefix: &[u8]) -> Result<Vec<Vec<u8>>, StoreError> {
        let mut out = Vec::new();
        for key in self.records.scan_prefix(record_key(kind, prefix)).keys() {
            out.push(key.map_err(sled_err)?[1..].to_vec());
        }
        Ok(out)
    }
}

/// A shared store: lets a test (or the sync layer) keep a handle on the store a vault uses.
impl<T: Store + ?Sized> Store for std::sync::Arc<T> {
    fn put_page(&self, address: &PageAddress, page: &[u8]) -> Result<(), StoreError> {
        (**self).put_page(address, page)
    }
    fn get_page(&self, address: &PageAddress) -> Result<Option<Vec<u8>>, StoreError> {
        (**self).get_page(address)
    }
    fn put_header(&self, address: &ObjectAddress, header: &[u8]) -> Result<(), StoreError> {
        (**self).put_header(address, header)
    }
    fn get_header(&self, address: &ObjectAddress) -> Result<Option<Vec<u8>>, StoreError> {
        (**self).get_header(address)
    }
    fn delete_object_version(&self, address: &ObjectAddress) -> Result<(), StoreError> {
        (**self).delete_object_version(address)
    }
    fn put_collection_key(
        &self,
        collection: &CollectionId,
        epoch: u32,
        wrapped: &[u8],
    ) -> Result<(), StoreError> {
        (**self).put_collection_key(collection, epoch, wrapped)
    }
    fn get_collection_key(
        &self,
        collection: &CollectionId,
        epoch: u32,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        (**self).get_collection_key(collection, epoch)
    }
    fn get_manifest(
        &self,
        collection: &CollectionId,
    ) -> Result<Option<(u64, Vec<u8>)>, StoreError> {
        (**self).get_manifest(collection)
    }
    fn swap_manifest(
        &self,
        collection: &CollectionId,
        expected: u64,
        version: u64,
        manifest: &[u8],
    ) -> Result<Swap, StoreError> {
        (**self).swap_manifest(collection, expected, version, manifest)
    }
    fn list_collections(&self) -> Result<Vec<CollectionId>, StoreError> {
        (**self).list_collections()
    }
    fn put_record(&self, kind: RecordKind, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        (**self).put_record(kind, key, value)
    }
    fn insert_record(
        &self,
        kind: RecordKind,
        key: &[u8],
        value: &[u8],
    ) -> Result<bool, StoreError> {
        (**self).insert_record(kind, key, value)
    }
    fn get_record(&self, kind: RecordKind, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        (**self).get_record(kind, key)
    }
    fn list_records(&self, kind: RecordKind, prefix: &[u8]) -> Result<Vec<Vec<u8>>, StoreError> {
        (**self).list_records(kind, prefix)
    }
    fn verified(&self, item: Verified<'_>) {
        (**self).verified(item)
    }
    fn keeps_offline_writes(&self, error: &StoreError) -> bool {
        (**self).keeps_offline_writes(error)
    }
}
