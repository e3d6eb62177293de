//! A keyring kept in a file: [`KeyringFile`], created atomically by the
//! first of several processes starting together.

use core::fmt;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use super::keyring::Keyring;
use super::keyring_store::KeyringStore;
use super::{random_array, KeyError};

/// A [`KeyringStore`] in one file, holding the keyring's
/// [`export`](Keyring::export) text (readable by its owner only on Unix).
///
/// Every write is a new file in the same directory, synced, then put in
/// place in one step, so a reader gets the old text or the new, never a
/// mix, and no older text is left beside it. [`load_or_create`](Self::load_or_create)
/// makes the file if it is missing such that, of several processes starting
/// together on a new deployment, exactly one creates it and all use that
/// keyring: each writes a candidate and links it to the path with
/// `hard_link`, which fails if the path exists; the losers read the winner's.
///
/// A keyring file is for one host, a demo or a test. Kept beside the data it
/// protects (in the same backups), it defeats erasure by key destruction
/// and lets whoever holds both open everything and forge the audit trail:
/// a real deployment keeps the keyring in a KMS or secret manager, or its
/// key-encryption keys in an HSM (`Pkcs11Provider`, feature `pkcs11`).
///
/// ```
/// use privacy_pledge::crypto::{KeyProvider, KeyringFile, KeyringStore};
///
/// let dir = std::env::temp_dir().join(format!("pp-doc-{}", std::process::id()));
/// std::fs::create_dir_all(&dir)?;
/// let file = KeyringFile::new(dir.join("shop.key"));
/// let first = file.load_or_create()?; // creates the file
/// let again = file.load_or_create()?; // reads it
/// assert_eq!(first.export(), again.export());
/// first.rotate()?;
/// file.save(&first.export())?;
/// assert_eq!(again.reload(&file.load()?)?, true);
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct KeyringFile {
    path: PathBuf,
}

impl KeyringFile {
    /// The keyring file at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        KeyringFile { path: path.into() }
    }

    /// Where the file is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn error(&self, what: &str, e: std::io::Error) -> KeyError {
        KeyError::Provider(format!("keyring file {}: {what}: {e}", self.path.display()).into())
    }

    /// Reads the keyring from the file, or, if there is none, creates it
    /// with a fresh [`Keyring::generate`]d keyring — atomically: of several
    /// processes doing this at once, exactly one creates the file and every
    /// one returns its keyring.
    pub fn load_or_create(&self) -> Result<Keyring, KeyError> {
        match fs::metadata(&self.path) {
            Ok(_) => return self.read(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(self.error("cannot read", e)),
        }
        let keyring = Keyring::generate().map_err(|_| KeyError::Random)?;
        let candidate = self.write_candidate(&keyring.export())?;
        // Links only if nothing is at the path: one creator wins.
        let linked = fs::hard_link(&candidate, &self.path);
        let _ = fs::remove_file(&candidate);
        match linked {
            Ok(()) => {
                self.sync_dir()?;
                Ok(keyring)
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => self.read(),
            Err(e) => Err(self.error("cannot create", e)),
        }
    }

    fn read(&self) -> Result<Keyring, KeyError> {
        let text = self.load()?;
        Keyring::import(&text)
    }

    /// A new file beside the keyring file holding `text`, synced; its path.
    fn write_candidate(&self, text: &str) -> Result<PathBuf, KeyError> {
        let tag = u64::from_be_bytes(random_array::<8>().map_err(|_| KeyError::Random)?);
        let mut name = self.path.as_os_str().to_owned();
        name.push(format!(".{}.{tag:016x}.new", std::process::id()));
        let candidate = PathBuf::from(name);
        let mut options = fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let written = options.open(&candidate).and_then(|mut file| {
            file.write_all(text.as_bytes())?;
            file.write_all(b"\n")?;
            file.sync_all()
        });
        if let Err(e) = written {
            let _ = fs::remove_file(&candidate);
            return Err(self.error("cannot write", e));
        }
        Ok(candidate)
    }

    /// Syncs the directory, so that a new name in it is on disk.
    fn sync_dir(&self) -> Result<(), KeyError> {
        if let Some(dir) = self.path.parent() {
            crate::files::sync_dir(dir).map_err(|e| self.error("cannot sync its directory", e))?;
        }
        Ok(())
    }
}

impl KeyringStore for KeyringFile {
    fn load(&self) -> Result<Zeroizing<String>, KeyError> {
        let mut text = Zeroizing::new(
            fs::read_to_string(&self.path).map_err(|e| self.error("cannot read", e))?,
        );
        // The file ends with a line break; the export text does not.
        let len = text.trim_end().len();
        text.truncate(len);
        Ok(text)
    }

    /// Replaces the file: a new file, synced, renamed over the old one.
    fn save(&self, export: &str) -> Result<(), KeyError> {
        let candidate = self.write_candidate(export)?;
        if let Err(e) = fs::rename(&candidate, &self.path) {
            let _ = fs::remove_file(&candidate);
            return Err(self.error("cannot replace", e));
        }
        self.sync_dir()
    }
}

impl fmt::Debug for KeyringFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyringFile")
            .field("path", &self.path)
            .finish()
    }
}

impl Keyring {
    /// The keyring kept in the file at `path`, created there (atomically,
    /// see [`KeyringFile`]) if there is none: the same as
    /// `KeyringFile::new(path).load_or_create()`. Give the custodian the
    /// file too ([`CustodianBuilder::keyring_store`](crate::CustodianBuilder::keyring_store)
    /// with a [`KeyringFile`]) so that rotations are saved there.
    pub fn load_or_create(path: impl Into<PathBuf>) -> Result<Keyring, KeyError> {
        KeyringFile::new(path).load_or_create()
    }
}
