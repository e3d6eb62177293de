// A lookup token reveals equality of plaintext values: only a purpose that
// sees plaintext may make one from stored data (R6).
use privacy_pledge::data::EmailAddress;
use privacy_pledge::purpose::Improvement;
use privacy_pledge::{Custodian, PersonalInfo, SubjectId};

fn main() {
    let custodian = Custodian::in_memory();
    let email: PersonalInfo<EmailAddress, Improvement> =
        PersonalInfo::collect(SubjectId::random(), EmailAddress::parse("ada@example.com").unwrap());
    let _ = custodian.lookup_token(&email);
}
