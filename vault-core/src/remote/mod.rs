//! The sync client (feature `remote`; docs/spec/client.md): the vault's [`Store`] and the
//! account operations over the server's HTTP API (docs/spec/api.md).
//!
//! ```no_run
//! use vault_core::remote::{Login, Server, ServerOptions};
//! use vault_core::{LocalState, Vault};
//! use vault_keyring::Password;
//!
//! let server = Server::connect(
//!     "https://vault.example.org",
//!     ServerOptions::new().pin_sha256_hex("9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08")?,
//! )?;
//! let password = Password::from("correct horse battery staple");
//! let (session, keyring) = server.login_and_unlock("alice", &password, &Login::new())?;
//! let vault = Vault::open(session.store(), keyring, LocalState::open("state")?);
//! let mut notes = vault.collection("notes")?;
//! notes.put("hello.txt", b"hello")?;
//! # Ok::<(), vault_core::remote::RemoteError>(())
//! ```
//!
//! Everything the client sends is sealed by this library or public (identity bundles); the
//! password never leaves the device, only the login secret derived from it
//! (docs/spec/keyring.md §3). Everything it receives is untrusted and verified by the vault
//! layer; answers are read only up to the server's own size limits.
//!
//! The client is blocking (the [`Store`] trait is synchronous): do not call it from inside an
//! async runtime's worker thread.
//!
//! Also here: account recovery with the recovery code ([`Server::recover`]), resuming a
//! saved session ([`Server::resume`]) and the change feed ([`RemoteStore::changes`], used by
//! [`CachedStore::catch_up`](crate::CachedStore::catch_up); docs/spec/client.md §8) and MFA
//! enrolment and management ([`Session::mfa_status`], [`Session::enroll_otp`],
//! [`Session::confirm_otp`], [`Session::new_backup_codes`], [`Session::disable_mfa`]; api.md
//! §5.5). Not yet here: trusted-device revocation and the IP allow-list (use those routes
//! with [`Session::expose_token`]).
//!
//! [`Store`]: crate::Store

mod account;
mod store;
mod transport;

use std::time::Duration;

pub use account::{
    BackupCodes, Login, MfaFactor, MfaStatus, OtpEnrolment, OtpKind, Registration, SecondFactor,
    Server, Session, TrustedDevice,
};
pub use store::RemoteStore;
pub use transport::{RetryPolicy, ServerOptions};

/// What can go wrong talking to the server, in words a command-line tool can print as they
/// are. No variant carries text from the server (it is untrusted) or any secret.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RemoteError {
    /// The server URL is not an absolute `https://` (or loopback `http://`) URL without
    /// credentials, query or fragment.
    #[error("invalid server URL")]
    InvalidUrl,
    /// A plain `http://` URL to a host that is not loopback: refused, since the session
    /// token and everything else would cross the network in the clear.
    #[error("refused: plain http:// is only allowed to localhost, 127.0.0.1 or ::1; use https://")]
    PlainHttpRefused,
    /// The client's own configuration is unusable (a PEM file, a pin, a KDF choice).
    #[error("invalid client configuration: {0}")]
    InvalidConfig(&'static str),
    /// No connection to the server (refused, unreachable, name not resolved, reset).
    #[error("the server cannot be reached")]
    Unreachable,
    /// The server did not answer in time.
    #[error("the server did not answer in time")]
    TimedOut,
    /// The TLS handshake failed: the certificate is not trusted (unknown issuer, wrong
    /// name, expired) or the server offers nothing this client accepts.
    #[error("secure connection failed: the server's certificate is not trusted")]
    Tls,
    /// The server's certificate is not the pinned one: the connection may be intercepted,
    /// or the server's certificate was replaced.
    #[error("the server's certificate does not match the pinned fingerprint: the connection may be intercepted (or the server's certificate changed)")]
    PinMismatch,
    /// Wrong login name or password (the server gives one answer for both), or a wrong
    /// current password when changing it.
    #[error("wrong name or password")]
    AuthenticationFailed,
    /// The account has a second factor: log in again with one.
    #[error("this account needs a second factor (an authenticator or backup code)")]
    MfaRequired,
    /// The second factor was wrong or already used.
    #[error("the second factor was wrong or already used")]
    MfaFailed,
    /// A sensitive operation of an account with MFA needs an elevation
    /// ([`Session::elevate`]).
    #[error("this operation needs a fresh second factor first")]
    ElevationRequired,
    /// The account's IP allow-list leaves out this address.
    #[error("the account does not allow this network address")]
    AddressNotAllowed,
    /// The session is over (expired, logged out, or ended by a password change): log in
    /// again.
    #[error("the session has ended: log in again")]
    SessionEnded,
    /// A compare-and-swap found another version (another device was first).
    #[error("another device changed it first (the server holds version {current})")]
    Conflict {
        /// The version the server holds.
        current: u64,
    },
    /// The name (or id) is taken.
    #[error("that name is taken")]
    Exists,
    /// Nothing there, or nothing this account may reach (the server does not tell which).
    #[error("not found")]
    NotFound,
    /// Too many attempts: the server asks to wait.
    #[error("too many attempts; try again {}", retry_text(*.retry_after))]
    RateLimited {
        /// How long the server asked to wait, if it said.
        retry_after: Option<Duration>,
    },
    /// The request is larger than the server accepts.
    #[error("too large for the server")]
    TooLarge,
    /// The account's storage quota is used up.
    #[error("the account's storage quota is used up")]
    QuotaExceeded,
    /// The server refused the request (another 4xx status: a bug on one side or the other).
    #[error("the server refused the request (HTTP {status})")]
    Refused {
        /// The HTTP status.
        status: u16,
    },
    /// The server failed (5xx), after the retries.
    #[error("the server failed (HTTP {status}); try again later")]
    Server {
        /// The HTTP status.
        status: u16,
    },
    /// The server's answer is not what the API defines.
    #[error("the server's answer is malformed ({0})")]
    Protocol(&'static str),
    /// Data from the server failed its integrity check: the server (or someone on the way)
    /// altered, replaced, rolled back or withheld something. Nothing of it was used.
    #[error("tampering detected: data from the server failed its integrity check")]
    Integrity,
    /// Another error of the vault (e.g. [`crate::Error::KeyChanged`]).
    #[error(transparent)]
    Vault(crate::Error),
    /// A keyring error on this device (e.g. an empty password, KDF parameters outside the
    /// policy: the server offered a weak iteration count).
    #[error("keyring: {0}")]
    Keyring(vault_keyring::Error),
}

fn retry_text(after: Option<Duration>) -> String {
    match after {
        Some(d) => format!("in {} s", d.as_secs().max(1)),
        None => "later".to_owned(),
    }
}

impl From<crate::Error> for RemoteError {
    /// Unpacks what the vault layer wraps: a [`RemoteStore`] failure comes back as the
    /// `RemoteError` it was, an integrity failure as [`RemoteError::Integrity`].
    fn from(e: crate::Error) -> Self {
        match e {
            crate::Error::Integrity => RemoteError::Integrity,
            crate::Error::Store(s) => {
                let ours = std::error::Error::source(&s)
                    .is_some_and(|inner| inner.downcast_ref::<RemoteError>().is_some());
                if ours {
                    if let Some(Ok(inner)) = s.into_source().map(|b| b.downcast::<RemoteError>()) {
                        return *inner;
                    }
                    RemoteError::Protocol("store error")
                } else {
                    RemoteError::Vault(crate::Error::Store(s))
                }
            }
            other => RemoteError::Vault(other),
        }
    }
}

impl From<vault_keyring::Error> for RemoteError {
    fn from(e: vault_keyring::Error) -> Self {
        match e {
            vault_keyring::Error::AuthenticationFailed => RemoteError::Integrity,
            other => RemoteError::Keyring(other),
        }
    }
}

/// Lowercase hex of an id (api.md §2).
pub(crate) fn hex(bytes: &[u8]) -> String {
    data_encoding::HEXLOWER.encode(bytes)
}

/// base64url without padding (api.md §2).
pub(crate) fn b64(bytes: &[u8]) -> String {
    data_encoding::BASE64URL_NOPAD.encode(bytes)
}

/// Strict base64url without padding.
pub(crate) fn unb64(text: &str) -> Result<Vec<u8>, RemoteError> {
    data_encoding::BASE64URL_NOPAD
        .decode(text.as_bytes())
        .map_err(|_| RemoteError::Protocol("malformed base64url"))
}

/// A 16-byte id from 32 lowercase hex digits.
pub(crate) fn unhex16(text: &str) -> Result<[u8; 16], RemoteError> {
    let bytes = data_encoding::HEXLOWER
        .decode(text.as_bytes())
        .map_err(|_| RemoteError::Protocol("malformed id"))?;
    bytes
        .try_into()
        .map_err(|_| RemoteError::Protocol("malformed id"))
}

#[cfg(test)]
mod tests;
