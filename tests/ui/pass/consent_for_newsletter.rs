use privacy_pledge::data::EmailAddress;
use privacy_pledge::purpose::{Newsletter};
use privacy_pledge::{Custodian, PersonalInfo, SubjectId};

fn main() {
    let custodian = Custodian::in_memory();
    let email: PersonalInfo<EmailAddress, Newsletter> =
        PersonalInfo::collect(SubjectId::random(), EmailAddress::parse("ada@example.com").unwrap());
    custodian.consents().grant::<Newsletter>(email.subject()).unwrap();
}
