//! The keyring and its sealed form (BRIEF R1, R2, R5; docs/spec/keyring.md).
//!
//! ```text
//! header   = "VKRG" || u16 version (1) || u16 suite (1) || keyring_id[16] || u32 generation
//!            || u32 kdf_iterations || kdf_salt[16] || recovery_salt[16]          (64 bytes)
//! common   = header[0..28]                      (magic .. generation)
//! pw_wrap  = seal(unlock_key,   "vault/v1/keyring/password-wrap",
//!                 ad = common || header[28..48] (kdf params), KMK)             (80 bytes)
//! rc_wrap  = seal(recovery_key, "vault/v1/keyring/recovery-wrap",
//!                 ad = common || recovery_salt, KMK)                            (80 bytes)
//! body     = seal(KMK, "vault/v1/keyring/body", ad = header || pw_wrap || rc_wrap, keys)
//! sealed   = header || pw_wrap || rc_wrap || body
//! recovery_key = HKDF-SHA256(ikm = recovery code, salt = recovery_salt,
//!                            info = "vault/v1/recovery/wrap", L = 32)
//! ```
//!
//! The keyring master key (KMK) is random. The password and the recovery code each wrap it;
//! a password change re-wraps it (same KMK, same keys, the recovery wrapping carried over);
//! rotating the recovery code draws a new KMK, so the old code opens nothing of the new blob.

use core::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use hkdf::Hkdf;
use rand_core::CryptoRngCore;
use rsa::{RsaPrivateKey, RsaPublicKey};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::error::{auth_failed, Error};
use crate::identity::{
    self, decode_rsa_private, encode_rsa_private, ExchangePublicKey, Fingerprint, IdentityBundle,
    KeyringId, PublicParts, RSA_EXCHANGE_KEY_BITS, SIGNING_KEY_BITS,
};
use crate::kdf::{KdfParams, KdfPolicy, PasswordKeys, SALT_LEN};
use crate::keys::{HKDF_RECOVERY, SEAL_KEYRING_BODY, SEAL_PASSWORD_WRAP, SEAL_RECOVERY_WRAP};
use crate::recovery::RecoveryCode;
use crate::seal::{self, Context};
use crate::secret::{Password, SymmetricKey};
use crate::wire::{Malformed, Reader, Writer};

const MAGIC: &[u8; 4] = b"VKRG";
/// The only sealed-keyring version this library writes and reads.
pub const FORMAT_VERSION: u16 = 1;
/// The only algorithm suite of version 1 (docs/spec/keyring.md §1).
pub const SUITE: u16 = 1;
const COMMON_LEN: usize = 28;
const HEADER_LEN: usize = 64;
const WRAP_LEN: usize = SymmetricKey::LEN + seal::OVERHEAD;
const FLAG_RSA_EXCHANGE: u8 = 0x01;

const BODY: Context = Context::new(SEAL_KEYRING_BODY);
const PASSWORD_WRAP: Context = Context::new(SEAL_PASSWORD_WRAP);
const RECOVERY_WRAP: Context = Context::new(SEAL_RECOVERY_WRAP);

/// The purpose of each of the keyring's AES-256 keys. A key is used for its purpose only.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyPurpose {
    /// Wraps the keys of the collections this user owns (vault-core).
    CollectionWrap,
    /// Seals state the library keeps on this device: pinned fingerprints, manifest
    /// high-water marks, the sync cursor (vault-core).
    LocalState,
    /// HMAC key that turns collection and object names into opaque lookup ids, so the
    /// server never sees a name (vault-core, THREATS C12).
    NameIndex,
}

/// How to generate a keyring.
#[derive(Clone, Debug, Default)]
pub struct KeyringOptions {
    rsa_exchange: bool,
    created_at: Option<u64>,
}

impl KeyringOptions {
    /// Defaults: no RSA-4096 exchange pair, creation time now.
    pub fn new() -> Self {
        Self::default()
    }

    /// Also generate the RSA-4096 exchange pair (RSAES-OAEP-SHA256 handover; R9). It takes
    /// a few seconds more.
    pub fn with_rsa_exchange(mut self, yes: bool) -> Self {
        self.rsa_exchange = yes;
        self
    }

    /// A fixed creation time (seconds since the Unix epoch), for reproducible vectors.
    pub fn with_created_at(mut self, unix_seconds: u64) -> Self {
        self.created_at = Some(unix_seconds);
        self
    }
}

/// An unlocked keyring: every secret key of one user. Zeroized on drop, never printed.
pub struct Keyring {
    id: KeyringId,
    created_at: u64,
    generation: u32,
    collection_wrap: SymmetricKey,
    local_state: SymmetricKey,
    name_index: SymmetricKey,
    signing: RsaPrivateKey,
    signing_public: RsaPublicKey,
    exchange: p256::SecretKey,
    rsa_exchange: Option<(RsaPrivateKey, RsaPublicKey)>,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("id", &self.id)
            .field("generation", &self.generation)
            .finish_non_exhaustive()
    }
}

impl Keyring {
    /// Generates a new keyring: three AES-256 keys, an RSA-2048 signing pair, a P-256
    /// exchange pair and, if asked, an RSA-4096 exchange pair. Pass `rand_core::OsRng`.
    pub fn generate(rng: &mut impl CryptoRngCore, options: &KeyringOptions) -> Result<Self, Error> {
        let id = KeyringId::generate(rng);
        let created_at = options.created_at.unwrap_or_else(now);
        let collection_wrap = SymmetricKey::generate(rng);
        let local_state = SymmetricKey::generate(rng);
        let name_index = SymmetricKey::generate(rng);
        let signing =
            RsaPrivateKey::new(rng, SIGNING_KEY_BITS).map_err(|_| Error::KeyGeneration)?;
        let exchange = p256::SecretKey::random(rng);
        let rsa_exchange = if options.rsa_exchange {
            let key =
                RsaPrivateKey::new(rng, RSA_EXCHANGE_KEY_BITS).map_err(|_| Error::KeyGeneration)?;
            let public = key.to_public_key();
            Some((key, public))
        } else {
            None
        };
        let signing_public = signing.to_public_key();
        Ok(Self {
            id,
            created_at,
            generation: 1,
            collection_wrap,
            local_state,
            name_index,
            signing,
            signing_public,
            exchange,
            rsa_exchange,
        })
    }

    /// The keyring id.
    pub fn id(&self) -> KeyringId {
        self.id
    }

    /// Creation time, seconds since the Unix epoch.
    pub fn created_at(&self) -> u64 {
        self.created_at
    }

    /// The key generation (1 for a new keyring).
    pub fn generation(&self) -> u32 {
        self.generation
    }

    /// The AES-256 key for `purpose`.
    pub fn key(&self, purpose: KeyPurpose) -> &SymmetricKey {
        match purpose {
            KeyPurpose::CollectionWrap => &self.collection_wrap,
            KeyPurpose::LocalState => &self.local_state,
            KeyPurpose::NameIndex => &self.name_index,
        }
    }

    /// The P-256 exchange secret key, for the handover layer (HPKE).
    pub fn exchange_secret(&self) -> &p256::SecretKey {
        &self.exchange
    }

    /// The P-256 exchange public key.
    pub fn exchange_public_key(&self) -> ExchangePublicKey {
        ExchangePublicKey::from_p256(self.exchange.public_key())
    }

    /// The RSA-4096 exchange private key, if this keyring has one.
    pub fn rsa_exchange_secret(&self) -> Option<&RsaPrivateKey> {
        self.rsa_exchange.as_ref().map(|(k, _)| k)
    }

    /// Signs `message` with the RSA-2048 signing key (RSASSA-PSS-SHA256, salt 32) in the
    /// signature domain `domain`: the signed bytes are `domain || message`. Each format
    /// that signs owns a NUL-terminated domain label (docs/spec/conventions.md).
    pub fn sign(&self, rng: &mut impl CryptoRngCore, domain: &[u8], message: &[u8]) -> Vec<u8> {
        identity::sign_pss(rng, &self.signing, domain, message)
    }

    /// This keyring's identity bundle (public keys, self-signed). The public keys are
    /// derived from the private keys held here, never read from anywhere else (THREATS C2).
    pub fn identity_bundle(&self, rng: &mut impl CryptoRngCore) -> IdentityBundle {
        IdentityBundle::sign(rng, &self.public_parts(), &self.signing)
    }

    /// The fingerprint of this keyring's identity bundle (computed without signing).
    pub fn fingerprint(&self) -> Fingerprint {
        identity::fingerprint_of(&self.public_parts())
    }

    fn public_parts(&self) -> PublicParts<'_> {
        PublicParts {
            id: self.id,
            generation: self.generation,
            created_at: self.created_at,
            signing: &self.signing_public,
            exchange: self.exchange_public_key(),
            rsa_exchange: self.rsa_exchange.as_ref().map(|(_, p)| p),
        }
    }

    fn encode_body(&self) -> Zeroizing<Vec<u8>> {
        let mut b = Zeroizing::new(Vec::with_capacity(4096));
        b.extend_from_slice(self.id.as_bytes());
        b.put_u64(self.created_at);
        b.put_u32(self.generation);
        b.extend_from_slice(self.collection_wrap.expose_bytes());
        b.extend_from_slice(self.local_state.expose_bytes());
        b.extend_from_slice(self.name_index.expose_bytes());
        b.put_vec16(&encode_rsa_private(&self.signing));
        b.extend_from_slice(&self.exchange.to_bytes());
        match &self.rsa_exchange {
            Some((key, _)) => {
                b.push(FLAG_RSA_EXCHANGE);
                b.put_vec16(&encode_rsa_private(key));
            }
            None => b.push(0),
        }
        b
    }

    fn decode_body(body: &[u8], header: &Header) -> Result<Self, Malformed> {
        let mut r = Reader::new(body);
        let id = KeyringId::from_bytes(r.array()?);
        let created_at = r.u64()?;
        let generation = r.u32()?;
        if id != header.id || generation != header.generation {
            return Err("body id or generation differs from the header");
        }
        let collection_wrap = sym(&mut r)?;
        let local_state = sym(&mut r)?;
        let name_index = sym(&mut r)?;
        let signing = decode_rsa_private(r.vec16()?, SIGNING_KEY_BITS)?;
        let scalar = Zeroizing::new(r.array::<32>()?);
        let exchange = p256::SecretKey::from_bytes(&(*scalar).into())
            .map_err(|_| "P-256 scalar is zero or not below the group order")?;
        let rsa_exchange = match r.u8()? {
            0 => None,
            FLAG_RSA_EXCHANGE => {
                let key = decode_rsa_private(r.vec16()?, RSA_EXCHANGE_KEY_BITS)?;
                let public = key.to_public_key();
                Some((key, public))
            }
            _ => return Err("unknown keyring body flags"),
        };
        r.finish()?;
        let signing_public = signing.to_public_key();
        Ok(Self {
            id,
            created_at,
            generation,
            collection_wrap,
            local_state,
            name_index,
            signing,
            signing_public,
            exchange,
            rsa_exchange,
        })
    }
}

fn sym(r: &mut Reader<'_>) -> Result<SymmetricKey, Malformed> {
    let bytes = Zeroizing::new(r.array::<32>()?);
    SymmetricKey::from_bytes(*bytes).ok_or("all-zero AES key")
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[derive(Clone, Copy, PartialEq, Eq)]
struct Header {
    id: KeyringId,
    generation: u32,
    kdf: KdfParams,
    recovery_salt: [u8; SALT_LEN],
}

impl Header {
    fn encode(&self) -> [u8; HEADER_LEN] {
        let mut h = Vec::with_capacity(HEADER_LEN);
        h.extend_from_slice(MAGIC);
        h.put_u16(FORMAT_VERSION);
        h.put_u16(SUITE);
        h.extend_from_slice(self.id.as_bytes());
        h.put_u32(self.generation);
        h.put_u32(self.kdf.iterations());
        h.extend_from_slice(self.kdf.salt());
        h.extend_from_slice(&self.recovery_salt);
        let mut out = [0u8; HEADER_LEN];
        out.copy_from_slice(&h);
        out
    }

    fn password_ad(&self) -> Vec<u8> {
        let h = self.encode();
        h[..COMMON_LEN + 4 + SALT_LEN].to_vec()
    }

    fn recovery_ad(&self) -> Vec<u8> {
        let h = self.encode();
        let mut ad = h[..COMMON_LEN].to_vec();
        ad.extend_from_slice(&self.recovery_salt);
        ad
    }
}

/// A keyring sealed under a password and a recovery code: the bytes that are stored on disk
/// and on the server. Opaque to anyone without the password or the code.
#[derive(Clone, PartialEq, Eq)]
pub struct SealedKeyring {
    header: Header,
    password_wrap: Vec<u8>,
    recovery_wrap: Vec<u8>,
    body: Vec<u8>,
}

impl fmt::Debug for SealedKeyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SealedKeyring")
            .field("id", &self.header.id)
            .field("generation", &self.header.generation)
            .field("kdf_iterations", &self.header.kdf.iterations())
            .field("len", &(HEADER_LEN + 2 * WRAP_LEN + self.body.len()))
            .finish()
    }
}

struct Kmk(SymmetricKey);

impl SealedKeyring {
    /// Seals `keyring` under the password keys and a fresh recovery code, which is returned
    /// and must be shown to the user once (R5).
    pub fn seal(
        rng: &mut impl CryptoRngCore,
        keyring: &Keyring,
        password: &PasswordKeys,
    ) -> (Self, RecoveryCode) {
        let kmk = Kmk(SymmetricKey::generate(rng));
        let code = RecoveryCode::generate(rng);
        let mut recovery_salt = [0u8; SALT_LEN];
        rng.fill_bytes(&mut recovery_salt);
        let header = Header {
            id: keyring.id,
            generation: keyring.generation,
            kdf: *password.params(),
            recovery_salt,
        };
        let recovery_wrap = seal::seal(
            rng,
            &recovery_key(&code, &recovery_salt),
            RECOVERY_WRAP,
            &header.recovery_ad(),
            kmk.0.expose_bytes(),
        );
        let sealed = Self::assemble(rng, header, password, &kmk, recovery_wrap, keyring);
        (sealed, code)
    }

    fn assemble(
        rng: &mut impl CryptoRngCore,
        header: Header,
        password: &PasswordKeys,
        kmk: &Kmk,
        recovery_wrap: Vec<u8>,
        keyring: &Keyring,
    ) -> Self {
        let password_wrap = seal::seal(
            rng,
            &password.unlock,
            PASSWORD_WRAP,
            &header.password_ad(),
            kmk.0.expose_bytes(),
        );
        let mut sealed = Self {
            header,
            password_wrap,
            recovery_wrap,
            body: Vec::new(),
        };
        let ad = sealed.body_ad();
        sealed.body = seal::seal(rng, &kmk.0, BODY, &ad, &keyring.encode_body());
        sealed
    }

    fn body_ad(&self) -> Vec<u8> {
        let mut ad = Vec::with_capacity(HEADER_LEN + 2 * WRAP_LEN);
        ad.extend_from_slice(&self.header.encode());
        ad.extend_from_slice(&self.password_wrap);
        ad.extend_from_slice(&self.recovery_wrap);
        ad
    }

    /// Decodes the structure of a sealed keyring without opening anything.
    ///
    /// Fails with [`Error::UnsupportedFormat`] for an unknown version or suite and with
    /// [`Error::AuthenticationFailed`] for anything malformed.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        let mut r = Reader::new(bytes);
        let magic = r.take(4).map_err(auth_failed)?;
        if magic != MAGIC {
            return Err(auth_failed("sealed keyring magic"));
        }
        let version = r.u16().map_err(auth_failed)?;
        let suite = r.u16().map_err(auth_failed)?;
        if version != FORMAT_VERSION || suite != SUITE {
            return Err(Error::UnsupportedFormat);
        }
        Self::decode_rest(r).map_err(auth_failed)
    }

    fn decode_rest(mut r: Reader<'_>) -> Result<Self, Malformed> {
        let id = KeyringId::from_bytes(r.array()?);
        let generation = r.u32()?;
        let iterations = r.u32()?;
        let salt = r.array()?;
        let recovery_salt = r.array()?;
        let password_wrap = r.take(WRAP_LEN)?.to_vec();
        let recovery_wrap = r.take(WRAP_LEN)?.to_vec();
        let body = r.rest().to_vec();
        // The smallest body holds the fixed fields and an RSA-2048 key; anything shorter is
        // not worth a MAC computation.
        if body.len() < seal::OVERHEAD + 16 + 8 + 4 + 3 * 32 + 2 + 32 + 1 {
            return Err("keyring body too short");
        }
        Ok(Self {
            header: Header {
                id,
                generation,
                kdf: KdfParams::from_parts(salt, iterations),
                recovery_salt,
            },
            password_wrap,
            recovery_wrap,
            body,
        })
    }

    /// The encoded sealed keyring.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN + 2 * WRAP_LEN + self.body.len());
        out.extend_from_slice(&self.header.encode());
        out.extend_from_slice(&self.password_wrap);
        out.extend_from_slice(&self.recovery_wrap);
        out.extend_from_slice(&self.body);
        out
    }

    /// The keyring id, readable without unlocking (it is not secret).
    pub fn keyring_id(&self) -> KeyringId {
        self.header.id
    }

    /// The key generation, readable without unlocking.
    pub fn generation(&self) -> u32 {
        self.header.generation
    }

    /// The password KDF parameters to derive [`PasswordKeys`] with. They are not trusted
    /// until the unlock succeeds: [`PasswordKeys::derive`] enforces the iteration floor,
    /// and the parameters are authenticated by the password wrapping (THREATS C7, C8).
    pub fn kdf_params(&self) -> KdfParams {
        self.header.kdf
    }

    /// Opens the keyring with keys derived from the password under [`Self::kdf_params`].
    ///
    /// Wrong password and any alteration of the blob give the same
    /// [`Error::AuthenticationFailed`] (THREATS I2).
    pub fn unlock(&self, password: &PasswordKeys) -> Result<Keyring, Error> {
        let kmk = self.unwrap_password(password)?;
        self.open_body(&kmk)
    }

    /// Derives the password keys with the strict policy and unlocks: the usual entry point.
    /// Returns the keyring and the password keys (whose login secret the sync client needs).
    pub fn unlock_with_password(
        &self,
        password: &Password,
    ) -> Result<(Keyring, PasswordKeys), Error> {
        self.unlock_with_password_policy(password, &KdfPolicy::default())
    }

    /// [`Self::unlock_with_password`] under an explicit KDF policy (tests only build a
    /// non-default one).
    pub fn unlock_with_password_policy(
        &self,
        password: &Password,
        policy: &KdfPolicy,
    ) -> Result<(Keyring, PasswordKeys), Error> {
        let keys = PasswordKeys::derive_with_policy(password, &self.header.kdf, policy)?;
        let keyring = self.unlock(&keys)?;
        Ok((keyring, keys))
    }

    fn unwrap_password(&self, password: &PasswordKeys) -> Result<Kmk, Error> {
        if password.params() != &self.header.kdf {
            return Err(auth_failed(
                "password keys derived under other KDF parameters",
            ));
        }
        let kmk = seal::open(
            &password.unlock,
            PASSWORD_WRAP,
            &self.header.password_ad(),
            &self.password_wrap,
        )?;
        kmk_from(&kmk)
    }

    fn unwrap_recovery(&self, code: &RecoveryCode) -> Result<Kmk, Error> {
        let key = recovery_key(code, &self.header.recovery_salt);
        let kmk = seal::open(
            &key,
            RECOVERY_WRAP,
            &self.header.recovery_ad(),
            &self.recovery_wrap,
        )?;
        kmk_from(&kmk)
    }

    fn open_body(&self, kmk: &Kmk) -> Result<Keyring, Error> {
        let body = seal::open(&kmk.0, BODY, &self.body_ad(), &self.body)?;
        Keyring::decode_body(&body, &self.header).map_err(auth_failed)
    }

    /// Changes the password: unlocks with `old`, re-wraps the same master key under `new`
    /// (whose parameters must pass the strict policy) and keeps the recovery wrapping. The
    /// keys inside do not change (R2: no re-keying).
    pub fn change_password(
        &self,
        rng: &mut impl CryptoRngCore,
        old: &PasswordKeys,
        new: &PasswordKeys,
    ) -> Result<Self, Error> {
        let kmk = self.unwrap_password(old)?;
        let keyring = self.open_body(&kmk)?;
        Ok(self.rewrap(rng, &kmk, &keyring, new))
    }

    /// Opens the keyring with the recovery code and wraps it under a new password (R5).
    /// Returns the keyring and the new sealed form. The recovery code stays valid; call
    /// [`Self::rotate_recovery`] afterwards to retire it.
    pub fn recover(
        &self,
        rng: &mut impl CryptoRngCore,
        code: &RecoveryCode,
        new: &PasswordKeys,
    ) -> Result<(Keyring, Self), Error> {
        let kmk = self.unwrap_recovery(code)?;
        let keyring = self.open_body(&kmk)?;
        let sealed = self.rewrap(rng, &kmk, &keyring, new);
        Ok((keyring, sealed))
    }

    fn rewrap(
        &self,
        rng: &mut impl CryptoRngCore,
        kmk: &Kmk,
        keyring: &Keyring,
        new: &PasswordKeys,
    ) -> Self {
        let header = Header {
            kdf: *new.params(),
            ..self.header
        };
        Self::assemble(rng, header, new, kmk, self.recovery_wrap.clone(), keyring)
    }

    /// Replaces the recovery code: unlocks with the password, draws a new master key and a
    /// new code, and seals again. The old code opens nothing of the returned blob.
    pub fn rotate_recovery(
        &self,
        rng: &mut impl CryptoRngCore,
        password: &PasswordKeys,
    ) -> Result<(Self, RecoveryCode), Error> {
        let keyring = self.unlock(password)?;
        Ok(Self::seal(rng, &keyring, password))
    }
}

fn kmk_from(bytes: &[u8]) -> Result<Kmk, Error> {
    let mut k = Zeroizing::new([0u8; 32]);
    if bytes.len() != k.len() {
        return Err(auth_failed("wrapped master key has the wrong length"));
    }
    k.copy_from_slice(bytes);
    SymmetricKey::from_bytes(*k)
        .map(Kmk)
        .ok_or_else(|| auth_failed("all-zero master key"))
}

fn recovery_key(code: &RecoveryCode, salt: &[u8; SALT_LEN]) -> SymmetricKey {
    let hk = Hkdf::<Sha256>::new(Some(salt), code.expose_bytes());
    let mut k = Zeroizing::new([0u8; 32]);
    let _ = hk.expand(HKDF_RECOVERY, &mut *k);
    SymmetricKey::from_derived(*k)
}

/// The recovery key of `code` under `salt`, for the unit test that shows the recovery login
/// secret differs from it.
#[cfg(test)]
pub(crate) fn recovery_key_for_tests(code: &RecoveryCode, salt: &[u8; SALT_LEN]) -> SymmetricKey {
    recovery_key(code, salt)
}
