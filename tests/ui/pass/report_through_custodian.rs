use privacy_pledge::data::EmailAddress;
use privacy_pledge::purpose::Improvement;
use privacy_pledge::report::StoredRecord;
use privacy_pledge::{Custodian, PersonalInfo, Sealed, SubjectId};

fn main() {
    let custodian = Custodian::in_memory();
    let subject = SubjectId::random();
    let email: PersonalInfo<EmailAddress, Improvement> =
        PersonalInfo::collect(subject, EmailAddress::parse("ada@example.com").unwrap());
    let sealed: Sealed<EmailAddress, Improvement> = custodian.seal(&email).unwrap();
    let record: &dyn StoredRecord = &sealed;
    let log = custodian.builtin_audit_log().unwrap();
    let trail = custodian
        .verify_trail(log.inner().events())
        .unwrap();
    // The audited path: the report lists the record as held, not its value.
    let report = custodian.subject_report(subject, &[record], &trail).unwrap();
    assert!(report.records()[0].value.is_none());
}
