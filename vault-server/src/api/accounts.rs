//! Accounts, login and sessions, the keyring blob, identity bundles and the name directory
//! (docs/spec/api.md §7.1–§7.3; the login flow of docs/spec/login.md §7–§9).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use rand_core::OsRng;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::audit::Peer;
use super::error::{ApiError, ErrorBody};
use super::extract::{
    blob_response, read_blob, read_json, ApiJson, ApiPath, ApiQuery, Auth, Base64Url, Blob,
    ClientAddr, Counter, HexId, SecretField,
};
use super::validate::{check_identity, check_keyring, kdf_parameters, normalize_name};
use super::{blocking, AppState, OpenApiText};
use crate::audit::{Details, Event, EventKind};
use crate::auth::{check_login, LoginCheck, RetryAfter, UserId, Verifier};
use crate::store::{Backend, Cas, NewAccount};

/// The OpenAPI 3 document of this API.
#[utoipa::path(
    get,
    path = "/v1/openapi.json",
    tag = "meta",
    responses((status = 200, description = "The OpenAPI 3 document", content_type = "application/json"))
)]
// `B` is unused, but `routes!` registers every handler as `handler::<B>`.
#[allow(clippy::extra_unused_type_parameters)]
pub(crate) async fn get_openapi<B: Backend>(Extension(doc): Extension<OpenApiText>) -> Response {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        doc.0.to_string(),
    )
        .into_response()
}

/// Registration.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RegisterRequest {
    /// The login name; ASCII letters are lowercased, then it must be 1–64 characters of
    /// `a-z 0-9 . _ @ + -`.
    #[schema(example = "alice@example.org")]
    name: String,
    /// The user id: the keyring id of the sealed keyring.
    user: HexId,
    /// The login secret the client derived from the password.
    login_secret: SecretField,
    /// The sealed keyring (docs/spec/keyring.md §4.2), base64url.
    keyring: Base64Url,
    /// The self-signed identity bundle (docs/spec/keyring.md §6), base64url.
    identity: Base64Url,
    /// The recovery login secret of the keyring's recovery code (docs/spec/keyring.md
    /// §5.1), base64url. Without it the account cannot recover through the server (until
    /// `PUT /v1/account/recovery` sets one).
    #[serde(default)]
    recovery_secret: Option<SecretField>,
}

/// A user id.
#[derive(Serialize, ToSchema)]
pub(crate) struct UserResponse {
    /// The user id.
    user: HexId,
}

/// The id read in place of an unknown account's records (the result is discarded).
const NO_USER: UserId = [0; 16];

pub(crate) fn backoff_error(RetryAfter(secs): RetryAfter) -> ApiError {
    ApiError::TooManyRequests { retry_after: secs }
}

/// Registers an account. The server makes the login verifier from the login secret with its
/// calibrated policy. A taken name or id is `409 exists` and counts as a failed attempt of
/// the client's address (login.md §7), after the same work as a success.
#[utoipa::path(
    post,
    path = "/v1/accounts",
    tag = "accounts",
    request_body = RegisterRequest,
    responses(
        (status = 201, description = "Registered", body = UserResponse),
        (status = 400, description = "bad_request (name syntax, login secret, keyring or identity checks), bad_id, malformed_body", body = ErrorBody),
        (status = 409, description = "exists: the name or the user id is taken", body = ErrorBody),
        (status = 413, description = "payload_too_large", body = ErrorBody),
        (status = 415, description = "unsupported_media_type: not application/json", body = ErrorBody),
        (status = 429, description = "too_many_requests: failed-attempt backoff of the name or address", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
    )
)]
pub(crate) async fn register<B: Backend>(
    State(state): State<Arc<AppState<B>>>,
    ClientAddr(addr): ClientAddr,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<UserResponse>), ApiError> {
    let limits = state.config.limits;
    let request: RegisterRequest = read_json(&headers, body, limits.register_body()).await?;
    let name = normalize_name(&request.name)?;
    let secret = request.login_secret.login_secret()?;
    let recovery_secret = request
        .recovery_secret
        .as_ref()
        .map(SecretField::login_secret)
        .transpose()?;
    let user = request.user.0;
    if request.keyring.0.len() > limits.keyring || request.identity.0.len() > limits.identity {
        return Err(ApiError::PayloadTooLarge);
    }
    let now = state.clock.now();
    state
        .backoff
        .check(name.as_bytes(), addr, now)
        .map_err(backoff_error)?;
    check_keyring(&request.keyring.0, &user)?;
    check_identity(&request.identity.0, &user)?;

    let policy = state.policy;
    let account_name = name.clone();
    let created = blocking(&state, move |b| {
        // The verifier is made before the store says whether the name is free, so a taken
        // name costs the same time as a new one.
        let verifier = Verifier::create(&mut OsRng, &secret, &policy).to_bytes();
        let recovery = recovery_secret
            .map(|s| Verifier::create(&mut OsRng, &s, &policy.for_recovery()).to_bytes());
        let account = NewAccount {
            user,
            name: &account_name,
            verifier: &verifier,
            keyring: &request.keyring.0,
            identity: &request.identity.0,
        };
        Ok(b.create_account_with_recovery(&account, recovery.as_deref())?)
    })
    .await?;
    if !created {
        state.backoff.record_failure(name.as_bytes(), addr, now);
        return Err(ApiError::Exists);
    }
    tracing::info!(target: "vault_server", "account registered");
    let event = Event::new(EventKind::AccountRegistered).with_account(user);
    state.audit(event.with_address(Some(addr))).await;
    Ok((
        StatusCode::CREATED,
        Json(UserResponse { user: HexId(user) }),
    ))
}

/// Pre-login.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PreloginRequest {
    /// The login name (normalised as at registration).
    name: String,
}

/// The client-KDF parameters to derive the login secret with.
#[derive(Serialize, ToSchema)]
pub(crate) struct PreloginResponse {
    /// The 16-byte PBKDF2 salt, base64url.
    kdf_salt: Base64Url,
    /// The PBKDF2 iteration count.
    kdf_iterations: u32,
}

/// The KDF salt and count of a login name's keyring, so the client can derive its login
/// secret. For a name that does not exist: a decoy salt, stable per name, and the
/// configured decoy count (login.md §7) — the two answers look alike.
#[utoipa::path(
    post,
    path = "/v1/prelogin",
    tag = "accounts",
    request_body = PreloginRequest,
    responses(
        (status = 200, description = "The KDF parameters (real or decoy)", body = PreloginResponse),
        (status = 400, description = "bad_request (name syntax), malformed_body", body = ErrorBody),
        (status = 413, description = "payload_too_large", body = ErrorBody),
        (status = 415, description = "unsupported_media_type", body = ErrorBody),
    )
)]
pub(crate) async fn prelogin<B: Backend>(
    State(state): State<Arc<AppState<B>>>,
    ApiJson(request): ApiJson<PreloginRequest>,
) -> Result<Json<PreloginResponse>, ApiError> {
    let name = normalize_name(&request.name)?;
    let lookup = name.clone();
    let stored = blocking(&state, move |b| {
        let Some(user) = b.user_by_name(&lookup)? else {
            // As many reads as for an account, so the timing does not tell (login.md §7).
            let _ = b.keyring(&NO_USER)?;
            return Ok(None);
        };
        match b.keyring(&user)? {
            Some((_, keyring)) => match kdf_parameters(&keyring) {
                Some(params) => Ok(Some(params)),
                None => {
                    tracing::error!(target: "vault_server", "a stored keyring is shorter than its header");
                    Err(ApiError::Unavailable)
                }
            },
            None => Ok(None),
        }
    })
    .await?;
    let (salt, iterations) = stored.unwrap_or_else(|| {
        (
            state.decoy.client_kdf_salt(name.as_bytes()),
            state.config.decoy_kdf_iterations,
        )
    });
    Ok(Json(PreloginResponse {
        kdf_salt: Base64Url(salt.to_vec()),
        kdf_iterations: iterations,
    }))
}

/// Login.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct LoginRequest {
    /// The login name.
    name: String,
    /// The login secret.
    login_secret: SecretField,
    /// A second factor, for an account with MFA (docs/spec/mfa.md §5).
    #[serde(default)]
    second_factor: Option<super::mfa::FactorField>,
    /// The token of a trusted device: no second factor needed while it is trusted.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    device_token: Option<super::mfa::Code>,
    /// Trust this device for 30 days, under this label (1 to 64 bytes); honoured when a
    /// second factor was given.
    #[serde(default)]
    trust_device: Option<String>,
}

/// A new session.
#[derive(Serialize, ToSchema)]
pub(crate) struct LoginResponse {
    /// The session token for `Authorization: Bearer <token>`: 43 base64url characters.
    token: String,
    /// The user id.
    user: HexId,
    /// When the session ends, Unix seconds.
    expires: u64,
    /// With `trust_device`: the device token (shown once; send it as `device_token`).
    #[serde(skip_serializing_if = "Option::is_none")]
    device_token: Option<String>,
    /// With `trust_device`: the device id (to revoke it).
    #[serde(skip_serializing_if = "Option::is_none")]
    device: Option<HexId>,
    /// When a backup code was used: how many are left.
    #[serde(skip_serializing_if = "Option::is_none")]
    backup_codes_left: Option<usize>,
}

/// Logs in (login.md §9): backoff check, then the verifier (or the same work for an unknown
/// name), then the backoff bookkeeping, a rehash if the policy rose, and a session. A wrong
/// secret and an unknown name get the same answer.
#[utoipa::path(
    post,
    path = "/v1/sessions",
    tag = "accounts",
    request_body = LoginRequest,
    responses(
        (status = 201, description = "Logged in", body = LoginResponse),
        (status = 400, description = "bad_request (name syntax, login secret), malformed_body", body = ErrorBody),
        (status = 401, description = "authentication_failed: wrong secret or unknown name (one answer); mfa_required: the secret was right and the account needs a second factor; mfa_failed: a wrong or used second factor", body = ErrorBody),
        (status = 403, description = "address_not_allowed: the account's IP allow-list leaves out this address", body = ErrorBody),
        (status = 413, description = "payload_too_large", body = ErrorBody),
        (status = 415, description = "unsupported_media_type", body = ErrorBody),
        (status = 429, description = "too_many_requests: failed-login backoff", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
    )
)]
pub(crate) async fn login<B: Backend>(
    State(state): State<Arc<AppState<B>>>,
    ClientAddr(addr): ClientAddr,
    ApiJson(request): ApiJson<LoginRequest>,
) -> Result<(StatusCode, Json<LoginResponse>), ApiError> {
    let name = normalize_name(&request.name)?;
    let secret = request.login_secret.login_secret()?;
    let now = state.clock.now();
    // 1. Backoff, before any work.
    state
        .backoff
        .check(name.as_bytes(), addr, now)
        .map_err(backoff_error)?;
    // 2–3. The verifier of the account, or the equal-cost dummy.
    let policy = state.policy;
    let lookup = name.clone();
    let (user, check, secret) = blocking(&state, move |b| {
        let user = b.user_by_name(&lookup)?;
        let verifier = match user {
            Some(u) => stored_verifier(b, &u)?,
            None => {
                // As many reads as for an account, so the timing does not tell (§7).
                let _ = b.verifier(&NO_USER)?;
                None
            }
        };
        let check = check_login(verifier.as_ref(), &secret, &policy);
        Ok((user, check, secret))
    })
    .await?;
    let (user, rehash) = match (user, check) {
        (Some(user), LoginCheck::Accepted { rehash }) => (user, rehash),
        _ => {
            // 4. Rejected: count it, answer the one failure.
            state.backoff.record_failure(name.as_bytes(), addr, now);
            // With the account if the name exists, never with the name (audit.md §2.3).
            let mut event = Event::new(EventKind::LoginFailed).with_address(Some(addr));
            event.account = user;
            state.audit(event).await;
            return Err(ApiError::AuthenticationFailed);
        }
    };
    // 5. The second factor (docs/spec/mfa.md §5): the allow-list, then, with MFA on, a
    // trusted device or a code, used up before the session exists.
    let factor_kind = request
        .second_factor
        .as_ref()
        .and_then(|f| super::mfa::factor_method(f.kind()));
    let mfa_request = super::mfa::LoginMfa {
        factor: request.second_factor,
        device_token: request.device_token,
        trust_device: request.trust_device,
    };
    let s = Arc::clone(&state);
    let step = blocking(&state, move |b| {
        super::mfa::login_step(b, &s.mfa_key, &user, addr, now, &mfa_request)
    })
    .await;
    let step = match step {
        Err(ApiError::MfaFailed) => {
            state.backoff.record_failure(name.as_bytes(), addr, now);
            let details = crate::audit::Details {
                method: factor_kind,
                ..crate::audit::Details::default()
            };
            state
                .audit(super::mfa::event(
                    crate::audit::EventKind::MfaFailed,
                    user,
                    addr,
                    details,
                ))
                .await;
            return Err(ApiError::MfaFailed);
        }
        Err(e) => return Err(e),
        Ok(step) => step,
    };
    if step.backup_codes_left.is_some() {
        let details = crate::audit::Details {
            method: Some(crate::audit::MfaMethod::BackupCode),
            count: step.backup_codes_left.map(|n| n as u64),
            ..crate::audit::Details::default()
        };
        state
            .audit(super::mfa::event(
                crate::audit::EventKind::BackupCodeUsed,
                user,
                addr,
                details,
            ))
            .await;
    }
    if let Some((id, _)) = &step.device {
        let details = crate::audit::Details {
            device: Some(*id),
            ..crate::audit::Details::default()
        };
        state
            .audit(super::mfa::event(
                crate::audit::EventKind::DeviceTrusted,
                user,
                addr,
                details,
            ))
            .await;
    }
    // 6. Accepted.
    state.backoff.record_success(name.as_bytes());
    let ttl = state.config.session_ttl;
    let token = blocking(&state, move |b| {
        if rehash {
            let fresh = Verifier::create(&mut OsRng, &secret, &policy).to_bytes();
            b.set_verifier(&user, &fresh)?;
        }
        let token = b.issue(&mut OsRng, user, now, ttl)?;
        // The account may have been deleted while this login ran.
        if !b.keep_session_if_account_exists(&user, &token.hash())? {
            return Err(ApiError::AuthenticationFailed);
        }
        Ok(token)
    })
    .await?;
    let event = Event::new(EventKind::LoginSucceeded).with_account(user);
    state.audit(event.with_address(Some(addr))).await;
    Ok((
        StatusCode::CREATED,
        Json(LoginResponse {
            token: token.encode().to_string(),
            user: HexId(user),
            expires: now.saturating_add(ttl),
            device_token: step.device.as_ref().map(|(_, t)| t.to_string()),
            device: step.device.as_ref().map(|(id, _)| HexId(*id)),
            backup_codes_left: step.backup_codes_left,
        }),
    ))
}

/// The decoded verifier of `user`; a missing or damaged record is logged and treated as no
/// verifier (the login is refused after the dummy work).
pub(crate) fn stored_verifier<B: Backend>(
    b: &B,
    user: &UserId,
) -> Result<Option<Verifier>, ApiError> {
    match b.verifier(user)? {
        None => {
            tracing::error!(target: "vault_server", "an account has no login verifier");
            Ok(None)
        }
        Some(bytes) => match Verifier::from_bytes(&bytes) {
            Ok(v) => Ok(Some(v)),
            Err(e) => {
                tracing::error!(target: "vault_server", error = %e, "a stored login verifier does not decode");
                Ok(None)
            }
        },
    }
}

/// Ends every session of the caller ("log out everywhere").
#[utoipa::path(
    delete,
    path = "/v1/sessions",
    tag = "accounts",
    security(("session" = [])),
    responses((status = 204, description = "Every session of the caller ended"))
)]
pub(crate) async fn revoke_all<B: Backend>(
    State(state): State<Arc<AppState<B>>>,
    Peer(peer): Peer,
    auth: Auth,
) -> Result<StatusCode, ApiError> {
    let user = auth.user;
    let ended = blocking(&state, move |b| Ok(b.revoke_all(&user)?)).await?;
    let details = Details {
        count: u64::try_from(ended).ok(),
        ..Details::default()
    };
    let event = Event::new(EventKind::SessionsRevoked).with_account(user);
    state
        .audit(event.with_address(peer).with_details(details))
        .await;
    Ok(StatusCode::NO_CONTENT)
}

/// Ends the session of the presented token.
#[utoipa::path(
    delete,
    path = "/v1/sessions/current",
    tag = "accounts",
    security(("session" = [])),
    responses((status = 204, description = "The session ended"))
)]
pub(crate) async fn logout<B: Backend>(
    State(state): State<Arc<AppState<B>>>,
    Peer(peer): Peer,
    auth: Auth,
) -> Result<StatusCode, ApiError> {
    let (user, token) = (auth.user, auth.token);
    blocking(&state, move |b| Ok(b.logout(&token)?)).await?;
    let event = Event::new(EventKind::Logout).with_account(user);
    state.audit(event.with_address(peer)).await;
    Ok(StatusCode::NO_CONTENT)
}

/// The caller's account.
#[derive(Serialize, ToSchema)]
pub(crate) struct AccountResponse {
    /// The user id.
    user: HexId,
    /// The login name.
    name: String,
    /// Bytes stored under the scopes the account owns.
    usage: u64,
    /// The most bytes it may store.
    quota: u64,
}

/// The caller's account: id, name, usage and quota.
#[utoipa::path(
    get,
    path = "/v1/account",
    tag = "accounts",
    security(("session" = [])),
    responses(
        (status = 200, description = "The account", body = AccountResponse),
        (status = 404, description = "not_found: the account was deleted", body = ErrorBody),
    )
)]
pub(crate) async fn get_account<B: Backend>(
    State(state): State<Arc<AppState<B>>>,
    auth: Auth,
) -> Result<Json<AccountResponse>, ApiError> {
    let user = auth.user;
    let (name, usage) = blocking(&state, move |b| {
        let name = b.name(&user)?.ok_or(ApiError::NotFound)?;
        Ok((name, b.usage(&user)?))
    })
    .await?;
    Ok(Json(AccountResponse {
        user: HexId(user),
        name,
        usage,
        quota: state.config.limits.quota,
    }))
}

/// Account deletion: the login secret again.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct DeleteAccountRequest {
    /// The login secret.
    login_secret: SecretField,
}

/// Deletes the caller's account and everything it owns (keyring, identity, sessions,
/// collections and groups with all their data). The login secret is checked again, under
/// the same backoff as a login.
#[utoipa::path(
    delete,
    path = "/v1/account",
    tag = "accounts",
    security(("session" = [])),
    request_body = DeleteAccountRequest,
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "bad_request (login secret), malformed_body", body = ErrorBody),
        (status = 401, description = "unauthenticated, or authentication_failed: wrong login secret", body = ErrorBody),
        (status = 404, description = "not_found: the account was deleted", body = ErrorBody),
        (status = 413, description = "payload_too_large", body = ErrorBody),
        (status = 415, description = "unsupported_media_type", body = ErrorBody),
        (status = 429, description = "too_many_requests: failed-login backoff", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
    )
)]
pub(crate) async fn delete_account<B: Backend>(
    State(state): State<Arc<AppState<B>>>,
    ClientAddr(addr): ClientAddr,
    auth: Auth,
    elevation: super::mfa::Elevation,
    ApiJson(request): ApiJson<DeleteAccountRequest>,
) -> Result<StatusCode, ApiError> {
    super::mfa::require_elevation(&state, &auth, &elevation, addr).await?;
    let user = auth.user;
    let secret = request.login_secret.login_secret()?;
    let name = blocking(&state, move |b| b.name(&user)?.ok_or(ApiError::NotFound)).await?;
    let now = state.clock.now();
    state
        .backoff
        .check(name.as_bytes(), addr, now)
        .map_err(backoff_error)?;
    let policy = state.policy;
    let deleted = blocking(&state, move |b| {
        let verifier = stored_verifier(b, &user)?;
        match check_login(verifier.as_ref(), &secret, &policy) {
            LoginCheck::Accepted { .. } => Ok(b.delete_account(&user)?),
            LoginCheck::Rejected => Err(ApiError::AuthenticationFailed),
        }
    })
    .await;
    match deleted {
        Err(ApiError::AuthenticationFailed) => {
            state.backoff.record_failure(name.as_bytes(), addr, now);
            let event = Event::new(EventKind::ReauthFailed).with_account(user);
            state.audit(event.with_address(Some(addr))).await;
            Err(ApiError::AuthenticationFailed)
        }
        Err(e) => Err(e),
        Ok(false) => Err(ApiError::NotFound),
        Ok(true) => {
            state.backoff.record_success(name.as_bytes());
            tracing::info!(target: "vault_server", "account deleted");
            // The account's earlier entries stay in the chain (audit.md §4.4).
            let event = Event::new(EventKind::AccountDeleted).with_account(user);
            state.audit(event.with_address(Some(addr))).await;
            Ok(StatusCode::NO_CONTENT)
        }
    }
}

/// A login name in the path.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub(crate) struct NamePath {
    /// The login name (normalised as at registration).
    name: String,
}

/// The user id of a login name: the directory other users share with.
#[utoipa::path(
    get,
    path = "/v1/users/{name}",
    tag = "identities",
    security(("session" = [])),
    params(NamePath),
    responses(
        (status = 200, description = "The user id", body = UserResponse),
        (status = 400, description = "bad_request: not a valid login name", body = ErrorBody),
        (status = 404, description = "not_found: no such name", body = ErrorBody),
    )
)]
pub(crate) async fn lookup_user<B: Backend>(
    State(state): State<Arc<AppState<B>>>,
    _auth: Auth,
    ApiPath(path): ApiPath<NamePath>,
) -> Result<Json<UserResponse>, ApiError> {
    let name = normalize_name(&path.name)?;
    let user = blocking(&state, move |b| {
        b.user_by_name(&name)?.ok_or(ApiError::NotFound)
    })
    .await?;
    Ok(Json(UserResponse { user: HexId(user) }))
}

/// The caller's sealed keyring, with its version in `Vault-Version`.
#[utoipa::path(
    get,
    path = "/v1/account/keyring",
    tag = "accounts",
    security(("session" = [])),
    responses(
        (status = 200, description = "The sealed keyring", body = Blob, content_type = "application/octet-stream",
            headers(("Vault-Version" = u64, description = "The keyring version"))),
        (status = 404, description = "not_found", body = ErrorBody),
    )
)]
pub(crate) async fn get_keyring<B: Backend>(
    State(state): State<Arc<AppState<B>>>,
    auth: Auth,
) -> Result<Response, ApiError> {
    let user = auth.user;
    let (version, blob) =
        blocking(&state, move |b| b.keyring(&user)?.ok_or(ApiError::NotFound)).await?;
    Ok(blob_response(blob, Some(version)))
}

/// The version a compare-and-swap expects.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ExpectedQuery {
    /// The version the caller last read.
    #[param(value_type = Counter)]
    expected: Counter,
}

/// A new version.
#[derive(Serialize, ToSchema)]
pub(crate) struct VersionResponse {
    /// The version now stored.
    pub(crate) version: u64,
}

/// Replaces the caller's sealed keyring if its version is still `expected` (key rotation,
/// new keys: anything that keeps the password). The new blob must be a sealed keyring of the
/// caller with the stored one's KDF salt and count; a new password goes through
/// `POST /v1/account/password`, which also replaces the login verifier.
#[utoipa::path(
    put,
    path = "/v1/account/keyring",
    tag = "accounts",
    security(("session" = [])),
    params(ExpectedQuery),
    request_body(content = Blob, content_type = "application/octet-stream"),
    responses(
        (status = 200, description = "Replaced", body = VersionResponse),
        (status = 400, description = "bad_request: not a sealed keyring of the caller, other KDF parameters than the stored keyring (a password change: POST /v1/account/password), bad query", body = ErrorBody),
        (status = 409, description = "conflict: the stored version is `current`", body = ErrorBody),
        (status = 413, description = "payload_too_large", body = ErrorBody),
        (status = 415, description = "unsupported_media_type: not application/octet-stream", body = ErrorBody),
    )
)]
pub(crate) async fn put_keyring<B: Backend>(
    State(state): State<Arc<AppState<B>>>,
    ClientAddr(addr): ClientAddr,
    auth: Auth,
    elevation: super::mfa::Elevation,
    ApiQuery(query): ApiQuery<ExpectedQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<VersionResponse>, ApiError> {
    super::mfa::require_elevation(&state, &auth, &elevation, addr).await?;
    let user = auth.user;
    let blob = read_blob(&headers, body, state.config.limits.keyring).await?;
    check_keyring(&blob, &user)?;
    let expected = query.expected.0;
    let swapped = blocking(&state, move |b| {
        // The KDF parameters decide the login secret (login.md §1): changing them here would
        // leave the login verifier behind.
        let stored = b.keyring(&user)?.map(|(_, k)| k);
        if let Some(stored) = &stored {
            if kdf_parameters(stored) != kdf_parameters(&blob) {
                return Err(ApiError::BadRequest(
                    "the keyring's KDF parameters changed: change the password with POST /v1/account/password",
                ));
            }
        }
        super::recovery::check_recovery_part_kept(b, &user, stored.as_deref(), &blob)?;
        Ok(b.swap_keyring(&user, expected, &blob)?)
    });
    match swapped.await? {
        Cas::Done => {
            let version = expected.saturating_add(1);
            let details = Details {
                version: Some(version),
                ..Details::default()
            };
            let event = Event::new(EventKind::KeyringChanged).with_account(user);
            state
                .audit(event.with_address(Some(addr)).with_details(details))
                .await;
            Ok(Json(VersionResponse { version }))
        }
        Cas::Conflict { current } => Err(ApiError::Conflict { current }),
    }
}

/// A password change.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ChangePasswordRequest {
    /// The keyring version the client last read (compare-and-swap).
    expected: Counter,
    /// The keyring sealed under the new password (base64url).
    keyring: Base64Url,
    /// The login secret of the current password.
    login_secret: SecretField,
    /// The login secret of the new password, derived with the new keyring's KDF salt and
    /// count.
    new_login_secret: SecretField,
}

/// Changes the password: replaces the sealed keyring and the login verifier together (a
/// keyring sealed under a new password with the old verifier would lock the user out). The
/// current login secret is checked again, under the same backoff as a login. On success
/// every session of the account ends, this one included: the client logs in again with the
/// new password.
#[utoipa::path(
    post,
    path = "/v1/account/password",
    tag = "accounts",
    security(("session" = [])),
    request_body = ChangePasswordRequest,
    responses(
        (status = 200, description = "Changed; every session of the account has ended", body = VersionResponse),
        (status = 400, description = "bad_request (login secrets, not a sealed keyring of the caller), malformed_body", body = ErrorBody),
        (status = 401, description = "unauthenticated, or authentication_failed: wrong current login secret", body = ErrorBody),
        (status = 404, description = "not_found: the account was deleted", body = ErrorBody),
        (status = 409, description = "conflict: the stored keyring version is `current`", body = ErrorBody),
        (status = 413, description = "payload_too_large", body = ErrorBody),
        (status = 415, description = "unsupported_media_type", body = ErrorBody),
        (status = 429, description = "too_many_requests: failed-login backoff", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
    )
)]
pub(crate) async fn change_password<B: Backend>(
    State(state): State<Arc<AppState<B>>>,
    ClientAddr(addr): ClientAddr,
    auth: Auth,
    elevation: super::mfa::Elevation,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<VersionResponse>, ApiError> {
    super::mfa::require_elevation(&state, &auth, &elevation, addr).await?;
    let user = auth.user;
    let limits = state.config.limits;
    let room = limits.keyring_json_body();
    let request: ChangePasswordRequest = read_json(&headers, body, room).await?;
    let secret = request.login_secret.login_secret()?;
    let new_secret = request.new_login_secret.login_secret()?;
    if request.keyring.0.len() > limits.keyring {
        return Err(ApiError::PayloadTooLarge);
    }
    check_keyring(&request.keyring.0, &user)?;
    let name = blocking(&state, move |b| b.name(&user)?.ok_or(ApiError::NotFound)).await?;
    let now = state.clock.now();
    state
        .backoff
        .check(name.as_bytes(), addr, now)
        .map_err(backoff_error)?;
    let policy = state.policy;
    let expected = request.expected.0;
    let keyring = request.keyring.0;
    let changed = blocking(&state, move |b| {
        let verifier = stored_verifier(b, &user)?;
        if let LoginCheck::Rejected = check_login(verifier.as_ref(), &secret, &policy) {
            return Err(ApiError::AuthenticationFailed);
        }
        let stored = b.keyring(&user)?.map(|(_, k)| k);
        super::recovery::check_recovery_part_kept(b, &user, stored.as_deref(), &keyring)?;
        let fresh = Verifier::create(&mut OsRng, &new_secret, &policy).to_bytes();
        let cas = b.change_password(&user, expected, &keyring, &fresh)?;
        if cas == Cas::Done {
            b.remove_user(&user)?;
        }
        Ok(cas)
    })
    .await;
    match changed {
        Err(ApiError::AuthenticationFailed) => {
            state.backoff.record_failure(name.as_bytes(), addr, now);
            let event = Event::new(EventKind::ReauthFailed).with_account(user);
            state.audit(event.with_address(Some(addr))).await;
            Err(ApiError::AuthenticationFailed)
        }
        Err(e) => Err(e),
        Ok(Cas::Conflict { current }) => Err(ApiError::Conflict { current }),
        Ok(Cas::Done) => {
            state.backoff.record_success(name.as_bytes());
            tracing::info!(target: "vault_server", "password changed; sessions ended");
            let details = Details {
                version: Some(expected.saturating_add(1)),
                ..Details::default()
            };
            let event = Event::new(EventKind::PasswordChanged).with_account(user);
            state
                .audit(event.with_address(Some(addr)).with_details(details))
                .await;
            Ok(Json(VersionResponse {
                version: expected.saturating_add(1),
            }))
        }
    }
}

/// A user id in the path.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub(crate) struct UserPath {
    /// The user id.
    #[param(value_type = HexId)]
    user: HexId,
}

/// A user's public identity bundle (any logged-in caller may read it).
#[utoipa::path(
    get,
    path = "/v1/identities/{user}",
    tag = "identities",
    security(("session" = [])),
    params(UserPath),
    responses(
        (status = 200, description = "The identity bundle", body = Blob, content_type = "application/octet-stream"),
        (status = 400, description = "bad_id", body = ErrorBody),
        (status = 404, description = "not_found", body = ErrorBody),
    )
)]
pub(crate) async fn get_identity<B: Backend>(
    State(state): State<Arc<AppState<B>>>,
    _auth: Auth,
    ApiPath(path): ApiPath<UserPath>,
) -> Result<Response, ApiError> {
    let user = path.user.0;
    let bundle = blocking(&state, move |b| {
        b.identity(&user)?.ok_or(ApiError::NotFound)
    })
    .await?;
    Ok(blob_response(bundle, None))
}

/// Replaces the caller's own identity bundle (key rotation); another user's is `404`.
#[utoipa::path(
    put,
    path = "/v1/identities/{user}",
    tag = "identities",
    security(("session" = [])),
    params(UserPath),
    request_body(content = Blob, content_type = "application/octet-stream"),
    responses(
        (status = 204, description = "Replaced"),
        (status = 400, description = "bad_id; bad_request: not a valid identity bundle of the caller", body = ErrorBody),
        (status = 404, description = "not_found: not the caller", body = ErrorBody),
        (status = 413, description = "payload_too_large", body = ErrorBody),
        (status = 415, description = "unsupported_media_type", body = ErrorBody),
    )
)]
pub(crate) async fn put_identity<B: Backend>(
    State(state): State<Arc<AppState<B>>>,
    ClientAddr(addr): ClientAddr,
    auth: Auth,
    elevation: super::mfa::Elevation,
    ApiPath(path): ApiPath<UserPath>,
    headers: HeaderMap,
    body: Body,
) -> Result<StatusCode, ApiError> {
    super::mfa::require_elevation(&state, &auth, &elevation, addr).await?;
    let user = auth.user;
    if path.user.0 != user {
        return Err(ApiError::NotFound);
    }
    let bundle = read_blob(&headers, body, state.config.limits.identity).await?;
    check_identity(&bundle, &user)?;
    if blocking(&state, move |b| Ok(b.set_identity(&user, &bundle)?)).await? {
        let event = Event::new(EventKind::IdentityChanged).with_account(user);
        state.audit(event.with_address(Some(addr))).await;
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound)
    }
}
