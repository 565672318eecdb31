//! The page decoder: arbitrary bytes opened at a fixed position never panic and never
//! authenticate; a real page mutated by the fuzzer never opens.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use vault_core::internal::{open_page, seal_page, PagePosition};
use vault_core::{CollectionId, Compression, DataKey, ObjectId, VaultId};

const PAGE_SIZE: u32 = 4096;

fn position() -> PagePosition {
    PagePosition {
        vault: VaultId::from_bytes([1; 16]),
        collection: CollectionId::from_bytes([2; 16]),
        object: ObjectId::from_bytes([3; 16]),
        object_version: 1,
        key_epoch: 1,
        index: 0,
        last: true,
    }
}

fn key() -> DataKey {
    DataKey::from_bytes([9; 32])
}

fn original() -> &'static Vec<u8> {
    static PAGE: OnceLock<Vec<u8>> = OnceLock::new();
    PAGE.get_or_init(|| {
        let content: Vec<u8> = (0..3000u32).map(|i| (i % 251) as u8).collect();
        seal_page(
            &key(),
            &position(),
            &content,
            PAGE_SIZE,
            Compression::Zstd(3),
        )
        .expect("seal")
    })
}

fuzz_target!(|data: &[u8]| {
    assert!(
        open_page(&key(), &position(), data, PAGE_SIZE).is_err() || data == original().as_slice()
    );
    let original = original();
    let mut p = original.clone();
    for pair in data.chunks_exact(3) {
        let at = usize::from(u16::from_be_bytes([pair[0], pair[1]])) % p.len();
        p[at] ^= pair[2];
    }
    if p != *original {
        assert!(
            open_page(&key(), &position(), &p, PAGE_SIZE).is_err(),
            "an altered page opened"
        );
    }
});
