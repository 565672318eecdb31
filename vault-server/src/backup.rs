//! Backups of the sled store (issue #6, R17; docs/spec/backup.md): a consistent snapshot
//! taken while the server serves, written atomically to one file with a SHA-256 over its
//! contents; a restore that refuses a damaged backup and never leaves a half-restored
//! directory; listing and pruning by age; a scheduler for the running server.
//!
//! PostgreSQL deployments use the database's own tools (docs/spec/backup.md §6).
//!
//! ```no_run
//! use std::time::Duration;
//! use vault_server::backup;
//! use vault_server::store::SledBackend;
//!
//! let store = SledBackend::open("vault-data")?;
//! let info = store.backup_to("backups")?;
//! backup::verify(&info.path)?;
//! drop(store);
//! backup::restore(&info.path, "restored-data".as_ref(), false)?;
//! let week = Duration::from_secs(7 * 24 * 3600);
//! backup::prune("backups".as_ref(), week, std::time::SystemTime::now())?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fs::{File, OpenOptions};
use std::io::{BufReader, BufWriter, ErrorKind, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

use crate::audit::{self, Details, Event, EventKind};
use crate::store::sled_backup::{in_use, SledRestore, SnapshotSink, PAGES_TREE};

/// The sled tree of sessions (storage.md), left out by `restore --drop-sessions`.
const SESSIONS_TREE: &[u8] = b"sessions";
use crate::store::{BackendError, SledBackend};

/// The first 8 bytes of every backup file.
pub const MAGIC: &[u8; 8] = b"VAULTBAK";
/// The format version this server writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// The store kind of a sled backup.
const STORE_SLED: u8 = 1;
/// The longest tree name a backup may carry.
const MAX_NAME: u32 = 4096;

const TAG_TREE: u8 = b'T';
const TAG_ENTRY: u8 = b'E';
const TAG_PAGE: u8 = b'P';
const TAG_END: u8 = b'Z';

/// Default interval of the scheduler (`--backup-every-hours`).
pub const DEFAULT_EVERY: Duration = Duration::from_secs(4 * 3600);
/// Default retention of the scheduler (`--backup-keep-days`).
pub const DEFAULT_KEEP: Duration = Duration::from_secs(7 * 24 * 3600);

/// Why a backup, restore, verification or prune failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackupError {
    /// Reading or writing a file failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done, with the path.
        what: String,
        /// The error of the operating system.
        #[source]
        source: std::io::Error,
    },
    /// The store failed (reading the live store, or writing or checking the restored one).
    #[error(transparent)]
    Store(#[from] BackendError),
    /// The file is not a complete, intact backup (truncated, damaged, or not a backup):
    /// refused, nothing restored.
    #[error("the backup is damaged, truncated or not a backup ({0}); nothing was restored")]
    Corrupt(String),
    /// The backup was written in a format version this server does not read.
    #[error("backup format version {0} is not supported (this server reads version 1)")]
    UnsupportedVersion(u32),
    /// The restore target holds something already and `force` was not given.
    #[error("{} is not empty: refusing to restore over it (use --force to move it aside)", .0.display())]
    TargetNotEmpty(PathBuf),
    /// The restore target is a data directory that a running server has open.
    #[error("{} is in use by a running server: stop it before restoring", .0.display())]
    InUse(PathBuf),
    /// A backup of the same second exists in the output directory.
    #[error("{} exists already", .0.display())]
    Exists(PathBuf),
}

fn io(what: impl std::fmt::Display, path: &Path) -> impl FnOnce(std::io::Error) -> BackupError {
    let what = format!("{what} {}", path.display());
    move |source| BackupError::Io { what, source }
}

/// What a backup holds: its header and trailer (docs/spec/backup.md §2).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct BackupInfo {
    /// The backup file.
    pub path: PathBuf,
    /// When the backup began (seconds since the Unix epoch, UTC).
    pub created: u64,
    /// How many sled trees it holds (the page index not counted).
    pub trees: u64,
    /// How many tree entries.
    pub entries: u64,
    /// How many pages.
    pub pages: u64,
    /// The bytes of all pages.
    pub page_bytes: u64,
    /// The SHA-256 of the file's contents (its trailer).
    pub sha256: [u8; 32],
}

impl BackupInfo {
    /// The SHA-256 in lower-case hex.
    pub fn sha256_hex(&self) -> String {
        data_encoding::HEXLOWER.encode(&self.sha256)
    }
}

// ---------------------------------------------------------------------------------------
// Time and names

fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// (year, month, day) of a day count since 1970-01-01 (H. Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (
        if m <= 2 {
            yoe + era * 400 + 1
        } else {
            yoe + era * 400
        },
        m,
        d,
    )
}

/// The day count of a date (H. Hinnant's `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `YYYYMMDDTHHMMSSZ` (ISO 8601 basic format, UTC).
fn stamp(secs: u64) -> String {
    let days = i64::try_from(secs / 86_400).unwrap_or(i64::MAX / 2);
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// The inverse of [`stamp`]; `None` for anything else (also for a date that does not exist).
fn parse_stamp(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = s.get(r)?;
        part.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    let (y, m, d) = (num(0..4)?, num(4..6)?, num(6..8)?);
    let (hh, mm, ss) = (num(9..11)?, num(11..13)?, num(13..15)?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || hh > 23 || mm > 59 || ss > 59 {
        return None;
    }
    let days = days_from_civil(y, m, d);
    let secs = u64::try_from(days * 86_400 + hh * 3600 + mm * 60 + ss).ok()?;
    (stamp(secs) == s).then_some(secs)
}

const PREFIX: &str = "vault-backup-";
const SUFFIX: &str = ".vbk";

/// The file name of a backup begun at `secs`: `vault-backup-YYYYMMDDTHHMMSSZ.vbk`.
pub fn file_name(secs: u64) -> String {
    format!("{PREFIX}{}{SUFFIX}", stamp(secs))
}

/// The time in a backup's file name, if it is one.
fn name_time(name: &str) -> Option<u64> {
    parse_stamp(name.strip_prefix(PREFIX)?.strip_suffix(SUFFIX)?)
}

/// The time of a leftover of an interrupted backup (`.NAME.partial`, `.NAME.pages`).
fn leftover_time(name: &str) -> Option<u64> {
    let inner = name.strip_prefix('.')?;
    let inner = inner
        .strip_suffix(".partial")
        .or_else(|| inner.strip_suffix(".pages"))?;
    name_time(inner)
}

// ---------------------------------------------------------------------------------------
// Writing

/// Writes the records of docs/spec/backup.md §2, hashing every byte.
struct FileSink {
    out: BufWriter<File>,
    hash: Sha256,
    trees: u64,
    entries: u64,
    pages: u64,
    page_bytes: u64,
}

fn len32(n: usize) -> std::io::Result<[u8; 4]> {
    u32::try_from(n)
        .map(u32::to_be_bytes)
        .map_err(|_| std::io::Error::new(ErrorKind::InvalidData, "record longer than 4 GiB"))
}

impl FileSink {
    fn put(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.hash.update(bytes);
        self.out.write_all(bytes)
    }

    fn blob(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.put(&len32(bytes.len())?)?;
        self.put(bytes)
    }

    /// The trailer; returns the hash.
    fn end(&mut self) -> std::io::Result<[u8; 32]> {
        self.put(&[TAG_END])?;
        for n in [self.trees, self.entries, self.pages, self.page_bytes] {
            self.put(&n.to_be_bytes())?;
        }
        let digest: [u8; 32] = self.hash.clone().finalize().into();
        self.out.write_all(&digest)?;
        Ok(digest)
    }
}

impl SnapshotSink for FileSink {
    fn tree(&mut self, name: &[u8]) -> std::io::Result<()> {
        self.trees += 1;
        self.put(&[TAG_TREE])?;
        self.blob(name)
    }

    fn entry(&mut self, key: &[u8], value: &[u8]) -> std::io::Result<()> {
        self.entries += 1;
        self.put(&[TAG_ENTRY])?;
        self.blob(key)?;
        self.blob(value)
    }

    fn page(&mut self, key: &[u8], bytes: &[u8]) -> std::io::Result<()> {
        self.pages += 1;
        self.page_bytes = self.page_bytes.saturating_add(bytes.len() as u64);
        self.put(&[TAG_PAGE])?;
        self.blob(key)?;
        self.blob(bytes)
    }
}

/// Creates a file only its owner may read (a backup holds login verifiers).
fn create_private(path: &Path) -> std::io::Result<File> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}

fn sync_dir(dir: &Path) -> Result<(), BackupError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("sync directory", dir))
}

impl SledBackend {
    /// Writes a backup of this store, open and serving, into the directory `dir` (created
    /// if missing) as `vault-backup-<UTC time>.vbk` (docs/spec/backup.md). Writes go on
    /// during the backup except while the trees are copied (§3).
    pub fn backup_to(&self, dir: impl AsRef<Path>) -> Result<BackupInfo, BackupError> {
        self.backup_at(dir.as_ref(), SystemTime::now())
    }

    /// [`SledBackend::backup_to`] with the time that names the backup given. Appends
    /// `backup_created` (with the file's SHA-256 and size) or `backup_failed` to the audit
    /// log of this store (audit.md §4).
    pub fn backup_at(&self, dir: &Path, now: SystemTime) -> Result<BackupInfo, BackupError> {
        let result = self.backup_unaudited(dir, now);
        let event = match &result {
            Ok(info) => Event::new(EventKind::BackupCreated).with_details(Details {
                digest: Some(info.sha256),
                count: std::fs::metadata(&info.path).ok().map(|m| m.len()),
                ..Details::default()
            }),
            Err(_) => Event::new(EventKind::BackupFailed),
        };
        audit::record(self, unix_secs(SystemTime::now()), &event);
        result
    }

    fn backup_unaudited(&self, dir: &Path, now: SystemTime) -> Result<BackupInfo, BackupError> {
        std::fs::create_dir_all(dir).map_err(io("create", dir))?;
        let created = unix_secs(now);
        let name = file_name(created);
        let path = dir.join(&name);
        if path.exists() {
            return Err(BackupError::Exists(path));
        }
        let partial = dir.join(format!(".{name}.partial"));
        let spill = dir.join(format!(".{name}.pages"));
        let result = self.write_backup(&partial, &spill, created);
        let (digest, sink) = match result {
            Ok(done) => done,
            Err(e) => {
                let _ = std::fs::remove_file(&partial);
                return Err(e);
            }
        };
        // Only a complete, synced file gets the name `list` and `restore` look for.
        if path.exists() {
            let _ = std::fs::remove_file(&partial);
            return Err(BackupError::Exists(path));
        }
        std::fs::rename(&partial, &path).map_err(io("rename", &partial))?;
        sync_dir(dir)?;
        Ok(BackupInfo {
            path,
            created,
            trees: sink.0,
            entries: sink.1,
            pages: sink.2,
            page_bytes: sink.3,
            sha256: digest,
        })
    }

    #[allow(clippy::type_complexity)]
    fn write_backup(
        &self,
        partial: &Path,
        spill: &Path,
        created: u64,
    ) -> Result<([u8; 32], (u64, u64, u64, u64)), BackupError> {
        let file = create_private(partial).map_err(io("create", partial))?;
        let mut sink = FileSink {
            out: BufWriter::with_capacity(1 << 20, file),
            hash: Sha256::new(),
            trees: 0,
            entries: 0,
            pages: 0,
            page_bytes: 0,
        };
        let mut header = Vec::with_capacity(21);
        header.extend_from_slice(MAGIC);
        header.extend_from_slice(&FORMAT_VERSION.to_be_bytes());
        header.extend_from_slice(&created.to_be_bytes());
        header.push(STORE_SLED);
        sink.put(&header).map_err(io("write", partial))?;
        self.snapshot(&mut sink, spill)?;
        let digest = sink.end().map_err(io("write", partial))?;
        let file = sink
            .out
            .into_inner()
            .map_err(|e| e.into_error())
            .map_err(io("write", partial))?;
        file.sync_all().map_err(io("sync", partial))?;
        Ok((
            digest,
            (sink.trees, sink.entries, sink.pages, sink.page_bytes),
        ))
    }
}

// ---------------------------------------------------------------------------------------
// Reading

/// Receives what a backup file holds, in order (after its checks of order and shape).
trait Visitor {
    fn tree(&mut self, name: &[u8]) -> Result<(), BackupError>;
    fn entry(&mut self, key: &[u8], value: &[u8]) -> Result<(), BackupError>;
    fn page(&mut self, key: &[u8], bytes: &[u8]) -> Result<(), BackupError>;
}

/// Verification only.
struct Nothing;

impl Visitor for Nothing {
    fn tree(&mut self, _: &[u8]) -> Result<(), BackupError> {
        Ok(())
    }
    fn entry(&mut self, _: &[u8], _: &[u8]) -> Result<(), BackupError> {
        Ok(())
    }
    fn page(&mut self, _: &[u8], _: &[u8]) -> Result<(), BackupError> {
        Ok(())
    }
}

impl Visitor for SledRestore {
    fn tree(&mut self, name: &[u8]) -> Result<(), BackupError> {
        Ok(SledRestore::tree(self, name)?)
    }
    fn entry(&mut self, key: &[u8], value: &[u8]) -> Result<(), BackupError> {
        Ok(SledRestore::entry(self, key, value)?)
    }
    fn page(&mut self, key: &[u8], bytes: &[u8]) -> Result<(), BackupError> {
        Ok(SledRestore::page(self, key, bytes)?)
    }
}

/// A restore that leaves the entries of one tree out (`restore --drop-sessions`: the
/// `sessions` tree).
struct Without<'a> {
    inner: &'a mut SledRestore,
    tree: &'static [u8],
    skipping: bool,
}

impl Visitor for Without<'_> {
    fn tree(&mut self, name: &[u8]) -> Result<(), BackupError> {
        self.skipping = name == self.tree;
        Visitor::tree(self.inner, name)
    }
    fn entry(&mut self, key: &[u8], value: &[u8]) -> Result<(), BackupError> {
        if self.skipping {
            return Ok(());
        }
        Visitor::entry(self.inner, key, value)
    }
    fn page(&mut self, key: &[u8], bytes: &[u8]) -> Result<(), BackupError> {
        self.skipping = false;
        Visitor::page(self.inner, key, bytes)
    }
}

/// A reader that hashes what it reads.
struct Hashed<R> {
    inner: R,
    hash: Sha256,
}

impl<R: Read> Read for Hashed<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
}

fn corrupt(what: &str) -> BackupError {
    BackupError::Corrupt(what.into())
}

fn read_err(path: &Path) -> impl Fn(std::io::Error) -> BackupError + '_ {
    move |e| {
        if e.kind() == ErrorKind::UnexpectedEof {
            corrupt("truncated")
        } else {
            BackupError::Io {
                what: format!("read {}", path.display()),
                source: e,
            }
        }
    }
}

/// Reads a backup (docs/spec/backup.md §2) into `visitor`, checking its shape, order,
/// counts and hash. The visitor sees unverified records: the caller must discard its work
/// unless this returns `Ok`.
fn read_backup(path: &Path, visitor: &mut dyn Visitor) -> Result<BackupInfo, BackupError> {
    let file = File::open(path).map_err(io("open", path))?;
    let mut r = Hashed {
        inner: BufReader::with_capacity(1 << 20, file),
        hash: Sha256::new(),
    };
    let fail = read_err(path);
    let mut header = [0u8; 21];
    r.read_exact(&mut header).map_err(&fail)?;
    if &header[..8] != MAGIC {
        return Err(corrupt("not a vault backup"));
    }
    let version = u32::from_be_bytes([header[8], header[9], header[10], header[11]]);
    if version != FORMAT_VERSION {
        return Err(BackupError::UnsupportedVersion(version));
    }
    let mut created = [0u8; 8];
    created.copy_from_slice(&header[12..20]);
    let created = u64::from_be_bytes(created);
    if header[20] != STORE_SLED {
        return Err(corrupt("unknown store kind"));
    }

    let u32_of = |r: &mut Hashed<BufReader<File>>| -> Result<u32, BackupError> {
        let mut b = [0u8; 4];
        r.read_exact(&mut b).map_err(&fail)?;
        Ok(u32::from_be_bytes(b))
    };
    let blob = |r: &mut Hashed<BufReader<File>>, len: u32| -> Result<Vec<u8>, BackupError> {
        // Grows with the bytes actually there: a damaged length cannot make it allocate
        // more than the file holds.
        let mut v = Vec::new();
        r.by_ref()
            .take(u64::from(len))
            .read_to_end(&mut v)
            .map_err(&fail)?;
        if v.len() != len as usize {
            return Err(corrupt("truncated"));
        }
        Ok(v)
    };

    let (mut trees, mut entries, mut pages, mut page_bytes) = (0u64, 0u64, 0u64, 0u64);
    let mut last_name: Option<Vec<u8>> = None;
    let mut last_key: Option<Vec<u8>> = None;
    let mut in_pages = false;
    loop {
        let mut tag = [0u8; 1];
        r.read_exact(&mut tag).map_err(&fail)?;
        match tag[0] {
            TAG_TREE => {
                if in_pages {
                    return Err(corrupt("a tree after the pages"));
                }
                let len = u32_of(&mut r)?;
                if len > MAX_NAME {
                    return Err(corrupt("tree name too long"));
                }
                let name = blob(&mut r, len)?;
                if name == PAGES_TREE {
                    return Err(corrupt("the page index as a tree"));
                }
                if last_name.as_ref().is_some_and(|last| *last >= name) {
                    return Err(corrupt("trees out of order"));
                }
                visitor.tree(&name)?;
                last_name = Some(name);
                last_key = None;
                trees += 1;
            }
            TAG_ENTRY => {
                if last_name.is_none() || in_pages {
                    return Err(corrupt("an entry outside a tree"));
                }
                let len = u32_of(&mut r)?;
                let key = blob(&mut r, len)?;
                let len = u32_of(&mut r)?;
                let value = blob(&mut r, len)?;
                if last_key.as_ref().is_some_and(|last| *last >= key) {
                    return Err(corrupt("entries out of order"));
                }
                visitor.entry(&key, &value)?;
                last_key = Some(key);
                entries += 1;
            }
            TAG_PAGE => {
                if !in_pages {
                    in_pages = true;
                    last_key = None;
                }
                let len = u32_of(&mut r)?;
                let key = blob(&mut r, len)?;
                let len = u32_of(&mut r)?;
                let bytes = blob(&mut r, len)?;
                if last_key.as_ref().is_some_and(|last| *last >= key) {
                    return Err(corrupt("pages out of order"));
                }
                visitor.page(&key, &bytes)?;
                last_key = Some(key);
                pages += 1;
                page_bytes = page_bytes.saturating_add(u64::from(len));
            }
            TAG_END => break,
            _ => return Err(corrupt("unknown record")),
        }
    }
    let mut counts = [0u8; 32];
    r.read_exact(&mut counts).map_err(&fail)?;
    let expected: [u8; 32] = r.hash.clone().finalize().into();
    let mut stored = [0u8; 32];
    r.inner.read_exact(&mut stored).map_err(&fail)?;
    if stored != expected {
        return Err(corrupt("checksum mismatch"));
    }
    let mut rest = [0u8; 1];
    match r.inner.read(&mut rest).map_err(&fail)? {
        0 => {}
        _ => return Err(corrupt("bytes after the end")),
    }
    let count = |i: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&counts[i * 8..i * 8 + 8]);
        u64::from_be_bytes(b)
    };
    if [count(0), count(1), count(2), count(3)] != [trees, entries, pages, page_bytes] {
        return Err(corrupt("counts do not match the records"));
    }
    Ok(BackupInfo {
        path: path.to_path_buf(),
        created,
        trees,
        entries,
        pages,
        page_bytes,
        sha256: stored,
    })
}

/// Reads the whole backup at `path` and checks it: format, order of records, counts and
/// the SHA-256 of its contents. Returns what it holds.
pub fn verify(path: &Path) -> Result<BackupInfo, BackupError> {
    read_backup(path, &mut Nothing)
}

/// The outcome of a [`restore`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Restored {
    /// What the backup held.
    pub backup: BackupInfo,
    /// Where the directory that was there before went (with `force`), if it held anything.
    pub moved_aside: Option<PathBuf>,
    /// What the moved-aside directory holds besides the store (e.g. the MFA key file
    /// `mfa.key`, which is not part of a backup): copy back what the server needs.
    pub left_behind: Vec<PathBuf>,
}

/// Whether a top-level name in a data directory belongs to the store (sled's files, the
/// pack files) rather than to something else kept there.
fn is_store_file(name: &str) -> bool {
    matches!(name, "conf" | "db" | "blobs" | "packs") || name.starts_with("snap.")
}

fn is_empty_dir(dir: &Path) -> Result<bool, BackupError> {
    let mut entries = std::fs::read_dir(dir).map_err(io("list", dir))?;
    Ok(entries.next().is_none())
}

/// Restores the backup `backup` into the data directory `data_dir` (docs/spec/backup.md §4).
///
/// `data_dir` must be missing or empty, unless `force`: then what is there is moved aside
/// to `<data_dir>.replaced-<UTC time>` (never deleted), after the restore has succeeded.
/// A data directory a running server has open is refused even with `force`. The backup is
/// restored into a temporary directory beside `data_dir`, checked (hash, shape, then the
/// server's start-up check), and only then renamed into place: a damaged backup, a full
/// disk or a crash leaves `data_dir` as it was.
pub fn restore(backup: &Path, data_dir: &Path, force: bool) -> Result<Restored, BackupError> {
    restore_with(
        backup,
        data_dir,
        RestoreOptions {
            force,
            drop_sessions: false,
        },
    )
}

/// How [`restore_with`] restores.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RestoreOptions {
    /// Restore over a non-empty data directory, moved aside first (see [`restore`]).
    pub force: bool,
    /// Leave every session of the backup out: each user signs in again (`restore
    /// --drop-sessions`, docs/spec/backup.md §4). Trusted devices, which are not sessions,
    /// are kept.
    pub drop_sessions: bool,
}

/// [`restore`] with options.
pub fn restore_with(
    backup: &Path,
    data_dir: &Path,
    options: RestoreOptions,
) -> Result<Restored, BackupError> {
    let force = options.force;
    let exists = data_dir.exists();
    let empty = !exists || is_empty_dir(data_dir)?;
    if !empty && !force {
        return Err(BackupError::TargetNotEmpty(data_dir.to_path_buf()));
    }
    if exists && in_use(data_dir) {
        return Err(BackupError::InUse(data_dir.to_path_buf()));
    }
    let name = data_dir
        .file_name()
        .ok_or_else(|| BackupError::Io {
            what: format!("restore into {}", data_dir.display()),
            source: std::io::Error::new(ErrorKind::InvalidInput, "not a directory name"),
        })?
        .to_string_lossy()
        .into_owned();
    let parent = match data_dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent).map_err(io("create", &parent))?;
    let now = SystemTime::now();
    let nanos = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let temp = parent.join(format!(".{name}.restoring-{}-{nanos}", std::process::id()));

    let built = (|| {
        let mut target = SledRestore::create(&temp)?;
        let info = if options.drop_sessions {
            let mut without = Without {
                inner: &mut target,
                tree: SESSIONS_TREE,
                skipping: false,
            };
            read_backup(backup, &mut without)?
        } else {
            read_backup(backup, &mut target)?
        };
        target.finish()?;
        Ok::<_, BackupError>(info)
    })();
    let info = match built {
        Ok(info) => info,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&temp);
            return Err(e);
        }
    };

    let mut moved_aside = None;
    if exists {
        if empty {
            std::fs::remove_dir(data_dir).map_err(io("remove", data_dir))?;
        } else {
            let aside = parent.join(format!("{name}.replaced-{}", stamp(unix_secs(now))));
            if aside.exists() {
                let _ = std::fs::remove_dir_all(&temp);
                return Err(BackupError::Exists(aside));
            }
            std::fs::rename(data_dir, &aside).map_err(io("move aside", data_dir))?;
            moved_aside = Some(aside);
        }
    }
    std::fs::rename(&temp, data_dir).map_err(io("rename", &temp))?;
    sync_dir(&parent)?;
    let mut left_behind = Vec::new();
    if let Some(aside) = &moved_aside {
        for entry in std::fs::read_dir(aside).map_err(io("list", aside))? {
            let entry = entry.map_err(io("list", aside))?;
            if !entry.file_name().to_str().is_some_and(is_store_file) {
                left_behind.push(entry.path());
            }
        }
        left_behind.sort();
    }
    Ok(Restored {
        backup: info,
        moved_aside,
        left_behind,
    })
}

// ---------------------------------------------------------------------------------------
// Listing, pruning, scheduling

/// A backup found by [`list`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// The file.
    pub path: PathBuf,
    /// The time in its name (seconds since the Unix epoch, UTC).
    pub created: u64,
}

/// The backups in `dir` (files named as [`file_name`] makes them), oldest first. Other
/// files, and leftovers of interrupted backups, are not listed. Nothing is read but names.
pub fn list(dir: &Path) -> Result<Vec<Listed>, BackupError> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io("list", dir))? {
        let entry = entry.map_err(io("list", dir))?;
        let name = entry.file_name();
        if let Some(created) = name.to_str().and_then(name_time) {
            out.push(Listed {
                path: entry.path(),
                created,
            });
        }
    }
    out.sort_by_key(|b| b.created);
    Ok(out)
}

/// Removes the backups in `dir` begun more than `keep` before `now`, except the newest one
/// (there is always one left), and the leftovers of interrupted backups as old. Returns what
/// it removed.
pub fn prune(dir: &Path, keep: Duration, now: SystemTime) -> Result<Vec<PathBuf>, BackupError> {
    let cutoff = unix_secs(now).saturating_sub(keep.as_secs());
    let mut removed = Vec::new();
    let mut backups = list(dir)?;
    backups.pop();
    for b in backups {
        if b.created < cutoff {
            std::fs::remove_file(&b.path).map_err(io("remove", &b.path))?;
            removed.push(b.path);
        }
    }
    for entry in std::fs::read_dir(dir).map_err(io("list", dir))? {
        let entry = entry.map_err(io("list", dir))?;
        let old = entry
            .file_name()
            .to_str()
            .and_then(leftover_time)
            .is_some_and(|t| t < cutoff);
        if old {
            let path = entry.path();
            std::fs::remove_file(&path).map_err(io("remove", &path))?;
            removed.push(path);
        }
    }
    if !removed.is_empty() {
        sync_dir(dir)?;
    }
    Ok(removed)
}

/// When and where the scheduler ([`spawn_scheduler`]) backs up.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// The directory of the backups.
    pub dir: PathBuf,
    /// The time between two backups (default [`DEFAULT_EVERY`]).
    pub every: Duration,
    /// How long a backup is kept (default [`DEFAULT_KEEP`]).
    pub keep: Duration,
}

/// When the next backup is due: one interval after the newest backup in the directory, or
/// now if there is none (or it is older), so that restarts do not postpone backups.
fn first_due(schedule: &Schedule, now: SystemTime) -> SystemTime {
    let newest = list(&schedule.dir)
        .ok()
        .and_then(|b| b.last().map(|b| b.created));
    match newest {
        Some(t) => {
            let due = UNIX_EPOCH + Duration::from_secs(t) + schedule.every;
            // A newest backup "in the future" (the clock was set back): one interval from now.
            if due > now + schedule.every {
                now + schedule.every
            } else {
                due.max(now)
            }
        }
        None => now,
    }
}

/// Runs a backup of the sled store every `schedule.every` in the blocking pool and then
/// removes the backups older than `schedule.keep` ([`prune`]). Success and failure are
/// logged; a failure never stops the server (the next attempt comes after
/// `min(every, 10 minutes)`). `owner` holds the store (e.g. the API state) and `store`
/// reaches it. Call it inside a Tokio runtime; the task runs until aborted.
pub fn spawn_scheduler<T: Send + Sync + 'static>(
    owner: Arc<T>,
    store: fn(&T) -> &SledBackend,
    schedule: Schedule,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let every = schedule.every.max(Duration::from_secs(1));
        let mut due = first_due(&schedule, SystemTime::now());
        tracing::info!(
            target: "vault_server",
            dir = %schedule.dir.display(),
            every_secs = every.as_secs(),
            keep_secs = schedule.keep.as_secs(),
            "backups scheduled"
        );
        loop {
            let wait = due
                .duration_since(SystemTime::now())
                .unwrap_or(Duration::ZERO);
            tokio::time::sleep(wait).await;
            let (owner, dir, keep) = (Arc::clone(&owner), schedule.dir.clone(), schedule.keep);
            let started = std::time::Instant::now();
            let outcome = tokio::task::spawn_blocking(move || {
                let info = store(&owner).backup_to(&dir)?;
                let removed = prune(&dir, keep, SystemTime::now())?;
                Ok::<_, BackupError>((info, removed))
            })
            .await;
            let next = match outcome {
                Ok(Ok((info, removed))) => {
                    tracing::info!(
                        target: "vault_server",
                        path = %info.path.display(),
                        pages = info.pages,
                        page_bytes = info.page_bytes,
                        entries = info.entries,
                        millis = started.elapsed().as_millis() as u64,
                        pruned = removed.len(),
                        "backup written"
                    );
                    every
                }
                Ok(Err(e)) => {
                    tracing::error!(target: "vault_server", "backup failed: {e}");
                    every.min(Duration::from_secs(600))
                }
                Err(e) => {
                    tracing::error!(target: "vault_server", "backup task failed: {e}");
                    every.min(Duration::from_secs(600))
                }
            };
            due = SystemTime::now() + next;
        }
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn stamps_round_trip_and_refuse_impossible_dates() {
        assert_eq!(stamp(0), "19700101T000000Z");
        assert_eq!(stamp(951_782_400), "20000229T000000Z");
        assert_eq!(stamp(1_700_000_000), "20231114T221320Z");
        for secs in [0u64, 59, 86_399, 951_782_400, 1_700_000_000, 4_102_444_799] {
            assert_eq!(parse_stamp(&stamp(secs)), Some(secs));
        }
        for bad in [
            "20230230T000000Z",
            "20231314T221320Z",
            "20231114T241320Z",
            "20231114 221320Z",
            "2023111XT221320Z",
            "20231114T221320",
            "+0231114T221320Z",
        ] {
            assert_eq!(parse_stamp(bad), None, "{bad}");
        }
        assert_eq!(
            name_time("vault-backup-20231114T221320Z.vbk"),
            Some(1_700_000_000)
        );
        assert_eq!(name_time("vault-backup-20231114T221320Z.vbk.partial"), None);
        assert_eq!(
            leftover_time(".vault-backup-20231114T221320Z.vbk.partial"),
            Some(1_700_000_000)
        );
    }

    #[test]
    fn the_first_backup_is_due_one_interval_after_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        let schedule = Schedule {
            dir: dir.path().to_path_buf(),
            every: Duration::from_secs(3600),
            keep: DEFAULT_KEEP,
        };
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(first_due(&schedule, now), now);
        std::fs::write(dir.path().join(file_name(1_700_000_000 - 600)), b"").unwrap();
        assert_eq!(first_due(&schedule, now), now + Duration::from_secs(3000));
        std::fs::write(dir.path().join(file_name(1_700_000_000 + 86_400)), b"").unwrap();
        assert_eq!(first_due(&schedule, now), now + Duration::from_secs(3600));
    }
}
