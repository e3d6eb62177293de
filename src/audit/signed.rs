//! Signed checkpoints: the head of a stream, signed with Ed25519, so that
//! anyone holding only the **public** key can check a trail up to it.
//!
//! A version-2 (streamed) entry carries a link hash chain that needs no key
//! to recompute, and a per-entry MAC that does. A [`SignedCheckpoint`] signs
//! a stream's sequence number and link hash; [`verify_public`] recomputes
//! the links from the stored entries and checks them against every signed
//! checkpoint it is given. The verification key cannot write: an auditor
//! (actor A4) can check, never forge. Entries after a stream's last signed
//! checkpoint are reported as not vouched for; the audit key's holder can
//! still check their MACs with [`verify_streams`](super::verify_streams).
//!
//! ```
//! use privacy_pledge::audit::{verify_public, AuditSink, ChainedAuditLog, CheckpointSigner, MemoryAuditLog};
//! use privacy_pledge::crypto::Keyring;
//! use privacy_pledge::time::Timestamp;
//! use privacy_pledge::{Custodian, SubjectId};
//! use privacy_pledge::purpose::Newsletter;
//! use std::sync::Arc;
//!
//! let keyring = Keyring::generate()?;
//! let log = Arc::new(ChainedAuditLog::new_stream(keyring.audit_key(), MemoryAuditLog::new()));
//! let custodian = Custodian::builder().audit(log.clone()).build()?;
//! custodian.consents().grant::<Newsletter>(SubjectId::random())?;
//!
//! let signer = keyring.checkpoint_signer()?;
//! let signed = signer.sign(log.stream().unwrap(), log.checkpoint(), Timestamp::now());
//! // The auditor has the trail, the signed checkpoint and the public key only.
//! let report = verify_public(&log.inner().events(), &signer.public_key(), &[signed]);
//! assert!(report.streams[0].result.is_ok());
//! assert_eq!(report.streams[0].vouched_through, Some(1));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use core::fmt;

use ring::signature::{self, Ed25519KeyPair, KeyPair};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::chain::verify_from;
use super::{AuditEvent, Checkpoint, StreamId, StreamReport, Tamper, VerifyError};
use crate::time::Timestamp;

/// Domain separation for what a checkpoint signature covers.
const DOMAIN: &[u8; 27] = b"privacy-pledge checkpoint\0\x01";

/// Domain separation for an archive base: a checkpoint that also names the
/// digest of the archived segment it closes. A signature made for one domain
/// never verifies in the other, so an ordinary checkpoint cannot be passed
/// off as a base.
const BASE_DOMAIN: &[u8; 27] = b"privacy-pledge archive b\0\x01\x02";

/// The digest an archive base names: SHA-256 of the archive's bytes exactly
/// as the store's `archive` wrote them (JSON lines).
///
/// Why: a base lets a stream's remaining entries start after seq 1, so it
/// must say *which* archive holds the entries before it; otherwise a
/// deleted or swapped archive would go unnoticed.
///
/// ```
/// use privacy_pledge::audit::archive_digest;
/// assert_ne!(archive_digest(b"a\n"), archive_digest(b"b\n"));
/// ```
pub fn archive_digest(archive: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, archive).as_ref());
    out
}

/// Signs checkpoints (Ed25519). Held by the custodian's processes, like the
/// audit key; derive it with [`Keyring::checkpoint_signer`](crate::crypto::Keyring::checkpoint_signer).
pub struct CheckpointSigner {
    pair: Ed25519KeyPair,
}

impl fmt::Debug for CheckpointSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CheckpointSigner(public {})", self.public_key())
    }
}

impl CheckpointSigner {
    /// The signer whose private key is expanded from `seed` (32 secret bytes).
    pub fn from_seed(seed: &[u8; 32]) -> Result<Self, crate::Error> {
        Ed25519KeyPair::from_seed_unchecked(seed)
            .map(|pair| CheckpointSigner { pair })
            .map_err(|_| crate::Error::Random)
    }

    /// The public key that verifies this signer's checkpoints.
    pub fn public_key(&self) -> CheckpointKey {
        let mut out = [0u8; 32];
        out.copy_from_slice(self.pair.public_key().as_ref());
        CheckpointKey(out)
    }

    /// Signs `head` of `stream`, made at `time`.
    pub fn sign(&self, stream: StreamId, head: Checkpoint, time: Timestamp) -> SignedCheckpoint {
        let msg = message(stream, &head, time);
        let mut signature = [0u8; 64];
        signature.copy_from_slice(self.pair.sign(&msg).as_ref());
        SignedCheckpoint {
            stream,
            seq: head.seq(),
            head: *head.head(),
            time,
            archive: None,
            signature,
        }
    }

    /// Signs `head` of `stream` **as an archive base**: the end of the
    /// archived segment whose bytes hash to `archive` ([`archive_digest`]).
    ///
    /// Why a separate kind of signature: a verifier lets a stream whose first
    /// remaining entry is not seq 1 start only at a base. An ordinary
    /// checkpoint (one is signed every few events) must not do, or an
    /// operator who deletes a vouched prefix would go unnoticed.
    pub fn sign_base(
        &self,
        stream: StreamId,
        head: Checkpoint,
        archive: [u8; 32],
        time: Timestamp,
    ) -> SignedCheckpoint {
        let msg = base_message(stream, &head, time, &archive);
        let mut signature = [0u8; 64];
        signature.copy_from_slice(self.pair.sign(&msg).as_ref());
        SignedCheckpoint {
            stream,
            seq: head.seq(),
            head: *head.head(),
            time,
            archive: Some(archive),
            signature,
        }
    }
}

fn message(stream: StreamId, head: &Checkpoint, time: Timestamp) -> [u8; 27 + 16 + 8 + 32 + 8] {
    let mut m = [0u8; 27 + 16 + 8 + 32 + 8];
    m[..27].copy_from_slice(DOMAIN);
    m[27..43].copy_from_slice(stream.as_bytes());
    m[43..51].copy_from_slice(&head.seq().to_be_bytes());
    m[51..83].copy_from_slice(head.head());
    m[83..91].copy_from_slice(&time.unix_nanos().to_be_bytes());
    m
}

fn base_message(
    stream: StreamId,
    head: &Checkpoint,
    time: Timestamp,
    archive: &[u8; 32],
) -> [u8; 27 + 16 + 8 + 32 + 8 + 32] {
    let mut m = [0u8; 27 + 16 + 8 + 32 + 8 + 32];
    m[..91].copy_from_slice(&message(stream, head, time));
    m[..27].copy_from_slice(BASE_DOMAIN);
    m[91..].copy_from_slice(archive);
    m
}

/// The public key that verifies signed checkpoints: safe to hand to anyone.
/// Text form: 64 lowercase hex digits.
///
/// ```
/// use privacy_pledge::audit::{CheckpointKey, CheckpointSigner};
/// let key = CheckpointSigner::from_seed(&[7; 32])?.public_key();
/// assert_eq!(key.to_string().parse::<CheckpointKey>()?, key);
/// assert!("zz".parse::<CheckpointKey>().is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct CheckpointKey([u8; 32]);

impl CheckpointKey {
    /// The key's bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The key from its bytes.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        CheckpointKey(bytes)
    }
}

impl fmt::Display for CheckpointKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        crate::subject::write_hex(f, &self.0)
    }
}

impl fmt::Debug for CheckpointKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CheckpointKey({self})")
    }
}

/// The text is not a checkpoint key (64 lowercase hex digits).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("not a checkpoint key: expected 64 lowercase hex digits")]
pub struct InvalidCheckpointKey;

impl core::str::FromStr for CheckpointKey {
    type Err = InvalidCheckpointKey;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        crate::subject::decode_hex::<32>(s)
            .map(CheckpointKey)
            .ok_or(InvalidCheckpointKey)
    }
}

/// A stream's head, signed. `Serialize + Deserialize` (JSON with hex
/// fields, unknown fields refused): anyone can make one up, which is why
/// only [`verify`](Self::verify) makes it mean anything.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedCheckpoint {
    stream: StreamId,
    seq: u64,
    #[serde(with = "super::event::hex32")]
    head: [u8; 32],
    time: Timestamp,
    /// For an archive base only: the digest of the archive it closes.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "hex32_opt")]
    archive: Option<[u8; 32]>,
    #[serde(with = "hex64")]
    signature: [u8; 64],
}

/// The signature does not verify under the key given.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the checkpoint's signature does not verify")]
pub struct BadSignature;

impl SignedCheckpoint {
    /// The stream it names (unchecked until [`verify`](Self::verify)).
    pub fn stream(&self) -> StreamId {
        self.stream
    }

    /// The head it names (unchecked until [`verify`](Self::verify)).
    pub fn checkpoint(&self) -> Checkpoint {
        Checkpoint::new(self.seq, self.head)
    }

    /// When it was signed (unchecked until [`verify`](Self::verify)).
    pub fn time(&self) -> Timestamp {
        self.time
    }

    /// For an archive base ([`CheckpointSigner::sign_base`]): the digest of
    /// the archive it closes (unchecked until [`verify`](Self::verify)).
    /// `None` for an ordinary checkpoint.
    pub fn archive_digest(&self) -> Option<[u8; 32]> {
        self.archive
    }

    /// Whether it claims to be an archive base (unchecked until
    /// [`verify`](Self::verify)): only a base may start a stream after seq 1.
    pub fn is_base(&self) -> bool {
        self.archive.is_some()
    }

    /// The stream and head, if the signature verifies under `key` (as an
    /// archive base when [`is_base`](Self::is_base), else as an ordinary
    /// checkpoint).
    pub fn verify(&self, key: &CheckpointKey) -> Result<(StreamId, Checkpoint), BadSignature> {
        let head = self.checkpoint();
        let public = signature::UnparsedPublicKey::new(&signature::ED25519, key.as_bytes());
        let ok = match &self.archive {
            None => public.verify(&message(self.stream, &head, self.time), &self.signature),
            Some(digest) => public.verify(
                &base_message(self.stream, &head, self.time, digest),
                &self.signature,
            ),
        };
        ok.map(|()| (self.stream, head)).map_err(|_| BadSignature)
    }
}

mod hex32_opt {
    use super::*;

    pub fn serialize<S: Serializer>(v: &Option<[u8; 32]>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => super::super::event::hex32::serialize(v, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<[u8; 32]>, D::Error> {
        super::super::event::hex32::deserialize(d).map(Some)
    }
}

mod hex64 {
    use super::*;

    pub fn serialize<S: Serializer>(v: &[u8; 64], s: S) -> Result<S::Ok, S::Error> {
        let mut out = String::with_capacity(128);
        crate::subject::push_hex(&mut out, v);
        s.serialize_str(&out)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 64], D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        crate::subject::decode_hex::<64>(&s)
            .ok_or_else(|| serde::de::Error::custom("expected 128 lowercase hex digits"))
    }
}

/// What [`verify_public`] found.
///
/// Two questions with two answers, so that a caller cannot mistake "nothing
/// wrong was seen" for "everything was checked": [`is_intact`](Self::is_intact)
/// (no stream is broken, cut, rolled back or missing, and no checkpoint is
/// forged) and [`is_fully_vouched`](Self::is_fully_vouched) (besides, a
/// checkpoint verified under the public key vouches for every entry of
/// every stream; [`unvouched`](Self::unvouched) counts those it does not).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicReport {
    /// One report per stream of the trail, and per stream a valid
    /// checkpoint names that has no entries (missing streams).
    pub streams: Vec<StreamReport>,
    /// Checkpoints whose signature does not verify under the key given:
    /// forged or damaged; they vouch for nothing.
    pub bad_checkpoints: Vec<SignedCheckpoint>,
}

impl PublicReport {
    /// Whether every stream verified and every checkpoint's signature did.
    /// Entries no checkpoint vouches for do not make a trail broken; see
    /// [`is_fully_vouched`](Self::is_fully_vouched) for that.
    pub fn is_intact(&self) -> bool {
        self.bad_checkpoints.is_empty() && self.streams.iter().all(|s| s.result.is_ok())
    }

    /// How many entries, over all streams, no verified checkpoint vouches
    /// for: streams with no checkpoint, and entries after a stream's newest
    /// one. Whoever writes the database could have cut or rewritten them
    /// (re-chaining needs only public data for the link hashes) without the
    /// public key showing it.
    pub fn unvouched(&self) -> u64 {
        self.streams.iter().map(StreamReport::unvouched).sum()
    }

    /// Whether the trail is intact **and** every entry of every stream is
    /// vouched for by a checkpoint that verified under the key given: the
    /// only outcome on which an auditor may say "nothing was cut".
    pub fn is_fully_vouched(&self) -> bool {
        self.is_intact() && self.unvouched() == 0
    }
}

/// Verifies a trail of streams with the checkpoint **public** key only.
///
/// For each stream: the links between its entries (each entry's link hash
/// is recomputed from its content, so an edited, deleted, inserted,
/// reordered or replayed entry breaks them), and its newest checkpoint with
/// a valid signature, which vouches for every entry up to it and shows a
/// stream cut short or rolled back behind it. A stream named by a valid
/// checkpoint but absent from the trail is reported missing. Entries after a
/// stream's newest checkpoint are linked but not vouched for
/// ([`StreamReport::vouched_through`], [`PublicReport::unvouched`]).
///
/// A stream starts at its first entry (seq 1), or right after a valid
/// **archive base** ([`CheckpointSigner::sign_base`], kept with
/// [`DirCheckpointStore::save_base`]) when its oldest entries were archived.
/// Starting anywhere else is reported as [`Tamper::Deleted`]: an ordinary
/// checkpoint vouches for the entries before it, so deleting them is
/// tampering, not archiving. Check the archive itself with
/// [`verify_archive`].
/// Version-1 entries cannot be checked without the audit key and are
/// reported [`Tamper::NotChained`].
///
/// An entry's MAC is not checked here (it needs the audit key) and the link
/// hashes do not cover it: an operator who overwrites the `mac` field of a
/// vouched entry leaves this report intact and fully vouched, while the
/// custodian's own verification ([`Custodian::verify_trail`](crate::Custodian::verify_trail),
/// which restores and subject reports need) reports the entry modified.
/// What happened is still told right by this report; that a trail the
/// custodian can use is a separate question the keyed verification answers.
pub fn verify_public(
    entries: &[AuditEvent],
    key: &CheckpointKey,
    checkpoints: &[SignedCheckpoint],
) -> PublicReport {
    let (valid, bases, bad_checkpoints) = sort_checkpoints(key, checkpoints);
    let streams =
        super::stream::verify_grouped(entries, &valid, &bases, |chain, trusted, start| {
            verify_from(chain, None, trusted, start)
        });
    PublicReport {
        streams,
        bad_checkpoints,
    }
}

/// Heads that verify under `key` (bases included: a base vouches for the
/// entries up to it), the bases among them, and the checkpoints that do not
/// verify.
#[allow(clippy::type_complexity)]
pub(crate) fn sort_checkpoints(
    key: &CheckpointKey,
    checkpoints: &[SignedCheckpoint],
) -> (
    Vec<(StreamId, Checkpoint)>,
    Vec<(StreamId, Checkpoint)>,
    Vec<SignedCheckpoint>,
) {
    let (mut valid, mut bases, mut bad) = (Vec::new(), Vec::new(), Vec::new());
    for c in checkpoints {
        match c.verify(key) {
            Ok(checkpoint) => {
                valid.push(checkpoint);
                if c.is_base() {
                    bases.push(checkpoint);
                }
            }
            Err(BadSignature) => bad.push(*c),
        }
    }
    (valid, bases, bad)
}

/// Why an archive could not be checked at all.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ArchiveError {
    /// No archive base that verifies under the key names this archive's
    /// digest: the archive was altered or swapped, or its base is missing.
    #[error("no archive base signed under the key names this archive's digest")]
    NoBase,
    /// The archive is not JSON lines of audit events.
    #[error(transparent)]
    Unreadable(#[from] super::JsonlError),
}

/// Verifies an archived segment (the bytes a store's `archive` wrote) with
/// the checkpoint **public** key: the archive base among `checkpoints` that
/// names its [`archive_digest`] must verify under `key`, and the archive's
/// entries must link from the start of their stream (or from an earlier
/// base, for a later archive of the same stream) up to that base exactly.
///
/// Why: a base lets the rest of the stream start after seq 1; only this
/// check shows that the entries before it still exist, unaltered.
pub fn verify_archive(
    archive: &[u8],
    key: &CheckpointKey,
    checkpoints: &[SignedCheckpoint],
) -> Result<PublicReport, ArchiveError> {
    let digest = archive_digest(archive);
    let base = checkpoints
        .iter()
        .filter(|c| c.archive_digest() == Some(digest))
        .find_map(|c| c.verify(key).ok())
        .ok_or(ArchiveError::NoBase)?;
    let entries = super::read_jsonl(archive)?;
    let (_, bases, bad_checkpoints) = sort_checkpoints(key, checkpoints);
    let earlier: Vec<_> = bases
        .into_iter()
        .filter(|(s, c)| *s == base.0 && c.seq() < base.1.seq())
        .collect();
    let streams =
        super::stream::verify_grouped(&entries, &[base], &earlier, |chain, trusted, start| {
            verify_from(chain, None, trusted, start)
        });
    Ok(PublicReport {
        streams,
        bad_checkpoints,
    })
}

/// Whether `entries` — a segment of `stream` about to be archived — link
/// from `start` (the stream's start, or the head of the archive base before
/// them) exactly up to `head` (the checkpoint the archive ends at): every
/// entry there, in order, none altered. What [`verify_archive`] will check
/// against the base signed afterwards, checked before anything is deleted.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) fn verify_segment(
    entries: &[AuditEvent],
    stream: StreamId,
    start: Checkpoint,
    head: Checkpoint,
) -> Result<(), VerifyError> {
    let unexpected = |index| VerifyError {
        index,
        expected_seq: start.seq() + 1,
        reason: Tamper::Inserted,
    };
    if let Some(i) = entries.iter().position(|e| e.stream() != Some(stream)) {
        return Err(unexpected(i));
    }
    let reached = verify_from(entries, None, Some(&head), start)?;
    if reached != head {
        return Err(VerifyError {
            index: entries.len(),
            expected_seq: reached.seq() + 1,
            reason: Tamper::Truncated,
        });
    }
    Ok(())
}

/// A `VerifyError` for a stream with no entries that a checkpoint names.
pub(crate) fn missing(entries: usize) -> VerifyError {
    VerifyError {
        index: entries,
        expected_seq: 1,
        reason: Tamper::Truncated,
    }
}

/// Where signed checkpoints are kept **outside** the database whose trail
/// they vouch for: a database operator (actor A2) who can roll the trail back
/// must not be able to roll its checkpoints back with it.
pub trait CheckpointStore: Send + Sync {
    /// Keeps `checkpoint` as the newest of its stream.
    fn save(&self, checkpoint: &SignedCheckpoint) -> Result<(), super::AuditError>;
    /// The newest checkpoint of every stream (and any archive bases kept).
    fn load(&self) -> Result<Vec<SignedCheckpoint>, super::AuditError>;
}

impl<C: CheckpointStore + ?Sized> CheckpointStore for std::sync::Arc<C> {
    fn save(&self, checkpoint: &SignedCheckpoint) -> Result<(), super::AuditError> {
        (**self).save(checkpoint)
    }
    fn load(&self) -> Result<Vec<SignedCheckpoint>, super::AuditError> {
        (**self).load()
    }
}

/// A [`CheckpointStore`] in memory, shared by its clones: for tests, and
/// for a custodian that checkpoints its built-in log within one process
/// (it does not outlive the process, so it vouches for nothing after a
/// restart). Keeps the newest checkpoint of each stream and every archive
/// base, like [`DirCheckpointStore`].
///
/// ```
/// use privacy_pledge::audit::{Checkpoint, CheckpointSigner, CheckpointStore, MemoryCheckpointStore, StreamId};
/// use privacy_pledge::time::Timestamp;
///
/// let store = MemoryCheckpointStore::new();
/// let signer = CheckpointSigner::from_seed(&[1; 32])?;
/// let stream = StreamId::random()?;
/// store.save(&signer.sign(stream, Checkpoint::new(3, [9; 32]), Timestamp::now()))?;
/// store.save(&signer.sign(stream, Checkpoint::new(4, [8; 32]), Timestamp::now()))?;
/// assert_eq!(store.clone().load()?[0].checkpoint().seq(), 4);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, Default)]
pub struct MemoryCheckpointStore {
    kept: std::sync::Arc<std::sync::Mutex<Vec<SignedCheckpoint>>>,
}

impl MemoryCheckpointStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

impl CheckpointStore for MemoryCheckpointStore {
    fn save(&self, checkpoint: &SignedCheckpoint) -> Result<(), super::AuditError> {
        let mut kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        let base = checkpoint.is_base();
        kept.retain(|c| {
            c.stream != checkpoint.stream
                || c.is_base() != base
                || (base && c.seq != checkpoint.seq)
        });
        kept.push(*checkpoint);
        kept.sort_by_key(|c| (c.stream, c.seq));
        Ok(())
    }

    fn load(&self) -> Result<Vec<SignedCheckpoint>, super::AuditError> {
        Ok(self.kept.lock().unwrap_or_else(|p| p.into_inner()).clone())
    }
}

/// The default [`CheckpointStore`]: a directory that keeps each stream's
/// newest checkpoint in two slot files written in turn.
///
/// # Files
///
/// - `<stream>.0.ckpt` and `<stream>.1.ckpt`: the two slots. A save
///   overwrites, in place, the slot that does not hold the stream's newest
///   checkpoint, and syncs its data: one `fdatasync` of a file whose size
///   and blocks stay as they were. A new file synced and renamed over the
///   old one (as earlier versions saved) also leaves the file system
///   metadata to commit: the crate's README, Performance, says what that
///   cost a sign-up. A slot is the checkpoint's JSON, a line with its
///   SHA-256, and padding to 4 KiB.
/// - `<stream>.lock`: empty; a save holds its exclusive lock (`flock` on
///   Unix) from choosing the slot to the sync, so two saves of a stream —
///   two threads, two processes — never write at once. A save waits for
///   the lock for at most 10 s, then fails (a process that died holding
///   it, whose forked child still has the file open).
/// - `<stream>.base.<seq>.json`: an archive base ([`save_base`](Self::save_base)),
///   written to a file of its own, synced and renamed into place.
/// - `<stream>.json`: the newest checkpoint as earlier versions kept it
///   (replaced by renaming); still read, never written.
///
/// # Why it survives a crash
///
/// A crash or power cut in the middle of a save can leave that save's slot
/// half old, half new. Its digest line then does not match (a slot whose
/// JSON parses but does not match its digest — sectors of two saves — is
/// caught the same way), [`load`](CheckpointStore::load) skips it, and the
/// other slot still holds the previous checkpoint, whole: it was written by
/// an earlier save that had synced before this one began. Only a stream
/// whose two slots are both unreadable is an error: no crash makes that
/// (one save at a time), so the directory was damaged. A stream's first
/// save cut short leaves it with no checkpoint, as if it had not run.
///
/// `load` returns each stream's newest checkpoint of its slots (and of an
/// earlier version's `<stream>.json`), so a save that comes late with an
/// older checkpoint — another process's — never hides a newer one.
///
/// ```
/// use privacy_pledge::audit::{Checkpoint, CheckpointSigner, CheckpointStore, DirCheckpointStore, StreamId};
/// use privacy_pledge::time::Timestamp;
///
/// let dir = std::env::temp_dir().join(format!("pp-doc-checkpoints-{}", std::process::id()));
/// let store = DirCheckpointStore::new(&dir)?;
/// let signer = CheckpointSigner::from_seed(&[1; 32])?;
/// let stream = StreamId::random()?;
/// store.save(&signer.sign(stream, Checkpoint::new(3, [9; 32]), Timestamp::now()))?;
/// assert_eq!(store.load()?[0].checkpoint().seq(), 3);
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct DirCheckpointStore {
    dir: std::path::PathBuf,
}

impl DirCheckpointStore {
    /// The store in `dir` (created if missing).
    pub fn new(dir: impl Into<std::path::PathBuf>) -> std::io::Result<Self> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir)?;
        Ok(DirCheckpointStore { dir })
    }

    /// The directory.
    pub fn path(&self) -> &std::path::Path {
        &self.dir
    }

    /// Slot `slot` (0 or 1) of `stream`.
    fn slot(&self, stream: StreamId, slot: usize) -> std::path::PathBuf {
        self.dir.join(format!("{stream}.{slot}.ckpt"))
    }

    /// The freshness anchor kept in this directory (`state.log`), beside
    /// the checkpoints and out of the database's reach like them: give it to
    /// [`CustodianBuilder::freshness_anchor`](crate::CustodianBuilder::freshness_anchor).
    pub fn anchor(&self) -> std::io::Result<crate::freshness::DirAnchorStore> {
        crate::freshness::DirAnchorStore::new(&self.dir)
    }

    /// Keeps `checkpoint` as the base of its stream: the signed end of an
    /// archived segment ([`CheckpointSigner::sign_base`]), from which
    /// [`verify_public`] starts the stream's remaining entries. Kept beside
    /// the newest checkpoint, never replaced by it
    /// (`<stream>.base.<seq>.json`, one per archived segment). An ordinary
    /// checkpoint is refused: it was not signed as a base, and verifiers
    /// would not start a stream at it.
    pub fn save_base(&self, checkpoint: &SignedCheckpoint) -> Result<(), super::AuditError> {
        if !checkpoint.is_base() {
            return Err(super::AuditError::new(
                "checkpoint store: not an archive base (sign it with CheckpointSigner::sign_base)",
            ));
        }
        self.write(
            &format!("{}.base.{}.json", checkpoint.stream, checkpoint.seq),
            checkpoint,
        )
    }

    /// Writes `name` atomically: a temporary file of this save's own
    /// (named by process and a random tag, and created only if new, so two
    /// saves at once — two threads, two sinks on one directory, processes
    /// in different pid namespaces, a pid come back after a crash — never
    /// truncate or rename each other's), synced, then renamed over `name`.
    fn write(&self, name: &str, checkpoint: &SignedCheckpoint) -> Result<(), super::AuditError> {
        use std::io::Write;
        let tag = crate::crypto::random_array::<8>()
            .map_err(|_| super::AuditError::new("checkpoint store: random generator failed"))?;
        let tmp = self.dir.join(format!(
            "{name}.{}-{:016x}.tmp",
            std::process::id(),
            u64::from_be_bytes(tag)
        ));
        let json = serde_json::to_vec(checkpoint).map_err(|e| io_error("encode", e))?;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(|e| io_error("create", e))?;
        let written = f
            .write_all(&json)
            .map_err(|e| io_error("write", e))
            .and_then(|()| f.sync_all().map_err(|e| io_error("sync", e)))
            .and_then(|()| {
                std::fs::rename(&tmp, self.dir.join(name)).map_err(|e| io_error("rename", e))
            });
        if written.is_err() {
            // Nothing half-written is left for a later `load` to skip.
            let _ = std::fs::remove_file(&tmp);
        }
        written
    }
}

fn io_error(what: &str, e: impl fmt::Display) -> super::AuditError {
    super::AuditError::new(format!("checkpoint store: {what}: {e}"))
}

impl CheckpointStore for DirCheckpointStore {
    fn save(&self, checkpoint: &SignedCheckpoint) -> Result<(), super::AuditError> {
        if checkpoint.is_base() {
            // Kept beside the newest, as `MemoryCheckpointStore` keeps one.
            return self.save_base(checkpoint);
        }
        let stream = checkpoint.stream;
        let _lock = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(self.dir.join(format!("{stream}.lock")))
            .and_then(crate::files::FileLock::exclusive)
            .map_err(|e| io_error("lock", e))?;
        // The slot not holding the newest whole checkpoint: an empty or
        // unreadable one first, else the older.
        let seq_in = |slot: usize| {
            std::fs::read(self.slot(stream, slot))
                .ok()
                .and_then(|bytes| read_slot(&bytes, stream))
                .map(|c| c.seq)
        };
        let slot = match (seq_in(0), seq_in(1)) {
            (None, _) => 0,
            (_, None) => 1,
            (Some(a), Some(b)) => usize::from(a > b),
        };
        write_slot(&self.slot(stream, slot), checkpoint)
    }

    fn load(&self) -> Result<Vec<SignedCheckpoint>, super::AuditError> {
        let mut out = Newest::default();
        // Streams with two slot files and no whole one among them.
        let mut unreadable = std::collections::HashMap::<StreamId, usize>::new();
        for entry in std::fs::read_dir(&self.dir).map_err(|e| io_error("read", e))? {
            let path = entry.map_err(|e| io_error("read", e))?.path();
            match path.extension().and_then(|e| e.to_str()) {
                Some("json") => {
                    let bytes = std::fs::read(&path).map_err(|e| io_error("read", e))?;
                    let c = serde_json::from_slice::<SignedCheckpoint>(&bytes)
                        .map_err(|_| io_error("malformed file", path.display()))?;
                    out.keep(c);
                }
                Some("ckpt") => {
                    let Some(stream) = slot_stream(&path) else {
                        continue;
                    };
                    let bytes = std::fs::read(&path).map_err(|e| io_error("read", e))?;
                    match read_slot(&bytes, stream) {
                        Some(c) => {
                            out.keep(c);
                            unreadable.insert(stream, usize::MAX);
                        }
                        // Cut short by a crash, or read while being written.
                        None => {
                            let n = unreadable.entry(stream).or_default();
                            *n = n.saturating_add(1);
                        }
                    }
                }
                _ => {}
            }
        }
        for (stream, n) in unreadable {
            if n != 2 {
                continue;
            }
            // Both read while saves wrote them (the reader paused between
            // its two reads): read again with no save running.
            let _lock = match std::fs::File::open(self.dir.join(format!("{stream}.lock"))) {
                Ok(lock) => crate::files::FileLock::shared(lock).map(Some),
                // No save ever ran here: saves make the lock file first.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(e),
            }
            .map_err(|e| io_error("lock", e))?;
            let whole = (0..2)
                .filter_map(|slot| std::fs::read(self.slot(stream, slot)).ok())
                .filter_map(|bytes| read_slot(&bytes, stream))
                .max_by_key(|c| c.seq)
                .ok_or_else(|| io_error("both slots unreadable for stream", stream))?;
            out.keep(whole);
        }
        Ok(out.into_sorted())
    }
}

/// Checkpoints as [`DirCheckpointStore::load`] returns them: every base,
/// and one newest checkpoint per stream.
#[derive(Default)]
struct Newest {
    bases: Vec<SignedCheckpoint>,
    heads: std::collections::HashMap<StreamId, SignedCheckpoint>,
}

impl Newest {
    fn keep(&mut self, c: SignedCheckpoint) {
        if c.is_base() {
            self.bases.push(c);
            return;
        }
        let kept = self.heads.entry(c.stream).or_insert(c);
        if kept.seq < c.seq {
            *kept = c;
        }
    }

    fn into_sorted(self) -> Vec<SignedCheckpoint> {
        let mut out = self.bases;
        out.extend(self.heads.into_values());
        out.sort_by_key(|c| (c.stream, c.seq));
        out
    }
}

/// The size a slot file is padded to, so that saves keep its size (and
/// blocks) and its sync flushes data only.
const SLOT_LEN: usize = 4096;

/// The stream a slot file's name (`<stream>.<0|1>.ckpt`) names.
fn slot_stream(path: &std::path::Path) -> Option<StreamId> {
    let name = path.file_name()?.to_str()?;
    let stem = name
        .strip_suffix(".0.ckpt")
        .or_else(|| name.strip_suffix(".1.ckpt"))?;
    stem.parse().ok()
}

/// A slot's bytes: the checkpoint's JSON, a newline, the hex SHA-256 of
/// the JSON, a newline, and spaces up to [`SLOT_LEN`] (or the next multiple
/// of it).
fn slot_bytes(checkpoint: &SignedCheckpoint) -> Result<Vec<u8>, super::AuditError> {
    let mut out = serde_json::to_vec(checkpoint).map_err(|e| io_error("encode", e))?;
    let digest = ring::digest::digest(&ring::digest::SHA256, &out);
    let mut hex = String::with_capacity(64);
    crate::subject::push_hex(&mut hex, digest.as_ref());
    out.push(b'\n');
    out.extend_from_slice(hex.as_bytes());
    out.push(b'\n');
    out.resize(out.len().div_ceil(SLOT_LEN) * SLOT_LEN, b' ');
    Ok(out)
}

/// The checkpoint slot `bytes` of `stream` holds, if it is whole: `None`
/// for an empty, cut-short or mixed slot (its digest line does not match
/// its JSON), and for one holding another stream's checkpoint or an
/// archive base (a save writes neither there).
fn read_slot(bytes: &[u8], stream: StreamId) -> Option<SignedCheckpoint> {
    let end = bytes.iter().position(|&b| b == b'\n')?;
    let (json, rest) = (bytes.get(..end)?, bytes.get(end + 1..)?);
    let digest = crate::subject::decode_hex::<32>(core::str::from_utf8(rest.get(..64)?).ok()?)?;
    if rest.get(64) != Some(&b'\n')
        || ring::digest::digest(&ring::digest::SHA256, json).as_ref() != digest
    {
        return None;
    }
    serde_json::from_slice::<SignedCheckpoint>(json)
        .ok()
        .filter(|c| c.stream == stream && !c.is_base())
}

/// Overwrites the slot at `path` in place with `checkpoint` and syncs its
/// data; a slot file made here is made durable with its directory's entry.
fn write_slot(
    path: &std::path::Path,
    checkpoint: &SignedCheckpoint,
) -> Result<(), super::AuditError> {
    use std::io::Write;
    let bytes = slot_bytes(checkpoint)?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| io_error("open", e))?;
    let len = f.metadata().map_err(|e| io_error("open", e))?.len();
    f.write_all(&bytes).map_err(|e| io_error("write", e))?;
    if len > bytes.len() as u64 {
        f.set_len(bytes.len() as u64)
            .map_err(|e| io_error("write", e))?;
    }
    f.sync_data().map_err(|e| io_error("sync", e))?;
    if let (0, Some(dir)) = (len, path.parent()) {
        crate::files::sync_dir(dir).map_err(|e| io_error("sync", e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Dir(DirCheckpointStore);

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(self.0.path());
        }
    }

    fn dir() -> Dir {
        let tag = u64::from_be_bytes(crate::crypto::random_array::<8>().unwrap());
        let path = std::env::temp_dir().join(format!("pp-slots-{tag:016x}"));
        Dir(DirCheckpointStore::new(path).unwrap())
    }

    fn signed(stream: StreamId, seq: u64) -> SignedCheckpoint {
        CheckpointSigner::from_seed(&[7; 32]).unwrap().sign(
            stream,
            Checkpoint::new(seq, [seq as u8; 32]),
            Timestamp::from_unix_nanos(seq),
        )
    }

    fn newest(store: &DirCheckpointStore) -> Vec<u64> {
        store.load().unwrap().iter().map(|c| c.seq).collect()
    }

    /// The slot holding `seq` (0 or 1).
    fn slot_of(store: &DirCheckpointStore, stream: StreamId, seq: u64) -> usize {
        (0..2)
            .find(|&i| {
                read_slot(&std::fs::read(store.slot(stream, i)).unwrap(), stream).map(|c| c.seq)
                    == Some(seq)
            })
            .unwrap()
    }

    /// A5 (a power cut in the middle of a save): whatever the cut leaves of
    /// the slot being written — a prefix, zeros, new sectors over old ones
    /// — the other slot's checkpoint is loaded, and the next save writes
    /// over the damaged slot, never over the whole one.
    #[test]
    fn a5_a_save_cut_short_leaves_the_previous_checkpoint() {
        let d = dir();
        let stream = StreamId::random().unwrap();
        d.0.save(&signed(stream, 10)).unwrap();
        d.0.save(&signed(stream, 20)).unwrap();
        assert_eq!(newest(&d.0), [20]);
        let target = slot_of(&d.0, stream, 10);
        let path = d.0.slot(stream, target);
        let old = std::fs::read(&path).unwrap();
        let new = slot_bytes(&signed(stream, 30)).unwrap();
        assert_eq!((old.len(), new.len()), (SLOT_LEN, SLOT_LEN));
        let cut = |bytes: Vec<u8>| {
            std::fs::write(&path, bytes).unwrap();
            assert_eq!(newest(&d.0), [20], "the previous checkpoint, whole");
        };
        // The JSON and its digest line: a cut after them lost only padding.
        let json_end = new.iter().position(|&b| b == b'\n').unwrap();
        for len in [0, 1, 100, json_end, json_end + 10] {
            cut(new[..len].to_vec());
            cut([&new[..len], &old[len..]].concat());
        }
        cut(vec![0; SLOT_LEN]);
        // The new JSON with the old digest line: sectors of two saves.
        let old_end = old.iter().position(|&b| b == b'\n').unwrap();
        cut([&new[..=json_end], &old[old_end + 1..]].concat());

        d.0.save(&signed(stream, 30)).unwrap();
        assert_eq!(slot_of(&d.0, stream, 30), target, "the damaged slot");
        assert_eq!(slot_of(&d.0, stream, 20), 1 - target, "kept whole");
        assert_eq!(newest(&d.0), [30]);
        // Both whole: the older is written over, the newer kept whole.
        d.0.save(&signed(stream, 40)).unwrap();
        assert_eq!(slot_of(&d.0, stream, 40), 1 - target, "over the older");
        assert_eq!(slot_of(&d.0, stream, 30), target);
        // And an older checkpoint saved late never hides the newest.
        d.0.save(&signed(stream, 35)).unwrap();
        assert_eq!(slot_of(&d.0, stream, 40), 1 - target);
        assert_eq!(newest(&d.0), [40]);
        for i in 0..2 {
            let len = std::fs::metadata(d.0.slot(stream, i)).unwrap().len();
            assert_eq!(len, SLOT_LEN as u64, "a slot keeps its size");
        }
    }

    /// A5 (two processes saving one stream): a save waits for the stream's
    /// lock, so the slot it chose is never written by another save at once
    /// (both could choose the older slot, and the later, older checkpoint
    /// would hide the newer one).
    #[test]
    fn a5_a_save_waits_for_the_streams_lock() {
        let d = dir();
        let stream = StreamId::random().unwrap();
        d.0.save(&signed(stream, 1)).unwrap();
        let held = std::fs::File::open(d.0.path().join(format!("{stream}.lock"))).unwrap();
        held.lock().unwrap();
        let saved = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|s| {
            s.spawn(|| {
                d.0.save(&signed(stream, 2)).unwrap();
                saved.store(true, std::sync::atomic::Ordering::SeqCst);
            });
            std::thread::sleep(std::time::Duration::from_millis(200));
            assert!(
                !saved.load(std::sync::atomic::Ordering::SeqCst),
                "saved under another's lock"
            );
            assert_eq!(newest(&d.0), [1]);
            held.unlock().unwrap();
        });
        assert!(saved.into_inner());
        assert_eq!(newest(&d.0), [2]);
    }

    /// Two unreadable slots are a damaged directory, not a stream without a
    /// checkpoint (a crash damages one, the one being written); a single
    /// unreadable slot is a first save cut short.
    #[test]
    fn two_unreadable_slots_are_an_error_and_a_lone_one_is_no_checkpoint() {
        let d = dir();
        let stream = StreamId::random().unwrap();
        std::fs::write(d.0.slot(stream, 0), b"{\"stream\":").unwrap();
        assert_eq!(newest(&d.0), [] as [u64; 0]);
        std::fs::write(d.0.slot(stream, 1), [b' '; SLOT_LEN]).unwrap();
        let err = d.0.load().unwrap_err().to_string();
        assert!(err.contains("both slots unreadable"), "{err}");
        std::fs::write(d.0.path().join(format!("{stream}.lock")), b"").unwrap();
        let err = d.0.load().unwrap_err().to_string();
        assert!(err.contains("both slots unreadable"), "{err}");
        // Saving again repairs it.
        d.0.save(&signed(stream, 5)).unwrap();
        assert_eq!(newest(&d.0), [5]);
    }

    /// A load that found both slots unreadable — each read while a save
    /// wrote it, the reader paused between its two reads — reads them
    /// again once no save runs, and finds the one the save finished.
    #[test]
    fn a5_a_load_that_finds_both_slots_mid_write_reads_them_again() {
        let d = dir();
        let stream = StreamId::random().unwrap();
        d.0.save(&signed(stream, 1)).unwrap();
        d.0.save(&signed(stream, 2)).unwrap();
        // A save holds the lock, with both slots as a load saw them mid-write.
        let held = std::fs::File::open(d.0.path().join(format!("{stream}.lock"))).unwrap();
        held.lock().unwrap();
        for i in 0..2 {
            std::fs::write(d.0.slot(stream, i), b"{").unwrap();
        }
        std::thread::scope(|s| {
            let load = s.spawn(|| d.0.load());
            std::thread::sleep(std::time::Duration::from_millis(200));
            assert!(!load.is_finished(), "waits for the save to finish");
            std::fs::write(d.0.slot(stream, 0), slot_bytes(&signed(stream, 3)).unwrap()).unwrap();
            held.unlock().unwrap();
            let kept = load.join().unwrap().unwrap();
            assert_eq!(kept.iter().map(|c| c.seq).collect::<Vec<_>>(), [3]);
        });
    }

    /// A slot holds the checkpoint of the stream its name says; one moved
    /// under another stream's name is not read as that stream's.
    #[test]
    fn a_slot_under_another_streams_name_is_not_read() {
        let d = dir();
        let (a, b) = (StreamId::random().unwrap(), StreamId::random().unwrap());
        d.0.save(&signed(a, 3)).unwrap();
        d.0.save(&signed(b, 4)).unwrap();
        std::fs::copy(d.0.slot(a, 0), d.0.slot(b, 1)).unwrap();
        let kept = d.0.load().unwrap();
        assert_eq!(kept.len(), 2);
        assert!(kept.iter().any(|c| c.stream == b && c.seq == 4));
    }

    /// A save never writes an archive base into a slot (it goes to its own
    /// file), so one found there — put there by hand — is not read: a
    /// verifier starts a stream only at a base kept as one.
    #[test]
    fn an_archive_base_in_a_slot_is_not_read() {
        let d = dir();
        let stream = StreamId::random().unwrap();
        let base = CheckpointSigner::from_seed(&[7; 32]).unwrap().sign_base(
            stream,
            Checkpoint::new(40, [1; 32]),
            [2; 32],
            Timestamp::from_unix_nanos(1),
        );
        std::fs::write(d.0.slot(stream, 0), slot_bytes(&base).unwrap()).unwrap();
        assert!(d.0.load().unwrap().is_empty());
    }

    /// A directory an earlier version wrote (`<stream>.json`, replaced by
    /// renaming) still loads, and the newest of its file and the slots is
    /// the stream's checkpoint; bases are all kept beside it.
    #[test]
    fn an_earlier_versions_file_is_read_and_the_newest_counts() {
        let d = dir();
        let stream = StreamId::random().unwrap();
        let legacy = d.0.path().join(format!("{stream}.json"));
        std::fs::write(&legacy, serde_json::to_vec(&signed(stream, 50)).unwrap()).unwrap();
        assert_eq!(newest(&d.0), [50]);
        d.0.save(&signed(stream, 20)).unwrap();
        assert_eq!(newest(&d.0), [50]);
        d.0.save(&signed(stream, 60)).unwrap();
        assert_eq!(newest(&d.0), [60]);
        let base = CheckpointSigner::from_seed(&[7; 32]).unwrap().sign_base(
            stream,
            Checkpoint::new(40, [1; 32]),
            [2; 32],
            Timestamp::from_unix_nanos(1),
        );
        d.0.save(&base).unwrap();
        assert_eq!(newest(&d.0), [40, 60]);
        assert!(legacy.exists(), "never written, never removed");
    }

    /// Bytes from outside (a damaged file): every prefix of a slot, and
    /// every slot with one byte changed, is refused without a panic.
    #[test]
    fn no_damaged_slot_is_read_and_none_panics() {
        let stream = StreamId::random().unwrap();
        let bytes = slot_bytes(&signed(stream, 9)).unwrap();
        assert_eq!(read_slot(&bytes, stream).map(|c| c.seq), Some(9));
        let whole = bytes.iter().position(|&b| b == b'\n').unwrap() + 66;
        for len in 0..whole {
            assert!(
                read_slot(&bytes[..len], stream).is_none(),
                "prefix of {len}"
            );
        }
        for i in 0..whole {
            let mut changed = bytes.clone();
            changed[i] ^= 0x20;
            assert!(read_slot(&changed, stream).is_none(), "byte {i} changed");
        }
    }
}
