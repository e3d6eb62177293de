// Nothing but an envelope or a token reaches a table: a plaintext value is
// not a PostgreSQL parameter (R9).
use privacy_pledge::data::EmailAddress;
use privacy_pledge::store::postgres::postgres::types::ToSql;

fn main() {
    let email = EmailAddress::parse("ada@example.com").unwrap();
    let _params: &[&(dyn ToSql + Sync)] = &[&email];
}
