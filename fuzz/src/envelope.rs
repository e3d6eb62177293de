//! `envelope`: arbitrary bytes as sealed envelopes, as bytes and as text.
//!
//! Every input is parsed as envelopes of several kinds and purposes, with
//! `Sealed::from_bytes` and (after lossy UTF-8 decoding) `Sealed::from_text`.
//! Properties: what parses re-encodes to the same envelope in both forms,
//! and what opens was sealed by the custodian, for the subject it names.
//!
//! Two custodians hold the keys of the frozen vectors in
//! `tests/vectors/envelope_v1.json` and `envelope_v2.json` (format versions
//! 1 and 2), so corpus entries made from those vectors get past key lookup
//! into authentication and decoding; every parse is offered to both.

use std::sync::OnceLock;

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

use super::common::Discard;

/// The frozen vectors of format version 1: keyring, wrapped data keys and
/// envelopes.
pub const VECTORS: &str = include_str!("../../tests/vectors/envelope_v1.json");

/// The frozen vectors of format version 2 (the same keyring and subjects,
/// other data keys).
pub const VECTORS_V2: &str = include_str!("../../tests/vectors/envelope_v2.json");

/// What one input did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Parses that succeeded (as bytes or as text, over every kind tried).
    pub parsed: usize,
    /// Opens that succeeded.
    pub opened: usize,
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap_or(0))
        .collect()
}

/// A custodian holding one vector file's keys, and the envelopes of that
/// file: the only envelopes ever made under those keys.
pub struct Holder {
    /// The custodian, at the vectors' collection date, with consent live
    /// for their subjects.
    pub custodian: Custodian,
    /// The file's envelopes, as bytes.
    pub envelopes: Vec<Vec<u8>>,
}

fn holder(vectors: &str) -> Holder {
    use base64::Engine as _;
    let file: serde_json::Value = serde_json::from_str(vectors).expect("vectors parse");
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
    let mut envelopes = Vec::new();
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
        let text = v["envelope"].as_str().unwrap_or("");
        envelopes.extend(
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(text)
                .ok(),
        );
    }
    let custodian = Custodian::builder()
        .keyring(keyring)
        .key_store(store)
        .audit(Discard)
        .clock(FixedClock::new(Timestamp::from_unix_seconds(
            collected + 86_400,
        )))
        .build()
        .expect("custodian");
    for s in subjects {
        let _ = custodian.consents().grant::<Newsletter>(s);
        let _ = custodian.consents().grant::<Promotion>(s);
        let _ = custodian.consents().grant::<Personalization>(s);
    }
    Holder {
        custodian,
        envelopes,
    }
}

/// The holders of the version 1 and version 2 vectors' keys.
pub fn holders() -> &'static [Holder; 2] {
    static H: OnceLock<[Holder; 2]> = OnceLock::new();
    H.get_or_init(|| [holder(VECTORS), holder(VECTORS_V2)])
}

fn try_one<T: DataKind, P: Purpose>(
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
    for h in holders() {
        match h.custodian.open(&sealed) {
            Ok(info) => {
                assert!(
                    info.subject() == sealed.subject(),
                    "opened for another subject"
                );
                assert!(
                    h.envelopes.iter().any(|e| e == sealed.as_bytes()),
                    "an envelope the custodian never made opened"
                );
                out.opened += 1;
            }
            Err(e) => {
                let _ = (e.to_string(), format!("{e:?}"));
            }
        }
    }
}

fn try_kind<T: DataKind, P: Purpose>(data: &[u8], text: &str, out: &mut Outcome) {
    try_one(Sealed::<T, P>::from_bytes(data), out);
    try_one(Sealed::<T, P>::from_text(text), out);
}

/// Parses `data` as envelopes of several kinds and purposes (as bytes, and as
/// text after lossy UTF-8 decoding) and opens whatever parses. Panics only on
/// a broken invariant.
pub fn check(data: &[u8]) -> Outcome {
    let text = String::from_utf8_lossy(data);
    let mut out = Outcome::default();
    try_kind::<EmailAddress, Transaction>(data, &text, &mut out);
    try_kind::<FullName, Support>(data, &text, &mut out);
    try_kind::<PostalAddress, Correspondence>(data, &text, &mut out);
    try_kind::<PhoneNumber, ServiceNotice>(data, &text, &mut out);
    try_kind::<PurchaseRecord, Newsletter>(data, &text, &mut out);
    try_kind::<PaymentToken, Promotion>(data, &text, &mut out);
    try_kind::<EmailAddress, Personalization>(data, &text, &mut out);
    try_kind::<FullName, Improvement>(data, &text, &mut out);
    try_kind::<PhoneNumber, Support>(data, &text, &mut out);
    try_kind::<PostalAddress, Transaction>(data, &text, &mut out);
    try_kind::<PurchaseRecord, Support>(data, &text, &mut out);
    out
}
