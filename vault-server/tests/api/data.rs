//! Collections, pages, headers, collection keys and manifests.

use reqwest::StatusCode;
use serde_json::{json, Value};

use super::{envelope_path, expect_error, id, object_path, page_path, version_of, TestServer};

/// Create (201, then 200 for the owner, 409 for anyone else or as a group), list, delete.
pub async fn collections_create_list_delete(server: &TestServer) {
    let a = server.signup(0, "alice").await;
    let b = server.signup(1, "bob").await;
    let (c, d) = (id(0xc1), id(0xc2));
    let r = server.put_empty(&a, &format!("/v1/collections/{c}")).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"id": c, "kind": "collection"})
    );
    let r = server.put_empty(&a, &format!("/v1/collections/{c}")).await;
    assert_eq!(r.status(), StatusCode::OK);
    expect_error(
        server.put_empty(&b, &format!("/v1/collections/{c}")).await,
        StatusCode::CONFLICT,
        "exists",
    )
    .await;
    expect_error(
        server.put_empty(&a, &format!("/v1/groups/{c}")).await,
        StatusCode::CONFLICT,
        "exists",
    )
    .await;
    assert_eq!(
        server
            .put_empty(&a, &format!("/v1/groups/{d}"))
            .await
            .status(),
        StatusCode::CREATED
    );
    expect_error(
        server.put_empty(&a, &format!("/v1/collections/{d}")).await,
        StatusCode::CONFLICT,
        "exists",
    )
    .await;

    let listed = server.get_json(&a, "/v1/collections").await;
    assert_eq!(
        listed,
        json!({"scopes": [{"id": c, "kind": "collection"}, {"id": d, "kind": "group"}]})
    );
    assert_eq!(
        server.get_json(&b, "/v1/collections").await,
        json!({"scopes": []})
    );

    // Only the owner deletes; a group is not deleted as a collection.
    expect_error(
        server.delete(&b, &format!("/v1/collections/{c}")).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    expect_error(
        server.delete(&a, &format!("/v1/collections/{d}")).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    assert_eq!(
        server
            .delete(&a, &format!("/v1/collections/{c}"))
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
    expect_error(
        server.delete(&a, &format!("/v1/collections/{c}")).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    assert_eq!(
        server.get_json(&a, "/v1/collections").await,
        json!({"scopes": [{"id": d, "kind": "group"}]})
    );
    // The id is free again: anyone may take it.
    assert_eq!(
        server
            .put_empty(&b, &format!("/v1/collections/{c}"))
            .await
            .status(),
        StatusCode::CREATED
    );
}

/// Pages and headers: put, get, replace, delete an object version.
pub async fn pages_and_headers(server: &TestServer) {
    let a = server.signup(0, "alice").await;
    let (c, o) = (id(0xc1), id(0x01));
    // Nothing can be stored before the collection exists.
    expect_error(
        server.put(&a, &page_path(&c, &o, 1, 0), b"p").await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    server.put_empty(&a, &format!("/v1/collections/{c}")).await;

    for i in [0u32, 1, u32::MAX] {
        let r = server
            .put(&a, &page_path(&c, &o, 1, i), format!("page {i}").as_bytes())
            .await;
        assert_eq!(r.status(), StatusCode::NO_CONTENT);
    }
    let r = server.get(&a, &page_path(&c, &o, 1, 1)).await;
    assert_eq!(r.headers()["content-type"], "application/octet-stream");
    assert_eq!(r.bytes().await.unwrap(), "page 1");
    assert_eq!(
        server.get_bytes(&a, &page_path(&c, &o, 1, u32::MAX)).await,
        b"page 4294967295"
    );
    // Replace.
    assert_eq!(
        server
            .put(&a, &page_path(&c, &o, 1, 1), b"page 1, again")
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        server.get_bytes(&a, &page_path(&c, &o, 1, 1)).await,
        b"page 1, again"
    );
    expect_error(
        server.get(&a, &page_path(&c, &o, 1, 2)).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    expect_error(
        server.get(&a, &page_path(&c, &o, 2, 0)).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;

    // Headers of two versions.
    let max = 9_007_199_254_740_991u64;
    assert_eq!(
        server
            .put(&a, &object_path(&c, &o, 1), b"header v1")
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        server
            .put(&a, &object_path(&c, &o, max), b"header vmax")
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        server
            .put(&a, &page_path(&c, &o, max, 0), b"other version")
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        server.get_bytes(&a, &object_path(&c, &o, 1)).await,
        b"header v1"
    );
    expect_error(
        server.get(&a, &object_path(&c, &o, 2)).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    expect_error(
        server.get(&a, &object_path(&c, &o, max + 1)).await,
        StatusCode::BAD_REQUEST,
        "bad_request",
    )
    .await;

    // Deleting version 1 removes its header and every page, not version max.
    assert_eq!(
        server.delete(&a, &object_path(&c, &o, 1)).await.status(),
        StatusCode::NO_CONTENT
    );
    for i in [0u32, 1, u32::MAX] {
        expect_error(
            server.get(&a, &page_path(&c, &o, 1, i)).await,
            StatusCode::NOT_FOUND,
            "not_found",
        )
        .await;
    }
    expect_error(
        server.get(&a, &object_path(&c, &o, 1)).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    assert_eq!(
        server.get_bytes(&a, &object_path(&c, &o, max)).await,
        b"header vmax"
    );
    assert_eq!(
        server.get_bytes(&a, &page_path(&c, &o, max, 0)).await,
        b"other version"
    );
    // Deleting again is not an error.
    assert_eq!(
        server.delete(&a, &object_path(&c, &o, 1)).await.status(),
        StatusCode::NO_CONTENT
    );
    // An empty body is refused.
    expect_error(
        server.put(&a, &page_path(&c, &o, 3, 0), b"").await,
        StatusCode::BAD_REQUEST,
        "bad_request",
    )
    .await;
}

/// The manifest head: none (404), then compare-and-swap with the version in
/// `Vault-Version`.
pub async fn manifest_compare_and_swap(server: &TestServer) {
    let a = server.signup(0, "alice").await;
    let c = id(0xc1);
    let path = format!("/v1/collections/{c}/manifest");
    server.put_empty(&a, &format!("/v1/collections/{c}")).await;
    expect_error(
        server.get(&a, &path).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;

    let r = server
        .put(&a, &format!("{path}?expected=0&version=1"), b"manifest 1")
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"version": 1}));
    let r = server.get(&a, &path).await;
    assert_eq!(version_of(&r), 1);
    assert_eq!(r.bytes().await.unwrap(), "manifest 1");

    // Stale and future expectations conflict and report the current version.
    for expected in [0u64, 2, 9] {
        let r = server
            .put(
                &a,
                &format!("{path}?expected={expected}&version=10"),
                b"stale",
            )
            .await;
        let e = expect_error(r, StatusCode::CONFLICT, "conflict").await;
        assert_eq!(e["current"], json!(1));
    }
    // The new version must be above the expected one.
    for q in [
        "expected=1&version=1",
        "expected=1&version=0",
        "expected=1",
        "version=2",
        "expected=1&version=9007199254740992",
    ] {
        let r = server.put(&a, &format!("{path}?{q}"), b"bad").await;
        expect_error(r, StatusCode::BAD_REQUEST, "bad_request").await;
    }
    // Versions may jump.
    let r = server
        .put(&a, &format!("{path}?expected=1&version=5"), b"manifest 5")
        .await;
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"version": 5}));
    let r = server.get(&a, &path).await;
    assert_eq!(version_of(&r), 5);
    assert_eq!(r.bytes().await.unwrap(), "manifest 5");
}

/// Two devices swap the manifest from the same version at once: exactly one wins, the
/// other gets 409 with the winner's version, and the stored manifest is the winner's.
pub async fn manifest_writers_race(server: &TestServer) {
    let laptop = server.signup(0, "alice").await;
    let phone = server.login(super::user(0), "alice").await;
    let c = id(0xc1);
    let path = format!("/v1/collections/{c}/manifest");
    server
        .put_empty(&laptop, &format!("/v1/collections/{c}"))
        .await;
    for round in 0..10u64 {
        let q = format!("{path}?expected={round}&version={}", round + 1);
        let (lb, pb) = (format!("laptop {round}"), format!("phone {round}"));
        let (l, p) = tokio::join!(
            server.put(&laptop, &q, lb.as_bytes()),
            server.put(&phone, &q, pb.as_bytes()),
        );
        let (winner, loser) = match (l.status(), p.status()) {
            (StatusCode::OK, StatusCode::CONFLICT) => ("laptop", p),
            (StatusCode::CONFLICT, StatusCode::OK) => ("phone", l),
            other => panic!("round {round}: {other:?}"),
        };
        let e = expect_error(loser, StatusCode::CONFLICT, "conflict").await;
        assert_eq!(e["current"], json!(round + 1));
        let r = server.get(&laptop, &path).await;
        assert_eq!(version_of(&r), round + 1);
        assert_eq!(r.bytes().await.unwrap(), format!("{winner} {round}"));
    }
}

/// Wrapped collection keys are the owner's alone, even for users the collection is shared
/// with.
pub async fn collection_keys_are_owner_only(server: &TestServer) {
    let a = server.signup(0, "alice").await;
    let b = server.signup(1, "bob").await;
    let c = id(0xc1);
    server.put_empty(&a, &format!("/v1/collections/{c}")).await;
    let key = format!("/v1/collections/{c}/keys/1");
    assert_eq!(
        server.put(&a, &key, b"wrapped key 1").await.status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(server.get_bytes(&a, &key).await, b"wrapped key 1");
    expect_error(
        server.get(&a, &format!("/v1/collections/{c}/keys/2")).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    // Shared with Bob: he reaches pages, not keys.
    let env = envelope_path(&b.id(), &a.id(), &c, 1);
    assert_eq!(
        server.put(&a, &env, b"envelope").await.status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        server
            .put(&a, &page_path(&c, &id(1), 1, 0), b"p")
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        server.get_bytes(&b, &page_path(&c, &id(1), 1, 0)).await,
        b"p"
    );
    expect_error(
        server.get(&b, &key).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    expect_error(
        server.put(&b, &key, b"bob's key").await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    assert_eq!(server.get_bytes(&a, &key).await, b"wrapped key 1");
    expect_error(
        server
            .get(&a, &format!("/v1/collections/{c}/keys/4294967296"))
            .await,
        StatusCode::BAD_REQUEST,
        "bad_request",
    )
    .await;
}
