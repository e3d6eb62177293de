//! What the examples share: the demo's key and checkpoint files, and a
//! custodian opened on the crate's SQLite store (`store::sqlite`). Storage
//! itself — tables, audit streams, keys, consents — is the crate's.

#![allow(dead_code)]

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use privacy_pledge::audit::VerifiedTrail;
use privacy_pledge::crypto::Keyring;
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
    let text = keyring.export();
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(&tmp)
        .map_err(|e| format!("cannot create key file {}: {e}", tmp.display()))?;
    file.write_all(text.as_bytes())?;
    file.write_all(b"\n")?;
    file.sync_all()?;
    fs::rename(&tmp, path)?;
    Ok(())
}

/// Reads the keyring from `path`, or creates a fresh one there if the file
/// does not exist.
pub fn read_or_create_keyring(path: &Path) -> Result<Keyring, BoxError> {
    if path.exists() {
        return read_keyring(path);
    }
    // Several processes may start on a new database at once: each writes a
    // candidate, and the first to link it into place wins; the others read
    // the winner's.
    let keyring = Keyring::generate()?;
    let mut candidate = path.as_os_str().to_owned();
    candidate.push(format!(".{}.new", std::process::id()));
    let candidate = PathBuf::from(candidate);
    write_keyring(&candidate, &keyring)?;
    let linked = fs::hard_link(&candidate, path);
    let _ = fs::remove_file(&candidate);
    match linked {
        Ok(()) => Ok(keyring),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => read_keyring(path),
        Err(e) => Err(format!("cannot create key file {}: {e}", path.display()).into()),
    }
}

// ---------------------------------------------------------------------------
// The host's custodian on the crate's own SQLite store

use privacy_pledge::audit::{CheckpointKey, CheckpointStore, DirCheckpointStore, SignedCheckpoint};
use privacy_pledge::store::sqlite::{SqliteAuditSink, SqliteStore};

/// A custodian on [`SqliteStore`]: keys, consents and a signed audit stream
/// in the database, checkpoints signed into a directory beside it (standing
/// in for a place outside the database's reach).
pub struct StoreShop {
    pub store: SqliteStore,
    pub custodian: privacy_pledge::Custodian,
    pub sink: Arc<SqliteAuditSink>,
    pub checkpoints: PathBuf,
    pub public_key: CheckpointKey,
}

impl StoreShop {
    /// Clean shutdown: signs the stream's head into the checkpoint directory.
    pub fn shut_down(&self) -> Result<SignedCheckpoint, BoxError> {
        Ok(self.sink.sign_checkpoint()?)
    }

    /// The whole trail, every stream verified under the custodian's keys
    /// against the signed checkpoints.
    pub fn verified_trail(&self) -> Result<VerifiedTrail, BoxError> {
        let checkpoints = DirCheckpointStore::new(&self.checkpoints)?.load()?;
        Ok(self
            .custodian
            .verify_stream_trail(self.store.trail()?, &checkpoints)?)
    }
}

/// `<db>.checkpoints/`: the signed checkpoints of every stream.
pub fn checkpoint_dir_for(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push(".checkpoints");
    PathBuf::from(name)
}

/// `<db>.pub`: the checkpoint public key, for verifiers (no secret).
pub fn public_key_file_for(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push(".pub");
    PathBuf::from(name)
}

/// Opens the shop's store and custodian on `db_path`. Any number of
/// processes may do this on one file at once.
pub fn open_store_shop(db_path: &Path) -> Result<StoreShop, BoxError> {
    // Demo only: the keyring sits in `<db>.key` beside the database. A real
    // host fetches it from its KMS at start-up.
    let key_file = key_file_for(db_path);
    if db_path.exists() && !key_file.exists() {
        return Err(format!(
            "{} has no key file {}",
            db_path.display(),
            key_file.display()
        )
        .into());
    }
    let keyring = Arc::new(read_or_create_keyring(&key_file)?);
    let store = SqliteStore::open(db_path)?;
    let checkpoints = checkpoint_dir_for(db_path);
    let signer = keyring.checkpoint_signer()?;
    let public_key = signer.public_key();
    fs::write(public_key_file_for(db_path), format!("{public_key}\n"))?;
    let sink = Arc::new(store.audit_sink(keyring.audit_key())?.with_checkpoints(
        signer,
        DirCheckpointStore::new(&checkpoints)?,
        100,
    ));
    let custodian = privacy_pledge::Custodian::builder()
        .keyring(keyring.clone())
        .key_store(store.key_store())
        .consent_store(store.consent_store())
        .audit(sink.clone())
        .build()?;
    Ok(StoreShop {
        store,
        custodian,
        sink,
        checkpoints,
        public_key,
    })
}
