//! Signed, hash-chained group rosters (docs/spec/groups.md §2–§3; THREATS C17, C18).
//!
//! ```text
//! tbs     = "VROS" || u8 format_version (1) || u8 suite (1) || group_id[16]
//!           || u64 roster_version (from 1) || prev_hash[32] (zero for version 1)
//!           || u32 epoch (from 1) || group_exchange_key[65] (uncompressed SEC 1 P-256)
//!           || signer[16] || u64 timestamp
//!           || u16 member_count (1..=10,000) || members
//! member  = keyring_id[16] || fingerprint[32] || u8 role (1 member, 2 admin)
//!           (sorted by keyring_id, strictly increasing; at least one admin)
//! signed  = tbs || signature[256]   (RSASSA-PSS-SHA256 by `signer` over
//!                                    "vault/v1/roster-signature\0" || tbs)
//! hash    = SHA-256("vault/v1/roster-hash\0" || tbs)
//! ```
//!
//! A roster is public: it is signed, not sealed. Version 1 is signed by an admin it lists;
//! every later version is signed by an admin of the version before it and chains to it by
//! hash ([`Roster::check_successor`]), so the server can neither add a member (C17) nor
//! keep a removed member in the key epoch that follows the removal (C18).

use std::collections::BTreeMap;
use std::fmt;

use rand_core::CryptoRngCore;
use sha2::{Digest, Sha256};
use vault_keyring::{
    ExchangePublicKey, Fingerprint, IdentityBundle, Keyring, KeyringId, P256_POINT_LEN,
    SIGNATURE_LEN,
};

use crate::error::{integrity, Error};
use crate::ids::GroupId;
use crate::keys::{HASH_ROSTER, SIG_ROSTER};
use crate::wire::{Malformed, Reader, Writer};

const MAGIC: &[u8; 4] = b"VROS";
const FORMAT_VERSION: u8 = 1;
const SUITE: u8 = 1;
const ROLE_MEMBER: u8 = 1;
const ROLE_ADMIN: u8 = 2;
/// Bytes of `tbs` before the members.
const FIXED_LEN: usize = 4 + 1 + 1 + 16 + 8 + 32 + 4 + P256_POINT_LEN + 16 + 8 + 2;
/// Bytes of one member.
const MEMBER_LEN: usize = 16 + 32 + 1;

/// Most members a roster may list.
pub const MAX_MEMBERS: u16 = 10_000;

/// What a member may do in a group.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// Reads and writes what is shared with the group (wire value 1).
    Member,
    /// A member who may also sign the next roster: add, remove, change roles, start an
    /// epoch (wire value 2).
    Admin,
}

impl Role {
    fn to_u8(self) -> u8 {
        match self {
            Role::Member => ROLE_MEMBER,
            Role::Admin => ROLE_ADMIN,
        }
    }

    fn from_u8(v: u8) -> Result<Self, Malformed> {
        match v {
            ROLE_MEMBER => Ok(Role::Member),
            ROLE_ADMIN => Ok(Role::Admin),
            _ => Err("unknown roster role"),
        }
    }
}

/// One member of a roster: a keyring, the fingerprint of its identity bundle as the admin
/// who added it verified it, and its role.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Member {
    /// The member's keyring id.
    pub id: KeyringId,
    /// The fingerprint of the member's identity bundle.
    pub fingerprint: Fingerprint,
    /// The member's role.
    pub role: Role,
}

/// Everything a roster signs.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Body {
    group: GroupId,
    version: u64,
    prev_hash: [u8; 32],
    epoch: u32,
    exchange_key: ExchangePublicKey,
    signer: KeyringId,
    timestamp: u64,
    /// Sorted by id, strictly increasing.
    members: Vec<Member>,
}

impl Body {
    fn member(&self, id: &KeyringId) -> Option<&Member> {
        self.members
            .binary_search_by(|m| m.id.cmp(id))
            .ok()
            .map(|i| &self.members[i])
    }

    fn tbs(&self) -> Vec<u8> {
        let mut t = Vec::with_capacity(FIXED_LEN + self.members.len() * MEMBER_LEN);
        t.extend_from_slice(MAGIC);
        t.put_u8(FORMAT_VERSION);
        t.put_u8(SUITE);
        t.extend_from_slice(self.group.as_bytes());
        t.put_u64(self.version);
        t.extend_from_slice(&self.prev_hash);
        t.put_u32(self.epoch);
        t.extend_from_slice(&self.exchange_key.to_sec1_bytes());
        t.extend_from_slice(self.signer.as_bytes());
        t.put_u64(self.timestamp);
        // `check` bounds the count by MAX_MEMBERS before anything is encoded.
        t.put_u16(u16::try_from(self.members.len()).unwrap_or(u16::MAX));
        for m in &self.members {
            t.extend_from_slice(m.id.as_bytes());
            t.extend_from_slice(m.fingerprint.as_bytes());
            t.put_u8(m.role.to_u8());
        }
        t
    }

    /// Decodes `tbs || signature` strictly (the signature is not checked here); returns the
    /// body and the length of `tbs`.
    fn decode(signed: &[u8]) -> Result<(Self, usize), Error> {
        let mut r = Reader::new(signed);
        if r.take(4).map_err(integrity)? != MAGIC {
            return Err(integrity("roster magic"));
        }
        let format_version = r.u8().map_err(integrity)?;
        let suite = r.u8().map_err(integrity)?;
        if format_version != FORMAT_VERSION || suite != SUITE {
            return Err(Error::UnsupportedFormat);
        }
        let body = Self::decode_rest(r).map_err(integrity)?;
        Ok((body, signed.len() - SIGNATURE_LEN))
    }

    fn decode_rest(mut r: Reader<'_>) -> Result<Self, Malformed> {
        let group = GroupId::from_bytes(r.array()?);
        let version = r.u64()?;
        let prev_hash = r.array()?;
        let epoch = r.u32()?;
        let exchange_key = ExchangePublicKey::from_sec1_bytes(r.take(P256_POINT_LEN)?)
            .map_err(|_| "roster exchange key is not a valid uncompressed P-256 point")?;
        let signer = KeyringId::from_bytes(r.array()?);
        let timestamp = r.u64()?;
        let count = r.u16()?;
        if count == 0 || count > MAX_MEMBERS {
            return Err("roster member count out of range");
        }
        // Exact length before allocating anything.
        if r.remaining() != usize::from(count) * MEMBER_LEN + SIGNATURE_LEN {
            return Err("roster length does not match its member count");
        }
        let mut members = Vec::with_capacity(usize::from(count));
        for _ in 0..count {
            let id = KeyringId::from_bytes(r.array()?);
            let fingerprint = Fingerprint::from_bytes(r.array()?);
            let role = Role::from_u8(r.u8()?)?;
            members.push(Member {
                id,
                fingerprint,
                role,
            });
        }
        r.take(SIGNATURE_LEN)?;
        r.finish()?;
        let body = Self {
            group,
            version,
            prev_hash,
            epoch,
            exchange_key,
            signer,
            timestamp,
            members,
        };
        body.check()?;
        Ok(body)
    }

    /// The rules every roster obeys on its own (groups.md §2).
    fn check(&self) -> Result<(), Malformed> {
        if self.version == 0 {
            return Err("roster version 0");
        }
        if self.epoch == 0 {
            return Err("roster epoch 0");
        }
        if (self.version == 1) != (self.prev_hash == [0; 32]) {
            return Err("roster previous hash must be zero exactly for version 1");
        }
        if self.version == 1 && self.epoch != 1 {
            return Err("roster version 1 must be of epoch 1");
        }
        if self.members.is_empty() || self.members.len() > usize::from(MAX_MEMBERS) {
            return Err("roster member count out of range");
        }
        if !self.members.windows(2).all(|w| w[0].id < w[1].id) {
            return Err("roster members not strictly increasing");
        }
        if !self.members.iter().any(|m| m.role == Role::Admin) {
            return Err("roster without an admin");
        }
        Ok(())
    }

    /// The successor rule (groups.md §3): may this body, signed by a key of fingerprint
    /// `signer_fingerprint`, follow `previous`?
    fn may_follow(
        &self,
        signer_fingerprint: &Fingerprint,
        previous: &Roster,
    ) -> Result<(), Malformed> {
        let prev = &previous.body;
        if self.group != prev.group {
            return Err("roster of another group");
        }
        if prev.version.checked_add(1) != Some(self.version) {
            return Err("roster is not the next version (rollback, replay, fork or gap)");
        }
        if self.prev_hash != previous.hash {
            return Err("roster does not chain to the previous one");
        }
        match prev.member(&self.signer) {
            Some(m) if m.role == Role::Admin && m.fingerprint == *signer_fingerprint => {}
            _ => return Err("roster signer is not an admin of the previous roster"),
        }
        let new_epoch = if self.epoch == prev.epoch {
            false
        } else if prev.epoch.checked_add(1) == Some(self.epoch) {
            true
        } else {
            return Err("roster epoch neither stays nor rises by one");
        };
        if new_epoch == (self.exchange_key == prev.exchange_key) {
            return Err("roster exchange key must change exactly when the epoch does");
        }
        if !new_epoch {
            for old in &prev.members {
                match self.member(&old.id) {
                    None => return Err("member removed without a new epoch"),
                    Some(m) if m.fingerprint != old.fingerprint => {
                        return Err("member's key changed without a new epoch")
                    }
                    Some(_) => {}
                }
            }
        }
        Ok(())
    }
}

/// A decoded roster whose signature verified, with the fingerprint of the key that made it.
///
/// Obtained from [`Roster::open`] (someone's roster) or from [`Roster::create`] and
/// [`RosterUpdate::sign`] (one this device signed). A roster of version 2 or later is only
/// trustworthy once [`Roster::check_successor`] has accepted it after a trusted previous
/// version: on its own it proves only who signed it, not that the signer was an admin.
#[derive(Clone, PartialEq, Eq)]
pub struct Roster {
    body: Body,
    signer_fingerprint: Fingerprint,
    hash: [u8; 32],
    signed: Vec<u8>,
}

impl fmt::Debug for Roster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Roster")
            .field("group", &self.body.group)
            .field("version", &self.body.version)
            .field("epoch", &self.body.epoch)
            .field("signer", &self.body.signer)
            .field("members", &self.body.members.len())
            .finish_non_exhaustive()
    }
}

fn chain_hash(tbs: &[u8]) -> [u8; 32] {
    Sha256::new()
        .chain_update(HASH_ROSTER)
        .chain_update(tbs)
        .finalize()
        .into()
}

impl Roster {
    /// Decodes and verifies a signed roster of `group`.
    ///
    /// `lookup` returns the identity this device has pinned for a keyring id (THREATS I4);
    /// the roster's signer must be one of them and its signature must verify. A version 1
    /// roster must moreover list its signer as an admin with that identity's fingerprint.
    /// An unknown format version or suite is [`Error::UnsupportedFormat`]; every other
    /// failure is [`Error::Integrity`].
    pub fn open(
        signed: &[u8],
        group: &GroupId,
        lookup: &dyn Fn(&KeyringId) -> Option<IdentityBundle>,
    ) -> Result<Self, Error> {
        let (body, tbs_len) = Body::decode(signed)?;
        if &body.group != group {
            return Err(integrity("roster of another group"));
        }
        let identity = lookup(&body.signer)
            .ok_or_else(|| integrity("roster signer is not a pinned identity"))?;
        if identity.keyring_id() != body.signer {
            return Err(integrity("pinned identity is of another keyring"));
        }
        identity
            .verify(SIG_ROSTER, &signed[..tbs_len], &signed[tbs_len..])
            .map_err(|_| integrity("roster signature"))?;
        let signer_fingerprint = identity.fingerprint();
        if body.version == 1 {
            match body.member(&body.signer) {
                Some(m) if m.role == Role::Admin && m.fingerprint == signer_fingerprint => {}
                _ => return Err(integrity("first roster not signed by an admin it lists")),
            }
        }
        Ok(Self {
            hash: chain_hash(&signed[..tbs_len]),
            body,
            signer_fingerprint,
            signed: signed.to_vec(),
        })
    }

    /// Checks that `self` may follow `previous`, the last roster this device accepted for
    /// the group (groups.md §3): the same group; version `previous + 1`; `prev_hash` equal
    /// to `previous.hash()`; signed by an admin of `previous` with the fingerprint listed
    /// there (THREATS C17); the epoch the same or one higher, one higher whenever a member
    /// was removed or a member's fingerprint changed (C18); the exchange key changed exactly
    /// when the epoch did. Every violation is [`Error::Integrity`].
    ///
    /// The same roster offered again is refused too: a caller that already holds a version
    /// compares hashes (equal: nothing new; different: a fork).
    pub fn check_successor(&self, previous: &Roster) -> Result<(), Error> {
        self.body
            .may_follow(&self.signer_fingerprint, previous)
            .map_err(integrity)
    }

    /// Version 1 of a new group's roster: the creator as its only member, an admin, and
    /// `exchange_key` as the key of epoch 1. `creator_identity` must be the creator's own
    /// identity bundle ([`Error::InvalidInput`] otherwise).
    pub fn create(
        rng: &mut impl CryptoRngCore,
        group: GroupId,
        creator: &Keyring,
        creator_identity: &IdentityBundle,
        exchange_key: &ExchangePublicKey,
        timestamp: u64,
    ) -> Result<(Self, Vec<u8>), Error> {
        let body = Body {
            group,
            version: 1,
            prev_hash: [0; 32],
            epoch: 1,
            exchange_key: *exchange_key,
            signer: creator.id(),
            timestamp,
            members: vec![Member {
                id: creator.id(),
                fingerprint: creator_identity.fingerprint(),
                role: Role::Admin,
            }],
        };
        Self::sign(rng, body, creator, creator_identity)
    }

    /// Starts the next version of this roster: same members, same epoch and exchange key,
    /// until the [`RosterUpdate`] changes them and an admin signs it.
    pub fn next(&self) -> RosterUpdate<'_> {
        RosterUpdate {
            previous: self,
            members: self.body.members.iter().map(|m| (m.id, *m)).collect(),
            new_epoch_key: None,
            problem: None,
        }
    }

    fn sign(
        rng: &mut impl CryptoRngCore,
        body: Body,
        signer: &Keyring,
        signer_identity: &IdentityBundle,
    ) -> Result<(Self, Vec<u8>), Error> {
        if signer_identity.keyring_id() != signer.id() || body.signer != signer.id() {
            return Err(Error::InvalidInput(
                "the identity bundle is not the signing keyring's",
            ));
        }
        body.check().map_err(Error::InvalidInput)?;
        let tbs = body.tbs();
        let signature = signer.sign(rng, SIG_ROSTER, &tbs);
        signer_identity
            .verify(SIG_ROSTER, &tbs, &signature)
            .map_err(|_| Error::InvalidInput("the identity bundle is not the signing keyring's"))?;
        let hash = chain_hash(&tbs);
        let mut signed = tbs;
        signed.extend_from_slice(&signature);
        let roster = Self {
            body,
            signer_fingerprint: signer_identity.fingerprint(),
            hash,
            signed: signed.clone(),
        };
        Ok((roster, signed))
    }

    /// The group.
    pub fn group(&self) -> GroupId {
        self.body.group
    }

    /// The roster version, from 1.
    pub fn version(&self) -> u64 {
        self.body.version
    }

    /// The previous version's hash (zero for version 1).
    pub fn prev_hash(&self) -> [u8; 32] {
        self.body.prev_hash
    }

    /// The key epoch, from 1.
    pub fn epoch(&self) -> u32 {
        self.body.epoch
    }

    /// The group's P-256 exchange key of this epoch.
    pub fn exchange_key(&self) -> &ExchangePublicKey {
        &self.body.exchange_key
    }

    /// The keyring that signed this version.
    pub fn signer(&self) -> KeyringId {
        self.body.signer
    }

    /// The fingerprint of the identity whose key verified the signature.
    pub fn signer_fingerprint(&self) -> Fingerprint {
        self.signer_fingerprint
    }

    /// Signing time, seconds since the Unix epoch, as the signer claims it (not checked).
    pub fn timestamp(&self) -> u64 {
        self.body.timestamp
    }

    /// The members, sorted by keyring id.
    pub fn members(&self) -> &[Member] {
        &self.body.members
    }

    /// The member with keyring id `id`, if listed.
    pub fn member(&self, id: &KeyringId) -> Option<&Member> {
        self.body.member(id)
    }

    /// Whether `id` is listed (in any role).
    pub fn is_member(&self, id: &KeyringId) -> bool {
        self.body.member(id).is_some()
    }

    /// Whether `id` is listed as an admin.
    pub fn is_admin(&self, id: &KeyringId) -> bool {
        self.body.member(id).is_some_and(|m| m.role == Role::Admin)
    }

    /// The chain hash: `SHA-256("vault/v1/roster-hash\0" || tbs)`.
    pub fn hash(&self) -> [u8; 32] {
        self.hash
    }

    /// The signed roster (`tbs || signature`), as stored and sent.
    pub fn as_bytes(&self) -> &[u8] {
        &self.signed
    }

    /// Decodes without verifying; `Some(member count)` if well formed. For the fuzz target.
    pub(crate) fn decode_unverified(signed: &[u8]) -> Option<usize> {
        Body::decode(signed).ok().map(|(b, _)| b.members.len())
    }

    /// The signer a well-formed roster names, read **without** verifying anything: only to
    /// tell the caller whose identity to pin when it cannot be opened.
    pub(crate) fn signer_unverified(signed: &[u8]) -> Option<KeyringId> {
        Body::decode(signed).ok().map(|(b, _)| b.signer)
    }
}

/// The next version of a roster being prepared by an admin: from [`Roster::next`], changed
/// with [`add`](Self::add), [`remove`](Self::remove), [`set_role`](Self::set_role) and
/// [`new_epoch`](Self::new_epoch), made with [`sign`](Self::sign).
///
/// ```text
/// let (v2, bytes) = v1.next().add(&bob, Role::Member).sign(rng, &alice, &alice_id, now)?;
/// let (v3, bytes) = v2.next().remove(&bob.keyring_id()).new_epoch(&key2).sign(…)?;
/// ```
#[must_use = "a roster update does nothing until it is signed"]
pub struct RosterUpdate<'a> {
    previous: &'a Roster,
    members: BTreeMap<KeyringId, Member>,
    new_epoch_key: Option<ExchangePublicKey>,
    problem: Option<&'static str>,
}

impl fmt::Debug for RosterUpdate<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RosterUpdate")
            .field("previous_version", &self.previous.body.version)
            .field("members", &self.members.len())
            .field("new_epoch", &self.new_epoch_key.is_some())
            .finish_non_exhaustive()
    }
}

impl RosterUpdate<'_> {
    /// Adds the keyring of `identity` with `role`, listed with its fingerprint. Only add an
    /// identity this device has verified (pinned fingerprint or an explicit user check,
    /// THREATS I4). If it is already a member, its entry is replaced; a changed fingerprint
    /// then needs a [`new_epoch`](Self::new_epoch).
    pub fn add(mut self, identity: &IdentityBundle, role: Role) -> Self {
        let id = identity.keyring_id();
        self.members.insert(
            id,
            Member {
                id,
                fingerprint: identity.fingerprint(),
                role,
            },
        );
        self
    }

    /// Removes the member `id`. A removal needs a [`new_epoch`](Self::new_epoch) (THREATS
    /// C18); [`sign`](Self::sign) refuses without one.
    pub fn remove(mut self, id: &KeyringId) -> Self {
        if self.members.remove(id).is_none() {
            self.problem
                .get_or_insert("removing a keyring that is not a member");
        }
        self
    }

    /// Changes the role of the member `id`.
    pub fn set_role(mut self, id: &KeyringId, role: Role) -> Self {
        match self.members.get_mut(id) {
            Some(m) => m.role = role,
            None => {
                self.problem
                    .get_or_insert("changing the role of a keyring that is not a member");
            }
        }
        self
    }

    /// Starts the next key epoch with the group's new exchange key `key` (it must differ
    /// from the current one).
    pub fn new_epoch(mut self, key: &ExchangePublicKey) -> Self {
        self.new_epoch_key = Some(*key);
        self
    }

    /// Signs the next version with `admin`, who must be an admin of the current version
    /// with the fingerprint of `admin_identity` (its own identity bundle). Fails with
    /// [`Error::InvalidInput`] if the result would break a rule of groups.md §2–§3: no admin
    /// left, more than [`MAX_MEMBERS`], a removal or key change without a new epoch, an
    /// unchanged key for a new epoch, a signer who is not an admin, or an earlier call that
    /// named a keyring that is not a member.
    pub fn sign(
        self,
        rng: &mut impl CryptoRngCore,
        admin: &Keyring,
        admin_identity: &IdentityBundle,
        timestamp: u64,
    ) -> Result<(Roster, Vec<u8>), Error> {
        if let Some(problem) = self.problem {
            return Err(Error::InvalidInput(problem));
        }
        let prev = &self.previous.body;
        let (epoch, exchange_key) = match self.new_epoch_key {
            Some(key) => (
                prev.epoch
                    .checked_add(1)
                    .ok_or(Error::InvalidInput("roster epoch exhausted"))?,
                key,
            ),
            None => (prev.epoch, prev.exchange_key),
        };
        let body = Body {
            group: prev.group,
            version: prev
                .version
                .checked_add(1)
                .ok_or(Error::InvalidInput("roster version exhausted"))?,
            prev_hash: self.previous.hash,
            epoch,
            exchange_key,
            signer: admin.id(),
            timestamp,
            members: self.members.into_values().collect(),
        };
        body.check().map_err(Error::InvalidInput)?;
        body.may_follow(&admin_identity.fingerprint(), self.previous)
            .map_err(Error::InvalidInput)?;
        Roster::sign(rng, body, admin, admin_identity)
    }
}
