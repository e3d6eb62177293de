use privacy_pledge::data::{EmailAddress, FullName};
use privacy_pledge::purpose::Transaction;
use privacy_pledge::{Custodian, PersonalInfo, PersonalRecord, SubjectId};

#[derive(PersonalRecord)]
struct Contact {
    name: PersonalInfo<FullName, Transaction>,
    email: PersonalInfo<EmailAddress, Transaction>,
}

fn main() {
    let custodian = Custodian::in_memory();
    let subject = SubjectId::random();
    let contact = Contact {
        name: PersonalInfo::collect(subject, FullName::parse("Ada Lovelace").unwrap()),
        email: PersonalInfo::collect(subject, EmailAddress::parse("ada@example.com").unwrap()),
    };
    let row: SealedContact = custodian.seal_record(&contact).unwrap();
    let back: Contact = custodian.open_record(&row).unwrap();
    assert_eq!(back.email.subject(), subject);
}
