//! Multi-factor authentication over the API (docs/spec/mfa.md): TOTP and HOTP enrolment,
//! single-use codes, backup codes, trusted devices, elevation of sensitive operations and
//! the IP allow-list.

use std::net::{IpAddr, Ipv4Addr};

use reqwest::{Method, Response, StatusCode};
use serde_json::{json, Value};
use vault_server::auth::otp::{hotp, totp, OtpAlgorithm};

use super::{b64, expect_error, id, user, Session, TestServer};

/// The TOTP code of `secret` (base32) at the server's current time.
pub(super) fn code_now(server: &TestServer, secret: &[u8]) -> String {
    totp(OtpAlgorithm::Sha1, secret, server.clock.now(), 30, 6)
}

fn base32(s: &str) -> Vec<u8> {
    data_encoding::BASE32_NOPAD.decode(s.as_bytes()).unwrap()
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

async fn login_body(server: &TestServer, body: Value) -> Response {
    server.post_json("/v1/sessions", &body).await
}

fn session_of(v: &Value, who: [u8; 16]) -> Session {
    Session {
        token: v["token"].as_str().unwrap().to_owned(),
        user: who,
    }
}

/// Enrols TOTP for test user `index` (logged in as `s`); returns the secret and the backup
/// codes. Moves the clock one step on, so the enrolment's code is in the past.
pub(super) async fn enable_totp(
    server: &TestServer,
    index: usize,
    s: &Session,
) -> (Vec<u8>, Vec<String>) {
    let who = user(index);
    let r = send(
        server,
        Method::POST,
        "/v1/account/mfa/otp",
        s,
        json!({"kind": "totp", "login_secret": b64(&who.login_secret)}),
    )
    .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let v: Value = r.json().await.unwrap();
    let secret = base32(v["secret"].as_str().unwrap());
    assert_eq!(secret.len(), 20);
    assert!(v["uri"]
        .as_str()
        .unwrap()
        .starts_with("otpauth://totp/vault:"));
    let code = code_now(server, &secret);
    let r = send(
        server,
        Method::POST,
        "/v1/account/mfa/otp/confirm",
        s,
        json!({"kind": "totp", "code": code}),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.unwrap();
    let codes: Vec<String> = v["backup_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    server.clock.advance(30);
    (secret, codes)
}

async fn elevate(server: &TestServer, s: &Session, secret: &[u8]) -> String {
    server.clock.advance(30);
    let r = send(
        server,
        Method::POST,
        "/v1/account/mfa/elevation",
        s,
        json!({"second_factor": {"kind": "totp", "code": code_now(server, secret)}}),
    )
    .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let v: Value = r.json().await.unwrap();
    v["token"].as_str().unwrap().to_owned()
}

pub async fn totp_enrolment_login_and_replay(server: &TestServer) {
    let alice = user(0);
    let s = server.signup(0, "alice").await;
    let v = server.get_json(&s, "/v1/account/mfa").await;
    assert_eq!(v["enabled"], json!(false));

    // A stolen session alone cannot enrol: the login secret is checked.
    let r = send(
        server,
        Method::POST,
        "/v1/account/mfa/otp",
        &s,
        json!({"kind": "totp", "login_secret": b64(&[9; 32])}),
    )
    .await;
    expect_error(r, StatusCode::UNAUTHORIZED, "authentication_failed").await;
    let r = send(
        server,
        Method::POST,
        "/v1/account/mfa/otp",
        &s,
        json!({"kind": "sms", "login_secret": b64(&alice.login_secret)}),
    )
    .await;
    expect_error(r, StatusCode::BAD_REQUEST, "bad_request").await;

    // Enrolment: a wrong first code keeps MFA off.
    let r = send(
        server,
        Method::POST,
        "/v1/account/mfa/otp",
        &s,
        json!({"kind": "totp", "login_secret": b64(&alice.login_secret)}),
    )
    .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["digits"], json!(6));
    assert_eq!(v["period"], json!(30));
    let secret = base32(v["secret"].as_str().unwrap());
    let good = code_now(server, &secret);
    let bad = if good == "000000" { "111111" } else { "000000" };
    let r = send(
        server,
        Method::POST,
        "/v1/account/mfa/otp/confirm",
        &s,
        json!({"kind": "totp", "code": bad}),
    )
    .await;
    expect_error(r, StatusCode::UNAUTHORIZED, "mfa_failed").await;
    let v = server.get_json(&s, "/v1/account/mfa").await;
    assert_eq!(v["enabled"], json!(false));
    assert_eq!(v["pending"], json!("totp"));
    let r = send(
        server,
        Method::POST,
        "/v1/account/mfa/otp/confirm",
        &s,
        json!({"kind": "totp", "code": good}),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.unwrap();
    let backup: Vec<String> = v["backup_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(backup.len(), 10);
    let v = server.get_json(&s, "/v1/account/mfa").await;
    assert_eq!(v["enabled"], json!(true));
    assert_eq!(v["factors"][0]["kind"], json!("totp"));
    assert_eq!(v["backup_codes_left"], json!(10));
    // The status never shows a secret or a code.
    let text = v.to_string();
    assert!(!text.contains(&data_encoding::BASE32_NOPAD.encode(&secret)));
    assert!(!text.contains(&backup[0]));

    // Login: the password alone is not enough now.
    let r = server.login_with("alice", &alice.login_secret).await;
    expect_error(r, StatusCode::UNAUTHORIZED, "mfa_required").await;
    // A wrong password still gets the one failure, with or without a code.
    let r = login_body(
        server,
        json!({"name": "alice", "login_secret": b64(&[3; 32]),
               "second_factor": {"kind": "totp", "code": good}}),
    )
    .await;
    expect_error(r, StatusCode::UNAUTHORIZED, "authentication_failed").await;
    // The enrolment's code was used: a replay in the same step is refused.
    let r = login_body(
        server,
        json!({"name": "alice", "login_secret": b64(&alice.login_secret),
               "second_factor": {"kind": "totp", "code": good}}),
    )
    .await;
    expect_error(r, StatusCode::UNAUTHORIZED, "mfa_failed").await;
    // The next step's code works once.
    server.clock.advance(30);
    let next = code_now(server, &secret);
    let body = json!({"name": "alice", "login_secret": b64(&alice.login_secret),
                      "second_factor": {"kind": "totp", "code": next}});
    let r = login_body(server, body.clone()).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = login_body(server, body).await;
    expect_error(r, StatusCode::UNAUTHORIZED, "mfa_failed").await;

    // A backup code, in any case and spacing, works once.
    server.clock.advance(600);
    let spaced = backup[3].to_lowercase().replace('-', " ");
    let body = json!({"name": "alice", "login_secret": b64(&alice.login_secret),
                      "second_factor": {"kind": "backup_code", "code": spaced}});
    let r = login_body(server, body.clone()).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["backup_codes_left"], json!(9));
    let r = login_body(server, body).await;
    expect_error(r, StatusCode::UNAUTHORIZED, "mfa_failed").await;
    // Another account's MFA is its own: bob logs in with his password alone.
    server.signup(1, "bob").await;
}

pub async fn hotp_enrolment_and_counter(server: &TestServer) {
    let alice = user(0);
    let s = server.signup(0, "alice").await;
    let r = send(
        server,
        Method::POST,
        "/v1/account/mfa/otp",
        &s,
        json!({"kind": "hotp", "login_secret": b64(&alice.login_secret)}),
    )
    .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let v: Value = r.json().await.unwrap();
    assert!(v["uri"].as_str().unwrap().starts_with("otpauth://hotp/"));
    let secret = base32(v["secret"].as_str().unwrap());
    let code = |c| hotp(OtpAlgorithm::Sha1, &secret, c, 6);
    let r = send(
        server,
        Method::POST,
        "/v1/account/mfa/otp/confirm",
        &s,
        json!({"kind": "hotp", "code": code(0)}),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    let login = |c: String| {
        login_body(
            server,
            json!({"name": "alice", "login_secret": b64(&alice.login_secret),
                   "second_factor": {"kind": "hotp", "code": c}}),
        )
    };
    expect_error(login(code(0)).await, StatusCode::UNAUTHORIZED, "mfa_failed").await;
    assert_eq!(login(code(1)).await.status(), StatusCode::CREATED);
    // The look-ahead resynchronises; earlier counters are then used up.
    assert_eq!(login(code(6)).await.status(), StatusCode::CREATED);
    expect_error(login(code(4)).await, StatusCode::UNAUTHORIZED, "mfa_failed").await;
    // A TOTP code is not an HOTP factor.
    let r = login_body(
        server,
        json!({"name": "alice", "login_secret": b64(&alice.login_secret),
               "second_factor": {"kind": "totp", "code": code(7)}}),
    )
    .await;
    expect_error(r, StatusCode::UNAUTHORIZED, "mfa_failed").await;
    let r = login_body(
        server,
        json!({"name": "alice", "login_secret": b64(&alice.login_secret),
               "second_factor": {"kind": "carrier_pigeon", "code": "1"}}),
    )
    .await;
    expect_error(r, StatusCode::BAD_REQUEST, "bad_request").await;
}

pub async fn trusted_devices(server: &TestServer) {
    let alice = user(0);
    let s = server.signup(0, "alice").await;
    let (secret, _) = enable_totp(server, 0, &s).await;
    // A trust request without a valid code trusts nothing.
    let r = login_body(
        server,
        json!({"name": "alice", "login_secret": b64(&alice.login_secret),
               "trust_device": "laptop"}),
    )
    .await;
    expect_error(r, StatusCode::UNAUTHORIZED, "mfa_required").await;
    let r = login_body(
        server,
        json!({"name": "alice", "login_secret": b64(&alice.login_secret),
               "second_factor": {"kind": "totp", "code": code_now(server, &secret)},
               "trust_device": "laptop"}),
    )
    .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let v: Value = r.json().await.unwrap();
    let device_token = v["device_token"].as_str().unwrap().to_owned();
    let device_id = v["device"].as_str().unwrap().to_owned();
    assert_eq!(device_token.len(), 43);

    // The device skips the second factor; the password is still needed.
    let with_device = json!({"name": "alice", "login_secret": b64(&alice.login_secret),
                             "device_token": device_token});
    assert_eq!(
        login_body(server, with_device.clone()).await.status(),
        StatusCode::CREATED
    );
    let r = login_body(
        server,
        json!({"name": "alice", "login_secret": b64(&[4; 32]), "device_token": device_token}),
    )
    .await;
    expect_error(r, StatusCode::UNAUTHORIZED, "authentication_failed").await;
    // Bob cannot use Alice's device token.
    let bob = user(1);
    server.signup(1, "bob").await;
    let sb = server.login(bob, "bob").await;
    let (_, _) = enable_totp(server, 1, &sb).await;
    let r = login_body(
        server,
        json!({"name": "bob", "login_secret": b64(&bob.login_secret), "device_token": device_token}),
    )
    .await;
    expect_error(r, StatusCode::UNAUTHORIZED, "mfa_required").await;

    // Listed, then revoked.
    let v = server.get_json(&s, "/v1/account/mfa").await;
    assert_eq!(v["devices"][0]["id"], json!(device_id));
    assert_eq!(v["devices"][0]["label"], json!("laptop"));
    assert!(!v.to_string().contains(&device_token));
    let r = server
        .delete(&s, &format!("/v1/account/mfa/devices/{device_id}"))
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = server
        .delete(&s, &format!("/v1/account/mfa/devices/{device_id}"))
        .await;
    expect_error(r, StatusCode::NOT_FOUND, "not_found").await;
    let r = login_body(server, with_device).await;
    expect_error(r, StatusCode::UNAUTHORIZED, "mfa_required").await;

    // Trust expires after 30 days.
    server.clock.advance(30);
    let r = login_body(
        server,
        json!({"name": "alice", "login_secret": b64(&alice.login_secret),
               "second_factor": {"kind": "totp", "code": code_now(server, &secret)},
               "trust_device": "phone"}),
    )
    .await;
    let v: Value = r.json().await.unwrap();
    let phone = json!({"name": "alice", "login_secret": b64(&alice.login_secret),
                       "device_token": v["device_token"]});
    server.clock.advance(29 * 24 * 3600);
    assert_eq!(
        login_body(server, phone.clone()).await.status(),
        StatusCode::CREATED
    );
    server.clock.advance(24 * 3600);
    let r = login_body(server, phone).await;
    expect_error(r, StatusCode::UNAUTHORIZED, "mfa_required").await;
    // A bad label is refused.
    let r = login_body(
        server,
        json!({"name": "alice", "login_secret": b64(&alice.login_secret),
               "trust_device": "x".repeat(65)}),
    )
    .await;
    expect_error(r, StatusCode::BAD_REQUEST, "bad_request").await;
}

pub async fn sensitive_operations_need_elevation(server: &TestServer) {
    let alice = user(0);
    let s = server.signup(0, "alice").await;
    // Without MFA, no elevation is needed.
    let c1 = id(0xc1);
    assert_eq!(
        server
            .put_empty(&s, &format!("/v1/collections/{c1}"))
            .await
            .status(),
        StatusCode::CREATED
    );
    assert_eq!(
        server
            .delete(&s, &format!("/v1/collections/{c1}"))
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
    let (secret, backup) = enable_totp(server, 0, &s).await;
    let c2 = id(0xc2);
    assert_eq!(
        server
            .put_empty(&s, &format!("/v1/collections/{c2}"))
            .await
            .status(),
        StatusCode::CREATED
    );
    let r = server.delete(&s, &format!("/v1/collections/{c2}")).await;
    expect_error(r, StatusCode::FORBIDDEN, "elevation_required").await;
    let r = server
        .request(Method::DELETE, &format!("/v1/collections/{c2}"), Some(&s))
        .header("vault-elevation", "A".repeat(43))
        .send()
        .await
        .unwrap();
    expect_error(r, StatusCode::FORBIDDEN, "elevation_required").await;
    // Every sensitive route refuses without an elevation.
    let r = server
        .put(&s, "/v1/account/keyring?expected=1", &alice.sealed)
        .await;
    expect_error(r, StatusCode::FORBIDDEN, "elevation_required").await;
    let r = send(
        server,
        Method::DELETE,
        "/v1/account",
        &s,
        json!({"login_secret": b64(&alice.login_secret)}),
    )
    .await;
    expect_error(r, StatusCode::FORBIDDEN, "elevation_required").await;
    let r = server
        .request(Method::POST, "/v1/account/mfa/backup-codes", Some(&s))
        .send()
        .await
        .unwrap();
    expect_error(r, StatusCode::FORBIDDEN, "elevation_required").await;
    let r = send(
        server,
        Method::DELETE,
        "/v1/account/mfa",
        &s,
        json!({"login_secret": b64(&alice.login_secret)}),
    )
    .await;
    expect_error(r, StatusCode::FORBIDDEN, "elevation_required").await;
    let r = send(
        server,
        Method::POST,
        "/v1/account/password",
        &s,
        json!({"expected": 1, "keyring": b64(&alice.new_password.0),
               "login_secret": b64(&alice.login_secret),
               "new_login_secret": b64(&alice.new_password.1)}),
    )
    .await;
    expect_error(r, StatusCode::FORBIDDEN, "elevation_required").await;

    // An elevation works for this session, for five minutes.
    let token = elevate(server, &s, &secret).await;
    let r = server
        .request(Method::DELETE, &format!("/v1/collections/{c2}"), Some(&s))
        .header("vault-elevation", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    // Not for another session of the same account.
    server.clock.advance(30);
    let other = login_body(
        server,
        json!({"name": "alice", "login_secret": b64(&alice.login_secret),
               "second_factor": {"kind": "backup_code", "code": backup[0]}}),
    )
    .await;
    assert_eq!(other.status(), StatusCode::CREATED);
    let other = session_of(&other.json().await.unwrap(), alice.id);
    let r = server
        .request(Method::POST, "/v1/account/mfa/backup-codes", Some(&other))
        .header("vault-elevation", &token)
        .send()
        .await
        .unwrap();
    expect_error(r, StatusCode::FORBIDDEN, "elevation_required").await;
    // Regenerating backup codes invalidates the old ones.
    let r = server
        .request(Method::POST, "/v1/account/mfa/backup-codes", Some(&s))
        .header("vault-elevation", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.unwrap();
    let fresh = v["backup_codes"][0].as_str().unwrap().to_owned();
    let r = login_body(
        server,
        json!({"name": "alice", "login_secret": b64(&alice.login_secret),
               "second_factor": {"kind": "backup_code", "code": backup[1]}}),
    )
    .await;
    expect_error(r, StatusCode::UNAUTHORIZED, "mfa_failed").await;
    let r = login_body(
        server,
        json!({"name": "alice", "login_secret": b64(&alice.login_secret),
               "second_factor": {"kind": "backup_code", "code": fresh}}),
    )
    .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    // A wrong elevation code is refused and used codes cannot elevate.
    let r = send(
        server,
        Method::POST,
        "/v1/account/mfa/elevation",
        &s,
        json!({"second_factor": {"kind": "backup_code", "code": fresh}}),
    )
    .await;
    expect_error(r, StatusCode::UNAUTHORIZED, "mfa_failed").await;

    // The elevation expires.
    server.clock.advance(5 * 60);
    let r = send(
        server,
        Method::DELETE,
        "/v1/account/mfa",
        &s,
        json!({"login_secret": b64(&alice.login_secret)}),
    )
    .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // Turning MFA off needs the login secret and an elevation.
    let token = elevate(server, &s, &secret).await;
    let r = server
        .request(Method::DELETE, "/v1/account/mfa", Some(&s))
        .header("vault-elevation", &token)
        .json(&json!({"login_secret": b64(&[5; 32])}))
        .send()
        .await
        .unwrap();
    expect_error(r, StatusCode::UNAUTHORIZED, "authentication_failed").await;
    let r = server
        .request(Method::DELETE, "/v1/account/mfa", Some(&s))
        .header("vault-elevation", &token)
        .json(&json!({"login_secret": b64(&alice.login_secret)}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        server
            .login_with("alice", &alice.login_secret)
            .await
            .status(),
        StatusCode::CREATED
    );
    let v = server.get_json(&s, "/v1/account/mfa").await;
    assert_eq!(v["enabled"], json!(false));
    assert_eq!(v["backup_codes_left"], json!(0));
}

pub async fn ip_allowlist(server: &TestServer) {
    let alice = user(0);
    let s = server.signup(0, "alice").await;
    let put = |ranges: Value| {
        send(
            server,
            Method::PUT,
            "/v1/account/mfa/allowlist",
            &s,
            json!({"login_secret": b64(&alice.login_secret), "ranges": ranges}),
        )
    };
    // A list that leaves out this request's own address is refused.
    expect_error(
        put(json!(["192.0.2.0/24"])).await,
        StatusCode::BAD_REQUEST,
        "bad_request",
    )
    .await;
    expect_error(
        put(json!(["not an address"])).await,
        StatusCode::BAD_REQUEST,
        "bad_request",
    )
    .await;
    let many: Vec<String> = (0..33).map(|i| format!("10.0.{i}.0/24")).collect();
    expect_error(
        put(json!(many)).await,
        StatusCode::BAD_REQUEST,
        "bad_request",
    )
    .await;
    let r = put(json!(["127.0.0.1", "2001:db8::/32", "10.1.2.3/8"])).await;
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        v["ranges"],
        json!(["127.0.0.1/32", "2001:db8::/32", "10.0.0.0/8"])
    );
    let v = server.get_json(&s, "/v1/account/mfa").await;
    assert_eq!(v["allowlist"][0], json!("127.0.0.1/32"));

    // From 127.0.0.1: allowed. From 127.0.0.2 (another loopback source): refused after the
    // password check; a wrong password still gets the one failure answer.
    assert_eq!(
        server
            .login_with("alice", &alice.login_secret)
            .await
            .status(),
        StatusCode::CREATED
    );
    let elsewhere = reqwest::Client::builder()
        .no_proxy()
        .local_address(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)))
        .build()
        .unwrap();
    let r = elsewhere
        .post(server.url("/v1/sessions"))
        .json(&json!({"name": "alice", "login_secret": b64(&alice.login_secret)}))
        .send()
        .await
        .unwrap();
    expect_error(r, StatusCode::FORBIDDEN, "address_not_allowed").await;
    let r = elsewhere
        .post(server.url("/v1/sessions"))
        .json(&json!({"name": "alice", "login_secret": b64(&[6; 32])}))
        .send()
        .await
        .unwrap();
    expect_error(r, StatusCode::UNAUTHORIZED, "authentication_failed").await;
    // A session used from elsewhere cannot do sensitive operations.
    let c = id(0xc3);
    assert_eq!(
        server
            .put_empty(&s, &format!("/v1/collections/{c}"))
            .await
            .status(),
        StatusCode::CREATED
    );
    let r = elsewhere
        .delete(server.url(&format!("/v1/collections/{c}")))
        .bearer_auth(&s.token)
        .send()
        .await
        .unwrap();
    expect_error(r, StatusCode::FORBIDDEN, "address_not_allowed").await;
    // Other accounts are not affected.
    let bob = user(1);
    server.register(bob, "bob").await;
    let r = elsewhere
        .post(server.url("/v1/sessions"))
        .json(&json!({"name": "bob", "login_secret": b64(&bob.login_secret)}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    // Clearing the list allows every address again.
    assert_eq!(put(json!([])).await.status(), StatusCode::OK);
    let r = elsewhere
        .post(server.url("/v1/sessions"))
        .json(&json!({"name": "alice", "login_secret": b64(&alice.login_secret)}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
}
