use privacy_pledge::data::{EmailAddress, FullName};
use privacy_pledge::purpose::Transaction;
use privacy_pledge::{Custodian, PersonalInfo, PersonalRecord, SubjectId};

#[derive(PersonalRecord)]
#[pledge(sealed = "CustomerRow")]
pub struct Customer {
    pub name: PersonalInfo<FullName, Transaction>,
    #[pledge(lookup)]
    pub email: PersonalInfo<EmailAddress, Transaction>,
    #[pledge(not_personal)]
    pub newsletter: bool,
}

fn main() {
    let custodian = Custodian::in_memory();
    let subject = SubjectId::random();
    let customer = Customer {
        name: PersonalInfo::collect(subject, FullName::parse("Ada Lovelace").unwrap()),
        email: PersonalInfo::collect(subject, EmailAddress::parse("ada@example.com").unwrap()),
        newsletter: false,
    };
    let row: CustomerRow = custodian.seal_record(&customer).unwrap();
    assert_eq!(row.subject, subject);
    assert!(!row.newsletter);
    let _back: Customer = custodian.open_record(&row).unwrap();
}
