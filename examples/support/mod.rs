//! What the examples share: the demo's key and checkpoint files, and a
//! custodian opened on the crate's SQLite store (`store::sqlite`). Storage
//! itself — tables, audit streams, keys, consents — is the crate's.

#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use privacy_pledge::audit::VerifiedTrail;
use privacy_pledge::crypto::{KeyError, Keyring, KeyringFile, KeyringStore};
use zeroize::Zeroizing;

/// Errors of the examples' own plumbing (files, SQLite, arguments).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

// ---------------------------------------------------------------------------
// Keys

/// Where the demo keeps the keyring of the database at `db`: `<db>.key`.
pub fn key_file_for(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push(".key");
    PathBuf::from(name)
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex32(text: &str) -> Option<[u8; 32]> {
    let t = text.as_bytes();
    if t.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (o, pair) in out.iter_mut().zip(t.chunks_exact(2)) {
        let s = std::str::from_utf8(pair).ok()?;
        if s.bytes().any(|b| b.is_ascii_uppercase()) {
            return None;
        }
        *o = u8::from_str_radix(s, 16).ok()?;
    }
    Some(out)
}

/// Reads the keyring kept in `path` as [`Keyring::export`] text.
///
/// The demo keeps the keyring in a file beside the database. A real host
/// keeps it in a KMS or secret manager, never next to the data it protects:
/// whoever holds both can open every sealed record and forge the audit trail.
/// (An older demo file with a bare master secret in 64 hex digits still
/// opens, as a keyring of derived versions.)
pub fn read_keyring(path: &Path) -> Result<Keyring, BoxError> {
    let text = Zeroizing::new(
        fs::read_to_string(path)
            .map_err(|e| format!("cannot read key file {}: {e}", path.display()))?,
    );
    let text = text.trim_end();
    if let Some(mut master) = unhex32(text) {
        let keyring = Keyring::from_master(master, [1]);
        zeroize::Zeroize::zeroize(&mut master);
        return Ok(keyring?);
    }
    Keyring::import(text).map_err(|e| format!("key file {}: {e}", path.display()).into())
}

/// Writes the keyring to `path` (readable by the owner only), replacing
/// what was there: after every rotation and retirement.
pub fn write_keyring(path: &Path, keyring: &Keyring) -> Result<(), BoxError> {
    write_keyring_text(path, &keyring.export())
}

/// Writes a keyring's export text to `path` atomically (the library's
/// [`KeyringFile`]: a new file, synced, then renamed over the old one: no
/// reader sees a mix, and the old text is not kept beside it).
fn write_keyring_text(path: &Path, text: &str) -> Result<(), BoxError> {
    Ok(KeyringFile::new(path).save(text)?)
}

/// The demo's keyring file as the custodian's [`KeyringStore`]: a rotation
/// saves the keyring there, and every process of the shop reloads it from
/// there once another process has rotated. A real host implements the
/// trait over its KMS or secret manager, which must keep no older version
/// of the secret.
#[derive(Clone, Debug)]
pub struct KeyFile(pub PathBuf);

impl KeyringStore for KeyFile {
    fn load(&self) -> Result<Zeroizing<String>, KeyError> {
        read_keyring(&self.0)
            .map(|k| k.export())
            .map_err(|e| KeyError::Provider(e.to_string().into()))
    }

    fn save(&self, export: &str) -> Result<(), KeyError> {
        write_keyring_text(&self.0, export).map_err(|e| KeyError::Provider(e.to_string().into()))
    }
}

/// Reads the keyring from `path`, or creates a fresh one there if the file
/// does not exist. Several processes may start on a new database at once:
/// [`Keyring::load_or_create`] lets exactly one of them create the file,
/// and the others read the winner's.
pub fn read_or_create_keyring(path: &Path) -> Result<Keyring, BoxError> {
    if path.exists() {
        return read_keyring(path);
    }
    Ok(Keyring::load_or_create(path)?)
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
  --files PATH         with --database-url: where the key, public key and
                       checkpoints go (PATH.key, ...); default: one place in
                       the temp directory per URL";

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
                let files = self.files.unwrap_or_else(|| {
                    // One place per database, the same for every process,
                    // named by a digest so no password reaches a file name.
                    let digest = ring::digest::digest(&ring::digest::SHA256, url.as_bytes());
                    std::env::temp_dir()
                        .join(format!("privacy-pledge-pg-{}", hex(&digest.as_ref()[..8])))
                });
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

use privacy_pledge::audit::{CheckpointKey, DirCheckpointStore, SignedCheckpoint};
use privacy_pledge::store::postgres::PgStore;
use privacy_pledge::store::sqlite::{rusqlite, SqliteStore};
use privacy_pledge::store::{AuditStreamSink, BatchWriter, CheckpointGuard};

/// The crate's store on either database.
#[derive(Clone, Debug)]
pub enum Store {
    /// `store::sqlite`.
    Sqlite(SqliteStore),
    /// `store::postgres`.
    Postgres(PgStore),
}

impl Store {
    /// Every entry of `pp_audit_log`.
    pub fn trail(&self) -> Result<Vec<privacy_pledge::audit::AuditEvent>, BoxError> {
        Ok(match self {
            Store::Sqlite(s) => s.trail()?,
            Store::Postgres(s) => s.trail()?,
        })
    }

    /// Every consent row of `pp_consents`.
    pub fn consents(&self) -> Result<Vec<privacy_pledge::consent::ConsentRecord>, BoxError> {
        use privacy_pledge::consent::ConsentStore;
        Ok(match self {
            Store::Sqlite(s) => s.consent_store().all()?,
            Store::Postgres(s) => s.consent_store().all()?,
        })
    }

    /// Runs the host's own statements (`;`-separated, no parameters).
    pub fn batch(&self, sql: &str) -> Result<(), BoxError> {
        match self {
            Store::Sqlite(s) => s.with_connection(|c| c.execute_batch(sql))?,
            Store::Postgres(s) => s.with_client(|c| c.batch_execute(sql))?,
        }
        Ok(())
    }

    /// Runs one of the host's own statements with parameters `$1`, `$2`…
    /// (the same SQL on both databases); returns the rows changed.
    pub fn execute(&self, sql: &str, params: &[&dyn Param]) -> Result<u64, BoxError> {
        Ok(match self {
            Store::Sqlite(s) => s.with_connection(|c| {
                let params: Vec<&dyn rusqlite::ToSql> = params.iter().map(|p| p.sqlite()).collect();
                c.execute(sql, &params[..]).map(|n| n as u64)
            })?,
            Store::Postgres(s) => s.with_client(|c| {
                let params: Vec<&(dyn PgToSql + Sync)> = params.iter().map(|p| p.pg()).collect();
                c.execute(sql, &params)
            })?,
        })
    }

    /// Runs one of the host's own queries with parameters `$1`, `$2`… and
    /// maps each row with `f`.
    pub fn query<R>(
        &self,
        sql: &str,
        params: &[&dyn Param],
        mut f: impl FnMut(Row<'_>) -> Result<R, BoxError>,
    ) -> Result<Vec<R>, BoxError> {
        let mut out = Vec::new();
        match self {
            Store::Sqlite(s) => s.with_connection(|c| -> Result<(), BoxError> {
                let params: Vec<&dyn rusqlite::ToSql> = params.iter().map(|p| p.sqlite()).collect();
                let mut stmt = c.prepare(sql)?;
                let mut rows = stmt.query(&params[..])?;
                while let Some(r) = rows.next()? {
                    out.push(f(Row::Sqlite(r))?);
                }
                Ok(())
            })?,
            Store::Postgres(s) => s.with_client(|c| -> Result<(), BoxError> {
                let params: Vec<&(dyn PgToSql + Sync)> = params.iter().map(|p| p.pg()).collect();
                for r in c.query(sql, &params)? {
                    out.push(f(Row::Postgres(&r))?);
                }
                Ok(())
            })?,
        }
        Ok(out)
    }
}

use privacy_pledge::store::postgres::postgres::types::{FromSql as PgFromSql, ToSql as PgToSql};

/// A value both database clients bind: the crate's column types
/// (`Sealed`, `LookupToken`), text, integers.
pub trait Param {
    /// As an SQLite parameter.
    fn sqlite(&self) -> &dyn rusqlite::ToSql;
    /// As a PostgreSQL parameter.
    fn pg(&self) -> &(dyn PgToSql + Sync);
}

impl<T: rusqlite::ToSql + PgToSql + Sync> Param for T {
    fn sqlite(&self) -> &dyn rusqlite::ToSql {
        self
    }
    fn pg(&self) -> &(dyn PgToSql + Sync) {
        self
    }
}

/// A column type both database clients read.
pub trait Column: rusqlite::types::FromSql + for<'a> PgFromSql<'a> {}
impl<T: rusqlite::types::FromSql + for<'a> PgFromSql<'a>> Column for T {}

/// One row of a query, on either database.
pub enum Row<'a> {
    /// An SQLite row.
    Sqlite(&'a rusqlite::Row<'a>),
    /// A PostgreSQL row.
    Postgres(&'a privacy_pledge::store::postgres::postgres::Row),
}

impl Row<'_> {
    /// Column `i` (from 0) as a `T`.
    pub fn get<T: Column>(&self, i: usize) -> Result<T, BoxError> {
        Ok(match self {
            Row::Sqlite(r) => r.get(i)?,
            Row::Postgres(r) => r.try_get(i)?,
        })
    }
}

/// A custodian on the crate's store: keys, consents and a signed audit
/// stream in the database, checkpoints signed into a directory beside the
/// demo's files (standing in for a place outside the database's reach).
pub struct StoreShop {
    pub store: Store,
    pub custodian: privacy_pledge::Custodian,
    /// Signs the audit stream's head when the shop is dropped: at the end
    /// of `main`, or on the way out of an error or a panic.
    guard: CheckpointGuard,
    pub checkpoints: PathBuf,
    pub public_key: CheckpointKey,
}

impl StoreShop {
    /// Clean shutdown: signs the stream's head into the checkpoint directory
    /// now, for the caller to show (the guard signs again on drop).
    pub fn shut_down(&self) -> Result<SignedCheckpoint, BoxError> {
        Ok(self.guard.sign()?)
    }

    /// The whole trail, every stream verified under the custodian's keys
    /// against the signed checkpoints of its checkpoint store (read before
    /// the trail).
    pub fn verified_trail(&self) -> Result<VerifiedTrail, BoxError> {
        self.custodian.verify_trail_with(|| self.store.trail())
    }
}

/// `<files>.checkpoints/`: the signed checkpoints of every stream.
pub fn checkpoint_dir_for(files: &Path) -> PathBuf {
    let mut name = files.as_os_str().to_owned();
    name.push(".checkpoints");
    PathBuf::from(name)
}

/// `<files>.pub`: the checkpoint public key, for verifiers (no secret).
pub fn public_key_file_for(files: &Path) -> PathBuf {
    let mut name = files.as_os_str().to_owned();
    name.push(".pub");
    PathBuf::from(name)
}

/// Opens the shop's store and custodian on an SQLite file.
pub fn open_store_shop(db_path: &Path) -> Result<StoreShop, BoxError> {
    open_shop_on(&Database::Sqlite(db_path.to_owned()))
}

/// Opens the shop's store and custodian on `database`. Any number of
/// processes may do this on one database at once.
pub fn open_shop_on(database: &Database) -> Result<StoreShop, BoxError> {
    // Demo only: the keyring sits in `<files>.key`. A real host fetches it
    // from its KMS at start-up.
    let files = database.files();
    let key_file = key_file_for(files);
    if let Database::Sqlite(db_path) = database {
        if db_path.exists() && !key_file.exists() {
            return Err(format!(
                "{} has no key file {}",
                db_path.display(),
                key_file.display()
            )
            .into());
        }
    }
    if let Some(parent) = files.parent() {
        fs::create_dir_all(parent)?;
    }
    let keyring = Arc::new(read_or_create_keyring(&key_file)?);
    match database {
        Database::Sqlite(path) => {
            let store = SqliteStore::open(path)?;
            let sink = store.audit_sink(keyring.audit_key())?;
            let (ks, cs) = (store.key_store(), store.consent_store());
            build(Store::Sqlite(store), sink, ks, cs, keyring, files)
        }
        Database::Postgres { url, .. } => {
            let store = PgStore::connect(url)?;
            let sink = store.audit_sink(keyring.audit_key())?;
            let (ks, cs) = (store.key_store(), store.consent_store());
            build(Store::Postgres(store), sink, ks, cs, keyring, files)
        }
    }
}

/// The maintenance step after erasures, as a shop runs it: rotate the
/// key-encryption keys, rewrap every live customer's key, retire and wipe
/// the old version, save the keyring (`Custodian::rotate_after_erasures`).
/// Another process of the shop may be rotating at the same moment: then
/// this waits for it (up to a minute) and rotates once more, so that this
/// process's own erasures are covered.
pub fn rotate_keys_after_erasures(
    custodian: &privacy_pledge::Custodian,
) -> Result<privacy_pledge::KeyRotation, BoxError> {
    let started = std::time::Instant::now();
    loop {
        match custodian.rotate_after_erasures() {
            Err(privacy_pledge::Error::Key(KeyError::RotationInProgress { .. }))
                if started.elapsed() < std::time::Duration::from_secs(60) =>
            {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            other => return Ok(other?),
        }
    }
}

/// The custodian over one store's parts, its stream checkpointed every 100
/// events into `<files>.checkpoints/`.
fn build<W: BatchWriter + 'static>(
    store: Store,
    sink: AuditStreamSink<W>,
    keys: impl privacy_pledge::crypto::KeyStore + 'static,
    consents: impl privacy_pledge::consent::ConsentStore + 'static,
    keyring: Arc<privacy_pledge::crypto::Keyring>,
    files: &Path,
) -> Result<StoreShop, BoxError> {
    let checkpoints = checkpoint_dir_for(files);
    let signer = keyring.checkpoint_signer()?;
    let public_key = signer.public_key();
    fs::write(public_key_file_for(files), format!("{public_key}\n"))?;
    let outside = DirCheckpointStore::new(&checkpoints)?;
    let anchor = outside.anchor()?;
    let sink = Arc::new(sink.with_checkpoints(signer, outside.clone(), 100));
    let custodian = privacy_pledge::Custodian::builder()
        .keyring(keyring)
        .checkpoint_store(outside)
        .keyring_store(KeyFile(key_file_for(files)))
        .key_store(keys)
        .consent_store(consents)
        .freshness_anchor(anchor)
        .audit(sink.clone())
        .build()?;
    Ok(StoreShop {
        store,
        custodian,
        guard: sink.checkpoint_guard(),
        checkpoints,
        public_key,
    })
}
