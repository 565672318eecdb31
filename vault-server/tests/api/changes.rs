//! The change feed: cursors, paging, monotonic positions, visibility.

use reqwest::StatusCode;
use serde_json::{json, Value};

use super::{changes, envelope_path, expect_error, id, object_path, page_path, TestServer};

fn kinds(feed: &Value) -> Vec<String> {
    feed["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["kind"].as_str().unwrap().to_owned())
        .collect()
}

fn seqs(feed: &Value) -> Vec<u64> {
    feed["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["seq"].as_u64().unwrap())
        .collect()
}

/// A second device sees only what changed since its cursor; positions only grow; paging
/// with `limit` walks the same sequence.
pub async fn change_feed_cursor(server: &TestServer) {
    let laptop = server.signup(0, "alice").await;
    let phone = server.login(super::user(0), "alice").await;
    let (c, o) = (id(0xc1), id(0x01));

    let empty = changes(server, &phone, 0).await;
    assert_eq!(empty["changes"], json!([]));
    assert_eq!(empty["more"], json!(false));
    let cursor0 = empty["next"].as_u64().unwrap();

    server
        .put_empty(&laptop, &format!("/v1/collections/{c}"))
        .await;
    server.put(&laptop, &page_path(&c, &o, 1, 0), b"page").await;
    server
        .put(&laptop, &object_path(&c, &o, 1), b"header")
        .await;
    server
        .put(&laptop, &format!("/v1/collections/{c}/keys/1"), b"key")
        .await;
    server
        .put(
            &laptop,
            &format!("/v1/collections/{c}/manifest?expected=0&version=1"),
            b"m1",
        )
        .await;

    let first = changes(server, &phone, cursor0).await;
    assert_eq!(
        kinds(&first),
        ["scope_created", "collection_key", "manifest"]
    );
    assert_eq!(
        first["changes"][0],
        json!({"seq": seqs(&first)[0], "kind": "scope_created", "scope": c, "scope_kind": "collection"})
    );
    assert_eq!(first["changes"][1]["collection"], json!(c));
    assert_eq!(first["changes"][1]["epoch"], json!(1));
    assert_eq!(first["changes"][2]["version"], json!(1));
    assert!(seqs(&first).windows(2).all(|w| w[0] < w[1]));
    assert!(seqs(&first)[0] > cursor0);
    let cursor1 = first["next"].as_u64().unwrap();
    assert_eq!(cursor1, *seqs(&first).last().unwrap());

    // Nothing new: the same cursor back, nothing listed.
    let idle = changes(server, &phone, cursor1).await;
    assert_eq!(idle["changes"], json!([]));
    assert_eq!(idle["next"], json!(cursor1));

    server
        .put(
            &laptop,
            &format!("/v1/collections/{c}/manifest?expected=1&version=2"),
            b"m2",
        )
        .await;
    server.delete(&laptop, &object_path(&c, &o, 1)).await;
    let second = changes(server, &phone, cursor1).await;
    assert_eq!(kinds(&second), ["manifest", "object_deleted"]);
    assert_eq!(
        second["changes"][1],
        json!({"seq": seqs(&second)[1], "kind": "object_deleted", "collection": c, "object": o, "version": 1})
    );
    assert!(seqs(&second)[0] > cursor1);

    // Paging one by one gives the same sequence.
    let mut paged = Vec::new();
    let mut cursor = cursor0;
    loop {
        let page = server
            .get_json(&phone, &format!("/v1/changes?after={cursor}&limit=1"))
            .await;
        paged.extend(seqs(&page));
        cursor = page["next"].as_u64().unwrap();
        if page["more"] == json!(false) {
            break;
        }
        assert!(paged.len() < 100);
    }
    let mut all = seqs(&first);
    all.extend(seqs(&second));
    assert_eq!(paged, all);
    // The default limit applies without parameters.
    let whole = server.get_json(&phone, "/v1/changes").await;
    assert_eq!(seqs(&whole), all);

    for q in [
        "limit=0",
        "limit=1001",
        "limit=-1",
        "after=-1",
        "after=x",
        "after=9007199254740992",
    ] {
        expect_error(
            server.get(&phone, &format!("/v1/changes?{q}")).await,
            StatusCode::BAD_REQUEST,
            "bad_request",
        )
        .await;
    }
    assert_eq!(
        server
            .get(&phone, "/v1/changes?after=9007199254740991&limit=1000")
            .await
            .status(),
        StatusCode::OK
    );
}

/// Each account sees the changes of what it may reach: a recipient sees its envelope and
/// the shared collection's changes; a removed member no longer sees new ones; an owner
/// sees the deletion of its scope.
pub async fn change_feed_visibility(server: &TestServer) {
    let a = server.signup(0, "alice").await;
    let b = server.signup(1, "bob").await;
    let carol = server.signup(2, "carol").await;
    let c = id(0xc1);
    let start = changes(server, &b, 0).await["next"].as_u64().unwrap();
    server.put_empty(&a, &format!("/v1/collections/{c}")).await;
    server
        .put(&a, &envelope_path(&b.id(), &a.id(), &c, 1), b"env")
        .await;
    server
        .put(
            &a,
            &format!("/v1/collections/{c}/manifest?expected=0&version=1"),
            b"m1",
        )
        .await;
    let bob = changes(server, &b, start).await;
    assert_eq!(kinds(&bob), ["scope_created", "envelope", "manifest"]);
    assert_eq!(
        bob["changes"][1],
        json!({"seq": seqs(&bob)[1], "kind": "envelope", "recipient": b.id(),
               "owner": a.id(), "target": c, "epoch": 1})
    );
    assert_eq!(changes(server, &carol, start).await["changes"], json!([]));

    // Epoch 2 without Bob: he sees nothing after it.
    let cursor = bob["next"].as_u64().unwrap();
    server
        .put(&a, &envelope_path(&carol.id(), &a.id(), &c, 2), b"env")
        .await;
    server
        .put(
            &a,
            &format!("/v1/collections/{c}/manifest?expected=1&version=2"),
            b"m2",
        )
        .await;
    assert_eq!(changes(server, &b, cursor).await["changes"], json!([]));
    let carol_feed = changes(server, &carol, cursor).await;
    assert_eq!(kinds(&carol_feed), ["envelope", "manifest"]);

    // Deleting the collection: the owner sees it.
    let cursor = changes(server, &a, 0).await["next"].as_u64().unwrap();
    server.delete(&a, &format!("/v1/collections/{c}")).await;
    let gone = changes(server, &a, cursor).await;
    assert_eq!(
        gone["changes"],
        json!([{"seq": seqs(&gone)[0], "kind": "scope_deleted", "scope": c, "scope_kind": "collection"}])
    );
}
