//! `KeyStore::insert_noting` as every store that keeps notes must answer
//! it (the crate's stores), played against one store.

use privacy_pledge::crypto::{KeyStore, KeyStoreError, LookupRef, StoredKey, SubjectKeys, Wrapped};
use privacy_pledge::data::Kind;
use privacy_pledge::time::Timestamp;
use privacy_pledge::SubjectId;

fn key(generation: u32) -> StoredKey {
    StoredKey {
        generation,
        wrapped: Wrapped {
            kek_version: 1,
            bytes: vec![generation as u8; 60],
        },
        uses: 64,
    }
}

fn token(n: u8) -> LookupRef {
    LookupRef {
        lookup: Kind::EmailAddress,
        token: [n; 32],
    }
}

/// A new key and its notes are stored together, with the use count given;
/// an existing generation or an erased subject (A5: another process erased
/// it) is refused with nothing stored and nothing noted.
pub fn insert_noting_is_one_write(keys: &dyn KeyStore) {
    let ada = SubjectId::random();
    assert!(keys
        .insert_noting(ada, key(0), &[token(1), token(2)])
        .unwrap());
    let SubjectKeys::Live(stored) = keys.load(ada).unwrap() else {
        panic!("ada has a key");
    };
    assert_eq!(stored, vec![key(0)]);
    let listed = keys.to_destroy(ada).unwrap().unwrap();
    assert_eq!(listed.lookup_tokens.len(), 2);
    // The generation exists: refused, and the new token is not noted.
    assert!(matches!(
        keys.insert_noting(ada, key(0), &[token(3)]),
        Err(KeyStoreError::Conflict(_))
    ));
    assert_eq!(
        keys.to_destroy(ada).unwrap().unwrap().lookup_tokens.len(),
        2
    );

    // Erased elsewhere before its first key: nothing stored, nothing noted.
    let bob = SubjectId::random();
    keys.destroy(bob, Timestamp::from_unix_seconds(9)).unwrap();
    assert!(matches!(
        keys.insert_noting(bob, key(0), &[token(4)]),
        Err(KeyStoreError::Conflict(_))
    ));
    assert!(matches!(
        keys.load(bob).unwrap(),
        SubjectKeys::Erased { .. }
    ));
}
