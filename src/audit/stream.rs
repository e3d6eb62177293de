//! Audit streams: one chain per writer, so that many processes append to one
//! database without a lock across them and without forking a chain.
//!
//! Every writer — a custodian's durable sink in one process, from one start
//! — chains its events in its own stream, named by a random [`StreamId`].
//! Chained events of a stream carry schema version
//! [`STREAMED_SCHEMA_VERSION`] (with a public link hash, for signed
//! checkpoints) or [`KEYED_SCHEMA_VERSION`] (a key of the stream's own), and
//! the stream id is part of what each entry's MAC covers, so an entry cannot
//! be moved from one stream to another.
//! [`verify_streams`] checks a whole trail stream by stream.
//!
//! ```
//! use privacy_pledge::audit::{verify_streams, AuditKey, AuditSink, ChainedAuditLog, StreamId};
//! use privacy_pledge::{Custodian, SubjectId};
//! use privacy_pledge::purpose::Newsletter;
//! use std::sync::Arc;
//!
//! let key = AuditKey::generate()?;
//! // Two writers (two processes, say) appending to the same storage.
//! let a = Arc::new(ChainedAuditLog::new_stream(key.clone(), privacy_pledge::audit::MemoryAuditLog::new()));
//! let b = Arc::new(ChainedAuditLog::new_stream(key.clone(), privacy_pledge::audit::MemoryAuditLog::new()));
//! for log in [&a, &b] {
//!     let c = Custodian::builder().audit(log.clone()).build()?;
//!     c.consents().grant::<Newsletter>(SubjectId::random())?;
//! }
//! let mut trail = a.inner().events();
//! trail.extend(b.inner().events());
//! let heads = [(a.stream().unwrap(), a.checkpoint()), (b.stream().unwrap(), b.checkpoint())];
//! let reports = verify_streams(&trail, &key, &heads);
//! assert_eq!(reports.len(), 2);
//! assert!(reports.iter().all(|r| r.result.is_ok()));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use core::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{AuditEvent, AuditKey, Checkpoint, VerifyError};

/// The schema version of events chained in a stream (the stream id is part
/// of the MAC). Version 1 ([`SCHEMA_VERSION`](super::SCHEMA_VERSION)) is the
/// single-chain form, which still verifies.
pub const STREAMED_SCHEMA_VERSION: u8 = 2;

/// The schema version of events chained in a keyed stream (see
/// [`ChainedAuditLog::new_keyed_stream`](super::ChainedAuditLog::new_keyed_stream)):
/// a GMAC tag per entry under the stream's own key, whose nonce is the
/// sequence number and a secret hash of the entry, no public link hash.
/// The custodian's built-in in-memory log writes it.
pub const KEYED_SCHEMA_VERSION: u8 = 4;

/// The first keyed form, still verified but no longer written: its GMAC
/// nonce was the sequence number alone, so two processes sharing one
/// stream's state (a parent and its forked child) could tag one number
/// twice and give away the stream's hash key. Version
/// [`KEYED_SCHEMA_VERSION`] replaced it.
pub const KEYED_V3_SCHEMA_VERSION: u8 = 3;

/// The name of one writer's chain: 16 random bytes, shown as 32 lowercase
/// hex digits.
///
/// ```
/// use privacy_pledge::audit::StreamId;
/// let id = StreamId::random()?;
/// assert_eq!(id.to_string().parse::<StreamId>()?, id);
/// assert!("not hex".parse::<StreamId>().is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamId([u8; 16]);

impl StreamId {
    /// The name a signed checkpoint gives the single, unstreamed chain of
    /// version-1 entries (those of [`ChainedAuditLog::new`](super::ChainedAuditLog::new)
    /// and [`resume`](super::ChainedAuditLog::resume)), which carry no
    /// stream id: all zeros, which [`random`](Self::random) never returns
    /// in practice. Why: such a chain's head must be vouched for from
    /// outside the database like any stream's, by a signature the caller
    /// cannot forge.
    pub const UNSTREAMED: StreamId = StreamId([0; 16]);

    /// A fresh random stream id.
    pub fn random() -> Result<Self, crate::Error> {
        Ok(StreamId(crate::crypto::random_array::<16>()?))
    }

    /// The id from its bytes.
    pub const fn from_bytes(bytes: [u8; 16]) -> Self {
        StreamId(bytes)
    }

    /// The id's bytes.
    pub const fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        crate::subject::write_hex(f, &self.0)
    }
}

impl fmt::Debug for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StreamId({self})")
    }
}

/// The text is not a stream id (32 lowercase hex digits).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("not a stream id: expected 32 lowercase hex digits")]
pub struct InvalidStreamId;

impl core::str::FromStr for StreamId {
    type Err = InvalidStreamId;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        crate::subject::decode_hex::<16>(s)
            .map(StreamId)
            .ok_or(InvalidStreamId)
    }
}

impl Serialize for StreamId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for StreamId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// What [`verify_streams`] found for one stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamReport {
    /// The stream (`None` for unstreamed, version-1 entries).
    pub stream: Option<StreamId>,
    /// How many entries of the trail belong to it.
    pub entries: usize,
    /// Its head, or the first bad entry. A bad entry's
    /// [`index`](VerifyError::index) is its position in the whole trail
    /// given (the trail's length for entries missing from the end).
    pub result: Result<Checkpoint, VerifyError>,
    /// The sequence number up to which a trusted checkpoint vouches for the
    /// stream (`None`: no checkpoint; entries cut from its end would not show).
    pub vouched_through: Option<u64>,
}

impl StreamReport {
    /// How many of the stream's entries no trusted checkpoint vouches for:
    /// all of them when it has none, those after its newest one otherwise,
    /// and all of them when the stream is broken (a broken stream vouches
    /// for nothing). Whoever writes the storage could have cut these without
    /// any checkpoint showing it, so a verifier must not call them checked.
    pub fn unvouched(&self) -> u64 {
        let entries = self.entries as u64;
        match self.result {
            Ok(head) => head
                .seq()
                .saturating_sub(self.vouched_through.unwrap_or(0))
                .min(entries),
            Err(_) => entries,
        }
    }
}

/// Verifies a trail of many streams, stream by stream, in the order each
/// stream first appears (entries of one stream must stand in chain order;
/// streams may interleave).
///
/// With a trusted head per stream (`trusted`, e.g. from signed checkpoints
/// kept outside the database) it also reports a stream cut short or rolled
/// back, and a stream that is missing altogether (a report with no entries
/// and [`Tamper::Truncated`](super::Tamper::Truncated)). A stream with no trusted head is checked for
/// edits, deletions, insertions, reordering and replays only.
///
/// `trusted` may hold several checkpoints of one stream: the newest is its
/// head. Every stream must start at its first entry (seq 1): a stream
/// whose oldest entries were archived is checked with
/// [`verify_streams_with_bases`], since an ordinary checkpoint does not
/// license deleting the entries it vouches for.
pub fn verify_streams(
    entries: &[AuditEvent],
    key: &AuditKey,
    trusted: &[(StreamId, Checkpoint)],
) -> Vec<StreamReport> {
    verify_streams_with_bases(entries, key, trusted, &[])
}

/// [`verify_streams`] for a trail some of whose streams had their oldest
/// entries archived (see `SqliteStore::archive`): such a stream may start
/// right after one of `bases` — checkpoints verified as **archive bases**
/// ([`SignedCheckpoint::is_base`](super::SignedCheckpoint::is_base)) — and
/// nowhere else but seq 1. Bases count as trusted heads too.
///
/// Why bases are separate: a stream that starts after an ordinary checkpoint
/// lost a vouched prefix (a database operator deleted it), and that must be
/// reported, not accepted.
pub fn verify_streams_with_bases(
    entries: &[AuditEvent],
    key: &AuditKey,
    trusted: &[(StreamId, Checkpoint)],
    bases: &[(StreamId, Checkpoint)],
) -> Vec<StreamReport> {
    let mut heads = trusted.to_vec();
    heads.extend_from_slice(bases);
    verify_grouped(entries, &heads, bases, |chain, head, start| {
        super::chain::verify_from(chain, Some(key), head, start)
    })
}

/// Groups `entries` by stream (first-appearance order, original indices
/// kept), checks each group with `check` against its newest trusted head and
/// from its start (the archive base just before its first entry when that
/// entry is not the first of the stream, else genesis, so that a stream
/// missing its first entries without a base fails), and reports streams a
/// trusted head names that have no entries.
pub(crate) fn verify_grouped(
    entries: &[AuditEvent],
    trusted: &[(StreamId, Checkpoint)],
    bases: &[(StreamId, Checkpoint)],
    check: impl Fn(&[AuditEvent], Option<&Checkpoint>, Checkpoint) -> Result<Checkpoint, VerifyError>,
) -> Vec<StreamReport> {
    let mut newest: Vec<(StreamId, Checkpoint)> = Vec::new();
    for &(stream, head) in trusted {
        match newest.iter_mut().find(|(s, _)| *s == stream) {
            Some((_, h)) if h.seq() < head.seq() => *h = head,
            Some(_) => {}
            None => newest.push((stream, head)),
        }
    }
    let mut order: Vec<Option<StreamId>> = Vec::new();
    let mut groups: std::collections::HashMap<Option<StreamId>, Vec<usize>> =
        std::collections::HashMap::new();
    for (i, e) in entries.iter().enumerate() {
        let s = e.stream();
        groups
            .entry(s)
            .or_insert_with(|| {
                order.push(s);
                Vec::new()
            })
            .push(i);
    }
    let mut reports = Vec::with_capacity(order.len() + trusted.len());
    for s in &order {
        let idx = &groups[s];
        let chain: Vec<AuditEvent> = idx.iter().map(|&i| entries[i].clone()).collect();
        let named = s.unwrap_or(StreamId::UNSTREAMED);
        let head = newest.iter().find(|(t, _)| *t == named).map(|(_, c)| c);
        let start = chain
            .first()
            .filter(|e| e.seq() > 1)
            .and_then(|e| {
                bases
                    .iter()
                    .find(|(t, c)| *t == named && c.seq() + 1 == e.seq())
                    .map(|(_, c)| *c)
            })
            .unwrap_or(Checkpoint::GENESIS);
        let result = check(&chain, head, start).map_err(|mut e| {
            e.index = idx.get(e.index).copied().unwrap_or(entries.len());
            e
        });
        reports.push(StreamReport {
            stream: *s,
            entries: idx.len(),
            result,
            vouched_through: head.map(Checkpoint::seq),
        });
    }
    for (s, c) in &newest {
        let key = Some(*s).filter(|s| *s != StreamId::UNSTREAMED);
        // A stream archived to its newest checkpoint has no entries left.
        let archived = bases.iter().any(|(t, b)| t == s && b.seq() >= c.seq());
        if !groups.contains_key(&key) && c.seq() > 0 && !archived {
            reports.push(StreamReport {
                stream: key.or(Some(*s)),
                entries: 0,
                result: Err(super::signed::missing(entries.len())),
                vouched_through: Some(c.seq()),
            });
        }
    }
    reports
}
