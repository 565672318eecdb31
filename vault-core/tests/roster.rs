//! Group rosters (docs/spec/groups.md): honest chains verify; every attempt of a malicious
//! server — injecting a member, rolling back, forking, dropping a version, removing a member
//! without a new key epoch, changing the key without one, flipping bits, truncating,
//! splicing — fails with the one integrity error (THREATS C17, C18, I2).
//!
//! The hostile rosters are built by an encoder written here from the spec alone (`Raw`), and
//! signed with real keyrings, so the signatures verify and only the roster rules can refuse
//! them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::OnceLock;

use proptest::prelude::*;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use sha2::{Digest, Sha256};
use vault_core::internal::decode_roster;
use vault_core::{Error, GroupId, Role, Roster, MAX_MEMBERS};
use vault_keyring::reexports::p256;
use vault_keyring::reexports::p256::elliptic_curve::sec1::ToEncodedPoint;
use vault_keyring::{ExchangePublicKey, Fingerprint, IdentityBundle, Keyring, KeyringId};
use vault_keyring::{KeyringOptions, SIGNATURE_LEN};

const SIG: &[u8] = b"vault/v1/roster-signature\0";
const HASH: &[u8] = b"vault/v1/roster-hash\0";
const GROUP: GroupId = GroupId::from_bytes([0x67; 16]);
const OTHER_GROUP: GroupId = GroupId::from_bytes([0x68; 16]);

struct Person {
    keyring: Keyring,
    identity: IdentityBundle,
}

impl Person {
    fn id(&self) -> KeyringId {
        self.keyring.id()
    }
}

struct People {
    alice: Person,
    bob: Person,
    carol: Person,
    dave: Person,
    mallory: Person,
}

fn people() -> &'static People {
    static P: OnceLock<People> = OnceLock::new();
    P.get_or_init(|| {
        let mut rng = ChaCha20Rng::from_seed([0x40; 32]);
        let mut person = || {
            let keyring =
                Keyring::generate(&mut rng, &KeyringOptions::new().with_created_at(0)).unwrap();
            let identity = keyring.identity_bundle(&mut rng);
            Person { keyring, identity }
        };
        People {
            alice: person(),
            bob: person(),
            carol: person(),
            dave: person(),
            mallory: person(),
        }
    })
}

/// Everyone this device has pinned (the server may even get Mallory pinned: she is a user
/// too; pinning someone never makes them an admin).
fn pinned(id: &KeyringId) -> Option<IdentityBundle> {
    let p = people();
    [&p.alice, &p.bob, &p.carol, &p.dave, &p.mallory]
        .into_iter()
        .find(|x| x.id() == *id)
        .map(|x| x.identity.clone())
}

fn rng(seed: u8) -> ChaCha20Rng {
    ChaCha20Rng::from_seed([seed; 32])
}

/// The group's exchange key of a made-up epoch.
fn epoch_key(seed: u8) -> ExchangePublicKey {
    let secret = p256::SecretKey::random(&mut rng(seed));
    ExchangePublicKey::from_sec1_bytes(secret.public_key().to_encoded_point(false).as_bytes())
        .unwrap()
}

fn open(bytes: &[u8]) -> Result<Roster, Error> {
    Roster::open(bytes, &GROUP, &pinned)
}

fn is_integrity<T: std::fmt::Debug>(r: Result<T, Error>) -> bool {
    matches!(r, Err(Error::Integrity))
}

/// A roster as groups.md §2 writes it, field by field, so tests can build what no honest
/// client would.
#[derive(Clone)]
struct Raw {
    format: u8,
    suite: u8,
    group: [u8; 16],
    version: u64,
    prev_hash: [u8; 32],
    epoch: u32,
    key: [u8; 65],
    signer: KeyringId,
    timestamp: u64,
    /// Encoded in this order (tests may unsort it).
    members: Vec<([u8; 16], [u8; 32], u8)>,
    /// Overrides the member count field.
    count: Option<u16>,
}

impl Raw {
    fn of(r: &Roster) -> Self {
        Raw {
            format: 1,
            suite: 1,
            group: *r.group().as_bytes(),
            version: r.version(),
            prev_hash: r.prev_hash(),
            epoch: r.epoch(),
            key: r.exchange_key().to_sec1_bytes(),
            signer: r.signer(),
            timestamp: r.timestamp(),
            members: r
                .members()
                .iter()
                .map(|m| {
                    let role = match m.role {
                        Role::Member => 1,
                        Role::Admin => 2,
                    };
                    (*m.id.as_bytes(), *m.fingerprint.as_bytes(), role)
                })
                .collect(),
            count: None,
        }
    }

    /// The successor of `r` as an honest update would start it.
    fn after(r: &Roster) -> Self {
        let mut raw = Raw::of(r);
        raw.version += 1;
        raw.prev_hash = r.hash();
        raw.timestamp += 100;
        raw
    }

    fn tbs(&self) -> Vec<u8> {
        let mut t = Vec::new();
        t.extend_from_slice(b"VROS");
        t.push(self.format);
        t.push(self.suite);
        t.extend_from_slice(&self.group);
        t.extend_from_slice(&self.version.to_be_bytes());
        t.extend_from_slice(&self.prev_hash);
        t.extend_from_slice(&self.epoch.to_be_bytes());
        t.extend_from_slice(&self.key);
        t.extend_from_slice(self.signer.as_bytes());
        t.extend_from_slice(&self.timestamp.to_be_bytes());
        let count = self.count.unwrap_or(self.members.len() as u16);
        t.extend_from_slice(&count.to_be_bytes());
        for (id, fp, role) in &self.members {
            t.extend_from_slice(id);
            t.extend_from_slice(fp);
            t.push(*role);
        }
        t
    }

    fn signed_by(&self, who: &Person) -> Vec<u8> {
        let tbs = self.tbs();
        let mut out = tbs.clone();
        out.extend_from_slice(&who.keyring.sign(&mut rng(9), SIG, &tbs));
        out
    }

    fn add(&mut self, who: &Person, role: u8) {
        self.members.push((
            *who.id().as_bytes(),
            *who.identity.fingerprint().as_bytes(),
            role,
        ));
        self.members.sort();
    }

    fn remove(&mut self, who: &Person) {
        self.members.retain(|m| m.0 != *who.id().as_bytes());
    }
}

/// The honest history every attack starts from:
/// v1 {alice admin} → v2 +bob, +carol → v3 carol promoted → v4 bob removed, epoch 2,
/// signed by carol → v5 +dave, signed by alice.
struct History {
    v: Vec<Roster>,
}

fn history() -> &'static History {
    static H: OnceLock<History> = OnceLock::new();
    H.get_or_init(|| {
        let p = people();
        let mut r = rng(1);
        let (a, ai) = (&p.alice.keyring, &p.alice.identity);
        let (v1, _) = Roster::create(&mut r, GROUP, a, ai, &epoch_key(1), 1_000).unwrap();
        let (v2, _) = v1
            .next()
            .add(&p.bob.identity, Role::Member)
            .add(&p.carol.identity, Role::Member)
            .sign(&mut r, a, ai, 1_100)
            .unwrap();
        let (v3, _) = v2
            .next()
            .set_role(&p.carol.id(), Role::Admin)
            .sign(&mut r, a, ai, 1_200)
            .unwrap();
        let (v4, _) = v3
            .next()
            .remove(&p.bob.id())
            .new_epoch(&epoch_key(2))
            .sign(&mut r, &p.carol.keyring, &p.carol.identity, 1_300)
            .unwrap();
        let (v5, _) = v4
            .next()
            .add(&p.dave.identity, Role::Member)
            .sign(&mut r, a, ai, 1_400)
            .unwrap();
        History {
            v: vec![v1, v2, v3, v4, v5],
        }
    })
}

/// Version `n` (from 1) of the honest history.
fn v(n: usize) -> &'static Roster {
    &history().v[n - 1]
}

#[test]
fn create_add_promote_remove_chain_verifies() {
    let p = people();
    let mut previous: Option<Roster> = None;
    for (i, built) in history().v.iter().enumerate() {
        let bytes = built.as_bytes();
        let opened = open(bytes).unwrap();
        assert_eq!(&opened, built);
        assert_eq!(opened.version(), i as u64 + 1);
        // The spec's bytes: the encoder written from groups.md gives the same tbs and hash.
        let tbs = Raw::of(&opened).tbs();
        assert_eq!(&bytes[..bytes.len() - SIGNATURE_LEN], &tbs[..]);
        let hash: [u8; 32] = Sha256::new()
            .chain_update(HASH)
            .chain_update(&tbs)
            .finalize()
            .into();
        assert_eq!(opened.hash(), hash);
        assert_eq!(decode_roster(bytes), Some(opened.members().len()));
        match &previous {
            None => assert_eq!(opened.prev_hash(), [0; 32]),
            Some(prev) => {
                opened.check_successor(prev).unwrap();
                assert_eq!(opened.prev_hash(), prev.hash());
            }
        }
        previous = Some(opened);
    }
    let (v1, v2, v3, v4, v5) = (v(1), v(2), v(3), v(4), v(5));
    assert!(v1.is_admin(&p.alice.id()) && v1.members().len() == 1);
    assert_eq!((v1.epoch(), v1.signer()), (1, p.alice.id()));
    assert_eq!(v1.signer_fingerprint(), p.alice.identity.fingerprint());
    assert!(v2.is_member(&p.bob.id()) && !v2.is_admin(&p.bob.id()));
    assert!(!v2.is_admin(&p.carol.id()) && v3.is_admin(&p.carol.id()));
    assert_eq!(v3.epoch(), 1);
    assert_eq!(v3.exchange_key(), &epoch_key(1));
    assert!(!v4.is_member(&p.bob.id()));
    assert_eq!((v4.epoch(), v4.signer()), (2, p.carol.id()));
    assert_eq!(v4.exchange_key(), &epoch_key(2));
    assert_eq!(v5.epoch(), 2);
    assert_eq!(v5.members().len(), 3);
    let dave = v5.member(&p.dave.id()).unwrap();
    assert_eq!(dave.fingerprint, p.dave.identity.fingerprint());
    assert_eq!(dave.role, Role::Member);
    assert!(v5.members().windows(2).all(|w| w[0].id < w[1].id));
    assert_eq!(v5.timestamp(), 1_400);
    assert_eq!(v5.group(), GROUP);
}

#[test]
fn the_builder_refuses_updates_that_break_the_rules() {
    let p = people();
    let (a, ai) = (&p.alice.keyring, &p.alice.identity);
    let invalid = |r: Result<(Roster, Vec<u8>), Error>| matches!(r, Err(Error::InvalidInput(_)));
    let mut r = rng(2);
    // Removal without a new epoch (C18).
    assert!(invalid(
        v(2).next().remove(&p.bob.id()).sign(&mut r, a, ai, 0)
    ));
    // A member who is not an admin; a stranger.
    let bob = (&p.bob.keyring, &p.bob.identity);
    assert!(invalid(
        v(2).next()
            .add(&p.mallory.identity, Role::Member)
            .sign(&mut r, bob.0, bob.1, 0)
    ));
    let mal = (&p.mallory.keyring, &p.mallory.identity);
    assert!(invalid(v(2).next().sign(&mut r, mal.0, mal.1, 0)));
    // A removed admin (Carol, after v4 removed her).
    let (v6, _) = v(5)
        .next()
        .remove(&p.carol.id())
        .new_epoch(&epoch_key(3))
        .sign(&mut r, a, ai, 0)
        .unwrap();
    let carol = (&p.carol.keyring, &p.carol.identity);
    assert!(invalid(v6.next().sign(&mut r, carol.0, carol.1, 0)));
    // A new epoch with the old key.
    assert!(invalid(
        v(2).next().new_epoch(&epoch_key(1)).sign(&mut r, a, ai, 0)
    ));
    // No admin left.
    assert!(invalid(
        v(2).next()
            .set_role(&p.alice.id(), Role::Member)
            .sign(&mut r, a, ai, 0)
    ));
    assert!(invalid(
        v(1).next()
            .remove(&p.alice.id())
            .new_epoch(&epoch_key(5))
            .sign(&mut r, a, ai, 0)
    ));
    // Naming someone who is not a member.
    assert!(invalid(
        v(2).next()
            .remove(&p.dave.id())
            .new_epoch(&epoch_key(5))
            .sign(&mut r, a, ai, 0)
    ));
    assert!(invalid(
        v(2).next()
            .set_role(&p.dave.id(), Role::Admin)
            .sign(&mut r, a, ai, 0)
    ));
    // Someone else's identity bundle with one's own keyring.
    assert!(invalid(v(3).next().sign(&mut r, a, &p.carol.identity, 0)));
    assert!(invalid(Roster::create(
        &mut r,
        GROUP,
        a,
        &p.bob.identity,
        &epoch_key(1),
        0
    )));
    // What the builder accepts always opens and chains.
    let (ok, bytes) = v(2)
        .next()
        .remove(&p.bob.id())
        .new_epoch(&epoch_key(5))
        .sign(&mut r, a, ai, 0)
        .unwrap();
    assert_eq!(open(&bytes).unwrap(), ok);
    ok.check_successor(v(2)).unwrap();
}

#[test]
fn a_member_who_is_not_an_admin_cannot_inject() {
    let p = people();
    let mut raw = Raw::after(v(2));
    raw.add(&p.mallory, 1);
    raw.signer = p.bob.id();
    let forged = open(&raw.signed_by(&p.bob)).unwrap(); // Bob's signature is genuine
    assert!(is_integrity(forged.check_successor(v(2))));
    // Nor can Bob make himself an admin.
    let mut raw = Raw::after(v(2));
    raw.members.iter_mut().for_each(|m| m.2 = 2);
    raw.signer = p.bob.id();
    assert!(is_integrity(
        open(&raw.signed_by(&p.bob)).unwrap().check_successor(v(2))
    ));
}

#[test]
fn a_stranger_cannot_inject() {
    let p = people();
    let mut raw = Raw::after(v(2));
    raw.add(&p.mallory, 2);
    raw.signer = p.mallory.id();
    let bytes = raw.signed_by(&p.mallory);
    // Pinned or not, she is no admin of the group.
    assert!(is_integrity(open(&bytes).unwrap().check_successor(v(2))));
    let only_alice = |id: &KeyringId| (*id == p.alice.id()).then(|| p.alice.identity.clone());
    assert!(is_integrity(Roster::open(&bytes, &GROUP, &only_alice)));
    // Claiming to be Alice does not help: the signature is checked with Alice's key.
    raw.signer = p.alice.id();
    assert!(is_integrity(open(&raw.signed_by(&p.mallory))));
    // A lookup that hands out Mallory's identity for Alice's id is refused.
    let swapped = |_: &KeyringId| Some(p.mallory.identity.clone());
    assert!(is_integrity(Roster::open(
        &raw.signed_by(&p.mallory),
        &GROUP,
        &swapped
    )));
    // A group of her own, with the same id, does not chain to anything the members hold.
    let (own, own_bytes) = Roster::create(
        &mut rng(3),
        GROUP,
        &p.mallory.keyring,
        &p.mallory.identity,
        &epoch_key(9),
        0,
    )
    .unwrap();
    assert_eq!(open(&own_bytes).unwrap(), own); // a valid version 1 of *a* group …
    assert!(is_integrity(own.check_successor(v(2)))); // … but not a successor of ours
}

#[test]
fn a_removed_admin_cannot_inject() {
    let p = people();
    // Carol was an admin in v3 and v4 … remove her in v6.
    let (v6, _) = v(5)
        .next()
        .remove(&p.carol.id())
        .new_epoch(&epoch_key(3))
        .sign(&mut rng(4), &p.alice.keyring, &p.alice.identity, 1_500)
        .unwrap();
    let mut raw = Raw::after(&v6);
    raw.add(&p.carol, 2);
    raw.add(&p.mallory, 1);
    raw.signer = p.carol.id();
    let forged = open(&raw.signed_by(&p.carol)).unwrap();
    assert!(is_integrity(forged.check_successor(&v6)));
}

#[test]
fn a_first_version_must_be_signed_by_an_admin_it_lists() {
    let p = people();
    let base = Raw::of(v(1));
    // Alice listed with another fingerprint.
    let mut raw = base.clone();
    raw.members[0].1 = *p.mallory.identity.fingerprint().as_bytes();
    assert!(is_integrity(open(&raw.signed_by(&p.alice))));
    // Alice listed as a plain member, Bob as the admin.
    let mut raw = base.clone();
    raw.members[0].2 = 1;
    raw.add(&p.bob, 2);
    assert!(is_integrity(open(&raw.signed_by(&p.alice))));
    // Signed by someone it does not list.
    let mut raw = base.clone();
    raw.signer = p.bob.id();
    assert!(is_integrity(open(&raw.signed_by(&p.bob))));
    // The honest one opens.
    assert!(open(&base.signed_by(&p.alice)).is_ok());
}

#[test]
fn rollback_and_replay_fail() {
    assert!(is_integrity(v(1).check_successor(v(2))));
    assert!(is_integrity(v(3).check_successor(v(5))));
    assert!(is_integrity(v(2).check_successor(v(2))));
}

#[test]
fn a_fork_fails() {
    let p = people();
    let (a, ai) = (&p.alice.keyring, &p.alice.identity);
    // Two different, individually valid versions 3.
    let (left, _) = v(2)
        .next()
        .add(&p.dave.identity, Role::Member)
        .sign(&mut rng(5), a, ai, 2_000)
        .unwrap();
    let right = v(3);
    left.check_successor(v(2)).unwrap();
    right.check_successor(v(2)).unwrap();
    assert_ne!(left.hash(), right.hash());
    // A device that accepted one refuses the other, and anything built on the other.
    assert!(is_integrity(left.check_successor(right)));
    assert!(is_integrity(right.check_successor(&left)));
    assert!(is_integrity(v(4).check_successor(&left)));
}

#[test]
fn a_dropped_version_fails() {
    assert!(is_integrity(v(3).check_successor(v(1))));
    assert!(is_integrity(v(5).check_successor(v(3))));
    // Renumbered to look like the next one, it no longer chains.
    let p = people();
    let mut raw = Raw::of(v(3));
    raw.version = 2;
    let renumbered = open(&raw.signed_by(&p.alice)).unwrap();
    assert!(is_integrity(renumbered.check_successor(v(1))));
    // Chaining to version 2 but numbered 4: a version number skipped.
    let mut raw = Raw::after(v(2));
    raw.version += 1;
    let skipped = open(&raw.signed_by(&p.alice)).unwrap();
    assert!(is_integrity(skipped.check_successor(v(2))));
}

#[test]
fn removing_a_member_needs_a_new_epoch() {
    let p = people();
    let mut raw = Raw::after(v(3));
    raw.remove(&p.bob);
    let same_epoch = open(&raw.signed_by(&p.alice)).unwrap();
    assert!(is_integrity(same_epoch.check_successor(v(3))));
    // A new epoch number but the old key: the removed member could still read.
    raw.epoch += 1;
    let same_key = open(&raw.signed_by(&p.alice)).unwrap();
    assert!(is_integrity(same_key.check_successor(v(3))));
    // With a new key it is fine …
    raw.key = epoch_key(7).to_sec1_bytes();
    open(&raw.signed_by(&p.alice))
        .unwrap()
        .check_successor(v(3))
        .unwrap();
    // … but an epoch that jumps is not.
    raw.epoch += 1;
    let jumped = open(&raw.signed_by(&p.alice)).unwrap();
    assert!(is_integrity(jumped.check_successor(v(3))));
    // Nor one that goes back.
    let mut raw = Raw::after(v(4));
    raw.signer = p.alice.id();
    raw.epoch = 1;
    raw.key = epoch_key(1).to_sec1_bytes();
    let back = open(&raw.signed_by(&p.alice)).unwrap();
    assert!(is_integrity(back.check_successor(v(4))));
}

#[test]
fn replacing_a_members_key_needs_a_new_epoch() {
    let p = people();
    // Bob's entry now carries Mallory's fingerprint: whoever holds that key would read.
    let mut raw = Raw::after(v(3));
    let bob = raw
        .members
        .iter_mut()
        .find(|m| m.0 == *p.bob.id().as_bytes())
        .unwrap();
    bob.1 = *p.mallory.identity.fingerprint().as_bytes();
    let swapped = open(&raw.signed_by(&p.alice)).unwrap();
    assert!(is_integrity(swapped.check_successor(v(3))));
    raw.epoch += 1;
    raw.key = epoch_key(8).to_sec1_bytes();
    open(&raw.signed_by(&p.alice))
        .unwrap()
        .check_successor(v(3))
        .unwrap();
}

#[test]
fn changing_the_exchange_key_needs_a_new_epoch() {
    let p = people();
    let mut raw = Raw::after(v(3));
    raw.key = epoch_key(6).to_sec1_bytes();
    let changed = open(&raw.signed_by(&p.alice)).unwrap();
    assert!(is_integrity(changed.check_successor(v(3))));
    // The same new epoch without a removal is allowed (a voluntary rotation).
    raw.epoch += 1;
    open(&raw.signed_by(&p.alice))
        .unwrap()
        .check_successor(v(3))
        .unwrap();
}

#[test]
fn every_flipped_bit_fails() {
    let bytes = v(5).as_bytes();
    for i in 0..bytes.len() {
        for bit in 0..8 {
            let mut b = bytes.to_vec();
            b[i] ^= 1 << bit;
            let r = open(&b);
            if i == 4 || i == 5 {
                assert!(
                    matches!(r, Err(Error::UnsupportedFormat)),
                    "byte {i} bit {bit}"
                );
            } else {
                assert!(is_integrity(r), "byte {i} bit {bit}");
            }
        }
    }
}

#[test]
fn truncated_or_extended_rosters_fail() {
    let bytes = v(5).as_bytes();
    for n in 0..bytes.len() {
        assert!(is_integrity(open(&bytes[..n])), "truncated to {n}");
        assert_eq!(decode_roster(&bytes[..n]), None);
    }
    for extra in [&[0u8][..], &[0; 49], &[0; 256]] {
        let mut b = bytes.to_vec();
        b.extend_from_slice(extra);
        assert!(is_integrity(open(&b)));
        assert_eq!(decode_roster(&b), None);
    }
}

#[test]
fn a_roster_of_another_group_fails() {
    let p = people();
    let (a, ai) = (&p.alice.keyring, &p.alice.identity);
    // The same people, another group.
    let (other1, other_bytes) =
        Roster::create(&mut rng(6), OTHER_GROUP, a, ai, &epoch_key(1), 1_000).unwrap();
    assert!(is_integrity(open(&other_bytes)));
    assert!(Roster::open(&other_bytes, &OTHER_GROUP, &pinned).is_ok());
    let (other2, _) = other1
        .next()
        .add(&p.mallory.identity, Role::Member)
        .sign(&mut rng(6), a, ai, 1_100)
        .unwrap();
    assert!(is_integrity(other2.check_successor(v(1))));
    // Its group id rewritten: the signature no longer verifies.
    let mut b = other2.as_bytes().to_vec();
    b[6..22].copy_from_slice(GROUP.as_bytes());
    assert!(is_integrity(open(&b)));
    // Another roster's signature spliced onto ours.
    let ours = v(1).as_bytes();
    let mut spliced = ours[..ours.len() - SIGNATURE_LEN].to_vec();
    let theirs = other1.as_bytes();
    spliced.extend_from_slice(&theirs[theirs.len() - SIGNATURE_LEN..]);
    assert!(is_integrity(open(&spliced)));
    // Its members spliced into our version 2 (same length), signature kept.
    let mut raw = Raw::of(v(2));
    raw.members = Raw::of(&other2).members;
    let mut spliced = raw.tbs();
    let v2 = v(2).as_bytes();
    spliced.extend_from_slice(&v2[v2.len() - SIGNATURE_LEN..]);
    assert!(is_integrity(open(&spliced)));
}

#[test]
fn unknown_format_version_or_suite_is_unsupported() {
    let p = people();
    for (format, suite) in [(2, 1), (0, 1), (1, 2), (1, 0)] {
        let mut raw = Raw::of(v(1));
        raw.format = format;
        raw.suite = suite;
        let bytes = raw.signed_by(&p.alice);
        assert!(matches!(open(&bytes), Err(Error::UnsupportedFormat)));
        assert_eq!(decode_roster(&bytes), None);
    }
    let mut bytes = v(1).as_bytes().to_vec();
    bytes[..4].copy_from_slice(b"VMAN");
    assert!(is_integrity(open(&bytes)));
}

#[test]
fn decoding_is_strict() {
    let p = people();
    let base = Raw::after(v(2)); // v3: alice admin, bob, carol
    type Change = Box<dyn Fn(&mut Raw)>;
    let cases: Vec<(&str, Change)> = vec![
        ("members unsorted", Box::new(|r| r.members.swap(0, 1))),
        (
            "duplicate member",
            Box::new(|r| {
                let m = r.members[0];
                r.members.insert(0, m);
            }),
        ),
        ("role 0", Box::new(|r| r.members[0].2 = 0)),
        ("role 3", Box::new(|r| r.members[0].2 = 3)),
        ("no member", Box::new(|r| r.members.clear())),
        (
            "no admin",
            Box::new(|r| r.members.iter_mut().for_each(|m| m.2 = 1)),
        ),
        ("count too high", Box::new(|r| r.count = Some(4))),
        ("count too low", Box::new(|r| r.count = Some(2))),
        ("count zero", Box::new(|r| r.count = Some(0))),
        ("version 0", Box::new(|r| r.version = 0)),
        ("epoch 0", Box::new(|r| r.epoch = 0)),
        (
            "zero prev_hash after version 1",
            Box::new(|r| r.prev_hash = [0; 32]),
        ),
        ("version 1 with a prev_hash", Box::new(|r| r.version = 1)),
        (
            "version 1 of epoch 2",
            Box::new(|r| {
                r.version = 1;
                r.prev_hash = [0; 32];
                r.epoch = 2;
            }),
        ),
        ("identity point", Box::new(|r| r.key = [0; 65])),
        ("off-curve point", Box::new(|r| r.key[64] ^= 1)),
        ("compressed point", Box::new(|r| r.key[0] = 2)),
        ("hybrid point", Box::new(|r| r.key[0] = 6)),
        (
            "x not reduced",
            Box::new(|r| r.key[1..33].copy_from_slice(&[0xff; 32])),
        ),
    ];
    for (name, change) in cases {
        let mut raw = base.clone();
        change(&mut raw);
        let bytes = raw.signed_by(&p.alice);
        assert!(is_integrity(open(&bytes)), "{name}");
        assert_eq!(decode_roster(&bytes), None, "{name}");
    }
    let ok = base.signed_by(&p.alice);
    assert!(open(&ok).is_ok());
    assert_eq!(decode_roster(&ok), Some(3));
    // A signature of another length.
    assert!(is_integrity(open(&ok[..ok.len() - 1])));
}

fn many_members(n: usize) -> Raw {
    let p = people();
    let mut raw = Raw::of(v(1));
    for i in 1..n {
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&(i as u64).to_be_bytes());
        id[15] = 0xff; // never equals Alice's random id in practice; checked below
        raw.members.push((id, [i as u8; 32], 1));
    }
    raw.members.sort();
    assert_eq!(raw.members.len(), n);
    assert!(raw.members.windows(2).all(|w| w[0].0 < w[1].0));
    assert!(raw.members.iter().any(|m| m.0 == *p.alice.id().as_bytes()));
    raw
}

#[test]
fn at_most_max_members() {
    let p = people();
    let max = usize::from(MAX_MEMBERS);
    let full = many_members(max);
    let bytes = full.signed_by(&p.alice);
    assert_eq!(open(&bytes).unwrap().members().len(), max);
    assert_eq!(decode_roster(&bytes), Some(max));
    let over = many_members(max + 1);
    let bytes = over.signed_by(&p.alice);
    assert!(is_integrity(open(&bytes)));
    assert_eq!(decode_roster(&bytes), None);
}

fn role_code(r: Role) -> u8 {
    match r {
        Role::Member => 1,
        Role::Admin => 2,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// Random member sets encoded from the spec decode to exactly what was encoded, and the
    /// roster's bytes and hash are those of the spec.
    #[test]
    fn random_member_sets_round_trip(
        others in proptest::collection::btree_map(any::<[u8; 16]>(), (any::<[u8; 32]>(), any::<bool>()), 0..60),
        version in 1u64..4,
        epoch in 1u32..4,
        timestamp in any::<u64>(),
        key_seed in any::<u8>(),
    ) {
        let p = people();
        let mut members: BTreeMap<[u8; 16], ([u8; 32], u8)> = others
            .into_iter()
            .map(|(id, (fp, admin))| (id, (fp, if admin { 2 } else { 1 })))
            .collect();
        members.insert(*p.alice.id().as_bytes(), (*p.alice.identity.fingerprint().as_bytes(), 2));
        let raw = Raw {
            format: 1,
            suite: 1,
            group: *GROUP.as_bytes(),
            version,
            prev_hash: if version == 1 { [0; 32] } else { [version as u8; 32] },
            epoch: if version == 1 { 1 } else { epoch },
            key: epoch_key(key_seed).to_sec1_bytes(),
            signer: p.alice.id(),
            timestamp,
            members: members.iter().map(|(id, (fp, role))| (*id, *fp, *role)).collect(),
            count: None,
        };
        let bytes = raw.signed_by(&p.alice);
        prop_assert_eq!(decode_roster(&bytes), Some(members.len()));
        let r = open(&bytes).unwrap();
        prop_assert_eq!(r.as_bytes(), &bytes[..]);
        prop_assert_eq!(r.version(), raw.version);
        prop_assert_eq!(r.prev_hash(), raw.prev_hash);
        prop_assert_eq!(r.epoch(), raw.epoch);
        prop_assert_eq!(r.exchange_key().to_sec1_bytes(), raw.key);
        prop_assert_eq!(r.signer(), p.alice.id());
        prop_assert_eq!(r.timestamp(), timestamp);
        prop_assert_eq!(r.members().len(), members.len());
        for m in r.members() {
            let (fp, role) = members[m.id.as_bytes()];
            prop_assert_eq!(m.fingerprint, Fingerprint::from_bytes(fp));
            prop_assert_eq!(role_code(m.role), role);
            prop_assert_eq!(r.is_admin(&m.id), role == 2);
        }
        prop_assert_eq!(Raw::of(&r).tbs(), raw.tbs());
        let hash: [u8; 32] = Sha256::new().chain_update(HASH).chain_update(raw.tbs()).finalize().into();
        prop_assert_eq!(r.hash(), hash);
    }
}

#[derive(Clone, Debug)]
enum Op {
    Add(usize, bool),
    Remove(usize),
    Promote(usize),
    Demote(usize),
    Rotate,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0usize..4, any::<bool>()).prop_map(|(i, admin)| Op::Add(i, admin)),
        (0usize..4).prop_map(Op::Remove),
        (0usize..4).prop_map(Op::Promote),
        (0usize..4).prop_map(Op::Demote),
        Just(Op::Rotate),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]

    /// Random sequences of updates: what the builder signs always opens and chains, lists
    /// exactly the expected members, and starts a new epoch whenever someone was removed.
    #[test]
    fn random_updates_chain(ops in proptest::collection::vec(op(), 1..6)) {
        let p = people();
        let pool = [&p.alice, &p.bob, &p.carol, &p.dave];
        let mut r = rng(7);
        let mut current = v(1).clone();
        let mut key_seed = 100u8;
        for o in ops {
            let mut model: BTreeMap<KeyringId, Role> =
                current.members().iter().map(|m| (m.id, m.role)).collect();
            let mut update = current.next();
            let mut rotate = false;
            match o {
                Op::Add(i, admin) => {
                    let role = if admin { Role::Admin } else { Role::Member };
                    update = update.add(&pool[i].identity, role);
                    model.insert(pool[i].id(), role);
                }
                Op::Remove(i) => {
                    if model.remove(&pool[i].id()).is_none() { continue; }
                    update = update.remove(&pool[i].id());
                    rotate = true;
                }
                Op::Promote(i) | Op::Demote(i) => {
                    let role = if matches!(o, Op::Promote(_)) { Role::Admin } else { Role::Member };
                    let Some(m) = model.get_mut(&pool[i].id()) else { continue };
                    *m = role;
                    update = update.set_role(&pool[i].id(), role);
                }
                Op::Rotate => rotate = true,
            }
            if rotate {
                key_seed += 1;
                update = update.new_epoch(&epoch_key(key_seed));
            }
            let admin = pool
                .iter()
                .find(|x| current.is_admin(&x.id()))
                .unwrap();
            let result = update.sign(&mut r, &admin.keyring, &admin.identity, 0);
            if !model.values().any(|role| *role == Role::Admin) {
                prop_assert!(matches!(result, Err(Error::InvalidInput(_))));
                continue;
            }
            let (next, bytes) = result.unwrap();
            let opened = open(&bytes).unwrap();
            prop_assert_eq!(&opened, &next);
            opened.check_successor(&current).unwrap();
            prop_assert_eq!(opened.epoch(), current.epoch() + u32::from(rotate));
            let got: BTreeMap<KeyringId, Role> =
                opened.members().iter().map(|m| (m.id, m.role)).collect();
            prop_assert_eq!(got, model);
            current = opened;
        }
    }
}
