//! The object-header decoder, including the record index of record tables, on arbitrary
//! bytes: never panics; a header that decodes has consistent page and record counts.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(pages) = vault_core::internal::decode_object_header(data) {
        assert!(pages >= 1);
        assert!(pages * 32 <= data.len());
    }
});
