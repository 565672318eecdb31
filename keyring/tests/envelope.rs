//! Envelopes (docs/spec/handover.md §2; THREATS C4, C20, C21): round trips on both paths,
//! every check of `open` on its own, bit flips, and the known-answer vectors in
//! `vectors/envelopes/`, checked here and regenerated to prove they are current:
//!
//! ```text
//! VAULT_REGENERATE_VECTORS=1 cargo test -p vault-keyring --test envelope
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use proptest::prelude::*;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use rsa::pkcs1::{DecodeRsaPrivateKey, EncodeRsaPrivateKey};
use serde::{Deserialize, Serialize};
use vault_keyring::envelope::{
    self, Grant, Method, Purpose, RecipientKey, RecipientSecret, HEADER_LEN, MAX_PAYLOAD_LEN,
};
use vault_keyring::{Error, IdentityBundle, Keyring, KeyringOptions};

struct Cast {
    alice: Keyring,
    bob: Keyring,
    mallory: Keyring,
    /// With an RSA-4096 exchange key (slow to generate: once per binary).
    rsa_bob: Keyring,
}

fn cast() -> &'static Cast {
    static C: OnceLock<Cast> = OnceLock::new();
    C.get_or_init(|| {
        let mut rng = ChaCha20Rng::from_seed([40; 32]);
        let opts = KeyringOptions::new().with_created_at(1_795_000_000);
        Cast {
            alice: Keyring::generate(&mut rng, &opts).unwrap(),
            bob: Keyring::generate(&mut rng, &opts).unwrap(),
            mallory: Keyring::generate(&mut rng, &opts).unwrap(),
            rsa_bob: Keyring::generate(&mut rng, &opts.with_rsa_exchange(true)).unwrap(),
        }
    })
}

fn bundle(k: &Keyring) -> IdentityBundle {
    k.identity_bundle(&mut ChaCha20Rng::from_seed([41; 32]))
}

fn grant(epoch: u32) -> Grant {
    Grant {
        purpose: Purpose::CollectionKey,
        owner: [0x11; 16],
        target: [0x22; 16],
        epoch,
    }
}

fn seal_to(
    rng: &mut ChaCha20Rng,
    granter: &Keyring,
    to: &IdentityBundle,
    g: &Grant,
    method: Method,
    payload: &[u8],
) -> Vec<u8> {
    envelope::seal(
        rng,
        granter,
        &RecipientKey::user(to),
        g,
        method,
        payload,
        1_795_000_100,
    )
    .unwrap()
}

#[test]
fn hpke_envelope_round_trip_and_peek() {
    let c = cast();
    let mut rng = ChaCha20Rng::from_seed([1; 32]);
    let e = seal_to(
        &mut rng,
        &c.alice,
        &bundle(&c.bob),
        &grant(3),
        Method::Hpke,
        &[7; 32],
    );
    let info = envelope::peek(&e).unwrap();
    assert_eq!(info.granter, c.alice.id());
    assert_eq!(info.granter_fingerprint, c.alice.fingerprint());
    assert_eq!(info.recipient, *c.bob.id().as_bytes());
    assert_eq!(info.recipient_key, *c.bob.fingerprint().as_bytes());
    assert_eq!(info.grant, grant(3));
    assert_eq!(info.method, Method::Hpke);
    assert_eq!(info.created_at, 1_795_000_100);
    let out = envelope::open(
        &e,
        &bundle(&c.alice),
        &RecipientSecret::user(&c.bob),
        &grant(3),
    )
    .unwrap();
    assert_eq!(&out[..], &[7; 32]);
    // header || u32 || enc || ciphertext || tag || signature
    assert_eq!(e.len(), HEADER_LEN + 4 + 65 + 32 + 16 + 256);
}

#[test]
fn rsa_oaep_envelope_round_trip() {
    let c = cast();
    let mut rng = ChaCha20Rng::from_seed([2; 32]);
    let to = bundle(&c.rsa_bob);
    let e = seal_to(
        &mut rng,
        &c.alice,
        &to,
        &grant(1),
        Method::RsaOaep,
        &[9; 64],
    );
    assert_eq!(envelope::peek(&e).unwrap().method, Method::RsaOaep);
    let me = RecipientSecret::user(&c.rsa_bob);
    let out = envelope::open(&e, &bundle(&c.alice), &me, &grant(1)).unwrap();
    assert_eq!(&out[..], &[9; 64]);
    // A recipient without an RSA-4096 key cannot be sent the RSA path.
    assert_eq!(
        envelope::seal(
            &mut rng,
            &c.alice,
            &RecipientKey::user(&bundle(&c.bob)),
            &grant(1),
            Method::RsaOaep,
            &[1; 32],
            0
        ),
        Err(Error::UnsupportedFormat)
    );
    // Every flipped bit of the RSA envelope fails (sampled: RSA-4096 opens are slow).
    for i in (0..e.len()).step_by(61) {
        let mut bad = e.clone();
        bad[i] ^= 0x10;
        assert!(
            envelope::open(&bad, &bundle(&c.alice), &me, &grant(1)).is_err(),
            "byte {i}"
        );
    }
}

#[test]
fn payload_bounds() {
    let c = cast();
    let mut rng = ChaCha20Rng::from_seed([3; 32]);
    let to = bundle(&c.bob);
    for bad in [0usize, MAX_PAYLOAD_LEN + 1] {
        assert!(matches!(
            envelope::seal(
                &mut rng,
                &c.alice,
                &RecipientKey::user(&to),
                &grant(1),
                Method::Hpke,
                &vec![1; bad],
                0
            ),
            Err(Error::InvalidInput(_))
        ));
    }
    let e = seal_to(
        &mut rng,
        &c.alice,
        &to,
        &grant(1),
        Method::Hpke,
        &vec![5; MAX_PAYLOAD_LEN],
    );
    let out = envelope::open(
        &e,
        &bundle(&c.alice),
        &RecipientSecret::user(&c.bob),
        &grant(1),
    )
    .unwrap();
    assert_eq!(out.len(), MAX_PAYLOAD_LEN);
}

#[test]
fn each_check_of_open_refuses_on_its_own() {
    let c = cast();
    let mut rng = ChaCha20Rng::from_seed([4; 32]);
    let alice = bundle(&c.alice);
    let e = seal_to(
        &mut rng,
        &c.alice,
        &bundle(&c.bob),
        &grant(2),
        Method::Hpke,
        &[7; 32],
    );
    let bob = RecipientSecret::user(&c.bob);
    let fail = |r: Result<zeroize::Zeroizing<Vec<u8>>, Error>, what: &str| {
        assert_eq!(r.err(), Some(Error::AuthenticationFailed), "{what}");
    };
    // Retargeted (another collection), replayed (another epoch), another owner, another
    // purpose: the signed header says otherwise.
    let mut g = grant(2);
    g.target = [0x23; 16];
    fail(envelope::open(&e, &alice, &bob, &g), "other target");
    fail(envelope::open(&e, &alice, &bob, &grant(1)), "other epoch");
    let mut g = grant(2);
    g.owner = [0x12; 16];
    fail(envelope::open(&e, &alice, &bob, &g), "other owner");
    let mut g = grant(2);
    g.purpose = Purpose::GroupSecret;
    fail(envelope::open(&e, &alice, &bob, &g), "other purpose");
    // Granter: someone else's pinned identity.
    fail(
        envelope::open(&e, &bundle(&c.mallory), &bob, &grant(2)),
        "other granter",
    );
    // Recipient: Mallory cannot open Bob's envelope even with Bob's id claimed.
    let fake_me = RecipientSecret::from_parts(
        *c.bob.id().as_bytes(),
        *c.bob.fingerprint().as_bytes(),
        c.mallory.exchange_secret(),
        None,
    );
    fail(
        envelope::open(&e, &alice, &fake_me, &grant(2)),
        "wrong private key",
    );
    fail(
        envelope::open(&e, &alice, &RecipientSecret::user(&c.mallory), &grant(2)),
        "addressed to bob",
    );
    // Re-signed by Mallory after re-targeting: the granter is not the pinned one.
    let mut forged = e.clone();
    forged[HEADER_LEN - 12 - 16..HEADER_LEN - 12].copy_from_slice(&[0x23; 16]);
    let sig_at = forged.len() - 256;
    let sig = c.mallory.sign(
        &mut rng,
        b"vault/v1/envelope-signature\0",
        &forged[..sig_at],
    );
    forged[sig_at..].copy_from_slice(&sig);
    let mut g = grant(2);
    g.target = [0x23; 16];
    fail(
        envelope::open(&forged, &alice, &bob, &g),
        "re-signed by mallory",
    );
    // Unsigned: signature zeroed; mis-signed: signed over other bytes.
    let mut unsigned = e.clone();
    let n = unsigned.len();
    unsigned[n - 256..].fill(0);
    fail(
        envelope::open(&unsigned, &alice, &bob, &grant(2)),
        "unsigned",
    );
    // Trailing byte, truncation.
    let mut long = e.clone();
    long.push(0);
    fail(
        envelope::open(&long, &alice, &bob, &grant(2)),
        "trailing byte",
    );
    fail(
        envelope::open(&e[..e.len() - 1], &alice, &bob, &grant(2)),
        "truncated",
    );
    // Every bit of every byte.
    for i in 0..e.len() {
        let mut bad = e.clone();
        bad[i] ^= 1 << (i % 8);
        assert!(
            envelope::open(&bad, &alice, &bob, &grant(2)).is_err(),
            "byte {i}"
        );
    }
    // The genuine one still opens.
    assert!(envelope::open(&e, &alice, &bob, &grant(2)).is_ok());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn wrap_unwrap_any_payload(payload in proptest::collection::vec(any::<u8>(), 1..=MAX_PAYLOAD_LEN),
                               epoch in any::<u32>(), seed in any::<[u8; 32]>()) {
        let c = cast();
        let mut rng = ChaCha20Rng::from_seed(seed);
        let g = grant(epoch);
        let e = seal_to(&mut rng, &c.alice, &bundle(&c.bob), &g, Method::Hpke, &payload);
        let out = envelope::open(&e, &bundle(&c.alice), &RecipientSecret::user(&c.bob), &g).unwrap();
        prop_assert_eq!(&out[..], &payload[..]);
    }
}

// ---- known-answer vectors ----

#[derive(Serialize, Deserialize, PartialEq, Debug, Clone)]
struct Vector {
    description: String,
    granter_identity_bundle: String,
    recipient_id: String,
    recipient_key_fingerprint: String,
    recipient_exchange_secret: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    recipient_rsa_private_key_pkcs1: Option<String>,
    expected_grant: BTreeMap<String, String>,
    envelope: String,
    /// "ok" (then `payload`) or "AuthenticationFailed".
    expect: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    payload: Option<String>,
}

fn vectors_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../vectors/envelopes")
}

fn grant_map(g: &Grant) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    m.insert(
        "purpose".into(),
        match g.purpose {
            Purpose::CollectionKey => "1",
            Purpose::GroupSecret => "2",
            _ => unreachable!(),
        }
        .into(),
    );
    m.insert("owner".into(), hex::encode(g.owner));
    m.insert("target".into(), hex::encode(g.target));
    m.insert("epoch".into(), g.epoch.to_string());
    m
}

fn grant_from(m: &BTreeMap<String, String>) -> Grant {
    Grant {
        purpose: match m["purpose"].as_str() {
            "1" => Purpose::CollectionKey,
            _ => Purpose::GroupSecret,
        },
        owner: hex::decode(&m["owner"]).unwrap().try_into().unwrap(),
        target: hex::decode(&m["target"]).unwrap().try_into().unwrap(),
        epoch: m["epoch"].parse().unwrap(),
    }
}

fn generate() -> BTreeMap<String, Vector> {
    let c = cast();
    let mut rng = ChaCha20Rng::from_seed([77; 32]);
    let alice = bundle(&c.alice);
    let payload = [0x5a; 32];
    let make = |rng: &mut ChaCha20Rng,
                description: &str,
                recipient: &Keyring,
                method: Method,
                sealed_grant: &Grant,
                expected_grant: &Grant,
                tamper: &dyn Fn(&mut Vec<u8>),
                expect: &str| {
        let mut e = seal_to(
            rng,
            &c.alice,
            &bundle(recipient),
            sealed_grant,
            method,
            &payload,
        );
        tamper(&mut e);
        Vector {
            description: description.into(),
            granter_identity_bundle: hex::encode(alice.as_bytes()),
            recipient_id: hex::encode(recipient.id().as_bytes()),
            recipient_key_fingerprint: hex::encode(recipient.fingerprint().as_bytes()),
            recipient_exchange_secret: hex::encode(recipient.exchange_secret().to_bytes()),
            recipient_rsa_private_key_pkcs1: recipient
                .rsa_exchange_secret()
                .filter(|_| method == Method::RsaOaep)
                .map(|k| hex::encode(k.to_pkcs1_der().unwrap().as_bytes())),
            expected_grant: grant_map(expected_grant),
            envelope: hex::encode(&e),
            expect: expect.into(),
            payload: (expect == "ok").then(|| hex::encode(payload)),
        }
    };
    let none = |_: &mut Vec<u8>| {};
    let mut out = BTreeMap::new();
    let g = grant(1);
    out.insert(
        "envelope_hpke_ok".into(),
        make(
            &mut rng,
            "HPKE P-256 envelope of a 32-byte collection key, epoch 1",
            &c.bob,
            Method::Hpke,
            &g,
            &g,
            &none,
            "ok",
        ),
    );
    out.insert(
        "envelope_rsa_oaep_ok".into(),
        make(
            &mut rng,
            "RSA-4096 OAEP envelope of a 32-byte collection key, epoch 1",
            &c.rsa_bob,
            Method::RsaOaep,
            &g,
            &g,
            &none,
            "ok",
        ),
    );
    let mut other_target = g;
    other_target.target = [0x23; 16];
    out.insert(
        "envelope_retargeted".into(),
        make(
            &mut rng,
            "A genuine envelope for collection 22..22 presented as the key of collection 23..23",
            &c.bob,
            Method::Hpke,
            &g,
            &other_target,
            &none,
            "AuthenticationFailed",
        ),
    );
    out.insert(
        "envelope_replayed_epoch".into(),
        make(
            &mut rng,
            "A genuine envelope of epoch 1 presented as the key of epoch 2",
            &c.bob,
            Method::Hpke,
            &g,
            &grant(2),
            &none,
            "AuthenticationFailed",
        ),
    );
    let mut other_purpose = g;
    other_purpose.purpose = Purpose::GroupSecret;
    out.insert(
        "envelope_other_purpose".into(),
        make(
            &mut rng,
            "A collection-key envelope presented as a group secret",
            &c.bob,
            Method::Hpke,
            &g,
            &other_purpose,
            &none,
            "AuthenticationFailed",
        ),
    );
    out.insert(
        "envelope_flipped_ciphertext".into(),
        make(
            &mut rng,
            "One bit of the HPKE ciphertext flipped",
            &c.bob,
            Method::Hpke,
            &g,
            &g,
            &|e: &mut Vec<u8>| e[HEADER_LEN + 4 + 65 + 3] ^= 1,
            "AuthenticationFailed",
        ),
    );
    out.insert(
        "envelope_flipped_signature".into(),
        make(
            &mut rng,
            "One bit of the granter's signature flipped",
            &c.bob,
            Method::Hpke,
            &g,
            &g,
            &|e: &mut Vec<u8>| {
                let n = e.len();
                e[n - 5] ^= 0x20
            },
            "AuthenticationFailed",
        ),
    );
    out.insert(
        "envelope_recipient_swapped".into(),
        make(
            &mut rng,
            "The header's recipient id changed to the granter's own (signature no longer matches)",
            &c.bob,
            Method::Hpke,
            &g,
            &g,
            &|e: &mut Vec<u8>| e[7 + 48..7 + 64].copy_from_slice(cast().alice.id().as_bytes()),
            "AuthenticationFailed",
        ),
    );
    out
}

fn check(v: &Vector) -> Result<Vec<u8>, Error> {
    let granter = IdentityBundle::from_bytes(&hex::decode(&v.granter_identity_bundle).unwrap())?;
    let secret =
        p256::SecretKey::from_slice(&hex::decode(&v.recipient_exchange_secret).unwrap()).unwrap();
    let rsa = v
        .recipient_rsa_private_key_pkcs1
        .as_ref()
        .map(|h| rsa::RsaPrivateKey::from_pkcs1_der(&hex::decode(h).unwrap()).unwrap());
    let me = RecipientSecret::from_parts(
        hex::decode(&v.recipient_id).unwrap().try_into().unwrap(),
        hex::decode(&v.recipient_key_fingerprint)
            .unwrap()
            .try_into()
            .unwrap(),
        &secret,
        rsa.as_ref(),
    );
    envelope::open(
        &hex::decode(&v.envelope).unwrap(),
        &granter,
        &me,
        &grant_from(&v.expected_grant),
    )
    .map(|p| p.to_vec())
}

#[test]
fn vectors_pass_and_are_current() {
    let dir = vectors_dir();
    let generated = generate();
    if std::env::var_os("VAULT_REGENERATE_VECTORS").is_some() {
        std::fs::create_dir_all(&dir).unwrap();
        for (name, v) in &generated {
            let text = serde_json::to_string_pretty(v).unwrap() + "\n";
            std::fs::write(dir.join(format!("{name}.json")), text).unwrap();
        }
    }
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let name = path.file_stem().unwrap().to_str().unwrap().to_owned();
        let v: Vector = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        match (v.expect.as_str(), check(&v)) {
            ("ok", Ok(p)) => assert_eq!(Some(hex::encode(p)), v.payload, "{name}"),
            ("AuthenticationFailed", Err(Error::AuthenticationFailed)) => {}
            (e, r) => panic!("{name}: expected {e}, got {r:?}"),
        }
        assert_eq!(
            generated.get(&name),
            Some(&v),
            "{name} is not current: regenerate"
        );
        seen += 1;
    }
    assert_eq!(seen, generated.len(), "a vector file is missing");
}
