//! Backups of the sled store (docs/spec/backup.md): a round trip through backup, loss of the
//! store and restore gives back every byte; a backup taken while writers run restores to a
//! store that passes its check and whose pages are exactly bytes that were written; damaged
//! backups are refused; a restore never lands on a non-empty directory without `force`;
//! pruning by age; the scheduler; the binary's subcommands.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use vault_server::auth::{Session, SessionStore, TokenHash};
use vault_server::backup::{self, BackupError, Schedule};
use vault_server::store::{
    AccountStore, Backend, Cas, DataStore, EnvelopeKey, InsertRoster, ManifestSwap, NewAccount,
    ObjectKey, PageKey, ScopeKind, SledBackend, Write,
};

const Q: u64 = u64::MAX;

fn page_key(c: [u8; 16], o: u8, version: u64, index: u32) -> PageKey {
    PageKey {
        collection: c,
        object: [o; 16],
        version,
        index,
    }
}

fn object_key(c: [u8; 16], o: u8, version: u64) -> ObjectKey {
    ObjectKey {
        collection: c,
        object: [o; 16],
        version,
    }
}

/// Deterministic page bytes of a given length.
fn bytes(seed: u32, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// Tree name → its entries.
type Trees = BTreeMap<Vec<u8>, Vec<(Vec<u8>, Vec<u8>)>>;

/// Every tree of a closed sled data directory, read with sled itself (the lock of a
/// just-closed handle is released shortly after by a background thread: retried).
fn dump(dir: &Path) -> Trees {
    let mut tries = 0;
    let db = loop {
        match sled::open(dir) {
            Ok(db) => break db,
            Err(e) if tries < 40 => {
                tries += 1;
                let _ = e;
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => panic!("{e}"),
        }
    };
    let mut out = BTreeMap::new();
    for name in db.tree_names() {
        let tree = db.open_tree(&name).unwrap();
        let entries = tree
            .iter()
            .map(|kv| {
                let (k, v) = kv.unwrap();
                (k.to_vec(), v.to_vec())
            })
            .collect();
        out.insert(name.to_vec(), entries);
    }
    out
}

struct Written {
    pages: Vec<(PageKey, Vec<u8>)>,
    gone_pages: Vec<PageKey>,
    headers: Vec<(ObjectKey, Vec<u8>)>,
    manifest: (u64, Vec<u8>),
    ckey: Vec<u8>,
    envelope: (EnvelopeKey, Vec<u8>),
    roster: Vec<u8>,
    session: (TokenHash, Session),
}

const ALICE: [u8; 16] = [0xa1; 16];
const BOB: [u8; 16] = [0xb0; 16];
const COLL: [u8; 16] = [0xc1; 16];
const GROUP: [u8; 16] = [0x61; 16];

fn register(b: &SledBackend, user: [u8; 16], name: &str) {
    assert!(b
        .create_account(&NewAccount {
            user,
            name,
            verifier: &[user[0]; 58],
            keyring: &bytes(u32::from(user[0]), 1600),
            identity: &[user[0] ^ 1; 700],
        })
        .unwrap());
}

/// Accounts, a session, a setting, a collection with pages (some replaced, some deleted),
/// headers, a manifest, a collection key, a group with a roster, an envelope.
fn write_everything(b: &SledBackend) -> Written {
    register(b, ALICE, "alice");
    register(b, BOB, "bob");
    assert_eq!(b.swap_keyring(&ALICE, 1, b"keyring v2").unwrap(), Cas::Done);
    b.setting_or_insert("decoy-key", &[7; 32]).unwrap();
    let session = (
        TokenHash::from_bytes([0x5e; 32]),
        Session {
            user: ALICE,
            created: 1_000,
            expires: u64::MAX,
        },
    );
    b.insert(session.0, session.1).unwrap();

    b.create_scope(&COLL, ScopeKind::Collection, &ALICE)
        .unwrap();
    b.create_scope(&GROUP, ScopeKind::Group, &BOB).unwrap();
    let mut pages = Vec::new();
    let mut seed = 0;
    for o in 1..=6u8 {
        for index in 0..4u32 {
            seed += 1;
            let key = page_key(COLL, o, 1, index);
            let data = bytes(seed, 100 + (seed as usize * 997) % 70_000);
            assert_eq!(b.put_page(&key, &data, Q).unwrap(), Write::Done);
            pages.push((key, data));
        }
    }
    // Replaced pages: the first versions are freed (holes in the pack).
    for (key, data) in pages.iter_mut().step_by(3) {
        seed += 1;
        *data = bytes(seed, 5_000);
        assert_eq!(b.put_page(key, data, Q).unwrap(), Write::Done);
    }
    let mut headers = Vec::new();
    for o in 1..=6u8 {
        let key = object_key(COLL, o, 1);
        let h = bytes(1000 + u32::from(o), 300);
        assert_eq!(b.put_header(&key, &h, Q).unwrap(), Write::Done);
        headers.push((key, h));
    }
    // Object 6 deleted: its pages and header are gone.
    assert!(b.delete_object(&object_key(COLL, 6, 1)).unwrap());
    let gone_pages: Vec<PageKey> = pages
        .iter()
        .filter(|(k, _)| k.object == [6; 16])
        .map(|(k, _)| *k)
        .collect();
    pages.retain(|(k, _)| k.object != [6; 16]);
    headers.retain(|(k, _)| k.object != [6; 16]);

    let manifest = (3, bytes(2000, 900));
    assert_eq!(
        b.swap_manifest(&COLL, 0, 1, b"first", Q).unwrap(),
        ManifestSwap::Cas(Cas::Done)
    );
    assert_eq!(
        b.swap_manifest(&COLL, 1, 3, &manifest.1, Q).unwrap(),
        ManifestSwap::Cas(Cas::Done)
    );
    let ckey = bytes(3000, 120);
    assert_eq!(
        b.put_collection_key(&COLL, 1, &ckey, Q).unwrap(),
        Write::Done
    );
    let roster = bytes(4000, 500);
    assert_eq!(
        b.insert_roster(&GROUP, 1, &roster, Q).unwrap(),
        InsertRoster::Done
    );
    let envelope = (
        EnvelopeKey {
            recipient: BOB,
            owner: ALICE,
            target: COLL,
            epoch: 1,
        },
        bytes(5000, 400),
    );
    assert_eq!(
        b.put_envelope(&envelope.0, &envelope.1, Q).unwrap(),
        Write::Done
    );
    Written {
        pages,
        gone_pages,
        headers,
        manifest,
        ckey,
        envelope,
        roster,
        session,
    }
}

fn read_back(b: &SledBackend, w: &Written) {
    for (key, data) in &w.pages {
        assert_eq!(b.get_page(key).unwrap().as_ref(), Some(data), "{key:?}");
    }
    for key in &w.gone_pages {
        assert_eq!(b.get_page(key).unwrap(), None);
    }
    for (key, h) in &w.headers {
        assert_eq!(b.get_header(key).unwrap().as_ref(), Some(h));
    }
    assert_eq!(b.get_header(&object_key(COLL, 6, 1)).unwrap(), None);
    assert_eq!(b.get_manifest(&COLL).unwrap(), Some(w.manifest.clone()));
    assert_eq!(
        b.get_collection_key(&COLL, 1).unwrap(),
        Some(w.ckey.clone())
    );
    assert_eq!(b.get_roster(&GROUP, 1).unwrap(), Some(w.roster.clone()));
    assert_eq!(
        b.get_envelope(&w.envelope.0).unwrap(),
        Some(w.envelope.1.clone())
    );
    assert_eq!(b.list_envelopes(&BOB).unwrap(), vec![w.envelope.0]);
    assert!(b.can_reach(&BOB, &COLL).unwrap());
    assert_eq!(b.user_by_name("alice").unwrap(), Some(ALICE));
    assert_eq!(b.name(&BOB).unwrap().as_deref(), Some("bob"));
    assert_eq!(b.verifier(&BOB).unwrap(), Some(vec![BOB[0]; 58]));
    assert_eq!(
        b.keyring(&ALICE).unwrap(),
        Some((2, b"keyring v2".to_vec()))
    );
    assert_eq!(b.identity(&ALICE).unwrap(), Some(vec![ALICE[0] ^ 1; 700]));
    assert_eq!(b.get(&w.session.0).unwrap(), Some(w.session.1));
    assert_eq!(
        b.setting_or_insert("decoy-key", &[9; 32]).unwrap(),
        vec![7; 32]
    );
    let used: u64 = w.pages.iter().map(|(_, d)| d.len() as u64).sum::<u64>()
        + w.headers.iter().map(|(_, h)| h.len() as u64).sum::<u64>()
        + w.manifest.1.len() as u64
        + w.ckey.len() as u64
        + w.envelope.1.len() as u64;
    assert_eq!(b.usage(&ALICE).unwrap(), used);
    let feed = b.changes(&ALICE, 0, 1000).unwrap();
    assert!(feed.changes.len() >= 5, "{feed:?}");
}

#[test]
fn a_restored_store_gives_back_every_byte() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let out = root.path().join("backups");
    let b = SledBackend::open(&data).unwrap();
    let written = write_everything(&b);
    read_back(&b, &written);
    let info = b.backup_to(&out).unwrap();
    assert_eq!(info.pages, written.pages.len() as u64);
    assert_eq!(
        info.page_bytes,
        written
            .pages
            .iter()
            .map(|(_, d)| d.len() as u64)
            .sum::<u64>()
    );
    assert!(info.path.starts_with(&out));
    assert_eq!(backup::verify(&info.path).unwrap(), info);
    // Nothing but the backup is left in the output directory.
    let names: Vec<_> = std::fs::read_dir(&out).unwrap().collect();
    assert_eq!(names.len(), 1);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&info.path).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "readable by others: {mode:o}");
    }
    drop(b);
    let before = dump(&data);

    std::fs::remove_dir_all(&data).unwrap();
    let restored = backup::restore(&info.path, &data, false).unwrap();
    assert_eq!(restored.backup, info);
    assert_eq!(restored.moved_aside, None);
    // Every tree but the page index is identical, entry for entry.
    let mut after = dump(&data);
    let mut before = before;
    assert!(before.remove(&b"pages"[..]).is_some());
    assert!(after.remove(&b"pages"[..]).is_some());
    // But for the backup's own audit entry, appended after the cut (the last of the log).
    let log = before.get_mut(&b"audit"[..]).unwrap();
    let (_, last) = log.pop().unwrap();
    assert_eq!(
        vault_server::audit::Entry::decode(&last)
            .unwrap()
            .event
            .kind,
        vault_server::audit::EventKind::BackupCreated
    );
    assert_eq!(before, after);
    // Nothing left beside the data directory.
    let mut left: Vec<_> = std::fs::read_dir(root.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    left.sort();
    assert_eq!(left, ["backups", "data"]);

    let b = SledBackend::open(&data).unwrap();
    b.check().unwrap();
    read_back(&b, &written);
    // The restored store takes writes.
    let key = page_key(COLL, 9, 1, 0);
    assert_eq!(b.put_page(&key, b"after restore", Q).unwrap(), Write::Done);
    assert_eq!(b.get_page(&key).unwrap(), Some(b"after restore".to_vec()));
}

#[test]
fn a_backup_taken_while_writers_run_is_consistent() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let b = Arc::new(SledBackend::open(&data).unwrap());
    register(&b, ALICE, "alice");
    b.create_scope(&COLL, ScopeKind::Collection, &ALICE)
        .unwrap();

    // Every version of every page a writer stored (acknowledged or in flight).
    let versions: Arc<Mutex<HashMap<PageKey, Vec<Vec<u8>>>>> = Arc::default();
    // The pages whose put has returned.
    let acked: Arc<Mutex<HashSet<PageKey>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for t in 0..3u8 {
        let (b, versions, stop) = (Arc::clone(&b), Arc::clone(&versions), Arc::clone(&stop));
        let acked = Arc::clone(&acked);
        writers.push(std::thread::spawn(move || {
            let mut n = 0u32;
            let mut manifest = 0u64;
            while !stop.load(Ordering::Relaxed) && n < 5_000 {
                n += 1;
                let seed = u32::from(t) << 24 | n;
                // A page of a live object, sometimes replacing an earlier one.
                let key = page_key(COLL, t, 1, n % 40);
                let data = bytes(seed, 2_000 + (seed as usize % 6_000));
                versions
                    .lock()
                    .unwrap()
                    .entry(key)
                    .or_default()
                    .push(data.clone());
                assert_eq!(b.put_page(&key, &data, Q).unwrap(), Write::Done);
                acked.lock().unwrap().insert(key);
                // A short-lived object: written and deleted, so holes are punched.
                let junk = page_key(COLL, 100 + t, u64::from(n), 0);
                assert_eq!(b.put_page(&junk, &data, Q).unwrap(), Write::Done);
                assert!(b
                    .delete_object(&object_key(COLL, 100 + t, u64::from(n)))
                    .unwrap());
                if t == 0 {
                    let swapped = b
                        .swap_manifest(&COLL, manifest, manifest + 1, &seed.to_be_bytes(), Q)
                        .unwrap();
                    assert_eq!(swapped, ManifestSwap::Cas(Cas::Done));
                    manifest += 1;
                }
            }
            n
        }));
    }
    std::thread::sleep(Duration::from_millis(300));
    let acknowledged: HashSet<PageKey> = acked.lock().unwrap().clone();
    let manifest_before = b.get_manifest(&COLL).unwrap().map_or(0, |m| m.0);
    let info = b.backup_to(root.path().join("backups")).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    stop.store(true, Ordering::Relaxed);
    let counts: Vec<u32> = writers.into_iter().map(|w| w.join().unwrap()).collect();
    assert!(
        counts.iter().all(|&n| n > 5),
        "writers made progress: {counts:?}"
    );
    let manifest_after = b.get_manifest(&COLL).unwrap().map_or(0, |m| m.0);
    drop(b);

    let restored_dir = root.path().join("restored");
    backup::restore(&info.path, &restored_dir, false).unwrap();
    let r = SledBackend::open(&restored_dir).unwrap();
    r.check().unwrap();
    let versions = versions.lock().unwrap();
    let mut found = 0u64;
    for (key, written) in versions.iter() {
        match r.get_page(key).unwrap() {
            Some(page) => {
                assert!(written.contains(&page), "{key:?}: bytes never written");
                found += 1;
            }
            // Only a page whose first put had not been acknowledged may be missing.
            None => assert!(!acknowledged.contains(key), "{key:?} lost"),
        }
    }
    // A short-lived page is in the backup only if the cut fell between its put and its
    // deletion: at most one per writer, with its exact bytes.
    let (mut junk, mut junk_bytes) = (0u64, 0u64);
    for (t, n) in counts.iter().enumerate() {
        let t = t as u8;
        for n in 1..=*n {
            let seed = u32::from(t) << 24 | n;
            if let Some(page) = r
                .get_page(&page_key(COLL, 100 + t, u64::from(n), 0))
                .unwrap()
            {
                assert_eq!(page, bytes(seed, 2_000 + (seed as usize % 6_000)));
                junk += 1;
                junk_bytes += page.len() as u64;
            }
        }
    }
    assert!(junk <= 3, "{junk}");
    assert_eq!(found + junk, info.pages);
    let m = r.get_manifest(&COLL).unwrap().map_or(0, |m| m.0);
    assert!((manifest_before..=manifest_after).contains(&m));
    // The usage recorded is the sum of what is stored.
    let mut stored = 0u64;
    for key in versions.keys() {
        stored += r.get_page(key).unwrap().map_or(0, |p| p.len() as u64);
    }
    let manifest_len = r
        .get_manifest(&COLL)
        .unwrap()
        .map_or(0, |m| m.1.len() as u64);
    assert_eq!(r.usage(&ALICE).unwrap(), stored + junk_bytes + manifest_len);
}

fn small_backup(root: &Path) -> PathBuf {
    let b = SledBackend::open(root.join("data")).unwrap();
    register(&b, ALICE, "alice");
    b.create_scope(&COLL, ScopeKind::Collection, &ALICE)
        .unwrap();
    for i in 0..3 {
        let key = page_key(COLL, 1, 1, i);
        assert_eq!(b.put_page(&key, &bytes(i, 500), Q).unwrap(), Write::Done);
    }
    b.backup_to(root.join("backups")).unwrap().path
}

fn assert_refused(backup: &Path, root: &Path, what: &str) {
    let target = root.join("target");
    match backup::verify(backup) {
        Err(BackupError::Corrupt(_) | BackupError::UnsupportedVersion(_)) => {}
        other => panic!("{what}: verify gave {other:?}"),
    }
    match backup::restore(backup, &target, false) {
        Err(BackupError::Corrupt(_) | BackupError::UnsupportedVersion(_)) => {}
        other => panic!("{what}: restore gave {other:?}"),
    }
    assert!(!target.exists(), "{what}: something was restored");
    let temp: Vec<_> = std::fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.contains("restoring"))
        .collect();
    assert!(temp.is_empty(), "{what}: left {temp:?}");
}

#[test]
fn damaged_and_truncated_backups_are_refused() {
    let root = tempfile::tempdir().unwrap();
    let good = small_backup(root.path());
    let original = std::fs::read(&good).unwrap();
    backup::verify(&good).unwrap();
    let bad = root.path().join("bad.vbk");

    // Every truncation is refused by verify; a sample of them by restore too.
    for len in 0..original.len() {
        std::fs::write(&bad, &original[..len]).unwrap();
        assert!(
            matches!(backup::verify(&bad), Err(BackupError::Corrupt(_))),
            "truncated to {len}"
        );
    }
    for len in [
        0,
        21,
        original.len() / 2,
        original.len() - 33,
        original.len() - 1,
    ] {
        std::fs::write(&bad, &original[..len]).unwrap();
        assert_refused(&bad, root.path(), &format!("truncated to {len}"));
    }
    // A flipped bit anywhere: the hash (or the shape) no longer matches.
    for at in (0..original.len()).step_by(7).chain([original.len() - 1]) {
        let mut damaged = original.clone();
        damaged[at] ^= 0x10;
        std::fs::write(&bad, &damaged).unwrap();
        assert!(
            matches!(
                backup::verify(&bad),
                Err(BackupError::Corrupt(_) | BackupError::UnsupportedVersion(_))
            ),
            "bit flipped at {at}"
        );
    }
    let mut damaged = original.clone();
    let middle = original.len() / 2;
    damaged[middle] ^= 1;
    std::fs::write(&bad, &damaged).unwrap();
    assert_refused(&bad, root.path(), "a flipped bit");
    // Trailing bytes.
    let mut longer = original.clone();
    longer.push(0);
    std::fs::write(&bad, &longer).unwrap();
    assert_refused(&bad, root.path(), "a trailing byte");
    // Another format version.
    let mut v2 = original.clone();
    v2[11] = 2;
    std::fs::write(&bad, &v2).unwrap();
    assert!(matches!(
        backup::verify(&bad),
        Err(BackupError::UnsupportedVersion(2))
    ));
    // A file that is no backup.
    std::fs::write(&bad, b"hello").unwrap();
    assert_refused(&bad, root.path(), "not a backup");
    // The intact one still restores.
    backup::restore(&good, &root.path().join("target"), false).unwrap();
}

#[test]
fn a_restore_refuses_a_non_empty_directory_unless_forced() {
    let root = tempfile::tempdir().unwrap();
    let good = small_backup(root.path());
    let target = root.path().join("target");
    std::fs::create_dir(&target).unwrap();
    std::fs::write(target.join("precious"), b"keep me").unwrap();
    assert!(matches!(
        backup::restore(&good, &target, false),
        Err(BackupError::TargetNotEmpty(_))
    ));
    assert_eq!(std::fs::read(target.join("precious")).unwrap(), b"keep me");

    // An empty directory is fine without force.
    let empty = root.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    backup::restore(&good, &empty, false).unwrap();

    // A directory a running store has open is refused even with force.
    let open = SledBackend::open(&empty).unwrap();
    assert!(matches!(
        backup::restore(&good, &empty, true),
        Err(BackupError::InUse(_))
    ));
    drop(open);

    let restored = backup::restore(&good, &target, true).unwrap();
    let aside = restored
        .moved_aside
        .expect("the old directory was moved aside");
    assert_eq!(std::fs::read(aside.join("precious")).unwrap(), b"keep me");
    assert_eq!(restored.left_behind, vec![aside.join("precious")]);
    assert!(!target.join("precious").exists());
    let b = SledBackend::open(&target).unwrap();
    assert_eq!(
        b.get_page(&page_key(COLL, 1, 1, 2)).unwrap(),
        Some(bytes(2, 500))
    );
}

#[test]
fn prune_keeps_recent_backups_and_the_newest() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("backups");
    let b = SledBackend::open(root.path().join("data")).unwrap();
    let now = UNIX_EPOCH + Duration::from_secs(1_750_000_000);
    let day = Duration::from_secs(86_400);
    let mut made = Vec::new();
    for age in [10 * day, 8 * day, 6 * day, Duration::from_secs(3600)] {
        made.push(b.backup_at(&dir, now - age).unwrap().path);
    }
    // The leftovers of a crashed backup, old and recent, and an unrelated file.
    let old_leftover = dir.join(format!(
        ".{}.partial",
        backup::file_name(1_750_000_000 - 9 * 86_400)
    ));
    let new_leftover = dir.join(format!(
        ".{}.partial",
        backup::file_name(1_750_000_000 - 60)
    ));
    std::fs::write(&old_leftover, b"x").unwrap();
    std::fs::write(&new_leftover, b"x").unwrap();
    std::fs::write(dir.join("notes.txt"), b"x").unwrap();
    assert_eq!(
        backup::list(&dir)
            .unwrap()
            .iter()
            .map(|l| &l.path)
            .collect::<Vec<_>>(),
        made.iter().collect::<Vec<_>>()
    );

    let mut removed = backup::prune(&dir, 7 * day, now).unwrap();
    removed.sort();
    let mut expected = vec![made[0].clone(), made[1].clone(), old_leftover];
    expected.sort();
    assert_eq!(removed, expected);
    assert!(made[2].exists() && made[3].exists() && new_leftover.exists());
    assert!(dir.join("notes.txt").exists());

    // Much later: everything is old, but the newest backup stays.
    let removed = backup::prune(&dir, 7 * day, now + 30 * day).unwrap();
    assert!(removed.contains(&made[2]));
    assert!(!removed.contains(&made[3]));
    assert_eq!(backup::list(&dir).unwrap().len(), 1);
    // A backup of the same second is refused, not overwritten.
    assert!(matches!(
        b.backup_at(&dir, now - Duration::from_secs(3600)),
        Err(BackupError::Exists(_))
    ));
}

fn itself(s: &SledBackend) -> &SledBackend {
    s
}

#[test]
fn the_scheduler_backs_up_a_serving_store() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("backups");
    let store = Arc::new(SledBackend::open(root.path().join("data")).unwrap());
    register(&store, ALICE, "alice");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let task = {
        let _entered = runtime.enter();
        backup::spawn_scheduler(
            Arc::clone(&store),
            itself,
            Schedule {
                dir: dir.clone(),
                every: Duration::from_secs(3600),
                keep: backup::DEFAULT_KEEP,
            },
        )
    };
    // The first backup is due at once (there is none yet).
    let mut listed = Vec::new();
    for _ in 0..100 {
        listed = backup::list(&dir).unwrap_or_default();
        if !listed.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    task.abort();
    runtime.shutdown_timeout(Duration::from_secs(5));
    assert_eq!(listed.len(), 1, "one backup, the next one an hour later");
    let info = backup::verify(&listed[0].path).unwrap();
    assert!(info.entries >= 5);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(now.abs_diff(info.created) < 60);
}

#[cfg(unix)]
mod binary {
    use super::*;
    use std::io::{BufRead as _, BufReader};
    use std::process::{Command, Output, Stdio};

    const BIN: &str = env!("CARGO_BIN_EXE_vault-server");

    fn run(args: &[&std::ffi::OsStr]) -> Output {
        Command::new(BIN)
            .args(args)
            .env_remove("VAULT_DATABASE_URL")
            .output()
            .unwrap()
    }

    fn text(out: &Output) -> String {
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }

    #[test]
    fn backup_verify_and_restore_through_the_subcommands() {
        let root = tempfile::tempdir().unwrap();
        let data = root.path().join("data");
        let out = root.path().join("backups");
        let b = SledBackend::open(&data).unwrap();
        register(&b, ALICE, "alice");
        b.create_scope(&COLL, ScopeKind::Collection, &ALICE)
            .unwrap();
        let key = page_key(COLL, 1, 1, 0);
        assert_eq!(b.put_page(&key, &bytes(1, 9_000), Q).unwrap(), Write::Done);
        // Open: the subcommand refuses a directory in use.
        let busy = run(&[
            "backup".as_ref(),
            "--data-dir".as_ref(),
            data.as_os_str(),
            "--out".as_ref(),
            out.as_os_str(),
        ]);
        assert_eq!(busy.status.code(), Some(1), "{}", text(&busy));
        assert!(text(&busy).contains("in use"), "{}", text(&busy));
        drop(b);
        std::thread::sleep(Duration::from_millis(300));

        let made = run(&[
            "backup".as_ref(),
            "--data-dir".as_ref(),
            data.as_os_str(),
            "--out".as_ref(),
            out.as_os_str(),
        ]);
        assert!(made.status.success(), "{}", text(&made));
        let listed = backup::list(&out).unwrap();
        assert_eq!(listed.len(), 1);
        let file = listed[0].path.as_os_str();
        let info = backup::verify(&listed[0].path).unwrap();
        assert!(text(&made).contains(&info.sha256_hex()));

        let verified = run(&["verify-backup".as_ref(), file]);
        assert!(verified.status.success(), "{}", text(&verified));
        assert!(text(&verified).contains("intact"));

        let target = root.path().join("restored");
        let restored = run(&[
            "restore".as_ref(),
            "--from".as_ref(),
            file,
            "--data-dir".as_ref(),
            target.as_os_str(),
        ]);
        assert!(restored.status.success(), "{}", text(&restored));
        // Again: the directory is not empty now.
        let again = run(&[
            "restore".as_ref(),
            "--from".as_ref(),
            file,
            "--data-dir".as_ref(),
            target.as_os_str(),
        ]);
        assert_eq!(again.status.code(), Some(1));
        assert!(text(&again).contains("--force"), "{}", text(&again));
        let forced = run(&[
            "restore".as_ref(),
            "--from".as_ref(),
            file,
            "--data-dir".as_ref(),
            target.as_os_str(),
            "--force".as_ref(),
        ]);
        assert!(forced.status.success(), "{}", text(&forced));
        assert!(text(&forced).contains("moved to"), "{}", text(&forced));

        let r = SledBackend::open(&target).unwrap();
        assert_eq!(r.get_page(&key).unwrap(), Some(bytes(1, 9_000)));
        assert_eq!(r.user_by_name("alice").unwrap(), Some(ALICE));
        drop(r);

        // A damaged backup: refused, exit code 1.
        let mut damaged = std::fs::read(&listed[0].path).unwrap();
        let middle = damaged.len() / 2;
        damaged[middle] ^= 4;
        let bad = root.path().join("bad.vbk");
        std::fs::write(&bad, damaged).unwrap();
        let refused = run(&["verify-backup".as_ref(), bad.as_os_str()]);
        assert_eq!(refused.status.code(), Some(1));
        assert!(text(&refused).contains("damaged"), "{}", text(&refused));
    }

    #[test]
    fn a_serving_server_backs_itself_up() {
        let root = tempfile::tempdir().unwrap();
        let out = root.path().join("backups");
        let mut child = Command::new(BIN)
            .args([
                "--listen",
                "127.0.0.1:0",
                "--iterations",
                "100000",
                "--data-dir",
            ])
            .arg(root.path().join("data"))
            .arg("--backup-dir")
            .arg(&out)
            .env("RUST_LOG", "info")
            .env_remove("VAULT_DATABASE_URL")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, log) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut seen = Vec::new();
        let written = loop {
            match log.recv_timeout(Duration::from_secs(30)) {
                Ok(line) if line.contains("backup written") => break true,
                Ok(line) => seen.push(line),
                Err(_) => break false,
            }
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let status = child.wait().unwrap();
        assert!(written, "no backup logged: {seen:?}");
        assert!(status.success());
        let listed = backup::list(&out).unwrap();
        assert_eq!(listed.len(), 1);
        backup::verify(&listed[0].path).unwrap();
    }
}

/// Every backup, and every failed one, is in the store's audit log (audit.md §4: codes
/// 60–61): the event carries the file's SHA-256 and size, and the chain stays intact.
#[test]
fn backups_are_recorded_in_the_audit_log() {
    use vault_server::audit::{self, AuditStore, Entry, EventKind};
    let root = tempfile::tempdir().unwrap();
    let b = SledBackend::open(root.path().join("data")).unwrap();
    register(&b, ALICE, "alice");
    let info = b.backup_to(root.path().join("backups")).unwrap();
    // A backup directory that is a file: the backup fails.
    let not_a_dir = root.path().join("file");
    std::fs::write(&not_a_dir, b"x").unwrap();
    assert!(b.backup_to(&not_a_dir).is_err());

    let records = b.scan(0, 1000).unwrap();
    let entries: Vec<_> = records
        .iter()
        .map(|(_, r)| Entry::decode(r).unwrap())
        .collect();
    let created: Vec<_> = entries
        .iter()
        .filter(|e| e.event.kind == EventKind::BackupCreated)
        .collect();
    assert_eq!(created.len(), 1);
    let details = created[0].event.details;
    assert_eq!(details.digest, Some(info.sha256));
    assert_eq!(
        details.count,
        Some(std::fs::metadata(&info.path).unwrap().len())
    );
    assert_eq!(created[0].event.account, None);
    assert_eq!(
        entries
            .iter()
            .filter(|e| e.event.kind == EventKind::BackupFailed)
            .count(),
        1
    );
    // The failure comes after the success, and the chain verifies.
    assert_eq!(
        entries.last().map(|e| e.event.kind),
        Some(EventKind::BackupFailed)
    );
    assert!(audit::verify_chain(&b).unwrap().first_broken.is_none());
}

/// `restore --drop-sessions` leaves every session out and nothing else; a plain restore
/// keeps them (backup.md §4).
#[test]
fn a_restore_can_drop_every_session() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let b = SledBackend::open(&data).unwrap();
    let written = write_everything(&b);
    let info = b.backup_to(root.path().join("backups")).unwrap();
    drop(b);

    let kept = root.path().join("kept");
    backup::restore(&info.path, &kept, false).unwrap();
    let dropped = root.path().join("dropped");
    let options = backup::RestoreOptions {
        force: false,
        drop_sessions: true,
    };
    backup::restore_with(&info.path, &dropped, options).unwrap();

    let mut with = dump(&kept);
    let mut without = dump(&dropped);
    assert_eq!(with.get(&b"sessions"[..]).map(Vec::len), Some(1));
    assert_eq!(without.get(&b"sessions"[..]).map(Vec::len), Some(0));
    for trees in [&mut with, &mut without] {
        trees.remove(&b"pages"[..]);
        trees.remove(&b"sessions"[..]);
    }
    assert_eq!(with, without, "only the sessions differ");

    let b = SledBackend::open(&dropped).unwrap();
    assert_eq!(b.get(&written.session.0).unwrap(), None);
    assert!(b.can_reach(&BOB, &COLL).unwrap());
    drop(b);
    let b = SledBackend::open(&kept).unwrap();
    read_back(&b, &written); // the session included
}
