//! The decoder of a parked-commit record (docs/spec/client.md §8.6: the plaintext the vault
//! seals into the device's local state for changes made offline) on arbitrary bytes: never
//! panics; every change it decodes took at least its minimal encoding, so nothing is
//! allocated beyond what the input justifies.
#![no_main]

use libfuzzer_sys::fuzz_target;

/// Format byte, owner, collection, the name's length, the change count, the count of
/// replaced versions.
const FIXED: usize = 1 + 16 + 16 + 2 + 4 + 4;
/// Object id, the "before" flag, an entry without a name and its name length.
const CHANGE: usize = 16 + 1 + (8 + 4 + 1 + 8 + 4 + 32 + 2);

fuzz_target!(|data: &[u8]| {
    if let Some(changes) = vault_core::internal::decode_parked(data) {
        assert!(data.len() >= FIXED + changes * CHANGE);
    }
});
