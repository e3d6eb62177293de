//! The decode-and-open logic behind the `envelope` fuzz target, shared with
//! the corpus replay test `tests/fuzz_corpus.rs` (which includes this file).
//!
//! The custodian holds the keys of the frozen vectors in
//! `tests/vectors/envelope_v1.json`, so corpus entries made from those
//! vectors get past key lookup into authentication and decoding.

use std::sync::OnceLock;

use privacy_pledge::audit::{AuditError, AuditEvent, AuditSink};
use privacy_pledge::crypto::{KeyStore, Keyring, MemoryKeyStore, StoredKey, Wrapped};
use privacy_pledge::data::{
    DataKind, EmailAddress, FullName, PaymentToken, PhoneNumber, PostalAddress, PurchaseRecord,
};
use privacy_pledge::purpose::{
    Correspondence, Improvement, Newsletter, Personalization, Promotion, Purpose, ServiceNotice,
    Support, Transaction,
};
use privacy_pledge::time::{FixedClock, Timestamp};
use privacy_pledge::{Custodian, Sealed, SubjectId};

/// The frozen vectors: keyring, wrapped data keys and envelopes.
pub const VECTORS: &str = include_str!("../../tests/vectors/envelope_v1.json");

/// What one input did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Parses that succeeded (as bytes or as text, over every kind tried).
    pub parsed: usize,
    /// Opens that succeeded.
    pub opened: usize,
}

/// Keeps nothing: fuzzing must not grow an in-memory log without bound.
struct Discard;
impl AuditSink for Discard {
    fn record(&self, _: &AuditEvent) -> Result<(), AuditError> {
        Ok(())
    }
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap_or(0))
        .collect()
}

/// A custodian holding the vectors' keys, at the vectors' collection date,
/// with consent live for their subjects.
pub fn custodian() -> &'static Custodian {
    static C: OnceLock<Custodian> = OnceLock::new();
    C.get_or_init(|| {
        let file: serde_json::Value = serde_json::from_str(VECTORS).expect("vectors parse");
        let master: [u8; 32] = unhex(file["keyring"]["master"].as_str().unwrap_or(""))
            .try_into()
            .expect("32-byte master");
        let versions = file["keyring"]["versions"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_u64())
            .map(|v| v as u32);
        let keyring = Keyring::from_master(master, versions).expect("keyring");
        let store = MemoryKeyStore::new();
        let mut subjects = Vec::new();
        let mut collected = 0;
        for v in file["vectors"].as_array().into_iter().flatten() {
            let subject: SubjectId = v["subject"]
                .as_str()
                .unwrap_or("")
                .parse()
                .expect("subject");
            let k = &v["stored_key"];
            let key = StoredKey {
                generation: k["generation"].as_u64().unwrap_or(0) as u32,
                wrapped: Wrapped {
                    kek_version: k["kek_version"].as_u64().unwrap_or(0) as u32,
                    bytes: unhex(k["wrapped"].as_str().unwrap_or("")),
                },
                uses: 0,
            };
            // Two vectors may share a key; the second insert is a conflict.
            let _ = store.insert(subject, key);
            subjects.push(subject);
            collected = v["collected"].as_u64().unwrap_or(0);
        }
        let c = Custodian::builder()
            .keyring(keyring)
            .key_store(store)
            .audit(Discard)
            .clock(FixedClock::new(Timestamp::from_unix_seconds(
                collected + 86_400,
            )))
            .build()
            .expect("custodian");
        for s in subjects {
            let _ = c.consents().grant::<Newsletter>(s);
            let _ = c.consents().grant::<Promotion>(s);
            let _ = c.consents().grant::<Personalization>(s);
        }
        c
    })
}

fn try_one<T: DataKind, P: Purpose>(
    c: &Custodian,
    parsed: Result<Sealed<T, P>, privacy_pledge::crypto::EnvelopeError>,
    out: &mut Outcome,
) {
    let sealed = match parsed {
        Ok(s) => s,
        Err(e) => {
            let _ = (e.to_string(), format!("{e:?}"));
            return;
        }
    };
    out.parsed += 1;
    // What parses round-trips exactly, in both forms.
    let again = Sealed::<T, P>::from_bytes(sealed.as_bytes()).expect("reparse of own bytes");
    assert!(again == sealed, "bytes do not round-trip");
    let again = Sealed::<T, P>::from_text(&sealed.to_text()).expect("reparse of own text");
    assert!(again == sealed, "text does not round-trip");
    let _ = format!("{sealed:?}");
    match c.open(&sealed) {
        Ok(info) => {
            assert!(
                info.subject() == sealed.subject(),
                "opened for another subject"
            );
            out.opened += 1;
        }
        Err(e) => {
            let _ = (e.to_string(), format!("{e:?}"));
        }
    }
}

fn try_kind<T: DataKind, P: Purpose>(c: &Custodian, data: &[u8], text: &str, out: &mut Outcome) {
    try_one(c, Sealed::<T, P>::from_bytes(data), out);
    try_one(c, Sealed::<T, P>::from_text(text), out);
}

/// Parses `data` as envelopes of several kinds and purposes (as bytes, and as
/// text after lossy UTF-8 decoding) and opens whatever parses. Panics only on
/// a broken invariant.
pub fn check(data: &[u8]) -> Outcome {
    let c = custodian();
    let text = String::from_utf8_lossy(data);
    let mut out = Outcome::default();
    try_kind::<EmailAddress, Transaction>(c, data, &text, &mut out);
    try_kind::<FullName, Support>(c, data, &text, &mut out);
    try_kind::<PostalAddress, Correspondence>(c, data, &text, &mut out);
    try_kind::<PhoneNumber, ServiceNotice>(c, data, &text, &mut out);
    try_kind::<PurchaseRecord, Newsletter>(c, data, &text, &mut out);
    try_kind::<PaymentToken, Promotion>(c, data, &text, &mut out);
    try_kind::<EmailAddress, Personalization>(c, data, &text, &mut out);
    try_kind::<FullName, Improvement>(c, data, &text, &mut out);
    try_kind::<PhoneNumber, Support>(c, data, &text, &mut out);
    out
}
