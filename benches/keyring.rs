//! Keyring benchmarks, each against a named reference in the same run:
//!
//! - PBKDF2-HMAC-SHA256 at 600,000 iterations: ours (`PasswordKeys::derive`, which adds two
//!   HKDF-Expand calls) vs `openssl kdf … PBKDF2` on the same inputs (process start-up
//!   measured with `iter:1` and subtracted). Goal: ours at least as fast — a defender must
//!   not pay more per guess than an attacker's OpenSSL does.
//! - Keyring unlock at 600,000 iterations (decode + PBKDF2 + unwrap + body), and the
//!   symmetric part alone.
//! - RSA-2048 key generation (`Keyring::generate`), identity bundle sign and verify.
//!
//! ```text
//! cargo bench -p vault-benches --bench keyring
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used)]
// criterion's macros generate undocumented public functions.
#![allow(missing_docs)]

use std::hint::black_box;
use std::process::Command;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use rand_core::OsRng;
use sha2::Sha256;
use vault_keyring::{
    IdentityBundle, KdfParams, Keyring, KeyringOptions, Password, PasswordKeys, SealedKeyring,
};

const ITERATIONS: u32 = 600_000;
const PASSWORD: &str = "correct horse battery staple";
const SALT_HEX: &str = "000102030405060708090a0b0c0d0e0f";

/// One `openssl kdf` run; returns the derived key (hex, no colons) and the wall time.
fn openssl_pbkdf2(iterations: u32) -> Option<(String, Duration)> {
    let start = Instant::now();
    let out = Command::new("openssl")
        .args([
            "kdf",
            "-keylen",
            "32",
            "-kdfopt",
            "digest:SHA256",
            "-kdfopt",
            &format!("pass:{PASSWORD}"),
            "-kdfopt",
            &format!("hexsalt:{SALT_HEX}"),
            "-kdfopt",
            &format!("iter:{iterations}"),
            "PBKDF2",
        ])
        .output()
        .ok()?;
    let elapsed = start.elapsed();
    if !out.status.success() {
        return None;
    }
    let hex = String::from_utf8_lossy(&out.stdout)
        .trim()
        .replace(':', "")
        .to_lowercase();
    Some((hex, elapsed))
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Measures the reference and ours with the same method (median of N wall-clock runs), checks
/// both compute the same function, and prints the ratio.
fn pbkdf2_ratio() {
    let salt = hex::decode(SALT_HEX).unwrap();
    let mut ours = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<Sha256>(PASSWORD.as_bytes(), &salt, ITERATIONS, &mut ours);
    let Some((reference, _)) = openssl_pbkdf2(ITERATIONS) else {
        println!("RATIO pbkdf2-600k: reference unavailable (no `openssl kdf` on this machine)");
        return;
    };
    assert_eq!(
        reference,
        hex::encode(ours),
        "openssl and pbkdf2 disagree: not the same function"
    );
    const RUNS: usize = 9;
    let startup = median((0..RUNS).map(|_| openssl_pbkdf2(1).unwrap().1).collect());
    let openssl_raw = median(
        (0..RUNS)
            .map(|_| openssl_pbkdf2(ITERATIONS).unwrap().1)
            .collect(),
    );
    let openssl_net = openssl_raw.saturating_sub(startup);
    let params = KdfParams::with_iterations(ITERATIONS).unwrap();
    let password = Password::from(PASSWORD);
    let vault = median(
        (0..RUNS)
            .map(|_| {
                let start = Instant::now();
                black_box(PasswordKeys::derive(&password, &params).unwrap());
                start.elapsed()
            })
            .collect(),
    );
    let ratio = openssl_net.as_secs_f64() / vault.as_secs_f64();
    println!(
        "RATIO pbkdf2-600k vault/openssl speed = {ratio:.2}x (vault {:.1} ms, openssl {:.1} ms net = {:.1} ms raw - {:.1} ms start-up; median of {RUNS}); goal >= 1.00x: {}",
        vault.as_secs_f64() * 1e3,
        openssl_net.as_secs_f64() * 1e3,
        openssl_raw.as_secs_f64() * 1e3,
        startup.as_secs_f64() * 1e3,
        if ratio >= 1.0 { "met" } else { "NOT met" }
    );
}

fn bench(c: &mut Criterion) {
    pbkdf2_ratio();

    let password = Password::from(PASSWORD);
    let params = KdfParams::with_iterations(ITERATIONS).unwrap();
    let mut g = c.benchmark_group("pbkdf2");
    g.sample_size(10).measurement_time(Duration::from_secs(3));
    g.bench_function("vault/600000", |b| {
        b.iter(|| PasswordKeys::derive(black_box(&password), &params).unwrap())
    });
    if openssl_pbkdf2(1).is_some() {
        g.bench_function("openssl-process/600000", |b| {
            b.iter(|| openssl_pbkdf2(ITERATIONS).unwrap())
        });
    }
    g.finish();

    let keyring = Keyring::generate(&mut OsRng, &KeyringOptions::new()).unwrap();
    let keys = PasswordKeys::derive(&password, &params).unwrap();
    let (sealed, _code) = SealedKeyring::seal(&mut OsRng, &keyring, &keys);
    let bytes = sealed.to_bytes();
    let mut g = c.benchmark_group("keyring");
    g.sample_size(10).measurement_time(Duration::from_secs(3));
    g.bench_function("unlock/600000", |b| {
        b.iter(|| {
            SealedKeyring::from_bytes(black_box(&bytes))
                .unwrap()
                .unlock_with_password(&password)
                .unwrap()
        })
    });
    g.bench_function("unlock_after_derive", |b| {
        b.iter(|| {
            SealedKeyring::from_bytes(black_box(&bytes))
                .unwrap()
                .unlock(&keys)
                .unwrap()
        })
    });
    g.bench_function("generate (RSA-2048 keygen)", |b| {
        b.iter(|| Keyring::generate(&mut OsRng, &KeyringOptions::new()).unwrap())
    });
    g.finish();

    let bundle = keyring.identity_bundle(&mut OsRng).to_bytes();
    let mut g = c.benchmark_group("identity_bundle");
    g.bench_function("sign", |b| b.iter(|| keyring.identity_bundle(&mut OsRng)));
    g.bench_function("verify", |b| {
        b.iter(|| IdentityBundle::from_bytes(black_box(&bundle)).unwrap())
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
