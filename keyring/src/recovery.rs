//! The recovery code (BRIEF R5; docs/spec/keyring.md §5): 256 random bits the user writes
//! down at first login, in a form a person can copy and type back.
//!
//! ```text
//! payload = code (32 bytes) || SHA-256("vault/v1/recovery-code-check\0" || code)[0..3]
//! text    = Crockford base32 of payload (56 characters), in 14 groups of 4 joined by '-'
//! ```
//!
//! Parsing is case-insensitive, reads `O` as `0` and `I`/`L` as `1`, ignores hyphens and
//! white space, and checks the 24-bit checksum before any key derivation runs.
//!
//! The code also yields the [`RecoverySecret`] that a client who lost the password sends
//! to the server to fetch its sealed keyring and replace its login verifier (keyring.md
//! §5.1):
//!
//! ```text
//! recovery_secret = HKDF-SHA256(IKM = code, salt = none, info = "vault/v1/recovery/login", L = 32)
//! ```

use core::fmt;
use std::str::FromStr;
use std::sync::LazyLock;

use data_encoding::{Encoding, Specification};
use hkdf::Hkdf;
use rand_core::CryptoRngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::{ZeroizeOnDrop, Zeroizing};

use crate::error::RecoveryCodeError;
use crate::keys::{HASH_RECOVERY_CHECK, HKDF_RECOVERY_LOGIN};

const CODE_LEN: usize = 32;
const CHECK_LEN: usize = 3;
/// Characters in a recovery code, separators excluded.
pub const RECOVERY_CODE_CHARS: usize = 56;
const GROUP: usize = 4;

static CROCKFORD: LazyLock<Option<Encoding>> = LazyLock::new(|| {
    let mut spec = Specification::new();
    spec.symbols.push_str("0123456789ABCDEFGHJKMNPQRSTVWXYZ");
    spec.translate.from.push_str("abcdefghjkmnpqrstvwxyzoOiIlL");
    spec.translate.to.push_str("ABCDEFGHJKMNPQRSTVWXYZ001111");
    spec.encoding().ok()
});

fn crockford() -> &'static Encoding {
    // The specification above is a constant that data-encoding accepts (a unit test pins it).
    match CROCKFORD.as_ref() {
        Some(e) => e,
        None => unreachable!("the Crockford base32 specification is valid"),
    }
}

/// A 256-bit recovery code. Zeroized on drop; `Debug` redacted; shown to the user only
/// through [`RecoveryCode::expose_formatted`].
#[derive(ZeroizeOnDrop)]
pub struct RecoveryCode([u8; CODE_LEN]);

impl RecoveryCode {
    pub(crate) fn generate(rng: &mut impl CryptoRngCore) -> Self {
        let mut code = [0u8; CODE_LEN];
        rng.fill_bytes(&mut code);
        Self(code)
    }

    pub(crate) fn expose_bytes(&self) -> &[u8; CODE_LEN] {
        &self.0
    }

    fn checksum(code: &[u8; CODE_LEN]) -> [u8; CHECK_LEN] {
        let digest = Sha256::new()
            .chain_update(HASH_RECOVERY_CHECK)
            .chain_update(code)
            .finalize();
        let mut check = [0u8; CHECK_LEN];
        check.copy_from_slice(&digest[..CHECK_LEN]);
        check
    }

    /// The code as the user writes it down: 56 characters in 14 groups of 4,
    /// e.g. `7K3M-...-Q0ZD`.
    pub fn expose_formatted(&self) -> Zeroizing<String> {
        let mut payload = Zeroizing::new([0u8; CODE_LEN + CHECK_LEN]);
        payload[..CODE_LEN].copy_from_slice(&self.0);
        payload[CODE_LEN..].copy_from_slice(&Self::checksum(&self.0));
        let plain = Zeroizing::new(crockford().encode(&*payload));
        let mut out = Zeroizing::new(String::with_capacity(RECOVERY_CODE_CHARS + 13));
        for (i, c) in plain.chars().enumerate() {
            if i > 0 && i % GROUP == 0 {
                out.push('-');
            }
            out.push(c);
        }
        out
    }

    /// The recovery login secret of this code (docs/spec/keyring.md §5.1): what the client
    /// sends to the server instead of the code, to fetch its sealed keyring and replace its
    /// login verifier after the password was lost. The server keeps only a verifier of it.
    ///
    /// It is an HKDF output with its own label, so it is independent of the key that opens
    /// the keyring's recovery wrap (a different `info` and a different salt): whoever learns
    /// it (the server, a stolen verifier database cracked at 2^256 cost) learns nothing about
    /// the recovery key. No slow KDF is needed because the code is 256 uniformly random bits:
    /// there is nothing to guess.
    pub fn recovery_secret(&self) -> RecoverySecret {
        let hk = Hkdf::<Sha256>::new(None, &self.0);
        let mut secret = [0u8; 32];
        // A 32-byte output: HKDF-Expand cannot fail.
        let _ = hk.expand(HKDF_RECOVERY_LOGIN, &mut secret);
        RecoverySecret(secret)
    }

    /// Parses a typed code, checking length, alphabet and checksum.
    pub fn parse(text: &str) -> Result<Self, RecoveryCodeError> {
        let compact: Zeroizing<String> = Zeroizing::new(
            text.chars()
                .filter(|c| *c != '-' && !c.is_whitespace())
                .collect(),
        );
        let chars = compact.chars().count();
        if chars != RECOVERY_CODE_CHARS {
            return Err(RecoveryCodeError::Length(chars));
        }
        if !compact.is_ascii() {
            return Err(RecoveryCodeError::Character);
        }
        let mut payload = Zeroizing::new([0u8; CODE_LEN + CHECK_LEN]);
        let written = crockford()
            .decode_mut(compact.as_bytes(), &mut *payload)
            .map_err(|_| RecoveryCodeError::Character)?;
        if written != CODE_LEN + CHECK_LEN {
            return Err(RecoveryCodeError::Length(chars));
        }
        let mut code = [0u8; CODE_LEN];
        code.copy_from_slice(&payload[..CODE_LEN]);
        let code = Self(code);
        let check = Self::checksum(&code.0);
        if !bool::from(check.ct_eq(&payload[CODE_LEN..])) {
            return Err(RecoveryCodeError::Checksum);
        }
        Ok(code)
    }
}

impl FromStr for RecoveryCode {
    type Err = RecoveryCodeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// The recovery login secret ([`RecoveryCode::recovery_secret`]): 32 bytes the client
/// sends to the server to prove it holds the recovery code, without sending the code.
/// Zeroized on drop; `Debug` redacted.
#[derive(ZeroizeOnDrop)]
pub struct RecoverySecret([u8; 32]);

impl RecoverySecret {
    /// The 32 bytes to send over the (TLS) recovery request.
    pub fn expose_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for RecoverySecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RecoverySecret([redacted])")
    }
}

impl fmt::Debug for RecoveryCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RecoveryCode([redacted])")
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use rand_core::OsRng;

    #[test]
    fn alphabet_specification_is_valid() {
        assert!(CROCKFORD.is_some());
    }

    #[test]
    fn round_trip_and_form() {
        let code = RecoveryCode::generate(&mut OsRng);
        let text = code.expose_formatted();
        assert_eq!(text.len(), RECOVERY_CODE_CHARS + 13);
        assert_eq!(text.split('-').count(), 14);
        let back = RecoveryCode::parse(&text).unwrap();
        assert_eq!(back.0, code.0);
        // Lower case, no separators, O for 0, l for 1.
        let sloppy: String = text
            .replace('-', " ")
            .to_lowercase()
            .replace('0', "o")
            .replace('1', "l");
        assert_eq!(RecoveryCode::parse(&sloppy).unwrap().0, code.0);
    }

    #[test]
    fn every_single_character_typo_is_caught() {
        // Fixed codes, so the outcome is a fact about these codes and not a 2^-24 gamble.
        for seed in 0..3u8 {
            let code = RecoveryCode(core::array::from_fn(|i| {
                (i as u8).wrapping_mul(37).wrapping_add(seed)
            }));
            assert_every_typo_caught(&code);
        }
    }

    fn assert_every_typo_caught(code: &RecoveryCode) {
        let text: String = code.expose_formatted().replace('-', "");
        let alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
        for i in 0..text.len() {
            for sub in alphabet.chars() {
                let mut typo: Vec<char> = text.chars().collect();
                if typo[i] == sub {
                    continue;
                }
                typo[i] = sub;
                let typo: String = typo.into_iter().collect();
                let err = RecoveryCode::parse(&typo).err();
                assert!(err.is_some(), "typo at {i} accepted");
            }
        }
    }

    /// The recovery secret is the HKDF of keyring.md §5.1, computed here from the spec's
    /// formula with the `hmac` crate (RFC 5869 by hand), and differs from the recovery key
    /// and from the code.
    #[test]
    fn recovery_secret_is_the_specified_hkdf() {
        use hmac::{Hmac, Mac};
        let code = RecoveryCode(core::array::from_fn(|i| i as u8));
        // Extract with no salt = HashLen zero bytes; one Expand block (L = 32).
        let mut extract = Hmac::<Sha256>::new_from_slice(&[0u8; 32]).unwrap();
        extract.update(&code.0);
        let prk = extract.finalize().into_bytes();
        let mut expand = Hmac::<Sha256>::new_from_slice(&prk).unwrap();
        expand.update(b"vault/v1/recovery/login");
        expand.update(&[1]);
        let t1 = expand.finalize().into_bytes();
        let secret = code.recovery_secret();
        assert_eq!(&secret.expose_bytes()[..], &t1[..]);
        assert_ne!(secret.expose_bytes(), &code.0);
        let salt = [9u8; 16];
        let wrap_key = crate::keyring::recovery_key_for_tests(&code, &salt);
        assert_ne!(secret.expose_bytes(), wrap_key.expose_bytes());
        assert_eq!(format!("{secret:?}"), "RecoverySecret([redacted])");
        // Deterministic: the same code gives the same secret on every device.
        let again = RecoveryCode::parse(&code.expose_formatted()).unwrap();
        assert_eq!(
            again.recovery_secret().expose_bytes(),
            secret.expose_bytes()
        );
    }

    #[test]
    fn refusals() {
        assert_eq!(
            RecoveryCode::parse("ABCD").err(),
            Some(RecoveryCodeError::Length(4))
        );
        let bad = "U".repeat(RECOVERY_CODE_CHARS);
        assert_eq!(
            RecoveryCode::parse(&bad).err(),
            Some(RecoveryCodeError::Character)
        );
        let non_ascii = "é".repeat(RECOVERY_CODE_CHARS);
        assert_eq!(
            RecoveryCode::parse(&non_ascii).err(),
            Some(RecoveryCodeError::Character)
        );
    }
}
