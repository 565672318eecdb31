//! Wycheproof vectors (vectors/upstream/wycheproof/, Apache-2.0): the P-256 points our
//! strict decoder accepts give the right shared secrets and every invalid, off-curve or
//! wrong-curve point is refused (THREATS C5); RSASSA-PSS-SHA256 (salt 32) verification
//! as the identity bundle and manifests use it; RSASSA-PKCS1-v1_5-SHA256 verification of the
//! same `rsa` crate (our formats sign with PSS only).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::Value;
use vault_keyring::internal::{decode_rsa_public_strict, verify_pss_public};
use vault_keyring::reexports::{p256, rsa};
use vault_keyring::ExchangePublicKey;

fn groups(text: &str) -> Vec<Value> {
    let v: Value = serde_json::from_str(text).unwrap();
    v["testGroups"].as_array().unwrap().clone()
}

fn hx(v: &Value, field: &str) -> Vec<u8> {
    hex::decode(v[field].as_str().unwrap()).unwrap()
}

fn secret_key(private: &[u8]) -> p256::SecretKey {
    // Wycheproof writes scalars as signed big integers: strip a leading zero, left-pad.
    let trimmed: Vec<u8> = private.iter().copied().skip_while(|b| *b == 0).collect();
    let mut s = [0u8; 32];
    s[32 - trimmed.len()..].copy_from_slice(&trimmed);
    p256::SecretKey::from_slice(&s).unwrap()
}

fn ecdh(private: &[u8], public: &ExchangePublicKey) -> Vec<u8> {
    let sk = secret_key(private);
    p256::ecdh::diffie_hellman(sk.to_nonzero_scalar(), public.as_p256().as_affine())
        .raw_secret_bytes()
        .to_vec()
}

#[derive(Default, Debug)]
struct Counts {
    valid_ok: usize,
    invalid_refused: usize,
    acceptable_ok: usize,
    acceptable_refused: usize,
    compressed_refused_by_policy: usize,
}

#[test]
fn ecdh_secp256r1_ecpoint() {
    let mut c = Counts::default();
    for g in groups(include_str!(
        "../../vectors/upstream/wycheproof/ecdh_secp256r1_ecpoint_test.json"
    )) {
        for t in g["tests"].as_array().unwrap() {
            let public = hx(t, "public");
            let result = t["result"].as_str().unwrap();
            let decoded = ExchangePublicKey::from_sec1_bytes(&public);
            let compressed = matches!(public.first(), Some(2) | Some(3));
            match (result, decoded) {
                (_, Err(_)) if compressed => {
                    // Our formats carry only 65-byte uncompressed points (keyring.md §6);
                    // a compressed point, valid or not, is refused by policy.
                    c.compressed_refused_by_policy += 1;
                }
                ("valid", Ok(pk)) => {
                    assert_eq!(
                        ecdh(&hx(t, "private"), &pk),
                        hx(t, "shared"),
                        "tc {}",
                        t["tcId"]
                    );
                    c.valid_ok += 1;
                }
                ("valid", Err(_)) => panic!("tc {}: valid point refused", t["tcId"]),
                ("invalid", Ok(_)) => panic!("tc {}: invalid point accepted", t["tcId"]),
                ("invalid", Err(_)) => c.invalid_refused += 1,
                ("acceptable", Ok(pk)) => {
                    assert_eq!(
                        ecdh(&hx(t, "private"), &pk),
                        hx(t, "shared"),
                        "tc {}",
                        t["tcId"]
                    );
                    c.acceptable_ok += 1;
                }
                ("acceptable", Err(_)) => c.acceptable_refused += 1,
                (other, _) => panic!("result {other}"),
            }
        }
    }
    let total = c.valid_ok
        + c.invalid_refused
        + c.acceptable_ok
        + c.acceptable_refused
        + c.compressed_refused_by_policy;
    assert_eq!(total, 355, "{c:?}");
    // Pinned from the copied file: 330 valid, 17 invalid, 8 compressed points.
    assert_eq!((c.valid_ok, c.invalid_refused), (330, 17), "{c:?}");
}

#[test]
fn ecdh_secp256r1_spki() {
    use p256::pkcs8::DecodePublicKey;
    let mut c = Counts::default();
    for g in groups(include_str!(
        "../../vectors/upstream/wycheproof/ecdh_secp256r1_test.json"
    )) {
        for t in g["tests"].as_array().unwrap() {
            let spki = hx(t, "public");
            let result = t["result"].as_str().unwrap();
            // Parse the SubjectPublicKeyInfo, then pass the point through our strict decoder.
            let decoded = p256::PublicKey::from_public_key_der(&spki)
                .ok()
                .map(|pk| {
                    use p256::elliptic_curve::sec1::ToEncodedPoint;
                    pk.to_encoded_point(false).as_bytes().to_vec()
                })
                .filter(|_| {
                    // The point as written in the SPKI must itself be uncompressed.
                    let compressed = t["flags"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|f| f == "CompressedPoint" || f == "CompressedPublic");
                    !compressed
                })
                .and_then(|point| ExchangePublicKey::from_sec1_bytes(&point).ok());
            match (result, decoded) {
                ("valid", Some(pk)) => {
                    assert_eq!(
                        ecdh(&hx(t, "private"), &pk),
                        hx(t, "shared"),
                        "tc {}",
                        t["tcId"]
                    );
                    c.valid_ok += 1;
                }
                ("valid", None) => panic!("tc {}: valid key refused", t["tcId"]),
                ("invalid", Some(_)) => panic!("tc {}: invalid key accepted", t["tcId"]),
                ("invalid", None) => c.invalid_refused += 1,
                ("acceptable", Some(pk)) => {
                    assert_eq!(
                        ecdh(&hx(t, "private"), &pk),
                        hx(t, "shared"),
                        "tc {}",
                        t["tcId"]
                    );
                    c.acceptable_ok += 1;
                }
                ("acceptable", None) => c.acceptable_refused += 1,
                (other, _) => panic!("result {other}"),
            }
        }
    }
    assert_eq!(
        c.valid_ok + c.invalid_refused + c.acceptable_ok + c.acceptable_refused,
        612,
        "{c:?}"
    );
    assert!(c.valid_ok > 300 && c.invalid_refused >= 52, "{c:?}");
}

#[test]
fn rsa_pss_2048_sha256_mgf1_32() {
    let (mut ok, mut refused, mut acceptable) = (0, 0, 0);
    for g in groups(include_str!(
        "../../vectors/upstream/wycheproof/rsa_pss_2048_sha256_mgf1_32_test.json"
    )) {
        assert_eq!(g["sLen"].as_u64(), Some(32));
        // publicKeyAsn is the PKCS#1 RSAPublicKey DER our formats carry.
        let key = decode_rsa_public_strict(&hx(&g, "publicKeyAsn"), 2048).unwrap();
        for t in g["tests"].as_array().unwrap() {
            let r = verify_pss_public(&key, b"", &hx(t, "msg"), &hx(t, "sig"));
            match t["result"].as_str().unwrap() {
                "valid" => {
                    assert!(r.is_ok(), "tc {}", t["tcId"]);
                    ok += 1;
                }
                "invalid" => {
                    assert!(r.is_err(), "tc {}", t["tcId"]);
                    refused += 1;
                }
                _ => acceptable += 1,
            }
        }
    }
    assert_eq!(ok + refused + acceptable, 108);
    assert!(ok > 0 && refused > 0);
}

#[test]
fn rsa_pkcs1v15_2048_sha256() {
    use rsa::pkcs1::DecodeRsaPublicKey;
    use rsa::signature::Verifier;
    let (mut ok, mut refused, mut acceptable, mut unusable_keys) = (0, 0, 0, 0);
    for g in groups(include_str!(
        "../../vectors/upstream/wycheproof/rsa_signature_2048_sha256_test.json"
    )) {
        let der = hx(&g, "publicKeyAsn");
        let key = rsa::RsaPublicKey::from_pkcs1_der(&der).unwrap();
        if decode_rsa_public_strict(&der, 2048).is_err() {
            // Keys our identity format would refuse (not 2048 bits or e ≠ 65537) are still
            // checked with the rsa crate, counted apart.
            unusable_keys += 1;
        }
        let verifier = rsa::pkcs1v15::VerifyingKey::<sha2::Sha256>::new(key);
        for t in g["tests"].as_array().unwrap() {
            let sig = hx(t, "sig");
            let r = rsa::pkcs1v15::Signature::try_from(sig.as_slice())
                .map_err(|_| ())
                .and_then(|s| verifier.verify(&hx(t, "msg"), &s).map_err(|_| ()));
            match t["result"].as_str().unwrap() {
                "valid" => {
                    assert!(r.is_ok(), "tc {}", t["tcId"]);
                    ok += 1;
                }
                "invalid" => {
                    assert!(r.is_err(), "tc {}", t["tcId"]);
                    refused += 1;
                }
                _ => acceptable += 1,
            }
        }
    }
    assert_eq!(ok + refused + acceptable, 259);
    assert!(
        ok > 0 && refused > 100,
        "{ok} {refused} {acceptable} {unusable_keys}"
    );
}
