//! What the examples share: their command line, the demo's key and
//! public-key files, and the payment processor. Storage itself — tables,
//! audit streams, keys, consents, checkpoints, the host's own statements on
//! either database — is the crate's (`store::Store`, opened by URL).

#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use privacy_pledge::crypto::{Keyring, KeyringFile, KeyringStore};

/// Errors of the examples' own plumbing (files, SQLite, arguments).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

// ---------------------------------------------------------------------------
// Keys

/// Where the demo keeps the keyring of the database at `db`: `<db>.key`.
pub fn key_file_for(db: &Path) -> PathBuf {
    with_suffix(db, ".key")
}

/// `<files>.checkpoints/`: the signed checkpoints of every stream and the
/// freshness anchor.
pub fn checkpoint_dir_for(files: &Path) -> PathBuf {
    with_suffix(files, ".checkpoints")
}

/// `<files>.pub`: the checkpoint public key, for verifiers (no secret).
pub fn public_key_file_for(files: &Path) -> PathBuf {
    with_suffix(files, ".pub")
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Reads the keyring kept in `path` (never creates one: for verifiers).
///
/// The demo keeps the keyring in a file beside the database. A real host
/// keeps it in a KMS or secret manager, never next to the data it protects:
/// whoever holds both can open every sealed record and forge the audit trail.
pub fn read_keyring(path: &Path) -> Result<Keyring, BoxError> {
    let text = KeyringFile::new(path)
        .load()
        .map_err(|e| format!("key file {}: {e}", path.display()))?;
    Ok(Keyring::import(&text)?)
}

// ---------------------------------------------------------------------------
// The shop's payment processor

use privacy_pledge::data::{Amount, PaymentToken};
use privacy_pledge::recipient::{Processor, Recipient};
use std::sync::atomic::{AtomicU32, Ordering};

/// The payment processor: a `Processor`, so it may receive transaction data
/// (never marketing lists, never anything to sell on).
#[derive(Default)]
pub struct PaymentProcessor {
    charges: AtomicU32,
}

impl PaymentProcessor {
    /// Stands in for the processor's API: charges the card behind `token`.
    pub fn charge(&self, token: &PaymentToken, amount: Amount) -> String {
        // A real client sends `token.expose_secret()` and the amount over TLS.
        let _ = (token, amount);
        format!("ch_{:06}", self.charges.fetch_add(1, Ordering::Relaxed) + 1)
    }

    /// How many cards were charged.
    pub fn charges(&self) -> u32 {
        self.charges.load(Ordering::Relaxed)
    }
}

impl Recipient for PaymentProcessor {
    type Role = Processor;
    fn name(&self) -> &str {
        "payment processor"
    }
}

// ---------------------------------------------------------------------------
// Where the shop's data lives

/// The database an example works on, as given on its command line.
#[derive(Clone, Debug)]
pub enum Database {
    /// `--db PATH`: an SQLite file; the demo's files sit beside it.
    Sqlite(PathBuf),
    /// `--database-url URL`: PostgreSQL (`host=… user=… dbname=…` or a
    /// `postgresql://` URL); the demo's files sit at `files`.
    Postgres {
        /// The connection string.
        url: String,
        /// Where the key, public key and checkpoints go (`--files PATH`).
        files: PathBuf,
    },
}

impl Database {
    /// The base path of the demo's files: `<base>.key`, `<base>.pub` and
    /// `<base>.checkpoints/`.
    pub fn files(&self) -> &Path {
        match self {
            Database::Sqlite(path) => path,
            Database::Postgres { files, .. } => files,
        }
    }

    /// Where the data is, for messages (a PostgreSQL URL is not repeated: it
    /// may hold a password).
    pub fn describe(&self) -> String {
        match self {
            Database::Sqlite(path) => path.display().to_string(),
            Database::Postgres { .. } => "PostgreSQL (--database-url)".to_owned(),
        }
    }
}

/// The options every example takes to find its database.
#[derive(Default)]
pub struct DatabaseArgs {
    db: Option<PathBuf>,
    url: Option<String>,
    files: Option<PathBuf>,
}

/// The lines of `--help` that describe [`DatabaseArgs`].
pub const DATABASE_HELP: &str =
    "  --db PATH            an SQLite database file (the demo's key, public key and
                       checkpoints sit beside it: PATH.key, PATH.pub,
                       PATH.checkpoints/)
  --database-url URL   a PostgreSQL database instead (host=... user=...
                       dbname=... or postgresql://...)
  --files PATH         with --database-url (required there): where the key,
                       public key and checkpoints go (PATH.key, ...), in a
                       directory private to the service";

impl DatabaseArgs {
    /// Takes the long option `--flag` (one of `--db`, `--database-url` or
    /// `--files`) and its value; any other option is an error.
    pub fn take(&mut self, flag: &str, parser: &mut lexopt::Parser) -> Result<(), BoxError> {
        match flag {
            "db" => self.db = Some(parser.value()?.into()),
            "database-url" => {
                self.url = Some(
                    parser
                        .value()?
                        .into_string()
                        .map_err(|_| "--database-url is not UTF-8")?,
                )
            }
            "files" => self.files = Some(parser.value()?.into()),
            _ => return Err(format!("unknown option --{flag}").into()),
        }
        Ok(())
    }

    /// The database given, for a program that reads nothing beside it (a
    /// verifier): `--files` may be left out with `--database-url`.
    pub fn database_alone(mut self) -> Result<Database, BoxError> {
        if self.url.is_some() && self.files.is_none() {
            self.files = Some(PathBuf::new());
        }
        self.database(|| None)
    }

    /// The database given, or `default()` as an SQLite file when neither
    /// `--db` nor `--database-url` was.
    pub fn database(self, default: impl FnOnce() -> Option<PathBuf>) -> Result<Database, BoxError> {
        match (self.db, self.url) {
            (Some(_), Some(_)) => Err("give --db or --database-url, not both".into()),
            (Some(db), None) if self.files.is_none() => Ok(Database::Sqlite(db)),
            (_, None) if self.files.is_some() => Err("--files goes with --database-url".into()),
            (_, None) => Ok(Database::Sqlite(
                default().ok_or("give --db PATH or --database-url URL")?,
            )),
            (None, Some(url)) => {
                // Named, never guessed: a place computed from the URL in a
                // shared directory is one another user can fill first with
                // a keyring of their own, which the shop would then adopt.
                let files = self.files.ok_or(
                    "give --files PATH with --database-url: the base path of the keyring, \
                     the public key and the checkpoints, in a directory private to the \
                     service and out of the database operator's reach",
                )?;
                Ok(Database::Postgres { url, files })
            }
        }
    }
}

/// Prints `text` (an example's `--help`) and exits with status 0.
pub fn print_help_and_exit(text: &str) -> ! {
    println!("{text}");
    std::process::exit(0)
}

// ---------------------------------------------------------------------------
// The host's custodian on the crate's own store

use privacy_pledge::audit::{AuditSink, CheckpointKey};
use privacy_pledge::store::{CheckpointGuard, Store, StoreConfig};

impl Database {
    /// The crate's store configuration: the database's URL, and the
    /// checkpoint directory `<files>.checkpoints/` (standing in for a place
    /// out of the database operator's reach).
    pub fn config(&self) -> StoreConfig {
        let url = match self {
            Database::Sqlite(path) => format!("sqlite:{}", path.display()),
            Database::Postgres { url, .. } => url.clone(),
        };
        StoreConfig::new(url, checkpoint_dir_for(self.files()))
    }
}

/// A custodian on the crate's store, its stream checkpointed into
/// `<files>.checkpoints/`; the guard signs the stream's head when the shop
/// is dropped (at the end of `main`, or on the way out of an error or a
/// panic), and `guard.sign()` at a clean shutdown gives the checkpoint in
/// hand.
pub struct StoreShop {
    pub store: Store,
    pub custodian: privacy_pledge::Custodian,
    pub guard: CheckpointGuard,
    pub public_key: CheckpointKey,
}

/// Opens the shop's store and custodian on `database`. Any number of
/// processes may do this on one database at once: one of them creates the
/// keyring file, the others read it.
pub fn open_shop_on(database: &Database) -> Result<StoreShop, BoxError> {
    open_shop_with(database, |sink| sink)
}

/// [`open_shop_on`] with the store's audit sink passed through `audit`
/// first (a test wraps it in a failing or slow one).
pub fn open_shop_with(
    database: &Database,
    audit: impl FnOnce(Box<dyn AuditSink>) -> Box<dyn AuditSink>,
) -> Result<StoreShop, BoxError> {
    let files = database.files();
    if let Database::Sqlite(db) = database {
        if db.exists() && !key_file_for(files).exists() {
            return Err(format!("{} has no key file", db.display()).into());
        }
    }
    if let Some(parent) = files.parent() {
        fs::create_dir_all(parent)?;
    }
    // Demo only: the keyring sits in `<files>.key`. A real host fetches it
    // from its KMS at start-up (`KeyringStore`).
    let key_file = KeyringFile::new(key_file_for(files));
    let keyring = Arc::new(key_file.load_or_create()?);
    let public_key = keyring.checkpoint_signer()?.public_key();
    fs::write(public_key_file_for(files), format!("{public_key}\n"))?;
    let store = Store::open(&database.config())?;
    let builder = privacy_pledge::Custodian::builder()
        .keyring(keyring)
        .keyring_store(key_file); // reloaded after another process rotates
    let (custodian, guard) = store.custodian_wrapping(builder, audit)?;
    Ok(StoreShop {
        store,
        custodian,
        guard,
        public_key,
    })
}
