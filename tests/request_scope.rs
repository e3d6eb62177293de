//! Request scopes (`Custodian::request`): one durable commit per request,
//! on SQLite and on PostgreSQL (`PP_TEST_PG`, started by `scripts/test`;
//! SKIPPED without it). Each test names the actor it plays:
//!
//! - A1 host code: runs anything inside the scope — swallows errors,
//!   panics (with what the scope made as the payload), nests scopes, runs
//!   scopes on many threads, calls back from inside a store's connection;
//! - A5 the fleet: a commit fails (a full disk, stood in for by a trigger
//!   that refuses every insert into `pp_audit_log`).

#[path = "common/disk_full.rs"]
mod disk_full;
#[path = "common/pg.rs"]
mod pg;

use std::cell::Cell;
use std::collections::BTreeMap;
use std::sync::Arc;

use privacy_pledge::audit::{
    verify_streams, Action, AuditEvent, AuditKey, ChainedAuditLog, MemoryAuditLog,
};
use privacy_pledge::crypto::Keyring;
use privacy_pledge::data::{EmailAddress, FullName, PhoneNumber, PostalAddress};
use privacy_pledge::purpose::{Newsletter, Transaction};
use privacy_pledge::recipient::{Processor, Recipient};
use privacy_pledge::store::postgres::PgStore;
use privacy_pledge::store::sqlite::SqliteStore;
use privacy_pledge::store::{AuditStreamSink, BatchWriter};
use privacy_pledge::{Custodian, Error, PersonalInfo, SubjectId};

struct Mailer;
impl Recipient for Mailer {
    type Role = Processor;
    fn name(&self) -> &str {
        "Mailer"
    }
}

/// One store under test: its sink (with its counters), a custodian over it,
/// the trail, and a switch that makes every audit insert fail.
struct Env<W: BatchWriter + 'static> {
    key: AuditKey,
    sink: Arc<AuditStreamSink<W>>,
    custodian: Arc<Custodian>,
    trail: Box<dyn Fn() -> Vec<AuditEvent> + Send + Sync>,
    fail: Box<dyn Fn(bool) + Send + Sync>,
    /// Runs a closure while holding the store's connection.
    holding: Holding,
    /// The store's `commit_request`: the closure's sealed texts go into the
    /// host's table `host_rows` (a NULL instead, refused, when `fail`);
    /// returns them, and how many audit rows the host's transaction saw.
    commit: Commit,
    /// How many rows `host_rows` holds.
    host_rows: Box<dyn Fn() -> i64 + Send + Sync>,
}

type Sealing<'a> = &'a mut dyn FnMut() -> Result<Vec<String>, Error>;
type Commit = Box<
    dyn Fn(&Custodian, Sealing<'_>, bool) -> Result<(Vec<String>, i64), Box<dyn std::error::Error>>
        + Send
        + Sync,
>;

/// Runs host code while holding a store's connection.
type Holding = Box<dyn Fn(&mut dyn FnMut()) + Send + Sync>;

fn keyring() -> Arc<Keyring> {
    Arc::new(Keyring::generate().unwrap())
}

fn sqlite() -> Env<privacy_pledge::store::sqlite::SqliteBatchWriter> {
    let store = SqliteStore::open_in_memory().unwrap();
    let keyring = keyring();
    let key = keyring.audit_key();
    let sink = Arc::new(store.audit_sink(key.clone()).unwrap());
    let custodian = Custodian::builder()
        .keyring(keyring)
        .key_store(store.key_store())
        .audit(sink.clone())
        .build()
        .unwrap();
    store
        .with_connection(|c| c.execute_batch("CREATE TABLE host_rows (sealed TEXT NOT NULL)"))
        .unwrap();
    let (s1, s2, s3) = (store.clone(), store.clone(), store.clone());
    let (s4, s5) = (store.clone(), store);
    Env {
        commit: Box::new(move |c, f, fail| {
            let seen = Cell::new(0);
            let rows = s4.commit_request(
                c,
                || f().map_err(Box::<dyn std::error::Error>::from),
                |tx, rows: &Vec<String>| {
                    seen.set(tx.query_row("SELECT count(*) FROM pp_audit_log", [], |r| r.get(0))?);
                    for r in rows {
                        let v = (!fail).then_some(r);
                        tx.execute("INSERT INTO host_rows VALUES (?1)", [v])?;
                    }
                    Ok(())
                },
            )?;
            Ok((rows, seen.get()))
        }),
        host_rows: Box::new(move || {
            s5.with_connection(|c| {
                c.query_row("SELECT count(*) FROM host_rows", [], |r| r.get(0))
                    .unwrap()
            })
        }),
        key,
        sink,
        custodian: Arc::new(custodian),
        trail: Box::new(move || s1.trail().unwrap()),
        fail: Box::new(move |on| {
            s2.with_connection(|c| c.execute_batch(disk_full::sql(on)))
                .unwrap()
        }),
        holding: Box::new(move |f| s3.with_connection(|_| f())),
    }
}

fn postgres(test: &str) -> Option<Env<privacy_pledge::store::postgres::PgBatchWriter>> {
    // Short enough that the database name keeps its random suffix (names
    // are cut at 63 bytes).
    let db = pg::database(&test[..test.len().min(24)])?;
    let store = PgStore::connect(&db).unwrap();
    let keyring = keyring();
    let key = keyring.audit_key();
    let sink = Arc::new(store.audit_sink(key.clone()).unwrap());
    let custodian = Custodian::builder()
        .keyring(keyring)
        .key_store(store.key_store())
        .audit(sink.clone())
        .build()
        .unwrap();
    store
        .with_client(|c| {
            c.batch_execute(
                "CREATE FUNCTION pp_full() RETURNS trigger AS $$
                 BEGIN RAISE EXCEPTION 'disk full'; END $$ LANGUAGE plpgsql;
                 CREATE TABLE host_rows (sealed TEXT NOT NULL);",
            )
        })
        .unwrap();
    let (s1, s2, s3) = (store.clone(), store.clone(), store.clone());
    let (s4, s5) = (store.clone(), store);
    Some(Env {
        commit: Box::new(move |c, f, fail| {
            let seen = Cell::new(0);
            let rows = s4.commit_request(
                c,
                || f().map_err(Box::<dyn std::error::Error>::from),
                |tx, rows: &Vec<String>| {
                    seen.set(
                        tx.query_one("SELECT count(*) FROM pp_audit_log", &[])?
                            .get(0),
                    );
                    for r in rows {
                        let v = (!fail).then_some(r);
                        tx.execute("INSERT INTO host_rows VALUES ($1)", &[&v])?;
                    }
                    Ok(())
                },
            )?;
            Ok((rows, seen.get()))
        }),
        host_rows: Box::new(move || {
            s5.with_client(|c| {
                c.query_one("SELECT count(*) FROM host_rows", &[])
                    .unwrap()
                    .get(0)
            })
        }),
        key,
        sink,
        custodian: Arc::new(custodian),
        trail: Box::new(move || s1.trail().unwrap()),
        fail: Box::new(move |on| {
            s2.with_client(|c| {
                c.batch_execute(if on {
                    "CREATE TRIGGER pp_disk_full BEFORE INSERT ON pp_audit_log
                     FOR EACH ROW EXECUTE FUNCTION pp_full();"
                } else {
                    "DROP TRIGGER pp_disk_full ON pp_audit_log"
                })
            })
            .unwrap()
        }),
        holding: Box::new(move |f| s3.with_client(|_| f())),
    })
}

/// Every test body, run on SQLite and (with `PP_TEST_PG`) on PostgreSQL.
macro_rules! on_both {
    ($($name:ident),* $(,)?) => {
        mod sqlite_store {
            $(#[test] fn $name() { super::$name(&super::sqlite()); })*
        }
        mod postgres_store {
            $(#[test] fn $name() {
                if let Some(env) = super::postgres(stringify!($name)) { super::$name(&env); }
            })*
        }
    };
}

on_both!(
    a1_a_sign_up_is_one_commit_in_order_and_verifies,
    a1_a_disclosure_commits_what_was_staged_before_it_happens,
    a1_plaintext_reaches_access_only_after_its_event_is_committed,
    a1_a_repurposing_commits_before_its_value_can_be_kept,
    a5_a_failed_commit_drops_the_result_and_keeps_the_stream_whole,
    a1_a_swallowed_failure_still_ends_the_scope_in_err,
    a1_a_panic_in_the_scope_commits_its_events,
    a1_scopes_on_many_threads_commit_contiguous_runs,
    a5_a_nested_scope_commits_before_its_result_leaves,
    a1_a_panic_payload_is_dropped_when_its_events_cannot_be_recorded,
    a1_a_nested_scopes_panic_payload_leaves_only_once_its_events_are_recorded,
    a1_a_scope_inside_the_stores_connection_is_refused,
    a1_a_consent_change_commits_before_it_is_written,
    a1_an_erasure_commits_before_the_keys_are_destroyed,
    a1_a_request_and_the_hosts_rows_commit_once_events_first,
    a1_a_failed_host_write_drops_the_result_and_keeps_the_events,
    a1_inside_an_outer_scope_its_events_commit_before_the_hosts_rows,
);

/// The uses of a sign-up (without a scope of their own).
fn seal_four(c: &Custodian, subject: SubjectId) -> Result<Vec<String>, Error> {
    let name: PersonalInfo<FullName, Transaction> =
        c.collect(subject, FullName::parse("Ada Lovelace").unwrap())?;
    let email: PersonalInfo<EmailAddress, Transaction> =
        c.collect(subject, EmailAddress::parse("ada@example.com").unwrap())?;
    let address: PersonalInfo<PostalAddress, Transaction> = c.collect(
        subject,
        PostalAddress::parse("1 Road\nYork YO1 7HH\nGB").unwrap(),
    )?;
    let phone: PersonalInfo<PhoneNumber, Transaction> =
        c.collect(subject, PhoneNumber::parse("+44 20 7946 0958").unwrap())?;
    Ok(vec![
        c.seal(&name)?.to_text(),
        c.seal(&email)?.to_text(),
        c.seal(&address)?.to_text(),
        c.seal(&phone)?.to_text(),
    ])
}

/// A1: `commit_request` runs the uses as one scope and writes the host's
/// rows in one transaction after the scope's events are committed: the
/// host's transaction already sees all eight (recorded before the rows are
/// written), the sink made one commit, and the rows are there.
fn a1_a_request_and_the_hosts_rows_commit_once_events_first<W: BatchWriter>(env: &Env<W>) {
    let before = env.sink.commits();
    let c = &env.custodian;
    let subject = SubjectId::random();
    let (rows, seen) = (env.commit)(c, &mut || seal_four(c, subject), false).unwrap();
    assert_eq!(rows.len(), 4);
    assert_eq!(seen, 8, "every event committed before the host's rows");
    assert_eq!(env.sink.commits() - before, 1);
    assert_eq!((env.host_rows)(), 4);
    assert_eq!((env.trail)().len(), 8);
}

/// A1: a host write that fails (a NULL into a NOT NULL column) is an error;
/// the result never reaches the host, no row is written, and the events
/// of the uses that did happen stay in the trail.
fn a1_a_failed_host_write_drops_the_result_and_keeps_the_events<W: BatchWriter>(env: &Env<W>) {
    let c = &env.custodian;
    let subject = SubjectId::random();
    let refused = (env.commit)(c, &mut || seal_four(c, subject), true);
    assert!(refused.is_err());
    assert_eq!((env.host_rows)(), 0);
    assert_eq!((env.trail)().len(), 8);
}

/// A1: `commit_request` inside an outer scope joins it, but the outer
/// scope's events so far (and the inner ones) are committed before the
/// host's rows are written.
fn a1_inside_an_outer_scope_its_events_commit_before_the_hosts_rows<W: BatchWriter>(env: &Env<W>) {
    let c = &env.custodian;
    let subject = SubjectId::random();
    let seen = c
        .request(|| -> Result<_, Error> {
            let _early: PersonalInfo<FullName, Transaction> =
                c.collect(subject, FullName::parse("Early Bird").unwrap())?;
            let (_, seen) = (env.commit)(c, &mut || seal_four(c, subject), false).unwrap();
            Ok(seen)
        })
        .unwrap();
    assert_eq!(seen, 9);
    assert_eq!((env.host_rows)(), 4);
}

fn actions(events: &[AuditEvent]) -> Vec<Action> {
    events.iter().map(AuditEvent::action).collect()
}

/// The sealed fields of one sign-up (the shop's: name, email, address,
/// phone), collected and sealed in a scope.
fn sign_up(c: &Custodian, subject: SubjectId) -> Result<Vec<String>, Error> {
    c.request(|| seal_four(c, subject))
}

/// A1: a whole sign-up in a scope is eight events, one commit, in the
/// order of the uses, and the trail verifies under the custodian's key.
fn a1_a_sign_up_is_one_commit_in_order_and_verifies<W: BatchWriter>(env: &Env<W>) {
    let before = env.sink.commits();
    let sealed = sign_up(&env.custodian, SubjectId::random()).unwrap();
    assert_eq!(sealed.len(), 4);
    assert_eq!(env.sink.commits() - before, 1, "one commit per scope");
    assert_eq!(env.sink.events(), 8);
    let trail = (env.trail)();
    use Action::*;
    assert_eq!(
        actions(&trail),
        [Collect, Collect, Collect, Collect, Seal, Seal, Seal, Seal]
    );
    assert_eq!(
        trail.iter().map(AuditEvent::seq).collect::<Vec<_>>(),
        (1..=8).collect::<Vec<_>>()
    );
    env.custodian.verify_trail(trail).unwrap();
    // Without a scope, the same sign-up is eight commits.
    let before = env.sink.commits();
    let c = &env.custodian;
    let subject = SubjectId::random();
    let email: PersonalInfo<EmailAddress, Transaction> = c
        .collect(subject, EmailAddress::parse("bob@example.com").unwrap())
        .unwrap();
    c.seal(&email).unwrap();
    assert_eq!(env.sink.commits() - before, 2);
}

/// A1: a disclosure (plaintext leaving the process) commits what was
/// staged before it, when the recipient's closure runs; what follows it
/// commits at the scope's end.
fn a1_a_disclosure_commits_what_was_staged_before_it_happens<W: BatchWriter>(env: &Env<W>) {
    let c = &env.custodian;
    let subject = SubjectId::random();
    let seen = c
        .request(|| -> Result<_, Error> {
            let email: PersonalInfo<EmailAddress, Transaction> =
                c.collect(subject, EmailAddress::parse("ada@example.com").unwrap())?;
            c.seal(&email)?;
            assert!((env.trail)().is_empty(), "staged, not committed yet");
            let at_disclosure = c.disclose(&email, &Mailer, |_| {
                (env.sink.commits(), actions(&(env.trail)()))
            })?;
            c.seal(&email)?;
            Ok(at_disclosure)
        })
        .unwrap();
    use Action::*;
    assert_eq!(seen, (1, vec![Collect, Seal, Disclose]));
    assert_eq!(env.sink.commits(), 2);
    let trail = (env.trail)();
    assert_eq!(actions(&trail), [Collect, Seal, Disclose, Seal]);
    env.custodian.verify_trail(trail).unwrap();
}

/// A1: `access` hands plaintext to host code, whose closure can copy it
/// into a variable that outlives the scope. So inside a scope an access,
/// like a disclosure, commits what was staged and its own event before the
/// closure runs; and if that commit fails (a full disk: A5), the closure
/// never runs — the scope's later failure could not take a copy back.
fn a1_plaintext_reaches_access_only_after_its_event_is_committed<W: BatchWriter>(env: &Env<W>) {
    use Action::*;
    let c = &env.custodian;
    let subject = SubjectId::random();
    let email: PersonalInfo<EmailAddress, Transaction> = c
        .collect(subject, EmailAddress::parse("ada@example.com").unwrap())
        .unwrap();
    let mut seen = None;
    c.request(|| -> Result<(), Error> {
        c.seal(&email)?;
        c.access(&email, |_| seen = Some(actions(&(env.trail)())))?;
        c.seal(&email)?;
        Ok(())
    })
    .unwrap();
    assert_eq!(seen, Some(vec![Collect, Seal, Access]));
    assert_eq!(actions(&(env.trail)()), [Collect, Seal, Access, Seal]);

    let mut copied: Option<String> = None;
    let out = c.request(|| -> Result<(), Error> {
        c.seal(&email)?;
        (env.fail)(true);
        let out = c.access(&email, |e| copied = Some(e.to_string()));
        (env.fail)(false);
        out
    });
    assert!(matches!(out, Err(Error::Audit(_))), "{out:?}");
    assert_eq!(
        copied, None,
        "plaintext handed over for an access not stored"
    );
    let trail = (env.trail)();
    assert_eq!(actions(&trail), [Collect, Seal, Access, Seal]);
    env.custodian.verify_trail(trail).unwrap();
}

/// A1: a repurposing retags a value for another purpose; host code can
/// keep the retagged value in a variable that outlives the scope and use
/// it for the new purpose later, audited as such. So inside a scope the
/// repurposing commits (with what was staged) before it takes effect: if
/// the scope's commit then fails, the move is still on record, and if the
/// repurposing's own commit fails, no retagged value exists.
fn a1_a_repurposing_commits_before_its_value_can_be_kept<W: BatchWriter>(env: &Env<W>) {
    use privacy_pledge::purpose::Support;
    use Action::*;
    let c = &env.custodian;
    let subject = SubjectId::random();
    let email: PersonalInfo<EmailAddress, Transaction> = c
        .collect(subject, EmailAddress::parse("ada@example.com").unwrap())
        .unwrap();
    let mut kept: Option<PersonalInfo<EmailAddress, Support>> = None;
    let out = c.request(|| -> Result<(), Error> {
        c.seal(&email)?;
        kept = Some(c.repurpose(email.clone())?);
        (env.fail)(true);
        c.seal(&email)?;
        Ok(())
    });
    (env.fail)(false);
    assert!(matches!(out, Err(Error::Audit(_))), "{out:?}");
    assert!(kept.is_some());
    assert_eq!(actions(&(env.trail)()), [Collect, Seal, Repurpose]);

    let mut again: Option<PersonalInfo<EmailAddress, Support>> = None;
    let out = c.request(|| -> Result<(), Error> {
        (env.fail)(true);
        let moved = c.repurpose(email.clone());
        (env.fail)(false);
        again = Some(moved?);
        Ok(())
    });
    assert!(matches!(out, Err(Error::Audit(_))), "{out:?}");
    assert!(again.is_none(), "a retagged value whose move is not stored");
    let trail = (env.trail)();
    assert_eq!(actions(&trail), [Collect, Seal, Repurpose]);
    env.custodian.verify_trail(trail).unwrap();
}

/// A5: the scope's commit fails. The closure's result (plaintext) never
/// reaches the host, which gets `Error::Audit`; a disclosure inside a
/// failing scope never reaches its recipient; none of the staged events is
/// stored, no sequence number is used twice, and the sink goes on in a new
/// stream that verifies.
fn a5_a_failed_commit_drops_the_result_and_keeps_the_stream_whole<W: BatchWriter>(env: &Env<W>) {
    let c = &env.custodian;
    let subject = SubjectId::random();
    sign_up(c, subject).unwrap();
    let first = env.sink.stream();
    (env.fail)(true);
    let out = c.request(|| -> Result<String, Error> {
        let email: PersonalInfo<EmailAddress, Transaction> =
            c.collect(subject, EmailAddress::parse("ada@example.com").unwrap())?;
        c.access(&email, |e| e.to_string())
    });
    assert!(matches!(out, Err(Error::Audit(_))), "{out:?}");
    let sent = Cell::new(false);
    let out = c.request(|| -> Result<(), Error> {
        let email: PersonalInfo<EmailAddress, Transaction> =
            c.collect(subject, EmailAddress::parse("ada@example.com").unwrap())?;
        c.disclose(&email, &Mailer, |_| sent.set(true))
    });
    assert!(matches!(out, Err(Error::Audit(_))));
    assert!(!sent.get(), "disclosed although its event was not stored");
    (env.fail)(false);
    sign_up(c, subject).unwrap();
    assert_ne!(env.sink.stream(), first, "a broken stream was continued");
    let trail = (env.trail)();
    assert_eq!(trail.len(), 16, "only the two committed sign-ups");
    let reports = verify_streams(&trail, &env.key, &[]);
    assert_eq!(reports.len(), 2);
    assert!(reports.iter().all(|r| r.result.is_ok()), "{reports:?}");
    env.custodian.verify_trail(trail).unwrap();
}

/// A1: host code swallows the error of a disclosure whose commit failed and
/// returns `Ok`: the scope still ends in `Err`, and its result is dropped.
fn a1_a_swallowed_failure_still_ends_the_scope_in_err<W: BatchWriter>(env: &Env<W>) {
    let c = &env.custodian;
    let subject = SubjectId::random();
    let email: PersonalInfo<EmailAddress, Transaction> = c
        .collect(subject, EmailAddress::parse("ada@example.com").unwrap())
        .unwrap();
    let out = c.request(|| -> Result<String, Error> {
        let plain = c.access(&email, |e| e.to_string())?;
        (env.fail)(true);
        let _ignored = c.disclose(&email, &Mailer, |_| ());
        (env.fail)(false);
        Ok(plain)
    });
    assert!(matches!(out, Err(Error::Audit(_))), "{out:?}");
    let trail = (env.trail)();
    assert_eq!(
        actions(&trail),
        [Action::Collect, Action::Access],
        "the access committed before its plaintext was handed over; the failed disclosure is not stored"
    );
    let reports = verify_streams(&trail, &env.key, &[]);
    assert!(reports.iter().all(|r| r.result.is_ok()), "{reports:?}");
}

/// A1: the closure panics after three uses: the panic goes on to the host,
/// the three events are committed while it unwinds, the stream verifies,
/// and the next scope works.
fn a1_a_panic_in_the_scope_commits_its_events<W: BatchWriter>(env: &Env<W>) {
    let c = &env.custodian;
    let subject = SubjectId::random();
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        c.request(|| -> Result<(), Error> {
            let email: PersonalInfo<EmailAddress, Transaction> =
                c.collect(subject, EmailAddress::parse("ada@example.com").unwrap())?;
            c.seal(&email)?;
            c.seal(&email)?;
            panic!("host bug");
        })
    }));
    let payload = panicked.expect_err("the closure panicked");
    assert_eq!(payload.downcast_ref::<&str>(), Some(&"host bug"));
    use Action::*;
    assert_eq!(actions(&(env.trail)()), [Collect, Seal, Seal]);
    assert_eq!(env.sink.commits(), 1);
    sign_up(c, subject).unwrap();
    let trail = (env.trail)();
    assert_eq!(trail.len(), 11);
    env.custodian.verify_trail(trail).unwrap();
}

/// A1: eight threads run 16 sign-ups each in scopes at once: every event
/// is stored, each scope's eight events are one contiguous run of the
/// stream, commits are at most one per scope, and the stream verifies.
fn a1_scopes_on_many_threads_commit_contiguous_runs<W: BatchWriter>(env: &Env<W>) {
    const THREADS: usize = 8;
    const SCOPES: usize = 16;
    std::thread::scope(|s| {
        for _ in 0..THREADS {
            s.spawn(|| {
                for _ in 0..SCOPES {
                    sign_up(&env.custodian, SubjectId::random()).unwrap();
                }
            });
        }
    });
    let trail = (env.trail)();
    assert_eq!(trail.len(), THREADS * SCOPES * 8);
    assert!(env.sink.commits() <= (THREADS * SCOPES) as u64);
    let mut runs: BTreeMap<SubjectId, Vec<u64>> = BTreeMap::new();
    for e in &trail {
        runs.entry(e.subject()).or_default().push(e.seq());
    }
    assert_eq!(runs.len(), THREADS * SCOPES);
    for seqs in runs.values() {
        assert_eq!(seqs.len(), 8);
        assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");
    }
    let reports = verify_streams(&trail, &env.key, &[]);
    assert_eq!(reports.len(), 1);
    assert!(reports[0].result.is_ok(), "{reports:?}");
    env.custodian.verify_trail(trail).unwrap();
}

/// A1, A5: a scope inside a scope joins it, and commits what is staged so
/// far before its result leaves: its caller may be code that merely runs on
/// this thread while the outer closure waits (another task of an executor
/// the closure blocks on), which sends the result on at once. Each inner
/// sign-up is in the trail when its `request` returns; the outer scope has
/// nothing left to commit at its end.
fn a5_a_nested_scope_commits_before_its_result_leaves<W: BatchWriter>(env: &Env<W>) {
    let c = &env.custodian;
    c.request(|| -> Result<(), Error> {
        let _early: PersonalInfo<FullName, Transaction> =
            c.collect(SubjectId::random(), FullName::parse("Early Bird").unwrap())?;
        sign_up(c, SubjectId::random())?;
        assert_eq!((env.trail)().len(), 9, "the outer scope's event too");
        sign_up(c, SubjectId::random())?;
        assert_eq!((env.trail)().len(), 17);
        Ok(())
    })
    .unwrap();
    assert_eq!(env.sink.commits(), 2);
    assert_eq!((env.trail)().len(), 17);
}

/// A1: the closure seals, the disk fills, and the closure panics with the
/// sealed envelope as the payload. The events cannot be recorded while it
/// unwinds, so the payload is dropped unseen, as a result would be: the
/// host catches a panic saying so, never the envelope.
fn a1_a_panic_payload_is_dropped_when_its_events_cannot_be_recorded<W: BatchWriter>(env: &Env<W>) {
    let c = &env.custodian;
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        c.request(|| -> Result<(), Error> {
            let sealed = seal_four(c, SubjectId::random())?;
            (env.fail)(true);
            std::panic::panic_any(sealed)
        })
    }));
    (env.fail)(false);
    let payload = caught.expect_err("the closure panicked");
    assert!(
        payload.downcast_ref::<Vec<String>>().is_none(),
        "the envelopes reached the host"
    );
    let said = payload
        .downcast_ref::<String>()
        .expect("a panic saying why");
    assert!(said.contains("could not be recorded"), "{said}");
    assert!((env.trail)().is_empty());
}

/// A1 (another task of an executor the outer closure blocks on, which
/// joins a task that panicked and hands its payload on): a scope inside a
/// scope that panics with what it made commits the events first, as a
/// scope of its own does; and if they cannot be recorded, the payload is
/// dropped unseen.
fn a1_a_nested_scopes_panic_payload_leaves_only_once_its_events_are_recorded<W: BatchWriter>(
    env: &Env<W>,
) {
    let c = &env.custodian;
    let nested_panic = || {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            c.request(|| -> Result<(), Error> {
                std::panic::panic_any(seal_four(c, SubjectId::random())?)
            })
        }))
        .expect_err("the inner closure panicked")
    };
    let out = c.request(|| -> Result<(), Error> {
        let payload = nested_panic();
        assert!(payload.downcast_ref::<Vec<String>>().is_some());
        assert_eq!((env.trail)().len(), 8, "recorded before the payload left");
        // The disk fills: the next nested scope's events cannot be recorded.
        (env.fail)(true);
        let payload = nested_panic();
        (env.fail)(false);
        assert!(
            payload.downcast_ref::<Vec<String>>().is_none(),
            "the envelopes left unrecorded"
        );
        let said = payload
            .downcast_ref::<String>()
            .expect("a panic saying why");
        assert!(said.contains("could not be recorded"), "{said}");
        Ok(())
    });
    // The failed commit failed the scope.
    assert!(out.is_err(), "{out:?}");
    assert_eq!((env.trail)().len(), 8);
}

/// A1: a scope opened inside the store's connection (where the sink's
/// commit would wait for itself) is refused, not deadlocked.
fn a1_a_scope_inside_the_stores_connection_is_refused<W: BatchWriter>(env: &Env<W>) {
    let c = &env.custodian;
    let mut out = None;
    (env.holding)(&mut || out = Some(c.request(|| Ok::<_, Error>(()))));
    assert!(matches!(out, Some(Err(Error::Reentrant))), "{out:?}");
    // And an operation inside a scope inside the connection: refused too.
    let mut out = None;
    (env.holding)(&mut || out = Some(sign_up(c, SubjectId::random())));
    assert!(matches!(out, Some(Err(Error::Reentrant))), "{out:?}");
    assert!((env.trail)().is_empty());
}

/// A1: a consent change inside a scope is committed, with what was staged
/// before it, before the consent register changes.
fn a1_a_consent_change_commits_before_it_is_written<W: BatchWriter>(env: &Env<W>) {
    let c = &env.custodian;
    let subject = SubjectId::random();
    c.request(|| -> Result<(), Error> {
        let _: PersonalInfo<EmailAddress, Transaction> =
            c.collect(subject, EmailAddress::parse("ada@example.com").unwrap())?;
        c.consents().grant::<Newsletter>(subject)?;
        assert_eq!(env.sink.commits(), 1);
        assert_eq!(
            actions(&(env.trail)()),
            [Action::Collect, Action::ConsentGranted]
        );
        Ok(())
    })
    .unwrap();
    assert_eq!(env.sink.commits(), 1, "nothing was left to commit");
}

/// A1: an erasure inside a scope is committed, with what was staged
/// before it, before the subject's keys are destroyed; a refused use after
/// it is staged and committed at the scope's end.
fn a1_an_erasure_commits_before_the_keys_are_destroyed<W: BatchWriter>(env: &Env<W>) {
    let c = &env.custodian;
    let subject = SubjectId::random();
    let out = c.request(|| -> Result<(), Error> {
        let email: PersonalInfo<EmailAddress, Transaction> =
            c.collect(subject, EmailAddress::parse("ada@example.com").unwrap())?;
        let row = c.seal(&email)?;
        c.erase(subject)?;
        assert_eq!(env.sink.commits(), 1);
        assert_eq!(
            actions(&(env.trail)()),
            [Action::Collect, Action::Seal, Action::Erase]
        );
        c.open(&row).map(drop)
    });
    assert!(matches!(out, Err(Error::Erased { .. })), "{out:?}");
    assert_eq!(env.sink.commits(), 2, "the refusal committed at the end");
    let trail = (env.trail)();
    assert_eq!(trail.len(), 4);
    assert_eq!(trail[3].action(), Action::Open);
    env.custodian.verify_trail(trail).unwrap();
}

// ---------------------------------------------------------------------------
// Sinks that do not commit batches at once

/// A1: over the in-memory logs (and a host's own sink, which does not say
/// its batches are atomic) nothing is staged: each event is recorded before
/// its use returns, inside the scope as outside.
#[test]
fn a1_sinks_without_atomic_batches_record_every_event_at_once() {
    let log = Arc::new(ChainedAuditLog::in_memory(AuditKey::generate().unwrap()));
    let plain = Arc::new(MemoryAuditLog::new());
    for sink in [
        Box::new(log.clone()) as Box<dyn privacy_pledge::AuditSink>,
        Box::new(plain.clone()),
    ] {
        let c = Custodian::builder().audit(sink).build().unwrap();
        let subject = SubjectId::random();
        c.request(|| -> Result<(), Error> {
            let email: PersonalInfo<EmailAddress, Transaction> =
                c.collect(subject, EmailAddress::parse("ada@example.com").unwrap())?;
            let n = log.inner().len() + plain.len();
            c.access(&email, |_| ())?;
            assert_eq!(log.inner().len() + plain.len(), n + 1, "staged");
            Ok(())
        })
        .unwrap();
    }
    assert_eq!((log.inner().len(), plain.len()), (2, 2));
}
