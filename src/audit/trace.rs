//! Audit events as `tracing` events (feature `tracing`): see
//! [`TracingSink`].

use super::{AuditError, AuditEvent, AuditSink, Outcome};

/// An [`AuditSink`] that emits each event as a `tracing` event (feature
/// `tracing`), alone or beside another sink.
///
/// [`TracingSink`] emits every audit event as a structured `tracing` event
/// on the target `privacy_pledge::audit`, with the event's fields and never
/// a value (events hold none): subject (short form), action, kind, purpose,
/// outcome, rule, recipient, country. Alone it is an audit sink that only
/// logs (no trail: use it for development); [`TracingSink::beside`] puts it
/// beside a durable sink, which records first and decides whether the use
/// happens.
///
/// The subject's short form is the first two bytes of its id and `…` (the
/// sink is made before the custodian, and has no key to tag ids with).
/// Whoever reads the log and also holds the ids — the database operator,
/// who holds the trail with the whole ids anyway — can tell which subject a
/// line is about in a store of thousands; to anyone else it only links the
/// lines of one subject.
///
/// With the feature on, the custodian also opens a span for each operation
/// (target `privacy_pledge::custodian`, span `custodian`) with the action,
/// kind and purpose, and the subject as its keyed
/// [`SubjectTag`](crate::SubjectTag) (what [`Custodian::subject_tag`](crate::Custodian::subject_tag)
/// gives the host's own log lines), so a host's own logs inside an
/// [`access`](crate::Custodian::access) closure sit under it.
///
/// ```
/// use privacy_pledge::audit::{MemoryAuditLog, TracingSink};
/// use privacy_pledge::Custodian;
/// use std::sync::Arc;
///
/// let durable = Arc::new(MemoryAuditLog::new()); // a store's sink in a real host
/// let custodian = Custodian::builder()
///     .audit(TracingSink::beside(durable.clone()))
///     .build()?;
/// # drop(custodian);
/// # Ok::<(), privacy_pledge::Error>(())
/// ```
#[derive(Debug, Default)]
pub struct TracingSink<S = Discard> {
    inner: S,
}

/// The sink a lone [`TracingSink`] stands beside: keeps nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct Discard;

impl AuditSink for Discard {
    fn record(&self, _: &AuditEvent) -> Result<(), AuditError> {
        Ok(())
    }
}

impl TracingSink {
    /// A sink that only emits `tracing` events and keeps no trail.
    pub fn new() -> Self {
        TracingSink { inner: Discard }
    }
}

impl<S: AuditSink> TracingSink<S> {
    /// Emits each event after `inner` has recorded it; `inner`'s answer is
    /// the sink's answer (a failed record is emitted too, at `WARN`, with
    /// `recorded = false`).
    pub fn beside(inner: S) -> Self {
        TracingSink { inner }
    }

    /// The sink beside it.
    pub fn inner(&self) -> &S {
        &self.inner
    }
}

fn emit(event: &AuditEvent, recorded: bool) {
    let subject = event.subject();
    let subject = subject.short();
    let kind = event.kind().map(|k| k.name());
    let purpose = event.purpose().map(|p| p.name());
    let target_purpose = event.target_purpose().map(|p| p.name());
    let recipient = event.recipient().map(|r| &*r.name);
    let role = event.recipient().map(|r| format!("{:?}", r.role));
    let country = event.country();
    let country = country.as_ref().map(|c| c.code());
    let outcome = match event.outcome() {
        Outcome::Allowed => "allowed",
        Outcome::Denied => "denied",
    };
    macro_rules! at {
        ($level:expr) => {
            tracing::event!(
                target: "privacy_pledge::audit",
                $level,
                seq = event.seq(),
                subject = %subject,
                action = ?event.action(),
                kind,
                purpose,
                target_purpose,
                outcome,
                rule = ?event.rule(),
                recipient,
                role,
                country,
                recorded,
                "audit event"
            )
        };
    }
    if !recorded {
        at!(tracing::Level::WARN);
    } else if event.outcome() == Outcome::Denied {
        at!(tracing::Level::WARN);
    } else {
        at!(tracing::Level::INFO);
    }
}

impl<S: AuditSink> AuditSink for TracingSink<S> {
    fn record(&self, event: &AuditEvent) -> Result<(), AuditError> {
        let result = self.inner.record(event);
        emit(event, result.is_ok());
        result
    }

    fn record_batch(&self, events: &[AuditEvent]) -> Result<(), AuditError> {
        let result = self.inner.record_batch(events);
        for e in events {
            emit(e, result.is_ok());
        }
        result
    }

    fn flush(&self) -> Result<(), AuditError> {
        self.inner.flush()
    }
}

/// The span of one custodian operation (the subject's tag is computed only
/// if a subscriber wants the span).
pub(crate) fn span(
    action: super::Action,
    subject: impl FnOnce() -> crate::SubjectTag,
    kind: Option<crate::data::Kind>,
    purpose: Option<crate::purpose::PurposeId>,
) -> tracing::span::EnteredSpan {
    tracing::info_span!(
        target: "privacy_pledge::custodian",
        "custodian",
        action = ?action,
        subject = %subject(),
        kind = kind.map(|k| k.name()),
        purpose = purpose.map(|p| p.name()),
    )
    .entered()
}
