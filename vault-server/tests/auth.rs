//! The login and session layer as a login handler and an attacker see it: verifiers and
//! their stored bytes, calibration, sessions, backoff (docs/spec/login.md).
//!
//! Verifiers here are made with a low iteration count through the explicit test-only
//! policy (`danger-insecure-test-policy`), so hundreds of verifications run in well under a
//! second. The floor a server gets is unchanged: `production_policies_enforce_the_floor`
//! shows that no other constructor goes below it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use rand_core::OsRng;
use vault_server::auth::verifier::{
    measure_rate, DEFAULT_TARGET, ENCODED_LEN, MAX_ITERATIONS, MIN_ITERATIONS,
};
use vault_server::auth::{
    check_login, dummy_verify, Backoff, BackoffPolicy, LoginCheck, LoginSecret, RetryAfter,
    Schedule, Scheme, Session, SessionStore, SessionTable, SessionToken, TokenHash, UserId,
    Verifier, VerifierError, VerifierPolicy, DEFAULT_SESSION_TTL,
};

const TEST_ITERATIONS: u32 = 1_000;
const T0: u64 = 1_700_000_000;

fn rng(seed: u64) -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(seed)
}

fn secret(seed: u8) -> LoginSecret {
    let mut bytes = [0u8; 32];
    for (i, b) in bytes.iter_mut().enumerate() {
        *b = seed.wrapping_mul(31).wrapping_add(i as u8) | 1;
    }
    LoginSecret::from_bytes(bytes).unwrap()
}

fn test_policy() -> VerifierPolicy {
    VerifierPolicy::insecure_test_policy(TEST_ITERATIONS)
}

fn ip(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(a, b, c, d))
}

// ---------------------------------------------------------------------------------------
// Verifiers
// ---------------------------------------------------------------------------------------

#[test]
fn right_secret_verifies_and_wrong_ones_do_not() {
    let policy = test_policy();
    let right = secret(1);
    let verifier = Verifier::create(&mut rng(1), &right, &policy);
    assert!(verifier.verify(&right));
    assert!(verifier.verify(&secret(1)));
    assert!(!verifier.verify(&secret(2)));

    // Every single-bit change of the secret is refused.
    let mut bytes = [0u8; 32];
    for (i, b) in bytes.iter_mut().enumerate() {
        *b = 31u8.wrapping_add(i as u8) | 1;
    }
    for bit in 0..256 {
        let mut flipped = bytes;
        flipped[bit / 8] ^= 1 << (bit % 8);
        if let Some(wrong) = LoginSecret::from_bytes(flipped) {
            assert!(!verifier.verify(&wrong), "bit {bit}");
        }
    }

    // Same secret, two registrations: different salts, different records, both verify.
    let again = Verifier::create(&mut rng(2), &right, &policy);
    assert_ne!(again.to_bytes(), verifier.to_bytes());
    assert!(again.verify(&right));
}

#[test]
fn the_client_login_secret_verifies_on_the_server() {
    use vault_keyring::danger::{insecure_test_params, insecure_test_policy};
    use vault_keyring::{Password, PasswordKeys};

    let params = insecure_test_params(&mut rng(3), 10);
    let client_policy = insecure_test_policy(10);
    let keys = PasswordKeys::derive_with_policy(
        &Password::from("hunter2 but longer"),
        &params,
        &client_policy,
    )
    .unwrap();
    let sent = LoginSecret::from_slice(keys.login_secret().expose_bytes()).unwrap();
    let verifier = Verifier::create(&mut rng(4), &sent, &test_policy());

    let again = PasswordKeys::derive_with_policy(
        &Password::from("hunter2 but longer"),
        &params,
        &client_policy,
    )
    .unwrap();
    let wrong = PasswordKeys::derive_with_policy(
        &Password::from("hunter3 but longer"),
        &params,
        &client_policy,
    )
    .unwrap();
    let again = LoginSecret::from_slice(again.login_secret().expose_bytes()).unwrap();
    let wrong = LoginSecret::from_slice(wrong.login_secret().expose_bytes()).unwrap();
    assert!(verifier.verify(&again));
    assert!(!verifier.verify(&wrong));
}

#[test]
fn every_bit_flip_of_a_stored_verifier_fails_to_decode_or_to_verify() {
    let right = secret(5);
    let stored = Verifier::create(&mut rng(5), &right, &test_policy()).to_bytes();
    assert_eq!(stored.len(), ENCODED_LEN);
    assert!(Verifier::from_bytes(&stored).unwrap().verify(&right));

    let mut decoded_and_refused = 0;
    for bit in 0..stored.len() * 8 {
        let mut bytes = stored.clone();
        bytes[bit / 8] ^= 1 << (bit % 8);
        match Verifier::from_bytes(&bytes) {
            Err(_) => {}
            Ok(v) => {
                assert!(!v.verify(&right), "bit {bit} still verifies");
                decoded_and_refused += 1;
            }
        }
    }
    // Magic, version and scheme flips (48 bits) and the high iteration bits never decode;
    // salt and hash flips (384 bits) and the low iteration bits decode and are refused.
    assert!(decoded_and_refused >= 384, "{decoded_and_refused}");
}

#[test]
fn decoding_is_strict() {
    let stored = Verifier::create(&mut rng(6), &secret(6), &test_policy()).to_bytes();
    let decoded = Verifier::from_bytes(&stored).unwrap();
    assert_eq!(decoded.to_bytes(), stored);
    assert_eq!(decoded.scheme(), Scheme::Pbkdf2Sha256);
    assert_eq!(decoded.iterations(), Some(TEST_ITERATIONS));

    // Layout: magic, version, scheme, count.
    assert_eq!(&stored[..6], b"VLGV\x01\x01");
    assert_eq!(stored[6..10], TEST_ITERATIONS.to_be_bytes());

    for len in 0..stored.len() {
        assert!(
            Verifier::from_bytes(&stored[..len]).is_err(),
            "truncated to {len}"
        );
    }
    for extra in [&[0u8][..], &[0, 0, 0, 0], &stored[..]] {
        let mut long = stored.clone();
        long.extend_from_slice(extra);
        assert_eq!(
            Verifier::from_bytes(&long).unwrap_err(),
            VerifierError::Malformed
        );
    }

    let with = |offset: usize, value: &[u8]| {
        let mut b = stored.clone();
        b[offset..offset + value.len()].copy_from_slice(value);
        Verifier::from_bytes(&b)
    };
    assert_eq!(with(0, b"VLGW").unwrap_err(), VerifierError::Malformed);
    for version in [0u8, 2, 255] {
        assert_eq!(with(4, &[version]).unwrap_err(), VerifierError::Unsupported);
    }
    for scheme in [0u8, 2, 3, 255] {
        assert_eq!(with(5, &[scheme]).unwrap_err(), VerifierError::Unsupported);
        assert_eq!(Scheme::from_id(scheme), None);
    }
    assert_eq!(Scheme::from_id(1), Some(Scheme::Pbkdf2Sha256));
    assert_eq!(
        with(6, &0u32.to_be_bytes()).unwrap_err(),
        VerifierError::Malformed
    );
    assert_eq!(
        with(6, &(MAX_ITERATIONS + 1).to_be_bytes()).unwrap_err(),
        VerifierError::Malformed
    );
    assert_eq!(
        with(6, &u32::MAX.to_be_bytes()).unwrap_err(),
        VerifierError::Malformed
    );
    assert_eq!(with(6, &1u32.to_be_bytes()).unwrap().iterations(), Some(1));
}

#[test]
fn login_secrets_are_strict_and_redacted() {
    assert!(LoginSecret::from_bytes([0; 32]).is_none());
    assert!(LoginSecret::from_slice(&[0; 32]).is_none());
    assert!(LoginSecret::from_slice(&[7; 31]).is_none());
    assert!(LoginSecret::from_slice(&[7; 33]).is_none());
    assert!(LoginSecret::from_slice(&[]).is_none());
    let s = LoginSecret::from_slice(&[0xab; 32]).unwrap();
    assert_eq!(format!("{s:?}"), "LoginSecret([redacted])");

    let v = Verifier::create(&mut rng(7), &s, &test_policy());
    // Debug shows the parameters, not the salt or the hash.
    assert_eq!(
        format!("{v:?}"),
        "Verifier { scheme: Pbkdf2Sha256, iterations: Some(1000), .. }"
    );
    let bytes = v.to_bytes();
    assert!(
        !bytes.windows(32).any(|w| w == [0xab; 32]),
        "secret stored in clear"
    );
}

#[test]
fn production_policies_enforce_the_floor_and_the_cap() {
    assert_eq!(VerifierPolicy::default().iterations(), MIN_ITERATIONS);
    assert_eq!(
        VerifierPolicy::with_iterations(MIN_ITERATIONS - 1),
        Err(VerifierError::IterationsOutOfRange)
    );
    assert_eq!(
        VerifierPolicy::with_iterations(MAX_ITERATIONS + 1),
        Err(VerifierError::IterationsOutOfRange)
    );
    assert_eq!(
        VerifierPolicy::with_iterations(MIN_ITERATIONS)
            .unwrap()
            .iterations(),
        MIN_ITERATIONS
    );
    assert_eq!(
        VerifierPolicy::from_rate(1.0, DEFAULT_TARGET).iterations(),
        MIN_ITERATIONS
    );
    assert_eq!(
        VerifierPolicy::from_rate(1e15, DEFAULT_TARGET).iterations(),
        MAX_ITERATIONS
    );
    // The test policy goes below the floor, which is why it is feature-gated.
    assert_eq!(VerifierPolicy::insecure_test_policy(0).iterations(), 1);
    assert_eq!(
        VerifierPolicy::insecure_test_policy(u32::MAX).iterations(),
        MAX_ITERATIONS
    );
}

#[test]
fn calibration_respects_floor_cap_and_is_monotonic() {
    let tiny = VerifierPolicy::calibrate(Duration::from_micros(1));
    assert_eq!(tiny.iterations(), MIN_ITERATIONS);
    let huge = VerifierPolicy::calibrate(Duration::from_secs(3_600));
    assert_eq!(huge.iterations(), MAX_ITERATIONS);

    let rate = measure_rate();
    assert!(rate.is_finite() && rate > 0.0, "{rate}");
    let mut last = 0;
    for ms in [0, 1, 10, 50, 100, 200, 500, 1_000, 5_000, 60_000] {
        let n = VerifierPolicy::from_rate(rate, Duration::from_millis(ms)).iterations();
        assert!((MIN_ITERATIONS..=MAX_ITERATIONS).contains(&n));
        assert_eq!(n % 10_000, 0);
        assert!(n >= last, "{ms} ms gave {n} < {last}");
        last = n;
    }

    // The default target on this machine: reported, not asserted (tests do not assert
    // performance; docs/PERFORMANCE.md does).
    let policy = VerifierPolicy::calibrate(DEFAULT_TARGET);
    assert!((MIN_ITERATIONS..=MAX_ITERATIONS).contains(&policy.iterations()));
    let v = Verifier::create(&mut rng(8), &secret(8), &policy);
    let start = Instant::now();
    assert!(v.verify(&secret(8)));
    println!(
        "calibrated to {} iterations ({rate:.0}/s); one verification took {:?} (target {:?})",
        policy.iterations(),
        start.elapsed(),
        DEFAULT_TARGET
    );
}

#[test]
fn needs_rehash_when_the_policy_moved() {
    let low = VerifierPolicy::insecure_test_policy(1_000);
    let v = Verifier::create(&mut rng(9), &secret(9), &low);
    assert!(!v.needs_rehash(&low));
    // The calibrated count rose: rehash, even by one step.
    assert!(v.needs_rehash(&VerifierPolicy::insecure_test_policy(1_001)));
    assert!(v.needs_rehash(&VerifierPolicy::default()));
    // It fell a little: keep (calibration noise must not rewrite every verifier).
    assert!(!v.needs_rehash(&VerifierPolicy::insecure_test_policy(999)));
    assert!(!v.needs_rehash(&VerifierPolicy::insecure_test_policy(500)));
    // It fell below half: the old verifier would be slower than a dummy check, rehash.
    assert!(v.needs_rehash(&VerifierPolicy::insecure_test_policy(499)));

    // check_login reports it on success only.
    let higher = VerifierPolicy::insecure_test_policy(2_000);
    assert_eq!(
        check_login(Some(&v), &secret(9), &higher),
        LoginCheck::Accepted { rehash: true }
    );
    assert_eq!(
        check_login(Some(&v), &secret(10), &higher),
        LoginCheck::Rejected
    );
    // After the rehash the new verifier is current.
    let rehashed = Verifier::create(&mut OsRng, &secret(9), &higher);
    assert_eq!(
        check_login(Some(&rehashed), &secret(9), &higher),
        LoginCheck::Accepted { rehash: false }
    );
}

#[test]
fn unknown_accounts_are_refused_like_wrong_secrets() {
    let policy = test_policy();
    // The dummy check is refused whatever the secret (it runs `policy.iterations()`
    // PBKDF2 iterations; the unit test in verifier.rs counts them).
    for s in 0..20 {
        assert!(!dummy_verify(&policy, &secret(s)));
        assert_eq!(check_login(None, &secret(s), &policy), LoginCheck::Rejected);
    }
    let v = Verifier::create(&mut rng(11), &secret(11), &policy);
    assert_eq!(
        check_login(Some(&v), &secret(12), &policy),
        check_login(None, &secret(12), &policy)
    );

    // And the backoff treats the unknown name exactly like the known one.
    let backoff = Backoff::default();
    let addr = ip(198, 51, 100, 1);
    for i in 0..6 {
        backoff.record_failure(b"alice (exists)", addr, T0 + i);
        backoff.record_failure(b"mallory (does not)", ip(198, 51, 100, 2), T0 + i);
    }
    assert_eq!(
        backoff.check(b"alice (exists)", ip(203, 0, 113, 9), T0 + 5),
        backoff.check(b"mallory (does not)", ip(203, 0, 113, 9), T0 + 5),
    );
}

// ---------------------------------------------------------------------------------------
// Sessions
// ---------------------------------------------------------------------------------------

const ALICE: UserId = [0xa1; 16];
const BOB: UserId = [0xb0; 16];

fn issue(table: &SessionTable, user: UserId, now: u64, ttl: u64) -> SessionToken {
    let Ok(token) = table.issue(&mut OsRng, user, now, ttl);
    token
}

fn auth(table: &SessionTable, token: &SessionToken, now: u64) -> Option<UserId> {
    let Ok(user) = table.authenticate(token, now);
    user
}

#[test]
fn sessions_issue_authenticate_and_expire() {
    let table = SessionTable::new();
    let token = issue(&table, ALICE, T0, 3_600);
    assert_eq!(auth(&table, &token, T0), Some(ALICE));
    assert_eq!(auth(&table, &token, T0 + 3_599), Some(ALICE));

    // What the client sends back is what authenticates.
    let header = format!("Bearer {}", &*token.encode());
    let presented = SessionToken::from_authorization(&header).unwrap();
    assert_eq!(auth(&table, &presented, T0 + 1), Some(ALICE));

    // Expiry is at `created + ttl`, and an expired record is removed when presented.
    assert_eq!(auth(&table, &token, T0 + 3_600), None);
    assert!(table.is_empty());
    assert_eq!(
        auth(&table, &token, T0 + 1),
        None,
        "expired sessions stay gone"
    );

    // An unknown token authenticates nothing.
    let stranger = SessionToken::generate(&mut OsRng);
    assert_eq!(auth(&table, &stranger, T0), None);

    let long = issue(&table, ALICE, T0, DEFAULT_SESSION_TTL);
    assert_eq!(
        auth(&table, &long, T0 + DEFAULT_SESSION_TTL - 1),
        Some(ALICE)
    );
    assert_eq!(auth(&table, &long, T0 + DEFAULT_SESSION_TTL), None);

    // A ttl that overflows the clock saturates instead of wrapping into the past.
    let forever = issue(&table, BOB, u64::MAX - 5, u64::MAX);
    assert_eq!(auth(&table, &forever, u64::MAX - 1), Some(BOB));
}

#[test]
fn logout_ends_one_session_and_revoke_all_ends_every_session_of_a_user() {
    let table = SessionTable::new();
    let a1 = issue(&table, ALICE, T0, 3_600);
    let a2 = issue(&table, ALICE, T0, 3_600);
    let a3 = issue(&table, ALICE, T0 + 5, 3_600);
    let b1 = issue(&table, BOB, T0, 3_600);
    assert_eq!(table.len(), 4);

    let Ok(was) = table.logout(&a1);
    assert!(was);
    let Ok(again) = table.logout(&a1);
    assert!(!again);
    assert_eq!(auth(&table, &a1, T0 + 10), None);
    assert_eq!(auth(&table, &a2, T0 + 10), Some(ALICE));

    let Ok(n) = table.revoke_all(&ALICE);
    assert_eq!(n, 2);
    assert_eq!(auth(&table, &a2, T0 + 10), None);
    assert_eq!(auth(&table, &a3, T0 + 10), None);
    assert_eq!(auth(&table, &b1, T0 + 10), Some(BOB));
    let Ok(n) = table.revoke_all(&ALICE);
    assert_eq!(n, 0);
}

#[test]
fn sweep_removes_expired_sessions_only() {
    let table = SessionTable::new();
    let short = issue(&table, ALICE, T0, 10);
    let long = issue(&table, BOB, T0, 100);
    let Ok(n) = table.sweep(T0 + 9);
    assert_eq!(n, 0);
    let Ok(n) = table.sweep(T0 + 10);
    assert_eq!(n, 1);
    assert_eq!(table.len(), 1);
    assert_eq!(auth(&table, &short, T0), None);
    assert_eq!(auth(&table, &long, T0 + 50), Some(BOB));
}

#[test]
fn tokens_are_never_stored_in_clear() {
    let table = SessionTable::new();
    let tokens: Vec<SessionToken> = (0..8).map(|i| issue(&table, [i; 16], T0, 60)).collect();
    let entries = table.entries();
    assert_eq!(entries.len(), tokens.len());
    let shown = format!("{table:?} {entries:?}");
    for token in &tokens {
        let encoded = token.encode();
        let raw = data_encoding::BASE64URL_NOPAD
            .decode(encoded.as_bytes())
            .unwrap();
        // The table is keyed by the token's hash, and nothing in it is the token.
        assert!(entries.iter().any(|(k, _)| *k == token.hash()));
        for (key, session) in &entries {
            assert_ne!(key.as_bytes()[..], raw[..]);
            assert!(!key
                .as_bytes()
                .windows(8)
                .any(|w| raw.windows(8).any(|r| r == w)));
            assert!(!session
                .user
                .windows(8)
                .any(|w| raw.windows(8).any(|r| r == w)));
        }
        assert!(!shown.contains(encoded.as_str()));
        assert!(!shown.contains(&data_encoding::HEXLOWER.encode(&raw)));
        assert_eq!(format!("{token:?}"), "SessionToken([redacted])");
    }
    // The stored key is not the token: presenting the key as a token authenticates nothing.
    let (key, _) = entries[0];
    let as_token =
        SessionToken::parse(&data_encoding::BASE64URL_NOPAD.encode(key.as_bytes())).unwrap();
    assert_eq!(auth(&table, &as_token, T0), None);
}

#[test]
fn tokens_differ() {
    let a = SessionToken::generate(&mut OsRng);
    let b = SessionToken::generate(&mut OsRng);
    assert_ne!(*a.encode(), *b.encode());
    assert_ne!(a.hash(), b.hash());
    let table = SessionTable::new();
    let mut seen = HashSet::new();
    for _ in 0..1_000 {
        let t = issue(&table, ALICE, T0, 60);
        assert_eq!(t.encode().len(), 43);
        assert!(seen.insert(t.encode().to_string()));
    }
    assert_eq!(table.len(), 1_000);
}

#[test]
fn the_session_table_is_shared_between_threads() {
    let table = SessionTable::new();
    std::thread::scope(|s| {
        for t in 0..4u8 {
            let table = &table;
            s.spawn(move || {
                for _ in 0..250 {
                    let token = issue(table, [t; 16], T0, 60);
                    assert_eq!(auth(table, &token, T0), Some([t; 16]));
                }
            });
        }
    });
    assert_eq!(table.len(), 1_000);
    let Ok(n) = table.revoke_all(&[2; 16]);
    assert_eq!(n, 250);
}

/// A backend whose storage is down: its errors reach the caller of the session logic.
struct Unavailable;

impl SessionStore for Unavailable {
    type Error = &'static str;
    fn insert(&self, _: TokenHash, _: Session) -> Result<(), Self::Error> {
        Err("down")
    }
    fn get(&self, _: &TokenHash) -> Result<Option<Session>, Self::Error> {
        Err("down")
    }
    fn remove(&self, _: &TokenHash) -> Result<bool, Self::Error> {
        Err("down")
    }
    fn remove_user(&self, _: &UserId) -> Result<usize, Self::Error> {
        Err("down")
    }
    fn remove_expired(&self, _: u64) -> Result<usize, Self::Error> {
        Err("down")
    }
}

#[test]
fn store_errors_reach_the_caller() {
    let token = SessionToken::generate(&mut OsRng);
    assert_eq!(
        Unavailable.issue(&mut OsRng, ALICE, T0, 60).err(),
        Some("down")
    );
    assert_eq!(Unavailable.authenticate(&token, T0), Err("down"));
    assert_eq!(Unavailable.logout(&token), Err("down"));
    assert_eq!(Unavailable.revoke_all(&ALICE), Err("down"));
    assert_eq!(Unavailable.sweep(T0), Err("down"));
}

// ---------------------------------------------------------------------------------------
// Backoff
// ---------------------------------------------------------------------------------------

#[test]
fn backoff_allows_free_failures_then_locks() {
    let b = Backoff::default();
    let addr = ip(192, 0, 2, 1);
    for i in 0..5 {
        assert_eq!(b.check(b"alice", addr, T0), Ok(()), "attempt {i}");
        b.record_failure(b"alice", addr, T0);
    }
    assert_eq!(b.check(b"alice", addr, T0), Ok(()));
    b.record_failure(b"alice", addr, T0); // the sixth failure
    assert_eq!(b.check(b"alice", addr, T0), Err(RetryAfter(1)));
    assert_eq!(b.check(b"alice", addr, T0 + 1), Ok(()));
    assert_eq!(
        RetryAfter(7).to_string(),
        "too many failed logins; retry after 7 s"
    );
}

#[test]
fn backoff_grows_exponentially_up_to_the_cap() {
    let b = Backoff::default();
    let addr = ip(192, 0, 2, 2);
    let mut now = T0;
    for _ in 0..5 {
        b.record_failure(b"alice", addr, now);
    }
    let mut waits = Vec::new();
    for _ in 0..14 {
        b.record_failure(b"alice", addr, now);
        let Err(RetryAfter(wait)) = b.check(b"alice", addr, now) else {
            panic!("not locked");
        };
        // Locked until exactly `wait` seconds later, not a second less.
        assert!(b.check(b"alice", addr, now + wait - 1).is_err());
        now += wait;
        assert_eq!(b.check(b"alice", addr, now), Ok(()));
        waits.push(wait);
    }
    assert_eq!(
        waits,
        [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 900, 900, 900, 900]
    );
}

#[test]
fn success_resets_the_account_but_not_the_address() {
    let b = Backoff::default();
    let addr = ip(192, 0, 2, 3);
    for _ in 0..8 {
        b.record_failure(b"alice", addr, T0);
    }
    assert_eq!(b.check(b"alice", addr, T0 + 4), Ok(()));
    b.record_success(b"alice");
    // A fresh start: five free failures again.
    for _ in 0..5 {
        b.record_failure(b"alice", addr, T0 + 5);
        assert_eq!(b.check(b"alice", addr, T0 + 5), Ok(()));
    }
    b.record_failure(b"alice", addr, T0 + 5);
    assert_eq!(b.check(b"alice", addr, T0 + 5), Err(RetryAfter(1)));

    // The address counted all 14 failures; 7 more make 21, one past its 20 free ones, and
    // a success on an account in between does not clear it.
    for _ in 0..7 {
        b.record_failure(b"bob", addr, T0 + 6);
    }
    b.record_success(b"carol");
    assert_eq!(b.check(b"carol", addr, T0 + 6), Err(RetryAfter(1)));
    assert_eq!(b.check(b"carol", ip(192, 0, 2, 4), T0 + 6), Ok(()));
}

#[test]
fn accounts_and_addresses_are_counted_independently() {
    let b = Backoff::default();
    let (x, y) = (ip(192, 0, 2, 10), ip(192, 0, 2, 11));

    // An account locked from one address is locked from every address ...
    for _ in 0..6 {
        b.record_failure(b"alice", x, T0);
    }
    assert!(b.check(b"alice", x, T0).is_err());
    assert!(b.check(b"alice", y, T0).is_err());
    // ... and the address is not locked for other accounts (6 of its 20 free failures).
    assert_eq!(b.check(b"bob", x, T0), Ok(()));

    // An address that sprays names is locked for every name, the untouched ones included,
    // while those names stay open from other addresses.
    for i in 0..15u32 {
        b.record_failure(format!("user{i}").as_bytes(), x, T0);
    }
    assert_eq!(b.check(b"bob", x, T0), Err(RetryAfter(1)));
    assert_eq!(b.check(b"bob", y, T0), Ok(()));
    assert_eq!(b.check(b"user3", y, T0), Ok(()));

    // IPv6: one /64 is one client.
    let net = |host: u64| {
        IpAddr::V6(Ipv6Addr::from(
            (0x2001_0db8_0000_0001u128 << 64) | u128::from(host),
        ))
    };
    for host in 0..21 {
        b.record_failure(format!("v6-{host}").as_bytes(), net(host), T0);
    }
    assert!(b.check(b"dave", net(9_999), T0).is_err());
    let other_net = IpAddr::V6(Ipv6Addr::from(0x2001_0db8_0000_0002u128 << 64));
    assert_eq!(b.check(b"dave", other_net, T0), Ok(()));
}

#[test]
fn counts_are_forgotten_after_a_quiet_period() {
    let b = Backoff::default();
    let addr = ip(192, 0, 2, 20);
    for _ in 0..10 {
        b.record_failure(b"alice", addr, T0);
    }
    assert_eq!(b.check(b"alice", addr, T0), Err(RetryAfter(16)));
    let day = Schedule::ACCOUNT.forget_after_secs;
    assert_eq!(b.sweep(T0 + day - 1), 0);
    // After a day without failures the next failure is the first again.
    b.record_failure(b"alice", addr, T0 + day);
    assert_eq!(b.check(b"alice", addr, T0 + day), Ok(()));
    assert_eq!(b.sweep(T0 + 2 * day), 2);
    assert_eq!((b.tracked_accounts(), b.tracked_addresses()), (0, 0));
}

#[test]
fn memory_stays_bounded_under_a_spray_of_a_million_addresses() {
    let policy = BackoffPolicy {
        max_entries: 10_000,
        ..BackoffPolicy::default()
    };
    let b = Backoff::new(policy);
    // The victim account and one attacking address are locked before the spray.
    let home = ip(192, 0, 2, 99);
    for _ in 0..30 {
        b.record_failure(b"victim", home, T0);
    }
    assert!(b.check(b"victim", ip(203, 0, 113, 1), T0).is_err());
    assert!(b.check(b"someone", home, T0).is_err());

    let start = Instant::now();
    for i in 0..1_000_000u32 {
        let addr = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 | i));
        b.record_failure(&i.to_be_bytes(), addr, T0 + 1);
    }
    assert!(b.tracked_addresses() <= 10_000);
    assert!(b.tracked_accounts() <= 10_000);
    // The spray evicted itself: the locks set before it still hold.
    assert!(b.check(b"victim", ip(203, 0, 113, 1), T0 + 1).is_err());
    assert!(b.check(b"someone", home, T0 + 1).is_err());
    println!("1,000,000 sprayed failures in {:?}", start.elapsed());

    // The default bound holds too (a smaller spray is enough to fill it).
    let b = Backoff::default();
    let cap = b.policy().max_entries;
    for i in 0..(cap as u32 + 5_000) {
        b.record_failure(b"x", IpAddr::V4(Ipv4Addr::from(i)), T0);
    }
    assert_eq!(b.tracked_addresses(), cap);
    assert_eq!(b.tracked_accounts(), 1);
}
