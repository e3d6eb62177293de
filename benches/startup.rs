//! Custodian start-up on a database holding many audit events: with the
//! store, start-up reads no trail (consents live in their own table, each
//! process opens a new stream), so it does not grow with the trail.
//!
//! `cargo bench --bench startup -- --warm-up-time 1 --measurement-time 3`
//!
//! The 1,000,000 rows are written straight into `pp_audit_log` by SQL (their
//! content does not matter to start-up), once, before timing. A third
//! database has 10,000 consent changes in its freshness anchor, which
//! start-up reads in full.

mod common;

use std::path::PathBuf;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use privacy_pledge::crypto::Keyring;
use privacy_pledge::freshness::DirAnchorStore;
use privacy_pledge::store::sqlite::SqliteStore;
use privacy_pledge::Custodian;

const ANCHORED_CHANGES: usize = 10_000;

fn db(name: &str, rows: u64) -> PathBuf {
    let path = std::env::temp_dir().join(format!(
        "privacy-pledge-bench-startup-{name}-{}.sqlite",
        std::process::id()
    ));
    let _ = std::fs::remove_file(&path);
    let store = SqliteStore::open(&path).unwrap();
    store
        .with_connection(|c| {
            let tx = c.transaction()?;
            {
                let mut stmt = tx.prepare(
                    "INSERT INTO pp_audit_log (stream, seq, time, subject, action, event)
                     VALUES ('bench', ?1, ?1, 's', 'access', '{}')",
                )?;
                for seq in 1..=rows {
                    stmt.execute([seq as i64])?;
                }
            }
            tx.commit()
        })
        .unwrap();
    path
}

fn open(path: &std::path::Path, keyring: &Arc<Keyring>) -> Custodian {
    let store = SqliteStore::open(path).unwrap();
    Custodian::builder()
        .keyring(keyring.clone())
        .key_store(store.key_store())
        .consent_store(store.consent_store())
        .freshness_anchor(DirAnchorStore::new(path.with_extension("anchor")).unwrap())
        .audit(store.audit_sink(keyring.audit_key()).unwrap())
        .build()
        .unwrap()
}

fn startup(c: &mut Criterion) {
    let keyring = Arc::new(Keyring::generate().unwrap());
    let small = db("empty", 0);
    let large = db("million", 1_000_000);
    // The anchor is read in full at start-up: it grows with consent
    // changes and erasures (not with the trail). 10,000 changes, made
    // through a custodian before timing.
    let anchored = db("anchored", 0);
    {
        let custodian = open(&anchored, &keyring);
        for _ in 0..ANCHORED_CHANGES {
            let subject = privacy_pledge::SubjectId::random();
            custodian
                .consents()
                .grant::<privacy_pledge::purpose::Newsletter>(subject)
                .unwrap();
        }
    }
    let mut g = c.benchmark_group("startup");
    for (name, path) in [
        ("empty_trail", &small),
        ("1M_events", &large),
        ("10k_anchored_changes", &anchored),
    ] {
        g.bench_function(name, |b| b.iter(|| open(path, &keyring)));
    }
    g.finish();
    for p in [small, large, anchored] {
        let _ = std::fs::remove_dir_all(p.with_extension("anchor"));
        for suffix in ["", "-wal", "-shm"] {
            let mut f = p.clone().into_os_string();
            f.push(suffix);
            let _ = std::fs::remove_file(f);
        }
    }
}

criterion_group!(benches, startup);
criterion_main!(benches);
