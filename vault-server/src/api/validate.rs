//! Checks of the few client values the server understands: login names, and the public
//! parts of sealed keyrings and identity bundles (docs/spec/api.md §5). Everything else it
//! stores is opaque.

use vault_keyring::{IdentityBundle, SealedKeyring};

use super::error::ApiError;
use crate::auth::UserId;

/// The longest login name, in characters (= bytes: the alphabet is ASCII).
pub const MAX_NAME_LEN: usize = 64;

/// Normalises a login name and checks it: ASCII letters are lowercased, then the name must
/// be 1–64 characters of `a-z 0-9 . _ @ + -`. Nothing else is changed (no trimming, no
/// Unicode case folding: any non-ASCII character is refused).
pub fn normalize_name(name: &str) -> Result<String, ApiError> {
    let lowered = name.to_ascii_lowercase();
    let valid = (1..=MAX_NAME_LEN).contains(&lowered.len())
        && lowered
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._@+-".contains(&b));
    if valid {
        Ok(lowered)
    } else {
        Err(ApiError::BadRequest(
            "name must be 1-64 characters of a-z 0-9 . _ @ + -",
        ))
    }
}

/// A sealed keyring the server accepts for `user`: the structure decodes (magic `VKRG`,
/// format version 1, suite 1, the two wraps and a body; docs/spec/keyring.md §4.2) and its
/// `keyring_id` is `user`. Nothing is opened: the server cannot.
pub fn check_keyring(bytes: &[u8], user: &UserId) -> Result<(), ApiError> {
    let sealed = SealedKeyring::from_bytes(bytes)
        .map_err(|_| ApiError::BadRequest("keyring is not a sealed keyring of version 1"))?;
    if sealed.keyring_id().as_bytes() != user {
        return Err(ApiError::BadRequest("keyring belongs to another user id"));
    }
    Ok(())
}

/// An identity bundle the server accepts for `user`: it decodes strictly, its
/// self-signature verifies, and its keyring id is `user` (docs/spec/keyring.md §6).
pub fn check_identity(bytes: &[u8], user: &UserId) -> Result<(), ApiError> {
    let bundle = IdentityBundle::from_bytes(bytes)
        .map_err(|_| ApiError::BadRequest("identity is not a valid self-signed identity bundle"))?;
    if bundle.keyring_id().as_bytes() != user {
        return Err(ApiError::BadRequest("identity belongs to another user id"));
    }
    Ok(())
}

/// The client-KDF parameters (salt, iteration count) of a stored sealed keyring, read by
/// the keyring crate's own decoder (`SealedKeyring::kdf_params`, keyring.md §4.2); `None`
/// if the blob does not decode.
pub fn kdf_parameters(keyring: &[u8]) -> Option<([u8; 16], u32)> {
    let params = SealedKeyring::from_bytes(keyring).ok()?.kdf_params();
    Some((*params.salt(), params.iterations()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_lowercased_then_checked() {
        assert_eq!(
            normalize_name("Alice.B+x@Example-1_2").ok().as_deref(),
            Some("alice.b+x@example-1_2")
        );
        assert_eq!(
            normalize_name(&"a".repeat(64)).ok().map(|s| s.len()),
            Some(64)
        );
        for bad in [
            "",
            " alice",
            "alice ",
            "al ice",
            "ålice",
            "\u{212a}elvin",
            "a/b",
            "a%b",
            &"a".repeat(65),
        ] {
            assert!(normalize_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    #[allow(clippy::unwrap_used)]
    fn kdf_parameters_come_from_the_header() {
        use rand_chacha::rand_core::SeedableRng;
        use vault_keyring::danger::{insecure_test_policy, params_from_parts};
        use vault_keyring::{Keyring, KeyringOptions, Password, PasswordKeys};

        let mut rng = rand_chacha::ChaCha20Rng::from_seed([3; 32]);
        let keyring = Keyring::generate(&mut rng, &KeyringOptions::new()).unwrap();
        let params = params_from_parts([7; 16], 10);
        let keys = PasswordKeys::derive_with_policy(
            &Password::from("pw"),
            &params,
            &insecure_test_policy(10),
        )
        .unwrap();
        let sealed = SealedKeyring::seal(&mut rng, &keyring, &keys).0.to_bytes();
        assert_eq!(kdf_parameters(&sealed), Some(([7; 16], 10)));
        assert_eq!(kdf_parameters(&sealed[..47]), None);
    }
}
