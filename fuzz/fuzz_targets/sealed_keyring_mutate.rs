//! Mutations of one real sealed keyring (sealed at 1 iteration through the test-only path):
//! the fuzzer chooses positions and XOR masks; any blob that differs from the original must
//! fail to unlock with the right password.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use vault_keyring::danger::{insecure_test_params, insecure_test_policy};
use vault_keyring::{Keyring, KeyringOptions, Password, PasswordKeys, SealedKeyring};

const PASSWORD: &str = "fuzz password";

fn original() -> &'static Vec<u8> {
    static SEALED: OnceLock<Vec<u8>> = OnceLock::new();
    SEALED.get_or_init(|| {
        let mut rng = ChaCha20Rng::from_seed([3; 32]);
        let params = insecure_test_params(&mut rng, 1);
        let keys = PasswordKeys::derive_with_policy(
            &Password::from(PASSWORD),
            &params,
            &insecure_test_policy(16),
        )
        .expect("test keys");
        let keyring = Keyring::generate(&mut rng, &KeyringOptions::new().with_created_at(0))
            .expect("keyring");
        SealedKeyring::seal(&mut rng, &keyring, &keys).0.to_bytes()
    })
}

fuzz_target!(|data: &[u8]| {
    let original = original();
    let mut blob = original.clone();
    // Each 3-byte chunk: a 16-bit position and an XOR mask. A final odd byte truncates.
    for chunk in data.chunks(3) {
        match chunk {
            [hi, lo, mask] => {
                let at = usize::from(u16::from_be_bytes([*hi, *lo])) % blob.len();
                blob[at] ^= mask;
            }
            [cut] | [cut, _] => {
                let keep = blob.len() * usize::from(*cut) / 256;
                blob.truncate(keep);
                if blob.is_empty() {
                    break;
                }
            }
            _ => {}
        }
    }
    if blob == *original {
        return;
    }
    let opened = SealedKeyring::from_bytes(&blob).and_then(|s| {
        s.unlock_with_password_policy(&Password::from(PASSWORD), &insecure_test_policy(16))
    });
    assert!(opened.is_err(), "an altered keyring unlocked");
});
