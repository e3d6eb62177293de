use privacy_pledge::data::EmailAddress;
use privacy_pledge::purpose::{Transaction, Personalization};
use privacy_pledge::{Custodian, PersonalInfo, SubjectId};

fn main() {
    let custodian = Custodian::in_memory();
    let email: PersonalInfo<EmailAddress, Transaction> =
        PersonalInfo::collect(SubjectId::random(), EmailAddress::parse("ada@example.com").unwrap());
    let subject = email.subject();
    custodian.consents().grant::<Personalization>(subject).unwrap();
    let proof = custodian.consent_proof::<Personalization>(subject).unwrap();
    let _: PersonalInfo<EmailAddress, Personalization> = custodian.repurpose_with_consent(email, &proof).unwrap();
}
