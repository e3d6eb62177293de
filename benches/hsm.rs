//! Key-encryption keys on a PKCS#11 token (SoftHSM2) against the local
//! `Keyring`, in one run.
//!
//! `scripts/softhsm cargo bench --bench hsm -- --warm-up-time 0.5 --measurement-time 2`
//!
//! (`scripts/softhsm` sets up a throwaway token and the variables
//! `PP_TEST_PKCS11_MODULE`, `PP_TEST_PKCS11_TOKEN`, `PP_TEST_PKCS11_PIN`;
//! without them only the `keyring` rows run, and a line says so.)
//!
//! In every group `keyring` is the local `Keyring` and `pkcs11` the
//! `Pkcs11Provider`, each the custodian's key provider over a
//! `MemoryKeyStore`, with an audit sink that records nothing (so only the
//! key path differs):
//!
//! - `kek_wrap`, `kek_unwrap`: the provider's `wrap` / `unwrap` of one
//!   32-byte data key (for `pkcs11`: `C_Encrypt` / `C_Decrypt` with
//!   `CKM_AES_GCM` on the token).
//! - `seal_warm`, `open_warm`: `custodian.seal` / `custodian.open` of a
//!   64-byte email of a subject whose data key is cached (the steady state:
//!   no call to the provider).
//! - `seal_cold`: `custodian.seal` of a subject seen for the first time (a
//!   new data key, wrapped by the provider, stored).
//! - `open_cold`: `custodian.open` with the key cache missing every time (a
//!   cache of one subject, opening two subjects' envelopes in turn): the
//!   wrapped key is read from the store and unwrapped by the provider.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use privacy_pledge::audit::{AuditError, AuditEvent, AuditSink};
use privacy_pledge::crypto::{KeyProvider, Keyring, MemoryKeyStore, Pkcs11Config, Pkcs11Provider};
use privacy_pledge::data::EmailAddress;
use privacy_pledge::purpose::Transaction;
use privacy_pledge::{Custodian, PersonalInfo, SubjectId};

/// An audit sink that records nothing: isolates the cost of the key path.
struct NoAudit;
impl AuditSink for NoAudit {
    fn record(&self, _: &AuditEvent) -> Result<(), AuditError> {
        Ok(())
    }
}

fn email(subject: SubjectId) -> PersonalInfo<EmailAddress, Transaction> {
    let text = "ada.lovelace.countess.of.lovelace.analyst.1815.1852x@example.com";
    PersonalInfo::collect(subject, EmailAddress::parse(text).unwrap())
}

/// The providers measured: the local keyring, and the token if there is one.
fn providers() -> Vec<(&'static str, Arc<dyn KeyProvider>)> {
    let mut out: Vec<(&'static str, Arc<dyn KeyProvider>)> =
        vec![("keyring", Arc::new(Keyring::generate().unwrap()))];
    match (
        std::env::var("PP_TEST_PKCS11_MODULE"),
        std::env::var("PP_TEST_PKCS11_TOKEN"),
        std::env::var("PP_TEST_PKCS11_PIN"),
    ) {
        (Ok(module), Ok(token), Ok(pin)) => {
            let config = Pkcs11Config::new(module, &token, pin.into())
                .label_prefix(&format!("bench-{}-", SubjectId::random()))
                .settle(Duration::from_millis(100));
            out.push(("pkcs11", Arc::new(Pkcs11Provider::open(config).unwrap())));
        }
        _ => eprintln!(
            "SKIPPED the pkcs11 rows: PP_TEST_PKCS11_MODULE is not set \
             (run `scripts/softhsm cargo bench --bench hsm`)"
        ),
    }
    out
}

fn custodian(provider: &Arc<dyn KeyProvider>, cache: usize) -> Custodian {
    Custodian::builder()
        .keyring(Keyring::generate().unwrap())
        .key_provider(provider.clone())
        .key_store(MemoryKeyStore::new())
        .key_cache_capacity(cache)
        .audit(NoAudit)
        .build()
        .unwrap()
}

fn hsm(c: &mut Criterion) {
    let providers = providers();
    let context = [3u8; 36];

    let mut g = c.benchmark_group("kek_wrap");
    for (name, p) in &providers {
        g.bench_function(*name, |b| {
            b.iter(|| black_box(p.wrap(black_box(&[7; 32]), &context).unwrap()))
        });
    }
    g.finish();

    let mut g = c.benchmark_group("kek_unwrap");
    for (name, p) in &providers {
        let wrapped = p.wrap(&[7; 32], &context).unwrap();
        g.bench_function(*name, |b| {
            b.iter(|| black_box(p.unwrap(black_box(&wrapped), &context).unwrap()))
        });
    }
    g.finish();

    let mut g = c.benchmark_group("seal_warm");
    for (name, p) in &providers {
        let cust = custodian(p, 1024);
        let info = email(SubjectId::random());
        cust.seal(&info).unwrap(); // the subject's key is cached
        g.bench_function(*name, |b| {
            b.iter(|| black_box(cust.seal(black_box(&info)).unwrap()))
        });
    }
    g.finish();

    let mut g = c.benchmark_group("open_warm");
    for (name, p) in &providers {
        let cust = custodian(p, 1024);
        let sealed = cust.seal(&email(SubjectId::random())).unwrap();
        g.bench_function(*name, |b| {
            b.iter(|| black_box(cust.open(black_box(&sealed)).unwrap()))
        });
    }
    g.finish();

    let mut g = c.benchmark_group("seal_cold");
    for (name, p) in &providers {
        let cust = custodian(p, 1024);
        g.bench_function(*name, |b| {
            b.iter_batched(
                || email(SubjectId::random()),
                |info| black_box(cust.seal(&info).unwrap()),
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();

    let mut g = c.benchmark_group("open_cold");
    for (name, p) in &providers {
        // A cache of one subject, two subjects opened in turn: every open
        // misses the cache and unwraps.
        let cust = custodian(p, 1);
        let rows = [
            cust.seal(&email(SubjectId::random())).unwrap(),
            cust.seal(&email(SubjectId::random())).unwrap(),
        ];
        let mut turn = 0usize;
        g.bench_function(*name, |b| {
            b.iter(|| {
                turn ^= 1;
                black_box(cust.open(black_box(&rows[turn])).unwrap())
            })
        });
    }
    g.finish();
}

criterion_group!(benches, hsm);
criterion_main!(benches);
