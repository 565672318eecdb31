//! The login and session layer (issue #5; docs/spec/login.md).
//!
//! - [`verifier`]: the stored login verifier of each account, behind a versioned scheme
//!   seam; the calibrated iteration count; the equal-cost check for unknown accounts.
//! - [`session`]: bearer tokens, stored only as hashes; the [`SessionStore`] seam and the
//!   in-memory [`SessionTable`].
//! - [`otp`] and [`mfa`]: the second factor (HOTP/TOTP, backup codes, trusted devices,
//!   elevations for sensitive operations, the IP allow-list; docs/spec/mfa.md).
//! - [`backoff`]: lock-outs after failed logins, per account name and per client address,
//!   in bounded memory.
//!
//! A login handler puts them together in this order (login.md §9):
//!
//! 1. [`Backoff::check`] for the account name and address; if locked, answer
//!    `429 Too Many Requests` with `Retry-After` and stop.
//! 2. Look up the account's [`Verifier`]; [`check_login`] with `Some(verifier)` or with
//!    `None` for an unknown account (the same PBKDF2 cost either way).
//! 3. On [`LoginCheck::Rejected`]: [`Backoff::record_failure`] and answer "authentication
//!    failed", the same for an unknown account and a wrong secret.
//! 4. On [`LoginCheck::Accepted`]: [`Backoff::record_success`]; if `rehash`, store a new
//!    [`Verifier::create`]; [`SessionStore::issue`] a token.

pub mod backoff;
pub mod mfa;
pub mod otp;
pub mod session;
pub mod verifier;

use std::time::{SystemTime, UNIX_EPOCH};

pub use backoff::{Backoff, BackoffPolicy, RetryAfter, Schedule};
pub use session::{
    Session, SessionStore, SessionTable, SessionToken, TokenHash, UserId, DEFAULT_SESSION_TTL,
};
pub use verifier::{
    check_login, dummy_verify, DecoyKey, LoginCheck, LoginSecret, Scheme, Verifier, VerifierError,
    VerifierPolicy,
};

/// The current time in Unix seconds, the `now` the session and backoff functions take
/// (0 if the system clock is before 1970).
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
