//! The authorization matrix: another user can neither read, list, overwrite nor delete
//! anything of Alice's; every attempt is 404 (or 409 for an id that is taken) and changes
//! nothing.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use super::{
    changes, envelope_path, error_object, id, object_path, page_path, Session, TestServer,
};

/// Everything Alice can read, as (path, bytes).
async fn snapshot(
    server: &TestServer,
    a: &Session,
    paths: &[String],
) -> Vec<(String, Vec<u8>, Option<String>)> {
    let mut out = Vec::new();
    for p in paths {
        let r = server.get(a, p).await;
        assert_eq!(r.status(), StatusCode::OK, "{p}");
        let version = r
            .headers()
            .get("vault-version")
            .map(|v| v.to_str().unwrap().to_owned());
        out.push((p.clone(), r.bytes().await.unwrap().to_vec(), version));
    }
    out
}

/// Bob against Alice's pages, headers, manifest, keys, keyring, identity, envelopes,
/// groups, rosters and change feed.
pub async fn authorization_matrix(server: &TestServer) {
    let a = server.signup(0, "alice").await;
    let b = server.signup(1, "bob").await;
    let carol = server.signup(2, "carol").await;
    let (c, g, o) = (id(0xc1), id(0x91), id(0x01));
    let page = page_path(&c, &o, 1, 0);
    let header = object_path(&c, &o, 1);
    let manifest = format!("/v1/collections/{c}/manifest");
    let key = format!("/v1/collections/{c}/keys/1");
    let roster = format!("/v1/groups/{g}/rosters/1");
    let rosters = format!("/v1/groups/{g}/rosters");
    let to_carol = envelope_path(&carol.id(), &a.id(), &c, 1);
    let group_secret = envelope_path(&carol.id(), &g, &g, 1);
    let alice_identity = format!("/v1/identities/{}", a.id());

    for (path, body) in [
        (format!("/v1/collections/{c}"), None),
        (format!("/v1/groups/{g}"), None),
        (page.clone(), Some(&b"alice page"[..])),
        (header.clone(), Some(b"alice header")),
        (key.clone(), Some(b"alice key")),
        (
            format!("{manifest}?expected=0&version=1"),
            Some(b"alice manifest"),
        ),
        (roster.clone(), Some(b"alice roster")),
        (to_carol.clone(), Some(b"envelope for carol")),
        (group_secret.clone(), Some(b"group secret for carol")),
    ] {
        let r = match body {
            Some(bytes) => server.put(&a, &path, bytes).await,
            None => server.put_empty(&a, &path).await,
        };
        assert!(r.status().is_success(), "{path}: {}", r.status());
    }
    let readable = [
        page.clone(),
        header.clone(),
        manifest.clone(),
        key.clone(),
        roster.clone(),
        rosters.clone(),
        to_carol.clone(),
        group_secret.clone(),
        alice_identity.clone(),
        "/v1/account/keyring".to_owned(),
    ];
    let before = snapshot(server, &a, &readable).await;
    let alice_feed = changes(server, &a, 0).await;
    let bob_cursor = changes(server, &b, 0).await["next"].as_u64().unwrap();

    // Reads.
    for path in [
        &page,
        &header,
        &manifest,
        &key,
        &roster,
        &rosters,
        &to_carol,
        &group_secret,
    ] {
        let r = server.get(&b, path).await;
        let e = error_object(r).await;
        assert_eq!(e["code"], json!("not_found"), "GET {path}");
    }
    // Listings.
    assert_eq!(
        server.get_json(&b, "/v1/collections").await,
        json!({"scopes": []})
    );
    for recipient in [a.id(), carol.id(), g.clone(), c.clone()] {
        let listed = server
            .get_json(&b, &format!("/v1/envelopes?recipient={recipient}"))
            .await;
        assert_eq!(listed, json!({"envelopes": []}), "{recipient}");
    }
    // Bob's keyring route is his own keyring.
    assert_eq!(
        server.get_bytes(&b, "/v1/account/keyring").await,
        super::user(1).sealed
    );
    // Overwrites.
    let writes = [
        page.clone(),
        page_path(&c, &o, 1, 1),
        header.clone(),
        object_path(&c, &o, 2),
        key.clone(),
        format!("/v1/collections/{c}/keys/2"),
        format!("{manifest}?expected=1&version=2"),
        format!("{manifest}?expected=0&version=1"),
        roster.clone(),
        format!("/v1/groups/{g}/rosters/2"),
        to_carol.clone(),
        envelope_path(&b.id(), &a.id(), &c, 1),
        envelope_path(&b.id(), &a.id(), &c, 2),
        envelope_path(&b.id(), &b.id(), &c, 2),
        envelope_path(&b.id(), &g, &g, 2),
        group_secret.clone(),
        alice_identity.clone(),
    ];
    for path in &writes {
        let bytes: &[u8] = if path == &alice_identity {
            &super::user(0).identity_resigned
        } else {
            b"bob was here"
        };
        let r = server.put(&b, path, bytes).await;
        let e = error_object(r).await;
        assert_eq!(e["code"], json!("not_found"), "PUT {path}");
    }
    // Taking over the ids: refused as taken, nothing changes hands.
    for path in [
        format!("/v1/collections/{c}"),
        format!("/v1/groups/{g}"),
        format!("/v1/collections/{g}"),
        format!("/v1/groups/{c}"),
    ] {
        let e = error_object(server.put_empty(&b, &path).await).await;
        assert_eq!(e["code"], json!("exists"), "PUT {path}");
    }
    // Deletes.
    for path in [
        header.clone(),
        to_carol.clone(),
        group_secret.clone(),
        format!("/v1/collections/{c}"),
        format!("/v1/groups/{g}"),
    ] {
        let e = error_object(server.delete(&b, &path).await).await;
        assert_eq!(e["code"], json!("not_found"), "DELETE {path}");
    }
    // Bob's account operations touch only Bob.
    let r = server
        .request(Method::DELETE, "/v1/sessions", Some(&b))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(server.get(&a, "/v1/account").await.status(), StatusCode::OK);
    let b = server.login(super::user(1), "bob").await;

    // Nothing changed for Alice, and Bob's feed shows none of it.
    assert_eq!(snapshot(server, &a, &readable).await, before);
    assert_eq!(changes(server, &a, 0).await, alice_feed);
    let bob_feed = changes(server, &b, 0).await;
    assert_eq!(bob_feed["changes"], json!([]));
    assert!(bob_feed["next"].as_u64().unwrap() >= bob_cursor);
    let Value::Array(alice_changes) = &alice_feed["changes"] else {
        panic!()
    };
    assert!(alice_changes.len() >= 6);
    assert_eq!(server.get_json(&b, "/v1/account").await["usage"], json!(0));
}
