use privacy_pledge::recipient::{Processor, Role, RoleId};

fn main() {
    assert_eq!(Processor::ID, RoleId::Processor);
}
