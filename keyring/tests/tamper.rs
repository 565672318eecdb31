//! The malicious server's view of the keyring: it holds the sealed keyring and the identity
//! bundle and may alter them in any way. Every alteration must fail with an error (and for
//! anything authenticated, the one generic error), never open a different keyring.
//!
//! Keyrings here are sealed with a low iteration count through the explicit test-only
//! policy (`danger-insecure-test-kdf`), so thousands of unlock attempts run in seconds.
//! The floor for users is unchanged, which `strict_policy_refuses_test_parameters` shows.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::OnceLock;

use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use vault_keyring::danger::{insecure_test_params, insecure_test_policy};
use vault_keyring::{
    Error, IdentityBundle, KdfPolicy, KeyPurpose, Keyring, KeyringOptions, Password, PasswordKeys,
    RecoveryCode, SealedKeyring,
};

const PASSWORD: &str = "correct horse battery staple";
/// A cap far below a billion iterations, so a flipped high bit of the iteration count is
/// refused by the policy instead of running for minutes.
const TEST_CAP: u32 = 1 << 16;

fn policy() -> KdfPolicy {
    insecure_test_policy(TEST_CAP)
}

fn rng(seed: u8) -> ChaCha20Rng {
    ChaCha20Rng::from_seed([seed; 32])
}

fn keys(password: &str, iterations: u32, rng: &mut ChaCha20Rng) -> PasswordKeys {
    let params = insecure_test_params(rng, iterations);
    PasswordKeys::derive_with_policy(&Password::from(password), &params, &policy()).unwrap()
}

struct Fixture {
    keyring: Keyring,
    sealed: Vec<u8>,
    code: String,
}

fn keyring_with(seed: u8) -> Keyring {
    Keyring::generate(&mut rng(seed), &KeyringOptions::new().with_created_at(7)).unwrap()
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let mut r = rng(1);
        let keyring = keyring_with(1);
        let k = keys(PASSWORD, 1, &mut r);
        let (sealed, code) = SealedKeyring::seal(&mut r, &keyring, &k);
        Fixture {
            keyring,
            sealed: sealed.to_bytes(),
            code: code.expose_formatted().to_string(),
        }
    })
}

fn try_unlock(bytes: &[u8], password: &str) -> Result<Keyring, Error> {
    let sealed = SealedKeyring::from_bytes(bytes)?;
    let (keyring, _) = sealed.unlock_with_password_policy(&Password::from(password), &policy())?;
    Ok(keyring)
}

fn try_recover(bytes: &[u8], code: &str) -> Result<Keyring, Error> {
    let sealed = SealedKeyring::from_bytes(bytes)?;
    let code: RecoveryCode = code.parse().unwrap();
    let mut r = rng(9);
    let new = keys("new password", 1, &mut r);
    let (keyring, _) = sealed.recover(&mut r, &code, &new)?;
    Ok(keyring)
}

#[test]
fn the_fixture_opens() {
    let f = fixture();
    let k = try_unlock(&f.sealed, PASSWORD).unwrap();
    assert_eq!(k.id(), f.keyring.id());
    let k = try_recover(&f.sealed, &f.code).unwrap();
    assert_eq!(k.id(), f.keyring.id());
}

#[test]
fn every_single_bit_flip_is_rejected() {
    let f = fixture();
    let mut generic = 0usize;
    for i in 0..f.sealed.len() {
        for bit in 0..8 {
            let mut bytes = f.sealed.clone();
            bytes[i] ^= 1 << bit;
            let err = try_unlock(&bytes, PASSWORD).err().unwrap_or_else(|| {
                panic!("byte {i} bit {bit}: a flipped keyring unlocked");
            });
            // Only the cleartext header fields have their own errors: the version and suite
            // (UnsupportedFormat) and the iteration count (WeakKdfParameters when a flip
            // pushes it above the cap). Everything else is the generic error.
            match err {
                Error::AuthenticationFailed => generic += 1,
                Error::UnsupportedFormat => assert!((4..8).contains(&i), "byte {i}"),
                Error::WeakKdfParameters => assert!((28..32).contains(&i), "byte {i}"),
                other => panic!("byte {i} bit {bit}: unexpected {other:?}"),
            }
        }
    }
    assert!(generic > f.sealed.len() * 8 - 64);
}

#[test]
fn every_bit_flip_also_fails_recovery() {
    let f = fixture();
    for i in 0..f.sealed.len() {
        for bit in 0..8 {
            let mut bytes = f.sealed.clone();
            bytes[i] ^= 1 << bit;
            assert!(
                try_recover(&bytes, &f.code).is_err(),
                "byte {i} bit {bit}: a flipped keyring was recovered"
            );
        }
    }
}

#[test]
fn every_truncation_and_extension_is_rejected() {
    let f = fixture();
    for len in 0..f.sealed.len() {
        assert!(try_unlock(&f.sealed[..len], PASSWORD).is_err(), "len {len}");
        assert!(try_recover(&f.sealed[..len], &f.code).is_err(), "len {len}");
    }
    for extra in [&[0u8][..], &[0xff; 16][..], &f.sealed[..48]] {
        let mut bytes = f.sealed.clone();
        bytes.extend_from_slice(extra);
        assert_eq!(
            try_unlock(&bytes, PASSWORD).err(),
            Some(Error::AuthenticationFailed)
        );
    }
}

#[test]
fn wrong_password_is_the_generic_error() {
    let f = fixture();
    for wrong in [
        "",
        "correct horse battery stapl",
        "Correct horse battery staple",
    ] {
        let err = try_unlock(&f.sealed, wrong).err();
        if wrong.is_empty() {
            assert_eq!(err, Some(Error::EmptyPassword));
        } else {
            assert_eq!(err, Some(Error::AuthenticationFailed));
        }
    }
}

#[test]
fn strict_policy_refuses_test_parameters() {
    // The fixture was sealed at 1 iteration through the test-only path; the default policy
    // every application gets refuses it before running PBKDF2 (THREATS C7).
    let f = fixture();
    let sealed = SealedKeyring::from_bytes(&f.sealed).unwrap();
    assert_eq!(sealed.kdf_params().iterations(), 1);
    assert_eq!(
        sealed.unlock_with_password(&Password::from(PASSWORD)).err(),
        Some(Error::WeakKdfParameters)
    );
    assert_eq!(
        PasswordKeys::derive(&Password::from(PASSWORD), &sealed.kdf_params()).err(),
        Some(Error::WeakKdfParameters)
    );
    assert_eq!(
        vault_keyring::KdfParams::with_iterations(599_999).err(),
        Some(Error::WeakKdfParameters)
    );
    assert_eq!(
        vault_keyring::KdfParams::with_iterations(vault_keyring::MAX_ITERATIONS + 1).err(),
        Some(Error::WeakKdfParameters)
    );
    assert!(vault_keyring::KdfParams::with_iterations(600_000).is_ok());
}

#[test]
fn keys_derived_under_other_parameters_are_refused() {
    let f = fixture();
    let sealed = SealedKeyring::from_bytes(&f.sealed).unwrap();
    let other = keys(PASSWORD, 2, &mut rng(3));
    assert_eq!(
        sealed.unlock(&other).err(),
        Some(Error::AuthenticationFailed)
    );
}

/// Two keyrings sealed under the same password and salt: any exchange of parts between
/// them fails, because the body MAC covers the header and both wraps.
#[test]
fn parts_spliced_between_keyrings_are_rejected() {
    let f = fixture();
    let a = SealedKeyring::from_bytes(&f.sealed).unwrap();
    let a_keys =
        PasswordKeys::derive_with_policy(&Password::from(PASSWORD), &a.kdf_params(), &policy())
            .unwrap();
    let other = keyring_with(2);
    let (b, b_code) = SealedKeyring::seal(&mut rng(4), &other, &a_keys);
    let a_bytes = a.to_bytes();
    let b_bytes = b.to_bytes();
    // Regions: header 0..64, password wrap 64..144, recovery wrap 144..224, body 224.. .
    let regions = [
        (0, 64),
        (64, 144),
        (144, 224),
        (224, a_bytes.len().min(b_bytes.len())),
    ];
    for (start, end) in regions {
        let mut spliced = a_bytes.clone();
        spliced[start..end].copy_from_slice(&b_bytes[start..end]);
        assert!(
            try_unlock(&spliced, PASSWORD).is_err(),
            "region {start}..{end}"
        );
        assert!(
            try_recover(&spliced, &f.code).is_err(),
            "region {start}..{end}"
        );
        assert!(
            try_recover(&spliced, &b_code.expose_formatted()).is_err(),
            "region {start}..{end}"
        );
    }
    // B's whole body after A's header and wraps.
    let mut spliced = a_bytes[..224].to_vec();
    spliced.extend_from_slice(&b_bytes[224..]);
    assert!(try_unlock(&spliced, PASSWORD).is_err());
    // The wraps in swapped order.
    let mut swapped = a_bytes.clone();
    swapped[64..144].copy_from_slice(&a_bytes[144..224]);
    swapped[144..224].copy_from_slice(&a_bytes[64..144]);
    assert!(try_unlock(&swapped, PASSWORD).is_err());
    assert!(try_recover(&swapped, &f.code).is_err());
}

#[test]
fn password_change_rewraps_without_rekeying() {
    let f = fixture();
    let sealed = SealedKeyring::from_bytes(&f.sealed).unwrap();
    let mut r = rng(5);
    let old = PasswordKeys::derive_with_policy(
        &Password::from(PASSWORD),
        &sealed.kdf_params(),
        &policy(),
    )
    .unwrap();
    let new = keys("second password", 3, &mut r);
    let changed = sealed.change_password(&mut r, &old, &new).unwrap();
    assert_ne!(changed.to_bytes(), sealed.to_bytes());
    assert_eq!(changed.keyring_id(), sealed.keyring_id());
    assert_eq!(
        try_unlock(&changed.to_bytes(), PASSWORD).err(),
        Some(Error::AuthenticationFailed)
    );
    let k = try_unlock(&changed.to_bytes(), "second password").unwrap();
    for purpose in [
        KeyPurpose::CollectionWrap,
        KeyPurpose::LocalState,
        KeyPurpose::NameIndex,
    ] {
        assert_eq!(k.key(purpose), f.keyring.key(purpose));
    }
    assert_eq!(
        k.identity_bundle(&mut r).fingerprint(),
        f.keyring.identity_bundle(&mut r).fingerprint()
    );
    // The recovery wrapping was carried over: the code still opens the changed keyring.
    assert_eq!(
        try_recover(&changed.to_bytes(), &f.code).unwrap().id(),
        f.keyring.id()
    );
    // A change needs the old password.
    let wrong = keys("not the password", 1, &mut r);
    assert!(sealed.change_password(&mut r, &wrong, &new).is_err());
}

#[test]
fn recover_then_rotate_retires_the_old_code() {
    let f = fixture();
    let sealed = SealedKeyring::from_bytes(&f.sealed).unwrap();
    let code: RecoveryCode = f.code.parse().unwrap();
    let mut r = rng(6);
    let new = keys("after recovery", 1, &mut r);
    let (keyring, recovered) = sealed.recover(&mut r, &code, &new).unwrap();
    assert_eq!(keyring.id(), f.keyring.id());
    assert!(try_unlock(&recovered.to_bytes(), PASSWORD).is_err());
    assert!(try_unlock(&recovered.to_bytes(), "after recovery").is_ok());
    // The code stays valid until rotated.
    assert!(try_recover(&recovered.to_bytes(), &f.code).is_ok());
    let (rotated, new_code) = recovered.rotate_recovery(&mut r, &new).unwrap();
    assert_eq!(
        try_recover(&rotated.to_bytes(), &f.code).err(),
        Some(Error::AuthenticationFailed)
    );
    assert_eq!(
        try_recover(&rotated.to_bytes(), &new_code.expose_formatted())
            .unwrap()
            .id(),
        f.keyring.id()
    );
    assert!(try_unlock(&rotated.to_bytes(), "after recovery").is_ok());
    // Rotation needs the password.
    let wrong = keys("wrong", 1, &mut r);
    assert!(recovered.rotate_recovery(&mut r, &wrong).is_err());
}

#[test]
fn identity_bundle_every_bit_flip_and_truncation_is_rejected() {
    let f = fixture();
    let bundle = f.keyring.identity_bundle(&mut rng(7)).to_bytes();
    assert!(IdentityBundle::from_bytes(&bundle).is_ok());
    for i in 0..bundle.len() {
        for bit in 0..8 {
            let mut b = bundle.clone();
            b[i] ^= 1 << bit;
            assert!(
                IdentityBundle::from_bytes(&b).is_err(),
                "byte {i} bit {bit}: a flipped bundle verified"
            );
        }
    }
    for len in 0..bundle.len() {
        assert!(
            IdentityBundle::from_bytes(&bundle[..len]).is_err(),
            "len {len}"
        );
    }
    let mut longer = bundle.clone();
    longer.push(0);
    assert!(IdentityBundle::from_bytes(&longer).is_err());
}

#[test]
fn identity_bundle_signed_by_another_key_is_rejected() {
    // A server that substitutes keys must re-sign with its own signing key; the result is a
    // valid bundle, but of another fingerprint, which the out-of-band check exposes (C2).
    let f = fixture();
    let mine = f.keyring.identity_bundle(&mut rng(7));
    let other = keyring_with(3).identity_bundle(&mut rng(8));
    assert_ne!(mine.fingerprint(), other.fingerprint());
    // Splice: my keys with the other's signature.
    let mut spliced = mine.to_bytes();
    let n = spliced.len();
    let o = other.to_bytes();
    spliced[n - 256..].copy_from_slice(&o[o.len() - 256..]);
    assert_eq!(
        IdentityBundle::from_bytes(&spliced).err(),
        Some(Error::AuthenticationFailed)
    );
    // The fingerprint is stable across re-signing (PSS is randomized).
    let again = f.keyring.identity_bundle(&mut rng(9));
    assert_ne!(again.to_bytes(), mine.to_bytes());
    assert_eq!(again.fingerprint(), mine.fingerprint());
    assert_eq!(
        again.fingerprint().safety_number(),
        mine.fingerprint().safety_number()
    );
}

#[test]
fn signatures_are_domain_separated() {
    let f = fixture();
    let bundle = f.keyring.identity_bundle(&mut rng(7));
    let sig = f
        .keyring
        .sign(&mut rng(10), b"vault/v1/test-a\0", b"message");
    assert!(bundle
        .verify(b"vault/v1/test-a\0", b"message", &sig)
        .is_ok());
    assert!(bundle
        .verify(b"vault/v1/test-b\0", b"message", &sig)
        .is_err());
    assert!(bundle
        .verify(b"vault/v1/test-a\0", b"messagf", &sig)
        .is_err());
    assert!(bundle
        .verify(b"vault/v1/test-a\0", b"message", &sig[1..])
        .is_err());
}

#[test]
fn secrets_never_print() {
    let f = fixture();
    let keyring_debug = format!("{:?}", f.keyring);
    for purpose in [
        KeyPurpose::CollectionWrap,
        KeyPurpose::LocalState,
        KeyPurpose::NameIndex,
    ] {
        let key = f.keyring.key(purpose);
        let hex: String = key
            .expose_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert!(!keyring_debug.contains(&hex));
        assert_eq!(format!("{key:?}"), "SymmetricKey([redacted])");
    }
    assert!(!format!("{:?}", Password::from(PASSWORD)).contains("horse"));
    let code: RecoveryCode = f.code.parse().unwrap();
    let shown = format!("{code:?}");
    assert!(!shown.contains(&f.code[..9]), "{shown}");
    let k = keys(PASSWORD, 1, &mut rng(11));
    let login_hex: String = k
        .login_secret()
        .expose_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert!(!format!("{k:?}").contains(&login_hex));
    assert_eq!(format!("{:?}", k.login_secret()), "LoginSecret([redacted])");
    let sealed = SealedKeyring::from_bytes(&f.sealed).unwrap();
    assert!(format!("{sealed:?}").starts_with("SealedKeyring"));
}

#[test]
fn login_secret_and_unlock_key_are_independent_outputs() {
    // Same password and parameters give the same login secret (the server can verify it);
    // different salts give unrelated ones.
    let mut r = rng(12);
    let params = insecure_test_params(&mut r, 1);
    let a =
        PasswordKeys::derive_with_policy(&Password::from(PASSWORD), &params, &policy()).unwrap();
    let b =
        PasswordKeys::derive_with_policy(&Password::from(PASSWORD), &params, &policy()).unwrap();
    assert_eq!(
        a.login_secret().expose_bytes(),
        b.login_secret().expose_bytes()
    );
    let c = keys(PASSWORD, 1, &mut r);
    assert_ne!(
        a.login_secret().expose_bytes(),
        c.login_secret().expose_bytes()
    );
}
