//! Objects of every interesting size round-trip: 0 bytes, 1 byte, page boundaries ±1,
//! several MiB; with and without compression; through the streaming and the simple layer.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Read;
use std::sync::OnceLock;

use proptest::prelude::*;
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;
use vault_core::{Compression, LocalState, MemoryStore, PutOptions, Vault};
use vault_keyring::{Keyring, KeyringOptions};

fn vault() -> &'static Vault<MemoryStore> {
    static V: OnceLock<Vault<MemoryStore>> = OnceLock::new();
    V.get_or_init(|| {
        let k = Keyring::generate(&mut ChaCha20Rng::from_seed([5; 32]), &KeyringOptions::new())
            .unwrap();
        Vault::open(MemoryStore::new(), k, LocalState::in_memory())
    })
}

fn content(len: usize, seed: u64, compressible: bool) -> Vec<u8> {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let mut v = vec![0u8; len];
    if compressible {
        for (i, b) in v.iter_mut().enumerate() {
            *b = b"the quick brown fox jumps over the lazy dog "[i % 44] ^ ((i / 4096) as u8 & 1);
        }
    } else {
        rng.fill_bytes(&mut v);
    }
    v
}

fn round_trip(name: &str, data: &[u8], page_size: u32, compression: Compression) {
    // One collection per test thread's object family: concurrent writers of one collection
    // would merge (and race).
    let collection = name.split('/').next().unwrap();
    let mut c = vault().collection(collection).unwrap();
    let opts = PutOptions {
        page_size,
        compression,
        content_type: "application/octet-stream",
    };
    c.put_reader(name, &mut &data[..], &opts).unwrap();
    assert_eq!(c.get(name).unwrap(), data, "{name}");
    // Streaming read in odd-sized chunks.
    let mut r = c.open(name).unwrap();
    assert_eq!(r.meta().size, data.len() as u64);
    assert_eq!(r.meta().content_type, "application/octet-stream");
    let mut out = Vec::new();
    let mut buf = [0u8; 777];
    loop {
        let n = r.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    assert_eq!(out, data, "{name} streamed");
    let listed = c.list().into_iter().find(|l| l.name == name).unwrap();
    assert_eq!(listed.size, data.len() as u64);
}

#[test]
fn page_boundaries() {
    let page = 4096usize;
    for len in [
        0,
        1,
        page - 1,
        page,
        page + 1,
        2 * page - 1,
        2 * page,
        2 * page + 1,
    ] {
        for compression in [Compression::None, Compression::Zstd(3)] {
            for compressible in [false, true] {
                let data = content(len, len as u64, compressible);
                round_trip(
                    &format!("b/{len}/{compression:?}/{compressible}"),
                    &data,
                    page as u32,
                    compression,
                );
            }
        }
    }
}

#[test]
fn several_mib_with_default_pages() {
    let data = content(5 * 1024 * 1024 + 3, 1, false);
    round_trip(
        "big/random",
        &data,
        vault_core::DEFAULT_PAGE_SIZE,
        Compression::default(),
    );
    let data = content(5 * 1024 * 1024 + 3, 2, true);
    round_trip(
        "big/text",
        &data,
        vault_core::DEFAULT_PAGE_SIZE,
        Compression::default(),
    );
}

#[test]
fn overwrite_and_delete() {
    let mut c = vault().collection("overwrite").unwrap();
    c.put("x", b"one").unwrap();
    c.put("x", b"two two").unwrap();
    assert_eq!(c.get("x").unwrap(), b"two two");
    // An overwrite raises the version by 1 plus a random 32-bit step (pages.md §6.1).
    let second = c.list()[0].version;
    assert!(second > 1 && second <= 2 + u64::from(u32::MAX));
    let created = c.meta("x").unwrap().created_at;
    c.delete("x").unwrap();
    assert!(matches!(c.get("x"), Err(vault_core::Error::NotFound)));
    assert!(c.list().is_empty());
    c.put("x", b"three").unwrap();
    assert_eq!(c.get("x").unwrap(), b"three");
    assert!(c.list()[0].version > second + 1);
    assert!(c.meta("x").unwrap().created_at >= created);
    assert!(matches!(c.delete("nope"), Err(vault_core::Error::NotFound)));
}

#[test]
fn bad_arguments_are_refused() {
    let mut c = vault().collection("args").unwrap();
    for page_size in [0, 1000, 4095, 5000, 32 * 1024 * 1024] {
        let opts = PutOptions {
            page_size,
            ..PutOptions::default()
        };
        assert!(matches!(
            c.put_reader("p", &mut &b"x"[..], &opts),
            Err(vault_core::Error::InvalidInput(_))
        ));
    }
    let long = "n".repeat(vault_core::MAX_NAME_LEN + 1);
    assert!(matches!(
        c.put(&long, b"x"),
        Err(vault_core::Error::InvalidInput(_))
    ));
    assert!(c.list().is_empty());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn random_sizes_round_trip(len in 0usize..40_000, seed in any::<u64>(), compressible in any::<bool>()) {
        let data = content(len, seed, compressible);
        round_trip(&format!("p/{len}/{seed}"), &data, 4096, Compression::default());
    }
}

#[test]
fn concurrent_handles_merge_and_lose_nothing() {
    let mut one = vault().collection("conflict").unwrap();
    let mut two = vault().collection("conflict").unwrap();
    one.put("from-one", b"1").unwrap();
    // `two` still holds the empty manifest: its commit loses the compare-and-swap, merges
    // with `one`'s manifest and commits on top of it (pages.md §6.1).
    two.put("from-two", b"2").unwrap();
    assert_eq!(two.list().len(), 2);
    one.refresh().unwrap();
    let names: Vec<String> = one.list().into_iter().map(|l| l.name).collect();
    assert_eq!(names, ["from-one", "from-two"]);
    assert_eq!(one.get("from-one").unwrap(), b"1");
    assert_eq!(one.get("from-two").unwrap(), b"2");
}

#[test]
fn ten_thousand_small_records_share_pages() {
    use std::collections::BTreeMap;
    let mut c = vault().collection("records").unwrap();
    let mut records = BTreeMap::new();
    for i in 0..10_000u32 {
        let key = format!("contact/{i:05}").into_bytes();
        let value = format!(
            "{{\"id\":{i},\"name\":\"Person {i}\",\"note\":\"{}\"}}",
            "x".repeat(150 + (i % 20) as usize)
        )
        .into_bytes();
        records.insert(key, value);
    }
    c.put_records("contacts", &records, &PutOptions::default())
        .unwrap();
    let listed = c.list().into_iter().find(|l| l.name == "contacts").unwrap();
    let pages = c.manifest().entries[&listed.id].page_count;
    // ~2 MB of records in 1 MiB pages: a handful of pages, not 10,000.
    assert!(pages <= 3, "{pages} pages");
    assert_eq!(
        c.get_record("contacts", b"contact/04711").unwrap().unwrap(),
        records[&b"contact/04711".to_vec()]
    );
    assert_eq!(c.get_record("contacts", b"contact/99999").unwrap(), None);
    assert_eq!(c.records("contacts").unwrap(), records);
    // Records straddling page boundaries, with small pages.
    let opts = PutOptions {
        page_size: 4096,
        ..PutOptions::default()
    };
    c.put_records("small-pages", &records, &opts).unwrap();
    for i in (0..10_000u32).step_by(997) {
        let key = format!("contact/{i:05}").into_bytes();
        assert_eq!(
            c.get_record("small-pages", &key).unwrap().as_ref(),
            records.get(&key)
        );
    }
    assert!(matches!(
        c.get_record("nope", b"k"),
        Err(vault_core::Error::NotFound)
    ));
    c.put("blob", b"not a table").unwrap();
    assert!(matches!(
        c.get_record("blob", b"k"),
        Err(vault_core::Error::InvalidInput(_))
    ));
    let empty = BTreeMap::new();
    c.put_records("empty", &empty, &PutOptions::default())
        .unwrap();
    assert!(c.records("empty").unwrap().is_empty());
}

#[test]
fn batches_commit_once_and_clean_up_when_dropped() {
    let mut c = vault().collection("batch").unwrap();
    c.put("keep", b"v1").unwrap();
    let before = c.manifest().version;
    {
        let mut b = c.batch();
        for i in 0..10 {
            b.put(&format!("f{i}"), format!("file {i}").as_bytes())
                .unwrap();
        }
        b.put("f3", b"rewritten in the batch").unwrap();
        b.delete("keep").unwrap();
        b.commit().unwrap();
    }
    assert_eq!(
        c.manifest().version,
        before + 1,
        "one manifest for the whole batch"
    );
    assert_eq!(c.list().len(), 10);
    assert_eq!(c.get("f3").unwrap(), b"rewritten in the batch");
    assert!(matches!(c.get("keep"), Err(vault_core::Error::NotFound)));
    // A dropped batch changes nothing.
    {
        let mut b = c.batch();
        b.put("never", b"x").unwrap();
    }
    assert_eq!(c.manifest().version, before + 1);
    assert!(matches!(c.get("never"), Err(vault_core::Error::NotFound)));
}
