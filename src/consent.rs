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

    /// The live grant's epoch, if there is one.
    pub(crate) fn live_epoch(&self, subject: SubjectId, purpose: PurposeId) -> Option<u64> {
        self.read()
            .get(&(subject, purpose))
            .filter(|s| s.granted)
            .map(|s| s.epoch)
    }

    /// The consent state of one subject and purpose.
    pub(crate) fn state(&self, subject: SubjectId, purpose: PurposeId) -> Option<ConsentState> {
        self.read().get(&(subject, purpose)).copied()
    }

    /// Every consent state recorded for the subject.
    pub(crate) fn of(&self, subject: SubjectId) -> Vec<ConsentState> {
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
    pub(crate) fn forget(&self, subject: SubjectId) {
        let mut states = self.write();
        for purpose in PurposeId::ALL.into_iter().filter(|p| p.needs_consent()) {
            states.remove(&(subject, purpose));
        }
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
        let now = custodian.now();
        let action = if granted {
            Action::ConsentGranted
        } else {
            Action::ConsentWithdrawn
        };
        let mut event = AuditEvent::new(now, subject, action, RuleId::R7);
        event.purpose = Some(purpose);
        custodian.record(&event)?;
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
    /// withdrawal stays expired even if consent is given again later.
    /// Audited first.
    pub fn withdraw<P: ConsentBased>(&self, subject: SubjectId) -> Result<(), Error> {
        self.custodian
            .consents
            .change(self.custodian, subject, P::ID, false)
    }

    /// Whether the subject's consent for `P` is live.
    pub fn is_granted<P: ConsentBased>(&self, subject: SubjectId) -> bool {
        self.custodian.consents.live_epoch(subject, P::ID).is_some()
    }

    /// Every consent recorded for the subject, live or withdrawn.
    pub fn of(&self, subject: SubjectId) -> Vec<ConsentState> {
        self.custodian.consents.of(subject)
    }

    /// Rebuilds the register from the consent events of a verified trail,
    /// e.g. after a restart. Returns how many events were replayed.
    ///
    /// The only input is a [`VerifiedTrail`]: the trail verified under this
    /// custodian's **own** audit key against a **trusted checkpoint** kept
    /// outside the database ([`Custodian::verify_trail`]). So consent cannot
    /// come from events a host built or edited (R7, R10), and a trail cut
    /// short or rolled back — which would bring a withdrawn consent back —
    /// does not verify. In addition the restore is refused
    ///
    /// - with [`TrailError::UnvouchedTail`](crate::audit::TrailError::UnvouchedTail)
    ///   if entries follow the checkpoint (whoever writes the storage could
    ///   have cut a withdrawal from them): checkpoint after every consent
    ///   change, or at least at every clean shutdown;
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
    ///
    /// let keyring = Arc::new(Keyring::generate()?);
    /// let before = Custodian::builder().keyring(keyring.clone()).build()?;
    /// let ada = SubjectId::random();
    /// before.consents().grant::<Newsletter>(ada)?;
    /// let log = before.builtin_audit_log().unwrap();
    /// // Kept outside the database: the head at clean shutdown.
    /// let (events, checkpoint) = (log.inner().events(), log.checkpoint());
    ///
    /// // After a restart: a custodian with the same keys (a real host also
    /// // resumes the chain over its storage, `ChainedAuditLog::resume`).
    /// let after = Custodian::builder().keyring(keyring.clone()).build()?;
    /// let trail = after.verify_trail(events, &checkpoint)?;
    /// assert_eq!(after.consents().restore(&trail)?, 1);
    /// assert!(after.consents().is_granted::<Newsletter>(ada));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn restore(&self, trail: &VerifiedTrail) -> Result<usize, Error> {
        crate::reentry::check()?;
        trail.check_owner(self.custodian.id)?;
        trail.check_fully_vouched()?;
        let register = &self.custodian.consents;
        let _order = register.order.lock().unwrap_or_else(|p| p.into_inner());
        if !register.read().is_empty() {
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
        self.custodian.record(&event)?;
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
        match custodian.consents.live_epoch(subject, P::ID) {
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
