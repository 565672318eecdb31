//! The change feed (docs/spec/api.md §7.7): what changed in the scopes the caller may
//! reach, after a cursor, so a device fetches only what is new since its last sync.

use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::collections::ScopeKindJson;
use super::error::{ApiError, ErrorBody};
use super::extract::{ApiQuery, Auth, Counter, HexId};
use super::{blocking, AppState};
use crate::store::{Backend, ChangeKind};

/// The default number of changes per answer.
pub const DEFAULT_LIMIT: u32 = 500;
/// The most changes per answer.
pub const MAX_LIMIT: u32 = 1000;

/// Where to read the feed from.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ChangesQuery {
    /// The cursor: the `next` of the previous answer (0 for the start).
    #[param(value_type = Option<Counter>)]
    after: Option<Counter>,
    /// At most this many changes, 1–1000 (default 500).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
}

/// One change.
#[derive(Serialize, ToSchema)]
pub(crate) struct ChangeEntry {
    /// The position in the feed (strictly increasing).
    seq: u64,
    /// What changed.
    #[serde(flatten)]
    change: ChangeBody,
}

/// What changed, by kind.
#[derive(Serialize, ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(crate) enum ChangeBody {
    /// A scope was created.
    ScopeCreated {
        /// The scope.
        scope: HexId,
        /// Collection or group.
        scope_kind: ScopeKindJson,
    },
    /// A collection's manifest head moved to `version`.
    Manifest {
        /// The collection.
        collection: HexId,
        /// The new manifest version.
        version: u64,
    },
    /// A wrapped collection key was stored.
    CollectionKey {
        /// The collection.
        collection: HexId,
        /// The key epoch.
        epoch: u32,
    },
    /// An object version was deleted.
    ObjectDeleted {
        /// The collection.
        collection: HexId,
        /// The object.
        object: HexId,
        /// The object version.
        version: u64,
    },
    /// An envelope was stored or replaced.
    Envelope {
        /// The recipient.
        recipient: HexId,
        /// The owner field.
        owner: HexId,
        /// The target scope.
        target: HexId,
        /// The key epoch.
        epoch: u32,
    },
    /// An envelope was deleted.
    EnvelopeDeleted {
        /// The recipient.
        recipient: HexId,
        /// The owner field.
        owner: HexId,
        /// The target scope.
        target: HexId,
        /// The key epoch.
        epoch: u32,
    },
    /// A roster version was inserted.
    Roster {
        /// The group.
        group: HexId,
        /// The roster version.
        version: u64,
    },
    /// A scope and everything in it was deleted.
    ScopeDeleted {
        /// The scope.
        scope: HexId,
        /// Collection or group.
        scope_kind: ScopeKindJson,
    },
}

impl From<ChangeKind> for ChangeBody {
    fn from(kind: ChangeKind) -> Self {
        match kind {
            ChangeKind::ScopeCreated { scope, kind } => ChangeBody::ScopeCreated {
                scope: HexId(scope),
                scope_kind: kind.into(),
            },
            ChangeKind::Manifest {
                collection,
                version,
            } => ChangeBody::Manifest {
                collection: HexId(collection),
                version,
            },
            ChangeKind::CollectionKey { collection, epoch } => ChangeBody::CollectionKey {
                collection: HexId(collection),
                epoch,
            },
            ChangeKind::ObjectDeleted(o) => ChangeBody::ObjectDeleted {
                collection: HexId(o.collection),
                object: HexId(o.object),
                version: o.version,
            },
            ChangeKind::Envelope(e) => ChangeBody::Envelope {
                recipient: HexId(e.recipient),
                owner: HexId(e.owner),
                target: HexId(e.target),
                epoch: e.epoch,
            },
            ChangeKind::EnvelopeDeleted(e) => ChangeBody::EnvelopeDeleted {
                recipient: HexId(e.recipient),
                owner: HexId(e.owner),
                target: HexId(e.target),
                epoch: e.epoch,
            },
            ChangeKind::Roster { group, version } => ChangeBody::Roster {
                group: HexId(group),
                version,
            },
            ChangeKind::ScopeDeleted { scope, kind } => ChangeBody::ScopeDeleted {
                scope: HexId(scope),
                scope_kind: kind.into(),
            },
        }
    }
}

/// A page of the feed.
#[derive(Serialize, ToSchema)]
pub(crate) struct ChangesResponse {
    /// The visible changes after the cursor, oldest first.
    changes: Vec<ChangeEntry>,
    /// The cursor for the next request (the last position examined; the cursor asked with
    /// when nothing is newer).
    next: u64,
    /// Whether there may be more after `next`.
    more: bool,
}

/// The changes after `after` in the scopes the caller may reach, envelopes addressed to the
/// caller or its groups, and deletions of scopes it owned.
#[utoipa::path(
    get,
    path = "/v1/changes",
    tag = "changes",
    security(("session" = [])),
    params(ChangesQuery),
    responses(
        (status = 200, description = "A page of the feed", body = ChangesResponse),
        (status = 400, description = "bad_request: after or limit out of range", body = ErrorBody),
    )
)]
pub(crate) async fn changes<B: Backend>(
    State(state): State<Arc<AppState<B>>>,
    auth: Auth,
    ApiQuery(query): ApiQuery<ChangesQuery>,
) -> Result<Json<ChangesResponse>, ApiError> {
    let after = query.after.map_or(0, |c| c.0);
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::BadRequest("limit must be 1-1000"));
    }
    let user = auth.user;
    let page = blocking(&state, move |b| {
        Ok(b.changes(&user, after, limit as usize)?)
    })
    .await?;
    Ok(Json(ChangesResponse {
        changes: page
            .changes
            .into_iter()
            .map(|c| ChangeEntry {
                seq: c.seq,
                change: c.kind.into(),
            })
            .collect(),
        next: page.next,
        more: page.more,
    }))
}
