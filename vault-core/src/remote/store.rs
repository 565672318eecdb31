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
use crate::cache::{Change, ChangeFeed, ChangePage, ScopeKind};
use crate::ids::{CollectionId, ObjectId};
use crate::store::{ObjectAddress, PageAddress, RecordKind, Store, StoreError, Swap};

/// The most bytes of a change-feed answer: 1000 changes (the server's maximum per answer) of
/// at most about 300 bytes each, with room to spare.
const CHANGES_LIMIT: usize = 1024 * 1024;

/// The largest cursor the server accepts (api.md §2: counters are at most 2^53 − 1).
const MAX_CURSOR: u64 = (1 << 53) - 1;

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

#[derive(serde::Deserialize)]
struct RawChanges {
    changes: Vec<RawChange>,
    next: u64,
    more: bool,
}

/// One change as the server sends it (api.md §5.4): the fields of every kind, each
/// required by the kinds that have it. Unknown fields are ignored (a newer server may add
/// some).
#[derive(serde::Deserialize)]
struct RawChange {
    seq: u64,
    kind: String,
    scope: Option<String>,
    scope_kind: Option<String>,
    collection: Option<String>,
    object: Option<String>,
    version: Option<u64>,
    epoch: Option<u32>,
    recipient: Option<String>,
    owner: Option<String>,
    target: Option<String>,
    group: Option<String>,
}

fn field<T>(value: Option<T>) -> Result<T, RemoteError> {
    value.ok_or(RemoteError::Protocol("change without a field of its kind"))
}

fn id_field(value: Option<&String>) -> Result<[u8; 16], RemoteError> {
    unhex16(field(value)?)
}

fn scope_kind(value: Option<&String>) -> Result<ScopeKind, RemoteError> {
    match field(value)?.as_str() {
        "collection" => Ok(ScopeKind::Collection),
        "group" => Ok(ScopeKind::Group),
        _ => Err(RemoteError::Protocol("change with an unknown scope kind")),
    }
}

/// The change `raw` stands for; `None` for a kind this client does not know (skipped: a
/// newer server may add kinds). A known kind with a missing or malformed field is an error.
fn change_of(raw: &RawChange) -> Result<Option<Change>, RemoteError> {
    let change = match raw.kind.as_str() {
        "scope_created" => Change::ScopeCreated {
            scope: id_field(raw.scope.as_ref())?,
            kind: scope_kind(raw.scope_kind.as_ref())?,
        },
        "scope_deleted" => Change::ScopeDeleted {
            scope: id_field(raw.scope.as_ref())?,
            kind: scope_kind(raw.scope_kind.as_ref())?,
        },
        "manifest" => Change::Manifest {
            collection: CollectionId::from_bytes(id_field(raw.collection.as_ref())?),
            version: field(raw.version)?,
        },
        "collection_key" => Change::CollectionKey {
            collection: CollectionId::from_bytes(id_field(raw.collection.as_ref())?),
            epoch: field(raw.epoch)?,
        },
        "object_deleted" => Change::ObjectDeleted(ObjectAddress {
            collection: CollectionId::from_bytes(id_field(raw.collection.as_ref())?),
            object: ObjectId::from_bytes(id_field(raw.object.as_ref())?),
            version: field(raw.version)?,
        }),
        kind @ ("envelope" | "envelope_deleted") => {
            let mut key = [0u8; 52];
            key[..16].copy_from_slice(&id_field(raw.recipient.as_ref())?);
            key[16..32].copy_from_slice(&id_field(raw.owner.as_ref())?);
            key[32..48].copy_from_slice(&id_field(raw.target.as_ref())?);
            key[48..].copy_from_slice(&field(raw.epoch)?.to_be_bytes());
            Change::Envelope {
                key,
                deleted: kind == "envelope_deleted",
            }
        }
        "roster" => Change::Roster {
            group: id_field(raw.group.as_ref())?,
            version: field(raw.version)?,
        },
        _ => return Ok(None),
    };
    Ok(Some(change))
}

/// Turns the server's answer to `GET /v1/changes?after=…&limit=…` into a checked page.
fn parse_changes(body: RawChanges, after: u64, limit: u32) -> Result<ChangePage, RemoteError> {
    if body.next > MAX_CURSOR {
        return Err(RemoteError::Protocol("change feed cursor out of range"));
    }
    if body.changes.len() > limit as usize {
        return Err(RemoteError::Protocol(
            "change feed answered more changes than asked",
        ));
    }
    let mut page = ChangePage {
        changes: Vec::with_capacity(body.changes.len()),
        next: body.next,
        more: body.more,
        skipped: 0,
    };
    let mut last = after;
    for raw in &body.changes {
        // Positions are checked for every change, of known kinds or not.
        if raw.seq <= last || raw.seq > body.next {
            return Err(RemoteError::Protocol("change feed positions out of order"));
        }
        last = raw.seq;
        match change_of(raw)? {
            Some(change) => page.changes.push((raw.seq, change)),
            None => page.skipped += 1,
        }
    }
    page.check(after, limit).map_err(RemoteError::Protocol)?;
    Ok(page)
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

    /// The change feed (`GET /v1/changes`, docs/spec/api.md §5.4): up to `limit` (1–1000)
    /// changes after the cursor `after`, in the scopes this account may reach. The answer
    /// is read up to 1 MiB and checked strictly (docs/spec/client.md §8.3): positions
    /// strictly increasing between `after` and `next`, `next` not behind `after` and ahead
    /// of it when `more` is set, every field of a known kind present and well formed.
    /// Changes of kinds this client does not know are skipped and counted
    /// ([`ChangePage::skipped`]). [`crate::CachedStore::catch_up`] pages through it.
    pub fn changes(&self, after: u64, limit: u32) -> Result<ChangePage, RemoteError> {
        if !(1..=crate::cache::CATCH_UP_PAGE).contains(&limit) {
            return Err(RemoteError::InvalidConfig(
                "change feed limit must be 1-1000",
            ));
        }
        if after > MAX_CURSOR {
            return Err(RemoteError::InvalidConfig(
                "change feed cursor out of range",
            ));
        }
        let answer = expect_success(self.send(Request::new(
            Method::GET,
            format!("/v1/changes?after={after}&limit={limit}"),
            CHANGES_LIMIT,
        ))?)?;
        parse_changes(answer.json()?, after, limit)
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

impl ChangeFeed for RemoteStore {
    fn changes(&self, after: u64, limit: u32) -> Result<ChangePage, StoreError> {
        RemoteStore::changes(self, after, limit).map_err(store_error)
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod change_feed_tests {
    use super::*;

    const C: &str = "0101010101010101010101010101010";

    fn parse(json: &str, after: u64, limit: u32) -> Result<ChangePage, RemoteError> {
        parse_changes(serde_json::from_str(json).unwrap(), after, limit)
    }

    #[test]
    fn every_kind_parses_and_unknown_kinds_are_skipped() {
        let json = format!(
            r#"{{"changes":[
            {{"seq":3,"kind":"scope_created","scope":"{C}1","scope_kind":"collection"}},
            {{"seq":4,"kind":"manifest","collection":"{C}1","version":2}},
            {{"seq":5,"kind":"collection_key","collection":"{C}1","epoch":2}},
            {{"seq":6,"kind":"object_deleted","collection":"{C}1","object":"{C}2","version":1}},
            {{"seq":7,"kind":"envelope","recipient":"{C}3","owner":"{C}4","target":"{C}1","epoch":1}},
            {{"seq":8,"kind":"envelope_deleted","recipient":"{C}3","owner":"{C}4","target":"{C}1","epoch":1}},
            {{"seq":9,"kind":"roster","group":"{C}5","version":3,"extra":true}},
            {{"seq":10,"kind":"something_new","whatever":1}},
            {{"seq":11,"kind":"scope_deleted","scope":"{C}5","scope_kind":"group"}}
            ],"next":12,"more":true}}"#
        );
        let page = parse(&json, 2, 100).unwrap();
        assert_eq!(page.changes.len(), 8);
        assert_eq!(page.skipped, 1);
        assert_eq!((page.next, page.more), (12, true));
        let c = CollectionId::from_bytes(unhex16(&format!("{C}1")).unwrap());
        assert_eq!(
            page.changes[1],
            (
                4,
                Change::Manifest {
                    collection: c,
                    version: 2
                }
            )
        );
        assert!(matches!(
            page.changes[5].1,
            Change::Envelope { deleted: true, .. }
        ));
        assert!(matches!(
            page.changes[7].1,
            Change::ScopeDeleted {
                kind: ScopeKind::Group,
                ..
            }
        ));
        // An empty answer at the end of the feed.
        let end = parse(r#"{"changes":[],"next":2,"more":false}"#, 2, 100).unwrap();
        assert!(end.changes.is_empty());
    }

    #[test]
    fn broken_answers_are_refused() {
        for bad in [
            // A field of its kind missing, malformed (upper case, short) or of another type.
            format!(r#"{{"changes":[{{"seq":3,"kind":"manifest","collection":"{C}1"}}],"next":3,"more":false}}"#),
            format!(r#"{{"changes":[{{"seq":3,"kind":"manifest","collection":"{C}A","version":1}}],"next":3,"more":false}}"#),
            r#"{"changes":[{"seq":3,"kind":"manifest","collection":"0101","version":1}],"next":3,"more":false}"#.to_owned(),
            format!(r#"{{"changes":[{{"seq":3,"kind":"scope_created","scope":"{C}1","scope_kind":"folder"}}],"next":3,"more":false}}"#),
            // Positions: not after the cursor, out of order (even of a skipped kind), beyond next.
            format!(r#"{{"changes":[{{"seq":2,"kind":"roster","group":"{C}1","version":1}}],"next":3,"more":false}}"#),
            r#"{"changes":[{"seq":5,"kind":"new"},{"seq":4,"kind":"new"}],"next":6,"more":false}"#.to_owned(),
            format!(r#"{{"changes":[{{"seq":9,"kind":"roster","group":"{C}1","version":1}}],"next":3,"more":false}}"#),
            // The cursor going back, not moving with more, or out of the server's range.
            r#"{"changes":[],"next":1,"more":false}"#.to_owned(),
            r#"{"changes":[],"next":2,"more":true}"#.to_owned(),
            r#"{"changes":[],"next":9007199254740992,"more":false}"#.to_owned(),
        ] {
            assert!(parse(&bad, 2, 100).is_err(), "{bad}");
        }
        // More changes than asked for.
        let two =
            r#"{"changes":[{"seq":3,"kind":"new"},{"seq":4,"kind":"new"}],"next":4,"more":true}"#;
        assert!(parse(two, 2, 1).is_err());
        assert!(parse(two, 2, 2).is_ok());
    }
}
