//! The one error shape of the API (docs/spec/api.md §3), mapped from [`ApiError`] in one
//! place ([`ApiError::status`], [`ApiError::code`]).
//!
//! ```json
//! {"error": {"code": "conflict", "message": "the stored version is not the expected one", "current": 7}}
//! ```
//!
//! Messages are fixed texts: they never echo a request (no user data, no secret) and never
//! say more than the code does about what exists.

use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::store::BackendError;

/// Every failure the API answers. Each variant has one status and one stable code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ApiError {
    /// 400 `bad_request`: a parameter or value is invalid (the message says which rule).
    BadRequest(&'static str),
    /// 400 `bad_id`: an id in the path or query is not 32 lowercase hex digits.
    BadId,
    /// 400 `malformed_body`: the body is not valid JSON or not of the expected shape.
    MalformedBody(&'static str),
    /// 401 `unauthenticated`: no valid session token.
    Unauthenticated,
    /// 401 `authentication_failed`: wrong login secret or unknown login name (the same
    /// answer for both).
    AuthenticationFailed,
    /// 401 `mfa_required`: the login secret was right, but the account requires a second
    /// factor (or a trusted device) that the request did not carry.
    MfaRequired,
    /// 401 `mfa_failed`: the second factor was wrong or already used.
    MfaFailed,
    /// 403 `elevation_required`: a sensitive operation of an account with MFA needs a
    /// recent second factor (the `Vault-Elevation` header, docs/spec/mfa.md).
    ElevationRequired,
    /// 403 `address_not_allowed`: the account's IP allow-list does not hold the client's
    /// address.
    AddressNotAllowed,
    /// 404 `not_found`: no such thing, or one the caller may not reach.
    NotFound,
    /// 405 `method_not_allowed`: the path exists, the method does not.
    MethodNotAllowed,
    /// 408 `request_timeout`: the request took longer than the configured time-out.
    RequestTimeout,
    /// 409 `conflict`: a compare-and-swap found another version.
    Conflict {
        /// The version stored now (0: none).
        current: u64,
    },
    /// 409 `exists`: the name, id or roster version is taken.
    Exists,
    /// 413 `payload_too_large`: the body exceeds its limit.
    PayloadTooLarge,
    /// 413 `quota_exceeded`: the write would take the owner's usage above the quota.
    QuotaExceeded,
    /// 415 `unsupported_media_type`: the body's content type is not the one the route takes.
    UnsupportedMediaType,
    /// 429 `too_many_requests`: failed-login backoff; retry after the given seconds.
    TooManyRequests {
        /// Seconds until the next attempt is allowed (the `Retry-After` header).
        retry_after: u64,
    },
    /// 500 `internal`: a bug (a panic caught by the safety net). Never caused by input.
    Internal,
    /// 503 `unavailable`: the storage backend failed; the detail is in the server's log.
    Unavailable,
}

impl ApiError {
    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) | ApiError::BadId | ApiError::MalformedBody(_) => {
                StatusCode::BAD_REQUEST
            }
            ApiError::Unauthenticated
            | ApiError::AuthenticationFailed
            | ApiError::MfaRequired
            | ApiError::MfaFailed => StatusCode::UNAUTHORIZED,
            ApiError::ElevationRequired | ApiError::AddressNotAllowed => StatusCode::FORBIDDEN,
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            ApiError::Conflict { .. } | ApiError::Exists => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge | ApiError::QuotaExceeded => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The stable snake_case code.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "bad_request",
            ApiError::BadId => "bad_id",
            ApiError::MalformedBody(_) => "malformed_body",
            ApiError::Unauthenticated => "unauthenticated",
            ApiError::AuthenticationFailed => "authentication_failed",
            ApiError::MfaRequired => "mfa_required",
            ApiError::MfaFailed => "mfa_failed",
            ApiError::ElevationRequired => "elevation_required",
            ApiError::AddressNotAllowed => "address_not_allowed",
            ApiError::NotFound => "not_found",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::RequestTimeout => "request_timeout",
            ApiError::Conflict { .. } => "conflict",
            ApiError::Exists => "exists",
            ApiError::PayloadTooLarge => "payload_too_large",
            ApiError::QuotaExceeded => "quota_exceeded",
            ApiError::UnsupportedMediaType => "unsupported_media_type",
            ApiError::TooManyRequests { .. } => "too_many_requests",
            ApiError::Internal => "internal",
            ApiError::Unavailable => "unavailable",
        }
    }

    /// The human-readable message: a fixed text.
    pub fn message(&self) -> &'static str {
        match self {
            ApiError::BadRequest(m) | ApiError::MalformedBody(m) => m,
            ApiError::BadId => "an id is not 32 lowercase hexadecimal digits",
            ApiError::Unauthenticated => "a valid session token is required",
            ApiError::AuthenticationFailed => "authentication failed",
            ApiError::MfaRequired => "a second factor is required",
            ApiError::MfaFailed => "the second factor is wrong or was already used",
            ApiError::ElevationRequired => {
                "this operation needs a recent second factor (Vault-Elevation header)"
            }
            ApiError::AddressNotAllowed => "the account does not allow this client address",
            ApiError::NotFound => "not found",
            ApiError::MethodNotAllowed => "method not allowed on this path",
            ApiError::RequestTimeout => "the request took too long",
            ApiError::Conflict { .. } => "the stored version is not the expected one",
            ApiError::Exists => "already exists",
            ApiError::PayloadTooLarge => "the body exceeds its size limit",
            ApiError::QuotaExceeded => "the write would exceed the account's storage quota",
            ApiError::UnsupportedMediaType => "unsupported content type for this route",
            ApiError::TooManyRequests { .. } => "too many failed attempts; retry later",
            ApiError::Internal => "internal error",
            ApiError::Unavailable => "the service is temporarily unavailable",
        }
    }

    /// The JSON body of this error.
    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: ErrorObject {
                code: self.code(),
                message: self.message(),
                current: match self {
                    ApiError::Conflict { current } => Some(*current),
                    _ => None,
                },
            },
        }
    }
}

impl From<BackendError> for ApiError {
    /// A backend failure: logged for the operator (its message holds no user data), answered
    /// `503 unavailable`.
    fn from(e: BackendError) -> Self {
        tracing::error!(target: "vault_server", error = %e, "storage backend failure");
        ApiError::Unavailable
    }
}

/// Marks a response as already in the error shape, so the [`normalize_errors`] safety net
/// leaves it alone.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Shaped;

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status(), axum::Json(self.body())).into_response();
        match self {
            ApiError::TooManyRequests { retry_after } => {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(retry_after.max(1)));
            }
            ApiError::Unauthenticated => {
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            _ => {}
        }
        response.extensions_mut().insert(Shaped);
        response
    }
}

/// The error body: `{"error": {...}}`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorObject,
}

/// The error object.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErrorObject {
    /// Stable snake_case code: bad_request, bad_id, malformed_body, unauthenticated,
    /// authentication_failed, mfa_required, mfa_failed, elevation_required,
    /// address_not_allowed, not_found, method_not_allowed, request_timeout, conflict,
    /// exists, payload_too_large, quota_exceeded, unsupported_media_type, too_many_requests,
    /// internal, unavailable.
    #[schema(example = "not_found")]
    pub code: &'static str,
    /// Human-readable text; fixed per cause, never containing request data.
    pub message: &'static str,
    /// With `conflict` only: the version stored now (0: none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current: Option<u64>,
}

/// The answer for a path no route matches: `404 not_found`.
pub(crate) async fn not_found() -> ApiError {
    ApiError::NotFound
}

/// The answer for a method a path does not have: `405 method_not_allowed`.
pub(crate) async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

/// Safety net: any 4xx or 5xx response that was not made from an [`ApiError`] (something
/// produced by a layer or by axum itself) is replaced by the error of its status in the
/// one shape. Handlers and extractors never rely on it.
///
/// An error answered to a request that carried a body may leave part of that body unread
/// (a refused upload is not read to its end); such answers say `Connection: close`, so the
/// client does not send its next request on a connection the server is about to close.
pub(crate) async fn normalize_errors(request: Request, next: Next) -> Response {
    let has_body = request.headers().contains_key(header::TRANSFER_ENCODING)
        || request
            .headers()
            .get(header::CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() != b"0");
    let mut response = shape(next.run(request).await);
    let status = response.status();
    if has_body && (status.is_client_error() || status.is_server_error()) {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

fn shape(response: Response) -> Response {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error())
        || response.extensions().get::<Shaped>().is_some()
    {
        return response;
    }
    let error = match status {
        StatusCode::NOT_FOUND => ApiError::NotFound,
        StatusCode::METHOD_NOT_ALLOWED => ApiError::MethodNotAllowed,
        StatusCode::REQUEST_TIMEOUT => ApiError::RequestTimeout,
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge,
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::UnsupportedMediaType,
        StatusCode::UNAUTHORIZED => ApiError::Unauthenticated,
        StatusCode::SERVICE_UNAVAILABLE => ApiError::Unavailable,
        s if s.is_client_error() => ApiError::BadRequest("the request is invalid"),
        _ => {
            tracing::error!(target: "vault_server", status = %status, "unshaped server error");
            ApiError::Internal
        }
    };
    error.into_response()
}

/// The response of the panic safety net (`CatchPanic`): `500 internal`, logged. A panic is
/// a bug; no input is meant to reach one.
pub(crate) fn panic_response(_payload: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!(target: "vault_server", "a request handler panicked");
    ApiError::Internal.into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_snake_case_and_statuses_are_errors() {
        let all = [
            ApiError::BadRequest("x"),
            ApiError::BadId,
            ApiError::MalformedBody("x"),
            ApiError::Unauthenticated,
            ApiError::AuthenticationFailed,
            ApiError::NotFound,
            ApiError::MethodNotAllowed,
            ApiError::RequestTimeout,
            ApiError::Conflict { current: 3 },
            ApiError::Exists,
            ApiError::PayloadTooLarge,
            ApiError::QuotaExceeded,
            ApiError::UnsupportedMediaType,
            ApiError::TooManyRequests { retry_after: 2 },
            ApiError::Internal,
            ApiError::Unavailable,
        ];
        for e in all {
            assert!(e
                .code()
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b == b'_'));
            assert!(e.status().is_client_error() || e.status().is_server_error());
        }
        let body = serde_json::to_value(ApiError::Conflict { current: 3 }.body()).ok();
        assert_eq!(
            body,
            Some(serde_json::json!({"error": {"code": "conflict",
                "message": "the stored version is not the expected one", "current": 3}}))
        );
    }
}
