//! `store::CheckpointGuard`: the audit stream's head signed when the guard
//! is dropped — at the end of a scope, on an early return, while a panic
//! unwinds — so a verifier with the public key vouches for every entry the
//! process committed (A4); `finish` hands the checkpoint over and disarms;
//! a signature that cannot be kept on drop is counted, never lost silently.

#![forbid(unsafe_code)]

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use privacy_pledge::audit::{
    verify_public, AuditError, CheckpointKey, CheckpointStore, SignedCheckpoint,
};
use privacy_pledge::crypto::Keyring;
use privacy_pledge::data::EmailAddress;
use privacy_pledge::purpose::Transaction;
use privacy_pledge::store::sqlite::{SqliteAuditSink, SqliteStore};
use privacy_pledge::{Custodian, SubjectId};

/// Checkpoints in memory, or failing on demand.
#[derive(Default)]
struct Kept {
    saved: Mutex<Vec<SignedCheckpoint>>,
    saves: AtomicUsize,
    fail: AtomicBool,
}

impl CheckpointStore for Kept {
    fn save(&self, checkpoint: &SignedCheckpoint) -> Result<(), AuditError> {
        if self.fail.load(Ordering::SeqCst) {
            return Err(AuditError::new("test: the checkpoint store is down"));
        }
        self.saves.fetch_add(1, Ordering::SeqCst);
        let mut saved = self.saved.lock().unwrap();
        saved.retain(|c| c.stream() != checkpoint.stream());
        saved.push(*checkpoint);
        Ok(())
    }
    fn load(&self) -> Result<Vec<SignedCheckpoint>, AuditError> {
        Ok(self.saved.lock().unwrap().clone())
    }
}

struct Setup {
    store: SqliteStore,
    sink: Arc<SqliteAuditSink>,
    kept: Arc<Kept>,
    public_key: CheckpointKey,
    custodian: Custodian,
}

fn setup() -> Setup {
    let keyring = Arc::new(Keyring::generate().unwrap());
    let store = SqliteStore::open_in_memory().unwrap();
    let signer = keyring.checkpoint_signer().unwrap();
    let public_key = signer.public_key();
    let kept = Arc::new(Kept::default());
    let sink = Arc::new(
        store
            .audit_sink(keyring.audit_key())
            .unwrap()
            .with_checkpoints(signer, kept.clone(), 1_000),
    );
    let custodian = Custodian::builder()
        .keyring(keyring)
        .checkpoint_store(kept.clone())
        .audit(sink.clone())
        .build()
        .unwrap();
    Setup {
        store,
        sink,
        kept,
        public_key,
        custodian,
    }
}

/// Two audited events (collect, seal).
fn use_data(custodian: &Custodian) {
    let email = custodian
        .collect::<EmailAddress, Transaction>(
            SubjectId::random(),
            EmailAddress::parse("ada@example.com").unwrap(),
        )
        .unwrap();
    custodian.seal(&email).unwrap();
}

/// Entries in the trail, and how far the kept checkpoints vouch for it.
fn vouched(s: &Setup) -> (u64, Option<u64>) {
    let trail = s.store.trail().unwrap();
    let report = verify_public(&trail, &s.public_key, &s.kept.load().unwrap());
    assert!(report.is_intact(), "{report:?}");
    let stream = &report.streams[0];
    (trail.len() as u64, stream.vouched_through)
}

#[test]
fn a4_dropped_guard_signs_the_last_entry() {
    let s = setup();
    {
        let _guard = s.sink.checkpoint_guard();
        use_data(&s.custodian);
        assert_eq!(s.kept.saves.load(Ordering::SeqCst), 0, "nothing signed yet");
    }
    let (entries, vouched) = vouched(&s);
    assert!(entries >= 2);
    assert_eq!(vouched, Some(entries));
}

#[test]
fn a4_guard_signs_while_a_panic_unwinds() {
    let s = setup();
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _guard = s.sink.checkpoint_guard();
        use_data(&s.custodian);
        panic!("the host failed");
    }));
    assert!(panicked.is_err());
    let (entries, vouched) = vouched(&s);
    assert_eq!(vouched, Some(entries));
}

#[test]
fn finish_hands_the_checkpoint_over_and_disarms() {
    let s = setup();
    let guard = s.sink.checkpoint_guard();
    use_data(&s.custodian);
    let signed = guard.sign().unwrap();
    use_data(&s.custodian);
    let finished = guard.finish().unwrap();
    assert!(finished.checkpoint().seq() > signed.checkpoint().seq());
    assert_eq!(
        s.kept.saves.load(Ordering::SeqCst),
        2,
        "no third signature on drop"
    );
    let (entries, vouched) = vouched(&s);
    assert_eq!(vouched, Some(entries));
    assert_eq!(finished.checkpoint().seq(), entries);
    assert!(format!("{:?}", s.sink.checkpoint_guard()).contains("armed: true"));
}

#[test]
fn a_signature_that_cannot_be_kept_on_drop_is_counted() {
    let s = setup();
    let guard = s.sink.checkpoint_guard();
    use_data(&s.custodian);
    s.kept.fail.store(true, Ordering::SeqCst);
    assert!(guard.sign().is_err(), "sign reports it");
    assert_eq!(s.sink.checkpoint_failures(), 0);
    drop(guard);
    assert_eq!(s.sink.checkpoint_failures(), 1, "drop counts it");
}

/// The store's `verified_trail`: checkpoints loaded, trail read and
/// verified under the custodian's keys in one call; fully vouched once the
/// guard has signed, and refused once an entry is cut from the end (A2).
#[test]
fn verified_trail_is_vouched_to_the_end_and_refuses_a_cut() {
    let s = setup();
    let guard = s.sink.checkpoint_guard();
    use_data(&s.custodian);
    let unsigned = s.store.verified_trail(&s.custodian).unwrap();
    assert!(!unsigned.is_fully_vouched(), "nothing signed yet");
    guard.finish().unwrap();
    let signed = s.store.verified_trail(&s.custodian).unwrap();
    assert!(signed.is_fully_vouched());

    // A2 deletes the last entry: the signed checkpoint names it.
    s.store.with_connection(|c| {
        c.execute(
            "DELETE FROM pp_audit_log WHERE id = (SELECT MAX(id) FROM pp_audit_log)",
            [],
        )
        .unwrap()
    });
    let cut = s.store.verified_trail(&s.custodian);
    assert!(
        matches!(cut, Err(privacy_pledge::Error::Untrusted(_))),
        "{cut:?}"
    );
}
