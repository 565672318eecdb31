//! Secret newtypes: zeroized on drop, never printed, compared in constant time.

use core::fmt;

use rand_core::CryptoRngCore;
use subtle::ConstantTimeEq;
use zeroize::{ZeroizeOnDrop, Zeroizing};

/// A user's password. Zeroized on drop; its `Debug` prints nothing of it.
#[derive(ZeroizeOnDrop)]
pub struct Password(Zeroizing<String>);

impl Password {
    /// Wraps a password. The string's buffer is zeroized when the `Password` is dropped.
    pub fn new(password: String) -> Self {
        Self(Zeroizing::new(password))
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<&str> for Password {
    fn from(value: &str) -> Self {
        Self::new(value.to_owned())
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password([redacted])")
    }
}

/// An AES-256 / HMAC-SHA256 secret of 32 bytes, the input of [`crate::seal`].
///
/// No `Clone`, no `Default` (THREATS C5), `Debug` redacted, zeroized on drop, equality in
/// constant time.
#[derive(ZeroizeOnDrop)]
pub struct SymmetricKey([u8; 32]);

impl SymmetricKey {
    /// Length in bytes.
    pub const LEN: usize = 32;

    /// A fresh key from a cryptographically secure generator.
    pub fn generate(rng: &mut impl CryptoRngCore) -> Self {
        let mut key = [0u8; 32];
        rng.fill_bytes(&mut key);
        Self(key)
    }

    /// A key from its bytes. Refuses the all-zero key, which only a bug or an attacker
    /// produces (THREATS C5).
    pub fn from_bytes(bytes: [u8; 32]) -> Option<Self> {
        let key = Self(bytes);
        if bool::from(key.0.ct_eq(&[0u8; 32])) {
            None
        } else {
            Some(key)
        }
    }

    /// A key output by HKDF. (All-zero happens with probability 2^-256 and would still be
    /// a key nobody else can compute, so it is not refused.)
    pub(crate) fn from_derived(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The raw key bytes, for key derivation and wrapping.
    pub fn expose_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl PartialEq for SymmetricKey {
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl Eq for SymmetricKey {}

impl fmt::Debug for SymmetricKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SymmetricKey([redacted])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_key_is_refused_and_nothing_prints() {
        assert!(SymmetricKey::from_bytes([0; 32]).is_none());
        let key = SymmetricKey::from_bytes([7; 32]);
        assert!(key.is_some());
        assert_eq!(format!("{key:?}"), "Some(SymmetricKey([redacted]))");
        assert_eq!(
            format!("{:?}", Password::from("hunter2")),
            "Password([redacted])"
        );
    }
}
