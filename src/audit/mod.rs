//! The audit trail (rule R10): every use of personal information is offered to
//! an [`AuditSink`] *before* it happens, and does not happen if the sink fails.
//!
//! The custodian builds one [`AuditEvent`] per use — subject id, data kind,
//! purpose, action, recipient, rule; never the value — and calls
//! [`AuditSink::record`]. Hosts implement the sink over their own storage.
//! [`ChainedAuditLog`] wraps any sink and makes the trail tamper-evident: each
//! entry carries the MAC of the previous one, and [`verify`] reports the first
//! entry that was edited, deleted, inserted, reordered or replayed, or entries
//! cut from the end. Its entries come in three formats (schema versions):
//! 3, a keyed stream with a GMAC tag per entry, the fastest, which the
//! custodian's built-in log writes; 2, a stream whose entries also carry a
//! public link hash, so a signed checkpoint vouches for them to an auditor
//! without the secret key ([`verify_public`]), which the stores' durable
//! sinks write; and 1, the original single chain. See [`ChainedAuditLog`].
//! Built-in sinks: [`MemoryAuditLog`], and
//! [`JsonLinesSink`] (one JSON event a line over any `Write`, read back with
//! [`read_jsonl`]).
//!
//! ```
//! use privacy_pledge::{Custodian, PersonalInfo, SubjectId};
//! use privacy_pledge::audit::Action;
//! use privacy_pledge::data::EmailAddress;
//! use privacy_pledge::purpose::Support;
//!
//! let custodian = Custodian::in_memory();
//! let email: PersonalInfo<EmailAddress, Support> =
//!     PersonalInfo::collect(SubjectId::random(), EmailAddress::parse("ada@example.com")?);
//! custodian.access(&email, |e| e.domain().len())?;
//!
//! let log = custodian.builtin_audit_log().expect("in-memory custodian");
//! let events = log.inner().events();
//! assert_eq!(events[0].action(), Action::Access);
//! assert_eq!(events[0].seq(), 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub(crate) mod chain;
pub(crate) mod event;
mod jsonl;
pub(crate) mod signed;
mod sink;
mod stream;
#[cfg(feature = "tracing")]
pub(crate) mod trace;
mod trail;

pub use chain::{
    verify, AuditKey, ChainedAuditLog, Checkpoint, InvalidCheckpoint, Tamper, VerifyError,
};
pub use event::{Action, AuditEvent, ChainLink, Outcome, RecipientRef, SCHEMA_VERSION};
pub use jsonl::{read_jsonl, FlushPolicy, JsonLinesSink, JsonlError, MAX_LINE_BYTES};
pub use signed::{
    archive_digest, verify_archive, verify_public, ArchiveError, BadSignature, CheckpointKey,
    CheckpointSigner, CheckpointStore, DirCheckpointStore, InvalidCheckpointKey,
    MemoryCheckpointStore, PublicReport, SignedCheckpoint,
};
pub use sink::{AuditError, AuditSink, MemoryAuditLog};
pub use stream::{
    verify_streams, verify_streams_with_bases, InvalidStreamId, StreamId, StreamReport,
    KEYED_SCHEMA_VERSION, KEYED_V3_SCHEMA_VERSION, STREAMED_SCHEMA_VERSION,
};
#[cfg(feature = "tracing")]
pub use trace::{Discard, TracingSink};
pub use trail::{TrailError, VerifiedTrail};
