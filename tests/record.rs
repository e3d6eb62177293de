//! Whole records: `#[derive(PersonalRecord)]` with `Custodian::seal_record`
//! and `Custodian::open_record` — the round trip, one audit event per
//! personal field, lookup-token columns, the subject's report, and what A1
//! (host code, careless or hostile) cannot do with a record: mix subjects
//! when sealing, swap another subject's envelope into a sealed record, or
//! seal a consent-based field without consent.
//!
//! The structs are `pub` in a crate that forbids `unsafe` and denies missing
//! docs, so the generated code is checked against both.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::sync::Arc;

use privacy_pledge::audit::{Action, AuditEvent, Outcome};
use privacy_pledge::data::{EmailAddress, FullName, Kind, PhoneNumber};
use privacy_pledge::policy::RuleId;
use privacy_pledge::purpose::{Newsletter, PurposeId, Support, Transaction};
use privacy_pledge::record::Field;
use privacy_pledge::report::{StoredRecord, Withheld};
use privacy_pledge::retention::{Retention, RetentionPolicy};
use privacy_pledge::time::{FixedClock, Timestamp};
use privacy_pledge::{
    Custodian, Error, LookupToken, PersonalInfo, PersonalRecord, SealedRecord, SubjectId,
};

/// A shop's customer: three personal fields, the email indexed, and a flag.
#[derive(PersonalRecord)]
pub struct Customer {
    /// For invoices.
    pub name: PersonalInfo<FullName, Transaction>,
    /// The login.
    #[pledge(lookup)]
    pub email: PersonalInfo<EmailAddress, Transaction>,
    /// For support calls.
    pub phone: PersonalInfo<PhoneNumber, Support>,
    /// Whether the customer asked for paper invoices.
    #[pledge(not_personal)]
    pub paper_invoices: bool,
}

/// A newsletter subscriber: one field held for a consent-based purpose.
#[derive(PersonalRecord)]
#[pledge(sealed = "SubscriberRow")]
pub struct Subscriber {
    /// The name on the invoice.
    pub name: PersonalInfo<FullName, Transaction>,
    /// Where the newsletter goes.
    #[pledge(lookup)]
    pub email: PersonalInfo<EmailAddress, Newsletter>,
}

const START: u64 = 1_530_316_800; // 2018-06-30

fn custodian() -> (Custodian, Arc<FixedClock>) {
    let clock = Arc::new(FixedClock::new(Timestamp::from_unix_seconds(START)));
    let custodian = Custodian::builder().clock(clock.clone()).build().unwrap();
    (custodian, clock)
}

fn events(custodian: &Custodian) -> Vec<AuditEvent> {
    custodian.builtin_audit_log().unwrap().inner().events()
}

fn customer(subject: SubjectId, email: &str) -> Customer {
    Customer {
        name: PersonalInfo::collect(subject, FullName::parse("Ada Lovelace").unwrap()),
        email: PersonalInfo::collect(subject, EmailAddress::parse(email).unwrap()),
        phone: PersonalInfo::collect(subject, PhoneNumber::parse("+44 20 7946 0958").unwrap()),
        paper_invoices: true,
    }
}

/// The token of a value as the custodian reads it: equal exactly when the
/// canonical forms are equal.
fn token_of<T, P>(custodian: &Custodian, info: &PersonalInfo<T, P>) -> LookupToken<T>
where
    T: privacy_pledge::data::DataKind,
    P: privacy_pledge::purpose::SeesPlaintext,
{
    custodian
        .access(info, |v| custodian.lookup_token_of(v))
        .unwrap()
}

#[test]
fn a_record_round_trips_whole() {
    let (custodian, _) = custodian();
    let ada = SubjectId::random();
    let record = customer(ada, "ada@example.com");
    assert_eq!(PersonalRecord::subject(&record), ada);

    let row: SealedCustomer = custodian.seal_record(&record).unwrap();
    assert_eq!(row.subject, ada);
    assert_eq!(SealedRecord::subject(&row), ada);
    assert!(row.paper_invoices);
    for sealed in row.records() {
        assert_eq!(sealed.subject(), ada);
    }
    // Sealed, not copied: the envelopes print redacted and hold no plaintext.
    let printed = format!("{row:?}");
    assert!(!printed.contains("ada@example.com") && !printed.contains("Lovelace"));

    let back: Customer = custodian.open_record(&row).unwrap();
    assert!(back.paper_invoices);
    assert_eq!(PersonalRecord::subject(&back), ada);
    assert_eq!(
        token_of(&custodian, &back.name),
        token_of(&custodian, &record.name)
    );
    assert_eq!(
        token_of(&custodian, &back.email),
        token_of(&custodian, &record.email)
    );
    assert_eq!(
        token_of(&custodian, &back.phone),
        token_of(&custodian, &record.phone)
    );
    // Opened values carry their envelope's collection time (R11).
    assert_eq!(back.email.collected_at(), Some(row.email.collected_at()));
}

#[test]
fn one_audit_event_per_personal_field() {
    let (custodian, _) = custodian();
    let ada = SubjectId::random();
    let row = custodian
        .seal_record(&customer(ada, "ada@example.com"))
        .unwrap();
    let expected = [
        (Kind::FullName, PurposeId::Transaction),
        (Kind::EmailAddress, PurposeId::Transaction),
        (Kind::PhoneNumber, PurposeId::Support),
    ];
    let seals: Vec<_> = events(&custodian)
        .into_iter()
        .map(|e| {
            assert_eq!(
                (e.action(), e.outcome(), e.subject(), e.rule()),
                (Action::Seal, Outcome::Allowed, ada, RuleId::R9)
            );
            (e.kind().unwrap(), e.purpose().unwrap())
        })
        .collect();
    assert_eq!(seals, expected);

    let before = events(&custodian).len();
    custodian.open_record(&row).unwrap();
    let opens: Vec<_> = events(&custodian)[before..]
        .iter()
        .map(|e| {
            assert_eq!(
                (e.action(), e.outcome(), e.subject()),
                (Action::Open, Outcome::Allowed, ada)
            );
            (e.kind().unwrap(), e.purpose().unwrap())
        })
        .collect();
    assert_eq!(opens, expected);
}

#[test]
fn fields_name_each_personal_field_without_its_value() {
    let (custodian, _) = custodian();
    let ada = SubjectId::random();
    let record = customer(ada, "ada@example.com");
    let fields = record.fields();
    assert_eq!(
        fields,
        [
            Field {
                name: "name",
                subject: ada,
                kind: Kind::FullName,
                purpose: PurposeId::Transaction
            },
            Field {
                name: "email",
                subject: ada,
                kind: Kind::EmailAddress,
                purpose: PurposeId::Transaction
            },
            Field {
                name: "phone",
                subject: ada,
                kind: Kind::PhoneNumber,
                purpose: PurposeId::Support
            },
        ]
    );
    let row = custodian.seal_record(&record).unwrap();
    assert_eq!(row.fields(), fields);
}

#[test]
fn the_lookup_column_is_the_token_of_the_value_as_typed() {
    let (custodian, _) = custodian();
    let ada = SubjectId::random();
    let row = custodian
        .seal_record(&customer(ada, "Ada@Example.com"))
        .unwrap();
    let typed = EmailAddress::parse("ada@example.COM").unwrap();
    assert_eq!(row.email_lookup, custodian.lookup_token_of(&typed));
    let other = EmailAddress::parse("bob@example.com").unwrap();
    assert_ne!(row.email_lookup, custodian.lookup_token_of(&other));
    // Noted for erasure like every token made from stored data.
    let receipt = custodian.erase(ada).unwrap();
    assert_eq!(receipt.lookup_tokens(), &[row.email_lookup.to_ref()]);
}

#[test]
fn the_records_feed_the_subject_report() {
    let (custodian, _) = custodian();
    let (ada, bob) = (SubjectId::random(), SubjectId::random());
    let ada_row = custodian
        .seal_record(&customer(ada, "ada@example.com"))
        .unwrap();
    let bob_row = custodian
        .seal_record(&customer(bob, "bob@example.com"))
        .unwrap();
    let log = custodian.builtin_audit_log().unwrap();
    let trail = custodian.verify_trail(log.inner().events()).unwrap();
    let mut records: Vec<&dyn StoredRecord> = ada_row.records();
    records.extend(bob_row.records());
    assert_eq!(records.len(), 6);

    let report = custodian.subject_report(ada, &records, &trail).unwrap();
    let kinds: Vec<_> = report.records().iter().map(|r| r.kind).collect();
    assert_eq!(
        kinds,
        [Kind::FullName, Kind::EmailAddress, Kind::PhoneNumber]
    );
    assert!(report.records().iter().all(|r| r.value.is_some()));
    let letter = report.to_letter();
    assert!(letter.contains("ada@example.com"));
    assert!(!letter.contains("bob@example.com"));
}

#[test]
fn a1_mixed_subjects_are_refused_before_anything_is_sealed_or_audited() {
    let (custodian, _) = custodian();
    let (ada, bob) = (SubjectId::random(), SubjectId::random());
    // Hostile or careless host code puts Bob's phone into Ada's record.
    let mut record = customer(ada, "ada@example.com");
    record.phone = PersonalInfo::collect(bob, PhoneNumber::parse("+49 30 123456").unwrap());

    let err = custodian.seal_record(&record).unwrap_err();
    assert!(
        matches!(
            err,
            Error::MixedSubjects { expected, found, field: "phone" } if expected == ada && found == bob
        ),
        "{err:?}"
    );
    assert_eq!(err.rule(), Some(RuleId::R9));
    // The message names the field and the subjects' ids, never a value.
    let message = err.to_string();
    assert!(message.starts_with("R9: field `phone`"), "{message}");
    assert!(!message.contains("+49") && !message.contains("ada@"));
    assert!(events(&custodian).is_empty(), "nothing audited");
    // Nothing sealed either: no lookup token was made (the erasure lists none).
    assert!(custodian.erase(ada).unwrap().lookup_tokens().is_empty());
}

#[test]
fn a1_a_swapped_envelope_is_refused_before_anything_is_opened() {
    let (custodian, _) = custodian();
    let (ada, bob) = (SubjectId::random(), SubjectId::random());
    let ada_row = custodian
        .seal_record(&customer(ada, "ada@example.com"))
        .unwrap();
    let bob_row = custodian
        .seal_record(&customer(bob, "bob@example.com"))
        .unwrap();
    let audited = events(&custodian).len();

    // A1 edits Ada's sealed record: Bob's email envelope in Ada's row.
    let mut swapped = ada_row.clone();
    swapped.email = bob_row.email.clone();
    let err = custodian.open_record(&swapped).err().unwrap();
    assert!(
        matches!(
            err,
            Error::MixedSubjects { expected, found, field: "email" } if expected == ada && found == bob
        ),
        "{err:?}"
    );

    // Renaming the whole row to Bob does not help: Ada's name is still Ada's.
    let mut renamed = swapped.clone();
    renamed.subject = bob;
    let err = custodian.open_record(&renamed).err().unwrap();
    assert!(
        matches!(err, Error::MixedSubjects { expected, found, field: "name" } if expected == bob && found == ada),
        "{err:?}"
    );
    assert_eq!(
        events(&custodian).len(),
        audited,
        "nothing opened, nothing audited"
    );

    // The untouched rows still open.
    assert!(custodian.open_record(&ada_row).is_ok());
    assert!(custodian.open_record(&bob_row).is_ok());
}

#[test]
fn a_consent_based_field_without_consent_is_refused_before_anything_is_sealed() {
    let (custodian, _) = custodian();
    let ada = SubjectId::random();
    let subscriber = || Subscriber {
        name: PersonalInfo::collect(ada, FullName::parse("Ada Lovelace").unwrap()),
        email: PersonalInfo::collect(ada, EmailAddress::parse("ada@example.com").unwrap()),
    };

    let err = custodian.seal_record(&subscriber()).err().unwrap();
    assert!(
        matches!(err, Error::NoConsent { subject, purpose: PurposeId::Newsletter } if subject == ada),
        "{err:?}"
    );
    // One refusal, about the field it concerns; no seal allowed, not even of
    // `name`, which needs no consent.
    let trail = events(&custodian);
    assert_eq!(trail.len(), 1);
    assert_eq!(
        (
            trail[0].action(),
            trail[0].outcome(),
            trail[0].kind(),
            trail[0].purpose()
        ),
        (
            Action::Seal,
            Outcome::Denied,
            Some(Kind::EmailAddress),
            Some(PurposeId::Newsletter)
        )
    );
    assert!(custodian.erase(ada).unwrap().lookup_tokens().is_empty());

    // With the subscription, the same record seals.
    let bob = SubjectId::random();
    custodian.consents().grant::<Newsletter>(bob).unwrap();
    let bob_subscriber = Subscriber {
        name: PersonalInfo::collect(bob, FullName::parse("Bob Smith").unwrap()),
        email: PersonalInfo::collect(bob, EmailAddress::parse("bob@example.com").unwrap()),
    };
    let row: SubscriberRow = custodian.seal_record(&bob_subscriber).unwrap();
    assert_eq!(
        row.email_lookup,
        custodian.lookup_token_of(&EmailAddress::parse("bob@example.com").unwrap())
    );
    assert!(custodian.open_record(&row).is_ok());

    // After the withdrawal, the Newsletter field is past retention (R11):
    // refused before anything is opened, the refusal about that field.
    custodian.consents().withdraw::<Newsletter>(bob).unwrap();
    let before = events(&custodian).len();
    assert!(matches!(
        custodian.open_record(&row),
        Err(Error::Expired {
            purpose: PurposeId::Newsletter,
            ..
        })
    ));
    let after = events(&custodian);
    assert_eq!(after.len(), before + 1);
    assert_eq!(
        (
            after[before].action(),
            after[before].outcome(),
            after[before].kind()
        ),
        (Action::Open, Outcome::Denied, Some(Kind::EmailAddress))
    );
    // And a new record for the withdrawn purpose does not seal.
    assert!(matches!(
        custodian.seal_record(&bob_subscriber),
        Err(Error::NoConsent { .. })
    ));
}

#[test]
fn a_field_past_retention_stops_the_whole_open() {
    let clock = Arc::new(FixedClock::new(Timestamp::from_unix_seconds(START)));
    let custodian = Custodian::builder()
        .clock(clock.clone())
        .retention(RetentionPolicy::default().with(PurposeId::Support, Retention::Days(30)))
        .build()
        .unwrap();
    let ada = SubjectId::random();
    let row = custodian
        .seal_record(&customer(ada, "ada@example.com"))
        .unwrap();
    clock.advance_seconds(31 * 86_400);
    let before = events(&custodian).len();
    let err = custodian.open_record(&row).err().unwrap();
    assert!(
        matches!(
            err,
            Error::Expired {
                kind: Kind::PhoneNumber,
                purpose: PurposeId::Support,
                ..
            }
        ),
        "{err:?}"
    );
    // Not `name` and `email` first: one refusal, nothing opened.
    let after = events(&custodian);
    assert_eq!(after.len(), before + 1);
    assert_eq!(after[before].outcome(), Outcome::Denied);
    // The sweep lists the same field, by its place in `records()`.
    let due = custodian.sweep(&row.records());
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].index, 2);
}

#[test]
fn an_erased_subject_is_refused_whole() {
    let (custodian, _) = custodian();
    let ada = SubjectId::random();
    let record = customer(ada, "ada@example.com");
    let row = custodian.seal_record(&record).unwrap();
    custodian.erase(ada).unwrap();
    let before = events(&custodian).len();

    assert!(matches!(
        custodian.seal_record(&record),
        Err(Error::Erased { .. })
    ));
    assert!(matches!(
        custodian.open_record(&row),
        Err(Error::Erased { .. })
    ));
    let after = events(&custodian);
    assert_eq!(after.len(), before + 2, "one refusal each");
    assert!(after[before..]
        .iter()
        .all(|e| e.outcome() == Outcome::Denied && e.kind() == Some(Kind::FullName)));

    // The report lists the record as erased.
    let log = custodian.builtin_audit_log().unwrap();
    let trail = custodian.verify_trail(log.inner().events()).unwrap();
    let report = custodian
        .subject_report(ada, &row.records(), &trail)
        .unwrap();
    assert!(report
        .records()
        .iter()
        .all(|r| r.withheld == Some(Withheld::Erased)));
}

#[test]
fn a_failing_audit_sink_stops_the_record() {
    use privacy_pledge::audit::{AuditError, AuditSink};
    struct Refuses;
    impl AuditSink for Refuses {
        fn record(&self, _: &AuditEvent) -> Result<(), AuditError> {
            Err(AuditError::new("disk full"))
        }
    }
    let custodian = Custodian::builder().audit(Refuses).build().unwrap();
    let ada = SubjectId::random();
    assert!(matches!(
        custodian.seal_record(&customer(ada, "ada@example.com")),
        Err(Error::Audit(_))
    ));
}
