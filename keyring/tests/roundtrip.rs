//! Property tests: every encode/decode and wrap/unwrap of the keyring round-trips, and
//! nothing opens under the wrong secret, context or associated data.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::OnceLock;

use proptest::prelude::*;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use vault_keyring::danger::{insecure_test_params, insecure_test_policy};
use vault_keyring::seal::{self, Context};
use vault_keyring::{
    Error, IdentityBundle, Keyring, KeyringOptions, Password, PasswordKeys, RecoveryCode,
    SealedKeyring, SymmetricKey,
};

const A: Context = Context::new("vault/v1/test/a");
const B: Context = Context::new("vault/v1/test/b");

fn keyring() -> &'static Keyring {
    static K: OnceLock<Keyring> = OnceLock::new();
    K.get_or_init(|| {
        Keyring::generate(
            &mut ChaCha20Rng::from_seed([42; 32]),
            &KeyringOptions::new(),
        )
        .unwrap()
    })
}

fn keys(password: &str, rng: &mut ChaCha20Rng) -> PasswordKeys {
    let params = insecure_test_params(rng, 1);
    PasswordKeys::derive_with_policy(&Password::from(password), &params, &insecure_test_policy(1))
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn seal_round_trips_and_binds_everything(
        seed in any::<[u8; 32]>(),
        key in any::<[u8; 32]>(),
        ad in proptest::collection::vec(any::<u8>(), 0..64),
        pt in proptest::collection::vec(any::<u8>(), 0..4096),
        flip in any::<usize>(),
    ) {
        let mut rng = ChaCha20Rng::from_seed(seed);
        let Some(key) = SymmetricKey::from_bytes(key) else { return Ok(()) };
        let sealed = seal::seal(&mut rng, &key, A, &ad, &pt);
        prop_assert_eq!(sealed.len(), pt.len() + seal::OVERHEAD);
        prop_assert_eq!(&*seal::open(&key, A, &ad, &sealed).unwrap(), &pt[..]);
        // Other context, other associated data, other key, any flipped bit: refused.
        prop_assert_eq!(seal::open(&key, B, &ad, &sealed).err(), Some(Error::AuthenticationFailed));
        let mut ad2 = ad.clone();
        ad2.push(0);
        prop_assert!(seal::open(&key, A, &ad2, &sealed).is_err());
        let other = SymmetricKey::generate(&mut rng);
        prop_assert!(seal::open(&other, A, &ad, &sealed).is_err());
        let mut bad = sealed.clone();
        let i = flip % bad.len();
        bad[i] ^= 1 << (flip % 8);
        prop_assert!(seal::open(&key, A, &ad, &bad).is_err());
        // Two seals of the same plaintext never share a nonce or ciphertext.
        let again = seal::seal(&mut rng, &key, A, &ad, &pt);
        prop_assert_ne!(&again[..seal::NONCE_LEN], &sealed[..seal::NONCE_LEN]);
    }

    #[test]
    fn sealed_keyring_round_trips(
        seed in any::<[u8; 32]>(),
        password in "\\PC{1,40}",
        other in "\\PC{1,40}",
    ) {
        let mut rng = ChaCha20Rng::from_seed(seed);
        let k = keys(&password, &mut rng);
        let (sealed, code) = SealedKeyring::seal(&mut rng, keyring(), &k);
        let bytes = sealed.to_bytes();
        let decoded = SealedKeyring::from_bytes(&bytes).unwrap();
        prop_assert_eq!(&decoded, &sealed);
        prop_assert_eq!(decoded.to_bytes(), bytes);
        let (opened, _) = decoded
            .unlock_with_password_policy(&Password::from(password.as_str()), &insecure_test_policy(1))
            .unwrap();
        prop_assert_eq!(opened.id(), keyring().id());
        if other != password {
            let wrong = decoded
                .unlock_with_password_policy(&Password::from(other.as_str()), &insecure_test_policy(1));
            prop_assert_eq!(wrong.err(), Some(Error::AuthenticationFailed));
        }
        let typed: RecoveryCode = code.expose_formatted().parse().unwrap();
        let new = keys(&other, &mut rng);
        let (recovered, _) = decoded.recover(&mut rng, &typed, &new).unwrap();
        prop_assert_eq!(recovered.id(), keyring().id());
    }

    #[test]
    fn identity_bundle_round_trips(seed in any::<[u8; 32]>()) {
        let mut rng = ChaCha20Rng::from_seed(seed);
        let bundle = keyring().identity_bundle(&mut rng);
        let decoded = IdentityBundle::from_bytes(bundle.as_bytes()).unwrap();
        prop_assert_eq!(&decoded, &bundle);
        prop_assert_eq!(decoded.fingerprint(), bundle.fingerprint());
        prop_assert_eq!(decoded.keyring_id(), keyring().id());
        prop_assert_eq!(decoded.exchange_key(), &keyring().exchange_public_key());
    }

    #[test]
    fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = SealedKeyring::from_bytes(&bytes);
        let _ = IdentityBundle::from_bytes(&bytes);
        let _ = String::from_utf8(bytes).map(|s| s.parse::<RecoveryCode>());
    }
}
