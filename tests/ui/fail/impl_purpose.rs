use privacy_pledge::purpose::{Purpose, PurposeId};

enum Resale {}

impl Purpose for Resale {
    const ID: PurposeId = PurposeId::Transaction;
}

fn main() {}
