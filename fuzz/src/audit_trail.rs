//! `audit_trail`: JSON-lines trails as `read_jsonl` reads them back, and
//! what the custodian does with a trail that verifies.
//!
//! The input is the file. Seeds are real trails chained under the fixed
//! keyring's audit key (a version-1 chain and a stream), so mutations
//! reach verification, `Custodian::verify_trail`, consent restoration
//! and subject reports, not only the JSON parser.
//!
//! Properties, beyond "no panic":
//! - `read_jsonl` is strict and its output round-trips: the events written
//!   again with `JsonLinesSink` read back equal;
//! - `verify` agrees with its own report: a trail that verifies has
//!   entries numbered 1, 2, … with chain fields, and its head is its last
//!   entry; cut short it no longer verifies against that head; one that
//!   fails names a position inside the trail;
//! - a verified trail stays verified: `Custodian::verify_trail_unverified`
//!   accepts it against the head `verify` found, but as vouching for
//!   nothing (the caller chose the head), so consent is never restored from
//!   it, and subject reports read it without error; a trail that does not
//!   verify is refused by the custodian too;
//! - `verify_streams` and `verify_public` account for every entry.

use privacy_pledge::audit::{
    read_jsonl, verify, verify_public, verify_streams, AuditEvent, AuditSink, Checkpoint,
    JsonLinesSink,
};
use privacy_pledge::{Custodian, SubjectId};

use super::audit_event::audit_key;
use super::checkpoint::signer;
use super::common::{clock, keyring, Discard};

/// What one input did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Events read (0 if the file did not read).
    pub events: usize,
    /// The trail verified as one chain.
    pub verified: bool,
    /// Every stream of it verified.
    pub streams_verified: bool,
}

/// A custodian over the fixed keyring, fresh (its consent register empty,
/// so a trail can be restored into it).
fn fresh_custodian() -> Custodian {
    Custodian::builder()
        .keyring(keyring())
        .audit(Discard)
        .clock(clock())
        .build()
        .expect("custodian")
}

/// The distinct subjects of a trail, at most `n`.
fn subjects(events: &[AuditEvent], n: usize) -> Vec<SubjectId> {
    let mut out: Vec<SubjectId> = Vec::new();
    for e in events {
        if out.len() == n {
            break;
        }
        if !out.contains(&e.subject()) {
            out.push(e.subject());
        }
    }
    out
}

/// Reads `data` as a JSON-lines trail and checks what follows from it.
/// Panics only on a broken property.
pub fn check(data: &[u8]) -> Outcome {
    let mut out = Outcome::default();
    let Ok(events) = read_jsonl(data) else {
        return out;
    };
    out.events = events.len();

    // Written again and read back: the same events.
    let sink = JsonLinesSink::new(Vec::new());
    sink.record_batch(&events).expect("memory writes");
    let bytes = sink.into_inner().expect("memory flushes");
    let again = read_jsonl(&bytes[..]).expect("own lines read");
    assert!(again == events, "JSON lines do not round-trip");

    let key = audit_key();
    let result = verify(&events, key, None);
    match result {
        Ok(head) => {
            out.verified = true;
            assert_eq!(head.seq(), events.len() as u64);
            for (i, e) in events.iter().enumerate() {
                assert_eq!(e.seq(), i as u64 + 1);
                assert!(e.chain().is_some());
            }
            if let Some((_, init)) = events.split_last() {
                assert!(
                    verify(init, key, Some(&head)).is_err(),
                    "a cut trail verified"
                );
            }
            let c = fresh_custodian();
            // A head the caller picked vouches for nothing: accepted on the
            // explicitly unverified path only, and never restored from.
            let trail = c
                .verify_trail_unverified(again, &head)
                .expect("the custodian accepts a trail that verifies");
            assert!(!trail.is_fully_vouched());
            assert_eq!(trail.head(), head);
            assert!(c.consents().restore(&trail).is_err());
            for s in subjects(&events, 4) {
                let report = c.subject_report(s, &[], &trail);
                if let Ok(r) = report {
                    assert_eq!(r.subject(), s);
                }
            }
        }
        Err(e) => {
            assert!(e.index <= events.len(), "{e:?}");
            let c = fresh_custodian();
            assert!(c
                .verify_trail_unverified(again, &Checkpoint::GENESIS)
                .is_err());
        }
    }

    let reports = verify_streams(&events, key, &[]);
    assert_eq!(
        reports.iter().map(|r| r.entries).sum::<usize>(),
        events.len()
    );
    out.streams_verified = reports.iter().all(|r| r.result.is_ok());
    let c = fresh_custodian();
    let streamed = c.verify_trail(events.clone());
    assert_eq!(streamed.is_ok(), out.streams_verified, "{streamed:?}");
    if let Ok(trail) = streamed {
        let restored = c.consents().restore(&trail);
        // A trail with a stream that no checkpoint vouches for is not
        // restored; one that is fully vouched (no entries) is.
        assert_eq!(restored.is_ok(), trail.is_fully_vouched(), "{restored:?}");
    }
    let public = verify_public(&events, &signer().public_key(), &[]);
    assert_eq!(
        public.streams.iter().map(|r| r.entries).sum::<usize>(),
        events.len()
    );
    assert!(public.bad_checkpoints.is_empty());
    out
}
