//! The API suite (`tests/api/`) on the PostgreSQL backend: every test in a fresh schema of
//! its own, dropped at the end.
//!
//! The database comes from `VAULT_TEST_DATABASE_URL` (`scripts/test.sh` starts a local one
//! with `scripts/postgres.sh`). Without it every test prints why it is skipped and passes,
//! unless `VAULT_REQUIRE_POSTGRES=1`, which makes them fail instead.
#![cfg(feature = "postgres")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod api;

use rand_core::{OsRng, RngCore};
use vault_server::store::PgBackend;

/// A schema of the test's own, dropped (with everything in it) when the test ends. The
/// drop runs on a thread of its own: the synchronous client must not block the runtime.
struct TestSchema {
    url: String,
    name: String,
}

impl Drop for TestSchema {
    fn drop(&mut self) {
        let (url, name) = (self.url.clone(), self.name.clone());
        let _ = std::thread::spawn(move || {
            if let Ok(mut c) = postgres::Client::connect(&url, postgres::NoTls) {
                let _ = c.batch_execute(&format!("DROP SCHEMA IF EXISTS {name} CASCADE"));
            }
        })
        .join();
    }
}

async fn pg_backend() -> Option<(PgBackend, TestSchema)> {
    let url = match std::env::var("VAULT_TEST_DATABASE_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => {
            assert!(
                std::env::var("VAULT_REQUIRE_POSTGRES").as_deref() != Ok("1"),
                "VAULT_REQUIRE_POSTGRES=1 but VAULT_TEST_DATABASE_URL is not set \
                 (scripts/postgres.sh starts a local PostgreSQL and prints its URL)"
            );
            println!(
                "skipped: VAULT_TEST_DATABASE_URL is not set (scripts/test.sh starts a local \
                 PostgreSQL; VAULT_REQUIRE_POSTGRES=1 makes this a failure)"
            );
            return None;
        }
    };
    let mut bytes = [0u8; 8];
    OsRng.fill_bytes(&mut bytes);
    let name = format!(
        "api_{}",
        bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
    );
    let schema = TestSchema {
        url: url.clone(),
        name: name.clone(),
    };
    let backend = tokio::task::spawn_blocking(move || PgBackend::connect(&url, Some(&name), 8))
        .await
        .expect("connect task")
        .expect("connect to the test database");
    Some((backend, schema))
}

api_suite!(pg_backend);
