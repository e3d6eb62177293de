//! Frozen envelopes of every format version.
//!
//! `tests/vectors/envelope_v1.json` and `envelope_v2.json` hold envelopes
//! sealed by this crate under a fixed master secret, with the wrapped data
//! keys a key store held for them. Every later version of the crate must
//! still open each one to the same plaintext, and must refuse each one once
//! it is altered or read as another type: this is what keeps each byte
//! layout, the associated data, the key derivation and the key wrapping
//! stable.
//!
//! The current version's file was written by [`generate`] below, which is
//! `#[ignore]`d. Run it only to *add* vectors (give new entries new names in
//! `specs()`); the version 1 file is no longer written:
//!
//! ```text
//! cargo test --test envelope_vectors -- --ignored generate
//! ```
//!
//! It keeps every existing entry byte for byte and appends the new ones.

use std::sync::Arc;

use privacy_pledge::crypto::{
    Algorithm, EnvelopeError, KeyError, KeyStore, Keyring, MemoryKeyStore, StoredKey, SubjectKeys,
    Wrapped,
};
use privacy_pledge::data::{
    Amount, DataKind, Date, EmailAddress, FullName, PaymentToken, PhoneNumber, PostalAddress,
    PurchaseRecord,
};
use privacy_pledge::purpose::{
    Correspondence, Improvement, Newsletter, Personalization, Promotion, Purpose, ServiceNotice,
    Support, Transaction,
};
use privacy_pledge::time::{FixedClock, Timestamp};
use privacy_pledge::{Custodian, Error, ExposeSecret, PersonalInfo, Sealed, SubjectId};
use serde_json::{json, Value};

/// The vectors of format version 1 (frozen: no longer written).
const PATH_V1: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/vectors/envelope_v1.json"
);

/// The vectors of the current format version, 2.
const PATH: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/vectors/envelope_v2.json"
);

/// The master secret of the vectors' keyring. A test key, never a real one.
const MASTER: [u8; 32] = *b"privacy-pledge test vectors v1!!";

/// 2018-06-30T00:00:00Z, the date of the policy.
const COLLECTED: u64 = 1_530_316_800;

// ---------------------------------------------------------------------------
// Plaintext as JSON, both ways.

trait Plain: DataKind {
    fn to_json(&self) -> Value;
    fn from_json(v: &Value) -> Self;
}

macro_rules! plain_text_kind {
    ($t:ty) => {
        impl Plain for $t {
            fn to_json(&self) -> Value {
                Value::String(self.expose_secret().to_owned())
            }
            fn from_json(v: &Value) -> Self {
                <$t>::parse(v.as_str().expect("text plaintext")).expect("valid plaintext")
            }
        }
    };
}
plain_text_kind!(FullName);
plain_text_kind!(EmailAddress);
plain_text_kind!(PhoneNumber);
plain_text_kind!(PaymentToken);

impl Plain for PostalAddress {
    fn to_json(&self) -> Value {
        Value::String(format!(
            "{}\n{}",
            self.expose_secret(),
            self.country().code()
        ))
    }
    fn from_json(v: &Value) -> Self {
        PostalAddress::parse(v.as_str().expect("text plaintext")).expect("valid plaintext")
    }
}

impl Plain for PurchaseRecord {
    fn to_json(&self) -> Value {
        json!({
            "order_id": self.order_id(),
            "product": self.product(),
            "minor_units": self.amount().minor_units(),
            "currency": self.amount().currency(),
            "date": [self.date().year(), self.date().month(), self.date().day()],
        })
    }
    fn from_json(v: &Value) -> Self {
        let d = &v["date"];
        PurchaseRecord::new(
            v["order_id"].as_str().unwrap(),
            v["product"].as_str().unwrap(),
            Amount::new(
                v["minor_units"].as_u64().unwrap(),
                v["currency"].as_str().unwrap(),
            )
            .unwrap(),
            Date::new(
                d[0].as_u64().unwrap() as u16,
                d[1].as_u64().unwrap() as u8,
                d[2].as_u64().unwrap() as u8,
            )
            .unwrap(),
        )
        .expect("valid plaintext")
    }
}

/// How a purpose lets the test read an opened value back: through
/// `access` where the purpose sees plaintext, as a pseudonym for `Improvement`.
trait Reveal: Purpose + Sized {
    fn reveal<T: Plain>(c: &Custodian, info: &PersonalInfo<T, Self>) -> Value;
}

macro_rules! reveal_plain {
    ($($p:ty),*) => {$(
        impl Reveal for $p {
            fn reveal<T: Plain>(c: &Custodian, info: &PersonalInfo<T, Self>) -> Value {
                c.access(info, |v| v.to_json()).unwrap()
            }
        }
    )*};
}
reveal_plain!(
    Transaction,
    Support,
    Correspondence,
    ServiceNotice,
    Newsletter,
    Promotion,
    Personalization
);

impl Reveal for Improvement {
    fn reveal<T: Plain>(c: &Custodian, info: &PersonalInfo<T, Self>) -> Value {
        Value::String(c.pseudonym(info).unwrap().to_string())
    }
}

/// Calls `$f::<Kind, Purpose>($args..)` for the kind and purpose named by strings.
macro_rules! dispatch {
    ($kind:expr, $purpose:expr, $f:ident($($a:expr),*)) => {
        match $kind {
            "FullName" => dispatch!(@p FullName, $purpose, $f($($a),*)),
            "EmailAddress" => dispatch!(@p EmailAddress, $purpose, $f($($a),*)),
            "PostalAddress" => dispatch!(@p PostalAddress, $purpose, $f($($a),*)),
            "PhoneNumber" => dispatch!(@p PhoneNumber, $purpose, $f($($a),*)),
            "PurchaseRecord" => dispatch!(@p PurchaseRecord, $purpose, $f($($a),*)),
            "PaymentToken" => dispatch!(@p PaymentToken, $purpose, $f($($a),*)),
            other => panic!("unknown kind {other}"),
        }
    };
    (@p $t:ty, $purpose:expr, $f:ident($($a:expr),*)) => {
        match $purpose {
            "Transaction" => $f::<$t, Transaction>($($a),*),
            "Support" => $f::<$t, Support>($($a),*),
            "Correspondence" => $f::<$t, Correspondence>($($a),*),
            "ServiceNotice" => $f::<$t, ServiceNotice>($($a),*),
            "Newsletter" => $f::<$t, Newsletter>($($a),*),
            "Promotion" => $f::<$t, Promotion>($($a),*),
            "Personalization" => $f::<$t, Personalization>($($a),*),
            "Improvement" => $f::<$t, Improvement>($($a),*),
            other => panic!("unknown purpose {other}"),
        }
    };
}

// ---------------------------------------------------------------------------
// Loading the frozen file.

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    assert!(s.len().is_multiple_of(2), "odd hex");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

fn load(path: &str) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).expect("valid JSON")
}

/// Both files, oldest first.
fn files() -> [Value; 2] {
    [load(PATH_V1), load(PATH)]
}

/// The header length of an envelope of `version`.
fn header_len(version: u8) -> usize {
    if version == 1 {
        47
    } else {
        49
    }
}

fn subject_of(v: &Value) -> SubjectId {
    v["subject"].as_str().unwrap().parse().unwrap()
}

fn stored_key_of(v: &Value) -> StoredKey {
    let k = &v["stored_key"];
    StoredKey {
        generation: k["generation"].as_u64().unwrap() as u32,
        wrapped: Wrapped {
            kek_version: k["kek_version"].as_u64().unwrap() as u32,
            bytes: unhex(k["wrapped"].as_str().unwrap()),
        },
        uses: 0,
    }
}

/// A key store holding every vector's wrapped data key.
fn store_of(file: &Value) -> MemoryKeyStore {
    let store = MemoryKeyStore::new();
    for v in file["vectors"].as_array().unwrap() {
        let subject = subject_of(v);
        let key = stored_key_of(v);
        if store.insert(subject, key.clone()).is_err() {
            // Two vectors under one key: the entries must agree.
            let SubjectKeys::Live(keys) = store.load(subject).unwrap() else {
                panic!("no keys")
            };
            let held = keys
                .iter()
                .find(|k| k.generation == key.generation)
                .unwrap();
            assert_eq!(held.wrapped, key.wrapped);
        }
    }
    store
}

fn keyring_of(file: &Value, master: [u8; 32]) -> Keyring {
    let versions: Vec<u32> = file["keyring"]["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as u32)
        .collect();
    Keyring::from_master(master, versions).unwrap()
}

fn custodian_of(file: &Value) -> Custodian {
    let master: [u8; 32] = unhex(file["keyring"]["master"].as_str().unwrap())
        .try_into()
        .unwrap();
    // Opened the day after collection, with consent live for the
    // consent-based purposes: every vector is within its retention period.
    let c = Custodian::builder()
        .keyring(keyring_of(file, master))
        .key_store(store_of(file))
        .clock(FixedClock::new(Timestamp::from_unix_seconds(
            COLLECTED + 86_400,
        )))
        .build()
        .unwrap();
    for v in file["vectors"].as_array().unwrap() {
        let s = subject_of(v);
        c.consents().grant::<Newsletter>(s).unwrap();
        c.consents().grant::<Promotion>(s).unwrap();
        c.consents().grant::<Personalization>(s).unwrap();
    }
    c
}

/// Opens one frozen vector and checks every field, then checks that an
/// altered copy and a copy opened as another purpose are refused.
fn check<T: Plain, P: Reveal>(c: &Custodian, v: &Value) {
    let name = v["name"].as_str().unwrap();
    let text = v["envelope"].as_str().unwrap();
    let sealed = Sealed::<T, P>::from_text(text).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(sealed.to_text(), text, "{name}: text form is canonical");
    assert_eq!(sealed.subject(), subject_of(v), "{name}");
    assert_eq!(
        u64::from(sealed.key_id()),
        v["stored_key"]["generation"].as_u64().unwrap(),
        "{name}"
    );
    let alg = match v["algorithm"].as_str().unwrap() {
        "Aes256Gcm" => Algorithm::Aes256Gcm,
        "ChaCha20Poly1305" => Algorithm::ChaCha20Poly1305,
        other => panic!("{name}: algorithm {other}"),
    };
    assert_eq!(sealed.algorithm(), alg, "{name}");
    assert_eq!(
        sealed.as_bytes()[2] == 1,
        v["padded"].as_bool().unwrap(),
        "{name}"
    );
    assert_eq!(
        sealed.collected_at(),
        Timestamp::from_unix_seconds(v["collected"].as_u64().unwrap()),
        "{name}"
    );

    let opened = c
        .open(&sealed)
        .unwrap_or_else(|e| panic!("{name} no longer opens: {e}"));
    assert_eq!(opened.subject(), subject_of(v), "{name}");
    let expected = T::from_json(&v["plaintext"]);
    assert_eq!(expected.to_json(), v["plaintext"], "{name}: plaintext form");
    let expected = PersonalInfo::<T, P>::collect(opened.subject(), expected);
    assert_eq!(
        P::reveal(c, &opened),
        P::reveal(c, &expected),
        "{name}: wrong plaintext"
    );

    // Altered anywhere in nonce, ciphertext or tag: refused.
    let bytes = sealed.to_bytes();
    let header = header_len(bytes[0]);
    for i in [header - 12, header, bytes.len() - 17, bytes.len() - 1] {
        let mut b = bytes.clone();
        b[i] ^= 0x01;
        let altered = Sealed::<T, P>::from_bytes(&b).unwrap();
        assert!(
            matches!(c.open(&altered), Err(Error::Unauthentic)),
            "{name}: byte {i} altered but opened"
        );
    }
    // The collection date is bound too (its last byte ends the header's
    // fixed part, 16 bytes before the nonce's end).
    let mut b = bytes.clone();
    b[header - 17] ^= 0x01;
    let altered = Sealed::<T, P>::from_bytes(&b).unwrap();
    assert!(
        matches!(c.open(&altered), Err(Error::Unauthentic)),
        "{name}"
    );
}

/// Read as another purpose: a version 1 envelope parses but fails
/// authentication; a version 2 envelope is refused at parse time, naming
/// what it holds.
fn check_other_purpose<T: Plain, P: Purpose>(c: &Custodian, v: &Value) {
    let text = v["envelope"].as_str().unwrap();
    match Sealed::<T, P>::from_text(text) {
        Ok(sealed) => assert!(
            matches!(c.open(&sealed), Err(Error::Unauthentic)),
            "{} opened as {}",
            v["name"],
            P::ID
        ),
        Err(e) => assert!(
            matches!(e, EnvelopeError::WrongType { asked_purpose, .. } if asked_purpose == P::ID),
            "{}: {e}",
            v["name"]
        ),
    }
}

#[test]
fn frozen_vectors_still_open() {
    for (file, version) in files().iter().zip([1, 2]) {
        assert_eq!(file["format_version"], version);
        frozen_file_still_opens(file, version);
    }
}

fn frozen_file_still_opens(file: &Value, version: u8) {
    let c = custodian_of(file);
    let vectors = file["vectors"].as_array().unwrap();
    for v in vectors {
        let text = v["envelope"].as_str().unwrap();
        let first = base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, text)
            .unwrap()[0];
        assert_eq!(first, version, "{}", v["name"]);
        dispatch!(
            v["kind"].as_str().unwrap(),
            v["purpose"].as_str().unwrap(),
            check(&c, v)
        );
        // The same bytes opened for a different purpose fail.
        let other = if v["purpose"] == "Support" {
            "Transaction"
        } else {
            "Support"
        };
        dispatch!(
            v["kind"].as_str().unwrap(),
            other,
            check_other_purpose(&c, v)
        );
    }
}

#[test]
fn frozen_vectors_cover_the_format() {
    for file in files() {
        frozen_file_covers_the_format(&file);
    }
}

fn frozen_file_covers_the_format(file: &Value) {
    let vectors = file["vectors"].as_array().unwrap();
    let has = |field: &str, value: Value| vectors.iter().any(|v| v[field] == value);
    for kind in [
        "FullName",
        "EmailAddress",
        "PostalAddress",
        "PhoneNumber",
        "PurchaseRecord",
        "PaymentToken",
    ] {
        assert!(has("kind", json!(kind)), "no {kind} vector");
    }
    for purpose in [
        "Transaction",
        "Support",
        "Correspondence",
        "ServiceNotice",
        "Newsletter",
        "Promotion",
        "Personalization",
        "Improvement",
    ] {
        assert!(has("purpose", json!(purpose)), "no {purpose} vector");
    }
    assert!(has("algorithm", json!("Aes256Gcm")));
    assert!(has("algorithm", json!("ChaCha20Poly1305")));
    assert!(has("padded", json!(true)));
    assert!(has("padded", json!(false)));
    let kek = |n: u64| vectors.iter().any(|v| v["stored_key"]["kek_version"] == n);
    assert!(kek(1) && kek(2), "both key-encryption-key versions");
    assert!(vectors.iter().any(|v| v["stored_key"]["generation"] != 0));
    let mut names: Vec<&str> = vectors
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), vectors.len(), "names are unique");
}

#[test]
fn frozen_vectors_need_the_right_keys() {
    let file = load(PATH_V1);
    let v = &file["vectors"][0];
    let sealed =
        Sealed::<EmailAddress, Transaction>::from_text(v["envelope"].as_str().unwrap()).unwrap();
    assert_eq!(v["kind"], "EmailAddress");
    assert_eq!(v["purpose"], "Transaction");

    // Another master secret: the wrapped data key does not unwrap.
    let mut other = MASTER;
    other[0] ^= 1;
    let wrong = Custodian::builder()
        .keyring(keyring_of(&file, other))
        .key_store(store_of(&file))
        .build()
        .unwrap();
    assert!(matches!(
        wrong.open(&sealed),
        Err(Error::Key(KeyError::Unwrap))
    ));

    // The right keyring without the stored keys: nothing to open with.
    let bare = Custodian::builder()
        .keyring(keyring_of(&file, MASTER))
        .build()
        .unwrap();
    assert!(matches!(
        bare.open(&sealed),
        Err(Error::Key(KeyError::UnknownKey { .. }))
    ));

    // A stored key moved to another subject's row does not unwrap there.
    let store = store_of(&file);
    let stranger = SubjectId::from(0xdead_beef_u128);
    store.insert(stranger, stored_key_of(v)).unwrap();
    let moved = Custodian::builder()
        .keyring(keyring_of(&file, MASTER))
        .key_store(store)
        .build()
        .unwrap();
    let mut bytes = sealed.to_bytes();
    bytes[3..19].copy_from_slice(stranger.as_bytes());
    let moved_sealed = Sealed::<EmailAddress, Transaction>::from_bytes(&bytes).unwrap();
    assert!(matches!(
        moved.open(&moved_sealed),
        Err(Error::Key(KeyError::Unwrap))
    ));
}

// ---------------------------------------------------------------------------
// The generator.

struct Spec {
    name: &'static str,
    kind: &'static str,
    purpose: &'static str,
    algorithm: Algorithm,
    padded: bool,
    /// 1: sealed before the keyring rotated; 2: after.
    kek_version: u32,
    /// Seal under a message limit of one, so each seal of the subject starts a generation.
    limit_one: bool,
    subject: u128,
    plaintext: Value,
}

fn specs() -> Vec<Spec> {
    use Algorithm::{Aes256Gcm as Aes, ChaCha20Poly1305 as ChaCha};
    let s = |name, kind, purpose, algorithm, padded, subject, plaintext| Spec {
        name,
        kind,
        purpose,
        algorithm,
        padded,
        kek_version: 1,
        limit_one: false,
        subject,
        plaintext,
    };
    let long_lines: Vec<String> = (0..7)
        .map(|i| {
            format!("{i} {}", "Analytical Engine Works, Marylebone ".repeat(4))[..127].to_owned()
        })
        .collect();
    let mut v = vec![
        s(
            "email-transaction-aes",
            "EmailAddress",
            "Transaction",
            Aes,
            false,
            0x0101,
            json!("ada.lovelace@example.com"),
        ),
        s(
            "name-support-aes-padded",
            "FullName",
            "Support",
            Aes,
            true,
            0x0102,
            json!("Augusta Ada King, Countess of Lovelace"),
        ),
        s(
            "postal-correspondence-chacha",
            "PostalAddress",
            "Correspondence",
            ChaCha,
            false,
            0x0103,
            json!("12 St James's Square\nLondon SW1Y 4JH\nGB"),
        ),
        s(
            "phone-servicenotice-chacha-padded",
            "PhoneNumber",
            "ServiceNotice",
            ChaCha,
            true,
            0x0104,
            json!("+442079460958"),
        ),
        s(
            "purchase-newsletter-aes",
            "PurchaseRecord",
            "Newsletter",
            Aes,
            false,
            0x0105,
            json!({"order_id": "ORD-1001", "product": "Data Recovery Pro", "minor_units": 6995,
                 "currency": "USD", "date": [2018, 6, 30]}),
        ),
        s(
            "token-promotion-aes-padded",
            "PaymentToken",
            "Promotion",
            Aes,
            true,
            0x0106,
            json!("tok_1NX2bq2eZvKYlo2C"),
        ),
        s(
            "email-personalization-chacha",
            "EmailAddress",
            "Personalization",
            ChaCha,
            false,
            0x0107,
            json!("Grace.Hopper+news@navy.example"),
        ),
        s(
            "name-improvement-aes",
            "FullName",
            "Improvement",
            Aes,
            false,
            0x0108,
            json!("Charles Babbage"),
        ),
        s(
            "postal-large-transaction-aes-padded",
            "PostalAddress",
            "Transaction",
            Aes,
            true,
            0x0109,
            json!(format!("{}\nGB", long_lines.join("\n"))),
        ),
        s(
            "purchase-support-chacha-padded",
            "PurchaseRecord",
            "Support",
            ChaCha,
            true,
            0x010a,
            json!({"order_id": "INV/2018/00042", "product": "Partition Manager — Ünïcode Edition",
                 "minor_units": 0, "currency": "EUR", "date": [2024, 2, 29]}),
        ),
    ];
    let mut rotated = s(
        "email-transaction-aes-kek2",
        "EmailAddress",
        "Transaction",
        Aes,
        false,
        0x0201,
        json!("charles@difference-engine.example"),
    );
    rotated.kek_version = 2;
    v.push(rotated);
    let mut g0 = s(
        "phone-support-aes-gen0",
        "PhoneNumber",
        "Support",
        Aes,
        false,
        0x0301,
        json!("+14155550132"),
    );
    g0.limit_one = true;
    let mut g1 = s(
        "phone-support-aes-gen1",
        "PhoneNumber",
        "Support",
        Aes,
        false,
        0x0301,
        json!("+14155550199"),
    );
    g1.limit_one = true;
    v.push(g0);
    v.push(g1);
    v
}

fn seal_one<T: Plain, P: Purpose>(c: &Custodian, subject: SubjectId, plaintext: &Value) -> String {
    let info = PersonalInfo::<T, P>::collect(subject, T::from_json(plaintext));
    c.seal_at(&info, Timestamp::from_unix_seconds(COLLECTED))
        .unwrap()
        .to_text()
}

/// Writes (or extends) `tests/vectors/envelope_v1.json`. Existing entries are
/// kept unchanged; only specs with new names are sealed and appended.
#[test]
#[ignore = "writes the frozen vectors; run with --ignored only to add vectors"]
fn generate() {
    let mut file = std::fs::read_to_string(PATH)
        .ok()
        .map(|t| serde_json::from_str::<Value>(&t).unwrap())
        .unwrap_or_else(|| {
            json!({
                "format_version": 2,
                "description": "Sealed envelopes of format version 2, written by \
                    tests/envelope_vectors.rs (generate). Open each with a Keyring from \
                    `keyring` and a key store holding its `stored_key`; it must give \
                    `plaintext` (for Improvement: the value whose pseudonym matches).",
                "keyring": { "master": hex(&MASTER), "versions": [1, 2] },
                "vectors": [],
            })
        });
    assert_eq!(file["keyring"]["master"], hex(&MASTER));

    let store = Arc::new(MemoryKeyStore::new());
    let v1 = Arc::new(Keyring::from_master(MASTER, [1]).unwrap());
    let v2 = Arc::new(Keyring::from_master(MASTER, [1, 2]).unwrap());
    let mut added = Vec::new();
    for spec in specs() {
        let exists = file["vectors"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v["name"] == spec.name);
        if exists {
            continue;
        }
        let mut b = Custodian::builder()
            .keyring(if spec.kek_version == 1 {
                v1.clone()
            } else {
                v2.clone()
            })
            .key_store(store.clone())
            .algorithm(spec.algorithm)
            .length_padding(spec.padded);
        if spec.limit_one {
            b = b.message_limit(1);
        }
        let c = b.build().unwrap();
        let subject = SubjectId::from(spec.subject);
        // Sealing for a consent-based purpose needs live consent.
        c.consents().grant::<Newsletter>(subject).unwrap();
        c.consents().grant::<Promotion>(subject).unwrap();
        c.consents().grant::<Personalization>(subject).unwrap();
        let envelope = dispatch!(
            spec.kind,
            spec.purpose,
            seal_one(&c, subject, &spec.plaintext)
        );
        let bytes =
            base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, &envelope)
                .unwrap();
        assert_eq!(bytes[0], 2);
        let key_id = u32::from_be_bytes(bytes[21..25].try_into().unwrap());
        let SubjectKeys::Live(keys) = store.load(subject).unwrap() else {
            panic!("no keys")
        };
        let key = keys.iter().find(|k| k.generation == key_id).unwrap();
        assert_eq!(key.wrapped.kek_version, spec.kek_version);
        added.push(json!({
            "name": spec.name,
            "subject": subject.to_string(),
            "kind": spec.kind,
            "purpose": spec.purpose,
            "algorithm": format!("{:?}", spec.algorithm),
            "padded": spec.padded,
            "collected": COLLECTED,
            "stored_key": {
                "generation": key.generation,
                "kek_version": key.wrapped.kek_version,
                "wrapped": hex(&key.wrapped.bytes),
            },
            "envelope": envelope,
            "plaintext": spec.plaintext,
        }));
    }
    file["vectors"].as_array_mut().unwrap().extend(added);
    std::fs::create_dir_all(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors")).unwrap();
    std::fs::write(PATH, serde_json::to_string_pretty(&file).unwrap() + "\n").unwrap();
}
