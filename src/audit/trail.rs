//! [`VerifiedTrail`]: an audit trail that verified under a custodian's own
//! key against checkpoints kept outside the trail's storage.
//!
//! Restoring consent and writing a subject's report both read the trail. A
//! trail is only bytes from the host's storage, and an `AuditEvent` can be
//! deserialized from bytes anyone made up, so these operations take a
//! `VerifiedTrail` — a type only the custodian's two verifiers produce:
//! [`Custodian::verify_trail`](crate::Custodian::verify_trail) (one chain,
//! against a trusted checkpoint) and
//! [`Custodian::verify_stream_trail`](crate::Custodian::verify_stream_trail)
//! (the streams of several processes, each against its newest signed
//! checkpoint) — never a plain list of events:
//!
//! - it verifies under the custodian's **own** audit key (the caller does not
//!   pass one, so a trail chained under a key the caller made up fails);
//! - it must reach a **trusted checkpoint** (kept outside the database), so a
//!   trail cut short or rolled back to an earlier prefix fails; a stream
//!   that [`verify_stream_trail`](crate::Custodian::verify_stream_trail) finds
//!   without a signed checkpoint verifies but is not vouched for
//!   ([`VerifiedTrail::is_fully_vouched`]), and a consent restore refuses
//!   such a trail;
//! - it is bound to the custodian that verified it.
//!
//! ```
//! use privacy_pledge::{Custodian, SubjectId};
//! use privacy_pledge::purpose::Newsletter;
//!
//! let custodian = Custodian::in_memory();
//! let ada = SubjectId::random();
//! custodian.consents().grant::<Newsletter>(ada)?;
//!
//! let log = custodian.builtin_audit_log().unwrap();
//! let trail = custodian.verify_trail(log.inner().events(), &log.checkpoint())?;
//! assert_eq!(trail.events().len(), 1);
//! assert!(trail.is_fully_vouched());
//! # Ok::<(), privacy_pledge::Error>(())
//! ```

use super::{verify, AuditEvent, AuditKey, Checkpoint, VerifyError};

/// Why a trail is not trusted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TrailError {
    /// The custodian was built with no audit key of its own (a key provider
    /// without a keyring and no `audit_key`), so it cannot verify anything.
    #[error("the custodian has no audit key to verify the trail with")]
    NoKey,
    /// The chain is broken (or was chained under another key).
    #[error(transparent)]
    Broken(#[from] VerifyError),
    /// Entries after the trusted checkpoint are authentic but not vouched
    /// for: whoever can write the storage could have cut some of them.
    #[error("entries {after} to {head} come after the trusted checkpoint (seq {after}) and are not vouched for; checkpoint them first")]
    UnvouchedTail {
        /// The checkpoint's sequence number.
        after: u64,
        /// The trail's last sequence number.
        head: u64,
    },
    /// The trail was verified by another custodian.
    #[error("the trail was verified by another custodian")]
    OtherCustodian,
    /// A signed checkpoint does not verify under the custodian's checkpoint key.
    #[error("a signed checkpoint does not verify under this custodian's key")]
    BadCheckpoint,
}

/// An audit trail verified under a custodian's own key against trusted
/// checkpoints. Made only by
/// [`Custodian::verify_trail`](crate::Custodian::verify_trail) (one chain)
/// and [`Custodian::verify_stream_trail`](crate::Custodian::verify_stream_trail)
/// (many streams, against signed checkpoints); no `Deserialize`, private
/// fields.
#[derive(Clone, Debug)]
pub struct VerifiedTrail {
    events: Vec<AuditEvent>,
    head: Checkpoint,
    vouched: Checkpoint,
    all_vouched: bool,
    custodian: u64,
}

impl VerifiedTrail {
    pub(crate) fn verify(
        events: Vec<AuditEvent>,
        key: &AuditKey,
        trusted: &Checkpoint,
        custodian: u64,
    ) -> Result<Self, TrailError> {
        let head = verify(&events, key, Some(trusted))?;
        Ok(VerifiedTrail {
            events,
            head,
            vouched: *trusted,
            all_vouched: head == *trusted,
            custodian,
        })
    }

    /// A trail of many streams: every stream verifies under `key`, against
    /// its newest signed checkpoint if there is one (each checkpoint must
    /// verify under `public`).
    pub(crate) fn verify_streams(
        events: Vec<AuditEvent>,
        key: &AuditKey,
        public: &super::CheckpointKey,
        signed: &[super::SignedCheckpoint],
        custodian: u64,
    ) -> Result<Self, TrailError> {
        let trusted = signed
            .iter()
            .map(|c| c.verify(public).map_err(|_| TrailError::BadCheckpoint))
            .collect::<Result<Vec<_>, _>>()?;
        let reports = super::verify_streams(&events, key, &trusted);
        let mut all_vouched = true;
        let (mut head, mut vouched) = (Checkpoint::GENESIS, Checkpoint::GENESIS);
        for r in &reports {
            let h = r.result.map_err(TrailError::Broken)?;
            // The stream's newest trusted checkpoint.
            let v = trusted
                .iter()
                .filter(|(s, _)| Some(*s) == r.stream)
                .map(|(_, c)| *c)
                .max_by_key(Checkpoint::seq);
            all_vouched &= v == Some(h);
            head = h;
            vouched = v.unwrap_or(Checkpoint::GENESIS);
        }
        Ok(VerifiedTrail {
            events,
            head,
            vouched,
            all_vouched,
            custodian,
        })
    }

    /// The events, in chain order.
    pub fn events(&self) -> &[AuditEvent] {
        &self.events
    }

    /// The head of the verified chain (for a trail of streams, of the last
    /// stream).
    pub fn head(&self) -> Checkpoint {
        self.head
    }

    /// The trusted checkpoint the trail was verified against.
    pub fn vouched_through(&self) -> Checkpoint {
        self.vouched
    }

    /// Whether trusted checkpoints vouch for every entry (no entries after
    /// them that could have been cut undetected), in every stream.
    pub fn is_fully_vouched(&self) -> bool {
        self.all_vouched
    }

    /// `Ok` if this custodian verified the trail.
    pub(crate) fn check_owner(&self, custodian: u64) -> Result<(), TrailError> {
        if self.custodian == custodian {
            Ok(())
        } else {
            Err(TrailError::OtherCustodian)
        }
    }

    /// `Ok` if no entry lies past the trusted checkpoint.
    pub(crate) fn check_fully_vouched(&self) -> Result<(), TrailError> {
        if self.is_fully_vouched() {
            Ok(())
        } else {
            Err(TrailError::UnvouchedTail {
                after: self.vouched.seq(),
                head: self.head.seq(),
            })
        }
    }
}
