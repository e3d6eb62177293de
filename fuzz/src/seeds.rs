//! Seed inputs for every target but `envelope` (whose seeds come from the
//! frozen vectors, see `tests/fuzz_corpus.rs`): valid inputs made by the
//! crate itself under the fixed keyring, so that the fuzzer starts past
//! the parsers, and a few malformed ones. `tests/fuzz_corpus.rs` writes
//! them to `fuzz/seeds/<target>/` (an ignored test, run to refresh).

use std::sync::Arc;

use privacy_pledge::audit::{AuditSink, ChainedAuditLog, Checkpoint, JsonLinesSink, StreamId};
use privacy_pledge::country::Country;
use privacy_pledge::crypto::Keyring;
use privacy_pledge::data::{EmailAddress, FullName};
use privacy_pledge::purpose::{Newsletter, Promotion, PurposeId, Support, Transaction};
use privacy_pledge::recipient::{Processor, Recipient};
use privacy_pledge::retention::Retention;
use privacy_pledge::store::sqlite::SqliteStore;
use privacy_pledge::time::Timestamp;
use privacy_pledge::transfer::{Mechanism, Transfer};
use privacy_pledge::{Custodian, PersonalInfo, SubjectId};

use super::audit_event::STREAM;
use super::checkpoint::signer;
use super::common::{clock, keyring, MASTER, NOW, SUBJECT};
use super::input::field;
use super::store_rows::tag;

/// A named seed.
pub type Seed = (String, Vec<u8>);

fn seed(name: &str, data: impl Into<Vec<u8>>) -> Seed {
    (name.to_owned(), data.into())
}

/// A mail processor, for disclosure events with a recipient.
struct Mailer;
impl Recipient for Mailer {
    type Role = Processor;
    fn name(&self) -> &str {
        "Mail Delivery Co"
    }
}

/// Drives a custodian writing into `sink` through grants, withdrawals,
/// accesses, a disclosure, seals and opens, and an erasure.
fn activity(sink: impl AuditSink + 'static) {
    let c = Custodian::builder()
        .keyring(keyring())
        .audit(sink)
        .clock(clock())
        .build()
        .expect("custodian");
    let other = SubjectId::from_bytes([0x44; 16]);
    let email = PersonalInfo::<EmailAddress, Transaction>::collect(
        SUBJECT,
        EmailAddress::parse("ada@example.com").expect("email"),
    );
    let name = PersonalInfo::<FullName, Support>::collect(
        other,
        FullName::parse("Grace Hopper").expect("name"),
    );
    c.consents().grant::<Newsletter>(SUBJECT).expect("grant");
    c.consents().grant::<Promotion>(SUBJECT).expect("grant");
    c.consents()
        .withdraw::<Promotion>(SUBJECT)
        .expect("withdraw");
    c.access(&email, |e| e.domain().len()).expect("access");
    c.disclose(&email, &Mailer, |e| e.domain().len())
        .expect("disclose");
    let sealed = c.seal(&name).expect("seal");
    c.open(&sealed).expect("open");
    c.consents().grant::<Newsletter>(other).expect("grant");
    c.erase(other).expect("erase");
}

/// Chained trails as JSON lines: a version-1 chain and a stream.
fn trails() -> (Vec<u8>, Vec<u8>) {
    let key = keyring().audit_key();
    let v1 = Arc::new(ChainedAuditLog::new(
        key.clone(),
        JsonLinesSink::new(Vec::new()),
    ));
    activity(v1.clone());
    let st = Arc::new(ChainedAuditLog::resume_stream(
        key,
        JsonLinesSink::new(Vec::new()),
        STREAM,
        Checkpoint::GENESIS,
    ));
    activity(st.clone());
    (
        v1.inner().with_writer(|w| w.clone()),
        st.inner().with_writer(|w| w.clone()),
    )
}

/// Seeds for `data_kinds`.
pub fn data_kinds() -> Vec<Seed> {
    let text = |which: u8, s: &str| {
        let mut v = vec![which];
        v.extend_from_slice(s.as_bytes());
        v
    };
    let mut purchase = vec![7u8];
    purchase.extend_from_slice(&6_995u64.to_be_bytes());
    purchase.extend_from_slice(b"USD");
    purchase.extend_from_slice(&2018u16.to_be_bytes());
    purchase.extend_from_slice(&[6, 30]);
    purchase.extend(field(b"ORD-1001"));
    purchase.extend_from_slice("Data Recovery Pro \u{1F4BE}".as_bytes());
    let mut amount = vec![5u8];
    amount.extend_from_slice(&1_500u64.to_be_bytes());
    amount.extend_from_slice(b"BHD");
    let mut date = vec![6u8];
    date.extend_from_slice(&2024u16.to_be_bytes());
    date.extend_from_slice(&[2, 29]);
    vec![
        seed("seed-email", text(0, " Ada.Lovelace+orders@example.co.uk ")),
        seed("seed-email-bad", text(0, "ada..lovelace@[192.0.2.1]")),
        seed(
            "seed-name",
            text(1, "  Zoe\u{308} Stra\u{df}e \u{645}\u{6cc}\u{200c}\u{62e}"),
        ),
        seed("seed-phone", text(2, "+44 (0) 20 7946-0958")),
        seed("seed-phone-nanp", text(2, "+1 (415) 555.0132")),
        seed(
            "seed-postal",
            text(3, "221B Baker Street\n\n  London NW1 6XE \nGB"),
        ),
        seed("seed-token", text(4, "tok_1NX2bq2eZvKYlo2C")),
        seed("seed-amount", amount),
        seed("seed-date", date),
        seed("seed-purchase", purchase),
    ]
}

/// Seeds for `ids`.
pub fn ids() -> Vec<Seed> {
    let json = |v: &dyn erased::Json| v.json();
    vec![
        seed("seed-subject", SUBJECT.to_string()),
        seed("seed-subject-json", json(&SUBJECT)),
        seed("seed-country", "DE"),
        seed("seed-country-json", "\"US\""),
        seed("seed-timestamp", json(&Timestamp::from_unix_seconds(NOW))),
        seed("seed-timestamp-max", u64::MAX.to_string()),
        seed("seed-stream", STREAM.to_string()),
        seed("seed-checkpoint-key", signer().public_key().to_string()),
        seed("seed-rule", "R11"),
        seed("seed-mechanism", "standard-contractual-clauses"),
        seed("seed-purpose", json(&PurposeId::Newsletter)),
        seed("seed-retention", json(&Retention::Days(30))),
        seed(
            "seed-pseudonym-ref",
            format!(
                "{{\"kind\":\"EmailAddress\",\"token\":\"{}\"}}",
                "ab".repeat(32)
            ),
        ),
        seed(
            "seed-transfer",
            json(
                &Transfer::new(
                    "DE".parse::<Country>().expect("DE"),
                    "US".parse::<Country>().expect("US"),
                )
                .under(Mechanism::DataPrivacyFramework),
            ),
        ),
    ]
}

/// A tiny stand-in for `dyn Serialize`, which is not object safe.
mod erased {
    /// Serializes to JSON bytes.
    pub trait Json {
        /// The value as JSON.
        fn json(&self) -> Vec<u8>;
    }
    impl<T: serde::Serialize> Json for T {
        fn json(&self) -> Vec<u8> {
            serde_json::to_vec(self).expect("serializes")
        }
    }
}

/// Seeds for `audit_event`: single events and pairs.
pub fn audit_event() -> Vec<Seed> {
    let (v1, st) = trails();
    let mut out = Vec::new();
    for (prefix, trail) in [("v1", &v1), ("stream", &st)] {
        let lines: Vec<&[u8]> = trail
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .collect();
        for (i, line) in lines.iter().enumerate() {
            out.push(seed(&format!("seed-{prefix}-{i}"), *line));
        }
        if let [a, b, ..] = &lines[..] {
            let mut pair = a.to_vec();
            pair.push(b'\n');
            pair.extend_from_slice(b);
            out.push(seed(&format!("seed-{prefix}-pair"), pair));
        }
    }
    out
}

/// Seeds for `audit_trail`.
pub fn audit_trail() -> Vec<Seed> {
    let (v1, st) = trails();
    let cut = v1.iter().rposition(|&b| b == b'{').unwrap_or(0);
    vec![
        seed("seed-v1", v1.clone()),
        seed("seed-stream", st.clone()),
        seed("seed-empty", Vec::new()),
        seed("seed-v1-cut", &v1[..cut]),
        seed("seed-mixed", [&v1[..], &st[..]].concat()),
    ]
}

/// Seeds for `checkpoint`.
pub fn checkpoint() -> Vec<Seed> {
    let head = Checkpoint::new(7, [0xab; 32]);
    let signed = signer().sign(STREAM, head, Timestamp::from_unix_seconds(NOW));
    let other = signer().sign(
        StreamId::from_bytes([9; 16]),
        Checkpoint::GENESIS,
        Timestamp::EPOCH,
    );
    vec![
        seed("seed-text", head.to_string()),
        seed("seed-text-zeros", format!("0007:{}", "ab".repeat(32))),
        seed("seed-json", serde_json::to_vec(&head).expect("json")),
        seed("seed-signed", serde_json::to_vec(&signed).expect("json")),
        seed(
            "seed-signed-genesis",
            serde_json::to_vec(&other).expect("json"),
        ),
        seed(
            "seed-slot",
            slot_of(&signer().sign(STREAM, head, Timestamp::from_unix_seconds(NOW))),
        ),
    ]
}

/// The slot file a `DirCheckpointStore` save of `signed` writes.
fn slot_of(signed: &privacy_pledge::audit::SignedCheckpoint) -> Vec<u8> {
    use privacy_pledge::audit::{CheckpointStore, DirCheckpointStore};
    let dir = std::env::temp_dir().join(format!("pp-fuzz-seed-slot-{}", std::process::id()));
    let store = DirCheckpointStore::new(&dir).expect("directory");
    store.save(signed).expect("save");
    let bytes = std::fs::read(dir.join(format!("{}.0.ckpt", signed.stream()))).expect("slot");
    std::fs::remove_dir_all(&dir).expect("remove");
    bytes
}

/// Seeds for `keyring`.
pub fn keyring_seeds() -> Vec<Seed> {
    let derived = Keyring::from_master(MASTER, [1, 2, 5]).expect("keyring");
    let rotated = Keyring::from_master(MASTER, [1]).expect("keyring");
    rotated.rotate().expect("rotate");
    let text = |k: &Keyring| {
        let mut v = vec![0u8];
        v.extend_from_slice(k.export().as_bytes());
        v
    };
    // The raw body of a keyring (the odd form): master, current 2, two
    // versions, one derived and one random.
    let mut raw = vec![1u8];
    raw.extend_from_slice(&MASTER);
    raw.extend_from_slice(&2u32.to_be_bytes());
    raw.extend_from_slice(&2u32.to_be_bytes());
    raw.extend_from_slice(&1u32.to_be_bytes());
    raw.push(0);
    raw.extend_from_slice(&2u32.to_be_bytes());
    raw.push(1);
    raw.extend_from_slice(&[0x42; 32]);
    vec![
        seed("seed-derived", text(&derived)),
        seed("seed-rotated", text(&rotated)),
        seed("seed-raw", raw),
        seed("seed-wrong-prefix", b"\0ppkr2.AAAA".to_vec()),
    ]
}

/// Seeds for `store_rows`: the rows a custodian over the store writes
/// (consents, a key, an erasure, pseudonyms), an audit stream and a
/// checkpoint, each as the input's row encoding.
pub fn store_rows() -> Vec<Seed> {
    use super::input::field as f;
    let long = |s: &str| {
        let mut v = (s.len() as u16).to_be_bytes().to_vec();
        v.extend_from_slice(s.as_bytes());
        v
    };
    // A real custodian writes its rows.
    let store = SqliteStore::open_in_memory().expect("sqlite");
    let c = Custodian::builder()
        .keyring(keyring())
        .audit(super::common::Discard)
        .clock(clock())
        .key_store(store.key_store())
        .consent_store(store.consent_store())
        .freshness_anchor(privacy_pledge::freshness::MemoryAnchorStore::new())
        .build()
        .expect("custodian");
    c.consents().grant::<Newsletter>(SUBJECT).expect("grant");
    c.consents().grant::<Promotion>(SUBJECT).expect("grant");
    c.consents()
        .withdraw::<Promotion>(SUBJECT)
        .expect("withdraw");
    let consents: Vec<(String, String, i64, String)> = store.with_connection(|conn| {
        let mut st = conn
            .prepare("SELECT subject, purpose, version, record FROM pp_consents ORDER BY purpose")
            .expect("select");
        let rows = st
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .expect("query");
        rows.map(|r| r.expect("row")).collect()
    });
    let mut consent_rows = Vec::new();
    for (subject, purpose, version, record) in &consents {
        let subject = if *subject == SUBJECT.to_string() {
            ""
        } else {
            subject
        };
        consent_rows.push(tag::CONSENT);
        consent_rows.extend(f(subject.as_bytes()));
        consent_rows.extend(f(purpose.as_bytes()));
        consent_rows.extend_from_slice(&(*version as u64).to_be_bytes());
        consent_rows.extend(long(record));
    }
    // The first consent row moved to another subject.
    let mut moved = consent_rows.clone();
    if let Some((_, purpose, version, record)) = consents.first() {
        moved = vec![tag::CONSENT];
        moved.extend(f(super::store_rows::OTHER.to_string().as_bytes()));
        moved.extend(f(purpose.as_bytes()));
        moved.extend_from_slice(&(*version as u64).to_be_bytes());
        moved.extend(long(record));
    }

    // The granted Newsletter row filed under Personalization.
    let mut other_purpose = Vec::new();
    if let Some((_, _, version, record)) = consents.iter().find(|c| c.1 == "Newsletter") {
        other_purpose.push(tag::CONSENT);
        other_purpose.extend(f(b""));
        other_purpose.extend(f(b"Personalization"));
        other_purpose.extend_from_slice(&(*version as u64).to_be_bytes());
        other_purpose.extend(long(record));
    }

    let fixture_key = {
        let mut v = vec![tag::FIXTURE_KEY];
        v.extend_from_slice(&[0; 4 + 4 + 8]);
        v.extend(f(b""));
        v
    };
    let mut key_row = vec![tag::KEY];
    key_row.extend(f(b""));
    key_row.extend_from_slice(&0u64.to_be_bytes());
    key_row.extend_from_slice(&1u64.to_be_bytes());
    key_row.extend(f(&[0x77; 60]));
    key_row.extend_from_slice(&3u64.to_be_bytes());
    let mut erased = vec![tag::ERASED];
    erased.extend(f(b""));
    erased.extend_from_slice(&(NOW * 1_000_000_000).to_be_bytes());
    let mut pseudonym = vec![tag::PSEUDONYM];
    pseudonym.extend(f(b""));
    pseudonym.extend(long(&format!(
        "{{\"kind\":\"EmailAddress\",\"token\":\"{}\"}}",
        "cd".repeat(32)
    )));

    // An audit stream as the store's own sink writes it.
    let sink_store = SqliteStore::open_in_memory().expect("sqlite");
    let sink = sink_store.audit_sink(keyring().audit_key()).expect("sink");
    activity(sink);
    let audit: Vec<(String, i64, i64, String, String, String)> =
        sink_store.with_connection(|conn| {
            let mut st = conn
                .prepare("SELECT stream, seq, time, subject, action, event FROM pp_audit_log ORDER BY id LIMIT 3")
                .expect("select");
            let rows = st
                .query_map([], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?))
                })
                .expect("query");
            rows.map(|r| r.expect("row")).collect()
        });
    let mut audit_rows = Vec::new();
    for (stream, seq, time, subject, action, event) in &audit {
        let subject = if *subject == SUBJECT.to_string() {
            ""
        } else {
            subject
        };
        audit_rows.push(tag::AUDIT);
        audit_rows.extend(f(stream.as_bytes()));
        audit_rows.extend_from_slice(&(*seq as u64).to_be_bytes());
        audit_rows.extend_from_slice(&(*time as u64).to_be_bytes());
        audit_rows.extend(f(subject.as_bytes()));
        audit_rows.extend(f(action.as_bytes()));
        audit_rows.extend(long(event));
    }
    let signed = signer().sign(STREAM, Checkpoint::new(3, [0xab; 32]), Timestamp::EPOCH);
    let mut checkpoint = vec![tag::CHECKPOINT];
    checkpoint.extend(f(STREAM.to_string().as_bytes()));
    checkpoint.extend_from_slice(&3u64.to_be_bytes());
    checkpoint.extend(long(&serde_json::to_string(&signed).expect("json")));

    // Host columns: the frozen vectors' first envelope (an email address
    // held for transactions) as bytes and as text, and a lookup token.
    let vectors: serde_json::Value =
        serde_json::from_str(super::envelope::VECTORS).expect("vectors parse");
    let text = vectors["vectors"][0]["envelope"]
        .as_str()
        .expect("envelope");
    let bytes = {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(text)
            .expect("base64")
    };
    let mut columns = vec![tag::COLUMN];
    columns.extend(f(&bytes));
    columns.push(tag::COLUMN);
    columns.extend(f(text.as_bytes()));
    columns.push(tag::COLUMN);
    columns.extend(f(&[0x5c; 32]));

    vec![
        seed("seed-columns", columns),
        seed("seed-consents", consent_rows.clone()),
        seed("seed-consent-moved", moved),
        seed("seed-consent-other-purpose", other_purpose),
        seed("seed-fixture-key", fixture_key.clone()),
        seed(
            "seed-fixture-key-and-consents",
            [&fixture_key[..], &consent_rows[..]].concat(),
        ),
        seed("seed-key-row", key_row),
        seed(
            "seed-erased",
            [&fixture_key[..], &erased[..], &pseudonym[..]].concat(),
        ),
        seed("seed-audit", audit_rows),
        seed("seed-checkpoint", checkpoint),
    ]
}

/// Every target's seeds, by target name (`envelope` has its own).
pub fn all() -> Vec<(&'static str, Vec<Seed>)> {
    vec![
        ("data_kinds", data_kinds()),
        ("ids", ids()),
        ("audit_event", audit_event()),
        ("audit_trail", audit_trail()),
        ("checkpoint", checkpoint()),
        ("keyring", keyring_seeds()),
        ("store_rows", store_rows()),
    ]
}
