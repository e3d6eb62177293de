use privacy_pledge::data::FullName;
use privacy_pledge::purpose::Transaction;
use privacy_pledge::record::Only;
use privacy_pledge::{Custodian, PersonalInfo, PersonalRecord, SubjectId};

#[derive(PersonalRecord)]
struct Customer {
    name: PersonalInfo<FullName, Transaction>,
}

fn main() {
    let custodian = Custodian::in_memory();
    let customer = Customer {
        name: PersonalInfo::collect(SubjectId::random(), FullName::parse("Ada Lovelace").unwrap()),
    };
    let _ = customer.__seal(&custodian, &Only(()));
}
