use privacy_pledge::data::{EmailAddress, FullName};
use privacy_pledge::purpose::Transaction;
use privacy_pledge::{PersonalInfo, PersonalRecord};

#[derive(PersonalRecord)]
struct Customer {
    name: PersonalInfo<FullName, Transaction>,
    #[pledge(index)]
    email: PersonalInfo<EmailAddress, Transaction>,
}

fn main() {}
