//! Sessions: what a client presents after login (docs/spec/login.md §6).
//!
//! A session token is 32 random bytes, sent as `Authorization: Bearer <base64url>`. The
//! server keeps only `SHA-256("vault/v1/server/session-token\0" || token)` as the key of
//! the session record, so whoever reads the session store (a backup, a stolen disk) cannot
//! present any of the tokens in it.
//!
//! [`SessionStore`] is the storage seam: a backend implements five keyed operations and gets
//! [`issue`](SessionStore::issue), [`authenticate`](SessionStore::authenticate),
//! [`logout`](SessionStore::logout), [`revoke_all`](SessionStore::revoke_all) and
//! [`sweep`](SessionStore::sweep). [`SessionTable`] is the in-memory backend. Time is a
//! parameter (`now`, Unix seconds) everywhere, so tests never sleep.

use core::convert::Infallible;
use core::fmt;
use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use data_encoding::{BASE64URL_NOPAD, HEXLOWER};
use rand_core::CryptoRngCore;
use sha2::{Digest, Sha256};
use zeroize::{ZeroizeOnDrop, Zeroizing};

/// Length of a session token in bytes.
pub const TOKEN_LEN: usize = 32;
/// Length of an encoded session token: base64url without padding of 32 bytes.
pub const ENCODED_TOKEN_LEN: usize = 43;
/// The default lifetime of a session: 12 hours from login, not extended by use.
pub const DEFAULT_SESSION_TTL: u64 = 12 * 60 * 60;

/// Prefix of the hashed token (THREATS C21: one label per hash).
const TOKEN_HASH_LABEL: &[u8] = b"vault/v1/server/session-token\0";

/// A user's id: the 16-byte id the account layer assigns.
pub type UserId = [u8; 16];

/// A session token: the bearer credential of a logged-in client. Zeroized on drop; `Debug`
/// prints nothing of it; no `Clone`. The server hands it out once ([`SessionStore::issue`])
/// and afterwards only ever holds its [`TokenHash`].
#[derive(ZeroizeOnDrop)]
pub struct SessionToken([u8; TOKEN_LEN]);

impl SessionToken {
    /// A fresh token of 32 random bytes. Pass `rand_core::OsRng`.
    pub fn generate(rng: &mut impl CryptoRngCore) -> Self {
        let mut bytes = [0u8; TOKEN_LEN];
        rng.fill_bytes(&mut bytes);
        Self(bytes)
    }

    /// The token as sent to the client and back in `Authorization: Bearer <token>`:
    /// base64url without padding (RFC 4648 §5), 43 characters.
    pub fn encode(&self) -> Zeroizing<String> {
        Zeroizing::new(BASE64URL_NOPAD.encode(&self.0))
    }

    /// Parses the encoded token strictly: exactly 43 characters of the base64url alphabet,
    /// no padding, and the unused low bits of the last character zero (so each token has one
    /// encoding).
    pub fn parse(encoded: &str) -> Option<Self> {
        if encoded.len() != ENCODED_TOKEN_LEN {
            return None;
        }
        let mut bytes = [0u8; TOKEN_LEN];
        let written = BASE64URL_NOPAD
            .decode_mut(encoded.as_bytes(), &mut bytes)
            .ok()?;
        if written != TOKEN_LEN {
            return None;
        }
        Some(Self(bytes))
    }

    /// Parses the value of an `Authorization` header: the scheme `Bearer` (any case,
    /// RFC 7235 §2.1), one or more spaces, the encoded token, nothing after it.
    pub fn from_authorization(header: &str) -> Option<Self> {
        let (scheme, rest) = header.split_once(' ')?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return None;
        }
        Self::parse(rest.trim_start_matches(' '))
    }

    /// The hash under which the server stores this token's session.
    pub fn hash(&self) -> TokenHash {
        let mut h = Sha256::new();
        h.update(TOKEN_HASH_LABEL);
        h.update(self.0);
        TokenHash(h.finalize().into())
    }
}

impl fmt::Debug for SessionToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionToken([redacted])")
    }
}

/// `SHA-256("vault/v1/server/session-token\0" || token)`: the key of a session record.
/// Not a secret: the token cannot be computed from it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TokenHash([u8; 32]);

impl TokenHash {
    /// A hash as a backend read it back from storage.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The 32 bytes, for a backend to store.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TokenHash({})", HEXLOWER.encode(&self.0))
    }
}

/// A session record: whose it is and when it ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Session {
    /// The logged-in user.
    pub user: UserId,
    /// When the session was issued, Unix seconds.
    pub created: u64,
    /// The first second at which the session is no longer valid, Unix seconds.
    pub expires: u64,
}

impl Session {
    /// Whether the session is valid at `now`: `now < expires`.
    pub fn is_valid_at(&self, now: u64) -> bool {
        now < self.expires
    }
}

/// Storage of session records keyed by [`TokenHash`]: the seam the sled and PostgreSQL
/// backends will implement. The provided methods are the session logic; a backend should not
/// override them, except [`authenticate_without_io`](Self::authenticate_without_io), a hook
/// for a backend that can answer from memory.
///
/// All methods take `&self`: a backend that is shared between request handlers synchronises
/// inside (as [`SessionTable`] does).
pub trait SessionStore {
    /// What a backend's operations can fail with ([`Infallible`] in memory).
    type Error;

    /// Stores `session` under `key`, replacing any record with that key.
    fn insert(&self, key: TokenHash, session: Session) -> Result<(), Self::Error>;
    /// The record under `key`, expired or not.
    fn get(&self, key: &TokenHash) -> Result<Option<Session>, Self::Error>;
    /// Removes the record under `key`; whether there was one.
    fn remove(&self, key: &TokenHash) -> Result<bool, Self::Error>;
    /// Removes every record of `user`; how many there were.
    fn remove_user(&self, user: &UserId) -> Result<usize, Self::Error>;
    /// Removes every record not valid at `now` ([`Session::is_valid_at`]); how many.
    fn remove_expired(&self, now: u64) -> Result<usize, Self::Error>;

    /// [`authenticate`](Self::authenticate) without I/O, for a caller that must not block
    /// (an async request handler): `Some(answer)` if the backend can answer from memory,
    /// `None` if it cannot, and the caller must then call `authenticate` where blocking is
    /// allowed. The default is `None`; a backend may override it (unlike the other provided
    /// methods) only if it meets this contract:
    ///
    /// - it never blocks on I/O (it may take a lock that is only ever held for in-memory
    ///   work, or better, decline with `None` when the lock is busy);
    /// - `Some(answer)` is exactly what `authenticate(token, now)` would answer at that
    ///   moment: `Some(user)` for a stored session valid at `now`, `None` for an unknown or
    ///   expired one. It does not remove the expired record that `authenticate` would (the
    ///   periodic [`sweep`](Self::sweep) does); the answer is the same either way. The only
    ///   allowed difference is in the safe direction: after a removal whose storage write
    ///   failed, it may refuse a token that the stored record would still accept, never
    ///   the reverse;
    /// - whenever it cannot guarantee that (state not mirrored, a poisoned lock, ...), it
    ///   answers `None`.
    fn authenticate_without_io(&self, token: &SessionToken, now: u64) -> Option<Option<UserId>> {
        let _ = (token, now);
        None
    }

    /// Starts a session for `user` (after a successful login) that is valid from `now` for
    /// `ttl` seconds ([`DEFAULT_SESSION_TTL`]), and returns its token, which the server hands
    /// to the client and does not keep. Only the token's hash is stored.
    fn issue(
        &self,
        rng: &mut impl CryptoRngCore,
        user: UserId,
        now: u64,
        ttl: u64,
    ) -> Result<SessionToken, Self::Error> {
        let token = SessionToken::generate(rng);
        let session = Session {
            user,
            created: now,
            expires: now.saturating_add(ttl),
        };
        self.insert(token.hash(), session)?;
        Ok(token)
    }

    /// The user a presented token belongs to, if its session exists and is valid at `now`.
    /// The token is hashed before the lookup; an expired record found on the way is removed.
    fn authenticate(&self, token: &SessionToken, now: u64) -> Result<Option<UserId>, Self::Error> {
        let key = token.hash();
        match self.get(&key)? {
            Some(session) if session.is_valid_at(now) => Ok(Some(session.user)),
            Some(_) => {
                self.remove(&key)?;
                Ok(None)
            }
            None => Ok(None),
        }
    }

    /// Ends the session of `token`; whether there was one.
    fn logout(&self, token: &SessionToken) -> Result<bool, Self::Error> {
        self.remove(&token.hash())
    }

    /// Ends every session of `user` (password change, "log out everywhere", account
    /// deletion); how many there were.
    fn revoke_all(&self, user: &UserId) -> Result<usize, Self::Error> {
        self.remove_user(user)
    }

    /// Removes the sessions that expired by `now`; how many. Run it periodically: expired
    /// sessions are refused whether or not they were swept.
    fn sweep(&self, now: u64) -> Result<usize, Self::Error> {
        self.remove_expired(now)
    }
}

/// The in-memory session store: a hash map from [`TokenHash`] to [`Session`] behind a
/// mutex, shared by reference between threads. Sessions are lost when the process ends.
#[derive(Default)]
pub struct SessionTable {
    sessions: Mutex<HashMap<TokenHash, Session>>,
}

impl SessionTable {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many records the table holds, expired ones not yet swept included.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether the table holds no records.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// A copy of every record with its key, in no particular order: what a reader of the
    /// server's memory would find (for diagnostics and tests).
    pub fn entries(&self) -> Vec<(TokenHash, Session)> {
        self.lock().iter().map(|(k, v)| (*k, *v)).collect()
    }

    // A panic while the lock was held cannot leave the map half-updated (each operation is
    // one map call), so a poisoned lock is still safe to use.
    fn lock(&self) -> MutexGuard<'_, HashMap<TokenHash, Session>> {
        self.sessions.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl fmt::Debug for SessionTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionTable")
            .field("sessions", &self.len())
            .finish()
    }
}

impl SessionStore for SessionTable {
    type Error = Infallible;

    fn insert(&self, key: TokenHash, session: Session) -> Result<(), Infallible> {
        self.lock().insert(key, session);
        Ok(())
    }

    fn get(&self, key: &TokenHash) -> Result<Option<Session>, Infallible> {
        Ok(self.lock().get(key).copied())
    }

    fn remove(&self, key: &TokenHash) -> Result<bool, Infallible> {
        Ok(self.lock().remove(key).is_some())
    }

    fn remove_user(&self, user: &UserId) -> Result<usize, Infallible> {
        let mut sessions = self.lock();
        let before = sessions.len();
        sessions.retain(|_, s| s.user != *user);
        Ok(before - sessions.len())
    }

    fn remove_expired(&self, now: u64) -> Result<usize, Infallible> {
        let mut sessions = self.lock();
        let before = sessions.len();
        sessions.retain(|_, s| s.is_valid_at(now));
        Ok(before - sessions.len())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn token_encoding_is_strict() {
        let token =
            SessionToken::from_authorization("Bearer AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8")
                .unwrap();
        assert_eq!(
            token.0,
            core::array::from_fn::<u8, 32, _>(|i| u8::try_from(i).unwrap())
        );
        assert_eq!(
            &*token.encode(),
            "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8"
        );
        assert!(SessionToken::from_authorization(
            "bearer   AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8"
        )
        .is_some());
        // The last character carries 2 unused bits: '9' (61) sets one of them, '8' (60)
        // is the canonical form.
        assert!(SessionToken::parse("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh9").is_none());
        for bad in [
            "",
            "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh",
            "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
            "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8A",
            "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh+",
            "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh/",
        ] {
            assert!(SessionToken::parse(bad).is_none(), "{bad:?}");
        }
        for bad in [
            "Basic AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8",
            "BearerAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8",
            "Bearer AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8 ",
            "Bearer",
        ] {
            assert!(SessionToken::from_authorization(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn token_hash_is_the_labelled_sha256() {
        let token = SessionToken([0x42; 32]);
        let mut input = b"vault/v1/server/session-token\0".to_vec();
        input.extend_from_slice(&[0x42; 32]);
        let expected: [u8; 32] = Sha256::digest(&input).into();
        assert_eq!(token.hash().as_bytes(), &expected);
        assert_eq!(format!("{token:?}"), "SessionToken([redacted])");
    }
}
