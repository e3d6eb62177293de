use privacy_pledge::data::EmailAddress;
use privacy_pledge::purpose::{Transaction, Newsletter};
use privacy_pledge::{Custodian, PersonalInfo, SubjectId};

fn main() {
    let custodian = Custodian::in_memory();
    let email: PersonalInfo<EmailAddress, Transaction> =
        PersonalInfo::collect(SubjectId::random(), EmailAddress::parse("ada@example.com").unwrap());
    let subject = email.subject();
    custodian.consents().grant::<Newsletter>(subject).unwrap();
    let proof = custodian.consent_proof::<Newsletter>(subject).unwrap();
    let _: PersonalInfo<EmailAddress, Newsletter> = custodian.repurpose_with_consent(email, &proof).unwrap();
}
