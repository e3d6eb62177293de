// A data kind inside `Option` or `Vec` is still personal information.
use privacy_pledge::data::{EmailAddress, FullName, PhoneNumber};
use privacy_pledge::purpose::Transaction;
use privacy_pledge::{PersonalInfo, PersonalRecord};

#[derive(PersonalRecord)]
struct Customer {
    name: PersonalInfo<FullName, Transaction>,
    #[pledge(not_personal)]
    backup_email: Option<EmailAddress>,
    #[pledge(not_personal)]
    phones: Vec<PhoneNumber>,
}

fn main() {}
