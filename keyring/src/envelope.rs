//! Envelopes: a key handed from a granter to one recipient, encrypted to the recipient's
//! exchange key and signed by the granter (docs/spec/handover.md §2; THREATS C4, C20, C21).
//!
//! ```text
//! header   = "VENV" || u8 version (1) || u8 method (1 HPKE-P256, 2 RSA-4096-OAEP)
//!            || u8 purpose (1 collection key, 2 group epoch secret)
//!            || granter[16] || granter_fingerprint[32]
//!            || recipient[16] || recipient_key[32]
//!            || owner[16] || target[16] || u32 epoch || u64 created_at        (147 bytes)
//! body     = method 1: enc[65] || HPKE ciphertext (payload || tag[16])
//!                      info = "vault/v1/envelope", aad = header
//!            method 2: RSA-OAEP-SHA256(K)[512] || seal(K, "vault/v1/envelope/rsa-oaep-payload",
//!                                                 ad = header, payload)
//! envelope = header || u32 len(body) || body || signature[256]
//! signature = RSASSA-PSS-SHA256 by the granter over
//!             "vault/v1/envelope-signature\0" || header || u32 len(body) || body
//! ```
//!
//! Opening checks, in this order, before any private-key operation: the strict layout, that
//! the granter id and fingerprint are those of the identity the caller pinned, the granter's
//! signature, and that recipient, purpose, owner, target and epoch are what the caller
//! expects. Only then is the payload decrypted (C20). Every failure is the one
//! [`Error::AuthenticationFailed`].

use rand_core::CryptoRngCore;
use rsa::{RsaPrivateKey, RsaPublicKey};
use zeroize::Zeroizing;

use crate::error::{auth_failed, Error};
use crate::exchange;
use crate::identity::{ExchangePublicKey, Fingerprint, IdentityBundle, KeyringId};
use crate::keyring::Keyring;
use crate::keys::{HPKE_INFO_ENVELOPE, SEAL_ENVELOPE_PAYLOAD, SIG_ENVELOPE};
use crate::seal::{self, Context};
use crate::secret::SymmetricKey;
use crate::wire::{Malformed, Reader, Writer};
use crate::SIGNATURE_LEN;

const MAGIC: &[u8; 4] = b"VENV";
const VERSION: u8 = 1;
/// Length of an envelope header.
pub const HEADER_LEN: usize = 147;
/// Largest payload an envelope carries.
pub const MAX_PAYLOAD_LEN: usize = 1024;
const PAYLOAD_SEAL: Context = Context::new(SEAL_ENVELOPE_PAYLOAD);

/// How the payload is encrypted to the recipient.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Method {
    /// HPKE base mode, DHKEM(P-256, HKDF-SHA256), HKDF-SHA256, AES-256-GCM (the default).
    Hpke,
    /// RSA-4096 OAEP-SHA256 wrapping a one-time key that seals the payload (opt-in, for
    /// recipients that published an RSA-4096 exchange key).
    RsaOaep,
}

impl Method {
    fn code(self) -> u8 {
        match self {
            Method::Hpke => 1,
            Method::RsaOaep => 2,
        }
    }

    fn from_code(code: u8) -> Option<Self> {
        match code {
            1 => Some(Method::Hpke),
            2 => Some(Method::RsaOaep),
            _ => None,
        }
    }
}

/// What the handed key is for. Part of the signed header: an envelope made for one purpose
/// is never accepted for another (C21).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Purpose {
    /// A collection key of one key epoch; `owner` is the vault id, `target` the collection id.
    CollectionKey,
    /// The secret of one group epoch; `owner` and `target` are the group id.
    GroupSecret,
}

impl Purpose {
    fn code(self) -> u8 {
        match self {
            Purpose::CollectionKey => 1,
            Purpose::GroupSecret => 2,
        }
    }

    fn from_code(code: u8) -> Option<Self> {
        match code {
            1 => Some(Purpose::CollectionKey),
            2 => Some(Purpose::GroupSecret),
            _ => None,
        }
    }
}

/// Which key an envelope hands: purpose, owner, target and key epoch. The opener states what
/// it expects, and an envelope for anything else is refused (re-targeting, replay of another
/// epoch: C4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Grant {
    /// What the key is for.
    pub purpose: Purpose,
    /// The vault (for a collection key) or group (for a group secret) it belongs to.
    pub owner: [u8; 16],
    /// The collection or group id.
    pub target: [u8; 16],
    /// The key epoch.
    pub epoch: u32,
}

/// The public key an envelope is encrypted to: a user's identity (pinned by the caller) or a
/// group's exchange key of one epoch.
#[derive(Clone, Debug)]
pub struct RecipientKey<'a> {
    id: [u8; 16],
    key_fingerprint: [u8; 32],
    exchange: ExchangePublicKey,
    rsa: Option<&'a RsaPublicKey>,
}

impl<'a> RecipientKey<'a> {
    /// A user, by verified identity bundle. Check its fingerprint (pin it) before calling.
    pub fn user(identity: &'a IdentityBundle) -> Self {
        Self {
            id: *identity.keyring_id().as_bytes(),
            key_fingerprint: *identity.fingerprint().as_bytes(),
            exchange: *identity.exchange_key(),
            rsa: identity.rsa_exchange_key(),
        }
    }

    /// Whether the recipient published an RSA-4096 exchange key ([`Method::RsaOaep`]).
    pub fn has_rsa(&self) -> bool {
        self.rsa.is_some()
    }

    /// A group's exchange key of one epoch: `id` is the group id and `key_fingerprint` the
    /// fingerprint the group format defines for that epoch's key.
    pub fn group(id: [u8; 16], key_fingerprint: [u8; 32], exchange: ExchangePublicKey) -> Self {
        Self {
            id,
            key_fingerprint,
            exchange,
            rsa: None,
        }
    }
}

/// The private side of a recipient: what opens envelopes addressed to it.
pub struct RecipientSecret<'a> {
    id: [u8; 16],
    key_fingerprint: [u8; 32],
    exchange: &'a p256::SecretKey,
    rsa: Option<&'a RsaPrivateKey>,
}

impl<'a> RecipientSecret<'a> {
    /// A user's keyring.
    pub fn user(keyring: &'a Keyring) -> Self {
        Self {
            id: *keyring.id().as_bytes(),
            key_fingerprint: *keyring.fingerprint().as_bytes(),
            exchange: keyring.exchange_secret(),
            rsa: keyring.rsa_exchange_secret(),
        }
    }

    /// A group epoch's exchange secret.
    pub fn group(id: [u8; 16], key_fingerprint: [u8; 32], exchange: &'a p256::SecretKey) -> Self {
        Self::from_parts(id, key_fingerprint, exchange, None)
    }

    /// A recipient from its parts (known-answer vectors, other key stores): the id and key
    /// fingerprint envelopes to it carry, and its private keys.
    pub fn from_parts(
        id: [u8; 16],
        key_fingerprint: [u8; 32],
        exchange: &'a p256::SecretKey,
        rsa: Option<&'a RsaPrivateKey>,
    ) -> Self {
        Self {
            id,
            key_fingerprint,
            exchange,
            rsa,
        }
    }
}

/// The header fields of an envelope, read **without** authenticating anything: for routing
/// (which granter to look up, which epoch it claims) only.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EnvelopeInfo {
    /// Encryption method.
    pub method: Method,
    /// Who handed the key.
    pub granter: KeyringId,
    /// The granter identity's fingerprint, as claimed.
    pub granter_fingerprint: Fingerprint,
    /// The recipient (keyring or group id).
    pub recipient: [u8; 16],
    /// The fingerprint of the recipient key it is encrypted to.
    pub recipient_key: [u8; 32],
    /// What it hands.
    pub grant: Grant,
    /// When the granter made it (seconds since the Unix epoch, as the granter claims).
    pub created_at: u64,
}

fn encode_header(
    method: Method,
    granter: &Keyring,
    recipient: &RecipientKey<'_>,
    grant: &Grant,
    created_at: u64,
) -> Vec<u8> {
    let mut h = Vec::with_capacity(HEADER_LEN);
    h.extend_from_slice(MAGIC);
    h.push(VERSION);
    h.push(method.code());
    h.push(grant.purpose.code());
    h.extend_from_slice(granter.id().as_bytes());
    h.extend_from_slice(granter.fingerprint().as_bytes());
    h.extend_from_slice(&recipient.id);
    h.extend_from_slice(&recipient.key_fingerprint);
    h.extend_from_slice(&grant.owner);
    h.extend_from_slice(&grant.target);
    h.put_u32(grant.epoch);
    h.put_u64(created_at);
    debug_assert_eq!(h.len(), HEADER_LEN);
    h
}

fn decode_header(header: &[u8]) -> Result<EnvelopeInfo, Malformed> {
    let mut r = Reader::new(header);
    if r.take(4)? != MAGIC {
        return Err("envelope magic");
    }
    if r.u8()? != VERSION {
        return Err("envelope version");
    }
    let method = Method::from_code(r.u8()?).ok_or("envelope method")?;
    let purpose = Purpose::from_code(r.u8()?).ok_or("envelope purpose")?;
    let granter = KeyringId::from_bytes(r.array()?);
    let granter_fingerprint = Fingerprint::from_bytes(r.array()?);
    let recipient = r.array()?;
    let recipient_key = r.array()?;
    let owner = r.array()?;
    let target = r.array()?;
    let epoch = r.u32()?;
    let created_at = r.u64()?;
    r.finish()?;
    Ok(EnvelopeInfo {
        method,
        granter,
        granter_fingerprint,
        recipient,
        recipient_key,
        grant: Grant {
            purpose,
            owner,
            target,
            epoch,
        },
        created_at,
    })
}

/// The parts of an encoded envelope: header, body, signed bytes, signature.
struct Parts<'a> {
    header: &'a [u8],
    body: &'a [u8],
    signed: &'a [u8],
    signature: &'a [u8],
    info: EnvelopeInfo,
}

fn split(bytes: &[u8]) -> Result<Parts<'_>, Malformed> {
    let mut r = Reader::new(bytes);
    let header = r.take(HEADER_LEN)?;
    let info = decode_header(header)?;
    let body_len = usize::try_from(r.u32()?).map_err(|_| "envelope body length")?;
    let (min, max) = body_bounds(info.method);
    if body_len < min || body_len > max {
        return Err("envelope body length");
    }
    let body = r.take(body_len)?;
    let signed_len = HEADER_LEN + 4 + body_len;
    let signature = r.take(SIGNATURE_LEN)?;
    r.finish()?;
    Ok(Parts {
        header,
        body,
        signed: &bytes[..signed_len],
        signature,
        info,
    })
}

/// Smallest and largest body of a method (payloads of 1 to [`MAX_PAYLOAD_LEN`] bytes).
fn body_bounds(method: Method) -> (usize, usize) {
    let overhead = match method {
        Method::Hpke => exchange::HPKE_ENC_LEN + exchange::HPKE_TAG_LEN,
        Method::RsaOaep => exchange::RSA_OAEP_CIPHERTEXT_LEN + seal::OVERHEAD,
    };
    (overhead + 1, overhead + MAX_PAYLOAD_LEN)
}

/// Reads an envelope's header without authenticating it (to find the granter to look up).
/// Nothing returned here may be trusted until [`open`] succeeds.
pub fn peek(bytes: &[u8]) -> Result<EnvelopeInfo, Error> {
    split(bytes).map(|p| p.info).map_err(auth_failed)
}

/// Makes an envelope handing `payload` (a key: 1 to [`MAX_PAYLOAD_LEN`] bytes) to
/// `recipient` for `grant`, signed by `granter`.
///
/// Fails with [`Error::UnsupportedFormat`] if `method` is [`Method::RsaOaep`] and the
/// recipient published no RSA-4096 exchange key, and with [`Error::InvalidInput`] for an
/// empty or oversized payload.
pub fn seal(
    rng: &mut impl CryptoRngCore,
    granter: &Keyring,
    recipient: &RecipientKey<'_>,
    grant: &Grant,
    method: Method,
    payload: &[u8],
    created_at: u64,
) -> Result<Vec<u8>, Error> {
    if payload.is_empty() || payload.len() > MAX_PAYLOAD_LEN {
        return Err(Error::InvalidInput(
            "envelope payload must be 1 to 1024 bytes",
        ));
    }
    let header = encode_header(method, granter, recipient, grant, created_at);
    let mut body = Vec::new();
    match method {
        Method::Hpke => {
            let (enc, ct) = exchange::hpke_seal(
                rng,
                &recipient.exchange,
                HPKE_INFO_ENVELOPE,
                &header,
                payload,
            )?;
            body.extend_from_slice(&enc);
            body.extend_from_slice(&ct);
        }
        Method::RsaOaep => {
            let rsa_key = recipient.rsa.ok_or(Error::UnsupportedFormat)?;
            let k = SymmetricKey::generate(rng);
            body.extend_from_slice(&exchange::rsa_oaep_wrap(rng, rsa_key, &k)?);
            body.extend_from_slice(&seal::seal(rng, &k, PAYLOAD_SEAL, &header, payload));
        }
    }
    let mut out = header;
    out.put_u32(u32::try_from(body.len()).map_err(|_| Error::InvalidInput("envelope body"))?);
    out.extend_from_slice(&body);
    let signature = granter.sign(rng, SIG_ENVELOPE, &out);
    out.extend_from_slice(&signature);
    Ok(out)
}

/// Opens an envelope: `granter` is the identity the caller pinned for the granter (look it up
/// by [`peek`]`(..).granter`), `me` the recipient's secret, `expected` the key the caller
/// asked for. Returns the payload.
///
/// Every check (layout, granter fingerprint, signature, recipient, purpose, owner, target,
/// epoch) passes before the private key is used; any failure is
/// [`Error::AuthenticationFailed`].
pub fn open(
    bytes: &[u8],
    granter: &IdentityBundle,
    me: &RecipientSecret<'_>,
    expected: &Grant,
) -> Result<Zeroizing<Vec<u8>>, Error> {
    let p = split(bytes).map_err(auth_failed)?;
    if p.info.granter != granter.keyring_id() || p.info.granter_fingerprint != granter.fingerprint()
    {
        return Err(auth_failed("envelope granter is not the pinned identity"));
    }
    granter.verify(SIG_ENVELOPE, p.signed, p.signature)?;
    // Signed by the pinned granter; now check it is the envelope the caller asked for.
    let addressed = p.info.recipient == me.id && p.info.recipient_key == me.key_fingerprint;
    if !addressed {
        return Err(auth_failed("envelope addressed to another key"));
    }
    if p.info.grant != *expected {
        return Err(auth_failed("envelope hands another key"));
    }
    let payload = match p.info.method {
        Method::Hpke => {
            let (enc, ct) = p.body.split_at(exchange::HPKE_ENC_LEN);
            exchange::hpke_open(me.exchange, enc, HPKE_INFO_ENVELOPE, p.header, ct)?
        }
        Method::RsaOaep => {
            let rsa_key = me
                .rsa
                .ok_or_else(|| auth_failed("RSA envelope for a keyring without RSA key"))?;
            let (wrapped, sealed) = p.body.split_at(exchange::RSA_OAEP_CIPHERTEXT_LEN);
            let k = exchange::rsa_oaep_unwrap(rsa_key, wrapped)?;
            seal::open(&k, PAYLOAD_SEAL, p.header, sealed)?
        }
    };
    if payload.is_empty() || payload.len() > MAX_PAYLOAD_LEN {
        return Err(auth_failed("envelope payload length"));
    }
    Ok(payload)
}
