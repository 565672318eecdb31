//! The PostgreSQL backend: accounts, sessions and data in tables of one PostgreSQL schema,
//! for deployments that run several stateless server nodes against one database
//! (docs/spec/storage.md, "PostgreSQL").
//!
//! - **Client.** The synchronous `postgres` client (pure Rust) behind an `r2d2` pool; the
//!   API calls the backend from `tokio::task::spawn_blocking`. Connections are plain TCP
//!   (`NoTls`): the database must listen on loopback or on a private network that only
//!   the server nodes reach. Everything stored is opaque to the server except the login
//!   verifiers and the session token *hashes*, but the traffic still carries them and the
//!   account metadata, so do not route it over an untrusted network.
//! - **Schema.** Every table lives in one PostgreSQL schema (default `public`; tests use
//!   a random one), created idempotently by [`PgBackend::connect`] and recorded in
//!   `vault_schema_version`. Each pooled connection sets its `search_path` to that
//!   schema, `synchronous_commit` on, and a bound on idle time inside a transaction.
//! - **Atomicity.** A write that touches more than one row runs in one READ COMMITTED
//!   transaction with explicit row locks, always taken in the same order — the scope row
//!   (`SELECT … FOR NO KEY UPDATE`), the rows under it, the owner's `owner_usage` row, the
//!   single `feed` row — so writers never wait on each other in a cycle. Insert-if-absent
//!   is `INSERT … ON CONFLICT DO NOTHING`; the keyring compare-and-swap is one
//!   `UPDATE … WHERE keyring_version = $n`; the manifest compare-and-swap runs under its
//!   collection's row lock. Serialization failures and deadlocks (not expected with this
//!   lock order, but reported by some PostgreSQL-compatible engines) are retried.
//! - **Change feed.** Sequence numbers come from the one-row table `feed`, incremented in
//!   the writing transaction just before it commits. Its row lock is held until commit,
//!   so change writers commit one after the other in `seq` order and a reader that sees
//!   `seq = n` also sees every smaller one: no change can appear later below a cursor.
//!   The cost is one serialisation point for every write that appends a change (page and
//!   header puts do not) for the length of its commit.
//! - **Durability.** A write returns after `COMMIT`, with `synchronous_commit = on`.
//!
//! Unsigned 64-bit values the clients choose (manifest, object and roster versions,
//! session times) are stored as `numeric(20,0)` so the whole `u64` range keeps its order;
//! server-assigned counters (`seq`, keyring version, byte counts) are `bigint`.

use std::collections::{BTreeMap, BTreeSet};
use std::error::Error as _;
use std::fmt;
use std::time::Duration;

use postgres::error::SqlState;
use postgres::types::{ToSql, Type};
use postgres::{Client, Config, IsolationLevel, NoTls, Row, Transaction};
use r2d2::{CustomizeConnection, Pool, PooledConnection};
use r2d2_postgres::PostgresConnectionManager;

use super::{
    AccountStore, Backend, BackendError, Cas, Change, ChangeKind, Changes, Created, DataStore,
    EnvelopeKey, Id, InsertRoster, KeyringReplacement, ManifestSwap, NewAccount, ObjectKey,
    PageKey, ScopeKind, Write,
};
use crate::auth::{Session, SessionStore, TokenHash, UserId};

type Manager = PostgresConnectionManager<NoTls>;
type Conn = PooledConnection<Manager>;

/// The audit log's tables and its `AuditStore` implementation (docs/spec/audit.md §4.2); a
/// child module, so that it can use the transaction helpers below.
#[path = "pg_audit.rs"]
mod pg_audit;

/// The version of the table layout below; `check` refuses any other. `connect` brings an
/// older schema up to it with [`MIGRATIONS`].
const SCHEMA_VERSION: i32 = 2;
/// The component name in `vault_schema_version`.
const COMPONENT: &str = "vault-server";
/// The schema used when none is given.
const DEFAULT_SCHEMA: &str = "public";
/// How many changes one `changes` call examines at most (visible or not), as in sled.
const SCAN_BUDGET: i64 = 10_000;
/// How often a transaction is tried when the database reports a serialization failure or
/// a deadlock (it rolled the attempt back).
const ATTEMPTS: u32 = 5;
/// First key of the advisory lock that serialises schema creation (`"vaul"`).
const SETUP_LOCK: i32 = 0x7661_756c;
/// How many rows of each table `check` decodes.
const SAMPLE: i64 = 64;
/// Bounds on waiting: for a new TCP connection, and for a free connection of the pool.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const POOL_TIMEOUT: Duration = Duration::from_secs(30);
/// The largest `u64`, as the bound of the `numeric(20,0)` columns.
const U64_MAX_SQL: &str = "18446744073709551615";

/// The tables of schema version 2 and their columns (`format_type` spelling). `check`
/// compares the database against this list; `connect` creates it with [`DDL`].
const COLUMNS: &[(&str, &[(&str, &str)])] = &[
    (
        "vault_schema_version",
        &[("component", "text"), ("version", "integer")],
    ),
    ("settings", &[("key", "text"), ("value", "bytea")]),
    (
        "accounts",
        &[
            ("id", "bytea"),
            ("name", "bytea"),
            ("verifier", "bytea"),
            ("keyring_version", "bigint"),
            ("keyring", "bytea"),
            ("identity", "bytea"),
            ("recovery_verifier", "bytea"),
        ],
    ),
    (
        "mfa",
        &[
            ("user_id", "bytea"),
            ("version", "bigint"),
            ("record", "bytea"),
        ],
    ),
    (
        "sessions",
        &[
            ("token_hash", "bytea"),
            ("user_id", "bytea"),
            ("created", "numeric(20,0)"),
            ("expires", "numeric(20,0)"),
        ],
    ),
    (
        "scopes",
        &[
            ("id", "bytea"),
            ("kind", "smallint"),
            ("owner", "bytea"),
            ("bytes", "bigint"),
            ("created", "bigint"),
        ],
    ),
    ("owner_usage", &[("owner", "bytea"), ("bytes", "bigint")]),
    (
        "pages",
        &[
            ("collection", "bytea"),
            ("object", "bytea"),
            ("version", "numeric(20,0)"),
            ("idx", "bigint"),
            ("data", "bytea"),
        ],
    ),
    (
        "headers",
        &[
            ("collection", "bytea"),
            ("object", "bytea"),
            ("version", "numeric(20,0)"),
            ("header", "bytea"),
        ],
    ),
    (
        "collection_keys",
        &[
            ("collection", "bytea"),
            ("epoch", "bigint"),
            ("wrapped", "bytea"),
        ],
    ),
    (
        "manifests",
        &[
            ("collection", "bytea"),
            ("version", "numeric(20,0)"),
            ("manifest", "bytea"),
        ],
    ),
    (
        "envelopes",
        &[
            ("recipient", "bytea"),
            ("owner", "bytea"),
            ("target", "bytea"),
            ("epoch", "bigint"),
            ("envelope", "bytea"),
        ],
    ),
    (
        "rosters",
        &[
            ("group_id", "bytea"),
            ("version", "numeric(20,0)"),
            ("roster", "bytea"),
        ],
    ),
    (
        "changes",
        &[
            ("seq", "bigint"),
            ("kind", "smallint"),
            ("scope", "bytea"),
            ("scope_kind", "smallint"),
            ("object", "bytea"),
            ("version", "numeric(20,0)"),
            ("epoch", "bigint"),
            ("recipient", "bytea"),
            ("owner", "bytea"),
            ("former_owner", "bytea"),
        ],
    ),
    ("feed", &[("id", "boolean"), ("last_seq", "bigint")]),
];

/// The current schema (version 2), run with `search_path` set to the target schema. `{U64}` stands for
/// the largest `u64`. Blob columns use `STORAGE EXTERNAL`: they are ciphertext, so
/// PostgreSQL should not spend time trying to compress them.
const DDL: &str = r#"
CREATE TABLE IF NOT EXISTS vault_schema_version (
    component text PRIMARY KEY,
    version integer NOT NULL
);
CREATE TABLE IF NOT EXISTS settings (
    key text PRIMARY KEY,
    value bytea NOT NULL
);
CREATE TABLE IF NOT EXISTS accounts (
    id bytea PRIMARY KEY CHECK (length(id) = 16),
    name bytea NOT NULL UNIQUE,
    verifier bytea NOT NULL,
    keyring_version bigint NOT NULL CHECK (keyring_version >= 1),
    keyring bytea NOT NULL,
    identity bytea NOT NULL,
    -- The verifier of the recovery login secret (login.md §11); NULL: no recovery.
    recovery_verifier bytea
);
CREATE TABLE IF NOT EXISTS mfa (
    user_id bytea PRIMARY KEY REFERENCES accounts (id) ON DELETE CASCADE,
    version bigint NOT NULL CHECK (version >= 1),
    record bytea NOT NULL
);
CREATE TABLE IF NOT EXISTS sessions (
    token_hash bytea PRIMARY KEY CHECK (length(token_hash) = 32),
    user_id bytea NOT NULL CHECK (length(user_id) = 16),
    created numeric(20,0) NOT NULL CHECK (created BETWEEN 0 AND {U64}),
    expires numeric(20,0) NOT NULL CHECK (expires BETWEEN 0 AND {U64})
);
CREATE INDEX IF NOT EXISTS sessions_user ON sessions (user_id);
CREATE INDEX IF NOT EXISTS sessions_expires ON sessions (expires);
CREATE TABLE IF NOT EXISTS scopes (
    id bytea PRIMARY KEY CHECK (length(id) = 16),
    kind smallint NOT NULL CHECK (kind IN (1, 2)),
    owner bytea NOT NULL CHECK (length(owner) = 16),
    bytes bigint NOT NULL DEFAULT 0 CHECK (bytes >= 0),
    -- The feed position of the scope's creation: earlier changes under the same id belong
    -- to a deleted scope and are shown to nobody but its former owner.
    created bigint NOT NULL DEFAULT 0 CHECK (created >= 0)
);
CREATE INDEX IF NOT EXISTS scopes_owner ON scopes (owner);
CREATE TABLE IF NOT EXISTS owner_usage (
    owner bytea PRIMARY KEY CHECK (length(owner) = 16),
    bytes bigint NOT NULL CHECK (bytes >= 0)
);
CREATE TABLE IF NOT EXISTS pages (
    collection bytea NOT NULL REFERENCES scopes (id) ON DELETE CASCADE,
    object bytea NOT NULL CHECK (length(object) = 16),
    version numeric(20,0) NOT NULL CHECK (version BETWEEN 0 AND {U64}),
    idx bigint NOT NULL CHECK (idx BETWEEN 0 AND 4294967295),
    data bytea NOT NULL,
    PRIMARY KEY (collection, object, version, idx)
);
CREATE TABLE IF NOT EXISTS headers (
    collection bytea NOT NULL REFERENCES scopes (id) ON DELETE CASCADE,
    object bytea NOT NULL CHECK (length(object) = 16),
    version numeric(20,0) NOT NULL CHECK (version BETWEEN 0 AND {U64}),
    header bytea NOT NULL,
    PRIMARY KEY (collection, object, version)
);
CREATE TABLE IF NOT EXISTS collection_keys (
    collection bytea NOT NULL REFERENCES scopes (id) ON DELETE CASCADE,
    epoch bigint NOT NULL CHECK (epoch BETWEEN 0 AND 4294967295),
    wrapped bytea NOT NULL,
    PRIMARY KEY (collection, epoch)
);
CREATE TABLE IF NOT EXISTS manifests (
    collection bytea PRIMARY KEY REFERENCES scopes (id) ON DELETE CASCADE,
    version numeric(20,0) NOT NULL CHECK (version BETWEEN 1 AND {U64}),
    manifest bytea NOT NULL
);
CREATE TABLE IF NOT EXISTS envelopes (
    recipient bytea NOT NULL CHECK (length(recipient) = 16),
    owner bytea NOT NULL CHECK (length(owner) = 16),
    target bytea NOT NULL REFERENCES scopes (id) ON DELETE CASCADE,
    epoch bigint NOT NULL CHECK (epoch BETWEEN 0 AND 4294967295),
    envelope bytea NOT NULL,
    PRIMARY KEY (recipient, owner, target, epoch)
);
CREATE INDEX IF NOT EXISTS envelopes_target ON envelopes (target, epoch);
CREATE TABLE IF NOT EXISTS rosters (
    group_id bytea NOT NULL REFERENCES scopes (id) ON DELETE CASCADE,
    version numeric(20,0) NOT NULL CHECK (version BETWEEN 0 AND {U64}),
    roster bytea NOT NULL,
    PRIMARY KEY (group_id, version)
);
CREATE TABLE IF NOT EXISTS changes (
    seq bigint PRIMARY KEY CHECK (seq > 0),
    kind smallint NOT NULL,
    scope bytea NOT NULL CHECK (length(scope) = 16),
    scope_kind smallint CHECK (scope_kind IN (1, 2)),
    object bytea CHECK (length(object) = 16),
    version numeric(20,0) CHECK (version BETWEEN 0 AND {U64}),
    epoch bigint CHECK (epoch BETWEEN 0 AND 4294967295),
    recipient bytea CHECK (length(recipient) = 16),
    owner bytea CHECK (length(owner) = 16),
    former_owner bytea CHECK (length(former_owner) = 16),
    CONSTRAINT changes_shape CHECK (CASE kind
        WHEN 1 THEN scope_kind IS NOT NULL
            AND num_nonnulls(object, version, epoch, recipient, owner, former_owner) = 0
        WHEN 2 THEN version IS NOT NULL
            AND num_nonnulls(scope_kind, object, epoch, recipient, owner, former_owner) = 0
        WHEN 3 THEN epoch IS NOT NULL
            AND num_nonnulls(scope_kind, object, version, recipient, owner, former_owner) = 0
        WHEN 4 THEN num_nonnulls(object, version) = 2
            AND num_nonnulls(scope_kind, epoch, recipient, owner, former_owner) = 0
        WHEN 5 THEN num_nonnulls(epoch, recipient, owner) = 3
            AND num_nonnulls(scope_kind, object, version, former_owner) = 0
        WHEN 6 THEN num_nonnulls(epoch, recipient, owner) = 3
            AND num_nonnulls(scope_kind, object, version, former_owner) = 0
        WHEN 7 THEN version IS NOT NULL
            AND num_nonnulls(scope_kind, object, epoch, recipient, owner, former_owner) = 0
        WHEN 8 THEN num_nonnulls(scope_kind, former_owner) = 2
            AND num_nonnulls(object, version, epoch, recipient, owner) = 0
        ELSE false END)
);
CREATE TABLE IF NOT EXISTS feed (
    id boolean PRIMARY KEY DEFAULT true CHECK (id),
    last_seq bigint NOT NULL CHECK (last_seq >= 0)
);
ALTER TABLE accounts ALTER COLUMN keyring SET STORAGE EXTERNAL;
ALTER TABLE pages ALTER COLUMN data SET STORAGE EXTERNAL;
ALTER TABLE headers ALTER COLUMN header SET STORAGE EXTERNAL;
ALTER TABLE manifests ALTER COLUMN manifest SET STORAGE EXTERNAL;
ALTER TABLE rosters ALTER COLUMN roster SET STORAGE EXTERNAL;
INSERT INTO feed (id, last_seq) VALUES (true, 0) ON CONFLICT DO NOTHING;
"#;

/// The steps from each older schema version to the next, in order: `(version reached,
/// statements)`, run by `connect` under the setup lock, in one transaction with the update
/// of `vault_schema_version`. Each step only adds (a nullable column, a table), so a node
/// of the previous version that still runs keeps working until it is replaced.
const MIGRATIONS: &[(i32, &str)] = &[(
    2,
    // Account recovery with the recovery code (login.md §11).
    "ALTER TABLE accounts ADD COLUMN IF NOT EXISTS recovery_verifier bytea;",
)];

/// The scopes `$1` may reach (DataStore's module documentation), as three CTEs:
/// `member_groups` (groups `$1` owns or holds a current-epoch group secret of),
/// `principals` (`$1` and those groups) and `reachable` (owned scopes, member groups,
/// and collections with a current-epoch envelope from their owner to a principal).
const REACH_CTE: &str = "
WITH member_groups AS (
    SELECT g.id FROM scopes g WHERE g.owner = $1 AND g.kind = 2
    UNION
    SELECT g.id FROM envelopes e JOIN scopes g ON g.id = e.target
    WHERE e.recipient = $1 AND e.owner = e.target AND g.kind = 2
      AND e.epoch = (SELECT max(x.epoch) FROM envelopes x WHERE x.target = g.id)
),
principals AS (
    SELECT $1::bytea AS id
    UNION
    SELECT id FROM member_groups
),
reachable AS (
    SELECT s.id FROM scopes s WHERE s.owner = $1
    UNION
    SELECT id FROM member_groups
    UNION
    SELECT c.id FROM envelopes e
        JOIN principals p ON p.id = e.recipient
        JOIN scopes c ON c.id = e.target
    WHERE c.kind = 1 AND e.owner = c.owner
      AND e.epoch = (SELECT max(x.epoch) FROM envelopes x WHERE x.target = c.id)
)";

/// Whether `$1` may reach scope `$2`: the same rule as [`REACH_CTE`], for one scope.
const CAN_REACH: &str = "
SELECT EXISTS (
    SELECT 1 FROM scopes s
    WHERE s.id = $2 AND (
        s.owner = $1
        OR EXISTS (
            SELECT 1 FROM envelopes e
            WHERE e.target = s.id
              AND e.epoch = (SELECT max(x.epoch) FROM envelopes x WHERE x.target = s.id)
              AND (
                  (s.kind = 2 AND e.owner = s.id AND e.recipient = $1)
                  OR (s.kind = 1 AND e.owner = s.owner AND (
                      e.recipient = $1
                      OR EXISTS (
                          SELECT 1 FROM scopes g
                          WHERE g.id = e.recipient AND g.kind = 2 AND (
                              g.owner = $1
                              OR EXISTS (
                                  SELECT 1 FROM envelopes m
                                  WHERE m.recipient = $1 AND m.owner = g.id AND m.target = g.id
                                    AND m.epoch = (SELECT max(y.epoch) FROM envelopes y
                                                   WHERE y.target = g.id)
                              )
                          )
                      )
                  ))
              )
        )
    )
)";

/// The columns of a change row, in the order [`RawChange::from_row`] reads them.
const CHANGE_COLUMNS: &str =
    "seq, kind, scope, scope_kind, object, version::text, epoch, recipient, owner, former_owner";

/// The PostgreSQL backend. Cheap to share: every method takes a connection from the pool
/// for the length of one operation.
pub struct PgBackend {
    /// Always `Some` until [`Drop`] takes it out (see there).
    pool: Option<Pool<Manager>>,
    schema: String,
}

impl Drop for PgBackend {
    /// Closing a synchronous `postgres` client blocks on that client's own small runtime,
    /// which panics when it happens on a thread that drives a tokio runtime, and the last
    /// handle to the backend is often released there (when the server's router is dropped
    /// at shutdown). So when dropped inside a runtime, the pool is closed on a thread of its
    /// own, and this waits for it.
    fn drop(&mut self) {
        let Some(pool) = self.pool.take() else {
            return;
        };
        if tokio::runtime::Handle::try_current().is_err() {
            drop(pool);
            return;
        }
        let (send, receive) = std::sync::mpsc::sync_channel::<Pool<Manager>>(1);
        let closer = std::thread::Builder::new()
            .name("vault-pg-close".to_owned())
            .spawn(move || drop(receive.recv()));
        match closer {
            Ok(handle) => {
                // The thread is alive and waiting, so the send cannot fail; a panic while
                // closing has already been reported by the panic hook.
                let _ = send.send(pool);
                let _ = handle.join();
            }
            Err(e) => {
                // Without a thread, leak the pool rather than abort: the connections
                // close when the process exits.
                tracing::warn!("postgres: could not close the pool: {e}");
                std::mem::forget(pool);
            }
        }
    }
}

impl fmt::Debug for PgBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The connection URL (which may hold a password) is deliberately not kept.
        f.debug_struct("PgBackend")
            .field("schema", &self.schema)
            .field("pool_size", &self.pool().max_size())
            .finish()
    }
}

/// Per-connection settings, applied when the pool opens a connection.
#[derive(Debug)]
struct SessionSetup {
    sql: String,
}

impl CustomizeConnection<Client, postgres::Error> for SessionSetup {
    fn on_acquire(&self, conn: &mut Client) -> Result<(), postgres::Error> {
        conn.batch_execute(&self.sql)
    }
}

/// Whether `name` is a schema name this backend accepts: `[a-z_][a-z0-9_]{0,62}`, and not
/// in the `pg_` namespace PostgreSQL reserves.
fn valid_schema_name(name: &str) -> bool {
    let b = name.as_bytes();
    matches!(b.first(), Some(c) if c.is_ascii_lowercase() || *c == b'_')
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_')
        && !name.starts_with("pg_")
}

/// A failure inside an operation: from the database (maybe worth a retry) or ours.
enum Fail {
    Db(postgres::Error),
    Backend(BackendError),
}

impl From<postgres::Error> for Fail {
    fn from(e: postgres::Error) -> Self {
        Fail::Db(e)
    }
}

impl From<BackendError> for Fail {
    fn from(e: BackendError) -> Self {
        Fail::Backend(e)
    }
}

impl Fail {
    fn into_backend(self, op: &str) -> BackendError {
        match self {
            Fail::Db(e) => describe(op, &e),
            Fail::Backend(e) => e,
        }
    }
}

/// The operator's message for a database error: the operation, and for an error the
/// server reported its SQLSTATE and primary message. Never the DETAIL or HINT fields,
/// which can quote the values of a row (user data).
fn describe(op: &str, e: &postgres::Error) -> BackendError {
    match e.as_db_error() {
        Some(db) => BackendError::new(format!(
            "postgres: {op}: {} (SQLSTATE {})",
            db.message(),
            db.code().code()
        )),
        None => match e.source() {
            Some(cause) => BackendError::new(format!("postgres: {op}: {e}: {cause}")),
            None => BackendError::new(format!("postgres: {op}: {e}")),
        },
    }
}

fn retryable(e: &postgres::Error) -> bool {
    matches!(
        e.code(),
        Some(c) if *c == SqlState::T_R_SERIALIZATION_FAILURE || *c == SqlState::T_R_DEADLOCK_DETECTED
    )
}

fn corrupt(what: &str) -> BackendError {
    BackendError::new(format!("postgres: corrupt {what}"))
}

/// What a write transaction does at its end.
enum End<T> {
    Commit(T),
    Rollback(T),
}

fn id16(b: &[u8]) -> Option<Id> {
    b.try_into().ok()
}

/// A `numeric(20,0)` value read as text (`::text`): decimal digits only.
fn parse_u64(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn scope_kind(code: i16) -> Option<ScopeKind> {
    ScopeKind::from_code(u8::try_from(code).ok()?)
}

fn kind_code(kind: ScopeKind) -> i16 {
    i16::from(kind.code())
}

/// A length as a signed byte count.
fn len_i64(len: usize) -> Result<i64, BackendError> {
    i64::try_from(len).map_err(|_| BackendError::new("postgres: value too large"))
}

fn get<'a, T: postgres::types::FromSql<'a>>(row: &'a Row, idx: usize) -> Result<T, Fail> {
    Ok(row.try_get(idx)?)
}

fn get_id(row: &Row, idx: usize, what: &str) -> Result<Id, Fail> {
    let b: Vec<u8> = get(row, idx)?;
    Ok(id16(&b).ok_or_else(|| corrupt(what))?)
}

fn get_u64(row: &Row, idx: usize, what: &str) -> Result<u64, Fail> {
    let s: String = get(row, idx)?;
    Ok(parse_u64(&s).ok_or_else(|| corrupt(what))?)
}

fn get_u32(row: &Row, idx: usize, what: &str) -> Result<u32, Fail> {
    let n: i64 = get(row, idx)?;
    Ok(u32::try_from(n).map_err(|_| corrupt(what))?)
}

/// A `(kind, owner)` scope row.
fn scope_row(row: &Row) -> Result<(ScopeKind, UserId), Fail> {
    let kind = scope_kind(get(row, 0)?).ok_or_else(|| corrupt("scope record"))?;
    Ok((kind, get_id(row, 1, "scope record")?))
}

/// One row of `changes`, as stored.
struct RawChange {
    seq: i64,
    kind: i16,
    scope: Vec<u8>,
    scope_kind: Option<i16>,
    object: Option<Vec<u8>>,
    version: Option<String>,
    epoch: Option<i64>,
    recipient: Option<Vec<u8>>,
    owner: Option<Vec<u8>>,
    former_owner: Option<Vec<u8>>,
}

impl RawChange {
    /// Reads the columns of [`CHANGE_COLUMNS`].
    fn from_row(row: &Row) -> Result<Self, postgres::Error> {
        Ok(Self {
            seq: row.try_get(0)?,
            kind: row.try_get(1)?,
            scope: row.try_get(2)?,
            scope_kind: row.try_get(3)?,
            object: row.try_get(4)?,
            version: row.try_get(5)?,
            epoch: row.try_get(6)?,
            recipient: row.try_get(7)?,
            owner: row.try_get(8)?,
            former_owner: row.try_get(9)?,
        })
    }

    /// The change and, for a deleted scope, its former owner; `None` unless the row has
    /// exactly the shape the writer gives that kind.
    fn decode(&self) -> Option<(Change, Option<UserId>)> {
        let seq = u64::try_from(self.seq).ok().filter(|s| *s > 0)?;
        let scope = id16(&self.scope)?;
        let present = [
            self.scope_kind.is_some(),
            self.object.is_some(),
            self.version.is_some(),
            self.epoch.is_some(),
            self.recipient.is_some(),
            self.owner.is_some(),
            self.former_owner.is_some(),
        ];
        let (t, f) = (true, false);
        let version = || parse_u64(self.version.as_deref()?);
        let epoch = || u32::try_from(self.epoch?).ok();
        let id = |v: &Option<Vec<u8>>| id16(v.as_deref()?);
        let envelope = || {
            Some(EnvelopeKey {
                recipient: id(&self.recipient)?,
                owner: id(&self.owner)?,
                target: scope,
                epoch: epoch()?,
            })
        };
        let (kind, former) = match (self.kind, present) {
            (1, p) if p == [t, f, f, f, f, f, f] => (
                ChangeKind::ScopeCreated {
                    scope,
                    kind: scope_kind(self.scope_kind?)?,
                },
                None,
            ),
            (2, p) if p == [f, f, t, f, f, f, f] => (
                ChangeKind::Manifest {
                    collection: scope,
                    version: version()?,
                },
                None,
            ),
            (3, p) if p == [f, f, f, t, f, f, f] => (
                ChangeKind::CollectionKey {
                    collection: scope,
                    epoch: epoch()?,
                },
                None,
            ),
            (4, p) if p == [f, t, t, f, f, f, f] => (
                ChangeKind::ObjectDeleted(ObjectKey {
                    collection: scope,
                    object: id(&self.object)?,
                    version: version()?,
                }),
                None,
            ),
            (5, p) if p == [f, f, f, t, t, t, f] => (ChangeKind::Envelope(envelope()?), None),
            (6, p) if p == [f, f, f, t, t, t, f] => {
                (ChangeKind::EnvelopeDeleted(envelope()?), None)
            }
            (7, p) if p == [f, f, t, f, f, f, f] => (
                ChangeKind::Roster {
                    group: scope,
                    version: version()?,
                },
                None,
            ),
            (8, p) if p == [t, f, f, f, f, f, t] => (
                ChangeKind::ScopeDeleted {
                    scope,
                    kind: scope_kind(self.scope_kind?)?,
                },
                Some(id(&self.former_owner)?),
            ),
            _ => return None,
        };
        Some((Change { seq, kind }, former))
    }
}

/// The columns a change is written with (the `seq` apart).
struct ChangeRow {
    kind: i16,
    scope: Id,
    scope_kind: Option<i16>,
    object: Option<Id>,
    version: Option<String>,
    epoch: Option<i64>,
    recipient: Option<Id>,
    owner: Option<Id>,
    former_owner: Option<UserId>,
}

impl ChangeRow {
    fn new(kind: &ChangeKind, former_owner: Option<&UserId>) -> Self {
        let mut row = ChangeRow {
            kind: 0,
            scope: kind.scope(),
            scope_kind: None,
            object: None,
            version: None,
            epoch: None,
            recipient: None,
            owner: None,
            former_owner: None,
        };
        match kind {
            ChangeKind::ScopeCreated { kind, .. } => {
                row.kind = 1;
                row.scope_kind = Some(kind_code(*kind));
            }
            ChangeKind::Manifest { version, .. } => {
                row.kind = 2;
                row.version = Some(version.to_string());
            }
            ChangeKind::CollectionKey { epoch, .. } => {
                row.kind = 3;
                row.epoch = Some(i64::from(*epoch));
            }
            ChangeKind::ObjectDeleted(o) => {
                row.kind = 4;
                row.object = Some(o.object);
                row.version = Some(o.version.to_string());
            }
            ChangeKind::Envelope(e) | ChangeKind::EnvelopeDeleted(e) => {
                row.kind = if matches!(kind, ChangeKind::Envelope(_)) {
                    5
                } else {
                    6
                };
                row.recipient = Some(e.recipient);
                row.owner = Some(e.owner);
                row.epoch = Some(i64::from(e.epoch));
            }
            ChangeKind::Roster { version, .. } => {
                row.kind = 7;
                row.version = Some(version.to_string());
            }
            ChangeKind::ScopeDeleted { kind, .. } => {
                row.kind = 8;
                row.scope_kind = Some(kind_code(*kind));
                row.former_owner = former_owner.copied();
            }
        }
        row
    }
}

/// Appends `changes` to the feed, in order, as the last step of a write transaction:
/// the `feed` row lock taken here is held until the caller commits, so change writers
/// commit in `seq` order. One statement per change, sent with its parameter types (one
/// round trip, no prepared statement), to keep that span short.
fn append(tx: &mut Transaction<'_>, changes: &[(ChangeKind, Option<UserId>)]) -> Result<(), Fail> {
    for (kind, former) in changes {
        let r = ChangeRow::new(kind, former.as_ref());
        let id = |v: &Option<Id>| v.map(|b| b.to_vec());
        let (object, recipient, owner, former_owner) = (
            id(&r.object),
            id(&r.recipient),
            id(&r.owner),
            id(&r.former_owner),
        );
        let scope = r.scope.to_vec();
        let inserted = tx.execute_typed(
            "WITH c AS (UPDATE feed SET last_seq = last_seq + 1 RETURNING last_seq) \
             INSERT INTO changes (seq, kind, scope, scope_kind, object, version, epoch, \
                                  recipient, owner, former_owner) \
             SELECT c.last_seq, $1, $2, $3, $4, $5::numeric, $6, $7, $8, $9 FROM c",
            &[
                (&r.kind, Type::INT2),
                (&scope, Type::BYTEA),
                (&r.scope_kind, Type::INT2),
                (&object, Type::BYTEA),
                (&r.version, Type::TEXT),
                (&r.epoch, Type::INT8),
                (&recipient, Type::BYTEA),
                (&owner, Type::BYTEA),
                (&former_owner, Type::BYTEA),
            ],
        )?;
        if inserted != 1 {
            return Err(corrupt("change feed counter (no row)").into());
        }
    }
    Ok(())
}

/// Locks scope `id` for the rest of the transaction (every write under a scope takes this
/// lock first, so they serialise) and returns its kind and owner.
fn lock_scope(tx: &mut Transaction<'_>, id: &Id) -> Result<Option<(ScopeKind, UserId)>, Fail> {
    match tx.query_opt(
        "SELECT kind, owner FROM scopes WHERE id = $1 FOR NO KEY UPDATE",
        &[id],
    )? {
        None => Ok(None),
        Some(row) => Ok(Some(scope_row(&row)?)),
    }
}

/// Locks scope `id` if it exists with kind `kind`; its owner.
fn lock_scope_of(
    tx: &mut Transaction<'_>,
    id: &Id,
    kind: ScopeKind,
) -> Result<Option<UserId>, Fail> {
    Ok(lock_scope(tx, id)?.and_then(|(k, owner)| (k == kind).then_some(owner)))
}

/// Adds `delta` bytes (may be negative) to scope `id` (locked by the caller) and to its
/// owner's usage. `false` — and the caller rolls back — if the write grows the usage past
/// `quota`. The owner's `owner_usage` row lock serialises the quota decisions of one owner.
fn charge(
    tx: &mut Transaction<'_>,
    id: &Id,
    owner: &UserId,
    delta: i64,
    quota: u64,
) -> Result<bool, Fail> {
    if delta == 0 {
        return Ok(true);
    }
    if delta > 0 {
        let quota = i64::try_from(quota).unwrap_or(i64::MAX);
        if delta > quota {
            return Ok(false);
        }
        let charged = tx.query_opt(
            "INSERT INTO owner_usage AS u (owner, bytes) VALUES ($1, $2) \
             ON CONFLICT (owner) DO UPDATE SET bytes = u.bytes + EXCLUDED.bytes \
             WHERE u.bytes <= $3 - EXCLUDED.bytes \
             RETURNING bytes",
            &[owner, &delta, &quota],
        )?;
        if charged.is_none() {
            return Ok(false);
        }
    } else {
        let n = tx.execute(
            "UPDATE owner_usage SET bytes = bytes + $2 WHERE owner = $1",
            &[owner, &delta],
        )?;
        if n != 1 {
            return Err(corrupt("usage record (missing for an owner with data)").into());
        }
    }
    tx.execute(
        "UPDATE scopes SET bytes = bytes + $2 WHERE id = $1",
        &[id, &delta],
    )?;
    Ok(true)
}

/// The stored length of a value (`None`: no such row), from a `SELECT octet_length(…)`.
fn old_len(row: Option<Row>) -> Result<i64, Fail> {
    match row {
        None => Ok(0),
        Some(r) => Ok(i64::from(get::<i32>(&r, 0)?)),
    }
}

impl PgBackend {
    /// Connects to the database at `url` (a `postgres://` URL or `key=value` string),
    /// creates the tables in `schema` (default `public`) if they are not there yet, and
    /// runs [`Backend::check`]. `schema` must match `[a-z_][a-z0-9_]{0,62}` (and not start
    /// with `pg_`); it is created if missing. `pool_size` connections at most are opened.
    ///
    /// Refuses a schema that holds tables of this backend's names without its version
    /// table (foreign or half-made), a schema of another version, and a damaged one. The
    /// connection is not encrypted (`NoTls`): use it on loopback or a private network.
    pub fn connect(url: &str, schema: Option<&str>, pool_size: u32) -> Result<Self, BackendError> {
        let schema = schema.unwrap_or(DEFAULT_SCHEMA);
        if !valid_schema_name(schema) {
            return Err(BackendError::new(
                "postgres: invalid schema name (wanted [a-z_][a-z0-9_]{0,62}, not starting \
                 with pg_)",
            ));
        }
        if pool_size == 0 {
            return Err(BackendError::new(
                "postgres: the pool needs at least one connection",
            ));
        }
        // The parser's message is not passed on: it could quote parts of the URL.
        let mut config: Config = url
            .parse()
            .map_err(|_| BackendError::new("postgres: the database URL does not parse"))?;
        if config.get_application_name().is_none() {
            config.application_name("vault-server");
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        let mut client = config.connect(NoTls).map_err(|e| describe("connect", &e))?;
        install(&mut client, schema).map_err(|e| e.into_backend("schema setup"))?;
        drop(client);

        let setup = SessionSetup {
            sql: format!(
                "SET search_path TO \"{schema}\"; \
                 SET synchronous_commit TO on; \
                 SET idle_in_transaction_session_timeout TO '60s'"
            ),
        };
        let pool = Pool::builder()
            .max_size(pool_size)
            .min_idle(Some(1))
            .connection_timeout(POOL_TIMEOUT)
            .connection_customizer(Box::new(setup))
            .build(PostgresConnectionManager::new(config, NoTls))
            .map_err(|e| BackendError::new(format!("postgres: connection pool: {e}")))?;
        let backend = Self {
            pool: Some(pool),
            schema: schema.to_owned(),
        };
        backend.check()?;
        Ok(backend)
    }

    /// The schema this backend's tables are in.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    fn pool(&self) -> &Pool<Manager> {
        match &self.pool {
            Some(pool) => pool,
            // Only `Drop` empties the field, and nothing runs after it.
            None => unreachable!("the pool is taken only when the backend is dropped"),
        }
    }

    fn conn(&self, op: &str) -> Result<Conn, BackendError> {
        self.pool()
            .get()
            .map_err(|e| BackendError::new(format!("postgres: {op}: no connection: {e}")))
    }

    /// Runs reads (or one self-contained statement) on a pooled connection.
    fn read<T>(
        &self,
        op: &str,
        f: impl FnOnce(&mut Client) -> Result<T, Fail>,
    ) -> Result<T, BackendError> {
        let mut conn = self.conn(op)?;
        f(&mut conn).map_err(|e| e.into_backend(op))
    }

    /// Runs `f` in a READ COMMITTED transaction and commits or rolls back as it says;
    /// tried again (from the start) when the database reports a serialization failure or
    /// a deadlock, which roll the attempt back.
    fn write<T>(
        &self,
        op: &str,
        mut f: impl FnMut(&mut Transaction<'_>) -> Result<End<T>, Fail>,
    ) -> Result<T, BackendError> {
        let mut conn = self.conn(op)?;
        let mut attempt = 1;
        loop {
            match Self::attempt(&mut conn, &mut f) {
                Ok(t) => return Ok(t),
                Err(Fail::Db(e)) if retryable(&e) && attempt < ATTEMPTS => {
                    tracing::debug!(op, attempt, "postgres: transaction retried");
                    std::thread::sleep(Duration::from_millis(5 * u64::from(attempt)));
                    attempt += 1;
                }
                Err(e) => return Err(e.into_backend(op)),
            }
        }
    }

    fn attempt<T>(
        conn: &mut Client,
        f: &mut impl FnMut(&mut Transaction<'_>) -> Result<End<T>, Fail>,
    ) -> Result<T, Fail> {
        let mut tx = conn
            .build_transaction()
            .isolation_level(IsolationLevel::ReadCommitted)
            .start()?;
        match f(&mut tx)? {
            End::Commit(t) => {
                tx.commit()?;
                Ok(t)
            }
            End::Rollback(t) => {
                tx.rollback()?;
                Ok(t)
            }
        }
    }

    /// Stores `value` under `scope` (of kind `kind`, or any): reads the old length with
    /// `old` (parameters: `key`), then inserts or replaces with `upsert` (parameters: `key`
    /// and `value` last), charges the difference and appends `change` — all under the
    /// scope's row lock, so the difference charged is exact.
    #[allow(clippy::too_many_arguments)]
    fn put_under_scope(
        &self,
        op: &str,
        scope: &Id,
        kind: Option<ScopeKind>,
        quota: u64,
        old: &str,
        upsert: &str,
        key: &[&(dyn ToSql + Sync)],
        value: &[u8],
        change: Option<ChangeKind>,
    ) -> Result<Write, BackendError> {
        let new_len = len_i64(value.len())?;
        let mut params: Vec<&(dyn ToSql + Sync)> = key.to_vec();
        params.push(&value);
        self.write(op, |tx| {
            let owner = match (lock_scope(tx, scope)?, kind) {
                (None, _) => return Ok(End::Rollback(Write::NoScope)),
                (Some((k, _)), Some(want)) if k != want => {
                    return Ok(End::Rollback(Write::NoScope))
                }
                (Some((_, owner)), _) => owner,
            };
            let before = old_len(tx.query_opt(old, key)?)?;
            tx.execute(upsert, &params)?;
            if !charge(tx, scope, &owner, new_len - before, quota)? {
                return Ok(End::Rollback(Write::QuotaExceeded));
            }
            if let Some(change) = change {
                append(tx, &[(change, None)])?;
            }
            Ok(End::Commit(Write::Done))
        })
    }
}

/// Creates the schema and its tables unless they exist, under an advisory lock so that
/// nodes starting together do not race. A schema that has any table of ours but no
/// version table is refused (a foreign application's tables, or a half-made schema);
/// one with a version table is left to [`Backend::check`].
fn install(client: &mut Client, schema: &str) -> Result<(), Fail> {
    let mut tx = client.transaction()?;
    tx.execute(
        "SELECT pg_advisory_xact_lock($1, hashtext($2))",
        &[&SETUP_LOCK, &schema],
    )?;
    let exists: bool = get(
        &tx.query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = $1)",
            &[&schema],
        )?,
        0,
    )?;
    if !exists {
        tx.batch_execute(&format!("CREATE SCHEMA \"{schema}\""))?;
    }
    let mut present = BTreeSet::new();
    for row in tx.query(
        "SELECT tablename::text FROM pg_catalog.pg_tables WHERE schemaname = $1",
        &[&schema],
    )? {
        present.insert(get::<String>(&row, 0)?);
    }
    if present.contains("vault_schema_version") {
        migrate(&mut tx, schema)?;
        tx.commit()?;
        return Ok(());
    }
    if let Some(name) = COLUMNS
        .iter()
        .map(|(t, _)| *t)
        .find(|t| present.contains(*t))
    {
        return Err(BackendError::new(format!(
            "postgres: schema \"{schema}\" has a table \"{name}\" but no vault_schema_version: \
             a foreign or incomplete schema (refusing to use it; give the vault its own \
             schema or database)"
        ))
        .into());
    }
    tx.batch_execute(&format!("SET LOCAL search_path TO \"{schema}\""))?;
    tx.batch_execute(&DDL.replace("{U64}", U64_MAX_SQL))?;
    tx.batch_execute(pg_audit::DDL)?;
    tx.execute(
        "INSERT INTO vault_schema_version (component, version) VALUES ($1, $2)",
        &[&COMPONENT, &SCHEMA_VERSION],
    )?;
    tx.commit()?;
    Ok(())
}

/// Brings a schema of an older version up to [`SCHEMA_VERSION`] with [`MIGRATIONS`], inside
/// the caller's transaction (which holds the setup lock). Anything it does not recognise —
/// no version row, another component, a newer or unknown version — is left for
/// [`Backend::check`] to refuse.
fn migrate(tx: &mut Transaction<'_>, schema: &str) -> Result<(), Fail> {
    let found = {
        // A savepoint: a read that fails (a foreign version table) rolls back to it and
        // leaves `tx` usable.
        let mut probe = tx.transaction()?;
        let read = probe.query(
            &format!("SELECT component, version FROM \"{schema}\".vault_schema_version"),
            &[],
        );
        let found = match read.as_deref() {
            Ok([row]) => match (row.try_get::<_, String>(0), row.try_get::<_, i32>(1)) {
                (Ok(component), Ok(version)) if component == COMPONENT => Some(version),
                _ => None,
            },
            _ => None,
        };
        if read.is_ok() {
            probe.commit()?;
        } else {
            probe.rollback()?;
        }
        found
    };
    let Some(mut version) = found else {
        return Ok(());
    };
    if version >= SCHEMA_VERSION {
        return Ok(());
    }
    tx.batch_execute(&format!("SET LOCAL search_path TO \"{schema}\""))?;
    for (to, statements) in MIGRATIONS {
        if *to == version + 1 {
            tx.batch_execute(statements)?;
            tx.execute(
                "UPDATE vault_schema_version SET version = $2 WHERE component = $1",
                &[&COMPONENT, to],
            )?;
            tracing::info!(schema, from = version, to, "postgres: schema migrated");
            version = *to;
        }
    }
    Ok(())
}

impl PgBackend {
    fn damaged(&self, what: &str) -> BackendError {
        BackendError::new(format!(
            "postgres: schema \"{}\": {what} (refusing to start on a damaged or foreign store)",
            self.schema
        ))
    }

    /// The version row, the tables and their columns.
    fn check_layout(&self, conn: &mut Client) -> Result<(), Fail> {
        let rows = match conn.query("SELECT component, version FROM vault_schema_version", &[]) {
            Ok(rows) => rows,
            Err(e) if e.code() == Some(&SqlState::UNDEFINED_TABLE) => {
                return Err(self.damaged("no vault_schema_version table").into())
            }
            Err(e) if e.code() == Some(&SqlState::UNDEFINED_COLUMN) => {
                return Err(self
                    .damaged("vault_schema_version is not a vault-server version table")
                    .into())
            }
            Err(e) => return Err(e.into()),
        };
        let [row] = rows.as_slice() else {
            return Err(self
                .damaged(&format!(
                    "vault_schema_version has {} rows, not one",
                    rows.len()
                ))
                .into());
        };
        let component: String = get(row, 0)?;
        let version: i32 = get(row, 1)?;
        if component != COMPONENT {
            return Err(self
                .damaged("vault_schema_version names another component")
                .into());
        }
        if version != SCHEMA_VERSION {
            let why = if version > SCHEMA_VERSION {
                format!(
                    "schema version {version} was written by a newer vault-server (this one \
                     knows version {SCHEMA_VERSION})"
                )
            } else {
                format!("unknown schema version {version} (this build knows {SCHEMA_VERSION})")
            };
            return Err(self.damaged(&why).into());
        }

        let mut found: BTreeMap<String, BTreeSet<(String, String)>> = BTreeMap::new();
        for row in conn.query(
            "SELECT c.relname::text, a.attname::text, \
                    pg_catalog.format_type(a.atttypid, a.atttypmod) \
             FROM pg_catalog.pg_attribute a \
             JOIN pg_catalog.pg_class c ON c.oid = a.attrelid \
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') \
               AND a.attnum > 0 AND NOT a.attisdropped",
            &[&self.schema],
        )? {
            found
                .entry(get(&row, 0)?)
                .or_default()
                .insert((get(&row, 1)?, get(&row, 2)?));
        }
        for (table, columns) in COLUMNS.iter().chain(pg_audit::COLUMNS) {
            let want: BTreeSet<(String, String)> = columns
                .iter()
                .map(|(c, t)| ((*c).to_owned(), (*t).to_owned()))
                .collect();
            match found.get(*table) {
                None => return Err(self.damaged(&format!("table {table} is missing")).into()),
                Some(have) if *have != want => {
                    return Err(self
                        .damaged(&format!("table {table} does not have the expected columns"))
                        .into())
                }
                Some(_) => {}
            }
        }
        Ok(())
    }

    /// A sample of every table decodes, the change feed counter is not behind the feed,
    /// and sampled owners' usage equals the sum over their scopes.
    fn check_rows(&self, conn: &mut Client) -> Result<(), Fail> {
        let bad = |what: &str| -> Fail { self.damaged(&format!("corrupt {what}")).into() };
        for row in conn.query(
            "SELECT id, name, keyring_version FROM accounts LIMIT $1",
            &[&SAMPLE],
        )? {
            let id: Vec<u8> = get(&row, 0)?;
            let name: Vec<u8> = get(&row, 1)?;
            let version: i64 = get(&row, 2)?;
            if id.len() != 16 || String::from_utf8(name).is_err() || version < 1 {
                return Err(bad("account record"));
            }
        }
        for row in conn.query(
            "SELECT token_hash, user_id, created::text, expires::text FROM sessions LIMIT $1",
            &[&SAMPLE],
        )? {
            let hash: Vec<u8> = get(&row, 0)?;
            let user: Vec<u8> = get(&row, 1)?;
            let created: String = get(&row, 2)?;
            let expires: String = get(&row, 3)?;
            if hash.len() != 32
                || user.len() != 16
                || parse_u64(&created).is_none()
                || parse_u64(&expires).is_none()
            {
                return Err(bad("session record"));
            }
        }
        for row in conn.query("SELECT kind, owner, bytes FROM scopes LIMIT $1", &[&SAMPLE])? {
            let bytes: i64 = get(&row, 2)?;
            if scope_row(&row).is_err() || bytes < 0 {
                return Err(bad("scope record"));
            }
        }
        for row in conn.query(
            "SELECT u.bytes, (SELECT coalesce(sum(s.bytes), 0)::bigint FROM scopes s \
                              WHERE s.owner = u.owner) \
             FROM (SELECT owner, bytes FROM owner_usage LIMIT $1) u",
            &[&SAMPLE],
        )? {
            let usage: i64 = get(&row, 0)?;
            let sum: i64 = get(&row, 1)?;
            if usage != sum {
                return Err(bad("usage record (not the sum over the owner's scopes)"));
            }
        }
        for (what, sql) in [
            (
                "page key",
                "SELECT object, version::text, idx FROM pages LIMIT $1",
            ),
            (
                "header key",
                "SELECT object, version::text, 0::bigint FROM headers LIMIT $1",
            ),
        ] {
            for row in conn.query(sql, &[&SAMPLE])? {
                if get_id(&row, 0, what).is_err()
                    || get_u64(&row, 1, what).is_err()
                    || get_u32(&row, 2, what).is_err()
                {
                    return Err(bad(what));
                }
            }
        }
        for row in conn.query(
            "SELECT recipient, owner, epoch FROM envelopes LIMIT $1",
            &[&SAMPLE],
        )? {
            let what = "envelope key";
            if get_id(&row, 0, what).is_err()
                || get_id(&row, 1, what).is_err()
                || get_u32(&row, 2, what).is_err()
            {
                return Err(bad(what));
            }
        }
        for (what, sql) in [
            (
                "manifest record",
                "SELECT version::text FROM manifests LIMIT $1",
            ),
            ("roster key", "SELECT version::text FROM rosters LIMIT $1"),
        ] {
            for row in conn.query(sql, &[&SAMPLE])? {
                if get_u64(&row, 0, what).is_err() {
                    return Err(bad(what));
                }
            }
        }
        // The newest changes: what devices read next.
        for row in conn.query(
            &format!("SELECT {CHANGE_COLUMNS} FROM changes ORDER BY seq DESC LIMIT $1"),
            &[&SAMPLE],
        )? {
            if RawChange::from_row(&row)?.decode().is_none() {
                return Err(bad("change record"));
            }
        }
        let counters = conn.query("SELECT last_seq FROM feed", &[])?;
        let [counter] = counters.as_slice() else {
            return Err(bad("change feed counter (not exactly one row)"));
        };
        let last: i64 = get(counter, 0)?;
        let max: Option<i64> = get(&conn.query_one("SELECT max(seq) FROM changes", &[])?, 0)?;
        if max.is_some_and(|m| m > last) {
            return Err(bad("change feed counter (behind the feed)"));
        }
        Ok(())
    }
}

impl Backend for PgBackend {
    fn account_exists_settled(&self, user: &UserId) -> Result<bool, BackendError> {
        self.read("account exists", |c| {
            // FOR SHARE waits for a `delete_account` that has deleted the row (it deletes
            // the account, then its sessions and scopes, in one transaction) and then finds
            // no row.
            Ok(
                c.query_opt("SELECT 1 FROM accounts WHERE id = $1 FOR SHARE", &[user])?
                    .is_some(),
            )
        })
    }

    /// The start-up check: the version row says this layout, every table has exactly the
    /// expected columns, a sample of every table decodes, the feed counter is not behind
    /// the feed, sampled owners' usage matches their scopes. Warns (does not refuse) if
    /// the server runs with `fsync = off`, which voids the durability of commits.
    fn check(&self) -> Result<(), BackendError> {
        let mut conn = self.conn("check")?;
        self.check_layout(&mut conn)
            .and_then(|()| self.check_rows(&mut conn))
            .and_then(|()| self.check_audit(&mut conn))
            .map_err(|e| e.into_backend("check"))?;
        let fsync: Option<String> = conn
            .query_one("SHOW fsync", &[])
            .ok()
            .and_then(|row| row.try_get(0).ok());
        if fsync.as_deref() == Some("off") {
            tracing::warn!(
                "postgres: the database runs with fsync = off: acknowledged writes may be \
                 lost in a crash of its host"
            );
        }
        Ok(())
    }

    fn setting_or_insert(&self, key: &str, value: &[u8]) -> Result<Vec<u8>, BackendError> {
        self.read("setting", |c| {
            if c.execute(
                "INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                &[&key, &value],
            )? == 1
            {
                return Ok(value.to_vec());
            }
            // A separate statement: its snapshot includes the winner's commit.
            match c.query_opt("SELECT value FROM settings WHERE key = $1", &[&key])? {
                Some(row) => get(&row, 0),
                None => Err(BackendError::new("postgres: setting vanished").into()),
            }
        })
    }
}

impl AccountStore for PgBackend {
    fn create_account_with_recovery(
        &self,
        a: &NewAccount<'_>,
        recovery_verifier: Option<&[u8]>,
    ) -> Result<bool, BackendError> {
        // One statement: all parts or none; a taken id or name inserts nothing.
        self.read("create account", |c| {
            Ok(c.execute(
                "INSERT INTO accounts \
                 (id, name, verifier, keyring_version, keyring, identity, recovery_verifier) \
                 VALUES ($1, $2, $3, 1, $4, $5, $6) ON CONFLICT DO NOTHING",
                &[
                    &a.user,
                    &a.name.as_bytes(),
                    &a.verifier,
                    &a.keyring,
                    &a.identity,
                    &recovery_verifier,
                ],
            )? == 1)
        })
    }

    fn user_by_name(&self, name: &str) -> Result<Option<UserId>, BackendError> {
        self.read("user by name", |c| {
            match c.query_opt(
                "SELECT id FROM accounts WHERE name = $1",
                &[&name.as_bytes()],
            )? {
                None => Ok(None),
                Some(row) => Ok(Some(get_id(&row, 0, "account record")?)),
            }
        })
    }

    fn name(&self, user: &UserId) -> Result<Option<String>, BackendError> {
        self.read("name", |c| {
            match c.query_opt("SELECT name FROM accounts WHERE id = $1", &[user])? {
                None => Ok(None),
                Some(row) => {
                    let name: Vec<u8> = get(&row, 0)?;
                    Ok(Some(
                        String::from_utf8(name).map_err(|_| corrupt("account record"))?,
                    ))
                }
            }
        })
    }

    fn verifier(&self, user: &UserId) -> Result<Option<Vec<u8>>, BackendError> {
        self.read("verifier", |c| {
            match c.query_opt("SELECT verifier FROM accounts WHERE id = $1", &[user])? {
                None => Ok(None),
                Some(row) => Ok(Some(get(&row, 0)?)),
            }
        })
    }

    fn set_verifier(&self, user: &UserId, verifier: &[u8]) -> Result<bool, BackendError> {
        self.read("set verifier", |c| {
            Ok(c.execute(
                "UPDATE accounts SET verifier = $2 WHERE id = $1",
                &[user, &verifier],
            )? == 1)
        })
    }

    fn keyring(&self, user: &UserId) -> Result<Option<(u64, Vec<u8>)>, BackendError> {
        self.read("keyring", |c| {
            match c.query_opt(
                "SELECT keyring_version, keyring FROM accounts WHERE id = $1",
                &[user],
            )? {
                None => Ok(None),
                Some(row) => {
                    let version: i64 = get(&row, 0)?;
                    let version = u64::try_from(version).map_err(|_| corrupt("keyring version"))?;
                    Ok(Some((version, get(&row, 1)?)))
                }
            }
        })
    }

    fn swap_keyring(&self, user: &UserId, expected: u64, blob: &[u8]) -> Result<Cas, BackendError> {
        self.read("swap keyring", |c| {
            // One conditional UPDATE: a concurrent swap that commits first makes this one
            // re-check its WHERE against the new version and change nothing.
            if let Ok(expected) = i64::try_from(expected) {
                if c.execute(
                    "UPDATE accounts SET keyring = $3, keyring_version = keyring_version + 1 \
                     WHERE id = $1 AND keyring_version = $2",
                    &[user, &expected, &blob],
                )? == 1
                {
                    return Ok(Cas::Done);
                }
            }
            let current = match c.query_opt(
                "SELECT keyring_version FROM accounts WHERE id = $1",
                &[user],
            )? {
                None => 0,
                Some(row) => {
                    u64::try_from(get::<i64>(&row, 0)?).map_err(|_| corrupt("keyring version"))?
                }
            };
            Ok(Cas::Conflict { current })
        })
    }

    fn change_password(
        &self,
        user: &UserId,
        expected: u64,
        keyring: &[u8],
        verifier: &[u8],
    ) -> Result<Cas, BackendError> {
        self.read("change password", |c| {
            // One conditional UPDATE of both columns, as in `swap_keyring`.
            if let Ok(expected) = i64::try_from(expected) {
                if c.execute(
                    "UPDATE accounts SET keyring = $3, keyring_version = keyring_version + 1, \
                     verifier = $4 WHERE id = $1 AND keyring_version = $2",
                    &[user, &expected, &keyring, &verifier],
                )? == 1
                {
                    return Ok(Cas::Done);
                }
            }
            let current = match c.query_opt(
                "SELECT keyring_version FROM accounts WHERE id = $1",
                &[user],
            )? {
                None => 0,
                Some(row) => {
                    u64::try_from(get::<i64>(&row, 0)?).map_err(|_| corrupt("keyring version"))?
                }
            };
            Ok(Cas::Conflict { current })
        })
    }

    fn recovery_verifier(&self, user: &UserId) -> Result<Option<Vec<u8>>, BackendError> {
        self.read("recovery verifier", |c| {
            match c.query_opt(
                "SELECT recovery_verifier FROM accounts WHERE id = $1",
                &[user],
            )? {
                None => Ok(None),
                Some(row) => Ok(get::<Option<Vec<u8>>>(&row, 0)?),
            }
        })
    }

    fn replace_keyring(
        &self,
        user: &UserId,
        expected: u64,
        r: &KeyringReplacement<'_>,
    ) -> Result<Cas, BackendError> {
        self.read("replace keyring", |c| {
            // One conditional UPDATE of every column, as in `swap_keyring`; a verifier not
            // given keeps its stored value.
            if let Ok(expected) = i64::try_from(expected) {
                if c.execute(
                    "UPDATE accounts SET keyring = $3, keyring_version = keyring_version + 1, \
                     verifier = coalesce($4, verifier), \
                     recovery_verifier = coalesce($5, recovery_verifier) \
                     WHERE id = $1 AND keyring_version = $2",
                    &[
                        user,
                        &expected,
                        &r.keyring,
                        &r.login_verifier,
                        &r.recovery_verifier,
                    ],
                )? == 1
                {
                    return Ok(Cas::Done);
                }
            }
            let current = match c.query_opt(
                "SELECT keyring_version FROM accounts WHERE id = $1",
                &[user],
            )? {
                None => 0,
                Some(row) => {
                    u64::try_from(get::<i64>(&row, 0)?).map_err(|_| corrupt("keyring version"))?
                }
            };
            Ok(Cas::Conflict { current })
        })
    }

    fn identity(&self, user: &UserId) -> Result<Option<Vec<u8>>, BackendError> {
        self.read("identity", |c| {
            match c.query_opt("SELECT identity FROM accounts WHERE id = $1", &[user])? {
                None => Ok(None),
                Some(row) => Ok(Some(get(&row, 0)?)),
            }
        })
    }

    fn set_identity(&self, user: &UserId, bundle: &[u8]) -> Result<bool, BackendError> {
        self.read("set identity", |c| {
            Ok(c.execute(
                "UPDATE accounts SET identity = $2 WHERE id = $1",
                &[user, &bundle],
            )? == 1)
        })
    }

    fn delete_account(&self, user: &UserId) -> Result<bool, BackendError> {
        self.write("delete account", |tx| {
            if tx.execute("DELETE FROM accounts WHERE id = $1", &[user])? == 0 {
                return Ok(End::Rollback(false));
            }
            tx.execute("DELETE FROM sessions WHERE user_id = $1", &[user])?;
            // Everything under the scopes goes by ON DELETE CASCADE. A scope (or session)
            // the owner creates concurrently, after this statement's snapshot, is undone by
            // its creator: `account_exists_settled` waits for this transaction and then
            // finds no account.
            let mut gone = Vec::new();
            let mut freed = 0i64;
            for row in tx.query(
                "DELETE FROM scopes WHERE owner = $1 RETURNING id, kind, bytes",
                &[user],
            )? {
                let id = get_id(&row, 0, "scope record")?;
                let kind = scope_kind(get(&row, 1)?).ok_or_else(|| corrupt("scope record"))?;
                freed += get::<i64>(&row, 2)?;
                gone.push((id, kind));
            }
            gone.sort_unstable_by_key(|(id, _)| *id);
            if freed > 0
                && tx.execute(
                    "UPDATE owner_usage SET bytes = bytes - $2 WHERE owner = $1",
                    &[user, &freed],
                )? != 1
            {
                return Err(corrupt("usage record (missing for an owner with data)").into());
            }
            tx.execute(
                "DELETE FROM owner_usage WHERE owner = $1 AND bytes = 0",
                &[user],
            )?;
            let changes: Vec<(ChangeKind, Option<UserId>)> = gone
                .into_iter()
                .map(|(scope, kind)| (ChangeKind::ScopeDeleted { scope, kind }, Some(*user)))
                .collect();
            append(tx, &changes)?;
            Ok(End::Commit(true))
        })
    }

    fn mfa(&self, user: &UserId) -> Result<Option<(u64, Vec<u8>)>, BackendError> {
        self.read("mfa", |c| {
            match c.query_opt(
                "SELECT version, record FROM mfa WHERE user_id = $1",
                &[user],
            )? {
                None => Ok(None),
                Some(row) => {
                    let version = u64::try_from(get::<i64>(&row, 0)?)
                        .map_err(|_| corrupt("MFA record version"))?;
                    Ok(Some((version, get(&row, 1)?)))
                }
            }
        })
    }

    fn swap_mfa(
        &self,
        user: &UserId,
        expected: u64,
        record: &[u8],
    ) -> Result<Option<Cas>, BackendError> {
        let expected_sql = i64::try_from(expected)
            .map_err(|_| BackendError::new("MFA record version out of range for PostgreSQL"))?;
        self.write("swap mfa", |tx| {
            // The account row, shared: a deletion (which cascades to the record) either
            // finished before, and there is no account, or waits for this transaction.
            if tx
                .query_opt("SELECT 1 FROM accounts WHERE id = $1 FOR SHARE", &[user])?
                .is_none()
            {
                return Ok(End::Rollback(None));
            }
            let current = match tx.query_opt(
                "SELECT version FROM mfa WHERE user_id = $1 FOR UPDATE",
                &[user],
            )? {
                None => 0,
                Some(row) => u64::try_from(get::<i64>(&row, 0)?)
                    .map_err(|_| corrupt("MFA record version"))?,
            };
            if current != expected {
                return Ok(End::Rollback(Some(Cas::Conflict { current })));
            }
            let written = if expected == 0 {
                tx.execute(
                    "INSERT INTO mfa (user_id, version, record) VALUES ($1, 1, $2) \
                     ON CONFLICT (user_id) DO NOTHING",
                    &[user, &record],
                )?
            } else {
                tx.execute(
                    "UPDATE mfa SET version = version + 1, record = $3 \
                     WHERE user_id = $1 AND version = $2",
                    &[user, &expected_sql, &record],
                )?
            };
            if written == 1 {
                Ok(End::Commit(Some(Cas::Done)))
            } else {
                // A concurrent first record won the insert.
                Ok(End::Rollback(Some(Cas::Conflict {
                    current: expected.saturating_add(1),
                })))
            }
        })
    }
}

impl SessionStore for PgBackend {
    type Error = BackendError;

    fn insert(&self, key: TokenHash, session: Session) -> Result<(), BackendError> {
        self.read("insert session", |c| {
            c.execute(
                "INSERT INTO sessions (token_hash, user_id, created, expires) \
                 VALUES ($1, $2, $3::text::numeric, $4::text::numeric) \
                 ON CONFLICT (token_hash) DO UPDATE SET user_id = EXCLUDED.user_id, \
                 created = EXCLUDED.created, expires = EXCLUDED.expires",
                &[
                    key.as_bytes(),
                    &session.user,
                    &session.created.to_string(),
                    &session.expires.to_string(),
                ],
            )?;
            Ok(())
        })
    }

    fn get(&self, key: &TokenHash) -> Result<Option<Session>, BackendError> {
        self.read("get session", |c| {
            // Sent with its parameter type: one round trip, no prepare (every request).
            match c.query_typed_opt(
                "SELECT user_id, created::text, expires::text FROM sessions \
                 WHERE token_hash = $1",
                &[(&key.as_bytes(), Type::BYTEA)],
            )? {
                None => Ok(None),
                Some(row) => Ok(Some(Session {
                    user: get_id(&row, 0, "session record")?,
                    created: get_u64(&row, 1, "session record")?,
                    expires: get_u64(&row, 2, "session record")?,
                })),
            }
        })
    }

    fn remove(&self, key: &TokenHash) -> Result<bool, BackendError> {
        self.read("remove session", |c| {
            Ok(c.execute(
                "DELETE FROM sessions WHERE token_hash = $1",
                &[key.as_bytes()],
            )? == 1)
        })
    }

    fn remove_user(&self, user: &UserId) -> Result<usize, BackendError> {
        self.read("remove sessions of a user", |c| {
            let n = c.execute("DELETE FROM sessions WHERE user_id = $1", &[user])?;
            Ok(usize::try_from(n).unwrap_or(usize::MAX))
        })
    }

    fn remove_expired(&self, now: u64) -> Result<usize, BackendError> {
        self.read("remove expired sessions", |c| {
            let n = c.execute(
                "DELETE FROM sessions WHERE expires <= $1::text::numeric",
                &[&now.to_string()],
            )?;
            Ok(usize::try_from(n).unwrap_or(usize::MAX))
        })
    }
}

impl DataStore for PgBackend {
    fn create_scope(
        &self,
        id: &Id,
        kind: ScopeKind,
        owner: &UserId,
    ) -> Result<Created, BackendError> {
        // The insert and the read of an existing scope are separate statements, so the
        // read sees a concurrent creator's commit; if that scope is deleted in between,
        // the creation is tried again.
        for _ in 0..ATTEMPTS {
            let created = self.write("create scope", |tx| {
                let inserted = tx.execute(
                    "INSERT INTO scopes (id, kind, owner, bytes) VALUES ($1, $2, $3, 0) \
                     ON CONFLICT (id) DO NOTHING",
                    &[id, &kind_code(kind), owner],
                )?;
                if inserted == 1 {
                    append(tx, &[(ChangeKind::ScopeCreated { scope: *id, kind }, None)])?;
                    tx.execute(
                        "UPDATE scopes SET created = (SELECT last_seq FROM feed) WHERE id = $1",
                        &[id],
                    )?;
                    return Ok(End::Commit(Some(Created::Created)));
                }
                let existing =
                    match tx.query_opt("SELECT kind, owner FROM scopes WHERE id = $1", &[id])? {
                        None => None,
                        Some(row) => {
                            let (kind, owner) = scope_row(&row)?;
                            Some(Created::Exists { kind, owner })
                        }
                    };
                Ok(End::Rollback(existing))
            })?;
            if let Some(created) = created {
                return Ok(created);
            }
        }
        Err(BackendError::new(
            "postgres: create scope: the scope id kept being created and deleted concurrently",
        ))
    }

    fn scope(&self, id: &Id) -> Result<Option<(ScopeKind, UserId)>, BackendError> {
        self.read("scope", |c| {
            match c.query_opt("SELECT kind, owner FROM scopes WHERE id = $1", &[id])? {
                None => Ok(None),
                Some(row) => Ok(Some(scope_row(&row)?)),
            }
        })
    }

    fn delete_scope(&self, id: &Id) -> Result<bool, BackendError> {
        self.write("delete scope", |tx| {
            // Waits for any writer under the scope (they hold its row lock); everything
            // under it goes by ON DELETE CASCADE.
            let Some(row) = tx.query_opt(
                "DELETE FROM scopes WHERE id = $1 RETURNING kind, owner, bytes",
                &[id],
            )?
            else {
                return Ok(End::Rollback(false));
            };
            let (kind, owner) = scope_row(&row)?;
            let bytes: i64 = get(&row, 2)?;
            if bytes > 0 {
                let n = tx.execute(
                    "UPDATE owner_usage SET bytes = bytes - $2 WHERE owner = $1",
                    &[&owner, &bytes],
                )?;
                if n != 1 {
                    return Err(corrupt("usage record (missing for an owner with data)").into());
                }
            }
            append(
                tx,
                &[(ChangeKind::ScopeDeleted { scope: *id, kind }, Some(owner))],
            )?;
            Ok(End::Commit(true))
        })
    }

    fn list_scopes(&self, user: &UserId) -> Result<Vec<(Id, ScopeKind)>, BackendError> {
        self.read("list scopes", |c| {
            let sql = format!(
                "{REACH_CTE} SELECT s.kind, s.id FROM scopes s \
                 WHERE s.id IN (SELECT id FROM reachable) ORDER BY s.id"
            );
            c.query(&sql, &[user])?
                .iter()
                .map(|row| {
                    let (kind, id) = scope_row(row)?;
                    Ok((id, kind))
                })
                .collect()
        })
    }

    fn can_reach(&self, user: &UserId, scope: &Id) -> Result<bool, BackendError> {
        self.read("can reach", |c| {
            get(&c.query_one(CAN_REACH, &[user, scope])?, 0)
        })
    }

    fn usage(&self, user: &UserId) -> Result<u64, BackendError> {
        self.read("usage", |c| {
            match c.query_opt("SELECT bytes FROM owner_usage WHERE owner = $1", &[user])? {
                None => Ok(0),
                Some(row) => {
                    Ok(u64::try_from(get::<i64>(&row, 0)?).map_err(|_| corrupt("usage record"))?)
                }
            }
        })
    }

    fn put_page(&self, key: &PageKey, page: &[u8], quota: u64) -> Result<Write, BackendError> {
        let version = key.version.to_string();
        let index = i64::from(key.index);
        self.put_under_scope(
            "put page",
            &key.collection,
            Some(ScopeKind::Collection),
            quota,
            "SELECT octet_length(data) FROM pages \
             WHERE collection = $1 AND object = $2 AND version = $3::text::numeric \
               AND idx = $4",
            "INSERT INTO pages (collection, object, version, idx, data) \
             VALUES ($1, $2, $3::text::numeric, $4, $5) \
             ON CONFLICT (collection, object, version, idx) DO UPDATE SET data = EXCLUDED.data",
            &[&key.collection, &key.object, &version, &index],
            page,
            None,
        )
    }

    fn get_page_as(&self, user: &UserId, key: &PageKey) -> Result<Option<Vec<u8>>, BackendError> {
        // One statement, sent with its parameter types (one round trip, no prepare).
        let sql = format!(
            "SELECT p.data FROM pages p \
             WHERE p.collection = $2 AND p.object = $3 AND p.version = $4::numeric \
               AND p.idx = $5 \
               AND EXISTS (SELECT 1 FROM scopes k WHERE k.id = $2 AND k.kind = 1) \
               AND ({CAN_REACH})"
        );
        let (version, index) = (key.version.to_string(), i64::from(key.index));
        self.read("get page", |c| {
            match c.query_typed_opt(
                &sql,
                &[
                    (user, Type::BYTEA),
                    (&key.collection, Type::BYTEA),
                    (&key.object, Type::BYTEA),
                    (&version, Type::TEXT),
                    (&index, Type::INT8),
                ],
            )? {
                None => Ok(None),
                Some(row) => Ok(Some(get(&row, 0)?)),
            }
        })
    }

    fn get_page(&self, key: &PageKey) -> Result<Option<Vec<u8>>, BackendError> {
        self.read("get page", |c| {
            match c.query_opt(
                "SELECT data FROM pages WHERE collection = $1 AND object = $2 \
                 AND version = $3::text::numeric AND idx = $4",
                &[
                    &key.collection,
                    &key.object,
                    &key.version.to_string(),
                    &i64::from(key.index),
                ],
            )? {
                None => Ok(None),
                Some(row) => Ok(Some(get(&row, 0)?)),
            }
        })
    }

    fn put_header(
        &self,
        key: &ObjectKey,
        header: &[u8],
        quota: u64,
    ) -> Result<Write, BackendError> {
        let version = key.version.to_string();
        self.put_under_scope(
            "put header",
            &key.collection,
            Some(ScopeKind::Collection),
            quota,
            "SELECT octet_length(header) FROM headers \
             WHERE collection = $1 AND object = $2 AND version = $3::text::numeric",
            "INSERT INTO headers (collection, object, version, header) \
             VALUES ($1, $2, $3::text::numeric, $4) \
             ON CONFLICT (collection, object, version) DO UPDATE SET header = EXCLUDED.header",
            &[&key.collection, &key.object, &version],
            header,
            None,
        )
    }

    fn get_header(&self, key: &ObjectKey) -> Result<Option<Vec<u8>>, BackendError> {
        self.read("get header", |c| {
            match c.query_opt(
                "SELECT header FROM headers WHERE collection = $1 AND object = $2 \
                 AND version = $3::text::numeric",
                &[&key.collection, &key.object, &key.version.to_string()],
            )? {
                None => Ok(None),
                Some(row) => Ok(Some(get(&row, 0)?)),
            }
        })
    }

    fn delete_object(&self, key: &ObjectKey) -> Result<bool, BackendError> {
        let version = key.version.to_string();
        self.write("delete object", |tx| {
            let Some((_, owner)) = lock_scope(tx, &key.collection)? else {
                return Ok(End::Rollback(false));
            };
            let row = tx.query_one(
                "WITH h AS (DELETE FROM headers \
                            WHERE collection = $1 AND object = $2 \
                              AND version = $3::text::numeric \
                            RETURNING octet_length(header)::bigint AS n), \
                      p AS (DELETE FROM pages \
                            WHERE collection = $1 AND object = $2 \
                              AND version = $3::text::numeric \
                            RETURNING octet_length(data)::bigint AS n) \
                 SELECT (SELECT count(*) FROM h) + (SELECT count(*) FROM p), \
                        (SELECT coalesce(sum(n), 0) FROM h)::bigint \
                          + (SELECT coalesce(sum(n), 0) FROM p)::bigint",
                &[&key.collection, &key.object, &version],
            )?;
            let removed: i64 = get(&row, 0)?;
            let freed: i64 = get(&row, 1)?;
            if removed == 0 {
                return Ok(End::Rollback(false));
            }
            charge(tx, &key.collection, &owner, -freed, u64::MAX)?;
            append(tx, &[(ChangeKind::ObjectDeleted(*key), None)])?;
            Ok(End::Commit(true))
        })
    }

    fn put_collection_key(
        &self,
        collection: &Id,
        epoch: u32,
        wrapped: &[u8],
        quota: u64,
    ) -> Result<Write, BackendError> {
        self.put_under_scope(
            "put collection key",
            collection,
            Some(ScopeKind::Collection),
            quota,
            "SELECT octet_length(wrapped) FROM collection_keys \
             WHERE collection = $1 AND epoch = $2",
            "INSERT INTO collection_keys (collection, epoch, wrapped) VALUES ($1, $2, $3) \
             ON CONFLICT (collection, epoch) DO UPDATE SET wrapped = EXCLUDED.wrapped",
            &[collection, &i64::from(epoch)],
            wrapped,
            Some(ChangeKind::CollectionKey {
                collection: *collection,
                epoch,
            }),
        )
    }

    fn get_collection_key(
        &self,
        collection: &Id,
        epoch: u32,
    ) -> Result<Option<Vec<u8>>, BackendError> {
        self.read("get collection key", |c| {
            match c.query_opt(
                "SELECT wrapped FROM collection_keys WHERE collection = $1 AND epoch = $2",
                &[collection, &i64::from(epoch)],
            )? {
                None => Ok(None),
                Some(row) => Ok(Some(get(&row, 0)?)),
            }
        })
    }

    fn get_manifest(&self, collection: &Id) -> Result<Option<(u64, Vec<u8>)>, BackendError> {
        self.read("get manifest", |c| {
            match c.query_opt(
                "SELECT version::text, manifest FROM manifests WHERE collection = $1",
                &[collection],
            )? {
                None => Ok(None),
                Some(row) => Ok(Some((get_u64(&row, 0, "manifest record")?, get(&row, 1)?))),
            }
        })
    }

    fn swap_manifest(
        &self,
        collection: &Id,
        expected: u64,
        version: u64,
        manifest: &[u8],
        quota: u64,
    ) -> Result<ManifestSwap, BackendError> {
        let new_len = len_i64(manifest.len())?;
        let version_text = version.to_string();
        self.write("swap manifest", |tx| {
            // The collection's row lock serialises every swap of its manifest, so the
            // version read below is the one this swap replaces.
            let Some(owner) = lock_scope_of(tx, collection, ScopeKind::Collection)? else {
                return Ok(End::Rollback(ManifestSwap::NoScope));
            };
            let (current, before) = match tx.query_opt(
                "SELECT version::text, octet_length(manifest) FROM manifests \
                 WHERE collection = $1",
                &[collection],
            )? {
                None => (0, 0),
                Some(row) => (
                    get_u64(&row, 0, "manifest record")?,
                    i64::from(get::<i32>(&row, 1)?),
                ),
            };
            if current != expected || version <= expected {
                return Ok(End::Rollback(ManifestSwap::Cas(Cas::Conflict { current })));
            }
            tx.execute(
                "INSERT INTO manifests (collection, version, manifest) \
                 VALUES ($1, $2::text::numeric, $3) \
                 ON CONFLICT (collection) DO UPDATE \
                 SET version = EXCLUDED.version, manifest = EXCLUDED.manifest",
                &[collection, &version_text, &manifest],
            )?;
            if !charge(tx, collection, &owner, new_len - before, quota)? {
                return Ok(End::Rollback(ManifestSwap::QuotaExceeded));
            }
            append(
                tx,
                &[(
                    ChangeKind::Manifest {
                        collection: *collection,
                        version,
                    },
                    None,
                )],
            )?;
            Ok(End::Commit(ManifestSwap::Cas(Cas::Done)))
        })
    }

    fn put_envelope(
        &self,
        key: &EnvelopeKey,
        envelope: &[u8],
        quota: u64,
    ) -> Result<Write, BackendError> {
        self.put_under_scope(
            "put envelope",
            &key.target,
            None,
            quota,
            "SELECT octet_length(envelope) FROM envelopes \
             WHERE recipient = $1 AND owner = $2 AND target = $3 AND epoch = $4",
            "INSERT INTO envelopes (recipient, owner, target, epoch, envelope) \
             VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (recipient, owner, target, epoch) \
             DO UPDATE SET envelope = EXCLUDED.envelope",
            &[
                &key.recipient,
                &key.owner,
                &key.target,
                &i64::from(key.epoch),
            ],
            envelope,
            Some(ChangeKind::Envelope(*key)),
        )
    }

    fn get_envelope(&self, key: &EnvelopeKey) -> Result<Option<Vec<u8>>, BackendError> {
        self.read("get envelope", |c| {
            match c.query_opt(
                "SELECT envelope FROM envelopes \
                 WHERE recipient = $1 AND owner = $2 AND target = $3 AND epoch = $4",
                &[
                    &key.recipient,
                    &key.owner,
                    &key.target,
                    &i64::from(key.epoch),
                ],
            )? {
                None => Ok(None),
                Some(row) => Ok(Some(get(&row, 0)?)),
            }
        })
    }

    fn list_envelopes(&self, recipient: &Id) -> Result<Vec<EnvelopeKey>, BackendError> {
        self.read("list envelopes", |c| {
            // bytea sorts bytewise and the epoch numerically: the order of the 52-byte key.
            c.query(
                "SELECT owner, target, epoch FROM envelopes WHERE recipient = $1 \
                 ORDER BY owner, target, epoch",
                &[recipient],
            )?
            .iter()
            .map(|row| {
                Ok(EnvelopeKey {
                    recipient: *recipient,
                    owner: get_id(row, 0, "envelope key")?,
                    target: get_id(row, 1, "envelope key")?,
                    epoch: get_u32(row, 2, "envelope key")?,
                })
            })
            .collect()
        })
    }

    fn delete_envelope(&self, key: &EnvelopeKey) -> Result<bool, BackendError> {
        let epoch = i64::from(key.epoch);
        self.write("delete envelope", |tx| {
            let Some((_, owner)) = lock_scope(tx, &key.target)? else {
                return Ok(End::Rollback(false));
            };
            let Some(row) = tx.query_opt(
                "DELETE FROM envelopes \
                 WHERE recipient = $1 AND owner = $2 AND target = $3 AND epoch = $4 \
                 RETURNING octet_length(envelope)",
                &[&key.recipient, &key.owner, &key.target, &epoch],
            )?
            else {
                return Ok(End::Rollback(false));
            };
            let freed = i64::from(get::<i32>(&row, 0)?);
            charge(tx, &key.target, &owner, -freed, u64::MAX)?;
            append(tx, &[(ChangeKind::EnvelopeDeleted(*key), None)])?;
            Ok(End::Commit(true))
        })
    }

    fn insert_roster(
        &self,
        group: &Id,
        version: u64,
        roster: &[u8],
        quota: u64,
    ) -> Result<InsertRoster, BackendError> {
        let len = len_i64(roster.len())?;
        let version_text = version.to_string();
        self.write("insert roster", |tx| {
            let Some(owner) = lock_scope_of(tx, group, ScopeKind::Group)? else {
                return Ok(End::Rollback(InsertRoster::NoScope));
            };
            if tx.execute(
                "INSERT INTO rosters (group_id, version, roster) \
                 VALUES ($1, $2::text::numeric, $3) ON CONFLICT DO NOTHING",
                &[group, &version_text, &roster],
            )? == 0
            {
                return Ok(End::Rollback(InsertRoster::Exists));
            }
            if !charge(tx, group, &owner, len, quota)? {
                return Ok(End::Rollback(InsertRoster::QuotaExceeded));
            }
            append(
                tx,
                &[(
                    ChangeKind::Roster {
                        group: *group,
                        version,
                    },
                    None,
                )],
            )?;
            Ok(End::Commit(InsertRoster::Done))
        })
    }

    fn get_roster(&self, group: &Id, version: u64) -> Result<Option<Vec<u8>>, BackendError> {
        self.read("get roster", |c| {
            match c.query_opt(
                "SELECT roster FROM rosters WHERE group_id = $1 AND version = $2::text::numeric",
                &[group, &version.to_string()],
            )? {
                None => Ok(None),
                Some(row) => Ok(Some(get(&row, 0)?)),
            }
        })
    }

    fn list_rosters(&self, group: &Id) -> Result<Vec<u64>, BackendError> {
        self.read("list rosters", |c| {
            c.query(
                "SELECT version::text FROM rosters WHERE group_id = $1 ORDER BY version",
                &[group],
            )?
            .iter()
            .map(|row| get_u64(row, 0, "roster key"))
            .collect()
        })
    }

    fn changes(&self, user: &UserId, after: u64, limit: usize) -> Result<Changes, BackendError> {
        let mut out = Changes {
            changes: Vec::new(),
            next: after,
            more: false,
        };
        // Sequence numbers are positive `bigint`s: nothing lies beyond i64::MAX.
        let Ok(after_i) = i64::try_from(after) else {
            return Ok(out);
        };
        let limit_i = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut conn = self.conn("changes")?;
        let result = (|| -> Result<Changes, Fail> {
            // One snapshot for the three statements; a read-only transaction never fails
            // to serialise.
            let mut tx = conn
                .build_transaction()
                .isolation_level(IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()?;
            if limit_i > 0 {
                let sql = format!(
                    "{REACH_CTE}, \
                     win AS (SELECT * FROM changes WHERE seq > $2 ORDER BY seq LIMIT $3) \
                     SELECT {CHANGE_COLUMNS} FROM win w \
                     WHERE CASE WHEN w.kind = 8 THEN w.former_owner = $1 \
                           ELSE w.seq >= (SELECT s.created FROM scopes s WHERE s.id = w.scope) \
                             AND (w.scope IN (SELECT id FROM reachable) \
                               OR (w.kind IN (5, 6) \
                                   AND w.recipient IN (SELECT id FROM principals))) END \
                     ORDER BY w.seq LIMIT $4"
                );
                for row in tx.query(&sql, &[user, &after_i, &SCAN_BUDGET, &limit_i])? {
                    let (change, _) = RawChange::from_row(&row)?
                        .decode()
                        .ok_or_else(|| corrupt("change record"))?;
                    out.changes.push(change);
                }
            }
            let full = limit_i > 0 && out.changes.len() >= limit;
            out.next = match out.changes.last() {
                Some(last) if full => last.seq,
                _ if limit_i == 0 => after,
                _ => {
                    // Everything in the window was examined.
                    let max: Option<i64> = get(
                        &tx.query_one(
                            "SELECT max(seq) FROM \
                             (SELECT seq FROM changes WHERE seq > $1 ORDER BY seq LIMIT $2) w",
                            &[&after_i, &SCAN_BUDGET],
                        )?,
                        0,
                    )?;
                    match max {
                        None => after,
                        Some(m) => u64::try_from(m).map_err(|_| corrupt("change record"))?,
                    }
                }
            };
            let next_i = i64::try_from(out.next).map_err(|_| corrupt("change record"))?;
            out.more = get(
                &tx.query_one(
                    "SELECT EXISTS (SELECT 1 FROM changes WHERE seq > $1)",
                    &[&next_i],
                )?,
                0,
            )?;
            tx.commit()?;
            Ok(out)
        })();
        result.map_err(|e| e.into_backend("changes"))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn schema_names_are_checked() {
        for ok in ["public", "t_0123abcd", "_x", "a", &"a".repeat(63)] {
            assert!(valid_schema_name(ok), "{ok}");
        }
        for bad in [
            "",
            "Public",
            "1abc",
            "a-b",
            "a\"b",
            "a b",
            "pg_temp",
            "é",
            &"a".repeat(64),
        ] {
            assert!(!valid_schema_name(bad), "{bad}");
        }
    }

    #[test]
    fn u64_text_is_strict() {
        assert_eq!(parse_u64("0"), Some(0));
        assert_eq!(parse_u64(U64_MAX_SQL), Some(u64::MAX));
        for bad in ["", "+1", "-1", "1.0", " 1", "18446744073709551616"] {
            assert_eq!(parse_u64(bad), None, "{bad}");
        }
    }

    #[test]
    fn change_rows_round_trip() {
        let (a, b, c) = ([1; 16], [2; 16], [3; 16]);
        let env = EnvelopeKey {
            recipient: a,
            owner: b,
            target: c,
            epoch: u32::MAX,
        };
        let kinds = [
            ChangeKind::ScopeCreated {
                scope: a,
                kind: ScopeKind::Group,
            },
            ChangeKind::Manifest {
                collection: a,
                version: u64::MAX,
            },
            ChangeKind::CollectionKey {
                collection: a,
                epoch: 7,
            },
            ChangeKind::ObjectDeleted(ObjectKey {
                collection: a,
                object: b,
                version: 3,
            }),
            ChangeKind::Envelope(env),
            ChangeKind::EnvelopeDeleted(env),
            ChangeKind::Roster {
                group: c,
                version: 0,
            },
            ChangeKind::ScopeDeleted {
                scope: b,
                kind: ScopeKind::Collection,
            },
        ];
        for (i, kind) in kinds.iter().enumerate() {
            let former = matches!(kind, ChangeKind::ScopeDeleted { .. }).then_some(c);
            let row = ChangeRow::new(kind, former.as_ref());
            let raw = RawChange {
                seq: i64::try_from(i).unwrap() + 1,
                kind: row.kind,
                scope: row.scope.to_vec(),
                scope_kind: row.scope_kind,
                object: row.object.map(|o| o.to_vec()),
                version: row.version.clone(),
                epoch: row.epoch,
                recipient: row.recipient.map(|o| o.to_vec()),
                owner: row.owner.map(|o| o.to_vec()),
                former_owner: row.former_owner.map(|o| o.to_vec()),
            };
            let (change, f) = raw.decode().unwrap();
            assert_eq!(change.kind, *kind);
            assert_eq!(f, former);
            // A column the kind does not use makes the row corrupt.
            let mut extra = raw;
            if extra.object.is_none() {
                extra.object = Some(vec![0; 16]);
            } else {
                extra.epoch = Some(1);
            }
            assert!(extra.decode().is_none(), "{kind:?}");
        }
    }
}
