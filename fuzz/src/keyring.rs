//! `keyring`: `Keyring::import`, the text a host keeps its keyring in.
//!
//! The first byte picks the form: even, the rest is the text as given
//! (lossy UTF-8); odd, the rest is the raw keyring body, sent through the
//! export encoding (`ppkr1.` and unpadded URL-safe base64) so that
//! mutations reach the body's structure (master, current version, count,
//! versions and their tags) instead of dying in base64.
//!
//! Properties, beyond "no panic":
//! - import is strict: a keyring that imports exports to exactly the text
//!   it was imported from;
//! - what imports is well formed: live versions are distinct and non-zero,
//!   and importing its export again gives the same versions and master.

use base64::Engine as _;
use privacy_pledge::crypto::Keyring;

/// The prefix of exported keyrings.
pub const PREFIX: &str = "ppkr1.";

/// Runs `Keyring::import` on the text `data` stands for. Returns whether it
/// imported. Panics only on a broken property.
pub fn check(data: &[u8]) -> bool {
    let Some((&form, rest)) = data.split_first() else {
        return false;
    };
    let text = if form % 2 == 0 {
        String::from_utf8_lossy(rest).into_owned()
    } else {
        let mut t = String::from(PREFIX);
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode_string(rest, &mut t);
        t
    };
    let Ok(keyring) = Keyring::import(&text) else {
        return false;
    };
    let exported = keyring.export();
    assert_eq!(exported.as_str(), text.as_str(), "import is not strict");
    let versions = keyring.versions();
    assert!(!versions.is_empty());
    assert!(versions.windows(2).all(|w| w[0] < w[1]));
    assert!(!versions.contains(&0));
    let again = Keyring::import(exported.as_str()).expect("own export imports");
    assert_eq!(again.versions(), versions);
    assert_eq!(again.expose_master(), keyring.expose_master());
    true
}
