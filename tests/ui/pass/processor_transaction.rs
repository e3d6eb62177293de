use privacy_pledge::data::EmailAddress;
use privacy_pledge::purpose::Transaction;
use privacy_pledge::recipient::{Recipient, Processor};
use privacy_pledge::{Custodian, PersonalInfo, SubjectId};

struct MailDelivery;
impl Recipient for MailDelivery {
    type Role = Processor;
    fn name(&self) -> &str {
        "mail delivery"
    }
}

fn main() {
    let custodian = Custodian::in_memory();
    let email: PersonalInfo<EmailAddress, Transaction> =
        PersonalInfo::collect(SubjectId::random(), EmailAddress::parse("ada@example.com").unwrap());
    let _ = custodian.disclose(&email, &MailDelivery, |e| e.domain().len());
}
