//! What the database's operator (A2) can do to state rows — consent rows
//! and erasure tombstones — that an authenticated row cannot show: put back
//! an earlier authentic copy, delete a row, bring erased keys back. The
//! same on every database; each must be refused at use time, in the process
//! that made the change, in another one and after a restart.

use privacy_pledge::consent::ConsentRecord;
use privacy_pledge::data::EmailAddress;
use privacy_pledge::purpose::Newsletter;
use privacy_pledge::{Custodian, Error, PersonalInfo, SubjectId};

/// The operator's hands on one database, and a way to start a process.
pub struct Fleet<'a> {
    /// Runs `;`-separated statements as the operator.
    pub run: &'a dyn Fn(&str),
    /// The store's consent rows (`ConsentStore::all`).
    pub consents: &'a dyn Fn() -> Vec<ConsentRecord>,
    /// A process of the service started now: the same database, keyring
    /// and freshness anchor, and a zero revalidation bound (every use reads
    /// the rows and the anchor's length again).
    pub process: &'a dyn Fn() -> Custodian,
}

fn quoted(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

fn email(subject: SubjectId) -> PersonalInfo<EmailAddress, Newsletter> {
    PersonalInfo::collect(subject, EmailAddress::parse("ada@example.com").unwrap())
}

fn refused(r: Result<(), Error>) -> bool {
    matches!(r, Err(Error::ConsentStale { .. } | Error::NoConsent { .. }))
}

/// Issue 18, attack 1: a consent row put back to its earlier, authentic
/// "granted" version after a withdrawal is refused at use time — after a
/// restart, in another process and in the one that withdrew — and the
/// anchored row is written back.
pub fn a2_a_rolled_back_consent_row_is_refused_at_use(f: &Fleet<'_>) {
    let (here, other) = ((f.process)(), (f.process)());
    let ada = SubjectId::random();
    here.consents().grant::<Newsletter>(ada).unwrap();
    let info = email(ada);
    assert!(other.access(&info, |_| ()).is_ok());
    let s = quoted(&ada.to_string());
    (f.run)(&format!(
        "CREATE TABLE pp_consents_copy AS SELECT * FROM pp_consents WHERE subject = {s}"
    ));
    here.consents().withdraw::<Newsletter>(ada).unwrap();
    (f.run)(&format!(
        "DELETE FROM pp_consents WHERE subject = {s};
         INSERT INTO pp_consents SELECT * FROM pp_consents_copy;
         DROP TABLE pp_consents_copy;"
    ));
    assert!(
        (f.consents)().iter().any(|r| r.subject == ada && r.granted),
        "the rollback did not take"
    );
    let restarted = (f.process)();
    assert!(
        matches!(
            restarted.access(&info, |_| ()),
            Err(Error::ConsentStale { .. })
        ),
        "a restarted process used a rolled-back consent"
    );
    assert!(!restarted.consents().is_granted::<Newsletter>(ada));
    assert!(refused(other.access(&info, |_| ())), "another process");
    assert!(
        refused(here.access(&info, |_| ())),
        "the withdrawing process"
    );
    // Written back: the row says withdrawn again.
    let row = (f.consents)()
        .into_iter()
        .find(|r| r.subject == ada)
        .unwrap();
    assert!(!row.granted && row.withdrawn_at.is_some());
    assert!(matches!(
        (f.process)().access(&info, |_| ()),
        Err(Error::NoConsent { .. })
    ));
}

/// Issue 18, attack 2: after a withdrawal the operator deletes the row;
/// the customer subscribes again. Data collected before the withdrawal
/// stays expired (R11): the withdrawal time comes from the anchor, not from
/// the row that was deleted.
pub fn a2_a_deleted_consent_row_does_not_revive_older_data(f: &Fleet<'_>) {
    let p = (f.process)();
    let ada = SubjectId::random();
    p.consents().grant::<Newsletter>(ada).unwrap();
    let before = email(ada);
    let sealed = p.seal(&before).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(2));
    p.consents().withdraw::<Newsletter>(ada).unwrap();
    (f.run)(&format!(
        "DELETE FROM pp_consents WHERE subject = {}",
        quoted(&ada.to_string())
    ));
    // Deleted while withdrawn: refused as stale, not read as "no row".
    let fresh = (f.process)();
    assert!(matches!(
        fresh.access(&before, |_| ()),
        Err(Error::ConsentStale { .. })
    ));
    fresh.consents().grant::<Newsletter>(ada).unwrap();
    assert!(
        matches!(fresh.open(&sealed), Err(Error::Expired { .. })),
        "data collected before the withdrawal opened again"
    );
    let row = (f.consents)()
        .into_iter()
        .find(|r| r.subject == ada)
        .unwrap();
    assert!(row.granted && row.withdrawn_at.is_some());
    // The new grant itself is live: data collected from now on is used.
    assert!(fresh.access(&email(ada), |_| ()).is_ok());
}

/// Issue 18, attack 3: the operator copies an erased subject's key rows
/// before the erasure, puts them back after it and deletes the tombstone.
/// After a restart the subject is still erased and nothing opens.
pub fn a2_resurrected_keys_of_an_erased_subject_open_nothing(f: &Fleet<'_>) {
    let p = (f.process)();
    let bob = SubjectId::random();
    let info: PersonalInfo<EmailAddress, privacy_pledge::purpose::Transaction> =
        PersonalInfo::collect(bob, EmailAddress::parse("bob@example.com").unwrap());
    let sealed = p.seal(&info).unwrap();
    let s = quoted(&bob.to_string());
    (f.run)(&format!(
        "CREATE TABLE pp_keys_copy AS SELECT * FROM pp_subject_keys WHERE subject = {s}"
    ));
    p.erase(bob).unwrap();
    (f.run)(&format!(
        "INSERT INTO pp_subject_keys SELECT * FROM pp_keys_copy;
         DROP TABLE pp_keys_copy;
         DELETE FROM pp_erased_subjects WHERE subject = {s};"
    ));
    let restarted = (f.process)();
    assert!(restarted.is_erased(bob).unwrap());
    assert!(restarted.erased_at(bob).unwrap().is_some());
    assert!(matches!(restarted.open(&sealed), Err(Error::Erased { .. })));
    assert!(matches!(p.open(&sealed), Err(Error::Erased { .. })));
    assert!(matches!(restarted.seal(&info), Err(Error::Erased { .. })));
}

/// After an erasure the operator puts the subject's last consent row back
/// (authentic: the custodian's key made it). The erased subject's consent
/// reads as live nowhere — in the process that erased, another one, or one
/// started after: the anchor forgot the subject's rows with the erasure.
pub fn a2_a_consent_row_put_back_after_an_erasure_is_refused(f: &Fleet<'_>) {
    let (here, other) = ((f.process)(), (f.process)());
    let ada = SubjectId::random();
    here.consents().grant::<Newsletter>(ada).unwrap();
    assert!(other.consents().is_granted::<Newsletter>(ada));
    let s = quoted(&ada.to_string());
    (f.run)(&format!(
        "CREATE TABLE pp_consents_copy AS SELECT * FROM pp_consents WHERE subject = {s}"
    ));
    here.erase(ada).unwrap();
    (f.run)(
        "INSERT INTO pp_consents SELECT * FROM pp_consents_copy;
         DROP TABLE pp_consents_copy;",
    );
    assert!(
        (f.consents)().iter().any(|r| r.subject == ada && r.granted),
        "the put-back did not take"
    );
    for p in [&here, &other, &(f.process)()] {
        assert!(!p.consents().is_granted::<Newsletter>(ada));
        assert!(p.consents().of(ada).iter().all(|s| !s.granted));
        assert!(matches!(
            p.access(&email(ada), |_| ()),
            Err(Error::Erased { .. })
        ));
    }
}
