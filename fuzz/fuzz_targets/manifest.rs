//! The manifest decoder (the signed plaintext inside the sealed manifest) on arbitrary
//! bytes: never panics, never allocates more than the input justifies.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(entries) = vault_core::internal::decode_manifest(data) {
        // Each entry takes at least 16 + 8 + 1 + 8 + 4 + 32 + 2 bytes.
        assert!(entries * 71 <= data.len());
    }
});
