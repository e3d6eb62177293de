//! Freshness of state rows on SQLite: what the database operator (A2) puts
//! back, deletes or resurrects is refused at use time, an erasure in one
//! process stops every use in another within the bound (A5, spawned
//! processes), and erasure is one journaled operation that a retry finishes.
//! The same scenarios run on PostgreSQL in `store_postgres.rs`, and the
//! erasure across processes here too.

#[path = "common/freshness.rs"]
mod freshness;
#[path = "common/pg.rs"]
mod pg;
#[path = "common/tempdir.rs"]
mod tempdir;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use privacy_pledge::consent::{ConsentRecord, ConsentStore, ConsentStoreError, MemoryConsentStore};
use privacy_pledge::crypto::{Keyring, MemoryKeyStore};
use privacy_pledge::data::EmailAddress;
use privacy_pledge::freshness::{AnchorError, AnchorStore, DirAnchorStore, MemoryAnchorStore};
use privacy_pledge::purpose::{Newsletter, PurposeId, Transaction};
use privacy_pledge::recipient::{Processor, Recipient};
use privacy_pledge::store::sqlite::SqliteStore;
use privacy_pledge::store::{Store, StoreConfig};
use privacy_pledge::{Custodian, Error, PersonalInfo, SubjectId};

use freshness::Fleet;
use tempdir::TempDir;

const MASTER: [u8; 32] = [18; 32];

fn keyring() -> Arc<Keyring> {
    Arc::new(Keyring::from_master(MASTER, [1]).unwrap())
}

fn anchor_of(db: &Path) -> DirAnchorStore {
    DirAnchorStore::new(db.with_extension("anchor")).unwrap()
}

/// A process of the service on the database at `url` (SQLite or
/// PostgreSQL), its anchor and checkpoints in `dir`, as `store::Store`
/// wires it.
fn process_on(url: &str, dir: &Path, bound: Duration) -> Custodian {
    let store = Store::open(&StoreConfig::new(url, dir)).unwrap();
    let builder = Custodian::builder()
        .keyring(keyring())
        .consent_revalidate_after(bound)
        .key_revalidate_after(bound);
    let (custodian, _guard) = store.custodian(builder).unwrap();
    custodian
}

/// A process of the service on the SQLite file `db`.
fn process(db: &Path, bound: Duration) -> Custodian {
    process_on(
        &format!("sqlite:{}", db.display()),
        &db.with_extension("anchor"),
        bound,
    )
}

fn with_fleet(test: &str, scenario: fn(&Fleet<'_>)) {
    let dir = TempDir::named("freshness", test);
    let db = dir.path("shop.sqlite");
    let store = SqliteStore::open(&db).unwrap();
    let run = |sql: &str| store.with_connection(|c| c.execute_batch(sql)).unwrap();
    let consents = || store.consent_store().all().unwrap();
    let start = || process(&db, Duration::ZERO);
    scenario(&Fleet {
        run: &run,
        consents: &consents,
        process: &start,
    });
}

#[test]
fn a2_a_rolled_back_consent_row_is_refused_at_use() {
    with_fleet(
        "rollback",
        freshness::a2_a_rolled_back_consent_row_is_refused_at_use,
    );
}

#[test]
fn a2_a_deleted_consent_row_does_not_revive_older_data() {
    with_fleet(
        "deleted",
        freshness::a2_a_deleted_consent_row_does_not_revive_older_data,
    );
}

#[test]
fn a2_resurrected_keys_of_an_erased_subject_open_nothing() {
    with_fleet(
        "resurrected",
        freshness::a2_resurrected_keys_of_an_erased_subject_open_nothing,
    );
}

/// Attack 3, continued: the host then rotates and rewraps as the README
/// says. The resurrected key is not moved to the new version: it is
/// destroyed again, so retiring the old version protects what it should.
#[test]
fn a2_a_rewrap_destroys_resurrected_keys_instead_of_moving_them() {
    let dir = TempDir::named("freshness", "rewrap");
    let db = dir.path("shop.sqlite");
    let store = SqliteStore::open(&db).unwrap();
    let keyring = Arc::new(Keyring::generate().unwrap());
    let custodian = Custodian::builder()
        .keyring(keyring.clone())
        .key_store(store.key_store())
        .consent_store(store.consent_store())
        .freshness_anchor(anchor_of(&db))
        .build()
        .unwrap();
    let (bob, ada) = (SubjectId::random(), SubjectId::random());
    let sealed = |s: SubjectId| {
        custodian
            .seal(&PersonalInfo::<EmailAddress, Transaction>::collect(
                s,
                EmailAddress::parse("bob@example.com").unwrap(),
            ))
            .unwrap()
    };
    let (bobs, adas) = (sealed(bob), sealed(ada));
    let run = |sql: &str| store.with_connection(|c| c.execute_batch(sql)).unwrap();
    run(&format!(
        "CREATE TABLE pp_keys_copy AS SELECT * FROM pp_subject_keys WHERE subject = '{bob}'"
    ));
    custodian.erase(bob).unwrap();
    run(&format!(
        "INSERT INTO pp_subject_keys SELECT * FROM pp_keys_copy;
         DROP TABLE pp_keys_copy;
         DELETE FROM pp_erased_subjects WHERE subject = '{bob}';"
    ));
    let old = *keyring.versions().last().unwrap();
    keyring.rotate().unwrap();
    assert_eq!(
        custodian.rewrap_keys(old).unwrap(),
        1,
        "only ada's key moves"
    );
    let left: i64 = store
        .with_connection(|c| {
            c.query_row(
                &format!("SELECT count(*) FROM pp_subject_keys WHERE subject = '{bob}'"),
                [],
                |r| r.get(0),
            )
        })
        .unwrap();
    assert_eq!(left, 0, "the resurrected key was kept");
    custodian.retire_key_version(old).unwrap();
    assert!(custodian.open(&adas).is_ok());
    assert!(matches!(custodian.open(&bobs), Err(Error::Erased { .. })));
}

// ---------------------------------------------------------------------------
// Erasure across processes

struct Mailer;
impl Recipient for Mailer {
    type Role = Processor;
    fn name(&self) -> &str {
        "mail delivery"
    }
}

fn child(role: &str, db: &Path, subject: SubjectId) -> Command {
    child_on(
        role,
        &format!("sqlite:{}", db.display()),
        &db.with_extension("anchor"),
        subject,
    )
}

fn child_on(role: &str, url: &str, dir: &Path, subject: SubjectId) -> Command {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "--exact",
        "child_process_entry",
        "--nocapture",
        "--test-threads=1",
    ])
    .env("PP_CHILD_ROLE", role)
    .env("PP_CHILD_URL", url)
    .env("PP_CHILD_DIR", dir)
    .env("PP_SUBJECT", subject.to_string())
    .stdout(Stdio::piped())
    .stderr(Stdio::inherit());
    cmd
}

/// Every use of one subject, each as `Ok(true)` if allowed, `Ok(false)` if
/// refused as erased.
fn uses(
    c: &Custodian,
    s: SubjectId,
    sealed: &privacy_pledge::Sealed<EmailAddress, Transaction>,
) -> Vec<(&'static str, bool)> {
    let info: PersonalInfo<EmailAddress, Transaction> =
        PersonalInfo::collect(s, EmailAddress::parse("ada@example.com").unwrap());
    let news: PersonalInfo<EmailAddress, Newsletter> =
        PersonalInfo::collect(s, EmailAddress::parse("ada@example.com").unwrap());
    let erased = |e: Error| match e {
        Error::Erased { .. } => false,
        e => panic!("refused for another reason: {e}"),
    };
    let ok = |r: Result<(), Error>| r.map_or_else(erased, |()| true);
    vec![
        ("access", ok(c.access(&info, |_| ()))),
        ("disclose", ok(c.disclose(&info, &Mailer, |_| ()))),
        ("lookup_token", ok(c.lookup_token(&info).map(drop))),
        ("pseudonym", ok(c.pseudonym(&info).map(drop))),
        ("grant", ok(c.consents().grant::<Newsletter>(s))),
        ("access_newsletter", ok(c.access(&news, |_| ()).map(drop))),
        ("seal", ok(c.seal(&info).map(drop))),
        ("open", ok(c.open(sealed).map(drop))),
    ]
}

/// Not a test of its own: the body of the child processes spawned below.
#[test]
fn child_process_entry() {
    let Ok(role) = std::env::var("PP_CHILD_ROLE") else {
        return;
    };
    println!();
    let url = std::env::var("PP_CHILD_URL").unwrap();
    let dir = PathBuf::from(std::env::var("PP_CHILD_DIR").unwrap());
    let process = |bound| process_on(&url, &dir, bound);
    let s: SubjectId = std::env::var("PP_SUBJECT").unwrap().parse().unwrap();
    match role.as_str() {
        // Uses the subject every 10 ms, every way there is, until every one
        // is refused; says when.
        "user" => {
            let c = process(Duration::from_millis(300));
            let info: PersonalInfo<EmailAddress, Transaction> =
                PersonalInfo::collect(s, EmailAddress::parse("ada@example.com").unwrap());
            let sealed = c.seal(&info).unwrap();
            assert!(uses(&c, s, &sealed).iter().all(|(_, ok)| *ok));
            println!("READY");
            loop {
                let now = uses(&c, s, &sealed);
                if now.iter().all(|(_, ok)| !ok) {
                    println!("ALL REFUSED");
                    return;
                }
                if now.iter().any(|(_, ok)| !ok) {
                    let allowed: Vec<_> =
                        now.iter().filter(|(_, ok)| *ok).map(|(n, _)| *n).collect();
                    println!("PARTLY {allowed:?}");
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        // Flips consents of the subject and of subjects of its own.
        "flipper" => {
            let c = process(Duration::from_millis(50));
            for i in 0..30 {
                let own = SubjectId::random();
                c.consents().grant::<Newsletter>(own).unwrap();
                if i % 2 == 0 {
                    c.consents().grant::<Newsletter>(s).unwrap();
                } else {
                    c.consents().withdraw::<Newsletter>(s).unwrap();
                }
            }
            println!("DONE");
        }
        // Grants consents to subjects of its own, one after another, until
        // 5,000 are done or the anchor refuses (compacted under it): prints
        // each subject whose grant returned, and how it ended.
        "granter" => {
            let c = process(Duration::from_millis(50));
            println!("READY");
            for _ in 0..5_000 {
                let own = SubjectId::random();
                match c.consents().grant::<Newsletter>(own) {
                    Ok(()) => println!("OK {own}"),
                    Err(Error::Anchor(_)) => {
                        println!("CLOSED");
                        return;
                    }
                    Err(e) => panic!("{e}"),
                }
            }
            println!("DONE");
        }
        other => panic!("unknown role {other}"),
    }
}

/// Issue 18, attack 8: process A erases a subject; process B, started
/// before and holding the subject's data, is refused every use — access,
/// disclosure, lookup token, pseudonym, grant, seal, open — within its
/// bound (300 ms).
#[test]
fn a5_an_erasure_in_one_process_stops_every_use_in_another_within_the_bound() {
    let dir = TempDir::named("freshness", "erasure-fleet");
    erasure_in_another_process(&dir.sqlite_url("shop.sqlite"), &dir.path("anchor"));
}

/// The same on PostgreSQL: two processes on one database, the anchor in a
/// directory both reach.
#[test]
fn a5_an_erasure_in_one_process_stops_every_use_in_another_on_postgres() {
    let Some(db) = pg::database("freshness_erasure_fleet") else {
        return;
    };
    let dir = TempDir::named("freshness", "erasure-fleet-pg");
    erasure_in_another_process(&db, &dir.path("anchor"));
}

fn erasure_in_another_process(url: &str, anchor: &Path) {
    let here = process_on(url, anchor, Duration::ZERO);
    let s = SubjectId::random();
    let mut user = child_on("user", url, anchor, s).spawn().unwrap();
    let mut lines = BufReader::new(user.stdout.take().unwrap()).lines();
    assert!(lines.by_ref().map_while(Result::ok).any(|l| l == "READY"));
    here.erase(s).unwrap();
    let erased = Instant::now();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut partly = Vec::new();
        let mut lines = lines.map_while(Result::ok);
        for line in lines.by_ref() {
            if line == "ALL REFUSED" {
                let _ = tx.send(Ok(partly));
                // Read to the end, so the child never writes to a closed pipe.
                for _ in lines {}
                return;
            }
            if line.starts_with("PARTLY") {
                partly.push(line);
            }
        }
        let _ = tx.send(Err(()));
    });
    let result = rx.recv_timeout(Duration::from_secs(10));
    let took = erased.elapsed();
    let Ok(Ok(partly)) = result else {
        let _ = user.kill();
        panic!("the other process kept using the erased subject");
    };
    eprintln!("every use refused in the other process {took:?} after the erasure (bound 300 ms)");
    assert!(took < Duration::from_millis(1500), "took {took:?}");
    // Within the bound a use may still pass in the other process; those
    // that ask the key store as well (grant) stop sooner.
    eprintln!("rounds with some uses still allowed: {}", partly.len());
    assert!(user.wait().unwrap().success());
}

/// Three processes change consents at once, one subject shared by all:
/// the anchor orders every change, and afterwards every row equals the
/// anchored one (nothing is refused as stale) in a process started fresh.
#[test]
fn a5_processes_changing_consents_at_once_agree_with_the_anchor() {
    let dir = TempDir::named("freshness", "flippers");
    let db = dir.path("shop.sqlite");
    SqliteStore::open(&db).unwrap();
    let s = SubjectId::random();
    let children: Vec<_> = (0..3)
        .map(|_| child("flipper", &db, s).spawn().unwrap())
        .collect();
    for mut c in children {
        let out = BufReader::new(c.stdout.take().unwrap());
        let lines: Vec<String> = out.lines().map_while(Result::ok).collect();
        assert!(lines.iter().any(|l| l == "DONE"));
        assert!(c.wait().unwrap().success());
    }
    let fresh = process(&db, Duration::ZERO);
    let rows = SqliteStore::open(&db)
        .unwrap()
        .consent_store()
        .all()
        .unwrap();
    assert_eq!(rows.len(), 91);
    for r in rows {
        let state = fresh.consents().of(r.subject);
        assert_eq!(state.len(), 1, "a row refused as stale");
        assert_eq!(state[0].granted, r.granted);
    }
}

// ---------------------------------------------------------------------------
// Compaction

/// The anchor compacted while two other processes grant consents (A5):
/// every grant that returned, before or after, is in the compacted log
/// (a fresh process finds each live, its row equal to the anchored one);
/// the others either finished before or fail closed with `Error::Anchor`,
/// never appending to the log they no longer read.
#[test]
fn a5_compaction_beside_running_processes_loses_no_grant() {
    let dir = TempDir::named("freshness", "compaction");
    let db = dir.path("shop.sqlite");
    let maintenance = process(&db, Duration::ZERO);
    let s = SubjectId::random();
    for _ in 0..20 {
        maintenance.consents().grant::<Newsletter>(s).unwrap();
        maintenance.consents().withdraw::<Newsletter>(s).unwrap();
    }
    let mut children: Vec<_> = (0..2)
        .map(|_| child("granter", &db, s).spawn().unwrap())
        .collect();
    let outputs: Vec<_> = children
        .iter_mut()
        .map(|c| {
            let out = BufReader::new(c.stdout.take().unwrap());
            std::thread::spawn(move || out.lines().map_while(Result::ok).collect::<Vec<_>>())
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let done = maintenance.compact_anchor().unwrap();
    assert!(done.lines_after() < done.lines_before(), "{done:?}");
    let (mut granted, mut closed) = (Vec::new(), 0);
    for (mut c, out) in children.into_iter().zip(outputs) {
        let lines = out.join().unwrap();
        assert!(c.wait().unwrap().success());
        let ended = lines.iter().find(|l| *l == "DONE" || *l == "CLOSED");
        assert!(ended.is_some(), "{} lines, no end", lines.len());
        closed += usize::from(ended.is_some_and(|l| l == "CLOSED"));
        granted.extend(
            lines
                .iter()
                .filter_map(|l| l.strip_prefix("OK "))
                .map(|id| id.parse::<SubjectId>().unwrap()),
        );
    }
    assert!(!granted.is_empty());
    assert!(
        closed > 0,
        "the compaction ran after both children were done"
    );
    let fresh = process(&db, Duration::ZERO);
    for subject in &granted {
        assert!(fresh.consents().is_granted::<Newsletter>(*subject));
        fresh.consent_proof::<Newsletter>(*subject).unwrap();
    }
    assert!(!fresh.consents().is_granted::<Newsletter>(s));
    eprintln!(
        "compaction {} -> {} lines, {} -> {} bytes; {} grants beside it, {closed} process(es) closed",
        done.lines_before(),
        done.lines_after(),
        done.bytes_before(),
        done.bytes_after(),
        granted.len()
    );
}

/// A sink that refuses while `fail` is set, and keeps what it took.
#[derive(Default)]
struct Switch {
    fail: AtomicBool,
    stored: privacy_pledge::audit::MemoryAuditLog,
}

impl privacy_pledge::audit::AuditSink for Switch {
    fn record(
        &self,
        event: &privacy_pledge::audit::AuditEvent,
    ) -> Result<(), privacy_pledge::audit::AuditError> {
        if self.fail.load(Ordering::SeqCst) {
            return Err(privacy_pledge::audit::AuditError::new("disk full"));
        }
        self.stored.record(event)
    }
}

/// A4 (the auditor reading the trail): a compaction, which drops the
/// anchor's history, is in the trail, recorded before the log is replaced;
/// and a failing sink (R10) stops it, the log left as it was.
#[test]
fn a4_a_compaction_is_recorded_first_and_a_failing_sink_stops_it() {
    use privacy_pledge::audit::Action;
    let sink = Arc::new(Switch::default());
    let custodian = Custodian::builder()
        .keyring(keyring())
        .audit(sink.clone())
        .consent_store(MemoryConsentStore::new())
        .freshness_anchor(MemoryAnchorStore::new())
        .build()
        .unwrap();
    let ada = SubjectId::random();
    for _ in 0..5 {
        custodian.consents().grant::<Newsletter>(ada).unwrap();
        custodian.consents().withdraw::<Newsletter>(ada).unwrap();
    }
    sink.fail.store(true, Ordering::SeqCst);
    assert!(matches!(custodian.compact_anchor(), Err(Error::Audit(_))));
    sink.fail.store(false, Ordering::SeqCst);
    let compacted = |events: &[privacy_pledge::audit::AuditEvent]| {
        events
            .iter()
            .filter(|e| e.action() == Action::AnchorCompacted)
            .count()
    };
    assert_eq!(sink.stored.with_events(compacted), 0);
    let done = custodian.compact_anchor().unwrap();
    assert_eq!(
        (done.lines_before(), done.lines_after()),
        (10, 1),
        "the refused compaction left the log as it was"
    );
    let last = sink.stored.events().pop().unwrap();
    assert_eq!(last.action(), Action::AnchorCompacted);
    assert_eq!(last.subject(), SubjectId::from_bytes([0; 16]));
    assert_eq!(sink.stored.with_events(compacted), 1);
    assert!(!custodian.consents().is_granted::<Newsletter>(ada));
}

/// A process whose log was replaced (compacted) under it appends nothing,
/// even where the new log happens to be exactly as long as the old one it
/// read: the append names the log's epoch, and the new file has another.
#[test]
fn a5_an_append_to_a_replaced_log_fails_even_at_the_same_length() {
    let dir = TempDir::named("freshness", "replaced");
    let store = DirAnchorStore::new(dir.path("anchor")).unwrap();
    let epoch = store.epoch().unwrap();
    assert!(store.append_to(epoch, 0, b"one\n").unwrap());
    // Another process compacts: a new file of the same length takes the
    // old one's place.
    let next = store.path().with_extension("new");
    std::fs::write(&next, b"two\n").unwrap();
    std::fs::rename(&next, store.path()).unwrap();
    assert_ne!(store.epoch().unwrap(), epoch);
    assert!(store.append_to(epoch, 4, b"three\n").is_err());
    assert_eq!(std::fs::read(store.path()).unwrap(), b"two\n");
    // An appender that opened the old file and waits for its lock while
    // the rename happens fails too.
    let epoch = store.epoch().unwrap();
    let old = std::fs::File::open(store.path()).unwrap();
    old.lock().unwrap();
    let waiting = {
        let store = store.clone();
        std::thread::spawn(move || store.append_to(epoch, 4, b"four\n"))
    };
    std::thread::sleep(Duration::from_millis(200));
    std::fs::write(&next, b"five\n").unwrap();
    std::fs::rename(&next, store.path()).unwrap();
    drop(old);
    assert!(waiting.join().unwrap().is_err());
    assert_eq!(std::fs::read(store.path()).unwrap(), b"five\n");
}

// ---------------------------------------------------------------------------
// Erasure as one journaled operation

/// A consent store whose `forget` fails while `down` is set.
struct Flaky {
    rows: MemoryConsentStore,
    down: AtomicBool,
}

impl ConsentStore for Flaky {
    fn load(&self, s: SubjectId, p: PurposeId) -> Result<Option<ConsentRecord>, ConsentStoreError> {
        self.rows.load(s, p)
    }
    fn store(&self, r: &ConsentRecord) -> Result<bool, ConsentStoreError> {
        self.rows.store(r)
    }
    fn forget(&self, s: SubjectId) -> Result<(), ConsentStoreError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(ConsentStoreError("connection reset".into()));
        }
        self.rows.forget(s)
    }
    fn all(&self) -> Result<Vec<ConsentRecord>, ConsentStoreError> {
        self.rows.all()
    }
}

/// Issue 18, attack 9: the keys are destroyed, then the consent store
/// fails. The subject is refused from that moment; a retry finishes the
/// job and returns the whole receipt again — every lookup token, so the
/// host can still delete its index entries — and so does every later call.
#[test]
fn a5_a_retried_erasure_finishes_and_returns_the_whole_receipt() {
    let consents = Arc::new(Flaky {
        rows: MemoryConsentStore::new(),
        down: AtomicBool::new(false),
    });
    let anchor = Arc::new(MemoryAnchorStore::new());
    let keys = Arc::new(MemoryKeyStore::new());
    let build = || {
        Custodian::builder()
            .keyring(keyring())
            .key_store(keys.clone())
            .consent_store(consents.clone())
            .freshness_anchor(anchor.clone())
            .build()
            .unwrap()
    };
    let custodian = build();
    let ada = SubjectId::random();
    let email = custodian
        .collect::<EmailAddress, Transaction>(ada, EmailAddress::parse("ada@example.com").unwrap())
        .unwrap();
    custodian.seal(&email).unwrap();
    let token = custodian.lookup_token(&email).unwrap();
    custodian.consents().grant::<Newsletter>(ada).unwrap();

    consents.down.store(true, Ordering::SeqCst);
    assert!(matches!(custodian.erase(ada), Err(Error::ConsentStore(_))));
    // Already refused everywhere, before the retry.
    assert!(matches!(
        custodian.access(&email, |_| ()),
        Err(Error::Erased { .. })
    ));
    assert!(matches!(
        build().lookup_token(&email),
        Err(Error::Erased { .. })
    ));

    consents.down.store(false, Ordering::SeqCst);
    let receipt = build().erase(ada).unwrap();
    assert_eq!(receipt.lookup_tokens(), &[token.to_ref()]);
    assert!(!receipt.generations().is_empty());
    assert!(
        consents.all().unwrap().is_empty(),
        "the consent rows outlived the subject"
    );
    let again = custodian.erase(ada).unwrap();
    assert_eq!(again, receipt);
}

/// An anchor whose appends of an `erased` entry fail while `down` is set:
/// the process dies (or its disk fills) after the keys are destroyed and
/// before the erasure is journaled as done.
struct CrashAfterDestroy {
    log: MemoryAnchorStore,
    down: AtomicBool,
}

impl AnchorStore for CrashAfterDestroy {
    fn append(&self, expected_len: u64, line: &[u8]) -> Result<bool, AnchorError> {
        let tag = b"{\"erased\":";
        let done = line.windows(tag.len()).any(|w| w == tag);
        if done && self.down.load(Ordering::SeqCst) {
            return Err(AnchorError::new("disk full"));
        }
        self.log.append(expected_len, line)
    }
    fn read_from(&self, offset: u64) -> Result<Vec<u8>, AnchorError> {
        self.log.read_from(offset)
    }
    fn byte_len(&self) -> Result<u64, AnchorError> {
        self.log.byte_len()
    }
}

/// A5 (a process that dies mid-erasure), on SQLite: the keys are destroyed,
/// then the erasure cannot be journaled as done. The key store now says
/// "erased, nothing left", yet a retry in a new process returns the whole
/// receipt — every generation and lookup token, so the host can still clear
/// its index — because what was about to be destroyed was journaled first.
#[test]
fn a5_an_erasure_that_dies_after_destroying_keys_is_retried_with_its_receipt() {
    let dir = TempDir::named("freshness", "crash-after-destroy");
    erasure_dying_after_destroy(&dir.sqlite_url("shop.sqlite"), &dir.path("cp"));
}

/// The same on PostgreSQL.
#[test]
fn a5_an_erasure_that_dies_after_destroying_keys_is_retried_on_postgres() {
    let Some(db) = pg::database("freshness_crash_after_destroy") else {
        return;
    };
    let dir = TempDir::named("freshness", "crash-after-destroy-pg");
    erasure_dying_after_destroy(&db, &dir.path("cp"));
}

fn erasure_dying_after_destroy(url: &str, checkpoints: &Path) {
    use privacy_pledge::crypto::{KeyStore, SubjectKeys};
    use privacy_pledge::store::Database;

    let store = Store::open(&StoreConfig::new(url, checkpoints)).unwrap();
    let anchor = Arc::new(CrashAfterDestroy {
        log: MemoryAnchorStore::new(),
        down: AtomicBool::new(false),
    });
    let build = || {
        let builder = Custodian::builder()
            .keyring(keyring())
            .freshness_anchor(anchor.clone());
        match store.database() {
            Database::Sqlite(db) => builder
                .key_store(db.key_store())
                .consent_store(db.consent_store()),
            Database::Postgres(db) => builder
                .key_store(db.key_store())
                .consent_store(db.consent_store()),
            _ => unreachable!("SQLite and PostgreSQL are the stores built"),
        }
        .build()
        .unwrap()
    };
    let key_state = |s| match store.database() {
        Database::Sqlite(db) => db.key_store().load(s).unwrap(),
        Database::Postgres(db) => db.key_store().load(s).unwrap(),
        _ => unreachable!("SQLite and PostgreSQL are the stores built"),
    };
    let custodian = build();
    let ada = SubjectId::random();
    let email = custodian
        .collect::<EmailAddress, Transaction>(ada, EmailAddress::parse("ada@example.com").unwrap())
        .unwrap();
    custodian.seal(&email).unwrap();
    let token = custodian.lookup_token(&email).unwrap();

    anchor.down.store(true, Ordering::SeqCst);
    let e = custodian.erase(ada).unwrap_err();
    assert!(matches!(e, Error::Anchor(_)), "{e:?}");
    drop(custodian);
    // The keys are gone: the key store alone would now list nothing.
    assert!(matches!(key_state(ada), SubjectKeys::Erased { .. }));

    anchor.down.store(false, Ordering::SeqCst);
    let receipt = build().erase(ada).unwrap();
    assert_eq!(receipt.lookup_tokens(), &[token.to_ref()]);
    assert_eq!(receipt.generations().len(), 1);
    assert_eq!(build().erase(ada).unwrap(), receipt, "and every later call");
}

/// A5, two processes whose clocks disagree (another host, or an NTP step
/// back): the subject grants through the process whose clock runs a minute
/// ahead, then withdraws through the other. The withdrawal is stamped just
/// after the grant it follows, so it takes effect in both processes, and
/// the trail, the row and the auditor's cross-check all end in it. (It was
/// once stamped with the slower clock, sorted before the grant, and was
/// overruled by it while `withdraw` returned `Ok`.)
#[test]
fn a5_a_withdrawal_on_a_clock_behind_the_grants_still_takes_effect() {
    use privacy_pledge::audit::Action;
    use privacy_pledge::time::{FixedClock, Timestamp};
    let dir = TempDir::named("freshness", "clock-behind");
    let url = dir.sqlite_url("shop.db");
    let checkpoints = dir.path("checkpoints");
    let open = |clock: Option<Arc<FixedClock>>| {
        let store = Store::open(&StoreConfig::new(url.as_str(), &checkpoints)).unwrap();
        let mut builder = Custodian::builder()
            .keyring(keyring())
            .consent_revalidate_after(Duration::ZERO)
            .key_revalidate_after(Duration::ZERO);
        if let Some(clock) = clock {
            builder = builder.clock(clock);
        }
        store.custodian(builder).unwrap().0
    };
    let ahead = open(Some(Arc::new(FixedClock::new(
        Timestamp::now().plus_seconds(60),
    ))));
    let on_time = open(None);
    let ada = SubjectId::random();
    ahead.consents().grant::<Newsletter>(ada).unwrap();
    assert!(on_time.consent_proof::<Newsletter>(ada).is_ok());

    on_time.consents().withdraw::<Newsletter>(ada).unwrap();
    assert!(on_time.consent_proof::<Newsletter>(ada).is_err());
    assert!(ahead.consent_proof::<Newsletter>(ada).is_err());

    let db = SqliteStore::open(dir.path("shop.db")).unwrap();
    let trail = db.trail().unwrap();
    let changes: Vec<_> = trail
        .iter()
        .filter(|e| e.subject() == ada)
        .map(|e| (e.action(), e.time()))
        .collect();
    assert_eq!(changes.len(), 2);
    assert_eq!(changes[0].0, Action::ConsentGranted);
    assert_eq!(changes[1].0, Action::ConsentWithdrawn);
    assert!(changes[1].1 > changes[0].1, "{changes:?}");
    let rows = db.consent_store().all().unwrap();
    assert!(!rows[0].granted);
    assert_eq!(rows[0].since, changes[1].1);
    assert!(privacy_pledge::consent::cross_check(&rows, &trail).is_empty());
}

/// A5, one process whose clock steps back between a grant and the
/// withdrawal, with the consent register in memory and on a store: the
/// withdrawal takes effect either way.
#[test]
fn a5_a_withdrawal_after_the_clock_steps_back_still_takes_effect() {
    use privacy_pledge::time::{FixedClock, Timestamp};
    let dir = TempDir::named("freshness", "clock-back");
    let url = dir.sqlite_url("shop.db");
    let checkpoints = dir.path("checkpoints");
    let now = Timestamp::now();
    let clock = Arc::new(FixedClock::new(now));
    let store = Store::open(&StoreConfig::new(url.as_str(), &checkpoints)).unwrap();
    let on_store = store
        .custodian(Custodian::builder().keyring(keyring()).clock(clock.clone()))
        .unwrap()
        .0;
    let in_memory = Custodian::builder().clock(clock.clone()).build().unwrap();
    for custodian in [&on_store, &in_memory] {
        let ada = SubjectId::random();
        clock.set(now);
        custodian.consents().grant::<Newsletter>(ada).unwrap();
        clock.set(Timestamp::from_unix_nanos(now.unix_nanos() - 2_000_000_000));
        custodian.consents().withdraw::<Newsletter>(ada).unwrap();
        assert!(custodian.consent_proof::<Newsletter>(ada).is_err());
        assert!(!custodian.consents().is_granted::<Newsletter>(ada));
    }
}

/// A custodian on a consent store and a freshness anchor in memory, which
/// reads the rows again at every use; and the store.
fn on_memory_consent_store() -> (Custodian, Arc<MemoryConsentStore>) {
    let rows = Arc::new(MemoryConsentStore::new());
    let custodian = Custodian::builder()
        .keyring(Keyring::generate().unwrap())
        .consent_store(rows.clone())
        .freshness_anchor(MemoryAnchorStore::new())
        .consent_revalidate_after(Duration::ZERO)
        .build()
        .unwrap();
    (custodian, rows)
}

/// A2 after an erasure on a consent store: the erasure deleted the
/// subject's rows; the operator puts the last one back (authentic: the
/// custodian's key made it). The erased subject's consent must not read as
/// live — not to `is_granted`, which host code gates sends on, nor to `of`,
/// which the subject's report lists. The anchor forgot the subject's rows
/// with the erasure, so the row put back is a rollback, refused. (In one
/// process on memory stores; on SQLite and PostgreSQL, in every process:
/// `freshness::a2_a_consent_row_put_back_after_an_erasure_is_refused`.)
#[test]
fn a2_a_consent_row_put_back_after_an_erasure_does_not_read_as_live() {
    let (custodian, rows) = on_memory_consent_store();
    let ada = SubjectId::random();
    custodian.consents().grant::<Newsletter>(ada).unwrap();
    let granted = rows.load(ada, PurposeId::Newsletter).unwrap().unwrap();
    custodian.erase(ada).unwrap();
    assert!(rows.load(ada, PurposeId::Newsletter).unwrap().is_none());

    rows.put_back(granted);
    assert!(!custodian.consents().is_granted::<Newsletter>(ada));
    assert!(custodian.consents().of(ada).iter().all(|s| !s.granted));
}

#[test]
fn a2_a_consent_row_put_back_after_an_erasure_is_refused_in_every_process() {
    with_fleet(
        "put_back_erased",
        freshness::a2_a_consent_row_put_back_after_an_erasure_is_refused,
    );
}

/// A2 before a subject's report: the operator edits the subject's consent
/// row (one bit of its MAC), or deletes it. The report must not list no
/// consent beside a disclosure the consent allowed: it fails, naming the
/// tampering, instead of leaving the consent out.
#[test]
fn a2_a_report_fails_rather_than_leave_out_a_consent_whose_row_was_edited() {
    use privacy_pledge::report::StoredRecord;
    let (custodian, rows) = on_memory_consent_store();
    let ada = SubjectId::random();
    custodian.consents().grant::<Newsletter>(ada).unwrap();
    let email: PersonalInfo<EmailAddress, Newsletter> = custodian
        .collect(ada, EmailAddress::parse("ada@example.com").unwrap())
        .unwrap();
    custodian.disclose(&email, &Mailer, |_| ()).unwrap();
    let sealed = custodian.seal(&email).unwrap();
    let records: Vec<&dyn StoredRecord> = vec![&sealed];
    let report = |c: &Custodian| {
        let trail = c
            .verify_trail(c.builtin_audit_log().unwrap().inner().events())
            .unwrap();
        c.subject_report(ada, &records, &trail)
    };
    let honest = report(&custodian).unwrap();
    assert_eq!(honest.consents().len(), 1);

    let mut row = rows.all().unwrap()[0];
    row.mac[0] ^= 1;
    rows.put_back(row);
    assert!(matches!(
        report(&custodian),
        Err(Error::ConsentTampered { .. })
    ));
}

/// A5 (R11): two processes on one consent store and anchor, one clock 60 s
/// ahead of the other. The process ahead records a grant, then collects and
/// seals a value for the consent-based purpose; the other withdraws (its
/// change is stamped just after the grant, as changes come after the last
/// one) and later grants again. The value was collected under the first
/// grant: it stays expired, in memory and sealed, although the clock that
/// collected it ran ahead of the withdrawal's stamp — data held under
/// consent is dated by its grant.
#[test]
fn a5_a_value_collected_by_a_clock_ahead_stays_expired_after_a_withdrawal_elsewhere() {
    use privacy_pledge::purpose::Promotion;
    use privacy_pledge::time::{FixedClock, Timestamp};
    let keyring = Arc::new(Keyring::generate().unwrap());
    let rows = Arc::new(MemoryConsentStore::new());
    let anchor = Arc::new(MemoryAnchorStore::new());
    let process = |clock: Option<Arc<FixedClock>>| {
        let mut b = Custodian::builder()
            .keyring(keyring.clone())
            .consent_store(rows.clone())
            .freshness_anchor(anchor.clone())
            .consent_revalidate_after(Duration::ZERO);
        if let Some(clock) = clock {
            b = b.clock(clock);
        }
        b.build().unwrap()
    };
    let ahead = Arc::new(FixedClock::new(Timestamp::now().plus_seconds(60)));
    let a = process(Some(ahead.clone()));
    let b = process(None);
    let ada = SubjectId::random();
    a.consents().grant::<Promotion>(ada).unwrap();
    ahead.advance_seconds(30);
    let held: PersonalInfo<EmailAddress, Promotion> = a
        .collect(ada, EmailAddress::parse("ada@example.com").unwrap())
        .unwrap();
    let row = a.seal(&held).unwrap();
    b.consents().withdraw::<Promotion>(ada).unwrap();
    assert!(a.access(&held, |_| ()).is_err(), "the withdrawal holds");
    b.consents().grant::<Promotion>(ada).unwrap();
    assert!(matches!(
        a.access(&held, |_| ()),
        Err(Error::Expired { .. })
    ));
    assert!(matches!(a.open(&row), Err(Error::Expired { .. })));
    // Collected under the new grant, by either process: live, sealed too.
    for p in [&a, &b] {
        let fresh: PersonalInfo<EmailAddress, Promotion> = p
            .collect(ada, EmailAddress::parse("ada@example.com").unwrap())
            .unwrap();
        assert!(p.access(&fresh, |_| ()).is_ok());
        assert!(p.open(&p.seal(&fresh).unwrap()).is_ok());
    }
}

/// R11: a subject withdraws and subscribes again within one second; a
/// value collected under the new grant is sealed (an envelope keeps its
/// collection time in whole seconds) and opened: it is live, not taken for
/// one collected before the withdrawal.
#[test]
fn a_value_collected_after_a_regrant_in_the_withdrawals_second_opens() {
    use privacy_pledge::purpose::Promotion;
    let c = Custodian::in_memory();
    let ada = SubjectId::random();
    c.consents().grant::<Promotion>(ada).unwrap();
    c.consents().withdraw::<Promotion>(ada).unwrap();
    c.consents().grant::<Promotion>(ada).unwrap();
    let value: PersonalInfo<EmailAddress, Promotion> = c
        .collect(ada, EmailAddress::parse("ada@example.com").unwrap())
        .unwrap();
    let opened = c.open(&c.seal(&value).unwrap());
    assert!(opened.is_ok(), "{:?}", opened.err());
    // Unstamped values (`PersonalInfo::collect`) too.
    let form = PersonalInfo::<EmailAddress, Promotion>::collect(
        ada,
        EmailAddress::parse("ada@example.com").unwrap(),
    );
    assert!(c.open(&c.seal(&form).unwrap()).is_ok());
}

/// A3 (a copy of the anchor's directory, which is backed up with the
/// checkpoints, and later the keyring): an erasure journals its receipt —
/// the subject's id beside their lookup tokens and pseudonyms — in the
/// anchor's log, where whoever holds the keyring could confirm a guessed
/// email as the erased subject's. Once the host has applied the receipt,
/// compaction drops them: the compacted log holds neither, and the
/// erasure is still refused everywhere.
#[test]
fn a3_compaction_drops_an_erased_subjects_tokens_from_the_anchor() {
    let dir = TempDir::named("freshness", "anchor_tokens");
    let keyring = Arc::new(Keyring::generate().unwrap());
    let anchor = DirAnchorStore::new(dir.path("anchor")).unwrap();
    let custodian = Custodian::builder()
        .keyring(keyring.clone())
        .key_store(MemoryKeyStore::new())
        .freshness_anchor(anchor)
        .build()
        .unwrap();
    let ada = SubjectId::random();
    let email: PersonalInfo<EmailAddress, Transaction> = custodian
        .collect(ada, EmailAddress::parse("ada@example.com").unwrap())
        .unwrap();
    let token = custodian.lookup_token(&email).unwrap().to_ref().to_string();
    let pseudonym = custodian.pseudonym(&email).unwrap().to_ref().to_string();
    let receipt = custodian.erase(ada).unwrap();
    assert_eq!(receipt.lookup_tokens().len(), 1);
    let log = || std::fs::read_to_string(dir.path("anchor").join("state.log")).unwrap();
    assert!(
        log().contains(&token) && log().contains(&pseudonym),
        "journaled for a retry"
    );
    custodian.compact_anchor().unwrap();
    let log = log();
    assert!(log.contains(&ada.to_string()));
    assert!(!log.contains(&token) && !log.contains(&pseudonym), "{log}");
    assert!(custodian.is_erased(ada).unwrap());
    let again = custodian.erase(ada).unwrap();
    assert!(again.lookup_tokens().is_empty() && again.pseudonyms().is_empty());
}

/// A consent register over `rows` and `anchor` that re-reads the anchor on
/// every use (a bound of zero).
fn register_over(
    keyring: &Arc<Keyring>,
    rows: &Arc<MemoryConsentStore>,
    anchor: impl AnchorStore + 'static,
) -> Custodian {
    Custodian::builder()
        .keyring(keyring.clone())
        .consent_store(rows.clone())
        .freshness_anchor(anchor)
        .consent_revalidate_after(Duration::ZERO)
        .build()
        .unwrap()
}

/// Consents of two subjects, `a` granted (version 3) and `b` withdrawn
/// (version 4), and the anchor compacted: a compacted log whose shape
/// stays the same, byte for byte as long, when `a` is withdrawn and `b`
/// granted again (a `true` becomes `false`, a `false` becomes `true`).
fn two_subjects(c: &Custodian) -> (SubjectId, SubjectId) {
    let (a, b) = (SubjectId::random(), SubjectId::random());
    let consents = c.consents();
    for (subject, changes) in [(a, 3), (b, 4)] {
        for n in 0..changes {
            if n % 2 == 0 {
                consents.grant::<Newsletter>(subject).unwrap();
            } else {
                consents.withdraw::<Newsletter>(subject).unwrap();
            }
        }
    }
    c.compact_anchor().unwrap();
    (a, b)
}

/// An anchor store whose epoch never changes, as a file system that gives
/// a compacted log the inode number of the log before it (ext4 was seen
/// to, after two compactions) makes `DirAnchorStore`'s.
struct SameEpoch(DirAnchorStore);

impl AnchorStore for SameEpoch {
    fn append(&self, expected_len: u64, line: &[u8]) -> Result<bool, AnchorError> {
        self.0.append(expected_len, line)
    }
    fn read_from(&self, offset: u64) -> Result<Vec<u8>, AnchorError> {
        self.0.read_from(offset)
    }
    fn byte_len(&self) -> Result<u64, AnchorError> {
        self.0.byte_len()
    }
    fn replace(&self, expected_len: u64, bytes: &[u8]) -> Result<bool, AnchorError> {
        self.0.replace(expected_len, bytes)
    }
    fn epoch(&self) -> Result<u64, AnchorError> {
        Ok(1)
    }
}

/// A5 + A2: a process of the fleet read the compacted anchor; then `a`
/// withdraws, `b` is granted again and the anchor is compacted again into
/// a log exactly as long, whose epoch is the one the process read. Long
/// past the bound, the process must not keep its old view (where `a` is
/// granted) and take `a`'s authentic "granted" row, put back by the
/// operator, as live: it finds its last verified line gone and refuses.
#[test]
fn a2_a5_a_compacted_log_as_long_and_of_the_same_epoch_is_not_taken_for_the_old() {
    let dir = TempDir::named("freshness", "same_epoch");
    let keyring = keyring();
    let rows = Arc::new(MemoryConsentStore::new());
    let anchor = DirAnchorStore::new(dir.path("checkpoints")).unwrap();
    let maintenance = register_over(&keyring, &rows, SameEpoch(anchor.clone()));
    let (a, b) = two_subjects(&maintenance);
    let other = register_over(&keyring, &rows, SameEpoch(anchor.clone()));
    assert!(other.consents().is_granted::<Newsletter>(a));
    let granted_a = rows.load(a, PurposeId::Newsletter).unwrap().unwrap();
    let read = anchor.byte_len().unwrap();
    maintenance.consents().withdraw::<Newsletter>(a).unwrap();
    maintenance.consents().grant::<Newsletter>(b).unwrap();
    maintenance.compact_anchor().unwrap();
    assert_eq!(anchor.byte_len().unwrap(), read, "as long as the log read");
    rows.put_back(granted_a);
    assert!(
        other.consent_proof::<Newsletter>(a).is_err(),
        "a withdrawn consent is live again in a process of the fleet"
    );
}

/// The store of a compaction that is slow to replace the log: `between`
/// runs (on another thread, as another process would) after the new log
/// was built from what was read, and before the store's replacement.
struct Slow {
    inner: DirAnchorStore,
    between: std::sync::Mutex<Option<Box<dyn FnOnce() + Send>>>,
}

impl AnchorStore for Slow {
    fn append(&self, expected_len: u64, line: &[u8]) -> Result<bool, AnchorError> {
        self.inner.append(expected_len, line)
    }
    fn read_from(&self, offset: u64) -> Result<Vec<u8>, AnchorError> {
        self.inner.read_from(offset)
    }
    fn byte_len(&self) -> Result<u64, AnchorError> {
        self.inner.byte_len()
    }
    fn epoch(&self) -> Result<u64, AnchorError> {
        self.inner.epoch()
    }
    fn append_to(&self, epoch: u64, expected_len: u64, line: &[u8]) -> Result<bool, AnchorError> {
        self.inner.append_to(epoch, expected_len, line)
    }
    fn replace(&self, expected_len: u64, bytes: &[u8]) -> Result<bool, AnchorError> {
        self.inner.replace(expected_len, bytes)
    }
    fn replace_after(
        &self,
        epoch: u64,
        expected_len: u64,
        last_line: &[u8],
        bytes: &[u8],
    ) -> Result<bool, AnchorError> {
        if let Some(f) = self.between.lock().unwrap().take() {
            std::thread::spawn(f).join().unwrap();
        }
        self.inner
            .replace_after(epoch, expected_len, last_line, bytes)
    }
}

/// A5 + A2: two processes compact the anchor at once. While the slower
/// builds its log, `a` withdraws, `b` is granted again, and the faster
/// compacts into a log as long as the one the slower read. The slower must
/// not rename its log — with `a` still granted — over the faster's: the
/// withdrawal would be gone from the anchor for every process, and `a`'s
/// authentic "granted" row, put back by the operator, live for good.
#[test]
fn a2_a5_a_slower_compaction_never_replaces_a_newer_log() {
    let dir = TempDir::named("freshness", "two_compactions");
    let keyring = keyring();
    let rows = Arc::new(MemoryConsentStore::new());
    let anchor = DirAnchorStore::new(dir.path("checkpoints")).unwrap();
    let other = Arc::new(register_over(&keyring, &rows, anchor.clone()));
    let (a, b) = two_subjects(&other);
    let granted_a = rows.load(a, PurposeId::Newsletter).unwrap().unwrap();
    let slow = Arc::new(Slow {
        inner: anchor.clone(),
        between: std::sync::Mutex::new(None),
    });
    let maintenance = register_over(&keyring, &rows, slow.clone());
    let o = other.clone();
    *slow.between.lock().unwrap() = Some(Box::new(move || {
        o.consents().withdraw::<Newsletter>(a).unwrap();
        o.consents().grant::<Newsletter>(b).unwrap();
        o.compact_anchor().unwrap();
    }));
    assert!(
        maintenance.compact_anchor().is_err(),
        "the slower compaction replaced a log it never read"
    );
    rows.put_back(granted_a);
    let fresh = register_over(&keyring, &rows, anchor);
    assert!(
        fresh.consent_proof::<Newsletter>(a).is_err(),
        "the withdrawal was lost from the anchor: a's consent is live again"
    );
}
