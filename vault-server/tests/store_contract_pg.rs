//! The storage contract run against the PostgreSQL backend (the shared suite is
//! `tests/contract/mod.rs`), plus what is particular to PostgreSQL: reopening a schema,
//! compare-and-swap and the change feed under concurrent connections, and refusing a
//! foreign or damaged schema.
//!
//! The database comes from `VAULT_TEST_DATABASE_URL` (`scripts/postgres.sh` starts a local
//! one and prints its URL). Without it every test prints why it is skipped and passes,
//! unless `VAULT_REQUIRE_POSTGRES=1`, which makes them fail instead. Each test works in a
//! schema of its own with a random name and drops it at the end.
#![cfg(feature = "postgres")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod contract;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};

use contract::{register, ALICE};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use rand_core::{OsRng, RngCore};
use vault_server::auth::SessionStore;
use vault_server::store::{
    AccountStore, Backend, Cas, ChangeKind, Created, DataStore, EnvelopeKey, ManifestSwap, PageKey,
    PgBackend, ScopeKind, Write,
};

const NO_QUOTA: u64 = u64::MAX;

/// The test database's URL, or `None` (after saying why) if the tests are to be skipped.
fn database_url(test: &str) -> Option<String> {
    match std::env::var("VAULT_TEST_DATABASE_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            assert!(
                std::env::var("VAULT_REQUIRE_POSTGRES").as_deref() != Ok("1"),
                "{test}: VAULT_REQUIRE_POSTGRES=1 but VAULT_TEST_DATABASE_URL is not set \
                 (scripts/postgres.sh starts a local PostgreSQL and prints its URL)"
            );
            println!(
                "{test}: skipped: VAULT_TEST_DATABASE_URL is not set (scripts/postgres.sh \
                 starts a local PostgreSQL and prints its URL; VAULT_REQUIRE_POSTGRES=1 makes \
                 this a failure)"
            );
            None
        }
    }
}

/// A schema of the test's own, dropped (with everything in it) when the test ends.
struct TestSchema {
    url: String,
    name: String,
}

impl TestSchema {
    fn new(url: String) -> Self {
        let mut bytes = [0u8; 8];
        OsRng.fill_bytes(&mut bytes);
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        Self {
            url,
            name: format!("t_{hex}"),
        }
    }

    fn connect(&self, pool_size: u32) -> Result<PgBackend, vault_server::store::BackendError> {
        PgBackend::connect(&self.url, Some(&self.name), pool_size)
    }

    /// A plain client on the same database, for what the backend never does.
    fn client(&self) -> postgres::Client {
        postgres::Client::connect(&self.url, postgres::NoTls).unwrap()
    }

    /// Runs SQL in the schema.
    fn sql(&self, sql: &str) {
        self.client()
            .batch_execute(&format!("SET search_path TO {}; {sql}", self.name))
            .unwrap();
    }
}

impl Drop for TestSchema {
    fn drop(&mut self) {
        if let Ok(mut c) = postgres::Client::connect(&self.url, postgres::NoTls) {
            let _ = c.batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name));
        }
    }
}

/// The schema and a backend on it, or `None` when skipped.
fn setup(test: &str, pool_size: u32) -> Option<(TestSchema, PgBackend)> {
    let schema = TestSchema::new(database_url(test)?);
    let backend = schema.connect(pool_size).unwrap();
    Some((schema, backend))
}

#[test]
fn pg_backend_keeps_the_contract() {
    let Some((_schema, b)) = setup("pg_backend_keeps_the_contract", 4) else {
        return;
    };
    contract::all(&b);
}

#[test]
fn invalid_settings_are_refused_before_connecting() {
    // No database needed: these fail before any connection is tried.
    for schema in ["Bad", "a-b", "pg_x", "x\"; DROP SCHEMA public; --", ""] {
        let e = PgBackend::connect("postgres://nobody@127.0.0.1:1/none", Some(schema), 1)
            .expect_err(schema);
        assert!(e.to_string().contains("invalid schema name"), "{e}");
    }
    let e = PgBackend::connect("postgres://nobody@127.0.0.1:1/none", Some("ok"), 0).unwrap_err();
    assert!(e.to_string().contains("at least one connection"), "{e}");
    let e = PgBackend::connect("postgres://u:secret-pw@[bad", None, 1).unwrap_err();
    assert!(!e.to_string().contains("secret-pw"), "{e}");
}

#[test]
fn pg_backend_survives_a_reopen() {
    let Some(url) = database_url("pg_backend_survives_a_reopen") else {
        return;
    };
    let schema = TestSchema::new(url);
    let c = [0xc1; 16];
    let mut rng = ChaCha20Rng::from_seed([6; 32]);
    let (token, seq) = {
        let s = schema.connect(2).unwrap();
        assert!(register(&s, ALICE, 1));
        assert_eq!(s.swap_keyring(&ALICE, 1, b"v2").unwrap(), Cas::Done);
        assert_eq!(
            s.create_scope(&c, ScopeKind::Collection, &ALICE).unwrap(),
            Created::Created
        );
        let key = PageKey {
            collection: c,
            object: [1; 16],
            version: u64::MAX,
            index: u32::MAX,
        };
        assert_eq!(s.put_page(&key, b"page", NO_QUOTA).unwrap(), Write::Done);
        assert_eq!(
            s.swap_manifest(&c, 0, u64::MAX, b"manifest", NO_QUOTA)
                .unwrap(),
            ManifestSwap::Cas(Cas::Done)
        );
        let token = s.issue(&mut rng, ALICE, 1_000, u64::MAX).unwrap();
        (token, s.changes(&ALICE, 0, 100).unwrap().next)
    };
    let s = schema.connect(2).unwrap();
    assert_eq!(s.keyring(&ALICE).unwrap(), Some((2, b"v2".to_vec())));
    assert_eq!(s.verifier(&ALICE).unwrap(), Some(vec![1; 58]));
    assert_eq!(s.authenticate(&token, u64::MAX - 1).unwrap(), Some(ALICE));
    assert_eq!(s.get(&token.hash()).unwrap().unwrap().expires, u64::MAX);
    let key = PageKey {
        collection: c,
        object: [1; 16],
        version: u64::MAX,
        index: u32::MAX,
    };
    assert_eq!(s.get_page(&key).unwrap(), Some(b"page".to_vec()));
    assert_eq!(
        s.get_manifest(&c).unwrap(),
        Some((u64::MAX, b"manifest".to_vec()))
    );
    assert_eq!(s.usage(&ALICE).unwrap(), 4 + 8);
    // The feed goes on after the last sequence number.
    assert_eq!(
        s.put_collection_key(&c, 1, b"k", NO_QUOTA).unwrap(),
        Write::Done
    );
    let feed = s.changes(&ALICE, seq, 100).unwrap();
    assert_eq!(feed.changes.len(), 1);
    assert_eq!(feed.changes[0].seq, seq + 1);
}

#[test]
fn pages_of_16_mib_round_trip() {
    let Some((_schema, s)) = setup("pages_of_16_mib_round_trip", 2) else {
        return;
    };
    let c = [0xc2; 16];
    assert_eq!(
        s.create_scope(&c, ScopeKind::Collection, &ALICE).unwrap(),
        Created::Created
    );
    let mut page = vec![0u8; 16 << 20];
    OsRng.fill_bytes(&mut page);
    let key = PageKey {
        collection: c,
        object: [2; 16],
        version: 1,
        index: 0,
    };
    assert_eq!(
        s.put_page(&key, &page, (16 << 20) - 1).unwrap(),
        Write::QuotaExceeded
    );
    assert_eq!(s.get_page(&key).unwrap(), None);
    assert_eq!(s.put_page(&key, &page, 16 << 20).unwrap(), Write::Done);
    assert_eq!(s.get_page(&key).unwrap().as_deref(), Some(&page[..]));
    assert_eq!(s.usage(&ALICE).unwrap(), 16 << 20);
}

#[test]
fn concurrent_swaps_have_exactly_one_winner_per_version() {
    let Some((_schema, s)) = setup("concurrent_swaps_have_exactly_one_winner_per_version", 8)
    else {
        return;
    };
    assert!(register(&s, ALICE, 1));
    let c = [0xc3; 16];
    assert_eq!(
        s.create_scope(&c, ScopeKind::Collection, &ALICE).unwrap(),
        Created::Created
    );
    // Several rounds, 8 threads each: every round exactly one keyring swap and one manifest
    // swap win, and the winner's bytes are stored.
    for round in 0..5u64 {
        let barrier = std::sync::Barrier::new(8);
        let results: Vec<(u8, Cas, ManifestSwap)> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..8u8)
                .map(|t| {
                    let (s, barrier) = (&s, &barrier);
                    scope.spawn(move || {
                        barrier.wait();
                        let k = s.swap_keyring(&ALICE, round + 1, &[t; 4]).unwrap();
                        let m = s
                            .swap_manifest(&c, round, round + 1, &[t; 10], NO_QUOTA)
                            .unwrap();
                        (t, k, m)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let k_winners: Vec<u8> = results
            .iter()
            .filter(|r| r.1 == Cas::Done)
            .map(|r| r.0)
            .collect();
        let m_winners: Vec<u8> = results
            .iter()
            .filter(|r| r.2 == ManifestSwap::Cas(Cas::Done))
            .map(|r| r.0)
            .collect();
        assert_eq!(k_winners.len(), 1, "round {round}: {results:?}");
        assert_eq!(m_winners.len(), 1, "round {round}: {results:?}");
        for r in &results {
            if r.1 != Cas::Done {
                assert_eq!(r.1, Cas::Conflict { current: round + 2 });
            }
            if r.2 != ManifestSwap::Cas(Cas::Done) {
                assert_eq!(r.2, ManifestSwap::Cas(Cas::Conflict { current: round + 1 }));
            }
        }
        assert_eq!(
            s.keyring(&ALICE).unwrap(),
            Some((round + 2, vec![k_winners[0]; 4]))
        );
        assert_eq!(
            s.get_manifest(&c).unwrap(),
            Some((round + 1, vec![m_winners[0]; 10]))
        );
    }
    // Exactly one Manifest change per version.
    let manifests: Vec<u64> = s
        .changes(&ALICE, 0, 1000)
        .unwrap()
        .changes
        .iter()
        .filter_map(|ch| match ch.kind {
            ChangeKind::Manifest { version, .. } => Some(version),
            _ => None,
        })
        .collect();
    assert_eq!(manifests, vec![1, 2, 3, 4, 5]);
    assert_eq!(s.usage(&ALICE).unwrap(), 10);
}

#[test]
fn concurrent_quota_is_never_exceeded() {
    let Some((_schema, s)) = setup("concurrent_quota_is_never_exceeded", 8) else {
        return;
    };
    // 8 threads write 100-byte pages into 8 collections of one owner with a quota of
    // 1,000 bytes: exactly 10 writes succeed.
    for t in 0..8u8 {
        assert_eq!(
            s.create_scope(&[t; 16], ScopeKind::Collection, &ALICE)
                .unwrap(),
            Created::Created
        );
    }
    let done: usize = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8u8)
            .map(|t| {
                let s = &s;
                scope.spawn(move || {
                    (0..5u32)
                        .filter(|&i| {
                            let key = PageKey {
                                collection: [t; 16],
                                object: [9; 16],
                                version: 1,
                                index: i,
                            };
                            s.put_page(&key, &[t; 100], 1_000).unwrap() == Write::Done
                        })
                        .count()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    assert_eq!(done, 10);
    assert_eq!(s.usage(&ALICE).unwrap(), 1_000);
}

#[test]
fn concurrent_feed_writers_never_let_a_reader_skip_a_change() {
    let Some((_schema, s)) = setup(
        "concurrent_feed_writers_never_let_a_reader_skip_a_change",
        8,
    ) else {
        return;
    };
    const WRITERS: u8 = 4;
    const EACH: u32 = 60;
    // Each writer has its own owner and collection (so no row lock of the backend puts
    // them in line), shared with the reader by an envelope.
    let reader_id = [0x5e; 16];
    let owner = |w: u8| [0x60 + w; 16];
    for w in 0..WRITERS {
        assert_eq!(
            s.create_scope(&[w; 16], ScopeKind::Collection, &owner(w))
                .unwrap(),
            Created::Created
        );
        let share = EnvelopeKey {
            recipient: reader_id,
            owner: owner(w),
            target: [w; 16],
            epoch: 1,
        };
        assert_eq!(s.put_envelope(&share, b"e", NO_QUOTA).unwrap(), Write::Done);
    }
    let start = s.changes(&reader_id, 0, 100).unwrap().next;
    let writing = AtomicBool::new(true);
    let seen: Vec<u64> = std::thread::scope(|scope| {
        let reader = scope.spawn(|| {
            let mut cursor = start;
            let mut seen = Vec::new();
            let mut polls = 0u32;
            loop {
                let finished = !writing.load(Ordering::SeqCst);
                // Small pages, so the cursor moves often while writers are busy.
                let page = s.changes(&reader_id, cursor, 7).unwrap();
                for ch in &page.changes {
                    assert!(ch.seq > cursor, "feed went backwards");
                    // Never visible before its data.
                    if let ChangeKind::CollectionKey { collection, epoch } = ch.kind {
                        assert!(s.get_collection_key(&collection, epoch).unwrap().is_some());
                    }
                    seen.push(ch.seq);
                }
                assert!(page.next >= cursor);
                cursor = page.next;
                polls += 1;
                if finished && !page.more {
                    break;
                }
            }
            assert!(polls > 1);
            seen
        });
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| {
                let s = &s;
                scope.spawn(move || {
                    for epoch in 0..EACH {
                        assert_eq!(
                            s.put_collection_key(&[w; 16], epoch, &[w; 32], NO_QUOTA)
                                .unwrap(),
                            Write::Done
                        );
                    }
                })
            })
            .collect();
        for h in writers {
            h.join().unwrap();
        }
        writing.store(false, Ordering::SeqCst);
        reader.join().unwrap()
    });
    // The reader saw every change that exists after its start, once, in order.
    let all: Vec<u64> = s
        .changes(&reader_id, start, 100_000)
        .unwrap()
        .changes
        .iter()
        .map(|ch| ch.seq)
        .collect();
    assert_eq!(all.len(), usize::from(WRITERS) * EACH as usize);
    let seen_set: BTreeSet<u64> = seen.iter().copied().collect();
    let skipped: Vec<u64> = all
        .iter()
        .copied()
        .filter(|seq| !seen_set.contains(seq))
        .collect();
    assert_eq!(skipped, Vec::<u64>::new(), "changes the reader skipped");
    assert_eq!(seen_set.len(), seen.len(), "changes seen twice");
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "out of order");
    // With the counter row, sequence numbers are also gap-free.
    assert!(all.windows(2).all(|w| w[1] == w[0] + 1), "gaps: {all:?}");
}

#[test]
fn a_foreign_or_damaged_schema_is_refused() {
    let Some(url) = database_url("a_foreign_or_damaged_schema_is_refused") else {
        return;
    };
    // A schema with another application's table of one of our names.
    let foreign = TestSchema::new(url.clone());
    foreign
        .client()
        .batch_execute(&format!(
            "CREATE SCHEMA {0}; CREATE TABLE {0}.accounts (x integer)",
            foreign.name
        ))
        .unwrap();
    let e = foreign.connect(1).unwrap_err().to_string();
    assert!(e.contains("foreign or incomplete schema"), "{e}");

    // A version from the future.
    let newer = TestSchema::new(url.clone());
    drop(newer.connect(1).unwrap());
    newer.sql("UPDATE vault_schema_version SET version = 99");
    let e = newer.connect(1).unwrap_err().to_string();
    assert!(e.contains("schema version 99"), "{e}");

    // A version table of someone else.
    let other = TestSchema::new(url.clone());
    drop(other.connect(1).unwrap());
    other.sql("UPDATE vault_schema_version SET component = 'other-app'");
    let e = other.connect(1).unwrap_err().to_string();
    assert!(e.contains("another component"), "{e}");

    // A dropped column.
    let dropped = TestSchema::new(url.clone());
    drop(dropped.connect(1).unwrap());
    dropped.sql("ALTER TABLE sessions DROP COLUMN expires");
    let e = dropped.connect(1).unwrap_err().to_string();
    assert!(
        e.contains("sessions does not have the expected columns"),
        "{e}"
    );

    // A change record that no writer produces (the shape constraint removed first).
    let corrupt = TestSchema::new(url.clone());
    drop(corrupt.connect(1).unwrap());
    corrupt.sql(
        "ALTER TABLE changes DROP CONSTRAINT changes_shape; \
         INSERT INTO changes (seq, kind, scope) VALUES (1, 99, '\\x00112233445566778899aabbccddeeff'); \
         UPDATE feed SET last_seq = 1",
    );
    let e = corrupt.connect(1).unwrap_err().to_string();
    assert!(e.contains("corrupt change record"), "{e}");
    assert!(e.contains("refusing to start"), "{e}");

    // A feed counter behind the feed: new changes would collide.
    let behind = TestSchema::new(url.clone());
    {
        let b = behind.connect(1).unwrap();
        assert_eq!(
            b.create_scope(&[1; 16], ScopeKind::Group, &ALICE).unwrap(),
            Created::Created
        );
    }
    behind.sql("UPDATE feed SET last_seq = 0");
    let e = behind.connect(1).unwrap_err().to_string();
    assert!(e.contains("change feed counter"), "{e}");

    // Usage that does not add up.
    let usage = TestSchema::new(url);
    {
        let b = usage.connect(1).unwrap();
        assert_eq!(
            b.create_scope(&[1; 16], ScopeKind::Group, &ALICE).unwrap(),
            Created::Created
        );
        assert_eq!(
            b.insert_roster(&[1; 16], 1, b"roster", NO_QUOTA).unwrap(),
            vault_server::store::InsertRoster::Done
        );
        b.check().unwrap();
    }
    usage.sql("UPDATE owner_usage SET bytes = bytes + 1");
    let e = usage.connect(1).unwrap_err().to_string();
    assert!(e.contains("corrupt usage record"), "{e}");
}

/// A schema of version 1 (before account recovery) is brought to version 2 when a node of
/// this version connects: the recovery verifier column is added, everything else is kept,
/// and nodes connecting together migrate it once.
#[test]
fn a_version_1_schema_is_migrated() {
    let Some(url) = database_url("a_version_1_schema_is_migrated") else {
        return;
    };
    let schema = TestSchema::new(url);
    {
        let b = schema.connect(1).unwrap();
        assert!(register(&b, ALICE, 1));
    }
    // What a version-1 server left behind.
    schema.sql(
        "ALTER TABLE accounts DROP COLUMN recovery_verifier; \
         UPDATE vault_schema_version SET version = 1",
    );
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..3)
            .map(|_| scope.spawn(|| schema.connect(1).map(|_| ())))
            .collect();
        for h in handles {
            h.join().unwrap().unwrap();
        }
    });
    let b = schema.connect(1).unwrap();
    let version: i32 = schema
        .client()
        .query_one(
            &format!("SELECT version FROM {}.vault_schema_version", schema.name),
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(version, 2);
    assert_eq!(b.keyring(&ALICE).unwrap(), Some((1, vec![1; 1600])));
    assert_eq!(b.recovery_verifier(&ALICE).unwrap(), None);
    let rotation = vault_server::store::KeyringReplacement {
        keyring: b"k2",
        login_verifier: None,
        recovery_verifier: Some(&[7; 58]),
    };
    assert_eq!(b.replace_keyring(&ALICE, 1, &rotation).unwrap(), Cas::Done);
    assert_eq!(b.recovery_verifier(&ALICE).unwrap(), Some(vec![7; 58]));
}

#[test]
fn connecting_twice_to_a_fresh_schema_is_safe() {
    let Some(url) = database_url("connecting_twice_to_a_fresh_schema_is_safe") else {
        return;
    };
    // Nodes starting together: the schema is created once, both come up.
    let schema = TestSchema::new(url);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..4)
            .map(|_| scope.spawn(|| schema.connect(1).map(|_| ())))
            .collect();
        for h in handles {
            h.join().unwrap().unwrap();
        }
    });
}

/// The last handle to the backend is often released on a thread that drives the server's
/// tokio runtime (when the router is dropped at shutdown). Closing the synchronous clients
/// there must not panic: a panic inside that drop aborts the whole process.
#[test]
fn dropping_the_backend_inside_a_runtime_is_safe() {
    let Some(url) = database_url("dropping_the_backend_inside_a_runtime_is_safe") else {
        return;
    };
    let schema = TestSchema::new(url);
    let open = || {
        let b = schema.connect(2).unwrap();
        b.check().unwrap();
        b
    };
    for multi_thread in [false, true] {
        let runtime = if multi_thread {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .build()
        } else {
            tokio::runtime::Builder::new_current_thread().build()
        }
        .unwrap();
        let backend = open();
        runtime.block_on(async move { drop(backend) });
        let backend = open();
        runtime.block_on(async move {
            tokio::spawn(async move { drop(backend) }).await.unwrap();
        });
    }
    // Outside any runtime it closes on the caller's thread.
    drop(open());
}
