//! The maintenance step after erasures, `Custodian::rotate_after_erasures`:
//! a copy of the key table from before it opens nothing afterwards (A3); a
//! process sealing meanwhile with the keyring of before loses no key, and
//! two rotations at once never make two keys of one version (A5); an
//! erased subject's key never comes back; a failed rotation is finished by
//! the next call.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use privacy_pledge::audit::Action;
use privacy_pledge::crypto::{
    Destroyed, KekState, KeyError, KeyStore, KeyStoreError, Keyring, KeyringStore, LookupRef,
    MemoryKeyStore, MemoryKeyringStore, PseudonymRef, StoredKey, SubjectKeys, Wrapped,
};
use privacy_pledge::data::EmailAddress;
use privacy_pledge::purpose::Transaction;
use privacy_pledge::store::sqlite::SqliteStore;
use privacy_pledge::time::Timestamp;
use privacy_pledge::{
    Custodian, Error, ExposeSecret, KeyRotation, PersonalInfo, Sealed, SubjectId,
};
use zeroize::Zeroizing;

#[path = "common/tempdir.rs"]
mod tempdir;

use tempdir::TempDir;

/// A directory unique to one test, removed on drop.
fn temp_dir(test: &str) -> TempDir {
    TempDir::named("rotation", test)
}

type Row = Sealed<EmailAddress, Transaction>;

fn seal(c: &Custodian, subject: SubjectId, text: &str) -> Row {
    let email: PersonalInfo<EmailAddress, Transaction> = c
        .collect(subject, EmailAddress::parse(text).unwrap())
        .unwrap();
    c.seal(&email).unwrap()
}

fn opens_to(c: &Custodian, row: &Row, text: &str) {
    let opened = c.open(row).unwrap();
    assert_eq!(
        c.access(&opened, |e| e.expose_secret().to_owned()).unwrap(),
        text
    );
}

/// A custodian of one process of the shop: its own keyring, read from the
/// shared secret store, on `keys`.
fn process(secrets: &Arc<MemoryKeyringStore>, keys: impl KeyStore + 'static) -> Custodian {
    let keyring = Arc::new(Keyring::import(&secrets.load().unwrap()).unwrap());
    Custodian::builder()
        .keyring(keyring)
        .keyring_store(secrets.clone())
        .key_store(keys)
        .key_revalidate_after(std::time::Duration::from_secs(0))
        .build()
        .unwrap()
}

/// The keys the secret store holds now: what A3 obtains later.
fn current_keys(secrets: &MemoryKeyringStore) -> Arc<Keyring> {
    Arc::new(Keyring::import(&secrets.load().unwrap()).unwrap())
}

/// A3 copies the key table of an SQLite database before an erasure (the
/// whole file, as a backup does), and later obtains the keys that exist
/// after the maintenance step. Before the step, the copy opens the erased
/// subject's envelopes: that is the window the step closes. After it, every
/// key in the copy is wrapped under a version that is retired and wiped, so
/// the copy opens nothing, erased or not; the live database opens everything
/// still live.
#[test]
fn a3_key_table_copy_from_before_maintenance_opens_nothing() {
    let dir = temp_dir("a3");
    let store = SqliteStore::open(dir.path("shop.db")).unwrap();
    let keyring = Arc::new(Keyring::generate().unwrap());
    let secrets = Arc::new(MemoryKeyringStore::new(&keyring));
    let custodian = Custodian::builder()
        .keyring(keyring.clone())
        .keyring_store(secrets.clone())
        .key_store(store.key_store())
        .audit(store.audit_sink(keyring.audit_key()).unwrap())
        .build()
        .unwrap();
    let gone = SubjectId::random();
    let stay: Vec<SubjectId> = (0..3).map(|_| SubjectId::random()).collect();
    let gone_row = seal(&custodian, gone, "gone@example.com");
    let stay_rows: Vec<Row> = stay
        .iter()
        .enumerate()
        .map(|(i, s)| seal(&custodian, *s, &format!("stay{i}@example.com")))
        .collect();

    // The backup: a copy of the database file, key table included.
    let backup = dir.path("backup.db");
    store
        .with_connection(|c| c.execute("VACUUM INTO ?1", [backup.to_str().unwrap()]))
        .unwrap();

    custodian.erase(gone).unwrap();
    assert!(matches!(
        custodian.open(&gone_row),
        Err(Error::Erased { .. })
    ));
    let from_copy = |keys: Arc<Keyring>| {
        Custodian::builder()
            .keyring(keys)
            .key_store(SqliteStore::open(&backup).unwrap().key_store())
            .build()
            .unwrap()
    };
    // The window: the copy and today's keys still open the erased subject.
    opens_to(
        &from_copy(current_keys(&secrets)),
        &gone_row,
        "gone@example.com",
    );

    let done = custodian.rotate_after_erasures().unwrap();
    assert_eq!(done.version(), 2);
    assert_eq!(done.retired(), &[1]);
    assert_eq!(done.rewrapped(), stay.len());
    assert_eq!(done.skipped_erased(), 0, "the erasure deleted its key row");
    assert!(done.covers_earlier_copies() && !done.resumed());
    assert!(done.started_at() <= done.finished_at());
    assert_eq!(keyring.versions(), [2], "version 1 is wiped here");
    let after = current_keys(&secrets);
    assert_eq!(after.versions(), [2], "and gone from the saved keyring");

    // A3 now: the copy with the keys that exist after the step.
    let copy = from_copy(after.clone());
    assert!(matches!(
        copy.open(&gone_row),
        Err(Error::Key(KeyError::Retired { version: 1 }))
    ));
    for row in &stay_rows {
        assert!(
            matches!(
                copy.open(row),
                Err(Error::Key(KeyError::Retired { version: 1 }))
            ),
            "the copy opens a live subject too"
        );
    }
    // Every key the copy holds is wrapped under the retired version.
    let copied = SqliteStore::open(&backup).unwrap().key_store();
    for s in stay.iter().chain([&gone]) {
        let SubjectKeys::Live(keys) = copied.load(*s).unwrap() else {
            panic!("the copy holds the subject's keys");
        };
        assert!(keys.iter().all(|k| k.wrapped.kek_version == 1));
    }

    // The live database, with the same keys: the living open, the erased do not.
    let live = Custodian::builder()
        .keyring(after)
        .key_store(store.key_store())
        .build()
        .unwrap();
    for (i, row) in stay_rows.iter().enumerate() {
        opens_to(&live, row, &format!("stay{i}@example.com"));
    }
    assert!(matches!(live.open(&gone_row), Err(Error::Erased { .. })));
    assert!(store.key_store().wrapped_under(1).unwrap().is_empty());
    let state = store.key_store().kek_state().unwrap();
    assert_eq!((state.floor, state.claimed), (2, 2));
    assert_eq!(state.renewed_at, None, "done");
    assert_eq!(state.claimed_at, Some(done.started_at()));
    // Audited.
    let rotations = store
        .trail()
        .unwrap()
        .iter()
        .filter(|e| e.action() == Action::KeysRotated)
        .count();
    assert_eq!(rotations, 1);
}

/// Another process (A5) still holds the keyring of before the rotation.
/// Its seal of a new subject wraps the key under the version being
/// retired: the key store refuses it, and the process reloads the keyring
/// and wraps it under the new version. It opens keys rewrapped under a
/// version it did not hold by reloading too. Without a keyring store it
/// fails, and stores nothing under the retired version.
#[test]
fn a5_a_process_with_the_keyring_of_before_stores_nothing_under_a_retired_version() {
    let dir = temp_dir("stale");
    let db = dir.path("shop.db");
    let keyring = Keyring::generate().unwrap();
    let secrets = Arc::new(MemoryKeyringStore::new(&keyring));
    let here = process(&secrets, SqliteStore::open(&db).unwrap().key_store());
    let there = process(&secrets, SqliteStore::open(&db).unwrap().key_store());
    let stale_without_store = Custodian::builder()
        .keyring(current_keys(&secrets))
        .key_store(SqliteStore::open(&db).unwrap().key_store())
        .key_revalidate_after(std::time::Duration::from_secs(0))
        .build()
        .unwrap();
    let (ada, bob) = (SubjectId::random(), SubjectId::random());
    let ada_row = seal(&there, ada, "ada@example.com");

    let done = here.rotate_after_erasures().unwrap();
    assert_eq!((done.version(), done.rewrapped()), (2, 1));

    // `there` seals a new subject with version 1: refused, reloaded, version 2.
    let bob_row = seal(&there, bob, "bob@example.com");
    let keys = SqliteStore::open(&db).unwrap().key_store();
    let SubjectKeys::Live(bob_keys) = keys.load(bob).unwrap() else {
        panic!("bob has a key");
    };
    assert_eq!(bob_keys[0].wrapped.kek_version, 2);
    opens_to(&here, &bob_row, "bob@example.com");
    // Ada's key was rewrapped under version 2, which `there` now holds.
    opens_to(&there, &ada_row, "ada@example.com");

    // Without a keyring store: a new subject's seal is refused, nothing stored.
    let carol = SubjectId::random();
    let email: PersonalInfo<EmailAddress, Transaction> =
        PersonalInfo::collect(carol, EmailAddress::parse("carol@example.com").unwrap());
    assert!(matches!(
        stale_without_store.seal(&email),
        Err(Error::KeyStore(KeyStoreError::BelowFloor {
            kek_version: 1,
            floor: 2
        }))
    ));
    assert_eq!(keys.load(carol).unwrap(), SubjectKeys::Absent);
    assert!(keys.wrapped_under(1).unwrap().is_empty());
}

/// A5 for real: a process seals new subjects in a loop, with the keyring it
/// read at start, while another process rotates three times. No key ever
/// lands under a retired version, and everything sealed opens with the
/// keys the secret store holds at the end.
#[test]
fn a5_seals_during_rotations_lose_no_key() {
    let dir = temp_dir("race");
    let db = dir.path("shop.db");
    let keyring = Keyring::generate().unwrap();
    let secrets = Arc::new(MemoryKeyringStore::new(&keyring));
    let rotating = process(&secrets, SqliteStore::open(&db).unwrap().key_store());
    let sealing = process(&secrets, SqliteStore::open(&db).unwrap().key_store());
    for i in 0..20 {
        seal(&rotating, SubjectId::random(), &format!("r{i}@example.com"));
    }
    let (stop, sealed) = (AtomicBool::new(false), AtomicUsize::new(0));
    let (rows, during) = std::thread::scope(|scope| {
        let worker = scope.spawn(|| {
            let mut rows = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                let s = SubjectId::random();
                let text = format!("c{}@example.com", rows.len());
                rows.push((seal(&sealing, s, &text), text));
                sealed.fetch_add(1, Ordering::SeqCst);
                // A shop's pace, not a flood that starves the rotation of
                // the database's write lock.
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
            rows
        });
        while sealed.load(Ordering::SeqCst) < 5 {
            std::thread::yield_now();
        }
        let before = sealed.load(Ordering::SeqCst);
        for _ in 0..3 {
            rotating.rotate_after_erasures().unwrap();
            // The sealing process, still on the keyring of before, seals
            // new subjects before the next rotation.
            let next = sealed.load(Ordering::SeqCst) + 2;
            let waiting = std::time::Instant::now();
            while sealed.load(Ordering::SeqCst) < next {
                assert!(waiting.elapsed() < std::time::Duration::from_secs(30));
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        }
        let during = sealed.load(Ordering::SeqCst) - before;
        stop.store(true, Ordering::SeqCst);
        (worker.join().unwrap(), during)
    });
    assert!(during >= 6, "{during} seals while the rotations ran");
    let keys = SqliteStore::open(&db).unwrap().key_store();
    for retired in 1..=3 {
        assert!(keys.wrapped_under(retired).unwrap().is_empty());
    }
    let last = current_keys(&secrets);
    assert_eq!(last.versions(), [4]);
    let reader = Custodian::builder()
        .keyring(last)
        .key_store(keys)
        .build()
        .unwrap();
    for (row, text) in &rows {
        opens_to(&reader, row, text);
    }
    eprintln!(
        "{during} of {} subjects sealed by another process while 3 rotations ran",
        rows.len()
    );
}

/// Two processes rotate at the same moment, three times each (A5), on one
/// SQLite file: each rotation claims its version in the key store, one that
/// comes meanwhile is told to wait, and no two keys of one version are ever
/// made. Everything opens with the keyring saved last.
#[test]
fn a5_two_rotations_at_once_never_make_two_keys_of_one_version() {
    let dir = temp_dir("twice");
    let db = dir.path("shop.db");
    let keyring = Keyring::generate().unwrap();
    let secrets = Arc::new(MemoryKeyringStore::new(&keyring));
    let one = process(&secrets, SqliteStore::open(&db).unwrap().key_store());
    let two = process(&secrets, SqliteStore::open(&db).unwrap().key_store());
    let rows: Vec<(Row, String)> = (0..10)
        .map(|i| {
            let text = format!("p{i}@example.com");
            (seal(&one, SubjectId::random(), &text), text)
        })
        .collect();
    let busy = AtomicUsize::new(0);
    let versions = Mutex::new(Vec::new());
    let start = std::sync::Barrier::new(2);
    std::thread::scope(|scope| {
        for c in [&one, &two] {
            let (busy, versions, start) = (&busy, &versions, &start);
            scope.spawn(move || {
                for _ in 0..3 {
                    start.wait();
                    loop {
                        match c.rotate_after_erasures() {
                            Ok(r) => {
                                versions.lock().unwrap().push(r.version());
                                break;
                            }
                            Err(Error::Key(KeyError::RotationInProgress { .. })) => {
                                busy.fetch_add(1, Ordering::Relaxed);
                                std::thread::sleep(std::time::Duration::from_millis(1));
                            }
                            Err(e) => panic!("{e}"),
                        }
                    }
                }
            });
        }
    });
    let mut versions = versions.into_inner().unwrap();
    versions.sort_unstable();
    assert_eq!(
        versions,
        (2..=7).collect::<Vec<u32>>(),
        "one rotation per version"
    );
    let last = current_keys(&secrets);
    assert_eq!(last.versions(), [7]);
    let keys = SqliteStore::open(&db).unwrap().key_store();
    for retired in 1..7 {
        assert!(keys.wrapped_under(retired).unwrap().is_empty());
    }
    let reader = Custodian::builder()
        .keyring(last)
        .key_store(SqliteStore::open(&db).unwrap().key_store())
        .build()
        .unwrap();
    for (row, text) in &rows {
        opens_to(&reader, row, text);
    }
    eprintln!(
        "two processes, 6 rotations: {} attempts told to wait",
        busy.load(Ordering::Relaxed)
    );
}

/// A shared in-memory key store, with host code run at two moments of a
/// rotation: before a key is rewrapped (given its subject), and before the
/// key-encryption-key state is swapped (a claim taken or renewed).
struct Hooked {
    inner: Arc<MemoryKeyStore>,
    before_rewrap: Box<dyn Fn(SubjectId) + Send + Sync>,
    before_swap: Box<dyn Fn() + Send + Sync>,
}

impl Hooked {
    fn new(inner: Arc<MemoryKeyStore>) -> Self {
        Hooked {
            inner,
            before_rewrap: Box::new(|_| ()),
            before_swap: Box::new(|| ()),
        }
    }
}

impl KeyStore for Hooked {
    fn load(&self, subject: SubjectId) -> Result<SubjectKeys, KeyStoreError> {
        self.inner.load(subject)
    }
    fn insert(&self, subject: SubjectId, key: StoredKey) -> Result<(), KeyStoreError> {
        self.inner.insert(subject, key)
    }
    fn reserve(&self, subject: SubjectId, generation: u32, n: u64) -> Result<u64, KeyStoreError> {
        self.inner.reserve(subject, generation, n)
    }
    fn rewrap(
        &self,
        subject: SubjectId,
        generation: u32,
        wrapped: Wrapped,
    ) -> Result<(), KeyStoreError> {
        (self.before_rewrap)(subject);
        self.inner.rewrap(subject, generation, wrapped)
    }
    fn destroy(&self, subject: SubjectId, at: Timestamp) -> Result<Destroyed, KeyStoreError> {
        self.inner.destroy(subject, at)
    }
    fn wrapped_under(&self, kek_version: u32) -> Result<Vec<(SubjectId, u32)>, KeyStoreError> {
        self.inner.wrapped_under(kek_version)
    }
    fn kek_state(&self) -> Result<KekState, KeyStoreError> {
        self.inner.kek_state()
    }
    fn swap_kek_state(&self, expected: KekState, new: KekState) -> Result<bool, KeyStoreError> {
        (self.before_swap)();
        self.inner.swap_kek_state(expected, new)
    }
    fn note_pseudonym(&self, s: SubjectId, p: PseudonymRef) -> Result<(), KeyStoreError> {
        self.inner.note_pseudonym(s, p)
    }
    fn note_lookup_token(&self, s: SubjectId, t: LookupRef) -> Result<(), KeyStoreError> {
        self.inner.note_lookup_token(s, t)
    }
}

/// Erasure and rewrap never bring an erased subject's key back: a subject
/// erased before the rotation has no key to rewrap, and one erased while
/// the rotation reaches it is skipped (and counted); both stay erased.
#[test]
fn a1_rotation_never_brings_an_erased_subjects_key_back() {
    let inner = Arc::new(MemoryKeyStore::new());
    let keyring = Keyring::generate().unwrap();
    let secrets = Arc::new(MemoryKeyringStore::new(&keyring));
    let (before, during, stays) = (
        SubjectId::random(),
        SubjectId::random(),
        SubjectId::random(),
    );
    // Another process erases `during` just as the rotation rewraps it.
    let erasing = inner.clone();
    let c = process(
        &secrets,
        Hooked {
            before_rewrap: Box::new(move |subject| {
                if subject == during {
                    erasing.destroy(subject, Timestamp::now()).unwrap();
                }
            }),
            ..Hooked::new(inner.clone())
        },
    );
    let rows: Vec<Row> = [before, during, stays]
        .iter()
        .map(|s| seal(&c, *s, "x@example.com"))
        .collect();
    c.erase(before).unwrap();
    let done = c.rotate_after_erasures().unwrap();
    assert_eq!((done.rewrapped(), done.skipped_erased()), (1, 1));
    for s in [before, during] {
        assert!(matches!(inner.load(s).unwrap(), SubjectKeys::Erased { .. }));
    }
    for row in &rows[..2] {
        assert!(matches!(c.open(row), Err(Error::Erased { .. })));
    }
    opens_to(&c, &rows[2], "x@example.com");
    // And again: still erased, nothing to skip any more.
    let again = c.rotate_after_erasures().unwrap();
    assert_eq!((again.rewrapped(), again.skipped_erased()), (1, 0));
    assert!(matches!(
        inner.load(during).unwrap(),
        SubjectKeys::Erased { .. }
    ));
}

/// A secret store whose saves fail on demand.
struct Flaky {
    inner: MemoryKeyringStore,
    fail_save: Mutex<Vec<bool>>,
}

impl KeyringStore for Flaky {
    fn load(&self) -> Result<Zeroizing<String>, KeyError> {
        self.inner.load()
    }
    fn save(&self, export: &str) -> Result<(), KeyError> {
        let fail = {
            let mut plan = self.fail_save.lock().unwrap();
            if plan.is_empty() {
                false
            } else {
                plan.remove(0)
            }
        };
        if fail {
            return Err(KeyError::Provider("the secret manager is down".into()));
        }
        self.inner.save(export)
    }
}

/// A rotation that fails part-way is finished by the next call: if the new
/// version was saved, the custodian that claimed it finishes it at once,
/// and another process once the claim's lease has run out; if it was not
/// saved, the claim is given up, its version never used, and the next call
/// rotates at once.
#[test]
fn a5_a_rotation_that_failed_part_way_is_finished_by_the_next_call() {
    let keys = Arc::new(MemoryKeyStore::new());
    let keyring = Arc::new(Keyring::generate().unwrap());
    let secrets = Arc::new(Flaky {
        inner: MemoryKeyringStore::new(&keyring),
        fail_save: Mutex::new(Vec::new()),
    });
    let build = |k: Arc<Keyring>| {
        Custodian::builder()
            .keyring(k)
            .keyring_store(secrets.clone())
            .key_store(keys.clone())
            .build()
            .unwrap()
    };
    let c = build(keyring.clone());
    let other = build(Arc::new(Keyring::import(&keyring.export()).unwrap()));
    let ada = SubjectId::random();
    let row = seal(&c, ada, "ada@example.com");
    let saved = || {
        Keyring::import(&secrets.load().unwrap())
            .unwrap()
            .versions()
    };

    // The first save fails: nothing was wrapped under the new version.
    *secrets.fail_save.lock().unwrap() = vec![true];
    assert!(matches!(
        c.rotate_after_erasures(),
        Err(Error::Key(KeyError::Provider(_)))
    ));
    assert_eq!(keyring.versions(), [1]);
    assert_eq!(keys.kek_state().unwrap().renewed_at, None, "given up");
    let done = other.rotate_after_erasures().unwrap();
    assert_eq!(
        (done.version(), done.resumed()),
        (3, false),
        "version 2 is never used"
    );

    // The last save fails: the secret store holds versions 3 and 4, and
    // the claim stands.
    *secrets.fail_save.lock().unwrap() = vec![false, true];
    assert!(c.rotate_after_erasures().is_err());
    assert_eq!(saved(), [3, 4]);
    assert!(keys.kek_state().unwrap().renewed_at.is_some());
    // Another process waits for the lease; the claimer finishes at once.
    assert!(matches!(
        other.rotate_after_erasures(),
        Err(Error::Key(KeyError::RotationInProgress { version: 4, .. }))
    ));
    // It finishes the rotation to 4, then rotates once more from a claim
    // of its own (the one it took up was made before this call).
    let done = c.rotate_after_erasures().unwrap();
    assert_eq!((done.version(), done.resumed()), (5, true));
    // 3 was retired by the call whose last save failed (this keyring never
    // takes it back); the store loses it with this call's saves.
    assert_eq!(done.retired(), &[4]);
    assert_eq!(keyring.versions(), [5]);
    assert_eq!(saved(), [5]);

    // Once more, and the claimer goes away: after the lease, another
    // process takes the rotation over from the saved keyring.
    *secrets.fail_save.lock().unwrap() = vec![false, true];
    assert!(c.rotate_after_erasures().is_err());
    drop(c);
    let state = keys.kek_state().unwrap();
    let lease = privacy_pledge::custodian::ROTATION_LEASE_SECONDS;
    let long_ago = Timestamp::from_unix_seconds(Timestamp::now().unix_seconds() - lease - 1);
    let aged = KekState {
        renewed_at: Some(long_ago),
        ..state
    };
    assert!(keys.swap_kek_state(state, aged).unwrap());
    let done = other.rotate_after_erasures().unwrap();
    assert_eq!((done.version(), done.resumed()), (7, true));
    assert_eq!(done.retired(), &[5, 6]);
    assert!(done.started_at() > state.claimed_at.unwrap());
    assert_eq!(saved(), [7]);
    opens_to(&other, &row, "ada@example.com");
}

/// A5 then A3: a rotation claims version 2, saves it and rewraps, then
/// fails at its last save (its process dies). A subject sealed under
/// version 2 is then erased, after a backup of the key table. Another
/// process takes the rotation over once the lease is out: finishing it
/// alone would keep version 2, under which the backup holds the erased
/// subject's key, so it rotates once more, and the backup opens nothing
/// with the keys that exist afterwards.
#[test]
fn a3_an_erasure_after_a_claim_is_covered_when_another_process_finishes_it() {
    let dir = temp_dir("taken_over");
    let store = SqliteStore::open(dir.path("shop.db")).unwrap();
    let keyring = Arc::new(Keyring::generate().unwrap());
    let secrets = Arc::new(Flaky {
        inner: MemoryKeyringStore::new(&keyring),
        fail_save: Mutex::new(vec![false, true]),
    });
    let build = |k: Arc<Keyring>| {
        Custodian::builder()
            .keyring(k)
            .keyring_store(secrets.clone())
            .key_store(store.key_store())
            .build()
            .unwrap()
    };
    let c = build(keyring.clone());
    assert!(c.rotate_after_erasures().is_err(), "the last save fails");
    assert_eq!(keyring.versions(), [2]);
    let bob = SubjectId::random();
    let row = seal(&c, bob, "bob@example.com");
    let copy = dir.path("before.db");
    store
        .with_connection(|db| db.execute("VACUUM INTO ?1", [copy.to_str().unwrap()]))
        .unwrap();
    c.erase(bob).unwrap();
    drop(c);

    let keys = store.key_store();
    let state = keys.kek_state().unwrap();
    let lease = privacy_pledge::custodian::ROTATION_LEASE_SECONDS;
    let aged = KekState {
        renewed_at: Some(Timestamp::from_unix_seconds(
            Timestamp::now().unix_seconds() - lease - 1,
        )),
        ..state
    };
    assert!(keys.swap_kek_state(state, aged).unwrap());
    let other = build(current_keys(&secrets.inner));
    let done = other.rotate_after_erasures().unwrap();
    assert!(done.resumed());
    assert_eq!(done.version(), 3);
    assert!(done.retired().contains(&2));

    let from_copy = Custodian::builder()
        .keyring(current_keys(&secrets.inner))
        .key_store(SqliteStore::open(&copy).unwrap().key_store())
        .build()
        .unwrap();
    assert!(
        from_copy.open(&row).is_err(),
        "the backup opens the subject erased after the claim"
    );
}

/// A2 then A3: the operator edits the key-encryption-key state row (which
/// nothing authenticates) into an abandoned claim "to" the current
/// version. The next rotation takes it up, which retires nothing; it must
/// still rotate, so that a backup from before an erasure opens nothing.
#[test]
fn a2_a_forged_unfinished_claim_does_not_stop_a_rotation_from_retiring() {
    let dir = temp_dir("forged_claim");
    let store = SqliteStore::open(dir.path("shop.db")).unwrap();
    let keyring = Arc::new(Keyring::generate().unwrap());
    let secrets = Arc::new(MemoryKeyringStore::new(&keyring));
    let c = process(&secrets, store.key_store());
    let gone = SubjectId::random();
    let row = seal(&c, gone, "gone@example.com");
    let copy = dir.path("before.db");
    store
        .with_connection(|db| db.execute("VACUUM INTO ?1", [copy.to_str().unwrap()]))
        .unwrap();
    c.erase(gone).unwrap();
    store
        .with_connection(|db| {
            db.execute(
                "UPDATE pp_kek_state SET claimed = 1, claimed_at = 1, renewed_at = 1",
                [],
            )
        })
        .unwrap();

    let done = c.rotate_after_erasures().unwrap();
    assert!(done.resumed());
    assert_eq!((done.version(), done.retired()), (2, &[1][..]));
    assert_eq!(current_keys(&secrets).versions(), [2]);
    let from_copy = Custodian::builder()
        .keyring(current_keys(&secrets))
        .key_store(SqliteStore::open(&copy).unwrap().key_store())
        .build()
        .unwrap();
    assert!(from_copy.open(&row).is_err());
}

/// A claim given up before its keyring was saved (the process died) makes
/// the next rotation wait for the lease, then it rotates past it; a claim
/// the operator dated ahead (A2) holds no longer.
#[test]
fn a5_an_abandoned_claim_holds_for_the_lease_only() {
    let keys = Arc::new(MemoryKeyStore::new());
    let keyring = Keyring::generate().unwrap();
    let secrets = Arc::new(MemoryKeyringStore::new(&keyring));
    let c = process(&secrets, keys.clone());
    let idle = keys.kek_state().unwrap();
    let ago =
        |seconds: u64| Timestamp::from_unix_seconds(Timestamp::now().unix_seconds() - seconds);
    let claim = KekState {
        claimed: 2,
        claimed_at: Some(ago(10)),
        renewed_at: Some(ago(10)),
        ..idle
    };
    assert!(keys.swap_kek_state(idle, claim).unwrap());
    assert!(matches!(
        c.rotate_after_erasures(),
        Err(Error::Key(KeyError::RotationInProgress { version: 2, .. }))
    ));
    let lease = privacy_pledge::custodian::ROTATION_LEASE_SECONDS;
    let stale = KekState {
        renewed_at: Some(ago(lease + 1)),
        ..claim
    };
    assert!(keys.swap_kek_state(claim, stale).unwrap());
    let done = c.rotate_after_erasures().unwrap();
    assert_eq!((done.version(), done.resumed()), (3, false));

    // A2 dates a claim far ahead to block rotations for good: it holds no
    // longer than a lease from now would.
    let idle = keys.kek_state().unwrap();
    let ahead = Timestamp::from_unix_seconds(Timestamp::now().unix_seconds() + 10 * lease);
    let forged = KekState {
        claimed: 9,
        claimed_at: Some(ahead),
        renewed_at: Some(ahead),
        ..idle
    };
    assert!(keys.swap_kek_state(idle, forged).unwrap());
    assert_eq!(c.rotate_after_erasures().unwrap().version(), 10);
}

/// A maintenance job waits for another process's rotation (A5): within
/// its patience it rotates once that one is done, the claim let go; past
/// it, it answers `RotationInProgress`, having waited, not at once.
#[test]
fn a5_rotating_with_patience_waits_for_a_rotation_elsewhere() {
    use std::time::{Duration, Instant};
    let keys = Arc::new(MemoryKeyStore::new());
    let keyring = Keyring::generate().unwrap();
    let secrets = Arc::new(MemoryKeyringStore::new(&keyring));
    let c = process(&secrets, keys.clone());
    let idle = keys.kek_state().unwrap();
    let claim = KekState {
        claimed: 2,
        claimed_at: Some(Timestamp::now()),
        renewed_at: Some(Timestamp::now()),
        ..idle
    };
    assert!(keys.swap_kek_state(idle, claim).unwrap());

    let started = Instant::now();
    assert!(matches!(
        c.rotate_after_erasures_waiting(Duration::from_millis(300)),
        Err(Error::Key(KeyError::RotationInProgress { version: 2, .. }))
    ));
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(250),
        "gave up after {waited:?}"
    );

    // The other process gives its claim up after 200 ms: the waiting call
    // rotates then, past the version that process never used.
    let started = Instant::now();
    let done = std::thread::scope(|scope| {
        scope.spawn(|| {
            std::thread::sleep(Duration::from_millis(200));
            let given_up = KekState {
                renewed_at: None,
                ..claim
            };
            assert!(keys.swap_kek_state(claim, given_up).unwrap());
        });
        c.rotate_after_erasures_waiting(Duration::from_secs(30))
            .unwrap()
    });
    assert!(started.elapsed() >= Duration::from_millis(200));
    assert_eq!((done.version(), done.resumed()), (3, false));
    assert_eq!(current_keys(&secrets).versions(), [3]);
}

/// Rotation needs the keyring's store, and a key store that keeps a
/// key-encryption-key state; without either it is refused, and nothing changes.
#[test]
fn rotation_is_refused_without_a_keyring_store() {
    let keyring = Arc::new(Keyring::generate().unwrap());
    let c = Custodian::builder()
        .keyring(keyring.clone())
        .build()
        .unwrap();
    assert!(matches!(
        c.rotate_after_erasures(),
        Err(Error::Key(KeyError::Provider(_)))
    ));
    assert_eq!(keyring.versions(), [1]);
    assert!(Custodian::builder()
        .keyring_store(MemoryKeyringStore::new(&keyring))
        .key_provider(keyring.clone())
        .keyring(keyring)
        .build()
        .is_err());
}

/// The host's secret manager, whose writes (a conditional `replace` is
/// decided when it arrives) arrive in turn: the next one armed only after
/// its stall has run (minutes of retries, a paused machine).
struct LateWrites {
    inner: MemoryKeyringStore,
    stall: Mutex<Vec<Box<dyn FnOnce() + Send>>>,
}

impl LateWrites {
    fn arrive(&self) {
        let stall = self.stall.lock().unwrap().pop();
        if let Some(stall) = stall {
            stall();
        }
    }
}

impl KeyringStore for LateWrites {
    fn load(&self) -> Result<Zeroizing<String>, KeyError> {
        self.inner.load()
    }
    fn save(&self, export: &str) -> Result<(), KeyError> {
        self.arrive();
        self.inner.save(export)
    }
    fn replace(&self, expected: &str, export: &str) -> Result<bool, KeyError> {
        self.arrive();
        self.inner.replace(expected, export)
    }
}

/// Process A's rotation after an erasure, one of whose keyring writes
/// (`late`: 0 the staged version's, 1 the last) arrives more than the
/// lease later, after process B took A's claim over and finished a
/// rotation of its own (saving a newer keyring without the versions it
/// retired). A3 copies the database, with its keys, before B's rotation.
/// Returns A's result, B's, the store, the copy, and the rows of an erased
/// and a live subject.
fn rotation_overtaken(late: usize) -> (Result<KeyRotation, Error>, KeyRotation, Overtaken) {
    use privacy_pledge::time::FixedClock;
    let dir = temp_dir(&format!("overtaken{late}"));
    let store = SqliteStore::open(dir.path("shop.db")).unwrap();
    let keyring = Arc::new(Keyring::generate().unwrap());
    let secrets = Arc::new(LateWrites {
        inner: MemoryKeyringStore::new(&keyring),
        stall: Mutex::new(Vec::new()),
    });
    let a = Custodian::builder()
        .keyring(keyring)
        .keyring_store(secrets.clone())
        .key_store(store.key_store())
        .build()
        .unwrap();
    let lease = privacy_pledge::custodian::ROTATION_LEASE_SECONDS;
    let later = FixedClock::new(Timestamp::from_unix_seconds(
        Timestamp::now().unix_seconds() + lease + 1,
    ));
    let b = Custodian::builder()
        .keyring(Keyring::import(&secrets.load().unwrap()).unwrap())
        .keyring_store(secrets.clone())
        .key_store(store.key_store())
        .clock(later)
        .build()
        .unwrap();
    let (gone, stay) = (SubjectId::random(), SubjectId::random());
    let gone_row = seal(&a, gone, "gone@example.com");
    let stay_row = seal(&a, stay, "stay@example.com");
    let copy = dir.path("copy.db");
    let b_done = Arc::new(Mutex::new(None));
    {
        let (b_done, store, copy) = (b_done.clone(), store.clone(), copy.clone());
        let b = Arc::new(b);
        let mut stalls: Vec<Box<dyn FnOnce() + Send>> = vec![Box::new(move || {
            let done = std::thread::spawn(move || {
                store
                    .with_connection(|c| c.execute("VACUUM INTO ?1", [copy.to_str().unwrap()]))
                    .unwrap();
                b.erase(gone).unwrap();
                b.rotate_after_erasures()
            })
            .join()
            .unwrap();
            *b_done.lock().unwrap() = Some(done);
        })];
        // Writes before the late one arrive at once.
        for _ in 0..late {
            stalls.push(Box::new(|| {}));
        }
        *secrets.stall.lock().unwrap() = stalls;
    }
    let a_done = a.rotate_after_erasures();
    let b_done = b_done.lock().unwrap().take().expect("B ran").unwrap();
    let overtaken = Overtaken {
        _dir: dir,
        secrets,
        store,
        copy,
        a,
        gone_row,
        stay_row,
    };
    (a_done, b_done, overtaken)
}

struct Overtaken {
    _dir: TempDir,
    secrets: Arc<LateWrites>,
    store: SqliteStore,
    copy: std::path::PathBuf,
    a: Custodian,
    gone_row: Row,
    stay_row: Row,
}

/// What holds after a rotation was overtaken: the late write was refused
/// (A's rotation fails with `StoredKeyringChanged`), the store holds B's
/// keyring alone, a restarted process and A itself open the live
/// subject's row, and the copy of the database opens nothing of the
/// erased subject with the store's keyring.
fn overtaken_rotation_is_refused(late: usize, retired: &[u32]) {
    let (a_done, b_done, o) = rotation_overtaken(late);
    assert!(
        matches!(a_done, Err(Error::Key(KeyError::StoredKeyringChanged))),
        "{a_done:?}"
    );
    assert_eq!((b_done.version(), b_done.retired()), (3, retired));
    let current = Keyring::import(&o.secrets.load().unwrap()).unwrap();
    assert_eq!(current.versions(), [3], "a retired version was saved back");
    let restarted = Custodian::builder()
        .keyring(Keyring::import(&o.secrets.load().unwrap()).unwrap())
        .key_store(o.store.key_store())
        .build()
        .unwrap();
    opens_to(&restarted, &o.stay_row, "stay@example.com");
    opens_to(&o.a, &o.stay_row, "stay@example.com");
    let from_copy = Custodian::builder()
        .keyring(current)
        .key_store(SqliteStore::open(&o.copy).unwrap().key_store())
        .build()
        .unwrap();
    assert!(from_copy.open(&o.gone_row).is_err());
}

/// A5, A3: A's save of the staged version arrives after B's whole
/// rotation (which found A's claim lapsed and the version not saved, and
/// rotated past it, retiring version 1). Written over B's keyring, it
/// brought version 1 back (the copy opened the erased subject) and lost
/// version 3, under which every live key was wrapped.
#[test]
fn a5_a3_a_staged_save_that_lands_after_another_rotation_is_refused() {
    overtaken_rotation_is_refused(0, &[1]);
}

/// A5, A3: A's last save (the keyring without version 1) arrives after B
/// finished A's rotation and rotated once more, retiring version 2: written
/// over B's keyring, it brought version 2 back.
#[test]
fn a5_a3_a_last_save_that_lands_after_another_rotation_is_refused() {
    overtaken_rotation_is_refused(1, &[1, 2]);
}

/// A retired version never comes back through a reload made while a
/// rotation's last save is still to come.
mod reload_during_the_last_save {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, OnceLock};

    use privacy_pledge::crypto::{
        KeyError, KeyStore, Keyring, KeyringStore, MemoryKeyStore, MemoryKeyringStore, SubjectKeys,
    };
    use privacy_pledge::data::EmailAddress;
    use privacy_pledge::purpose::Transaction;
    use privacy_pledge::{Custodian, Error, ExposeSecret, PersonalInfo, SubjectId};

    use super::Hooked;

    /// A3 keeps a copy of the key table from before an erasure; A5: the service
    /// runs two custodians on one keyring (say, one per worker pool), and the
    /// second one's maintenance job starts while the first one's rotation is
    /// finishing. The job reloads the keyring from the secret store before it
    /// asks for the claim (and is then told to wait); that reload lands after
    /// the rotation retired version 1 and before its last save, and brings
    /// version 1 back (same current version, one more version: taken in). The
    /// rotation then saves the keyring *with* version 1, reports it retired,
    /// and the secret store keeps it for good: A3's copy plus today's keys
    /// open the erased subject. A reload never takes in a version at or below
    /// the keyring's current one that it no longer holds.
    #[test]
    fn a5_a3_a_reload_during_a_rotations_last_save_never_brings_a_retired_version_back() {
        let inner = Arc::new(MemoryKeyStore::new());
        let keyring = Arc::new(Keyring::generate().unwrap());
        let secrets = Arc::new(MemoryKeyringStore::new(&keyring));
        let slot: Arc<OnceLock<Arc<Custodian>>> = Arc::new(OnceLock::new());
        // Once the rotating custodian's keyring holds only the new version
        // (old ones retired, last save not yet made), the next renewal of
        // the claim lets another thread of the process run: the maintenance
        // job of a second custodian on the same keyring, once.
        let (window_keyring, other, fired) =
            (keyring.clone(), slot.clone(), AtomicBool::new(false));
        let keys = Arc::new(Hooked {
            before_swap: Box::new(move || {
                if window_keyring.versions() == [2] && !fired.swap(true, Ordering::SeqCst) {
                    let other: Arc<Custodian> = other.get().expect("set").clone();
                    let answer = std::thread::spawn(move || other.rotate_after_erasures())
                        .join()
                        .unwrap();
                    // The other job is told to wait: a rotation is under way.
                    assert!(
                        matches!(answer, Err(Error::Key(KeyError::RotationInProgress { .. }))),
                        "{answer:?}"
                    );
                }
            }),
            ..Hooked::new(inner.clone())
        });
        let build = || {
            Custodian::builder()
                .keyring(keyring.clone())
                .keyring_store(secrets.clone())
                .key_store(keys.clone())
                .build()
                .unwrap()
        };
        let first = build();
        slot.set(Arc::new(build())).ok();

        let gone = SubjectId::random();
        let email: PersonalInfo<EmailAddress, Transaction> = first
            .collect(gone, EmailAddress::parse("gone@example.com").unwrap())
            .unwrap();
        let row = first.seal(&email).unwrap();
        // A3's backup of the key table, before the erasure.
        let SubjectKeys::Live(copied) = inner.load(gone).unwrap() else {
            panic!("live");
        };
        first.erase(gone).unwrap();

        let done = first.rotate_after_erasures().unwrap();
        assert_eq!(done.retired(), &[1], "the rotation says version 1 is gone");

        // A3, later: the keys that exist now, with the copy of the key table.
        let today = Arc::new(Keyring::import(&secrets.load().unwrap()).unwrap());
        let copy = Arc::new(MemoryKeyStore::new());
        for k in copied {
            copy.insert(gone, k).unwrap();
        }
        let a3 = Custodian::builder()
            .keyring(today.clone())
            .key_store(copy)
            .build()
            .unwrap();
        let opened = a3
            .open(&row)
            .map(|p| a3.access(&p, |e| e.expose_secret().to_owned()).unwrap());
        assert!(
            today.versions() == [2] && opened.is_err(),
            "the secret store kept retired versions {:?}; A3 opens the erased subject: {:?}",
            today.versions(),
            opened
        );
    }
}
