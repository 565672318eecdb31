//! Every domain-separation label of the format, in one place (THREATS C21).
//!
//! A label names exactly one purpose. They are ASCII, fixed, and none is a prefix of another
//! used in the same position. docs/spec/keyring.md §2 lists them with their use.

/// Seal context of the keyring body (the key material), under the keyring master key.
pub(crate) const SEAL_KEYRING_BODY: &str = "vault/v1/keyring/body";
/// Seal context of the keyring master key wrapped under the password unlock key.
pub(crate) const SEAL_PASSWORD_WRAP: &str = "vault/v1/keyring/password-wrap";
/// Seal context of the keyring master key wrapped under the recovery key.
pub(crate) const SEAL_RECOVERY_WRAP: &str = "vault/v1/keyring/recovery-wrap";

/// HKDF info: the unlock key, from the PBKDF2 output.
pub(crate) const HKDF_UNLOCK: &[u8] = b"vault/v1/password/unlock";
/// HKDF info: the login secret sent to the server, from the PBKDF2 output.
pub(crate) const HKDF_LOGIN: &[u8] = b"vault/v1/password/login";
/// HKDF info: the recovery key, from the 256-bit recovery code.
pub(crate) const HKDF_RECOVERY: &[u8] = b"vault/v1/recovery/wrap";
/// HKDF info: the recovery login secret sent to the server, from the 256-bit recovery code
/// (docs/spec/keyring.md §5.1).
pub(crate) const HKDF_RECOVERY_LOGIN: &[u8] = b"vault/v1/recovery/login";
/// HKDF info prefix of every seal; the seal context follows it.
pub(crate) const HKDF_SEAL_PREFIX: &[u8] = b"vault/v1/seal:";

/// Signature context: the identity bundle's self-signature.
pub(crate) const SIG_IDENTITY: &[u8] = b"vault/v1/identity-bundle\0";
/// Hash context: identity fingerprint.
pub(crate) const HASH_FINGERPRINT: &[u8] = b"vault/v1/fingerprint\0";
/// Hash context: recovery-code checksum.
pub(crate) const HASH_RECOVERY_CHECK: &[u8] = b"vault/v1/recovery-code-check\0";

/// Signature context: an envelope, signed by its granter (docs/spec/handover.md §2).
pub(crate) const SIG_ENVELOPE: &[u8] = b"vault/v1/envelope-signature\0";
/// HPKE `info` of an envelope (docs/spec/handover.md §2).
pub(crate) const HPKE_INFO_ENVELOPE: &[u8] = b"vault/v1/envelope";
/// Seal context of an envelope payload on the RSA-OAEP path, under the OAEP-wrapped key.
pub(crate) const SEAL_ENVELOPE_PAYLOAD: &str = "vault/v1/envelope/rsa-oaep-payload";
