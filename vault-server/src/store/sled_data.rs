//! The data half of the sled backend ([`DataStore`] for [`SledBackend`]).
//!
//! Trees (docs/spec/storage.md, "sled"):
//!
//! | tree | key | value |
//! |---|---|---|
//! | `scopes` | id[16] | kind u8 ‖ owner[16] ‖ u64 bytes under the scope ‖ u64 seq of its creation |
//! | `owned` | owner[16] ‖ id[16] | kind u8 |
//! | `usage` | owner[16] | u64 bytes over the owner's scopes |
//! | `pages` | collection ‖ object ‖ u64 version ‖ u32 index | [`Location`] of the sealed page in a pack file (16 bytes) |
//! | `headers` | collection ‖ object ‖ u64 version | sealed header |
//! | `ckeys` | collection ‖ u32 epoch | wrapped collection key |
//! | `manifests` | collection | u64 version ‖ manifest |
//! | `envelopes` | recipient ‖ owner ‖ target ‖ u32 epoch | envelope |
//! | `env_targets` | target ‖ u32 epoch ‖ recipient ‖ owner | (empty): who holds which epoch |
//! | `rosters` | group ‖ u64 version | roster |
//! | `changes` | u64 seq | encoded [`ChangeKind`] (‖ former owner for a deleted scope) |
//!
//! Every data write takes one writer lock, changes its trees in one sled transaction (all
//! or nothing after a crash) and flushes before it returns. Writes that append a change
//! flush while still holding the lock, so a change is durable before any reader can see
//! it and sequence numbers are committed in order; page and header puts (not in the feed)
//! flush after releasing it, so concurrent uploads share their flushes.
//!
//! Page bytes live outside sled, in append-only pack files (`super::packs`): a page is
//! appended and `fsync`ed before its location is committed, and the space of a page that
//! is replaced or deleted is returned after the change is flushed.

use std::collections::{BTreeMap, HashMap};

use sled::transaction::{
    ConflictableTransactionError, ConflictableTransactionResult, TransactionError,
    TransactionalTree,
};
use sled::Transactional;

use super::packs::{Location, Packs};
use super::sled_backend::{err, SledBackend};
use super::{
    BackendError, Cas, Change, ChangeKind, Changes, Created, DataStore, EnvelopeKey, Id,
    InsertRoster, ManifestSwap, ObjectKey, PageKey, ScopeKind, Write,
};
use crate::auth::UserId;

/// The data trees of the sled backend.
pub(super) struct DataTrees {
    scopes: sled::Tree,
    owned: sled::Tree,
    usage: sled::Tree,
    pages: sled::Tree,
    headers: sled::Tree,
    ckeys: sled::Tree,
    manifests: sled::Tree,
    envelopes: sled::Tree,
    env_targets: sled::Tree,
    rosters: sled::Tree,
    changes: sled::Tree,
    /// The bytes of the pages `pages` points at.
    pub(super) packs: Packs,
    /// The lengths of the packs found at start-up, for [`DataTrees::check`].
    packs_found: HashMap<u32, u64>,
    /// The writer lock; holds the last sequence number used in `changes`.
    writer: std::sync::Mutex<u64>,
}

/// How many changes one `changes` call examines at most (visible or not).
const SCAN_BUDGET: usize = 10_000;

impl DataTrees {
    /// Opens the data trees of `db` and the pack files in `dir/packs`.
    pub(super) fn open(db: &sled::Db, dir: &std::path::Path) -> Result<Self, BackendError> {
        let tree = |name: &str| db.open_tree(name).map_err(err);
        let (packs, packs_found) = Packs::open(dir.join("packs"))?;
        let changes = tree("changes")?;
        let last = match changes.last().map_err(err)? {
            None => 0,
            Some((k, _)) => be_u64(&k).ok_or_else(|| corrupt("change key"))?,
        };
        Ok(Self {
            scopes: tree("scopes")?,
            owned: tree("owned")?,
            usage: tree("usage")?,
            pages: tree("pages")?,
            headers: tree("headers")?,
            ckeys: tree("ckeys")?,
            manifests: tree("manifests")?,
            envelopes: tree("envelopes")?,
            env_targets: tree("env_targets")?,
            rosters: tree("rosters")?,
            changes,
            packs,
            packs_found,
            writer: std::sync::Mutex::new(last),
        })
    }

    /// The start-up check of the data trees: key lengths and value shapes.
    pub(super) fn check(&self) -> Result<(), BackendError> {
        let keys = |tree: &sled::Tree, len: usize, what: &str| -> Result<(), BackendError> {
            for k in tree.iter().keys() {
                if k.map_err(err)?.len() != len {
                    return Err(corrupt(what));
                }
            }
            Ok(())
        };
        for item in self.scopes.iter() {
            let (k, v) = item.map_err(err)?;
            if k.len() != 16 || decode_scope(&v).is_none() {
                return Err(corrupt("scope record"));
            }
        }
        for item in self.usage.iter() {
            let (k, v) = item.map_err(err)?;
            if k.len() != 16 || be_u64(&v).is_none() {
                return Err(corrupt("usage record"));
            }
        }
        for item in self.manifests.iter() {
            let (k, v) = item.map_err(err)?;
            if k.len() != 16 || v.len() < 8 {
                return Err(corrupt("manifest record"));
            }
        }
        for item in self.changes.iter() {
            let (k, v) = item.map_err(err)?;
            if be_u64(&k).is_none() || decode_change(&v).is_none() {
                return Err(corrupt("change record"));
            }
        }
        keys(&self.owned, 32, "ownership index")?;
        for item in self.pages.iter() {
            let (k, v) = item.map_err(err)?;
            let at = Location::decode(&v).ok_or_else(|| corrupt("page location"))?;
            // Every location lies inside a pack that was there at start-up.
            let inside = at
                .end()
                .zip(self.packs_found.get(&at.pack))
                .is_some_and(|(end, len)| end <= *len);
            if k.len() != 44 || !inside {
                return Err(corrupt("page location"));
            }
        }
        keys(&self.headers, 40, "header key")?;
        keys(&self.ckeys, 20, "collection key record")?;
        keys(&self.envelopes, 52, "envelope key")?;
        keys(&self.env_targets, 52, "envelope index")?;
        keys(&self.rosters, 24, "roster key")
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, u64>, BackendError> {
        self.writer
            .lock()
            .map_err(|_| BackendError::new("sled: writer lock poisoned"))
    }
}

fn corrupt(what: &str) -> BackendError {
    BackendError::new(format!(
        "sled: corrupt {what} (refusing to start on a damaged store)"
    ))
}

fn be_u64(b: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(b.try_into().ok()?))
}

fn be_u32(b: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(b.try_into().ok()?))
}

fn id16(b: &[u8]) -> Option<Id> {
    b.try_into().ok()
}

/// A scope record: kind, owner, bytes under the scope, and the sequence number of its
/// creation (changes before it belong to an earlier scope of the same id).
fn decode_scope(v: &[u8]) -> Option<(ScopeKind, UserId, u64, u64)> {
    if v.len() != 33 {
        return None;
    }
    Some((
        ScopeKind::from_code(v[0])?,
        id16(&v[1..17])?,
        be_u64(&v[17..25])?,
        be_u64(&v[25..])?,
    ))
}

fn encode_scope(kind: ScopeKind, owner: &UserId, bytes: u64, created: u64) -> [u8; 33] {
    let mut v = [0u8; 33];
    v[0] = kind.code();
    v[1..17].copy_from_slice(owner);
    v[17..25].copy_from_slice(&bytes.to_be_bytes());
    v[25..].copy_from_slice(&created.to_be_bytes());
    v
}

fn page_key(k: &PageKey) -> [u8; 44] {
    let mut b = [0u8; 44];
    b[..16].copy_from_slice(&k.collection);
    b[16..32].copy_from_slice(&k.object);
    b[32..40].copy_from_slice(&k.version.to_be_bytes());
    b[40..].copy_from_slice(&k.index.to_be_bytes());
    b
}

fn object_key(k: &ObjectKey) -> [u8; 40] {
    let mut b = [0u8; 40];
    b[..16].copy_from_slice(&k.collection);
    b[16..32].copy_from_slice(&k.object);
    b[32..].copy_from_slice(&k.version.to_be_bytes());
    b
}

fn id_u32(id: &Id, n: u32) -> [u8; 20] {
    let mut b = [0u8; 20];
    b[..16].copy_from_slice(id);
    b[16..].copy_from_slice(&n.to_be_bytes());
    b
}

fn id_u64(id: &Id, n: u64) -> [u8; 24] {
    let mut b = [0u8; 24];
    b[..16].copy_from_slice(id);
    b[16..].copy_from_slice(&n.to_be_bytes());
    b
}

fn pair(a: &Id, b: &Id) -> [u8; 32] {
    let mut k = [0u8; 32];
    k[..16].copy_from_slice(a);
    k[16..].copy_from_slice(b);
    k
}

/// `target ‖ epoch ‖ recipient ‖ owner`: the envelope index key.
fn target_key(e: &EnvelopeKey) -> [u8; 52] {
    let mut k = [0u8; 52];
    k[..16].copy_from_slice(&e.target);
    k[16..20].copy_from_slice(&e.epoch.to_be_bytes());
    k[20..36].copy_from_slice(&e.recipient);
    k[36..].copy_from_slice(&e.owner);
    k
}

fn from_target_key(k: &[u8]) -> Option<EnvelopeKey> {
    if k.len() != 52 {
        return None;
    }
    Some(EnvelopeKey {
        target: id16(&k[..16])?,
        epoch: be_u32(&k[16..20])?,
        recipient: id16(&k[20..36])?,
        owner: id16(&k[36..])?,
    })
}

fn encode_change(kind: &ChangeKind, former_owner: Option<&UserId>) -> Vec<u8> {
    let mut v = Vec::with_capacity(70);
    match kind {
        ChangeKind::ScopeCreated { scope, kind } => {
            v.push(1);
            v.extend_from_slice(scope);
            v.push(kind.code());
        }
        ChangeKind::Manifest {
            collection,
            version,
        } => {
            v.push(2);
            v.extend_from_slice(&id_u64(collection, *version));
        }
        ChangeKind::CollectionKey { collection, epoch } => {
            v.push(3);
            v.extend_from_slice(&id_u32(collection, *epoch));
        }
        ChangeKind::ObjectDeleted(o) => {
            v.push(4);
            v.extend_from_slice(&object_key(o));
        }
        ChangeKind::Envelope(e) => {
            v.push(5);
            v.extend_from_slice(&e.to_bytes());
        }
        ChangeKind::EnvelopeDeleted(e) => {
            v.push(6);
            v.extend_from_slice(&e.to_bytes());
        }
        ChangeKind::Roster { group, version } => {
            v.push(7);
            v.extend_from_slice(&id_u64(group, *version));
        }
        ChangeKind::ScopeDeleted { scope, kind } => {
            v.push(8);
            v.extend_from_slice(scope);
            v.push(kind.code());
            v.extend_from_slice(former_owner.unwrap_or(&[0; 16]));
        }
    }
    v
}

/// Decodes a change record: the change and, for a deleted scope, its former owner.
fn decode_change(v: &[u8]) -> Option<(ChangeKind, Option<UserId>)> {
    let (&code, b) = v.split_first()?;
    let id_at = |at: usize| -> Option<Id> { id16(b.get(at..at + 16)?) };
    let u32_at = |at: usize| -> Option<u32> { be_u32(b.get(at..at + 4)?) };
    let u64_at = |at: usize| -> Option<u64> { be_u64(b.get(at..at + 8)?) };
    let kind_at = |at: usize| -> Option<ScopeKind> { ScopeKind::from_code(*b.get(at)?) };
    let (kind, len, owner) = match code {
        1 => (
            ChangeKind::ScopeCreated {
                scope: id_at(0)?,
                kind: kind_at(16)?,
            },
            17,
            None,
        ),
        2 => (
            ChangeKind::Manifest {
                collection: id_at(0)?,
                version: u64_at(16)?,
            },
            24,
            None,
        ),
        3 => (
            ChangeKind::CollectionKey {
                collection: id_at(0)?,
                epoch: u32_at(16)?,
            },
            20,
            None,
        ),
        4 => (
            ChangeKind::ObjectDeleted(ObjectKey {
                collection: id_at(0)?,
                object: id_at(16)?,
                version: u64_at(32)?,
            }),
            40,
            None,
        ),
        5 => (ChangeKind::Envelope(EnvelopeKey::from_bytes(b)?), 52, None),
        6 => (
            ChangeKind::EnvelopeDeleted(EnvelopeKey::from_bytes(b)?),
            52,
            None,
        ),
        7 => (
            ChangeKind::Roster {
                group: id_at(0)?,
                version: u64_at(16)?,
            },
            24,
            None,
        ),
        8 => (
            ChangeKind::ScopeDeleted {
                scope: id_at(0)?,
                kind: kind_at(16)?,
            },
            33,
            Some(id_at(17)?),
        ),
        _ => return None,
    };
    (b.len() == len).then_some((kind, owner))
}

type Abort = ConflictableTransactionError<Refused>;

fn abort(r: Refused) -> Abort {
    ConflictableTransactionError::Abort(r)
}

/// Why a data transaction changed nothing.
#[derive(Debug, Clone, Copy)]
enum Refused {
    NoScope,
    Quota,
    Conflict(u64),
    Exists,
    Missing,
    Corrupt,
}

/// The trees of one data transaction, by name.
struct Tx<'a> {
    scopes: &'a TransactionalTree,
    owned: &'a TransactionalTree,
    usage: &'a TransactionalTree,
    pages: &'a TransactionalTree,
    headers: &'a TransactionalTree,
    ckeys: &'a TransactionalTree,
    manifests: &'a TransactionalTree,
    envelopes: &'a TransactionalTree,
    env_targets: &'a TransactionalTree,
    rosters: &'a TransactionalTree,
    changes: &'a TransactionalTree,
}

impl Tx<'_> {
    fn scope(&self, id: &Id) -> Result<Option<(ScopeKind, UserId, u64, u64)>, Abort> {
        match self.scopes.get(id)? {
            None => Ok(None),
            Some(v) => decode_scope(&v).map(Some).ok_or(abort(Refused::Corrupt)),
        }
    }

    /// Adds `delta` (may be negative) to the bytes of scope `id` and to its owner's usage,
    /// refusing to exceed `quota` when the change grows the usage. `kind`: the kind the
    /// scope must have (`None`: any).
    fn charge(
        &self,
        id: &Id,
        kind: Option<ScopeKind>,
        delta: i128,
        quota: u64,
    ) -> Result<(), Abort> {
        let Some((k, owner, bytes, created)) = self.scope(id)? else {
            return Err(abort(Refused::NoScope));
        };
        if kind.is_some_and(|kind| kind != k) {
            return Err(abort(Refused::NoScope));
        }
        let used = match self.usage.get(owner)? {
            None => 0,
            Some(v) => be_u64(&v).ok_or(abort(Refused::Corrupt))?,
        };
        let new_used = i128::from(used) + delta;
        if delta > 0 && new_used > i128::from(quota) {
            return Err(abort(Refused::Quota));
        }
        let clamp = |x: i128| u64::try_from(x.max(0)).unwrap_or(u64::MAX);
        let new_bytes = clamp(i128::from(bytes) + delta);
        self.usage
            .insert(&owner[..], &clamp(new_used).to_be_bytes()[..])?;
        self.scopes
            .insert(&id[..], &encode_scope(k, &owner, new_bytes, created)[..])?;
        Ok(())
    }

    fn append(
        &self,
        seq: u64,
        kind: &ChangeKind,
        former_owner: Option<&UserId>,
    ) -> Result<(), Abort> {
        self.changes
            .insert(&seq.to_be_bytes()[..], encode_change(kind, former_owner))?;
        Ok(())
    }
}

/// `new − old` bytes.
fn delta(new: usize, old: Option<usize>) -> i128 {
    i128::try_from(new).unwrap_or(i128::MAX) - i128::try_from(old.unwrap_or(0)).unwrap_or(0)
}

fn len_of(v: &Option<sled::IVec>) -> Option<usize> {
    v.as_ref().map(|v| v.len())
}

fn corrupt_index() -> BackendError {
    BackendError::new("sled: corrupt envelope index")
}

impl SledBackend {
    /// Runs `f` in one transaction over every data tree. The caller holds the writer lock,
    /// so the transaction never conflicts with another writer.
    fn data_tx<R>(
        &self,
        f: impl Fn(&Tx<'_>) -> ConflictableTransactionResult<R, Refused>,
    ) -> Result<Result<R, Refused>, BackendError> {
        let d = &self.data;
        let result = (
            &d.scopes,
            &d.owned,
            &d.usage,
            &d.pages,
            &d.headers,
            &d.ckeys,
            &d.manifests,
            &d.envelopes,
            &d.env_targets,
            &d.rosters,
            &d.changes,
        )
            .transaction(|t| {
                f(&Tx {
                    scopes: &t.0,
                    owned: &t.1,
                    usage: &t.2,
                    pages: &t.3,
                    headers: &t.4,
                    ckeys: &t.5,
                    manifests: &t.6,
                    envelopes: &t.7,
                    env_targets: &t.8,
                    rosters: &t.9,
                    changes: &t.10,
                })
            });
        match result {
            Ok(r) => Ok(Ok(r)),
            Err(TransactionError::Abort(Refused::Corrupt)) => {
                Err(BackendError::new("sled: corrupt scope or usage record"))
            }
            Err(TransactionError::Abort(r)) => Ok(Err(r)),
            Err(TransactionError::Storage(e)) => Err(err(e)),
        }
    }

    /// A write that appends one change: under the lock, in one transaction with the next
    /// sequence number, flushed before the lock is released.
    fn with_change<R>(
        &self,
        f: impl Fn(&Tx<'_>, u64) -> ConflictableTransactionResult<R, Refused>,
    ) -> Result<Result<R, Refused>, BackendError> {
        let _w = self.write_gate();
        let mut last = self.data.lock()?;
        let seq = last
            .checked_add(1)
            .ok_or_else(|| BackendError::new("sled: change sequence exhausted"))?;
        let out = self.data_tx(|tx| f(tx, seq))?;
        if out.is_ok() {
            *last = seq;
            self.flush()?;
        }
        Ok(out)
    }

    /// A write without a change (pages, headers): under the lock, flushed after it.
    fn without_change<R>(
        &self,
        f: impl Fn(&Tx<'_>) -> ConflictableTransactionResult<R, Refused>,
    ) -> Result<Result<R, Refused>, BackendError> {
        let _w = self.write_gate();
        let out = {
            let _guard = self.data.lock()?;
            self.data_tx(f)?
        };
        if out.is_ok() {
            self.flush()?;
        }
        Ok(out)
    }

    /// Stores (or replaces) `value` under `key` in a tree of collection `collection` that is
    /// not in the feed (pages, headers), charging the difference in length.
    fn put_in_collection(
        &self,
        collection: &Id,
        tree: impl for<'a> Fn(&Tx<'a>) -> &'a TransactionalTree,
        key: &[u8],
        value: &[u8],
        quota: u64,
    ) -> Result<Write, BackendError> {
        let out = self.without_change(|tx| {
            let old = tree(tx).get(key)?;
            let d = delta(value.len(), len_of(&old));
            tx.charge(collection, Some(ScopeKind::Collection), d, quota)?;
            tree(tx).insert(key, value)?;
            Ok(())
        })?;
        Ok(write_outcome(out))
    }

    /// The scopes `user` owns, in byte order.
    pub(super) fn owned_scopes(&self, user: &UserId) -> Result<Vec<(Id, ScopeKind)>, BackendError> {
        let mut out = Vec::new();
        for item in self.data.owned.scan_prefix(user) {
            let (k, v) = item.map_err(err)?;
            let id = k.get(16..).and_then(id16);
            let kind = v.first().and_then(|&c| ScopeKind::from_code(c));
            match (id, kind) {
                (Some(id), Some(kind)) => out.push((id, kind)),
                _ => return Err(BackendError::new("sled: corrupt ownership index")),
            }
        }
        Ok(out)
    }

    fn scope_record(&self, id: &Id) -> Result<Option<(ScopeKind, UserId, u64, u64)>, BackendError> {
        match self.data.scopes.get(id).map_err(err)? {
            None => Ok(None),
            Some(v) => decode_scope(&v)
                .map(Some)
                .ok_or_else(|| BackendError::new("sled: corrupt scope record")),
        }
    }

    /// The envelopes of the current (largest) epoch of `scope`.
    fn current_holders(&self, scope: &Id) -> Result<Vec<EnvelopeKey>, BackendError> {
        let epoch = match self.data.env_targets.scan_prefix(scope).keys().next_back() {
            None => return Ok(Vec::new()),
            Some(k) => {
                from_target_key(&k.map_err(err)?)
                    .ok_or_else(corrupt_index)?
                    .epoch
            }
        };
        self.data
            .env_targets
            .scan_prefix(id_u32(scope, epoch))
            .keys()
            .map(|k| from_target_key(&k.map_err(err)?).ok_or_else(corrupt_index))
            .collect()
    }

    fn is_member(&self, user: &UserId, group: &Id) -> Result<bool, BackendError> {
        let Some((kind, owner, _, _)) = self.scope_record(group)? else {
            return Ok(false);
        };
        if kind != ScopeKind::Group {
            return Ok(false);
        }
        if owner == *user {
            return Ok(true);
        }
        Ok(self
            .current_holders(group)?
            .iter()
            .any(|e| e.recipient == *user && e.owner == *group))
    }

    fn reach_cached(
        &self,
        user: &UserId,
        scope: &Id,
        cache: &mut HashMap<Id, bool>,
    ) -> Result<bool, BackendError> {
        if let Some(&r) = cache.get(scope) {
            return Ok(r);
        }
        let r = self.can_reach(user, scope)?;
        cache.insert(*scope, r);
        Ok(r)
    }

    /// Whether an envelope to `recipient` is addressed to `user` (directly or through a
    /// group `user` is a member of), memoised per call.
    fn addressed_to(
        &self,
        user: &UserId,
        recipient: &Id,
        groups: &mut HashMap<Id, bool>,
    ) -> Result<bool, BackendError> {
        if recipient == user {
            return Ok(true);
        }
        if let Some(&m) = groups.get(recipient) {
            return Ok(m);
        }
        let m = self.is_member(user, recipient)?;
        groups.insert(*recipient, m);
        Ok(m)
    }

    /// Deletes a scope under the writer lock (held by the caller through `last`).
    fn delete_scope_locked(&self, last: &mut u64, id: &Id) -> Result<bool, BackendError> {
        let Some((kind, owner, _, _)) = self.scope_record(id)? else {
            return Ok(false);
        };
        // Scans outside the transaction are stable: every writer holds the lock.
        let d = &self.data;
        let collect = |tree: &sled::Tree| -> Result<Vec<sled::IVec>, BackendError> {
            tree.scan_prefix(id)
                .keys()
                .map(|k| k.map_err(err))
                .collect()
        };
        let pages = self.page_locations(id)?;
        let headers = collect(&d.headers)?;
        let ckeys = collect(&d.ckeys)?;
        let rosters = collect(&d.rosters)?;
        let targets = collect(&d.env_targets)?;
        let seq = last
            .checked_add(1)
            .ok_or_else(|| BackendError::new("sled: change sequence exhausted"))?;
        let out = self.data_tx(|tx| {
            let Some((_, _, bytes, _)) = tx.scope(id)? else {
                return Err(abort(Refused::NoScope));
            };
            tx.charge(id, None, -i128::from(bytes), u64::MAX)?;
            tx.scopes.remove(&id[..])?;
            tx.owned.remove(&pair(&owner, id)[..])?;
            for (k, _) in &pages {
                tx.pages.remove(k)?;
            }
            for k in &headers {
                tx.headers.remove(k)?;
            }
            for k in &ckeys {
                tx.ckeys.remove(k)?;
            }
            for k in &rosters {
                tx.rosters.remove(k)?;
            }
            for k in &targets {
                let e = from_target_key(k).ok_or(abort(Refused::Corrupt))?;
                tx.envelopes.remove(&e.to_bytes()[..])?;
                tx.env_targets.remove(k)?;
            }
            tx.manifests.remove(&id[..])?;
            tx.append(
                seq,
                &ChangeKind::ScopeDeleted { scope: *id, kind },
                Some(&owner),
            )?;
            Ok(())
        })?;
        if out.is_err() {
            return Ok(false);
        }
        *last = seq;
        self.flush()?;
        self.free_pages(&pages);
        Ok(true)
    }

    /// The pages whose keys start with `prefix`, with their locations.
    fn page_locations(&self, prefix: &[u8]) -> Result<Vec<(sled::IVec, Location)>, BackendError> {
        self.data
            .pages
            .scan_prefix(prefix)
            .map(|item| {
                let (k, v) = item.map_err(err)?;
                let at = Location::decode(&v)
                    .ok_or_else(|| BackendError::new("sled: corrupt page location"))?;
                Ok((k, at))
            })
            .collect()
    }

    /// Returns the space of pages whose removal is durable.
    fn free_pages(&self, pages: &[(sled::IVec, Location)]) {
        let at: Vec<Location> = pages.iter().map(|(_, at)| *at).collect();
        self.data.packs.free(&at);
    }
}

fn write_outcome(out: Result<(), Refused>) -> Write {
    match out {
        Ok(()) => Write::Done,
        Err(Refused::Quota) => Write::QuotaExceeded,
        Err(_) => Write::NoScope,
    }
}

impl DataStore for SledBackend {
    fn create_scope(
        &self,
        id: &Id,
        kind: ScopeKind,
        owner: &UserId,
    ) -> Result<Created, BackendError> {
        let out = self.with_change(|tx, seq| {
            if tx.scope(id)?.is_some() {
                return Err(abort(Refused::Exists));
            }
            tx.scopes
                .insert(&id[..], &encode_scope(kind, owner, 0, seq)[..])?;
            tx.owned.insert(&pair(owner, id)[..], &[kind.code()][..])?;
            tx.append(seq, &ChangeKind::ScopeCreated { scope: *id, kind }, None)?;
            Ok(())
        })?;
        match out {
            Ok(()) => Ok(Created::Created),
            Err(_) => match self.scope_record(id)? {
                Some((kind, owner, _, _)) => Ok(Created::Exists { kind, owner }),
                None => Err(BackendError::new("sled: scope creation refused")),
            },
        }
    }

    fn scope(&self, id: &Id) -> Result<Option<(ScopeKind, UserId)>, BackendError> {
        Ok(self.scope_record(id)?.map(|(k, o, _, _)| (k, o)))
    }

    fn delete_scope(&self, id: &Id) -> Result<bool, BackendError> {
        let _w = self.write_gate();
        let mut last = self.data.lock()?;
        self.delete_scope_locked(&mut last, id)
    }

    fn list_scopes(&self, user: &UserId) -> Result<Vec<(Id, ScopeKind)>, BackendError> {
        let mut out: BTreeMap<Id, ScopeKind> = self.owned_scopes(user)?.into_iter().collect();
        // Reached through envelopes: to the user, or to a group the user is a member of.
        let mut recipients = vec![*user];
        recipients.extend(
            out.iter()
                .filter(|(_, kind)| **kind == ScopeKind::Group)
                .map(|(id, _)| *id),
        );
        for e in self.list_envelopes(user)? {
            if e.owner == e.target && self.is_member(user, &e.target)? {
                recipients.push(e.target);
            }
        }
        recipients.sort_unstable();
        recipients.dedup();
        for r in &recipients {
            for e in self.list_envelopes(r)? {
                if out.contains_key(&e.target) {
                    continue;
                }
                if let Some((kind, _)) = self.scope(&e.target)? {
                    if self.can_reach(user, &e.target)? {
                        out.insert(e.target, kind);
                    }
                }
            }
        }
        Ok(out.into_iter().collect())
    }

    fn can_reach(&self, user: &UserId, scope: &Id) -> Result<bool, BackendError> {
        let Some((kind, owner, _, _)) = self.scope_record(scope)? else {
            return Ok(false);
        };
        if owner == *user {
            return Ok(true);
        }
        match kind {
            ScopeKind::Group => self.is_member(user, scope),
            ScopeKind::Collection => {
                for e in self.current_holders(scope)? {
                    if e.owner == owner
                        && (e.recipient == *user || self.is_member(user, &e.recipient)?)
                    {
                        return Ok(true);
                    }
                }
                Ok(false)
            }
        }
    }

    fn usage(&self, user: &UserId) -> Result<u64, BackendError> {
        match self.data.usage.get(user).map_err(err)? {
            None => Ok(0),
            Some(v) => be_u64(&v).ok_or_else(|| BackendError::new("sled: corrupt usage record")),
        }
    }

    fn put_page(&self, key: &PageKey, page: &[u8], quota: u64) -> Result<Write, BackendError> {
        let k = page_key(key);
        // A cheap refusal before any byte is written; the transaction decides.
        match self.scope_record(&key.collection)? {
            Some((ScopeKind::Collection, owner, _, _)) => {
                let replaced = match self.data.pages.get(k).map_err(err)? {
                    Some(v) => Location::decode(&v).map_or(0, |at| u64::from(at.len)),
                    None => 0,
                };
                let needed = self
                    .usage(&owner)?
                    .saturating_sub(replaced)
                    .saturating_add(page.len() as u64);
                if needed > quota {
                    return Ok(Write::QuotaExceeded);
                }
            }
            _ => return Ok(Write::NoScope),
        }
        let at = self.data.packs.append(page)?;
        let new = at.encode();
        let out = self.without_change(|tx| {
            let old = match tx.pages.get(&k[..])? {
                None => None,
                Some(v) => Some(Location::decode(&v).ok_or(abort(Refused::Corrupt))?),
            };
            let d = delta(page.len(), old.map(|o| o.len as usize));
            tx.charge(&key.collection, Some(ScopeKind::Collection), d, quota)?;
            tx.pages.insert(&k[..], &new[..])?;
            Ok(old)
        })?;
        // After the flush: the space of the page replaced, or of the one refused.
        match &out {
            Ok(Some(old)) => self.data.packs.free(&[*old]),
            Ok(None) => {}
            Err(_) => self.data.packs.free(&[at]),
        }
        Ok(write_outcome(out.map(|_| ())))
    }

    fn get_page(&self, key: &PageKey) -> Result<Option<Vec<u8>>, BackendError> {
        let _reading = self.data.packs.reading()?;
        match self.data.pages.get(page_key(key)).map_err(err)? {
            None => Ok(None),
            Some(v) => {
                let at = Location::decode(&v)
                    .ok_or_else(|| BackendError::new("sled: corrupt page location"))?;
                self.data.packs.read(at).map(Some)
            }
        }
    }

    fn put_header(
        &self,
        key: &ObjectKey,
        header: &[u8],
        quota: u64,
    ) -> Result<Write, BackendError> {
        self.put_in_collection(
            &key.collection,
            |tx| tx.headers,
            &object_key(key),
            header,
            quota,
        )
    }

    fn get_header(&self, key: &ObjectKey) -> Result<Option<Vec<u8>>, BackendError> {
        Ok(self
            .data
            .headers
            .get(object_key(key))
            .map_err(err)?
            .map(|v| v.to_vec()))
    }

    fn delete_object(&self, key: &ObjectKey) -> Result<bool, BackendError> {
        let k = object_key(key);
        let _w = self.write_gate();
        let mut last = self.data.lock()?;
        // Stable outside the transaction: every writer holds the lock.
        let pages = self.page_locations(&k)?;
        let seq = last
            .checked_add(1)
            .ok_or_else(|| BackendError::new("sled: change sequence exhausted"))?;
        let out = self.data_tx(|tx| {
            let mut freed = len_of(&tx.headers.remove(&k[..])?);
            for (p, at) in &pages {
                if tx.pages.remove(p)?.is_some() {
                    freed = Some(freed.unwrap_or(0).saturating_add(at.len as usize));
                }
            }
            let Some(freed) = freed else {
                return Err(abort(Refused::Missing));
            };
            if tx.scope(&key.collection)?.is_some() {
                tx.charge(&key.collection, None, -delta(freed, None), u64::MAX)?;
            }
            tx.append(seq, &ChangeKind::ObjectDeleted(*key), None)?;
            Ok(())
        })?;
        if out.is_err() {
            return Ok(false);
        }
        *last = seq;
        self.flush()?;
        drop(last);
        self.free_pages(&pages);
        Ok(true)
    }

    fn put_collection_key(
        &self,
        collection: &Id,
        epoch: u32,
        wrapped: &[u8],
        quota: u64,
    ) -> Result<Write, BackendError> {
        let k = id_u32(collection, epoch);
        let out = self.with_change(|tx, seq| {
            let old = tx.ckeys.get(k)?;
            let d = delta(wrapped.len(), len_of(&old));
            tx.charge(collection, Some(ScopeKind::Collection), d, quota)?;
            tx.ckeys.insert(&k[..], wrapped)?;
            let change = ChangeKind::CollectionKey {
                collection: *collection,
                epoch,
            };
            tx.append(seq, &change, None)?;
            Ok(())
        })?;
        Ok(write_outcome(out))
    }

    fn get_collection_key(
        &self,
        collection: &Id,
        epoch: u32,
    ) -> Result<Option<Vec<u8>>, BackendError> {
        Ok(self
            .data
            .ckeys
            .get(id_u32(collection, epoch))
            .map_err(err)?
            .map(|v| v.to_vec()))
    }

    fn get_manifest(&self, collection: &Id) -> Result<Option<(u64, Vec<u8>)>, BackendError> {
        match self.data.manifests.get(collection).map_err(err)? {
            None => Ok(None),
            Some(v) => {
                let version = v
                    .get(..8)
                    .and_then(be_u64)
                    .ok_or_else(|| BackendError::new("sled: corrupt manifest record"))?;
                Ok(Some((version, v[8..].to_vec())))
            }
        }
    }

    fn swap_manifest(
        &self,
        collection: &Id,
        expected: u64,
        version: u64,
        manifest: &[u8],
        quota: u64,
    ) -> Result<ManifestSwap, BackendError> {
        let out = self.with_change(|tx, seq| {
            match tx.scope(collection)? {
                Some((ScopeKind::Collection, _, _, _)) => {}
                _ => return Err(abort(Refused::NoScope)),
            }
            let old = tx.manifests.get(collection)?;
            let current = match &old {
                None => 0,
                Some(v) => v.get(..8).and_then(be_u64).ok_or(abort(Refused::Corrupt))?,
            };
            if current != expected || version <= expected {
                return Err(abort(Refused::Conflict(current)));
            }
            let mut value = Vec::with_capacity(8 + manifest.len());
            value.extend_from_slice(&version.to_be_bytes());
            value.extend_from_slice(manifest);
            // The version prefix is bookkeeping: only the manifest's own bytes are charged.
            let old_len = len_of(&old).map(|n| n.saturating_sub(8));
            let d = delta(manifest.len(), old_len);
            tx.charge(collection, Some(ScopeKind::Collection), d, quota)?;
            tx.manifests.insert(&collection[..], value)?;
            let change = ChangeKind::Manifest {
                collection: *collection,
                version,
            };
            tx.append(seq, &change, None)?;
            Ok(())
        })?;
        Ok(match out {
            Ok(()) => ManifestSwap::Cas(Cas::Done),
            Err(Refused::Conflict(current)) => ManifestSwap::Cas(Cas::Conflict { current }),
            Err(Refused::Quota) => ManifestSwap::QuotaExceeded,
            Err(_) => ManifestSwap::NoScope,
        })
    }

    fn put_envelope(
        &self,
        key: &EnvelopeKey,
        envelope: &[u8],
        quota: u64,
    ) -> Result<Write, BackendError> {
        let k = key.to_bytes();
        let out = self.with_change(|tx, seq| {
            let old = tx.envelopes.get(k)?;
            tx.charge(
                &key.target,
                None,
                delta(envelope.len(), len_of(&old)),
                quota,
            )?;
            tx.envelopes.insert(&k[..], envelope)?;
            tx.env_targets.insert(&target_key(key)[..], &[][..])?;
            tx.append(seq, &ChangeKind::Envelope(*key), None)?;
            Ok(())
        })?;
        Ok(write_outcome(out))
    }

    fn get_envelope(&self, key: &EnvelopeKey) -> Result<Option<Vec<u8>>, BackendError> {
        Ok(self
            .data
            .envelopes
            .get(key.to_bytes())
            .map_err(err)?
            .map(|v| v.to_vec()))
    }

    fn list_envelopes(&self, recipient: &Id) -> Result<Vec<EnvelopeKey>, BackendError> {
        self.data
            .envelopes
            .scan_prefix(recipient)
            .keys()
            .map(|k| {
                EnvelopeKey::from_bytes(&k.map_err(err)?)
                    .ok_or_else(|| BackendError::new("sled: corrupt envelope key"))
            })
            .collect()
    }

    fn delete_envelope(&self, key: &EnvelopeKey) -> Result<bool, BackendError> {
        let k = key.to_bytes();
        let out = self.with_change(|tx, seq| {
            let Some(old) = tx.envelopes.remove(&k[..])? else {
                return Err(abort(Refused::Missing));
            };
            tx.env_targets.remove(&target_key(key)[..])?;
            if tx.scope(&key.target)?.is_some() {
                tx.charge(&key.target, None, -delta(old.len(), None), u64::MAX)?;
            }
            tx.append(seq, &ChangeKind::EnvelopeDeleted(*key), None)?;
            Ok(())
        })?;
        Ok(out.is_ok())
    }

    fn insert_roster(
        &self,
        group: &Id,
        version: u64,
        roster: &[u8],
        quota: u64,
    ) -> Result<InsertRoster, BackendError> {
        let k = id_u64(group, version);
        let out = self.with_change(|tx, seq| {
            match tx.scope(group)? {
                Some((ScopeKind::Group, _, _, _)) => {}
                _ => return Err(abort(Refused::NoScope)),
            }
            if tx.rosters.get(k)?.is_some() {
                return Err(abort(Refused::Exists));
            }
            tx.charge(
                group,
                Some(ScopeKind::Group),
                delta(roster.len(), None),
                quota,
            )?;
            tx.rosters.insert(&k[..], roster)?;
            let change = ChangeKind::Roster {
                group: *group,
                version,
            };
            tx.append(seq, &change, None)?;
            Ok(())
        })?;
        Ok(match out {
            Ok(()) => InsertRoster::Done,
            Err(Refused::Exists) => InsertRoster::Exists,
            Err(Refused::Quota) => InsertRoster::QuotaExceeded,
            Err(_) => InsertRoster::NoScope,
        })
    }

    fn get_roster(&self, group: &Id, version: u64) -> Result<Option<Vec<u8>>, BackendError> {
        Ok(self
            .data
            .rosters
            .get(id_u64(group, version))
            .map_err(err)?
            .map(|v| v.to_vec()))
    }

    fn list_rosters(&self, group: &Id) -> Result<Vec<u64>, BackendError> {
        self.data
            .rosters
            .scan_prefix(group)
            .keys()
            .map(|k| {
                k.map_err(err)?
                    .get(16..)
                    .and_then(be_u64)
                    .ok_or_else(|| BackendError::new("sled: corrupt roster key"))
            })
            .collect()
    }

    fn changes(&self, user: &UserId, after: u64, limit: usize) -> Result<Changes, BackendError> {
        let mut reach = HashMap::new();
        let mut groups = HashMap::new();
        let mut out = Changes {
            changes: Vec::new(),
            next: after,
            more: false,
        };
        let Some(start) = after.checked_add(1) else {
            return Ok(out);
        };
        // The creation sequence number of each scope met: a change before it belongs to an
        // earlier, deleted scope of the same id and is shown to nobody but its former owner.
        let mut born: HashMap<Id, Option<u64>> = HashMap::new();
        for (examined, item) in self.data.changes.range(start.to_be_bytes()..).enumerate() {
            if out.changes.len() >= limit || examined >= SCAN_BUDGET {
                out.more = true;
                break;
            }
            let (k, v) = item.map_err(err)?;
            let seq = be_u64(&k).ok_or_else(|| BackendError::new("sled: corrupt change key"))?;
            let (kind, former) = decode_change(&v)
                .ok_or_else(|| BackendError::new("sled: corrupt change record"))?;
            out.next = seq;
            let visible = match &kind {
                ChangeKind::ScopeDeleted { .. } => former.as_ref() == Some(user),
                other => {
                    let scope = other.scope();
                    let created = match born.get(&scope) {
                        Some(c) => *c,
                        None => {
                            let c = self.scope_record(&scope)?.map(|r| r.3);
                            born.insert(scope, c);
                            c
                        }
                    };
                    created.is_some_and(|c| seq >= c)
                        && match other {
                            ChangeKind::Envelope(e) | ChangeKind::EnvelopeDeleted(e) => {
                                self.addressed_to(user, &e.recipient, &mut groups)?
                                    || self.reach_cached(user, &e.target, &mut reach)?
                            }
                            _ => self.reach_cached(user, &scope, &mut reach)?,
                        }
                }
            };
            if visible {
                out.changes.push(Change { seq, kind });
            }
        }
        Ok(out)
    }
}
