//! The storage contract run against the sled backend (the shared suite is
//! `tests/contract/mod.rs`), plus what is particular to sled: reopening a data directory
//! and refusing a damaged one.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod contract;

use contract::{register, ALICE};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use vault_server::auth::SessionStore;
use vault_server::store::{AccountStore, Cas, SledBackend};

#[test]
fn sled_backend_keeps_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let s = SledBackend::open(dir.path()).unwrap();
    contract::all(&s);
}

#[test]
fn sled_backend_survives_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = ChaCha20Rng::from_seed([6; 32]);
    let token = {
        let s = SledBackend::open(dir.path()).unwrap();
        assert!(register(&s, ALICE, 1));
        assert_eq!(s.swap_keyring(&ALICE, 1, b"v2").unwrap(), Cas::Done);
        s.issue(&mut rng, ALICE, 1_000, 100).unwrap()
    };
    let s = SledBackend::open(dir.path()).unwrap();
    assert_eq!(s.keyring(&ALICE).unwrap(), Some((2, b"v2".to_vec())));
    assert_eq!(s.verifier(&ALICE).unwrap(), Some(vec![1; 58]));
    assert_eq!(s.authenticate(&token, 1_001).unwrap(), Some(ALICE));
}

#[test]
fn concurrent_keyring_swaps_have_exactly_one_winner_per_version() {
    let dir = tempfile::tempdir().unwrap();
    let s = SledBackend::open(dir.path()).unwrap();
    assert!(register(&s, ALICE, 1));
    let wins: usize = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8u8)
            .map(|t| {
                let s = &s;
                scope.spawn(move || {
                    usize::from(s.swap_keyring(&ALICE, 1, &[t; 4]).unwrap() == Cas::Done)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    assert_eq!(wins, 1);
    assert_eq!(s.keyring(&ALICE).unwrap().unwrap().0, 2);
}

#[test]
fn a_damaged_store_is_refused_at_start_up() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = sled::open(dir.path()).unwrap();
        // A keyring record without its 8-byte version, as no backend writes it.
        db.open_tree("keyrings")
            .unwrap()
            .insert([0xa1; 16], &b"short"[..])
            .unwrap();
        db.flush().unwrap();
    }
    let e = SledBackend::open(dir.path()).err().expect("refused");
    assert!(e.to_string().contains("corrupt keyring record"), "{e}");
}

#[test]
fn data_and_the_change_sequence_survive_a_reopen() {
    use vault_server::store::{DataStore, ManifestSwap, PageKey, ScopeKind, Write};
    let dir = tempfile::tempdir().unwrap();
    let (c, owner) = ([0xc1; 16], [0x11; 16]);
    let key = PageKey {
        collection: c,
        object: [1; 16],
        version: 1,
        index: 0,
    };
    let first = {
        let s = SledBackend::open(dir.path()).unwrap();
        s.create_scope(&c, ScopeKind::Collection, &owner).unwrap();
        assert_eq!(s.put_page(&key, &[9; 4096], u64::MAX).unwrap(), Write::Done);
        assert_eq!(
            s.swap_manifest(&c, 0, 1, b"m1", u64::MAX).unwrap(),
            ManifestSwap::Cas(Cas::Done)
        );
        s.changes(&owner, 0, 100).unwrap().next
    };
    let s = SledBackend::open(dir.path()).unwrap();
    assert_eq!(s.get_page(&key).unwrap(), Some(vec![9; 4096]));
    assert_eq!(s.get_manifest(&c).unwrap(), Some((1, b"m1".to_vec())));
    assert_eq!(s.usage(&owner).unwrap(), 4096 + 2);
    // New changes continue after the old ones: cursors stay valid across restarts.
    assert_eq!(
        s.swap_manifest(&c, 1, 2, b"m2", u64::MAX).unwrap(),
        ManifestSwap::Cas(Cas::Done)
    );
    let next = s.changes(&owner, first, 100).unwrap();
    assert_eq!(next.changes.len(), 1);
    assert!(next.changes[0].seq > first);
}

#[test]
fn concurrent_manifest_swaps_have_exactly_one_winner_and_usage_stays_exact() {
    use vault_server::store::{DataStore, ManifestSwap, PageKey, ScopeKind, Write};
    let dir = tempfile::tempdir().unwrap();
    let s = SledBackend::open(dir.path()).unwrap();
    let (c, owner) = ([0xc1; 16], [0x11; 16]);
    s.create_scope(&c, ScopeKind::Collection, &owner).unwrap();
    let wins: usize = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8u8)
            .map(|t| {
                let s = &s;
                scope.spawn(move || {
                    // Each thread also uploads pages, to race the usage counter.
                    for i in 0..16u32 {
                        let key = PageKey {
                            collection: c,
                            object: [t; 16],
                            version: 1,
                            index: i,
                        };
                        assert_eq!(s.put_page(&key, &[t; 1000], u64::MAX).unwrap(), Write::Done);
                    }
                    usize::from(
                        s.swap_manifest(&c, 0, 1, &[t; 10], u64::MAX).unwrap()
                            == ManifestSwap::Cas(Cas::Done),
                    )
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    assert_eq!(wins, 1);
    assert_eq!(s.usage(&owner).unwrap(), 8 * 16 * 1000 + 10);
}

#[test]
fn a_damaged_data_record_is_refused_at_start_up() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = sled::open(dir.path()).unwrap();
        db.open_tree("scopes")
            .unwrap()
            .insert([0xc1; 16], &b"not a scope"[..])
            .unwrap();
        db.flush().unwrap();
    }
    let e = SledBackend::open(dir.path()).err().expect("refused");
    assert!(e.to_string().contains("corrupt scope record"), "{e}");
}

/// Whether the file system of `dir` frees the blocks of a punched hole.
#[cfg(target_os = "linux")]
fn file_system_punches(dir: &std::path::Path) -> bool {
    use std::io::Write as _;
    use std::os::unix::fs::MetadataExt;
    let path = dir.join("punch-probe");
    let mut f = std::fs::File::create(&path).unwrap();
    f.write_all(&vec![7u8; 1 << 20]).unwrap();
    f.sync_all().unwrap();
    let before = f.metadata().unwrap().blocks();
    let ok = rustix::fs::fallocate(
        &f,
        rustix::fs::FallocateFlags::PUNCH_HOLE | rustix::fs::FallocateFlags::KEEP_SIZE,
        0,
        1 << 20,
    )
    .is_ok();
    let after = f.metadata().unwrap().blocks();
    drop(f);
    std::fs::remove_file(&path).unwrap();
    ok && after < before
}

#[cfg(not(target_os = "linux"))]
fn file_system_punches(_: &std::path::Path) -> bool {
    false
}

/// The blocks the pack files of `dir` occupy on disk.
#[cfg(target_os = "linux")]
fn pack_blocks(dir: &std::path::Path) -> u64 {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::read_dir(dir.join("packs"))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().blocks())
        .sum()
}

/// Page bytes live in pack files: replacing, deleting an object, deleting a collection and
/// deleting an account return their space, and reads of the other pages are unaffected.
#[cfg(target_os = "linux")]
#[test]
fn deleted_and_replaced_pages_return_their_space() {
    use vault_server::store::{DataStore, ObjectKey, PageKey, ScopeKind, Write};
    let dir = tempfile::tempdir().unwrap();
    let s = SledBackend::open(dir.path()).unwrap();
    assert!(register(&s, ALICE, 1));
    let (c, d) = ([0xc1; 16], [0xd1; 16]);
    s.create_scope(&c, ScopeKind::Collection, &ALICE).unwrap();
    s.create_scope(&d, ScopeKind::Collection, &ALICE).unwrap();
    let page = |collection, object: u8, index| PageKey {
        collection,
        object: [object; 16],
        version: 1,
        index,
    };
    let bytes = |i: u32| vec![u8::try_from(i % 251).unwrap() | 1; 65_536];
    for i in 0..32 {
        for (coll, obj) in [(c, 1), (c, 2), (d, 3)] {
            assert_eq!(
                s.put_page(&page(coll, obj, i), &bytes(i), u64::MAX)
                    .unwrap(),
                Write::Done
            );
        }
    }
    let full = pack_blocks(dir.path());
    // Some file systems cannot punch holes; then there is nothing to measure. Where they
    // can (probed on a file of our own), the store must punch.
    let punches = {
        let before = pack_blocks(dir.path());
        assert_eq!(
            s.put_page(&page(c, 1, 0), &bytes(0), u64::MAX).unwrap(),
            Write::Done
        );
        let punched = pack_blocks(dir.path()) <= before;
        assert_eq!(
            punched,
            file_system_punches(dir.path()),
            "the store's hole punching disagrees with what the file system can do"
        );
        punched
    };
    let obj = |collection, object: u8| ObjectKey {
        collection,
        object: [object; 16],
        version: 1,
    };
    assert!(s.delete_object(&obj(c, 2)).unwrap());
    let after_object = pack_blocks(dir.path());
    assert!(s.delete_scope(&d).unwrap());
    let after_scope = pack_blocks(dir.path());
    if punches {
        let page_blocks = 65_536 / 512;
        assert!(
            after_object + 30 * page_blocks <= full,
            "{full} -> {after_object}"
        );
        assert!(
            after_scope + 30 * page_blocks <= after_object,
            "{after_object} -> {after_scope}"
        );
    }
    for i in 0..32 {
        assert_eq!(s.get_page(&page(c, 1, i)).unwrap(), Some(bytes(i)));
        assert_eq!(s.get_page(&page(c, 2, i)).unwrap(), None);
        assert_eq!(s.get_page(&page(d, 3, i)).unwrap(), None);
    }
    assert_eq!(s.usage(&ALICE).unwrap(), 32 * 65_536);
    assert!(s.delete_account(&ALICE).unwrap());
    if punches {
        assert!(pack_blocks(dir.path()) + 30 * 65_536 / 512 <= after_scope);
    }
    // And the directory still opens: every location left points inside its pack.
    drop(s);
    SledBackend::open(dir.path()).unwrap();
}

/// Readers never see a page's bytes disappear under them while it is replaced.
#[test]
fn reads_during_replacement_see_a_whole_page() {
    use vault_server::store::{DataStore, PageKey, ScopeKind, Write};
    let dir = tempfile::tempdir().unwrap();
    let s = SledBackend::open(dir.path()).unwrap();
    let c = [0xc1; 16];
    s.create_scope(&c, ScopeKind::Collection, &ALICE).unwrap();
    let key = PageKey {
        collection: c,
        object: [1; 16],
        version: 1,
        index: 0,
    };
    assert_eq!(
        s.put_page(&key, &[1; 65_536], u64::MAX).unwrap(),
        Write::Done
    );
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        let reader = scope.spawn(|| {
            let mut reads = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) || reads < 100 {
                let p = s.get_page(&key).unwrap().unwrap();
                assert!(
                    p[0] != 0 && p.iter().all(|b| *b == p[0]),
                    "a torn or punched page"
                );
                reads += 1;
            }
        });
        for round in 0..200u32 {
            let fill = u8::try_from(round % 250).unwrap() + 1;
            assert_eq!(
                s.put_page(&key, &[fill; 65_536], u64::MAX).unwrap(),
                Write::Done
            );
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        reader.join().unwrap();
    });
}

/// A location that points past its pack, or into a pack that is gone, is refused at start-up.
#[test]
fn a_page_location_outside_the_packs_is_refused_at_start_up() {
    use vault_server::store::{DataStore, PageKey, ScopeKind, Write};
    for damage in ["truncate", "remove"] {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = SledBackend::open(dir.path()).unwrap();
            s.create_scope(&[0xc1; 16], ScopeKind::Collection, &ALICE)
                .unwrap();
            let key = PageKey {
                collection: [0xc1; 16],
                object: [1; 16],
                version: 1,
                index: 0,
            };
            assert_eq!(s.put_page(&key, &[5; 4096], u64::MAX).unwrap(), Write::Done);
        }
        let pack = dir.path().join("packs").join("00000000.pack");
        match damage {
            "truncate" => std::fs::OpenOptions::new()
                .write(true)
                .open(&pack)
                .unwrap()
                .set_len(4095)
                .unwrap(),
            _ => std::fs::remove_file(&pack).unwrap(),
        }
        let e = SledBackend::open(dir.path()).err().expect("refused");
        assert!(
            e.to_string().contains("corrupt page location"),
            "{damage}: {e}"
        );
    }
}

/// Sessions whose account is gone (a crash between `delete_account`'s transaction and its
/// removal of the sessions) are removed when the store opens.
#[test]
fn sessions_without_an_account_are_removed_at_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = ChaCha20Rng::from_seed([0x0e; 32]);
    let (kept, orphan) = {
        let s = SledBackend::open(dir.path()).unwrap();
        assert!(register(&s, ALICE, 1));
        let kept = s.issue(&mut rng, ALICE, 1_000, 100).unwrap();
        // A session for a user that has no account, as such a crash leaves it.
        let orphan = s.issue(&mut rng, [0x0e; 16], 1_000, 100).unwrap();
        assert_eq!(s.authenticate(&orphan, 1_001).unwrap(), Some([0x0e; 16]));
        (kept, orphan)
    };
    let s = SledBackend::open(dir.path()).unwrap();
    assert_eq!(s.authenticate(&orphan, 1_001).unwrap(), None);
    assert_eq!(s.get(&orphan.hash()).unwrap(), None);
    assert_eq!(s.authenticate(&kept, 1_001).unwrap(), Some(ALICE));
}

/// A data directory another handle holds is refused with a clear message (after the short
/// wait `open` allows for a lock being released), and opens once the holder is gone.
#[test]
fn a_directory_in_use_is_refused_until_released() {
    let dir = tempfile::tempdir().unwrap();
    let first = SledBackend::open(dir.path()).unwrap();
    let e = SledBackend::open(dir.path()).err().expect("refused");
    assert!(e.to_string().contains("in use by another"), "{e}");
    drop(first);
    // Immediately: the lock is released from a background thread, which `open` waits for.
    for _ in 0..20 {
        let s = SledBackend::open(dir.path()).unwrap();
        drop(s);
    }
}
