//! **Insecure** helpers for tests, fuzzing, vectors and benchmarks. Present only with the
//! `danger-insecure-test-kdf` cargo feature, which no application may enable.
//!
//! They let a test create and open keyrings with iteration counts below the 600,000 floor
//! so that thousands of unlocks run in seconds. The floor users get is unchanged: the
//! default [`KdfPolicy`] is the only one reachable without this module.

use rand_core::CryptoRngCore;

use crate::kdf::{KdfParams, KdfPolicy, MAX_ITERATIONS};

/// A policy that accepts any iteration count from 1 to `max_iterations`.
pub fn insecure_test_policy(max_iterations: u32) -> KdfPolicy {
    KdfPolicy {
        min_iterations: 1,
        max_iterations: max_iterations.min(MAX_ITERATIONS),
    }
}

/// KDF parameters with a fresh salt and any iteration count (even below the floor).
pub fn insecure_test_params(rng: &mut impl CryptoRngCore, iterations: u32) -> KdfParams {
    KdfParams::random_salt(rng, iterations)
}

/// KDF parameters from explicit parts, for vectors.
pub fn params_from_parts(salt: [u8; crate::kdf::SALT_LEN], iterations: u32) -> KdfParams {
    KdfParams::from_parts(salt, iterations)
}
