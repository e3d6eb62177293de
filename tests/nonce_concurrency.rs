//! Nonces under concurrency: many threads sealing through one custodian never
//! draw the same nonce, and no key generation carries more seals than the
//! message limit allows.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;

use privacy_pledge::audit::{AuditError, AuditEvent, AuditSink};
use privacy_pledge::data::EmailAddress;
use privacy_pledge::purpose::Transaction;
use privacy_pledge::{Custodian, PersonalInfo, SubjectId};

const THREADS: usize = 8;
const PER_THREAD: usize = 12_500;
/// Bytes 35..47 of a v1 envelope.
const NONCE: core::ops::Range<usize> = 35..47;

/// Counts events, so the test can check every seal was audited, without
/// keeping 100,000 events in memory.
#[derive(Default)]
struct Counting(AtomicU64);
impl AuditSink for Counting {
    fn record(&self, _: &AuditEvent) -> Result<(), AuditError> {
        self.0.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// Seals `PER_THREAD` values on each of `THREADS` threads, spreading them
/// over `subjects` (shared by all threads), and returns (key id, nonce) pairs
/// per subject.
fn seal_everywhere(
    custodian: &Arc<Custodian>,
    subjects: &[SubjectId],
) -> Vec<(SubjectId, u32, [u8; 12])> {
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let custodian = custodian.clone();
            let subjects = subjects.to_vec();
            thread::spawn(move || {
                let mut out = Vec::with_capacity(PER_THREAD);
                for i in 0..PER_THREAD {
                    let subject = subjects[(i + t) % subjects.len()];
                    let info: PersonalInfo<EmailAddress, Transaction> = PersonalInfo::collect(
                        subject,
                        EmailAddress::parse("ada@example.com").unwrap(),
                    );
                    let sealed = custodian.seal(&info).unwrap();
                    let nonce: [u8; 12] = sealed.as_bytes()[NONCE].try_into().unwrap();
                    out.push((subject, sealed.key_id(), nonce));
                }
                out
            })
        })
        .collect();
    handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect()
}

#[test]
fn no_nonce_repeats_across_threads() {
    let sink = Arc::new(Counting::default());
    let custodian = Arc::new(Custodian::builder().audit(sink.clone()).build().unwrap());
    // A few subjects shared by every thread: the same keys are used at once.
    let subjects: Vec<SubjectId> = (0..4).map(|_| SubjectId::random()).collect();
    let all = seal_everywhere(&custodian, &subjects);
    assert_eq!(all.len(), THREADS * PER_THREAD);
    assert!(all.len() >= 100_000);

    let mut seen = HashSet::with_capacity(all.len());
    for (_, _, nonce) in &all {
        assert!(seen.insert(*nonce), "nonce repeated: {nonce:02x?}");
    }
    // Not a constant or a counter stuck at zero.
    assert!(!seen.contains(&[0u8; 12]));
    assert_eq!(sink.0.load(Ordering::Relaxed), all.len() as u64);
}

#[test]
fn message_limit_holds_under_concurrency() {
    const LIMIT: u64 = 700;
    let custodian = Arc::new(
        Custodian::builder()
            .audit(Counting::default())
            .message_limit(LIMIT)
            .build()
            .unwrap(),
    );
    let subjects = [SubjectId::random(), SubjectId::random()];
    let all = seal_everywhere(&custodian, &subjects);

    let mut per_key: HashMap<(SubjectId, u32), u64> = HashMap::new();
    let mut seen = HashSet::new();
    for (subject, key_id, nonce) in &all {
        *per_key.entry((*subject, *key_id)).or_default() += 1;
        assert!(seen.insert(*nonce), "nonce repeated");
    }
    let worst = per_key.values().max().copied().unwrap_or(0);
    assert!(
        worst <= LIMIT,
        "a key sealed {worst} messages, limit {LIMIT}"
    );
    // 50,000 seals per subject at 700 per key: at least 72 generations each.
    for s in &subjects {
        let generations = per_key.keys().filter(|(k, _)| k == s).count() as u64;
        assert!(generations >= (all.len() as u64 / 2).div_ceil(LIMIT));
    }
}
