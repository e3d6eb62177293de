//! Sealing and opening against raw `ring`, pseudonyms, and erasure, in one run.
//!
//! `cargo bench --bench seal -- --warm-up-time 1 --measurement-time 3`
//!
//! - `seal_64B`, `open_64B`: an `EmailAddress` of exactly 64 bytes.
//! - `seal_1KiB`, `open_1KiB`: a `PostalAddress` of seven 127-character lines
//!   and a country line, 1,024 bytes sealed.
//!
//!   In each: `ring_raw` is the baseline — `ring` AES-256-GCM through
//!   `LessSafeKey::seal_in_place_append_tag` / `open_in_place` on a fresh
//!   buffer holding the same bytes, with a nonce from `SystemRandom` per seal,
//!   the way most code uses `ring`. `custodian_no_audit` is `custodian.seal` /
//!   `custodian.open` with an audit sink that does nothing (the cost of the
//!   crypto path: key lookup, nonce, header, AEAD, decoding);
//!   `custodian_chained_audit` is the same with the default chained
//!   in-memory audit log (one event per call, with its GMAC tag). Custodians are
//!   rebuilt for every sample, outside the timed part, so logs stay bounded.
//! - `pseudonym`: `custodian.pseudonym` of an email, against a bare
//!   `ring` HMAC-SHA-256 of the same bytes.
//! - `erase`: `custodian.erase` of a subject with 10 and with 10,000 sealed
//!   records (sealed in setup, not timed; caches flushed before each erase
//!   in both cases). The events go through the default chain (a keyed
//!   stream) into a sink that keeps nothing: kept in memory, the 10,000
//!   setup events would make the erase event land on a page of the trail
//!   never touched before, and the comparison would time the kernel
//!   zeroing that page, not the erasure.

mod common;

use std::hint::black_box;
use std::sync::Arc;

use criterion::measurement::WallTime;
use criterion::{
    criterion_group, criterion_main, BatchSize, BenchmarkGroup, Criterion, SamplingMode, Throughput,
};
use privacy_pledge::audit::{AuditError, AuditEvent, AuditKey, AuditSink, ChainedAuditLog};
use privacy_pledge::crypto::{Keyring, MemoryKeyStore};
use privacy_pledge::data::{DataKind, EmailAddress};
use privacy_pledge::purpose::Transaction;
use privacy_pledge::{Custodian, ExposeSecret, PersonalInfo, SubjectId};
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use ring::rand::{SecureRandom, SystemRandom};

use common::fresh;

/// An audit sink that records nothing: isolates the cost of the crypto path.
struct NoAudit;
impl AuditSink for NoAudit {
    fn record(&self, _: &AuditEvent) -> Result<(), AuditError> {
        Ok(())
    }
}

fn email_64() -> EmailAddress {
    let local = "ada.lovelace.countess.of.lovelace.analyst.1815.1852x";
    let text = format!("{local}@example.com");
    assert_eq!(text.len(), 64);
    EmailAddress::parse(&text).unwrap()
}

fn ring_key() -> LessSafeKey {
    let mut k = [0u8; 32];
    SystemRandom::new().fill(&mut k).unwrap();
    LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &k).unwrap())
}

/// The two custodians measured: without audit cost, and with the default
/// chained in-memory log. Both share one keyring and key store, so an
/// envelope sealed by one opens in a fresh one; each sample gets a fresh
/// custodian (built outside the timed part), so logs stay bounded.
struct Variants {
    keyring: Arc<Keyring>,
    store: Arc<MemoryKeyStore>,
}

impl Variants {
    const NAMES: [&'static str; 2] = ["custodian_no_audit", "custodian_chained_audit"];

    fn new() -> Self {
        Variants {
            keyring: Arc::new(Keyring::generate().unwrap()),
            store: Arc::new(MemoryKeyStore::new()),
        }
    }

    fn build(&self, name: &str) -> Custodian {
        let b = Custodian::builder()
            .keyring(self.keyring.clone())
            .key_store(self.store.clone());
        match name {
            "custodian_no_audit" => b.audit(NoAudit).build().unwrap(),
            _ => b.build().unwrap(),
        }
    }
}

fn seal_and_open<T: DataKind>(c: &mut Criterion, label: &str, plain: &[u8], value: T) {
    let info: PersonalInfo<T, Transaction> = PersonalInfo::collect(SubjectId::random(), value);
    let key = ring_key();
    let rng = SystemRandom::new();

    let mut g = c.benchmark_group(format!("seal_{label}"));
    g.throughput(Throughput::Bytes(plain.len() as u64));
    g.bench_function("ring_raw", |b| {
        b.iter(|| {
            let mut nonce = [0u8; 12];
            rng.fill(&mut nonce).unwrap();
            let mut buf = Vec::with_capacity(plain.len() + 16);
            buf.extend_from_slice(black_box(plain));
            key.seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::empty(),
                &mut buf,
            )
            .unwrap();
            black_box((nonce, buf))
        })
    });
    // For reference: one `getpid`, the per-seal fork check that synthetic
    // nonces made unnecessary (the seal rows below no longer pay it).
    g.bench_function("getpid_reference", |b| {
        b.iter(|| black_box(std::process::id()))
    });
    let variants = Variants::new();
    for name in Variants::NAMES {
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let setup = || {
                    let c = variants.build(name);
                    c.seal(&info).unwrap(); // the subject's key is cached: steady state
                    c
                };
                fresh(iters, setup, |c| {
                    black_box(c.seal(black_box(&info)).unwrap());
                })
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group(format!("open_{label}"));
    g.throughput(Throughput::Bytes(plain.len() as u64));
    let mut nonce = [0u8; 12];
    rng.fill(&mut nonce).unwrap();
    let mut stored = plain.to_vec();
    key.seal_in_place_append_tag(
        Nonce::assume_unique_for_key(nonce),
        Aad::empty(),
        &mut stored,
    )
    .unwrap();
    g.bench_function("ring_raw", |b| {
        b.iter(|| {
            let mut buf = black_box(&stored).clone();
            let pt = key
                .open_in_place(Nonce::assume_unique_for_key(nonce), Aad::empty(), &mut buf)
                .unwrap();
            black_box(pt.len());
        })
    });
    let sealed = variants.build(Variants::NAMES[0]).seal(&info).unwrap();
    for name in Variants::NAMES {
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let setup = || {
                    let c = variants.build(name);
                    c.open(&sealed).unwrap(); // the subject's key is cached
                    c
                };
                fresh(iters, setup, |c| {
                    black_box(c.open(black_box(&sealed)).unwrap());
                })
            })
        });
    }
    g.finish();
}

fn seal(c: &mut Criterion) {
    let email = email_64();
    let plain = email.expose_secret().as_bytes().to_vec();
    seal_and_open(c, "64B", &plain, email);

    let postal = common::postal_1k();
    let plain = format!("{}\n{}", postal.expose_secret(), postal.country().code()).into_bytes();
    seal_and_open(c, "1KiB", &plain, postal);
}

fn pseudonym(c: &mut Criterion) {
    let mut g = c.benchmark_group("pseudonym");
    g.throughput(Throughput::Elements(1));
    let email = email_64();
    raw_hmac_baseline(&mut g, b"", &email);
    let custodian = Custodian::in_memory();
    let info: PersonalInfo<EmailAddress, Transaction> =
        PersonalInfo::collect(SubjectId::random(), email);
    g.bench_function("custodian", |b| {
        b.iter(|| black_box(custodian.pseudonym(black_box(&info)).unwrap()))
    });
    // Many subjects and values in turn (each noted once, then seen again).
    let many: Vec<PersonalInfo<EmailAddress, Transaction>> = (0..4096)
        .map(|i| {
            PersonalInfo::collect(
                SubjectId::random(),
                EmailAddress::parse(&format!("user{i}@example.com")).unwrap(),
            )
        })
        .collect();
    let mut i = 0;
    g.bench_function("custodian_4096_subjects", |b| {
        b.iter(|| {
            i = (i + 1) % many.len();
            black_box(custodian.pseudonym(&many[i]).unwrap())
        })
    });
    g.finish();
}

/// The baseline of the keyed tokens: raw `ring` HMAC-SHA-256 of what the
/// crate hashes for `email` — `prefix`, the kind code (2) and the address
/// lowercased.
fn raw_hmac_baseline(g: &mut BenchmarkGroup<'_, WallTime>, prefix: &[u8], email: &EmailAddress) {
    let key = ring::hmac::Key::generate(ring::hmac::HMAC_SHA256, &SystemRandom::new()).unwrap();
    let mut input = prefix.to_vec();
    input.push(2);
    input.extend(
        email
            .expose_secret()
            .bytes()
            .map(|b| b.to_ascii_lowercase()),
    );
    g.bench_function("ring_hmac_raw", |b| {
        b.iter(|| black_box(ring::hmac::sign(&key, black_box(&input))))
    });
}

/// Lookup tokens (the blind index) against raw HMAC-SHA-256 of the same
/// bytes: the login path (`lookup_token_of`, a typed value) and the stored
/// data path (`lookup_token`, noted once per subject and token).
fn lookup_token(c: &mut Criterion) {
    let mut g = c.benchmark_group("lookup_token");
    g.throughput(Throughput::Elements(1));
    let email = EmailAddress::parse("ada.lovelace@example.com").unwrap();
    // What the token is computed over: context, kind code, canonical form.
    raw_hmac_baseline(&mut g, b"privacy-pledge lookup v1\0", &email);
    let custodian = Custodian::in_memory();
    g.bench_function("lookup_token_of", |b| {
        b.iter(|| black_box(custodian.lookup_token_of(black_box(&email))))
    });
    let info: PersonalInfo<EmailAddress, Transaction> =
        PersonalInfo::collect(SubjectId::random(), email.clone());
    g.bench_function("lookup_token", |b| {
        b.iter(|| black_box(custodian.lookup_token(black_box(&info)).unwrap()))
    });
    g.finish();
}

/// Writes to every cache line of 64 MiB, so each erase starts with cold
/// caches whatever the setup did before it: sealing 10,000 records leaves
/// much less of the custodian's state in cache than sealing 10, and without
/// this the comparison would measure cache warmth, not work.
fn evict_caches(scratch: &mut [u8]) {
    for i in (0..scratch.len()).step_by(64) {
        scratch[i] = scratch[i].wrapping_add(1);
    }
    black_box(&scratch);
}

fn erase_group(g: &mut BenchmarkGroup<'_, WallTime>, records: usize) {
    let email = email_64();
    let mut scratch = vec![0u8; 64 << 20];
    g.bench_function(format!("{records}_records"), |b| {
        b.iter_batched(
            || {
                let custodian = Custodian::builder()
                    .audit(ChainedAuditLog::new_keyed_stream(
                        AuditKey::generate().unwrap(),
                        NoAudit,
                    ))
                    .build()
                    .unwrap();
                let subject = SubjectId::random();
                let info: PersonalInfo<EmailAddress, Transaction> =
                    PersonalInfo::collect(subject, email.clone());
                let sealed: Vec<_> = (0..records)
                    .map(|_| custodian.seal(&info).unwrap())
                    .collect();
                // Other subjects in the same store.
                for _ in 0..10 {
                    let other: PersonalInfo<EmailAddress, Transaction> =
                        PersonalInfo::collect(SubjectId::random(), email.clone());
                    custodian.seal(&other).unwrap();
                }
                custodian.pseudonym(&info).unwrap();
                evict_caches(&mut scratch);
                (custodian, subject, sealed)
            },
            |(custodian, subject, sealed)| {
                let receipt = custodian.erase(subject).unwrap();
                black_box(receipt);
                (custodian, sealed) // dropped outside the timing
            },
            BatchSize::PerIteration,
        )
    });
}

fn erase(c: &mut Criterion) {
    let mut g = c.benchmark_group("erase");
    g.sample_size(10);
    g.sampling_mode(SamplingMode::Flat);
    erase_group(&mut g, 10);
    erase_group(&mut g, 10_000);
    g.finish();
}

criterion_group!(benches, seal, pseudonym, lookup_token, erase);
criterion_main!(benches);
