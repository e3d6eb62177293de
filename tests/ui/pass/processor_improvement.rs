use privacy_pledge::data::EmailAddress;
use privacy_pledge::purpose::Improvement;
use privacy_pledge::recipient::{Recipient, Processor};
use privacy_pledge::{Custodian, PersonalInfo, SubjectId};

struct Analytics;
impl Recipient for Analytics {
    type Role = Processor;
    fn name(&self) -> &str {
        "analytics agent"
    }
}

fn main() {
    let custodian = Custodian::in_memory();
    let email: PersonalInfo<EmailAddress, Improvement> =
        PersonalInfo::collect(SubjectId::random(), EmailAddress::parse("ada@example.com").unwrap());
    let _ = custodian.disclose_pseudonym(&email, &Analytics, |token| token.to_string());
}
