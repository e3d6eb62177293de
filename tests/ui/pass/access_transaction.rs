use privacy_pledge::data::EmailAddress;
use privacy_pledge::purpose::{Transaction};
use privacy_pledge::{Custodian, PersonalInfo, SubjectId};

fn main() {
    let custodian = Custodian::in_memory();
    let email: PersonalInfo<EmailAddress, Transaction> =
        PersonalInfo::collect(SubjectId::random(), EmailAddress::parse("ada@example.com").unwrap());
    let _ = custodian.access(&email, |e| e.domain().len());
}
