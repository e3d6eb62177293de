use privacy_pledge::data::FullName;
use privacy_pledge::purpose::Transaction;
use privacy_pledge::{PersonalInfo, PersonalRecord};

#[derive(PersonalRecord)]
struct Customer {
    name: PersonalInfo<FullName, Transaction>,
    #[pledge(not_personal, lookup)]
    customer_number: u64,
}

fn main() {}
