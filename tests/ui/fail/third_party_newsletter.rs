use privacy_pledge::data::EmailAddress;
use privacy_pledge::purpose::Newsletter;
use privacy_pledge::recipient::{Recipient, ThirdParty};
use privacy_pledge::{Custodian, PersonalInfo, SubjectId};

struct DataBroker;
impl Recipient for DataBroker {
    type Role = ThirdParty;
    fn name(&self) -> &str {
        "data broker"
    }
}

fn main() {
    let custodian = Custodian::in_memory();
    let email: PersonalInfo<EmailAddress, Newsletter> =
        PersonalInfo::collect(SubjectId::random(), EmailAddress::parse("ada@example.com").unwrap());
    let _ = custodian.disclose(&email, &DataBroker, |e| e.domain().len());
}
