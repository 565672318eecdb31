//! The committed OpenAPI document (`docs/api/openapi.json`) is the one the code generates.
//! After changing a route, regenerate it with
//!
//! ```sh
//! VAULT_REGENERATE_OPENAPI=1 cargo test -p vault-server --test openapi
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use vault_server::api;
use vault_server::store::SledBackend;

fn committed_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/api/openapi.json")
}

#[test]
fn committed_openapi_document_is_current() {
    let generated = api::openapi_json::<SledBackend>();
    let path = committed_path();
    if std::env::var_os("VAULT_REGENERATE_OPENAPI").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &generated).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "docs/api/openapi.json is stale (or missing): the routes changed. Regenerate it with\n\
         \n    VAULT_REGENERATE_OPENAPI=1 cargo test -p vault-server --test openapi\n\n\
         and commit the result."
    );
}

#[test]
fn every_reference_resolves_and_every_operation_documents_its_errors() {
    let doc: serde_json::Value = serde_json::from_str(&api::openapi_json::<SledBackend>()).unwrap();
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    let mut refs = Vec::new();
    collect_refs(&doc, &mut refs);
    assert!(!refs.is_empty());
    for r in refs {
        let name = r
            .strip_prefix("#/components/schemas/")
            .unwrap_or_else(|| panic!("{r}"));
        assert!(schemas.contains_key(name), "dangling reference {r}");
    }
    for (path, item) in doc["paths"].as_object().unwrap() {
        assert!(path.starts_with("/v1/"), "{path}");
        for (method, op) in item.as_object().unwrap() {
            let responses = op["responses"].as_object().unwrap();
            assert!(
                responses.keys().any(|s| s.starts_with('2')),
                "{method} {path}"
            );
            for status in ["408", "500", "503"] {
                assert!(responses.contains_key(status), "{method} {path} {status}");
            }
            if op.get("security").is_some() {
                assert!(responses.contains_key("401"), "{method} {path}");
            }
            for (status, response) in responses {
                if !status.starts_with('2') {
                    assert_eq!(
                        response["content"]["application/json"]["schema"]["$ref"],
                        "#/components/schemas/ErrorBody",
                        "{method} {path} {status}"
                    );
                }
            }
            assert!(op["summary"].is_string(), "{method} {path} has no summary");
        }
    }
}

fn collect_refs(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                if k == "$ref" {
                    out.push(v.as_str().unwrap().to_owned());
                } else {
                    collect_refs(v, out);
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| collect_refs(v, out)),
        _ => {}
    }
}
