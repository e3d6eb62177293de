//! Where data may go and how long it stays (R8, R11), and the subject's own view.

use std::sync::Arc;

use privacy_pledge::audit::{Action, Outcome};
use privacy_pledge::country::Country;
use privacy_pledge::data::{EmailAddress, FullName, PhoneNumber};
use privacy_pledge::policy::RuleId;
use privacy_pledge::purpose::{Promotion, PurposeId, Support, Transaction};
use privacy_pledge::recipient::{Processor, Recipient};
use privacy_pledge::report::{StoredRecord, Withheld};
use privacy_pledge::retention::{Retention, RetentionPolicy};
use privacy_pledge::time::{Clock, FixedClock, Timestamp};
use privacy_pledge::transfer::{InvalidMechanism, Mechanism, Transfer, TransferError};
use privacy_pledge::{Custodian, Error, PersonalInfo, Sealed, SubjectId};
use proptest::prelude::*;

fn c(code: &str) -> Country {
    code.parse().unwrap()
}

fn email(subject: SubjectId, text: &str) -> PersonalInfo<EmailAddress, Transaction> {
    PersonalInfo::collect(subject, EmailAddress::parse(text).unwrap())
}

fn custodian_in(facilities: &[&str]) -> Custodian {
    Custodian::builder()
        .facilities(facilities.iter().map(|f| c(f)))
        .build()
        .unwrap()
}

fn events(custodian: &Custodian) -> Vec<privacy_pledge::AuditEvent> {
    custodian.builtin_audit_log().unwrap().inner().events()
}

/// The custodian's own trail, verified against its in-process head.
fn verified(custodian: &Custodian) -> privacy_pledge::audit::VerifiedTrail {
    let log = custodian.builtin_audit_log().unwrap();
    custodian.verify_trail(log.inner().events()).unwrap()
}

#[test]
fn transfers_only_to_facilities_and_out_of_the_eea_only_with_a_mechanism() {
    let custodian = custodian_in(&["DE", "US", "GB"]);
    let info = email(SubjectId::random(), "ada@example.com");

    let refusals = [
        (
            Transfer::new(c("DE"), c("BR")),
            TransferError::NotAFacility { country: c("BR") },
        ),
        (
            Transfer::new(c("DE"), c("BR")).under(Mechanism::StandardContractualClauses),
            TransferError::NotAFacility { country: c("BR") },
        ),
        (
            Transfer::new(c("DE"), c("US")),
            TransferError::MechanismRequired { country: c("US") },
        ),
        (
            Transfer::new(c("DE"), c("US")).under(Mechanism::AdequacyDecision),
            TransferError::MechanismDoesNotCover {
                mechanism: Mechanism::AdequacyDecision,
                country: c("US"),
            },
        ),
    ];
    for (t, expected) in refusals {
        match custodian.transfer(&info, &t) {
            Err(Error::Transfer(e)) => assert_eq!(e, expected),
            other => panic!("{t:?} gave {other:?}"),
        }
        let last = events(&custodian).pop().unwrap();
        assert_eq!(
            (last.action(), last.outcome(), last.rule()),
            (Action::Transfer, Outcome::Denied, RuleId::R8)
        );
        assert_eq!(last.country(), Some(t.to()));
    }

    let allowed = [
        Transfer::new(c("DE"), c("US")).under(Mechanism::DataPrivacyFramework),
        Transfer::new(c("DE"), c("US")).under(Mechanism::StandardContractualClauses),
        Transfer::new(c("DE"), c("GB")).under(Mechanism::AdequacyDecision),
        Transfer::new(c("US"), c("GB")).under(Mechanism::AdequacyDecision),
        Transfer::new(c("GB"), c("DE")),
    ];
    for t in allowed {
        let record = custodian.transfer(&info, &t).unwrap();
        assert_eq!(record.to(), t.to());
        let last = events(&custodian).pop().unwrap();
        assert_eq!(
            (last.action(), last.outcome()),
            (Action::Transfer, Outcome::Allowed)
        );
        assert_eq!(last.mechanism(), t.mechanism());
    }

    // No facilities declared: nothing may go anywhere.
    let closed = Custodian::in_memory();
    assert!(closed
        .transfer(&info, &Transfer::new(c("DE"), c("DE")))
        .is_err());
}

struct Processor1 {
    countries: Vec<Country>,
    mechanism: Option<Mechanism>,
}

impl Recipient for Processor1 {
    type Role = Processor;
    fn name(&self) -> &str {
        "cloud mail"
    }
    fn processes_in(&self) -> &[Country] {
        &self.countries
    }
    fn transfer_mechanism(&self) -> Option<Mechanism> {
        self.mechanism
    }
}

#[test]
fn disclosure_to_a_recipient_abroad_is_checked_like_a_transfer() {
    let custodian = custodian_in(&["DE", "US"]);
    let info = email(SubjectId::random(), "ada@example.com");
    let ran = std::cell::Cell::new(0);

    let abroad = Processor1 {
        countries: vec![c("US")],
        mechanism: None,
    };
    assert!(matches!(
        custodian.disclose(&info, &abroad, |_| ran.set(ran.get() + 1)),
        Err(Error::Transfer(TransferError::MechanismRequired { .. }))
    ));
    let nowhere = Processor1 {
        countries: vec![c("SG")],
        mechanism: Some(Mechanism::StandardContractualClauses),
    };
    assert!(matches!(
        custodian.disclose(&info, &nowhere, |_| ran.set(ran.get() + 1)),
        Err(Error::Transfer(TransferError::NotAFacility { .. }))
    ));
    assert_eq!(ran.get(), 0);
    let denied = events(&custodian).pop().unwrap();
    assert_eq!(
        (denied.action(), denied.outcome(), denied.rule()),
        (Action::Disclose, Outcome::Denied, RuleId::R8)
    );

    let covered = Processor1 {
        countries: vec![c("US")],
        mechanism: Some(Mechanism::StandardContractualClauses),
    };
    custodian
        .disclose(&info, &covered, |_| ran.set(ran.get() + 1))
        .unwrap();
    let home = Processor1 {
        countries: vec![c("DE")],
        mechanism: None,
    };
    let went_abroad = events(&custodian).pop().unwrap();
    custodian
        .disclose(&info, &home, |_| ran.set(ran.get() + 1))
        .unwrap();
    let stayed = events(&custodian).pop().unwrap();
    assert_eq!(ran.get(), 2);
    // A4: the allowed disclosure abroad names where the data went and
    // under which mechanism (R8), as a transfer's event does; one that
    // stayed home names neither. The subject's report lists it abroad.
    assert_eq!(
        (
            went_abroad.outcome(),
            went_abroad.country(),
            went_abroad.mechanism()
        ),
        (
            Outcome::Allowed,
            Some(c("US")),
            Some(Mechanism::StandardContractualClauses)
        )
    );
    assert_eq!((stayed.country(), stayed.mechanism()), (None, None));
    let report = custodian
        .subject_report(info.subject(), &[], &verified(&custodian))
        .unwrap();
    assert_eq!(report.transfers().len(), 1);
    assert_eq!(report.transfers()[0].country, Some(c("US")));
    assert!(report.to_letter().as_str().contains("to US under"));

    // Pseudonyms are personal information too: the same gate applies.
    assert!(matches!(
        custodian.disclose_pseudonym(&info, &abroad, |_| ran.set(ran.get() + 1)),
        Err(Error::Transfer(TransferError::MechanismRequired { .. }))
    ));
    custodian
        .disclose_pseudonym(&info, &covered, |_| ran.set(ran.get() + 1))
        .unwrap();
    assert_eq!(ran.get(), 3);
}

fn clocked(retention: RetentionPolicy, at: u64) -> (Custodian, Arc<FixedClock>) {
    let clock = Arc::new(FixedClock::new(Timestamp::from_unix_seconds(at)));
    let custodian = Custodian::builder()
        .clock(clock.clone())
        .retention(retention)
        .build()
        .unwrap();
    (custodian, clock)
}

#[test]
fn retention_by_time_across_the_boundary() {
    let t0 = 1_600_000_000;
    let policy = RetentionPolicy::default().with(PurposeId::Transaction, Retention::Days(30));
    let (custodian, clock) = clocked(policy, t0);
    let ada = SubjectId::random();
    let sealed = custodian.seal(&email(ada, "ada@example.com")).unwrap();
    assert_eq!(sealed.collected_at(), Timestamp::from_unix_seconds(t0));
    let support: PersonalInfo<PhoneNumber, Support> =
        PersonalInfo::collect(ada, PhoneNumber::parse("+4930123456").unwrap());
    let phone = custodian.seal(&support).unwrap();

    let boundary = Timestamp::from_unix_seconds(t0 + 30 * 86_400);
    clock.set(Timestamp::from_unix_seconds(t0 + 30 * 86_400 - 1));
    assert!(custodian.open(&sealed).is_ok());
    assert!(custodian.sweep(&[&sealed, &phone]).is_empty());

    clock.set(boundary);
    match custodian.open(&sealed) {
        Err(Error::Expired {
            expired_at,
            purpose,
            ..
        }) => {
            assert_eq!(expired_at, boundary);
            assert_eq!(purpose, PurposeId::Transaction);
        }
        other => panic!("expected Expired, got {other:?}"),
    }
    let last = events(&custodian).pop().unwrap();
    assert_eq!(
        (last.action(), last.outcome(), last.rule()),
        (Action::Open, Outcome::Denied, RuleId::R11)
    );

    let due = custodian.sweep(&[&sealed, &phone]);
    assert_eq!(due.len(), 1);
    assert_eq!(
        (due[0].index, due[0].subject, due[0].expired_at),
        (0, ada, boundary)
    );
    // Support keeps three years by default: still readable.
    assert!(custodian.open(&phone).is_ok());

    // Re-sealing keeps the original collection time; a later one is refused,
    // so retention cannot be stretched by re-dating a value.
    let resealed = custodian.seal_at(&support, phone.collected_at()).unwrap();
    assert_eq!(resealed.collected_at(), phone.collected_at());
    let later = clock.now().plus_seconds(1);
    assert!(matches!(
        custodian.seal_at(&support, later),
        Err(Error::CollectedInFuture { .. })
    ));
}

/// Ada's email repurposed for `Promotion` under her live consent, sealed.
fn promotion_sealed(custodian: &Custodian, ada: SubjectId) -> Sealed<EmailAddress, Promotion> {
    let proof = custodian.consent_proof::<Promotion>(ada).unwrap();
    let promo = custodian
        .repurpose_with_consent(email(ada, "ada@example.com"), &proof)
        .unwrap();
    custodian.seal(&promo).unwrap()
}

#[test]
fn consent_bound_data_expires_with_the_withdrawal() {
    let (custodian, clock) = clocked(RetentionPolicy::default(), 1_700_000_000);
    let ada = SubjectId::random();
    custodian.consents().grant::<Promotion>(ada).unwrap();
    let sealed = promotion_sealed(&custodian, ada);
    assert!(custodian.open(&sealed).is_ok());

    clock.advance_seconds(3_600);
    custodian.consents().withdraw::<Promotion>(ada).unwrap();
    match custodian.open(&sealed) {
        Err(Error::Expired { expired_at, .. }) => {
            assert_eq!(expired_at, Timestamp::from_unix_seconds(1_700_003_600))
        }
        other => panic!("expected Expired, got {other:?}"),
    }
    assert_eq!(custodian.sweep(&[&sealed]).len(), 1);
}

/// A1 (the host's retention policy): a period set for a consent-based
/// purpose, or `UntilErased`, never makes data collected before a
/// withdrawal live again after a new grant (R7); a period still ends it
/// sooner.
#[test]
fn a1_a_retention_policy_never_outlasts_a_withdrawal() {
    for (retention, lasts) in [
        (Retention::UntilErased, None),
        (Retention::Days(30), Some(30 * 86_400)),
    ] {
        let policy = RetentionPolicy::default().with(PurposeId::Promotion, retention);
        let (custodian, clock) = clocked(policy, 1_700_000_000);
        let ada = SubjectId::random();
        custodian.consents().grant::<Promotion>(ada).unwrap();
        let sealed = promotion_sealed(&custodian, ada);
        clock.advance_seconds(3_600);
        custodian.consents().withdraw::<Promotion>(ada).unwrap();
        clock.advance_seconds(3_600);
        custodian.consents().grant::<Promotion>(ada).unwrap();
        let opened = custodian.open(&sealed);
        assert!(
            matches!(opened, Err(Error::Expired { .. })),
            "{retention:?}: {opened:?}"
        );
        assert_eq!(custodian.sweep(&[&sealed]).len(), 1, "{retention:?}");
        // Collected under the new grant: live, for the period if any.
        let fresh = promotion_sealed(&custodian, ada);
        assert!(custodian.open(&fresh).is_ok(), "{retention:?}");
        if let Some(lasts) = lasts {
            clock.advance_seconds(lasts);
            assert!(matches!(custodian.open(&fresh), Err(Error::Expired { .. })));
        }
    }
}

struct Mailer;
impl Recipient for Mailer {
    type Role = Processor;
    fn name(&self) -> &str {
        "mail delivery"
    }
}

#[test]
fn a_report_holds_every_record_given_and_no_other_subjects_data() {
    let custodian = custodian_in(&["DE", "US"]);
    let ada = SubjectId::random();
    let bob = SubjectId::random();
    let ada_email = email(ada, "ada@example.com");
    let ada_name: PersonalInfo<FullName, Transaction> =
        PersonalInfo::collect(ada, FullName::parse("Ada Lovelace").unwrap());
    let bob_email = email(bob, "bob.secret@example.net");
    custodian.disclose(&ada_email, &Mailer, |_| ()).unwrap();
    custodian.disclose(&bob_email, &Mailer, |_| ()).unwrap();
    custodian
        .transfer(
            &ada_email,
            &Transfer::new(c("DE"), c("US")).under(Mechanism::DataPrivacyFramework),
        )
        .unwrap();
    custodian.consents().grant::<Promotion>(ada).unwrap();

    let rows = [
        custodian.seal(&ada_email).unwrap(),
        custodian.seal(&bob_email).unwrap(),
    ];
    let name_row = custodian.seal(&ada_name).unwrap();
    let records: Vec<&dyn StoredRecord> = vec![&rows[0], &rows[1], &name_row];
    let trail = verified(&custodian);

    let report = custodian.subject_report(ada, &records, &trail).unwrap();
    assert_eq!(report.subject(), ada);
    assert_eq!(report.erased_at(), None);
    let values: Vec<&str> = report
        .records()
        .iter()
        .map(|r| r.value.as_ref().unwrap().as_str())
        .collect();
    assert_eq!(values, ["ada@example.com", "Ada Lovelace"]);
    assert_eq!(report.disclosures().len(), 1);
    assert_eq!(report.disclosures()[0].recipient, "mail delivery");
    assert_eq!(report.transfers().len(), 1);
    assert_eq!(
        report.transfers()[0].mechanism,
        Some(Mechanism::DataPrivacyFramework)
    );
    assert_eq!(report.consents().len(), 1);
    let consent = report.consent_entries()[0];
    assert!(consent.granted && consent.withdrawn_at.is_none());
    assert_eq!(consent.granted_at, Some(report.consents()[0].since));
    assert!(report.records().iter().all(|r| r.kept_until.is_some()));

    let json = report.to_json().unwrap();
    let letter = report.to_letter();
    for text in [json.as_str(), letter.as_str()] {
        assert!(text.contains("ada@example.com") && text.contains("Ada Lovelace"));
        assert!(
            !text.contains("bob.secret"),
            "another subject's data in the report"
        );
        assert!(!text.contains(&bob.to_string()));
    }
    assert!(
        !format!("{report:?}").contains("ada@example.com"),
        "Debug is redacted"
    );
    let parsed: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(parsed["records"].as_array().unwrap().len(), 2);

    // The report itself is an audited use.
    let made = events(&custodian)
        .into_iter()
        .filter(|e| e.action() == Action::Report)
        .count();
    assert_eq!(made, 1);

    // Withdrawn: the grant time comes from the trail, the letter says both.
    custodian.consents().withdraw::<Promotion>(ada).unwrap();
    let withdrawn = custodian
        .subject_report(ada, &records, &verified(&custodian))
        .unwrap();
    let entry = withdrawn.consent_entries()[0];
    assert!(!entry.granted);
    assert_eq!(entry.granted_at, consent.granted_at);
    assert_eq!(entry.withdrawn_at, Some(entry.since));
    let letter = withdrawn.to_letter();
    assert!(letter.contains("Consents you withdrew:"), "{}", *letter);
    assert!(letter.contains("given "), "{}", *letter);
}

#[test]
fn an_erased_subjects_report_says_so() {
    let custodian = Custodian::in_memory();
    let ada = SubjectId::random();
    let row = custodian.seal(&email(ada, "ada@example.com")).unwrap();
    let receipt = custodian.erase(ada).unwrap();
    let trail = verified(&custodian);
    let report = custodian.subject_report(ada, &[&row], &trail).unwrap();
    assert_eq!(report.erased_at(), Some(receipt.at()));
    assert_eq!(report.records()[0].withheld, Some(Withheld::Erased));
    assert!(report.records()[0].value.is_none());
    let letter = report.to_letter();
    assert!(letter.contains("erased on"));
    assert!(!letter.contains("ada@example.com"));
}

#[test]
fn consents_survive_a_restart_through_the_trail() {
    let keyring = Arc::new(privacy_pledge::crypto::Keyring::generate().unwrap());
    let checkpoints = privacy_pledge::audit::MemoryCheckpointStore::new();
    let build = || {
        Custodian::builder()
            .keyring(keyring.clone())
            .checkpoint_store(checkpoints.clone())
            .build()
            .unwrap()
    };
    let before = build();
    let (ada, bob) = (SubjectId::random(), SubjectId::random());
    before.consents().grant::<Promotion>(ada).unwrap();
    before.consents().grant::<Promotion>(bob).unwrap();
    before.consents().withdraw::<Promotion>(bob).unwrap();
    let trail = events(&before);
    before.sign_checkpoint().unwrap();

    // An edited trail (bob's withdrawal turned into a grant through the
    // public serde form) does not verify, so nothing can be restored from it.
    let mut forged = trail.clone();
    let json = serde_json::to_string(&forged[2]).unwrap();
    forged[2] =
        serde_json::from_str(&json.replace("consent_withdrawn", "consent_granted")).unwrap();
    let tampered = build();
    assert!(matches!(
        tampered.verify_trail(forged),
        Err(Error::Untrusted(_))
    ));
    assert!(!tampered.consents().is_granted::<Promotion>(bob));
    assert!(!tampered.consents().is_granted::<Promotion>(ada));
    // Nor does a genuine trail verified by a custodian with other keys.
    let stranger = Custodian::in_memory();
    assert!(stranger.verify_trail(trail.clone()).is_err());

    let after = build();
    let verified = after.verify_trail(trail).unwrap();
    assert_eq!(after.consents().restore(&verified).unwrap(), 3);
    assert!(after.consents().is_granted::<Promotion>(ada));
    assert!(!after.consents().is_granted::<Promotion>(bob));
}

#[test]
fn the_processing_record_names_the_hosts_facilities_and_retention() {
    let custodian = Custodian::builder()
        .facilities([c("DE"), c("US")])
        .retention(RetentionPolicy::default().with(PurposeId::Support, Retention::Days(90)))
        .build()
        .unwrap();
    let record = custodian.processing_record();
    assert_eq!(record.transfer_destinations, [c("DE"), c("US")]);
    let support = record
        .activities
        .iter()
        .find(|a| a.purpose == PurposeId::Support)
        .unwrap();
    assert_eq!(support.retention, Retention::Days(90));
    let json: serde_json::Value = serde_json::from_str(&record.to_json()).unwrap();
    assert_eq!(json["transfer_destinations"][1], "US");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn country_codes_parse_strictly(s in any::<String>()) {
        match s.parse::<Country>() {
            Ok(c) => {
                prop_assert_eq!(c.code(), s.as_str());
                prop_assert!(Country::all().any(|a| a == c));
            }
            Err(_) => prop_assert!(!Country::all().any(|a| a.code() == s)),
        }
    }

    #[test]
    fn two_letter_codes(s in "[A-Za-z]{2}") {
        let listed = Country::all().any(|a| a.code() == s);
        prop_assert_eq!(s.parse::<Country>().is_ok(), listed);
    }

    #[test]
    fn mechanisms_parse_strictly(s in any::<String>()) {
        match s.parse::<Mechanism>() {
            Ok(m) => prop_assert_eq!(m.as_str(), s.as_str()),
            Err(InvalidMechanism::Invalidated(_)) => {
                let l = s.to_lowercase();
                prop_assert!(l.contains("safe") || l.contains("privacy"));
            }
            Err(InvalidMechanism::Unknown) => {}
        }
    }

    #[test]
    fn mechanism_like_text(s in "(safe|Safe|SAFE)[ _-]?(harbor|harbour|Harbor)|privacy[ -]shield|[a-z-]{0,30}") {
        let _ = s.parse::<Mechanism>();
    }
}

/// A1 (R11): a value past its retention period gets no pseudonym and no
/// lookup token, as every audited use refuses it: one collected for a
/// consent-based purpose before a withdrawal (a new grant does not revive
/// it), and one held longer than its purpose's days. Each refusal is
/// recorded.
#[test]
fn an_expired_value_gets_no_pseudonym_and_no_lookup_token() {
    use privacy_pledge::purpose::{Correspondence, Promotion};
    const DAY: u64 = 86_400;
    let (c, clock) = clocked(RetentionPolicy::default(), 1_600_000_000);
    let ada = SubjectId::random();
    c.consents().grant::<Promotion>(ada).unwrap();
    let promo: PersonalInfo<EmailAddress, Promotion> = c
        .collect(ada, EmailAddress::parse("ada@example.com").unwrap())
        .unwrap();
    clock.advance_seconds(DAY);
    c.consents().withdraw::<Promotion>(ada).unwrap();
    clock.advance_seconds(DAY);
    c.consents().grant::<Promotion>(ada).unwrap();
    let mail: PersonalInfo<EmailAddress, Correspondence> = c
        .collect(ada, EmailAddress::parse("ada@example.com").unwrap())
        .unwrap();
    assert!(c.pseudonym(&mail).is_ok(), "within its retention period");
    clock.advance_seconds(731 * DAY);
    for expired in [
        c.pseudonym(&promo).map(|_| ()),
        c.lookup_token(&promo).map(|_| ()),
        c.pseudonym(&mail).map(|_| ()),
        c.lookup_token(&mail).map(|_| ()),
    ] {
        assert!(matches!(expired, Err(Error::Expired { .. })), "{expired:?}");
    }
    let refused = events(&c)
        .iter()
        .filter(|e| e.outcome() == Outcome::Denied && e.rule() == RuleId::R11)
        .count();
    assert_eq!(refused, 4);
}
