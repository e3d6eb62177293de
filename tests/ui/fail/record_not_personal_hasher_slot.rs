// A1: a data kind (or a whole `PersonalInfo`) in the hasher slot of a
// `HashSet`/`HashMap` is still personal information: `#[pledge(not_personal)]`
// must refuse it, like `Option<EmailAddress>` (record_not_personal_wrapped_kind)
// and `Option<PersonalInfo<..>>` (record_not_personal_holds_personal). No host
// `impl NotPersonal` is involved: the crate's own impls admit it.
use std::collections::{HashMap, HashSet};

use privacy_pledge::data::{EmailAddress, FullName};
use privacy_pledge::purpose::{Newsletter, Transaction};
use privacy_pledge::{PersonalInfo, PersonalRecord};

#[derive(PersonalRecord)]
struct Customer {
    name: PersonalInfo<FullName, Transaction>,
    #[pledge(not_personal)]
    backup_email: HashSet<u8, EmailAddress>,
    #[pledge(not_personal)]
    newsletter_email: HashMap<u8, u8, PersonalInfo<EmailAddress, Newsletter>>,
}

fn main() {}
