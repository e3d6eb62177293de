//! The custodian's run-time guarantees: fail-closed audit, consent, erasure,
//! redaction, and use from many threads.

#[path = "common/recipients.rs"]
mod recipients;
use recipients::Stripe;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use privacy_pledge::audit::{Action, AuditError, AuditEvent, AuditSink, MemoryAuditLog, Outcome};
use privacy_pledge::data::{
    Amount, Date, EmailAddress, FullName, PaymentToken, PhoneNumber, PostalAddress, PurchaseRecord,
};
use privacy_pledge::policy::RuleId;
use privacy_pledge::purpose::{
    Improvement, Newsletter, Personalization, Promotion, PurposeId, ServiceNotice, Support,
    Transaction,
};
use privacy_pledge::recipient::{Affiliate, Recipient};
use privacy_pledge::{Custodian, Error, PersonalInfo, SubjectId};

const EMAIL: &str = "zelda.quux@example.org";

struct Subsidiary;
impl Recipient for Subsidiary {
    type Role = Affiliate;
    fn name(&self) -> &str {
        "iBeesoft Europe"
    }
}

/// A sink that fails while `fail` is set and counts what it stored.
#[derive(Default)]
struct SwitchSink {
    fail: AtomicBool,
    stored: MemoryAuditLog,
}

impl AuditSink for SwitchSink {
    fn record(&self, event: &AuditEvent) -> Result<(), AuditError> {
        if self.fail.load(Ordering::SeqCst) {
            return Err(AuditError::new("disk full"));
        }
        self.stored.record(event)
    }
}

fn email_of(subject: SubjectId) -> PersonalInfo<EmailAddress, Transaction> {
    PersonalInfo::collect(subject, EmailAddress::parse(EMAIL).unwrap())
}

fn with_switch() -> (Custodian, Arc<SwitchSink>) {
    let sink = Arc::new(SwitchSink::default());
    let custodian = Custodian::builder().audit(sink.clone()).build().unwrap();
    (custodian, sink)
}

#[test]
fn a_failing_sink_stops_every_operation() {
    let (custodian, sink) = with_switch();
    let subject = SubjectId::random();
    let email = email_of(subject);
    custodian.consents().grant::<Promotion>(subject).unwrap();
    let proof = custodian.consent_proof::<Promotion>(subject).unwrap();
    let sealed = custodian.seal(&email).unwrap();
    let before = sink.stored.len();

    sink.fail.store(true, Ordering::SeqCst);
    let ran = AtomicUsize::new(0);
    let run = |_: &EmailAddress| {
        ran.fetch_add(1, Ordering::SeqCst);
    };

    assert!(matches!(
        custodian.access(&email, run),
        Err(Error::Audit(_))
    ));
    assert!(matches!(
        custodian.disclose(&email, &Stripe, run),
        Err(Error::Audit(_))
    ));
    assert!(matches!(
        custodian.disclose_pseudonym(&email, &Subsidiary, |_| ran.fetch_add(1, Ordering::SeqCst)),
        Err(Error::Audit(_))
    ));
    assert_eq!(
        ran.load(Ordering::SeqCst),
        0,
        "a closure ran without its audit event"
    );

    let moved: Result<PersonalInfo<EmailAddress, Support>, _> = custodian.repurpose(email.clone());
    assert!(matches!(moved, Err(Error::Audit(_))));
    assert!(matches!(
        custodian.repurpose_with_consent(email.clone(), &proof),
        Err(Error::Audit(_))
    ));
    assert!(matches!(
        custodian
            .collect::<EmailAddress, Transaction>(subject, EmailAddress::parse(EMAIL).unwrap()),
        Err(Error::Audit(_))
    ));
    assert!(matches!(custodian.seal(&email), Err(Error::Audit(_))));
    assert!(matches!(custodian.open(&sealed), Err(Error::Audit(_))));

    // Consent changes do not take effect without their event.
    assert!(matches!(
        custodian.consents().withdraw::<Promotion>(subject),
        Err(Error::Audit(_))
    ));
    assert!(custodian.consents().is_granted::<Promotion>(subject));
    assert!(matches!(
        custodian.consents().grant::<Newsletter>(subject),
        Err(Error::Audit(_))
    ));
    assert!(!custodian.consents().is_granted::<Newsletter>(subject));

    // Erasure does not happen without its event: the data still opens later.
    assert!(matches!(custodian.erase(subject), Err(Error::Audit(_))));
    assert_eq!(
        sink.stored.len(),
        before,
        "nothing was stored while failing"
    );

    sink.fail.store(false, Ordering::SeqCst);
    let opened = custodian.open(&sealed).unwrap();
    assert_eq!(
        custodian
            .access(&opened, |e| e.domain().to_owned())
            .unwrap(),
        "example.org"
    );
    assert!(custodian.repurpose_with_consent(email, &proof).is_ok());
}

#[test]
fn every_use_is_recorded_before_it_happens() {
    let log = Arc::new(MemoryAuditLog::new());
    let custodian = Custodian::builder().audit(log.clone()).build().unwrap();
    let subject = SubjectId::random();
    let email = email_of(subject);

    let seen_inside = custodian
        .access(&email, |_| log.events().last().map(AuditEvent::action))
        .unwrap();
    assert_eq!(seen_inside, Some(Action::Access));

    let recorded = custodian
        .disclose(&email, &Stripe, |_| log.events().last().cloned())
        .unwrap()
        .unwrap();
    assert_eq!(recorded.action(), Action::Disclose);
    let r = recorded.recipient().unwrap();
    assert_eq!(&*r.name, "Stripe");
    assert_eq!(r.role, privacy_pledge::recipient::RoleId::Processor);
    assert_eq!(
        recorded.kind(),
        Some(privacy_pledge::data::Kind::EmailAddress)
    );
    assert_eq!(recorded.purpose(), Some(PurposeId::Transaction));
    assert_eq!(recorded.rule(), RuleId::R5);

    let _: PersonalInfo<EmailAddress, ServiceNotice> = custodian.repurpose(email).unwrap();
    let last = log.events().pop().unwrap();
    assert_eq!(last.action(), Action::Repurpose);
    assert_eq!(last.target_purpose(), Some(PurposeId::ServiceNotice));
}

#[test]
fn consent_proofs_are_bound_and_rechecked() {
    let custodian = Custodian::in_memory();
    let ada = SubjectId::random();
    let bob = SubjectId::random();

    assert!(matches!(
        custodian.consent_proof::<Promotion>(ada),
        Err(Error::NoConsent {
            purpose: PurposeId::Promotion,
            ..
        })
    ));
    custodian.consents().grant::<Promotion>(ada).unwrap();
    let proof = custodian.consent_proof::<Promotion>(ada).unwrap();
    assert_eq!(proof.subject(), ada);

    // Another subject's data: the proof is not theirs.
    assert!(matches!(
        custodian.repurpose_with_consent(email_of(bob), &proof),
        Err(Error::ProofMismatch { .. })
    ));
    // Another custodian: the proof is not its.
    let other = Custodian::in_memory();
    other.consents().grant::<Promotion>(ada).unwrap();
    assert!(matches!(
        other.repurpose_with_consent(email_of(ada), &proof),
        Err(Error::ProofMismatch { .. })
    ));

    // Withdrawal takes effect for a proof minted before it, and a re-grant
    // does not revive the old proof.
    custodian.consents().withdraw::<Promotion>(ada).unwrap();
    assert!(matches!(
        custodian.repurpose_with_consent(email_of(ada), &proof),
        Err(Error::NoConsent { .. })
    ));
    custodian.consents().grant::<Promotion>(ada).unwrap();
    assert!(matches!(
        custodian.repurpose_with_consent(email_of(ada), &proof),
        Err(Error::NoConsent { .. })
    ));
    let fresh = custodian.consent_proof::<Promotion>(ada).unwrap();
    assert!(custodian
        .repurpose_with_consent(email_of(ada), &fresh)
        .is_ok());

    // Consents are per purpose.
    assert!(custodian.consent_proof::<Personalization>(ada).is_err());
    let states = custodian.consents().of(ada);
    assert_eq!(states.len(), 1);
    assert!(states[0].granted);
}

#[test]
fn refusals_are_recorded_as_denied() {
    let log = Arc::new(MemoryAuditLog::new());
    let custodian = Custodian::builder().audit(log.clone()).build().unwrap();
    let ada = SubjectId::random();
    custodian.consents().grant::<Newsletter>(ada).unwrap();
    let proof = custodian.consent_proof::<Newsletter>(ada).unwrap();
    custodian.consents().withdraw::<Newsletter>(ada).unwrap();
    assert!(custodian
        .repurpose_with_consent(email_of(ada), &proof)
        .is_err());
    let last = log.events().pop().unwrap();
    assert_eq!(last.outcome(), Outcome::Denied);
    assert_eq!(last.rule(), RuleId::R7);
    assert_eq!(last.target_purpose(), Some(PurposeId::Newsletter));
}

#[test]
fn an_erased_subject_can_no_longer_be_used() {
    let custodian = Custodian::in_memory();
    let ada = SubjectId::random();
    let bob = SubjectId::random();
    let email = email_of(ada);
    let sealed = custodian.seal(&email).unwrap();
    let bobs = custodian.seal(&email_of(bob)).unwrap();
    custodian.consents().grant::<Promotion>(ada).unwrap();

    let receipt = custodian.erase(ada).unwrap();
    assert_eq!(receipt.subject(), ada);
    assert!(custodian.is_erased(ada).unwrap());
    assert!(!custodian.is_erased(bob).unwrap());

    assert!(matches!(custodian.open(&sealed), Err(Error::Erased { .. })));
    assert!(matches!(
        custodian.access(&email, |_| ()),
        Err(Error::Erased { .. })
    ));
    assert!(matches!(custodian.seal(&email), Err(Error::Erased { .. })));
    assert!(matches!(
        custodian.consents().grant::<Newsletter>(ada),
        Err(Error::Erased { .. })
    ));
    assert!(matches!(
        custodian.consent_proof::<Promotion>(ada),
        Err(Error::Erased { .. })
    ));
    assert!(matches!(
        custodian.pseudonym(&email),
        Err(Error::Erased { .. })
    ));

    // Other subjects are untouched.
    assert!(custodian.open(&bobs).is_ok());
}

#[test]
fn improvement_works_on_pseudonyms() {
    let custodian = Custodian::in_memory();
    let a: PersonalInfo<EmailAddress, Improvement> = PersonalInfo::collect(
        SubjectId::random(),
        EmailAddress::parse("Ada@Example.com").unwrap(),
    );
    let b = email_of(SubjectId::random());
    let ta = custodian.pseudonym(&a).unwrap();
    let tb = custodian.pseudonym(&b).unwrap();
    assert_ne!(ta, tb);
    let same: PersonalInfo<EmailAddress, Transaction> = PersonalInfo::collect(
        SubjectId::random(),
        EmailAddress::parse("ada@example.COM").unwrap(),
    );
    assert_eq!(ta, custodian.pseudonym(&same).unwrap());
    // Tokens are per data kind and per key.
    let name: PersonalInfo<FullName, Improvement> = PersonalInfo::collect(
        SubjectId::random(),
        FullName::parse("Ada@Example.com").unwrap(),
    );
    assert_ne!(
        ta.as_bytes(),
        custodian.pseudonym(&name).unwrap().as_bytes()
    );
    assert_ne!(ta, Custodian::in_memory().pseudonym(&a).unwrap());
    let shared = custodian
        .disclose_pseudonym(&a, &Stripe, |t| t.to_string())
        .unwrap();
    assert_eq!(shared, ta.to_string());
}

fn assert_redacted(shown: &str, secrets: &[&str]) {
    for s in secrets {
        assert!(!shown.contains(s), "{shown:?} shows {s:?}");
    }
}

#[test]
fn nothing_prints_plaintext() {
    let secrets = [
        "Zelda Quux",
        "zelda.quux",
        "+4930123456",
        "Quuxstrasse",
        "ORD-9931",
        "Quux Recovery",
        "tok_quux",
    ];
    let subject = SubjectId::random();
    let name = FullName::parse("Zelda Quux").unwrap();
    let email = EmailAddress::parse(EMAIL).unwrap();
    let phone = PhoneNumber::parse("+49 30 123456").unwrap();
    let address = PostalAddress::parse("Quuxstrasse 1\n10115 Berlin\nDE").unwrap();
    let order = PurchaseRecord::new(
        "ORD-9931",
        "Quux Recovery",
        Amount::new(100, "EUR").unwrap(),
        Date::new(2020, 2, 2).unwrap(),
    )
    .unwrap();
    let token = PaymentToken::parse("tok_quux").unwrap();

    let custodian = Custodian::in_memory();
    let info: PersonalInfo<FullName, Transaction> = PersonalInfo::collect(subject, name.clone());
    let sealed = custodian.seal(&info).unwrap();
    custodian.consents().grant::<Promotion>(subject).unwrap();
    let proof = custodian.consent_proof::<Promotion>(subject).unwrap();
    let pseudonym = custodian.pseudonym(&info).unwrap();

    let mut shown = vec![
        format!("{name:?} {name}"),
        format!("{email:?} {email}"),
        format!("{phone:?} {phone}"),
        format!("{address:?} {address}"),
        format!("{order:?} {order}"),
        format!("{token:?} {token}"),
        format!("{info:?} {info}"),
        format!("{sealed:?}"),
        format!("{proof:?}"),
        format!("{pseudonym:?} {pseudonym}"),
        format!("{custodian:?}"),
        serde_json::to_string(&sealed).unwrap(),
    ];
    let receipt = custodian.erase(subject).unwrap();
    shown.push(format!("{receipt:?}"));
    let err = custodian.open(&sealed).unwrap_err();
    shown.push(format!("{err:?} {err}"));
    for e in custodian.builtin_audit_log().unwrap().inner().events() {
        shown.push(format!("{e:?}"));
        shown.push(serde_json::to_string(&e).unwrap());
    }
    for s in &shown {
        assert_redacted(s, &secrets);
    }
    assert_eq!(
        format!("{info:?}"),
        format!(
            "PersonalInfo<FullName, Transaction>(subject {}…, [redacted])",
            &subject.to_string()[..4]
        )
    );
}

#[test]
fn custodian_is_shared_between_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Custodian>();
    assert_send_sync::<PersonalInfo<EmailAddress, Transaction>>();

    let custodian = Arc::new(Custodian::in_memory());
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let c = custodian.clone();
            std::thread::spawn(move || {
                let email = email_of(SubjectId::random());
                for _ in 0..250 {
                    c.access(&email, |e| e.domain().len()).unwrap();
                }
                let sealed = c.seal(&email).unwrap();
                c.open(&sealed).unwrap();
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let log = custodian.builtin_audit_log().unwrap();
    assert_eq!(log.checkpoint().seq(), 4 * 252);
    let seqs: Vec<u64> = log.inner().events().iter().map(AuditEvent::seq).collect();
    assert_eq!(seqs, (1..=4 * 252).collect::<Vec<_>>(), "gap-free sequence");
}

#[test]
fn withdrawal_stops_values_already_in_memory() {
    let custodian = Custodian::in_memory();
    let ada = SubjectId::random();
    custodian.consents().grant::<Newsletter>(ada).unwrap();
    let proof = custodian.consent_proof::<Newsletter>(ada).unwrap();
    let subscriber = custodian
        .repurpose_with_consent(email_of(ada), &proof)
        .unwrap();
    assert!(custodian.access(&subscriber, |e| e.domain().len()).is_ok());
    assert!(custodian.disclose(&subscriber, &Stripe, |_| ()).is_ok());

    custodian.consents().withdraw::<Newsletter>(ada).unwrap();
    let ran = std::cell::Cell::new(false);
    assert!(matches!(
        custodian.access(&subscriber, |_| ran.set(true)),
        Err(Error::NoConsent {
            purpose: PurposeId::Newsletter,
            ..
        })
    ));
    assert!(matches!(
        custodian.disclose(&subscriber, &Stripe, |_| ran.set(true)),
        Err(Error::NoConsent { .. })
    ));
    assert!(matches!(
        custodian.seal(&subscriber),
        Err(Error::NoConsent { .. })
    ));
    assert!(!ran.get());

    // Data collected straight into a consent-based purpose is no way around it.
    let direct: PersonalInfo<EmailAddress, Promotion> =
        PersonalInfo::collect(SubjectId::random(), EmailAddress::parse(EMAIL).unwrap());
    assert!(matches!(
        custodian.access(&direct, |_| ()),
        Err(Error::NoConsent { .. })
    ));
    assert!(matches!(
        custodian.collect::<EmailAddress, Promotion>(
            SubjectId::random(),
            EmailAddress::parse(EMAIL).unwrap()
        ),
        Err(Error::NoConsent { .. })
    ));
}

/// A5: another custodian sharing the key store (another process) erases a
/// subject whose keys this one has cached. This one's next seal that needs a
/// new reservation finds the store's key row gone: it is refused as
/// `Erased`, as an open would be, not as an unexplained key-store conflict
/// (the race `tests/store_postgres.rs`'s concurrent checkouts can hit).
#[test]
fn a5_a_seal_after_an_erasure_elsewhere_is_refused_as_erased() {
    use privacy_pledge::crypto::{Keyring, MemoryKeyStore};

    let keyring = Arc::new(Keyring::generate().unwrap());
    let store = Arc::new(MemoryKeyStore::new());
    let build = || {
        Custodian::builder()
            .keyring(keyring.clone())
            .key_store(store.clone())
            .build()
            .unwrap()
    };
    let (here, elsewhere) = (build(), build());
    let subject = SubjectId::random();
    let email: PersonalInfo<EmailAddress, Transaction> =
        PersonalInfo::collect(subject, EmailAddress::parse(EMAIL).unwrap());
    let sealed = elsewhere.seal(&email).unwrap();
    // Caches the subject's keys here, with no reservation of seals.
    here.open(&sealed).unwrap();
    elsewhere.erase(subject).unwrap();
    let refused = here.seal(&email);
    assert!(
        matches!(refused, Err(Error::Erased { subject: s, .. }) if s == subject),
        "{refused:?}"
    );
    assert!(matches!(here.open(&sealed), Err(Error::Erased { .. })));
}

/// Whether `r` is the refusal of an erased subject.
fn is_erased_err(r: &Result<impl std::fmt::Debug, Error>) -> bool {
    matches!(r, Err(Error::Erased { .. }))
}

/// Custodians over one keyring and one shared in-memory key store (no
/// freshness anchor), each built from a builder holding both, passed
/// through `extra`.
fn sharing_keys(
    extra: impl Fn(privacy_pledge::CustodianBuilder) -> privacy_pledge::CustodianBuilder,
) -> impl Fn() -> Custodian {
    let keyring = Arc::new(privacy_pledge::crypto::Keyring::generate().unwrap());
    let store = Arc::new(privacy_pledge::crypto::MemoryKeyStore::new());
    move || {
        extra(
            Custodian::builder()
                .keyring(keyring.clone())
                .key_store(store.clone()),
        )
        .build()
        .unwrap()
    }
}

/// A1: the host erases a subject (R11: "its data can no longer be opened or
/// used"), then builds another custodian over the same keyring and key store
/// — a restart, or a second custodian in the same process; no freshness
/// anchor configured. Its in-memory set of erasures is empty, but it finds
/// the key store's tombstone: it refuses to collect, read, disclose,
/// transfer or repurpose the erased subject's data, or to make a consent
/// live for it, as the custodian that erased does.
#[test]
fn a1_a_custodian_built_after_an_erasure_refuses_every_use_of_the_erased_subject() {
    let build = sharing_keys(|b| {
        b.facilities([
            "DE".parse::<privacy_pledge::country::Country>().unwrap(),
            "IE".parse().unwrap(),
        ])
    });
    let before = build();
    let ada = before.new_subject().unwrap();
    let email: PersonalInfo<EmailAddress, Transaction> = before
        .collect(ada, EmailAddress::parse("ada@example.com").unwrap())
        .unwrap();
    let sealed = before.seal(&email).unwrap();
    before.erase(ada).unwrap();
    // The erasing custodian refuses everything, as it should.
    assert!(is_erased_err(&before.access(&email, |_| ())));
    assert!(is_erased_err(
        &before
            .consents()
            .grant::<privacy_pledge::purpose::Promotion>(ada)
    ));
    drop(before);

    let after = build();
    // The new custodian knows the subject is erased...
    assert!(after.is_erased(ada).unwrap());
    assert!(is_erased_err(&after.open(&sealed)));

    // ...but every use that does not touch the key store goes ahead.
    let mut failures = Vec::new();
    let read = after.access(&email, |e| e.domain().to_owned());
    if !is_erased_err(&read) {
        failures.push(format!("access -> {read:?}"));
    }
    let sent = after.disclose(&email, &Stripe, |e| e.domain().len());
    if !is_erased_err(&sent) {
        failures.push(format!("disclose -> {sent:?}"));
    }
    let moved = after.transfer(
        &email,
        &privacy_pledge::transfer::Transfer::new("DE".parse().unwrap(), "IE".parse().unwrap()),
    );
    if !is_erased_err(&moved) {
        failures.push(format!("transfer -> {moved:?}"));
    }
    let again = after
        .collect::<EmailAddress, Transaction>(ada, EmailAddress::parse("ada@example.com").unwrap());
    if !is_erased_err(&again) {
        failures.push(format!("collect -> {:?}", again.as_ref().map(|_| ())));
    }
    let grant = after
        .consents()
        .grant::<privacy_pledge::purpose::Promotion>(ada);
    if !is_erased_err(&grant) {
        failures.push(format!(
            "grant::<privacy_pledge::purpose::Promotion> -> {grant:?}"
        ));
    }
    if let Ok(proof) = after.consent_proof::<privacy_pledge::purpose::Promotion>(ada) {
        let promo = after.repurpose_with_consent(email.clone(), &proof);
        failures.push(format!(
            "consent_proof::<privacy_pledge::purpose::Promotion> minted; repurpose_with_consent -> {:?}",
            promo.as_ref().map(|_| ())
        ));
    }
    assert!(
        failures.is_empty(),
        "an erased subject (is_erased = true) was used:\n  {}",
        failures.join("\n  ")
    );
}

/// A1 (one process): two custodians share a key store; one erases, and the
/// other — told to ask the key store on every use (`key_revalidate_after(0)`)
/// — no longer hands the erased subject's plaintext, held in memory, to
/// `access`'s closure.
#[test]
fn a1_an_erasure_by_a_sibling_custodian_stops_access_to_values_in_memory() {
    let build = sharing_keys(|b| b.key_revalidate_after(std::time::Duration::ZERO));
    let (here, elsewhere) = (build(), build());
    let ada = SubjectId::random();
    let sealed = elsewhere
        .seal(&PersonalInfo::<EmailAddress, Transaction>::collect(
            ada,
            EmailAddress::parse("ada@example.com").unwrap(),
        ))
        .unwrap();
    let email = here.open(&sealed).unwrap();
    elsewhere.erase(ada).unwrap();
    assert!(here.is_erased(ada).unwrap());
    assert!(is_erased_err(&here.open(&sealed)));
    let read = here.access(&email, |e| e.domain().to_owned());
    assert!(
        is_erased_err(&read),
        "plaintext of an erased subject read: {read:?}"
    );
}
