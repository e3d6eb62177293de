//! A customer checks out: the crate's main job end to end.
//!
//! `cargo run --example checkout`

use privacy_pledge::data::{Amount, Date, EmailAddress, FullName, PurchaseRecord};
use privacy_pledge::purpose::{Promotion, ServiceNotice, Transaction};
use privacy_pledge::recipient::{Processor, Recipient};
use privacy_pledge::{Custodian, PersonalInfo, SubjectId};

struct PaymentProcessor;

impl Recipient for PaymentProcessor {
    type Role = Processor;
    fn name(&self) -> &str {
        "payment processor"
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let custodian = Custodian::in_memory();
    let customer = SubjectId::random();

    let name: PersonalInfo<FullName, Transaction> =
        custodian.collect(customer, FullName::parse("Ada Lovelace")?)?;
    let email: PersonalInfo<EmailAddress, Transaction> =
        custodian.collect(customer, EmailAddress::parse("ada@example.com")?)?;
    let order: PersonalInfo<PurchaseRecord, Transaction> = custodian.collect(
        customer,
        PurchaseRecord::new(
            "ORD-1001",
            "Data Recovery Pro",
            Amount::new(6_995, "USD")?,
            Date::new(2018, 6, 30)?,
        )?,
    )?;

    let charged = custodian.disclose(&order, &PaymentProcessor, |o| o.amount().minor_units())?;
    let notice: PersonalInfo<EmailAddress, ServiceNotice> = custodian.repurpose(email.clone())?;
    custodian.access(&notice, |e| {
        println!("welcome letter sent to a mailbox at {}", e.domain())
    })?;

    let sealed_name = custodian.seal(&name)?;
    println!(
        "stored name as {} envelope bytes",
        sealed_name.as_bytes().len()
    );
    println!("charged {charged} minor units through the processor");

    match custodian.consent_proof::<Promotion>(customer) {
        Ok(_) => println!("promotion allowed"),
        Err(e) => println!("no promotional mail: {e}"),
    }

    let log = custodian.builtin_audit_log().ok_or("no built-in log")?;
    println!("audit head: {}", log.checkpoint());
    Ok(())
}
