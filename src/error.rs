//! The custodian's error type.
//!
//! Every variant carries context — which subject, which purpose, which rule —
//! and never a personal value (R9). The message (`Display`) names the rule,
//! the purpose and the kind, never the subject's id: an id is an identifier,
//! and messages end up in logs. The id is in the variant's fields
//! ([`Error::subject`]); log it as a keyed tag
//! ([`Custodian::subject_tag`](crate::Custodian::subject_tag)).

use crate::audit::AuditError;
use crate::crypto::{EnvelopeError, KeyError, KeyStoreError};
use crate::data::{InvalidData, Kind};
use crate::policy::RuleId;
use crate::purpose::PurposeId;
use crate::subject::SubjectId;
use crate::time::Timestamp;
use crate::transfer::TransferError;

/// Why the custodian refused or could not perform an operation.
///
/// ```
/// use privacy_pledge::{Custodian, Error, SubjectId};
/// use privacy_pledge::purpose::Promotion;
///
/// let custodian = Custodian::in_memory();
/// let subject = SubjectId::random();
/// let err = custodian.consent_proof::<Promotion>(subject).unwrap_err();
/// assert!(matches!(err, Error::NoConsent { purpose: privacy_pledge::purpose::PurposeId::Promotion, .. }));
/// assert_eq!(err.rule(), Some(privacy_pledge::policy::RuleId::R7));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The audit sink failed, so the operation did not happen (R10, fail closed).
    #[error("R10: the audit sink failed, so the operation did not happen: {0}")]
    Audit(#[from] AuditError),

    /// No live consent of this subject for this purpose (R6, R7).
    #[error("R7: the subject has no live consent for {purpose}")]
    NoConsent {
        /// The subject.
        subject: SubjectId,
        /// The consent-based purpose.
        purpose: PurposeId,
    },

    /// The consent proof was minted for another subject or by another custodian (R6).
    #[error("R6: the consent proof for {purpose} does not belong to this subject and custodian")]
    ProofMismatch {
        /// The purpose of the proof.
        purpose: PurposeId,
    },

    /// The subject was erased: its data key is destroyed and its data can no
    /// longer be opened or used (R11).
    #[error("R11: the subject was erased{}", at.map(|t| format!(" at {t}")).unwrap_or_default())]
    Erased {
        /// The subject.
        subject: SubjectId,
        /// When, if known.
        at: Option<Timestamp>,
    },

    /// The data is past the retention period of its purpose (R11).
    #[error("R11: {kind} held for {purpose} expired at {expired_at}")]
    Expired {
        /// The subject.
        subject: SubjectId,
        /// The data kind.
        kind: Kind,
        /// The purpose whose retention period ran out.
        purpose: PurposeId,
        /// When it ran out.
        expired_at: Timestamp,
    },

    /// A collection time later than now was given to `seal_at`: it would
    /// stretch the retention period (R11).
    #[error("R11: a collection time in the future ({collected}) would stretch retention")]
    CollectedInFuture {
        /// The time given.
        collected: Timestamp,
    },

    /// `seal_at` was given a collection time later than the one the value
    /// already carries: re-dating a value would stretch its retention (R11).
    #[error(
        "R11: the value was collected at {known}; a later collection time would stretch retention"
    )]
    CollectedLater {
        /// When the value was collected, as it carries it.
        known: Timestamp,
    },

    /// A transfer or disclosure to a place the policy does not allow (R8).
    #[error(transparent)]
    Transfer(#[from] TransferError),

    /// The recipient is not in the custodian's registry of recipients, or is
    /// registered under another role (R5). Names are organisations, never
    /// personal information.
    #[error("R5: recipient {name:?} is not registered as a {role} with this custodian")]
    UnregisteredRecipient {
        /// The name the recipient gave.
        name: Box<str>,
        /// The role it claimed.
        role: crate::recipient::RoleId,
    },

    /// A consent store holds a row for this subject and purpose that does not
    /// authenticate under the custodian's consent key: written or edited by
    /// someone without the key. Refused (fail closed, R7).
    #[error("R7: the subject's consent row for {purpose} does not authenticate (written or edited without the consent key)")]
    ConsentTampered {
        /// The subject.
        subject: SubjectId,
        /// The purpose.
        purpose: PurposeId,
    },

    /// The consent row of this subject and purpose is not the latest one the
    /// freshness anchor holds: put back to an earlier authentic version,
    /// deleted, or written past the anchor (actor A2). Refused (fail
    /// closed, R7); the anchored row is written back, so the next use
    /// decides on it. See [`crate::freshness`].
    #[error("R7: the subject's consent row for {purpose} is not the latest anchored one (rolled back, deleted or written past the freshness anchor)")]
    ConsentStale {
        /// The subject.
        subject: SubjectId,
        /// The purpose.
        purpose: PurposeId,
    },

    /// The freshness anchor cannot be read or does not verify, so no use
    /// that depends on consent or erasure can be decided (fail closed).
    #[error(transparent)]
    Anchor(crate::freshness::AnchorError),

    /// The consent store failed; consent counts as not given (fail closed).
    #[error(transparent)]
    ConsentStore(#[from] crate::consent::ConsentStoreError),

    /// A consent register that already holds state cannot be restored into
    /// (a restore would merge two histories).
    #[error("R7: the consent register already holds state; restore only into a fresh custodian")]
    RegisterNotEmpty,

    /// The trail could not be trusted for a restore or a report: it does not
    /// verify under the custodian's own audit key against the trusted
    /// checkpoint, or entries past the checkpoint are not vouched for.
    #[error("R10: the audit trail cannot be trusted: {0}")]
    Untrusted(#[from] crate::audit::TrailError),

    /// Host code that the custodian called (an audit sink, key store, key
    /// provider or clock) called back into a custodian operation, or the
    /// custodian was called inside a store's `with_connection` /
    /// `with_client` closure, which holds the connection the custodian's
    /// stores need. Refused instead of deadlocking: such code must not use
    /// the custodian.
    #[error("the custodian was called from a sink, key store, key provider or clock it called, or inside a store's with_connection")]
    Reentrant,

    /// The envelope bytes or text are malformed (a typed parse error).
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),

    /// The envelope failed authentication: it was altered, or it was sealed
    /// under another key, subject, data kind or purpose. Deliberately one
    /// error for all of these, so it tells an attacker nothing.
    #[error("R9: the envelope failed authentication")]
    Unauthentic,

    /// A key problem: unknown key id, retired version, exhausted key.
    #[error(transparent)]
    Key(#[from] KeyError),

    /// The host's key store failed.
    #[error(transparent)]
    KeyStore(#[from] KeyStoreError),

    /// A database store could not be opened, migrated or read
    /// ([`store`](crate::store)).
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),

    /// A value was rejected by its kind's validation.
    #[error(transparent)]
    InvalidData(#[from] InvalidData),

    /// The operating system's random generator failed.
    #[error("the system random generator failed")]
    Random,

    /// A personal record's fields are not all about one subject (R9):
    /// [`Custodian::seal_record`](crate::Custodian::seal_record) found a field
    /// of another subject than the record's, or
    /// [`Custodian::open_record`](crate::Custodian::open_record) found an
    /// envelope sealed for another subject than the one the sealed record
    /// names. Refused before anything is sealed or opened; nothing is audited.
    #[error("R9: field `{field}` is about another subject than the record; a record's fields must all be about one subject")]
    MixedSubjects {
        /// The record's subject.
        expected: SubjectId,
        /// The subject of the offending field.
        found: SubjectId,
        /// The offending field's name.
        field: &'static str,
    },
}

impl Error {
    /// Whether the operation was refused because something the custodian
    /// depends on failed — the audit sink, the key store or the consent
    /// store, or a consent row that does not authenticate (the consent
    /// store's answer cannot be trusted, R7), or a key rotation under way
    /// in another process — rather than because a rule
    /// forbids it. Such a refusal is fail closed (nothing happened) and may
    /// succeed later: a web service answers it with `503 Service
    /// Unavailable` naming [`rule`](Self::rule), the others with a `4xx`.
    ///
    /// ```
    /// use privacy_pledge::audit::{AuditError, AuditEvent, AuditSink};
    /// use privacy_pledge::data::EmailAddress;
    /// use privacy_pledge::purpose::Transaction;
    /// use privacy_pledge::{Custodian, SubjectId};
    ///
    /// struct Down;
    /// impl AuditSink for Down {
    ///     fn record(&self, _: &AuditEvent) -> Result<(), AuditError> {
    ///         Err(AuditError::new("disk full"))
    ///     }
    /// }
    /// let custodian = Custodian::builder().audit(Down).build()?;
    /// let err = custodian
    ///     .collect::<EmailAddress, Transaction>(SubjectId::random(), EmailAddress::parse("ada@example.com")?)
    ///     .unwrap_err();
    /// assert!(err.is_unavailable());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            Error::Audit(_)
                | Error::KeyStore(_)
                | Error::ConsentStore(_)
                | Error::ConsentTampered { .. }
                | Error::ConsentStale { .. }
                | Error::Anchor(_)
                | Error::Key(KeyError::RotationInProgress { .. })
        )
    }

    /// The subject the error is about, where there is one: for the host's
    /// own records. Log it as a keyed tag
    /// ([`Custodian::subject_tag`](crate::Custodian::subject_tag)), not as
    /// the id itself; the error's message never names it.
    ///
    /// ```
    /// use privacy_pledge::{Custodian, SubjectId};
    /// use privacy_pledge::purpose::Promotion;
    ///
    /// let custodian = Custodian::in_memory();
    /// let ada = SubjectId::random();
    /// let err = custodian.consent_proof::<Promotion>(ada).unwrap_err();
    /// assert_eq!(err.subject(), Some(ada));
    /// assert!(!err.to_string().contains(&ada.to_string()));
    /// let line = format!("subject {}: {err}", custodian.subject_tag(ada));
    /// assert!(!line.contains(&ada.to_string()));
    /// ```
    pub fn subject(&self) -> Option<SubjectId> {
        match self {
            Error::NoConsent { subject, .. }
            | Error::Erased { subject, .. }
            | Error::Expired { subject, .. }
            | Error::ConsentTampered { subject, .. }
            | Error::ConsentStale { subject, .. } => Some(*subject),
            Error::MixedSubjects { expected, .. } => Some(*expected),
            Error::Key(KeyError::UnknownKey { subject, .. }) => Some(*subject),
            _ => None,
        }
    }

    /// The rule behind the error, where there is one.
    pub fn rule(&self) -> Option<RuleId> {
        match self {
            Error::Audit(_) => Some(RuleId::R10),
            Error::NoConsent { .. } => Some(RuleId::R7),
            Error::ProofMismatch { .. } => Some(RuleId::R6),
            Error::Erased { .. }
            | Error::Expired { .. }
            | Error::CollectedInFuture { .. }
            | Error::CollectedLater { .. } => Some(RuleId::R11),
            Error::Transfer(_) => Some(RuleId::R8),
            Error::UnregisteredRecipient { .. } => Some(RuleId::R5),
            Error::RegisterNotEmpty
            | Error::ConsentTampered { .. }
            | Error::ConsentStale { .. }
            | Error::ConsentStore(_) => Some(RuleId::R7),
            Error::Anchor(_) => None,
            Error::Untrusted(_) => Some(RuleId::R10),
            Error::Reentrant => None,
            Error::Unauthentic | Error::Envelope(_) | Error::MixedSubjects { .. } => {
                Some(RuleId::R9)
            }
            Error::InvalidData(_) => Some(RuleId::R1),
            Error::Key(_) | Error::KeyStore(_) | Error::Store(_) | Error::Random => None,
        }
    }
}
