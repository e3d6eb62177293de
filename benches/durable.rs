//! Durable audited use on SQLite (`synchronous = FULL`): group commit
//! against one commit per event, with 1, 8 and 64 threads, in one run.
//!
//! `cargo bench --bench durable -- --warm-up-time 1 --measurement-time 5`
//! (with `PP_TEST_PG` set to a PostgreSQL server's `host=… port=… user=…`,
//! e.g. inside `scripts/test`'s cluster, the same on PostgreSQL with
//! `synchronous_commit = on`)
//!
//! Each sample runs `threads` threads that together make `EVENTS` audited
//! `access` calls on one custodian; throughput is in events per second.
//! "per_event" is the same custodian over a sink that commits every event
//! in its own transaction behind a `ChainedAuditLog` (what a host writes
//! by hand); "group" is `SqliteStore::audit_sink`.

mod common;

use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use privacy_pledge::audit::{AuditError, AuditEvent, AuditKey, AuditSink, ChainedAuditLog};
use privacy_pledge::store::postgres::PgStore;
use privacy_pledge::store::sqlite::{rusqlite, SqliteStore};
use privacy_pledge::Custodian;

const EVENTS: usize = 512;

/// One commit per event: the baseline.
struct PerEvent(SqliteStore);

impl AuditSink for PerEvent {
    fn record(&self, event: &AuditEvent) -> Result<(), AuditError> {
        let json = serde_json::to_string(event).map_err(|_| AuditError::new("encode"))?;
        self.0
            .with_connection(|c| {
                c.execute(
                    "INSERT INTO bench_per_event (event) VALUES (?1)",
                    rusqlite::params![json],
                )
            })
            .map(|_| ())
            .map_err(|e| AuditError::new(e.to_string()))
    }
}

/// One commit per event on PostgreSQL: the baseline there.
struct PgPerEvent(PgStore);

impl AuditSink for PgPerEvent {
    fn record(&self, event: &AuditEvent) -> Result<(), AuditError> {
        let json = serde_json::to_string(event).map_err(|_| AuditError::new("encode"))?;
        self.0
            .with_client(|c| c.execute("INSERT INTO bench_per_event (event) VALUES ($1)", &[&json]))
            .map(|_| ())
            .map_err(|e| AuditError::new(e.to_string()))
    }
}

fn pg_durable(c: &mut Criterion) {
    let name = format!("pp_bench_{}", std::process::id());
    let Some(db) = common::pg_database("durable_access_postgres", &name) else {
        return;
    };
    let store = PgStore::connect(&db).unwrap();
    store
        .with_client(|c| {
            c.batch_execute(
                "CREATE TABLE bench_per_event (id BIGSERIAL PRIMARY KEY, event TEXT NOT NULL)",
            )
        })
        .unwrap();
    let key = AuditKey::generate().unwrap();
    let (per_event, group) = custodians(
        ChainedAuditLog::new(key.clone(), PgPerEvent(store.clone())),
        store.audit_sink(key).unwrap(),
    );
    compare(c, "durable_access_postgres", &per_event, &group);
    drop((group, per_event, store));
    common::drop_pg_database(&name);
}

fn db_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!(
        "privacy-pledge-bench-{name}-{}.sqlite",
        std::process::id()
    ))
}

/// The two custodians compared: one over a sink that commits each event,
/// one over the store's group-committing sink.
fn custodians(
    per_event: impl AuditSink + 'static,
    group: impl AuditSink + 'static,
) -> (Arc<Custodian>, Arc<Custodian>) {
    let build =
        |sink: Box<dyn AuditSink>| Arc::new(Custodian::builder().audit(sink).build().unwrap());
    (build(Box::new(per_event)), build(Box::new(group)))
}

/// One commit per event against group commit, with 1, 8 and 64 threads.
fn compare(c: &mut Criterion, name: &str, per_event: &Arc<Custodian>, group: &Arc<Custodian>) {
    let mut g = c.benchmark_group(name);
    g.sample_size(10);
    g.throughput(Throughput::Elements(EVENTS as u64));
    for threads in [1, 8, 64] {
        g.bench_function(format!("per_event_{threads}_threads"), |b| {
            b.iter_custom(|iters| (0..iters).map(|_| run(per_event, threads)).sum())
        });
        g.bench_function(format!("group_{threads}_threads"), |b| {
            b.iter_custom(|iters| (0..iters).map(|_| run(group, threads)).sum())
        });
    }
    g.finish();
}

fn run(custodian: &Arc<Custodian>, threads: usize) -> Duration {
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let c = custodian.clone();
            std::thread::spawn(move || {
                let info = common::email();
                for _ in 0..EVENTS / threads {
                    black_box(c.access(&info, |e| e.domain().len()).unwrap());
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    start.elapsed()
}

fn durable(c: &mut Criterion) {
    let path = db_path("durable");
    let _ = std::fs::remove_file(&path);
    let store = SqliteStore::open(&path).unwrap();
    store
        .with_connection(|c| {
            c.execute_batch("CREATE TABLE IF NOT EXISTS bench_per_event (id INTEGER PRIMARY KEY, event TEXT NOT NULL)")
        })
        .unwrap();
    let key = AuditKey::generate().unwrap();
    let (per_event, group) = custodians(
        ChainedAuditLog::new(key.clone(), PerEvent(store.clone())),
        store.audit_sink(key).unwrap(),
    );

    compare(c, "durable_access", &per_event, &group);
    drop(store);
    for suffix in ["", "-wal", "-shm"] {
        let mut p = path.clone().into_os_string();
        p.push(suffix);
        let _ = std::fs::remove_file(p);
    }
}

criterion_group!(benches, durable, pg_durable);
criterion_main!(benches);
