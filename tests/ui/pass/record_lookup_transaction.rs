use privacy_pledge::data::{EmailAddress, FullName};
use privacy_pledge::purpose::{Improvement, Transaction};
use privacy_pledge::{Custodian, PersonalInfo, PersonalRecord, SubjectId};

#[derive(PersonalRecord)]
struct Visitor {
    name: PersonalInfo<FullName, Improvement>,
    #[pledge(lookup)]
    email: PersonalInfo<EmailAddress, Transaction>,
}

fn main() {
    let custodian = Custodian::in_memory();
    let subject = SubjectId::random();
    let visitor = Visitor {
        name: PersonalInfo::collect(subject, FullName::parse("Ada Lovelace").unwrap()),
        email: PersonalInfo::collect(subject, EmailAddress::parse("ada@example.com").unwrap()),
    };
    let row = custodian.seal_record(&visitor).unwrap();
    let typed = EmailAddress::parse("ADA@example.com").unwrap();
    assert_eq!(row.email_lookup, custodian.lookup_token_of(&typed));
}
