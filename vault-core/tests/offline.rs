//! The local cache and the change-feed catch-up (docs/spec/client.md §8), against the real
//! server in-process over TLS (sled directory, fast login verifier, 10-iteration KDF):
//!
//! - a second device reads alice's objects through its cache, the server goes away, and the
//!   device (restarted) still lists and reads them; what it never read fails as
//!   "unreachable", never as tampering; a write made offline is parked on the device;
//! - offline writes (client.md §8.6): a device writes, overwrites and deletes while the
//!   server is unreachable, restarts, and pushes when it is back; the other device's writes
//!   of the meantime are merged, nothing is lost, and nothing reached the server before;
//! - a device that did not sync while the other wrote catches up on the change feed and
//!   fetches exactly the new objects' headers and pages, nothing it already held;
//! - a store that corrupts a page: the read fails with the integrity error and the cache
//!   holds nothing for that address; with honest bytes the read succeeds and is cached.
#![cfg(feature = "remote")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::io::Read;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use rand_core::OsRng;
use tokio::sync::oneshot;
use vault_core::remote::{Login, RemoteError, RetryPolicy, Server, ServerOptions, Session};
use vault_core::{
    CachedStore, CollectionId, Compression, Error, LocalState, MemoryStore, ObjectAddress,
    PageAddress, PutOptions, RecordKind, Store, StoreError, Swap, Vault, Verified,
};
use vault_keyring::danger::{insecure_test_params, insecure_test_policy};
use vault_keyring::{Keyring, KeyringOptions, Password};
use vault_server::api::{self, AppState, Clock};
use vault_server::auth::VerifierPolicy;
use vault_server::config::Config;
use vault_server::store::SledBackend;
use vault_server::tls::{self, SelfSigned, TlsServer};

const PASSWORD: &str = "alice's password";

/// A TLS server on 127.0.0.1 over a fresh sled directory, on its own runtime.
struct TestServer {
    runtime: Option<tokio::runtime::Runtime>,
    url: String,
    fingerprint: [u8; 32],
    _stop: oneshot::Sender<()>,
    _dir: tempfile::TempDir,
}

impl TestServer {
    fn start() -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
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
        let port = listener.local_addr().unwrap().port();
        let (stop, stopped) = oneshot::channel::<()>();
        let shutdown = async {
            let _ = stopped.await;
        };
        let names: Vec<String> = tls::DEFAULT_CERT_NAMES.map(str::to_owned).to_vec();
        let pair = SelfSigned::generate(&names, 1).unwrap();
        let server =
            TlsServer::from_pem(pair.cert_pem().as_bytes(), pair.key_pem().as_bytes()).unwrap();
        runtime.spawn(tls::serve_tls(listener, state, server, shutdown));
        Self {
            runtime: Some(runtime),
            url: format!("https://localhost:{port}"),
            fingerprint: pair.fingerprint(),
            _stop: stop,
            _dir: dir,
        }
    }

    /// Pinned to the server's certificate, the test KDF policy, quick and few retries (so
    /// that the unreachable server is noticed fast).
    fn client(&self) -> Server {
        let options = ServerOptions::new()
            .kdf_policy(insecure_test_policy(1_000))
            .timeout(Duration::from_secs(30))
            .pin_sha256(self.fingerprint)
            .retry(RetryPolicy {
                max_attempts: 2,
                base_delay: Duration::from_millis(10),
                max_delay: Duration::from_millis(50),
            });
        Server::connect(&self.url, options).unwrap()
    }

    /// The server goes away at once: every task (listener and connections) is dropped.
    fn kill(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_timeout(Duration::from_secs(5));
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.kill();
    }
}

fn register_and_login(server: &Server, name: &str) -> (Session, Keyring) {
    server
        .register(
            name,
            &Password::from(PASSWORD),
            &insecure_test_params(&mut OsRng, 10),
            &KeyringOptions::new(),
        )
        .unwrap();
    login(server, name)
}

fn login(server: &Server, name: &str) -> (Session, Keyring) {
    server
        .login_and_unlock(name, &Password::from(PASSWORD), &Login::new())
        .unwrap()
}

/// Bytes that do not compress much.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn small_pages() -> PutOptions<'static> {
    PutOptions {
        page_size: 4096,
        compression: Compression::None,
        content_type: "",
    }
}

/// A store that counts the reads of pages and headers reaching it.
struct Counting<S> {
    inner: S,
    pages: AtomicUsize,
    headers: AtomicUsize,
}

impl<S> Counting<S> {
    fn new(inner: S) -> Self {
        Self {
            inner,
            pages: AtomicUsize::new(0),
            headers: AtomicUsize::new(0),
        }
    }

    /// (pages, headers) read since the last call.
    fn take(&self) -> (usize, usize) {
        (
            self.pages.swap(0, Ordering::SeqCst),
            self.headers.swap(0, Ordering::SeqCst),
        )
    }
}

/// `Store` for a wrapper: every call to `self.inner`, except those given.
macro_rules! forward_store {
    ($($given:item)*) => {
        $($given)*
        fn put_page(&self, a: &PageAddress, p: &[u8]) -> Result<(), StoreError> {
            self.inner.put_page(a, p)
        }
        fn put_header(&self, a: &ObjectAddress, h: &[u8]) -> Result<(), StoreError> {
            self.inner.put_header(a, h)
        }
        fn delete_object_version(&self, a: &ObjectAddress) -> Result<(), StoreError> {
            self.inner.delete_object_version(a)
        }
        fn put_collection_key(&self, c: &CollectionId, e: u32, w: &[u8]) -> Result<(), StoreError> {
            self.inner.put_collection_key(c, e, w)
        }
        fn get_collection_key(&self, c: &CollectionId, e: u32) -> Result<Option<Vec<u8>>, StoreError> {
            self.inner.get_collection_key(c, e)
        }
        fn get_manifest(&self, c: &CollectionId) -> Result<Option<(u64, Vec<u8>)>, StoreError> {
            self.inner.get_manifest(c)
        }
        fn swap_manifest(&self, c: &CollectionId, e: u64, v: u64, m: &[u8]) -> Result<Swap, StoreError> {
            self.inner.swap_manifest(c, e, v, m)
        }
        fn list_collections(&self) -> Result<Vec<CollectionId>, StoreError> {
            self.inner.list_collections()
        }
        fn put_record(&self, k: RecordKind, key: &[u8], v: &[u8]) -> Result<(), StoreError> {
            self.inner.put_record(k, key, v)
        }
        fn insert_record(&self, k: RecordKind, key: &[u8], v: &[u8]) -> Result<bool, StoreError> {
            self.inner.insert_record(k, key, v)
        }
        fn get_record(&self, k: RecordKind, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
            self.inner.get_record(k, key)
        }
        fn list_records(&self, k: RecordKind, p: &[u8]) -> Result<Vec<Vec<u8>>, StoreError> {
            self.inner.list_records(k, p)
        }
        fn verified(&self, item: Verified<'_>) {
            self.inner.verified(item)
        }
    };
}

impl<S: Store> Store for Counting<S> {
    forward_store! {
        fn get_page(&self, a: &PageAddress) -> Result<Option<Vec<u8>>, StoreError> {
            self.pages.fetch_add(1, Ordering::SeqCst);
            self.inner.get_page(a)
        }
        fn get_header(&self, a: &ObjectAddress) -> Result<Option<Vec<u8>>, StoreError> {
            self.headers.fetch_add(1, Ordering::SeqCst);
            self.inner.get_header(a)
        }
    }
}

/// A hostile store: while `corrupt` is set, flips a byte of the page at `target`.
struct Corrupting {
    inner: Arc<MemoryStore>,
    target: std::sync::Mutex<Option<PageAddress>>,
    corrupt: AtomicBool,
}

impl Store for Corrupting {
    forward_store! {
        fn get_page(&self, a: &PageAddress) -> Result<Option<Vec<u8>>, StoreError> {
            let mut page = self.inner.get_page(a)?;
            if self.corrupt.load(Ordering::SeqCst) && *self.target.lock().unwrap() == Some(*a) {
                if let Some(p) = page.as_mut() {
                    p[10] ^= 0x01;
                }
            }
            Ok(page)
        }
        fn get_header(&self, a: &ObjectAddress) -> Result<Option<Vec<u8>>, StoreError> {
            self.inner.get_header(a)
        }
    }
}

fn read_all(c: &vault_core::Collection<'_, impl Store>, name: &str) -> Result<Vec<u8>, Error> {
    let mut out = Vec::new();
    c.open(name)?.read_to_end(&mut out).map_err(|e| {
        match e.into_inner().map(|i| i.downcast::<Error>()) {
            Some(Ok(inner)) => *inner,
            _ => Error::Integrity,
        }
    })?;
    Ok(out)
}

#[test]
fn a_device_reads_from_its_cache_when_the_server_is_gone() {
    let mut ts = TestServer::start();
    let server = ts.client();
    let (session_a, keyring_a) = register_and_login(&server, "alice");
    let vault_a = Vault::open(session_a.store(), keyring_a, LocalState::in_memory());
    let mut docs = vault_a.collection("docs").unwrap();
    let big = noise(40_000, 7);
    docs.put("hello.txt", b"hello, cache").unwrap();
    docs.put_reader("big.bin", &mut &big[..], &small_pages())
        .unwrap();
    docs.put("unread.txt", b"never read on the second device")
        .unwrap();

    // The second device: its own login, local state and cache directory.
    let cache_dir = tempfile::tempdir().unwrap();
    let state_dir = tempfile::tempdir().unwrap();
    let (session_b, keyring_b) = login(&server, "alice");
    let cache = CachedStore::open(session_b.store(), cache_dir.path()).unwrap();
    let vault_b = Vault::open(
        cache,
        keyring_b,
        LocalState::open(state_dir.path()).unwrap(),
    );
    {
        let docs_b = vault_b.collection("docs").unwrap();
        assert_eq!(docs_b.list().len(), 3);
        assert_eq!(docs_b.get("hello.txt").unwrap(), b"hello, cache");
        assert_eq!(read_all(&docs_b, "big.bin").unwrap(), big);
    }

    // The server goes away; the device restarts (cache and local state from disk).
    ts.kill();
    let (cache, keyring_b, state) = vault_b.into_parts();
    drop(cache);
    let cache = CachedStore::open(session_b.store(), cache_dir.path()).unwrap();
    let vault_b = Vault::open(cache, keyring_b, state);
    let mut docs_b = vault_b.collection("docs").unwrap();
    let names: Vec<String> = docs_b.list().into_iter().map(|l| l.name).collect();
    assert_eq!(names, ["big.bin", "hello.txt", "unread.txt"]);
    assert_eq!(docs_b.get("hello.txt").unwrap(), b"hello, cache");
    assert_eq!(read_all(&docs_b, "big.bin").unwrap(), big);
    assert!(vault_b
        .store()
        .list_collections()
        .unwrap()
        .contains(&docs_b.id()));

    // Never read here, so not cached: the server is unreachable, which is not tampering.
    let e = RemoteError::from(docs_b.get("unread.txt").unwrap_err());
    assert!(
        matches!(e, RemoteError::Unreachable | RemoteError::TimedOut),
        "{e:?}"
    );
    // A write made offline is parked on the device (§8.6): listed and readable here.
    docs_b.put("new.txt", b"offline write").unwrap();
    assert_eq!(docs_b.queued(), 1);
    assert_eq!(docs_b.get("new.txt").unwrap(), b"offline write");
    assert_eq!(vault_b.queued().unwrap().len(), 1);
}

/// The server's store behind a switch: off, every call fails as "unreachable" (what the
/// client sees when the network is gone).
struct Switch<S> {
    inner: S,
    down: AtomicBool,
}

impl<S> Switch<S> {
    fn up(&self) -> Result<&S, StoreError> {
        if self.down.load(Ordering::SeqCst) {
            Err(StoreError::with_source(
                "unreachable",
                RemoteError::Unreachable,
            ))
        } else {
            Ok(&self.inner)
        }
    }
}

impl<S: Store> Store for Switch<S> {
    fn put_page(&self, a: &PageAddress, p: &[u8]) -> Result<(), StoreError> {
        self.up()?.put_page(a, p)
    }
    fn get_page(&self, a: &PageAddress) -> Result<Option<Vec<u8>>, StoreError> {
        self.up()?.get_page(a)
    }
    fn put_header(&self, a: &ObjectAddress, h: &[u8]) -> Result<(), StoreError> {
        self.up()?.put_header(a, h)
    }
    fn get_header(&self, a: &ObjectAddress) -> Result<Option<Vec<u8>>, StoreError> {
        self.up()?.get_header(a)
    }
    fn delete_object_version(&self, a: &ObjectAddress) -> Result<(), StoreError> {
        self.up()?.delete_object_version(a)
    }
    fn put_collection_key(&self, c: &CollectionId, e: u32, w: &[u8]) -> Result<(), StoreError> {
        self.up()?.put_collection_key(c, e, w)
    }
    fn get_collection_key(&self, c: &CollectionId, e: u32) -> Result<Option<Vec<u8>>, StoreError> {
        self.up()?.get_collection_key(c, e)
    }
    fn get_manifest(&self, c: &CollectionId) -> Result<Option<(u64, Vec<u8>)>, StoreError> {
        self.up()?.get_manifest(c)
    }
    fn swap_manifest(
        &self,
        c: &CollectionId,
        e: u64,
        v: u64,
        m: &[u8],
    ) -> Result<Swap, StoreError> {
        self.up()?.swap_manifest(c, e, v, m)
    }
    fn list_collections(&self) -> Result<Vec<CollectionId>, StoreError> {
        self.up()?.list_collections()
    }
    fn put_record(&self, k: RecordKind, key: &[u8], v: &[u8]) -> Result<(), StoreError> {
        self.up()?.put_record(k, key, v)
    }
    fn insert_record(&self, k: RecordKind, key: &[u8], v: &[u8]) -> Result<bool, StoreError> {
        self.up()?.insert_record(k, key, v)
    }
    fn get_record(&self, k: RecordKind, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.up()?.get_record(k, key)
    }
    fn list_records(&self, k: RecordKind, p: &[u8]) -> Result<Vec<Vec<u8>>, StoreError> {
        self.up()?.list_records(k, p)
    }
}

#[test]
fn offline_writes_are_parked_and_merged_when_the_server_is_back() {
    let ts = TestServer::start();
    let server = ts.client();
    let (session_a, keyring_a) = register_and_login(&server, "alice");
    let vault_a = Vault::open(session_a.store(), keyring_a, LocalState::in_memory());
    let mut docs_a = vault_a.collection("docs").unwrap();
    docs_a.put("both.txt", b"first version").unwrap();
    docs_a.put("gone.txt", b"to be deleted offline").unwrap();
    docs_a.put("kept.txt", b"untouched").unwrap();

    // Device B reads the collection online (so it is cached), then loses the network.
    let cache_dir = tempfile::tempdir().unwrap();
    let state_dir = tempfile::tempdir().unwrap();
    let (session_b, keyring_b) = login(&server, "alice");
    let open_b = |keyring: Keyring, state: LocalState, down: bool| {
        let switch = Switch {
            inner: session_b.store(),
            down: AtomicBool::new(down),
        };
        Vault::open(
            CachedStore::open(switch, cache_dir.path()).unwrap(),
            keyring,
            state,
        )
    };
    let vault_b = open_b(
        keyring_b,
        LocalState::open(state_dir.path()).unwrap(),
        false,
    );
    {
        let docs_b = vault_b.collection("docs").unwrap();
        assert_eq!(docs_b.get("both.txt").unwrap(), b"first version");
    }
    vault_b.store().inner().down.store(true, Ordering::SeqCst);
    let big = noise(30_000, 11);
    {
        let mut docs_b = vault_b.collection("docs").unwrap();
        docs_b.put("both.txt", b"B's offline version").unwrap();
        docs_b.put("new-b.txt", b"written offline").unwrap();
        docs_b
            .put_reader("big-b.bin", &mut &big[..], &small_pages())
            .unwrap();
        docs_b.delete("gone.txt").unwrap();
        assert_eq!(docs_b.queued(), 4);
        let names: Vec<String> = docs_b.list().into_iter().map(|l| l.name).collect();
        assert_eq!(names, ["big-b.bin", "both.txt", "kept.txt", "new-b.txt"]);
        assert_eq!(docs_b.get("both.txt").unwrap(), b"B's offline version");
    }
    assert!(vault_b.store().pending_uploads() >= 9);
    // Nothing reached the server.
    docs_a.refresh().unwrap();
    assert_eq!(docs_a.list().len(), 3);
    assert_eq!(docs_a.get("both.txt").unwrap(), b"first version");

    // B restarts, still offline: the parked changes and their pages are on disk.
    let (cache, keyring_b, state) = vault_b.into_parts();
    drop(cache);
    drop(state);
    let vault_b = open_b(keyring_b, LocalState::open(state_dir.path()).unwrap(), true);
    {
        let docs_b = vault_b.collection("docs").unwrap();
        assert_eq!(docs_b.queued(), 4);
        assert_eq!(read_all(&docs_b, "big-b.bin").unwrap(), big);
        // Still offline: pushing keeps them parked.
    }
    assert_eq!(vault_b.push_queued().unwrap(), 0);
    assert_eq!(vault_b.queued().unwrap()[0].changes, 4);

    // Meanwhile device A changes the same file and adds one.
    docs_a.put("both.txt", b"A's version").unwrap();
    docs_a.put("new-a.txt", b"written on A").unwrap();

    // The network is back: B pushes, merging with A's writes.
    vault_b.store().inner().down.store(false, Ordering::SeqCst);
    let queued = vault_b.queued().unwrap();
    assert_eq!(queued.len(), 1);
    assert_eq!((queued[0].name.as_str(), queued[0].changes), ("docs", 4));
    assert_eq!(vault_b.push_queued().unwrap(), 1);
    assert!(vault_b.queued().unwrap().is_empty());
    assert_eq!(vault_b.store().pending_uploads(), 0);

    // Nothing is lost: A's version under the name, B's as a conflict copy, B's new
    // objects and deletion, A's new object.
    docs_a.refresh().unwrap();
    let listing = docs_a.list();
    let names: Vec<&str> = listing.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(names.len(), 6, "{names:?}");
    assert_eq!(docs_a.get("both.txt").unwrap(), b"A's version");
    let copy = names
        .iter()
        .find(|n| n.starts_with("both (conflict "))
        .expect("B's version kept as a conflict copy");
    assert_eq!(docs_a.get(copy).unwrap(), b"B's offline version");
    assert_eq!(docs_a.get("new-b.txt").unwrap(), b"written offline");
    assert_eq!(docs_a.get("new-a.txt").unwrap(), b"written on A");
    assert_eq!(docs_a.get("kept.txt").unwrap(), b"untouched");
    assert_eq!(read_all(&docs_a, "big-b.bin").unwrap(), big);
    assert!(matches!(docs_a.get("gone.txt"), Err(Error::NotFound)));
    // B's view agrees.
    let docs_b = vault_b.collection("docs").unwrap();
    assert_eq!(docs_b.queued(), 0);
    assert_eq!(docs_b.list(), docs_a.list());
}

#[test]
fn catch_up_fetches_only_what_changed() {
    let ts = TestServer::start();
    let server = ts.client();
    let (session_a, keyring_a) = register_and_login(&server, "alice");
    let vault_a = Vault::open(session_a.store(), keyring_a, LocalState::in_memory());
    let mut docs = vault_a.collection("docs").unwrap();
    let mut expected: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for i in 0..5u64 {
        let data = noise(6000, i + 1);
        docs.put_reader(&format!("o{i}"), &mut &data[..], &small_pages())
            .unwrap();
        expected.insert(format!("o{i}"), data);
    }
    let mut other = vault_a.collection("other").unwrap();
    other.put("x", b"untouched later").unwrap();

    // Device B: catches up from the start, reads everything once.
    let cache_dir = tempfile::tempdir().unwrap();
    let (session_b, keyring_b) = login(&server, "alice");
    let feed = session_b.store();
    let cache = CachedStore::open(Counting::new(session_b.store()), cache_dir.path()).unwrap();
    let vault_b = Vault::open(cache, keyring_b, LocalState::in_memory());
    let cache = vault_b.store();
    let first = cache.catch_up(&feed).unwrap();
    assert!(first.collections.contains_key(&docs.id()));
    assert!(first.collections.contains_key(&other.id()));
    let mut docs_b = vault_b.collection("docs").unwrap();
    assert_eq!(cache.prefetch(&docs_b).unwrap(), 5);
    assert_eq!(cache.inner().take(), (10, 5)); // 2 pages each
    assert_eq!(cache.prefetch(&docs_b).unwrap(), 0);
    let o1 = docs_b.list().into_iter().find(|l| l.name == "o1").unwrap();
    let o0 = docs_b.list().into_iter().find(|l| l.name == "o0").unwrap();
    let address = |l: &vault_core::Listing| ObjectAddress {
        collection: docs_b.id(),
        object: l.id,
        version: l.version,
    };
    let (o0_old, o1_address) = (address(&o0), address(&o1));
    assert!(cache.holds_header(&o1_address));
    let nothing = cache.catch_up(&feed).unwrap();
    assert!(nothing.collections.is_empty() && nothing.deleted_objects.is_empty());

    // B does not sync while A writes three objects, replaces o0 and deletes o1.
    for i in 0..3u64 {
        let data = noise(5000, 100 + i);
        docs.put_reader(&format!("n{i}"), &mut &data[..], &small_pages())
            .unwrap();
        expected.insert(format!("n{i}"), data);
    }
    let data = noise(3000, 200);
    docs.put_reader("o0", &mut &data[..], &small_pages())
        .unwrap();
    expected.insert("o0".into(), data);
    docs.delete("o1").unwrap();
    expected.remove("o1");

    // Catch-up: only "docs" changed; the deleted versions are dropped from the cache.
    let report = cache.catch_up(&feed).unwrap();
    assert_eq!(
        report.collections,
        BTreeMap::from([(docs.id(), docs.manifest().version)])
    );
    assert!(report.deleted_objects.contains(&o0_old));
    assert!(report.deleted_objects.contains(&o1_address));
    assert!(!cache.holds_header(&o1_address) && !cache.holds_header(&o0_old));
    assert!(report.cursor > first.cursor);
    assert_eq!(cache.cursor().unwrap(), report.cursor);
    assert_eq!(cache.inner().take(), (0, 0));

    // Refresh that collection and prefetch: exactly the 4 new object versions are fetched
    // (3 of 2 pages, one of 1 page), nothing already held.
    docs_b.refresh().unwrap();
    assert_eq!(cache.prefetch(&docs_b).unwrap(), 4);
    assert_eq!(cache.inner().take(), (7, 4));

    // Everything reads from the cache now, and matches.
    let listed: Vec<String> = docs_b.list().into_iter().map(|l| l.name).collect();
    assert_eq!(listed, expected.keys().cloned().collect::<Vec<_>>());
    for (name, data) in &expected {
        assert_eq!(&read_all(&docs_b, name).unwrap(), data, "{name}");
    }
    assert_eq!(cache.inner().take(), (0, 0));
    assert!(matches!(docs_b.get("o1"), Err(Error::NotFound)));
}

#[test]
fn corrupted_pages_never_enter_the_cache() {
    let keyring =
        || Keyring::generate(&mut ChaCha20Rng::from_seed([9; 32]), &KeyringOptions::new()).unwrap();
    let honest = Arc::new(MemoryStore::new());
    let vault_a = Vault::open(honest.clone(), keyring(), LocalState::in_memory());
    let data = noise(3 * 4096 + 100, 5);
    vault_a
        .collection("docs")
        .unwrap()
        .put_reader("secret.bin", &mut &data[..], &small_pages())
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let evil = Corrupting {
        inner: honest,
        target: std::sync::Mutex::new(None),
        corrupt: AtomicBool::new(true),
    };
    let vault_b = Vault::open(
        CachedStore::open(evil, dir.path()).unwrap(),
        keyring(),
        LocalState::in_memory(),
    );
    let cache = vault_b.store();
    let docs = vault_b.collection("docs").unwrap();
    let listing = docs.list().into_iter().next().unwrap();
    let page = |index| PageAddress {
        collection: docs.id(),
        object: listing.id,
        version: listing.version,
        index,
    };
    *cache.inner().target.lock().unwrap() = Some(page(1));

    // The corrupted page fails the read with the one integrity error, and is not kept.
    assert!(matches!(
        read_all(&docs, "secret.bin"),
        Err(Error::Integrity)
    ));
    assert!(matches!(docs.get("secret.bin"), Err(Error::Integrity)));
    assert!(!cache.holds_page(&page(1)));
    assert!(cache.holds_page(&page(0)), "the verified page before it is");

    // Honest bytes: the read succeeds and every page is cached; the corruption returning
    // no longer matters (the verified copy is read first).
    cache.inner().corrupt.store(false, Ordering::SeqCst);
    assert_eq!(docs.get("secret.bin").unwrap(), data);
    assert!((0..4).all(|i| cache.holds_page(&page(i))));
    cache.inner().corrupt.store(true, Ordering::SeqCst);
    assert_eq!(docs.get("secret.bin").unwrap(), data);
}

#[test]
fn a_collection_shared_with_a_user_reads_offline_from_the_cache() {
    let mut ts = TestServer::start();
    let server = ts.client();
    let (session_a, keyring_a) = register_and_login(&server, "alice");
    let (session_b, keyring_b) = register_and_login(&server, "bob");
    let vault_a = Vault::open(session_a.store(), keyring_a, LocalState::in_memory());
    let cache_dir = tempfile::tempdir().unwrap();
    let state_dir = tempfile::tempdir().unwrap();
    let vault_b = Vault::open(
        CachedStore::open(session_b.store(), cache_dir.path()).unwrap(),
        keyring_b,
        LocalState::open(state_dir.path()).unwrap(),
    );
    let bob = vault_a.fetch_identity(vault_b.keyring().id()).unwrap();
    vault_b.fetch_identity(vault_a.keyring().id()).unwrap();
    let mut docs = vault_a.collection("docs").unwrap();
    docs.put("plan.txt", b"shared plan").unwrap();
    docs.share_with(&bob).unwrap();
    let (owner, id) = (docs.owner(), docs.id());
    {
        let shared = vault_b.shared_collection(owner, id).unwrap();
        assert_eq!(shared.get("plan.txt").unwrap(), b"shared plan");
    }

    // The server goes away; Bob's device restarts and reads from its cache (the envelope
    // it opened is kept, verified again against the pinned identity).
    ts.kill();
    let (cache, keyring_b, state) = vault_b.into_parts();
    drop(cache);
    let vault_b = Vault::open(
        CachedStore::open(session_b.store(), cache_dir.path()).unwrap(),
        keyring_b,
        state,
    );
    let shared = vault_b.shared_collection(owner, id).unwrap();
    assert_eq!(shared.get("plan.txt").unwrap(), b"shared plan");
    assert_eq!(shared.list().len(), 1);
}
