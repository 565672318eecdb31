//! Identity bundles: the public half of a keyring, self-signed, with a stable fingerprint and
//! a safety number people compare out of band (THREATS C2, C3; docs/spec/keyring.md §6).
//!
//! ```text
//! tbs    = "VIDB" || u16 version (1) || u16 suite (1) || keyring_id[16] || u32 generation
//!          || u64 created_at || vec16(RSA-2048 signing key, PKCS#1 DER)
//!          || P-256 exchange key (65 bytes, uncompressed SEC 1)
//!          || u8 flags (bit 0: RSA-4096 exchange key follows)
//!          || [vec16(RSA-4096 exchange key, PKCS#1 DER)]
//! bundle = tbs || RSASSA-PSS-SHA256(salt 32, signing key, "vault/v1/identity-bundle\0" || tbs)
//! fingerprint = SHA-256("vault/v1/fingerprint\0" || tbs)
//! ```
//!
//! Decoding is strict: canonical DER only, RSA moduli of exactly 2048 (signing) and 4096
//! (exchange) bits with exponent 65537, a valid non-identity P-256 point in uncompressed
//! form, no unknown flag, no trailing byte, and a self-signature that verifies. An
//! [`IdentityBundle`] value therefore always holds a verified bundle.

use core::fmt;

use p256::elliptic_curve::sec1::ToEncodedPoint;
use rsa::pkcs1::{
    DecodeRsaPrivateKey, DecodeRsaPublicKey, EncodeRsaPrivateKey, EncodeRsaPublicKey,
};
use rsa::signature::{RandomizedSigner, SignatureEncoding, Verifier};
use rsa::traits::PublicKeyParts;
use rsa::{BigUint, RsaPrivateKey, RsaPublicKey};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use rand_core::CryptoRngCore;

use crate::error::{auth_failed, Error};
use crate::keys::{HASH_FINGERPRINT, SIG_IDENTITY};
use crate::wire::{Malformed, Reader, Writer};

/// Magic bytes that start an identity bundle.
const MAGIC: &[u8; 4] = b"VIDB";
/// The only bundle version this library writes and reads.
pub(crate) const VERSION: u16 = 1;
/// Algorithm suite 1: RSA-2048 PSS-SHA256 signing, P-256 exchange, optional RSA-4096 OAEP.
pub(crate) const SUITE: u16 = 1;
/// Bit size of the signing key.
pub const SIGNING_KEY_BITS: usize = 2048;
/// Bit size of the optional RSA exchange key.
pub const RSA_EXCHANGE_KEY_BITS: usize = 4096;
/// Length of an RSA-2048 signature.
pub const SIGNATURE_LEN: usize = SIGNING_KEY_BITS / 8;
/// Length of an uncompressed SEC 1 P-256 point.
pub const P256_POINT_LEN: usize = 65;
/// PSS salt length (the hash length, as RFC 8017 recommends and WebCrypto defaults to).
pub(crate) const PSS_SALT_LEN: usize = 32;
const FLAG_RSA_EXCHANGE: u8 = 0x01;
const PUBLIC_EXPONENT: u32 = 65_537;

/// The 128-bit random identifier of a keyring (and of the identity it publishes).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyringId([u8; 16]);

impl KeyringId {
    /// Length in bytes.
    pub const LEN: usize = 16;

    /// A fresh random id.
    pub fn generate(rng: &mut impl CryptoRngCore) -> Self {
        let mut id = [0u8; 16];
        rng.fill_bytes(&mut id);
        Self(id)
    }

    /// An id from its bytes.
    pub const fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(bytes)
    }

    /// The bytes.
    pub const fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

impl fmt::Display for KeyringId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for KeyringId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyringId({self})")
    }
}

/// A P-256 public key used for key exchange (ECDH / HPKE), validated: on the curve, not the
/// point at infinity (THREATS C5).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ExchangePublicKey(p256::PublicKey);

impl ExchangePublicKey {
    /// Decodes an uncompressed SEC 1 point (`0x04 || x || y`, 65 bytes). Compressed and
    /// hybrid forms, the identity, off-curve points and coordinates not below the field
    /// prime are all refused with [`Error::AuthenticationFailed`].
    pub fn from_sec1_bytes(bytes: &[u8]) -> Result<Self, Error> {
        if bytes.len() != P256_POINT_LEN || bytes[0] != 0x04 {
            return Err(auth_failed("P-256 point is not 65-byte uncompressed SEC 1"));
        }
        let key = p256::PublicKey::from_sec1_bytes(bytes)
            .map_err(|_| auth_failed("P-256 point is invalid or off the curve"))?;
        // Canonical: re-encoding gives the same bytes (coordinates reduced mod p).
        if key.to_encoded_point(false).as_bytes() != bytes {
            return Err(auth_failed("P-256 point is not canonical"));
        }
        Ok(Self(key))
    }

    /// The 65-byte uncompressed SEC 1 encoding.
    pub fn to_sec1_bytes(&self) -> [u8; P256_POINT_LEN] {
        let mut out = [0u8; P256_POINT_LEN];
        out.copy_from_slice(self.0.to_encoded_point(false).as_bytes());
        out
    }

    /// The underlying RustCrypto key, for the handover layer.
    pub fn as_p256(&self) -> &p256::PublicKey {
        &self.0
    }

    pub(crate) fn from_p256(key: p256::PublicKey) -> Self {
        Self(key)
    }
}

/// Decodes a PKCS#1 `RSAPublicKey` strictly: canonical DER, exactly `bits` bits, e = 65537.
pub(crate) fn decode_rsa_public(der: &[u8], bits: usize) -> Result<RsaPublicKey, Malformed> {
    let key = RsaPublicKey::from_pkcs1_der(der).map_err(|_| "RSA public key is not PKCS#1 DER")?;
    let again = key
        .to_pkcs1_der()
        .map_err(|_| "RSA public key does not re-encode")?;
    if again.as_bytes() != der {
        return Err("RSA public key DER is not canonical");
    }
    check_rsa_shape(&key, bits)?;
    Ok(key)
}

/// Decodes a PKCS#1 `RSAPrivateKey` strictly: canonical DER, consistent components,
/// exactly `bits` bits, e = 65537.
pub(crate) fn decode_rsa_private(der: &[u8], bits: usize) -> Result<RsaPrivateKey, Malformed> {
    let key =
        RsaPrivateKey::from_pkcs1_der(der).map_err(|_| "RSA private key is not PKCS#1 DER")?;
    key.validate()
        .map_err(|_| "RSA private key components are inconsistent")?;
    let again = key
        .to_pkcs1_der()
        .map_err(|_| "RSA private key does not re-encode")?;
    if !bool::from(again.as_bytes().ct_eq(der)) {
        return Err("RSA private key DER is not canonical");
    }
    check_rsa_shape(&key.to_public_key(), bits)?;
    Ok(key)
}

fn check_rsa_shape(key: &RsaPublicKey, bits: usize) -> Result<(), Malformed> {
    if key.n().bits() != bits {
        return Err("RSA modulus has the wrong size");
    }
    if key.e() != &BigUint::from(PUBLIC_EXPONENT) {
        return Err("RSA public exponent is not 65537");
    }
    Ok(())
}

pub(crate) fn encode_rsa_public(key: &RsaPublicKey) -> Vec<u8> {
    match key.to_pkcs1_der() {
        Ok(doc) => doc.as_bytes().to_vec(),
        // Encoding a key this crate generated or validated cannot fail.
        Err(_) => unreachable!("a validated RSA public key encodes"),
    }
}

pub(crate) fn encode_rsa_private(key: &RsaPrivateKey) -> Zeroizing<Vec<u8>> {
    match key.to_pkcs1_der() {
        Ok(doc) => Zeroizing::new(doc.as_bytes().to_vec()),
        Err(_) => unreachable!("a validated RSA private key encodes"),
    }
}

/// The public keys of a keyring, as it publishes them.
pub(crate) struct PublicParts<'a> {
    pub id: KeyringId,
    pub generation: u32,
    pub created_at: u64,
    pub signing: &'a RsaPublicKey,
    pub exchange: ExchangePublicKey,
    pub rsa_exchange: Option<&'a RsaPublicKey>,
}

/// The fingerprint of the bundle that `parts` would make (the fingerprint does not depend on
/// the randomized signature).
pub(crate) fn fingerprint_of(parts: &PublicParts<'_>) -> Fingerprint {
    fingerprint_of_tbs(&encode_tbs(parts))
}

/// fingerprint = SHA-256("vault/v1/fingerprint\0" || tbs).
fn fingerprint_of_tbs(tbs: &[u8]) -> Fingerprint {
    let digest = Sha256::new()
        .chain_update(HASH_FINGERPRINT)
        .chain_update(tbs)
        .finalize();
    Fingerprint(digest.into())
}

fn encode_tbs(parts: &PublicParts<'_>) -> Vec<u8> {
    let mut tbs = Vec::with_capacity(1024);
    tbs.extend_from_slice(MAGIC);
    tbs.put_u16(VERSION);
    tbs.put_u16(SUITE);
    tbs.extend_from_slice(parts.id.as_bytes());
    tbs.put_u32(parts.generation);
    tbs.put_u64(parts.created_at);
    tbs.put_vec16(&encode_rsa_public(parts.signing));
    tbs.extend_from_slice(&parts.exchange.to_sec1_bytes());
    match parts.rsa_exchange {
        Some(key) => {
            tbs.push(FLAG_RSA_EXCHANGE);
            tbs.put_vec16(&encode_rsa_public(key));
        }
        None => tbs.push(0),
    }
    tbs
}

/// The signed, public half of a keyring: who you are to other users.
///
/// Obtained from [`crate::Keyring::identity_bundle`] (own) or [`IdentityBundle::from_bytes`]
/// (someone else's, e.g. fetched from the server). Either way its self-signature has been
/// verified. Verifying the self-signature only proves the bundle is internally consistent;
/// that it belongs to the person you think is what the [`Fingerprint`] comparison proves.
#[derive(Clone)]
pub struct IdentityBundle {
    id: KeyringId,
    generation: u32,
    created_at: u64,
    signing: RsaPublicKey,
    exchange: ExchangePublicKey,
    rsa_exchange: Option<RsaPublicKey>,
    tbs_len: usize,
    encoded: Vec<u8>,
}

impl fmt::Debug for IdentityBundle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdentityBundle")
            .field("id", &self.id)
            .field("generation", &self.generation)
            .field("fingerprint", &self.fingerprint())
            .finish_non_exhaustive()
    }
}

impl PartialEq for IdentityBundle {
    /// Two bundles are equal when they publish the same keys under the same id, generation
    /// and time (the randomized signature may differ).
    fn eq(&self, other: &Self) -> bool {
        self.tbs() == other.tbs()
    }
}

impl Eq for IdentityBundle {}

impl IdentityBundle {
    pub(crate) fn sign(
        rng: &mut impl CryptoRngCore,
        parts: &PublicParts<'_>,
        signing_key: &RsaPrivateKey,
    ) -> Self {
        let tbs = encode_tbs(parts);
        let signature = sign_pss(rng, signing_key, SIG_IDENTITY, &tbs);
        let tbs_len = tbs.len();
        let mut encoded = tbs;
        encoded.extend_from_slice(&signature);
        Self {
            id: parts.id,
            generation: parts.generation,
            created_at: parts.created_at,
            signing: parts.signing.clone(),
            exchange: parts.exchange,
            rsa_exchange: parts.rsa_exchange.cloned(),
            tbs_len,
            encoded,
        }
    }

    /// Decodes a bundle and verifies its self-signature.
    ///
    /// Fails with [`Error::UnsupportedFormat`] for an unknown version or suite and with
    /// [`Error::AuthenticationFailed`] for anything malformed or a signature that does not
    /// verify.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        let mut r = Reader::new(bytes);
        let magic = r.take(4).map_err(auth_failed)?;
        if magic != MAGIC {
            return Err(auth_failed("identity bundle magic"));
        }
        let version = r.u16().map_err(auth_failed)?;
        let suite = r.u16().map_err(auth_failed)?;
        if version != VERSION || suite != SUITE {
            return Err(Error::UnsupportedFormat);
        }
        Self::decode_body(r, bytes).map_err(auth_failed)
    }

    fn decode_body(mut r: Reader<'_>, bytes: &[u8]) -> Result<Self, Malformed> {
        let id = KeyringId(r.array()?);
        let generation = r.u32()?;
        let created_at = r.u64()?;
        let signing = decode_rsa_public(r.vec16()?, SIGNING_KEY_BITS)?;
        let exchange =
            ExchangePublicKey::from_sec1_bytes(r.take(P256_POINT_LEN)?).map_err(|_| "P-256")?;
        let rsa_exchange = match r.u8()? {
            0 => None,
            FLAG_RSA_EXCHANGE => Some(decode_rsa_public(r.vec16()?, RSA_EXCHANGE_KEY_BITS)?),
            _ => return Err("unknown identity bundle flags"),
        };
        let tbs_len = bytes.len() - r.remaining();
        let signature = r.take(SIGNATURE_LEN)?;
        r.finish()?;
        verify_pss(&signing, SIG_IDENTITY, &bytes[..tbs_len], signature)?;
        Ok(Self {
            id,
            generation,
            created_at,
            signing,
            exchange,
            rsa_exchange,
            tbs_len,
            encoded: bytes.to_vec(),
        })
    }

    /// The encoded bundle, signature included.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.encoded.clone()
    }

    /// The encoded bundle, signature included.
    pub fn as_bytes(&self) -> &[u8] {
        &self.encoded
    }

    fn tbs(&self) -> &[u8] {
        &self.encoded[..self.tbs_len]
    }

    /// The keyring id this identity belongs to.
    pub fn keyring_id(&self) -> KeyringId {
        self.id
    }

    /// The key generation (raised when the keyring's key pairs are replaced).
    pub fn generation(&self) -> u32 {
        self.generation
    }

    /// Creation time of the keyring, seconds since the Unix epoch (as its owner claims it).
    pub fn created_at(&self) -> u64 {
        self.created_at
    }

    /// The RSA-2048 signing key (RSASSA-PSS-SHA256).
    pub fn signing_key(&self) -> &RsaPublicKey {
        &self.signing
    }

    /// The P-256 exchange key.
    pub fn exchange_key(&self) -> &ExchangePublicKey {
        &self.exchange
    }

    /// The optional RSA-4096 exchange key (RSAES-OAEP-SHA256).
    pub fn rsa_exchange_key(&self) -> Option<&RsaPublicKey> {
        self.rsa_exchange.as_ref()
    }

    /// The stable fingerprint: SHA-256 over the signed part, so re-signing the same keys
    /// (PSS is randomized) does not change it, and any change of key, id or generation does.
    pub fn fingerprint(&self) -> Fingerprint {
        fingerprint_of_tbs(self.tbs())
    }

    /// Verifies a signature made by this identity's signing key over `message` in the
    /// signature domain `domain` (a NUL-terminated label of the format that signs).
    pub fn verify(&self, domain: &[u8], message: &[u8], signature: &[u8]) -> Result<(), Error> {
        verify_pss(&self.signing, domain, message, signature).map_err(auth_failed)
    }
}

pub(crate) fn sign_pss(
    rng: &mut impl CryptoRngCore,
    key: &RsaPrivateKey,
    domain: &[u8],
    message: &[u8],
) -> Vec<u8> {
    let signer =
        rsa::pss::BlindedSigningKey::<Sha256>::new_with_salt_len(key.clone(), PSS_SALT_LEN);
    let mut msg = Vec::with_capacity(domain.len() + message.len());
    msg.extend_from_slice(domain);
    msg.extend_from_slice(message);
    match signer.try_sign_with_rng(rng, &msg) {
        Ok(sig) => sig.to_vec(),
        // Signing with a validated 2048-bit key only fails if the RNG fails.
        Err(_) => unreachable!("RSA-PSS signing with a valid key"),
    }
}

pub(crate) fn verify_pss(
    key: &RsaPublicKey,
    domain: &[u8],
    message: &[u8],
    signature: &[u8],
) -> Result<(), Malformed> {
    if signature.len() != key.size() {
        return Err("signature length differs from the modulus length");
    }
    let sig = rsa::pss::Signature::try_from(signature).map_err(|_| "signature encoding")?;
    let verifier = rsa::pss::VerifyingKey::<Sha256>::new_with_salt_len(key.clone(), PSS_SALT_LEN);
    let mut msg = Vec::with_capacity(domain.len() + message.len());
    msg.extend_from_slice(domain);
    msg.extend_from_slice(message);
    verifier
        .verify(&msg, &sig)
        .map_err(|_| "signature does not verify")
}

/// `decode_rsa_public` for the test suites: strict PKCS#1 decoding of a key of `bits`.
pub fn decode_rsa_public_strict(der: &[u8], bits: usize) -> Result<RsaPublicKey, Error> {
    decode_rsa_public(der, bits).map_err(auth_failed)
}

/// `verify_pss` for the test suites: RSASSA-PSS-SHA256 (MGF1-SHA256, salt 32) over
/// `domain || message`.
pub fn verify_pss_public(
    key: &RsaPublicKey,
    domain: &[u8],
    message: &[u8],
    signature: &[u8],
) -> Result<(), Error> {
    verify_pss(key, domain, message, signature).map_err(auth_failed)
}

/// The SHA-256 fingerprint of an identity bundle.
#[derive(Clone, Copy)]
pub struct Fingerprint([u8; 32]);

impl Fingerprint {
    /// The 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// A fingerprint from its bytes (e.g. one pinned in a local store).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The 30-digit safety number of this one identity: 6 groups of 5 digits, each group
    /// the big-endian value of 5 consecutive fingerprint bytes modulo 100,000
    /// (docs/spec/keyring.md §6.3). It has about 99.7 bits of the fingerprint.
    pub fn safety_number(&self) -> String {
        let mut out = String::with_capacity(35);
        for (i, chunk) in self.0.chunks(5).take(6).enumerate() {
            let mut v: u64 = 0;
            for b in chunk {
                v = (v << 8) | u64::from(*b);
            }
            if i > 0 {
                out.push(' ');
            }
            out.push_str(&format!("{:05}", v % 100_000));
        }
        out
    }

    /// The 60-digit number two people read to each other: both safety numbers, the lower
    /// fingerprint first, so both sides see the same digits.
    pub fn pair_safety_number(a: &Fingerprint, b: &Fingerprint) -> String {
        let (first, second) = if a.0 <= b.0 { (a, b) } else { (b, a) };
        format!("{} {}", first.safety_number(), second.safety_number())
    }
}

impl PartialEq for Fingerprint {
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl Eq for Fingerprint {}

impl fmt::Display for Fingerprint {
    /// Lower-case hex in 8 groups of 8 characters.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, chunk) in self.0.chunks(4).enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            for b in chunk {
                write!(f, "{b:02x}")?;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn safety_number_shape() {
        let fp = Fingerprint([0xff; 32]);
        // 0xffffffffff = 1099511627775, mod 100000 = 27775
        assert_eq!(fp.safety_number(), "27775 27775 27775 27775 27775 27775");
        let zero = Fingerprint([0; 32]);
        assert_eq!(zero.safety_number(), "00000 00000 00000 00000 00000 00000");
        let pair = Fingerprint::pair_safety_number(&fp, &zero);
        assert_eq!(pair, Fingerprint::pair_safety_number(&zero, &fp));
        assert!(pair.starts_with("00000"));
    }

    #[test]
    fn exchange_key_refuses_non_uncompressed_forms() {
        assert!(ExchangePublicKey::from_sec1_bytes(&[]).is_err());
        assert!(ExchangePublicKey::from_sec1_bytes(&[0u8; 65]).is_err());
        let mut p = [0u8; 65];
        p[0] = 4;
        assert!(ExchangePublicKey::from_sec1_bytes(&p).is_err());
    }
}
