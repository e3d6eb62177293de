//! The logic behind the fuzz targets of `privacy-pledge`, one module per
//! target, shared with the corpus replay test `tests/fuzz_corpus.rs`
//! (which includes this file), so that `cargo test` on stable runs every
//! saved input through the same checks as the fuzzer.
//!
//! Each target covers the places the crate decodes bytes it did not make,
//! and checks a property beyond "no panic" (see each module):
//!
//! | target | decoders |
//! |---|---|
//! | [`envelope`] | `Sealed::from_bytes`, `Sealed::from_text`, `Custodian::open` |
//! | [`data_kinds`] | `EmailAddress`, `FullName`, `PhoneNumber`, `PostalAddress`, `PaymentToken` parsers; `Amount`, `Date`, `PurchaseRecord` constructors; the stored form inside envelopes |
//! | [`ids`] | text and JSON of `SubjectId`, `Country`, `Timestamp`, `StreamId`, `CheckpointKey`, `Pseudonym`, `RuleId`, `Mechanism`, and the enums and records of entries and rows |
//! | [`audit_event`] | `AuditEvent` and `ChainLink` JSON; the canonical form chain MACs and link hashes cover |
//! | [`audit_trail`] | `read_jsonl`; `verify`, `verify_streams`, `verify_public`; `Custodian::verify_trail` and `verify_trail_unverified`, consent restore, subject reports |
//! | [`checkpoint`] | `Checkpoint` text and JSON, `SignedCheckpoint` JSON and its signature |
//! | [`keyring`] | `Keyring::import` |
//! | [`store_rows`] | SQLite rows read back: consents, subject keys, erasures, pseudonyms, audit log, checkpoints |
//!
//! No target uses `arbitrary`: those that need structure read it from the
//! input by hand ([`input::Input`]), so the replay test needs no dependency
//! beyond the crate's own.

#![forbid(unsafe_code)]

pub mod audit_event;
pub mod audit_trail;
pub mod checkpoint;
pub mod common;
pub mod data_kinds;
pub mod envelope;
pub mod ids;
pub mod input;
pub mod keyring;
pub mod seeds;
pub mod store_rows;

/// A target's check, its outcome dropped.
pub type Check = fn(&[u8]);

/// Every target, by name, with its check.
pub const TARGETS: [(&str, Check); 8] = [
    ("envelope", |d| {
        envelope::check(d);
    }),
    ("data_kinds", |d| {
        data_kinds::check(d);
    }),
    ("ids", |d| {
        ids::check(d);
    }),
    ("audit_event", |d| {
        audit_event::check(d);
    }),
    ("audit_trail", |d| {
        audit_trail::check(d);
    }),
    ("checkpoint", |d| {
        checkpoint::check(d);
    }),
    ("keyring", |d| {
        keyring::check(d);
    }),
    ("store_rows", |d| {
        store_rows::check(d);
    }),
];
