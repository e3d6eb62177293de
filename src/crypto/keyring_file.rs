//! A keyring kept in a file: [`KeyringFile`], created atomically by the
//! first of several processes starting together.

use core::fmt;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use crate::files::FileLock;

use super::keyring::Keyring;
use super::keyring_store::KeyringStore;
use super::{random_array, KeyError};

/// A [`KeyringStore`] in one file, holding the keyring's
/// [`export`](Keyring::export) text (readable by its owner only on Unix).
///
/// Every write is a new file in the same directory, synced, then put in
/// place in one step, so a reader gets the old text or the new, never a
/// mix (through a symbolic link, the file it points to is replaced).
/// Writes hold a lock shared by processes (the file `<path>.lock` beside
/// it, which stays), and each one removes what a write killed part way
/// left behind (its new file, holding a text the keyring may since have
/// retired keys from): after a save, no older text is left beside the
/// file. [`load_or_create`](Self::load_or_create) makes the file if it is
/// missing such that, of several processes starting together on a new
/// deployment, exactly one creates it and all use that keyring: the first
/// to take the lock writes a candidate and links it to the path with
/// `hard_link`, which fails if the path exists; the others read its file.
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
        let _lock = self.lock()?;
        let keyring = Keyring::generate().map_err(|_| KeyError::Random)?;
        let candidate = self.write_candidate(&keyring.export())?;
        // Links only if nothing is at the path (another process may have
        // made it while this one waited for the lock): one creator wins.
        let linked = fs::hard_link(&candidate, &self.path);
        let _ = fs::remove_file(&candidate);
        match linked {
            Ok(()) => {
                self.sweep()?;
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

    /// This file, or, if its path is a symbolic link, the file the link
    /// resolves to: the one a write must replace, beside which its lock
    /// and candidates are, whichever name a process knows it by.
    fn resolved(&self) -> Result<KeyringFile, KeyError> {
        match fs::symlink_metadata(&self.path) {
            Ok(m) if m.file_type().is_symlink() => fs::canonicalize(&self.path)
                .map(KeyringFile::new)
                .map_err(|e| self.error("cannot resolve the link", e)),
            _ => Ok(self.clone()),
        }
    }

    /// The lock every write holds, on `<path>.lock` (created if missing,
    /// readable by its owner only on Unix).
    fn lock(&self) -> Result<FileLock, KeyError> {
        let mut name = self.path.as_os_str().to_owned();
        name.push(".lock");
        let mut options = fs::OpenOptions::new();
        options.read(true).write(true).create(true).truncate(false);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        options
            .open(PathBuf::from(name))
            .and_then(FileLock::exclusive)
            .map_err(|e| self.error("cannot lock", e))
    }

    /// Removes every candidate beside the file (`<name>.<pid>.<tag>.new`).
    /// Called under the lock, after this write's own candidate is in place
    /// or removed: any other one is what a write killed part way left, a
    /// keyring text older than the file's or a second link to a replaced
    /// file.
    fn sweep(&self) -> Result<(), KeyError> {
        let Some(name) = self.path.file_name() else {
            return Ok(());
        };
        let dir = match self.path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        let entries = fs::read_dir(dir).map_err(|e| self.error("cannot list its directory", e))?;
        for entry in entries {
            let entry = entry.map_err(|e| self.error("cannot list its directory", e))?;
            if !is_candidate(
                name.as_encoded_bytes(),
                entry.file_name().as_encoded_bytes(),
            ) {
                continue;
            }
            match fs::remove_file(entry.path()) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(self.error("cannot remove a file left by a failed write", e));
                }
                _ => {}
            }
        }
        Ok(())
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

    /// Replaces the file: a new file, synced, renamed over the old one,
    /// under the lock; then removes what earlier writes killed part way
    /// left beside it.
    ///
    /// If the path is a symbolic link, the file it points to is replaced
    /// (the link is left as it is): renamed over, the link would become
    /// the new file while the old text stayed where it pointed.
    fn save(&self, export: &str) -> Result<(), KeyError> {
        self.replace_if(export, |_| Ok(true)).map(drop)
    }

    /// [`save`](Self::save), made only if the file holds `expected` (read
    /// and compared under the same lock as the write).
    fn replace(&self, expected: &str, export: &str) -> Result<bool, KeyError> {
        self.replace_if(export, |file| {
            Ok(crate::ct::eq(file.load()?.as_bytes(), expected.as_bytes()))
        })
    }
}

impl KeyringFile {
    /// Replaces the file with `export` if `check`, run under the lock on
    /// the file the path resolves to, says so.
    fn replace_if(
        &self,
        export: &str,
        check: impl FnOnce(&KeyringFile) -> Result<bool, KeyError>,
    ) -> Result<bool, KeyError> {
        let file = self.resolved()?;
        let _lock = file.lock()?;
        if !check(&file)? {
            return Ok(false);
        }
        let candidate = file.write_candidate(export)?;
        if let Err(e) = fs::rename(&candidate, &file.path) {
            let _ = fs::remove_file(&candidate);
            return Err(file.error("cannot replace", e));
        }
        file.sweep()?;
        file.sync_dir().map(|()| true)
    }
}

/// Whether `entry` is the name of a candidate for the file named `file`:
/// `<file>.<pid>.<16 hex digits>.new`, as [`KeyringFile::write_candidate`]
/// names them.
fn is_candidate(file: &[u8], entry: &[u8]) -> bool {
    let Some(rest) = entry
        .strip_prefix(file)
        .and_then(|r| r.strip_prefix(b"."))
        .and_then(|r| r.strip_suffix(b".new"))
    else {
        return false;
    };
    let Some(dot) = rest.iter().position(|&b| b == b'.') else {
        return false;
    };
    let (pid, tag) = (&rest[..dot], &rest[dot + 1..]);
    !pid.is_empty()
        && pid.iter().all(u8::is_ascii_digit)
        && tag.len() == 16
        && tag.iter().all(u8::is_ascii_hexdigit)
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

#[cfg(test)]
mod tests {
    use super::is_candidate;

    #[test]
    fn only_the_files_own_candidates_are_swept() {
        let file = b"shop.key";
        assert!(is_candidate(file, b"shop.key.4242.00ff00ff00ff00ff.new"));
        for other in [
            &b"shop.key"[..],
            b"shop.key.lock",
            b"shop.key.new",
            b"shop.key.4242.new",
            b"shop.key..00ff00ff00ff00ff.new",
            b"shop.key.42x.00ff00ff00ff00ff.new",
            b"shop.key.4242.00ff00ff00ff00f.new",
            b"shop.key.4242.00ff00ff00ff00fg.new",
            b"shop.key.4242.00ff00ff00ff00ff.new.bak",
            b"shop.keyx.4242.00ff00ff00ff00ff.new",
            b"other.key.4242.00ff00ff00ff00ff.new",
        ] {
            assert!(
                !is_candidate(file, other),
                "{}",
                String::from_utf8_lossy(other)
            );
        }
    }
}
