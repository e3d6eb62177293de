// Lookup tokens are typed by kind: an email token is never compared with a
// name token.
use privacy_pledge::data::{EmailAddress, FullName};
use privacy_pledge::Custodian;

fn main() {
    let custodian = Custodian::in_memory();
    let email = custodian.lookup_token_of(&EmailAddress::parse("ada@example.com").unwrap());
    let name = custodian.lookup_token_of(&FullName::parse("Ada Lovelace").unwrap());
    let _ = email == name;
}
