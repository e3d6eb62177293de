//! A sign-up as `examples/shop_service` does it, on a durable store: one
//! commit per audit event against one commit per request
//! (`Custodian::request`), measured in the same run.
//!
//! `cargo bench --bench signup -- --warm-up-time 1 --measurement-time 3`
//! (with `PP_TEST_PG` set to a PostgreSQL server's `host=… port=… user=…`,
//! e.g. inside `scripts/test`'s cluster, the same on PostgreSQL with
//! `synchronous_commit = on`)
//!
//! A sign-up: the email's lookup token is looked up in the `customers`
//! index (refused if taken), the four fields — name, email, postal address,
//! phone — are collected for `Transaction` and sealed as one record
//! (`seal_record`: a new subject key in the key store, four seals, the
//! email's lookup token noted for erasure receipts), and the sealed row is
//! inserted. Eight audit events. "per_event" commits each event on its own
//! (the store's sink outside a scope); "request" runs the custodian calls
//! in one request scope and inserts the row after it returned. The SQLite
//! file runs with `synchronous = FULL`.

mod common;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use privacy_pledge::crypto::Keyring;
use privacy_pledge::data::{EmailAddress, FullName, PhoneNumber, PostalAddress};
use privacy_pledge::purpose::Transaction;
use privacy_pledge::store::postgres::PgStore;
use privacy_pledge::store::sqlite::{rusqlite, SqliteStore};
use privacy_pledge::{Custodian, Error, LookupToken, PersonalInfo, PersonalRecord, SubjectId};

/// The shop's customer: every field for the purchase, the email indexed.
#[derive(PersonalRecord)]
struct Customer {
    name: PersonalInfo<FullName, Transaction>,
    #[pledge(lookup)]
    email: PersonalInfo<EmailAddress, Transaction>,
    address: PersonalInfo<PostalAddress, Transaction>,
    phone: PersonalInfo<PhoneNumber, Transaction>,
}

const INSERT: &str = "INSERT INTO customers (subject, name, email, address, phone, email_index)
     VALUES ($1, $2, $3, $4, $5, $6)";

/// The shop's `customers` table on one of the stores.
enum Db {
    Sqlite(SqliteStore),
    Pg(PgStore),
}

impl Db {
    fn taken(&self, index: &LookupToken<EmailAddress>) -> bool {
        const SQL: &str = "SELECT subject FROM customers WHERE email_index = $1";
        match self {
            Db::Sqlite(s) => s.with_connection(|c| {
                c.prepare_cached(SQL)
                    .and_then(|mut st| st.exists(rusqlite::params![index]))
                    .unwrap()
            }),
            Db::Pg(s) => s.with_client(|c| !c.query(SQL, &[index]).unwrap().is_empty()),
        }
    }

    fn insert(&self, row: &SealedCustomer) {
        const SQL: &str = INSERT;
        let subject = row.subject.to_string();
        match self {
            Db::Sqlite(s) => s.with_connection(|c| {
                c.prepare_cached(SQL)
                    .and_then(|mut st| {
                        st.execute(rusqlite::params![
                            subject,
                            row.name,
                            row.email,
                            row.address,
                            row.phone,
                            row.email_lookup
                        ])
                    })
                    .unwrap();
            }),
            Db::Pg(s) => s.with_client(|c| {
                c.execute(
                    SQL,
                    &[
                        &subject,
                        &row.name,
                        &row.email,
                        &row.address,
                        &row.phone,
                        &row.email_lookup,
                    ],
                )
                .unwrap();
            }),
        }
    }
}

/// A custodian over the store's keys and durable audit sink.
fn custodian(
    keys: impl privacy_pledge::crypto::KeyStore + 'static,
    sink: impl privacy_pledge::AuditSink + 'static,
    keyring: Arc<Keyring>,
) -> Custodian {
    Custodian::builder()
        .keyring(keyring)
        .key_store(keys)
        .audit(sink)
        .build()
        .unwrap()
}

static N: AtomicU64 = AtomicU64::new(0);

/// The custodian calls of one sign-up: the sealed row, or `None` if the
/// email is taken.
fn seal_customer(c: &Custodian, db: &Db) -> Result<Option<SealedCustomer>, Error> {
    let n = N.fetch_add(1, Ordering::Relaxed);
    let email = EmailAddress::parse(&format!("customer{n}@example.com")).unwrap();
    if db.taken(&c.lookup_token_of(&email)) {
        return Ok(None);
    }
    let subject = SubjectId::random();
    let customer = Customer {
        name: c.collect(subject, FullName::parse("Ada Lovelace").unwrap())?,
        email: c.collect(subject, email)?,
        address: c.collect(
            subject,
            PostalAddress::parse("1 Road\nYork YO1 7HH\nGB").unwrap(),
        )?,
        phone: c.collect(subject, PhoneNumber::parse("+44 20 7946 0958").unwrap())?,
    };
    c.seal_record(&customer).map(Some)
}

/// One sign-up, each event committed on its own.
fn per_event(c: &Custodian, db: &Db) {
    let row = seal_customer(c, db).unwrap().expect("a fresh email");
    db.insert(&row);
}

/// One sign-up, its events committed once, before the row leaves.
fn request(c: &Custodian, db: &Db) {
    let row = c
        .request(|| seal_customer(c, db))
        .unwrap()
        .expect("a fresh email");
    db.insert(&row);
}

/// One sign-up in one durable commit: the store's `commit_request`, the
/// row written in the transaction that makes the scope's events (and the
/// new key and lookup token) durable.
fn one_commit(c: &Custodian, db: &Db) {
    let sealed = || -> Result<SealedCustomer, Box<dyn std::error::Error>> {
        Ok(seal_customer(c, db)?.expect("a fresh email"))
    };
    match db {
        Db::Sqlite(s) => s
            .commit_request(c, sealed, |tx, row| {
                tx.prepare_cached(INSERT)?.execute(rusqlite::params![
                    row.subject.to_string(),
                    row.name,
                    row.email,
                    row.address,
                    row.phone,
                    row.email_lookup
                ])?;
                Ok(())
            })
            .map(drop),
        Db::Pg(s) => s
            .commit_request(c, sealed, |tx, row| {
                tx.execute(
                    INSERT,
                    &[
                        &row.subject.to_string(),
                        &row.name,
                        &row.email,
                        &row.address,
                        &row.phone,
                        &row.email_lookup,
                    ],
                )?;
                Ok(())
            })
            .map(drop),
    }
    .unwrap();
}

fn compare(c: &mut Criterion, name: &str, db: &Db, custodian: &Custodian) {
    let mut g = c.benchmark_group(name);
    g.sample_size(20);
    g.bench_function("per_event", |b| b.iter(|| per_event(custodian, db)));
    g.bench_function("request", |b| b.iter(|| request(custodian, db)));
    g.bench_function("one_commit", |b| b.iter(|| one_commit(custodian, db)));
    g.finish();
}

fn db_path() -> PathBuf {
    std::env::temp_dir().join(format!(
        "privacy-pledge-bench-signup-{}.sqlite",
        std::process::id()
    ))
}

fn sqlite(c: &mut Criterion) {
    let path = db_path();
    let store = SqliteStore::open(&path).unwrap();
    store
        .with_connection(|c| {
            c.execute_batch(
                "CREATE TABLE customers (
                    subject TEXT PRIMARY KEY, name BLOB NOT NULL, email BLOB NOT NULL,
                    address BLOB NOT NULL, phone BLOB NOT NULL, email_index BLOB UNIQUE)",
            )
        })
        .unwrap();
    let keyring = Arc::new(Keyring::generate().unwrap());
    let sink = store.audit_sink(keyring.audit_key()).unwrap();
    let custodian = custodian(store.key_store(), sink, keyring);
    compare(c, "signup_sqlite", &Db::Sqlite(store.clone()), &custodian);
    drop((custodian, store));
    for suffix in ["", "-wal", "-shm"] {
        let mut p = path.clone().into_os_string();
        p.push(suffix);
        let _ = std::fs::remove_file(p);
    }
}

fn pg(c: &mut Criterion) {
    let name = format!("pp_bench_signup_{}", std::process::id());
    let Some(db) = common::pg_database("signup_postgres", &name) else {
        return;
    };
    let store = PgStore::connect(&db).unwrap();
    store
        .with_client(|c| {
            c.batch_execute(
                "CREATE TABLE customers (
                    subject TEXT PRIMARY KEY, name BYTEA NOT NULL, email BYTEA NOT NULL,
                    address BYTEA NOT NULL, phone BYTEA NOT NULL, email_index BYTEA UNIQUE)",
            )
        })
        .unwrap();
    let keyring = Arc::new(Keyring::generate().unwrap());
    let sink = store.audit_sink(keyring.audit_key()).unwrap();
    let custodian = custodian(store.key_store(), sink, keyring);
    compare(c, "signup_postgres", &Db::Pg(store.clone()), &custodian);
    drop((custodian, store));
    common::drop_pg_database(&name);
}

criterion_group!(benches, sqlite, pg);
criterion_main!(benches);
