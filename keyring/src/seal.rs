//! The sealing primitive shared by the keyring and the pages: encrypt-then-MAC with
//! AES-256-CTR and HMAC-SHA256 under keys derived by HKDF-SHA256 (docs/spec/seal.md).
//!
//! ```text
//! nonce  = 16 fresh random bytes
//! okm    = HKDF-SHA256(ikm = secret, salt = nonce,
//!                      info = "vault/v1/seal:" || context, L = 80)
//! K_enc  = okm[0..32]   K_mac = okm[32..64]   IV = okm[64..80]
//! C      = AES-256-CTR(K_enc, IV, plaintext)       (128-bit big-endian counter)
//! T      = HMAC-SHA256(K_mac, u64be(len(ad)) || ad || nonce || C)
//! sealed = nonce || C || T
//! ```
//!
//! Every seal draws a fresh nonce, so every seal has its own encryption key and IV and no CTR
//! key stream is ever reused (THREATS C22). [`open`] recomputes the tag and compares it in
//! constant time before a single byte is decrypted (C9, I1); the HMAC over the ciphertext,
//! keyed from the secret, commits to the secret (C23).
//!
//! ```
//! use vault_keyring::seal::{self, Context};
//! use vault_keyring::SymmetricKey;
//!
//! const NOTES: Context = Context::new("example/notes");
//! let key = SymmetricKey::generate(&mut rand_core::OsRng);
//! let sealed = seal::seal(&mut rand_core::OsRng, &key, NOTES, b"header", b"hello");
//! assert_eq!(&*seal::open(&key, NOTES, b"header", &sealed)?, b"hello");
//! assert!(seal::open(&key, NOTES, b"other header", &sealed).is_err());
//! # Ok::<(), vault_keyring::Error>(())
//! ```

use aes::cipher::{KeyIvInit, StreamCipher};
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use rand_core::CryptoRngCore;
use sha2::Sha256;
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::error::{auth_failed, Error};
use crate::keys::HKDF_SEAL_PREFIX;
use crate::secret::SymmetricKey;

/// Length of the random nonce that starts every sealed box.
pub const NONCE_LEN: usize = 16;
/// Length of the HMAC-SHA256 tag that ends every sealed box (never truncated).
pub const TAG_LEN: usize = 32;
/// Bytes a sealed box adds to its plaintext.
pub const OVERHEAD: usize = NONCE_LEN + TAG_LEN;

pub(crate) type Aes256Ctr = ctr::Ctr128BE<aes::Aes256>;
pub(crate) type HmacSha256 = Hmac<Sha256>;

/// The purpose a seal is made for. Two contexts never open each other's boxes (C21).
///
/// A context is a fixed ASCII string chosen by the format that uses the seal
/// (e.g. `"vault/v1/keyring/body"`); it is not stored, only mixed into the key derivation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Context(&'static str);

impl Context {
    /// A context from its label.
    pub const fn new(label: &'static str) -> Self {
        Self(label)
    }

    /// The label.
    pub const fn label(&self) -> &'static str {
        self.0
    }
}

#[derive(Zeroize, ZeroizeOnDrop)]
struct SealKeys {
    enc: [u8; 32],
    mac: [u8; 32],
    iv: [u8; 16],
}

fn derive(secret: &SymmetricKey, nonce: &[u8; NONCE_LEN], context: Context) -> SealKeys {
    let hk = Hkdf::<Sha256>::new(Some(nonce), secret.expose_bytes());
    let mut okm = Zeroizing::new([0u8; 80]);
    // 80 bytes is far below HKDF-SHA256's 8160-byte limit: expansion cannot fail.
    let _ = hk.expand_multi_info(&[HKDF_SEAL_PREFIX, context.0.as_bytes()], &mut *okm);
    let mut keys = SealKeys {
        enc: [0; 32],
        mac: [0; 32],
        iv: [0; 16],
    };
    keys.enc.copy_from_slice(&okm[..32]);
    keys.mac.copy_from_slice(&okm[32..64]);
    keys.iv.copy_from_slice(&okm[64..80]);
    keys
}

fn tag(keys: &SealKeys, ad: &[u8], nonce: &[u8], ciphertext: &[u8]) -> [u8; TAG_LEN] {
    // HMAC accepts keys of any length: construction cannot fail.
    let mut mac = <HmacSha256 as Mac>::new_from_slice(&keys.mac)
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    mac.update(&(ad.len() as u64).to_be_bytes());
    mac.update(ad);
    mac.update(nonce);
    mac.update(ciphertext);
    mac.finalize().into_bytes().into()
}

/// Seals `plaintext` under `secret` for `context`, authenticating `ad` (associated data that
/// is stored elsewhere, e.g. a format header). Returns `nonce || ciphertext || tag`.
pub fn seal(
    rng: &mut impl CryptoRngCore,
    secret: &SymmetricKey,
    context: Context,
    ad: &[u8],
    plaintext: &[u8],
) -> Vec<u8> {
    let mut nonce = [0u8; NONCE_LEN];
    rng.fill_bytes(&mut nonce);
    seal_with_nonce(secret, context, ad, &nonce, plaintext)
}

/// Seals with a caller-chosen nonce. Only the vector generator and the tests use it; a
/// repeated nonce under one secret repeats the key stream.
pub(crate) fn seal_with_nonce(
    secret: &SymmetricKey,
    context: Context,
    ad: &[u8],
    nonce: &[u8; NONCE_LEN],
    plaintext: &[u8],
) -> Vec<u8> {
    let keys = derive(secret, nonce, context);
    let mut out = Vec::with_capacity(plaintext.len() + OVERHEAD);
    out.extend_from_slice(nonce);
    out.extend_from_slice(plaintext);
    Aes256Ctr::new(&keys.enc.into(), &keys.iv.into()).apply_keystream(&mut out[NONCE_LEN..]);
    let t = tag(&keys, ad, nonce, &out[NONCE_LEN..]);
    out.extend_from_slice(&t);
    out
}

/// Opens a box made by [`seal`] with the same secret, context and associated data.
///
/// The tag is verified in constant time before anything is decrypted; on any mismatch the
/// result is [`Error::AuthenticationFailed`] and no plaintext byte is released.
pub fn open(
    secret: &SymmetricKey,
    context: Context,
    ad: &[u8],
    sealed: &[u8],
) -> Result<Zeroizing<Vec<u8>>, Error> {
    if sealed.len() < OVERHEAD {
        return Err(auth_failed("sealed box shorter than nonce and tag"));
    }
    let (nonce, rest) = sealed.split_at(NONCE_LEN);
    let (ciphertext, received) = rest.split_at(rest.len() - TAG_LEN);
    let mut n = [0u8; NONCE_LEN];
    n.copy_from_slice(nonce);
    let keys = derive(secret, &n, context);
    let expected = tag(&keys, ad, nonce, ciphertext);
    if !bool::from(expected.ct_eq(received)) {
        return Err(auth_failed("seal tag mismatch"));
    }
    let mut plaintext = Zeroizing::new(ciphertext.to_vec());
    Aes256Ctr::new(&keys.enc.into(), &keys.iv.into()).apply_keystream(&mut plaintext);
    Ok(plaintext)
}

#[cfg(test)]
#[path = "seal_kat_tests.rs"]
mod kat_tests;
