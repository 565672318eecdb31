//! The sled backend's in-memory session mirror: `authenticate_without_io` (what the `Auth`
//! extractor tries first) must answer exactly as `authenticate` (which reads the `sessions`
//! tree) after every way a session ends — logout, revoke-all, account deletion, expiry and
//! sweep — across a reopen of the data directory, and under concurrent writers.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod contract;

use contract::{register, ALICE, BOB};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use vault_server::auth::{SessionStore, SessionToken, UserId};
use vault_server::store::{AccountStore, SledBackend};

/// The answer for `token` at `now`, after checking that the fast path gives one and that it
/// is the answer of `authenticate` (asked second: it removes an expired record).
fn answer(s: &SledBackend, token: &SessionToken, now: u64) -> Option<UserId> {
    let fast = s
        .authenticate_without_io(token, now)
        .expect("the sled backend answers from memory");
    let slow = s.authenticate(token, now).unwrap();
    assert_eq!(fast, slow, "the mirror disagrees with the sessions tree");
    // And again: `authenticate` may have removed an expired record.
    assert_eq!(s.authenticate_without_io(token, now), Some(slow));
    slow
}

fn rng(seed: u8) -> ChaCha20Rng {
    ChaCha20Rng::from_seed([seed; 32])
}

#[test]
fn an_unknown_token_is_refused_from_memory() {
    let dir = tempfile::tempdir().unwrap();
    let s = SledBackend::open(dir.path()).unwrap();
    let stranger = SessionToken::generate(&mut rng(1));
    assert_eq!(answer(&s, &stranger, 1_000), None);
    let a = s.issue(&mut rng(2), ALICE, 1_000, 100).unwrap();
    assert_eq!(answer(&s, &a, 1_000), Some(ALICE));
    assert_eq!(answer(&s, &stranger, 1_000), None);
}

#[test]
fn the_mirror_follows_logout() {
    let dir = tempfile::tempdir().unwrap();
    let s = SledBackend::open(dir.path()).unwrap();
    let mut rng = rng(3);
    let a = s.issue(&mut rng, ALICE, 1_000, 100).unwrap();
    let a2 = s.issue(&mut rng, ALICE, 1_000, 100).unwrap();
    assert_eq!(answer(&s, &a, 1_050), Some(ALICE));
    assert!(s.logout(&a).unwrap());
    assert_eq!(answer(&s, &a, 1_050), None);
    assert_eq!(answer(&s, &a2, 1_050), Some(ALICE));
    assert!(!s.logout(&a).unwrap());
    assert_eq!(answer(&s, &a, 1_050), None);
}

#[test]
fn the_mirror_follows_revoke_all() {
    let dir = tempfile::tempdir().unwrap();
    let s = SledBackend::open(dir.path()).unwrap();
    let mut rng = rng(4);
    let a = s.issue(&mut rng, ALICE, 1_000, 100).unwrap();
    let a2 = s.issue(&mut rng, ALICE, 1_000, 100).unwrap();
    let b = s.issue(&mut rng, BOB, 1_000, 100).unwrap();
    assert_eq!(s.revoke_all(&ALICE).unwrap(), 2);
    assert_eq!(answer(&s, &a, 1_050), None);
    assert_eq!(answer(&s, &a2, 1_050), None);
    assert_eq!(answer(&s, &b, 1_050), Some(BOB));
    // A session issued after the revocation is valid.
    let a3 = s.issue(&mut rng, ALICE, 1_050, 100).unwrap();
    assert_eq!(answer(&s, &a3, 1_060), Some(ALICE));
}

#[test]
fn the_mirror_follows_account_deletion() {
    let dir = tempfile::tempdir().unwrap();
    let s = SledBackend::open(dir.path()).unwrap();
    let mut rng = rng(5);
    assert!(register(&s, ALICE, 1));
    assert!(register(&s, BOB, 2));
    let a = s.issue(&mut rng, ALICE, 1_000, 100).unwrap();
    let a2 = s.issue(&mut rng, ALICE, 1_000, 100).unwrap();
    let b = s.issue(&mut rng, BOB, 1_000, 100).unwrap();
    assert_eq!(answer(&s, &a, 1_050), Some(ALICE));
    assert!(s.delete_account(&ALICE).unwrap());
    assert_eq!(answer(&s, &a, 1_050), None);
    assert_eq!(answer(&s, &a2, 1_050), None);
    assert_eq!(answer(&s, &b, 1_050), Some(BOB));
    // Deleting an unknown account changes no session.
    assert!(!s.delete_account(&ALICE).unwrap());
    assert_eq!(answer(&s, &b, 1_050), Some(BOB));
}

#[test]
fn the_mirror_follows_expiry_and_sweep() {
    let dir = tempfile::tempdir().unwrap();
    let s = SledBackend::open(dir.path()).unwrap();
    let mut rng = rng(6);
    let short = s.issue(&mut rng, ALICE, 1_000, 10).unwrap();
    let long = s.issue(&mut rng, ALICE, 1_000, 100).unwrap();
    let swept = s.issue(&mut rng, BOB, 1_000, 10).unwrap();
    // Valid until `expires` (exclusive), refused from then on, swept or not.
    assert_eq!(answer(&s, &short, 1_009), Some(ALICE));
    assert_eq!(
        s.authenticate_without_io(&swept, 1_010),
        Some(None),
        "an expired session is refused from memory"
    );
    assert!(s.get(&swept.hash()).unwrap().is_some(), "not swept yet");
    assert_eq!(answer(&s, &short, 1_010), None);
    assert_eq!(
        s.get(&short.hash()).unwrap(),
        None,
        "authenticate removed it"
    );
    // A clock that goes back does not revive a removed session.
    assert_eq!(answer(&s, &short, 1_005), None);
    assert_eq!(s.sweep(1_010).unwrap(), 1);
    assert_eq!(answer(&s, &swept, 1_005), None);
    assert_eq!(answer(&s, &long, 1_050), Some(ALICE));
    assert_eq!(answer(&s, &long, 1_100), None);
}

#[test]
fn the_mirror_is_reloaded_on_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = rng(7);
    let (kept, ended, expired, revoked) = {
        let s = SledBackend::open(dir.path()).unwrap();
        assert!(register(&s, ALICE, 1));
        let kept = s.issue(&mut rng, ALICE, 1_000, 1_000).unwrap();
        let ended = s.issue(&mut rng, ALICE, 1_000, 1_000).unwrap();
        let expired = s.issue(&mut rng, ALICE, 1_000, 10).unwrap();
        let revoked = s.issue(&mut rng, BOB, 1_000, 1_000).unwrap();
        assert!(s.logout(&ended).unwrap());
        assert_eq!(s.revoke_all(&BOB).unwrap(), 1);
        (kept, ended, expired, revoked)
    };
    let s = SledBackend::open(dir.path()).unwrap();
    assert_eq!(answer(&s, &kept, 1_500), Some(ALICE));
    assert_eq!(answer(&s, &ended, 1_500), None);
    assert_eq!(answer(&s, &revoked, 1_500), None);
    assert!(s.get(&expired.hash()).unwrap().is_some());
    assert_eq!(answer(&s, &expired, 1_500), None);
    // Sessions issued before the reopen end like any other.
    assert!(s.delete_account(&ALICE).unwrap());
    assert_eq!(answer(&s, &kept, 1_500), None);
    drop(s);
    let s = SledBackend::open(dir.path()).unwrap();
    assert_eq!(answer(&s, &kept, 1_500), None);
}

#[test]
fn logins_during_a_revoke_all_leave_the_mirror_exact() {
    let dir = tempfile::tempdir().unwrap();
    let s = SledBackend::open(dir.path()).unwrap();
    let tokens: Vec<SessionToken> = std::thread::scope(|scope| {
        let issuers: Vec<_> = (0..4u8)
            .map(|t| {
                let s = &s;
                scope.spawn(move || {
                    let mut rng = rng(10 + t);
                    (0..25)
                        .map(|_| s.issue(&mut rng, ALICE, 1_000, 100).unwrap())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let revoker = scope.spawn(|| {
            for _ in 0..10 {
                s.revoke_all(&ALICE).unwrap();
                s.sweep(1_000).unwrap();
            }
        });
        revoker.join().unwrap();
        issuers
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    assert_eq!(tokens.len(), 100);
    let live = tokens
        .iter()
        .filter(|t| answer(&s, t, 1_050).is_some())
        .count();
    assert_eq!(s.revoke_all(&ALICE).unwrap(), live);
    for t in &tokens {
        assert_eq!(answer(&s, t, 1_050), None);
    }
}
