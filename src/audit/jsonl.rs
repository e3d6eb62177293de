//! Audit events as JSON lines: one [`AuditEvent`] per line, in any
//! [`Write`](std::io::Write) — a file, a pipe, a socket — and back.

use core::fmt;
use std::borrow::Cow;
use std::io::{BufRead, Read, Write};
use std::sync::{Mutex, MutexGuard};

use super::{AuditError, AuditEvent, AuditSink};

/// When a [`JsonLinesSink`] flushes its writer.
///
/// ```
/// use std::io::BufWriter;
/// use privacy_pledge::audit::{FlushPolicy, JsonLinesSink};
///
/// // Buffered for throughput, but every event leaves the buffer before the
/// // operation it describes goes ahead.
/// let sink = JsonLinesSink::with_policy(BufWriter::new(Vec::new()), FlushPolicy::EveryLine);
/// assert_eq!(FlushPolicy::default(), FlushPolicy::OnRequest);
/// # drop(sink);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum FlushPolicy {
    /// Only when [`AuditSink::flush`] is called (and when the writer's own
    /// buffer fills). Fastest; a line written to a buffered writer is on its
    /// way, not yet stored, when `record` returns.
    #[default]
    OnRequest,
    /// After every [`record`](AuditSink::record) and
    /// [`record_batch`](AuditSink::record_batch): an event has reached the
    /// writer's destination (for a file, the operating system) before the
    /// operation it describes goes ahead, and a failure to get it there stops
    /// that operation.
    EveryLine,
}

struct Writer<W> {
    out: W,
    line: Vec<u8>,
    broken: bool,
}

/// An [`AuditSink`] that writes each event as one line of JSON.
///
/// Each line is built in memory first and handed to the writer with one
/// `write_all`, under a lock, so lines from concurrent operations never
/// interleave. Wrap it in a [`ChainedAuditLog`](super::ChainedAuditLog) to
/// make the file tamper-evident, and read it back with [`read_jsonl`].
///
/// # Flush policy
///
/// [`JsonLinesSink::new`] flushes the writer only when
/// [`flush`](AuditSink::flush) is called ([`FlushPolicy::OnRequest`]);
/// [`JsonLinesSink::with_policy`] with [`FlushPolicy::EveryLine`] flushes
/// after every line, so `record` returns `Ok` only once the line has left the
/// writer's buffer. Neither calls `fsync`: a host that must survive power loss
/// syncs the file itself (e.g. `File::sync_data` on a schedule).
///
/// # Failure
///
/// An I/O error while writing or flushing is returned as an [`AuditError`],
/// so the operation the event describes does not happen (fail closed). A
/// failed write may have left part of a line behind, so from then on the
/// sink refuses every event: restart it on a fresh file, or repair the file
/// and [`resume`](super::ChainedAuditLog::resume) the chain.
///
/// ```
/// use std::sync::Arc;
/// use privacy_pledge::audit::{read_jsonl, verify, AuditKey, ChainedAuditLog, JsonLinesSink};
/// use privacy_pledge::{Custodian, PersonalInfo, SubjectId};
/// use privacy_pledge::data::EmailAddress;
/// use privacy_pledge::purpose::Support;
///
/// let key = AuditKey::generate()?;
/// let log = Arc::new(ChainedAuditLog::new(key.clone(), JsonLinesSink::new(Vec::new())));
/// let custodian = Custodian::builder().audit(log.clone()).build()?;
/// let email: PersonalInfo<EmailAddress, Support> =
///     PersonalInfo::collect(SubjectId::random(), EmailAddress::parse("ada@example.com")?);
/// custodian.access(&email, |e| e.domain().len())?;
///
/// let bytes = log.inner().with_writer(|w| w.clone());
/// let events = read_jsonl(&bytes[..])?;
/// assert_eq!(verify(&events, &key, None)?, log.checkpoint());
/// // No plaintext: the address is nowhere in the log (its hex and MACs may
/// // hold any letters a–f, so the check is for the address itself).
/// let text = String::from_utf8(bytes)?;
/// assert!(!text.contains("ada@") && !text.contains("example.com"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct JsonLinesSink<W: Write + Send> {
    writer: Mutex<Writer<W>>,
    policy: FlushPolicy,
}

impl<W: Write + Send> JsonLinesSink<W> {
    /// A sink that writes lines to `writer` and flushes only on request
    /// ([`FlushPolicy::OnRequest`]).
    ///
    /// ```
    /// use privacy_pledge::audit::JsonLinesSink;
    /// let sink = JsonLinesSink::new(std::io::stdout());
    /// # drop(sink);
    /// ```
    pub fn new(writer: W) -> Self {
        Self::with_policy(writer, FlushPolicy::OnRequest)
    }

    /// A sink with the given flush policy.
    ///
    /// ```
    /// use std::fs::OpenOptions;
    /// use privacy_pledge::audit::{FlushPolicy, JsonLinesSink};
    ///
    /// let path = std::env::temp_dir().join(format!("audit-doc-{}.jsonl", std::process::id()));
    /// let file = OpenOptions::new().create(true).append(true).open(&path)?;
    /// let sink = JsonLinesSink::with_policy(file, FlushPolicy::EveryLine);
    /// assert_eq!(sink.policy(), FlushPolicy::EveryLine);
    /// # drop(sink); std::fs::remove_file(&path)?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn with_policy(writer: W, policy: FlushPolicy) -> Self {
        JsonLinesSink {
            writer: Mutex::new(Writer {
                out: writer,
                line: Vec::with_capacity(512),
                broken: false,
            }),
            policy,
        }
    }

    /// The flush policy.
    ///
    /// ```
    /// use privacy_pledge::audit::{FlushPolicy, JsonLinesSink};
    /// assert_eq!(JsonLinesSink::new(Vec::new()).policy(), FlushPolicy::OnRequest);
    /// ```
    pub fn policy(&self) -> FlushPolicy {
        self.policy
    }

    fn lock(&self) -> MutexGuard<'_, Writer<W>> {
        // A panic inside the writer is treated like an I/O error: the state
        // of the stream is unknown, so the sink refuses further events.
        self.writer.lock().unwrap_or_else(|p| {
            let mut w = p.into_inner();
            w.broken = true;
            w
        })
    }

    /// Runs `f` with the writer, e.g. to read back an in-memory buffer.
    ///
    /// ```
    /// use privacy_pledge::audit::JsonLinesSink;
    /// let sink = JsonLinesSink::new(Vec::new());
    /// assert!(sink.with_writer(|w| w.is_empty()));
    /// ```
    pub fn with_writer<R>(&self, f: impl FnOnce(&W) -> R) -> R {
        f(&self.lock().out)
    }

    /// Whether an earlier I/O error made the sink refuse further events.
    ///
    /// ```
    /// use privacy_pledge::audit::JsonLinesSink;
    /// assert!(!JsonLinesSink::new(Vec::new()).is_broken());
    /// ```
    pub fn is_broken(&self) -> bool {
        self.lock().broken
    }

    /// Flushes and returns the writer.
    ///
    /// ```
    /// use privacy_pledge::audit::JsonLinesSink;
    /// let bytes: Vec<u8> = JsonLinesSink::new(Vec::new()).into_inner()?;
    /// assert!(bytes.is_empty());
    /// # Ok::<(), privacy_pledge::audit::AuditError>(())
    /// ```
    pub fn into_inner(self) -> Result<W, AuditError> {
        let mut w = self.writer.into_inner().unwrap_or_else(|p| p.into_inner());
        w.out.flush().map_err(|e| io_error("flush", &e))?;
        Ok(w.out)
    }

    fn write(&self, events: &[AuditEvent]) -> Result<(), AuditError> {
        let mut guard = self.lock();
        let w = &mut *guard;
        if w.broken {
            return Err(AuditError::new(
                "audit log writer failed earlier; refusing further events",
            ));
        }
        w.line.clear();
        for event in events {
            serde_json::to_writer(&mut w.line, event)
                .map_err(|_| AuditError::new("audit event could not be encoded as JSON"))?;
            w.line.push(b'\n');
        }
        let mut result = w.out.write_all(&w.line).map_err(|e| io_error("write", &e));
        if result.is_ok() && self.policy == FlushPolicy::EveryLine {
            result = w.out.flush().map_err(|e| io_error("flush", &e));
        }
        if result.is_err() {
            w.broken = true;
        }
        if w.line.capacity() > 64 * 1024 {
            w.line = Vec::with_capacity(512);
        }
        result
    }
}

fn io_error(what: &str, e: &std::io::Error) -> AuditError {
    // `io::Error` messages describe the device or the OS error, never an event.
    AuditError::new(Cow::Owned(format!("audit log {what} failed: {e}")))
}

impl<W: Write + Send> AuditSink for JsonLinesSink<W> {
    fn record(&self, event: &AuditEvent) -> Result<(), AuditError> {
        self.write(core::slice::from_ref(event))
    }

    /// Writes all lines with one `write_all`. A writer that fails part-way
    /// may keep a prefix of them; the sink then refuses further events.
    fn record_batch(&self, events: &[AuditEvent]) -> Result<(), AuditError> {
        if events.is_empty() {
            return Ok(());
        }
        self.write(events)
    }

    /// Flushes the writer.
    fn flush(&self) -> Result<(), AuditError> {
        let mut w = self.lock();
        if w.broken {
            return Err(AuditError::new(
                "audit log writer failed earlier; refusing further events",
            ));
        }
        let r = w.out.flush().map_err(|e| io_error("flush", &e));
        if r.is_err() {
            w.broken = true;
        }
        r
    }
}

impl<W: Write + Send> fmt::Debug for JsonLinesSink<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JsonLinesSink")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

/// The longest line [`read_jsonl`] accepts, in bytes. Events are a few
/// hundred bytes; a longer line is not an event.
///
/// ```
/// use privacy_pledge::audit::{read_jsonl, JsonlError, MAX_LINE_BYTES};
///
/// let huge = "x".repeat(MAX_LINE_BYTES + 1);
/// let err = read_jsonl(huge.as_bytes()).unwrap_err();
/// assert!(matches!(err, JsonlError::Malformed { line: 1, problem: "too long", .. }));
/// ```
pub const MAX_LINE_BYTES: usize = 64 * 1024;

/// A JSON-lines audit log could not be read. Says where and what kind of
/// problem, never the line's content (a damaged line may hold anything).
///
/// ```
/// use privacy_pledge::audit::{read_jsonl, JsonlError};
///
/// let err = read_jsonl(&b"{\"v\":1,\"seq\":\"ada@example.com\"}\n"[..]).unwrap_err();
/// assert!(matches!(err, JsonlError::Malformed { line: 1, problem: "data", .. }));
/// assert!(!err.to_string().contains("ada"));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JsonlError {
    /// Reading failed.
    #[error("audit log line {line}: read failed: {source}")]
    Io {
        /// The line (from 1) being read.
        line: usize,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The line is not one audit event in JSON.
    #[error("audit log line {line}, column {column}: not an audit event ({problem})")]
    Malformed {
        /// The line (from 1).
        line: usize,
        /// The column (from 1) where parsing stopped; 0 if unknown.
        column: usize,
        /// What kind of problem: `syntax`, `data`, `incomplete`, `empty line`, `too long`.
        problem: &'static str,
    },
}

impl JsonlError {
    /// The line (from 1) the problem is on.
    ///
    /// ```
    /// use privacy_pledge::audit::read_jsonl;
    /// let err = read_jsonl(&b"{\"v\":1}\n"[..]).unwrap_err();
    /// assert_eq!(err.line(), 1);
    /// ```
    pub fn line(&self) -> usize {
        match self {
            JsonlError::Io { line, .. } | JsonlError::Malformed { line, .. } => *line,
        }
    }
}

/// Reads a JSON-lines audit log, one [`AuditEvent`] per line, in order.
///
/// Strict: every line must be exactly one event. An empty or partial line,
/// a line longer than [`MAX_LINE_BYTES`], or one that is not an event is an
/// `Err` naming the line; the function never panics on its input. A final
/// newline is optional. Pass the events to [`verify`](super::verify).
///
/// ```
/// use privacy_pledge::audit::{read_jsonl, JsonlError};
///
/// assert!(read_jsonl(&b""[..])?.is_empty());
/// let err = read_jsonl(&b"not json\n"[..]).unwrap_err();
/// assert!(matches!(err, JsonlError::Malformed { line: 1, problem: "syntax", .. }));
/// # Ok::<(), JsonlError>(())
/// ```
pub fn read_jsonl<R: BufRead>(mut reader: R) -> Result<Vec<AuditEvent>, JsonlError> {
    let mut events = Vec::new();
    let mut buf = Vec::with_capacity(512);
    let mut line = 0usize;
    loop {
        line += 1;
        buf.clear();
        let n = (&mut reader)
            .take(MAX_LINE_BYTES as u64 + 1)
            .read_until(b'\n', &mut buf)
            .map_err(|source| JsonlError::Io { line, source })?;
        if n == 0 {
            return Ok(events);
        }
        let malformed = |column, problem| JsonlError::Malformed {
            line,
            column,
            problem,
        };
        let text = match buf.strip_suffix(b"\n") {
            Some(t) => t,
            None if buf.len() > MAX_LINE_BYTES => return Err(malformed(0, "too long")),
            None => &buf[..],
        };
        if text.len() > MAX_LINE_BYTES {
            return Err(malformed(0, "too long"));
        }
        if text.is_empty() {
            return Err(malformed(1, "empty line"));
        }
        let event = serde_json::from_slice::<AuditEvent>(text).map_err(|e| {
            use serde_json::error::Category;
            let problem = match e.classify() {
                Category::Io => "io",
                Category::Syntax => "syntax",
                Category::Data => "data",
                Category::Eof => "incomplete",
            };
            malformed(e.column(), problem)
        })?;
        events.push(event);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{Action, ChainedAuditLog, RecipientRef};
    use crate::country::Country;
    use crate::data::Kind;
    use crate::policy::RuleId;
    use crate::purpose::PurposeId;
    use crate::recipient::RoleId;
    use crate::time::Timestamp;
    use crate::transfer::Mechanism;
    use crate::SubjectId;

    /// An event of `action` with every optional field set.
    fn full_event(action: Action) -> AuditEvent {
        let mut e = AuditEvent::new(
            Timestamp::from_unix_seconds(1_530_316_800),
            SubjectId::from(42),
            action,
            RuleId::R5,
        )
        .about(Kind::EmailAddress, PurposeId::Transaction);
        e.target_purpose = Some(PurposeId::ServiceNotice);
        e.recipient = Some(RecipientRef {
            name: "Mail Delivery Co".into(),
            role: RoleId::Processor,
        });
        e.country = Some(Country::parse("US").expect("valid country"));
        e.mechanism = Some(Mechanism::StandardContractualClauses);
        e
    }

    #[test]
    fn every_action_round_trips_with_only_the_documented_fields() {
        let key = crate::audit::AuditKey::from_bytes([3; 32]);
        let log = ChainedAuditLog::new(key.clone(), JsonLinesSink::new(Vec::new()));
        let events: Vec<_> = Action::ALL.iter().map(|a| full_event(*a)).collect();
        log.record_batch(&events).unwrap();
        let bytes = log.inner().with_writer(|w| w.clone());
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert_eq!(text.lines().count(), Action::ALL.len());
        for line in text.lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let mut keys: Vec<_> = v.as_object().unwrap().keys().cloned().collect();
            keys.sort();
            assert_eq!(
                keys,
                [
                    "action",
                    "chain",
                    "country",
                    "kind",
                    "mechanism",
                    "outcome",
                    "purpose",
                    "recipient",
                    "rule",
                    "seq",
                    "subject",
                    "target_purpose",
                    "time",
                    "v"
                ]
            );
        }
        let back = read_jsonl(&bytes[..]).unwrap();
        assert_eq!(back.len(), events.len());
        for (b, a) in back.iter().zip(Action::ALL) {
            assert_eq!(b.action(), a);
        }
        assert_eq!(
            crate::audit::verify(&back, &key, None).unwrap(),
            log.checkpoint()
        );
    }

    struct FailingWriter {
        ok_writes: usize,
    }
    impl Write for FailingWriter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if self.ok_writes == 0 {
                return Err(std::io::Error::other("disk full"));
            }
            self.ok_writes -= 1;
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn io_error_fails_closed_and_stays_failed() {
        let sink = JsonLinesSink::new(FailingWriter { ok_writes: 1 });
        let e = full_event(Action::Access);
        assert!(sink.record(&e).is_ok());
        let err = sink.record(&e).unwrap_err();
        assert_eq!(err.message(), "audit log write failed: disk full");
        assert!(sink.is_broken());
        assert!(sink.record(&e).is_err());
        assert!(sink.flush().is_err());
    }

    #[test]
    fn every_line_policy_flushes() {
        struct CountFlush(usize);
        impl Write for CountFlush {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                self.0 += 1;
                Ok(())
            }
        }
        let e = full_event(Action::Seal);
        let lazy = JsonLinesSink::new(CountFlush(0));
        lazy.record(&e).unwrap();
        assert_eq!(lazy.with_writer(|w| w.0), 0);
        lazy.flush().unwrap();
        assert_eq!(lazy.with_writer(|w| w.0), 1);
        let eager = JsonLinesSink::with_policy(CountFlush(0), FlushPolicy::EveryLine);
        eager.record(&e).unwrap();
        eager.record(&e).unwrap();
        assert_eq!(eager.with_writer(|w| w.0), 2);
    }

    #[test]
    fn bad_lines_name_their_line() {
        let good = serde_json::to_string(&full_event(Action::Open)).unwrap();
        let cases: [(String, usize, &str); 5] = [
            (format!("{good}\n\n{good}\n"), 2, "empty line"),
            (format!("{good}\n{good}\n{{\"v\":1,"), 3, "incomplete"),
            (format!("{good}\n[1,2]\n"), 2, "data"),
            (format!("{good}\nxx\n"), 2, "syntax"),
            (
                format!("{good}\n{}\n", " ".repeat(MAX_LINE_BYTES + 10)),
                2,
                "too long",
            ),
        ];
        for (input, line, problem) in cases {
            match read_jsonl(input.as_bytes()) {
                Err(JsonlError::Malformed {
                    line: l,
                    problem: p,
                    ..
                }) => {
                    assert_eq!((l, p), (line, problem), "{problem}");
                }
                other => panic!("{problem}: {other:?}"),
            }
        }
        // No trailing newline is fine.
        assert_eq!(read_jsonl(good.as_bytes()).unwrap().len(), 1);
    }

    #[test]
    fn errors_do_not_echo_the_line() {
        let line = r#"{"v":1,"seq":1,"time":0,"subject":"ada@example.com"}"#;
        let err = read_jsonl(line.as_bytes()).unwrap_err();
        assert!(!err.to_string().contains("ada"), "{err}");
        assert!(!format!("{err:?}").contains("ada"));
    }
}
