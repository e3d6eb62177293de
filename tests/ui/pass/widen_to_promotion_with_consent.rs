use privacy_pledge::data::EmailAddress;
use privacy_pledge::purpose::{Transaction, Promotion};
use privacy_pledge::{Custodian, PersonalInfo, SubjectId};

fn main() {
    let custodian = Custodian::in_memory();
    let email: PersonalInfo<EmailAddress, Transaction> =
        PersonalInfo::collect(SubjectId::random(), EmailAddress::parse("ada@example.com").unwrap());
    let subject = email.subject();
    custodian.consents().grant::<Promotion>(subject).unwrap();
    let proof = custodian.consent_proof::<Promotion>(subject).unwrap();
    let _: PersonalInfo<EmailAddress, Promotion> = custodian.repurpose_with_consent(email, &proof).unwrap();
}
