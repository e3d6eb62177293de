//! What the database's operator (A2) can do to the store's tables, the same
//! on every database: each edit, deletion, insertion, reordering, replay,
//! truncation and dropped stream of `pp_audit_log`, a dropped table, and a
//! consent row rolled back to an older authentic copy — each must be
//! reported precisely.

use std::sync::Arc;

use privacy_pledge::audit::{
    verify_public, verify_streams, Action, AuditEvent, AuditKey, CheckpointKey, SignedCheckpoint,
    Tamper,
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
    /// Statements that take away `UNIQUE (stream, seq)` where the store's
    /// schema has one (PostgreSQL's; nothing for SQLite's), which would
    /// otherwise stop a replayed row at the door.
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

/// A recipient for the scenarios below.
struct Mailer;
impl privacy_pledge::recipient::Recipient for Mailer {
    type Role = privacy_pledge::recipient::Processor;
    fn name(&self) -> &str {
        "mail delivery"
    }
}

fn info() -> PersonalInfo<EmailAddress, Transaction> {
    PersonalInfo::collect(
        SubjectId::random(),
        EmailAddress::parse("ada@example.com").unwrap(),
    )
}

/// A2 deletes a stream's vouched prefix (attack 4): the writer crashed
/// after a checkpoint at seq 5 (so only that checkpoint exists, in the store
/// outside the database and in `pp_checkpoints`), and the operator deletes
/// rows 1..=5. A stream may start only at seq 1 or at an archive base, so
/// the public verifier, the keyed one and the custodian all report it.
/// `new_sink` signs a checkpoint every 5 events into `outside`.
pub fn a2_deleting_a_vouched_prefix_is_reported<W: BatchWriter + 'static>(
    op: &Operator<'_>,
    new_sink: impl Fn() -> AuditStreamSink<W>,
    keyring: &Arc<privacy_pledge::crypto::Keyring>,
    outside: &(impl privacy_pledge::audit::CheckpointStore + Clone + 'static),
) {
    use privacy_pledge::audit::TrailError;
    use privacy_pledge::Error;
    let sink = Arc::new(new_sink());
    let c = Custodian::builder().audit(sink.clone()).build().unwrap();
    let info = info();
    for _ in 0..8 {
        c.access(&info, |_| ()).unwrap();
    }
    let (stream, _) = sink.checkpoint();
    // The process dies: no checkpoint at shutdown.
    drop((c, sink));
    let public = keyring.checkpoint_signer().unwrap().public_key();
    let checkpoints = outside.load().unwrap();
    assert_eq!(checkpoints.len(), 1);
    assert_eq!(checkpoints[0].checkpoint().seq(), 5);
    let report = verify_public(&(op.trail)().unwrap(), &public, &checkpoints);
    assert!(report.is_intact(), "{report:?}");
    assert!(!report.is_fully_vouched());
    assert_eq!(report.unvouched(), 3, "the three entries after seq 5");

    (op.run)(&format!(
        "DELETE FROM pp_audit_log WHERE stream = {} AND seq <= 5",
        quoted(&stream.to_string())
    ));
    let trail = (op.trail)().unwrap();
    assert_eq!(trail.len(), 3);
    let report = verify_public(&trail, &public, &checkpoints);
    assert!(!report.is_intact());
    assert_eq!(
        report.streams[0].result.unwrap_err().reason,
        Tamper::Deleted,
        "{report:?}"
    );
    let trusted: Vec<_> = checkpoints
        .iter()
        .map(|c| c.verify(&public).unwrap())
        .collect();
    let keyed = verify_streams(&trail, &keyring.audit_key(), &trusted);
    assert_eq!(keyed[0].result.unwrap_err().reason, Tamper::Deleted);
    let verifier = Custodian::builder()
        .keyring(keyring.clone())
        .checkpoint_store(outside.clone())
        .audit(privacy_pledge::audit::MemoryAuditLog::new())
        .build()
        .unwrap();
    assert!(matches!(
        verifier.verify_trail(trail),
        Err(Error::Untrusted(TrailError::Broken(_)))
    ));
}

/// A2 renumbers one stream's rows (`id + 1000000`, attack 5): every stream
/// still verifies fully vouched, but the table now lists an earlier grant
/// after a later withdrawal. The restore replays event order (each stream
/// in its own sequence, streams merged by time), so the withdrawal stands.
/// `new_sink` signs into `outside`.
pub fn a2_renumbered_rows_do_not_undo_a_withdrawal<W: BatchWriter + 'static>(
    op: &Operator<'_>,
    new_sink: impl Fn() -> AuditStreamSink<W>,
    keyring: &Arc<privacy_pledge::crypto::Keyring>,
    outside: &(impl privacy_pledge::audit::CheckpointStore + Clone + 'static),
) {
    let ada = SubjectId::random();
    let process = || {
        let sink = Arc::new(new_sink());
        let c = Custodian::builder()
            .keyring(keyring.clone())
            .audit(sink.clone())
            .build()
            .unwrap();
        (sink, c)
    };
    let (first, one) = process();
    one.consents().grant::<Newsletter>(ada).unwrap();
    first.sign_checkpoint().unwrap();
    let (second, two) = process();
    two.consents().grant::<Newsletter>(ada).unwrap();
    two.consents().withdraw::<Newsletter>(ada).unwrap();
    second.sign_checkpoint().unwrap();
    let (moved, _) = first.checkpoint();

    (op.run)(&format!(
        "UPDATE pp_audit_log SET id = id + 1000000 WHERE stream = {}",
        quoted(&moved.to_string())
    ));
    let trail = (op.trail)().unwrap();
    // The table order now ends with the first process's grant.
    assert_eq!(trail.last().unwrap().stream(), Some(moved));
    let public = keyring.checkpoint_signer().unwrap().public_key();
    assert!(verify_public(&trail, &public, &outside.load().unwrap()).is_fully_vouched());

    let after = Custodian::builder()
        .keyring(keyring.clone())
        .checkpoint_store(outside.clone())
        .build()
        .unwrap();
    let verified = after.verify_trail(trail).unwrap();
    assert!(verified.is_fully_vouched());
    let order: Vec<_> = verified
        .events()
        .iter()
        .map(|e| (e.stream(), e.action()))
        .collect();
    assert_eq!(order[0], (Some(moved), Action::ConsentGranted), "{order:?}");
    assert_eq!(after.consents().restore(&verified).unwrap(), 3);
    assert!(
        !after.consents().is_granted::<Newsletter>(ada),
        "a renumbered grant undid the withdrawal"
    );
}

/// A1 host code cuts a disclosure from the trail it hands the custodian
/// (attack 7): the custodian takes its trusted checkpoint from its own
/// checkpoint store, so the cut trail is refused; a checkpoint the caller
/// builds from an entry's public fields is taken only by the explicitly
/// unverified path, whose report says it is not vouched for. `new_sink`
/// signs into `outside`.
pub fn a1_a_disclosure_cut_by_the_caller_is_refused<W: BatchWriter + 'static>(
    op: &Operator<'_>,
    new_sink: impl Fn() -> AuditStreamSink<W>,
    keyring: &Arc<privacy_pledge::crypto::Keyring>,
    outside: &(impl privacy_pledge::audit::CheckpointStore + Clone + 'static),
) {
    use privacy_pledge::audit::{Checkpoint, TrailError};
    use privacy_pledge::Error;
    let sink = Arc::new(new_sink());
    let custodian = Custodian::builder()
        .keyring(keyring.clone())
        .audit(sink.clone())
        .checkpoint_store(outside.clone())
        .build()
        .unwrap();
    let info = info();
    let ada = info.subject();
    let row = custodian.seal(&info).unwrap();
    custodian.disclose(&info, &Mailer, |_| ()).unwrap();
    sink.sign_checkpoint().unwrap();
    let trail = (op.trail)().unwrap();
    assert_eq!(trail.last().unwrap().action(), Action::Disclose);

    let cut = trail[..trail.len() - 1].to_vec();
    assert!(matches!(
        custodian.verify_trail(cut.clone()),
        Err(Error::Untrusted(TrailError::Broken(_)))
    ));
    // What the cut entry chained from is the head of the cut trail: public.
    let removed = trail.last().unwrap();
    let built = Checkpoint::new(removed.seq() - 1, removed.chain().unwrap().prev);
    let unverified = custodian.verify_trail_unverified(cut, &built).unwrap();
    let report = custodian.subject_report(ada, &[&row], &unverified).unwrap();
    assert!(report.disclosures().is_empty());
    assert!(!report.is_fully_vouched());
    assert!(report.to_letter().contains("Caution"));

    // The report made from the store's own checkpoints shows the disclosure.
    sink.sign_checkpoint().unwrap();
    let verified = custodian
        .verify_trail_with(|| {
            (op.trail)()
                .map_err(|e| Error::Audit(privacy_pledge::audit::AuditError::new(e.to_string())))
        })
        .unwrap();
    let report = custodian.subject_report(ada, &[&row], &verified).unwrap();
    assert_eq!(report.disclosures().len(), 1);
    assert!(report.is_fully_vouched(), "{}", report.to_letter().as_str());
}
