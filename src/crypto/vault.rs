//! The engine behind `Custodian::seal`, `open`, `erase` and `pseudonym`:
//! data-key cache, nonce pool, sealing and opening.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use ring::rand::SecureRandom;
use zeroize::{Zeroize, Zeroizing};

use super::aead::{AeadKey, Algorithm, NONCE_LEN, TAG_LEN};
use super::envelope::{aad, Header, BOUND_LEN, HEADER_LEN};
use super::{
    wrap_context, Destroyed, KeyError, KeyProvider, KeyStore, Pseudonym, PseudonymKey, StoredKey,
    SubjectKeys,
};
use crate::data::DataKind;
use crate::subject::SubjectId;
use crate::time::Timestamp;
use crate::Error;

/// Tunables, set through the custodian builder.
#[derive(Clone, Copy, Debug)]
pub(crate) struct VaultConfig {
    pub(crate) algorithm: Algorithm,
    pub(crate) padding: bool,
    pub(crate) message_limit: u64,
    pub(crate) reserve_block: u64,
    pub(crate) cache_capacity: usize,
}

impl Default for VaultConfig {
    fn default() -> Self {
        VaultConfig {
            algorithm: Algorithm::Aes256Gcm,
            padding: false,
            message_limit: super::DEFAULT_MESSAGE_LIMIT,
            reserve_block: 1024,
            cache_capacity: 65_536,
        }
    }
}

/// A pool of random nonces, filled from the OS generator a block at a time:
/// one syscall serves hundreds of seals.
struct NoncePool {
    state: Mutex<(Box<[u8; POOL]>, usize)>,
    rng: ring::rand::SystemRandom,
}

const POOL: usize = NONCE_LEN * 341;

impl NoncePool {
    fn new() -> Self {
        NoncePool {
            state: Mutex::new((Box::new([0u8; POOL]), POOL)),
            rng: ring::rand::SystemRandom::new(),
        }
    }

    fn next(&self) -> Result<[u8; NONCE_LEN], Error> {
        let mut g = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let (buf, pos) = &mut *g;
        if *pos + NONCE_LEN > POOL {
            self.rng.fill(&mut buf[..]).map_err(|_| Error::Random)?;
            *pos = 0;
        }
        let mut n = [0u8; NONCE_LEN];
        let slot = &mut buf[*pos..*pos + NONCE_LEN];
        n.copy_from_slice(slot);
        slot.zeroize();
        *pos += NONCE_LEN;
        Ok(n)
    }
}

/// What the cache knows of one subject.
struct Slot {
    stored: Vec<StoredKey>,
    ready: Vec<(u32, Algorithm, Arc<AeadKey>)>,
    /// Generation new seals use, and seals left in its reservation.
    current: Option<(u32, u64)>,
}

struct Cache {
    slots: HashMap<SubjectId, Slot>,
    order: VecDeque<SubjectId>,
}

pub(crate) struct Vault {
    provider: Box<dyn KeyProvider>,
    store: Box<dyn KeyStore>,
    pseudonym_key: PseudonymKey,
    config: VaultConfig,
    cache: Mutex<Cache>,
    nonces: NoncePool,
    noted: Mutex<HashSet<(SubjectId, [u8; 32])>>,
}

fn bucket(len: usize) -> usize {
    // Room for the 0x80 marker, then up to the next bucket.
    let n = len + 1;
    match n {
        0..=16 => 16,
        17..=32 => 32,
        33..=64 => 64,
        65..=128 => 128,
        _ => n.div_ceil(256) * 256,
    }
}

fn unpad(pt: &[u8]) -> Result<&[u8], Error> {
    let end = pt.iter().rposition(|b| *b != 0).ok_or(Error::Unauthentic)?;
    if pt[end] != 0x80 {
        return Err(Error::Unauthentic);
    }
    Ok(&pt[..end])
}

impl Vault {
    pub(crate) fn new(
        provider: Box<dyn KeyProvider>,
        store: Box<dyn KeyStore>,
        pseudonym_key: PseudonymKey,
        config: VaultConfig,
    ) -> Self {
        Vault {
            provider,
            store,
            pseudonym_key,
            config,
            cache: Mutex::new(Cache {
                slots: HashMap::new(),
                order: VecDeque::new(),
            }),
            nonces: NoncePool::new(),
            noted: Mutex::new(HashSet::new()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The subject's slot, loading it from the store on a miss.
    fn slot<'c>(&self, cache: &'c mut Cache, subject: SubjectId) -> Result<&'c mut Slot, Error> {
        if !cache.slots.contains_key(&subject) {
            let stored = match self.store.load(subject)? {
                SubjectKeys::Absent => Vec::new(),
                SubjectKeys::Live(keys) => keys,
                SubjectKeys::Erased { at } => {
                    return Err(Error::Erased {
                        subject,
                        at: Some(at),
                    })
                }
            };
            while cache.slots.len() >= self.config.cache_capacity.max(1) {
                match cache.order.pop_front() {
                    Some(old) => {
                        cache.slots.remove(&old);
                    }
                    None => break,
                }
            }
            cache.order.push_back(subject);
            cache.slots.insert(
                subject,
                Slot {
                    stored,
                    ready: Vec::new(),
                    current: None,
                },
            );
        }
        cache
            .slots
            .get_mut(&subject)
            .ok_or(Error::Erased { subject, at: None })
    }

    fn ready_key(
        &self,
        slot: &mut Slot,
        subject: SubjectId,
        generation: u32,
        alg: Algorithm,
    ) -> Result<Arc<AeadKey>, Error> {
        if let Some((_, _, k)) = slot
            .ready
            .iter()
            .find(|(g, a, _)| *g == generation && *a == alg)
        {
            return Ok(k.clone());
        }
        let stored = slot
            .stored
            .iter()
            .find(|k| k.generation == generation)
            .ok_or(KeyError::UnknownKey {
                subject,
                key_id: generation,
            })?;
        let dek = self
            .provider
            .unwrap(&stored.wrapped, &wrap_context(subject, generation))?;
        let key = Arc::new(AeadKey::new(alg, &dek[..])?);
        slot.ready.push((generation, alg, key.clone()));
        Ok(key)
    }

    /// Creates generation `generation` for the subject and stores it.
    fn create(&self, slot: &mut Slot, subject: SubjectId, generation: u32) -> Result<(), Error> {
        let mut dek = super::random_array::<32>()?;
        let wrapped = self.provider.wrap(&dek, &wrap_context(subject, generation));
        dek.zeroize();
        let key = StoredKey {
            generation,
            wrapped: wrapped?,
            uses: 0,
        };
        self.store.insert(subject, key.clone())?;
        slot.stored.push(key);
        Ok(())
    }

    /// The key new seals of this subject use, reserving uses as needed.
    fn seal_key(&self, subject: SubjectId) -> Result<(u32, Arc<AeadKey>), Error> {
        let mut cache = self.lock();
        let slot = self.slot(&mut cache, subject)?;
        let generation = match slot.current {
            Some((g, left)) if left > 0 => {
                slot.current = Some((g, left - 1));
                g
            }
            _ => {
                let block = self.config.reserve_block.max(1);
                let mut g = match (slot.current, slot.stored.iter().map(|k| k.generation).max()) {
                    (Some((g, _)), _) => g,
                    (None, Some(g)) => g,
                    (None, None) => {
                        self.create(slot, subject, 0)?;
                        0
                    }
                };
                loop {
                    let before = self.store.reserve(subject, g, block)?;
                    if before.saturating_add(block) <= self.config.message_limit {
                        break;
                    }
                    // This key has had its share of nonces: start the next generation.
                    g = g.checked_add(1).ok_or(KeyError::Exhausted)?;
                    if !slot.stored.iter().any(|k| k.generation == g) {
                        self.create(slot, subject, g)?;
                    }
                }
                slot.current = Some((g, block - 1));
                g
            }
        };
        let key = self.ready_key(slot, subject, generation, self.config.algorithm)?;
        Ok((generation, key))
    }

    /// Seals `value` and returns the envelope's header and bytes.
    pub(crate) fn seal<T: DataKind>(
        &self,
        subject: SubjectId,
        purpose: u8,
        value: &T,
        collected: Timestamp,
    ) -> Result<(Header, Vec<u8>), Error> {
        let (key_id, key) = self.seal_key(subject)?;
        let header = Header {
            algorithm: self.config.algorithm,
            padded: self.config.padding,
            subject,
            key_id,
            collected: collected.unix_seconds(),
            nonce: self.nonces.next()?,
        };
        let len = value.encoded_len();
        let ct_len = if header.padded { bucket(len) } else { len };
        let ct_len32 = u32::try_from(ct_len).map_err(|_| Error::Unauthentic)?;
        // Allocated once at its final size: the plaintext written below is
        // encrypted in place and never copied elsewhere.
        let mut out = Vec::with_capacity(HEADER_LEN + ct_len + TAG_LEN);
        header.write(ct_len32, &mut out);
        value.encode_into(&mut out);
        if header.padded {
            out.push(0x80);
            out.resize(HEADER_LEN + ct_len, 0);
        }
        debug_assert_eq!(out.len(), HEADER_LEN + ct_len);
        let aad = aad(&out[..BOUND_LEN], T::KIND.code(), purpose);
        let tag = match key.seal(header.nonce, &aad, &mut out[HEADER_LEN..]) {
            Ok(t) => t,
            Err(e) => {
                out.zeroize();
                return Err(e);
            }
        };
        out.extend_from_slice(&tag);
        Ok((header, out))
    }

    /// Checks that the subject's key for this envelope is available (not erased).
    pub(crate) fn check_open(&self, header: &Header) -> Result<Arc<AeadKey>, Error> {
        let mut cache = self.lock();
        let slot = self.slot(&mut cache, header.subject)?;
        match self.ready_key(slot, header.subject, header.key_id, header.algorithm) {
            Err(Error::Key(KeyError::UnknownKey { .. })) => {
                // Another custodian may have started a generation: reload once.
                cache.slots.remove(&header.subject);
                let slot = self.slot(&mut cache, header.subject)?;
                self.ready_key(slot, header.subject, header.key_id, header.algorithm)
            }
            other => other,
        }
    }

    /// Opens an envelope with a key from [`check_open`](Self::check_open).
    pub(crate) fn open<T: DataKind>(
        &self,
        key: &AeadKey,
        header: &Header,
        bytes: &[u8],
        purpose: u8,
    ) -> Result<T, Error> {
        let aad = aad(&bytes[..BOUND_LEN], T::KIND.code(), purpose);
        let mut buf = Zeroizing::new(bytes[HEADER_LEN..].to_vec());
        let pt = key.open(header.nonce, &aad, &mut buf)?;
        let pt = if header.padded { unpad(pt)? } else { pt };
        Ok(T::decode(pt)?)
    }

    /// Destroys the subject's keys (constant work whatever its record count).
    pub(crate) fn erase(&self, subject: SubjectId, at: Timestamp) -> Result<Destroyed, Error> {
        let mut cache = self.lock();
        let destroyed = self.store.destroy(subject, at)?;
        cache.slots.remove(&subject);
        // `order` keeps a stale entry; eviction skips ids with no slot.
        drop(cache);
        self.noted
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|(s, _)| *s != subject);
        Ok(destroyed)
    }

    /// Whether the subject is erased, according to the key store.
    pub(crate) fn is_erased(&self, subject: SubjectId) -> Result<Option<Timestamp>, Error> {
        Ok(match self.store.load(subject)? {
            SubjectKeys::Erased { at } => Some(at),
            _ => None,
        })
    }

    pub(crate) fn pseudonym<T: DataKind>(
        &self,
        subject: SubjectId,
        value: &T,
    ) -> Result<Pseudonym<T>, Error> {
        let p = Pseudonym::compute(&self.pseudonym_key, value);
        let fresh = {
            let mut noted = self.noted.lock().unwrap_or_else(|e| e.into_inner());
            if noted.len() >= self.config.cache_capacity.max(1) * 4 {
                noted.clear();
            }
            noted.insert((subject, *p.as_bytes()))
        };
        if fresh {
            if let Err(e) = self.store.note_pseudonym(subject, p.to_ref()) {
                self.noted
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&(subject, *p.as_bytes()));
                return Err(e.into());
            }
        }
        Ok(p)
    }

    /// Rewraps every stored key under an old version with the current one.
    pub(crate) fn rewrap_from(&self, version: u32) -> Result<usize, Error> {
        let current = self.provider.current_version();
        if version == current {
            return Ok(0);
        }
        let mut moved = 0;
        for (subject, generation) in self.store.wrapped_under(version)? {
            let SubjectKeys::Live(keys) = self.store.load(subject)? else {
                continue;
            };
            let Some(stored) = keys.iter().find(|k| k.generation == generation) else {
                continue;
            };
            let ctx = wrap_context(subject, generation);
            let dek = self.provider.unwrap(&stored.wrapped, &ctx)?;
            let wrapped = self.provider.wrap(&dek, &ctx)?;
            self.store.rewrap(subject, generation, wrapped)?;
            moved += 1;
        }
        // Cached wrapped forms are stale now; keys themselves are unchanged.
        let mut cache = self.lock();
        cache.slots.clear();
        cache.order.clear();
        Ok(moved)
    }

    /// Retires a key-encryption-key version once nothing depends on it.
    pub(crate) fn retire(&self, version: u32) -> Result<(), Error> {
        let users = self.store.wrapped_under(version)?.len();
        if users > 0 || version == self.provider.current_version() {
            return Err(KeyError::InUse {
                version,
                keys: users,
            }
            .into());
        }
        Ok(self.provider.retire(version)?)
    }

    pub(crate) fn config(&self) -> &VaultConfig {
        &self.config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_and_unpad() {
        assert_eq!(bucket(0), 16);
        assert_eq!(bucket(15), 16);
        assert_eq!(bucket(16), 32);
        assert_eq!(bucket(63), 64);
        assert_eq!(bucket(200), 256);
        assert_eq!(bucket(300), 512);
        assert_eq!(unpad(&[1, 2, 0x80, 0, 0]).unwrap(), &[1, 2]);
        assert!(unpad(&[0, 0]).is_err());
        assert!(unpad(&[1, 2]).is_err());
    }

    #[test]
    fn nonce_pool_never_repeats() {
        let pool = NoncePool::new();
        let mut seen = HashSet::new();
        for _ in 0..5_000 {
            assert!(seen.insert(pool.next().unwrap()));
        }
    }
}
