//! The group roster decoder (a signed roster, `tbs || signature`, decoded without checking
//! the signature) on arbitrary bytes: never panics; what decodes has exactly the length its
//! member count implies, so nothing is allocated beyond what the input justifies.
#![no_main]

use libfuzzer_sys::fuzz_target;

/// `tbs` before the members (docs/spec/groups.md §2).
const FIXED: usize = 4 + 1 + 1 + 16 + 8 + 32 + 4 + 65 + 16 + 8 + 2;
const MEMBER: usize = 16 + 32 + 1;
const SIGNATURE: usize = 256;

fuzz_target!(|data: &[u8]| {
    if let Some(members) = vault_core::internal::decode_roster(data) {
        assert!((1..=usize::from(vault_core::MAX_MEMBERS)).contains(&members));
        assert_eq!(data.len(), FIXED + members * MEMBER + SIGNATURE);
    }
});
