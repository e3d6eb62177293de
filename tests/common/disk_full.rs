//! A full disk on an SQLite store, as the store's audit inserts meet it.

/// The statement that makes every insert into `pp_audit_log` fail as on a
/// full disk (`on`), or that ends it.
pub fn sql(on: bool) -> &'static str {
    if on {
        "CREATE TRIGGER full BEFORE INSERT ON pp_audit_log
         BEGIN SELECT RAISE(ABORT, 'disk full'); END"
    } else {
        "DROP TRIGGER full"
    }
}
