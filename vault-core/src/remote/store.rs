//! [`RemoteStore`]: the [`Store`] trait over the server's routes, one to one as docs/spec/
//! api.md §5.2 says ("The client's `vault_core::Store` maps one to one"), plus the scope
//! creation the server needs before a collection's or group's first write
//! (docs/spec/client.md §3).

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use reqwest::{Method, StatusCode};

use super::account::Connection;
use super::transport::{limits, Answer, Request};
use super::{hex, unhex16, RemoteError};
use crate::ids::CollectionId;
use crate::store::{ObjectAddress, PageAddress, RecordKind, Store, StoreError, Swap};

/// A [`Store`] on the server, for [`crate::Vault::open`]: made by
/// [`super::Session::store`], it acts for that session's account. Clones share the session.
///
/// Every byte it returns is untrusted; the vault verifies it. Failures come back as
/// [`StoreError`]s whose source is the [`RemoteError`] (turn a vault error into one with
/// `RemoteError::from`).
#[derive(Clone)]
pub struct RemoteStore {
    connection: Arc<Connection>,
    /// Scopes known to exist (created or used by this store), so they are created once.
    scopes: Arc<Mutex<BTreeSet<[u8; 16]>>>,
}

impl std::fmt::Debug for RemoteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteStore")
            .field("server", &self.connection.http.base())
            .finish_non_exhaustive()
    }
}

fn store_error(e: RemoteError) -> StoreError {
    StoreError::with_source(e.to_string(), e)
}

fn page_path(a: &PageAddress) -> String {
    format!(
        "/v1/collections/{}/objects/{}/versions/{}/pages/{}",
        hex(a.collection.as_bytes()),
        hex(a.object.as_bytes()),
        a.version,
        a.index
    )
}

fn object_path(a: &ObjectAddress) -> String {
    format!(
        "/v1/collections/{}/objects/{}/versions/{}",
        hex(a.collection.as_bytes()),
        hex(a.object.as_bytes()),
        a.version
    )
}

fn key_path(c: &CollectionId, epoch: u32) -> String {
    format!("/v1/collections/{}/keys/{epoch}", hex(c.as_bytes()))
}

fn manifest_path(c: &CollectionId) -> String {
    format!("/v1/collections/{}/manifest", hex(c.as_bytes()))
}

/// The route of a record and the most bytes its answer may have.
fn record_path(kind: RecordKind, key: &[u8]) -> Result<(String, usize), RemoteError> {
    match kind {
        RecordKind::Identity if key.len() == 16 => {
            Ok((format!("/v1/identities/{}", hex(key)), limits::SMALL_BLOB))
        }
        RecordKind::Envelope if key.len() == 52 => {
            let epoch = u32::from_be_bytes([key[48], key[49], key[50], key[51]]);
            Ok((
                format!(
                    "/v1/envelopes/{}/{}/{}/{epoch}",
                    hex(&key[..16]),
                    hex(&key[16..32]),
                    hex(&key[32..48])
                ),
                limits::SMALL_BLOB,
            ))
        }
        RecordKind::Roster if key.len() == 24 => {
            let mut v = [0u8; 8];
            v.copy_from_slice(&key[16..]);
            Ok((
                format!(
                    "/v1/groups/{}/rosters/{}",
                    hex(&key[..16]),
                    u64::from_be_bytes(v)
                ),
                limits::ROSTER,
            ))
        }
        _ => Err(RemoteError::InvalidConfig(
            "record key of the wrong length for its kind",
        )),
    }
}

#[derive(serde::Deserialize)]
struct Scopes {
    scopes: Vec<Scope>,
}

#[derive(serde::Deserialize)]
struct Scope {
    id: String,
    kind: String,
}

#[derive(serde::Deserialize)]
struct Envelopes {
    envelopes: Vec<EnvelopeKey>,
}

#[derive(serde::Deserialize)]
struct EnvelopeKey {
    recipient: String,
    owner: String,
    target: String,
    epoch: u32,
}

#[derive(serde::Deserialize)]
struct Versions {
    versions: Vec<u64>,
}

#[derive(serde::Deserialize)]
struct VersionAnswer {
    version: u64,
}

fn expect_success(answer: Answer) -> Result<Answer, RemoteError> {
    if answer.status.is_success() {
        Ok(answer)
    } else {
        Err(answer.error())
    }
}

impl RemoteStore {
    pub(crate) fn new(connection: Arc<Connection>) -> Self {
        Self {
            connection,
            scopes: Arc::new(Mutex::new(BTreeSet::new())),
        }
    }

    fn send(&self, request: Request<'_>) -> Result<Answer, RemoteError> {
        self.connection.send(request)
    }

    /// GET a blob: `Some` on 200, `None` on 404.
    fn get_blob(&self, path: String, limit: usize) -> Result<Option<Vec<u8>>, RemoteError> {
        let answer = self.send(Request::new(Method::GET, path, limit))?;
        match answer.status {
            StatusCode::OK => Ok(Some(answer.into_bytes())),
            StatusCode::NOT_FOUND => Ok(None),
            _ => Err(answer.error()),
        }
    }

    fn put_blob(&self, path: String, blob: &[u8]) -> Result<Answer, RemoteError> {
        self.send(Request::new(Method::PUT, path, limits::ERROR).blob(blob))
    }

    /// Creates the scope (`collections` or `groups`) `id` if this store has not seen it:
    /// `PUT /v1/{kind}/{id}` (201 new, 200 already ours; 409: another account's).
    fn ensure_scope(&self, kind: &str, id: &[u8; 16]) -> Result<(), RemoteError> {
        if self.scopes.lock().map(|s| s.contains(id)).unwrap_or(false) {
            return Ok(());
        }
        let answer = self.send(Request::new(
            Method::PUT,
            format!("/v1/{kind}/{}", hex(id)),
            limits::ERROR,
        ))?;
        expect_success(answer)?;
        if let Ok(mut scopes) = self.scopes.lock() {
            scopes.insert(*id);
        }
        Ok(())
    }

    /// After a retried write answered "already there": whether what is there now is
    /// exactly what we sent (an earlier attempt took effect and its answer was lost).
    fn is_ours(&self, path: String, limit: usize, sent: &[u8]) -> Result<bool, RemoteError> {
        Ok(self.get_blob(path, limit)?.as_deref() == Some(sent))
    }

    fn do_swap_manifest(
        &self,
        collection: &CollectionId,
        expected: u64,
        version: u64,
        manifest: &[u8],
    ) -> Result<Swap, RemoteError> {
        let path = format!(
            "{}?expected={expected}&version={version}",
            manifest_path(collection)
        );
        let answer = self.send(Request::new(Method::PUT, path, limits::ERROR).blob(manifest))?;
        if answer.status.is_success() {
            let done: VersionAnswer = answer.json()?;
            if done.version != version {
                return Err(RemoteError::Protocol(
                    "manifest swap answered another version",
                ));
            }
            return Ok(Swap::Done);
        }
        match answer.error() {
            RemoteError::Conflict { current } => {
                if answer.attempts > 1 && current == version {
                    // An earlier attempt may have swapped and lost its answer.
                    if let Some((v, stored)) = self.do_get_manifest(collection)? {
                        if v == version && stored == manifest {
                            return Ok(Swap::Done);
                        }
                    }
                }
                Ok(Swap::Conflict { current })
            }
            other => Err(other),
        }
    }

    fn do_get_manifest(
        &self,
        collection: &CollectionId,
    ) -> Result<Option<(u64, Vec<u8>)>, RemoteError> {
        let answer = self.send(Request::new(
            Method::GET,
            manifest_path(collection),
            limits::MANIFEST,
        ))?;
        match answer.status {
            StatusCode::OK => {
                let version = answer.version()?;
                Ok(Some((version, answer.into_bytes())))
            }
            StatusCode::NOT_FOUND => Ok(None),
            _ => Err(answer.error()),
        }
    }

    fn do_put_collection_key(
        &self,
        collection: &CollectionId,
        epoch: u32,
        wrapped: &[u8],
    ) -> Result<(), RemoteError> {
        let answer = self.put_blob(key_path(collection, epoch), wrapped)?;
        if answer.status == StatusCode::NOT_FOUND {
            // The collection's first key: the scope does not exist yet (api.md §5.2).
            self.ensure_scope("collections", collection.as_bytes())?;
            expect_success(self.put_blob(key_path(collection, epoch), wrapped)?)?;
            return Ok(());
        }
        expect_success(answer).map(|_| ())
    }

    fn do_list_collections(&self) -> Result<Vec<CollectionId>, RemoteError> {
        let answer = expect_success(self.send(Request::new(
            Method::GET,
            "/v1/collections".to_owned(),
            limits::JSON,
        ))?)?;
        let scopes: Scopes = answer.json()?;
        let mut out = Vec::new();
        for scope in scopes.scopes {
            if scope.kind == "collection" {
                out.push(CollectionId::from_bytes(unhex16(&scope.id)?));
            }
        }
        out.sort();
        out.dedup();
        Ok(out)
    }

    fn do_put_record(&self, kind: RecordKind, key: &[u8], value: &[u8]) -> Result<(), RemoteError> {
        if kind == RecordKind::Roster {
            // Rosters are insert-only on the server; a put of the same bytes is a success.
            return if self.do_insert_record(kind, key, value)? {
                Ok(())
            } else {
                let (path, limit) = record_path(kind, key)?;
                if self.is_ours(path, limit, value)? {
                    Ok(())
                } else {
                    Err(RemoteError::Exists)
                }
            };
        }
        let (path, _) = record_path(kind, key)?;
        expect_success(self.put_blob(path, value)?).map(|_| ())
    }

    fn do_insert_record(
        &self,
        kind: RecordKind,
        key: &[u8],
        value: &[u8],
    ) -> Result<bool, RemoteError> {
        if kind != RecordKind::Roster {
            // Only rosters are insert-only on the server (api.md §5.3).
            return Err(RemoteError::InvalidConfig(
                "insert-only records are rosters on this server",
            ));
        }
        let (path, limit) = record_path(kind, key)?;
        let mut answer = self.put_blob(path.clone(), value)?;
        if answer.status == StatusCode::NOT_FOUND && key[16..] == 1u64.to_be_bytes() {
            // A new group's first roster: the scope does not exist yet (api.md §5.3).
            let mut group = [0u8; 16];
            group.copy_from_slice(&key[..16]);
            self.ensure_scope("groups", &group)?;
            answer = self.put_blob(path.clone(), value)?;
        }
        if answer.status.is_success() {
            return Ok(true);
        }
        match answer.error() {
            RemoteError::Exists => {
                // A retried insert may meet its own first attempt.
                Ok(answer.attempts > 1 && self.is_ours(path, limit, value)?)
            }
            other => Err(other),
        }
    }

    fn do_get_record(&self, kind: RecordKind, key: &[u8]) -> Result<Option<Vec<u8>>, RemoteError> {
        let (path, limit) = record_path(kind, key)?;
        self.get_blob(path, limit)
    }

    fn do_list_records(
        &self,
        kind: RecordKind,
        prefix: &[u8],
    ) -> Result<Vec<Vec<u8>>, RemoteError> {
        if prefix.len() < 16 {
            return Err(RemoteError::InvalidConfig(
                "the server lists records by recipient or group only",
            ));
        }
        let head = &prefix[..16];
        let mut out: Vec<Vec<u8>> = match kind {
            RecordKind::Envelope => {
                let answer = expect_success(self.send(Request::new(
                    Method::GET,
                    format!("/v1/envelopes?recipient={}", hex(head)),
                    limits::JSON,
                ))?)?;
                let list: Envelopes = answer.json()?;
                let mut keys = Vec::with_capacity(list.envelopes.len());
                for e in list.envelopes {
                    let mut k = Vec::with_capacity(52);
                    k.extend_from_slice(&unhex16(&e.recipient)?);
                    k.extend_from_slice(&unhex16(&e.owner)?);
                    k.extend_from_slice(&unhex16(&e.target)?);
                    k.extend_from_slice(&e.epoch.to_be_bytes());
                    keys.push(k);
                }
                keys
            }
            RecordKind::Roster => {
                let answer = self.send(Request::new(
                    Method::GET,
                    format!("/v1/groups/{}/rosters", hex(head)),
                    limits::JSON,
                ))?;
                if answer.status == StatusCode::NOT_FOUND {
                    return Ok(Vec::new());
                }
                let list: Versions = expect_success(answer)?.json()?;
                list.versions
                    .into_iter()
                    .map(|v| {
                        let mut k = head.to_vec();
                        k.extend_from_slice(&v.to_be_bytes());
                        k
                    })
                    .collect()
            }
            _ => {
                return Err(RemoteError::InvalidConfig(
                    "the server lists envelopes and rosters only",
                ))
            }
        };
        out.retain(|k| k.starts_with(prefix));
        out.sort();
        out.dedup();
        Ok(out)
    }
}

impl Store for RemoteStore {
    fn put_page(&self, address: &PageAddress, page: &[u8]) -> Result<(), StoreError> {
        self.put_blob(page_path(address), page)
            .and_then(expect_success)
            .map(|_| ())
            .map_err(store_error)
    }

    fn get_page(&self, address: &PageAddress) -> Result<Option<Vec<u8>>, StoreError> {
        self.get_blob(page_path(address), limits::PAGE)
            .map_err(store_error)
    }

    fn put_header(&self, address: &ObjectAddress, header: &[u8]) -> Result<(), StoreError> {
        self.put_blob(object_path(address), header)
            .and_then(expect_success)
            .map(|_| ())
            .map_err(store_error)
    }

    fn get_header(&self, address: &ObjectAddress) -> Result<Option<Vec<u8>>, StoreError> {
        self.get_blob(object_path(address), limits::SMALL_BLOB)
            .map_err(store_error)
    }

    fn delete_object_version(&self, address: &ObjectAddress) -> Result<(), StoreError> {
        let answer = self
            .send(Request::new(
                Method::DELETE,
                object_path(address),
                limits::ERROR,
            ))
            .map_err(store_error)?;
        match answer.status {
            // 404: nothing this account can reach there; like the local stores, deleting
            // nothing succeeds.
            s if s.is_success() || s == StatusCode::NOT_FOUND => Ok(()),
            _ => Err(store_error(answer.error())),
        }
    }

    fn put_collection_key(
        &self,
        collection: &CollectionId,
        epoch: u32,
        wrapped: &[u8],
    ) -> Result<(), StoreError> {
        self.do_put_collection_key(collection, epoch, wrapped)
            .map_err(store_error)
    }

    fn get_collection_key(
        &self,
        collection: &CollectionId,
        epoch: u32,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        self.get_blob(key_path(collection, epoch), limits::SMALL_BLOB)
            .map_err(store_error)
    }

    fn get_manifest(
        &self,
        collection: &CollectionId,
    ) -> Result<Option<(u64, Vec<u8>)>, StoreError> {
        self.do_get_manifest(collection).map_err(store_error)
    }

    fn swap_manifest(
        &self,
        collection: &CollectionId,
        expected: u64,
        version: u64,
        manifest: &[u8],
    ) -> Result<Swap, StoreError> {
        self.do_swap_manifest(collection, expected, version, manifest)
            .map_err(store_error)
    }

    fn list_collections(&self) -> Result<Vec<CollectionId>, StoreError> {
        self.do_list_collections().map_err(store_error)
    }

    fn put_record(&self, kind: RecordKind, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.do_put_record(kind, key, value).map_err(store_error)
    }

    fn insert_record(
        &self,
        kind: RecordKind,
        key: &[u8],
        value: &[u8],
    ) -> Result<bool, StoreError> {
        self.do_insert_record(kind, key, value).map_err(store_error)
    }

    fn get_record(&self, kind: RecordKind, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.do_get_record(kind, key).map_err(store_error)
    }

    fn list_records(&self, kind: RecordKind, prefix: &[u8]) -> Result<Vec<Vec<u8>>, StoreError> {
        self.do_list_records(kind, prefix).map_err(store_error)
    }
}
