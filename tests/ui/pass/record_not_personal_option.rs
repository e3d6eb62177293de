use privacy_pledge::data::FullName;
use privacy_pledge::purpose::Transaction;
use privacy_pledge::{Custodian, PersonalInfo, PersonalRecord, SubjectId};

#[derive(PersonalRecord)]
struct Customer {
    name: PersonalInfo<FullName, Transaction>,
    #[pledge(not_personal)]
    backup_email_verified: Option<bool>,
}

fn main() {
    let custodian = Custodian::in_memory();
    let customer = Customer {
        name: PersonalInfo::collect(SubjectId::random(), FullName::parse("Ada Lovelace").unwrap()),
        backup_email_verified: Some(true),
    };
    let row = custodian.seal_record(&customer).unwrap();
    assert_eq!(custodian.open_record(&row).unwrap().backup_email_verified, Some(true));
}
