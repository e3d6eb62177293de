//! Subject data keys: erasure by key destruction, key-encryption-key rotation,
//! rewrapping, retirement, and the per-key message limit.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use privacy_pledge::crypto::{
    KeyError, KeyProvider, KeyStore, Keyring, MemoryKeyStore, StoredKey, SubjectKeys,
};
use privacy_pledge::data::{EmailAddress, FullName, PostalAddress};
use privacy_pledge::purpose::{Improvement, Support, Transaction};
use privacy_pledge::time::{FixedClock, Timestamp};
use privacy_pledge::{
    Custodian, CustodianBuilder, Error, ExposeSecret, PersonalInfo, Sealed, SubjectId,
};

fn email<P: privacy_pledge::purpose::Purpose>(
    subject: SubjectId,
    text: &str,
) -> PersonalInfo<EmailAddress, P> {
    PersonalInfo::collect(subject, EmailAddress::parse(text).unwrap())
}

fn name(subject: SubjectId, text: &str) -> PersonalInfo<FullName, Support> {
    PersonalInfo::collect(subject, FullName::parse(text).unwrap())
}

fn live_keys(store: &MemoryKeyStore, subject: SubjectId) -> Vec<StoredKey> {
    match store.load(subject).unwrap() {
        SubjectKeys::Live(keys) => keys,
        other => panic!("expected live keys, got {other:?}"),
    }
}

/// Two custodians sharing one keyring and key store, as two processes of a
/// host would; `configure` adds the options under test.
fn sharing(configure: impl Fn(CustodianBuilder) -> CustodianBuilder) -> (Custodian, Custodian) {
    let store = Arc::new(MemoryKeyStore::new());
    let keyring = Arc::new(Keyring::generate().unwrap());
    let build = || {
        configure(
            Custodian::builder()
                .keyring(keyring.clone())
                .key_store(store.clone()),
        )
        .build()
        .unwrap()
    };
    (build(), build())
}

fn opens_to(c: &Custodian, s: &Sealed<EmailAddress, Transaction>, text: &str) {
    let opened = c.open(s).unwrap();
    assert_eq!(
        c.access(&opened, |e| e.expose_secret().to_owned()).unwrap(),
        text
    );
}

#[test]
fn erasure_makes_every_copy_unreadable_and_spares_others() {
    let store = Arc::new(MemoryKeyStore::new());
    let keyring = Arc::new(Keyring::generate().unwrap());
    let at = Timestamp::from_unix_seconds(1_700_000_000);
    let build = || {
        Custodian::builder()
            .keyring(keyring.clone())
            .key_store(store.clone())
            .clock(FixedClock::new(at))
            .message_limit(2)
            .build()
            .unwrap()
    };
    let c = build();
    let (a, b) = (SubjectId::random(), SubjectId::random());

    // Five seals under a limit of two: generations 0, 1 and 2.
    let a_mails: Vec<_> = (0..5)
        .map(|i| {
            c.seal(&email::<Transaction>(a, &format!("ada{i}@example.com")))
                .unwrap()
        })
        .collect();
    assert_eq!(
        a_mails.iter().map(Sealed::key_id).collect::<Vec<_>>(),
        [0, 0, 1, 1, 2]
    );
    let a_name = c.seal(&name(a, "Ada Lovelace")).unwrap();
    let a_postal = c
        .seal(&PersonalInfo::<_, Support>::collect(
            a,
            PostalAddress::parse("12 St James's Square\nLondon\nGB").unwrap(),
        ))
        .unwrap();
    // Copies made before the erasure, as a backup or export would hold them.
    let text_copies: Vec<String> = a_mails.iter().map(Sealed::to_text).collect();
    let json_copy = serde_json::to_string(&a_name).unwrap();

    let b_mail = c.seal(&email::<Transaction>(b, "bob@example.com")).unwrap();
    let b_name = c.seal(&name(b, "Bob Babbage")).unwrap();

    // Pseudonyms issued for a (and one for b, which must not be listed).
    let pa1 = c
        .pseudonym(&email::<Improvement>(a, "ada0@example.com"))
        .unwrap();
    let pa2 = c.pseudonym(&name(a, "Ada Lovelace")).unwrap();
    let pb = c
        .pseudonym(&email::<Improvement>(b, "bob@example.com"))
        .unwrap();

    let receipt = c.erase(a).unwrap();
    assert_eq!(receipt.subject(), a);
    assert_eq!(receipt.at(), at);
    let mut generations = receipt.generations().to_vec();
    generations.sort_unstable();
    // Seven seals under a limit of two: generations 0 to 3.
    assert_eq!((a_name.key_id(), a_postal.key_id()), (2, 3));
    assert_eq!(generations, [0, 1, 2, 3]);
    assert_eq!(receipt.pseudonyms().len(), 2);
    assert!(receipt.pseudonyms().contains(&pa1.to_ref()));
    assert!(receipt.pseudonyms().contains(&pa2.to_ref()));
    assert!(!receipt.pseudonyms().contains(&pb.to_ref()));
    assert_eq!(store.load(a).unwrap(), SubjectKeys::Erased { at });

    let erased = |r: Result<_, Error>| match r {
        Err(Error::Erased { subject, .. }) => assert_eq!(subject, a),
        Err(e) => panic!("expected Erased, got {e:?}"),
        Ok(_) => panic!("an erased subject's envelope opened"),
    };
    // The same custodian, and a fresh one with nothing cached (a restart).
    let fresh = build();
    for custodian in [&c, &fresh] {
        for s in &a_mails {
            erased(custodian.open(s).map(drop));
        }
        for t in &text_copies {
            let copy = Sealed::<EmailAddress, Transaction>::from_text(t).unwrap();
            erased(custodian.open(&copy).map(drop));
        }
        let copy: Sealed<FullName, Support> = serde_json::from_str(&json_copy).unwrap();
        erased(custodian.open(&copy).map(drop));
        erased(custodian.open(&a_name).map(drop));
        erased(custodian.open(&a_postal).map(drop));
        erased(
            custodian
                .seal(&email::<Transaction>(a, "ada@example.com"))
                .map(drop),
        );
        erased(custodian.pseudonym(&name(a, "Ada Lovelace")).map(drop));
        assert!(custodian.is_erased(a).unwrap());
        assert!(!custodian.is_erased(b).unwrap());

        // The other subject is untouched.
        opens_to(custodian, &b_mail, "bob@example.com");
        let n = custodian.open(&b_name).unwrap();
        assert_eq!(
            custodian
                .access(&n, |v| v.expose_secret().to_owned())
                .unwrap(),
            "Bob Babbage"
        );
        custodian
            .seal(&email::<Transaction>(b, "bob@example.com"))
            .unwrap();
    }
    // The restarted custodian learns when from the key store's tombstone.
    assert!(matches!(
        fresh.open(&a_mails[0]),
        Err(Error::Erased { at: Some(t), .. }) if t == at
    ));
    // Erasing again destroys nothing more.
    assert!(fresh.erase(a).unwrap().generations().is_empty());
}

#[test]
fn erasure_is_refused_when_the_audit_sink_fails() {
    use privacy_pledge::audit::{AuditError, AuditEvent, AuditSink};
    struct Refuse;
    impl AuditSink for Refuse {
        fn record(&self, _: &AuditEvent) -> Result<(), AuditError> {
            Err(AuditError::new("disk full"))
        }
    }
    let store = Arc::new(MemoryKeyStore::new());
    let keyring = Arc::new(Keyring::generate().unwrap());
    let c = Custodian::builder()
        .keyring(keyring.clone())
        .key_store(store.clone())
        .build()
        .unwrap();
    let a = SubjectId::random();
    let sealed = c.seal(&email::<Transaction>(a, "ada@example.com")).unwrap();
    let refusing = Custodian::builder()
        .keyring(keyring)
        .key_store(store.clone())
        .audit(Refuse)
        .build()
        .unwrap();
    assert!(matches!(refusing.erase(a), Err(Error::Audit(_))));
    assert_eq!(live_keys(&store, a).len(), 1);
    opens_to(&c, &sealed, "ada@example.com");
}

/// Keys wrapped per version, as the store holds them: version -> generations.
fn versions_of(store: &MemoryKeyStore, subject: SubjectId) -> BTreeMap<u32, Vec<u32>> {
    let mut m = BTreeMap::<u32, Vec<u32>>::new();
    for k in live_keys(store, subject) {
        m.entry(k.wrapped.kek_version)
            .or_default()
            .push(k.generation);
    }
    m
}

#[test]
fn rotation_rewrap_and_retirement() {
    let store = Arc::new(MemoryKeyStore::new());
    let keyring = Arc::new(Keyring::generate().unwrap());
    // The host keeps the keyring's export in its secret store.
    let saved_v1 = keyring.export();
    let build = |k: Arc<Keyring>| {
        Custodian::builder()
            .keyring(k)
            .key_store(store.clone())
            .build()
            .unwrap()
    };
    let c = build(keyring.clone());

    // Three subjects whose keys are wrapped under version 1.
    let old: Vec<(SubjectId, String)> = (0..3)
        .map(|i| (SubjectId::random(), format!("old{i}@example.com")))
        .collect();
    let old_sealed: Vec<_> = old
        .iter()
        .map(|(s, t)| c.seal(&email::<Transaction>(*s, t)).unwrap())
        .collect();
    let old_bytes: Vec<Vec<u8>> = old_sealed.iter().map(Sealed::to_bytes).collect();
    for (s, _) in &old {
        assert_eq!(versions_of(&store, *s), BTreeMap::from([(1, vec![0])]));
    }

    // Rotate: new data keys are wrapped under version 2.
    assert_eq!(keyring.rotate().unwrap(), 2);
    assert_eq!(keyring.current_version(), 2);
    let newcomer = SubjectId::random();
    let new_sealed = c
        .seal(&email::<Transaction>(newcomer, "new@example.com"))
        .unwrap();
    assert_eq!(
        versions_of(&store, newcomer),
        BTreeMap::from([(2, vec![0])])
    );
    // Existing subjects keep their generation-0 key (still under version 1).
    let again = c
        .seal(&email::<Transaction>(old[0].0, "old0@example.com"))
        .unwrap();
    assert_eq!(again.key_id(), 0);
    assert_eq!(
        versions_of(&store, old[0].0),
        BTreeMap::from([(1, vec![0])])
    );

    // Envelopes sealed before the rotation still open, here and after a restart.
    let restarted = build(Arc::new(Keyring::import(&keyring.export()).unwrap()));
    for custodian in [&c, &restarted] {
        for (s, (_, t)) in old_sealed.iter().zip(&old) {
            opens_to(custodian, s, t);
        }
        opens_to(custodian, &new_sealed, "new@example.com");
    }

    // Version 1 cannot be retired while keys depend on it; the current version never.
    assert!(matches!(
        c.retire_key_version(1),
        Err(Error::Key(KeyError::InUse {
            version: 1,
            keys: 3
        }))
    ));
    assert!(matches!(
        c.retire_key_version(2),
        Err(Error::Key(KeyError::InUse { version: 2, .. }))
    ));
    assert_eq!(keyring.versions(), [1, 2]);

    // Rewrap: every key moves to version 2; generations and sealed data stay.
    let before: Vec<Vec<u8>> = old
        .iter()
        .map(|(s, _)| live_keys(&store, *s)[0].wrapped.bytes.clone())
        .collect();
    assert_eq!(c.rewrap_keys(1).unwrap(), 3);
    assert!(store.wrapped_under(1).unwrap().is_empty());
    for ((s, _), was) in old.iter().zip(&before) {
        assert_eq!(versions_of(&store, *s), BTreeMap::from([(2, vec![0])]));
        assert_ne!(&live_keys(&store, *s)[0].wrapped.bytes, was);
    }
    assert_eq!(c.rewrap_keys(1).unwrap(), 0);
    assert_eq!(c.rewrap_keys(2).unwrap(), 0);

    // Now version 1 retires, and everything still opens — without version 1.
    c.retire_key_version(1).unwrap();
    assert_eq!(keyring.versions(), [2]);
    assert!(matches!(
        c.retire_key_version(1),
        Err(Error::Key(KeyError::Retired { version: 1 }))
    ));
    let only_v2 = build(Arc::new(Keyring::import(&keyring.export()).unwrap()));
    for custodian in [&c, &only_v2] {
        for ((s, (_, t)), bytes) in old_sealed.iter().zip(&old).zip(&old_bytes) {
            assert_eq!(&s.to_bytes(), bytes);
            let reread = Sealed::<EmailAddress, Transaction>::from_bytes(bytes).unwrap();
            opens_to(custodian, &reread, t);
        }
        opens_to(custodian, &again, "old0@example.com");
        opens_to(custodian, &new_sealed, "new@example.com");
    }
    // A keyring with only version 1 can no longer unwrap anything.
    let only_v1 = build(Arc::new(Keyring::import(&saved_v1).unwrap()));
    assert!(matches!(
        only_v1.open(&old_sealed[0]),
        Err(Error::Key(KeyError::Retired { version: 2 }))
    ));
}

#[test]
fn message_limit_starts_new_generations() {
    let store = Arc::new(MemoryKeyStore::new());
    let keyring = Arc::new(Keyring::generate().unwrap());
    let build = |limit: u64| {
        Custodian::builder()
            .keyring(keyring.clone())
            .key_store(store.clone())
            .message_limit(limit)
            .build()
            .unwrap()
    };
    let c = build(3);
    let (a, b) = (SubjectId::random(), SubjectId::random());
    let sealed: Vec<_> = (0..10)
        .map(|i| {
            c.seal(&email::<Transaction>(a, &format!("a{i}@example.com")))
                .unwrap()
        })
        .collect();
    let ids: Vec<u32> = sealed.iter().map(Sealed::key_id).collect();
    assert_eq!(ids, [0, 0, 0, 1, 1, 1, 2, 2, 2, 3]);
    // Another subject's count is its own.
    assert_eq!(
        c.seal(&email::<Transaction>(b, "b@example.com"))
            .unwrap()
            .key_id(),
        0
    );
    let keys = live_keys(&store, a);
    assert_eq!(
        keys.iter().map(|k| k.generation).collect::<Vec<_>>(),
        [0, 1, 2, 3]
    );
    // Refused reservations count too, so a store's count can pass the
    // limit; the seals made under each generation never do.
    assert!(keys.iter().all(|k| k.uses >= 3), "{keys:?}");

    // A restarted custodian does not reuse a generation whose nonces were
    // reserved before: no generation ever carries more than the limit.
    let restarted = build(3);
    let more: Vec<_> = (0..4)
        .map(|i| {
            restarted
                .seal(&email::<Transaction>(a, &format!("r{i}@example.com")))
                .unwrap()
        })
        .collect();
    let mut per_generation = BTreeMap::<u32, usize>::new();
    for s in sealed.iter().chain(&more) {
        *per_generation.entry(s.key_id()).or_default() += 1;
    }
    assert!(
        per_generation.values().all(|n| *n <= 3),
        "{per_generation:?}"
    );
    assert!(more[0].key_id() > 3);

    // Every envelope, of every generation, still opens in both.
    for custodian in [&c, &restarted] {
        for (i, s) in sealed.iter().enumerate() {
            opens_to(custodian, s, &format!("a{i}@example.com"));
        }
        for (i, s) in more.iter().enumerate() {
            opens_to(custodian, s, &format!("r{i}@example.com"));
        }
    }

    // A limit of one: a new generation for every seal.
    let one = build(1);
    let d = SubjectId::random();
    let ids: Vec<u32> = (0..5)
        .map(|_| {
            one.seal(&email::<Transaction>(d, "d@example.com"))
                .unwrap()
                .key_id()
        })
        .collect();
    assert_eq!(ids, [0, 1, 2, 3, 4]);
}

#[test]
fn default_limit_keeps_one_generation_across_reservation_blocks() {
    let store = Arc::new(MemoryKeyStore::new());
    let c = Custodian::builder()
        .key_store(store.clone())
        .build()
        .unwrap();
    let a = SubjectId::random();
    let info = email::<Transaction>(a, "ada@example.com");
    for _ in 0..2_500 {
        assert_eq!(c.seal(&info).unwrap().key_id(), 0);
    }
    let keys = live_keys(&store, a);
    assert_eq!(keys.len(), 1);
    // Uses are reserved in blocks and cover every seal made.
    assert!(keys[0].uses >= 2_500, "{}", keys[0].uses);
}

#[test]
fn two_custodians_sharing_a_store_roll_generations_together() {
    let (x, y) = sharing(|b| b.message_limit(2));
    let a = SubjectId::random();
    let mut sealed = Vec::new();
    for i in 0..12 {
        let c = if i % 3 == 0 { &y } else { &x };
        let text = format!("a{i}@example.com");
        sealed.push((c.seal(&email::<Transaction>(a, &text)).unwrap(), text));
    }
    let mut per_generation = BTreeMap::<u32, usize>::new();
    for (s, _) in &sealed {
        *per_generation.entry(s.key_id()).or_default() += 1;
    }
    assert!(
        per_generation.values().all(|n| *n <= 2),
        "{per_generation:?}"
    );
    for c in [&x, &y] {
        for (s, text) in &sealed {
            opens_to(c, s, text);
        }
    }
}

#[test]
fn an_erasure_by_another_custodian_takes_effect_after_revalidation() {
    let clock = Arc::new(FixedClock::new(Timestamp::from_unix_seconds(1_700_000_000)));
    let (here, there) = sharing(|b| b.clock(clock.clone()));
    let a = SubjectId::random();
    let sealed = here
        .seal(&email::<Transaction>(a, "ada@example.com"))
        .unwrap();
    opens_to(&here, &sealed, "ada@example.com"); // the key is now cached here
    there.erase(a).unwrap();
    // The erasing custodian refuses at once; this one once its cached entry
    // for the subject is older than the revalidation interval (30 s).
    assert!(matches!(there.open(&sealed), Err(Error::Erased { .. })));
    clock.advance_seconds(30);
    assert!(matches!(here.open(&sealed), Err(Error::Erased { .. })));
    assert!(matches!(
        here.seal(&email::<Transaction>(a, "ada@example.com")),
        Err(Error::Erased { .. })
    ));
    assert!(here.is_erased(a).unwrap());
}

/// The key bound is honoured below a second (A5: two custodians on one key
/// store): with 1 ms, the cached key still serves 999,999 ns after it was
/// read, and the erasure made by the other custodian is seen at 1 ms.
#[test]
fn a5_a_1_ms_key_bound_takes_effect_at_1_ms() {
    let t0 = Timestamp::from_unix_seconds(1_700_000_000);
    let clock = Arc::new(FixedClock::new(t0));
    let (here, there) = sharing(|b| {
        b.clock(clock.clone())
            .key_revalidate_after(Duration::from_millis(1))
    });
    let a = SubjectId::random();
    let sealed = here
        .seal(&email::<Transaction>(a, "ada@example.com"))
        .unwrap();
    opens_to(&here, &sealed, "ada@example.com");
    there.erase(a).unwrap();
    clock.set(Timestamp::from_unix_nanos(t0.unix_nanos() + 999_999));
    opens_to(&here, &sealed, "ada@example.com");
    clock.set(Timestamp::from_unix_nanos(t0.unix_nanos() + 1_000_000));
    assert!(matches!(here.open(&sealed), Err(Error::Erased { .. })));
}

/// The deprecated setter in whole seconds still works: 1 s is 1 s.
#[test]
#[allow(deprecated)]
fn the_key_bound_in_seconds_still_works() {
    let t0 = Timestamp::from_unix_seconds(1_700_000_000);
    let clock = Arc::new(FixedClock::new(t0));
    let (here, there) = sharing(|b| {
        b.clock(clock.clone())
            .key_revalidate_after(std::time::Duration::from_secs(1))
    });
    let a = SubjectId::random();
    let sealed = here
        .seal(&email::<Transaction>(a, "ada@example.com"))
        .unwrap();
    opens_to(&here, &sealed, "ada@example.com");
    there.erase(a).unwrap();
    clock.set(Timestamp::from_unix_nanos(t0.unix_nanos() + 999_999_999));
    opens_to(&here, &sealed, "ada@example.com");
    clock.advance_seconds(1);
    assert!(matches!(here.open(&sealed), Err(Error::Erased { .. })));
}

#[test]
fn with_no_revalidation_window_an_erasure_elsewhere_is_immediate() {
    let (here, there) = sharing(|b| b.key_revalidate_after(Duration::ZERO));
    let a = SubjectId::random();
    let sealed = here
        .seal(&email::<Transaction>(a, "ada@example.com"))
        .unwrap();
    opens_to(&here, &sealed, "ada@example.com");
    there.erase(a).unwrap();
    assert!(matches!(here.open(&sealed), Err(Error::Erased { .. })));
}

/// Records the reads and writes a key store is asked for; `one_step` says whether it
/// stores a new key with its reservation in one write (as the crate's
/// stores do) or takes the trait's default (two calls).
struct CountingStore {
    inner: MemoryKeyStore,
    one_step: bool,
    /// Whether it stores a key and its lookup notes as one write.
    noting: bool,
    writes: std::sync::Mutex<Vec<&'static str>>,
}

impl CountingStore {
    fn note(&self, what: &'static str) {
        self.writes.lock().unwrap().push(what);
    }
}

impl KeyStore for CountingStore {
    fn load(&self, s: SubjectId) -> Result<SubjectKeys, privacy_pledge::crypto::KeyStoreError> {
        self.note("load");
        self.inner.load(s)
    }
    fn insert(
        &self,
        s: SubjectId,
        k: StoredKey,
    ) -> Result<(), privacy_pledge::crypto::KeyStoreError> {
        self.note("insert");
        self.inner.insert(s, k)
    }
    fn keeps_uses_on_insert(&self) -> bool {
        self.one_step
    }
    fn insert_noting(
        &self,
        s: SubjectId,
        k: StoredKey,
        tokens: &[privacy_pledge::crypto::LookupRef],
    ) -> Result<bool, privacy_pledge::crypto::KeyStoreError> {
        if !self.noting {
            return Ok(false);
        }
        self.note("insert_noting");
        self.inner.insert_noting(s, k, tokens)
    }
    fn note_lookup_token(
        &self,
        s: SubjectId,
        t: privacy_pledge::crypto::LookupRef,
    ) -> Result<(), privacy_pledge::crypto::KeyStoreError> {
        self.note("note");
        self.inner.note_lookup_token(s, t)
    }
    fn reserve(
        &self,
        s: SubjectId,
        g: u32,
        n: u64,
    ) -> Result<u64, privacy_pledge::crypto::KeyStoreError> {
        self.note("reserve");
        self.inner.reserve(s, g, n)
    }
    fn rewrap(
        &self,
        s: SubjectId,
        g: u32,
        w: privacy_pledge::crypto::Wrapped,
    ) -> Result<(), privacy_pledge::crypto::KeyStoreError> {
        self.inner.rewrap(s, g, w)
    }
    fn destroy(
        &self,
        s: SubjectId,
        at: Timestamp,
    ) -> Result<privacy_pledge::crypto::Destroyed, privacy_pledge::crypto::KeyStoreError> {
        self.inner.destroy(s, at)
    }
    fn wrapped_under(
        &self,
        v: u32,
    ) -> Result<Vec<(SubjectId, u32)>, privacy_pledge::crypto::KeyStoreError> {
        self.inner.wrapped_under(v)
    }
}

/// A counting store (`one_step`, `noting`: see [`CountingStore`]) and two
/// custodians sharing it, as two processes of one host.
fn counted_pair(one_step: bool, noting: bool) -> (Arc<CountingStore>, Custodian, Custodian) {
    let store = Arc::new(CountingStore {
        inner: MemoryKeyStore::new(),
        one_step,
        noting,
        writes: Default::default(),
    });
    let keyring = Arc::new(Keyring::generate().unwrap());
    let build = || {
        Custodian::builder()
            .keyring(keyring.clone())
            .key_store(store.clone())
            .build()
            .unwrap()
    };
    let (a, b) = (build(), build());
    (store, a, b)
}

/// A new subject's first seal is one key-store read (the one that finds no
/// key: no second look before the insert) and one write on a store that
/// keeps the use count given on insert (the key and its first reservation
/// together), two on one that takes the default; either way the stored
/// count covers every seal made, and a second custodian sharing the store
/// (another process) reserves after it, never the same nonces.
#[test]
fn a_new_subjects_first_seal_stores_key_and_reservation_in_one_write() {
    for one_step in [true, false] {
        let (store, a, b) = counted_pair(one_step, false);
        let ada = SubjectId::random();
        let first = a
            .seal(&email::<Transaction>(ada, "ada@example.com"))
            .unwrap();
        let writes = store.writes.lock().unwrap().clone();
        let expected: &[&str] = if one_step {
            &["load", "insert"] // one write, the reservation in it
        } else {
            &["load", "insert", "reserve"]
        };
        assert_eq!(writes, expected, "one_step = {one_step}");
        let uses = live_keys(&store.inner, ada)[0].uses;
        assert!(uses >= 1, "the first seal is counted: {uses}");
        // The other custodian reserves after the first block.
        let second = b
            .seal(&email::<Transaction>(ada, "ada@example.com"))
            .unwrap();
        assert!(live_keys(&store.inner, ada)[0].uses >= 2 * uses);
        opens_to(&b, &first, "ada@example.com");
        opens_to(&a, &second, "ada@example.com");
    }
}

/// An id from `new_subject` is one no key store can hold a key of: its
/// first seal, and its first sealed record, create the key without the
/// read a `SubjectId::random()` id costs; the other custodian opens them
/// (it reads the stored key), and a later seal of the same subject uses
/// the reservation made with the key.
#[test]
fn a_drawn_subjects_first_seal_and_record_skip_the_key_store_read() {
    let (store, a, b) = counted_pair(true, true);
    let ada = a.new_subject().unwrap();
    let first = a
        .seal(&email::<Transaction>(ada, "ada@example.com"))
        .unwrap();
    let second = a
        .seal(&email::<Transaction>(ada, "ada@example.org"))
        .unwrap();
    assert_eq!(*store.writes.lock().unwrap(), ["insert"]);
    opens_to(&b, &first, "ada@example.com");
    opens_to(&b, &second, "ada@example.org");

    store.writes.lock().unwrap().clear();
    let grace = a.new_subject().unwrap();
    let row = a
        .seal_record(&Member {
            name: PersonalInfo::collect(grace, FullName::parse("Grace Hopper").unwrap()),
            email: email::<Transaction>(grace, "grace@example.com"),
        })
        .unwrap();
    assert_eq!(*store.writes.lock().unwrap(), ["insert_noting"]);
    assert_eq!(b.erase(grace).unwrap().lookup_tokens().len(), 1);
    assert!(matches!(b.open_record(&row), Err(Error::Erased { .. })));

    // The same with an id drawn elsewhere: the read comes first.
    store.writes.lock().unwrap().clear();
    a.seal(&email::<Transaction>(SubjectId::random(), "x@example.com"))
        .unwrap();
    assert_eq!(*store.writes.lock().unwrap(), ["load", "insert"]);
}

/// A5 (another process) and A1 (host code handing the id around): a drawn
/// id whose first key another custodian made meanwhile — the id passed to
/// it before this one sealed anything — is sealed under that stored key:
/// the insert is refused, the store read, and both envelopes open on
/// either side. Nothing relies on the shortcut.
#[test]
fn a5_a_drawn_id_keyed_elsewhere_first_seals_under_the_stored_key() {
    let (store, a, b) = counted_pair(true, true);
    let ada = a.new_subject().unwrap();
    let theirs = b
        .seal(&email::<Transaction>(ada, "ada@example.com"))
        .unwrap();
    store.writes.lock().unwrap().clear();
    let ours = a
        .seal(&email::<Transaction>(ada, "ada@example.org"))
        .unwrap();
    let writes = store.writes.lock().unwrap().clone();
    assert_eq!(writes[..2], ["insert", "load"], "{writes:?}");
    assert_eq!(live_keys(&store.inner, ada).len(), 1, "one generation");
    opens_to(&a, &theirs, "ada@example.com");
    opens_to(&b, &ours, "ada@example.org");
}

/// A5: a drawn id erased by another custodian before its first seal (the
/// host erased the sign-up it was making) is refused as erased: the
/// tombstone refuses the insert, and the read that follows finds it.
#[test]
fn a5_a_drawn_id_erased_elsewhere_before_its_first_seal_is_refused() {
    let (store, a, b) = counted_pair(true, true);
    let ada = a.new_subject().unwrap();
    b.erase(ada).unwrap();
    let sealed = a.seal(&email::<Transaction>(ada, "ada@example.com"));
    assert!(matches!(sealed, Err(Error::Erased { .. })), "{sealed:?}");
    assert!(matches!(
        store.inner.load(ada).unwrap(),
        SubjectKeys::Erased { .. }
    ));
}

/// A sealed record with a lookup field, for the next test.
#[derive(privacy_pledge::PersonalRecord)]
struct Member {
    name: PersonalInfo<FullName, Transaction>,
    #[pledge(lookup)]
    email: PersonalInfo<EmailAddress, Transaction>,
}

/// A new subject's first sealed record stores its key and notes its lookup
/// token in one write on a store that can (the crate's stores); a later
/// record of the same subject notes its token on its own; on a store that
/// cannot, the key and the note are written one by one. Either way the
/// erasure receipt lists every token, and nothing is noted twice.
#[test]
fn a_new_subjects_first_record_stores_its_key_and_lookup_note_in_one_write() {
    for noting in [true, false] {
        let store = Arc::new(CountingStore {
            inner: MemoryKeyStore::new(),
            one_step: true,
            noting,
            writes: Default::default(),
        });
        let custodian = Custodian::builder()
            .keyring(Keyring::generate().unwrap())
            .key_store(store.clone())
            .build()
            .unwrap();
        let ada = SubjectId::random();
        let member = |address: &str| Member {
            name: PersonalInfo::collect(ada, FullName::parse("Ada Lovelace").unwrap()),
            email: email::<Transaction>(ada, address),
        };
        let first = custodian.seal_record(&member("ada@example.com")).unwrap();
        let writes = store.writes.lock().unwrap().clone();
        // Two reads for an id drawn elsewhere: the record's check that the
        // subject is not erased (a tombstone another custodian wrote), and
        // the read before its first key is made. (An id the custodian drew
        // itself needs neither: `a_drawn_subjects_first_seal_…`.)
        let expected: &[&str] = if noting {
            &["load", "load", "insert_noting"]
        } else {
            &["load", "load", "insert", "note"]
        };
        assert_eq!(writes, expected, "noting = {noting}");
        // The same token again: already noted, no write.
        custodian.seal_record(&member("ada@example.com")).unwrap();
        assert_eq!(store.writes.lock().unwrap().len(), expected.len());
        // Another email: the key exists, the note is its own write.
        let second = custodian.seal_record(&member("ada@lovelace.org")).unwrap();
        assert_eq!(store.writes.lock().unwrap().last(), Some(&"note"));
        let receipt = custodian.erase(ada).unwrap();
        let mut listed = receipt.lookup_tokens().to_vec();
        listed.sort_by_key(|t| t.token);
        let mut made = vec![first.email_lookup.to_ref(), second.email_lookup.to_ref()];
        made.sort_by_key(|t| t.token);
        assert_eq!(listed, made, "noting = {noting}");
    }
}

/// A5: two processes on one key store, no freshness anchor. One caches a
/// subject's key; its clock then steps back an hour (an NTP step, a VM
/// resumed from a snapshot); the other erases the subject. Ten minutes
/// later (the key bound is 30 s) the first must not open the subject's
/// envelope: a clock that went back makes a cached key stale, not fresh
/// until the clock passes its old reading.
#[test]
fn a5_a_clock_stepped_back_does_not_keep_an_erased_subjects_key() {
    let t0 = Timestamp::from_unix_seconds(1_700_000_000);
    let (here_clock, there_clock) = (Arc::new(FixedClock::new(t0)), Arc::new(FixedClock::new(t0)));
    let store = Arc::new(MemoryKeyStore::new());
    let keyring = Arc::new(Keyring::generate().unwrap());
    let build = |clock: &Arc<FixedClock>| {
        Custodian::builder()
            .keyring(keyring.clone())
            .key_store(store.clone())
            .clock(clock.clone())
            .build()
            .unwrap()
    };
    let (here, there) = (build(&here_clock), build(&there_clock));
    let ada = SubjectId::random();
    let sealed = here.seal(&email(ada, "ada@example.com")).unwrap();
    opens_to(&here, &sealed, "ada@example.com");

    here_clock.set(Timestamp::from_unix_seconds(1_700_000_000 - 3_600));
    there.erase(ada).unwrap();
    here_clock.advance_seconds(600);
    there_clock.advance_seconds(600);
    assert!(matches!(here.open(&sealed), Err(Error::Erased { .. })));
}

/// A5 (and the host trusting the receipt): one process made a subject's
/// lookup token and pseudonym; another erases the subject, and the host
/// removes what the receipt lists. Past the key bound the first process
/// hands out neither again — a pair it noted before is checked again once
/// the bound has passed — so the erased subject cannot be written back
/// into the host's index or analysis data.
#[test]
fn a5_tokens_of_a_subject_erased_elsewhere_are_refused_past_the_bound() {
    let clock = Arc::new(FixedClock::new(Timestamp::from_unix_seconds(1_700_000_000)));
    let (here, there) = sharing(|b| b.clock(clock.clone()));
    let ada = SubjectId::random();
    let info: PersonalInfo<EmailAddress, Transaction> = email(ada, "ada@example.com");
    let token = here.lookup_token(&info).unwrap();
    let pseudonym = here.pseudonym(&info).unwrap();
    // Within the bound the same pair costs no second look at the store.
    assert_eq!(here.lookup_token(&info).unwrap(), token);

    let receipt = there.erase(ada).unwrap();
    assert_eq!(receipt.lookup_tokens(), &[token.to_ref()]);
    assert_eq!(receipt.pseudonyms(), &[pseudonym.to_ref()]);
    clock.advance_seconds(600);
    assert!(matches!(
        here.lookup_token(&info),
        Err(Error::Erased { .. })
    ));
    assert!(matches!(here.pseudonym(&info), Err(Error::Erased { .. })));
}
