//! The end-to-end quickstart (issue #7): the real server and two users, at real strength.
//!
//! ```text
//! cargo run --release --locked -p vault-examples --example quickstart
//! ```
//!
//! 1. `vault-server` starts in this process on a temporary sled data directory, its login
//!    verifier calibrated as the binary calibrates it (`--login-target-ms 100`).
//! 2. Alice and Bob register and log in over the HTTP API with the sync client
//!    (`vault_core::remote`); their keyrings are sealed with PBKDF2 calibrated to this machine
//!    (never below 600,000 iterations). The password never leaves the device.
//! 3. Alice stores a folder (a text file, a ~5 MiB binary in several pages, a nested
//!    directory) in her collection.
//! 4. Alice and Bob compare Bob's fingerprint and their safety number (both sides printed),
//!    then Alice shares the collection with Bob.
//! 5. Bob, on his own device, syncs the shared collection, checks every file byte for byte,
//!    and picks up a file Alice adds afterwards.
//! 6. The server stops; its data directory is read: what it holds (opaque ids and sizes)
//!    beside what the users see, and a scan of every stored byte for each file name, the
//!    collection name, the passwords and pieces of the contents.
//!
//! Nothing is needed but the Rust toolchain: no database, no network beyond 127.0.0.1.

use std::collections::BTreeMap;
use std::error::Error;
use std::fs;
use std::io::{self, Read};
use std::net::SocketAddr;
use std::path::{Component, Path, PathBuf};
use std::process::ExitCode;
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rand_core::OsRng;
use vault_core::remote::{Login, Server, ServerOptions};
use vault_core::{CollectionId, Listing, LocalState, ObjectId, PutOptions, Vault};
use vault_keyring::{KdfParams, KeyringOptions, Password, DEFAULT_TARGET};
use vault_server::api::{self, AppState};
use vault_server::auth::mfa::MfaKey;
use vault_server::auth::verifier;
use vault_server::auth::VerifierPolicy;
use vault_server::config::Config;
use vault_server::store::SledBackend;

type Res<T> = Result<T, Box<dyn Error>>;

const COLLECTION: &str = "expedition";
const ALICE_PASSWORD: &str = "glacier lantern orbit 1917";
const BOB_PASSWORD: &str = "pebble harbour violet 2204";
/// Bytes of the binary file: 5 MiB and a bit, so six 1 MiB pages.
const BINARY_LEN: usize = 5 * 1024 * 1024 + 123_457;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("\nquickstart FAILED: {e}");
            let mut source = e.source();
            while let Some(s) = source {
                eprintln!("  caused by: {s}");
                source = s.source();
            }
            ExitCode::FAILURE
        }
    }
}

fn run() -> Res<()> {
    let started = Instant::now();
    let work = tempfile::tempdir()?;
    let data_dir = work.path().join("server-data");
    let alice_dir = work.path().join("alice-laptop");
    let bob_dir = work.path().join("bob-phone");
    println!("vault quickstart: a real server, two users, end-to-end encryption at real strength");
    println!(
        "(everything lives in {} and is removed at the end)",
        work.path().display()
    );

    // 1. The server.
    heading("1. The server: vault-server in this process, on a fresh sled data directory");
    let t = Instant::now();
    let mut server = InProcessServer::start(&data_dir)?;
    let verifier_iterations = server.verifier_iterations;
    println!(
        "login verifier: PBKDF2-HMAC-SHA256, {} iterations (calibrated to ~{} ms per login, as `vault-server` does at start-up) in {:.2?}",
        fmt_int(u64::from(server.verifier_iterations)),
        verifier::DEFAULT_TARGET.as_millis(),
        t.elapsed()
    );
    println!(
        "listening on {} (plain HTTP is accepted on loopback only; use TLS elsewhere)",
        server.url
    );
    println!("data directory: {}", data_dir.display());

    // Gather what the users see while the clients run; the clients are dropped (sessions
    // logged out) before the server stops.
    let users_view = clients(&server.url, &alice_dir, &bob_dir)?;

    // 6. What the server holds.
    heading("6. What the server holds");
    server.stop()?;
    println!("server stopped; its store is closed. Reading its data directory...");
    let files = data_files(&data_dir)?;
    let needles = needles(&users_view);
    let scan = scan(&files, &needles)?;
    let held = ServerView::read(&data_dir)?;
    let objects_held = held
        .collections
        .get(users_view.collection.as_bytes())
        .map(|c| c.objects.len());
    if objects_held != Some(users_view.listing.len()) {
        return Err(
            "the server's trees do not hold the collection as expected (has the \
                    storage layout of docs/spec/storage.md §1 changed?)"
                .into(),
        );
    }
    print_side_by_side(&users_view, &held);
    print_files(&files);
    let leaked = print_scan(&needles, &scan);
    if leaked > 0 {
        return Err(format!("{leaked} secret item(s) found in the server's bytes").into());
    }

    println!(
        "\ndone in {:.1} s, at real strength: PBKDF2 of {} iterations for each of the 4 \
         registrations and logins on the devices, {} iterations for each of the 4 login \
         verifiers the server made or checked",
        started.elapsed().as_secs_f64(),
        fmt_int(u64::from(users_view.kdf_iterations)),
        fmt_int(u64::from(verifier_iterations))
    );
    Ok(())
}

/// What the users saw, for the comparison with the server's bytes.
struct UsersView {
    collection: CollectionId,
    kdf_iterations: u32,
    alice: String,
    bob: String,
    manifest_version: u64,
    key_epoch: u32,
    listing: Vec<Listing>,
    /// Pieces of plaintext (label, bytes) that must not appear on the server.
    secrets: Vec<(String, Vec<u8>)>,
}

/// Steps 2 to 5: everything the two devices do through the HTTP API.
fn clients(url: &str, alice_dir: &Path, bob_dir: &Path) -> Res<UsersView> {
    // 2. Accounts.
    heading("2. Alice and Bob create accounts, each on their own device");
    let t = Instant::now();
    let params = KdfParams::calibrate(DEFAULT_TARGET);
    println!(
        "device KDF: PBKDF2-HMAC-SHA256, {} iterations (calibrated to ~{} ms on this machine; floor 600,000) in {:.2?}",
        fmt_int(u64::from(params.iterations())),
        DEFAULT_TARGET.as_millis(),
        t.elapsed()
    );
    // Each device has its own client; the default options: the real KDF policy (a server
    // offering fewer than 600,000 iterations at login is refused), retries, time-outs.
    let alice_device = Server::connect(url, ServerOptions::new())?;
    let bob_device = Server::connect(url, ServerOptions::new())?;
    let alice_password = Password::from(ALICE_PASSWORD);
    let bob_password = Password::from(BOB_PASSWORD);

    for (name, device, password, kdf) in [
        ("alice", &alice_device, &alice_password, params),
        // Bob's device is this machine too: same count, a fresh salt.
        (
            "bob",
            &bob_device,
            &bob_password,
            KdfParams::with_iterations(params.iterations())?,
        ),
    ] {
        let t = Instant::now();
        let registration = device.register(name, password, &kdf, &KeyringOptions::new())?;
        println!(
            "{name:<5} registered: user {} in {:.2?} (RSA-2048 signing, P-256 exchange, AES-256 keys)",
            registration.keyring.id(),
            t.elapsed()
        );
        println!(
            "      recovery code, shown once: {}",
            registration.recovery_code.expose_formatted().as_str()
        );
    }
    println!(
        "the server received a login secret derived from each password, the sealed keyring and \
         the public identity; never a password or a key"
    );

    let t = Instant::now();
    let (alice_session, alice_keyring) =
        alice_device.login_and_unlock("alice", &alice_password, &Login::new())?;
    let (bob_session, bob_keyring) =
        bob_device.login_and_unlock("bob", &bob_password, &Login::new())?;
    println!(
        "both logged in and unlocked their keyrings downloaded from the server in {:.2?}",
        t.elapsed()
    );
    let alice = Vault::open(
        alice_session.store(),
        alice_keyring,
        LocalState::open(alice_dir.join("state"))?,
    );
    let bob = Vault::open(
        bob_session.store(),
        bob_keyring,
        LocalState::open(bob_dir.join("state"))?,
    );

    // 3. Alice stores a folder.
    heading(&format!(
        "3. Alice stores a folder in her collection {COLLECTION:?}"
    ));
    let folder = alice_dir.join("expedition");
    let originals = make_folder(&folder)?;
    let t = Instant::now();
    let mut collection = alice.collection(COLLECTION)?;
    let mut batch = collection.batch();
    let mut total = 0u64;
    for (name, path) in &originals {
        let mut file = fs::File::open(path)?;
        batch.put_reader(name, &mut file, &PutOptions::default())?;
        total += fs::metadata(path)?.len();
    }
    batch.commit()?;
    println!(
        "uploaded {} files, {} bytes, sealed page by page, one signed manifest, in {:.2?}:",
        originals.len(),
        fmt_int(total),
        t.elapsed()
    );
    for listing in collection.list() {
        let pages = collection
            .manifest()
            .entries
            .get(&listing.id)
            .map_or(0, |e| e.page_count);
        println!(
            "  {:<34} {:>11} B  {pages} page(s)",
            listing.name,
            fmt_int(listing.size)
        );
    }

    // 4. Fingerprints, then the share.
    heading("4. Alice checks Bob's identity, then shares the collection with him");
    let bob_id = alice_session.lookup_user("bob")?;
    println!("the server's directory says \"bob\" is user {bob_id}");
    let bob_identity = alice.fetch_identity(bob_id)?; // self-signature verified, pinned
    let alice_identity = bob.fetch_identity(alice.keyring().id())?;
    let seen_by_alice = bob_identity.fingerprint();
    let shown_by_bob = bob.identity().fingerprint();
    println!("Bob's fingerprint, computed on Alice's device from the downloaded identity:");
    println!("  {seen_by_alice}");
    println!("Bob's fingerprint, as Bob's own device shows it:");
    println!("  {shown_by_bob}");
    let number_alice = alice.safety_number(&bob_identity);
    let number_bob = bob.safety_number(&alice_identity);
    println!("safety number Alice<->Bob on Alice's device: {number_alice}");
    println!("safety number Alice<->Bob on Bob's device:   {number_bob}");
    if seen_by_alice != shown_by_bob || number_alice != number_bob {
        return Err("the fingerprints differ: the server substituted a key; not sharing".into());
    }
    println!("they match (read aloud or compared in person): the key is Bob's, not the server's");
    collection.share_with(&bob_identity)?;
    println!(
        "shared: the collection key sealed to Bob's P-256 key (HPKE) in an envelope signed by Alice"
    );

    // 5. Bob syncs and checks every byte.
    heading("5. Bob syncs on his device and reads the shared collection");
    let t = Instant::now();
    let incoming = bob.incoming()?;
    let item = incoming
        .iter()
        .find(|i| i.collection == collection.id())
        .ok_or("the share did not reach Bob")?;
    println!(
        "bob's incoming shares: {} (from {}, signed by a pinned identity)",
        incoming.len(),
        item.granter
    );
    let mut shared = bob.shared_collection(item.owner, item.collection)?;
    println!(
        "bob opens {:?} (manifest version {}, signed by Alice):",
        shared.manifest().name,
        shared.manifest().version
    );
    let downloads = bob_dir.join("downloads");
    let mut checked = 0u64;
    for listing in shared.list() {
        let target = safe_join(&downloads, &listing.name)?;
        if let Some(parent) = target.parent() {
            fs::create_dir_all(parent)?;
        }
        let mut out = fs::File::create(&target)?;
        io::copy(&mut shared.open(&listing.name)?, &mut out)?;
        let original = originals
            .get(&listing.name)
            .ok_or_else(|| format!("bob sees {:?}, which Alice did not store", listing.name))?;
        if !same_bytes(original, &target)? {
            return Err(format!("{:?} differs from Alice's file", listing.name).into());
        }
        checked += listing.size;
        println!(
            "  {:<34} {:>11} B  identical to Alice's file, byte for byte",
            listing.name,
            fmt_int(listing.size)
        );
    }
    if shared.list().len() != originals.len() {
        return Err("bob does not see every file Alice stored".into());
    }
    println!(
        "verified {} files, {} bytes, in {:.2?}",
        originals.len(),
        fmt_int(checked),
        t.elapsed()
    );

    let addendum: &[u8] = b"Addendum: the sled dogs arrive on the 14th, two days early.\n";
    collection.put("notes/addendum.txt", addendum)?;
    shared.refresh()?;
    let synced = shared.get("notes/addendum.txt")?;
    if synced != addendum {
        return Err("bob read another addendum than Alice wrote".into());
    }
    println!(
        "alice adds notes/addendum.txt; bob refreshes: manifest version {}, {:?}",
        shared.manifest().version,
        String::from_utf8_lossy(&synced).trim_end()
    );

    let mut secrets = vec![
        (format!("collection name {COLLECTION:?}"), COLLECTION.into()),
        ("alice's password".to_owned(), ALICE_PASSWORD.into()),
        ("bob's password".to_owned(), BOB_PASSWORD.into()),
        (
            "content of notes/addendum.txt".to_owned(),
            addendum[..40].to_vec(),
        ),
    ];
    for (name, path) in &originals {
        secrets.push((format!("file name {name:?}"), name.as_bytes().to_vec()));
        if let Some((_, base)) = name.rsplit_once('/') {
            secrets.push((format!("file name {base:?}"), base.as_bytes().to_vec()));
        }
        let content = fs::read(path)?;
        let mid = content.len() / 2;
        let snippet = content[mid.saturating_sub(24)..(mid + 24).min(content.len())].to_vec();
        secrets.push((format!("48 bytes from the middle of {name}"), snippet));
    }
    let view = UsersView {
        collection: collection.id(),
        kdf_iterations: params.iterations(),
        alice: alice.keyring().id().to_string(),
        bob: bob.keyring().id().to_string(),
        manifest_version: collection.manifest().version,
        key_epoch: collection.manifest().key_epoch,
        listing: collection.list(),
        secrets,
    };
    drop(shared);
    drop(collection);
    drop((alice, bob));
    alice_session.logout()?;
    bob_session.logout()?;
    println!("both log out");
    Ok(view)
}

/// Alice's folder: a text file, a ~5 MiB binary, a nested directory. Returns object name →
/// path.
fn make_folder(root: &Path) -> Res<BTreeMap<String, PathBuf>> {
    let files: [(&str, Vec<u8>); 4] = [
        (
            "launch-plan.txt",
            "Expedition plan\n\nDeparture from Tromsø on 3 March at 06:40.\n\
             Base camp at the northern moraine; radio check every six hours.\n"
                .into(),
        ),
        ("recordings/aurora-timelapse.raw", noise(BINARY_LEN, 0x5eed)),
        (
            "budget/2025/q3-figures.csv",
            "item,amount_eur\nsatellite phone rental,1840\nfuel depot,2675\nmedical kit,410\n"
                .into(),
        ),
        (
            "budget/2025/suppliers/contacts.txt",
            "Polar Outfitters AS: Ingrid Haugen, +47 555 01 234\n".into(),
        ),
    ];
    let mut out = BTreeMap::new();
    for (name, bytes) in files {
        let path = root.join(name);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)?;
        }
        fs::write(&path, bytes)?;
        out.insert(name.to_owned(), path);
    }
    Ok(out)
}

/// Bytes that do not compress (xorshift64), so the binary takes several full pages.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 32) as u8
        })
        .collect()
}

/// `base/name` for an object name from a manifest, refusing names that would leave `base`.
fn safe_join(base: &Path, name: &str) -> Res<PathBuf> {
    let relative = Path::new(name);
    if name.is_empty()
        || !relative
            .components()
            .all(|c| matches!(c, Component::Normal(_)))
    {
        return Err(format!("refusing to write the object name {name:?} to disk").into());
    }
    Ok(base.join(relative))
}

/// Whether two files hold the same bytes.
fn same_bytes(a: &Path, b: &Path) -> Res<bool> {
    let (mut fa, mut fb) = (fs::File::open(a)?, fs::File::open(b)?);
    let (mut ba, mut bb) = (vec![0u8; 64 * 1024], vec![0u8; 64 * 1024]);
    loop {
        let n = read_full(&mut fa, &mut ba)?;
        let m = read_full(&mut fb, &mut bb)?;
        if n != m || ba[..n] != bb[..m] {
            return Ok(false);
        }
        if n == 0 {
            return Ok(true);
        }
    }
}

fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

// ---------------------------------------------------------------------------------------
// The server, in-process.

/// `vault-server` on 127.0.0.1, on a tokio runtime of its own thread, over a sled data
/// directory: set up as the binary sets itself up (store check, calibrated verifier, decoy
/// key, MFA key file in the data directory, default limits).
struct InProcessServer {
    url: String,
    verifier_iterations: u32,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<Result<(), String>>>,
}

impl InProcessServer {
    fn start(data_dir: &Path) -> Res<Self> {
        let backend = SledBackend::open(data_dir)?; // refuses a damaged store
        let policy = VerifierPolicy::calibrate(verifier::DEFAULT_TARGET);
        let decoy = api::load_decoy_key(&backend)?;
        let mfa_key = MfaKey::load_or_create(&data_dir.join("mfa.key"), &mut OsRng)
            .map_err(|e| format!("the MFA key file: {e}"))?;
        let state = Arc::new(
            AppState::new(backend, policy, decoy, Config::default()).with_mfa_key(mfa_key),
        );
        let (ready, listening) = mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let thread = std::thread::Builder::new()
            .name("vault-server".into())
            .spawn(move || serve(state, ready, stopped))?;
        let mut server = Self {
            url: String::new(),
            verifier_iterations: policy.iterations(),
            stop: Some(stop),
            thread: Some(thread),
        };
        match listening.recv() {
            Ok(address) => server.url = format!("http://{address}"),
            // The thread ended before it listened: its result says why.
            Err(_) => {
                server.stop()?;
                return Err("the server thread ended before it listened".into());
            }
        }
        Ok(server)
    }

    /// Stops accepting, lets requests in flight finish, closes the store.
    fn stop(&mut self) -> Res<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.thread.take().map(JoinHandle::join) {
            None => Ok(()),
            Some(Ok(result)) => result.map_err(Into::into),
            Some(Err(_)) => Err("the server thread panicked".into()),
        }
    }
}

impl Drop for InProcessServer {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

/// The server thread: binds 127.0.0.1:0, reports the address, serves until told to stop
/// (or until the handle is dropped), then closes the store outside the runtime.
fn serve(
    state: Arc<AppState<SledBackend>>,
    ready: mpsc::Sender<SocketAddr>,
    stopped: tokio::sync::oneshot::Receiver<()>,
) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    let store = Arc::clone(&state);
    let result = runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| format!("cannot listen on 127.0.0.1: {e}"))?;
        let address = listener
            .local_addr()
            .map_err(|e| format!("cannot read the listening address: {e}"))?;
        let (stop_api, api_stopped) = tokio::sync::oneshot::channel::<()>();
        let mut task = tokio::spawn(api::serve(listener, state, async {
            let _ = api_stopped.await;
        }));
        if ready.send(address).is_err() {
            return Ok(()); // nobody waits for this server
        }
        tokio::select! {
            result = &mut task => return joined(result),
            _ = stopped => {}
        }
        let _ = stop_api.send(());
        match tokio::time::timeout(Duration::from_secs(10), &mut task).await {
            Ok(result) => joined(result),
            Err(_) => {
                task.abort();
                Err("requests were still running 10 s after the stop".to_owned())
            }
        }
    });
    runtime.shutdown_timeout(Duration::from_secs(5));
    drop(store); // every task is gone: the sled database closes here
    result
}

fn joined(result: Result<io::Result<()>, tokio::task::JoinError>) -> Result<(), String> {
    match result {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("the server failed: {e}")),
        Err(e) => Err(format!("the server task failed: {e}")),
    }
}

// ---------------------------------------------------------------------------------------
// What the server holds: its sled trees (docs/spec/storage.md §1) and its files.

#[derive(Default)]
struct ObjectHeld {
    header: Option<usize>,
    pages: Vec<u32>,
}

#[derive(Default)]
struct CollectionHeld {
    owner: Option<[u8; 16]>,
    bytes: u64,
    manifest: Option<(u64, usize)>,
    keys: Vec<(u32, usize)>,
    envelopes: Vec<([u8; 16], u32, usize)>,
    objects: BTreeMap<([u8; 16], u64), ObjectHeld>,
}

struct ServerView {
    /// Every tree: name, entries, key and value bytes.
    trees: Vec<(String, usize, u64)>,
    collections: BTreeMap<[u8; 16], CollectionHeld>,
}

impl ServerView {
    /// Reads the data directory of a stopped server with sled itself.
    fn read(data_dir: &Path) -> Res<Self> {
        let db = open_sled(data_dir)?;
        let mut view = ServerView {
            trees: Vec::new(),
            collections: BTreeMap::new(),
        };
        for name in db.tree_names() {
            let tree = db.open_tree(&name)?;
            let label = String::from_utf8_lossy(&name).into_owned();
            let (mut entries, mut bytes) = (0usize, 0u64);
            for item in tree.iter() {
                let (k, v) = item?;
                entries += 1;
                bytes += (k.len() + v.len()) as u64;
                view.note(&label, &k, &v);
            }
            view.trees.push((label, entries, bytes));
        }
        view.trees.sort();
        Ok(view)
    }

    fn note(&mut self, tree: &str, k: &[u8], v: &[u8]) {
        let id16 = |b: &[u8]| -> Option<[u8; 16]> { b.get(..16)?.try_into().ok() };
        let be64 =
            |b: &[u8]| -> Option<u64> { Some(u64::from_be_bytes(b.get(..8)?.try_into().ok()?)) };
        let be32 =
            |b: &[u8]| -> Option<u32> { Some(u32::from_be_bytes(b.get(..4)?.try_into().ok()?)) };
        match (tree, k.len()) {
            // id → kind ‖ owner ‖ u64 bytes ‖ u64 seq; kind 1 is a collection.
            ("scopes", 16) if v.first() == Some(&1) => {
                if let (Some(c), Some(owner), Some(bytes)) = (
                    id16(k),
                    v.get(1..).and_then(id16),
                    v.get(17..).and_then(be64),
                ) {
                    let held = self.collections.entry(c).or_default();
                    held.owner = Some(owner);
                    held.bytes = bytes;
                }
            }
            ("manifests", 16) => {
                if let (Some(c), Some(version)) = (id16(k), be64(v)) {
                    self.collections.entry(c).or_default().manifest = Some((version, v.len() - 8));
                }
            }
            ("ckeys", 20) => {
                if let (Some(c), Some(epoch)) = (id16(k), be32(&k[16..])) {
                    self.collections
                        .entry(c)
                        .or_default()
                        .keys
                        .push((epoch, v.len()));
                }
            }
            ("envelopes", 52) => {
                if let (Some(recipient), Some(target), Some(epoch)) =
                    (id16(k), id16(&k[32..]), be32(&k[48..]))
                {
                    let held = self.collections.entry(target).or_default();
                    held.envelopes.push((recipient, epoch, v.len()));
                }
            }
            ("headers", 40) => {
                if let (Some(c), Some(o), Some(version)) = (id16(k), id16(&k[16..]), be64(&k[32..]))
                {
                    let held = self.collections.entry(c).or_default();
                    held.objects.entry((o, version)).or_default().header = Some(v.len());
                }
            }
            // key ‖ u32 index → pack u32 ‖ offset u64 ‖ len u32 (the bytes are in the pack).
            ("pages", 44) => {
                if let (Some(c), Some(o), Some(version), Some(len)) = (
                    id16(k),
                    id16(&k[16..]),
                    be64(&k[32..]),
                    v.get(12..).and_then(be32),
                ) {
                    let held = self.collections.entry(c).or_default();
                    held.objects
                        .entry((o, version))
                        .or_default()
                        .pages
                        .push(len);
                }
            }
            _ => {}
        }
    }
}

/// Opens a sled database whose previous owner just closed it (sled releases its directory
/// lock from a background thread shortly after).
fn open_sled(dir: &Path) -> Res<sled::Db> {
    let mut tries = 0;
    loop {
        match sled::Config::new().path(dir).open() {
            Ok(db) => return Ok(db),
            Err(sled::Error::Io(e)) if tries < 40 && e.to_string().contains("acquire lock") => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => return Err(format!("cannot open the server's sled database: {e}").into()),
        }
    }
}

/// Every regular file under the data directory, with its bytes.
fn data_files(dir: &Path) -> Res<Vec<(PathBuf, Vec<u8>)>> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        for entry in fs::read_dir(&d)? {
            let entry = entry?;
            let kind = entry.file_type()?;
            if kind.is_dir() {
                pending.push(entry.path());
            } else if kind.is_file() {
                let relative = entry.path().strip_prefix(dir)?.to_path_buf();
                out.push((relative, fs::read(entry.path())?));
            }
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// What to look for in the stored bytes: (label, bytes, must be absent).
fn needles(view: &UsersView) -> Vec<(String, Vec<u8>, bool)> {
    let mut out: Vec<(String, Vec<u8>, bool)> = view
        .secrets
        .iter()
        .map(|(label, bytes)| (label.clone(), bytes.clone(), true))
        .collect();
    // The control: login names are stored (the server's name directory needs them to log
    // users in), so the scan must find them.
    out.push((
        "login name \"alice\" (control)".to_owned(),
        b"alice".to_vec(),
        false,
    ));
    out
}

/// For each needle, the files that hold it.
fn scan(
    files: &[(PathBuf, Vec<u8>)],
    needles: &[(String, Vec<u8>, bool)],
) -> Res<Vec<Vec<PathBuf>>> {
    let mut found = vec![Vec::new(); needles.len()];
    for (path, bytes) in files {
        for (i, (_, needle, _)) in needles.iter().enumerate() {
            if needle.is_empty() {
                return Err("an empty search string".into());
            }
            if contains(bytes, needle) {
                found[i].push(path.clone());
            }
        }
    }
    Ok(found)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    let first = needle[0];
    haystack
        .iter()
        .enumerate()
        .filter(|(_, b)| **b == first)
        .any(|(i, _)| haystack[i..].starts_with(needle))
}

// ---------------------------------------------------------------------------------------
// Output.

fn heading(title: &str) {
    println!("\n== {title}");
}

fn fmt_int(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn short(id: &[u8]) -> String {
    let hex: String = id.iter().take(6).map(|b| format!("{b:02x}")).collect();
    format!("{hex}…")
}

const LEFT: usize = 52;

fn row(left: &str, right: &str) {
    let pad = LEFT.saturating_sub(left.chars().count());
    println!("{left}{} │ {right}", " ".repeat(pad));
}

fn print_side_by_side(users: &UsersView, held: &ServerView) {
    let name_of = |id: &[u8; 16]| -> String {
        let hex: String = id.iter().map(|b| format!("{b:02x}")).collect();
        if hex == users.alice {
            "alice".to_owned()
        } else if hex == users.bob {
            "bob".to_owned()
        } else {
            "?".to_owned()
        }
    };
    println!();
    row(
        "WHAT ALICE AND BOB SEE (decrypted on their devices)",
        "WHAT THE SERVER HOLDS (read from its sled trees)",
    );
    row(&"─".repeat(LEFT), &"─".repeat(66));
    let Some(c) = held.collections.get(users.collection.as_bytes()) else {
        row(
            &format!("collection {COLLECTION:?}"),
            "(not found on the server!)",
        );
        return;
    };
    let owner = c.owner.map(|o| short(&o)).unwrap_or_else(|| "?".into());
    row(
        &format!("collection {COLLECTION:?}, owner alice"),
        &format!(
            "collection {} owner {owner}: {} B stored",
            short(users.collection.as_bytes()),
            fmt_int(c.bytes)
        ),
    );
    let manifest = c
        .manifest
        .map(|(v, len)| {
            format!(
                "manifest head v{v}: {} B, sealed and signed",
                fmt_int(len as u64)
            )
        })
        .unwrap_or_else(|| "no manifest".into());
    row(
        &format!(
            "  manifest version {}, key epoch {}",
            users.manifest_version, users.key_epoch
        ),
        &format!("  {manifest}"),
    );
    for (epoch, len) in &c.keys {
        row(
            "  the collection key (AES-256)",
            &format!("  wrapped key epoch {epoch}: {len} B"),
        );
    }
    for (recipient, epoch, len) in &c.envelopes {
        row(
            &format!("  shared with {}", name_of(recipient)),
            &format!(
                "  envelope for {} epoch {epoch}: {} B",
                short(recipient),
                fmt_int(*len as u64)
            ),
        );
    }
    // Rows matched by object id, which only the devices can map to a name (the server's
    // order is that of the random ids).
    let names: BTreeMap<ObjectId, &Listing> = users.listing.iter().map(|l| (l.id, l)).collect();
    for ((object, version), o) in &c.objects {
        let left = match names.get(&ObjectId::from_bytes(*object)) {
            Some(l) => format!("  {:<34} {:>11} B", l.name, fmt_int(l.size)),
            None => "  (an older version)".to_owned(),
        };
        let page_bytes: u64 = o.pages.iter().map(|p| u64::from(*p)).sum();
        let header = o
            .header
            .map(|h| fmt_int(h as u64))
            .unwrap_or_else(|| "no".into());
        row(
            &left,
            &format!(
                "  object {} v{version}: header {header} B, {} page(s) {} B",
                short(object),
                o.pages.len(),
                fmt_int(page_bytes)
            ),
        );
    }
    println!(
        "\nThe server sees random ids, version numbers and padded sizes. Names, contents, sizes to \
         the byte and the collection key are inside sealed bytes only the devices open."
    );
    println!(
        "\nevery sled tree of the server (entries, key+value bytes; page bytes are in pack files):"
    );
    for (name, entries, bytes) in &held.trees {
        if *entries > 0 {
            println!("  {name:<20} {entries:>4} {:>11} B", fmt_int(*bytes));
        }
    }
}

fn print_files(files: &[(PathBuf, Vec<u8>)]) {
    println!("\nthe files of the data directory:");
    for (path, bytes) in files {
        println!(
            "  {:<40} {:>11} B",
            path.display(),
            fmt_int(bytes.len() as u64)
        );
    }
}

/// Prints the scan; returns how many secrets were found.
fn print_scan(needles: &[(String, Vec<u8>, bool)], found: &[Vec<PathBuf>]) -> usize {
    println!("\nsearching every byte of those files:");
    let mut leaked = 0;
    for ((label, _, secret), hits) in needles.iter().zip(found) {
        let verdict = match (hits.is_empty(), secret) {
            (true, true) => "not found".to_owned(),
            (true, false) => "not found (the control should have been found!)".to_owned(),
            (false, true) => {
                leaked += 1;
                format!("FOUND in {}", join(hits))
            }
            (false, false) => format!("found in {} (expected: the login directory)", join(hits)),
        };
        println!("  {label:<66} {verdict}");
    }
    leaked
}

fn join(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}
