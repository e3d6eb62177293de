//! Lookup tokens and column types on SQLite: sign-up, login by email,
//! erasure and its receipt on a real table (A1 host code using the crate as
//! documented; A2 reading the table), tokens across custodians, and what a
//! login leaves behind (nothing).

#[path = "common/lookup_shop.rs"]
mod lookup_shop;

use std::sync::Arc;

use lookup_shop::{CustomerTable, EmailColumn};
use privacy_pledge::crypto::{Keyring, LookupRef};
use privacy_pledge::data::{EmailAddress, FullName};
use privacy_pledge::purpose::{Newsletter, Transaction};
use privacy_pledge::store::sqlite::rusqlite::{params, OptionalExtension};
use privacy_pledge::store::sqlite::SqliteStore;
use privacy_pledge::{Custodian, Error, LookupToken, Sealed, SubjectId};

struct Sqlite(SqliteStore);

impl CustomerTable for Sqlite {
    fn insert(&self, subject: SubjectId, email: &EmailColumn, index: &LookupToken<EmailAddress>) {
        self.0
            .with_connection(|c| {
                c.execute(
                    "INSERT INTO customers (subject, email, email_index) VALUES ($1, $2, $3)",
                    params![subject.to_string(), email, index],
                )
            })
            .unwrap();
    }
    fn find(&self, index: &LookupToken<EmailAddress>) -> Option<(SubjectId, EmailColumn)> {
        self.0
            .with_connection(|c| {
                c.query_row(
                    "SELECT subject, email FROM customers WHERE email_index = $1",
                    [index],
                    |r| Ok((r.get::<_, String>(0)?, r.get(1)?)),
                )
                .optional()
            })
            .unwrap()
            .map(|(s, e)| (s.parse().unwrap(), e))
    }
    fn email_as_name(&self, subject: SubjectId) -> Result<Sealed<FullName, Transaction>, String> {
        self.0
            .with_connection(|c| {
                c.query_row(
                    "SELECT email FROM customers WHERE subject = $1",
                    [subject.to_string()],
                    |r| r.get(0),
                )
            })
            .map_err(|e| e.to_string())
    }
    fn raw_rows(&self) -> Vec<Vec<u8>> {
        self.0
            .with_connection(|c| {
                c.prepare("SELECT email, email_index FROM customers")?
                    .query_map([], |r| {
                        let mut row: Vec<u8> = r.get(0)?;
                        row.extend(r.get::<_, Vec<u8>>(1)?);
                        Ok(row)
                    })?
                    .collect::<Result<_, _>>()
            })
            .unwrap()
    }
    fn forget_index(&self, token: &LookupRef) {
        self.0
            .with_connection(|c| {
                c.execute(
                    "UPDATE customers SET email_index = NULL WHERE email_index = $1",
                    [token],
                )
            })
            .unwrap();
    }
}

fn shop() -> (Custodian, Sqlite) {
    let keyring = Arc::new(Keyring::generate().unwrap());
    let store = SqliteStore::open_in_memory().unwrap();
    store
        .with_connection(|c| {
            c.execute_batch(
                "CREATE TABLE customers (subject TEXT PRIMARY KEY, email BLOB NOT NULL, email_index BLOB);
                 CREATE INDEX customers_email ON customers (email_index);",
            )
        })
        .unwrap();
    let custodian = Custodian::builder()
        .keyring(keyring.clone())
        .key_store(store.key_store())
        .audit(store.audit_sink(keyring.audit_key()).unwrap())
        .build()
        .unwrap();
    (custodian, Sqlite(store))
}

#[test]
fn a1_a2_login_finds_the_customer_until_the_receipt_is_applied() {
    let (custodian, table) = shop();
    lookup_shop::login_finds_the_customer_until_the_receipt_is_applied(&custodian, &table);
}

/// A login lookup writes nothing: no audit event, no key-store row, no
/// noted token.
#[test]
fn a_login_lookup_writes_nothing() {
    let (custodian, table) = shop();
    let counts = || {
        table
            .0
            .with_connection(|c| {
                c.query_row(
                    "SELECT (SELECT COUNT(*) FROM pp_audit_log), (SELECT COUNT(*) FROM pp_subject_keys),
                            (SELECT COUNT(*) FROM pp_subject_pseudonyms)",
                    [],
                    |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?)),
                )
            })
            .unwrap()
    };
    let before = counts();
    for typed in ["ada@example.com", "mallory@example.org", "ADA@EXAMPLE.COM"] {
        custodian.lookup_token_of(&EmailAddress::parse(typed).unwrap());
    }
    assert_eq!(counts(), before);
}

/// Every process of a fleet (one keyring) makes the same token for a value;
/// a custodian under another keyring makes another, and a token differs
/// from the pseudonym of the same value (A5).
#[test]
fn a5_tokens_agree_across_custodians_of_one_keyring_only() {
    let keyring = Arc::new(Keyring::generate().unwrap());
    let make = |k: &Arc<Keyring>| Custodian::builder().keyring(k.clone()).build().unwrap();
    let (a, b) = (make(&keyring), make(&keyring));
    let other = make(&Arc::new(Keyring::generate().unwrap()));
    let email = EmailAddress::parse("ada@example.com").unwrap();
    assert_eq!(a.lookup_token_of(&email), b.lookup_token_of(&email));
    assert_ne!(a.lookup_token_of(&email), other.lookup_token_of(&email));
    // Imported elsewhere, the keyring makes the same tokens.
    let imported = Custodian::builder()
        .keyring(Keyring::import(&keyring.export()).unwrap())
        .build()
        .unwrap();
    assert_eq!(imported.lookup_token_of(&email), a.lookup_token_of(&email));
    let info = a
        .collect::<EmailAddress, Transaction>(SubjectId::random(), email.clone())
        .unwrap();
    assert_ne!(
        a.lookup_token(&info).unwrap().as_bytes(),
        a.pseudonym(&info).unwrap().as_bytes()
    );
}

/// Data held for a consent-based purpose gets a token only while consent is
/// live, and an erased subject gets none (A1 host code asking anyway).
#[test]
fn a1_no_token_without_live_consent_or_after_erasure() {
    let (custodian, _table) = shop();
    let subject = SubjectId::random();
    let info = privacy_pledge::PersonalInfo::<EmailAddress, Newsletter>::collect(
        subject,
        EmailAddress::parse("ada@example.com").unwrap(),
    );
    assert!(matches!(
        custodian.lookup_token(&info),
        Err(Error::NoConsent { .. })
    ));
    custodian.consents().grant::<Newsletter>(subject).unwrap();
    let token = custodian.lookup_token(&info).unwrap();
    let receipt = custodian.erase(subject).unwrap();
    assert_eq!(receipt.lookup_tokens(), &[token.to_ref()]);
    assert!(matches!(
        custodian.lookup_token(&info),
        Err(Error::Erased { .. })
    ));
}

/// A2 writes garbage into the sealed and index columns: reading them back
/// is an error, never a panic; an envelope stored as its text form reads too.
#[test]
fn a2_garbage_in_a_column_is_an_error() {
    let (custodian, table) = shop();
    let db = &table.0;
    let blobs: [&[u8]; 4] = [b"", b"\x01", &[0u8; 31], &[0xff; 200]];
    for (i, blob) in blobs.iter().enumerate() {
        db.with_connection(|c| {
            c.execute(
                "INSERT INTO customers (subject, email, email_index) VALUES ($1, $2, $3)",
                params![i.to_string(), blob, blob],
            )
        })
        .unwrap();
        let read = |column: &str| {
            db.with_connection(|c| {
                c.query_row(
                    &format!("SELECT {column} FROM customers WHERE subject = $1"),
                    [i.to_string()],
                    |r| {
                        Ok((
                            r.get::<_, EmailColumn>(0).is_err(),
                            r.get::<_, LookupToken<EmailAddress>>(0).is_err(),
                        ))
                    },
                )
            })
            .unwrap()
        };
        assert_eq!(read("email"), (true, true), "row {i}");
    }
    // The text form of an envelope (as older tables keep it) reads as well.
    let info = custodian
        .collect::<EmailAddress, Transaction>(
            SubjectId::random(),
            EmailAddress::parse("ada@example.com").unwrap(),
        )
        .unwrap();
    let text = custodian.seal(&info).unwrap().to_text();
    let back: EmailColumn = db
        .with_connection(|c| c.query_row("SELECT $1", [&text], |r| r.get(0)))
        .unwrap();
    assert_eq!(custodian.open(&back).unwrap().subject(), info.subject());
}
