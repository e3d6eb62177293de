//! Envelope nonces that never protect two different messages under one key,
//! whatever processes come to share this process's memory.
//!
//! # Why not random nonces alone
//!
//! AES-GCM under one key with one nonce used for two different messages
//! gives away the XOR of the two plaintexts and the authentication key (and
//! with it a forgery for any message). Random 96-bit nonces are safe only if
//! the randomness is never replayed, and a pool of random bytes in memory is
//! replayed by any process that inherits that memory: a child made by
//! `fork`, by a raw `clone`, a fork of a fork, or a grandchild that is given
//! its dead grandparent's process id (easy in a PID namespace). Checking the
//! process id before each nonce catches the first three but not the last,
//! and nothing cheaper than a system call per seal can tell a process from
//! another that has the same id and the same memory, short of asking the
//! kernel to wipe pages in every child (`MADV_WIPEONFORK`, which needs
//! `unsafe` code this crate forbids).
//!
//! # Synthetic nonces
//!
//! So the nonce is made from the message itself, as AES-GCM-SIV (RFC 8452)
//! does: a keyed hash of everything sealed, then a pseudorandom function of
//! that hash. For an envelope with random value `r` (12 bytes from a pool the
//! operating system fills), associated data `A` (the header before the
//! nonce: version, algorithm, flags, kind, purpose, subject, key generation,
//! collection time, length) and plaintext `P`:
//!
//! ```text
//! T     = AES-256-GCM(key₁, nonce = r, aad = time ‖ A, plaintext = P).tag   (the ciphertext is wiped unused)
//! nonce = first 12 bytes of AES-256(key₂, T ⊕ 1) ‖ AES-256(key₂, T ⊕ 2) ‖ AES-256(key₂, T ⊕ 3)
//! ```
//!
//! where `time` is the wall clock in nanoseconds read for this seal, `key₁`
//! and `key₂` are random per custodian, `T ⊕ i` flips the last byte, and
//! `AES-256(key₂, ·)` is the raw block function (through `ring`'s QUIC header
//! protection, which returns its first five bytes).
//!
//! Why no (key, nonce) pair protects two different messages:
//!
//! - `T` is GHASH of the whole input under a hash key derived from `key₁`,
//!   masked: an almost-XOR-universal hash. Two different inputs give the
//!   same `T` with probability at most about `(n + 1) / 2¹²⁸` for inputs of
//!   `n` blocks, **even when they share `r`**, as two processes with the same
//!   memory do. `T` is never shown: nothing of GHASH's key leaks, even if `r`
//!   repeats.
//! - The nonce is a pseudorandom function (AES) of `T`. Different `T`s give
//!   independent 96-bit nonces: they collide with probability 2⁻⁹⁶ per pair,
//!   the same bound as random nonces (so the per-key message limit of the
//!   [`crypto`](super) module is unchanged).
//! - So a nonce repeats under one key only when everything sealed repeats:
//!   the same random value, the same nanosecond, the same header, the same
//!   plaintext. Then the envelope itself is the same, byte for byte, and two
//!   equal envelopes give away nothing that one does not. Within one process
//!   `r` never repeats (each is taken once under the vault's lock); across
//!   processes sharing a pool, `time` differs unless both seal in the same
//!   nanosecond.
//!
//! This holds however the processes came to share memory, without detecting
//! it, so no system call is made per seal (the process-id check this replaces
//! cost one). The price is one more AES-GCM pass over the plaintext, measured
//! in `benches/seal.rs` (`synthetic_nonce_*`).
//!
//! The pool still matters for randomness: two seals of one value are
//! different envelopes. A child that shares the pool gets the parent's
//! random values, which the argument above does not rely on.

use ring::aead::quic::{HeaderProtectionKey, AES_256};
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use ring::rand::SecureRandom;
use zeroize::Zeroize;

use super::aead::NONCE_LEN;
use super::envelope::AAD_LEN;
use crate::Error;

const POOL: usize = NONCE_LEN * 341;

/// Random values for nonces, filled from the OS generator a block at a
/// time: one system call serves 341 seals. Each value is taken once and wiped
/// from the pool. A process that inherits the pool (see the module docs)
/// replays its values, which the synthetic nonce does not rely on.
pub(crate) struct NoncePool {
    buf: Box<[u8; POOL]>,
    pos: usize,
}

impl NoncePool {
    pub(crate) fn new() -> Self {
        NoncePool {
            buf: Box::new([0u8; POOL]),
            pos: POOL,
        }
    }

    /// The next random value.
    pub(crate) fn next(
        &mut self,
        rng: &ring::rand::SystemRandom,
    ) -> Result<[u8; NONCE_LEN], Error> {
        if self.pos + NONCE_LEN > POOL {
            rng.fill(&mut self.buf[..]).map_err(|_| Error::Random)?;
            self.pos = 0;
        }
        let mut n = [0u8; NONCE_LEN];
        let slot = &mut self.buf[self.pos..self.pos + NONCE_LEN];
        n.copy_from_slice(slot);
        slot.zeroize();
        self.pos += NONCE_LEN;
        Ok(n)
    }
}

/// Plaintexts up to this length are hashed from a copy on the stack (the
/// 1 KiB postal address of the benches included); longer ones from a copy
/// on the heap.
const STACK_COPY: usize = 2048;

/// The two keys of the synthetic nonce (see the module docs).
pub(crate) struct NonceKeys {
    hash: LessSafeKey,
    prf: HeaderProtectionKey,
}

impl NonceKeys {
    /// Fresh random keys.
    pub(crate) fn generate() -> Result<Self, Error> {
        let mut bytes = super::random_array::<64>()?;
        let keys = (|| {
            let hash = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &bytes[..32]).ok()?);
            let prf = HeaderProtectionKey::new(&AES_256, &bytes[32..]).ok()?;
            Some(NonceKeys { hash, prf })
        })();
        bytes.zeroize();
        keys.ok_or(Error::Random)
    }

    /// The nonce for sealing `plaintext` with associated data `aad`, from
    /// the pool's random value `random`.
    pub(crate) fn nonce(
        &self,
        random: [u8; NONCE_LEN],
        aad: &[u8; AAD_LEN],
        plaintext: &[u8],
    ) -> Result<[u8; NONCE_LEN], Error> {
        let time = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
        self.derive(random, time, aad, plaintext)
    }

    /// [`nonce`](Self::nonce) at the given time (nanoseconds).
    pub(crate) fn derive(
        &self,
        random: [u8; NONCE_LEN],
        time: u64,
        aad: &[u8; AAD_LEN],
        plaintext: &[u8],
    ) -> Result<[u8; NONCE_LEN], Error> {
        let mut head = [0u8; 8 + AAD_LEN];
        head[..8].copy_from_slice(&time.to_be_bytes());
        head[8..].copy_from_slice(aad);
        // The hash pass encrypts a copy of the plaintext, wiped after.
        let tag = if plaintext.len() <= STACK_COPY {
            let mut copy = [0u8; STACK_COPY];
            let copy_len = plaintext.len();
            copy[..copy_len].copy_from_slice(plaintext);
            let tag = self.hash_tag(random, &head, &mut copy[..copy_len]);
            copy[..copy_len].zeroize();
            tag
        } else {
            let mut copy = zeroize::Zeroizing::new(plaintext.to_vec());
            self.hash_tag(random, &head, &mut copy)
        }?;
        let mut nonce = [0u8; 15];
        for (i, chunk) in nonce.chunks_exact_mut(5).enumerate() {
            let mut sample = tag;
            sample[15] ^= i as u8 + 1;
            chunk.copy_from_slice(&self.prf.new_mask(&sample).map_err(|_| Error::Random)?);
        }
        let mut out = [0u8; NONCE_LEN];
        out.copy_from_slice(&nonce[..NONCE_LEN]);
        Ok(out)
    }

    fn hash_tag(
        &self,
        random: [u8; NONCE_LEN],
        head: &[u8],
        copy: &mut [u8],
    ) -> Result<[u8; 16], Error> {
        let tag = self
            .hash
            .seal_in_place_separate_tag(Nonce::assume_unique_for_key(random), Aad::from(head), copy)
            .map_err(|_| Error::Random)?;
        let mut t = [0u8; 16];
        t.copy_from_slice(tag.as_ref());
        Ok(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A5: two processes with one pool (same random value) and different
    /// messages, headers or times never get one nonce; identical inputs do
    /// (and then make identical envelopes).
    #[test]
    fn a5_a_shared_random_value_gives_distinct_nonces_to_distinct_inputs() {
        let keys = NonceKeys::generate().unwrap();
        let r = [7u8; NONCE_LEN];
        let aad = [1u8; AAD_LEN];
        let base = keys.derive(r, 5, &aad, b"ada@example.com").unwrap();
        assert_eq!(base, keys.derive(r, 5, &aad, b"ada@example.com").unwrap());
        let mut other_aad = aad;
        other_aad[AAD_LEN - 1] ^= 1;
        let long = vec![3u8; 4 * STACK_COPY];
        let mut long2 = long.clone();
        long2[1000] ^= 1;
        let variants = [
            keys.derive(r, 5, &aad, b"bob@example.com").unwrap(),
            keys.derive(r, 6, &aad, b"ada@example.com").unwrap(),
            keys.derive(r, 5, &other_aad, b"ada@example.com").unwrap(),
            keys.derive([8; NONCE_LEN], 5, &aad, b"ada@example.com")
                .unwrap(),
            keys.derive(r, 5, &aad, b"ada@example.co").unwrap(),
            keys.derive(r, 5, &aad, &long).unwrap(),
            keys.derive(r, 5, &aad, &long2).unwrap(),
        ];
        let mut all = std::collections::HashSet::from([base]);
        for v in variants {
            assert!(all.insert(v), "two inputs gave one nonce");
        }
    }

    #[test]
    fn other_keys_give_other_nonces() {
        let (a, b) = (
            NonceKeys::generate().unwrap(),
            NonceKeys::generate().unwrap(),
        );
        let r = [7u8; NONCE_LEN];
        assert_ne!(
            a.derive(r, 5, &[0; AAD_LEN], b"x").unwrap(),
            b.derive(r, 5, &[0; AAD_LEN], b"x").unwrap()
        );
    }
}
