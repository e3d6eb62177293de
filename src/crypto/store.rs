//! Where wrapped subject data keys live: the [`KeyStore`] trait and the
//! in-memory store.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Mutex;

use super::{LookupRef, PseudonymRef, Wrapped};
use crate::subject::SubjectId;
use crate::time::Timestamp;

/// One generation of a subject's data key, as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredKey {
    /// The generation (the envelope's key id). A subject's first key is 0.
    pub generation: u32,
    /// The data key, wrapped by the key provider.
    pub wrapped: Wrapped,
    /// How many seals have been reserved under this key (see
    /// [`KeyStore::reserve`]). A reservation that would pass the message
    /// limit is still counted, and refused: the custodian then starts a new
    /// generation, so no generation ever seals more than the limit even if
    /// this count does pass it.
    pub uses: u64,
}

/// What a key store holds for one subject.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SubjectKeys {
    /// Nothing yet: the subject's first seal creates generation 0.
    Absent,
    /// The subject's live keys.
    Live(Vec<StoredKey>),
    /// The subject was erased: every key is destroyed; only this tombstone remains.
    Erased {
        /// When.
        at: Timestamp,
    },
}

/// What [`KeyStore::destroy`] destroyed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Destroyed {
    /// The generations whose keys were destroyed.
    pub generations: Vec<u32>,
    /// Pseudonyms noted for the subject: they outlive the key, so the host
    /// must delete them wherever it stored them.
    pub pseudonyms: Vec<PseudonymRef>,
    /// Lookup tokens noted for the subject: the host deletes the index
    /// entries holding them.
    pub lookup_tokens: Vec<LookupRef>,
}

/// What a key store keeps about key-encryption-key versions, for
/// [`Custodian::rotate_after_erasures`](crate::Custodian::rotate_after_erasures):
/// one record shared by every process on the store.
///
/// ```
/// use privacy_pledge::crypto::{KekState, KeyStore, MemoryKeyStore};
///
/// let store = MemoryKeyStore::new();
/// let idle = store.kek_state()?;
/// assert_eq!(idle, KekState::default());
/// let raised = KekState { floor: 2, ..idle };
/// assert!(store.swap_kek_state(idle, raised)?);
/// assert!(!store.swap_kek_state(idle, raised)?); // no longer what it was
/// # Ok::<(), privacy_pledge::crypto::KeyStoreError>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KekState {
    /// The oldest key-encryption-key version the store still takes: a key
    /// wrapped under an older one is refused by [`KeyStore::insert`] and
    /// [`KeyStore::rewrap`] ([`KeyStoreError::BelowFloor`]). 0 at first.
    pub floor: u32,
    /// The newest version a rotation has claimed. A version is claimed
    /// once, so two processes never make two different keys of one version.
    pub claimed: u32,
    /// When the rotation to `claimed` was claimed.
    pub claimed_at: Option<Timestamp>,
    /// While that rotation is under way: when the process running it last
    /// renewed its claim (it does at every step). A claim not renewed for
    /// [`ROTATION_LEASE_SECONDS`](crate::custodian::ROTATION_LEASE_SECONDS)
    /// may be taken over. `None` once it is done.
    pub renewed_at: Option<Timestamp>,
}

/// A key store failed or refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyStoreError {
    /// The write conflicts with what is stored (the generation exists, or the subject was erased).
    #[error("key store conflict: {0}")]
    Conflict(Cow<'static, str>),
    /// The storage behind the store failed.
    #[error("key store failed: {0}")]
    Backend(Cow<'static, str>),
    /// The key is wrapped under a key-encryption-key version older than the
    /// store's floor: a rotation (in another process, perhaps) retires that
    /// version, so nothing may depend on it any more. Wrap under the current
    /// version (reload the keyring).
    #[error("key store refused a key wrapped under key-encryption-key version {kek_version}: the oldest it takes is {floor} (the keyring was rotated; reload it)")]
    BelowFloor {
        /// The version the key was wrapped under.
        kek_version: u32,
        /// The store's floor.
        floor: u32,
    },
}

/// Storage for wrapped subject data keys, implemented by hosts over their own
/// database (the in-memory [`MemoryKeyStore`] is built in).
///
/// Sealed data can sit anywhere — tables, backups, exports — while the keys
/// that open it live only here, so destroying a subject's keys erases every
/// copy at once (crypto-shredding, R11). A backup of this store still holds
/// an erased subject's key until the key-encryption-key version it is
/// wrapped under is retired:
/// [`Custodian::rotate_after_erasures`](crate::Custodian::rotate_after_erasures)
/// after erasures.
///
/// Several custodians (processes, replicas) may share one store. Each keeps
/// the keys it uses in memory and checks a subject against the store again
/// once its cached entry is 30 seconds old, so an erasure made through one
/// custodian stops the others within 30 seconds (at once in the one that
/// erased). Generations started by one are picked up by the others.
pub trait KeyStore: Send + Sync {
    /// The subject's keys, or a tombstone.
    fn load(&self, subject: SubjectId) -> Result<SubjectKeys, KeyStoreError>;

    /// Adds a generation. `Err(Conflict)` if that generation exists or the
    /// subject was erased. Atomic: of two custodians creating the same
    /// generation at once, one succeeds and the other gets `Conflict` (and
    /// then uses the stored one).
    fn insert(&self, subject: SubjectId, key: StoredKey) -> Result<(), KeyStoreError>;

    /// Adds `n` to a generation's use count and returns the count before,
    /// atomically (custodians sharing the store reserve from the same count).
    fn reserve(&self, subject: SubjectId, generation: u32, n: u64) -> Result<u64, KeyStoreError>;

    /// Whether [`insert`](Self::insert) keeps [`StoredKey::uses`] as given
    /// (the crate's stores do). Then [`insert_reserving`](Self::insert_reserving)
    /// is one write. The default says no.
    fn keeps_uses_on_insert(&self) -> bool {
        false
    }

    /// [`insert`](Self::insert), then [`reserve`](Self::reserve) of `n`
    /// seals of the new key; returns the count before the reservation (0).
    /// One write (one durable commit instead of two for a new subject's
    /// first seal) on a store that [keeps the use count given on
    /// insert](Self::keeps_uses_on_insert), else the two calls. If the
    /// insert fails, nothing is reserved.
    fn insert_reserving(
        &self,
        subject: SubjectId,
        key: StoredKey,
        n: u64,
    ) -> Result<u64, KeyStoreError> {
        if self.keeps_uses_on_insert() {
            self.insert(subject, StoredKey { uses: n, ..key })?;
            return Ok(0);
        }
        let generation = key.generation;
        self.insert(subject, key)?;
        self.reserve(subject, generation, n)
    }

    /// [`insert`](Self::insert) and [`note_lookup_token`](Self::note_lookup_token)
    /// of each of `tokens`, as one write, if the store can: `Ok(true)`.
    /// A new subject's first sealed record with a lookup field is then one
    /// write instead of two. Called only on stores that [keep the use count
    /// given on insert](Self::keeps_uses_on_insert), with the key's first
    /// reservation in [`StoredKey::uses`]. The checks and refusals are
    /// `insert`'s; if the key is not stored, nothing is noted.
    ///
    /// The default writes nothing and answers `Ok(false)`: the caller then
    /// inserts and notes one by one.
    fn insert_noting(
        &self,
        subject: SubjectId,
        key: StoredKey,
        tokens: &[LookupRef],
    ) -> Result<bool, KeyStoreError> {
        let _ = (subject, key, tokens);
        Ok(false)
    }

    /// Replaces a generation's wrapping (after a key-encryption-key rotation).
    fn rewrap(
        &self,
        subject: SubjectId,
        generation: u32,
        wrapped: Wrapped,
    ) -> Result<(), KeyStoreError>;

    /// Destroys every key of the subject, leaving a tombstone dated `at`
    /// (or the one already there). A store the operator can write to
    /// deletes the subject's keys and notes even when a tombstone is there
    /// already: one planted before the erasure must not make it destroy
    /// nothing.
    fn destroy(&self, subject: SubjectId, at: Timestamp) -> Result<Destroyed, KeyStoreError>;

    /// What [`destroy`](Self::destroy) would destroy if called now, without
    /// destroying anything (empty for an erased subject, whose rows are
    /// gone).
    ///
    /// With a freshness anchor the custodian journals this list before it
    /// destroys anything, so an erasure interrupted after `destroy` (a crash,
    /// a failed write) and retried still returns the whole receipt — every
    /// lookup token the host must clear. `Ok(None)`, the default: this store
    /// cannot say, and such a retry lists only what it destroys itself. The
    /// crate's stores answer.
    fn to_destroy(&self, subject: SubjectId) -> Result<Option<Destroyed>, KeyStoreError> {
        let _ = subject;
        Ok(None)
    }

    /// The database this store writes to, if it is one of the crate's
    /// stores' ([`DatabaseId`](crate::request::DatabaseId)). When it is the
    /// database the custodian's audit sink commits to, a new key and the
    /// tokens noted inside a request scope are written without a durable
    /// commit of their own: the scope's audit commit, which comes before
    /// anything leaves the scope, makes them durable. The default, `None`,
    /// keeps every write durable on its own. A wrapper that forwards this
    /// forwards [`make_durable`](Self::make_durable) too.
    fn database(&self) -> Option<crate::request::DatabaseId> {
        None
    }

    /// Makes durable now every write this store made without a durable
    /// commit of its own (a new key inside a request scope, see
    /// [`database`](Self::database)). The custodian calls it before a seal
    /// outside that scope uses such a key: that seal's envelope leaves at
    /// once, before the scope's own durable commit.
    ///
    /// The default does nothing for a store whose every write is durable
    /// on its own ([`database`](Self::database) `None`), and refuses for
    /// one that answers a database: a wrapper around one of the crate's
    /// stores that forwards `database` must forward this too, and one that
    /// does not fails such a seal instead of handing out an envelope whose
    /// key may never reach the disk.
    fn make_durable(&self) -> Result<(), KeyStoreError> {
        match self.database() {
            None => Ok(()),
            Some(_) => Err(KeyStoreError::Backend(Cow::Borrowed(
                "this key store answers `database` but does not make its writes durable \
                 (KeyStore::make_durable): forward it with `database`",
            ))),
        }
    }

    /// Every (subject, generation) whose key is wrapped under `kek_version`.
    fn wrapped_under(&self, kek_version: u32) -> Result<Vec<(SubjectId, u32)>, KeyStoreError>;

    /// The store's [`KekState`]. The default keeps none, and
    /// [`Custodian::rotate_after_erasures`](crate::Custodian::rotate_after_erasures)
    /// is refused on such a store (the crate's stores keep one).
    fn kek_state(&self) -> Result<KekState, KeyStoreError> {
        Err(no_kek_state())
    }

    /// Replaces the [`KekState`] with `new` if it is still `expected`, and
    /// says whether it did: one atomic compare-and-set against every other
    /// call of every process sharing the store.
    ///
    /// The floor is a fence. Once a swap that raises it has returned, no
    /// [`insert`](Self::insert) or [`rewrap`](Self::rewrap) of a key wrapped
    /// under an older version may succeed, in any process: each checks the
    /// floor atomically with its write (and refuses with
    /// [`KeyStoreError::BelowFloor`]). A rotation relies on this to retire
    /// the old version without losing a key another process was wrapping
    /// under it at that moment.
    fn swap_kek_state(&self, expected: KekState, new: KekState) -> Result<bool, KeyStoreError> {
        let _ = (expected, new);
        Err(no_kek_state())
    }

    /// Notes a pseudonym issued for the subject, so erasure can list it.
    /// For a subject already erased nothing is noted and the answer is
    /// `Err(Conflict)`, checked atomically with the write (the custodian
    /// then refuses the use as erased). The default keeps no note.
    fn note_pseudonym(
        &self,
        subject: SubjectId,
        pseudonym: PseudonymRef,
    ) -> Result<(), KeyStoreError> {
        let _ = (subject, pseudonym);
        Ok(())
    }

    /// Notes a lookup token made from the subject's stored data, so erasure
    /// can list it; `Err(Conflict)` and nothing noted for a subject already
    /// erased, as [`note_pseudonym`](Self::note_pseudonym). The default keeps
    /// no note (and the erasure receipt then lists no token): the crate's
    /// stores keep one.
    fn note_lookup_token(&self, subject: SubjectId, token: LookupRef) -> Result<(), KeyStoreError> {
        let _ = (subject, token);
        Ok(())
    }
}

fn no_kek_state() -> KeyStoreError {
    KeyStoreError::Backend(Cow::Borrowed(
        "this key store keeps no key-encryption-key state (KeyStore::kek_state)",
    ))
}

impl<K: KeyStore + ?Sized> KeyStore for std::sync::Arc<K> {
    fn load(&self, subject: SubjectId) -> Result<SubjectKeys, KeyStoreError> {
        (**self).load(subject)
    }
    fn insert(&self, subject: SubjectId, key: StoredKey) -> Result<(), KeyStoreError> {
        (**self).insert(subject, key)
    }
    fn reserve(&self, subject: SubjectId, generation: u32, n: u64) -> Result<u64, KeyStoreError> {
        (**self).reserve(subject, generation, n)
    }
    fn keeps_uses_on_insert(&self) -> bool {
        (**self).keeps_uses_on_insert()
    }
    fn insert_reserving(
        &self,
        subject: SubjectId,
        key: StoredKey,
        n: u64,
    ) -> Result<u64, KeyStoreError> {
        (**self).insert_reserving(subject, key, n)
    }
    fn insert_noting(
        &self,
        subject: SubjectId,
        key: StoredKey,
        tokens: &[LookupRef],
    ) -> Result<bool, KeyStoreError> {
        (**self).insert_noting(subject, key, tokens)
    }
    fn rewrap(
        &self,
        subject: SubjectId,
        generation: u32,
        wrapped: Wrapped,
    ) -> Result<(), KeyStoreError> {
        (**self).rewrap(subject, generation, wrapped)
    }
    fn destroy(&self, subject: SubjectId, at: Timestamp) -> Result<Destroyed, KeyStoreError> {
        (**self).destroy(subject, at)
    }
    fn to_destroy(&self, subject: SubjectId) -> Result<Option<Destroyed>, KeyStoreError> {
        (**self).to_destroy(subject)
    }
    fn database(&self) -> Option<crate::request::DatabaseId> {
        (**self).database()
    }
    fn make_durable(&self) -> Result<(), KeyStoreError> {
        (**self).make_durable()
    }
    fn wrapped_under(&self, kek_version: u32) -> Result<Vec<(SubjectId, u32)>, KeyStoreError> {
        (**self).wrapped_under(kek_version)
    }
    fn kek_state(&self) -> Result<KekState, KeyStoreError> {
        (**self).kek_state()
    }
    fn swap_kek_state(&self, expected: KekState, new: KekState) -> Result<bool, KeyStoreError> {
        (**self).swap_kek_state(expected, new)
    }
    fn note_pseudonym(
        &self,
        subject: SubjectId,
        pseudonym: PseudonymRef,
    ) -> Result<(), KeyStoreError> {
        (**self).note_pseudonym(subject, pseudonym)
    }
    fn note_lookup_token(&self, subject: SubjectId, token: LookupRef) -> Result<(), KeyStoreError> {
        (**self).note_lookup_token(subject, token)
    }
}

#[derive(Debug)]
enum Entry {
    Live {
        keys: Vec<StoredKey>,
        pseudonyms: Vec<PseudonymRef>,
        lookups: Vec<LookupRef>,
    },
    Erased(Timestamp),
}

/// A [`KeyStore`] in memory: for tests, examples and single-process hosts
/// that keep keys elsewhere between runs.
///
/// ```
/// use privacy_pledge::crypto::{KeyStore, MemoryKeyStore, SubjectKeys};
/// use privacy_pledge::SubjectId;
///
/// let store = MemoryKeyStore::new();
/// assert_eq!(store.load(SubjectId::from(1))?, SubjectKeys::Absent);
/// # Ok::<(), privacy_pledge::crypto::KeyStoreError>(())
/// ```
#[derive(Debug, Default)]
pub struct MemoryKeyStore {
    entries: Mutex<HashMap<SubjectId, Entry>>,
    /// Taken inside `entries`' lock when both are needed.
    kek: Mutex<KekState>,
}

impl MemoryKeyStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn with<R>(&self, f: impl FnOnce(&mut HashMap<SubjectId, Entry>) -> R) -> R {
        f(&mut self.entries.lock().unwrap_or_else(|p| p.into_inner()))
    }

    fn floor(&self) -> u32 {
        self.kek.lock().unwrap_or_else(|p| p.into_inner()).floor
    }
}

/// Refuses a key wrapped under a version below the floor.
fn above_floor(wrapped: &Wrapped, floor: u32) -> Result<(), KeyStoreError> {
    if wrapped.kek_version < floor {
        return Err(KeyStoreError::BelowFloor {
            kek_version: wrapped.kek_version,
            floor,
        });
    }
    Ok(())
}

fn live_key(
    map: &mut HashMap<SubjectId, Entry>,
    subject: SubjectId,
    generation: u32,
) -> Result<&mut StoredKey, KeyStoreError> {
    match map.get_mut(&subject) {
        Some(Entry::Live { keys, .. }) => keys
            .iter_mut()
            .find(|k| k.generation == generation)
            .ok_or(KeyStoreError::Conflict(Cow::Borrowed("no such generation"))),
        Some(Entry::Erased(_)) => Err(KeyStoreError::Conflict(Cow::Borrowed("subject erased"))),
        None => Err(KeyStoreError::Conflict(Cow::Borrowed("no such subject"))),
    }
}

impl KeyStore for MemoryKeyStore {
    fn load(&self, subject: SubjectId) -> Result<SubjectKeys, KeyStoreError> {
        Ok(self.with(|m| match m.get(&subject) {
            None => SubjectKeys::Absent,
            Some(Entry::Live { keys, .. }) => SubjectKeys::Live(keys.clone()),
            Some(Entry::Erased(at)) => SubjectKeys::Erased { at: *at },
        }))
    }

    fn insert(&self, subject: SubjectId, key: StoredKey) -> Result<(), KeyStoreError> {
        // The floor is read under the entries' lock, which a swap of the
        // state takes too: the check and the write are one step.
        self.with(|m| match above_floor(&key.wrapped, self.floor()) {
            Err(e) => Err(e),
            Ok(()) => match live_entry(m, subject) {
                Entry::Erased(_) => Err(KeyStoreError::Conflict(Cow::Borrowed("subject erased"))),
                Entry::Live { keys, .. } => {
                    if keys.iter().any(|k| k.generation == key.generation) {
                        return Err(KeyStoreError::Conflict(Cow::Borrowed("generation exists")));
                    }
                    keys.push(key);
                    Ok(())
                }
            },
        })
    }

    fn keeps_uses_on_insert(&self) -> bool {
        true
    }

    fn insert_noting(
        &self,
        subject: SubjectId,
        key: StoredKey,
        tokens: &[LookupRef],
    ) -> Result<bool, KeyStoreError> {
        // The insert's checks, then the notes, under one hold of the lock.
        self.with(|m| match above_floor(&key.wrapped, self.floor()) {
            Err(e) => Err(e),
            Ok(()) => match live_entry(m, subject) {
                Entry::Erased(_) => Err(KeyStoreError::Conflict(Cow::Borrowed("subject erased"))),
                Entry::Live { keys, lookups, .. } => {
                    if keys.iter().any(|k| k.generation == key.generation) {
                        return Err(KeyStoreError::Conflict(Cow::Borrowed("generation exists")));
                    }
                    keys.push(key);
                    for token in tokens {
                        if !lookups.contains(token) {
                            lookups.push(*token);
                        }
                    }
                    Ok(true)
                }
            },
        })
    }

    fn reserve(&self, subject: SubjectId, generation: u32, n: u64) -> Result<u64, KeyStoreError> {
        self.with(|m| {
            let k = live_key(m, subject, generation)?;
            let before = k.uses;
            k.uses = k.uses.saturating_add(n);
            Ok(before)
        })
    }

    fn rewrap(
        &self,
        subject: SubjectId,
        generation: u32,
        wrapped: Wrapped,
    ) -> Result<(), KeyStoreError> {
        self.with(|m| {
            above_floor(&wrapped, self.floor())?;
            live_key(m, subject, generation)?.wrapped = wrapped;
            Ok(())
        })
    }

    fn destroy(&self, subject: SubjectId, at: Timestamp) -> Result<Destroyed, KeyStoreError> {
        self.with(|m| match m.insert(subject, Entry::Erased(at)) {
            Some(Entry::Live {
                keys,
                pseudonyms,
                lookups,
            }) => Ok(Destroyed {
                generations: keys.iter().map(|k| k.generation).collect(),
                pseudonyms,
                lookup_tokens: lookups,
            }),
            Some(Entry::Erased(first)) => {
                m.insert(subject, Entry::Erased(first));
                Ok(Destroyed::default())
            }
            None => Ok(Destroyed::default()),
        })
    }

    fn to_destroy(&self, subject: SubjectId) -> Result<Option<Destroyed>, KeyStoreError> {
        self.with(|m| {
            Ok(Some(match m.get(&subject) {
                Some(Entry::Live {
                    keys,
                    pseudonyms,
                    lookups,
                }) => Destroyed {
                    generations: keys.iter().map(|k| k.generation).collect(),
                    pseudonyms: pseudonyms.clone(),
                    lookup_tokens: lookups.clone(),
                },
                _ => Destroyed::default(),
            }))
        })
    }

    fn wrapped_under(&self, kek_version: u32) -> Result<Vec<(SubjectId, u32)>, KeyStoreError> {
        Ok(self.with(|m| {
            let mut out = Vec::new();
            for (s, e) in m.iter() {
                if let Entry::Live { keys, .. } = e {
                    out.extend(
                        keys.iter()
                            .filter(|k| k.wrapped.kek_version == kek_version)
                            .map(|k| (*s, k.generation)),
                    );
                }
            }
            out
        }))
    }

    fn kek_state(&self) -> Result<KekState, KeyStoreError> {
        Ok(*self.kek.lock().unwrap_or_else(|p| p.into_inner()))
    }

    fn swap_kek_state(&self, expected: KekState, new: KekState) -> Result<bool, KeyStoreError> {
        // Under the entries' lock: no insert or rewrap is between its floor
        // check and its write while the floor moves.
        self.with(|_| {
            let mut kek = self.kek.lock().unwrap_or_else(|p| p.into_inner());
            if *kek != expected {
                return Ok(false);
            }
            *kek = new;
            Ok(true)
        })
    }

    fn note_pseudonym(
        &self,
        subject: SubjectId,
        pseudonym: PseudonymRef,
    ) -> Result<(), KeyStoreError> {
        self.with(|m| match live_entry(m, subject) {
            Entry::Live { pseudonyms, .. } => {
                if !pseudonyms.contains(&pseudonym) {
                    pseudonyms.push(pseudonym);
                }
                Ok(())
            }
            Entry::Erased(_) => Err(erased_conflict()),
        })
    }

    fn note_lookup_token(&self, subject: SubjectId, token: LookupRef) -> Result<(), KeyStoreError> {
        self.with(|m| match live_entry(m, subject) {
            Entry::Live { lookups, .. } => {
                if !lookups.contains(&token) {
                    lookups.push(token);
                }
                Ok(())
            }
            Entry::Erased(_) => Err(erased_conflict()),
        })
    }
}

/// What a note for an erased subject answers.
pub(crate) fn erased_conflict() -> KeyStoreError {
    KeyStoreError::Conflict(Cow::Borrowed("subject erased"))
}

/// The subject's entry, created live and empty if absent.
fn live_entry(m: &mut HashMap<SubjectId, Entry>, subject: SubjectId) -> &mut Entry {
    m.entry(subject).or_insert_with(|| Entry::Live {
        keys: Vec::new(),
        pseudonyms: Vec::new(),
        lookups: Vec::new(),
    })
}
