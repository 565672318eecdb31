//! The audit log in PostgreSQL (docs/spec/audit.md §4.2): table `audit_log` (`seq`, the
//! account for the owner's reads, the record) and the one-row `audit_head` (the last `seq`
//! and hash). An append locks the head row, so appends from every node form one chain: the
//! next appender waits until this one commits, then reads the head it left.
//!
//! A child module of `pg_backend` (it uses that module's private transaction helpers).

use super::{corrupt, get, End, Fail, PgBackend, SAMPLE};
use crate::audit::{self, AuditStore, Entry, Event, HASH_LEN, MIN_RECORD_LEN};
use crate::auth::UserId;
use crate::store::BackendError;

/// The tables of the audit log, part of schema version 1 (created with the others by
/// `install`), with their columns as `check` expects them.
pub(super) const COLUMNS: &[(&str, &[(&str, &str)])] = &[
    (
        "audit_log",
        &[("seq", "bigint"), ("account", "bytea"), ("record", "bytea")],
    ),
    (
        "audit_head",
        &[
            ("id", "boolean"),
            ("last_seq", "bigint"),
            ("last_hash", "bytea"),
        ],
    ),
];

/// The audit tables, run by `install` with the rest of schema version 1. `record` is the
/// stored record of audit.md §2 (entry ‖ hash); `account` copies the entry's account so
/// that the owner's reads use an index (`events_of` checks that the record agrees).
pub(super) const DDL: &str = r#"
CREATE TABLE IF NOT EXISTS audit_log (
    seq bigint PRIMARY KEY CHECK (seq > 0),
    account bytea CHECK (account IS NULL OR length(account) = 16),
    record bytea NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_log_account ON audit_log (account, seq)
    WHERE account IS NOT NULL;
CREATE TABLE IF NOT EXISTS audit_head (
    id boolean PRIMARY KEY DEFAULT true CHECK (id),
    last_seq bigint NOT NULL CHECK (last_seq >= 0),
    last_hash bytea NOT NULL CHECK (length(last_hash) = 32)
);
INSERT INTO audit_head (id, last_seq, last_hash)
    VALUES (true, 0, decode(repeat('00', 32), 'hex')) ON CONFLICT DO NOTHING;
"#;

fn seq_sql(seq: u64) -> Result<i64, BackendError> {
    i64::try_from(seq).map_err(|_| BackendError::new("postgres: audit sequence out of range"))
}

fn seq_of(v: i64) -> Result<u64, Fail> {
    u64::try_from(v).map_err(|_| corrupt("audit sequence number").into())
}

impl PgBackend {
    /// Part of the start-up check: the head row is one row and not behind the log (new
    /// entries would collide with old ones), and the newest records are at least as long as
    /// the shortest record. Hashes and links are `vault-server audit-verify`'s job: a
    /// tampered log must not stop the server.
    pub(super) fn check_audit(&self, conn: &mut postgres::Client) -> Result<(), Fail> {
        let heads = conn.query("SELECT last_seq, length(last_hash) FROM audit_head", &[])?;
        let [head] = heads.as_slice() else {
            return Err(self.damaged("audit head (not exactly one row)").into());
        };
        let last: i64 = get(head, 0)?;
        let max: Option<i64> = get(&conn.query_one("SELECT max(seq) FROM audit_log", &[])?, 0)?;
        if max.is_some_and(|m| m > last) {
            return Err(self.damaged("audit head (behind the log)").into());
        }
        let short = i32::try_from(MIN_RECORD_LEN).unwrap_or(i32::MAX);
        for row in conn.query(
            "SELECT length(record) FROM audit_log ORDER BY seq DESC LIMIT $1",
            &[&SAMPLE],
        )? {
            let len: i32 = get(&row, 0)?;
            if len < short {
                return Err(self.damaged("corrupt audit record").into());
            }
        }
        Ok(())
    }
}

impl AuditStore for PgBackend {
    fn append(&self, time: u64, event: &Event) -> Result<Entry, BackendError> {
        let account: Option<&[u8]> = event.account.as_ref().map(|a| &a[..]);
        self.write("audit append", |tx| {
            // The row lock serialises appends across nodes until this transaction ends.
            let head = tx.query_one(
                "SELECT last_seq, last_hash FROM audit_head WHERE id FOR UPDATE",
                &[],
            )?;
            let last = seq_of(get(&head, 0)?)?;
            let hash: Vec<u8> = get(&head, 1)?;
            let prev: [u8; HASH_LEN] = hash
                .as_slice()
                .try_into()
                .map_err(|_| corrupt("audit head"))?;
            let seq = last
                .checked_add(1)
                .ok_or_else(|| BackendError::new("audit sequence exhausted"))?;
            let record = audit::encode_record(seq, time, &prev, event);
            let entry = Entry::decode(&record).map_err(|_| corrupt("audit record"))?;
            let seq = seq_sql(seq)?;
            tx.execute(
                "INSERT INTO audit_log (seq, account, record) VALUES ($1, $2, $3)",
                &[&seq, &account, &record],
            )?;
            tx.execute(
                "UPDATE audit_head SET last_seq = $1, last_hash = $2 WHERE id",
                &[&seq, &&entry.hash[..]],
            )?;
            Ok(End::Commit(entry))
        })
    }

    fn events_of(
        &self,
        account: &UserId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<Entry>, BackendError> {
        let (after, limit) = (
            i64::try_from(after).unwrap_or(i64::MAX),
            i64::try_from(limit).unwrap_or(i64::MAX),
        );
        self.read("audit events", |c| {
            let mut out = Vec::new();
            for row in c.query(
                "SELECT record FROM audit_log WHERE account = $1 AND seq > $2 \
                 ORDER BY seq LIMIT $3",
                &[&&account[..], &after, &limit],
            )? {
                let record: Vec<u8> = get(&row, 0)?;
                let entry = Entry::decode(&record).map_err(|_| corrupt("audit record"))?;
                // Shown only if the record itself names the account.
                if entry.event.account.as_ref() == Some(account) {
                    out.push(entry);
                }
            }
            Ok(out)
        })
    }

    fn scan(&self, after: u64, limit: usize) -> Result<Vec<(u64, Vec<u8>)>, BackendError> {
        let (after, limit) = (
            i64::try_from(after).unwrap_or(i64::MAX),
            i64::try_from(limit).unwrap_or(i64::MAX),
        );
        self.read("audit scan", |c| {
            let mut out = Vec::new();
            for row in c.query(
                "SELECT seq, record FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2",
                &[&after, &limit],
            )? {
                out.push((seq_of(get(&row, 0)?)?, get(&row, 1)?));
            }
            Ok(out)
        })
    }
}
