//! The tamper-evident chain: every entry carries the MAC of the one before it.

use core::fmt;
use std::sync::{Mutex, MutexGuard};

use ring::digest;
use secrecy::{ExposeSecret, SecretBox};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::event::{CANONICAL_MAX_LEN, SCHEMA_VERSION};
use super::stream::{StreamId, STREAMED_SCHEMA_VERSION};
use super::{AuditError, AuditEvent, AuditSink, ChainLink, MemoryAuditLog};

/// The key that authenticates the audit chain (HMAC-SHA-256).
///
/// Held by the custodian and the verifier, never by whoever can write the
/// storage. The raw bytes are wiped on drop and never printed.
pub struct AuditKey {
    bytes: SecretBox<[u8; 32]>,
    /// SHA-256 states after absorbing the key XOR ipad and the key XOR opad
    /// blocks (RFC 2104), so each MAC starts from them instead of
    /// re-deriving them.
    inner: digest::Context,
    outer: digest::Context,
}

/// SHA-256's block length, to which HMAC pads the key.
const BLOCK_LEN: usize = 64;

impl AuditKey {
    /// A key from 32 secret bytes (kept by the host, e.g. in its KMS).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        let mut bytes = bytes;
        let pad = |byte: u8| {
            let mut block = Zeroizing::new([byte; BLOCK_LEN]);
            for (b, k) in block.iter_mut().zip(bytes.iter()) {
                *b ^= k;
            }
            let mut ctx = digest::Context::new(&digest::SHA256);
            ctx.update(&block[..]);
            ctx
        };
        let (inner, outer) = (pad(0x36), pad(0x5c));
        let boxed = SecretBox::new(Box::new(bytes));
        zeroize::Zeroize::zeroize(&mut bytes);
        AuditKey {
            bytes: boxed,
            inner,
            outer,
        }
    }

    /// A fresh random key.
    pub fn generate() -> Result<Self, crate::Error> {
        let mut b = crate::crypto::random_array::<32>()?;
        let k = Self::from_bytes(b);
        zeroize::Zeroize::zeroize(&mut b);
        Ok(k)
    }

    /// The key's bytes, to store in the host's secret store.
    pub fn expose_bytes(&self) -> &[u8; 32] {
        self.bytes.expose_secret()
    }

    /// HMAC-SHA-256 over `prev` and the event's canonical encoding (with the
    /// event's own `seq`; its chain fields are not part of it).
    fn mac(&self, prev: &[u8; 32], event: &AuditEvent) -> [u8; 32] {
        // The previous MAC and the fixed part of the encoding go in as one
        // contiguous block; only a recipient name needs a second update.
        let mut head = [0u8; 32 + CANONICAL_MAX_LEN];
        head[..32].copy_from_slice(prev);
        let (fixed, len) = event.canonical_fixed();
        head[32..32 + len].copy_from_slice(&fixed[..len]);
        let mut inner = self.inner.clone();
        inner.update(&head[..32 + len]);
        let name = event.canonical_name();
        if !name.is_empty() {
            inner.update(name);
        }
        self.finish(inner)
    }

    /// HMAC-SHA-256 over a 32-byte link hash (version-2 entries).
    pub(crate) fn tag(&self, hash: &[u8; 32]) -> [u8; 32] {
        let mut inner = self.inner.clone();
        inner.update(hash);
        self.finish(inner)
    }

    /// The outer hash of HMAC over a finished inner hash.
    fn finish(&self, inner: digest::Context) -> [u8; 32] {
        let inner = inner.finish();
        let mut outer = self.outer.clone();
        outer.update(inner.as_ref());
        let mut out = [0u8; 32];
        out.copy_from_slice(outer.finish().as_ref());
        out
    }
}

/// Domain separation for version-2 link hashes.
const LINK_DOMAIN: &[u8; 24] = b"privacy-pledge audit v2\0";

/// The link hash of a version-2 entry: SHA-256 over a domain label, the
/// previous entry's link hash and the entry's canonical encoding. No key:
/// anyone can recompute it, so a signed checkpoint of it vouches for every
/// entry up to it (see [`verify_public`](super::verify_public)).
pub(crate) fn link_hash(prev: &[u8; 32], event: &AuditEvent) -> [u8; 32] {
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(LINK_DOMAIN);
    ctx.update(prev);
    let (fixed, len) = event.canonical_fixed();
    ctx.update(&fixed[..len]);
    ctx.update(event.canonical_name());
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// What the next entry links to, and what a checkpoint names: the MAC for a
/// version-1 entry, the link hash for a version-2 (streamed) one.
pub(crate) fn head_value(event: &AuditEvent) -> [u8; 32] {
    let Some(link) = event.chain else {
        return [0; 32];
    };
    if event.v == STREAMED_SCHEMA_VERSION {
        link_hash(&link.prev, event)
    } else {
        link.mac
    }
}

impl Clone for AuditKey {
    fn clone(&self) -> Self {
        Self::from_bytes(*self.bytes.expose_secret())
    }
}

impl fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AuditKey([redacted])")
    }
}

/// The head of a chain: the last sequence number and its MAC.
///
/// Keep it somewhere the log's writer cannot change (another database, a
/// printed report, a transparency log): given a trusted checkpoint,
/// [`verify`] also detects entries removed from the end.
///
/// Its text form is `SEQ:HEX`.
///
/// ```
/// use privacy_pledge::audit::Checkpoint;
/// let c: Checkpoint = format!("7:{}", "ab".repeat(32)).parse()?;
/// assert_eq!(c.seq(), 7);
/// assert_eq!(c.to_string().parse::<Checkpoint>()?, c);
/// # Ok::<(), privacy_pledge::audit::InvalidCheckpoint>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    seq: u64,
    #[serde(with = "super::event::hex32")]
    head: [u8; 32],
}

impl Checkpoint {
    /// The checkpoint of an empty chain.
    pub const GENESIS: Checkpoint = Checkpoint {
        seq: 0,
        head: [0; 32],
    };

    /// A checkpoint from its parts.
    pub const fn new(seq: u64, head: [u8; 32]) -> Self {
        Checkpoint { seq, head }
    }

    /// The last sequence number (0 for an empty chain).
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The MAC of the last entry.
    pub fn head(&self) -> &[u8; 32] {
        &self.head
    }
}

impl fmt::Display for Checkpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:", self.seq)?;
        self.head.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

/// The text is not a checkpoint (`SEQ:HEX`, 64 lowercase hex digits).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("not a checkpoint: expected SEQ:HEX with 64 lowercase hex digits")]
pub struct InvalidCheckpoint;

impl core::str::FromStr for Checkpoint {
    type Err = InvalidCheckpoint;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (seq, hex) = s.split_once(':').ok_or(InvalidCheckpoint)?;
        if seq.is_empty() || !seq.bytes().all(|b| b.is_ascii_digit()) {
            return Err(InvalidCheckpoint);
        }
        let seq = seq.parse().map_err(|_| InvalidCheckpoint)?;
        let head = crate::subject::decode_hex::<32>(hex).ok_or(InvalidCheckpoint)?;
        Ok(Checkpoint { seq, head })
    }
}

struct ChainState {
    head: Checkpoint,
}

/// An [`AuditSink`] that chains and authenticates events before passing them
/// on to the sink it wraps.
///
/// Each event gets the next sequence number (from 1, gap-free even under
/// concurrent use: numbering and forwarding happen under one lock), the MAC of
/// the previous entry, and its own MAC over both. The wrapped sink — the
/// host's storage — receives the chained event; if it fails, the chain does
/// not advance and the operation does not happen.
///
/// ```
/// use privacy_pledge::audit::{verify, AuditKey, ChainedAuditLog};
/// use privacy_pledge::{Custodian, PersonalInfo, SubjectId};
/// use privacy_pledge::data::EmailAddress;
/// use privacy_pledge::purpose::Transaction;
/// use std::sync::Arc;
///
/// let key = AuditKey::generate()?;
/// let log = Arc::new(ChainedAuditLog::in_memory(key.clone()));
/// let custodian = Custodian::builder().audit(log.clone()).build()?;
/// let email: PersonalInfo<EmailAddress, Transaction> =
///     PersonalInfo::collect(SubjectId::random(), EmailAddress::parse("ada@example.com")?);
/// custodian.access(&email, |e| e.domain().len())?;
/// custodian.access(&email, |e| e.local_part().len())?;
///
/// let head = log.checkpoint();
/// assert_eq!(head.seq(), 2);
/// let entries = log.inner().events();
/// assert_eq!(verify(&entries, &key, Some(&head)), Ok(head));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct ChainedAuditLog<S = MemoryAuditLog> {
    key: AuditKey,
    stream: Option<StreamId>,
    state: Mutex<ChainState>,
    inner: S,
}

impl ChainedAuditLog<MemoryAuditLog> {
    /// A chained log kept in memory.
    pub fn in_memory(key: AuditKey) -> Self {
        Self::new(key, MemoryAuditLog::new())
    }
}

impl<S: AuditSink> ChainedAuditLog<S> {
    /// A new, empty chain that writes into `inner`.
    pub fn new(key: AuditKey, inner: S) -> Self {
        Self::resume(key, inner, Checkpoint::GENESIS)
    }

    /// Continues a chain whose entries `inner` already holds, from its last
    /// checkpoint (after a restart: read it back from storage and verify first).
    pub fn resume(key: AuditKey, inner: S, head: Checkpoint) -> Self {
        ChainedAuditLog {
            key,
            stream: None,
            state: Mutex::new(ChainState { head }),
            inner,
        }
    }

    /// A new chain in a fresh stream of its own (a random [`StreamId`]):
    /// for one writer among many appending to the same storage. Its entries
    /// are schema version 2 and their MACs cover the stream id.
    ///
    /// # Panics
    ///
    /// Only if the operating system's random generator fails.
    pub fn new_stream(key: AuditKey, inner: S) -> Self {
        let stream = StreamId::random().expect("the operating system's random generator failed");
        Self::resume_stream(key, inner, stream, Checkpoint::GENESIS)
    }

    /// Continues stream `stream` from `head`.
    pub fn resume_stream(key: AuditKey, inner: S, stream: StreamId, head: Checkpoint) -> Self {
        ChainedAuditLog {
            key,
            stream: Some(stream),
            state: Mutex::new(ChainState { head }),
            inner,
        }
    }

    /// The stream this log writes, if it is a streamed log.
    pub fn stream(&self) -> Option<StreamId> {
        self.stream
    }

    fn lock(&self) -> MutexGuard<'_, ChainState> {
        // The state is only updated after a successful write, so it is
        // consistent even if a previous holder panicked.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The current head, to keep somewhere the log's writer cannot reach.
    pub fn checkpoint(&self) -> Checkpoint {
        self.lock().head
    }

    /// The wrapped sink.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    fn link(&self, state: &ChainState, event: &AuditEvent, seq: u64) -> AuditEvent {
        link(&self.key, self.stream, &state.head, event, seq)
    }
}

impl<S: AuditSink> AuditSink for ChainedAuditLog<S> {
    fn record(&self, event: &AuditEvent) -> Result<(), AuditError> {
        let mut state = self.lock();
        let seq = state
            .head
            .seq
            .checked_add(1)
            .ok_or_else(|| AuditError::new("audit chain sequence exhausted"))?;
        let chained = self.link(&state, event, seq);
        self.inner.record(&chained)?;
        state.head = Checkpoint::new(seq, head_value(&chained));
        Ok(())
    }

    fn record_batch(&self, events: &[AuditEvent]) -> Result<(), AuditError> {
        let mut state = self.lock();
        // Chain into a scratch head: the shared head moves only once the
        // inner sink has stored the whole batch.
        let mut scratch = ChainState { head: state.head };
        let mut chained = Vec::with_capacity(events.len());
        for e in events {
            let seq = scratch
                .head
                .seq
                .checked_add(1)
                .ok_or_else(|| AuditError::new("audit chain sequence exhausted"))?;
            let c = self.link(&scratch, e, seq);
            scratch.head = Checkpoint::new(seq, head_value(&c));
            chained.push(c);
        }
        self.inner.record_batch(&chained)?;
        state.head = scratch.head;
        Ok(())
    }

    fn flush(&self) -> Result<(), AuditError> {
        self.inner.flush()
    }
}

/// `event` chained after `head` as entry `seq` (of `stream`, if any): the
/// one place entries get their sequence number, version, stream and MAC.
pub(crate) fn link(
    key: &AuditKey,
    stream: Option<StreamId>,
    head: &Checkpoint,
    event: &AuditEvent,
    seq: u64,
) -> AuditEvent {
    let mut e = event.clone();
    e.seq = seq;
    if let Some(stream) = stream {
        e.v = STREAMED_SCHEMA_VERSION;
        e.stream = Some(stream);
    }
    let prev = head.head;
    let mac = if stream.is_some() {
        key.tag(&link_hash(&prev, &e))
    } else {
        key.mac(&prev, &e)
    };
    e.chain = Some(ChainLink { prev, mac });
    e
}

impl<S> fmt::Debug for ChainedAuditLog<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChainedAuditLog").finish_non_exhaustive()
    }
}

/// What is wrong at the first bad position of a chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Tamper {
    /// The entry's MAC does not match its contents: a field was edited, or
    /// the MAC was made with another key.
    Modified,
    /// Entries are missing here: the entry's sequence number skips ahead.
    Deleted,
    /// An entry that does not belong to the chain was put here; the chain
    /// continues correctly after it.
    Inserted,
    /// An authentic entry from further on stands here: the order was changed.
    Reordered,
    /// An authentic entry from earlier in the chain stands here again.
    Replayed,
    /// The entry's MAC is valid but it links to a different predecessor.
    BadLink,
    /// The entry has no chain fields, or an unknown schema version (or a
    /// version that does not match whether it names a stream).
    NotChained,
    /// Entries the trusted checkpoint vouches for are missing from the end.
    Truncated,
    /// The entry at the checkpoint's position is not the one the checkpoint names.
    CheckpointMismatch,
}

impl fmt::Display for Tamper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Tamper::Modified => "modified (MAC does not match the entry)",
            Tamper::Deleted => "deleted (entries missing before this one)",
            Tamper::Inserted => "inserted (entry does not belong to the chain)",
            Tamper::Reordered => "reordered (entry from later in the chain)",
            Tamper::Replayed => "replayed (entry from earlier in the chain)",
            Tamper::BadLink => "bad link (entry points to another predecessor)",
            Tamper::NotChained => "not chained (no chain fields or unknown version)",
            Tamper::Truncated => "truncated (entries after the last one are missing)",
            Tamper::CheckpointMismatch => "checkpoint mismatch (the chain was rewritten)",
        })
    }
}

/// Verification found the chain broken.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("audit chain broken at entry {index} (expected seq {expected_seq}): {reason}")]
pub struct VerifyError {
    /// Index (0-based) of the first bad entry in the list given; the list's
    /// length for truncation.
    pub index: usize,
    /// The sequence number that should stand there.
    pub expected_seq: u64,
    /// What is wrong.
    pub reason: Tamper,
}

/// Verifies a chain from its first entry and returns its head.
///
/// Reports the first bad position and why. With a `trusted` checkpoint it
/// also detects a chain cut short or rewritten up to that point.
///
/// Runs in one pass with one HMAC per entry (plus a look-ahead only once a
/// break is found).
pub fn verify(
    entries: &[AuditEvent],
    key: &AuditKey,
    trusted: Option<&Checkpoint>,
) -> Result<Checkpoint, VerifyError> {
    verify_with(entries, Some(key), trusted)
}

/// [`verify`] with the audit key, or without one (`None`): then each
/// version-2 entry is checked only through its link hash — the links between
/// entries and the `trusted` checkpoint (a signed one, see
/// [`verify_public`](super::verify_public)) — and a version-1 entry, whose
/// chain is its MAC, cannot be checked at all ([`Tamper::NotChained`]).
pub(crate) fn verify_with(
    entries: &[AuditEvent],
    key: Option<&AuditKey>,
    trusted: Option<&Checkpoint>,
) -> Result<Checkpoint, VerifyError> {
    verify_from(entries, key, trusted, Checkpoint::GENESIS)
}

/// [`verify_with`] for a chain whose entries up to `start` were archived:
/// the first entry must follow `start` (a checkpoint that vouches for the
/// archived part).
pub(crate) fn verify_from(
    entries: &[AuditEvent],
    key: Option<&AuditKey>,
    trusted: Option<&Checkpoint>,
    start: Checkpoint,
) -> Result<Checkpoint, VerifyError> {
    let mut head = start;
    // Version 1 is the single-chain form; version 2 names its stream, which
    // the MAC covers. One list is one chain: one stream throughout.
    let stream = entries.first().and_then(AuditEvent::stream);
    let well_formed = |e: &AuditEvent| match e.v {
        SCHEMA_VERSION => e.stream.is_none() && key.is_some(),
        STREAMED_SCHEMA_VERSION => e.stream.is_some(),
        _ => false,
    };
    let mac_ok = |e: &AuditEvent| -> bool {
        let Some(link) = e.chain else { return false };
        if !well_formed(e) {
            return false;
        }
        match (key, e.v) {
            (None, _) => true,
            (Some(key), STREAMED_SCHEMA_VERSION) => {
                crate::ct::eq(&key.tag(&link_hash(&link.prev, e)), &link.mac)
            }
            (Some(key), _) => crate::ct::eq(&key.mac(&link.prev, e), &link.mac),
        }
    };
    for (index, e) in entries.iter().enumerate() {
        let expected_seq = head.seq + 1;
        let fail = |reason| VerifyError {
            index,
            expected_seq,
            reason,
        };
        let Some(link) = e.chain else {
            return Err(fail(Tamper::NotChained));
        };
        if !well_formed(e) {
            return Err(fail(Tamper::NotChained));
        }
        if e.stream != stream {
            return Err(fail(Tamper::Inserted));
        }
        if !mac_ok(e) {
            // Does the chain go on correctly after this entry? Then it was put in.
            let next_fits = entries.get(index + 1).is_some_and(|n| {
                n.seq == expected_seq && n.chain.is_some_and(|l| l.prev == head.head) && mac_ok(n)
            });
            return Err(fail(if next_fits {
                Tamper::Inserted
            } else {
                Tamper::Modified
            }));
        }
        if e.seq == expected_seq {
            if link.prev != head.head {
                return Err(fail(Tamper::BadLink));
            }
            let value = head_value(e);
            head = Checkpoint::new(e.seq, value);
            if let Some(t) = trusted {
                if t.seq == e.seq && !crate::ct::eq(&t.head, &value) {
                    return Err(fail(Tamper::CheckpointMismatch));
                }
            }
            continue;
        }
        if e.seq < expected_seq {
            return Err(fail(Tamper::Replayed));
        }
        let missing_later = entries[index + 1..].iter().any(|n| n.seq == expected_seq);
        return Err(fail(if missing_later {
            Tamper::Reordered
        } else {
            Tamper::Deleted
        }));
    }
    if let Some(t) = trusted {
        if t.seq > head.seq {
            return Err(VerifyError {
                index: entries.len(),
                expected_seq: head.seq + 1,
                reason: Tamper::Truncated,
            });
        }
    }
    Ok(head)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{Action, RecipientRef};
    use crate::policy::RuleId;
    use crate::recipient::RoleId;
    use crate::time::Timestamp;
    use crate::SubjectId;

    /// The MAC from precomputed pad states is HMAC-SHA-256 as `ring`
    /// computes it, for any key and any recipient-name length (so the
    /// input crosses SHA-256 block boundaries at every offset).
    #[test]
    fn mac_is_ring_hmac_sha256() {
        let keys: [[u8; 32]; 3] = [[0; 32], [0xff; 32], core::array::from_fn(|i| i as u8)];
        for key_bytes in keys {
            let key = AuditKey::from_bytes(key_bytes);
            let reference = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &key_bytes);
            for name_len in 0..200 {
                let mut e = AuditEvent::new(
                    Timestamp::from_unix_nanos(name_len as u64 * 1_000_003),
                    SubjectId::from(name_len as u128),
                    Action::Disclose,
                    RuleId::R5,
                );
                e.seq = name_len as u64 + 1;
                if name_len > 0 {
                    e.recipient = Some(RecipientRef {
                        name: "n".repeat(name_len).into(),
                        role: RoleId::Processor,
                    });
                }
                let prev = [name_len as u8; 32];
                let mut msg = prev.to_vec();
                e.encode_canonical(&mut msg);
                let want = ring::hmac::sign(&reference, &msg);
                assert_eq!(
                    &key.mac(&prev, &e)[..],
                    want.as_ref(),
                    "name length {name_len}"
                );
            }
        }
    }
}
