//! Security groups (docs/spec/groups.md §5): a signed roster, and per epoch a group secret
//! (an AES-256 key and a P-256 exchange pair) handed to every member by envelope. A
//! collection handed to a group is handed to the group's exchange key of the current epoch;
//! a removal starts a new epoch, and the next write of each collection shared with the
//! group rotates its key (THREATS C17, C18).

use p256::elliptic_curve::sec1::ToEncodedPoint;
use rand_core::{CryptoRngCore, OsRng};
use sha2::{Digest, Sha256};
use vault_keyring::envelope::{self, Grant, Purpose, RecipientKey, RecipientSecret};
use vault_keyring::seal::{self, Context};
use vault_keyring::{ExchangePublicKey, IdentityBundle, KeyPurpose, KeyringId, SymmetricKey};
use zeroize::{Zeroize, Zeroizing};

use crate::error::{integrity, Error};
use crate::ids::GroupId;
use crate::roster::{Role, Roster};
use crate::share::envelope_key;
use crate::store::{RecordKind, Store};
use crate::vault::{now, Vault};

/// Local-state namespace of accepted rosters (key: group id).
const NS_ROSTER: u8 = 2;
/// Local-state namespace of group secrets (key: group id || u32 epoch).
const NS_GROUP_SECRET: u8 = 3;
const LOCAL_ROSTER: Context = Context::new("vault/v1/local/roster");
const LOCAL_GROUP_SECRET: Context = Context::new("vault/v1/local/group-secret");
const HASH_GROUP_KEY: &[u8] = b"vault/v1/group-key-fingerprint\0";
/// Length of a group secret: AES-256 key || P-256 scalar.
const GROUP_SECRET_LEN: usize = 64;

/// The fingerprint of a group's exchange key of one epoch, as envelopes to the group name
/// it: SHA-256("vault/v1/group-key-fingerprint\0" || group id || u32 epoch || SEC 1 point).
pub fn group_key_fingerprint(group: &GroupId, epoch: u32, key: &ExchangePublicKey) -> [u8; 32] {
    Sha256::new()
        .chain_update(HASH_GROUP_KEY)
        .chain_update(group.as_bytes())
        .chain_update(epoch.to_be_bytes())
        .chain_update(key.to_sec1_bytes())
        .finalize()
        .into()
}

/// The secret of one group epoch.
pub(crate) struct GroupSecret {
    group: GroupId,
    epoch: u32,
    /// The group AES key of the epoch (reserved for group-internal data).
    #[allow(dead_code)]
    aes: SymmetricKey,
    exchange: p256::SecretKey,
    fingerprint: [u8; 32],
}

impl GroupSecret {
    fn generate(rng: &mut impl CryptoRngCore, group: GroupId, epoch: u32) -> Result<Self, Error> {
        let aes = SymmetricKey::generate(rng);
        let exchange = p256::SecretKey::random(rng);
        Self::new(group, epoch, aes, exchange)
    }

    fn new(
        group: GroupId,
        epoch: u32,
        aes: SymmetricKey,
        exchange: p256::SecretKey,
    ) -> Result<Self, Error> {
        let public = exchange_public(&exchange)?;
        Ok(Self {
            group,
            epoch,
            aes,
            fingerprint: group_key_fingerprint(&group, epoch, &public),
            exchange,
        })
    }

    fn from_payload(group: GroupId, epoch: u32, payload: &[u8]) -> Result<Self, Error> {
        if payload.len() != GROUP_SECRET_LEN {
            return Err(integrity("group secret length"));
        }
        let aes = crate::keys::symmetric_key(&payload[..32], "group key")?;
        let exchange = p256::SecretKey::from_slice(&payload[32..])
            .map_err(|_| integrity("group exchange scalar"))?;
        Self::new(group, epoch, aes, exchange)
    }

    fn payload(&self) -> Zeroizing<Vec<u8>> {
        let mut p = Zeroizing::new(Vec::with_capacity(GROUP_SECRET_LEN));
        p.extend_from_slice(self.aes.expose_bytes());
        let mut scalar = self.exchange.to_bytes();
        p.extend_from_slice(&scalar);
        scalar.as_mut_slice().zeroize();
        p
    }

    fn public(&self) -> Result<ExchangePublicKey, Error> {
        exchange_public(&self.exchange)
    }

    /// What opens envelopes addressed to the group at this epoch.
    pub(crate) fn recipient(&self) -> RecipientSecret<'_> {
        RecipientSecret::group(*self.group.as_bytes(), self.fingerprint, &self.exchange)
    }
}

fn exchange_public(secret: &p256::SecretKey) -> Result<ExchangePublicKey, Error> {
    let point = secret.public_key().to_encoded_point(false);
    Ok(ExchangePublicKey::from_sec1_bytes(point.as_bytes())?)
}

fn secret_key(group: &GroupId, epoch: u32) -> Vec<u8> {
    let mut k = group.as_bytes().to_vec();
    k.extend_from_slice(&epoch.to_be_bytes());
    k
}

fn roster_key(group: &GroupId, version: u64) -> Vec<u8> {
    let mut k = group.as_bytes().to_vec();
    k.extend_from_slice(&version.to_be_bytes());
    k
}

/// A security group as this device sees it: the latest roster it verified.
pub struct Group<'v, S: Store> {
    vault: &'v Vault<S>,
    roster: Roster,
}

impl<S: Store> Vault<S> {
    /// Creates a security group with this user as its only member and admin: roster version
    /// 1, epoch 1 with a fresh group secret (handed to this user by envelope, so the user's
    /// other devices find it too).
    pub fn create_group(&self) -> Result<Group<'_, S>, Error> {
        let id = GroupId::generate(&mut OsRng);
        let secret = GroupSecret::generate(&mut OsRng, id, 1)?;
        let (roster, signed) = Roster::create(
            &mut OsRng,
            id,
            &self.keyring,
            &self.identity,
            &secret.public()?,
            now(),
        )?;
        if !self
            .store
            .insert_record(RecordKind::Roster, &roster_key(&id, 1), &signed)?
        {
            return Err(Error::Conflict);
        }
        self.hand_group_secret(&secret, &self.identity)?;
        self.keep_group_secret(&secret)?;
        self.keep_roster(&roster)?;
        Ok(Group {
            vault: self,
            roster,
        })
    }

    /// Opens group `id`: verifies the roster chain from the last version this device
    /// accepted (or from version 1) to the newest in the store, and fetches the group
    /// secrets handed to this user. A non-member can open it too (to hand a collection to
    /// the group) but holds no secret.
    pub fn group(&self, id: GroupId) -> Result<Group<'_, S>, Error> {
        let roster = self.sync_roster(&id)?;
        Ok(Group {
            vault: self,
            roster,
        })
    }

    /// The groups this user holds a secret of, and those whose secrets were handed to this
    /// user in the store (verified when opened).
    pub fn groups(&self) -> Result<Vec<GroupId>, Error> {
        let mut out = self.known_groups()?;
        for key in self
            .store
            .list_records(RecordKind::Envelope, self.keyring.id().as_bytes())?
        {
            let Some(bytes) = self.store.get_record(RecordKind::Envelope, &key)? else {
                continue;
            };
            let Ok(info) = envelope::peek(&bytes) else {
                continue;
            };
            if info.grant.purpose == Purpose::GroupSecret && info.grant.owner == info.grant.target {
                let g = GroupId::from_bytes(info.grant.target);
                if !out.contains(&g) {
                    out.push(g);
                }
            }
        }
        Ok(out)
    }

    /// Verifies the roster chain of `group` up to the newest version in the store, keeps the
    /// newest as this device's high-water mark (refusing rollback and forks), and fetches
    /// the group secrets handed to this user.
    pub(crate) fn sync_roster(&self, group: &GroupId) -> Result<Roster, Error> {
        let local = self.local_roster(group)?;
        let had_local = local.is_some();
        let versions = self
            .store
            .list_records(RecordKind::Roster, group.as_bytes())?;
        let newest = versions
            .iter()
            .filter_map(|k| k.get(16..24).and_then(|v| v.try_into().ok()))
            .map(u64::from_be_bytes)
            .max()
            .unwrap_or(0);
        let mut current = match local {
            Some(r) => {
                if newest < r.version() {
                    return Err(integrity("the store rolled a roster back"));
                }
                // The stored copy of the version this device holds must be the same roster.
                let stored = self
                    .store
                    .get_record(RecordKind::Roster, &roster_key(group, r.version()))?
                    .ok_or_else(|| integrity("the store lost an accepted roster"))?;
                if stored != r.as_bytes() {
                    return Err(integrity(
                        "two different rosters of the same version (fork)",
                    ));
                }
                r
            }
            None => {
                let first = self
                    .store
                    .get_record(RecordKind::Roster, &roster_key(group, 1))?
                    .ok_or(Error::NotFound)?;
                // Version 1 is trusted through its creator's pinned identity (groups.md §3):
                // say whom to pin when it is not.
                if let Some(signer) = Roster::signer_unverified(&first) {
                    if self.pinned_identity(&signer)?.is_none() {
                        return Err(Error::UnknownIdentity(signer));
                    }
                }
                self.open_roster(&first, group, None)?
            }
        };
        let held = current.version();
        for version in current.version() + 1..=newest {
            let bytes = self
                .store
                .get_record(RecordKind::Roster, &roster_key(group, version))?
                .ok_or_else(|| integrity("a roster version is missing from the chain"))?;
            let next = self.open_roster(&bytes, group, Some(&current))?;
            next.check_successor(&current)?;
            current = next;
        }
        if current.version() != held || !had_local {
            self.keep_roster(&current)?;
        }
        self.fetch_group_secrets(&current)?;
        Ok(current)
    }

    /// Opens one roster version: the signer must be pinned here, or (for a successor) be
    /// listed in `previous` with the fingerprint of the identity the directory returns.
    fn open_roster(
        &self,
        bytes: &[u8],
        group: &GroupId,
        previous: Option<&Roster>,
    ) -> Result<Roster, Error> {
        let lookup = |id: &KeyringId| -> Option<IdentityBundle> {
            if let Ok(Some(b)) = self.pinned_identity(id) {
                return Some(b);
            }
            let listed = previous?.member(id)?.fingerprint;
            let bytes = self
                .store
                .get_record(RecordKind::Identity, id.as_bytes())
                .ok()??;
            let bundle = IdentityBundle::from_bytes(&bytes).ok()?;
            (bundle.keyring_id() == *id && bundle.fingerprint() == listed).then_some(bundle)
        };
        Roster::open(bytes, group, &lookup)
    }

    /// The roster this device accepted last for `group`: from memory, or else from the local
    /// state (decoded and verified once per process, then remembered).
    fn local_roster(&self, group: &GroupId) -> Result<Option<Roster>, Error> {
        if let Some(r) = self.rosters.lock().ok().and_then(|m| m.get(group).cloned()) {
            return Ok(Some(r));
        }
        let Some(record) = self.state.get_local(NS_ROSTER, group.as_bytes())? else {
            return Ok(None);
        };
        let plain = seal::open(
            self.keyring.key(KeyPurpose::LocalState),
            LOCAL_ROSTER,
            group.as_bytes(),
            &record,
        )?;
        // signer bundle (vec32) || roster
        if plain.len() < 4 {
            return Err(integrity("local roster record"));
        }
        let n = u32::from_be_bytes([plain[0], plain[1], plain[2], plain[3]]) as usize;
        let end = n
            .checked_add(4)
            .filter(|&end| end <= plain.len())
            .ok_or_else(|| integrity("local roster record"))?;
        let signer = IdentityBundle::from_bytes(&plain[4..end])?;
        let roster = Roster::open(&plain[end..], group, &|id| {
            (*id == signer.keyring_id()).then(|| signer.clone())
        })?;
        self.remember_roster(&roster);
        Ok(Some(roster))
    }

    fn remember_roster(&self, roster: &Roster) {
        if let Ok(mut m) = self.rosters.lock() {
            m.insert(roster.group(), roster.clone());
        }
    }

    fn keep_roster(&self, roster: &Roster) -> Result<(), Error> {
        let signer = self
            .pinned_identity(&roster.signer())?
            .map(Ok)
            .unwrap_or_else(|| {
                // Introduced by the previous roster (fetched and fingerprint-checked).
                let bytes = self
                    .store
                    .get_record(RecordKind::Identity, roster.signer().as_bytes())?
                    .ok_or(Error::UnknownIdentity(roster.signer()))?;
                Ok::<_, Error>(IdentityBundle::from_bytes(&bytes)?)
            })?;
        if signer.fingerprint() != roster.signer_fingerprint() {
            return Err(integrity("roster signer identity changed"));
        }
        let mut plain = Vec::new();
        plain.extend_from_slice(&(signer.as_bytes().len() as u32).to_be_bytes());
        plain.extend_from_slice(signer.as_bytes());
        plain.extend_from_slice(roster.as_bytes());
        let record = seal::seal(
            &mut OsRng,
            self.keyring.key(KeyPurpose::LocalState),
            LOCAL_ROSTER,
            roster.group().as_bytes(),
            &plain,
        );
        self.state
            .put_local(NS_ROSTER, roster.group().as_bytes(), record)?;
        self.remember_roster(roster);
        Ok(())
    }

    /// Fetches the group secrets handed to this user for every epoch up to the roster's
    /// that this device does not hold yet. The secret of the current epoch must match the
    /// roster's exchange key.
    fn fetch_group_secrets(&self, roster: &Roster) -> Result<(), Error> {
        let me = self.keyring.id();
        let group = roster.group();
        for epoch in 1..=roster.epoch() {
            if self
                .state
                .get_local(NS_GROUP_SECRET, &secret_key(&group, epoch))?
                .is_some()
            {
                continue;
            }
            let Some(bytes) = self.store.get_record(
                RecordKind::Envelope,
                &envelope_key(me.as_bytes(), group.as_bytes(), group.as_bytes(), epoch),
            )?
            else {
                continue;
            };
            let grant = Grant {
                purpose: Purpose::GroupSecret,
                owner: *group.as_bytes(),
                target: *group.as_bytes(),
                epoch,
            };
            // Group secrets come from an admin of the group: pinned here, or listed as an
            // admin in the verified roster (then taken from the directory if its fingerprint
            // is the listed one, and pinned).
            let granter = envelope::peek(&bytes)?.granter;
            match roster.member(&granter) {
                Some(m) if m.role == Role::Admin => {
                    self.member_identity(&granter, &m.fingerprint)?;
                }
                _ => {
                    if self.pinned_identity(&granter)?.is_none() {
                        return Err(Error::UnknownIdentity(granter));
                    }
                }
            }
            let payload =
                self.open_envelope(&bytes, &RecipientSecret::user(&self.keyring), &grant)?;
            let secret = GroupSecret::from_payload(group, epoch, &payload)?;
            if epoch == roster.epoch() && secret.public()? != *roster.exchange_key() {
                return Err(integrity("group secret does not match the roster's key"));
            }
            self.keep_group_secret(&secret)?;
        }
        Ok(())
    }

    fn keep_group_secret(&self, secret: &GroupSecret) -> Result<(), Error> {
        let key = secret_key(&secret.group, secret.epoch);
        let record = seal::seal(
            &mut OsRng,
            self.keyring.key(KeyPurpose::LocalState),
            LOCAL_GROUP_SECRET,
            &key,
            &secret.payload(),
        );
        self.state.put_local(NS_GROUP_SECRET, &key, record)
    }

    fn group_secret(&self, group: &GroupId, epoch: u32) -> Result<Option<GroupSecret>, Error> {
        let key = secret_key(group, epoch);
        let Some(record) = self.state.get_local(NS_GROUP_SECRET, &key)? else {
            return Ok(None);
        };
        let payload = seal::open(
            self.keyring.key(KeyPurpose::LocalState),
            LOCAL_GROUP_SECRET,
            &key,
            &record,
        )?;
        GroupSecret::from_payload(*group, epoch, &payload).map(Some)
    }

    /// The groups this device holds at least one secret of.
    pub(crate) fn known_groups(&self) -> Result<Vec<GroupId>, Error> {
        let mut out: Vec<GroupId> = Vec::new();
        for k in self.state.list_local(NS_GROUP_SECRET)? {
            let Some(bytes) = k.get(..16).and_then(|b| <[u8; 16]>::try_from(b).ok()) else {
                continue;
            };
            let g = GroupId::from_bytes(bytes);
            if !out.contains(&g) {
                out.push(g);
            }
        }
        Ok(out)
    }

    /// The secret of `group` whose key has fingerprint `fingerprint`, if this user holds it.
    pub(crate) fn group_secret_by_fingerprint(
        &self,
        group: &GroupId,
        fingerprint: &[u8; 32],
    ) -> Result<Option<GroupSecret>, Error> {
        for k in self.state.list_local(NS_GROUP_SECRET)? {
            if k.len() != 20 || k[..16] != group.as_bytes()[..] {
                continue;
            }
            let epoch = u32::from_be_bytes([k[16], k[17], k[18], k[19]]);
            if let Some(s) = self.group_secret(group, epoch)? {
                if s.fingerprint == *fingerprint {
                    return Ok(Some(s));
                }
            }
        }
        Ok(None)
    }

    fn hand_group_secret(&self, secret: &GroupSecret, to: &IdentityBundle) -> Result<(), Error> {
        let grant = Grant {
            purpose: Purpose::GroupSecret,
            owner: *secret.group.as_bytes(),
            target: *secret.group.as_bytes(),
            epoch: secret.epoch,
        };
        self.hand(
            &RecipientKey::user(to),
            to.keyring_id().as_bytes(),
            &grant,
            &secret.payload(),
        )
    }

    /// The identity of a member listed in a verified roster: the pinned one (which must
    /// carry the listed fingerprint, else [`Error::KeyChanged`]), or the directory's if its
    /// fingerprint is the listed one (then pinned: the roster's admin vouched for it).
    fn member_identity(
        &self,
        id: &KeyringId,
        listed: &vault_keyring::Fingerprint,
    ) -> Result<IdentityBundle, Error> {
        if let Some(pinned) = self.pinned_identity(id)? {
            if pinned.fingerprint() != *listed {
                return Err(Error::KeyChanged {
                    id: *id,
                    pinned: pinned.fingerprint(),
                    offered: *listed,
                });
            }
            return Ok(pinned);
        }
        let bytes = self
            .store
            .get_record(RecordKind::Identity, id.as_bytes())?
            .ok_or(Error::UnknownIdentity(*id))?;
        let bundle = IdentityBundle::from_bytes(&bytes)?;
        if bundle.keyring_id() != *id || bundle.fingerprint() != *listed {
            return Err(integrity("directory identity differs from the roster's"));
        }
        self.pin(&bundle)?;
        Ok(bundle)
    }
}

impl<S: Store> Group<'_, S> {
    /// The group id.
    pub fn id(&self) -> GroupId {
        self.roster.group()
    }

    /// The verified roster.
    pub fn roster(&self) -> &Roster {
        &self.roster
    }

    /// The current key epoch.
    pub fn epoch(&self) -> u32 {
        self.roster.epoch()
    }

    fn require_admin(&self) -> Result<(), Error> {
        if self.roster.is_admin(&self.vault.keyring.id()) {
            Ok(())
        } else {
            Err(Error::NotAdmin)
        }
    }

    fn publish(&mut self, roster: Roster, signed: &[u8]) -> Result<(), Error> {
        if !self.vault.store.insert_record(
            RecordKind::Roster,
            &roster_key(&roster.group(), roster.version()),
            signed,
        )? {
            // Another admin published this version first: re-open the group and retry.
            return Err(Error::Conflict);
        }
        self.vault.keep_roster(&roster)?;
        self.roster = roster;
        Ok(())
    }

    /// Adds `identity` (pinned first: a changed key is [`Error::KeyChanged`]) with `role`,
    /// and hands it the current group secret and the earlier ones this admin holds. Admins
    /// only.
    pub fn add_member(&mut self, identity: &IdentityBundle, role: Role) -> Result<(), Error> {
        self.require_admin()?;
        self.vault.pin(identity)?;
        let v = self.vault;
        let secret = v
            .group_secret(&self.id(), self.epoch())?
            .ok_or(Error::NoAccess)?;
        let (roster, signed) = self.roster.next().add(identity, role).sign(
            &mut OsRng,
            &v.keyring,
            &v.identity,
            now(),
        )?;
        self.publish(roster, &signed)?;
        v.hand_group_secret(&secret, identity)?;
        // The secrets of earlier epochs this admin holds too: collections handed to the group
        // before its last epoch change (and not rotated since) are then readable by the new
        // member, like by every other current member.
        for epoch in 1..self.epoch() {
            if let Some(old) = v.group_secret(&self.id(), epoch)? {
                v.hand_group_secret(&old, identity)?;
            }
        }
        Ok(())
    }

    /// Removes member `id` and starts a new epoch: a fresh group secret handed to every
    /// remaining member. Collections shared with the group rotate their key on their
    /// owner's next write, so the removed member cannot read what is written after.
    pub fn remove_member(&mut self, id: &KeyringId) -> Result<(), Error> {
        self.require_admin()?;
        let v = self.vault;
        let epoch = self
            .epoch()
            .checked_add(1)
            .ok_or(Error::InvalidInput("group epoch exhausted"))?;
        let secret = GroupSecret::generate(&mut OsRng, self.id(), epoch)?;
        let (roster, signed) = self
            .roster
            .next()
            .remove(id)
            .new_epoch(&secret.public()?)
            .sign(&mut OsRng, &v.keyring, &v.identity, now())?;
        // Resolve every remaining member's identity before publishing anything.
        let mut recipients = Vec::new();
        for m in roster.members() {
            recipients.push(v.member_identity(&m.id, &m.fingerprint)?);
        }
        self.publish(roster, &signed)?;
        v.keep_group_secret(&secret)?;
        for identity in &recipients {
            v.hand_group_secret(&secret, identity)?;
        }
        Ok(())
    }

    /// Changes the role of member `id`. Admins only.
    pub fn set_role(&mut self, id: &KeyringId, role: Role) -> Result<(), Error> {
        self.require_admin()?;
        let v = self.vault;
        let (roster, signed) = self.roster.next().set_role(id, role).sign(
            &mut OsRng,
            &v.keyring,
            &v.identity,
            now(),
        )?;
        self.publish(roster, &signed)
    }
}
