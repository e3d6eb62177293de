use privacy_pledge::purpose::{Purpose, PurposeId, Transaction};

fn main() {
    assert_eq!(Transaction::ID, PurposeId::Transaction);
}
