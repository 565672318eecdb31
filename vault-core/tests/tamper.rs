//! The malicious server: a test holds a second handle on the store a vault uses and alters
//! it between the vault's writes and reads — flips bits, truncates, drops, duplicates,
//! reorders and splices pages across objects and collections, replays older pages and
//! manifests, injects pages and objects, swaps objects. Each attempt must fail with the one
//! integrity error and return no plaintext (THREATS C9–C16, I1, I2).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use vault_core::{
    Compression, Error, LocalState, MemoryStore, ObjectAddress, PageAddress, PutOptions, Store,
    Vault,
};
use vault_keyring::{Keyring, KeyringOptions};

const PAGE: u32 = 4096;

fn keyring(seed: u8) -> Keyring {
    Keyring::generate(
        &mut ChaCha20Rng::from_seed([seed; 32]),
        &KeyringOptions::new(),
    )
    .unwrap()
}

fn opts() -> PutOptions<'static> {
    PutOptions {
        page_size: PAGE,
        compression: Compression::None,
        content_type: "",
    }
}

fn data(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

struct World {
    evil: Arc<MemoryStore>,
    vault: Vault<Arc<MemoryStore>>,
}

fn world() -> World {
    let evil = Arc::new(MemoryStore::new());
    let vault = Vault::open(evil.clone(), keyring(1), LocalState::in_memory());
    World { evil, vault }
}

/// Writes three objects of 3 pages (and a bit) into collection "c".
fn populate(w: &World) {
    let mut c = w.vault.collection("c").unwrap();
    for (name, seed) in [("a", 1u8), ("b", 2), ("d", 3)] {
        c.put_reader(name, &mut &data(3 * PAGE as usize + 100, seed)[..], &opts())
            .unwrap();
    }
}

fn addr(w: &World, name: &str, index: u32) -> PageAddress {
    let c = w.vault.collection("c").unwrap();
    let l = c.list().into_iter().find(|l| l.name == name).unwrap();
    PageAddress {
        collection: c.id(),
        object: l.id,
        version: l.version,
        index,
    }
}

fn header_addr(w: &World, name: &str) -> ObjectAddress {
    let a = addr(w, name, 0);
    ObjectAddress {
        collection: a.collection,
        object: a.object,
        version: a.version,
    }
}

fn read(w: &World, name: &str) -> Result<Vec<u8>, Error> {
    w.vault.collection("c")?.get(name)
}

fn assert_integrity(r: Result<Vec<u8>, Error>, what: &str) {
    match r {
        Err(Error::Integrity) => {}
        Err(other) => panic!("{what}: expected the integrity error, got {other:?}"),
        Ok(bytes) => panic!("{what}: read {} bytes of tampered data", bytes.len()),
    }
}

#[test]
fn untouched_data_reads_back() {
    let w = world();
    populate(&w);
    assert_eq!(read(&w, "a").unwrap(), data(3 * PAGE as usize + 100, 1));
    assert_eq!(read(&w, "d").unwrap(), data(3 * PAGE as usize + 100, 3));
}

#[test]
fn flipped_bits_in_pages_headers_and_manifests() {
    let w = world();
    populate(&w);
    let page = addr(&w, "a", 1);
    let original = w.evil.get_page(&page).unwrap().unwrap();
    for i in (0..original.len()).step_by(97).chain([original.len() - 1]) {
        let mut bad = original.clone();
        bad[i] ^= 1 << (i % 8);
        w.evil.put_page(&page, &bad).unwrap();
        // The version and suite bytes too: the verified header fixes the page format, so
        // another format is tampering, not a newer client.
        assert_integrity(read(&w, "a"), &format!("page byte {i}"));
    }
    w.evil.put_page(&page, &original).unwrap();
    assert!(read(&w, "a").is_ok());

    let h = header_addr(&w, "b");
    let header = w.evil.get_header(&h).unwrap().unwrap();
    for i in (0..header.len()).step_by(7) {
        let mut bad = header.clone();
        bad[i] ^= 0x80;
        w.evil.put_header(&h, &bad).unwrap();
        assert_integrity(read(&w, "b"), &format!("header byte {i}"));
    }
    w.evil.put_header(&h, &header).unwrap();

    let c = w.vault.collection("c").unwrap().id();
    let (v, manifest) = w.evil.get_manifest(&c).unwrap().unwrap();
    for i in (0..manifest.len()).step_by(13) {
        let mut bad = manifest.clone();
        bad[i] ^= 0x01;
        w.evil.swap_manifest(&c, v, v, &bad).unwrap();
        assert!(
            matches!(w.vault.collection("c").err(), Some(Error::Integrity)),
            "manifest byte {i}"
        );
    }
    w.evil.swap_manifest(&c, v, v, &manifest).unwrap();
    assert!(read(&w, "b").is_ok());
}

#[test]
fn truncated_dropped_duplicated_and_reordered_pages() {
    let w = world();
    populate(&w);
    let p0 = addr(&w, "a", 0);
    let p1 = addr(&w, "a", 1);
    let p3 = addr(&w, "a", 3);
    let page0 = w.evil.get_page(&p0).unwrap().unwrap();
    let page1 = w.evil.get_page(&p1).unwrap().unwrap();
    let page3 = w.evil.get_page(&p3).unwrap().unwrap();
    for len in [0, 1, 2, 40, page1.len() / 2, page1.len() - 1] {
        w.evil.put_page(&p1, &page1[..len]).unwrap();
        assert_integrity(read(&w, "a"), &format!("page truncated to {len}"));
    }
    let mut longer = page1.clone();
    longer.push(0);
    w.evil.put_page(&p1, &longer).unwrap();
    assert_integrity(read(&w, "a"), "page extended");
    // Duplicate: page 0 served at index 1.
    w.evil.put_page(&p1, &page0).unwrap();
    assert_integrity(read(&w, "a"), "duplicated page");
    // Reorder: pages 0 and 1 swapped.
    w.evil.put_page(&p0, &page1).unwrap();
    assert_integrity(read(&w, "a"), "reordered pages");
    w.evil.put_page(&p0, &page0).unwrap();
    w.evil.put_page(&p1, &page1).unwrap();
    assert!(read(&w, "a").is_ok());
    // The final page served in the middle.
    w.evil.put_page(&p1, &page3).unwrap();
    assert_integrity(read(&w, "a"), "final page in the middle");
    w.evil.put_page(&p1, &page1).unwrap();
    // An emptied final page; then the whole object dropped.
    w.evil.put_page(&p3, &[]).unwrap();
    assert_integrity(read(&w, "a"), "emptied final page");
    w.evil.delete_object_version(&header_addr(&w, "a")).unwrap();
    assert_integrity(read(&w, "a"), "dropped object");
}

#[test]
fn pages_spliced_across_objects_and_collections() {
    let w = world();
    populate(&w);
    {
        let mut other = w.vault.collection("other").unwrap();
        other
            .put_reader("a", &mut &data(3 * PAGE as usize + 100, 1)[..], &opts())
            .unwrap();
    }
    let a1 = addr(&w, "a", 1);
    let b1 = addr(&w, "b", 1);
    let a_page = w.evil.get_page(&a1).unwrap().unwrap();
    // B's page 1 at A's page 1.
    w.evil
        .put_page(&a1, &w.evil.get_page(&b1).unwrap().unwrap())
        .unwrap();
    assert_integrity(read(&w, "a"), "page of another object");
    // The same content, same name and index, from another collection.
    let oc = w.vault.collection("other").unwrap();
    let ol = &oc.list()[0];
    let other_page = w
        .evil
        .get_page(&PageAddress {
            collection: oc.id(),
            object: ol.id,
            version: ol.version,
            index: 1,
        })
        .unwrap()
        .unwrap();
    w.evil.put_page(&a1, &other_page).unwrap();
    assert_integrity(read(&w, "a"), "page of another collection");
    w.evil.put_page(&a1, &a_page).unwrap();
    assert!(read(&w, "a").is_ok());
}

#[test]
fn swapped_objects_and_headers() {
    let w = world();
    populate(&w);
    let ha = header_addr(&w, "a");
    let hb = header_addr(&w, "b");
    let a = w.evil.get_header(&ha).unwrap().unwrap();
    let b = w.evil.get_header(&hb).unwrap().unwrap();
    w.evil.put_header(&ha, &b).unwrap();
    w.evil.put_header(&hb, &a).unwrap();
    assert_integrity(read(&w, "a"), "swapped header a");
    assert_integrity(read(&w, "b"), "swapped header b");
    // Swap whole objects: headers and every page.
    for i in 0..4 {
        let pa = addr(&w, "a", i);
        let pb = addr(&w, "b", i);
        let x = w.evil.get_page(&pa).unwrap().unwrap();
        let y = w.evil.get_page(&pb).unwrap().unwrap();
        w.evil.put_page(&pa, &y).unwrap();
        w.evil.put_page(&pb, &x).unwrap();
    }
    assert_integrity(read(&w, "a"), "swapped object a");
    assert_integrity(read(&w, "b"), "swapped object b");
}

#[test]
fn replayed_old_pages_and_headers() {
    let w = world();
    populate(&w);
    let old_page = w.evil.get_page(&addr(&w, "a", 0)).unwrap().unwrap();
    let old_header = w.evil.get_header(&header_addr(&w, "a")).unwrap().unwrap();
    {
        let mut c = w.vault.collection("c").unwrap();
        c.put_reader("a", &mut &data(3 * PAGE as usize + 100, 9)[..], &opts())
            .unwrap();
    }
    assert_eq!(read(&w, "a").unwrap(), data(3 * PAGE as usize + 100, 9));
    w.evil.put_page(&addr(&w, "a", 0), &old_page).unwrap();
    assert_integrity(read(&w, "a"), "page of the previous version");
    w.evil
        .put_header(&header_addr(&w, "a"), &old_header)
        .unwrap();
    assert_integrity(read(&w, "a"), "header of the previous version");
}

#[test]
fn rolled_back_and_withheld_manifests() {
    let w = world();
    populate(&w);
    let c = w.vault.collection("c").unwrap().id();
    let (v3, m3) = w.evil.get_manifest(&c).unwrap().unwrap();
    {
        let mut col = w.vault.collection("c").unwrap();
        col.delete("b").unwrap();
        col.put("e", b"new").unwrap();
    }
    let (v5, m5) = w.evil.get_manifest(&c).unwrap().unwrap();
    assert_eq!(v5, v3 + 2);
    // Replay: the server serves the older manifest again (with its own version number).
    w.evil.swap_manifest(&c, v5, v3, &m3).unwrap();
    assert!(matches!(
        w.vault.collection("c").err(),
        Some(Error::Integrity)
    ));
    // The older manifest presented under the newer version number.
    w.evil.swap_manifest(&c, v3, v5, &m3).unwrap();
    assert!(matches!(
        w.vault.collection("c").err(),
        Some(Error::Integrity)
    ));
    // Restored, it opens again.
    w.evil.swap_manifest(&c, v5, v5, &m5).unwrap();
    assert!(w.vault.collection("c").is_ok());
    // A deleted collection key with the manifest in place.
    // (The server dropping the key is the same as dropping the data: detected, not hidden.)
    w.evil.put_collection_key(&c, 1, &[0u8; 80]).unwrap();
    assert!(matches!(
        w.vault.collection("c").err(),
        Some(Error::Integrity)
    ));
}

#[test]
fn injected_pages_objects_and_manifests() {
    let w = world();
    populate(&w);
    let c = w.vault.collection("c").unwrap();
    let listing = c.list();
    // An extra page after the last one is never read; the object still reads back whole.
    let mut extra = addr(&w, "a", 4);
    extra.index = 4;
    w.evil
        .put_page(
            &extra,
            &w.evil.get_page(&addr(&w, "a", 0)).unwrap().unwrap(),
        )
        .unwrap();
    assert_eq!(read(&w, "a").unwrap(), data(3 * PAGE as usize + 100, 1));
    // An object written by the server (header and pages of its own) is not in the signed
    // manifest, so it does not exist for the client.
    let injected = ObjectAddress {
        collection: c.id(),
        object: vault_core::ObjectId::from_bytes([7; 16]),
        version: 1,
    };
    w.evil
        .put_header(
            &injected,
            &w.evil.get_header(&header_addr(&w, "a")).unwrap().unwrap(),
        )
        .unwrap();
    assert_eq!(w.vault.collection("c").unwrap().list(), listing);
    // A manifest signed by another keyring (an attacker with an account) is refused, even
    // sealed under the right collection key: its writer is not trusted.
    let mallory = Vault::open(w.evil.clone(), keyring(2), LocalState::in_memory());
    let _ = mallory.collection("c").unwrap();
    // Mallory's "c" has another id (ids are keyed by the owner's name-index key) and another
    // collection key; the server can copy Mallory's manifest over the victim's.
    let mc = mallory.collection_id("c");
    let mut m = mallory.collection("c").unwrap();
    m.put("evil", b"injected").unwrap();
    let (mv, mbytes) = w.evil.get_manifest(&mc).unwrap().unwrap();
    let (cv, _) = w.evil.get_manifest(&c.id()).unwrap().unwrap();
    w.evil
        .swap_manifest(&c.id(), cv, mv.max(cv + 1), &mbytes)
        .unwrap();
    assert!(matches!(
        w.vault.collection("c").err(),
        Some(Error::Integrity)
    ));
}
