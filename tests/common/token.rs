//! The SoftHSM2 token `scripts/softhsm` sets up for the PKCS#11 tests
//! (`scripts/test` runs it).

/// Where the token is and how to log in to it.
pub struct Token {
    pub module: String,
    pub label: String,
    pub pin: String,
}

/// The token `scripts/softhsm` set up, or `None` (and a loud SKIPPED).
/// Under `CI` a missing token is a failure, never a silent skip.
pub fn token(test: &str) -> Option<Token> {
    let (Ok(module), Ok(label), Ok(pin)) = (
        std::env::var("PP_TEST_PKCS11_MODULE"),
        std::env::var("PP_TEST_PKCS11_TOKEN"),
        std::env::var("PP_TEST_PKCS11_PIN"),
    ) else {
        assert!(
            std::env::var_os("CI").is_none(),
            "PP_TEST_PKCS11_MODULE is not set under CI: the PKCS#11 tests would not run"
        );
        eprintln!(
            "SKIPPED {test}: PP_TEST_PKCS11_MODULE is not set \
             (run scripts/test or scripts/softhsm, which set up a SoftHSM2 token)"
        );
        return None;
    };
    Some(Token { module, label, pin })
}
