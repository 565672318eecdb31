//! Sharing without trusting the server (issue #4; THREATS C2–C4, C17, C18, C20, C21): a
//! collection handed to a user and to a group by signed envelopes, pinned identities, key
//! epochs. The malicious server is a store wrapper the test controls: it substitutes keys,
//! re-targets and replays envelopes, hides and forges roster versions. Every attempt fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, OnceLock};

use rand_chacha::rand_core::{CryptoRng, RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;
use vault_core::{
    CollectionId, Error, GroupId, LocalState, MemoryStore, ObjectAddress, PageAddress, Pinned,
    RecordKind, Role, Store, StoreError, Swap, Vault, VaultId,
};
use vault_keyring::danger::{insecure_test_params, insecure_test_policy};
use vault_keyring::{
    IdentityBundle, Keyring, KeyringOptions, Password, PasswordKeys, SealedKeyring,
};

/// A store that can hide records (the server withholding or rolling back) and is otherwise
/// a memory store the test can also write to directly (the server forging).
#[derive(Default)]
struct Evil {
    inner: MemoryStore,
    hidden: Mutex<BTreeSet<(RecordKind, Vec<u8>)>>,
}

impl Evil {
    fn hide(&self, kind: RecordKind, key: &[u8]) {
        self.hidden.lock().unwrap().insert((kind, key.to_vec()));
    }
    /// What the store holds under `key` (the record must exist).
    fn get(&self, kind: RecordKind, key: &[u8]) -> Vec<u8> {
        self.inner.get_record(kind, key).unwrap().unwrap()
    }
    /// The server writes `value` under `key`.
    fn set(&self, kind: RecordKind, key: &[u8], value: &[u8]) {
        self.inner.put_record(kind, key, value).unwrap();
    }
    fn is_hidden(&self, kind: RecordKind, key: &[u8]) -> bool {
        self.hidden.lock().unwrap().contains(&(kind, key.to_vec()))
    }
}

impl Store for Evil {
    fn put_page(&self, a: &PageAddress, p: &[u8]) -> Result<(), StoreError> {
        self.inner.put_page(a, p)
    }
    fn get_page(&self, a: &PageAddress) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.get_page(a)
    }
    fn put_header(&self, a: &ObjectAddress, h: &[u8]) -> Result<(), StoreError> {
        self.inner.put_header(a, h)
    }
    fn get_header(&self, a: &ObjectAddress) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.get_header(a)
    }
    fn delete_object_version(&self, a: &ObjectAddress) -> Result<(), StoreError> {
        self.inner.delete_object_version(a)
    }
    fn put_collection_key(&self, c: &CollectionId, e: u32, w: &[u8]) -> Result<(), StoreError> {
        self.inner.put_collection_key(c, e, w)
    }
    fn get_collection_key(&self, c: &CollectionId, e: u32) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.get_collection_key(c, e)
    }
    fn get_manifest(&self, c: &CollectionId) -> Result<Option<(u64, Vec<u8>)>, StoreError> {
        self.inner.get_manifest(c)
    }
    fn swap_manifest(
        &self,
        c: &CollectionId,
        e: u64,
        v: u64,
        m: &[u8],
    ) -> Result<Swap, StoreError> {
        self.inner.swap_manifest(c, e, v, m)
    }
    fn list_collections(&self) -> Result<Vec<CollectionId>, StoreError> {
        self.inner.list_collections()
    }
    fn put_record(&self, k: RecordKind, key: &[u8], v: &[u8]) -> Result<(), StoreError> {
        self.inner.put_record(k, key, v)
    }
    fn insert_record(&self, k: RecordKind, key: &[u8], v: &[u8]) -> Result<bool, StoreError> {
        self.inner.insert_record(k, key, v)
    }
    fn get_record(&self, k: RecordKind, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        if self.is_hidden(k, key) {
            return Ok(None);
        }
        self.inner.get_record(k, key)
    }
    fn list_records(&self, k: RecordKind, prefix: &[u8]) -> Result<Vec<Vec<u8>>, StoreError> {
        Ok(self
            .inner
            .list_records(k, prefix)?
            .into_iter()
            .filter(|key| !self.is_hidden(k, key))
            .collect())
    }
}

/// Returns `prefix` for the first bytes asked, then a seeded stream: a keyring generated
/// with it has the keyring id `prefix` and keys of its own (a substituted identity).
struct FixedPrefix {
    prefix: Vec<u8>,
    inner: ChaCha20Rng,
}

impl RngCore for FixedPrefix {
    fn next_u32(&mut self) -> u32 {
        self.inner.next_u32()
    }
    fn next_u64(&mut self) -> u64 {
        self.inner.next_u64()
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        let n = dest.len().min(self.prefix.len());
        dest[..n].copy_from_slice(&self.prefix[..n]);
        self.prefix.drain(..n);
        self.inner.fill_bytes(&mut dest[n..]);
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_chacha::rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}
impl CryptoRng for FixedPrefix {}

fn keyring(seed: u8) -> Keyring {
    Keyring::generate(
        &mut ChaCha20Rng::from_seed([seed; 32]),
        &KeyringOptions::new().with_created_at(1_795_000_000),
    )
    .unwrap()
}

/// Generating RSA keys takes a while: each test binary makes its keyrings once, sealed at
/// one PBKDF2 iteration (test-only policy), and every test unlocks fresh copies.
fn keyrings() -> [Keyring; 4] {
    static SEALED: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    let sealed = SEALED.get_or_init(|| {
        let mut rng = ChaCha20Rng::from_seed([9; 32]);
        (1..=4u8)
            .map(|seed| {
                let params = insecure_test_params(&mut rng, 1);
                let keys = PasswordKeys::derive_with_policy(
                    &Password::from("test"),
                    &params,
                    &insecure_test_policy(1),
                )
                .unwrap();
                SealedKeyring::seal(&mut rng, &keyring(seed), &keys)
                    .0
                    .to_bytes()
            })
            .collect()
    });
    let unlock = |bytes: &Vec<u8>| {
        SealedKeyring::from_bytes(bytes)
            .unwrap()
            .unlock_with_password_policy(&Password::from("test"), &insecure_test_policy(1))
            .unwrap()
            .0
    };
    [
        unlock(&sealed[0]),
        unlock(&sealed[1]),
        unlock(&sealed[2]),
        unlock(&sealed[3]),
    ]
}

struct People {
    evil: Arc<Evil>,
    alice: Vault<Arc<Evil>>,
    bob: Vault<Arc<Evil>>,
    carol: Vault<Arc<Evil>>,
    mallory: Vault<Arc<Evil>>,
}

fn people() -> People {
    let evil = Arc::new(Evil::default());
    let [a, b, c, m] = keyrings();
    let open = |k: Keyring| {
        let v = Vault::open(evil.clone(), k, LocalState::in_memory());
        v.publish_identity().unwrap();
        v
    };
    People {
        alice: open(a),
        bob: open(b),
        carol: open(c),
        mallory: open(m),
        evil,
    }
}

fn kid(v: &Vault<Arc<Evil>>) -> vault_keyring::KeyringId {
    v.keyring().id()
}

fn envelope_key(recipient: &[u8; 16], owner: &[u8; 16], target: &[u8; 16], epoch: u32) -> Vec<u8> {
    let mut k = recipient.to_vec();
    k.extend_from_slice(owner);
    k.extend_from_slice(target);
    k.extend_from_slice(&epoch.to_be_bytes());
    k
}

fn assert_integrity<T>(r: Result<T, Error>, what: &str) {
    match r {
        Err(Error::Integrity) => {}
        Err(other) => panic!("{what}: expected the integrity error, got {other:?}"),
        Ok(_) => panic!("{what}: accepted"),
    }
}

/// Alice shares "docs" with Bob (after each pins the other) and returns its id.
fn share_docs(p: &People) -> CollectionId {
    let bob = p.alice.fetch_identity(kid(&p.bob)).unwrap();
    p.bob.fetch_identity(kid(&p.alice)).unwrap();
    let mut docs = p.alice.collection("docs").unwrap();
    docs.put("plan.txt", b"the plan").unwrap();
    docs.share_with(&bob).unwrap();
    docs.id()
}

#[test]
fn alice_shares_a_collection_and_bob_reads_and_writes_it() {
    let p = people();
    let docs = share_docs(&p);
    let incoming = p.bob.incoming().unwrap();
    assert_eq!(incoming.len(), 1);
    assert_eq!(incoming[0].collection, docs);
    assert_eq!(incoming[0].owner, p.alice.id());
    assert_eq!(incoming[0].granter, kid(&p.alice));
    let mut shared = p.bob.shared_collection(p.alice.id(), docs).unwrap();
    assert_eq!(shared.get("plan.txt").unwrap(), b"the plan");
    assert_eq!(shared.manifest().name, "docs");
    // Bob writes; Alice (who pinned Bob) reads what he wrote.
    shared.put("reply.txt", b"agreed").unwrap();
    let docs_a = p.alice.collection("docs").unwrap();
    assert_eq!(docs_a.get("reply.txt").unwrap(), b"agreed");
    // Carol was given nothing.
    assert!(matches!(
        p.carol.shared_collection(p.alice.id(), docs),
        Err(Error::NoAccess)
    ));
    assert!(p.carol.incoming().unwrap().is_empty());
}

#[test]
fn unsharing_rotates_the_key_and_new_data_is_unreadable_to_the_removed_user() {
    let p = people();
    let docs = share_docs(&p);
    let mut c = p.alice.collection("docs").unwrap();
    c.unshare(&kid(&p.bob)).unwrap();
    c.put("after.txt", b"not for bob").unwrap();
    assert!(c.shares().is_empty());
    assert!(matches!(
        p.bob.shared_collection(p.alice.id(), docs),
        Err(Error::NoAccess)
    ));
    // Alice still reads everything, old epoch and new.
    assert_eq!(c.get("plan.txt").unwrap(), b"the plan");
    assert_eq!(c.get("after.txt").unwrap(), b"not for bob");
}

#[test]
fn rotation_keeps_old_objects_readable_to_remaining_users() {
    let p = people();
    let docs = share_docs(&p);
    let mut c = p.alice.collection("docs").unwrap();
    c.rotate_key().unwrap();
    c.put("new.txt", b"epoch two").unwrap();
    let shared = p.bob.shared_collection(p.alice.id(), docs).unwrap();
    assert_eq!(shared.get("plan.txt").unwrap(), b"the plan");
    assert_eq!(shared.get("new.txt").unwrap(), b"epoch two");
    assert_eq!(shared.manifest().key_epoch, 2);
}

#[test]
fn a_substituted_identity_is_key_changed_and_gets_nothing() {
    let p = people();
    let bob_id = kid(&p.bob);
    // Alice pins Bob's genuine identity first.
    assert_eq!(
        p.alice.pin(&p.alice_fetch(bob_id)).unwrap(),
        Pinned::Known,
        "fetch pinned it already"
    );
    // The server now publishes a bundle with Bob's id and Mallory's keys.
    let fake = Keyring::generate(
        &mut FixedPrefix {
            prefix: bob_id.as_bytes().to_vec(),
            inner: ChaCha20Rng::from_seed([99; 32]),
        },
        &KeyringOptions::new(),
    )
    .unwrap();
    assert_eq!(fake.id(), bob_id);
    let fake_bundle = fake.identity_bundle(&mut rand_core::OsRng);
    p.evil
        .put_record(
            RecordKind::Identity,
            bob_id.as_bytes(),
            fake_bundle.as_bytes(),
        )
        .unwrap();
    match p.alice.fetch_identity(bob_id) {
        Err(Error::KeyChanged {
            id,
            pinned,
            offered,
        }) => {
            assert_eq!(id, bob_id);
            assert_eq!(pinned, p.bob.identity().fingerprint());
            assert_eq!(offered, fake_bundle.fingerprint());
        }
        other => panic!("expected KeyChanged, got {other:?}"),
    }
    let mut docs = p.alice.collection("docs").unwrap();
    docs.put("x", b"secret").unwrap();
    assert!(matches!(
        docs.share_with(&fake_bundle),
        Err(Error::KeyChanged { .. })
    ));
    // Nothing was handed to anyone.
    assert!(p
        .evil
        .list_records(RecordKind::Envelope, bob_id.as_bytes())
        .unwrap()
        .is_empty());
    // Only an explicit decision with the matching fingerprint clears it.
    assert!(p
        .alice
        .accept_key_change(&fake_bundle, &p.bob.identity().fingerprint())
        .is_err());
    p.alice
        .accept_key_change(&fake_bundle, &fake_bundle.fingerprint())
        .unwrap();
    assert_eq!(
        p.alice.pinned_fingerprint(&bob_id).unwrap(),
        Some(fake_bundle.fingerprint())
    );
}

#[test]
fn a_first_contact_substitution_shows_in_the_safety_numbers() {
    let p = people();
    let bob_id = kid(&p.bob);
    let fake = Keyring::generate(
        &mut FixedPrefix {
            prefix: bob_id.as_bytes().to_vec(),
            inner: ChaCha20Rng::from_seed([98; 32]),
        },
        &KeyringOptions::new(),
    )
    .unwrap();
    let fake_bundle = fake.identity_bundle(&mut rand_core::OsRng);
    p.evil
        .put_record(
            RecordKind::Identity,
            bob_id.as_bytes(),
            fake_bundle.as_bytes(),
        )
        .unwrap();
    let seen_by_alice = p.alice.fetch_identity(bob_id).unwrap();
    let alice_seen_by_bob = p.bob.fetch_identity(kid(&p.alice)).unwrap();
    assert_ne!(
        p.alice.safety_number(&seen_by_alice),
        p.bob.safety_number(&alice_seen_by_bob),
        "the numbers Alice and Bob compare must differ"
    );
    // Genuine keys give equal numbers on both sides.
    let q = people();
    let b = q.alice.fetch_identity(kid(&q.bob)).unwrap();
    let a = q.bob.fetch_identity(kid(&q.alice)).unwrap();
    assert_eq!(q.alice.safety_number(&b), q.bob.safety_number(&a));
}

#[test]
fn the_directory_cannot_answer_with_another_users_identity() {
    let p = people();
    let bob_id = kid(&p.bob);
    p.evil
        .put_record(
            RecordKind::Identity,
            bob_id.as_bytes(),
            p.mallory.identity().as_bytes(),
        )
        .unwrap();
    assert_integrity(
        p.alice.fetch_identity(bob_id),
        "mallory's bundle under bob's id",
    );
}

#[test]
fn retargeted_envelopes_are_refused() {
    let p = people();
    let docs = share_docs(&p);
    let bob = p.alice.pinned_identity(&kid(&p.bob)).unwrap().unwrap();
    let mut other = p.alice.collection("other").unwrap();
    other.put("o", b"other data").unwrap();
    other.share_with(&bob).unwrap();
    let owner = p.alice.id();
    let b = *kid(&p.bob).as_bytes();
    let docs_env = p.evil.get(
        RecordKind::Envelope,
        &envelope_key(&b, owner.as_bytes(), docs.as_bytes(), 1),
    );
    // The envelope of "docs" placed where "other"'s should be.
    p.evil.set(
        RecordKind::Envelope,
        &envelope_key(&b, owner.as_bytes(), other.id().as_bytes(), 1),
        &docs_env,
    );
    assert_integrity(
        p.bob.shared_collection(owner, other.id()),
        "docs' envelope at other's address",
    );
    // Claimed for another owner.
    let fake_owner = VaultId::from_bytes([7; 16]);
    p.evil.set(
        RecordKind::Envelope,
        &envelope_key(&b, fake_owner.as_bytes(), docs.as_bytes(), 1),
        &docs_env,
    );
    assert_integrity(
        p.bob.shared_collection(fake_owner, docs),
        "envelope claimed for another owner",
    );
}

#[test]
fn an_envelope_for_another_recipient_is_refused() {
    let p = people();
    let docs = share_docs(&p);
    let owner = p.alice.id();
    let carol_id = kid(&p.carol);
    p.carol.fetch_identity(kid(&p.alice)).unwrap();
    // Bob's envelope copied to Carol's address: addressed to Bob, encrypted to Bob.
    let bob_env = p.evil.get(
        RecordKind::Envelope,
        &envelope_key(kid(&p.bob).as_bytes(), owner.as_bytes(), docs.as_bytes(), 1),
    );
    p.evil.set(
        RecordKind::Envelope,
        &envelope_key(carol_id.as_bytes(), owner.as_bytes(), docs.as_bytes(), 1),
        &bob_env,
    );
    assert_integrity(
        p.carol.shared_collection(owner, docs),
        "bob's envelope at carol's address",
    );
    // Flipped bits anywhere in Bob's envelope: refused (or, in the version and method
    // bytes, unsupported), never accepted.
    let b_key = envelope_key(kid(&p.bob).as_bytes(), owner.as_bytes(), docs.as_bytes(), 1);
    for i in (0..bob_env.len()).step_by(11) {
        let mut bad = bob_env.clone();
        bad[i] ^= 0x04;
        p.evil
            .put_record(RecordKind::Envelope, &b_key, &bad)
            .unwrap();
        match p.bob.shared_collection(owner, docs) {
            Err(Error::Integrity)
            | Err(Error::UnsupportedFormat)
            | Err(Error::UnknownIdentity(_)) => {}
            Err(e) => panic!("byte {i}: unexpected {e:?}"),
            Ok(_) => panic!("byte {i}: a tampered envelope was accepted"),
        }
    }
}

#[test]
fn a_replayed_envelope_of_an_old_epoch_is_refused() {
    let p = people();
    let docs = share_docs(&p);
    let mut c = p.alice.collection("docs").unwrap();
    c.rotate_key().unwrap();
    c.put("new", b"epoch 2").unwrap();
    let owner = p.alice.id();
    let b = *kid(&p.bob).as_bytes();
    let old = p.evil.get(
        RecordKind::Envelope,
        &envelope_key(&b, owner.as_bytes(), docs.as_bytes(), 1),
    );
    p.evil.set(
        RecordKind::Envelope,
        &envelope_key(&b, owner.as_bytes(), docs.as_bytes(), 2),
        &old,
    );
    assert_integrity(
        p.bob.shared_collection(owner, docs),
        "epoch 1 envelope replayed as epoch 2",
    );
}

#[test]
fn a_collection_key_handed_by_someone_other_than_the_owner_is_refused() {
    let p = people();
    let docs = share_docs(&p);
    // Mallory, whom Bob pinned, hands Bob a key of her choosing for Alice's collection.
    p.bob.fetch_identity(kid(&p.mallory)).unwrap();
    let bob_bundle = p.mallory.fetch_identity(kid(&p.bob)).unwrap();
    let forged = vault_keyring::envelope::seal(
        &mut rand_core::OsRng,
        p.mallory.keyring(),
        &vault_keyring::envelope::RecipientKey::user(&bob_bundle),
        &vault_keyring::envelope::Grant {
            purpose: vault_keyring::envelope::Purpose::CollectionKey,
            owner: *p.alice.id().as_bytes(),
            target: *docs.as_bytes(),
            epoch: 2,
        },
        vault_keyring::envelope::Method::Hpke,
        &[0x42; 32],
        0,
    )
    .unwrap();
    p.evil.set(
        RecordKind::Envelope,
        &envelope_key(
            kid(&p.bob).as_bytes(),
            p.alice.id().as_bytes(),
            docs.as_bytes(),
            2,
        ),
        &forged,
    );
    assert_integrity(
        p.bob.shared_collection(p.alice.id(), docs),
        "collection key from a non-owner",
    );
}

fn group_with_bob_and_carol(p: &People) -> GroupId {
    let bob = p.alice.fetch_identity(kid(&p.bob)).unwrap();
    let carol = p.alice.fetch_identity(kid(&p.carol)).unwrap();
    p.bob.fetch_identity(kid(&p.alice)).unwrap();
    p.carol.fetch_identity(kid(&p.alice)).unwrap();
    let mut g = p.alice.create_group().unwrap();
    g.add_member(&bob, Role::Member).unwrap();
    g.add_member(&carol, Role::Member).unwrap();
    g.id()
}

#[test]
fn a_group_reads_a_shared_collection_and_a_removed_member_cannot_read_new_data() {
    let p = people();
    let gid = group_with_bob_and_carol(&p);
    let mut team = p.alice.collection("team").unwrap();
    team.put("before.txt", b"everyone").unwrap();
    team.share_with_group(gid).unwrap();
    let owner = p.alice.id();
    let tid = team.id();
    drop(team);
    for member in [&p.bob, &p.carol] {
        assert_eq!(member.group(gid).unwrap().epoch(), 1);
        let found = member.incoming().unwrap();
        assert!(found
            .iter()
            .any(|i| i.collection == tid && i.via_group == Some(gid)));
        let c = member.shared_collection(owner, tid).unwrap();
        assert_eq!(c.get("before.txt").unwrap(), b"everyone");
    }
    // Alice removes Carol: a new epoch; Alice's next write rotates the collection key.
    let mut g = p.alice.group(gid).unwrap();
    g.remove_member(&kid(&p.carol)).unwrap();
    assert_eq!(g.epoch(), 2);
    let mut team = p.alice.collection("team").unwrap();
    team.put("after.txt", b"not for carol").unwrap();
    assert_eq!(team.manifest().key_epoch, 2);
    // Bob reads old and new (opening the collection syncs the group: epoch 2's secret).
    let c = p.bob.shared_collection(owner, tid).unwrap();
    assert_eq!(c.get("before.txt").unwrap(), b"everyone");
    assert_eq!(c.get("after.txt").unwrap(), b"not for carol");
    assert_eq!(p.bob.group(gid).unwrap().epoch(), 2);
    // Carol gets no key for the new epoch: the new manifest is closed to her.
    let _ = p.carol.group(gid).unwrap();
    assert!(matches!(
        p.carol.shared_collection(owner, tid),
        Err(Error::NoAccess)
    ));
}

#[test]
fn a_member_added_later_reads_the_history() {
    let p = people();
    let gid = group_with_bob_and_carol(&p);
    let mut team = p.alice.collection("team").unwrap();
    team.put("old.txt", b"history").unwrap();
    team.share_with_group(gid).unwrap();
    let mut g = p.alice.group(gid).unwrap();
    g.remove_member(&kid(&p.carol)).unwrap();
    team.put("new.txt", b"present").unwrap();
    let mallory = p.alice.fetch_identity(kid(&p.mallory)).unwrap();
    p.mallory.fetch_identity(kid(&p.alice)).unwrap();
    g.add_member(&mallory, Role::Member).unwrap();
    let _ = p.mallory.group(gid).unwrap();
    let c = p
        .mallory
        .shared_collection(p.alice.id(), team.id())
        .unwrap();
    assert_eq!(c.get("old.txt").unwrap(), b"history");
    assert_eq!(c.get("new.txt").unwrap(), b"present");
}

#[test]
fn only_admins_change_a_group() {
    let p = people();
    let gid = group_with_bob_and_carol(&p);
    let mut g = p.bob.group(gid).unwrap();
    let mallory = p.bob.fetch_identity(kid(&p.mallory)).unwrap();
    assert!(matches!(
        g.add_member(&mallory, Role::Member),
        Err(Error::NotAdmin)
    ));
    assert!(matches!(
        g.remove_member(&kid(&p.carol)),
        Err(Error::NotAdmin)
    ));
}

fn roster_key(g: &GroupId, version: u64) -> Vec<u8> {
    let mut k = g.as_bytes().to_vec();
    k.extend_from_slice(&version.to_be_bytes());
    k
}

#[test]
fn an_injected_roster_version_is_refused() {
    let p = people();
    let gid = group_with_bob_and_carol(&p);
    // Bob has seen version 3 (create, add bob, add carol).
    assert_eq!(p.bob.group(gid).unwrap().roster().version(), 3);
    // Mallory makes a group of her own and the server splices its roster in as version 4.
    let mut other = p.mallory.create_group().unwrap();
    let bob = p.mallory.fetch_identity(kid(&p.bob)).unwrap();
    other.add_member(&bob, Role::Admin).unwrap();
    let foreign = p.evil.get(RecordKind::Roster, &roster_key(&other.id(), 2));
    p.evil
        .put_record(RecordKind::Roster, &roster_key(&gid, 4), &foreign)
        .unwrap();
    p.bob.fetch_identity(kid(&p.mallory)).unwrap();
    assert_integrity(p.bob.group(gid), "another group's roster spliced in");
    // A roster re-signed by a mere member (Bob) to inject Mallory: Bob is not an admin of
    // version 3, so even his valid signature does not count.
    let v3 = p.evil.get(RecordKind::Roster, &roster_key(&gid, 3));
    let mut bad = v3.clone();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    p.evil
        .put_record(RecordKind::Roster, &roster_key(&gid, 4), &bad)
        .unwrap();
    assert_integrity(p.bob.group(gid), "a forged signature");
}

#[test]
fn a_rolled_back_or_forked_roster_is_refused() {
    let p = people();
    let gid = group_with_bob_and_carol(&p);
    let mut g = p.alice.group(gid).unwrap();
    g.remove_member(&kid(&p.carol)).unwrap(); // version 4, epoch 2
    assert_eq!(p.bob.group(gid).unwrap().roster().version(), 4);
    // The server hides version 4: back to version 3, where Carol is still a member.
    p.evil.hide(RecordKind::Roster, &roster_key(&gid, 4));
    assert_integrity(p.bob.group(gid), "roster rolled back to version 3");
    // The server replaces version 4 with another version 4 (a fork): Alice re-adds nobody
    // but the bytes differ (a re-signed copy of version 3's successor).
    let v3 = p.evil.get(RecordKind::Roster, &roster_key(&gid, 3));
    p.evil.hidden.lock().unwrap().clear();
    p.evil
        .put_record(RecordKind::Roster, &roster_key(&gid, 4), &v3)
        .unwrap();
    assert_integrity(p.bob.group(gid), "a different roster under version 4");
}

#[test]
fn a_group_secret_envelope_copied_to_a_non_member_opens_nothing() {
    let p = people();
    let gid = group_with_bob_and_carol(&p);
    let alice_id = *p.alice.id().as_bytes();
    let _ = alice_id;
    let bob_env = p.evil.get(
        RecordKind::Envelope,
        &envelope_key(kid(&p.bob).as_bytes(), gid.as_bytes(), gid.as_bytes(), 1),
    );
    p.evil.set(
        RecordKind::Envelope,
        &envelope_key(
            kid(&p.mallory).as_bytes(),
            gid.as_bytes(),
            gid.as_bytes(),
            1,
        ),
        &bob_env,
    );
    p.mallory.fetch_identity(kid(&p.alice)).unwrap();
    assert_integrity(
        p.mallory.group(gid),
        "bob's group secret at mallory's address",
    );
}

impl People {
    fn alice_fetch(&self, id: vault_keyring::KeyringId) -> IdentityBundle {
        self.alice.fetch_identity(id).unwrap()
    }
}

#[test]
fn the_rsa_4096_handover_path_works_end_to_end() {
    let p = people();
    // Bob with an RSA-4096 exchange key (off by default; slow to generate).
    let rsa_bob = Keyring::generate(
        &mut ChaCha20Rng::from_seed([50; 32]),
        &KeyringOptions::new().with_rsa_exchange(true),
    )
    .unwrap();
    let bob = Vault::open(p.evil.clone(), rsa_bob, LocalState::in_memory());
    bob.publish_identity().unwrap();
    let bob_bundle = p.alice.fetch_identity(bob.keyring().id()).unwrap();
    assert!(bob_bundle.rsa_exchange_key().is_some());
    bob.fetch_identity(kid(&p.alice)).unwrap();
    p.alice.set_rsa_handover(true);
    let mut docs = p.alice.collection("docs").unwrap();
    docs.put("a", b"over rsa").unwrap();
    docs.share_with(&bob_bundle).unwrap();
    let env = p.evil.get(
        RecordKind::Envelope,
        &envelope_key(
            bob.keyring().id().as_bytes(),
            p.alice.id().as_bytes(),
            docs.id().as_bytes(),
            1,
        ),
    );
    assert_eq!(
        vault_keyring::envelope::peek(&env).unwrap().method,
        vault_keyring::envelope::Method::RsaOaep
    );
    let c = bob.shared_collection(p.alice.id(), docs.id()).unwrap();
    assert_eq!(c.get("a").unwrap(), b"over rsa");
}

#[test]
fn a_second_admin_can_start_an_epoch_that_members_accept_through_the_roster() {
    let p = people();
    let bob = p.alice.fetch_identity(kid(&p.bob)).unwrap();
    let carol = p.alice.fetch_identity(kid(&p.carol)).unwrap();
    let mallory = p.alice.fetch_identity(kid(&p.mallory)).unwrap();
    p.bob.fetch_identity(kid(&p.alice)).unwrap();
    p.carol.fetch_identity(kid(&p.alice)).unwrap();
    let mut g = p.alice.create_group().unwrap();
    g.add_member(&bob, Role::Admin).unwrap();
    g.add_member(&carol, Role::Member).unwrap();
    g.add_member(&mallory, Role::Member).unwrap();
    let gid = g.id();
    // Bob (an admin Carol never pinned herself) removes Mallory: epoch 2, secret from Bob.
    let mut gb = p.bob.group(gid).unwrap();
    gb.remove_member(&kid(&p.mallory)).unwrap();
    assert_eq!(p.carol.pinned_fingerprint(&kid(&p.bob)).unwrap(), None);
    let gc = p.carol.group(gid).unwrap();
    assert_eq!(gc.epoch(), 2);
    assert!(!gc.roster().is_member(&kid(&p.mallory)));
    // Carol now holds Bob's identity as the roster listed it.
    assert_eq!(
        p.carol.pinned_fingerprint(&kid(&p.bob)).unwrap(),
        Some(p.bob.identity().fingerprint())
    );
}

#[test]
fn a_member_added_after_a_removal_reads_a_collection_not_rotated_yet() {
    let p = people();
    let gid = group_with_bob_and_carol(&p);
    let mut team = p.alice.collection("team").unwrap();
    team.put("old.txt", b"history").unwrap();
    team.share_with_group(gid).unwrap();
    let tid = team.id();
    drop(team);
    let mut g = p.alice.group(gid).unwrap();
    g.remove_member(&kid(&p.carol)).unwrap(); // epoch 2; "team" not written (rotated) since
    let mallory = p.alice.fetch_identity(kid(&p.mallory)).unwrap();
    p.mallory.fetch_identity(kid(&p.alice)).unwrap();
    g.add_member(&mallory, Role::Member).unwrap();
    // Without opening the group first: incoming() syncs the groups it finds.
    let found = p.mallory.incoming().unwrap();
    assert!(found
        .iter()
        .any(|i| i.collection == tid && i.via_group == Some(gid)));
    let c = p.mallory.shared_collection(p.alice.id(), tid).unwrap();
    assert_eq!(c.get("old.txt").unwrap(), b"history");
}

#[test]
fn a_group_whose_creator_is_not_pinned_asks_for_the_creator() {
    let p = people();
    let gid = group_with_bob_and_carol(&p);
    // Mallory never pinned Alice: she is told whom to verify, and nothing is accepted.
    match p.mallory.group(gid) {
        Err(Error::UnknownIdentity(id)) => assert_eq!(id, kid(&p.alice)),
        other => panic!(
            "expected UnknownIdentity, got {:?}",
            other.map(|g| g.epoch())
        ),
    }
}
