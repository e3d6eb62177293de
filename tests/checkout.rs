//! The checkout example, run as its users run it: two processes at once on
//! one SQLite file (A5), each erasing a customer and then rotating the keys;
//! then the database file, its write-ahead log and its shared-memory file
//! are read byte by byte as the database operator or a backup holder would
//! (A2, A3): no sample value is in them, in any case, and every key is
//! wrapped under the one version the key file still holds. The trail
//! verifies with the public key alone (A4).

#[path = "common/examples.rs"]
mod examples;

/// Every personal value the example's order forms hold, and the parts of
/// them that would give one away.
const SAMPLES: &[&str] = &[
    "Ada Lovelace",
    "Lovelace",
    "ada@example.com",
    "Grace Hopper",
    "grace.hopper@example.org",
    "Alan Turing",
    "alan@example.net",
    "St James's Square",
    "SW1Y 4JH",
    "Navy Yard",
    "Washington DC 20374",
    "Bletchley Park",
    "MK3 6EB",
    "7946 0958",
    "2079460958",
    "555 0143",
    "2025550143",
    "1908640404",
    "tok_1NX2",
    "Data Recovery Pro",
    "Partition Manager",
    "mallory",
];

#[test]
fn a2_a3_a5_the_checkout_database_holds_no_plaintext() {
    let dir = std::env::temp_dir().join(format!("pp-checkout-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let db = dir.join("shop.db");
    for text in examples::run_at_once("checkout", &[format!("--db={}", db.display())], 2) {
        assert!(text.contains("4 orders placed"), "{text}");
        assert!(text.contains("their email finds no one"), "{text}");
        assert!(text.contains("keys rotated after the erasure"), "{text}");
    }
    // A3: after both processes' maintenance steps, the key file holds one
    // version, every key in the table is wrapped under it, and the versions
    // a backup of the table from before could use are gone.
    let keyring = privacy_pledge::crypto::Keyring::import(
        std::fs::read_to_string(dir.join("shop.db.key"))
            .unwrap()
            .trim_end(),
    )
    .unwrap();
    assert_eq!(
        keyring.versions(),
        [3],
        "two rotations, one after each erasure"
    );
    let store = privacy_pledge::store::sqlite::SqliteStore::open(&db).unwrap();
    let versions: Vec<u32> = store
        .with_connection(|c| {
            c.prepare("SELECT DISTINCT kek_version FROM pp_subject_keys")?
                .query_map([], |r| r.get(0))?
                .collect::<Result<_, _>>()
        })
        .unwrap();
    assert_eq!(versions, [3]);
    drop(store);
    // The verifier is given the public key and the checkpoints; it reads
    // nothing beside the database on its own.
    let (code, text) = examples::run_example("verify_audit", &[format!("--db={}", db.display())]);
    assert_eq!(code, 2, "no public key given: {text}");
    let (code, text) = examples::run_example(
        "verify_audit",
        &[
            format!("--db={}", db.display()),
            format!("--public-key-file={}.pub", db.display()),
            format!("--checkpoints={}.checkpoints", db.display()),
        ],
    );
    assert_eq!(code, 0, "both processes checkpointed at shutdown: {text}");
    assert!(text.contains("every entry is vouched for"), "{text}");

    let mut scanned = 0;
    let mut saw_table_name = false;
    for suffix in ["", "-wal", "-shm"] {
        let mut path = db.clone().into_os_string();
        path.push(suffix);
        let Ok(bytes) = std::fs::read(&path) else {
            continue;
        };
        scanned += bytes.len();
        let lower = bytes.to_ascii_lowercase();
        // The scan sees what is stored in the clear: the schema, for one.
        saw_table_name |= lower.windows(12).any(|w| w == b"pp_audit_log");
        for sample in SAMPLES {
            let needle = sample.to_ascii_lowercase();
            assert!(
                !lower.windows(needle.len()).any(|w| w == needle.as_bytes()),
                "{sample:?} is in {}",
                std::path::Path::new(&path).display()
            );
        }
    }
    assert!(scanned > 10_000, "only {scanned} bytes scanned");
    assert!(
        saw_table_name,
        "the scan did not read the database's contents"
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// A2, or any other user of the service's host: with a PostgreSQL database
/// the examples never guess where the keyring, the public key and the
/// checkpoints live. A place computed from the URL in the shared temp
/// directory is one another user could fill first with a keyring of their
/// own, which the shop would adopt (and publish its public key); without
/// `--files` the example refuses, before it reads or writes anything.
#[test]
fn a2_the_examples_never_guess_where_a_postgres_shops_keyring_lives() {
    let url = "host=127.0.0.1 port=1 user=shop dbname=shop";
    // (`verify_audit` reads nothing beside the database, and needs none.)
    for example in ["checkout", "subject_report", "shop_load"] {
        let (code, text) = examples::run_example(example, &["--database-url", url]);
        assert_ne!(code, 0, "{example}: {text}");
        assert!(text.contains("give --files PATH"), "{example}: {text}");
    }
}
