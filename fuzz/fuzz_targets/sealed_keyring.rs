//! The sealed-keyring decoder on arbitrary bytes: never panics; whatever decodes re-encodes
//! to the same bytes; unlocking never panics (the test policy caps iterations at 16, so a
//! hostile count costs nothing).
#![no_main]

use libfuzzer_sys::fuzz_target;
use vault_keyring::danger::insecure_test_policy;
use vault_keyring::{Password, SealedKeyring};

fuzz_target!(|data: &[u8]| {
    if let Ok(sealed) = SealedKeyring::from_bytes(data) {
        assert_eq!(sealed.to_bytes(), data);
        let _ =
            sealed.unlock_with_password_policy(&Password::from("fuzz"), &insecure_test_policy(16));
    }
});
