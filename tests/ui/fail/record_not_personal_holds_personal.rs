use privacy_pledge::data::{EmailAddress, FullName};
use privacy_pledge::purpose::Transaction;
use privacy_pledge::{PersonalInfo, PersonalRecord};

#[derive(PersonalRecord)]
struct Customer {
    name: PersonalInfo<FullName, Transaction>,
    #[pledge(not_personal)]
    backup_email: Option<PersonalInfo<EmailAddress, Transaction>>,
}

fn main() {}
