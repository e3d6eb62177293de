//! Shared by the benches: fresh state per sample, and the audited-access loop.

#![allow(dead_code)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use privacy_pledge::data::{EmailAddress, PostalAddress};
use privacy_pledge::purpose::Transaction;
use privacy_pledge::{Custodian, PersonalInfo, SubjectId};

/// A 24-byte email collected for `Transaction`.
pub fn email() -> PersonalInfo<EmailAddress, Transaction> {
    PersonalInfo::collect(
        SubjectId::random(),
        EmailAddress::parse("ada.lovelace@example.com").expect("valid email"),
    )
}

/// Times `iters` calls of `f` against a fresh value from `setup` (built and
/// dropped outside the timed part), so logs that grow stay bounded however
/// many iterations criterion picks.
pub fn fresh<S>(iters: u64, setup: impl FnOnce() -> S, mut f: impl FnMut(&S)) -> Duration {
    let state = setup();
    let start = Instant::now();
    for _ in 0..iters {
        f(&state);
    }
    let elapsed = start.elapsed();
    drop(black_box(state));
    elapsed
}

/// Times `custodian.access` on a custodian from `build`, fresh per sample.
pub fn time_access(iters: u64, build: impl FnOnce() -> Custodian) -> Duration {
    let info = email();
    fresh(iters, build, |custodian| {
        black_box(
            custodian
                .access(black_box(&info), |e| e.domain().len())
                .expect("access"),
        );
    })
}

/// A 1 KiB postal address in the canonical form: seven lines of 127
/// characters (18 of them two-byte `é`, so validation sees non-ASCII text)
/// and a country.
pub fn postal_1k() -> PostalAddress {
    let line = |i: usize| {
        let mut s = format!("{i} ");
        s.push_str(&"é".repeat(18));
        while s.chars().count() < 127 {
            s.push('x');
        }
        s
    };
    let text: Vec<String> = (0..7).map(line).collect();
    let a = PostalAddress::parse(&format!("{}\nGB", text.join("\n"))).expect("valid address");
    assert_eq!(
        privacy_pledge::ExposeSecret::expose_secret(&a).len() + 3,
        1024
    );
    a
}

/// A fresh database `name` on the PostgreSQL server `PP_TEST_PG` names
/// (`host=… port=… user=…`), as connection parameters; `None` (and a note
/// that `what` was skipped) without one.
pub fn pg_database(what: &str, name: &str) -> Option<String> {
    use privacy_pledge::store::postgres::postgres;
    let Ok(base) = std::env::var("PP_TEST_PG") else {
        eprintln!("{what}: PP_TEST_PG is not set, skipped");
        return None;
    };
    let mut admin =
        postgres::Client::connect(&format!("{base} dbname=postgres"), postgres::NoTls).unwrap();
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {name}"))
        .unwrap();
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .unwrap();
    Some(format!("{base} dbname={name}"))
}

/// Drops the database `pg_database` made.
pub fn drop_pg_database(name: &str) {
    use privacy_pledge::store::postgres::postgres;
    if let Ok(base) = std::env::var("PP_TEST_PG") {
        if let Ok(mut admin) =
            postgres::Client::connect(&format!("{base} dbname=postgres"), postgres::NoTls)
        {
            let _ = admin.batch_execute(&format!("DROP DATABASE IF EXISTS {name}"));
        }
    }
}
