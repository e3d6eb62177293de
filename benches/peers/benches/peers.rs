//! privacy-pledge against its peers, in one run: raw `ring` AES-256-GCM
//! with a fresh `SystemRandom` nonce per seal (as typical code does), Tink's
//! AES-256-GCM AEAD, and the crate's `seal`, `open` and `access` with the
//! default chained audit log, at 24 bytes (an email address) and 1 KiB (a
//! long postal address). Two more baselines split the audit's share: one
//! event appended to the default in-memory chained log alone
//! (`audit/append`), and `access` through the same chain into a sink that
//! keeps nothing (`access/chain_keeps_nothing`), which leaves out the cost
//! of the trail's growing memory. After the criterion groups it prints the
//! medians and the ratios the README quotes.
//!
//! ```text
//! cargo bench -p privacy-pledge-peers
//! ```

#[path = "../../common/mod.rs"]
mod common;

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, Criterion, Throughput};
use privacy_pledge::audit::{AuditError, AuditEvent, AuditKey, AuditSink, ChainedAuditLog};
use privacy_pledge::data::{DataKind, EmailAddress};
use privacy_pledge::purpose::Transaction;
use privacy_pledge::{Custodian, PersonalInfo, SubjectId};
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};

/// 24 bytes.
const EMAIL: &str = "ada.lovelace@example.com";

fn ring_key() -> LessSafeKey {
    let mut k = [0u8; 32];
    SystemRandom::new().fill(&mut k).unwrap();
    LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &k).unwrap())
}

fn ring_seal(key: &LessSafeKey, rng: &SystemRandom, plain: &[u8]) -> Vec<u8> {
    let mut nonce = [0u8; NONCE_LEN];
    rng.fill(&mut nonce).unwrap();
    let mut out = Vec::with_capacity(NONCE_LEN + plain.len() + 16);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(plain);
    let tag = key
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(b"subject"),
            &mut out[NONCE_LEN..],
        )
        .unwrap();
    out.extend_from_slice(tag.as_ref());
    out
}

fn ring_open(key: &LessSafeKey, sealed: &[u8]) -> Vec<u8> {
    let nonce = Nonce::try_assume_unique_for_key(&sealed[..NONCE_LEN]).unwrap();
    let mut buf = sealed[NONCE_LEN..].to_vec();
    let n = key
        .open_in_place(nonce, Aad::from(b"subject"), &mut buf)
        .unwrap()
        .len();
    buf.truncate(n);
    buf
}

fn tink() -> Box<dyn tink_core::Aead> {
    tink_aead::init();
    let handle = tink_core::keyset::Handle::new(&tink_aead::aes256_gcm_key_template()).unwrap();
    tink_aead::new(&handle).unwrap()
}

/// Times `iters` calls of `f` on a fresh custodian per sample, so the
/// in-memory trail stays bounded.
fn fresh_custodian(iters: u64, mut f: impl FnMut(&Custodian)) -> Duration {
    let c = Custodian::in_memory();
    let start = Instant::now();
    for _ in 0..iters {
        f(&c);
    }
    start.elapsed()
}

fn one_size<T: DataKind>(c: &mut Criterion, label: &str, plain: &[u8], value: T) {
    let key = ring_key();
    let rng = SystemRandom::new();
    let tink = tink();
    let info: PersonalInfo<T, Transaction> = PersonalInfo::collect(SubjectId::random(), value);

    let mut g = c.benchmark_group(format!("seal_{label}"));
    g.throughput(Throughput::Elements(1));
    g.bench_function("ring", |b| {
        b.iter(|| black_box(ring_seal(&key, &rng, black_box(plain))))
    });
    g.bench_function("tink", |b| {
        b.iter(|| black_box(tink.encrypt(black_box(plain), b"subject").unwrap()))
    });
    g.bench_function("pledge", |b| {
        b.iter_custom(|iters| {
            fresh_custodian(iters, |c| {
                black_box(c.seal(black_box(&info)).unwrap());
            })
        })
    });
    g.finish();

    let ring_sealed = ring_seal(&key, &rng, plain);
    let tink_sealed = tink.encrypt(plain, b"subject").unwrap();
    let mut g = c.benchmark_group(format!("open_{label}"));
    g.throughput(Throughput::Elements(1));
    g.bench_function("ring", |b| {
        b.iter(|| black_box(ring_open(&key, black_box(&ring_sealed))))
    });
    g.bench_function("tink", |b| {
        b.iter(|| black_box(tink.decrypt(black_box(&tink_sealed), b"subject").unwrap()))
    });
    g.bench_function("pledge", |b| {
        b.iter_custom(|iters| {
            let c = Custodian::in_memory();
            let sealed = c.seal(&info).unwrap();
            let start = Instant::now();
            for _ in 0..iters {
                black_box(c.open(black_box(&sealed)).unwrap());
            }
            start.elapsed()
        })
    });
    g.finish();
}

fn peers(c: &mut Criterion) {
    one_size(
        c,
        "24B",
        EMAIL.as_bytes(),
        EmailAddress::parse(EMAIL).unwrap(),
    );
    let address = common::postal_1k();
    let text = privacy_pledge::ExposeSecret::expose_secret(&address).to_owned();
    one_size(c, "1KiB", text.as_bytes(), address);

    let mut g = c.benchmark_group("access");
    g.throughput(Throughput::Elements(1));
    let info: PersonalInfo<EmailAddress, Transaction> =
        PersonalInfo::collect(SubjectId::random(), EmailAddress::parse(EMAIL).unwrap());
    g.bench_function("pledge", |b| {
        b.iter_custom(|iters| {
            fresh_custodian(iters, |c| {
                black_box(c.access(black_box(&info), |e| e.domain().len()).unwrap());
            })
        })
    });
    g.bench_function("chain_keeps_nothing", |b| {
        let c = Custodian::builder()
            .audit(ChainedAuditLog::new_keyed_stream(
                AuditKey::generate().unwrap(),
                KeepsNothing,
            ))
            .build()
            .unwrap();
        b.iter(|| black_box(c.access(black_box(&info), |e| e.domain().len()).unwrap()))
    });
    g.finish();

    // The audit event alone: one `seal` event appended to the default
    // in-memory chained log (a fresh log per sample).
    let mut g = c.benchmark_group("audit");
    g.throughput(Throughput::Elements(1));
    let event = seal_event();
    g.bench_function("append", |b| {
        b.iter_custom(|iters| {
            let log = ChainedAuditLog::in_memory(AuditKey::generate().unwrap());
            let start = Instant::now();
            for _ in 0..iters {
                log.record(black_box(&event)).unwrap();
            }
            start.elapsed()
        })
    });
    g.finish();
}

/// A sink that keeps nothing.
struct KeepsNothing;
impl AuditSink for KeepsNothing {
    fn record(&self, event: &AuditEvent) -> Result<(), AuditError> {
        black_box(event);
        Ok(())
    }
}

/// The event a `seal` of the 24-byte email records.
fn seal_event() -> AuditEvent {
    let c = Custodian::in_memory();
    let info: PersonalInfo<EmailAddress, Transaction> =
        PersonalInfo::collect(SubjectId::random(), EmailAddress::parse(EMAIL).unwrap());
    c.seal(&info).unwrap();
    c.builtin_audit_log()
        .unwrap()
        .inner()
        .events()
        .pop()
        .unwrap()
}

criterion_group!(benches, peers);

/// The median of one benchmark, in nanoseconds, from criterion's estimates.
fn median(group: &str, bench: &str) -> Option<f64> {
    let dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    let path = dir
        .join("criterion")
        .join(group)
        .join(bench)
        .join("new/estimates.json");
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    json["median"]["point_estimate"].as_f64()
}

fn summary() {
    let audit = median("audit", "append");
    println!(
        "\n| op | raw ring | Tink | privacy-pledge (chained audit) | vs Tink | vs ring | vs ring + audit event |"
    );
    println!("|---|---|---|---|---|---|---|");
    for group in ["seal_24B", "open_24B", "seal_1KiB", "open_1KiB"] {
        let (Some(r), Some(t), Some(p)) = (
            median(group, "ring"),
            median(group, "tink"),
            median(group, "pledge"),
        ) else {
            continue;
        };
        let with_audit = audit.map_or("—".to_owned(), |a| format!("{:.2}×", p / (r + a)));
        println!(
            "| {group} | {r:.0} ns | {t:.0} ns | {p:.0} ns | {:.2}× | {:.2}× | {with_audit} |",
            p / t,
            p / r
        );
    }
    if let Some(a) = audit {
        println!("| audit event alone (default log) | — | — | {a:.0} ns | — | — | — |");
    }
    for (bench, label) in [
        ("pledge", "access (24 B), default log"),
        (
            "chain_keeps_nothing",
            "access (24 B), chain into a sink that keeps nothing",
        ),
    ] {
        if let Some(a) = median("access", bench) {
            println!(
                "| {label} | — | — | {a:.0} ns ({:.2} M/s) | — | — | — |",
                1e3 / a
            );
        }
    }
}

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    summary();
}
