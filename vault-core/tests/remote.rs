//! The sync client (feature `remote`, docs/spec/client.md) against the real server,
//! in-process on a sled directory: registration and login, a `Vault` on a `RemoteStore`
//! (small and multi-page objects, a manifest conflict between two devices), sharing with a
//! user and with a group through envelopes, TOTP at login and elevation, a wrong password,
//! a password change, and TLS with a pinned self-signed certificate.
//!
//! The server uses a fast login verifier (`danger-insecure-test-policy`) and the keyrings a
//! 10-iteration KDF (`danger-insecure-test-kdf`, accepted by the client's test policy).
#![cfg(feature = "remote")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac};
use rand_core::OsRng;
use tokio::sync::oneshot;
use vault_core::remote::{
    Login, OtpKind, RemoteError, SecondFactor, Server, ServerOptions, Session,
};
use vault_core::{Error, LocalState, PutOptions, Store, Vault};
use vault_keyring::danger::{insecure_test_params, insecure_test_policy};
use vault_keyring::{KdfParams, Keyring, KeyringOptions, Password};
use vault_server::api::{self, AppState, Clock};
use vault_server::auth::VerifierPolicy;
use vault_server::config::Config;
use vault_server::store::SledBackend;
use vault_server::tls::{self, SelfSigned, TlsServer};

/// The test servers' clock (Unix seconds); manual, so TOTP steps move when the test says.
const T0: u64 = 1_700_000_000;

/// A server on 127.0.0.1 over a fresh sled directory, on its own runtime; stopped when
/// dropped.
struct TestServer {
    runtime: tokio::runtime::Runtime,
    url: String,
    clock: Clock,
    /// With TLS: the certificate (PEM) and its SHA-256 fingerprint.
    cert: Option<(String, [u8; 32])>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    _dir: tempfile::TempDir,
}

impl TestServer {
    fn start(with_tls: bool) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let backend = SledBackend::open(dir.path()).unwrap();
        let decoy = api::load_decoy_key(&backend).unwrap();
        let clock = Clock::manual(T0);
        let state = Arc::new(
            AppState::new(
                backend,
                VerifierPolicy::insecure_test_policy(1_000),
                decoy,
                Config::default(),
            )
            .with_clock(clock.clone()),
        );
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let port = listener.local_addr().unwrap().port();
        let (stop, stopped) = oneshot::channel::<()>();
        let shutdown = async {
            let _ = stopped.await;
        };
        let (task, url, cert) = if with_tls {
            let names: Vec<String> = tls::DEFAULT_CERT_NAMES.map(str::to_owned).to_vec();
            let pair = SelfSigned::generate(&names, 1).unwrap();
            let server =
                TlsServer::from_pem(pair.cert_pem().as_bytes(), pair.key_pem().as_bytes()).unwrap();
            let task = runtime.spawn(tls::serve_tls(listener, state, server, shutdown));
            let cert = (pair.cert_pem().to_owned(), pair.fingerprint());
            (task, format!("https://localhost:{port}"), Some(cert))
        } else {
            let task = runtime.spawn(api::serve(listener, state, shutdown));
            (task, format!("http://127.0.0.1:{port}"), None)
        };
        Self {
            runtime,
            url,
            clock,
            cert,
            stop: Some(stop),
            task: Some(task),
            _dir: dir,
        }
    }

    /// Client options for this server: the test KDF policy, quick retries.
    fn options() -> ServerOptions {
        ServerOptions::new()
            .kdf_policy(insecure_test_policy(1_000))
            .timeout(Duration::from_secs(60))
    }

    fn client(&self) -> Server {
        Server::connect(&self.url, Self::options()).unwrap()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = self
                .runtime
                .block_on(async { tokio::time::timeout(Duration::from_secs(10), task).await });
        }
    }
}

fn kdf() -> KdfParams {
    insecure_test_params(&mut OsRng, 10)
}

fn register(server: &Server, name: &str, password: &str) -> Keyring {
    server
        .register(
            name,
            &Password::from(password),
            &kdf(),
            &KeyringOptions::new(),
        )
        .unwrap()
        .keyring
}

fn login(server: &Server, name: &str, password: &str) -> (Session, Keyring) {
    server
        .login_and_unlock(name, &Password::from(password), &Login::new())
        .unwrap()
}

/// Bytes that do not compress much (so a 3 MiB object takes several pages).
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

#[test]
fn register_login_objects_and_manifest_conflict() {
    let ts = TestServer::start(false);
    let server = ts.client();
    let registered = register(&server, "alice", "alice's password");

    let (session, keyring) = login(&server, "alice", "alice's password");
    assert_eq!(session.user(), registered.id());
    assert_eq!(keyring.id(), registered.id());
    assert_eq!(session.lookup_user("alice").unwrap(), registered.id());
    assert!(matches!(
        session.lookup_user("nobody"),
        Err(RemoteError::NotFound)
    ));
    let identity = session.identity(registered.id()).unwrap();
    assert_eq!(identity.fingerprint(), registered.fingerprint());
    // No secret in Debug output.
    let debug = format!("{session:?}");
    assert!(!debug.contains(session.expose_token()));

    // Device A: a small object and one of 3 MiB in 1 MiB pages.
    let vault_a = Vault::open(session.store(), keyring, LocalState::in_memory());
    let mut docs = vault_a.collection("docs").unwrap();
    docs.put("hello.txt", b"hello, server").unwrap();
    let big = noise(3 * 1024 * 1024 + 12_345, 7);
    docs.put_reader("big.bin", &mut &big[..], &PutOptions::default())
        .unwrap();
    assert_eq!(docs.get("hello.txt").unwrap(), b"hello, server");
    let mut back = Vec::new();
    docs.open("big.bin")
        .unwrap()
        .read_to_end(&mut back)
        .unwrap();
    assert_eq!(back, big);
    assert!(vault_a
        .store()
        .list_collections()
        .unwrap()
        .contains(&docs.id()));

    // Device B: another login, another local state; sees the same collection.
    let (session_b, keyring_b) = login(&server, "alice", "alice's password");
    let vault_b = Vault::open(session_b.store(), keyring_b, LocalState::in_memory());
    let mut docs_b = vault_b.collection("docs").unwrap();
    assert_eq!(docs_b.get("big.bin").unwrap(), big);
    assert_eq!(docs_b.list().len(), 2);

    // Both devices hold the same manifest version; the first write wins the compare-and-swap,
    // the second merges with it (nothing overwritten, nothing lost).
    docs.put("from-a.txt", b"a").unwrap();
    docs_b.put("from-b.txt", b"b").unwrap();
    assert_eq!(docs_b.get("from-a.txt").unwrap(), b"a");
    docs.refresh().unwrap();
    assert_eq!(docs.get("from-b.txt").unwrap(), b"b");
    assert_eq!(docs.get("from-a.txt").unwrap(), b"a");

    // Deleting reclaims the pages on the server; logout ends the session.
    docs.delete("big.bin").unwrap();
    assert!(matches!(docs.get("big.bin"), Err(Error::NotFound)));
    session.logout().unwrap();
    match vault_a.collection("docs") {
        Err(e) => assert!(matches!(RemoteError::from(e), RemoteError::SessionEnded)),
        Ok(_) => panic!("a logged-out session still works"),
    }
}

/// Two devices of one user write the same collection at the same time through the real
/// server, in threads: each writes its own files and both overwrite and delete shared ones.
/// Every compare-and-swap loser merges (pages.md §6.1); at the end every file either device
/// wrote is there, by name or as a conflict copy, with its exact bytes.
#[test]
fn two_writers_through_the_server_lose_nothing() {
    use std::collections::BTreeSet;
    use std::sync::Barrier;

    let ts = TestServer::start(false);
    let server = ts.client();
    register(&server, "alice", "pw");
    let (session, keyring) = login(&server, "alice", "pw");
    let seed = Vault::open(session.store(), keyring, LocalState::in_memory());
    let mut docs = seed.collection("docs").unwrap();
    for i in 0..4 {
        docs.put(&format!("shared-{i}.txt"), b"original").unwrap();
    }
    docs.put("victim.txt", b"original").unwrap();

    const ROUNDS: usize = 6;
    let barrier = Arc::new(Barrier::new(2));
    let writers: Vec<_> = ["a", "b"]
        .into_iter()
        .map(|who| {
            let (session, keyring) = login(&server, "alice", "pw");
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let vault = Vault::open(session.store(), keyring, LocalState::in_memory());
                let mut docs = vault.collection("docs").unwrap();
                let mut wrote = Vec::new();
                for round in 0..ROUNDS {
                    barrier.wait();
                    let own = format!("{who}-{round}.txt");
                    let shared = format!("shared-{}.txt", round % 4);
                    let body = format!("{who} round {round}").into_bytes();
                    let mut batch = docs.batch();
                    batch.put(&own, &body).unwrap();
                    batch.put(&shared, &body).unwrap();
                    if round == 3 {
                        // One deletes what the other overwrites in the same round.
                        if who == "a" {
                            batch.delete("victim.txt").unwrap();
                        } else {
                            batch.put("victim.txt", b"b keeps this").unwrap();
                        }
                    }
                    batch.commit().unwrap();
                    wrote.push((own, body.clone()));
                    wrote.push((shared, body));
                }
                wrote
            })
        })
        .collect();
    let mut expected: Vec<(String, Vec<u8>)> = Vec::new();
    for w in writers {
        expected.extend(w.join().unwrap());
    }

    docs.refresh().unwrap();
    let mut present: BTreeSet<Vec<u8>> = BTreeSet::new();
    for listing in docs.list() {
        present.insert(docs.get(&listing.name).unwrap());
    }
    for (name, body) in &expected {
        if name.starts_with("shared-") {
            // A shared file may have been overwritten by a later round; the bytes of the
            // last write of each round survive by name or as a conflict copy.
            continue;
        }
        assert_eq!(&docs.get(name).unwrap(), body, "{name}");
    }
    // Every round's shared write that was not replaced later by the same device survives.
    for who in ["a", "b"] {
        for round in ROUNDS - 4..ROUNDS {
            let body = format!("{who} round {round}").into_bytes();
            assert!(
                present.contains(&body),
                "{who} round {round} lost: {:?}",
                docs.list().iter().map(|l| &l.name).collect::<Vec<_>>()
            );
        }
    }
    // The change beats the concurrent deletion, whichever committed first.
    assert_eq!(docs.get("victim.txt").unwrap(), b"b keeps this");
}

#[test]
fn sharing_with_a_user_and_a_group() {
    let ts = TestServer::start(false);
    let server = ts.client();
    let alice_id = register(&server, "alice", "pw alice").id();
    let bob_id = register(&server, "bob", "pw bob").id();
    let carol_id = register(&server, "carol", "pw carol").id();

    let (alice_session, alice_keyring) = login(&server, "alice", "pw alice");
    let alice = Vault::open(
        alice_session.store(),
        alice_keyring,
        LocalState::in_memory(),
    );
    let (bob_session, bob_keyring) = login(&server, "bob", "pw bob");
    let bob = Vault::open(bob_session.store(), bob_keyring, LocalState::in_memory());
    let (carol_session, carol_keyring) = login(&server, "carol", "pw carol");
    let carol = Vault::open(
        carol_session.store(),
        carol_keyring,
        LocalState::in_memory(),
    );

    // Alice finds Bob by name, pins his identity, shares a collection with him.
    assert_eq!(alice_session.lookup_user("bob").unwrap(), bob_id);
    let bob_identity = alice.fetch_identity(bob_id).unwrap();
    let mut project = alice.collection("project").unwrap();
    project.put("plan.txt", b"the plan").unwrap();
    project.share_with(&bob_identity).unwrap();

    // Bob pins Alice, finds the share among his envelopes and reads it.
    bob.fetch_identity(alice_id).unwrap();
    let incoming = bob.incoming().unwrap();
    let item = incoming
        .iter()
        .find(|i| i.collection == project.id())
        .expect("the share reaches Bob");
    let shared = bob.shared_collection(item.owner, item.collection).unwrap();
    assert_eq!(shared.get("plan.txt").unwrap(), b"the plan");

    // Carol has no envelope: the server does not even show her the manifest.
    assert!(matches!(
        carol.shared_collection(item.owner, item.collection),
        Err(Error::NoAccess)
    ));

    // A group: Alice creates it (the server scope is created on the first roster), adds
    // Carol, and shares another collection with the group.
    let carol_identity = alice.fetch_identity(carol_id).unwrap();
    let mut team = alice.create_group().unwrap();
    team.add_member(&carol_identity, vault_core::Role::Member)
        .unwrap();
    let mut notes = alice.collection("team notes").unwrap();
    notes.put("minutes.txt", b"we met").unwrap();
    notes.share_with_group(team.id()).unwrap();

    carol.fetch_identity(alice_id).unwrap();
    assert!(carol.groups().unwrap().contains(&team.id()));
    let via_group = carol
        .incoming()
        .unwrap()
        .into_iter()
        .find(|i| i.collection == notes.id())
        .expect("the group share reaches Carol");
    let team_notes = carol
        .shared_collection(via_group.owner, via_group.collection)
        .unwrap();
    assert_eq!(team_notes.get("minutes.txt").unwrap(), b"we met");
}

/// RFC 6238 TOTP (HMAC-SHA-1, 6 digits, 30 s) of `secret` at `now`.
fn totp(secret: &[u8], now: u64) -> String {
    let mut mac = <Hmac<sha1::Sha1> as Mac>::new_from_slice(secret).unwrap();
    mac.update(&(now / 30).to_be_bytes());
    let h = mac.finalize().into_bytes();
    let offset = (h[19] & 0x0f) as usize;
    let bin = u32::from_be_bytes([
        h[offset] & 0x7f,
        h[offset + 1],
        h[offset + 2],
        h[offset + 3],
    ]);
    format!("{:06}", bin % 1_000_000)
}

#[test]
fn totp_login_and_elevation() {
    let ts = TestServer::start(false);
    let server = ts.client();
    let password = Password::from("dave's password");
    register(&server, "dave", "dave's password");
    let session = server.login("dave", &password, &Login::new()).unwrap();

    // Enrol TOTP.
    let enrolment = session.enroll_otp(OtpKind::Totp, &password).unwrap();
    let otp_secret = enrolment.secret_bytes().to_vec();
    session
        .confirm_otp(OtpKind::Totp, &totp(&otp_secret, ts.clock.now()))
        .unwrap();
    ts.clock.advance(30);

    // Without a factor: required; a wrong one: failed; the right one: a session.
    assert!(matches!(
        server.login("dave", &password, &Login::new()),
        Err(RemoteError::MfaRequired)
    ));
    let wrong = if totp(&otp_secret, ts.clock.now()) == "000000" {
        "111111"
    } else {
        "000000"
    };
    assert!(matches!(
        server.login(
            "dave",
            &password,
            &Login::new().second_factor(SecondFactor::totp(wrong))
        ),
        Err(RemoteError::MfaFailed)
    ));
    let code = totp(&otp_secret, ts.clock.now());
    let (session, keyring) = server
        .login_and_unlock(
            "dave",
            &password,
            &Login::new()
                .second_factor(SecondFactor::totp(&code))
                .trust_device("laptop"),
        )
        .unwrap();
    let device = session.device_token().unwrap().to_owned();
    assert_eq!(keyring.id(), session.user());

    // A trusted device logs in without a code.
    server
        .login("dave", &password, &Login::new().device_token(&device))
        .unwrap();

    // A password change is sensitive: it needs an elevation first.
    let new_password = Password::from("dave's new password");
    assert!(matches!(
        session.change_password(&password, &new_password, &kdf()),
        Err(RemoteError::ElevationRequired)
    ));
    ts.clock.advance(30);
    session
        .elevate(&SecondFactor::totp(&totp(&otp_secret, ts.clock.now())))
        .unwrap();
    session
        .change_password(&password, &new_password, &kdf())
        .unwrap();
    server
        .login_and_unlock("dave", &new_password, &Login::new().device_token(&device))
        .unwrap();
}

/// MFA enrolment and management through the client: status, TOTP enrolment (a wrong
/// password and a wrong code refused), confirmation with backup codes, a login that needs
/// the factor, a backup code that works once, new backup codes and turning MFA off (both
/// sensitive: elevation first).
#[test]
fn mfa_enrolment_backup_codes_and_disable() {
    let ts = TestServer::start(false);
    let server = ts.client();
    let password = Password::from("gina's password");
    register(&server, "gina", "gina's password");
    let session = server.login("gina", &password, &Login::new()).unwrap();

    let status = session.mfa_status().unwrap();
    assert!(!status.enabled && status.factors.is_empty() && status.pending.is_none());

    // A wrong password does not enrol.
    assert!(matches!(
        session.enroll_otp(OtpKind::Totp, &Password::from("not it")),
        Err(RemoteError::AuthenticationFailed)
    ));
    let enrolment = session.enroll_otp(OtpKind::Totp, &password).unwrap();
    assert_eq!(enrolment.kind(), OtpKind::Totp);
    assert_eq!(enrolment.digits(), 6);
    assert_eq!(enrolment.period(), Some(30));
    assert!(enrolment.expose_uri().starts_with("otpauth://totp/"));
    assert!(enrolment.expose_uri().contains(enrolment.expose_secret()));
    assert!(!format!("{enrolment:?}").contains(enrolment.expose_secret()));
    let otp_secret = enrolment.secret_bytes().to_vec();
    assert_eq!(session.mfa_status().unwrap().pending, Some(OtpKind::Totp));

    // A wrong code is refused and leaves the enrolment pending; the right one confirms it.
    let right = totp(&otp_secret, ts.clock.now());
    let wrong = if right == "000000" {
        "111111"
    } else {
        "000000"
    };
    assert!(matches!(
        session.confirm_otp(OtpKind::Totp, wrong),
        Err(RemoteError::MfaFailed)
    ));
    let codes = session.confirm_otp(OtpKind::Totp, &right).unwrap();
    assert_eq!(codes.len(), 10);
    assert!(!format!("{codes:?}").contains(codes.expose().next().unwrap()));
    let codes: Vec<String> = codes.expose().map(str::to_owned).collect();
    let status = session.mfa_status().unwrap();
    assert!(status.enabled);
    assert_eq!(status.factors.len(), 1);
    assert_eq!(status.factors[0].kind, OtpKind::Totp);
    assert_eq!(status.pending, None);
    assert_eq!(status.backup_codes_left, 10);

    // Logins need the factor now; a backup code works once.
    assert!(matches!(
        server.login("gina", &password, &Login::new()),
        Err(RemoteError::MfaRequired)
    ));
    let with_code = Login::new().second_factor(SecondFactor::backup_code(&codes[0]));
    let second = server.login("gina", &password, &with_code).unwrap();
    assert_eq!(second.backup_codes_left(), Some(9));
    assert!(matches!(
        server.login("gina", &password, &with_code),
        Err(RemoteError::MfaFailed)
    ));

    // New backup codes and turning MFA off are sensitive.
    assert!(matches!(
        session.new_backup_codes(),
        Err(RemoteError::ElevationRequired)
    ));
    assert!(matches!(
        session.disable_mfa(&password),
        Err(RemoteError::ElevationRequired)
    ));
    ts.clock.advance(30);
    session
        .elevate(&SecondFactor::totp(&totp(&otp_secret, ts.clock.now())))
        .unwrap();
    let fresh = session.new_backup_codes().unwrap();
    assert_eq!(fresh.len(), 10);
    // The old codes are gone.
    assert!(matches!(
        server.login(
            "gina",
            &password,
            &Login::new().second_factor(SecondFactor::backup_code(&codes[1]))
        ),
        Err(RemoteError::MfaFailed)
    ));
    assert!(matches!(
        session.disable_mfa(&Password::from("not it")),
        Err(RemoteError::AuthenticationFailed)
    ));
    session.disable_mfa(&password).unwrap();
    let status = session.mfa_status().unwrap();
    assert!(!status.enabled && status.factors.is_empty());
    assert_eq!(status.backup_codes_left, 0);
    server.login("gina", &password, &Login::new()).unwrap();
}

#[test]
fn wrong_password_and_password_change() {
    let ts = TestServer::start(false);
    let server = ts.client();
    let id = register(&server, "erin", "first password").id();
    assert!(matches!(
        server.login("erin", &Password::from("not it"), &Login::new()),
        Err(RemoteError::AuthenticationFailed)
    ));
    let (session, _) = login(&server, "erin", "first password");
    assert!(matches!(
        session.unlock_keyring(&Password::from("not it")),
        Err(RemoteError::AuthenticationFailed)
    ));
    assert!(matches!(
        session.change_password(
            &Password::from("not it"),
            &Password::from("second password"),
            &kdf()
        ),
        Err(RemoteError::AuthenticationFailed)
    ));
    session
        .change_password(
            &Password::from("first password"),
            &Password::from("second password"),
            &kdf(),
        )
        .unwrap();
    // Every session ended with the change.
    assert!(matches!(
        session.download_keyring(),
        Err(RemoteError::SessionEnded)
    ));
    assert!(matches!(
        server.login("erin", &Password::from("first password"), &Login::new()),
        Err(RemoteError::AuthenticationFailed)
    ));
    let (session, keyring) = login(&server, "erin", "second password");
    assert_eq!(keyring.id(), id);
    assert_eq!(session.user(), id);
    // The name is taken.
    assert!(matches!(
        server.register("erin", &Password::from("x"), &kdf(), &KeyringOptions::new()),
        Err(RemoteError::Exists)
    ));
}

#[test]
fn tls_with_a_pinned_or_trusted_certificate() {
    let ts = TestServer::start(true);
    let (pem, fingerprint) = ts.cert.clone().unwrap();

    // The right pin: a full account round trip over TLS.
    let pinned = Server::connect(&ts.url, TestServer::options().pin_sha256(fingerprint)).unwrap();
    let id = register(&pinned, "frank", "pw").id();
    let (session, _) = login(&pinned, "frank", "pw");
    assert_eq!(session.user(), id);

    // The certificate as a trust anchor works too.
    let trusted = Server::connect(
        &ts.url,
        TestServer::options().trust_ca_pem(pem.as_bytes()).unwrap(),
    )
    .unwrap();
    trusted
        .login("frank", &Password::from("pw"), &Login::new())
        .unwrap();

    // A wrong pin fails the handshake with the pin error (and is not retried).
    let mut wrong = fingerprint;
    wrong[0] ^= 1;
    let mismatch = Server::connect(&ts.url, TestServer::options().pin_sha256(wrong)).unwrap();
    let e = mismatch.login("frank", &Password::from("pw"), &Login::new());
    assert!(matches!(e, Err(RemoteError::PinMismatch)), "{e:?}");
    // Without a pin or a CA, the self-signed certificate is not trusted.
    let untrusted = Server::connect(&ts.url, TestServer::options()).unwrap();
    assert!(matches!(
        untrusted.login("frank", &Password::from("pw"), &Login::new()),
        Err(RemoteError::Tls)
    ));
    // The right pin and the CA together.
    let both = Server::connect(
        &ts.url,
        TestServer::options()
            .trust_ca_pem(pem.as_bytes())
            .unwrap()
            .pin_sha256(fingerprint),
    )
    .unwrap();
    both.login("frank", &Password::from("pw"), &Login::new())
        .unwrap();
}

#[test]
fn plain_http_only_to_loopback() {
    for url in [
        "http://vault.example.org",
        "http://192.0.2.10:8080",
        "http://[2001:db8::1]/",
    ] {
        assert!(
            matches!(
                Server::connect(url, ServerOptions::new()),
                Err(RemoteError::PlainHttpRefused)
            ),
            "{url}"
        );
    }
    for url in ["http://localhost:1", "http://127.0.0.1:1", "http://[::1]:1"] {
        Server::connect(url, ServerOptions::new()).unwrap();
    }
    for url in [
        "ftp://example.org",
        "https://user:pw@example.org",
        "not a url",
    ] {
        assert!(
            matches!(
                Server::connect(url, ServerOptions::new()),
                Err(RemoteError::InvalidUrl)
            ),
            "{url}"
        );
    }
}
