//! The API suite (`tests/api/`) on the sled backend: every test on a fresh data directory.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod api;

use vault_server::store::SledBackend;

async fn sled_backend() -> Option<(SledBackend, tempfile::TempDir)> {
    let dir = tempfile::tempdir().expect("temporary directory");
    let backend = SledBackend::open(dir.path()).expect("open sled");
    Some((backend, dir))
}

api_suite!(sled_backend);
