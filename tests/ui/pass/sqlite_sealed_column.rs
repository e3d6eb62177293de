// The twin of fail/sqlite_plaintext_column.rs: the sealed value is a column.
use privacy_pledge::data::EmailAddress;
use privacy_pledge::purpose::Transaction;
use privacy_pledge::store::sqlite::rusqlite::{params, Connection};
use privacy_pledge::{Custodian, PersonalInfo, SubjectId};

fn main() {
    let custodian = Custodian::in_memory();
    let db = Connection::open_in_memory().unwrap();
    db.execute_batch("CREATE TABLE t (email BLOB)").unwrap();
    let email: PersonalInfo<EmailAddress, Transaction> =
        PersonalInfo::collect(SubjectId::random(), EmailAddress::parse("ada@example.com").unwrap());
    let email = custodian.seal(&email).unwrap();
    db.execute("INSERT INTO t VALUES (?1)", params![email]).unwrap();
}
