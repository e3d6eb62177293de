//! Regression tests for the holes a hostile review found, one test (or more)
//! per finding. Each names the actor of the threat model it plays:
//! A1 hostile host code (public API only, safe Rust), A2 the database
//! operator, A3 a backup holder.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use privacy_pledge::audit::{
    Action, AuditError, AuditEvent, AuditKey, AuditSink, ChainedAuditLog, Checkpoint,
    MemoryAuditLog, MemoryCheckpointStore, Outcome, TrailError,
};
use privacy_pledge::country::Country;
use privacy_pledge::crypto::{KeyProvider, KeyStore, Keyring, MemoryKeyStore, SubjectKeys};
use privacy_pledge::data::{EmailAddress, FullName};
use privacy_pledge::purpose::{
    Correspondence, Improvement, Newsletter, Promotion, PurposeId, Transaction,
};
use privacy_pledge::recipient::{Affiliate, Processor, Recipient, RegisteredRecipient, RoleId};
use privacy_pledge::report::{StoredRecord, Withheld, SUBJECT_RECIPIENT};
use privacy_pledge::time::{FixedClock, Timestamp};
use privacy_pledge::transfer::{Mechanism, Transfer, TransferError};
use privacy_pledge::{Custodian, Error, ExposeSecret, PersonalInfo, Sealed, SubjectId};

const DAY: u64 = 86_400;

fn email<P: privacy_pledge::purpose::Purpose>(
    subject: SubjectId,
    text: &str,
) -> PersonalInfo<EmailAddress, P> {
    PersonalInfo::collect(subject, EmailAddress::parse(text).unwrap())
}

fn trail_and_head(c: &Custodian) -> (Vec<AuditEvent>, Checkpoint) {
    let log = c.builtin_audit_log().unwrap();
    (log.inner().events(), log.checkpoint())
}

/// A custodian on `keyring` with its own in-memory trail (one process),
/// its checkpoints signed into `checkpoints` (outside the trail's storage).
fn on(keyring: &Arc<Keyring>, checkpoints: &MemoryCheckpointStore) -> Custodian {
    Custodian::builder()
        .keyring(keyring.clone())
        .checkpoint_store(checkpoints.clone())
        .build()
        .unwrap()
}

fn c(code: &str) -> Country {
    code.parse().unwrap()
}

// ---------------------------------------------------------------------------
// 1. Consent forged through `Consents::restore` (A1)

/// A1 writes a `consent_granted` event by hand, chains it under a key it
/// made up and tries to restore from it: the custodian verifies only under
/// its own key, so the trail is refused and no proof can be minted.
#[test]
fn a1_forged_consent_trail_is_refused() {
    let custodian = Custodian::in_memory();
    let victim = SubjectId::random();
    // A genuine event's JSON, from a throwaway custodian, turned into a grant.
    let donor = Custodian::in_memory();
    donor.consents().grant::<Promotion>(victim).unwrap();
    let json = serde_json::to_string(&trail_and_head(&donor).0[0]).unwrap();
    let mut forged: AuditEvent = serde_json::from_str(&json).unwrap();
    // Chain it under a key the attacker chose.
    let attacker_key = AuditKey::generate().unwrap();
    let chain = ChainedAuditLog::in_memory(attacker_key);
    chain.record(&forged).unwrap();
    forged = chain.inner().events().remove(0);
    let forged_head = chain.checkpoint();

    assert!(matches!(
        custodian.verify_trail(vec![forged.clone()]),
        Err(Error::Untrusted(TrailError::Broken(_)))
    ));
    assert!(matches!(
        custodian.verify_trail_unverified(vec![forged], &forged_head),
        Err(Error::Untrusted(TrailError::Broken(_)))
    ));
    assert!(custodian.consent_proof::<Promotion>(victim).is_err());
}

/// A restore needs an empty register, is itself recorded before it takes
/// effect, and takes only a trail this custodian verified.
#[test]
fn a1_restore_is_audited_refuses_to_merge_and_is_bound_to_its_custodian() {
    let keyring = Arc::new(Keyring::generate().unwrap());
    let checkpoints = MemoryCheckpointStore::new();
    let before = on(&keyring, &checkpoints);
    let ada = SubjectId::random();
    before.consents().grant::<Newsletter>(ada).unwrap();
    before.sign_checkpoint().unwrap();
    let (events, _) = trail_and_head(&before);

    // Into a register that holds state: refused.
    let busy = on(&keyring, &checkpoints);
    busy.consents()
        .grant::<Promotion>(SubjectId::random())
        .unwrap();
    let mut both = events.clone();
    both.extend(trail_and_head(&busy).0);
    let trail = busy.verify_trail(both).unwrap();
    assert!(matches!(
        busy.consents().restore(&trail),
        Err(Error::RegisterNotEmpty)
    ));

    // A trail verified by one custodian cannot be restored into another.
    let fresh = on(&keyring, &checkpoints);
    assert!(matches!(
        fresh.consents().restore(&trail),
        Err(Error::Untrusted(TrailError::OtherCustodian))
    ));

    // The genuine restore is in the trail, recorded first.
    let trail = fresh.verify_trail(events).unwrap();
    assert_eq!(fresh.consents().restore(&trail).unwrap(), 1);
    assert!(fresh.consents().is_granted::<Newsletter>(ada));
    let last = trail_and_head(&fresh).0.pop().unwrap();
    assert_eq!(last.action(), Action::ConsentRestored);
    assert_eq!(last.outcome(), Outcome::Allowed);

    // A failing sink stops the restore: nothing is restored.
    let failing = Custodian::builder()
        .keyring(keyring.clone())
        .checkpoint_store(checkpoints.clone())
        .audit(FailingSink)
        .build()
        .unwrap();
    let (events, _) = trail_and_head(&before);
    let trail = failing.verify_trail(events).unwrap();
    assert!(matches!(
        failing.consents().restore(&trail),
        Err(Error::Audit(_))
    ));
    assert!(!failing.consents().is_granted::<Newsletter>(ada));
}

struct FailingSink;
impl AuditSink for FailingSink {
    fn record(&self, _: &AuditEvent) -> Result<(), AuditError> {
        Err(AuditError::new("disk full"))
    }
}

// ---------------------------------------------------------------------------
// 2. A cut-short or replayed trail brings withdrawn consent back (A2)

/// A2 drops the trailing `consent_withdrawn` (no key needed) or replays an
/// earlier prefix: against the checkpoint kept outside the database, both
/// fail to verify, so the withdrawn subscription stays withdrawn.
#[test]
fn a2_cut_or_rolled_back_trail_does_not_revive_a_withdrawal() {
    let keyring = Arc::new(Keyring::generate().unwrap());
    let checkpoints = MemoryCheckpointStore::new();
    let before = on(&keyring, &checkpoints);
    let ada = SubjectId::random();
    before.consents().grant::<Newsletter>(ada).unwrap();
    before.sign_checkpoint().unwrap();
    before.consents().withdraw::<Newsletter>(ada).unwrap();
    let (events, _) = trail_and_head(&before);
    let after = on(&keyring, &checkpoints);

    // A signed checkpoint that vouches for less than the trail: the tail
    // could have been cut, so a restore refuses it.
    let trail = after.verify_trail(events.clone()).unwrap();
    assert!(!trail.is_fully_vouched());
    assert_eq!(trail.unvouched(), 1);
    assert!(matches!(
        after.consents().restore(&trail),
        Err(Error::Untrusted(TrailError::Unvouched { entries: 1 }))
    ));
    // A checkpoint the caller built from an entry's public fields vouches
    // for nothing.
    let early = Checkpoint::new(events[0].seq(), events[0].chain().unwrap().mac);
    let trail = after
        .verify_trail_unverified(events.clone(), &early)
        .unwrap();
    assert!(!trail.is_fully_vouched());
    assert!(matches!(
        after.consents().restore(&trail),
        Err(Error::Untrusted(TrailError::CallerChosenCheckpoint))
    ));

    before.sign_checkpoint().unwrap();
    let cut = events[..events.len() - 1].to_vec();
    assert!(matches!(
        after.verify_trail(cut),
        Err(Error::Untrusted(TrailError::Broken(_)))
    ));
    let replayed = vec![events[0].clone(), events[0].clone()];
    assert!(after.verify_trail(replayed).is_err());
    assert!(!after.consents().is_granted::<Newsletter>(ada));

    let trail = after.verify_trail(events).unwrap();
    after.consents().restore(&trail).unwrap();
    assert!(!after.consents().is_granted::<Newsletter>(ada));
}

// ---------------------------------------------------------------------------
// 3. Plaintext of any purpose through the report path (A1)

/// Data held for Improvement appears in a report as held, never as its
/// value; each value shown is a disclosure to the subject, recorded first.
#[test]
fn a1_report_shows_no_improvement_plaintext_and_records_the_disclosure() {
    let custodian = Custodian::in_memory();
    let ada = SubjectId::random();
    let analysed: Sealed<EmailAddress, Improvement> = custodian
        .seal(&email::<Improvement>(ada, "ada.hidden@example.com"))
        .unwrap();
    let held: Sealed<EmailAddress, Transaction> = custodian
        .seal(&email::<Transaction>(ada, "ada@example.com"))
        .unwrap();
    let (events, _) = trail_and_head(&custodian);
    let trail = custodian.verify_trail(events).unwrap();
    let records: Vec<&dyn StoredRecord> = vec![&analysed, &held];
    let report = custodian.subject_report(ada, &records, &trail).unwrap();

    assert_eq!(report.records()[0].withheld, Some(Withheld::NotShown));
    assert!(report.records()[0].value.is_none());
    assert_eq!(
        report.records()[1].value.as_ref().unwrap().as_str(),
        "ada@example.com"
    );
    let json = report.to_json().unwrap();
    let letter = report.to_letter();
    for text in [json.as_str(), letter.as_str()] {
        assert!(
            !text.contains("hidden"),
            "Improvement plaintext in a report"
        );
    }

    let events = trail_and_head(&custodian).0;
    let to_subject: Vec<_> = events
        .iter()
        .filter(|e| e.action() == Action::Disclose)
        .collect();
    assert_eq!(to_subject.len(), 1, "one value shown, one disclosure");
    let r = to_subject[0].recipient().unwrap();
    assert_eq!((&*r.name, r.role), (SUBJECT_RECIPIENT, RoleId::DataSubject));
    assert_eq!(to_subject[0].purpose(), Some(PurposeId::Transaction));
    // And the disclosure to the subject is not listed as a disclosure to others.
    assert!(report.disclosures().is_empty());
}

// ---------------------------------------------------------------------------
// 4. Erased data opens again from a key-store backup (A3)

/// A3 keeps a copy of the key store from before an erasure and later gets
/// the current keys. Once the key-encryption-key version in use at the
/// erasure is rotated away and retired, the copy opens nothing.
#[test]
fn a3_key_store_backup_opens_nothing_once_the_version_is_retired() {
    let store = Arc::new(MemoryKeyStore::new());
    let keyring = Arc::new(Keyring::generate().unwrap());
    let build = |k: Arc<Keyring>, s: Arc<MemoryKeyStore>| {
        Custodian::builder()
            .keyring(k)
            .key_store(s)
            .build()
            .unwrap()
    };
    let custodian = build(keyring.clone(), store.clone());
    let (gone, stays) = (SubjectId::random(), SubjectId::random());
    let gone_row = custodian
        .seal(&email::<Transaction>(gone, "gone@example.com"))
        .unwrap();
    let stays_row = custodian
        .seal(&email::<Transaction>(stays, "stays@example.com"))
        .unwrap();

    // The backup: a copy of the key store taken before the erasure.
    let backup = Arc::new(MemoryKeyStore::new());
    for s in [gone, stays] {
        if let SubjectKeys::Live(keys) = store.load(s).unwrap() {
            for k in keys {
                backup.insert(s, k).unwrap();
            }
        }
    }

    custodian.erase(gone).unwrap();
    assert!(matches!(
        custodian.open(&gone_row),
        Err(Error::Erased { .. })
    ));

    // Before the rotation the backup still opens the erased subject: this is
    // exactly the window the docs name.
    let from_backup = build(
        Arc::new(Keyring::import(&keyring.export()).unwrap()),
        backup.clone(),
    );
    assert!(from_backup.open(&gone_row).is_ok());

    // rotate → rewrap → retire.
    let old = keyring.current_version();
    keyring.rotate().unwrap();
    custodian.rewrap_keys(old).unwrap();
    custodian.retire_key_version(old).unwrap();
    let saved = keyring.export(); // what the secret store keeps now

    let from_backup = build(Arc::new(Keyring::import(&saved).unwrap()), backup);
    assert!(matches!(
        from_backup.open(&gone_row),
        Err(Error::Key(privacy_pledge::crypto::KeyError::Retired { .. }))
    ));
    // The live store and current keys still open the subject that stays.
    let live = build(Arc::new(Keyring::import(&saved).unwrap()), store);
    assert!(live.open(&stays_row).is_ok());
}

// ---------------------------------------------------------------------------
// 5. Retention reset by open → seal (A1)

/// A Correspondence envelope expires 730 days after collection; a copy
/// opened and sealed again on day 700 expires on the same day, not later.
#[test]
fn a1_open_then_seal_keeps_the_collection_time() {
    let clock = Arc::new(FixedClock::new(Timestamp::from_unix_seconds(1_600_000_000)));
    let custodian = Custodian::builder().clock(clock.clone()).build().unwrap();
    let ada = SubjectId::random();
    let info: PersonalInfo<EmailAddress, Correspondence> = custodian
        .collect(ada, EmailAddress::parse("ada@example.com").unwrap())
        .unwrap();
    let first = custodian.seal(&info).unwrap();

    clock.advance_seconds(700 * DAY);
    let opened = custodian.open(&first).unwrap();
    assert_eq!(opened.collected_at(), Some(first.collected_at()));
    let resealed = custodian.seal(&opened).unwrap();
    assert_eq!(resealed.collected_at(), first.collected_at());
    // Nor can seal_at date it later than it carries.
    assert!(matches!(
        custodian.seal_at(
            &opened,
            Timestamp::from_unix_seconds(1_600_000_000 + 600 * DAY)
        ),
        Err(Error::CollectedLater { .. })
    ));

    clock.advance_seconds(100 * DAY);
    for row in [&first, &resealed] {
        assert!(matches!(custodian.open(row), Err(Error::Expired { .. })));
    }
}

// ---------------------------------------------------------------------------
// 6. A new grant reopens data that expired at withdrawal (A1)

#[test]
fn a1_a_new_grant_does_not_reopen_data_collected_before_the_withdrawal() {
    let clock = Arc::new(FixedClock::new(Timestamp::from_unix_seconds(1_600_000_000)));
    let custodian = Custodian::builder().clock(clock.clone()).build().unwrap();
    let ada = SubjectId::random();
    let held: PersonalInfo<EmailAddress, Transaction> = custodian
        .collect(ada, EmailAddress::parse("ada@example.com").unwrap())
        .unwrap();
    custodian.consents().grant::<Newsletter>(ada).unwrap();
    let proof = custodian.consent_proof::<Newsletter>(ada).unwrap();
    let subscribed = custodian
        .repurpose_with_consent(held.clone(), &proof)
        .unwrap();
    let old_row = custodian.seal(&subscribed).unwrap();
    assert!(custodian.open(&old_row).is_ok());

    clock.advance_seconds(DAY);
    custodian.consents().withdraw::<Newsletter>(ada).unwrap();
    assert!(matches!(
        custodian.open(&old_row),
        Err(Error::Expired { .. })
    ));

    clock.advance_seconds(365 * DAY);
    custodian.consents().grant::<Newsletter>(ada).unwrap();
    assert!(
        matches!(custodian.open(&old_row), Err(Error::Expired { .. })),
        "data collected before the withdrawal stays expired"
    );
    // A subscription under the new grant is new data, and opens.
    let proof = custodian.consent_proof::<Newsletter>(ada).unwrap();
    let again = custodian.repurpose_with_consent(held, &proof).unwrap();
    let new_row = custodian.seal(&again).unwrap();
    assert!(custodian.open(&new_row).is_ok());
}

// ---------------------------------------------------------------------------
// 7. The transfer's origin is trusted (A1)

#[test]
fn a1_a_transfer_starts_at_a_facility_and_eea_data_stays_eea_data() {
    let custodian = Custodian::builder()
        .facilities([c("DE"), c("US")])
        .build()
        .unwrap();
    let info = email::<Transaction>(SubjectId::random(), "ada@example.com");
    assert!(matches!(
        custodian.transfer(&info, &Transfer::new(c("CN"), c("US"))),
        Err(Error::Transfer(TransferError::OriginNotAFacility { .. }))
    ));
    // Held at the home facility in the EEA: US → US still needs a mechanism.
    assert!(matches!(
        custodian.transfer(&info, &Transfer::new(c("US"), c("US"))),
        Err(Error::Transfer(TransferError::MechanismRequired { .. }))
    ));
    assert!(custodian
        .transfer(
            &info,
            &Transfer::new(c("US"), c("US")).under(Mechanism::DataPrivacyFramework)
        )
        .is_ok());
}

// ---------------------------------------------------------------------------
// 8. Pseudonyms of subscriber lists (A1); the compile-time half is in tests/ui

#[test]
fn a1_no_pseudonym_of_consent_based_data_after_a_withdrawal() {
    let custodian = Custodian::in_memory();
    let ada = SubjectId::random();
    custodian.consents().grant::<Newsletter>(ada).unwrap();
    let sub: PersonalInfo<EmailAddress, Newsletter> = custodian
        .collect(ada, EmailAddress::parse("ada@example.com").unwrap())
        .unwrap();
    assert!(custodian.pseudonym(&sub).is_ok());
    custodian.consents().withdraw::<Newsletter>(ada).unwrap();
    assert!(matches!(
        custodian.pseudonym(&sub),
        Err(Error::NoConsent { .. })
    ));
    let last = trail_and_head(&custodian).0.pop().unwrap();
    assert_eq!(last.outcome(), Outcome::Denied, "the refusal is recorded");
}

// ---------------------------------------------------------------------------
// 9. Roles are self-declared (A1)

struct Named(&'static str);
impl Recipient for Named {
    type Role = Processor;
    fn name(&self) -> &str {
        self.0
    }
}

struct NamedAffiliate(&'static str);
impl Recipient for NamedAffiliate {
    type Role = Affiliate;
    fn name(&self) -> &str {
        self.0
    }
}

#[test]
fn a1_a_list_broker_posing_as_a_processor_is_refused_by_the_registry() {
    let custodian = Custodian::builder()
        .facilities([c("DE"), c("US")])
        .recipients([
            RegisteredRecipient::new::<Named>("Postmark")
                .processing_in([c("US")])
                .under(Mechanism::DataPrivacyFramework),
            RegisteredRecipient::new::<Named>("EU help desk"),
        ])
        .build()
        .unwrap();
    let ada = SubjectId::random();
    custodian.consents().grant::<Newsletter>(ada).unwrap();
    let sub: PersonalInfo<EmailAddress, Newsletter> = custodian
        .collect(ada, EmailAddress::parse("ada@example.com").unwrap())
        .unwrap();
    let ran = AtomicUsize::new(0);
    let f = |_: &EmailAddress| {
        ran.fetch_add(1, Ordering::SeqCst);
    };
    assert!(matches!(
        custodian.disclose(&sub, &Named("ListBroker Inc"), f),
        Err(Error::UnregisteredRecipient { .. })
    ));
    // The registered name under the registered role, with its registered
    // location and mechanism (the struct said nothing about either).
    custodian.disclose(&sub, &Named("Postmark"), f).unwrap();
    assert_eq!(ran.load(Ordering::SeqCst), 1);
    // The same name in another role is not the registered recipient.
    let t: PersonalInfo<EmailAddress, Transaction> = email(ada, "ada@example.com");
    assert!(matches!(
        custodian.disclose(&t, &NamedAffiliate("Postmark"), |_| ()),
        Err(Error::UnregisteredRecipient { .. })
    ));
    let record = custodian.processing_record();
    let names: Vec<&str> = record.recipients.iter().map(|r| r.name()).collect();
    assert_eq!(names, ["Postmark", "EU help desk"]);
    let json = record.to_json();
    assert!(json.contains("\"Postmark\"") && json.contains("\"US\""));

    // Without the registry, the host's word is taken (and audited).
    let open = Custodian::in_memory();
    open.consents().grant::<Newsletter>(ada).unwrap();
    let sub: PersonalInfo<EmailAddress, Newsletter> = open
        .collect(ada, EmailAddress::parse("ada@example.com").unwrap())
        .unwrap();
    assert!(open.disclose(&sub, &Named("anyone"), |_| ()).is_ok());
    assert!(open.processing_record().recipients.is_empty());
}

/// A broker's own type that copies a registered processor's name and role.
struct LookAlike;
impl Recipient for LookAlike {
    type Role = Processor;
    fn name(&self) -> &str {
        "Postmark"
    }
}

#[test]
fn a1_lookalike_recipient_type_is_refused() {
    let log = Arc::new(MemoryAuditLog::new());
    let custodian = Custodian::builder()
        .audit(log.clone())
        .recipients([RegisteredRecipient::new::<Named>("Postmark")])
        .build()
        .unwrap();
    let ada = SubjectId::random();
    custodian.consents().grant::<Newsletter>(ada).unwrap();
    let list: PersonalInfo<EmailAddress, Newsletter> = custodian
        .collect(ada, EmailAddress::parse("ada@example.com").unwrap())
        .unwrap();
    let ran = AtomicUsize::new(0);
    let f = |_: &EmailAddress| {
        ran.fetch_add(1, Ordering::SeqCst);
    };
    let before = log.events().len();
    // Same name, same role, another type: not the registered recipient.
    assert!(matches!(
        custodian.disclose(&list, &LookAlike, f),
        Err(Error::UnregisteredRecipient { .. })
    ));
    // Nor through a trait object, which hides the type.
    let hidden: &(dyn Recipient<Role = Processor> + 'static) = &LookAlike;
    assert!(matches!(
        custodian.disclose(&list, hidden, f),
        Err(Error::UnregisteredRecipient { .. })
    ));
    let hidden: &(dyn Recipient<Role = Processor> + 'static) = &Named("Postmark");
    assert!(matches!(
        custodian.disclose(&list, hidden, f),
        Err(Error::UnregisteredRecipient { .. })
    ));
    // Pseudonyms go through the same gate.
    assert!(matches!(
        custodian.disclose_pseudonym(&list, &LookAlike, |_| ()),
        Err(Error::UnregisteredRecipient { .. })
    ));
    assert_eq!(ran.load(Ordering::SeqCst), 0, "the list never left");
    // Each refusal is in the trail, naming the recipient it refused.
    let events = log.events();
    assert_eq!(events.len(), before + 4);
    for e in &events[before..] {
        assert_eq!(e.outcome(), Outcome::Denied);
        assert_eq!(e.action(), Action::Disclose);
        assert_eq!(e.recipient().map(|r| &*r.name), Some("Postmark"));
    }
    // The registered type under the registered name still receives it.
    custodian.disclose(&list, &Named("Postmark"), f).unwrap();
    assert_eq!(ran.load(Ordering::SeqCst), 1);
}

// ---------------------------------------------------------------------------
// 10. Audit entries accept unauthenticated fields (A2)

#[test]
fn a2_unknown_fields_in_stored_entries_are_refused() {
    let log = Arc::new(ChainedAuditLog::in_memory(AuditKey::generate().unwrap()));
    let custodian = Custodian::builder().audit(log.clone()).build().unwrap();
    struct Mailer;
    impl Recipient for Mailer {
        type Role = Processor;
        fn name(&self) -> &str {
            "mail delivery"
        }
    }
    let info = email::<Transaction>(SubjectId::random(), "ada@example.com");
    custodian.disclose(&info, &Mailer, |_| ()).unwrap();
    let json = serde_json::to_string(&log.inner().events()[0]).unwrap();
    assert!(serde_json::from_str::<AuditEvent>(&json).is_ok());
    let injected = [
        json.replacen('{', "{\"note\":\"ada@example.com\",", 1),
        json.replace("\"chain\":{", "\"chain\":{\"note\":\"ada@example.com\","),
        json.replace(
            "\"recipient\":{",
            "\"recipient\":{\"note\":\"ada@example.com\",",
        ),
    ];
    for bad in injected {
        assert_ne!(bad, json);
        assert!(
            serde_json::from_str::<AuditEvent>(&bad).is_err(),
            "accepted {bad}"
        );
    }
}

// ---------------------------------------------------------------------------
// 12. subject_report trusts a trail it never verifies (A2)

#[test]
fn a2_a_report_reads_only_a_verified_trail() {
    struct Mailer;
    impl Recipient for Mailer {
        type Role = Processor;
        fn name(&self) -> &str {
            "mail delivery"
        }
    }
    let custodian = Custodian::in_memory();
    let ada = SubjectId::random();
    let info = email::<Transaction>(ada, "ada@example.com");
    custodian.disclose(&info, &Mailer, |_| ()).unwrap();
    let row = custodian.seal(&info).unwrap();
    let (events, _) = trail_and_head(&custodian);

    // Disclosures filtered out: the trail no longer verifies.
    let filtered: Vec<_> = events
        .iter()
        .filter(|e| e.action() != Action::Disclose)
        .cloned()
        .collect();
    assert!(custodian.verify_trail(filtered).is_err());
    // A forged erasure appended: does not verify either.
    let mut forged = events.clone();
    let json = serde_json::to_string(&events[0])
        .unwrap()
        .replace("\"disclose\"", "\"erase\"");
    forged.push(serde_json::from_str(&json).unwrap());
    assert!(custodian.verify_trail(forged).is_err());

    let trail = custodian.verify_trail(events).unwrap();
    let report = custodian.subject_report(ada, &[&row], &trail).unwrap();
    assert_eq!(report.disclosures().len(), 1);
    assert_eq!(report.erased_at(), None);
    assert!(report.is_fully_vouched());
    assert!(!report.to_letter().contains("We shared none"));
    assert!(!report.to_letter().contains("Caution"));
}

/// A1 cuts a disclosure from the end of the trail and builds a "trusted"
/// checkpoint from the last remaining entry's public fields (attack 7):
/// the normal path takes its checkpoint from the custodian, not the caller,
/// so the cut trail is refused; the explicitly unverified path accepts it,
/// but the report it yields says it is not vouched for.
#[test]
fn a1_a_checkpoint_the_caller_builds_cannot_hide_a_disclosure() {
    struct Mailer;
    impl Recipient for Mailer {
        type Role = Processor;
        fn name(&self) -> &str {
            "mail delivery"
        }
    }
    let keyring = Arc::new(Keyring::generate().unwrap());
    let checkpoints = MemoryCheckpointStore::new();
    let custodian = on(&keyring, &checkpoints);
    let ada = SubjectId::random();
    let info = email::<Transaction>(ada, "ada@example.com");
    let row = custodian.seal(&info).unwrap();
    custodian.disclose(&info, &Mailer, |_| ()).unwrap();
    custodian.sign_checkpoint().unwrap();
    let (events, _) = trail_and_head(&custodian);
    let cut = events[..events.len() - 1].to_vec();
    let last = cut.last().unwrap();
    let built = Checkpoint::new(last.seq(), last.chain().unwrap().mac);

    assert!(matches!(
        custodian.verify_trail(cut.clone()),
        Err(Error::Untrusted(TrailError::Broken(_)))
    ));
    // Another process of the same service, on the same checkpoint store.
    let other = on(&keyring, &checkpoints);
    assert!(other.verify_trail(cut.clone()).is_err());

    let trail = other.verify_trail_unverified(cut, &built).unwrap();
    assert!(!trail.is_fully_vouched());
    let report = other.subject_report(ada, &[&row], &trail).unwrap();
    assert!(report.disclosures().is_empty());
    assert!(!report.is_fully_vouched());
    assert!(
        report.to_letter().contains("Caution"),
        "{}",
        report.to_letter().as_str()
    );
    assert!(report
        .to_json()
        .unwrap()
        .contains("\"fully_vouched\": false"));

    // The whole trail: `other` has its own stream now (the report above is
    // recorded in it), which the trail it verifies must hold too.
    let mut all = events;
    all.extend(trail_and_head(&other).0);
    let trail = other.verify_trail(all).unwrap();
    let report = other.subject_report(ada, &[&row], &trail).unwrap();
    assert_eq!(report.disclosures().len(), 1);
    assert!(report.is_fully_vouched());
}

// ---------------------------------------------------------------------------
// 13. A sink that calls back into the custodian deadlocks (A1)

/// A sink that, while recording, reads consent and then tries a mutating call.
struct Reentrant {
    custodian: OnceLock<Arc<Custodian>>,
    subject: SubjectId,
    read: AtomicBool,
    nested: Mutex<Option<String>>,
    inner: MemoryAuditLog,
}

impl AuditSink for Reentrant {
    fn record(&self, event: &AuditEvent) -> Result<(), AuditError> {
        if let Some(c) = self.custodian.get() {
            if event.action() == Action::ConsentGranted {
                // Reading consent is allowed from inside a sink.
                let _ = c.consents().is_granted::<Newsletter>(self.subject);
                self.read.store(true, Ordering::SeqCst);
                // A mutating call is refused, not deadlocked.
                let r = c.consents().withdraw::<Promotion>(self.subject);
                *self.nested.lock().unwrap() = Some(format!("{r:?}"));
            }
        }
        self.inner.record(event)
    }
}

#[test]
fn a1_a_sink_calling_back_into_the_custodian_neither_deadlocks_nor_nests() {
    let sink = Arc::new(Reentrant {
        custodian: OnceLock::new(),
        subject: SubjectId::random(),
        read: AtomicBool::new(false),
        nested: Mutex::new(None),
        inner: MemoryAuditLog::new(),
    });
    let custodian = Arc::new(Custodian::builder().audit(sink.clone()).build().unwrap());
    let _ = sink.custodian.set(custodian.clone());
    let subject = sink.subject;
    // Runs on another thread so that a deadlock fails the test instead of
    // hanging it.
    let (tx, rx) = std::sync::mpsc::channel();
    let c2 = custodian.clone();
    std::thread::spawn(move || {
        let _ = tx.send(c2.consents().grant::<Newsletter>(subject).is_ok());
    });
    let granted = rx
        .recv_timeout(std::time::Duration::from_secs(20))
        .expect("grant deadlocked");
    assert!(granted);
    assert!(sink.read.load(Ordering::SeqCst));
    assert_eq!(
        sink.nested.lock().unwrap().as_deref(),
        Some("Err(Reentrant)")
    );
    assert!(custodian.consents().is_granted::<Newsletter>(subject));
    // Only the outer grant was recorded.
    assert_eq!(sink.inner.len(), 1);
    // Outside the sink, everything works as before.
    custodian
        .consents()
        .withdraw::<Newsletter>(subject)
        .unwrap();
}

/// A key store that seals through the custodian from inside `load`.
struct ReentrantStore {
    inner: MemoryKeyStore,
    custodian: OnceLock<Arc<Custodian>>,
    nested: Mutex<Vec<String>>,
}

impl KeyStore for ReentrantStore {
    fn load(
        &self,
        subject: SubjectId,
    ) -> Result<SubjectKeys, privacy_pledge::crypto::KeyStoreError> {
        if let Some(c) = self.custodian.get() {
            let r = c.seal(&email::<Transaction>(subject, "x@example.com"));
            self.nested
                .lock()
                .unwrap()
                .push(format!("{:?}", r.map(|_| ())));
        }
        self.inner.load(subject)
    }
    fn insert(
        &self,
        s: SubjectId,
        k: privacy_pledge::crypto::StoredKey,
    ) -> Result<(), privacy_pledge::crypto::KeyStoreError> {
        self.inner.insert(s, k)
    }
    fn reserve(
        &self,
        s: SubjectId,
        g: u32,
        n: u64,
    ) -> Result<u64, privacy_pledge::crypto::KeyStoreError> {
        self.inner.reserve(s, g, n)
    }
    fn rewrap(
        &self,
        s: SubjectId,
        g: u32,
        w: privacy_pledge::crypto::Wrapped,
    ) -> Result<(), privacy_pledge::crypto::KeyStoreError> {
        self.inner.rewrap(s, g, w)
    }
    fn destroy(
        &self,
        s: SubjectId,
        at: Timestamp,
    ) -> Result<privacy_pledge::crypto::Destroyed, privacy_pledge::crypto::KeyStoreError> {
        self.inner.destroy(s, at)
    }
    fn wrapped_under(
        &self,
        v: u32,
    ) -> Result<Vec<(SubjectId, u32)>, privacy_pledge::crypto::KeyStoreError> {
        self.inner.wrapped_under(v)
    }
}

#[test]
fn a1_a_key_store_calling_back_into_the_custodian_is_refused_not_deadlocked() {
    let store = Arc::new(ReentrantStore {
        inner: MemoryKeyStore::new(),
        custodian: OnceLock::new(),
        nested: Mutex::new(Vec::new()),
    });
    let custodian = Arc::new(
        Custodian::builder()
            .key_store(store.clone())
            .build()
            .unwrap(),
    );
    let _ = store.custodian.set(custodian.clone());
    let (tx, rx) = std::sync::mpsc::channel();
    let c2 = custodian.clone();
    std::thread::spawn(move || {
        let ada = SubjectId::random();
        let _ = tx.send(
            c2.seal(&email::<Transaction>(ada, "ada@example.com"))
                .is_ok(),
        );
    });
    let sealed = rx
        .recv_timeout(std::time::Duration::from_secs(20))
        .expect("seal deadlocked");
    assert!(sealed);
    let nested = store.nested.lock().unwrap();
    assert!(!nested.is_empty());
    assert!(nested.iter().all(|r| r == "Err(Reentrant)"), "{nested:?}");
}

// ---------------------------------------------------------------------------
// 14. A failed `record_batch` moves the chain head (A1)

#[test]
fn a1_a_failed_batch_leaves_the_chain_head_where_it_was() {
    let start = Checkpoint::new(u64::MAX - 1, [3; 32]);
    let log = ChainedAuditLog::resume(AuditKey::generate().unwrap(), MemoryAuditLog::new(), start);
    let custodian = Custodian::in_memory();
    custodian
        .consents()
        .grant::<Newsletter>(SubjectId::random())
        .unwrap();
    let e = trail_and_head(&custodian).0.remove(0);
    assert!(log.record_batch(&[e.clone(), e.clone()]).is_err());
    assert_eq!(log.checkpoint(), start, "the head moved on a failed batch");
    assert_eq!(log.inner().len(), 0);
    // The last sequence number is still there for a single event.
    log.record(&e).unwrap();
    assert_eq!(log.checkpoint().seq(), u64::MAX);
}

// ---------------------------------------------------------------------------
// Names compare and pseudonymise after Unicode normalisation

#[test]
fn names_normalise_before_comparing_and_pseudonymising() {
    let custodian = Custodian::in_memory();
    let ada = SubjectId::random();
    let composed = FullName::parse("Zo\u{00eb} Stra\u{00df}e").unwrap();
    let decomposed = FullName::parse("Zoe\u{0308} STRASSE").unwrap();
    assert_eq!(composed, decomposed);
    let a: PersonalInfo<FullName, Transaction> = PersonalInfo::collect(ada, composed);
    let b: PersonalInfo<FullName, Transaction> = PersonalInfo::collect(ada, decomposed);
    assert_eq!(
        custodian.pseudonym(&a).unwrap(),
        custodian.pseudonym(&b).unwrap()
    );
    assert!(FullName::parse("Ada\u{200b}Lovelace").is_err());
    let _ = a.kind();
    let _ = FullName::parse("x").unwrap().expose_secret().len();
}

/// Two processes change one subject's consent at the same instant (A5, or
/// A2 who set both clocks): which came last cannot be told from the trail,
/// and the storage's row order decides nothing, so the restore is refused
/// rather than guessing.
#[test]
fn a2_a_consent_order_the_trail_cannot_tell_is_refused() {
    let keyring = Arc::new(Keyring::generate().unwrap());
    let checkpoints = MemoryCheckpointStore::new();
    let at = Timestamp::from_unix_seconds(1_700_000_000);
    let process = || {
        Custodian::builder()
            .keyring(keyring.clone())
            .checkpoint_store(checkpoints.clone())
            .clock(FixedClock::new(at))
            .build()
            .unwrap()
    };
    let ada = SubjectId::random();
    let (one, two) = (process(), process());
    one.consents().grant::<Newsletter>(ada).unwrap();
    two.consents().withdraw::<Newsletter>(ada).unwrap();
    one.sign_checkpoint().unwrap();
    two.sign_checkpoint().unwrap();
    let mut both = trail_and_head(&one).0;
    both.extend(trail_and_head(&two).0);

    let after = on(&keyring, &checkpoints);
    let trail = after.verify_trail(both).unwrap();
    assert!(trail.is_fully_vouched());
    assert!(matches!(
        after.consents().restore(&trail),
        Err(Error::Untrusted(TrailError::AmbiguousOrder))
    ));
    assert!(!after.consents().is_granted::<Newsletter>(ada));
}

// ---------------------------------------------------------------------------
// 15. A value held in memory since before a withdrawal is used, and
// restamped, after a new grant (A1)

/// A1 keeps a value collected for a consent-based purpose across the
/// subject's withdrawal. After a new grant its envelope stays expired, and
/// so must the value itself: an `access`, a disclosure, or a "repurpose"
/// into the same purpose (which would stamp it collected now) is refused
/// as `Expired`. A value collected under the new grant is usable.
#[test]
fn a1_a_value_held_since_before_a_withdrawal_stays_expired_in_memory() {
    let clock = Arc::new(FixedClock::new(Timestamp::from_unix_seconds(1_600_000_000)));
    let custodian = Custodian::builder().clock(clock.clone()).build().unwrap();
    let ada = SubjectId::random();
    custodian.consents().grant::<Promotion>(ada).unwrap();
    let held: PersonalInfo<EmailAddress, Promotion> = custodian
        .collect(ada, EmailAddress::parse("ada@example.com").unwrap())
        .unwrap();
    assert!(custodian.access(&held, |_| ()).is_ok());

    clock.advance_seconds(DAY);
    custodian.consents().withdraw::<Promotion>(ada).unwrap();
    clock.advance_seconds(365 * DAY);
    custodian.consents().grant::<Promotion>(ada).unwrap();

    let ran = AtomicBool::new(false);
    let out = custodian.access(&held, |_| ran.store(true, Ordering::SeqCst));
    assert!(matches!(out, Err(Error::Expired { .. })), "{out:?}");
    assert!(!ran.load(Ordering::SeqCst));
    let proof = custodian.consent_proof::<Promotion>(ada).unwrap();
    let restamped = custodian.repurpose_with_consent::<_, _, Promotion>(held.clone(), &proof);
    assert!(matches!(restamped, Err(Error::Expired { .. })));
    let events = custodian.builtin_audit_log().unwrap().inner().events();
    let last = events.last().unwrap();
    assert_eq!(
        (last.action(), last.outcome()),
        (Action::Repurpose, Outcome::Denied)
    );

    let fresh: PersonalInfo<EmailAddress, Promotion> = custodian
        .collect(ada, EmailAddress::parse("ada@example.com").unwrap())
        .unwrap();
    assert!(custodian.access(&fresh, |_| ()).is_ok());
}

/// A value past a time-based retention period is refused in memory too,
/// as its envelope would be (A1: stretch retention by never sealing).
#[test]
fn a1_a_value_held_past_its_retention_period_is_refused_in_memory() {
    let clock = Arc::new(FixedClock::new(Timestamp::from_unix_seconds(1_600_000_000)));
    let custodian = Custodian::builder().clock(clock.clone()).build().unwrap();
    let held: PersonalInfo<EmailAddress, Correspondence> = custodian
        .collect(
            SubjectId::random(),
            EmailAddress::parse("ada@example.com").unwrap(),
        )
        .unwrap();
    let days = match custodian.retention().get(PurposeId::Correspondence) {
        privacy_pledge::retention::Retention::Days(d) => u64::from(d),
        other => panic!("Correspondence is kept for a number of days, not {other:?}"),
    };
    clock.advance_seconds((days - 1) * DAY);
    assert!(custodian.access(&held, |_| ()).is_ok());
    clock.advance_seconds(DAY);
    assert!(matches!(
        custodian.access(&held, |_| ()),
        Err(Error::Expired { .. })
    ));
}

// ---------------------------------------------------------------------------
// 16. A recipient that answers `name()` differently on each call (A1)

/// Registered under two names with different countries; its `name()` says
/// "SendGrid" (processing in CN, not a facility) first and "Postmark"
/// (DE) after. The name is asked for once: the registry entry checked is
/// the one the trail names, so the disclosure is refused.
#[test]
fn a1_a_recipient_is_checked_under_the_name_the_trail_records() {
    struct TwoFaced(std::sync::atomic::AtomicU32);
    impl Recipient for TwoFaced {
        type Role = Processor;
        fn name(&self) -> &str {
            if self.0.fetch_add(1, Ordering::SeqCst) == 0 {
                "SendGrid"
            } else {
                "Postmark"
            }
        }
    }
    let custodian = Custodian::builder()
        .facilities([c("DE")])
        .recipients([
            RegisteredRecipient::new::<TwoFaced>("Postmark").processing_in([c("DE")]),
            RegisteredRecipient::new::<TwoFaced>("SendGrid").processing_in([c("CN")]),
        ])
        .build()
        .unwrap();
    let info = email::<Transaction>(SubjectId::random(), "ada@example.com");
    let ran = AtomicBool::new(false);
    let out = custodian.disclose(&info, &TwoFaced(0.into()), |_| {
        ran.store(true, Ordering::SeqCst)
    });
    assert!(matches!(out, Err(Error::Transfer(_))), "{out:?}");
    assert!(!ran.load(Ordering::SeqCst));
    let events = custodian.builtin_audit_log().unwrap().inner().events();
    let last = events.last().unwrap();
    assert_eq!(last.outcome(), Outcome::Denied);
    assert_eq!(last.recipient().map(|r| &*r.name), Some("SendGrid"));
}

/// A processor whose *value* claims a transfer mechanism (and, below, a
/// country) the host's registry never recorded for it.
struct SelfCertified(Vec<Country>);
impl Recipient for SelfCertified {
    type Role = Processor;
    fn name(&self) -> &str {
        "Postmark"
    }
    fn processes_in(&self) -> &[Country] {
        &self.0
    }
    fn transfer_mechanism(&self) -> Option<Mechanism> {
        Some(Mechanism::StandardContractualClauses)
    }
}

/// A1, R8: with the registry on, where a recipient processes and under
/// which mechanism come from its entry. An entry for the US with no
/// mechanism, and one for Germany alone, take nothing out of the EEA on a
/// mechanism the value claims for itself: refused, the closure never run,
/// as a transfer on the same route is.
#[test]
fn a1_a_registered_recipients_mechanism_is_the_registrys_not_its_own() {
    let de: Country = "DE".parse().unwrap();
    let us: Country = "US".parse().unwrap();
    for (registered_in, claims) in [(us, vec![]), (de, vec![us])] {
        let custodian = Custodian::builder()
            .facilities([de, us])
            .recipients([RegisteredRecipient::new::<SelfCertified>("Postmark")
                .processing_in([registered_in])])
            .build()
            .unwrap();
        let info: PersonalInfo<EmailAddress, Transaction> = custodian
            .collect(
                SubjectId::random(),
                EmailAddress::parse("ada@example.com").unwrap(),
            )
            .unwrap();
        let ran = AtomicBool::new(false);
        let out = custodian.disclose(&info, &SelfCertified(claims), |_| {
            ran.store(true, Ordering::SeqCst)
        });
        assert!(
            matches!(
                out,
                Err(Error::Transfer(TransferError::MechanismRequired { .. }))
            ),
            "registered in {registered_in}: {out:?}"
        );
        assert!(!ran.load(Ordering::SeqCst), "plaintext reached the US");
    }
}
