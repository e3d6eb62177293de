//! Consent (rules R6, R7): subscriptions and marketing consent, recorded,
//! audited, withdrawable, and checked again at every use.
//!
//! Only the consent-based purposes — [`Newsletter`](crate::purpose::Newsletter)
//! (a subscription), [`Promotion`](crate::purpose::Promotion) and
//! [`Personalization`](crate::purpose::Personalization) — have consent calls;
//! service notices are mandatory and need none. A [`ConsentProof`] is minted
//! only from a live grant, is bound to its subject and custodian, and is
//! re-checked when used, so a proof minted before a withdrawal stops working.
//!
//! ```
//! use privacy_pledge::{Custodian, Error, PersonalInfo, SubjectId};
//! use privacy_pledge::data::EmailAddress;
//! use privacy_pledge::purpose::{Promotion, Transaction};
//!
//! let custodian = Custodian::in_memory();
//! let subject = SubjectId::random();
//! let email: PersonalInfo<EmailAddress, Transaction> =
//!     PersonalInfo::collect(subject, EmailAddress::parse("ada@example.com")?);
//!
//! custodian.consents().grant::<Promotion>(subject)?;
//! let proof = custodian.consent_proof::<Promotion>(subject)?;
//! let promo: PersonalInfo<EmailAddress, Promotion> =
//!     custodian.repurpose_with_consent(email.clone(), &proof)?;
//!
//! custodian.consents().withdraw::<Promotion>(subject)?;
//! assert!(matches!(
//!     custodian.repurpose_with_consent(email, &proof),
//!     Err(Error::NoConsent { .. })
//! ));
//! # drop(promo);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Many processes
//!
//! By default the register lives in the custodian's memory, and a restart
//! rebuilds it from a [`VerifiedTrail`] ([`Consents::restore`]). A service of
//! several processes gives every custodian the same [`ConsentStore`]
//! ([`CustodianBuilder::consent_store`](crate::CustodianBuilder::consent_store),
//! e.g. `SqliteStore::consent_store` with the `sqlite` feature): each change
//! is a durable row authenticated under the custodian's consent key, a
//! withdrawal stops every process within the documented bound, and a restart
//! replays nothing.
//!
//! Consent cannot be recorded for a purpose that needs none:
//!
//! ```compile_fail
//! # use privacy_pledge::{Custodian, SubjectId};
//! use privacy_pledge::purpose::ServiceNotice;
//! let custodian = Custodian::in_memory();
//! custodian.consents().grant::<ServiceNotice>(SubjectId::random()); // R7
//! ```

use core::fmt;
use core::marker::PhantomData;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};

use serde::{Deserialize, Serialize};

use crate::audit::{Action, AuditEvent, Outcome, VerifiedTrail};
use crate::freshness::{Anchor, Entry};
use crate::policy::RuleId;
use crate::purpose::{ConsentBased, PurposeId};
use crate::subject::SubjectId;
use crate::time::Timestamp;
use crate::{Custodian, Error};

/// The state of one subject's consent for one purpose.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsentState {
    /// The purpose.
    pub purpose: PurposeId,
    /// Whether the consent is live.
    pub granted: bool,
    /// When it was last granted or withdrawn.
    pub since: Timestamp,
    /// When it was last withdrawn, if ever. Data collected for the purpose
    /// before this moment stays expired, even after a new grant (R11).
    #[serde(default)]
    pub withdrawn_at: Option<Timestamp>,
    #[serde(skip)]
    epoch: u64,
}

type States = HashMap<(SubjectId, PurposeId), ConsentState>;

/// The custodian's consent register.
///
/// Two locks: `order` serialises changes across the audit call, so the trail
/// and the register change in the same order; `states` is held only to read
/// or to insert, never across host code, so a sink may read consent
/// (`is_granted`) while a change is being recorded.
#[derive(Default)]
pub(crate) struct Register {
    order: Mutex<()>,
    states: RwLock<States>,
    next_epoch: AtomicU64,
    /// With a consent store: the store is the truth, `states` unused.
    durable: Option<Durable>,
}

impl Register {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, States> {
        self.states.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, States> {
        self.states.write().unwrap_or_else(|p| p.into_inner())
    }

    fn next_epoch(&self) -> u64 {
        self.next_epoch.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// A register whose truth is `store` (shared by every process), with
    /// rows authenticated under `key` and cached for at most `bound`.
    pub(crate) fn durable(
        store: Box<dyn ConsentStore>,
        key: &[u8; 32],
        bound: std::time::Duration,
        anchor: std::sync::Arc<Anchor>,
    ) -> Self {
        Register {
            durable: Some(Durable {
                store,
                key: ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key),
                bound,
                cache: RwLock::new(HashMap::with_hasher(crate::subject::SubjectHash::new())),
                anchor,
            }),
            ..Register::default()
        }
    }

    /// The live grant's epoch, if there is one. `Err` if a durable store
    /// cannot be read or holds a row that does not authenticate (fail closed).
    pub(crate) fn live_epoch(
        &self,
        subject: SubjectId,
        purpose: PurposeId,
    ) -> Result<Option<u64>, Error> {
        self.live_epoch_at(subject, purpose, None)
    }

    /// [`live_epoch`](Self::live_epoch), `now` being the system clock read
    /// just now by the caller (for an audit event), if it has one.
    pub(crate) fn live_epoch_at(
        &self,
        subject: SubjectId,
        purpose: PurposeId,
        now: Option<Timestamp>,
    ) -> Result<Option<u64>, Error> {
        Ok(self
            .state_at(subject, purpose, now)?
            .filter(|s| s.granted)
            .map(|s| s.epoch))
    }

    /// The consent state of one subject and purpose.
    pub(crate) fn state(
        &self,
        subject: SubjectId,
        purpose: PurposeId,
    ) -> Result<Option<ConsentState>, Error> {
        self.state_at(subject, purpose, None)
    }

    pub(crate) fn state_at(
        &self,
        subject: SubjectId,
        purpose: PurposeId,
        now: Option<Timestamp>,
    ) -> Result<Option<ConsentState>, Error> {
        match &self.durable {
            Some(d) => d.state(
                subject,
                purpose,
                now.map_or_else(Anchor::now_nanos, Timestamp::unix_nanos),
            ),
            None => Ok(self.read().get(&(subject, purpose)).copied()),
        }
    }

    /// Every consent state recorded for the subject (a row that cannot be
    /// read, or fails its checks, is left out: see [`try_of`](Self::try_of)).
    pub(crate) fn of(&self, subject: SubjectId) -> Vec<ConsentState> {
        if let Some(d) = &self.durable {
            let now = Anchor::now_nanos();
            return PurposeId::ALL
                .into_iter()
                .filter(|p| p.needs_consent())
                .filter_map(|p| d.state(subject, p, now).ok().flatten())
                .collect();
        }
        self.in_memory_of(subject)
    }

    /// Every consent state recorded for the subject, or the first error
    /// reading one (a row edited, deleted or rolled back): for what must
    /// not leave a consent out silently (the subject's report).
    pub(crate) fn try_of(&self, subject: SubjectId) -> Result<Vec<ConsentState>, Error> {
        if let Some(d) = &self.durable {
            let now = Anchor::now_nanos();
            let mut states = Vec::new();
            for p in PurposeId::ALL.into_iter().filter(|p| p.needs_consent()) {
                match d.state(subject, p, now) {
                    Ok(state) => states.extend(state),
                    // An erased subject has no consent left to list.
                    Err(Error::Erased { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
            return Ok(states);
        }
        Ok(self.in_memory_of(subject))
    }

    fn in_memory_of(&self, subject: SubjectId) -> Vec<ConsentState> {
        let states = self.read();
        // Only consent-based purposes are ever recorded: constant work.
        let mut v: Vec<_> = PurposeId::ALL
            .into_iter()
            .filter_map(|p| states.get(&(subject, p)).copied())
            .collect();
        v.sort_by_key(|s| s.purpose);
        v
    }

    /// Forgets everything about the subject (after erasure).
    pub(crate) fn forget(&self, subject: SubjectId) -> Result<(), Error> {
        if let Some(d) = &self.durable {
            return d.forget(subject);
        }
        let mut states = self.write();
        for purpose in PurposeId::ALL.into_iter().filter(|p| p.needs_consent()) {
            states.remove(&(subject, purpose));
        }
        Ok(())
    }

    /// Applies a grant or withdrawal at `at` (after it was recorded).
    fn apply(
        states: &mut States,
        epoch: u64,
        subject: SubjectId,
        purpose: PurposeId,
        granted: bool,
        at: Timestamp,
    ) {
        let withdrawn_at = match states.get(&(subject, purpose)) {
            _ if !granted => Some(at),
            Some(s) => s.withdrawn_at,
            None => None,
        };
        states.insert(
            (subject, purpose),
            ConsentState {
                purpose,
                granted,
                since: at,
                withdrawn_at,
                epoch,
            },
        );
    }

    /// Audits, then records, a change. The `order` lock spans both, so the
    /// audit trail and the register change in the same order; the `states`
    /// lock is taken only for the insert.
    fn change(
        &self,
        custodian: &Custodian,
        subject: SubjectId,
        purpose: PurposeId,
        granted: bool,
    ) -> Result<(), Error> {
        crate::reentry::check()?;
        custodian.check_not_erased(subject)?;
        let _order = self.order.lock().unwrap_or_else(|p| p.into_inner());
        let mut now = custodian.now();
        let action = if granted {
            Action::ConsentGranted
        } else {
            Action::ConsentWithdrawn
        };
        let mut event = AuditEvent::new(now, subject, action, RuleId::R7);
        event.purpose = Some(purpose);
        if let Some(d) = &self.durable {
            // A stored row that does not authenticate, or a store that cannot
            // be read, refuses the change before it is recorded: the trail
            // never says a change happened that the store then refused.
            let current = d.fetch(subject, purpose);
            if let Err(e) = current.and_then(|row| row.map(|r| d.to_state(r)).transpose()) {
                return Err(custodian.deny(event, RuleId::R7, e));
            }
            // Erased by another process sharing the stores: refused as here.
            // The anchor is read to its end first (a consent change is rare;
            // a grant recorded for a subject already erased elsewhere would
            // be an event the anchor then refuses).
            d.anchor.refresh(true)?;
            if let Some(at) = custodian.erased_at(subject)? {
                let e = Error::Erased {
                    subject,
                    at: Some(at),
                };
                return Err(custodian.deny(event, RuleId::R11, e));
            }
        }
        // A change is stamped after the change it follows, whatever this
        // process's clock says: the trail and the anchor order changes of
        // one consent by time, so a withdrawal made on a clock behind the
        // grant's (another host's, or this one's after a step back) must
        // not sort before the grant and be overruled by it.
        //
        // A grant that follows a withdrawal goes further, to a later whole
        // second than the withdrawal: values collected under the grant are
        // dated at it (`Custodian::collection_stamp`), and an envelope keeps
        // that date in whole seconds, which must still come after the
        // withdrawal for the value to count as collected since.
        let last = match &self.durable {
            Some(d) => d
                .anchor
                .consent_in_view(subject, purpose)
                .map(|c| (c.since, c.granted)),
            None => self
                .read()
                .get(&(subject, purpose))
                .map(|s| (s.since, s.granted)),
        };
        if let Some((last, was_granted)) = last {
            let floor = if granted && !was_granted {
                let second = 1_000_000_000;
                (last.unix_nanos() / second)
                    .saturating_add(1)
                    .saturating_mul(second)
            } else {
                last.unix_nanos().saturating_add(1)
            };
            if now.unix_nanos() < floor {
                now = Timestamp::from_unix_nanos(floor);
                event.time = now;
            }
        }
        custodian.record(event)?;
        if let Some(d) = &self.durable {
            d.change(subject, purpose, granted, now)?;
            // An erasure in another process may have forgotten the
            // subject's rows just before this one landed: a consent row
            // never outlives its subject. (Its `erasing` was anchored before
            // it forgot anything, so reading the anchor to its end now sees
            // it.)
            d.anchor.refresh(true)?;
            if let Some(at) = custodian.erased_at(subject)? {
                d.forget(subject)?;
                return Err(Error::Erased {
                    subject,
                    at: Some(at),
                });
            }
            return Ok(());
        }
        let epoch = self.next_epoch();
        Self::apply(&mut self.write(), epoch, subject, purpose, granted, now);
        Ok(())
    }
}

/// Consent calls of a custodian: `custodian.consents().grant::<Promotion>(subject)`.
pub struct Consents<'a> {
    pub(crate) custodian: &'a Custodian,
}

impl Consents<'_> {
    /// Records the subject's consent (for `Newsletter`: a subscription).
    /// Audited first; if the audit sink fails, nothing is recorded.
    pub fn grant<P: ConsentBased>(&self, subject: SubjectId) -> Result<(), Error> {
        self.custodian
            .consents
            .change(self.custodian, subject, P::ID, true)
    }

    /// Withdraws the subject's consent. Takes effect for every later check,
    /// including proofs minted before; data collected for `P` before the
    /// withdrawal stays expired even if consent is given again later, held
    /// in memory as much as sealed. Audited first.
    ///
    /// A change is stamped no earlier than just after the last change of
    /// the same consent the custodian knows of (on a consent store, the
    /// one the freshness anchor holds), so a process whose clock is behind
    /// another's, or was set back, still withdraws a grant made there: the
    /// trail orders changes by time, and its order is the one that holds.
    pub fn withdraw<P: ConsentBased>(&self, subject: SubjectId) -> Result<(), Error> {
        self.custodian
            .consents
            .change(self.custodian, subject, P::ID, false)
    }

    /// Whether the subject's consent for `P` is live (`false` too if a
    /// consent store cannot be read or its row does not authenticate).
    pub fn is_granted<P: ConsentBased>(&self, subject: SubjectId) -> bool {
        matches!(
            self.custodian.consents.live_epoch(subject, P::ID),
            Ok(Some(_))
        )
    }

    /// Every consent recorded for the subject, live or withdrawn.
    pub fn of(&self, subject: SubjectId) -> Vec<ConsentState> {
        self.custodian.consents.of(subject)
    }

    /// Rebuilds the register from the consent events of a verified trail,
    /// e.g. after a restart. Returns how many events were replayed.
    ///
    /// The only input is a [`VerifiedTrail`]: the trail verified under this
    /// custodian's **own** audit key against **trusted checkpoints** kept
    /// outside the database ([`Custodian::verify_trail`], which takes them
    /// from the custodian's checkpoint store, never from its caller). So
    /// consent cannot come from events a host built or edited (R7, R10), and
    /// a trail cut short or rolled back — which would bring a withdrawn
    /// consent back — does not verify. Events are replayed in event order
    /// (each stream in its own sequence, streams merged by time), never in
    /// the storage's row order, which an operator can renumber. In addition
    /// the restore is refused
    ///
    /// - with [`TrailError::Unvouched`](crate::audit::TrailError::Unvouched)
    ///   if entries follow a stream's newest checkpoint (whoever writes the
    ///   storage could have cut a withdrawal from them): checkpoint after
    ///   every consent change, or at least at every clean shutdown
    ///   ([`Custodian::sign_checkpoint`]), and with
    ///   [`TrailError::CallerChosenCheckpoint`](crate::audit::TrailError::CallerChosenCheckpoint)
    ///   for a trail verified against a checkpoint its caller chose;
    /// - with [`TrailError::Archived`](crate::audit::TrailError::Archived)
    ///   if entries were archived before the trail's (`archive`, behind an
    ///   archive base): the trail then verifies, but a withdrawal or an
    ///   erasure in the archive would be missed and a consent come back. A
    ///   host that archives its trail keeps consent in a consent store;
    /// - with [`TrailError::AmbiguousOrder`](crate::audit::TrailError::AmbiguousOrder)
    ///   if two streams change one subject's consent at the same instant;
    /// - with [`Error::RegisterNotEmpty`] if this custodian already holds
    ///   consent state (a restore never merges two histories);
    /// - for a trail another custodian verified.
    ///
    /// The restore is itself an audit event (`consent_restored`), recorded
    /// before it takes effect.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use privacy_pledge::{Custodian, SubjectId};
    /// use privacy_pledge::crypto::Keyring;
    /// use privacy_pledge::purpose::Newsletter;
    /// use privacy_pledge::audit::MemoryCheckpointStore;
    ///
    /// let keyring = Arc::new(Keyring::generate()?);
    /// // Kept outside the database (a `DirCheckpointStore` in a real host).
    /// let checkpoints = MemoryCheckpointStore::new();
    /// let before = Custodian::builder()
    ///     .keyring(keyring.clone())
    ///     .checkpoint_store(checkpoints.clone())
    ///     .build()?;
    /// let ada = SubjectId::random();
    /// before.consents().grant::<Newsletter>(ada)?;
    /// // The head at clean shutdown, signed into the checkpoint store.
    /// before.sign_checkpoint()?;
    /// let events = before.builtin_audit_log().unwrap().inner().events();
    ///
    /// // After a restart: a custodian with the same keys and checkpoint store.
    /// let after = Custodian::builder()
    ///     .keyring(keyring.clone())
    ///     .checkpoint_store(checkpoints)
    ///     .build()?;
    /// let trail = after.verify_trail(events)?;
    /// assert_eq!(after.consents().restore(&trail)?, 1);
    /// assert!(after.consents().is_granted::<Newsletter>(ada));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn restore(&self, trail: &VerifiedTrail) -> Result<usize, Error> {
        crate::reentry::check()?;
        trail.check_owner(self.custodian.id)?;
        trail.check_fully_vouched()?;
        trail.check_whole()?;
        trail.check_unambiguous_consent_order()?;
        let register = &self.custodian.consents;
        let _order = register.order.lock().unwrap_or_else(|p| p.into_inner());
        // With a consent store, consent is durable and shared: nothing to
        // rebuild, and nothing may be merged into it.
        if register.durable.is_some() || !register.read().is_empty() {
            return Err(Error::RegisterNotEmpty);
        }
        let mut rebuilt = States::new();
        let mut replayed = 0;
        for e in trail.events() {
            if e.outcome() != Outcome::Allowed {
                continue;
            }
            let granted = match e.action() {
                Action::ConsentGranted => true,
                Action::ConsentWithdrawn => false,
                Action::Erase => {
                    let gone = e.subject();
                    rebuilt.retain(|(s, _), _| *s != gone);
                    continue;
                }
                _ => continue,
            };
            let Some(purpose) = e.purpose().filter(|p| p.needs_consent()) else {
                continue;
            };
            let epoch = register.next_epoch();
            Register::apply(&mut rebuilt, epoch, e.subject(), purpose, granted, e.time());
            replayed += 1;
        }
        let event = AuditEvent::new(
            self.custodian.now(),
            SubjectId::from_bytes([0; 16]),
            Action::ConsentRestored,
            RuleId::R7,
        );
        self.custodian.record(event)?;
        *register.write() = rebuilt;
        Ok(replayed)
    }
}

/// Proof that a subject's consent for `P` was live when it was minted.
///
/// Minted only by [`Custodian::consent_proof`]; private fields, no `Clone`, no
/// `Deserialize`. Bound to its subject and to the custodian that minted it,
/// and checked against the register again when used.
pub struct ConsentProof<P: ConsentBased> {
    subject: SubjectId,
    epoch: u64,
    custodian: u64,
    purpose: PhantomData<fn() -> P>,
}

impl<P: ConsentBased> ConsentProof<P> {
    pub(crate) fn new(subject: SubjectId, epoch: u64, custodian: u64) -> Self {
        ConsentProof {
            subject,
            epoch,
            custodian,
            purpose: PhantomData,
        }
    }

    /// The subject who consented.
    pub fn subject(&self) -> SubjectId {
        self.subject
    }

    /// Checks that the proof is for this subject and custodian, and that the
    /// same grant is still live.
    pub(crate) fn check(&self, custodian: &Custodian, subject: SubjectId) -> Result<(), Error> {
        if self.subject != subject || self.custodian != custodian.id {
            return Err(Error::ProofMismatch { purpose: P::ID });
        }
        match custodian.consents.live_epoch(subject, P::ID)? {
            Some(e) if e == self.epoch => Ok(()),
            _ => Err(Error::NoConsent {
                subject,
                purpose: P::ID,
            }),
        }
    }
}

impl<P: ConsentBased> fmt::Debug for ConsentProof<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ConsentProof<{}>(subject {})",
            P::ID,
            self.subject.short()
        )
    }
}

// ---------------------------------------------------------------------------
// The durable consent store

/// One subject's consent for one purpose as a consent store keeps it: the
/// state, a version that grows by one with every change, and a MAC under
/// the custodian's consent key over all of it.
///
/// A store only keeps rows; the custodian makes them and checks them. A row
/// written or edited by anyone without the key (the database operator, A2)
/// does not authenticate and is refused at use ([`Error::ConsentTampered`]),
/// so no one can make a consent live by writing a row. Putting back an
/// *older* row that did authenticate (a rollback) is what
/// [`cross_check`] finds against the verified trail.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsentRecord {
    /// The subject.
    pub subject: SubjectId,
    /// The purpose.
    pub purpose: PurposeId,
    /// Whether the consent is live.
    pub granted: bool,
    /// When it was last granted or withdrawn.
    pub since: Timestamp,
    /// When it was last withdrawn, if ever.
    pub withdrawn_at: Option<Timestamp>,
    /// 1 for the first row of the subject and purpose, one more per change.
    pub version: u64,
    /// HMAC-SHA-256 over the fields above.
    #[serde(with = "crate::audit::event::hex32")]
    pub mac: [u8; 32],
}

impl ConsentRecord {
    fn message(&self) -> [u8; 59] {
        let mut m = [0u8; 59];
        m[..8].copy_from_slice(b"pp-cns1\0");
        m[8..24].copy_from_slice(self.subject.as_bytes());
        m[24] = self.purpose.code();
        m[25] = u8::from(self.granted);
        m[26..34].copy_from_slice(&self.since.unix_nanos().to_be_bytes());
        m[34] = u8::from(self.withdrawn_at.is_some());
        m[35..43].copy_from_slice(
            &self
                .withdrawn_at
                .map_or(0, |t| t.unix_nanos())
                .to_be_bytes(),
        );
        m[43..51].copy_from_slice(&self.version.to_be_bytes());
        m[51..59].copy_from_slice(&[0; 8]);
        m
    }

    fn sign(mut self, key: &ring::hmac::Key) -> Self {
        let tag = ring::hmac::sign(key, &self.message());
        self.mac.copy_from_slice(tag.as_ref());
        self
    }

    fn authentic(&self, key: &ring::hmac::Key) -> bool {
        ring::hmac::verify(key, &self.message(), &self.mac).is_ok()
    }
}

/// A consent store failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("consent store failed: {0}")]
pub struct ConsentStoreError(pub std::borrow::Cow<'static, str>);

/// Where consent lives when several processes share it: durable rows, one
/// per subject and purpose, that every custodian of the service reads and
/// writes. Implemented by the stores of [`crate::store`]; hosts may
/// implement it over their own database.
///
/// With a consent store a withdrawal takes effect at once in the process
/// that made it and in every other process within the custodian's bound
/// ([`CustodianBuilder::consent_store`](crate::CustodianBuilder::consent_store)),
/// and a restart needs no replay of the trail.
pub trait ConsentStore: Send + Sync {
    /// The row of `subject` and `purpose`, if any.
    fn load(
        &self,
        subject: SubjectId,
        purpose: PurposeId,
    ) -> Result<Option<ConsentRecord>, ConsentStoreError>;

    /// Stores `record` unless the stored row of its subject and purpose
    /// already has `record.version` or a later one, atomically (check and
    /// write in one transaction); `Ok(false)` if it kept the stored row.
    ///
    /// Versions may skip: the custodian numbers rows after the freshness
    /// anchor ([`crate::freshness`]), and writes the anchored row back over
    /// an earlier one it finds.
    fn store(&self, record: &ConsentRecord) -> Result<bool, ConsentStoreError>;

    /// Deletes every row of the subject (after erasure).
    fn forget(&self, subject: SubjectId) -> Result<(), ConsentStoreError>;

    /// Every row, for [`cross_check`].
    fn all(&self) -> Result<Vec<ConsentRecord>, ConsentStoreError>;
}

impl<C: ConsentStore + ?Sized> ConsentStore for std::sync::Arc<C> {
    fn load(
        &self,
        subject: SubjectId,
        purpose: PurposeId,
    ) -> Result<Option<ConsentRecord>, ConsentStoreError> {
        (**self).load(subject, purpose)
    }
    fn store(&self, record: &ConsentRecord) -> Result<bool, ConsentStoreError> {
        (**self).store(record)
    }
    fn forget(&self, subject: SubjectId) -> Result<(), ConsentStoreError> {
        (**self).forget(subject)
    }
    fn all(&self) -> Result<Vec<ConsentRecord>, ConsentStoreError> {
        (**self).all()
    }
}

/// The durable half of the register: the store, the key, the freshness
/// anchor, and a cache of rows read, each trusted for at most `bound`.
pub(crate) struct Durable {
    store: Box<dyn ConsentStore>,
    key: ring::hmac::Key,
    bound: std::time::Duration,
    cache: RwLock<HashMap<(SubjectId, PurposeId), Cached, crate::subject::SubjectHash>>,
    anchor: std::sync::Arc<Anchor>,
}

/// A row as last read (`None`: no row); when (the system clock, Unix
/// nanoseconds: see [`Anchor`] for why not `Instant`); and the anchor's
/// generation at which it was found equal to the anchored row (0: not yet).
type Cached = (Option<ConsentRecord>, u64, u64);

/// The state a row records (its MAC checked before, or equal to an
/// anchored row).
fn state_of(r: ConsentRecord) -> ConsentState {
    ConsentState {
        purpose: r.purpose,
        granted: r.granted,
        since: r.since,
        withdrawn_at: r.withdrawn_at,
        epoch: r.version,
    }
}

fn store_error(e: ConsentStoreError) -> Error {
    Error::ConsentStore(e)
}

impl Durable {
    fn to_state(&self, r: ConsentRecord) -> Result<ConsentState, Error> {
        if !r.authentic(&self.key) {
            return Err(Error::ConsentTampered {
                subject: r.subject,
                purpose: r.purpose,
            });
        }
        Ok(state_of(r))
    }

    /// Reads the row from the store (host code) and checks that it is the
    /// row of this subject and purpose.
    pub(crate) fn fetch(
        &self,
        subject: SubjectId,
        purpose: PurposeId,
    ) -> Result<Option<ConsentRecord>, Error> {
        // Inside a store's `with_connection` the consent store may need the
        // very connection held: refused, not waited for.
        crate::reentry::check_connection()?;
        let row =
            crate::reentry::host(|| self.store.load(subject, purpose)).map_err(store_error)?;
        if let Some(r) = row {
            if r.subject != subject || r.purpose != purpose {
                return Err(Error::ConsentTampered { subject, purpose });
            }
        }
        Ok(row)
    }

    /// The stored row, refused if it does not authenticate.
    fn fetch_authentic(
        &self,
        subject: SubjectId,
        purpose: PurposeId,
    ) -> Result<Option<ConsentRecord>, Error> {
        let row = self.fetch(subject, purpose)?;
        if let Some(r) = row.filter(|r| !r.authentic(&self.key)) {
            return Err(Error::ConsentTampered {
                subject: r.subject,
                purpose: r.purpose,
            });
        }
        Ok(row)
    }

    fn remember(&self, key: (SubjectId, PurposeId), cached: Cached) {
        self.cache
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, cached);
    }

    /// The consent state, decided by a row that authenticates **and** equals
    /// the latest anchored row (see [`crate::freshness`]).
    /// `now`: the system clock (Unix nanoseconds), read just now.
    fn state(
        &self,
        subject: SubjectId,
        purpose: PurposeId,
        now: u64,
    ) -> Result<Option<ConsentState>, Error> {
        let key = (subject, purpose);
        let bound = u64::try_from(self.bound.as_nanos()).unwrap_or(u64::MAX);
        let cached = self
            .cache
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
            // Read within the bound, by a clock that did not go back.
            .filter(|(_, at, _)| now >= *at && now - at < bound)
            .copied();
        let generation = self.anchor.generation_at(false, now)?;
        if let Some((row, read_at, seen)) = cached {
            // Found equal to the anchored row, and the anchor has taken in
            // nothing since: still equal.
            if seen == generation {
                return Ok(row.map(state_of));
            }
            if row == self.anchor.consent_in_view(subject, purpose) {
                // Equal to an anchored row: authentic (only the custodian's
                // key makes anchored rows), so no MAC to check again. Its
                // read time is kept: the row is read again at the bound.
                self.remember(key, (row, read_at, generation));
                return Ok(row.map(state_of));
            }
        }
        // Not cached, or the row or this process's view of the anchor is
        // behind: read both again before deciding.
        let mut row = self.fetch_authentic(subject, purpose)?;
        let (mut anchored, mut generation) = match self.anchor.consent_in_view(subject, purpose) {
            a if a == row => (a, generation),
            _ => self.anchor.consent_at(subject, purpose, true, now)?,
        };
        // A row behind the anchor may be a change another process has
        // anchored and is writing at this moment (anchor first, then row):
        // read both again for a moment (at most 63 ms) before calling it
        // rolled back.
        let mut pause = std::time::Duration::from_millis(1);
        while row != anchored && pause <= std::time::Duration::from_millis(32) {
            // Erased by another process since this one last looked (its
            // rows forgotten): that, not a rollback.
            self.erased(subject)?;
            std::thread::sleep(pause);
            pause *= 2;
            row = self.fetch_authentic(subject, purpose)?;
            (anchored, generation) =
                self.anchor
                    .consent_at(subject, purpose, true, Anchor::now_nanos())?;
        }
        if row != anchored {
            self.cache
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&key);
            self.erased(subject)?;
            // A rolled-back or deleted row: refused, and the anchored row
            // written back (a store keeps the later version of two) —
            // unless an erasure elsewhere forgot the subject's rows
            // meanwhile: then forgotten again.
            if let Some(a) = anchored {
                let _ = crate::reentry::host(|| self.store.store(&a));
                self.anchor.refresh(true)?;
                self.erased(subject)
                    .or_else(|e| self.forget(subject).and(Err(e)))?;
            }
            return Err(Error::ConsentStale { subject, purpose });
        }
        self.remember(key, (row, now, generation));
        Ok(row.map(state_of))
    }

    /// Anchors the change, then writes its row. Another process may change
    /// the same consent at the same moment: the anchor orders the two.
    fn change(
        &self,
        subject: SubjectId,
        purpose: PurposeId,
        granted: bool,
        at: Timestamp,
    ) -> Result<(), Error> {
        // A row from before the anchor held this consent (or one put back
        // by the operator) only raises the version, so the new row replaces
        // it; its state counts only where the anchor has none.
        let row = self
            .fetch(subject, purpose)?
            .map(|r| self.to_state(r).map(|_| r))
            .transpose()?;
        let mut decided = None;
        self.anchor.append(|anchored| {
            if let Some(e) = anchored.erasure(subject) {
                return Err(Error::Erased {
                    subject,
                    at: Some(e.at),
                });
            }
            let current = anchored.consent(subject, purpose);
            if let Some(later) = current.filter(|c| c.since > at) {
                // Another process recorded a later change of this consent
                // and anchored it first: it supersedes this one, as the trail
                // orders them (by time).
                decided = Some(later);
                return Ok(None);
            }
            let version = current
                .map_or(0, |c| c.version)
                .max(row.map_or(0, |r| r.version))
                + 1;
            let withdrawn_at = if granted {
                current.or(row).and_then(|c| c.withdrawn_at)
            } else {
                Some(at)
            };
            let record = ConsentRecord {
                subject,
                purpose,
                granted,
                since: at,
                withdrawn_at,
                version,
                mac: [0; 32],
            }
            .sign(&self.key);
            decided = Some(record);
            Ok(Some(Entry::Consent(record)))
        })?;
        let Some(record) = decided else {
            return Err(Error::ConsentStore(ConsentStoreError(
                "the anchor decided nothing".into(),
            )));
        };
        // Anchored: from here the change holds in every process, whatever
        // happens to the row. A store keeps the later version of two.
        crate::reentry::host(|| self.store.store(&record)).map_err(store_error)?;
        // Found equal to the anchored row at no generation yet: the next
        // use compares it with the view once.
        self.remember((subject, purpose), (Some(record), Anchor::now_nanos(), 0));
        Ok(())
    }

    /// `Err(Erased)` if the anchor as last read holds the subject's erasure.
    fn erased(&self, subject: SubjectId) -> Result<(), Error> {
        match self.anchor.erased_at(subject, None)? {
            Some(at) => Err(Error::Erased {
                subject,
                at: Some(at),
            }),
            None => Ok(()),
        }
    }

    fn forget(&self, subject: SubjectId) -> Result<(), Error> {
        crate::reentry::host(|| self.store.forget(subject)).map_err(store_error)?;
        let mut cache = self.cache.write().unwrap_or_else(|p| p.into_inner());
        for p in PurposeId::ALL {
            cache.remove(&(subject, p));
        }
        Ok(())
    }
}

/// A [`ConsentStore`] in memory: for tests and examples, and to play the
/// database operator (A2) in them ([`put_back`](Self::put_back)).
///
/// ```
/// use privacy_pledge::consent::{ConsentStore, MemoryConsentStore};
/// let rows = MemoryConsentStore::new();
/// assert!(rows.all()?.is_empty());
/// # Ok::<(), privacy_pledge::consent::ConsentStoreError>(())
/// ```
#[derive(Debug, Default)]
pub struct MemoryConsentStore {
    rows: Mutex<HashMap<(SubjectId, PurposeId), ConsentRecord>>,
}

impl MemoryConsentStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn rows(&self) -> std::sync::MutexGuard<'_, HashMap<(SubjectId, PurposeId), ConsentRecord>> {
        self.rows.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Puts `record` in place whatever is stored: what a database operator
    /// can do to a table (a rollback to an earlier authentic row).
    pub fn put_back(&self, record: ConsentRecord) {
        self.rows().insert((record.subject, record.purpose), record);
    }

    /// Deletes the row of `subject` and `purpose`, as an operator can.
    pub fn delete(&self, subject: SubjectId, purpose: PurposeId) {
        self.rows().remove(&(subject, purpose));
    }
}

impl ConsentStore for MemoryConsentStore {
    fn load(
        &self,
        subject: SubjectId,
        purpose: PurposeId,
    ) -> Result<Option<ConsentRecord>, ConsentStoreError> {
        Ok(self.rows().get(&(subject, purpose)).copied())
    }

    fn store(&self, record: &ConsentRecord) -> Result<bool, ConsentStoreError> {
        let mut rows = self.rows();
        let key = (record.subject, record.purpose);
        if rows.get(&key).is_some_and(|r| r.version >= record.version) {
            return Ok(false);
        }
        rows.insert(key, *record);
        Ok(true)
    }

    fn forget(&self, subject: SubjectId) -> Result<(), ConsentStoreError> {
        self.rows().retain(|(s, _), _| *s != subject);
        Ok(())
    }

    fn all(&self) -> Result<Vec<ConsentRecord>, ConsentStoreError> {
        let mut all: Vec<_> = self.rows().values().copied().collect();
        all.sort_by_key(|r| (r.subject, r.purpose));
        Ok(all)
    }
}

/// A consent row that disagrees with the verified trail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConsentMismatch {
    /// The subject.
    pub subject: SubjectId,
    /// The purpose.
    pub purpose: PurposeId,
    /// What the trail's last consent event says (`None`: no event).
    pub trail_granted: Option<bool>,
    /// What the row says (`None`: no row).
    pub row_granted: Option<bool>,
}

/// Cross-checks a consent store's rows against a verified trail: for every
/// subject and purpose, the row must say what the trail's latest consent
/// event says, and bear its time. A row rolled back to an earlier (still
/// authentic) state, a row deleted while the trail says granted, and a row
/// with no event behind it are all reported. An erasure in the trail clears
/// its subject for good: no row of an erased subject may remain, whatever
/// consent event the trail holds for it.
pub fn cross_check(rows: &[ConsentRecord], trail: &[AuditEvent]) -> Vec<ConsentMismatch> {
    use crate::audit::Outcome;
    let mut last: HashMap<(SubjectId, PurposeId), (bool, Timestamp)> = HashMap::new();
    let mut events: Vec<&AuditEvent> = trail
        .iter()
        .filter(|e| e.outcome() == Outcome::Allowed)
        .collect();
    // An erasure is final: a subject is never used again after it, so a
    // consent event of an erased subject (one recorded by another process
    // while the erasure was being anchored, which the anchor then refused)
    // leaves no row, whatever its time.
    let erased: std::collections::HashSet<SubjectId> = events
        .iter()
        .filter(|e| e.action() == Action::Erase)
        .map(|e| e.subject())
        .collect();
    events.sort_by_key(|e| e.time());
    for e in events {
        match e.action() {
            Action::ConsentGranted | Action::ConsentWithdrawn if erased.contains(&e.subject()) => {}
            Action::ConsentGranted | Action::ConsentWithdrawn => {
                if let Some(p) = e.purpose() {
                    last.insert(
                        (e.subject(), p),
                        (e.action() == Action::ConsentGranted, e.time()),
                    );
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for r in rows {
        seen.insert((r.subject, r.purpose));
        let expected = last.get(&(r.subject, r.purpose));
        if expected != Some(&(r.granted, r.since)) {
            out.push(ConsentMismatch {
                subject: r.subject,
                purpose: r.purpose,
                trail_granted: expected.map(|e| e.0),
                row_granted: Some(r.granted),
            });
        }
    }
    for ((subject, purpose), (granted, _)) in last {
        if granted && !seen.contains(&(subject, purpose)) {
            out.push(ConsentMismatch {
                subject,
                purpose,
                trail_granted: Some(true),
                row_granted: None,
            });
        }
    }
    out
}
