//! The identity-bundle decoder: arbitrary bytes never panic; a decoded bundle re-encodes to
//! the same bytes and yields a fingerprint and safety number. The second half mutates a
//! real bundle: any change must fail verification.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use vault_keyring::{IdentityBundle, Keyring, KeyringOptions};

fn original() -> &'static Vec<u8> {
    static BUNDLE: OnceLock<Vec<u8>> = OnceLock::new();
    BUNDLE.get_or_init(|| {
        let mut rng = ChaCha20Rng::from_seed([4; 32]);
        let keyring = Keyring::generate(&mut rng, &KeyringOptions::new().with_created_at(0))
            .expect("keyring");
        keyring.identity_bundle(&mut rng).to_bytes()
    })
}

fuzz_target!(|data: &[u8]| {
    if let Ok(bundle) = IdentityBundle::from_bytes(data) {
        assert_eq!(bundle.as_bytes(), data);
        let fp = bundle.fingerprint();
        assert_eq!(fp.safety_number().len(), 35);
    }
    // Mutation of a valid bundle: (position, mask) pairs.
    let original = original();
    let mut b = original.clone();
    for pair in data.chunks_exact(3) {
        let at = usize::from(u16::from_be_bytes([pair[0], pair[1]])) % b.len();
        b[at] ^= pair[2];
    }
    if b != *original {
        assert!(
            IdentityBundle::from_bytes(&b).is_err(),
            "an altered bundle verified"
        );
    }
});
