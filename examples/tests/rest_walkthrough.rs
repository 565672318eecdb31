//! `examples/rest/walkthrough.sh` matches the OpenAPI document: every HTTP call the script
//! makes (method and path) is an operation of docs/api/openapi.json, and the script makes
//! calls at all (so a rewrite that loses them fails here). CI also runs the script against
//! the real server.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

/// (method, path) of every call in the script: `-X METHOD … "$base/v1/…"` on one logical
/// line (backslash continuations joined), or a bare `curl … "$base/v1/…"` (a GET).
fn calls(script: &str) -> Vec<(String, String)> {
    let joined = script.replace("\\\n", " ");
    let mut out = Vec::new();
    for line in joined.lines() {
        let line = line.trim();
        if line.starts_with('#') || !line.contains("\"$base/v1/") {
            continue;
        }
        let is_call = line.starts_with("expect ") || line.starts_with("curl ");
        if !is_call {
            continue;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        let method = words
            .windows(2)
            .find(|w| w[0] == "-X")
            .map_or("GET", |w| w[1])
            .to_owned();
        let url = words
            .iter()
            .find(|w| w.contains("\"$base/v1/"))
            .unwrap()
            .trim_matches('"');
        let path = url.trim_start_matches("\"").trim_start_matches("$base");
        let path = path.split('?').next().unwrap().trim_end_matches('"');
        out.push((method, path.to_owned()));
    }
    out
}

/// Whether the concrete `path` (with `$variables`) fits the OpenAPI template.
fn fits(template: &str, path: &str) -> bool {
    let t: Vec<&str> = template.split('/').collect();
    let p: Vec<&str> = path.split('/').collect();
    t.len() == p.len()
        && t.iter().zip(&p).all(|(t, p)| {
            if t.starts_with('{') {
                !p.is_empty()
            } else {
                t == p
            }
        })
}

#[test]
fn every_call_of_the_rest_walkthrough_is_in_the_openapi_document() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let script = std::fs::read_to_string(root.join("examples/rest/walkthrough.sh")).unwrap();
    let doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(root.join("docs/api/openapi.json")).unwrap())
            .unwrap();
    let paths = doc["paths"].as_object().unwrap();
    let calls = calls(&script);
    assert!(
        calls.len() >= 15,
        "the script makes only {} calls",
        calls.len()
    );
    let mut methods = std::collections::BTreeSet::new();
    for (method, path) in &calls {
        let found = paths.iter().any(|(template, ops)| {
            fits(template, path) && ops.get(method.to_ascii_lowercase()).is_some()
        });
        assert!(found, "{method} {path} is not in docs/api/openapi.json");
        methods.insert(method.clone());
    }
    for m in ["GET", "PUT", "POST", "DELETE"] {
        assert!(methods.contains(m), "the walkthrough shows no {m}");
    }
}

#[test]
fn the_matcher_refuses_what_is_not_there() {
    assert!(fits("/v1/collections/{c}", "/v1/collections/$scope"));
    assert!(!fits(
        "/v1/collections/{c}",
        "/v1/collections/$scope/manifest"
    ));
    assert!(!fits("/v1/collections", "/v1/collection"));
    let c = calls("expect 200 -X DELETE \"${auth[@]}\" \\\n  \"$base/v1/nowhere?x=1\"\n");
    assert_eq!(c, vec![("DELETE".to_owned(), "/v1/nowhere".to_owned())]);
}
