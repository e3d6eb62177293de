//! The audit hook ([`AuditSink`]) and the in-memory log.

use std::borrow::Cow;
use std::sync::{Arc, Mutex, MutexGuard};

use super::AuditEvent;

/// A sink refused or failed to record an event. The operation it was about did
/// not happen.
///
/// ```
/// use privacy_pledge::audit::AuditError;
/// let e = AuditError::new("disk full");
/// assert_eq!(e.to_string(), "audit sink failed: disk full");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("audit sink failed: {message}")]
pub struct AuditError {
    message: Cow<'static, str>,
}

impl AuditError {
    /// An error with the host's own description. Do not put personal
    /// information in it: it ends up in logs.
    pub fn new(message: impl Into<Cow<'static, str>>) -> Self {
        AuditError {
            message: message.into(),
        }
    }

    /// The description.
    pub fn message(&self) -> &str {
        &self.message
    }
}

/// The audit hook: every use of personal information is offered here first.
///
/// [`record`](Self::record) is called *before* the operation takes effect; if
/// it returns `Err`, the operation does not happen and the caller gets
/// [`Error::Audit`](crate::Error::Audit) (fail closed, R10). The trait is
/// synchronous and object-safe, so any storage can sit behind it.
///
/// An async host keeps `record` synchronous by sending the event into a
/// *bounded* channel read by a writer task, and returns `Err` when the channel
/// is full: a full channel stops the operation instead of dropping its event.
/// (An event is then durable only once the writer has stored it; a host that
/// needs "stored before it happens" writes synchronously.)
///
/// A sink may read consent (`custodian.consents().is_granted::<P>(..)`), but
/// must not call an operation of a custodian that uses it: the custodian may
/// hold a lock while it calls the sink (the chain head, the order of consent
/// changes), so such a call is refused with
/// [`Error::Reentrant`](crate::Error::Reentrant) instead of deadlocking. The
/// same holds for key stores, key providers and clocks.
///
/// ```
/// use std::sync::Mutex;
/// use privacy_pledge::audit::{AuditError, AuditEvent, AuditSink};
///
/// struct StdoutSink(Mutex<u64>);
/// impl AuditSink for StdoutSink {
///     fn record(&self, event: &AuditEvent) -> Result<(), AuditError> {
///         let mut n = self.0.lock().map_err(|_| AuditError::new("poisoned"))?;
///         *n += 1;
///         println!("{n}: {:?} {:?}", event.action(), event.purpose());
///         Ok(())
///     }
/// }
/// ```
pub trait AuditSink: Send + Sync {
    /// Records one event, before the use it describes. `Err` stops the use.
    fn record(&self, event: &AuditEvent) -> Result<(), AuditError>;

    /// [`record`](Self::record) for an event the caller no longer needs: a
    /// sink that keeps events (like [`MemoryAuditLog`]) keeps this one
    /// without copying it. The default records it by reference.
    fn record_owned(&self, event: AuditEvent) -> Result<(), AuditError> {
        self.record(&event)
    }

    /// Records several events, all or none where the storage allows. The
    /// default records them one by one and stops at the first error.
    fn record_batch(&self, events: &[AuditEvent]) -> Result<(), AuditError> {
        events.iter().try_for_each(|e| self.record(e))
    }

    /// Makes everything recorded so far durable. The default does nothing.
    fn flush(&self) -> Result<(), AuditError> {
        Ok(())
    }

    /// Whether [`record_batch`](Self::record_batch) makes its events durable
    /// together in **one** commit, all or none, and in the order given, with
    /// no event of another call between them. Only then does a custodian's
    /// [request scope](crate::Custodian::request) stage events and hand them
    /// here at once; over any other sink every event is recorded on its own,
    /// before its use, as outside a scope. The default is `false`; the
    /// stores' durable sinks (`store::AuditStreamSink`, features `sqlite`
    /// and `postgres`) answer `true`.
    ///
    /// A host's own sink answers `true` only if its `record_batch` keeps that
    /// promise: a batch half written would leave uses in the trail whose
    /// request failed, or uses that happened out of it.
    ///
    /// ```
    /// use privacy_pledge::audit::{AuditSink, MemoryAuditLog};
    /// assert!(!MemoryAuditLog::new().atomic_batches());
    /// ```
    fn atomic_batches(&self) -> bool {
        false
    }

    /// The database this sink commits to, if it is one of the crate's
    /// stores' (see [`DatabaseId`](crate::request::DatabaseId): a key store
    /// on the same database then lets the request scope's commit make its
    /// writes durable). The default, `None`, is right for every other sink:
    /// a sink that answers a database's id must commit every batch durably
    /// to that database's write-ahead log, or the key store's deferred
    /// writes are never made durable.
    ///
    /// ```
    /// use privacy_pledge::audit::{AuditSink, MemoryAuditLog};
    /// assert_eq!(MemoryAuditLog::new().database(), None);
    /// ```
    fn database(&self) -> Option<crate::request::DatabaseId> {
        None
    }
}

/// Forwards the whole trait through a smart pointer, so a host can keep a
/// handle (`Arc`) to the sink it gave the custodian.
macro_rules! forward_sink {
    ($($ptr:ident),*) => {$(
        impl<S: AuditSink + ?Sized> AuditSink for $ptr<S> {
            fn record(&self, event: &AuditEvent) -> Result<(), AuditError> {
                (**self).record(event)
            }
            fn record_owned(&self, event: AuditEvent) -> Result<(), AuditError> {
                (**self).record_owned(event)
            }
            fn record_batch(&self, events: &[AuditEvent]) -> Result<(), AuditError> {
                (**self).record_batch(events)
            }
            fn flush(&self) -> Result<(), AuditError> {
                (**self).flush()
            }
            fn atomic_batches(&self) -> bool {
                (**self).atomic_batches()
            }
            fn database(&self) -> Option<crate::request::DatabaseId> {
                (**self).database()
            }
        }
    )*};
}
forward_sink!(Arc, Box);

/// A thread-safe audit log in memory.
///
/// ```
/// use std::sync::Arc;
/// use privacy_pledge::{Custodian, PersonalInfo, SubjectId};
/// use privacy_pledge::audit::{Action, MemoryAuditLog};
/// use privacy_pledge::data::EmailAddress;
/// use privacy_pledge::purpose::Support;
///
/// let log = Arc::new(MemoryAuditLog::new());
/// let custodian = Custodian::builder().audit(log.clone()).build()?;
/// let email: PersonalInfo<EmailAddress, Support> =
///     PersonalInfo::collect(SubjectId::random(), EmailAddress::parse("ada@example.com")?);
/// custodian.access(&email, |e| e.domain().len())?;
/// assert_eq!(log.events()[0].action(), Action::Access);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Default)]
pub struct MemoryAuditLog {
    events: Mutex<Vec<AuditEvent>>,
}

impl MemoryAuditLog {
    /// An empty log.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Vec<AuditEvent>> {
        // A panic while holding the lock cannot leave the Vec half-written.
        self.events.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A copy of every event recorded so far, in order.
    pub fn events(&self) -> Vec<AuditEvent> {
        self.lock().clone()
    }

    /// Runs `f` over the recorded events without copying them.
    pub fn with_events<R>(&self, f: impl FnOnce(&[AuditEvent]) -> R) -> R {
        f(&self.lock())
    }

    /// How many events are recorded.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no event is recorded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl AuditSink for MemoryAuditLog {
    fn record(&self, event: &AuditEvent) -> Result<(), AuditError> {
        self.lock().push(event.clone());
        Ok(())
    }

    fn record_owned(&self, event: AuditEvent) -> Result<(), AuditError> {
        self.lock().push(event);
        Ok(())
    }

    fn record_batch(&self, events: &[AuditEvent]) -> Result<(), AuditError> {
        self.lock().extend_from_slice(events);
        Ok(())
    }
}
