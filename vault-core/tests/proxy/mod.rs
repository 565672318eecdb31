//! A tampering HTTP/1.1 reverse proxy for the malicious-server tests (issue #7): it sits
//! between the real client and the real server on 127.0.0.1, forwards every request, keeps a
//! copy of every request (head and body) and of every answer the server gave, and passes
//! each answer through the rule the test set (replace, swap, truncate, flip, drop, inject,
//! reorder). Blocking, on `std::net`, one thread per client connection; each forwarded
//! request uses its own upstream connection (`Connection: close`), so nothing of one answer
//! can leak into the next.
//!
//! Only what the client and the server of this workspace speak is supported: bodies with a
//! `Content-Length` or chunked, no `Expect: 100-continue`, no upgrades.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;

/// A request as the client sent it.
#[derive(Clone, Debug)]
pub struct Request {
    pub method: String,
    /// Path and query, as on the request line.
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The request as it came over the wire (head and body, chunking removed).
    pub raw: Vec<u8>,
}

impl Request {
    /// The path without the query.
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }

    pub fn is(&self, method: &str, path: &str) -> bool {
        self.method == method && self.path() == path
    }
}

/// An answer (the server's, or the one the rule made of it).
#[derive(Clone, Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Sets (or adds) a header.
    pub fn set_header(&mut self, name: &str, value: &str) {
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        self.headers.push((name.to_owned(), value.to_owned()));
    }

    /// A `404 not_found` in the server's error shape (the server "has nothing there").
    pub fn not_found() -> Self {
        Self::json(
            404,
            br#"{"error":{"code":"not_found","message":"not found"}}"#.to_vec(),
        )
    }

    pub fn json(status: u16, body: Vec<u8>) -> Self {
        Self {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body,
        }
    }

    /// A `200` blob, with `Vault-Version` when given.
    pub fn blob(body: Vec<u8>, version: Option<u64>) -> Self {
        let mut r = Self {
            status: 200,
            headers: vec![("content-type".into(), "application/octet-stream".into())],
            body,
        };
        if let Some(v) = version {
            r.set_header("vault-version", &v.to_string());
        }
        r
    }

    /// The `Vault-Version` header, if any.
    pub fn version(&self) -> Option<u64> {
        self.header("vault-version")?.parse().ok()
    }
}

/// An answer with this status is not an answer: the proxy closes the connection without
/// writing anything (a connection dropped before the answer; for a write, after the server
/// may already have done it).
pub const CUT: u16 = 0;
/// An answer with this status is the real answer's head and the first half of its body, then
/// the connection closes (a connection dropped in the middle of a download).
pub const CUT_MID_BODY: u16 = 1;

/// What the test plugs in: sees each request and the server's answer, returns the answer
/// the client gets.
pub type Rule = dyn Fn(&Request, Response) -> Response + Send + Sync;

/// A rule on requests: `Some(answer)` answers without forwarding (the server "swallows" a
/// write it claims to have done).
pub type Swallow = dyn Fn(&Request) -> Option<Response> + Send + Sync;

struct Shared {
    upstream: SocketAddr,
    rule: Mutex<Option<Arc<Rule>>>,
    swallow: Mutex<Option<Arc<Swallow>>>,
    requests: Mutex<Vec<Request>>,
    answers: Mutex<Vec<(Request, Response)>>,
    tampered: Mutex<usize>,
    stop: AtomicBool,
}

/// The proxy; stops accepting when dropped.
pub struct Proxy {
    shared: Arc<Shared>,
    addr: SocketAddr,
}

impl Proxy {
    pub fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let addr = listener.local_addr().expect("proxy address");
        let shared = Arc::new(Shared {
            upstream,
            rule: Mutex::new(None),
            swallow: Mutex::new(None),
            requests: Mutex::new(Vec::new()),
            answers: Mutex::new(Vec::new()),
            tampered: Mutex::new(0),
            stop: AtomicBool::new(false),
        });
        let s = shared.clone();
        thread::spawn(move || {
            for conn in listener.incoming() {
                if s.stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let s = s.clone();
                thread::spawn(move || {
                    let _ = serve_connection(&s, conn);
                });
            }
        });
        Self { shared, addr }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every answer now goes through `rule`.
    pub fn set_rule(&self, rule: impl Fn(&Request, Response) -> Response + Send + Sync + 'static) {
        *self.shared.rule.lock().unwrap() = Some(Arc::new(rule));
        *self.shared.tampered.lock().unwrap() = 0;
    }

    /// Requests for which `swallow` gives an answer are not forwarded: the client gets
    /// that answer and the server never sees the request.
    pub fn set_swallow(
        &self,
        swallow: impl Fn(&Request) -> Option<Response> + Send + Sync + 'static,
    ) {
        *self.shared.swallow.lock().unwrap() = Some(Arc::new(swallow));
        *self.shared.tampered.lock().unwrap() = 0;
    }

    /// Answers pass unchanged again and every request is forwarded.
    pub fn clear_rule(&self) {
        *self.shared.rule.lock().unwrap() = None;
        *self.shared.swallow.lock().unwrap() = None;
    }

    /// How many answers the current rule changed (so a test knows its attack was applied).
    pub fn tampered(&self) -> usize {
        *self.shared.tampered.lock().unwrap()
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<Request> {
        self.shared.requests.lock().unwrap().clone()
    }

    /// Every (request, the server's own answer) so far.
    pub fn answers(&self) -> Vec<(Request, Response)> {
        self.shared.answers.lock().unwrap().clone()
    }

    /// The last answer of the server to `GET path` that had status 200.
    pub fn last_ok(&self, path: &str) -> Option<Response> {
        self.shared
            .answers
            .lock()
            .unwrap()
            .iter()
            .rev()
            .find(|(q, r)| q.is("GET", path) && r.status == 200)
            .map(|(_, r)| r.clone())
    }

    /// Asks the server directly (not recorded, no rule): the test's view of what is stored.
    pub fn fetch(&self, method: &str, target: &str, token: &str) -> Response {
        let req = Request {
            method: method.to_owned(),
            target: target.to_owned(),
            headers: vec![("authorization".into(), format!("Bearer {token}"))],
            body: Vec::new(),
            raw: Vec::new(),
        };
        forward(self.shared.upstream, &req).expect("direct request to the server")
    }

    /// `GET target` directly; panics unless `200`.
    pub fn get_ok(&self, target: &str, token: &str) -> Response {
        let r = self.fetch("GET", target, token);
        assert_eq!(r.status, 200, "GET {target}");
        r
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
    }
}

fn invalid(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned())
}

/// Header lines: (name, value).
type Headers = Vec<(String, String)>;

/// Reads a head (start line and headers); `None` at a clean end of stream.
fn read_head(r: &mut impl BufRead) -> std::io::Result<Option<(String, Headers)>> {
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    let start = line.trim_end().to_owned();
    let mut headers = Vec::new();
    loop {
        line.clear();
        if r.read_line(&mut line)? == 0 {
            return Err(invalid("end of stream inside a head"));
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        let (n, v) = l.split_once(':').ok_or_else(|| invalid("header line"))?;
        headers.push((n.trim().to_owned(), v.trim().to_owned()));
    }
    Ok(Some((start, headers)))
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Reads a body framed by `headers`; `to_eof` when neither length nor chunking is given
/// (answers only).
fn read_body(
    r: &mut impl BufRead,
    headers: &[(String, String)],
    to_eof: bool,
) -> std::io::Result<Vec<u8>> {
    let mut body = Vec::new();
    if header(headers, "transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
    {
        loop {
            let mut line = String::new();
            r.read_line(&mut line)?;
            let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
                .map_err(|_| invalid("chunk size"))?;
            if size == 0 {
                // Trailers, up to the empty line.
                loop {
                    line.clear();
                    if r.read_line(&mut line)? == 0 || line.trim().is_empty() {
                        break;
                    }
                }
                return Ok(body);
            }
            let start = body.len();
            body.resize(start + size, 0);
            r.read_exact(&mut body[start..])?;
            line.clear();
            r.read_line(&mut line)?;
        }
    }
    if let Some(len) = header(headers, "content-length") {
        let len: usize = len.parse().map_err(|_| invalid("content-length"))?;
        body.resize(len, 0);
        r.read_exact(&mut body)?;
        return Ok(body);
    }
    if to_eof {
        r.read_to_end(&mut body)?;
    }
    Ok(body)
}

fn is_hop_by_hop(name: &str) -> bool {
    [
        "connection",
        "keep-alive",
        "content-length",
        "transfer-encoding",
        "proxy-connection",
    ]
    .iter()
    .any(|h| name.eq_ignore_ascii_case(h))
}

/// Sends `req` to the server on a fresh connection and reads its whole answer.
fn forward(upstream: SocketAddr, req: &Request) -> std::io::Result<Response> {
    let mut conn = TcpStream::connect(upstream)?;
    let mut head = format!("{} {} HTTP/1.1\r\n", req.method, req.target);
    let mut has_host = false;
    for (n, v) in &req.headers {
        if is_hop_by_hop(n) {
            continue;
        }
        has_host |= n.eq_ignore_ascii_case("host");
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    if !has_host {
        head.push_str(&format!("host: {upstream}\r\n"));
    }
    head.push_str(&format!(
        "content-length: {}\r\nconnection: close\r\n\r\n",
        req.body.len()
    ));
    conn.write_all(head.as_bytes())?;
    conn.write_all(&req.body)?;
    conn.flush()?;
    let mut r = BufReader::new(conn);
    let (start, headers) = read_head(&mut r)?.ok_or_else(|| invalid("no answer"))?;
    let status: u16 = start
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| invalid("status line"))?;
    let no_body = status == 204 || status == 304 || (100..200).contains(&status);
    let body = if no_body {
        Vec::new()
    } else {
        read_body(&mut r, &headers, true)?
    };
    Ok(Response {
        status,
        headers: headers
            .into_iter()
            .filter(|(n, _)| !is_hop_by_hop(n))
            .collect(),
        body,
    })
}

fn serve_connection(s: &Shared, conn: TcpStream) -> std::io::Result<()> {
    let mut out = conn.try_clone()?;
    let mut r = BufReader::new(conn);
    while let Some((start, headers)) = read_head(&mut r)? {
        let mut parts = start.split_whitespace();
        let method = parts.next().unwrap_or("").to_owned();
        let target = parts.next().unwrap_or("").to_owned();
        let body = read_body(&mut r, &headers, false)?;
        let mut raw = Vec::new();
        raw.extend_from_slice(start.as_bytes());
        raw.extend_from_slice(b"\r\n");
        for (n, v) in &headers {
            raw.extend_from_slice(format!("{n}: {v}\r\n").as_bytes());
        }
        raw.extend_from_slice(b"\r\n");
        raw.extend_from_slice(&body);
        let req = Request {
            method,
            target,
            headers,
            body,
            raw,
        };
        s.requests.lock().unwrap().push(req.clone());
        let swallow = s.swallow.lock().unwrap().clone();
        if let Some(answer) = swallow.and_then(|f| f(&req)) {
            *s.tampered.lock().unwrap() += 1;
            write_answer(&mut out, &answer)?;
            continue;
        }
        let answer = match forward(s.upstream, &req) {
            Ok(a) => a,
            Err(_) => Response::json(502, br#"{"error":{"code":"bad_gateway"}}"#.to_vec()),
        };
        s.answers
            .lock()
            .unwrap()
            .push((req.clone(), answer.clone()));
        let rule = s.rule.lock().unwrap().clone();
        let answer = match rule {
            Some(rule) => {
                let before = (answer.status, answer.body.clone(), answer.headers.clone());
                let after = rule(&req, answer);
                if (after.status, &after.body, &after.headers) != (before.0, &before.1, &before.2) {
                    *s.tampered.lock().unwrap() += 1;
                }
                after
            }
            None => answer,
        };
        write_answer(&mut out, &answer)?;
    }
    Ok(())
}

fn write_answer(out: &mut TcpStream, answer: &Response) -> std::io::Result<()> {
    let (status, cut) = match answer.status {
        CUT => {
            let _ = out.shutdown(std::net::Shutdown::Both);
            return Err(std::io::Error::other("connection cut by the test"));
        }
        CUT_MID_BODY => (200, Some(answer.body.len() / 2)),
        s => (s, None),
    };
    let mut head = format!("HTTP/1.1 {status} X\r\n");
    for (n, v) in &answer.headers {
        if !is_hop_by_hop(n) {
            head.push_str(&format!("{n}: {v}\r\n"));
        }
    }
    let no_body = answer.status == 204 || answer.status == 304;
    if !no_body {
        head.push_str(&format!("content-length: {}\r\n", answer.body.len()));
    }
    head.push_str("\r\n");
    out.write_all(head.as_bytes())?;
    if let Some(half) = cut {
        out.write_all(&answer.body[..half])?;
        out.flush()?;
        let _ = out.shutdown(std::net::Shutdown::Both);
        return Err(std::io::Error::other("connection cut by the test"));
    }
    if !no_body {
        out.write_all(&answer.body)?;
    }
    out.flush()
}
