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

/// The client-KDF parameters in a stored keyring's header (keyring.md §4.2):
/// `kdf_iterations` at offset 28 (`u32` big-endian) and `kdf_salt` at 32..48.
pub fn kdf_parameters(keyring: &[u8]) -> Option<([u8; 16], u32)> {
    let iterations: [u8; 4] = keyring.get(28..32)?.try_into().ok()?;
    let salt: [u8; 16] = keyring.get(32..48)?.try_into().ok()?;
    Some((salt, u32::from_be_bytes(iterations)))
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
    fn kdf_parameters_come_from_the_header() {
        let mut header = vec![0u8; 64];
        header[28..32].copy_from_slice(&600_000u32.to_be_bytes());
        header[32..48].copy_from_slice(&[7; 16]);
        assert_eq!(kdf_parameters(&header), Some(([7; 16], 600_000)));
        assert_eq!(kdf_parameters(&header[..47]), None);
    }
}
