//! Collections: creation and deletion, sealed pages, object headers, wrapped collection keys
//! and the manifest head (docs/spec/api.md §7.4). The client's `vault_core::Store` maps onto
//! these routes one to one: `put_page`/`get_page`, `put_header`/`get_header`,
//! `delete_object_version`, `put_collection_key`/`get_collection_key`,
//! `get_manifest`/`swap_manifest`.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::accounts::VersionResponse;
use super::audit::Peer;
use super::error::{ApiError, ErrorBody};
use super::extract::{
    blob_response, read_blob, ApiPath, ApiQuery, Auth, Bearer, Blob, ClientAddr, Counter, HexId,
};
use super::{blocking, AppState};
use crate::audit::{Details, Event, EventKind};
use crate::auth::UserId;
use crate::store::{Backend, Cas, Created, Id, ManifestSwap, ObjectKey, PageKey, ScopeKind, Write};

/// The kind of a scope, in JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = ScopeKind)]
pub(crate) enum ScopeKindJson {
    /// A collection.
    Collection,
    /// A group.
    Group,
}

impl From<ScopeKind> for ScopeKindJson {
    fn from(k: ScopeKind) -> Self {
        match k {
            ScopeKind::Collection => ScopeKindJson::Collection,
            ScopeKind::Group => ScopeKindJson::Group,
        }
    }
}

/// A scope the caller owns or may reach.
#[derive(Serialize, ToSchema)]
pub(crate) struct ScopeEntry {
    /// The scope id.
    id: HexId,
    /// Collection or group.
    kind: ScopeKindJson,
}

/// The caller's scopes.
#[derive(Serialize, ToSchema)]
pub(crate) struct ScopeList {
    /// In byte order of id.
    scopes: Vec<ScopeEntry>,
}

/// The collections and groups the caller owns or may reach through envelopes.
#[utoipa::path(
    get,
    path = "/v1/collections",
    tag = "collections",
    security(("session" = [])),
    responses((status = 200, description = "The caller's scopes", body = ScopeList))
)]
pub(crate) async fn list_scopes<B: Backend>(
    State(state): State<Arc<AppState<B>>>,
    auth: Auth,
) -> Result<Json<ScopeList>, ApiError> {
    let user = auth.user;
    let scopes = blocking(&state, move |b| Ok(b.list_scopes(&user)?)).await?;
    Ok(Json(ScopeList {
        scopes: scopes
            .into_iter()
            .map(|(id, kind)| ScopeEntry {
                id: HexId(id),
                kind: kind.into(),
            })
            .collect(),
    }))
}

/// Creates scope `id` of `kind` for the caller: 201 if new, 200 if the caller already owns
/// it with that kind, 409 otherwise.
pub(crate) async fn create_scope<B: Backend>(
    state: &Arc<AppState<B>>,
    user: UserId,
    id: Id,
    kind: ScopeKind,
    peer: Option<std::net::IpAddr>,
) -> Result<(StatusCode, Json<ScopeEntry>), ApiError> {
    let created = blocking(state, move |b| {
        let created = b.create_scope(&id, kind, &user)?;
        // The account may have been deleted while this request ran: a scope of a user that
        // no longer exists would stay, unreachable and outside every quota.
        if created == Created::Created && !b.account_exists_settled(&user)? {
            b.delete_scope(&id)?;
            return Err(ApiError::Unauthenticated);
        }
        Ok(created)
    })
    .await?;
    let status = match created {
        Created::Created => {
            let event = match kind {
                ScopeKind::Collection => EventKind::CollectionCreated,
                ScopeKind::Group => EventKind::GroupCreated,
            };
            let event = Event::new(event).with_account(user).with_address(peer);
            state
                .audit(event.with_details(scope_details(id, kind)))
                .await;
            StatusCode::CREATED
        }
        Created::Exists { kind: k, owner } if k == kind && owner == user => StatusCode::OK,
        Created::Exists { .. } => return Err(ApiError::Exists),
    };
    Ok((
        status,
        Json(ScopeEntry {
            id: HexId(id),
            kind: kind.into(),
        }),
    ))
}

/// Deletes scope `id` if the caller owns it with `kind`; 404 otherwise.
pub(crate) async fn delete_owned_scope<B: Backend>(
    state: &Arc<AppState<B>>,
    user: UserId,
    id: Id,
    kind: ScopeKind,
    peer: Option<std::net::IpAddr>,
) -> Result<StatusCode, ApiError> {
    blocking(state, move |b| {
        own_scope(b, &user, &id, kind)?;
        if b.delete_scope(&id)? {
            Ok(StatusCode::NO_CONTENT)
        } else {
            Err(ApiError::NotFound)
        }
    })
    .await?;
    let event = match kind {
        ScopeKind::Collection => EventKind::CollectionDeleted,
        ScopeKind::Group => EventKind::GroupDeleted,
    };
    let event = Event::new(event).with_account(user).with_address(peer);
    state
        .audit(event.with_details(scope_details(id, kind)))
        .await;
    Ok(StatusCode::NO_CONTENT)
}

/// The audit details naming scope `id` of `kind`.
fn scope_details(id: Id, kind: ScopeKind) -> Details {
    match kind {
        ScopeKind::Collection => Details {
            collection: Some(id),
            ..Details::default()
        },
        ScopeKind::Group => Details {
            group: Some(id),
            ..Details::default()
        },
    }
}

/// `Ok` if `user` owns scope `id` of `kind`; `404` otherwise.
pub(crate) fn own_scope<B: Backend>(
    b: &B,
    user: &UserId,
    id: &Id,
    kind: ScopeKind,
) -> Result<(), ApiError> {
    match b.scope(id)? {
        Some((k, owner)) if k == kind && owner == *user => Ok(()),
        _ => Err(ApiError::NotFound),
    }
}

/// `Ok` if `user` may reach scope `id` of `kind` (owner, or through envelopes of the
/// current epoch; store/data.rs); `404` otherwise.
pub(crate) fn reach_scope<B: Backend>(
    b: &B,
    user: &UserId,
    id: &Id,
    kind: ScopeKind,
) -> Result<(), ApiError> {
    match b.scope(id)? {
        Some((k, owner)) if k == kind && owner == *user => Ok(()),
        Some((k, _)) if k == kind && b.can_reach(user, id)? => Ok(()),
        _ => Err(ApiError::NotFound),
    }
}

/// The answer of a write under a scope.
pub(crate) fn write_result(w: Write, done: StatusCode) -> Result<StatusCode, ApiError> {
    match w {
        Write::Done => Ok(done),
        Write::NoScope => Err(ApiError::NotFound),
        Write::QuotaExceeded => Err(ApiError::QuotaExceeded),
    }
}

/// A collection id in the path.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub(crate) struct CollectionPath {
    /// The collection id.
    #[param(value_type = HexId)]
    c: HexId,
}

/// Creates a collection owned by the caller.
#[utoipa::path(
    put,
    path = "/v1/collections/{c}",
    tag = "collections",
    security(("session" = [])),
    params(CollectionPath),
    responses(
        (status = 201, description = "Created", body = ScopeEntry),
        (status = 200, description = "The caller already owns this collection", body = ScopeEntry),
        (status = 400, description = "bad_id", body = ErrorBody),
        (status = 409, description = "exists: the id belongs to another account, or is a group", body = ErrorBody),
    )
)]
pub(crate) async fn create_collection<B: Backend>(
    State(state): State<Arc<AppState<B>>>,
    Peer(peer): Peer,
    auth: Auth,
    ApiPath(path): ApiPath<CollectionPath>,
) -> Result<(StatusCode, Json<ScopeEntry>), ApiError> {
    create_scope(&state, auth.user, path.c.0, ScopeKind::Collection, peer).await
}

/// Deletes a collection and everything in it (owner only).
#[utoipa::path(
    delete,
    path = "/v1/collections/{c}",
    tag = "collections",
    security(("session" = [])),
    params(CollectionPath),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "bad_id", body = ErrorBody),
        (status = 404, description = "not_found: none, or not the caller's", body = ErrorBody),
    )
)]
pub(crate) async fn delete_collection<B: Backend>(
    State(state): State<Arc<AppState<B>>>,
    ClientAddr(addr): ClientAddr,
    auth: Auth,
    elevation: super::mfa::Elevation,
    ApiPath(path): ApiPath<CollectionPath>,
) -> Result<StatusCode, ApiError> {
    super::mfa::require_elevation(&state, &auth, &elevation, addr).await?;
    delete_owned_scope(
        &state,
        auth.user,
        path.c.0,
        ScopeKind::Collection,
        Some(addr),
    )
    .await
}

/// The address of a page.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub(crate) struct PagePath {
    /// The collection id.
    #[param(value_type = HexId)]
    c: HexId,
    /// The object id.
    #[param(value_type = HexId)]
    o: HexId,
    /// The object version.
    #[param(value_type = Counter)]
    v: Counter,
    /// The page index.
    i: u32,
}

impl PagePath {
    fn key(&self) -> PageKey {
        PageKey {
            collection: self.c.0,
            object: self.o.0,
            version: self.v.0,
            index: self.i,
        }
    }
}

/// Stores (or replaces) a sealed page.
#[utoipa::path(
    put,
    path = "/v1/collections/{c}/objects/{o}/versions/{v}/pages/{i}",
    tag = "collections",
    security(("session" = [])),
    params(PagePath),
    request_body(content = Blob, content_type = "application/octet-stream"),
    responses(
        (status = 204, description = "Stored"),
        (status = 400, description = "bad_id, bad_request (path, empty body)", body = ErrorBody),
        (status = 404, description = "not_found: the caller may not reach the collection", body = ErrorBody),
        (status = 413, description = "payload_too_large, quota_exceeded", body = ErrorBody),
        (status = 415, description = "unsupported_media_type", body = ErrorBody),
    )
)]
pub(crate) async fn put_page<B: Backend>(
    State(state): State<Arc<AppState<B>>>,
    auth: Auth,
    ApiPath(path): ApiPath<PagePath>,
    headers: HeaderMap,
    body: Body,
) -> Result<StatusCode, ApiError> {
    let page = read_blob(&headers, body, state.config.limits.page).await?;
    let (user, key, quota) = (auth.user, path.key(), state.config.limits.quota);
    blocking(&state, move |b| {
        reach_scope(b, &user, &key.collection, ScopeKind::Collection)?;
        write_result(b.put_page(&key, &page, quota)?, StatusCode::NO_CONTENT)
    })
    .await
}

/// Reads a sealed page.
#[utoipa::path(
    get,
    path = "/v1/collections/{c}/objects/{o}/versions/{v}/pages/{i}",
    tag = "collections",
    security(("session" = [])),
    params(PagePath),
    responses(
        (status = 200, description = "The sealed page", body = Blob, content_type = "application/octet-stream"),
        (status = 400, description = "bad_id, bad_request", body = ErrorBody),
        (status = 404, description = "not_found", body = ErrorBody),
    )
)]
pub(crate) async fn get_page<B: Backend>(
    State(state): State<Arc<AppState<B>>>,
    bearer: Bearer,
    ApiPath(path): ApiPath<PagePath>,
) -> Result<Response, ApiError> {
    let key = path.key();
    // The hot read path: the session (unless answered from memory), the access check and
    // the read in one blocking task (two queries on PostgreSQL); a page the caller may not
    // reach is as absent as a missing one.
    let page = blocking(&state, move |b| {
        let user = bearer.user(b)?;
        b.get_page_as(&user, &key)?.ok_or(ApiError::NotFound)
    })
    .await?;
    Ok(blob_response(page, None))
}

/// The address of an object version.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub(crate) struct ObjectPath {
    /// The collection id.
    #[param(value_type = HexId)]
    c: HexId,
    /// The object id.
    #[param(value_type = HexId)]
    o: HexId,
    /// The object version.
    #[param(value_type = Counter)]
    v: Counter,
}

impl ObjectPath {
    fn key(&self) -> ObjectKey {
        ObjectKey {
            collection: self.c.0,
            object: self.o.0,
            version: self.v.0,
        }
    }
}

/// Stores (or replaces) the sealed header of an object version.
#[utoipa::path(
    put,
    path = "/v1/collections/{c}/objects/{o}/versions/{v}",
    tag = "collections",
    security(("session" = [])),
    params(ObjectPath),
    request_body(content = Blob, content_type = "application/octet-stream"),
    responses(
        (status = 204, description = "Stored"),
        (status = 400, description = "bad_id, bad_request", body = ErrorBody),
        (status = 404, description = "not_found", body = ErrorBody),
        (status = 413, description = "payload_too_large, quota_exceeded", body = ErrorBody),
        (status = 415, description = "unsupported_media_type", body = ErrorBody),
    )
)]
pub(crate) async fn put_header<B: Backend>(
    State(state): State<Arc<AppState<B>>>,
    auth: Auth,
    ApiPath(path): ApiPath<ObjectPath>,
    headers: HeaderMap,
    body: Body,
) -> Result<StatusCode, ApiError> {
    let header = read_blob(&headers, body, state.config.limits.header).await?;
    let (user, key, quota) = (auth.user, path.key(), state.config.limits.quota);
    blocking(&state, move |b| {
        reach_scope(b, &user, &key.collection, ScopeKind::Collection)?;
        write_result(b.put_header(&key, &header, quota)?, StatusCode::NO_CONTENT)
    })
    .await
}

/// Reads the sealed header of an object version.
#[utoipa::path(
    get,
    path = "/v1/collections/{c}/objects/{o}/versions/{v}",
    tag = "collections",
    security(("session" = [])),
    params(ObjectPath),
    responses(
        (status = 200, description = "The sealed header", body = Blob, content_type = "application/octet-stream"),
        (status = 400, description = "bad_id, bad_request", body = ErrorBody),
        (status = 404, description = "not_found", body = ErrorBody),
    )
)]
pub(crate) async fn get_header<B: Backend>(
    State(state): State<Arc<AppState<B>>>,
    auth: Auth,
    ApiPath(path): ApiPath<ObjectPath>,
) -> Result<Response, ApiError> {
    let (user, key) = (auth.user, path.key());
    let header = blocking(&state, move |b| {
        reach_scope(b, &user, &key.collection, ScopeKind::Collection)?;
        b.get_header(&key)?.ok_or(ApiError::NotFound)
    })
    .await?;
    Ok(blob_response(header, None))
}

/// Deletes an object version: its header and all its pages. Idempotent: `204` also when
/// there was nothing.
#[utoipa::path(
    delete,
    path = "/v1/collections/{c}/objects/{o}/versions/{v}",
    tag = "collections",
    security(("session" = [])),
    params(ObjectPath),
    responses(
        (status = 204, description = "Deleted (or there was nothing)"),
        (status = 400, description = "bad_id, bad_request", body = ErrorBody),
        (status = 404, description = "not_found: the caller may not reach the collection", body = ErrorBody),
    )
)]
pub(crate) async fn delete_object<B: Backend>(
    State(state): State<Arc<AppState<B>>>,
    Peer(peer): Peer,
    auth: Auth,
    ApiPath(path): ApiPath<ObjectPath>,
) -> Result<StatusCode, ApiError> {
    let (user, key) = (auth.user, path.key());
    let deleted = blocking(&state, move |b| {
        reach_scope(b, &user, &key.collection, ScopeKind::Collection)?;
        Ok(b.delete_object(&key)?)
    })
    .await?;
    if deleted {
        let details = Details {
            collection: Some(key.collection),
            object: Some(key.object),
            version: Some(key.version),
            ..Details::default()
        };
        let event = Event::new(EventKind::ObjectDeleted).with_account(user);
        state
            .audit(event.with_address(peer).with_details(details))
            .await;
    }
    Ok(StatusCode::NO_CONTENT)
}

/// A collection key of an epoch.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub(crate) struct KeyPath {
    /// The collection id.
    #[param(value_type = HexId)]
    c: HexId,
    /// The key epoch.
    epoch: u32,
}

/// Stores (or replaces) the owner's wrapped collection key of an epoch (owner only).
#[utoipa::path(
    put,
    path = "/v1/collections/{c}/keys/{epoch}",
    tag = "collections",
    security(("session" = [])),
    params(KeyPath),
    request_body(content = Blob, content_type = "application/octet-stream"),
    responses(
        (status = 204, description = "Stored"),
        (status = 400, description = "bad_id, bad_request", body = ErrorBody),
        (status = 404, description = "not_found: not the caller's collection", body = ErrorBody),
        (status = 413, description = "payload_too_large, quota_exceeded", body = ErrorBody),
        (status = 415, description = "unsupported_media_type", body = ErrorBody),
    )
)]
pub(crate) async fn put_key<B: Backend>(
    State(state): State<Arc<AppState<B>>>,
    Peer(peer): Peer,
    auth: Auth,
    ApiPath(path): ApiPath<KeyPath>,
    headers: HeaderMap,
    body: Body,
) -> Result<StatusCode, ApiError> {
    let wrapped = read_blob(&headers, body, state.config.limits.collection_key).await?;
    let (user, c, epoch, quota) = (auth.user, path.c.0, path.epoch, state.config.limits.quota);
    let status = blocking(&state, move |b| {
        own_scope(b, &user, &c, ScopeKind::Collection)?;
        write_result(
            b.put_collection_key(&c, epoch, &wrapped, quota)?,
            StatusCode::NO_CONTENT,
        )
    })
    .await?;
    let details = Details {
        collection: Some(c),
        epoch: Some(epoch),
        ..Details::default()
    };
    let event = Event::new(EventKind::CollectionKeyStored).with_account(user);
    state
        .audit(event.with_address(peer).with_details(details))
        .await;
    Ok(status)
}

/// Reads the owner's wrapped collection key of an epoch (owner only).
#[utoipa::path(
    get,
    path = "/v1/collections/{c}/keys/{epoch}",
    tag = "collections",
    security(("session" = [])),
    params(KeyPath),
    responses(
        (status = 200, description = "The wrapped key", body = Blob, content_type = "application/octet-stream"),
        (status = 400, description = "bad_id, bad_request", body = ErrorBody),
        (status = 404, description = "not_found", body = ErrorBody),
    )
)]
pub(crate) async fn get_key<B: Backend>(
    State(state): State<Arc<AppState<B>>>,
    auth: Auth,
    ApiPath(path): ApiPath<KeyPath>,
) -> Result<Response, ApiError> {
    let (user, c, epoch) = (auth.user, path.c.0, path.epoch);
    let key = blocking(&state, move |b| {
        own_scope(b, &user, &c, ScopeKind::Collection)?;
        b.get_collection_key(&c, epoch)?.ok_or(ApiError::NotFound)
    })
    .await?;
    Ok(blob_response(key, None))
}

/// The manifest head, with its version in `Vault-Version`.
#[utoipa::path(
    get,
    path = "/v1/collections/{c}/manifest",
    tag = "collections",
    security(("session" = [])),
    params(CollectionPath),
    responses(
        (status = 200, description = "The manifest", body = Blob, content_type = "application/octet-stream",
            headers(("Vault-Version" = u64, description = "The manifest version"))),
        (status = 400, description = "bad_id", body = ErrorBody),
        (status = 404, description = "not_found: no manifest yet, or the caller may not reach the collection", body = ErrorBody),
    )
)]
pub(crate) async fn get_manifest<B: Backend>(
    State(state): State<Arc<AppState<B>>>,
    auth: Auth,
    ApiPath(path): ApiPath<CollectionPath>,
) -> Result<Response, ApiError> {
    let (user, c) = (auth.user, path.c.0);
    let (version, manifest) = blocking(&state, move |b| {
        reach_scope(b, &user, &c, ScopeKind::Collection)?;
        b.get_manifest(&c)?.ok_or(ApiError::NotFound)
    })
    .await?;
    Ok(blob_response(manifest, Some(version)))
}

/// A manifest compare-and-swap.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ManifestQuery {
    /// The version the caller last read (0: none yet).
    #[param(value_type = Counter)]
    expected: Counter,
    /// The new version: greater than `expected`.
    #[param(value_type = Counter)]
    version: Counter,
}

/// Replaces the manifest head if its version is still `expected`: two devices never
/// silently overwrite each other.
#[utoipa::path(
    put,
    path = "/v1/collections/{c}/manifest",
    tag = "collections",
    security(("session" = [])),
    params(CollectionPath, ManifestQuery),
    request_body(content = Blob, content_type = "application/octet-stream"),
    responses(
        (status = 200, description = "Replaced", body = VersionResponse),
        (status = 400, description = "bad_id, bad_request (version not above expected, bad query)", body = ErrorBody),
        (status = 404, description = "not_found", body = ErrorBody),
        (status = 409, description = "conflict: the stored version is `current`", body = ErrorBody),
        (status = 413, description = "payload_too_large, quota_exceeded", body = ErrorBody),
        (status = 415, description = "unsupported_media_type", body = ErrorBody),
    )
)]
pub(crate) async fn put_manifest<B: Backend>(
    State(state): State<Arc<AppState<B>>>,
    auth: Auth,
    ApiPath(path): ApiPath<CollectionPath>,
    ApiQuery(query): ApiQuery<ManifestQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<VersionResponse>, ApiError> {
    let (expected, version) = (query.expected.0, query.version.0);
    if version <= expected {
        return Err(ApiError::BadRequest(
            "version must be greater than expected",
        ));
    }
    let manifest = read_blob(&headers, body, state.config.limits.manifest).await?;
    let (user, c, quota) = (auth.user, path.c.0, state.config.limits.quota);
    let swap = blocking(&state, move |b| {
        reach_scope(b, &user, &c, ScopeKind::Collection)?;
        Ok(b.swap_manifest(&c, expected, version, &manifest, quota)?)
    })
    .await?;
    match swap {
        ManifestSwap::Cas(Cas::Done) => Ok(Json(VersionResponse { version })),
        ManifestSwap::Cas(Cas::Conflict { current }) => Err(ApiError::Conflict { current }),
        ManifestSwap::NoScope => Err(ApiError::NotFound),
        ManifestSwap::QuotaExceeded => Err(ApiError::QuotaExceeded),
    }
}
