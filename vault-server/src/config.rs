//! The HTTP API's configuration: size limits, quota, time-outs and login parameters
//! (docs/spec/api.md §6). The binary fills it from its command line; tests build their own.

use std::time::Duration;

use crate::auth::DEFAULT_SESSION_TTL;

/// One KiB.
const KIB: usize = 1024;
/// One MiB.
const MIB: usize = 1024 * KIB;

/// Size limits of request bodies and the per-account quota (docs/spec/api.md §6).
///
/// A body whose `Content-Length` exceeds its limit is refused with `413 payload_too_large`
/// before a byte of it is read; a body without a length is read only up to the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// JSON request bodies (register, login, …): 64 KiB. Registration, which carries the
    /// keyring and the identity bundle in base64url, gets this plus room for both blobs.
    pub json_body: usize,
    /// One sealed page: 16 MiB + 64 bytes (the largest page `vault_core` writes is its
    /// 16 MiB maximum page size plus 9 bytes of framing, docs/spec/pages.md).
    pub page: usize,
    /// One sealed object header: 64 KiB.
    pub header: usize,
    /// One wrapped collection key: 64 KiB.
    pub collection_key: usize,
    /// One envelope: 64 KiB.
    pub envelope: usize,
    /// One identity bundle: 64 KiB.
    pub identity: usize,
    /// One sealed keyring: 64 KiB.
    pub keyring: usize,
    /// One roster version: 1 MiB.
    pub roster: usize,
    /// One manifest: 16 MiB.
    pub manifest: usize,
    /// The bytes an account may have stored under the scopes it owns: 10 GiB.
    pub quota: u64,
    /// The longest a request may take, body upload included, before it is answered
    /// `408 request_timeout`: 60 s.
    pub request_timeout: Duration,
    /// The longest a client may take to send a request's head (request line and headers),
    /// counted from when the connection waits for it, idle keep-alive time included;
    /// then the connection is closed (slow clients, src/transport.rs): 30 s.
    pub header_timeout: Duration,
    /// The longest a write to a client may wait without progress (a client that stopped
    /// reading its answer) before the connection is closed: 30 s.
    pub send_stall_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            json_body: 64 * KIB,
            page: 16 * MIB + 64,
            header: 64 * KIB,
            collection_key: 64 * KIB,
            envelope: 64 * KIB,
            identity: 64 * KIB,
            keyring: 64 * KIB,
            roster: MIB,
            manifest: 16 * MIB,
            quota: 10 * 1024 * 1024 * 1024,
            request_timeout: Duration::from_secs(60),
            header_timeout: Duration::from_secs(30),
            send_stall_timeout: Duration::from_secs(30),
        }
    }
}

impl Limits {
    /// The body limit of a JSON request that carries a sealed keyring in base64url (password
    /// change, recovery): the JSON limit plus the base64url form of the largest keyring.
    pub fn keyring_json_body(&self) -> usize {
        self.json_body
            .saturating_add(self.keyring.div_ceil(3).saturating_mul(4))
    }

    /// The body limit of registration: the JSON limit plus the base64url form of the
    /// largest keyring and identity bundle.
    pub fn register_body(&self) -> usize {
        let blobs = self.keyring.saturating_add(self.identity);
        self.json_body
            .saturating_add(blobs.div_ceil(3).saturating_mul(4))
    }
}

/// The API's configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// Size limits, quota and time-out.
    pub limits: Limits,
    /// The client-KDF iteration count answered for login names that do not exist
    /// (docs/spec/login.md §7): 600,000 by default, the client floor. Set it to what the
    /// deployment's clients commonly use.
    pub decoy_kdf_iterations: u32,
    /// The lifetime of a session in seconds: 12 hours by default.
    pub session_ttl: u64,
    /// How often expired sessions and forgotten backoff entries are swept: 5 minutes.
    pub sweep_interval: Duration,
}

/// The default decoy count: the client's iteration floor (docs/spec/keyring.md §3).
pub const DEFAULT_DECOY_KDF_ITERATIONS: u32 = 600_000;

impl Default for Config {
    fn default() -> Self {
        Self {
            limits: Limits::default(),
            decoy_kdf_iterations: DEFAULT_DECOY_KDF_ITERATIONS,
            session_ttl: DEFAULT_SESSION_TTL,
            sweep_interval: Duration::from_secs(5 * 60),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_documented_ones() {
        let l = Limits::default();
        assert_eq!(l.json_body, 65_536);
        assert_eq!(l.page, 16 * 1024 * 1024 + 64);
        assert_eq!(l.roster, 1_048_576);
        assert_eq!(l.manifest, 16_777_216);
        assert_eq!(l.quota, 10_737_418_240);
        assert_eq!(l.request_timeout, Duration::from_secs(60));
        // 64 KiB + 4/3 of 128 KiB.
        assert_eq!(l.register_body(), 65_536 + 174_764);
        let c = Config::default();
        assert_eq!(c.decoy_kdf_iterations, 600_000);
        assert_eq!(c.session_ttl, 43_200);
    }
}
