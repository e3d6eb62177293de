//! What the database's operator (A2) can do to the store's tables, the same
//! on every database: each edit, deletion, insertion, reordering, replay,
//! truncation and dropped stream of `pp_audit_log`, a dropped table, and a
//! consent row rolled back to an older authentic copy — each must be
//! reported precisely.

use std::sync::Arc;

use privacy_pledge::audit::{
    verify_public, verify_streams, AuditEvent, AuditKey, CheckpointKey, SignedCheckpoint, Tamper,
};
use privacy_pledge::consent::{cross_check, ConsentRecord};
use privacy_pledge::data::EmailAddress;
use privacy_pledge::purpose::{Newsletter, Transaction};
use privacy_pledge::store::{AuditStreamSink, BatchWriter, StoreError};
use privacy_pledge::{Custodian, PersonalInfo, SubjectId};

/// The operator's access to one database, and the store's readers of it.
pub struct Operator<'a> {
    /// Runs `;`-separated statements as the operator.
    pub run: &'a dyn Fn(&str),
    /// The store's `trail()`.
    pub trail: &'a dyn Fn() -> Result<Vec<AuditEvent>, StoreError>,
    /// The store's consent rows (`ConsentStore::all`).
    pub consents: &'a dyn Fn() -> Vec<ConsentRecord>,
    /// Statements that take away `UNIQUE (stream, seq)`, which otherwise
    /// stops a replayed row at the door.
    pub drop_unique: &'a str,
}

/// Quotes `text` as an SQL string literal.
fn quoted(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// Seven streams of ten entries, each with a signed checkpoint at its head.
pub fn write_streams<W: BatchWriter + 'static>(
    new_sink: impl Fn() -> AuditStreamSink<W>,
) -> Vec<SignedCheckpoint> {
    (0..7)
        .map(|_| {
            let sink = Arc::new(new_sink());
            let c = Custodian::builder().audit(sink.clone()).build().unwrap();
            let info: PersonalInfo<EmailAddress, Transaction> = PersonalInfo::collect(
                SubjectId::random(),
                EmailAddress::parse("ada@example.com").unwrap(),
            );
            for _ in 0..10 {
                c.access(&info, |_| ()).unwrap();
            }
            sink.sign_checkpoint().unwrap()
        })
        .collect()
}

/// Tampers with each of the seven streams in its own way and checks that
/// the keyed verifier names exactly that tampering for exactly that stream,
/// and that the public verifier finds none of them intact; then drops the
/// table.
pub fn a2_every_tampering_is_reported(
    op: &Operator<'_>,
    key: &AuditKey,
    public: &CheckpointKey,
    signed: &[SignedCheckpoint],
) {
    assert_eq!(signed.len(), 7);
    let s = |i: usize| quoted(&signed[i].stream().to_string());
    let row = |i: usize, seq: u64| format!("stream = {} AND seq = {seq}", s(i));
    let deny = "replace(event, '\"outcome\":\"allowed\"', '\"outcome\":\"denied\"')";
    // The constraint would stop the forged and the replayed row at the door.
    (op.run)(op.drop_unique);
    // 0: an entry's content edited in place.
    (op.run)(&format!(
        "UPDATE pp_audit_log SET event = {deny} WHERE {}",
        row(0, 4)
    ));
    // 1: an entry deleted from the middle.
    (op.run)(&format!("DELETE FROM pp_audit_log WHERE {}", row(1, 4)));
    // 2: a forged entry put in before entry 4 (ids spread out to make room).
    (op.run)("UPDATE pp_audit_log SET id = -id; UPDATE pp_audit_log SET id = -id * 10");
    (op.run)(&format!(
        "INSERT INTO pp_audit_log (id, stream, seq, time, subject, action, event) \
         SELECT id - 5, stream, seq, time, subject, action, {deny} FROM pp_audit_log WHERE {}",
        row(2, 4)
    ));
    // 3: entries 4 and 5 swapped.
    (op.run)(&format!(
        "UPDATE pp_audit_log SET id = -id WHERE {}; \
         UPDATE pp_audit_log SET id = id - 10 WHERE {}; \
         UPDATE pp_audit_log SET id = -id + 10 WHERE {}",
        row(3, 4),
        row(3, 5),
        row(3, 4)
    ));
    // 4: an authentic earlier entry played again at the end.
    (op.run)(&format!(
        "INSERT INTO pp_audit_log (id, stream, seq, time, subject, action, event) \
         SELECT (SELECT MAX(id) FROM pp_audit_log) + 1, stream, seq, time, subject, action, event \
         FROM pp_audit_log WHERE {}",
        row(4, 2)
    ));
    // 5: the stream cut short; 6: the stream dropped.
    (op.run)(&format!(
        "DELETE FROM pp_audit_log WHERE stream = {} AND seq > 7",
        s(5)
    ));
    (op.run)(&format!("DELETE FROM pp_audit_log WHERE stream = {}", s(6)));

    let trail = (op.trail)().unwrap();
    let heads: Vec<_> = signed.iter().map(|c| c.verify(public).unwrap()).collect();
    let reports = verify_streams(&trail, key, &heads);
    let reason = |i: usize| {
        let r = reports
            .iter()
            .find(|r| r.stream == Some(signed[i].stream()))
            .unwrap_or_else(|| panic!("stream {i} not reported: {reports:?}"));
        (r.result.unwrap_err().reason, r.entries)
    };
    assert_eq!(reason(0).0, Tamper::Modified);
    assert_eq!(reason(1).0, Tamper::Deleted);
    assert_eq!(reason(2).0, Tamper::Inserted);
    assert_eq!(reason(3).0, Tamper::Reordered);
    assert_eq!(reason(4).0, Tamper::Replayed);
    assert_eq!(reason(5), (Tamper::Truncated, 7));
    assert_eq!(reason(6), (Tamper::Truncated, 0));
    assert_eq!(reports.len(), 7, "{reports:?}");
    let public_report = verify_public(&trail, public, signed);
    assert!(public_report.streams.iter().all(|s| s.result.is_err()));

    // The table dropped: reading the trail fails, naming no value.
    (op.run)("DROP TABLE pp_audit_log");
    let err = (op.trail)().unwrap_err().to_string();
    assert!(err.contains("pp_audit_log"), "{err}");
}

/// A2 puts back an older, authentic consent row (the grant before a
/// withdrawal): the row itself authenticates, and the cross-check against
/// the trail reports it.
pub fn a2_a_rolled_back_consent_row_is_reported(op: &Operator<'_>, custodian: &Custodian) {
    let (ada, bob) = (SubjectId::random(), SubjectId::random());
    custodian.consents().grant::<Newsletter>(ada).unwrap();
    custodian.consents().grant::<Newsletter>(bob).unwrap();
    let granted = (op.consents)()
        .into_iter()
        .find(|r| r.subject == ada)
        .unwrap();
    custodian.consents().withdraw::<Newsletter>(ada).unwrap();
    assert!(cross_check(&(op.consents)(), &(op.trail)().unwrap()).is_empty());
    let old = serde_json::to_string(&granted).unwrap();
    (op.run)(&format!(
        "UPDATE pp_consents SET record = {}, version = 1 WHERE subject = {}",
        quoted(&old),
        quoted(&ada.to_string())
    ));
    let rows = (op.consents)();
    assert!(rows.iter().any(|r| r.subject == ada && r.granted));
    let found = cross_check(&rows, &(op.trail)().unwrap());
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].subject, ada);
    assert_eq!(
        (found[0].trail_granted, found[0].row_granted),
        (Some(false), Some(true))
    );
}
