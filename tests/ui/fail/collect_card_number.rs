use privacy_pledge::purpose::Transaction;
use privacy_pledge::{PersonalInfo, SubjectId};

fn main() {
    let _: PersonalInfo<String, Transaction> =
        PersonalInfo::collect(SubjectId::random(), String::from("4111 1111 1111 1111"));
}
