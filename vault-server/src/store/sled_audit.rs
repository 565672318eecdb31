//! The audit log in sled (docs/spec/audit.md §4.1): tree `audit` (`u64` seq → record) and
//! the index `audit_by_account` (account ‖ `u64` seq → empty). Appends are serialised by
//! one mutex in the process (sled is one process per data directory), which also caches
//! the chain's head.

use std::sync::{Mutex, PoisonError};

use sled::transaction::{ConflictableTransactionError, TransactionError, Transactional};

use super::sled_backend::err;
use super::{BackendError, SledBackend};
use crate::audit::{self, AuditStore, Entry, Event, GENESIS_PREV, HASH_LEN, MIN_RECORD_LEN};
use crate::auth::UserId;

/// How many of the newest records the start-up check looks at.
const CHECK_SAMPLE: usize = 64;

/// The audit trees and the append lock.
pub(super) struct AuditTrees {
    log: sled::Tree,
    by_account: sled::Tree,
    /// Held for the whole of an append; the last `(seq, hash)` once known.
    head: Mutex<Option<(u64, [u8; 32])>>,
}

fn index_key(account: &UserId, seq: u64) -> [u8; 24] {
    let mut k = [0u8; 24];
    k[..16].copy_from_slice(account);
    k[16..].copy_from_slice(&seq.to_be_bytes());
    k
}

fn seq_of(key: &[u8]) -> Result<u64, BackendError> {
    key.try_into()
        .map(u64::from_be_bytes)
        .map_err(|_| BackendError::new("sled: corrupt audit key"))
}

fn corrupt() -> BackendError {
    BackendError::new("sled: corrupt audit record")
}

impl AuditTrees {
    /// Opens (or creates) the trees.
    pub(super) fn open(db: &sled::Db) -> Result<Self, BackendError> {
        Ok(Self {
            log: db.open_tree("audit").map_err(err)?,
            by_account: db.open_tree("audit_by_account").map_err(err)?,
            head: Mutex::new(None),
        })
    }

    /// The start-up check: the newest records have the shape this backend writes (an
    /// 8-byte key, at least the shortest record); index keys are 24 bytes. Hashes and links
    /// are not checked here: that is `vault-server audit-verify` (a tampered log must not
    /// stop the server).
    pub(super) fn check(&self) -> Result<(), BackendError> {
        for item in self.log.iter().rev().take(CHECK_SAMPLE) {
            let (k, v) = item.map_err(err)?;
            if k.len() != 8 || v.len() < MIN_RECORD_LEN {
                return Err(BackendError::new(
                    "sled: corrupt audit record (refusing to start on a damaged store)",
                ));
            }
        }
        for key in self.by_account.iter().keys().rev().take(CHECK_SAMPLE) {
            if key.map_err(err)?.len() != 24 {
                return Err(BackendError::new(
                    "sled: corrupt audit index (refusing to start on a damaged store)",
                ));
            }
        }
        Ok(())
    }

    /// The last `(seq, stored hash)` of the tree, or `(0, GENESIS_PREV)` when it is empty.
    fn load_head(&self) -> Result<(u64, [u8; 32]), BackendError> {
        match self.log.last().map_err(err)? {
            None => Ok((0, GENESIS_PREV)),
            Some((k, v)) => {
                let at = v.len().checked_sub(HASH_LEN).ok_or_else(corrupt)?;
                let mut hash = [0u8; 32];
                hash.copy_from_slice(&v[at..]);
                Ok((seq_of(&k)?, hash))
            }
        }
    }
}

impl AuditStore for SledBackend {
    fn append(&self, time: u64, event: &Event) -> Result<Entry, BackendError> {
        let trees = &self.audit;
        // Like every write: held until flushed, so a backup's cut sees no append half done.
        let _w = self.write_gate();
        let entry = {
            let mut head = trees.head.lock().unwrap_or_else(PoisonError::into_inner);
            let (last, prev) = match *head {
                Some(h) => h,
                None => trees.load_head()?,
            };
            let seq = last
                .checked_add(1)
                .ok_or_else(|| BackendError::new("audit sequence exhausted"))?;
            let record = audit::encode_record(seq, time, &prev, event);
            let entry = Entry::decode(&record).map_err(|_| corrupt())?;
            let result = (&trees.log, &trees.by_account).transaction(|(log, by_account)| {
                log.insert(&seq.to_be_bytes(), record.as_slice())?;
                if let Some(account) = &event.account {
                    by_account.insert(&index_key(account, seq), &[] as &[u8])?;
                }
                Ok::<(), ConflictableTransactionError<()>>(())
            });
            match result {
                Ok(()) => {}
                Err(TransactionError::Storage(e)) => return Err(err(e)),
                Err(TransactionError::Abort(())) => return Err(corrupt()),
            }
            *head = Some((seq, entry.hash));
            entry
        };
        // Outside the lock, so concurrent appends share their fsyncs; sled recovers a
        // prefix of its log after a crash, so a lost entry is never followed by a kept one.
        self.flush()?;
        Ok(entry)
    }

    fn events_of(
        &self,
        account: &UserId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<Entry>, BackendError> {
        let trees = &self.audit;
        let Some(from) = after.checked_add(1) else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for key in trees
            .by_account
            .range(index_key(account, from)..=index_key(account, u64::MAX))
            .keys()
        {
            if out.len() >= limit {
                break;
            }
            let key = key.map_err(err)?;
            let seq = seq_of(key.get(16..).ok_or_else(corrupt)?)?;
            // An index entry without its record: the record was removed behind the
            // server's back; `audit-verify` reports it.
            let Some(record) = trees.log.get(seq.to_be_bytes()).map_err(err)? else {
                continue;
            };
            let entry = Entry::decode(&record).map_err(|_| corrupt())?;
            // Shown only if the record itself names the account.
            if entry.event.account.as_ref() == Some(account) {
                out.push(entry);
            }
        }
        Ok(out)
    }

    fn scan(&self, after: u64, limit: usize) -> Result<Vec<(u64, Vec<u8>)>, BackendError> {
        let Some(from) = after.checked_add(1) else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for item in self.audit.log.range(from.to_be_bytes()..).take(limit) {
            let (k, v) = item.map_err(err)?;
            out.push((seq_of(&k)?, v.to_vec()));
        }
        Ok(out)
    }
}
