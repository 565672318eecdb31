//! Two writers of one collection (pages.md §6.1): the loser of the manifest
//! compare-and-swap merges, and nothing either side stored is lost. Two devices of one user
//! (one keyring, two local states) share one store, as two devices share one server; the
//! same is run over the real server in tests/remote.rs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::{Arc, Barrier};

use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use vault_core::{Collection, LocalState, MemoryStore, PutOptions, Store, Vault};
use vault_keyring::{Keyring, KeyringOptions};

type Device = Vault<Arc<MemoryStore>>;

/// Two devices of one user on one store.
fn two_devices() -> (Device, Device) {
    let store = Arc::new(MemoryStore::new());
    let keyring =
        || Keyring::generate(&mut ChaCha20Rng::from_seed([9; 32]), &KeyringOptions::new()).unwrap();
    (
        Vault::open(store.clone(), keyring(), LocalState::in_memory()),
        Vault::open(store, keyring(), LocalState::in_memory()),
    )
}

fn names<S: Store>(c: &Collection<'_, S>) -> Vec<String> {
    c.list().into_iter().map(|l| l.name).collect()
}

/// The one conflict copy of `stem…ext` in `c`.
fn conflict_copy<S: Store>(c: &Collection<'_, S>, stem: &str, ext: &str) -> String {
    let copies: Vec<String> = names(c)
        .into_iter()
        .filter(|n| n.starts_with(&format!("{stem} (conflict ")) && n.ends_with(ext))
        .collect();
    assert_eq!(copies.len(), 1, "{:?}", names(c));
    copies[0].clone()
}

#[test]
fn both_change_one_object_and_both_versions_are_kept() {
    let (a, b) = two_devices();
    let mut ca = a.collection("docs").unwrap();
    ca.put("notes/plan.txt", b"original").unwrap();
    let mut cb = b.collection("docs").unwrap();
    assert_eq!(cb.get("notes/plan.txt").unwrap(), b"original");

    ca.put("notes/plan.txt", b"A's edit").unwrap();
    // B wrote against the old manifest: the swap fails, B merges.
    cb.put("notes/plan.txt", b"B's edit, longer").unwrap();

    for c in [&mut ca, &mut cb] {
        c.refresh().unwrap();
        assert_eq!(c.get("notes/plan.txt").unwrap(), b"A's edit");
        let copy = conflict_copy(c, "notes/plan", ".txt");
        assert_eq!(c.get(&copy).unwrap(), b"B's edit, longer");
        assert_eq!(c.list().len(), 2);
    }
    // The copy is a whole object of its own: its header names it, it can be overwritten.
    let copy = conflict_copy(&cb, "notes/plan", ".txt");
    assert_eq!(cb.meta(&copy).unwrap().name, copy);
    cb.put(&copy, b"resolved").unwrap();
    assert_eq!(cb.get(&copy).unwrap(), b"resolved");
}

#[test]
fn disjoint_changes_merge_without_copies() {
    let (a, b) = two_devices();
    let mut ca = a.collection("docs").unwrap();
    ca.put("shared.txt", b"v1").unwrap();
    ca.put("old.txt", b"old").unwrap();
    let mut cb = b.collection("docs").unwrap();

    let mut batch = ca.batch();
    batch.put("from-a.txt", b"a").unwrap();
    batch.put("shared.txt", b"v2 by A").unwrap();
    batch.commit().unwrap();

    let mut batch = cb.batch();
    batch.put("from-b.txt", b"b").unwrap();
    batch.delete("old.txt").unwrap();
    batch.commit().unwrap();

    ca.refresh().unwrap();
    for c in [&ca, &cb] {
        assert_eq!(names(c), ["from-a.txt", "from-b.txt", "shared.txt"]);
        assert_eq!(c.get("shared.txt").unwrap(), b"v2 by A");
        assert_eq!(c.get("from-b.txt").unwrap(), b"b");
    }
}

#[test]
fn a_change_survives_a_concurrent_deletion_both_ways() {
    let (a, b) = two_devices();
    let mut ca = a.collection("docs").unwrap();
    ca.put("x.bin", b"x1").unwrap();
    ca.put("y.bin", b"y1").unwrap();
    let mut cb = b.collection("docs").unwrap();

    // A deletes x, B changes x (B loses the race): B's change stays.
    ca.delete("x.bin").unwrap();
    cb.put("x.bin", b"x2 by B").unwrap();
    // B deletes y, A changes y (A, now behind, loses): A's change stays, B's deletion is
    // dropped.
    cb.delete("y.bin").unwrap();
    ca.put("y.bin", b"y2 by A").unwrap();

    for c in [&mut ca, &mut cb] {
        c.refresh().unwrap();
        assert_eq!(c.get("x.bin").unwrap(), b"x2 by B");
        assert_eq!(c.get("y.bin").unwrap(), b"y2 by A");
        assert_eq!(names(c), ["x.bin", "y.bin"]);
    }
}

#[test]
fn both_create_one_name() {
    let (a, b) = two_devices();
    let mut ca = a.collection("docs").unwrap();
    ca.put("seed", b"").unwrap();
    let mut cb = b.collection("docs").unwrap();
    ca.put("report", b"A's report").unwrap();
    cb.put("report", b"B's report").unwrap();
    ca.refresh().unwrap();
    assert_eq!(ca.get("report").unwrap(), b"A's report");
    let copy = conflict_copy(&ca, "report", "");
    assert_eq!(ca.get(&copy).unwrap(), b"B's report");

    // A name whose object the other side deleted: the new object takes its place.
    ca.put("gone", b"first").unwrap();
    cb.refresh().unwrap();
    cb.delete("gone").unwrap();
    let mut cc = a.collection("docs").unwrap();
    cc.refresh().unwrap(); // A's second handle has seen the deletion …
    ca.put("gone", b"again").unwrap(); // … this one had not: it merges as a new version
    cc.refresh().unwrap();
    assert_eq!(cc.get("gone").unwrap(), b"again");
}

#[test]
fn record_tables_and_large_objects_survive_a_conflict_copy() {
    let (a, b) = two_devices();
    let mut ca = a.collection("docs").unwrap();
    let records: BTreeMap<Vec<u8>, Vec<u8>> = (0..500u32)
        .map(|i| (i.to_be_bytes().to_vec(), vec![i as u8; 40]))
        .collect();
    ca.put_records("table", &records, &PutOptions::records())
        .unwrap();
    let mut cb = b.collection("docs").unwrap();
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    ca.put("table", b"A replaced the table").unwrap();
    let mut changed = records.clone();
    changed.insert(b"new".to_vec(), b"value".to_vec());
    let mut batch = cb.batch();
    batch
        .put_records("table", &changed, &PutOptions::records())
        .unwrap();
    batch
        .put_reader("big", &mut &big[..], &PutOptions::default())
        .unwrap();
    batch.commit().unwrap();
    ca.refresh().unwrap();
    assert_eq!(ca.get("table").unwrap(), b"A replaced the table");
    let copy = conflict_copy(&ca, "table", "");
    assert_eq!(ca.records(&copy).unwrap(), changed);
    assert_eq!(ca.get("big").unwrap(), big);
}

/// Two devices write in threads at once, many rounds, each round several objects (some
/// names shared, overwritten by both): at the end every version either side committed is
/// in the collection, under its name or as a conflict copy.
#[test]
fn two_writers_in_threads_lose_nothing() {
    let (a, b) = two_devices();
    a.collection("busy").unwrap().put("start", b"").unwrap();
    let barrier = Arc::new(Barrier::new(2));
    const ROUNDS: u32 = 25;
    let run = |device: &Device, who: &'static str, barrier: Arc<Barrier>| {
        let mut c = device.collection("busy").unwrap();
        let mut mine = Vec::new();
        for round in 0..ROUNDS {
            barrier.wait();
            let mut batch = c.batch();
            let own = format!("{who}/{round}");
            let shared = format!("shared/{}", round % 3);
            let own_data = format!("{who} wrote {round}").into_bytes();
            let shared_data = format!("{who} overwrote {shared} in round {round}").into_bytes();
            batch.put(&own, &own_data).unwrap();
            batch.put(&shared, &shared_data).unwrap();
            batch.commit().unwrap();
            mine.push(own_data);
            mine.push(shared_data);
        }
        mine
    };
    let (mine_a, mine_b) = std::thread::scope(|s| {
        let ba = barrier.clone();
        let ta = s.spawn(|| run(&a, "a", ba));
        let tb = s.spawn(|| run(&b, "b", barrier));
        (ta.join().unwrap(), tb.join().unwrap())
    });
    let mut c = a.collection("busy").unwrap();
    c.refresh().unwrap();
    let stored: Vec<Vec<u8>> = c.list().iter().map(|l| c.get(&l.name).unwrap()).collect();
    // Every own object is there; every shared write is there unless the same device
    // overwrote it later (its own newer version replaced it, as it should).
    for who in ["a", "b"] {
        for round in 0..ROUNDS {
            let own = format!("{who} wrote {round}").into_bytes();
            assert!(stored.contains(&own), "{who} {round} lost");
        }
    }
    for (who, mine) in [("a", &mine_a), ("b", &mine_b)] {
        for round in ROUNDS - 3..ROUNDS {
            let last = format!("{who} overwrote shared/{} in round {round}", round % 3);
            assert!(mine.contains(&last.clone().into_bytes()));
            assert!(stored.contains(&last.into_bytes()), "{who}: {round} lost");
        }
    }
}
