// Nothing but an envelope or a token reaches a table: a plaintext value is
// not an sqlx column type (R9).
use privacy_pledge::data::EmailAddress;

fn main() {
    let email = EmailAddress::parse("ada@example.com").unwrap();
    let _query = sqlx::query::<sqlx::Sqlite>("INSERT INTO t VALUES ($1)").bind(email);
}
