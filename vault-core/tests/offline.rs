//! The local cache and the change-feed catch-up (docs/spec/client.md §8), against the real
//! server in-process over TLS (sled directory, fast login verifier, 10-iteration KDF):
//!
//! - a second device reads alice's objects through its cache, the server goes away, and the
//!   device (restarted) still lists and reads them; what it never read fails as
//!   "unreachable", never as tampering; writes fail (no offline queue);
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
    // No offline queue: writes fail.
    assert!(docs_b.put("new.txt", b"offline write").is_err());
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
