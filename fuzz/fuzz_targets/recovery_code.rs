//! The recovery-code parser: arbitrary text never panics; a code that parses formats back
//! to a canonical form that parses to the same code.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vault_keyring::RecoveryCode;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(code) = text.parse::<RecoveryCode>() {
        let formatted = code.expose_formatted();
        let again: RecoveryCode = formatted.parse().expect("canonical form parses");
        assert_eq!(*again.expose_formatted(), *formatted);
    }
});
