//! The nonce pool is fork-safe: a child forked after the parent filled its
//! pool never seals with one of the parent's nonces (actor A5: a process of
//! the fleet that forks workers, as pre-fork servers do).
//!
//! AES-GCM under one key with a repeated nonce leaks the XOR of the two
//! plaintexts and lets the authentication key be recovered, so this is
//! tested with a real `fork`, one of the two places this crate's tests use
//! `unsafe` (the other: `freed_memory.rs`'s allocator).
//!
//! Children are made three ways: libc's `fork` (which runs `pthread_atfork`
//! handlers), a raw `clone` system call (which runs none, as `_Fork` and
//! `clone` wrappers do not), and a fork of a fork; and a grandchild is given
//! its dead grandparent's process id in a PID namespace, which no check of
//! the process id can tell from the grandparent. Nonces are synthetic (a
//! function of everything sealed), so none of this needs detecting.
//!
//! The keyed audit stream is tested the way an attacker would use a
//! repeated GMAC nonce: four processes tag one sequence number after one
//! fork point, with entries whose associated data XOR to zero. Under one
//! nonce the four tags would XOR to zero too (GHASH is linear and the four
//! nonce masks cancel), which is the first step of recovering the hash key.
//!
//! The file locks of the checkpoint directory and the freshness anchor are
//! tested here too, with children forked while a lock is held: the lock
//! belongs to the open file, which the child shares.
//!
//! So are the stores' connections: a child forked after a store opened
//! holds copies of the parent's sessions, and is refused every one of them
//! (its custodian's uses fail, as with a sink that cannot record), and
//! dropping them there never ends the parent's sessions — on SQLite and on
//! the PostgreSQL server `scripts/test` starts; and so is a PKCS#11
//! provider's use of its parent's sessions, on the SoftHSM2 token it sets
//! up.

#![cfg(unix)]

use std::collections::HashSet;
use std::sync::Mutex;

use std::sync::Arc;

use privacy_pledge::audit::{verify, AuditEvent, AuditKey, ChainedAuditLog};
use privacy_pledge::data::EmailAddress;
use privacy_pledge::purpose::Transaction;
use privacy_pledge::time::{FixedClock, Timestamp};
use privacy_pledge::{Custodian, PersonalInfo, SubjectId};

#[cfg(feature = "postgres")]
#[path = "common/pg.rs"]
mod pg;
#[cfg(feature = "sqlite")]
#[path = "common/tempdir.rs"]
mod tempdir;
#[cfg(feature = "pkcs11")]
#[path = "common/token.rs"]
mod token;

const SEALS: usize = 300;

/// Forks one at a time: a child made while another test's thread holds a
/// lock the child needs (the allocator's, say) could hang, and a raw `clone`
/// does not take libc's locks across the fork the way `fork` does.
static FORKS: Mutex<()> = Mutex::new(());

type Info = PersonalInfo<EmailAddress, Transaction>;

fn nonce(envelope: &[u8]) -> [u8; 12] {
    // Header layout (see `Sealed`): the nonce is bytes 37..49.
    envelope[37..49].try_into().unwrap()
}

/// `SEALS` nonces sealed by `custodian`, or `None` if a seal failed.
fn seal_nonces(custodian: &Custodian, info: &Info) -> Option<Vec<[u8; 12]>> {
    (0..SEALS)
        .map(|_| custodian.seal(info).ok().map(|s| nonce(s.as_bytes())))
        .collect()
}

fn custodian_and_info() -> (Custodian, Info) {
    let custodian = Custodian::in_memory();
    let info = PersonalInfo::collect(
        SubjectId::random(),
        EmailAddress::parse("ada@example.com").unwrap(),
    );
    (custodian, info)
}

#[derive(Clone, Copy, Debug)]
enum How {
    /// libc's `fork`.
    Fork,
    /// The `clone` system call itself, bypassing libc (Linux).
    #[cfg(target_os = "linux")]
    RawClone,
}

/// Runs `child` in a child process made `how`, and returns the nonces it
/// reports (written to a file, the child leaving with `_exit`).
fn in_child(how: How, child: impl FnOnce() -> Option<Vec<[u8; 12]>>) -> Vec<[u8; 12]> {
    in_child_bytes(how, || child().map(|n| n.concat()))
        .chunks_exact(12)
        .map(|n| n.try_into().unwrap())
        .collect()
}

/// Runs `child` in a child process made `how`, and returns the bytes it
/// reports (written to a file, the child leaving with `_exit`).
fn in_child_bytes(how: How, child: impl FnOnce() -> Option<Vec<u8>>) -> Vec<u8> {
    let out = std::env::temp_dir().join(format!(
        "privacy-pledge-fork-nonces-{}-{}",
        std::process::id(),
        SubjectId::random()
    ));
    let pid = match how {
        // SAFETY: the child only seals with custodians of its own test (their
        // locks are free: no other thread uses them, and `FORKS` keeps other
        // tests of this binary from forking or allocating meanwhile), writes
        // one file and leaves with `_exit`, running no destructor and no
        // test-harness code.
        How::Fork => unsafe { libc::fork() },
        // SAFETY: as for `fork`. With a null stack the child runs on a copy
        // of this one, as after `fork`; with `SIGCHLD` as its only flag it
        // shares nothing with this process.
        #[cfg(target_os = "linux")]
        How::RawClone => unsafe {
            libc::syscall(
                libc::SYS_clone,
                libc::SIGCHLD as libc::c_long,
                0 as libc::c_long,
                0 as libc::c_long,
                0 as libc::c_long,
                0 as libc::c_long,
            ) as libc::pid_t
        },
    };
    assert!(pid >= 0, "{how:?} failed");
    if pid == 0 {
        // A panic must not unwind into the test harness's copy in the child.
        let nonces = std::panic::catch_unwind(std::panic::AssertUnwindSafe(child));
        let code = match nonces {
            Ok(Some(bytes)) if std::fs::write(&out, &bytes).is_ok() => 0,
            _ => 1,
        };
        // SAFETY: ends the child at once, as `fork` requires.
        unsafe { libc::_exit(code) };
    }
    let mut status = 0;
    // SAFETY: waits for the child made above.
    let waited = unsafe { libc::waitpid(pid, &mut status, 0) };
    assert_eq!(waited, pid);
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "{how:?} child failed"
    );
    let bytes = std::fs::read(&out).unwrap();
    let _ = std::fs::remove_file(&out);
    bytes
}

/// Parent and a child made `how` from the same in-memory state: every nonce
/// of the child's is new to the parent.
fn child_never_reuses_the_parents_nonces(how: How) {
    let _one_at_a_time = FORKS.lock().unwrap_or_else(|e| e.into_inner());
    let (custodian, info) = custodian_and_info();
    // One seal fills the pool (341 nonces) and caches the subject's key, so
    // parent and child both start from the same in-memory state.
    let first = nonce(custodian.seal(&info).unwrap().as_bytes());
    let child = in_child(how, || seal_nonces(&custodian, &info));
    assert_eq!(child.len(), SEALS);
    let mut parent: HashSet<[u8; 12]> = HashSet::from([first]);
    for n in seal_nonces(&custodian, &info).unwrap() {
        assert!(parent.insert(n));
    }
    let reused = child.iter().filter(|n| parent.contains(*n)).count();
    assert_eq!(
        reused, 0,
        "a child made by {how:?} sealed with {reused} of the parent's nonces"
    );
    assert_eq!(child.iter().collect::<HashSet<_>>().len(), SEALS);
}

#[test]
fn a5_a_forked_child_never_reuses_the_parents_nonces() {
    child_never_reuses_the_parents_nonces(How::Fork);
}

/// A child made without libc's `fork` runs no `pthread_atfork` handler: the
/// pool must find out all the same.
#[cfg(target_os = "linux")]
#[test]
fn a5_a_child_cloned_without_libc_never_reuses_the_parents_nonces() {
    child_never_reuses_the_parents_nonces(How::RawClone);
}

/// A grandchild, forked by a child that refilled its pool: the three
/// processes' nonces are all distinct.
#[test]
fn a5_a_fork_of_a_fork_never_reuses_a_nonce() {
    let _one_at_a_time = FORKS.lock().unwrap_or_else(|e| e.into_inner());
    let (custodian, info) = custodian_and_info();
    let first = nonce(custodian.seal(&info).unwrap().as_bytes());
    let lineage = in_child(How::Fork, || {
        // In the child: fill a pool of its own, then fork again.
        let mut mine = seal_nonces(&custodian, &info)?;
        let grandchild = in_child(How::Fork, || seal_nonces(&custodian, &info));
        mine.extend(grandchild);
        mine.extend(seal_nonces(&custodian, &info)?);
        Some(mine)
    });
    assert_eq!(lineage.len(), 3 * SEALS);
    let mut all: HashSet<[u8; 12]> = HashSet::from([first]);
    all.extend(seal_nonces(&custodian, &info).unwrap());
    all.extend(lineage.iter().copied());
    assert_eq!(all.len(), 1 + 4 * SEALS, "a nonce was sealed twice");
}

/// A5, A1: a parent and three forked children tag the same sequence number
/// of the keyed audit stream they share, with entries that differ only in
/// the subject, chosen so that the four entries' associated data XOR to
/// zero. Under one nonce the four tags would XOR to zero; they do not.
#[test]
fn a5_a1_forked_writers_of_one_keyed_stream_never_share_a_nonce() {
    let _one_at_a_time = FORKS.lock().unwrap_or_else(|e| e.into_inner());
    let key = AuditKey::from_bytes([0x42; 32]);
    let log = Arc::new(ChainedAuditLog::in_memory(key.clone()));
    let clock = FixedClock::new(Timestamp::from_unix_seconds(1_800_000_000));
    let custodian = Custodian::builder()
        .audit(log.clone())
        .clock(clock)
        .build()
        .unwrap();
    let email = EmailAddress::parse("ada@example.com").unwrap();
    let access = |subject: u128| -> Option<AuditEvent> {
        let info: Info = PersonalInfo::collect(SubjectId::from(subject), email.clone());
        custodian.access(&info, |_| ()).ok()?;
        log.inner().events().pop()
    };
    // A few entries before the fork: the stream is under way.
    for s in 1..=3 {
        access(s).unwrap();
    }
    let subjects: [u128; 3] = [0x1111 << 64 | 7, 0x2222 << 32 | 9, 0x4444 << 96 | 5];
    let last = subjects[0] ^ subjects[1] ^ subjects[2];
    let mut entries: Vec<AuditEvent> = subjects
        .iter()
        .map(|&s| {
            let bytes = in_child_bytes(How::Fork, || serde_json::to_vec(&access(s)?).ok());
            serde_json::from_slice(&bytes).unwrap()
        })
        .collect();
    entries.push(access(last).unwrap());
    let mut xor = [0u8; 16];
    for e in &entries {
        assert_eq!(e.seq(), 4, "each tags the same number");
        assert_eq!(e.stream(), entries[0].stream(), "of the same stream");
        let chain = e.chain().unwrap();
        assert_eq!(chain.prev, entries[0].chain().unwrap().prev);
        for (x, m) in xor.iter_mut().zip(&chain.mac[..16]) {
            *x ^= m;
        }
    }
    assert_ne!(xor, [0u8; 16], "four tags under one GMAC nonce");
    // Each writer's own trail still verifies: here, the parent's.
    assert_eq!(verify(&log.inner().events(), &key, None).unwrap().seq(), 4);
}

/// Writes `text` to `path` (the child processes below report through files).
fn put(path: &std::path::Path, bytes: &[u8]) -> bool {
    std::fs::write(path, bytes).is_ok()
}

/// Forks with libc's `fork`; in the child runs `f` and leaves with its code.
///
/// # Safety
///
/// As for `fork` in a test: the child only runs `f`, which must not need a
/// lock another thread may hold, and leaves with `_exit`.
unsafe fn spawn(f: impl FnOnce() -> i32) -> libc::pid_t {
    let pid = libc::fork();
    if pid == 0 {
        let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or(101);
        libc::_exit(code);
    }
    pid
}

/// Waits for `pid` and returns its exit code (or -1).
fn wait(pid: libc::pid_t) -> i32 {
    let mut status = 0;
    // SAFETY: waits for a child of this process.
    let waited = unsafe { libc::waitpid(pid, &mut status, 0) };
    if waited == pid && libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -1
    }
}

/// A1, A5: pid reuse. In a new PID namespace, process P (pid 2) seals, forks
/// C, seals on and dies; C, which never sealed, has a grandchild GC given
/// pid 2 again (through `ns_last_pid`), so GC holds P's memory *and* P's
/// process id: a check of the process id cannot tell them apart. GC's
/// nonces are new to P all the same.
#[cfg(target_os = "linux")]
#[test]
fn a1_a5_a_grandchild_given_its_dead_grandparents_pid_never_reuses_a_nonce() {
    let _one_at_a_time = FORKS.lock().unwrap_or_else(|e| e.into_inner());
    let (custodian, info) = custodian_and_info();
    custodian.seal(&info).unwrap();
    let dir = std::env::temp_dir().join(format!(
        "privacy-pledge-pid-reuse-{}-{}",
        std::process::id(),
        SubjectId::random()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let (p_file, gc_file, skip_file) = (dir.join("p"), dir.join("gc"), dir.join("skip"));
    let report = in_child_bytes(How::Fork, || {
        // SAFETY: this process is single-threaded (a fresh fork).
        if unsafe { libc::unshare(libc::CLONE_NEWPID) } != 0 {
            let why = std::io::Error::last_os_error().to_string();
            return put(&skip_file, why.as_bytes()).then(Vec::new);
        }
        // The namespace's process 1: reaps every orphan until none is left.
        // SAFETY: single-threaded; the children below only seal, fork,
        // write files and leave with `_exit`.
        let init = unsafe {
            spawn(|| {
                let p = spawn(|| grandparent(&custodian, &info, &p_file, &gc_file));
                let _ = p;
                loop {
                    let mut status = 0;
                    if libc::waitpid(-1, &mut status, 0) < 0 {
                        return 0;
                    }
                }
            })
        };
        (wait(init) == 0).then(Vec::new)
    });
    assert!(report.is_empty());
    if let Ok(why) = std::fs::read_to_string(&skip_file) {
        eprintln!("SKIPPED: the kernel refused a PID namespace ({why})");
        let _ = std::fs::remove_dir_all(&dir);
        return;
    }
    let read = |path: &std::path::Path| -> (u32, HashSet<[u8; 12]>) {
        let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
        let pid = u32::from_be_bytes(bytes[..4].try_into().unwrap());
        let nonces = bytes[4..]
            .chunks_exact(12)
            .map(|n| n.try_into().unwrap())
            .collect();
        (pid, nonces)
    };
    let (p_pid, p_nonces) = read(&p_file);
    let (gc_pid, gc_nonces) = read(&gc_file);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(
        gc_pid, p_pid,
        "the grandchild was given its grandparent's pid"
    );
    assert_eq!((p_nonces.len(), gc_nonces.len()), (SEALS, SEALS));
    let reused = gc_nonces.intersection(&p_nonces).count();
    assert_eq!(
        reused, 0,
        "the grandchild sealed with {reused} of P's nonces"
    );
}

/// P: seals once, forks C, seals `SEALS` times, reports its pid and nonces,
/// and dies. C waits for P's death, then forks until a child is given P's
/// pid; that grandchild seals `SEALS` times and reports.
#[cfg(target_os = "linux")]
fn grandparent(
    custodian: &Custodian,
    info: &Info,
    p_file: &std::path::Path,
    gc_file: &std::path::Path,
) -> i32 {
    let Some(_) = seal_nonces(custodian, info) else {
        return 2;
    };
    let p_pid = std::process::id();
    // SAFETY: single-threaded; C only seals, forks, writes and `_exit`s.
    let c = unsafe {
        spawn(|| {
            // Wait until P has died (this process is then reparented).
            while std::os::unix::process::parent_id() == p_pid {
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
            for _ in 0..200 {
                // The next pid handed out in this namespace is P's.
                let _ = std::fs::write("/proc/sys/kernel/ns_last_pid", (p_pid - 1).to_string());
                let gc = spawn(|| {
                    if std::process::id() != p_pid {
                        return 3;
                    }
                    match seal_nonces(custodian, info) {
                        Some(n) => {
                            let report = [&p_pid.to_be_bytes()[..], &n.concat()].concat();
                            if put(gc_file, &report) {
                                0
                            } else {
                                1
                            }
                        }
                        None => 2,
                    }
                });
                match wait(gc) {
                    // P not reaped yet, or another pid came first: again.
                    3 => std::thread::sleep(std::time::Duration::from_millis(5)),
                    code => return code,
                }
            }
            4
        })
    };
    let _ = c;
    match seal_nonces(custodian, info) {
        Some(n) => {
            let report = [&p_pid.to_be_bytes()[..], &n.concat()].concat();
            if put(p_file, &report) {
                0
            } else {
                1
            }
        }
        None => 2,
    }
}

/// A checkpoint directory of one stream, for the lock tests below: saves
/// of checkpoint `seq` under one signer; removed when dropped, also when an
/// assertion fails first.
struct Saves {
    store: privacy_pledge::audit::DirCheckpointStore,
    stream: privacy_pledge::audit::StreamId,
    signer: privacy_pledge::audit::CheckpointSigner,
}

impl Saves {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("pp-fork-{name}-{}", SubjectId::random()));
        Saves {
            store: privacy_pledge::audit::DirCheckpointStore::new(dir).unwrap(),
            stream: privacy_pledge::audit::StreamId::random().unwrap(),
            signer: privacy_pledge::audit::CheckpointSigner::from_seed(&[3; 32]).unwrap(),
        }
    }

    /// Saves the stream's checkpoint `seq` (its head made up from `seq`).
    fn save(&self, seq: u64) -> Result<(), privacy_pledge::audit::AuditError> {
        use privacy_pledge::audit::{Checkpoint, CheckpointStore};
        let head = Checkpoint::new(seq, [seq as u8; 32]);
        self.store
            .save(&self.signer.sign(self.stream, head, Timestamp::now()))
    }

    /// The sequence numbers of the checkpoints a load returns.
    fn loaded(&self) -> Vec<u64> {
        use privacy_pledge::audit::CheckpointStore;
        let kept = self.store.load().unwrap();
        kept.iter().map(|c| c.checkpoint().seq()).collect()
    }
}

impl Drop for Saves {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(self.store.path());
    }
}

/// A5: a process of the fleet forks (a worker, a helper it runs) while
/// another of its threads holds one of the crate's file locks — a signed
/// checkpoint's save, a freshness anchor's append. The child shares the
/// locked open file for as long as it lives; were closing the file the
/// lock's only release, every later save and append in the parent would wait
/// for the child to exit. Forty children, forked while those go on in a
/// loop, each live 3 s; no save or append of the parent's takes 1 s.
#[test]
fn a5_a_child_forked_while_a_file_lock_is_held_never_holds_up_the_parent() {
    use privacy_pledge::freshness::{AnchorStore, DirAnchorStore};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::{Duration, Instant};

    let _one_at_a_time = FORKS.lock().unwrap_or_else(|e| e.into_inner());
    let saves = Saves::new("locks");
    // Beside the checkpoints, removed with them.
    let anchor = DirAnchorStore::new(saves.store.path().join("anchor")).unwrap();
    let stop = AtomicBool::new(false);
    let ((slowest, saved), children) = std::thread::scope(|s| {
        let saver = s.spawn(|| {
            let (mut slowest, mut seq, mut len) = (Duration::ZERO, 0u64, 0u64);
            while !stop.load(Ordering::Relaxed) {
                seq += 1;
                let started = Instant::now();
                saves.save(seq).unwrap();
                assert!(anchor.append(len, b"line\n").unwrap());
                len += 5;
                slowest = slowest.max(started.elapsed());
            }
            (slowest, seq)
        });
        let mut children = Vec::new();
        for _ in 0..40 {
            std::thread::sleep(Duration::from_millis(10));
            // SAFETY: the child only sleeps (no allocation, no lock) and
            // leaves with `_exit`.
            children.push(unsafe {
                spawn(|| {
                    std::thread::sleep(Duration::from_secs(3));
                    0
                })
            });
        }
        // The children live on; the parent saves and appends meanwhile.
        std::thread::sleep(Duration::from_millis(500));
        stop.store(true, Ordering::Relaxed);
        (saver.join().unwrap(), children)
    });
    for child in children {
        assert_eq!(wait(child), 0);
    }
    assert!(
        slowest < Duration::from_secs(1),
        "a save waited for a forked child: {slowest:?}"
    );
    assert!(saved > 40, "the parent went on saving: {saved} saves");
    assert_eq!(saves.loaded(), [saved]);
}

/// A5, the other direction: children forked while the parent saves a
/// stream's checkpoints go on saving the same stream themselves, each with
/// checkpoints of its own range, while the parent's saves go on. A child
/// shares the open file of a lock held at the fork; its own saves still take
/// the lock in turn with the parent's, every save of every process
/// succeeds, and the newest of all is the one kept.
#[test]
fn a5_children_forked_mid_save_save_the_same_stream_in_turn_with_the_parent() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    let _one_at_a_time = FORKS.lock().unwrap_or_else(|e| e.into_inner());
    let saves = Saves::new("saves");
    let stop = AtomicBool::new(false);
    let children = std::thread::scope(|s| {
        let saver = s.spawn(|| {
            let mut seq = 0;
            while !stop.load(Ordering::Relaxed) && seq < 900 {
                seq += 1;
                saves.save(seq).unwrap();
            }
        });
        let children: Vec<_> = (1..=5u64)
            .map(|k| {
                std::thread::sleep(Duration::from_millis(10));
                // SAFETY: the child saves checkpoints and leaves with
                // `_exit`. It allocates (glibc's `fork` leaves the child a
                // usable allocator) and takes no lock but the checkpoint
                // directory's file lock, which is what this tests.
                unsafe {
                    spawn(|| {
                        let all =
                            (k * 1_000 + 1..=k * 1_000 + 50).all(|seq| saves.save(seq).is_ok());
                        i32::from(!all)
                    })
                }
            })
            .collect();
        std::thread::sleep(Duration::from_millis(200));
        stop.store(true, Ordering::Relaxed);
        saver.join().unwrap();
        children
    });
    for child in children {
        assert_eq!(wait(child), 0, "a child's save failed");
    }
    assert_eq!(saves.loaded(), [5_050], "the newest of all saves");
}

/// A5: a child forked after the store at `url` opened (with a custodian
/// over it, a use recorded) is refused the parent's connections — the
/// host's SQL gets `StoreError::Forked`, the custodian's use fails because
/// it cannot be recorded — and drops its copy of everything; the parent's
/// store, custodian and sessions go on as before. `sessions` lists the
/// database's server sessions (none on SQLite): the same ones before and
/// after the child.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
fn forked_child_is_refused_the_parents_connections(
    url: String,
    checkpoints: &std::path::Path,
    sessions: impl Fn() -> Vec<i32>,
) {
    use privacy_pledge::crypto::Keyring;
    use privacy_pledge::purpose::Newsletter;
    use privacy_pledge::store::{Store, StoreConfig, StoreError};

    let _one_at_a_time = FORKS.lock().unwrap_or_else(|e| e.into_inner());
    let store = Store::open(&StoreConfig::new(url, checkpoints)).unwrap();
    let builder = Custodian::builder().keyring(Keyring::generate().unwrap());
    let (custodian, guard) = store.custodian(builder).unwrap();
    custodian
        .consents()
        .grant::<Newsletter>(SubjectId::random())
        .unwrap();
    let count = |store: &Store| {
        store.query("SELECT count(*) FROM pp_audit_log", &[], |r| {
            r.get::<i64>(0)
        })
    };
    assert_eq!(count(&store).unwrap(), [1]);
    let before = sessions();
    // Everything in one place the child can take and drop: the last handle
    // of the connections goes with it.
    let shared = Mutex::new(Some((custodian, guard, store)));
    let report = in_child_bytes(How::Fork, || {
        let (custodian, guard, store) = shared.lock().unwrap().take()?;
        let refused = matches!(count(&store), Err(StoreError::Forked));
        let unrecorded = custodian
            .consents()
            .grant::<Newsletter>(SubjectId::random())
            .is_err();
        drop((custodian, guard, store));
        Some(vec![u8::from(refused), u8::from(unrecorded)])
    });
    assert_eq!(report, [1, 1], "the child's SQL refused, its use not made");
    let (custodian, guard, store) = shared.into_inner().unwrap().unwrap();
    // A goodbye on a shared socket is read by the server at once; give it
    // time to end the session all the same.
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(sessions(), before, "the parent's sessions were ended");
    custodian
        .consents()
        .grant::<Newsletter>(SubjectId::random())
        .unwrap();
    assert_eq!(
        count(&store).unwrap(),
        [2],
        "only the parent's uses recorded"
    );
    drop((custodian, guard, store));
}

#[cfg(feature = "sqlite")]
#[test]
fn a5_a_child_forked_after_an_sqlite_store_opened_is_refused_its_connections() {
    let dir = tempdir::TempDir::named("fork", "sqlite-store");
    forked_child_is_refused_the_parents_connections(
        dir.sqlite_url("shop.sqlite"),
        &dir.path("checkpoints"),
        Vec::new,
    );
}

#[cfg(feature = "postgres")]
#[test]
fn a5_a_child_forked_after_a_postgres_store_opened_never_ends_the_parents_sessions() {
    use privacy_pledge::store::postgres::postgres;

    let Some(db) = pg::database("fork_store") else {
        return;
    };
    let checkpoints = std::env::temp_dir().join(format!(
        "privacy-pledge-fork-pg-{}-{}",
        std::process::id(),
        SubjectId::random()
    ));
    let mut admin = postgres::Client::connect(&db, postgres::NoTls).unwrap();
    let sessions = Mutex::new(move || {
        admin
            .query(
                "SELECT pid FROM pg_stat_activity
                 WHERE datname = current_database() AND pid <> pg_backend_pid()
                 ORDER BY pid",
                &[],
            )
            .unwrap()
            .iter()
            .map(|r| r.get::<_, i32>(0))
            .collect::<Vec<_>>()
    });
    forked_child_is_refused_the_parents_connections(db, &checkpoints, || {
        (sessions.lock().unwrap())()
    });
    let _ = std::fs::remove_dir_all(&checkpoints);
}

/// A5: host code forks inside `commit_request`'s `write` (a worker started
/// mid-request), and the child returns into the crate holding a copy of
/// the parent's connection, in the parent's open transaction. It must
/// neither commit nor roll back there: it gets `StoreError::Forked`, and
/// the parent's transaction commits whole, with the row written before the
/// fork and the one after.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
fn a_child_forked_inside_commit_request_commits_nothing(
    url: String,
    checkpoints: &std::path::Path,
) {
    use privacy_pledge::crypto::Keyring;
    use privacy_pledge::store::{Store, StoreConfig, StoreError};

    let _one_at_a_time = FORKS.lock().unwrap_or_else(|e| e.into_inner());
    let store = Store::open(&StoreConfig::new(url, checkpoints)).unwrap();
    let builder = Custodian::builder().keyring(Keyring::generate().unwrap());
    let (custodian, guard) = store.custodian(builder).unwrap();
    store
        .batch("CREATE TABLE rows (who TEXT NOT NULL)")
        .unwrap();
    let parent = std::process::id();
    let out = std::env::temp_dir().join(format!(
        "privacy-pledge-fork-commit-{parent}-{}",
        SubjectId::random()
    ));
    let mut child = None;
    let result = store.commit_request(
        &custodian,
        || Ok::<_, privacy_pledge::Error>(()),
        |tx, _| {
            tx.execute("INSERT INTO rows (who) VALUES ('parent')", &[])?;
            // SAFETY: the child only returns into the crate, writes one
            // file and leaves with `_exit` (below); `FORKS` keeps other
            // tests of this binary from forking or allocating meanwhile.
            let pid = unsafe { libc::fork() };
            assert!(pid >= 0);
            if pid == 0 {
                return Ok(());
            }
            assert_eq!(wait(pid), 0, "the child reported");
            child = Some(pid);
            tx.execute(
                "INSERT INTO rows (who) VALUES ('parent, after the fork')",
                &[],
            )?;
            Ok(())
        },
    );
    if std::process::id() != parent {
        let forked = u8::from(matches!(
            result,
            Err(privacy_pledge::Error::Store(StoreError::Forked))
        ));
        let code = if put(&out, &[forked]) { 0 } else { 1 };
        // SAFETY: ends the child at once, as `fork` requires.
        unsafe { libc::_exit(code) };
    }
    assert!(child.is_some());
    let report = std::fs::read(&out).unwrap();
    let _ = std::fs::remove_file(&out);
    assert_eq!(report, [1], "the child's commit_request was not refused");
    result.unwrap();
    let rows = store
        .query("SELECT who FROM rows ORDER BY who", &[], |r| {
            r.get::<String>(0)
        })
        .unwrap();
    assert_eq!(rows, ["parent", "parent, after the fork"]);
    drop((custodian, guard, store));
}

#[cfg(feature = "sqlite")]
#[test]
fn a5_a_child_forked_inside_commit_request_on_sqlite_commits_nothing() {
    let dir = tempdir::TempDir::named("fork", "sqlite-commit");
    a_child_forked_inside_commit_request_commits_nothing(
        dir.sqlite_url("shop.sqlite"),
        &dir.path("checkpoints"),
    );
}

#[cfg(feature = "postgres")]
#[test]
fn a5_a_child_forked_inside_commit_request_on_postgres_commits_nothing() {
    let Some(db) = pg::database("fork_commit") else {
        return;
    };
    let checkpoints = std::env::temp_dir().join(format!(
        "privacy-pledge-fork-pg-commit-{}-{}",
        std::process::id(),
        SubjectId::random()
    ));
    a_child_forked_inside_commit_request_commits_nothing(db, &checkpoints);
    let _ = std::fs::remove_dir_all(&checkpoints);
}

/// A5: host code forks inside `with_client`, in a transaction of its own
/// it has not ended. The child returns into the crate, which rolls back
/// what a closure leaves open — but not there: on the parent's session that
/// rollback would undo the parent's transaction. The child is refused
/// (`with_client` panics there, as documented), and the parent commits.
#[cfg(feature = "postgres")]
#[test]
fn a5_a_child_forked_inside_with_client_never_rolls_back_the_parents_transaction() {
    use privacy_pledge::store::postgres::PgStore;

    let Some(db) = pg::database("fork_with_client") else {
        return;
    };
    let _one_at_a_time = FORKS.lock().unwrap_or_else(|e| e.into_inner());
    let store = PgStore::connect(&db).unwrap();
    store
        .with_client(|c| c.batch_execute("CREATE TABLE rows (who TEXT NOT NULL)"))
        .unwrap();
    let parent = std::process::id();
    let mut child = None;
    let returned = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        store.with_client(|c| {
            c.batch_execute("BEGIN; INSERT INTO rows (who) VALUES ('parent')")
                .unwrap();
            // SAFETY: the child only returns into the crate and leaves with
            // `_exit` (below); `FORKS` keeps other tests of this binary
            // from forking meanwhile.
            let pid = unsafe { libc::fork() };
            assert!(pid >= 0);
            if pid != 0 {
                assert_eq!(wait(pid), 0, "the child was refused");
                child = Some(pid);
                c.batch_execute("COMMIT").unwrap();
            }
        })
    }));
    if std::process::id() != parent {
        // 0: refused (a panic); 1: `with_client` returned on the
        // parent's session.
        let code = if returned.is_err() { 0 } else { 1 };
        // SAFETY: ends the child at once, as `fork` requires.
        unsafe { libc::_exit(code) };
    }
    returned.unwrap();
    assert!(child.is_some());
    let rows = store
        .with_client(|c| c.query("SELECT who FROM rows", &[]))
        .unwrap();
    assert_eq!(rows.len(), 1, "the parent's transaction was rolled back");
}

/// A5: a child forked after a PKCS#11 provider opened may not use its
/// parent's sessions (PKCS#11 forbids it): wrapping there is refused, and
/// dropping the provider there leaves the parent's sessions working.
#[cfg(feature = "pkcs11")]
#[test]
fn a5_a_child_forked_after_a_pkcs11_provider_opened_is_refused_its_sessions() {
    use privacy_pledge::crypto::{KeyError, KeyProvider, Pkcs11Config, Pkcs11Provider};

    let Some(t) = token::token("fork_pkcs11") else {
        return;
    };
    let _one_at_a_time = FORKS.lock().unwrap_or_else(|e| e.into_inner());
    let config = Pkcs11Config::new(&t.module, &t.label, t.pin.clone().into())
        .label_prefix(&format!("t-fork-{}-", SubjectId::random()))
        .settle(std::time::Duration::from_millis(400));
    let hsm = Pkcs11Provider::open(config).unwrap();
    let context = b"subject and generation";
    let wrapped = hsm.wrap(&[7; 32], context).unwrap();
    let shared = Mutex::new(Some(hsm));
    let report = in_child_bytes(How::Fork, || {
        let hsm = shared.lock().unwrap().take()?;
        let refused = matches!(hsm.wrap(&[7; 32], context), Err(KeyError::Provider(_)))
            && matches!(hsm.unwrap(&wrapped, context), Err(KeyError::Provider(_)));
        drop(hsm);
        Some(vec![u8::from(refused)])
    });
    assert_eq!(report, [1], "the child used its parent's sessions");
    let hsm = shared.into_inner().unwrap().unwrap();
    assert_eq!(*hsm.unwrap(&wrapped, context).unwrap(), [7; 32]);
    assert!(hsm.wrap(&[8; 32], context).is_ok());
}
