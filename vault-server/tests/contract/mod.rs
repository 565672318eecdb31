//! The storage contract (vault_server::store), shared by the suites of every backend:
//! `tests/store_contract.rs` (sled) and `tests/store_contract_pg.rs` (PostgreSQL) call the
//! same functions, so each backend keeps exactly the same promises.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use vault_server::auth::{Session, SessionStore, TokenHash};
use vault_server::store::{AccountStore, Backend, BackendError, Cas, NewAccount};

/// Every part of the contract, on a fresh (empty) backend.
pub fn all<B: Backend>(b: &B) {
    accounts_contract(b);
    names_contract(b);
    sessions_contract(b);
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
