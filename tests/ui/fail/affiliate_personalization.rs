use privacy_pledge::data::EmailAddress;
use privacy_pledge::purpose::Personalization;
use privacy_pledge::recipient::{Recipient, Affiliate};
use privacy_pledge::{Custodian, PersonalInfo, SubjectId};

struct Subsidiary;
impl Recipient for Subsidiary {
    type Role = Affiliate;
    fn name(&self) -> &str {
        "subsidiary"
    }
}

fn main() {
    let custodian = Custodian::in_memory();
    let email: PersonalInfo<EmailAddress, Personalization> =
        PersonalInfo::collect(SubjectId::random(), EmailAddress::parse("ada@example.com").unwrap());
    let _ = custodian.disclose(&email, &Subsidiary, |e| e.domain().len());
}
