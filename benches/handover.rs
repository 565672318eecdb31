//! Key handover benchmarks (issue #4), each against a reference measured in the same run:
//!
//! 1. HPKE (DHKEM(P-256, HKDF-SHA256), HKDF-SHA256, AES-256-GCM, 32-byte payload): the raw
//!    part (`exchange::hpke_seal` / `hpke_open`) and the full envelope with `Method::Hpke`
//!    (`envelope::seal`, which adds an RSA-2048 PSS signature; `envelope::open`, which adds
//!    its verification), plus one bare P-256 Diffie-Hellman (`p256::ecdh::diffie_hellman`).
//!    Reference: `openssl speed -seconds 3 ecdhp256` (op/s of one ECDH P-256 derive). An
//!    HPKE seal does 2 ECDH-equivalents (ephemeral key generation + DH) and an open 1 DH, so
//!    the `RATIO` lines compare a seal with OpenSSL's ECDH rate / 2 and an open with it / 1
//!    (1.00 = as fast as OpenSSL doing only the elliptic-curve work; the `hpke` crate's
//!    Decap also recomputes pkR = skR·G, a second scalar multiplication, which the line
//!    states). Envelopes are compared with OpenSSL doing their public-key operations:
//!    seal = 2 ECDH + 1 RSA-2048 sign, open = 1 ECDH + 1 RSA-2048 verify
//!    (`openssl speed -seconds 3 rsa2048`).
//! 2. RSA-4096 OAEP-SHA256 (`exchange::rsa_oaep_wrap` / `rsa_oaep_unwrap`, and the envelope
//!    with `Method::RsaOaep`) vs `openssl speed -seconds 3 rsa4096`: wrap is a public-key
//!    operation (OpenSSL 3.0 prints `sign verify sign/s verify/s`, so `verify/s`; a later
//!    OpenSSL that prints `encrypt/s` is compared with that), unwrap a private-key one
//!    (`sign/s`, or `decrypt/s` when printed). The RSA-4096 exchange key pair is generated
//!    once (seconds; printed).
//! 3. A group of 101 (the admin and 100 members, in a `MemoryStore`): `share_with_group`
//!    (one envelope to the group key per key epoch, so about constant in the group size: a
//!    one-member group is measured beside it), `Group::remove_member` (a new epoch: one
//!    envelope per remaining member, each an HPKE seal and an RSA-2048 signature; timed
//!    alone, the member is added back untimed between removals), compared with that many of
//!    our own single-envelope seals (expected linear) and with OpenSSL doing the same
//!    public-key operations, and the first member's `shared_collection` (cold: verify the
//!    roster chain and fetch the group secret first; then warm). The 101 keyrings are
//!    generated once (deterministic seeds, both cores): about 10 s, 20 s on a loaded
//!    machine; printed.
//!
//! Ratios come from the same measurements as criterion's (the median time per call over
//! its samples). Results: docs/PERFORMANCE.md.
//!
//! ```text
//! cargo bench -p vault-benches --bench handover
//! ```
// A benchmark aborts on any failure: unwrap/expect are the error handling here.
#![allow(clippy::unwrap_used, clippy::expect_used)]
// criterion's macros generate undocumented public functions.
#![allow(missing_docs)]

use std::hint::black_box;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion, SamplingMode};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use rand_core::OsRng;
use vault_core::{LocalState, MemoryStore, Role, Vault};
use vault_keyring::envelope::{self, Grant, Method, Purpose, RecipientKey, RecipientSecret};
use vault_keyring::exchange;
use vault_keyring::reexports::p256;
use vault_keyring::{Keyring, KeyringOptions, SymmetricKey};

/// Members added to the group besides its admin.
const MEMBERS: usize = 100;
/// The HPKE `info` of envelopes, and an `aad` the size of an envelope header.
const HPKE_INFO: &[u8] = b"vault/v1/envelope";
const AAD: [u8; envelope::HEADER_LEN] = [0x5a; envelope::HEADER_LEN];
/// Criterion samples of the fast (sub-millisecond) and the slow benchmarks.
const FAST_SAMPLES: usize = 20;
const SLOW_SAMPLES: usize = 10;
/// The payload of every envelope here: a 32-byte key.
const PAYLOAD: [u8; 32] = [0x42; 32];

fn keyring(seed: u64, rsa_exchange: bool) -> Keyring {
    Keyring::generate(
        &mut ChaCha20Rng::seed_from_u64(seed),
        &KeyringOptions::new()
            .with_rsa_exchange(rsa_exchange)
            .with_created_at(1_795_000_000),
    )
    .unwrap()
}

/// Keyrings (RSA-2048 signing, P-256 exchange) for `seeds`, generated on two threads.
fn keyrings(seeds: &[u64]) -> Vec<Keyring> {
    let half = seeds.len().div_ceil(2).max(1);
    std::thread::scope(|s| {
        let parts: Vec<_> = seeds
            .chunks(half)
            .map(|part| {
                s.spawn(move || part.iter().map(|&x| keyring(x, false)).collect::<Vec<_>>())
            })
            .collect();
        parts.into_iter().flat_map(|h| h.join().unwrap()).collect()
    })
}

/// The 1-minute load average, printed so a reader can tell a loaded machine's numbers.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "unknown".into())
}

/// The standard output of `openssl speed -seconds 3 <algorithm>`.
fn openssl_speed(algorithm: &str) -> Option<String> {
    let out = Command::new("openssl")
        .args(["speed", "-seconds", "3", algorithm])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// ECDH P-256 op/s from `openssl speed ecdhp256`, whose result line (OpenSSL 3.0) is
/// ` 256 bits ecdh (nistp256)   0.0000s  22231.0` (columns `op op/s`).
fn ecdh_p256_per_sec(text: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.contains("ecdh (nistp256)"))?
        .split_whitespace()
        .last()?
        .parse()
        .ok()
}

/// The `…/s` columns of `openssl speed rsa<bits>`: OpenSSL 3.0 prints
/// `sign verify sign/s verify/s` over `rsa 4096 bits 0.004255s 0.000062s 235.0 16153.0`;
/// later versions add `encrypt`/`decrypt` columns. Returns (column name, ops per second).
fn rsa_per_sec(text: &str, bits: u32) -> Option<Vec<(String, f64)>> {
    let lines: Vec<&str> = text.lines().collect();
    let prefix = format!("rsa {bits} bits");
    let row = lines
        .iter()
        .position(|l| l.trim_start().starts_with(&prefix))?;
    let header = lines[..row].iter().rev().find(|l| l.contains("/s"))?;
    let names: Vec<&str> = header
        .split_whitespace()
        .filter(|t| t.ends_with("/s"))
        .collect();
    let mut values: Vec<f64> = lines[row]
        .split_whitespace()
        .rev()
        .take(names.len())
        .map(|t| t.parse().ok())
        .collect::<Option<_>>()?;
    values.reverse();
    (values.len() == names.len() && !names.is_empty())
        .then(|| names.into_iter().map(str::to_owned).zip(values).collect())
}

fn column(columns: &[(String, f64)], preferred: &str, fallback: &str) -> Option<(String, f64)> {
    columns
        .iter()
        .find(|(n, _)| n == preferred)
        .or_else(|| columns.iter().find(|(n, _)| n == fallback))
        .cloned()
}

/// What OpenSSL measured in this run (ops per second); `None` where unavailable.
struct Reference {
    ecdh: Option<f64>,
    rsa2048: Option<Vec<(String, f64)>>,
    rsa4096: Option<Vec<(String, f64)>>,
}

impl Reference {
    fn measure() -> Self {
        let ecdh = openssl_speed("ecdhp256").and_then(|t| ecdh_p256_per_sec(&t));
        let rsa2048 = openssl_speed("rsa2048").and_then(|t| rsa_per_sec(&t, 2048));
        let rsa4096 = openssl_speed("rsa4096").and_then(|t| rsa_per_sec(&t, 4096));
        match &ecdh {
            Some(e) => println!("REFERENCE openssl speed -seconds 3 ecdhp256: {e:.1} op/s"),
            None => println!(
                "REFERENCE openssl speed ecdhp256: unavailable (openssl not found or output not \
                 understood); ECDH ratios skipped"
            ),
        }
        for (bits, r) in [(2048, &rsa2048), (4096, &rsa4096)] {
            match r {
                Some(cols) => println!(
                    "REFERENCE openssl speed -seconds 3 rsa{bits}: {}",
                    cols.iter()
                        .map(|(n, v)| format!("{n} {v:.1}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                None => {
                    println!("REFERENCE openssl speed rsa{bits}: unavailable; its ratios skipped")
                }
            }
        }
        Self {
            ecdh,
            rsa2048,
            rsa4096,
        }
    }

    /// Seconds per ECDH P-256 at OpenSSL's speed.
    fn ecdh_s(&self) -> Option<f64> {
        self.ecdh.map(|r| 1.0 / r)
    }

    /// Seconds per private-key (`sign`/`decrypt`) and public-key (`verify`/`encrypt`)
    /// operation of RSA-`bits` at OpenSSL's speed, with the columns used.
    fn rsa_s(&self, bits: u32, private: bool) -> Option<(String, f64)> {
        let cols = if bits == 2048 {
            self.rsa2048.as_ref()?
        } else {
            self.rsa4096.as_ref()?
        };
        let (name, rate) = if bits == 2048 {
            // The envelope signature is a signature: compare with sign/verify.
            column(cols, if private { "sign/s" } else { "verify/s" }, "")?
        } else if private {
            column(cols, "decrypt/s", "sign/s")?
        } else {
            column(cols, "encrypt/s", "verify/s")?
        };
        Some((format!("rsa{bits} {name}"), 1.0 / rate))
    }
}

fn median(mut v: Vec<Duration>) -> Option<Duration> {
    v.sort();
    v.get(v.len() / 2).copied()
}

/// A time in seconds, in µs below 10 ms, else in ms.
fn us(d: f64) -> String {
    if d < 0.01 {
        format!("{:.1} µs", d * 1e6)
    } else {
        format!("{:.1} ms", d * 1e3)
    }
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

/// Runs `f` as benchmark `name` of `g` and returns the median time per call over
/// criterion's `samples` measurement samples (the last calls; the warm-up calls before them
/// are left out), or `None` if a filter skipped it.
fn measure(
    g: &mut BenchmarkGroup<'_, WallTime>,
    samples: usize,
    name: &str,
    mut f: impl FnMut(),
) -> Option<f64> {
    let mut per_call = Vec::new();
    g.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                f();
            }
            let took = start.elapsed();
            per_call.push(took.div_f64(iters as f64));
            took
        })
    });
    let measured = per_call.split_off(per_call.len().saturating_sub(samples));
    median(measured).map(|d| d.as_secs_f64())
}

/// Prints `RATIO <name> = x`: OpenSSL's time for the same public-key work divided by ours
/// (1.00 = as fast as OpenSSL's bare operations; below 1 = slower).
fn ratio(name: &str, ours: Option<f64>, reference: Option<f64>, what: &str) {
    match (ours, reference) {
        (Some(o), Some(r)) => println!(
            "RATIO {name} = {:.2} (ours {} = {:.0}/s; OpenSSL {} = {:.0}/s for {what})",
            r / o,
            us(o),
            1.0 / o,
            us(r),
            1.0 / r
        ),
        (Some(o), None) => println!(
            "RATIO {name}: reference unavailable (ours {} = {:.0}/s)",
            us(o),
            1.0 / o
        ),
        _ => {}
    }
}

fn sum(parts: &[Option<f64>]) -> Option<f64> {
    parts.iter().copied().sum()
}

fn bench(c: &mut Criterion) {
    let begin = Instant::now();
    println!("LOAD 1-minute load average at start: {}", load_average());
    let reference = Reference::measure();
    let ecdh = reference.ecdh_s();
    let rsa2048_sign = reference.rsa_s(2048, true);
    let rsa2048_verify = reference.rsa_s(2048, false);
    let rsa4096_private = reference.rsa_s(4096, true);
    let rsa4096_public = reference.rsa_s(4096, false);
    let secs = |x: &Option<(String, f64)>| x.as_ref().map(|(_, s)| *s);
    let label = |x: &Option<(String, f64)>| {
        x.as_ref()
            .map_or_else(|| "n/a".to_owned(), |(n, _)| n.clone())
    };

    // Keyrings: a granter (RSA-2048 signing) and a recipient that also has the RSA-4096
    // exchange pair.
    let start = Instant::now();
    let granter = keyring(1, false);
    let recipient = keyring(2, true);
    println!(
        "SETUP granter keyring + recipient keyring with RSA-4096 exchange pair: {} (once)",
        ms(start.elapsed())
    );
    let granter_identity = granter.identity_bundle(&mut OsRng);
    let recipient_identity = recipient.identity_bundle(&mut OsRng);
    let recipient_pub = recipient.exchange_public_key();
    let grant = Grant {
        purpose: Purpose::CollectionKey,
        owner: *granter.id().as_bytes(),
        target: [7; 16],
        epoch: 1,
    };
    let seal_envelope = |method| {
        envelope::seal(
            &mut OsRng,
            &granter,
            &RecipientKey::user(&recipient_identity),
            &grant,
            method,
            &PAYLOAD,
            1_795_000_000,
        )
        .unwrap()
    };
    let open_envelope = |bytes: &[u8]| {
        envelope::open(
            bytes,
            &granter_identity,
            &RecipientSecret::user(&recipient),
            &grant,
        )
        .unwrap()
    };

    // 1. HPKE P-256.
    let (enc, ct) =
        exchange::hpke_seal(&mut OsRng, &recipient_pub, HPKE_INFO, &AAD, &PAYLOAD).unwrap();
    let env_hpke = seal_envelope(Method::Hpke);
    assert_eq!(&open_envelope(&env_hpke)[..], &PAYLOAD[..]);
    let other = p256::SecretKey::random(&mut OsRng);
    let mut g = c.benchmark_group("handover_hpke");
    g.sample_size(FAST_SAMPLES)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2));
    let p256_ecdh = measure(&mut g, FAST_SAMPLES, "p256_ecdh", || {
        black_box(p256::ecdh::diffie_hellman(
            other.to_nonzero_scalar(),
            black_box(&recipient_pub).as_p256().as_affine(),
        ));
    });
    let hpke_seal = measure(&mut g, FAST_SAMPLES, "hpke_seal", || {
        black_box(
            exchange::hpke_seal(
                &mut OsRng,
                black_box(&recipient_pub),
                HPKE_INFO,
                &AAD,
                &PAYLOAD,
            )
            .unwrap(),
        );
    });
    let hpke_open = measure(&mut g, FAST_SAMPLES, "hpke_open", || {
        black_box(
            exchange::hpke_open(
                recipient.exchange_secret(),
                black_box(&enc),
                HPKE_INFO,
                &AAD,
                &ct,
            )
            .unwrap(),
        );
    });
    let env_hpke_seal = measure(&mut g, FAST_SAMPLES, "envelope_seal", || {
        black_box(seal_envelope(black_box(Method::Hpke)));
    });
    let env_hpke_open = measure(&mut g, FAST_SAMPLES, "envelope_open", || {
        black_box(open_envelope(black_box(&env_hpke)));
    });
    g.finish();

    ratio(
        "p256-ecdh/openssl-ecdh",
        p256_ecdh,
        ecdh,
        "1 ECDH P-256 (the same operation)",
    );
    ratio(
        "hpke-seal/openssl-ecdh",
        hpke_seal,
        ecdh.map(|e| 2.0 * e),
        "2 ECDH: an HPKE seal does 2 ECDH-equivalents, ephemeral keygen + DH",
    );
    ratio(
        "hpke-open/openssl-ecdh",
        hpke_open,
        ecdh,
        "1 ECDH: an HPKE open does 1 DH; the hpke crate's Decap also recomputes pkR = skR*G, \
         a 2nd scalar multiplication, so per scalar multiplication the ratio is twice this",
    );
    ratio(
        "envelope-hpke-seal/openssl",
        env_hpke_seal,
        sum(&[ecdh.map(|e| 2.0 * e), secs(&rsa2048_sign)]),
        &format!("2 ECDH + 1 {}", label(&rsa2048_sign)),
    );
    ratio(
        "envelope-hpke-open/openssl",
        env_hpke_open,
        sum(&[ecdh, secs(&rsa2048_verify)]),
        &format!("1 ECDH + 1 {}", label(&rsa2048_verify)),
    );

    // 2. RSA-4096 OAEP.
    let rsa_pub = recipient_identity.rsa_exchange_key().unwrap();
    let rsa_secret = recipient.rsa_exchange_secret().unwrap();
    let key = SymmetricKey::generate(&mut OsRng);
    let wrapped = exchange::rsa_oaep_wrap(&mut OsRng, rsa_pub, &key).unwrap();
    let env_rsa = seal_envelope(Method::RsaOaep);
    assert_eq!(&open_envelope(&env_rsa)[..], &PAYLOAD[..]);
    let mut g = c.benchmark_group("handover_rsa4096_oaep");
    g.sample_size(SLOW_SAMPLES)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    let oaep_wrap = measure(&mut g, SLOW_SAMPLES, "wrap", || {
        black_box(exchange::rsa_oaep_wrap(&mut OsRng, black_box(rsa_pub), &key).unwrap());
    });
    let oaep_unwrap = measure(&mut g, SLOW_SAMPLES, "unwrap", || {
        black_box(exchange::rsa_oaep_unwrap(rsa_secret, black_box(&wrapped)).unwrap());
    });
    let env_rsa_seal = measure(&mut g, SLOW_SAMPLES, "envelope_seal", || {
        black_box(seal_envelope(black_box(Method::RsaOaep)));
    });
    let env_rsa_open = measure(&mut g, SLOW_SAMPLES, "envelope_open", || {
        black_box(open_envelope(black_box(&env_rsa)));
    });
    g.finish();

    ratio(
        "rsa-oaep-wrap/openssl-rsa4096",
        oaep_wrap,
        secs(&rsa4096_public),
        &format!("1 {} (public-key operation)", label(&rsa4096_public)),
    );
    ratio(
        "rsa-oaep-unwrap/openssl-rsa4096",
        oaep_unwrap,
        secs(&rsa4096_private),
        &format!("1 {} (private-key operation)", label(&rsa4096_private)),
    );
    ratio(
        "envelope-rsa-seal/openssl",
        env_rsa_seal,
        sum(&[secs(&rsa4096_public), secs(&rsa2048_sign)]),
        &format!("1 {} + 1 {}", label(&rsa4096_public), label(&rsa2048_sign)),
    );
    ratio(
        "envelope-rsa-open/openssl",
        env_rsa_open,
        sum(&[secs(&rsa4096_private), secs(&rsa2048_verify)]),
        &format!(
            "1 {} + 1 {}",
            label(&rsa4096_private),
            label(&rsa2048_verify)
        ),
    );

    // 3. A group of 101: the admin and 100 members.
    let start = Instant::now();
    let seeds: Vec<u64> = (1000..=1000 + MEMBERS as u64).collect();
    let mut all = keyrings(&seeds);
    println!(
        "SETUP {} keyrings (RSA-2048 key generation, deterministic seeds, 2 threads): {} (once)",
        seeds.len(),
        ms(start.elapsed())
    );
    let store = Arc::new(MemoryStore::new());
    let open = |k: Keyring| {
        let v = Vault::open(store.clone(), k, LocalState::in_memory());
        v.publish_identity().unwrap();
        v
    };
    let admin = open(all.remove(0));
    let members: Vec<_> = all.into_iter().map(open).collect();
    let start = Instant::now();
    let identities: Vec<_> = members
        .iter()
        .map(|m| admin.fetch_identity(m.keyring().id()).unwrap())
        .collect();
    for m in &members {
        m.fetch_identity(admin.keyring().id()).unwrap();
    }
    let pinned = start.elapsed();
    let start = Instant::now();
    let mut group = admin.create_group().unwrap();
    for identity in &identities {
        group.add_member(identity, Role::Member).unwrap();
    }
    let added = start.elapsed();
    let gid = group.id();
    let size = group.roster().members().len();
    println!(
        "SETUP group of {size} (admin + {MEMBERS}): identities fetched and pinned both ways {}, \
         create_group + {MEMBERS} add_member {} ({:.1} ms per add: roster signature + one \
         envelope)",
        ms(pinned),
        ms(added),
        added.as_secs_f64() * 1e3 / MEMBERS as f64
    );
    let solo_group = admin.create_group().unwrap();
    let solo_gid = solo_group.id();
    let mut team = admin.collection("team").unwrap();
    team.put("hello.txt", b"for the whole team").unwrap();
    let mut solo = admin.collection("solo").unwrap();
    solo.put("hello.txt", b"for the admin alone").unwrap();

    let mut g = c.benchmark_group("handover_group");
    g.sample_size(SLOW_SAMPLES)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    let share_big = measure(
        &mut g,
        SLOW_SAMPLES,
        &format!("share_with_group/{size}"),
        || {
            team.share_with_group(black_box(gid)).unwrap();
        },
    );
    let share_one = measure(&mut g, SLOW_SAMPLES, "share_with_group/1", || {
        solo.share_with_group(black_box(solo_gid)).unwrap();
    });
    if let (Some(big), Some(one)) = (share_big, share_one) {
        println!(
            "GROUP share_with_group (1 key epoch): group of {size} {} vs group of 1 {} = {:.2}x \
             (one envelope to the group key + one signed manifest either way: ~constant in \
             group size); one envelope-hpke seal {}",
            us(big),
            us(one),
            big / one,
            env_hpke_seal.map_or_else(|| "n/a".into(), us)
        );
    }

    // The first member opens the shared collection: cold (verify the roster chain, fetch
    // the group secret, open the envelopes), then warm.
    let first = &members[0];
    let owner = admin.id();
    let tid = team.id();
    let start = Instant::now();
    let synced = first.group(gid).unwrap();
    let sync = start.elapsed();
    let versions = synced.roster().version();
    drop(synced);
    let start = Instant::now();
    let opened = first.shared_collection(owner, tid).unwrap();
    let cold = start.elapsed();
    assert_eq!(opened.get("hello.txt").unwrap(), b"for the whole team");
    drop(opened);
    let warm = measure(
        &mut g,
        SLOW_SAMPLES,
        "shared_collection/first_member",
        || {
            black_box(first.shared_collection(owner, black_box(tid)).unwrap());
        },
    );
    println!(
        "GROUP first member: group() (verify {versions} roster versions, fetch the group \
         secret) {} once, then shared_collection {} the first time; {} each time after (it \
         then also re-verifies the manifest it remembered)",
        ms(sync),
        ms(cold),
        warm.map_or_else(|| "n/a".into(), us)
    );

    // remove_member: remove the last member (timed), add it back (untimed).
    let last = identities.last().unwrap();
    let last_id = last.keyring_id();
    let mut remaining = 0;
    let mut removals = Vec::new();
    g.measurement_time(Duration::from_secs(5));
    g.bench_function(format!("remove_member/{size}"), |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let start = Instant::now();
                group.remove_member(black_box(&last_id)).unwrap();
                let took = start.elapsed();
                remaining = group.roster().members().len();
                removals.push(took);
                total += took;
                group.add_member(last, Role::Member).unwrap();
            }
            total
        })
    });
    g.finish();
    if let Some(remove) = median(removals).map(|d| d.as_secs_f64()) {
        let n = remaining as f64;
        println!(
            "GROUP remove_member from a group of {size}: {} (median), {remaining} envelopes \
             (one per remaining member) = {} per remaining member",
            us(remove),
            us(remove / n)
        );
        if let Some(seal) = env_hpke_seal {
            println!(
                "RATIO remove-member/({remaining} x envelope-hpke-seal) = {:.2}x the time \
                 ({} vs {remaining} x {} = {}; linear cost predicts 1.00; on top: one roster \
                 signature, one identity-bundle verification per remaining member, store \
                 writes)",
                remove / (n * seal),
                us(remove),
                us(seal),
                us(n * seal)
            );
        }
        ratio(
            "remove-member/openssl",
            Some(remove),
            sum(&[ecdh.map(|e| 2.0 * e), secs(&rsa2048_sign)]).map(|s| n * s),
            &format!(
                "{remaining} x (2 ECDH + 1 {}): the envelopes' public-key work alone",
                label(&rsa2048_sign)
            ),
        );
    }
    println!(
        "LOAD 1-minute load average at end: {}; whole benchmark {:.0} s",
        load_average(),
        begin.elapsed().as_secs_f64()
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
