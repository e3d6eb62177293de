// The twin of fail/sqlx_plaintext_column.rs: the sealed value and its lookup
// token bind as sqlx column values.
use privacy_pledge::data::EmailAddress;
use privacy_pledge::purpose::Transaction;
use privacy_pledge::{Custodian, PersonalInfo, SubjectId};

fn main() {
    let custodian = Custodian::in_memory();
    let email: PersonalInfo<EmailAddress, Transaction> =
        PersonalInfo::collect(SubjectId::random(), EmailAddress::parse("ada@example.com").unwrap());
    let sealed = custodian.seal(&email).unwrap();
    let token = custodian.lookup_token(&email).unwrap();
    let _query = sqlx::query::<sqlx::Sqlite>("INSERT INTO t VALUES ($1, $2)")
        .bind(sealed)
        .bind(token);
}
