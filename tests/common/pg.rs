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

/// A fresh database for one test on the server that tests crash and start
/// again (`PP_TEST_PG_CRASH`, which `scripts/test` starts with a log writer
/// that flushes commits made without waiting for the disk only every 10 s),
/// or `None` as [`database`]. Hold [`crashing`] while using it.
#[allow(dead_code)]
pub fn database_on_the_crashing_server(test: &str) -> Option<String> {
    database_on("PP_TEST_PG_CRASH", test)
}

/// Serialises the tests that crash `PP_TEST_PG_CRASH`'s server.
#[allow(dead_code)]
pub fn crashing() -> std::sync::MutexGuard<'static, ()> {
    static CRASHING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    CRASHING.lock().unwrap_or_else(|p| p.into_inner())
}

/// Crashes `PP_TEST_PG_CRASH`'s server (an immediate stop: what its log had
/// not flushed is lost, as in a power cut) and starts it again, with
/// `scripts/test`'s `PP_TEST_PG_CRASH_RESTART`.
#[allow(dead_code)]
pub fn crash_and_restart() {
    let script = std::env::var("PP_TEST_PG_CRASH_RESTART")
        .expect("PP_TEST_PG_CRASH_RESTART is set beside PP_TEST_PG_CRASH");
    let status = std::process::Command::new(script)
        .status()
        .expect("the crash-and-restart script runs");
    assert!(status.success(), "crash and restart: {status}");
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
