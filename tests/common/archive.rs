//! Archiving the oldest segment of a stream behind a signed checkpoint, the
//! same scenario on every store: the rest verifies from that checkpoint with
//! the public key and with the audit key, the archive verifies on its own,
//! the missing start is reported without the base, and a checkpoint under
//! another key or a segment already gone archives nothing (A4: the auditor
//! holding only the public key and the archive).

use std::path::Path;
use std::sync::Arc;

use privacy_pledge::audit::{
    archive_digest, read_jsonl, verify_archive, verify_public, verify_streams,
    verify_streams_with_bases, ArchiveError, AuditEvent, CheckpointKey, CheckpointSigner,
    CheckpointStore, DirCheckpointStore, SignedCheckpoint, Tamper,
};
use privacy_pledge::crypto::Keyring;
use privacy_pledge::data::EmailAddress;
use privacy_pledge::purpose::Transaction;
use privacy_pledge::store::{AuditStreamSink, BatchWriter, StoreError};
use privacy_pledge::time::Timestamp;
use privacy_pledge::{Custodian, PersonalInfo, SubjectId};

/// Every scenario of this module as a test, each through `$test!` of the
/// including file (which opens its store): name, scenario, a name for its
/// database or directory, and how many events the sink signs a checkpoint
/// after.
macro_rules! every_scenario {
    ($test:ident) => {
        $test!(
            a4_an_archived_segment_and_the_rest_of_its_stream_both_verify
                => an_archived_segment_and_the_rest_of_its_stream_both_verify, "archive", 50
        );
        $test!(
            /// A2 deletes the first entry of a segment, then one inside it:
            /// archiving refuses it and moves nothing.
            a2_a_segment_missing_an_entry_is_never_archived
                => a_segment_missing_an_entry_is_never_archived, "archive_gap", 1000
        );
        $test!(
            /// A2 reshapes two rows' text; the archive still reads back and
            /// verifies.
            a2_an_archive_reads_back_whatever_shape_its_rows_were_in
                => an_archive_reads_back_whatever_shape_its_rows_were_in, "archive_reshaped", 1000
        );
    };
}
pub(crate) use every_scenario;

/// What the scenario needs of a store.
pub trait Archiving {
    /// The store's `archive`.
    fn archive(
        &self,
        up_to: &SignedCheckpoint,
        key: &CheckpointKey,
        out: &mut Vec<u8>,
    ) -> Result<usize, StoreError>;
    /// The store's `archive_after`.
    fn archive_after(
        &self,
        base: &SignedCheckpoint,
        up_to: &SignedCheckpoint,
        key: &CheckpointKey,
        out: &mut Vec<u8>,
    ) -> Result<usize, StoreError>;
    /// The store's `trail`.
    fn trail(&self) -> Result<Vec<AuditEvent>, StoreError>;
    /// A2: deletes the trail's entry `seq` by hand.
    fn delete_entry(&self, seq: i64);
    /// A2: reshapes the stored text of entries 2 and 3 without changing
    /// their events: entry 3 with a line break inside, entry 2 padded with
    /// spaces past `MAX_LINE_BYTES`.
    fn reshape_entries(&self);
}

/// A custodian over `sink` and a value it accessed `n` times (`n` events).
fn accessing<W: BatchWriter + 'static>(
    sink: &Arc<AuditStreamSink<W>>,
    n: usize,
) -> (Custodian, PersonalInfo<EmailAddress, Transaction>) {
    let custodian = Custodian::builder().audit(sink.clone()).build().unwrap();
    let info = PersonalInfo::collect(
        SubjectId::random(),
        EmailAddress::parse("ada@example.com").unwrap(),
    );
    for _ in 0..n {
        custodian.access(&info, |_| ()).unwrap();
    }
    (custodian, info)
}

/// 50 events, a checkpoint, 30 more and a clean shutdown through `sink`;
/// then the first 50 archived.
pub fn an_archived_segment_and_the_rest_of_its_stream_both_verify<W: BatchWriter + 'static>(
    keyring: &Arc<Keyring>,
    sink: impl FnOnce(CheckpointSigner, DirCheckpointStore) -> AuditStreamSink<W>,
    store: &dyn Archiving,
    dir: &Path,
) {
    let signer = keyring.checkpoint_signer().unwrap();
    let base_signer = keyring.checkpoint_signer().unwrap();
    let public = signer.public_key();
    let outside = DirCheckpointStore::new(dir).unwrap();
    let sink = Arc::new(sink(signer, outside.clone()));
    let (custodian, info) = accessing(&sink, 50);
    let at_50 = outside.load().unwrap()[0];
    assert_eq!(at_50.checkpoint().seq(), 50);
    for _ in 0..30 {
        custodian.access(&info, |_| ()).unwrap();
    }
    sink.sign_checkpoint().unwrap();

    // A checkpoint under another key archives nothing.
    let stranger = CheckpointSigner::from_seed(&[5; 32]).unwrap();
    assert!(store
        .archive(&at_50, &stranger.public_key(), &mut Vec::new())
        .is_err());
    assert_eq!(store.trail().unwrap().len(), 80);

    let mut archive = Vec::new();
    assert_eq!(store.archive(&at_50, &public, &mut archive).unwrap(), 50);
    // An ordinary checkpoint is no base, and naming a digest in one does
    // not make it one: the signature covers what kind it is.
    assert!(outside.save_base(&at_50).is_err());
    let json = serde_json::to_string(&at_50).unwrap();
    let dressed: SignedCheckpoint = serde_json::from_str(&json.replacen(
        "{",
        &format!("{{\"archive\":\"{}\",", "ab".repeat(32)),
        1,
    ))
    .unwrap();
    assert!(dressed.is_base());
    assert!(dressed.verify(&public).is_err());
    let base = base_signer.sign_base(
        at_50.stream(),
        at_50.checkpoint(),
        archive_digest(&archive),
        Timestamp::now(),
    );
    assert_eq!(base.verify(&public).unwrap().1, at_50.checkpoint());
    outside.save_base(&base).unwrap();
    let rest = store.trail().unwrap();
    assert_eq!(rest.len(), 30);
    assert_eq!(rest[0].seq(), 51);
    // Nothing is left to archive a second time.
    assert!(store.archive(&at_50, &public, &mut Vec::new()).is_err());

    let checkpoints = outside.load().unwrap();
    assert_eq!(checkpoints.len(), 2, "the base and the newest");
    let report = verify_public(&rest, &public, &checkpoints);
    assert!(report.is_fully_vouched(), "{report:?}");
    assert_eq!(report.streams[0].vouched_through, Some(80));
    // The keyed verifier, and a custodian's verified trail, start from the
    // base too.
    let trusted: Vec<_> = checkpoints
        .iter()
        .map(|c| c.verify(&public).unwrap())
        .collect();
    let bases: Vec<_> = checkpoints
        .iter()
        .filter(|c| c.is_base())
        .map(|c| c.verify(&public).unwrap())
        .collect();
    let reports = verify_streams_with_bases(&rest, &keyring.audit_key(), &trusted, &bases);
    assert_eq!(reports.len(), 1);
    assert_eq!(reports[0].result.unwrap().seq(), 80);
    assert_eq!(reports[0].vouched_through, Some(80));
    // …but not from an ordinary checkpoint.
    let reports = verify_streams(&rest, &keyring.audit_key(), &trusted);
    assert_eq!(reports[0].result.unwrap_err().reason, Tamper::Deleted);
    let verifier = Custodian::builder()
        .keyring(keyring.clone())
        .checkpoint_store(outside.clone())
        .audit(privacy_pledge::audit::MemoryAuditLog::new())
        .build()
        .unwrap();
    let trail = verifier.verify_trail(rest.clone()).unwrap();
    assert_eq!(trail.head().seq(), 80);
    assert!(trail.is_fully_vouched());
    // The archive verifies against its base, and only the genuine archive.
    let report = verify_archive(&archive, &public, &checkpoints).unwrap();
    assert!(report.is_fully_vouched(), "{report:?}");
    assert_eq!(report.streams[0].entries, 50);
    let mut altered = archive.clone();
    altered.truncate(archive.len() - 1);
    assert!(matches!(
        verify_archive(&altered, &public, &checkpoints),
        Err(ArchiveError::NoBase)
    ));
    assert!(matches!(
        verify_archive(
            &archive,
            &CheckpointSigner::from_seed(&[6; 32]).unwrap().public_key(),
            &checkpoints
        ),
        Err(ArchiveError::NoBase)
    ));
    let archived = read_jsonl(&archive[..]).unwrap();
    assert_eq!(archived.len(), 50);
    // Without the base, the missing start of the stream is reported.
    let newest: Vec<_> = checkpoints.into_iter().filter(|c| !c.is_base()).collect();
    let report = verify_public(&rest, &public, &newest);
    assert_eq!(
        report.streams[0].result.unwrap_err().reason,
        Tamper::Deleted
    );
    // The ordinary checkpoint at 50 does not start the stream either.
    let report = verify_public(&rest, &public, &[at_50, newest[0]]);
    assert_eq!(
        report.streams[0].result.unwrap_err().reason,
        Tamper::Deleted
    );
    let verifier = Custodian::builder()
        .keyring(keyring.clone())
        .checkpoint_store(privacy_pledge::audit::MemoryCheckpointStore::new())
        .audit(privacy_pledge::audit::MemoryAuditLog::new())
        .build()
        .unwrap();
    assert!(verifier.verify_trail(rest.clone()).is_err());

    // The next segment (51–80) starts after the base, not at seq 1: without
    // the base it is refused, from the base it moves, and its archive
    // verifies against the base signed over it.
    let at_80 = newest[0];
    assert_eq!(at_80.checkpoint().seq(), 80);
    assert!(store.archive(&at_80, &public, &mut Vec::new()).is_err());
    assert!(
        store
            .archive_after(&at_50, &at_80, &public, &mut Vec::new())
            .is_err(),
        "an ordinary checkpoint is no base"
    );
    assert_eq!(store.trail().unwrap().len(), 30);
    let mut second = Vec::new();
    assert_eq!(
        store
            .archive_after(&base, &at_80, &public, &mut second)
            .unwrap(),
        30
    );
    assert!(store.trail().unwrap().is_empty());
    let base_80 = base_signer.sign_base(
        at_80.stream(),
        at_80.checkpoint(),
        archive_digest(&second),
        Timestamp::now(),
    );
    outside.save_base(&base_80).unwrap();
    let checkpoints = outside.load().unwrap();
    let report = verify_archive(&second, &public, &checkpoints).unwrap();
    assert!(report.is_fully_vouched(), "{report:?}");
    assert_eq!(report.streams[0].entries, 30);
}

/// A stream of `n` accesses through `sink` (made with a checkpoint signer
/// of `keyring` and a checkpoint directory at `dir`), signed at its head:
/// the public key, the directory and the head.
fn signed_stream<W: BatchWriter + 'static>(
    keyring: &Arc<Keyring>,
    sink: impl FnOnce(CheckpointSigner, DirCheckpointStore) -> AuditStreamSink<W>,
    dir: &Path,
    n: usize,
) -> (CheckpointKey, DirCheckpointStore, SignedCheckpoint) {
    let signer = keyring.checkpoint_signer().unwrap();
    let public = signer.public_key();
    let outside = DirCheckpointStore::new(dir).unwrap();
    let sink = Arc::new(sink(signer, outside.clone()));
    accessing(&sink, n);
    let head = sink.sign_checkpoint().unwrap();
    assert_eq!(head.checkpoint().seq(), n as u64);
    (public, outside, head)
}

/// A2 (the database operator) deletes entries of a segment before it is
/// archived, the first one or one inside: the verifier reports it, and
/// `archive` must refuse the segment and move nothing — a base signed over
/// what it would have written would make the deletion verify as intact.
pub fn a_segment_missing_an_entry_is_never_archived<W: BatchWriter + 'static>(
    keyring: &Arc<Keyring>,
    sink: impl FnOnce(CheckpointSigner, DirCheckpointStore) -> AuditStreamSink<W>,
    store: &dyn Archiving,
    dir: &Path,
) {
    let (public, outside, at_10) = signed_stream(keyring, sink, dir, 10);
    for (deleted, left) in [(1, 9), (5, 8)] {
        store.delete_entry(deleted);
        let report = verify_public(&store.trail().unwrap(), &public, &outside.load().unwrap());
        assert!(!report.is_intact(), "{report:?}");
        let mut out = Vec::new();
        assert!(store.archive(&at_10, &public, &mut out).is_err());
        assert_eq!(store.trail().unwrap().len(), left, "nothing moved");
    }
}

/// A2 reshapes the stored text of two vouched entries without changing
/// their events (a line break inside one, the other padded past the line
/// limit): the trail still verifies, fully vouched. The archive holds the
/// events as the crate writes them, not the rows' text, so the archive the
/// base is signed over verifies — the only copy of those entries once they
/// leave the table.
pub fn an_archive_reads_back_whatever_shape_its_rows_were_in<W: BatchWriter + 'static>(
    keyring: &Arc<Keyring>,
    sink: impl FnOnce(CheckpointSigner, DirCheckpointStore) -> AuditStreamSink<W>,
    store: &dyn Archiving,
    dir: &Path,
) {
    let (public, outside, at_5) = signed_stream(keyring, sink, dir, 5);
    store.reshape_entries();
    let report = verify_public(&store.trail().unwrap(), &public, &outside.load().unwrap());
    assert!(report.is_fully_vouched(), "{report:?}");

    let mut out = Vec::new();
    assert_eq!(store.archive(&at_5, &public, &mut out).unwrap(), 5);
    let base = keyring.checkpoint_signer().unwrap().sign_base(
        at_5.stream(),
        at_5.checkpoint(),
        archive_digest(&out),
        Timestamp::now(),
    );
    outside.save_base(&base).unwrap();
    assert!(
        store.trail().unwrap().is_empty(),
        "the segment left the table"
    );
    assert_eq!(read_jsonl(&out[..]).unwrap().len(), 5);
    let checked = verify_archive(&out, &public, &outside.load().unwrap()).unwrap();
    assert!(checked.is_fully_vouched());
}
