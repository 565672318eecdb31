//! The server's audit log (issue #6, BRIEF R18; the format is docs/spec/audit.md): security
//! events — registration, logins and failed logins, MFA and trusted-device changes, keyring
//! and password changes, shares, envelopes, rosters, deletions, backups — appended to one
//! hash chain in the store, with no secret in any entry.
//!
//! - [`Event`] is what happened: an [`EventKind`], the account it concerns (none for a
//!   failed login of an unknown name: the name is *not* recorded, it could be a mistyped
//!   password), the client's address and a few non-secret [`Details`] (ids, versions,
//!   epochs, counts).
//! - [`AuditStore::append`] gives it the next sequence number and the hash of the entry
//!   before it, atomically, so appends from many tasks and nodes form one chain; every
//!   backend implements it ([`crate::store::Backend`] requires it).
//! - [`verify_chain`] recomputes every hash, checks every link and the sequence, and reports
//!   the first broken link; the binary runs it as `vault-server audit-verify`.
//!
//! ```
//! use vault_server::audit::{self, AuditStore, Details, Event, EventKind};
//! use vault_server::store::SledBackend;
//!
//! let dir = tempfile::tempdir()?;
//! let store = SledBackend::open(dir.path())?;
//! let event = Event::new(EventKind::LoginSucceeded)
//!     .with_account([7; 16])
//!     .with_address(Some("192.0.2.1".parse()?));
//! let entry = store.append(1_700_000_000, &event)?;
//! assert_eq!(entry.seq, 1);
//! assert_eq!(entry.prev, audit::GENESIS_PREV);
//! store.append(1_700_000_005, &Event::new(EventKind::LoginFailed))?;
//! let report = audit::verify_chain(&store)?;
//! assert_eq!((report.entries, report.first_broken), (2, None));
//! assert_eq!(store.events_of(&[7; 16], 0, 10)?, vec![entry]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;
use std::net::IpAddr;

use sha2::{Digest, Sha256};

use crate::auth::UserId;
use crate::store::{BackendError, Id};

/// The label that domain-separates the entry hash (audit.md §3).
pub const ENTRY_LABEL: &[u8] = b"vault/v1/audit-entry\0";
/// The first four bytes of every entry.
pub const MAGIC: [u8; 4] = *b"VAUD";
/// The entry format version this code writes and reads.
pub const FORMAT_VERSION: u8 = 1;
/// The `prev` of entry 1.
pub const GENESIS_PREV: [u8; 32] = [0; 32];
/// The length of an entry hash.
pub const HASH_LEN: usize = 32;
/// The shortest record: an entry without account, address and details, and its hash.
pub const MIN_RECORD_LEN: usize = 4 + 1 + 8 + 8 + 32 + 2 + 1 + 1 + 1 + HASH_LEN;

macro_rules! event_kinds {
    ($($(#[doc = $doc:literal])* $variant:ident = $code:literal, $name:literal;)+) => {
        /// What happened (audit.md §2): a stable code (in the entry) and a stable name (in
        /// the API's JSON). Codes are never reused.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum EventKind {
            $($(#[doc = $doc])* $variant,)+
        }

        impl EventKind {
            /// Every kind, in code order.
            pub const ALL: &'static [EventKind] = &[$(EventKind::$variant,)+];

            /// The code stored in the entry.
            pub fn code(self) -> u16 {
                match self { $(EventKind::$variant => $code,)+ }
            }

            /// The name shown by the API.
            pub fn name(self) -> &'static str {
                match self { $(EventKind::$variant => $name,)+ }
            }

            /// The kind of a stored code; `None` for a code this version does not know.
            pub fn from_code(code: u16) -> Option<Self> {
                match code { $($code => Some(EventKind::$variant),)+ _ => None }
            }
        }
    };
}

event_kinds! {
    /// An account was registered.
    AccountRegistered = 1, "account_registered";
    /// A login succeeded (a session was issued).
    LoginSucceeded = 2, "login_succeeded";
    /// A login was refused: a wrong login secret (with the account), or an unknown name
    /// (without an account, and without the name).
    LoginFailed = 3, "login_failed";
    /// A session ended by logout.
    Logout = 4, "logout";
    /// Every session of the account was ended ("log out everywhere").
    SessionsRevoked = 5, "sessions_revoked";
    /// A password change or account deletion was refused: wrong current login secret.
    ReauthFailed = 6, "reauth_failed";
    /// The sealed keyring was replaced (same password; `version`: the new version).
    KeyringChanged = 7, "keyring_changed";
    /// The password changed: keyring and verifier replaced, every session ended.
    PasswordChanged = 8, "password_changed";
    /// The identity bundle was replaced.
    IdentityChanged = 9, "identity_changed";
    /// The account and everything it owned were deleted.
    AccountDeleted = 10, "account_deleted";
    /// The sealed keyring was handed out against the recovery secret (`version`).
    RecoveryKeyringRead = 11, "recovery_keyring_read";
    /// Recovered: keyring and login verifier replaced, every session ended (`version`).
    Recovery = 12, "recovery";
    /// A recovery request with a wrong recovery secret (the account if the name exists).
    RecoveryFailed = 13, "recovery_failed";
    /// The recovery verifier was set or replaced with the keyring (`version`).
    RecoveryChanged = 14, "recovery_changed";
    /// A second factor was enrolled (`method`).
    MfaEnrolled = 20, "mfa_enrolled";
    /// A second factor was removed (`method`).
    MfaDisabled = 21, "mfa_disabled";
    /// A second-factor check failed (`method`).
    MfaFailed = 22, "mfa_failed";
    /// New backup codes replaced the old ones (`count`: how many).
    BackupCodesRegenerated = 23, "backup_codes_regenerated";
    /// A backup code was used (`count`: how many are left).
    BackupCodeUsed = 24, "backup_code_used";
    /// A device was trusted (`device`).
    DeviceTrusted = 25, "device_trusted";
    /// A trusted device was revoked (`device`).
    DeviceRevoked = 26, "device_revoked";
    /// The account's IP allow-list changed (`count`: entries now).
    IpAllowlistChanged = 27, "ip_allowlist_changed";
    /// A collection was created (`collection`).
    CollectionCreated = 40, "collection_created";
    /// A collection and everything in it was deleted (`collection`).
    CollectionDeleted = 41, "collection_deleted";
    /// A group was created (`group`).
    GroupCreated = 42, "group_created";
    /// A group with its rosters and envelopes was deleted (`group`).
    GroupDeleted = 43, "group_deleted";
    /// An object version was deleted (`collection`, `object`, `version`).
    ObjectDeleted = 44, "object_deleted";
    /// A wrapped collection key was stored (`collection`, `epoch`).
    CollectionKeyStored = 45, "collection_key_stored";
    /// An envelope was stored: a share (`recipient`, `owner`, `target`, `epoch`).
    EnvelopeStored = 46, "envelope_stored";
    /// An envelope was deleted: an unshare (`recipient`, `owner`, `target`, `epoch`).
    EnvelopeDeleted = 47, "envelope_deleted";
    /// A roster version was stored (`group`, `version`).
    RosterStored = 48, "roster_stored";
    /// A backup of the store was written (operator event, no account; `digest`, `count`).
    BackupCreated = 60, "backup_created";
    /// A backup of the store failed (operator event, no account).
    BackupFailed = 61, "backup_failed";
}

/// A second-factor method, in [`Details::method`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum MfaMethod {
    /// A time-based one-time password (RFC 6238).
    Totp,
    /// A single-use backup code.
    BackupCode,
    /// A counter-based one-time password (RFC 4226).
    Hotp,
}

impl MfaMethod {
    /// The stored code.
    pub fn code(self) -> u8 {
        match self {
            MfaMethod::Totp => 1,
            MfaMethod::BackupCode => 2,
            MfaMethod::Hotp => 3,
        }
    }

    /// The name shown by the API.
    pub fn name(self) -> &'static str {
        match self {
            MfaMethod::Totp => "totp",
            MfaMethod::BackupCode => "backup_code",
            MfaMethod::Hotp => "hotp",
        }
    }

    /// The method of a stored code.
    pub fn from_code(code: u8) -> Option<Self> {
        match code {
            1 => Some(MfaMethod::Totp),
            2 => Some(MfaMethod::BackupCode),
            3 => Some(MfaMethod::Hotp),
            _ => None,
        }
    }
}

/// The non-secret details of an event (audit.md §2.2): each present field is one tagged
/// value in the entry, in tag order. Build with struct update syntax:
/// `Details { collection: Some(c), ..Details::default() }`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Details {
    /// Tag 1: a collection id.
    pub collection: Option<Id>,
    /// Tag 2: a group id.
    pub group: Option<Id>,
    /// Tag 3: an object id.
    pub object: Option<Id>,
    /// Tag 4: a version (object, roster, keyring).
    pub version: Option<u64>,
    /// Tag 5: a key epoch.
    pub epoch: Option<u32>,
    /// Tag 6: an envelope's recipient.
    pub recipient: Option<Id>,
    /// Tag 7: an envelope's owner field.
    pub owner: Option<Id>,
    /// Tag 8: an envelope's target scope.
    pub target: Option<Id>,
    /// Tag 9: a device id.
    pub device: Option<Id>,
    /// Tag 10: a second-factor method.
    pub method: Option<MfaMethod>,
    /// Tag 11: a count (sessions ended, backup codes, allow-list entries, bytes backed up).
    pub count: Option<u64>,
    /// Tag 12: a digest (the SHA-256 of a backup).
    pub digest: Option<[u8; 32]>,
}

/// One security event, before it is appended (the sequence number, time and previous hash
/// come from [`AuditStore::append`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event {
    /// What happened.
    pub kind: EventKind,
    /// The account it concerns; `None` for a failed login of an unknown name and for
    /// operator events.
    pub account: Option<UserId>,
    /// The client's address (the TCP peer), if there was a client. An IPv4-mapped IPv6
    /// address is stored as the IPv4 address; other addresses are kept whole.
    pub address: Option<IpAddr>,
    /// Ids, versions and counts; never a secret.
    pub details: Details,
}

impl Event {
    /// An event of `kind` with no account, address or details.
    pub fn new(kind: EventKind) -> Self {
        Self {
            kind,
            account: None,
            address: None,
            details: Details::default(),
        }
    }

    /// The same event concerning `account`.
    pub fn with_account(mut self, account: UserId) -> Self {
        self.account = Some(account);
        self
    }

    /// The same event from `address`.
    pub fn with_address(mut self, address: Option<IpAddr>) -> Self {
        self.address = address.map(|a| a.to_canonical());
        self
    }

    /// The same event with `details`.
    pub fn with_details(mut self, details: Details) -> Self {
        self.details = details;
        self
    }
}

/// A stored entry, decoded (audit.md §2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Its position in the chain, from 1, without gaps.
    pub seq: u64,
    /// When it was appended, Unix seconds (the server's clock).
    pub time: u64,
    /// The hash of entry `seq − 1` ([`GENESIS_PREV`] for entry 1).
    pub prev: [u8; 32],
    /// What happened.
    pub event: Event,
    /// The hash stored with the entry (audit.md §3).
    pub hash: [u8; 32],
}

/// A record that does not decode as an entry of this format (audit.md §2): the detail is
/// a fixed text.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("malformed audit record: {0}")]
pub struct Malformed(&'static str);

/// Encodes entry `seq` and appends its hash: the stored record (audit.md §2–§3).
pub fn encode_record(seq: u64, time: u64, prev: &[u8; 32], event: &Event) -> Vec<u8> {
    let mut r = Vec::with_capacity(160);
    r.extend_from_slice(&MAGIC);
    r.push(FORMAT_VERSION);
    r.extend_from_slice(&seq.to_be_bytes());
    r.extend_from_slice(&time.to_be_bytes());
    r.extend_from_slice(prev);
    r.extend_from_slice(&event.kind.code().to_be_bytes());
    match &event.account {
        None => r.push(0),
        Some(a) => {
            r.push(1);
            r.extend_from_slice(a);
        }
    }
    match event.address.map(|a| a.to_canonical()) {
        None => r.push(0),
        Some(IpAddr::V4(a)) => {
            r.push(4);
            r.extend_from_slice(&a.octets());
        }
        Some(IpAddr::V6(a)) => {
            r.push(6);
            r.extend_from_slice(&a.octets());
        }
    }
    encode_details(&event.details, &mut r);
    let hash = entry_hash(&r);
    r.extend_from_slice(&hash);
    r
}

fn encode_details(d: &Details, r: &mut Vec<u8>) {
    let mut fields: Vec<(u8, Vec<u8>)> = Vec::new();
    let mut id = |tag: u8, v: &Option<Id>| {
        if let Some(v) = v {
            fields.push((tag, v.to_vec()));
        }
    };
    id(1, &d.collection);
    id(2, &d.group);
    id(3, &d.object);
    if let Some(v) = d.version {
        fields.push((4, v.to_be_bytes().to_vec()));
    }
    if let Some(v) = d.epoch {
        fields.push((5, v.to_be_bytes().to_vec()));
    }
    let mut id = |tag: u8, v: &Option<Id>| {
        if let Some(v) = v {
            fields.push((tag, v.to_vec()));
        }
    };
    id(6, &d.recipient);
    id(7, &d.owner);
    id(8, &d.target);
    id(9, &d.device);
    if let Some(m) = d.method {
        fields.push((10, vec![m.code()]));
    }
    if let Some(v) = d.count {
        fields.push((11, v.to_be_bytes().to_vec()));
    }
    if let Some(v) = d.digest {
        fields.push((12, v.to_vec()));
    }
    // At most 12 fields: the count fits a u8.
    r.push(fields.len() as u8);
    for (tag, value) in fields {
        r.push(tag);
        r.extend_from_slice(&value);
    }
}

/// The entry hash: SHA-256 over the label and the entry's bytes, `prev` included
/// (audit.md §3).
pub fn entry_hash(entry: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(ENTRY_LABEL);
    h.update(entry);
    h.finalize().into()
}

/// Whether the hash at the end of `record` is the hash of the entry before it.
pub fn record_hash_matches(record: &[u8]) -> bool {
    match record.len().checked_sub(HASH_LEN) {
        Some(at) if record.len() >= MIN_RECORD_LEN => entry_hash(&record[..at]) == record[at..],
        _ => false,
    }
}

/// A strict reader of the record's bytes.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Malformed> {
        if self.0.len() < n {
            return Err(Malformed("truncated"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], Malformed> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    fn u8(&mut self) -> Result<u8, Malformed> {
        Ok(self.array::<1>()?[0])
    }

    fn u64(&mut self) -> Result<u64, Malformed> {
        Ok(u64::from_be_bytes(self.array()?))
    }
}

impl Entry {
    /// Decodes a stored record strictly (audit.md §2): magic, version, every field, known
    /// codes, details in ascending tag order without repeats, no trailing bytes. The hash
    /// is taken as stored; [`record_hash_matches`] checks it.
    pub fn decode(record: &[u8]) -> Result<Entry, Malformed> {
        let at = record
            .len()
            .checked_sub(HASH_LEN)
            .ok_or(Malformed("truncated"))?;
        let (body, hash) = record.split_at(at);
        let mut r = Reader(body);
        if r.array::<4>()? != MAGIC {
            return Err(Malformed("not an audit entry"));
        }
        if r.u8()? != FORMAT_VERSION {
            return Err(Malformed("unknown format version"));
        }
        let seq = r.u64()?;
        let time = r.u64()?;
        let prev = r.array::<32>()?;
        let kind = EventKind::from_code(u16::from_be_bytes(r.array()?))
            .ok_or(Malformed("unknown event kind"))?;
        let account = match r.u8()? {
            0 => None,
            1 => Some(r.array::<16>()?),
            _ => return Err(Malformed("bad account flag")),
        };
        let address = match r.u8()? {
            0 => None,
            4 => Some(IpAddr::from(r.array::<4>()?)),
            6 => {
                let a = IpAddr::from(r.array::<16>()?);
                if a.to_canonical() != a {
                    return Err(Malformed("IPv4-mapped address not stored as IPv4"));
                }
                Some(a)
            }
            _ => return Err(Malformed("bad address family")),
        };
        let details = decode_details(&mut r)?;
        if !r.0.is_empty() {
            return Err(Malformed("trailing bytes"));
        }
        let mut stored = [0u8; 32];
        stored.copy_from_slice(hash);
        if seq == 0 {
            return Err(Malformed("sequence number 0"));
        }
        Ok(Entry {
            seq,
            time,
            prev,
            event: Event {
                kind,
                account,
                address,
                details,
            },
            hash: stored,
        })
    }
}

fn decode_details(r: &mut Reader<'_>) -> Result<Details, Malformed> {
    let count = r.u8()?;
    let mut d = Details::default();
    let mut last = 0u8;
    for _ in 0..count {
        let tag = r.u8()?;
        if tag <= last {
            return Err(Malformed("details not in ascending tag order"));
        }
        last = tag;
        match tag {
            1 => d.collection = Some(r.array()?),
            2 => d.group = Some(r.array()?),
            3 => d.object = Some(r.array()?),
            4 => d.version = Some(r.u64()?),
            5 => d.epoch = Some(u32::from_be_bytes(r.array()?)),
            6 => d.recipient = Some(r.array()?),
            7 => d.owner = Some(r.array()?),
            8 => d.target = Some(r.array()?),
            9 => d.device = Some(r.array()?),
            10 => {
                d.method = Some(MfaMethod::from_code(r.u8()?).ok_or(Malformed("unknown method"))?)
            }
            11 => d.count = Some(r.u64()?),
            12 => d.digest = Some(r.array()?),
            _ => return Err(Malformed("unknown detail tag")),
        }
    }
    Ok(d)
}

/// Where audit entries are kept: one hash chain per store (docs/spec/audit.md §4).
///
/// Contract (tested by `tests/contract/mod.rs` on every backend):
/// - `append` assigns `seq` = last + 1 (1 for the first) and `prev` = the stored hash of the
///   last entry ([`GENESIS_PREV`] for the first) atomically: concurrent appends, from any
///   number of threads or server nodes, form one chain without gaps or forks. The entry is
///   durable when `append` returns;
/// - entries are never changed or removed by the server (deleting an account keeps its
///   entries: removing them would break the chain);
/// - `events_of` and `scan` return entries in ascending `seq`.
pub trait AuditStore: Send + Sync {
    /// Appends `event`, which happened at `time` (Unix seconds), as the next entry of the
    /// chain; the entry as stored.
    fn append(&self, time: u64, event: &Event) -> Result<Entry, BackendError>;

    /// The entries concerning `account` with `seq > after`, oldest first, at most `limit`.
    /// A record of the account that does not decode is an error (a damaged store).
    fn events_of(
        &self,
        account: &UserId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<Entry>, BackendError>;

    /// The raw records with `seq > after` in key order, at most `limit`: `(seq the record is
    /// stored under, record bytes)`. For verification: nothing is decoded or checked.
    fn scan(&self, after: u64, limit: usize) -> Result<Vec<(u64, Vec<u8>)>, BackendError>;
}

/// Appends `event` at `time` and logs (at `error`, target `vault_server::audit`) if the
/// store refused it; whether it was appended. For callers without an `AppState` (the
/// backup job): `record(&backend, unix_now(), &Event::new(EventKind::BackupCreated))`.
/// Blocking.
pub fn record<S: AuditStore + ?Sized>(store: &S, time: u64, event: &Event) -> bool {
    match store.append(time, event) {
        Ok(_) => true,
        Err(e) => {
            tracing::error!(
                target: "vault_server::audit",
                kind = event.kind.name(),
                error = %e,
                "an audit event could not be appended (the event is lost)"
            );
            false
        }
    }
}

/// Why a link of the chain is broken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum BrokenReason {
    /// No entry is stored under this `seq` (removed), while later ones are.
    Missing,
    /// The record does not decode.
    Malformed(Malformed),
    /// The record says another `seq` than the one it is stored under (moved or reordered).
    WrongSeq {
        /// The `seq` inside the record.
        found: u64,
    },
    /// The record's `prev` is not the hash of the entry before it (an earlier entry was
    /// changed and re-hashed, or this one was replaced).
    PrevMismatch,
    /// The record's hash is not the hash of its contents (changed in place).
    HashMismatch,
}

impl fmt::Display for BrokenReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BrokenReason::Missing => f.write_str("the entry is missing"),
            BrokenReason::Malformed(m) => write!(f, "{m}"),
            BrokenReason::WrongSeq { found } => {
                write!(f, "the record stored here says seq {found}")
            }
            BrokenReason::PrevMismatch => {
                f.write_str("prev is not the hash of the entry before it")
            }
            BrokenReason::HashMismatch => f.write_str("the hash does not match the entry"),
        }
    }
}

/// The first broken link of a chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Broken {
    /// The `seq` at which the chain breaks.
    pub seq: u64,
    /// Why.
    pub reason: BrokenReason,
}

/// What [`verify_chain`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Report {
    /// The records stored (intact or not).
    pub entries: u64,
    /// The last entry of the intact prefix, `(seq, hash)`: a checkpoint to record outside
    /// the server (audit.md §5). `None` if the log is empty or entry 1 is broken.
    pub head: Option<(u64, [u8; 32])>,
    /// The first broken link; `None` if the chain is intact.
    pub first_broken: Option<Broken>,
}

/// Records read per `scan` call while verifying.
const VERIFY_PAGE: usize = 1000;

/// Verifies the whole chain (audit.md §4.3): every record is stored under the next `seq`
/// (from 1, no gap), decodes, says that `seq`, links to the stored hash of the one before
/// (`GENESIS_PREV` for 1) and carries the hash of its contents. Reports the first link
/// that fails. Blocking; reads the whole log.
///
/// Removing entries at the *end* of the log cannot be seen from the log alone: compare
/// [`Report::head`] with a checkpoint kept elsewhere.
pub fn verify_chain<S: AuditStore + ?Sized>(store: &S) -> Result<Report, BackendError> {
    let mut report = Report {
        entries: 0,
        head: None,
        first_broken: None,
    };
    let mut prev = GENESIS_PREV;
    let mut after = 0;
    loop {
        let page = store.scan(after, VERIFY_PAGE)?;
        let Some(&(last, _)) = page.last() else {
            break;
        };
        for (key, record) in &page {
            report.entries += 1;
            if report.first_broken.is_some() {
                continue;
            }
            let expected = report.head.map_or(1, |(seq, _)| seq.saturating_add(1));
            let broken = |reason| Broken { seq: *key, reason };
            let checked = if *key != expected {
                Err(Broken {
                    seq: expected,
                    reason: BrokenReason::Missing,
                })
            } else {
                match Entry::decode(record) {
                    Err(m) => Err(broken(BrokenReason::Malformed(m))),
                    Ok(e) if e.seq != *key => Err(broken(BrokenReason::WrongSeq { found: e.seq })),
                    Ok(e) if e.prev != prev => Err(broken(BrokenReason::PrevMismatch)),
                    Ok(_) if !record_hash_matches(record) => {
                        Err(broken(BrokenReason::HashMismatch))
                    }
                    Ok(e) => Ok(e),
                }
            };
            match checked {
                Ok(e) => {
                    prev = e.hash;
                    report.head = Some((e.seq, e.hash));
                }
                Err(b) => report.first_broken = Some(b),
            }
        }
        if page.len() < VERIFY_PAGE {
            break;
        }
        after = last;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn full_event() -> Event {
        Event::new(EventKind::EnvelopeStored)
            .with_account([0xa1; 16])
            .with_address(Some("2001:db8::1".parse().unwrap()))
            .with_details(Details {
                collection: Some([1; 16]),
                group: Some([2; 16]),
                object: Some([3; 16]),
                version: Some(u64::MAX),
                epoch: Some(7),
                recipient: Some([6; 16]),
                owner: Some([7; 16]),
                target: Some([8; 16]),
                device: Some([9; 16]),
                method: Some(MfaMethod::Totp),
                count: Some(3),
                digest: Some([12; 32]),
            })
    }

    #[test]
    fn records_round_trip() {
        for event in [
            full_event(),
            Event::new(EventKind::LoginFailed).with_address(Some("192.0.2.7".parse().unwrap())),
            Event::new(EventKind::BackupFailed),
        ] {
            let r = encode_record(5, 1_700_000_000, &[0x55; 32], &event);
            let e = Entry::decode(&r).unwrap();
            assert_eq!(e.event, event);
            assert_eq!((e.seq, e.time, e.prev), (5, 1_700_000_000, [0x55; 32]));
            assert!(record_hash_matches(&r));
            assert_eq!(e.hash[..], r[r.len() - 32..]);
        }
        let minimal = encode_record(1, 0, &GENESIS_PREV, &Event::new(EventKind::Logout));
        assert_eq!(minimal.len(), MIN_RECORD_LEN);
    }

    #[test]
    fn every_kind_and_method_has_a_unique_code_and_name() {
        let mut codes = std::collections::BTreeSet::new();
        let mut names = std::collections::BTreeSet::new();
        for &k in EventKind::ALL {
            assert!(codes.insert(k.code()));
            assert!(names.insert(k.name()));
            assert_eq!(EventKind::from_code(k.code()), Some(k));
            let r = encode_record(1, 0, &GENESIS_PREV, &Event::new(k));
            assert_eq!(Entry::decode(&r).unwrap().event.kind, k);
        }
        for m in [MfaMethod::Totp, MfaMethod::BackupCode, MfaMethod::Hotp] {
            assert_eq!(MfaMethod::from_code(m.code()), Some(m));
        }
    }

    #[test]
    fn ipv4_mapped_addresses_are_stored_as_ipv4() {
        let e =
            Event::new(EventKind::Logout).with_address(Some("::ffff:192.0.2.1".parse().unwrap()));
        assert_eq!(e.address, Some("192.0.2.1".parse().unwrap()));
        let r = encode_record(1, 0, &GENESIS_PREV, &e);
        assert_eq!(Entry::decode(&r).unwrap().event.address, e.address);
    }

    /// The layout of audit.md §2, byte for byte.
    #[test]
    fn the_layout_is_the_specified_one() {
        let e = Event::new(EventKind::CollectionCreated)
            .with_account([0xa1; 16])
            .with_address(Some("192.0.2.1".parse().unwrap()))
            .with_details(Details {
                collection: Some([0xc1; 16]),
                ..Details::default()
            });
        let r = encode_record(0x0102, 0x0304, &[0xee; 32], &e);
        let mut want = b"VAUD\x01".to_vec();
        want.extend_from_slice(&0x0102u64.to_be_bytes());
        want.extend_from_slice(&0x0304u64.to_be_bytes());
        want.extend_from_slice(&[0xee; 32]);
        want.extend_from_slice(&[0, 40, 1]);
        want.extend_from_slice(&[0xa1; 16]);
        want.extend_from_slice(&[4, 192, 0, 2, 1, 1, 1]);
        want.extend_from_slice(&[0xc1; 16]);
        let mut h = Sha256::new();
        h.update(b"vault/v1/audit-entry\0");
        h.update(&want);
        let hash: [u8; 32] = h.finalize().into();
        want.extend_from_slice(&hash);
        assert_eq!(r, want);
    }

    #[test]
    fn decoding_is_strict() {
        let r = encode_record(9, 1, &[1; 32], &full_event());
        // Truncation at every length, and a trailing byte.
        for n in 0..r.len() {
            assert!(Entry::decode(&r[..n]).is_err(), "truncated to {n}");
        }
        let mut longer = r.clone();
        longer.insert(r.len() - 32, 0);
        assert!(Entry::decode(&longer).is_err());
        // Hand-made entries: each is the minimal one with one field broken.
        let base = encode_record(1, 0, &GENESIS_PREV, &Event::new(EventKind::Logout));
        let body = &base[..base.len() - 32];
        let with = |at: usize, bytes: &[u8], cut: usize| {
            let mut b = body[..at].to_vec();
            b.extend_from_slice(bytes);
            b.extend_from_slice(&body[at + cut..]);
            let h = entry_hash(&b);
            b.extend_from_slice(&h);
            b
        };
        let kind_at = 4 + 1 + 8 + 8 + 32;
        let details_at = kind_at + 2 + 1 + 1;
        for (what, bad) in [
            ("magic", with(0, b"VAUE", 4)),
            ("version", with(4, &[2], 1)),
            ("seq 0", with(5, &[0; 8], 8)),
            ("kind", with(kind_at, &[0xff, 0xff], 2)),
            ("account flag", with(kind_at + 2, &[2], 1)),
            ("address family", with(kind_at + 3, &[5], 1)),
            (
                "mapped v6",
                with(
                    kind_at + 3,
                    &[6, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 192, 0, 2, 1],
                    1,
                ),
            ),
            ("unknown tag", with(details_at, &[1, 13, 0], 1)),
            ("tag 0", with(details_at, &[1, 0], 1)),
            (
                "repeated tag",
                with(details_at, &[2, 5, 0, 0, 0, 1, 5, 0, 0, 0, 2], 1),
            ),
            (
                "descending",
                with(
                    details_at,
                    &[2, 5, 0, 0, 0, 1, 4, 0, 0, 0, 0, 0, 0, 0, 2],
                    1,
                ),
            ),
            ("method", with(details_at, &[1, 10, 9], 1)),
            ("count past end", with(details_at, &[2, 5, 0, 0, 0, 1], 1)),
        ] {
            assert!(Entry::decode(&bad).is_err(), "{what}");
        }
        assert!(Entry::decode(&with(details_at, &[1, 5, 0, 0, 0, 1], 1)).is_ok());
    }

    #[test]
    fn every_bit_flip_breaks_the_hash() {
        let r = encode_record(3, 77, &[4; 32], &full_event());
        for bit in 0..r.len() * 8 {
            let mut x = r.clone();
            x[bit / 8] ^= 1 << (bit % 8);
            assert!(!record_hash_matches(&x), "bit {bit}");
        }
    }
}
