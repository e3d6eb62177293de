use privacy_pledge::data::EmailAddress;
use privacy_pledge::purpose::Newsletter;
use privacy_pledge::recipient::{Processor, Recipient};
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
    let subject = SubjectId::random();
    custodian.consents().grant::<Newsletter>(subject).unwrap();
    let subscriber: PersonalInfo<EmailAddress, Newsletter> =
        PersonalInfo::collect(subject, EmailAddress::parse("ada@example.com").unwrap());
    // A processor delivering on the vendor's behalf may get the pseudonym.
    let _ = custodian.disclose_pseudonym(&subscriber, &MailDelivery, |token| token.to_string());
}
