//! Embedding a local vault: store a directory of files and a table of records in a sled
//! vault, close it, reopen it, read everything back bit for bit, and show what the store
//! actually holds.
//!
//! ```text
//! cargo run --release --locked -p vault-examples --example local_vault [DIRECTORY]
//! ```
//!
//! Without an argument it stores this repository's `docs/` and `keyring/` directories.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Instant;

use rand_core::OsRng;
use vault_core::{LocalState, PutOptions, SledStore, Vault};
use vault_keyring::{Keyring, KeyringOptions};

fn files_under(root: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(root)? {
        let path = entry?.path();
        if path.is_dir() {
            files_under(&path, out)?;
        } else if path.is_file() {
            out.push(path);
        }
    }
    Ok(())
}

fn dir_size(path: &Path) -> u64 {
    let mut files = Vec::new();
    let _ = files_under(path, &mut files);
    files
        .iter()
        .filter_map(|f| f.metadata().ok())
        .map(|m| m.len())
        .sum()
}

/// Does any file under `dir` contain `needle`?
fn appears_in(dir: &Path, needle: &[u8]) -> bool {
    let mut files = Vec::new();
    let _ = files_under(dir, &mut files);
    files.iter().any(|f| {
        std::fs::read(f)
            .map(|bytes| bytes.windows(needle.len()).any(|w| w == needle))
            .unwrap_or(false)
    })
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let roots: Vec<PathBuf> = match std::env::args_os().nth(1) {
        Some(dir) => vec![PathBuf::from(dir)],
        None => vec![repo.join("docs"), repo.join("keyring")],
    };
    let mut files = Vec::new();
    for root in &roots {
        files_under(root, &mut files)?;
    }
    files.sort();
    let work = tempfile::tempdir()?;
    let (store_dir, state_dir) = (work.path().join("store"), work.path().join("state"));

    // 1. A keyring (see the `keyring` example for sealing it under a password) and a vault.
    let keyring = Keyring::generate(&mut OsRng, &KeyringOptions::new())?;
    let vault = Vault::open(
        SledStore::open(&store_dir)?,
        keyring,
        LocalState::open(&state_dir)?,
    );

    // 2. Files, streamed page by page.
    let start = Instant::now();
    let mut plain_bytes = 0u64;
    {
        let mut c = vault.collection("files")?;
        for f in &files {
            let name = f
                .strip_prefix(&repo)
                .unwrap_or(f)
                .to_string_lossy()
                .into_owned();
            plain_bytes += f.metadata()?.len();
            c.put_reader(&name, &mut File::open(f)?, &PutOptions::default())?;
        }
    }
    println!(
        "stored {} files ({} bytes) in {:.2?}",
        files.len(),
        plain_bytes,
        start.elapsed()
    );

    // 3. Ten thousand small records, packed into pages.
    let mut records = BTreeMap::new();
    for i in 0..10_000u32 {
        records.insert(
            format!("contact/{i:05}").into_bytes(),
            format!("{{\"id\":{i},\"name\":\"Person {i}\",\"email\":\"person{i}@example.org\"}}")
                .into_bytes(),
        );
    }
    let start = Instant::now();
    vault
        .collection("records")?
        .put_records("contacts", &records, &PutOptions::default())?;
    println!("stored 10,000 records in {:.2?}", start.elapsed());

    // 4. Close, reopen (as after a restart), read everything back and compare.
    let (store, keyring, state) = vault.into_parts();
    drop((store, state));
    let vault = Vault::open(
        SledStore::open(&store_dir)?,
        keyring,
        LocalState::open(&state_dir)?,
    );
    let c = vault.collection("files")?;
    assert_eq!(c.list().len(), files.len());
    for f in &files {
        let name = f
            .strip_prefix(&repo)
            .unwrap_or(f)
            .to_string_lossy()
            .into_owned();
        assert_eq!(c.get(&name)?, std::fs::read(f)?, "{name}");
    }
    let r = vault.collection("records")?;
    assert_eq!(r.records("contacts")?, records);
    let one = r
        .get_record("contacts", b"contact/04711")?
        .unwrap_or_default();
    println!(
        "reopened: every file identical; record contact/04711 = {}",
        String::from_utf8_lossy(&one)
    );
    let pages: u32 = r.manifest().entries.values().map(|e| e.page_count).sum();
    println!("the 10,000 records take {pages} page(s)");

    // 5. What the store holds: opaque sealed bytes under random ids.
    drop(c);
    drop(r);
    let (store, _keyring, _state) = vault.into_parts();
    store.flush()?;
    drop(store);
    let name = files
        .first()
        .and_then(|f| f.file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    println!(
        "the store directory holds {} bytes on disk; plaintext was {} bytes of files and {} bytes of records",
        dir_size(&store_dir),
        plain_bytes,
        records.values().map(|v| v.len()).sum::<usize>()
    );
    println!(
        "file name {name:?} appears in the store: {}; \"Person 4711\" appears: {}",
        appears_in(&store_dir, name.as_bytes()),
        appears_in(&store_dir, b"Person 4711")
    );
    Ok(())
}
