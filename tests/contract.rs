//! The public API contract of DESIGN.md, written as a user writes it. If a
//! name or shape of the contract changes, this file stops compiling.

#![allow(unused_imports)]

use std::sync::Arc;

use privacy_pledge::audit::{AuditError, AuditEvent, AuditSink, ChainedAuditLog, MemoryAuditLog};
use privacy_pledge::consent::ConsentProof;
use privacy_pledge::data::{EmailAddress, FullName, PhoneNumber, PostalAddress, PurchaseRecord};
use privacy_pledge::purpose::{
    Correspondence, Improvement, Newsletter, Personalization, Promotion, ServiceNotice, Support,
    Transaction,
};
use privacy_pledge::recipient::{Affiliate, Processor, Recipient, ThirdParty};
use privacy_pledge::{Custodian, Error, PersonalInfo, Pseudonym, Sealed, SubjectId};

struct Stripe;
impl Recipient for Stripe {
    type Role = Processor;
    fn name(&self) -> &str {
        "Stripe"
    }
}

struct MyDbSink(std::sync::Mutex<Vec<String>>);
impl MyDbSink {
    fn new(conn: Vec<String>) -> Self {
        MyDbSink(std::sync::Mutex::new(conn))
    }
}
impl AuditSink for MyDbSink {
    fn record(&self, event: &AuditEvent) -> Result<(), AuditError> {
        let line = serde_json::to_string(event).map_err(|_| AuditError::new("encode"))?;
        self.0
            .lock()
            .map_err(|_| AuditError::new("disk full"))?
            .push(line);
        Ok(())
    }
}

fn send(e: &EmailAddress) -> usize {
    e.domain().len()
}

#[test]
#[allow(clippy::redundant_closure)] // `|e| send(e)` exactly as DESIGN.md writes it
fn the_contract_compiles_and_runs_as_written() -> Result<(), Box<dyn std::error::Error>> {
    let _: Result<EmailAddress, privacy_pledge::data::InvalidData> =
        EmailAddress::parse("a@b.example");
    let _ = (
        FullName::parse("Ada")?,
        PostalAddress::parse("1 Main St\nUS")?,
        PhoneNumber::parse("+14155550132")?,
    );
    let subject = SubjectId::random();
    assert_eq!(
        SubjectId::from(7u128).to_string().parse::<SubjectId>()?,
        SubjectId::from(7u128)
    );
    let email: PersonalInfo<EmailAddress, Transaction> =
        PersonalInfo::collect(subject, EmailAddress::parse("ada@example.com")?);

    let custodian = Custodian::in_memory();
    let payment_processor = Stripe;

    let domain = custodian.access(&email, |e| e.domain().to_owned())?;
    let receipt = custodian.disclose(&email, &payment_processor, |e| send(e))?;
    let notice: PersonalInfo<EmailAddress, ServiceNotice> = custodian.repurpose(email.clone())?;
    custodian.consents().grant::<Promotion>(subject)?;
    let proof: ConsentProof<Promotion> = custodian.consent_proof::<Promotion>(subject)?;
    let promo: PersonalInfo<EmailAddress, Promotion> =
        custodian.repurpose_with_consent(email.clone(), &proof)?;

    let sealed: Sealed<EmailAddress, Transaction> = custodian.seal(&email)?;
    let back = custodian.open(&sealed)?;
    let token: Pseudonym<EmailAddress> = custodian.pseudonym(&email)?;
    custodian.erase(subject)?;
    assert!(matches!(custodian.open(&sealed), Err(Error::Erased { .. })));

    assert_eq!(domain, "example.com");
    assert_eq!(receipt, "example.com".len());
    assert_eq!(back.subject(), subject);
    assert_eq!(token.to_string().len(), 64);
    let _ = (notice, promo);

    // Host-supplied sink; `Arc<S>` is a sink too, so the host keeps a handle.
    let sink = Arc::new(MyDbSink::new(Vec::new()));
    let custodian = Custodian::builder().audit(sink.clone()).build()?;
    custodian.consents().grant::<Promotion>(subject)?;
    custodian.consents().withdraw::<Promotion>(subject)?;
    assert!(custodian.consent_proof::<Promotion>(subject).is_err());
    assert_eq!(
        sink.0.lock().unwrap().len(),
        2,
        "build() audits nothing; the two consent changes do"
    );
    let _ = AuditError::new("disk full");
    let _: Option<&ChainedAuditLog<MemoryAuditLog>> = Custodian::in_memory().builtin_audit_log();
    Ok(())
}
