//! One-time passwords: HOTP (RFC 4226) and TOTP (RFC 6238), the second factor of
//! docs/spec/mfa.md.
//!
//! The server enrols TOTP with HMAC-SHA-1, 6 digits and a 30-second step (what every
//! authenticator app accepts) and HOTP with HMAC-SHA-1 and 6 digits; SHA-256, SHA-512 and
//! 8 digits are implemented for the RFC 6238 vectors and for secrets imported from other
//! systems. Codes are compared in constant time. Which code may be used once is decided by
//! the caller (the MFA record keeps the last accepted counter).

use hmac::{Hmac, Mac};
use subtle::ConstantTimeEq;

/// The HMAC of an OTP code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OtpAlgorithm {
    /// HMAC-SHA-1 (the RFC 4226 default and what authenticator apps use).
    Sha1,
    /// HMAC-SHA-256 (RFC 6238).
    Sha256,
    /// HMAC-SHA-512 (RFC 6238).
    Sha512,
}

impl OtpAlgorithm {
    /// The name used in `otpauth://` URIs.
    pub fn uri_name(self) -> &'static str {
        match self {
            OtpAlgorithm::Sha1 => "SHA1",
            OtpAlgorithm::Sha256 => "SHA256",
            OtpAlgorithm::Sha512 => "SHA512",
        }
    }
}

/// The HMAC of `counter` (8 bytes, big-endian) under `secret`.
fn mac(algorithm: OtpAlgorithm, secret: &[u8], counter: u64) -> Vec<u8> {
    let message = counter.to_be_bytes();
    // HMAC takes keys of any length: `new_from_slice` cannot fail for it.
    match algorithm {
        OtpAlgorithm::Sha1 => Hmac::<sha1::Sha1>::new_from_slice(secret)
            .map(|m| m.chain_update(message).finalize().into_bytes().to_vec()),
        OtpAlgorithm::Sha256 => Hmac::<sha2::Sha256>::new_from_slice(secret)
            .map(|m| m.chain_update(message).finalize().into_bytes().to_vec()),
        OtpAlgorithm::Sha512 => Hmac::<sha2::Sha512>::new_from_slice(secret)
            .map(|m| m.chain_update(message).finalize().into_bytes().to_vec()),
    }
    .unwrap_or_default()
}

/// RFC 4226 §5.3 dynamic truncation: the 31-bit value.
fn truncate(mac: &[u8]) -> u32 {
    let Some(last) = mac.last() else { return 0 };
    let offset = usize::from(last & 0x0f);
    match mac.get(offset..offset + 4) {
        Some(&[a, b, c, d]) => u32::from_be_bytes([a & 0x7f, b, c, d]),
        _ => 0,
    }
}

/// The HOTP code (RFC 4226) for `counter`: `digits` decimal digits (6 to 8), zero-padded.
pub fn hotp(algorithm: OtpAlgorithm, secret: &[u8], counter: u64, digits: u32) -> String {
    let digits = digits.clamp(6, 8);
    let value = truncate(&mac(algorithm, secret, counter)) % 10u32.pow(digits);
    format!("{value:0width$}", width = digits as usize)
}

/// The TOTP time step (RFC 6238 §4.2) of Unix time `now` with step `period` seconds and
/// `t0` = 0.
pub fn time_step(now: u64, period: u64) -> u64 {
    now / period.max(1)
}

/// The TOTP code (RFC 6238) at Unix time `now`.
pub fn totp(algorithm: OtpAlgorithm, secret: &[u8], now: u64, period: u64, digits: u32) -> String {
    hotp(algorithm, secret, time_step(now, period), digits)
}

/// Whether `presented` is the code of `counter`, compared in constant time. A code of the
/// wrong length or with other characters than digits never matches.
pub fn code_matches(
    algorithm: OtpAlgorithm,
    secret: &[u8],
    counter: u64,
    digits: u32,
    presented: &str,
) -> bool {
    let expected = hotp(algorithm, secret, counter, digits);
    presented.len() == expected.len() && bool::from(expected.as_bytes().ct_eq(presented.as_bytes()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn load(name: &str) -> serde_json::Value {
        let path = format!(
            "{}/../vectors/upstream/kat/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    /// RFC 4226 Appendix D: counters 0–9, with the intermediate truncation value.
    #[test]
    fn hotp_rfc4226_vectors() {
        let file = load("hotp_rfc4226.json");
        let vectors = file["vectors"].as_array().unwrap();
        assert_eq!(vectors.len(), 10);
        for v in vectors {
            let secret = data_encoding::HEXLOWER
                .decode(v["secret_hex"].as_str().unwrap().as_bytes())
                .unwrap();
            let counter = v["counter"].as_u64().unwrap();
            let digits = u32::try_from(v["digits"].as_u64().unwrap()).unwrap();
            let m = mac(OtpAlgorithm::Sha1, &secret, counter);
            if let Some(h) = v.get("hmac_sha1_hex").and_then(|h| h.as_str()) {
                assert_eq!(data_encoding::HEXLOWER.encode(&m), h, "{}", v["id"]);
            }
            if let Some(t) = v.get("truncated_hex").and_then(|h| h.as_str()) {
                assert_eq!(format!("{:08x}", truncate(&m)), t, "{}", v["id"]);
            }
            let code = v["hotp"].as_str().unwrap();
            assert_eq!(
                hotp(OtpAlgorithm::Sha1, &secret, counter, digits),
                code,
                "{}",
                v["id"]
            );
            assert!(code_matches(
                OtpAlgorithm::Sha1,
                &secret,
                counter,
                digits,
                code
            ));
        }
    }

    /// RFC 6238 Appendix B: six times, three HMACs, 8 digits.
    #[test]
    fn totp_rfc6238_vectors() {
        let file = load("totp_rfc6238.json");
        let vectors = file["vectors"].as_array().unwrap();
        assert_eq!(vectors.len(), 18);
        for v in vectors {
            let algorithm = match v["mode"].as_str().unwrap() {
                "SHA1" => OtpAlgorithm::Sha1,
                "SHA256" => OtpAlgorithm::Sha256,
                "SHA512" => OtpAlgorithm::Sha512,
                other => panic!("unknown mode {other}"),
            };
            let secret = data_encoding::HEXLOWER
                .decode(v["secret_hex"].as_str().unwrap().as_bytes())
                .unwrap();
            let now = v["unix_time"].as_u64().unwrap();
            let period = v["step_seconds"].as_u64().unwrap();
            let digits = u32::try_from(v["digits"].as_u64().unwrap()).unwrap();
            assert_eq!(
                format!("{:016x}", time_step(now, period)),
                v["t_hex"].as_str().unwrap().to_lowercase()
            );
            assert_eq!(
                totp(algorithm, &secret, now, period, digits),
                v["totp"].as_str().unwrap(),
                "{}",
                v["id"]
            );
        }
    }

    #[test]
    fn wrong_codes_do_not_match() {
        let secret = b"12345678901234567890";
        let code = hotp(OtpAlgorithm::Sha1, secret, 7, 6);
        assert!(code_matches(OtpAlgorithm::Sha1, secret, 7, 6, &code));
        assert!(!code_matches(OtpAlgorithm::Sha1, secret, 8, 6, &code));
        assert!(!code_matches(OtpAlgorithm::Sha1, secret, 7, 6, ""));
        assert!(!code_matches(
            OtpAlgorithm::Sha1,
            secret,
            7,
            6,
            &format!("{code}0")
        ));
        assert!(!code_matches(OtpAlgorithm::Sha1, secret, 7, 6, &code[..5]));
        assert!(!code_matches(OtpAlgorithm::Sha256, secret, 7, 6, &code));
    }
}
