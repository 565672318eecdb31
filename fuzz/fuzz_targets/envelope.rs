//! Signed envelopes (issue #4, `vault_keyring::envelope`):
//!
//! 1. `envelope::peek` on arbitrary bytes never panics;
//! 2. `envelope::open` of arbitrary bytes, with a fixed pinned granter identity, recipient
//!    keyring and expected grant, never panics and never succeeds unless the bytes are the
//!    one genuine envelope (then it returns its payload);
//! 3. the genuine envelope altered at fuzzer-chosen positions (3-byte chunks: 16-bit
//!    position, XOR mask; a trailing byte truncates, as in `sealed_keyring_mutate`) never
//!    opens; unchanged envelopes are skipped.
//!
//! The fixture is deterministic (ChaCha20 seed `[0xe7; 32]`, creation time 0), generated
//! once per process. `fuzz/src/make_seeds.rs` builds the same fixture and writes the genuine
//! envelope to `fuzz/seeds/envelope/valid`: the two must stay identical (the target warns
//! at start-up when the committed seed differs — regenerate it with `fuzz/run.sh seeds`).
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use vault_keyring::envelope::{self, Grant, Method, Purpose, RecipientKey, RecipientSecret};
use vault_keyring::{IdentityBundle, Keyring, KeyringOptions};

/// The payload of the genuine envelope (a 32-byte key).
const PAYLOAD: [u8; 32] = [0x42; 32];

/// The committed seed, compared with the genuine envelope at start-up.
const SEED: &[u8] = include_bytes!("../seeds/envelope/valid");

struct Fixture {
    granter: IdentityBundle,
    recipient: Keyring,
    grant: Grant,
    genuine: Vec<u8>,
}

/// Granter and recipient keyrings (RSA-2048 signing, P-256 exchange, no RSA-4096), the
/// granter's identity bundle as the recipient pinned it, and one HPKE envelope handing
/// `PAYLOAD` as collection key epoch 1. Keep in step with `envelope_seed` in make_seeds.rs.
fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let mut rng = ChaCha20Rng::from_seed([0xe7; 32]);
        let options = KeyringOptions::new().with_created_at(0);
        let granter = Keyring::generate(&mut rng, &options).expect("granter keyring");
        let recipient = Keyring::generate(&mut rng, &options).expect("recipient keyring");
        let granter_identity = granter.identity_bundle(&mut rng);
        let recipient_identity = recipient.identity_bundle(&mut rng);
        let grant = Grant {
            purpose: Purpose::CollectionKey,
            owner: *granter.id().as_bytes(),
            target: [0x7a; 16],
            epoch: 1,
        };
        let genuine = envelope::seal(
            &mut rng,
            &granter,
            &RecipientKey::user(&recipient_identity),
            &grant,
            Method::Hpke,
            &PAYLOAD,
            0,
        )
        .expect("genuine envelope");
        if genuine != SEED {
            eprintln!(
                "WARNING: fuzz/seeds/envelope/valid is not this target's genuine envelope; \
                 regenerate it with `fuzz/run.sh seeds`"
            );
        }
        Fixture {
            granter: granter_identity,
            recipient,
            grant,
            genuine,
        }
    })
}

/// Opens `bytes` as the fixture's recipient, from the fixture's pinned granter, expecting
/// the fixture's grant.
fn open(f: &Fixture, bytes: &[u8]) -> Option<Vec<u8>> {
    envelope::open(
        bytes,
        &f.granter,
        &RecipientSecret::user(&f.recipient),
        &f.grant,
    )
    .ok()
    .map(|p| p.to_vec())
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();

    // 1. The unauthenticated header reader never panics.
    let peeked = envelope::peek(data);

    // 2. Arbitrary bytes open only if they are the genuine envelope.
    match open(f, data) {
        Some(payload) => {
            assert_eq!(
                data,
                &f.genuine[..],
                "arbitrary bytes opened as an envelope"
            );
            assert_eq!(payload, PAYLOAD);
            let info = peeked.expect("an envelope that opens peeks");
            assert_eq!(info.grant, f.grant);
            assert_eq!(info.granter, f.granter.keyring_id());
        }
        None => assert_ne!(data, &f.genuine[..], "the genuine envelope did not open"),
    }

    // 3. The genuine envelope, altered: never opens.
    let mut altered = f.genuine.clone();
    // Each 3-byte chunk: a 16-bit position and an XOR mask. A final odd byte truncates.
    for chunk in data.chunks(3) {
        match chunk {
            [hi, lo, mask] => {
                let at = usize::from(u16::from_be_bytes([*hi, *lo])) % altered.len();
                altered[at] ^= mask;
            }
            [cut] | [cut, _] => {
                let keep = altered.len() * usize::from(*cut) / 256;
                altered.truncate(keep);
                if altered.is_empty() {
                    break;
                }
            }
            _ => {}
        }
    }
    if altered == f.genuine {
        return;
    }
    let _ = envelope::peek(&altered);
    assert!(open(f, &altered).is_none(), "an altered envelope opened");
});
