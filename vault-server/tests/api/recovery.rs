//! Account recovery with the recovery code, through the server (docs/spec/api.md §5.1
//! "Recovery", login.md §10): fetch the sealed keyring with the recovery secret, open it
//! locally with the code, seal it under a new password, replace keyring and login verifier
//! in one step; the failures answer like a login's and count in its backoff; MFA needs the
//! second factor; a replaced recovery code stops working.

use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use reqwest::{Method, Response, StatusCode};
use serde_json::{json, Value};
use vault_keyring::danger::{insecure_test_params, insecure_test_policy, params_from_parts};
use vault_keyring::{Password, PasswordKeys, RecoveryCode, SealedKeyring};

use super::mfa::{code_now, enable_totp};
use super::{b64, error_object, expect_error, user, version_of, Session, TestServer, TestUser};

/// Registers `who` as `name` with its recovery secret.
async fn register_with_recovery(server: &TestServer, who: &TestUser, name: &str) {
    let mut body = who.register_body(name);
    body["recovery_secret"] = json!(b64(&who.recovery_secret));
    let r = server.post_json("/v1/accounts", &body).await;
    assert_eq!(
        r.status(),
        StatusCode::CREATED,
        "{}",
        r.text().await.unwrap()
    );
}

/// `POST /v1/recovery/keyring`.
async fn fetch(
    server: &TestServer,
    name: &str,
    secret: &[u8; 32],
    factor: Option<Value>,
) -> Response {
    let mut body = json!({"name": name, "recovery_secret": b64(secret)});
    if let Some(f) = factor {
        body["second_factor"] = f;
    }
    server.post_json("/v1/recovery/keyring", &body).await
}

/// What the client does with the keyring it fetched: opens it with the recovery code and
/// seals it under `new_password` (fresh test KDF parameters). The new blob and the new
/// password's login secret.
fn reseal(blob: &[u8], code: &str, new_password: &str, seed: u64) -> (Vec<u8>, [u8; 32]) {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let params = insecure_test_params(&mut rng, 10);
    let keys = PasswordKeys::derive_with_policy(
        &Password::from(new_password),
        &params,
        &insecure_test_policy(10),
    )
    .unwrap();
    let code: RecoveryCode = code.parse().unwrap();
    let sealed = SealedKeyring::from_bytes(blob).unwrap();
    let (keyring, resealed) = sealed.recover(&mut rng, &code, &keys).unwrap();
    assert_eq!(keyring.id(), sealed.keyring_id());
    (resealed.to_bytes(), *keys.login_secret().expose_bytes())
}

/// The body of `POST /v1/recovery`.
fn recover_body(
    name: &str,
    secret: &[u8; 32],
    expected: u64,
    keyring: &[u8],
    new_login_secret: &[u8; 32],
) -> Value {
    json!({
        "name": name,
        "recovery_secret": b64(secret),
        "expected": expected,
        "keyring": b64(keyring),
        "new_login_secret": b64(new_login_secret),
    })
}

async fn send(
    server: &TestServer,
    method: Method,
    path: &str,
    s: &Session,
    body: Value,
) -> Response {
    server
        .request(method, path, Some(s))
        .json(&body)
        .send()
        .await
        .unwrap()
}

/// The whole recovery: register with a recovery secret, forget the password, fetch the
/// keyring, open and reseal it, replace keyring and verifier; old sessions end, the new
/// password logs in, the old one does not.
pub async fn recovery_with_the_code(server: &TestServer) {
    let alice = user(0);
    register_with_recovery(server, alice, "alice").await;
    let old_session = server.login(alice, "alice").await;

    // The password is forgotten; the recovery code is at hand.
    let r = fetch(server, "Alice", &alice.recovery_secret, None).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(version_of(&r), 1);
    assert!(r.headers().get("vault-elevation").is_none());
    let blob = r.bytes().await.unwrap().to_vec();
    assert_eq!(blob, alice.sealed);
    let (resealed, new_secret) = reseal(&blob, &alice.recovery_code, "a new password", 1);

    // A stale version is a conflict, and changes nothing.
    let r = server
        .post_json(
            "/v1/recovery",
            &recover_body("alice", &alice.recovery_secret, 7, &resealed, &new_secret),
        )
        .await;
    let e = expect_error(r, StatusCode::CONFLICT, "conflict").await;
    assert_eq!(e["current"], json!(1));
    // A keyring of another user is refused.
    let r = server
        .post_json(
            "/v1/recovery",
            &recover_body(
                "alice",
                &alice.recovery_secret,
                1,
                &user(1).sealed,
                &new_secret,
            ),
        )
        .await;
    expect_error(r, StatusCode::BAD_REQUEST, "bad_request").await;
    assert_eq!(
        server.get(&old_session, "/v1/account").await.status(),
        StatusCode::OK
    );

    let r = server
        .post_json(
            "/v1/recovery",
            &recover_body("alice", &alice.recovery_secret, 1, &resealed, &new_secret),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["version"], json!(2));

    // Every old session has ended.
    let r = server.get(&old_session, "/v1/account").await;
    expect_error(r, StatusCode::UNAUTHORIZED, "unauthenticated").await;
    // The old password no longer logs in; the new one does.
    let r = server.login_with("alice", &alice.login_secret).await;
    expect_error(r, StatusCode::UNAUTHORIZED, "authentication_failed").await;
    let r = server.login_with("alice", &new_secret).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let v: Value = r.json().await.unwrap();
    let s = Session {
        token: v["token"].as_str().unwrap().to_owned(),
        user: alice.id,
    };
    let r = server.get(&s, "/v1/account/keyring").await;
    assert_eq!(version_of(&r), 2);
    let stored = r.bytes().await.unwrap().to_vec();
    assert_eq!(stored, resealed);
    let sealed = SealedKeyring::from_bytes(&stored).unwrap();
    let (keyring, _) = sealed
        .unlock_with_password_policy(&Password::from("a new password"), &insecure_test_policy(10))
        .unwrap();
    assert_eq!(keyring.id().as_bytes(), &alice.id);
    // Pre-login now gives the new keyring's KDF parameters.
    let r = server
        .post_json("/v1/prelogin", &json!({"name": "alice"}))
        .await;
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["kdf_salt"], json!(b64(sealed.kdf_params().salt())));

    // The code still works (the recovery wrap was kept): the keyring of version 2.
    let r = fetch(server, "alice", &alice.recovery_secret, None).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(version_of(&r), 2);

    // The audit log has the recovery under its own kinds (audit.md, codes 11–12).
    let events = super::audit::all_events(server, &s).await;
    let kinds = super::audit::kinds(&events);
    let read = kinds.iter().position(|k| *k == "recovery_keyring_read");
    let recovered = kinds.iter().position(|k| *k == "recovery");
    assert!(
        read.is_some() && recovered.is_some() && read < recovered,
        "{kinds:?}"
    );
}

/// Unknown name, an account without recovery, a wrong secret: one answer, byte for byte;
/// failures count in the login backoff of the name (429 after the free ones, for login
/// too) until the lock ends.
pub async fn recovery_failures_answer_alike_and_back_off(server: &TestServer) {
    let alice = user(0);
    let bob = user(1);
    register_with_recovery(server, alice, "alice").await;
    // Bob registers without a recovery secret: he cannot recover through the server.
    assert_eq!(
        server.register(bob, "bob").await.status(),
        StatusCode::CREATED
    );

    let mut bodies = Vec::new();
    for (name, secret) in [
        ("alice", [7u8; 32]),
        ("nobody", alice.recovery_secret),
        ("bob", bob.recovery_secret),
    ] {
        let r = fetch(server, name, &secret, None).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{name}");
        let headers: Vec<_> = r
            .headers()
            .iter()
            .filter(|(k, _)| *k != "date")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        bodies.push((headers, r.text().await.unwrap()));
    }
    assert!(bodies.windows(2).all(|w| w[0] == w[1]), "{bodies:?}");
    assert!(bodies[0].1.contains("authentication_failed"));
    let (resealed, new_secret) = reseal(&alice.sealed, &alice.recovery_code, "new", 2);
    let r = server
        .post_json(
            "/v1/recovery",
            &recover_body("nobody", &alice.recovery_secret, 1, &resealed, &new_secret),
        )
        .await;
    expect_error(r, StatusCode::UNAUTHORIZED, "authentication_failed").await;

    // Alice has 1 failure; 5 are free, the sixth locks the name for a second.
    for i in 0..5 {
        let r = if i % 2 == 0 {
            fetch(server, "alice", &[8u8; 32], None).await
        } else {
            server
                .post_json(
                    "/v1/recovery",
                    &recover_body("alice", &[8u8; 32], 1, &resealed, &new_secret),
                )
                .await
        };
        expect_error(r, StatusCode::UNAUTHORIZED, "authentication_failed").await;
    }
    // Locked: even the right secret gets 429, and so does a login of the name.
    let r = fetch(server, "alice", &alice.recovery_secret, None).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(r.headers().get("retry-after").is_some());
    error_object(r).await;
    let r = server.login_with("alice", &alice.login_secret).await;
    expect_error(r, StatusCode::TOO_MANY_REQUESTS, "too_many_requests").await;
    // Unknown names are counted and locked the same way ("nobody" has 2 failures).
    for _ in 0..4 {
        let r = fetch(server, "nobody", &[9u8; 32], None).await;
        expect_error(r, StatusCode::UNAUTHORIZED, "authentication_failed").await;
    }
    let r = fetch(server, "nobody", &[9u8; 32], None).await;
    expect_error(r, StatusCode::TOO_MANY_REQUESTS, "too_many_requests").await;

    // After the lock, the right secret works (and clears the name's count).
    server.clock.advance(2);
    let r = fetch(server, "alice", &alice.recovery_secret, None).await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = server
        .post_json(
            "/v1/recovery",
            &recover_body("alice", &alice.recovery_secret, 1, &resealed, &new_secret),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    // The all-zero secret is a malformed value, refused before any work.
    let r = fetch(server, "alice", &[0u8; 32], None).await;
    expect_error(r, StatusCode::BAD_REQUEST, "bad_request").await;
}

/// With MFA on, both steps need the second factor; the keyring fetch hands out an elevation
/// token that stands for it at the recovery of that keyring version.
pub async fn recovery_needs_the_second_factor(server: &TestServer) {
    let alice = user(0);
    register_with_recovery(server, alice, "alice").await;
    let s = server.login(alice, "alice").await;
    let (totp_secret, backup_codes) = enable_totp(server, 0, &s).await;

    // The recovery secret alone is not enough.
    let r = fetch(server, "alice", &alice.recovery_secret, None).await;
    expect_error(r, StatusCode::UNAUTHORIZED, "mfa_required").await;
    let wrong = json!({"kind": "totp", "code": "000000"});
    let r = fetch(server, "alice", &alice.recovery_secret, Some(wrong)).await;
    // (A wrong code may collide with the right one once in a million runs.)
    if r.status() == StatusCode::UNAUTHORIZED {
        expect_error(r, StatusCode::UNAUTHORIZED, "mfa_failed").await;
    }
    // A wrong recovery secret with a good code is still authentication_failed, and the
    // code is not used up.
    server.clock.advance(30);
    let code = code_now(server, &totp_secret);
    let r = fetch(
        server,
        "alice",
        &[5u8; 32],
        Some(json!({"kind": "totp", "code": code})),
    )
    .await;
    expect_error(r, StatusCode::UNAUTHORIZED, "authentication_failed").await;
    let r = fetch(
        server,
        "alice",
        &alice.recovery_secret,
        Some(json!({"kind": "totp", "code": code})),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    let elevation = r.headers()["vault-elevation"].to_str().unwrap().to_owned();
    assert_eq!(elevation.len(), 43);
    let blob = r.bytes().await.unwrap().to_vec();
    let (resealed, new_secret) = reseal(&blob, &alice.recovery_code, "new password", 3);
    let body = recover_body("alice", &alice.recovery_secret, 1, &resealed, &new_secret);

    // Without the token or a code: mfa_required. A forged token does not count either.
    let r = server.post_json("/v1/recovery", &body).await;
    expect_error(r, StatusCode::UNAUTHORIZED, "mfa_required").await;
    let r = server
        .client
        .post(server.url("/v1/recovery"))
        .header("vault-elevation", b64(&[1u8; 32]))
        .json(&body)
        .send()
        .await
        .unwrap();
    expect_error(r, StatusCode::UNAUTHORIZED, "mfa_required").await;
    // A login session's elevation is not a recovery's.
    let r = server
        .client
        .post(server.url("/v1/account/mfa/elevation"))
        .bearer_auth(&s.token)
        .json(&json!({"second_factor": {"kind": "backup_code", "code": backup_codes[0]}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let v: Value = r.json().await.unwrap();
    let session_elevation = v["token"].as_str().unwrap().to_owned();
    let r = server
        .client
        .post(server.url("/v1/recovery"))
        .header("vault-elevation", &session_elevation)
        .json(&body)
        .send()
        .await
        .unwrap();
    expect_error(r, StatusCode::UNAUTHORIZED, "mfa_required").await;

    // With the fetch's token: recovered.
    let r = server
        .client
        .post(server.url("/v1/recovery"))
        .header("vault-elevation", &elevation)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
    // The token served one recovery: the keyring version moved on.
    let (again, again_secret) = reseal(&resealed, &alice.recovery_code, "third", 4);
    let body = recover_body("alice", &alice.recovery_secret, 2, &again, &again_secret);
    let r = server
        .client
        .post(server.url("/v1/recovery"))
        .header("vault-elevation", &elevation)
        .json(&body)
        .send()
        .await
        .unwrap();
    expect_error(r, StatusCode::UNAUTHORIZED, "mfa_required").await;
    // A backup code works as the second factor, once.
    let mut body = body;
    body["second_factor"] = json!({"kind": "backup_code", "code": backup_codes[1]});
    let r = server.post_json("/v1/recovery", &body).await;
    assert_eq!(r.status(), StatusCode::OK);
    body["expected"] = json!(3);
    let r = server.post_json("/v1/recovery", &body).await;
    expect_error(r, StatusCode::UNAUTHORIZED, "mfa_failed").await;

    // The login still needs the second factor with the new password.
    let r = server.login_with("alice", &again_secret).await;
    expect_error(r, StatusCode::UNAUTHORIZED, "mfa_required").await;
}

/// A new recovery code replaces the recovery verifier together with the keyring: through
/// `PUT /v1/account/recovery`, or `new_recovery_secret` of a recovery. The old code stops
/// working; a keyring with another recovery part is refused elsewhere.
pub async fn recovery_code_replaced(server: &TestServer) {
    let alice = user(0);
    register_with_recovery(server, alice, "alice").await;
    let s = server.login(alice, "alice").await;

    // Another recovery part through the routes that keep the recovery verifier: refused.
    let r = server
        .put(&s, "/v1/account/keyring?expected=1", &alice.resealed)
        .await;
    expect_error(r, StatusCode::BAD_REQUEST, "bad_request").await;
    let (resealed, _) = reseal(&alice.sealed, &alice.recovery_code, "x", 5);
    let mut rng = ChaCha20Rng::seed_from_u64(6);
    let keys = PasswordKeys::derive_with_policy(
        &Password::from(alice.password.as_str()),
        &params_from_parts(alice.kdf_salt, alice.kdf_iterations),
        &insecure_test_policy(10),
    )
    .unwrap();
    let sealed = SealedKeyring::from_bytes(&alice.sealed).unwrap();
    let (rotated, new_code) = sealed.rotate_recovery(&mut rng, &keys).unwrap();
    let rotated = rotated.to_bytes();
    let new_recovery = *new_code.recovery_secret().expose_bytes();
    let r = server
        .post_json(
            "/v1/recovery",
            &recover_body(
                "alice",
                &alice.recovery_secret,
                1,
                &rotated,
                &alice.login_secret,
            ),
        )
        .await;
    expect_error(r, StatusCode::BAD_REQUEST, "bad_request").await;

    // PUT /v1/account/recovery: the login secret is checked; then both are replaced.
    let put = |secret: [u8; 32]| {
        json!({
            "login_secret": b64(&secret),
            "recovery_secret": b64(&new_recovery),
            "expected": 1,
            "keyring": b64(&rotated),
        })
    };
    let r = send(
        server,
        Method::PUT,
        "/v1/account/recovery",
        &s,
        put([4; 32]),
    )
    .await;
    expect_error(r, StatusCode::UNAUTHORIZED, "authentication_failed").await;
    // A keyring under another password is refused here.
    let mut other = put(alice.login_secret);
    other["keyring"] = json!(b64(&resealed));
    let r = send(server, Method::PUT, "/v1/account/recovery", &s, other).await;
    expect_error(r, StatusCode::BAD_REQUEST, "bad_request").await;
    let r = send(
        server,
        Method::PUT,
        "/v1/account/recovery",
        &s,
        put(alice.login_secret),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["version"], json!(2));
    // The session goes on; the old code no longer recovers, the new one does.
    assert_eq!(server.get(&s, "/v1/account").await.status(), StatusCode::OK);
    let r = fetch(server, "alice", &alice.recovery_secret, None).await;
    expect_error(r, StatusCode::UNAUTHORIZED, "authentication_failed").await;
    let r = fetch(server, "alice", &new_recovery, None).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.bytes().await.unwrap().to_vec(), rotated);

    // A recovery that also rotates the code: the new code's secret comes along.
    let new_code_text = new_code.expose_formatted().to_string();
    let (recovered, pw_secret) = reseal(&rotated, &new_code_text, "after", 7);
    let sealed = SealedKeyring::from_bytes(&recovered).unwrap();
    let pw_keys = {
        let mut rng = ChaCha20Rng::seed_from_u64(7);
        let params = insecure_test_params(&mut rng, 10);
        PasswordKeys::derive_with_policy(
            &Password::from("after"),
            &params,
            &insecure_test_policy(10),
        )
        .unwrap()
    };
    assert_eq!(pw_keys.login_secret().expose_bytes(), &pw_secret);
    let (rotated_again, third_code) = sealed.rotate_recovery(&mut rng, &pw_keys).unwrap();
    let third = *third_code.recovery_secret().expose_bytes();
    let mut body = recover_body(
        "alice",
        &new_recovery,
        2,
        &rotated_again.to_bytes(),
        &pw_secret,
    );
    body["new_recovery_secret"] = json!(b64(&third));
    let r = server.post_json("/v1/recovery", &body).await;
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
    let r = fetch(server, "alice", &new_recovery, None).await;
    expect_error(r, StatusCode::UNAUTHORIZED, "authentication_failed").await;
    let r = fetch(server, "alice", &third, None).await;
    assert_eq!(r.status(), StatusCode::OK);

    // An account registered without recovery gets it through the same route.
    let bob = user(1);
    assert_eq!(
        server.register(bob, "bob").await.status(),
        StatusCode::CREATED
    );
    let b = server.login(bob, "bob").await;
    let r = fetch(server, "bob", &bob.recovery_secret, None).await;
    expect_error(r, StatusCode::UNAUTHORIZED, "authentication_failed").await;
    let body = json!({
        "login_secret": b64(&bob.login_secret),
        "recovery_secret": b64(&bob.recovery_secret),
        "expected": 1,
        "keyring": b64(&bob.sealed),
    });
    let r = send(server, Method::PUT, "/v1/account/recovery", &b, body).await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = fetch(server, "bob", &bob.recovery_secret, None).await;
    assert_eq!(r.status(), StatusCode::OK);
    // The account's deletion takes the recovery verifier with it.
    let r = send(
        server,
        Method::DELETE,
        "/v1/account",
        &b,
        json!({"login_secret": b64(&bob.login_secret)}),
    )
    .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = fetch(server, "bob", &bob.recovery_secret, None).await;
    expect_error(r, StatusCode::UNAUTHORIZED, "authentication_failed").await;
}
