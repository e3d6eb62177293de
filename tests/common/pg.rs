//! A fresh PostgreSQL database per test, on the server `scripts/test`
//! starts (`PP_TEST_PG`).

use privacy_pledge::store::postgres::postgres;
use privacy_pledge::SubjectId;

/// A fresh database for one test, or `None` (and a loud SKIPPED) without a
/// server. Under `CI` a missing server is a failure, never a silent skip:
/// CI always runs `scripts/test`.
pub fn database(test: &str) -> Option<String> {
    database_on("PP_TEST_PG", test)
}

/// A fresh database for one test on a second server (`PP_TEST_PG_OTHER`,
/// which `scripts/test` starts beside the first), or `None` as
/// [`database`].
#[allow(dead_code)]
pub fn database_on_another_server(test: &str) -> Option<String> {
    database_on("PP_TEST_PG_OTHER", test)
}

fn database_on(server: &str, test: &str) -> Option<String> {
    let Ok(base) = std::env::var(server) else {
        assert!(
            std::env::var_os("CI").is_none(),
            "{server} is not set under CI: the PostgreSQL tests would not run"
        );
        eprintln!(
            "SKIPPED {test}: {server} is not set (run scripts/test, which starts PostgreSQL)"
        );
        return None;
    };
    let name = format!("pp_{test}_{}", SubjectId::random()).to_lowercase();
    let mut admin =
        postgres::Client::connect(&format!("{base} dbname=postgres"), postgres::NoTls).unwrap();
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .unwrap();
    Some(format!("{base} dbname={name}"))
}

/// The freshness anchor of the test database `db`: a directory of the
/// test's own, outside the database (where the operator is not), shared by
/// every process given the same `db`.
#[allow(dead_code)]
pub fn anchor_for(db: &str) -> privacy_pledge::freshness::DirAnchorStore {
    let name = db.rsplit("dbname=").next().unwrap_or(db);
    privacy_pledge::freshness::DirAnchorStore::new(
        std::env::temp_dir().join(format!("pp-anchor-{name}")),
    )
    .unwrap()
}
