use privacy_pledge::data::EmailAddress;
use privacy_pledge::purpose::Improvement;
use privacy_pledge::report::StoredRecord;
use privacy_pledge::{Custodian, PersonalInfo, Sealed, SubjectId};

fn main() {
    let custodian = Custodian::in_memory();
    let email: PersonalInfo<EmailAddress, Improvement> =
        PersonalInfo::collect(SubjectId::random(), EmailAddress::parse("ada@example.com").unwrap());
    let sealed: Sealed<EmailAddress, Improvement> = custodian.seal(&email).unwrap();
    let record: &dyn StoredRecord = &sealed;
    // R6/R9: no public path opens a stored record outside access/disclose.
    let _ = record.open_for_subject(&custodian);
}
