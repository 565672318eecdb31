//! Account recovery with the recovery code, through the server (docs/spec/api.md §5.1
//! "Recovery"; login.md §11; keyring.md §5.1): a user who lost the password proves the
//! recovery code with its **recovery login secret**, fetches the sealed keyring, opens it
//! locally with the code, seals it under a new password and replaces the keyring and the
//! login verifier in one step.
//!
//! - `POST /v1/recovery/keyring` `{name, recovery_secret, second_factor?}` → the sealed
//!   keyring, its version, and (when a second factor was used) an elevation token bound to
//!   this account and keyring version, so that the next step needs no second code.
//! - `POST /v1/recovery` `{name, recovery_secret, second_factor?, expected, keyring,
//!   new_login_secret, new_recovery_secret?}` → replaces the keyring (compare-and-swap), the
//!   login verifier and, with `new_recovery_secret`, the recovery verifier; ends every
//!   session.
//! - `PUT /v1/account/recovery` (session, sensitive) `{login_secret, recovery_secret,
//!   expected, keyring}` → a new recovery code: keyring and recovery verifier together.
//!
//! Both unauthenticated routes run exactly like a login (login.md §7–§9): the backoff of the
//! name and the address first; then the recovery verifier, or for an unknown name and for an
//! account without one the same number of reads and a dummy check of the same cost; one
//! `401 authentication_failed` for all three; then the account's IP allow-list and, with
//! MFA on, a second factor (a trusted device does not replace it here).

use std::net::IpAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue};
use axum::response::Response;
use axum::Json;
use rand_core::OsRng;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use super::accounts::{backoff_error, VersionResponse};
use super::error::{ApiError, ErrorBody};
use super::extract::{
    blob_response, read_json, ApiJson, Auth, Base64Url, ClientAddr, Counter, SecretField,
};
use super::mfa::{Elevation, FactorField, ELEVATION_HEADER};
use super::validate::{check_keyring, kdf_parameters, normalize_name};
use super::{blocking, AppState};
use crate::audit::{Details, Event, EventKind, MfaMethod};
use crate::auth::mfa::Accepted;
use crate::auth::{check_login, LoginCheck, LoginSecret, UserId, Verifier};
use crate::store::{Backend, Cas, KeyringReplacement};

/// The audit kinds of recovery. audit.md §2.1 assigns codes 11–14 to `recovery_keyring_read`,
/// `recovery`, `recovery_failed` and `recovery_changed`; until [`EventKind`] has those
/// variants (`src/audit.rs`), the nearest existing kinds are recorded, named here only.
mod kinds {
    use crate::audit::EventKind;
    /// The sealed keyring was handed out against the recovery secret (`version`).
    pub(super) const KEYRING_READ: EventKind = EventKind::RecoveryKeyringRead;
    /// Recovered: keyring and login verifier replaced, sessions ended (`version`).
    pub(super) const RECOVERED: EventKind = EventKind::Recovery;
    /// A recovery request with a wrong recovery secret (the account if the name exists).
    pub(super) const FAILED: EventKind = EventKind::RecoveryFailed;
    /// The recovery verifier was set or replaced with the keyring (`version`).
    pub(super) const CHANGED: EventKind = EventKind::RecoveryChanged;
}

/// The id read in place of an unknown account's records (the result is discarded).
const NO_USER: UserId = [0; 16];

/// The label of the "session" an elevation made by a recovery is bound to (mfa.md §6).
const RECOVERY_ELEVATION_LABEL: &[u8] = b"vault-server recovery elevation v1\0";

/// The value a recovery's elevation is bound to in place of a session hash: the account and
/// the keyring version the client read. No session token hashes to it (another label), and
/// a successful recovery changes the version, so the elevation serves one recovery only.
fn recovery_binding(user: &UserId, version: u64) -> [u8; 32] {
    Sha256::new()
        .chain_update(RECOVERY_ELEVATION_LABEL)
        .chain_update(user)
        .chain_update(version.to_be_bytes())
        .finalize()
        .into()
}

/// The recovery part of a sealed keyring (keyring.md §4.2): `recovery_salt` (header bytes
/// 48..64) and `rc_wrap` (bytes 144..224). `None` if the blob is shorter.
pub(crate) fn recovery_part(keyring: &[u8]) -> Option<(&[u8], &[u8])> {
    Some((keyring.get(48..64)?, keyring.get(144..224)?))
}

/// For an account with a recovery verifier, a new keyring must keep the stored keyring's
/// recovery part, or the verifier would belong to a code that no longer opens it (or the
/// reverse). A new recovery code goes through `PUT /v1/account/recovery` (or
/// `new_recovery_secret` of a recovery), which replaces both together. Runs in the blocking
/// pool.
pub(crate) fn check_recovery_part_kept<B: Backend>(
    b: &B,
    user: &UserId,
    stored: Option<&[u8]>,
    keyring: &[u8],
) -> Result<(), ApiError> {
    if b.recovery_verifier(user)?.is_none() {
        return Ok(());
    }
    let Some(stored) = stored else {
        return Ok(());
    };
    if recovery_part(stored) != recovery_part(keyring) {
        return Err(ApiError::BadRequest(
            "the keyring's recovery code changed: replace it with PUT /v1/account/recovery",
        ));
    }
    Ok(())
}

/// The decoded recovery verifier of `user`, if any (a damaged record is logged and treated
/// as none: the request is refused after the dummy work).
fn stored_recovery_verifier<B: Backend>(
    b: &B,
    user: &UserId,
) -> Result<Option<Verifier>, ApiError> {
    match b.recovery_verifier(user)? {
        None => Ok(None),
        Some(bytes) => match Verifier::from_bytes(&bytes) {
            Ok(v) => Ok(Some(v)),
            Err(e) => {
                tracing::error!(target: "vault_server", error = %e, "a stored recovery verifier does not decode");
                Ok(None)
            }
        },
    }
}

/// The outcome of checking a recovery secret.
struct Checked<T> {
    user: Option<UserId>,
    check: LoginCheck,
    /// What `then` produced for an accepted secret.
    value: Option<T>,
}

/// Checks `secret` against the recovery verifier of `name` (login.md §7: the same reads and
/// the same PBKDF2 cost for an unknown name, an account without a recovery verifier and a
/// wrong secret) and, if it is right, runs `then` on the account in the same blocking task.
/// On a wrong secret: the backoff failure, the audit event, `401 authentication_failed`.
async fn check_recovery_secret<B: Backend, T: Send + 'static>(
    state: &Arc<AppState<B>>,
    name: &str,
    addr: IpAddr,
    now: u64,
    secret: LoginSecret,
    then: impl FnOnce(&B, &UserId) -> Result<T, ApiError> + Send + 'static,
) -> Result<(UserId, LoginCheck, T), ApiError> {
    state
        .backoff
        .check(name.as_bytes(), addr, now)
        .map_err(backoff_error)?;
    let policy = state.policy.for_recovery();
    let lookup = name.to_owned();
    let checked = blocking(state, move |b| {
        let user = b.user_by_name(&lookup)?;
        let verifier = match user {
            Some(u) => stored_recovery_verifier(b, &u)?,
            None => {
                // As many reads as for an account (login.md §7).
                let _ = b.recovery_verifier(&NO_USER)?;
                None
            }
        };
        let check = check_login(verifier.as_ref(), &secret, &policy);
        let value = match (user, check) {
            (Some(u), LoginCheck::Accepted { .. }) => Some(then(b, &u)?),
            _ => None,
        };
        Ok(Checked { user, check, value })
    })
    .await?;
    match (checked.user, checked.value) {
        (Some(user), Some(value)) => Ok((user, checked.check, value)),
        (user, _) => {
            state.backoff.record_failure(name.as_bytes(), addr, now);
            let mut event = Event::new(kinds::FAILED).with_address(Some(addr));
            // With the account if the name exists, never with the name (audit.md §2.3).
            event.account = user;
            state.audit(event).await;
            Err(ApiError::AuthenticationFailed)
        }
    }
}

/// What the MFA step of a recovery did.
#[derive(Default)]
struct Step {
    /// A new elevation token for the next step (the keyring fetch with a second factor).
    elevation: Option<zeroize::Zeroizing<String>>,
    /// Backup codes left, when one was used.
    backup_codes_left: Option<usize>,
}

/// The MFA step of a recovery whose secret was right (mfa.md §5–§6): the allow-list, then,
/// with MFA on, a live elevation bound to `(user, version)` (only when `accept_elevation`)
/// or a second factor, which is used up. With `elevate`, an accepted second factor also
/// makes an elevation bound to `(user, version)`. A wrong or used code counts as a failed
/// attempt (backoff, `mfa_failed` event).
#[allow(clippy::too_many_arguments)]
async fn mfa_step<B: Backend>(
    state: &Arc<AppState<B>>,
    name: &str,
    user: UserId,
    addr: IpAddr,
    now: u64,
    version: u64,
    factor: Option<FactorField>,
    elevation: Option<zeroize::Zeroizing<String>>,
    elevate: bool,
) -> Result<Step, ApiError> {
    let kind = factor
        .as_ref()
        .and_then(|f| super::mfa::factor_method(f.kind()));
    let s = Arc::clone(state);
    let binding = recovery_binding(&user, version);
    let result = blocking(state, move |b| {
        let factor = factor.as_ref().map(FactorField::factor).transpose()?;
        super::mfa::update(b, &s.mfa_key, &user, now, |record| {
            if !record.allows(addr) {
                return Err(ApiError::AddressNotAllowed);
            }
            if !record.enabled() {
                return Ok((false, Step::default()));
            }
            if let Some(token) = &elevation {
                if record.is_elevated(token, &binding, now) {
                    return Ok((false, Step::default()));
                }
            }
            let Some(factor) = factor else {
                return Err(ApiError::MfaRequired);
            };
            let mut step = Step::default();
            match record.accept(&user, factor, now) {
                None => return Err(ApiError::MfaFailed),
                Some(Accepted::BackupCode { left }) => step.backup_codes_left = Some(left),
                Some(Accepted::Otp(_)) => {}
            }
            if elevate {
                step.elevation = Some(record.elevate(&mut OsRng, binding, now));
            }
            Ok((true, step))
        })
    })
    .await;
    match result {
        Err(ApiError::MfaFailed) => {
            state.backoff.record_failure(name.as_bytes(), addr, now);
            let details = Details {
                method: kind,
                ..Details::default()
            };
            state
                .audit(super::mfa::event(EventKind::MfaFailed, user, addr, details))
                .await;
            Err(ApiError::MfaFailed)
        }
        Err(e) => Err(e),
        Ok(step) => {
            if step.backup_codes_left.is_some() {
                let details = Details {
                    method: Some(MfaMethod::BackupCode),
                    count: step.backup_codes_left.map(|n| n as u64),
                    ..Details::default()
                };
                state
                    .audit(super::mfa::event(
                        EventKind::BackupCodeUsed,
                        user,
                        addr,
                        details,
                    ))
                    .await;
            }
            Ok(step)
        }
    }
}

/// The recovery secret of an account, to fetch its keyring.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RecoveryKeyringRequest {
    /// The login name (normalised as at registration).
    name: String,
    /// The recovery login secret (keyring.md §5.1): 32 bytes derived from the recovery
    /// code, base64url.
    recovery_secret: SecretField,
    /// A second factor, for an account with MFA (docs/spec/mfa.md §5).
    #[serde(default)]
    second_factor: Option<FactorField>,
}

/// The sealed keyring of an account whose password was lost, against its recovery secret
/// (and a second factor when the account has MFA). The client opens it with the recovery
/// code, seals it under a new password and sends it to `POST /v1/recovery`. Failed attempts
/// count in the login backoff; an unknown name, an account without recovery and a wrong
/// secret get one answer.
#[utoipa::path(
    post,
    path = "/v1/recovery/keyring",
    tag = "recovery",
    request_body = RecoveryKeyringRequest,
    responses(
        (status = 200, description = "The sealed keyring", body = super::extract::Blob, content_type = "application/octet-stream",
            headers(
                ("Vault-Version" = u64, description = "The keyring version (the `expected` of POST /v1/recovery)"),
                ("Vault-Elevation" = String, description = "When a second factor was used: a token that stands for it at POST /v1/recovery of this keyring version (5 minutes)"),
            )),
        (status = 400, description = "bad_request (name syntax, recovery secret, second factor kind), malformed_body", body = ErrorBody),
        (status = 401, description = "authentication_failed: wrong recovery secret, unknown name, or no recovery set up (one answer); mfa_required; mfa_failed", body = ErrorBody),
        (status = 403, description = "address_not_allowed: the account's IP allow-list leaves out this address", body = ErrorBody),
        (status = 413, description = "payload_too_large", body = ErrorBody),
        (status = 415, description = "unsupported_media_type", body = ErrorBody),
        (status = 429, description = "too_many_requests: failed-login backoff", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
    )
)]
pub(crate) async fn recovery_keyring<B: Backend>(
    State(state): State<Arc<AppState<B>>>,
    ClientAddr(addr): ClientAddr,
    ApiJson(request): ApiJson<RecoveryKeyringRequest>,
) -> Result<Response, ApiError> {
    let name = normalize_name(&request.name)?;
    let secret = request.recovery_secret.login_secret()?;
    let now = state.clock.now();
    let (user, _, stored) = check_recovery_secret(&state, &name, addr, now, secret, |b, u| {
        b.keyring(u)?.ok_or(ApiError::NotFound)
    })
    .await?;
    let (version, blob) = stored;
    let step = mfa_step(
        &state,
        &name,
        user,
        addr,
        now,
        version,
        request.second_factor,
        None,
        true,
    )
    .await?;
    state.backoff.record_success(name.as_bytes());
    let details = Details {
        version: Some(version),
        ..Details::default()
    };
    let event = Event::new(kinds::KEYRING_READ).with_account(user);
    state
        .audit(event.with_address(Some(addr)).with_details(details))
        .await;
    let mut response = blob_response(blob, Some(version));
    if let Some(token) = step.elevation {
        let value = HeaderValue::from_str(&token).map_err(|_| ApiError::Internal)?;
        response.headers_mut().insert(ELEVATION_HEADER, value);
    }
    Ok(response)
}

/// A recovery: the keyring sealed under a new password, against the recovery secret.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RecoverRequest {
    /// The login name.
    name: String,
    /// The recovery login secret of the current recovery code.
    recovery_secret: SecretField,
    /// A second factor, for an account with MFA, unless the `Vault-Elevation` header
    /// carries the token of `POST /v1/recovery/keyring`.
    #[serde(default)]
    second_factor: Option<FactorField>,
    /// The keyring version the client read (compare-and-swap).
    expected: Counter,
    /// The keyring sealed under the new password (base64url; the registration checks
    /// apply). It keeps the recovery code's wrap, unless `new_recovery_secret` is given.
    keyring: Base64Url,
    /// The login secret of the new password, derived with the new keyring's KDF salt and
    /// count.
    new_login_secret: SecretField,
    /// With a keyring sealed under a new recovery code (recommended: keyring.md §7): that
    /// code's recovery login secret.
    #[serde(default)]
    new_recovery_secret: Option<SecretField>,
}

/// Recovers an account whose password was lost: replaces the sealed keyring
/// (compare-and-swap) and the login verifier — and the recovery verifier, with
/// `new_recovery_secret` — in one step, then ends every session of the account. Checked
/// like a login: the backoff, one `401 authentication_failed` for an unknown name, an
/// account without recovery and a wrong secret, the IP allow-list, and with MFA a second
/// factor (or the elevation token of `POST /v1/recovery/keyring` in `Vault-Elevation`).
#[utoipa::path(
    post,
    path = "/v1/recovery",
    tag = "recovery",
    request_body = RecoverRequest,
    params(("Vault-Elevation" = Option<String>, Header, description = "The token of POST /v1/recovery/keyring, in place of a second factor")),
    responses(
        (status = 200, description = "Recovered; every session of the account has ended", body = VersionResponse),
        (status = 400, description = "bad_request (secrets, not a sealed keyring of the account, recovery part changed without new_recovery_secret), malformed_body", body = ErrorBody),
        (status = 401, description = "authentication_failed: wrong recovery secret, unknown name, or no recovery set up (one answer); mfa_required; mfa_failed", body = ErrorBody),
        (status = 403, description = "address_not_allowed", body = ErrorBody),
        (status = 409, description = "conflict: the stored keyring version is `current`", body = ErrorBody),
        (status = 413, description = "payload_too_large", body = ErrorBody),
        (status = 415, description = "unsupported_media_type", body = ErrorBody),
        (status = 429, description = "too_many_requests: failed-login backoff", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
    )
)]
pub(crate) async fn recover<B: Backend>(
    State(state): State<Arc<AppState<B>>>,
    ClientAddr(addr): ClientAddr,
    elevation: Elevation,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<VersionResponse>, ApiError> {
    let limits = state.config.limits;
    let room = limits.keyring_json_body();
    let request: RecoverRequest = read_json(&headers, body, room).await?;
    let name = normalize_name(&request.name)?;
    let secret = request.recovery_secret.login_secret()?;
    let new_secret = request.new_login_secret.login_secret()?;
    let new_recovery = request
        .new_recovery_secret
        .as_ref()
        .map(SecretField::login_secret)
        .transpose()?;
    if request.keyring.0.len() > limits.keyring {
        return Err(ApiError::PayloadTooLarge);
    }
    let now = state.clock.now();
    let expected = request.expected.0;
    let keyring = Arc::new(request.keyring.0);
    let checked_keyring = Arc::clone(&keyring);
    let rotate = new_recovery.is_some();
    // The keyring is checked once the secret is right and before a second factor is used
    // up, so that a client's mistake costs no code.
    let (user, check, ()) = check_recovery_secret(&state, &name, addr, now, secret, move |b, u| {
        check_keyring(&checked_keyring, u)?;
        if !rotate {
            let stored = b.keyring(u)?.map(|(_, k)| k);
            check_recovery_part_kept(b, u, stored.as_deref(), &checked_keyring)?;
        }
        Ok(())
    })
    .await?;
    mfa_step(
        &state,
        &name,
        user,
        addr,
        now,
        expected,
        request.second_factor,
        elevation.0,
        false,
    )
    .await?;
    let policy = state.policy;
    let rehash = matches!(check, LoginCheck::Accepted { rehash: true });
    // For a rehash the old recovery secret is needed again; it was moved into the check,
    // so the request's copy is read once more (it is still the same 32 bytes).
    let old_secret = if rehash && new_recovery.is_none() {
        Some(request.recovery_secret.login_secret()?)
    } else {
        None
    };
    let cas = blocking(&state, move |b| {
        let login = Verifier::create(&mut OsRng, &new_secret, &policy).to_bytes();
        let recovery_policy = policy.for_recovery();
        let recovery = match (&new_recovery, &old_secret) {
            (Some(s), _) | (None, Some(s)) => {
                Some(Verifier::create(&mut OsRng, s, &recovery_policy).to_bytes())
            }
            (None, None) => None,
        };
        let replacement = KeyringReplacement {
            keyring: &keyring,
            login_verifier: Some(&login),
            recovery_verifier: recovery.as_deref(),
        };
        let cas = b.replace_keyring(&user, expected, &replacement)?;
        if cas == Cas::Done {
            b.remove_user(&user)?;
        }
        Ok(cas)
    })
    .await?;
    match cas {
        Cas::Conflict { current } => Err(ApiError::Conflict { current }),
        Cas::Done => {
            state.backoff.record_success(name.as_bytes());
            tracing::info!(target: "vault_server", "account recovered; sessions ended");
            let version = expected.saturating_add(1);
            let details = Details {
                version: Some(version),
                ..Details::default()
            };
            let event = Event::new(kinds::RECOVERED).with_account(user);
            state
                .audit(event.with_address(Some(addr)).with_details(details))
                .await;
            Ok(Json(VersionResponse { version }))
        }
    }
}

/// A new recovery code: the keyring sealed under it and its recovery secret.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SetRecoveryRequest {
    /// The login secret of the current password, checked again.
    login_secret: SecretField,
    /// The recovery login secret of the new recovery code (keyring.md §5.1).
    recovery_secret: SecretField,
    /// The keyring version the client read (compare-and-swap).
    expected: Counter,
    /// The keyring sealed under the same password and the new recovery code (base64url;
    /// the registration checks apply, and the KDF salt and count must be the stored ones).
    keyring: Base64Url,
}

/// Sets or replaces the account's recovery code on the server: the keyring sealed under
/// the new code and the new code's recovery verifier, together (compare-and-swap). The
/// old code stops working for recovery through the server at once. Sensitive: an
/// elevation when MFA is on, the allow-list, and the login secret under the login backoff.
#[utoipa::path(
    put,
    path = "/v1/account/recovery",
    tag = "recovery",
    security(("session" = [])),
    request_body = SetRecoveryRequest,
    params(("Vault-Elevation" = Option<String>, Header, description = "An elevation token, when MFA is on")),
    responses(
        (status = 200, description = "Replaced", body = VersionResponse),
        (status = 400, description = "bad_request (secrets, not a sealed keyring of the caller, other KDF parameters than the stored keyring), malformed_body", body = ErrorBody),
        (status = 401, description = "authentication_failed: wrong login secret", body = ErrorBody),
        (status = 403, description = "elevation_required, address_not_allowed", body = ErrorBody),
        (status = 404, description = "not_found: the account was deleted", body = ErrorBody),
        (status = 409, description = "conflict: the stored keyring version is `current`", body = ErrorBody),
        (status = 413, description = "payload_too_large", body = ErrorBody),
        (status = 415, description = "unsupported_media_type", body = ErrorBody),
        (status = 429, description = "too_many_requests: failed-login backoff", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
    )
)]
pub(crate) async fn set_recovery<B: Backend>(
    State(state): State<Arc<AppState<B>>>,
    ClientAddr(addr): ClientAddr,
    auth: Auth,
    elevation: Elevation,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<VersionResponse>, ApiError> {
    super::mfa::require_elevation(&state, &auth, &elevation, addr).await?;
    let user = auth.user;
    let limits = state.config.limits;
    let room = limits.keyring_json_body();
    let request: SetRecoveryRequest = read_json(&headers, body, room).await?;
    let recovery_secret = request.recovery_secret.login_secret()?;
    if request.keyring.0.len() > limits.keyring {
        return Err(ApiError::PayloadTooLarge);
    }
    check_keyring(&request.keyring.0, &user)?;
    super::mfa::check_secret(&state, user, addr, &request.login_secret).await?;
    let policy = state.policy.for_recovery();
    let expected = request.expected.0;
    let keyring = request.keyring.0;
    let cas = blocking(&state, move |b| {
        // The password does not change here: the KDF parameters decide the login secret.
        if let Some((_, stored)) = b.keyring(&user)? {
            if kdf_parameters(&stored) != kdf_parameters(&keyring) {
                return Err(ApiError::BadRequest(
                    "the keyring's KDF parameters changed: change the password with POST /v1/account/password",
                ));
            }
        }
        let verifier = Verifier::create(&mut OsRng, &recovery_secret, &policy).to_bytes();
        let replacement = KeyringReplacement {
            keyring: &keyring,
            login_verifier: None,
            recovery_verifier: Some(&verifier),
        };
        Ok(b.replace_keyring(&user, expected, &replacement)?)
    })
    .await?;
    match cas {
        Cas::Conflict { current } => Err(ApiError::Conflict { current }),
        Cas::Done => {
            let version = expected.saturating_add(1);
            let details = Details {
                version: Some(version),
                ..Details::default()
            };
            let event = Event::new(kinds::CHANGED).with_account(user);
            state
                .audit(event.with_address(Some(addr)).with_details(details))
                .await;
            tracing::info!(target: "vault_server", "recovery code replaced");
            Ok(Json(VersionResponse { version }))
        }
    }
}
