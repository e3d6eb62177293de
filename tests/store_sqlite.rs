//! The SQLite store on a real database file: migrations, group commit,
//! streams under failure, several processes on one file (spawned child
//! processes, actor A5), a process killed mid-batch, and erasures seen
//! across processes.

#[path = "common/archive.rs"]
mod archive;
#[path = "common/disk_full.rs"]
mod disk_full;
#[path = "common/reentry.rs"]
mod reentry;
#[path = "common/tamper.rs"]
mod tamper;

#[path = "common/noting.rs"]
mod noting;
use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use privacy_pledge::audit::{
    verify_public, verify_streams, AuditKey, Checkpoint, CheckpointStore, DirCheckpointStore,
    StreamId, Tamper,
};
use privacy_pledge::crypto::Keyring;
use privacy_pledge::data::EmailAddress;
use privacy_pledge::freshness::{AnchorStore, DirAnchorStore, MemoryAnchorStore};
use privacy_pledge::purpose::{Newsletter, Transaction};
use privacy_pledge::store::sqlite::{SqliteStore, SCHEMA_VERSION};
use privacy_pledge::store::{PoolOptions, StoreError};
use privacy_pledge::time::Timestamp;
use privacy_pledge::{Custodian, Error, PersonalInfo, SubjectId};

#[path = "common/tempdir.rs"]
mod tempdir;

use tempdir::TempDir;

/// A directory unique to one test, removed on drop.
fn temp_dir(test: &str) -> TempDir {
    TempDir::named("store", test)
}

const MASTER: [u8; 32] = [42; 32];

fn keyring() -> Arc<Keyring> {
    Arc::new(Keyring::from_master(MASTER, [1]).unwrap())
}

fn email(subject: SubjectId) -> PersonalInfo<EmailAddress, Transaction> {
    PersonalInfo::collect(subject, EmailAddress::parse("ada@example.com").unwrap())
}

#[test]
fn migrations_run_once_and_refuse_a_newer_schema() {
    let dir = temp_dir("migrate");
    let path = dir.path("db.sqlite");
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
    drop(store);
    // Opening again changes nothing, and the host's own tables live beside ours.
    let store = SqliteStore::open(&path).unwrap();
    store
        .with_connection(|c| c.execute_batch("CREATE TABLE customers (id TEXT)"))
        .unwrap();
    assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
    store
        .with_connection(|c| c.execute("UPDATE pp_schema SET version = 99", []))
        .unwrap();
    drop(store);
    assert!(matches!(
        SqliteStore::open(&path),
        Err(StoreError::NewerSchema { found: 99, .. })
    ));
}

/// 64 threads record at once: every event is committed and verifies in one
/// stream, and far fewer commits than events were needed.
#[test]
fn concurrent_records_share_commits_and_verify() {
    let dir = temp_dir("group");
    let store = SqliteStore::open(dir.path("db.sqlite")).unwrap();
    let key = AuditKey::generate().unwrap();
    let sink = Arc::new(store.audit_sink(key.clone()).unwrap());
    let custodian = Arc::new(
        Custodian::builder()
            .audit(sink.clone())
            .key_store(store.key_store())
            .build()
            .unwrap(),
    );
    let threads: Vec<_> = (0..64)
        .map(|_| {
            let c = custodian.clone();
            std::thread::spawn(move || {
                let info = email(SubjectId::random());
                for _ in 0..10 {
                    c.access(&info, |e| e.domain().len()).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(sink.events(), 640);
    assert!(
        sink.commits() < 640,
        "{} commits for 640 events",
        sink.commits()
    );
    let trail = store.trail().unwrap();
    assert_eq!(trail.len(), 640);
    let reports = verify_streams(&trail, &key, &[sink.checkpoint()]);
    assert_eq!(reports.len(), 1);
    assert_eq!(reports[0].result.as_ref().unwrap().seq(), 640);
}

/// A commit that fails fails its caller (the use does not happen), nothing
/// of it is stored, and the sink continues in a new stream; every stored
/// stream verifies.
#[test]
fn a_failed_commit_fails_the_use_and_starts_a_new_stream() {
    let store = SqliteStore::open_in_memory().unwrap();
    let key = AuditKey::generate().unwrap();
    let sink = Arc::new(store.audit_sink(key.clone()).unwrap());
    let custodian = Custodian::builder().audit(sink.clone()).build().unwrap();
    let info = email(SubjectId::random());
    for _ in 0..3 {
        custodian.access(&info, |_| ()).unwrap();
    }
    let first = sink.stream();
    store
        .with_connection(|c| {
            c.execute_batch(
                "CREATE TRIGGER full BEFORE INSERT ON pp_audit_log
                 BEGIN SELECT RAISE(ABORT, 'disk full'); END",
            )
        })
        .unwrap();
    let ran = std::cell::Cell::new(false);
    assert!(matches!(
        custodian.access(&info, |_| ran.set(true)),
        Err(Error::Audit(_))
    ));
    assert!(
        !ran.get(),
        "the use happened although its event was not stored"
    );
    store
        .with_connection(|c| c.execute_batch("DROP TRIGGER full"))
        .unwrap();
    custodian.access(&info, |_| ()).unwrap();
    assert_ne!(sink.stream(), first, "a broken stream was continued");
    let trail = store.trail().unwrap();
    assert_eq!(trail.len(), 4);
    let reports = verify_streams(&trail, &key, &[]);
    assert_eq!(reports.len(), 2);
    assert!(reports.iter().all(|r| r.result.is_ok()), "{reports:?}");
}

// ---------------------------------------------------------------------------
// Several processes on one database file

/// Runs this test binary again as a child process doing `role` on `db`.
fn child(role: &str, db: &Path, extra: &[(&str, String)]) -> Command {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "--exact",
        "child_process_entry",
        "--nocapture",
        "--test-threads=1",
    ])
    .env("PP_CHILD_ROLE", role)
    .env("PP_CHILD_DB", db)
    .stdout(Stdio::piped())
    .stderr(Stdio::inherit());
    for (k, v) in extra {
        cmd.env(k, v);
    }
    cmd
}

/// Not a test of its own: the body of the child processes the tests below
/// spawn. Without `PP_CHILD_ROLE` it does nothing.
#[test]
fn child_process_entry() {
    let Ok(role) = std::env::var("PP_CHILD_ROLE") else {
        return;
    };
    // The test harness has printed "test child_process_entry ... " without a
    // line break: start the child's own lines on a fresh one.
    println!();
    let db = PathBuf::from(std::env::var("PP_CHILD_DB").unwrap());
    let store = SqliteStore::open(&db).unwrap();
    let keyring = keyring();
    let mut sink = store.audit_sink(keyring.audit_key()).unwrap();
    if let Ok(dir) = std::env::var("PP_CKPT_DIR") {
        sink = sink.with_checkpoints(
            keyring.checkpoint_signer().unwrap(),
            DirCheckpointStore::new(dir).unwrap(),
            10,
        );
    }
    let sink = Arc::new(sink);
    let custodian = Custodian::builder()
        .keyring(keyring.clone())
        .key_store(store.key_store())
        .audit(sink.clone())
        .key_revalidate_after(Duration::ZERO)
        .build()
        .unwrap();
    match role.as_str() {
        // Grants, withdraws, accesses, seals and erases; prints its head.
        "worker" => {
            for _ in 0..40 {
                let s = SubjectId::random();
                custodian.consents().grant::<Newsletter>(s).unwrap();
                let info = email(s);
                custodian.access(&info, |_| ()).unwrap();
                let row = custodian.seal(&info).unwrap();
                custodian.open(&row).unwrap();
                custodian.consents().withdraw::<Newsletter>(s).unwrap();
                custodian.erase(s).unwrap();
            }
            let (stream, head) = sink.checkpoint();
            if std::env::var("PP_CKPT_DIR").is_ok() {
                // Clean shutdown: the head, signed.
                sink.sign_checkpoint().unwrap();
            }
            println!("HEAD {stream} {head}");
        }
        // Records until killed, printing each acknowledged sequence number.
        "until_killed" => {
            let info = email(SubjectId::random());
            loop {
                custodian.access(&info, |_| ()).unwrap();
                let (stream, head) = sink.checkpoint();
                println!("ACK {stream} {}", head.seq());
            }
        }
        // Seals for a given subject, prints the envelope, then opens it every
        // 20 ms until it is refused as erased.
        "opener" => {
            let s: SubjectId = std::env::var("PP_SUBJECT").unwrap().parse().unwrap();
            let row = custodian.seal(&email(s)).unwrap();
            println!("SEALED {}", row.to_text());
            loop {
                match custodian.open(&row) {
                    Ok(_) => std::thread::sleep(Duration::from_millis(20)),
                    Err(Error::Erased { .. }) => {
                        println!("ERASED");
                        return;
                    }
                    Err(e) => panic!("{e}"),
                }
            }
        }
        // Uses a subscriber's address every 10 ms through a custodian whose
        // consent lives in the store; says when consent stops it.
        "consent_watcher" => {
            let s: SubjectId = std::env::var("PP_SUBJECT").unwrap().parse().unwrap();
            let watcher = Custodian::builder()
                .keyring(keyring.clone())
                .key_store(store.key_store())
                .audit(store.audit_sink(keyring.audit_key()).unwrap())
                .consent_store(store.consent_store())
                .freshness_anchor(anchor_of(&db))
                .consent_revalidate_after(Duration::from_millis(200))
                .build()
                .unwrap();
            let info: PersonalInfo<EmailAddress, Newsletter> =
                PersonalInfo::collect(s, EmailAddress::parse("ada@example.com").unwrap());
            let mut live = false;
            loop {
                match watcher.access(&info, |_| ()) {
                    Ok(()) if !live => {
                        live = true;
                        println!("LIVE");
                    }
                    Ok(()) => {}
                    Err(Error::NoConsent { .. }) if live => {
                        println!("STOPPED");
                        return;
                    }
                    Err(Error::NoConsent { .. }) => {}
                    Err(e) => panic!("{e}"),
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        other => panic!("unknown child role {other}"),
    }
}

fn heads_of(output: &str) -> Vec<(StreamId, Checkpoint)> {
    output
        .lines()
        .filter_map(|l| l.strip_prefix("HEAD "))
        .map(|l| {
            let (s, c) = l.split_once(' ').unwrap();
            (s.parse().unwrap(), c.parse().unwrap())
        })
        .collect()
}

/// Four processes append to one file at once, with no lock between them:
/// four streams, none forked, each intact up to the head its writer reported.
#[test]
fn a5_four_processes_on_one_file_write_four_intact_streams() {
    let dir = temp_dir("fleet");
    let db = dir.path("fleet.sqlite");
    SqliteStore::open(&db).unwrap();
    let children: Vec<_> = (0..4)
        .map(|_| child("worker", &db, &[]).spawn().unwrap())
        .collect();
    let mut heads = Vec::new();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(out.status.success());
        heads.extend(heads_of(&String::from_utf8_lossy(&out.stdout)));
    }
    assert_eq!(heads.len(), 4);
    let store = SqliteStore::open(&db).unwrap();
    let trail = store.trail().unwrap();
    let reports = verify_streams(&trail, &keyring().audit_key(), &heads);
    assert_eq!(reports.len(), 4, "{reports:?}");
    for r in &reports {
        let head = r.result.as_ref().unwrap();
        assert_eq!(head.seq(), 40 * 6, "{r:?}");
    }
    // The streams really interleaved in the table (they ran at once).
    let streams: HashSet<_> = trail.iter().map(|e| e.stream()).collect();
    assert_eq!(streams.len(), 4);
}

/// A process killed with SIGKILL in the middle of writing loses no event it
/// acknowledged, stores none twice, and leaves a stream that verifies.
#[test]
fn a5_a_process_killed_mid_batch_loses_nothing_it_acknowledged() {
    let dir = temp_dir("kill");
    let db = dir.path("kill.sqlite");
    SqliteStore::open(&db).unwrap();
    let mut c = child("until_killed", &db, &[]).spawn().unwrap();
    let stdout = c.stdout.take().unwrap();
    let mut acked = BTreeMap::new();
    let mut lines = BufReader::new(stdout).lines();
    // Let it write a while, then kill it while it is writing.
    while acked.len() < 200 {
        let line = lines.next().unwrap().unwrap();
        if let Some(rest) = line.strip_prefix("ACK ") {
            let (s, seq) = rest.split_once(' ').unwrap();
            acked.insert(seq.parse::<u64>().unwrap(), s.to_owned());
        }
    }
    c.kill().unwrap();
    for line in lines.map_while(Result::ok) {
        if let Some(rest) = line.strip_prefix("ACK ") {
            let (s, seq) = rest.split_once(' ').unwrap();
            acked.insert(seq.parse::<u64>().unwrap(), s.to_owned());
        }
    }
    c.wait().unwrap();

    let trail = SqliteStore::open(&db).unwrap().trail().unwrap();
    let stored: HashSet<u64> = trail.iter().map(|e| e.seq()).collect();
    assert_eq!(stored.len(), trail.len(), "an event was stored twice");
    for seq in acked.keys() {
        assert!(stored.contains(seq), "acknowledged event {seq} was lost");
    }
    let reports = verify_streams(&trail, &keyring().audit_key(), &[]);
    assert_eq!(reports.len(), 1);
    assert!(reports[0].result.is_ok(), "{reports:?}");
}

/// The lines a child process prints, read as they come.
type ChildLines = std::io::Lines<BufReader<std::process::ChildStdout>>;

/// Spawns an "opener" child for `subject` on `db` and waits until it has
/// sealed (and caches the subject's key): the child, its further lines,
/// and the envelope it sealed (text form).
fn opener_sealed(db: &Path, subject: SubjectId) -> (std::process::Child, ChildLines, String) {
    let mut opener = child("opener", db, &[("PP_SUBJECT", subject.to_string())])
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(opener.stdout.take().unwrap()).lines();
    let sealed = lines
        .by_ref()
        .map_while(Result::ok)
        .find_map(|l| l.strip_prefix("SEALED ").map(str::to_owned));
    let Some(sealed) = sealed else {
        let _ = opener.kill();
        panic!("the other process did not seal");
    };
    (opener, lines, sealed)
}

/// Waits (10 s at most) for an opener child to report the subject erased
/// and exit cleanly.
fn opener_sees_erased(mut opener: std::process::Child, mut lines: ChildLines) {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(lines.next().map(|l| l.unwrap()));
        // Keep reading, so the child's closing lines find an open pipe.
        for _ in lines.by_ref() {}
    });
    let seen = rx.recv_timeout(Duration::from_secs(10));
    if seen.is_err() {
        let _ = opener.kill();
        panic!("the other process kept opening an erased subject's data");
    }
    assert_eq!(seen.unwrap().as_deref(), Some("ERASED"));
    assert!(opener.wait().unwrap().success());
}

/// An erasure made by one process stops opens in another process sharing
/// the database (here with revalidation on every open: at once).
#[test]
fn a5_an_erasure_in_one_process_stops_opens_in_another() {
    let dir = temp_dir("erase");
    let db = dir.path("erase.sqlite");
    let store = SqliteStore::open(&db).unwrap();
    let subject = SubjectId::random();
    let (opener, lines, _) = opener_sealed(&db, subject);

    let custodian = custodian_on(&store);
    std::thread::sleep(Duration::from_millis(100));
    custodian.erase(subject).unwrap();
    opener_sees_erased(opener, lines);
}

/// A5, with a real second process: an id this process drew with
/// `new_subject` (so its first seal skips the key store's read), handed to
/// another process that seals for it first. This process's first seal is
/// refused its insert, reads the other's key and seals under it: one
/// generation in the file, each process's envelope opens in the other, and
/// an erasure here stops the other's opens.
#[test]
fn a5_a_drawn_id_keyed_first_by_another_process_seals_under_its_key() {
    use privacy_pledge::ExposeSecret;

    let dir = temp_dir("drawn");
    let db = dir.path("drawn.sqlite");
    let store = SqliteStore::open(&db).unwrap();
    let custodian = custodian_on(&store);
    let subject = custodian.new_subject().unwrap();
    let (opener, lines, theirs) = opener_sealed(&db, subject);

    let ours = custodian.seal(&email(subject)).unwrap();
    let theirs = privacy_pledge::Sealed::<EmailAddress, Transaction>::from_text(&theirs).unwrap();
    assert_eq!(theirs.key_id(), ours.key_id());
    for sealed in [&theirs, &ours] {
        let opened = custodian.open(sealed).unwrap();
        custodian
            .access(&opened, |e| {
                assert_eq!(e.expose_secret(), "ada@example.com")
            })
            .unwrap();
    }
    let generations: i64 = store
        .with_connection(|c| {
            c.query_row(
                "SELECT count(*) FROM pp_subject_keys WHERE subject = ?1",
                [subject.to_string()],
                |r| r.get(0),
            )
        })
        .unwrap();
    assert_eq!(generations, 1);
    custodian.erase(subject).unwrap();
    opener_sees_erased(opener, lines);
}

/// Two connections to one file stand for two processes (A5): with a 1 ms
/// key bound, an erasure made through one is seen by the other about 1 ms
/// later; a custodian with the default 30 s bound still serves its cached
/// key meanwhile, so the bound is what makes the difference.
#[test]
fn a5_an_erasure_elsewhere_is_seen_after_a_1_ms_key_bound() {
    let dir = temp_dir("bound");
    let db = dir.path("bound.sqlite");
    let keyring = keyring();
    let on_own_connection = |bound: Option<Duration>| {
        let store = SqliteStore::open(&db).unwrap();
        let builder = Custodian::builder()
            .keyring(keyring.clone())
            .key_store(store.key_store())
            .audit(store.audit_sink(keyring.audit_key()).unwrap());
        match bound {
            Some(b) => builder.key_revalidate_after(b),
            None => builder,
        }
        .build()
        .unwrap()
    };
    let (here, default, there) = (
        on_own_connection(Some(Duration::from_millis(1))),
        on_own_connection(None),
        on_own_connection(None),
    );
    let subject = SubjectId::random();
    let sealed = here.seal(&email(subject)).unwrap();
    // Both cache the subject's key.
    here.open(&sealed).unwrap();
    default.open(&sealed).unwrap();
    there.erase(subject).unwrap();
    let erased_at = std::time::Instant::now();
    let seen = loop {
        match here.open(&sealed) {
            Ok(_) => {
                assert!(erased_at.elapsed() < Duration::from_secs(5), "never seen");
                std::thread::sleep(Duration::from_micros(100));
            }
            Err(Error::Erased { .. }) => break erased_at.elapsed(),
            Err(e) => panic!("{e}"),
        }
    };
    assert!(seen < Duration::from_secs(1), "seen after {seen:?}");
    assert!(default.open(&sealed).is_ok());
}

/// A1: the custodian called inside `with_connection`, whose closure holds
/// the connection its audit sink, key store and consent store need, used to
/// wait forever; every operation is now refused with `Error::Reentrant`.
/// The store's own methods inside the closure answer `StoreError::Reentrant`
/// (or their trait's error), and a nested `with_connection` panics instead
/// of waiting for itself. Run on another thread with a timeout, so a
/// regression fails instead of hanging.
#[test]
fn a1_the_custodian_inside_with_connection_is_refused_not_deadlocked() {
    let store = SqliteStore::open_in_memory().unwrap();
    let keyring = keyring();
    let custodian = Custodian::builder()
        .keyring(keyring.clone())
        .key_store(store.key_store())
        .consent_store(store.consent_store())
        .freshness_anchor(MemoryAnchorStore::new())
        .audit(store.audit_sink(keyring.audit_key()).unwrap())
        .build()
        .unwrap();
    let inner = store.clone();
    let outcomes = reentry::custodian_inside_the_store(
        Arc::new(custodian),
        Arc::new(move |f| inner.with_connection(|_| f())),
    );
    reentry::all_refused(&outcomes);

    let other = SqliteStore::open_in_memory().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let s = store.clone();
    std::thread::spawn(move || {
        use privacy_pledge::consent::ConsentStore;
        use privacy_pledge::crypto::KeyStore;
        let refused = s.with_connection(|_| {
            [
                matches!(s.trail(), Err(StoreError::Reentrant)),
                matches!(s.checkpoints(), Err(StoreError::Reentrant)),
                matches!(s.schema_version(), Err(StoreError::Reentrant)),
                s.key_store().load(SubjectId::random()).is_err(),
                s.consent_store().all().is_err(),
            ]
        });
        // Another store's connection is not this one.
        let unrelated = other.with_connection(|_| s.trail().is_ok());
        let nested = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            s.with_connection(|_| s.with_connection(|_| ()))
        }));
        let _ = tx.send((refused, unrelated, nested.is_err(), s.trail().is_ok()));
    });
    let (refused, unrelated, nested_panicked, after) = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("a store call inside with_connection deadlocked");
    assert_eq!(refused, [true; 5]);
    assert!(unrelated);
    assert!(nested_panicked);
    assert!(after, "the connection stayed marked as held");
}

/// A2 edits, deletes and moves rows of `pp_audit_log` and drops a whole
/// stream: each is reported for its stream, the others stay intact.
#[test]
fn a2_tampering_is_reported_per_stream() {
    let store = SqliteStore::open_in_memory().unwrap();
    let key = AuditKey::generate().unwrap();
    let mut heads = Vec::new();
    for _ in 0..4 {
        let sink = Arc::new(store.audit_sink(key.clone()).unwrap());
        let c = Custodian::builder().audit(sink.clone()).build().unwrap();
        let info = email(SubjectId::random());
        for _ in 0..5 {
            c.access(&info, |_| ()).unwrap();
        }
        heads.push(sink.checkpoint());
    }
    let stream = |i: usize| heads[i].0.to_string();
    let run = |sql: String| store.with_connection(|c| c.execute(&sql, [])).unwrap();
    // Stream 0: an entry deleted from the middle.
    run(format!(
        "DELETE FROM pp_audit_log WHERE stream = '{}' AND seq = 3",
        stream(0)
    ));
    // Stream 1: the last entry deleted (only the trusted head shows it).
    run(format!(
        "DELETE FROM pp_audit_log WHERE stream = '{}' AND seq = 5",
        stream(1)
    ));
    // Stream 2: dropped altogether.
    run(format!(
        "DELETE FROM pp_audit_log WHERE stream = '{}'",
        stream(2)
    ));
    let trail = store.trail().unwrap();
    let reports = verify_streams(&trail, &key, &heads);
    let by_stream = |i: usize| {
        reports
            .iter()
            .find(|r| r.stream == Some(heads[i].0))
            .unwrap()
            .result
    };
    assert_eq!(by_stream(0).unwrap_err().reason, Tamper::Deleted);
    assert_eq!(by_stream(1).unwrap_err().reason, Tamper::Truncated);
    assert_eq!(by_stream(2).unwrap_err().reason, Tamper::Truncated);
    assert_eq!(by_stream(3), Ok(heads[3].1));

    // A row moved into another stream (its stream column and JSON edited
    // together) no longer matches its MAC.
    let moved = store
        .with_connection(|c| {
            c.query_row(
                "SELECT id, event FROM pp_audit_log WHERE stream = ?1 AND seq = 2",
                [stream(3)],
                |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)),
            )
        })
        .unwrap();
    // Into the hole left in stream 0 (its seq 3).
    let json = moved
        .1
        .replace(&stream(3), &stream(0))
        .replace("\"seq\":2", "\"seq\":3");
    store
        .with_connection(|c| {
            c.execute(
                "UPDATE pp_audit_log SET stream = ?1, seq = 3, event = ?2 WHERE id = ?3",
                rusqlite::params![stream(0), json, moved.0],
            )
        })
        .unwrap();
    let trail = store.trail().unwrap();
    let reports = verify_streams(&trail, &key, &heads);
    let s3 = reports
        .iter()
        .find(|r| r.stream == Some(heads[3].0))
        .unwrap();
    assert!(s3.result.is_err(), "{s3:?}");
    let s0 = reports
        .iter()
        .find(|r| r.stream == Some(heads[0].0))
        .unwrap();
    assert_eq!(s0.result.unwrap_err().expected_seq, 3, "{s0:?}");
    // An edited column alone is refused when reading the trail.
    run(format!(
        "UPDATE pp_audit_log SET action = 'erase' WHERE stream = '{}' AND seq = 1",
        stream(3)
    ));
    assert!(store.trail().is_err());
}

/// Four processes sign checkpoints into a directory outside the database; an
/// auditor (A4) with the trail, those checkpoints and the **public** key only
/// finds every stream intact and vouched for to its last entry. Then A2
/// edits, cuts and forges, and each is reported without any secret.
#[test]
fn a4_the_public_key_alone_verifies_a_fleets_trail_and_catches_a2() {
    let dir = temp_dir("public");
    let db = dir.path("fleet.sqlite");
    let outside = dir.path("checkpoints");
    SqliteStore::open(&db).unwrap();
    let children: Vec<_> = (0..4)
        .map(|_| {
            child(
                "worker",
                &db,
                &[("PP_CKPT_DIR", outside.display().to_string())],
            )
            .spawn()
            .unwrap()
        })
        .collect();
    for c in children {
        assert!(c.wait_with_output().unwrap().status.success());
    }
    let store = SqliteStore::open(&db).unwrap();
    let public = keyring().checkpoint_signer().unwrap().public_key();
    let checkpoints = DirCheckpointStore::new(&outside).unwrap().load().unwrap();
    assert_eq!(checkpoints.len(), 4);
    // The database holds the same newest checkpoints.
    assert_eq!(store.checkpoints().unwrap().len(), 4);
    let report = verify_public(&store.trail().unwrap(), &public, &checkpoints);
    assert!(report.is_intact(), "{report:?}");
    for s in &report.streams {
        assert_eq!(s.vouched_through, Some(240));
    }

    // A2 edits one entry's content (JSON and its column copy together):
    // the next entry's link breaks. No key is needed to see it.
    let victim = checkpoints[0].stream().to_string();
    store
        .with_connection(|c| {
            c.execute(
                "UPDATE pp_audit_log SET event = replace(event, '\"outcome\":\"allowed\"', '\"outcome\":\"denied\"')
                 WHERE stream = ?1 AND seq = 7",
                [&victim],
            )
        })
        .unwrap();
    let report = verify_public(&store.trail().unwrap(), &public, &checkpoints);
    let hit = report
        .streams
        .iter()
        .find(|s| s.stream == Some(checkpoints[0].stream()))
        .unwrap();
    assert_eq!(hit.result.unwrap_err().reason, Tamper::BadLink, "{hit:?}");
    assert_eq!(
        report.streams.iter().filter(|s| s.result.is_ok()).count(),
        3
    );

    // A2 cuts another stream's tail: its signed checkpoint shows it.
    let cut = checkpoints[1].stream().to_string();
    store
        .with_connection(|c| {
            c.execute(
                "DELETE FROM pp_audit_log WHERE stream = ?1 AND seq > 200",
                [&cut],
            )
        })
        .unwrap();
    let report = verify_public(&store.trail().unwrap(), &public, &checkpoints);
    let hit = report
        .streams
        .iter()
        .find(|s| s.stream == Some(checkpoints[1].stream()))
        .unwrap();
    assert_eq!(hit.result.unwrap_err().reason, Tamper::Truncated);

    // A checkpoint signed by anyone else vouches for nothing and is reported.
    let forger = privacy_pledge::audit::CheckpointSigner::from_seed(&[1; 32]).unwrap();
    let forged = forger.sign(
        checkpoints[1].stream(),
        Checkpoint::new(200, [0; 32]),
        Timestamp::now(),
    );
    let mut with_forgery = checkpoints.clone();
    with_forgery.push(forged);
    let report = verify_public(&store.trail().unwrap(), &public, &with_forgery);
    assert_eq!(report.bad_checkpoints, vec![forged]);
    assert!(!report.is_intact());
}

// ---------------------------------------------------------------------------
// Consent in the store

/// The freshness anchor of the database file `db`, beside it (in the
/// test's directory, where the database operator is not).
fn anchor_of(db: &Path) -> DirAnchorStore {
    DirAnchorStore::new(db.with_extension("anchor")).unwrap()
}

fn with_consents(store: &SqliteStore, anchor: impl AnchorStore + 'static) -> Custodian {
    let keyring = keyring();
    Custodian::builder()
        .keyring(keyring.clone())
        .key_store(store.key_store())
        .audit(store.audit_sink(keyring.audit_key()).unwrap())
        .consent_store(store.consent_store())
        .freshness_anchor(anchor)
        .build()
        .unwrap()
}

/// A withdrawal made by one process stops another process's uses within
/// the bound it was built with (200 ms here), and at once in the process
/// that made it. No trail is replayed anywhere.
#[test]
fn a5_a_withdrawal_in_one_process_stops_another_within_the_bound() {
    let dir = temp_dir("consent-bound");
    let db = dir.path("c.sqlite");
    let store = SqliteStore::open(&db).unwrap();
    let subject = SubjectId::random();
    let here = with_consents(&store, anchor_of(&db));
    here.consents().grant::<Newsletter>(subject).unwrap();

    let mut watcher = child(
        "consent_watcher",
        &db,
        &[("PP_SUBJECT", subject.to_string())],
    )
    .spawn()
    .unwrap();
    let mut lines = BufReader::new(watcher.stdout.take().unwrap()).lines();
    let live = lines.by_ref().map_while(Result::ok).any(|l| l == "LIVE");
    assert!(live, "the other process never saw the grant");

    here.consents().withdraw::<Newsletter>(subject).unwrap();
    let withdrawn = std::time::Instant::now();
    assert!(
        !here.consents().is_granted::<Newsletter>(subject),
        "not at once here"
    );
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let stopped = lines.by_ref().map_while(Result::ok).any(|l| l == "STOPPED");
        let _ = tx.send(stopped);
        for _ in lines {}
    });
    let stopped = rx.recv_timeout(Duration::from_secs(10));
    let took = withdrawn.elapsed();
    if stopped != Ok(true) {
        let _ = watcher.kill();
        panic!("the other process kept using the data after the withdrawal");
    }
    eprintln!("withdrawal seen by the other process after {took:?} (bound 200 ms)");
    assert!(took < Duration::from_millis(1500), "took {took:?}");
    assert!(watcher.wait().unwrap().success());

    // A restart reads consent from the store: no replay, no checkpoint needed.
    let restarted = with_consents(&store, anchor_of(&db));
    assert!(!restarted.consents().is_granted::<Newsletter>(subject));
    let other = SubjectId::random();
    here.consents().grant::<Newsletter>(other).unwrap();
    assert!(with_consents(&store, anchor_of(&db))
        .consents()
        .is_granted::<Newsletter>(other));
}

/// Two processes open one new database file at once (A5): the second finds
/// the first holding a lock while the file is not yet in WAL mode, where
/// SQLite refuses the switch at once rather than waiting. It waits, and
/// starts.
#[test]
fn a5_a_process_opening_a_new_file_while_another_holds_it_waits() {
    use privacy_pledge::store::sqlite::rusqlite::Connection;
    let dir = temp_dir("open-race");
    let db = dir.path("new.sqlite");
    let first = Connection::open(&db).unwrap();
    first
        .execute_batch("BEGIN IMMEDIATE; CREATE TABLE host_table (x INTEGER);")
        .unwrap();
    let holder = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        first.execute_batch("COMMIT").unwrap();
    });
    let started = std::time::Instant::now();
    let store = SqliteStore::open(&db).unwrap();
    assert!(started.elapsed() >= Duration::from_millis(250), "it waited");
    assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
    holder.join().unwrap();
}

/// Two processes change one consent one after the other on clocks that
/// disagree, or one grants while another erases the subject (A5). The
/// audit trail orders changes by time, so a change is stamped after the
/// one it follows, whatever its clock says; a grant for a subject erased elsewhere is refused, or —
/// if the erasure removed the rows just before the grant's write landed —
/// its row is removed again. Either way the consent rows say what the
/// trail says (`consent::cross_check`), and no row outlives its subject.
#[test]
fn a5_consent_changes_racing_across_processes_leave_rows_the_trail_agrees_with() {
    use privacy_pledge::consent::{cross_check, ConsentRecord, ConsentStore, ConsentStoreError};
    use privacy_pledge::purpose::PurposeId;
    use privacy_pledge::time::FixedClock;

    let dir = temp_dir("consent-race");
    let db = dir.path("c.sqlite");
    let at = |s: u64| Timestamp::from_unix_seconds(1_700_000_000 + s);
    let process = |clock: Arc<FixedClock>, consents: Arc<dyn ConsentStore>| {
        let store = SqliteStore::open(&db).unwrap();
        let keyring = keyring();
        Custodian::builder()
            .keyring(keyring.clone())
            .key_store(store.key_store())
            .audit(store.audit_sink(keyring.audit_key()).unwrap())
            .consent_store(consents)
            .freshness_anchor(anchor_of(&db))
            .consent_revalidate_after(Duration::ZERO)
            .clock(clock)
            .build()
            .unwrap()
    };
    let consents =
        || -> Arc<dyn ConsentStore> { Arc::new(SqliteStore::open(&db).unwrap().consent_store()) };
    let (early, late) = (
        Arc::new(FixedClock::new(at(1))),
        Arc::new(FixedClock::new(at(2))),
    );
    let (x, y) = (
        process(early.clone(), consents()),
        process(late, consents()),
    );

    // Y withdraws at t=2; then X, whose clock says t=1, grants. The grant
    // comes after the withdrawal, so it is stamped just after it and stands:
    // in both processes, in the row and in the trail (checked below).
    let ada = SubjectId::random();
    y.consents().grant::<Newsletter>(ada).unwrap();
    y.consents().withdraw::<Newsletter>(ada).unwrap();
    x.consents().grant::<Newsletter>(ada).unwrap();
    assert!(
        x.consents().is_granted::<Newsletter>(ada),
        "the later grant stands"
    );
    assert!(y.consents().is_granted::<Newsletter>(ada));

    // Y erases Bob; X, which has not seen it, grants: refused, no row.
    let bob = SubjectId::random();
    x.consents().grant::<Newsletter>(bob).unwrap();
    y.erase(bob).unwrap();
    assert!(matches!(
        x.consents().grant::<Newsletter>(bob),
        Err(Error::Erased { .. })
    ));

    // Y erases Carol just as X's grant is written: the row is removed again.
    // (`loads`: how many loads pass before the erasure; `None`: it comes
    // just before the row is stored.)
    struct EraseFirst {
        inner: Arc<dyn ConsentStore>,
        erase: Mutex<Option<Box<dyn FnOnce() + Send>>>,
        loads: Mutex<Option<usize>>,
    }
    impl EraseFirst {
        fn erase_now(&self) {
            if let Some(erase) = self.erase.lock().unwrap().take() {
                // Another process, on another thread.
                std::thread::spawn(erase).join().unwrap();
            }
        }
    }
    impl ConsentStore for EraseFirst {
        fn load(
            &self,
            s: SubjectId,
            p: PurposeId,
        ) -> Result<Option<ConsentRecord>, ConsentStoreError> {
            let now = {
                let mut loads = self.loads.lock().unwrap();
                let now = *loads == Some(0);
                *loads = loads.map(|n| n.saturating_sub(1));
                now
            };
            if now {
                self.erase_now();
            }
            self.inner.load(s, p)
        }
        fn store(&self, record: &ConsentRecord) -> Result<bool, ConsentStoreError> {
            if self.loads.lock().unwrap().is_none() {
                self.erase_now();
            }
            self.inner.store(record)
        }
        fn forget(&self, s: SubjectId) -> Result<(), ConsentStoreError> {
            self.inner.forget(s)
        }
        fn all(&self) -> Result<Vec<ConsentRecord>, ConsentStoreError> {
            self.inner.all()
        }
    }
    let carol = SubjectId::random();
    let y = Arc::new(y);
    let eraser = y.clone();
    let racing = process(
        early,
        Arc::new(EraseFirst {
            inner: consents(),
            erase: Mutex::new(Some(Box::new(move || {
                eraser.erase(carol).unwrap();
            }))),
            loads: Mutex::new(None),
        }),
    );
    assert!(matches!(
        racing.consents().grant::<Newsletter>(carol),
        Err(Error::Erased { .. })
    ));

    // X (clock t=1) erases Dave after Z (clock t=3) has checked for an
    // erasure and recorded its grant, before Z anchors it: the anchor
    // refuses the grant, and the trail holds a grant stamped after the
    // erasure that never took effect. An erasure is final: no row, and the
    // cross-check agrees.
    let dave = SubjectId::random();
    let x = Arc::new(x);
    let eraser = x.clone();
    let racing = process(
        Arc::new(FixedClock::new(at(3))),
        Arc::new(EraseFirst {
            inner: consents(),
            erase: Mutex::new(Some(Box::new(move || {
                eraser.erase(dave).unwrap();
            }))),
            // The first load is the check before the event is recorded.
            loads: Mutex::new(Some(1)),
        }),
    );
    assert!(matches!(
        racing.consents().grant::<Newsletter>(dave),
        Err(Error::Erased { .. })
    ));

    let store = SqliteStore::open(&db).unwrap();
    let rows = store.consent_store().all().unwrap();
    assert!(rows
        .iter()
        .all(|r| ![bob, carol, dave].contains(&r.subject)));
    assert_eq!(cross_check(&rows, &store.trail().unwrap()), vec![]);
}

/// A2 writes a consent row of its own, or edits one: it does not
/// authenticate, and the use is refused (fail closed).
#[test]
fn a2_a_forged_or_edited_consent_row_is_refused() {
    use privacy_pledge::consent::{ConsentRecord, ConsentStore};
    use privacy_pledge::purpose::PurposeId;
    let store = SqliteStore::open_in_memory().unwrap();
    let anchor = Arc::new(MemoryAnchorStore::new());
    let custodian = with_consents(&store, anchor.clone());
    let victim = SubjectId::random();
    let forged = ConsentRecord {
        subject: victim,
        purpose: PurposeId::Promotion,
        granted: true,
        since: Timestamp::now(),
        withdrawn_at: None,
        version: 1,
        mac: [7; 32],
    };
    assert!(store.consent_store().store(&forged).unwrap());
    assert!(matches!(
        custodian.consent_proof::<privacy_pledge::purpose::Promotion>(victim),
        Err(Error::ConsentTampered { .. })
    ));
    assert!(!custodian
        .consents()
        .is_granted::<privacy_pledge::purpose::Promotion>(victim));

    // An authentic withdrawal edited into a grant in place.
    let ada = SubjectId::random();
    custodian.consents().grant::<Newsletter>(ada).unwrap();
    custodian.consents().withdraw::<Newsletter>(ada).unwrap();
    store
        .with_connection(|c| {
            c.execute(
                "UPDATE pp_consents SET record = replace(record, '\"granted\":false', '\"granted\":true')",
                [],
            )
        })
        .unwrap();
    let fresh = with_consents(&store, anchor);
    assert!(!fresh.consents().is_granted::<Newsletter>(ada));
    let info: PersonalInfo<EmailAddress, Newsletter> =
        PersonalInfo::collect(ada, EmailAddress::parse("ada@example.com").unwrap());
    assert!(matches!(
        fresh.access(&info, |_| ()),
        Err(Error::ConsentTampered { .. })
    ));
}

/// The SQLite operator, as `tests/common/tamper.rs` drives it.
fn sqlite_operator<R>(store: &SqliteStore, f: impl FnOnce(&tamper::Operator<'_>) -> R) -> R {
    use privacy_pledge::consent::ConsentStore;
    let run = |sql: &str| store.with_connection(|c| c.execute_batch(sql)).unwrap();
    let trail = || store.trail();
    let consents = || store.consent_store().all().unwrap();
    f(&tamper::Operator {
        run: &run,
        trail: &trail,
        consents: &consents,
        // The SQLite trail has no `UNIQUE (stream, seq)` (schema version 8):
        // nothing stops a replayed row at the door but the verifier.
        drop_unique: "",
    })
}

/// A2 edits, deletes, inserts, reorders, replays, cuts and drops rows of
/// `pp_audit_log`, one stream each, then drops the table: each is reported
/// precisely for its own stream.
#[test]
fn a2_every_tampering_is_reported_precisely() {
    let store = SqliteStore::open_in_memory().unwrap();
    let keyring = keyring();
    let signer = || keyring.checkpoint_signer().unwrap();
    let dir = temp_dir("tamper");
    let outside = DirCheckpointStore::new(dir.path("checkpoints")).unwrap();
    let signed = tamper::write_streams(|| {
        store
            .audit_sink(keyring.audit_key())
            .unwrap()
            .with_checkpoints(signer(), outside.clone(), 100)
    });
    sqlite_operator(&store, |op| {
        tamper::a2_every_tampering_is_reported(
            op,
            &keyring.audit_key(),
            &signer().public_key(),
            &signed,
        )
    });
}

/// Runs a scenario of `tests/common/tamper.rs` on a fresh in-memory
/// database, its sinks signing every `every` events into a fresh directory.
fn on_fresh_store(
    name: &str,
    every: u64,
    scenario: impl FnOnce(
        &tamper::Operator<'_>,
        &dyn Fn() -> privacy_pledge::store::sqlite::SqliteAuditSink,
        &Arc<Keyring>,
        &DirCheckpointStore,
    ),
) {
    let store = SqliteStore::open_in_memory().unwrap();
    let keyring = keyring();
    let dir = temp_dir(name);
    let outside = DirCheckpointStore::new(dir.path("checkpoints")).unwrap();
    let new_sink = || {
        store
            .audit_sink(keyring.audit_key())
            .unwrap()
            .with_checkpoints(keyring.checkpoint_signer().unwrap(), outside.clone(), every)
    };
    sqlite_operator(&store, |op| scenario(op, &new_sink, &keyring, &outside));
}

/// Attack 4 (`tests/common/tamper.rs`).
#[test]
fn a2_deleting_a_vouched_prefix_is_reported() {
    on_fresh_store("prefix", 5, |op, sink, keyring, outside| {
        tamper::a2_deleting_a_vouched_prefix_is_reported(op, sink, keyring, outside)
    });
}

/// Attack 5 (`tests/common/tamper.rs`).
#[test]
fn a2_renumbered_rows_do_not_undo_a_withdrawal() {
    on_fresh_store("renumber", 100, |op, sink, keyring, outside| {
        tamper::a2_renumbered_rows_do_not_undo_a_withdrawal(op, sink, keyring, outside)
    });
}

/// Attack 7 (`tests/common/tamper.rs`).
#[test]
fn a1_a_disclosure_cut_by_the_caller_is_refused() {
    on_fresh_store("cut-by-caller", 100, |op, sink, keyring, outside| {
        tamper::a1_a_disclosure_cut_by_the_caller_is_refused(op, sink, keyring, outside)
    });
}

/// A2 puts back an older, authentic consent row: the cross-check against
/// the verified trail reports it.
#[test]
fn a2_a_rolled_back_consent_row_is_reported_by_the_cross_check() {
    let store = SqliteStore::open_in_memory().unwrap();
    let custodian = with_consents(&store, MemoryAnchorStore::new());
    sqlite_operator(&store, |op| {
        tamper::a2_a_rolled_back_consent_row_is_reported(op, &custodian)
    });
}

/// Two processes' worth of writers flip one subject's consent at once: the
/// compare-and-set on the row's version loses no change. Every change is in
/// the trail, and the row is the latest of them by time — a change whose
/// write lands after a later one's is superseded by it, as the trail orders
/// them — so the row agrees with the trail.
#[test]
fn a5_concurrent_consent_changes_lose_nothing() {
    use privacy_pledge::consent::ConsentStore;
    let dir = temp_dir("consent-cas");
    let db = dir.path("c.sqlite");
    SqliteStore::open(&db).unwrap();
    let subject = SubjectId::random();
    let threads: Vec<_> = (0..2)
        .map(|_| {
            let db = db.clone();
            std::thread::spawn(move || {
                // Its own connection, as another process would have.
                let store = SqliteStore::open(&db).unwrap();
                let c = with_consents(&store, anchor_of(&db));
                for i in 0..25 {
                    if i % 2 == 0 {
                        c.consents().grant::<Newsletter>(subject).unwrap();
                    } else {
                        c.consents().withdraw::<Newsletter>(subject).unwrap();
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let store = SqliteStore::open(&db).unwrap();
    let rows = store.consent_store().all().unwrap();
    assert_eq!(rows.len(), 1);
    let trail = store.trail().unwrap();
    let changes: Vec<_> = trail
        .iter()
        .filter(|e| e.subject() == subject)
        .filter(|e| e.outcome() == privacy_pledge::audit::Outcome::Allowed)
        .collect();
    assert_eq!(changes.len(), 50, "every change is in the trail");
    let latest = changes.iter().max_by_key(|e| e.time()).unwrap();
    assert_eq!(
        (rows[0].granted, rows[0].since),
        (
            latest.action() == privacy_pledge::audit::Action::ConsentGranted,
            latest.time()
        ),
        "the row is the latest change"
    );
    assert!(rows[0].version <= 50);
    assert_eq!(privacy_pledge::consent::cross_check(&rows, &trail), vec![]);
}

/// A quiet stream is still vouched for: with `checkpoint_every(period)` a
/// checkpoint is signed when a commit finds the period passed, however few
/// events came since the last one.
#[test]
fn checkpoints_are_signed_by_time_as_well_as_by_count() {
    let dir = temp_dir("ckpt-time");
    let store = SqliteStore::open_in_memory().unwrap();
    let keyring = keyring();
    let outside = DirCheckpointStore::new(dir.path("checkpoints")).unwrap();
    let sink = Arc::new(
        store
            .audit_sink(keyring.audit_key())
            .unwrap()
            .with_checkpoints(keyring.checkpoint_signer().unwrap(), outside.clone(), 1000)
            .checkpoint_every(Duration::from_millis(50)),
    );
    let custodian = Custodian::builder().audit(sink.clone()).build().unwrap();
    let info = email(SubjectId::random());
    custodian.access(&info, |_| ()).unwrap();
    assert!(
        outside.load().unwrap().is_empty(),
        "signed before the period"
    );
    std::thread::sleep(Duration::from_millis(60));
    custodian.access(&info, |_| ()).unwrap();
    let signed = outside.load().unwrap();
    assert_eq!(signed.len(), 1);
    assert_eq!(signed[0].checkpoint().seq(), 2);
    assert_eq!(store.checkpoints().unwrap(), signed);
}

/// Old segments move out of the table behind a signed checkpoint: the
/// remaining stream verifies from that checkpoint with the public key and
/// the audit key, the archive verifies against it on its own, and without
/// the base the gap is reported (A4; `tests/common/archive.rs`).
impl archive::Archiving for SqliteStore {
    fn archive(
        &self,
        up_to: &privacy_pledge::audit::SignedCheckpoint,
        key: &privacy_pledge::audit::CheckpointKey,
        out: &mut Vec<u8>,
    ) -> Result<usize, privacy_pledge::store::StoreError> {
        SqliteStore::archive(self, up_to, key, out)
    }
    fn archive_after(
        &self,
        base: &privacy_pledge::audit::SignedCheckpoint,
        up_to: &privacy_pledge::audit::SignedCheckpoint,
        key: &privacy_pledge::audit::CheckpointKey,
        out: &mut Vec<u8>,
    ) -> Result<usize, privacy_pledge::store::StoreError> {
        SqliteStore::archive_after(self, base, up_to, key, out)
    }
    fn trail(&self) -> Result<Vec<privacy_pledge::AuditEvent>, privacy_pledge::store::StoreError> {
        SqliteStore::trail(self)
    }
    fn delete_entry(&self, seq: i64) {
        self.with_connection(|c| c.execute("DELETE FROM pp_audit_log WHERE seq = ?1", [seq]))
            .unwrap();
    }
    fn reshape_entries(&self) {
        let pad = " ".repeat(privacy_pledge::audit::MAX_LINE_BYTES + 1);
        self.with_connection(|c| {
            c.execute(
                "UPDATE pp_audit_log SET event = replace(event, ',\"time\"', ',' || char(10) || '\"time\"') \
                 WHERE seq = 3",
                [],
            )?;
            c.execute("UPDATE pp_audit_log SET event = event || ?1 WHERE seq = 2", [pad])
        })
        .unwrap();
    }
}

/// One archive scenario of `tests/common/archive.rs` as a test, on a new
/// SQLite file whose sink signs a checkpoint every `$every` events.
macro_rules! archive_test {
    ($(#[$doc:meta])* $test:ident => $scenario:ident, $dir:literal, $every:literal) => {
        $(#[$doc])*
        #[test]
        fn $test() {
            let dir = temp_dir($dir);
            let store = SqliteStore::open(dir.path("a.sqlite")).unwrap();
            let keyring = keyring();
            archive::$scenario(
                &keyring,
                |signer, outside| {
                    store
                        .audit_sink(keyring.audit_key())
                        .unwrap()
                        .with_checkpoints(signer, outside, $every)
                },
                &store,
                &dir.path("checkpoints"),
            );
        }
    };
}

archive::every_scenario!(archive_test);

// ---------------------------------------------------------------------------
// Pooled connections

/// A custodian over the store's key store and audit sink.
fn custodian_on(store: &SqliteStore) -> Custodian {
    let keyring = keyring();
    Custodian::builder()
        .keyring(keyring.clone())
        .key_store(store.key_store())
        .audit(store.audit_sink(keyring.audit_key()).unwrap())
        .build()
        .unwrap()
}

/// A custodian over a pooled store, with its consent store.
fn pooled_custodian(store: &SqliteStore) -> Custodian {
    let keyring = keyring();
    Custodian::builder()
        .keyring(keyring.clone())
        .key_store(store.key_store())
        .consent_store(store.consent_store())
        .freshness_anchor(MemoryAnchorStore::new())
        .audit(store.audit_sink(keyring.audit_key()).unwrap())
        .build()
        .unwrap()
}

/// Liveness: the host holding a read transaction open inside
/// `with_connection` (as a long report's trail read does), and sleeping
/// there, does not hold back another thread's audited custodian operation:
/// the audit commit goes through the writer's own connection, the consent
/// store through another pooled one, and WAL lets the writer commit beside
/// the open reader. (On one shared connection the operation waited for the
/// whole closure.)
#[test]
fn liveness_a_host_read_transaction_does_not_block_an_audit_commit() {
    let dir = temp_dir("pool_read_tx");
    let store =
        SqliteStore::open_with(dir.path("shop.db"), PoolOptions::new().pool_size(2)).unwrap();
    assert!(store.has_writer_connection());
    let custodian = Arc::new(pooled_custodian(&store));
    custodian
        .consents()
        .grant::<Newsletter>(SubjectId::random())
        .unwrap();

    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let host = {
        let store = store.clone();
        std::thread::spawn(move || {
            store.with_connection(|c| {
                c.execute_batch("BEGIN").unwrap();
                let n: i64 = c
                    .query_row("SELECT count(*) FROM pp_audit_log", [], |r| r.get(0))
                    .unwrap();
                ready_tx.send(n).unwrap();
                // Held until the other thread is done (at most 20 s).
                let _ = release_rx.recv_timeout(Duration::from_secs(20));
                let after: i64 = c
                    .query_row("SELECT count(*) FROM pp_audit_log", [], |r| r.get(0))
                    .unwrap();
                c.execute_batch("COMMIT").unwrap();
                (n, after)
            })
        })
    };
    let seen = ready_rx.recv().unwrap();
    assert_eq!(seen, 1);

    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let c = custodian.clone();
    std::thread::spawn(move || {
        let started = std::time::Instant::now();
        let result = c.consents().grant::<Newsletter>(SubjectId::random());
        let _ = done_tx.send((result.is_ok(), started.elapsed()));
    });
    let outcome = done_rx.recv_timeout(Duration::from_secs(5));
    release_tx.send(()).unwrap();
    let (ok, took) = outcome.expect("the audit commit waited for the host's read transaction");
    assert!(ok);
    assert!(took < Duration::from_secs(2), "took {took:?}");
    // The host's snapshot did not see the commit made beside it.
    assert_eq!(host.join().unwrap(), (1, 1));
    assert_eq!(store.trail().unwrap().len(), 2);
}

/// Liveness: the pool lends at most `pool_size` connections at once, and
/// all of them: four threads inside `with_connection` on a pool of 2 are
/// never more than 2 at a time, and 2 at a time at some point.
#[test]
fn liveness_the_pool_size_is_honoured() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let dir = temp_dir("pool_size");
    assert_eq!(
        SqliteStore::open(dir.path("default.db"))
            .unwrap()
            .pool_size(),
        4
    );
    assert_eq!(SqliteStore::open_in_memory().unwrap().pool_size(), 1);
    let store =
        SqliteStore::open_with(dir.path("two.db"), PoolOptions::new().pool_size(2)).unwrap();
    assert_eq!(store.pool_size(), 2);
    let inside = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let (store, inside, most) = (store.clone(), inside.clone(), most.clone());
            std::thread::spawn(move || {
                store.with_connection(|_| {
                    let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(200));
                    inside.fetch_sub(1, Ordering::SeqCst);
                })
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(most.load(Ordering::SeqCst), 2);
}

/// A1 on a pool of one: the host's closure holds the only pooled
/// connection, so a custodian operation inside it would wait for a
/// connection that is never returned; it is refused with `Error::Reentrant`
/// instead, and so are the store's own methods. A transaction the closure
/// leaves open is rolled back when the connection returns to the pool.
#[test]
fn a1_the_custodian_inside_with_connection_on_an_exhausted_pool_is_refused() {
    let dir = temp_dir("pool_exhausted");
    let store =
        SqliteStore::open_with(dir.path("shop.db"), PoolOptions::new().pool_size(1)).unwrap();
    let custodian = pooled_custodian(&store);
    let inner = store.clone();
    let outcomes = reentry::custodian_inside_the_store(
        Arc::new(custodian),
        Arc::new(move |f| inner.with_connection(|_| f())),
    );
    reentry::all_refused(&outcomes);

    let (tx, rx) = std::sync::mpsc::channel();
    let s = store.clone();
    std::thread::spawn(move || {
        let refused = s.with_connection(|c| {
            c.execute_batch("CREATE TABLE t (x INTEGER); BEGIN; INSERT INTO t VALUES (1)")
                .unwrap();
            matches!(s.trail(), Err(StoreError::Reentrant))
        });
        let rows: i64 = s.with_connection(|c| {
            assert!(c.is_autocommit(), "a transaction left open was handed on");
            c.query_row("SELECT count(*) FROM t", [], |r| r.get(0))
                .unwrap()
        });
        let _ = tx.send((refused, rows, s.trail().is_ok()));
    });
    let (refused, rows, after) = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("a store call inside with_connection deadlocked");
    assert!(refused);
    assert_eq!(rows, 0);
    assert!(after);
}

/// Liveness (A1: host code that keeps every connection of its pool lent):
/// the store's own calls use a pool of their own, so the custodian seals
/// and the trail reads on at once while host code holds the host's only
/// connection. (When the store's own pool is exhausted, its calls give up
/// after the acquire timeout: the pool's unit tests.)
#[test]
fn liveness_host_code_holding_its_pool_never_stalls_the_stores_own_calls() {
    let dir = temp_dir("pool_timeout");
    let options = PoolOptions::new()
        .pool_size(1)
        .acquire_timeout(Duration::from_millis(200));
    let store = SqliteStore::open_with(dir.path("shop.db"), options).unwrap();
    let custodian = pooled_custodian(&store);
    let ada = SubjectId::random();
    let email: PersonalInfo<EmailAddress, Transaction> =
        PersonalInfo::collect(ada, EmailAddress::parse("ada@example.com").unwrap());

    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let host = {
        let store = store.clone();
        std::thread::spawn(move || {
            store.with_connection(|_| {
                ready_tx.send(()).unwrap();
                let _ = release_rx.recv_timeout(Duration::from_secs(20));
            })
        })
    };
    ready_rx.recv().unwrap();
    let started = std::time::Instant::now();
    // A new subject's first seal reads and writes the key store.
    let sealed = custodian.seal(&email).unwrap();
    assert!(!store.trail().unwrap().is_empty());
    let took = started.elapsed();
    assert!(took < Duration::from_millis(200), "waited {took:?}");
    release_tx.send(()).unwrap();
    host.join().unwrap();
    assert!(custodian.open(&sealed).is_ok());
}

/// A5 (power may fail at any moment): inside a request scope, a new
/// subject's key and its noted lookup token are written without a durable
/// commit of their own — the scope's audit commit, on the same log and
/// after them, makes them durable. Afterwards the key and the note are
/// there, the trail holds the scope's events, and every connection the
/// store lends is back to `synchronous = FULL` (2): no later write of the
/// host or the store is left without its own durable commit.
#[test]
fn a5_a_request_scopes_key_writes_leave_every_connection_durable() {
    use privacy_pledge::crypto::{KeyStore, SubjectKeys};
    let dir = temp_dir("deferred_key_writes");
    let store =
        SqliteStore::open_with(dir.path("shop.db"), PoolOptions::new().pool_size(1)).unwrap();
    let keyring = keyring();
    let sink = store.audit_sink(keyring.audit_key()).unwrap();
    assert_eq!(store.key_store().database(), {
        use privacy_pledge::AuditSink;
        sink.database()
    });
    let custodian = Custodian::builder()
        .keyring(keyring)
        .key_store(store.key_store())
        .audit(sink)
        .build()
        .unwrap();
    let ada = SubjectId::random();
    let token = custodian
        .request(|| -> Result<_, Error> {
            let email: PersonalInfo<EmailAddress, Transaction> =
                custodian.collect(ada, EmailAddress::parse("ada@example.com").unwrap())?;
            custodian.seal(&email)?;
            custodian.lookup_token(&email)
        })
        .unwrap();
    assert!(matches!(
        store.key_store().load(ada).unwrap(),
        SubjectKeys::Live(keys) if keys.len() == 1
    ));
    let listed = store.key_store().to_destroy(ada).unwrap().unwrap();
    assert_eq!(listed.lookup_tokens, vec![token.to_ref()]);
    assert_eq!(store.trail().unwrap().len(), 2, "collect and seal");
    let synchronous: i64 =
        store.with_connection(|c| c.query_row("PRAGMA synchronous", [], |r| r.get(0)).unwrap());
    assert_eq!(synchronous, 2, "FULL");
}

/// The scope of the `commit_request` tests: `ada`'s email collected and
/// sealed.
fn seal_email_of(
    custodian: &Custodian,
    ada: SubjectId,
) -> Result<privacy_pledge::Sealed<EmailAddress, Transaction>, Box<dyn std::error::Error>> {
    let email: PersonalInfo<EmailAddress, Transaction> =
        custodian.collect(ada, EmailAddress::parse("ada@example.com")?)?;
    Ok(custodian.seal(&email)?)
}

/// A custodian over `store`'s key store and a sink of it that signs a
/// checkpoint every `every` events into `kept` (the custodian's checkpoint
/// store too), and the sink.
fn custodian_signing_into<C: CheckpointStore + 'static>(
    store: &SqliteStore,
    kept: Arc<C>,
    every: u64,
) -> (
    Custodian,
    Arc<privacy_pledge::store::sqlite::SqliteAuditSink>,
) {
    let keyring = keyring();
    let sink = Arc::new(
        store
            .audit_sink(keyring.audit_key())
            .unwrap()
            .with_checkpoints(keyring.checkpoint_signer().unwrap(), kept.clone(), every),
    );
    let custodian = Custodian::builder()
        .keyring(keyring)
        .key_store(store.key_store())
        .checkpoint_store(kept)
        .audit(sink.clone())
        .build()
        .unwrap();
    (custodian, sink)
}

/// A sign-up in one durable commit: a drawn id, its email collected and
/// sealed, and the row `(subject, email)` written into `customers` by
/// `commit_request` (after `at_write` runs in the host's write).
fn sign_up_in_one_commit(
    store: &SqliteStore,
    custodian: &Custodian,
    at_write: &dyn Fn(),
) -> SubjectId {
    use privacy_pledge::store::sqlite::rusqlite::params;
    let subject = custodian.new_subject().unwrap();
    store
        .commit_request(
            custodian,
            || seal_email_of(custodian, subject),
            |tx, sealed| {
                at_write();
                tx.execute(
                    "INSERT INTO customers VALUES (?1, ?2)",
                    params![subject, sealed],
                )?;
                Ok(())
            },
        )
        .unwrap();
    subject
}

/// A1 (host code whose write writes nothing): `commit_request`'s last
/// transaction must still reach the disk, since it is what makes the
/// scope's commit durable, so it bumps a counter of its own
/// (`pp_commit_marks`; the next test sees the log grow). What this test
/// can see: the call works, the scope's events are in the trail, the key
/// state is unchanged, and the sealed value opens.
#[test]
fn a1_a_commit_request_whose_write_writes_nothing_changes_nothing_else() {
    use privacy_pledge::crypto::KeyStore;
    let dir = temp_dir("commit_nothing");
    let store = SqliteStore::open(dir.path("shop.db")).unwrap();
    let custodian = custodian_on(&store);
    let before = store.key_store().kek_state().unwrap();
    let ada = SubjectId::random();
    let sealed = store
        .commit_request(&custodian, || seal_email_of(&custodian, ada), |_, _| Ok(()))
        .unwrap();
    assert_eq!(store.trail().unwrap().len(), 2);
    assert_eq!(store.key_store().kek_state().unwrap(), before);
    let opened = custodian.open(&sealed).unwrap();
    let text = custodian
        .access(&opened, |e| format!("{}@{}", e.local_part(), e.domain()))
        .unwrap();
    assert_eq!(text, "ada@example.com");
}

/// A1 (host code whose write writes only a temporary table) and A5 (a
/// power cut): the last transaction of `commit_request` must still append
/// a commit to the database's write-ahead log — SQLite syncs the log only
/// for a transaction that appends to it, and that sync is what makes the
/// scope's unsynced commits durable. Seen from outside: the log grows
/// between the host's write and the call's return (a fresh database, far
/// below the auto-checkpoint, so the log only grows).
#[test]
fn a5_a_commit_request_writing_only_a_temporary_table_still_commits_to_the_log() {
    let dir = temp_dir("commit_temp_only");
    let db = dir.path("shop.db");
    let store = SqliteStore::open(&db).unwrap();
    the_log_grows_after_the_write(&store, &db, |tx, _, _| {
        tx.execute_batch(
            "CREATE TEMP TABLE IF NOT EXISTS scratch (n INTEGER);
             INSERT INTO scratch VALUES (1);",
        )?;
        Ok(())
    });
}

/// One `commit_request` on `store` (its file at `db`) sealing an email,
/// its host transaction `write` (handed the subject and the sealed
/// email): the scope's commits are in the log when `write` returns, and
/// the call appends to it after that (the commit mark, at `FULL`).
fn the_log_grows_after_the_write(
    store: &SqliteStore,
    db: &Path,
    write: impl FnOnce(
        &rusqlite::Transaction<'_>,
        SubjectId,
        &privacy_pledge::Sealed<EmailAddress, Transaction>,
    ) -> Result<(), Box<dyn std::error::Error>>,
) {
    let custodian = custodian_on(store);
    let at_write = std::cell::Cell::new(0);
    let ada = SubjectId::random();
    store
        .commit_request(
            &custodian,
            || seal_email_of(&custodian, ada),
            |tx, sealed| {
                write(tx, ada, sealed)?;
                at_write.set(wal_len(db));
                Ok(())
            },
        )
        .unwrap();
    assert!(at_write.get() > 0, "the scope's commits are in the log");
    assert!(
        wal_len(db) > at_write.get(),
        "the last transaction appended nothing to the log ({} bytes before and after)",
        at_write.get()
    );
}

/// The length of the write-ahead log of the database at `db`.
fn wal_len(db: &Path) -> u64 {
    let mut wal = db.as_os_str().to_owned();
    wal.push("-wal");
    std::fs::metadata(wal).map(|m| m.len()).unwrap_or(0)
}

/// A1 (host code whose `write` writes only to another database it
/// attached, in write-ahead-log mode too) and A5 (a power cut): that
/// database's log is not this one's, and syncing it syncs none of the
/// scope's commits. The last transaction of `commit_request` still appends
/// to this database's log after the write (the commit mark).
#[test]
fn a5_a_commit_request_writing_only_another_attached_database_still_commits_to_the_log() {
    let dir = temp_dir("commit_attached_only");
    let db = dir.path("shop.db");
    let store = SqliteStore::open(&db).unwrap();
    let side = dir.path("side.db");
    store
        .with_connection(|c| {
            c.execute("ATTACH DATABASE ?1 AS side", [side.to_str().unwrap()])?;
            c.query_row("PRAGMA side.journal_mode = WAL", [], |r| {
                r.get::<_, String>(0)
            })?;
            c.execute_batch("CREATE TABLE side.notes (n INTEGER)")
        })
        .unwrap();
    the_log_grows_after_the_write(&store, &db, |tx, _, _| {
        tx.execute("INSERT INTO side.notes VALUES (1)", [])?;
        Ok(())
    });
}

/// A1 (host code that, inside `write`, ends the store's transaction,
/// commits a row of its own at `synchronous = OFF` through a statement it
/// never steps to its end — `INSERT … RETURNING` read with `query_row`,
/// committed when the statement is reset — sets `FULL` again by only
/// preparing the pragma, and begins again, writing nothing more) and A5
/// (a power cut): nothing has synced the log since the scope's commits.
/// SQLite keeps that unsynced commit's frame count for the connection's
/// WAL hook until a statement next finishes outside a transaction — the
/// `COMMIT` after `write` — so a hook cannot tell `commit_request` that
/// its last commit appended to the log (a build that trusted one returned
/// with nothing synced). The store's last transaction must still append
/// to the log after the write, at `FULL`.
#[test]
fn a1_a_commit_request_whose_write_commits_unsynced_and_begins_again_still_ends_synced() {
    let dir = temp_dir("commit_unsynced_inside");
    let db = dir.path("shop.db");
    let store = SqliteStore::open(&db).unwrap();
    store
        .with_connection(|c| c.execute_batch("CREATE TABLE customers (subject TEXT, email BLOB)"))
        .unwrap();
    the_log_grows_after_the_write(&store, &db, |tx, ada, sealed| {
        tx.execute_batch("COMMIT; PRAGMA synchronous = OFF")?;
        let _: i64 = tx.query_row(
            "INSERT INTO customers VALUES (?1, ?2) RETURNING rowid",
            rusqlite::params![ada, sealed],
            |r| r.get(0),
        )?;
        // SQLite sets the level when it compiles the pragma: no statement
        // finishes outside a transaction here.
        drop(tx.prepare("PRAGMA synchronous = FULL")?);
        tx.execute_batch("BEGIN IMMEDIATE")?;
        Ok(())
    });
}

/// A5 (a second process erases while this one holds the subject's keys in
/// its cache, with no freshness anchor): a lookup token or pseudonym made
/// here afterwards is refused as erased — the key store refuses the note
/// atomically with its tombstone check — rather than handed out unlisted
/// by the receipt the erasure already gave.
#[test]
fn a5_no_token_is_noted_for_a_subject_erased_by_another_process() {
    let dir = temp_dir("note_after_erasure");
    let db = dir.path("shop.db");
    let here = custodian_on(&SqliteStore::open(&db).unwrap());
    let there = custodian_on(&SqliteStore::open(&db).unwrap());
    let ada = SubjectId::random();
    let email: PersonalInfo<EmailAddress, Transaction> =
        PersonalInfo::collect(ada, EmailAddress::parse("ada@example.com").unwrap());
    here.seal(&email).unwrap(); // `here` now holds ada's keys, fresh for 30 s
    let receipt = there.erase(ada).unwrap();
    assert!(receipt.lookup_tokens().is_empty());
    assert!(matches!(
        here.lookup_token(&email),
        Err(Error::Erased { .. })
    ));
    assert!(matches!(here.pseudonym(&email), Err(Error::Erased { .. })));
    let keys = SqliteStore::open(&db).unwrap().key_store();
    assert!(matches!(
        privacy_pledge::crypto::KeyStore::note_lookup_token(
            &keys,
            ada,
            here.lookup_token_of(&EmailAddress::parse("ada@example.com").unwrap())
                .to_ref()
        ),
        Err(privacy_pledge::crypto::KeyStoreError::Conflict(_))
    ));
}

/// `KeyStore::insert_noting` on the SQLite store and the memory store.
#[test]
fn a5_a_key_and_its_lookup_notes_are_one_write_on_sqlite_and_in_memory() {
    let dir = temp_dir("insert_noting");
    let store = SqliteStore::open(dir.path("shop.db")).unwrap();
    noting::insert_noting_is_one_write(&store.key_store());
    noting::insert_noting_is_one_write(&privacy_pledge::crypto::MemoryKeyStore::new());
}

/// A1 (host code that changes how its connection waits): host code that
/// sets `busy_timeout(0)` on a pooled connection changes it for itself
/// only. The next user of that connection (here on a pool of one, so the
/// same connection) waits for a write lock held by another connection,
/// as every connection of the store does, instead of failing at once
/// with "database is locked".
#[test]
fn a1_a_busy_timeout_lowered_by_host_code_is_restored_for_the_next_user() {
    use privacy_pledge::store::sqlite::rusqlite::Connection;
    let dir = temp_dir("busy_restored");
    let store =
        SqliteStore::open_with(dir.path("shop.db"), PoolOptions::new().pool_size(1)).unwrap();
    store
        .with_connection(|c| c.execute_batch("CREATE TABLE t (x INTEGER)"))
        .unwrap();
    store
        .with_connection(|c| c.busy_timeout(Duration::ZERO))
        .unwrap();
    // Another connection (as another process's would) holds the write
    // lock for 200 ms.
    let other = Connection::open(dir.path("shop.db")).unwrap();
    other
        .execute_batch("BEGIN IMMEDIATE; INSERT INTO t VALUES (0)")
        .unwrap();
    let release = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(200));
        other.execute_batch("COMMIT").unwrap();
    });
    let written = store.with_connection(|c| c.execute("INSERT INTO t VALUES (1)", []));
    release.join().unwrap();
    assert_eq!(written.map_err(|e| e.to_string()), Ok(1));
    let rows: i64 = store
        .with_connection(|c| c.query_row("SELECT count(*) FROM t", [], |r| r.get(0)))
        .unwrap();
    assert_eq!(rows, 2);
}

/// A5 (many requests of one process at once): a checkpoint due at a
/// request's batch waits for that request's durable commit before it is
/// saved, and the batches written meanwhile, by any thread, count from it
/// instead of each signing one of their own. So the saved checkpoints are
/// at least `every` events apart, in order, and the last request's events
/// are vouched for once a checkpoint is signed at the end.
#[test]
fn a5_concurrent_requests_save_checkpoints_at_least_every_events_apart() {
    use privacy_pledge::audit::{MemoryCheckpointStore, SignedCheckpoint};
    const EVERY: u64 = 10;
    struct Saved {
        kept: MemoryCheckpointStore,
        seqs: Mutex<Vec<u64>>,
    }
    impl CheckpointStore for Saved {
        fn save(&self, c: &SignedCheckpoint) -> Result<(), privacy_pledge::audit::AuditError> {
            self.seqs.lock().unwrap().push(c.checkpoint().seq());
            self.kept.save(c)
        }
        fn load(&self) -> Result<Vec<SignedCheckpoint>, privacy_pledge::audit::AuditError> {
            self.kept.load()
        }
    }
    let dir = temp_dir("checkpoint_interval");
    let store = SqliteStore::open(dir.path("shop.db")).unwrap();
    let saved = Arc::new(Saved {
        kept: MemoryCheckpointStore::new(),
        seqs: Mutex::default(),
    });
    let (custodian, sink) = custodian_signing_into(&store, saved.clone(), EVERY);
    store
        .with_connection(|c| c.execute_batch("CREATE TABLE customers (subject BLOB, email BLOB)"))
        .unwrap();
    std::thread::scope(|s| {
        for _ in 0..8 {
            s.spawn(|| {
                for _ in 0..25 {
                    sign_up_in_one_commit(&store, &custodian, &|| {});
                }
            });
        }
    });
    let seqs = saved.seqs.lock().unwrap().clone();
    assert!(!seqs.is_empty());
    assert!(
        seqs.windows(2).all(|w| w[1] >= w[0] + EVERY),
        "saved checkpoints closer than {EVERY} events: {seqs:?}"
    );
    assert!(seqs.len() as u64 <= 400 / EVERY);
    assert_eq!(sink.sign_checkpoint().unwrap().checkpoint().seq(), 400);
    assert_eq!(
        store.verified_trail(&custodian).unwrap().events().len(),
        400
    );
}

/// A1 (host code nesting requests): a `commit_request` on one store inside
/// the request of another's, on one thread. Each request's due checkpoint
/// waits for that request's own durable commit, and is saved only once
/// the request's row is in its database (the inner request's work never
/// runs at the outer's commit, nor is the outer's lost to the inner's).
#[test]
fn a1_nested_commit_requests_of_two_stores_each_save_after_their_own_commit() {
    use privacy_pledge::audit::{MemoryCheckpointStore, SignedCheckpoint};
    /// Notes, at each save, how many rows its store's `customers` holds.
    struct RowsAtSave {
        store: SqliteStore,
        kept: MemoryCheckpointStore,
        rows: Mutex<Vec<i64>>,
    }
    impl CheckpointStore for RowsAtSave {
        fn save(&self, c: &SignedCheckpoint) -> Result<(), privacy_pledge::audit::AuditError> {
            let rows = self.store.with_connection(|c| {
                c.query_row("SELECT count(*) FROM customers", [], |r| r.get(0))
                    .unwrap()
            });
            self.rows.lock().unwrap().push(rows);
            self.kept.save(c)
        }
        fn load(&self) -> Result<Vec<SignedCheckpoint>, privacy_pledge::audit::AuditError> {
            self.kept.load()
        }
    }
    let dir = temp_dir("nested_requests");
    let shop = |name: &str| {
        let store = SqliteStore::open(dir.path(name)).unwrap();
        store
            .with_connection(|c| {
                c.execute_batch("CREATE TABLE customers (subject BLOB, email BLOB)")
            })
            .unwrap();
        let saved = Arc::new(RowsAtSave {
            store: store.clone(),
            kept: MemoryCheckpointStore::new(),
            rows: Mutex::default(),
        });
        let (custodian, _) = custodian_signing_into(&store, saved.clone(), 1);
        (store, custodian, saved)
    };
    let (outer, outer_custodian, outer_saved) = shop("outer.db");
    let (inner, inner_custodian, inner_saved) = shop("inner.db");
    let ada = outer_custodian.new_subject().unwrap();
    outer
        .commit_request(
            &outer_custodian,
            || -> Result<_, Box<dyn std::error::Error>> {
                let sealed = seal_email_of(&outer_custodian, ada)?;
                sign_up_in_one_commit(&inner, &inner_custodian, &|| {});
                // The inner request saved its checkpoint after its row; the
                // outer one has not saved anything yet.
                assert_eq!(*inner_saved.rows.lock().unwrap(), [1]);
                assert!(outer_saved.rows.lock().unwrap().is_empty());
                Ok(sealed)
            },
            |tx, sealed| {
                tx.execute(
                    "INSERT INTO customers VALUES (?1, ?2)",
                    privacy_pledge::store::sqlite::rusqlite::params![ada, sealed],
                )?;
                Ok(())
            },
        )
        .unwrap();
    assert_eq!(*outer_saved.rows.lock().unwrap(), [1]);
    assert_eq!(*inner_saved.rows.lock().unwrap(), [1]);
}

/// A5 (power fails at any moment of a sign-up): what a power cut leaves of
/// the write-ahead log is the synced part and then some of what followed;
/// SQLite's recovery keeps frames only up to the first one missing or
/// torn (each frame's checksum chains on the one before) and transactions
/// only whole. So every outcome of a cut is the log cut after one of the
/// frames written since the last sync. This test makes each of them for
/// a second sign-up in `commit_request` (its key, its audit batch, its
/// row), opens the copy as a restart would, and checks that none keeps
/// the row without its events and its key, that the first sign-up is
/// whole, and that the trail verifies against the signed checkpoints the
/// cut could have left (a checkpoint is saved only after its batch is on
/// disk — here, after the request's one durable commit — so one naming the
/// second batch counts only for the whole log: the sink's
/// `a5_a_a_checkpoint_due_in_a_request_is_kept_only_after_its_durable_commit`).
#[test]
fn a5_a_power_cut_at_any_frame_of_a_sign_up_keeps_no_row_without_its_events() {
    use privacy_pledge::crypto::{KeyStore, SubjectKeys};
    const FRAME: u64 = 4096 + 24;
    let dir = temp_dir("power_cut");
    let open = |db: &Path, checkpoints: &Path| {
        let store = SqliteStore::open(db).unwrap();
        let kept = Arc::new(DirCheckpointStore::new(checkpoints).unwrap());
        // A checkpoint every two events: due at the second sign-up's batch,
        // and saved once the request's durable commit has made it durable.
        let (custodian, _) = custodian_signing_into(&store, kept, 2);
        (store, custodian)
    };
    let copy_dir = |from: &Path, to: &Path| {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    };
    let db = dir.path("shop.db");
    let wal = dir.path("shop.db-wal");
    let wal_len = || std::fs::metadata(&wal).unwrap().len();
    let (store, custodian) = open(&db, &dir.path("checkpoints"));
    store
        .with_connection(|c| {
            c.execute_batch("CREATE TABLE customers (subject BLOB PRIMARY KEY, email BLOB)")
        })
        .unwrap();
    let sign_up = |at_write: &dyn Fn()| sign_up_in_one_commit(&store, &custodian, at_write);
    let ada = sign_up(&|| {});
    let synced = wal_len(); // the first sign-up's durable commit
    copy_dir(&dir.path("checkpoints"), &dir.path("checkpoints_before"));
    let before_row = std::cell::Cell::new(0);
    let bob = sign_up(&|| {
        // The key and the audit batch are committed; the row is not yet.
        before_row.set(wal_len());
        copy_dir(&dir.path("checkpoints"), &dir.path("checkpoints_batch"));
    });
    let end = wal_len();
    copy_dir(&dir.path("checkpoints"), &dir.path("checkpoints_after"));
    assert_eq!((synced - 32) % FRAME, 0, "frames of {FRAME} bytes");
    assert!(synced < before_row.get() && before_row.get() < end);
    let vouched_batch = |checkpoints: &Path| {
        let kept = DirCheckpointStore::new(checkpoints).unwrap();
        kept.load()
            .unwrap()
            .iter()
            .map(|c| c.checkpoint().seq())
            .max()
    };
    assert_eq!(
        vouched_batch(&dir.path("checkpoints_batch")),
        vouched_batch(&dir.path("checkpoints_before")),
        "no checkpoint names the second batch before the request's durable commit"
    );
    assert!(
        vouched_batch(&dir.path("checkpoints_after"))
            > vouched_batch(&dir.path("checkpoints_before")),
        "a checkpoint names the second batch after it"
    );

    let mut outcomes = HashSet::new();
    let mut cut = synced;
    while cut <= end {
        // The cut log, with each checkpoint directory it may have left.
        let mut states = vec![dir.path("checkpoints_before")];
        if cut == end {
            states.push(dir.path("checkpoints_after"));
        }
        for (n, checkpoints) in states.iter().enumerate() {
            let at = dir.path(&format!("cut_{cut}_{n}"));
            std::fs::create_dir_all(&at).unwrap();
            std::fs::copy(&db, at.join("shop.db")).unwrap();
            let mut log = std::fs::read(&wal).unwrap();
            log.truncate(usize::try_from(cut).unwrap());
            std::fs::write(at.join("shop.db-wal"), log).unwrap();
            copy_dir(checkpoints, &at.join("checkpoints"));
            let (store, custodian) = open(&at.join("shop.db"), &at.join("checkpoints"));
            let trail = store
                .verified_trail(&custodian)
                .unwrap_or_else(|e| panic!("cut at {cut} with {}: {e}", checkpoints.display()));
            let events_of =
                |s: SubjectId| trail.events().iter().filter(|e| e.subject() == s).count();
            let rows: Vec<SubjectId> = store.with_connection(|c| {
                let mut st = c.prepare("SELECT subject FROM customers").unwrap();
                let rows = st.query_map([], |r| r.get(0)).unwrap();
                rows.map(Result::unwrap).collect()
            });
            let keyed = |s| matches!(store.key_store().load(s).unwrap(), SubjectKeys::Live(_));
            assert_eq!(
                events_of(ada),
                2,
                "cut at {cut}: the first sign-up is whole"
            );
            assert!(rows.contains(&ada) && keyed(ada));
            let row = rows.contains(&bob);
            if row {
                assert_eq!(events_of(bob), 2, "cut at {cut}: a row without its events");
                assert!(keyed(bob), "cut at {cut}: a row without its key");
            }
            assert!(
                matches!(events_of(bob), 0 | 2),
                "a batch is whole or absent"
            );
            outcomes.insert((events_of(bob), keyed(bob), row));
        }
        cut += FRAME;
    }
    // Every stage was cut at: before the key, after it, after the batch,
    // after the row.
    let expected = HashSet::from([
        (0, false, false),
        (0, true, false),
        (2, true, false),
        (2, true, true),
    ]);
    assert_eq!(outcomes, expected);
}

/// A1 + A5: the host's `write` fails and returns an error carrying a copy
/// of the sealed value it was handed (then: panics with it). The scope's events were committed
/// without a sync (the host's transaction was to sync them), so before
/// that error is returned the store makes a durable commit of its own:
/// the commit mark, bumped although the host's transaction (which bumps it
/// too) rolled back. The events are in the trail and the value opens.
#[test]
fn a5_a_failed_write_returns_only_after_a_durable_commit_of_the_stores() {
    let dir = temp_dir("write_fails_durably");
    let store = SqliteStore::open(dir.path("shop.db")).unwrap();
    let custodian = custodian_on(&store);
    let marks = || -> i64 {
        store
            .with_connection(|c| {
                c.query_row("SELECT COALESCE(SUM(n), 0) FROM pp_commit_marks", [], |r| {
                    r.get(0)
                })
            })
            .unwrap()
    };
    let ada = SubjectId::random();
    let before = marks();
    let out = store.commit_request(
        &custodian,
        || seal_email_of(&custodian, ada),
        |_, sealed| Err(format!("declined: {}", sealed.to_text()).into()),
    );
    let kept = out.unwrap_err().to_string();
    assert!(kept.starts_with("declined: "));
    assert_eq!(marks(), before + 1, "one durable commit of the store's own");
    assert_eq!(store.trail().unwrap().len(), 2, "collect and seal");
    let sealed =
        privacy_pledge::Sealed::<EmailAddress, Transaction>::from_text(&kept["declined: ".len()..])
            .unwrap();
    assert!(custodian.open(&sealed).is_ok());

    // The same with a `write` that panics, the copy as the panic's payload
    // (checked before the `open` below, itself a durable commit).
    let before = marks();
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        store.commit_request(
            &custodian,
            || seal_email_of(&custodian, ada),
            |_, sealed| -> Result<(), Box<dyn std::error::Error>> {
                std::panic::panic_any(sealed.to_text())
            },
        )
    }));
    let kept = caught
        .expect_err("write panicked")
        .downcast::<String>()
        .unwrap();
    assert_eq!(
        marks(),
        before + 1,
        "one durable commit before the panic went on"
    );
    assert_eq!(store.trail().unwrap().len(), 5, "and the open's between");
    let sealed = privacy_pledge::Sealed::<EmailAddress, Transaction>::from_text(&kept).unwrap();
    assert!(custodian.open(&sealed).is_ok());
}

/// Signs `head`'s segment, archived into `archive`, as an archive base and
/// keeps it in `outside`, as `archive` documents.
fn keep_base(
    keyring: &Keyring,
    outside: &DirCheckpointStore,
    head: &privacy_pledge::audit::SignedCheckpoint,
    archive: &[u8],
) {
    let base = keyring.checkpoint_signer().unwrap().sign_base(
        head.stream(),
        head.checkpoint(),
        privacy_pledge::audit::archive_digest(archive),
        Timestamp::now(),
    );
    outside.save_base(&base).unwrap();
}

/// A process started on `store`: a custodian over its key store and its
/// audit sink, which signs a checkpoint into `outside` every 1000 events
/// (and at `sign_checkpoint`), `outside` its checkpoint store too.
fn started(
    store: &SqliteStore,
    keyring: &Arc<Keyring>,
    outside: &DirCheckpointStore,
) -> (Custodian, Arc<SqliteSink>) {
    started_with(store, keyring, outside, false)
}

/// The audit sink of a store opened on a file.
type SqliteSink =
    privacy_pledge::store::AuditStreamSink<privacy_pledge::store::sqlite::SqliteBatchWriter>;

/// [`started`], with `outside`'s freshness anchor too if `anchored`.
fn started_with(
    store: &SqliteStore,
    keyring: &Arc<Keyring>,
    outside: &DirCheckpointStore,
    anchored: bool,
) -> (Custodian, Arc<SqliteSink>) {
    let sink = Arc::new(
        store
            .audit_sink(keyring.audit_key())
            .unwrap()
            .with_checkpoints(keyring.checkpoint_signer().unwrap(), outside.clone(), 1000),
    );
    let mut builder = Custodian::builder()
        .keyring(keyring.clone())
        .key_store(store.key_store())
        .audit(sink.clone())
        .checkpoint_store(outside.clone());
    if anchored {
        builder = builder.freshness_anchor(outside.anchor().unwrap());
    }
    (builder.build().unwrap(), sink)
}

/// A5 with routine maintenance, consent kept in memory and rebuilt at each
/// start with `Consents::restore` from the verified trail. Run 1 grants;
/// run 2 withdraws (acknowledged); run 2's stream is archived behind an
/// archive base. The trail of run 3 verifies — a stream may start at a
/// base — but holds no withdrawal: a restore from it would bring the
/// consent back. It is refused (`TrailError::Archived`), and nothing is
/// granted.
#[test]
fn a5_a_restore_from_a_trail_with_archived_entries_is_refused() {
    let dir = temp_dir("restore_archived");
    let store = SqliteStore::open(dir.path("shop.sqlite")).unwrap();
    let keyring = keyring();
    let outside = DirCheckpointStore::new(dir.path("checkpoints")).unwrap();
    let public = keyring.checkpoint_signer().unwrap().public_key();
    let start = || started(&store, &keyring, &outside);
    let restored = |c: &Custodian| {
        let trail = store.verified_trail(c).unwrap();
        c.consents().restore(&trail)
    };
    let ada = SubjectId::random();

    let (run1, sink1) = start();
    run1.consents().grant::<Newsletter>(ada).unwrap();
    sink1.sign_checkpoint().unwrap();
    drop((run1, sink1));

    let (run2, sink2) = start();
    assert_eq!(restored(&run2).unwrap(), 1);
    run2.consents().withdraw::<Newsletter>(ada).unwrap();
    let head = sink2.sign_checkpoint().unwrap();
    drop((run2, sink2));

    let mut archive = Vec::new();
    assert!(store.archive(&head, &public, &mut archive).unwrap() >= 2);
    keep_base(&keyring, &outside, &head, &archive);

    let (run3, _sink3) = start();
    let trail = store.verified_trail(&run3).unwrap();
    assert!(trail.is_fully_vouched());
    assert_eq!(trail.archived(), head.checkpoint().seq());
    assert!(matches!(
        restored(&run3),
        Err(Error::Untrusted(
            privacy_pledge::audit::TrailError::Archived { .. }
        ))
    ));
    assert!(!run3.consents().is_granted::<Newsletter>(ada));
}

struct Mailer;
impl privacy_pledge::recipient::Recipient for Mailer {
    type Role = privacy_pledge::recipient::Processor;
    fn name(&self) -> &str {
        "Mailer Ltd"
    }
}

/// A4 (the subject reading the report): a disclosure in a segment archived
/// behind an archive base is not in the verified trail. The report made
/// from it says how many entries were archived, and the letter no longer
/// says, unqualified, "We shared none of it with anyone".
#[test]
fn a4_a_report_over_archived_entries_says_they_are_not_in_it() {
    use privacy_pledge::report::StoredRecord;
    let dir = temp_dir("report_archived");
    let store = SqliteStore::open(dir.path("shop.sqlite")).unwrap();
    let keyring = keyring();
    let outside = DirCheckpointStore::new(dir.path("checkpoints")).unwrap();
    let public = keyring.checkpoint_signer().unwrap().public_key();
    let start = || started(&store, &keyring, &outside);
    let ada = SubjectId::random();
    let (run1, sink1) = start();
    let email: PersonalInfo<EmailAddress, Transaction> = run1
        .collect(ada, EmailAddress::parse("ada@example.com").unwrap())
        .unwrap();
    let row = run1.seal(&email).unwrap();
    run1.disclose(&email, &Mailer, |_| ()).unwrap();
    let head = sink1.sign_checkpoint().unwrap();
    drop((run1, sink1));
    let mut archive = Vec::new();
    store.archive(&head, &public, &mut archive).unwrap();
    keep_base(&keyring, &outside, &head, &archive);

    let (run2, _sink2) = start();
    let trail = store.verified_trail(&run2).unwrap();
    let records: Vec<&dyn StoredRecord> = vec![&row];
    let report = run2.subject_report(ada, &records, &trail).unwrap();
    assert!(report.disclosures().is_empty(), "archived away");
    assert_eq!(report.archived_entries(), head.checkpoint().seq());
    let letter = report.to_letter();
    assert!(
        !letter.contains("We shared none of it with anyone.\n"),
        "{}",
        letter.as_str()
    );
    assert!(letter.contains("archived and not part of this account"));
}

/// A2 (the operator plants a tombstone for a subject never erased, whose
/// keys stay): the report must not say the subject was erased and withhold
/// values that still open — with a freshness anchor kept from the start
/// and another customer's stream archived (routine maintenance, which
/// leaves the anchor unable to say the erasure is not in the archive), and
/// with no anchor at all. A store's `destroy` deletes the keys in the
/// commit that writes the tombstone: one beside them is refused.
#[test]
fn a2_a_tombstone_planted_beside_live_keys_fails_the_report() {
    use privacy_pledge::report::StoredRecord;
    let dir = temp_dir("planted_tombstone");
    let store = SqliteStore::open(dir.path("shop.sqlite")).unwrap();
    let keyring = keyring();
    let outside = DirCheckpointStore::new(dir.path("checkpoints")).unwrap();
    let public = keyring.checkpoint_signer().unwrap().public_key();
    let anchored = || started_with(&store, &keyring, &outside, true);

    // Run 1: another customer's sign-up; its stream is archived.
    let (run1, sink1) = anchored();
    seal_email_of(&run1, SubjectId::random()).unwrap();
    let head = sink1.sign_checkpoint().unwrap();
    drop((run1, sink1));
    let mut archive = Vec::new();
    store.archive(&head, &public, &mut archive).unwrap();
    keep_base(&keyring, &outside, &head, &archive);

    // Run 2: Bob signs up; he is never erased. Then the planted row.
    let (run2, sink2) = anchored();
    let bob = SubjectId::random();
    let row = seal_email_of(&run2, bob).unwrap();
    sink2.sign_checkpoint().unwrap();
    store
        .with_connection(|conn| {
            conn.execute(
                "INSERT INTO pp_erased_subjects (subject, erased_at) VALUES (?1, 1000000000)",
                [bob.to_string()],
            )
        })
        .unwrap();
    let records: Vec<&dyn StoredRecord> = vec![&row];
    let trail = store.verified_trail(&run2).unwrap();
    assert!(trail.archived() > 0, "routine archive");
    let refused = |report: Result<privacy_pledge::report::SubjectReport, Error>| match report {
        Err(Error::KeyStore(e)) => assert!(e.to_string().contains("beside its live keys"), "{e}"),
        Ok(r) => panic!(
            "the report claims an erasure nobody made: erased_at {:?}, withheld {:?}",
            r.erased_at(),
            r.records()[0].withheld
        ),
        Err(e) => panic!("{e}"),
    };
    refused(run2.subject_report(bob, &records, &trail));
    drop((run2, sink2));
    // With no anchor the tombstone is all there is to go by; beside the
    // keys it is refused all the same.
    let (plain, _sink) = started(&store, &keyring, &outside);
    let trail = store.verified_trail(&plain).unwrap();
    refused(plain.subject_report(bob, &records, &trail));
}

/// The write-ahead log is copied into the database file once it holds the
/// pages `PoolOptions::sqlite_wal_pages` names, on every connection of the
/// store (the host's too: its commits can be the ones that pass the mark),
/// and 10 000 by default. Seen from outside: the same writes leave a short
/// log under a small mark and a long one under the default.
#[test]
fn the_write_ahead_log_is_copied_into_the_file_at_the_configured_size() {
    let dir = temp_dir("wal_pages");
    // 500 commits, each a row of two pages' worth of bytes: about 1 500
    // frames in all (a leaf, an overflow page and the header page).
    let write = |store: &SqliteStore| {
        store
            .with_connection(|c| {
                c.execute_batch("CREATE TABLE blobs (b BLOB NOT NULL)")?;
                for _ in 0..500 {
                    c.execute("INSERT INTO blobs (b) VALUES (zeroblob(6000))", [])?;
                }
                c.query_row("PRAGMA wal_autocheckpoint", [], |r| r.get::<_, i64>(0))
            })
            .unwrap()
    };
    let wal_pages = |db: &Path| wal_len(db) / 4096;
    let small = dir.path("small.db");
    let store = SqliteStore::open_with(&small, PoolOptions::new().sqlite_wal_pages(64)).unwrap();
    assert_eq!(write(&store), 64, "the host's connection has the mark");
    assert!(
        wal_pages(&small) < 200,
        "a 64-page mark left a log of {} pages",
        wal_pages(&small)
    );
    let default = dir.path("default.db");
    let store = SqliteStore::open(&default).unwrap();
    assert_eq!(write(&store), 10_000);
    assert!(
        wal_pages(&default) > 1_200,
        "the default mark copied the log early: {} pages",
        wal_pages(&default)
    );
}

/// A2 edits one entry in the middle of a vouched stream; A4 verifies with
/// the public key alone, which checks no MAC: the edit shows only as the
/// next entry's broken link. The position named is the edited entry (the
/// earlier of the two that may be), so nothing from it on is vouched for.
#[test]
fn a4_the_public_verifier_names_an_edited_entry_not_the_one_after_it() {
    use privacy_pledge::audit::{AuditEvent, ChainedAuditLog, MemoryAuditLog};
    let keyring = Keyring::generate().unwrap();
    let log = Arc::new(ChainedAuditLog::new_stream(
        keyring.audit_key(),
        MemoryAuditLog::new(),
    ));
    let custodian = Custodian::builder().audit(log.clone()).build().unwrap();
    for _ in 0..5 {
        custodian
            .consents()
            .grant::<Newsletter>(SubjectId::random())
            .unwrap();
    }
    let signer = keyring.checkpoint_signer().unwrap();
    let signed = signer.sign(log.stream().unwrap(), log.checkpoint(), Timestamp::now());
    let mut trail = log.inner().events();
    assert!(verify_public(&trail, &signer.public_key(), &[signed]).is_fully_vouched());
    // The grant at index 2 (seq 3) made a withdrawal.
    let json = serde_json::to_string(&trail[2]).unwrap();
    let edited = json.replace("\"consent_granted\"", "\"consent_withdrawn\"");
    assert_ne!(json, edited);
    trail[2] = serde_json::from_str::<AuditEvent>(&edited).unwrap();
    let report = verify_public(&trail, &signer.public_key(), &[signed]);
    let err = report.streams[0].result.unwrap_err();
    assert_eq!((err.index, err.expected_seq), (2, 3), "{err:?}");
    assert_eq!(err.reason, Tamper::BadLink);
    // With the key, the MAC names it as modified, at the same place.
    let keyed = verify_streams(&trail, &keyring.audit_key(), &[]);
    let err = keyed[0].result.unwrap_err();
    assert_eq!((err.index, err.reason), (2, Tamper::Modified));
}

/// A5 then A2: a commit fails (a full disk, or a trigger the operator put
/// in), and the sink goes on in a new stream. What the old stream holds
/// was committed — uses that happened, acknowledged to their callers — and
/// its head is signed once a commit goes through again: deleted then, with
/// its whole stream, the public verifier reports it missing.
#[test]
fn a2_a_stream_left_after_a_failed_commit_is_signed_and_cannot_vanish_unseen() {
    use privacy_pledge::audit::MemoryCheckpointStore;
    let keyring = keyring();
    let store = SqliteStore::open_in_memory().unwrap();
    let signer = keyring.checkpoint_signer().unwrap();
    let public = signer.public_key();
    let outside = MemoryCheckpointStore::new();
    let sink = Arc::new(
        store
            .audit_sink(keyring.audit_key())
            .unwrap()
            .with_checkpoints(signer, outside.clone(), 1_000),
    );
    let custodian = Custodian::builder()
        .keyring(keyring.clone())
        .audit(sink.clone())
        .build()
        .unwrap();
    let info = email(SubjectId::random());
    for _ in 0..3 {
        custodian.access(&info, |_| ()).unwrap();
    }
    let first = sink.stream().to_string();
    let full = |on: bool| {
        store
            .with_connection(|c| c.execute_batch(disk_full::sql(on)))
            .unwrap()
    };
    full(true);
    assert!(custodian.access(&info, |_| ()).is_err());
    full(false);
    custodian.access(&info, |_| ()).unwrap();
    assert_ne!(sink.stream().to_string(), first, "a new stream");
    assert_eq!(sink.checkpoint_failures(), 0);
    let report = verify_public(&store.trail().unwrap(), &public, &outside.load().unwrap());
    assert!(report.is_intact(), "{report:?}");
    // A2 deletes the first stream, every row of it.
    let deleted = store
        .with_connection(|c| c.execute("DELETE FROM pp_audit_log WHERE stream = ?1", [&first]))
        .unwrap();
    assert_eq!(deleted, 3);
    let report = verify_public(&store.trail().unwrap(), &public, &outside.load().unwrap());
    assert!(
        !report.is_intact(),
        "three acknowledged uses deleted with their whole stream, and the public \
         verifier calls the trail intact: {report:?}"
    );
}

/// A host's key store around the SQLite store's that forwards what it must
/// and `database` (so a request scope's new keys skip their own durable
/// commit) but not `make_durable`.
struct ForwardsDatabaseOnly(privacy_pledge::store::sqlite::SqliteKeyStore);

impl privacy_pledge::crypto::KeyStore for ForwardsDatabaseOnly {
    fn load(
        &self,
        subject: SubjectId,
    ) -> Result<privacy_pledge::crypto::SubjectKeys, privacy_pledge::crypto::KeyStoreError> {
        self.0.load(subject)
    }
    fn insert(
        &self,
        subject: SubjectId,
        key: privacy_pledge::crypto::StoredKey,
    ) -> Result<(), privacy_pledge::crypto::KeyStoreError> {
        self.0.insert(subject, key)
    }
    fn reserve(
        &self,
        subject: SubjectId,
        generation: u32,
        n: u64,
    ) -> Result<u64, privacy_pledge::crypto::KeyStoreError> {
        self.0.reserve(subject, generation, n)
    }
    fn rewrap(
        &self,
        subject: SubjectId,
        generation: u32,
        wrapped: privacy_pledge::crypto::Wrapped,
    ) -> Result<(), privacy_pledge::crypto::KeyStoreError> {
        self.0.rewrap(subject, generation, wrapped)
    }
    fn destroy(
        &self,
        subject: SubjectId,
        at: Timestamp,
    ) -> Result<privacy_pledge::crypto::Destroyed, privacy_pledge::crypto::KeyStoreError> {
        self.0.destroy(subject, at)
    }
    fn wrapped_under(
        &self,
        kek_version: u32,
    ) -> Result<Vec<(SubjectId, u32)>, privacy_pledge::crypto::KeyStoreError> {
        self.0.wrapped_under(kek_version)
    }
    fn database(&self) -> Option<privacy_pledge::request::DatabaseId> {
        self.0.database()
    }
}

/// A1 (host code wraps the key store) and A5: thread A's request scope
/// makes ada's key, written without a sync of its own, and stays open;
/// thread B, outside any scope, seals for ada. Through the store's own key
/// store B's seal makes the key durable first and succeeds; through a
/// wrapper that forwards `database` but not `make_durable` it fails,
/// instead of handing out an envelope whose key a power cut could take.
#[test]
fn a1_a5_a_key_store_wrapper_that_cannot_make_a_pending_key_durable_fails_the_seal() {
    use privacy_pledge::crypto::KeyStore;
    let dir = TempDir::named("store_sqlite", "wrapper-make-durable");
    let store = SqliteStore::open(dir.path("db.sqlite")).unwrap();
    let outside_seal = |key_store: Arc<dyn KeyStore>| {
        let keyring = Keyring::generate().unwrap();
        let audit_key = keyring.audit_key();
        let custodian = Custodian::builder()
            .keyring(keyring)
            .key_store(key_store)
            .audit(store.audit_sink(audit_key).unwrap())
            .build()
            .unwrap();
        let ada = SubjectId::random();
        let email = || -> PersonalInfo<EmailAddress, Transaction> {
            PersonalInfo::collect(ada, EmailAddress::parse("ada@example.com").unwrap())
        };
        let (made_tx, made_rx) = std::sync::mpsc::channel();
        let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
        let (custodian, email) = (&custodian, &email);
        std::thread::scope(|s| {
            let a = s.spawn(move || {
                custodian.request(|| -> Result<_, Error> {
                    let sealed = custodian.seal(&email())?;
                    made_tx.send(()).unwrap();
                    go_rx.recv().unwrap();
                    Ok(sealed)
                })
            });
            made_rx.recv().unwrap();
            let outside = s.spawn(move || custodian.seal(&email())).join().unwrap();
            go_tx.send(()).unwrap();
            a.join().unwrap().unwrap();
            outside.map(drop).map_err(|e| e.to_string())
        })
    };
    assert_eq!(outside_seal(Arc::new(store.key_store())), Ok(()));
    let refused = outside_seal(Arc::new(ForwardsDatabaseOnly(store.key_store())));
    assert!(
        refused.as_ref().is_err_and(|e| e.contains("make_durable")),
        "{refused:?}"
    );
}
