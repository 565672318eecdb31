//! The primitives of the seal, checked against the published known answers
//! (vectors/upstream/kat/): NIST SP 800-38A CTR, RFC 4231 HMAC-SHA256, RFC 5869 HKDF-SHA256,
//! RFC 7914 §11 PBKDF2-HMAC-SHA256; and the seal itself recomputed by hand from them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use aes::cipher::{KeyIvInit, StreamCipher};
use hkdf::Hkdf;
use hmac::Mac;
use serde_json::Value;
use sha2::Sha256;

use super::*;

fn load(text: &str) -> Vec<Value> {
    let v: Value = serde_json::from_str(text).unwrap();
    v["vectors"].as_array().unwrap().clone()
}

fn hx(v: &Value, field: &str) -> Vec<u8> {
    hex::decode(v[field].as_str().unwrap_or_else(|| panic!("field {field}"))).unwrap()
}

fn ctr<C: KeyIvInit + StreamCipher>(key: &[u8], iv: &[u8], data: &[u8]) -> Vec<u8> {
    let mut out = data.to_vec();
    C::new_from_slices(key, iv)
        .unwrap()
        .apply_keystream(&mut out);
    out
}

#[test]
fn kat_aes_ctr_sp800_38a() {
    let vectors = load(include_str!(
        "../../vectors/upstream/kat/aes_ctr_sp800_38a.json"
    ));
    let mut aes256 = 0;
    for v in &vectors {
        let (key, iv) = (hx(v, "key_hex"), hx(v, "iv_hex"));
        let (pt, ct) = (hx(v, "plaintext_hex"), hx(v, "ciphertext_hex"));
        let (enc, dec) = match v["key_bits"].as_u64().unwrap() {
            128 => (
                ctr::<ctr::Ctr128BE<aes::Aes128>>(&key, &iv, &pt),
                ctr::<ctr::Ctr128BE<aes::Aes128>>(&key, &iv, &ct),
            ),
            192 => (
                ctr::<ctr::Ctr128BE<aes::Aes192>>(&key, &iv, &pt),
                ctr::<ctr::Ctr128BE<aes::Aes192>>(&key, &iv, &ct),
            ),
            256 => {
                aes256 += 1;
                // The exact type the seal uses.
                (
                    ctr::<Aes256Ctr>(&key, &iv, &pt),
                    ctr::<Aes256Ctr>(&key, &iv, &ct),
                )
            }
            other => panic!("key size {other}"),
        };
        assert_eq!(enc, ct, "{} encrypt", v["id"]);
        assert_eq!(dec, pt, "{} decrypt", v["id"]);
    }
    assert_eq!(vectors.len(), 3);
    assert_eq!(aes256, 1);
}

#[test]
fn kat_hmac_sha256_rfc4231() {
    let vectors = load(include_str!(
        "../../vectors/upstream/kat/hmac_sha256_rfc4231.json"
    ));
    for v in &vectors {
        let mut mac = <HmacSha256 as Mac>::new_from_slice(&hx(v, "key_hex")).unwrap();
        mac.update(&hx(v, "data_hex"));
        let tag = mac.finalize().into_bytes();
        let expected = hx(v, "mac_hex");
        let n = v["truncated_to_bytes"]
            .as_u64()
            .map_or(tag.len(), |n| n as usize);
        assert_eq!(&tag[..n], &expected[..], "{}", v["id"]);
    }
    assert_eq!(vectors.len(), 7);
}

#[test]
fn kat_hkdf_sha256_rfc5869() {
    let vectors = load(include_str!(
        "../../vectors/upstream/kat/hkdf_sha256_rfc5869.json"
    ));
    for v in &vectors {
        let salt = hx(v, "salt_hex");
        let (prk, hk) = Hkdf::<Sha256>::extract(
            if salt.is_empty() { None } else { Some(&salt) },
            &hx(v, "ikm_hex"),
        );
        assert_eq!(prk.to_vec(), hx(v, "prk_hex"), "{} PRK", v["id"]);
        let mut okm = vec![0u8; v["length"].as_u64().unwrap() as usize];
        hk.expand(&hx(v, "info_hex"), &mut okm).unwrap();
        assert_eq!(okm, hx(v, "okm_hex"), "{} OKM", v["id"]);
    }
    assert_eq!(vectors.len(), 3);
}

#[test]
fn kat_pbkdf2_hmac_sha256_rfc7914() {
    let vectors = load(include_str!(
        "../../vectors/upstream/kat/pbkdf2_hmac_sha256.json"
    ));
    for v in &vectors {
        let mut dk = vec![0u8; v["dklen"].as_u64().unwrap() as usize];
        pbkdf2::pbkdf2_hmac::<Sha256>(
            &hx(v, "password_hex"),
            &hx(v, "salt_hex"),
            v["iterations"].as_u64().unwrap() as u32,
            &mut dk,
        );
        assert_eq!(dk, hx(v, "dk_hex"), "{}", v["id"]);
    }
    assert_eq!(vectors.len(), 2);
}

#[test]
fn kat_seal_is_the_documented_composition() {
    let secret = SymmetricKey::from_bytes([0x42; 32]).unwrap();
    let nonce = [0x24u8; NONCE_LEN];
    let context = Context::new("vault/v1/test");
    let (ad, pt) = (
        b"associated".as_slice(),
        b"plaintext of the test".as_slice(),
    );

    // Key schedule, independently: HKDF(salt = nonce, ikm = secret, info = prefix || label).
    let mut okm = [0u8; 80];
    Hkdf::<Sha256>::new(Some(&nonce), &[0x42; 32])
        .expand(b"vault/v1/seal:vault/v1/test", &mut okm)
        .unwrap();
    let keys = derive(&secret, &nonce, context);
    assert_eq!(&keys.enc[..], &okm[..32]);
    assert_eq!(&keys.mac[..], &okm[32..64]);
    assert_eq!(&keys.iv[..], &okm[64..]);

    // The box, by hand: nonce || AES-256-CTR(enc, iv, pt) || HMAC(mac, len(ad) || ad || nonce || C).
    let c = ctr::<Aes256Ctr>(&okm[..32], &okm[64..], pt);
    let mut mac = <HmacSha256 as Mac>::new_from_slice(&okm[32..64]).unwrap();
    mac.update(&(ad.len() as u64).to_be_bytes());
    mac.update(ad);
    mac.update(&nonce);
    mac.update(&c);
    let mut expected = nonce.to_vec();
    expected.extend_from_slice(&c);
    expected.extend_from_slice(&mac.finalize().into_bytes());

    let sealed = seal_with_nonce(&secret, context, ad, &nonce, pt);
    assert_eq!(sealed, expected);
    assert_eq!(&*open(&secret, context, ad, &sealed).unwrap(), pt);
    assert_eq!(sealed.len(), NONCE_LEN + pt.len() + TAG_LEN);
}
