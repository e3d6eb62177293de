//! The nonce pool is fork-safe: a child forked after the parent filled its
//! pool never seals with one of the parent's nonces (actor A5: a process of
//! the fleet that forks workers, as pre-fork servers do).
//!
//! AES-GCM under one key with a repeated nonce leaks the XOR of the two
//! plaintexts and lets the authentication key be recovered, so this is
//! tested with a real `fork`, the one place this crate's tests use `unsafe`.

#![cfg(unix)]

use std::collections::HashSet;

use privacy_pledge::data::EmailAddress;
use privacy_pledge::purpose::Transaction;
use privacy_pledge::{Custodian, PersonalInfo, SubjectId};

const SEALS: usize = 300;

fn nonce(envelope: &[u8]) -> [u8; 12] {
    // Header layout (see `Sealed`): the nonce is bytes 35..47.
    envelope[35..47].try_into().unwrap()
}

#[test]
fn a5_a_forked_child_never_reuses_the_parents_nonces() {
    let custodian = Custodian::in_memory();
    let subject = SubjectId::random();
    let info: PersonalInfo<EmailAddress, Transaction> =
        PersonalInfo::collect(subject, EmailAddress::parse("ada@example.com").unwrap());
    // One seal fills the pool (341 nonces) and caches the subject's key, so
    // parent and child both start from the same in-memory state.
    let first = custodian.seal(&info).unwrap().to_bytes();
    let out = std::env::temp_dir().join(format!(
        "privacy-pledge-fork-nonces-{}-{}",
        std::process::id(),
        SubjectId::random()
    ));

    // SAFETY: the child only seals with the custodian (its locks are free:
    // no other thread uses it), writes one file and leaves with `_exit`,
    // running no destructor and no test-harness code.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        let mut bytes = Vec::with_capacity(SEALS * 12);
        let mut ok = true;
        for _ in 0..SEALS {
            match custodian.seal(&info) {
                Ok(s) => bytes.extend_from_slice(&nonce(&s.to_bytes())),
                Err(_) => ok = false,
            }
        }
        let code = if ok && std::fs::write(&out, &bytes).is_ok() {
            0
        } else {
            1
        };
        // SAFETY: ends the child at once, as `fork` requires.
        unsafe { libc::_exit(code) };
    }
    let mut parent: HashSet<[u8; 12]> = HashSet::new();
    parent.insert(nonce(&first));
    for _ in 0..SEALS {
        assert!(parent.insert(nonce(&custodian.seal(&info).unwrap().to_bytes())));
    }
    let mut status = 0;
    // SAFETY: waits for the child forked above.
    let waited = unsafe { libc::waitpid(pid, &mut status, 0) };
    assert_eq!(waited, pid);
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "child failed"
    );
    let child = std::fs::read(&out).unwrap();
    let _ = std::fs::remove_file(&out);
    assert_eq!(child.len(), SEALS * 12);
    let reused = child
        .chunks_exact(12)
        .filter(|n| parent.contains(<&[u8; 12]>::try_from(*n).unwrap()))
        .count();
    assert_eq!(
        reused, 0,
        "the child sealed with {reused} of the parent's nonces"
    );
}
