use privacy_pledge::data::{EmailAddress, FullName};
use privacy_pledge::purpose::{Improvement, Transaction};
use privacy_pledge::{PersonalInfo, PersonalRecord};

#[derive(PersonalRecord)]
struct Visitor {
    name: PersonalInfo<FullName, Transaction>,
    #[pledge(lookup)]
    email: PersonalInfo<EmailAddress, Improvement>,
}

fn main() {}
