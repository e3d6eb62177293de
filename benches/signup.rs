//! A sign-up as `examples/shop_service` does it, on a durable store opened
//! by URL (`Store`, with the shop's default configuration: a checkpoint
//! signed every 100 events): one commit per audit event, one commit per
//! request (`Custodian::request`), and one durable commit for the request
//! and the host's row (`Store::commit_request`), measured in the same run.
//!
//! `cargo bench --bench signup -- --warm-up-time 1 --measurement-time 4`
//! (with `PP_TEST_PG` set to a PostgreSQL server's `host=… port=… user=…`,
//! e.g. inside `scripts/test`'s cluster, the same on PostgreSQL with
//! `synchronous_commit = on`; with `PP_BENCH_CHECKPOINT_EVERY=N`, a
//! checkpoint every N events instead; with `PP_BENCH_LATENCY=N`, each
//! group then also prints the spread of N sign-ups timed one by one, of the
//! baseline and of `one_commit` interleaved, and their ratio)
//!
//! A sign-up: the email's lookup token is looked up in the `customers`
//! index (refused if taken), a new subject id is drawn
//! (`Custodian::new_subject`: its first key is made without reading the
//! key store), the four fields — name, email, postal address,
//! phone — are collected for `Transaction` and sealed as one record
//! (`seal_record`: a new subject key in the key store, four seals, the
//! email's lookup token noted for erasure receipts), and the sealed row is
//! inserted. Eight audit events. "per_event" commits each event on its own
//! (the store's sink outside a scope); "request" runs the custodian calls
//! in one request scope and inserts the row after it returned;
//! "one_commit" writes the row in `commit_request`'s transaction.
//! "plain_row" is the baseline: the same lookup and insert of a row of the
//! same sizes with no custodian, in a durable commit of its own. Each
//! variant starts on an empty database of its own (which grows by the
//! thousands of sign-ups its samples make). The SQLite file runs with
//! `synchronous = FULL`.

mod common;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use criterion::{criterion_group, criterion_main, Criterion};
use privacy_pledge::crypto::Keyring;
use privacy_pledge::data::{EmailAddress, FullName, PhoneNumber, PostalAddress};
use privacy_pledge::purpose::Transaction;
use privacy_pledge::store::{Store, StoreConfig, StoreError};
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

/// Whether a customer has the email whose lookup token is `index`.
fn taken(store: &Store, index: &LookupToken<EmailAddress>) -> bool {
    let found = store.query(
        "SELECT 1 FROM customers WHERE email_index = $1",
        &[index],
        |_| Ok(()),
    );
    !found.unwrap().is_empty()
}

static N: AtomicU64 = AtomicU64::new(0);

/// The custodian calls of one sign-up: the sealed row, or `None` if the
/// email is taken.
fn seal_customer(c: &Custodian, store: &Store) -> Result<Option<SealedCustomer>, Error> {
    let n = N.fetch_add(1, Ordering::Relaxed);
    let email = EmailAddress::parse(&format!("customer{n}@example.com")).unwrap();
    if taken(store, &c.lookup_token_of(&email)) {
        return Ok(None);
    }
    let subject = c.new_subject()?;
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

/// The sealed row's insert, on the store or in `commit_request`'s
/// transaction.
fn insert(
    execute: impl FnOnce(&str, &[&dyn privacy_pledge::store::sql::Param]) -> Result<u64, StoreError>,
    row: &SealedCustomer,
) -> Result<(), StoreError> {
    execute(
        INSERT,
        &[
            &row.subject,
            &row.name,
            &row.email,
            &row.address,
            &row.phone,
            &row.email_lookup,
        ],
    )
    .map(drop)
}

/// One sign-up, each event committed on its own.
fn per_event(c: &Custodian, store: &Store) {
    let row = seal_customer(c, store).unwrap().expect("a fresh email");
    insert(|sql, p| store.execute(sql, p), &row).unwrap();
}

/// One sign-up, its events committed once, before the row leaves.
fn request(c: &Custodian, store: &Store) {
    let row = c
        .request(|| seal_customer(c, store))
        .unwrap()
        .expect("a fresh email");
    insert(|sql, p| store.execute(sql, p), &row).unwrap();
}

/// One sign-up in one durable commit: the store's `commit_request`, the
/// row written in the transaction that makes the scope's events (and the
/// new key and lookup token) durable.
fn one_commit(c: &Custodian, store: &Store) {
    store
        .commit_request(
            c,
            || -> Result<SealedCustomer, Box<dyn std::error::Error>> {
                Ok(seal_customer(c, store)?.expect("a fresh email"))
            },
            |tx, row| Ok(insert(|sql, p| tx.execute(sql, p), row)?),
        )
        .unwrap();
}

/// The baseline: the same row with no custodian — the email looked up by
/// its index and the row inserted in a durable commit of its own, its
/// values random bytes of an envelope's size, and its index a digest of
/// the address. What a sign-up costs the host on this machine without the
/// crate: `one_commit` is reported against it.
fn plain_row(_: &Custodian, store: &Store) {
    let n = N.fetch_add(1, Ordering::Relaxed);
    let digest = ring::digest::digest(
        &ring::digest::SHA256,
        format!("customer{n}@example.com").as_bytes(),
    );
    let index = digest.as_ref();
    let found = store
        .query(
            "SELECT 1 FROM customers WHERE email_index = $1",
            &[&index],
            |_| Ok(()),
        )
        .unwrap();
    assert!(found.is_empty());
    let value = |len: usize| {
        let mut v = vec![0u8; len];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut v).unwrap();
        v
    };
    let (name, email, address, phone) = (value(90), value(100), value(110), value(95));
    store
        .execute(
            INSERT,
            &[
                &SubjectId::random(),
                &name,
                &email,
                &address,
                &phone,
                &index,
            ],
        )
        .unwrap();
}

/// One way of signing up: its name and the function.
type Variant = (&'static str, fn(&Custodian, &Store));

const VARIANTS: [Variant; 4] = [
    ("plain_row", plain_row),
    ("per_event", per_event),
    ("request", request),
    ("one_commit", one_commit),
];

/// A shop on a durable store of its own: the store with the shop's
/// `customers` table, a custodian over it, and where its checkpoints go.
struct Shop {
    custodian: Custodian,
    store: Store,
    guard: privacy_pledge::store::CheckpointGuard,
    checkpoints: PathBuf,
}

impl Shop {
    /// The shop's configuration: a checkpoint every 100 events unless
    /// `PP_BENCH_CHECKPOINT_EVERY` says otherwise.
    fn open(url: String, table: &str, checkpoints: PathBuf) -> Shop {
        let mut config = StoreConfig::new(url, &checkpoints);
        if let Some(every) = std::env::var("PP_BENCH_CHECKPOINT_EVERY")
            .ok()
            .and_then(|v| v.parse().ok())
        {
            config = config.checkpoint_every(every);
        }
        let store = Store::open(&config).unwrap();
        store.batch(table).unwrap();
        let builder = Custodian::builder().keyring(Keyring::generate().unwrap());
        let (custodian, guard) = store.custodian(builder).unwrap();
        Shop {
            custodian,
            store,
            guard,
            checkpoints,
        }
    }

    fn close(self) {
        drop((self.guard, self.custodian, self.store));
        let _ = std::fs::remove_dir_all(self.checkpoints);
    }
}

/// Measures each variant on a database of its own, created empty by
/// `database(variant)` (a URL; `None`: skip the group), so that none runs
/// on the rows another left.
fn compare(c: &mut Criterion, name: &str, database: impl Fn(&str) -> Option<String>, table: &str) {
    let mut g = c.benchmark_group(name);
    g.sample_size(20);
    for (variant, sign_up) in VARIANTS {
        let Some(url) = database(variant) else {
            return;
        };
        let shop = Shop::open(
            url,
            table,
            scratch(&format!("{name}-{variant}-checkpoints")),
        );
        g.bench_function(variant, |b| {
            b.iter(|| sign_up(&shop.custodian, &shop.store))
        });
        shop.close();
    }
    g.finish();
    latency(name, database, table);
}

/// With `PP_BENCH_LATENCY=N`: after the group, N sign-ups of the baseline
/// and of `one_commit`, each on a fresh database of its own, timed one by
/// one and interleaved (a baseline sign-up, then a `one_commit` one, N
/// times), and their spread and ratio printed. Criterion reports the mean;
/// a sign-up that also runs SQLite's WAL checkpoint, or saves a signed
/// checkpoint, takes far longer than the median one. Interleaved, both
/// see the same moments of the disk, whose flush time on a shared VM
/// drifts by a third within minutes: the ratio then holds where the
/// criterion groups, measured one after the other, may not.
fn latency(name: &str, database: impl Fn(&str) -> Option<String>, table: &str) {
    let Some(n) = std::env::var("PP_BENCH_LATENCY")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|&n| n > 0)
    else {
        return;
    };
    let mut measured = Vec::new();
    for (variant, sign_up) in VARIANTS
        .into_iter()
        .filter(|(variant, _)| matches!(*variant, "plain_row" | "one_commit"))
    {
        let Some(url) = database(&format!("{variant}_latency")) else {
            return;
        };
        let shop = Shop::open(url, table, scratch(&format!("{name}-{variant}-latency")));
        measured.push((variant, sign_up, shop, Vec::with_capacity(n)));
    }
    for _ in 0..n {
        for (_, sign_up, shop, times) in &mut measured {
            let start = std::time::Instant::now();
            sign_up(&shop.custodian, &shop.store);
            times.push(start.elapsed().as_micros());
        }
    }
    let mut spreads = Vec::new();
    for (variant, _, shop, mut times) in measured {
        shop.close();
        let mean = times.iter().sum::<u128>() / n as u128;
        times.sort_unstable();
        let at = |q: f64| times[((n - 1) as f64 * q) as usize];
        println!(
            "{name}/{variant} latency over {n} sign-ups (µs): mean {mean}, p10 {}, p50 {}, p90 {}, p99 {}, max {}",
            at(0.1),
            at(0.5),
            at(0.9),
            at(0.99),
            at(1.0)
        );
        spreads.push((mean as f64, at(0.5) as f64));
    }
    if let [(base_mean, base_p50), (mean, p50)] = spreads[..] {
        println!(
            "{name}/one_commit against plain_row, interleaved: mean {:.2}×, p50 {:.2}×",
            mean / base_mean,
            p50 / base_p50
        );
    }
}

fn scratch(what: &str) -> PathBuf {
    std::env::temp_dir().join(format!(
        "privacy-pledge-bench-signup-{}-{what}",
        std::process::id()
    ))
}

fn sqlite(c: &mut Criterion) {
    let files = std::cell::RefCell::new(Vec::new());
    compare(
        c,
        "signup_sqlite",
        |variant| {
            let path = scratch(&format!("{variant}.sqlite"));
            files.borrow_mut().push(path.clone());
            Some(format!("sqlite:{}", path.display()))
        },
        "CREATE TABLE customers (
            subject BLOB PRIMARY KEY, name BLOB NOT NULL, email BLOB NOT NULL,
            address BLOB NOT NULL, phone BLOB NOT NULL, email_index BLOB UNIQUE)",
    );
    for path in files.into_inner() {
        for suffix in ["", "-wal", "-shm"] {
            let mut p = path.clone().into_os_string();
            p.push(suffix);
            let _ = std::fs::remove_file(p);
        }
    }
}

fn pg(c: &mut Criterion) {
    let names = std::cell::RefCell::new(Vec::new());
    compare(
        c,
        "signup_postgres",
        |variant| {
            let name = format!("pp_bench_signup_{}_{variant}", std::process::id());
            names.borrow_mut().push(name.clone());
            common::pg_database("signup_postgres", &name)
        },
        "CREATE TABLE customers (
            subject BYTEA PRIMARY KEY, name BYTEA NOT NULL, email BYTEA NOT NULL,
            address BYTEA NOT NULL, phone BYTEA NOT NULL, email_index BYTEA UNIQUE)",
    );
    for name in names.into_inner() {
        common::drop_pg_database(&name);
    }
}

criterion_group!(benches, sqlite, pg);
criterion_main!(benches);
