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

    /// Reads the versions again from where the host keeps them, because
    /// another process rotated: the custodian calls it when the key store
    /// refuses a key wrapped under a version it no longer takes, or holds a
    /// key wrapped under a version this provider does not know. Returns
    /// whether anything changed. The default has nothing to read again
    /// (a KMS serves every version itself).
    fn refresh(&self) -> Result<bool, KeyError> {
        Ok(false)
    }

    /// The versions this provider can unwrap under, oldest first. The
    /// default knows only the current one.
    fn versions(&self) -> Vec<u32> {
        vec![self.current_version()]
    }

    /// Makes `version` current, creating it where the provider keeps its
    /// keys unless it is there already, so that processes agreeing on the
    /// number agree on one key: what
    /// [`Custodian::rotate_after_erasures`](crate::Custodian::rotate_after_erasures)
    /// asks of a host provider (then [`retire`](Self::retire) for the old
    /// versions). The default cannot rotate.
    fn rotate_to(&self, version: u32) -> Result<(), KeyError> {
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
    fn refresh(&self) -> Result<bool, KeyError> {
        (**self).refresh()
    }
    fn versions(&self) -> Vec<u32> {
        (**self).versions()
    }
    fn rotate_to(&self, version: u32) -> Result<(), KeyError> {
        (**self).rotate_to(version)
    }
}

/// One key-encryption-key version.
struct Kek {
    key: AeadKey,
    /// The random key's bytes, kept only to [`Keyring::export`] them; `None`
    /// for a version derived from the master secret.
    random: Option<SecretBox<[u8; 32]>>,
}

struct Versions {
    current: u32,
    keys: BTreeMap<u32, Kek>,
}

/// The local key provider: versioned key-encryption keys (KEKs), plus the
/// pseudonym and audit keys derived from one master secret with HKDF-SHA-256.
///
/// # Versions that can be destroyed
///
/// Erasure destroys a subject's data key in the key store (R11), but an old
/// copy of the key store — a backup, a replica, a dump — still holds that data
/// key, wrapped under the KEK version of its time. The erasure covers such a
/// copy once that version itself is gone. So every version made by
/// [`generate`](Self::generate) and [`rotate`](Self::rotate) is a **random**
/// key, not derived from anything, and [`retire`](KeyProvider::retire)
/// destroys it (the bytes are wiped). After erasures, rotate → rewrap →
/// retire, in one call:
/// [`Custodian::rotate_after_erasures`](crate::Custodian::rotate_after_erasures)
/// (by hand: [`Custodian::rewrap_keys`](crate::Custodian::rewrap_keys),
/// [`Custodian::retire_key_version`](crate::Custodian::retire_key_version)).
/// From then on no copy of the key store taken before the rotation opens
/// anything of an erased subject, wherever it is kept.
///
/// The host keeps the keyring itself in its secret store (KMS, vault) as the
/// text of [`export`](Self::export), written again after every rotation and
/// retirement (a [`KeyringStore`](crate::crypto::KeyringStore) given to the
/// custodian does it), and rebuilds it with [`import`](Self::import). An old export
/// still holds a retired version: the secret store must keep no copy of an
/// export older than the last retirement (that is the one copy an erasure
/// cannot reach, and why it lives outside the database and its backups).
///
/// ```
/// use privacy_pledge::crypto::{KeyProvider, Keyring};
///
/// let keyring = Keyring::generate()?;
/// assert_eq!(keyring.current_version(), 1);
/// assert_eq!(keyring.rotate()?, 2);           // new data keys are wrapped under v2
/// assert_eq!(keyring.versions(), vec![1, 2]); // v1 still unwraps older keys
/// keyring.retire(1)?;                         // v1 is destroyed
/// let saved = keyring.export();               // keep in the secret store
/// let restarted = Keyring::import(&saved)?;
/// assert_eq!(restarted.versions(), vec![2]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Keyring {
    master: SecretBox<[u8; 32]>,
    versions: RwLock<Versions>,
}

/// A new random version, made but not yet in the keyring: a rotation saves
/// the keyring with it ([`Staged::export`]) before anything is wrapped
/// under it, then [`Keyring::install`]s it.
pub(crate) struct Staged {
    version: u32,
    kek: Kek,
    export: Zeroizing<String>,
}

impl Staged {
    /// The keyring's export text with this version added, as current.
    pub(crate) fn export(&self) -> &str {
        &self.export
    }
}

/// Prefix of an exported keyring's text.
const EXPORT_PREFIX: &str = "ppkr1.";

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
    /// A keyring with a fresh random master secret and a random version 1.
    pub fn generate() -> Result<Self, Error> {
        let mut master = random_array::<32>()?;
        let boxed = SecretBox::new(Box::new(master));
        master.zeroize();
        let mut keys = BTreeMap::new();
        keys.insert(1, Self::random_kek()?);
        Ok(Keyring {
            master: boxed,
            versions: RwLock::new(Versions { current: 1, keys }),
        })
    }

    fn random_kek() -> Result<Kek, Error> {
        let mut bytes = random_array::<32>()?;
        let key = AeadKey::new(WRAP_ALG, &bytes[..]);
        let random = SecretBox::new(Box::new(bytes));
        bytes.zeroize();
        Ok(Kek {
            key: key?,
            random: Some(random),
        })
    }

    /// Rebuilds a keyring whose versions are **derived** from the master
    /// secret (the highest is current; with no versions, version 1): the
    /// form of keyrings before random versions, kept so that keys wrapped by
    /// them still unwrap.
    ///
    /// A derived version can never be destroyed — whoever holds the master
    /// secret derives it again — so an erasure never covers an old copy of
    /// a key store whose keys it wraps. Move off it: [`rotate`](Self::rotate)
    /// (a random version), rewrap, retire the derived versions, and keep the
    /// keyring as [`export`](Self::export) text from then on.
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

    fn kek(master: &SecretBox<[u8; 32]>, version: u32) -> Result<Kek, Error> {
        let label = format!("kek/{version}");
        let key = AeadKey::new(
            WRAP_ALG,
            &derive(master.expose_secret(), label.as_bytes())[..],
        )?;
        Ok(Kek { key, random: None })
    }

    /// Whether `version` is live and derived from the master secret (see
    /// [`from_master`](Self::from_master)): such a version is never truly
    /// destroyed.
    pub fn is_derived(&self, version: u32) -> bool {
        self.read()
            .keys
            .get(&version)
            .is_some_and(|k| k.random.is_none())
    }

    /// The whole keyring as text, to keep in the host's secret store: the
    /// master secret, the current version, and every live version (random
    /// ones with their key bytes, derived ones by number). Write it again
    /// after every [`rotate`](Self::rotate) and retirement. Wiped on drop.
    ///
    /// Format: `ppkr1.` then unpadded URL-safe base64 of `master` (32 bytes),
    /// `current` (u32 BE), `count` (u32 BE), then per version `version` (u32
    /// BE), `tag` (1 = random, followed by its 32 key bytes; 0 = derived).
    pub fn export(&self) -> Zeroizing<String> {
        self.encode(None)
    }

    /// The export text, with `extra` added as the newest, current version.
    fn encode(&self, extra: Option<(u32, &Kek)>) -> Zeroizing<String> {
        let v = self.read();
        let count = v.keys.len() + usize::from(extra.is_some());
        let current = extra.map_or(v.current, |(version, _)| version);
        let mut raw = Zeroizing::new(Vec::with_capacity(40 + count * 37));
        raw.extend_from_slice(self.master.expose_secret());
        raw.extend_from_slice(&current.to_be_bytes());
        raw.extend_from_slice(&(count as u32).to_be_bytes());
        for (version, kek) in v.keys.iter().map(|(v, k)| (*v, k)).chain(extra) {
            raw.extend_from_slice(&version.to_be_bytes());
            match &kek.random {
                Some(bytes) => {
                    raw.push(1);
                    raw.extend_from_slice(bytes.expose_secret());
                }
                None => raw.push(0),
            }
        }
        let mut out = Zeroizing::new(String::with_capacity(
            EXPORT_PREFIX.len() + raw.len() * 4 / 3 + 4,
        ));
        out.push_str(EXPORT_PREFIX);
        base64::Engine::encode_string(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            &raw[..],
            &mut out,
        );
        out
    }

    /// Rebuilds a keyring from [`export`](Self::export) text. Strict: any
    /// other text, a non-canonical encoding, versions out of order, a
    /// duplicate or zero version, or a current version that is not live is
    /// [`KeyError::MalformedKeyring`]; the text is never echoed.
    pub fn import(text: &str) -> Result<Self, KeyError> {
        use KeyError::MalformedKeyring as Bad;
        let body = text
            .strip_prefix(EXPORT_PREFIX)
            .ok_or(Bad("wrong prefix"))?;
        let raw = Zeroizing::new(
            base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, body)
                .map_err(|_| Bad("not unpadded URL-safe base64"))?,
        );
        let mut rest: &[u8] = &raw;
        fn take<'a>(rest: &mut &'a [u8], n: usize) -> Result<&'a [u8], KeyError> {
            if rest.len() < n {
                return Err(KeyError::MalformedKeyring("truncated"));
            }
            let (head, tail) = rest.split_at(n);
            *rest = tail;
            Ok(head)
        }
        fn u32_at(rest: &mut &[u8]) -> Result<u32, KeyError> {
            let b = take(rest, 4)?;
            Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        }
        let mut master = [0u8; 32];
        master.copy_from_slice(take(&mut rest, 32)?);
        let boxed = SecretBox::new(Box::new(master));
        master.zeroize();
        let current = u32_at(&mut rest)?;
        let count = u32_at(&mut rest)?;
        if count == 0 || count as usize > raw.len() / 5 {
            return Err(Bad("bad version count"));
        }
        let mut keys = BTreeMap::new();
        for _ in 0..count {
            let version = u32_at(&mut rest)?;
            if version == 0 {
                return Err(Bad("version 0"));
            }
            let kek = match take(&mut rest, 1)?[0] {
                0 => Self::kek(&boxed, version).map_err(|_| Bad("bad key"))?,
                1 => {
                    let mut bytes = [0u8; 32];
                    bytes.copy_from_slice(take(&mut rest, 32)?);
                    let key = AeadKey::new(WRAP_ALG, &bytes[..]).map_err(|_| Bad("bad key"));
                    let random = SecretBox::new(Box::new(bytes));
                    bytes.zeroize();
                    Kek {
                        key: key?,
                        random: Some(random),
                    }
                }
                _ => return Err(Bad("unknown version tag")),
            };
            // In ascending order, as `export` writes them: one text per keyring.
            if keys.keys().next_back().is_some_and(|&last| version < last) {
                return Err(Bad("versions out of order"));
            }
            if keys.insert(version, kek).is_some() {
                return Err(Bad("duplicate version"));
            }
        }
        if !rest.is_empty() {
            return Err(Bad("trailing bytes"));
        }
        if !keys.contains_key(&current) || keys.keys().next_back() != Some(&current) {
            return Err(Bad("current version is not the newest live one"));
        }
        Ok(Keyring {
            master: boxed,
            versions: RwLock::new(Versions { current, keys }),
        })
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

    /// Adds the next version — a fresh random key — and makes it current.
    /// Data keys wrapped under older versions still unwrap;
    /// [`Custodian::rewrap_keys`](crate::Custodian::rewrap_keys) moves them
    /// to the new version without touching any sealed data, and then
    /// [`Custodian::retire_key_version`](crate::Custodian::retire_key_version)
    /// destroys the old one.
    pub fn rotate(&self) -> Result<u32, Error> {
        let mut v = self.write();
        let next = v
            .current
            .checked_add(1)
            .ok_or(KeyError::Unsupported { version: u32::MAX })?;
        let key = Self::random_kek()?;
        v.keys.insert(next, key);
        v.current = next;
        Ok(next)
    }

    /// Takes in the versions of `text`, this keyring's
    /// [`export`](Self::export) as another process saved it after a
    /// rotation, and returns whether anything changed: versions it added
    /// above this keyring's current one come in, and versions it no longer
    /// holds (retired there) are dropped here too; a version at or below
    /// the current one that this keyring no longer holds (retired here)
    /// never comes back. Refused ([`KeyError::MalformedKeyring`]) unless `text` is a
    /// keyring of the same master secret; ignored (`Ok(false)`) if its
    /// current version is older than this keyring's, so a stale copy never
    /// takes a rotation back.
    ///
    /// A custodian given a [`KeyringStore`](crate::crypto::KeyringStore)
    /// calls this itself when it meets a version it does not hold.
    ///
    /// ```
    /// use privacy_pledge::crypto::Keyring;
    ///
    /// let here = Keyring::generate()?;
    /// let there = Keyring::import(&here.export())?; // another process
    /// there.rotate()?;
    /// assert!(here.reload(&there.export())?);
    /// assert_eq!(here.versions(), vec![1, 2]);
    /// assert!(!here.reload(&there.export())?);
    /// assert!(here.reload(&Keyring::generate()?.export()).is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn reload(&self, text: &str) -> Result<bool, KeyError> {
        let other = Keyring::import(text)?;
        if !crate::ct::eq(self.master.expose_secret(), other.master.expose_secret()) {
            return Err(KeyError::MalformedKeyring(
                "a keyring of another master secret",
            ));
        }
        let theirs = other
            .versions
            .into_inner()
            .unwrap_or_else(|p| p.into_inner());
        let mut ours = self.write();
        if theirs.current < ours.current {
            return Ok(false);
        }
        // A version at or below this keyring's current one that it does
        // not hold was retired here (versions only ever come in above the
        // current one): a text saved before that retirement — read while a
        // rotation's last save is still to come — must not bring it back,
        // or that save would keep it for good (A3 with a pre-erasure copy).
        let current = ours.current;
        let mut theirs = theirs;
        theirs
            .keys
            .retain(|v, _| *v > current || ours.keys.contains_key(v));
        let same = theirs.current == ours.current && theirs.keys.keys().eq(ours.keys.keys());
        if same || !theirs.keys.contains_key(&theirs.current) {
            return Ok(false);
        }
        *ours = theirs;
        Ok(true)
    }

    /// A new random version `version`, newer than every version held, not
    /// yet part of the keyring; with the export text of the keyring that
    /// holds it as current.
    pub(crate) fn stage(&self, version: u32) -> Result<Staged, Error> {
        if self.read().keys.keys().next_back() >= Some(&version) {
            return Err(KeyError::Unsupported { version }.into());
        }
        let kek = Self::random_kek()?;
        let export = self.encode(Some((version, &kek)));
        Ok(Staged {
            version,
            kek,
            export,
        })
    }

    /// Adds a staged version and makes it current (unless a reload brought
    /// it in meanwhile, from the text saved with it).
    pub(crate) fn install(&self, staged: Staged) -> Result<(), KeyError> {
        let mut v = self.write();
        if v.keys.keys().next_back() > Some(&staged.version) {
            return Err(KeyError::Unsupported {
                version: staged.version,
            });
        }
        v.keys.entry(staged.version).or_insert(staged.kek);
        v.current = v.current.max(staged.version);
        Ok(())
    }

    /// The key for pseudonyms (R6), derived from the master secret.
    pub fn pseudonym_key(&self) -> PseudonymKey {
        PseudonymKey::from_bytes(*derive(self.master.expose_secret(), b"pseudonym"))
    }

    /// The key for lookup tokens (a blind index of sealed columns), derived
    /// from the master secret: separate from pseudonyms and data keys.
    pub fn lookup_key(&self) -> super::LookupKey {
        super::LookupKey::from_bytes(*derive(self.master.expose_secret(), b"lookup"))
    }

    /// The Ed25519 key that signs audit checkpoints, derived from the master
    /// secret; hand its [`public_key`](crate::audit::CheckpointSigner::public_key)
    /// to verifiers (they need nothing else).
    pub fn checkpoint_signer(&self) -> Result<crate::audit::CheckpointSigner, Error> {
        crate::audit::CheckpointSigner::from_seed(&derive(
            self.master.expose_secret(),
            b"checkpoint-signing",
        ))
    }

    /// The key consent rows are authenticated under, derived from the
    /// master secret (crate-internal: only the custodian makes rows).
    pub(crate) fn consent_key(&self) -> Zeroizing<[u8; 32]> {
        derive(self.master.expose_secret(), b"consent")
    }

    /// The key the freshness anchor's log is chained under, derived from
    /// the master secret (crate-internal).
    pub(crate) fn anchor_key(&self) -> Zeroizing<[u8; 32]> {
        derive(self.master.expose_secret(), b"freshness-anchor")
    }

    /// The key of subject tags for logs
    /// ([`Custodian::subject_tag`](crate::Custodian::subject_tag)), derived
    /// from the master secret (crate-internal).
    pub(crate) fn subject_tag_key(&self) -> ring::hmac::Key {
        ring::hmac::Key::new(
            ring::hmac::HMAC_SHA256,
            &derive(self.master.expose_secret(), b"subject-tag")[..],
        )
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

    fn versions(&self) -> Vec<u32> {
        Keyring::versions(self)
    }

    fn wrap(&self, data_key: &[u8; 32], context: &[u8]) -> Result<Wrapped, KeyError> {
        let v = self.read();
        let key = &v
            .keys
            .get(&v.current)
            .ok_or(KeyError::Retired { version: v.current })?
            .key;
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
        let key = &v
            .keys
            .get(&wrapped.kek_version)
            .ok_or(KeyError::Retired {
                version: wrapped.kek_version,
            })?
            .key;
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

    /// Destroys `version`: a random version's key bytes are wiped, and no
    /// export made from now on holds it. (A derived version is only dropped
    /// from this keyring; see [`Keyring::from_master`].)
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
    fn export_import_round_trip_and_strictness() {
        let a = Keyring::generate().unwrap();
        a.rotate().unwrap();
        let ctx = wrap_context(SubjectId::from(4), 1);
        let w = a.wrap(&[5; 32], &ctx).unwrap();
        a.retire(1).unwrap();
        let text = a.export();
        let b = Keyring::import(&text).unwrap();
        assert_eq!(b.versions(), vec![2]);
        assert_eq!(b.current_version(), 2);
        assert_eq!(*b.unwrap(&w, &ctx).unwrap(), [5; 32]);
        assert!(!b.is_derived(2));
        assert_eq!(&*b.export(), &*text);
        // Version 1 was random and retired: no export holds it any more.
        assert!(text.len() < a.export().len() + 1);
        for bad in [
            "",
            "ppkr1.",
            "ppkr2.AAAA",
            &text[..text.len() - 2],
            &format!("{}=", &*text),
        ] {
            assert!(
                matches!(Keyring::import(bad), Err(KeyError::MalformedKeyring(_))),
                "{bad:?}"
            );
        }
        // A derived keyring exports and imports as derived.
        let d = Keyring::from_master([3; 32], [1, 2]).unwrap();
        let d2 = Keyring::import(&d.export()).unwrap();
        assert!(d2.is_derived(1) && d2.is_derived(2));
    }

    /// Found by the `keyring` fuzz target: versions listed out of order
    /// imported, so one keyring had several texts and `export` did not
    /// give back the text imported.
    #[test]
    fn import_refuses_versions_out_of_order() {
        use base64::Engine as _;
        let body = |versions: &[u32]| {
            let mut raw = vec![0x5a; 32];
            raw.extend_from_slice(&5u32.to_be_bytes());
            raw.extend_from_slice(&(versions.len() as u32).to_be_bytes());
            for v in versions {
                raw.extend_from_slice(&v.to_be_bytes());
                raw.push(0);
            }
            let mut text = String::from(EXPORT_PREFIX);
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode_string(&raw, &mut text);
            text
        };
        let sorted = body(&[2, 3, 5]);
        let k = Keyring::import(&sorted).unwrap();
        assert_eq!(&*k.export(), &sorted);
        for unsorted in [&[3, 2, 5][..], &[2, 5, 3, 5]] {
            assert!(matches!(
                Keyring::import(&body(unsorted)),
                Err(KeyError::MalformedKeyring(_))
            ));
        }
    }

    #[test]
    fn same_master_same_keys() {
        let a = Keyring::from_master([8; 32], [1]).unwrap();
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
