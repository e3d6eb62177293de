use privacy_pledge::data::EmailAddress;
use privacy_pledge::purpose::{ServiceNotice};
use privacy_pledge::{Custodian, PersonalInfo, SubjectId};

fn main() {
    let custodian = Custodian::in_memory();
    let email: PersonalInfo<EmailAddress, ServiceNotice> =
        PersonalInfo::collect(SubjectId::random(), EmailAddress::parse("ada@example.com").unwrap());
    let _ = custodian.consents().grant::<ServiceNotice>(email.subject());
}
