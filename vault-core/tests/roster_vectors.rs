//! Known-answer vectors of group rosters (docs/spec/groups.md §2–§3): one JSON file per
//! behaviour in `vectors/rosters/`, generated from fixed seeds, checked here (decoding,
//! hash, signature, successor verdicts), and regenerated to prove they are current. The
//! fuzz seeds `fuzz/seeds/roster/valid-v*` are two of these rosters and are checked too.
//!
//! ```text
//! VAULT_REGENERATE_VECTORS=1 cargo test -p vault-core --test roster_vectors
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use serde::{Deserialize, Serialize};
use vault_core::{Error, GroupId, Role, Roster};
use vault_keyring::reexports::p256;
use vault_keyring::reexports::p256::elliptic_curve::sec1::ToEncodedPoint;
use vault_keyring::{ExchangePublicKey, IdentityBundle, Keyring, KeyringId, KeyringOptions};

const SIG: &[u8] = b"vault/v1/roster-signature\0";

#[derive(Serialize, Deserialize, PartialEq, Debug, Clone)]
struct Vector {
    description: String,
    /// "open": open `rosters[0]`; "successor": open both, then may [1] follow [0]?
    kind: String,
    /// The group the reader expects.
    group_id: String,
    /// The identities the reader has pinned (identity bundles).
    pinned_identities: Vec<String>,
    /// Signed rosters (`tbs || signature`).
    rosters: Vec<String>,
    /// "ok", "Integrity" or "UnsupportedFormat".
    expect: String,
    /// On success of "open": what the roster says.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    expected: BTreeMap<String, String>,
}

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../vectors/rosters")
}

fn seed_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds/roster")
}

fn epoch_key(seed: u8) -> ExchangePublicKey {
    let secret = p256::SecretKey::random(&mut ChaCha20Rng::from_seed([seed; 32]));
    ExchangePublicKey::from_sec1_bytes(secret.public_key().to_encoded_point(false).as_bytes())
        .unwrap()
}

/// A roster written from the spec, field by field, to make what no honest client signs.
#[derive(Clone)]
struct Raw {
    format: u8,
    version: u64,
    prev_hash: [u8; 32],
    epoch: u32,
    key: [u8; 65],
    signer: KeyringId,
    timestamp: u64,
    group: [u8; 16],
    members: Vec<([u8; 16], [u8; 32], u8)>,
}

impl Raw {
    fn after(r: &Roster, signer: KeyringId) -> Self {
        Raw {
            format: 1,
            version: r.version() + 1,
            prev_hash: r.hash(),
            epoch: r.epoch(),
            key: r.exchange_key().to_sec1_bytes(),
            signer,
            timestamp: r.timestamp() + 100,
            group: *r.group().as_bytes(),
            members: r
                .members()
                .iter()
                .map(|m| {
                    (
                        *m.id.as_bytes(),
                        *m.fingerprint.as_bytes(),
                        role_code(m.role),
                    )
                })
                .collect(),
        }
    }

    fn add(&mut self, identity: &IdentityBundle, role: u8) {
        let id = *identity.keyring_id().as_bytes();
        self.members.retain(|m| m.0 != id);
        self.members
            .push((id, *identity.fingerprint().as_bytes(), role));
        self.members.sort();
    }

    fn sign(&self, rng: &mut ChaCha20Rng, keyring: &Keyring) -> Vec<u8> {
        let mut t = Vec::new();
        t.extend_from_slice(b"VROS");
        t.extend_from_slice(&[self.format, 1]);
        t.extend_from_slice(&self.group);
        t.extend_from_slice(&self.version.to_be_bytes());
        t.extend_from_slice(&self.prev_hash);
        t.extend_from_slice(&self.epoch.to_be_bytes());
        t.extend_from_slice(&self.key);
        t.extend_from_slice(self.signer.as_bytes());
        t.extend_from_slice(&self.timestamp.to_be_bytes());
        t.extend_from_slice(&(self.members.len() as u16).to_be_bytes());
        for (id, fp, role) in &self.members {
            t.extend_from_slice(id);
            t.extend_from_slice(fp);
            t.push(*role);
        }
        let signature = keyring.sign(rng, SIG, &t);
        t.extend_from_slice(&signature);
        t
    }
}

fn role_code(r: Role) -> u8 {
    match r {
        Role::Member => 1,
        Role::Admin => 2,
    }
}

fn generate() -> BTreeMap<String, Vector> {
    let mut rng = ChaCha20Rng::from_seed([0x52; 32]);
    let person = |rng: &mut ChaCha20Rng| {
        let k = Keyring::generate(rng, &KeyringOptions::new().with_created_at(0)).unwrap();
        let id = k.identity_bundle(rng);
        (k, id)
    };
    let (alice, alice_id) = person(&mut rng);
    let (bob, bob_id) = person(&mut rng);
    let (carol, carol_id) = person(&mut rng);
    let (mallory, mallory_id) = person(&mut rng);
    let group = GroupId::from_bytes([0x67; 16]);

    // The honest history: v1 {alice admin}; v2 + bob admin, + carol member;
    // v3 bob removed, epoch 2 with a new key.
    let (v1, s1) = Roster::create(
        &mut rng,
        group,
        &alice,
        &alice_id,
        &epoch_key(1),
        1_795_000_000,
    )
    .unwrap();
    let (v2, s2) = v1
        .next()
        .add(&bob_id, Role::Admin)
        .add(&carol_id, Role::Member)
        .sign(&mut rng, &alice, &alice_id, 1_795_000_100)
        .unwrap();
    let (v3, s3) = v2
        .next()
        .remove(&bob.id())
        .new_epoch(&epoch_key(2))
        .sign(&mut rng, &alice, &alice_id, 1_795_000_200)
        .unwrap();

    let all: Vec<String> = [&alice_id, &bob_id, &carol_id, &mallory_id]
        .iter()
        .map(|b| hex::encode(b.as_bytes()))
        .collect();
    let base = |description: &str, kind: &str, rosters: Vec<&[u8]>, expect: &str| Vector {
        description: description.into(),
        kind: kind.into(),
        group_id: group.to_string(),
        pinned_identities: all.clone(),
        rosters: rosters.into_iter().map(hex::encode).collect(),
        expect: expect.into(),
        expected: BTreeMap::new(),
    };
    let describe = |r: &Roster| {
        let mut e = BTreeMap::new();
        e.insert("hash".to_string(), hex::encode(r.hash()));
        e.insert("version".to_string(), r.version().to_string());
        e.insert("epoch".to_string(), r.epoch().to_string());
        e.insert("signer".to_string(), r.signer().to_string());
        e.insert(
            "exchange_key".to_string(),
            hex::encode(r.exchange_key().to_sec1_bytes()),
        );
        let members: Vec<String> = r
            .members()
            .iter()
            .map(|m| {
                let role = match m.role {
                    Role::Member => "member",
                    Role::Admin => "admin",
                };
                format!("{}:{}", m.id, role)
            })
            .collect();
        e.insert("members".to_string(), members.join(","));
        e
    };

    let mut out = BTreeMap::new();
    let mut add = |name: &str, v: Vector| {
        out.insert(name.to_string(), v);
    };
    let mut ok1 = base(
        "Version 1: the creator alone, an admin, epoch 1",
        "open",
        vec![&s1],
        "ok",
    );
    ok1.expected = describe(&v1);
    add("roster_v1_ok", ok1);
    let mut ok2 = base(
        "Version 2: Alice adds Bob as an admin and Carol as a member (same epoch)",
        "open",
        vec![&s2],
        "ok",
    );
    ok2.expected = describe(&v2);
    add("roster_v2_add_members_ok", ok2);
    let mut ok3 = base(
        "Version 3: Alice removes Bob and starts epoch 2 with a new group exchange key",
        "open",
        vec![&s3],
        "ok",
    );
    ok3.expected = describe(&v3);
    add("roster_v3_removal_new_epoch_ok", ok3);
    add(
        "roster_v2_follows_v1",
        base(
            "Version 2 may follow version 1",
            "successor",
            vec![&s1, &s2],
            "ok",
        ),
    );
    add(
        "roster_v3_follows_v2",
        base(
            "Version 3 may follow version 2",
            "successor",
            vec![&s2, &s3],
            "ok",
        ),
    );

    // Injection (C17).
    let mut raw = Raw::after(&v2, carol.id());
    raw.add(&mallory_id, 1);
    add(
        "roster_injected_by_member",
        base(
            "A version 3 adding Mallory, signed by Carol, a member but not an admin",
            "successor",
            vec![&s2, &raw.sign(&mut rng, &carol)],
            "Integrity",
        ),
    );
    let mut raw = Raw::after(&v2, mallory.id());
    raw.add(&mallory_id, 2);
    add(
        "roster_injected_by_stranger",
        base(
            "A version 3 adding Mallory, signed by Mallory (pinned, but not in the group)",
            "successor",
            vec![&s2, &raw.sign(&mut rng, &mallory)],
            "Integrity",
        ),
    );
    let mut raw = Raw::after(&v3, bob.id());
    raw.add(&bob_id, 2);
    add(
        "roster_injected_by_removed_admin",
        base(
            "A version 4 putting Bob back, signed by Bob, an admin until version 3 removed him",
            "successor",
            vec![&s3, &raw.sign(&mut rng, &bob)],
            "Integrity",
        ),
    );
    let mut raw = Raw::after(&v2, alice.id());
    raw.add(&carol_id, 2);
    raw.signer = carol.id();
    let forged = raw.sign(&mut rng, &mallory);
    add(
        "roster_forged_signature",
        base(
            "A version 3 naming Carol as signer, signed by Mallory",
            "open",
            vec![&forged],
            "Integrity",
        ),
    );
    let mut unpinned = base(
        "A version 1 of this group created by Mallory, whose identity the reader has not pinned",
        "open",
        vec![
            &Roster::create(&mut rng, group, &mallory, &mallory_id, &epoch_key(3), 0)
                .unwrap()
                .1,
        ],
        "Integrity",
    );
    unpinned.pinned_identities.truncate(3);
    add("roster_unpinned_signer", unpinned);

    // Revocation (C18).
    let mut raw = Raw::after(&v2, alice.id());
    raw.members.retain(|m| m.0 != *bob.id().as_bytes());
    add(
        "roster_removal_same_epoch",
        base(
            "A version 3 removing Bob without starting a new epoch",
            "successor",
            vec![&s2, &raw.sign(&mut rng, &alice)],
            "Integrity",
        ),
    );
    let mut raw = Raw::after(&v2, alice.id());
    raw.members.retain(|m| m.0 != *bob.id().as_bytes());
    raw.epoch += 1;
    add(
        "roster_removal_same_key",
        base(
            "A version 3 removing Bob with a new epoch number but the old exchange key",
            "successor",
            vec![&s2, &raw.sign(&mut rng, &alice)],
            "Integrity",
        ),
    );
    let mut raw = Raw::after(&v2, alice.id());
    raw.key = epoch_key(4).to_sec1_bytes();
    add(
        "roster_key_change_same_epoch",
        base(
            "A version 3 with a new exchange key but the same epoch",
            "successor",
            vec![&s2, &raw.sign(&mut rng, &alice)],
            "Integrity",
        ),
    );

    // Rollback, fork, gap (C14, C15).
    add(
        "roster_rollback",
        base(
            "Version 1 offered after version 2 was accepted",
            "successor",
            vec![&s2, &s1],
            "Integrity",
        ),
    );
    let (_, fork) = v2
        .next()
        .add(&mallory_id, Role::Member)
        .sign(&mut rng, &alice, &alice_id, 1_795_000_300)
        .unwrap();
    add(
        "roster_fork",
        base(
            "A second, different version 3 (validly signed by Alice) after version 3 was accepted",
            "successor",
            vec![&s3, &fork],
            "Integrity",
        ),
    );
    add(
        "roster_skipped_version",
        base(
            "Version 3 offered right after version 1 (version 2 withheld)",
            "successor",
            vec![&s1, &s3],
            "Integrity",
        ),
    );

    // Bytes (strict decoding).
    let mut flipped = s2.clone();
    flipped[100] ^= 0x04;
    add(
        "roster_flipped_bit",
        base(
            "One bit of version 2's exchange key flipped",
            "open",
            vec![&flipped],
            "Integrity",
        ),
    );
    add(
        "roster_truncated",
        base(
            "Version 2 without its last byte",
            "open",
            vec![&s2[..s2.len() - 1]],
            "Integrity",
        ),
    );
    let mut trailing = s2.clone();
    trailing.push(0);
    add(
        "roster_trailing_byte",
        base(
            "Version 2 with one byte appended",
            "open",
            vec![&trailing],
            "Integrity",
        ),
    );
    let mut other = base(
        "Version 1 opened as the roster of another group",
        "open",
        vec![&s1],
        "Integrity",
    );
    other.group_id = GroupId::from_bytes([0x68; 16]).to_string();
    add("roster_other_group", other);
    let mut raw = Raw::after(&v1, alice.id());
    raw.version = 1;
    raw.prev_hash = [0; 32];
    raw.format = 2;
    add(
        "roster_unknown_version",
        base(
            "Format version 2 (signed by Alice)",
            "open",
            vec![&raw.sign(&mut rng, &alice)],
            "UnsupportedFormat",
        ),
    );
    out
}

fn check(name: &str, v: &Vector) {
    let group = GroupId::from_hex(&v.group_id).unwrap();
    let pinned: Vec<IdentityBundle> = v
        .pinned_identities
        .iter()
        .map(|b| IdentityBundle::from_bytes(&hex::decode(b).unwrap()).unwrap())
        .collect();
    let lookup = |id: &KeyringId| pinned.iter().find(|b| b.keyring_id() == *id).cloned();
    let open = |s: &String| Roster::open(&hex::decode(s).unwrap(), &group, &lookup);
    let result: Result<(), Error> = match v.kind.as_str() {
        "open" => open(&v.rosters[0]).map(|r| {
            let bytes = hex::decode(&v.rosters[0]).unwrap();
            assert_eq!(
                vault_core::internal::decode_roster(&bytes),
                Some(r.members().len()),
                "{name}"
            );
            assert_eq!(r.as_bytes(), &bytes[..], "{name}");
            let e = &v.expected;
            assert_eq!(e["hash"], hex::encode(r.hash()), "{name}");
            assert_eq!(e["version"], r.version().to_string(), "{name}");
            assert_eq!(e["epoch"], r.epoch().to_string(), "{name}");
            assert_eq!(e["signer"], r.signer().to_string(), "{name}");
            let key = hex::encode(r.exchange_key().to_sec1_bytes());
            assert_eq!(e["exchange_key"], key, "{name}");
            let listed: Vec<String> = e["members"].split(',').map(String::from).collect();
            assert_eq!(listed.len(), r.members().len(), "{name}");
            for (m, l) in r.members().iter().zip(&listed) {
                let (id, role) = l.split_once(':').unwrap();
                assert_eq!(id, m.id.to_string(), "{name}");
                assert_eq!(role == "admin", r.is_admin(&m.id), "{name}");
                let bundle = pinned.iter().find(|b| b.keyring_id() == m.id).unwrap();
                assert_eq!(m.fingerprint, bundle.fingerprint(), "{name}");
            }
        }),
        "successor" => {
            let prev = open(&v.rosters[0]).unwrap();
            let next = open(&v.rosters[1]).unwrap();
            next.check_successor(&prev)
        }
        other => panic!("kind {other}"),
    };
    let got = match result {
        Ok(()) => "ok".to_string(),
        Err(Error::Integrity) => "Integrity".into(),
        Err(Error::UnsupportedFormat) => "UnsupportedFormat".into(),
        Err(e) => format!("{e:?}"),
    };
    assert_eq!(got, v.expect, "{name}: {}", v.description);
}

fn render(v: &Vector) -> String {
    let mut s = serde_json::to_string_pretty(v).unwrap();
    s.push('\n');
    s
}

/// The fuzz seeds: the valid rosters of versions 2 and 3, as raw bytes.
fn seeds(generated: &BTreeMap<String, Vector>) -> Vec<(&'static str, Vec<u8>)> {
    [
        ("valid-v2", "roster_v2_add_members_ok"),
        ("valid-v3", "roster_v3_removal_new_epoch_ok"),
    ]
    .into_iter()
    .map(|(file, vector)| (file, hex::decode(&generated[vector].rosters[0]).unwrap()))
    .collect()
}

#[test]
fn roster_vectors_pass_and_are_current() {
    let generated = generate();
    if std::env::var_os("VAULT_REGENERATE_VECTORS").is_some() {
        std::fs::create_dir_all(seed_dir()).unwrap();
        for (file, bytes) in seeds(&generated) {
            std::fs::write(seed_dir().join(file), bytes).unwrap();
        }
    }
    let n = common::check_vector_dir(&dir(), &generated, render, check);
    assert_eq!(n, 21);
    for (file, bytes) in seeds(&generated) {
        let stored = std::fs::read(seed_dir().join(file)).unwrap();
        assert_eq!(stored, bytes, "fuzz/seeds/roster/{file} is stale");
    }
}
