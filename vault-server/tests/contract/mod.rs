//! The storage contract (vault_server::store), shared by the suites of every backend:
//! `tests/store_contract.rs` (sled) and `tests/store_contract_pg.rs` (PostgreSQL) call the
//! same functions, so each backend keeps exactly the same promises.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use vault_server::auth::{Session, SessionStore, TokenHash};
use vault_server::store::{
    AccountStore, Backend, BackendError, Cas, ChangeKind, Created, EnvelopeKey, InsertRoster,
    KeyringReplacement, ManifestSwap, NewAccount, ObjectKey, PageKey, ScopeKind, Write,
};

/// Every part of the contract, on a fresh (empty) backend.
pub fn all<B: Backend>(b: &B) {
    accounts_contract(b);
    names_contract(b);
    sessions_contract(b);
    settings_contract(b);
    data_contract(b);
    access_contract(b);
    feed_contract(b);
    deletion_contract(b);
    session_outliving_its_account_contract(b);
    audit_contract(b);
    mfa_contract(b);
    recovery_contract(b);
}

/// Recovery verifiers (login.md §10): stored at registration or not at all; replaced only
/// together with the keyring by `replace_keyring` (compare-and-swap; every named part or
/// none; a part not named is kept); removed with the account.
pub fn recovery_contract<B: Backend>(b: &B) {
    let user = [0x5e; 16];
    let other = [0x5f; 16];
    assert_eq!(b.recovery_verifier(&user).unwrap(), None);
    let (v, k, i, _) = account(user, 0x5e);
    let new = NewAccount {
        user,
        name: "recovering",
        verifier: &v,
        keyring: &k,
        identity: &i,
    };
    assert!(b
        .create_account_with_recovery(&new, Some(&[0xa0; 58]))
        .unwrap());
    assert_eq!(b.recovery_verifier(&user).unwrap(), Some(vec![0xa0; 58]));
    // A refused registration (taken id or name) stores no recovery verifier.
    let taken = NewAccount { user: other, ..new };
    assert!(!b
        .create_account_with_recovery(&taken, Some(&[1; 58]))
        .unwrap());
    assert_eq!(b.recovery_verifier(&other).unwrap(), None);
    // Without one: none.
    assert!(register(b, other, 0x5f));
    assert_eq!(b.recovery_verifier(&other).unwrap(), None);

    // A recovery: keyring and login verifier, recovery verifier kept.
    let recovery = KeyringReplacement {
        keyring: b"k2",
        login_verifier: Some(&[2; 58]),
        recovery_verifier: None,
    };
    assert_eq!(
        b.replace_keyring(&user, 2, &recovery).unwrap(),
        Cas::Conflict { current: 1 }
    );
    assert_eq!(b.keyring(&user).unwrap(), Some((1, k.clone())));
    assert_eq!(b.verifier(&user).unwrap(), Some(v.clone()));
    assert_eq!(b.replace_keyring(&user, 1, &recovery).unwrap(), Cas::Done);
    assert_eq!(b.keyring(&user).unwrap(), Some((2, b"k2".to_vec())));
    assert_eq!(b.verifier(&user).unwrap(), Some(vec![2; 58]));
    assert_eq!(b.recovery_verifier(&user).unwrap(), Some(vec![0xa0; 58]));
    // A new recovery code: keyring and recovery verifier, login verifier kept.
    let rotation = KeyringReplacement {
        keyring: b"k3",
        login_verifier: None,
        recovery_verifier: Some(&[3; 58]),
    };
    assert_eq!(
        b.replace_keyring(&user, 1, &rotation).unwrap(),
        Cas::Conflict { current: 2 }
    );
    assert_eq!(b.recovery_verifier(&user).unwrap(), Some(vec![0xa0; 58]));
    assert_eq!(b.replace_keyring(&user, 2, &rotation).unwrap(), Cas::Done);
    assert_eq!(b.keyring(&user).unwrap(), Some((3, b"k3".to_vec())));
    assert_eq!(b.verifier(&user).unwrap(), Some(vec![2; 58]));
    assert_eq!(b.recovery_verifier(&user).unwrap(), Some(vec![3; 58]));
    // Both at once; and an account that had none gets one.
    let both = KeyringReplacement {
        keyring: b"k4",
        login_verifier: Some(&[4; 58]),
        recovery_verifier: Some(&[5; 58]),
    };
    assert_eq!(b.replace_keyring(&user, 3, &both).unwrap(), Cas::Done);
    assert_eq!(b.verifier(&user).unwrap(), Some(vec![4; 58]));
    assert_eq!(b.recovery_verifier(&user).unwrap(), Some(vec![5; 58]));
    assert_eq!(b.replace_keyring(&other, 1, &rotation).unwrap(), Cas::Done);
    assert_eq!(b.recovery_verifier(&other).unwrap(), Some(vec![3; 58]));
    assert_eq!(b.verifier(&other).unwrap(), Some(vec![0x5f; 58]));
    // No account: nothing stored.
    assert_eq!(
        b.replace_keyring(&[0x77; 16], 0, &both).unwrap(),
        Cas::Conflict { current: 0 }
    );
    assert_eq!(b.recovery_verifier(&[0x77; 16]).unwrap(), None);
    // Concurrent replacements from one version: exactly one wins, whole.
    let wins = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for t in 0..4u8 {
            let wins = &wins;
            scope.spawn(move || {
                let r = KeyringReplacement {
                    keyring: &[t; 4],
                    login_verifier: Some(&[t; 58]),
                    recovery_verifier: Some(&[t; 58]),
                };
                if b.replace_keyring(&user, 4, &r).unwrap() == Cas::Done {
                    wins.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
            });
        }
    });
    assert_eq!(wins.into_inner(), 1);
    let (version, blob) = b.keyring(&user).unwrap().unwrap();
    assert_eq!(version, 5);
    let t = blob[0];
    assert_eq!(b.verifier(&user).unwrap(), Some(vec![t; 58]));
    assert_eq!(b.recovery_verifier(&user).unwrap(), Some(vec![t; 58]));
    // Deletion takes it along; a new account of the same id starts without one.
    assert!(b.delete_account(&user).unwrap());
    assert_eq!(b.recovery_verifier(&user).unwrap(), None);
    assert!(register(b, user, 0x5e));
    assert_eq!(b.recovery_verifier(&user).unwrap(), None);
}

/// MFA records: compare-and-swap from version 0, no record without an account, deleted
/// with the account, one winner among concurrent swaps.
pub fn mfa_contract<B: Backend>(b: &B) {
    let user = [0x3f; 16];
    assert_eq!(b.mfa(&user).unwrap(), None);
    assert_eq!(b.swap_mfa(&user, 0, b"r1").unwrap(), None, "no account");
    assert_eq!(b.mfa(&user).unwrap(), None);
    assert!(register(b, user, 0x3f));
    assert_eq!(b.mfa(&user).unwrap(), None);
    assert_eq!(
        b.swap_mfa(&user, 1, b"r1").unwrap(),
        Some(Cas::Conflict { current: 0 })
    );
    assert_eq!(b.swap_mfa(&user, 0, b"r1").unwrap(), Some(Cas::Done));
    assert_eq!(b.mfa(&user).unwrap(), Some((1, b"r1".to_vec())));
    assert_eq!(
        b.swap_mfa(&user, 0, b"again").unwrap(),
        Some(Cas::Conflict { current: 1 })
    );
    assert_eq!(b.swap_mfa(&user, 1, b"r2").unwrap(), Some(Cas::Done));
    assert_eq!(b.mfa(&user).unwrap(), Some((2, b"r2".to_vec())));
    // Concurrent swaps from one version: exactly one wins.
    let wins = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for i in 0..4u8 {
            let wins = &wins;
            scope.spawn(move || {
                if b.swap_mfa(&user, 2, &[i; 8]).unwrap() == Some(Cas::Done) {
                    wins.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
            });
        }
    });
    assert_eq!(wins.into_inner(), 1);
    assert_eq!(b.mfa(&user).unwrap().unwrap().0, 3);
    // Another account's record is its own.
    let other = [0x40; 16];
    assert!(register(b, other, 0x40));
    assert_eq!(b.mfa(&other).unwrap(), None);
    assert!(b.delete_account(&user).unwrap());
    assert_eq!(b.mfa(&user).unwrap(), None);
    assert_eq!(b.swap_mfa(&user, 3, b"late").unwrap(), None);
    // Re-registered, the account starts without a record.
    assert!(register(b, user, 0x41));
    assert_eq!(b.mfa(&user).unwrap(), None);
}

/// A login that stores its session while the account is being deleted: the session is
/// removed and refused, never left working for a user that is gone. (The API does the
/// same with a scope created during the deletion, through `account_exists_settled`.)
pub fn session_outliving_its_account_contract<B: Backend>(b: &B) {
    let user = [0x5e; 16];
    assert!(register(b, user, 1));
    let mut rng = ChaCha20Rng::from_seed([0x5e; 32]);
    assert!(b.account_exists_settled(&user).unwrap());
    assert!(!b.account_exists_settled(&[0x5f; 16]).unwrap());
    let kept = b.issue(&mut rng, user, 1_000, 100).unwrap();
    assert!(b
        .keep_session_if_account_exists(&user, &kept.hash())
        .unwrap());
    assert_eq!(b.authenticate(&kept, 1_001).unwrap(), Some(user));
    assert!(b.delete_account(&user).unwrap());
    assert!(!b.account_exists_settled(&user).unwrap());
    assert_eq!(b.authenticate(&kept, 1_001).unwrap(), None);
    // The late login: its session is stored after the deletion.
    let late = b.issue(&mut rng, user, 1_002, 100).unwrap();
    assert!(!b
        .keep_session_if_account_exists(&user, &late.hash())
        .unwrap());
    assert_eq!(b.authenticate(&late, 1_003).unwrap(), None);
    assert_eq!(b.get(&late.hash()).unwrap(), None);
}

/// Shared settings: the first value inserted wins.
pub fn settings_contract<B: Backend>(b: &B) {
    assert_eq!(
        b.setting_or_insert("decoy-key", b"first").unwrap(),
        b"first"
    );
    assert_eq!(
        b.setting_or_insert("decoy-key", b"second").unwrap(),
        b"first"
    );
    assert_eq!(b.setting_or_insert("other", b"x").unwrap(), b"x");
}

pub const ALICE: [u8; 16] = [0xa1; 16];
pub const BOB: [u8; 16] = [0xb0; 16];

fn account(user: [u8; 16], tag: u8) -> (Vec<u8>, Vec<u8>, Vec<u8>, [u8; 16]) {
    (vec![tag; 58], vec![tag; 1600], vec![tag; 700], user)
}

/// Registers `user` with parts filled with `tag`, named after the user's first byte and `tag`.
pub fn register<S: AccountStore>(s: &S, user: [u8; 16], tag: u8) -> bool {
    let (v, k, i, user) = account(user, tag);
    let name = format!("user-{:02x}-{tag}", user[0]);
    s.create_account(&NewAccount {
        user,
        name: &name,
        verifier: &v,
        keyring: &k,
        identity: &i,
    })
    .unwrap()
}

/// The account half of the contract.
pub fn accounts_contract<S: AccountStore>(s: &S) {
    assert_eq!(s.verifier(&ALICE).unwrap(), None);
    assert_eq!(s.keyring(&ALICE).unwrap(), None);
    assert_eq!(s.identity(&ALICE).unwrap(), None);
    assert!(register(s, ALICE, 1));
    // A second registration of the same id changes nothing.
    assert!(!register(s, ALICE, 2));
    assert_eq!(s.verifier(&ALICE).unwrap(), Some(vec![1; 58]));
    assert_eq!(s.keyring(&ALICE).unwrap(), Some((1, vec![1; 1600])));
    assert_eq!(s.identity(&ALICE).unwrap(), Some(vec![1; 700]));
    // Accounts are independent.
    assert!(register(s, BOB, 3));
    assert_eq!(s.keyring(&BOB).unwrap(), Some((1, vec![3; 1600])));
    assert_eq!(s.keyring(&ALICE).unwrap(), Some((1, vec![1; 1600])));

    // Keyring compare-and-swap: only from the current version, +1 each time.
    assert_eq!(s.swap_keyring(&ALICE, 1, b"v2").unwrap(), Cas::Done);
    assert_eq!(s.keyring(&ALICE).unwrap(), Some((2, b"v2".to_vec())));
    assert_eq!(
        s.swap_keyring(&ALICE, 1, b"stale").unwrap(),
        Cas::Conflict { current: 2 }
    );
    assert_eq!(
        s.swap_keyring(&ALICE, 3, b"future").unwrap(),
        Cas::Conflict { current: 2 }
    );
    assert_eq!(s.keyring(&ALICE).unwrap(), Some((2, b"v2".to_vec())));
    assert_eq!(
        s.swap_keyring(&[0x77; 16], 0, b"x").unwrap(),
        Cas::Conflict { current: 0 }
    );

    // Verifier and identity updates, only for existing accounts.
    assert!(s.set_verifier(&ALICE, &[9; 58]).unwrap());
    assert_eq!(s.verifier(&ALICE).unwrap(), Some(vec![9; 58]));
    assert!(!s.set_verifier(&[0x77; 16], &[9; 58]).unwrap());
    assert_eq!(s.verifier(&[0x77; 16]).unwrap(), None);
    // A password change swaps the keyring and the verifier together, or neither.
    assert_eq!(
        s.change_password(&ALICE, 1, b"stale", &[3; 58]).unwrap(),
        Cas::Conflict { current: 2 }
    );
    assert_eq!(s.keyring(&ALICE).unwrap(), Some((2, b"v2".to_vec())));
    assert_eq!(s.verifier(&ALICE).unwrap(), Some(vec![9; 58]));
    assert_eq!(
        s.change_password(&ALICE, 2, b"v3", &[4; 58]).unwrap(),
        Cas::Done
    );
    assert_eq!(s.keyring(&ALICE).unwrap(), Some((3, b"v3".to_vec())));
    assert_eq!(s.verifier(&ALICE).unwrap(), Some(vec![4; 58]));
    assert_eq!(
        s.change_password(&[0x77; 16], 0, b"x", &[4; 58]).unwrap(),
        Cas::Conflict { current: 0 }
    );
    assert_eq!(s.verifier(&[0x77; 16]).unwrap(), None);
    assert!(s.set_identity(&ALICE, b"rotated").unwrap());
    assert_eq!(s.identity(&ALICE).unwrap(), Some(b"rotated".to_vec()));
    assert!(!s.set_identity(&[0x77; 16], b"x").unwrap());
    assert_eq!(s.identity(&[0x77; 16]).unwrap(), None);

    // Deletion removes every part, once.
    assert!(s.delete_account(&ALICE).unwrap());
    assert!(!s.delete_account(&ALICE).unwrap());
    assert_eq!(s.verifier(&ALICE).unwrap(), None);
    assert_eq!(s.keyring(&ALICE).unwrap(), None);
    assert_eq!(s.identity(&ALICE).unwrap(), None);
    assert_eq!(s.keyring(&BOB).unwrap(), Some((1, vec![3; 1600])));
    // The id can be registered again (a new account).
    assert!(register(s, ALICE, 4));
    assert_eq!(s.keyring(&ALICE).unwrap(), Some((1, vec![4; 1600])));
}

/// The session half of the contract.
pub fn sessions_contract<S: SessionStore<Error = BackendError>>(s: &S) {
    let mut rng = ChaCha20Rng::from_seed([5; 32]);
    let a = s.issue(&mut rng, ALICE, 1_000, 100).unwrap();
    let a2 = s.issue(&mut rng, ALICE, 1_000, 100).unwrap();
    let b = s.issue(&mut rng, BOB, 1_000, 10).unwrap();
    assert_eq!(s.authenticate(&a, 1_050).unwrap(), Some(ALICE));
    assert_eq!(s.authenticate(&b, 1_005).unwrap(), Some(BOB));
    // Expired at `expires`.
    assert_eq!(s.authenticate(&b, 1_010).unwrap(), None);
    // The stored record is keyed by the token's hash and holds no token.
    let stored = s.get(&a.hash()).unwrap().unwrap();
    assert_eq!(
        stored,
        Session {
            user: ALICE,
            created: 1_000,
            expires: 1_100
        }
    );
    assert_eq!(s.get(&TokenHash::from_bytes([0; 32])).unwrap(), None);
    // Logout ends one session; revoke-all ends every session of the user.
    assert!(s.logout(&a).unwrap());
    assert!(!s.logout(&a).unwrap());
    assert_eq!(s.authenticate(&a, 1_050).unwrap(), None);
    assert_eq!(s.authenticate(&a2, 1_050).unwrap(), Some(ALICE));
    let c = s.issue(&mut rng, BOB, 1_000, 1_000).unwrap();
    assert_eq!(s.revoke_all(&ALICE).unwrap(), 1);
    assert_eq!(s.authenticate(&a2, 1_050).unwrap(), None);
    assert_eq!(s.authenticate(&c, 1_050).unwrap(), Some(BOB));
    // Sweeping removes only what expired.
    let d = s.issue(&mut rng, ALICE, 2_000, 10).unwrap();
    assert!(s.sweep(2_005).unwrap() <= 1);
    assert_eq!(s.authenticate(&d, 2_005).unwrap(), Some(ALICE));
    assert!(s.sweep(2_010).unwrap() >= 1);
    assert_eq!(s.get(&d.hash()).unwrap(), None);
}

/// Login names: unique, mapped both ways, freed by deletion.
pub fn names_contract<S: AccountStore>(s: &S) {
    const CAROL: [u8; 16] = [0xc0; 16];
    const DAVE: [u8; 16] = [0xd0; 16];
    let (v, k, i, _) = account(CAROL, 1);
    let new = |user, name| NewAccount {
        user,
        name,
        verifier: &v,
        keyring: &k,
        identity: &i,
    };
    assert_eq!(s.user_by_name("carol").unwrap(), None);
    assert!(s.create_account(&new(CAROL, "carol")).unwrap());
    assert_eq!(s.user_by_name("carol").unwrap(), Some(CAROL));
    assert_eq!(s.name(&CAROL).unwrap().as_deref(), Some("carol"));
    // A taken name refuses another id; nothing of the other id is stored.
    assert!(!s.create_account(&new(DAVE, "carol")).unwrap());
    assert_eq!(s.verifier(&DAVE).unwrap(), None);
    assert_eq!(s.name(&DAVE).unwrap(), None);
    // A taken id refuses another name; the name stays free.
    assert!(!s.create_account(&new(CAROL, "dave")).unwrap());
    assert_eq!(s.user_by_name("dave").unwrap(), None);
    // Names are compared byte for byte (the API normalises them before).
    assert_eq!(s.user_by_name("Carol").unwrap(), None);
    // Deletion frees the name.
    assert!(s.delete_account(&CAROL).unwrap());
    assert_eq!(s.user_by_name("carol").unwrap(), None);
    assert_eq!(s.name(&CAROL).unwrap(), None);
    assert!(s.create_account(&new(DAVE, "carol")).unwrap());
    assert_eq!(s.user_by_name("carol").unwrap(), Some(DAVE));
}

const NO_QUOTA: u64 = u64::MAX;

fn page(c: [u8; 16], o: u8, version: u64, index: u32) -> PageKey {
    PageKey {
        collection: c,
        object: [o; 16],
        version,
        index,
    }
}

fn object(c: [u8; 16], o: u8, version: u64) -> ObjectKey {
    ObjectKey {
        collection: c,
        object: [o; 16],
        version,
    }
}

fn env(recipient: [u8; 16], owner: [u8; 16], target: [u8; 16], epoch: u32) -> EnvelopeKey {
    EnvelopeKey {
        recipient,
        owner,
        target,
        epoch,
    }
}

/// Scopes, pages, headers, keys, the manifest head, rosters, usage and quotas.
pub fn data_contract<B: Backend>(b: &B) {
    let (u, v) = ([0x11; 16], [0x12; 16]);
    let c = [0xc1; 16];
    let g = [0x91; 16];
    assert_eq!(b.scope(&c).unwrap(), None);
    assert_eq!(
        b.create_scope(&c, ScopeKind::Collection, &u).unwrap(),
        Created::Created
    );
    assert_eq!(
        b.create_scope(&c, ScopeKind::Group, &v).unwrap(),
        Created::Exists {
            kind: ScopeKind::Collection,
            owner: u
        }
    );
    assert_eq!(b.scope(&c).unwrap(), Some((ScopeKind::Collection, u)));
    assert_eq!(
        b.create_scope(&g, ScopeKind::Group, &u).unwrap(),
        Created::Created
    );
    assert_eq!(b.usage(&u).unwrap(), 0);

    // Writes under a missing scope or a scope of the other kind change nothing.
    let missing = [0xee; 16];
    assert_eq!(
        b.put_page(&page(missing, 1, 1, 0), b"p", NO_QUOTA).unwrap(),
        Write::NoScope
    );
    assert_eq!(
        b.put_page(&page(g, 1, 1, 0), b"p", NO_QUOTA).unwrap(),
        Write::NoScope
    );
    assert_eq!(b.get_page(&page(g, 1, 1, 0)).unwrap(), None);
    assert_eq!(
        b.put_header(&object(missing, 1, 1), b"h", NO_QUOTA)
            .unwrap(),
        Write::NoScope
    );
    assert_eq!(
        b.put_collection_key(&g, 1, b"k", NO_QUOTA).unwrap(),
        Write::NoScope
    );
    assert_eq!(
        b.swap_manifest(&missing, 0, 1, b"m", NO_QUOTA).unwrap(),
        ManifestSwap::NoScope
    );
    assert_eq!(
        b.insert_roster(&c, 1, b"r", NO_QUOTA).unwrap(),
        InsertRoster::NoScope
    );

    // Pages and headers: put, replace, read; usage counts bytes, replacing only the difference.
    let p0 = page(c, 1, 1, 0);
    let p1 = page(c, 1, 1, 1);
    assert_eq!(b.put_page(&p0, &[1; 1000], NO_QUOTA).unwrap(), Write::Done);
    assert_eq!(b.put_page(&p1, &[2; 500], NO_QUOTA).unwrap(), Write::Done);
    assert_eq!(
        b.put_header(&object(c, 1, 1), &[3; 100], NO_QUOTA).unwrap(),
        Write::Done
    );
    assert_eq!(b.get_page(&p0).unwrap(), Some(vec![1; 1000]));
    assert_eq!(b.get_page(&p1).unwrap(), Some(vec![2; 500]));
    assert_eq!(b.get_page(&page(c, 1, 1, 2)).unwrap(), None);
    assert_eq!(b.get_page(&page(c, 1, 2, 0)).unwrap(), None);
    assert_eq!(b.get_header(&object(c, 1, 1)).unwrap(), Some(vec![3; 100]));
    assert_eq!(b.usage(&u).unwrap(), 1600);
    assert_eq!(b.put_page(&p0, &[4; 800], NO_QUOTA).unwrap(), Write::Done);
    assert_eq!(b.get_page(&p0).unwrap(), Some(vec![4; 800]));
    assert_eq!(b.usage(&u).unwrap(), 1400);
    assert_eq!(b.usage(&v).unwrap(), 0);

    // Quota: a write past it changes nothing; a replacement that shrinks is allowed.
    assert_eq!(
        b.put_page(&page(c, 2, 1, 0), &[5; 101], 1500).unwrap(),
        Write::QuotaExceeded
    );
    assert_eq!(b.get_page(&page(c, 2, 1, 0)).unwrap(), None);
    assert_eq!(
        b.put_page(&page(c, 2, 1, 0), &[5; 100], 1500).unwrap(),
        Write::Done
    );
    assert_eq!(b.usage(&u).unwrap(), 1500);
    assert_eq!(b.put_page(&p0, &[6; 700], 1500).unwrap(), Write::Done);
    assert_eq!(b.usage(&u).unwrap(), 1400);

    // Deleting an object version removes its header and every page, once.
    assert!(b.delete_object(&object(c, 1, 1)).unwrap());
    assert!(!b.delete_object(&object(c, 1, 1)).unwrap());
    assert_eq!(b.get_page(&p0).unwrap(), None);
    assert_eq!(b.get_page(&p1).unwrap(), None);
    assert_eq!(b.get_header(&object(c, 1, 1)).unwrap(), None);
    assert_eq!(b.get_page(&page(c, 2, 1, 0)).unwrap(), Some(vec![5; 100]));
    assert_eq!(b.usage(&u).unwrap(), 100);

    // Collection keys per epoch.
    assert_eq!(
        b.put_collection_key(&c, 1, &[7; 80], NO_QUOTA).unwrap(),
        Write::Done
    );
    assert_eq!(
        b.put_collection_key(&c, 2, &[8; 80], NO_QUOTA).unwrap(),
        Write::Done
    );
    assert_eq!(b.get_collection_key(&c, 1).unwrap(), Some(vec![7; 80]));
    assert_eq!(b.get_collection_key(&c, 2).unwrap(), Some(vec![8; 80]));
    assert_eq!(b.get_collection_key(&c, 3).unwrap(), None);

    // The manifest head: compare-and-swap, versions only rise.
    assert_eq!(b.get_manifest(&c).unwrap(), None);
    assert_eq!(
        b.swap_manifest(&c, 0, 1, b"m1", NO_QUOTA).unwrap(),
        ManifestSwap::Cas(Cas::Done)
    );
    assert_eq!(
        b.swap_manifest(&c, 0, 1, b"again", NO_QUOTA).unwrap(),
        ManifestSwap::Cas(Cas::Conflict { current: 1 })
    );
    assert_eq!(
        b.swap_manifest(&c, 1, 1, b"same version", NO_QUOTA)
            .unwrap(),
        ManifestSwap::Cas(Cas::Conflict { current: 1 })
    );
    assert_eq!(
        b.swap_manifest(&c, 1, 5, b"m5", NO_QUOTA).unwrap(),
        ManifestSwap::Cas(Cas::Done)
    );
    assert_eq!(b.get_manifest(&c).unwrap(), Some((5, b"m5".to_vec())));
    let used = b.usage(&u).unwrap();
    assert_eq!(
        b.swap_manifest(&c, 5, 6, &[0; 100_000], used + 1000)
            .unwrap(),
        ManifestSwap::QuotaExceeded
    );
    assert_eq!(b.get_manifest(&c).unwrap(), Some((5, b"m5".to_vec())));

    // Rosters: insert-only per version, listed ascending.
    assert_eq!(
        b.insert_roster(&g, 2, b"r2", NO_QUOTA).unwrap(),
        InsertRoster::Done
    );
    assert_eq!(
        b.insert_roster(&g, 1, b"r1", NO_QUOTA).unwrap(),
        InsertRoster::Done
    );
    assert_eq!(
        b.insert_roster(&g, 1, b"other", NO_QUOTA).unwrap(),
        InsertRoster::Exists
    );
    assert_eq!(b.get_roster(&g, 1).unwrap(), Some(b"r1".to_vec()));
    assert_eq!(b.get_roster(&g, 3).unwrap(), None);
    assert_eq!(b.list_rosters(&g).unwrap(), vec![1, 2]);
    assert_eq!(b.list_rosters(&c).unwrap(), Vec::<u64>::new());
    let used = b.usage(&u).unwrap();
    assert_eq!(
        b.insert_roster(&g, 3, &[0; 50], used + 10).unwrap(),
        InsertRoster::QuotaExceeded
    );
    assert_eq!(b.list_rosters(&g).unwrap(), vec![1, 2]);
}

/// Who may reach what: derived from envelope keys (DataStore's module documentation).
/// A page every access test puts in its collections, to check `get_page_as` against
/// `can_reach`.
fn probe_page(collection: [u8; 16]) -> PageKey {
    PageKey {
        collection,
        object: [0xfe; 16],
        version: 1,
        index: 0,
    }
}

/// `can_reach`, checking that `get_page_as` agrees: the page when the user may reach the
/// collection, nothing otherwise (and nothing for a group).
fn reach<B: Backend>(b: &B, user: &[u8; 16], scope: &[u8; 16]) -> bool {
    let reaches = b.can_reach(user, scope).unwrap();
    let probe = probe_page(*scope);
    let read = b.get_page_as(user, &probe).unwrap();
    match b.scope(scope).unwrap() {
        Some((ScopeKind::Collection, _)) if reaches => {
            assert_eq!(read, b.get_page(&probe).unwrap());
        }
        _ => assert_eq!(read, None, "get_page_as gave a page can_reach refuses"),
    }
    reaches
}

pub fn access_contract<B: Backend>(b: &B) {
    let (owner, bob, carol, dave) = ([0x21; 16], [0x22; 16], [0x23; 16], [0x24; 16]);
    let c = [0xc2; 16];
    let c2 = [0xc3; 16];
    let g = [0x92; 16];
    assert_eq!(
        b.create_scope(&c, ScopeKind::Collection, &owner).unwrap(),
        Created::Created
    );
    assert_eq!(
        b.create_scope(&c2, ScopeKind::Collection, &owner).unwrap(),
        Created::Created
    );
    assert_eq!(
        b.create_scope(&g, ScopeKind::Group, &owner).unwrap(),
        Created::Created
    );
    for coll in [c, c2] {
        let probe = probe_page(coll);
        assert_eq!(b.put_page(&probe, b"probe", NO_QUOTA).unwrap(), Write::Done);
    }
    assert!(reach(b, &owner, &c));
    assert!(!reach(b, &bob, &c));
    assert!(!reach(b, &bob, &[0xee; 16]));
    assert_eq!(
        b.list_scopes(&owner).unwrap(),
        vec![
            (g, ScopeKind::Group),
            (c, ScopeKind::Collection),
            (c2, ScopeKind::Collection)
        ]
    );
    assert_eq!(b.list_scopes(&bob).unwrap(), vec![]);

    // A direct share of epoch 1 lets bob reach c.
    assert_eq!(
        b.put_envelope(&env(bob, owner, c, 1), b"e-bob-1", NO_QUOTA)
            .unwrap(),
        Write::Done
    );
    assert!(reach(b, &bob, &c));
    assert!(!reach(b, &carol, &c));
    assert_eq!(
        b.list_scopes(&bob).unwrap(),
        vec![(c, ScopeKind::Collection)]
    );
    assert_eq!(
        b.get_envelope(&env(bob, owner, c, 1)).unwrap(),
        Some(b"e-bob-1".to_vec())
    );
    assert_eq!(b.list_envelopes(&bob).unwrap(), vec![env(bob, owner, c, 1)]);
    assert_eq!(b.list_envelopes(&carol).unwrap(), vec![]);
    // An envelope whose owner field is not the collection's owner grants nothing.
    assert_eq!(
        b.put_envelope(&env(dave, bob, c, 1), b"forged", NO_QUOTA)
            .unwrap(),
        Write::Done
    );
    assert!(!reach(b, &dave, &c));
    assert!(b.delete_envelope(&env(dave, bob, c, 1)).unwrap());
    // An envelope for a missing scope is refused.
    assert_eq!(
        b.put_envelope(&env(bob, owner, [0xee; 16], 1), b"x", NO_QUOTA)
            .unwrap(),
        Write::NoScope
    );

    // Unshare = a new epoch that skips bob: bob loses c as soon as it is stored.
    assert_eq!(
        b.put_envelope(&env(carol, owner, c, 2), b"e-carol-2", NO_QUOTA)
            .unwrap(),
        Write::Done
    );
    assert!(!reach(b, &bob, &c));
    assert!(reach(b, &carol, &c));
    assert_eq!(b.list_scopes(&bob).unwrap(), vec![]);

    // Groups: membership by the group's current-epoch secret envelope.
    assert!(reach(b, &owner, &g));
    assert!(!reach(b, &bob, &g));
    assert_eq!(
        b.put_envelope(&env(bob, g, g, 1), b"gs-bob-1", NO_QUOTA)
            .unwrap(),
        Write::Done
    );
    assert_eq!(
        b.put_envelope(&env(dave, g, g, 1), b"gs-dave-1", NO_QUOTA)
            .unwrap(),
        Write::Done
    );
    assert!(reach(b, &bob, &g));
    assert!(reach(b, &dave, &g));
    // c2 shared with the group reaches its members.
    assert_eq!(
        b.put_envelope(&env(g, owner, c2, 1), b"c2-g-1", NO_QUOTA)
            .unwrap(),
        Write::Done
    );
    assert!(reach(b, &bob, &c2));
    assert!(reach(b, &dave, &c2));
    assert!(!reach(b, &carol, &c2));
    assert_eq!(
        b.list_scopes(&dave).unwrap(),
        vec![(g, ScopeKind::Group), (c2, ScopeKind::Collection)]
    );
    // Removing dave from the group: a new group epoch for bob only.
    assert_eq!(
        b.put_envelope(&env(bob, g, g, 2), b"gs-bob-2", NO_QUOTA)
            .unwrap(),
        Write::Done
    );
    assert!(!reach(b, &dave, &g));
    assert!(!reach(b, &dave, &c2));
    assert!(reach(b, &bob, &c2));
    assert_eq!(b.list_scopes(&dave).unwrap(), vec![]);
    // A group's owner reaches, and lists, what is shared with the group.
    let g2 = [0x93; 16];
    let c3 = [0xc9; 16];
    assert_eq!(
        b.create_scope(&g2, ScopeKind::Group, &carol).unwrap(),
        Created::Created
    );
    assert_eq!(
        b.create_scope(&c3, ScopeKind::Collection, &dave).unwrap(),
        Created::Created
    );
    assert_eq!(
        b.put_envelope(&env(g2, dave, c3, 1), b"c3-g2", NO_QUOTA)
            .unwrap(),
        Write::Done
    );
    assert!(reach(b, &carol, &c3));
    assert!(b
        .list_scopes(&carol)
        .unwrap()
        .contains(&(c3, ScopeKind::Collection)));
    assert!(b.delete_scope(&c3).unwrap());
    assert!(b.delete_scope(&g2).unwrap());
    // Envelope usage is charged to the target's owner (and the two probe pages).
    assert_eq!(b.usage(&owner).unwrap(), 7 + 9 + 8 + 9 + 6 + 8 + 2 * 5);
    assert_eq!(b.usage(&bob).unwrap(), 0);
}

/// The change feed: monotonic, complete, and filtered by access.
pub fn feed_contract<B: Backend>(b: &B) {
    let (owner, bob) = ([0x31; 16], [0x32; 16]);
    let c = [0xc4; 16];
    let secret = [0xc5; 16];
    let start_owner = b.changes(&owner, 0, 10_000).unwrap();
    assert!(start_owner.changes.is_empty());
    let cursor0 = b.changes(&bob, 0, 10_000).unwrap().next;

    assert_eq!(
        b.create_scope(&c, ScopeKind::Collection, &owner).unwrap(),
        Created::Created
    );
    assert_eq!(
        b.create_scope(&secret, ScopeKind::Collection, &owner)
            .unwrap(),
        Created::Created
    );
    assert_eq!(
        b.put_collection_key(&c, 1, b"k1", NO_QUOTA).unwrap(),
        Write::Done
    );
    assert_eq!(
        b.swap_manifest(&c, 0, 1, b"m1", NO_QUOTA).unwrap(),
        ManifestSwap::Cas(Cas::Done)
    );
    assert_eq!(
        b.swap_manifest(&secret, 0, 1, b"s1", NO_QUOTA).unwrap(),
        ManifestSwap::Cas(Cas::Done)
    );
    // Pages are not in the feed (the manifest that references them is).
    assert_eq!(
        b.put_page(&page(c, 1, 1, 0), b"p", NO_QUOTA).unwrap(),
        Write::Done
    );

    let all = b.changes(&owner, 0, 10_000).unwrap();
    let kinds: Vec<ChangeKind> = all.changes.iter().map(|ch| ch.kind).collect();
    assert_eq!(
        kinds,
        vec![
            ChangeKind::ScopeCreated {
                scope: c,
                kind: ScopeKind::Collection
            },
            ChangeKind::ScopeCreated {
                scope: secret,
                kind: ScopeKind::Collection
            },
            ChangeKind::CollectionKey {
                collection: c,
                epoch: 1
            },
            ChangeKind::Manifest {
                collection: c,
                version: 1
            },
            ChangeKind::Manifest {
                collection: secret,
                version: 1
            },
        ]
    );
    assert!(all.changes.windows(2).all(|w| w[0].seq < w[1].seq));
    assert!(!all.more);
    assert_eq!(all.next, all.changes.last().unwrap().seq);
    // Bob sees nothing of the owner's yet.
    let bob_feed = b.changes(&bob, cursor0, 10_000).unwrap();
    assert!(bob_feed.changes.is_empty());
    assert!(bob_feed.next >= cursor0);

    // Limits and cursors: page through one change at a time and get the same list.
    let mut cursor = 0;
    let mut paged = Vec::new();
    loop {
        let page = b.changes(&owner, cursor, 1).unwrap();
        assert!(page.changes.len() <= 1);
        paged.extend(page.changes.iter().copied());
        assert!(page.next >= cursor);
        cursor = page.next;
        if !page.more {
            break;
        }
    }
    assert_eq!(paged, all.changes);
    assert!(b.changes(&owner, all.next, 100).unwrap().changes.is_empty());

    // Sharing c with bob: bob sees the envelope and, from now on, c's changes; never
    // `secret`'s.
    assert_eq!(
        b.put_envelope(&env(bob, owner, c, 1), b"e", NO_QUOTA)
            .unwrap(),
        Write::Done
    );
    assert_eq!(
        b.swap_manifest(&c, 1, 2, b"m2", NO_QUOTA).unwrap(),
        ManifestSwap::Cas(Cas::Done)
    );
    assert_eq!(
        b.swap_manifest(&secret, 1, 2, b"s2", NO_QUOTA).unwrap(),
        ManifestSwap::Cas(Cas::Done)
    );
    let bob_all = b.changes(&bob, cursor0, 10_000).unwrap();
    assert!(bob_all.changes.iter().all(|ch| ch.kind.scope() == c));
    assert!(bob_all
        .changes
        .iter()
        .any(|ch| ch.kind == ChangeKind::Envelope(env(bob, owner, c, 1))));
    assert!(bob_all.changes.iter().any(|ch| ch.kind
        == ChangeKind::Manifest {
            collection: c,
            version: 2
        }));
    // Only what changed since the owner's last cursor.
    let since = b.changes(&owner, all.next, 10_000).unwrap();
    assert_eq!(since.changes.len(), 3);
    assert!(since.changes.iter().all(|ch| ch.seq > all.next));
}

/// Deleting scopes and accounts removes everything under them and gives the bytes back.
pub fn deletion_contract<B: Backend>(b: &B) {
    let (owner, bob) = ([0x41; 16], [0x42; 16]);
    let (c, g) = ([0xc6; 16], [0x96; 16]);
    let before = b.changes(&owner, 0, 10_000).unwrap().next;
    assert_eq!(
        b.create_scope(&c, ScopeKind::Collection, &owner).unwrap(),
        Created::Created
    );
    assert_eq!(
        b.create_scope(&g, ScopeKind::Group, &owner).unwrap(),
        Created::Created
    );
    assert_eq!(
        b.put_page(&page(c, 1, 1, 0), &[1; 300], NO_QUOTA).unwrap(),
        Write::Done
    );
    assert_eq!(
        b.put_header(&object(c, 1, 1), &[2; 30], NO_QUOTA).unwrap(),
        Write::Done
    );
    assert_eq!(
        b.put_collection_key(&c, 1, &[3; 80], NO_QUOTA).unwrap(),
        Write::Done
    );
    assert_eq!(
        b.swap_manifest(&c, 0, 1, &[4; 40], NO_QUOTA).unwrap(),
        ManifestSwap::Cas(Cas::Done)
    );
    assert_eq!(
        b.put_envelope(&env(bob, owner, c, 1), &[5; 50], NO_QUOTA)
            .unwrap(),
        Write::Done
    );
    assert_eq!(
        b.insert_roster(&g, 1, &[6; 60], NO_QUOTA).unwrap(),
        InsertRoster::Done
    );
    assert!(b.usage(&owner).unwrap() >= 300 + 30 + 80 + 40 + 50 + 60);
    assert!(b.can_reach(&bob, &c).unwrap());

    assert!(b.delete_scope(&c).unwrap());
    assert!(!b.delete_scope(&c).unwrap());
    assert_eq!(b.scope(&c).unwrap(), None);
    assert_eq!(b.get_page(&page(c, 1, 1, 0)).unwrap(), None);
    assert_eq!(b.get_header(&object(c, 1, 1)).unwrap(), None);
    assert_eq!(b.get_collection_key(&c, 1).unwrap(), None);
    assert_eq!(b.get_manifest(&c).unwrap(), None);
    assert_eq!(b.get_envelope(&env(bob, owner, c, 1)).unwrap(), None);
    assert!(b.list_envelopes(&bob).unwrap().is_empty());
    assert!(!b.can_reach(&bob, &c).unwrap());
    // Only the group's roster is left on the owner's account.
    assert!(b.usage(&owner).unwrap() >= 60);
    assert!(b.usage(&owner).unwrap() < 300);
    let feed = b.changes(&owner, before, 10_000).unwrap();
    assert!(feed.changes.iter().any(|ch| ch.kind
        == ChangeKind::ScopeDeleted {
            scope: c,
            kind: ScopeKind::Collection
        }));
    // The id can be created again, by anyone; the changes of the deleted scope stay hidden
    // from the new owner.
    let bob_before = b.changes(&bob, 0, 10_000).unwrap();
    assert_eq!(
        b.create_scope(&c, ScopeKind::Collection, &bob).unwrap(),
        Created::Created
    );
    let bob_after = b.changes(&bob, 0, 10_000).unwrap();
    assert_eq!(
        bob_after.changes.len(),
        bob_before.changes.len() + 1,
        "{bob_after:?}"
    );
    assert_eq!(
        bob_after.changes.last().unwrap().kind,
        ChangeKind::ScopeCreated {
            scope: c,
            kind: ScopeKind::Collection
        }
    );
    assert!(b.delete_scope(&c).unwrap());

    // Deleting an account deletes the scopes it owns.
    let (v, k, i, _) = account(owner, 9);
    assert!(b
        .create_account(&NewAccount {
            user: owner,
            name: "deleted-owner",
            verifier: &v,
            keyring: &k,
            identity: &i,
        })
        .unwrap());
    assert!(b.delete_account(&owner).unwrap());
    assert_eq!(b.scope(&g).unwrap(), None);
    assert_eq!(b.get_roster(&g, 1).unwrap(), None);
    assert_eq!(b.usage(&owner).unwrap(), 0);
    assert!(b.list_scopes(&owner).unwrap().is_empty());
}

/// The audit log (docs/spec/audit.md §4): appends from 8 threads form one gapless chain that
/// verifies; `events_of` returns exactly the entries naming the account, in order, paged;
/// entries keep every field.
pub fn audit_contract<B: Backend>(b: &B) {
    use vault_server::audit::{self, Details, Entry, Event, EventKind, MfaMethod};
    let before = audit::verify_chain(b).unwrap();
    assert_eq!(before.first_broken, None);
    let base = before.entries;
    let account = |t: u8| [0xd0 + t; 16];
    std::thread::scope(|s| {
        for t in 0..8u8 {
            s.spawn(move || {
                for i in 0..25u64 {
                    let kind = if i % 2 == 0 {
                        EventKind::LoginSucceeded
                    } else {
                        EventKind::LoginFailed
                    };
                    let mut event = Event::new(kind)
                        .with_address(Some(std::net::IpAddr::from([192, 0, 2, t])))
                        .with_details(Details {
                            count: Some(i),
                            ..Details::default()
                        });
                    // Every fifth is an unknown-name failure: no account.
                    if i % 5 != 4 {
                        event = event.with_account(account(t));
                    }
                    b.append(10_000 + i, &event).unwrap();
                }
            });
        }
    });
    let report = audit::verify_chain(b).unwrap();
    assert_eq!(report.first_broken, None);
    assert_eq!(report.entries, base + 200);
    let (head_seq, head_hash) = report.head.unwrap();
    assert_eq!(head_seq, base + 200);

    // One chain: keys 1..=N in order, each record's prev the hash of the one before.
    let mut prev = audit::GENESIS_PREV;
    let mut all = Vec::new();
    let mut after = 0;
    loop {
        let page = b.scan(after, 64).unwrap();
        let Some(&(last, _)) = page.last() else { break };
        all.extend(page);
        after = last;
    }
    assert_eq!(all.len() as u64, base + 200);
    for (i, (seq, record)) in all.iter().enumerate() {
        assert_eq!(*seq, i as u64 + 1);
        let e = Entry::decode(record).unwrap();
        assert_eq!((e.seq, e.prev), (*seq, prev));
        assert!(audit::record_hash_matches(record));
        prev = e.hash;
    }
    assert_eq!(prev, head_hash);
    assert!(b.scan(head_seq, 10).unwrap().is_empty());

    // events_of: exactly the entries naming the account, in order of seq, paged.
    let d3 = account(3);
    let mine = b.events_of(&d3, 0, 1000).unwrap();
    assert_eq!(mine.len(), 20, "25 appends, 5 of them without the account");
    assert!(mine.windows(2).all(|w| w[0].seq < w[1].seq));
    assert!(mine.iter().all(|e| e.event.account == Some(d3)));
    let counts: Vec<u64> = mine.iter().filter_map(|e| e.event.details.count).collect();
    assert_eq!(counts, (0..25).filter(|i| i % 5 != 4).collect::<Vec<_>>());
    assert!(mine
        .iter()
        .all(|e| e.event.address == Some(std::net::IpAddr::from([192, 0, 2, 3]))));
    let first = b.events_of(&d3, 0, 7).unwrap();
    assert_eq!(first[..], mine[..7]);
    let rest = b.events_of(&d3, first[6].seq, 1000).unwrap();
    assert_eq!(rest[..], mine[7..]);
    assert!(b.events_of(&d3, mine[19].seq, 10).unwrap().is_empty());
    assert!(b.events_of(&[0xee; 16], 0, 10).unwrap().is_empty());

    // An append links to the head and keeps every field.
    let full = Event::new(EventKind::MfaEnrolled)
        .with_account([0xee; 16])
        .with_address(Some("2001:db8::7".parse().unwrap()))
        .with_details(Details {
            collection: Some([1; 16]),
            group: Some([2; 16]),
            object: Some([3; 16]),
            version: Some(u64::MAX),
            epoch: Some(u32::MAX),
            recipient: Some([6; 16]),
            owner: Some([7; 16]),
            target: Some([8; 16]),
            device: Some([9; 16]),
            method: Some(MfaMethod::Totp),
            count: Some(0),
            digest: Some([0xdd; 32]),
        });
    let entry = b.append(u64::MAX, &full).unwrap();
    assert_eq!(
        (entry.seq, entry.prev, entry.time),
        (head_seq + 1, head_hash, u64::MAX)
    );
    assert_eq!(entry.event, full);
    assert_eq!(b.events_of(&[0xee; 16], 0, 10).unwrap(), vec![entry]);
    let report = audit::verify_chain(b).unwrap();
    assert_eq!(report.head, Some((entry.seq, entry.hash)));
    assert_eq!(report.first_broken, None);
}

/// A change made behind the server's back to a stored audit record (a test's raw access to
/// the store: sled's trees, PostgreSQL's tables).
pub enum Tamper {
    /// Store these bytes as the record of this `seq`.
    Put(u64, Vec<u8>),
    /// Remove the record of this `seq`.
    Remove(u64),
}

/// What [`audit_tamper_contract`] needs of a backend's test harness.
pub trait AuditTamperer {
    /// The backend.
    type B: Backend;
    /// A fresh, empty backend.
    fn fresh(&mut self) -> Self::B;
    /// Applies `edits` to `b`'s stored audit records (closing and reopening it if the store
    /// needs that) and returns the backend to verify.
    fn tamper(&mut self, b: Self::B, edits: &[Tamper]) -> Self::B;
}

/// `verify_chain` finds a changed, a removed, a reordered, a re-hashed and a malformed
/// entry, each at the first broken seq, and passes the untouched chain.
pub fn audit_tamper_contract<T: AuditTamperer>(t: &mut T) {
    use vault_server::audit::{self, AuditStore, BrokenReason, Entry, Event, EventKind};
    let records = |b: &T::B| -> Vec<Vec<u8>> {
        b.scan(0, 100)
            .unwrap()
            .into_iter()
            .map(|(_, r)| r)
            .collect()
    };
    // (what, the seq where the chain breaks, the edit of the six stored records)
    type Case = (&'static str, u64, fn(&[Vec<u8>]) -> Vec<Tamper>);
    let cases: Vec<Case> = vec![
        ("a byte of entry 3 changed", 3, |r| {
            let mut x = r[2].clone();
            x[13] ^= 1; // in `time`
            vec![Tamper::Put(3, x)]
        }),
        ("entry 3 removed", 3, |_| vec![Tamper::Remove(3)]),
        ("entries 3 and 4 swapped", 3, |r| {
            vec![Tamper::Put(3, r[3].clone()), Tamper::Put(4, r[2].clone())]
        }),
        ("entry 3 changed and re-hashed", 4, |r| {
            let e = Entry::decode(&r[2]).unwrap();
            let forged = audit::encode_record(e.seq, e.time + 1, &e.prev, &e.event);
            vec![Tamper::Put(3, forged)]
        }),
        ("entry 5 malformed", 5, |r| {
            let mut x = r[4].clone();
            x[0] = b'X'; // the magic
            vec![Tamper::Put(5, x)]
        }),
        ("entry 1 removed", 1, |_| vec![Tamper::Remove(1)]),
    ];
    for (what, broken_at, edit) in cases {
        let b = t.fresh();
        for i in 0..6u64 {
            let e = Event::new(EventKind::LoginSucceeded).with_account([0x70 + i as u8; 16]);
            b.append(1_000 + i, &e).unwrap();
        }
        let intact = audit::verify_chain(&b).unwrap();
        assert_eq!(intact.first_broken, None, "{what}");
        assert_eq!(intact.entries, 6);
        let stored = records(&b);
        let b = t.tamper(b, &edit(&stored));
        let report = audit::verify_chain(&b).unwrap();
        let broken = report
            .first_broken
            .unwrap_or_else(|| panic!("{what}: not detected"));
        assert_eq!(broken.seq, broken_at, "{what}: {:?}", broken.reason);
        let want_reason = match what {
            "a byte of entry 3 changed" => matches!(broken.reason, BrokenReason::HashMismatch),
            "entry 3 removed" | "entry 1 removed" => {
                matches!(broken.reason, BrokenReason::Missing)
            }
            "entries 3 and 4 swapped" => {
                matches!(broken.reason, BrokenReason::WrongSeq { found: 4 })
            }
            "entry 3 changed and re-hashed" => {
                matches!(broken.reason, BrokenReason::PrevMismatch)
            }
            _ => matches!(broken.reason, BrokenReason::Malformed(_)),
        };
        assert!(want_reason, "{what}: {:?}", broken.reason);
        // The head is the last entry before the break.
        let head = report.head.map(|(seq, _)| seq);
        assert_eq!(head, broken_at.checked_sub(1).filter(|s| *s > 0), "{what}");
        let removed = u64::from(what.contains("removed"));
        assert_eq!(report.entries, 6 - removed, "{what}");
        drop(b);
    }
}
