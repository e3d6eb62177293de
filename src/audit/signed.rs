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
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
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

    /// The stream and head, if the signature verifies under `key`.
    pub fn verify(&self, key: &CheckpointKey) -> Result<(StreamId, Checkpoint), BadSignature> {
        let head = self.checkpoint();
        let msg = message(self.stream, &head, self.time);
        signature::UnparsedPublicKey::new(&signature::ED25519, key.as_bytes())
            .verify(&msg, &self.signature)
            .map(|()| (self.stream, head))
            .map_err(|_| BadSignature)
    }
}

mod hex64 {
    use super::*;

    pub fn serialize<S: Serializer>(v: &[u8; 64], s: S) -> Result<S::Ok, S::Error> {
        let mut out = String::with_capacity(128);
        for b in v {
            out.push_str(&format!("{b:02x}"));
        }
        s.serialize_str(&out)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 64], D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        crate::subject::decode_hex::<64>(&s)
            .ok_or_else(|| serde::de::Error::custom("expected 128 lowercase hex digits"))
    }
}

/// What [`verify_public`] found.
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
    pub fn is_intact(&self) -> bool {
        self.bad_checkpoints.is_empty() && self.streams.iter().all(|s| s.result.is_ok())
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
/// ([`StreamReport::vouched_through`]). A stream whose oldest entries were
/// archived starts after the valid checkpoint that closed the archive (keep
/// it among `checkpoints`, e.g. with [`DirCheckpointStore::save_base`]).
/// Version-1 entries cannot be checked without the audit key and are
/// reported [`Tamper::NotChained`].
pub fn verify_public(
    entries: &[AuditEvent],
    key: &CheckpointKey,
    checkpoints: &[SignedCheckpoint],
) -> PublicReport {
    let mut valid: Vec<(StreamId, Checkpoint)> = Vec::new();
    let mut bad_checkpoints = Vec::new();
    for c in checkpoints {
        match c.verify(key) {
            Ok(checkpoint) => valid.push(checkpoint),
            Err(BadSignature) => bad_checkpoints.push(*c),
        }
    }
    let streams = super::stream::verify_grouped(entries, &valid, |chain, trusted, start| {
        verify_from(chain, None, trusted, start)
    });
    PublicReport {
        streams,
        bad_checkpoints,
    }
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

/// The default [`CheckpointStore`]: a directory with one JSON file per
/// stream (`<stream>.json`), replaced atomically (written, synced, renamed).
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

    /// The freshness anchor kept in this directory (`state.log`), beside
    /// the checkpoints and out of the database's reach like them: give it to
    /// [`CustodianBuilder::freshness_anchor`](crate::CustodianBuilder::freshness_anchor).
    pub fn anchor(&self) -> std::io::Result<crate::freshness::DirAnchorStore> {
        crate::freshness::DirAnchorStore::new(&self.dir)
    }

    /// Keeps `checkpoint` as the base of its stream: the signed end of an
    /// archived segment, from which [`verify_public`] starts the stream's
    /// remaining entries. Kept beside the newest checkpoint, never replaced
    /// by it (`<stream>.base.json`).
    pub fn save_base(&self, checkpoint: &SignedCheckpoint) -> Result<(), super::AuditError> {
        self.write(&format!("{}.base.json", checkpoint.stream), checkpoint)
    }

    fn write(&self, name: &str, checkpoint: &SignedCheckpoint) -> Result<(), super::AuditError> {
        use std::io::Write;
        let tmp = self.dir.join(format!("{name}.tmp"));
        let json = serde_json::to_vec(checkpoint).map_err(|e| io_error("encode", e))?;
        let mut f = std::fs::File::create(&tmp).map_err(|e| io_error("create", e))?;
        f.write_all(&json).map_err(|e| io_error("write", e))?;
        f.sync_all().map_err(|e| io_error("sync", e))?;
        std::fs::rename(&tmp, self.dir.join(name)).map_err(|e| io_error("rename", e))
    }
}

fn io_error(what: &str, e: impl fmt::Display) -> super::AuditError {
    super::AuditError::new(format!("checkpoint store: {what}: {e}"))
}

impl CheckpointStore for DirCheckpointStore {
    fn save(&self, checkpoint: &SignedCheckpoint) -> Result<(), super::AuditError> {
        self.write(&format!("{}.json", checkpoint.stream), checkpoint)
    }

    fn load(&self) -> Result<Vec<SignedCheckpoint>, super::AuditError> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&self.dir).map_err(|e| io_error("read", e))? {
            let path = entry.map_err(|e| io_error("read", e))?.path();
            if path.extension().and_then(|e| e.to_str()) != Some("json") {
                continue;
            }
            let bytes = std::fs::read(&path).map_err(|e| io_error("read", e))?;
            let c: SignedCheckpoint = serde_json::from_slice(&bytes)
                .map_err(|_| io_error("malformed file", path.display()))?;
            out.push(c);
        }
        out.sort_by_key(|c| (c.stream, c.seq));
        Ok(out)
    }
}
