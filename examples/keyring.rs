//! The keyring's whole life, as an application embeds it: create, seal, unlock, recover
//! with the recovery code, change the password, rotate the recovery code.
//!
//! ```text
//! cargo run --release --locked -p vault-examples --example keyring
//! ```
//!
//! Every unlock runs PBKDF2 at the iteration count calibrated to this machine (about half a
//! second each, never below 600,000 iterations), exactly as a real client does.

use std::time::Instant;

use rand_core::OsRng;
use vault_keyring::{
    Error, IdentityBundle, KdfParams, Keyring, KeyringOptions, Password, PasswordKeys,
    RecoveryCode, SealedKeyring, DEFAULT_TARGET,
};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // 1. Create. Calibrate PBKDF2 to this device, generate the keys, seal them.
    let start = Instant::now();
    let params = KdfParams::calibrate(DEFAULT_TARGET);
    println!(
        "calibrated PBKDF2-HMAC-SHA256: {} iterations (~{} ms target) in {:.2?}",
        params.iterations(),
        DEFAULT_TARGET.as_millis(),
        start.elapsed()
    );
    let password = Password::from("correct horse battery staple");
    let keys = PasswordKeys::derive(&password, &params)?;

    let start = Instant::now();
    let keyring = Keyring::generate(&mut OsRng, &KeyringOptions::new())?;
    println!(
        "generated keyring {} (RSA-2048 signing, P-256 exchange, 3 AES-256 keys) in {:.2?}",
        keyring.id(),
        start.elapsed()
    );
    let (sealed, recovery_code) = SealedKeyring::seal(&mut OsRng, &keyring, &keys);
    let stored = sealed.to_bytes();
    println!(
        "sealed keyring: {} bytes (this is what the server stores)",
        stored.len()
    );
    println!(
        "recovery code (shown once; write it down): {}",
        recovery_code.expose_formatted().as_str()
    );

    // The identity bundle is what other users fetch; they compare its safety number.
    let bundle = keyring.identity_bundle(&mut OsRng);
    let received = IdentityBundle::from_bytes(bundle.as_bytes())?;
    println!("fingerprint:   {}", received.fingerprint());
    println!("safety number: {}", received.fingerprint().safety_number());

    // 2. Unlock on another device: only the bytes and the password are needed.
    let start = Instant::now();
    let sealed = SealedKeyring::from_bytes(&stored)?;
    let (unlocked, keys) = sealed.unlock_with_password(&password)?;
    assert_eq!(unlocked.id(), keyring.id());
    println!("unlocked with the password in {:.2?}", start.elapsed());

    // A wrong password and a tampered blob give the same error.
    let wrong = sealed.unlock_with_password(&Password::from("wrong password"));
    assert_eq!(wrong.err(), Some(Error::AuthenticationFailed));
    let mut tampered = stored.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    let tampered = SealedKeyring::from_bytes(&tampered)?.unlock_with_password(&password);
    assert_eq!(tampered.err(), Some(Error::AuthenticationFailed));
    println!(
        "wrong password and a flipped bit: both `{}`",
        Error::AuthenticationFailed
    );

    // 3. Forgot the password: the recovery code (typed back, typos caught by its checksum)
    //    and a new password give a new wrapping of the same keys.
    let typed: RecoveryCode = recovery_code.expose_formatted().to_lowercase().parse()?;
    let new_password = Password::from("a new password after recovery");
    let new_keys = PasswordKeys::derive(&new_password, &KdfParams::calibrate(DEFAULT_TARGET))?;
    let (recovered, sealed) = sealed.recover(&mut OsRng, &typed, &new_keys)?;
    assert_eq!(
        recovered.identity_bundle(&mut OsRng).fingerprint(),
        bundle.fingerprint()
    );
    println!("recovered with the code; same keys, new password");

    // 4. Change the password: same keys, new wrapping; the old password stops working.
    let third = Password::from("third password");
    let third_keys = PasswordKeys::derive(&third, &KdfParams::calibrate(DEFAULT_TARGET))?;
    let sealed = sealed.change_password(&mut OsRng, &new_keys, &third_keys)?;
    assert!(sealed.unlock_with_password(&new_password).is_err());
    let (again, _) = sealed.unlock_with_password(&third)?;
    assert_eq!(again.id(), keyring.id());
    println!("changed the password; the previous one no longer opens the keyring");

    // 5. Rotate the recovery code: the old code opens nothing of the new blob.
    let (sealed, new_code) = sealed.rotate_recovery(&mut OsRng, &third_keys)?;
    assert!(sealed.recover(&mut OsRng, &typed, &third_keys).is_err());
    assert!(sealed.recover(&mut OsRng, &new_code, &third_keys).is_ok());
    println!("rotated the recovery code; the old code is refused");
    drop(keys);
    Ok(())
}
