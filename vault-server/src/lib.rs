//! # vault-server
//!
//! The thin server of the end-to-end encrypted vault (BRIEF R14): it stores opaque bytes and
//! never holds a decryption key. Its parts: the HTTP API ([`api`], docs/spec/api.md) and its
//! configuration ([`config`]); the login and session layer ([`auth`]); the hash-chained
//! audit log of security events ([`audit`], docs/spec/audit.md); the storage seam with its
//! backends ([`store`]: sled, and PostgreSQL with the `postgres` feature); TLS ([`tls`],
//! docs/spec/tls.md). The `vault-server` binary (`src/main.rs`) serves the API over either
//! store, over TLS or (on loopback) plain HTTP.
//!
//! The client proves its password by a 32-byte login secret derived from it
//! (docs/spec/keyring.md §3); the server keeps only a slow, salted [`auth::Verifier`] of that
//! secret, hands out session tokens it stores only as hashes, and slows down guessing with a
//! per-account and per-address backoff. The formats and parameters are specified in
//! `docs/spec/login.md`.
//!
//! ```
//! use rand_core::OsRng;
//! use vault_server::auth::{
//!     check_login, Backoff, LoginCheck, LoginSecret, SessionStore, SessionTable, Verifier,
//!     VerifierPolicy, DEFAULT_SESSION_TTL,
//! };
//!
//! // At start-up: calibrate (about 100 ms per verification; here the floor, to be quick).
//! let policy = VerifierPolicy::with_iterations(vault_server::auth::verifier::MIN_ITERATIONS)?;
//! let sessions = SessionTable::new();
//! let backoff = Backoff::default();
//!
//! // Registration: store the verifier of the client's login secret.
//! let secret = LoginSecret::from_bytes([7; 32]).ok_or("all-zero secret")?;
//! let stored = Verifier::create(&mut OsRng, &secret, &policy).to_bytes();
//!
//! // Login from 192.0.2.1 at time `now`.
//! let (account, addr, now) = (b"alice".as_slice(), "192.0.2.1".parse()?, 1_700_000_000);
//! backoff.check(account, addr, now)?;
//! let verifier = Verifier::from_bytes(&stored)?;
//! match check_login(Some(&verifier), &secret, &policy) {
//!     LoginCheck::Accepted { rehash } => {
//!         backoff.record_success(account);
//!         assert!(!rehash);
//!         let Ok(token) = sessions.issue(&mut OsRng, [1; 16], now, DEFAULT_SESSION_TTL);
//!         // The client sends `Authorization: Bearer <token>` from now on.
//!         let header = format!("Bearer {}", &*token.encode());
//!         let presented = vault_server::auth::SessionToken::from_authorization(&header)
//!             .ok_or("bad header")?;
//!         let Ok(user) = sessions.authenticate(&presented, now + 60);
//!         assert_eq!(user, Some([1; 16]));
//!     }
//!     LoginCheck::Rejected => backoff.record_failure(account, addr, now),
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod api;
pub mod audit;
pub mod auth;
pub mod backup;
pub mod config;
pub mod store;
pub mod tls;
mod transport;
