//! The audit log on sled (docs/spec/audit.md): the tamper contract of `tests/contract/`
//! with the records changed in the sled directory itself, the chain surviving a reopen, and
//! the binary's `audit-verify` on an intact and a tampered data directory. (The rest of the
//! contract runs in `store_contract.rs`; the PostgreSQL side is `audit_log_pg.rs`.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod contract;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use contract::{AuditTamperer, Tamper};
use vault_server::audit::{self, AuditStore, Event, EventKind};
use vault_server::store::SledBackend;

const BIN: &str = env!("CARGO_BIN_EXE_vault-server");

/// Opens the sled database of `dir` directly, waiting for the lock a just-dropped backend
/// releases from a background thread.
fn raw_sled(dir: &Path) -> sled::Db {
    for _ in 0..100 {
        match sled::open(dir) {
            Ok(db) => return db,
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    panic!("the sled directory stayed locked");
}

/// Changes `dir`'s `audit` tree behind the backend's back (the backend must be closed).
fn tamper_dir(dir: &Path, edits: &[Tamper]) {
    let db = raw_sled(dir);
    let tree = db.open_tree("audit").unwrap();
    for edit in edits {
        match edit {
            Tamper::Put(seq, record) => {
                tree.insert(seq.to_be_bytes(), record.as_slice()).unwrap();
            }
            Tamper::Remove(seq) => {
                tree.remove(seq.to_be_bytes()).unwrap();
            }
        }
    }
    db.flush().unwrap();
}

struct SledTamper {
    dirs: Vec<tempfile::TempDir>,
}

impl AuditTamperer for SledTamper {
    type B = SledBackend;

    fn fresh(&mut self) -> SledBackend {
        let dir = tempfile::tempdir().unwrap();
        let b = SledBackend::open(dir.path()).unwrap();
        self.dirs.push(dir);
        b
    }

    fn tamper(&mut self, b: SledBackend, edits: &[Tamper]) -> SledBackend {
        drop(b);
        let dir = self.dirs.last().unwrap().path();
        tamper_dir(dir, edits);
        SledBackend::open(dir).unwrap()
    }
}

#[test]
fn sled_audit_tampering_is_detected() {
    contract::audit_tamper_contract(&mut SledTamper { dirs: Vec::new() });
}

#[test]
fn the_sled_chain_survives_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let first = {
        let b = SledBackend::open(dir.path()).unwrap();
        let e = Event::new(EventKind::AccountRegistered).with_account([1; 16]);
        b.append(1, &e).unwrap()
    };
    let b = SledBackend::open(dir.path()).unwrap();
    let second = b.append(2, &Event::new(EventKind::BackupFailed)).unwrap();
    assert_eq!((second.seq, second.prev), (2, first.hash));
    assert_eq!(b.events_of(&[1; 16], 0, 10).unwrap(), vec![first]);
    let report = audit::verify_chain(&b).unwrap();
    assert_eq!((report.entries, report.first_broken), (2, None));
}

fn audit_verify(dir: &Path) -> (i32, String) {
    let out = Command::new(BIN)
        .args(["audit-verify", "--data-dir"])
        .arg(dir)
        .env("RUST_LOG", "error")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn the_binary_verifies_a_data_directory() {
    let dir = tempfile::tempdir().unwrap();
    let records = {
        let b = SledBackend::open(dir.path()).unwrap();
        for i in 0..5u8 {
            let e = Event::new(EventKind::LoginSucceeded).with_account([i; 16]);
            b.append(u64::from(i), &e).unwrap();
        }
        b.scan(0, 10).unwrap()
    };
    let (code, text) = audit_verify(dir.path());
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("intact") && text.contains("5 entries"),
        "{text}"
    );

    let mut changed = records[1].1.clone();
    changed[20] ^= 0x80;
    tamper_dir(dir.path(), &[Tamper::Put(2, changed)]);
    let (code, text) = audit_verify(dir.path());
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("broken at seq 2"), "{text}");

    // A store that cannot be read is neither intact nor broken.
    let missing = dir.path().join("no-such-dir").join("x");
    std::fs::write(dir.path().join("no-such-dir"), b"a file").unwrap();
    let (code, text) = audit_verify(&missing);
    assert_eq!(code, 2, "{text}");
}
