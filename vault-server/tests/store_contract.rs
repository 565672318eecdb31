//! The storage contract (vault_server::store): one suite, run unchanged against every
//! backend — the sled backend now; PostgreSQL joins it with the HTTP API.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use vault_server::auth::{Session, SessionStore, TokenHash};
use vault_server::store::{AccountStore, BackendError, Cas, NewAccount, SledBackend};

const ALICE: [u8; 16] = [0xa1; 16];
const BOB: [u8; 16] = [0xb0; 16];

fn account(user: [u8; 16], tag: u8) -> (Vec<u8>, Vec<u8>, Vec<u8>, [u8; 16]) {
    (vec![tag; 58], vec![tag; 1600], vec![tag; 700], user)
}

fn register<S: AccountStore>(s: &S, user: [u8; 16], tag: u8) -> bool {
    let (v, k, i, user) = account(user, tag);
    s.create_account(&NewAccount {
        user,
        verifier: &v,
        keyring: &k,
        identity: &i,
    })
    .unwrap()
}

/// The account half of the contract.
fn accounts_contract<S: AccountStore>(s: &S) {
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
fn sessions_contract<S: SessionStore<Error = BackendError>>(s: &S) {
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

#[test]
fn sled_backend_keeps_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let s = SledBackend::open(dir.path()).unwrap();
    accounts_contract(&s);
    sessions_contract(&s);
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
