//! Encryption at rest (rules R6, R9, R11): sealed envelopes, per-subject data
//! keys, key rotation, erasure by key destruction, and keyed pseudonyms.
//!
//! Every subject gets its own 256-bit data key. Values are sealed under it with
//! AES-256-GCM (or ChaCha20-Poly1305) and a random 96-bit nonce, bound to
//! subject, data kind and purpose. The data key is stored only *wrapped* by a
//! key-encryption key from a [`KeyProvider`] (the local [`Keyring`], an HSM
//! through `Pkcs11Provider` with the feature `pkcs11`, or a host's KMS), in a [`KeyStore`] the host chooses. Destroying a subject's
//! wrapped keys makes every envelope of that subject unreadable, wherever
//! copies of it lie (crypto-shredding).
//!
//! ```
//! use privacy_pledge::{Custodian, Error, PersonalInfo, SubjectId};
//! use privacy_pledge::data::PhoneNumber;
//! use privacy_pledge::purpose::Support;
//!
//! let custodian = Custodian::in_memory();
//! let subject = SubjectId::random();
//! let phone: PersonalInfo<PhoneNumber, Support> =
//!     PersonalInfo::collect(subject, PhoneNumber::parse("+1 415 555 0132")?);
//! let sealed = custodian.seal(&phone)?;
//! assert!(custodian.open(&sealed).is_ok());
//!
//! let receipt = custodian.erase(subject)?;
//! assert_eq!(receipt.generations(), &[0]);
//! assert!(matches!(custodian.open(&sealed), Err(Error::Erased { .. })));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Limits
//!
//! With random 96-bit nonces, NIST SP 800-38D allows at most 2³² messages per
//! key. The custodian counts seals per subject key in the key store (reserved
//! in blocks, so the count survives restarts) and starts a new key generation
//! at [`DEFAULT_MESSAGE_LIMIT`] = 2²⁸ seals, where the chance of any nonce
//! repeating is below 2⁻⁴¹. Whoever edits the database can set that count
//! back (A2): a process that finds it lower than its own last reservation
//! of the generation takes the generation as spent and starts the next,
//! but a count set back before a restart, or between two processes'
//! reservations, is not seen. Nor is a fork: a child made while this
//! process holds a reservation of a subject's generation seals from the
//! same block as the parent, uncounted, so each fork can add up to a
//! block (1,024 seals) per subject it inherited a reservation of to that
//! generation's count. (Checking the process id on every seal would cost a
//! system call, about 140 ns on the measuring machine.) What keeps nonces
//! apart then is that they are synthetic (below), not random.
//!
//! Nonces are synthetic (see `nonce.rs`): a pseudorandom function of a
//! keyed hash of everything sealed — a random value from a pool the
//! operating system fills in blocks of 4 KiB, the time in nanoseconds, the
//! header and the plaintext — so a nonce repeats under a key only if all of
//! that repeats, and then the envelope is the same byte for byte. That holds
//! in any process that inherits this one's memory (a child made by `fork`,
//! `_Fork` or a raw `clone`, a fork of a fork, a grandchild given its dead
//! grandparent's process id), with no check of the process id per seal
//! (`tests/fork_nonces.rs`).
//!
//! `ring` expands AES and ChaCha keys into internal schedules that it does not
//! wipe on drop; the raw key bytes this crate handles are wiped.
//!
//! # Backups of the key store
//!
//! A copy of the key store taken before an erasure still holds the erased
//! subject's key, wrapped under the key-encryption-key version of its time.
//! [`Custodian::rotate_after_erasures`](crate::Custodian::rotate_after_erasures)
//! closes that window in one call: a new random version, saved to the host's
//! [`KeyringStore`] first, every live key rewrapped under it, the old
//! versions wiped. A [`KekState`] floor in the key store fences out keys
//! another process would wrap under an old version meanwhile.
//!
//! # Several custodians, one key store
//!
//! Each custodian caches unwrapped subject keys and asks the key store again
//! once a cached key is older than 30 seconds
//! ([`CustodianBuilder::key_revalidate_after`](crate::CustodianBuilder::key_revalidate_after)).
//! An erasure by one custodian therefore takes effect at once in that
//! custodian and within that window in the others; set the window to 0 where
//! that matters more than speed.

mod aead;
mod envelope;
mod keyring;
mod keyring_file;
pub(crate) mod keyring_store;
mod lookup;
mod nonce;
#[cfg(feature = "pkcs11")]
mod pkcs11;
pub(crate) mod poly;
mod pseudonym;
mod store;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) use store::erased_conflict;
pub(crate) mod vault;

use std::borrow::Cow;

pub use aead::Algorithm;
pub use envelope::{EnvelopeError, Sealed, FORMAT_VERSION};
pub use keyring::{KeyProvider, Keyring, Wrapped};
pub use keyring_file::KeyringFile;
pub use keyring_store::{KeyringStore, MemoryKeyringStore};
pub use lookup::{InvalidLookupToken, LookupKey, LookupRef, LookupToken};
#[cfg(feature = "pkcs11")]
pub use pkcs11::{Pkcs11Config, Pkcs11Provider};
pub use pseudonym::{InvalidPseudonym, Pseudonym, PseudonymKey, PseudonymRef};
pub use store::{
    Destroyed, KekState, KeyStore, KeyStoreError, MemoryKeyStore, StoredKey, SubjectKeys,
};

pub(crate) use keyring::wrap_context;

/// Seals per subject data key before a new generation starts: 2²⁸.
pub const DEFAULT_MESSAGE_LIMIT: u64 = 1 << 28;

/// A key could not be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The envelope names a key generation the key store does not hold.
    #[error("no data key {key_id} for the subject")]
    UnknownKey {
        /// The subject.
        subject: crate::SubjectId,
        /// The key id (generation) from the envelope.
        key_id: u32,
    },
    /// The key-encryption-key version was retired or never existed.
    #[error("key-encryption-key version {version} is retired or unknown")]
    Retired {
        /// The version.
        version: u32,
    },
    /// The version still wraps stored keys (or is current) and cannot be retired.
    #[error("key-encryption-key version {version} still wraps {keys} stored key(s) or is current: rewrap first")]
    InUse {
        /// The version.
        version: u32,
        /// How many stored keys depend on it.
        keys: usize,
    },
    /// The provider cannot do this (e.g. retire), or the version is invalid.
    #[error("the key provider does not support this for version {version}")]
    Unsupported {
        /// The version.
        version: u32,
    },
    /// A wrapped key failed to unwrap (altered, or moved to another subject).
    #[error("a wrapped data key failed to unwrap")]
    Unwrap,
    /// The subject's key generations are exhausted.
    #[error("the subject's data-key generations are exhausted")]
    Exhausted,
    /// The random generator failed.
    #[error("the system random generator failed")]
    Random,
    /// An exported keyring's text is malformed (a typed parse error; the
    /// text is never echoed).
    #[error("not an exported keyring: {0}")]
    MalformedKeyring(&'static str),
    /// A provider-specific failure (e.g. the KMS is unreachable).
    #[error("key provider failed: {0}")]
    Provider(Cow<'static, str>),
    /// The keyring in the host's [`KeyringStore`] is not the one this
    /// rotation extended or last saved: another process saved one since (it
    /// rotated, or took over and finished this rotation after its claim
    /// lapsed). Nothing was saved over it, so no version another rotation
    /// retired comes back; the keyring is reloaded from the store on its
    /// next use, and the rotation can be run again.
    #[error("the keyring in the secret store changed since this rotation read it (another process saved one): nothing was saved over it")]
    StoredKeyringChanged,
    /// Another rotation of the key-encryption keys is under way (in another
    /// process sharing the key store): try again once it is done. One whose
    /// process stopped holds until its claim has gone unrenewed for
    /// [`ROTATION_LEASE_SECONDS`](crate::custodian::ROTATION_LEASE_SECONDS).
    #[error("a rotation to key-encryption-key version {version} is under way since {since}: try again once it is done")]
    RotationInProgress {
        /// The version it rotates to.
        version: u32,
        /// When it was claimed.
        since: crate::time::Timestamp,
    },
}

/// `N` random bytes from the operating system.
pub(crate) fn random_array<const N: usize>() -> Result<[u8; N], crate::Error> {
    use ring::rand::SecureRandom;
    let mut out = [0u8; N];
    ring::rand::SystemRandom::new()
        .fill(&mut out)
        .map_err(|_| crate::Error::Random)?;
    Ok(out)
}
