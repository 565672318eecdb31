//! The device's local cache (docs/spec/client.md §8): [`CachedStore`], a sled directory of
//! opaque sealed bytes in front of any [`Store`] (normally the server's `RemoteStore`), and
//! the catch-up on the server's change feed ([`CachedStore::catch_up`]).
//!
//! **Only verified bytes enter the cache.** What the inner store answers is passed to the
//! vault as it is and never written to the cache; the cache keeps bytes only when the vault
//! reports, through [`Store::verified`], that they passed every check (a page's tag and MAC,
//! a header's manifest digest, a wrapped key that opened, a manifest whose signature, chain
//! and high-water checks passed), plus the wrapped collection keys this device itself stored.
//! So a hostile server cannot plant anything in a device's cache; the most it can do is make
//! the device drop cached copies (through the change feed), which costs availability only.
//! Everything read from the cache is verified by the vault again, as if it came from the
//! server.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use crate::ids::CollectionId;
use crate::store::{ObjectAddress, PageAddress, RecordKind, Store, StoreError, Swap, Verified};
use crate::vault::Collection;

/// The most changes [`CachedStore::catch_up`] asks for per request (the server's maximum).
pub const CATCH_UP_PAGE: u32 = 1000;

/// The most answers one [`CachedStore::catch_up`] reads (a million changes) before it
/// returns with [`CatchUp::more`] set.
pub const MAX_CATCH_UP_ROUNDS: u32 = 1000;

/// The meta tree's key of the change-feed cursor.
const CURSOR: &[u8] = b"cursor";
/// The meta tree's key of the byte count of cached pages.
const PAGE_BYTES: &[u8] = b"page-bytes";

/// Whether `error` means the backend cannot be reached now (no connection, a time-out, a
/// gateway or server answering "unavailable" after the retries), as opposed to a refusal,
/// a TLS or pin failure, or a broken answer. [`CachedStore`] falls back to its verified
/// copies of mutable heads only for such errors (the default of
/// [`CacheOptions::offline_when`]).
///
/// With the `remote` feature it looks for a [`crate::remote::RemoteError`] among the
/// error's sources (`Unreachable`, `TimedOut`, `Server` with 502, 503 or 504); in any
/// backend, for a [`std::io::Error`] of a connection kind.
pub fn is_unavailable(error: &StoreError) -> bool {
    let mut source = std::error::Error::source(error);
    while let Some(e) = source {
        #[cfg(feature = "remote")]
        if let Some(r) = e.downcast_ref::<crate::remote::RemoteError>() {
            use crate::remote::RemoteError;
            return matches!(
                r,
                RemoteError::Unreachable
                    | RemoteError::TimedOut
                    | RemoteError::Server { status: 502..=504 }
            );
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind as K;
            return matches!(
                io.kind(),
                K::ConnectionRefused
                    | K::ConnectionReset
                    | K::ConnectionAborted
                    | K::NotConnected
                    | K::TimedOut
                    | K::HostUnreachable
                    | K::NetworkUnreachable
                    | K::NetworkDown
            );
        }
        source = e.source();
    }
    false
}

/// How a [`CachedStore`] is set up.
#[derive(Clone, Copy, Debug)]
pub struct CacheOptions {
    max_page_bytes: Option<u64>,
    sled_cache_bytes: u64,
    offline: fn(&StoreError) -> bool,
    offline_writes: bool,
}

impl Default for CacheOptions {
    fn default() -> Self {
        Self {
            max_page_bytes: None,
            sled_cache_bytes: 16 * 1024 * 1024,
            offline: is_unavailable,
            offline_writes: true,
        }
    }
}

impl CacheOptions {
    /// The defaults: no bound on the cached pages, sled's memory cache 16 MiB, fallback on
    /// [`is_unavailable`] errors.
    pub fn new() -> Self {
        Self::default()
    }

    /// Keeps the cached pages (the bulk of the bytes) under about `bytes`: above it, pages
    /// are evicted (docs/spec/client.md §8.5). Headers, wrapped keys and manifests are small
    /// and not counted.
    pub fn max_page_bytes(mut self, bytes: u64) -> Self {
        self.max_page_bytes = Some(bytes);
        self
    }

    /// The memory sled may use for its own cache of the database.
    pub fn sled_cache_bytes(mut self, bytes: u64) -> Self {
        self.sled_cache_bytes = bytes;
        self
    }

    /// Which inner-store errors mean "unreachable now" (default: [`is_unavailable`]).
    pub fn offline_when(mut self, offline: fn(&StoreError) -> bool) -> Self {
        self.offline = offline;
        self
    }

    /// Whether writes made while the inner store is unreachable are kept in the cache's
    /// outbox and uploaded before the next manifest swap (docs/spec/client.md §8.6; default
    /// on). Off: such writes fail with the inner store's error, and so do commits.
    pub fn offline_writes(mut self, on: bool) -> Self {
        self.offline_writes = on;
        self
    }
}

fn page_key(a: &PageAddress) -> [u8; 44] {
    let mut k = [0u8; 44];
    k[..40].copy_from_slice(&object_key(&ObjectAddress {
        collection: a.collection,
        object: a.object,
        version: a.version,
    }));
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

/// Outbox keys: a kind byte, then the item's cache key. Kept in this order when uploaded:
/// queued deletions, headers, collection keys, pages (all before the manifest swap).
const OUT_DELETE: u8 = b'd';
const OUT_HEADER: u8 = b'h';
const OUT_KEY: u8 = b'k';
const OUT_PAGE: u8 = b'p';

fn out_key(kind: u8, key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + key.len());
    k.push(kind);
    k.extend_from_slice(key);
    k
}

fn page_address_of(k: &[u8]) -> Option<PageAddress> {
    let object = object_address_of(k.get(..40)?)?;
    Some(PageAddress {
        collection: object.collection,
        object: object.object,
        version: object.version,
        index: u32::from_be_bytes(k.get(40..44)?.try_into().ok()?),
    })
}

fn collection_key_of(k: &[u8]) -> Option<(CollectionId, u32)> {
    Some((
        CollectionId::from_bytes(k.get(..16)?.try_into().ok()?),
        u32::from_be_bytes(k.get(16..20)?.try_into().ok()?),
    ))
}

fn object_address_of(k: &[u8]) -> Option<ObjectAddress> {
    Some(ObjectAddress {
        collection: CollectionId::from_bytes(k.get(..16)?.try_into().ok()?),
        object: crate::ids::ObjectId::from_bytes(k.get(16..32)?.try_into().ok()?),
        version: u64_of(k.get(32..40)?)?,
    })
}

fn sled_err(e: sled::Error) -> StoreError {
    StoreError::new(format!("local cache: {e}"))
}

fn u64_of(bytes: &[u8]) -> Option<u64> {
    <[u8; 8]>::try_from(bytes).ok().map(u64::from_be_bytes)
}

/// The byte count of the cached pages and where eviction goes on from.
struct PageBudget {
    bytes: u64,
    sweep: Vec<u8>,
}

/// A local cache of sealed bytes in front of the store `S` (docs/spec/client.md §8).
///
/// - Pages, object headers and wrapped collection keys never change at their address: they
///   are read from the cache first and from `S` on a miss.
/// - Manifests are read from `S` first; when `S` is unreachable ([`is_unavailable`]) the
///   last verified manifest of the collection is returned (the vault checks it again
///   against its high-water marks). [`Store::list_collections`] falls back the same way to
///   the collections the cache holds a manifest or key of.
/// - Writes go to `S`. While `S` is unreachable, pages, headers, keys and deletions wait in
///   the cache's **outbox** and are uploaded before the next manifest swap; the swap itself
///   then fails with `S`'s error and the vault parks the commit on the device
///   ([`Store::keeps_offline_writes`], docs/spec/client.md §8.6). A deletion removes the
///   cached copies first.
/// - Bytes enter the cache only through [`Store::verified`] and this device's own stored
///   collection keys; never as `S` answered them.
///
/// One cache directory serves one account on one server.
pub struct CachedStore<S> {
    inner: S,
    db: sled::Db,
    pages: sled::Tree,
    headers: sled::Tree,
    keys: sled::Tree,
    manifests: sled::Tree,
    /// Envelopes the vault opened (by record key), for shared collections offline.
    envelopes: sled::Tree,
    meta: sled::Tree,
    /// This device's writes not yet uploaded (docs/spec/client.md §8.6).
    outbox: sled::Tree,
    /// Set by an "unreachable" answer to a write: later writes go to the outbox without
    /// waiting for the inner store's retries again; cleared when an upload gets through.
    unreachable: AtomicBool,
    options: CacheOptions,
    budget: Mutex<PageBudget>,
    manifest_lock: Mutex<()>,
}

impl<S> std::fmt::Debug for CachedStore<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachedStore")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

/// One change of the server's feed (docs/spec/api.md §5.4), as [`ChangeFeed`] gives it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Change {
    /// A scope was created.
    ScopeCreated {
        /// The scope id.
        scope: [u8; 16],
        /// Collection or group.
        kind: ScopeKind,
    },
    /// A collection's manifest moved to `version`.
    Manifest {
        /// The collection.
        collection: CollectionId,
        /// The new manifest version.
        version: u64,
    },
    /// A wrapped collection key of a key epoch was stored.
    CollectionKey {
        /// The collection.
        collection: CollectionId,
        /// The key epoch.
        epoch: u32,
    },
    /// An object version (header and pages) was deleted.
    ObjectDeleted(ObjectAddress),
    /// An envelope was stored, replaced or deleted (its record key:
    /// `recipient‖owner‖target‖epoch`).
    Envelope {
        /// The envelope's record key.
        key: [u8; 52],
        /// Whether it was deleted.
        deleted: bool,
    },
    /// A roster version was inserted.
    Roster {
        /// The group.
        group: [u8; 16],
        /// The roster version.
        version: u64,
    },
    /// A scope and everything in it was deleted.
    ScopeDeleted {
        /// The scope id.
        scope: [u8; 16],
        /// Collection or group.
        kind: ScopeKind,
    },
}

/// The kind of a scope in the change feed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScopeKind {
    /// A collection.
    Collection,
    /// A security group.
    Group,
}

/// One answer of the change feed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChangePage {
    /// The changes after the cursor asked with, oldest first, with their positions.
    pub changes: Vec<(u64, Change)>,
    /// The cursor to ask with next.
    pub next: u64,
    /// Whether there may be more after `next`.
    pub more: bool,
    /// Changes of kinds this client does not know, skipped.
    pub skipped: u64,
}

impl ChangePage {
    /// Checks the answer to a request with `after` and `limit`: positions strictly
    /// increasing, after `after` and not beyond `next`; `next` not behind `after`, and ahead
    /// of it when `more` is set (so paging always ends); at most `limit` changes.
    pub fn check(&self, after: u64, limit: u32) -> Result<(), &'static str> {
        if self.next < after {
            return Err("change feed cursor went back");
        }
        if self.more && self.next == after {
            return Err("change feed says more but did not move");
        }
        let count = self.changes.len() as u64 + self.skipped;
        if count > u64::from(limit) {
            return Err("change feed answered more changes than asked");
        }
        let mut last = after;
        for (seq, _) in &self.changes {
            if *seq <= last || *seq > self.next {
                return Err("change feed positions out of order");
            }
            last = *seq;
        }
        Ok(())
    }
}

/// A source of the change feed: the server's `RemoteStore` (feature `remote`), or a
/// stand-in in tests.
pub trait ChangeFeed {
    /// The changes after the cursor `after`, at most `limit` (1–1000) of them.
    fn changes(&self, after: u64, limit: u32) -> Result<ChangePage, StoreError>;
}

/// What [`CachedStore::catch_up`] found. The feed is a hint from the server: integrity still
/// comes from the signed manifests the caller then refreshes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CatchUp {
    /// Collections whose manifest moved, with the newest version the feed named: refresh
    /// these (and only these), then [`CachedStore::prefetch`] them.
    pub collections: BTreeMap<CollectionId, u64>,
    /// Collections with a new key epoch (refresh them too: the vault loads the new keys).
    pub new_keys: BTreeSet<(CollectionId, u32)>,
    /// Object versions deleted; their cached header and pages were dropped.
    pub deleted_objects: Vec<ObjectAddress>,
    /// Collections deleted; everything cached of them was dropped.
    pub deleted_collections: BTreeSet<CollectionId>,
    /// Whether envelopes, rosters or group scopes changed (look at
    /// [`crate::Vault::incoming`] and the groups again).
    pub sharing_changed: bool,
    /// Changes of kinds this client does not know, skipped.
    pub skipped: u64,
    /// The cursor now kept in the cache.
    pub cursor: u64,
    /// The catch-up stopped after [`MAX_CATCH_UP_ROUNDS`] answers with more to read: call
    /// it again (after acting on this report).
    pub more: bool,
}

impl<S: Store> CachedStore<S> {
    /// Opens (or creates) the cache in the directory `path`, in front of `inner`.
    pub fn open(inner: S, path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::open_with(inner, path, CacheOptions::default())
    }

    /// Opens (or creates) the cache in `path` with `options`.
    pub fn open_with(
        inner: S,
        path: impl AsRef<Path>,
        options: CacheOptions,
    ) -> Result<Self, StoreError> {
        let db = crate::store::open_sled(
            &sled::Config::new()
                .path(path.as_ref())
                .cache_capacity(options.sled_cache_bytes),
        )
        .map_err(sled_err)?;
        let tree = |name: &str| db.open_tree(name).map_err(sled_err);
        let pages = tree("pages")?;
        let meta = tree("meta")?;
        let bytes = match meta.get(PAGE_BYTES).map_err(sled_err)? {
            Some(v) => u64_of(&v).ok_or_else(|| StoreError::new("local cache: bad page count"))?,
            // A cache made before the count (or an empty one): count once.
            None => {
                let mut total = 0u64;
                for value in pages.iter().values() {
                    total = total.saturating_add(value.map_err(sled_err)?.len() as u64);
                }
                total
            }
        };
        Ok(Self {
            inner,
            headers: tree("headers")?,
            keys: tree("collection-keys")?,
            manifests: tree("manifests")?,
            envelopes: tree("envelopes")?,
            outbox: tree("outbox")?,
            unreachable: AtomicBool::new(false),
            pages,
            meta,
            db,
            options,
            budget: Mutex::new(PageBudget {
                bytes,
                sweep: Vec::new(),
            }),
            manifest_lock: Mutex::new(()),
        })
    }

    /// The store behind the cache.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// Writes everything cached so far to disk (sled also does so by itself every
    /// half second).
    pub fn flush(&self) -> Result<(), StoreError> {
        self.db.flush().map(|_| ()).map_err(sled_err)
    }

    /// Whether the cache holds the page at `address` (a verified copy).
    pub fn holds_page(&self, address: &PageAddress) -> bool {
        matches!(self.pages.contains_key(page_key(address)), Ok(true))
    }

    /// Whether the cache holds the header of the object version at `address`.
    pub fn holds_header(&self, address: &ObjectAddress) -> bool {
        matches!(self.headers.contains_key(object_key(address)), Ok(true))
    }

    /// The version of the collection's manifest the cache holds, if any.
    pub fn cached_manifest_version(&self, collection: &CollectionId) -> Option<u64> {
        self.cached_manifest(collection)
            .ok()
            .flatten()
            .map(|(v, _)| v)
    }

    /// The bytes of cached pages (counted as they are added and dropped).
    pub fn page_bytes(&self) -> u64 {
        self.budget.lock().map(|b| b.bytes).unwrap_or(0)
    }

    /// The change-feed cursor kept in the cache (0: never caught up).
    pub fn cursor(&self) -> Result<u64, StoreError> {
        match self.meta.get(CURSOR).map_err(sled_err)? {
            None => Ok(0),
            Some(v) => u64_of(&v).ok_or_else(|| StoreError::new("local cache: bad cursor")),
        }
    }

    fn set_cursor(&self, cursor: u64) -> Result<(), StoreError> {
        self.meta
            .insert(CURSOR, &cursor.to_be_bytes())
            .map_err(sled_err)?;
        self.meta.flush().map(|_| ()).map_err(sled_err)
    }

    fn cached_manifest(
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
        let version = v
            .get(..8)
            .and_then(u64_of)
            .ok_or_else(|| StoreError::new("local cache: malformed manifest record"))?;
        Ok(Some((version, v[8..].to_vec())))
    }

    /// A cache read; a failing cache is a miss (logged), never a failed read.
    fn cached(&self, tree: &sled::Tree, key: &[u8]) -> Option<Vec<u8>> {
        match tree.get(key) {
            Ok(v) => v.map(|v| v.to_vec()),
            Err(e) => {
                tracing::warn!(target: "vault_core::cache", error = %e, "local cache read failed");
                None
            }
        }
    }

    fn offline(&self, e: &StoreError) -> bool {
        (self.options.offline)(e)
    }

    /// How many writes wait in the outbox (pages, headers, keys and deletions this device
    /// made while the inner store was unreachable; docs/spec/client.md §8.6).
    pub fn pending_uploads(&self) -> usize {
        self.outbox.len()
    }

    /// Uploads everything in the outbox to the inner store (queued deletions, headers,
    /// keys, then pages), removing each item once the inner store took it, and returns how
    /// many went. Stops at the first failure with the rest still queued. A manifest swap
    /// does the same by itself for its own collection first.
    pub fn push_outbox(&self) -> Result<usize, StoreError> {
        self.push_outbox_of(None)
    }

    /// [`CachedStore::push_outbox`] for one collection (`Some`) or all. Every outbox key is
    /// the kind byte, then a key that starts with the collection id.
    fn push_outbox_of(&self, only: Option<&CollectionId>) -> Result<usize, StoreError> {
        let mut sent = 0;
        for item in self.outbox.iter() {
            let (key, value) = item.map_err(sled_err)?;
            let malformed = || StoreError::new("local cache: malformed outbox entry");
            let body = key.get(1..).ok_or_else(malformed)?;
            if only.is_some_and(|c| body.get(..16) != Some(c.as_bytes().as_slice())) {
                continue;
            }
            let result = match key.first() {
                Some(&OUT_DELETE) => {
                    let a = object_address_of(body).ok_or_else(malformed)?;
                    self.inner.delete_object_version(&a)
                }
                Some(&OUT_HEADER) => {
                    let a = object_address_of(body).ok_or_else(malformed)?;
                    self.inner.put_header(&a, &value)
                }
                Some(&OUT_KEY) => {
                    let (c, epoch) = collection_key_of(body).ok_or_else(malformed)?;
                    self.inner.put_collection_key(&c, epoch, &value)
                }
                Some(&OUT_PAGE) => {
                    let a = page_address_of(body).ok_or_else(malformed)?;
                    self.inner.put_page(&a, &value)
                }
                _ => Err(malformed()),
            };
            if let Err(e) = result {
                if self.offline(&e) {
                    self.unreachable.store(true, Ordering::SeqCst);
                }
                return Err(e);
            }
            // Removed only if nobody queued the item again meanwhile.
            let _ = self
                .outbox
                .compare_and_swap(&key, Some(&value), None as Option<&[u8]>)
                .map_err(sled_err)?;
            sent += 1;
        }
        if sent > 0 {
            self.outbox.flush().map_err(sled_err)?;
        }
        self.unreachable.store(false, Ordering::SeqCst);
        Ok(sent)
    }

    /// Writes through the inner store (`upload`), or, when it is unreachable and offline
    /// writes are on, into the outbox.
    fn write_or_queue(
        &self,
        kind: u8,
        key: &[u8],
        value: &[u8],
        upload: impl FnOnce() -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        if self.options.offline_writes && self.unreachable.load(Ordering::SeqCst) {
            return self.enqueue(kind, key, value);
        }
        match upload() {
            Ok(()) => Ok(()),
            Err(e) if self.options.offline_writes && self.offline(&e) => {
                if !self.unreachable.swap(true, Ordering::SeqCst) {
                    tracing::info!(
                        target: "vault_core::cache",
                        "store unreachable: writes are kept in the local outbox"
                    );
                }
                self.enqueue(kind, key, value)
            }
            Err(e) => Err(e),
        }
    }

    /// Queues a write. A failure here is an error (never a logged miss): the write would
    /// be lost.
    fn enqueue(&self, kind: u8, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.outbox
            .insert(out_key(kind, key), value)
            .map_err(sled_err)?;
        Ok(())
    }

    /// Makes the outbox durable before a commit is parked on it.
    fn flush_outbox(&self) -> Result<(), StoreError> {
        self.outbox.flush().map(|_| ()).map_err(sled_err)
    }

    fn put_cached_page(&self, address: &PageAddress, sealed: &[u8]) -> Result<(), StoreError> {
        let key = page_key(address);
        let mut budget = self
            .budget
            .lock()
            .map_err(|_| StoreError::new("local cache lock poisoned"))?;
        let old = self.pages.insert(key, sealed).map_err(sled_err)?;
        budget.bytes = budget
            .bytes
            .saturating_add(sealed.len() as u64)
            .saturating_sub(old.map_or(0, |o| o.len() as u64));
        if let Some(max) = self.options.max_page_bytes {
            if budget.bytes > max {
                self.evict(&mut budget, max - max / 4, &key)?;
            }
        }
        self.meta
            .insert(PAGE_BYTES, &budget.bytes.to_be_bytes())
            .map_err(sled_err)?;
        Ok(())
    }

    /// Drops pages, sweeping through the key space from where the last eviction stopped
    /// (whole objects go together: their pages are adjacent), until at most `target`
    /// bytes remain. The page just added (`keep`) stays.
    fn evict(&self, budget: &mut PageBudget, target: u64, keep: &[u8]) -> Result<(), StoreError> {
        let start = budget.sweep.clone();
        let mut wrapped = false;
        let mut from = start.clone();
        while budget.bytes > target {
            let next = self
                .pages
                .range(from.clone()..)
                .keys()
                .next()
                .transpose()
                .map_err(sled_err)?;
            let Some(key) = next else {
                if wrapped || start.is_empty() {
                    break;
                }
                wrapped = true;
                from = Vec::new();
                continue;
            };
            if wrapped && &key[..] >= start.as_slice() {
                break;
            }
            let mut after = key.to_vec();
            after.push(0);
            from = after;
            if &key[..] == keep {
                continue;
            }
            if let Some(old) = self.pages.remove(&key).map_err(sled_err)? {
                budget.bytes = budget.bytes.saturating_sub(old.len() as u64);
            }
        }
        budget.sweep = from;
        Ok(())
    }

    fn drop_pages_with_prefix(&self, prefix: &[u8]) -> Result<(), StoreError> {
        let mut budget = self
            .budget
            .lock()
            .map_err(|_| StoreError::new("local cache lock poisoned"))?;
        for key in self.pages.scan_prefix(prefix).keys() {
            if let Some(old) = self
                .pages
                .remove(key.map_err(sled_err)?)
                .map_err(sled_err)?
            {
                budget.bytes = budget.bytes.saturating_sub(old.len() as u64);
            }
        }
        self.meta
            .insert(PAGE_BYTES, &budget.bytes.to_be_bytes())
            .map_err(sled_err)?;
        Ok(())
    }

    /// Drops everything cached of an object version.
    fn drop_object_version(&self, address: &ObjectAddress) -> Result<(), StoreError> {
        let prefix = object_key(address);
        self.headers.remove(prefix).map_err(sled_err)?;
        self.drop_pages_with_prefix(&prefix)
    }

    /// Drops everything cached of a collection (its manifest, keys, headers and pages).
    pub fn drop_collection(&self, collection: &CollectionId) -> Result<(), StoreError> {
        let prefix = collection.as_bytes();
        self.manifests.remove(prefix).map_err(sled_err)?;
        for tree in [&self.keys, &self.headers] {
            for key in tree.scan_prefix(prefix).keys() {
                tree.remove(key.map_err(sled_err)?).map_err(sled_err)?;
            }
        }
        self.drop_pages_with_prefix(prefix)
    }

    fn remember(&self, item: Verified<'_>) -> Result<(), StoreError> {
        match item {
            Verified::Page { address, sealed } => self.put_cached_page(address, sealed),
            Verified::Header { address, sealed } => self
                .headers
                .insert(object_key(address), sealed)
                .map(|_| ())
                .map_err(sled_err),
            Verified::CollectionKey {
                collection,
                epoch,
                wrapped,
            } => self
                .keys
                .insert(ckey_key(collection, epoch), wrapped)
                .map(|_| ())
                .map_err(sled_err),
            Verified::Envelope { key, sealed } => self
                .envelopes
                .insert(key, sealed)
                .map(|_| ())
                .map_err(sled_err),
            Verified::Manifest {
                collection,
                version,
                sealed,
            } => {
                let _guard = self
                    .manifest_lock
                    .lock()
                    .map_err(|_| StoreError::new("local cache lock poisoned"))?;
                // Never replace a newer verified manifest with an older one.
                if self
                    .cached_manifest(collection)?
                    .is_some_and(|(v, _)| v > version)
                {
                    return Ok(());
                }
                let mut record = Vec::with_capacity(8 + sealed.len());
                record.extend_from_slice(&version.to_be_bytes());
                record.extend_from_slice(sealed);
                self.manifests
                    .insert(collection.as_bytes(), record)
                    .map(|_| ())
                    .map_err(sled_err)
            }
        }
    }

    /// Catches up with the change feed `feed` from the cursor kept in the cache: pages
    /// through it (requests of [`CATCH_UP_PAGE`] changes while the server says there is
    /// more), drops the cached copies of deleted object versions and collections, keeps the
    /// new cursor after every answer, and reports which collections changed. The caller then
    /// refreshes those collections (their signed manifests are what is trusted) and
    /// prefetches their new objects ([`CachedStore::prefetch`]).
    ///
    /// Each answer is checked ([`ChangePage::check`]); a broken one fails the catch-up and
    /// leaves the cursor where the last good answer put it. At most
    /// [`MAX_CATCH_UP_ROUNDS`] answers are read per call ([`CatchUp::more`]).
    pub fn catch_up(&self, feed: &impl ChangeFeed) -> Result<CatchUp, StoreError> {
        let mut report = CatchUp::default();
        let mut cursor = self.cursor()?;
        for round in 1.. {
            let page = feed.changes(cursor, CATCH_UP_PAGE)?;
            page.check(cursor, CATCH_UP_PAGE)
                .map_err(|m| StoreError::new(format!("change feed: {m}")))?;
            for (_, change) in &page.changes {
                self.apply(change, &mut report)?;
            }
            report.skipped = report.skipped.saturating_add(page.skipped);
            self.set_cursor(page.next)?;
            cursor = page.next;
            if !page.more {
                break;
            }
            if round >= MAX_CATCH_UP_ROUNDS {
                // A feed that never ends (a hostile server) must not hold the caller.
                report.more = true;
                break;
            }
        }
        report.cursor = cursor;
        Ok(report)
    }

    fn apply(&self, change: &Change, report: &mut CatchUp) -> Result<(), StoreError> {
        match change {
            Change::Manifest {
                collection,
                version,
            } => {
                report.deleted_collections.remove(collection);
                let v = report.collections.entry(*collection).or_insert(0);
                *v = (*v).max(*version);
            }
            Change::CollectionKey { collection, epoch } => {
                report.new_keys.insert((*collection, *epoch));
            }
            Change::ObjectDeleted(address) => {
                self.drop_object_version(address)?;
                report.deleted_objects.push(*address);
            }
            Change::ScopeDeleted {
                scope,
                kind: ScopeKind::Collection,
            } => {
                let collection = CollectionId::from_bytes(*scope);
                self.drop_collection(&collection)?;
                report.collections.remove(&collection);
                report.new_keys.retain(|(c, _)| *c != collection);
                report.deleted_collections.insert(collection);
            }
            Change::ScopeCreated {
                kind: ScopeKind::Collection,
                ..
            } => {}
            Change::ScopeCreated {
                kind: ScopeKind::Group,
                ..
            }
            | Change::ScopeDeleted {
                kind: ScopeKind::Group,
                ..
            }
            | Change::Roster { .. } => report.sharing_changed = true,
            Change::Envelope { key, deleted } => {
                if *deleted {
                    // A withdrawn share: offline too, this device no longer opens it.
                    self.envelopes.remove(key).map_err(sled_err)?;
                }
                report.sharing_changed = true;
            }
        }
        Ok(())
    }

    /// Reads (and so verifies and caches) every live object of `collection` whose header the
    /// cache does not hold: after a catch-up and a refresh, exactly the objects written
    /// since. Objects already cached are not fetched again. Returns how many were read.
    ///
    /// `collection` must be a handle of a vault whose store is this cache (or reaches it):
    /// only what the vault verifies enters the cache.
    pub fn prefetch<T: Store>(
        &self,
        collection: &Collection<'_, T>,
    ) -> Result<usize, crate::Error> {
        let mut fetched = 0;
        let mut buf = zeroize::Zeroizing::new(vec![0u8; 64 * 1024]);
        for listing in collection.list() {
            let address = ObjectAddress {
                collection: collection.id(),
                object: listing.id,
                version: listing.version,
            };
            if self.holds_header(&address) {
                continue;
            }
            let mut reader = collection.open(&listing.name)?;
            loop {
                match reader.read(&mut buf[..]) {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(crate::object::io_to_vault_error(e)),
                }
            }
            fetched += 1;
        }
        Ok(fetched)
    }
}

impl<S: Store> Store for CachedStore<S> {
    fn put_page(&self, address: &PageAddress, page: &[u8]) -> Result<(), StoreError> {
        // Not cached: bytes enter when the vault has read and verified them (a page this
        // device wrote may lose to another device's write of the same object version).
        // Offline, it waits in the outbox.
        self.write_or_queue(OUT_PAGE, &page_key(address), page, || {
            self.inner.put_page(address, page)
        })
    }

    fn get_page(&self, address: &PageAddress) -> Result<Option<Vec<u8>>, StoreError> {
        let key = page_key(address);
        if let Some(page) = self.cached(&self.pages, &key) {
            return Ok(Some(page));
        }
        if let Some(page) = self.cached(&self.outbox, &out_key(OUT_PAGE, &key)) {
            return Ok(Some(page));
        }
        self.inner.get_page(address)
    }

    fn put_header(&self, address: &ObjectAddress, header: &[u8]) -> Result<(), StoreError> {
        self.write_or_queue(OUT_HEADER, &object_key(address), header, || {
            self.inner.put_header(address, header)
        })
    }

    fn get_header(&self, address: &ObjectAddress) -> Result<Option<Vec<u8>>, StoreError> {
        let key = object_key(address);
        if let Some(header) = self.cached(&self.headers, &key) {
            return Ok(Some(header));
        }
        if let Some(header) = self.cached(&self.outbox, &out_key(OUT_HEADER, &key)) {
            return Ok(Some(header));
        }
        self.inner.get_header(address)
    }

    fn delete_object_version(&self, address: &ObjectAddress) -> Result<(), StoreError> {
        self.drop_object_version(address)?;
        // What still waits in the outbox is simply dropped.
        let key = object_key(address);
        self.outbox
            .remove(out_key(OUT_HEADER, &key))
            .map_err(sled_err)?;
        for k in self.outbox.scan_prefix(out_key(OUT_PAGE, &key)).keys() {
            self.outbox.remove(k.map_err(sled_err)?).map_err(sled_err)?;
        }
        // Parts of it may have reached the store before it became unreachable: the
        // deletion is queued as well.
        self.write_or_queue(OUT_DELETE, &key, &[], || {
            self.inner.delete_object_version(address)
        })
    }

    fn put_collection_key(
        &self,
        collection: &CollectionId,
        epoch: u32,
        wrapped: &[u8],
    ) -> Result<(), StoreError> {
        let key = ckey_key(collection, epoch);
        self.write_or_queue(OUT_KEY, &key, wrapped, || {
            self.inner.put_collection_key(collection, epoch, wrapped)
        })?;
        // This device's own wrapping, now stored (or queued): kept, so that a collection
        // made here opens offline before it was ever read back.
        if let Err(e) = self.keys.insert(ckey_key(collection, epoch), wrapped) {
            tracing::warn!(target: "vault_core::cache", error = %e, "local cache write failed");
        }
        Ok(())
    }

    fn get_collection_key(
        &self,
        collection: &CollectionId,
        epoch: u32,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        if let Some(wrapped) = self.cached(&self.keys, &ckey_key(collection, epoch)) {
            return Ok(Some(wrapped));
        }
        match self.inner.get_collection_key(collection, epoch) {
            // The vault probes key epochs until the first absent one: offline, an epoch
            // not cached is absent (as any store may say).
            Err(e) if self.offline(&e) => Ok(None),
            other => other,
        }
    }

    fn get_manifest(
        &self,
        collection: &CollectionId,
    ) -> Result<Option<(u64, Vec<u8>)>, StoreError> {
        match self.inner.get_manifest(collection) {
            Err(e) if self.offline(&e) => match self.cached_manifest(collection) {
                Ok(Some(cached)) => Ok(Some(cached)),
                _ => Err(e),
            },
            other => other,
        }
    }

    fn swap_manifest(
        &self,
        collection: &CollectionId,
        expected: u64,
        version: u64,
        manifest: &[u8],
    ) -> Result<Swap, StoreError> {
        // Everything written before the swap reaches the store first (Store contract). Only
        // this collection's: an item of another collection the store refuses (e.g. over
        // quota) must not block this one's commits.
        let result = self.push_outbox_of(Some(collection)).and_then(|_| {
            self.inner
                .swap_manifest(collection, expected, version, manifest)
        });
        if let Err(e) = &result {
            if self.keeps_offline_writes(e) {
                // The vault parks the commit on what the outbox holds: make it durable.
                self.flush_outbox()?;
            }
        }
        result
    }

    fn list_collections(&self) -> Result<Vec<CollectionId>, StoreError> {
        match self.inner.list_collections() {
            Err(e) if self.offline(&e) => {
                let mut out = BTreeSet::new();
                for key in self.manifests.iter().keys() {
                    let key = key.map_err(sled_err)?;
                    if let Ok(id) = <[u8; 16]>::try_from(key.as_ref()) {
                        out.insert(CollectionId::from_bytes(id));
                    }
                }
                for key in self.keys.iter().keys() {
                    let key = key.map_err(sled_err)?;
                    if let Some(id) = key.get(..16).and_then(|k| <[u8; 16]>::try_from(k).ok()) {
                        out.insert(CollectionId::from_bytes(id));
                    }
                }
                Ok(out.into_iter().collect())
            }
            other => other,
        }
    }

    fn put_record(&self, kind: RecordKind, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.inner.put_record(kind, key, value)
    }

    fn insert_record(
        &self,
        kind: RecordKind,
        key: &[u8],
        value: &[u8],
    ) -> Result<bool, StoreError> {
        self.inner.insert_record(kind, key, value)
    }

    fn get_record(&self, kind: RecordKind, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        match self.inner.get_record(kind, key) {
            // Envelopes are read from the server first (a share can be withdrawn); offline,
            // the one the vault opened before, if any. They are probed like key epochs (a
            // collection key of the next epoch): one not cached is absent.
            Err(e) if kind == RecordKind::Envelope && self.offline(&e) => {
                Ok(self.cached(&self.envelopes, key))
            }
            other => other,
        }
    }

    fn list_records(&self, kind: RecordKind, prefix: &[u8]) -> Result<Vec<Vec<u8>>, StoreError> {
        self.inner.list_records(kind, prefix)
    }

    fn verified(&self, item: Verified<'_>) {
        if let Err(e) = self.remember(item) {
            tracing::warn!(target: "vault_core::cache", error = %e, "local cache write failed");
        }
        self.inner.verified(item);
    }

    fn keeps_offline_writes(&self, error: &StoreError) -> bool {
        self.options.offline_writes && self.offline(error)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;
    use crate::ids::ObjectId;
    use crate::store::MemoryStore;

    /// A memory store that can be switched "offline" (every call fails with `offline`).
    #[derive(Default)]
    struct Flaky {
        inner: MemoryStore,
        offline: AtomicBool,
    }

    impl Flaky {
        fn up(&self) -> Result<&MemoryStore, StoreError> {
            if self.offline.load(Ordering::SeqCst) {
                Err(StoreError::new("offline"))
            } else {
                Ok(&self.inner)
            }
        }
    }

    impl Store for Flaky {
        fn put_page(&self, a: &PageAddress, p: &[u8]) -> Result<(), StoreError> {
            self.up()?.put_page(a, p)
        }
        fn get_page(&self, a: &PageAddress) -> Result<Option<Vec<u8>>, StoreError> {
            self.up()?.get_page(a)
        }
        fn put_header(&self, a: &ObjectAddress, h: &[u8]) -> Result<(), StoreError> {
            self.up()?.put_header(a, h)
        }
        fn get_header(&self, a: &ObjectAddress) -> Result<Option<Vec<u8>>, StoreError> {
            self.up()?.get_header(a)
        }
        fn delete_object_version(&self, a: &ObjectAddress) -> Result<(), StoreError> {
            self.up()?.delete_object_version(a)
        }
        fn put_collection_key(&self, c: &CollectionId, e: u32, w: &[u8]) -> Result<(), StoreError> {
            self.up()?.put_collection_key(c, e, w)
        }
        fn get_collection_key(
            &self,
            c: &CollectionId,
            e: u32,
        ) -> Result<Option<Vec<u8>>, StoreError> {
            self.up()?.get_collection_key(c, e)
        }
        fn get_manifest(&self, c: &CollectionId) -> Result<Option<(u64, Vec<u8>)>, StoreError> {
            self.up()?.get_manifest(c)
        }
        fn swap_manifest(
            &self,
            c: &CollectionId,
            e: u64,
            v: u64,
            m: &[u8],
        ) -> Result<Swap, StoreError> {
            self.up()?.swap_manifest(c, e, v, m)
        }
        fn list_collections(&self) -> Result<Vec<CollectionId>, StoreError> {
            self.up()?.list_collections()
        }
        fn put_record(&self, k: RecordKind, key: &[u8], v: &[u8]) -> Result<(), StoreError> {
            self.up()?.put_record(k, key, v)
        }
        fn insert_record(&self, k: RecordKind, key: &[u8], v: &[u8]) -> Result<bool, StoreError> {
            self.up()?.insert_record(k, key, v)
        }
        fn get_record(&self, k: RecordKind, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
            self.up()?.get_record(k, key)
        }
        fn list_records(&self, k: RecordKind, p: &[u8]) -> Result<Vec<Vec<u8>>, StoreError> {
            self.up()?.list_records(k, p)
        }
    }

    fn offline_error(e: &StoreError) -> bool {
        e.to_string() == "offline"
    }

    fn open(dir: &Path) -> CachedStore<Flaky> {
        CachedStore::open_with(
            Flaky::default(),
            dir,
            CacheOptions::new().offline_when(offline_error),
        )
        .unwrap()
    }

    fn page_at(c: u8, o: u8, version: u64, index: u32) -> PageAddress {
        PageAddress {
            collection: CollectionId::from_bytes([c; 16]),
            object: ObjectId::from_bytes([o; 16]),
            version,
            index,
        }
    }

    fn object_of(p: &PageAddress) -> ObjectAddress {
        ObjectAddress {
            collection: p.collection,
            object: p.object,
            version: p.version,
        }
    }

    #[test]
    fn only_verified_bytes_enter() {
        let dir = tempfile::tempdir().unwrap();
        let cache = open(dir.path());
        let a = page_at(1, 2, 1, 0);
        // What the inner store answers (or what this device puts) is passed on, not kept.
        cache.put_page(&a, b"sealed page").unwrap();
        assert_eq!(cache.get_page(&a).unwrap().unwrap(), b"sealed page");
        cache.put_header(&object_of(&a), b"header").unwrap();
        assert_eq!(
            cache.get_header(&object_of(&a)).unwrap().unwrap(),
            b"header"
        );
        assert!(!cache.holds_page(&a));
        assert!(!cache.holds_header(&object_of(&a)));
        assert_eq!(cache.page_bytes(), 0);

        // Verified bytes are kept and read first.
        cache.verified(Verified::Page {
            address: &a,
            sealed: b"sealed page",
        });
        cache.verified(Verified::Header {
            address: &object_of(&a),
            sealed: b"header",
        });
        assert!(cache.holds_page(&a));
        assert_eq!(cache.page_bytes(), 11);
        cache.inner().offline.store(true, Ordering::SeqCst);
        assert_eq!(cache.get_page(&a).unwrap().unwrap(), b"sealed page");
        assert_eq!(
            cache.get_header(&object_of(&a)).unwrap().unwrap(),
            b"header"
        );
        // Not cached and offline: the inner store's error.
        assert!(cache.get_page(&page_at(1, 2, 1, 1)).is_err());

        // A deletion drops the cached copies, even when the inner store is unreachable
        // (the deletion then waits in the outbox, §8.6).
        cache.delete_object_version(&object_of(&a)).unwrap();
        assert_eq!(cache.pending_uploads(), 1);
        assert!(!cache.holds_page(&a));
        assert!(!cache.holds_header(&object_of(&a)));
        assert_eq!(cache.page_bytes(), 0);
    }

    #[test]
    fn mutable_heads_fall_back_only_when_offline() {
        let dir = tempfile::tempdir().unwrap();
        let cache = open(dir.path());
        let c = CollectionId::from_bytes([7; 16]);
        cache.put_collection_key(&c, 1, b"wrapped").unwrap();
        assert_eq!(cache.swap_manifest(&c, 0, 1, b"m1").unwrap(), Swap::Done);
        assert_eq!(cache.swap_manifest(&c, 1, 2, b"m2").unwrap(), Swap::Done);
        // An unverified manifest is not kept.
        assert_eq!(cache.cached_manifest_version(&c), None);
        cache.verified(Verified::Manifest {
            collection: &c,
            version: 2,
            sealed: b"m2",
        });
        // An older one never replaces a newer one.
        cache.verified(Verified::Manifest {
            collection: &c,
            version: 1,
            sealed: b"m1",
        });
        assert_eq!(cache.cached_manifest_version(&c), Some(2));

        // Online: the inner store's answer.
        assert!(cache.swap_manifest(&c, 2, 3, b"m3").is_ok());
        assert_eq!(cache.get_manifest(&c).unwrap().unwrap().0, 3);

        cache.inner().offline.store(true, Ordering::SeqCst);
        assert_eq!(
            cache.get_manifest(&c).unwrap().unwrap(),
            (2, b"m2".to_vec())
        );
        assert_eq!(cache.list_collections().unwrap(), vec![c]);
        // This device's own key is kept; the next epoch is absent offline.
        assert_eq!(
            cache.get_collection_key(&c, 1).unwrap().unwrap(),
            b"wrapped"
        );
        assert_eq!(cache.get_collection_key(&c, 2).unwrap(), None);
        assert_eq!(
            cache.get_record(RecordKind::Envelope, &[0; 52]).unwrap(),
            None
        );
        // No manifest cached: the error. Writes fail offline.
        assert!(cache
            .get_manifest(&CollectionId::from_bytes([8; 16]))
            .is_err());
        assert!(cache.swap_manifest(&c, 3, 4, b"m4").is_err());
        // A page written offline waits in the outbox (§8.6).
        cache.put_page(&page_at(7, 1, 1, 0), b"p").unwrap();
        assert_eq!(cache.pending_uploads(), 1);
        assert!(cache.get_record(RecordKind::Identity, &[0; 16]).is_err());

        // Other errors (a refusal, a broken answer) are never masked by the cache.
        let other_dir = tempfile::tempdir().unwrap();
        let refusing =
            CachedStore::open_with(Flaky::default(), other_dir.path(), CacheOptions::new())
                .unwrap();
        refusing.verified(Verified::Manifest {
            collection: &c,
            version: 2,
            sealed: b"m2",
        });
        refusing.inner().offline.store(true, Ordering::SeqCst);
        assert!(refusing.get_manifest(&c).is_err());
    }

    #[test]
    fn offline_writes_wait_in_the_outbox_and_go_before_the_swap() {
        let dir = tempfile::tempdir().unwrap();
        let c = CollectionId::from_bytes([9; 16]);
        let page = page_at(9, 1, 5, 0);
        let header = object_of(&page);
        let dropped = page_at(9, 2, 5, 0);
        {
            let cache = open(dir.path());
            cache.inner().offline.store(true, Ordering::SeqCst);
            cache.put_collection_key(&c, 1, b"wrapped").unwrap();
            cache.put_header(&header, b"header").unwrap();
            cache.put_page(&page, b"page").unwrap();
            // Read back from the outbox (the vault verifies them like any bytes).
            assert_eq!(cache.get_page(&page).unwrap().unwrap(), b"page");
            assert_eq!(cache.get_header(&header).unwrap().unwrap(), b"header");
            // Written and deleted offline: dropped from the outbox, the deletion queued
            // (parts may have reached the store before it went away).
            cache.put_page(&dropped, b"x").unwrap();
            cache.put_header(&object_of(&dropped), b"y").unwrap();
            cache.delete_object_version(&object_of(&dropped)).unwrap();
            assert!(cache.get_page(&dropped).is_err());
            // A page of another collection.
            cache.put_page(&page_at(8, 1, 1, 0), b"other").unwrap();
            assert_eq!(cache.pending_uploads(), 5);
            // The swap fails with the store's error, which the vault parks on.
            let e = cache.swap_manifest(&c, 0, 1, b"m1").unwrap_err();
            assert!(cache.keeps_offline_writes(&e));
            assert!(cache.push_outbox().is_err());
            assert_eq!(cache.pending_uploads(), 5);
            // With offline writes off, nothing is queued and nothing is parked.
            let off_dir = tempfile::tempdir().unwrap();
            let off = CachedStore::open_with(
                Flaky::default(),
                off_dir.path(),
                CacheOptions::new()
                    .offline_when(offline_error)
                    .offline_writes(false),
            )
            .unwrap();
            off.inner().offline.store(true, Ordering::SeqCst);
            assert!(off.put_page(&page, b"page").is_err());
            let e = off.swap_manifest(&c, 0, 1, b"m1").unwrap_err();
            assert!(!off.keeps_offline_writes(&e));
            assert_eq!(off.pending_uploads(), 0);
        }
        // The outbox survives a restart; online again, the swap uploads it first.
        let cache = open(dir.path());
        assert_eq!(cache.pending_uploads(), 5);
        assert_eq!(cache.swap_manifest(&c, 0, 1, b"m1").unwrap(), Swap::Done);
        // The swap sent its own collection's items only; the rest goes on request.
        assert_eq!(cache.pending_uploads(), 1);
        assert_eq!(cache.push_outbox().unwrap(), 1);
        assert_eq!(cache.pending_uploads(), 0);
        let store = &cache.inner().inner;
        assert_eq!(store.get_page(&page).unwrap().unwrap(), b"page");
        assert_eq!(store.get_header(&header).unwrap().unwrap(), b"header");
        assert_eq!(
            store.get_collection_key(&c, 1).unwrap().unwrap(),
            b"wrapped"
        );
        assert_eq!(store.get_page(&dropped).unwrap(), None);
        assert_eq!(store.get_manifest(&c).unwrap().unwrap().0, 1);
        // Nothing of it entered the verified cache.
        assert!(!cache.holds_page(&page) && !cache.holds_header(&header));
    }

    #[test]
    fn opened_envelopes_serve_offline_until_the_feed_deletes_them() {
        let dir = tempfile::tempdir().unwrap();
        let cache = open(dir.path());
        let key = [5u8; 52];
        cache
            .inner()
            .inner
            .put_record(RecordKind::Envelope, &key, b"from the server")
            .unwrap();
        // Online: the server's answer; nothing is kept until the vault reports it opened.
        assert_eq!(
            cache
                .get_record(RecordKind::Envelope, &key)
                .unwrap()
                .unwrap(),
            b"from the server"
        );
        cache.inner().offline.store(true, Ordering::SeqCst);
        assert_eq!(cache.get_record(RecordKind::Envelope, &key).unwrap(), None);
        cache.verified(Verified::Envelope {
            key: &key,
            sealed: b"opened",
        });
        assert_eq!(
            cache
                .get_record(RecordKind::Envelope, &key)
                .unwrap()
                .unwrap(),
            b"opened"
        );
        // A withdrawn share (the feed says the envelope was deleted) is dropped.
        let mut report = CatchUp::default();
        cache
            .apply(&Change::Envelope { key, deleted: true }, &mut report)
            .unwrap();
        assert!(report.sharing_changed);
        assert_eq!(cache.get_record(RecordKind::Envelope, &key).unwrap(), None);
    }

    struct Feed {
        pages: Mutex<VecDeque<(u64, ChangePage)>>,
    }

    impl ChangeFeed for Feed {
        fn changes(&self, after: u64, limit: u32) -> Result<ChangePage, StoreError> {
            assert_eq!(limit, CATCH_UP_PAGE);
            let (expected, page) = self.pages.lock().unwrap().pop_front().unwrap();
            assert_eq!(after, expected);
            Ok(page)
        }
    }

    #[test]
    fn catch_up_pages_through_the_feed_and_evicts() {
        let dir = tempfile::tempdir().unwrap();
        let cache = open(dir.path());
        let gone = page_at(1, 1, 1, 0);
        let kept = page_at(1, 2, 1, 0);
        let dropped_scope = CollectionId::from_bytes([3; 16]);
        for p in [&gone, &kept] {
            cache.verified(Verified::Page {
                address: p,
                sealed: b"page",
            });
            cache.verified(Verified::Header {
                address: &object_of(p),
                sealed: b"header",
            });
        }
        cache.verified(Verified::Manifest {
            collection: &dropped_scope,
            version: 1,
            sealed: b"m",
        });
        cache.verified(Verified::Page {
            address: &page_at(3, 9, 1, 0),
            sealed: b"page",
        });
        let c1 = CollectionId::from_bytes([1; 16]);
        let feed = Feed {
            pages: Mutex::new(VecDeque::from([
                (
                    0,
                    ChangePage {
                        changes: vec![
                            (
                                3,
                                Change::Manifest {
                                    collection: c1,
                                    version: 4,
                                },
                            ),
                            (5, Change::ObjectDeleted(object_of(&gone))),
                        ],
                        next: 9,
                        more: true,
                        skipped: 1,
                    },
                ),
                (
                    9,
                    ChangePage {
                        changes: vec![
                            (
                                10,
                                Change::Manifest {
                                    collection: c1,
                                    version: 5,
                                },
                            ),
                            (
                                11,
                                Change::ScopeDeleted {
                                    scope: [3; 16],
                                    kind: ScopeKind::Collection,
                                },
                            ),
                            (
                                12,
                                Change::Roster {
                                    group: [4; 16],
                                    version: 2,
                                },
                            ),
                        ],
                        next: 12,
                        more: false,
                        skipped: 0,
                    },
                ),
            ])),
        };
        let report = cache.catch_up(&feed).unwrap();
        assert_eq!(report.collections, BTreeMap::from([(c1, 5)]));
        assert_eq!(report.deleted_objects, vec![object_of(&gone)]);
        assert_eq!(report.deleted_collections, BTreeSet::from([dropped_scope]));
        assert!(report.sharing_changed);
        assert_eq!(report.skipped, 1);
        assert_eq!(report.cursor, 12);
        assert_eq!(cache.cursor().unwrap(), 12);
        assert!(!cache.holds_page(&gone) && !cache.holds_header(&object_of(&gone)));
        assert!(cache.holds_page(&kept) && cache.holds_header(&object_of(&kept)));
        assert_eq!(cache.cached_manifest_version(&dropped_scope), None);
        assert!(!cache.holds_page(&page_at(3, 9, 1, 0)));
        assert_eq!(cache.page_bytes(), 4);

        // A broken answer fails the catch-up and leaves the cursor.
        let broken = Feed {
            pages: Mutex::new(VecDeque::from([(
                12,
                ChangePage {
                    changes: vec![],
                    next: 12,
                    more: true,
                    skipped: 0,
                },
            )])),
        };
        assert!(cache.catch_up(&broken).is_err());
        assert_eq!(cache.cursor().unwrap(), 12);
        // The cursor survives a reopen.
        drop(cache);
        assert_eq!(open(dir.path()).cursor().unwrap(), 12);
    }

    /// A feed that never ends.
    struct Endless;

    impl ChangeFeed for Endless {
        fn changes(&self, after: u64, _limit: u32) -> Result<ChangePage, StoreError> {
            Ok(ChangePage {
                changes: vec![],
                next: after + 1,
                more: true,
                skipped: 0,
            })
        }
    }

    #[test]
    fn an_endless_feed_does_not_hold_the_caller() {
        let dir = tempfile::tempdir().unwrap();
        let cache = open(dir.path());
        let report = cache.catch_up(&Endless).unwrap();
        assert!(report.more);
        assert_eq!(report.cursor, u64::from(MAX_CATCH_UP_ROUNDS));
        assert_eq!(cache.cursor().unwrap(), report.cursor);
    }

    #[test]
    fn pages_of_the_feed_are_checked() {
        let m = |seq| {
            (
                seq,
                Change::Manifest {
                    collection: CollectionId::from_bytes([1; 16]),
                    version: 1,
                },
            )
        };
        let page = |changes: Vec<(u64, Change)>, next, more| ChangePage {
            changes,
            next,
            more,
            skipped: 0,
        };
        assert!(page(vec![m(6), m(7)], 9, true).check(5, 10).is_ok());
        assert!(page(vec![], 5, false).check(5, 10).is_ok());
        assert!(page(vec![], 4, false).check(5, 10).is_err()); // back
        assert!(page(vec![], 5, true).check(5, 10).is_err()); // no progress
        assert!(page(vec![m(5)], 9, false).check(5, 10).is_err()); // not after the cursor
        assert!(page(vec![m(7), m(6)], 9, false).check(5, 10).is_err()); // order
        assert!(page(vec![m(7), m(7)], 9, false).check(5, 10).is_err()); // duplicate
        assert!(page(vec![m(10)], 9, false).check(5, 10).is_err()); // beyond next
        assert!(page(vec![m(6), m(7)], 9, false).check(5, 1).is_err()); // too many
    }

    #[test]
    fn eviction_keeps_pages_under_the_bound() {
        let dir = tempfile::tempdir().unwrap();
        let options = CacheOptions::new()
            .offline_when(offline_error)
            .max_page_bytes(1000);
        let cache = CachedStore::open_with(Flaky::default(), dir.path(), options).unwrap();
        let page = [0x5a; 100];
        for o in 0..30u8 {
            let a = page_at(1, o, 1, 0);
            cache.verified(Verified::Page {
                address: &a,
                sealed: &page,
            });
            assert!(cache.holds_page(&a), "the page just added stays");
            assert!(cache.page_bytes() <= 1000);
        }
        let held = (0..30u8)
            .filter(|o| cache.holds_page(&page_at(1, *o, 1, 0)))
            .count();
        assert_eq!(held as u64 * 100, cache.page_bytes());
        let bytes = cache.page_bytes();
        drop(cache);
        let reopened = CachedStore::open_with(Flaky::default(), dir.path(), options).unwrap();
        assert_eq!(reopened.page_bytes(), bytes);
    }
}
