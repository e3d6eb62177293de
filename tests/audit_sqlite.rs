//! The audit trail on a real SQLite file: tampering with the stored rows is
//! detected at the right position, a failing sink stops exactly the
//! operations whose events it failed to store, and no event carries a
//! personal value.

#[path = "common/recipients.rs"]
mod recipients;
use recipients::Stripe;

#[path = "../examples/support/mod.rs"]
mod support;

#[path = "common/examples.rs"]
mod examples;
#[path = "common/legacy_sqlite.rs"]
mod legacy;

use std::cell::Cell;
use std::collections::BTreeSet;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use privacy_pledge::audit::{
    read_jsonl, verify, Action, AuditEvent, AuditKey, AuditSink, ChainedAuditLog, Checkpoint,
    FlushPolicy, JsonLinesSink, MemoryAuditLog, Outcome, Tamper, VerifyError,
};
use privacy_pledge::country::Country;
use privacy_pledge::crypto::{KeyStore, Keyring, MemoryKeyringStore, SubjectKeys};
use privacy_pledge::data::{
    Amount, Date, EmailAddress, FullName, PaymentToken, PhoneNumber, PostalAddress, PurchaseRecord,
};
use privacy_pledge::purpose::{Promotion, ServiceNotice, Support, Transaction};
use privacy_pledge::recipient::{Affiliate, Processor, Recipient};
use privacy_pledge::time::{FixedClock, Timestamp};
use privacy_pledge::transfer::{Mechanism, Transfer};
use privacy_pledge::{Custodian, Error, PersonalInfo, SubjectId};

use legacy::{key_store, CheckError, Db, SqliteAuditLog};

/// A directory under the system temp dir, unique to one test, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(test: &str) -> TempDir {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "privacy-pledge-{test}-{}-{}-{}",
            std::process::id(),
            Timestamp::now().unix_nanos(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

struct Mailer;
impl Recipient for Mailer {
    type Role = Processor;
    fn name(&self) -> &str {
        "mail delivery"
    }
}

struct Subsidiary;
impl Recipient for Subsidiary {
    type Role = Affiliate;
    fn name(&self) -> &str {
        "iBeesoft EU subsidiary"
    }
}

/// A shop on SQLite: keys and audit trail in the database.
struct Shop {
    db: Db,
    keyring: Arc<Keyring>,
    log: Arc<ChainedAuditLog<SqliteAuditLog>>,
    custodian: Custodian,
}

fn open_shop(db_path: &std::path::Path) -> Shop {
    let keyring = Arc::new(Keyring::from_master([5u8; 32], [1]).unwrap());
    let db = Db::open(db_path).unwrap();
    let log = Arc::new(legacy::open_chain(&db, keyring.audit_key(), None).unwrap());
    let custodian = Custodian::builder()
        .keyring(keyring.clone())
        .key_store(key_store(&db))
        .audit(log.clone())
        .build()
        .unwrap();
    Shop {
        db,
        keyring,
        log,
        custodian,
    }
}

/// A compact checkout: three customers order, are charged and notified;
/// two opt in to offers and get one; the last is erased.
fn checkout(shop: &Shop) -> Result<Checkpoint, Error> {
    let c = &shop.custodian;
    let mut subjects = Vec::new();
    for (i, (name, email)) in [
        ("Ada Lovelace", "ada@example.com"),
        ("Grace Hopper", "grace@example.org"),
        ("Alan Turing", "alan@example.net"),
    ]
    .into_iter()
    .enumerate()
    {
        let subject = SubjectId::try_random()?;
        let name: PersonalInfo<FullName, Transaction> =
            c.collect(subject, FullName::parse(name)?)?;
        let email: PersonalInfo<EmailAddress, Transaction> =
            c.collect(subject, EmailAddress::parse(email)?)?;
        c.seal(&name)?;
        c.seal(&email)?;
        c.disclose(&name, &Stripe, |n| n.to_string().len())?;
        let notice: PersonalInfo<EmailAddress, ServiceNotice> = c.repurpose(email.clone())?;
        c.disclose(&notice, &Mailer, |_| ())?;
        if i != 1 {
            c.consents().grant::<Promotion>(subject)?;
            let proof = c.consent_proof::<Promotion>(subject)?;
            let promo: PersonalInfo<EmailAddress, Promotion> =
                c.repurpose_with_consent(email, &proof)?;
            c.disclose(&promo, &Mailer, |_| ())?;
        }
        subjects.push(subject);
    }
    c.erase(subjects[2])?;
    Ok(shop.log.checkpoint())
}

/// A database with a finished checkout, and its trusted head.
fn checked_out(dir: &TempDir) -> (Shop, Checkpoint) {
    let shop = open_shop(&dir.path("shop.db"));
    let head = checkout(&shop).unwrap();
    // One event per operation: 3 × 7 per customer, 2 × 3 for the offers, 1 erasure.
    assert_eq!(head.seq(), 28);
    (shop, head)
}

fn sql(db: &Db, statements: &str) {
    db.with(|c| c.execute_batch(statements)).unwrap();
}

fn verdict(shop: &Shop, trusted: Option<&Checkpoint>) -> Result<Checkpoint, VerifyError> {
    match legacy::verify_audit_log(&shop.db, &shop.keyring.audit_key(), trusted) {
        Ok(head) => Ok(head),
        Err(CheckError::Broken(e)) => Err(e),
        Err(CheckError::Storage(e)) => panic!("storage: {e}"),
    }
}

fn broken(index: usize, expected_seq: u64, reason: Tamper) -> Result<Checkpoint, VerifyError> {
    Err(VerifyError {
        index,
        expected_seq,
        reason,
    })
}

#[test]
fn intact_trail_verifies_and_matches_the_live_head() {
    let dir = TempDir::new("intact");
    let (shop, head) = checked_out(&dir);
    assert_eq!(verdict(&shop, Some(&head)), Ok(head));
    // The query columns agree with the events.
    let rows = legacy::load_audit_log(&shop.db).unwrap();
    assert_eq!(rows.len() as u64, head.seq());
    assert!(rows.iter().all(|r| r.columns_match));
    // A custodian reopened on the same file continues the same chain.
    drop(shop);
    let shop = open_shop(&dir.path("shop.db"));
    assert_eq!(shop.log.checkpoint(), head);
    let subject = SubjectId::from(77);
    shop.custodian
        .consents()
        .grant::<Promotion>(subject)
        .unwrap();
    let next = verdict(&shop, Some(&head)).unwrap();
    assert_eq!(next.seq(), head.seq() + 1);
}

#[test]
fn edited_event_is_modified_at_its_position() {
    let dir = TempDir::new("edit");
    let (shop, head) = checked_out(&dir);
    // Change which purpose entry 5 was for, inside the authenticated JSON.
    sql(
        &shop.db,
        "UPDATE audit_log SET event = json_set(event, '$.purpose', 'Support') WHERE seq = 5",
    );
    assert_eq!(verdict(&shop, Some(&head)), broken(4, 5, Tamper::Modified));
    assert_eq!(verdict(&shop, None), broken(4, 5, Tamper::Modified));
}

#[test]
fn edited_query_column_is_modified_at_its_position() {
    let dir = TempDir::new("column");
    let (shop, head) = checked_out(&dir);
    // Hide an entry from per-subject queries by editing only the column.
    sql(
        &shop.db,
        "UPDATE audit_log SET subject = '00000000000000000000000000000000' WHERE seq = 12",
    );
    assert_eq!(
        verdict(&shop, Some(&head)),
        broken(11, 12, Tamper::Modified)
    );
}

#[test]
fn unparseable_event_is_modified_at_its_position() {
    let dir = TempDir::new("garbage");
    let (shop, head) = checked_out(&dir);
    sql(
        &shop.db,
        "UPDATE audit_log SET event = '{\"v\":1' WHERE seq = 3",
    );
    assert_eq!(verdict(&shop, Some(&head)), broken(2, 3, Tamper::Modified));
}

#[test]
fn deleted_middle_row_is_reported_where_it_was() {
    let dir = TempDir::new("delete");
    let (shop, head) = checked_out(&dir);
    sql(&shop.db, "DELETE FROM audit_log WHERE seq = 10");
    assert_eq!(verdict(&shop, Some(&head)), broken(9, 10, Tamper::Deleted));
}

#[test]
fn deleted_first_row_is_reported() {
    let dir = TempDir::new("delete-first");
    let (shop, head) = checked_out(&dir);
    sql(&shop.db, "DELETE FROM audit_log WHERE seq = 1");
    assert_eq!(verdict(&shop, Some(&head)), broken(0, 1, Tamper::Deleted));
}

#[test]
fn swapped_rows_are_reordered() {
    let dir = TempDir::new("swap");
    let (shop, head) = checked_out(&dir);
    // Exchange the append positions of entries 7 and 8.
    sql(
        &shop.db,
        "UPDATE audit_log SET id = -1 WHERE seq = 7;
         UPDATE audit_log SET id = 7 WHERE seq = 8;
         UPDATE audit_log SET id = 8 WHERE seq = 7;",
    );
    let rows = legacy::load_audit_log(&shop.db).unwrap();
    assert_eq!(rows[6].event.as_ref().unwrap().seq(), 8);
    assert_eq!(verdict(&shop, Some(&head)), broken(6, 7, Tamper::Reordered));
}

/// Moves every row from append position `from` on one place up, leaving a
/// gap at `from` for a row to be slipped in.
fn open_gap(db: &Db, from: i64) {
    sql(
        db,
        &format!(
            "UPDATE audit_log SET id = -id - 1 WHERE id >= {from};
             UPDATE audit_log SET id = -id WHERE id < 0;"
        ),
    );
}

#[test]
fn copied_row_slipped_in_is_replayed() {
    let dir = TempDir::new("copy");
    let (shop, head) = checked_out(&dir);
    open_gap(&shop.db, 13);
    sql(
        &shop.db,
        "INSERT INTO audit_log (id, seq, time, subject, action, event)
         SELECT 13, seq, time, subject, action, event FROM audit_log WHERE seq = 3",
    );
    assert_eq!(
        verdict(&shop, Some(&head)),
        broken(12, 13, Tamper::Replayed)
    );
}

#[test]
fn copied_row_appended_is_replayed() {
    let dir = TempDir::new("append-copy");
    let (shop, head) = checked_out(&dir);
    sql(
        &shop.db,
        "INSERT INTO audit_log (seq, time, subject, action, event)
         SELECT seq, time, subject, action, event FROM audit_log WHERE seq = 2",
    );
    let n = head.seq() as usize;
    assert_eq!(
        verdict(&shop, Some(&head)),
        broken(n, head.seq() + 1, Tamper::Replayed)
    );
}

#[test]
fn forged_row_slipped_in_is_inserted() {
    let dir = TempDir::new("forge");
    let (shop, head) = checked_out(&dir);
    // A plausible entry: a copy of entry 12 with another time, so its MAC no
    // longer fits, placed right after entry 12.
    open_gap(&shop.db, 13);
    sql(
        &shop.db,
        "INSERT INTO audit_log (id, seq, time, subject, action, event)
         SELECT 13, seq, time + 1, subject, action,
                json_set(event, '$.time', json_extract(event, '$.time') + 1)
         FROM audit_log WHERE seq = 12",
    );
    assert_eq!(
        verdict(&shop, Some(&head)),
        broken(12, 13, Tamper::Inserted)
    );
}

#[test]
fn cut_tail_is_truncated_against_the_trusted_head() {
    let dir = TempDir::new("truncate");
    let (shop, head) = checked_out(&dir);
    let keep = head.seq() - 3;
    sql(
        &shop.db,
        &format!("DELETE FROM audit_log WHERE seq > {keep}"),
    );
    assert_eq!(
        verdict(&shop, Some(&head)),
        broken(keep as usize, keep + 1, Tamper::Truncated)
    );
    // Without a checkpoint kept elsewhere, a cut tail looks like a shorter
    // trail: that is why the head must be kept out of the writer's reach.
    assert_eq!(verdict(&shop, None).map(|h| h.seq()), Ok(keep));
}

#[test]
fn rewritten_chain_misses_the_trusted_head() {
    let dir = TempDir::new("rewrite");
    let (shop, head) = checked_out(&dir);
    // Someone holding a different key rebuilds the whole trail: every MAC is
    // consistent under their key, none under ours.
    let forged = ChainedAuditLog::new(AuditKey::from_bytes([1; 32]), MemoryAuditLog::new());
    let rows = legacy::load_audit_log(&shop.db).unwrap();
    let events: Vec<AuditEvent> = rows.into_iter().map(|r| r.event.unwrap()).collect();
    forged.record_batch(&events).unwrap();
    let shop_key = shop.keyring.audit_key();
    assert_eq!(
        verify(&forged.inner().events(), &shop_key, Some(&head)),
        broken(0, 1, Tamper::Modified)
    );
}

#[test]
fn tampered_trail_is_not_resumed() {
    let dir = TempDir::new("resume");
    let (shop, _) = checked_out(&dir);
    sql(&shop.db, "DELETE FROM audit_log WHERE seq = 4");
    let err = legacy::open_chain(&shop.db, shop.keyring.audit_key(), None).unwrap_err();
    assert!(
        matches!(
            err,
            CheckError::Broken(VerifyError {
                index: 3,
                reason: Tamper::Deleted,
                ..
            })
        ),
        "{err}"
    );
}

// ---------------------------------------------------------------------------
// A sink that fails part-way

/// The shop with an SQLite trigger that makes inserting the entry with
/// sequence number `fail_at` fail once, as a full disk would.
struct Flaky {
    shop: Shop,
    failed: Cell<bool>,
    ok_ops: Cell<u64>,
}

impl Flaky {
    fn new(dir: &TempDir, fail_at: u64) -> Flaky {
        let shop = open_shop(&dir.path(&format!("flaky-{fail_at}.db")));
        sql(
            &shop.db,
            &format!(
                "CREATE TRIGGER disk_full BEFORE INSERT ON audit_log WHEN NEW.seq = {fail_at}
                 BEGIN SELECT RAISE(ABORT, 'disk full'); END;"
            ),
        );
        Flaky {
            shop,
            failed: Cell::new(false),
            ok_ops: Cell::new(0),
        }
    }

    fn stored(&self) -> Vec<AuditEvent> {
        legacy::load_audit_log(&self.shop.db)
            .unwrap()
            .into_iter()
            .map(|r| r.event.unwrap())
            .collect()
    }

    /// Runs one audited operation and checks the fail-closed contract: `Ok`
    /// means its event (and only it) is stored; `Err(Audit)` means nothing
    /// was stored. After the first failure the disk "recovers".
    fn op<T>(&self, action: Action, f: impl FnOnce() -> Result<T, Error>) -> Option<T> {
        let before = self.stored().len();
        let result = f();
        let after = self.stored();
        match result {
            Ok(v) => {
                assert_eq!(after.len(), before + 1, "{action:?} returned Ok");
                let last = after.last().unwrap();
                assert_eq!((last.action(), last.outcome()), (action, Outcome::Allowed));
                self.ok_ops.set(self.ok_ops.get() + 1);
                Some(v)
            }
            Err(Error::Audit(e)) => {
                assert!(e.message().contains("disk full"), "{e}");
                assert_eq!(after.len(), before, "{action:?} failed but left an event");
                assert!(!self.failed.replace(true), "only one insert fails");
                sql(&self.shop.db, "DROP TRIGGER disk_full");
                None
            }
            Err(e) => panic!("{action:?}: unexpected {e}"),
        }
    }
}

/// One subject through every kind of audited operation, checking after each
/// failed one that it had no effect.
fn flaky_run(fail_at: u64, dir: &TempDir) -> Flaky {
    let w = Flaky::new(dir, fail_at);
    let c = &w.shop.custodian;
    let keys = key_store(&w.shop.db);
    let subject = SubjectId::from(0xada);

    let email: Option<PersonalInfo<EmailAddress, Transaction>> = w.op(Action::Collect, || {
        c.collect(subject, EmailAddress::parse("ada@example.com")?)
    });
    // If collection failed the shop has nothing; build the value directly to
    // keep exercising the other operations.
    let email = email.unwrap_or_else(|| {
        PersonalInfo::collect(subject, EmailAddress::parse("ada@example.com").unwrap())
    });

    let ran = Cell::new(false);
    if w.op(Action::Access, || c.access(&email, |_| ran.set(true)))
        .is_none()
    {
        assert!(!ran.get(), "access ran its closure after the sink failed");
    }
    let ran = Cell::new(false);
    if w.op(Action::Disclose, || {
        c.disclose(&email, &Stripe, |_| ran.set(true))
    })
    .is_none()
    {
        assert!(
            !ran.get(),
            "disclose reached the recipient after the sink failed"
        );
    }
    let ran = Cell::new(false);
    if w.op(Action::Disclose, || {
        c.disclose(&email, &Subsidiary, |_| ran.set(true))
    })
    .is_none()
    {
        assert!(!ran.get());
    }

    let sealed = w.op(Action::Seal, || c.seal(&email));
    if sealed.is_none() {
        // Nothing was sealed: not even the subject's first key was made.
        assert_eq!(keys.load(subject).unwrap(), SubjectKeys::Absent);
    }
    let sealed = sealed
        .or_else(|| w.op(Action::Seal, || c.seal(&email)))
        .expect("seal after recovery");
    w.op(Action::Open, || c.open(&sealed));

    let _: Option<PersonalInfo<EmailAddress, Support>> =
        w.op(Action::Repurpose, || c.repurpose(email.clone()));

    if w.op(Action::ConsentGranted, || {
        c.consents().grant::<Promotion>(subject)
    })
    .is_none()
    {
        assert!(!c.consents().is_granted::<Promotion>(subject));
        // Ask again, as the shop would.
        w.op(Action::ConsentGranted, || {
            c.consents().grant::<Promotion>(subject)
        })
        .expect("grant after recovery");
    }
    let proof = c.consent_proof::<Promotion>(subject).unwrap();
    w.op(Action::Repurpose, || {
        c.repurpose_with_consent(email.clone(), &proof)
    });
    if w.op(Action::ConsentWithdrawn, || {
        c.consents().withdraw::<Promotion>(subject)
    })
    .is_none()
    {
        assert!(c.consents().is_granted::<Promotion>(subject));
    }

    let erased = w.op(Action::Erase, || c.erase(subject));
    if erased.is_none() {
        // Keys intact, subject not erased, data still opens.
        assert!(matches!(keys.load(subject).unwrap(), SubjectKeys::Live(_)));
        assert!(!c.is_erased(subject).unwrap());
        w.op(Action::Open, || c.open(&sealed))
            .expect("the subject's data still opens");
    } else {
        assert!(matches!(
            keys.load(subject).unwrap(),
            SubjectKeys::Erased { .. }
        ));
        assert!(matches!(c.open(&sealed), Err(Error::Erased { .. })));
    }
    w
}

#[test]
fn failing_sink_stops_exactly_the_operations_it_failed_to_record() {
    let dir = TempDir::new("flaky");
    // How many events the run records when nothing fails.
    let clean = flaky_run(u64::MAX, &dir);
    assert!(!clean.failed.get());
    let total = clean.ok_ops.get();
    assert!(total >= 11);
    for fail_at in 1..=total {
        let w = flaky_run(fail_at, &dir);
        assert!(w.failed.get(), "the insert of entry {fail_at} failed");
        let stored = w.stored();
        // Every stored event belongs to an operation that returned Ok, the
        // chain has no gap where the failure was, and its head is the log's.
        let allowed = stored
            .iter()
            .filter(|e| e.outcome() == Outcome::Allowed)
            .count() as u64;
        assert_eq!(allowed, w.ok_ops.get());
        let key = w.shop.keyring.audit_key();
        assert_eq!(verify(&stored, &key, None), Ok(w.shop.log.checkpoint()));
    }
}

#[test]
fn batch_is_stored_whole_or_not_at_all() {
    let dir = TempDir::new("batch");
    let db = Db::open(&dir.path("batch.db")).unwrap();
    let memory = Arc::new(MemoryAuditLog::new());
    let custodian = Custodian::builder().audit(memory.clone()).build().unwrap();
    for s in 1..=3 {
        custodian
            .consents()
            .grant::<Promotion>(SubjectId::from(s))
            .unwrap();
    }
    let events = memory.events();
    let key = AuditKey::from_bytes([2; 32]);
    let log = ChainedAuditLog::new(key.clone(), SqliteAuditLog::new(db.clone()));
    sql(
        &db,
        "CREATE TRIGGER disk_full BEFORE INSERT ON audit_log WHEN NEW.seq = 2
         BEGIN SELECT RAISE(ABORT, 'disk full'); END;",
    );
    assert!(log.record_batch(&events).is_err());
    assert!(legacy::load_audit_log(&db).unwrap().is_empty());
    assert_eq!(log.checkpoint(), Checkpoint::GENESIS);
    sql(&db, "DROP TRIGGER disk_full");
    log.record_batch(&events).unwrap();
    let head = log.checkpoint();
    assert_eq!(head.seq(), 3);
    assert_eq!(
        legacy::verify_audit_log(&db, &key, Some(&head)).unwrap(),
        head
    );
}

// ---------------------------------------------------------------------------
// No personal value in any event

#[test]
fn no_event_carries_a_personal_value() {
    let log = Arc::new(ChainedAuditLog::in_memory(AuditKey::from_bytes([7; 32])));
    let keyring = Arc::new(Keyring::generate().unwrap());
    let custodian = Custodian::builder()
        .keyring(keyring.clone())
        .keyring_store(MemoryKeyringStore::new(&keyring))
        .audit(log.clone())
        .audit_key(AuditKey::from_bytes([7; 32]))
        .clock(FixedClock::new(Timestamp::from_unix_seconds(1_530_316_800)))
        .facilities([Country::parse("US").unwrap(), Country::parse("DE").unwrap()])
        .build()
        .unwrap();
    let c = &custodian;
    let subject = SubjectId::from(0x5eed);
    let values = (
        FullName::parse("Ada Lovelace").unwrap(),
        EmailAddress::parse("Ada.Lovelace@Example.com").unwrap(),
        PostalAddress::parse("221B Baker Street\nLondon NW1 6XE\nGB").unwrap(),
        PhoneNumber::parse("+44 20 7946 0958").unwrap(),
        PurchaseRecord::new(
            "ORD-98765",
            "Data Recovery Pro",
            Amount::new(6_995, "USD").unwrap(),
            Date::new(2018, 6, 30).unwrap(),
        )
        .unwrap(),
        PaymentToken::parse("tok_1NX2bq2eZvKYlo2C").unwrap(),
    );

    let name: PersonalInfo<FullName, Transaction> = c.collect(subject, values.0).unwrap();
    let email: PersonalInfo<EmailAddress, Transaction> = c.collect(subject, values.1).unwrap();
    let address: PersonalInfo<PostalAddress, Transaction> = c.collect(subject, values.2).unwrap();
    let phone: PersonalInfo<PhoneNumber, Transaction> = c.collect(subject, values.3).unwrap();
    let order: PersonalInfo<PurchaseRecord, Transaction> = c.collect(subject, values.4).unwrap();
    let token: PersonalInfo<PaymentToken, Transaction> = c.collect(subject, values.5).unwrap();

    c.access(&name, |_| ()).unwrap();
    c.access(&address, |_| ()).unwrap();
    c.disclose(&order, &Stripe, |_| ()).unwrap();
    c.disclose(&token, &Stripe, |_| ()).unwrap();
    c.disclose(&phone, &Subsidiary, |_| ()).unwrap();
    let to_us = Transfer::new(Country::parse("DE").unwrap(), Country::parse("US").unwrap());
    c.transfer(&address, &to_us.under(Mechanism::DataPrivacyFramework))
        .unwrap();
    assert!(c.transfer(&address, &to_us).is_err(), "no mechanism named");
    let sealed = [
        c.seal(&name).unwrap().to_text(),
        c.seal(&address).unwrap().to_text(),
    ];
    let sealed_email = c.seal(&email).unwrap();
    c.open(&sealed_email).unwrap();
    let _notice: PersonalInfo<EmailAddress, ServiceNotice> = c.repurpose(email.clone()).unwrap();
    c.consents().grant::<Promotion>(subject).unwrap();
    let proof = c.consent_proof::<Promotion>(subject).unwrap();
    let promo: PersonalInfo<EmailAddress, Promotion> =
        c.repurpose_with_consent(email.clone(), &proof).unwrap();
    c.disclose(&promo, &Mailer, |_| ()).unwrap();
    c.consents().withdraw::<Promotion>(subject).unwrap();
    // The host's log is checkpointed by the host: signed into a store
    // outside the trail's storage, which the custodians verify against.
    use privacy_pledge::audit::CheckpointStore;
    let outside = privacy_pledge::audit::MemoryCheckpointStore::new();
    let signer = keyring.checkpoint_signer().unwrap();
    let checkpoint = || {
        outside
            .save(&signer.sign(log.stream().unwrap(), log.checkpoint(), Timestamp::now()))
            .unwrap()
    };
    checkpoint();
    let c = &Custodian::builder()
        .keyring(keyring.clone())
        .keyring_store(MemoryKeyringStore::new(&keyring))
        .audit(log.clone())
        .audit_key(AuditKey::from_bytes([7; 32]))
        .checkpoint_store(outside.clone())
        .build()
        .unwrap();
    let trail = c.verify_trail(log.inner().events()).unwrap();
    assert!(trail.is_fully_vouched());
    let report = c.subject_report(subject, &[&sealed_email], &trail).unwrap();
    assert_eq!(report.records().len(), 1);
    c.erase(subject).unwrap();
    c.rotate_after_erasures().unwrap();
    let refused = c.open(&sealed_email).unwrap_err();
    // A second custodian on the same chain rebuilds its consents from it.
    checkpoint();
    let restarted = Custodian::builder()
        .audit(log.clone())
        .audit_key(AuditKey::from_bytes([7; 32]))
        .checkpoint_store(outside.clone())
        .checkpoint_key(signer.public_key())
        .build()
        .unwrap();
    let trail = restarted.verify_trail(log.inner().events()).unwrap();
    restarted.consents().restore(&trail).unwrap();
    // A custodian whose consents are anchored compacts the anchor.
    let anchored = Custodian::builder()
        .keyring(keyring.clone())
        .audit(log.clone())
        .audit_key(AuditKey::from_bytes([7; 32]))
        .consent_store(privacy_pledge::consent::MemoryConsentStore::new())
        .freshness_anchor(privacy_pledge::freshness::MemoryAnchorStore::new())
        .build()
        .unwrap();
    anchored
        .consents()
        .grant::<Promotion>(SubjectId::from(0x5eee))
        .unwrap();
    anchored.compact_anchor().unwrap();

    let events = log.inner().events();
    let seen: BTreeSet<u8> = events.iter().map(|e| e.action() as u8).collect();
    for action in Action::ALL {
        assert!(seen.contains(&(action as u8)), "{action:?} was not driven");
    }
    assert!(events.iter().any(|e| e.outcome() == Outcome::Denied));

    let mut text = String::new();
    for e in &events {
        text.push_str(&serde_json::to_string(e).unwrap());
        text.push_str(&format!("{e:?}"));
    }
    text.push_str(&refused.to_string());
    text.push_str(&format!("{refused:?}"));
    let lower = text.to_lowercase();
    // Needles that cannot occur by chance in hex MACs, ids or numbers.
    for needle in [
        "lovelace",
        "ada.",
        "ada@",
        "example.com",
        "221b",
        "baker",
        "london",
        "nw1 ",
        "+44",
        "2079460958",
        "ord-98765",
        "data recovery",
        "tok_",
        "1nx2bq",
    ] {
        assert!(
            !lower.contains(needle),
            "{needle:?} appears in the audit trail"
        );
    }
    // The sealed forms are base64 envelopes, not the values either.
    for s in sealed {
        assert!(!s.to_lowercase().contains("lovelace") && !s.to_lowercase().contains("baker"));
    }
}

// ---------------------------------------------------------------------------
// JSON lines

fn jsonl_trail(dir: &TempDir, policy: FlushPolicy) -> (PathBuf, AuditKey, Checkpoint) {
    let path = dir.path("audit.jsonl");
    let file = std::fs::File::create(&path).unwrap();
    let key = AuditKey::from_bytes([9; 32]);
    let log = Arc::new(ChainedAuditLog::new(
        key.clone(),
        JsonLinesSink::with_policy(std::io::BufWriter::new(file), policy),
    ));
    let custodian = Custodian::builder().audit(log.clone()).build().unwrap();
    let subject = SubjectId::from(1);
    let email: PersonalInfo<EmailAddress, Transaction> = custodian
        .collect(subject, EmailAddress::parse("ada@example.com").unwrap())
        .unwrap();
    for _ in 0..5 {
        custodian.access(&email, |e| e.domain().len()).unwrap();
        custodian.disclose(&email, &Stripe, |_| ()).unwrap();
    }
    custodian.erase(subject).unwrap();
    log.flush().unwrap();
    (path, key, log.checkpoint())
}

fn read(path: &std::path::Path) -> Vec<AuditEvent> {
    read_jsonl(std::io::BufReader::new(std::fs::File::open(path).unwrap())).unwrap()
}

#[test]
fn jsonl_file_round_trips_and_verifies() {
    let dir = TempDir::new("jsonl");
    for policy in [FlushPolicy::OnRequest, FlushPolicy::EveryLine] {
        let (path, key, head) = jsonl_trail(&dir, policy);
        let events = read(&path);
        assert_eq!(events.len(), 12);
        assert_eq!(verify(&events, &key, Some(&head)), Ok(head));
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 12);
        assert!(!text.contains("ada@") && !text.contains("example.com"));
    }
}

#[test]
fn every_line_policy_has_the_line_on_disk_when_record_returns() {
    let dir = TempDir::new("jsonl-eager");
    let path = dir.path("audit.jsonl");
    let file = std::fs::File::create(&path).unwrap();
    let sink = JsonLinesSink::with_policy(std::io::BufWriter::new(file), FlushPolicy::EveryLine);
    let log = ChainedAuditLog::new(AuditKey::from_bytes([9; 32]), sink);
    let custodian = Custodian::builder().audit(Arc::new(log)).build().unwrap();
    custodian
        .consents()
        .grant::<Promotion>(SubjectId::from(3))
        .unwrap();
    // Not flushed explicitly, not dropped: already readable.
    assert_eq!(read(&path).len(), 1);
}

#[test]
fn tampered_jsonl_file_is_reported_at_the_edited_line() {
    let dir = TempDir::new("jsonl-tamper");
    let (path, key, head) = jsonl_trail(&dir, FlushPolicy::OnRequest);
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();

    let write = |lines: &[String]| {
        let mut f = std::fs::File::create(&path).unwrap();
        for l in lines {
            writeln!(f, "{l}").unwrap();
        }
    };
    let owned = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();

    // Edit: an access turned into a disclosure's rule.
    let mut edited = owned(&lines);
    edited[3] = edited[3].replacen("\"rule\":\"R2\"", "\"rule\":\"R5\"", 1);
    assert_ne!(edited[3], lines[3], "line 4 is an access");
    write(&edited);
    assert_eq!(
        verify(&read(&path), &key, Some(&head)),
        broken(3, 4, Tamper::Modified)
    );

    // Delete a line.
    let mut deleted = owned(&lines);
    deleted.remove(6);
    write(&deleted);
    assert_eq!(
        verify(&read(&path), &key, Some(&head)),
        broken(6, 7, Tamper::Deleted)
    );

    // Swap two lines.
    let mut swapped = owned(&lines);
    swapped.swap(2, 5);
    write(&swapped);
    assert_eq!(
        verify(&read(&path), &key, Some(&head)),
        broken(2, 3, Tamper::Reordered)
    );

    // Cut the tail.
    write(&owned(&lines[..9]));
    assert_eq!(
        verify(&read(&path), &key, Some(&head)),
        broken(9, 10, Tamper::Truncated)
    );

    // A damaged line is an error naming the line, not a panic.
    let mut damaged = owned(&lines);
    damaged[4].truncate(30);
    write(&damaged);
    let err = read_jsonl(std::io::BufReader::new(std::fs::File::open(&path).unwrap())).unwrap_err();
    assert_eq!(err.line(), 5);
}

// ---------------------------------------------------------------------------
// The SQLite key store

fn count(db: &Db, query: &str) -> i64 {
    db.with(|c| c.query_row(query, [], |r| r.get(0))).unwrap()
}

#[test]
fn sqlite_key_store_survives_restart_rotation_and_erasure() {
    let dir = TempDir::new("keys");
    let path = dir.path("keys.db");
    let subject = SubjectId::from(0xbeef);
    let other = SubjectId::from(0xcafe);
    let email = || -> PersonalInfo<EmailAddress, Transaction> {
        PersonalInfo::collect(subject, EmailAddress::parse("ada@example.com").unwrap())
    };

    let (sealed, sealed_other) = {
        let shop = open_shop(&path);
        let sealed = shop.custodian.seal(&email()).unwrap();
        let phone: PersonalInfo<PhoneNumber, Transaction> =
            PersonalInfo::collect(other, PhoneNumber::parse("+1 415 555 0132").unwrap());
        (sealed, shop.custodian.seal(&phone).unwrap())
    };
    assert_eq!(
        count(&open_shop(&path).db, "SELECT COUNT(*) FROM pp_subject_keys"),
        2
    );

    // A new process with the same master secret opens what the first sealed.
    let keyring = Arc::new(Keyring::from_master([5u8; 32], [1]).unwrap());
    let db = Db::open(&path).unwrap();
    let store = key_store(&db);
    let custodian = Custodian::builder()
        .keyring(keyring.clone())
        .key_store(store.clone())
        .build()
        .unwrap();
    assert!(custodian.open(&sealed).is_ok());

    // Rotation: rewrap every stored key under v2, then retire v1.
    assert_eq!(keyring.rotate().unwrap(), 2);
    assert_eq!(store.wrapped_under(1).unwrap().len(), 2);
    assert!(
        custodian.retire_key_version(1).is_err(),
        "v1 still wraps keys"
    );
    assert_eq!(custodian.rewrap_keys(1).unwrap(), 2);
    assert!(store.wrapped_under(1).unwrap().is_empty());
    assert_eq!(store.wrapped_under(2).unwrap().len(), 2);
    assert!(custodian.open(&sealed).is_ok());
    assert!(custodian.open(&sealed_other).is_ok());

    // Erasure deletes the subject's rows and leaves a tombstone; the other
    // subject is untouched, and erasing again changes nothing.
    let receipt = custodian.erase(subject).unwrap();
    assert_eq!(receipt.generations(), &[0]);
    assert_eq!(
        count(
            &db,
            "SELECT COUNT(*) FROM pp_subject_keys WHERE subject = '0000000000000000000000000000beef'"
        ),
        0
    );
    assert_eq!(count(&db, "SELECT COUNT(*) FROM pp_erased_subjects"), 1);
    assert!(matches!(
        store.load(subject).unwrap(),
        SubjectKeys::Erased { .. }
    ));
    assert!(store
        .destroy(subject, Timestamp::now())
        .unwrap()
        .generations
        .is_empty());
    assert!(custodian.open(&sealed_other).is_ok());

    // A process started after the erasure cannot open the envelope either.
    drop(custodian);
    let fresh = Custodian::builder()
        .keyring(Arc::new(Keyring::import(&keyring.export()).unwrap()))
        .key_store(key_store(&Db::open(&path).unwrap()))
        .build()
        .unwrap();
    assert!(matches!(fresh.open(&sealed), Err(Error::Erased { .. })));
    assert!(fresh.open(&sealed_other).is_ok());
}

// ---------------------------------------------------------------------------
// Restarts read the trail only against the checkpoint kept outside the database

/// Runs one statement on the database file, as its operator (A2) would.
fn operator_runs(path: &std::path::Path, sql: &str) {
    rusqlite::Connection::open(path)
        .unwrap()
        .execute(sql, [])
        .unwrap();
}

/// A2 deletes rows of `audit_log` (the withdrawal, or just the last row), or
/// puts back an old copy of the database, while the shop is down: the
/// restart refuses, so a withdrawn subscription never comes back.
#[test]
fn a2_restart_refuses_a_trail_cut_or_rolled_back_behind_its_checkpoint() {
    use privacy_pledge::purpose::Newsletter;
    let dir = TempDir::new("restart-cut");
    let path = dir.path("shop.db");
    let checkpoint = legacy::checkpoint_file_for(&path);
    let keyring = Arc::new(Keyring::generate().unwrap());
    let ada = SubjectId::random();
    let open = || legacy::open_custodian(&Db::open(&path).unwrap(), keyring.clone(), &checkpoint);

    let shop = open().unwrap();
    shop.custodian.consents().grant::<Newsletter>(ada).unwrap();
    shop.save_checkpoint().unwrap();
    drop(shop);
    // A copy of the database while ada was subscribed.
    let subscribed_copy = dir.path("subscribed.db");
    std::fs::copy(&path, &subscribed_copy).unwrap();

    let shop = open().unwrap();
    assert!(shop.custodian.consents().is_granted::<Newsletter>(ada));
    shop.custodian
        .consents()
        .withdraw::<Newsletter>(ada)
        .unwrap();
    shop.save_checkpoint().unwrap();
    drop(shop);
    let intact = dir.path("intact.db");
    std::fs::copy(&path, &intact).unwrap();

    // The withdrawal row deleted.
    operator_runs(
        &path,
        "DELETE FROM audit_log WHERE action = 'consent_withdrawn'",
    );
    assert!(open().is_err(), "a trail without its withdrawal restored");

    // Only the last row deleted.
    std::fs::copy(&intact, &path).unwrap();
    operator_runs(
        &path,
        "DELETE FROM audit_log WHERE id = (SELECT MAX(id) FROM audit_log)",
    );
    assert!(open().is_err(), "a trail cut short restored");

    // The old copy put back (a rolled-back database).
    std::fs::copy(&subscribed_copy, &path).unwrap();
    assert!(open().is_err(), "a rolled-back trail restored");

    // The intact database restarts, and the withdrawal holds.
    std::fs::copy(&intact, &path).unwrap();
    let shop = open().unwrap();
    assert!(!shop.custodian.consents().is_granted::<Newsletter>(ada));

    // With the checkpoint gone as well, a non-empty trail is refused.
    drop(shop);
    std::fs::remove_file(&checkpoint).unwrap();
    assert!(open().is_err(), "a trail with no checkpoint accepted");
}

// ---------------------------------------------------------------------------
// The verify_audit example never writes and never calls a missing trail intact

fn run_verify(args: &[&std::ffi::OsStr]) -> (i32, String) {
    examples::run_example("verify_audit", args)
}

/// `--db PATH --public-key-file PATH.pub` and, with `checkpoints`,
/// `--checkpoints PATH.checkpoints`: what the verifier reads, all named.
fn verify_args(path: &std::path::Path, checkpoints: bool) -> Vec<std::ffi::OsString> {
    let mut args: Vec<std::ffi::OsString> = vec![
        "--db".into(),
        path.into(),
        "--public-key-file".into(),
        support::public_key_file_for(path).into(),
    ];
    if checkpoints {
        args.push("--checkpoints".into());
        args.push(support::checkpoint_dir_for(path).into());
    }
    args
}

fn run_verify_on(path: &std::path::Path, checkpoints: bool) -> (i32, String) {
    examples::run_example("verify_audit", &verify_args(path, checkpoints))
}

/// A2 cuts rows from the end, empties the table or drops it; the verifier,
/// holding only the public key and the signed checkpoints, reports each,
/// opens the database read-only, and says when it cannot check truncation.
#[test]
fn a2_verify_audit_reports_a_dropped_emptied_or_cut_trail() {
    let dir = TempDir::new("verify-example");
    let path = dir.path("shop.db");
    let shop = support::open_shop_on(&support::Database::Sqlite(path.clone())).unwrap();
    let ada = SubjectId::random();
    for _ in 0..3 {
        shop.custodian.consents().grant::<Promotion>(ada).unwrap();
    }
    let consent_row = || -> String {
        rusqlite::Connection::open(&path)
            .unwrap()
            .query_row("SELECT record FROM pp_consents", [], |r| r.get(0))
            .unwrap()
    };
    let granted = consent_row();
    shop.custodian
        .consents()
        .withdraw::<Promotion>(ada)
        .unwrap();
    let withdrawn = consent_row();
    shop.guard.sign().unwrap();
    drop(shop);
    // The verifier gets no secret: hide the keyring from it.
    std::fs::rename(support::key_file_for(&path), dir.path("elsewhere.key")).unwrap();
    let db_arg = path.as_os_str();

    let (code, text) = run_verify_on(&path, true);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("all vouched for by its signed checkpoint"),
        "{text}"
    );
    assert!(
        text.contains("consent rows agree with the trail: 1 rows"),
        "{text}"
    );

    // The grant put back over the withdrawal: the row authenticates, but
    // disagrees with the trail.
    let put_row = |record: &str| {
        rusqlite::Connection::open(&path)
            .unwrap()
            .execute("UPDATE pp_consents SET record = ?1", [record])
            .unwrap()
    };
    put_row(&granted);
    let (code, text) = run_verify_on(&path, true);
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains("the row says granted, the trail says withdrawn"),
        "{text}"
    );
    put_row(&withdrawn);

    // Someone else's public key: the checkpoints vouch for nothing.
    let stranger = privacy_pledge::audit::CheckpointSigner::from_seed(&[3; 32])
        .unwrap()
        .public_key()
        .to_string();
    let checkpoints = support::checkpoint_dir_for(&path);
    let (code, text) = run_verify(&[
        "--db".as_ref(),
        db_arg,
        "--public-key".as_ref(),
        stranger.as_ref(),
        "--checkpoints".as_ref(),
        checkpoints.as_os_str(),
    ]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("does NOT verify"), "{text}");

    // Cut from the end: the signed checkpoint shows it.
    operator_runs(
        &path,
        "DELETE FROM pp_audit_log WHERE id = (SELECT MAX(id) FROM pp_audit_log)",
    );
    let (code, text) = run_verify_on(&path, true);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("truncated"), "{text}");
    // A checkpoint directory that is named but gone cannot be checked
    // against: not "0 streams".
    std::fs::remove_dir_all(support::checkpoint_dir_for(&path)).unwrap();
    let (code, text) = run_verify_on(&path, true);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("no checkpoint directory"), "{text}");
    // …and without checkpoints the verifier says what it cannot check; the
    // cut entry was the withdrawal, which the consent row still shows.
    let (code, text) = run_verify_on(&path, false);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("cannot check truncation"), "{text}");
    assert!(
        text.contains("the row says withdrawn, the trail says granted"),
        "{text}"
    );

    // Emptied, then dropped: failures, and the table is not re-created.
    operator_runs(&path, "DELETE FROM pp_audit_log");
    let (code, text) = run_verify_on(&path, false);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("no entries"), "{text}");
    operator_runs(&path, "DROP TABLE pp_audit_log");
    let (code, text) = run_verify_on(&path, false);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("no such table"), "{text}");
    let conn = rusqlite::Connection::open(&path).unwrap();
    let tables: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM sqlite_master WHERE name = 'pp_audit_log'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(tables, 0, "the verifier re-created the table it checks");
}

/// Attack 6: the verifier says 0 only for what it can vouch for. A stream
/// with no checkpoint (a process that crashed) and entries after a stream's
/// last checkpoint are counted per stream and exit 3, not 0; a missing key
/// or checkpoint directory is "could not be checked" (2). A2's own key and
/// a re-chained, re-signed trail beside the database are never read unless
/// named, and under the key the verifier is given they vouch for nothing.
#[test]
fn a2_the_verifier_exits_0_only_for_what_it_can_vouch_for() {
    let dir = TempDir::new("verify-vouched");
    let path = dir.path("shop.db");
    let ada = SubjectId::random();
    // One process: three events, a clean checkpoint, two more, then a crash.
    let shop = support::open_shop_on(&support::Database::Sqlite(path.clone())).unwrap();
    for _ in 0..3 {
        shop.custodian.consents().grant::<Promotion>(ada).unwrap();
    }
    let signed = shop.guard.sign().unwrap();
    assert_eq!(signed.checkpoint().seq(), 3);
    shop.custodian
        .consents()
        .withdraw::<Promotion>(ada)
        .unwrap();
    shop.custodian.consents().grant::<Promotion>(ada).unwrap();
    // A crash: nothing runs on the way out (no checkpoint guard's drop).
    std::mem::forget(shop);
    // Another process that crashes before any checkpoint.
    let shop = support::open_shop_on(&support::Database::Sqlite(path.clone())).unwrap();
    shop.custodian
        .consents()
        .withdraw::<Promotion>(ada)
        .unwrap();
    std::mem::forget(shop);

    let (code, text) = run_verify_on(&path, true);
    assert_eq!(code, 3, "{text}");
    assert!(
        text.contains("vouched for up to seq 3, 2 UNVOUCHED"),
        "{text}"
    );
    assert!(text.contains("1 UNVOUCHED: no signed checkpoint"), "{text}");
    assert!(text.contains("3 entries are NOT vouched for"), "{text}");
    // No checkpoints named: intact as far as checked, nothing vouched for.
    let (code, text) = run_verify_on(&path, false);
    assert_eq!(code, 3, "{text}");
    assert!(text.contains("6 entries are NOT vouched for"), "{text}");
    // No key named: nothing is read beside the database.
    let (code, text) = run_verify(&["--db".as_ref(), path.as_os_str()]);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("no public key"), "{text}");

    // A2 makes a whole trail of its own, chained and signed under keys of
    // its own, and puts its public key and checkpoints beside it.
    let genuine = std::fs::read_to_string(support::public_key_file_for(&path)).unwrap();
    let forged = dir.path("forged.db");
    let shop = support::open_shop_on(&support::Database::Sqlite(forged.clone())).unwrap();
    shop.custodian.consents().grant::<Promotion>(ada).unwrap();
    shop.guard.sign().unwrap();
    drop(shop);
    let (code, text) = run_verify(&["--db".as_ref(), forged.as_os_str()]);
    assert_eq!(code, 2, "the key beside the database was read: {text}");
    let checkpoints = support::checkpoint_dir_for(&forged);
    let (code, text) = run_verify(&[
        "--db".as_ref(),
        forged.as_os_str(),
        "--public-key".as_ref(),
        genuine.trim_end().as_ref(),
        "--checkpoints".as_ref(),
        checkpoints.as_os_str(),
    ]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("does NOT verify"), "{text}");
}

/// An archived segment is checked when the verifier is given it: against
/// the archive base that names its digest (A4). Altered, or its base gone
/// (the prefix merely deleted), it is reported (A2).
#[test]
fn a4_verify_audit_checks_an_archive_against_its_base() {
    use privacy_pledge::audit::{archive_digest, DirCheckpointStore};
    let dir = TempDir::new("verify-archive");
    let path = dir.path("shop.db");
    let ada = SubjectId::random();
    let shop = support::open_shop_on(&support::Database::Sqlite(path.clone())).unwrap();
    for _ in 0..3 {
        shop.custodian.consents().grant::<Promotion>(ada).unwrap();
    }
    let at_3 = shop.guard.sign().unwrap();
    shop.custodian
        .consents()
        .withdraw::<Promotion>(ada)
        .unwrap();
    shop.guard.sign().unwrap();
    let privacy_pledge::store::Database::Sqlite(store) = shop.store.database() else {
        unreachable!("an SQLite file")
    };
    let mut archive = Vec::new();
    assert_eq!(
        store
            .archive(&at_3, &shop.public_key, &mut archive)
            .unwrap(),
        3
    );
    drop(shop);
    let keyring = support::read_keyring(&support::key_file_for(&path)).unwrap();
    let base = keyring.checkpoint_signer().unwrap().sign_base(
        at_3.stream(),
        at_3.checkpoint(),
        archive_digest(&archive),
        Timestamp::now(),
    );
    let outside = DirCheckpointStore::new(support::checkpoint_dir_for(&path)).unwrap();
    outside.save_base(&base).unwrap();
    let archive_file = dir.path("segment.jsonl");
    std::fs::write(&archive_file, &archive).unwrap();
    let with_archive = |file: &std::path::Path| {
        let mut args = verify_args(&path, true);
        args.push("--archive".into());
        args.push(file.into());
        examples::run_example("verify_audit", &args)
    };

    let (code, text) = with_archive(&archive_file);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("vouched for by its archive base"), "{text}");
    // Without the archive, the verifier says what it did not check, and
    // the consent rows are checked against part of the history only.
    let (code, text) = run_verify_on(&path, true);
    assert_eq!(code, 3, "{text}");
    assert!(text.contains("give the archive"), "{text}");
    assert!(text.contains("database only"), "{text}");
    // An archive altered after the fact matches no base.
    let altered = dir.path("altered.jsonl");
    let mut bytes = archive.clone();
    bytes.pop();
    std::fs::write(&altered, &bytes).unwrap();
    let (code, text) = with_archive(&altered);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("no archive base"), "{text}");
    // Without the base, the remaining entries start at seq 4 behind an
    // ordinary checkpoint at best: the prefix was deleted.
    let base_file =
        support::checkpoint_dir_for(&path).join(format!("{}.base.3.json", at_3.stream()));
    std::fs::remove_file(base_file).unwrap();
    let (code, text) = run_verify_on(&path, true);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("BROKEN"), "{text}");
}

/// A2 against A4, with archives. One process records a newsletter grant
/// (its stream), another later the withdrawal (its own stream), which is
/// then archived behind a signed base. The operator puts the consent row
/// back to its earlier authentic copy (granted). Against the database's
/// trail alone the row agrees with the grant; with the archive's entries
/// (`verify_audit --archive`) the withdrawal is found and the row reported
/// (exit 1). Without the archive `verify_audit` does not claim agreement
/// (exit 3).
#[test]
fn a4_a_consent_row_rolled_back_over_an_archived_withdrawal_is_reported() {
    use privacy_pledge::audit::{archive_digest, DirCheckpointStore};
    use privacy_pledge::consent::{cross_check, ConsentStore};
    use privacy_pledge::freshness::DirAnchorStore;
    use privacy_pledge::purpose::Newsletter;
    use privacy_pledge::store::sqlite::SqliteStore;
    let dir = TempDir::new("verify-archived-withdrawal");
    let path = dir.path("shop.db");
    let store = SqliteStore::open(&path).unwrap();
    let keyring = Arc::new(Keyring::generate().unwrap());
    let public = keyring.checkpoint_signer().unwrap().public_key();
    std::fs::write(support::public_key_file_for(&path), public.to_string()).unwrap();
    let outside = DirCheckpointStore::new(support::checkpoint_dir_for(&path)).unwrap();
    let process = || {
        let sink = Arc::new(
            store
                .audit_sink(keyring.audit_key())
                .unwrap()
                .with_checkpoints(keyring.checkpoint_signer().unwrap(), outside.clone(), 1000),
        );
        let custodian = Custodian::builder()
            .keyring(keyring.clone())
            .key_store(store.key_store())
            .audit(sink.clone())
            .consent_store(store.consent_store())
            .freshness_anchor(DirAnchorStore::new(dir.path("anchor")).unwrap())
            .build()
            .unwrap();
        (sink, custodian)
    };
    let ada = SubjectId::random();
    let (sink_b, p1) = process();
    p1.consents().grant::<Newsletter>(ada).unwrap();
    sink_b.sign_checkpoint().unwrap();
    let granted = store.consent_store().all().unwrap()[0];
    let (sink_a, p2) = process();
    p2.consents().withdraw::<Newsletter>(ada).unwrap();
    let at_a = sink_a.sign_checkpoint().unwrap();
    drop((p1, p2, sink_a, sink_b));

    let mut archive = Vec::new();
    assert_eq!(store.archive(&at_a, &public, &mut archive).unwrap(), 1);
    let base = keyring.checkpoint_signer().unwrap().sign_base(
        at_a.stream(),
        at_a.checkpoint(),
        archive_digest(&archive),
        Timestamp::now(),
    );
    outside.save_base(&base).unwrap();
    let archive_file = dir.path("segment.jsonl");
    std::fs::write(&archive_file, &archive).unwrap();

    // A2: the row put back to its earlier, authentic copy.
    let old = serde_json::to_string(&granted).unwrap();
    store
        .with_connection(|c| {
            c.execute(
                "UPDATE pp_consents SET record = ?1, version = 1 WHERE subject = ?2",
                [&old, &ada.to_string()],
            )
        })
        .unwrap();
    let rows = store.consent_store().all().unwrap();
    assert!(rows.iter().any(|r| r.subject == ada && r.granted));
    let trail = store.trail().unwrap();
    assert!(
        cross_check(&rows, &trail).is_empty(),
        "the database alone agrees"
    );
    let mut history = privacy_pledge::audit::read_jsonl(&archive[..]).unwrap();
    history.extend(trail);
    assert_eq!(cross_check(&rows, &history).len(), 1);
    drop(store);

    let mut args = verify_args(&path, true);
    args.push("--archive".into());
    args.push(archive_file.into());
    let (code, text) = examples::run_example("verify_audit", &args);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("DISAGREES"), "{text}");
    let (code, text) = run_verify_on(&path, true);
    assert_eq!(code, 3, "{text}");
    assert!(
        !text.contains("consent rows agree with the trail"),
        "{text}"
    );
}
