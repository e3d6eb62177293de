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
use std::sync::RwLock;

use serde::{Deserialize, Serialize};

use crate::audit::{verify, Action, AuditEvent, AuditKey, VerifyError};
use crate::policy::RuleId;
use crate::purpose::{ConsentBased, PurposeId};
use crate::subject::SubjectId;
use crate::time::Timestamp;
use crate::{Custodian, Error};

/// The state of one subject's consent for one purpose.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsentState {
    /// The purpose.
    pub purpose: PurposeId,
    /// Whether the consent is live.
    pub granted: bool,
    /// When it was last granted or withdrawn.
    pub since: Timestamp,
    #[serde(skip)]
    epoch: u64,
}

/// The custodian's consent register.
#[derive(Default)]
pub(crate) struct Register {
    states: RwLock<HashMap<(SubjectId, PurposeId), ConsentState>>,
    next_epoch: std::sync::atomic::AtomicU64,
}

impl Register {
    fn read(
        &self,
    ) -> std::sync::RwLockReadGuard<'_, HashMap<(SubjectId, PurposeId), ConsentState>> {
        self.states.read().unwrap_or_else(|p| p.into_inner())
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
        let mut v: Vec<_> = self
            .read()
            .iter()
            .filter(|((s, _), _)| *s == subject)
            .map(|(_, st)| *st)
            .collect();
        v.sort_by_key(|s| s.purpose);
        v
    }

    /// Forgets everything about the subject (after erasure).
    pub(crate) fn forget(&self, subject: SubjectId) {
        let mut states = self.states.write().unwrap_or_else(|p| p.into_inner());
        // Only consent-based purposes are ever recorded: constant work.
        for purpose in PurposeId::ALL.into_iter().filter(|p| p.needs_consent()) {
            states.remove(&(subject, purpose));
        }
    }

    /// Audits, then records, a change — under the write lock, so the audit
    /// trail and the register change in the same order.
    fn change(
        &self,
        custodian: &Custodian,
        subject: SubjectId,
        purpose: PurposeId,
        granted: bool,
    ) -> Result<(), Error> {
        custodian.check_not_erased(subject)?;
        let mut states = self.states.write().unwrap_or_else(|p| p.into_inner());
        let now = custodian.now();
        let action = if granted {
            Action::ConsentGranted
        } else {
            Action::ConsentWithdrawn
        };
        let mut event = AuditEvent::new(now, subject, action, RuleId::R7);
        event.purpose = Some(purpose);
        custodian.record(&event)?;
        let epoch = self
            .next_epoch
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1;
        states.insert(
            (subject, purpose),
            ConsentState {
                purpose,
                granted,
                since: now,
                epoch,
            },
        );
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
    /// including proofs minted before. Audited first.
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

    /// Rebuilds the register from the consent events of an audit trail, e.g.
    /// after a restart. Events are replayed in order; they are not recorded
    /// again. Returns how many were replayed.
    ///
    /// The trail must verify as a whole chain under `key`: consent can be
    /// restored only from events the custodian itself recorded, never from
    /// events a host built or edited (that would be consent without a record,
    /// R7, R10). Nothing is restored from a broken trail.
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
    /// let trail = before.builtin_audit_log().unwrap().inner().events();
    ///
    /// let after = Custodian::builder().keyring(keyring.clone()).build()?;
    /// assert_eq!(after.consents().restore(&trail, &keyring.audit_key())?, 1);
    /// assert!(after.consents().is_granted::<Newsletter>(ada));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn restore(&self, trail: &[AuditEvent], key: &AuditKey) -> Result<usize, VerifyError> {
        verify(trail, key, None)?;
        let register = &self.custodian.consents;
        let mut states = register.states.write().unwrap_or_else(|p| p.into_inner());
        let mut replayed = 0;
        for e in trail {
            let granted = match e.action() {
                Action::ConsentGranted => true,
                Action::ConsentWithdrawn => false,
                Action::Erase if e.outcome() == crate::audit::Outcome::Allowed => {
                    let gone = e.subject();
                    states.retain(|(s, _), _| *s != gone);
                    continue;
                }
                _ => continue,
            };
            let Some(purpose) = e.purpose().filter(|p| p.needs_consent()) else {
                continue;
            };
            if e.outcome() != crate::audit::Outcome::Allowed {
                continue;
            }
            let epoch = register
                .next_epoch
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                + 1;
            states.insert(
                (e.subject(), purpose),
                ConsentState {
                    purpose,
                    granted,
                    since: e.time(),
                    epoch,
                },
            );
            replayed += 1;
        }
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
