//! The `tracing` feature: every audit event becomes one structured `tracing`
//! event with its fields, every custodian operation a span, and nothing a
//! subscriber receives holds a personal value (A4: whoever reads the logs).

use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use privacy_pledge::audit::{MemoryAuditLog, TracingSink};
use privacy_pledge::data::{EmailAddress, FullName};
use privacy_pledge::purpose::{Newsletter, Transaction};
use privacy_pledge::recipient::{Processor, Recipient};
use privacy_pledge::{Custodian, PersonalInfo, SubjectId};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

/// One thing the subscriber saw: a span or an event, as text, with the
/// spans it sat in.
#[derive(Clone, Debug)]
struct Seen {
    target: String,
    text: String,
    within: Vec<String>,
}

/// A subscriber that writes every span and event down as text.
#[derive(Default)]
struct Capture {
    spans: Mutex<Vec<String>>,
    stack: Mutex<Vec<usize>>,
    seen: Mutex<Vec<Seen>>,
}

struct Fields<'a>(&'a mut String);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let _ = write!(self.0, " {}={:?}", field.name(), value);
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        let _ = write!(self.0, " {}={}", field.name(), value);
    }
}

impl Subscriber for Capture {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, span: &Attributes<'_>) -> Id {
        let mut text = span.metadata().name().to_owned();
        span.record(&mut Fields(&mut text));
        let mut spans = self.spans.lock().unwrap();
        spans.push(text.clone());
        self.seen.lock().unwrap().push(Seen {
            target: span.metadata().target().to_owned(),
            text,
            within: Vec::new(),
        });
        Id::from_u64(spans.len() as u64)
    }
    fn record(&self, span: &Id, values: &Record<'_>) {
        let mut spans = self.spans.lock().unwrap();
        let i = span.into_u64() as usize - 1;
        values.record(&mut Fields(&mut spans[i]));
    }
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut text = String::new();
        event.record(&mut Fields(&mut text));
        let spans = self.spans.lock().unwrap();
        let within = self
            .stack
            .lock()
            .unwrap()
            .iter()
            .map(|&i| spans[i - 1].clone())
            .collect();
        self.seen.lock().unwrap().push(Seen {
            target: event.metadata().target().to_owned(),
            text,
            within,
        });
    }
    fn enter(&self, span: &Id) {
        self.stack.lock().unwrap().push(span.into_u64() as usize);
    }
    fn exit(&self, _: &Id) {
        self.stack.lock().unwrap().pop();
    }
}

struct Mailer;
impl Recipient for Mailer {
    type Role = Processor;
    fn name(&self) -> &str {
        "mail delivery"
    }
}

const EMAIL: &str = "ada.lovelace@example.com";
const NAME: &str = "Ada Lovelace";

#[test]
fn a4_audit_events_and_spans_carry_fields_never_values() {
    let capture = Arc::new(Capture::default());
    let log = Arc::new(MemoryAuditLog::new());
    let custodian = Custodian::builder()
        .audit(TracingSink::beside(log.clone()))
        .build()
        .unwrap();
    let subject = SubjectId::random();
    tracing::subscriber::with_default(capture.clone(), || {
        let email = custodian
            .collect::<EmailAddress, Transaction>(subject, EmailAddress::parse(EMAIL).unwrap())
            .unwrap();
        let name = custodian
            .collect::<FullName, Transaction>(subject, FullName::parse(NAME).unwrap())
            .unwrap();
        custodian
            .access(
                &email,
                |_| tracing::info!(target: "host", "inside the closure"),
            )
            .unwrap();
        let sealed = custodian.seal(&name).unwrap();
        custodian.open(&sealed).unwrap();
        custodian.disclose(&email, &Mailer, |_| ()).unwrap();
        // A refused use is an event too (at WARN), with its rule.
        let list: PersonalInfo<EmailAddress, Newsletter> =
            PersonalInfo::collect(subject, EmailAddress::parse(EMAIL).unwrap());
        assert!(custodian.access(&list, |_| ()).is_err());
        custodian.erase(subject).unwrap();
    });
    let seen = capture.seen.lock().unwrap().clone();
    let audit: Vec<&Seen> = seen
        .iter()
        .filter(|s| s.target == "privacy_pledge::audit")
        .collect();
    assert_eq!(
        audit.len(),
        log.events().len(),
        "one tracing event per audit event"
    );
    for (s, e) in audit.iter().zip(log.events()) {
        assert!(
            s.text.contains(&format!("action={:?}", e.action())),
            "{}",
            s.text
        );
    }
    assert!(audit.iter().any(|s| s.text.contains("kind=EmailAddress")
        && s.text.contains("purpose=Transaction")
        && s.text.contains("recipient=mail delivery")));
    assert!(audit
        .iter()
        .any(|s| s.text.contains("outcome=denied") && s.text.contains("rule=R7")));
    // The host's own event inside `access` sits in the custodian's span.
    let inside = seen.iter().find(|s| s.target == "host").unwrap();
    assert!(
        inside
            .within
            .iter()
            .any(|span| span.starts_with("custodian") && span.contains("action=Access")),
        "{inside:?}"
    );
    // Nothing holds a value, or a recognisable part of one.
    for s in &seen {
        for needle in [EMAIL, "lovelace", "Lovelace", NAME, "example.com"] {
            assert!(!s.text.contains(needle), "{} leaks: {}", s.target, s.text);
        }
    }
    // Spans carry the subject's keyed tag, the one the host's own log
    // lines get, and no part of the id.
    let tag = format!("subject={}", custodian.subject_tag(subject));
    let id = subject.to_string();
    let spans: Vec<&Seen> = seen
        .iter()
        .filter(|s| s.target == "privacy_pledge::custodian")
        .collect();
    assert!(!spans.is_empty());
    for s in spans {
        assert!(s.text.contains(&tag), "{}", s.text);
        assert!(!s.text.contains(&id[..4]), "{}", s.text);
    }
}

/// Alone, the sink only logs and never refuses.
#[test]
fn a_lone_tracing_sink_logs_and_accepts() {
    let capture = Arc::new(Capture::default());
    let custodian = Custodian::builder()
        .audit(TracingSink::new())
        .build()
        .unwrap();
    tracing::subscriber::with_default(capture.clone(), || {
        let email = PersonalInfo::<EmailAddress, Transaction>::collect(
            SubjectId::random(),
            EmailAddress::parse(EMAIL).unwrap(),
        );
        custodian.access(&email, |_| ()).unwrap();
    });
    let seen = capture.seen.lock().unwrap();
    assert_eq!(
        seen.iter()
            .filter(|s| s.target == "privacy_pledge::audit")
            .count(),
        1
    );
}
