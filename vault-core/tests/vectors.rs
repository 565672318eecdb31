//! Known-answer vectors of the page format (docs/spec/pages.md §3, §4): one JSON file per
//! behaviour in `vectors/pages/`, checked here and regenerated to prove they are current.
//!
//! ```text
//! VAULT_REGENERATE_VECTORS=1 cargo test -p vault-core --test vectors
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use vault_core::internal::{open_page, seal_page, PagePosition};
use vault_core::{CollectionId, Compression, DataKey, Error, ObjectId, VaultId};

#[derive(Serialize, Deserialize, PartialEq, Debug, Clone)]
struct Position {
    vault_id: String,
    collection_id: String,
    object_id: String,
    object_version: u64,
    key_epoch: u32,
    index: u32,
    last: bool,
}

#[derive(Serialize, Deserialize, PartialEq, Debug, Clone)]
struct Vector {
    description: String,
    data_key: String,
    page_size: u32,
    /// Where the reader expects the page.
    position: Position,
    page: String,
    /// `"ok"` or the error's name.
    expect: String,
    /// The content on success (hex).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    content: Option<String>,
}

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../vectors/pages")
}

fn pos(p: &Position) -> PagePosition {
    let id = |s: &str| <[u8; 16]>::try_from(hex::decode(s).unwrap()).unwrap();
    PagePosition {
        vault: VaultId::from_bytes(id(&p.vault_id)),
        collection: CollectionId::from_bytes(id(&p.collection_id)),
        object: ObjectId::from_bytes(id(&p.object_id)),
        object_version: p.object_version,
        key_epoch: p.key_epoch,
        index: p.index,
        last: p.last,
    }
}

fn generate() -> BTreeMap<String, Vector> {
    let key_hex = hex::encode([0x5au8; 32]);
    let key = DataKey::from_bytes([0x5a; 32]);
    let base = Position {
        vault_id: hex::encode([1u8; 16]),
        collection_id: hex::encode([2u8; 16]),
        object_id: hex::encode([3u8; 16]),
        object_version: 7,
        key_epoch: 1,
        index: 0,
        last: true,
    };
    let text: Vec<u8> = b"The vault combines and compresses data in pages. "
        .iter()
        .cycle()
        .take(3000)
        .copied()
        .collect();
    let random: Vec<u8> = (0..5000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let page_size = 4096;
    let mut out = BTreeMap::new();
    let mut ok = |name: &str, description: &str, p: Position, content: &[u8], c: Compression| {
        let sealed = seal_page(&key, &pos(&p), content, page_size, c).unwrap();
        out.insert(
            name.to_string(),
            Vector {
                description: description.into(),
                data_key: key_hex.clone(),
                page_size,
                position: p,
                page: hex::encode(sealed),
                expect: "ok".into(),
                content: Some(hex::encode(content)),
            },
        );
    };
    ok(
        "page_zstd_final",
        "A final page of compressible text, zstd level 3, padded (Padmé)",
        base.clone(),
        &text,
        Compression::Zstd(3),
    );
    let mut mid = base.clone();
    mid.index = 2;
    mid.last = false;
    ok(
        "page_stored_middle",
        "A full middle page of incompressible bytes: stored, no padding beyond the page",
        mid.clone(),
        &random[..4096],
        Compression::Zstd(3),
    );
    ok(
        "page_empty",
        "The single empty page of an empty object",
        base.clone(),
        b"",
        Compression::Zstd(3),
    );
    ok(
        "page_uncompressed_by_choice",
        "Compressible text stored uncompressed (Compression::None)",
        base.clone(),
        &text[..100],
        Compression::None,
    );

    let good = out["page_zstd_final"].clone();
    let mut fail = |name: &str, description: &str, f: &dyn Fn(&mut Vector), expect: &str| {
        let mut v = good.clone();
        v.description = description.into();
        v.expect = expect.into();
        v.content = None;
        f(&mut v);
        out.insert(name.to_string(), v);
    };
    fail(
        "page_wrong_index",
        "The page read where index 1 is expected (reorder)",
        &|v| v.position.index = 1,
        "Integrity",
    );
    fail(
        "page_not_final",
        "The final page read where a middle page is expected (truncation)",
        &|v| v.position.last = false,
        "Integrity",
    );
    fail(
        "page_other_object",
        "The page read as part of another object (splice)",
        &|v| v.position.object_id = hex::encode([4u8; 16]),
        "Integrity",
    );
    fail(
        "page_other_collection",
        "The page read in another collection",
        &|v| v.position.collection_id = hex::encode([9u8; 16]),
        "Integrity",
    );
    fail(
        "page_other_version",
        "The page read as another version of its object (replay)",
        &|v| v.position.object_version = 6,
        "Integrity",
    );
    fail(
        "page_other_epoch",
        "The page read under another key epoch",
        &|v| v.position.key_epoch = 2,
        "Integrity",
    );
    fail(
        "page_flipped_bit",
        "One ciphertext bit flipped",
        &|v| {
            let mut b = hex::decode(&v.page).unwrap();
            b[10] ^= 0x04;
            v.page = hex::encode(b);
        },
        "Integrity",
    );
    fail(
        "page_truncated",
        "The last byte of the tag removed",
        &|v| {
            let mut b = hex::decode(&v.page).unwrap();
            b.pop();
            v.page = hex::encode(b);
        },
        "Integrity",
    );
    fail(
        "page_unknown_version",
        "Page format version 2",
        &|v| {
            let mut b = hex::decode(&v.page).unwrap();
            b[0] = 2;
            v.page = hex::encode(b);
        },
        "UnsupportedFormat",
    );
    fail(
        "page_wrong_key",
        "Opened with another data key",
        &|v| v.data_key = hex::encode([0x5bu8; 32]),
        "Integrity",
    );
    fail(
        "page_larger_than_page_size",
        "Read as an object whose page size is smaller than the page",
        &|v| v.page_size = 1024,
        "Integrity",
    );
    out
}

fn check(name: &str, v: &Vector) {
    let key = DataKey::from_bytes(hex::decode(&v.data_key).unwrap().try_into().unwrap());
    let page = hex::decode(&v.page).unwrap();
    let got = match open_page(&key, &pos(&v.position), &page, v.page_size) {
        Ok(content) => {
            assert_eq!(Some(hex::encode(&*content)), v.content, "{name}");
            "ok".to_string()
        }
        Err(Error::Integrity) => "Integrity".into(),
        Err(Error::UnsupportedFormat) => "UnsupportedFormat".into(),
        Err(e) => format!("{e:?}"),
    };
    assert_eq!(got, v.expect, "{name}: {}", v.description);
}

fn render(v: &Vector) -> String {
    let mut s = serde_json::to_string_pretty(v).unwrap();
    s.push('\n');
    s
}

#[test]
fn page_vectors_pass_and_are_current() {
    let generated = generate();
    let n = common::check_vector_dir(&dir(), &generated, render, check);
    assert_eq!(n, 15);
}
