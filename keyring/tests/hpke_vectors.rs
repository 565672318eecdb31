//! HPKE known answers and refusals (docs/spec/exchange.md §2, §5).
//!
//! - RFC 9180 test vectors (vectors/upstream/rfc9180/, the CFRG `test-vectors.json` at commit
//!   5f503c5): every base-mode entry of DHKEM(P-256, HKDF-SHA256) + HKDF-SHA256. AEAD 0x0002
//!   (ours) through `hpke_seal`/`hpke_open`; AEADs 0x0001 and 0xFFFF (export only) through
//!   the `hpke` crate's own API, so the KEM and KDF we rely on are checked against three
//!   independent entries; the key schedule recomputed from the RFC's definitions.
//! - Tampering: every flipped bit of enc, ciphertext, tag, info and aad, every truncation and
//!   a wrong recipient are the one `AuthenticationFailed`.
//! - Wycheproof ecdh_secp256r1_ecpoint (Apache-2.0): no invalid point can be a recipient or an
//!   `enc`; valid points are harmless as `enc`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use hkdf::Hkdf;
use serde_json::Value;
use sha2::Sha256;
use vault_keyring::exchange::internal::hpke::{self, Deserializable, Kem as _, Serializable};
use vault_keyring::exchange::internal::{Kdf, Kem};
use vault_keyring::exchange::{hpke_open, hpke_seal, HPKE_ENC_LEN, HPKE_TAG_LEN};
use vault_keyring::reexports::{p256, rand_core};
use vault_keyring::{Error, ExchangePublicKey};

const RFC9180: &str = include_str!("../../vectors/upstream/rfc9180/hpke_p256_sha256_base.json");

fn hx(v: &Value, field: &str) -> Vec<u8> {
    hex::decode(v[field].as_str().unwrap()).unwrap()
}

fn entries() -> Vec<Value> {
    serde_json::from_str::<Value>(RFC9180)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

fn entry(aead_id: u64) -> Value {
    entries()
        .into_iter()
        .find(|e| e["aead_id"].as_u64() == Some(aead_id))
        .unwrap()
}

/// Hands out the vector's `ikmE` once, in one `fill_bytes` of exactly its length, and
/// panics on any other request: proves the ephemeral key comes from these 32 bytes alone.
/// Implements both `rand_core` 0.6 (our API) and 0.9 (the `hpke` crate's).
struct FixedRng(Option<Vec<u8>>);

impl FixedRng {
    fn new(bytes: Vec<u8>) -> Self {
        Self(Some(bytes))
    }

    fn give(&mut self, dest: &mut [u8]) {
        let bytes = self.0.take().expect("randomness asked for twice");
        assert_eq!(dest.len(), bytes.len(), "ephemeral ikm of another length");
        dest.copy_from_slice(&bytes);
    }
}

impl rand_core::RngCore for FixedRng {
    fn next_u32(&mut self) -> u32 {
        unimplemented!("only fill_bytes")
    }
    fn next_u64(&mut self) -> u64 {
        unimplemented!("only fill_bytes")
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        self.give(dest)
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.give(dest);
        Ok(())
    }
}

impl rand_core::CryptoRng for FixedRng {}

impl hpke::rand_core::RngCore for FixedRng {
    fn next_u32(&mut self) -> u32 {
        unimplemented!("only fill_bytes")
    }
    fn next_u64(&mut self) -> u64 {
        unimplemented!("only fill_bytes")
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        self.give(dest)
    }
}

impl hpke::rand_core::CryptoRng for FixedRng {}

type KemSk = <Kem as hpke::Kem>::PrivateKey;
type KemPk = <Kem as hpke::Kem>::PublicKey;
type Enc = <Kem as hpke::Kem>::EncappedKey;

#[test]
fn file_holds_the_expected_entries() {
    let all = entries();
    let ids: Vec<u64> = all.iter().map(|e| e["aead_id"].as_u64().unwrap()).collect();
    assert_eq!(ids, [1, 2, 0xFFFF]);
    for e in &all {
        assert_eq!(
            (
                e["mode"].as_u64(),
                e["kem_id"].as_u64(),
                e["kdf_id"].as_u64()
            ),
            (Some(0), Some(0x10), Some(1))
        );
        assert_eq!(e["exports"].as_array().unwrap().len(), 3);
        let encryptions = e["encryptions"].as_array().unwrap().len();
        let expected = if e["aead_id"] == 0xFFFF { 0 } else { 257 };
        assert_eq!(encryptions, expected);
    }
}

#[test]
fn derive_keypair_and_dhkem_match_every_entry() {
    for e in entries() {
        for (ikm, sk, pk) in [("ikmR", "skRm", "pkRm"), ("ikmE", "skEm", "pkEm")] {
            let (s, p) = Kem::derive_keypair(&hx(&e, ikm));
            assert_eq!(s.to_bytes().as_slice(), hx(&e, sk), "{}", e["aead_id"]);
            assert_eq!(p.to_bytes().as_slice(), hx(&e, pk), "{}", e["aead_id"]);
        }
        assert_eq!(hx(&e, "enc"), hx(&e, "pkEm"));

        // Encap with the vector's ikmE and decap with skRm give its shared secret.
        let pk_r = KemPk::from_bytes(&hx(&e, "pkRm")).unwrap();
        let sk_r = KemSk::from_bytes(&hx(&e, "skRm")).unwrap();
        let mut rng = FixedRng::new(hx(&e, "ikmE"));
        let (ss, enc) = Kem::encap(&pk_r, None, &mut rng).unwrap();
        assert_eq!(enc.to_bytes().as_slice(), hx(&e, "enc"));
        assert_eq!(ss.0.as_slice(), hx(&e, "shared_secret"));
        let ss = Kem::decap(&sk_r, None, &enc).unwrap();
        assert_eq!(ss.0.as_slice(), hx(&e, "shared_secret"));

        // And the same from the RFC's definition, with plain P-256 ECDH and HKDF:
        // ExtractAndExpand(DH(skE, pkR), enc || pkR).
        let sk_e = p256::SecretKey::from_slice(&hx(&e, "skEm")).unwrap();
        let pk_r = p256::PublicKey::from_sec1_bytes(&hx(&e, "pkRm")).unwrap();
        let dh = p256::ecdh::diffie_hellman(sk_e.to_nonzero_scalar(), pk_r.as_affine());
        let kem_suite = [b"KEM".as_slice(), &0x0010u16.to_be_bytes()].concat();
        let prk = labeled_extract(&kem_suite, b"", b"eae_prk", dh.raw_secret_bytes());
        let context = [hx(&e, "enc"), hx(&e, "pkRm")].concat();
        let ss = labeled_expand(&kem_suite, &prk, b"shared_secret", &context, 32);
        assert_eq!(ss, hx(&e, "shared_secret"));
    }
}

fn labeled_extract(suite: &[u8], salt: &[u8], label: &[u8], ikm: &[u8]) -> Vec<u8> {
    let ikm = [b"HPKE-v1".as_slice(), suite, label, ikm].concat();
    Hkdf::<Sha256>::extract(Some(salt), &ikm).0.to_vec()
}

fn labeled_expand(suite: &[u8], prk: &[u8], label: &[u8], info: &[u8], len: usize) -> Vec<u8> {
    let len16 = u16::try_from(len).unwrap().to_be_bytes();
    let info = [len16.as_slice(), b"HPKE-v1", suite, label, info].concat();
    let mut out = vec![0u8; len];
    Hkdf::<Sha256>::from_prk(prk)
        .unwrap()
        .expand(&info, &mut out)
        .unwrap();
    out
}

/// RFC 9180 §5.1 KeySchedule (mode_base, empty psk) and §5.2–5.3 nonces and exports,
/// recomputed from the vector's shared secret: pins the file's intermediate values, which
/// the `hpke` crate keeps private.
#[test]
fn key_schedule_of_every_entry() {
    for e in entries() {
        let aead = u16::try_from(e["aead_id"].as_u64().unwrap()).unwrap();
        let suite = [
            b"HPKE".as_slice(),
            &0x0010u16.to_be_bytes(),
            &0x0001u16.to_be_bytes(),
            &aead.to_be_bytes(),
        ]
        .concat();
        let psk_id_hash = labeled_extract(&suite, b"", b"psk_id_hash", b"");
        let info_hash = labeled_extract(&suite, b"", b"info_hash", &hx(&e, "info"));
        let ksc = [vec![0u8], psk_id_hash, info_hash].concat();
        assert_eq!(ksc, hx(&e, "key_schedule_context"));
        let secret = labeled_extract(&suite, &hx(&e, "shared_secret"), b"secret", b"");
        assert_eq!(secret, hx(&e, "secret"));
        let (nk, nn) = match aead {
            1 => (16, 12),
            2 => (32, 12),
            _ => (0, 0),
        };
        if nk > 0 {
            assert_eq!(
                labeled_expand(&suite, &secret, b"key", &ksc, nk),
                hx(&e, "key")
            );
            let base_nonce = labeled_expand(&suite, &secret, b"base_nonce", &ksc, nn);
            assert_eq!(base_nonce, hx(&e, "base_nonce"));
            for (seq, enc) in e["encryptions"].as_array().unwrap().iter().enumerate() {
                let mut nonce = base_nonce.clone();
                for (n, s) in nonce[4..].iter_mut().zip((seq as u64).to_be_bytes()) {
                    *n ^= s;
                }
                assert_eq!(nonce, hx(enc, "nonce"), "seq {seq}");
            }
        } else {
            assert!(hx(&e, "key").is_empty() && hx(&e, "base_nonce").is_empty());
        }
        let exporter_secret = labeled_expand(&suite, &secret, b"exp", &ksc, 32);
        assert_eq!(exporter_secret, hx(&e, "exporter_secret"));
        for x in e["exports"].as_array().unwrap() {
            let len = x["L"].as_u64().unwrap() as usize;
            let ctx = hx(x, "exporter_context");
            let out = labeled_expand(&suite, &exporter_secret, b"sec", &ctx, len);
            assert_eq!(out, hx(x, "exported_value"));
        }
    }
}

/// The crate's sender and receiver contexts reproduce every ciphertext (in sequence) and
/// every export of an entry.
fn crate_reproduces<A: hpke::aead::Aead>(e: &Value) -> usize {
    assert_eq!(u64::from(A::AEAD_ID), e["aead_id"].as_u64().unwrap());
    let info = hx(e, "info");
    let pk_r = KemPk::from_bytes(&hx(e, "pkRm")).unwrap();
    let sk_r = KemSk::from_bytes(&hx(e, "skRm")).unwrap();
    let mut rng = FixedRng::new(hx(e, "ikmE"));
    let (enc, mut sender) =
        hpke::setup_sender::<A, Kdf, Kem, _>(&hpke::OpModeS::Base, &pk_r, &info, &mut rng).unwrap();
    assert_eq!(enc.to_bytes().as_slice(), hx(e, "enc"));
    let mut receiver =
        hpke::setup_receiver::<A, Kdf, Kem>(&hpke::OpModeR::Base, &sk_r, &enc, &info).unwrap();
    let mut checked = 0;
    for (seq, x) in e["encryptions"].as_array().unwrap().iter().enumerate() {
        let (pt, aad, ct) = (hx(x, "pt"), hx(x, "aad"), hx(x, "ct"));
        assert_eq!(sender.seal(&pt, &aad).unwrap(), ct, "seq {seq}");
        assert_eq!(receiver.open(&ct, &aad).unwrap(), pt, "seq {seq}");
        checked += 1;
    }
    for x in e["exports"].as_array().unwrap() {
        let mut out = vec![0u8; x["L"].as_u64().unwrap() as usize];
        let ctx = hx(x, "exporter_context");
        sender.export(&ctx, &mut out).unwrap();
        assert_eq!(out, hx(x, "exported_value"));
        out.fill(0);
        receiver.export(&ctx, &mut out).unwrap();
        assert_eq!(out, hx(x, "exported_value"));
        checked += 1;
    }
    checked
}

#[test]
fn crate_reproduces_all_three_entries() {
    use hpke::aead::{AesGcm128, AesGcm256, ExportOnlyAead};
    assert_eq!(crate_reproduces::<AesGcm128>(&entry(1)), 257 + 3);
    assert_eq!(crate_reproduces::<AesGcm256>(&entry(2)), 257 + 3);
    assert_eq!(crate_reproduces::<ExportOnlyAead>(&entry(0xFFFF)), 3);
}

struct Ours {
    sk: p256::SecretKey,
    pk: ExchangePublicKey,
    ikm_e: Vec<u8>,
    info: Vec<u8>,
    enc: Vec<u8>,
    encryptions: Vec<(Vec<u8>, Vec<u8>, Vec<u8>)>,
}

fn ours() -> Ours {
    let e = entry(2);
    Ours {
        sk: p256::SecretKey::from_slice(&hx(&e, "skRm")).unwrap(),
        pk: ExchangePublicKey::from_sec1_bytes(&hx(&e, "pkRm")).unwrap(),
        ikm_e: hx(&e, "ikmE"),
        info: hx(&e, "info"),
        enc: hx(&e, "enc"),
        encryptions: e["encryptions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| (hx(x, "pt"), hx(x, "aad"), hx(x, "ct")))
            .collect(),
    }
}

/// Our single-shot API is sequence number 0 of the AES-256-GCM entry: it reproduces `enc`
/// and the first ciphertext of the vector from its `ikmE`, and opens it with `skRm`. The
/// later ciphertexts (sequence numbers 1–256, reproduced through the crate above) use other
/// nonces, which a single-shot open never does.
#[test]
fn our_api_reproduces_the_aes256gcm_entry() {
    let v = ours();
    let (pt, aad, ct) = &v.encryptions[0];
    let mut rng = FixedRng::new(v.ikm_e.clone());
    let (enc, sealed) = hpke_seal(&mut rng, &v.pk, &v.info, aad, pt).unwrap();
    assert_eq!(enc.as_slice(), v.enc);
    assert_eq!(&sealed, ct);
    assert_eq!(sealed.len(), pt.len() + HPKE_TAG_LEN);
    assert_eq!(&*hpke_open(&v.sk, &v.enc, &v.info, aad, ct).unwrap(), pt);

    let mut refused = 0;
    for (pt, aad, ct) in &v.encryptions[1..] {
        assert_eq!(
            hpke_open(&v.sk, &v.enc, &v.info, aad, ct),
            Err(Error::AuthenticationFailed)
        );
        // The same plaintexts round-trip at sequence 0 under fresh ephemeral keys.
        let mut rng = rand_chacha::ChaCha20Rng::from_seed([refused as u8; 32]);
        let (enc, sealed) = hpke_seal(&mut rng, &v.pk, &v.info, aad, pt).unwrap();
        assert_eq!(&*hpke_open(&v.sk, &enc, &v.info, aad, &sealed).unwrap(), pt);
        refused += 1;
    }
    assert_eq!(refused, 256);
}

use rand_chacha::rand_core::SeedableRng;

fn flips(bytes: &[u8]) -> impl Iterator<Item = Vec<u8>> + '_ {
    (0..bytes.len() * 8).map(move |bit| {
        let mut b = bytes.to_vec();
        b[bit / 8] ^= 1 << (bit % 8);
        b
    })
}

#[test]
fn every_flipped_bit_truncation_and_wrong_recipient_fails() {
    let v = ours();
    let (_, aad, ct) = &v.encryptions[0];
    let open =
        |enc: &[u8], info: &[u8], aad: &[u8], ct: &[u8]| hpke_open(&v.sk, enc, info, aad, ct);
    assert!(open(&v.enc, &v.info, aad, ct).is_ok());
    let fail = Err(Error::AuthenticationFailed);
    let mut n = 0;
    for enc in flips(&v.enc) {
        assert_eq!(open(&enc, &v.info, aad, ct), fail);
        n += 1;
    }
    // The body and the tag (the last HPKE_TAG_LEN bytes).
    for c in flips(ct) {
        assert_eq!(open(&v.enc, &v.info, aad, &c), fail);
        n += 1;
    }
    for info in flips(&v.info) {
        assert_eq!(open(&v.enc, &info, aad, ct), fail);
        n += 1;
    }
    for a in flips(aad) {
        assert_eq!(open(&v.enc, &v.info, &a, ct), fail);
        n += 1;
    }
    assert_eq!(n, (HPKE_ENC_LEN + ct.len() + v.info.len() + aad.len()) * 8);

    for len in 0..ct.len() {
        assert_eq!(open(&v.enc, &v.info, aad, &ct[..len]), fail, "len {len}");
    }
    for len in 0..v.enc.len() {
        assert_eq!(open(&v.enc[..len], &v.info, aad, ct), fail, "enc len {len}");
    }
    let longer = [ct.as_slice(), &[0]].concat();
    assert_eq!(open(&v.enc, &v.info, aad, &longer), fail);
    let longer = [v.enc.as_slice(), &[0]].concat();
    assert_eq!(open(&longer, &v.info, aad, ct), fail);
    assert_eq!(open(&v.enc, b"", aad, ct), fail);
    assert_eq!(open(&v.enc, &v.info, b"", ct), fail);

    // Another recipient: the ephemeral key itself, and the other entries' recipients.
    let e = entry(2);
    let others = [
        hx(&e, "skEm"),
        hx(&entry(1), "skRm"),
        hx(&entry(0xFFFF), "skRm"),
    ];
    for sk in others {
        let sk = p256::SecretKey::from_slice(&sk).unwrap();
        assert_ne!(sk.to_bytes(), v.sk.to_bytes());
        assert_eq!(hpke_open(&sk, &v.enc, &v.info, aad, ct), fail);
    }

    // The identity and non-canonical encodings of the same point.
    use p256::elliptic_curve::sec1::ToEncodedPoint;
    let point = p256::PublicKey::from_sec1_bytes(&v.enc).unwrap();
    let compressed = point.to_encoded_point(true);
    assert_eq!(open(compressed.as_bytes(), &v.info, aad, ct), fail);
    let mut hybrid = v.enc.clone();
    hybrid[0] = 0x06 | (v.enc[64] & 1);
    assert_eq!(open(&hybrid, &v.info, aad, ct), fail);
    assert_eq!(open(&[0u8], &v.info, aad, ct), fail);
    assert_eq!(open(&[0u8; 65], &v.info, aad, ct), fail);
}

#[derive(Default, Debug)]
struct PointCounts {
    invalid_refused: usize,
    compressed_refused: usize,
    valid_uncompressed: usize,
}

#[test]
fn wycheproof_points_as_recipient_and_enc() {
    let file: Value = serde_json::from_str(include_str!(
        "../../vectors/upstream/wycheproof/ecdh_secp256r1_ecpoint_test.json"
    ))
    .unwrap();
    let v = ours();
    let (_, aad, ct) = &v.encryptions[0];
    let mut c = PointCounts::default();
    let mut rng = rand_chacha::ChaCha20Rng::from_seed([9; 32]);
    for g in file["testGroups"].as_array().unwrap() {
        for t in g["tests"].as_array().unwrap() {
            let point = hx(t, "public");
            let tc = &t["tcId"];
            let compressed = matches!(point.first(), Some(2) | Some(3));
            // An ExchangePublicKey is the only way to name a recipient of hpke_seal.
            let recipient = ExchangePublicKey::from_sec1_bytes(&point);
            let opened = hpke_open(&v.sk, &point, &v.info, aad, ct);
            match t["result"].as_str().unwrap() {
                "invalid" => {
                    assert_eq!(
                        recipient.err(),
                        Some(Error::AuthenticationFailed),
                        "tc {tc}"
                    );
                    assert_eq!(opened.err(), Some(Error::AuthenticationFailed), "tc {tc}");
                    // The crate's own decoder refuses them too (defence in depth).
                    assert!(Enc::from_bytes(&point).is_err(), "tc {tc}");
                    c.invalid_refused += 1;
                }
                // Compressed points are refused by policy (the formats carry 65-byte points).
                _ if compressed => {
                    assert_eq!(
                        recipient.err(),
                        Some(Error::AuthenticationFailed),
                        "tc {tc}"
                    );
                    assert_eq!(opened.err(), Some(Error::AuthenticationFailed), "tc {tc}");
                    c.compressed_refused += 1;
                }
                "valid" => {
                    assert_eq!(point.len(), HPKE_ENC_LEN, "tc {tc}");
                    // As enc: decapsulates to some secret, then the tag does not match.
                    assert_eq!(opened.err(), Some(Error::AuthenticationFailed), "tc {tc}");
                    // As recipient: sealing works and gives a well-formed enc.
                    let (enc, sealed) =
                        hpke_seal(&mut rng, &recipient.unwrap(), b"", b"", b"k").unwrap();
                    assert!(ExchangePublicKey::from_sec1_bytes(&enc).is_ok());
                    assert_eq!(sealed.len(), 1 + HPKE_TAG_LEN);
                    c.valid_uncompressed += 1;
                }
                other => panic!("tc {tc}: unexpected result {other}"),
            }
        }
    }
    // Pinned from the copied file: 330 valid uncompressed points, 24 invalid (16 off the
    // curve, 1 empty, 7 compressed invalid or on the twist), 1 acceptable compressed point.
    assert_eq!(
        (
            c.valid_uncompressed,
            c.invalid_refused,
            c.compressed_refused
        ),
        (330, 24, 1),
        "{c:?}"
    );
}
