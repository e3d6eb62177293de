//! Where the host keeps its keyring between runs: the [`KeyringStore`] seam,
//! which a rotation saves the keyring to and other processes reload it from.

use core::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use zeroize::Zeroizing;

use super::keyring::{KeyProvider, Keyring, Wrapped};
use super::KeyError;

/// The host's secret store (a KMS, a vault, a secret manager), holding the
/// keyring as the text of [`Keyring::export`].
///
/// [`Custodian::rotate_after_erasures`](crate::Custodian::rotate_after_erasures)
/// saves the keyring here, and a custodian built with
/// [`keyring_store`](crate::CustodianBuilder::keyring_store) reloads it from
/// here when another process has rotated. The store must keep the last text
/// saved and **no older one**: an older text still holds the versions a
/// rotation retired, and with them opens every old copy of the key store
/// (the one copy an erasure cannot reach). A secret manager that keeps
/// previous versions of a secret must be told to drop them.
///
/// ```
/// use std::sync::Mutex;
/// use privacy_pledge::crypto::{KeyError, KeyringStore};
/// use zeroize::Zeroizing;
///
/// /// Stands in for a secret manager's client.
/// struct SecretManager(Mutex<Zeroizing<String>>);
///
/// impl KeyringStore for SecretManager {
///     fn load(&self) -> Result<Zeroizing<String>, KeyError> {
///         Ok(self.0.lock().unwrap().clone())
///     }
///     fn save(&self, export: &str) -> Result<(), KeyError> {
///         // A real client writes the secret and deletes its older versions.
///         *self.0.lock().unwrap() = Zeroizing::new(export.to_owned());
///         Ok(())
///     }
/// }
/// ```
pub trait KeyringStore: Send + Sync {
    /// The keyring's export text, as last saved.
    fn load(&self) -> Result<Zeroizing<String>, KeyError>;

    /// Replaces the stored keyring with `export` (atomically: a `load` gets
    /// the old text or the new, never a mix), keeping no older copy.
    fn save(&self, export: &str) -> Result<(), KeyError>;

    /// Replaces the stored keyring with `export` only if the store still
    /// holds `expected`, the text the caller extended or saved last;
    /// `Ok(false)`, and nothing written, if it holds another.
    ///
    /// A rotation saves through this. A process whose save was slow (a
    /// paused machine, retries) may find its claim taken over and the
    /// rotation finished by another process, which saved a newer keyring
    /// without the versions it retired; written over it, the stale text
    /// would bring those versions back (and with them every old copy of
    /// the key store), and lose the newest one.
    ///
    /// The default loads, compares (in constant time) and saves: another
    /// process saving between the two is not seen. A store that can make
    /// it one step — a secret manager's write conditional on the secret's
    /// current version, a file replaced under a lock, as
    /// [`KeyringFile`](super::KeyringFile) does — should.
    fn replace(&self, expected: &str, export: &str) -> Result<bool, KeyError> {
        if !crate::ct::eq(self.load()?.as_bytes(), expected.as_bytes()) {
            return Ok(false);
        }
        self.save(export).map(|()| true)
    }
}

impl<S: KeyringStore + ?Sized> KeyringStore for Arc<S> {
    fn load(&self) -> Result<Zeroizing<String>, KeyError> {
        (**self).load()
    }
    fn save(&self, export: &str) -> Result<(), KeyError> {
        (**self).save(export)
    }
    fn replace(&self, expected: &str, export: &str) -> Result<bool, KeyError> {
        (**self).replace(expected, export)
    }
}

/// A [`KeyringStore`] in memory: for tests, examples and a single process.
///
/// ```
/// use std::sync::Arc;
/// use privacy_pledge::crypto::{Keyring, KeyringStore, MemoryKeyringStore};
///
/// let keyring = Keyring::generate()?;
/// let store = MemoryKeyringStore::new(&keyring);
/// assert_eq!(&*store.load()?, &*keyring.export());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct MemoryKeyringStore {
    text: Mutex<Zeroizing<String>>,
}

impl MemoryKeyringStore {
    /// A store holding `keyring`'s export.
    pub fn new(keyring: &Keyring) -> Self {
        MemoryKeyringStore {
            text: Mutex::new(keyring.export()),
        }
    }
}

impl KeyringStore for MemoryKeyringStore {
    fn load(&self) -> Result<Zeroizing<String>, KeyError> {
        Ok(self.text.lock().unwrap_or_else(|p| p.into_inner()).clone())
    }
    fn save(&self, export: &str) -> Result<(), KeyError> {
        *self.text.lock().unwrap_or_else(|p| p.into_inner()) = Zeroizing::new(export.to_owned());
        Ok(())
    }
    fn replace(&self, expected: &str, export: &str) -> Result<bool, KeyError> {
        let mut text = self.text.lock().unwrap_or_else(|p| p.into_inner());
        if !crate::ct::eq(text.as_bytes(), expected.as_bytes()) {
            return Ok(false);
        }
        *text = Zeroizing::new(export.to_owned());
        Ok(true)
    }
}

impl fmt::Debug for MemoryKeyringStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MemoryKeyringStore([redacted])")
    }
}

/// How often a [`Reloading`] keyring reads the store at most while reading
/// brings nothing new: a key store row naming a version nobody has (an
/// operator's edit) cannot make every open read the secret store.
const RELOAD_AT_MOST_EVERY: Duration = Duration::from_millis(100);

/// The keyring as the custodian's key provider, reloaded from the host's
/// store when another process has rotated.
pub(crate) struct Reloading {
    keyring: Arc<Keyring>,
    store: Arc<dyn KeyringStore>,
    /// When the store was last read and found to hold nothing new.
    idle_since: Mutex<Option<Instant>>,
}

impl Reloading {
    pub(crate) fn new(keyring: Arc<Keyring>, store: Arc<dyn KeyringStore>) -> Self {
        Reloading {
            keyring,
            store,
            idle_since: Mutex::new(None),
        }
    }
}

impl KeyProvider for Reloading {
    fn current_version(&self) -> u32 {
        self.keyring.current_version()
    }
    fn wrap(&self, data_key: &[u8; 32], context: &[u8]) -> Result<Wrapped, KeyError> {
        self.keyring.wrap(data_key, context)
    }
    fn unwrap(&self, wrapped: &Wrapped, context: &[u8]) -> Result<Zeroizing<[u8; 32]>, KeyError> {
        self.keyring.unwrap(wrapped, context)
    }
    fn retire(&self, version: u32) -> Result<(), KeyError> {
        self.keyring.retire(version)
    }
    fn versions(&self) -> Vec<u32> {
        self.keyring.versions()
    }
    fn refresh(&self) -> Result<bool, KeyError> {
        let mut idle = self.idle_since.lock().unwrap_or_else(|p| p.into_inner());
        if idle.is_some_and(|at| at.elapsed() < RELOAD_AT_MOST_EVERY) {
            return Ok(false);
        }
        let text = self.store.load()?;
        let changed = self.keyring.reload(&text)?;
        *idle = if changed { None } else { Some(Instant::now()) };
        Ok(changed)
    }
}
