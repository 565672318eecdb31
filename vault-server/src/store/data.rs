//! The data half of the storage seam: collections (pages, object headers, wrapped
//! collection keys, the manifest head), groups (roster versions), envelopes, and the change
//! feed. Everything stored here is opaque to the server: sealed pages and headers, signed
//! manifests, rosters and envelopes that only clients can verify.
//!
//! The namespace mirrors the client's `vault_core::Store` (docs/spec/pages.md §7,
//! handover.md §5), so the sync client of issue #7 maps onto it one to one.
//!
//! # Scopes, ownership and access (defence in depth; docs/spec/api.md §4)
//!
//! A *scope* is a collection or a group, named by a 16-byte id the client chose (random or
//! a keyed hash: unguessable). The account that creates a scope owns it. Everything stored
//! under a scope is charged to its owner's quota.
//!
//! The server derives who else may reach a scope from the *keys* of the envelopes it holds
//! (it never parses an envelope or a roster):
//!
//! - the **current epoch** of a scope `s` is the largest `epoch` of any envelope with
//!   `target = s` (0 if none);
//! - an account `u` is a **member** of group `g` if it owns `g` or holds an envelope
//!   `(recipient = u, owner = g, target = g, epoch = current epoch of g)`;
//! - an account `u` may **reach** collection `c` if it owns `c`, or there is an envelope
//!   `(recipient = r, owner = owner of c, target = c, epoch = current epoch of c)` where `r`
//!   is `u` or a group `u` is a member of.
//!
//! So a member removed from a group (a new group epoch whose envelopes skip them), or a user
//! dropped by `unshare` (a new collection epoch), loses access on the server as soon as the
//! new epoch's envelopes are stored — the cryptography already denied them the new key.

use super::{BackendError, Cas};
use crate::auth::UserId;

/// A 16-byte id chosen by a client: a collection, object or group id.
pub type Id = [u8; 16];

/// The kind of a scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ScopeKind {
    /// A collection: pages, headers, collection keys, a manifest.
    Collection,
    /// A group: roster versions.
    Group,
}

impl ScopeKind {
    /// The one-byte code used in stored records and the change feed.
    pub fn code(self) -> u8 {
        match self {
            ScopeKind::Collection => 1,
            ScopeKind::Group => 2,
        }
    }

    /// The kind with code `c`.
    pub fn from_code(c: u8) -> Option<Self> {
        match c {
            1 => Some(ScopeKind::Collection),
            2 => Some(ScopeKind::Group),
            _ => None,
        }
    }
}

/// Outcome of [`DataStore::create_scope`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Created {
    /// The scope is new and belongs to the caller.
    Created,
    /// The scope existed already (a repeated create by its owner is not an error for the
    /// caller to decide; the API answers 200 to the owner and 409 to anyone else).
    Exists {
        /// Its kind.
        kind: ScopeKind,
        /// Its owner.
        owner: UserId,
    },
}

/// Outcome of a write that stores bytes under a scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Write {
    /// Stored and durable.
    Done,
    /// The scope does not exist (or is of the other kind); nothing changed.
    NoScope,
    /// The scope owner's usage would exceed `quota`; nothing changed.
    QuotaExceeded,
}

/// Outcome of a manifest compare-and-swap ([`DataStore::swap_manifest`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManifestSwap {
    /// Swapped, as [`Cas`] says, or the collection is missing / over quota.
    Cas(Cas),
    /// The collection does not exist.
    NoScope,
    /// The owner's usage would exceed the quota.
    QuotaExceeded,
}

/// The address of one sealed page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PageKey {
    /// Collection.
    pub collection: Id,
    /// Object.
    pub object: Id,
    /// Object version.
    pub version: u64,
    /// Page index.
    pub index: u32,
}

/// The address of one object version (its sealed header and its pages).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey {
    /// Collection.
    pub collection: Id,
    /// Object.
    pub object: Id,
    /// Object version.
    pub version: u64,
}

/// The key of an envelope (docs/spec/handover.md §5): whom it is for, whose scope it opens,
/// which scope and which key epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EnvelopeKey {
    /// The recipient: an account id or a group id.
    pub recipient: Id,
    /// The owner field of the grant: the collection owner's account id, or the group id
    /// for a group secret.
    pub owner: Id,
    /// The scope the envelope opens (a collection or a group).
    pub target: Id,
    /// The key epoch.
    pub epoch: u32,
}

impl EnvelopeKey {
    /// The 52-byte encoding `recipient ‖ owner ‖ target ‖ u32 epoch` (the client store's key).
    pub fn to_bytes(&self) -> [u8; 52] {
        let mut k = [0u8; 52];
        k[..16].copy_from_slice(&self.recipient);
        k[16..32].copy_from_slice(&self.owner);
        k[32..48].copy_from_slice(&self.target);
        k[48..].copy_from_slice(&self.epoch.to_be_bytes());
        k
    }

    /// Decodes [`EnvelopeKey::to_bytes`]; `None` unless exactly 52 bytes.
    pub fn from_bytes(b: &[u8]) -> Option<Self> {
        let b: &[u8; 52] = b.try_into().ok()?;
        let mut recipient = [0u8; 16];
        let mut owner = [0u8; 16];
        let mut target = [0u8; 16];
        let mut epoch = [0u8; 4];
        recipient.copy_from_slice(&b[..16]);
        owner.copy_from_slice(&b[16..32]);
        target.copy_from_slice(&b[32..48]);
        epoch.copy_from_slice(&b[48..]);
        Some(Self {
            recipient,
            owner,
            target,
            epoch: u32::from_be_bytes(epoch),
        })
    }
}

/// What changed, in one change-feed entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    /// A scope was created.
    ScopeCreated {
        /// The scope.
        scope: Id,
        /// Its kind.
        kind: ScopeKind,
    },
    /// A collection's manifest head moved to `version`.
    Manifest {
        /// The collection.
        collection: Id,
        /// The new manifest version.
        version: u64,
    },
    /// A wrapped collection key of `epoch` was stored.
    CollectionKey {
        /// The collection.
        collection: Id,
        /// The key epoch.
        epoch: u32,
    },
    /// An object version (header and pages) was deleted.
    ObjectDeleted(ObjectKey),
    /// An envelope was stored (or replaced).
    Envelope(EnvelopeKey),
    /// An envelope was deleted.
    EnvelopeDeleted(EnvelopeKey),
    /// A roster version was inserted.
    Roster {
        /// The group.
        group: Id,
        /// The roster version.
        version: u64,
    },
    /// A scope and everything under it was deleted.
    ScopeDeleted {
        /// The scope.
        scope: Id,
        /// Its kind.
        kind: ScopeKind,
    },
}

impl ChangeKind {
    /// The scope the change belongs to: the collection or group it is under, or for an
    /// envelope its target. A change is visible to the accounts that may reach this scope
    /// (after the change), and an envelope change also to its recipient.
    pub fn scope(&self) -> Id {
        match self {
            ChangeKind::ScopeCreated { scope, .. } | ChangeKind::ScopeDeleted { scope, .. } => {
                *scope
            }
            ChangeKind::Manifest { collection, .. }
            | ChangeKind::CollectionKey { collection, .. } => *collection,
            ChangeKind::ObjectDeleted(o) => o.collection,
            ChangeKind::Envelope(e) | ChangeKind::EnvelopeDeleted(e) => e.target,
            ChangeKind::Roster { group, .. } => *group,
        }
    }
}

/// One entry of the change feed: a position (`seq`, strictly increasing over the whole
/// store, so every account's feed is monotonic) and what changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Change {
    /// The position; a device stores the last one it saw as its cursor.
    pub seq: u64,
    /// What changed.
    pub kind: ChangeKind,
}

/// A page of the change feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Changes {
    /// The changes after the cursor that the account may see, oldest first, at most the
    /// limit asked for.
    pub changes: Vec<Change>,
    /// The cursor to ask from next time: the `seq` of the last change examined (visible or
    /// not), so a device never rescans what it was not allowed to see. Equal to the cursor
    /// asked with when nothing is newer.
    pub next: u64,
    /// `true` if there may be more changes after `next`.
    pub more: bool,
}

/// Storage of the opaque data of every account.
///
/// Contract (tested by `tests/store_contract.rs`, run unchanged against each backend):
///
/// - Every write that returns `Ok(Done)` (or `Ok(true)`, `Ok(Cas(Cas::Done))`) is durable:
///   it survives a crash of the process (sled: flushed; PostgreSQL: committed).
/// - A write under a scope that does not exist, or exists with the other kind, returns
///   `NoScope` and changes nothing.
/// - Each scope has a usage in bytes: the sum of the lengths of everything stored under it
///   (pages, headers, collection keys, the manifest head, rosters, and the envelopes that
///   target it). An account's usage is the sum over the scopes it owns. A write that would
///   take the owner's usage above `quota` returns `QuotaExceeded` and changes nothing;
///   replacing a value counts only the difference; deletes give the bytes back.
/// - Every state change appends exactly one [`Change`] with a new, larger `seq`, in the
///   same atomic step as the change itself (page and header puts are not in the feed: the
///   manifest that references them is). A `Change` is never visible before its data.
/// - Reads of anything missing give `None` / empty lists, never an error.
pub trait DataStore: Send + Sync {
    /// Creates a scope owned by `owner`, or reports the existing one.
    fn create_scope(
        &self,
        id: &Id,
        kind: ScopeKind,
        owner: &UserId,
    ) -> Result<Created, BackendError>;
    /// The kind and owner of a scope.
    fn scope(&self, id: &Id) -> Result<Option<(ScopeKind, UserId)>, BackendError>;
    /// Deletes a scope and everything under it: pages, headers, keys, manifest, rosters, and
    /// every envelope whose `target` is the scope. `false` if there was none.
    fn delete_scope(&self, id: &Id) -> Result<bool, BackendError>;
    /// The scopes `user` owns, and the collections and groups it may reach through envelopes
    /// (see the module documentation), in byte order of id, without repeats.
    fn list_scopes(&self, user: &UserId) -> Result<Vec<(Id, ScopeKind)>, BackendError>;
    /// Whether `user` may reach `scope` (owner, member of a group, or recipient of a
    /// current-epoch envelope of a collection; module documentation).
    fn can_reach(&self, user: &UserId, scope: &Id) -> Result<bool, BackendError>;
    /// The page at `key` if `user` may reach its collection (owner, or [`can_reach`]), in
    /// one call: the hot read path. `None` both when the page is missing and when the user
    /// may not reach it (the API answers both with the same 404).
    ///
    /// [`can_reach`]: DataStore::can_reach
    fn get_page_as(&self, user: &UserId, key: &PageKey) -> Result<Option<Vec<u8>>, BackendError> {
        match self.scope(&key.collection)? {
            Some((ScopeKind::Collection, owner))
                if owner == *user || self.can_reach(user, &key.collection)? =>
            {
                self.get_page(key)
            }
            _ => Ok(None),
        }
    }
    /// The bytes charged to `user` (the sum over the scopes it owns).
    fn usage(&self, user: &UserId) -> Result<u64, BackendError>;

    /// Stores (or replaces) a sealed page.
    fn put_page(&self, key: &PageKey, page: &[u8], quota: u64) -> Result<Write, BackendError>;
    /// Reads a sealed page.
    fn get_page(&self, key: &PageKey) -> Result<Option<Vec<u8>>, BackendError>;
    /// Stores (or replaces) the sealed header of an object version.
    fn put_header(&self, key: &ObjectKey, header: &[u8], quota: u64)
        -> Result<Write, BackendError>;
    /// Reads the sealed header of an object version.
    fn get_header(&self, key: &ObjectKey) -> Result<Option<Vec<u8>>, BackendError>;
    /// Deletes an object version's header and all its pages; `false` if it had neither.
    fn delete_object(&self, key: &ObjectKey) -> Result<bool, BackendError>;

    /// Stores (or replaces) the owner's wrapped collection key of `epoch`.
    fn put_collection_key(
        &self,
        collection: &Id,
        epoch: u32,
        wrapped: &[u8],
        quota: u64,
    ) -> Result<Write, BackendError>;
    /// Reads a wrapped collection key.
    fn get_collection_key(
        &self,
        collection: &Id,
        epoch: u32,
    ) -> Result<Option<Vec<u8>>, BackendError>;
    /// The manifest head of a collection and its version.
    fn get_manifest(&self, collection: &Id) -> Result<Option<(u64, Vec<u8>)>, BackendError>;
    /// Replaces the manifest head with `manifest` at `version` if the stored version is
    /// `expected` (0: none yet) and `version > expected`; otherwise
    /// `Cas(Conflict { current })` and nothing changes. The server cannot check the signed
    /// version inside the manifest; clients do (pages.md §6).
    fn swap_manifest(
        &self,
        collection: &Id,
        expected: u64,
        version: u64,
        manifest: &[u8],
        quota: u64,
    ) -> Result<ManifestSwap, BackendError>;

    /// Stores (or replaces) an envelope, charged to the scope `key.target`.
    fn put_envelope(
        &self,
        key: &EnvelopeKey,
        envelope: &[u8],
        quota: u64,
    ) -> Result<Write, BackendError>;
    /// Reads an envelope.
    fn get_envelope(&self, key: &EnvelopeKey) -> Result<Option<Vec<u8>>, BackendError>;
    /// The keys of the envelopes addressed to `recipient`, in byte order.
    fn list_envelopes(&self, recipient: &Id) -> Result<Vec<EnvelopeKey>, BackendError>;
    /// Deletes an envelope; `false` if there was none.
    fn delete_envelope(&self, key: &EnvelopeKey) -> Result<bool, BackendError>;

    /// Inserts roster `version` of `group` if there is none at that version: the first
    /// writer of a version wins, a later one gets [`InsertRoster::Exists`].
    fn insert_roster(
        &self,
        group: &Id,
        version: u64,
        roster: &[u8],
        quota: u64,
    ) -> Result<InsertRoster, BackendError>;
    /// Reads a roster version.
    fn get_roster(&self, group: &Id, version: u64) -> Result<Option<Vec<u8>>, BackendError>;
    /// The roster versions stored for `group`, ascending.
    fn list_rosters(&self, group: &Id) -> Result<Vec<u64>, BackendError>;

    /// The changes with `seq > after` that `user` may see, oldest first, at most `limit`
    /// (see [`Changes`]). Visible, judged at the time of the call: changes whose scope
    /// `user` may reach ([`DataStore::can_reach`]); envelope changes addressed to `user` or
    /// to a group `user` is a member of; and a [`ChangeKind::ScopeDeleted`] to the account
    /// that owned the scope (the backend keeps the former owner with that change). A change
    /// made before its scope was (re)created belongs to a deleted scope of the same id and
    /// is visible to nobody but through that scope's `ScopeDeleted`.
    fn changes(&self, user: &UserId, after: u64, limit: usize) -> Result<Changes, BackendError>;
}

/// Outcome of [`DataStore::insert_roster`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InsertRoster {
    /// Inserted and durable.
    Done,
    /// A roster of that version exists; nothing changed.
    Exists,
    /// The group does not exist.
    NoScope,
    /// The owner's usage would exceed the quota.
    QuotaExceeded,
}
