//! The device's local cache (docs/cli.md "Offline"): the vault of every command reads through
//! `vault_core::CachedStore` (one sled directory per account, `DIR/cache/<user id>/`), so
//! that what `vault sync` fetched can be listed and read while the server is unreachable.
//!
//! Between the cache and the server sits [`Watch`]: it notices the first "unreachable"
//! answer (so that `ls` and `get` can warn that they show the cached copy, and later calls
//! fail at once instead of waiting for retries again) and counts the pages fetched from the
//! server (reported by `vault sync`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use serde_json::{json, Value};
use vault_core::remote::{RemoteError, RemoteStore};
use vault_core::{
    is_unavailable, CachedStore, CollectionId, Error, ObjectAddress, PageAddress, RecordKind,
    Store, StoreError, Swap, VaultId, Verified,
};

use crate::context::Open;
use crate::error::{CliError, Result, UNREACHABLE};
use crate::output::Output;
use crate::state::StateDir;
use crate::sync::{self, Changes, Found, Seen, Snapshot};

/// The store of the CLI's vault: the local cache in front of the (watched) server.
pub type CliStore = CachedStore<Watch>;

/// The cache directory of an account: `DIR/cache/<user id>/`.
pub fn cache_dir(dir: &StateDir, user_id: &str) -> std::path::PathBuf {
    dir.path.join("cache").join(user_id)
}

/// Opens the cache of `user_id` in front of `remote`.
pub fn open_cache(dir: &StateDir, user_id: &str, remote: RemoteStore) -> Result<CliStore> {
    CachedStore::open(Watch::new(remote), cache_dir(dir, user_id)).map_err(|e| {
        CliError::general(format!("cannot open the local cache: {e}"))
            .hint("is another `vault` command running with this state directory?")
    })
}

/// The server's store, watched: after the first "unreachable" answer every later call fails
/// at once with the same error (the command runs on the cache), and the pages read from the
/// server are counted.
pub struct Watch {
    inner: RemoteStore,
    offline: AtomicBool,
    pages: AtomicU64,
}

impl Watch {
    /// Watches `inner`.
    pub fn new(inner: RemoteStore) -> Self {
        Self {
            inner,
            offline: AtomicBool::new(false),
            pages: AtomicU64::new(0),
        }
    }

    /// Whether the server was found unreachable during this command.
    pub fn offline(&self) -> bool {
        self.offline.load(Ordering::SeqCst)
    }

    /// Pages read from the server (not from the cache).
    pub fn pages_fetched(&self) -> u64 {
        self.pages.load(Ordering::SeqCst)
    }

    fn call<T>(
        &self,
        f: impl FnOnce(&RemoteStore) -> std::result::Result<T, StoreError>,
    ) -> std::result::Result<T, StoreError> {
        if self.offline() {
            let e = RemoteError::Unreachable;
            return Err(StoreError::with_source(e.to_string(), e));
        }
        let r = f(&self.inner);
        if let Err(e) = &r {
            if is_unavailable(e) {
                self.offline.store(true, Ordering::SeqCst);
            }
        }
        r
    }
}

impl Store for Watch {
    fn put_page(&self, a: &PageAddress, p: &[u8]) -> std::result::Result<(), StoreError> {
        self.call(|s| s.put_page(a, p))
    }
    fn get_page(&self, a: &PageAddress) -> std::result::Result<Option<Vec<u8>>, StoreError> {
        let r = self.call(|s| s.get_page(a));
        if matches!(r, Ok(Some(_))) {
            self.pages.fetch_add(1, Ordering::SeqCst);
        }
        r
    }
    fn put_header(&self, a: &ObjectAddress, h: &[u8]) -> std::result::Result<(), StoreError> {
        self.call(|s| s.put_header(a, h))
    }
    fn get_header(&self, a: &ObjectAddress) -> std::result::Result<Option<Vec<u8>>, StoreError> {
        self.call(|s| s.get_header(a))
    }
    fn delete_object_version(&self, a: &ObjectAddress) -> std::result::Result<(), StoreError> {
        self.call(|s| s.delete_object_version(a))
    }
    fn put_collection_key(
        &self,
        c: &CollectionId,
        e: u32,
        w: &[u8],
    ) -> std::result::Result<(), StoreError> {
        self.call(|s| s.put_collection_key(c, e, w))
    }
    fn get_collection_key(
        &self,
        c: &CollectionId,
        e: u32,
    ) -> std::result::Result<Option<Vec<u8>>, StoreError> {
        self.call(|s| s.get_collection_key(c, e))
    }
    fn get_manifest(
        &self,
        c: &CollectionId,
    ) -> std::result::Result<Option<(u64, Vec<u8>)>, StoreError> {
        self.call(|s| s.get_manifest(c))
    }
    fn swap_manifest(
        &self,
        c: &CollectionId,
        e: u64,
        v: u64,
        m: &[u8],
    ) -> std::result::Result<Swap, StoreError> {
        self.call(|s| s.swap_manifest(c, e, v, m))
    }
    fn list_collections(&self) -> std::result::Result<Vec<CollectionId>, StoreError> {
        self.call(|s| s.list_collections())
    }
    fn put_record(
        &self,
        k: RecordKind,
        key: &[u8],
        v: &[u8],
    ) -> std::result::Result<(), StoreError> {
        self.call(|s| s.put_record(k, key, v))
    }
    fn insert_record(
        &self,
        k: RecordKind,
        key: &[u8],
        v: &[u8],
    ) -> std::result::Result<bool, StoreError> {
        self.call(|s| s.insert_record(k, key, v))
    }
    fn get_record(
        &self,
        k: RecordKind,
        key: &[u8],
    ) -> std::result::Result<Option<Vec<u8>>, StoreError> {
        self.call(|s| s.get_record(k, key))
    }
    fn list_records(
        &self,
        k: RecordKind,
        p: &[u8],
    ) -> std::result::Result<Vec<Vec<u8>>, StoreError> {
        self.call(|s| s.list_records(k, p))
    }
    fn verified(&self, item: Verified<'_>) {
        self.inner.verified(item);
    }
}

/// A date and time in UTC (`YYYY-MM-DD HH:MM UTC`) from Unix seconds.
pub fn utc(secs: u64) -> String {
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        rem / 3600,
        (rem % 3600) / 60
    )
}

/// After a read-only command (`ls`, `get`) ran on the cache because the server was
/// unreachable: a warning on stderr (never on stdout, also not with --json).
pub fn warn_if_offline(open: &Open, out: &Output) {
    if !open.vault.store().inner().offline() {
        return;
    }
    let when = open
        .ctx
        .dir
        .sync_snapshot()
        .ok()
        .and_then(|s| s.synced_at)
        .map_or_else(
            || "this device's cached copy (no `vault sync` yet)".to_owned(),
            |t| format!("the copy synced at {}", utc(t)),
        );
    out.warn(&format!(
        "server unreachable: showing {when}; it may be out of date"
    ));
}

/// The hint of an "unreachable" failure: offline, only `ls` and `get` of synced objects work.
pub fn explain(e: CliError, read_only: bool) -> CliError {
    if e.code != UNREACHABLE || e.hint.as_deref().is_some_and(|h| h.contains("--ca-file")) {
        return e;
    }
    let hint = if read_only {
        "offline, only what `vault sync` fetched on this device can be listed and read, and files can be put into or removed from such a collection (queued \
         until `vault sync`); run `vault sync` when the server is reachable"
    } else {
        "this command needs the server; offline, only `vault ls`, `vault get`, `vault put` \
         and `vault rm` on collections `vault sync` fetched work"
    };
    CliError {
        hint: Some(hint.to_owned()),
        ..e
    }
}

/// One collection in the report of `vault sync`.
struct Entry {
    name: String,
    owner: String,
    own: bool,
    version: u64,
    changes: Changes,
}

/// The collection id of a snapshot key (`owner/collection`).
pub(crate) fn split_key(key: &str) -> Option<(VaultId, CollectionId)> {
    let (owner, id) = key.split_once('/')?;
    let owner = VaultId::from_hex(owner)?;
    let id = VaultId::from_hex(id)?;
    Some((owner, CollectionId::from_bytes(*id.as_bytes())))
}

/// `vault sync`: catches up on the server's change feed, refreshes the collections it names
/// (every collection the first time, or when sharing changed), fetches their new objects into
/// the cache, and reports what changed since the last sync.
pub fn sync_cmd(open: &Open, out: &Output) -> Result<()> {
    let dir = &open.ctx.dir;
    let before = dir.sync_snapshot()?;
    let cache = open.vault.store();
    // First what this device wrote while offline (merged with what others wrote since).
    let pushed = open.vault.push_queued()?;
    if !open.vault.queued()?.is_empty() {
        return Err(CliError::new(
            UNREACHABLE,
            "the server is unreachable: the changes made offline are still queued",
        ));
    }
    let first = cache.cursor().map_err(Error::from)? == 0 || before.synced_at.is_none();
    // The cursor moves at the catch-up: until this sync is saved, the next one must not
    // rely on the feed.
    if !before.rescan {
        let mut marked = before.clone();
        marked.rescan = true;
        dir.save_sync_snapshot(&marked)?;
    }
    let feed = open.ctx.session.store();
    let caught = cache.catch_up(&feed).map_err(Error::from)?;
    let full = first
        || before.rescan
        || caught.sharing_changed
        || caught.more
        || !before.pending.is_empty();
    let me = open.vault.id();

    let mut now = Snapshot::default();
    let mut found: Vec<Found<'_>> = Vec::new();
    let mut pending: Vec<String> = Vec::new();
    if full {
        let (f, p) = sync::collections(&open.vault)?;
        found = f;
        pending = p.iter().map(|p| p.owner.to_string()).collect();
    } else {
        let mut ids: BTreeSet<CollectionId> = caught.collections.keys().copied().collect();
        ids.extend(caught.new_keys.iter().map(|(c, _)| *c));
        let owners: BTreeMap<CollectionId, VaultId> = before
            .collections
            .keys()
            .filter_map(|k| split_key(k))
            .map(|(o, c)| (c, o))
            .collect();
        let mut refreshed = BTreeSet::new();
        for id in ids {
            let owner = owners.get(&id).copied().unwrap_or(me);
            match open.vault.shared_collection(owner, id) {
                Ok(c) => {
                    let name = c.manifest().name.clone();
                    refreshed.insert(id);
                    found.push(Found {
                        collection: c,
                        name,
                        own: owner == me,
                    });
                }
                // Not ours and not known here (found at the next discovery), or access
                // removed.
                Err(Error::NotFound | Error::NoAccess) => {}
                Err(e) => return Err(e.into()),
            }
        }
        // The collections the feed did not name stay as the last sync saw them.
        for (key, seen) in &before.collections {
            let Some((_, id)) = split_key(key) else {
                continue;
            };
            if refreshed.contains(&id) || caught.deleted_collections.contains(&id) {
                continue;
            }
            if caught.collections.contains_key(&id) {
                // Named by the feed but no longer readable: gone for this user.
                continue;
            }
            now.collections.insert(key.clone(), seen.clone());
        }
    }

    let mut fetched = 0usize;
    let mut entries = Vec::new();
    let mut fresh = BTreeSet::new();
    for f in &found {
        fetched += cache.prefetch(&f.collection)?;
        let seen = sync::seen(f);
        let key = sync::key(f);
        let changes = sync::diff(before.collections.get(&key), &seen);
        entries.push(Entry {
            name: f.name.clone(),
            owner: seen.owner.clone(),
            own: f.own,
            version: seen.version,
            changes,
        });
        fresh.insert(key.clone());
        now.collections.insert(key, seen);
    }
    // The collections kept as they were: up to date.
    let me_hex = me.to_string();
    for (key, seen) in &now.collections {
        if fresh.contains(key) {
            continue;
        }
        entries.push(unchanged(seen, &me_hex));
    }
    // Collections deleted on the server: everything in them is gone.
    for (key, seen) in &before.collections {
        if split_key(key).is_some_and(|(_, id)| caught.deleted_collections.contains(&id))
            && !now.collections.contains_key(key)
        {
            let mut e = unchanged(seen, &me_hex);
            e.changes.removed = seen.objects.keys().cloned().collect();
            entries.push(e);
        }
    }
    entries.sort_by(|a, b| (!a.own, &a.name, &a.owner).cmp(&(!b.own, &b.name, &b.owner)));
    if let Err(e) = cache.flush() {
        out.warn(&format!("the local cache could not be written: {e}"));
    }
    now.synced_at = Some(crate::context::now());
    now.pending = pending.clone();
    dir.save_sync_snapshot(&now)?;

    let pages = cache.inner().pages_fetched();
    let list: Vec<Value> = entries
        .iter()
        .map(|e| {
            json!({
                "name": e.name,
                "owner": e.owner,
                "own": e.own,
                "version": e.version,
                "added": e.changes.added,
                "changed": e.changes.changed,
                "removed": e.changes.removed,
            })
        })
        .collect();
    out.done(
        json!({
            "collections": list,
            "pending": pending,
            "full": full,
            "cursor": caught.cursor,
            "fetched": { "objects": fetched, "pages": pages },
            "pushed": pushed,
        }),
        || {
            let mut lines = Vec::new();
            for e in &entries {
                let whose = if e.own {
                    String::new()
                } else {
                    format!(" (shared by {})", e.owner)
                };
                let ch = &e.changes;
                if ch.is_empty() {
                    lines.push(format!("{}{whose}: up to date", e.name));
                    continue;
                }
                lines.push(format!("{}{whose}:", e.name));
                lines.extend(ch.added.iter().map(|n| format!("  + {n}")));
                lines.extend(ch.changed.iter().map(|n| format!("  ~ {n}")));
                lines.extend(ch.removed.iter().map(|n| format!("  - {n}")));
            }
            for p in &pending {
                lines.push(format!("shares from {p} wait for `vault trust {p}`"));
            }
            if pushed > 0 {
                lines.push(format!(
                    "sent the changes made offline in {pushed} collection(s)"
                ));
            }
            if lines.is_empty() {
                lines.push("no collections yet".to_owned());
            }
            if fetched > 0 {
                lines.push(format!(
                    "fetched {fetched} object(s) ({pages} page(s)) for offline reading"
                ));
            }
            lines
        },
    );
    Ok(())
}

fn unchanged(seen: &Seen, me_hex: &str) -> Entry {
    Entry {
        name: seen.name.clone(),
        owner: seen.owner.clone(),
        own: seen.owner == me_hex,
        version: seen.version,
        changes: Changes::default(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00 UTC");
        assert_eq!(utc(1_700_000_000), "2023-11-14 22:13 UTC");
    }

    #[test]
    fn snapshot_keys_split() {
        let owner = "00112233445566778899aabbccddeeff";
        let id = "ffeeddccbbaa99887766554433221100";
        let (o, c) = split_key(&format!("{owner}/{id}")).unwrap();
        assert_eq!(o.to_string(), owner);
        assert_eq!(c.to_string(), id);
        assert!(split_key("nonsense").is_none());
    }

    #[test]
    fn only_unreachable_errors_get_the_offline_hint() {
        let e = explain(CliError::new(UNREACHABLE, "unreachable"), false);
        assert!(e.hint.unwrap().contains("needs the server"));
        let e = explain(CliError::new(UNREACHABLE, "unreachable"), true);
        assert!(e.hint.unwrap().contains("vault sync"));
        let e = explain(CliError::general("other"), true);
        assert!(e.hint.is_none());
    }
}
