//! The sync client (issue #7): one large incompressible object up to the real server and back
//! through `vault_core::remote` (HTTPS on loopback with the certificate pinned; the server
//! in-process on its own tokio runtime, sled in a temporary directory), against two
//! references measured in the same run:
//!
//! 1. **Raw transport**: the same number of pages of the same sealed size, as bytes already
//!    sealed, through the same client's `RemoteStore::put_page` / `get_page` (what the wire,
//!    TLS and the server cost, without the client's compression, sealing, verification and
//!    manifest commit).
//! 2. **Embedded**: the same object into and out of a vault on the embedded `SledStore` (no
//!    network): what the client does apart from the network.
//!
//! Prints `SYNC` lines (MB/s), `RATIO` lines (vault over the references) and the peak memory
//! growth of this process over the vault's transfers (`RSS`: client **and** the in-process
//! server; the goal is memory bounded by a few pages, independent of the object's size).
//! Every byte read back is checked (a hash of the stream).
//!
//! ```text
//! cargo bench -p vault-benches --bench sync                 # 64 MiB, about 20 s
//! VAULT_SYNC_MIB=256 cargo bench -p vault-benches --bench sync
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hash::Hasher;
use std::io::{self, Read};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;
use rand_core::OsRng;
use vault_benches::{peak_rss_mib, Source, Sum};
use vault_core::remote::{Login, Server, ServerOptions};
use vault_core::{LocalState, ObjectId, PageAddress, PutOptions, SledStore, Store, Vault};
use vault_keyring::danger::{insecure_test_params, insecure_test_policy};
use vault_keyring::{Keyring, KeyringOptions, Password};
use vault_server::api::{self, AppState};
use vault_server::auth::VerifierPolicy;
use vault_server::config::Config;
use vault_server::store::SledBackend;
use vault_server::tls::{self, SelfSigned, TlsServer};

const MIB: u64 = 1024 * 1024;

/// The object: a seeded pseudo-random stream of `size` bytes.
fn source(size: u64) -> Source<ChaCha20Rng> {
    Source {
        rng: ChaCha20Rng::from_seed([7; 32]),
        left: size,
    }
}

fn hash_of(mut r: impl Read) -> (u64, u64) {
    let mut h = Sum(Default::default(), 0);
    io::copy(&mut r, &mut h).unwrap();
    (h.0.finish(), h.1)
}

fn mbps(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / d.as_secs_f64() / 1e6
}

/// The server: TLS on 127.0.0.1, a sled directory, on a runtime of its own.
struct TestServer {
    _runtime: tokio::runtime::Runtime,
    url: String,
    fingerprint: [u8; 32],
    _stop: tokio::sync::oneshot::Sender<()>,
}

fn start_server(dir: &std::path::Path) -> TestServer {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let backend = SledBackend::open(dir).unwrap();
    let decoy = api::load_decoy_key(&backend).unwrap();
    let config = Config::default();
    let state = Arc::new(AppState::new(
        backend,
        VerifierPolicy::with_iterations(100_000).unwrap(),
        decoy,
        config,
    ));
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let names: Vec<String> = tls::DEFAULT_CERT_NAMES.map(str::to_owned).to_vec();
    let pair = SelfSigned::generate(&names, 1).unwrap();
    let tls_server =
        TlsServer::from_pem(pair.cert_pem().as_bytes(), pair.key_pem().as_bytes()).unwrap();
    runtime.spawn(tls::serve_tls(listener, state, tls_server, async {
        let _ = stopped.await;
    }));
    TestServer {
        _runtime: runtime,
        url: format!("https://localhost:{port}"),
        fingerprint: pair.fingerprint(),
        _stop: stop,
    }
}

fn main() {
    let size = std::env::var("VAULT_SYNC_MIB")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(64)
        * MIB;
    let options = PutOptions::default();
    let expected = hash_of(source(size));
    let work = tempfile::tempdir().unwrap();

    // The embedded reference first (no network).
    let keyring = Keyring::generate(&mut OsRng, &KeyringOptions::new()).unwrap();
    let local = Vault::open(
        SledStore::open(work.path().join("local")).unwrap(),
        keyring,
        LocalState::in_memory(),
    );
    let mut c = local.collection("bench").unwrap();
    let t = Instant::now();
    c.put_reader("big.bin", &mut source(size), &options)
        .unwrap();
    let local_put = t.elapsed();
    let t = Instant::now();
    assert_eq!(hash_of(c.open("big.bin").unwrap()), expected);
    let local_get = t.elapsed();
    drop(c);
    drop(local);

    // The server and a logged-in client.
    let server = start_server(&work.path().join("server"));
    let client = Server::connect(
        &server.url,
        ServerOptions::new()
            .kdf_policy(insecure_test_policy(1_000))
            .pin_sha256(server.fingerprint)
            .timeout(Duration::from_secs(120)),
    )
    .unwrap();
    let password = Password::from("bench password");
    client
        .register(
            "bench",
            &password,
            &insecure_test_params(&mut OsRng, 10),
            &KeyringOptions::new(),
        )
        .unwrap();
    let (session, keyring) = client
        .login_and_unlock("bench", &password, &Login::new())
        .unwrap();
    let vault = Vault::open(session.store(), keyring, LocalState::in_memory());
    let mut c = vault.collection("bench").unwrap();
    c.put("small", b"creates the collection").unwrap();
    let rss_before = peak_rss_mib();

    let t = Instant::now();
    c.put_reader("big.bin", &mut source(size), &options)
        .unwrap();
    let vault_put = t.elapsed();
    let t = Instant::now();
    assert_eq!(hash_of(c.open("big.bin").unwrap()), expected);
    let vault_get = t.elapsed();
    let rss_after = peak_rss_mib();

    // The raw transport: pages of the same sealed size, already sealed, same client.
    let listing = c.list().into_iter().find(|l| l.name == "big.bin").unwrap();
    let store = session.store();
    let first = PageAddress {
        collection: c.id(),
        object: listing.id,
        version: listing.version,
        index: 0,
    };
    let sealed_len = store.get_page(&first).unwrap().unwrap().len();
    let pages = size.div_ceil(options.page_size.into()) as u32;
    let object = ObjectId::generate(&mut OsRng);
    let mut page = vec![0u8; sealed_len];
    OsRng.fill_bytes(&mut page);
    let address = |index: u32| PageAddress {
        collection: c.id(),
        object,
        version: 1,
        index,
    };
    let t = Instant::now();
    for i in 0..pages {
        store.put_page(&address(i), &page).unwrap();
    }
    let raw_put = t.elapsed();
    let t = Instant::now();
    for i in 0..pages {
        let got = store.get_page(&address(i)).unwrap().unwrap();
        assert_eq!(got.len(), sealed_len);
    }
    let raw_get = t.elapsed();
    let raw_bytes = u64::from(pages) * sealed_len as u64;

    let mib = size / MIB;
    println!(
        "SYNC vault over HTTPS ({mib} MiB, {pages} pages of 1 MiB): put {:.0} MB/s ({:.2} s), get {:.0} MB/s ({:.2} s)",
        mbps(size, vault_put),
        vault_put.as_secs_f64(),
        mbps(size, vault_get),
        vault_get.as_secs_f64()
    );
    println!(
        "SYNC raw transport (RemoteStore put_page/get_page of {pages} sealed pages of {sealed_len} bytes): put {:.0} MB/s, get {:.0} MB/s",
        mbps(raw_bytes, raw_put),
        mbps(raw_bytes, raw_get)
    );
    println!(
        "SYNC embedded vault (SledStore, no network): put {:.0} MB/s, get {:.0} MB/s",
        mbps(size, local_put),
        mbps(size, local_get)
    );
    println!(
        "RATIO vault over HTTPS vs raw transport (time of the same pages): put {:.2}x, get {:.2}x",
        raw_put.as_secs_f64() / vault_put.as_secs_f64(),
        raw_get.as_secs_f64() / vault_get.as_secs_f64()
    );
    println!(
        "RATIO vault over HTTPS vs embedded vault: put {:.2}x, get {:.2}x",
        local_put.as_secs_f64() / vault_put.as_secs_f64(),
        local_get.as_secs_f64() / vault_get.as_secs_f64()
    );
    println!(
        "RSS client peak before the transfers {rss_before:.0} MiB, after {rss_after:.0} MiB: +{:.0} MiB for {mib} MiB up and down",
        rss_after - rss_before
    );
}
