use privacy_pledge::data::EmailAddress;
use privacy_pledge::purpose::Newsletter;
use privacy_pledge::recipient::{Affiliate, Recipient};
use privacy_pledge::{Custodian, PersonalInfo, SubjectId};

struct SisterCompany;
impl Recipient for SisterCompany {
    type Role = Affiliate;
    fn name(&self) -> &str {
        "sister company"
    }
}

fn main() {
    let custodian = Custodian::in_memory();
    let subscriber: PersonalInfo<EmailAddress, Newsletter> =
        PersonalInfo::collect(SubjectId::random(), EmailAddress::parse("ada@example.com").unwrap());
    // R4: a pseudonymised subscriber list is still the list.
    let _ = custodian.disclose_pseudonym(&subscriber, &SisterCompany, |token| token.to_string());
}
