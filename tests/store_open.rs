//! One store opened by URL (`store::Store`): the whole set-up from a URL
//! and a checkpoint directory, on SQLite and PostgreSQL, with several
//! processes opening and migrating one new database at once (A5, the fleet
//! itself), and URLs that must not leak their password (A4, whoever reads
//! logs and errors).

#![cfg(all(feature = "sqlite", feature = "postgres"))]

#[path = "common/pg.rs"]
mod pg;
#[path = "common/tempdir.rs"]
mod tempdir;

use std::process::{Command, Stdio};
use std::sync::Arc;

use privacy_pledge::crypto::Keyring;
use privacy_pledge::purpose::Newsletter;
use privacy_pledge::store::sql::Param;
use privacy_pledge::store::{Database, Store, StoreConfig, StoreError};
use privacy_pledge::{Custodian, SubjectId};
use tempdir::TempDir;

const HOST_STEPS: [&str; 2] = [
    "CREATE TABLE customers (id TEXT PRIMARY KEY); CREATE TABLE applied (step INTEGER)",
    "INSERT INTO applied (step) VALUES (2)",
];

/// A4: an unknown scheme or a URL naming no file is `StoreError::Url`, and
/// no message or `Debug` form repeats what may be a password.
#[test]
fn a4_bad_urls_are_refused_without_repeating_a_password() {
    let dir = TempDir::named("store_open", "bad_urls");
    for url in [
        "mysql://shop:hunter2@db/shop",
        "hunter2",
        "Password=hunter2:x;Host=db",
        "sqlite:",
        "sqlite://",
        "",
    ] {
        let config = StoreConfig::new(url, dir.path("cp"));
        assert!(!format!("{config:?}").contains("hunter2"));
        let err = Store::open(&config).unwrap_err();
        assert!(matches!(err, StoreError::Url(_)), "{url:?}: {err:?}");
        for text in [err.to_string(), format!("{err:?}"), format!("{config:?}")] {
            assert!(!text.contains("hunter2"), "{url:?} leaked: {text}");
        }
    }
    // libpq's keyword form with spaces around `=` is PostgreSQL's, and
    // nothing before a `:` in it is taken for a scheme and repeated.
    for url in [
        "postgres://shop:hunter2@127.0.0.1:1/shop",
        "password = hunter2:x host=127.0.0.1 port=1 dbname=shop",
    ] {
        let config = StoreConfig::new(url, dir.path("cp"));
        assert!(!format!("{config:?}").contains("hunter2"));
        let err = Store::open(&config).unwrap_err();
        assert!(!matches!(err, StoreError::Url(_)), "{url:?}: {err:?}");
        for text in [err.to_string(), format!("{err:?}")] {
            assert!(!text.contains("hunter2"), "{url:?} leaked: {text}");
        }
    }
}

/// A1, A5: an `sqlite:` URL names a file and nothing else. SQLite's URI
/// options would open another database than the file named (`mode=memory`:
/// keys, consents and trail gone at exit) or turn its file locks off
/// (`nolock=1`, `vfs=unix-none`: processes opening one file at once no
/// longer exclude each other), and an sqlx-style query (`?mode=rwc`) would
/// become part of a file's name: all are refused, and create nothing.
/// `sqlite://:memory:` is `sqlite::memory:`.
#[test]
fn a1_a5_an_sqlite_url_names_a_file_and_nothing_else() {
    let dir = TempDir::named("store_open", "sqlite_url_options");
    let db = dir.path("shop.db");
    let db = db.display();
    for url in [
        format!("sqlite:file:{db}?mode=memory&cache=shared"),
        format!("sqlite:file:{db}"),
        format!("sqlite:{db}?mode=rwc"),
        format!("sqlite:{db}?nolock=1"),
        format!("sqlite://{db}?vfs=unix-none"),
        format!("sqlite:{db}#x"),
        "sqlite::memory:?cache=shared".to_string(),
    ] {
        let err = Store::open(&StoreConfig::new(url.as_str(), dir.path("cp"))).unwrap_err();
        assert!(matches!(err, StoreError::Url(_)), "{url}: {err:?}");
    }
    let made: Vec<_> = std::fs::read_dir(dir.path(""))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|name| name != "cp")
        .collect();
    assert!(made.is_empty(), "files made: {made:?}");
    let store = Store::open(&StoreConfig::new("sqlite://:memory:", dir.path("cp"))).unwrap();
    store.batch("CREATE TABLE t (n INTEGER)").unwrap();
    store.execute("INSERT INTO t (n) VALUES (1)", &[]).unwrap();
}

/// A2: the checkpoint directory must be out of the database's reach, and
/// named. Refused at once, before the database is opened: no directory
/// (an empty path: the working directory), the SQLite file's own directory
/// (which SQLite needs writable for its `-wal` and `-shm` files, so
/// whoever writes the database there can rewrite the checkpoints and the
/// anchor), and a directory that holds the SQLite file. A directory beside
/// the file is the host's to keep apart, and opens.
#[test]
fn a2_a_checkpoint_directory_within_the_databases_reach_is_refused() {
    let dir = TempDir::named("store_open", "checkpoints_reach");
    let url = |path: &str| format!("sqlite:{}", dir.path(path).display());
    std::fs::create_dir_all(dir.path("cp")).unwrap();
    for (url, checkpoints) in [
        (url("shop.db"), dir.path("")),
        (url("shop.db"), dir.path("cp/..")),
        (url("cp/shop.db"), dir.path("cp")),
        (url("cp/data/shop.db"), dir.path("cp")),
        ("sqlite::memory:".to_string(), std::path::PathBuf::new()),
    ] {
        let err = Store::open(&StoreConfig::new(url.as_str(), &checkpoints)).unwrap_err();
        assert!(
            matches!(err, StoreError::Checkpoints(_)),
            "{url} with checkpoints in {checkpoints:?}: {err:?}"
        );
    }
    assert!(!dir.path("shop.db").exists() && !dir.path("cp/shop.db").exists());
    Store::open(&StoreConfig::new(
        url("shop.db").as_str(),
        dir.path("checkpoints"),
    ))
    .unwrap();
}

/// A2: a store on an SQLite file by URL keeps keys, consents and a trail
/// that a restarted process verifies fully vouched against the checkpoint
/// directory — which the URL alone never names.
#[test]
fn a2_sqlite_by_url_survives_a_restart_vouched() {
    let dir = TempDir::named("store_open", "sqlite_restart");
    let db = dir.path("shop.db");
    let config = StoreConfig::new(format!("sqlite:{}", db.display()), dir.path("audit"));
    let keyring = Arc::new(Keyring::load_or_create(dir.path("shop.key")).unwrap());
    let ada = SubjectId::random();
    {
        let store = Store::open(&config).unwrap();
        assert!(matches!(store.database(), Database::Sqlite(_)));
        assert_eq!(store.describe(), format!("sqlite:{}", db.display()));
        let (custodian, _guard) = store
            .custodian(Custodian::builder().keyring(keyring.clone()))
            .unwrap();
        custodian.consents().grant::<Newsletter>(ada).unwrap();
    } // the guard signs the stream's head here
    assert!(
        dir.path("audit").join("state.log").exists(),
        "anchor beside checkpoints"
    );

    let store = Store::open(&config).unwrap();
    let (custodian, _guard) = store
        .custodian(Custodian::builder().keyring(keyring))
        .unwrap();
    assert!(custodian.consents().is_granted::<Newsletter>(ada));
    assert_eq!(store.consents().unwrap().len(), 1);
    let trail = store.verified_trail(&custodian).unwrap();
    assert!(trail.is_fully_vouched(), "vouched to its end by the guard");
}

/// A builder without a keyring is refused: the stream's audit key and the
/// checkpoint signer come from it, and an ephemeral one would leave a
/// durable store nobody can read after a restart.
#[test]
fn custodian_needs_the_builders_keyring() {
    let dir = TempDir::named("store_open", "no_keyring");
    let store = Store::open(&StoreConfig::new("sqlite::memory:", dir.path("cp"))).unwrap();
    let err = store.custodian(Custodian::builder()).unwrap_err();
    assert!(err.to_string().contains("keyring"), "{err}");
}

/// The host's migrations: each step once, in order; a database with more
/// steps applied than given is refused (an older binary after a newer one).
#[test]
fn host_migrations_apply_once_and_refuse_an_older_host() {
    let dir = TempDir::named("store_open", "host_migrations");
    let store = Store::open(&StoreConfig::new(dir.sqlite_url("m.db"), dir.path("cp"))).unwrap();
    assert_eq!(store.migrate("shop", &HOST_STEPS[..1]).unwrap(), 1);
    assert_eq!(store.migrate("shop", &HOST_STEPS).unwrap(), 1);
    assert_eq!(store.migrate("shop", &HOST_STEPS).unwrap(), 0);
    assert_eq!(
        store.migrate("other", &[]).unwrap(),
        0,
        "schemas are by name"
    );
    assert!(matches!(
        store.migrate("shop", &HOST_STEPS[..1]),
        Err(StoreError::NewerHostSchema { found: 2, known: 1 })
    ));
    // A failing step applies nothing of itself and leaves the count.
    let bad = [
        HOST_STEPS[0],
        HOST_STEPS[1],
        "INSERT INTO applied VALUES (3); NOT SQL",
    ];
    assert!(store.migrate("shop", &bad).is_err());
    assert_eq!(store.migrate("shop", &HOST_STEPS).unwrap(), 0);
    let Database::Sqlite(s) = store.database() else {
        unreachable!()
    };
    let rows: i64 = s
        .with_connection(|c| c.query_row("SELECT count(*) FROM applied", [], |r| r.get(0)))
        .unwrap();
    assert_eq!(rows, 1, "step 3 rolled back with the failure");
}

fn child(db: &std::path::Path, dir: &std::path::Path) -> Command {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "--exact",
        "child_process_entry",
        "--nocapture",
        "--test-threads=1",
    ])
    .env("PP_CHILD_URL", format!("sqlite:{}", db.display()))
    .env("PP_CHILD_DIR", dir)
    .stdout(Stdio::piped())
    .stderr(Stdio::inherit());
    cmd
}

/// Not a test of its own: the body of the processes spawned below.
#[test]
fn child_process_entry() {
    let (Ok(url), Ok(dir)) = (std::env::var("PP_CHILD_URL"), std::env::var("PP_CHILD_DIR")) else {
        return;
    };
    let dir = std::path::PathBuf::from(dir);
    let store = Store::open(&StoreConfig::new(url, dir.join("cp"))).unwrap();
    let ran = store.migrate("shop", &HOST_STEPS).unwrap();
    let keyring = Keyring::load_or_create(dir.join("shop.key")).unwrap();
    let (custodian, _guard) = store
        .custodian(Custodian::builder().keyring(keyring))
        .unwrap();
    custodian
        .consents()
        .grant::<Newsletter>(SubjectId::random())
        .unwrap();
    println!("\nRAN {ran}");
}

/// A5: four processes open one new SQLite file by URL at the same moment,
/// each running the crate's and the host's migrations and creating (or
/// reading) one keyring: every step runs exactly once, every process
/// works, and the trail of all four verifies fully vouched.
#[test]
fn a5_processes_opening_one_new_database_at_once() {
    let dir = TempDir::named("store_open", "fleet");
    let db = dir.path("fleet.db");
    let root = dir.path("");
    let children: Vec<_> = (0..4).map(|_| child(&db, &root).spawn().unwrap()).collect();
    let mut ran = 0;
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(out.status.success(), "a process failed");
        let text = String::from_utf8(out.stdout).unwrap();
        let line = text.lines().find_map(|l| l.strip_prefix("RAN ")).unwrap();
        ran += line.trim().parse::<usize>().unwrap();
    }
    assert_eq!(ran, HOST_STEPS.len(), "each host step ran once in all");
    let store = Store::open(&StoreConfig::new(
        format!("sqlite:{}", db.display()),
        dir.path("cp"),
    ))
    .unwrap();
    let Database::Sqlite(s) = store.database() else {
        unreachable!()
    };
    let applied: i64 = s
        .with_connection(|c| c.query_row("SELECT count(*) FROM applied", [], |r| r.get(0)))
        .unwrap();
    assert_eq!(applied, 1);
    let keyring = Keyring::load_or_create(dir.path("shop.key")).unwrap();
    let (custodian, _guard) = store
        .custodian(Custodian::builder().keyring(keyring))
        .unwrap();
    let trail = store.verified_trail(&custodian).unwrap();
    assert_eq!(store.consents().unwrap().len(), 4);
    assert!(trail.is_fully_vouched());
}

/// `host=… port=… user=… dbname=…` as a `postgres://` URL.
fn pg_url(params: &str) -> String {
    let get = |k: &str| {
        params
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix(&format!("{k}=")))
            .unwrap_or_default()
            .to_owned()
    };
    format!(
        "postgres://{}@{}:{}/{}",
        get("user"),
        get("host"),
        get("port"),
        get("dbname")
    )
}

/// A2 and A5 on PostgreSQL: a store by `postgres://` URL, four stores
/// migrating at once from their own threads (own connections: the advisory
/// lock, not the mutex, orders them), and a restart that verifies vouched.
#[test]
fn a2_a5_postgres_by_url() {
    let Some(db) = pg::database("store_open_url") else {
        return;
    };
    let dir = TempDir::named("store_open", "pg");
    let config = StoreConfig::new(pg_url(&db), dir.path("audit"));
    // The keyword form opens the same database.
    Store::open(&StoreConfig::new(db.clone(), dir.path("audit"))).unwrap();
    let ran: usize = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| {
                s.spawn(|| {
                    let store = Store::open(&config).unwrap();
                    store.migrate("shop", &HOST_STEPS).unwrap()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    assert_eq!(ran, HOST_STEPS.len());

    let keyring = Arc::new(Keyring::generate().unwrap());
    let ada = SubjectId::random();
    {
        let store = Store::open(&config).unwrap();
        assert!(matches!(store.database(), Database::Postgres(_)));
        assert_eq!(store.describe(), "postgres://…");
        let (custodian, _guard) = store
            .custodian(Custodian::builder().keyring(keyring.clone()))
            .unwrap();
        custodian.consents().grant::<Newsletter>(ada).unwrap();
    }
    let store = Store::open(&config).unwrap();
    let (custodian, _guard) = store
        .custodian(Custodian::builder().keyring(keyring))
        .unwrap();
    assert!(custodian.consents().is_granted::<Newsletter>(ada));
    assert!(store.verified_trail(&custodian).unwrap().is_fully_vouched());
    let Database::Postgres(p) = store.database() else {
        unreachable!()
    };
    let applied: i64 = p
        .with_client(|c| c.query_one("SELECT count(*) FROM applied", &[]))
        .unwrap()
        .get(0);
    assert_eq!(applied, 1);
}

/// The host's own SQL through `Store`, the same text on both databases: a
/// table, rows bound and read through the crate's column types, a unique
/// violation reported as `StoreError::Constraint` (naming the constraint,
/// not the value), a column read as the wrong type refused, and one
/// request in one durable commit (`commit_request`).
fn host_sql_on(url: &str, dir: &std::path::Path) {
    use privacy_pledge::data::EmailAddress;
    use privacy_pledge::purpose::Transaction;
    use privacy_pledge::store::sql::Row;
    use privacy_pledge::{PersonalInfo, Sealed};

    let store = Store::open(&StoreConfig::new(url, dir)).unwrap();
    let builder = Custodian::builder().keyring(Arc::new(Keyring::generate().unwrap()));
    let (custodian, _guard) = store.custodian(builder).unwrap();
    let blob = match store.database() {
        Database::Sqlite(_) => "BLOB",
        _ => "BYTEA",
    };
    store
        .batch(&format!(
            "CREATE TABLE people (subject {blob} NOT NULL, email {blob} NOT NULL,
                                  email_index {blob} UNIQUE, visits BIGINT)"
        ))
        .unwrap();
    let ada = SubjectId::random();
    let (sealed, token) = store
        .commit_request(
            &custodian,
            || -> Result<_, Box<dyn std::error::Error>> {
                let email: PersonalInfo<EmailAddress, Transaction> =
                    custodian.collect(ada, EmailAddress::parse("ada@example.com")?)?;
                Ok((custodian.seal(&email)?, custodian.lookup_token(&email)?))
            },
            |tx, (sealed, token)| {
                let n = tx.execute(
                    "INSERT INTO people VALUES ($1, $2, $3, $4)",
                    &[&ada, sealed, token, &None::<i64>],
                )?;
                assert_eq!(n, 1);
                Ok(())
            },
        )
        .unwrap();
    assert_eq!(store.trail().unwrap().len(), 2, "collect and seal");

    type Person = (SubjectId, Sealed<EmailAddress, Transaction>, Option<i64>);
    let read = |row: &Row<'_>| -> Result<Person, StoreError> {
        Ok((row.get(0)?, row.get(1)?, row.get(3)?))
    };
    let found = store
        .query(
            "SELECT subject, email, email_index, visits FROM people WHERE email_index = $1",
            &[&token],
            read,
        )
        .unwrap();
    assert_eq!(found, vec![(ada, sealed.clone(), None)]);
    let opened = custodian.open(&found[0].1).unwrap();
    let domain = custodian
        .access(&opened, |e| e.domain().to_owned())
        .unwrap();
    assert_eq!(domain, "example.com");

    // The index is unique: a second row with the same token is refused.
    let again = store.execute(
        "INSERT INTO people VALUES ($1, $2, $3, $4)",
        &[&SubjectId::random(), &sealed, &token, &Some(1_i64)],
    );
    match again {
        Err(StoreError::Constraint(message)) => {
            assert!(!message.contains(&format!("{token:?}")), "{message}");
        }
        other => panic!("expected a constraint error, got {other:?}"),
    }
    // A column read as the wrong type (an envelope as an id): refused,
    // never a panic.
    let subject_as_text = store.query("SELECT email FROM people", &[], |row: &Row<'_>| {
        row.get::<SubjectId>(0)
    });
    assert!(matches!(subject_as_text, Err(StoreError::Database(_))));

    // Each parameter goes with its type: an `i64` into a narrower integer
    // column and text into `varchar` are converted as assignments are,
    // on either database.
    store
        .batch("CREATE TABLE visits (n INTEGER NOT NULL, note VARCHAR(20))")
        .unwrap();
    assert_eq!(
        store
            .execute("INSERT INTO visits VALUES ($1, $2)", &[&7_i64, &"first"])
            .unwrap(),
        1
    );
    let read = store
        .query(
            "SELECT n, note FROM visits WHERE n = $1",
            &[&7_i32],
            |row: &Row<'_>| -> Result<(i64, String), StoreError> {
                Ok((row.get::<i32>(0)?.into(), row.get(1)?))
            },
        )
        .unwrap();
    assert_eq!(read, vec![(7, "first".to_owned())]);

    // `$n` is the n-th value wherever it stands, and may stand twice: as on
    // PostgreSQL, so on SQLite (which numbers names by first appearance).
    let read = store
        .query(
            "SELECT n, note FROM visits WHERE note = $2 AND n = $1 AND n < $1 + 1",
            &[&7_i64, &"first"],
            |row| Ok((row.get::<i32>(0)?, row.get::<String>(1)?)),
        )
        .unwrap();
    assert_eq!(read, vec![(7, "first".to_owned())]);
    assert_eq!(
        store
            .execute(
                "UPDATE visits SET note = $2 WHERE n = $1",
                &[&7_i64, &"second"]
            )
            .unwrap(),
        1
    );
    // A `$n` past the values given is an error on both, never another
    // value bound in its place; a value no `$n` reads is left unread.
    let e = store
        .execute(
            "UPDATE visits SET note = $2 WHERE n = $1",
            &[&7_i64 as &dyn Param],
        )
        .unwrap_err();
    assert!(matches!(e, StoreError::Database(_)), "{e:?}");
    let unread = store.execute(
        "UPDATE visits SET note = $2 WHERE n = $1",
        &[&8_i64, &"x", &1_i64],
    );
    assert_eq!(unread.unwrap(), 0, "no row has n = 8");
    let notes = store
        .query("SELECT note FROM visits", &[], |row| row.get::<String>(0))
        .unwrap();
    assert_eq!(notes, ["second"]);
}

#[test]
fn host_sql_on_sqlite() {
    let dir = TempDir::named("store_open", "host_sql");
    host_sql_on(&dir.sqlite_url("shop.db"), &dir.path("checkpoints"));
}

#[test]
fn host_sql_on_postgres() {
    let Some(db) = pg::database("store_open_host_sql") else {
        return;
    };
    let dir = TempDir::named("store_open", "host_sql_pg");
    host_sql_on(&db, &dir.path("checkpoints"));
}

/// A1: host code given `commit_request`'s transaction leaves a TEMP
/// trigger on its connection that would delete every audit row inserted
/// there. The store's audit commits run on a connection host code is never
/// given, so every later request's events stay, and the trail verifies.
#[test]
fn a1_a_temp_trigger_left_by_a_host_write_never_touches_the_audit_log() {
    type E = Box<dyn std::error::Error>;
    let dir = TempDir::named("store_open", "temp_trigger");
    let config = StoreConfig::new(dir.sqlite_url("shop.db"), dir.path("checkpoints"));
    let store = Store::open(&config).unwrap();
    let builder = Custodian::builder().keyring(Keyring::generate().unwrap());
    let (c, _guard) = store.custodian(builder).unwrap();
    store.batch("CREATE TABLE visits (n INTEGER)").unwrap();
    store
        .commit_request(
            &c,
            || Ok::<_, E>(()),
            |tx, ()| {
                tx.execute(
                    "CREATE TEMP TRIGGER eat AFTER INSERT ON main.pp_audit_log
                     BEGIN DELETE FROM pp_audit_log WHERE id = new.id; END",
                    &[],
                )?;
                Ok(())
            },
        )
        .unwrap();
    let before = store.trail().unwrap().len();
    for _ in 0..20 {
        store
            .commit_request(
                &c,
                || Ok::<_, E>(c.consents().grant::<Newsletter>(SubjectId::random())?),
                |tx, ()| {
                    tx.execute("INSERT INTO visits VALUES (1)", &[])?;
                    Ok(())
                },
            )
            .unwrap();
    }
    assert_eq!(store.trail().unwrap().len(), before + 20);
    store.verified_trail(&c).unwrap();
}

/// A1: host SQL leaves `TEMP` tables named like the store's (which SQLite
/// and PostgreSQL read before the real ones) and a `TEMP` trigger on its
/// connection, in a store whose pools hold one connection each. The
/// store's own statements never run on the host's connection: a grant and
/// a subject key still reach the real tables, and a store opened afresh
/// (another process) finds the consent granted and opens the sealed value.
fn host_leftovers_never_reach_the_stores_own(url: &str, checkpoints: &std::path::Path, sql: &str) {
    use privacy_pledge::data::EmailAddress;
    use privacy_pledge::purpose::Transaction;
    use privacy_pledge::store::PoolOptions;
    use privacy_pledge::PersonalInfo;

    let config = StoreConfig::new(url, checkpoints).pool(PoolOptions::new().pool_size(1));
    let keyring = Arc::new(Keyring::generate().unwrap());
    let store = Store::open(&config).unwrap();
    let (c, guard) = store
        .custodian(Custodian::builder().keyring(keyring.clone()))
        .unwrap();
    store.batch(sql).unwrap();
    let ada = SubjectId::random();
    c.consents().grant::<Newsletter>(ada).unwrap();
    let email: PersonalInfo<EmailAddress, Transaction> = c
        .collect(ada, EmailAddress::parse("ada@example.com").unwrap())
        .unwrap();
    let sealed = c.seal(&email).unwrap();
    drop(guard);
    drop(c);
    drop(store);

    let again = Store::open(&config).unwrap();
    let (c, _guard) = again
        .custodian(Custodian::builder().keyring(keyring))
        .unwrap();
    assert!(c.consents().is_granted::<Newsletter>(ada));
    let opened = c.open(&sealed).unwrap();
    assert!(c.access(&opened, |e| e.local_part() == "ada").unwrap());
}

#[test]
fn a1_temp_tables_and_triggers_left_by_host_sql_on_sqlite() {
    for (name, sql) in [
        (
            "shadows",
            "CREATE TEMP TABLE pp_consents (subject TEXT, purpose TEXT, version INTEGER,
                 record TEXT, PRIMARY KEY (subject, purpose));
             CREATE TEMP TABLE pp_subject_keys AS SELECT * FROM main.pp_subject_keys WHERE 0;",
        ),
        (
            "trigger",
            "CREATE TEMP TRIGGER eat AFTER INSERT ON main.pp_consents
             BEGIN DELETE FROM pp_consents WHERE subject = new.subject; END;",
        ),
    ] {
        let dir = TempDir::named("store_open", &format!("host_leftovers_{name}"));
        host_leftovers_never_reach_the_stores_own(
            &dir.sqlite_url("shop.db"),
            &dir.path("checkpoints"),
            sql,
        );
    }
}

#[test]
fn a1_temp_tables_and_settings_left_by_host_sql_on_postgres() {
    let Some(db) = pg::database("store_open_host_leftovers") else {
        return;
    };
    let dir = TempDir::named("store_open", "host_leftovers_pg");
    host_leftovers_never_reach_the_stores_own(
        &db,
        &dir.path("checkpoints"),
        "CREATE TEMP TABLE pp_consents (LIKE pp_consents INCLUDING ALL);
         CREATE TEMP TABLE pp_subject_keys (LIKE pp_subject_keys INCLUDING ALL);
         SET synchronous_commit = off",
    );
}

/// A1: `commit_request`'s write ends the transaction, turns `synchronous`
/// off and begins again, so that the commit meant to make the request's
/// events durable would not sync. It is refused, and nothing it made
/// leaves.
#[test]
fn a1_a_write_that_turns_synchronous_off_is_refused() {
    type E = Box<dyn std::error::Error>;
    let dir = TempDir::named("store_open", "synchronous_off");
    let config = StoreConfig::new(dir.sqlite_url("shop.db"), dir.path("checkpoints"));
    let store = Store::open(&config).unwrap();
    let (c, _guard) = store
        .custodian(Custodian::builder().keyring(Keyring::generate().unwrap()))
        .unwrap();
    let out = store.commit_request(
        &c,
        || Ok::<_, E>(c.consents().grant::<Newsletter>(SubjectId::random())?),
        |tx, ()| {
            for sql in ["COMMIT", "PRAGMA synchronous = OFF", "BEGIN"] {
                tx.execute(sql, &[])?;
            }
            Ok(())
        },
    );
    let err = out.unwrap_err().to_string();
    assert!(err.contains("synchronous"), "{err}");
}

/// A2 on the rows an erasure and a data key's use count live in, the same
/// statements on both databases (the anchor and checkpoints outside):
///
/// - a tombstone planted before a real erasure does not make `erase`
///   destroy nothing: the keys go, the receipt lists them;
/// - a tombstone planted for a live subject does not make the subject's
///   report say "erased" and hide the values: neither the anchor nor the
///   verified trail holds that erasure, so the report fails;
/// - a use count set back does not keep a data key sealing past its
///   message limit, in the process that reserved from it.
fn a2_tombstones_and_use_counts_on(url: &str, dir: &std::path::Path) {
    use privacy_pledge::data::EmailAddress;
    use privacy_pledge::purpose::Transaction;
    use privacy_pledge::report::StoredRecord;
    use privacy_pledge::{Error, PersonalInfo};

    let store = Store::open(&StoreConfig::new(url, dir)).unwrap();
    let keyring = Arc::new(Keyring::generate().unwrap());
    let builder = || Custodian::builder().keyring(keyring.clone());
    let (custodian, guard) = store.custodian(builder()).unwrap();
    let keys_of = |s: SubjectId| {
        store
            .query(
                &format!("SELECT count(*) FROM pp_subject_keys WHERE subject = '{s}'"),
                &[],
                |r| r.get::<i64>(0),
            )
            .unwrap()[0]
    };
    let tombstone = |s: SubjectId, on: bool| {
        store
            .batch(&if on {
                format!("INSERT INTO pp_erased_subjects (subject, erased_at) VALUES ('{s}', 1000000000)")
            } else {
                format!("DELETE FROM pp_erased_subjects WHERE subject = '{s}'")
            })
            .unwrap()
    };
    let email = |s: SubjectId| -> PersonalInfo<EmailAddress, Transaction> {
        custodian
            .collect(s, EmailAddress::parse("ada@example.com").unwrap())
            .unwrap()
    };

    let ada = SubjectId::random();
    let row = custodian.seal(&email(ada)).unwrap();
    assert_eq!(keys_of(ada), 1);
    tombstone(ada, true);
    let receipt = custodian.erase(ada).unwrap();
    tombstone(ada, false);
    assert_eq!(
        (receipt.generations().len(), keys_of(ada)),
        (1, 0),
        "the erasure destroyed the key"
    );
    assert!(matches!(custodian.open(&row), Err(Error::Erased { .. })));

    let bob = SubjectId::random();
    let row = custodian.seal(&email(bob)).unwrap();
    guard.sign().unwrap();
    tombstone(bob, true);
    let records: Vec<&dyn StoredRecord> = vec![&row];
    let trail = store.verified_trail(&custodian).unwrap();
    assert!(trail.is_fully_vouched() && trail.archived() == 0);
    let report = custodian.subject_report(bob, &records, &trail);
    assert!(matches!(report, Err(Error::Anchor(_))), "{report:?}");
    tombstone(bob, false);
    let report = custodian.subject_report(bob, &records, &trail).unwrap();
    assert!(report.erased_at().is_none() && report.records()[0].value.is_some());

    let (limited, _guard) = store.custodian(builder().message_limit(4)).unwrap();
    let carol = email(SubjectId::random());
    let mut per_generation = std::collections::BTreeMap::<u32, u32>::new();
    for _ in 0..3 {
        for _ in 0..4 {
            let sealed = limited.seal(&carol).unwrap();
            *per_generation.entry(sealed.key_id()).or_default() += 1;
        }
        store
            .batch(&format!(
                "UPDATE pp_subject_keys SET uses = 0 WHERE subject = '{}'",
                carol.subject()
            ))
            .unwrap();
    }
    assert_eq!(
        per_generation.into_iter().collect::<Vec<_>>(),
        [(0, 4), (1, 4), (2, 4)],
        "a generation sealed past its limit"
    );
}

#[test]
fn a2_tombstones_and_use_counts_on_sqlite() {
    let dir = TempDir::named("store_open", "a2_rows_sqlite");
    a2_tombstones_and_use_counts_on(&dir.sqlite_url("shop.db"), &dir.path("outside"));
}

#[test]
fn a2_tombstones_and_use_counts_on_postgres() {
    let Some(db) = pg::database("a2_rows") else {
        return;
    };
    let dir = TempDir::named("store_open", "a2_rows_pg");
    a2_tombstones_and_use_counts_on(&db, &dir.path("outside"));
}

/// A1 on PostgreSQL by URL, with the host's statements on a role of their
/// own (`StoreConfig::host_url`): the host's migrations, statements and
/// `commit_request` work on its own tables, while a rule on the store's
/// audit table, or a delete from it, is refused. An SQLite store refuses a
/// host URL (it has no roles).
#[test]
fn a1_host_statements_by_url_as_another_role() {
    let Some(db) = pg::database("store_open_host_role") else {
        return;
    };
    let dir = TempDir::named("store_open", "host_role");
    let role = format!("pp_host_{}", SubjectId::random()).to_lowercase();
    Store::open(&StoreConfig::new(db.clone(), dir.path("audit")))
        .unwrap()
        .batch(&format!(
            "CREATE ROLE {role} LOGIN; GRANT CREATE ON SCHEMA public TO {role}"
        ))
        .unwrap();
    let config =
        StoreConfig::new(pg_url(&db), dir.path("audit")).host_url(format!("{db} user={role}"));
    let store = Store::open(&config).unwrap();
    assert_eq!(
        store.migrate("shop", &HOST_STEPS).unwrap(),
        HOST_STEPS.len()
    );
    for sql in [
        "CREATE RULE pp_drop AS ON INSERT TO pp_audit_log DO INSTEAD NOTHING",
        "DELETE FROM pp_audit_log",
    ] {
        assert!(store.batch(sql).is_err(), "{sql}");
    }
    let keyring = Arc::new(Keyring::generate().unwrap());
    let (custodian, _guard) = store
        .custodian(Custodian::builder().keyring(keyring))
        .unwrap();
    let ada = SubjectId::random();
    store
        .commit_request(
            &custodian,
            || custodian.consents().grant::<Newsletter>(ada),
            |tx, ()| {
                tx.execute("INSERT INTO customers (id) VALUES ($1)", &[&ada])
                    .map_err(|e| StoreError::Database(e.to_string()))?;
                Ok(())
            },
        )
        .unwrap();
    assert!(!store.trail().unwrap().is_empty());

    let refused = Store::open(
        &StoreConfig::new(dir.sqlite_url("shop.db"), dir.path("checkpoints")).host_url(db),
    )
    .unwrap_err();
    assert!(matches!(refused, StoreError::Url(_)), "{refused}");
}
