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
//! So the nonce is made from the message itself, as SIV modes do (RFC 5297,
//! RFC 8452): a secret hash of everything sealed, mixed with a random value,
//! then a pseudorandom function of the result. For an envelope whose header
//! (with the nonce still zero) and plaintext are `E`, sealed at `time`
//! (nanoseconds, the custodian's clock), with random value `r` (12 bytes
//! from a pool the operating system fills):
//!
//! ```text
//! h     = H_k(E ‖ time)                       a polynomial hash modulo 2⁶¹ − 1 (crypto/poly.rs)
//! x     = r ⊕ (0³² ‖ h)                       96 bits
//! nonce = first 12 bytes of AES-256(k₂, x ‖ 1) ‖ AES-256(k₂, x ‖ 2) ‖ AES-256(k₂, x ‖ 3)
//! ```
//!
//! where `k` and `k₂` are random per custodian and `AES-256(k₂, ·)` is the
//! raw block function (through `ring`'s QUIC header protection, which
//! returns its first five bytes).
//!
//! Why no (key, nonce) pair protects two different messages:
//!
//! - **Within one process**, `r` never repeats (each value is taken once
//!   under the vault's lock) and is never shown, so two seals give the same
//!   `x` only if the top 32 bits of their `r`s agree and the rest differ by
//!   exactly the difference of their hashes: probability 2⁻⁹⁶ per pair,
//!   whatever the messages. Distinct `x`s give independent 96-bit nonces
//!   (AES is a pseudorandom function), also 2⁻⁹⁶ per pair: the bound of
//!   random nonces, so the per-key message limit of the [`crypto`](super)
//!   module is unchanged.
//! - **Across processes that share the pool** (same `r`), two seals give the
//!   same `x` only if their hashes agree: for two different inputs of `L`
//!   limbs (7 bytes each), probability at most `(L + 2) / (2⁶¹ − 1)` — below
//!   2⁻⁵² for a 1 KiB plaintext — because `k` is never revealed: only AES
//!   outputs of `x` are shown, and `x` hides `h` behind `r` anyway.
//! - So a nonce repeats under one key only when everything sealed repeats:
//!   the same random value, the same nanosecond, the same header, the same
//!   plaintext. Then the envelope itself is the same, byte for byte, and two
//!   equal envelopes give away nothing that one does not. (Across processes
//!   sharing a pool, the time differs unless both seal in the same
//!   nanosecond, or under a clock that stands still, as a test's may.)
//!
//! This holds however the processes came to share memory, without detecting
//! it, so no system call is made per seal (the process-id check this replaces
//! cost one). The hash reads the plaintext once, in place.
//!
//! The pool still matters for randomness: two seals of one value are
//! different envelopes. A child that shares the pool gets the parent's
//! random values, which the argument above does not rely on.

use ring::aead::quic::{HeaderProtectionKey, AES_256};
use ring::rand::SecureRandom;
use zeroize::Zeroize;

use super::aead::NONCE_LEN;
use super::poly::Poly61;
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

/// The two keys of the synthetic nonce (see the module docs).
pub(crate) struct NonceKeys {
    hash: Poly61,
    prf: HeaderProtectionKey,
}

impl NonceKeys {
    /// Fresh random keys.
    pub(crate) fn generate() -> Result<Self, Error> {
        let mut bytes = super::random_array::<64>()?;
        let mut hash_key = [0u8; 32];
        hash_key.copy_from_slice(&bytes[..32]);
        let hash = Poly61::new(&hash_key);
        hash_key.zeroize();
        let prf = HeaderProtectionKey::new(&AES_256, &bytes[32..]);
        bytes.zeroize();
        Ok(NonceKeys {
            hash,
            prf: prf.map_err(|_| Error::Random)?,
        })
    }

    /// The nonce for sealing `sealed` (the header, its nonce still zero,
    /// then the plaintext) at `time` (nanoseconds, the custodian's clock),
    /// from the pool's random value `random`.
    #[inline]
    pub(crate) fn nonce(
        &self,
        random: [u8; NONCE_LEN],
        time: u64,
        sealed: &[u8],
    ) -> Result<[u8; NONCE_LEN], Error> {
        let h = self.hash.hash(sealed, &[time, time >> 56]);
        let mut sample = [0u8; 16];
        sample[..NONCE_LEN].copy_from_slice(&random);
        for (x, m) in sample[4..NONCE_LEN].iter_mut().zip(h.to_be_bytes()) {
            *x ^= m;
        }
        let mut nonce = [0u8; 15];
        for (i, chunk) in nonce.chunks_exact_mut(5).enumerate() {
            sample[15] = i as u8 + 1;
            chunk.copy_from_slice(&self.prf.new_mask(&sample).map_err(|_| Error::Random)?);
        }
        sample.zeroize();
        let mut out = [0u8; NONCE_LEN];
        out.copy_from_slice(&nonce[..NONCE_LEN]);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A5: two processes with one pool (same random value) and different
    /// messages or times never get one nonce; identical inputs do (and then
    /// make identical envelopes).
    #[test]
    fn a5_a_shared_random_value_gives_distinct_nonces_to_distinct_inputs() {
        let keys = NonceKeys::generate().unwrap();
        let r = [7u8; NONCE_LEN];
        let sealed = b"header of 49 bytes, nonce zero.................ada@example.com";
        let base = keys.nonce(r, 5, sealed).unwrap();
        assert_eq!(base, keys.nonce(r, 5, sealed).unwrap());
        let mut other_header = *sealed;
        other_header[3] ^= 1;
        let long = vec![3u8; 4096];
        let mut long2 = long.clone();
        long2[1000] ^= 1;
        let variants = [
            keys.nonce(
                r,
                5,
                b"header of 49 bytes, nonce zero.................bob@example.com",
            )
            .unwrap(),
            keys.nonce(r, 6, sealed).unwrap(),
            keys.nonce(r, 5 + (1 << 56), sealed).unwrap(),
            keys.nonce(r, 5, &other_header).unwrap(),
            keys.nonce([8; NONCE_LEN], 5, sealed).unwrap(),
            keys.nonce(r, 5, &sealed[..sealed.len() - 1]).unwrap(),
            keys.nonce(r, 5, &long).unwrap(),
            keys.nonce(r, 5, &long2).unwrap(),
        ];
        let mut all = std::collections::HashSet::from([base]);
        for v in variants {
            assert!(all.insert(v), "two inputs gave one nonce");
        }
        // Many messages under one random value: all nonces distinct.
        let many: std::collections::HashSet<_> = (0..10_000u32)
            .map(|i| keys.nonce(r, 5, &i.to_be_bytes()).unwrap())
            .collect();
        assert_eq!(many.len(), 10_000);
    }

    #[test]
    fn other_keys_give_other_nonces() {
        let (a, b) = (
            NonceKeys::generate().unwrap(),
            NonceKeys::generate().unwrap(),
        );
        let r = [7u8; NONCE_LEN];
        assert_ne!(a.nonce(r, 5, b"x").unwrap(), b.nonce(r, 5, b"x").unwrap());
    }
}
