// The twin of fail/lookup_token_other_kind.rs: tokens of one kind compare.
use privacy_pledge::data::EmailAddress;
use privacy_pledge::Custodian;

fn main() {
    let custodian = Custodian::in_memory();
    let a = custodian.lookup_token_of(&EmailAddress::parse("ada@example.com").unwrap());
    let b = custodian.lookup_token_of(&EmailAddress::parse("ADA@example.com").unwrap());
    assert!(a == b);
}
