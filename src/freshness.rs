//! Freshness (rules R7, R11): the anchor that state rows in the database are
//! checked against, so that an earlier *authentic* row is refused.
//!
//! Consent rows and erasure tombstones in the database are authenticated, so
//! no one without the keys can forge one. But a database operator (actor A2)
//! can put back an earlier authentic copy — a consent row from before the
//! withdrawal, an erased subject's key rows from a backup — or delete a row
//! outright. Authenticated is not fresh. The **freshness anchor** is a log
//! kept where the operator cannot reach, beside the signed checkpoints
//! ([`DirCheckpointStore::anchor`](crate::audit::DirCheckpointStore::anchor)):
//! every consent change and every erasure is appended to it *before* the
//! database row is written, and every use-time decision compares the row
//! with the latest anchored state.
//!
//! ```
//! use std::sync::Arc;
//! use privacy_pledge::{Custodian, Error, SubjectId};
//! use privacy_pledge::consent::{ConsentStore, MemoryConsentStore};
//! use privacy_pledge::crypto::Keyring;
//! use privacy_pledge::freshness::MemoryAnchorStore;
//! use privacy_pledge::purpose::Newsletter;
//!
//! let rows = Arc::new(MemoryConsentStore::new()); // the database's table
//! let custodian = Custodian::builder()
//!     .keyring(Keyring::generate()?)
//!     .consent_store(rows.clone())
//!     .freshness_anchor(MemoryAnchorStore::new()) // outside the database
//!     // Read the row at every use (the default trusts a row read for 1 s).
//!     .consent_revalidate_after(std::time::Duration::ZERO)
//!     .build()?;
//! let ada = SubjectId::random();
//! custodian.consents().grant::<Newsletter>(ada)?;
//! let granted = rows.load(ada, Newsletter::ID)?.unwrap();
//! custodian.consents().withdraw::<Newsletter>(ada)?;
//!
//! // A2 puts the authentic "granted" row back: refused, never live again.
//! rows.put_back(granted);
//! let err = custodian.consent_proof::<Newsletter>(ada).unwrap_err();
//! assert!(matches!(err, Error::ConsentStale { .. }));
//! # use privacy_pledge::purpose::Purpose;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # The argument
//!
//! - **What is anchored.** Each consent change appends the full new row
//!   (subject, purpose, state, version and the row's MAC); each erasure
//!   appends `erasing` before anything is destroyed, `planned` (what the
//!   key store is about to destroy: [`KeyStore::to_destroy`](crate::crypto::KeyStore::to_destroy))
//!   next, and `erased` (with the receipt) after — so an erasure that dies
//!   after destroying the keys is retried to the same, whole receipt. The log is a hash chain: each line carries
//!   `HMAC(anchor key, previous MAC ‖ entry)`, the anchor key derived from
//!   the keyring, so a line cannot be forged, edited, reordered or dropped
//!   from the middle without the chain failing; a log shorter than a
//!   process has already seen is refused.
//! - **One order for the fleet.** An append succeeds only if the log still
//!   has the length its writer last read (compare-and-append under an
//!   exclusive file lock in [`DirAnchorStore`]), so concurrent writers in
//!   several processes are serialised; the loser reads the new lines and
//!   tries again on the new state.
//! - **The check.** At use time the consent row read from the database must
//!   *equal* the latest anchored row of its subject and purpose. A row put
//!   back to an earlier version (rolled back), a deleted row, a row whose
//!   subject was anchored as erased, a renumbered or resurrected row: none
//!   equals it, so the use is refused with [`Error::ConsentStale`]
//!   (recorded as a refusal) and the anchored row is written back. An
//!   erasure anchored by any process refuses every use of the subject
//!   ([`Error::Erased`]), whatever the key rows say.
//! - **The bound.** A process re-reads the anchor's new lines at most
//!   every [`consent_revalidate_after`](crate::CustodianBuilder::consent_revalidate_after)
//!   (default 1 s; it reads only the bytes appended since, so its cost does
//!   not grow with the log) and at once when a row disagrees with what it
//!   has seen. So a change made by another process is enforced here within
//!   the bound, a change made here at once, and after a restart at once (the
//!   log is read in full at start-up).
//! - **Fail closed.** If the anchor cannot be read or does not verify,
//!   every use that depends on consent or erasure is refused
//!   ([`Error::Anchor`]).
//! - **Erasure receipts.** An erasure journals its receipt — the subject's
//!   id with the lookup tokens and pseudonyms noted for them — before it
//!   destroys anything, so that a retry after a fault returns it whole.
//!   Until the log is compacted, a copy of it (a backup) ties those tokens
//!   to the erased subject's id: whoever also holds the keyring can
//!   confirm a guessed email as theirs. Compaction keeps a finished
//!   erasure's generations and drops its tokens (a retry after it returns
//!   a receipt without them): apply receipts, then compact.
//! - **Compaction.** The log grows with every consent change and erasure;
//!   [`Custodian::compact_anchor`](crate::Custodian::compact_anchor)
//!   rewrites it as the state it holds, a fresh chain under the same key
//!   ([`AnchorStore::replace`]). Each log has an epoch
//!   ([`AnchorStore::epoch`]: for [`DirAnchorStore`] its file's inode), and
//!   every append names the epoch it read ([`AnchorStore::append_to`]), so a
//!   process that read the log before a compaction fails closed instead of
//!   reading, or appending at, offsets of a log it never saw. An epoch may
//!   come back (a file system reuses inode numbers), so each re-read also
//!   starts at the last line the process verified, which must still end
//!   its view (its MAC chains every line before it); and a compaction
//!   replaces only the log it read — its epoch, length and last line,
//!   checked under the lock ([`AnchorStore::replace_after`]) — never one
//!   another compaction wrote meanwhile.
//! - **What it rests on.** The anchor's directory must be out of the
//!   database operator's reach (like the checkpoints), and the anchor key is
//!   derived from the keyring, which A2 does not hold. Someone who can
//!   delete the anchor's file *and* restart every process makes it start
//!   empty; then every consent row disagrees with it and is refused, but
//!   erasures recorded only there are forgotten — keep the anchor with the
//!   checkpoints and back it up with them.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, RwLock, RwLockReadGuard};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::consent::ConsentRecord;
use crate::crypto::{LookupRef, PseudonymRef};
use crate::purpose::PurposeId;
use crate::subject::SubjectId;
use crate::time::Timestamp;
use crate::Error;

/// The freshness anchor could not be read, or does not verify.
///
/// The message names what failed (a path, a line number), never a subject.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("freshness anchor: {0}")]
pub struct AnchorError(pub Cow<'static, str>);

impl AnchorError {
    /// An error with a message (for hosts implementing [`AnchorStore`]).
    pub fn new(message: impl Into<Cow<'static, str>>) -> Self {
        AnchorError(message.into())
    }
}

/// Where the freshness anchor's log lives: an append-only sequence of bytes
/// outside the database's reach, shared by every process of the service.
///
/// The custodian writes whole lines and checks every byte it reads (a hash
/// chain under a key the store never sees), so a store only has to keep
/// bytes and serialise appends. [`DirAnchorStore`] is the one to use;
/// [`MemoryAnchorStore`] is for tests and single-process hosts.
pub trait AnchorStore: Send + Sync {
    /// Appends `line` if the log is exactly `expected_len` bytes long now,
    /// durably, before returning `Ok(true)`; `Ok(false)` (and nothing
    /// written) if another writer appended first.
    fn append(&self, expected_len: u64, line: &[u8]) -> Result<bool, AnchorError>;

    /// The log's bytes from `offset` to its end.
    fn read_from(&self, offset: u64) -> Result<Vec<u8>, AnchorError>;

    /// The log's length in bytes (asked on every re-read, so it must be cheap).
    fn byte_len(&self) -> Result<u64, AnchorError>;

    /// Replaces the whole log with `bytes` if it is exactly `expected_len`
    /// bytes long now, durably and at once (a reader sees the old log or
    /// the new, never a mix), before returning `Ok(true)`; `Ok(false)` (and
    /// nothing changed) if another writer appended first. What
    /// [`replace_after`](Self::replace_after)'s default calls. The default
    /// refuses: a store that only appends cannot be compacted.
    fn replace(&self, expected_len: u64, bytes: &[u8]) -> Result<bool, AnchorError> {
        let _ = (expected_len, bytes);
        Err(AnchorError::new("this anchor store cannot be compacted"))
    }

    /// Which log this is: a number that changes whenever the log is
    /// [replaced](Self::replace), so that a process that read the old one
    /// finds out instead of reading, or appending at, offsets of a log it
    /// never saw. The default, for a store that never replaces, is `0`.
    fn epoch(&self) -> Result<u64, AnchorError> {
        Ok(0)
    }

    /// [`append`](Self::append), but only to the log of `epoch` (checked
    /// under the same lock as the length): `Err` if it was replaced since.
    /// A store that implements [`replace`](Self::replace) must implement
    /// this too; the default, for one that does not, appends.
    fn append_to(&self, epoch: u64, expected_len: u64, line: &[u8]) -> Result<bool, AnchorError> {
        let _ = epoch;
        self.append(expected_len, line)
    }

    /// [`replace`](Self::replace), but only over the log the caller read:
    /// of `epoch`, `expected_len` bytes long, and ending with `last_line`
    /// (the last line the caller verified, empty for an empty log).
    /// `Ok(false)`, and nothing changed, if it is another log — one another
    /// process compacted meanwhile, as long as the one read, whose epoch a
    /// file system may have given again (an inode number reused).
    ///
    /// What [`Custodian::compact_anchor`](crate::Custodian::compact_anchor)
    /// calls. The crate's stores check all three under the lock that
    /// `replace` takes; the default checks them first and then calls
    /// `replace`, so two compactions racing between the check and the
    /// replacement can still lose what the first kept: a store that can
    /// be compacted by several processes implements it.
    fn replace_after(
        &self,
        epoch: u64,
        expected_len: u64,
        last_line: &[u8],
        bytes: &[u8],
    ) -> Result<bool, AnchorError> {
        let start = expected_len.checked_sub(last_line.len() as u64);
        let same = self.epoch()? == epoch
            && self.byte_len()? == expected_len
            && match start {
                Some(start) => self.read_from(start)?.starts_with(last_line),
                None => false,
            };
        if !same {
            return Ok(false);
        }
        self.replace(expected_len, bytes)
    }
}

impl<A: AnchorStore + ?Sized> AnchorStore for std::sync::Arc<A> {
    fn append(&self, expected_len: u64, line: &[u8]) -> Result<bool, AnchorError> {
        (**self).append(expected_len, line)
    }
    fn read_from(&self, offset: u64) -> Result<Vec<u8>, AnchorError> {
        (**self).read_from(offset)
    }
    fn byte_len(&self) -> Result<u64, AnchorError> {
        (**self).byte_len()
    }
    fn replace(&self, expected_len: u64, bytes: &[u8]) -> Result<bool, AnchorError> {
        (**self).replace(expected_len, bytes)
    }
    fn epoch(&self) -> Result<u64, AnchorError> {
        (**self).epoch()
    }
    fn append_to(&self, epoch: u64, expected_len: u64, line: &[u8]) -> Result<bool, AnchorError> {
        (**self).append_to(epoch, expected_len, line)
    }
    fn replace_after(
        &self,
        epoch: u64,
        expected_len: u64,
        last_line: &[u8],
        bytes: &[u8],
    ) -> Result<bool, AnchorError> {
        (**self).replace_after(epoch, expected_len, last_line, bytes)
    }
}

/// An anchor in this process's memory: for tests, and for a host of one
/// process whose consent store is durable but whose restarts may forget.
///
/// ```
/// use privacy_pledge::freshness::{AnchorStore, MemoryAnchorStore};
///
/// let anchor = MemoryAnchorStore::new();
/// assert!(anchor.append(0, b"a\n")?);
/// assert!(!anchor.append(0, b"b\n")?); // someone appended first
/// assert_eq!(anchor.read_from(0)?, b"a\n");
/// # Ok::<(), privacy_pledge::freshness::AnchorError>(())
/// ```
#[derive(Debug, Default)]
pub struct MemoryAnchorStore {
    bytes: Mutex<Vec<u8>>,
    /// Replacements so far (the epoch is one more).
    replaced: AtomicU64,
}

impl MemoryAnchorStore {
    /// An empty anchor.
    pub fn new() -> Self {
        Self::default()
    }

    fn bytes(&self) -> std::sync::MutexGuard<'_, Vec<u8>> {
        self.bytes.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl AnchorStore for MemoryAnchorStore {
    fn append(&self, expected_len: u64, line: &[u8]) -> Result<bool, AnchorError> {
        let mut bytes = self.bytes();
        if bytes.len() as u64 != expected_len {
            return Ok(false);
        }
        bytes.extend_from_slice(line);
        Ok(true)
    }

    fn read_from(&self, offset: u64) -> Result<Vec<u8>, AnchorError> {
        let bytes = self.bytes();
        let start = usize::try_from(offset)
            .ok()
            .filter(|&o| o <= bytes.len())
            .ok_or(AnchorError::new("offset past the end of the log"))?;
        Ok(bytes[start..].to_vec())
    }

    fn byte_len(&self) -> Result<u64, AnchorError> {
        Ok(self.bytes().len() as u64)
    }

    fn replace(&self, expected_len: u64, new: &[u8]) -> Result<bool, AnchorError> {
        let mut bytes = self.bytes();
        if bytes.len() as u64 != expected_len {
            return Ok(false);
        }
        *bytes = new.to_vec();
        self.replaced.fetch_add(1, Ordering::AcqRel);
        Ok(true)
    }

    fn replace_after(
        &self,
        epoch: u64,
        expected_len: u64,
        last_line: &[u8],
        new: &[u8],
    ) -> Result<bool, AnchorError> {
        let mut bytes = self.bytes();
        if self.replaced.load(Ordering::Acquire) + 1 != epoch
            || bytes.len() as u64 != expected_len
            || !bytes.ends_with(last_line)
        {
            return Ok(false);
        }
        *bytes = new.to_vec();
        self.replaced.fetch_add(1, Ordering::AcqRel);
        Ok(true)
    }

    fn epoch(&self) -> Result<u64, AnchorError> {
        let _bytes = self.bytes();
        Ok(self.replaced.load(Ordering::Acquire) + 1)
    }

    fn append_to(&self, epoch: u64, expected_len: u64, line: &[u8]) -> Result<bool, AnchorError> {
        let mut bytes = self.bytes();
        if self.replaced.load(Ordering::Acquire) + 1 != epoch {
            return Err(replaced_error());
        }
        if bytes.len() as u64 != expected_len {
            return Ok(false);
        }
        bytes.extend_from_slice(line);
        Ok(true)
    }
}

/// A log replaced (compacted) since this process read it.
fn replaced_error() -> AnchorError {
    AnchorError::new("the log was replaced (compacted) since this process read it: restart it")
}

/// The anchor as a file, `state.log`, in a directory outside the
/// database's reach — normally the checkpoint directory
/// ([`DirCheckpointStore::anchor`](crate::audit::DirCheckpointStore::anchor)).
///
/// Appends take an exclusive lock on the file (`flock`; waited for at most
/// 10 s, then the append fails), check its length, write and `fsync`
/// before the lock is released, so processes on one machine (or on a file
/// system with working locks) append in one order. A line torn by a crash
/// mid-append is cut off by the next writer.
/// [`replace`](AnchorStore::replace) (compaction) writes the new log to a
/// file beside it and renames it into place under the old file's lock; an
/// append that took the lock of the file so replaced fails instead of
/// writing to a file no one reads any more.
///
/// ```
/// use privacy_pledge::freshness::{AnchorStore, DirAnchorStore};
///
/// let dir = std::env::temp_dir().join(format!("pp-doc-anchor-{}", std::process::id()));
/// let anchor = DirAnchorStore::new(&dir)?;
/// assert!(anchor.append(0, b"first\n")?);
/// assert_eq!(anchor.byte_len()?, 6);
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct DirAnchorStore {
    file: std::path::PathBuf,
}

impl DirAnchorStore {
    /// The anchor `state.log` in `dir` (created if missing).
    pub fn new(dir: impl AsRef<std::path::Path>) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir.as_ref())?;
        Ok(DirAnchorStore {
            file: dir.as_ref().join("state.log"),
        })
    }

    /// The log file.
    pub fn path(&self) -> &std::path::Path {
        &self.file
    }

    /// Whether the file whose metadata is `locked` (an open handle's) is no
    /// longer the one at the log's path: a compaction renamed another over
    /// it after the handle was opened.
    fn replaced(&self, locked: &std::fs::Metadata) -> Result<bool, AnchorError> {
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            let now = std::fs::metadata(&self.file).map_err(|e| io("stat", e))?;
            Ok((now.dev(), now.ino()) != (locked.dev(), locked.ino()))
        }
        #[cfg(not(unix))]
        {
            let _ = locked;
            Ok(false)
        }
    }
}

fn io(what: &'static str, e: std::io::Error) -> AnchorError {
    AnchorError::new(format!("{what}: {e}"))
}

impl DirAnchorStore {
    /// The log file, opened (created if missing) for reading and writing.
    fn open(&self) -> Result<std::fs::File, AnchorError> {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&self.file)
            .map_err(|e| io("open", e))
    }

    /// The log file, opened and locked, with its metadata; `Err` if it is
    /// no longer the file at the path (replaced after it was opened) or,
    /// given an `epoch`, not the log of that epoch.
    fn locked(
        &self,
        epoch: Option<u64>,
    ) -> Result<(crate::files::FileLock, std::fs::Metadata), AnchorError> {
        let f = crate::files::FileLock::exclusive(self.open()?).map_err(|e| io("lock", e))?;
        let meta = f.metadata().map_err(|e| io("stat", e))?;
        if self.replaced(&meta)? || epoch.is_some_and(|e| e != identity(&meta)) {
            return Err(replaced_error());
        }
        Ok((f, meta))
    }

    fn append_in(
        &self,
        epoch: Option<u64>,
        expected_len: u64,
        line: &[u8],
    ) -> Result<bool, AnchorError> {
        use std::io::{Seek, SeekFrom, Write};
        let (mut f, meta) = self.locked(epoch)?;
        let len = meta.len();
        if len != expected_len {
            if len > expected_len {
                // Bytes past the last line a reader saw: a writer's line
                // (someone appended first), unless they hold no newline — a
                // line torn by a crash, which only the lock holder may cut.
                let tail = read_range(&mut f, expected_len)?;
                if tail.contains(&b'\n') {
                    return Ok(false);
                }
                f.set_len(expected_len).map_err(|e| io("truncate", e))?;
            } else {
                return Ok(false);
            }
        }
        f.seek(SeekFrom::Start(expected_len))
            .map_err(|e| io("seek", e))?;
        f.write_all(line).map_err(|e| io("write", e))?;
        f.sync_data().map_err(|e| io("sync", e))?;
        Ok(true)
    }
}

/// The epoch of a log file: its identity on the file system (device and
/// inode on Unix), which a compaction's rename changes. Never `0`.
fn identity(meta: &std::fs::Metadata) -> u64 {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        (meta.ino() ^ meta.dev().rotate_left(32)).max(1)
    }
    #[cfg(not(unix))]
    {
        let _ = meta;
        1
    }
}

impl AnchorStore for DirAnchorStore {
    fn append(&self, expected_len: u64, line: &[u8]) -> Result<bool, AnchorError> {
        self.append_in(None, expected_len, line)
    }

    fn append_to(&self, epoch: u64, expected_len: u64, line: &[u8]) -> Result<bool, AnchorError> {
        self.append_in(Some(epoch), expected_len, line)
    }

    fn epoch(&self) -> Result<u64, AnchorError> {
        match std::fs::metadata(&self.file) {
            Ok(meta) => Ok(identity(&meta)),
            // Created if missing, so that the log every reader saw and the
            // one the first appender writes are one file from the start.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(identity(
                &self.open()?.metadata().map_err(|e| io("stat", e))?,
            )),
            Err(e) => Err(io("stat", e)),
        }
    }

    fn replace(&self, expected_len: u64, bytes: &[u8]) -> Result<bool, AnchorError> {
        self.replace_in(None, expected_len, bytes)
    }

    fn replace_after(
        &self,
        epoch: u64,
        expected_len: u64,
        last_line: &[u8],
        bytes: &[u8],
    ) -> Result<bool, AnchorError> {
        self.replace_in(Some((epoch, last_line)), expected_len, bytes)
    }

    fn read_from(&self, offset: u64) -> Result<Vec<u8>, AnchorError> {
        match std::fs::File::open(&self.file) {
            Ok(mut f) => read_range(&mut f, offset),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && offset == 0 => Ok(Vec::new()),
            Err(e) => Err(io("open", e)),
        }
    }

    fn byte_len(&self) -> Result<u64, AnchorError> {
        match std::fs::metadata(&self.file) {
            Ok(m) => Ok(m.len()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(io("stat", e)),
        }
    }
}

impl DirAnchorStore {
    /// Replaces the log with `bytes` if it is `expected_len` bytes long and,
    /// given `(epoch, last_line)`, of that epoch and ending with that line
    /// — all checked under the old file's lock.
    fn replace_in(
        &self,
        after: Option<(u64, &[u8])>,
        expected_len: u64,
        bytes: &[u8],
    ) -> Result<bool, AnchorError> {
        use std::io::Write;
        let (mut old, meta) = match self.locked(after.map(|(epoch, _)| epoch)) {
            Ok(locked) => locked,
            Err(_) => return Ok(false),
        };
        if meta.len() != expected_len {
            return Ok(false);
        }
        if let Some((_, last_line)) = after {
            let Some(start) = expected_len.checked_sub(last_line.len() as u64) else {
                return Ok(false);
            };
            if read_range(&mut old, start)? != last_line {
                return Ok(false);
            }
        }
        let new_path = self.file.with_extension("log.compacting");
        let mut new = std::fs::File::create(&new_path).map_err(|e| io("create", e))?;
        new.write_all(bytes).map_err(|e| io("write", e))?;
        new.sync_all().map_err(|e| io("sync", e))?;
        std::fs::rename(&new_path, &self.file).map_err(|e| io("rename", e))?;
        if let Some(dir) = self.file.parent() {
            crate::files::sync_dir(dir).map_err(|e| io("sync directory", e))?;
        }
        // The old file's lock goes with `old`: an appender waiting for it
        // finds its file replaced.
        drop(old);
        Ok(true)
    }
}

fn read_range(f: &mut std::fs::File, offset: u64) -> Result<Vec<u8>, AnchorError> {
    use std::io::{Read, Seek, SeekFrom};
    f.seek(SeekFrom::Start(offset)).map_err(|e| io("seek", e))?;
    let mut out = Vec::new();
    f.read_to_end(&mut out).map_err(|e| io("read", e))?;
    Ok(out)
}

// ---------------------------------------------------------------------------
// Entries

/// What an erasure destroyed, as the anchor keeps it so that a retried
/// erasure returns the whole receipt again.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Receipt {
    pub(crate) generations: Vec<u32>,
    pub(crate) pseudonyms: Vec<PseudonymRef>,
    pub(crate) lookup_tokens: Vec<LookupRef>,
}

impl Receipt {
    /// Adds what `other` lists and this one does not.
    pub(crate) fn merge(&mut self, other: Receipt) {
        fn add<T: PartialEq>(to: &mut Vec<T>, from: Vec<T>) {
            for x in from {
                if !to.contains(&x) {
                    to.push(x);
                }
            }
        }
        add(&mut self.generations, other.generations);
        self.generations.sort_unstable();
        add(&mut self.pseudonyms, other.pseudonyms);
        add(&mut self.lookup_tokens, other.lookup_tokens);
    }
}

impl From<crate::crypto::Destroyed> for Receipt {
    fn from(d: crate::crypto::Destroyed) -> Self {
        Receipt {
            generations: d.generations,
            pseudonyms: d.pseudonyms,
            lookup_tokens: d.lookup_tokens,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub(crate) enum Entry {
    /// The consent row as it must be from now on.
    Consent(ConsentRecord),
    /// An erasure begun: from here the subject is refused everywhere.
    Erasing { subject: SubjectId, at: Timestamp },
    /// What the begun erasure is about to destroy (journaled before the
    /// keys go, so a retry after a fault returns it all again).
    Planned {
        subject: SubjectId,
        receipt: Receipt,
    },
    /// An erasure done, with what it destroyed.
    Erased {
        subject: SubjectId,
        at: Timestamp,
        receipt: Receipt,
    },
}

/// An erasure as the anchor knows it.
#[derive(Clone, Debug)]
pub(crate) struct Erasure {
    pub(crate) at: Timestamp,
    /// What it was about to destroy, once journaled.
    pub(crate) planned: Option<Receipt>,
    /// `None` while only begun.
    pub(crate) receipt: Option<Receipt>,
}

/// What a process has read of the anchor.
#[derive(Default)]
struct View {
    /// The log's epoch (see [`AnchorStore::epoch`]), taken before its first
    /// line was read.
    epoch: u64,
    /// Bytes read and verified (whole lines).
    len: u64,
    /// The last line verified, newline included (empty before the first):
    /// a log found without it at the view's end is another log, whatever
    /// its epoch says.
    last_line: Vec<u8>,
    last_mac: [u8; 32],
    lines: u64,
    consents: HashMap<(SubjectId, PurposeId), ConsentRecord>,
    erased: HashMap<SubjectId, Erasure>,
}

const DOMAIN: &[u8] = b"pp-anchor1\0";

fn mac(key: &ring::hmac::Key, prev: &[u8; 32], json: &[u8]) -> [u8; 32] {
    let mut ctx = ring::hmac::Context::with_key(key);
    ctx.update(DOMAIN);
    ctx.update(prev);
    ctx.update(json);
    let mut out = [0; 32];
    out.copy_from_slice(ctx.sign().as_ref());
    out
}

fn hex32(bytes: &[u8]) -> Option<[u8; 32]> {
    if bytes.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (o, pair) in out.iter_mut().zip(bytes.chunks_exact(2)) {
        let nib = |c: u8| match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        };
        *o = (nib(pair[0])? << 4) | nib(pair[1])?;
    }
    Some(out)
}

impl View {
    fn erasure(&mut self, subject: SubjectId, at: Timestamp) -> &mut Erasure {
        self.erased.entry(subject).or_insert(Erasure {
            at,
            planned: None,
            receipt: None,
        })
    }

    fn apply(&mut self, entry: Entry) {
        match entry {
            Entry::Consent(r) => {
                self.consents.insert((r.subject, r.purpose), r);
            }
            Entry::Erasing { subject, at } => {
                self.erasure(subject, at);
                // The erasure forgets the subject's consent rows: a row
                // put back afterwards differs from the view (none), so it
                // is refused as a rollback, never read as live.
                for purpose in PurposeId::ALL {
                    self.consents.remove(&(subject, purpose));
                }
            }
            Entry::Planned { subject, receipt } => {
                // A plan with no `erasing` before it is no erasure: only a
                // writer with the key appends, and it never does that.
                if let Some(e) = self.erased.get_mut(&subject) {
                    e.planned.get_or_insert(receipt);
                }
            }
            Entry::Erased {
                subject,
                at,
                receipt,
            } => {
                self.erasure(subject, at).receipt = Some(receipt);
            }
        }
    }

    /// Verifies and applies the whole lines of `bytes` (read from `self.len`),
    /// adding each entry applied to `applied` (also those before a line
    /// that fails).
    fn extend(
        &mut self,
        key: &ring::hmac::Key,
        bytes: &[u8],
        applied: &mut Vec<Entry>,
    ) -> Result<(), AnchorError> {
        let mut rest = bytes;
        while let Some(end) = rest.iter().position(|&b| b == b'\n') {
            let line = &rest[..end];
            let bad = || AnchorError::new(format!("line {} does not verify", self.lines + 1));
            let (tag, json) = match line.get(64) {
                Some(b' ') => (&line[..64], &line[65..]),
                _ => return Err(bad()),
            };
            let tag = hex32(tag).ok_or_else(bad)?;
            let want = mac(key, &self.last_mac, json);
            if !crate::ct::eq(&tag, &want) {
                return Err(bad());
            }
            let entry: Entry = serde_json::from_slice(json).map_err(|_| bad())?;
            applied.push(entry.clone());
            self.apply(entry);
            self.last_mac = tag;
            self.lines += 1;
            self.len += end as u64 + 1;
            self.last_line.clear();
            self.last_line.extend_from_slice(&rest[..=end]);
            rest = &rest[end + 1..];
        }
        Ok(())
    }
}

/// The custodian's handle on the anchor: the store, the key, and what this
/// process has read, re-read at most every `bound`.
pub(crate) struct Anchor {
    store: Box<dyn AnchorStore>,
    key: ring::hmac::Key,
    view: RwLock<View>,
    /// One refresh or append at a time in this process.
    writer: Mutex<()>,
    /// The system clock (Unix nanoseconds) when the view was last read,
    /// and when it must be read again. The wall clock rather than
    /// `Instant`, so a use can pass the reading its audit event took
    /// anyway (one clock read per use, not two); a clock that went back
    /// (`now < fresh_at`) counts as stale.
    fresh_at: AtomicU64,
    stale_at: AtomicU64,
    bound_nanos: u64,
    /// Grows (from 1) each time the view takes in a line: a consent row
    /// found equal to the anchored one at generation `g` still is while the
    /// generation is `g`, with no lookup in the view.
    generation: AtomicU64,
    any_erased: AtomicBool,
    /// A filter of the erased subjects (bits set by a keyed hash): a subject
    /// whose bit is clear was not erased, known without a lock or a map
    /// lookup — the common case on every use.
    erased_bits: [AtomicU64; FILTER_WORDS],
    filter_key: (u64, u64),
}

const FILTER_WORDS: usize = 64;

impl Anchor {
    /// Opens the anchor and reads it in full (start-up).
    pub(crate) fn open(
        store: Box<dyn AnchorStore>,
        key: &[u8; 32],
        bound: Duration,
    ) -> Result<Self, Error> {
        let anchor = Anchor {
            store,
            key: ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key),
            view: RwLock::new(View::default()),
            writer: Mutex::new(()),
            fresh_at: AtomicU64::new(0),
            stale_at: AtomicU64::new(0),
            bound_nanos: u64::try_from(bound.as_nanos()).unwrap_or(u64::MAX),
            generation: AtomicU64::new(1),
            any_erased: AtomicBool::new(false),
            erased_bits: [const { AtomicU64::new(0) }; FILTER_WORDS],
            filter_key: {
                let k = crate::crypto::random_array::<16>()?;
                let (a, b) = k.split_at(8);
                let word = |b: &[u8]| u64::from_le_bytes(b.try_into().unwrap_or([0; 8]));
                (word(a), word(b) | 1)
            },
        };
        anchor.refresh(true)?;
        Ok(anchor)
    }

    pub(crate) fn now_nanos() -> u64 {
        Timestamp::now().unix_nanos()
    }

    fn read(&self) -> RwLockReadGuard<'_, View> {
        self.view.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Reads what was appended since this process last looked, if the view
    /// is older than the bound (or always, with `force`).
    pub(crate) fn refresh(&self, force: bool) -> Result<(), Error> {
        self.refresh_at(force, Self::now_nanos())
    }

    /// [`refresh`](Self::refresh) with the system clock read by the caller
    /// (Unix nanoseconds, taken just now).
    fn refresh_at(&self, force: bool, start: u64) -> Result<(), Error> {
        if !force
            && start < self.stale_at.load(Ordering::Acquire)
            && start >= self.fresh_at.load(Ordering::Acquire)
        {
            return Ok(());
        }
        let _w = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        self.refresh_locked(start).map(drop)
    }

    /// [`refresh`](Self::refresh) with the writer's lock held: returns the
    /// entries it took in.
    fn refresh_locked(&self, start: u64) -> Result<Vec<Entry>, Error> {
        match self.read_new() {
            Ok(applied) => {
                self.fresh_at.store(start, Ordering::Release);
                self.stale_at
                    .store(start.saturating_add(self.bound_nanos), Ordering::Release);
                Ok(applied)
            }
            Err(e) => {
                // Fail closed until the log reads and verifies again: every
                // use reads it anew, not only the one that met the fault.
                self.stale_at.store(0, Ordering::Release);
                Err(e)
            }
        }
    }

    /// Reads and takes in the lines appended since the view's end.
    fn read_new(&self) -> Result<Vec<Entry>, Error> {
        let epoch = crate::reentry::host(|| self.store.epoch())?;
        let (seen, lines, known, last_len) = {
            let view = self.read();
            (
                view.len,
                view.lines,
                view.epoch,
                view.last_line.len() as u64,
            )
        };
        if lines == 0 {
            // Nothing read yet: this is the log from now on.
            self.view.write().unwrap_or_else(|p| p.into_inner()).epoch = epoch;
        } else if epoch != known {
            return Err(replaced_error().into());
        }
        let len = crate::reentry::host(|| self.store.byte_len())?;
        if len < seen {
            return Err(AnchorError::new(format!(
                "the log is {len} bytes, shorter than the {seen} already verified (cut or replaced)"
            ))
            .into());
        }
        // Read from the last line verified: still there, at the view's end,
        // it proves the log is the one read (its MAC chains every line
        // before it), where an epoch could be given again — a file
        // system's reused inode number after a compaction, with a new log
        // as long as the old — and "nothing new" would keep a stale view.
        let from = seen - last_len.min(seen);
        let tail = crate::reentry::host(|| self.store.read_from(from))?;
        let new = {
            let view = self.read();
            match tail.strip_prefix(view.last_line.as_slice()) {
                Some(new) => new,
                None => return Err(replaced_error().into()),
            }
        };
        let mut applied = Vec::new();
        if !new.is_empty() {
            let mut view = self.view.write().unwrap_or_else(|p| p.into_inner());
            let extended = view.extend(&self.key, new, &mut applied);
            // Bumped, and the erasures noted, even on a failed line (the
            // lines before it applied).
            self.generation.fetch_add(1, Ordering::AcqRel);
            self.note_erasures(&applied);
            extended?;
        }
        Ok(applied)
    }

    /// Appends the entry `next` makes of the current state (none: nothing to
    /// append), after reading every line appended before it; returns what it
    /// appended. Retries while other writers append first.
    pub(crate) fn append(
        &self,
        mut next: impl FnMut(&AnchorState<'_>) -> Result<Option<Entry>, Error>,
    ) -> Result<Option<Entry>, Error> {
        let _w = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        for _ in 0..64 {
            self.refresh_locked(Self::now_nanos())?;
            let (entry, line, len) = {
                let view = self.read();
                let Some(entry) = next(&AnchorState(&view))? else {
                    return Ok(None);
                };
                let json = serde_json::to_vec(&entry)
                    .map_err(|_| AnchorError::new("an entry could not be encoded"))?;
                let (_, line) = line(&self.key, &view.last_mac, &json);
                (entry, line, view.len)
            };
            let epoch = self.read().epoch;
            if crate::reentry::host(|| self.store.append_to(epoch, len, &line))? {
                let mut view = self.view.write().unwrap_or_else(|p| p.into_inner());
                let mut applied = Vec::new();
                let extended = view.extend(&self.key, &line, &mut applied);
                self.generation.fetch_add(1, Ordering::AcqRel);
                self.note_erasures(&applied);
                extended?;
                return Ok(Some(entry));
            }
        }
        Err(AnchorError::new("the log kept growing under concurrent writers").into())
    }

    /// Rewrites the log as the state it holds: the latest row of each
    /// anchored consent and each erasure, a fresh chain under the same key.
    /// Read back, it gives the view it was made from, but for the lookup
    /// tokens and pseudonyms of finished erasures, which it drops. Retries
    /// while other writers append first.
    pub(crate) fn compact(&self) -> Result<AnchorCompaction, Error> {
        /// The new log as built so far: its bytes, the MAC of its last
        /// line, and its lines.
        struct Built {
            bytes: Vec<u8>,
            prev: [u8; 32],
            lines: u64,
        }
        impl Built {
            fn push(&mut self, key: &ring::hmac::Key, entry: &Entry) -> Result<(), AnchorError> {
                let json = serde_json::to_vec(entry)
                    .map_err(|_| AnchorError::new("an entry could not be encoded"))?;
                let (tag, line) = line(key, &self.prev, &json);
                self.bytes.extend_from_slice(&line);
                self.prev = tag;
                self.lines += 1;
                Ok(())
            }
        }
        let _w = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let mut built: Option<Built> = None;
        for _ in 0..64 {
            let applied = self.refresh_locked(Self::now_nanos())?;
            let (len, lines) = {
                let view = self.read();
                (view.len, view.lines)
            };
            let new = match &mut built {
                // Lines appended since the state was written out follow it,
                // in their order: a few MACs, so the next try comes soon.
                Some(new) => {
                    for entry in &applied {
                        new.push(&self.key, entry)?;
                    }
                    new
                }
                None => {
                    let view = self.read();
                    let mut new = Built {
                        bytes: Vec::new(),
                        prev: [0; 32],
                        lines: 0,
                    };
                    let mut consents: Vec<_> = view.consents.values().copied().collect();
                    consents.sort_by_key(|r| (r.subject, r.purpose));
                    for record in consents {
                        new.push(&self.key, &Entry::Consent(record))?;
                    }
                    let mut erased: Vec<_> = view.erased.iter().collect();
                    erased.sort_by_key(|(s, _)| **s);
                    for (&subject, e) in erased {
                        new.push(&self.key, &Entry::Erasing { subject, at: e.at })?;
                        // A finished erasure keeps its generations; its
                        // lookup tokens and pseudonyms, which tie values
                        // of the subject's to their id, and which the host
                        // has had the receipt to clear, go. An unfinished
                        // one keeps its whole plan, for the retry.
                        let kept = |r: &Receipt| match e.receipt {
                            Some(_) => Receipt {
                                generations: r.generations.clone(),
                                ..Receipt::default()
                            },
                            None => r.clone(),
                        };
                        if let Some(receipt) = e.planned.as_ref().map(kept) {
                            new.push(&self.key, &Entry::Planned { subject, receipt })?;
                        }
                        if let Some(receipt) = e.receipt.as_ref().map(kept) {
                            let at = e.at;
                            new.push(
                                &self.key,
                                &Entry::Erased {
                                    subject,
                                    at,
                                    receipt,
                                },
                            )?;
                        }
                    }
                    built.insert(new)
                }
            };
            let (epoch, last_line) = {
                let view = self.read();
                (view.epoch, view.last_line.clone())
            };
            if crate::reentry::host(|| {
                self.store.replace_after(epoch, len, &last_line, &new.bytes)
            })? {
                // This process reads the new log from its start; the view
                // it rebuilds is the one it had.
                let mut fresh = View {
                    epoch: crate::reentry::host(|| self.store.epoch())?,
                    ..View::default()
                };
                let mut applied = Vec::new();
                let read = fresh.extend(&self.key, &new.bytes, &mut applied);
                *self.view.write().unwrap_or_else(|p| p.into_inner()) = fresh;
                self.generation.fetch_add(1, Ordering::AcqRel);
                self.note_erasures(&applied);
                read?;
                return Ok(AnchorCompaction {
                    lines_before: lines,
                    bytes_before: len,
                    lines_after: new.lines,
                    bytes_after: new.bytes.len() as u64,
                });
            }
        }
        Err(AnchorError::new("the log kept growing under concurrent writers").into())
    }

    /// The latest anchored row of a subject and purpose (view re-read if
    /// older than the bound, or with `force`), with the system clock read
    /// by the caller (Unix nanoseconds, taken just now), and the view's
    /// [generation](Self::generation) read before it.
    pub(crate) fn consent_at(
        &self,
        subject: SubjectId,
        purpose: PurposeId,
        force: bool,
        now: u64,
    ) -> Result<(Option<ConsentRecord>, u64), Error> {
        let generation = self.generation_at(force, now)?;
        Ok((self.consent_in_view(subject, purpose), generation))
    }

    /// The view's generation after re-reading it if it is older than the
    /// bound (or with `force`): while it stays the same, every anchored row
    /// does.
    pub(crate) fn generation_at(&self, force: bool, now: u64) -> Result<u64, Error> {
        self.refresh_at(force, now)?;
        Ok(self.generation.load(Ordering::Acquire))
    }

    /// The latest anchored row in the view as it is (no re-read).
    pub(crate) fn consent_in_view(
        &self,
        subject: SubjectId,
        purpose: PurposeId,
    ) -> Option<ConsentRecord> {
        self.read().consents.get(&(subject, purpose)).copied()
    }

    /// The filter bit of `subject`: (word, mask).
    fn bit(&self, subject: SubjectId) -> (usize, u64) {
        let b = subject.as_bytes();
        let half = |r: &[u8]| u64::from_le_bytes(r.try_into().unwrap_or([0; 8]));
        let h = (half(&b[..8]) ^ self.filter_key.0 ^ half(&b[8..]).rotate_left(29))
            .wrapping_mul(self.filter_key.1);
        let bit = (h >> 52) as usize; // 12 bits: FILTER_WORDS * 64 = 4096
        (bit / 64 % FILTER_WORDS, 1 << (bit % 64))
    }

    /// Sets the filter bits of the subjects erased by the entries the view
    /// just took in
    /// (called with the view's write lock held, so readers see a bit before
    /// the map). Only the new ones: the bits of earlier erasures are set
    /// already, and going over every erased subject at each new line made
    /// a consent change on an anchor of 10,000 erasures 18× slower.
    fn note_erasures(&self, applied: &[Entry]) {
        for entry in applied {
            if let Entry::Erasing { subject, .. } | Entry::Erased { subject, .. } = entry {
                let (w, m) = self.bit(*subject);
                self.erased_bits[w].fetch_or(m, Ordering::Release);
                self.any_erased.store(true, Ordering::Release);
            }
        }
    }

    /// Whether `subject` may have been erased (`false`: certainly not).
    fn maybe_erased(&self, subject: SubjectId) -> bool {
        if !self.any_erased.load(Ordering::Acquire) {
            return false;
        }
        let (w, m) = self.bit(subject);
        self.erased_bits[w].load(Ordering::Acquire) & m != 0
    }

    /// The subject's erasure, if any process anchored one.
    pub(crate) fn erasure(&self, subject: SubjectId) -> Result<Option<Erasure>, Error> {
        self.refresh(false)?;
        if !self.maybe_erased(subject) {
            return Ok(None);
        }
        Ok(self.read().erased.get(&subject).cloned())
    }

    /// When the subject was erased, if any process anchored it. `now`: the
    /// system clock read just now by the caller, if it has one.
    pub(crate) fn erased_at(
        &self,
        subject: SubjectId,
        now: Option<Timestamp>,
    ) -> Result<Option<Timestamp>, Error> {
        self.refresh_at(
            false,
            now.map_or_else(Self::now_nanos, Timestamp::unix_nanos),
        )?;
        if !self.maybe_erased(subject) {
            return Ok(None);
        }
        Ok(self.read().erased.get(&subject).map(|e| e.at))
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// One line of the log: `hex(MAC) json\n`, the MAC chained from `prev`.
fn line(key: &ring::hmac::Key, prev: &[u8; 32], json: &[u8]) -> ([u8; 32], Vec<u8>) {
    let tag = mac(key, prev, json);
    let mut line = Vec::with_capacity(json.len() + 66);
    for b in tag {
        line.extend_from_slice(&[HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]);
    }
    line.push(b' ');
    line.extend_from_slice(json);
    line.push(b'\n');
    (tag, line)
}

/// What [`Custodian::compact_anchor`](crate::Custodian::compact_anchor)
/// did: the log's size before and after.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AnchorCompaction {
    lines_before: u64,
    bytes_before: u64,
    lines_after: u64,
    bytes_after: u64,
}

impl AnchorCompaction {
    /// Lines in the log before.
    pub fn lines_before(&self) -> u64 {
        self.lines_before
    }
    /// Bytes in the log before.
    pub fn bytes_before(&self) -> u64 {
        self.bytes_before
    }
    /// Lines after: one per anchored consent row, and one to three per
    /// erasure (begun, planned, done).
    pub fn lines_after(&self) -> u64 {
        self.lines_after
    }
    /// Bytes after.
    pub fn bytes_after(&self) -> u64 {
        self.bytes_after
    }
}

/// The anchored state an appender decides from.
pub(crate) struct AnchorState<'a>(&'a View);

impl AnchorState<'_> {
    pub(crate) fn consent(&self, subject: SubjectId, purpose: PurposeId) -> Option<ConsentRecord> {
        self.0.consents.get(&(subject, purpose)).copied()
    }

    pub(crate) fn erasure(&self, subject: SubjectId) -> Option<&Erasure> {
        self.0.erased.get(&subject)
    }
}

impl From<AnchorError> for Error {
    fn from(e: AnchorError) -> Self {
        Error::Anchor(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn anchor(store: std::sync::Arc<MemoryAnchorStore>) -> Anchor {
        Anchor::open(Box::new(store), &[7; 32], Duration::from_secs(3600)).unwrap()
    }

    fn erasing(s: u128) -> Entry {
        Entry::Erasing {
            subject: SubjectId::from(s),
            at: Timestamp::from_unix_nanos(5),
        }
    }

    /// A5 with a wall clock set back (by hand or by NTP): the bound is
    /// counted on the system clock, so a reading earlier than the last
    /// refresh counts as stale rather than as fresh for an hour more.
    #[test]
    fn a5_a_clock_set_back_reads_the_log_again() {
        let store = std::sync::Arc::new(MemoryAnchorStore::new());
        let (a, b) = (anchor(store.clone()), anchor(store));
        let t = Timestamp::now().unix_nanos();
        a.refresh_at(true, t).unwrap();
        b.append(|_| Ok(Some(erasing(1)))).unwrap();
        // Within the (hour-long) bound: not read again.
        a.refresh_at(false, t + 1_000).unwrap();
        assert!(!a.read().erased.contains_key(&SubjectId::from(1)));
        // The clock went back a second: read again.
        a.refresh_at(false, t - 1_000_000_000).unwrap();
        assert!(a.read().erased.contains_key(&SubjectId::from(1)));
        // Past the bound: read again too.
        b.append(|_| Ok(Some(erasing(2)))).unwrap();
        a.refresh_at(false, t + 3_600_000_000_001).unwrap();
        assert!(a.read().erased.contains_key(&SubjectId::from(2)));
    }

    #[test]
    fn a_second_process_reads_what_the_first_appended() {
        let store = std::sync::Arc::new(MemoryAnchorStore::new());
        let (a, b) = (anchor(store.clone()), anchor(store.clone()));
        a.append(|_| Ok(Some(erasing(1)))).unwrap();
        // b appends on top: it must first read a's line, or the chain breaks.
        b.append(|_| Ok(Some(erasing(2)))).unwrap();
        let c = anchor(store);
        assert!(c.erased_at(SubjectId::from(1), None).unwrap().is_some());
        assert!(c.erased_at(SubjectId::from(2), None).unwrap().is_some());
        assert!(c.erased_at(SubjectId::from(3), None).unwrap().is_none());
    }

    /// Each process's filter of erased subjects takes in every erasure it
    /// reads, one at a time or many at once, and also those read before a
    /// line that fails: the log then fails every use, but what it read of
    /// it still counts (A2 appending garbage after an erasure), and every
    /// later use within the bound reads the log again and fails too.
    #[test]
    fn every_erasure_read_reaches_the_filter() {
        let store = std::sync::Arc::new(MemoryAnchorStore::new());
        let (a, b) = (anchor(store.clone()), anchor(store.clone()));
        for s in 1..=50 {
            a.append(|_| Ok(Some(erasing(s)))).unwrap();
        }
        b.refresh(true).unwrap();
        for s in 1..=50 {
            assert!(a.maybe_erased(SubjectId::from(s)), "{s}");
            assert!(b.maybe_erased(SubjectId::from(s)), "{s}");
        }
        let c = anchor(store.clone());
        a.append(|_| Ok(Some(erasing(51)))).unwrap();
        let len = store.byte_len().unwrap();
        assert!(store.append(len, b"garbage\n").unwrap());
        assert!(c.refresh(true).is_err());
        assert!(c.maybe_erased(SubjectId::from(51)));
        assert!(
            c.erased_at(SubjectId::from(51), None).is_err(),
            "fails closed"
        );
    }

    fn consent(s: u128, version: u64) -> Entry {
        Entry::Consent(ConsentRecord {
            subject: SubjectId::from(s),
            purpose: <crate::purpose::Newsletter as crate::purpose::Purpose>::ID,
            granted: version % 2 == 1,
            since: Timestamp::from_unix_nanos(version),
            withdrawn_at: None,
            version,
            mac: [version as u8; 32],
        })
    }

    /// An erasure as compared: subject, time, planned, done.
    type ErasureState = (SubjectId, Timestamp, bool, bool);

    /// What a view holds, comparable.
    fn state(a: &Anchor) -> (Vec<ConsentRecord>, Vec<ErasureState>) {
        let view = a.read();
        let mut consents: Vec<_> = view.consents.values().copied().collect();
        consents.sort_by_key(|r| (r.subject, r.purpose));
        let mut erased: Vec<_> = view
            .erased
            .iter()
            .map(|(s, e)| (*s, e.at, e.planned.is_some(), e.receipt.is_some()))
            .collect();
        erased.sort_by_key(|e| e.0);
        (consents, erased)
    }

    /// Compaction keeps the state and drops the history: read back, the
    /// new log gives the view the old one did (but for a finished
    /// erasure's lookup tokens, A3); a process that read the old
    /// one fails closed (A5) rather than read or append at its offsets, and
    /// the compacting process goes on appending.
    #[test]
    fn a5_compaction_keeps_the_state_and_stale_readers_fail_closed() {
        let store = std::sync::Arc::new(MemoryAnchorStore::new());
        let a = anchor(store.clone());
        for version in 1..=6 {
            for s in 1..=3 {
                a.append(|_| Ok(Some(consent(s, version)))).unwrap();
            }
        }
        a.append(|_| Ok(Some(erasing(7)))).unwrap();
        let receipt = Receipt {
            generations: vec![0, 1],
            lookup_tokens: vec![crate::crypto::LookupRef {
                lookup: crate::data::Kind::EmailAddress,
                token: [7; 32],
            }],
            ..Receipt::default()
        };
        a.append(|_| {
            Ok(Some(Entry::Planned {
                subject: SubjectId::from(7),
                receipt: receipt.clone(),
            }))
        })
        .unwrap();
        a.append(|_| {
            Ok(Some(Entry::Erased {
                subject: SubjectId::from(7),
                at: Timestamp::from_unix_nanos(9),
                receipt: receipt.clone(),
            }))
        })
        .unwrap();
        a.append(|_| Ok(Some(erasing(8)))).unwrap();
        let stale = anchor(store.clone());
        let before = state(&a);

        let done = a.compact().unwrap();
        assert_eq!((done.lines_before(), done.lines_after()), (22, 3 + 3 + 1));
        assert!(done.bytes_after() < done.bytes_before() / 2);
        assert_eq!(state(&a), before);
        let fresh = anchor(store.clone());
        assert_eq!(state(&fresh), before);
        assert!(fresh.maybe_erased(SubjectId::from(7)) && fresh.maybe_erased(SubjectId::from(8)));
        // A3: but for the finished erasure's tokens, which tied a value of
        // the subject's to their id.
        let kept = Receipt {
            generations: vec![0, 1],
            ..Receipt::default()
        };
        let erased = fresh.read().erased[&SubjectId::from(7)].clone();
        assert_eq!(
            (erased.planned, erased.receipt),
            (Some(kept.clone()), Some(kept))
        );
        assert!(
            !receipt.lookup_tokens.is_empty(),
            "there were tokens to drop"
        );

        // The process that read the old log: refused, reading and appending.
        assert!(stale.refresh(true).is_err());
        assert!(stale.append(|_| Ok(Some(erasing(9)))).is_err());
        // The compacting one appends on; a fresh reader takes it in.
        a.append(|_| Ok(Some(erasing(10)))).unwrap();
        fresh.refresh(true).unwrap();
        assert!(fresh.maybe_erased(SubjectId::from(10)));
        assert!(!fresh.read().erased.contains_key(&SubjectId::from(9)));
    }

    #[test]
    fn an_edited_dropped_or_cut_line_is_refused() {
        let store = std::sync::Arc::new(MemoryAnchorStore::new());
        let a = anchor(store.clone());
        for s in 1..=3 {
            a.append(|_| Ok(Some(erasing(s)))).unwrap();
        }
        let bytes = store.read_from(0).unwrap();
        let lines: Vec<&[u8]> = bytes.split_inclusive(|&b| b == b'\n').collect();
        let rebuilt = |ls: &[&[u8]]| {
            let s = std::sync::Arc::new(MemoryAnchorStore::new());
            s.append(0, &ls.concat()).unwrap();
            Anchor::open(Box::new(s), &[7; 32], Duration::from_secs(1))
        };
        assert!(rebuilt(&lines).is_ok());
        // The middle line dropped, or two lines swapped.
        assert!(rebuilt(&[lines[0], lines[2]]).is_err());
        assert!(rebuilt(&[lines[1], lines[0], lines[2]]).is_err());
        // One byte of an entry edited.
        let mut edited = lines[1].to_vec();
        let at = edited.len() - 3;
        edited[at] ^= 1;
        assert!(rebuilt(&[lines[0], &edited, lines[2]]).is_err());
        // A log shorter than what a process already verified.
        let cut = std::sync::Arc::new(MemoryAnchorStore::new());
        cut.append(0, &bytes).unwrap();
        let seen = anchor(cut.clone());
        *cut.bytes() = lines[..2].concat();
        assert!(seen.refresh(true).is_err());
        // Another key (a forger without the keyring).
        let other = std::sync::Arc::new(MemoryAnchorStore::new());
        other.append(0, &bytes).unwrap();
        assert!(Anchor::open(Box::new(other), &[8; 32], Duration::from_secs(1)).is_err());
    }

    #[test]
    fn a_torn_last_line_is_cut_by_the_next_writer() {
        let dir = std::env::temp_dir().join(format!(
            "pp-anchor-torn-{}-{}",
            std::process::id(),
            SubjectId::random()
        ));
        let store = DirAnchorStore::new(&dir).unwrap();
        assert!(store.append(0, b"whole\n").unwrap());
        {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .open(store.path())
                .unwrap();
            f.write_all(b"half a li").unwrap();
        }
        assert!(store.append(6, b"next\n").unwrap());
        assert_eq!(store.read_from(0).unwrap(), b"whole\nnext\n");
        // A complete line someone else wrote is never cut.
        assert!(!store.append(6, b"other\n").unwrap());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
