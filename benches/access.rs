//! `custodian.access` against reading a plain `String`, in one run.
//!
//! `cargo bench --bench access -- --warm-up-time 1 --measurement-time 3`
//!
//! - `plain_string`: the baseline — read a `String`'s domain part.
//! - `discarding_sink`: `custodian.access` with a sink that stores nothing
//!   (the custodian's own cost: checks, timestamp, event).
//! - `memory_log`: `custodian.access` with an unchained `MemoryAuditLog`.
//! - `chained_log`: `custodian.access` with the built-in chained log
//!   (HMAC-SHA-256 per event), the default of `Custodian::in_memory()`.
//!
//! Logs are rebuilt for every sample, outside the timed part.

mod common;

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use privacy_pledge::audit::{AuditError, AuditEvent, AuditSink, MemoryAuditLog};
use privacy_pledge::Custodian;

use common::time_access;

/// A sink that stores nothing: isolates the custodian's own cost.
struct Discard;
impl AuditSink for Discard {
    fn record(&self, event: &AuditEvent) -> Result<(), AuditError> {
        black_box(event);
        Ok(())
    }
}

fn access(c: &mut Criterion) {
    let mut g = c.benchmark_group("access");
    g.throughput(Throughput::Elements(1));

    let plain = String::from("ada.lovelace@example.com");
    g.bench_function("plain_string", |b| {
        b.iter(|| {
            let s = black_box(&plain);
            black_box(s.rsplit_once('@').map(|(_, d)| d.len()))
        })
    });
    g.bench_function("discarding_sink", |b| {
        b.iter_custom(|iters| {
            time_access(iters, || {
                Custodian::builder()
                    .audit(Discard)
                    .build()
                    .expect("custodian")
            })
        })
    });
    g.bench_function("memory_log", |b| {
        b.iter_custom(|iters| {
            time_access(iters, || {
                Custodian::builder()
                    .audit(MemoryAuditLog::new())
                    .build()
                    .expect("custodian")
            })
        })
    });
    g.bench_function("chained_log", |b| {
        b.iter_custom(|iters| time_access(iters, Custodian::in_memory))
    });
    g.finish();
}

criterion_group!(benches, access);
criterion_main!(benches);
