//! The custodian called inside a store's `with_connection` / `with_client`
//! closure (A1 host code), which holds the connection the custodian's audit
//! sink, key store and consent store need: each operation must be refused
//! with `Error::Reentrant`, none may wait for the connection forever.

use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use privacy_pledge::data::EmailAddress;
use privacy_pledge::purpose::{Newsletter, Transaction};
use privacy_pledge::{Custodian, Error, PersonalInfo, SubjectId};

/// Runs a closure inside the store's `with_connection` (or `with_client`).
pub type Inside = Arc<dyn Fn(&mut dyn FnMut()) + Send + Sync>;

fn outcome<T>(name: &str, r: Result<T, Error>) -> String {
    format!("{name}: {:?}", r.map(|_| ()))
}

/// Calls every kind of custodian operation inside the store's closure, on
/// another thread so that a deadlock fails the test instead of hanging it,
/// and returns what each answered (`"name: Err(Reentrant)"`). The custodian
/// must keep its audit trail, keys and consents in that store.
pub fn custodian_inside_the_store(custodian: Arc<Custodian>, inside: Inside) -> Vec<String> {
    // Prepared outside the closure: a customer with consent and a sealed
    // email, so that every operation has something to work on.
    let ada = SubjectId::random();
    custodian.consents().grant::<Newsletter>(ada).unwrap();
    let email: PersonalInfo<EmailAddress, Transaction> = custodian
        .collect(ada, EmailAddress::parse("ada@example.com").unwrap())
        .unwrap();
    let sealed = custodian.seal(&email).unwrap();

    let (tx, rx) = mpsc::channel();
    let (c, run, sealed_in) = (custodian.clone(), inside.clone(), sealed.clone());
    std::thread::spawn(move || {
        let sealed = sealed_in;
        let mut out = Vec::new();
        run(&mut || {
            // Never seen before: its consent must be read from the store.
            let stranger = SubjectId::random();
            let parse = || EmailAddress::parse("grace@example.com").unwrap();
            out.push(outcome(
                "collect",
                c.collect::<EmailAddress, Transaction>(ada, parse()),
            ));
            out.push(outcome(
                "collect for a consent-based purpose",
                c.collect::<EmailAddress, Newsletter>(stranger, parse()),
            ));
            out.push(outcome(
                "consent_proof",
                c.consent_proof::<Newsletter>(stranger),
            ));
            out.push(outcome("grant", c.consents().grant::<Newsletter>(stranger)));
            out.push(outcome(
                "withdraw",
                c.consents().withdraw::<Newsletter>(ada),
            ));
            out.push(outcome("access", c.access(&email, |_| ())));
            out.push(outcome("seal", c.seal(&email)));
            out.push(outcome("open", c.open(&sealed)));
            out.push(outcome("lookup_token", c.lookup_token(&email)));
            out.push(outcome("pseudonym", c.pseudonym(&email)));
            out.push(outcome("is_erased", c.is_erased(ada)));
            out.push(outcome("erased_at", c.erased_at(ada)));
            out.push(outcome("rewrap_keys", c.rewrap_keys(0)));
            out.push(outcome("erase", c.erase(ada)));
        });
        let _ = tx.send(out);
    });
    let out = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("a custodian call inside the store's closure deadlocked");

    // Outside the closure, everything works as before: nothing was left
    // half done, and the thread's marks are gone.
    assert!(custodian.consents().is_granted::<Newsletter>(ada));
    assert!(custodian.open(&sealed).is_ok());
    custodian.consents().withdraw::<Newsletter>(ada).unwrap();
    custodian.erase(ada).unwrap();
    assert!(matches!(custodian.open(&sealed), Err(Error::Erased { .. })));
    out
}

/// Asserts that every outcome is a refusal.
pub fn all_refused(outcomes: &[String]) {
    assert_eq!(outcomes.len(), 14);
    for o in outcomes {
        assert!(o.ends_with(": Err(Reentrant)"), "{outcomes:#?}");
    }
}
