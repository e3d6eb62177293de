//! The tamper-evident chain: every entry carries the MAC of the one before it.

use core::fmt;
use std::sync::{Mutex, MutexGuard};

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use ring::digest;
use secrecy::{ExposeSecret, SecretBox};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::event::{CANONICAL_MAX_LEN, SCHEMA_VERSION};
use super::stream::{
    StreamId, KEYED_SCHEMA_VERSION, KEYED_V3_SCHEMA_VERSION, STREAMED_SCHEMA_VERSION,
};
use super::{AuditError, AuditEvent, AuditSink, ChainLink, MemoryAuditLog};
use crate::crypto::poly::Poly61;

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
/// version-1, version-3 or version-4 entry, the link hash for a version-2
/// one.
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

/// Domain separation for the derivation of a version-3 stream's key.
const STREAM_KEY_DOMAIN: &[u8; 28] = b"privacy-pledge audit v3 key\0";
/// Domain separation for a version-4 stream's GMAC key.
const STREAM_KEY_DOMAIN_V4: &[u8; 28] = b"privacy-pledge audit v4 key\0";
/// Domain separation for a version-4 stream's nonce hash key.
const NONCE_HASH_DOMAIN_V4: &[u8; 29] = b"privacy-pledge audit v4 hash\0";

/// Length of a version-3 or version-4 tag (AES-256-GCM's); the rest of the
/// 32-byte [`ChainLink`] fields is zero.
const TAG_LEN: usize = 16;

/// The highest sequence number of a version-4 stream: the nonce holds it in
/// 32 bits. A log that reaches it goes on in a new stream.
pub(crate) const KEYED_MAX_SEQ: u64 = u32::MAX as u64;

/// The MAC key of one keyed stream: AES-256-GCM used as GMAC (no plaintext;
/// everything authenticated is associated data), under a key derived with
/// HMAC-SHA-256 from the audit key and the stream id.
///
/// - Version 3 (verified, no longer written): the nonce is the sequence
///   number.
/// - Version 4: the nonce is the sequence number (32 bits) and a secret
///   hash of the associated data (64 bits: a polynomial hash modulo
///   2⁶¹ − 1 at a secret point, see `crypto/poly.rs`). Two different
///   entries of at most `L` limbs of 7 bytes hash alike with probability at
///   most `L / (2⁶¹ − 1)`, below 2⁻⁵⁵ for any entry without an unusually
///   long recipient name. The hash is never stored or shown: the verifier
///   recomputes it.
///
/// The argument that no nonce protects two different entries is on
/// [`ChainedAuditLog::new_keyed_stream`].
pub(crate) struct StreamKey {
    gmac: LessSafeKey,
    hash: Option<Poly61>,
}

impl StreamKey {
    fn derive_bytes(key: &AuditKey, domain: &[u8], stream: StreamId) -> Zeroizing<[u8; 32]> {
        let mut inner = key.inner.clone();
        inner.update(domain);
        inner.update(stream.as_bytes());
        Zeroizing::new(key.finish(inner))
    }

    fn gmac(bytes: &[u8; 32]) -> Option<LessSafeKey> {
        UnboundKey::new(&AES_256_GCM, &bytes[..])
            .ok()
            .map(LessSafeKey::new)
    }

    /// The key of version-3 stream `stream` under `key`.
    pub(crate) fn derive_v3(key: &AuditKey, stream: StreamId) -> Option<Self> {
        let gmac = Self::gmac(&Self::derive_bytes(key, STREAM_KEY_DOMAIN, stream))?;
        Some(StreamKey { gmac, hash: None })
    }

    /// The keys of version-4 stream `stream` under `key`.
    pub(crate) fn derive(key: &AuditKey, stream: StreamId) -> Option<Self> {
        let gmac = Self::gmac(&Self::derive_bytes(key, STREAM_KEY_DOMAIN_V4, stream))?;
        let hash = Poly61::new(&Self::derive_bytes(key, NONCE_HASH_DOMAIN_V4, stream));
        Some(StreamKey {
            gmac,
            hash: Some(hash),
        })
    }

    /// Calls `f` with the associated data of `event` linked after `prev`:
    /// `prev`'s tag ‖ fixed part ‖ name, zero-padded to whole 16-byte blocks
    /// (GHASH then takes no partial block; the name's length in the fixed
    /// part, and GHASH's own length block, keep the padding unambiguous), in
    /// one buffer: on the stack unless there is a recipient name.
    fn with_aad<R>(prev: &[u8; 32], event: &AuditEvent, f: impl FnOnce(&[u8]) -> R) -> Option<R> {
        const HEAD: usize = (TAG_LEN + CANONICAL_MAX_LEN).next_multiple_of(16);
        let mut head = [0u8; HEAD];
        head[..TAG_LEN].copy_from_slice(&prev[..TAG_LEN]);
        let fixed: &mut [u8; CANONICAL_MAX_LEN] = (&mut head[TAG_LEN..TAG_LEN + CANONICAL_MAX_LEN])
            .try_into()
            .ok()?;
        let len = TAG_LEN + event.write_canonical_fixed(fixed);
        let name = event.canonical_name();
        if name.is_empty() {
            return Some(f(&head[..len.next_multiple_of(16)]));
        }
        let padded = (len + name.len()).next_multiple_of(16);
        let mut long = Vec::with_capacity(padded);
        long.extend_from_slice(&head[..len]);
        long.extend_from_slice(name);
        long.resize(padded, 0);
        Some(f(&long))
    }

    /// The nonce of entry `seq` with associated data `aad`; `None` for a
    /// version-4 sequence number above [`KEYED_MAX_SEQ`].
    #[inline]
    fn nonce(&self, seq: u64, aad: &[u8]) -> Option<[u8; 12]> {
        let mut nonce = [0u8; 12];
        match &self.hash {
            None => nonce[4..].copy_from_slice(&seq.to_be_bytes()),
            Some(hash) => {
                let seq = u32::try_from(seq).ok()?;
                nonce[..4].copy_from_slice(&seq.to_be_bytes());
                nonce[4..].copy_from_slice(&hash.hash(aad, &[]).to_be_bytes());
            }
        }
        Some(nonce)
    }

    /// The chain fields of `event` (with its own `seq`, version and stream)
    /// linked after `prev`: the tag over `prev`'s tag and the event's
    /// canonical encoding, zero-padded to 32 bytes. `None` for a version-4
    /// sequence number above [`KEYED_MAX_SEQ`].
    fn tag(&self, prev: &[u8; 32], event: &AuditEvent) -> Option<[u8; 32]> {
        Self::with_aad(prev, event, |aad| {
            let nonce = self.nonce(event.seq, aad)?;
            let tag = self
                .gmac
                .seal_in_place_separate_tag(
                    Nonce::assume_unique_for_key(nonce),
                    Aad::from(aad),
                    &mut [],
                )
                .ok()?;
            let mut out = [0u8; 32];
            out[..TAG_LEN].copy_from_slice(tag.as_ref());
            Some(out)
        })?
    }
}

impl fmt::Debug for StreamKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StreamKey([redacted])")
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
        crate::subject::write_hex(f, &self.head)
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

/// Which entry format a [`ChainedAuditLog`] writes. (One per log, so the
/// size of the keyed variant does not matter; boxing it would add a pointer
/// chase to every event.)
#[allow(clippy::large_enum_variant)]
enum Form {
    /// Version 1: one chain, HMAC-SHA-256 over the previous MAC and the entry.
    Single,
    /// Version 2: a stream, SHA-256 link hash, HMAC-SHA-256 of it.
    Hashed(StreamId),
    /// Version 4: a stream with a key of its own, GMAC per entry.
    Keyed(StreamId, StreamKey),
}

struct ChainState {
    head: Checkpoint,
    form: Form,
    /// Set when a keyed log could not start a new stream after a failed
    /// write: it then refuses every event (fail closed).
    stopped: bool,
    /// Set while the wrapped sink holds a tagged entry: still set at the next
    /// lock only if the sink panicked, and then handled as a failed write.
    in_flight: bool,
}

impl ChainState {
    fn stream(&self) -> Option<StreamId> {
        match &self.form {
            Form::Single => None,
            Form::Hashed(s) | Form::Keyed(s, _) => Some(*s),
        }
    }

    fn next_seq(&self) -> Result<u64, AuditError> {
        if self.stopped {
            return Err(AuditError::new(
                "audit stream stopped: no new stream could be started after a failed write",
            ));
        }
        self.head
            .seq
            .checked_add(1)
            .ok_or_else(|| AuditError::new("audit chain sequence exhausted"))
    }

    /// Gives `event` its sequence number `seq`, version, stream and chain
    /// fields, linked after `head`, and returns its head value (see
    /// [`head_value`]).
    fn link(
        &self,
        key: &AuditKey,
        head: &Checkpoint,
        event: &mut AuditEvent,
        seq: u64,
    ) -> Result<[u8; 32], AuditError> {
        event.seq = seq;
        match &self.form {
            Form::Single => Ok(link_in_place(key, None, head, event)),
            Form::Hashed(stream) => Ok(link_in_place(key, Some(*stream), head, event)),
            Form::Keyed(stream, stream_key) => {
                event.v = KEYED_SCHEMA_VERSION;
                event.stream = Some(*stream);
                let prev = head.head;
                let mac = stream_key
                    .tag(&prev, event)
                    .ok_or_else(|| AuditError::new("audit MAC failed"))?;
                event.chain = Some(ChainLink { prev, mac });
                Ok(mac)
            }
        }
    }

    /// Makes room for `n` more entries: a keyed stream holds at most
    /// [`KEYED_MAX_SEQ`], so a log that would pass it goes on in a new
    /// stream.
    fn make_room(&mut self, key: &AuditKey, n: u64) {
        if let Form::Keyed(..) = self.form {
            if self.head.seq.saturating_add(n) > KEYED_MAX_SEQ {
                self.after_failure(key);
            }
        }
    }

    /// After a failed write: a keyed log never tags the same number twice,
    /// so it goes on in a new stream (or stops, if none can be started).
    fn after_failure(&mut self, key: &AuditKey) {
        if let Form::Keyed(..) = self.form {
            match StreamId::random()
                .ok()
                .and_then(|s| Some(Form::Keyed(s, StreamKey::derive(key, s)?)))
            {
                Some(form) => {
                    self.form = form;
                    self.head = Checkpoint::GENESIS;
                }
                None => self.stopped = true,
            }
        }
    }
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
/// Three entry formats, chosen by the constructor:
///
/// | constructor | version | MAC per entry | verified by |
/// |---|---|---|---|
/// | [`in_memory`](Self::in_memory), [`new_keyed_stream`](Self::new_keyed_stream) | 4, a stream | GMAC (AES-256-GCM) under the stream's own key | the audit key |
/// | [`new_stream`](Self::new_stream), [`resume_stream`](Self::resume_stream) | 2, a stream | HMAC-SHA-256 of a public SHA-256 link hash | the audit key, or a signed checkpoint and its public key ([`verify_public`](super::verify_public)) |
/// | [`new`](Self::new), [`resume`](Self::resume) | 1, one chain | HMAC-SHA-256 | the audit key |
///
/// Version 4 is the fastest (the custodian's built-in log uses it); version
/// 2 is for trails an auditor checks without the secret key (the stores'
/// durable sinks write it); version 1 is the original single chain. All
/// three verify with [`verify`] and [`verify_streams`](super::verify_streams),
/// and so do trails of version 3, the first keyed form, no longer written.
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
    state: Mutex<ChainState>,
    inner: S,
}

impl ChainedAuditLog<MemoryAuditLog> {
    /// A chained log kept in memory, in a fresh keyed stream (version 4).
    ///
    /// # Panics
    ///
    /// Only if the operating system's random generator fails.
    pub fn in_memory(key: AuditKey) -> Self {
        Self::new_keyed_stream(key, MemoryAuditLog::new())
    }
}

impl<S: AuditSink> ChainedAuditLog<S> {
    fn with_form(key: AuditKey, inner: S, form: Form, head: Checkpoint) -> Self {
        ChainedAuditLog {
            key,
            state: Mutex::new(ChainState {
                head,
                form,
                stopped: false,
                in_flight: false,
            }),
            inner,
        }
    }

    /// A new, empty single chain (version 1) that writes into `inner`.
    pub fn new(key: AuditKey, inner: S) -> Self {
        Self::resume(key, inner, Checkpoint::GENESIS)
    }

    /// Continues a single chain (version 1) whose entries `inner` already
    /// holds, from its last checkpoint (after a restart: read it back from
    /// storage and verify first).
    pub fn resume(key: AuditKey, inner: S, head: Checkpoint) -> Self {
        Self::with_form(key, inner, Form::Single, head)
    }

    /// A new chain in a fresh stream of its own (a random [`StreamId`]):
    /// for one writer among many appending to the same storage. Its entries
    /// are schema version 2: each carries a public link hash, so a signed
    /// checkpoint vouches for the stream to anyone holding the public key.
    ///
    /// # Panics
    ///
    /// Only if the operating system's random generator fails.
    pub fn new_stream(key: AuditKey, inner: S) -> Self {
        let stream = StreamId::random().expect("the operating system's random generator failed");
        Self::resume_stream(key, inner, stream, Checkpoint::GENESIS)
    }

    /// Continues stream `stream` of schema version 2 from `head`. (A keyed
    /// stream is never continued: see
    /// [`new_keyed_stream`](Self::new_keyed_stream).)
    pub fn resume_stream(key: AuditKey, inner: S, stream: StreamId, head: Checkpoint) -> Self {
        Self::with_form(key, inner, Form::Hashed(stream), head)
    }

    /// A new chain in a fresh stream with keys of its own (schema version
    /// 4): GMAC (AES-256-GCM with no plaintext) per entry, under
    /// HMAC-SHA-256(audit key, `"privacy-pledge audit v4 key\0"` ‖ stream
    /// id), with the previous entry's tag and the entry's canonical
    /// encoding, zero-padded to whole 16-byte blocks, as associated data,
    /// and as nonce the sequence number (32 bits) followed by a secret hash
    /// of that associated data (64 bits; a polynomial hash modulo 2⁶¹ − 1 at
    /// a point derived likewise with `"privacy-pledge audit v4 hash\0"`).
    /// The 16-byte tag fills the first half of [`ChainLink::mac`]; the
    /// second half is zero. The cheapest chain to write and to verify;
    /// verifying needs the audit key (a keyless auditor can check version 2
    /// only). A stream holds at most 2³² − 1 entries; the log then goes on
    /// in a new one.
    ///
    /// # Why no nonce protects two different entries
    ///
    /// GMAC is a secure MAC only while no nonce is used for two different
    /// messages under one key: two tags under one nonce give away the hash
    /// key, and with it a tag for any message. So:
    ///
    /// - **One key per stream.** The keys are derived from the stream id, 16
    ///   bytes from the operating system's generator drawn when the stream
    ///   starts; two streams share an id with probability about n²/2¹²⁹.
    /// - **Each number is tagged once by its writer.** Numbers are taken in
    ///   order under the log's lock. When the wrapped sink fails to store an
    ///   entry, or panics on it — its operator may have seen it, or even
    ///   stored it, all the same — that number is never tagged again: the
    ///   log goes on in a new stream (so a trail may hold several; check it
    ///   with [`verify_streams`](super::verify_streams)). If no new stream
    ///   can be started, the log refuses every later event. No constructor
    ///   continues a keyed stream ([`resume_stream`](Self::resume_stream)
    ///   writes version 2, whose HMAC needs no nonce).
    /// - **Writers that share the log's memory without knowing it.** A
    ///   process that forks after the log started (or is cloned, or forks
    ///   again, or is a grandchild given its dead grandparent's process id)
    ///   holds the same stream, keys and head, and tags the same next
    ///   number. Version 3 then used one nonce for two different entries.
    ///   Version 4's nonce also holds the secret hash of the entry, so two
    ///   different entries under one number get one nonce only if their
    ///   hashes collide: for any two entries, with probability below 2⁻⁵⁵
    ///   (see the hash's bound), because the hash is never shown and
    ///   nothing its key could be learned from is either — GMAC tags under
    ///   distinct nonces are outputs of AES on distinct inputs, independent
    ///   of which inputs. Two equal entries get one nonce and one tag, which
    ///   reveals nothing. No system call is made per entry to detect a fork.
    ///
    /// Verifying recomputes the tags of stored entries, which is a MAC's
    /// verification: it reveals only "equal" or "not equal".
    ///
    /// # Panics
    ///
    /// Only if the operating system's random generator fails.
    pub fn new_keyed_stream(key: AuditKey, inner: S) -> Self {
        Self::try_keyed_stream(key, inner).expect("the operating system's random generator failed")
    }

    /// [`new_keyed_stream`](Self::new_keyed_stream), with the random
    /// generator's failure as an error.
    pub(crate) fn try_keyed_stream(key: AuditKey, inner: S) -> Result<Self, crate::Error> {
        let stream = StreamId::random()?;
        let stream_key = StreamKey::derive(&key, stream).ok_or(crate::Error::Random)?;
        Ok(Self::with_form(
            key,
            inner,
            Form::Keyed(stream, stream_key),
            Checkpoint::GENESIS,
        ))
    }

    /// The stream this log writes now, if it is a streamed log.
    pub fn stream(&self) -> Option<StreamId> {
        self.lock().stream()
    }

    fn lock(&self) -> MutexGuard<'_, ChainState> {
        // The head is only updated after a successful write, so it is
        // consistent even if a previous holder panicked; an entry the wrapped
        // sink panicked on counts as a failed write.
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.in_flight {
            state.in_flight = false;
            state.after_failure(&self.key);
        }
        state
    }

    /// The current head (of the current stream, for a streamed log), to
    /// keep somewhere the log's writer cannot reach.
    pub fn checkpoint(&self) -> Checkpoint {
        self.lock().head
    }

    /// The wrapped sink.
    pub fn inner(&self) -> &S {
        &self.inner
    }
}

impl<S: AuditSink> AuditSink for ChainedAuditLog<S> {
    fn record(&self, event: &AuditEvent) -> Result<(), AuditError> {
        self.record_owned(event.clone())
    }

    fn record_owned(&self, mut event: AuditEvent) -> Result<(), AuditError> {
        let mut state = self.lock();
        state.make_room(&self.key, 1);
        let seq = state.next_seq()?;
        let head = state.head;
        let value = state.link(&self.key, &head, &mut event, seq)?;
        state.in_flight = true;
        let stored = self.inner.record_owned(event);
        state.in_flight = false;
        match stored {
            Ok(()) => {
                state.head = Checkpoint::new(seq, value);
                Ok(())
            }
            Err(e) => {
                state.after_failure(&self.key);
                Err(e)
            }
        }
    }

    fn record_batch(&self, events: &[AuditEvent]) -> Result<(), AuditError> {
        let mut state = self.lock();
        // Chain into a scratch head: the shared head moves only once the
        // inner sink has stored the whole batch.
        state.make_room(&self.key, events.len() as u64);
        state.next_seq()?;
        let mut head = state.head;
        let mut chained = Vec::with_capacity(events.len());
        for e in events {
            let seq = head
                .seq
                .checked_add(1)
                .ok_or_else(|| AuditError::new("audit chain sequence exhausted"))?;
            let mut c = e.clone();
            let value = state.link(&self.key, &head, &mut c, seq)?;
            head = Checkpoint::new(seq, value);
            chained.push(c);
        }
        state.in_flight = true;
        let stored = self.inner.record_batch(&chained);
        state.in_flight = false;
        match stored {
            Ok(()) => {
                state.head = head;
                Ok(())
            }
            Err(e) => {
                state.after_failure(&self.key);
                Err(e)
            }
        }
    }

    fn flush(&self) -> Result<(), AuditError> {
        self.inner.flush()
    }
}

/// `event` chained after `head` as entry `seq` (of `stream`, if any, in
/// version 2): the chain fields of versions 1 and 2, as the stores' durable
/// sinks write them, and the entry's head value (see [`head_value`]).
#[cfg_attr(not(any(feature = "sqlite", feature = "postgres")), allow(dead_code))]
pub(crate) fn link(
    key: &AuditKey,
    stream: Option<StreamId>,
    head: &Checkpoint,
    event: &AuditEvent,
    seq: u64,
) -> (AuditEvent, [u8; 32]) {
    let mut e = event.clone();
    e.seq = seq;
    let value = link_in_place(key, stream, head, &mut e);
    (e, value)
}

/// Sets the version, stream and chain fields of a version-1 (no stream) or
/// version-2 entry whose `seq` is set, and returns its head value: the MAC
/// (version 1) or the link hash (version 2), computed once.
fn link_in_place(
    key: &AuditKey,
    stream: Option<StreamId>,
    head: &Checkpoint,
    e: &mut AuditEvent,
) -> [u8; 32] {
    if let Some(stream) = stream {
        e.v = STREAMED_SCHEMA_VERSION;
        e.stream = Some(stream);
    }
    let prev = head.head;
    let (mac, value) = if stream.is_some() {
        let hash = link_hash(&prev, e);
        (key.tag(&hash), hash)
    } else {
        let mac = key.mac(&prev, e);
        (mac, mac)
    };
    e.chain = Some(ChainLink { prev, mac });
    value
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
    /// Without the audit key (a public verifier) no MAC is checked, so an
    /// entry whose contents were edited shows only as the next entry's
    /// broken link; the position named is then the earlier of the two
    /// (either may be the edited one).
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
    // Version 1 is the single-chain form; versions 2 and 3 name their
    // stream, which the MAC covers. One list is one chain: one stream and
    // one version throughout.
    let first = entries.first();
    let stream = first.and_then(AuditEvent::stream);
    let version = first.map_or(SCHEMA_VERSION, |e| e.v);
    // The key of a version-3 or version-4 stream, derived once for the
    // whole list.
    let stream_key = match (key, stream) {
        (Some(key), Some(stream)) if version == KEYED_SCHEMA_VERSION => {
            StreamKey::derive(key, stream)
        }
        (Some(key), Some(stream)) if version == KEYED_V3_SCHEMA_VERSION => {
            StreamKey::derive_v3(key, stream)
        }
        _ => None,
    };
    let well_formed = |e: &AuditEvent| {
        e.v == version
            && match e.v {
                SCHEMA_VERSION => e.stream.is_none() && key.is_some(),
                STREAMED_SCHEMA_VERSION => e.stream.is_some(),
                KEYED_SCHEMA_VERSION | KEYED_V3_SCHEMA_VERSION => {
                    e.stream.is_some() && stream_key.is_some()
                }
                _ => false,
            }
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
            (Some(_), KEYED_SCHEMA_VERSION | KEYED_V3_SCHEMA_VERSION) => stream_key
                .as_ref()
                .and_then(|k| k.tag(&link.prev, e))
                .is_some_and(|tag| crate::ct::eq(&tag, &link.mac)),
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
                // Keyless, the predecessor's contents were never checked:
                // its edit breaks only this link, so it is named first.
                if key.is_none() && index > 0 {
                    return Err(VerifyError {
                        index: index - 1,
                        expected_seq: expected_seq - 1,
                        reason: Tamper::BadLink,
                    });
                }
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

    fn keyed_event(seq: u64, subject: u128) -> AuditEvent {
        let mut e = AuditEvent::new(
            Timestamp::from_unix_seconds(1_700_000_000),
            SubjectId::from(subject),
            Action::Access,
            RuleId::R10,
        );
        e.seq = seq;
        e.v = KEYED_SCHEMA_VERSION;
        e
    }

    /// A5 (a parent and its forked child share a keyed stream's state and
    /// tag the same number): two different entries under one number get
    /// different version-4 nonces, equal entries the same one; version 3
    /// gave both the same, which is what gave its hash key away.
    #[test]
    fn a5_one_number_two_entries_two_nonces() {
        let key = AuditKey::from_bytes([7; 32]);
        let stream = StreamId::from_bytes([9; 16]);
        let v4 = StreamKey::derive(&key, stream).unwrap();
        let v3 = StreamKey::derive_v3(&key, stream).unwrap();
        let prev = [5u8; 32];
        let nonce = |k: &StreamKey, e: &AuditEvent| {
            StreamKey::with_aad(&prev, e, |aad| k.nonce(e.seq, aad))
                .flatten()
                .unwrap()
        };
        let (parent, child) = (keyed_event(3, 1), keyed_event(3, 2));
        assert_eq!(nonce(&v3, &parent), nonce(&v3, &child));
        assert_ne!(nonce(&v4, &parent), nonce(&v4, &child));
        assert_eq!(nonce(&v4, &parent), nonce(&v4, &keyed_event(3, 1)));
        assert_eq!(nonce(&v4, &parent)[..4], 3u32.to_be_bytes());
        // Many entries under one number: all nonces distinct.
        let all: std::collections::HashSet<_> = (0..10_000u128)
            .map(|s| nonce(&v4, &keyed_event(3, s)))
            .collect();
        assert_eq!(all.len(), 10_000);
        // Past 2³² − 1 there is no version-4 nonce.
        assert!(
            StreamKey::with_aad(&prev, &keyed_event(KEYED_MAX_SEQ + 1, 1), |aad| {
                v4.nonce(KEYED_MAX_SEQ + 1, aad)
            })
            .flatten()
            .is_none()
        );
    }

    /// A keyed log about to pass 2³² − 1 entries goes on in a new stream.
    #[test]
    fn a_full_keyed_stream_goes_on_in_a_new_one() {
        let key = AuditKey::from_bytes([7; 32]);
        let stream = StreamId::from_bytes([9; 16]);
        let log = ChainedAuditLog::with_form(
            key.clone(),
            MemoryAuditLog::new(),
            Form::Keyed(stream, StreamKey::derive(&key, stream).unwrap()),
            Checkpoint::new(KEYED_MAX_SEQ - 1, [0; 32]),
        );
        log.record(&keyed_event(0, 1)).unwrap();
        assert_eq!(log.stream(), Some(stream));
        assert_eq!(log.checkpoint().seq(), KEYED_MAX_SEQ);
        log.record(&keyed_event(0, 1)).unwrap();
        assert_ne!(log.stream(), Some(stream));
        assert_eq!(log.checkpoint().seq(), 1);
        log.record_batch(&[keyed_event(0, 1), keyed_event(0, 2)])
            .unwrap();
        assert_eq!(log.checkpoint().seq(), 3);
        let events = log.inner().events();
        let second = verify(&events[1..], &key, None).unwrap();
        assert_eq!(second.seq(), 3);
    }

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
