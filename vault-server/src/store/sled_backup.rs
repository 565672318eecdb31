//! The sled side of backups (docs/spec/backup.md §3, §5): the write gate that gives a backup
//! its consistent cut, the cut itself, and the writing of a restored data directory. The
//! file format is `crate::backup`'s.

use std::cell::RefCell;
use std::fs::{File, OpenOptions};
use std::io::{BufReader, BufWriter, Write as _};
use std::path::{Path, PathBuf};
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::packs::{Location, Packs, PACK_LIMIT};
use super::sled_backend::{err, SledBackend};
use super::BackendError;

/// The tree whose values are [`Location`]s in the pack files. A backup carries its pages as
/// page records (their bytes) instead; a restore rebuilds it with new locations.
pub(crate) const PAGES_TREE: &[u8] = b"pages";

thread_local! {
    /// The gates (by address) this thread holds shared, so that a write method calling
    /// another one does not take the lock twice: a second shared lock behind a waiting
    /// backup would deadlock.
    static HELD: RefCell<Vec<usize>> = const { RefCell::new(Vec::new()) };
}

/// Every method of [`SledBackend`] that writes a tree holds this shared
/// ([`SledBackend::write_gate`]) until it has flushed; a backup's cut holds it exclusively
/// while it copies the trees, so it sees every write either whole or not at all, across all
/// trees. Nested holds on one thread are free.
pub(super) struct WriteGate {
    lock: RwLock<()>,
}

/// A shared hold of a [`WriteGate`] (nothing if the thread already held it).
pub(super) struct WriteGuard<'a> {
    guard: Option<RwLockReadGuard<'a, ()>>,
    id: usize,
}

impl WriteGate {
    pub(super) fn new() -> Self {
        Self {
            lock: RwLock::new(()),
        }
    }

    fn id(&self) -> usize {
        std::ptr::from_ref(self) as usize
    }

    /// A shared hold, for a write. The lock guards no data, so a poisoned one is still good.
    pub(super) fn enter(&self) -> WriteGuard<'_> {
        let id = self.id();
        if HELD.with(|h| h.borrow().contains(&id)) {
            return WriteGuard { guard: None, id };
        }
        let guard = self.lock.read().unwrap_or_else(PoisonError::into_inner);
        HELD.with(|h| h.borrow_mut().push(id));
        WriteGuard {
            guard: Some(guard),
            id,
        }
    }

    /// The exclusive hold of a backup's cut: waits for the writes in progress, holds off
    /// new ones. Never call it from a write method.
    fn close(&self) -> RwLockWriteGuard<'_, ()> {
        self.lock.write().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for WriteGuard<'_> {
    fn drop(&mut self) {
        if self.guard.take().is_some() {
            HELD.with(|h| h.borrow_mut().retain(|&held| held != self.id));
        }
    }
}

/// What a backup's cut produces, in this order: every tree but [`PAGES_TREE`] (by name in
/// byte order, each followed by its entries in key order), then every page (in key order,
/// with its bytes). `crate::backup` writes it to a file.
pub(crate) trait SnapshotSink {
    /// A tree begins.
    fn tree(&mut self, name: &[u8]) -> std::io::Result<()>;
    /// An entry of the current tree.
    fn entry(&mut self, key: &[u8], value: &[u8]) -> std::io::Result<()>;
    /// A page: its key in [`PAGES_TREE`] and its bytes.
    fn page(&mut self, key: &[u8], bytes: &[u8]) -> std::io::Result<()>;
}

fn io(what: &str, e: std::io::Error) -> BackendError {
    BackendError::new(format!("backup: {what}: {e}"))
}

fn spill_record(out: &mut impl std::io::Write, key: &[u8], at: &Location) -> std::io::Result<()> {
    let len = u32::try_from(key.len()).map_err(|_| std::io::ErrorKind::InvalidData)?;
    out.write_all(&len.to_be_bytes())?;
    out.write_all(key)?;
    out.write_all(&at.encode())
}

fn read_spill(input: &mut impl std::io::Read) -> std::io::Result<Option<(Vec<u8>, Location)>> {
    let mut len = [0u8; 4];
    match input.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let mut key = vec![0u8; u32::from_be_bytes(len) as usize];
    input.read_exact(&mut key)?;
    let mut at = [0u8; Location::ENCODED_LEN];
    input.read_exact(&mut at)?;
    let at = Location::decode(&at).ok_or(std::io::ErrorKind::InvalidData)?;
    Ok(Some((key, at)))
}

impl SledBackend {
    /// Takes a consistent snapshot of the whole store into `sink` while the store serves
    /// (docs/spec/backup.md §3). `spill`: a file to create for the page index (removed
    /// after).
    ///
    /// 1. Under the exclusive [`WriteGate`], every tree of the database (whatever its name:
    ///    `Db::tree_names`) goes to `sink`, except [`PAGES_TREE`], whose entries (key and
    ///    location) go to `spill`. Before the gate is released, punching holes is held off
    ///    ([`Packs::hold_punches`]).
    /// 2. With writes flowing again, every page of the spill is read from its pack and
    ///    given to `sink`. No location of the cut can have been punched: a page is punched
    ///    only after the commit that dropped it, and every such commit comes after the cut.
    ///    Then the deferred punches run.
    pub(crate) fn snapshot(
        &self,
        sink: &mut dyn SnapshotSink,
        spill: &Path,
    ) -> Result<(), BackendError> {
        let result = self.snapshot_with(sink, spill);
        let _ = std::fs::remove_file(spill);
        result
    }

    fn snapshot_with(&self, sink: &mut dyn SnapshotSink, spill: &Path) -> Result<(), BackendError> {
        let mut index = BufWriter::new(
            OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(spill)
                .map_err(|e| io("create the page index", e))?,
        );
        let hold = {
            let _cut = self.gate().close();
            let mut names = self.db.tree_names();
            names.sort();
            for name in names {
                let tree = self.db.open_tree(&name).map_err(err)?;
                if name == PAGES_TREE {
                    for item in tree.iter() {
                        let (k, v) = item.map_err(err)?;
                        let at = Location::decode(&v)
                            .ok_or_else(|| BackendError::new("sled: corrupt page location"))?;
                        spill_record(&mut index, &k, &at).map_err(|e| io("page index", e))?;
                    }
                    continue;
                }
                sink.tree(&name).map_err(|e| io("write", e))?;
                for item in tree.iter() {
                    let (k, v) = item.map_err(err)?;
                    sink.entry(&k, &v).map_err(|e| io("write", e))?;
                }
            }
            self.data.packs.hold_punches()
        };
        index.flush().map_err(|e| io("page index", e))?;
        drop(index);
        let mut index = BufReader::new(File::open(spill).map_err(|e| io("page index", e))?);
        while let Some((key, at)) = read_spill(&mut index).map_err(|e| io("page index", e))? {
            let bytes = self.data.packs.read(at)?;
            sink.page(&key, &bytes).map_err(|e| io("write", e))?;
        }
        drop(hold);
        Ok(())
    }
}

/// Writes a restored data directory: the trees into a new sled database, the pages into new
/// pack files (only live pages, so the restored packs are compact), [`PAGES_TREE`] with
/// their new locations.
pub(crate) struct SledRestore {
    dir: PathBuf,
    db: sled::Db,
    tree: Option<sled::Tree>,
    batch: sled::Batch,
    batched: usize,
    pages: sled::Tree,
    pack: Option<PackOut>,
}

struct PackOut {
    id: u32,
    file: BufWriter<File>,
    len: u64,
}

/// Entries per sled batch.
const BATCH: usize = 10_000;

impl SledRestore {
    /// Starts a data directory in `dir`, which must be empty.
    pub(crate) fn create(dir: &Path) -> Result<Self, BackendError> {
        std::fs::create_dir_all(dir.join("packs")).map_err(|e| io("create directory", e))?;
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(64 * 1024 * 1024)
            .create_new(true)
            .open()
            .map_err(err)?;
        let pages = db.open_tree(PAGES_TREE).map_err(err)?;
        Ok(Self {
            dir: dir.to_path_buf(),
            db,
            tree: None,
            batch: sled::Batch::default(),
            batched: 0,
            pages,
            pack: None,
        })
    }

    fn apply(&mut self) -> Result<(), BackendError> {
        let batch = std::mem::take(&mut self.batch);
        self.batched = 0;
        match &self.tree {
            Some(tree) => tree.apply_batch(batch).map_err(err),
            None => Ok(()),
        }
    }

    /// A tree begins (never [`PAGES_TREE`]: the caller refuses it).
    pub(crate) fn tree(&mut self, name: &[u8]) -> Result<(), BackendError> {
        self.apply()?;
        self.tree = Some(self.db.open_tree(name).map_err(err)?);
        Ok(())
    }

    /// An entry of the current tree.
    pub(crate) fn entry(&mut self, key: &[u8], value: &[u8]) -> Result<(), BackendError> {
        self.batch.insert(key, value);
        self.batched += 1;
        if self.batched >= BATCH {
            self.apply()?;
        }
        Ok(())
    }

    fn close_pack(&mut self) -> Result<(), BackendError> {
        if let Some(mut pack) = self.pack.take() {
            pack.file.flush().map_err(|e| io("write pack", e))?;
            pack.file
                .get_ref()
                .sync_all()
                .map_err(|e| io("sync pack", e))?;
        }
        Ok(())
    }

    /// A page: its bytes go to the current pack (a new one past [`PACK_LIMIT`]), its new
    /// location to [`PAGES_TREE`].
    pub(crate) fn page(&mut self, key: &[u8], bytes: &[u8]) -> Result<(), BackendError> {
        self.apply()?;
        self.tree = None;
        let len = u32::try_from(bytes.len())
            .map_err(|_| BackendError::new("backup: page larger than 4 GiB"))?;
        if self.pack.as_ref().is_some_and(|p| p.len >= PACK_LIMIT) {
            let next = self.pack.as_ref().map_or(0, |p| p.id.saturating_add(1));
            self.close_pack()?;
            self.pack = Some(self.new_pack(next)?);
        }
        if self.pack.is_none() {
            self.pack = Some(self.new_pack(0)?);
        }
        let Some(pack) = self.pack.as_mut() else {
            return Err(BackendError::new("backup: no pack"));
        };
        let at = Location {
            pack: pack.id,
            offset: pack.len,
            len,
        };
        pack.file
            .write_all(bytes)
            .map_err(|e| io("write pack", e))?;
        pack.len = pack.len.saturating_add(u64::from(len));
        self.pages.insert(key, &at.encode()[..]).map_err(err)?;
        Ok(())
    }

    fn new_pack(&self, id: u32) -> Result<PackOut, BackendError> {
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(Packs::path(&self.dir.join("packs"), id))
            .map_err(|e| io("create pack", e))?;
        Ok(PackOut {
            id,
            file: BufWriter::with_capacity(1 << 20, file),
            len: 0,
        })
    }

    /// Makes everything durable, closes the database and opens the directory as a server
    /// would ([`SledBackend::open`], which runs the start-up check).
    pub(crate) fn finish(mut self) -> Result<(), BackendError> {
        self.apply()?;
        self.close_pack()?;
        self.db.flush().map_err(err)?;
        for dir in [self.dir.join("packs"), self.dir.clone()] {
            File::open(&dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| io("sync directory", e))?;
        }
        let dir = self.dir.clone();
        drop(self);
        drop(SledBackend::open(&dir)?);
        Ok(())
    }
}

/// Whether a server (or another process) holds the sled database in `dir` open: sled locks
/// the file `db` exclusively while it is open.
pub(crate) fn in_use(dir: &Path) -> bool {
    #[cfg(target_os = "linux")]
    {
        use rustix::fs::{flock, FlockOperation};
        let Ok(file) = OpenOptions::new().read(true).open(dir.join("db")) else {
            return false;
        };
        flock(&file, FlockOperation::NonBlockingLockExclusive).is_err()
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = dir;
        false
    }
}

#[cfg(test)]
#[allow(clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn spill_records_round_trip() {
        let mut buf = Vec::new();
        let at = Location {
            pack: 3,
            offset: 99,
            len: 7,
        };
        spill_record(&mut buf, &[1u8; 44], &at).expect("write");
        spill_record(&mut buf, b"k", &at).expect("write");
        let mut input = &buf[..];
        assert_eq!(
            read_spill(&mut input).expect("read"),
            Some((vec![1u8; 44], at))
        );
        assert_eq!(
            read_spill(&mut input).expect("read"),
            Some((b"k".to_vec(), at))
        );
        assert_eq!(read_spill(&mut input).expect("read"), None);
        let mut short = &buf[..10];
        assert!(read_spill(&mut short).is_err());
    }

    /// Collects a snapshot; at its first page, deletes every page of the store (which
    /// would punch their bytes at once without the hold).
    struct Deleting<'a> {
        store: &'a SledBackend,
        trees: Vec<Vec<u8>>,
        pages: Vec<(Vec<u8>, Vec<u8>)>,
    }

    impl SnapshotSink for Deleting<'_> {
        fn tree(&mut self, name: &[u8]) -> std::io::Result<()> {
            self.trees.push(name.to_vec());
            Ok(())
        }
        fn entry(&mut self, _: &[u8], _: &[u8]) -> std::io::Result<()> {
            Ok(())
        }
        fn page(&mut self, key: &[u8], bytes: &[u8]) -> std::io::Result<()> {
            use crate::store::{DataStore as _, ObjectKey};
            if self.pages.is_empty() {
                // Writes go on during the copy: the gate is open again.
                let object = ObjectKey {
                    collection: [1; 16],
                    object: [2; 16],
                    version: 1,
                };
                assert!(self.store.delete_object(&object).expect("delete"));
            }
            self.pages.push((key.to_vec(), bytes.to_vec()));
            Ok(())
        }
    }

    #[test]
    fn pages_deleted_during_the_copy_are_copied_whole() {
        use crate::store::{AccountStore as _, DataStore as _, NewAccount, PageKey, ScopeKind};
        let dir = tempfile::tempdir().expect("temporary directory");
        let store = SledBackend::open(dir.path().join("data")).expect("open");
        let user = [3; 16];
        store
            .create_account(&NewAccount {
                user,
                name: "u",
                verifier: b"v",
                keyring: b"k",
                identity: b"i",
            })
            .expect("account");
        store
            .create_scope(&[1; 16], ScopeKind::Collection, &user)
            .expect("scope");
        let pages: Vec<Vec<u8>> = (1..=8u8).map(|i| vec![i; 65_536]).collect();
        for (index, page) in (0u32..).zip(&pages) {
            let key = PageKey {
                collection: [1; 16],
                object: [2; 16],
                version: 1,
                index,
            };
            store.put_page(&key, page, u64::MAX).expect("put");
        }
        let mut sink = Deleting {
            store: &store,
            trees: Vec::new(),
            pages: Vec::new(),
        };
        store
            .snapshot(&mut sink, &dir.path().join("spill"))
            .expect("snapshot");
        assert!(!dir.path().join("spill").exists());
        assert!(sink.trees.iter().any(|t| t == b"accounts"));
        assert!(!sink.trees.iter().any(|t| t == PAGES_TREE));
        let copied: Vec<Vec<u8>> = sink.pages.into_iter().map(|(_, p)| p).collect();
        assert_eq!(copied, pages, "a page was punched before it was copied");
        // The deferred punches ran when the copy ended.
        assert!(store.data.packs.held.lock().expect("lock").1.is_empty());
    }

    #[test]
    fn nested_holds_of_the_gate_do_not_wait_for_a_backup() {
        let gate = WriteGate::new();
        let outer = gate.enter();
        std::thread::scope(|s| {
            // A backup waiting for the gate: a second shared lock would now wait behind it.
            let waiting = s.spawn(|| drop(gate.close()));
            std::thread::sleep(std::time::Duration::from_millis(50));
            let inner = gate.enter();
            assert!(inner.guard.is_none());
            drop(inner);
            drop(outer);
            waiting.join().expect("the backup got the gate");
        });
        let again = gate.enter();
        assert!(again.guard.is_some());
    }
}
