//! Envelopes, groups, rosters, and the access they grant and take away.

use reqwest::StatusCode;
use serde_json::{json, Value};

use super::{envelope_path, expect_error, id, object_path, page_path, Session, TestServer};

async fn can_read(server: &TestServer, s: &Session, path: &str) -> bool {
    match server.get(s, path).await.status() {
        StatusCode::OK => true,
        StatusCode::NOT_FOUND => false,
        other => panic!("GET {path}: {other}"),
    }
}

/// An envelope of the current epoch lets its recipient reach the collection; a new epoch
/// whose envelopes skip them takes it away.
pub async fn envelopes_grant_and_revoke_access(server: &TestServer) {
    let a = server.signup(0, "alice").await;
    let b = server.signup(1, "bob").await;
    let carol = server.signup(2, "carol").await;
    let (c, o) = (id(0xc1), id(0x01));
    server.put_empty(&a, &format!("/v1/collections/{c}")).await;
    let page = page_path(&c, &o, 1, 0);
    assert_eq!(
        server.put(&a, &page, b"page").await.status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        server
            .put(&a, &object_path(&c, &o, 1), b"header")
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
    let manifest = format!("/v1/collections/{c}/manifest");
    server
        .put(&a, &format!("{manifest}?expected=0&version=1"), b"m1")
        .await;
    assert!(!can_read(server, &b, &page).await);

    // Epoch 1: shared with Bob.
    let to_bob = envelope_path(&b.id(), &a.id(), &c, 1);
    assert_eq!(
        server.put(&a, &to_bob, b"envelope for bob").await.status(),
        StatusCode::NO_CONTENT
    );
    assert!(can_read(server, &b, &page).await);
    assert!(can_read(server, &b, &object_path(&c, &o, 1)).await);
    assert_eq!(server.get_bytes(&b, &manifest).await, b"m1");
    assert_eq!(server.get_bytes(&b, &to_bob).await, b"envelope for bob");
    assert_eq!(
        server.get_json(&b, "/v1/collections").await,
        json!({"scopes": [{"id": c, "kind": "collection"}]})
    );
    let listed = server.get_json(&b, "/v1/envelopes").await;
    assert_eq!(
        listed,
        json!({"envelopes": [{"recipient": b.id(), "owner": a.id(), "target": c, "epoch": 1}]})
    );
    // The same with the recipient named explicitly; the owner lists what she sent.
    assert_eq!(
        server
            .get_json(&b, &format!("/v1/envelopes?recipient={}", b.id()))
            .await,
        listed
    );
    assert_eq!(
        server
            .get_json(&a, &format!("/v1/envelopes?recipient={}", b.id()))
            .await,
        listed
    );
    // Carol sees nothing of it.
    assert_eq!(
        server
            .get_json(&carol, &format!("/v1/envelopes?recipient={}", b.id()))
            .await,
        json!({"envelopes": []})
    );
    expect_error(
        server.get(&carol, &to_bob).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    // Bob may write into the shared collection (the manifest signature decides what counts).
    assert_eq!(
        server
            .put(&b, &page_path(&c, &o, 2, 0), b"bob's page")
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
    let r = server
        .put(
            &b,
            &format!("{manifest}?expected=1&version=2"),
            b"m2 by bob",
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    // But he cannot hand out keys to the collection, nor delete Alice's envelopes or it.
    let by_bob = envelope_path(&carol.id(), &a.id(), &c, 1);
    expect_error(
        server.put(&b, &by_bob, b"forged").await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    let by_bob = envelope_path(&carol.id(), &b.id(), &c, 1);
    expect_error(
        server.put(&b, &by_bob, b"forged").await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    expect_error(
        server.delete(&b, &to_bob).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    expect_error(
        server.delete(&b, &format!("/v1/collections/{c}")).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    // Alice cannot sign envelopes in someone else's name for her own collection.
    let r = server
        .put(&a, &envelope_path(&carol.id(), &b.id(), &c, 1), b"x")
        .await;
    expect_error(r, StatusCode::NOT_FOUND, "not_found").await;

    // Epoch 2 (unshare Bob): the new envelopes go to Carol only; Bob loses access.
    let to_carol = envelope_path(&carol.id(), &a.id(), &c, 2);
    assert_eq!(
        server
            .put(&a, &to_carol, b"envelope for carol")
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
    assert!(!can_read(server, &b, &page).await);
    assert!(can_read(server, &carol, &page).await);
    expect_error(
        server.put(&b, &page_path(&c, &o, 3, 0), b"late").await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    assert_eq!(
        server.get_json(&b, "/v1/collections").await,
        json!({"scopes": []})
    );
    // His old envelope is still his to read (he may keep what he already had).
    assert_eq!(server.get_bytes(&b, &to_bob).await, b"envelope for bob");
    // Deleting the envelope is idempotent.
    assert_eq!(
        server.delete(&a, &to_bob).await.status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        server.delete(&a, &to_bob).await.status(),
        StatusCode::NO_CONTENT
    );
    expect_error(
        server.get(&b, &to_bob).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
}

/// Groups: insert-only rosters for owner and members; membership through group envelopes
/// of the current group epoch; a collection shared with the group reaches its members;
/// a new group epoch that skips a member locks them out of both.
pub async fn groups_rosters_and_membership(server: &TestServer) {
    let a = server.signup(0, "alice").await;
    let b = server.signup(1, "bob").await;
    let carol = server.signup(2, "carol").await;
    let dave = server.signup(3, "dave").await;
    let (g, c) = (id(0x91), id(0xc1));
    let r = server.put_empty(&a, &format!("/v1/groups/{g}")).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"id": g, "kind": "group"})
    );
    let roster = |v: u64| format!("/v1/groups/{g}/rosters/{v}");
    let rosters = format!("/v1/groups/{g}/rosters");

    assert_eq!(
        server.put(&a, &roster(1), b"roster 1").await.status(),
        StatusCode::CREATED
    );
    // Insert-only: a version is written once.
    expect_error(
        server.put(&a, &roster(1), b"roster 1 again").await,
        StatusCode::CONFLICT,
        "exists",
    )
    .await;
    assert_eq!(server.get_bytes(&a, &roster(1)).await, b"roster 1");
    // Not yet a member.
    expect_error(
        server.put(&b, &roster(2), b"bob's roster").await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    expect_error(
        server.get(&b, &rosters).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;

    // Group epoch 1: Bob and Carol are members (the group secret in envelopes from g).
    for member in [&b, &carol] {
        let env = envelope_path(&member.id(), &g, &g, 1);
        assert_eq!(
            server.put(&a, &env, b"group secret").await.status(),
            StatusCode::NO_CONTENT
        );
    }
    assert_eq!(
        server.get_json(&b, &rosters).await,
        json!({"versions": [1]})
    );
    assert_eq!(
        server
            .put(&b, &roster(2), b"roster 2 by bob")
            .await
            .status(),
        StatusCode::CREATED
    );
    assert_eq!(
        server.get_json(&carol, &rosters).await,
        json!({"versions": [1, 2]})
    );
    assert_eq!(
        server.get_bytes(&carol, &roster(2)).await,
        b"roster 2 by bob"
    );
    // Members may also hand out the group secret (several admins), only in the group's name.
    let to_dave = envelope_path(&dave.id(), &g, &g, 1);
    assert_eq!(
        server.put(&carol, &to_dave, b"group secret").await.status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        server.delete(&carol, &to_dave).await.status(),
        StatusCode::NO_CONTENT
    );
    let r = server
        .put(&carol, &envelope_path(&dave.id(), &carol.id(), &g, 1), b"x")
        .await;
    expect_error(r, StatusCode::NOT_FOUND, "not_found").await;
    // Only the owner deletes the group.
    expect_error(
        server.delete(&b, &format!("/v1/groups/{g}")).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;

    // A collection shared with the group reaches its members.
    server.put_empty(&a, &format!("/v1/collections/{c}")).await;
    let page = page_path(&c, &id(1), 1, 0);
    server.put(&a, &page, b"team page").await;
    let to_group = envelope_path(&g, &a.id(), &c, 1);
    assert_eq!(
        server
            .put(&a, &to_group, b"collection key for g")
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
    assert!(can_read(server, &b, &page).await);
    assert!(can_read(server, &carol, &page).await);
    assert!(!can_read(server, &dave, &page).await);
    // Members see the group's envelopes.
    let listed = server
        .get_json(&b, &format!("/v1/envelopes?recipient={g}"))
        .await;
    assert_eq!(
        listed,
        json!({"envelopes": [{"recipient": g, "owner": a.id(), "target": c, "epoch": 1}]})
    );
    assert_eq!(
        server.get_bytes(&carol, &to_group).await,
        b"collection key for g"
    );
    assert_eq!(
        server
            .get_json(&dave, &format!("/v1/envelopes?recipient={g}"))
            .await,
        json!({"envelopes": []})
    );
    let scopes = server.get_json(&b, "/v1/collections").await;
    assert_eq!(
        scopes,
        json!({"scopes": [{"id": g, "kind": "group"}, {"id": c, "kind": "collection"}]})
    );

    // Group epoch 2 removes Bob: envelopes of epoch 2 go to Carol only.
    let env = envelope_path(&carol.id(), &g, &g, 2);
    assert_eq!(
        server.put(&a, &env, b"group secret 2").await.status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        server
            .put(&a, &roster(3), b"roster 3 without bob")
            .await
            .status(),
        StatusCode::CREATED
    );
    assert!(!can_read(server, &b, &page).await);
    assert!(can_read(server, &carol, &page).await);
    expect_error(
        server.get(&b, &rosters).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    expect_error(
        server.put(&b, &roster(4), b"bob strikes back").await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    expect_error(
        server.get(&b, &to_group).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    let r = server
        .put(&b, &envelope_path(&b.id(), &g, &g, 2), b"readd me")
        .await;
    expect_error(r, StatusCode::NOT_FOUND, "not_found").await;
    assert_eq!(
        server.get_json(&b, "/v1/collections").await,
        json!({"scopes": []})
    );
    assert_eq!(
        server.get_json(&carol, &rosters).await,
        json!({"versions": [1, 2, 3]})
    );

    // Deleting the group removes its rosters and envelopes; Carol loses the collection.
    assert_eq!(
        server.delete(&a, &format!("/v1/groups/{g}")).await.status(),
        StatusCode::NO_CONTENT
    );
    assert!(!can_read(server, &carol, &page).await);
    expect_error(
        server.get(&a, &roster(1)).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    assert!(can_read(server, &a, &page).await);
}
