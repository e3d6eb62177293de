use privacy_pledge::data::{EmailAddress, FullName};
use privacy_pledge::purpose::Transaction;
use privacy_pledge::{PersonalInfo, PersonalRecord};

#[derive(PersonalRecord)]
struct Contact(
    PersonalInfo<FullName, Transaction>,
    PersonalInfo<EmailAddress, Transaction>,
);

fn main() {}
