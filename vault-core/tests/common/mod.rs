//! Shared by the known-answer vector tests: regenerate, read and compare a vector directory.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::collections::BTreeMap;
use std::path::Path;

use serde::de::DeserializeOwned;

/// Writes `generated` into `dir` when `VAULT_REGENERATE_VECTORS` is set; then reads every
/// `*.json` file of `dir`, requires exactly the generated names, runs `check` on each file's
/// vector and requires it to render exactly as the generated one (the files are current).
/// Returns the number of files.
pub fn check_vector_dir<V: DeserializeOwned>(
    dir: &Path,
    generated: &BTreeMap<String, V>,
    render: impl Fn(&V) -> String,
    check: impl Fn(&str, &V),
) -> usize {
    if std::env::var_os("VAULT_REGENERATE_VECTORS").is_some() {
        std::fs::create_dir_all(dir).unwrap();
        for (name, v) in generated {
            std::fs::write(dir.join(format!("{name}.json")), render(v)).unwrap();
        }
    }
    let mut files = BTreeMap::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) == Some("json") {
            let name = path.file_stem().unwrap().to_str().unwrap().to_string();
            let v: V = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            files.insert(name, v);
        }
    }
    assert_eq!(
        files.keys().collect::<Vec<_>>(),
        generated.keys().collect::<Vec<_>>()
    );
    for (name, v) in &files {
        check(name, v);
        assert_eq!(render(v), render(&generated[name]), "{name}.json is stale");
    }
    files.len()
}
