//! `store_rows`: rows of the SQLite store as the crate reads them back.
//!
//! A database operator can write any row. The input is a list of rows,
//! each a table tag and its columns read with [`Input`]; they are written
//! with raw SQL into an in-memory [`SqliteStore`] (emptied first) and read
//! back through the crate's API only: the consent store, the key store, a
//! custodian built on both, `SqliteStore::trail` and
//! `SqliteStore::checkpoints`. An empty subject column stands for the
//! fixture's subject, so rows meet the reads that look for them. A row may
//! also be a value of a host's own column, read back as the crate's column
//! types (`Sealed`, `LookupToken`).
//!
//! Properties, beyond "no panic" (every malformed row is an `Err`):
//! - a consent row makes consent live only if it is an authentic record of
//!   that very subject and purpose, granted: a row written without the
//!   custodian's key, or moved to another subject or purpose, never does;
//! - a key row opens the fixture's envelope only to the value sealed in
//!   it; a value the custodian seals over whatever rows exist opens again
//!   to the same value; an erased subject's envelopes never open;
//! - a host column reads as an envelope or a lookup token exactly when
//!   `Sealed::from_bytes` / `from_text` / `LookupToken::from_bytes` accept
//!   its bytes, to the same value;
//! - audit rows read back only when their JSON is an event whose query
//!   columns agree with it, and checkpoints only when their JSON is a
//!   signed checkpoint (one that verifies was made by the fixed signer).

use std::sync::OnceLock;

use privacy_pledge::audit::{verify_streams, SignedCheckpoint};
use privacy_pledge::consent::ConsentStore;
use privacy_pledge::crypto::{KeyStore, SubjectKeys};
use privacy_pledge::data::EmailAddress;
use privacy_pledge::purpose::{Newsletter, Personalization, Promotion, PurposeId, Transaction};
use privacy_pledge::store::sqlite::SqliteStore;
use privacy_pledge::time::Timestamp;
use privacy_pledge::{Custodian, ExposeSecret, LookupToken, PersonalInfo, Sealed, SubjectId};

use super::audit_event::audit_key;
use super::checkpoint::signer;
use super::common::{clock, keyring, Discard, SUBJECT};
use super::input::Input;

/// The value sealed in the fixture's envelope.
pub const VALUE: &str = "ada@example.com";

/// Table tags of the input's rows.
pub mod tag {
    /// `pp_consents (subject, purpose, version, record)`.
    pub const CONSENT: u8 = 0;
    /// `pp_subject_keys (subject, generation, kek_version, wrapped, uses)`.
    pub const KEY: u8 = 1;
    /// `pp_erased_subjects (subject, erased_at)`.
    pub const ERASED: u8 = 2;
    /// `pp_subject_pseudonyms (subject, pseudonym)`.
    pub const PSEUDONYM: u8 = 3;
    /// `pp_audit_log (stream, seq, time, subject, action, event)`.
    pub const AUDIT: u8 = 4;
    /// `pp_checkpoints (stream, seq, checkpoint)`.
    pub const CHECKPOINT: u8 = 5;
    /// The fixture's own key row, with `generation`, `kek_version` and
    /// `uses` from the input and the wrapped key XORed with a field.
    pub const FIXTURE_KEY: u8 = 6;
    /// Not a row of the store: a value of a host's own column, read back
    /// as a `Sealed` envelope and as a `LookupToken` (the crate's column
    /// types), as a blob and as text.
    pub const COLUMN: u8 = 7;
    /// How many tags there are.
    pub const COUNT: u8 = 8;
}

/// The most rows one input writes.
pub const MAX_ROWS: usize = 8;

/// The fixture: an envelope sealed for [`SUBJECT`] by a custodian over the
/// fixed keyring, and the key row that opens it.
pub struct Fixture {
    /// The envelope, as bytes.
    pub envelope: Vec<u8>,
    /// `(generation, kek_version, wrapped, uses)` of the key row.
    pub key_row: (u32, u32, Vec<u8>, u64),
}

/// The freshness anchor every custodian of the harness shares: it holds
/// the fixture's consents, so a consent row makes consent live only if it
/// is the anchored one.
fn anchor() -> std::sync::Arc<privacy_pledge::freshness::MemoryAnchorStore> {
    static A: OnceLock<std::sync::Arc<privacy_pledge::freshness::MemoryAnchorStore>> =
        OnceLock::new();
    A.get_or_init(Default::default).clone()
}

/// The fixture, made once per process (its data key is random).
pub fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let store = SqliteStore::open_in_memory().expect("sqlite");
        let c = custodian(&store);
        let info = PersonalInfo::<EmailAddress, Transaction>::collect(
            SUBJECT,
            EmailAddress::parse(VALUE).expect("email"),
        );
        let sealed = c.seal(&info).expect("seals");
        c.consents().grant::<Newsletter>(SUBJECT).expect("grants");
        let SubjectKeys::Live(keys) = store.key_store().load(SUBJECT).expect("loads") else {
            panic!("no key row");
        };
        let k = &keys[0];
        Fixture {
            envelope: sealed.to_bytes(),
            key_row: (
                k.generation,
                k.wrapped.kek_version,
                k.wrapped.bytes.clone(),
                k.uses,
            ),
        }
    })
}

/// A custodian over `store`'s consent and key stores and the fixed
/// keyring, that trusts no cached key or consent row.
fn custodian(store: &SqliteStore) -> Custodian {
    Custodian::builder()
        .keyring(keyring())
        .audit(Discard)
        .clock(clock())
        .key_store(store.key_store())
        .consent_store(store.consent_store())
        .freshness_anchor(anchor())
        .consent_revalidate_after(std::time::Duration::ZERO)
        .key_revalidate_after(std::time::Duration::ZERO)
        .build()
        .expect("custodian")
}

thread_local! {
    static STORE: SqliteStore = SqliteStore::open_in_memory().expect("sqlite");
}

/// A subject column: empty stands for [`SUBJECT`].
fn subject(input: &mut Input<'_>) -> String {
    match input.text() {
        s if s.is_empty() => SUBJECT.to_string(),
        s => s,
    }
}

/// A long text column (two-byte length).
fn long_text(input: &mut Input<'_>) -> String {
    let n = usize::from(input.u16());
    String::from_utf8_lossy(input.bytes(n)).into_owned()
}

/// Writes the rows `data` describes into `store` (emptied first). Returns
/// how many rows were written, and the host column values to read back.
fn write_rows(store: &SqliteStore, data: &[u8]) -> (usize, Vec<Vec<u8>>) {
    let mut input = Input::new(data);
    let fixture = fixture();
    store.with_connection(|conn| {
        conn.execute_batch(
            "DELETE FROM pp_consents; DELETE FROM pp_subject_keys;
             DELETE FROM pp_erased_subjects; DELETE FROM pp_subject_pseudonyms;
             DELETE FROM pp_audit_log; DELETE FROM pp_checkpoints;",
        )
        .expect("empties");
        let mut written = 0;
        let mut columns = Vec::new();
        while !input.is_empty() && written + columns.len() < MAX_ROWS {
            let r = match input.u8() % tag::COUNT {
                tag::COLUMN => {
                    columns.push(input.field().to_vec());
                    continue;
                }
                tag::CONSENT => conn.execute(
                    "INSERT INTO pp_consents (subject, purpose, version, record) VALUES (?1, ?2, ?3, ?4)",
                    (subject(&mut input), input.text(), input.u64() as i64, long_text(&mut input)),
                ),
                tag::KEY => conn.execute(
                    "INSERT INTO pp_subject_keys (subject, generation, kek_version, wrapped, uses)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                    (
                        subject(&mut input),
                        input.u64() as i64,
                        input.u64() as i64,
                        input.field().to_vec(),
                        input.u64() as i64,
                    ),
                ),
                tag::ERASED => conn.execute(
                    "INSERT INTO pp_erased_subjects (subject, erased_at) VALUES (?1, ?2)",
                    (subject(&mut input), input.u64() as i64),
                ),
                tag::PSEUDONYM => conn.execute(
                    "INSERT INTO pp_subject_pseudonyms (subject, pseudonym) VALUES (?1, ?2)",
                    (subject(&mut input), long_text(&mut input)),
                ),
                tag::AUDIT => conn.execute(
                    "INSERT INTO pp_audit_log (stream, seq, time, subject, action, event)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    (
                        input.text(),
                        input.u64() as i64,
                        input.u64() as i64,
                        subject(&mut input),
                        input.text(),
                        long_text(&mut input),
                    ),
                ),
                tag::CHECKPOINT => conn.execute(
                    "INSERT INTO pp_checkpoints (stream, seq, checkpoint) VALUES (?1, ?2, ?3)",
                    (input.text(), input.u64() as i64, long_text(&mut input)),
                ),
                _ => {
                    let (generation, kek, wrapped, uses) = &fixture.key_row;
                    let generation = i64::from(*generation) ^ i64::from(input.u32());
                    let kek = i64::from(*kek) ^ i64::from(input.u32());
                    let uses = *uses as i64 ^ input.u64() as i64;
                    let mask = input.field();
                    let mut wrapped = wrapped.clone();
                    for (b, m) in wrapped.iter_mut().zip(mask) {
                        *b ^= m;
                    }
                    conn.execute(
                        "INSERT INTO pp_subject_keys (subject, generation, kek_version, wrapped, uses)
                         VALUES (?1, ?2, ?3, ?4, ?5)",
                        (SUBJECT.to_string(), generation, kek, wrapped, uses),
                    )
                }
            };
            // A row the schema refuses (a duplicate key) is simply not there.
            written += usize::from(r.is_ok());
        }
        (written, columns)
    })
}

/// Reads `value` back from SQLite as a blob and as text, as the crate's
/// column types: the envelope and the token read exactly as their own
/// decoders read the same bytes, and write back the same bytes.
fn check_column(store: &SqliteStore, value: &[u8]) {
    type Envelope = Sealed<EmailAddress, Transaction>;
    store.with_connection(|conn| {
        let blob: Result<Envelope, _> =
            conn.query_row("SELECT CAST(?1 AS BLOB)", [value], |r| r.get(0));
        let direct = Envelope::from_bytes(value);
        assert_eq!(blob.is_ok(), direct.is_ok(), "{blob:?} {direct:?}");
        if let (Ok(a), Ok(b)) = (&blob, &direct) {
            assert!(a == b && a.as_bytes() == value);
            let back: Vec<u8> = conn
                .query_row("SELECT ?1", [a], |r| r.get(0))
                .expect("an envelope is a blob");
            assert_eq!(back, value);
        }
        let text: Result<Envelope, _> =
            conn.query_row("SELECT CAST(?1 AS TEXT)", [value], |r| r.get(0));
        let direct = std::str::from_utf8(value)
            .ok()
            .and_then(|t| Envelope::from_text(t).ok());
        assert_eq!(text.is_ok(), direct.is_some(), "{text:?}");
        if let (Ok(a), Some(b)) = (&text, &direct) {
            assert!(a == b);
        }
        let token: Result<LookupToken<EmailAddress>, _> =
            conn.query_row("SELECT CAST(?1 AS BLOB)", [value], |r| r.get(0));
        let direct = LookupToken::<EmailAddress>::from_bytes(value);
        assert_eq!(token.is_ok(), direct.is_ok());
        if let Ok(t) = token {
            assert_eq!(&t.as_bytes()[..], value);
        }
    });
}

/// What one input did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Rows written.
    pub rows: usize,
    /// Consent purposes live for the fixture's subject.
    pub live_consents: usize,
    /// The fixture's envelope opened.
    pub opened: bool,
    /// A new value sealed (and opened again).
    pub sealed: bool,
    /// Audit rows read back.
    pub audit_rows: usize,
    /// Checkpoint rows read back.
    pub checkpoints: usize,
}

/// Writes the rows `data` describes and reads them back through the
/// crate. Panics only on a broken property.
pub fn check(data: &[u8]) -> Outcome {
    STORE.with(|store| check_in(store, data))
}

fn check_in(store: &SqliteStore, data: &[u8]) -> Outcome {
    let (rows, columns) = write_rows(store, data);
    for value in &columns {
        check_column(store, value);
    }
    let mut out = Outcome {
        rows,
        ..Outcome::default()
    };
    let c = custodian(store);

    // Consent rows.
    let consents = store.consent_store();
    let _ = consents.all();
    for (purpose, live) in [
        (
            PurposeId::Newsletter,
            c.consents().is_granted::<Newsletter>(SUBJECT),
        ),
        (
            PurposeId::Promotion,
            c.consents().is_granted::<Promotion>(SUBJECT),
        ),
        (
            PurposeId::Personalization,
            c.consents().is_granted::<Personalization>(SUBJECT),
        ),
    ] {
        let row = consents.load(SUBJECT, purpose);
        if live {
            out.live_consents += 1;
            let row = row.expect("a live consent's row reads").expect("a row");
            assert_eq!(
                (row.subject, row.purpose, row.granted),
                (SUBJECT, purpose, true),
                "a row of another subject or purpose made consent live"
            );
        }
    }
    let _ = c.consents().of(SUBJECT);

    // Key rows.
    let keys = store.key_store();
    let _ = keys.wrapped_under(1);
    let loaded = keys.load(SUBJECT);
    let erased = c.is_erased(SUBJECT);
    let fixture = fixture();
    let sealed = Sealed::<EmailAddress, Transaction>::from_bytes(&fixture.envelope)
        .expect("the fixture parses");
    if let Ok(info) = c.open(&sealed) {
        out.opened = true;
        assert!(matches!(loaded, Ok(SubjectKeys::Live(_))), "{loaded:?}");
        assert!(matches!(erased, Ok(false)), "{erased:?}");
        let value = c.access(&info, |v| v.expose_secret() == VALUE);
        assert!(
            matches!(value, Ok(true)),
            "the envelope opened to another value"
        );
    }
    let info = PersonalInfo::<EmailAddress, Transaction>::collect(
        SUBJECT,
        EmailAddress::parse("grace@example.com").expect("email"),
    );
    if let Ok(new) = c.seal(&info) {
        out.sealed = true;
        let opened = c.open(&new).expect("what the custodian sealed opens");
        let same = c.access(&opened, |v| v.expose_secret() == "grace@example.com");
        assert!(
            matches!(same, Ok(true)),
            "a new envelope opened to another value"
        );
    }
    if matches!(erased, Ok(true)) {
        assert!(
            !out.opened && !out.sealed,
            "an erased subject's data was used"
        );
    }

    // Audit rows.
    if let Ok(events) = store.trail() {
        out.audit_rows = events.len();
        for e in &events {
            let json = serde_json::to_vec(e).expect("serializes");
            super::common::json_round_trip::<privacy_pledge::AuditEvent>(&json)
                .expect("a stored event round-trips");
        }
        let reports = verify_streams(&events, audit_key(), &[]);
        assert_eq!(
            reports.iter().map(|r| r.entries).sum::<usize>(),
            events.len()
        );
    }

    // Checkpoint rows.
    if let Ok(list) = store.checkpoints() {
        out.checkpoints = list.len();
        for signed in list {
            check_signed(&signed);
        }
    }

    // Erasure reads the pseudonym rows back.
    let _ = keys.destroy(SUBJECT, Timestamp::from_unix_seconds(super::common::NOW));
    out
}

/// A stored signed checkpoint that verifies was made by the fixed signer.
fn check_signed(signed: &SignedCheckpoint) {
    if let Ok((stream, head)) = signed.verify(&signer().public_key()) {
        assert_eq!(signer().sign(stream, head, signed.time()), *signed);
    }
}

/// The unused subject id, for rows about someone else.
pub const OTHER: SubjectId = SubjectId::from_bytes([0x33; 16]);
