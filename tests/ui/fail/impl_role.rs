use privacy_pledge::recipient::{Role, RoleId};

enum TrustedBuyer {}

impl Role for TrustedBuyer {
    const ID: RoleId = RoleId::Processor;
}

fn main() {}
