//! Writes the generated seed files of the fuzz targets into `fuzz/seeds/<target>/`:
//!
//! - `sealed_keyring/valid-1-iteration`: a real sealed keyring at 1 PBKDF2 iteration (the
//!   test-only path) under the password `fuzz`, the password the `sealed_keyring` target
//!   tries, so the fuzzer starts from an input that unlocks all the way through the body
//!   decoder;
//! - `identity_bundle/valid-generated`: that keyring's identity bundle;
//! - `recovery_code/valid-generated`: its recovery code, formatted.
//!
//! Deterministic (fixed ChaCha20 seed, creation time 0), so running it again rewrites the
//! same bytes. Run it through `fuzz/run.sh seeds`; it is not a fuzz target.

use std::error::Error;
use std::fs;
use std::path::{Path, PathBuf};

use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use vault_keyring::danger::{insecure_test_params, insecure_test_policy};
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
    Ok(())
}
