use privacy_pledge::data::EmailAddress;
use privacy_pledge::purpose::{Promotion};
use privacy_pledge::{Custodian, PersonalInfo, SubjectId};

fn main() {
    let custodian = Custodian::in_memory();
    let email: PersonalInfo<EmailAddress, Promotion> =
        PersonalInfo::collect(SubjectId::random(), EmailAddress::parse("ada@example.com").unwrap());
    custodian.consents().grant::<Promotion>(email.subject()).unwrap();
    let proof = custodian.consent_proof::<Promotion>(email.subject()).unwrap();
    let _copy = proof.clone();
}
