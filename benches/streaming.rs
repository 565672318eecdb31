//! Streaming a 1 GiB object into a vault and back out, measuring peak memory (goal: peak
//! RSS ≤ 64 MiB, independent of object size).
//!
//! Part 1 uses a store that keeps each page in its own file (defined below), so the
//! measurement is of the library's own streaming path. Part 2 uses the embedded store
//! (`SledStore`: pages in pack files, the index in sled) with the raw sled engine (the same
//! bytes as 1 MiB sled values) as the throughput reference.
//!
//! ```text
//! cargo bench -p vault-benches --bench streaming            # 1 GiB
//! VAULT_STREAM_MIB=256 cargo bench -p vault-benches --bench streaming
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hash::Hasher;
use std::io::{self, Read};
use std::time::Instant;

use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use vault_benches::{peak_rss_mib, PageSink, Source, SplitStore, Sum};
use vault_core::{Compression, LocalState, PageAddress, PutOptions, SledStore, StoreError, Vault};
use vault_keyring::{Keyring, KeyringOptions};

const MIB: u64 = 1024 * 1024;

/// Pages as files in a directory (one file per page); everything else in memory.
struct FilePages {
    dir: std::path::PathBuf,
}

impl FilePages {
    fn path(&self, a: &PageAddress) -> std::path::PathBuf {
        self.dir.join(format!(
            "{}-{}-{}-{}",
            a.collection, a.object, a.version, a.index
        ))
    }
}

fn io_err(e: io::Error) -> StoreError {
    StoreError::new(e.to_string())
}

impl PageSink for FilePages {
    fn put(&self, a: &PageAddress, page: &[u8]) -> Result<(), StoreError> {
        std::fs::write(self.path(a), page).map_err(io_err)
    }
    fn get(&self, a: &PageAddress) -> Result<Option<Vec<u8>>, StoreError> {
        match std::fs::read(self.path(a)) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(e)),
        }
    }
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` would pass nothing useful.
    let mib: u64 = std::env::var("VAULT_STREAM_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    let size = mib * MIB;
    let dir = tempfile::tempdir().unwrap();
    let baseline = peak_rss_mib();

    let mut expected = Sum(Default::default(), 0);
    io::copy(
        &mut Source {
            rng: ChaCha20Rng::seed_from_u64(1),
            left: size,
        },
        &mut expected,
    )
    .unwrap();

    let keyring =
        Keyring::generate(&mut ChaCha20Rng::from_seed([9; 32]), &KeyringOptions::new()).unwrap();
    let opts = PutOptions {
        compression: Compression::None,
        ..PutOptions::default()
    };

    // Part 1: the library's streaming path, pages to files.
    std::fs::create_dir_all(dir.path().join("files")).unwrap();
    let vault = Vault::open(
        SplitStore::new(FilePages {
            dir: dir.path().join("files"),
        }),
        keyring,
        LocalState::in_memory(),
    );
    let mut c = vault.collection("stream").unwrap();
    let start = Instant::now();
    c.put_reader(
        "big",
        &mut Source {
            rng: ChaCha20Rng::seed_from_u64(1),
            left: size,
        },
        &opts,
    )
    .unwrap();
    let file_put = start.elapsed();
    let start = Instant::now();
    let mut got = Sum(Default::default(), 0);
    io::copy(&mut c.open("big").unwrap(), &mut got).unwrap();
    let file_get = start.elapsed();
    let (expected_hash, expected_len) = (expected.0.finish(), expected.1);
    assert_eq!((got.0.finish(), got.1), (expected_hash, expected_len));
    let file_peak = peak_rss_mib();
    drop(c);
    let (_, keyring, _) = vault.into_parts();
    let _ = std::fs::remove_dir_all(dir.path().join("files"));
    let rate = |d: std::time::Duration| size as f64 / d.as_secs_f64() / 1e6;
    println!(
        "STREAM {mib} MiB object through the library (file-per-page store): put {:.0} MB/s, get {:.0} MB/s; peak RSS {:.1} MiB (baseline {:.1} MiB); goal <= 64 MiB: {}",
        rate(file_put),
        rate(file_get),
        file_peak,
        baseline,
        if file_peak <= 64.0 { "met" } else { "NOT met" }
    );

    // Part 2: the sled store against raw sled.
    let vault = Vault::open(
        SledStore::open_with_cache(dir.path().join("vault"), 16 * MIB).unwrap(),
        keyring,
        LocalState::in_memory(),
    );
    let mut c = vault.collection("stream").unwrap();
    let start = Instant::now();
    c.put_reader(
        "big",
        &mut Source {
            rng: ChaCha20Rng::seed_from_u64(1),
            left: size,
        },
        &opts,
    )
    .unwrap();
    let put = start.elapsed();
    let after_put = peak_rss_mib();
    let start = Instant::now();
    let mut got = Sum(Default::default(), 0);
    io::copy(&mut c.open("big").unwrap(), &mut got).unwrap();
    let get = start.elapsed();
    assert_eq!((got.0.finish(), got.1), (expected_hash, expected_len));
    let after_get = peak_rss_mib();
    drop(c);
    drop(vault);

    // Reference: the raw storage engine, same bytes in 1 MiB values.
    let raw = sled::Config::new()
        .path(dir.path().join("raw"))
        .cache_capacity(16 * MIB)
        .open()
        .unwrap();
    let mut src = Source {
        rng: ChaCha20Rng::seed_from_u64(1),
        left: size,
    };
    let mut chunk = vec![0u8; MIB as usize];
    let start = Instant::now();
    for i in 0..mib {
        src.read_exact(&mut chunk).unwrap();
        raw.insert(i.to_be_bytes(), chunk.as_slice()).unwrap();
    }
    raw.flush().unwrap();
    let raw_put = start.elapsed();
    let start = Instant::now();
    let mut raw_sum = Sum(Default::default(), 0);
    for i in 0..mib {
        io::Write::write_all(&mut raw_sum, &raw.get(i.to_be_bytes()).unwrap().unwrap()).unwrap();
    }
    let raw_get = start.elapsed();
    assert_eq!(raw_sum.1, size);

    println!(
        "STREAM {mib} MiB object through the embedded store (SledStore): put {:.0} MB/s, get {:.0} MB/s; peak RSS {:.1} MiB after put, {:.1} MiB after get; goal <= 64 MiB: {}",
        rate(put),
        rate(get),
        after_put,
        after_get,
        if after_get <= 64.0 { "met" } else { "NOT met" }
    );
    println!(
        "RATIO streaming vs raw sled (1 MiB values): put {:.2}x ({:.0} MB/s), get {:.2}x ({:.0} MB/s)",
        rate(put) / rate(raw_put),
        rate(raw_put),
        rate(get) / rate(raw_get),
        rate(raw_get)
    );
}
