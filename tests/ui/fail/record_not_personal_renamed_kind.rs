// A data kind imported under another name is still the data kind: the
// derive decides on the type, not on how it is written.
use privacy_pledge::data::EmailAddress as Contact;
use privacy_pledge::data::FullName;
use privacy_pledge::purpose::Transaction;
use privacy_pledge::{PersonalInfo, PersonalRecord};

#[derive(PersonalRecord)]
struct Customer {
    name: PersonalInfo<FullName, Transaction>,
    #[pledge(not_personal)]
    contact: Contact,
}

fn main() {}
