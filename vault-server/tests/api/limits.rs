//! Quotas, body size limits and the request time-out.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{envelope_path, expect_error, id, object_path, page_path, Session, TestServer};

async fn usage(server: &TestServer, s: &Session) -> u64 {
    server.get_json(s, "/v1/account").await["usage"]
        .as_u64()
        .unwrap()
}

/// Writes beyond the owner's quota are refused with 413 `quota_exceeded` and change
/// nothing; deletes give the bytes back.
pub async fn quotas(server: &TestServer) {
    let a = server.signup(0, "alice").await;
    let b = server.signup(1, "bob").await;
    let quota = server.config.limits.quota;
    let (c, o) = (id(0xc1), id(0x01));
    server.put_empty(&a, &format!("/v1/collections/{c}")).await;
    assert_eq!(usage(server, &a).await, 0);

    let page = vec![0x5a; 64 * 1024];
    let fit = quota / page.len() as u64;
    for i in 0..fit {
        let r = server.put(&a, &page_path(&c, &o, 1, i as u32), &page).await;
        assert_eq!(r.status(), StatusCode::NO_CONTENT, "page {i}");
    }
    assert_eq!(usage(server, &a).await, fit * page.len() as u64);
    let full = usage(server, &a).await;
    let r = server
        .put(&a, &page_path(&c, &o, 1, fit as u32), &page)
        .await;
    expect_error(r, StatusCode::PAYLOAD_TOO_LARGE, "quota_exceeded").await;
    expect_error(
        server.get(&a, &page_path(&c, &o, 1, fit as u32)).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    // Replacing a page with one of the same size fits; a larger one does not.
    assert_eq!(
        server
            .put(&a, &page_path(&c, &o, 1, 0), &page)
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
    let r = server
        .put(&a, &page_path(&c, &o, 1, 0), &vec![1; page.len() + 1])
        .await;
    expect_error(r, StatusCode::PAYLOAD_TOO_LARGE, "quota_exceeded").await;
    // Every kind of write counts against the owner's quota, including a member's writes.
    let r = server.put(&a, &object_path(&c, &o, 1), &[1; 64]).await;
    expect_error(r, StatusCode::PAYLOAD_TOO_LARGE, "quota_exceeded").await;
    let r = server
        .put(
            &a,
            &format!("/v1/collections/{c}/manifest?expected=0&version=1"),
            &[1; 64],
        )
        .await;
    expect_error(r, StatusCode::PAYLOAD_TOO_LARGE, "quota_exceeded").await;
    let r = server
        .put(&a, &envelope_path(&b.id(), &a.id(), &c, 1), &[1; 64])
        .await;
    expect_error(r, StatusCode::PAYLOAD_TOO_LARGE, "quota_exceeded").await;
    assert_eq!(usage(server, &a).await, full);
    // Bob's own quota is untouched.
    assert_eq!(usage(server, &b).await, 0);

    // Deleting the object version gives every byte back.
    assert_eq!(
        server.delete(&a, &object_path(&c, &o, 1)).await.status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(usage(server, &a).await, 0);
    assert_eq!(
        server
            .put(&a, &object_path(&c, &o, 2), &[1; 100])
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
    let r = server
        .put(&a, &envelope_path(&b.id(), &a.id(), &c, 1), &[2; 50])
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(usage(server, &a).await, 150);
    // So does deleting the collection.
    assert_eq!(
        server
            .delete(&a, &format!("/v1/collections/{c}"))
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(usage(server, &a).await, 0);
    let account = server.get_json(&a, "/v1/account").await;
    assert_eq!(account["quota"], json!(quota));
}

/// Bodies above their limit are refused with 413 `payload_too_large`, declared or not.
pub async fn body_limits(server: &TestServer) {
    let limits = server.config.limits;
    let a = server.signup(0, "alice").await;
    let (c, g, o) = (id(0xc1), id(0x91), id(0x01));
    server.put_empty(&a, &format!("/v1/collections/{c}")).await;
    server.put_empty(&a, &format!("/v1/groups/{g}")).await;

    // A page of exactly the limit is accepted; one byte more is not.
    let r = server
        .put(&a, &page_path(&c, &o, 1, 0), &vec![7; limits.page])
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let cases = [
        (page_path(&c, &o, 1, 1), limits.page),
        (object_path(&c, &o, 1), limits.header),
        (format!("/v1/collections/{c}/keys/1"), limits.collection_key),
        (
            format!("/v1/collections/{c}/manifest?expected=0&version=1"),
            limits.manifest,
        ),
        (format!("/v1/groups/{g}/rosters/1"), limits.roster),
        (envelope_path(&a.id(), &a.id(), &c, 1), limits.envelope),
        (format!("/v1/identities/{}", a.id()), limits.identity),
        ("/v1/account/keyring?expected=1".to_owned(), limits.keyring),
    ];
    for (path, limit) in &cases {
        let r = server.put(&a, path, &vec![7; limit + 1]).await;
        expect_error(r, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large").await;
    }
    expect_error(
        server.get(&a, &page_path(&c, &o, 1, 1)).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;

    // A JSON body above 64 KiB.
    let big = json!({"name": "a".repeat(limits.json_body)});
    let r = server.post_json("/v1/prelogin", &big).await;
    expect_error(r, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large").await;
    let r = server.post_json("/v1/sessions", &big).await;
    expect_error(r, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large").await;
    let mut register = super::user(1).register_body("bob");
    register["keyring"] = json!(super::b64(&vec![1; limits.keyring + 1]));
    let r = server.post_json("/v1/accounts", &register).await;
    expect_error(r, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large").await;

    // A declared length above the limit is refused before the body is read.
    let r = server
        .request(Method::PUT, &page_path(&c, &o, 1, 2), Some(&a))
        .header("content-type", "application/octet-stream")
        .header("content-length", "100000000000")
        .body(vec![1; 10])
        .send()
        .await;
    if let Ok(r) = r {
        expect_error(r, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large").await;
    }

    // A chunked body (no declared length) is cut at the limit.
    let chunk = vec![b'x'; 16 * 1024];
    let mut request = format!(
        "PUT {} HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n\
         Connection: close\r\n\r\n",
        page_path(&c, &o, 1, 3),
        a.token
    )
    .into_bytes();
    let mut sent = 0;
    while sent <= limits.page {
        request.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        request.extend_from_slice(&chunk);
        request.extend_from_slice(b"\r\n");
        sent += chunk.len();
    }
    request.extend_from_slice(b"0\r\n\r\n");
    let (status, body) = raw_exchange(server, &request, None).await;
    assert_eq!(status, 413, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"]["code"], json!("payload_too_large"));
    expect_error(
        server.get(&a, &page_path(&c, &o, 1, 3)).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
}

/// A request that does not finish within the time-out is answered 408 `request_timeout`.
pub async fn request_timeout(server: &TestServer) {
    let a = server.signup(0, "alice").await;
    let (c, o) = (id(0xc1), id(0x01));
    server.put_empty(&a, &format!("/v1/collections/{c}")).await;
    // Headers promise 100 bytes; 10 arrive, then nothing.
    let request = format!(
        "PUT {} HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/octet-stream\r\nContent-Length: 100\r\n\r\n0123456789",
        page_path(&c, &o, 1, 0),
        a.token
    );
    let start = Instant::now();
    let (status, body) =
        raw_exchange(server, request.as_bytes(), Some(Duration::from_secs(20))).await;
    assert_eq!(status, 408, "{body}");
    assert!(start.elapsed() >= server.config.limits.request_timeout - Duration::from_millis(100));
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"]["code"], json!("request_timeout"));
    expect_error(
        server.get(&a, &page_path(&c, &o, 1, 0)).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
}

/// Sends raw bytes on a new connection and reads one response: its status and body.
pub async fn raw_exchange(
    server: &TestServer,
    request: &[u8],
    wait: Option<Duration>,
) -> (u16, String) {
    let addr = server.base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    // The server may answer and close before everything is written.
    let _ = stream.write_all(request).await;
    let mut response = Vec::new();
    let read = async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    response.extend_from_slice(&buf[..n]);
                    if complete(&response) {
                        break;
                    }
                }
            }
        }
    };
    tokio::time::timeout(wait.unwrap_or(Duration::from_secs(10)), read)
        .await
        .expect("no answer in time");
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// Whether a response with a `content-length` is complete.
fn complete(response: &[u8]) -> bool {
    let text = String::from_utf8_lossy(response);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return false;
    };
    head.lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<usize>().ok())
                .flatten()
        })
        .is_some_and(|n| body.len() >= n)
}
