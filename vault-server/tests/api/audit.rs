//! The owner's audit events (`GET /v1/account/audit`, docs/spec/audit.md §6): recorded in
//! order, visible to the owner only, paged, and free of secrets and of the names of failed
//! logins.

use reqwest::StatusCode;
use serde_json::Value;

use super::{b64, expect_error, id, user, TestServer};

/// The caller's events, all pages.
pub async fn all_events(server: &TestServer, s: &super::Session) -> Vec<Value> {
    let mut out = Vec::new();
    let mut after = 0;
    loop {
        let page = server
            .get_json(s, &format!("/v1/account/audit?after={after}&limit=3"))
            .await;
        let events = page["events"].as_array().unwrap();
        out.extend(events.iter().cloned());
        let next = page["next"].as_u64().unwrap();
        if !page["more"].as_bool().unwrap() {
            break;
        }
        assert!(next > after);
        after = next;
    }
    out
}

pub fn kinds(events: &[Value]) -> Vec<&str> {
    events.iter().map(|e| e["kind"].as_str().unwrap()).collect()
}

/// Register, login, a wrong login, an unknown-name login, a collection created and deleted:
/// the owner reads exactly its events in order, with their details; another user reads
/// none of them; no token, secret or unknown name appears.
pub async fn audit_events_of_the_owner(server: &TestServer) {
    let owner = user(0);
    assert_eq!(
        server.register(owner, "audit-owner").await.status(),
        StatusCode::CREATED
    );
    let s = server.login(owner, "audit-owner").await;
    let wrong = [9u8; 32];
    expect_error(
        server.login_with("audit-owner", &wrong).await,
        StatusCode::UNAUTHORIZED,
        "authentication_failed",
    )
    .await;
    // A password typed into the name field: never recorded.
    let typed_password = "tr0ub4dor.and.3";
    expect_error(
        server.login_with(typed_password, &wrong).await,
        StatusCode::UNAUTHORIZED,
        "authentication_failed",
    )
    .await;
    let c = id(0xa7);
    let path = format!("/v1/collections/{c}");
    assert_eq!(
        server.put_empty(&s, &path).await.status(),
        StatusCode::CREATED
    );
    assert_eq!(
        server.delete(&s, &path).await.status(),
        StatusCode::NO_CONTENT
    );

    let events = all_events(server, &s).await;
    assert_eq!(
        kinds(&events),
        [
            "account_registered",
            "login_succeeded",
            "login_failed",
            "collection_created",
            "collection_deleted"
        ]
    );
    let seqs: Vec<u64> = events.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    // The unknown-name failure is in the chain between them, shown to nobody.
    assert_eq!(seqs[3], seqs[2] + 2, "{seqs:?}");
    for e in &events {
        assert_eq!(e["address"], "127.0.0.1", "{e}");
        assert_eq!(e["hash"].as_str().unwrap().len(), 64, "{e}");
        assert!(e["time"].as_u64().unwrap() >= super::T0, "{e}");
    }
    for e in &events[3..] {
        assert_eq!(e["details"]["collection"], c.as_str(), "{e}");
    }
    assert_eq!(events[0]["details"], serde_json::json!({}));

    // Paging: limit 2 from the start, then the rest from `next`.
    let page = server.get_json(&s, "/v1/account/audit?limit=2").await;
    assert_eq!(page["events"].as_array().unwrap().len(), 2);
    assert_eq!(page["more"], true);
    assert_eq!(page["next"].as_u64().unwrap(), seqs[1]);
    let rest = server
        .get_json(&s, &format!("/v1/account/audit?after={}", seqs[1]))
        .await;
    assert_eq!(rest["events"].as_array().unwrap().len(), 3);
    assert_eq!(rest["more"], false);
    let end = server
        .get_json(&s, &format!("/v1/account/audit?after={}", seqs[4]))
        .await;
    assert_eq!(end["events"].as_array().unwrap().len(), 0);
    assert_eq!(end["next"].as_u64().unwrap(), seqs[4]);
    for bad in ["limit=0", "limit=1001", "after=-1", "after=x"] {
        expect_error(
            server.get(&s, &format!("/v1/account/audit?{bad}")).await,
            StatusCode::BAD_REQUEST,
            "bad_request",
        )
        .await;
    }
    let anonymous = server
        .request(reqwest::Method::GET, "/v1/account/audit", None)
        .send()
        .await
        .unwrap();
    expect_error(anonymous, StatusCode::UNAUTHORIZED, "unauthenticated").await;

    // Another user sees only its own events.
    let other = server.signup(1, "audit-other").await;
    let theirs = all_events(server, &other).await;
    assert_eq!(kinds(&theirs), ["account_registered", "login_succeeded"]);
    assert!(theirs
        .iter()
        .all(|e| !seqs.contains(&e["seq"].as_u64().unwrap())));

    // No secret, token or name in any event the owner or the other user can read.
    let text = serde_json::to_string(&events).unwrap() + &serde_json::to_string(&theirs).unwrap();
    for secret in [
        s.token.clone(),
        other.token.clone(),
        b64(&owner.login_secret),
        b64(&wrong),
        typed_password.to_owned(),
        "audit-owner".to_owned(),
        "audit-other".to_owned(),
        b64(&owner.sealed[..32]),
    ] {
        assert!(!text.contains(&secret), "{secret} in {text}");
    }
}

/// Logout, revoke-all, keyring and identity changes, a share and an unshare, and the
/// account's deletion are recorded; the deleted account's reads end with its sessions.
pub async fn audit_records_account_and_sharing_events(server: &TestServer) {
    let who = user(2);
    let s = server.signup(2, "audit-sharer").await;
    let bob = server.signup(3, "audit-bob").await;
    let c = id(0xb7);
    assert_eq!(
        server
            .put_empty(&s, &format!("/v1/collections/{c}"))
            .await
            .status(),
        StatusCode::CREATED
    );
    let key = format!("/v1/collections/{c}/keys/1");
    assert_eq!(
        server.put(&s, &key, b"wrapped").await.status(),
        StatusCode::NO_CONTENT
    );
    let env = super::envelope_path(&bob.id(), &s.id(), &c, 1);
    assert_eq!(
        server.put(&s, &env, b"envelope").await.status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        server.delete(&s, &env).await.status(),
        StatusCode::NO_CONTENT
    );
    // Deleting what is not there records nothing.
    assert_eq!(
        server.delete(&s, &env).await.status(),
        StatusCode::NO_CONTENT
    );
    let r = server
        .request(
            reqwest::Method::PUT,
            "/v1/account/keyring?expected=1",
            Some(&s),
        )
        .header("content-type", "application/octet-stream")
        .body(who.resealed.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let second = server.login(who, "audit-sharer").await;
    let r = server
        .request(
            reqwest::Method::DELETE,
            "/v1/sessions/current",
            Some(&second),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);

    let events = all_events(server, &s).await;
    assert_eq!(
        kinds(&events),
        [
            "account_registered",
            "login_succeeded",
            "collection_created",
            "collection_key_stored",
            "envelope_stored",
            "envelope_deleted",
            "keyring_changed",
            "login_succeeded",
            "logout"
        ]
    );
    assert_eq!(events[3]["details"]["epoch"], 1);
    for e in &events[4..6] {
        let d = &e["details"];
        assert_eq!(d["recipient"], bob.id().as_str(), "{e}");
        assert_eq!(d["owner"], s.id().as_str(), "{e}");
        assert_eq!(d["target"], c.as_str(), "{e}");
        assert_eq!(d["epoch"], 1, "{e}");
    }
    assert_eq!(events[6]["details"]["version"], 2);
    // Bob's log has none of this.
    assert_eq!(
        kinds(&all_events(server, &bob).await),
        ["account_registered", "login_succeeded"]
    );

    let r = server
        .request(reqwest::Method::DELETE, "/v1/sessions", Some(&s))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let s = server.login(who, "audit-sharer").await;
    let events = all_events(server, &s).await;
    let last: Vec<&Value> = events.iter().rev().take(2).collect();
    assert_eq!(last[1]["kind"], "sessions_revoked");
    assert_eq!(last[1]["details"]["count"], 1);
    assert_eq!(last[0]["kind"], "login_succeeded");

    let r = server
        .request(reqwest::Method::DELETE, "/v1/account", Some(&s))
        .json(&serde_json::json!({"login_secret": b64(&who.login_secret)}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    expect_error(
        server.get(&s, "/v1/account/audit").await,
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
    )
    .await;
}
