//! `audit_event`: audit entries as JSON, and the canonical form their chain
//! MACs and link hashes cover.
//!
//! The input is one or two lines; each line is parsed as an [`AuditEvent`]
//! (and as a [`ChainLink`]). Every event that parses is chained as the
//! first entry of a version-1 chain, of a stream and of a keyed stream
//! (version 3, a fresh random stream each time) under the fixed audit key.
//!
//! Properties, beyond "no panic":
//! - JSON round-trips (same value, same bytes), before and after chaining;
//! - chaining keeps every field but `seq`, `v`, `stream` and `chain`, and
//!   the chained entry verifies: always in a stream or a keyed stream, and
//!   in a version-1 chain exactly when it is a well-formed version-1 event;
//!   a keyed-stream entry never verifies without the key;
//! - a chained entry verifies the same after a JSON round trip, and the
//!   public (keyless) check of a stream agrees with the keyed one;
//! - the canonical form is injective: two events chained at the same place
//!   get the same MAC (and the same link hash) only if they are the same
//!   entry, so no edit of a stored entry keeps its MAC.

use std::sync::{Mutex, OnceLock};

use privacy_pledge::audit::{
    verify, verify_public, AuditError, AuditEvent, AuditKey, AuditSink, ChainLink, ChainedAuditLog,
    Checkpoint, StreamId, Tamper, KEYED_SCHEMA_VERSION, SCHEMA_VERSION, STREAMED_SCHEMA_VERSION,
};

use super::checkpoint::signer;
use super::common::{json_round_trip, keyring};

/// The stream the fixture's streamed chains are written in.
pub const STREAM: StreamId = StreamId::from_bytes([0x22; 16]);

/// The fixed audit key (the fixed keyring's).
pub fn audit_key() -> &'static AuditKey {
    static K: OnceLock<AuditKey> = OnceLock::new();
    K.get_or_init(|| keyring().audit_key())
}

/// Keeps the last event it was given.
#[derive(Default)]
struct Last(Mutex<Option<AuditEvent>>);

impl AuditSink for Last {
    fn record(&self, event: &AuditEvent) -> Result<(), AuditError> {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(event.clone());
        Ok(())
    }
}

/// The chain an event is put in.
#[derive(Clone, Copy)]
enum Form {
    Single,
    Stream,
    Keyed,
}

/// `event` chained as entry 1 of a fresh chain (of [`STREAM`] for a stream).
fn chained(event: &AuditEvent, form: Form) -> AuditEvent {
    let key = audit_key().clone();
    let log = match form {
        Form::Stream => {
            ChainedAuditLog::resume_stream(key, Last::default(), STREAM, Checkpoint::GENESIS)
        }
        Form::Single => ChainedAuditLog::new(key, Last::default()),
        Form::Keyed => ChainedAuditLog::new_keyed_stream(key, Last::default()),
    };
    log.record(event).expect("a fresh chain takes an event");
    let out = log
        .inner()
        .0
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take();
    out.expect("the event was passed on")
}

/// Fields chaining must keep.
fn kept(e: &AuditEvent) -> impl PartialEq + std::fmt::Debug {
    (
        e.time(),
        e.subject(),
        e.kind(),
        e.purpose(),
        e.target_purpose(),
        (e.action(), e.outcome(), e.rule()),
        e.recipient().cloned(),
        e.country(),
        e.mechanism(),
    )
}

/// The checks on one event; returns its chained forms (version 1, stream).
fn one(event: &AuditEvent) -> (AuditEvent, AuditEvent) {
    let key = audit_key();
    let v1 = chained(event, Form::Single);
    let st = chained(event, Form::Stream);
    let keyed = chained(event, Form::Keyed);
    for e in [&v1, &st, &keyed] {
        assert_eq!(kept(e), kept(event), "chaining changed a field");
        assert_eq!(e.seq(), 1);
        let link = e.chain().expect("chained");
        assert_eq!(link.prev, [0; 32]);
        let json = serde_json::to_vec(e).expect("serializes");
        let back = json_round_trip::<AuditEvent>(&json).expect("own JSON parses");
        assert!(back == *e, "chained entry does not round-trip");
    }
    assert_eq!(
        (v1.version(), v1.stream()),
        (event.version(), event.stream())
    );
    assert_eq!(
        (st.version(), st.stream()),
        (STREAMED_SCHEMA_VERSION, Some(STREAM))
    );

    assert_eq!(keyed.version(), KEYED_SCHEMA_VERSION);
    let head = verify(std::slice::from_ref(&keyed), key, None).expect("a keyed entry verifies");
    assert_eq!(
        head,
        Checkpoint::new(1, keyed.chain().expect("chained").mac)
    );
    let keyless = verify_public(std::slice::from_ref(&keyed), &signer().public_key(), &[]);
    assert_eq!(
        keyless.streams[0].result.map_err(|e| e.reason),
        Err(Tamper::NotChained),
        "a keyed stream has no public check"
    );

    let well_formed = event.version() == SCHEMA_VERSION && event.stream().is_none();
    let r1 = verify(std::slice::from_ref(&v1), key, None);
    assert_eq!(r1.is_ok(), well_formed, "{r1:?}");
    if let Ok(head) = r1 {
        assert_eq!(head, Checkpoint::new(1, v1.chain().expect("chained").mac));
    }
    let head = verify(std::slice::from_ref(&st), key, None).expect("a streamed entry verifies");
    assert_eq!(head.seq(), 1);
    // Without the key, through the link hashes only: the same head.
    let public = verify_public(std::slice::from_ref(&st), &signer().public_key(), &[]);
    assert_eq!(public.streams.len(), 1);
    assert_eq!(public.streams[0].result, Ok(head));
    (v1, st)
}

/// What one input did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Lines that parsed as events.
    pub events: usize,
}

/// Runs the audit-entry decoders on each line of `data`. Panics only on a
/// broken property.
pub fn check(data: &[u8]) -> Outcome {
    let mut out = Outcome::default();
    let mut lines = data.splitn(2, |&b| b == b'\n');
    let mut chains = Vec::new();
    for line in lines.by_ref() {
        json_round_trip::<ChainLink>(line);
        if let Some(event) = json_round_trip::<AuditEvent>(line) {
            out.events += 1;
            chains.push(one(&event));
        }
    }
    if let [(a1, a2), (b1, b2)] = &chains[..] {
        let mac = |e: &AuditEvent| e.chain().expect("chained").mac;
        assert_eq!(mac(a1) == mac(b1), a1 == b1, "two entries share a MAC");
        assert_eq!(
            mac(a2) == mac(b2),
            a2 == b2,
            "two stream entries share a MAC"
        );
        let key = audit_key();
        let head = |e: &AuditEvent| verify(std::slice::from_ref(e), key, None);
        assert_eq!(
            head(a2) == head(b2),
            a2 == b2,
            "two entries share a link hash"
        );
    }
    out
}
