//! `store::CheckpointGuard`: the audit stream's head signed when the guard
//! is dropped — at the end of a scope, on an early return, while a panic
//! unwinds — so a verifier with the public key vouches for every entry the
//! process committed (A4); `finish` hands the checkpoint over and disarms;
//! a signature that cannot be kept on drop is counted, never lost silently.
//! Signers on several threads (a guard, commits reaching the count, the
//! built-in log's `sign_checkpoint`) save one at a time and never put an
//! older checkpoint over a newer one; a checkpoint directory takes
//! concurrent saves whole.

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

/// Checkpoints in memory, or failing on demand; every save's sequence
/// number in order, and how many saves found another still running (each
/// takes a file's write and sync, 2 ms, when `slow`).
#[derive(Default)]
struct Kept {
    saved: Mutex<Vec<SignedCheckpoint>>,
    saves: AtomicUsize,
    fail: AtomicBool,
    slow: bool,
    seqs: Mutex<Vec<u64>>,
    busy: AtomicBool,
    overlaps: AtomicUsize,
}

impl Kept {
    fn slow() -> Self {
        Kept {
            slow: true,
            ..Kept::default()
        }
    }

    /// The sequence numbers saved, after checking that no save overlapped
    /// another and none went back.
    fn saved_one_at_a_time_in_order(&self) -> Vec<u64> {
        let seqs = self.seqs.lock().unwrap().clone();
        assert_eq!(self.overlaps.load(Ordering::SeqCst), 0, "saves overlapped");
        assert!(
            seqs.windows(2).all(|w| w[0] <= w[1]),
            "an older checkpoint was saved over a newer one: {seqs:?}"
        );
        seqs
    }
}

impl CheckpointStore for Kept {
    fn save(&self, checkpoint: &SignedCheckpoint) -> Result<(), AuditError> {
        if self.fail.load(Ordering::SeqCst) {
            return Err(AuditError::new("test: the checkpoint store is down"));
        }
        if self.busy.swap(true, Ordering::SeqCst) {
            self.overlaps.fetch_add(1, Ordering::SeqCst);
        }
        if self.slow {
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        self.saves.fetch_add(1, Ordering::SeqCst);
        self.seqs
            .lock()
            .unwrap()
            .push(checkpoint.checkpoint().seq());
        let mut saved = self.saved.lock().unwrap();
        saved.retain(|c| c.stream() != checkpoint.stream());
        saved.push(*checkpoint);
        self.busy.store(false, Ordering::SeqCst);
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

/// A5 (threads of one process) against A4's view: a guard or shutdown
/// signing (`sign_checkpoint`) while other threads' commits reach the
/// checkpoint count never saves at the same time as them (a file store
/// would write one file twice at once), and never puts an older checkpoint
/// of the stream over a newer one (the entries between would lose their
/// vouching).
#[test]
fn a5_signers_on_several_threads_save_one_at_a_time_and_never_go_back() {
    let keyring = Arc::new(Keyring::generate().unwrap());
    let store = SqliteStore::open_in_memory().unwrap();
    let watched = Arc::new(Kept::slow());
    let sink = Arc::new(
        store
            .audit_sink(keyring.audit_key())
            .unwrap()
            .with_checkpoints(keyring.checkpoint_signer().unwrap(), watched.clone(), 3),
    );
    let custodian = Arc::new(
        Custodian::builder()
            .keyring(keyring)
            .audit(sink.clone())
            .build()
            .unwrap(),
    );
    std::thread::scope(|s| {
        for _ in 0..3 {
            let custodian = custodian.clone();
            s.spawn(move || {
                for _ in 0..40 {
                    use_data(&custodian);
                }
            });
        }
        s.spawn(|| {
            for _ in 0..60 {
                sink.sign_checkpoint().unwrap();
            }
        });
    });
    let last = sink.sign_checkpoint().unwrap();
    let seqs = watched.saved_one_at_a_time_in_order();
    assert_eq!(seqs.last(), Some(&last.checkpoint().seq()));
    assert_eq!(sink.checkpoint_failures(), 0);
}

/// A5 (threads of one process, or two sinks sharing a directory): saves of
/// one stream's checkpoint to a `DirCheckpointStore` at the same moment
/// all succeed, a load meanwhile always finds a whole checkpoint, and the
/// newest saved is the one kept at the end — a late save of an older
/// checkpoint never hides it. The directory holds the stream's two slots
/// and its lock, no temporary file.
#[test]
fn a5_concurrent_saves_to_a_checkpoint_directory_never_clash() {
    use privacy_pledge::audit::{Checkpoint, DirCheckpointStore, StreamId};
    use privacy_pledge::time::Timestamp;

    let dir = std::env::temp_dir().join(format!("pp-cp-clash-{}", SubjectId::random()));
    let store = DirCheckpointStore::new(&dir).unwrap();
    let signer = Keyring::generate().unwrap().checkpoint_signer().unwrap();
    let stream = StreamId::random().unwrap();
    std::thread::scope(|s| {
        for t in 0..4u64 {
            let (store, signer) = (store.clone(), &signer);
            s.spawn(move || {
                for i in 1..=50u64 {
                    let head = Checkpoint::new(t * 1_000 + i, [t as u8; 32]);
                    store
                        .save(&signer.sign(stream, head, Timestamp::now()))
                        .unwrap();
                    let kept = store.load().unwrap();
                    assert_eq!(kept.len(), 1, "one whole checkpoint of the stream");
                }
            });
        }
    });
    let kept = store.load().unwrap();
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].checkpoint().seq(), 3_050, "the newest save kept");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    files.sort();
    assert_eq!(
        files,
        [
            format!("{stream}.0.ckpt"),
            format!("{stream}.1.ckpt"),
            format!("{stream}.lock")
        ],
        "no temporary file left behind"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A5 (threads of one process) on the custodian's built-in log: two
/// threads using data and signing its checkpoint at once save one at a
/// time, each no older than the one before.
#[test]
fn a5_built_in_log_signers_save_one_at_a_time_and_never_go_back() {
    let watched = Arc::new(Kept::slow());
    let custodian = Custodian::builder()
        .keyring(Keyring::generate().unwrap())
        .checkpoint_store(watched.clone())
        .build()
        .unwrap();
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                for _ in 0..30 {
                    use_data(&custodian);
                    custodian.sign_checkpoint().unwrap();
                }
            });
        }
    });
    let seqs = watched.seqs.lock().unwrap().clone();
    assert_eq!(seqs.len(), 60);
    assert_eq!(
        watched.overlaps.load(Ordering::SeqCst),
        0,
        "saves overlapped"
    );
    assert!(
        seqs.windows(2).all(|w| w[0] <= w[1]),
        "an older checkpoint was saved over a newer one: {seqs:?}"
    );
}

/// A child's part in a test that spawns this binary with `PP_CKPT_DIR`
/// set: saves checkpoints `PP_CKPT_FROM + 1 ..= PP_CKPT_FROM + 100` of
/// stream `PP_CKPT_STREAM` into that directory. Without it, does nothing.
#[test]
fn child_process_entry() {
    use privacy_pledge::audit::{Checkpoint, CheckpointSigner, DirCheckpointStore, StreamId};
    use privacy_pledge::time::Timestamp;

    let Ok(dir) = std::env::var("PP_CKPT_DIR") else {
        return;
    };
    let stream: StreamId = std::env::var("PP_CKPT_STREAM").unwrap().parse().unwrap();
    let from: u64 = std::env::var("PP_CKPT_FROM").unwrap().parse().unwrap();
    let store = DirCheckpointStore::new(dir).unwrap();
    let signer = CheckpointSigner::from_seed(&[3; 32]).unwrap();
    for seq in from + 1..=from + 100 {
        let head = Checkpoint::new(seq, [seq as u8; 32]);
        store
            .save(&signer.sign(stream, head, Timestamp::now()))
            .unwrap();
    }
}

/// A5 (processes sharing a checkpoint directory, a stream's saves from
/// several of them at once — a forked writer, a pid come back): every save
/// succeeds, every load meanwhile finds one whole checkpoint of the
/// stream, and the newest of all the processes' saves is the one kept.
#[test]
fn a5_processes_saving_one_stream_at_once_keep_the_newest_whole() {
    use privacy_pledge::audit::{DirCheckpointStore, StreamId};

    let dir = std::env::temp_dir().join(format!("pp-cp-procs-{}", SubjectId::random()));
    let store = DirCheckpointStore::new(&dir).unwrap();
    let stream = StreamId::random().unwrap();
    let mut children: Vec<_> = [0u64, 1_000, 2_000]
        .into_iter()
        .map(|from| {
            std::process::Command::new(std::env::current_exe().unwrap())
                .args(["--exact", "child_process_entry", "--test-threads=1"])
                .env("PP_CKPT_DIR", &dir)
                .env("PP_CKPT_STREAM", stream.to_string())
                .env("PP_CKPT_FROM", from.to_string())
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut loads = 0;
    while children.iter_mut().any(|c| c.try_wait().unwrap().is_none()) {
        let kept = store.load().unwrap();
        assert!(kept.len() <= 1, "one checkpoint of the stream: {kept:?}");
        loads += 1;
    }
    for mut c in children {
        assert!(c.wait().unwrap().success(), "a child's save failed");
    }
    let kept = store.load().unwrap();
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].checkpoint().seq(), 2_100, "the newest of all saves");
    assert!(loads > 0);
    std::fs::remove_dir_all(&dir).unwrap();
}
