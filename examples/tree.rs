//! Store a directory tree in a new sealed vault directory, and restore it: what the
//! side-by-side corpus benchmark (../shared/bench, `EXTRA_TOOLS`) runs as "vault".
//!
//! ```text
//! cargo run --release --locked -p vault-examples --example tree -- store   OUT SRC...
//! cargo run --release --locked -p vault-examples --example tree -- restore OUT DEST
//! ```
//!
//! `store` creates a keyring sealed under the password `$VAULT_PASSWORD` (default
//! "benchmark password") at 600,000 PBKDF2 iterations (`OUT/keyring`), and a sled vault
//! (`OUT/store`, `OUT/state`). Files are spread over two collections written by two threads,
//! committed in batches (one signed manifest per 8,192 files or 256 MiB); files under 256 KiB
//! are packed together into record tables of about 16 MiB, so small files share compressed
//! pages. `restore` unlocks the keyring with the password and writes every file back under
//! DEST, two threads.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use rand_core::OsRng;
use vault_core::{LocalState, PutOptions, SledStore, Vault};
use vault_keyring::{
    KdfParams, Keyring, KeyringOptions, Password, PasswordKeys, SealedKeyring, MIN_ITERATIONS,
};

const THREADS: usize = 2;
const BATCH_FILES: usize = 8192;
const BATCH_BYTES: u64 = 256 * 1024 * 1024;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

fn password() -> Password {
    Password::new(std::env::var("VAULT_PASSWORD").unwrap_or_else(|_| "benchmark password".into()))
}

fn walk(root: &Path, out: &mut Vec<PathBuf>) -> io::Result<()> {
    let meta = std::fs::symlink_metadata(root)?;
    if meta.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(root)?
            .map(|e| e.map(|e| e.path()))
            .collect::<io::Result<_>>()?;
        entries.sort();
        for e in entries {
            walk(&e, out)?;
        }
    } else if meta.is_file() {
        out.push(root.to_path_buf());
    }
    Ok(())
}

fn open_vault(out: &Path, keyring: Keyring) -> Result<Vault<SledStore>> {
    Ok(Vault::open(
        SledStore::open(out.join("store"))?,
        keyring,
        LocalState::open(out.join("state"))?,
    ))
}

fn store(out: &Path, sources: &[PathBuf]) -> Result<()> {
    std::fs::create_dir_all(out)?;
    let params = KdfParams::with_iterations(MIN_ITERATIONS)?;
    let keys = PasswordKeys::derive(&password(), &params)?;
    let keyring = Keyring::generate(&mut OsRng, &KeyringOptions::new())?;
    let (sealed, _recovery) = SealedKeyring::seal(&mut OsRng, &keyring, &keys);
    std::fs::write(out.join("keyring"), sealed.to_bytes())?;
    let mut files = Vec::new();
    for s in sources {
        walk(s, &mut files)?;
    }
    let sized: Vec<(PathBuf, u64)> = files
        .into_iter()
        .map(|f| {
            let len = f.metadata()?.len();
            Ok((f, len))
        })
        .collect::<io::Result<_>>()?;
    // Contiguous shares of about equal bytes, so neighbouring (similar) files share packs.
    let total: u64 = sized.iter().map(|(_, len)| len).sum();
    let mut shares: Vec<Vec<(PathBuf, u64)>> = vec![Vec::new(); THREADS];
    let mut acc = 0u64;
    for item in sized {
        let t = ((acc * THREADS as u64) / total.max(1)).min(THREADS as u64 - 1) as usize;
        acc += item.1;
        shares[t].push(item);
    }
    let vault = open_vault(out, keyring)?;
    std::thread::scope(|scope| -> Result<()> {
        let handles: Vec<_> = shares
            .iter()
            .enumerate()
            .map(|(t, share)| {
                let vault = &vault;
                scope.spawn(move || write_share(vault, t, share))
            })
            .collect();
        for h in handles {
            h.join().map_err(|_| "a writer thread panicked")??;
        }
        Ok(())
    })?;
    let (store, _, _) = vault.into_parts();
    store.flush()?;
    Ok(())
}

/// Files below this size are packed together into record tables ("p/…"): the vault
/// combines and compresses them in shared pages. Larger files are objects of their own
/// ("f/…"), streamed page by page. All files of one tree are one origin, so compressing
/// them together is within the policy of docs/spec/pages.md §8.
const SMALL_FILE: u64 = 256 * 1024;
const PACK_BYTES: u64 = 16 * 1024 * 1024;

fn write_share(vault: &Vault<SledStore>, t: usize, share: &[(PathBuf, u64)]) -> Result<()> {
    let mut c = vault.collection(&format!("tree-{t}"))?;
    let mut batch = c.batch();
    let (mut n, mut bytes) = (0usize, 0u64);
    let mut pack: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
    let (mut pack_bytes, mut packs) = (0u64, 0usize);
    for (f, len) in share {
        let name = f.to_string_lossy();
        if *len < SMALL_FILE {
            pack.insert(name.as_bytes().to_vec(), std::fs::read(f)?);
            pack_bytes += len;
            if pack_bytes >= PACK_BYTES {
                batch.put_records(&format!("p/{packs}"), &pack, &PutOptions::default())?;
                (pack, pack_bytes, packs) = (BTreeMap::new(), 0, packs + 1);
            }
        } else {
            batch.put_reader(
                &format!("f/{name}"),
                &mut File::open(f)?,
                &PutOptions::default(),
            )?;
        }
        bytes += len;
        n += 1;
        if n >= BATCH_FILES || bytes >= BATCH_BYTES {
            batch.commit()?;
            batch = c.batch();
            (n, bytes) = (0, 0);
        }
    }
    if !pack.is_empty() {
        batch.put_records(&format!("p/{packs}"), &pack, &PutOptions::default())?;
    }
    batch.commit()?;
    Ok(())
}

fn safe_relative(name: &str) -> Result<&Path> {
    let rel = Path::new(name);
    if rel.is_absolute()
        || rel.components().any(|c| {
            !matches!(
                c,
                std::path::Component::Normal(_) | std::path::Component::CurDir
            )
        })
    {
        return Err(format!("refusing to restore outside DEST: {name}").into());
    }
    Ok(rel)
}

fn create(dest: &Path, name: &str) -> Result<File> {
    let path = dest.join(safe_relative(name)?);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    Ok(File::create(&path)?)
}

fn restore(out: &Path, dest: &Path) -> Result<()> {
    let sealed = SealedKeyring::from_bytes(&std::fs::read(out.join("keyring"))?)?;
    let (keyring, _) = sealed.unlock_with_password(&password())?;
    let vault = open_vault(out, keyring)?;
    std::thread::scope(|scope| -> Result<()> {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let vault = &vault;
                scope.spawn(move || -> Result<()> {
                    let c = vault.collection(&format!("tree-{t}"))?;
                    for item in c.list() {
                        if let Some(name) = item.name.strip_prefix("f/") {
                            let mut file = create(dest, name)?;
                            io::copy(&mut c.open(&item.name)?, &mut file)?;
                            file.flush()?;
                        } else if item.name.starts_with("p/") {
                            for (name, data) in c.records(&item.name)? {
                                let name = String::from_utf8(name)
                                    .map_err(|_| "a packed file name is not UTF-8")?;
                                create(dest, &name)?.write_all(&data)?;
                            }
                        }
                    }
                    Ok(())
                })
            })
            .collect();
        for h in handles {
            h.join().map_err(|_| "a reader thread panicked")??;
        }
        Ok(())
    })
}

fn main() -> Result<()> {
    let args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    match args.first().and_then(|a| a.to_str()) {
        Some("store") if args.len() >= 3 => store(&args[1], &args[2..]),
        Some("restore") if args.len() == 3 => restore(&args[1], &args[2]),
        _ => {
            eprintln!("usage: tree store OUT SRC... | tree restore OUT DEST");
            std::process::exit(2);
        }
    }
}
