use privacy_pledge::data::{EmailAddress, FullName};
use privacy_pledge::purpose::Transaction;
use privacy_pledge::{PersonalInfo, PersonalRecord};

#[derive(PersonalRecord)]
enum Contact {
    Name(PersonalInfo<FullName, Transaction>),
    Email(PersonalInfo<EmailAddress, Transaction>),
}

fn main() {}
