//! Public-key exchange primitives of the key handover (issue #4; docs/spec/exchange.md):
//! HPKE to a P-256 exchange key, and RSA-OAEP wrapping of one 32-byte key to an RSA-4096
//! exchange key.
//!
//! ```text
//! HPKE (RFC 9180), mode_base, single shot, suite
//!   KEM  0x0010 DHKEM(P-256, HKDF-SHA256)   enc = ephemeral public key, 65-byte SEC 1
//!   KDF  0x0001 HKDF-SHA256
//!   AEAD 0x0002 AES-256-GCM                 ciphertext = AES-256-GCM(pt) || tag[16]
//! (enc, ciphertext) = SealBase(pkR, info, aad, pt)      pt = OpenBase(enc, skR, info, aad, ciphertext)
//!
//! RSAES-OAEP (RFC 8017 §7.1), SHA-256, MGF1-SHA-256, empty label, RSA-4096 (e = 65537)
//! wrapped = RSAES-OAEP-ENCRYPT(pk, key[32])            512 bytes
//! ```
//!
//! `info` and `aad` are chosen by the caller (the envelope format fixes them); this module
//! adds no label of its own. Each HPKE seal is single shot (sequence number 0 only), so a
//! sender context is never reused.
//!
//! Every failure to open or unwrap — a malformed, off-curve or identity `enc`, a wrong
//! length, a tag mismatch, an OAEP padding error, a wrapped value that is not a non-zero
//! 32-byte key — is the one [`Error::AuthenticationFailed`] (THREATS I2). An RSA key of a
//! size other than 4096 bits or an exponent other than 65537 is
//! [`Error::UnsupportedFormat`]: it is the caller's key, not attacker input, and says
//! nothing about a ciphertext.
//!
//! ```
//! use rand_core::OsRng;
//! use vault_keyring::exchange::{hpke_open, hpke_seal};
//! use vault_keyring::reexports::p256;
//! use vault_keyring::ExchangePublicKey;
//! use p256::elliptic_curve::sec1::ToEncodedPoint;
//!
//! let secret = p256::SecretKey::random(&mut OsRng);
//! let public = secret.public_key().to_encoded_point(false);
//! let recipient = ExchangePublicKey::from_sec1_bytes(public.as_bytes())?;
//! let (enc, ct) = hpke_seal(&mut OsRng, &recipient, b"info", b"aad", b"key material")?;
//! assert_eq!(&*hpke_open(&secret, &enc, b"info", b"aad", &ct)?, b"key material");
//! assert!(hpke_open(&secret, &enc, b"info", b"other aad", &ct).is_err());
//! # Ok::<(), vault_keyring::Error>(())
//! ```

use hpke::aead::{AeadTag, AesGcm256};
use hpke::kdf::HkdfSha256;
use hpke::kem::DhP256HkdfSha256;
use hpke::{Deserializable, OpModeR, OpModeS, Serializable};
use rand_core::{CryptoRngCore, OsRng};
use rsa::traits::PublicKeyParts;
use rsa::{BigUint, Oaep, RsaPrivateKey, RsaPublicKey};
use sha2::Sha256;
use zeroize::{Zeroize, Zeroizing};

use crate::error::{auth_failed, Error};
use crate::identity::{ExchangePublicKey, P256_POINT_LEN, RSA_EXCHANGE_KEY_BITS};
use crate::secret::SymmetricKey;

/// Length of the HPKE encapsulated key `enc`: an uncompressed SEC 1 P-256 point.
pub const HPKE_ENC_LEN: usize = 65;
/// Length of the AES-256-GCM tag that ends every HPKE ciphertext.
pub const HPKE_TAG_LEN: usize = 16;
/// Length of an RSA-OAEP ciphertext under an RSA-4096 key.
pub const RSA_OAEP_CIPHERTEXT_LEN: usize = 512;
/// HPKE KEM identifier: DHKEM(P-256, HKDF-SHA256) (RFC 9180 §7.1).
pub const HPKE_KEM_ID: u16 = 0x0010;
/// HPKE KDF identifier: HKDF-SHA256 (RFC 9180 §7.2).
pub const HPKE_KDF_ID: u16 = 0x0001;
/// HPKE AEAD identifier: AES-256-GCM (RFC 9180 §7.3).
pub const HPKE_AEAD_ID: u16 = 0x0002;

type Kem = DhP256HkdfSha256;
type Kdf = HkdfSha256;
type Aead = AesGcm256;
type KemPublicKey = <Kem as hpke::Kem>::PublicKey;
type KemPrivateKey = <Kem as hpke::Kem>::PrivateKey;
type EncappedKey = <Kem as hpke::Kem>::EncappedKey;

// The suite the crate implements is the suite this module documents.
const _: () = assert!(<Kem as hpke::Kem>::KEM_ID == HPKE_KEM_ID);
const _: () = assert!(<Kdf as hpke::kdf::Kdf>::KDF_ID == HPKE_KDF_ID);
const _: () = assert!(<Aead as hpke::aead::Aead>::AEAD_ID == HPKE_AEAD_ID);
const _: () = assert!(HPKE_ENC_LEN == P256_POINT_LEN);
const _: () = assert!(RSA_OAEP_CIPHERTEXT_LEN * 8 == RSA_EXCHANGE_KEY_BITS);

const RSA_PUBLIC_EXPONENT: u32 = 65_537;

/// `hpke` 0.13 takes generators of `rand_core` 0.9; ours are `rand_core` 0.6. Bytes pass
/// through unchanged, so a given generator gives the same ephemeral key either way.
struct Rng09<'a, R: CryptoRngCore>(&'a mut R);

impl<R: CryptoRngCore> hpke::rand_core::RngCore for Rng09<'_, R> {
    fn next_u32(&mut self) -> u32 {
        self.0.next_u32()
    }

    fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    fn fill_bytes(&mut self, dst: &mut [u8]) {
        self.0.fill_bytes(dst)
    }
}

impl<R: CryptoRngCore> hpke::rand_core::CryptoRng for Rng09<'_, R> {}

/// HPKE (RFC 9180) base mode, single shot: KEM DHKEM(P-256, HKDF-SHA256) (0x0010), KDF
/// HKDF-SHA256 (0x0001), AEAD AES-256-GCM (0x0002).
///
/// Returns `(enc, ciphertext || tag)`; the ciphertext is `plaintext.len() + HPKE_TAG_LEN`
/// bytes. The ephemeral key is derived (RFC 9180 `DeriveKeyPair`) from 32 bytes drawn from
/// `rng`. The recipient key is an [`ExchangePublicKey`], so it is already a valid,
/// non-identity point. The only failure is a plaintext over AES-GCM's limit of
/// 2^36 − 32 bytes, reported as [`Error::AuthenticationFailed`].
pub fn hpke_seal(
    rng: &mut impl CryptoRngCore,
    recipient: &ExchangePublicKey,
    info: &[u8],
    aad: &[u8],
    plaintext: &[u8],
) -> Result<([u8; HPKE_ENC_LEN], Vec<u8>), Error> {
    let pk = KemPublicKey::from_bytes(&recipient.to_sec1_bytes())
        .map_err(|_| auth_failed("HPKE recipient key does not convert"))?;
    let mut buf = Vec::with_capacity(plaintext.len() + HPKE_TAG_LEN);
    buf.extend_from_slice(plaintext);
    let sealed = hpke::single_shot_seal_in_place_detached::<Aead, Kdf, Kem, _>(
        &OpModeS::Base,
        &pk,
        info,
        &mut buf,
        aad,
        &mut Rng09(rng),
    );
    let (enc, tag) = match sealed {
        Ok(parts) => parts,
        Err(_) => {
            buf.zeroize();
            return Err(auth_failed(
                "HPKE seal failed (plaintext over the AES-GCM limit)",
            ));
        }
    };
    buf.extend_from_slice(&tag.to_bytes());
    let mut enc_bytes = [0u8; HPKE_ENC_LEN];
    enc_bytes.copy_from_slice(&enc.to_bytes());
    Ok((enc_bytes, buf))
}

/// Opens what [`hpke_seal`] made, with the recipient's P-256 secret key.
///
/// `enc` must be a 65-byte uncompressed SEC 1 point, canonical, on the curve and not the
/// identity; it is checked before any secret-key operation. Every failure (bad point,
/// off-curve, identity, compressed form, wrong length, tag mismatch) is
/// [`Error::AuthenticationFailed`]. The tag is verified before anything is decrypted; the
/// plaintext is zeroized on drop, and so is the buffer when opening fails.
pub fn hpke_open(
    recipient: &p256::SecretKey,
    enc: &[u8],
    info: &[u8],
    aad: &[u8],
    ciphertext: &[u8],
) -> Result<Zeroizing<Vec<u8>>, Error> {
    // The same strict decoder as identity bundles: length, 0x04 prefix, on the curve, not
    // the identity, coordinates reduced.
    ExchangePublicKey::from_sec1_bytes(enc)?;
    let encapped =
        EncappedKey::from_bytes(enc).map_err(|_| auth_failed("HPKE enc does not decode"))?;
    if ciphertext.len() < HPKE_TAG_LEN {
        return Err(auth_failed("HPKE ciphertext shorter than its tag"));
    }
    let (body, tag) = ciphertext.split_at(ciphertext.len() - HPKE_TAG_LEN);
    let tag = AeadTag::<Aead>::from_bytes(tag).map_err(|_| auth_failed("HPKE tag length"))?;
    let sk = private_key(recipient)?;
    let mut plaintext = Zeroizing::new(body.to_vec());
    hpke::single_shot_open_in_place_detached::<Aead, Kdf, Kem>(
        &OpModeR::Base,
        &sk,
        &encapped,
        info,
        &mut plaintext,
        aad,
        &tag,
    )
    .map_err(|_| auth_failed("HPKE open failed (tag mismatch)"))?;
    Ok(plaintext)
}

/// The `hpke` crate's copy of a P-256 secret key (it zeroizes its scalar on drop).
fn private_key(secret: &p256::SecretKey) -> Result<KemPrivateKey, Error> {
    let mut bytes = secret.to_bytes();
    let key = KemPrivateKey::from_bytes(&bytes);
    bytes.as_mut_slice().zeroize();
    // A `p256::SecretKey` is a non-zero scalar below the order: conversion cannot fail.
    key.map_err(|_| auth_failed("P-256 secret key does not convert"))
}

/// RSAES-OAEP (RFC 8017) with SHA-256 and MGF1-SHA-256, empty label, wrapping exactly one
/// 32-byte key. Returns the 512-byte ciphertext.
///
/// Only RSA-4096 public keys with exponent 65537 (the identity bundle's exchange key) are
/// accepted; any other key is [`Error::UnsupportedFormat`], checked before any encryption.
pub fn rsa_oaep_wrap(
    rng: &mut impl CryptoRngCore,
    recipient: &RsaPublicKey,
    key: &SymmetricKey,
) -> Result<Vec<u8>, Error> {
    check_rsa_exchange_key(recipient)?;
    let wrapped = recipient
        .encrypt(rng, Oaep::new::<Sha256>(), key.expose_bytes())
        // A 32-byte message under a 4096-bit key is far below OAEP's limit (446 bytes).
        .map_err(|_| unsupported("RSA-OAEP encryption failed"))?;
    if wrapped.len() != RSA_OAEP_CIPHERTEXT_LEN {
        return Err(unsupported("RSA-OAEP ciphertext has the wrong length"));
    }
    Ok(wrapped)
}

/// Unwraps what [`rsa_oaep_wrap`] made with the RSA-4096 exchange private key.
///
/// Any failure — a ciphertext that is not 512 bytes, a ciphertext not below the modulus, an
/// OAEP padding or label-hash error, a plaintext that is not 32 bytes, the all-zero key —
/// is the one [`Error::AuthenticationFailed`]. A private key that is not RSA-4096 with
/// exponent 65537 is [`Error::UnsupportedFormat`], checked before the ciphertext is looked
/// at.
///
/// The decryption is blinded with a fresh factor from the operating system's generator
/// (this affects timing only, never the result). The `rsa` crate is not constant time
/// (RUSTSEC-2023-0071, the Marvin attack): see docs/spec/exchange.md §4 for what limits the
/// exposure.
pub fn rsa_oaep_unwrap(secret: &RsaPrivateKey, ciphertext: &[u8]) -> Result<SymmetricKey, Error> {
    check_rsa_exchange_key(secret)?;
    if ciphertext.len() != RSA_OAEP_CIPHERTEXT_LEN {
        return Err(auth_failed("RSA-OAEP ciphertext has the wrong length"));
    }
    let plaintext = Zeroizing::new(
        secret
            .decrypt_blinded(&mut OsRng, Oaep::new::<Sha256>(), ciphertext)
            .map_err(|_| auth_failed("RSA-OAEP decryption failed"))?,
    );
    if plaintext.len() != SymmetricKey::LEN {
        return Err(auth_failed("RSA-OAEP plaintext is not a 32-byte key"));
    }
    let mut bytes = Zeroizing::new([0u8; SymmetricKey::LEN]);
    bytes.copy_from_slice(&plaintext);
    SymmetricKey::from_bytes(*bytes).ok_or_else(|| auth_failed("RSA-OAEP unwrapped a zero key"))
}

fn check_rsa_exchange_key(key: &impl PublicKeyParts) -> Result<(), Error> {
    if key.n().bits() != RSA_EXCHANGE_KEY_BITS {
        return Err(unsupported("RSA exchange key is not 4096 bits"));
    }
    if key.e() != &BigUint::from(RSA_PUBLIC_EXPONENT) {
        return Err(unsupported("RSA exchange key exponent is not 65537"));
    }
    Ok(())
}

fn unsupported(reason: &'static str) -> Error {
    tracing::debug!(target: "vault_keyring", reason, "unsupported RSA exchange key");
    Error::UnsupportedFormat
}

/// Building blocks for the known-answer tests (RFC 9180 vectors for the other AEADs and the
/// exporter, which this module does not expose). Not part of the stable API.
#[doc(hidden)]
pub mod internal {
    pub use hpke;

    /// The KEM of [`super::hpke_seal`]: DHKEM(P-256, HKDF-SHA256).
    pub type Kem = super::Kem;
    /// The KDF of [`super::hpke_seal`]: HKDF-SHA256.
    pub type Kdf = super::Kdf;
    /// The AEAD of [`super::hpke_seal`]: AES-256-GCM.
    pub type Aead = super::Aead;
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use p256::elliptic_curve::sec1::ToEncodedPoint;
    use proptest::prelude::*;
    use rand_chacha::rand_core::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    fn pair(seed: [u8; 32]) -> (p256::SecretKey, ExchangePublicKey) {
        let secret = p256::SecretKey::random(&mut ChaCha20Rng::from_seed(seed));
        let public = secret.public_key().to_encoded_point(false);
        let public = ExchangePublicKey::from_sec1_bytes(public.as_bytes()).unwrap();
        (secret, public)
    }

    #[test]
    fn seal_shape_and_fresh_ephemeral_keys() {
        let (sk, pk) = pair([1; 32]);
        let mut rng = ChaCha20Rng::from_seed([2; 32]);
        let (enc1, ct1) = hpke_seal(&mut rng, &pk, b"i", b"a", b"hello").unwrap();
        let (enc2, ct2) = hpke_seal(&mut rng, &pk, b"i", b"a", b"hello").unwrap();
        assert_eq!(ct1.len(), 5 + HPKE_TAG_LEN);
        assert_eq!(enc1[0], 0x04);
        assert_ne!(enc1, enc2);
        assert_ne!(ct1, ct2);
        assert_eq!(&*hpke_open(&sk, &enc1, b"i", b"a", &ct1).unwrap(), b"hello");
        assert_eq!(&*hpke_open(&sk, &enc2, b"i", b"a", &ct2).unwrap(), b"hello");
        // The same generator state gives the same ephemeral key: bytes pass through the
        // rand_core 0.6 → 0.9 adapter unchanged.
        let (enc3, ct3) = hpke_seal(
            &mut ChaCha20Rng::from_seed([2; 32]),
            &pk,
            b"i",
            b"a",
            b"hello",
        )
        .unwrap();
        assert_eq!((enc3, ct3), (enc1, ct1));
    }

    #[test]
    fn open_refuses_compressed_and_odd_lengths() {
        let (sk, pk) = pair([3; 32]);
        let (enc, ct) =
            hpke_seal(&mut ChaCha20Rng::from_seed([4; 32]), &pk, b"", b"", b"x").unwrap();
        let point = p256::PublicKey::from_sec1_bytes(&enc).unwrap();
        let compressed = point.to_encoded_point(true);
        for bad in [
            compressed.as_bytes(),
            &enc[..64],
            &[enc.as_slice(), &[0]].concat(),
            &[],
        ] {
            assert_eq!(
                hpke_open(&sk, bad, b"", b"", &ct),
                Err(Error::AuthenticationFailed)
            );
        }
        for len in 0..ct.len() {
            assert_eq!(
                hpke_open(&sk, &enc, b"", b"", &ct[..len]),
                Err(Error::AuthenticationFailed)
            );
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn hpke_round_trip(
            seed in any::<[u8; 32]>(),
            info in proptest::collection::vec(any::<u8>(), 0..2000),
            aad in proptest::collection::vec(any::<u8>(), 0..2000),
            pt in proptest::collection::vec(any::<u8>(), 0..2000),
        ) {
            let (sk, pk) = pair(seed);
            let mut rng = ChaCha20Rng::from_seed(seed);
            let (enc, ct) = hpke_seal(&mut rng, &pk, &info, &aad, &pt).unwrap();
            prop_assert_eq!(ct.len(), pt.len() + HPKE_TAG_LEN);
            prop_assert_eq!(&*hpke_open(&sk, &enc, &info, &aad, &ct).unwrap(), &pt[..]);
            // One more byte of aad or info, or another recipient, and nothing opens.
            let mut longer = aad.clone();
            longer.push(0);
            prop_assert!(hpke_open(&sk, &enc, &info, &longer, &ct).is_err());
            let mut longer = info.clone();
            longer.push(0);
            prop_assert!(hpke_open(&sk, &enc, &longer, &aad, &ct).is_err());
            let mut other_seed = seed;
            other_seed[0] ^= 1;
            let (other, _) = pair(other_seed);
            prop_assert!(hpke_open(&other, &enc, &info, &aad, &ct).is_err());
        }
    }
}
