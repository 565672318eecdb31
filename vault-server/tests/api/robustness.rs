//! A bounded load test (issue #6, robustness): concurrent writers and readers on one
//! collection, through real HTTP, finish without an error and without a lost write. Fixed
//! counts, a time limit; run on every backend by the suite.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand_chacha::rand_core::{RngCore as _, SeedableRng as _};
use rand_chacha::ChaCha20Rng;
use reqwest::{Client, StatusCode};
use serde_json::Value;
use tokio::task::JoinSet;

use super::{id, page_path, version_of, TestServer};

const WRITERS: u8 = 6;
const PAGES_PER_WRITER: u32 = 40;
const SWAPS_PER_WRITER: u64 = 15;
const READERS: usize = 4;

/// Deterministic page bytes: 1–4 KiB, distinct per address.
fn page_bytes(writer: u8, index: u32) -> Vec<u8> {
    let len = 1024 + (usize::from(writer) * 397 + index as usize * 131) % 3072;
    let mut rng = ChaCha20Rng::seed_from_u64(u64::from(writer) << 32 | u64::from(index));
    let mut bytes = vec![0u8; len];
    rng.fill_bytes(&mut bytes);
    bytes
}

/// What the writers had acknowledged: page address → bytes.
type Acknowledged = Arc<Mutex<BTreeMap<(u8, u32), Vec<u8>>>>;

#[derive(Clone)]
struct Http {
    client: Client,
    base: String,
    token: String,
}

impl Http {
    async fn put(&self, path: &str, body: Vec<u8>) -> reqwest::Response {
        self.client
            .put(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .header("content-type", "application/octet-stream")
            .body(body)
            .send()
            .await
            .expect("PUT")
    }

    async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("GET")
    }
}

/// Writers put pages and swap one manifest forward (retrying on `409 conflict`); readers
/// read acknowledged pages and the manifest meanwhile. At the end every acknowledged page
/// reads back exactly, the manifest's version is exactly the number of successful swaps
/// (no lost update), readers never saw a version go backwards, and the account's usage is
/// exactly the bytes stored.
pub async fn concurrent_writers_and_readers(server: &TestServer) {
    let a = server.signup(0, "alice").await;
    let c = id(0xc1);
    assert_eq!(
        server
            .put_empty(&a, &format!("/v1/collections/{c}"))
            .await
            .status(),
        StatusCode::CREATED
    );
    let manifest = format!("/v1/collections/{c}/manifest");
    let http = Http {
        client: server.client.clone(),
        base: server.base.clone(),
        token: a.token.clone(),
    };
    let acknowledged: Acknowledged = Arc::default();
    let writers_done = Arc::new(std::sync::atomic::AtomicUsize::new(0));

    let run = async {
        let mut tasks = JoinSet::new();
        for w in 0..WRITERS {
            let (http, acknowledged, done) =
                (http.clone(), acknowledged.clone(), writers_done.clone());
            let (c, manifest) = (c.clone(), manifest.clone());
            tasks.spawn(async move {
                let object = id(w);
                let mut swaps = 0;
                let mut conflicts = 0u64;
                for i in 0..PAGES_PER_WRITER {
                    let bytes = page_bytes(w, i);
                    let r = http.put(&page_path(&c, &object, 1, i), bytes.clone()).await;
                    assert_eq!(r.status(), StatusCode::NO_CONTENT, "writer {w} page {i}");
                    acknowledged.lock().unwrap().insert((w, i), bytes);
                    // Every few pages, one manifest swap (retried until it lands).
                    if u64::from(i) % 3 == 0 && swaps < SWAPS_PER_WRITER {
                        loop {
                            let r = http.get(&manifest).await;
                            let current = match r.status() {
                                StatusCode::OK => version_of(&r),
                                StatusCode::NOT_FOUND => 0,
                                s => panic!("writer {w}: manifest GET {s}"),
                            };
                            let body = format!("writer {w} swap {swaps} over {current}");
                            let r = http
                                .put(
                                    &format!(
                                        "{manifest}?expected={current}&version={}",
                                        current + 1
                                    ),
                                    body.into_bytes(),
                                )
                                .await;
                            match r.status() {
                                StatusCode::OK => break,
                                StatusCode::CONFLICT => conflicts += 1,
                                s => panic!("writer {w}: manifest PUT {s}"),
                            }
                        }
                        swaps += 1;
                    }
                }
                while swaps < SWAPS_PER_WRITER {
                    let r = http.get(&manifest).await;
                    let current = if r.status() == StatusCode::OK {
                        version_of(&r)
                    } else {
                        0
                    };
                    let r = http
                        .put(
                            &format!("{manifest}?expected={current}&version={}", current + 1),
                            format!("writer {w} swap {swaps} over {current}").into_bytes(),
                        )
                        .await;
                    match r.status() {
                        StatusCode::OK => swaps += 1,
                        StatusCode::CONFLICT => conflicts += 1,
                        s => panic!("writer {w}: manifest PUT {s}"),
                    }
                }
                done.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                conflicts
            });
        }
        for r in 0..READERS {
            let (http, acknowledged, done) =
                (http.clone(), acknowledged.clone(), writers_done.clone());
            let (c, manifest) = (c.clone(), manifest.clone());
            tasks.spawn(async move {
                let mut last_version = 0u64;
                let mut reads = 0u64;
                let mut n = r;
                while done.load(std::sync::atomic::Ordering::SeqCst) < usize::from(WRITERS) {
                    let pick = {
                        let acked = acknowledged.lock().unwrap();
                        if acked.is_empty() {
                            None
                        } else {
                            n = n.wrapping_mul(31).wrapping_add(7);
                            acked
                                .iter()
                                .nth(n % acked.len())
                                .map(|(k, v)| (*k, v.clone()))
                        }
                    };
                    if let Some(((w, i), bytes)) = pick {
                        let resp = http.get(&page_path(&c, &id(w), 1, i)).await;
                        assert_eq!(resp.status(), StatusCode::OK, "reader {r}: page {w}/{i}");
                        assert_eq!(resp.bytes().await.unwrap().to_vec(), bytes, "reader {r}");
                        reads += 1;
                    }
                    let resp = http.get(&manifest).await;
                    if resp.status() == StatusCode::OK {
                        let v = version_of(&resp);
                        assert!(
                            v >= last_version,
                            "reader {r}: version {v} after {last_version}"
                        );
                        last_version = v;
                    }
                }
                reads
            });
        }
        let mut total = 0;
        while let Some(joined) = tasks.join_next().await {
            total += joined.expect("a writer or reader failed");
        }
        total
    };
    tokio::time::timeout(Duration::from_secs(180), run)
        .await
        .expect("the load test did not finish within its time limit");

    // No lost write: every page, the manifest version, the usage.
    let acked = acknowledged.lock().unwrap().clone();
    assert_eq!(
        acked.len(),
        usize::from(WRITERS) * PAGES_PER_WRITER as usize
    );
    let mut stored = 0u64;
    for ((w, i), bytes) in &acked {
        assert_eq!(
            server.get_bytes(&a, &page_path(&c, &id(*w), 1, *i)).await,
            *bytes
        );
        stored += bytes.len() as u64;
    }
    let r = server.get(&a, &manifest).await;
    assert_eq!(r.status(), StatusCode::OK);
    let version = version_of(&r);
    assert_eq!(
        version,
        u64::from(WRITERS) * SWAPS_PER_WRITER,
        "a manifest swap was lost"
    );
    let body = r.bytes().await.unwrap();
    let account: Value = server.get_json(&a, "/v1/account").await;
    assert_eq!(account["usage"].as_u64(), Some(stored + body.len() as u64));
}
