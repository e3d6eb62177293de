//! The engine behind `Custodian::seal`, `open`, `erase` and `pseudonym`:
//! data-key cache, nonce pool, sealing and opening.
//!
//! One mutex guards the key cache and the nonce pool, so a seal takes one
//! lock and one hash lookup on its usual path; the AEAD itself runs outside
//! the lock on a shared, already-expanded key.
//!
//! A cached subject is checked against the key store again once its entry is
//! older than [`VaultConfig::revalidate_after_nanos`], so an erasure made by another
//! custodian sharing the store (another process, a replica) takes effect here
//! within that time. Erasures made through this custodian take effect at once.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use zeroize::Zeroize;

use super::aead::{AeadKey, Algorithm, NONCE_LEN, TAG_LEN};
use super::envelope::{Header, AAD_LEN, FORMAT_VERSION, HEADER_LEN};
use super::nonce::{NonceKeys, NoncePool};
use super::{
    wrap_context, Destroyed, KeyError, KeyProvider, KeyStore, KeyStoreError, Pseudonym,
    PseudonymKey, StoredKey, SubjectKeys,
};
use crate::data::{DataKind, Plaintext};
use crate::subject::{SubjectHash, SubjectId};
use crate::time::Timestamp;
use crate::Error;

/// Tunables, set through the custodian builder.
#[derive(Clone, Copy, Debug)]
pub(crate) struct VaultConfig {
    pub(crate) algorithm: Algorithm,
    pub(crate) padding: bool,
    pub(crate) message_limit: u64,
    pub(crate) reserve_block: u64,
    pub(crate) cache_capacity: usize,
    /// Nanoseconds after which a cached subject is checked against the key
    /// store again (a `Duration`, saturated to `u64`).
    pub(crate) revalidate_after_nanos: u64,
}

/// Default for [`VaultConfig::revalidate_after_nanos`]: 30 seconds.
pub(crate) const DEFAULT_REVALIDATE_AFTER: std::time::Duration = std::time::Duration::from_secs(30);

impl VaultConfig {
    /// Sets the revalidation bound, to the nanosecond.
    pub(crate) fn set_revalidate_after(&mut self, bound: std::time::Duration) {
        self.revalidate_after_nanos = u64::try_from(bound.as_nanos()).unwrap_or(u64::MAX);
    }
}

impl Default for VaultConfig {
    fn default() -> Self {
        VaultConfig {
            algorithm: Algorithm::Aes256Gcm,
            padding: false,
            message_limit: super::DEFAULT_MESSAGE_LIMIT,
            reserve_block: 1024,
            cache_capacity: 65_536,
            revalidate_after_nanos: DEFAULT_REVALIDATE_AFTER.as_secs() * 1_000_000_000,
        }
    }
}

/// What the cache knows of one subject.
struct Slot {
    stored: Vec<StoredKey>,
    ready: Vec<(u32, Algorithm, Arc<AeadKey>)>,
    /// Generation new seals use, and seals left in its reservation.
    current: Option<(u32, u64)>,
    /// When `stored` was last read from the key store (Unix nanoseconds).
    checked_at: u64,
    /// Made here by [`Vault::new_subject`] and never read from the store
    /// since: no key store can hold a key of a random id this process has
    /// just drawn, so its first key is made without reading the store
    /// first (the insert would still refuse a generation that exists).
    drawn_here: bool,
    /// The generation of this process's last reservation, and the count it
    /// took that generation's uses to. The key store's count never goes
    /// back by itself; if a later reservation finds it lower (set back by
    /// whoever edits the database, A2), the generation is taken as spent.
    reserved_to: Option<(u32, u64)>,
    /// A key of the slot written without a durable commit of its own, for
    /// a request scope's durable commit to make durable (see
    /// [`Vault::settle`]).
    unflushed: Option<Unflushed>,
}

/// A key written without waiting for the disk: until a durable commit
/// made after it on the same server has returned, a server crash (or,
/// on SQLite, a power cut) loses it.
#[derive(Clone, Copy)]
struct Unflushed {
    /// The vault's count of such writes once it was made
    /// ([`Vault::unflushed_writes`]).
    write: u64,
    /// The store's count of connections opened again, read before the
    /// write ([`Vault::reopen_count`]).
    reopened: u64,
}

impl Slot {
    fn has(&self, generation: u32) -> bool {
        self.stored.iter().any(|k| k.generation == generation)
    }

    fn ready(&self, generation: u32, alg: Algorithm) -> Option<&Arc<AeadKey>> {
        self.ready
            .iter()
            .find(|(g, a, _)| *g == generation && *a == alg)
            .map(|(_, _, k)| k)
    }

    /// Takes in what the key store holds now, keeping unwrapped keys and the
    /// reservation of generations that still exist.
    fn refresh(&mut self, keys: Vec<StoredKey>, now: u64) {
        self.stored = keys;
        let stored = &self.stored;
        self.ready
            .retain(|(g, _, _)| stored.iter().any(|k| k.generation == *g));
        if let Some((g, _)) = self.current {
            if !self.has(g) {
                self.current = None;
            }
        }
        self.checked_at = now;
        self.drawn_here = false;
    }
}

/// The subjects whose keys are cached, oldest first in `order`.
struct Slots {
    map: HashMap<SubjectId, Slot, SubjectHash>,
    order: VecDeque<SubjectId>,
}

struct Cache {
    slots: Slots,
    nonces: NoncePool,
}

/// Pseudonyms this process has already noted in the key store: a set for the
/// lookup every pseudonym makes, and the tokens per subject so an erasure
/// drops its subject's entries without scanning the set.
#[derive(Default)]
struct Noted {
    /// Each pair noted, when its subject was last found not erased, and
    /// whether its note was written without waiting for the disk (see
    /// [`Vault::settle_write`]).
    set: HashMap<(SubjectId, [u8; 32]), (u64, Option<Unflushed>)>,
    by_subject: HashMap<SubjectId, Vec<[u8; 32]>>,
}

/// What [`Vault::settle_write`] found of a write made without waiting for
/// the disk.
enum Settled {
    /// It is durable.
    Durable,
    /// The owner's request scope on this thread makes it durable, or fails.
    InScope,
    /// It may be lost: what was cached of it is dropped.
    Lost,
}

/// What [`Noted::remember`] found.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Seen {
    /// Never noted (or forgotten): note it.
    New,
    /// Noted, its subject found not erased within the bound.
    Recent,
    /// Noted, but its subject last checked longer ago than the bound: an
    /// erasure elsewhere may have come since.
    Stale,
}

/// Whether `at` is within `bound` of `now`, by a clock that did not go back.
fn within(at: u64, now: u64, bound: u64) -> bool {
    now >= at && now - at < bound
}

impl Noted {
    /// Remembers `token` as noted for `subject` at `now` (the set is
    /// emptied when it would grow past `capacity`), and says whether it was
    /// already, checked within `bound`.
    fn remember(
        &mut self,
        subject: SubjectId,
        token: [u8; 32],
        capacity: usize,
        now: u64,
        bound: u64,
    ) -> (Seen, Option<Unflushed>) {
        if let Some((at, unflushed)) = self.set.get_mut(&(subject, token)) {
            if within(*at, now, bound) {
                return (Seen::Recent, *unflushed);
            }
            *at = now;
            return (Seen::Stale, *unflushed);
        }
        if self.set.len() >= capacity {
            self.set.clear();
            self.by_subject.clear();
        }
        self.set.insert((subject, token), (now, None));
        self.by_subject.entry(subject).or_default().push(token);
        (Seen::New, None)
    }

    /// Marks a pair noted as written without waiting for the disk, or
    /// (`None`) as durable.
    fn mark(&mut self, subject: SubjectId, token: [u8; 32], unflushed: Option<Unflushed>) {
        if let Some((_, mark)) = self.set.get_mut(&(subject, token)) {
            *mark = unflushed;
        }
    }

    fn forget(&mut self, subject: SubjectId) {
        for token in self.by_subject.remove(&subject).unwrap_or_default() {
            self.set.remove(&(subject, token));
        }
    }

    fn forget_one(&mut self, subject: SubjectId, token: [u8; 32]) {
        self.set.remove(&(subject, token));
        if let Some(tokens) = self.by_subject.get_mut(&subject) {
            tokens.retain(|t| *t != token);
        }
    }
}

/// What [`Vault::rewrap_from`] did.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Rewrapped {
    /// Keys now wrapped under the current version.
    pub(crate) moved: usize,
    /// Keys of subjects erased before or while they were reached: skipped.
    pub(crate) skipped_erased: usize,
}

pub(crate) struct Vault {
    provider: Box<dyn KeyProvider>,
    store: Box<dyn KeyStore>,
    pseudonym_key: PseudonymKey,
    config: VaultConfig,
    cache: Mutex<Cache>,
    rng: ring::rand::SystemRandom,
    nonce_keys: NonceKeys,
    noted: Mutex<Noted>,
    /// The owning custodian, and the database its audit sink commits to if
    /// the key store writes there too: inside that custodian's request
    /// scope, a new key and a noted token skip their own durable commit
    /// (see [`crate::request::DatabaseId`]).
    durable_by: (u64, Option<crate::request::DatabaseId>),
    /// The count of connections opened again of that database's store, if
    /// it is a PostgreSQL store's (see `request::note_scope_start`).
    #[cfg(feature = "postgres")]
    reopened: Option<crate::request::Reopened>,
    /// How many keys were written without a durable commit of their own
    /// (each [`Unflushed::write`] is this count once it was made).
    unflushed_writes: AtomicU64,
    /// The highest [`Unflushed::write`] known durable: a durable commit to
    /// the store began after it was made and returned, with no connection
    /// opened again between ([`Vault::flushed_to`]).
    flushed: AtomicU64,
}

fn bucket(len: usize) -> usize {
    // Room for the 0x80 marker, then up to the next bucket.
    let n = len + 1;
    match n {
        0..=16 => 16,
        17..=32 => 32,
        33..=64 => 64,
        65..=128 => 128,
        _ => n.div_ceil(256) * 256,
    }
}

fn unpad(pt: &[u8]) -> Result<&[u8], Error> {
    let end = pt.iter().rposition(|b| *b != 0).ok_or(Error::Unauthentic)?;
    if pt[end] != 0x80 {
        return Err(Error::Unauthentic);
    }
    Ok(&pt[..end])
}

fn erased_from(e: &Error) -> bool {
    matches!(e, Error::Erased { .. })
}

/// Lookup tokens a sealed record is about to note (see
/// [`Vault::with_record_notes`]): this thread's, for one vault and subject.
struct RecordNotes {
    vault: usize,
    subject: SubjectId,
    tokens: Vec<super::LookupRef>,
}

thread_local! {
    static RECORD_NOTES: std::cell::RefCell<Option<RecordNotes>> =
        const { std::cell::RefCell::new(None) };
}

/// Puts back what [`RECORD_NOTES`] held before, also on panic.
struct RestoreNotes(Option<RecordNotes>);

impl Drop for RestoreNotes {
    fn drop(&mut self) {
        let before = self.0.take();
        RECORD_NOTES.with(|n| *n.borrow_mut() = before);
    }
}

impl Vault {
    pub(crate) fn new(
        provider: Box<dyn KeyProvider>,
        store: Box<dyn KeyStore>,
        pseudonym_key: PseudonymKey,
        config: VaultConfig,
    ) -> Result<Self, Error> {
        Ok(Vault {
            provider: Box::new(HostCalls(provider)),
            store: Box::new(HostCalls(store)),
            pseudonym_key,
            config,
            cache: Mutex::new(Cache {
                slots: Slots {
                    map: HashMap::with_hasher(SubjectHash::new()),
                    order: VecDeque::new(),
                },
                nonces: NoncePool::new(),
            }),
            rng: ring::rand::SystemRandom::new(),
            nonce_keys: NonceKeys::generate()?,
            noted: Mutex::new(Noted::default()),
            durable_by: (0, None),
            #[cfg(feature = "postgres")]
            reopened: None,
            unflushed_writes: AtomicU64::new(0),
            flushed: AtomicU64::new(0),
        })
    }

    /// Lets the request scopes of custodian `owner`, whose audit sink
    /// commits to `sink_db`, make this vault's new keys and noted tokens
    /// durable — if the key store writes to that same database.
    pub(crate) fn defer_durability(
        &mut self,
        owner: u64,
        sink_db: Option<crate::request::DatabaseId>,
    ) {
        let db = sink_db.filter(|db| self.store.database() == Some(*db));
        self.durable_by = (owner, db);
        #[cfg(feature = "postgres")]
        {
            self.reopened = db.and_then(crate::request::reopened_of);
        }
    }

    /// See [`Vault::reopened`](Self).
    #[cfg(feature = "postgres")]
    pub(crate) fn deferral_reopened(&self) -> Option<&crate::request::Reopened> {
        self.reopened.as_ref()
    }

    /// Runs `f` (the sealing of one record about `subject`) knowing the
    /// lookup tokens it will note: if it creates the subject's first key,
    /// the key and the notes are one write
    /// ([`KeyStore::insert_noting`]), and the notes are not written again.
    /// Otherwise the notes are written one by one, as without this.
    /// `tokens` is called only if a first key may be made: not for a
    /// subject whose keys this vault read within its bound.
    pub(crate) fn with_record_notes<R>(
        &self,
        subject: SubjectId,
        now: Timestamp,
        tokens: impl FnOnce() -> Vec<super::LookupRef>,
        f: impl FnOnce() -> R,
    ) -> R {
        if !self.store.keeps_uses_on_insert() || self.has_fresh_keys(subject, now) {
            return f();
        }
        let tokens = tokens();
        if tokens.is_empty() {
            return f();
        }
        let notes = RecordNotes {
            vault: self as *const Vault as usize,
            subject,
            tokens,
        };
        let _restore = RestoreNotes(RECORD_NOTES.with(|n| n.borrow_mut().replace(notes)));
        f()
    }

    /// Forgets every cached key and noted token: each is read from the
    /// key store again when next needed. After a request whose writes that
    /// did not wait for the disk may have been lost (a server restart),
    /// the cache may hold a key, or a token noted, that the store lost.
    #[cfg(feature = "postgres")]
    pub(crate) fn forget_cached(&self) {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache.slots.map.clear();
        cache.slots.order.clear();
        drop(cache);
        *self.noted.lock().unwrap_or_else(|p| p.into_inner()) = Noted::default();
    }

    /// Whether this vault read (or made) keys of `subject` within its bound.
    fn has_fresh_keys(&self, subject: SubjectId, now: Timestamp) -> bool {
        let now = now.unix_nanos();
        self.lock().is_ok_and(|cache| {
            cache
                .slots
                .map
                .get(&subject)
                .is_some_and(|s| !s.stored.is_empty() && self.fresh(s, now))
        })
    }

    /// The tokens [`with_record_notes`](Self::with_record_notes) set for
    /// this vault and `subject` on this thread, taken (a key is created
    /// once).
    fn take_record_notes(&self, subject: SubjectId) -> Vec<super::LookupRef> {
        RECORD_NOTES.with(|n| {
            let mut n = n.borrow_mut();
            match n.as_ref() {
                Some(r) if r.vault == self as *const Vault as usize && r.subject == subject => {
                    n.take().map(|r| r.tokens).unwrap_or_default()
                }
                _ => Vec::new(),
            }
        })
    }

    /// Remembers `token` as noted for `subject`: whether it was already,
    /// and if its note was written without waiting for the disk.
    fn remember_noted(
        &self,
        subject: SubjectId,
        token: [u8; 32],
        now: u64,
    ) -> (Seen, Option<Unflushed>) {
        let capacity = self.config.cache_capacity.max(1).saturating_mul(4);
        self.noted().remember(
            subject,
            token,
            capacity,
            now,
            self.config.revalidate_after_nanos,
        )
    }

    fn noted(&self) -> MutexGuard<'_, Noted> {
        self.noted.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A write of this vault's that just succeeded, if it skipped its own
    /// durable commit (`deferred`): counted, with the store's count of
    /// connections opened again read before it.
    fn unflushed(&self, deferred: bool, reopened: u64) -> Option<Unflushed> {
        deferred.then(|| Unflushed {
            write: self.unflushed_writes.fetch_add(1, Ordering::SeqCst) + 1,
            reopened,
        })
    }

    /// Whether a write of this vault's skips its own durable commit (asked
    /// inside [`deferrable`](Self::deferrable)).
    fn deferred_now(&self) -> bool {
        #[cfg(any(feature = "sqlite", feature = "postgres"))]
        return self
            .durable_by
            .1
            .is_some_and(crate::request::durability_deferred);
        #[cfg(not(any(feature = "sqlite", feature = "postgres")))]
        false
    }

    /// Runs a key store write that a request scope's commit may make
    /// durable.
    fn deferrable<R>(&self, write: impl FnOnce() -> R) -> R {
        crate::request::deferring(self.durable_by.0, self.durable_by.1, write)
    }

    /// The cache lock. Refused while the thread is inside host code (a key
    /// store or provider calling back into the custodian would wait here
    /// forever, since the lock is held across calls into them).
    fn lock(&self) -> Result<MutexGuard<'_, Cache>, Error> {
        crate::reentry::check()?;
        Ok(self.cache.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Whether a slot read from the store at `checked_at` can be used at
    /// `now`: within the bound, by a clock that did not go back (a clock
    /// stepped back would otherwise keep a slot fresh until it passed the
    /// old reading again, past an erasure elsewhere).
    fn fresh(&self, slot: &Slot, now: u64) -> bool {
        within(slot.checked_at, now, self.config.revalidate_after_nanos)
    }

    /// The subject's slot, read from the store on a miss or when stale.
    /// `Ok(None)` if the store holds nothing for the subject and `create` is
    /// false (an open of a subject this store never saw is not cached, so
    /// envelopes naming random subjects cannot crowd real ones out).
    fn slot<'c>(
        &self,
        slots: &'c mut Slots,
        subject: SubjectId,
        now: u64,
        create: bool,
    ) -> Result<Option<&'c mut Slot>, Error> {
        let stale = slots.map.get(&subject).is_none_or(|s| !self.fresh(s, now));
        if stale {
            let keys = match self.store.load(subject)? {
                SubjectKeys::Absent => Vec::new(),
                SubjectKeys::Live(keys) => keys,
                SubjectKeys::Erased { at } => {
                    slots.map.remove(&subject);
                    return Err(Error::Erased {
                        subject,
                        at: Some(at),
                    });
                }
            };
            match slots.map.get_mut(&subject) {
                Some(s) => s.refresh(keys, now),
                None if keys.is_empty() && !create => return Ok(None),
                None => self.insert_slot(slots, subject, keys, now),
            }
        }
        Ok(slots.map.get_mut(&subject))
    }

    fn insert_slot(&self, slots: &mut Slots, subject: SubjectId, keys: Vec<StoredKey>, now: u64) {
        let capacity = self.config.cache_capacity.max(1);
        while slots.map.len() >= capacity {
            match slots.order.pop_front() {
                Some(old) => {
                    slots.map.remove(&old);
                }
                None => break,
            }
        }
        // Erased subjects leave their id in `order`; drop such ids before
        // they pile up.
        if slots.order.len() >= capacity.saturating_mul(2).max(64) {
            let map = &slots.map;
            slots.order.retain(|s| map.contains_key(s));
        }
        slots.order.push_back(subject);
        slots.map.insert(
            subject,
            Slot {
                stored: keys,
                ready: Vec::new(),
                current: None,
                checked_at: now,
                drawn_here: false,
                reserved_to: None,
                unflushed: None,
            },
        );
    }

    /// A new random subject id, cached as one with no key (see
    /// [`Slot::drawn_here`]): its first seal skips the key store's read.
    pub(crate) fn new_subject(&self, now: Timestamp) -> Result<SubjectId, Error> {
        let subject = SubjectId::try_random()?;
        let now = now.unix_nanos();
        let mut cache = self.lock()?;
        let slots = &mut cache.slots;
        if !slots.map.contains_key(&subject) {
            self.insert_slot(slots, subject, Vec::new(), now);
            if let Some(slot) = slots.map.get_mut(&subject) {
                slot.drawn_here = true;
            }
        }
        Ok(subject)
    }

    /// Reads the subject's keys from the store again (another custodian
    /// sharing it may have added a generation).
    fn reload(&self, slot: &mut Slot, subject: SubjectId, now: u64) -> Result<(), Error> {
        match self.store.load(subject)? {
            SubjectKeys::Live(keys) => slot.refresh(keys, now),
            SubjectKeys::Absent => slot.refresh(Vec::new(), now),
            SubjectKeys::Erased { at } => {
                return Err(Error::Erased {
                    subject,
                    at: Some(at),
                })
            }
        }
        Ok(())
    }

    fn ready_key(
        &self,
        slot: &mut Slot,
        subject: SubjectId,
        generation: u32,
        alg: Algorithm,
        now: u64,
    ) -> Result<Arc<AeadKey>, Error> {
        if let Some(k) = slot.ready(generation, alg) {
            return Ok(k.clone());
        }
        // A rotation elsewhere: the key was rewrapped under a version this
        // keyring does not hold yet (reload the keyring), or the version
        // this copy of the row names was retired (read the row again).
        // Again while that brings something new (rotations may follow each
        // other); then the error stands.
        let mut dek = self.unwrap_stored(slot, subject, generation);
        for _ in 0..8 {
            let Err(Error::Key(KeyError::Retired { version })) = dek else {
                break;
            };
            let newer = if version > self.provider.current_version() {
                self.provider.refresh()?
            } else {
                let before = slot.stored.clone();
                self.reload(slot, subject, now)?;
                slot.stored != before
            };
            if !newer {
                break;
            }
            dek = self.unwrap_stored(slot, subject, generation);
        }
        let dek = dek?;
        let key = Arc::new(AeadKey::new(alg, &dek[..])?);
        slot.ready.push((generation, alg, key.clone()));
        Ok(key)
    }

    fn unwrap_stored(
        &self,
        slot: &Slot,
        subject: SubjectId,
        generation: u32,
    ) -> Result<zeroize::Zeroizing<[u8; 32]>, Error> {
        let stored = slot
            .stored
            .iter()
            .find(|k| k.generation == generation)
            .ok_or(KeyError::UnknownKey {
                subject,
                key_id: generation,
            })?;
        Ok(self
            .provider
            .unwrap(&stored.wrapped, &wrap_context(subject, generation))?)
    }

    /// Creates generation `generation` for the subject and stores it.
    ///
    /// If the key store refuses the key because its version is below the
    /// floor (another process rotated and is retiring that version), the
    /// keyring is reloaded and the key wrapped again under the new current
    /// version (again, should rotations follow each other). Without a newer
    /// version the refusal stands: nothing is ever stored under a version
    /// on its way out.
    ///
    /// With `reserve` > 0 the key is stored with its first `reserve` seals
    /// reserved, in one step where the store can
    /// ([`KeyStore::insert_reserving`]).
    fn create(
        &self,
        slot: &mut Slot,
        subject: SubjectId,
        generation: u32,
        reserve: u64,
    ) -> Result<(), Error> {
        let dek = zeroize::Zeroizing::new(super::random_array::<32>()?);
        let context = wrap_context(subject, generation);
        let mut key = StoredKey {
            generation,
            wrapped: self.provider.wrap(&dek, &context)?,
            uses: 0,
        };
        // A record's lookup tokens go with its subject's first key.
        let notes = if generation == 0 {
            self.take_record_notes(subject)
        } else {
            Vec::new()
        };
        let noted = std::cell::Cell::new(false);
        let deferred = std::cell::Cell::new(false);
        let reopened = self.reopen_count();
        let insert = |key: &StoredKey| {
            self.deferrable(|| {
                deferred.set(self.deferred_now());
                if !notes.is_empty() {
                    let with_uses = StoredKey {
                        uses: reserve,
                        ..key.clone()
                    };
                    if self.store.insert_noting(subject, with_uses, &notes)? {
                        noted.set(true);
                        return Ok(());
                    }
                }
                match reserve {
                    0 => self.store.insert(subject, key.clone()),
                    n => self
                        .store
                        .insert_reserving(subject, key.clone(), n)
                        .map(drop),
                }
            })
        };
        let mut inserted = insert(&key);
        for _ in 0..8 {
            let Err(KeyStoreError::BelowFloor { floor, .. }) = inserted else {
                break;
            };
            let was = key.wrapped.kek_version;
            if self.provider.current_version() < floor && !self.provider.refresh()? {
                break;
            }
            if self.provider.current_version() <= was {
                break;
            }
            key.wrapped = self.provider.wrap(&dek, &context)?;
            inserted = insert(&key);
        }
        inserted?;
        let unflushed = self.unflushed(deferred.get(), reopened);
        if noted.get() {
            for token in &notes {
                self.remember_noted(subject, token.token, slot.checked_at);
                self.noted().mark(subject, token.token, unflushed);
            }
        }
        key.uses = reserve;
        slot.stored.push(key);
        // In the store now: others may add generations from here on.
        slot.drawn_here = false;
        if let Some(u) = unflushed {
            slot.unflushed = Some(Unflushed {
                reopened: slot
                    .unflushed
                    .map_or(u.reopened, |was| was.reopened.min(u.reopened)),
                ..u
            });
        }
        Ok(())
    }

    /// The count of connections opened again of the key store's database
    /// (0 where nothing counts them: an SQLite store's connections never
    /// outlive a server that lost what they wrote).
    fn reopen_count(&self) -> u64 {
        #[cfg(feature = "postgres")]
        if let Some(r) = &self.reopened {
            return r.load(Ordering::SeqCst);
        }
        0
    }

    /// Where a durable commit to the key store's database that begins now
    /// stands: pass it to [`flushed_to`](Self::flushed_to) once that commit
    /// has returned, with no connection opened again since the request
    /// began.
    pub(crate) fn flush_point(&self) -> u64 {
        self.unflushed_writes.load(Ordering::SeqCst)
    }

    /// Every key written without a durable commit of its own up to
    /// `point` ([`flush_point`](Self::flush_point)) is durable.
    pub(crate) fn flushed_to(&self, point: u64) {
        self.flushed.fetch_max(point, Ordering::SeqCst);
    }

    /// What a use that relies on a write made without waiting for the
    /// disk (`u`: a new key, a noted token) needs first:
    ///
    /// - once a durable commit made after the write has returned
    ///   ([`flushed_to`](Self::flushed_to)), nothing: it is durable;
    /// - inside a request scope of the owning custodian, nothing either:
    ///   the scope's end checks that no connection was opened again since
    ///   it began and commits durably before anything leaves — unless one
    ///   was opened again since the write (a server restart may have lost
    ///   it): then what was cached of it is dropped, to be read (or
    ///   written) again;
    /// - outside such a scope the use's result leaves at once, and the
    ///   durable commit of the scope that made the write could come after
    ///   (or never): the store makes what it holds durable first
    ///   ([`KeyStore::make_durable`]), and if a connection was opened
    ///   again since the write, what was cached of it is dropped, to be
    ///   read (or written) again after that — a key or note the server
    ///   lost is then made anew.
    fn settle_write(&self, u: Unflushed) -> Result<Settled, Error> {
        let kept = self.reopen_count() == u.reopened;
        if kept && u.write <= self.flushed.load(Ordering::SeqCst) {
            return Ok(Settled::Durable);
        }
        if crate::request::is_open(self.durable_by.0) {
            return Ok(if kept {
                Settled::InScope
            } else {
                Settled::Lost
            });
        }
        let point = self.flush_point();
        self.store.make_durable()?;
        if !kept || self.reopen_count() != u.reopened {
            return Ok(Settled::Lost);
        }
        self.flushed_to(point);
        Ok(Settled::Durable)
    }

    /// [`settle_write`](Self::settle_write) for the subject's slot, before
    /// a seal uses its keys.
    fn settle(&self, slots: &mut Slots, subject: SubjectId) -> Result<(), Error> {
        let Some(u) = slots.map.get(&subject).and_then(|s| s.unflushed) else {
            return Ok(());
        };
        match self.settle_write(u)? {
            Settled::Durable => {
                if let Some(slot) = slots.map.get_mut(&subject) {
                    slot.unflushed = None;
                }
            }
            Settled::InScope => {}
            Settled::Lost => {
                slots.map.remove(&subject);
            }
        }
        Ok(())
    }

    /// Reserves `n` seals of generation `generation`. The cached slot may be
    /// behind the store: another custodian sharing it (another process) may
    /// have erased the subject since, and the store then refuses the
    /// reservation as a conflict. So a conflict reads the subject again: an
    /// erasure becomes [`Error::Erased`], a generation that still exists is
    /// reserved once more, and anything else stays the store's conflict.
    fn reserve(
        &self,
        slot: &mut Slot,
        subject: SubjectId,
        generation: u32,
        n: u64,
        now: u64,
    ) -> Result<u64, Error> {
        match self.store.reserve(subject, generation, n) {
            Err(KeyStoreError::Conflict(why)) => {
                self.reload(slot, subject, now)?;
                if slot.has(generation) {
                    Ok(self.store.reserve(subject, generation, n)?)
                } else {
                    Err(KeyStoreError::Conflict(why).into())
                }
            }
            other => Ok(other?),
        }
    }

    /// Makes sure generation `generation` exists: known, made meanwhile by
    /// another custodian sharing the store, or created now with its first
    /// `reserve` seals reserved. `Some(0)`, the count before the
    /// reservation, if created here; `None` if it existed (nothing
    /// reserved).
    fn ensure(
        &self,
        slot: &mut Slot,
        subject: SubjectId,
        generation: u32,
        reserve: u64,
        now: u64,
    ) -> Result<Option<u64>, Error> {
        if slot.has(generation) {
            return Ok(None);
        }
        // Read again unless this call read the slot already (a new subject:
        // the read that found no key was just made) or the id was drawn
        // here; a generation made meanwhile elsewhere is caught by the
        // insert's conflict below.
        if slot.checked_at != now && !slot.drawn_here {
            self.reload(slot, subject, now)?;
            if slot.has(generation) {
                return Ok(None);
            }
        }
        match self.create(slot, subject, generation, reserve) {
            Ok(()) => Ok(Some(0)),
            Err(Error::KeyStore(KeyStoreError::Conflict(why))) => {
                // Created by another custodian between our read and our write.
                self.reload(slot, subject, now)?;
                if slot.has(generation) {
                    Ok(None)
                } else {
                    Err(KeyStoreError::Conflict(why).into())
                }
            }
            Err(e) => Err(e),
        }
    }

    /// The generation and key new seals of this subject use, and a nonce.
    fn seal_key(
        &self,
        subject: SubjectId,
        now: u64,
    ) -> Result<(u32, Arc<AeadKey>, [u8; NONCE_LEN]), Error> {
        let alg = self.config.algorithm;
        let mut guard = self.lock()?;
        let cache = &mut *guard;
        // The usual path: one lookup, seals left in the reservation, key ready.
        if let Some(slot) = cache.slots.map.get_mut(&subject) {
            if let (true, None, Some((g, left))) =
                (self.fresh(slot, now), slot.unflushed, slot.current)
            {
                if left > 0 {
                    if let Some(key) = slot.ready(g, alg).cloned() {
                        slot.current = Some((g, left - 1));
                        let nonce = cache.nonces.next(&self.rng)?;
                        return Ok((g, key, nonce));
                    }
                }
            }
        }
        let (g, key) = self.seal_key_slow(&mut cache.slots, subject, now)?;
        let nonce = cache.nonces.next(&self.rng)?;
        Ok((g, key, nonce))
    }

    fn seal_key_slow(
        &self,
        slots: &mut Slots,
        subject: SubjectId,
        now: u64,
    ) -> Result<(u32, Arc<AeadKey>), Error> {
        let result = (|| {
            self.settle(slots, subject)?;
            let slot = self
                .slot(slots, subject, now, true)?
                .ok_or(Error::Erased { subject, at: None })?;
            let generation = match slot.current {
                Some((g, left)) if left > 0 => {
                    slot.current = Some((g, left - 1));
                    g
                }
                _ => {
                    let block = self.config.reserve_block.max(1);
                    // Start from the newest generation anyone made.
                    // A generation made here comes with the block reserved
                    // (one write, not two).
                    let mut made = None;
                    let mut g = match slot.stored.iter().map(|k| k.generation).max() {
                        Some(g) => g,
                        None => {
                            made = self.ensure(slot, subject, 0, block, now)?;
                            0
                        }
                    };
                    loop {
                        let before = match made.take() {
                            Some(before) => before,
                            None => self.reserve(slot, subject, g, block, now)?,
                        };
                        let to = before.saturating_add(block);
                        let set_back = slot
                            .reserved_to
                            .is_some_and(|(rg, was)| rg == g && before < was);
                        if to <= self.config.message_limit && !set_back {
                            slot.reserved_to = Some((g, to));
                            break;
                        }
                        // This key has had its share of nonces: use the next generation.
                        g = g.checked_add(1).ok_or(KeyError::Exhausted)?;
                        made = self.ensure(slot, subject, g, block, now)?;
                    }
                    slot.current = Some((g, block - 1));
                    g
                }
            };
            let key = self.ready_key(slot, subject, generation, self.config.algorithm, now)?;
            Ok((generation, key))
        })();
        if let Err(e) = &result {
            if erased_from(e) {
                slots.map.remove(&subject);
            }
        }
        result
    }

    /// Seals `value` and returns the envelope's header and bytes.
    pub(crate) fn seal<T: DataKind>(
        &self,
        subject: SubjectId,
        purpose: u8,
        value: &T,
        collected: Timestamp,
        now: Timestamp,
    ) -> Result<(Header, Vec<u8>), Error> {
        let (key_id, key, random) = self.seal_key(subject, now.unix_nanos())?;
        let mut header = Header {
            version: FORMAT_VERSION,
            algorithm: self.config.algorithm,
            padded: self.config.padding,
            kind: T::KIND.code(),
            purpose,
            subject,
            key_id,
            collected: collected.unix_seconds(),
            // Set below, once the plaintext it is derived from is in place.
            nonce: [0; NONCE_LEN],
        };
        let len = value.encoded_len();
        let ct_len = if header.padded { bucket(len) } else { len };
        let ct_len32 = u32::try_from(ct_len).map_err(|_| Error::Unauthentic)?;
        // Allocated once at its final size: the plaintext written below is
        // encrypted in place and never copied elsewhere.
        let mut out = Vec::with_capacity(HEADER_LEN + ct_len + TAG_LEN);
        header.write(ct_len32, &mut out);
        value.encode_into(&mut out);
        if header.padded {
            out.push(0x80);
            out.resize(HEADER_LEN + ct_len, 0);
        }
        debug_assert_eq!(out.len(), HEADER_LEN + ct_len);
        match self
            .nonce_keys
            .nonce(random, now.unix_nanos(), &out[..HEADER_LEN + ct_len])
        {
            Ok(n) => {
                header.nonce = n;
                out[AAD_LEN..HEADER_LEN].copy_from_slice(&n);
            }
            Err(e) => {
                out.zeroize();
                return Err(e);
            }
        }
        let aad = header.aad(&out, T::KIND.code(), purpose);
        let tag = match key.seal(header.nonce, &aad, &mut out[HEADER_LEN..]) {
            Ok(t) => t,
            Err(e) => {
                out.zeroize();
                return Err(e);
            }
        };
        out.extend_from_slice(&tag);
        Ok((header, out))
    }

    /// The key for this envelope, if the subject's key is available (not
    /// erased, generation known).
    pub(crate) fn check_open(
        &self,
        header: &Header,
        now: Timestamp,
    ) -> Result<Arc<AeadKey>, Error> {
        let now = now.unix_nanos();
        let mut guard = self.lock()?;
        let slots = &mut guard.slots;
        if let Some(slot) = slots.map.get(&header.subject) {
            if self.fresh(slot, now) {
                if let Some(k) = slot.ready(header.key_id, header.algorithm) {
                    return Ok(k.clone());
                }
            }
        }
        let result = self.check_open_slow(slots, header, now);
        if let Err(e) = &result {
            if erased_from(e) {
                slots.map.remove(&header.subject);
            }
        }
        result
    }

    fn check_open_slow(
        &self,
        slots: &mut Slots,
        header: &Header,
        now: u64,
    ) -> Result<Arc<AeadKey>, Error> {
        let (subject, key_id, alg) = (header.subject, header.key_id, header.algorithm);
        let unknown = KeyError::UnknownKey { subject, key_id };
        let Some(slot) = self.slot(slots, subject, now, false)? else {
            return Err(unknown.into());
        };
        if !slot.has(key_id) && slot.checked_at != now {
            // Another custodian may have started a generation: read once more.
            self.reload(slot, subject, now)?;
        }
        self.ready_key(slot, subject, key_id, alg, now)
    }

    /// Opens an envelope with a key from [`check_open`](Self::check_open).
    ///
    /// The ciphertext (and only it) is copied once, into a buffer of exactly
    /// its length, and decrypted there; for a kind whose value is that text
    /// the buffer becomes the value's own, so the plaintext is never copied.
    /// Any other way out wipes the buffer: a failed authentication, a
    /// malformed stored form, a padded envelope (decoded from the buffer),
    /// a kind that decodes into fields of its own, or an unwinding panic.
    pub(crate) fn open<T: DataKind>(
        &self,
        key: &AeadKey,
        header: &Header,
        bytes: &[u8],
        purpose: u8,
    ) -> Result<T, Error> {
        let aad = header.aad(bytes, T::KIND.code(), purpose);
        // `Header::parse` checked the length: the tag's 16 bytes are there.
        let body = &bytes[header.len()..];
        let ct_len = body.len().checked_sub(TAG_LEN).ok_or(Error::Unauthentic)?;
        let (ciphertext, tag) = body.split_at(ct_len);
        let tag: [u8; TAG_LEN] = tag.try_into().map_err(|_| Error::Unauthentic)?;
        let mut buf = Plaintext::copy_of(ciphertext);
        key.open_separate_tag(header.nonce, &aad, tag, buf.as_mut_bytes())?;
        if header.padded {
            return Ok(T::decode(unpad(buf.as_bytes())?, crate::data::Token(()))?);
        }
        Ok(T::decode_owned(buf)?)
    }

    /// Destroys the subject's keys (constant work whatever its record count).
    pub(crate) fn erase(&self, subject: SubjectId, at: Timestamp) -> Result<Destroyed, Error> {
        let mut cache = self.lock()?;
        let destroyed = self.store.destroy(subject, at)?;
        cache.slots.map.remove(&subject);
        // `order` keeps a stale id; eviction skips it and `insert_slot` drops it.
        drop(cache);
        self.noted
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .forget(subject);
        Ok(destroyed)
    }

    /// What [`erase`](Self::erase) would destroy now (`None`: the store
    /// cannot say).
    pub(crate) fn to_destroy(&self, subject: SubjectId) -> Result<Option<Destroyed>, Error> {
        crate::reentry::check_connection()?;
        Ok(self.store.to_destroy(subject)?)
    }

    /// `Err(Erased)` if the key store holds the subject's tombstone. Asked
    /// unless this vault read or made the subject's keys within its bound:
    /// then the subject is live as far as it may know, as for a seal (and
    /// what it reads is cached for the next check and use). For custodians
    /// with no freshness anchor, whose in-memory set knows only their own
    /// erasures.
    pub(crate) fn check_live(&self, subject: SubjectId, now: Timestamp) -> Result<(), Error> {
        let mut cache = self.lock()?;
        // Cached as a seal would cache it (also with no key yet), so the
        // seal or open that follows reads the store no second time.
        self.slot(&mut cache.slots, subject, now.unix_nanos(), true)
            .map(drop)
    }

    /// Whether the subject is erased, according to the key store.
    pub(crate) fn is_erased(&self, subject: SubjectId) -> Result<Option<Timestamp>, Error> {
        crate::reentry::check_connection()?;
        Ok(match self.store.load(subject)? {
            SubjectKeys::Erased { at } => Some(at),
            _ => None,
        })
    }

    pub(crate) fn pseudonym<T: DataKind>(
        &self,
        subject: SubjectId,
        value: &T,
        now: Timestamp,
    ) -> Result<Pseudonym<T>, Error> {
        let p = Pseudonym::compute(&self.pseudonym_key, value);
        self.note_token(subject, *p.as_bytes(), now, |store| {
            store.note_pseudonym(subject, p.to_ref())
        })?;
        Ok(p)
    }

    /// Notes a token (a pseudonym or a lookup token) made from `subject`'s
    /// data with `note`, the first time this process sees the pair, so the
    /// token is listed in a later erasure receipt. A subject erased by
    /// another custodian (or before a restart) gets no new token: the
    /// crate's key stores refuse the note atomically with their tombstone
    /// check (`Conflict`, read back here as `Erased`), and the key store is
    /// asked first unless this vault read or made the subject's keys within
    /// its bound (for a host's store that keeps no note).
    pub(crate) fn note_token(
        &self,
        subject: SubjectId,
        token: [u8; 32],
        now: Timestamp,
        note: impl FnOnce(&dyn KeyStore) -> Result<(), super::KeyStoreError>,
    ) -> Result<(), Error> {
        crate::reentry::check_connection()?;
        // A pair noted before is not noted again, but its subject is
        // checked again once the bound has passed: another process may
        // have erased it since, and an erased subject gets no token.
        let (mut seen, unflushed) = self.remember_noted(subject, token, now.unix_nanos());
        if let Some(u) = unflushed {
            match self.settle_write(u)? {
                Settled::Durable => self.noted().mark(subject, token, None),
                Settled::InScope => {}
                Settled::Lost => {
                    self.noted().forget_one(subject, token);
                    seen = self.remember_noted(subject, token, now.unix_nanos()).0;
                }
            }
        }
        if seen == Seen::Recent {
            return Ok(());
        }
        let reopened = self.reopen_count();
        // A subject whose keys this vault read (or made) within its bound
        // is live as far as it may know: no second read of the key store,
        // as for a seal.
        let live = self
            .lock()?
            .slots
            .map
            .get(&subject)
            .is_some_and(|s| self.fresh(s, now.unix_nanos()));
        let noted = match if live {
            Ok(SubjectKeys::Absent)
        } else {
            self.store.load(subject)
        } {
            Ok(SubjectKeys::Erased { at }) => Err(Error::Erased {
                subject,
                at: Some(at),
            }),
            Ok(_) if seen == Seen::Stale => Ok(()),
            Ok(_) => match self.deferrable(|| (note(&*self.store), self.deferred_now())) {
                // Erased meanwhile (the store checked with its write).
                (Err(super::KeyStoreError::Conflict(c)), _) => match self.store.load(subject) {
                    Ok(SubjectKeys::Erased { at }) => Err(Error::Erased {
                        subject,
                        at: Some(at),
                    }),
                    Ok(_) => Err(super::KeyStoreError::Conflict(c).into()),
                    Err(e) => Err(e.into()),
                },
                (noted, deferred) => {
                    let marked = noted.map(|()| {
                        let unflushed = self.unflushed(deferred, reopened);
                        self.noted().mark(subject, token, unflushed);
                    });
                    marked.map_err(Error::from)
                }
            },
            Err(e) => Err(e.into()),
        };
        if noted.is_err() {
            self.noted
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .forget_one(subject, token);
        }
        noted
    }

    /// Rewraps every stored key under an old version with the current one,
    /// calling `every_256` after every 256 keys (a rotation renews its claim).
    ///
    /// Never brings an erased subject's key back: only a key the store
    /// still holds live is rewrapped (an update in place, never an insert),
    /// and a subject erased meanwhile — the store then refuses the rewrap —
    /// is skipped and counted.
    ///
    /// `anchored_erasure` names subjects erased according to the freshness
    /// anchor: their keys are destroyed again, never rewrapped, whatever
    /// the store says (a database operator may have put them back, A2).
    pub(crate) fn rewrap_from(
        &self,
        version: u32,
        every_256: &mut dyn FnMut() -> Result<(), Error>,
        anchored_erasure: &dyn Fn(SubjectId) -> Result<Option<Timestamp>, Error>,
    ) -> Result<Rewrapped, Error> {
        crate::reentry::check_connection()?;
        let current = self.provider.current_version();
        let mut done = Rewrapped::default();
        if version == current {
            return Ok(done);
        }
        for (subject, generation) in self.store.wrapped_under(version)? {
            if let Some(at) = anchored_erasure(subject)? {
                self.erase(subject, at)?;
                done.skipped_erased += 1;
                continue;
            }
            let SubjectKeys::Live(keys) = self.store.load(subject)? else {
                done.skipped_erased += 1;
                continue;
            };
            let Some(stored) = keys.iter().find(|k| k.generation == generation) else {
                continue;
            };
            if stored.wrapped.kek_version == current {
                continue; // rewrapped meanwhile by another process
            }
            let ctx = wrap_context(subject, generation);
            let dek = self.provider.unwrap(&stored.wrapped, &ctx)?;
            let wrapped = self.provider.wrap(&dek, &ctx)?;
            match self.store.rewrap(subject, generation, wrapped) {
                Ok(()) => {
                    done.moved += 1;
                    if done.moved % 256 == 0 {
                        every_256()?;
                    }
                }
                Err(KeyStoreError::Conflict(why)) => match self.store.load(subject)? {
                    SubjectKeys::Erased { .. } => done.skipped_erased += 1,
                    _ => return Err(KeyStoreError::Conflict(why).into()),
                },
                Err(e) => return Err(e.into()),
            }
        }
        // Cached wrapped forms are stale now; keys themselves are unchanged.
        let mut cache = self.lock()?;
        cache.slots.map.clear();
        cache.slots.order.clear();
        Ok(done)
    }

    /// Every (subject, generation) the key store holds under `version`.
    pub(crate) fn wrapped_under(&self, version: u32) -> Result<Vec<(SubjectId, u32)>, Error> {
        Ok(self.store.wrapped_under(version)?)
    }

    /// The key store's key-encryption-key state.
    pub(crate) fn kek_state(&self) -> Result<super::KekState, Error> {
        Ok(self.store.kek_state()?)
    }

    /// Compare-and-set of the key store's key-encryption-key state.
    pub(crate) fn swap_kek_state(
        &self,
        expected: super::KekState,
        new: super::KekState,
    ) -> Result<bool, Error> {
        Ok(self.store.swap_kek_state(expected, new)?)
    }

    /// Retires a key-encryption-key version once nothing depends on it.
    pub(crate) fn retire(&self, version: u32) -> Result<(), Error> {
        crate::reentry::check_connection()?;
        let users = self.store.wrapped_under(version)?.len();
        if users > 0 || version == self.provider.current_version() {
            return Err(KeyError::InUse {
                version,
                keys: users,
            }
            .into());
        }
        Ok(self.provider.retire(version)?)
    }

    /// The key provider (for a rotation under a host provider).
    pub(crate) fn provider(&self) -> &dyn KeyProvider {
        &*self.provider
    }

    pub(crate) fn config(&self) -> &VaultConfig {
        &self.config
    }
}

/// A key store or key provider whose every call runs as host code (see
/// `crate::reentry`), so a callback from it into the custodian is refused
/// instead of deadlocking on the cache lock.
struct HostCalls<T>(T);

impl<T: KeyStore + ?Sized> KeyStore for HostCalls<Box<T>> {
    fn load(&self, subject: SubjectId) -> Result<SubjectKeys, KeyStoreError> {
        crate::reentry::host(|| self.0.load(subject))
    }
    fn insert(&self, subject: SubjectId, key: StoredKey) -> Result<(), KeyStoreError> {
        crate::reentry::host(|| self.0.insert(subject, key))
    }
    fn reserve(&self, subject: SubjectId, generation: u32, n: u64) -> Result<u64, KeyStoreError> {
        crate::reentry::host(|| self.0.reserve(subject, generation, n))
    }
    fn keeps_uses_on_insert(&self) -> bool {
        self.0.keeps_uses_on_insert()
    }
    fn insert_reserving(
        &self,
        subject: SubjectId,
        key: StoredKey,
        n: u64,
    ) -> Result<u64, KeyStoreError> {
        crate::reentry::host(|| self.0.insert_reserving(subject, key, n))
    }
    fn insert_noting(
        &self,
        subject: SubjectId,
        key: StoredKey,
        tokens: &[super::LookupRef],
    ) -> Result<bool, KeyStoreError> {
        crate::reentry::host(|| self.0.insert_noting(subject, key, tokens))
    }
    fn rewrap(
        &self,
        subject: SubjectId,
        generation: u32,
        wrapped: super::Wrapped,
    ) -> Result<(), KeyStoreError> {
        crate::reentry::host(|| self.0.rewrap(subject, generation, wrapped))
    }
    fn destroy(&self, subject: SubjectId, at: Timestamp) -> Result<Destroyed, KeyStoreError> {
        crate::reentry::host(|| self.0.destroy(subject, at))
    }
    fn to_destroy(&self, subject: SubjectId) -> Result<Option<Destroyed>, KeyStoreError> {
        crate::reentry::host(|| self.0.to_destroy(subject))
    }
    fn database(&self) -> Option<crate::request::DatabaseId> {
        self.0.database()
    }
    fn make_durable(&self) -> Result<(), KeyStoreError> {
        crate::reentry::host(|| self.0.make_durable())
    }
    fn wrapped_under(&self, kek_version: u32) -> Result<Vec<(SubjectId, u32)>, KeyStoreError> {
        crate::reentry::host(|| self.0.wrapped_under(kek_version))
    }
    fn kek_state(&self) -> Result<super::KekState, KeyStoreError> {
        crate::reentry::host(|| self.0.kek_state())
    }
    fn swap_kek_state(
        &self,
        expected: super::KekState,
        new: super::KekState,
    ) -> Result<bool, KeyStoreError> {
        crate::reentry::host(|| self.0.swap_kek_state(expected, new))
    }
    fn note_pseudonym(
        &self,
        subject: SubjectId,
        pseudonym: super::PseudonymRef,
    ) -> Result<(), KeyStoreError> {
        crate::reentry::host(|| self.0.note_pseudonym(subject, pseudonym))
    }
    fn note_lookup_token(
        &self,
        subject: SubjectId,
        token: super::LookupRef,
    ) -> Result<(), KeyStoreError> {
        crate::reentry::host(|| self.0.note_lookup_token(subject, token))
    }
}

impl<T: KeyProvider + ?Sized> KeyProvider for HostCalls<Box<T>> {
    fn current_version(&self) -> u32 {
        crate::reentry::host(|| self.0.current_version())
    }
    fn wrap(&self, data_key: &[u8; 32], context: &[u8]) -> Result<super::Wrapped, KeyError> {
        crate::reentry::host(|| self.0.wrap(data_key, context))
    }
    fn unwrap(
        &self,
        wrapped: &super::Wrapped,
        context: &[u8],
    ) -> Result<zeroize::Zeroizing<[u8; 32]>, KeyError> {
        crate::reentry::host(|| self.0.unwrap(wrapped, context))
    }
    fn retire(&self, version: u32) -> Result<(), KeyError> {
        crate::reentry::host(|| self.0.retire(version))
    }
    fn refresh(&self) -> Result<bool, KeyError> {
        crate::reentry::host(|| self.0.refresh())
    }
    fn versions(&self) -> Vec<u32> {
        crate::reentry::host(|| self.0.versions())
    }
    fn rotate_to(&self, version: u32) -> Result<(), KeyError> {
        crate::reentry::host(|| self.0.rotate_to(version))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{Keyring, MemoryKeyStore};
    use crate::data::EmailAddress;

    #[test]
    fn buckets_and_unpad() {
        assert_eq!(bucket(0), 16);
        assert_eq!(bucket(15), 16);
        assert_eq!(bucket(16), 32);
        assert_eq!(bucket(63), 64);
        assert_eq!(bucket(200), 256);
        assert_eq!(bucket(300), 512);
        assert_eq!(unpad(&[1, 2, 0x80, 0, 0]).unwrap(), &[1, 2]);
        assert!(unpad(&[0, 0]).is_err());
        assert!(unpad(&[1, 2]).is_err());
    }

    #[test]
    fn nonce_pool_never_repeats() {
        let rng = ring::rand::SystemRandom::new();
        let mut pool = NoncePool::new();
        let mut seen = std::collections::HashSet::new();
        for _ in 0..5_000 {
            assert!(seen.insert(pool.next(&rng).unwrap()));
        }
    }

    fn vault(capacity: usize) -> Vault {
        let keyring = Keyring::generate().unwrap();
        let pseudonym_key = keyring.pseudonym_key();
        Vault::new(
            Box::new(keyring),
            Box::new(MemoryKeyStore::new()),
            pseudonym_key,
            VaultConfig {
                cache_capacity: capacity,
                ..VaultConfig::default()
            },
        )
        .unwrap()
    }

    fn sealed_header(v: &Vault, subject: SubjectId, now: Timestamp) -> Header {
        let email = EmailAddress::parse("ada@example.com").unwrap();
        v.seal(subject, 1, &email, now, now).unwrap().0
    }

    #[test]
    fn cache_bookkeeping_stays_bounded() {
        let v = vault(8);
        let now = Timestamp::from_unix_seconds(1_700_000_000);
        let subject = SubjectId::from(1);
        let mut header = sealed_header(&v, subject, now);
        // Envelopes naming a generation that does not exist, over and over.
        header.key_id = 9;
        for _ in 0..1_000 {
            assert!(matches!(
                v.check_open(&header, now),
                Err(Error::Key(KeyError::UnknownKey { key_id: 9, .. }))
            ));
        }
        // Envelopes naming subjects this store never saw are not cached.
        for i in 0..1_000u128 {
            header.subject = SubjectId::from(1_000_000 + i);
            assert!(v.check_open(&header, now).is_err());
        }
        // Many subjects sealed and erased.
        for i in 0..1_000u128 {
            let s = SubjectId::from(2_000_000 + i);
            sealed_header(&v, s, now);
            v.erase(s, now).unwrap();
        }
        let cache = v.lock().unwrap();
        assert!(cache.slots.map.len() <= 8);
        assert!(cache.slots.order.len() <= 64, "{}", cache.slots.order.len());
    }

    #[test]
    fn erase_forgets_noted_pseudonyms_and_refuses_new_ones() {
        let v = vault(64); // notes up to 4 x 64 pseudonyms before starting over
        let (s, other) = (SubjectId::from(3), SubjectId::from(4));
        let email = |t: &str| EmailAddress::parse(t).unwrap();
        let t = Timestamp::from_unix_seconds(1);
        for i in 0..100 {
            v.pseudonym(s, &email(&format!("a{i}@example.com")), t)
                .unwrap();
        }
        v.pseudonym(s, &email("a0@example.com"), t).unwrap(); // noted once
        v.pseudonym(other, &email("b@example.com"), t).unwrap();
        assert_eq!(v.noted.lock().unwrap().set.len(), 101);
        let destroyed = v.erase(s, Timestamp::from_unix_seconds(1)).unwrap();
        assert_eq!(destroyed.pseudonyms.len(), 100);
        {
            let n = v.noted.lock().unwrap();
            assert_eq!(n.set.len(), 1);
            assert!(!n.by_subject.contains_key(&s));
        }
        assert!(matches!(
            v.pseudonym(s, &email("a0@example.com"), t),
            Err(Error::Erased { .. })
        ));
        assert_eq!(v.noted.lock().unwrap().set.len(), 1);
    }

    #[test]
    fn stale_entries_are_checked_against_the_store() {
        let store = std::sync::Arc::new(MemoryKeyStore::new());
        let keyring = std::sync::Arc::new(Keyring::generate().unwrap());
        let make = || {
            Vault::new(
                Box::new(keyring.clone()),
                Box::new(store.clone()),
                keyring.pseudonym_key(),
                VaultConfig::default(),
            )
            .unwrap()
        };
        let (here, there) = (make(), make());
        let t0 = Timestamp::from_unix_seconds(1_700_000_000);
        let subject = SubjectId::from(7);
        let header = sealed_header(&here, subject, t0);
        assert!(here.check_open(&header, t0).is_ok());
        there.erase(subject, t0).unwrap();
        // Within the revalidation interval the cached key still serves...
        let soon = t0.plus_seconds(DEFAULT_REVALIDATE_AFTER.as_secs() - 1);
        assert!(here.check_open(&header, soon).is_ok());
        // ...after it, the store's tombstone is seen, for opens and seals.
        let later = t0.plus_seconds(DEFAULT_REVALIDATE_AFTER.as_secs());
        assert!(matches!(
            here.check_open(&header, later),
            Err(Error::Erased { at: Some(_), .. })
        ));
        let email = EmailAddress::parse("ada@example.com").unwrap();
        assert!(matches!(
            here.seal(subject, 1, &email, later, later),
            Err(Error::Erased { .. })
        ));
    }
}
