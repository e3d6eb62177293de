//! The audit trail's cost.
//!
//! `cargo bench --bench audit -- --warm-up-time 1 --measurement-time 3`
//!
//! - `audit/ring_hmac_79_bytes`: for reference, one HMAC-SHA-256 with
//!   `ring::hmac` over the 79 bytes a chain entry authenticates.
//! - `audit/chain_append`: one event appended to the default in-memory
//!   `ChainedAuditLog` (a keyed stream, schema version 4: numbering, nonce hash, GMAC,
//!   move into the log).
//! - `audit/verify_100k`: `verify` over 100,000 such entries with a
//!   trusted checkpoint; throughput counts entries. `verify_100k_single`
//!   does the same for the single-chain format (version 1, HMAC-SHA-256),
//!   and the `_streamed` rows for version 2.
//! - `audit/access_memory_log` and `audit/access_chained_log`:
//!   `custodian.access` with an unchained `MemoryAuditLog` and with a chained
//!   in-memory log, to show what chaining adds to an audited use.
//!
//! Logs that grow are rebuilt for every sample (outside the timed part), so
//! memory stays bounded however many iterations criterion picks.

mod common;

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use privacy_pledge::audit::{
    verify, verify_public, AuditEvent, AuditKey, AuditSink, ChainedAuditLog, CheckpointSigner,
    MemoryAuditLog,
};
use privacy_pledge::time::Timestamp;
use privacy_pledge::Custodian;

use common::{email, fresh, time_access};

const VERIFY_ENTRIES: usize = 100_000;

/// A real event, as the custodian builds it for `access`.
fn access_event() -> AuditEvent {
    let log = Arc::new(MemoryAuditLog::new());
    let custodian = Custodian::builder()
        .audit(log.clone())
        .build()
        .expect("custodian");
    custodian
        .access(&email(), |e| e.domain().len())
        .expect("access");
    log.events().pop().expect("one event")
}

fn audit(c: &mut Criterion) {
    let key = AuditKey::from_bytes([7; 32]);
    let event = access_event();
    let mut g = c.benchmark_group("audit");

    // For reference: `ring`'s one-shot HMAC-SHA-256 over the input of one
    // chain entry (the previous MAC and the 47-byte canonical encoding).
    // Every append and every verified entry computes one such MAC.
    let hmac_key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &[7; 32]);
    let input = [0x5a_u8; 32 + 47];
    g.throughput(Throughput::Elements(1));
    g.bench_function("ring_hmac_79_bytes", |b| {
        b.iter(|| ring::hmac::sign(&hmac_key, black_box(&input)))
    });

    g.throughput(Throughput::Elements(1));
    g.bench_function("chain_append", |b| {
        b.iter_custom(|iters| {
            fresh(
                iters,
                || ChainedAuditLog::in_memory(key.clone()),
                |log| log.record(black_box(&event)).expect("record"),
            )
        })
    });

    // Version 3 (the default keyed stream), version 1 (the single chain:
    // one HMAC-SHA-256 per entry), version 2 (a stream: the link hash and
    // the MAC per entry with the audit key; the link hash alone with the
    // public key).
    g.throughput(Throughput::Elements(VERIFY_ENTRIES as u64));
    let mut streamed = None;
    for (name, log) in [
        ("verify_100k", ChainedAuditLog::in_memory(key.clone())),
        (
            "verify_100k_single",
            ChainedAuditLog::new(key.clone(), MemoryAuditLog::new()),
        ),
        (
            "verify_100k_streamed",
            ChainedAuditLog::new_stream(key.clone(), MemoryAuditLog::new()),
        ),
    ] {
        for _ in 0..VERIFY_ENTRIES {
            log.record(&event).expect("record");
        }
        let entries = log.inner().events();
        let head = log.checkpoint();
        g.bench_function(name, |b| {
            b.iter(|| verify(black_box(&entries), &key, Some(&head)).expect("intact"))
        });
        streamed = Some((log.stream(), entries, head));
    }
    let (stream, entries_v2, head_v2) = streamed.expect("three logs");
    let signer = CheckpointSigner::from_seed(&[9; 32]).expect("signer");
    let signed = [signer.sign(stream.expect("stream"), head_v2, Timestamp::now())];
    let public = signer.public_key();
    g.bench_function("verify_public_100k_streamed", |b| {
        b.iter(|| assert!(verify_public(black_box(&entries_v2), &public, &signed).is_intact()))
    });

    g.throughput(Throughput::Elements(1));
    g.bench_function("access_memory_log", |b| {
        b.iter_custom(|iters| {
            time_access(iters, || {
                Custodian::builder()
                    .audit(MemoryAuditLog::new())
                    .build()
                    .expect("custodian")
            })
        })
    });
    g.bench_function("access_chained_log", |b| {
        b.iter_custom(|iters| {
            time_access(iters, || {
                Custodian::builder()
                    .audit(ChainedAuditLog::in_memory(key.clone()))
                    .build()
                    .expect("custodian")
            })
        })
    });
    g.finish();
}

criterion_group!(benches, audit);
criterion_main!(benches);
