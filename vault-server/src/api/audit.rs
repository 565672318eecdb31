//! The caller's own audit events (docs/spec/audit.md §6; the log itself is
//! [`crate::audit`]), and the client address the handlers record with their events.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts, State};
use axum::http::request::Parts;
use axum::Json;
use data_encoding::HEXLOWER;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::{ApiError, ErrorBody};
use super::extract::{ApiQuery, Auth, Counter, HexId};
use super::{blocking, AppState};
use crate::audit::{Details, Entry};
use crate::store::Backend;

/// The default number of events per answer.
pub const DEFAULT_LIMIT: u32 = 100;
/// The most events per answer.
pub const MAX_LIMIT: u32 = 1000;

/// The client's address for the audit log: the TCP peer (never a header), or none when the
/// router runs without connection information. Never refuses a request.
pub(crate) struct Peer(pub(crate) Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for Peer {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Infallible> {
        Ok(Self(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|ConnectInfo(a)| a.ip()),
        ))
    }
}

/// Where to read the caller's events from.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct AuditQuery {
    /// The cursor: the `next` of the previous answer (0 for the start).
    #[param(value_type = Option<Counter>)]
    after: Option<Counter>,
    /// At most this many events, 1–1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
}

/// The non-secret details of an event; only the fields the event has are present.
#[derive(Serialize, ToSchema, Default)]
pub(crate) struct AuditDetails {
    /// A collection.
    #[serde(skip_serializing_if = "Option::is_none")]
    collection: Option<HexId>,
    /// A group.
    #[serde(skip_serializing_if = "Option::is_none")]
    group: Option<HexId>,
    /// An object.
    #[serde(skip_serializing_if = "Option::is_none")]
    object: Option<HexId>,
    /// A version (object, roster, keyring).
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<u64>,
    /// A key epoch.
    #[serde(skip_serializing_if = "Option::is_none")]
    epoch: Option<u32>,
    /// An envelope's recipient.
    #[serde(skip_serializing_if = "Option::is_none")]
    recipient: Option<HexId>,
    /// An envelope's owner field.
    #[serde(skip_serializing_if = "Option::is_none")]
    owner: Option<HexId>,
    /// An envelope's target.
    #[serde(skip_serializing_if = "Option::is_none")]
    target: Option<HexId>,
    /// A device.
    #[serde(skip_serializing_if = "Option::is_none")]
    device: Option<HexId>,
    /// A second-factor method: `totp`, `hotp` or `backup_code`.
    #[serde(skip_serializing_if = "Option::is_none")]
    method: Option<String>,
    /// A count.
    #[serde(skip_serializing_if = "Option::is_none")]
    count: Option<u64>,
    /// A SHA-256 digest, 64 hex digits.
    #[serde(skip_serializing_if = "Option::is_none")]
    digest: Option<String>,
}

impl From<&Details> for AuditDetails {
    fn from(d: &Details) -> Self {
        Self {
            collection: d.collection.map(HexId),
            group: d.group.map(HexId),
            object: d.object.map(HexId),
            version: d.version,
            epoch: d.epoch,
            recipient: d.recipient.map(HexId),
            owner: d.owner.map(HexId),
            target: d.target.map(HexId),
            device: d.device.map(HexId),
            method: d.method.map(|m| m.name().to_owned()),
            count: d.count,
            digest: d.digest.map(|h| HEXLOWER.encode(&h)),
        }
    }
}

/// One event of the caller's account.
#[derive(Serialize, ToSchema)]
pub(crate) struct AuditEvent {
    /// Its position in the server's audit chain (increasing; the caller's events have gaps
    /// where other accounts' events are).
    seq: u64,
    /// When it was recorded, Unix seconds.
    time: u64,
    /// What happened, e.g. `login_succeeded`, `login_failed`, `collection_created`
    /// (docs/spec/audit.md §2.1).
    #[schema(example = "login_failed")]
    kind: String,
    /// The client's address (IPv4 or IPv6, whole), if known.
    address: Option<String>,
    /// Ids, versions and counts of the event.
    details: AuditDetails,
    /// The entry hash (64 hex digits): what `vault-server audit-verify` checks, and what a
    /// later entry's `prev` commits to.
    hash: String,
}

impl From<Entry> for AuditEvent {
    fn from(e: Entry) -> Self {
        Self {
            seq: e.seq,
            time: e.time,
            kind: e.event.kind.name().to_owned(),
            address: e.event.address.map(|a| a.to_string()),
            details: (&e.event.details).into(),
            hash: HEXLOWER.encode(&e.hash),
        }
    }
}

/// A page of the caller's events.
#[derive(Serialize, ToSchema)]
pub(crate) struct AuditPage {
    /// The caller's events after the cursor, oldest first.
    events: Vec<AuditEvent>,
    /// The cursor for the next request: the `seq` of the last event returned (the cursor
    /// asked with when there is none).
    next: u64,
    /// Whether there are more events after `next`.
    more: bool,
}

/// The security events of the caller's account (logins and failed logins, sessions,
/// keyring, password, MFA and device changes, shares, deletions), oldest first, paged by
/// `seq`. Failed logins of unknown names belong to no account and are not shown.
#[utoipa::path(
    get,
    path = "/v1/account/audit",
    tag = "accounts",
    security(("session" = [])),
    params(AuditQuery),
    responses(
        (status = 200, description = "A page of the caller's audit events", body = AuditPage),
        (status = 400, description = "bad_request: after or limit out of range", body = ErrorBody),
    )
)]
pub(crate) async fn account_audit<B: Backend>(
    State(state): State<Arc<AppState<B>>>,
    auth: Auth,
    ApiQuery(query): ApiQuery<AuditQuery>,
) -> Result<Json<AuditPage>, ApiError> {
    let after = query.after.map_or(0, |c| c.0);
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::BadRequest("limit must be 1-1000"));
    }
    let user = auth.user;
    // One more than asked, to tell whether there are more.
    let mut entries = blocking(&state, move |b| {
        Ok(b.events_of(&user, after, limit as usize + 1)?)
    })
    .await?;
    let more = entries.len() > limit as usize;
    entries.truncate(limit as usize);
    let next = entries.last().map_or(after, |e| e.seq);
    Ok(Json(AuditPage {
        events: entries.into_iter().map(AuditEvent::from).collect(),
        next,
        more,
    }))
}
