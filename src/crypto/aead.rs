//! The AEAD layer: one place where `ring`'s AEADs are called.

use ring::aead::{self, Aad, LessSafeKey, Nonce, Tag, UnboundKey};
use serde::{Deserialize, Serialize};

use crate::Error;

/// The AEAD algorithm that seals envelopes.
///
/// ```
/// use privacy_pledge::crypto::Algorithm;
/// assert_eq!(Algorithm::default(), Algorithm::Aes256Gcm);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[repr(u8)]
pub enum Algorithm {
    /// AES-256-GCM (the default; hardware-accelerated on most servers).
    #[default]
    Aes256Gcm = 1,
    /// ChaCha20-Poly1305 (fast without AES hardware).
    ChaCha20Poly1305 = 2,
}

impl Algorithm {
    pub(crate) fn ring(self) -> &'static aead::Algorithm {
        match self {
            Algorithm::Aes256Gcm => &aead::AES_256_GCM,
            Algorithm::ChaCha20Poly1305 => &aead::CHACHA20_POLY1305,
        }
    }

    pub(crate) const fn code(self) -> u8 {
        self as u8
    }

    pub(crate) fn from_code(c: u8) -> Option<Self> {
        match c {
            1 => Some(Algorithm::Aes256Gcm),
            2 => Some(Algorithm::ChaCha20Poly1305),
            _ => None,
        }
    }
}

/// Length of a nonce, in bytes.
pub(crate) const NONCE_LEN: usize = 12;
/// Length of a tag, in bytes.
pub(crate) const TAG_LEN: usize = 16;

/// A ready-to-use AEAD key (key schedule expanded once).
pub(crate) struct AeadKey(LessSafeKey);

impl AeadKey {
    /// A key for `alg` from 32 bytes.
    pub(crate) fn new(alg: Algorithm, bytes: &[u8]) -> Result<Self, Error> {
        UnboundKey::new(alg.ring(), bytes)
            .map(|k| AeadKey(LessSafeKey::new(k)))
            .map_err(|_| Error::Unauthentic)
    }

    /// Encrypts `in_out` in place and returns the tag.
    pub(crate) fn seal(
        &self,
        nonce: [u8; NONCE_LEN],
        aad: &[u8],
        in_out: &mut [u8],
    ) -> Result<[u8; TAG_LEN], Error> {
        let tag = self
            .0
            .seal_in_place_separate_tag(Nonce::assume_unique_for_key(nonce), Aad::from(aad), in_out)
            .map_err(|_| Error::Unauthentic)?;
        let mut out = [0u8; TAG_LEN];
        out.copy_from_slice(tag.as_ref());
        Ok(out)
    }

    /// Decrypts `in_out` (ciphertext followed by tag) in place; returns the plaintext part.
    pub(crate) fn open<'a>(
        &self,
        nonce: [u8; NONCE_LEN],
        aad: &[u8],
        in_out: &'a mut [u8],
    ) -> Result<&'a mut [u8], Error> {
        self.0
            .open_in_place(Nonce::assume_unique_for_key(nonce), Aad::from(aad), in_out)
            .map_err(|_| Error::Unauthentic)
    }

    /// Decrypts `in_out` (the ciphertext alone, its tag passed apart) in
    /// place, so the plaintext lands in a buffer of exactly its length. On
    /// failure `ring` has zeroed `in_out`; callers wipe it all the same.
    pub(crate) fn open_separate_tag(
        &self,
        nonce: [u8; NONCE_LEN],
        aad: &[u8],
        tag: [u8; TAG_LEN],
        in_out: &mut [u8],
    ) -> Result<(), Error> {
        self.0
            .open_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                Tag::from(tag),
                in_out,
                0..,
            )
            .map(|_| ())
            .map_err(|_| Error::Unauthentic)
    }
}

#[cfg(test)]
mod wycheproof_vectors {
    //! Published AEAD test vectors through this layer: every valid vector
    //! decrypts to its message and encrypts to its ciphertext and tag; every
    //! invalid one is rejected.
    use super::*;
    use wycheproof::aead::{TestName, TestSet};
    use wycheproof::TestResult;

    fn run(name: TestName, alg: Algorithm) -> (usize, usize) {
        let set = TestSet::load(name).expect("vectors ship with the crate");
        let (mut checked, mut skipped) = (0, 0);
        for group in set.test_groups {
            let usable = group.key_size == 256 && group.nonce_size == 96 && group.tag_size == 128;
            for t in group.tests {
                if !usable {
                    skipped += 1;
                    continue;
                }
                let key = AeadKey::new(alg, &t.key).unwrap();
                let nonce: [u8; NONCE_LEN] = t.nonce.as_ref().try_into().unwrap();
                let mut buf = t.ct.to_vec();
                buf.extend_from_slice(&t.tag);
                let opened = key.open(nonce, &t.aad, &mut buf).map(|p| p.to_vec());
                // The same through the separate-tag path `Vault::open` uses.
                let mut ct = t.ct.to_vec();
                let tag: Option<[u8; TAG_LEN]> = t.tag.as_ref().try_into().ok();
                let separate = tag
                    .ok_or(Error::Unauthentic)
                    .and_then(|tag| key.open_separate_tag(nonce, &t.aad, tag, &mut ct))
                    .map(|()| ct);
                assert_eq!(
                    opened.as_deref().ok(),
                    separate.as_deref().ok(),
                    "tc {}",
                    t.tc_id
                );
                match t.result {
                    TestResult::Valid | TestResult::Acceptable => {
                        assert_eq!(opened.as_deref().ok(), Some(&t.pt[..]), "tc {}", t.tc_id);
                        let mut pt = t.pt.to_vec();
                        let tag = key.seal(nonce, &t.aad, &mut pt).unwrap();
                        assert_eq!(&pt[..], &t.ct[..], "tc {}", t.tc_id);
                        assert_eq!(&tag[..], &t.tag[..], "tc {}", t.tc_id);
                    }
                    TestResult::Invalid => {
                        assert!(opened.is_err(), "invalid tc {} opened", t.tc_id)
                    }
                }
                checked += 1;
            }
        }
        (checked, skipped)
    }

    #[test]
    fn aes_256_gcm() {
        let (checked, _) = run(TestName::AesGcm, Algorithm::Aes256Gcm);
        assert!(checked > 50, "only {checked} vectors checked");
    }

    #[test]
    fn chacha20_poly1305() {
        let (checked, _) = run(TestName::ChaCha20Poly1305, Algorithm::ChaCha20Poly1305);
        assert!(checked > 50, "only {checked} vectors checked");
    }
}
