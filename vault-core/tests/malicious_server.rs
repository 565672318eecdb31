//! End-to-end malicious-server tests (issue #7): the real client (`RemoteStore` + `Vault`)
//! talks to the real `vault-server` (in-process, sled) through a tampering HTTP proxy
//! (`tests/proxy/mod.rs`) that replays old versions, swaps, truncates, flips, drops, injects,
//! reorders and substitutes public keys in the server's answers. For every attack the client
//! must fail with the integrity error (or `KeyChanged`, or `NoAccess` where the server
//! withholds a key and access looks revoked), return no wrong data, and keep its local state
//! intact: once the attack is off a fresh read gives the right data, a refused rollback is
//! still refused later, and a substituted key was not pinned.
//!
//! One test stores names and contents carrying a marker and scans every request body
//! the proxy saw and every byte the server stored for it (UTF-8, UTF-16, hex, base64).
//! Another reads through the device's local cache (`CachedStore`) under attack and checks
//! that nothing tampered entered it (the cache then serves the object alone, offline).
//!
//! THREATS classes: C1, C2, C3, C4, C9, C10, C11, C12, C13, C14, C16, C17; invariants I1–I4.
//! The server uses a fast login verifier and the keyrings a 10-iteration KDF, as in
//! `tests/remote.rs`.
#![cfg(feature = "remote")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[allow(dead_code)]
mod proxy;

use std::collections::BTreeMap;
use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use proxy::{Proxy, Request, Response};
use rand_chacha::rand_core::{CryptoRng, RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;
use rand_core::OsRng;
use tokio::sync::oneshot;
use vault_core::remote::{Login, RemoteError, RemoteStore, Server, ServerOptions, Session};
use vault_core::{
    CollectionId, Compression, Error, GroupId, LocalState, PutOptions, Role, Store, Vault,
};
use vault_keyring::danger::{insecure_test_params, insecure_test_policy};
use vault_keyring::envelope::{self, Grant, Method, Purpose, RecipientKey};
use vault_keyring::{Keyring, KeyringId, KeyringOptions, Password};
use vault_server::api::{self, AppState, Clock};
use vault_server::auth::VerifierPolicy;
use vault_server::config::Config;
use vault_server::store::SledBackend;

// ---------------------------------------------------------------------------------------
// The world: the real server, the proxy in front of it, users.

/// The real server on 127.0.0.1 over a fresh sled directory, on its own runtime.
struct TestServer {
    runtime: Option<tokio::runtime::Runtime>,
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    dir: tempfile::TempDir,
}

impl TestServer {
    fn start() -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let backend = SledBackend::open(dir.path()).unwrap();
        let decoy = api::load_decoy_key(&backend).unwrap();
        let state = Arc::new(
            AppState::new(
                backend,
                VerifierPolicy::insecure_test_policy(1_000),
                decoy,
                Config::default(),
            )
            .with_clock(Clock::manual(1_700_000_000)),
        );
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let shutdown = async {
            let _ = stopped.await;
        };
        let task = runtime.spawn(api::serve(listener, state, shutdown));
        Self {
            runtime: Some(runtime),
            addr,
            stop: Some(stop),
            task: Some(task),
            dir,
        }
    }

    /// Stops the server and its runtime, so that sled is closed and flushed to its files.
    fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(runtime) = self.runtime.take() {
            if let Some(task) = self.task.take() {
                let _ = runtime
                    .block_on(async { tokio::time::timeout(Duration::from_secs(10), task).await });
            }
            runtime.shutdown_timeout(Duration::from_secs(10));
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop();
    }
}

struct World {
    // Field order is drop order: the client, then the proxy, then the server.
    client: Server,
    proxy: Proxy,
    server: TestServer,
}

/// One registered user with a logged-in session and a vault on the remote store.
struct User {
    id: KeyringId,
    session: Session,
    vault: Vault<RemoteStore>,
}

impl User {
    fn token(&self) -> &str {
        self.session.expose_token()
    }
}

impl World {
    fn start() -> Self {
        let server = TestServer::start();
        let proxy = Proxy::start(server.addr);
        let client = Server::connect(
            &proxy.url(),
            ServerOptions::new()
                .kdf_policy(insecure_test_policy(1_000))
                .timeout(Duration::from_secs(60)),
        )
        .unwrap();
        Self {
            client,
            proxy,
            server,
        }
    }

    fn user(&self, name: &str) -> User {
        let password = Password::from(format!("{name}'s password").as_str());
        self.client
            .register(
                name,
                &password,
                &insecure_test_params(&mut OsRng, 10),
                &KeyringOptions::new(),
            )
            .unwrap();
        let (session, keyring) = self
            .client
            .login_and_unlock(name, &password, &Login::new())
            .unwrap();
        User {
            id: keyring.id(),
            vault: Vault::open(session.store(), keyring, LocalState::in_memory()),
            session,
        }
    }

    /// Sets `rule`, runs `f`, clears the rule, and checks the rule changed something.
    fn under<T>(
        &self,
        what: &str,
        rule: impl Fn(&Request, Response) -> Response + Send + Sync + 'static,
        f: impl FnOnce() -> T,
    ) -> T {
        self.proxy.set_rule(rule);
        let out = f();
        let tampered = self.proxy.tampered();
        self.proxy.clear_rule();
        assert!(tampered > 0, "{what}: the attack was never applied");
        out
    }
}

// ---------------------------------------------------------------------------------------
// Paths of the API (docs/spec/api.md §5).

fn h(bytes: &[u8]) -> String {
    hex::encode(bytes)
}

fn manifest_path(c: &CollectionId) -> String {
    format!("/v1/collections/{}/manifest", h(c.as_bytes()))
}

fn key_path(c: &CollectionId, epoch: u32) -> String {
    format!("/v1/collections/{}/keys/{epoch}", h(c.as_bytes()))
}

fn header_path(c: &CollectionId, o: &vault_core::ObjectId, version: u64) -> String {
    format!(
        "/v1/collections/{}/objects/{}/versions/{version}",
        h(c.as_bytes()),
        h(o.as_bytes())
    )
}

fn page_path(c: &CollectionId, o: &vault_core::ObjectId, version: u64, index: u32) -> String {
    format!("{}/pages/{index}", header_path(c, o, version))
}

fn identity_path(id: &KeyringId) -> String {
    format!("/v1/identities/{}", h(id.as_bytes()))
}

fn envelope_path(recipient: &[u8], owner: &[u8], target: &[u8], epoch: u32) -> String {
    format!(
        "/v1/envelopes/{}/{}/{}/{epoch}",
        h(recipient),
        h(owner),
        h(target)
    )
}

fn rosters_path(g: &GroupId) -> String {
    format!("/v1/groups/{}/rosters", h(g.as_bytes()))
}

fn roster_path(g: &GroupId, version: u64) -> String {
    format!("{}/{version}", rosters_path(g))
}

// ---------------------------------------------------------------------------------------
// Rules.

/// Answers `GET path` with `with` (status 200, optional `Vault-Version`).
fn replace(
    path: String,
    with: Vec<u8>,
    version: Option<u64>,
) -> impl Fn(&Request, Response) -> Response + Send + Sync + 'static {
    move |q, r| {
        if q.is("GET", &path) {
            Response::blob(with.clone(), version)
        } else {
            r
        }
    }
}

/// Changes the body of a `GET path` answer.
fn mangle(
    path: String,
    f: impl Fn(&mut Vec<u8>) + Send + Sync + 'static,
) -> impl Fn(&Request, Response) -> Response + Send + Sync + 'static {
    move |q, mut r| {
        if q.is("GET", &path) && r.status == 200 {
            f(&mut r.body);
        }
        r
    }
}

/// Answers `GET path` with 404: the server "has nothing there".
fn drop_(path: String) -> impl Fn(&Request, Response) -> Response + Send + Sync + 'static {
    move |q, r| {
        if q.is("GET", &path) {
            Response::not_found()
        } else {
            r
        }
    }
}

/// Rewrites the JSON of a `GET path` listing answer.
fn relist(
    path: String,
    f: impl Fn(&mut serde_json::Value) + Send + Sync + 'static,
) -> impl Fn(&Request, Response) -> Response + Send + Sync + 'static {
    move |q, mut r| {
        if q.is("GET", &path) && r.status == 200 {
            let mut v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
            f(&mut v);
            r.body = serde_json::to_vec(&v).unwrap();
        }
        r
    }
}

fn flip(byte: usize) -> impl Fn(&mut Vec<u8>) + Send + Sync + 'static {
    move |b| {
        let i = byte.min(b.len() - 1);
        b[i] ^= 0x01;
    }
}

fn truncate_half(b: &mut Vec<u8>) {
    b.truncate(b.len() / 2);
}

fn truncate_one(b: &mut Vec<u8>) {
    b.pop();
}

fn extend_one(b: &mut Vec<u8>) {
    b.push(0);
}

// ---------------------------------------------------------------------------------------
// Assertions.

/// The operation failed with the one integrity error (THREATS I2).
fn integrity<T>(r: Result<T, Error>, what: &str) {
    match r {
        Err(Error::Integrity) => {}
        Err(e) => panic!("{what}: expected the integrity error, got {e:?}"),
        Ok(_) => panic!("{what}: the attack was not detected"),
    }
}

fn key_changed<T>(r: Result<T, Error>, who: KeyringId, what: &str) {
    match r {
        Err(Error::KeyChanged { id, .. }) if id == who => {}
        Err(e) => panic!("{what}: expected KeyChanged, got {e:?}"),
        Ok(_) => panic!("{what}: the substituted key was accepted"),
    }
}

/// Bytes that do not compress.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// 4 KiB pages, no compression: a 5-page object costs 20 KiB.
fn small_pages() -> PutOptions<'static> {
    PutOptions {
        page_size: 4096,
        compression: Compression::None,
        content_type: "",
    }
}

/// Returns `prefix` for the first bytes asked, then a seeded stream: a keyring generated
/// with it has the keyring id `prefix` and keys of its own (the server's substitute).
struct FixedPrefix {
    prefix: Vec<u8>,
    inner: ChaCha20Rng,
}

impl RngCore for FixedPrefix {
    fn next_u32(&mut self) -> u32 {
        self.inner.next_u32()
    }
    fn next_u64(&mut self) -> u64 {
        self.inner.next_u64()
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        let n = dest.len().min(self.prefix.len());
        dest[..n].copy_from_slice(&self.prefix[..n]);
        self.prefix.drain(..n);
        self.inner.fill_bytes(&mut dest[n..]);
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_chacha::rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}
impl CryptoRng for FixedPrefix {}

/// A keyring with the id `id` and fresh keys: what a server would publish to impersonate.
fn impostor(id: KeyringId, seed: u8) -> Keyring {
    let k = Keyring::generate(
        &mut FixedPrefix {
            prefix: id.as_bytes().to_vec(),
            inner: ChaCha20Rng::from_seed([seed; 32]),
        },
        &KeyringOptions::new(),
    )
    .unwrap();
    assert_eq!(k.id(), id);
    k
}

// ---------------------------------------------------------------------------------------
// C14, C16, C11, C9: the manifest.

/// **C14 rollback / replay, C16 withholding, C11 relocation, C9 bit flips** of the manifest.
/// The server answers with an older manifest (with its own or with the current
/// `Vault-Version`), the current one under a lower or higher `Vault-Version`, another
/// collection's manifest, a truncated or flipped one, or nothing (404). The owner and a
/// reader it is shared with both refuse, keep reading the version they accepted, read the
/// right data once the attack stops, and still refuse the rollback afterwards (the per-device
/// high-water mark was not lowered), also after reopening the vault from its local state.
#[test]
fn manifest_rollback_replay_and_withholding_are_refused() {
    let w = World::start();
    let alice = w.user("alice");
    let bob = w.user("bob");
    let bob_identity = alice.vault.fetch_identity(bob.id).unwrap();
    bob.vault.fetch_identity(alice.id).unwrap();

    let mut docs = alice.vault.collection("docs").unwrap();
    let mut notes = alice.vault.collection("notes").unwrap();
    notes.put("n.txt", b"a note").unwrap();
    docs.put("a.txt", b"first").unwrap();
    docs.share_with(&bob_identity).unwrap();
    let path = manifest_path(&docs.id());
    let old = w.proxy.get_ok(&path, alice.token());
    docs.put("b.txt", b"second").unwrap();
    docs.put("a.txt", b"third").unwrap();
    let cur = w.proxy.get_ok(&path, alice.token());
    let other = w.proxy.get_ok(&manifest_path(&notes.id()), alice.token());
    let (v_old, v_cur) = (old.version().unwrap(), cur.version().unwrap());
    assert!(v_old < v_cur);

    let mut shared = bob
        .vault
        .shared_collection(docs.owner(), docs.id())
        .unwrap();
    assert_eq!(shared.get("a.txt").unwrap(), b"third");

    let attacks: Vec<(&str, Box<proxy::Rule>)> = vec![
        (
            "an older manifest with its own version",
            Box::new(replace(path.clone(), old.body.clone(), Some(v_old))),
        ),
        (
            "an older manifest under the current version",
            Box::new(replace(path.clone(), old.body.clone(), Some(v_cur))),
        ),
        (
            "the current manifest under a lower version",
            Box::new(replace(path.clone(), cur.body.clone(), Some(v_cur - 1))),
        ),
        (
            "the current manifest under a higher version",
            Box::new(replace(path.clone(), cur.body.clone(), Some(v_cur + 1))),
        ),
        (
            "another collection's manifest",
            Box::new(replace(path.clone(), other.body.clone(), other.version())),
        ),
        (
            "a truncated manifest",
            Box::new(mangle(path.clone(), truncate_half)),
        ),
        (
            "a manifest one byte short",
            Box::new(mangle(path.clone(), truncate_one)),
        ),
        (
            "a manifest with a trailing byte",
            Box::new(mangle(path.clone(), extend_one)),
        ),
        (
            "a flipped bit in the manifest",
            Box::new(mangle(path.clone(), flip(40))),
        ),
        ("a withheld manifest", Box::new(drop_(path.clone()))),
    ];
    for (what, rule) in attacks {
        w.under(what, rule, || {
            integrity(docs.refresh(), what);
            integrity(alice.vault.collection("docs").map(|_| ()), what);
            integrity(shared.refresh(), what);
            integrity(
                bob.vault
                    .shared_collection(docs.owner(), docs.id())
                    .map(|_| ()),
                what,
            );
        });
        // The handles still hold the version they accepted; a fresh read is right.
        assert_eq!(docs.manifest().version, v_cur, "{what}");
        docs.refresh().unwrap();
        shared.refresh().unwrap();
        assert_eq!(docs.get("a.txt").unwrap(), b"third", "{what}");
        assert_eq!(shared.get("b.txt").unwrap(), b"second", "{what}");
        assert_eq!(docs.list().len(), 2, "{what}");
        let fresh = alice.vault.collection("docs").unwrap();
        assert_eq!(fresh.manifest().version, v_cur, "{what}");
    }

    // The rollback is still refused later, also after reopening the vaults from their local
    // state: the high-water marks were not lowered by any of the attacks.
    drop((docs, notes, shared));
    let (store, keyring, state) = alice.vault.into_parts();
    let alice_vault = Vault::open(store, keyring, state);
    let (store, keyring, state) = bob.vault.into_parts();
    let bob_vault = Vault::open(store, keyring, state);
    let docs_id = alice_vault.collection_id("docs");
    w.under(
        "the old manifest again",
        replace(path.clone(), old.body.clone(), Some(v_old)),
        || {
            integrity(alice_vault.collection("docs").map(|_| ()), "reopened owner");
            integrity(
                bob_vault
                    .shared_collection(alice_vault.id(), docs_id)
                    .map(|_| ()),
                "reopened reader",
            );
        },
    );
    let docs = alice_vault.collection("docs").unwrap();
    assert_eq!(docs.get("a.txt").unwrap(), b"third");
    let shared = bob_vault
        .shared_collection(alice_vault.id(), docs_id)
        .unwrap();
    assert_eq!(shared.get("a.txt").unwrap(), b"third");
}

// ---------------------------------------------------------------------------------------
// C9, C10, C11, C14, I1, I3: pages and headers.

/// **C10 page reorder / truncate / drop / duplicate / splice, C11 whole-object swap, C14
/// replay of an old version, C9 bit flips; I1 fail closed; I3 no oracle.** Pages of a
/// 5-page object are answered with another page of the same object (duplicate, reorder),
/// of another object of the collection, of another collection, of the object's previous
/// version, truncated, extended, flipped, forged or missing; its header is answered with
/// another object's, another collection's or the previous version's header, truncated,
/// flipped or missing. Every read fails with the integrity error; a streaming read releases
/// only bytes of pages before the tampered one, all of them right (I1); the requests the
/// client sends are the same whatever the tampering was (I3); once the attack stops, the
/// object reads back right.
#[test]
fn pages_and_headers_swapped_truncated_flipped_dropped_or_replayed_are_refused() {
    let w = World::start();
    let alice = w.user("alice");
    let token = alice.token().to_owned();
    let page = 4096usize;
    let pages = 5u32;
    let len = page * (pages as usize - 1) + 100;

    let mut docs = alice.vault.collection("docs").unwrap();
    let mut elsewhere = alice.vault.collection("elsewhere").unwrap();
    let big_v1 = noise(len, 1);
    docs.put_reader("big.bin", &mut &big_v1[..], &small_pages())
        .unwrap();
    let find = |c: &vault_core::Collection<'_, RemoteStore>, name: &str| {
        c.list().into_iter().find(|l| l.name == name).unwrap()
    };
    let v1 = find(&docs, "big.bin");
    let c = docs.id();
    let old_header = w.proxy.get_ok(&header_path(&c, &v1.id, v1.version), &token);
    let old_pages: Vec<Vec<u8>> = (0..pages)
        .map(|i| {
            w.proxy
                .get_ok(&page_path(&c, &v1.id, v1.version, i), &token)
                .body
        })
        .collect();
    // The new version replaces the old one (whose pages the server then deletes).
    let big = noise(len, 2);
    docs.put_reader("big.bin", &mut &big[..], &small_pages())
        .unwrap();
    docs.put_reader("other.bin", &mut &noise(len, 3)[..], &small_pages())
        .unwrap();
    elsewhere
        .put_reader("x.bin", &mut &noise(len, 4)[..], &small_pages())
        .unwrap();
    let obj = find(&docs, "big.bin");
    assert_eq!(obj.id, v1.id);
    assert!(obj.version > v1.version);
    let oth = find(&docs, "other.bin");
    let ext = find(&elsewhere, "x.bin");
    let e = elsewhere.id();
    let pg = |i: u32| page_path(&c, &obj.id, obj.version, i);
    let get = |p: String| w.proxy.get_ok(&p, &token).body;
    let other_page = get(page_path(&c, &oth.id, oth.version, 2));
    let elsewhere_page = get(page_path(&e, &ext.id, ext.version, 2));
    let (p1, p2) = (get(pg(1)), get(pg(2)));

    // (what, rule, index of the first page that is not what was written; None: header)
    let mut attacks: Vec<(&str, Box<proxy::Rule>, Option<usize>)> = vec![
        (
            "page 1 answered with page 0 (duplicate)",
            Box::new(replace(pg(1), get(pg(0)), None)),
            Some(1),
        ),
        (
            "pages 1 and 2 swapped (reorder)",
            Box::new({
                let (a, b) = (replace(pg(1), p2.clone(), None), replace(pg(2), p1, None));
                move |q: &Request, r: Response| b(q, a(q, r))
            }),
            Some(1),
        ),
        (
            "page 2 of another object of the collection",
            Box::new(replace(pg(2), other_page, None)),
            Some(2),
        ),
        (
            "page 2 of an object of another collection",
            Box::new(replace(pg(2), elsewhere_page, None)),
            Some(2),
        ),
        (
            "page 2 of the previous version (replay)",
            Box::new(replace(pg(2), old_pages[2].clone(), None)),
            Some(2),
        ),
        (
            "the final page of the previous version (replay)",
            Box::new(replace(pg(pages - 1), old_pages[4].clone(), None)),
            Some(4),
        ),
        (
            "page 2 truncated",
            Box::new(mangle(pg(2), truncate_half)),
            Some(2),
        ),
        (
            "page 2 one byte short",
            Box::new(mangle(pg(2), truncate_one)),
            Some(2),
        ),
        (
            "page 2 with a trailing byte",
            Box::new(mangle(pg(2), extend_one)),
            Some(2),
        ),
        (
            "a flipped bit in page 2's ciphertext",
            Box::new(mangle(pg(2), flip(2000))),
            Some(2),
        ),
        (
            "a flipped bit in page 2's tag",
            Box::new(mangle(pg(2), |b: &mut Vec<u8>| {
                let n = b.len();
                b[n - 1] ^= 0x80;
            })),
            Some(2),
        ),
        (
            "page 2 forged (random bytes of the same length)",
            Box::new(replace(pg(2), noise(p2.len(), 99), None)),
            Some(2),
        ),
        ("page 2 withheld", Box::new(drop_(pg(2))), Some(2)),
        (
            "the final page withheld (truncated object)",
            Box::new(drop_(pg(pages - 1))),
            Some(4),
        ),
        (
            "the header of another object of the collection",
            Box::new(replace(
                header_path(&c, &obj.id, obj.version),
                get(header_path(&c, &oth.id, oth.version)),
                None,
            )),
            None,
        ),
        (
            "the header of an object of another collection",
            Box::new(replace(
                header_path(&c, &obj.id, obj.version),
                get(header_path(&e, &ext.id, ext.version)),
                None,
            )),
            None,
        ),
        (
            "the header of the previous version (replay)",
            Box::new(replace(
                header_path(&c, &obj.id, obj.version),
                old_header.body.clone(),
                None,
            )),
            None,
        ),
        (
            "a truncated header",
            Box::new(mangle(header_path(&c, &obj.id, obj.version), truncate_one)),
            None,
        ),
        (
            "a flipped bit in the header",
            Box::new(mangle(header_path(&c, &obj.id, obj.version), flip(60))),
            None,
        ),
        (
            "a withheld header",
            Box::new(drop_(header_path(&c, &obj.id, obj.version))),
            None,
        ),
    ];

    // The requests each page-2 attack's streaming read sent (I3).
    let mut sequences: Vec<(String, Vec<String>)> = Vec::new();
    for (what, rule, bad) in attacks.drain(..) {
        let seen_before = w.proxy.requests().len();
        w.under(what, rule, || {
            integrity(docs.get("big.bin"), what);
            match bad {
                None => integrity(docs.open("big.bin").map(|_| ()), what),
                Some(bad) => {
                    let mut reader = docs.open("big.bin").unwrap();
                    let mut out = Vec::new();
                    let e = reader.read_to_end(&mut out).unwrap_err();
                    assert!(
                        matches!(
                            e.get_ref().and_then(|i| i.downcast_ref::<Error>()),
                            Some(Error::Integrity)
                        ),
                        "{what}: {e:?}"
                    );
                    // Only verified pages before the tampered one were released (I1).
                    assert!(
                        out.len() <= bad * page,
                        "{what}: bytes of a bad page released"
                    );
                    assert_eq!(out[..], big[..out.len()], "{what}");
                }
            }
        });
        if bad == Some(2) {
            let sent: Vec<String> = w.proxy.requests()[seen_before..]
                .iter()
                .map(|q| format!("{} {}", q.method, q.target))
                .collect();
            sequences.push((what.to_owned(), sent));
        }
        // Nothing was remembered from the attack: the object reads back right.
        assert_eq!(docs.get("big.bin").unwrap(), big, "{what}");
    }
    // I3: whatever was wrong with page 2, the client sent the same requests.
    let (first_what, first) = &sequences[0];
    for (what, sent) in &sequences[1..] {
        assert_eq!(sent, first, "I3: {what} vs {first_what}");
    }
    assert_eq!(
        alice
            .vault
            .collection("docs")
            .unwrap()
            .get("big.bin")
            .unwrap(),
        big
    );
}

// ---------------------------------------------------------------------------------------
// C4, C11, C13, C14, C16: keys, envelopes, injection.

/// **C4 forged key envelopes, C13 injection, C11 relocated keys, C14 replayed epochs, C16
/// withheld keys** (the owner's withheld key of a later epoch: see
/// `an_owners_withheld_key_of_an_accepted_epoch_is_an_integrity_failure`). The server answers Bob's envelope with Carol's (another recipient and
/// collection), relocates Bob's genuine envelope to another collection, forges envelopes
/// (signed by an impostor under Alice's id, or by a stranger), replays the epoch-1
/// envelope as epoch 2 after a rotation, adds envelopes and a collection to the listings,
/// answers a manifest and a key for a collection Alice never wrote, swaps Alice's wrapped
/// collection keys, and withholds keys and envelopes. Every read is refused (integrity; a
/// withheld envelope is `NoAccess`: the server can deny access, not fake it) and nothing
/// wrong is listed; once the attack stops every read is right.
#[test]
fn forged_relocated_replayed_and_injected_keys_and_envelopes_are_refused() {
    let w = World::start();
    let alice = w.user("alice");
    let bob = w.user("bob");
    let carol = w.user("carol");
    let bob_identity = alice.vault.fetch_identity(bob.id).unwrap();
    let carol_identity = alice.vault.fetch_identity(carol.id).unwrap();
    bob.vault.fetch_identity(alice.id).unwrap();
    carol.vault.fetch_identity(alice.id).unwrap();

    let mut project = alice.vault.collection("project").unwrap();
    project.put("plan.txt", b"the plan").unwrap();
    project.share_with(&bob_identity).unwrap();
    let mut other = alice.vault.collection("other").unwrap();
    other.put("x.txt", b"for carol").unwrap();
    other.share_with(&carol_identity).unwrap();
    let (a, p, o) = (
        *alice.id.as_bytes(),
        *project.id().as_bytes(),
        *other.id().as_bytes(),
    );
    let owner = project.owner();
    let bob_env = |t: &[u8; 16], e: u32| envelope_path(bob.id.as_bytes(), &a, t, e);
    let bob_project_1 = w.proxy.get_ok(&bob_env(&p, 1), bob.token()).body;
    let carol_other_1 = w
        .proxy
        .get_ok(
            &envelope_path(carol.id.as_bytes(), &a, &o, 1),
            carol.token(),
        )
        .body;
    let honest_incoming = bob.vault.incoming().unwrap();
    assert_eq!(honest_incoming.len(), 1);
    assert_eq!(honest_incoming[0].collection, project.id());
    let read = |what: &str| {
        let shared = bob.vault.shared_collection(owner, project.id()).unwrap();
        assert_eq!(shared.get("plan.txt").unwrap(), b"the plan", "{what}");
    };
    read("before");

    // Envelopes the server forges for Bob with the right address and grant.
    let grant = |epoch| Grant {
        purpose: Purpose::CollectionKey,
        owner: a,
        target: p,
        epoch,
    };
    let fake_alice = impostor(alice.id, 7);
    let forged_by_impostor = envelope::seal(
        &mut OsRng,
        &fake_alice,
        &RecipientKey::user(&bob_identity),
        &grant(1),
        Method::Hpke,
        &[0x42; 32],
        1_700_000_000,
    )
    .unwrap();
    let stranger = Keyring::generate(&mut OsRng, &KeyringOptions::new()).unwrap();
    let forged_by_stranger = envelope::seal(
        &mut OsRng,
        &stranger,
        &RecipientKey::user(&bob_identity),
        &grant(1),
        Method::Hpke,
        &[0x42; 32],
        1_700_000_000,
    )
    .unwrap();

    let envelope_attacks: Vec<(&str, Box<proxy::Rule>)> = vec![
        (
            "Carol's envelope of another collection for Bob's",
            Box::new(replace(bob_env(&p, 1), carol_other_1.clone(), None)),
        ),
        (
            "an envelope forged under Alice's id with other keys",
            Box::new(replace(bob_env(&p, 1), forged_by_impostor.clone(), None)),
        ),
        (
            "an envelope signed by a stranger",
            Box::new(replace(bob_env(&p, 1), forged_by_stranger.clone(), None)),
        ),
        (
            "a flipped bit in Bob's envelope",
            Box::new(mangle(bob_env(&p, 1), flip(200))),
        ),
        (
            "Bob's envelope truncated",
            Box::new(mangle(bob_env(&p, 1), truncate_one)),
        ),
    ];
    for (what, rule) in envelope_attacks {
        w.under(what, rule, || {
            integrity(
                bob.vault.shared_collection(owner, project.id()).map(|_| ()),
                what,
            );
        });
        read(what);
    }

    // C4 relocation: Bob's genuine envelope of `project` answered at `other`'s address.
    w.under(
        "Bob's envelope relocated to another collection",
        replace(bob_env(&o, 1), bob_project_1.clone(), None),
        || {
            integrity(
                bob.vault.shared_collection(owner, other.id()).map(|_| ()),
                "relocated envelope",
            );
        },
    );
    assert!(matches!(
        bob.vault.shared_collection(owner, other.id()),
        Err(Error::NoAccess)
    ));

    // C13 injection into the envelope listing: entries for envelopes that do not exist,
    // answered with a relocated, a forged and another recipient's envelope. Bob's incoming
    // list stays the honest one.
    let fake_target = [0x5a; 16];
    let bob_hex = h(bob.id.as_bytes());
    let injected = {
        let (r1, r2, r3) = (
            replace(bob_env(&o, 1), bob_project_1.clone(), None),
            replace(bob_env(&fake_target, 1), forged_by_impostor.clone(), None),
            replace(bob_env(&fake_target, 2), carol_other_1.clone(), None),
        );
        let listing = relist("/v1/envelopes".to_owned(), move |v| {
            let list = v["envelopes"].as_array_mut().unwrap();
            for (t, e) in [(o, 1), (fake_target, 1), (fake_target, 2)] {
                list.push(serde_json::json!({
                    "recipient": bob_hex,
                    "owner": h(&a),
                    "target": h(&t),
                    "epoch": e,
                }));
            }
            list.reverse();
        });
        move |q: &Request, r: Response| r3(q, r2(q, r1(q, listing(q, r))))
    };
    w.under("envelopes injected into the listing", injected, || {
        assert_eq!(bob.vault.incoming().unwrap(), honest_incoming);
    });
    // C13: a collection injected into the collection listing opens nothing.
    let fake_collection = CollectionId::from_bytes([0x77; 16]);
    w.under(
        "a collection injected into the listing",
        relist("/v1/collections".to_owned(), move |v| {
            let list = v["scopes"].as_array_mut().unwrap();
            list.push(serde_json::json!({"id": h(&[0x77; 16]), "kind": "collection"}));
            list.reverse();
        }),
        || {
            assert!(alice
                .vault
                .store()
                .list_collections()
                .unwrap()
                .contains(&fake_collection));
            assert!(matches!(
                alice.vault.shared_collection(owner, fake_collection),
                Err(Error::NoAccess)
            ));
            assert!(matches!(
                bob.vault.shared_collection(owner, fake_collection),
                Err(Error::NoAccess)
            ));
        },
    );

    // C13 / C11: a manifest (and a wrapped key) for a collection Alice never wrote, taken
    // from `project`; `project`'s key answered for `other` (keys bound to their collection).
    let never = alice.vault.collection_id("never written");
    let project_manifest = w.proxy.get_ok(&manifest_path(&project.id()), alice.token());
    let project_key = w
        .proxy
        .get_ok(&key_path(&project.id(), 1), alice.token())
        .body;
    w.under(
        "a manifest injected for a collection never written",
        replace(
            manifest_path(&never),
            project_manifest.body.clone(),
            project_manifest.version(),
        ),
        || {
            integrity(
                alice.vault.collection("never written").map(|_| ()),
                "injected manifest",
            )
        },
    );
    w.under(
        "a manifest and a key injected for a collection never written",
        {
            let (m, k) = (
                replace(
                    manifest_path(&never),
                    project_manifest.body.clone(),
                    project_manifest.version(),
                ),
                replace(key_path(&never, 1), project_key.clone(), None),
            );
            move |q: &Request, r: Response| k(q, m(q, r))
        },
        || {
            integrity(
                alice.vault.collection("never written").map(|_| ()),
                "injected key",
            )
        },
    );
    w.under(
        "another collection's wrapped key",
        replace(key_path(&other.id(), 1), project_key.clone(), None),
        || integrity(alice.vault.collection("other").map(|_| ()), "swapped key"),
    );
    w.under(
        "a withheld collection key",
        drop_(key_path(&project.id(), 1)),
        || {
            integrity(
                alice.vault.collection("project").map(|_| ()),
                "withheld key",
            )
        },
    );
    assert_eq!(
        alice
            .vault
            .collection("other")
            .unwrap()
            .get("x.txt")
            .unwrap(),
        b"for carol"
    );

    // C14: after a rotation, the epoch-1 envelope replayed as epoch 2; the epoch-2 key of
    // the owner withheld (the manifest is then under an epoch the owner "never made").
    project.rotate_key().unwrap();
    project.put("new.txt", b"epoch two").unwrap();
    w.under(
        "the epoch-1 envelope replayed as epoch 2",
        replace(bob_env(&p, 2), bob_project_1.clone(), None),
        || {
            integrity(
                bob.vault.shared_collection(owner, project.id()).map(|_| ()),
                "replayed epoch",
            )
        },
    );
    // C16: the server withholds Bob's epoch-2 envelope. It can deny access (that is
    // revocation as far as Bob can tell) but not make Bob read anything old or wrong.
    w.under(
        "Bob's epoch-2 envelope withheld",
        drop_(bob_env(&p, 2)),
        || {
            assert!(matches!(
                bob.vault.shared_collection(owner, project.id()),
                Err(Error::NoAccess)
            ));
        },
    );
    let shared = bob.vault.shared_collection(owner, project.id()).unwrap();
    assert_eq!(shared.get("new.txt").unwrap(), b"epoch two");
    assert_eq!(shared.get("plan.txt").unwrap(), b"the plan");
    assert_eq!(shared.manifest().key_epoch, 2);
}

/// **C16 withheld key, I2 one error shape — FINDING, fails today.** After a rotation the
/// owner's device accepted the manifest of epoch 2; the server then withholds the owner's
/// own wrapped key of epoch 2. Nothing wrong is read, but the owner's device reports
/// `NoAccess` ("not shared with this user") instead of the integrity error: an owner's key
/// cannot be revoked, only lost or withheld by the server, which THREATS C16 says must be
/// refused as tampering (a fresh device of the owner does report the integrity error).
/// The fix is in `vault-core/src/vault.rs`, `Vault::remembered`: when `owner` is this vault,
/// a missing key of the remembered epoch is `integrity(..)`, not `NoAccess`.
#[test]
fn an_owners_withheld_key_of_an_accepted_epoch_is_an_integrity_failure() {
    let w = World::start();
    let alice = w.user("alice");
    let mut project = alice.vault.collection("project").unwrap();
    project.put("plan.txt", b"the plan").unwrap();
    project.rotate_key().unwrap();
    project.put("new.txt", b"epoch two").unwrap();
    let id = project.id();
    // A fresh device of the owner refuses it as tampering.
    let (session, keyring) = w
        .client
        .login_and_unlock("alice", &Password::from("alice's password"), &Login::new())
        .unwrap();
    let fresh = Vault::open(session.store(), keyring, LocalState::in_memory());
    w.under(
        "the owner's epoch-2 key withheld (fresh device)",
        drop_(key_path(&id, 2)),
        || integrity(fresh.collection("project").map(|_| ()), "fresh device"),
    );
    // The device that accepted epoch 2 must refuse it the same way.
    w.under(
        "the owner's epoch-2 key withheld",
        drop_(key_path(&id, 2)),
        || {
            // (An open handle holds the key already and reads on: nothing to refuse.)
            project.refresh().unwrap();
            integrity(alice.vault.collection("project").map(|_| ()), "reopen");
        },
    );
    assert_eq!(
        alice
            .vault
            .collection("project")
            .unwrap()
            .get("new.txt")
            .unwrap(),
        b"epoch two"
    );
}

// ---------------------------------------------------------------------------------------
// C16: writes acknowledged and dropped.

/// **C16 silent deletion / withholding, C15 fork.** The server acknowledges writes it never
/// stores: a page upload answered `204`, a manifest swap answered `200 {version}` without
/// reaching the server. The lost page is refused as an integrity failure when read (the
/// other objects read right); the lost manifest version is refused by the device that wrote
/// it (the server went back below what it accepted), also after the server lets another
/// device commit a different manifest under the same version (a fork). The server can drop
/// data; it cannot hide that it did.
#[test]
fn writes_the_server_acknowledges_but_drops_are_detected() {
    let w = World::start();
    let alice = w.user("alice");
    let mut docs = alice.vault.collection("docs").unwrap();
    docs.put("a.txt", b"kept").unwrap();

    // A page the server says it stored.
    w.proxy.set_swallow(|q| {
        (q.method == "PUT" && q.path().contains("/pages/")).then(|| Response {
            status: 204,
            headers: Vec::new(),
            body: Vec::new(),
        })
    });
    docs.put("lost-page.txt", b"never stored").unwrap();
    assert!(w.proxy.tampered() > 0);
    w.proxy.clear_rule();
    integrity(docs.get("lost-page.txt"), "a dropped page");
    assert_eq!(docs.get("a.txt").unwrap(), b"kept");

    // A manifest swap the server says it did.
    w.proxy.set_swallow(|q| {
        if q.method != "PUT" || !q.path().ends_with("/manifest") {
            return None;
        }
        let version = q.target.split("version=").nth(1)?.split('&').next()?;
        Some(Response::json(
            200,
            format!("{{\"version\":{version}}}").into_bytes(),
        ))
    });
    docs.put("lost-manifest.txt", b"never committed").unwrap();
    assert!(w.proxy.tampered() > 0);
    w.proxy.clear_rule();
    let lost = docs.manifest().version;
    integrity(docs.refresh(), "a dropped manifest version");
    integrity(
        alice.vault.collection("docs").map(|_| ()),
        "a dropped manifest version",
    );

    // Another device sees the server's state and commits its own version `lost`: to the
    // first device that is a fork of the version it accepted.
    let (session, keyring) = w
        .client
        .login_and_unlock("alice", &Password::from("alice's password"), &Login::new())
        .unwrap();
    let other = Vault::open(session.store(), keyring, LocalState::in_memory());
    let mut docs_b = other.collection("docs").unwrap();
    assert_eq!(docs_b.get("a.txt").unwrap(), b"kept");
    docs_b.put("b.txt", b"from b").unwrap();
    assert_eq!(docs_b.manifest().version, lost);
    integrity(docs.refresh(), "a fork of an accepted version");
    integrity(
        alice.vault.collection("docs").map(|_| ()),
        "a fork of an accepted version",
    );
}

// ---------------------------------------------------------------------------------------
// C2, C3, I4: public keys.

/// **C2 own-key substitution, C3 recipient key substitution, I4 no wrapping to unverified
/// keys.** The directory answers Bob's identity with a bundle under Bob's id with the
/// server's keys, or with Carol's bundle; and Alice's own identity with an impostor's. The
/// pinned key wins: `KeyChanged` (or integrity for another id), no envelope is sent while the
/// substitute is offered, the substitute is not pinned, Alice's own public key never comes
/// from the server (her sharing keeps working and Bob, who pinned her, still reads), and
/// once the attack stops the pins are the genuine fingerprints.
#[test]
fn substituted_public_keys_are_key_changed_and_get_nothing() {
    let w = World::start();
    let alice = w.user("alice");
    let bob = w.user("bob");
    let carol = w.user("carol");
    let bob_real = alice.vault.fetch_identity(bob.id).unwrap();
    bob.vault.fetch_identity(alice.id).unwrap();
    let carol_bundle = alice.vault.fetch_identity(carol.id).unwrap();
    let fake_bob = impostor(bob.id, 11).identity_bundle(&mut OsRng);
    let fake_alice = impostor(alice.id, 12).identity_bundle(&mut OsRng);
    let mut docs = alice.vault.collection("docs").unwrap();
    docs.put("d.txt", b"data").unwrap();

    let envelopes_sent = |from: usize| {
        w.proxy.requests()[from..]
            .iter()
            .filter(|q| q.method == "PUT" && q.path().starts_with("/v1/envelopes/"))
            .count()
    };

    // C3: a new key under Bob's id.
    let start = w.proxy.requests().len();
    let fake = fake_bob.clone();
    w.under(
        "Bob's identity substituted",
        replace(identity_path(&bob.id), fake_bob.to_bytes(), None),
        || {
            match alice.vault.fetch_identity(bob.id) {
                Err(Error::KeyChanged {
                    id,
                    pinned,
                    offered,
                }) => {
                    assert_eq!(id, bob.id);
                    assert_eq!(pinned, bob_real.fingerprint());
                    assert_eq!(offered, fake.fingerprint());
                }
                other => panic!("expected KeyChanged, got {:?}", other.map(|_| ())),
            }
            // The session's directory call verifies the self-signature and the id only; the
            // caller pins (client.md): it is the substitute, and sharing with it is refused.
            let offered = alice.session.identity(bob.id).unwrap();
            assert_eq!(offered.fingerprint(), fake.fingerprint());
            key_changed(
                docs.share_with(&offered),
                bob.id,
                "share with the substitute",
            );
        },
    );
    // I4: nothing was wrapped to the substitute (no envelope even reached the server).
    assert_eq!(envelopes_sent(start), 0);
    assert_eq!(
        alice.vault.pinned_fingerprint(&bob.id).unwrap(),
        Some(bob_real.fingerprint())
    );
    assert!(docs.shares().is_empty());

    // C3: another user's genuine bundle answered for Bob.
    w.under(
        "Carol's identity answered for Bob's",
        replace(identity_path(&bob.id), carol_bundle.to_bytes(), None),
        || {
            integrity(alice.vault.fetch_identity(bob.id).map(|_| ()), "other id");
            assert!(matches!(
                alice.session.identity(bob.id),
                Err(RemoteError::Integrity)
            ));
        },
    );
    // C3: a flipped bit in Bob's bundle breaks its self-signature.
    w.under(
        "a flipped bit in Bob's identity",
        mangle(identity_path(&bob.id), flip(100)),
        || {
            assert!(alice.vault.fetch_identity(bob.id).is_err());
        },
    );
    assert_eq!(
        alice.vault.pinned_fingerprint(&bob.id).unwrap(),
        Some(bob_real.fingerprint())
    );

    // C2: Alice's own identity substituted in the directory. Her client never takes her
    // public keys from the server: her vault keeps its own identity, refuses the substitute
    // as a changed key, and shares with Bob as usual; Bob (who pinned Alice) refuses it too
    // and still reads what she shares.
    let start = w.proxy.requests().len();
    w.under(
        "Alice's own identity substituted",
        replace(identity_path(&alice.id), fake_alice.to_bytes(), None),
        || {
            key_changed(alice.vault.fetch_identity(alice.id), alice.id, "own key");
            key_changed(
                bob.vault.fetch_identity(alice.id),
                alice.id,
                "Bob's pin of Alice",
            );
            assert_eq!(
                alice.vault.identity().fingerprint(),
                alice.vault.keyring().fingerprint()
            );
            // A fresh login and vault do not read the published bundle either.
            let (session, keyring) = w
                .client
                .login_and_unlock("alice", &Password::from("alice's password"), &Login::new())
                .unwrap();
            let again = Vault::open(session.store(), keyring, LocalState::in_memory());
            assert_eq!(
                again.identity().fingerprint(),
                alice.vault.identity().fingerprint()
            );
            docs.share_with(&bob_real).unwrap();
            let shared = bob
                .vault
                .shared_collection(docs.owner(), docs.id())
                .unwrap();
            assert_eq!(shared.get("d.txt").unwrap(), b"data");
        },
    );
    // The envelopes sent went to Bob's pinned key only, signed by Alice's own key.
    assert!(envelopes_sent(start) > 0);
    assert_eq!(
        bob.vault.pinned_fingerprint(&alice.id).unwrap(),
        Some(alice.vault.identity().fingerprint())
    );
    assert_eq!(
        alice.vault.fetch_identity(bob.id).unwrap().fingerprint(),
        bob_real.fingerprint()
    );
    assert_eq!(
        bob.vault.fetch_identity(alice.id).unwrap().fingerprint(),
        alice.vault.identity().fingerprint()
    );
}

// ---------------------------------------------------------------------------------------
// C17, C14, C3, C4: groups.

/// **C17 roster injection, C14 roster rollback / replay, C3 key substitution of a roster
/// signer, C4 group envelopes swapped.** Bob, a member, accepted roster version 3. The
/// server hides version 3 from the listing or empties it, answers version 3 with version
/// 2's bytes (a fork), flips a bit, lists a version 4 answered with version 3's bytes, with
/// a forged roster, or not at all, and substitutes the identity of Carol (an admin Bob never
/// pinned) when she signs version 4; and answers the group's envelope of one collection
/// with the group's envelope of another. Each is refused; reordered listings change
/// nothing; once the attack stops, Bob accepts version 4 signed by the genuine Carol and
/// reads the group's collection.
#[test]
fn rosters_rolled_back_forked_injected_or_signed_by_a_substituted_key_are_refused() {
    let w = World::start();
    let alice = w.user("alice");
    let bob = w.user("bob");
    let carol = w.user("carol");
    let bob_identity = alice.vault.fetch_identity(bob.id).unwrap();
    let carol_identity = alice.vault.fetch_identity(carol.id).unwrap();
    bob.vault.fetch_identity(alice.id).unwrap();
    carol.vault.fetch_identity(alice.id).unwrap();

    let mut team = alice.vault.create_group().unwrap();
    let g = team.id();
    team.add_member(&bob_identity, Role::Member).unwrap();
    team.add_member(&carol_identity, Role::Admin).unwrap();
    let mut notes = alice.vault.collection("team notes").unwrap();
    notes.put("minutes.txt", b"we met").unwrap();
    notes.share_with_group(g).unwrap();
    let mut plans = alice.vault.collection("team plans").unwrap();
    plans.put("p.txt", b"plans").unwrap();
    plans.share_with_group(g).unwrap();

    assert_eq!(bob.vault.group(g).unwrap().roster().version(), 3);
    let via_group = bob.vault.incoming().unwrap();
    assert_eq!(via_group.len(), 2);
    let owner = notes.owner();
    assert_eq!(
        bob.vault
            .shared_collection(owner, notes.id())
            .unwrap()
            .get("minutes.txt")
            .unwrap(),
        b"we met"
    );
    let v2 = w.proxy.get_ok(&roster_path(&g, 2), bob.token()).body;
    let v3 = w.proxy.get_ok(&roster_path(&g, 3), bob.token()).body;

    let attacks: Vec<(&str, Box<proxy::Rule>)> = vec![
        (
            "version 3 hidden from the listing (rollback)",
            Box::new(relist(rosters_path(&g), |v| {
                v["versions"].as_array_mut().unwrap().retain(|x| x != 3);
            })),
        ),
        (
            "an empty roster listing",
            Box::new(relist(rosters_path(&g), |v| {
                v["versions"].as_array_mut().unwrap().clear();
            })),
        ),
        (
            "version 3 answered with version 2 (fork)",
            Box::new(replace(roster_path(&g, 3), v2.clone(), None)),
        ),
        (
            "a flipped bit in version 3",
            Box::new(mangle(roster_path(&g, 3), flip(50))),
        ),
        (
            "version 4 listed and answered with version 3 (replay)",
            Box::new({
                let (l, r) = (
                    relist(rosters_path(&g), |v| {
                        v["versions"].as_array_mut().unwrap().push(4.into());
                    }),
                    replace(roster_path(&g, 4), v3.clone(), None),
                );
                move |q: &Request, a: Response| r(q, l(q, a))
            }),
        ),
        (
            "version 4 listed and forged",
            Box::new({
                let (l, r) = (
                    relist(rosters_path(&g), |v| {
                        v["versions"].as_array_mut().unwrap().push(4.into());
                    }),
                    // Version 3's first bytes (format and group), then forged bytes.
                    replace(
                        roster_path(&g, 4),
                        [&v3[..20], &noise(v3.len() - 20, 5)[..]].concat(),
                        None,
                    ),
                );
                move |q: &Request, a: Response| r(q, l(q, a))
            }),
        ),
        (
            "version 4 listed but withheld",
            Box::new(relist(rosters_path(&g), |v| {
                v["versions"].as_array_mut().unwrap().push(4.into());
            })),
        ),
    ];
    for (what, rule) in attacks {
        w.under(what, rule, || {
            integrity(bob.vault.group(g).map(|_| ()), what);
        });
        assert_eq!(bob.vault.group(g).unwrap().roster().version(), 3, "{what}");
    }

    // Reordered listings change nothing.
    w.under(
        "reordered roster and envelope listings",
        {
            let (l1, l2) = (
                relist(rosters_path(&g), |v| {
                    v["versions"].as_array_mut().unwrap().reverse();
                }),
                relist("/v1/envelopes".to_owned(), |v| {
                    v["envelopes"].as_array_mut().unwrap().reverse();
                }),
            );
            move |q: &Request, a: Response| l2(q, l1(q, a))
        },
        || {
            assert_eq!(bob.vault.group(g).unwrap().roster().version(), 3);
            let mut seen = bob.vault.incoming().unwrap();
            let mut want = via_group.clone();
            seen.sort_by_key(|i| i.collection);
            want.sort_by_key(|i| i.collection);
            assert_eq!(seen, want);
        },
    );

    // C4: the group's envelope of `notes` answered with the group's envelope of `plans`.
    let group_env =
        |t: &CollectionId| envelope_path(g.as_bytes(), owner.as_bytes(), t.as_bytes(), 1);
    let plans_env = w.proxy.get_ok(&group_env(&plans.id()), bob.token()).body;
    w.under(
        "the group's envelope of another collection",
        replace(group_env(&notes.id()), plans_env, None),
        || {
            integrity(
                bob.vault.shared_collection(owner, notes.id()).map(|_| ()),
                "group envelope swapped",
            )
        },
    );

    // C3 through the roster: Carol (an admin Bob never pinned) signs version 4. Bob trusts
    // her key only if the directory's bundle has the fingerprint Alice listed for her.
    carol.vault.fetch_identity(bob.id).unwrap();
    let mut carol_team = carol.vault.group(g).unwrap();
    carol_team.set_role(&bob.id, Role::Admin).unwrap();
    assert_eq!(bob.vault.pinned_fingerprint(&carol.id).unwrap(), None);
    let fake_carol = impostor(carol.id, 13).identity_bundle(&mut OsRng);
    let fake_fp = fake_carol.fingerprint();
    w.under(
        "Carol's identity substituted when she signs version 4",
        replace(identity_path(&carol.id), fake_carol.to_bytes(), None),
        || integrity(bob.vault.group(g).map(|_| ()), "substituted roster signer"),
    );
    assert_ne!(
        bob.vault.pinned_fingerprint(&carol.id).unwrap(),
        Some(fake_fp)
    );
    let group = bob.vault.group(g).unwrap();
    assert_eq!(group.roster().version(), 4);
    assert!(group.roster().is_admin(&bob.id));
    assert_eq!(
        bob.vault
            .shared_collection(owner, notes.id())
            .unwrap()
            .get("minutes.txt")
            .unwrap(),
        b"we met"
    );
}

// ---------------------------------------------------------------------------------------
// C1: the keyring.

/// **C1 keyring blob tampering, C14 keyring replay.** The server answers the sealed keyring
/// with a flipped bit, truncated, with another user's keyring, or (after a password
/// change) with the old keyring. Login with unlock fails (integrity or the one
/// authentication error) and no keyring is returned; afterwards it works.
#[test]
fn tampered_or_replayed_keyrings_are_refused() {
    let w = World::start();
    let alice = w.user("alice");
    let bob = w.user("bob");
    let path = "/v1/account/keyring".to_owned();
    let old = w.proxy.get_ok(&path, alice.token());
    let bobs = w.proxy.get_ok(&path, bob.token());
    let password = Password::from("alice's password");
    let refused = |what: &str, password: &Password| match w.client.login_and_unlock(
        "alice",
        password,
        &Login::new(),
    ) {
        Err(RemoteError::Integrity) | Err(RemoteError::AuthenticationFailed) => {}
        Err(e) => panic!("{what}: unexpected error {e:?}"),
        Ok(_) => panic!("{what}: a tampered keyring was accepted"),
    };
    let attacks: Vec<(&str, Box<proxy::Rule>)> = vec![
        ("a flipped bit", Box::new(mangle(path.clone(), flip(300)))),
        ("truncated", Box::new(mangle(path.clone(), truncate_one))),
        (
            "another user's keyring",
            Box::new(replace(path.clone(), bobs.body.clone(), bobs.version())),
        ),
    ];
    for (what, rule) in attacks {
        w.under(what, rule, || refused(what, &password));
        w.client
            .login_and_unlock("alice", &password, &Login::new())
            .unwrap();
    }
    let new_password = Password::from("alice's new password");
    alice
        .session
        .change_password(
            &password,
            &new_password,
            &insecure_test_params(&mut OsRng, 10),
        )
        .unwrap();
    w.under(
        "the keyring before the password change (replay)",
        replace(path.clone(), old.body.clone(), old.version()),
        || refused("replayed keyring", &new_password),
    );
    let (_, keyring) = w
        .client
        .login_and_unlock("alice", &new_password, &Login::new())
        .unwrap();
    assert_eq!(keyring.id(), alice.id);
}

// ---------------------------------------------------------------------------------------
// C12, C25: what the server sees.

const MARKER: &str = "MARKER-7f3a9c-secret";

/// The encodings of `marker` searched for: (name, bytes).
fn needles(marker: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut out = vec![("utf-8".to_owned(), marker.to_vec())];
    let s = std::str::from_utf8(marker).unwrap();
    out.push((
        "utf-16le".to_owned(),
        s.encode_utf16().flat_map(u16::to_le_bytes).collect(),
    ));
    out.push((
        "utf-16be".to_owned(),
        s.encode_utf16().flat_map(u16::to_be_bytes).collect(),
    ));
    out.push(("hex".to_owned(), hex::encode(marker).into_bytes()));
    out.push(("HEX".to_owned(), hex::encode_upper(marker).into_bytes()));
    for (name, enc) in [
        ("base64", &data_encoding::BASE64_NOPAD),
        ("base64url", &data_encoding::BASE64URL_NOPAD),
    ] {
        for k in 0..3usize {
            // The marker after k other bytes: keep only the characters made of marker bits.
            let mut input = vec![0u8; k];
            input.extend_from_slice(marker);
            let text = enc.encode(&input);
            let (from_bit, to_bit) = (8 * k, 8 * (k + marker.len()));
            let first = from_bit.div_ceil(6);
            let last = to_bit / 6; // exclusive: characters whose 6 bits end by to_bit
            out.push((format!("{name}/{k}"), text.as_bytes()[first..last].to_vec()));
        }
    }
    out
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// The encodings of the marker found in `bytes`.
fn found(bytes: &[u8], needles: &[(String, Vec<u8>)]) -> Vec<String> {
    needles
        .iter()
        .filter(|(_, n)| contains(bytes, n))
        .map(|(name, _)| name.clone())
        .collect()
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// **C12 metadata, C25 what the server sees; issue #7's marker test.** Alice stores objects
/// (a blob of several pages, a record table) whose names, contents, content type and
/// collection name carry a marker, shares the collection with Bob, who reads everything.
/// No request the proxy saw (head and body) and no byte of the server's data directory (sled
/// files and pack files, after a clean stop) contains the marker in UTF-8, UTF-16LE/BE, hex,
/// or base64 (standard and URL-safe, at all three alignments). The scan itself is checked:
/// control files planted in the data directory with the marker in each encoding are found.
#[test]
fn no_marker_reaches_the_server_in_any_encoding() {
    let mut w = World::start();
    let alice = w.user("alice");
    let bob = w.user("bob");
    let bob_identity = alice.vault.fetch_identity(bob.id).unwrap();
    bob.vault.fetch_identity(alice.id).unwrap();

    let name = format!("{MARKER} collection");
    let content = format!("top {MARKER} secret {MARKER} content\n").repeat(300);
    let content_type = format!("text/plain; note={MARKER}");
    let mut records = BTreeMap::new();
    for i in 0..20u8 {
        records.insert(
            format!("{MARKER}-key-{i}").into_bytes(),
            format!("{MARKER}-value-{i}").into_bytes(),
        );
    }
    let mut c = alice.vault.collection(&name).unwrap();
    c.put(&format!("{MARKER}.txt"), content.as_bytes()).unwrap();
    c.put_reader(
        &format!("dir/{MARKER}/uncompressed.txt"),
        &mut content.as_bytes(),
        &PutOptions {
            page_size: 4096,
            compression: Compression::None,
            content_type: &content_type,
        },
    )
    .unwrap();
    c.put_records(
        &format!("{MARKER}-records"),
        &records,
        &PutOptions::records(),
    )
    .unwrap();
    c.share_with(&bob_identity).unwrap();
    let shared = bob.vault.shared_collection(c.owner(), c.id()).unwrap();
    assert_eq!(
        shared.get(&format!("{MARKER}.txt")).unwrap(),
        content.as_bytes()
    );
    assert_eq!(
        shared
            .get(&format!("dir/{MARKER}/uncompressed.txt"))
            .unwrap(),
        content.as_bytes()
    );
    assert_eq!(
        shared
            .meta(&format!("dir/{MARKER}/uncompressed.txt"))
            .unwrap()
            .content_type,
        content_type
    );
    assert_eq!(
        shared.records(&format!("{MARKER}-records")).unwrap(),
        records
    );
    assert!(shared.list().iter().all(|l| l.name.contains(MARKER)));

    let needles = needles(MARKER.as_bytes());
    // (a) every request the server received.
    let requests = w.proxy.requests();
    assert!(requests.len() > 20);
    for q in &requests {
        let hits = found(&q.raw, &needles);
        assert!(
            hits.is_empty(),
            "{} {} carries the marker as {hits:?}",
            q.method,
            q.target
        );
    }
    // Every answer too (it is what the server holds).
    for (q, a) in w.proxy.answers() {
        let hits = found(&a.body, &needles);
        assert!(
            hits.is_empty(),
            "the answer to {} {} carries the marker as {hits:?}",
            q.method,
            q.target
        );
    }

    // (b) every byte the server stored, after a clean stop (sled flushed and closed).
    drop((c, shared));
    drop((alice, bob));
    w.server.stop();
    let dir = w.server.dir.path().to_owned();
    let files = files_under(&dir);
    let total: u64 = files
        .iter()
        .map(|f| std::fs::metadata(f).unwrap().len())
        .sum();
    assert!(
        files
            .iter()
            .any(|f| f.extension().is_some_and(|e| e == "pack")),
        "no pack file in {files:?}"
    );
    assert!(
        total > 10_000,
        "the data directory holds only {total} bytes"
    );
    for f in &files {
        let hits = found(&std::fs::read(f).unwrap(), &needles);
        assert!(
            hits.is_empty(),
            "{} carries the marker as {hits:?}",
            f.display()
        );
    }

    // The scan finds what it looks for: one control file per encoding, the marker embedded
    // among other bytes (base64 of other bytes + marker + other bytes, at each alignment).
    let controls = dir.join("controls");
    std::fs::create_dir(&controls).unwrap();
    let marker = MARKER.as_bytes();
    let wrap = |mid: &[u8]| [noise(37, 8), mid.to_vec(), noise(41, 9)].concat();
    let s = MARKER;
    let mut planted: Vec<(String, Vec<u8>)> = vec![
        ("utf-8".into(), wrap(marker)),
        (
            "utf-16le".into(),
            wrap(
                &s.encode_utf16()
                    .flat_map(u16::to_le_bytes)
                    .collect::<Vec<u8>>(),
            ),
        ),
        (
            "utf-16be".into(),
            wrap(
                &s.encode_utf16()
                    .flat_map(u16::to_be_bytes)
                    .collect::<Vec<u8>>(),
            ),
        ),
        ("hex".into(), wrap(hex::encode(marker).as_bytes())),
        ("HEX".into(), wrap(hex::encode_upper(marker).as_bytes())),
    ];
    for (name, enc) in [
        ("base64", &data_encoding::BASE64),
        ("base64url", &data_encoding::BASE64URL),
    ] {
        for k in 0..3usize {
            let input = [noise(k, 10 + k as u64), marker.to_vec(), noise(5, 20)].concat();
            planted.push((format!("{name}/{k}"), wrap(enc.encode(&input).as_bytes())));
        }
    }
    for (i, (_, bytes)) in planted.iter().enumerate() {
        std::fs::write(controls.join(format!("control-{i}")), bytes).unwrap();
    }
    for f in files_under(&dir) {
        let hits = found(&std::fs::read(&f).unwrap(), &needles);
        match f.strip_prefix(&controls) {
            Ok(rel) => {
                let i: usize = rel.to_str().unwrap()["control-".len()..].parse().unwrap();
                let want = &planted[i].0;
                assert!(hits.contains(want), "control {want} not found ({hits:?})");
            }
            Err(_) => assert!(hits.is_empty(), "{}: {hits:?}", f.display()),
        }
    }
}

/// **Large transfers resume page by page after dropped connections** (issue #7). A 12-page
/// object is uploaded while the connection drops: before the server saw a page (page 1),
/// after it stored one but before the answer (page 3), and after the manifest swap was done
/// but before its answer; then downloaded while the connection drops before an answer
/// (page 4) and in the middle of one (page 2). Both transfers succeed with the exact bytes,
/// and only the cut requests were sent again (the transfer resumed where it broke, it did not
/// start over); the lost swap answer is recognised as our own swap, not a conflict.
#[test]
fn large_transfers_resume_page_by_page_after_dropped_connections() {
    use std::collections::{BTreeSet, HashMap};
    use std::sync::Mutex;

    let w = World::start();
    let alice = w.user("alice");
    let mut docs = alice.vault.collection("docs").unwrap();
    docs.put("small.txt", b"first").unwrap();
    let c = docs.id();
    let prefix = format!("/v1/collections/{}/", h(c.as_bytes()));
    let data = noise(4096 * 11 + 777, 9);

    // Each path is cut once (its first request); the retry goes through.
    let cut_once = Arc::new(Mutex::new(BTreeSet::<String>::new()));
    let first = |cut: &Arc<Mutex<BTreeSet<String>>>, path: &str| {
        cut.lock().unwrap().insert(path.to_owned())
    };
    let is_page = move |q: &Request, method: &str, index: u32| {
        q.method == method
            && q.path().starts_with(&prefix)
            && q.path().ends_with(&format!("/pages/{index}"))
    };
    {
        let (cut, is_page) = (cut_once.clone(), is_page.clone());
        w.proxy.set_swallow(move |q| {
            (is_page(q, "PUT", 1) && first(&cut, q.path())).then(|| Response {
                status: proxy::CUT,
                headers: Vec::new(),
                body: Vec::new(),
            })
        });
    }
    {
        let (cut, is_page, manifest) = (cut_once.clone(), is_page.clone(), manifest_path(&c));
        w.proxy.set_rule(move |q, mut r| {
            let swap = q.method == "PUT" && q.path() == manifest;
            if (is_page(q, "PUT", 3) || swap) && first(&cut, q.path()) {
                r.status = proxy::CUT;
            }
            r
        });
    }
    docs.put_reader("big.bin", &mut &data[..], &small_pages())
        .unwrap();
    assert!(w.proxy.tampered() >= 3, "the cuts were not applied");
    w.proxy.clear_rule();

    let listing = docs
        .list()
        .into_iter()
        .find(|l| l.name == "big.bin")
        .unwrap();
    assert_eq!(listing.size, data.len() as u64);
    let big_pages = format!(
        "/objects/{}/versions/{}/pages/",
        h(listing.id.as_bytes()),
        listing.version
    );
    let puts: HashMap<String, usize> = w
        .proxy
        .requests()
        .iter()
        .filter(|q| q.method == "PUT" && q.path().contains(&big_pages))
        .fold(HashMap::new(), |mut m, q| {
            *m.entry(q.path().to_owned()).or_default() += 1;
            m
        });
    assert_eq!(puts.len(), 12);
    for (path, n) in &puts {
        let cut = path.ends_with("/pages/1") || path.ends_with("/pages/3");
        assert_eq!(*n, if cut { 2 } else { 1 }, "{path} sent {n} times");
    }
    // The lost answer of our own swap did not turn into a conflict (no conflict copy).
    assert_eq!(docs.list().len(), 2);

    // Download with two cuts.
    let before = w.proxy.requests().len();
    {
        let (cut, is_page) = (cut_once.clone(), is_page.clone());
        w.proxy.set_rule(move |q, mut r| {
            if is_page(q, "GET", 2) && first(&cut, q.path()) {
                r.status = proxy::CUT_MID_BODY;
            } else if is_page(q, "GET", 4) && first(&cut, q.path()) {
                r.status = proxy::CUT;
            }
            r
        });
    }
    let mut back = Vec::new();
    docs.open("big.bin")
        .unwrap()
        .read_to_end(&mut back)
        .unwrap();
    assert!(
        w.proxy.tampered() >= 2,
        "the download cuts were not applied"
    );
    w.proxy.clear_rule();
    assert_eq!(back, data);
    let gets: Vec<String> = w.proxy.requests()[before..]
        .iter()
        .filter(|q| q.method == "GET" && q.path().contains(&big_pages))
        .map(|q| q.path().to_owned())
        .collect();
    // 12 pages, two of them twice: resumed at the cut page, not from the start.
    assert_eq!(gets.len(), 14, "{gets:?}");
}

// ---------------------------------------------------------------------------------------
// The device's cache under attack (client.md §8.1).

/// **Cache poisoning (C9–C11, C14 through the cache; I2).** A second device of Alice reads
/// through its local cache (`CachedStore`) while the server answers a duplicated, replayed,
/// flipped, truncated and forged page, another object's and a replayed header, and a
/// rolled-back, flipped and relocated manifest. Every read is refused, and after each attack
/// every page and header the cache answers for the object is the honest one and the cached
/// manifest is the one the device accepted: nothing wrong was written into the cache. Then
/// the device reads honestly, the server goes away (every connection cut), and the device
/// reads the object from its cache alone, byte for byte.
#[test]
fn tampered_answers_never_enter_the_devices_cache() {
    use vault_core::CachedStore;

    let w = World::start();
    let alice = w.user("alice");
    let token = alice.token().to_owned();
    let page = 4096usize;
    let pages = 4u32;
    let len = page * (pages as usize - 1) + 100;
    let mut docs = alice.vault.collection("docs").unwrap();
    let mut notes = alice.vault.collection("notes").unwrap();
    notes.put("n.txt", b"a note").unwrap();
    docs.put_reader("big.bin", &mut &noise(len, 1)[..], &small_pages())
        .unwrap();
    let c = docs.id();
    let listed = |c: &vault_core::Collection<'_, RemoteStore>, name: &str| {
        c.list().into_iter().find(|l| l.name == name).unwrap()
    };
    let v1 = listed(&docs, "big.bin");
    let get = |p: String| w.proxy.get_ok(&p, &token).body;
    let old_page = get(page_path(&c, &v1.id, v1.version, 0));
    let old_header = get(header_path(&c, &v1.id, v1.version));
    let old_manifest = w.proxy.get_ok(&manifest_path(&c), &token);
    let big = noise(len, 2);
    docs.put_reader("big.bin", &mut &big[..], &small_pages())
        .unwrap();
    docs.put_reader("other.bin", &mut &noise(len, 3)[..], &small_pages())
        .unwrap();
    let obj = listed(&docs, "big.bin");
    let oth = listed(&docs, "other.bin");
    let pg = |i: u32| page_path(&c, &obj.id, obj.version, i);
    let hd = header_path(&c, &obj.id, obj.version);
    let honest_pages: Vec<Vec<u8>> = (0..pages).map(|i| get(pg(i))).collect();
    let honest_header = get(hd.clone());
    let current = w.proxy.get_ok(&manifest_path(&c), &token);
    let other_manifest = w.proxy.get_ok(&manifest_path(&notes.id()), &token);
    let other_header = get(header_path(&c, &oth.id, oth.version));

    // Alice's second device, with a cache directory.
    let cache_dir = tempfile::tempdir().unwrap();
    let password = Password::from("alice's password");
    let (session, keyring) = w
        .client
        .login_and_unlock("alice", &password, &Login::new())
        .unwrap();
    let device = Vault::open(
        CachedStore::open(session.store(), cache_dir.path()).unwrap(),
        keyring,
        LocalState::in_memory(),
    );
    let mut dev_docs = device.collection("docs").unwrap();
    let cache = device.store();
    let address = |i: u32| vault_core::PageAddress {
        collection: c,
        object: obj.id,
        version: obj.version,
        index: i,
    };
    let header_address = vault_core::ObjectAddress {
        collection: c,
        object: obj.id,
        version: obj.version,
    };
    // What the cache answers (itself when it holds the item, else the now honest server)
    // is the honest item.
    let cache_is_clean = |what: &str| {
        for i in 0..pages {
            assert_eq!(
                cache.get_page(&address(i)).unwrap().unwrap(),
                honest_pages[i as usize],
                "{what}: page {i} in the cache"
            );
        }
        assert_eq!(
            cache.get_header(&header_address).unwrap().unwrap(),
            honest_header,
            "{what}: the header in the cache"
        );
        assert_eq!(
            cache.cached_manifest_version(&c),
            current.version(),
            "{what}: the cached manifest"
        );
    };

    // The header first (nothing is cached before it verifies), then page 0 (nothing before
    // it), then page 2 (pages 0 and 1 verify and are cached; page 2 must not be): an item
    // the cache already holds is not asked again, so each attack must reach the server.
    let page_attacks: Vec<(&str, Box<proxy::Rule>)> = vec![
        (
            "the header of another object",
            Box::new(replace(hd.clone(), other_header.clone(), None)),
        ),
        (
            "the header of the previous version (replay)",
            Box::new(replace(hd.clone(), old_header.clone(), None)),
        ),
        (
            "a flipped bit in the header",
            Box::new(mangle(hd.clone(), flip(70))),
        ),
        (
            "page 0 of the previous version (replay)",
            Box::new(replace(pg(0), old_page.clone(), None)),
        ),
        (
            "page 0 answered with page 1",
            Box::new(replace(pg(0), honest_pages[1].clone(), None)),
        ),
        (
            "a flipped bit in page 0",
            Box::new(mangle(pg(0), flip(900))),
        ),
        ("page 0 truncated", Box::new(mangle(pg(0), truncate_half))),
        (
            "page 0 forged",
            Box::new(replace(pg(0), noise(honest_pages[0].len(), 5), None)),
        ),
        (
            "page 2 answered with page 0",
            Box::new(replace(pg(2), honest_pages[0].clone(), None)),
        ),
    ];
    for (what, rule) in page_attacks {
        w.under(what, rule, || integrity(dev_docs.get("big.bin"), what));
        cache_is_clean(what);
    }
    let manifest_attacks: Vec<(&str, Box<proxy::Rule>)> = vec![
        (
            "an older manifest (rollback)",
            Box::new(replace(
                manifest_path(&c),
                old_manifest.body.clone(),
                old_manifest.version(),
            )),
        ),
        (
            "a flipped manifest",
            Box::new(mangle(manifest_path(&c), flip(100))),
        ),
        (
            "another collection's manifest under the current version",
            Box::new(replace(
                manifest_path(&c),
                other_manifest.body.clone(),
                current.version(),
            )),
        ),
    ];
    for (what, rule) in manifest_attacks {
        w.under(what, rule, || integrity(dev_docs.refresh(), what));
        cache_is_clean(what);
    }

    // An honest read fills the cache; then the server is gone and the cache serves alone.
    assert_eq!(dev_docs.get("big.bin").unwrap(), big);
    for i in 0..pages {
        assert!(cache.holds_page(&address(i)), "page {i} cached");
    }
    drop(dev_docs);
    w.proxy.set_swallow(|_| {
        Some(Response {
            status: proxy::CUT,
            headers: Vec::new(),
            body: Vec::new(),
        })
    });
    let offline = device.collection("docs").unwrap();
    assert_eq!(offline.get("big.bin").unwrap(), big);
    let e = RemoteError::from(offline.get("other.bin").unwrap_err());
    assert!(
        matches!(e, RemoteError::Unreachable | RemoteError::TimedOut),
        "never read here, so not cached: {e:?}"
    );
}
