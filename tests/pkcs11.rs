//! The PKCS#11 key provider against a real SoftHSM2 token (set up by
//! `scripts/softhsm`, which `scripts/test` runs: `PP_TEST_PKCS11_MODULE`,
//! `PP_TEST_PKCS11_TOKEN`, `PP_TEST_PKCS11_PIN`): sealing through a
//! custodian, KEK objects that never leave the token, rotation, rewrap and
//! retirement, erasure, and processes starting together on one token.
//! Threat-model actors: A3 holds a copy of the database (a backup) but not
//! the token; A5 is the fleet of processes sharing the token.
//!
//! Every test uses labels of its own (`Pkcs11Config::label_prefix`), so
//! the tests run in parallel on one token. Without the variables every test
//! says SKIPPED on stderr and returns (under `CI` that is a failure:
//! CI always runs `scripts/test`).

#[path = "common/tempdir.rs"]
mod tempdir;
#[path = "common/token.rs"]
mod token;

use std::process::{Command, Stdio};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use privacy_pledge::crypto::{KeyError, KeyProvider, Keyring, Pkcs11Config, Pkcs11Provider};
use privacy_pledge::data::EmailAddress;
use privacy_pledge::purpose::Transaction;
use privacy_pledge::store::sqlite::SqliteStore;
use privacy_pledge::{Custodian, Error, ExposeSecret, PersonalInfo, Sealed, SubjectId};

use tempdir::TempDir;
use token::{token, Token};

type Row = Sealed<EmailAddress, Transaction>;

/// A label prefix no other test (or earlier run) uses.
fn prefix(test: &str) -> String {
    format!("t-{test}-{}-", SubjectId::random())
}

fn config(t: &Token, prefix: &str) -> Pkcs11Config {
    Pkcs11Config::new(&t.module, &t.label, t.pin.clone().into())
        .label_prefix(prefix)
        .settle(Duration::from_millis(400))
}

fn provider(t: &Token, prefix: &str) -> Arc<Pkcs11Provider> {
    Arc::new(Pkcs11Provider::open(config(t, prefix)).unwrap())
}

/// A custodian of the shop: keys from the token, on `db`.
fn custodian(hsm: &Arc<Pkcs11Provider>, store: &SqliteStore) -> Custodian {
    Custodian::builder()
        .keyring(hsm.keyring().unwrap())
        .key_provider(hsm.clone())
        .key_store(store.key_store())
        .key_revalidate_after(Duration::ZERO)
        .build()
        .unwrap()
}

fn seal(c: &Custodian, subject: SubjectId, text: &str) -> Row {
    let email: PersonalInfo<EmailAddress, Transaction> = c
        .collect(subject, EmailAddress::parse(text).unwrap())
        .unwrap();
    c.seal(&email).unwrap()
}

fn opens_to(c: &Custodian, row: &Row, text: &str) {
    let opened = c.open(row).unwrap();
    assert_eq!(
        c.access(&opened, |e| e.expose_secret().to_owned()).unwrap(),
        text
    );
}

/// A3's copy of the database file (key table included), as a backup makes.
fn backup(store: &SqliteStore, path: &std::path::Path) -> std::path::PathBuf {
    store
        .with_connection(|c| c.execute("VACUUM INTO ?1", [path.to_str().unwrap()]))
        .unwrap();
    path.to_owned()
}

/// A session of the test's own on the token, logged in: to look at the
/// objects the way any other application of the token can.
fn raw_session(t: &Token) -> Session {
    try_raw_session(t).expect("the token is not there, or the PIN is refused")
}

fn try_raw_session(t: &Token) -> Option<Session> {
    let ctx = Pkcs11::new(&t.module).unwrap();
    match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => panic!("C_Initialize: {e}"),
    }
    let slot = ctx
        .get_slots_with_initialized_token()
        .ok()?
        .into_iter()
        .find(|s| {
            ctx.get_token_info(*s)
                .is_ok_and(|i| i.label().trim_end() == t.label)
        })?;
    let session = ctx.open_rw_session(slot).ok()?;
    match session.login(UserType::User, Some(&t.pin.clone().into())) {
        Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => Some(session),
        Err(_) => None,
    }
}

/// SoftHSM2 rewrites the token's own file at every login, and a process
/// that reads it meanwhile may lose the token until it initialises the
/// module again: the tests of this process share the token, and a test
/// whose child processes log in holds it alone.
static TOKEN_USE: RwLock<()> = RwLock::new(());

fn shared() -> RwLockReadGuard<'static, ()> {
    TOKEN_USE.read().unwrap_or_else(|p| p.into_inner())
}

fn exclusive() -> RwLockWriteGuard<'static, ()> {
    TOKEN_USE.write().unwrap_or_else(|p| p.into_inner())
}

fn objects(s: &Session, label: &str) -> Vec<ObjectHandle> {
    s.find_objects(&[
        Attribute::Token(true),
        Attribute::Label(label.as_bytes().to_vec()),
    ])
    .unwrap()
}

/// A3: the custodian seals and opens with its KEK on the token; a copy of
/// the database (key table included) opens nothing without the token — not
/// with keys of the copier's own, not with the token's objects of another
/// service.
#[test]
fn a3_seal_open_through_the_token_and_a_database_copy_opens_nothing() {
    let Some(t) = token("a3_seal_open") else {
        return;
    };
    let _token = shared();
    let dir = TempDir::named("pkcs11", "seal");
    let store = SqliteStore::open(dir.path("shop.db")).unwrap();
    let p = prefix("seal");
    let hsm = provider(&t, &p);
    assert_eq!(hsm.current_version(), 1);
    assert_eq!(hsm.versions(), vec![1]);
    let c = custodian(&hsm, &store);
    let ada = SubjectId::random();
    let row = seal(&c, ada, "ada@example.com");
    opens_to(&c, &row, "ada@example.com");

    // A restarted process (a new provider on the same token) opens it.
    let again = provider(&t, &p);
    opens_to(&custodian(&again, &store), &row, "ada@example.com");

    let copy = backup(&store, &dir.path("backup.db"));
    let copy_store = SqliteStore::open(&copy).unwrap();
    // Without the token: the copier's own keyring.
    let own = Custodian::builder()
        .keyring(Keyring::generate().unwrap())
        .key_store(copy_store.key_store())
        .build()
        .unwrap();
    assert!(own.open(&row).is_err());
    // Another service's objects on the same token are other keys.
    let other = provider(&t, &prefix("seal-other"));
    assert!(custodian(&other, &copy_store).open(&row).is_err());
    // The wrapped key itself is bound to its subject: moved to another
    // subject's row it does not unwrap.
    let ctx_bytes = |s: SubjectId| {
        let mut c = [0u8; 36];
        c[..16].copy_from_slice(b"pp/data-key/v1\0\0");
        c[16..32].copy_from_slice(s.as_bytes());
        c
    };
    let wrapped = hsm.wrap(&[9; 32], &ctx_bytes(ada)).unwrap();
    assert_eq!(wrapped.kek_version, 1);
    assert_eq!(wrapped.bytes.len(), 60);
    assert_eq!(*hsm.unwrap(&wrapped, &ctx_bytes(ada)).unwrap(), [9; 32]);
    assert_eq!(
        hsm.unwrap(&wrapped, &ctx_bytes(SubjectId::random()))
            .unwrap_err(),
        KeyError::Unwrap
    );
    let mut bent = wrapped.clone();
    bent.bytes[20] ^= 1;
    assert_eq!(
        hsm.unwrap(&bent, &ctx_bytes(ada)).unwrap_err(),
        KeyError::Unwrap
    );
    // ...and the session that refused it is still good.
    assert_eq!(*hsm.unwrap(&wrapped, &ctx_bytes(ada)).unwrap(), [9; 32]);
    // Nothing secret in Debug.
    let sentinel = "pin-sentinel-98765";
    let debug = format!(
        "{hsm:?} {:?}",
        Pkcs11Config::new(&t.module, &t.label, sentinel.to_owned().into())
    );
    assert!(!debug.contains(sentinel), "{debug}");
    assert!(debug.contains("[redacted]"));
}

/// A3 (holding the PIN too) or a process compromised later: the KEK and the
/// master object cannot be read off the token — `C_GetAttributeValue` of
/// `CKA_VALUE` gives nothing, and wrapping them out under a key of one's
/// own is refused.
#[test]
fn a3_the_kek_never_leaves_the_token() {
    let Some(t) = token("a3_not_extractable") else {
        return;
    };
    let _token = shared();
    let p = prefix("extract");
    let hsm = provider(&t, &p);
    let _ = hsm.keyring().unwrap(); // creates the master object
    let s = raw_session(&t);
    // A wrapping key of the attacker's own, in this session only.
    let wrapping = s
        .generate_key(
            &Mechanism::AesKeyGen,
            &[
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::KeyType(KeyType::AES),
                Attribute::Token(false),
                Attribute::ValueLen(32.into()),
                Attribute::Wrap(true),
                Attribute::Encrypt(true),
            ],
        )
        .unwrap();
    for label in [format!("{p}kek-v1"), format!("{p}master")] {
        let found = objects(&s, &label);
        assert_eq!(found.len(), 1, "{label}");
        let kek = found[0];
        let attrs = s
            .get_attributes(
                kek,
                &[
                    AttributeType::Value,
                    AttributeType::Sensitive,
                    AttributeType::Extractable,
                    AttributeType::NeverExtractable,
                    AttributeType::AlwaysSensitive,
                    AttributeType::Token,
                ],
            )
            .unwrap();
        assert!(
            !attrs.iter().any(|a| matches!(a, Attribute::Value(_))),
            "{label}: CKA_VALUE was returned"
        );
        for want in [
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::NeverExtractable(true),
            Attribute::AlwaysSensitive(true),
            Attribute::Token(true),
        ] {
            assert!(attrs.contains(&want), "{label}: {want:?} in {attrs:?}");
        }
        let out = s.wrap_key(&Mechanism::AesKeyWrapPad, wrapping, kek);
        assert!(
            matches!(
                out,
                Err(CkError::Pkcs11(RvError::KeyUnextractable, _))
                    | Err(CkError::Pkcs11(RvError::KeyNotWrappable, _))
            ),
            "{label}: wrapped out: {out:?}"
        );
        // Nor can it be made extractable afterwards, or copied into an
        // extractable object.
        assert!(s
            .update_attributes(kek, &[Attribute::Extractable(true)])
            .is_err());
        assert!(s.copy_object(kek, &[Attribute::Extractable(true)]).is_err());
        assert!(s.copy_object(kek, &[Attribute::Token(false)]).is_err());
    }
}

/// A3 after erasures: rotate (a new object on the token), the old version
/// still opens, rewrap moves every live key, retire destroys the old object
/// — and then a copy of the database from before opens nothing, while the
/// live database opens everything that was not erased.
#[test]
fn a3_rotate_rewrap_retire_and_erasure() {
    let Some(t) = token("a3_rotate") else {
        return;
    };
    let _token = shared();
    let dir = TempDir::named("pkcs11", "rotate");
    let store = SqliteStore::open(dir.path("shop.db")).unwrap();
    let p = prefix("rotate");
    let hsm = provider(&t, &p);
    let c = custodian(&hsm, &store);
    let gone = SubjectId::random();
    let stay = SubjectId::random();
    let gone_row = seal(&c, gone, "gone@example.com");
    let stay_row = seal(&c, stay, "stay@example.com");
    let copy = backup(&store, &dir.path("before.db"));

    c.erase(gone).unwrap();
    assert!(matches!(c.open(&gone_row), Err(Error::Erased { .. })));
    // The window the rotation closes: the copy still opens the erased
    // subject while version 1 lives.
    let copy_store = SqliteStore::open(&copy).unwrap();
    opens_to(&custodian(&hsm, &copy_store), &gone_row, "gone@example.com");

    let s = raw_session(&t);
    assert_eq!(hsm.rotate().unwrap(), 2);
    assert_eq!(hsm.versions(), vec![1, 2]);
    assert_eq!(objects(&s, &format!("{p}kek-v2")).len(), 1);
    // Old data still opens; new data is wrapped under version 2.
    opens_to(&c, &stay_row, "stay@example.com");
    let late = SubjectId::random();
    let late_row = seal(&c, late, "late@example.com");
    assert!(matches!(
        c.retire_key_version(1),
        Err(Error::Key(KeyError::InUse { version: 1, .. }))
    ));
    assert_eq!(c.rewrap_keys(1).unwrap(), 1);
    c.retire_key_version(1).unwrap();
    assert!(objects(&s, &format!("{p}kek-v1")).is_empty());
    assert_eq!(objects(&s, &format!("{p}kek-v2")).len(), 1);
    assert_eq!(hsm.versions(), vec![2]);

    // Live: everything not erased opens.
    opens_to(&c, &stay_row, "stay@example.com");
    opens_to(&c, &late_row, "late@example.com");
    let restarted = provider(&t, &p);
    assert_eq!(restarted.versions(), vec![2]);
    opens_to(
        &custodian(&restarted, &store),
        &stay_row,
        "stay@example.com",
    );
    // The copy from before: every key in it is under version 1, which is
    // gone from the token. It opens nothing, erased or not, even with the
    // token and its PIN.
    let from_copy = custodian(&restarted, &copy_store);
    for row in [&gone_row, &stay_row] {
        assert!(
            matches!(
                from_copy.open(row),
                Err(Error::Key(KeyError::Retired { version: 1 }))
            ),
            "{:?}",
            from_copy.open(row).err()
        );
    }
    // Retiring again, or the current version, is refused.
    assert!(matches!(
        hsm.retire(1),
        Err(KeyError::Retired { version: 1 })
    ));
    assert!(matches!(hsm.retire(2), Err(KeyError::InUse { .. })));
}

/// A3: the one maintenance step after erasures, `rotate_after_erasures`,
/// with the keys on the token: the next KEK is a new token object, every
/// live key moves to it, the old object is destroyed, and a database copy
/// from before the erasure opens nothing — nothing to save in a keyring
/// file, since the token is where the versions live.
#[test]
fn a3_rotate_after_erasures_with_the_token() {
    let Some(t) = token("a3_rotate_after_erasures") else {
        return;
    };
    let _token = shared();
    let dir = TempDir::named("pkcs11", "rotate_after_erasures");
    let store = SqliteStore::open(dir.path("shop.db")).unwrap();
    let p = prefix("rae");
    let hsm = provider(&t, &p);
    let c = custodian(&hsm, &store);
    let (gone, stay) = (SubjectId::random(), SubjectId::random());
    let gone_row = seal(&c, gone, "gone@example.com");
    let stay_row = seal(&c, stay, "stay@example.com");
    let copy = backup(&store, &dir.path("before.db"));
    c.erase(gone).unwrap();

    let done = c.rotate_after_erasures().unwrap();
    assert_eq!(
        (done.version(), done.retired(), done.rewrapped()),
        (2, &[1][..], 1)
    );
    assert!(done.covers_earlier_copies() && !done.resumed());
    let s = raw_session(&t);
    assert!(
        objects(&s, &format!("{p}kek-v1")).is_empty(),
        "v1 destroyed"
    );
    assert_eq!(objects(&s, &format!("{p}kek-v2")).len(), 1);
    assert_eq!(hsm.versions(), vec![2]);
    opens_to(&c, &stay_row, "stay@example.com");
    assert!(matches!(c.open(&gone_row), Err(Error::Erased { .. })));

    // A3's copy from before the erasure: both keys are under version 1,
    // destroyed on the token, so neither opens, even with the token's PIN.
    let from_copy = custodian(&provider(&t, &p), &SqliteStore::open(&copy).unwrap());
    for row in [&gone_row, &stay_row] {
        assert!(matches!(
            from_copy.open(row),
            Err(Error::Key(KeyError::Retired { version: 1 }))
        ));
    }
    // Once more: the next version, the same way.
    let again = c.rotate_after_erasures().unwrap();
    assert_eq!((again.version(), again.retired()), (3, &[2][..]));
    opens_to(&c, &stay_row, "stay@example.com");
}

/// A2 then A3, with the keys on the token: the operator forges an
/// abandoned claim "to" the current version in the key-encryption-key
/// state row. The rotation takes it up, which destroys nothing, then
/// rotates once more: version 1's object is destroyed, and a database copy
/// from before the erasure opens nothing with the token.
#[test]
fn a2_a_forged_unfinished_claim_still_destroys_the_old_kek() {
    let Some(t) = token("a2_forged_claim") else {
        return;
    };
    let _token = shared();
    let dir = TempDir::named("pkcs11", "forged_claim");
    let store = SqliteStore::open(dir.path("shop.db")).unwrap();
    let p = prefix("forged");
    let hsm = provider(&t, &p);
    let c = custodian(&hsm, &store);
    let gone = SubjectId::random();
    let gone_row = seal(&c, gone, "gone@example.com");
    let copy = backup(&store, &dir.path("before.db"));
    c.erase(gone).unwrap();
    store
        .with_connection(|db| {
            db.execute(
                "UPDATE pp_kek_state SET claimed = 1, claimed_at = 1, renewed_at = 1",
                [],
            )
        })
        .unwrap();

    let done = c.rotate_after_erasures().unwrap();
    assert!(done.resumed());
    assert_eq!((done.version(), done.retired()), (2, &[1][..]));
    let s = raw_session(&t);
    assert!(
        objects(&s, &format!("{p}kek-v1")).is_empty(),
        "v1 destroyed"
    );
    let from_copy = custodian(&provider(&t, &p), &SqliteStore::open(&copy).unwrap());
    assert!(from_copy.open(&gone_row).is_err());
}

/// A5: a process that keeps running after another process rotated and
/// retired takes the new version in (its cached handle of the old object is
/// refused by the token; it reads the versions again).
#[test]
fn a5_a_running_process_follows_another_processs_rotation() {
    let Some(t) = token("a5_follow") else {
        return;
    };
    let _token = shared();
    let dir = TempDir::named("pkcs11", "follow");
    let store = SqliteStore::open(dir.path("shop.db")).unwrap();
    let p = prefix("follow");
    let (one, two) = (provider(&t, &p), provider(&t, &p));
    let (c1, c2) = (custodian(&one, &store), custodian(&two, &store));
    let ada = SubjectId::random();
    let row = seal(&c1, ada, "ada@example.com");
    opens_to(&c2, &row, "ada@example.com");
    assert_eq!(one.rotate().unwrap(), 2);
    c1.rewrap_keys(1).unwrap();
    c1.retire_key_version(1).unwrap();
    // Process two still has version 1 as current, its object destroyed.
    assert_eq!(two.current_version(), 1);
    // Its warm custodian opens from the cached data key...
    opens_to(&c2, &row, "ada@example.com");
    // ...it seals under version 2 (the token refused version 1's handle;
    // the provider read the versions again)...
    let bob = SubjectId::random();
    let bob_row = seal(&c2, bob, "bob@example.com");
    assert_eq!(two.versions(), vec![2]);
    assert_eq!(two.current_version(), 2);
    opens_to(&c1, &bob_row, "bob@example.com");
    // ...and a custodian started cold in a third process follows the key
    // store row to version 2.
    let three = provider(&t, &p);
    opens_to(&custodian(&three, &store), &row, "ada@example.com");
}

/// A5 within one process: threads share the provider (a pool of
/// sessions). Eight threads seal for new subjects at once (each a new data
/// key wrapped on the token) and open with a cold cache: every envelope
/// opens.
#[test]
fn a5_threads_of_one_process_share_the_provider() {
    let Some(t) = token("threads") else {
        return;
    };
    let _token = shared();
    let hsm = provider(&t, &prefix("threads"));
    let c = Arc::new(
        Custodian::builder()
            .keyring(hsm.keyring().unwrap())
            .key_provider(hsm.clone())
            .key_cache_capacity(1)
            .build()
            .unwrap(),
    );
    let rows: Vec<(Row, String)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let c = c.clone();
                scope.spawn(move || {
                    (0..25)
                        .map(|j| {
                            let text = format!("t{i}n{j}@example.com");
                            (seal(&c, SubjectId::random(), &text), text)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    std::thread::scope(|scope| {
        for chunk in rows.chunks(25) {
            let c = c.clone();
            scope.spawn(move || {
                for (row, text) in chunk {
                    opens_to(&c, row, text);
                }
            });
        }
    });
}

// ---------------------------------------------------------------------------
// Processes starting together

/// Not a test of its own: the body of the child processes the test below
/// spawns. Without `PP_PKCS11_CHILD` it does nothing. Opens the provider
/// (racing the other children to create version 1 and the master object),
/// then rotates to version 2 (racing to create it), and prints what it used.
#[test]
fn child_process_entry() {
    let Ok(p) = std::env::var("PP_PKCS11_CHILD") else {
        return;
    };
    println!();
    let t = token("child").unwrap();
    // Logged in first (the login rewrites the token's file; a child that
    // reads it meanwhile initialises the module again), then released
    // together with the others to race for the objects.
    let mut session = None;
    for _ in 0..40 {
        session = try_raw_session(&t);
        if session.is_some() {
            break;
        }
        let _ = Pkcs11::new(&t.module).unwrap().finalize();
        std::thread::sleep(Duration::from_millis(25));
    }
    let _session = session.expect("no login");
    let barrier = std::path::PathBuf::from(std::env::var("PP_PKCS11_BARRIER").unwrap());
    std::fs::write(barrier.join(format!("ready-{}", std::process::id())), b"").unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while std::fs::read_dir(&barrier).unwrap().count() < 4 {
        assert!(
            std::time::Instant::now() < deadline,
            "the others never came"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    let hsm = provider(&t, &p);
    let keyring = hsm.keyring().unwrap();
    let ctx = [7u8; 36];
    // Under version 1, or 2 if another child rotated already.
    let w1 = hsm.wrap(&[1; 32], &ctx).unwrap();
    hsm.rotate_to(2).unwrap();
    let w2 = hsm.wrap(&[2; 32], &ctx).unwrap();
    assert_eq!(w2.kek_version, 2);
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    println!(
        "CHILD {} {}:{} {}:{}",
        keyring.checkpoint_signer().unwrap().public_key(),
        w1.kek_version,
        hex(&w1.bytes),
        w2.kek_version,
        hex(&w2.bytes)
    );
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// A5: four processes start together on a token with no objects of theirs
/// yet, and then rotate together. What each wrapped unwraps in a process
/// started later (whichever object of its version it wrapped under), all
/// derive the same signing key, and retiring version 1 leaves no object of
/// it on the token.
#[test]
fn a5_processes_starting_together_agree_on_one_kek() {
    let Some(t) = token("a5_together") else {
        return;
    };
    let _token = exclusive();
    let barrier = TempDir::named("pkcs11", "together");
    let p = prefix("together");
    let children: Vec<_> = (0..4)
        .map(|_| {
            Command::new(std::env::current_exe().unwrap())
                .args([
                    "--exact",
                    "child_process_entry",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env("PP_PKCS11_CHILD", &p)
                .env("PP_PKCS11_BARRIER", barrier.path(""))
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut lines = Vec::new();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "a child failed");
        let text = String::from_utf8(out.stdout).unwrap();
        let line = text
            .lines()
            .find_map(|l| l.strip_prefix("CHILD "))
            .unwrap()
            .to_owned();
        lines.push(line);
    }
    let later = provider(&t, &p);
    assert_eq!(later.versions(), vec![1, 2]);
    let s = raw_session(&t);
    for label in ["kek-v1", "kek-v2", "master"] {
        assert!(
            !objects(&s, &format!("{p}{label}")).is_empty(),
            "{label}: no object"
        );
    }
    let signer = later.keyring().unwrap().checkpoint_signer().unwrap();
    let ctx = [7u8; 36];
    for line in &lines {
        let mut parts = line.split(' ');
        assert_eq!(parts.next().unwrap(), signer.public_key().to_string());
        for dek in [[1u8; 32], [2u8; 32]] {
            let (version, hex) = parts.next().unwrap().split_once(':').unwrap();
            let wrapped = privacy_pledge::crypto::Wrapped {
                kek_version: version.parse().unwrap(),
                bytes: unhex(hex),
            };
            assert_eq!(*later.unwrap(&wrapped, &ctx).unwrap(), dek);
        }
    }
    later.retire(1).unwrap();
    assert!(objects(&s, &format!("{p}kek-v1")).is_empty());
}

/// A5, the case the settle time cannot rule out: a process whose search
/// missed the winning object of a version (a slow generation, a token file
/// being rewritten) wrapped under another object of that version. Made
/// deterministic here: the "missed" winner is generated by hand after the
/// first process settled, with an older `CKA_ID`. Nothing is lost: a
/// process started later (which picks the older object) unwraps what the
/// first wrapped, the first unwraps what the later one wrapped, both then
/// wrap under the winner, and retiring the version destroys both objects.
#[test]
fn a5_a_process_that_missed_the_winner_loses_nothing() {
    let Some(t) = token("a5_missed") else {
        return;
    };
    let _token = shared();
    let p = prefix("missed");
    let first = provider(&t, &p);
    let ctx = [9u8; 36];
    let by_first = first.wrap(&[1; 32], &ctx).unwrap();
    assert_eq!(by_first.kek_version, 1);

    // The object the first process's search missed: same label, older id.
    let s = raw_session(&t);
    s.generate_key(
        &Mechanism::AesKeyGen,
        &[
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::AES),
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Encrypt(true),
            Attribute::Decrypt(true),
            Attribute::Label(format!("{p}kek-v1").into_bytes()),
            Attribute::Id(vec![0; 16]),
            Attribute::ValueLen(32.into()),
        ],
    )
    .unwrap();
    assert_eq!(objects(&s, &format!("{p}kek-v1")).len(), 2);

    let later = provider(&t, &p);
    let by_later = later.wrap(&[2; 32], &ctx).unwrap();
    assert_eq!(*later.unwrap(&by_first, &ctx).unwrap(), [1; 32]);
    assert_eq!(*first.unwrap(&by_later, &ctx).unwrap(), [2; 32]);
    // The first process now wraps under the winner as well: a third
    // process opens that with the winner alone.
    let again = first.wrap(&[3; 32], &ctx).unwrap();
    assert_eq!(*provider(&t, &p).unwrap(&again, &ctx).unwrap(), [3; 32]);
    // A tag that verifies under neither object is still refused.
    let mut bad = by_first.clone();
    let last = bad.bytes.len() - 1;
    bad.bytes[last] ^= 1;
    assert!(matches!(later.unwrap(&bad, &ctx), Err(KeyError::Unwrap)));

    later.rotate_to(2).unwrap();
    later.retire(1).unwrap();
    assert!(objects(&s, &format!("{p}kek-v1")).is_empty());
}

/// A3 trying PINs: a wrong PIN or token label is an error that names
/// neither the PIN nor any key. (In a process of its own: logging in is per
/// process, and the other tests of this one are logged in.)
#[test]
fn a3_a_wrong_pin_is_refused_without_echoing_it() {
    if token("wrong_pin").is_none() {
        return;
    }
    let _token = exclusive();
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "wrong_pin_entry",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("PP_PKCS11_WRONG_PIN", "1")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("WRONG PIN REFUSED"), "{text}");
}

/// Not a test of its own: the child of the test above.
#[test]
fn wrong_pin_entry() {
    if std::env::var_os("PP_PKCS11_WRONG_PIN").is_none() {
        return;
    }
    println!();
    let t = token("wrong_pin").unwrap();
    let wrong = "not-the-pin-31337";
    let err = Pkcs11Provider::open(
        Pkcs11Config::new(&t.module, &t.label, wrong.to_owned().into())
            .label_prefix(&prefix("pin")),
    )
    .unwrap_err();
    let text = format!("{err} {err:?}");
    assert!(!text.contains(wrong), "{text}");
    assert!(text.contains("PIN is incorrect"), "{text}");
    assert!(Pkcs11Provider::open(Pkcs11Config::new(
        &t.module,
        "no-such-token",
        t.pin.clone().into()
    ))
    .is_err());
    println!("WRONG PIN REFUSED");
}
