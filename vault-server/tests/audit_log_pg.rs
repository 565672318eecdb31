//! The audit log on PostgreSQL (docs/spec/audit.md §4.2): the tamper contract of
//! `tests/contract/` with the records changed by SQL, appends from two connections pools
//! (two "nodes") forming one chain, the chain surviving a reconnect, and the start-up check
//! refusing a head row behind the log. (The rest of the contract runs in
//! `store_contract_pg.rs`.)
//!
//! The database comes from `VAULT_TEST_DATABASE_URL`; without it the tests print why they
//! are skipped and pass, unless `VAULT_REQUIRE_POSTGRES=1`. Each test works in schemas of
//! its own, dropped at the end.
#![cfg(feature = "postgres")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod contract;

use contract::{AuditTamperer, Tamper};
use rand_core::{OsRng, RngCore};
use vault_server::audit::{self, AuditStore, Event, EventKind};
use vault_server::store::PgBackend;

fn database_url(test: &str) -> Option<String> {
    match std::env::var("VAULT_TEST_DATABASE_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            assert!(
                std::env::var("VAULT_REQUIRE_POSTGRES").as_deref() != Ok("1"),
                "{test}: VAULT_REQUIRE_POSTGRES=1 but VAULT_TEST_DATABASE_URL is not set"
            );
            println!(
                "{test}: skipped: VAULT_TEST_DATABASE_URL is not set (scripts/postgres.sh \
                 starts a local PostgreSQL and prints its URL)"
            );
            None
        }
    }
}

/// A schema of the test's own, dropped when the test ends.
struct TestSchema {
    url: String,
    name: String,
}

impl TestSchema {
    fn new(url: &str) -> Self {
        let mut bytes = [0u8; 8];
        OsRng.fill_bytes(&mut bytes);
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        Self {
            url: url.to_owned(),
            name: format!("audit_{hex}"),
        }
    }

    fn connect(&self) -> PgBackend {
        PgBackend::connect(&self.url, Some(&self.name), 4).unwrap()
    }

    fn client(&self) -> postgres::Client {
        let mut c = postgres::Client::connect(&self.url, postgres::NoTls).unwrap();
        c.batch_execute(&format!("SET search_path TO {}", self.name))
            .unwrap();
        c
    }
}

impl Drop for TestSchema {
    fn drop(&mut self) {
        if let Ok(mut c) = postgres::Client::connect(&self.url, postgres::NoTls) {
            let _ = c.batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name));
        }
    }
}

struct PgTamper {
    url: String,
    schemas: Vec<TestSchema>,
}

impl AuditTamperer for PgTamper {
    type B = PgBackend;

    fn fresh(&mut self) -> PgBackend {
        let schema = TestSchema::new(&self.url);
        let b = schema.connect();
        self.schemas.push(schema);
        b
    }

    fn tamper(&mut self, b: PgBackend, edits: &[Tamper]) -> PgBackend {
        let mut c = self.schemas.last().unwrap().client();
        for edit in edits {
            match edit {
                Tamper::Put(seq, record) => {
                    let seq = i64::try_from(*seq).unwrap();
                    let n = c
                        .execute(
                            "UPDATE audit_log SET record = $2 WHERE seq = $1",
                            &[&seq, record],
                        )
                        .unwrap();
                    assert_eq!(n, 1);
                }
                Tamper::Remove(seq) => {
                    let seq = i64::try_from(*seq).unwrap();
                    let n = c
                        .execute("DELETE FROM audit_log WHERE seq = $1", &[&seq])
                        .unwrap();
                    assert_eq!(n, 1);
                }
            }
        }
        b
    }
}

#[test]
fn pg_audit_tampering_is_detected() {
    let Some(url) = database_url("pg_audit_tampering_is_detected") else {
        return;
    };
    contract::audit_tamper_contract(&mut PgTamper {
        url,
        schemas: Vec::new(),
    });
}

#[test]
fn two_nodes_append_to_one_chain() {
    let Some(url) = database_url("two_nodes_append_to_one_chain") else {
        return;
    };
    let schema = TestSchema::new(&url);
    let nodes = [schema.connect(), schema.connect()];
    std::thread::scope(|s| {
        for (n, node) in nodes.iter().enumerate() {
            for t in 0..4u8 {
                s.spawn(move || {
                    for i in 0..10u64 {
                        let e = Event::new(EventKind::LoginSucceeded).with_account([t; 16]);
                        node.append(i + n as u64 * 100, &e).unwrap();
                    }
                });
            }
        }
    });
    let report = audit::verify_chain(&nodes[0]).unwrap();
    assert_eq!((report.entries, report.first_broken), (80, None));
    assert_eq!(report.head.unwrap().0, 80);
    assert_eq!(nodes[1].events_of(&[2; 16], 0, 100).unwrap().len(), 20);
    drop(nodes);

    // After a reconnect the chain goes on from the head.
    let b = schema.connect();
    let next = b.append(7, &Event::new(EventKind::BackupCreated)).unwrap();
    assert_eq!((next.seq, next.prev), (81, report.head.unwrap().1));

    // A head row behind the log would make new entries collide: refused at start-up.
    drop(b);
    schema
        .client()
        .batch_execute("UPDATE audit_head SET last_seq = 3")
        .unwrap();
    let e = PgBackend::connect(&schema.url, Some(&schema.name), 1).unwrap_err();
    assert!(e.to_string().contains("audit head"), "{e}");
}

#[test]
fn an_events_row_naming_another_account_is_not_shown() {
    let Some(url) = database_url("an_events_row_naming_another_account_is_not_shown") else {
        return;
    };
    let schema = TestSchema::new(&url);
    let b = schema.connect();
    let e = Event::new(EventKind::LoginFailed).with_account([1; 16]);
    b.append(1, &e).unwrap();
    // The index column says account 2; the record says account 1.
    schema
        .client()
        .batch_execute("UPDATE audit_log SET account = decode(repeat('02', 16), 'hex')")
        .unwrap();
    assert!(b.events_of(&[2; 16], 0, 10).unwrap().is_empty());
    assert!(b.events_of(&[1; 16], 0, 10).unwrap().is_empty());
}
