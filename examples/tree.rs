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
//! committed in batches (one signed manifest per 8,192 files or 256 MiB). `restore` unlocks the
//! keyring with the password and writes every file back under DEST, two threads.

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
    let vault = open_vault(out, keyring)?;
    std::thread::scope(|scope| -> Result<()> {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let (vault, files) = (&vault, &files);
                scope.spawn(move || -> Result<()> {
                    let mut c = vault.collection(&format!("tree-{t}"))?;
                    let mut batch = c.batch();
                    let (mut n, mut bytes) = (0usize, 0u64);
                    for f in files.iter().skip(t).step_by(THREADS) {
                        let name = f.to_string_lossy();
                        bytes += batch_put(&mut batch, &name, f)?;
                        n += 1;
                        if n == BATCH_FILES || bytes >= BATCH_BYTES {
                            batch.commit()?;
                            batch = c.batch();
                            (n, bytes) = (0, 0);
                        }
                    }
                    batch.commit()?;
                    Ok(())
                })
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

fn batch_put(
    batch: &mut vault_core::Batch<'_, '_, SledStore>,
    name: &str,
    f: &Path,
) -> Result<u64> {
    let len = f.metadata()?.len();
    batch.put_reader(name, &mut File::open(f)?, &PutOptions::default())?;
    Ok(len)
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
                        let rel = Path::new(&item.name);
                        if rel.is_absolute()
                            || rel
                                .components()
                                .any(|c| matches!(c, std::path::Component::ParentDir))
                        {
                            return Err(
                                format!("refusing to restore outside DEST: {}", item.name).into()
                            );
                        }
                        let path = dest.join(rel);
                        if let Some(parent) = path.parent() {
                            std::fs::create_dir_all(parent)?;
                        }
                        let mut file = File::create(&path)?;
                        io::copy(&mut c.open(&item.name)?, &mut file)?;
                        file.flush()?;
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
