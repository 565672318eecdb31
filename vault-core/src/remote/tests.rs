//! Unit tests of the sync client: error mapping, retries against a tiny local HTTP server,
//! answer size caps, configuration parsing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};

use super::transport::{error_of, limits, Http, Request, RetryPolicy, ServerOptions};
use super::RemoteError;

fn err(status: u16, body: &str) -> RemoteError {
    error_of(
        StatusCode::from_u16(status).unwrap(),
        &HeaderMap::new(),
        body.as_bytes(),
    )
}

fn body(code: &str) -> String {
    format!(r#"{{"error":{{"code":"{code}","message":"IGNORE ME: secret text"}}}}"#)
}

#[test]
fn error_mapping() {
    assert!(matches!(
        err(401, &body("authentication_failed")),
        RemoteError::AuthenticationFailed
    ));
    assert!(matches!(
        err(401, &body("mfa_required")),
        RemoteError::MfaRequired
    ));
    assert!(matches!(
        err(401, &body("mfa_failed")),
        RemoteError::MfaFailed
    ));
    assert!(matches!(
        err(401, &body("unauthenticated")),
        RemoteError::SessionEnded
    ));
    assert!(matches!(err(401, "not json"), RemoteError::SessionEnded));
    assert!(matches!(
        err(403, &body("elevation_required")),
        RemoteError::ElevationRequired
    ));
    assert!(matches!(
        err(403, &body("address_not_allowed")),
        RemoteError::AddressNotAllowed
    ));
    assert!(matches!(
        err(403, &body("other")),
        RemoteError::Refused { status: 403 }
    ));
    assert!(matches!(
        err(404, &body("not_found")),
        RemoteError::NotFound
    ));
    assert!(matches!(err(408, ""), RemoteError::TimedOut));
    assert!(matches!(
        err(
            409,
            r#"{"error":{"code":"conflict","message":"x","current":7}}"#
        ),
        RemoteError::Conflict { current: 7 }
    ));
    assert!(matches!(
        err(409, &body("conflict")),
        RemoteError::Protocol(_)
    ));
    assert!(matches!(err(409, &body("exists")), RemoteError::Exists));
    assert!(matches!(
        err(413, &body("quota_exceeded")),
        RemoteError::QuotaExceeded
    ));
    assert!(matches!(
        err(413, &body("payload_too_large")),
        RemoteError::TooLarge
    ));
    assert!(matches!(
        err(400, &body("bad_request")),
        RemoteError::Refused { status: 400 }
    ));
    assert!(matches!(
        err(503, &body("unavailable")),
        RemoteError::Server { status: 503 }
    ));
    assert!(matches!(err(302, ""), RemoteError::Protocol(_)));
    let mut headers = HeaderMap::new();
    headers.insert("retry-after", "12".parse().unwrap());
    let limited = error_of(StatusCode::TOO_MANY_REQUESTS, &headers, b"");
    assert!(matches!(
        limited,
        RemoteError::RateLimited { retry_after: Some(d) } if d == Duration::from_secs(12)
    ));
    assert_eq!(limited.to_string(), "too many attempts; try again in 12 s");
    // The server's message never reaches the error text.
    for status in [400, 401, 403, 404, 409, 413, 429, 500, 503] {
        assert!(!err(status, &body("x")).to_string().contains("IGNORE ME"));
    }
}

#[test]
fn vault_errors_unwrap_to_remote_errors() {
    let store = crate::StoreError::with_source("unreachable", RemoteError::Unreachable);
    assert!(matches!(
        RemoteError::from(crate::Error::Store(store)),
        RemoteError::Unreachable
    ));
    assert!(matches!(
        RemoteError::from(crate::Error::Integrity),
        RemoteError::Integrity
    ));
    assert!(matches!(
        RemoteError::from(crate::Error::Store(crate::StoreError::new("disk"))),
        RemoteError::Vault(crate::Error::Store(_))
    ));
}

#[test]
fn backoff_grows_and_stays_bounded() {
    let policy = RetryPolicy {
        max_attempts: 10,
        base_delay: Duration::from_millis(100),
        max_delay: Duration::from_secs(1),
    };
    for attempt in 1..=12 {
        let full = (Duration::from_millis(100) * (1u32 << (attempt - 1).min(20)))
            .min(Duration::from_secs(1));
        let d = policy.backoff(attempt);
        assert!(d >= full / 2 && d <= full, "attempt {attempt}: {d:?}");
    }
}

#[test]
fn options_parse_pins_and_pems() {
    let hex = "9F:86:D0:81:88:4C:7D:65:9A:2F:EA:A0:C5:5A:D0:15:A3:BF:4F:1B:2B:0B:82:2C:D1:5D:6C:15:B0:F0:0A:08";
    let o = ServerOptions::new().pin_sha256_hex(hex).unwrap();
    assert_eq!(o.pin.unwrap()[0], 0x9f);
    assert!(ServerOptions::new().pin_sha256_hex("9f86").is_err());
    assert!(ServerOptions::new().trust_ca_pem(b"no pem here").is_err());
    // Debug shows no pin.
    assert!(!format!("{o:?}").contains("9f"));
}

/// A one-thread HTTP/1.1 server on 127.0.0.1 that answers the canned `answers` in order
/// (one per connection, then closes), counting the requests it read.
fn canned(answers: Vec<String>) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    std::thread::spawn(move || {
        for answer in answers {
            let Ok((stream, _)) = listener.accept() else {
                return;
            };
            let mut reader = BufReader::new(stream);
            let mut length = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                let lower = line.to_ascii_lowercase();
                if let Some(v) = lower.strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
                if line == "\r\n" {
                    break;
                }
            }
            let mut body = vec![0u8; length];
            let _ = reader.read_exact(&mut body);
            seen.fetch_add(1, Ordering::SeqCst);
            let mut stream = reader.into_inner();
            let _ = stream.write_all(answer.as_bytes());
            let _ = stream.flush();
        }
    });
    (url, count)
}

fn answer(status: &str, extra: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\nConnection: close\r\nContent-Length: {}\r\n{extra}\r\n{body}",
        body.len()
    )
}

fn http(url: &str) -> Http {
    let retry = RetryPolicy {
        max_attempts: 3,
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_secs(2),
    };
    Http::new(url, &ServerOptions::new().retry(retry)).unwrap()
}

const UNAVAILABLE: &str = r#"{"error":{"code":"unavailable","message":"x"}}"#;

#[test]
fn idempotent_requests_are_retried_after_503_and_429() {
    let (url, count) = canned(vec![
        answer("503 Service Unavailable", "", UNAVAILABLE),
        answer("429 Too Many Requests", "Retry-After: 0\r\n", ""),
        answer("200 OK", "", "page"),
    ]);
    let a = http(&url)
        .send(&Request::new(Method::GET, "/v1/x".into(), 16))
        .unwrap();
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(&a.body[..], b"page");
    assert_eq!(a.attempts, 3);
    assert_eq!(count.load(Ordering::SeqCst), 3);
}

#[test]
fn attempts_are_bounded() {
    let (url, count) = canned(vec![
        answer("502 Bad Gateway", "", ""),
        answer("503 Service Unavailable", "", UNAVAILABLE),
        answer("504 Gateway Timeout", "", ""),
        answer("200 OK", "", "too late"),
    ]);
    let a = http(&url)
        .send(&Request::new(Method::PUT, "/v1/x".into(), 16).blob(b"bytes"))
        .unwrap();
    assert!(matches!(a.error(), RemoteError::Server { status: 504 }));
    assert_eq!(count.load(Ordering::SeqCst), 3);
}

#[test]
fn posts_are_not_retried_after_an_answer() {
    let (url, count) = canned(vec![
        answer("503 Service Unavailable", "", UNAVAILABLE),
        answer("200 OK", "", "{}"),
    ]);
    let a = http(&url)
        .send(&Request::new(Method::POST, "/v1/sessions".into(), 16))
        .unwrap();
    assert!(matches!(a.error(), RemoteError::Server { status: 503 }));
    assert_eq!(count.load(Ordering::SeqCst), 1);
}

#[test]
fn a_long_retry_after_is_returned_not_waited_for() {
    let (url, count) = canned(vec![answer(
        "429 Too Many Requests",
        "Retry-After: 3600\r\n",
        "",
    )]);
    let a = http(&url)
        .send(&Request::new(Method::GET, "/v1/x".into(), 16))
        .unwrap();
    assert!(matches!(
        a.error(),
        RemoteError::RateLimited { retry_after: Some(d) } if d == Duration::from_secs(3600)
    ));
    assert_eq!(count.load(Ordering::SeqCst), 1);
}

#[test]
fn answers_over_their_limit_are_refused() {
    let big = "x".repeat(100);
    let (url, _) = canned(vec![answer("200 OK", "", &big)]);
    let e = http(&url)
        .send(&Request::new(Method::GET, "/v1/x".into(), 99))
        .err()
        .unwrap();
    assert!(matches!(e, RemoteError::Protocol(_)));
    // Without a declared length (read until close), the cap holds too.
    let (url, _) = canned(vec![format!(
        "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n{big}"
    )]);
    let e = http(&url)
        .send(&Request::new(Method::GET, "/v1/x".into(), 99))
        .err()
        .unwrap();
    assert!(matches!(e, RemoteError::Protocol(_)));
    assert!(limits::PAGE > crate::MAX_PAGE_SIZE as usize);
}

#[test]
fn a_closed_port_is_unreachable_after_the_retries() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    // Connection failures are retried for every method: nothing was sent.
    let e = http(&url)
        .send(&Request::new(Method::POST, "/v1/prelogin".into(), 16))
        .err()
        .unwrap();
    assert!(matches!(e, RemoteError::Unreachable));
}

#[test]
fn redirects_are_not_followed() {
    let (url, count) = canned(vec![answer(
        "307 Temporary Redirect",
        "Location: http://127.0.0.1:1/elsewhere\r\n",
        "",
    )]);
    let a = http(&url)
        .send(&Request::new(Method::GET, "/v1/x".into(), 16))
        .unwrap();
    assert_eq!(a.status.as_u16(), 307);
    assert!(matches!(a.error(), RemoteError::Protocol(_)));
    assert_eq!(count.load(Ordering::SeqCst), 1);
}
