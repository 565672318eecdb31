//! Finding collections (own and shared) and what changed since the last `vault sync`.
//!
//! [`collections`] re-reads every collection's manifest (each one verified against this
//! device's high-water mark): the first-time discovery of `vault sync` (crate::offline),
//! which afterwards refreshes only what the server's change feed names.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use vault_core::remote::Session;
use vault_core::{Collection, CollectionId, Error, RecordKind, Store, Vault, VaultId};
use vault_keyring::envelope::{self, Purpose};
use vault_keyring::KeyringId;

use crate::context::parse_user_id;
use crate::error::{CliError, Result, NOT_FOUND, UNREACHABLE};
use crate::offline::CliStore;

/// A collection this user can read.
pub struct Found<'v> {
    /// The open collection (manifest verified).
    pub collection: Collection<'v, CliStore>,
    /// Its name (from the signed manifest).
    pub name: String,
    /// Whether it is this user's own.
    pub own: bool,
}

/// A share from someone whose identity is not pinned on this device.
pub struct Pending {
    /// The owner (and granter).
    pub owner: KeyringId,
}

/// Every collection this user owns or that is shared with them and readable now, and the
/// owners of shares that wait for `vault trust`. A collection that fails its checks is an
/// error (integrity is never skipped).
pub fn collections(vault: &Vault<CliStore>) -> Result<(Vec<Found<'_>>, Vec<Pending>)> {
    let me = vault.id();
    let mut found = Vec::new();
    // Own collections: the scopes the account reaches whose key this vault holds. Another
    // owner's collection has no key of ours (`NoAccess`).
    let scopes = vault.store().list_collections().map_err(Error::from)?;
    for id in &scopes {
        match vault.shared_collection(me, *id) {
            Ok(c) => {
                let name = c.manifest().name.clone();
                found.push(Found {
                    collection: c,
                    name,
                    own: true,
                });
            }
            // A collection without a manifest yet (nothing stored), or not ours.
            Err(Error::NotFound | Error::NoAccess) => {}
            Err(e) => return Err(e.into()),
        }
    }
    // Shared directly: the envelopes addressed to this user that hand a collection key.
    let mut shared: BTreeMap<(VaultId, CollectionId), ()> = BTreeMap::new();
    let mut pending: BTreeMap<KeyringId, ()> = BTreeMap::new();
    let my_id = vault.keyring().id();
    for key in vault
        .store()
        .list_records(RecordKind::Envelope, my_id.as_bytes())
        .map_err(Error::from)?
    {
        let Some(bytes) = vault
            .store()
            .get_record(RecordKind::Envelope, &key)
            .map_err(Error::from)?
        else {
            continue;
        };
        let Ok(info) = envelope::peek(&bytes) else {
            continue;
        };
        if info.grant.purpose != Purpose::CollectionKey || info.grant.owner == *me.as_bytes() {
            continue;
        }
        let owner = VaultId::from_bytes(info.grant.owner);
        let granter = KeyringId::from_bytes(info.grant.owner);
        if vault.pinned_fingerprint(&granter)?.is_none() {
            pending.insert(granter, ());
            continue;
        }
        shared.insert((owner, CollectionId::from_bytes(info.grant.target)), ());
    }
    // Shared through groups (verified envelopes from pinned owners).
    for inc in vault.incoming()? {
        if inc.owner != me {
            shared.insert((inc.owner, inc.collection), ());
        }
    }
    for (owner, id) in shared.into_keys() {
        match vault.shared_collection(owner, id) {
            Ok(c) => {
                let name = c.manifest().name.clone();
                found.push(Found {
                    collection: c,
                    name,
                    own: false,
                });
            }
            // Shared, but nothing stored yet; or access was removed since.
            Err(Error::NotFound | Error::NoAccess) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok((
        found,
        pending.into_keys().map(|owner| Pending { owner }).collect(),
    ))
}

/// A user named on the command line: a user id (32 hex digits) or a login name looked up
/// in the server's directory.
pub fn resolve_user(session: &Session, user: &str) -> Result<KeyringId> {
    if let Some(id) = parse_user_id(user) {
        return Ok(id);
    }
    session.lookup_user(user).map_err(|e| {
        let e = CliError::from(e);
        if e.code == NOT_FOUND {
            e.hint(format!("there is no user {user:?} on this server"))
        } else {
            e
        }
    })
}

/// Opens the collection `name` for reading: this user's own if it exists, else the one
/// shared with this user under that name (by `owner` if given).
pub fn open_for_read<'v>(
    vault: &'v Vault<CliStore>,
    session: &Session,
    dir: &crate::state::StateDir,
    name: &str,
    owner: Option<&str>,
) -> Result<Collection<'v, CliStore>> {
    let owner = owner.map(|o| resolve_user(session, o)).transpose()?;
    let me = vault.keyring().id();
    if owner.is_none() || owner == Some(me) {
        let id = vault.collection_id(name);
        match vault.store().get_manifest(&id) {
            Ok(Some(_)) => return Ok(vault.collection(name)?),
            Ok(None) => {}
            // Offline with no cached manifest of an own collection of that name: perhaps a
            // shared one (below).
            Err(e) if vault_core::is_unavailable(&e) => {}
            Err(e) => return Err(Error::from(e).into()),
        }
        if owner == Some(me) {
            return Err(CliError::new(NOT_FOUND, format!("no collection {name:?}")));
        }
    }
    let (found, pending) = match collections(vault) {
        Ok(found) => found,
        // Offline: the shared collections the last `vault sync` saw (their envelopes are in
        // the cache if this device opened them).
        Err(e) if e.code == UNREACHABLE && owner.is_none() => {
            return shared_from_snapshot(vault, dir, name).map_err(|_| e)
        }
        Err(e) => return Err(e),
    };
    let mut matches: Vec<_> = found
        .into_iter()
        .filter(|f| {
            !f.own
                && f.name == name
                && owner.is_none_or(|o| f.collection.owner().as_bytes() == o.as_bytes())
        })
        .collect();
    match matches.len() {
        1 => Ok(matches.remove(0).collection),
        0 => {
            let e = CliError::new(NOT_FOUND, format!("no collection {name:?}"));
            Err(if pending.is_empty() {
                e.hint("`vault ls --collections` lists what you can read")
            } else {
                e.hint("some shares wait for `vault trust USER`; run `vault sync` to see them")
            })
        }
        _ => Err(CliError::general(format!(
            "several collections named {name:?} are shared with you"
        ))
        .hint("choose one with --owner USER")),
    }
}

/// What a sync saw of one collection.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Seen {
    /// The collection's name.
    pub name: String,
    /// The owner's user id.
    pub owner: String,
    /// The manifest version.
    pub version: u64,
    /// Object name → object version.
    pub objects: BTreeMap<String, u64>,
}

/// The one collection named `name` shared with this user that the last sync saw, opened
/// from the cache (offline).
fn shared_from_snapshot<'v>(
    vault: &'v Vault<CliStore>,
    dir: &crate::state::StateDir,
    name: &str,
) -> Result<Collection<'v, CliStore>> {
    let me = vault.id();
    let snapshot = dir.sync_snapshot()?;
    let mut matches: Vec<(VaultId, CollectionId)> = snapshot
        .collections
        .iter()
        .filter(|(_, seen)| seen.name == name)
        .filter_map(|(key, _)| crate::offline::split_key(key))
        .filter(|(owner, _)| *owner != me)
        .collect();
    match matches.len() {
        1 => {
            let (owner, id) = matches.remove(0);
            Ok(vault.shared_collection(owner, id)?)
        }
        _ => Err(CliError::new(NOT_FOUND, format!("no collection {name:?}"))),
    }
}

/// `sync.json`: per collection (`owner/collection` ids), what the last sync saw.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Snapshot {
    /// The collections.
    pub collections: BTreeMap<String, Seen>,
    /// When this sync ran (Unix seconds); none before the first `vault sync` with the cache.
    #[serde(default)]
    pub synced_at: Option<u64>,
    /// The owners (user ids) whose shares waited for `vault trust`.
    #[serde(default)]
    pub pending: Vec<String>,
    /// A sync caught up on the change feed but did not finish: the next one re-reads every
    /// collection (what the feed named then is not named again).
    #[serde(default)]
    pub rescan: bool,
}

/// The differences of one collection since the last sync.
#[derive(Debug, Default, Serialize)]
pub struct Changes {
    /// New objects.
    pub added: Vec<String>,
    /// Objects with a new version.
    pub changed: Vec<String>,
    /// Objects gone.
    pub removed: Vec<String>,
}

impl Changes {
    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.changed.is_empty() && self.removed.is_empty()
    }
}

/// What `collection` holds now.
pub fn seen(f: &Found<'_>) -> Seen {
    Seen {
        name: f.name.clone(),
        owner: f.collection.owner().to_string(),
        version: f.collection.manifest().version,
        objects: f
            .collection
            .list()
            .into_iter()
            .map(|l| (l.name, l.version))
            .collect(),
    }
}

/// The key of a collection in the snapshot.
pub fn key(f: &Found<'_>) -> String {
    format!("{}/{}", f.collection.owner(), f.collection.id())
}

/// The changes from `before` to `now`.
pub fn diff(before: Option<&Seen>, now: &Seen) -> Changes {
    let empty = BTreeMap::new();
    let old = before.map_or(&empty, |b| &b.objects);
    let mut c = Changes::default();
    for (name, v) in &now.objects {
        match old.get(name) {
            None => c.added.push(name.clone()),
            Some(o) if o != v => c.changed.push(name.clone()),
            Some(_) => {}
        }
    }
    for name in old.keys() {
        if !now.objects.contains_key(name) {
            c.removed.push(name.clone());
        }
    }
    c
}
