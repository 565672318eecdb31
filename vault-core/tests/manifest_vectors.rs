//! Known-answer vectors of signed manifests (docs/spec/pages.md §6): one JSON file per
//! behaviour in `vectors/manifests/`, generated from fixed seeds, checked here, and
//! regenerated to prove they are current.
//!
//! ```text
//! VAULT_REGENERATE_VECTORS=1 cargo test -p vault-core --test manifest_vectors
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use serde::{Deserialize, Serialize};
use vault_core::internal::{check_successor, open_manifest, seal_manifest};
use vault_core::{CollectionId, Entry, Error, Manifest, ObjectId, Share, ShareKind, VaultId};
use vault_keyring::{IdentityBundle, Keyring, KeyringOptions, SymmetricKey};

#[derive(Serialize, Deserialize, PartialEq, Debug, Clone)]
struct Stored {
    version: u64,
    sealed: String,
}

#[derive(Serialize, Deserialize, PartialEq, Debug, Clone)]
struct Vector {
    description: String,
    /// "open": open `manifests[0]`; "successor": open both, then may [1] follow [0]?
    kind: String,
    collection_key: String,
    vault_id: String,
    collection_id: String,
    writer_identity_bundle: String,
    manifests: Vec<Stored>,
    expect: String,
    /// On success of "open": the manifest's chain hash and entry count.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    expected: BTreeMap<String, String>,
}

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../vectors/manifests")
}

fn id16(s: &str) -> [u8; 16] {
    hex::decode(s).unwrap().try_into().unwrap()
}

fn entry(version: u64, live: bool, name: &str, digest: u8) -> Entry {
    Entry {
        version,
        key_epoch: 1,
        live,
        size: if live { 1000 * version } else { 0 },
        page_count: u32::from(live),
        digest: if live { [digest; 32] } else { [0; 32] },
        name: name.into(),
    }
}

fn generate() -> BTreeMap<String, Vector> {
    let mut rng = ChaCha20Rng::from_seed([21; 32]);
    let alice = Keyring::generate(&mut rng, &KeyringOptions::new().with_created_at(0)).unwrap();
    let mallory = Keyring::generate(&mut rng, &KeyringOptions::new().with_created_at(0)).unwrap();
    let bundle = alice.identity_bundle(&mut rng);
    let ck = SymmetricKey::from_bytes([0x33; 32]).unwrap();
    let vault = VaultId::from_bytes([0x11; 16]);
    let collection = CollectionId::from_bytes([0x22; 16]);
    let (a, b, c) = (
        ObjectId::from_bytes([0xa0; 16]),
        ObjectId::from_bytes([0xb0; 16]),
        ObjectId::from_bytes([0xc0; 16]),
    );
    let mut v1 = Manifest::first(vault, collection, alice.id(), "photos".into());
    v1.version = 1;
    v1.timestamp = 1_795_000_000;
    v1.entries.insert(a, entry(1, true, "a.jpg", 1));
    v1.entries.insert(b, entry(1, true, "b.jpg", 2));
    let mut v2 = v1.clone();
    v2.version = 2;
    v2.prev_hash = v1.hash();
    v2.timestamp = 1_795_000_100;
    v2.entries.insert(b, entry(2, false, "b.jpg", 0)); // signed deletion
    v2.entries.insert(c, entry(1, true, "c.jpg", 3));
    v2.shares.push(Share {
        kind: ShareKind::User,
        id: [0x44; 16],
        key_fingerprint: [0x55; 32],
        group_epoch: 0,
    });
    let mut lost = v2.clone(); // b vanished without a tombstone
    lost.entries.remove(&b);
    let mut broken = v2.clone(); // does not chain to v1
    broken.prev_hash = [9; 32];
    let mut fork = v2.clone(); // same version, other content
    fork.entries.insert(c, entry(1, true, "c.jpg", 4));
    let mut older_a = v2.clone(); // a went back to an older version
    older_a.entries.insert(a, entry(0, true, "a.jpg", 1));

    let seal = |rng: &mut ChaCha20Rng, m: &Manifest, w: &Keyring| Stored {
        version: m.version,
        sealed: hex::encode(seal_manifest(rng, m, w, &ck)),
    };
    let s1 = seal(&mut rng, &v1, &alice);
    let s2 = seal(&mut rng, &v2, &alice);
    let base = |description: &str, kind: &str, manifests: Vec<Stored>, expect: &str| Vector {
        description: description.into(),
        kind: kind.into(),
        collection_key: hex::encode(ck.expose_bytes()),
        vault_id: vault.to_string(),
        collection_id: collection.to_string(),
        writer_identity_bundle: hex::encode(bundle.as_bytes()),
        manifests,
        expect: expect.into(),
        expected: BTreeMap::new(),
    };
    let mut out = BTreeMap::new();
    let mut ok1 = base(
        "Version 1 with two objects, signed by the trusted writer",
        "open",
        vec![s1.clone()],
        "ok",
    );
    ok1.expected.insert("hash".into(), hex::encode(v1.hash()));
    ok1.expected.insert("entries".into(), "2".into());
    out.insert("manifest_v1_ok".to_string(), ok1);
    let mut ok2 = base(
        "Version 2: chains to version 1, deletes b with a tombstone, adds c",
        "open",
        vec![s2.clone()],
        "ok",
    );
    ok2.expected.insert("hash".into(), hex::encode(v2.hash()));
    ok2.expected.insert("entries".into(), "3".into());
    out.insert("manifest_v2_ok".to_string(), ok2);
    out.insert(
        "manifest_v2_follows_v1".to_string(),
        base(
            "Version 2 may follow version 1",
            "successor",
            vec![s1.clone(), s2.clone()],
            "ok",
        ),
    );
    let mut wrong_version = s2.clone();
    wrong_version.version = 3;
    out.insert(
        "manifest_wrong_version".to_string(),
        base(
            "Version 2 served as version 3 (the version is in the seal's associated data)",
            "open",
            vec![wrong_version],
            "Integrity",
        ),
    );
    let mut other = base(
        "Opened as the manifest of another collection",
        "open",
        vec![s1.clone()],
        "Integrity",
    );
    other.collection_id = CollectionId::from_bytes([0x23; 16]).to_string();
    out.insert("manifest_other_collection".to_string(), other);
    let mut flipped = s2.clone();
    let mut bytes = hex::decode(&flipped.sealed).unwrap();
    bytes[40] ^= 0x10;
    flipped.sealed = hex::encode(bytes);
    out.insert(
        "manifest_flipped_bit".to_string(),
        base(
            "One bit of the sealed manifest flipped",
            "open",
            vec![flipped],
            "Integrity",
        ),
    );
    let mut forged = v2.clone();
    forged.writer = alice.id(); // claims to be Alice, signed by Mallory
    out.insert(
        "manifest_forged_writer".to_string(),
        base(
            "Claims Alice as writer but is signed by another keyring (sealed under the right key)",
            "open",
            vec![seal(&mut rng, &forged, &mallory)],
            "Integrity",
        ),
    );
    out.insert(
        "manifest_rollback".to_string(),
        base(
            "Version 1 offered after version 2 was accepted",
            "successor",
            vec![s2.clone(), s1.clone()],
            "Integrity",
        ),
    );
    out.insert(
        "manifest_silent_deletion".to_string(),
        base(
            "Version 2 without b and without a tombstone",
            "successor",
            vec![s1.clone(), seal(&mut rng, &lost, &alice)],
            "Integrity",
        ),
    );
    out.insert(
        "manifest_chain_break".to_string(),
        base(
            "Version 2 whose previous hash is not version 1's",
            "successor",
            vec![s1.clone(), seal(&mut rng, &broken, &alice)],
            "Integrity",
        ),
    );
    out.insert(
        "manifest_fork".to_string(),
        base(
            "A second, different version 2 after version 2 was accepted",
            "successor",
            vec![s2.clone(), seal(&mut rng, &fork, &alice)],
            "Integrity",
        ),
    );
    out.insert(
        "manifest_object_went_back".to_string(),
        base(
            "Version 3 lists object a at an older version",
            "successor",
            vec![s2.clone(), {
                let mut m = older_a.clone();
                m.version = 3;
                m.prev_hash = v2.hash();
                seal(&mut rng, &m, &alice)
            }],
            "Integrity",
        ),
    );
    out
}

fn check(name: &str, v: &Vector) {
    let ck = SymmetricKey::from_bytes(hex::decode(&v.collection_key).unwrap().try_into().unwrap())
        .unwrap();
    let vault = VaultId::from_bytes(id16(&v.vault_id));
    let collection = CollectionId::from_bytes(id16(&v.collection_id));
    let writer =
        IdentityBundle::from_bytes(&hex::decode(&v.writer_identity_bundle).unwrap()).unwrap();
    let open = |s: &Stored| {
        open_manifest(
            &hex::decode(&s.sealed).unwrap(),
            &vault,
            &collection,
            s.version,
            &ck,
            &writer,
        )
    };
    let result: Result<(), Error> = match v.kind.as_str() {
        "open" => open(&v.manifests[0]).map(|m| {
            assert_eq!(v.expected["hash"], hex::encode(m.hash()), "{name}");
            assert_eq!(v.expected["entries"], m.entries.len().to_string(), "{name}");
        }),
        "successor" => {
            let prev = open(&v.manifests[0]).unwrap();
            let next = open(&v.manifests[1]).unwrap();
            check_successor(&next, &prev)
        }
        other => panic!("kind {other}"),
    };
    let got = match result {
        Ok(()) => "ok".to_string(),
        Err(Error::Integrity) => "Integrity".into(),
        Err(e) => format!("{e:?}"),
    };
    assert_eq!(got, v.expect, "{name}: {}", v.description);
}

fn render(v: &Vector) -> String {
    let mut s = serde_json::to_string_pretty(v).unwrap();
    s.push('\n');
    s
}

#[test]
fn manifest_vectors_pass_and_are_current() {
    let generated = generate();
    let n = common::check_vector_dir(&dir(), &generated, render, check);
    assert_eq!(n, 12);
}
