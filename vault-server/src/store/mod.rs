//! The server's storage seam (issue #5; docs/spec/storage.md, login.md §10): what the
//! server keeps — per account the login verifier, the sealed keyring blob (versioned,
//! compare-and-swap), the public identity bundle and the sessions ([`AccountStore`],
//! [`SessionStore`]); and the opaque data of collections and groups with its change feed
//! ([`DataStore`]). Every value is opaque to the server except the verifier, which it
//! checks; none of them opens user data.
//!
//! One trait ([`Backend`]), two backends, one contract suite (`tests/contract/`) run
//! unchanged against each: [`SledBackend`] (the embedded default, a data directory) and
//! `PgBackend` (PostgreSQL, cargo feature `postgres`, on by default).

mod data;
mod packs;
#[cfg(feature = "postgres")]
mod pg_backend;
mod sled_audit;
mod sled_backend;
pub(crate) mod sled_backup;
mod sled_data;

pub use data::{
    Change, ChangeKind, Changes, Created, DataStore, EnvelopeKey, Id, InsertRoster, ManifestSwap,
    ObjectKey, PageKey, ScopeKind, Write,
};
#[cfg(feature = "postgres")]
pub use pg_backend::PgBackend;
pub use sled_backend::SledBackend;

pub use crate::audit::AuditStore;
use crate::auth::{SessionStore, TokenHash, UserId};

/// Everything the HTTP API needs of a backend: accounts, sessions, data and the audit log
/// (`crate::audit`), with one error type. Implemented by [`SledBackend`] and the PostgreSQL
/// backend.
pub trait Backend:
    AccountStore + AuditStore + DataStore + SessionStore<Error = BackendError> + Send + Sync + 'static
{
    /// Checks the store at start-up (a sample of every table decodes); a clear error for a
    /// damaged or foreign store. Called once before the server listens.
    fn check(&self) -> Result<(), BackendError>;

    /// A server setting shared by every node of a deployment (e.g. the decoy key of
    /// login.md §7): the value stored under `key`, or, if there is none, `value` stored
    /// now. Whoever inserts first wins; every caller gets the winner's value. Durable.
    fn setting_or_insert(&self, key: &str, value: &[u8]) -> Result<Vec<u8>, BackendError>;

    /// Whether `user`'s account exists, after any deletion of it that is in progress has
    /// finished (PostgreSQL waits on the account row `FOR SHARE`). Writes that create
    /// something for a user (a session, a scope) call it *after* the write, and undo the
    /// write when the answer is `false`: `delete_account` removes the account first and
    /// what belongs to it after (sled) or in the same transaction (PostgreSQL), so whatever
    /// was written before this answered `true` is found and removed by the deletion.
    fn account_exists_settled(&self, user: &UserId) -> Result<bool, BackendError>;

    /// Called by a login after it stored the session `key` for `user`: whether the account
    /// still exists; if not (deleted while the login ran), the session is removed.
    fn keep_session_if_account_exists(
        &self,
        user: &UserId,
        key: &TokenHash,
    ) -> Result<bool, BackendError> {
        if self.account_exists_settled(user)? {
            return Ok(true);
        }
        self.remove(key)?;
        Ok(false)
    }
}

/// A failure of the storage backend itself (I/O, database). Its message is for the
/// operator's log; it never contains user data (the server holds only opaque bytes).
#[derive(Debug, thiserror::Error)]
#[error("storage backend: {0}")]
pub struct BackendError(String);

impl BackendError {
    /// An error with a message.
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

/// Outcome of a compare-and-swap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cas {
    /// Replaced; the new version is durable.
    Done,
    /// The stored version was not the expected one; nothing changed.
    Conflict {
        /// The version stored now (0: no record).
        current: u64,
    },
}

/// What registration stores, all at once.
#[derive(Debug, Clone, Copy)]
pub struct NewAccount<'a> {
    /// The account id (the keyring id: 16 random bytes the client chose).
    pub user: UserId,
    /// The login name, unique (the API checks its syntax: docs/spec/api.md).
    pub name: &'a str,
    /// The encoded login verifier (`auth::Verifier::to_bytes`).
    pub verifier: &'a [u8],
    /// The sealed keyring blob (opaque; version 1).
    pub keyring: &'a [u8],
    /// The identity bundle (public).
    pub identity: &'a [u8],
}

/// A keyring replacement together with the verifiers that must change with it
/// ([`AccountStore::replace_keyring`]): a recovery (new password: a new login verifier,
/// perhaps a new recovery code) or a new recovery code (a new recovery verifier).
#[derive(Debug, Clone, Copy)]
pub struct KeyringReplacement<'a> {
    /// The new sealed keyring blob.
    pub keyring: &'a [u8],
    /// A new login verifier, or `None` to keep the stored one.
    pub login_verifier: Option<&'a [u8]>,
    /// A new recovery verifier, or `None` to keep the stored one (or none).
    pub recovery_verifier: Option<&'a [u8]>,
}

/// Accounts: verifier, keyring blob, identity bundle.
///
/// Contract (tested by `tests/store_contract.rs` for every backend):
/// - `create_account` (and `create_account_with_recovery`) stores all parts atomically or
///   none, and refuses (returns `false`, changing nothing) when the user id or the name
///   exists;
/// - `replace_keyring` and `change_password` change the keyring and the verifiers they
///   name together or not at all;
/// - the keyring blob starts at version 1 and changes only through `swap_keyring` with the
///   current version; versions rise by one;
/// - every write that returns `Ok` is durable (survives a crash of the process);
/// - `delete_account` removes every part (the recovery verifier too), the account's sessions, and every scope it owns
///   with everything under it ([`DataStore::delete_scope`]); reads of a deleted or unknown
///   user give `None`.
pub trait AccountStore: Send + Sync {
    /// Registers an account; `false` if `user` exists already. The account has no recovery
    /// verifier.
    fn create_account(&self, account: &NewAccount<'_>) -> Result<bool, BackendError> {
        self.create_account_with_recovery(account, None)
    }
    /// Registers an account with, if given, its recovery verifier (login.md §11), all parts
    /// at once or none; `false` if `user` or the name exists already.
    fn create_account_with_recovery(
        &self,
        account: &NewAccount<'_>,
        recovery_verifier: Option<&[u8]>,
    ) -> Result<bool, BackendError>;
    /// The account with login name `name`.
    fn user_by_name(&self, name: &str) -> Result<Option<UserId>, BackendError>;
    /// The login name of `user`.
    fn name(&self, user: &UserId) -> Result<Option<String>, BackendError>;
    /// The encoded verifier of `user`.
    fn verifier(&self, user: &UserId) -> Result<Option<Vec<u8>>, BackendError>;
    /// Replaces the verifier (password change, rehash on login); `false` if no account.
    fn set_verifier(&self, user: &UserId, verifier: &[u8]) -> Result<bool, BackendError>;
    /// The sealed keyring blob and its version.
    fn keyring(&self, user: &UserId) -> Result<Option<(u64, Vec<u8>)>, BackendError>;
    /// Replaces the keyring blob if its version is `expected`; the new version is
    /// `expected + 1`. `Conflict { current: 0 }` if no account.
    fn swap_keyring(&self, user: &UserId, expected: u64, blob: &[u8]) -> Result<Cas, BackendError>;
    /// A password change: replaces the keyring blob (as [`AccountStore::swap_keyring`]) and
    /// the login verifier together, both or neither.
    fn change_password(
        &self,
        user: &UserId,
        expected: u64,
        keyring: &[u8],
        verifier: &[u8],
    ) -> Result<Cas, BackendError>;
    /// The encoded recovery verifier of `user` (a verifier of the recovery login secret,
    /// login.md §11); `None` if the account has none or does not exist.
    fn recovery_verifier(&self, user: &UserId) -> Result<Option<Vec<u8>>, BackendError>;
    /// Replaces the keyring blob (compare-and-swap as [`AccountStore::swap_keyring`]) and
    /// the verifiers `replacement` names, all or nothing. A recovery and a new recovery code
    /// go through it.
    fn replace_keyring(
        &self,
        user: &UserId,
        expected: u64,
        replacement: &KeyringReplacement<'_>,
    ) -> Result<Cas, BackendError>;
    /// The identity bundle of `user` (public: anyone may read it).
    fn identity(&self, user: &UserId) -> Result<Option<Vec<u8>>, BackendError>;
    /// Replaces the identity bundle (key rotation); `false` if no account.
    fn set_identity(&self, user: &UserId, bundle: &[u8]) -> Result<bool, BackendError>;
    /// Removes the account and everything stored for it; `false` if there was none.
    fn delete_account(&self, user: &UserId) -> Result<bool, BackendError>;
    /// The sealed MFA record of `user` and its version (docs/spec/mfa.md); `None` if it
    /// has none (or there is no such account).
    fn mfa(&self, user: &UserId) -> Result<Option<(u64, Vec<u8>)>, BackendError>;
    /// Stores the MFA record of `user` if the stored version is `expected` (0: none yet);
    /// the new version is `expected + 1`. `None` if there is no such account (nothing is
    /// stored). Deleting the account deletes its record.
    fn swap_mfa(
        &self,
        user: &UserId,
        expected: u64,
        record: &[u8],
    ) -> Result<Option<Cas>, BackendError>;
}
