//! Known-answer vectors that pin the audit chain's format.
//!
//! The literals below are frozen format vectors: they were computed once by
//! this crate's own chain code and are kept here so that any change to the
//! canonical encoding, the MAC construction, the key derivation or the JSON
//! form of an event shows up as a failing test. A change that breaks them is
//! a format change: logs written before it no longer verify, so it needs a new
//! schema version and a migration note, not new literals.

#[path = "common/recipients.rs"]
mod recipients;
use recipients::Stripe;

use std::sync::Arc;

use privacy_pledge::audit::{
    verify, AuditEvent, AuditKey, ChainedAuditLog, Checkpoint, MemoryAuditLog,
};
use privacy_pledge::crypto::Keyring;
use privacy_pledge::data::EmailAddress;
use privacy_pledge::purpose::{Promotion, ServiceNotice, Transaction};
use privacy_pledge::time::{FixedClock, Timestamp};
use privacy_pledge::{Custodian, PersonalInfo, SubjectId};

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// One fixed sequence of operations, recorded under `key`.
fn fixed_trail(key: AuditKey) -> Result<(Vec<AuditEvent>, Checkpoint), Box<dyn std::error::Error>> {
    let log = Arc::new(ChainedAuditLog::new(key, MemoryAuditLog::new()));
    let clock = Arc::new(FixedClock::new(Timestamp::from_unix_seconds(1_530_316_800)));
    let custodian = Custodian::builder()
        .clock(clock.clone())
        .audit(log.clone())
        .build()?;
    let subject = SubjectId::from(0x0123_4567_89ab_cdef_0011_2233_4455_6677_u128);

    let email: PersonalInfo<EmailAddress, Transaction> =
        custodian.collect(subject, EmailAddress::parse("ada@example.com")?)?;
    clock.advance_seconds(1);
    custodian.access(&email, |e| e.domain().len())?;
    clock.advance_seconds(1);
    custodian.disclose(&email, &Stripe, |e| e.domain().len())?;
    clock.advance_seconds(1);
    let _notice: PersonalInfo<EmailAddress, ServiceNotice> = custodian.repurpose(email.clone())?;
    clock.advance_seconds(1);
    custodian.consents().grant::<Promotion>(subject)?;
    clock.advance_seconds(1);
    custodian.consents().withdraw::<Promotion>(subject)?;
    clock.advance_seconds(1);
    let sealed = custodian.seal(&email)?;
    clock.advance_seconds(1);
    custodian.open(&sealed)?;
    clock.advance_seconds(1);
    custodian.erase(subject)?;
    clock.advance_seconds(1);
    // Refused and recorded as denied (R11).
    assert!(custodian.open(&sealed).is_err());
    Ok((log.inner().events(), log.checkpoint()))
}

/// The MAC of each entry of [`fixed_trail`] under the key `[7u8; 32]`, by seq.
const MACS: [(u64, &str); 10] = [
    (
        1,
        "5f97859b9504bde87e19f819445f10bb853594578fa75be36cb8ce837033b4a6",
    ),
    (
        2,
        "4820bd7a3d10c656f461f568b5a2068cc54894f25b881bdafb46ba3f0c34c774",
    ),
    (
        3,
        "40c62ad3c18ae0ed46341a65abb3a75978b3f07f4bcb0ec47478f438b710ab95",
    ),
    (
        4,
        "260ccb57db70d835f94696eabe8738cef09da0da50e99ad4d3119299b4b04a99",
    ),
    (
        5,
        "38ca6025b13711e36abfd1811d7485342fb0515d9479a050bbccba0f7405ed31",
    ),
    (
        6,
        "14e24784fc7fb06d0f7f39e4958a165928ee5cf4297cd4f4e392aa91cfd90069",
    ),
    (
        7,
        "d6b6af8c6be6a14516dab93e2e65580de86eecca5958595679550b1b07402094",
    ),
    (
        8,
        "39ea5e5fec0e4e9730f6b2944865d75f765a763355f4c43c55d4974dd4d86167",
    ),
    (
        9,
        "dc69344d31cccce97e3b12d61e7a65aa395b9c12eb0fd258f3a3a086d2f884e0",
    ),
    (
        10,
        "8dc58e552ef8ef26d243ab9eab95f4d7ff725833352ae8b09f89215994d4e05a",
    ),
];

/// The checkpoint of [`fixed_trail`] under the key `[7u8; 32]`.
const HEAD: &str = "10:8dc58e552ef8ef26d243ab9eab95f4d7ff725833352ae8b09f89215994d4e05a";

/// The checkpoint of [`fixed_trail`] under the audit key a [`Keyring`] derives
/// from the master secret `[9u8; 32]` (pins the derivation the verifier uses).
const HEAD_FROM_MASTER: &str =
    "10:7de5d924905aa9af375c6fed9bb83abab538f6f2db7af87c308414e147819f7e";

/// Entry 3 (a disclosure) and entry 10 (a refused open) as JSON lines.
const LINE_3: &str = r#"{"v":1,"seq":3,"time":1530316802000000000,"subject":"0123456789abcdef0011223344556677","kind":"EmailAddress","purpose":"Transaction","action":"disclose","outcome":"allowed","rule":"R5","recipient":{"name":"Stripe","role":"Processor"},"chain":{"prev":"4820bd7a3d10c656f461f568b5a2068cc54894f25b881bdafb46ba3f0c34c774","mac":"40c62ad3c18ae0ed46341a65abb3a75978b3f07f4bcb0ec47478f438b710ab95"}}"#;
const LINE_10: &str = r#"{"v":1,"seq":10,"time":1530316809000000000,"subject":"0123456789abcdef0011223344556677","kind":"EmailAddress","purpose":"Transaction","action":"open","outcome":"denied","rule":"R11","chain":{"prev":"dc69344d31cccce97e3b12d61e7a65aa395b9c12eb0fd258f3a3a086d2f884e0","mac":"8dc58e552ef8ef26d243ab9eab95f4d7ff725833352ae8b09f89215994d4e05a"}}"#;

#[test]
fn chain_macs_match_the_frozen_vectors() {
    let (events, head) = fixed_trail(AuditKey::from_bytes([7u8; 32])).unwrap();
    let got: Vec<(u64, String)> = events
        .iter()
        .map(|e| (e.seq(), hex(&e.chain().expect("chained").mac)))
        .collect();
    let want: Vec<(u64, String)> = MACS.iter().map(|(s, m)| (*s, m.to_string())).collect();
    assert_eq!(got, want);
    assert_eq!(head.to_string(), HEAD);
    // Each entry links to the one before it; the first to all zeros.
    let mut prev = [0u8; 32];
    for e in &events {
        assert_eq!(e.chain().unwrap().prev, prev);
        prev = e.chain().unwrap().mac;
    }
}

#[test]
fn checkpoint_matches_under_the_keyring_derived_audit_key() {
    let keyring = Keyring::from_master([9u8; 32], [1]).unwrap();
    let (events, head) = fixed_trail(keyring.audit_key()).unwrap();
    assert_eq!(head.to_string(), HEAD_FROM_MASTER);
    // The audit key depends on the master secret only, not on KEK versions.
    let rotated = Keyring::from_master([9u8; 32], [1, 2, 3]).unwrap();
    assert_eq!(
        verify(&events, &rotated.audit_key(), None)
            .unwrap()
            .to_string(),
        HEAD_FROM_MASTER
    );
}

#[test]
fn json_lines_match_the_frozen_vectors() {
    let (events, _) = fixed_trail(AuditKey::from_bytes([7u8; 32])).unwrap();
    assert_eq!(serde_json::to_string(&events[2]).unwrap(), LINE_3);
    assert_eq!(serde_json::to_string(&events[9]).unwrap(), LINE_10);
}

#[test]
fn frozen_lines_parse_and_verify_as_a_chain_suffix() {
    // A verifier reading only stored text gets back the same events.
    let e3: AuditEvent = serde_json::from_str(LINE_3).unwrap();
    let e10: AuditEvent = serde_json::from_str(LINE_10).unwrap();
    let (events, head) = fixed_trail(AuditKey::from_bytes([7u8; 32])).unwrap();
    assert_eq!(e3, events[2]);
    assert_eq!(e10, events[9]);
    assert_eq!(serde_json::to_string(&e3).unwrap(), LINE_3);
    let trusted: Checkpoint = HEAD.parse().unwrap();
    assert_eq!(head, trusted);
    assert_eq!(
        verify(&events, &AuditKey::from_bytes([7u8; 32]), Some(&trusted)),
        Ok(trusted)
    );
    // The same entries under any other key do not verify.
    assert!(verify(&events, &AuditKey::from_bytes([8u8; 32]), None).is_err());
}
