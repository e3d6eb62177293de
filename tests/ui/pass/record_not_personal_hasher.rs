// Sets and maps of values that hold no personal information, with the
// standard hasher or a default-built one, are not personal.
use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, HashSet};
use std::hash::BuildHasherDefault;

use privacy_pledge::data::FullName;
use privacy_pledge::purpose::Transaction;
use privacy_pledge::{Custodian, PersonalInfo, PersonalRecord, SubjectId};

#[derive(PersonalRecord)]
struct Customer {
    name: PersonalInfo<FullName, Transaction>,
    #[pledge(not_personal)]
    tags: HashSet<u8>,
    #[pledge(not_personal)]
    counts: HashMap<u8, u8, BuildHasherDefault<DefaultHasher>>,
}

fn main() {
    let custodian = Custodian::in_memory();
    let customer = Customer {
        name: PersonalInfo::collect(SubjectId::random(), FullName::parse("Ada Lovelace").unwrap()),
        tags: HashSet::from([1, 2]),
        counts: HashMap::default(),
    };
    let row = custodian.seal_record(&customer).unwrap();
    assert_eq!(custodian.open_record(&row).unwrap().tags, HashSet::from([1, 2]));
}
