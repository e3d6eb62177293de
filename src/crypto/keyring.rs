//! Key-encryption keys: the [`KeyProvider`] seam and the local [`Keyring`].

use core::fmt;
use std::collections::BTreeMap;
use std::sync::RwLock;

use ring::hkdf;
use secrecy::{ExposeSecret, SecretBox};
use zeroize::{Zeroize, Zeroizing};

use super::aead::{AeadKey, Algorithm, NONCE_LEN, TAG_LEN};
use super::{random_array, KeyError, PseudonymKey};
use crate::audit::AuditKey;
use crate::subject::SubjectId;
use crate::Error;

/// A subject data key, wrapped (encrypted) under a key-encryption key.
#[derive(Clone, PartialEq, Eq)]
pub struct Wrapped {
    /// The key-encryption-key version that wrapped it.
    pub kek_version: u32,
    /// The wrapped bytes (opaque to everyone but the provider).
    pub bytes: Vec<u8>,
}

impl fmt::Debug for Wrapped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Wrapped(kek v{}, {} bytes)",
            self.kek_version,
            self.bytes.len()
        )
    }
}

/// Where key-encryption keys live: the seam for a KMS or HSM.
///
/// The custodian never sees a key-encryption key; it asks the provider to wrap
/// a fresh subject data key and, later, to unwrap it. `context` binds the
/// wrapped key to its subject and generation, so a wrapped key copied to
/// another subject's row does not unwrap. [`Keyring`] is the built-in,
/// local provider.
pub trait KeyProvider: Send + Sync {
    /// The version new data keys are wrapped under.
    fn current_version(&self) -> u32;

    /// Wraps a 32-byte data key under the current version.
    fn wrap(&self, data_key: &[u8; 32], context: &[u8]) -> Result<Wrapped, KeyError>;

    /// Unwraps a data key wrapped by [`wrap`](Self::wrap).
    fn unwrap(&self, wrapped: &Wrapped, context: &[u8]) -> Result<Zeroizing<[u8; 32]>, KeyError>;

    /// Stops using a version (its keys can no longer be unwrapped). The
    /// custodian calls this only once no stored key depends on the version.
    fn retire(&self, version: u32) -> Result<(), KeyError> {
        Err(KeyError::Unsupported { version })
    }
}

impl<P: KeyProvider + ?Sized> KeyProvider for std::sync::Arc<P> {
    fn current_version(&self) -> u32 {
        (**self).current_version()
    }
    fn wrap(&self, data_key: &[u8; 32], context: &[u8]) -> Result<Wrapped, KeyError> {
        (**self).wrap(data_key, context)
    }
    fn unwrap(&self, wrapped: &Wrapped, context: &[u8]) -> Result<Zeroizing<[u8; 32]>, KeyError> {
        (**self).unwrap(wrapped, context)
    }
    fn retire(&self, version: u32) -> Result<(), KeyError> {
        (**self).retire(version)
    }
}

struct Versions {
    current: u32,
    keys: BTreeMap<u32, AeadKey>,
}

/// The local key provider: versioned key-encryption keys derived from one
/// master secret with HKDF-SHA-256, plus the pseudonym and audit keys.
///
/// A host keeps two things: the 32-byte master secret (in its secret store)
/// and the list of live versions. From those, [`Keyring::from_master`]
/// rebuilds exactly the same keys after a restart.
///
/// ```
/// use privacy_pledge::crypto::{KeyProvider, Keyring};
///
/// let keyring = Keyring::generate()?;
/// assert_eq!(keyring.current_version(), 1);
/// assert_eq!(keyring.rotate()?, 2);           // new data keys are wrapped under v2
/// assert_eq!(keyring.versions(), vec![1, 2]); // v1 still unwraps older keys
/// # Ok::<(), privacy_pledge::Error>(())
/// ```
pub struct Keyring {
    master: SecretBox<[u8; 32]>,
    versions: RwLock<Versions>,
}

const WRAP_ALG: Algorithm = Algorithm::Aes256Gcm;

struct Len32;
impl hkdf::KeyType for Len32 {
    fn len(&self) -> usize {
        32
    }
}

fn derive(master: &[u8; 32], label: &[u8]) -> Zeroizing<[u8; 32]> {
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, b"privacy-pledge v1").extract(master);
    let mut out = Zeroizing::new([0u8; 32]);
    // HKDF-Expand of 32 bytes cannot fail: the length is far below 255 * 32.
    if let Ok(okm) = prk.expand(&[label], Len32) {
        let _ = okm.fill(&mut out[..]);
    }
    out
}

impl Keyring {
    /// A keyring with a fresh random master secret and version 1.
    pub fn generate() -> Result<Self, Error> {
        let mut master = random_array::<32>()?;
        let k = Self::from_master(master, [1]);
        master.zeroize();
        k
    }

    /// Rebuilds a keyring from its master secret and live versions (the
    /// highest is current). With no versions, version 1.
    pub fn from_master(
        master: [u8; 32],
        versions: impl IntoIterator<Item = u32>,
    ) -> Result<Self, Error> {
        let mut master = master;
        let boxed = SecretBox::new(Box::new(master));
        master.zeroize();
        let mut keys = BTreeMap::new();
        for v in versions {
            if v == 0 {
                return Err(KeyError::Unsupported { version: 0 }.into());
            }
            keys.insert(v, Self::kek(&boxed, v)?);
        }
        if keys.is_empty() {
            keys.insert(1, Self::kek(&boxed, 1)?);
        }
        let current = keys.keys().next_back().copied().unwrap_or(1);
        Ok(Keyring {
            master: boxed,
            versions: RwLock::new(Versions { current, keys }),
        })
    }

    fn kek(master: &SecretBox<[u8; 32]>, version: u32) -> Result<AeadKey, Error> {
        let label = format!("kek/{version}");
        AeadKey::new(
            WRAP_ALG,
            &derive(master.expose_secret(), label.as_bytes())[..],
        )
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Versions> {
        self.versions.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Versions> {
        self.versions.write().unwrap_or_else(|p| p.into_inner())
    }

    /// The master secret, to keep in the host's secret store.
    pub fn expose_master(&self) -> &[u8; 32] {
        self.master.expose_secret()
    }

    /// The live versions, oldest first.
    pub fn versions(&self) -> Vec<u32> {
        self.read().keys.keys().copied().collect()
    }

    /// Adds the next version and makes it current. Data keys wrapped under
    /// older versions still unwrap; [`Custodian::rewrap_keys`](crate::Custodian::rewrap_keys)
    /// moves them to the new version without touching any sealed data.
    pub fn rotate(&self) -> Result<u32, Error> {
        let mut v = self.write();
        let next = v
            .current
            .checked_add(1)
            .ok_or(KeyError::Unsupported { version: u32::MAX })?;
        let key = Self::kek(&self.master, next)?;
        v.keys.insert(next, key);
        v.current = next;
        Ok(next)
    }

    /// The key for pseudonyms (R6), derived from the master secret.
    pub fn pseudonym_key(&self) -> PseudonymKey {
        PseudonymKey::from_bytes(*derive(self.master.expose_secret(), b"pseudonym"))
    }

    /// The key for the audit chain (R10), derived from the master secret.
    pub fn audit_key(&self) -> AuditKey {
        AuditKey::from_bytes(*derive(self.master.expose_secret(), b"audit"))
    }
}

impl KeyProvider for Keyring {
    fn current_version(&self) -> u32 {
        self.read().current
    }

    fn wrap(&self, data_key: &[u8; 32], context: &[u8]) -> Result<Wrapped, KeyError> {
        let v = self.read();
        let key = v
            .keys
            .get(&v.current)
            .ok_or(KeyError::Retired { version: v.current })?;
        let nonce = random_array::<NONCE_LEN>().map_err(|_| KeyError::Random)?;
        let mut bytes = Vec::with_capacity(NONCE_LEN + 32 + TAG_LEN);
        bytes.extend_from_slice(&nonce);
        bytes.extend_from_slice(data_key);
        let tag = key
            .seal(nonce, context, &mut bytes[NONCE_LEN..])
            .map_err(|_| KeyError::Unwrap)?;
        bytes.extend_from_slice(&tag);
        Ok(Wrapped {
            kek_version: v.current,
            bytes,
        })
    }

    fn unwrap(&self, wrapped: &Wrapped, context: &[u8]) -> Result<Zeroizing<[u8; 32]>, KeyError> {
        let v = self.read();
        let key = v.keys.get(&wrapped.kek_version).ok_or(KeyError::Retired {
            version: wrapped.kek_version,
        })?;
        if wrapped.bytes.len() != NONCE_LEN + 32 + TAG_LEN {
            return Err(KeyError::Unwrap);
        }
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&wrapped.bytes[..NONCE_LEN]);
        let mut buf = Zeroizing::new(wrapped.bytes[NONCE_LEN..].to_vec());
        let plain = key
            .open(nonce, context, &mut buf)
            .map_err(|_| KeyError::Unwrap)?;
        let mut out = Zeroizing::new([0u8; 32]);
        out.copy_from_slice(plain);
        Ok(out)
    }

    fn retire(&self, version: u32) -> Result<(), KeyError> {
        let mut v = self.write();
        if version == v.current {
            return Err(KeyError::InUse { version, keys: 0 });
        }
        v.keys
            .remove(&version)
            .map(|_| ())
            .ok_or(KeyError::Retired { version })
    }
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("versions", &self.versions())
            .field("master", &"[redacted]")
            .finish()
    }
}

/// The context a data key is wrapped under: subject and generation.
pub(crate) fn wrap_context(subject: SubjectId, generation: u32) -> [u8; 36] {
    let mut c = [0u8; 36];
    c[..16].copy_from_slice(b"pp/data-key/v1\0\0");
    c[16..32].copy_from_slice(subject.as_bytes());
    c[32..].copy_from_slice(&generation.to_be_bytes());
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrap_unwrap_and_context_binding() {
        let k = Keyring::generate().unwrap();
        let dek = [7u8; 32];
        let ctx = wrap_context(SubjectId::from(1), 0);
        let w = k.wrap(&dek, &ctx).unwrap();
        assert_eq!(*k.unwrap(&w, &ctx).unwrap(), dek);
        let other = wrap_context(SubjectId::from(2), 0);
        assert_eq!(k.unwrap(&w, &other).unwrap_err(), KeyError::Unwrap);
        let mut bad = w.clone();
        bad.bytes[20] ^= 1;
        assert_eq!(k.unwrap(&bad, &ctx).unwrap_err(), KeyError::Unwrap);
        bad.bytes.truncate(10);
        assert_eq!(k.unwrap(&bad, &ctx).unwrap_err(), KeyError::Unwrap);
    }

    #[test]
    fn same_master_same_keys() {
        let a = Keyring::generate().unwrap();
        let b = Keyring::from_master(*a.expose_master(), [1]).unwrap();
        let ctx = wrap_context(SubjectId::from(9), 3);
        let w = a.wrap(&[1; 32], &ctx).unwrap();
        assert_eq!(*b.unwrap(&w, &ctx).unwrap(), [1; 32]);
        assert_eq!(a.pseudonym_key().tag(b"x"), b.pseudonym_key().tag(b"x"));
    }

    #[test]
    fn rotate_and_retire() {
        let k = Keyring::generate().unwrap();
        let ctx = wrap_context(SubjectId::from(1), 0);
        let old = k.wrap(&[3; 32], &ctx).unwrap();
        assert_eq!(k.rotate().unwrap(), 2);
        let new = k.wrap(&[3; 32], &ctx).unwrap();
        assert_eq!(new.kek_version, 2);
        assert_eq!(*k.unwrap(&old, &ctx).unwrap(), [3; 32]);
        assert!(matches!(k.retire(2), Err(KeyError::InUse { .. })));
        k.retire(1).unwrap();
        assert_eq!(
            k.unwrap(&old, &ctx).unwrap_err(),
            KeyError::Retired { version: 1 }
        );
        assert!(format!("{k:?}").contains("[redacted]"));
    }
}
