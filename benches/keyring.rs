//! Keyring benchmarks, each against a named reference in the same run:
//!
//! - `pbkdf2/vault/600000`: PBKDF2-HMAC-SHA256 at 600,000 iterations, ours
//!   (`PasswordKeys::derive`, which adds two HKDF-Expand calls), vs the reference
//!   `pbkdf2/openssl/600000` = `openssl kdf … PBKDF2` on the same inputs, run as a process;
//!   `pbkdf2/openssl/1` is the same command at one iteration (process start-up), subtracted
//!   to give OpenSSL's net time. Before timing, the output of `openssl kdf` is checked to be
//!   the output of `pbkdf2::pbkdf2_hmac::<Sha256>` for the same password, salt and count, so
//!   both sides compute the same function. The `RATIO` line compares medians of the same
//!   number of wall-clock runs. Goal: ours at least as fast — a defender must not pay more
//!   per guess than an attacker running OpenSSL does.
//! - `keyring/unlock/600000` (decode + PBKDF2 + unwrap + body) and
//!   `keyring/unlock_after_derive` (the symmetric part alone, given the password keys).
//! - `keyring/generate` (RSA-2048 key generation dominates; randomized, so a `KEYGEN` line
//!   gives mean and spread of separate runs), `identity_bundle/sign` and
//!   `identity_bundle/verify` (`IdentityBundle::from_bytes` decodes and verifies).
//! - A `CALIBRATE` line: the iteration count `KdfParams::calibrate` picks at the default
//!   target on this machine.
//!
//! Results and the machine they came from: docs/PERFORMANCE.md.
//!
//! ```text
//! cargo bench -p vault-benches --bench keyring
//! ```
// A benchmark aborts on any failure: unwrap/expect are the error handling here.
#![allow(clippy::unwrap_used, clippy::expect_used)]
// criterion's macros generate undocumented public functions.
#![allow(missing_docs)]

use std::hint::black_box;
use std::process::Command;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode};
use rand_core::OsRng;
use sha2::Sha256;
use vault_keyring::{
    IdentityBundle, KdfParams, Keyring, KeyringOptions, Password, PasswordKeys, SealedKeyring,
    DEFAULT_TARGET,
};

const ITERATIONS: u32 = 600_000;
const PASSWORD: &str = "correct horse battery staple";
const SALT_HEX: &str = "000102030405060708090a0b0c0d0e0f";
/// Wall-clock runs per side for the `RATIO` line (medians).
const RUNS: usize = 9;
/// Separate key generations for the `KEYGEN` spread line.
const KEYGEN_RUNS: usize = 10;

/// One `openssl kdf` run; returns the derived key (hex, no colons) and the wall time of the
/// whole process.
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

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The 1-minute load average, printed so a reader can tell a loaded machine's numbers.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "unknown".into())
}

/// Measures the reference and ours with the same method (median of `RUNS` wall-clock runs),
/// after checking both compute the same function, and prints the ratio. Returns whether the
/// reference is available.
fn pbkdf2_ratio() -> bool {
    let salt = hex::decode(SALT_HEX).unwrap();
    let mut expected = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<Sha256>(PASSWORD.as_bytes(), &salt, ITERATIONS, &mut expected);
    let Some((reference, _)) = openssl_pbkdf2(ITERATIONS) else {
        println!(
            "RATIO pbkdf2-600k: reference unavailable (`openssl kdf` not found or failed); \
             the openssl benchmarks are skipped"
        );
        return false;
    };
    assert_eq!(
        reference,
        hex::encode(expected),
        "openssl kdf and pbkdf2_hmac::<Sha256> disagree: not the same function"
    );
    println!("CHECK openssl kdf PBKDF2 output == pbkdf2_hmac::<Sha256> output ({reference})");

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
    // Time ratio: below 1 means ours takes less time per guess than OpenSSL's.
    let ratio = vault.as_secs_f64() / openssl_net.as_secs_f64();
    println!(
        "RATIO pbkdf2-600k vault/openssl = {ratio:.2}x time, i.e. {:.2}x OpenSSL's speed \
         (vault {:.1} ms, openssl net {:.1} ms = raw {:.1} ms - start-up {:.1} ms; \
         medians of {RUNS}; load {}); goal vault <= openssl: {}",
        1.0 / ratio,
        ms(vault),
        ms(openssl_net),
        ms(openssl_raw),
        ms(startup),
        load_average(),
        if ratio <= 1.0 { "met" } else { "NOT met" }
    );
    true
}

/// What `KdfParams::calibrate` picks at the default target on this machine.
fn calibration() {
    let start = Instant::now();
    let params = KdfParams::calibrate(DEFAULT_TARGET);
    let took = start.elapsed();
    let password = Password::from(PASSWORD);
    let start = Instant::now();
    black_box(PasswordKeys::derive(&password, &params).unwrap());
    let derive = start.elapsed();
    println!(
        "CALIBRATE target {} ms -> {} iterations (calibration took {:.0} ms; one derive at \
         that count {:.0} ms)",
        DEFAULT_TARGET.as_millis(),
        params.iterations(),
        ms(took),
        ms(derive)
    );
}

/// Mean, standard deviation and range of separate RSA-2048 keyring generations.
fn keygen_spread() {
    let times: Vec<f64> = (0..KEYGEN_RUNS)
        .map(|_| {
            let start = Instant::now();
            black_box(Keyring::generate(&mut OsRng, &KeyringOptions::new()).unwrap());
            ms(start.elapsed())
        })
        .collect();
    let n = times.len() as f64;
    let mean = times.iter().sum::<f64>() / n;
    let sd = (times.iter().map(|t| (t - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt();
    let min = times.iter().copied().fold(f64::INFINITY, f64::min);
    let max = times.iter().copied().fold(0.0, f64::max);
    println!(
        "KEYGEN keyring/generate (RSA-2048): {KEYGEN_RUNS} runs, mean {mean:.0} ms, \
         sd {sd:.0} ms, min {min:.0} ms, max {max:.0} ms"
    );
}

fn bench(c: &mut Criterion) {
    println!("LOAD 1-minute load average at start: {}", load_average());
    let openssl = pbkdf2_ratio();
    calibration();
    keygen_spread();

    let password = Password::from(PASSWORD);
    let params = KdfParams::with_iterations(ITERATIONS).unwrap();
    let mut g = c.benchmark_group("pbkdf2");
    g.sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    g.bench_function("vault/600000", |b| {
        b.iter(|| PasswordKeys::derive(black_box(&password), &params).unwrap())
    });
    if openssl {
        g.bench_function("openssl/600000", |b| {
            b.iter(|| openssl_pbkdf2(black_box(ITERATIONS)).unwrap())
        });
        g.bench_function("openssl/1", |b| {
            b.iter(|| openssl_pbkdf2(black_box(1)).unwrap())
        });
    }
    g.finish();

    let keyring = Keyring::generate(&mut OsRng, &KeyringOptions::new()).unwrap();
    let keys = PasswordKeys::derive(&password, &params).unwrap();
    let (sealed, _code) = SealedKeyring::seal(&mut OsRng, &keyring, &keys);
    let bytes = sealed.to_bytes();
    let mut g = c.benchmark_group("keyring");
    g.sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
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
    // Randomized and slow (~0.1-0.5 s each): a longer window so 10 samples fit.
    g.measurement_time(Duration::from_secs(6));
    g.bench_function("generate", |b| {
        b.iter(|| Keyring::generate(&mut OsRng, &KeyringOptions::new()).unwrap())
    });
    g.finish();

    let bundle = keyring.identity_bundle(&mut OsRng).to_bytes();
    let mut g = c.benchmark_group("identity_bundle");
    g.sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2));
    g.bench_function("sign", |b| b.iter(|| keyring.identity_bundle(&mut OsRng)));
    g.bench_function("verify", |b| {
        b.iter(|| IdentityBundle::from_bytes(black_box(&bundle)).unwrap())
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
