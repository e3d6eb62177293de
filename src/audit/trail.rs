//! [`VerifiedTrail`]: an audit trail that verified under a custodian's own
//! key against checkpoints the caller could not choose.
//!
//! Restoring consent and writing a subject's report both read the trail. A
//! trail is only bytes from the host's storage, and an `AuditEvent` can be
//! deserialized from bytes anyone made up, so these operations take a
//! `VerifiedTrail` — a type only the custodian's verifiers produce, never a
//! plain list of events:
//!
//! - it verifies under the custodian's **own** audit key (the caller does not
//!   pass one, so a trail chained under a key the caller made up fails);
//! - [`Custodian::verify_trail`](crate::Custodian::verify_trail) takes its
//!   **trusted checkpoints** from where the caller cannot choose them: the
//!   custodian's configured checkpoint store (each signature verified under
//!   the checkpoint key, derived from the keyring or pinned), and the head
//!   of the custodian's own built-in log. So a trail cut short or rolled
//!   back to an earlier prefix fails, and entries no checkpoint vouches for
//!   are counted ([`VerifiedTrail::unvouched`]); a consent restore refuses
//!   such a trail and a subject report says so;
//! - a checkpoint the caller picks (one can be built from any entry's
//!   public fields) is taken only by
//!   [`Custodian::verify_trail_unverified`](crate::Custodian::verify_trail_unverified),
//!   whose trail vouches for nothing ([`VerifiedTrail::is_fully_vouched`]
//!   is `false`);
//! - its events stand in event order — each stream in its own sequence,
//!   streams merged by the events' times — never in the storage's row
//!   order, which an operator can renumber;
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
//! let trail = custodian.verify_trail(log.inner().events())?;
//! assert_eq!(trail.events().len(), 1);
//! assert!(trail.is_fully_vouched());
//! # Ok::<(), privacy_pledge::Error>(())
//! ```

use super::{verify, AuditEvent, AuditKey, Checkpoint, StreamId, VerifyError};

/// Why a trail is not trusted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TrailError {
    /// The custodian was built with no audit key of its own (a key provider
    /// without a keyring and no `audit_key`), so it cannot verify anything.
    #[error("the custodian has no audit key to verify the trail with")]
    NoKey,
    /// The chain is broken (or was chained under another key), or a stream
    /// starts after seq 1 with no archive base before it.
    #[error(transparent)]
    Broken(#[from] VerifyError),
    /// Entries after the trusted checkpoint are authentic but not vouched
    /// for: whoever can write the storage could have cut some of them. Kept
    /// for hosts that match on it; restores now report
    /// [`Unvouched`](Self::Unvouched), which counts such entries over all
    /// streams.
    #[error("entries {after} to {head} come after the trusted checkpoint (seq {after}) and are not vouched for; checkpoint them first")]
    UnvouchedTail {
        /// The checkpoint's sequence number.
        after: u64,
        /// The trail's last sequence number.
        head: u64,
    },
    /// Entries no checkpoint from the custodian's checkpoint store (or its
    /// own built-in log) vouches for, over all streams.
    #[error(
        "{entries} entries are not vouched for by a trusted checkpoint; checkpoint them first"
    )]
    Unvouched {
        /// How many.
        entries: u64,
    },
    /// The trail was verified against a checkpoint its caller chose
    /// ([`Custodian::verify_trail_unverified`](crate::Custodian::verify_trail_unverified)):
    /// it vouches for nothing.
    #[error(
        "the trail was verified against a checkpoint its caller chose; it vouches for nothing"
    )]
    CallerChosenCheckpoint,
    /// Two streams hold consent or erasure events of one subject at the
    /// same instant: which came last cannot be told, so the consent state
    /// cannot be rebuilt.
    #[error("two streams record a consent change of one subject at the same instant; the order is ambiguous")]
    AmbiguousOrder,
    /// The trail was verified by another custodian.
    #[error("the trail was verified by another custodian")]
    OtherCustodian,
    /// The trail starts after entries archived behind an archive base: a
    /// state rebuilt from it ([`Consents::restore`](crate::consent::Consents::restore))
    /// would miss what they hold — a withdrawal, an erasure — and bring a
    /// consent back. Keep consent in a consent store
    /// ([`CustodianBuilder::consent_store`](crate::CustodianBuilder::consent_store))
    /// where the trail is archived.
    #[error("{entries} entries of the trail are archived; a consent state rebuilt without them could be wrong")]
    Archived {
        /// How many entries, over all streams, the archive bases stand for.
        entries: u64,
    },
    /// A signed checkpoint does not verify under the custodian's checkpoint key.
    #[error("a signed checkpoint does not verify under this custodian's key")]
    BadCheckpoint,
    /// The checkpoint store could not be read, or
    /// [`Custodian::sign_checkpoint`](crate::Custodian::sign_checkpoint) has
    /// no store, signer or built-in log to work with.
    #[error("the checkpoint store is missing or cannot be read")]
    NoCheckpointStore,
}

/// An audit trail verified under a custodian's own key. Made only by
/// [`Custodian::verify_trail`](crate::Custodian::verify_trail) (checkpoints
/// from the custodian's store) and
/// [`Custodian::verify_trail_unverified`](crate::Custodian::verify_trail_unverified)
/// (a caller's checkpoint, vouching for nothing); no `Deserialize`, private
/// fields.
#[derive(Clone, Debug)]
pub struct VerifiedTrail {
    events: Vec<AuditEvent>,
    head: Checkpoint,
    vouched: Checkpoint,
    unvouched: u64,
    /// Entries archived before the trail's own, over all streams.
    archived: u64,
    caller_chosen: bool,
    custodian: u64,
}

impl VerifiedTrail {
    /// One chain against a checkpoint the caller chose: verified, but it
    /// vouches for none of its entries.
    pub(crate) fn verify_unvouched(
        events: Vec<AuditEvent>,
        key: &AuditKey,
        trusted: &Checkpoint,
        custodian: u64,
    ) -> Result<Self, TrailError> {
        let head = verify(&events, key, Some(trusted))?;
        let unvouched = events.len() as u64;
        Ok(VerifiedTrail {
            events: in_event_order(events),
            head,
            vouched: Checkpoint::GENESIS,
            unvouched,
            archived: 0,
            caller_chosen: true,
            custodian,
        })
    }

    /// A trail of many streams: every stream verifies under `key`, against
    /// its newest trusted head (`heads`) if there is one, from seq 1 or from
    /// one of `bases`.
    pub(crate) fn verify_streams(
        events: Vec<AuditEvent>,
        key: &AuditKey,
        heads: &[(StreamId, Checkpoint)],
        bases: &[(StreamId, Checkpoint)],
        custodian: u64,
    ) -> Result<Self, TrailError> {
        let reports = super::verify_streams_with_bases(&events, key, heads, bases);
        let (mut head, mut vouched, mut unvouched) = (Checkpoint::GENESIS, Checkpoint::GENESIS, 0);
        for r in &reports {
            let h = r.result.map_err(TrailError::Broken)?;
            unvouched += r.unvouched();
            head = h;
            // The stream's newest trusted checkpoint.
            vouched = heads
                .iter()
                .chain(bases)
                .filter(|(s, _)| *s == r.stream.unwrap_or(StreamId::UNSTREAMED))
                .map(|(_, c)| *c)
                .max_by_key(Checkpoint::seq)
                .unwrap_or(Checkpoint::GENESIS);
        }
        // Each stream's newest base stands for the entries archived before
        // it (a stream archived whole has no rows left, only its base).
        let mut newest: Vec<(StreamId, u64)> = Vec::new();
        for (stream, base) in bases {
            match newest.iter_mut().find(|(s, _)| s == stream) {
                Some((_, seq)) => *seq = (*seq).max(base.seq()),
                None => newest.push((*stream, base.seq())),
            }
        }
        let archived = newest.iter().map(|(_, seq)| seq).sum();
        Ok(VerifiedTrail {
            events: in_event_order(events),
            head,
            vouched,
            unvouched,
            archived,
            caller_chosen: false,
            custodian,
        })
    }

    /// The events in event order: each stream's entries in their own
    /// sequence, the streams merged by the events' times (ties by stream
    /// id), whatever order the storage returned its rows in.
    pub fn events(&self) -> &[AuditEvent] {
        &self.events
    }

    /// The head of the verified chain (for a trail of streams, of the last
    /// stream).
    pub fn head(&self) -> Checkpoint {
        self.head
    }

    /// The trusted checkpoint the trail was verified against (for a trail
    /// of streams, the last stream's; `GENESIS` when none, or when the
    /// caller chose it).
    pub fn vouched_through(&self) -> Checkpoint {
        self.vouched
    }

    /// How many entries no trusted checkpoint vouches for (all of them when
    /// the caller chose the checkpoint): entries whoever writes the storage
    /// could have cut without any checkpoint showing it.
    pub fn unvouched(&self) -> u64 {
        self.unvouched
    }

    /// Whether trusted checkpoints the caller did not choose vouch for every
    /// entry (no entries after them that could have been cut undetected),
    /// in every stream.
    pub fn is_fully_vouched(&self) -> bool {
        !self.caller_chosen && self.unvouched == 0
    }

    /// How many entries, over all streams, were archived before the ones
    /// this trail holds (the archive bases in the checkpoint store stand
    /// for them): the trail is the history only from there. 0 when nothing
    /// was archived.
    pub fn archived(&self) -> u64 {
        self.archived
    }

    /// `Ok` if nothing was archived before the trail's entries.
    pub(crate) fn check_whole(&self) -> Result<(), TrailError> {
        match self.archived {
            0 => Ok(()),
            entries => Err(TrailError::Archived { entries }),
        }
    }

    /// `Ok` if this custodian verified the trail.
    pub(crate) fn check_owner(&self, custodian: u64) -> Result<(), TrailError> {
        if self.custodian == custodian {
            Ok(())
        } else {
            Err(TrailError::OtherCustodian)
        }
    }

    /// `Ok` if trusted checkpoints the caller did not choose vouch for every
    /// entry.
    pub(crate) fn check_fully_vouched(&self) -> Result<(), TrailError> {
        if self.caller_chosen {
            Err(TrailError::CallerChosenCheckpoint)
        } else if self.unvouched > 0 {
            Err(TrailError::Unvouched {
                entries: self.unvouched,
            })
        } else {
            Ok(())
        }
    }

    /// `Ok` unless two streams hold consent or erasure events of one subject
    /// at the same instant (their order, and so the state they leave, would
    /// be a guess).
    pub(crate) fn check_unambiguous_consent_order(&self) -> Result<(), TrailError> {
        use super::Action;
        let mut seen: std::collections::HashMap<
            (crate::SubjectId, crate::time::Timestamp),
            Option<StreamId>,
        > = std::collections::HashMap::new();
        for e in &self.events {
            if !matches!(
                e.action(),
                Action::ConsentGranted | Action::ConsentWithdrawn | Action::Erase
            ) {
                continue;
            }
            match seen.insert((e.subject(), e.time()), e.stream()) {
                Some(other) if other != e.stream() => return Err(TrailError::AmbiguousOrder),
                _ => {}
            }
        }
        Ok(())
    }
}

/// Merges the streams of a verified trail into event order: each stream
/// keeps its chain order (verified), and the next event is the earliest head
/// among the streams (ties by stream id). Never the order `events` came in,
/// which is the storage's row order.
fn in_event_order(events: Vec<AuditEvent>) -> Vec<AuditEvent> {
    use std::cmp::Reverse;
    use std::collections::{BTreeMap, BinaryHeap, VecDeque};
    let total = events.len();
    let mut streams: BTreeMap<Option<StreamId>, VecDeque<AuditEvent>> = BTreeMap::new();
    for e in events {
        streams.entry(e.stream()).or_default().push_back(e);
    }
    let mut queues: Vec<(Option<StreamId>, VecDeque<AuditEvent>)> = streams.into_iter().collect();
    let mut heap = BinaryHeap::with_capacity(queues.len());
    for (i, (s, q)) in queues.iter().enumerate() {
        if let Some(e) = q.front() {
            heap.push(Reverse((e.time(), *s, i)));
        }
    }
    let mut out = Vec::with_capacity(total);
    while let Some(Reverse((_, s, i))) = heap.pop() {
        let q = &mut queues[i].1;
        if let Some(e) = q.pop_front() {
            out.push(e);
        }
        if let Some(e) = q.front() {
            heap.push(Reverse((e.time(), s, i)));
        }
    }
    out
}
