//! The embedded default backend: a sled database in a data directory, nothing to install.
//! Every acknowledged write is flushed (fsync) before it returns.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Mutex, MutexGuard, PoisonError, RwLock};

use sled::transaction::{ConflictableTransactionError, TransactionError, Transactional};

use super::sled_audit::AuditTrees;
use super::sled_backup::{WriteGate, WriteGuard};
use super::sled_data::DataTrees;
use super::{AccountStore, Backend, BackendError, Cas, DataStore, KeyringReplacement, NewAccount};
use crate::auth::{Session, SessionStore, SessionToken, TokenHash, UserId};

/// The sled backend: trees `names` (login name → user), `accounts` (user → login name),
/// `verifiers`, `recovery_verifiers`, `keyrings` (`u64` version ‖ blob), `identities`,
/// `sessions` (token hash → user ‖ created ‖ expires), mirrored in memory (`SessionMirror`).
pub struct SledBackend {
    pub(super) db: sled::Db,
    /// Every write holds it shared; a backup's cut holds it exclusively (`sled_backup.rs`).
    write_gate: WriteGate,
    names: sled::Tree,
    accounts: sled::Tree,
    verifiers: sled::Tree,
    /// user → the encoded recovery verifier (login.md §11); absent: no recovery.
    recovery_verifiers: sled::Tree,
    keyrings: sled::Tree,
    identities: sled::Tree,
    sessions: sled::Tree,
    session_mirror: SessionMirror,
    settings: sled::Tree,
    mfa: sled::Tree,
    pub(super) data: DataTrees,
    pub(super) audit: AuditTrees,
}

pub(super) fn err(e: sled::Error) -> BackendError {
    BackendError::new(format!("sled: {e}"))
}

/// The result of a transaction that answers yes or no (it never aborts).
fn outcome(result: Result<bool, TransactionError<()>>) -> Result<bool, BackendError> {
    match result {
        Ok(answer) => Ok(answer),
        Err(TransactionError::Storage(e)) => Err(err(e)),
        Err(TransactionError::Abort(())) => Ok(false),
    }
}

const SESSION_LEN: usize = 16 + 8 + 8;

fn encode_session(s: &Session) -> [u8; SESSION_LEN] {
    let mut v = [0u8; SESSION_LEN];
    v[..16].copy_from_slice(&s.user);
    v[16..24].copy_from_slice(&s.created.to_be_bytes());
    v[24..].copy_from_slice(&s.expires.to_be_bytes());
    v
}

fn decode_session(v: &[u8]) -> Result<Session, BackendError> {
    let v: &[u8; SESSION_LEN] = v
        .try_into()
        .map_err(|_| BackendError::new("sled: malformed session record"))?;
    let mut user = [0u8; 16];
    user.copy_from_slice(&v[..16]);
    let mut created = [0u8; 8];
    created.copy_from_slice(&v[16..24]);
    let mut expires = [0u8; 8];
    expires.copy_from_slice(&v[24..]);
    Ok(Session {
        user,
        created: u64::from_be_bytes(created),
        expires: u64::from_be_bytes(expires),
    })
}

fn decode_token_hash(k: &[u8]) -> Result<TokenHash, BackendError> {
    k.try_into()
        .map(TokenHash::from_bytes)
        .map_err(|_| BackendError::new("sled: malformed session key"))
}

/// The most sessions [`SessionMirror`] holds. An entry is 64 bytes (the 32-byte token hash
/// and the 32-byte [`Session`]) plus one control byte, in a table of a power of two ≥ 8/7
/// of the entries: 74 to 149 bytes per session, at most 65 MiB at this cap (the number of
/// live sessions of 12 logins a second for 12 hours).
const MAX_MIRRORED_SESSIONS: usize = 1 << 19;

/// An exact copy of the `sessions` tree in memory, so that a request is authenticated
/// without a blocking hop ([`SessionStore::authenticate_without_io`]). sled is one process
/// per data directory and every write of the tree goes through this backend's
/// [`SessionStore`] methods, so the copy can be exact:
///
/// - every writer holds `writer` across its tree write and its map update, so concurrent
///   writers (a login during a revoke-all) cannot interleave them;
/// - an insert updates the map after the tree write succeeded (before the token is handed
///   out, so no client can present it in between);
/// - a removal updates the map first, whatever the tree write does after (fail closed: the
///   map may lack a session the tree still has, never the reverse);
/// - readers take the map lock only with `try_read` and decline (the caller falls back to
///   the tree) if it is busy or poisoned.
///
/// Above [`MAX_MIRRORED_SESSIONS`] the copy is dropped (`None`: every lookup declines) and
/// rebuilt from the tree by the next sweep that leaves at most that many; a poisoned map is
/// rebuilt the same way.
struct SessionMirror {
    map: RwLock<Option<HashMap<TokenHash, Session>>>,
    writer: Mutex<()>,
}

impl SessionMirror {
    /// A mirror that declines every lookup until [`rebuild`](Self::rebuild).
    fn unloaded() -> Self {
        Self {
            map: RwLock::new(None),
            writer: Mutex::new(()),
        }
    }

    /// Serialises the writers of the `sessions` tree. The mutex guards no data, so a
    /// poisoned one is still good.
    fn writer(&self) -> MutexGuard<'_, ()> {
        self.writer.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Applies `f` to the map (`None` if not mirrored). Call it holding
    /// [`writer`](Self::writer). Never fails: if the lock is poisoned, readers decline
    /// anyway until a rebuild.
    fn update(&self, f: impl FnOnce(&mut Option<HashMap<TokenHash, Session>>)) {
        f(&mut self.map.write().unwrap_or_else(PoisonError::into_inner));
    }

    /// Whether the map is a usable copy (present and its lock not poisoned).
    fn is_exact(&self) -> bool {
        matches!(self.map.read(), Ok(map) if map.is_some())
    }

    /// Replaces the map by a copy of `tree` (or by `None` if the tree holds more than
    /// [`MAX_MIRRORED_SESSIONS`]). Call it holding [`writer`](Self::writer).
    fn rebuild(&self, tree: &sled::Tree) -> Result<(), BackendError> {
        let mut map = Some(HashMap::new());
        for item in tree.iter() {
            let (k, v) = item.map_err(err)?;
            let (key, session) = (decode_token_hash(&k)?, decode_session(&v)?);
            match &mut map {
                Some(m) if m.len() >= MAX_MIRRORED_SESSIONS => map = None,
                Some(m) => {
                    m.insert(key, session);
                }
                None => {}
            }
        }
        self.update(|m| *m = map);
        self.map.clear_poison();
        Ok(())
    }

    /// Records an insert into the tree.
    fn insert(&self, key: TokenHash, session: Session) {
        self.update(|m| {
            let full = m
                .as_ref()
                .is_some_and(|m| m.len() >= MAX_MIRRORED_SESSIONS && !m.contains_key(&key));
            if full {
                *m = None;
            } else if let Some(m) = m {
                m.insert(key, session);
            }
        });
    }

    /// Removes one session.
    fn remove(&self, key: &TokenHash) {
        self.update(|m| {
            if let Some(m) = m {
                m.remove(key);
            }
        });
    }

    /// Removes every session for which `remove` is true.
    fn remove_where(&self, remove: impl Fn(&TokenHash, &Session) -> bool) {
        self.update(|m| {
            if let Some(m) = m {
                m.retain(|k, s| !remove(k, s));
            }
        });
    }

    /// What [`SessionStore::authenticate`] answers for the token whose hash is `key`, or
    /// `None` if the mirror cannot tell (not mirrored, or the lock is busy or poisoned).
    fn authenticate(&self, key: &TokenHash, now: u64) -> Option<Option<UserId>> {
        let map = self.map.try_read().ok()?;
        // The key is the SHA-256 hash of the token, not the token: the hash table's probing
        // and comparisons can only leak, through their timing, bits of hashes, from which no
        // token can be computed (login.md §6). SipHash keys the table against flooding.
        Some(
            map.as_ref()?
                .get(key)
                .filter(|s| s.is_valid_at(now))
                .map(|s| s.user),
        )
    }
}

fn split_version(v: &[u8]) -> Result<(u64, Vec<u8>), BackendError> {
    if v.len() < 8 {
        return Err(BackendError::new(
            "sled: keyring record shorter than its version",
        ));
    }
    let mut version = [0u8; 8];
    version.copy_from_slice(&v[..8]);
    Ok((u64::from_be_bytes(version), v[8..].to_vec()))
}

fn versioned(version: u64, blob: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(8 + blob.len());
    v.extend_from_slice(&version.to_be_bytes());
    v.extend_from_slice(blob);
    v
}

/// Opens the sled database in `path`. sled releases a closed database's directory lock from
/// a background thread shortly after the last handle is dropped, so a reopen in the same
/// process can find the lock still held for a moment: that is retried for up to two
/// seconds. A lock held longer belongs to another process (or an open handle).
fn open_db(path: &Path) -> Result<sled::Db, BackendError> {
    let mut waited = 0;
    loop {
        match sled::Config::new()
            .path(path)
            .cache_capacity(64 * 1024 * 1024)
            .open()
        {
            Ok(db) => return Ok(db),
            Err(sled::Error::Io(e)) if e.to_string().contains("could not acquire lock") => {
                if waited >= 40 {
                    return Err(BackendError::new(format!(
                        "sled: the data directory is in use by another server or process ({e})"
                    )));
                }
                waited += 1;
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            Err(e) => return Err(err(e)),
        }
    }
}

impl SledBackend {
    /// Opens (or creates) the backend in the data directory `path`. Refuses, with a clear
    /// message, a directory whose database does not open or whose records are malformed.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, BackendError> {
        let db = open_db(path.as_ref())?;
        let tree = |name: &str| db.open_tree(name).map_err(err);
        let backend = Self {
            names: tree("names")?,
            accounts: tree("accounts")?,
            verifiers: tree("verifiers")?,
            recovery_verifiers: tree("recovery_verifiers")?,
            keyrings: tree("keyrings")?,
            identities: tree("identities")?,
            sessions: tree("sessions")?,
            session_mirror: SessionMirror::unloaded(),
            settings: tree("settings")?,
            mfa: tree("mfa")?,
            data: DataTrees::open(&db, path.as_ref())?,
            audit: AuditTrees::open(&db)?,
            db,
            write_gate: WriteGate::new(),
        };
        backend.check()?;
        backend.remove_orphan_sessions()?;
        // No other writer yet: nobody else holds the backend.
        backend.session_mirror.rebuild(&backend.sessions)?;
        Ok(backend)
    }

    /// Removes sessions whose account is gone: `delete_account` removes an account's
    /// sessions after its transaction, so a crash between the two leaves them behind.
    fn remove_orphan_sessions(&self) -> Result<(), BackendError> {
        let mut orphans = Vec::new();
        for item in self.sessions.iter() {
            let (k, v) = item.map_err(err)?;
            if !self
                .accounts
                .contains_key(decode_session(&v)?.user)
                .map_err(err)?
            {
                orphans.push(k);
            }
        }
        if orphans.is_empty() {
            return Ok(());
        }
        for k in orphans {
            self.sessions.remove(k).map_err(err)?;
        }
        self.flush()
    }

    fn check_accounts(&self) -> Result<(), BackendError> {
        for item in self.keyrings.iter() {
            let (k, v) = item.map_err(err)?;
            if k.len() != 16 || v.len() < 8 {
                return Err(BackendError::new(
                    "sled: corrupt keyring record (refusing to start on a damaged store)",
                ));
            }
        }
        for item in self.sessions.iter() {
            let (k, v) = item.map_err(err)?;
            if k.len() != 32 || v.len() != SESSION_LEN {
                return Err(BackendError::new(
                    "sled: corrupt session record (refusing to start on a damaged store)",
                ));
            }
        }
        for item in self.names.iter() {
            let (_, v) = item.map_err(err)?;
            if v.len() != 16 {
                return Err(BackendError::new(
                    "sled: corrupt name record (refusing to start on a damaged store)",
                ));
            }
        }
        for tree in [
            &self.accounts,
            &self.verifiers,
            &self.recovery_verifiers,
            &self.identities,
        ] {
            for key in tree.iter().keys() {
                if key.map_err(err)?.len() != 16 {
                    return Err(BackendError::new(
                        "sled: corrupt account key (refusing to start on a damaged store)",
                    ));
                }
            }
        }
        Ok(())
    }

    /// Held by every method that writes a tree, from before its first write until it has
    /// flushed, so that a backup's cut sees no write half done (docs/spec/backup.md §3).
    /// Nested calls on one thread are free.
    pub(super) fn write_gate(&self) -> WriteGuard<'_> {
        self.write_gate.enter()
    }

    /// The gate itself, for the backup's cut.
    pub(super) fn gate(&self) -> &WriteGate {
        &self.write_gate
    }

    pub(super) fn flush(&self) -> Result<(), BackendError> {
        self.db.flush().map(|_| ()).map_err(err)
    }
}

impl AccountStore for SledBackend {
    fn create_account_with_recovery(
        &self,
        a: &NewAccount<'_>,
        recovery_verifier: Option<&[u8]>,
    ) -> Result<bool, BackendError> {
        let _w = self.write_gate();
        let result = (
            &self.names,
            &self.accounts,
            &self.verifiers,
            &self.recovery_verifiers,
            &self.keyrings,
            &self.identities,
        )
            .transaction(
                |(names, accounts, verifiers, recovery_verifiers, keyrings, identities)| {
                    if accounts.get(a.user)?.is_some() || names.get(a.name.as_bytes())?.is_some() {
                        return Ok(false);
                    }
                    names.insert(a.name.as_bytes(), &a.user[..])?;
                    accounts.insert(&a.user[..], a.name.as_bytes())?;
                    verifiers.insert(&a.user, a.verifier)?;
                    match recovery_verifier {
                        Some(v) => recovery_verifiers.insert(&a.user, v)?,
                        // A leftover of an earlier account with this id (none is expected:
                        // deletion removes it in the same transaction).
                        None => recovery_verifiers.remove(&a.user)?,
                    };
                    keyrings.insert(&a.user, versioned(1, a.keyring))?;
                    identities.insert(&a.user, a.identity)?;
                    Ok::<bool, ConflictableTransactionError<()>>(true)
                },
            );
        let created = outcome(result)?;
        self.flush()?;
        Ok(created)
    }

    fn user_by_name(&self, name: &str) -> Result<Option<UserId>, BackendError> {
        match self.names.get(name.as_bytes()).map_err(err)? {
            None => Ok(None),
            Some(v) => v
                .as_ref()
                .try_into()
                .map(Some)
                .map_err(|_| BackendError::new("sled: corrupt name record")),
        }
    }

    fn name(&self, user: &UserId) -> Result<Option<String>, BackendError> {
        match self.accounts.get(user).map_err(err)? {
            None => Ok(None),
            Some(v) => String::from_utf8(v.to_vec())
                .map(Some)
                .map_err(|_| BackendError::new("sled: corrupt account record")),
        }
    }

    fn verifier(&self, user: &UserId) -> Result<Option<Vec<u8>>, BackendError> {
        Ok(self.verifiers.get(user).map_err(err)?.map(|v| v.to_vec()))
    }

    fn set_verifier(&self, user: &UserId, verifier: &[u8]) -> Result<bool, BackendError> {
        let _w = self.write_gate();
        let mut found = false;
        self.verifiers
            .fetch_and_update(user, |old| {
                found = old.is_some();
                old.map(|_| verifier.to_vec())
            })
            .map_err(err)?;
        self.flush()?;
        Ok(found)
    }

    fn keyring(&self, user: &UserId) -> Result<Option<(u64, Vec<u8>)>, BackendError> {
        self.keyrings
            .get(user)
            .map_err(err)?
            .map(|v| split_version(&v))
            .transpose()
    }

    fn swap_keyring(&self, user: &UserId, expected: u64, blob: &[u8]) -> Result<Cas, BackendError> {
        let _w = self.write_gate();
        let Some(current) = self.keyrings.get(user).map_err(err)? else {
            return Ok(Cas::Conflict { current: 0 });
        };
        let (version, _) = split_version(&current)?;
        if version != expected {
            return Ok(Cas::Conflict { current: version });
        }
        let next = expected
            .checked_add(1)
            .ok_or_else(|| BackendError::new("keyring version exhausted"))?;
        match self
            .keyrings
            .compare_and_swap(user, Some(current), Some(versioned(next, blob)))
            .map_err(err)?
        {
            Ok(()) => {
                self.flush()?;
                Ok(Cas::Done)
            }
            Err(e) => {
                let current = match e.current {
                    Some(v) => split_version(&v)?.0,
                    None => 0,
                };
                Ok(Cas::Conflict { current })
            }
        }
    }

    fn change_password(
        &self,
        user: &UserId,
        expected: u64,
        keyring: &[u8],
        verifier: &[u8],
    ) -> Result<Cas, BackendError> {
        let _w = self.write_gate();
        let result = (&self.keyrings, &self.verifiers).transaction(|(keyrings, verifiers)| {
            let Some(current) = keyrings.get(user)? else {
                return Ok(Cas::Conflict { current: 0 });
            };
            let version = match split_version(&current) {
                Ok((version, _)) => version,
                Err(_) => return Err(ConflictableTransactionError::Abort(())),
            };
            if version != expected {
                return Ok(Cas::Conflict { current: version });
            }
            let Some(next) = expected.checked_add(1) else {
                return Err(ConflictableTransactionError::Abort(()));
            };
            keyrings.insert(&user[..], versioned(next, keyring))?;
            verifiers.insert(&user[..], verifier)?;
            Ok(Cas::Done)
        });
        let cas = match result {
            Ok(cas) => cas,
            Err(TransactionError::Abort(())) => {
                return Err(BackendError::new(
                    "sled: corrupt keyring record or version exhausted",
                ))
            }
            Err(TransactionError::Storage(e)) => return Err(err(e)),
        };
        if cas == Cas::Done {
            self.flush()?;
        }
        Ok(cas)
    }

    fn recovery_verifier(&self, user: &UserId) -> Result<Option<Vec<u8>>, BackendError> {
        Ok(self
            .recovery_verifiers
            .get(user)
            .map_err(err)?
            .map(|v| v.to_vec()))
    }

    fn replace_keyring(
        &self,
        user: &UserId,
        expected: u64,
        r: &KeyringReplacement<'_>,
    ) -> Result<Cas, BackendError> {
        let _w = self.write_gate();
        let result = (&self.keyrings, &self.verifiers, &self.recovery_verifiers).transaction(
            |(keyrings, verifiers, recovery_verifiers)| {
                let Some(current) = keyrings.get(user)? else {
                    return Ok(Cas::Conflict { current: 0 });
                };
                let version = match split_version(&current) {
                    Ok((version, _)) => version,
                    Err(_) => return Err(ConflictableTransactionError::Abort(())),
                };
                if version != expected {
                    return Ok(Cas::Conflict { current: version });
                }
                let Some(next) = expected.checked_add(1) else {
                    return Err(ConflictableTransactionError::Abort(()));
                };
                keyrings.insert(&user[..], versioned(next, r.keyring))?;
                if let Some(v) = r.login_verifier {
                    verifiers.insert(&user[..], v)?;
                }
                if let Some(v) = r.recovery_verifier {
                    recovery_verifiers.insert(&user[..], v)?;
                }
                Ok(Cas::Done)
            },
        );
        let cas = match result {
            Ok(cas) => cas,
            Err(TransactionError::Abort(())) => {
                return Err(BackendError::new(
                    "sled: corrupt keyring record or version exhausted",
                ))
            }
            Err(TransactionError::Storage(e)) => return Err(err(e)),
        };
        if cas == Cas::Done {
            self.flush()?;
        }
        Ok(cas)
    }

    fn identity(&self, user: &UserId) -> Result<Option<Vec<u8>>, BackendError> {
        Ok(self.identities.get(user).map_err(err)?.map(|v| v.to_vec()))
    }

    fn set_identity(&self, user: &UserId, bundle: &[u8]) -> Result<bool, BackendError> {
        let _w = self.write_gate();
        // In one transaction with the account's existence, so a concurrent deletion cannot
        // leave an identity without its account.
        let result = (&self.accounts, &self.identities).transaction(|(accounts, identities)| {
            if accounts.get(user)?.is_none() {
                return Ok(false);
            }
            identities.insert(&user[..], bundle)?;
            Ok::<bool, ConflictableTransactionError<()>>(true)
        });
        let updated = outcome(result)?;
        self.flush()?;
        Ok(updated)
    }

    fn delete_account(&self, user: &UserId) -> Result<bool, BackendError> {
        let _w = self.write_gate();
        let result = (
            &self.names,
            &self.accounts,
            &self.verifiers,
            &self.recovery_verifiers,
            &self.keyrings,
            &self.identities,
            &self.mfa,
        )
            .transaction(
                |(names, accounts, verifiers, recovery_verifiers, keyrings, identities, mfa)| {
                    let Some(name) = accounts.remove(&user[..])? else {
                        return Ok(false);
                    };
                    names.remove(name)?;
                    verifiers.remove(&user[..])?;
                    recovery_verifiers.remove(&user[..])?;
                    keyrings.remove(&user[..])?;
                    identities.remove(&user[..])?;
                    mfa.remove(&user[..])?;
                    Ok::<bool, ConflictableTransactionError<()>>(true)
                },
            );
        let existed = outcome(result)?;
        if existed {
            self.remove_user(user)?;
            for (scope, _) in self.owned_scopes(user)? {
                self.delete_scope(&scope)?;
            }
        }
        self.flush()?;
        Ok(existed)
    }

    fn mfa(&self, user: &UserId) -> Result<Option<(u64, Vec<u8>)>, BackendError> {
        match self.mfa.get(user).map_err(err)? {
            None => Ok(None),
            Some(v) => {
                let (version, record) = split_version(&v)?;
                Ok(Some((version, record)))
            }
        }
    }

    fn swap_mfa(
        &self,
        user: &UserId,
        expected: u64,
        record: &[u8],
    ) -> Result<Option<Cas>, BackendError> {
        let _w = self.write_gate();
        let next = expected
            .checked_add(1)
            .ok_or_else(|| BackendError::new("MFA record version exhausted"))?;
        // With the account in the transaction: a deletion removes both or neither, so no
        // record outlives its account.
        let result = (&self.accounts, &self.mfa).transaction(|(accounts, mfa)| {
            if accounts.get(&user[..])?.is_none() {
                return Ok(None);
            }
            let current = match mfa.get(&user[..])? {
                None => 0,
                Some(v) => {
                    split_version(&v)
                        .map_err(|_| ConflictableTransactionError::Abort(()))?
                        .0
                }
            };
            if current != expected {
                return Ok(Some(Cas::Conflict { current }));
            }
            mfa.insert(&user[..], versioned(next, record))?;
            Ok::<_, ConflictableTransactionError<()>>(Some(Cas::Done))
        });
        let outcome = match result {
            Ok(o) => o,
            Err(TransactionError::Storage(e)) => return Err(err(e)),
            Err(TransactionError::Abort(())) => {
                return Err(BackendError::new(
                    "sled: corrupt MFA record (refusing to overwrite it)",
                ))
            }
        };
        if outcome == Some(Cas::Done) {
            self.flush()?;
        }
        Ok(outcome)
    }
}

impl Backend for SledBackend {
    fn account_exists_settled(&self, user: &UserId) -> Result<bool, BackendError> {
        // sled commits a deletion's account removal before this can read it: nothing to
        // wait for.
        self.accounts.contains_key(user).map_err(err)
    }

    /// The start-up check: every record has the shape this backend writes.
    fn check(&self) -> Result<(), BackendError> {
        self.check_accounts()?;
        self.audit.check()?;
        self.data.check()
    }

    fn setting_or_insert(&self, key: &str, value: &[u8]) -> Result<Vec<u8>, BackendError> {
        let _w = self.write_gate();
        match self
            .settings
            .compare_and_swap(key.as_bytes(), None::<&[u8]>, Some(value))
            .map_err(err)?
        {
            Ok(()) => {
                self.flush()?;
                Ok(value.to_vec())
            }
            Err(e) => match e.current {
                Some(v) => Ok(v.to_vec()),
                None => Err(BackendError::new("sled: setting vanished")),
            },
        }
    }
}

impl SessionStore for SledBackend {
    type Error = BackendError;

    fn insert(&self, key: TokenHash, session: Session) -> Result<(), BackendError> {
        let _w = self.write_gate();
        let writer = self.session_mirror.writer();
        self.sessions
            .insert(key.as_bytes(), &encode_session(&session)[..])
            .map_err(err)?;
        self.session_mirror.insert(key, session);
        drop(writer);
        self.flush()
    }

    fn get(&self, key: &TokenHash) -> Result<Option<Session>, BackendError> {
        self.sessions
            .get(key.as_bytes())
            .map_err(err)?
            .map(|v| decode_session(&v))
            .transpose()
    }

    fn remove(&self, key: &TokenHash) -> Result<bool, BackendError> {
        let _w = self.write_gate();
        let writer = self.session_mirror.writer();
        self.session_mirror.remove(key);
        let existed = self.sessions.remove(key.as_bytes()).map_err(err)?.is_some();
        drop(writer);
        self.flush()?;
        Ok(existed)
    }

    fn remove_user(&self, user: &UserId) -> Result<usize, BackendError> {
        let _w = self.write_gate();
        let writer = self.session_mirror.writer();
        self.session_mirror.remove_where(|_, s| s.user == *user);
        // A scan: sessions are few per server and revoke-all is rare.
        let mut removed = 0;
        for item in self.sessions.iter() {
            let (k, v) = item.map_err(err)?;
            if decode_session(&v)?.user == *user {
                self.sessions.remove(k).map_err(err)?;
                removed += 1;
            }
        }
        drop(writer);
        self.flush()?;
        Ok(removed)
    }

    fn remove_expired(&self, now: u64) -> Result<usize, BackendError> {
        let _w = self.write_gate();
        let writer = self.session_mirror.writer();
        self.session_mirror.remove_where(|_, s| !s.is_valid_at(now));
        let mut removed = 0;
        for item in self.sessions.iter() {
            let (k, v) = item.map_err(err)?;
            if !decode_session(&v)?.is_valid_at(now) {
                self.sessions.remove(k).map_err(err)?;
                removed += 1;
            }
        }
        if !self.session_mirror.is_exact() {
            self.session_mirror.rebuild(&self.sessions)?;
        }
        drop(writer);
        self.flush()?;
        Ok(removed)
    }

    /// From the in-memory mirror of the `sessions` tree (`SessionMirror`): no I/O.
    fn authenticate_without_io(&self, token: &SessionToken, now: u64) -> Option<Option<UserId>> {
        self.session_mirror.authenticate(&token.hash(), now)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    const SESSION: Session = Session {
        user: [1; 16],
        created: 0,
        expires: 10,
    };

    fn key(i: u64) -> TokenHash {
        let mut bytes = [0u8; 32];
        bytes[..8].copy_from_slice(&i.to_be_bytes());
        TokenHash::from_bytes(bytes)
    }

    fn tree() -> sled::Tree {
        let db = sled::Config::new().temporary(true).open().unwrap();
        db.open_tree("sessions").unwrap()
    }

    #[test]
    fn the_mirror_declines_above_its_cap_until_a_rebuild() {
        let tree = tree();
        let mirror = SessionMirror::unloaded();
        assert_eq!(mirror.authenticate(&key(0), 5), None, "not loaded yet");
        mirror.rebuild(&tree).unwrap();
        assert_eq!(mirror.authenticate(&key(0), 5), Some(None));
        let cap = u64::try_from(MAX_MIRRORED_SESSIONS).unwrap();
        mirror.update(|m| {
            let m = m.as_mut().unwrap();
            for i in 0..cap {
                m.insert(key(i), SESSION);
            }
        });
        assert_eq!(mirror.authenticate(&key(0), 5), Some(Some([1; 16])));
        // Replacing a record does not grow the map.
        mirror.insert(key(0), SESSION);
        assert!(mirror.is_exact());
        // One more is dropped with the whole copy: every lookup declines.
        mirror.insert(key(cap), SESSION);
        assert!(!mirror.is_exact());
        assert_eq!(mirror.authenticate(&key(0), 5), None);
        assert_eq!(mirror.authenticate(&key(cap), 5), None);
        tree.insert(key(1).as_bytes(), &encode_session(&SESSION)[..])
            .unwrap();
        mirror.rebuild(&tree).unwrap();
        assert_eq!(mirror.authenticate(&key(1), 5), Some(Some([1; 16])));
        assert_eq!(mirror.authenticate(&key(1), 10), Some(None));
        assert_eq!(mirror.authenticate(&key(0), 5), Some(None));
    }

    #[test]
    fn a_poisoned_mirror_declines_until_a_rebuild() {
        let tree = tree();
        tree.insert(key(1).as_bytes(), &encode_session(&SESSION)[..])
            .unwrap();
        let mirror = SessionMirror::unloaded();
        mirror.rebuild(&tree).unwrap();
        assert_eq!(mirror.authenticate(&key(1), 5), Some(Some([1; 16])));
        let panicked = std::thread::scope(|s| {
            s.spawn(|| mirror.update(|_| panic!("poisons the lock")))
                .join()
                .is_err()
        });
        assert!(panicked);
        assert!(!mirror.is_exact());
        assert_eq!(mirror.authenticate(&key(1), 5), None);
        // Writers carry on; readers decline until the copy is rebuilt.
        mirror.remove(&key(1));
        mirror.insert(key(2), SESSION);
        assert_eq!(mirror.authenticate(&key(2), 5), None);
        mirror.rebuild(&tree).unwrap();
        assert!(mirror.is_exact());
        assert_eq!(mirror.authenticate(&key(1), 5), Some(Some([1; 16])));
        assert_eq!(mirror.authenticate(&key(2), 5), Some(None));
    }

    #[test]
    fn a_mirror_entry_is_64_bytes() {
        assert_eq!(core::mem::size_of::<(TokenHash, Session)>(), 64);
    }
}
