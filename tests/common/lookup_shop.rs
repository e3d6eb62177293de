//! A shop's customer table with a sealed email column and its lookup-token
//! index, the same scenario on every database: sign-up, login by the email
//! as typed, erasure, and the host applying the erasure receipt.

use privacy_pledge::crypto::LookupRef;
use privacy_pledge::data::{EmailAddress, FullName};
use privacy_pledge::purpose::Transaction;
use privacy_pledge::{Custodian, LookupToken, Sealed, SubjectId};

/// The sealed email column as the shop stores it.
pub type EmailColumn = Sealed<EmailAddress, Transaction>;

/// The host's own table, on one database.
pub trait CustomerTable {
    /// `INSERT INTO customers (subject, email, email_index) VALUES (…)`.
    fn insert(&self, subject: SubjectId, email: &EmailColumn, index: &LookupToken<EmailAddress>);
    /// `SELECT subject, email FROM customers WHERE email_index = $1`.
    fn find(&self, index: &LookupToken<EmailAddress>) -> Option<(SubjectId, EmailColumn)>;
    /// The email column of `subject` read as another type.
    fn email_as_name(&self, subject: SubjectId) -> Result<Sealed<FullName, Transaction>, String>;
    /// The raw bytes of every stored column, as the operator (A2) sees them.
    fn raw_rows(&self) -> Vec<Vec<u8>>;
    /// Applies one entry of an erasure receipt: clears the index entries
    /// holding `token`.
    fn forget_index(&self, token: &LookupRef);
}

/// Sign-up, login, erasure and the receipt, on `table`.
pub fn login_finds_the_customer_until_the_receipt_is_applied(
    custodian: &Custodian,
    table: &dyn CustomerTable,
) {
    let emails = [
        "ada@example.com",
        "grace.hopper@example.org",
        "alan@example.net",
    ];
    let mut subjects = Vec::new();
    for e in emails {
        let subject = SubjectId::random();
        let email = custodian
            .collect::<EmailAddress, Transaction>(subject, EmailAddress::parse(e).unwrap())
            .unwrap();
        table.insert(
            subject,
            &custodian.seal(&email).unwrap(),
            &custodian.lookup_token(&email).unwrap(),
        );
        subjects.push(subject);
    }
    // A2 sees envelopes and tokens only.
    for row in table.raw_rows() {
        for e in emails {
            let needle = e.split('@').next().unwrap().as_bytes();
            assert!(
                !row.windows(needle.len()).any(|w| w == needle),
                "a stored column holds plaintext"
            );
        }
    }

    // Login with the address as typed: nothing collected, nothing written.
    let login = |typed: &str| {
        let token = custodian.lookup_token_of(&EmailAddress::parse(typed).unwrap());
        table.find(&token)
    };
    let (found, sealed) = login("ADA@Example.COM").expect("the customer is found");
    assert_eq!(found, subjects[0]);
    let opened = custodian.open(&sealed).unwrap();
    assert_eq!(opened.subject(), subjects[0]);
    assert!(login("nobody@example.com").is_none());

    // The email column read as a name is refused, naming no value.
    let err = table.email_as_name(subjects[0]).unwrap_err();
    assert!(
        !err.contains("ada@") && !err.contains("example.com"),
        "{err}"
    );

    // Erasure: the envelope no longer opens, but the token still matches
    // until the host applies the receipt.
    let receipt = custodian.erase(subjects[0]).unwrap();
    assert_eq!(receipt.lookup_tokens().len(), 1);
    assert!(custodian.open(&sealed).is_err());
    assert!(login("ada@example.com").is_some());
    for token in receipt.lookup_tokens() {
        table.forget_index(token);
    }
    assert!(login("ada@example.com").is_none());
    // Everyone else still logs in.
    assert_eq!(login("alan@example.net").unwrap().0, subjects[2]);
}
