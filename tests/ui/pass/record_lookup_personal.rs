use privacy_pledge::data::{FullName, PhoneNumber};
use privacy_pledge::purpose::{Support, Transaction};
use privacy_pledge::{Custodian, LookupToken, PersonalInfo, PersonalRecord, SubjectId};

#[derive(PersonalRecord)]
struct Customer {
    name: PersonalInfo<FullName, Transaction>,
    #[pledge(lookup)]
    phone: PersonalInfo<PhoneNumber, Support>,
    #[pledge(not_personal)]
    customer_number: u64,
}

fn main() {
    let custodian = Custodian::in_memory();
    let subject = SubjectId::random();
    let customer = Customer {
        name: PersonalInfo::collect(subject, FullName::parse("Ada Lovelace").unwrap()),
        phone: PersonalInfo::collect(subject, PhoneNumber::parse("+49 30 123456").unwrap()),
        customer_number: 17,
    };
    let row = custodian.seal_record(&customer).unwrap();
    let index: &LookupToken<PhoneNumber> = &row.phone_lookup;
    assert_eq!(*index, custodian.lookup_token_of(&PhoneNumber::parse("+4930123456").unwrap()));
    assert_eq!(row.customer_number, 17);
}
