//! Request decoding: the wire types (ids, counters, base64url), and extractors whose every
//! failure is an [`ApiError`] in the one shape (docs/spec/api.md §2–§3). No axum rejection
//! reaches a client as it is.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::header::{AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};
use data_encoding::{BASE64URL_NOPAD, HEXLOWER};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde::de::{self, DeserializeOwned, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
use utoipa::openapi::{RefOr, Schema};
use utoipa::{PartialSchema, ToSchema};
use zeroize::Zeroizing;

use super::{blocking, AppState};
use crate::auth::{LoginSecret, SessionToken, UserId};
use crate::store::Backend;

use super::error::ApiError;

/// The largest counter the API accepts in input: 2^53 − 1, the largest integer every JSON
/// implementation represents exactly.
pub const MAX_COUNTER: u64 = (1 << 53) - 1;

/// The response header that carries a blob's version (keyring, manifest).
pub const VERSION_HEADER: HeaderName = HeaderName::from_static("vault-version");

/// Marker in deserialisation errors of ids, so that extractors answer `bad_id`.
const BAD_ID_MARKER: &str = "vault-bad-id";

/// A 16-byte id (user, collection, object, group) written as 32 lowercase hex digits.
/// Anything else is refused (`400 bad_id`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HexId(pub [u8; 16]);

impl HexId {
    /// Parses exactly 32 lowercase hex digits.
    pub fn parse(s: &str) -> Option<Self> {
        if s.len() != 32
            || !s
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return None;
        }
        let mut id = [0u8; 16];
        HEXLOWER.decode_mut(s.as_bytes(), &mut id).ok()?;
        Some(Self(id))
    }

    /// The 32 hex digits.
    pub fn encode(&self) -> String {
        HEXLOWER.encode(&self.0)
    }
}

impl Serialize for HexId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.encode())
    }
}

impl<'de> Deserialize<'de> for HexId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = HexId;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("32 lowercase hex digits")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<HexId, E> {
                HexId::parse(s).ok_or_else(|| E::custom(BAD_ID_MARKER))
            }
        }
        d.deserialize_str(V)
    }
}

impl PartialSchema for HexId {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some("^[0-9a-f]{32}$"))
            .min_length(Some(32))
            .max_length(Some(32))
            .description(Some("A 16-byte id as 32 lowercase hex digits."))
            .examples([serde_json::json!("00112233445566778899aabbccddeeff")])
            .into()
    }
}

impl ToSchema for HexId {
    fn name() -> std::borrow::Cow<'static, str> {
        "Id".into()
    }
}

/// A version, sequence number or other counter: an integer 0..=2^53 − 1 (larger input is
/// refused with `400 bad_request`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Counter(pub u64);

impl<'de> Deserialize<'de> for Counter {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = u64::deserialize(d)?;
        if n > MAX_COUNTER {
            return Err(de::Error::custom("counter above 2^53 - 1"));
        }
        Ok(Self(n))
    }
}

impl PartialSchema for Counter {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::Integer)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
            .minimum(Some(0))
            .maximum(Some(MAX_COUNTER))
            .into()
    }
}

impl ToSchema for Counter {}

/// Bytes inside JSON: base64url without padding (RFC 4648 §5), decoded strictly (no
/// padding, no other alphabet, canonical trailing bits).
#[derive(Clone, PartialEq, Eq)]
pub struct Base64Url(pub Vec<u8>);

impl std::fmt::Debug for Base64Url {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Base64Url({} bytes)", self.0.len())
    }
}

impl Serialize for Base64Url {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&BASE64URL_NOPAD.encode(&self.0))
    }
}

impl<'de> Deserialize<'de> for Base64Url {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Base64Url;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("base64url without padding")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Base64Url, E> {
                BASE64URL_NOPAD
                    .decode(s.as_bytes())
                    .map(Base64Url)
                    .map_err(|_| E::custom("not base64url without padding"))
            }
        }
        d.deserialize_str(V)
    }
}

fn base64_schema(description: &str) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some("^[A-Za-z0-9_-]*$"))
        .content_encoding("base64url")
        .description(Some(description))
        .into()
}

impl PartialSchema for Base64Url {
    fn schema() -> RefOr<Schema> {
        base64_schema("Bytes as base64url without padding (RFC 4648 §5).")
    }
}

impl ToSchema for Base64Url {}

/// A login secret inside JSON: 32 bytes as base64url without padding (43 characters), not
/// all zero. The decoded bytes and the string are wiped when dropped; `Debug` prints
/// nothing of them.
pub struct SecretField(Zeroizing<[u8; 32]>);

impl SecretField {
    /// The login secret (refusing the all-zero value: `400 bad_request`).
    pub fn login_secret(&self) -> Result<LoginSecret, ApiError> {
        LoginSecret::from_bytes(*self.0).ok_or(ApiError::BadRequest(
            "login_secret must be 32 bytes, not all zero",
        ))
    }
}

impl std::fmt::Debug for SecretField {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretField([redacted])")
    }
}

impl<'de> Deserialize<'de> for SecretField {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = Zeroizing::new(String::deserialize(d)?);
        let mut bytes = Zeroizing::new([0u8; 32]);
        let ok = text.len() == 43
            && matches!(
                BASE64URL_NOPAD.decode_mut(text.as_bytes(), &mut bytes[..]),
                Ok(32)
            );
        if ok {
            Ok(Self(bytes))
        } else {
            Err(de::Error::custom(
                "login secret is not 32 bytes of base64url",
            ))
        }
    }
}

impl PartialSchema for SecretField {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some("^[A-Za-z0-9_-]{43}$"))
            .content_encoding("base64url")
            .description(Some(
                "The 32-byte login secret (docs/spec/keyring.md §3) as base64url without \
                 padding; not all zero.",
            ))
            .into()
    }
}

impl ToSchema for SecretField {
    fn name() -> std::borrow::Cow<'static, str> {
        "LoginSecret".into()
    }
}

/// The schema of an opaque blob body (`application/octet-stream`).
pub struct Blob;

impl PartialSchema for Blob {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Binary)))
            .description(Some(
                "Opaque bytes the server stores and returns unchanged.",
            ))
            .into()
    }
}

impl ToSchema for Blob {}

/// Path parameters, with every failure answered `400 bad_id` (an id) or `400 bad_request`.
pub struct ApiPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(Self(value)),
            Err(rejection) if rejection.body_text().contains(BAD_ID_MARKER) => Err(ApiError::BadId),
            Err(_) => Err(ApiError::BadRequest("a path parameter is invalid")),
        }
    }
}

/// Query parameters, with every failure answered `400 bad_id` (an id) or `400 bad_request`.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(Self(value)),
            Err(rejection) if rejection.body_text().contains(BAD_ID_MARKER) => Err(ApiError::BadId),
            Err(_) => Err(ApiError::BadRequest(
                "a query parameter is missing or invalid",
            )),
        }
    }
}

/// A JSON body of at most [`crate::config::Limits::json_body`] bytes, `Content-Type:
/// application/json`, decoded strictly (unknown fields refused).
pub struct ApiJson<T>(pub T);

impl<B: Backend, T: DeserializeOwned> FromRequest<Arc<AppState<B>>> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &Arc<AppState<B>>) -> Result<Self, ApiError> {
        let (parts, body) = req.into_parts();
        read_json(&parts.headers, body, state.config.limits.json_body)
            .await
            .map(Self)
    }
}

/// Reads and decodes a JSON body of at most `limit` bytes.
pub(crate) async fn read_json<T: DeserializeOwned>(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<T, ApiError> {
    if !content_type_is(headers, "application/json") {
        return Err(ApiError::UnsupportedMediaType);
    }
    let bytes = Zeroizing::new(read_limited(headers, body, limit).await?.to_vec());
    serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::MalformedBody(match e.classify() {
            serde_json::error::Category::Data => {
                "the JSON body does not have the expected fields and types"
            }
            _ => "the body is not valid JSON",
        })
    })
}

/// Reads an opaque blob body: `Content-Type: application/octet-stream`, 1..=`limit` bytes.
pub(crate) async fn read_blob(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<Bytes, ApiError> {
    if !content_type_is(headers, "application/octet-stream") {
        return Err(ApiError::UnsupportedMediaType);
    }
    let bytes = read_limited(headers, body, limit).await?;
    if bytes.is_empty() {
        return Err(ApiError::BadRequest("the body is empty"));
    }
    Ok(bytes)
}

/// Refuses a declared length above `limit` before reading; reads at most `limit` bytes.
async fn read_limited(headers: &HeaderMap, body: Body, limit: usize) -> Result<Bytes, ApiError> {
    if let Some(length) = headers.get(CONTENT_LENGTH) {
        let length: u64 = length
            .to_str()
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or(ApiError::BadRequest("invalid Content-Length"))?;
        if length > limit as u64 {
            return Err(ApiError::PayloadTooLarge);
        }
    }
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => Err(ApiError::PayloadTooLarge),
        Err(_) => Err(ApiError::BadRequest("the body could not be read")),
    }
}

/// Whether the request's media type (parameters ignored, case-insensitive) is `expected`.
fn content_type_is(headers: &HeaderMap, expected: &str) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|t| t.trim().eq_ignore_ascii_case(expected))
}

/// An opaque blob answer, with its version in `Vault-Version` if it has one.
pub(crate) fn blob_response(bytes: Vec<u8>, version: Option<u64>) -> Response {
    let mut response = (
        [(
            CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        )],
        bytes,
    )
        .into_response();
    if let Some(v) = version {
        response
            .headers_mut()
            .insert(VERSION_HEADER, HeaderValue::from(v));
    }
    response
}

/// The logged-in caller: a valid `Authorization: Bearer <token>`.
pub struct Auth {
    /// The caller's account.
    pub user: UserId,
    /// The presented token (for logout). Never logged (its `Debug` is redacted).
    pub token: SessionToken,
}

impl<B: Backend> FromRequestParts<Arc<AppState<B>>> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState<B>>,
    ) -> Result<Self, ApiError> {
        let token = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(SessionToken::from_authorization)
            .ok_or(ApiError::Unauthenticated)?;
        let now = state.clock.now();
        // From memory if the backend can (sled), else in a blocking task (PostgreSQL).
        let (user, token) = match state.backend.authenticate_without_io(&token, now) {
            Some(user) => (user, token),
            None => {
                blocking(state, move |b| {
                    let user = b.authenticate(&token, now)?;
                    Ok((user, token))
                })
                .await?
            }
        };
        match user {
            Some(user) => Ok(Self { user, token }),
            None => Err(ApiError::Unauthenticated),
        }
    }
}

/// A bearer token whose session look-up, when the backend cannot answer from memory, is
/// left to the handler's own blocking task ([`Bearer::user`]): one thread-pool hop and one
/// database connection per request on the hot read path instead of two. A missing or
/// malformed header, or a token the backend refuses from memory, is refused here.
pub struct Bearer {
    /// Known without I/O.
    resolved: Option<UserId>,
    token: SessionToken,
    now: u64,
}

impl Bearer {
    /// The caller's account; call it from the blocking task (it may read the store).
    pub fn user<B: Backend>(&self, b: &B) -> Result<UserId, ApiError> {
        match self.resolved {
            Some(user) => Ok(user),
            None => b
                .authenticate(&self.token, self.now)?
                .ok_or(ApiError::Unauthenticated),
        }
    }
}

impl<B: Backend> FromRequestParts<Arc<AppState<B>>> for Bearer {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState<B>>,
    ) -> Result<Self, ApiError> {
        let token = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(SessionToken::from_authorization)
            .ok_or(ApiError::Unauthenticated)?;
        let now = state.clock.now();
        let resolved = match state.backend.authenticate_without_io(&token, now) {
            Some(Some(user)) => Some(user),
            Some(None) => return Err(ApiError::Unauthenticated),
            None => None,
        };
        Ok(Self {
            resolved,
            token,
            now,
        })
    }
}

/// The client's address, from the connection (never from a header such as
/// `X-Forwarded-For`, which any client can set).
pub struct ClientAddr(pub IpAddr);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        match parts.extensions.get::<ConnectInfo<SocketAddr>>() {
            Some(ConnectInfo(addr)) => Ok(Self(addr.ip())),
            None => {
                tracing::error!(target: "vault_server", "no connection info: serve the router with `api::serve`");
                Err(ApiError::Internal)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_strict_lowercase_hex() {
        assert_eq!(
            HexId::parse("00112233445566778899aabbccddeeff").map(|i| i.0[15]),
            Some(0xff)
        );
        for bad in [
            "",
            "00112233445566778899aabbccddeef",
            "00112233445566778899aabbccddeeff0",
            "00112233445566778899AABBCCDDEEFF",
            "0011223344556677889gaabbccddeeff",
            "+0112233445566778899aabbccddeeff",
            "00112233445566778899aabbccddee\u{e9}",
        ] {
            assert!(HexId::parse(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn counters_stop_at_2_pow_53() {
        assert!(serde_json::from_str::<Counter>("9007199254740991").is_ok());
        assert!(serde_json::from_str::<Counter>("9007199254740992").is_err());
        assert!(serde_json::from_str::<Counter>("-1").is_err());
        assert!(serde_json::from_str::<Counter>("1.5").is_err());
    }

    #[test]
    fn secrets_are_43_canonical_characters() {
        let ok =
            serde_json::from_str::<SecretField>("\"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8\"");
        assert!(ok.is_ok());
        for bad in [
            "\"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh9\"",
            "\"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\"",
            "\"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh\"",
            "7",
        ] {
            assert!(serde_json::from_str::<SecretField>(bad).is_err(), "{bad}");
        }
        let zero =
            serde_json::from_str::<SecretField>("\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\"");
        assert!(matches!(zero.map(|s| s.login_secret().is_err()), Ok(true)));
    }
}
