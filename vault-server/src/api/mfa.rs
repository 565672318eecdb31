//! Multi-factor authentication over the API (docs/spec/mfa.md, api.md §5.2): enrolment of
//! TOTP or HOTP, backup codes, trusted devices, elevations for sensitive operations and the
//! IP allow-list; and the checks the login and the sensitive routes call.
//!
//! Every change reads the account's sealed MFA record, changes it and stores it back by
//! compare-and-swap (a code accepted by one request cannot be accepted by another).

use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::Json;
use ipnet::IpNet;
use rand_core::OsRng;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use zeroize::Zeroizing;

use super::error::{ApiError, ErrorBody};
use super::extract::{ApiJson, ApiPath, Auth, ClientAddr, HexId, SecretField};
use super::{blocking, AppState};
use crate::audit::{Details, Event, EventKind, MfaMethod};
use crate::auth::mfa::{self, Accepted, Factor, MfaKey, MfaRecord, OtpKind};
use crate::auth::{check_login, LoginCheck, UserId};
use crate::store::{Backend, Cas};

/// The audit event `kind` of `user` from `addr`, with `details`.
pub(crate) fn event(kind: EventKind, user: UserId, addr: IpAddr, details: Details) -> Event {
    Event::new(kind)
        .with_account(user)
        .with_address(Some(addr))
        .with_details(details)
}

/// The audit method of an OTP kind.
pub(crate) fn method(kind: OtpKind) -> MfaMethod {
    match kind {
        OtpKind::Totp => MfaMethod::Totp,
        OtpKind::Hotp => MfaMethod::Hotp,
    }
}

/// The request header that carries an elevation token to a sensitive operation.
pub const ELEVATION_HEADER: &str = "vault-elevation";

/// How often a compare-and-swap of the record is tried before the request gives up.
const ATTEMPTS: usize = 8;

/// The record of `user` and its version (0 and an empty record when it has none). A record
/// that does not open under the server's key is a failure of the deployment (a lost or
/// changed key file): refused, never read as "no MFA".
pub(crate) fn load<B: Backend>(
    b: &B,
    key: &MfaKey,
    user: &UserId,
) -> Result<(u64, MfaRecord), ApiError> {
    match b.mfa(user)? {
        None => Ok((0, MfaRecord::default())),
        Some((version, sealed)) => match key.open(user, &sealed) {
            Some(record) => Ok((version, record)),
            None => {
                tracing::error!(target: "vault_server", "an MFA record does not open under this server's MFA key (wrong or lost key file?)");
                Err(ApiError::Unavailable)
            }
        },
    }
}

/// Applies `f` to the record of `user` (pruned at `now`) and stores the result by
/// compare-and-swap, trying again from a fresh read when another request changed it. `f`
/// returns `Err` to stop without storing anything, or `(store, value)`.
pub(crate) fn update<B: Backend, T>(
    b: &B,
    key: &MfaKey,
    user: &UserId,
    now: u64,
    mut f: impl FnMut(&mut MfaRecord) -> Result<(bool, T), ApiError>,
) -> Result<T, ApiError> {
    for _ in 0..ATTEMPTS {
        let (version, mut record) = load(b, key, user)?;
        record.prune(now);
        let (store, value) = f(&mut record)?;
        if !store {
            return Ok(value);
        }
        let sealed = key.seal(&mut OsRng, user, &record);
        match b.swap_mfa(user, version, &sealed)? {
            None => return Err(ApiError::NotFound),
            Some(Cas::Done) => return Ok(value),
            Some(Cas::Conflict { .. }) => continue,
        }
    }
    tracing::warn!(target: "vault_server", "MFA record changed by others on every attempt");
    Err(ApiError::Unavailable)
}

/// The optional `Vault-Elevation` header.
pub struct Elevation(pub Option<Zeroizing<String>>);

impl<S: Send + Sync> FromRequestParts<S> for Elevation {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        match parts.headers.get(ELEVATION_HEADER) {
            None => Ok(Self(None)),
            Some(v) => match v.to_str() {
                Ok(s) => Ok(Self(Some(Zeroizing::new(s.trim().to_owned())))),
                Err(_) => Err(ApiError::BadRequest(
                    "the Vault-Elevation header is not a token",
                )),
            },
        }
    }
}

/// The check of a sensitive operation (docs/spec/mfa.md §6): the client address must be
/// in the account's allow-list, and an account with MFA needs a live elevation of this
/// session. Nothing is written.
pub(crate) async fn require_elevation<B: Backend>(
    state: &Arc<AppState<B>>,
    auth: &Auth,
    elevation: &Elevation,
    addr: IpAddr,
) -> Result<(), ApiError> {
    let user = auth.user;
    let session = *auth.token.hash().as_bytes();
    let token = elevation.0.clone();
    let now = state.clock.now();
    let s = Arc::clone(state);
    blocking(state, move |b| {
        let (_, record) = load(b, &s.mfa_key, &user)?;
        if !record.allows(addr) {
            return Err(ApiError::AddressNotAllowed);
        }
        if !record.enabled() {
            return Ok(());
        }
        match token {
            Some(t) if record.is_elevated(&t, &session, now) => Ok(()),
            _ => Err(ApiError::ElevationRequired),
        }
    })
    .await
}

/// A code in a request body, wiped on drop.
pub(crate) struct Code(Zeroizing<String>);

impl<'de> Deserialize<'de> for Code {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Self(Zeroizing::new(String::deserialize(d)?)))
    }
}

impl std::ops::Deref for Code {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

/// A second factor in a request.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct FactorField {
    /// `totp`, `hotp` or `backup_code`.
    #[schema(example = "totp")]
    kind: String,
    /// The code: 6 digits, or a backup code `XXXX-XXXX-XXXX-XXXX`.
    #[schema(value_type = String)]
    code: Code,
}

impl FactorField {
    /// The kind as sent.
    pub(crate) fn kind(&self) -> &str {
        &self.kind
    }

    /// The factor, or `400` for an unknown kind or an oversized code.
    pub(crate) fn factor(&self) -> Result<Factor<'_>, ApiError> {
        if self.code.len() > 64 {
            return Err(ApiError::BadRequest("a second-factor code is too long"));
        }
        match self.kind.as_str() {
            "totp" => Ok(Factor::Totp(&self.code)),
            "hotp" => Ok(Factor::Hotp(&self.code)),
            "backup_code" => Ok(Factor::BackupCode(&self.code)),
            _ => Err(ApiError::BadRequest(
                "second factor kind must be totp, hotp or backup_code",
            )),
        }
    }
}

/// What the login needs of MFA (login.md §9 step 5).
pub(crate) struct LoginMfa {
    /// The second factor, if sent.
    pub factor: Option<FactorField>,
    /// A trusted device's token, if sent.
    pub device_token: Option<Code>,
    /// Trust this device: its label.
    pub trust_device: Option<String>,
}

/// What the login's MFA step produced.
#[derive(Default)]
pub(crate) struct LoginMfaResult {
    /// A newly trusted device: id and token (shown once).
    pub device: Option<([u8; 16], Zeroizing<String>)>,
    /// Backup codes left, when one was used.
    pub backup_codes_left: Option<usize>,
}

/// The MFA step of a login whose login secret was right (runs in the blocking pool): the
/// allow-list, then, for an account with MFA, a trusted device or a second factor, which is
/// used up. `Err(MfaFailed)` is a failed attempt for the backoff.
pub(crate) fn login_step<B: Backend>(
    b: &B,
    key: &MfaKey,
    user: &UserId,
    addr: IpAddr,
    now: u64,
    request: &LoginMfa,
) -> Result<LoginMfaResult, ApiError> {
    if let Some(label) = &request.trust_device {
        check_label(label)?;
    }
    let factor = request
        .factor
        .as_ref()
        .map(FactorField::factor)
        .transpose()?;
    update(b, key, user, now, |record| {
        if !record.allows(addr) {
            return Err(ApiError::AddressNotAllowed);
        }
        if !record.enabled() {
            return Ok((false, LoginMfaResult::default()));
        }
        let mut result = LoginMfaResult::default();
        let by_device = request
            .device_token
            .as_ref()
            .is_some_and(|t| record.use_device(t, now));
        if !by_device {
            let Some(factor) = factor else {
                return Err(ApiError::MfaRequired);
            };
            match record.accept(user, factor, now) {
                None => return Err(ApiError::MfaFailed),
                Some(Accepted::BackupCode { left }) => result.backup_codes_left = Some(left),
                Some(Accepted::Otp(_)) => {}
            }
            if let Some(label) = &request.trust_device {
                result.device = Some(record.trust_device(&mut OsRng, label, now));
            }
        }
        Ok((true, result))
    })
}

/// The audit method of a second factor's kind in a request.
pub(crate) fn factor_method(kind: &str) -> Option<MfaMethod> {
    match kind {
        "totp" => Some(MfaMethod::Totp),
        "hotp" => Some(MfaMethod::Hotp),
        "backup_code" => Some(MfaMethod::BackupCode),
        _ => None,
    }
}

fn check_label(label: &str) -> Result<(), ApiError> {
    if label.is_empty() || label.len() > mfa::MAX_LABEL || label.chars().any(char::is_control) {
        return Err(ApiError::BadRequest(
            "a device label is 1 to 64 bytes without control characters",
        ));
    }
    Ok(())
}

/// The OTP kind named in a request: `totp` or `hotp`.
fn otp_kind(kind: &str) -> Result<OtpKind, ApiError> {
    match kind {
        "totp" => Ok(OtpKind::Totp),
        "hotp" => Ok(OtpKind::Hotp),
        _ => Err(ApiError::BadRequest("kind must be totp or hotp")),
    }
}

/// The login name of `user`, after the login backoff allowed an attempt for it from
/// `addr` (`429` otherwise): what every check of a secret or a code does first.
async fn name_past_backoff<B: Backend>(
    state: &Arc<AppState<B>>,
    user: UserId,
    addr: IpAddr,
    now: u64,
) -> Result<String, ApiError> {
    let name = blocking(state, move |b| b.name(&user)?.ok_or(ApiError::NotFound)).await?;
    state
        .backoff
        .check(name.as_bytes(), addr, now)
        .map_err(super::accounts::backoff_error)?;
    Ok(name)
}

/// Checks the login secret of `user` under the backoff (as a login does); `Ok` when right.
pub(crate) async fn check_secret<B: Backend>(
    state: &Arc<AppState<B>>,
    user: UserId,
    addr: IpAddr,
    secret: &SecretField,
) -> Result<(), ApiError> {
    let secret = secret.login_secret()?;
    let now = state.clock.now();
    let name = name_past_backoff(state, user, addr, now).await?;
    let policy = state.policy;
    let ok = blocking(state, move |b| {
        let verifier = super::accounts::stored_verifier(b, &user)?;
        Ok(matches!(
            check_login(verifier.as_ref(), &secret, &policy),
            LoginCheck::Accepted { .. }
        ))
    })
    .await?;
    if ok {
        state.backoff.record_success(name.as_bytes());
        Ok(())
    } else {
        state.backoff.record_failure(name.as_bytes(), addr, now);
        Err(ApiError::AuthenticationFailed)
    }
}

/// An enrolled factor in the status.
#[derive(Serialize, ToSchema)]
pub(crate) struct FactorStatus {
    /// `totp` or `hotp`.
    kind: &'static str,
    /// Confirmed at, Unix seconds.
    since: u64,
}

/// A trusted device in the status.
#[derive(Serialize, ToSchema)]
pub(crate) struct DeviceStatus {
    /// The device id (for revocation).
    id: HexId,
    /// The label given when it was trusted.
    label: String,
    /// Trusted since, Unix seconds.
    created: u64,
    /// Trusted until, Unix seconds.
    expires: u64,
    /// Last login that used it, Unix seconds.
    last_used: u64,
}

/// The caller's MFA settings (no secret, no code).
#[derive(Serialize, ToSchema)]
pub(crate) struct MfaStatus {
    /// Whether logins and sensitive operations need a second factor.
    enabled: bool,
    /// The confirmed factors.
    factors: Vec<FactorStatus>,
    /// The kind of an enrolment waiting for its first code.
    pending: Option<&'static str>,
    /// Unused backup codes.
    backup_codes_left: usize,
    /// Trusted devices.
    devices: Vec<DeviceStatus>,
    /// The IP allow-list (CIDR); empty: every address.
    allowlist: Vec<String>,
}

fn kind_name(kind: OtpKind) -> &'static str {
    match kind {
        OtpKind::Totp => "totp",
        OtpKind::Hotp => "hotp",
    }
}

fn status(record: &MfaRecord) -> MfaStatus {
    MfaStatus {
        enabled: record.enabled(),
        factors: record
            .factors
            .iter()
            .map(|f| FactorStatus {
                kind: kind_name(f.kind),
                since: f.since,
            })
            .collect(),
        pending: record.pending.as_ref().map(|(f, _)| kind_name(f.kind)),
        backup_codes_left: record.backup_codes.len(),
        devices: record
            .devices
            .iter()
            .map(|d| DeviceStatus {
                id: HexId(d.id),
                label: d.label.clone(),
                created: d.created,
                expires: d.expires,
                last_used: d.last_used,
            })
            .collect(),
        allowlist: record.allowlist.iter().map(ToString::to_string).collect(),
    }
}

/// The caller's MFA settings: factors, backup codes left, trusted devices, allow-list.
#[utoipa::path(
    get,
    path = "/v1/account/mfa",
    tag = "mfa",
    security(("session" = [])),
    responses((status = 200, description = "The MFA settings", body = MfaStatus))
)]
pub(crate) async fn get_mfa<B: Backend>(
    State(state): State<Arc<AppState<B>>>,
    auth: Auth,
) -> Result<Json<MfaStatus>, ApiError> {
    let user = auth.user;
    let now = state.clock.now();
    let s = Arc::clone(&state);
    let mut record = blocking(&state, move |b| Ok(load(b, &s.mfa_key, &user)?.1)).await?;
    record.prune(now);
    Ok(Json(status(&record)))
}

/// Starts an enrolment.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct EnrolRequest {
    /// `totp` (authenticator apps) or `hotp`.
    kind: String,
    /// The login secret, checked again (a stolen session alone cannot enrol a factor).
    login_secret: SecretField,
}

/// A new secret to put into an authenticator, shown once.
#[derive(Serialize, ToSchema)]
pub(crate) struct EnrolResponse {
    /// `totp` or `hotp`.
    kind: &'static str,
    /// The secret in base32 (RFC 4648, no padding), as authenticator apps take it.
    secret: String,
    /// The `otpauth://` URI (for a QR code).
    uri: String,
    /// The HMAC: `SHA1`.
    algorithm: &'static str,
    /// Digits per code: 6.
    digits: u32,
    /// TOTP: seconds per code (30).
    period: Option<u64>,
    /// Until when the enrolment waits for its first code, Unix seconds.
    confirm_before: u64,
}

/// Starts enrolling a TOTP or HOTP factor: a fresh secret the user puts into an
/// authenticator, active once a code confirms it. With MFA already on, this is a sensitive
/// operation (elevation required).
#[utoipa::path(
    post,
    path = "/v1/account/mfa/otp",
    tag = "mfa",
    security(("session" = [])),
    request_body = EnrolRequest,
    params(("Vault-Elevation" = Option<String>, Header, description = "An elevation token, when MFA is on")),
    responses(
        (status = 201, description = "The secret to enrol (shown once)", body = EnrolResponse),
        (status = 400, description = "bad_request (kind, login secret), malformed_body", body = ErrorBody),
        (status = 401, description = "authentication_failed: wrong login secret", body = ErrorBody),
        (status = 403, description = "elevation_required, address_not_allowed", body = ErrorBody),
        (status = 429, description = "too_many_requests: failed-login backoff", body = ErrorBody),
    )
)]
pub(crate) async fn enrol<B: Backend>(
    State(state): State<Arc<AppState<B>>>,
    ClientAddr(addr): ClientAddr,
    auth: Auth,
    elevation: Elevation,
    ApiJson(request): ApiJson<EnrolRequest>,
) -> Result<(StatusCode, Json<EnrolResponse>), ApiError> {
    let kind = otp_kind(&request.kind)?;
    check_secret(&state, auth.user, addr, &request.login_secret).await?;
    require_elevation(&state, &auth, &elevation, addr).await?;
    let user = auth.user;
    let now = state.clock.now();
    let s = Arc::clone(&state);
    let (secret, name) = blocking(&state, move |b| {
        let name = b.name(&user)?.ok_or(ApiError::NotFound)?;
        let secret = update(b, &s.mfa_key, &user, now, |record| {
            Ok((true, record.begin_enrolment(&mut OsRng, kind, now)))
        })?;
        Ok((secret, name))
    })
    .await?;
    let uri = mfa::otpauth_uri(kind, "vault", &name, &secret);
    Ok((
        StatusCode::CREATED,
        Json(EnrolResponse {
            kind: kind_name(kind),
            secret: data_encoding::BASE32_NOPAD.encode(secret.expose()),
            uri: uri.to_string(),
            algorithm: "SHA1",
            digits: mfa::DIGITS,
            period: (kind == OtpKind::Totp).then_some(mfa::PERIOD),
            confirm_before: now.saturating_add(mfa::PENDING_TTL),
        }),
    ))
}

/// Confirms an enrolment.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ConfirmRequest {
    /// The kind being enrolled: `totp` or `hotp`.
    kind: String,
    /// The first code the authenticator shows.
    #[schema(value_type = String)]
    code: Code,
}

/// Backup codes, shown once.
#[derive(Serialize, ToSchema)]
pub(crate) struct BackupCodes {
    /// Ten single-use codes `XXXX-XXXX-XXXX-XXXX`; empty when the account had codes
    /// already (they stay valid).
    backup_codes: Vec<String>,
}

/// Confirms a pending enrolment with its first code: the factor becomes active (replacing
/// one of the same kind) and, if the account has no backup codes, ten are made and shown
/// once.
#[utoipa::path(
    post,
    path = "/v1/account/mfa/otp/confirm",
    tag = "mfa",
    security(("session" = [])),
    request_body = ConfirmRequest,
    responses(
        (status = 200, description = "Active; the backup codes if new", body = BackupCodes),
        (status = 400, description = "bad_request (kind), malformed_body", body = ErrorBody),
        (status = 401, description = "mfa_failed: no such pending enrolment, expired, or a wrong code", body = ErrorBody),
        (status = 429, description = "too_many_requests: failed-login backoff", body = ErrorBody),
    )
)]
pub(crate) async fn confirm<B: Backend>(
    State(state): State<Arc<AppState<B>>>,
    ClientAddr(addr): ClientAddr,
    auth: Auth,
    ApiJson(request): ApiJson<ConfirmRequest>,
) -> Result<Json<BackupCodes>, ApiError> {
    let kind = otp_kind(&request.kind)?;
    let user = auth.user;
    let now = state.clock.now();
    let name = name_past_backoff(&state, user, addr, now).await?;
    let s = Arc::clone(&state);
    let code = request.code;
    let result = blocking(&state, move |b| {
        update(b, &s.mfa_key, &user, now, |record| {
            if record.confirm_enrolment(kind, &code, now).is_none() {
                return Err(ApiError::MfaFailed);
            }
            let codes = if record.backup_codes.is_empty() {
                record.new_backup_codes(&mut OsRng, &user)
            } else {
                Vec::new()
            };
            Ok((true, codes))
        })
    })
    .await;
    let details = Details {
        method: Some(method(kind)),
        ..Details::default()
    };
    match result {
        Err(ApiError::MfaFailed) => {
            state.backoff.record_failure(name.as_bytes(), addr, now);
            state
                .audit(event(EventKind::MfaFailed, user, addr, details))
                .await;
            Err(ApiError::MfaFailed)
        }
        Err(e) => Err(e),
        Ok(codes) => {
            state.backoff.record_success(name.as_bytes());
            state
                .audit(event(EventKind::MfaEnrolled, user, addr, details))
                .await;
            tracing::info!(target: "vault_server", "second factor enrolled");
            Ok(Json(BackupCodes {
                backup_codes: codes.iter().map(|c| c.to_string()).collect(),
            }))
        }
    }
}

/// The login secret, for changes that need it.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SecretRequest {
    /// The login secret, checked again.
    login_secret: SecretField,
}

/// Turns MFA off: factors, backup codes, trusted devices and elevations are removed (the
/// allow-list stays). Needs the login secret and an elevation.
#[utoipa::path(
    delete,
    path = "/v1/account/mfa",
    tag = "mfa",
    security(("session" = [])),
    request_body = SecretRequest,
    params(("Vault-Elevation" = String, Header, description = "An elevation token")),
    responses(
        (status = 204, description = "MFA is off"),
        (status = 400, description = "bad_request (login secret), malformed_body", body = ErrorBody),
        (status = 401, description = "authentication_failed: wrong login secret", body = ErrorBody),
        (status = 403, description = "elevation_required, address_not_allowed", body = ErrorBody),
        (status = 429, description = "too_many_requests: failed-login backoff", body = ErrorBody),
    )
)]
pub(crate) async fn disable<B: Backend>(
    State(state): State<Arc<AppState<B>>>,
    ClientAddr(addr): ClientAddr,
    auth: Auth,
    elevation: Elevation,
    ApiJson(request): ApiJson<SecretRequest>,
) -> Result<StatusCode, ApiError> {
    check_secret(&state, auth.user, addr, &request.login_secret).await?;
    require_elevation(&state, &auth, &elevation, addr).await?;
    let user = auth.user;
    let now = state.clock.now();
    let s = Arc::clone(&state);
    blocking(&state, move |b| {
        update(b, &s.mfa_key, &user, now, |record| {
            record.disable();
            Ok((true, ()))
        })
    })
    .await?;
    state
        .audit(event(
            EventKind::MfaDisabled,
            user,
            addr,
            Details::default(),
        ))
        .await;
    tracing::info!(target: "vault_server", "MFA turned off");
    Ok(StatusCode::NO_CONTENT)
}

/// Replaces the backup codes with ten new ones (the old ones stop working). Needs an
/// elevation; MFA must be on.
#[utoipa::path(
    post,
    path = "/v1/account/mfa/backup-codes",
    tag = "mfa",
    security(("session" = [])),
    params(("Vault-Elevation" = String, Header, description = "An elevation token")),
    responses(
        (status = 200, description = "The new codes (shown once)", body = BackupCodes),
        (status = 400, description = "bad_request: MFA is off", body = ErrorBody),
        (status = 403, description = "elevation_required, address_not_allowed", body = ErrorBody),
    )
)]
pub(crate) async fn regenerate_backup_codes<B: Backend>(
    State(state): State<Arc<AppState<B>>>,
    ClientAddr(addr): ClientAddr,
    auth: Auth,
    elevation: Elevation,
) -> Result<Json<BackupCodes>, ApiError> {
    require_elevation(&state, &auth, &elevation, addr).await?;
    let user = auth.user;
    let now = state.clock.now();
    let s = Arc::clone(&state);
    let codes = blocking(&state, move |b| {
        update(b, &s.mfa_key, &user, now, |record| {
            if !record.enabled() {
                return Err(ApiError::BadRequest("MFA is off: enrol a factor first"));
            }
            Ok((true, record.new_backup_codes(&mut OsRng, &user)))
        })
    })
    .await?;
    state
        .audit(event(
            EventKind::BackupCodesRegenerated,
            user,
            addr,
            Details::default(),
        ))
        .await;
    Ok(Json(BackupCodes {
        backup_codes: codes.iter().map(|c| c.to_string()).collect(),
    }))
}

/// Proves a second factor for sensitive operations.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ElevateRequest {
    /// The second factor.
    second_factor: FactorField,
}

/// An elevation of this session.
#[derive(Serialize, ToSchema)]
pub(crate) struct ElevateResponse {
    /// The token for the `Vault-Elevation` header: 43 base64url characters.
    token: String,
    /// Valid until, Unix seconds (5 minutes), for this session only.
    expires: u64,
}

/// Proves a second factor and gets an elevation token: for five minutes, this session may
/// do sensitive operations (docs/spec/mfa.md §6). The code is used up. Failures count in
/// the login backoff.
#[utoipa::path(
    post,
    path = "/v1/account/mfa/elevation",
    tag = "mfa",
    security(("session" = [])),
    request_body = ElevateRequest,
    responses(
        (status = 201, description = "Elevated", body = ElevateResponse),
        (status = 400, description = "bad_request: MFA is off, or the factor's kind; malformed_body", body = ErrorBody),
        (status = 401, description = "mfa_failed: wrong or used code", body = ErrorBody),
        (status = 403, description = "address_not_allowed", body = ErrorBody),
        (status = 429, description = "too_many_requests: failed-login backoff", body = ErrorBody),
    )
)]
pub(crate) async fn elevate<B: Backend>(
    State(state): State<Arc<AppState<B>>>,
    ClientAddr(addr): ClientAddr,
    auth: Auth,
    ApiJson(request): ApiJson<ElevateRequest>,
) -> Result<(StatusCode, Json<ElevateResponse>), ApiError> {
    let user = auth.user;
    let session = *auth.token.hash().as_bytes();
    let now = state.clock.now();
    let name = name_past_backoff(&state, user, addr, now).await?;
    let s = Arc::clone(&state);
    let kind = request.second_factor.kind.clone();
    let result = blocking(&state, move |b| {
        let factor = request.second_factor.factor()?;
        update(b, &s.mfa_key, &user, now, |record| {
            if !record.allows(addr) {
                return Err(ApiError::AddressNotAllowed);
            }
            if !record.enabled() {
                return Err(ApiError::BadRequest("MFA is off: nothing to elevate"));
            }
            if record.accept(&user, factor, now).is_none() {
                return Err(ApiError::MfaFailed);
            }
            Ok((true, record.elevate(&mut OsRng, session, now)))
        })
    })
    .await;
    let details = Details {
        method: factor_method(&kind),
        ..Details::default()
    };
    match result {
        Err(ApiError::MfaFailed) => {
            state.backoff.record_failure(name.as_bytes(), addr, now);
            state
                .audit(event(EventKind::MfaFailed, user, addr, details))
                .await;
            Err(ApiError::MfaFailed)
        }
        Err(e) => Err(e),
        Ok(token) => {
            if details.method == Some(MfaMethod::BackupCode) {
                state
                    .audit(event(EventKind::BackupCodeUsed, user, addr, details))
                    .await;
            }
            state.backoff.record_success(name.as_bytes());
            Ok((
                StatusCode::CREATED,
                Json(ElevateResponse {
                    token: token.to_string(),
                    expires: now.saturating_add(mfa::ELEVATION_TTL),
                }),
            ))
        }
    }
}

/// A device id in the path.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub(crate) struct DevicePath {
    /// The device id.
    #[param(value_type = HexId)]
    device: HexId,
}

/// Revokes a trusted device: its next login needs the second factor again. (Revoking
/// lowers access, so it needs no elevation.)
#[utoipa::path(
    delete,
    path = "/v1/account/mfa/devices/{device}",
    tag = "mfa",
    security(("session" = [])),
    params(DevicePath),
    responses(
        (status = 204, description = "Revoked"),
        (status = 400, description = "bad_id", body = ErrorBody),
        (status = 404, description = "not_found: no such trusted device", body = ErrorBody),
    )
)]
pub(crate) async fn revoke_device<B: Backend>(
    State(state): State<Arc<AppState<B>>>,
    ClientAddr(addr): ClientAddr,
    auth: Auth,
    ApiPath(path): ApiPath<DevicePath>,
) -> Result<StatusCode, ApiError> {
    let user = auth.user;
    let id = path.device.0;
    let now = state.clock.now();
    let s = Arc::clone(&state);
    let found = blocking(&state, move |b| {
        update(b, &s.mfa_key, &user, now, |record| {
            let found = record.revoke_device(&id);
            Ok((found, found))
        })
    })
    .await?;
    if found {
        let details = Details {
            device: Some(id),
            ..Details::default()
        };
        state
            .audit(event(EventKind::DeviceRevoked, user, addr, details))
            .await;
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound)
    }
}

/// A new allow-list.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct AllowlistRequest {
    /// The login secret, checked again.
    login_secret: SecretField,
    /// CIDR ranges (`192.0.2.0/24`, `2001:db8::/32`) or single addresses; empty: every
    /// address. At most 32; must hold the address of this request.
    ranges: Vec<String>,
}

/// The allow-list now.
#[derive(Serialize, ToSchema)]
pub(crate) struct AllowlistResponse {
    /// The ranges, normalised.
    ranges: Vec<String>,
}

/// Sets the account's IP allow-list: logins, elevations and sensitive operations from
/// other addresses are refused. A list that would lock out the address of this very
/// request is refused. With MFA on, an elevation is required.
#[utoipa::path(
    put,
    path = "/v1/account/mfa/allowlist",
    tag = "mfa",
    security(("session" = [])),
    request_body = AllowlistRequest,
    params(("Vault-Elevation" = Option<String>, Header, description = "An elevation token, when MFA is on")),
    responses(
        (status = 200, description = "Set", body = AllowlistResponse),
        (status = 400, description = "bad_request (a range, too many, or it leaves out this address), malformed_body", body = ErrorBody),
        (status = 401, description = "authentication_failed: wrong login secret", body = ErrorBody),
        (status = 403, description = "elevation_required, address_not_allowed", body = ErrorBody),
        (status = 429, description = "too_many_requests: failed-login backoff", body = ErrorBody),
    )
)]
pub(crate) async fn put_allowlist<B: Backend>(
    State(state): State<Arc<AppState<B>>>,
    ClientAddr(addr): ClientAddr,
    auth: Auth,
    elevation: Elevation,
    ApiJson(request): ApiJson<AllowlistRequest>,
) -> Result<Json<AllowlistResponse>, ApiError> {
    if request.ranges.len() > mfa::MAX_ALLOWLIST {
        return Err(ApiError::BadRequest(
            "an allow-list holds at most 32 ranges",
        ));
    }
    let mut ranges = Vec::with_capacity(request.ranges.len());
    for r in &request.ranges {
        let net = match r.parse::<IpNet>() {
            Ok(n) => n.trunc(),
            Err(_) => match r.parse::<IpAddr>() {
                Ok(a) => IpNet::from(mfa::canonical(a)),
                Err(_) => {
                    return Err(ApiError::BadRequest(
                        "an allow-list range is not an IP address or CIDR range",
                    ))
                }
            },
        };
        if !ranges.contains(&net) {
            ranges.push(net);
        }
    }
    let probe = MfaRecord {
        allowlist: ranges.clone(),
        ..MfaRecord::default()
    };
    if !probe.allows(addr) {
        return Err(ApiError::BadRequest(
            "the allow-list must hold the address of this request",
        ));
    }
    check_secret(&state, auth.user, addr, &request.login_secret).await?;
    require_elevation(&state, &auth, &elevation, addr).await?;
    let user = auth.user;
    let now = state.clock.now();
    let s = Arc::clone(&state);
    let shown: Vec<String> = ranges.iter().map(ToString::to_string).collect();
    blocking(&state, move |b| {
        update(b, &s.mfa_key, &user, now, |record| {
            record.allowlist = ranges.clone();
            Ok((true, ()))
        })
    })
    .await?;
    let details = Details {
        count: Some(shown.len() as u64),
        ..Details::default()
    };
    state
        .audit(event(EventKind::IpAllowlistChanged, user, addr, details))
        .await;
    tracing::info!(target: "vault_server", ranges = shown.len(), "IP allow-list set");
    Ok(Json(AllowlistResponse { ranges: shown }))
}
