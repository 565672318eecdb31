//! Known-answer vectors of the keyring format (docs/spec/keyring.md §9).
//!
//! One JSON file per behaviour in `vectors/keyring/`, success and each failure. This test
//! checks every file against the library and then regenerates the whole set from fixed
//! seeds to prove the files are current. To rewrite them after a deliberate format change:
//!
//! ```text
//! VAULT_REGENERATE_VECTORS=1 cargo test -p vault-keyring --test vectors
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use serde::{Deserialize, Serialize};
use vault_keyring::danger::{insecure_test_params, insecure_test_policy};
use vault_keyring::{
    Error, IdentityBundle, KdfParams, KeyPurpose, Keyring, KeyringOptions, Password, PasswordKeys,
    RecoveryCode, RecoveryCodeError, SealedKeyring,
};

/// A vector file. `kind` selects the check; `expect` is `"ok"` or the error's name.
#[derive(Serialize, Deserialize, PartialEq, Debug, Clone)]
struct Vector {
    description: String,
    kind: String,
    expect: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    password: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    new_password: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    recovery_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sealed_keyring: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    identity_bundle: Option<String>,
    /// Expected values after success (hex unless named otherwise).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    expected: BTreeMap<String, String>,
}

const STRICT_ITERATIONS: u32 = 600_000;

fn vectors_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../vectors/keyring")
}

fn rng(label: &str) -> ChaCha20Rng {
    // Seed = label bytes padded with zeros: every vector has its own stream.
    let mut seed = [0u8; 32];
    let n = label.len().min(32);
    seed[..n].copy_from_slice(&label.as_bytes()[..n]);
    ChaCha20Rng::from_seed(seed)
}

struct Made {
    keyring: Keyring,
    sealed: SealedKeyring,
    code: RecoveryCode,
    keys: PasswordKeys,
}

fn make(label: &str, password: &str, iterations: u32, rsa_exchange: bool) -> Made {
    let mut rng = rng(label);
    let params = insecure_test_params(&mut rng, iterations);
    let keys = PasswordKeys::derive_with_policy(
        &Password::from(password),
        &params,
        &insecure_test_policy(u32::MAX),
    )
    .unwrap();
    let options = KeyringOptions::new()
        .with_created_at(1_795_000_000)
        .with_rsa_exchange(rsa_exchange);
    let keyring = Keyring::generate(&mut rng, &options).unwrap();
    let (sealed, code) = SealedKeyring::seal(&mut rng, &keyring, &keys);
    Made {
        keyring,
        sealed,
        code,
        keys,
    }
}

fn expected_of(keyring: &Keyring, keys: &PasswordKeys, label: &str) -> BTreeMap<String, String> {
    let mut rng = rng(label);
    let bundle = keyring.identity_bundle(&mut rng);
    let fp = bundle.fingerprint();
    let mut m = BTreeMap::new();
    m.insert("keyring_id".into(), keyring.id().to_string());
    m.insert("created_at".into(), keyring.created_at().to_string());
    m.insert("generation".into(), keyring.generation().to_string());
    m.insert(
        "kdf_iterations".into(),
        keys.params().iterations().to_string(),
    );
    m.insert("kdf_salt".into(), hex::encode(keys.params().salt()));
    m.insert(
        "login_secret".into(),
        hex::encode(keys.login_secret().expose_bytes()),
    );
    for (name, purpose) in [
        ("collection_wrap_key", KeyPurpose::CollectionWrap),
        ("local_state_key", KeyPurpose::LocalState),
        ("name_index_key", KeyPurpose::NameIndex),
    ] {
        m.insert(
            name.into(),
            hex::encode(keyring.key(purpose).expose_bytes()),
        );
    }
    m.insert(
        "exchange_public_key".into(),
        hex::encode(keyring.exchange_public_key().to_sec1_bytes()),
    );
    m.insert("fingerprint".into(), hex::encode(fp.as_bytes()));
    m.insert("safety_number".into(), fp.safety_number());
    m.insert(
        "has_rsa_exchange".into(),
        keyring.rsa_exchange_secret().is_some().to_string(),
    );
    m
}

/// Builds every vector from fixed seeds.
fn generate() -> BTreeMap<String, Vector> {
    let mut out = BTreeMap::new();
    let pw = "correct horse battery staple";

    let a = make("keyring-a", pw, STRICT_ITERATIONS, false);
    let a_hex = hex::encode(a.sealed.to_bytes());
    let a_code = a.code.expose_formatted().to_string();
    let a_expected = expected_of(&a.keyring, &a.keys, "keyring-a-identity");
    out.insert(
        "keyring_unlock_ok".into(),
        Vector {
            description:
                "A keyring sealed at exactly the 600,000-iteration floor opens with its password"
                    .into(),
            kind: "unlock".into(),
            expect: "ok".into(),
            password: Some(pw.into()),
            new_password: None,
            recovery_code: None,
            sealed_keyring: Some(a_hex.clone()),
            identity_bundle: None,
            expected: a_expected.clone(),
        },
    );

    let b = make(
        "keyring-b-rsa4096",
        "another password",
        STRICT_ITERATIONS,
        true,
    );
    out.insert(
        "keyring_unlock_rsa4096_ok".into(),
        Vector {
            description:
                "A keyring with the optional RSA-4096 exchange pair opens with its password".into(),
            kind: "unlock".into(),
            expect: "ok".into(),
            password: Some("another password".into()),
            new_password: None,
            recovery_code: None,
            sealed_keyring: Some(hex::encode(b.sealed.to_bytes())),
            identity_bundle: None,
            expected: expected_of(&b.keyring, &b.keys, "keyring-b-identity"),
        },
    );

    // Recovery: the code and a new password give a new wrapping of the same keys. The
    // expected keys are those of keyring A; the KDF values are of the new password.
    let mut r = rng("keyring-a-recover");
    let new_params = insecure_test_params(&mut r, STRICT_ITERATIONS);
    let new_pw = "a new password";
    let new_keys = PasswordKeys::derive(&Password::from(new_pw), &new_params).unwrap();
    let mut recover_expected = expected_of(&a.keyring, &new_keys, "keyring-a-identity");
    recover_expected.remove("kdf_iterations");
    recover_expected.remove("kdf_salt");
    recover_expected.remove("login_secret");
    out.insert(
        "keyring_recover_ok".into(),
        Vector {
            description: "The recovery code opens the keyring (the KDF of the new password is random, so only the keys are pinned)".into(),
            kind: "recover".into(),
            expect: "ok".into(),
            password: None,
            new_password: Some(new_pw.into()),
            recovery_code: Some(a_code.clone()),
            sealed_keyring: Some(a_hex.clone()),
            identity_bundle: None,
            expected: recover_expected,
        },
    );

    let failure = |description: &str, kind: &str, expect: &str, sealed: String| Vector {
        description: description.into(),
        kind: kind.into(),
        expect: expect.into(),
        password: Some(pw.into()),
        new_password: None,
        recovery_code: None,
        sealed_keyring: Some(sealed),
        identity_bundle: None,
        expected: BTreeMap::new(),
    };

    let mut wrong = failure(
        "A wrong password gives the generic error",
        "unlock",
        "AuthenticationFailed",
        a_hex.clone(),
    );
    wrong.password = Some("correct horse battery stapler".into());
    out.insert("keyring_wrong_password".into(), wrong);

    let low = make("keyring-low", pw, STRICT_ITERATIONS - 1, false);
    out.insert(
        "keyring_low_iterations".into(),
        failure(
            "A keyring whose parameters say 599,999 iterations is refused before any PBKDF2 work (THREATS C7)",
            "unlock",
            "WeakKdfParameters",
            hex::encode(low.sealed.to_bytes()),
        ),
    );

    let mut downgraded = a.sealed.to_bytes();
    // Header offset 28: u32 kdf_iterations. 600,000 -> 1,000,000 stays within the policy,
    // so the password wrap's MAC (which covers the parameters) is what refuses it (C8).
    downgraded[28..32].copy_from_slice(&1_000_000u32.to_be_bytes());
    out.insert(
        "keyring_altered_iterations".into(),
        failure(
            "Raising the stored iteration count is detected by the MAC over the KDF parameters (C8)",
            "unlock",
            "AuthenticationFailed",
            hex::encode(downgraded),
        ),
    );

    let mut v2 = a.sealed.to_bytes();
    v2[4..6].copy_from_slice(&2u16.to_be_bytes());
    out.insert(
        "keyring_unknown_version".into(),
        failure(
            "Format version 2 is unknown: refused before any cryptography",
            "decode",
            "UnsupportedFormat",
            hex::encode(v2),
        ),
    );

    let mut suite = a.sealed.to_bytes();
    suite[6..8].copy_from_slice(&7u16.to_be_bytes());
    out.insert(
        "keyring_unknown_suite".into(),
        failure(
            "Algorithm suite 7 is unknown: refused before any cryptography",
            "decode",
            "UnsupportedFormat",
            hex::encode(suite),
        ),
    );

    let full = a.sealed.to_bytes();
    out.insert(
        "keyring_truncated".into(),
        failure(
            "The sealed keyring without its last byte",
            "unlock",
            "AuthenticationFailed",
            hex::encode(&full[..full.len() - 1]),
        ),
    );
    let mut trailing = full.clone();
    trailing.push(0);
    out.insert(
        "keyring_trailing_byte".into(),
        failure(
            "The sealed keyring with one byte appended",
            "unlock",
            "AuthenticationFailed",
            hex::encode(trailing),
        ),
    );

    // Same password, same salt: the password wrap of C opens with the password, but C's
    // wrap holds C's master key, which does not open A's body (the body MAC binds both wraps).
    let c = {
        let mut rng = rng("keyring-c");
        let keys = PasswordKeys::derive(&Password::from(pw), a.keys.params()).unwrap();
        let keyring = Keyring::generate(
            &mut rng,
            &KeyringOptions::new().with_created_at(1_795_000_000),
        )
        .unwrap();
        SealedKeyring::seal(&mut rng, &keyring, &keys)
    };
    let mut spliced = a.sealed.to_bytes();
    let c_bytes = c.0.to_bytes();
    spliced[64..144].copy_from_slice(&c_bytes[64..144]);
    out.insert(
        "keyring_swapped_password_wrap".into(),
        failure(
            "The password wrap of another keyring (same password and salt) spliced into this one",
            "unlock",
            "AuthenticationFailed",
            hex::encode(spliced),
        ),
    );

    let mut other_code = failure(
        "The recovery code of another keyring does not open this one",
        "recover",
        "AuthenticationFailed",
        a_hex.clone(),
    );
    other_code.password = None;
    other_code.new_password = Some(new_pw.into());
    other_code.recovery_code = Some(c.1.expose_formatted().to_string());
    out.insert("keyring_wrong_recovery_code".into(), other_code);

    // Recovery code with a typo: refused by the checksum, before any key derivation.
    let mut typo: Vec<char> = a_code.chars().collect();
    typo[0] = if typo[0] == 'A' { 'B' } else { 'A' };
    out.insert(
        "recovery_code_typo".into(),
        Vector {
            description: "One mistyped character is caught by the checksum".into(),
            kind: "recovery_code".into(),
            expect: "Checksum".into(),
            password: None,
            new_password: None,
            recovery_code: Some(typo.into_iter().collect()),
            sealed_keyring: None,
            identity_bundle: None,
            expected: BTreeMap::new(),
        },
    );

    // The recovery login secret of keyring A's code (keyring.md §5.1): what a client sends
    // the server to recover without the password.
    let mut secret_expected = BTreeMap::new();
    secret_expected.insert(
        "recovery_secret".into(),
        hex::encode(a.code.recovery_secret().expose_bytes()),
    );
    out.insert(
        "recovery_secret_ok".into(),
        Vector {
            description: "The recovery login secret derived from a recovery code (HKDF-SHA256, info vault/v1/recovery/login, no salt)".into(),
            kind: "recovery_secret".into(),
            expect: "ok".into(),
            password: None,
            new_password: None,
            recovery_code: Some(a_code.clone()),
            sealed_keyring: None,
            identity_bundle: None,
            expected: secret_expected,
        },
    );

    // Identity bundles.
    let mut irng = rng("keyring-a-identity");
    let bundle = a.keyring.identity_bundle(&mut irng);
    let mut id_expected = BTreeMap::new();
    id_expected.insert("keyring_id".into(), a.keyring.id().to_string());
    id_expected.insert(
        "fingerprint".into(),
        hex::encode(bundle.fingerprint().as_bytes()),
    );
    id_expected.insert("safety_number".into(), bundle.fingerprint().safety_number());
    id_expected.insert(
        "exchange_public_key".into(),
        hex::encode(bundle.exchange_key().to_sec1_bytes()),
    );
    let identity = |description: &str, expect: &str, bytes: Vec<u8>, expected| Vector {
        description: description.into(),
        kind: "identity".into(),
        expect: expect.into(),
        password: None,
        new_password: None,
        recovery_code: None,
        sealed_keyring: None,
        identity_bundle: Some(hex::encode(bytes)),
        expected,
    };
    out.insert(
        "identity_ok".into(),
        identity(
            "A self-signed identity bundle with its fingerprint and safety number",
            "ok",
            bundle.to_bytes(),
            id_expected,
        ),
    );
    let mut bad_sig = bundle.to_bytes();
    let n = bad_sig.len();
    bad_sig[n - 1] ^= 0x01;
    out.insert(
        "identity_bad_signature".into(),
        identity(
            "One bit of the self-signature flipped",
            "AuthenticationFailed",
            bad_sig,
            BTreeMap::new(),
        ),
    );
    // Substituted exchange key: B's P-256 key in A's bundle (what a malicious server
    // would do to read shared keys, C2). Offset: 4+2+2+16+4+8 = 36, then vec16 DER.
    let a_bytes = bundle.to_bytes();
    let der_len = usize::from(u16::from_be_bytes([a_bytes[36], a_bytes[37]]));
    let point_at = 38 + der_len;
    let mut substituted = a_bytes.clone();
    substituted[point_at..point_at + 65]
        .copy_from_slice(&b.keyring.exchange_public_key().to_sec1_bytes());
    out.insert(
        "identity_substituted_exchange_key".into(),
        identity(
            "Another user's P-256 exchange key substituted into the bundle",
            "AuthenticationFailed",
            substituted,
            BTreeMap::new(),
        ),
    );
    let mut v2 = a_bytes.clone();
    v2[4..6].copy_from_slice(&2u16.to_be_bytes());
    out.insert(
        "identity_unknown_version".into(),
        identity(
            "Identity bundle version 2 is unknown",
            "UnsupportedFormat",
            v2,
            BTreeMap::new(),
        ),
    );
    out
}

fn error_name(e: Error) -> String {
    match e {
        Error::AuthenticationFailed => "AuthenticationFailed".into(),
        Error::UnsupportedFormat => "UnsupportedFormat".into(),
        Error::WeakKdfParameters => "WeakKdfParameters".into(),
        Error::EmptyPassword => "EmptyPassword".into(),
        other => format!("{other:?}"),
    }
}

fn check_keyring(v: &Vector, keyring: &Keyring, keys: &PasswordKeys) {
    let mut got = expected_of(keyring, keys, "unused");
    // The identity seed differs per vector; fingerprints do not depend on the signature.
    got.retain(|k, _| v.expected.contains_key(k));
    assert_eq!(got, v.expected, "{}", v.description);
}

fn check(name: &str, v: &Vector) {
    let result: Result<(), String> = match v.kind.as_str() {
        "decode" | "unlock" => {
            let bytes = hex::decode(v.sealed_keyring.as_ref().unwrap()).unwrap();
            match SealedKeyring::from_bytes(&bytes) {
                Err(e) => Err(error_name(e)),
                // A "decode" vector expects a decoding error; decoding is success here.
                Ok(_) if v.kind == "decode" => Ok(()),
                Ok(sealed) => {
                    assert_eq!(sealed.to_bytes(), bytes, "{name}: re-encoding differs");
                    let pw = Password::from(v.password.as_deref().unwrap());
                    match sealed.unlock_with_password(&pw) {
                        Ok((keyring, keys)) => {
                            check_keyring(v, &keyring, &keys);
                            Ok(())
                        }
                        Err(e) => Err(error_name(e)),
                    }
                }
            }
        }
        "recover" => {
            let bytes = hex::decode(v.sealed_keyring.as_ref().unwrap()).unwrap();
            let sealed = SealedKeyring::from_bytes(&bytes).unwrap();
            let code: RecoveryCode = v.recovery_code.as_ref().unwrap().parse().unwrap();
            let new_pw = Password::from(v.new_password.as_deref().unwrap());
            let new_keys =
                PasswordKeys::derive(&new_pw, &KdfParams::with_iterations(600_000).unwrap())
                    .unwrap();
            match sealed.recover(&mut rand_chacha::rand_core::OsRng, &code, &new_keys) {
                Ok((keyring, resealed)) => {
                    check_keyring(v, &keyring, &new_keys);
                    // The new wrapping opens with the new password and not the old one.
                    let (again, _) = resealed.unlock_with_password(&new_pw).unwrap();
                    assert_eq!(again.id(), keyring.id());
                    Ok(())
                }
                Err(e) => Err(error_name(e)),
            }
        }
        "recovery_code" => match v.recovery_code.as_ref().unwrap().parse::<RecoveryCode>() {
            Ok(_) => Ok(()),
            Err(RecoveryCodeError::Checksum) => Err("Checksum".into()),
            Err(e) => Err(format!("{e:?}")),
        },
        "recovery_secret" => match v.recovery_code.as_ref().unwrap().parse::<RecoveryCode>() {
            Ok(code) => {
                let mut got = BTreeMap::new();
                got.insert(
                    "recovery_secret".to_string(),
                    hex::encode(code.recovery_secret().expose_bytes()),
                );
                assert_eq!(got, v.expected, "{name}");
                Ok(())
            }
            Err(RecoveryCodeError::Checksum) => Err("Checksum".into()),
            Err(e) => Err(format!("{e:?}")),
        },
        "identity" => {
            let bytes = hex::decode(v.identity_bundle.as_ref().unwrap()).unwrap();
            match IdentityBundle::from_bytes(&bytes) {
                Ok(bundle) => {
                    let fp = bundle.fingerprint();
                    let mut got = BTreeMap::new();
                    got.insert("keyring_id".to_string(), bundle.keyring_id().to_string());
                    got.insert("fingerprint".into(), hex::encode(fp.as_bytes()));
                    got.insert("safety_number".into(), fp.safety_number());
                    got.insert(
                        "exchange_public_key".into(),
                        hex::encode(bundle.exchange_key().to_sec1_bytes()),
                    );
                    assert_eq!(got, v.expected, "{name}");
                    assert_eq!(bundle.as_bytes(), &bytes[..]);
                    Ok(())
                }
                Err(e) => Err(error_name(e)),
            }
        }
        other => panic!("{name}: unknown vector kind {other}"),
    };
    let got = match result {
        Ok(()) => "ok".to_string(),
        Err(e) => e,
    };
    assert_eq!(got, v.expect, "vector {name}: {}", v.description);
}

fn read_files() -> BTreeMap<String, Vector> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(vectors_dir()).expect("vectors/keyring exists") {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let name = path.file_stem().unwrap().to_str().unwrap().to_string();
        let text = std::fs::read_to_string(&path).unwrap();
        let v: Vector =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        out.insert(name, v);
    }
    out
}

fn render(v: &Vector) -> String {
    let mut s = serde_json::to_string_pretty(v).unwrap();
    s.push('\n');
    s
}

#[test]
fn vectors_pass_and_are_current() {
    let generated = generate();
    if std::env::var_os("VAULT_REGENERATE_VECTORS").is_some() {
        let dir = vectors_dir();
        std::fs::create_dir_all(&dir).unwrap();
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().and_then(|e| e.to_str()) == Some("json") {
                std::fs::remove_file(path).unwrap();
            }
        }
        for (name, v) in &generated {
            std::fs::write(dir.join(format!("{name}.json")), render(v)).unwrap();
        }
    }
    let files = read_files();
    assert_eq!(
        files.keys().collect::<Vec<_>>(),
        generated.keys().collect::<Vec<_>>(),
        "vector files differ from the generated set; regenerate with VAULT_REGENERATE_VECTORS=1"
    );
    for (name, v) in &files {
        check(name, v);
        assert_eq!(
            render(v),
            render(&generated[name]),
            "{name}.json is stale; regenerate with VAULT_REGENERATE_VECTORS=1"
        );
    }
    assert!(files.len() >= 15, "only {} vectors", files.len());
}
