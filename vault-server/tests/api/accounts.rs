//! Accounts, login, sessions, the keyring and identities.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use super::{b64, expect_error, hex, unb64, user, version_of, Session, TestServer};

/// Register, pre-login, login on two devices, the account, logout, revoke-all.
pub async fn full_account_flow(server: &TestServer) {
    let alice = user(0);
    let r = server.register(alice, "alice").await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"user": hex(&alice.id)})
    );

    // Pre-login gives the salt and count of the stored keyring's header.
    let r = server
        .post_json("/v1/prelogin", &json!({"name": "alice"}))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.unwrap();
    assert_eq!(unb64(v["kdf_salt"].as_str().unwrap()), alice.kdf_salt);
    assert_eq!(v["kdf_iterations"], json!(alice.kdf_iterations));

    let r = server.login_with("alice", &alice.login_secret).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["user"], json!(hex(&alice.id)));
    assert_eq!(v["token"].as_str().unwrap().len(), 43);
    assert_eq!(v["expires"], json!(super::T0 + server.config.session_ttl));
    let laptop = Session {
        token: v["token"].as_str().unwrap().to_owned(),
        user: alice.id,
    };
    let phone = server.login(alice, "alice").await;
    assert_ne!(laptop.token, phone.token);

    let account = server.get_json(&laptop, "/v1/account").await;
    assert_eq!(
        account,
        json!({"user": hex(&alice.id), "name": "alice", "usage": 0,
               "quota": server.config.limits.quota})
    );

    // Logout ends one session; the other goes on.
    let r = server.delete(&laptop, "/v1/sessions/current").await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    expect_error(
        server.get(&laptop, "/v1/account").await,
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
    )
    .await;
    assert_eq!(
        server.get(&phone, "/v1/account").await.status(),
        StatusCode::OK
    );

    // Revoke-all ends every session of the caller, not another user's.
    let tablet = server.login(alice, "alice").await;
    let bob = server.signup(1, "bob").await;
    let r = server.delete(&phone, "/v1/sessions").await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    for s in [&phone, &tablet] {
        expect_error(
            server.get(s, "/v1/account").await,
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
        )
        .await;
    }
    assert_eq!(
        server.get(&bob, "/v1/account").await.status(),
        StatusCode::OK
    );
    // Logging in again works.
    let again = server.login(alice, "alice").await;
    assert_eq!(
        server.get(&again, "/v1/account").await.status(),
        StatusCode::OK
    );
}

/// Names are normalised then checked; the blobs are checked; taken names and ids are 409.
pub async fn registration_checks(server: &TestServer) {
    let (alice, bob) = (user(0), user(1));
    // Upper-case letters are lowercased: "Alice.Smith" is "alice.smith".
    let r = server.register(alice, "Alice.Smith").await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let s = server.login(alice, "ALICE.smith").await;
    let found = server.get_json(&s, "/v1/users/alice.SMITH").await;
    assert_eq!(found, json!({"user": hex(&alice.id)}));
    assert_eq!(
        server.get_json(&s, "/v1/account").await["name"],
        json!("alice.smith")
    );

    for bad in [
        "",
        " bob",
        "bob ",
        "bob/x",
        "b\u{f6}b",
        "bob\u{0}",
        &"b".repeat(65),
    ] {
        let r = server.register(bob, bad).await;
        expect_error(r, StatusCode::BAD_REQUEST, "bad_request").await;
    }
    // The longest name is 64 characters.
    let long = "b".repeat(64);

    let mut body = bob.register_body("bob");
    body["login_secret"] = json!(b64(&[0u8; 32]));
    expect_error(
        server.post_json("/v1/accounts", &body).await,
        StatusCode::BAD_REQUEST,
        "bad_request",
    )
    .await;
    let mut body = bob.register_body("bob");
    body["login_secret"] = json!(b64(&[1u8; 31]));
    expect_error(
        server.post_json("/v1/accounts", &body).await,
        StatusCode::BAD_REQUEST,
        "malformed_body",
    )
    .await;
    // Alice's keyring or identity under Bob's id.
    let mut body = bob.register_body("bob");
    body["keyring"] = json!(b64(&alice.sealed));
    expect_error(
        server.post_json("/v1/accounts", &body).await,
        StatusCode::BAD_REQUEST,
        "bad_request",
    )
    .await;
    let mut body = bob.register_body("bob");
    body["identity"] = json!(b64(&alice.identity));
    expect_error(
        server.post_json("/v1/accounts", &body).await,
        StatusCode::BAD_REQUEST,
        "bad_request",
    )
    .await;
    // A tampered identity (the self-signature no longer verifies) and a wrong magic.
    let mut tampered = bob.identity.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    let mut body = bob.register_body("bob");
    body["identity"] = json!(b64(&tampered));
    expect_error(
        server.post_json("/v1/accounts", &body).await,
        StatusCode::BAD_REQUEST,
        "bad_request",
    )
    .await;
    let mut keyring = bob.sealed.clone();
    keyring[0] = b'X';
    let mut body = bob.register_body("bob");
    body["keyring"] = json!(b64(&keyring));
    expect_error(
        server.post_json("/v1/accounts", &body).await,
        StatusCode::BAD_REQUEST,
        "bad_request",
    )
    .await;
    let mut body = bob.register_body("bob");
    body["user"] = json!("ABCDEF");
    expect_error(
        server.post_json("/v1/accounts", &body).await,
        StatusCode::BAD_REQUEST,
        "malformed_body",
    )
    .await;
    // Unknown fields are refused.
    let mut body = bob.register_body("bob");
    body["admin"] = json!(true);
    expect_error(
        server.post_json("/v1/accounts", &body).await,
        StatusCode::BAD_REQUEST,
        "malformed_body",
    )
    .await;

    // A taken name (any case) and a taken id.
    expect_error(
        server.register(bob, "ALICE.SMITH").await,
        StatusCode::CONFLICT,
        "exists",
    )
    .await;
    expect_error(
        server.register(alice, "another-name").await,
        StatusCode::CONFLICT,
        "exists",
    )
    .await;
    // Nothing of the refused attempts was stored.
    expect_error(
        server.get(&s, "/v1/users/another-name").await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    expect_error(
        server
            .get(&s, &format!("/v1/identities/{}", hex(&bob.id)))
            .await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;

    let r = server.register(bob, &long).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    server.login(bob, &long).await;
}

/// An unknown name gets a decoy: the same fields, a stable salt per name, the configured
/// count.
pub async fn prelogin_decoys_look_like_real_answers(server: &TestServer) {
    server.signup(0, "alice").await;
    let real: Value = server
        .post_json("/v1/prelogin", &json!({"name": "alice"}))
        .await
        .json()
        .await
        .unwrap();
    let r = server
        .post_json("/v1/prelogin", &json!({"name": "mallory"}))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let decoy: Value = r.json().await.unwrap();
    let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(&real), keys(&decoy));
    assert_eq!(unb64(decoy["kdf_salt"].as_str().unwrap()).len(), 16);
    assert_eq!(
        decoy["kdf_iterations"],
        json!(server.config.decoy_kdf_iterations)
    );
    // Stable across calls and across the case of the name; different per name.
    for name in ["mallory", "Mallory", "MALLORY"] {
        let again: Value = server
            .post_json("/v1/prelogin", &json!({"name": name}))
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(again, decoy);
    }
    let other: Value = server
        .post_json("/v1/prelogin", &json!({"name": "trudy"}))
        .await
        .json()
        .await
        .unwrap();
    assert_ne!(other["kdf_salt"], decoy["kdf_salt"]);
    expect_error(
        server
            .post_json("/v1/prelogin", &json!({"name": "no spaces"}))
            .await,
        StatusCode::BAD_REQUEST,
        "bad_request",
    )
    .await;
}

/// A wrong secret for an existing name and any secret for an unknown name give the same
/// status, headers and body.
pub async fn wrong_secret_and_unknown_name_answer_alike(server: &TestServer) {
    server.signup(0, "alice").await;
    let wrong = server.login_with("alice", &[9; 32]).await;
    let unknown = server.login_with("nobody", &[9; 32]).await;
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(unknown.status(), wrong.status());
    let header_names = |r: &reqwest::Response| {
        let mut h: Vec<(String, String)> = r
            .headers()
            .iter()
            .filter(|(k, _)| k.as_str() != "date")
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_owned()))
            .collect();
        h.sort();
        h
    };
    assert_eq!(header_names(&wrong), header_names(&unknown));
    let (a, b) = (wrong.bytes().await.unwrap(), unknown.bytes().await.unwrap());
    assert_eq!(a, b);
    let v: Value = serde_json::from_slice(&a).unwrap();
    assert_eq!(v["error"]["code"], json!("authentication_failed"));
}

/// Failed logins lock the name (after 5 free failures) with 429 and `Retry-After`, for
/// known and unknown names alike; the lock ends with time; a success clears the count.
pub async fn login_backoff(server: &TestServer) {
    let alice = user(0);
    server.signup(0, "alice").await;
    for name in ["alice", "ghost"] {
        for attempt in 1..=6 {
            let r = server.login_with(name, &[attempt; 32]).await;
            expect_error(r, StatusCode::UNAUTHORIZED, "authentication_failed").await;
        }
        // The sixth failure locked the name for 1 s: even the right secret is refused.
        let r = server.login_with(name, &alice.login_secret).await;
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(r.headers()["retry-after"], "1");
        expect_error(r, StatusCode::TOO_MANY_REQUESTS, "too_many_requests").await;
    }
    server.clock.advance(1);
    // After the lock, a success clears the count.
    server.login(alice, "alice").await;
    for attempt in 1..=5 {
        let r = server.login_with("alice", &[attempt; 32]).await;
        expect_error(r, StatusCode::UNAUTHORIZED, "authentication_failed").await;
    }
    server.login(alice, "alice").await;
}

/// A refused registration (name taken) counts as a failure of the name and address.
pub async fn refused_registrations_count_as_failures(server: &TestServer) {
    let (alice, bob) = (user(0), user(1));
    server.signup(0, "alice").await;
    for _ in 0..6 {
        expect_error(
            server.register(bob, "alice").await,
            StatusCode::CONFLICT,
            "exists",
        )
        .await;
    }
    let r = server.register(bob, "alice").await;
    assert!(r.headers().contains_key("retry-after"));
    expect_error(r, StatusCode::TOO_MANY_REQUESTS, "too_many_requests").await;
    // The address has 20 free failures: 15 more refusals under other names lock it too.
    for i in 0..15 {
        let r = server.register(alice, &format!("taken-id-{i}")).await;
        expect_error(r, StatusCode::CONFLICT, "exists").await;
    }
    let r = server.register(bob, "a-free-name").await;
    expect_error(r, StatusCode::TOO_MANY_REQUESTS, "too_many_requests").await;
    server.clock.advance(3600);
    assert_eq!(
        server.register(bob, "a-free-name").await.status(),
        StatusCode::CREATED
    );
}

/// Missing, malformed, forged and expired tokens all get 401 `unauthenticated`.
pub async fn expired_and_forged_tokens(server: &TestServer) {
    let s = server.signup(0, "alice").await;
    let forged = Session {
        token: b64(&[7u8; 32]),
        user: s.user,
    };
    let requests = [
        server.client.get(server.url("/v1/account")),
        server
            .client
            .get(server.url("/v1/account"))
            .header("authorization", "Bearer"),
        server
            .client
            .get(server.url("/v1/account"))
            .header("authorization", format!("Basic {}", s.token)),
        server
            .client
            .get(server.url("/v1/account"))
            .header("authorization", format!("Bearer {}x", s.token)),
        server
            .client
            .get(server.url("/v1/account"))
            .header("authorization", &b"Bearer \xff\xfe"[..]),
        server.request(Method::GET, "/v1/account", Some(&forged)),
    ];
    for request in requests {
        let r = request.send().await.unwrap();
        assert_eq!(r.headers()["www-authenticate"], "Bearer");
        expect_error(r, StatusCode::UNAUTHORIZED, "unauthenticated").await;
    }
    assert_eq!(server.get(&s, "/v1/account").await.status(), StatusCode::OK);
    // Valid until `expires`, not at it.
    server.clock.advance(server.config.session_ttl - 1);
    assert_eq!(server.get(&s, "/v1/account").await.status(), StatusCode::OK);
    server.clock.advance(1);
    expect_error(
        server.get(&s, "/v1/account").await,
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
    )
    .await;
}

/// The keyring blob: read with its version, replaced by compare-and-swap only.
pub async fn keyring_compare_and_swap(server: &TestServer) {
    let (alice, bob) = (user(0), user(1));
    let s = server.signup(0, "alice").await;
    let r = server.get(&s, "/v1/account/keyring").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "application/octet-stream");
    assert_eq!(version_of(&r), 1);
    assert_eq!(r.bytes().await.unwrap(), alice.sealed);

    let r = server
        .put(&s, "/v1/account/keyring?expected=1", &alice.resealed)
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"version": 2}));
    // A stale writer gets the current version and changes nothing.
    let r = server
        .put(&s, "/v1/account/keyring?expected=1", &alice.sealed)
        .await;
    let e = expect_error(r, StatusCode::CONFLICT, "conflict").await;
    assert_eq!(e["current"], json!(2));
    let r = server
        .put(&s, "/v1/account/keyring?expected=7", &alice.sealed)
        .await;
    assert_eq!(
        expect_error(r, StatusCode::CONFLICT, "conflict").await["current"],
        json!(2)
    );
    let r = server.get(&s, "/v1/account/keyring").await;
    assert_eq!(version_of(&r), 2);
    assert_eq!(r.bytes().await.unwrap(), alice.resealed);

    // Only a sealed keyring of the caller is accepted.
    let r = server
        .put(&s, "/v1/account/keyring?expected=2", &bob.sealed)
        .await;
    expect_error(r, StatusCode::BAD_REQUEST, "bad_request").await;
    let r = server
        .put(&s, "/v1/account/keyring?expected=2", b"not a keyring")
        .await;
    expect_error(r, StatusCode::BAD_REQUEST, "bad_request").await;
    let r = server
        .request(Method::PUT, "/v1/account/keyring?expected=2", Some(&s))
        .header("content-type", "text/plain")
        .body(alice.sealed.clone())
        .send()
        .await
        .unwrap();
    expect_error(
        r,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    )
    .await;
    for q in [
        "",
        "?expected=",
        "?expected=x",
        "?expected=-1",
        "?expected=9007199254740992",
    ] {
        let r = server
            .put(&s, &format!("/v1/account/keyring{q}"), &alice.sealed)
            .await;
        expect_error(r, StatusCode::BAD_REQUEST, "bad_request").await;
    }
    assert_eq!(version_of(&server.get(&s, "/v1/account/keyring").await), 2);
    // Each user reads only their own keyring.
    let b = server.signup(1, "bob").await;
    assert_eq!(
        server.get_bytes(&b, "/v1/account/keyring").await,
        bob.sealed
    );
}

/// Identity bundles are public to logged-in users; only their owner replaces them. The
/// name directory finds user ids.
pub async fn identities_and_directory(server: &TestServer) {
    let (alice, bob) = (user(0), user(1));
    let a = server.signup(0, "alice").await;
    let b = server.signup(1, "bob").await;
    let alice_path = format!("/v1/identities/{}", hex(&alice.id));
    assert_eq!(server.get_bytes(&b, &alice_path).await, alice.identity);
    assert_eq!(server.get_bytes(&a, &alice_path).await, alice.identity);

    let r = server.put(&a, &alice_path, &alice.identity_resigned).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        server.get_bytes(&b, &alice_path).await,
        alice.identity_resigned
    );
    // Bob cannot replace Alice's bundle, not even with one of Alice's.
    let r = server.put(&b, &alice_path, &alice.identity).await;
    expect_error(r, StatusCode::NOT_FOUND, "not_found").await;
    assert_eq!(
        server.get_bytes(&a, &alice_path).await,
        alice.identity_resigned
    );
    // Only a valid bundle of the caller.
    let r = server.put(&a, &alice_path, &bob.identity).await;
    expect_error(r, StatusCode::BAD_REQUEST, "bad_request").await;
    let r = server.put(&a, &alice_path, b"junk").await;
    expect_error(r, StatusCode::BAD_REQUEST, "bad_request").await;

    let r = server
        .get(&a, &format!("/v1/identities/{}", super::id(0x77)))
        .await;
    expect_error(r, StatusCode::NOT_FOUND, "not_found").await;
    let r = server.get(&a, "/v1/identities/ABC").await;
    expect_error(r, StatusCode::BAD_REQUEST, "bad_id").await;

    assert_eq!(
        server.get_json(&a, "/v1/users/bob").await,
        json!({"user": hex(&bob.id)})
    );
    expect_error(
        server.get(&a, "/v1/users/carol").await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    expect_error(
        server.get(&a, "/v1/users/no%20spaces").await,
        StatusCode::BAD_REQUEST,
        "bad_request",
    )
    .await;
    let r = server
        .client
        .get(server.url("/v1/users/bob"))
        .send()
        .await
        .unwrap();
    expect_error(r, StatusCode::UNAUTHORIZED, "unauthenticated").await;
}

/// Account deletion needs the login secret again and removes everything.
pub async fn account_deletion(server: &TestServer) {
    let alice = user(0);
    let a = server.signup(0, "alice").await;
    let b = server.signup(1, "bob").await;
    let c = super::id(0xc1);
    assert_eq!(
        server
            .put_empty(&a, &format!("/v1/collections/{c}"))
            .await
            .status(),
        StatusCode::CREATED
    );
    let page = super::page_path(&c, &super::id(1), 1, 0);
    assert_eq!(
        server.put(&a, &page, b"sealed page").await.status(),
        StatusCode::NO_CONTENT
    );
    // Shared with Bob.
    let env = super::envelope_path(&b.id(), &a.id(), &c, 1);
    assert_eq!(
        server.put(&a, &env, b"envelope").await.status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(server.get_bytes(&b, &page).await, b"sealed page");

    let delete = |secret: [u8; 32]| {
        server
            .request(Method::DELETE, "/v1/account", Some(&a))
            .json(&json!({"login_secret": b64(&secret)}))
            .send()
    };
    let r = delete([5; 32]).await.unwrap();
    expect_error(r, StatusCode::UNAUTHORIZED, "authentication_failed").await;
    assert_eq!(server.get(&a, "/v1/account").await.status(), StatusCode::OK);
    let r = server
        .request(Method::DELETE, "/v1/account", Some(&a))
        .send()
        .await
        .unwrap();
    expect_error(
        r,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    )
    .await;

    let r = delete(alice.login_secret).await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    expect_error(
        server.get(&a, "/v1/account").await,
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
    )
    .await;
    expect_error(
        server.login_with("alice", &alice.login_secret).await,
        StatusCode::UNAUTHORIZED,
        "authentication_failed",
    )
    .await;
    // Her collection went with her: Bob's share is gone.
    expect_error(
        server.get(&b, &page).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    expect_error(
        server.get(&b, &format!("/v1/identities/{}", a.id())).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    expect_error(
        server.get(&b, "/v1/users/alice").await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    let listed = server.get_json(&b, "/v1/collections").await;
    assert_eq!(listed, json!({"scopes": []}));
    // The name and the id are free again.
    assert_eq!(
        server.register(alice, "alice").await.status(),
        StatusCode::CREATED
    );
    let again = server.login(alice, "alice").await;
    assert_eq!(
        server.get_json(&again, "/v1/account").await["usage"],
        json!(0)
    );
}

/// A password change replaces the keyring and the login verifier together: the new
/// password logs in, the old one no longer does, every session ends, and the prelogin
/// answers the new KDF parameters. A keyring with other KDF parameters is refused on the
/// plain keyring route, which would leave the verifier behind.
pub async fn password_change(server: &TestServer) {
    let alice = user(0);
    let (new_keyring, new_secret) = &alice.new_password;
    let s = server.signup(0, "alice").await;
    let other_device = server.login(alice, "alice").await;
    // The plain keyring route refuses new KDF parameters.
    let r = server
        .put(&s, "/v1/account/keyring?expected=1", new_keyring)
        .await;
    expect_error(r, StatusCode::BAD_REQUEST, "bad_request").await;

    let change = |expected: u64, current: &[u8; 32], keyring: &[u8]| {
        json!({
            "expected": expected,
            "keyring": b64(keyring),
            "login_secret": b64(current),
            "new_login_secret": b64(new_secret),
        })
    };
    let post = |s: &Session, body: Value| {
        server
            .request(Method::POST, "/v1/account/password", Some(s))
            .json(&body)
            .send()
    };
    // A wrong current secret: refused, nothing changed.
    let r = post(&s, change(1, &[7; 32], new_keyring)).await.unwrap();
    expect_error(r, StatusCode::UNAUTHORIZED, "authentication_failed").await;
    // A stale version: conflict, nothing changed.
    let r = post(&s, change(5, &alice.login_secret, new_keyring))
        .await
        .unwrap();
    let e = expect_error(r, StatusCode::CONFLICT, "conflict").await;
    assert_eq!(e["current"], json!(1));
    // Another user's keyring: refused.
    let r = post(&s, change(1, &alice.login_secret, &user(1).sealed))
        .await
        .unwrap();
    expect_error(r, StatusCode::BAD_REQUEST, "bad_request").await;
    assert_eq!(
        server.get(&other_device, "/v1/account").await.status(),
        StatusCode::OK
    );
    assert_eq!(
        server
            .login_with("alice", &alice.login_secret)
            .await
            .status(),
        StatusCode::CREATED
    );

    let r = post(&s, change(1, &alice.login_secret, new_keyring))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"version": 2}));
    // Every session ended, this one included.
    for old in [&s, &other_device] {
        expect_error(
            server.get(old, "/v1/account").await,
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
        )
        .await;
    }
    expect_error(
        server.login_with("alice", &alice.login_secret).await,
        StatusCode::UNAUTHORIZED,
        "authentication_failed",
    )
    .await;
    let r = server.login_with("alice", new_secret).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let token = r.json::<Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let s = Session {
        token,
        user: alice.id,
    };
    assert_eq!(
        server.get_bytes(&s, "/v1/account/keyring").await,
        *new_keyring
    );
    let pre = server
        .post_json("/v1/prelogin", &json!({"name": "alice"}))
        .await
        .json::<Value>()
        .await
        .unwrap();
    let sealed = vault_keyring::SealedKeyring::from_bytes(new_keyring).unwrap();
    assert_eq!(pre["kdf_salt"], json!(b64(sealed.kdf_params().salt())));
    assert_eq!(
        pre["kdf_iterations"],
        json!(sealed.kdf_params().iterations())
    );
}
