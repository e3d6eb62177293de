#![forbid(unsafe_code)]

use privacy_pledge::data::FullName;
use privacy_pledge::purpose::Transaction;
use privacy_pledge::{Custodian, PersonalInfo, PersonalRecord, SubjectId};

#[derive(PersonalRecord)]
struct Customer {
    name: PersonalInfo<FullName, Transaction>,
    #[pledge(not_personal)]
    age: u8,
}

fn main() {
    let custodian = Custodian::in_memory();
    let customer = Customer {
        name: PersonalInfo::collect(SubjectId::random(), FullName::parse("Ada Lovelace").unwrap()),
        age: 36,
    };
    let row: SealedCustomer = custodian.seal_record(&customer).unwrap();
    assert_eq!(row.age, 36);
    let back: Customer = custodian.open_record(&row).unwrap();
    assert_eq!(back.age, 36);
}
