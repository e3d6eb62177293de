//! The nonce pool is fork-safe: a child forked after the parent filled its
//! pool never seals with one of the parent's nonces (actor A5: a process of
//! the fleet that forks workers, as pre-fork servers do).
//!
//! AES-GCM under one key with a repeated nonce leaks the XOR of the two
//! plaintexts and lets the authentication key be recovered, so this is
//! tested with a real `fork`, the one place this crate's tests use `unsafe`.
//!
//! Children are made three ways: libc's `fork` (which runs `pthread_atfork`
//! handlers), a raw `clone` system call (which runs none, as `_Fork` and
//! `clone` wrappers do not), and a fork of a fork. Each must be detected
//! however the child came to be, so a detection resting on fork handlers
//! alone would fail here.

#![cfg(unix)]

use std::collections::HashSet;
use std::sync::Mutex;

use privacy_pledge::data::EmailAddress;
use privacy_pledge::purpose::Transaction;
use privacy_pledge::{Custodian, PersonalInfo, SubjectId};

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
            Ok(Some(nonces)) if std::fs::write(&out, nonces.concat()).is_ok() => 0,
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
        .chunks_exact(12)
        .map(|n| n.try_into().unwrap())
        .collect()
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
