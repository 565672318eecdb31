//! The sealed-keyring decoder on arbitrary bytes: never panics; whatever decodes re-encodes
//! to the same bytes; unlocking never panics (the test policy caps iterations at 16, so a
//! hostile count is refused before any PBKDF2 work). The seed `valid-1-iteration` is sealed
//! under the password tried here, so the body decoder is reached too; a keyring that does
//! unlock must agree with the header it came from.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vault_keyring::danger::insecure_test_policy;
use vault_keyring::{Password, SealedKeyring};

fuzz_target!(|data: &[u8]| {
    let Ok(sealed) = SealedKeyring::from_bytes(data) else {
        return;
    };
    assert_eq!(sealed.to_bytes(), data, "decode/encode round trip");
    let policy = insecure_test_policy(16);
    if let Ok((keyring, keys)) =
        sealed.unlock_with_password_policy(&Password::from("fuzz"), &policy)
    {
        assert_eq!(keyring.id(), sealed.keyring_id());
        assert_eq!(keyring.generation(), sealed.generation());
        assert_eq!(*keys.params(), sealed.kdf_params());
    }
});
