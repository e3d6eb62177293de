//! The custodian: the one runtime object through which personal information
//! is used, checked and audited.
//!
//! Types rule out what the policy never allows. What depends on the moment —
//! consent, erased subjects, where data goes — the custodian checks, and it
//! offers every use to the audit sink *before* the use happens (R10). If the
//! sink fails, the use does not happen and the caller gets
//! [`Error::Audit`]: the closure never runs, nothing is sealed, opened,
//! moved or erased.
//!
//! ```
//! use privacy_pledge::{Custodian, PersonalInfo, SubjectId};
//! use privacy_pledge::data::EmailAddress;
//! use privacy_pledge::purpose::{ServiceNotice, Transaction};
//! use privacy_pledge::recipient::{Processor, Recipient};
//!
//! struct Stripe;
//! impl Recipient for Stripe {
//!     type Role = Processor;
//!     fn name(&self) -> &str { "Stripe" }
//! }
//!
//! let custodian = Custodian::in_memory();
//! let subject = SubjectId::random();
//! let email: PersonalInfo<EmailAddress, Transaction> =
//!     PersonalInfo::collect(subject, EmailAddress::parse("ada@example.com")?);
//!
//! let domain = custodian.access(&email, |e| e.domain().to_owned())?;
//! let receipt = custodian.disclose(&email, &Stripe, |e| format!("receipt for {}", e.domain()))?;
//! let notice: PersonalInfo<EmailAddress, ServiceNotice> = custodian.repurpose(email.clone())?;
//! assert_eq!(domain, "example.com");
//! # drop((receipt, notice));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # What the custodian cannot do
//!
//! A closure given plaintext can copy it. The crate cannot stop that; it makes
//! every such hand-over explicit, typed by purpose, and recorded with its
//! subject, kind, purpose and recipient before it happens, so a review of the
//! audit trail finds every place where plaintext left the custodian's hands.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use serde::Serialize;

use crate::audit::{
    Action, AuditEvent, AuditKey, AuditSink, ChainedAuditLog, Checkpoint, MemoryAuditLog,
    RecipientRef, TrailError, VerifiedTrail,
};
use crate::consent::{ConsentProof, ConsentStore, Consents, Register};
use crate::country::Country;
use crate::crypto::keyring_store::Reloading;
use crate::crypto::vault::{Vault, VaultConfig};
use crate::crypto::{
    Algorithm, KekState, KeyError, KeyProvider, KeyStore, KeyStoreError, Keyring, KeyringStore,
    LookupKey, LookupRef, LookupToken, MemoryKeyStore, Pseudonym, PseudonymKey, PseudonymRef,
    Sealed,
};
use crate::data::DataKind;
use crate::freshness::{Anchor, AnchorError, AnchorStore, Entry, Receipt};
use crate::info::PersonalInfo;
use crate::policy::RuleId;
use crate::purpose::{CompatibleFrom, ConsentBased, Purpose, PurposeId, SeesPlaintext};
use crate::recipient::{PermittedFor, PseudonymsFor, Recipient, RegisteredRecipient, Role};
use crate::report::StoredRecord;
use crate::request::Staging;
use crate::retention::{Due, Retention, RetentionPolicy};
use crate::subject::SubjectId;
use crate::time::{Clock, SystemClock, Timestamp};
use crate::transfer::{Transfer, TransferRecord};
use crate::Error;

/// Enters the span of one operation (feature `tracing`); nothing without it.
macro_rules! op_span {
    ($custodian:expr, $action:expr, $subject:expr, $kind:expr, $purpose:expr) => {
        #[cfg(feature = "tracing")]
        let _span = crate::audit::trace::span(
            $action,
            || $custodian.subject_tag($subject),
            $kind,
            $purpose,
        );
    };
}

/// Keeps personal information on the policy's terms: audited access,
/// disclosure, repurposing, consent, sealing and erasure.
///
/// `Send + Sync`: share one custodian between threads (e.g. in an `Arc`).
pub struct Custodian {
    pub(crate) id: u64,
    pub(crate) sink: Box<dyn AuditSink>,
    /// Whether the sink commits a batch at once: then request scopes stage.
    pub(crate) batches: bool,
    builtin_log: Option<Arc<ChainedAuditLog<MemoryAuditLog>>>,
    audit_key: Option<AuditKey>,
    checkpoint_key: Option<crate::audit::CheckpointKey>,
    checkpoint_signer: Option<Arc<crate::audit::CheckpointSigner>>,
    checkpoint_store: Option<Arc<dyn crate::audit::CheckpointStore>>,
    /// Held from signing to saving in [`sign_checkpoint`](Self::sign_checkpoint):
    /// one save at a time, each of a head no older than the one before.
    checkpointing: Mutex<()>,
    recipients: Option<Vec<RegisteredRecipient>>,
    clock: Arc<dyn Clock>,
    /// Whether `clock` is the system clock: then an audit event's time is
    /// also the anchor's "now" (see [`Anchor`]), saving a clock read.
    system_clock: bool,
    pub(crate) consents: Register,
    erased: RwLock<HashSet<SubjectId>>,
    any_erased: AtomicBool,
    /// Whether the key store is the host's (`key_store`): then another
    /// custodian may erase in it, and without an anchor its tombstones are
    /// asked for. The default in-memory store is this custodian's alone.
    shared_keys: bool,
    /// Where consent changes and erasures are anchored out of the
    /// database's reach ([`crate::freshness`]), when configured.
    anchor: Option<Arc<Anchor>>,
    vault: Vault,
    lookup_key: LookupKey,
    tag_key: ring::hmac::Key,
    facilities: Vec<Country>,
    retention: RetentionPolicy,
    /// The keyring, when the key-encryption keys come from it (not from a
    /// host's key provider), and where the host keeps it.
    keyring: Option<Arc<Keyring>>,
    keyring_store: Option<Arc<dyn KeyringStore>>,
    /// One rotation at a time in this process (the key store's claim
    /// serialises processes), and this custodian's unfinished claim.
    rotation: Mutex<Option<Claim>>,
}

/// Where a rotation's key-encryption keys live.
enum Keks<'a> {
    /// The custodian's keyring, saved in the host's keyring store.
    Keyring(&'a Keyring, &'a dyn KeyringStore),
    /// A host key provider (an HSM) that makes and destroys versions itself.
    Provider(&'a dyn KeyProvider),
}

impl Keks<'_> {
    /// The versions held, oldest first.
    fn versions(&self) -> Vec<u32> {
        match self {
            Keks::Keyring(keyring, _) => keyring.versions(),
            Keks::Provider(provider) => provider.versions(),
        }
    }

    /// Reads the versions again from where they are kept (another process
    /// may have rotated).
    fn reload(&self) -> Result<(), Error> {
        match self {
            Keks::Keyring(keyring, secrets) => {
                let text = crate::reentry::host(|| secrets.load())?;
                keyring.reload(&text)?;
            }
            Keks::Provider(provider) => {
                provider.refresh()?;
            }
        }
        Ok(())
    }
}

/// A rotation's claim in the key store, as this custodian last wrote it.
#[derive(Clone, Copy, Debug)]
struct Claim {
    version: u32,
    claimed_at: Timestamp,
    renewed_at: Timestamp,
}

/// How long a rotation's claim holds without being renewed (5 minutes): the
/// process running a rotation renews it at every step (and every 256 keys
/// it rewraps), and until it stops doing so for this long, every other
/// process gets [`KeyError::RotationInProgress`]. Then the next call takes
/// over: it finishes the rotation if its new version was saved, and
/// otherwise rotates past it (the version is never used). The custodian
/// that claimed a rotation finishes its own at once.
///
/// ```
/// use privacy_pledge::custodian::ROTATION_LEASE_SECONDS;
/// use privacy_pledge::crypto::KeyError;
/// use privacy_pledge::Error;
///
/// /// A maintenance job: another process's rotation covers ours only if it
/// /// started after our erasures, so wait for it and rotate again.
/// fn should_retry(e: &Error, waited_seconds: u64) -> bool {
///     matches!(e, Error::Key(KeyError::RotationInProgress { .. }))
///         && waited_seconds < ROTATION_LEASE_SECONDS
/// }
/// # assert!(!should_retry(&Error::Random, 0));
/// ```
pub const ROTATION_LEASE_SECONDS: u64 = 300;

/// What [`Custodian::rotate_after_erasures`] did: for the host's records
/// (which backups stopped mattering, and when).
///
/// ```
/// use std::sync::Arc;
/// use privacy_pledge::Custodian;
/// use privacy_pledge::crypto::{Keyring, MemoryKeyringStore};
///
/// let keyring = Arc::new(Keyring::generate()?);
/// let custodian = Custodian::builder()
///     .keyring(keyring.clone())
///     .keyring_store(MemoryKeyringStore::new(&keyring))
///     .build()?;
/// let done = custodian.rotate_after_erasures()?;
/// assert_eq!((done.version(), done.retired(), done.rewrapped()), (2, &[1][..], 0));
/// assert!(done.covers_earlier_copies() && !done.resumed());
/// // Key-store backups taken before this moment open nothing any more.
/// let _deadline = done.started_at();
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct KeyRotation {
    started_at: Timestamp,
    finished_at: Timestamp,
    version: u32,
    retired: Vec<u32>,
    rewrapped: usize,
    skipped_erased: usize,
    resumed: bool,
    covers_earlier_copies: bool,
}

impl KeyRotation {
    /// When the rotation claimed its version: every copy of the key store
    /// taken before this moment opens nothing any more, and every erasure
    /// finished before it is covered in every such copy.
    pub fn started_at(&self) -> Timestamp {
        self.started_at
    }

    /// When it finished (the old versions were retired and the keyring
    /// saved without them).
    pub fn finished_at(&self) -> Timestamp {
        self.finished_at
    }

    /// The key-encryption-key version every live key is wrapped under now.
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The versions retired (their keys wiped, and gone from the saved keyring).
    pub fn retired(&self) -> &[u32] {
        &self.retired
    }

    /// How many subject keys were rewrapped under [`version`](Self::version).
    pub fn rewrapped(&self) -> usize {
        self.rewrapped
    }

    /// How many keys under an old version belonged to subjects erased
    /// before or during the rotation: never rewrapped.
    pub fn skipped_erased(&self) -> usize {
        self.skipped_erased
    }

    /// Whether this call finished a rotation that an earlier call (here or
    /// in another process) started and did not finish, before its own. The
    /// figures ([`retired`](Self::retired), [`rewrapped`](Self::rewrapped),
    /// …) are then of both; [`started_at`](Self::started_at) and
    /// [`version`](Self::version) are its own rotation's.
    pub fn resumed(&self) -> bool {
        self.resumed
    }

    /// Whether copies of the key store from before
    /// [`started_at`](Self::started_at) open nothing any more, as far as
    /// the versions **this** rotation retired go. False when one of them was
    /// derived from the master secret ([`Keyring::from_master`]): whoever
    /// holds the master derives it again, so copies holding keys under it
    /// still open. Copies taken after this rotation hold only random
    /// versions, which a later rotation destroys.
    ///
    /// The master stays in the keyring (and in every export of it), so a
    /// copy taken before the rotation that retired a derived version stays
    /// open to whoever holds a later export, whatever later rotations
    /// report: their `true` covers copies taken since that rotation only.
    /// Once a derived version held keys, keep no copy of the key store from
    /// that time.
    ///
    /// With a host [`key_provider`](CustodianBuilder::key_provider) (an
    /// HSM), true: a retired version is destroyed where it lived, and the
    /// token never let it out (the token's own backups are the host's to
    /// rotate out).
    pub fn covers_earlier_copies(&self) -> bool {
        self.covers_earlier_copies
    }
}

/// What [`Custodian::erase`] destroyed, for the host's records and clean-up.
///
/// The pseudonyms and lookup tokens are those the key store noted for the
/// subject. The crate's stores keep the notes in the database, beside the
/// host's own index, where whoever edits the database (A2) can take one
/// out or copy another subject's in, as they could edit the index itself:
/// the receipt says what to clear, it does not prove what is left.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ErasureReceipt {
    subject: SubjectId,
    at: Timestamp,
    generations: Vec<u32>,
    pseudonyms: Vec<PseudonymRef>,
    lookup_tokens: Vec<LookupRef>,
}

impl ErasureReceipt {
    /// The erased subject.
    pub fn subject(&self) -> SubjectId {
        self.subject
    }

    /// When.
    pub fn at(&self) -> Timestamp {
        self.at
    }

    /// The data-key generations destroyed.
    pub fn generations(&self) -> &[u32] {
        &self.generations
    }

    /// Pseudonyms issued for the subject. They are keyed by the pseudonym key,
    /// not the subject's data key, so they outlive the erasure: delete them
    /// wherever the host stored them.
    pub fn pseudonyms(&self) -> &[PseudonymRef] {
        &self.pseudonyms
    }

    /// Lookup tokens made from the subject's stored data
    /// ([`Custodian::lookup_token`]). The lookup key outlives the erasure (the
    /// index must keep working for everyone else), so each still matches the
    /// erased value: delete the index entries holding them.
    pub fn lookup_tokens(&self) -> &[LookupRef] {
        &self.lookup_tokens
    }
}

impl Custodian {
    /// A custodian with fresh random keys, an in-memory key store and an
    /// in-memory chained audit log (see [`builtin_audit_log`](Self::builtin_audit_log)).
    ///
    /// For tests, examples and short-lived processes: its keys die with it.
    ///
    /// # Panics
    ///
    /// Only if the operating system's random generator fails.
    pub fn in_memory() -> Self {
        Self::builder()
            .build()
            .expect("the operating system's random generator failed")
    }

    /// A builder for hosts that bring their own audit sink, keys, key store or clock.
    pub fn builder() -> CustodianBuilder {
        CustodianBuilder::default()
    }

    /// The chained in-memory log the custodian keeps when no sink was given.
    pub fn builtin_audit_log(&self) -> Option<&ChainedAuditLog<MemoryAuditLog>> {
        self.builtin_log.as_deref()
    }

    /// Consent calls: grant, withdraw, query.
    pub fn consents(&self) -> Consents<'_> {
        Consents { custodian: self }
    }

    pub(crate) fn now(&self) -> Timestamp {
        crate::reentry::host(|| self.clock.now())
    }

    /// Today's date (UTC) by the custodian's clock: for a purchase record's
    /// date, with no time text to parse, and the same clock as the audit
    /// trail and retention.
    ///
    /// ```
    /// use privacy_pledge::Custodian;
    /// use privacy_pledge::time::{FixedClock, Timestamp};
    ///
    /// let custodian = Custodian::builder()
    ///     .clock(FixedClock::new(Timestamp::from_unix_seconds(1_530_316_800)))
    ///     .build()?;
    /// assert_eq!(custodian.today().to_string(), "2018-06-30");
    /// # Ok::<(), privacy_pledge::Error>(())
    /// ```
    pub fn today(&self) -> crate::data::Date {
        self.now().date()
    }

    /// Offers the event to the sink. Refused with [`Error::Reentrant`] when
    /// called from inside host code (a sink, key store, provider or clock
    /// calling back into the custodian), which would otherwise deadlock.
    ///
    /// Inside a [request scope](Self::request) the event is staged instead,
    /// or, for an effect that leaves the process, committed with what was
    /// staged before it ([`crate::request`]).
    pub(crate) fn record(&self, event: AuditEvent) -> Result<(), Error> {
        crate::reentry::check()?;
        let refusal = event.outcome() == crate::audit::Outcome::Denied;
        match crate::request::stage(self.id, event, refusal) {
            Staging::Record(event) => {
                crate::reentry::host(|| self.sink.record_owned(event)).map_err(Error::Audit)
            }
            Staging::Staged => Ok(()),
            Staging::Commit(events) => self.commit_staged(&events).map_err(|e| {
                crate::request::failed(self.id, &e);
                Error::Audit(e)
            }),
        }
    }

    /// Records a refusal. A failing sink cannot make a refusal worse, so its
    /// error is dropped and the refusal returned. (Staged inside a request
    /// scope: nothing leaves with a refusal.)
    pub(crate) fn deny(&self, event: AuditEvent, rule: RuleId, err: Error) -> Error {
        if crate::reentry::check().is_ok() {
            match crate::request::stage(self.id, event.denied(rule), true) {
                Staging::Record(event) => {
                    let _ = crate::reentry::host(|| self.sink.record_owned(event));
                }
                Staging::Staged | Staging::Commit(_) => {}
            }
        }
        err
    }

    /// Verifies `events` under this custodian's own audit key, stream by
    /// stream, against trusted checkpoints the caller cannot choose, and
    /// returns the [`VerifiedTrail`] that [`Consents::restore`] and
    /// [`subject_report`](Self::subject_report) take.
    ///
    /// The trusted checkpoints are the signed ones in the custodian's
    /// [checkpoint store](CustodianBuilder::checkpoint_store), each of which
    /// must verify under its checkpoint key (derived from the keyring, or
    /// [pinned](CustodianBuilder::checkpoint_key)), and the head of its own
    /// built-in log. A stream starts at seq 1 or right after an archive base
    /// there. The audit key is the custodian's; the caller chooses neither.
    /// A trail that is cut short of a checkpoint, rolled back, missing a
    /// stream or a vouched prefix, edited, or chained under another key is
    /// refused with [`Error::Untrusted`], and so is a checkpoint store that
    /// cannot be read or holds a checkpoint that does not verify. Entries no
    /// checkpoint vouches for are accepted but counted
    /// ([`VerifiedTrail::unvouched`]). Verification itself is not audited:
    /// it reads no personal information.
    ///
    /// ```
    /// use privacy_pledge::Custodian;
    /// use privacy_pledge::audit::MemoryCheckpointStore;
    /// use privacy_pledge::crypto::Keyring;
    /// use std::sync::Arc;
    ///
    /// let (keyring, checkpoints) = (Arc::new(Keyring::generate()?), MemoryCheckpointStore::new());
    /// let before = Custodian::builder().keyring(keyring.clone()).checkpoint_store(checkpoints.clone()).build()?;
    /// before.consents().grant::<privacy_pledge::purpose::Newsletter>(privacy_pledge::SubjectId::random())?;
    /// before.sign_checkpoint()?; // e.g. at clean shutdown
    /// let events = before.builtin_audit_log().unwrap().inner().events();
    ///
    /// let after = Custodian::builder().keyring(keyring).checkpoint_store(checkpoints).build()?;
    /// assert!(after.verify_trail(events.clone())?.is_fully_vouched());
    /// // The last entry cut: the signed checkpoint shows it.
    /// assert!(after.verify_trail(events[..0].to_vec()).is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn verify_trail(&self, events: Vec<AuditEvent>) -> Result<VerifiedTrail, Error> {
        self.verify_trail_with(|| Ok::<_, Error>(events))
    }

    /// [`verify_trail`](Self::verify_trail) for a trail other processes may
    /// be appending to: the trusted checkpoints are read **first**, then
    /// `read` fetches the trail (e.g. `|| store.trail()`), so that a
    /// checkpoint signed meanwhile cannot name entries the trail read
    /// before it lacks, which would look like a cut.
    pub fn verify_trail_with<E: From<Error>>(
        &self,
        read: impl FnOnce() -> Result<Vec<AuditEvent>, E>,
    ) -> Result<VerifiedTrail, E> {
        crate::reentry::check()?;
        let key = self
            .audit_key
            .as_ref()
            .ok_or(TrailError::NoKey)
            .map_err(Error::from)?;
        let (mut heads, mut bases) = (Vec::new(), Vec::new());
        if let Some(store) = &self.checkpoint_store {
            let public = self
                .checkpoint_key
                .ok_or(TrailError::NoKey)
                .map_err(Error::from)?;
            let signed = crate::reentry::host(|| store.load())
                .map_err(|_| Error::from(TrailError::NoCheckpointStore))?;
            let (valid, base, bad) = crate::audit::signed::sort_checkpoints(&public, &signed);
            if !bad.is_empty() {
                return Err(Error::from(TrailError::BadCheckpoint).into());
            }
            (heads, bases) = (valid, base);
        }
        if let Some(log) = &self.builtin_log {
            if let Some(stream) = log.stream() {
                heads.push((stream, log.checkpoint()));
            }
        }
        let events = read()?;
        Ok(
            VerifiedTrail::verify_streams(events, key, &heads, &bases, self.id)
                .map_err(Error::from)?,
        )
    }

    /// Verifies `events` (one chain) under this custodian's own audit key
    /// against a checkpoint **the caller** chose, for diagnostics only.
    ///
    /// Such a checkpoint proves nothing: one can be built from any entry's
    /// public fields, so host code could cut every entry after it (a
    /// disclosure, say) and still pass. The trail returned therefore vouches
    /// for none of its entries: [`VerifiedTrail::is_fully_vouched`] is
    /// `false`, [`Consents::restore`] refuses it, and a subject report made
    /// from it says it is not vouched for. Use [`verify_trail`](Self::verify_trail).
    pub fn verify_trail_unverified(
        &self,
        events: Vec<AuditEvent>,
        trusted: &Checkpoint,
    ) -> Result<VerifiedTrail, Error> {
        let key = self.audit_key.as_ref().ok_or(TrailError::NoKey)?;
        Ok(VerifiedTrail::verify_unvouched(
            events, key, trusted, self.id,
        )?)
    }

    /// Signs the head of the custodian's built-in log and keeps it in its
    /// [checkpoint store](CustodianBuilder::checkpoint_store): the trusted
    /// checkpoint a later [`verify_trail`](Self::verify_trail) — in this
    /// process or after a restart — vouches for the log with. Call it after
    /// consent changes and at clean shutdown; entries after the newest
    /// checkpoint are not vouched for. (A store's durable sink signs its own
    /// checkpoints.) Refused with [`TrailError::NoCheckpointStore`] without a
    /// store, a keyring to sign with, or a built-in log.
    pub fn sign_checkpoint(&self) -> Result<crate::audit::SignedCheckpoint, Error> {
        crate::reentry::check()?;
        let (Some(store), Some(signer), Some(log)) = (
            &self.checkpoint_store,
            &self.checkpoint_signer,
            &self.builtin_log,
        ) else {
            return Err(TrailError::NoCheckpointStore.into());
        };
        let stream = log.stream().ok_or(TrailError::NoCheckpointStore)?;
        // Two threads signing at once would otherwise race their saves,
        // and the older checkpoint could be the one kept.
        let _one_at_a_time = self.checkpointing.lock().unwrap_or_else(|p| p.into_inner());
        let signed = signer.sign(stream, log.checkpoint(), self.now());
        crate::reentry::host(|| store.save(&signed)).map_err(Error::Audit)?;
        Ok(signed)
    }

    pub(crate) fn check_not_erased(&self, subject: SubjectId) -> Result<(), Error> {
        self.check_not_erased_at(subject, None)
    }

    /// [`check_not_erased`](Self::check_not_erased) for a use whose audit
    /// event read the clock at `at` just now.
    fn check_not_erased_at(&self, subject: SubjectId, at: Option<Timestamp>) -> Result<(), Error> {
        // With an anchor, this process's erasures are in the anchor's view
        // (appended before anything is destroyed) and its filter answers
        // the common case without a lock; the local set is for custodians
        // without one.
        if self.anchor.is_none()
            && self.any_erased.load(Ordering::Acquire)
            && self
                .erased
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .contains(&subject)
        {
            return Err(Error::Erased { subject, at: None });
        }
        if self.anchor.is_none() && self.shared_keys {
            // Erased by another custodian, or before a restart: the key
            // store's tombstone says so (read at most once per bound for a
            // subject whose keys this custodian holds).
            return self
                .vault
                .check_live(subject, at.unwrap_or_else(|| self.now()));
        }
        // Erased by any process of the fleet, whatever the key rows say:
        // seen here within the anchor's bound.
        let now = at.filter(|_| self.system_clock);
        if let Some(at) = self.anchored_erasure_at(subject, now)? {
            return Err(Error::Erased {
                subject,
                at: Some(at),
            });
        }
        Ok(())
    }

    /// When the subject was erased according to the freshness anchor.
    pub(crate) fn anchored_erasure(&self, subject: SubjectId) -> Result<Option<Timestamp>, Error> {
        self.anchored_erasure_at(subject, None)
    }

    /// Whether a freshness anchor keeps this custodian's erasures.
    pub(crate) fn has_anchor(&self) -> bool {
        self.anchor.is_some()
    }

    /// [`anchored_erasure`](Self::anchored_erasure), `now` being the system
    /// clock read just now, if the caller has it.
    fn anchored_erasure_at(
        &self,
        subject: SubjectId,
        now: Option<Timestamp>,
    ) -> Result<Option<Timestamp>, Error> {
        match &self.anchor {
            Some(a) => a.erased_at(subject, now),
            None => Ok(None),
        }
    }

    fn event<T: DataKind, P: Purpose>(
        &self,
        info: &PersonalInfo<T, P>,
        action: Action,
        rule: RuleId,
    ) -> AuditEvent {
        AuditEvent::new(self.now(), info.subject(), action, rule).about(T::KIND, P::ID)
    }

    /// For a consent-based purpose `P`, the subject's live consent (`Err`
    /// if there is none, or it cannot be read); `None` for other purposes.
    fn live_consent<P: Purpose>(
        &self,
        subject: SubjectId,
        at: Option<Timestamp>,
    ) -> Result<Option<crate::consent::ConsentState>, Error> {
        if !P::ID.needs_consent() {
            return Ok(None);
        }
        let now = at.filter(|_| self.system_clock);
        match self.consents.state_at(subject, P::ID, now)? {
            Some(s) if s.granted => Ok(Some(s)),
            _ => Err(Error::NoConsent {
                subject,
                purpose: P::ID,
            }),
        }
    }

    /// The shared first step of every audited use: refuse erased subjects;
    /// for consent-based purposes, subjects without live consent (so a
    /// withdrawal takes effect even for values already in memory, R7); and
    /// a value held past its retention period as an envelope of it would be
    /// (R11: data collected before a withdrawal stays expired after a new
    /// grant, in memory too); then record the event. Only after `Ok` does
    /// the use happen.
    fn audited<T: DataKind, P: Purpose>(
        &self,
        info: &PersonalInfo<T, P>,
        event: AuditEvent,
    ) -> Result<(), Error> {
        let subject = info.subject();
        if let Err(e) = self.check_not_erased_at(subject, Some(event.time)) {
            return Err(self.deny(event, RuleId::R11, e));
        }
        if let Some((rule, e)) = self.refusal(info, event.time) {
            return Err(self.deny(event, rule, e));
        }
        self.record(event)
    }

    /// Why `info` may not be used at `at`, if it may not: no live consent
    /// for a consent-based purpose (R7), or held past its retention period
    /// (R11). Every use of a value asks, audited or not (a pseudonym, a
    /// lookup token): one check, so the two cannot drift apart.
    fn refusal<T: DataKind, P: Purpose>(
        &self,
        info: &PersonalInfo<T, P>,
        at: Timestamp,
    ) -> Option<(RuleId, Error)> {
        let subject = info.subject();
        let consent = match self.live_consent::<P>(subject, Some(at)) {
            Ok(consent) => consent,
            Err(e) => return Some((RuleId::R7, e)),
        };
        // A value made by `PersonalInfo::collect` has no collection time
        // yet: its first seal stamps it.
        let collected = info.collected_at()?;
        let state = || match consent {
            Some(s) => Ok(Some(s)),
            None => self.consents.state(subject, P::ID),
        };
        let expired_at = self.expired_given(P::ID, collected, at, state)?;
        Some((
            RuleId::R11,
            Error::Expired {
                subject,
                kind: T::KIND,
                purpose: P::ID,
                expired_at,
            },
        ))
    }

    /// Forgets the keys and noted tokens this custodian cached (see
    /// `request::deferred_writes_kept`).
    #[cfg(feature = "postgres")]
    pub(crate) fn forget_cached_keys(&self) {
        self.vault.forget_cached();
    }

    /// Where a durable commit to the key store's database that begins now
    /// stands, for [`keys_flushed_to`](Self::keys_flushed_to).
    pub(crate) fn key_flush_point(&self) -> u64 {
        self.vault.flush_point()
    }

    /// The keys this custodian wrote without a durable commit of their own
    /// up to `point` are durable: a durable commit to their database began
    /// after them and returned, and no connection was opened again since
    /// the request began.
    pub(crate) fn keys_flushed_to(&self, point: u64) {
        self.vault.flushed_to(point);
    }

    /// The count of connections opened again of the PostgreSQL store this
    /// custodian's writes in a request scope may skip their own durable
    /// commit on (see `request::note_scope_start`).
    #[cfg(feature = "postgres")]
    pub(crate) fn deferral_reopened(&self) -> Option<&crate::request::Reopened> {
        self.vault.deferral_reopened()
    }

    /// A new subject: a fresh random id, like [`SubjectId::random`], for
    /// someone this service has never seen (a sign-up).
    ///
    /// The custodian knows that no key store holds a key of an id it has
    /// just drawn, so the subject's first seal creates its key without
    /// reading the key store first: on a database store, one round trip
    /// (and one read transaction) less per sign-up. If one were there all
    /// the same, the insert would refuse it and the seal would read the
    /// store and go on as for any subject: nothing relies on the shortcut
    /// for safety. For a subject that already exists, use its stored id.
    ///
    /// `Err` only if the system's random generator fails.
    ///
    /// ```
    /// use privacy_pledge::data::EmailAddress;
    /// use privacy_pledge::purpose::Transaction;
    /// use privacy_pledge::{Custodian, PersonalInfo};
    ///
    /// let custodian = Custodian::builder().build()?;
    /// let ada = custodian.new_subject()?;
    /// let email: PersonalInfo<EmailAddress, Transaction> =
    ///     custodian.collect(ada, EmailAddress::parse("ada@example.com")?)?;
    /// let sealed = custodian.seal(&email)?;
    /// assert_eq!(custodian.open(&sealed)?.subject(), ada);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new_subject(&self) -> Result<SubjectId, Error> {
        self.vault.new_subject(self.now())
    }

    /// Collects a value for purpose `P` and records a `collect` event.
    ///
    /// This is the usual way in: the value carries its collection time from
    /// here on (retention counts from it, R11), and the collection is in the
    /// trail. [`PersonalInfo::collect`] is the unaudited form, right only
    /// where the value is not yet held by the vendor (e.g. built in a test or
    /// straight from a form and sealed at once; the first seal stamps it).
    pub fn collect<T: DataKind, P: Purpose>(
        &self,
        subject: SubjectId,
        value: T,
    ) -> Result<PersonalInfo<T, P>, Error> {
        op_span!(self, Action::Collect, subject, Some(T::KIND), Some(P::ID));
        let now = self.now();
        let info = PersonalInfo::collected_at_time(
            subject,
            value,
            self.collection_stamp::<P>(subject, now),
        );
        let event =
            AuditEvent::new(now, subject, Action::Collect, RuleId::R1).about(T::KIND, P::ID);
        self.audited(&info, event)?;
        Ok(info)
    }

    /// Reads the value inside `f`, for the purpose it is held for.
    ///
    /// Recorded before `f` runs; if the sink fails, `f` never runs. Not for
    /// [`Improvement`](crate::purpose::Improvement), which never sees plaintext (R6).
    pub fn access<T, P, F, O>(&self, info: &PersonalInfo<T, P>, f: F) -> Result<O, Error>
    where
        T: DataKind,
        P: SeesPlaintext,
        F: FnOnce(&T) -> O,
    {
        op_span!(
            self,
            Action::Access,
            info.subject(),
            Some(T::KIND),
            Some(P::ID)
        );
        self.audited(info, self.event(info, Action::Access, RuleId::R2))?;
        Ok(f(info.value()))
    }

    /// Hands the value to `recipient` inside `f` and returns what `f` returns.
    ///
    /// Compiles only if the recipient's role is permitted for `P` (R3–R5); the
    /// recipient's name and role are recorded before `f` runs. With the
    /// [registry](CustodianBuilder::recipients) on, `R` must be a registered
    /// recipient type under that name and role.
    pub fn disclose<T, P, R, F, O>(
        &self,
        info: &PersonalInfo<T, P>,
        recipient: &R,
        f: F,
    ) -> Result<O, Error>
    where
        T: DataKind,
        P: SeesPlaintext,
        R: Recipient + ?Sized + 'static,
        R::Role: PermittedFor<P>,
        F: FnOnce(&T) -> O,
    {
        op_span!(
            self,
            Action::Disclose,
            info.subject(),
            Some(T::KIND),
            Some(P::ID)
        );
        let event = self.event(info, Action::Disclose, RuleId::R5);
        self.audited_disclosure(info, recipient, event)?;
        Ok(f(info.value()))
    }

    /// The shared first step of both disclosures: name the recipient in the
    /// event (R5), check where it processes like a transfer from the home
    /// country, the first declared facility (R8), then the usual checks and
    /// the record. Plaintext and pseudonyms go through the same gate.
    fn audited_disclosure<T: DataKind, P: Purpose, R: Recipient + ?Sized + 'static>(
        &self,
        info: &PersonalInfo<T, P>,
        recipient: &R,
        mut event: AuditEvent,
    ) -> Result<(), Error> {
        let role = <R::Role as Role>::ID;
        // The name is asked for once: the entry checked below and the name
        // the trail records are the same one, whatever a host `name()`
        // answers on a second call.
        let name: Box<str> = recipient.name().into();
        event.recipient = Some(RecipientRef {
            name: name.clone(),
            role,
        });
        // With the registry on, the registered entry is the truth: the
        // recipient's type must be registered with this name under this role
        // (a look-alike type returning a registered name is not the
        // registered recipient), and where it processes and under which
        // mechanism come from the registry too.
        let registered = match &self.recipients {
            None => None,
            Some(list) => match list.iter().find(|r| r.matches::<R>(&name)) {
                Some(r) => Some(r),
                None => {
                    let e = Error::UnregisteredRecipient { name, role };
                    return Err(self.deny(event, RuleId::R5, e));
                }
            },
        };
        let home = self.facilities.first().copied();
        let countries = recipient
            .processes_in()
            .iter()
            .chain(registered.map_or(&[][..], |r| r.processes_in()));
        // With the registry on, only the entry names a mechanism: one the
        // value claims for itself (and the host's reviewed registry never
        // recorded) takes nothing abroad. The value's own countries are
        // still checked, under the entry's mechanism.
        let mechanism = match registered {
            Some(r) => r.mechanism(),
            None => recipient.transfer_mechanism(),
        };
        // Where the data goes abroad, the event names the country (the
        // first outside the EEA, else the first outside the home country)
        // and the mechanism it went under (R8), as a transfer's does.
        let mut abroad: Option<Country> = None;
        for &country in countries {
            let mut t = Transfer::new(home.unwrap_or(country), country);
            if let Some(m) = mechanism {
                t = t.under(m);
            }
            if let Err(e) = t.check(&self.facilities) {
                event.country = Some(country);
                return Err(self.deny(event, RuleId::R8, e.into()));
            }
            let far = |c: Country| {
                if !c.in_eea() {
                    2
                } else if Some(c) != home {
                    1
                } else {
                    0
                }
            };
            if far(country) > abroad.map_or(0, far) {
                abroad = Some(country);
            }
        }
        if abroad.is_some() {
            event.country = abroad;
            event.mechanism = mechanism;
        }
        self.audited(info, event)
    }

    /// Approves and records a transfer of `info` to another country (R8).
    ///
    /// Refused with [`Error::Transfer`] unless the destination is a declared
    /// facility and, for data leaving the EEA, a mechanism that covers the
    /// destination is named. Every approval and every refusal is an audit
    /// event. Move the data (sealed) only after `Ok`.
    pub fn transfer<T: DataKind, P: Purpose>(
        &self,
        info: &PersonalInfo<T, P>,
        transfer: &Transfer,
    ) -> Result<TransferRecord, Error> {
        op_span!(
            self,
            Action::Transfer,
            info.subject(),
            Some(T::KIND),
            Some(P::ID)
        );
        let mut event = self.event(info, Action::Transfer, RuleId::R8);
        event.country = Some(transfer.to());
        event.mechanism = transfer.mechanism();
        if let Err(e) = transfer.check(&self.facilities) {
            return Err(self.deny(event, RuleId::R8, e.into()));
        }
        let at = event.time;
        self.audited(info, event)?;
        Ok(TransferRecord::new(
            info.subject(),
            T::KIND,
            P::ID,
            *transfer,
            at,
        ))
    }

    /// The countries declared as facilities (R8).
    pub fn facilities(&self) -> &[Country] {
        &self.facilities
    }

    /// The retention policy (R11).
    pub fn retention(&self) -> &RetentionPolicy {
        &self.retention
    }

    /// The controller's record of processing with this custodian's
    /// facilities and retention periods (see [`crate::policy::processing_record`]).
    pub fn processing_record(&self) -> crate::policy::ProcessingRecord {
        crate::policy::processing_record_with(
            &self.retention,
            &self.facilities,
            self.recipients.as_deref().unwrap_or_default(),
        )
    }

    /// When data of `subject` held for `purpose` and collected at `collected`
    /// expired, if it has.
    fn expired(
        &self,
        subject: SubjectId,
        purpose: PurposeId,
        collected: Timestamp,
        now: Timestamp,
    ) -> Option<Timestamp> {
        self.expired_given(purpose, collected, now, || {
            self.consents.state(subject, purpose)
        })
    }

    /// [`expired`](Self::expired), the consent state read by `state` (only
    /// for a purpose held while consent lasts).
    ///
    /// A consent-based purpose is held while consent lasts whatever the
    /// policy says (R7): a period set for it can only end retention sooner,
    /// and `UntilErased` there is `UntilWithdrawn` — the host's policy
    /// never makes data collected before a withdrawal live again.
    fn expired_given(
        &self,
        purpose: PurposeId,
        collected: Timestamp,
        now: Timestamp,
        state: impl FnOnce() -> Result<Option<crate::consent::ConsentState>, Error>,
    ) -> Option<Timestamp> {
        let retention = self.retention.get(purpose);
        let by_time = self
            .retention
            .expires_at(purpose, collected)
            .filter(|until| now >= *until);
        if !purpose.needs_consent() && retention != Retention::UntilWithdrawn {
            return by_time;
        }
        // Held while consent lasts: data collected before the last
        // withdrawal stays expired even after a new grant.
        let by_consent = match state() {
            Ok(Some(s)) if !s.granted => Some(s.since),
            Ok(Some(s)) => s.withdrawn_at.filter(|w| collected <= *w),
            Ok(None) => Some(collected),
            // Consent that cannot be read counts as withdrawn (fail closed).
            Err(_) => Some(now),
        };
        match (by_time, by_consent) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Lists the records past their retention period, so the host can delete
    /// them (or erase subjects with nothing left). Nothing is opened.
    pub fn sweep(&self, records: &[&dyn StoredRecord]) -> Vec<Due> {
        let now = self.now();
        records
            .iter()
            .enumerate()
            .filter_map(|(index, r)| {
                self.expired(r.subject(), r.purpose(), r.collected_at(), now)
                    .map(|expired_at| Due {
                        index,
                        subject: r.subject(),
                        kind: r.kind(),
                        purpose: r.purpose(),
                        expired_at,
                    })
            })
            .collect()
    }

    /// Hands `info`'s keyed pseudonym (never the value) to a processor or
    /// affiliate for improvement and analysis (R6), inside `f`.
    ///
    /// Compiles only where the role may receive pseudonyms of `P`'s data
    /// ([`PseudonymsFor`]): a pseudonymised subscriber list is still the
    /// list, so `Newsletter`, `Promotion` and `Personalization` pseudonyms
    /// reach processors only (R4).
    pub fn disclose_pseudonym<T, P, R, F, O>(
        &self,
        info: &PersonalInfo<T, P>,
        recipient: &R,
        f: F,
    ) -> Result<O, Error>
    where
        T: DataKind,
        P: Purpose,
        R: Recipient + ?Sized + 'static,
        R::Role: PseudonymsFor<P>,
        F: FnOnce(&Pseudonym<T>) -> O,
    {
        op_span!(
            self,
            Action::Disclose,
            info.subject(),
            Some(T::KIND),
            Some(P::ID)
        );
        let mut event = self.event(info, Action::Disclose, RuleId::R6);
        event.target_purpose = Some(PurposeId::Improvement);
        self.audited_disclosure(info, recipient, event)?;
        let p = self
            .vault
            .pseudonym(info.subject(), info.value(), self.now())?;
        Ok(f(&p))
    }

    /// Moves `info` to a compatible purpose `Q` (R6). Compiles only for the
    /// compatible moves (see [`CompatibleFrom`]); recorded first.
    pub fn repurpose<T, P, Q>(&self, info: PersonalInfo<T, P>) -> Result<PersonalInfo<T, Q>, Error>
    where
        T: DataKind,
        P: Purpose,
        Q: CompatibleFrom<P>,
    {
        op_span!(
            self,
            Action::Repurpose,
            info.subject(),
            Some(T::KIND),
            Some(P::ID)
        );
        let mut event = self.event(&info, Action::Repurpose, RuleId::R6);
        event.target_purpose = Some(Q::ID);
        self.audited(&info, event)?;
        Ok(info.retag())
    }

    /// Moves `info` into a consent-based purpose `Q` with the subject's live
    /// consent (R6, R7). The proof must be this subject's, from this
    /// custodian, and its grant must still be live.
    ///
    /// The value counts as collected for `Q` now: consent is the new ground
    /// for holding it, and it is held for `Q` until that consent is withdrawn.
    pub fn repurpose_with_consent<T, P, Q>(
        &self,
        info: PersonalInfo<T, P>,
        proof: &ConsentProof<Q>,
    ) -> Result<PersonalInfo<T, Q>, Error>
    where
        T: DataKind,
        P: SeesPlaintext,
        Q: ConsentBased,
    {
        op_span!(
            self,
            Action::Repurpose,
            info.subject(),
            Some(T::KIND),
            Some(P::ID)
        );
        let mut event = self.event(&info, Action::Repurpose, RuleId::R6);
        event.target_purpose = Some(Q::ID);
        if let Err(e) = proof.check(self, info.subject()) {
            return Err(self.deny(event, RuleId::R7, e));
        }
        let at = self.collection_stamp::<Q>(info.subject(), event.time);
        self.audited(&info, event)?;
        Ok(info.retag_at(at))
    }

    /// The collection time to stamp on a value collected at `now` for `P`:
    /// `now`, or for a consent-based purpose the live grant's time. Data
    /// held under consent is dated by the grant it is held under, not by
    /// the clock of the process that collected it: every later withdrawal
    /// is stamped after the grant (a consent change comes after the last
    /// one), and the grant after any earlier withdrawal (in a later whole
    /// second, as envelopes keep whole seconds). A clock running ahead
    /// would otherwise date a value after another process's withdrawal,
    /// and the value would come back to life with the next grant (R11).
    fn collection_stamp<P: Purpose>(&self, subject: SubjectId, now: Timestamp) -> Timestamp {
        match self.live_consent::<P>(subject, Some(now)) {
            Ok(Some(grant)) => grant.since,
            _ => now,
        }
    }

    /// A proof of the subject's live consent for `P`, or
    /// [`Error::NoConsent`] if there is none or it was withdrawn.
    pub fn consent_proof<P: ConsentBased>(
        &self,
        subject: SubjectId,
    ) -> Result<ConsentProof<P>, Error> {
        self.check_not_erased(subject)?;
        self.consents
            .live_epoch(subject, P::ID)?
            .map(|epoch| ConsentProof::new(subject, epoch, self.id))
            .ok_or(Error::NoConsent {
                subject,
                purpose: P::ID,
            })
    }

    /// Seals `info` for storage under its subject's data key, bound to
    /// subject, kind and purpose (R9). Recorded first.
    pub fn seal<T: DataKind, P: Purpose>(
        &self,
        info: &PersonalInfo<T, P>,
    ) -> Result<Sealed<T, P>, Error> {
        // One clock reading serves the audit event and, for a value that
        // does not carry one yet, the collection time.
        let event = self.event(info, Action::Seal, RuleId::R9);
        let collected = info
            .collected_at()
            .unwrap_or_else(|| self.collection_stamp::<P>(info.subject(), event.time));
        self.seal_audited(info, event, collected)
    }

    /// Like [`seal`](Self::seal), recording `collected` as the time the value
    /// was collected (for retention), e.g. when a host migrates values it
    /// collected before it used the crate. Dating a value later than it was
    /// collected would stretch its retention period (R11), so a time in the
    /// future is refused ([`Error::CollectedInFuture`]), and so is a time
    /// later than the one the value already carries
    /// ([`Error::CollectedLater`]). (An opened value needs no `seal_at`:
    /// it carries its envelope's collection time, and [`seal`](Self::seal)
    /// keeps it.)
    pub fn seal_at<T: DataKind, P: Purpose>(
        &self,
        info: &PersonalInfo<T, P>,
        collected: Timestamp,
    ) -> Result<Sealed<T, P>, Error> {
        op_span!(
            self,
            Action::Seal,
            info.subject(),
            Some(T::KIND),
            Some(P::ID)
        );
        let event = self.event(info, Action::Seal, RuleId::R9);
        if collected > event.time {
            return Err(self.deny(event, RuleId::R11, Error::CollectedInFuture { collected }));
        }
        if let Some(known) = info.collected_at().filter(|k| collected > *k) {
            return Err(self.deny(event, RuleId::R11, Error::CollectedLater { known }));
        }
        self.seal_audited(info, event, collected)
    }

    fn seal_audited<T: DataKind, P: Purpose>(
        &self,
        info: &PersonalInfo<T, P>,
        event: AuditEvent,
        collected: Timestamp,
    ) -> Result<Sealed<T, P>, Error> {
        let now = event.time;
        self.audited(info, event)?;
        let (header, bytes) =
            self.vault
                .seal(info.subject(), P::ID.code(), info.value(), collected, now)?;
        Ok(Sealed::from_parts(header, bytes))
    }

    /// Opens an envelope sealed by this custodian (or one sharing its keys).
    ///
    /// `Err(Error::Erased)` for an erased subject; `Err(Error::Unauthentic)`
    /// for any altered envelope or one sealed for another subject, kind or
    /// purpose. The `open` is recorded before decryption.
    ///
    /// The value carries the envelope's collection time, so sealing it again
    /// keeps its retention period where it was (R11).
    pub fn open<T: DataKind, P: Purpose>(
        &self,
        sealed: &Sealed<T, P>,
    ) -> Result<PersonalInfo<T, P>, Error> {
        op_span!(
            self,
            Action::Open,
            sealed.subject(),
            Some(T::KIND),
            Some(P::ID)
        );
        let header = sealed.header();
        let event = AuditEvent::new(self.now(), header.subject, Action::Open, RuleId::R9)
            .about(T::KIND, P::ID);
        self.open_as(sealed, event)
    }

    /// Opens `sealed`, recording `event` (an `open`, or a disclosure to the
    /// subject for a report) before decryption.
    pub(crate) fn open_as<T: DataKind, P: Purpose>(
        &self,
        sealed: &Sealed<T, P>,
        event: AuditEvent,
    ) -> Result<PersonalInfo<T, P>, Error> {
        let header = sealed.header();
        let now = event.time;
        let key = match self
            .check_not_erased_at(header.subject, Some(now))
            .and_then(|()| self.vault.check_open(header, now))
        {
            Ok(k) => k,
            Err(e @ Error::Erased { .. }) => return Err(self.deny(event, RuleId::R11, e)),
            Err(e) => return Err(e),
        };
        if let Some(expired_at) = self.expired(header.subject, P::ID, sealed.collected_at(), now) {
            let e = Error::Expired {
                subject: header.subject,
                kind: T::KIND,
                purpose: P::ID,
                expired_at,
            };
            return Err(self.deny(event, RuleId::R11, e));
        }
        self.record(event)?;
        let value = self
            .vault
            .open::<T>(&key, header, sealed.as_bytes(), P::ID.code())?;
        Ok(PersonalInfo::collected_at_time(
            header.subject,
            value,
            sealed.collected_at(),
        ))
    }

    /// Compacts the freshness anchor: rewrites its log as the state it
    /// holds — the latest row of each anchored consent, and each erasure —
    /// so that it no longer grows with every change ever made. Read back,
    /// the new log gives the state the old one did, but that a finished
    /// erasure's receipt keeps its generations and loses its lookup tokens
    /// and pseudonyms: in the log, they tie values of the erased subject's
    /// to their id (see the `freshness` module's "Erasure receipts"); a
    /// retry of the erasure afterwards returns a receipt without them. It
    /// is a fresh chain under the same key, so nothing without the keyring
    /// can make one.
    ///
    /// **A maintenance step: stop the service's other processes first.** A
    /// process that read the old log finds the new one shorter, or not
    /// where its lines were, and fails closed ([`Error::Anchor`] on every
    /// use that needs the anchor) until it is restarted; an append of its
    /// that raced the compaction fails rather than write to the replaced
    /// file ([`DirAnchorStore`](crate::freshness::DirAnchorStore), on Unix).
    /// Nothing anchored is ever lost.
    ///
    /// Recorded first ([`Action::AnchorCompacted`]): if the audit hook or
    /// sink fails, the log is left as it was and the error returned.
    ///
    /// `Err(Error::Anchor)` without an anchor, with one whose store cannot
    /// replace its log ([`AnchorStore::replace`]), or one that does not
    /// verify.
    ///
    /// ```
    /// use privacy_pledge::{Custodian, SubjectId};
    /// use privacy_pledge::consent::MemoryConsentStore;
    /// use privacy_pledge::crypto::Keyring;
    /// use privacy_pledge::freshness::MemoryAnchorStore;
    /// use privacy_pledge::purpose::Newsletter;
    ///
    /// let custodian = Custodian::builder()
    ///     .keyring(Keyring::generate()?)
    ///     .consent_store(MemoryConsentStore::new())
    ///     .freshness_anchor(MemoryAnchorStore::new())
    ///     .build()?;
    /// let ada = SubjectId::random();
    /// for _ in 0..5 {
    ///     custodian.consents().withdraw::<Newsletter>(ada)?;
    ///     custodian.consents().grant::<Newsletter>(ada)?;
    /// }
    /// let done = custodian.compact_anchor()?;
    /// assert_eq!((done.lines_before(), done.lines_after()), (10, 1));
    /// assert!(custodian.consents().is_granted::<Newsletter>(ada));
    /// custodian.consent_proof::<Newsletter>(ada)?; // the row still matches the anchor
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn compact_anchor(&self) -> Result<crate::freshness::AnchorCompaction, Error> {
        crate::reentry::check()?;
        let anchor = self
            .anchor
            .as_ref()
            .ok_or_else(|| AnchorError::new("no freshness anchor to compact"))?;
        self.record(AuditEvent::new(
            self.now(),
            SubjectId::from_bytes([0; 16]),
            Action::AnchorCompacted,
            RuleId::R7,
        ))?;
        anchor.compact()
    }

    /// Erases a subject by destroying its data keys (R11): from now on every
    /// envelope of the subject fails with [`Error::Erased`], and the
    /// subject's consents are forgotten. Constant work, whatever the number of
    /// records. Recorded first.
    ///
    /// Every other use of the subject — an access or disclosure of a value
    /// held in memory, a collect, a consent change — is refused too: here at
    /// once, and by every other custodian on the same key store (another
    /// process, or one started later) within its key cache's bound
    /// ([`key_revalidate_after`](CustodianBuilder::key_revalidate_after)),
    /// as it finds the key store's tombstone; with a freshness anchor,
    /// within the anchor's bound, whatever the key store's rows say.
    ///
    /// # Which copies this covers
    ///
    /// - **Every copy of the sealed data** — tables, replicas, exports,
    ///   backups of the data — at once: the keys that open them are gone from
    ///   the key store.
    /// - **A copy of the key store itself** taken before the erasure (a
    ///   database backup that includes the key table) still holds the
    ///   subject's data key, wrapped under the key-encryption-key version in
    ///   use then. It stops mattering once that version is destroyed: run
    ///   [`rotate_after_erasures`](Self::rotate_after_erasures) after
    ///   erasures (one call: rotate, rewrap, retire and wipe, save the
    ///   keyring), and keep no older copy of the keyring's export. From its
    ///   return on no copy of the key store taken before it started opens
    ///   anything, even with the current keys. (Versions of a keyring made
    ///   by [`Keyring::from_master`] are derived, and can never be
    ///   destroyed: rotate off them.)
    /// - **Pseudonyms** are keyed by the pseudonym key, not the subject's data
    ///   key: the receipt lists the ones noted, for the host to delete.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use privacy_pledge::{Custodian, Error, PersonalInfo, SubjectId};
    /// use privacy_pledge::crypto::{KeyProvider, Keyring};
    /// use privacy_pledge::data::EmailAddress;
    /// use privacy_pledge::purpose::Transaction;
    ///
    /// let keyring = Arc::new(Keyring::generate()?);
    /// let custodian = Custodian::builder().keyring(keyring.clone()).build()?;
    /// let ada = SubjectId::random();
    /// let email: PersonalInfo<EmailAddress, Transaction> =
    ///     custodian.collect(ada, EmailAddress::parse("ada@example.com")?)?;
    /// let row = custodian.seal(&email)?;
    /// custodian.erase(ada)?;
    /// assert!(matches!(custodian.open(&row), Err(Error::Erased { .. })));
    ///
    /// // After erasures, by hand: rotate → rewrap → retire, then save the
    /// // keyring (`rotate_after_erasures` does all of it, safely while other
    /// // processes seal).
    /// let old = keyring.current_version();
    /// keyring.rotate()?;
    /// custodian.rewrap_keys(old)?;
    /// custodian.retire_key_version(old)?;
    /// let saved = keyring.export(); // replaces every older export
    /// # drop(saved);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn erase(&self, subject: SubjectId) -> Result<ErasureReceipt, Error> {
        op_span!(self, Action::Erase, subject, None, None);
        let Some(anchor) = &self.anchor else {
            let at = self.now();
            self.record(AuditEvent::new(at, subject, Action::Erase, RuleId::R11))?;
            let destroyed = self.vault.erase(subject, at)?;
            self.note_erased(subject);
            self.consents.forget(subject)?;
            return Ok(ErasureReceipt {
                subject,
                at,
                generations: destroyed.generations,
                pseudonyms: destroyed.pseudonyms,
                lookup_tokens: destroyed.lookup_tokens,
            });
        };
        // With an anchor, erasure is one journaled operation: `erasing` is
        // anchored before anything is destroyed (from then on every process
        // refuses the subject), then what is about to be destroyed, then
        // `erased` with the receipt; a retry after a fault at any step
        // finishes the job and returns the whole receipt again.
        anchor.refresh(true)?;
        let begun = anchor.erasure(subject)?;
        let at = match &begun {
            Some(e) => e.at,
            None => {
                let at = self.now();
                self.record(AuditEvent::new(at, subject, Action::Erase, RuleId::R11))?;
                anchor.append(|state| {
                    Ok(match state.erasure(subject) {
                        Some(_) => None,
                        None => Some(Entry::Erasing { subject, at }),
                    })
                })?;
                at
            }
        };
        self.note_erased(subject);
        let receipt = match begun.as_ref().and_then(|e| e.receipt.clone()) {
            Some(r) => r,
            None => {
                let mut receipt = match begun.and_then(|e| e.planned) {
                    Some(planned) => planned,
                    None => self.plan_erasure(anchor, subject)?,
                };
                receipt.merge(self.vault.erase(subject, at)?.into());
                anchor.append(|state| {
                    Ok(
                        match state.erasure(subject).and_then(|e| e.receipt.as_ref()) {
                            // Another process finished it first: its receipt.
                            Some(done) => {
                                receipt = done.clone();
                                None
                            }
                            None => Some(Entry::Erased {
                                subject,
                                at,
                                receipt: receipt.clone(),
                            }),
                        },
                    )
                })?;
                receipt
            }
        };
        self.consents.forget(subject)?;
        Ok(ErasureReceipt {
            subject,
            at,
            generations: receipt.generations,
            pseudonyms: receipt.pseudonyms,
            lookup_tokens: receipt.lookup_tokens,
        })
    }

    /// Journals what erasing `subject` is about to destroy (or takes the
    /// plan another process journaled first); an empty plan if the key
    /// store cannot say.
    fn plan_erasure(&self, anchor: &Anchor, subject: SubjectId) -> Result<Receipt, Error> {
        let Some(listed) = self.vault.to_destroy(subject)? else {
            return Ok(Receipt::default());
        };
        let mut plan = Receipt::from(listed);
        anchor.append(|state| {
            Ok(
                match state.erasure(subject).and_then(|e| e.planned.as_ref()) {
                    Some(first) => {
                        plan = first.clone();
                        None
                    }
                    None => Some(Entry::Planned {
                        subject,
                        receipt: plan.clone(),
                    }),
                },
            )
        })?;
        Ok(plan)
    }

    fn note_erased(&self, subject: SubjectId) {
        self.erased
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(subject);
        self.any_erased.store(true, Ordering::Release);
    }

    /// Whether the subject was erased (asks the freshness anchor, then the
    /// key store).
    pub fn is_erased(&self, subject: SubjectId) -> Result<bool, Error> {
        match self.check_not_erased(subject) {
            Err(Error::Erased { .. }) => return Ok(true),
            Err(e) => return Err(e),
            Ok(()) => {}
        }
        Ok(self.vault.is_erased(subject)?.is_some())
    }

    /// When the subject was erased: according to the freshness anchor when
    /// there is one (which a database operator cannot roll back), else the
    /// key store's tombstone.
    pub fn erased_at(&self, subject: SubjectId) -> Result<Option<Timestamp>, Error> {
        if let Some(at) = self.anchored_erasure(subject)? {
            return Ok(Some(at));
        }
        self.vault.is_erased(subject)
    }

    /// Whether the key store holds keys or noted tokens of `subject` (as far
    /// as it can say: [`KeyStore::to_destroy`](crate::crypto::KeyStore::to_destroy)).
    /// A store's `destroy` deletes them in the transaction that writes the
    /// tombstone, so a tombstone beside them is not one it wrote.
    pub(crate) fn holds_keys_of(&self, subject: SubjectId) -> Result<bool, Error> {
        Ok(self.vault.to_destroy(subject)?.is_some_and(|d| {
            !(d.generations.is_empty() && d.lookup_tokens.is_empty() && d.pseudonyms.is_empty())
        }))
    }

    /// The keyed pseudonym of `info`'s value: the form in which
    /// [`Improvement`](crate::purpose::Improvement) works (R6). Deterministic
    /// under the custodian's pseudonym key. Computing one is not audited;
    /// handing one out is ([`disclose_pseudonym`](Self::disclose_pseudonym)).
    /// A pseudonym reveals nothing to whoever lacks the key; whoever holds
    /// the custodian can compute pseudonyms of guesses and compare, as with
    /// any keyed equality token, so a short list of candidates (the
    /// customers' emails) is tested unaudited.
    ///
    /// Data held for a consent-based purpose gets a pseudonym only while the
    /// subject's consent is live ([`Error::NoConsent`] after a withdrawal,
    /// recorded as a refusal), like every other use of it (R7), and no value
    /// past its retention period gets one ([`Error::Expired`], R11).
    pub fn pseudonym<T: DataKind, P: Purpose>(
        &self,
        info: &PersonalInfo<T, P>,
    ) -> Result<Pseudonym<T>, Error> {
        let subject = info.subject();
        self.check_not_erased(subject)?;
        let now = self.now();
        if let Some((rule, e)) = self.refusal(info, now) {
            let event = self.event(info, Action::Disclose, RuleId::R6);
            return Err(self.deny(event, rule, e));
        }
        self.vault.pseudonym(subject, info.value(), now)
    }

    /// The lookup token of `info`'s value, for the index column beside its
    /// sealed copy (see [`crypto::LookupToken`](crate::crypto::LookupToken)
    /// for the canonical forms and what a token leaks). Allowed only where
    /// the purpose sees plaintext (not for
    /// [`Improvement`](crate::purpose::Improvement)), and for a consent-based
    /// purpose only while consent is live.
    ///
    /// The token is noted in the key store, so the subject's
    /// [`ErasureReceipt`] lists it; an erased subject gets none
    /// ([`Error::Erased`]). Not audited, like a pseudonym: a token reveals
    /// nothing without the key, but whoever holds the custodian can test
    /// guesses against it ([`lookup_token_of`](Self::lookup_token_of) of a
    /// candidate, compared) — what an equality index is for, and why the
    /// custodian is host code's to keep from untrusted callers.
    ///
    /// ```
    /// use privacy_pledge::{Custodian, SubjectId};
    /// use privacy_pledge::data::EmailAddress;
    /// use privacy_pledge::purpose::Transaction;
    ///
    /// let custodian = Custodian::in_memory();
    /// let subject = SubjectId::random();
    /// let email = custodian.collect::<EmailAddress, Transaction>(
    ///     subject,
    ///     EmailAddress::parse("ada@example.com")?,
    /// )?;
    /// let token = custodian.lookup_token(&email)?;
    /// let receipt = custodian.erase(subject)?;
    /// assert_eq!(receipt.lookup_tokens(), &[token.to_ref()]);
    /// assert!(custodian.lookup_token(&email).is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn lookup_token<T: DataKind, P: SeesPlaintext>(
        &self,
        info: &PersonalInfo<T, P>,
    ) -> Result<LookupToken<T>, Error> {
        op_span!(
            self,
            Action::Access,
            info.subject(),
            Some(T::KIND),
            Some(P::ID)
        );
        let subject = info.subject();
        self.check_not_erased(subject)?;
        let now = self.now();
        if let Some((rule, e)) = self.refusal(info, now) {
            let event = self.event(info, Action::Access, RuleId::R6);
            return Err(self.deny(event, rule, e));
        }
        let token = self.lookup_key.token(info.value());
        self.vault
            .note_token(subject, *token.as_bytes(), now, |store| {
                store.note_lookup_token(subject, token.to_ref())
            })?;
        Ok(token)
    }

    /// The lookup token of `info`, as a receipt lists it, after
    /// [`lookup_token`](Self::lookup_token)'s checks but with no note (see
    /// [`crate::record::lookup_ref`]); `None` where `lookup_token` would
    /// refuse.
    pub(crate) fn lookup_ref_of<T: DataKind, P: Purpose>(
        &self,
        info: &PersonalInfo<T, P>,
    ) -> Option<crate::crypto::LookupRef> {
        let subject = info.subject();
        if !P::ID.sees_plaintext()
            || self.check_not_erased(subject).is_err()
            || self.refusal(info, self.now()).is_some()
        {
            return None;
        }
        Some(self.lookup_key.token(info.value()).to_ref())
    }

    /// Runs `seal` (one record's sealing) with the lookup tokens it will
    /// note known up front (see `Vault::with_record_notes`).
    pub(crate) fn with_record_notes<R>(
        &self,
        subject: SubjectId,
        tokens: impl FnOnce() -> Vec<crate::crypto::LookupRef>,
        seal: impl FnOnce() -> R,
    ) -> R {
        self.vault
            .with_record_notes(subject, self.now(), tokens, seal)
    }

    /// The lookup token of a value a user typed (a login form's email), to
    /// find the row whose index column holds it. No subject, nothing written
    /// anywhere, nothing audited: the value was not collected, and the token
    /// equals the stored one exactly when the canonical forms are equal.
    ///
    /// ```
    /// use privacy_pledge::Custodian;
    /// use privacy_pledge::data::EmailAddress;
    ///
    /// let custodian = Custodian::in_memory();
    /// let a = custodian.lookup_token_of(&EmailAddress::parse("Ada@Example.com")?);
    /// let b = custodian.lookup_token_of(&EmailAddress::parse("ada@example.com")?);
    /// assert_eq!(a, b);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn lookup_token_of<T: DataKind>(&self, value: &T) -> LookupToken<T> {
        self.lookup_key.token(value)
    }

    /// Moves every stored data key wrapped under an older key-encryption-key
    /// version to the current one, without touching sealed data; never an
    /// erased subject's. Returns how many keys moved.
    ///
    /// A step of [`rotate_after_erasures`](Self::rotate_after_erasures),
    /// which also fences the key store so that a process sealing meanwhile
    /// cannot store a key under the old version: prefer it when several
    /// processes share the key store.
    pub fn rewrap_keys(&self, from_version: u32) -> Result<usize, Error> {
        Ok(self
            .vault
            .rewrap_from(from_version, &mut || Ok(()), &|s| self.anchored_erasure(s))?
            .moved)
    }

    /// The maintenance step after erasures, in one call: makes a fresh
    /// random key-encryption-key version, saves the keyring with it to the
    /// [`KeyringStore`] before anything is wrapped under it, fences the key
    /// store so that no process stores a key under an older version any
    /// more, rewraps every live subject key under it (never an erased
    /// subject's), retires — wipes — every older version, and saves the
    /// keyring again without them. Audited first
    /// ([`Action::KeysRotated`]).
    ///
    /// From its return on, no copy of the key store taken before it started
    /// ([`KeyRotation::started_at`]) opens anything with the keys that exist
    /// afterwards: every key in such a copy is wrapped under a retired
    /// version (A3). This covers every erasure finished before the call.
    /// The old versions live on only in the memory of processes that have
    /// not reloaded the keyring yet (each does when it next needs the new
    /// version) and in any older copy of the keyring's export the secret
    /// store kept: keep none.
    ///
    /// Needs the custodian's [`Keyring`] and the store it lives in
    /// ([`CustodianBuilder::keyring_store`]), and a key store that keeps a
    /// [`KekState`] (the crate's stores and [`MemoryKeyStore`] do).
    ///
    /// **Other processes.** A process sealing meanwhile with the keyring of
    /// before cannot store a key under a version being retired: once the
    /// fence is up, the key store refuses it, and that process reloads the
    /// keyring from the store and wraps the key again under the new version
    /// (with a [`keyring_store`](CustodianBuilder::keyring_store) of its
    /// own; without one the seal fails, and nothing is stored). A process
    /// that meets a key rewrapped under a version it does not hold reloads
    /// likewise. Rotations are serialised through the key store: a second
    /// one meanwhile gets [`KeyError::RotationInProgress`]; try again later.
    ///
    /// **Safe to run again.** Each call rotates once more. A call that
    /// failed part-way is finished by the next one: if it saved the new
    /// version, the next call completes that rotation (at once on this
    /// custodian; in another process once the claim has gone unrenewed for
    /// [`ROTATION_LEASE_SECONDS`]), then rotates once more, from a claim of
    /// its own — the one taken up was claimed before the call, so erasures
    /// since then are covered only by a fresh rotation; if it did not save
    /// it, its version is never used.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use privacy_pledge::{Custodian, Error, PersonalInfo, SubjectId};
    /// use privacy_pledge::crypto::{Keyring, KeyringStore, MemoryKeyringStore};
    /// use privacy_pledge::data::EmailAddress;
    /// use privacy_pledge::purpose::Transaction;
    ///
    /// let keyring = Arc::new(Keyring::generate()?);
    /// let secrets = Arc::new(MemoryKeyringStore::new(&keyring)); // the host's secret store
    /// let custodian = Custodian::builder()
    ///     .keyring(keyring.clone())
    ///     .keyring_store(secrets.clone())
    ///     .build()?;
    /// let (ada, bob) = (SubjectId::random(), SubjectId::random());
    /// let email: PersonalInfo<EmailAddress, Transaction> =
    ///     custodian.collect(ada, EmailAddress::parse("ada@example.com")?)?;
    /// custodian.seal(&email)?;
    /// let row = custodian.seal(&custodian.collect::<EmailAddress, Transaction>(
    ///     bob,
    ///     EmailAddress::parse("bob@example.com")?,
    /// )?)?;
    /// custodian.erase(bob)?;
    ///
    /// let done = custodian.rotate_after_erasures()?;
    /// assert_eq!((done.version(), done.retired(), done.rewrapped()), (2, &[1][..], 1));
    /// assert_eq!(keyring.versions(), vec![2]);
    /// assert_eq!(Keyring::import(&secrets.load()?)?.versions(), vec![2]);
    /// assert!(matches!(custodian.open(&row), Err(Error::Erased { .. })));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn rotate_after_erasures(&self) -> Result<KeyRotation, Error> {
        crate::reentry::check()?;
        let keks = match (&self.keyring, &self.keyring_store) {
            (Some(keyring), Some(secrets)) => Keks::Keyring(keyring, &**secrets),
            (None, _) => Keks::Provider(self.vault.provider()),
            (Some(_), None) => {
                return Err(KeyError::Provider(
                    "rotation needs the custodian's keyring and its keyring store \
                     (CustodianBuilder::keyring and keyring_store), or a key provider \
                     that rotates (CustodianBuilder::key_provider)"
                        .into(),
                )
                .into())
            }
        };
        // One rotation at a time here; the guard keeps this custodian's
        // unfinished claim, which it may finish without waiting for the lease.
        let mut mine = self.rotation.lock().unwrap_or_else(|p| p.into_inner());
        let first = self.rotate_once(&keks, &mut mine)?;
        if !first.resumed {
            return Ok(first);
        }
        // A rotation taken up was claimed before this call: an erasure
        // since then may have left a key under the version it finished on,
        // in copies taken meanwhile. Only a fresh rotation covers it. (The
        // state row is the operator's to edit, too: a forged unfinished
        // claim "to" the current version retires nothing.)
        let fresh = self.rotate_once(&keks, &mut mine)?;
        let mut retired = first.retired;
        for v in &fresh.retired {
            if !retired.contains(v) {
                retired.push(*v);
            }
        }
        Ok(KeyRotation {
            retired,
            rewrapped: first.rewrapped + fresh.rewrapped,
            skipped_erased: first.skipped_erased + fresh.skipped_erased,
            resumed: true,
            covers_earlier_copies: first.covers_earlier_copies && fresh.covers_earlier_copies,
            ..fresh
        })
    }

    /// One claim and its rotation: a fresh one, or one taken up.
    fn rotate_once(&self, keks: &Keks<'_>, mine: &mut Option<Claim>) -> Result<KeyRotation, Error> {
        // Start from the versions as last saved: another process may have
        // rotated, or saved the version of a rotation it did not finish.
        keks.reload()?;
        let (mut claim, resumed) = self.claim_rotation(&keks.versions(), *mine)?;
        *mine = Some(claim);
        // Once more under the claim: a rotation that finished between the
        // first read and the claim saved its versions before it let go.
        let out = keks
            .reload()
            .and_then(|_| self.rotate(keks, &mut claim, resumed));
        *mine = match &out {
            Ok(_) => None,
            // A claim that was given up, or taken over, is no longer ours.
            Err(_) if !self.holds(&claim) => None,
            Err(_) => Some(claim),
        };
        out
    }

    /// [`rotate_after_erasures`](Self::rotate_after_erasures), waiting up to
    /// `patience` for a rotation under way elsewhere (another process of the
    /// host's, sharing the key store) to finish, then rotating once more, so
    /// that this process's own erasures are covered too. What a scheduled
    /// maintenance job calls: `RotationInProgress` is an answer for a
    /// caller that would rather come back later.
    ///
    /// It polls every 50 ms. `Err(KeyError::RotationInProgress)` once
    /// `patience` has gone by and the other rotation still holds its claim
    /// (one whose process stopped holds for
    /// [`ROTATION_LEASE_SECONDS`]); any other error at once.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use std::time::Duration;
    /// use privacy_pledge::Custodian;
    /// use privacy_pledge::crypto::{Keyring, MemoryKeyringStore};
    ///
    /// let keyring = Arc::new(Keyring::generate()?);
    /// let custodian = Custodian::builder()
    ///     .keyring(keyring.clone())
    ///     .keyring_store(Arc::new(MemoryKeyringStore::new(&keyring)))
    ///     .build()?;
    /// let done = custodian.rotate_after_erasures_waiting(Duration::from_secs(60))?;
    /// assert_eq!(done.version(), 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn rotate_after_erasures_waiting(
        &self,
        patience: std::time::Duration,
    ) -> Result<KeyRotation, Error> {
        const POLL: std::time::Duration = std::time::Duration::from_millis(50);
        let started = std::time::Instant::now();
        loop {
            match self.rotate_after_erasures() {
                Err(Error::Key(KeyError::RotationInProgress { .. }))
                    if started.elapsed() + POLL <= patience =>
                {
                    std::thread::sleep(POLL)
                }
                other => return other,
            }
        }
    }

    /// The steps of a rotation under `claim`, which every step renews.
    fn rotate(
        &self,
        keks: &Keks<'_>,
        claim: &mut Claim,
        resumed: bool,
    ) -> Result<KeyRotation, Error> {
        let version = claim.version;
        // The keyring must hold the version every live key is wrapped under
        // (the floor): else its keys would be left under a version this
        // rotation cannot rewrap, and the save below would drop it.
        let floor = self.vault.kek_state()?.floor;
        if floor > 0 && !keks.versions().contains(&floor) {
            self.release(claim);
            return Err(KeyError::Retired { version: floor }.into());
        }
        let event = AuditEvent::new(
            self.now(),
            SubjectId::from_bytes([0; 16]),
            Action::KeysRotated,
            RuleId::R11,
        );
        if let Err(e) = self.record(event) {
            self.release(claim);
            return Err(e);
        }

        // 1. The new version is saved before anything is wrapped under it,
        //    so no key ever depends on a version that exists only here.
        //    A failed save gives the claim up; its number is never used
        //    again (the save may have landed: the next call reloads it).
        //    A host provider makes the version where it keeps its keys
        //    (an HSM: a new token object), which is its save.
        //    Every save is conditional on the store holding the text this
        //    rotation extended (or saved last): a save that lands late, after
        //    another process took the claim over and saved a newer keyring,
        //    is refused instead of bringing back what that one retired.
        let mut stored = None;
        match keks {
            Keks::Keyring(keyring, secrets) if !keyring.versions().contains(&version) => {
                let staged = keyring.stage(version)?;
                self.renew(claim, None)?;
                // The text in the store, as the reload just read it: it may
                // still list a version this keyring retired (a rotation whose
                // last save failed), which the reload did not take back.
                let extended = crate::reentry::host(|| secrets.load())?;
                match crate::reentry::host(|| secrets.replace(&extended, staged.export())) {
                    Ok(true) => {}
                    Ok(false) => {
                        self.release(claim);
                        return Err(self.keyring_changed(keks));
                    }
                    Err(e) => {
                        self.release(claim);
                        return Err(e.into());
                    }
                }
                self.renew(claim, None)?;
                stored = Some(zeroize::Zeroizing::new(staged.export().to_owned()));
                keyring.install(staged)?;
            }
            Keks::Keyring(_, secrets) => stored = Some(crate::reentry::host(|| secrets.load())?),
            Keks::Provider(provider) => {
                self.renew(claim, None)?;
                if let Err(e) = provider.rotate_to(version) {
                    self.release(claim);
                    return Err(e.into());
                }
                self.renew(claim, None)?;
            }
        }
        // 2. The fence: from here on the key store takes no key wrapped
        //    under an older version, from any process.
        self.renew(claim, Some(version))?;
        // 3. Every live key moves to the new version; erased subjects'
        //    keys are gone and stay gone.
        let old: Vec<u32> = keks
            .versions()
            .into_iter()
            .filter(|v| *v != version)
            .collect();
        let covers_earlier_copies = match keks {
            Keks::Keyring(keyring, _) => !old.iter().any(|v| keyring.is_derived(*v)),
            Keks::Provider(_) => true,
        };
        let (mut rewrapped, mut skipped_erased) = (0, 0);
        for &v in &old {
            // Keys another process wrote under `v` before the fence went up
            // are there now; a few passes catch a rewrap that raced an erasure.
            for _ in 0..3 {
                let done = self
                    .vault
                    .rewrap_from(v, &mut || self.renew(claim, None), &|s| {
                        self.anchored_erasure(s)
                    })?;
                rewrapped += done.moved;
                skipped_erased += done.skipped_erased;
                if self.vault.wrapped_under(v)?.is_empty() {
                    break;
                }
            }
        }
        // 4. Retire (wipe) the old versions, and save the keyring without them.
        self.renew(claim, None)?;
        for &v in &old {
            self.vault.retire(v)?;
        }
        self.renew(claim, None)?;
        if let (Keks::Keyring(keyring, secrets), Some(stored)) = (keks, &stored) {
            if !crate::reentry::host(|| secrets.replace(stored, &keyring.export()))? {
                self.release(claim);
                return Err(self.keyring_changed(keks));
            }
        }
        self.release(claim);
        Ok(KeyRotation {
            started_at: claim.claimed_at,
            finished_at: self.now(),
            version,
            retired: old,
            rewrapped,
            skipped_erased,
            resumed,
            covers_earlier_copies,
        })
    }

    /// The error of a rotation whose conditional save found another keyring
    /// in the store: the in-memory keyring is reloaded from there first
    /// (best effort), so this process goes on with what the store holds.
    fn keyring_changed(&self, keks: &Keks<'_>) -> Error {
        if let Keks::Keyring(keyring, secrets) = keks {
            if let Ok(text) = crate::reentry::host(|| secrets.load()) {
                let _ = keyring.reload(&text);
            }
        }
        KeyError::StoredKeyringChanged.into()
    }

    /// Claims the next key-encryption-key version in the key store, or takes
    /// up an unfinished rotation: this custodian's own (`mine`), or one
    /// whose claim was not renewed for the lease and whose version the
    /// keyring, as last saved, holds. Returns the claim and whether it
    /// resumes one.
    fn claim_rotation(
        &self,
        versions: &[u32],
        mine: Option<Claim>,
    ) -> Result<(Claim, bool), Error> {
        for _ in 0..16 {
            let state = self.vault.kek_state()?;
            let now = self.now();
            if let Some(renewed) = state.renewed_at {
                let claimed_at = state.claimed_at.unwrap_or(renewed);
                let ours =
                    mine.is_some_and(|c| c.version == state.claimed && c.renewed_at == renewed);
                // A renewal dated further ahead than the lease is no clock
                // skew but an edited row: it holds no more than a lease.
                let (now_s, renewed_s) = (now.unix_seconds(), renewed.unix_seconds());
                let held = now_s.saturating_sub(renewed_s) < ROTATION_LEASE_SECONDS
                    && renewed_s.saturating_sub(now_s) < ROTATION_LEASE_SECONDS;
                if !ours && held {
                    return Err(KeyError::RotationInProgress {
                        version: state.claimed,
                        since: claimed_at,
                    }
                    .into());
                }
                if versions.contains(&state.claimed) {
                    // Its keyring was saved: finish it (each step may run twice).
                    let renewed = KekState {
                        renewed_at: Some(now),
                        ..state
                    };
                    if self.vault.swap_kek_state(state, renewed)? {
                        let claim = Claim {
                            version: state.claimed,
                            claimed_at,
                            renewed_at: now,
                        };
                        return Ok((claim, true));
                    }
                    continue;
                }
                // Given up before its keyring was saved: its version is
                // never used; claim past it.
            }
            let newest = versions.last().copied().unwrap_or(0);
            let version = state
                .claimed
                .max(state.floor)
                .max(newest)
                .checked_add(1)
                .ok_or(KeyError::Unsupported { version: u32::MAX })?;
            let claimed = KekState {
                claimed: version,
                claimed_at: Some(now),
                renewed_at: Some(now),
                ..state
            };
            if self.vault.swap_kek_state(state, claimed)? {
                let claim = Claim {
                    version,
                    claimed_at: now,
                    renewed_at: now,
                };
                return Ok((claim, false));
            }
        }
        Err(KeyStoreError::Conflict("the key-encryption-key state kept changing".into()).into())
    }

    /// Whether the key store's claim is still `claim`.
    fn holds(&self, claim: &Claim) -> bool {
        self.vault
            .kek_state()
            .is_ok_and(|s| s.claimed == claim.version && s.renewed_at == Some(claim.renewed_at))
    }

    /// Renews the claim (and raises the floor to `floor`, if given), or
    /// fails if it is no longer this rotation's: taken over after the lease.
    fn renew(&self, claim: &mut Claim, floor: Option<u32>) -> Result<(), Error> {
        for _ in 0..16 {
            let state = self.vault.kek_state()?;
            if state.claimed != claim.version || state.renewed_at != Some(claim.renewed_at) {
                return Err(KeyError::RotationInProgress {
                    version: state.claimed,
                    since: state.claimed_at.unwrap_or(claim.claimed_at),
                }
                .into());
            }
            let now = self.now();
            let renewed = KekState {
                floor: state.floor.max(floor.unwrap_or(0)),
                renewed_at: Some(now),
                ..state
            };
            if self.vault.swap_kek_state(state, renewed)? {
                claim.renewed_at = now;
                return Ok(());
            }
        }
        Err(KeyStoreError::Conflict("the key-encryption-key state kept changing".into()).into())
    }

    /// Ends the claim: done, or given up (nothing is wrapped under its
    /// version). Best effort: if it fails, the lease ends the claim.
    fn release(&self, claim: &Claim) {
        for _ in 0..16 {
            let Ok(state) = self.vault.kek_state() else {
                return;
            };
            if state.claimed != claim.version || state.renewed_at != Some(claim.renewed_at) {
                return; // taken over: the taker ends it
            }
            let idle = KekState {
                renewed_at: None,
                ..state
            };
            if self.vault.swap_kek_state(state, idle).unwrap_or(true) {
                return;
            }
        }
    }

    /// Retires a key-encryption-key version. Refused with
    /// [`KeyError::InUse`] while any stored key
    /// still depends on it: rewrap first.
    pub fn retire_key_version(&self, version: u32) -> Result<(), Error> {
        self.vault.retire(version)
    }

    /// The subject's keyed tag, for log lines about it: never log the id
    /// itself (see [`SubjectTag`](crate::SubjectTag)). Under a key derived
    /// from the keyring, so every process of one service tags a subject
    /// alike; a custodian without a keyring (a host key provider) tags under
    /// a random key of its own. Computes a MAC and nothing else: not audited.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use privacy_pledge::{Custodian, SubjectId};
    /// use privacy_pledge::crypto::Keyring;
    ///
    /// let keyring = Arc::new(Keyring::generate()?);
    /// let one = Custodian::builder().keyring(keyring.clone()).build()?;
    /// let other = Custodian::builder().keyring(keyring).build()?;
    /// let ada = SubjectId::random();
    /// assert_eq!(one.subject_tag(ada), other.subject_tag(ada)); // another process, same tag
    /// assert_ne!(one.subject_tag(ada), Custodian::in_memory().subject_tag(ada));
    /// # Ok::<(), privacy_pledge::Error>(())
    /// ```
    pub fn subject_tag(&self, subject: SubjectId) -> crate::SubjectTag {
        crate::SubjectTag::compute(&self.tag_key, subject)
    }

    /// The AEAD algorithm new envelopes use.
    pub fn algorithm(&self) -> Algorithm {
        self.vault.config().algorithm
    }
}

impl core::fmt::Debug for Custodian {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Custodian")
            .field("algorithm", &self.vault.config().algorithm)
            .finish_non_exhaustive()
    }
}

/// Builds a [`Custodian`] for a real host.
///
/// ```
/// use std::sync::Arc;
/// use privacy_pledge::Custodian;
/// use privacy_pledge::audit::{AuditKey, ChainedAuditLog, MemoryAuditLog};
/// use privacy_pledge::crypto::{Keyring, MemoryKeyStore};
///
/// let keyring = Arc::new(Keyring::generate()?);
/// let log = Arc::new(ChainedAuditLog::new(keyring.audit_key(), MemoryAuditLog::new()));
/// let custodian = Custodian::builder()
///     .keyring(keyring.clone())
///     .key_store(MemoryKeyStore::new())
///     .audit(log.clone())
///     .build()?;
/// # Ok::<(), privacy_pledge::Error>(())
/// ```
#[derive(Default)]
pub struct CustodianBuilder {
    audit: Option<Box<dyn AuditSink>>,
    audit_key: Option<AuditKey>,
    keyring: Option<Arc<Keyring>>,
    provider: Option<Box<dyn KeyProvider>>,
    store: Option<Box<dyn KeyStore>>,
    pseudonym_key: Option<PseudonymKey>,
    lookup_key: Option<LookupKey>,
    clock: Option<Arc<dyn Clock>>,
    config: VaultConfig,
    facilities: Vec<Country>,
    retention: RetentionPolicy,
    recipients: Option<Vec<RegisteredRecipient>>,
    consent_store: Option<Box<dyn ConsentStore>>,
    consent_bound: Option<std::time::Duration>,
    anchor: Option<Box<dyn AnchorStore>>,
    keyring_store: Option<Arc<dyn KeyringStore>>,
    checkpoint_store: Option<Arc<dyn crate::audit::CheckpointStore>>,
    checkpoint_key: Option<crate::audit::CheckpointKey>,
}

impl CustodianBuilder {
    /// Where the host keeps the [`keyring`](Self::keyring) (its secret
    /// store): [`Custodian::rotate_after_erasures`] saves it there, and
    /// when another process has rotated, this custodian reloads it from
    /// there — when the key store refuses a key wrapped under a version
    /// being retired, or holds a key under a version this keyring lacks.
    /// Requires a keyring (not a [`key_provider`](Self::key_provider)).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use privacy_pledge::Custodian;
    /// use privacy_pledge::crypto::{Keyring, MemoryKeyringStore};
    ///
    /// let keyring = Arc::new(Keyring::generate()?);
    /// let custodian = Custodian::builder()
    ///     .keyring_store(Arc::new(MemoryKeyringStore::new(&keyring)))
    ///     .keyring(keyring)
    ///     .build()?;
    /// # drop(custodian);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn keyring_store(mut self, store: impl KeyringStore + 'static) -> Self {
        self.keyring_store = Some(Arc::new(store));
        self
    }

    /// Keeps consent in `store`, shared by every process of the service,
    /// instead of in this custodian's memory. Rows are authenticated under a
    /// consent key derived from the keyring (so a keyring is required), a
    /// change is written before `grant`/`withdraw` return, and another
    /// process's change is seen within
    /// [`consent_revalidate_after`](Self::consent_revalidate_after) (default
    /// 1 second; at once in the process that made it). A restart needs no
    /// replay of the trail.
    pub fn consent_store(mut self, store: impl ConsentStore + 'static) -> Self {
        self.consent_store = Some(Box::new(store));
        self
    }

    /// Anchors consent changes and erasures in `store`, kept out of the
    /// database operator's reach (normally
    /// [`DirCheckpointStore::anchor`](crate::audit::DirCheckpointStore::anchor),
    /// beside the signed checkpoints), so that a consent row rolled back,
    /// deleted or resurrected in the database is refused at use time, and an
    /// erasure made by any process refuses the subject everywhere. See
    /// [`crate::freshness`] for the argument and the bound (the
    /// [`consent_revalidate_after`](Self::consent_revalidate_after) one).
    ///
    /// Required with a [`consent_store`](Self::consent_store); needs a
    /// keyring (the anchor's log is chained under a key derived from it).
    /// `build` reads the whole log once.
    ///
    /// ```
    /// use privacy_pledge::Custodian;
    /// use privacy_pledge::audit::DirCheckpointStore;
    /// use privacy_pledge::consent::MemoryConsentStore;
    /// use privacy_pledge::crypto::Keyring;
    ///
    /// let dir = std::env::temp_dir().join(format!("pp-doc-fresh-{}", std::process::id()));
    /// let checkpoints = DirCheckpointStore::new(&dir)?;
    /// let custodian = Custodian::builder()
    ///     .keyring(Keyring::generate()?)
    ///     .consent_store(MemoryConsentStore::new())
    ///     .freshness_anchor(checkpoints.anchor()?)
    ///     .build()?;
    /// # drop(custodian);
    /// # std::fs::remove_dir_all(&dir)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn freshness_anchor(mut self, store: impl AnchorStore + 'static) -> Self {
        self.anchor = Some(Box::new(store));
        self
    }

    /// How long a consent read from the consent store is trusted before it
    /// is read again: the bound within which a withdrawal made by another
    /// process takes effect here (default 1 second; zero reads on every use).
    pub fn consent_revalidate_after(mut self, bound: std::time::Duration) -> Self {
        self.consent_bound = Some(bound);
        self
    }

    /// Turns the registry of recipients on and registers `recipients`
    /// (type, name, role, where each processes). From then on every
    /// disclosure is refused with [`Error::UnregisteredRecipient`] (and the
    /// refusal audited) unless the recipient's type is registered with that
    /// name under that role — another type returning a registered name is
    /// refused — and its transfers are checked against the countries
    /// registered for it (R5, R8). Call it more than once to add more; with
    /// an empty list, every disclosure is refused. The registered recipients
    /// are listed in the [record of processing](Custodian::processing_record).
    ///
    /// ```
    /// use privacy_pledge::{Custodian, Error, PersonalInfo, SubjectId};
    /// use privacy_pledge::data::EmailAddress;
    /// use privacy_pledge::purpose::Newsletter;
    /// use privacy_pledge::recipient::{Processor, Recipient, RegisteredRecipient};
    ///
    /// struct Mailer(&'static str);
    /// impl Recipient for Mailer {
    ///     type Role = Processor;
    ///     fn name(&self) -> &str { self.0 }
    /// }
    /// struct ListBroker;
    /// impl Recipient for ListBroker {
    ///     type Role = Processor;
    ///     fn name(&self) -> &str { "Postmark" }
    /// }
    ///
    /// let custodian = Custodian::builder()
    ///     .recipients([RegisteredRecipient::new::<Mailer>("Postmark")])
    ///     .build()?;
    /// let ada = SubjectId::random();
    /// custodian.consents().grant::<Newsletter>(ada)?;
    /// let email: PersonalInfo<EmailAddress, Newsletter> =
    ///     custodian.collect(ada, EmailAddress::parse("ada@example.com")?)?;
    /// assert!(custodian.disclose(&email, &Mailer("Postmark"), |_| ()).is_ok());
    /// // Another name is not registered...
    /// assert!(matches!(
    ///     custodian.disclose(&email, &Mailer("ListBroker Inc"), |_| ()),
    ///     Err(Error::UnregisteredRecipient { .. })
    /// ));
    /// // ...nor is another type that borrows a registered name.
    /// assert!(matches!(
    ///     custodian.disclose(&email, &ListBroker, |_| ()),
    ///     Err(Error::UnregisteredRecipient { .. })
    /// ));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn recipients(mut self, recipients: impl IntoIterator<Item = RegisteredRecipient>) -> Self {
        let list = self.recipients.get_or_insert_with(Vec::new);
        for r in recipients {
            if !list.contains(&r) {
                list.push(r);
            }
        }
        self
    }

    /// The audit sink every use is offered to first. Without one, the
    /// custodian keeps an in-memory [`ChainedAuditLog`].
    pub fn audit(mut self, sink: impl AuditSink + 'static) -> Self {
        self.audit = Some(Box::new(sink));
        self
    }

    /// Where the signed checkpoints of the audit streams are kept, outside
    /// the database (e.g. the [`DirCheckpointStore`](crate::audit::DirCheckpointStore)
    /// a store's durable sink signs into): [`Custodian::verify_trail`] takes
    /// its trusted checkpoints from here, never from its caller, and
    /// [`Custodian::sign_checkpoint`] signs the built-in log's head into it.
    pub fn checkpoint_store(mut self, store: impl crate::audit::CheckpointStore + 'static) -> Self {
        self.checkpoint_store = Some(Arc::new(store));
        self
    }

    /// Pins the public key the checkpoints in the
    /// [checkpoint store](Self::checkpoint_store) must verify under. By
    /// default it is derived from the keyring; pin it where the keyring is
    /// not at hand, or to hold the store to a key published elsewhere.
    pub fn checkpoint_key(mut self, key: crate::audit::CheckpointKey) -> Self {
        self.checkpoint_key = Some(key);
        self
    }

    /// The custodian's audit key: it chains the built-in log (when no sink
    /// is given) and is the only key [`Custodian::verify_trail`] verifies
    /// under. Defaults to the one derived from the keyring.
    pub fn audit_key(mut self, key: AuditKey) -> Self {
        self.audit_key = Some(key);
        self
    }

    /// The keyring set with [`keyring`](Self::keyring), if any.
    #[cfg(any(feature = "sqlite", feature = "postgres"))]
    pub(crate) fn keyring_ref(&self) -> Option<&Arc<Keyring>> {
        self.keyring.as_ref()
    }

    /// The local keyring: key-encryption keys, and (unless set separately)
    /// the pseudonym and audit keys derived from its master secret.
    pub fn keyring(mut self, keyring: impl Into<Arc<Keyring>>) -> Self {
        self.keyring = Some(keyring.into());
        self
    }

    /// A host's own key provider (KMS, HSM) for key-encryption keys. Set a
    /// [`pseudonym_key`](Self::pseudonym_key) too, or tokens change per process.
    pub fn key_provider(mut self, provider: impl KeyProvider + 'static) -> Self {
        self.provider = Some(Box::new(provider));
        self
    }

    /// Where wrapped subject keys are stored (default: in memory).
    pub fn key_store(mut self, store: impl KeyStore + 'static) -> Self {
        self.store = Some(Box::new(store));
        self
    }

    /// The key pseudonyms are computed under.
    pub fn pseudonym_key(mut self, key: PseudonymKey) -> Self {
        self.pseudonym_key = Some(key);
        self
    }

    /// The key lookup tokens are computed under (default: the keyring's
    /// [`lookup_key`](Keyring::lookup_key); a random one without a keyring,
    /// so set it with a [`key_provider`](Self::key_provider), or tokens
    /// change per process).
    pub fn lookup_key(mut self, key: LookupKey) -> Self {
        self.lookup_key = Some(key);
        self
    }

    /// The countries where the vendor, its affiliates, subsidiaries or agents
    /// maintain facilities (R8). Data may be transferred only there; the
    /// first is the home country that recipients' locations are checked from.
    /// With none declared, every transfer is refused.
    pub fn facilities(mut self, countries: impl IntoIterator<Item = Country>) -> Self {
        for c in countries {
            if !self.facilities.contains(&c) {
                self.facilities.push(c);
            }
        }
        self
    }

    /// Retention periods per purpose (R11); see [`RetentionPolicy`] for the defaults.
    pub fn retention(mut self, policy: RetentionPolicy) -> Self {
        self.retention = policy;
        self
    }

    /// The clock for audit events, consents and retention (default: system).
    pub fn clock(mut self, clock: impl Clock + 'static) -> Self {
        self.clock = Some(Arc::new(clock));
        self
    }

    /// The AEAD for new envelopes (default AES-256-GCM). Envelopes of either
    /// algorithm always open.
    pub fn algorithm(mut self, algorithm: Algorithm) -> Self {
        self.config.algorithm = algorithm;
        self
    }

    /// Pads plaintext to length buckets (16, 32, 64, 128, then multiples of
    /// 256 bytes) inside the AEAD, so envelopes of names and emails do not
    /// reveal their length. Off by default.
    pub fn length_padding(mut self, on: bool) -> Self {
        self.config.padding = on;
        self
    }

    /// Seals per subject data key before a new generation starts (default
    /// [`DEFAULT_MESSAGE_LIMIT`](crate::crypto::DEFAULT_MESSAGE_LIMIT); at least 1),
    /// counted in the key store in reserved blocks. A process forked while
    /// this one holds a block seals from it too, uncounted: see the
    /// [`crypto`](crate::crypto) module's "Limits".
    pub fn message_limit(mut self, limit: u64) -> Self {
        self.config.message_limit = limit.max(1);
        self.config.reserve_block = self.config.reserve_block.min(self.config.message_limit);
        self
    }

    /// How long a cached subject key is trusted before the key store is
    /// asked again: the bound within which an erasure made by another
    /// custodian sharing the key store (another process) takes effect here
    /// (default 30 seconds; at once in the custodian that made it; zero asks
    /// the store on every seal and open). Honoured to the nanosecond of the
    /// custodian's [clock](Self::clock). The counterpart of
    /// [`consent_revalidate_after`](Self::consent_revalidate_after) for
    /// withdrawals.
    ///
    /// ```
    /// use std::time::Duration;
    /// use privacy_pledge::Custodian;
    ///
    /// let custodian = Custodian::builder()
    ///     .key_revalidate_after(Duration::from_millis(250))
    ///     .consent_revalidate_after(Duration::from_millis(250))
    ///     .build()?;
    /// # drop(custodian);
    /// # Ok::<(), privacy_pledge::Error>(())
    /// ```
    pub fn key_revalidate_after(mut self, bound: std::time::Duration) -> Self {
        self.config.set_revalidate_after(bound);
        self
    }

    /// The key-cache bound in whole seconds: use
    /// [`key_revalidate_after`](Self::key_revalidate_after), which takes a
    /// `Duration` like every other bound.
    ///
    /// ```
    /// # #![allow(deprecated)]
    /// use privacy_pledge::Custodian;
    ///
    /// // The same as `.key_revalidate_after(Duration::from_secs(5))`.
    /// let custodian = Custodian::builder().key_cache_revalidate_after(5).build()?;
    /// # drop(custodian);
    /// # Ok::<(), privacy_pledge::Error>(())
    /// ```
    #[deprecated(
        since = "0.1.0",
        note = "use `key_revalidate_after(Duration::from_secs(seconds))`: every bound is a `Duration`"
    )]
    pub fn key_cache_revalidate_after(self, seconds: u64) -> Self {
        self.key_revalidate_after(std::time::Duration::from_secs(seconds))
    }

    /// How many subjects' unwrapped keys to keep in memory (default 65,536).
    pub fn key_cache_capacity(mut self, subjects: usize) -> Self {
        self.config.cache_capacity = subjects.max(1);
        self
    }

    /// Builds the custodian. Performs no audited operation.
    pub fn build(self) -> Result<Custodian, Error> {
        let keyring = match (&self.keyring, &self.provider) {
            (Some(k), _) => Some(k.clone()),
            (None, Some(_)) => None,
            (None, None) => Some(Arc::new(Keyring::generate()?)),
        };
        let pseudonym_key = match (self.pseudonym_key, &keyring) {
            (Some(k), _) => k,
            (None, Some(k)) => k.pseudonym_key(),
            (None, None) => PseudonymKey::generate()?,
        };
        let lookup_key = match (self.lookup_key, &keyring) {
            (Some(k), _) => k,
            (None, Some(k)) => k.lookup_key(),
            (None, None) => LookupKey::generate()?,
        };
        // The keyring serves the key-encryption keys unless a host provider does.
        let kek_keyring = match (&self.provider, &keyring) {
            (None, Some(k)) => Some(k.clone()),
            _ => None,
        };
        if self.keyring_store.is_some() && (self.keyring.is_none() || self.provider.is_some()) {
            return Err(KeyError::Provider(
                "a keyring store goes with a keyring, not with a key provider".into(),
            )
            .into());
        }
        let provider: Box<dyn KeyProvider> = match (self.provider, &keyring, &self.keyring_store) {
            (Some(p), _, _) => p,
            (None, Some(k), Some(store)) => Box::new(Reloading::new(k.clone(), store.clone())),
            (None, Some(k), None) => Box::new(k.clone()),
            (None, None, _) => Box::new(Arc::new(Keyring::generate()?)),
        };
        let audit_key = match (self.audit_key, &keyring) {
            (Some(k), _) => Some(k),
            (None, Some(k)) => Some(k.audit_key()),
            (None, None) if self.audit.is_none() => Some(AuditKey::generate()?),
            (None, None) => None,
        };
        let (sink, builtin_log): (Box<dyn AuditSink>, _) = match (self.audit, &audit_key) {
            (Some(s), _) => (s, None),
            (None, key) => {
                let key = match key {
                    Some(k) => k.clone(),
                    None => AuditKey::generate()?,
                };
                let log = Arc::new(ChainedAuditLog::try_keyed_stream(
                    key,
                    MemoryAuditLog::new(),
                )?);
                (Box::new(log.clone()), Some(log))
            }
        };
        let batches = sink.atomic_batches();
        let checkpoint_signer = match &keyring {
            Some(k) => Some(Arc::new(k.checkpoint_signer()?)),
            None => None,
        };
        let checkpoint_key = self
            .checkpoint_key
            .or_else(|| checkpoint_signer.as_ref().map(|s| s.public_key()));
        let shared_keys = self.store.is_some();
        let store = self
            .store
            .unwrap_or_else(|| Box::new(MemoryKeyStore::new()));
        let bound = self
            .consent_bound
            .unwrap_or(std::time::Duration::from_secs(1));
        let anchor = match self.anchor {
            None => None,
            Some(store) => {
                let key = keyring.as_ref().map(|k| k.anchor_key()).ok_or(
                    crate::crypto::KeyError::Provider(
                        "a freshness anchor needs a keyring to chain its log".into(),
                    ),
                )?;
                Some(Arc::new(Anchor::open(store, &key, bound)?))
            }
        };
        let consents = match self.consent_store {
            None => Register::default(),
            Some(cs) => {
                let key = keyring.as_ref().map(|k| k.consent_key()).ok_or(
                    crate::crypto::KeyError::Provider(
                        "a consent store needs a keyring to authenticate its rows".into(),
                    ),
                )?;
                let anchor = anchor.clone().ok_or(Error::Anchor(AnchorError::new(
                    "a consent store needs a freshness anchor (CustodianBuilder::freshness_anchor), \
                     or a rolled-back row would decide consent",
                )))?;
                Register::durable(cs, &key, bound, anchor)
            }
        };
        let tag_key = match &keyring {
            Some(k) => k.subject_tag_key(),
            None => ring::hmac::Key::new(
                ring::hmac::HMAC_SHA256,
                &zeroize::Zeroizing::new(crate::crypto::random_array::<32>()?)[..],
            ),
        };
        let id = u64::from_be_bytes(crate::crypto::random_array::<8>()?);
        let mut vault = Vault::new(provider, store, pseudonym_key, self.config)?;
        vault.defer_durability(id, sink.database().filter(|_| batches));
        Ok(Custodian {
            id,
            sink,
            batches,
            builtin_log,
            audit_key,
            checkpoint_key,
            checkpoint_signer,
            checkpoint_store: self.checkpoint_store,
            checkpointing: Mutex::new(()),
            recipients: self.recipients,
            system_clock: self.clock.is_none(),
            clock: self.clock.unwrap_or_else(|| Arc::new(SystemClock)),
            consents,
            erased: RwLock::new(HashSet::new()),
            any_erased: AtomicBool::new(false),
            shared_keys,
            anchor,
            vault,
            lookup_key,
            tag_key,
            facilities: self.facilities,
            retention: self.retention,
            keyring: kek_keyring,
            keyring_store: self.keyring_store,
            rotation: Mutex::new(None),
        })
    }
}

impl core::fmt::Debug for CustodianBuilder {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("CustodianBuilder").finish_non_exhaustive()
    }
}
