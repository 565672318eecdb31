//! Page bytes of the sled backend, kept outside sled: append-only pack files next to the
//! database (`<data dir>/packs/NNNNNNNN.pack`), with sled holding only each page's
//! [`Location`] (docs/spec/storage.md §3).
//!
//! sled keeps values inside its B-tree leaves and its memory follows the data it has touched,
//! not its cache setting; with 64 KiB pages a server grew past 1 GiB after writing and
//! reading less than 1 GB. Here sled holds 16 bytes per page and the operating system's page
//! cache holds the rest.
//!
//! - **Writes** append to the current pack (a new one past [`PACK_LIMIT`]), then make it
//!   durable before the caller commits the location to sled: sled never points at bytes that
//!   are not durable. Concurrent writers share their `fsync`s (group commit): one writer
//!   syncs the pack up to its current end while the others wait, and each of them whose
//!   page lies below that end returns without a sync of its own.
//! - **Fail-stop.** After a failed write or `fsync` the packs refuse every further write
//!   until the server restarts: after a failed `fsync` the kernel may have dropped the dirty
//!   pages and a retry could report success for bytes that are gone (PostgreSQL's
//!   "fsyncgate", 2018). Reads go on.
//! - **Space** of a page that is replaced or deleted is returned to the file system by
//!   punching a hole over its bytes (`fallocate(PUNCH_HOLE)`) after the index change is
//!   durable. A crash between the two, or between an append and its commit, leaves bytes no
//!   location points at: space lost, never data.
//! - **Reads** hold a shared [`Packs::reading`] guard across "look up the location, read the
//!   bytes"; punching takes it exclusively, so a reader never sees a hole where the location
//!   it has just read said a page was.
//! - A pack is never appended to after a restart (its tail may be torn): opening starts a new
//!   one after the highest id present.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Write as _};
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock, RwLockReadGuard};

use super::BackendError;

/// A pack is closed (and a new one started) once it holds this many bytes.
pub(super) const PACK_LIMIT: u64 = 256 * 1024 * 1024;

/// Where a page's bytes are: 16 bytes in sled, `pack ‖ offset ‖ len` (big-endian u32, u64,
/// u32).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Location {
    pub pack: u32,
    pub offset: u64,
    pub len: u32,
}

impl Location {
    pub const ENCODED_LEN: usize = 16;

    pub fn encode(&self) -> [u8; Self::ENCODED_LEN] {
        let mut out = [0u8; Self::ENCODED_LEN];
        out[..4].copy_from_slice(&self.pack.to_be_bytes());
        out[4..12].copy_from_slice(&self.offset.to_be_bytes());
        out[12..].copy_from_slice(&self.len.to_be_bytes());
        out
    }

    pub fn decode(b: &[u8]) -> Option<Self> {
        if b.len() != Self::ENCODED_LEN {
            return None;
        }
        Some(Self {
            pack: u32::from_be_bytes(b[..4].try_into().ok()?),
            offset: u64::from_be_bytes(b[4..12].try_into().ok()?),
            len: u32::from_be_bytes(b[12..].try_into().ok()?),
        })
    }

    /// The first byte past the page.
    pub fn end(&self) -> Option<u64> {
        self.offset.checked_add(u64::from(self.len))
    }
}

struct Writer {
    id: u32,
    file: Arc<File>,
    len: u64,
    /// Set by a failed write or sync: no write is accepted any more.
    failed: bool,
}

/// The pack files of one data directory.
pub(super) struct Packs {
    dir: PathBuf,
    writer: Mutex<Writer>,
    /// `(pack, length)` known durable: every byte of an older pack, and of this pack below
    /// this length. Held by the one writer that syncs.
    synced: Mutex<(u32, u64)>,
    readers: RwLock<HashMap<u32, Arc<File>>>,
    /// Shared by readers across look-up and read; exclusive while holes are punched.
    reclaim: RwLock<()>,
    /// While a backup copies pages (`crate::backup`): how many copies run, and the pages
    /// whose punching waits for them (docs/spec/backup.md §3).
    pub(super) held: Mutex<(usize, Vec<Location>)>,
}

/// Holds off punching while it lives ([`Packs::hold_punches`]); the last one dropped punches
/// what was deferred.
pub(super) struct PunchHold<'a>(&'a Packs);

impl Drop for PunchHold<'_> {
    fn drop(&mut self) {
        let deferred = {
            let mut held = self.0.held.lock().unwrap_or_else(PoisonError::into_inner);
            held.0 = held.0.saturating_sub(1);
            if held.0 > 0 {
                return;
            }
            std::mem::take(&mut held.1)
        };
        self.0.punch_all(&deferred);
    }
}

fn io_err(what: &str, e: std::io::Error) -> BackendError {
    BackendError::new(format!("pack files: {what}: {e}"))
}

fn stopped() -> BackendError {
    BackendError::new(
        "pack files: an earlier write or sync failed; no page is written until the server restarts",
    )
}

fn poisoned() -> BackendError {
    BackendError::new("pack files: lock poisoned")
}

/// The pack ids present in `dir`, with their lengths.
fn existing(dir: &Path) -> Result<HashMap<u32, u64>, BackendError> {
    let mut packs = HashMap::new();
    for entry in std::fs::read_dir(dir).map_err(|e| io_err("list", e))? {
        let entry = entry.map_err(|e| io_err("list", e))?;
        let name = entry.file_name();
        let Some(id) = name
            .to_str()
            .and_then(|n| n.strip_suffix(".pack"))
            .filter(|n| n.len() == 8 && n.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let len = entry.metadata().map_err(|e| io_err("stat", e))?.len();
        packs.insert(id, len);
    }
    Ok(packs)
}

impl Packs {
    /// Opens the pack directory `dir` (created if missing) and starts a new pack.
    /// Returns the packs and the lengths of the packs that were already there (for the
    /// start-up check of the locations sled holds).
    pub fn open(dir: PathBuf) -> Result<(Self, HashMap<u32, u64>), BackendError> {
        std::fs::create_dir_all(&dir).map_err(|e| io_err("create directory", e))?;
        let found = existing(&dir)?;
        let next = match found.keys().max() {
            None => 0,
            Some(id) => id
                .checked_add(1)
                .ok_or_else(|| BackendError::new("pack files: pack ids exhausted"))?,
        };
        let writer = Self::create(&dir, next)?;
        Ok((
            Self {
                dir,
                synced: Mutex::new((next, 0)),
                writer: Mutex::new(writer),
                readers: RwLock::new(HashMap::new()),
                reclaim: RwLock::new(()),
                held: Mutex::new((0, Vec::new())),
            },
            found,
        ))
    }

    /// The file of pack `id` in `dir`: `NNNNNNNN.pack`.
    pub(super) fn path(dir: &Path, id: u32) -> PathBuf {
        dir.join(format!("{id:08}.pack"))
    }

    /// Creates pack `id` and makes its directory entry durable.
    fn create(dir: &Path, id: u32) -> Result<Writer, BackendError> {
        let file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(Self::path(dir, id))
            .map_err(|e| io_err("create pack", e))?;
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io_err("sync directory", e))?;
        Ok(Writer {
            id,
            file: Arc::new(file),
            len: 0,
            failed: false,
        })
    }

    /// Appends `page` and makes it durable; returns where it is.
    pub fn append(&self, page: &[u8]) -> Result<Location, BackendError> {
        let len = u32::try_from(page.len())
            .map_err(|_| BackendError::new("pack files: page larger than 4 GiB"))?;
        let location = {
            let mut w = self.writer.lock().map_err(|_| poisoned())?;
            if w.failed {
                return Err(stopped());
            }
            if w.len >= PACK_LIMIT {
                // The old pack is made durable before any page goes to the new one, which is
                // what lets `synced` say "every byte of an older pack".
                if let Err(e) = w.file.sync_data() {
                    w.failed = true;
                    return Err(io_err("sync pack", e));
                }
                let next =
                    w.id.checked_add(1)
                        .ok_or_else(|| BackendError::new("pack files: pack ids exhausted"))?;
                *w = Self::create(&self.dir, next)?;
            }
            let location = Location {
                pack: w.id,
                offset: w.len,
                len,
            };
            if let Err(e) = (&*w.file).write_all(page) {
                // The pack's length is unknown now.
                w.failed = true;
                return Err(io_err("append", e));
            }
            w.len = w.len.saturating_add(u64::from(len));
            location
        };
        self.sync_through(location)?;
        Ok(location)
    }

    /// Returns once the bytes of `at` are durable: either a sync that began after they were
    /// written has finished, or this call runs one (for every byte written so far).
    fn sync_through(&self, at: Location) -> Result<(), BackendError> {
        let end = at.end().unwrap_or(u64::MAX);
        let mut synced = self.synced.lock().map_err(|_| poisoned())?;
        if *synced >= (at.pack, end) {
            return Ok(());
        }
        let (id, len, file) = {
            let w = self.writer.lock().map_err(|_| poisoned())?;
            if w.failed {
                return Err(stopped());
            }
            (w.id, w.len, Arc::clone(&w.file))
        };
        if let Err(e) = file.sync_data() {
            if let Ok(mut w) = self.writer.lock() {
                w.failed = true;
            }
            return Err(io_err("sync pack", e));
        }
        *synced = (id, len);
        Ok(())
    }

    /// The guard a reader holds from looking up a location until it has read the bytes.
    pub fn reading(&self) -> Result<RwLockReadGuard<'_, ()>, BackendError> {
        self.reclaim.read().map_err(|_| poisoned())
    }

    fn file(&self, id: u32) -> Result<Arc<File>, BackendError> {
        if let Some(f) = self.readers.read().map_err(|_| poisoned())?.get(&id) {
            return Ok(Arc::clone(f));
        }
        let mut readers = self.readers.write().map_err(|_| poisoned())?;
        if let Some(f) = readers.get(&id) {
            return Ok(Arc::clone(f));
        }
        // Writable: `fallocate(PUNCH_HOLE)` in `punch_all` needs a handle open for writing
        // (a read-only one fails with EBADF, and no space would ever come back).
        let f = Arc::new(
            OpenOptions::new()
                .read(true)
                .write(true)
                .open(Self::path(&self.dir, id))
                .map_err(|e| io_err("open", e))?,
        );
        readers.insert(id, Arc::clone(&f));
        Ok(f)
    }

    /// Reads the page at `at`. The caller holds [`Packs::reading`] since it looked `at` up.
    /// A location that points past its pack is an error (the start-up check refuses such a
    /// store; at run time it means damage).
    pub fn read(&self, at: Location) -> Result<Vec<u8>, BackendError> {
        let file = self.file(at.pack)?;
        let mut buf = vec![0u8; at.len as usize];
        file.read_exact_at(&mut buf, at.offset).map_err(|e| {
            if e.kind() == ErrorKind::UnexpectedEof {
                BackendError::new("pack files: a page's location points past its pack")
            } else {
                io_err("read", e)
            }
        })?;
        Ok(buf)
    }

    /// Returns the space of pages no location points at any more. Call it after the index
    /// change that dropped them is durable. Failures are logged, not returned: the index is
    /// already right, and what is lost is space.
    ///
    /// While a [`PunchHold`] lives the pages are only noted, and punched when the last hold
    /// ends.
    pub fn free(&self, pages: &[Location]) {
        if pages.is_empty() {
            return;
        }
        {
            let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
            if held.0 > 0 {
                held.1.extend_from_slice(pages);
                return;
            }
        }
        self.punch_all(pages);
    }

    /// Defers every [`Packs::free`] until the returned hold (and every other) is dropped: a
    /// backup takes it while no index change can commit, so that the locations it has
    /// copied keep their bytes until it has read them.
    pub fn hold_punches(&self) -> PunchHold<'_> {
        self.held.lock().unwrap_or_else(PoisonError::into_inner).0 += 1;
        PunchHold(self)
    }

    fn punch_all(&self, pages: &[Location]) {
        if pages.is_empty() {
            return;
        }
        let Ok(_exclusive) = self.reclaim.write() else {
            tracing::error!(target: "vault_server", "pack files: lock poisoned; space not returned");
            return;
        };
        for at in pages {
            if at.len == 0 {
                continue;
            }
            let result = self
                .file(at.pack)
                .and_then(|f| punch(&f, at.offset, u64::from(at.len)));
            if let Err(e) = result {
                tracing::warn!(target: "vault_server", pack = at.pack, "{e}; space not returned");
            }
        }
    }
}

#[cfg(target_os = "linux")]
fn punch(file: &File, offset: u64, len: u64) -> Result<(), BackendError> {
    use rustix::fs::{fallocate, FallocateFlags};
    fallocate(
        file,
        FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE,
        offset,
        len,
    )
    .map_err(|e| BackendError::new(format!("pack files: punch hole: {e}")))
}

#[cfg(not(target_os = "linux"))]
fn punch(_: &File, _: u64, _: u64) -> Result<(), BackendError> {
    Err(BackendError::new(
        "pack files: returning space is implemented on Linux only",
    ))
}

#[cfg(test)]
#[allow(clippy::expect_used)]
mod tests {
    use super::*;

    fn tmp() -> tempfile::TempDir {
        tempfile::tempdir().expect("temporary directory")
    }

    #[test]
    fn locations_round_trip_and_refuse_other_lengths() {
        let at = Location {
            pack: 7,
            offset: 1 << 40,
            len: 65_536,
        };
        assert_eq!(Location::decode(&at.encode()), Some(at));
        assert_eq!(Location::decode(&at.encode()[..15]), None);
        assert_eq!(Location::decode(&[0u8; 17]), None);
    }

    #[test]
    fn pages_read_back_and_a_reopen_starts_a_new_pack() {
        let dir = tmp();
        let (packs, found) = Packs::open(dir.path().join("packs")).expect("open");
        assert!(found.is_empty());
        let a = packs.append(b"first page").expect("append");
        let b = packs.append(&[7u8; 70_000]).expect("append");
        assert_eq!((a.pack, a.offset, b.offset), (0, 0, 10));
        assert_eq!(packs.read(b).expect("read"), vec![7u8; 70_000]);
        drop(packs);
        let (packs, found) = Packs::open(dir.path().join("packs")).expect("reopen");
        assert_eq!(found.get(&0), Some(&70_010));
        let c = packs.append(b"after reopen").expect("append");
        assert_eq!(c.pack, 1);
        assert_eq!(packs.read(a).expect("read"), b"first page");
        let past = Location {
            pack: 0,
            offset: 70_000,
            len: 11,
        };
        assert!(packs.read(past).is_err());
    }

    #[test]
    fn concurrent_appends_read_back_and_the_sync_mark_covers_them() {
        let dir = tmp();
        let (packs, _) = Packs::open(dir.path().join("packs")).expect("open");
        let written: Vec<(u8, Location)> = std::thread::scope(|s| {
            let handles: Vec<_> = (1..=8u8)
                .map(|t| {
                    let packs = &packs;
                    s.spawn(move || {
                        (0..16)
                            .map(|_| (t, packs.append(&[t; 5000]).expect("append")))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().expect("thread"))
                .collect()
        });
        let mut ends: Vec<u64> = written.iter().map(|(_, at)| at.offset).collect();
        ends.sort_unstable();
        ends.dedup();
        assert_eq!(ends.len(), 128, "no two pages share an offset");
        for (t, at) in &written {
            assert_eq!(packs.read(*at).expect("read"), vec![*t; 5000]);
        }
        let synced = *packs.synced.lock().expect("lock");
        assert_eq!(synced, (0, 128 * 5000));
    }

    #[test]
    fn a_punch_hold_defers_freeing_until_the_last_hold_ends() {
        let dir = tmp();
        let (packs, _) = Packs::open(dir.path().join("packs")).expect("open");
        let page = packs.append(&[9u8; 65_536]).expect("append");
        let first = packs.hold_punches();
        let second = packs.hold_punches();
        packs.free(&[page]);
        drop(first);
        assert_eq!(packs.read(page).expect("read"), vec![9u8; 65_536]);
        assert_eq!(packs.held.lock().expect("lock").1, vec![page]);
        drop(second);
        assert!(packs.held.lock().expect("lock").1.is_empty());
        // Without a hold, freeing does not wait.
        packs.free(&[page]);
        assert!(packs.held.lock().expect("lock").1.is_empty());
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn freed_pages_read_as_zeros_and_release_blocks() {
        use std::os::unix::fs::MetadataExt as _;
        let dir = tmp();
        let (packs, _) = Packs::open(dir.path().join("packs")).expect("open");
        let pages: Vec<Location> = (0..64u8)
            .map(|i| packs.append(&[i | 1; 65_536]).expect("append"))
            .collect();
        let path = Packs::path(&dir.path().join("packs"), 0);
        let before = std::fs::metadata(&path).expect("stat").blocks();
        packs.free(&pages[..63]);
        let after = std::fs::metadata(&path).expect("stat").blocks();
        // Some file systems (tmpfs before Linux 3.5, others) cannot punch holes; then only
        // the bytes are checked.
        if after < before {
            assert!(after * 512 <= 2 * 65_536, "{before} -> {after} blocks");
            assert_eq!(packs.read(pages[0]).expect("read"), vec![0u8; 65_536]);
        }
        assert_eq!(packs.read(pages[63]).expect("read"), vec![63u8 | 1; 65_536]);
    }
}
