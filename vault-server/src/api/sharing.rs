//! Groups with their roster versions, and key envelopes (docs/spec/api.md §7.5–§7.6). The
//! client's `vault_core::Store` records map onto them: `RecordKind::Roster` (insert-only)
//! and `RecordKind::Envelope` (put, get, list by recipient, delete).

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::audit::Peer;
use super::collections::{create_scope, delete_owned_scope, reach_scope, write_result, ScopeEntry};
use super::error::{ApiError, ErrorBody};
use super::extract::{
    blob_response, read_blob, ApiPath, ApiQuery, Auth, Blob, ClientAddr, Counter, HexId,
};
use super::{blocking, AppState};
use crate::audit::{Details, Event, EventKind};
use crate::auth::UserId;
use crate::store::{Backend, EnvelopeKey, Id, InsertRoster, ScopeKind};

/// A group id in the path.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub(crate) struct GroupPath {
    /// The group id.
    #[param(value_type = HexId)]
    g: HexId,
}

/// Creates a group owned by the caller.
#[utoipa::path(
    put,
    path = "/v1/groups/{g}",
    tag = "groups",
    security(("session" = [])),
    params(GroupPath),
    responses(
        (status = 201, description = "Created", body = ScopeEntry),
        (status = 200, description = "The caller already owns this group", body = ScopeEntry),
        (status = 400, description = "bad_id", body = ErrorBody),
        (status = 409, description = "exists: the id belongs to another account, or is a collection", body = ErrorBody),
    )
)]
pub(crate) async fn create_group<B: Backend>(
    State(state): State<Arc<AppState<B>>>,
    Peer(peer): Peer,
    auth: Auth,
    ApiPath(path): ApiPath<GroupPath>,
) -> Result<(StatusCode, Json<ScopeEntry>), ApiError> {
    create_scope(&state, auth.user, path.g.0, ScopeKind::Group, peer).await
}

/// Deletes a group with its rosters and envelopes (owner only).
#[utoipa::path(
    delete,
    path = "/v1/groups/{g}",
    tag = "groups",
    security(("session" = [])),
    params(GroupPath),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "bad_id", body = ErrorBody),
        (status = 404, description = "not_found: none, or not the caller's", body = ErrorBody),
    )
)]
pub(crate) async fn delete_group<B: Backend>(
    State(state): State<Arc<AppState<B>>>,
    ClientAddr(addr): ClientAddr,
    auth: Auth,
    elevation: super::mfa::Elevation,
    ApiPath(path): ApiPath<GroupPath>,
) -> Result<StatusCode, ApiError> {
    super::mfa::require_elevation(&state, &auth, &elevation, addr).await?;
    delete_owned_scope(&state, auth.user, path.g.0, ScopeKind::Group, Some(addr)).await
}

/// The roster versions of a group.
#[derive(Serialize, ToSchema)]
pub(crate) struct RosterVersions {
    /// Ascending.
    versions: Vec<u64>,
}

/// The roster versions stored for a group (owner and members).
#[utoipa::path(
    get,
    path = "/v1/groups/{g}/rosters",
    tag = "groups",
    security(("session" = [])),
    params(GroupPath),
    responses(
        (status = 200, description = "The versions", body = RosterVersions),
        (status = 400, description = "bad_id", body = ErrorBody),
        (status = 404, description = "not_found: the caller may not reach the group", body = ErrorBody),
    )
)]
pub(crate) async fn list_rosters<B: Backend>(
    State(state): State<Arc<AppState<B>>>,
    auth: Auth,
    ApiPath(path): ApiPath<GroupPath>,
) -> Result<Json<RosterVersions>, ApiError> {
    let (user, g) = (auth.user, path.g.0);
    let versions = blocking(&state, move |b| {
        reach_scope(b, &user, &g, ScopeKind::Group)?;
        Ok(b.list_rosters(&g)?)
    })
    .await?;
    Ok(Json(RosterVersions { versions }))
}

/// A roster version.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub(crate) struct RosterPath {
    /// The group id.
    #[param(value_type = HexId)]
    g: HexId,
    /// The roster version.
    #[param(value_type = Counter)]
    version: Counter,
}

/// Inserts a roster version; the first writer of a version wins (owner and members).
#[utoipa::path(
    put,
    path = "/v1/groups/{g}/rosters/{version}",
    tag = "groups",
    security(("session" = [])),
    params(RosterPath),
    request_body(content = Blob, content_type = "application/octet-stream"),
    responses(
        (status = 201, description = "Inserted"),
        (status = 400, description = "bad_id, bad_request", body = ErrorBody),
        (status = 404, description = "not_found: the caller may not reach the group", body = ErrorBody),
        (status = 409, description = "exists: this roster version is taken", body = ErrorBody),
        (status = 413, description = "payload_too_large, quota_exceeded", body = ErrorBody),
        (status = 415, description = "unsupported_media_type", body = ErrorBody),
    )
)]
pub(crate) async fn put_roster<B: Backend>(
    State(state): State<Arc<AppState<B>>>,
    Peer(peer): Peer,
    auth: Auth,
    ApiPath(path): ApiPath<RosterPath>,
    headers: HeaderMap,
    body: Body,
) -> Result<StatusCode, ApiError> {
    let roster = read_blob(&headers, body, state.config.limits.roster).await?;
    let (user, g, version, quota) = (
        auth.user,
        path.g.0,
        path.version.0,
        state.config.limits.quota,
    );
    let status = blocking(&state, move |b| {
        reach_scope(b, &user, &g, ScopeKind::Group)?;
        match b.insert_roster(&g, version, &roster, quota)? {
            InsertRoster::Done => Ok(StatusCode::CREATED),
            InsertRoster::Exists => Err(ApiError::Exists),
            InsertRoster::NoScope => Err(ApiError::NotFound),
            InsertRoster::QuotaExceeded => Err(ApiError::QuotaExceeded),
        }
    })
    .await?;
    let details = Details {
        group: Some(g),
        version: Some(version),
        ..Details::default()
    };
    let event = Event::new(EventKind::RosterStored).with_account(user);
    state
        .audit(event.with_address(peer).with_details(details))
        .await;
    Ok(status)
}

/// Reads a roster version (owner and members).
#[utoipa::path(
    get,
    path = "/v1/groups/{g}/rosters/{version}",
    tag = "groups",
    security(("session" = [])),
    params(RosterPath),
    responses(
        (status = 200, description = "The roster", body = Blob, content_type = "application/octet-stream"),
        (status = 400, description = "bad_id, bad_request", body = ErrorBody),
        (status = 404, description = "not_found", body = ErrorBody),
    )
)]
pub(crate) async fn get_roster<B: Backend>(
    State(state): State<Arc<AppState<B>>>,
    auth: Auth,
    ApiPath(path): ApiPath<RosterPath>,
) -> Result<Response, ApiError> {
    let (user, g, version) = (auth.user, path.g.0, path.version.0);
    let roster = blocking(&state, move |b| {
        reach_scope(b, &user, &g, ScopeKind::Group)?;
        b.get_roster(&g, version)?.ok_or(ApiError::NotFound)
    })
    .await?;
    Ok(blob_response(roster, None))
}

/// The key of an envelope in the path.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub(crate) struct EnvelopePath {
    /// The recipient: a user id or a group id.
    #[param(value_type = HexId)]
    recipient: HexId,
    /// The owner field of the grant: the collection owner's user id, or the group id for a
    /// group secret.
    #[param(value_type = HexId)]
    owner: HexId,
    /// The scope the envelope opens.
    #[param(value_type = HexId)]
    target: HexId,
    /// The key epoch.
    epoch: u32,
}

impl EnvelopePath {
    fn key(&self) -> EnvelopeKey {
        EnvelopeKey {
            recipient: self.recipient.0,
            owner: self.owner.0,
            target: self.target.0,
            epoch: self.epoch,
        }
    }
}

/// Whether `user` may store or delete the envelope `key`: for a collection target, the
/// caller owns it and is the envelope's owner; for a group target, the owner field is the
/// group and the caller owns the group or is a member (groups may have several admins; the
/// roster signature is what clients check).
fn may_write_envelope<B: Backend>(
    b: &B,
    user: &UserId,
    key: &EnvelopeKey,
) -> Result<bool, ApiError> {
    Ok(match b.scope(&key.target)? {
        Some((ScopeKind::Collection, owner)) => owner == *user && key.owner == *user,
        Some((ScopeKind::Group, owner)) => {
            key.owner == key.target && (owner == *user || b.can_reach(user, &key.target)?)
        }
        None => false,
    })
}

/// Who may read envelopes: the recipient, the members of a recipient group, and the owner
/// of the target scope. Caches scope lookups for listings.
struct ReadAccess<'a, B> {
    b: &'a B,
    user: UserId,
    recipients: HashMap<Id, bool>,
    targets: HashMap<Id, bool>,
}

impl<'a, B: Backend> ReadAccess<'a, B> {
    fn new(b: &'a B, user: UserId) -> Self {
        Self {
            b,
            user,
            recipients: HashMap::new(),
            targets: HashMap::new(),
        }
    }

    fn may_read(&mut self, key: &EnvelopeKey) -> Result<bool, ApiError> {
        if key.recipient == self.user {
            return Ok(true);
        }
        let via_group = match self.recipients.get(&key.recipient) {
            Some(v) => *v,
            None => {
                let v = matches!(self.b.scope(&key.recipient)?, Some((ScopeKind::Group, _)))
                    && self.b.can_reach(&self.user, &key.recipient)?;
                self.recipients.insert(key.recipient, v);
                v
            }
        };
        if via_group {
            return Ok(true);
        }
        match self.targets.get(&key.target) {
            Some(v) => Ok(*v),
            None => {
                let v =
                    matches!(self.b.scope(&key.target)?, Some((_, owner)) if owner == self.user);
                self.targets.insert(key.target, v);
                Ok(v)
            }
        }
    }
}

/// Stores (or replaces) an envelope.
#[utoipa::path(
    put,
    path = "/v1/envelopes/{recipient}/{owner}/{target}/{epoch}",
    tag = "envelopes",
    security(("session" = [])),
    params(EnvelopePath),
    request_body(content = Blob, content_type = "application/octet-stream"),
    responses(
        (status = 204, description = "Stored"),
        (status = 400, description = "bad_id, bad_request", body = ErrorBody),
        (status = 404, description = "not_found: the caller may not write this envelope", body = ErrorBody),
        (status = 413, description = "payload_too_large, quota_exceeded", body = ErrorBody),
        (status = 415, description = "unsupported_media_type", body = ErrorBody),
    )
)]
pub(crate) async fn put_envelope<B: Backend>(
    State(state): State<Arc<AppState<B>>>,
    Peer(peer): Peer,
    auth: Auth,
    ApiPath(path): ApiPath<EnvelopePath>,
    headers: HeaderMap,
    body: Body,
) -> Result<StatusCode, ApiError> {
    let envelope = read_blob(&headers, body, state.config.limits.envelope).await?;
    let (user, key, quota) = (auth.user, path.key(), state.config.limits.quota);
    let status = blocking(&state, move |b| {
        if !may_write_envelope(b, &user, &key)? {
            return Err(ApiError::NotFound);
        }
        write_result(
            b.put_envelope(&key, &envelope, quota)?,
            StatusCode::NO_CONTENT,
        )
    })
    .await?;
    let event = Event::new(EventKind::EnvelopeStored).with_account(user);
    state
        .audit(
            event
                .with_address(peer)
                .with_details(envelope_details(&key)),
        )
        .await;
    Ok(status)
}

/// Reads an envelope (its recipient, a member of its recipient group, or the target's
/// owner).
#[utoipa::path(
    get,
    path = "/v1/envelopes/{recipient}/{owner}/{target}/{epoch}",
    tag = "envelopes",
    security(("session" = [])),
    params(EnvelopePath),
    responses(
        (status = 200, description = "The envelope", body = Blob, content_type = "application/octet-stream"),
        (status = 400, description = "bad_id, bad_request", body = ErrorBody),
        (status = 404, description = "not_found", body = ErrorBody),
    )
)]
pub(crate) async fn get_envelope<B: Backend>(
    State(state): State<Arc<AppState<B>>>,
    auth: Auth,
    ApiPath(path): ApiPath<EnvelopePath>,
) -> Result<Response, ApiError> {
    let (user, key) = (auth.user, path.key());
    let envelope = blocking(&state, move |b| {
        if !ReadAccess::new(b, user).may_read(&key)? {
            return Err(ApiError::NotFound);
        }
        b.get_envelope(&key)?.ok_or(ApiError::NotFound)
    })
    .await?;
    Ok(blob_response(envelope, None))
}

/// Deletes an envelope (who may store it). Idempotent: `204` also when there was none.
#[utoipa::path(
    delete,
    path = "/v1/envelopes/{recipient}/{owner}/{target}/{epoch}",
    tag = "envelopes",
    security(("session" = [])),
    params(EnvelopePath),
    responses(
        (status = 204, description = "Deleted (or there was none)"),
        (status = 400, description = "bad_id, bad_request", body = ErrorBody),
        (status = 404, description = "not_found: the caller may not delete this envelope", body = ErrorBody),
    )
)]
pub(crate) async fn delete_envelope<B: Backend>(
    State(state): State<Arc<AppState<B>>>,
    Peer(peer): Peer,
    auth: Auth,
    ApiPath(path): ApiPath<EnvelopePath>,
) -> Result<StatusCode, ApiError> {
    let (user, key) = (auth.user, path.key());
    let deleted = blocking(&state, move |b| {
        if !may_write_envelope(b, &user, &key)? {
            return Err(ApiError::NotFound);
        }
        Ok(b.delete_envelope(&key)?)
    })
    .await?;
    if deleted {
        let event = Event::new(EventKind::EnvelopeDeleted).with_account(user);
        state
            .audit(
                event
                    .with_address(peer)
                    .with_details(envelope_details(&key)),
            )
            .await;
    }
    Ok(StatusCode::NO_CONTENT)
}

/// The audit details of an envelope: its key's four fields.
fn envelope_details(key: &EnvelopeKey) -> Details {
    Details {
        recipient: Some(key.recipient),
        owner: Some(key.owner),
        target: Some(key.target),
        epoch: Some(key.epoch),
        ..Details::default()
    }
}

/// Which envelopes to list.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct EnvelopeQuery {
    /// The recipient (a user or group id); the caller if absent.
    #[param(value_type = Option<HexId>)]
    recipient: Option<HexId>,
}

/// The key of an envelope.
#[derive(Serialize, ToSchema)]
pub(crate) struct EnvelopeEntry {
    /// The recipient.
    recipient: HexId,
    /// The owner field.
    owner: HexId,
    /// The target scope.
    target: HexId,
    /// The key epoch.
    epoch: u32,
}

/// A list of envelope keys.
#[derive(Serialize, ToSchema)]
pub(crate) struct EnvelopeList {
    /// In byte order of the key.
    envelopes: Vec<EnvelopeEntry>,
}

/// The keys of the envelopes addressed to `recipient` that the caller may read (all of
/// them for the caller itself or a group it belongs to; otherwise those whose target the
/// caller owns).
#[utoipa::path(
    get,
    path = "/v1/envelopes",
    tag = "envelopes",
    security(("session" = [])),
    params(EnvelopeQuery),
    responses(
        (status = 200, description = "The envelope keys", body = EnvelopeList),
        (status = 400, description = "bad_id, bad_request", body = ErrorBody),
    )
)]
pub(crate) async fn list_envelopes<B: Backend>(
    State(state): State<Arc<AppState<B>>>,
    auth: Auth,
    ApiQuery(query): ApiQuery<EnvelopeQuery>,
) -> Result<Json<EnvelopeList>, ApiError> {
    let user = auth.user;
    let recipient = query.recipient.map_or(user, |r| r.0);
    let keys = blocking(&state, move |b| {
        let mut access = ReadAccess::new(b, user);
        let mut visible = Vec::new();
        for key in b.list_envelopes(&recipient)? {
            if access.may_read(&key)? {
                visible.push(key);
            }
        }
        Ok(visible)
    })
    .await?;
    Ok(Json(EnvelopeList {
        envelopes: keys
            .into_iter()
            .map(|k| EnvelopeEntry {
                recipient: HexId(k.recipient),
                owner: HexId(k.owner),
                target: HexId(k.target),
                epoch: k.epoch,
            })
            .collect(),
    }))
}
