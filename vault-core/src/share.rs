//! Sharing without trusting the server (docs/spec/handover.md; THREATS C2–C4, C20, C21):
//! pinned identities, collection keys handed by signed envelopes, key epochs and rotation.

use std::collections::BTreeMap;

use rand_core::OsRng;
use vault_keyring::envelope::{self, Grant, Method, Purpose, RecipientKey, RecipientSecret};
use vault_keyring::seal::{self, Context};
use vault_keyring::{Fingerprint, IdentityBundle, KeyPurpose, KeyringId, SymmetricKey};

use crate::error::{integrity, Error};
use crate::ids::{CollectionId, GroupId, VaultId};
use crate::manifest::{Share, ShareKind};
use crate::store::{RecordKind, Store, Verified};
use crate::vault::{Collection, Vault};

/// Local-state namespace of pinned identities (key: keyring id).
pub(crate) const NS_PIN: u8 = 1;
const LOCAL_PIN: Context = Context::new("vault/v1/local/pin");

/// What [`Vault::pin`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pinned {
    /// First time this device sees this keyring id: the identity is now pinned (trust on
    /// first use). Compare fingerprints or safety numbers out of band to be sure.
    New,
    /// The identity matches the one pinned before.
    Known,
}

/// A collection shared with this user (directly or through a group), as found in the store
/// and verified: the envelope's signature checks against a pinned identity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Incoming {
    /// The vault the collection belongs to (open it with [`Vault::shared_collection`]).
    pub owner: VaultId,
    /// The collection.
    pub collection: CollectionId,
    /// Who handed it.
    pub granter: KeyringId,
    /// The group it came through, if any.
    pub via_group: Option<GroupId>,
}

/// The key of an envelope record: recipient || owner || target || u32 epoch.
pub(crate) fn envelope_key(
    recipient: &[u8; 16],
    owner: &[u8; 16],
    target: &[u8; 16],
    epoch: u32,
) -> Vec<u8> {
    let mut k = Vec::with_capacity(52);
    k.extend_from_slice(recipient);
    k.extend_from_slice(owner);
    k.extend_from_slice(target);
    k.extend_from_slice(&epoch.to_be_bytes());
    k
}

fn key_from_payload(payload: &[u8]) -> Result<SymmetricKey, Error> {
    crate::keys::symmetric_key(payload, "collection key payload")
}

impl<S: Store> Vault<S> {
    /// Chooses the handover path for users: `true` hands keys by RSA-4096 OAEP to every
    /// recipient whose identity publishes an RSA-4096 exchange key (others, and groups, still
    /// get HPKE P-256); `false` (the default) always uses HPKE (docs/spec/handover.md §2).
    pub fn set_rsa_handover(&self, on: bool) {
        self.rsa_handover
            .store(on, std::sync::atomic::Ordering::Relaxed);
    }

    /// Publishes this user's identity bundle in the store (the server's directory), so that
    /// others can fetch it. They pin its fingerprint; the store cannot substitute it
    /// unnoticed.
    pub fn publish_identity(&self) -> Result<(), Error> {
        self.store.put_record(
            RecordKind::Identity,
            self.keyring.id().as_bytes(),
            self.identity.as_bytes(),
        )?;
        Ok(())
    }

    /// Fetches the identity of `id` from the store, verifies its self-signature and pins it:
    /// the first time (trust on first use) it is pinned; afterwards it must match, else
    /// [`Error::KeyChanged`]. Compare [`Vault::safety_number`] out of band to close the
    /// first-use gap.
    pub fn fetch_identity(&self, id: KeyringId) -> Result<IdentityBundle, Error> {
        let bytes = self
            .store
            .get_record(RecordKind::Identity, id.as_bytes())?
            .ok_or(Error::UnknownIdentity(id))?;
        let bundle = IdentityBundle::from_bytes(&bytes)?;
        if bundle.keyring_id() != id {
            return Err(integrity(
                "directory returned the identity of another keyring",
            ));
        }
        self.pin(&bundle)?;
        Ok(bundle)
    }

    /// Pins `identity` (already self-signature-verified by decoding): [`Pinned::New`] the
    /// first time, [`Pinned::Known`] if it matches, [`Error::KeyChanged`] if another key is
    /// pinned for the same keyring id — nothing is handed to a changed key until the user
    /// accepts it with [`Vault::accept_key_change`] (THREATS C2, C3, I4).
    pub fn pin(&self, identity: &IdentityBundle) -> Result<Pinned, Error> {
        let id = identity.keyring_id();
        if id == self.keyring.id() {
            return if identity.fingerprint() == self.identity.fingerprint() {
                Ok(Pinned::Known)
            } else {
                Err(Error::KeyChanged {
                    id,
                    pinned: self.identity.fingerprint(),
                    offered: identity.fingerprint(),
                })
            };
        }
        match self.pinned_identity(&id)? {
            Some(pinned) if pinned.fingerprint() == identity.fingerprint() => Ok(Pinned::Known),
            Some(pinned) => Err(Error::KeyChanged {
                id,
                pinned: pinned.fingerprint(),
                offered: identity.fingerprint(),
            }),
            None => {
                self.store_pin(identity)?;
                Ok(Pinned::New)
            }
        }
    }

    /// The user's explicit decision after comparing fingerprints: replace the pinned key of
    /// `identity`'s keyring id with `identity`. `confirmed` is the fingerprint the user
    /// compared; it must be `identity`'s.
    pub fn accept_key_change(
        &self,
        identity: &IdentityBundle,
        confirmed: &Fingerprint,
    ) -> Result<(), Error> {
        if identity.fingerprint() != *confirmed {
            return Err(Error::InvalidInput(
                "the confirmed fingerprint is not the offered identity's",
            ));
        }
        if identity.keyring_id() == self.keyring.id() {
            return Err(Error::InvalidInput(
                "cannot re-pin this vault's own identity",
            ));
        }
        self.store_pin(identity)
    }

    /// The fingerprint pinned for `id`, if any.
    pub fn pinned_fingerprint(&self, id: &KeyringId) -> Result<Option<Fingerprint>, Error> {
        Ok(self.pinned_identity(id)?.map(|b| b.fingerprint()))
    }

    /// The safety number of this user and `other`: the same 60 digits on both sides when
    /// each holds the other's genuine key. Read it aloud or compare it in person.
    pub fn safety_number(&self, other: &IdentityBundle) -> String {
        Fingerprint::pair_safety_number(&self.identity.fingerprint(), &other.fingerprint())
    }

    fn store_pin(&self, identity: &IdentityBundle) -> Result<(), Error> {
        let id = identity.keyring_id();
        let record = seal::seal(
            &mut OsRng,
            self.keyring.key(KeyPurpose::LocalState),
            LOCAL_PIN,
            id.as_bytes(),
            identity.as_bytes(),
        );
        self.state.put_local(NS_PIN, id.as_bytes(), record)?;
        // A re-pinned key replaces the writer identity remembered for this id.
        self.trust_writer(identity.clone());
        Ok(())
    }

    /// The identity pinned on this device for `id` (this vault's own for its own id).
    pub fn pinned_identity(&self, id: &KeyringId) -> Result<Option<IdentityBundle>, Error> {
        if *id == self.keyring.id() {
            return Ok(Some(self.identity.clone()));
        }
        let Some(record) = self.state.get_local(NS_PIN, id.as_bytes())? else {
            return Ok(None);
        };
        let bytes = seal::open(
            self.keyring.key(KeyPurpose::LocalState),
            LOCAL_PIN,
            id.as_bytes(),
            &record,
        )?;
        let bundle = IdentityBundle::from_bytes(&bytes)?;
        if bundle.keyring_id() != *id {
            return Err(integrity("pinned identity under another id"));
        }
        Ok(Some(bundle))
    }

    /// The pinned identity of `id`, or [`Error::UnknownIdentity`].
    pub(crate) fn require_pinned(&self, id: &KeyringId) -> Result<IdentityBundle, Error> {
        self.pinned_identity(id)?.ok_or(Error::UnknownIdentity(*id))
    }

    /// Opens an envelope record: the granter must be pinned; the grant must be `expected`.
    pub(crate) fn open_envelope(
        &self,
        bytes: &[u8],
        me: &RecipientSecret<'_>,
        expected: &Grant,
    ) -> Result<zeroize::Zeroizing<Vec<u8>>, Error> {
        let info = envelope::peek(bytes)?;
        let granter = self.require_pinned(&info.granter)?;
        Ok(envelope::open(bytes, &granter, me, expected)?)
    }

    /// Seals and stores an envelope handing `payload` to `recipient` for `grant`.
    pub(crate) fn hand(
        &self,
        recipient: &RecipientKey<'_>,
        recipient_id: &[u8; 16],
        grant: &Grant,
        payload: &[u8],
    ) -> Result<(), Error> {
        let method = if self.rsa_handover.load(std::sync::atomic::Ordering::Relaxed)
            && recipient.has_rsa()
        {
            Method::RsaOaep
        } else {
            Method::Hpke
        };
        let bytes = envelope::seal(
            &mut OsRng,
            &self.keyring,
            recipient,
            grant,
            method,
            payload,
            crate::vault::now(),
        )?;
        self.store.put_record(
            RecordKind::Envelope,
            &envelope_key(recipient_id, &grant.owner, &grant.target, grant.epoch),
            &bytes,
        )?;
        Ok(())
    }

    /// The collection key of `epoch`, from whatever this user can open: the owner's own
    /// wrapping, an envelope addressed to this user, or one addressed to a group this user
    /// holds the secret of. `None` if the store has none of them.
    pub(crate) fn load_epoch_key(
        &self,
        owner: &VaultId,
        collection: &CollectionId,
        epoch: u32,
    ) -> Result<Option<SymmetricKey>, Error> {
        if *owner == self.id {
            if let Some(ck) = self.load_own_key(collection, epoch)? {
                return Ok(Some(ck));
            }
        }
        let grant = Grant {
            purpose: Purpose::CollectionKey,
            owner: *owner.as_bytes(),
            target: *collection.as_bytes(),
            epoch,
        };
        let me = self.keyring.id();
        let key = envelope_key(
            me.as_bytes(),
            owner.as_bytes(),
            collection.as_bytes(),
            epoch,
        );
        if let Some(bytes) = self.store.get_record(RecordKind::Envelope, &key)? {
            self.check_collection_granter(&bytes, owner)?;
            let payload =
                self.open_envelope(&bytes, &RecipientSecret::user(&self.keyring), &grant)?;
            let ck = key_from_payload(&payload)?;
            self.store.verified(Verified::Envelope {
                key: &key,
                sealed: &bytes,
            });
            return Ok(Some(ck));
        }
        for group in self.known_groups()? {
            let key = envelope_key(
                group.as_bytes(),
                owner.as_bytes(),
                collection.as_bytes(),
                epoch,
            );
            let Some(bytes) = self.store.get_record(RecordKind::Envelope, &key)? else {
                continue;
            };
            self.check_collection_granter(&bytes, owner)?;
            let info = envelope::peek(&bytes)?;
            let secret = match self.group_secret_by_fingerprint(&group, &info.recipient_key)? {
                Some(s) => s,
                None => {
                    // Perhaps a newer group epoch: verify the roster chain and fetch the
                    // secrets handed since, then look again.
                    self.sync_roster(&group)?;
                    match self.group_secret_by_fingerprint(&group, &info.recipient_key)? {
                        Some(s) => s,
                        // Handed to a group epoch this user never held (removed, or added
                        // after the last rotation).
                        None => continue,
                    }
                }
            };
            let payload = self.open_envelope(&bytes, &secret.recipient(), &grant)?;
            let ck = key_from_payload(&payload)?;
            self.store.verified(Verified::Envelope {
                key: &key,
                sealed: &bytes,
            });
            return Ok(Some(ck));
        }
        Ok(None)
    }

    /// A collection key is only accepted from the collection's owner: a contact who once
    /// held a key cannot hand out keys of their own choosing for someone else's collection.
    /// Checked on the (still unauthenticated) header before anything is opened; the
    /// signature check in `open_envelope` then proves it.
    fn check_collection_granter(
        &self,
        envelope_bytes: &[u8],
        owner: &VaultId,
    ) -> Result<(), Error> {
        let info = envelope::peek(envelope_bytes)?;
        if info.granter.as_bytes() != owner.as_bytes() {
            return Err(integrity(
                "collection key handed by someone other than the owner",
            ));
        }
        Ok(())
    }

    /// Every collection key of `collection` this user can open, from epoch 1 up to the first
    /// epoch it cannot (epochs are consecutive).
    pub(crate) fn load_collection_keys(
        &self,
        owner: &VaultId,
        collection: &CollectionId,
    ) -> Result<BTreeMap<u32, SymmetricKey>, Error> {
        let mut keys = BTreeMap::new();
        let mut epoch = 1u32;
        while let Some(ck) = self.load_epoch_key(owner, collection, epoch)? {
            keys.insert(epoch, ck);
            epoch = epoch
                .checked_add(1)
                .ok_or(Error::InvalidInput("key epoch overflow"))?;
        }
        Ok(keys)
    }

    /// The collections shared with this user, directly or through a group this user holds
    /// the current secret of, whose envelopes verify against pinned identities. Envelopes
    /// from identities not pinned here are skipped (fetch and pin the granter first).
    pub fn incoming(&self) -> Result<Vec<Incoming>, Error> {
        let mut out: Vec<Incoming> = Vec::new();
        let mut recipients: Vec<([u8; 16], Option<GroupId>)> =
            vec![(*self.keyring.id().as_bytes(), None)];
        for g in self.groups()? {
            // Verify the roster chain and fetch the group secrets handed to this user; a
            // group that does not verify (e.g. its creator is not pinned here) is skipped.
            if self.sync_roster(&g).is_ok() {
                recipients.push((*g.as_bytes(), Some(g)));
            }
        }
        for (recipient, via_group) in recipients {
            for key in self.store.list_records(RecordKind::Envelope, &recipient)? {
                let Some(bytes) = self.store.get_record(RecordKind::Envelope, &key)? else {
                    continue;
                };
                let Ok(info) = envelope::peek(&bytes) else {
                    continue;
                };
                if info.grant.purpose != Purpose::CollectionKey
                    || info.granter.as_bytes() != &info.grant.owner
                {
                    continue;
                }
                let secret_holder;
                let me = match via_group {
                    None => RecipientSecret::user(&self.keyring),
                    Some(g) => match self.group_secret_by_fingerprint(&g, &info.recipient_key)? {
                        Some(s) => {
                            secret_holder = s;
                            secret_holder.recipient()
                        }
                        None => continue,
                    },
                };
                if self.open_envelope(&bytes, &me, &info.grant).is_err() {
                    continue;
                }
                let item = Incoming {
                    owner: VaultId::from_bytes(info.grant.owner),
                    collection: CollectionId::from_bytes(info.grant.target),
                    granter: info.granter,
                    via_group,
                };
                if !out.contains(&item) {
                    out.push(item);
                }
            }
        }
        Ok(out)
    }
}

impl<S: Store> Collection<'_, S> {
    /// Whom the collection's current key is handed to besides its owner.
    pub fn shares(&self) -> &[Share] {
        &self.manifest.shares
    }

    fn require_owner(&self) -> Result<(), Error> {
        if self.owner.as_bytes() != self.vault.keyring.id().as_bytes() {
            return Err(Error::InvalidInput(
                "only the collection's owner can share it or rotate its key",
            ));
        }
        Ok(())
    }

    fn grant(&self, epoch: u32) -> Grant {
        Grant {
            purpose: Purpose::CollectionKey,
            owner: *self.owner.as_bytes(),
            target: *self.id.as_bytes(),
            epoch,
        }
    }

    /// Hands every key epoch of the collection to `identity` (pinned first: a changed key is
    /// [`Error::KeyChanged`] and nothing is handed) and records the share in the signed
    /// manifest, so later rotations include this user. Only the owner shares.
    pub fn share_with(&mut self, identity: &IdentityBundle) -> Result<(), Error> {
        self.require_owner()?;
        self.vault.pin(identity)?;
        let recipient = RecipientKey::user(identity);
        let id = *identity.keyring_id().as_bytes();
        for (epoch, ck) in &self.keys {
            self.vault
                .hand(&recipient, &id, &self.grant(*epoch), ck.expose_bytes())?;
        }
        let mut next = self.manifest.clone();
        next.shares
            .retain(|s| !(s.kind == ShareKind::User && s.id == id));
        next.shares.push(Share {
            kind: ShareKind::User,
            id,
            key_fingerprint: *identity.fingerprint().as_bytes(),
            group_epoch: 0,
        });
        next.shares.sort();
        self.commit_manifest(next, BTreeMap::new())
    }

    /// Hands every key epoch of the collection to the current key of `group` (whose roster
    /// this device verifies) and records the share: every current member can read it, and
    /// a member removal makes the next write rotate the key.
    pub fn share_with_group(&mut self, group: GroupId) -> Result<(), Error> {
        self.require_owner()?;
        let roster = self.vault.sync_roster(&group)?;
        let exchange = *roster.exchange_key();
        let fp = crate::group::group_key_fingerprint(&group, roster.epoch(), &exchange);
        let recipient = RecipientKey::group(*group.as_bytes(), fp, exchange);
        for (epoch, ck) in &self.keys {
            self.vault.hand(
                &recipient,
                group.as_bytes(),
                &self.grant(*epoch),
                ck.expose_bytes(),
            )?;
        }
        let mut next = self.manifest.clone();
        next.shares
            .retain(|s| !(s.kind == ShareKind::Group && s.id == *group.as_bytes()));
        next.shares.push(Share {
            kind: ShareKind::Group,
            id: *group.as_bytes(),
            key_fingerprint: fp,
            group_epoch: roster.epoch(),
        });
        next.shares.sort();
        self.commit_manifest(next, BTreeMap::new())
    }

    /// Stops sharing with user `id`: removes the share and rotates the key, so objects
    /// written from now on are unreadable to them (what they could read before stays
    /// readable to them: it was theirs to copy).
    pub fn unshare(&mut self, id: &KeyringId) -> Result<(), Error> {
        self.require_owner()?;
        let before = self.manifest.shares.len();
        let mut next = self.manifest.clone();
        next.shares
            .retain(|s| !(s.kind == ShareKind::User && s.id == *id.as_bytes()));
        if next.shares.len() == before {
            return Err(Error::NotFound);
        }
        self.rotate_with(next)
    }

    /// Starts a new key epoch: a fresh collection key, wrapped for the owner and handed to
    /// every share (users at their pinned key, groups at their current epoch key). Objects
    /// written before keep their epoch; new ones use the new key.
    pub fn rotate_key(&mut self) -> Result<(), Error> {
        self.require_owner()?;
        let next = self.manifest.clone();
        self.rotate_with(next)
    }

    fn rotate_with(&mut self, mut next: crate::manifest::Manifest) -> Result<(), Error> {
        let epoch = self
            .write_epoch()
            .checked_add(1)
            .ok_or(Error::InvalidInput("key epoch overflow"))?;
        let ck = SymmetricKey::generate(&mut OsRng);
        let grant = self.grant(epoch);
        let mut shares = Vec::with_capacity(next.shares.len());
        for share in &next.shares {
            match share.kind {
                ShareKind::User => {
                    let kid = KeyringId::from_bytes(share.id);
                    let identity = self.vault.require_pinned(&kid)?;
                    if identity.fingerprint().as_bytes() != &share.key_fingerprint {
                        return Err(Error::KeyChanged {
                            id: kid,
                            pinned: identity.fingerprint(),
                            offered: Fingerprint::from_bytes(share.key_fingerprint),
                        });
                    }
                    self.vault.hand(
                        &RecipientKey::user(&identity),
                        &share.id,
                        &grant,
                        ck.expose_bytes(),
                    )?;
                    shares.push(*share);
                }
                ShareKind::Group => {
                    let gid = GroupId::from_bytes(share.id);
                    let roster = self.vault.sync_roster(&gid)?;
                    let exchange = *roster.exchange_key();
                    let fp = crate::group::group_key_fingerprint(&gid, roster.epoch(), &exchange);
                    // The new key goes to the group's current key; so do the old epochs, so
                    // that members who joined since can read the history too.
                    let recipient = RecipientKey::group(share.id, fp, exchange);
                    if roster.epoch() != share.group_epoch {
                        for (e, old) in &self.keys {
                            self.vault.hand(
                                &recipient,
                                &share.id,
                                &self.grant(*e),
                                old.expose_bytes(),
                            )?;
                        }
                    }
                    self.vault
                        .hand(&recipient, &share.id, &grant, ck.expose_bytes())?;
                    shares.push(Share {
                        kind: ShareKind::Group,
                        id: share.id,
                        key_fingerprint: fp,
                        group_epoch: roster.epoch(),
                    });
                }
            }
        }
        self.vault.store_own_key(&self.id, epoch, &ck)?;
        self.keys.insert(epoch, ck);
        next.shares = shares;
        self.commit_manifest(next, BTreeMap::new())
    }

    /// Before a write: if a group this collection is shared with moved to a new epoch (a
    /// member was removed), the owner rotates the key first, so the removed member cannot
    /// read what is written next (THREATS C18). A writer who is not the owner cannot rotate
    /// and is refused until the owner has.
    pub(crate) fn enforce_group_epochs(&mut self) -> Result<(), Error> {
        let mut stale = false;
        for share in &self.manifest.shares {
            if share.kind != ShareKind::Group {
                continue;
            }
            let roster = self.vault.sync_roster(&GroupId::from_bytes(share.id))?;
            if roster.epoch() != share.group_epoch {
                stale = true;
            }
        }
        if !stale {
            return Ok(());
        }
        if self.require_owner().is_err() {
            return Err(Error::RotationPending);
        }
        self.rotate_key()
    }
}
