//! A secret almost-universal hash: polynomial evaluation modulo the prime
//! 2⁶¹ − 1 at a secret point (the Carter–Wegman construction).
//!
//! The input is read as limbs below 2⁵⁶: its length, then its bytes seven at
//! a time (little-endian, the last limb zero-padded), then any extra limbs
//! the caller adds. Limbs `m₁ … m_L` hash to
//!
//! ```text
//! H_k(m) = m₁·k^L + m₂·k^(L−1) + … + m_L·k   (mod 2⁶¹ − 1)
//! ```
//!
//! For two different inputs the difference of their polynomials is a
//! nonzero polynomial of degree at most `L` (the leading length limb makes
//! inputs of different lengths differ in a coefficient), which has at most
//! `L` roots: the two collide for at most `L` of the 2⁶¹ − 1 keys, so with
//! probability at most `L / (2⁶¹ − 1)` over a random key. That bound holds
//! only while nothing about the key is revealed: callers never show a hash,
//! only what a pseudorandom function or a MAC made of it (see the nonce
//! module and the keyed audit stream).

/// The prime 2⁶¹ − 1.
const P: u64 = (1 << 61) - 1;
/// The low 56 bits: one limb.
const LIMB: u64 = (1 << 56) - 1;

/// The hash under one secret key (see the module docs); the key and its
/// powers are wiped when dropped.
#[derive(zeroize::Zeroize, zeroize::ZeroizeOnDrop)]
pub(crate) struct Poly61 {
    k: u64,
    /// `k⁸, k⁷, …, k`: the weights of one round's eight limbs.
    powers: [u64; 8],
}

/// `x mod p` as a value `≤ p`, for `x < 2¹²⁴`.
#[inline]
fn reduce(x: u128) -> u64 {
    let a = (x as u64 & P) + (x >> 61) as u64;
    let a = (a & P) + (a >> 61);
    if a >= P {
        a - P
    } else {
        a
    }
}

#[inline]
fn mul(a: u64, b: u64) -> u128 {
    u128::from(a) * u128::from(b)
}

impl Poly61 {
    /// The hash at the point given by the first 8 bytes of `key` (reduced
    /// below 2⁶¹; the bias is below 2⁻⁶⁰).
    pub(crate) fn new(key: &[u8; 32]) -> Self {
        let mut first = [0u8; 8];
        first.copy_from_slice(&key[..8]);
        let k = u64::from_le_bytes(first) & P;
        let mut powers = [k; 8];
        for i in (0..7).rev() {
            powers[i] = reduce(mul(powers[i + 1], k));
        }
        Poly61 { k, powers }
    }

    /// One Horner step: `(h + m) · k`.
    #[inline]
    fn step(&self, h: u64, m: u64) -> u64 {
        reduce(mul(h + m, self.k))
    }

    /// The hash of `data` followed by the `extra` limbs (each below 2⁵⁶).
    #[inline]
    pub(crate) fn hash(&self, data: &[u8], extra: &[u64]) -> u64 {
        let mut h = self.step(0, data.len() as u64 & LIMB);
        let mut rest = data;
        // Eight limbs a round, their products independent of each other:
        // eight Horner steps are (h + m₁)k⁸ + m₂k⁷ + … + m₈k. The sum stays
        // below 2¹²⁴ (one term below 2¹²³, seven below 2¹¹⁷): one reduction
        // a round.
        while rest.len() >= 57 {
            let limb = |i: usize| {
                let mut w = [0u8; 8];
                w.copy_from_slice(&rest[7 * i..7 * i + 8]);
                u64::from_le_bytes(w) & LIMB
            };
            let mut sum = mul(h + limb(0), self.powers[0]);
            for i in 1..8 {
                sum += mul(limb(i), self.powers[i]);
            }
            h = reduce(sum);
            rest = &rest[56..];
        }
        while let Some((word, _)) = rest.split_first_chunk::<8>() {
            h = self.step(h, u64::from_le_bytes(*word) & LIMB);
            rest = &rest[7..];
        }
        for chunk in rest.chunks(7) {
            let mut limb = [0u8; 8];
            limb[..chunk.len()].copy_from_slice(chunk);
            h = self.step(h, u64::from_le_bytes(limb));
        }
        for &m in extra {
            h = self.step(h, m & LIMB);
        }
        if h == P {
            0
        } else {
            h
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Against a slow reference (u128 arithmetic, powers one by one), on
    /// lengths that end at every limb offset and cross the four-limb rounds.
    #[test]
    fn is_the_polynomial() {
        let key: [u8; 32] = core::array::from_fn(|i| (i * 29 + 3) as u8);
        let h = Poly61::new(&key);
        let p = u128::from(P);
        for len in 0..200usize {
            let data: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
            let extra = [len as u64 * 3, (1 << 56) - 1];
            let mut limbs = vec![len as u128];
            for c in data.chunks(7) {
                let mut l = [0u8; 16];
                l[..c.len()].copy_from_slice(c);
                limbs.push(u128::from_le_bytes(l));
            }
            limbs.extend(extra.iter().map(|&m| u128::from(m)));
            let k = u128::from(h.k);
            assert_eq!(h.powers[7], h.k);
            let n = limbs.len();
            let mut want = 0u128;
            for (i, m) in limbs.iter().enumerate() {
                let mut power = 1u128;
                for _ in 0..(n - i) {
                    power = power * k % p;
                }
                want = (want + m * power) % p;
            }
            assert_eq!(u128::from(h.hash(&data, &extra)), want, "len {len}");
        }
    }

    #[test]
    fn lengths_and_keys_matter() {
        let a = Poly61::new(&[1; 32]);
        let b = Poly61::new(&[2; 32]);
        assert_ne!(a.hash(b"", &[]), a.hash(&[0], &[]));
        assert_ne!(a.hash(&[0; 7], &[]), a.hash(&[0; 8], &[]));
        assert_ne!(a.hash(b"ada", &[]), b.hash(b"ada", &[]));
        assert_ne!(a.hash(b"ada", &[1]), a.hash(b"ada", &[2]));
    }
}
