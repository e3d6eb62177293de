//! The audited hot path makes no heap allocation per audit event (issue:
//! "no heap allocation per audit event on the in-memory path").
//!
//! A counting global allocator watches `access`, `seal` and `open` through
//! the default custodian (chained in-memory log, schema version 3). What is
//! allowed: the trail's own growth (a `Vec` that doubles: a few dozen
//! reallocations over ten thousand events), one buffer per envelope sealed
//! and one per value opened. Everything runs in one test, so no other test
//! thread allocates while it counts.

use privacy_pledge::data::EmailAddress;
use privacy_pledge::purpose::Transaction;
use privacy_pledge::{Custodian, PersonalInfo, SubjectId};
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};

#[global_allocator]
static GLOBAL: &StatsAlloc<std::alloc::System> = &INSTRUMENTED_SYSTEM;

const N: usize = 10_000;
/// Allocations a `Vec` growing to `N` audit events may make, with room.
const GROWTH: usize = 40;

fn count(f: impl FnOnce()) -> usize {
    let region = Region::new(GLOBAL);
    f();
    let stats = region.change();
    stats.allocations + stats.reallocations
}

#[test]
fn access_seal_and_open_allocate_nothing_per_audit_event() {
    let custodian = Custodian::in_memory();
    let email: PersonalInfo<EmailAddress, Transaction> = PersonalInfo::collect(
        SubjectId::random(),
        EmailAddress::parse("ada.lovelace@example.com").unwrap(),
    );
    // Warm up: the subject's key, the nonce pool, the trail's first pages.
    let sealed = custodian.seal(&email).unwrap();
    custodian.open(&sealed).unwrap();
    custodian.access(&email, |e| e.domain().len()).unwrap();

    let access = count(|| {
        for _ in 0..N {
            custodian.access(&email, |e| e.domain().len()).unwrap();
        }
    });
    assert!(
        access <= GROWTH,
        "access: {access} allocations for {N} events"
    );

    let mut envelopes = Vec::with_capacity(N);
    let seal = count(|| {
        for _ in 0..N {
            envelopes.push(custodian.seal(&email).unwrap());
        }
    });
    assert!(
        seal <= N + GROWTH,
        "seal: {seal} allocations for {N} envelopes (one each is the envelope)"
    );

    let mut opened = Vec::with_capacity(N);
    let open = count(|| {
        for s in &envelopes {
            opened.push(custodian.open(s).unwrap());
        }
    });
    assert!(
        open <= N + GROWTH,
        "open: {open} allocations for {N} values (one each is the value)"
    );
    assert_eq!(
        custodian.builtin_audit_log().unwrap().inner().len(),
        3 + 3 * N
    );
}
