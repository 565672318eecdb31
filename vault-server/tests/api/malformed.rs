//! Malformed requests at every route of the OpenAPI document: bad ids and numbers, bad
//! queries, wrong and missing content types, empty, truncated, mistyped, invalid UTF-8,
//! deeply nested and oversized bodies, missing and forged tokens, wrong methods, unknown
//! paths. Every answer must be a 4xx in the one error shape: never a 5xx, never a panic.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use super::{error_object, id, Session, TestServer};

/// Sends `request` and asserts a 4xx answer in the error shape.
async fn expect_4xx(what: &str, request: reqwest::RequestBuilder) -> StatusCode {
    let r = request
        .send()
        .await
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    let status = r.status();
    assert!(status.is_client_error(), "{what}: {status}");
    error_object(r).await;
    status
}

/// A value for a path parameter that the route accepts syntactically.
fn valid_param(name: &str, s: &Session) -> String {
    match name {
        "v" | "version" | "epoch" | "i" => "1".to_owned(),
        "name" => "nobody".to_owned(),
        // The caller's own id, so that routes for oneself get past the owner check.
        "user" => s.id(),
        _ => id(0x42),
    }
}

const BAD_PATH_VALUES: &[&str] = &[
    "XYZ",
    "0000000000000000000000000000000",
    "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    "000000000000000000000000000000000",
    "%FF%FE%FD",
    "%00",
    "-1",
    "1.5",
    "18446744073709551616",
    "9007199254740992",
    "%20",
    "a%2Fb",
    "%C3%A9%E2%82%AC",
];

const BAD_QUERY_VALUES: &[&str] = &["x", "-1", "1.5", "9007199254740992", "", "%FF", "1e3"];

fn fill(template: &str, values: &[(String, String)]) -> String {
    let mut path = template.to_owned();
    for (name, value) in values {
        path = path.replace(&format!("{{{name}}}"), value);
    }
    path
}

fn path_params(template: &str) -> Vec<String> {
    template
        .split('/')
        .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .map(str::to_owned)
        .collect()
}

/// JSON bodies that are not what any route takes.
fn bad_json_bodies() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("empty", Vec::new()),
        ("invalid utf-8", b"{\"name\": \"\xff\xfe\"}".to_vec()),
        ("truncated", b"{\"name\": ".to_vec()),
        ("array", b"[]".to_vec()),
        ("null", b"null".to_vec()),
        ("number", b"1e999999".to_vec()),
        (
            "wrong types",
            br#"{"name": 5, "login_secret": [], "user": {}, "keyring": true, "identity": null}"#
                .to_vec(),
        ),
        (
            "lone surrogate",
            br#"{"name": "\ud800", "login_secret": "x"}"#.to_vec(),
        ),
        ("deep nesting", "[".repeat(30_000).into_bytes()),
        ("deep object nesting", "{\"a\":".repeat(10_000).into_bytes()),
        ("trailing garbage", br#"{"name": "alice"} x"#.to_vec()),
        (
            "duplicate field",
            br#"{"name": "alice", "name": "bob"}"#.to_vec(),
        ),
    ]
}

/// Every documented route against malformed input.
pub async fn malformed_requests_get_json_4xx(server: &TestServer) {
    let s = server.signup(0, "alice").await;
    let forged = Session {
        token: super::b64(&[3u8; 32]),
        user: s.user,
    };
    let doc: Value = server
        .client
        .get(server.url("/v1/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut requests = 0usize;
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.len() >= 20);
    for (template, item) in paths {
        let params = path_params(template);
        let valid: Vec<(String, String)> = params
            .iter()
            .map(|p| (p.clone(), valid_param(p, &s)))
            .collect();
        let path = fill(template, &valid);
        for (method_name, op) in item.as_object().unwrap() {
            let method = Method::from_bytes(method_name.to_uppercase().as_bytes()).unwrap();
            let secured = op.get("security").is_some();
            let what = format!("{method} {template}");

            // No token, forged token.
            if secured {
                let status = expect_4xx(&what, server.request(method.clone(), &path, None)).await;
                assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}");
                let status =
                    expect_4xx(&what, server.request(method.clone(), &path, Some(&forged))).await;
                assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}");
                requests += 2;
            }
            // The session routes end sessions when they succeed: only tokens above.
            if template.starts_with("/v1/sessions") && method == Method::DELETE {
                continue;
            }
            let session = secured.then_some(&s);

            // Bad path parameters, one at a time.
            for p in &params {
                for bad in BAD_PATH_VALUES {
                    let values: Vec<(String, String)> = valid
                        .iter()
                        .map(|(n, v)| {
                            (
                                n.clone(),
                                if n == p { (*bad).to_owned() } else { v.clone() },
                            )
                        })
                        .collect();
                    let url = fill(template, &values);
                    let mut request = server.request(method.clone(), &url, session);
                    if op.get("requestBody").is_some() {
                        request = request
                            .header("content-type", "application/octet-stream")
                            .body(b"x".to_vec());
                    }
                    expect_4xx(&format!("{what} {p}={bad}"), request).await;
                    requests += 1;
                }
            }

            // Bad query parameters, one at a time (the others valid).
            let query: Vec<String> = op
                .get("parameters")
                .and_then(Value::as_array)
                .map(|ps| {
                    ps.iter()
                        .filter(|p| p["in"] == json!("query"))
                        .map(|p| p["name"].as_str().unwrap().to_owned())
                        .collect()
                })
                .unwrap_or_default();
            for q in &query {
                for bad in BAD_QUERY_VALUES {
                    let others: Vec<String> = query
                        .iter()
                        .filter(|o| *o != q)
                        .map(|o| format!("{o}={}", if o == "expected" { "1" } else { "2" }))
                        .collect();
                    let mut parts = others.clone();
                    parts.push(format!("{q}={bad}"));
                    let url = format!("{path}?{}", parts.join("&"));
                    let mut request = server.request(method.clone(), &url, session);
                    if op.get("requestBody").is_some() {
                        request = request
                            .header("content-type", "application/octet-stream")
                            .body(b"x".to_vec());
                    }
                    let status = expect_4xx(&format!("{what} ?{q}={bad}"), request).await;
                    // A recipient filter that is not an id, or bad counters: 400.
                    assert_eq!(status, StatusCode::BAD_REQUEST, "{what} ?{q}={bad}");
                    requests += 1;
                }
            }
            let query_ok = query
                .iter()
                .map(|q| match q.as_str() {
                    "expected" => "expected=1".to_owned(),
                    "version" => "version=2".to_owned(),
                    "recipient" => format!("recipient={}", id(0x42)),
                    other => format!("{other}=1"),
                })
                .collect::<Vec<_>>()
                .join("&");
            let url = if query_ok.is_empty() {
                path.clone()
            } else {
                format!("{path}?{query_ok}")
            };

            // Bodies.
            let Some(body) = op.get("requestBody") else {
                continue;
            };
            let content = body["content"].as_object().unwrap();
            let json_body = content.contains_key("application/json");
            let right_type = if json_body {
                "application/json"
            } else {
                "application/octet-stream"
            };
            let limit = if json_body {
                server.config.limits.json_body * 4
            } else {
                server.config.limits.manifest + server.config.limits.page
            };
            // Wrong, missing and misspelt content types.
            for content_type in [
                None,
                Some("text/plain"),
                Some("application/x-www-form-urlencoded"),
                Some(if json_body {
                    "application/octet-stream"
                } else {
                    "application/json"
                }),
                Some("application/jsonx"),
            ] {
                let mut request = server
                    .request(method.clone(), &url, session)
                    .body(b"{}".to_vec());
                if let Some(t) = content_type {
                    request = request.header("content-type", t);
                }
                let status =
                    expect_4xx(&format!("{what} content-type {content_type:?}"), request).await;
                assert_eq!(
                    status,
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "{what} {content_type:?}"
                );
                requests += 1;
            }
            // Too large, declared.
            let request = server
                .request(method.clone(), &url, session)
                .header("content-type", right_type)
                .body(vec![b'{'; limit + 1]);
            let status = expect_4xx(&format!("{what} huge"), request).await;
            assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{what}");
            requests += 1;
            if json_body {
                for (name, bytes) in bad_json_bodies() {
                    let request = server
                        .request(method.clone(), &url, session)
                        .header("content-type", right_type)
                        .body(bytes);
                    let status = expect_4xx(&format!("{what} {name}"), request).await;
                    assert_eq!(status, StatusCode::BAD_REQUEST, "{what} {name}");
                    requests += 1;
                }
            } else {
                let request = server
                    .request(method.clone(), &url, session)
                    .header("content-type", right_type);
                expect_4xx(&format!("{what} empty"), request).await;
                requests += 1;
            }
        }
    }
    assert!(requests > 500, "{requests}");
    // The server is still fine, and Alice's session too.
    assert_eq!(server.get(&s, "/v1/account").await.status(), StatusCode::OK);
}

/// Unknown paths are 404 and undocumented methods 405, in the error shape.
pub async fn unknown_routes_and_methods(server: &TestServer) {
    let s = server.signup(0, "alice").await;
    let doc: Value = server
        .client
        .get(server.url("/v1/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for (template, item) in doc["paths"].as_object().unwrap() {
        let values: Vec<(String, String)> = path_params(template)
            .iter()
            .map(|p| (p.clone(), valid_param(p, &s)))
            .collect();
        let path = fill(template, &values);
        let documented: Vec<String> = item
            .as_object()
            .unwrap()
            .keys()
            .map(|m| m.to_uppercase())
            .collect();
        for method in [
            "GET", "PUT", "POST", "DELETE", "PATCH", "OPTIONS", "TRACE", "BREW",
        ] {
            if documented.iter().any(|m| m == method) {
                continue;
            }
            let m = Method::from_bytes(method.as_bytes()).unwrap();
            let status = expect_4xx(
                &format!("{method} {template}"),
                server.request(m, &path, Some(&s)),
            )
            .await;
            assert_eq!(
                status,
                StatusCode::METHOD_NOT_ALLOWED,
                "{method} {template}"
            );
        }
    }
    let long = format!("/v1/{}", "a".repeat(8_000));
    for path in [
        "/",
        "/v1",
        "/v1/",
        "/v2/account",
        "/v1/account/",
        "/v1/accounts/extra",
        "/v1/collections//manifest",
        "/v1/collections/00000000000000000000000000000042/unknown",
        "/%FF",
        "/v1/%00",
        "/openapi.json",
        long.as_str(),
    ] {
        let status = expect_4xx(path, server.request(Method::GET, path, Some(&s))).await;
        assert!(
            [StatusCode::NOT_FOUND, StatusCode::BAD_REQUEST].contains(&status),
            "{path}: {status}"
        );
    }
}

/// The document is served as JSON and lists every route.
pub async fn openapi_is_served(server: &TestServer) {
    let r = server
        .client
        .get(server.url("/v1/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "application/json");
    let text = r.text().await.unwrap();
    // The served document is the generated one (any backend type gives the same).
    assert_eq!(
        text,
        vault_server::api::openapi_json::<vault_server::store::SledBackend>()
    );
    let doc: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(doc["openapi"], json!("3.1.0"));
    let count: usize = doc["paths"]
        .as_object()
        .unwrap()
        .values()
        .map(|item| item.as_object().unwrap().len())
        .sum();
    assert_eq!(count, 48, "one operation per route");
}
