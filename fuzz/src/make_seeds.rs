//! Writes the generated seed files of the fuzz targets into `fuzz/seeds/<target>/`:
//!
//! - `sealed_keyring/valid-1-iteration`: a real sealed keyring at 1 PBKDF2 iteration (the
//!   test-only path) under the password `fuzz`, the password the `sealed_keyring` target
//!   tries, so the fuzzer starts from an input that unlocks all the way through the body
//!   decoder;
//! - `identity_bundle/valid-generated`: that keyring's identity bundle;
//! - `recovery_code/valid-generated`: its recovery code, formatted;
//! - `envelope/valid`: the one genuine envelope of the `envelope` target (its own fixture:
//!   ChaCha20 seed `[0xe7; 32]`, see [`envelope_seed`]).
//!
//! Deterministic (fixed ChaCha20 seeds, creation time 0), so running it again rewrites the
//! same bytes. Run it through `fuzz/run.sh seeds`; it is not a fuzz target.

use std::error::Error;
use std::fs;
use std::path::{Path, PathBuf};

use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use vault_keyring::danger::{insecure_test_params, insecure_test_policy};
use vault_keyring::envelope::{self, Grant, Method, Purpose, RecipientKey, RecipientSecret};
use vault_keyring::{
    IdentityBundle, Keyring, KeyringOptions, Password, PasswordKeys, RecoveryCode, SealedKeyring,
};

/// The password the `sealed_keyring` target unlocks with.
const PASSWORD: &str = "fuzz";

fn write(dir: &Path, target: &str, name: &str, bytes: &[u8]) -> Result<(), Box<dyn Error>> {
    let dir = dir.join(target);
    fs::create_dir_all(&dir)?;
    let path = dir.join(name);
    fs::write(&path, bytes)?;
    println!("{} ({} bytes)", path.display(), bytes.len());
    Ok(())
}

/// The genuine envelope of `fuzz_targets/envelope.rs`, built exactly as that target's
/// `fixture()` builds it (same seed, same order of generator draws): keep the two in step.
/// Granter and recipient keyrings (RSA-2048 signing, P-256 exchange), both identity bundles,
/// then one HPKE envelope handing 32 bytes of 0x42 as collection key epoch 1 of collection
/// `[0x7a; 16]` of the granter's vault, created at time 0.
fn envelope_seed() -> Result<Vec<u8>, Box<dyn Error>> {
    let mut rng = ChaCha20Rng::from_seed([0xe7; 32]);
    let options = KeyringOptions::new().with_created_at(0);
    let granter = Keyring::generate(&mut rng, &options)?;
    let recipient = Keyring::generate(&mut rng, &options)?;
    let granter_identity = granter.identity_bundle(&mut rng);
    let recipient_identity = recipient.identity_bundle(&mut rng);
    let grant = Grant {
        purpose: Purpose::CollectionKey,
        owner: *granter.id().as_bytes(),
        target: [0x7a; 16],
        epoch: 1,
    };
    let payload = [0x42u8; 32];
    let bytes = envelope::seal(
        &mut rng,
        &granter,
        &RecipientKey::user(&recipient_identity),
        &grant,
        Method::Hpke,
        &payload,
        0,
    )?;
    // The seed must open, as the target's recipient, to its payload.
    let opened = envelope::open(
        &bytes,
        &granter_identity,
        &RecipientSecret::user(&recipient),
        &grant,
    )?;
    assert_eq!(&opened[..], &payload[..]);
    Ok(bytes)
}

fn main() -> Result<(), Box<dyn Error>> {
    let dir = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds"));
    let mut rng = ChaCha20Rng::from_seed([0x5e; 32]);
    let password = Password::from(PASSWORD);
    let policy = insecure_test_policy(16);
    let params = insecure_test_params(&mut rng, 1);
    let keys = PasswordKeys::derive_with_policy(&password, &params, &policy)?;
    let keyring = Keyring::generate(&mut rng, &KeyringOptions::new().with_created_at(0))?;
    let (sealed, code) = SealedKeyring::seal(&mut rng, &keyring, &keys);
    let sealed = sealed.to_bytes();
    let bundle = keyring.identity_bundle(&mut rng).to_bytes();
    let code = code.expose_formatted();

    // The seeds must be what they claim to be.
    let (unlocked, _) =
        SealedKeyring::from_bytes(&sealed)?.unlock_with_password_policy(&password, &policy)?;
    assert_eq!(unlocked.id(), keyring.id());
    assert_eq!(
        IdentityBundle::from_bytes(&bundle)?.keyring_id(),
        keyring.id()
    );
    assert_eq!(*code.parse::<RecoveryCode>()?.expose_formatted(), *code);

    write(&dir, "sealed_keyring", "valid-1-iteration", &sealed)?;
    write(&dir, "identity_bundle", "valid-generated", &bundle)?;
    write(&dir, "recovery_code", "valid-generated", code.as_bytes())?;
    write(&dir, "envelope", "valid", &envelope_seed()?)?;
    Ok(())
}
