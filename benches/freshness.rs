//! The freshness anchor's cost at use time, against the same use without
//! it, in one run.
//!
//! `cargo bench --bench freshness -- --warm-up-time 1 --measurement-time 3`
//!
//! Each pair builds the same custodian (keyring, in-memory key store,
//! chained in-memory audit log) with and without a freshness anchor in a
//! directory (`DirAnchorStore`, the real file; re-read at most once a
//! second, the default bound). The anchored one has erased another subject
//! first, so its erasure check looks the subject up.
//!
//! - `access/{plain,anchored}`: audited `access` for `Transaction`.
//! - `seal/{plain,anchored}`, `open/{plain,anchored}`: a 24-byte email.
//! - `access_newsletter/{register,anchored_store}`: audited `access` for a
//!   consent-based purpose: the in-memory register against a durable
//!   consent store (`MemoryConsentStore`) checked against the anchor.
//! - `grant/erased_{0,10000}`: a consent granted (one line appended to an
//!   in-memory anchor, and taken into the view) on an anchor holding no
//!   erasure, and one holding 10,000: what a long-lived anchor costs each
//!   change.

mod common;

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use privacy_pledge::consent::MemoryConsentStore;
use privacy_pledge::crypto::{Keyring, MemoryKeyStore};
use privacy_pledge::data::EmailAddress;
use privacy_pledge::freshness::{DirAnchorStore, MemoryAnchorStore};
use privacy_pledge::purpose::Newsletter;
use privacy_pledge::{Custodian, PersonalInfo, SubjectId};

use common::email;

fn custodian(anchor: Option<&std::path::Path>, consents: bool) -> Custodian {
    let mut b = Custodian::builder()
        .keyring(Arc::new(Keyring::generate().unwrap()))
        .key_store(MemoryKeyStore::new());
    if let Some(dir) = anchor {
        let _ = std::fs::remove_dir_all(dir);
        b = b.freshness_anchor(DirAnchorStore::new(dir).unwrap());
        if consents {
            b = b.consent_store(MemoryConsentStore::new());
        }
    }
    let c = b.build().unwrap();
    if anchor.is_some() {
        c.erase(SubjectId::random()).unwrap();
    }
    c
}

fn freshness(c: &mut Criterion) {
    let dir = std::env::temp_dir().join(format!("pp-bench-anchor-{}", std::process::id()));
    let info = email();
    let news: PersonalInfo<EmailAddress, Newsletter> = PersonalInfo::collect(
        info.subject(),
        EmailAddress::parse("ada@example.com").unwrap(),
    );
    let mut g = c.benchmark_group("freshness");
    // Fresh custodians per sample (built outside the timed part), so the
    // in-memory audit log stays bounded.
    for (name, anchored) in [("plain", None), ("anchored", Some(dir.as_path()))] {
        g.bench_function(format!("access/{name}"), |b| {
            b.iter_custom(|iters| {
                common::fresh(
                    iters,
                    || custodian(anchored, false),
                    |c| {
                        black_box(c.access(black_box(&info), |e| e.domain().len()).unwrap());
                    },
                )
            })
        });
        g.bench_function(format!("seal/{name}"), |b| {
            b.iter_custom(|iters| {
                common::fresh(
                    iters,
                    || custodian(anchored, false),
                    |c| {
                        black_box(c.seal(black_box(&info)).unwrap());
                    },
                )
            })
        });
        g.bench_function(format!("open/{name}"), |b| {
            b.iter_custom(|iters| {
                common::fresh(
                    iters,
                    || {
                        let c = custodian(anchored, false);
                        let s = c.seal(&info).unwrap();
                        (c, s)
                    },
                    |(c, s)| {
                        black_box(c.open(black_box(s)).unwrap());
                    },
                )
            })
        });
    }
    for (name, anchored, consents) in [
        ("register", None, false),
        ("anchored_store", Some(dir.as_path()), true),
    ] {
        g.bench_function(format!("access_newsletter/{name}"), |b| {
            b.iter_custom(|iters| {
                common::fresh(
                    iters,
                    || {
                        let c = custodian(anchored, consents);
                        c.consents().grant::<Newsletter>(news.subject()).unwrap();
                        c
                    },
                    |c| {
                        black_box(c.access(black_box(&news), |e| e.domain().len()).unwrap());
                    },
                )
            })
        });
    }
    for erased in [0, 10_000] {
        let c = Custodian::builder()
            .keyring(Arc::new(Keyring::generate().unwrap()))
            .key_store(MemoryKeyStore::new())
            .freshness_anchor(MemoryAnchorStore::new())
            .consent_store(MemoryConsentStore::new())
            .build()
            .unwrap();
        for _ in 0..erased {
            c.erase(SubjectId::random()).unwrap();
        }
        g.bench_function(format!("grant/erased_{erased}"), |b| {
            b.iter(|| {
                c.consents()
                    .grant::<Newsletter>(SubjectId::random())
                    .unwrap()
            })
        });
    }
    g.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, freshness);
criterion_main!(benches);
