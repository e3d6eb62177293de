// Nothing but an envelope or a token reaches a table: a plaintext value is
// not an SQLite column type (R9).
use privacy_pledge::data::EmailAddress;
use privacy_pledge::store::sqlite::rusqlite::{params, Connection};

fn main() {
    let db = Connection::open_in_memory().unwrap();
    db.execute_batch("CREATE TABLE t (email BLOB)").unwrap();
    let email = EmailAddress::parse("ada@example.com").unwrap();
    db.execute("INSERT INTO t VALUES (?1)", params![email]).unwrap();
}
