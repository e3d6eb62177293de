//! The `keyring` target: see `privacy_pledge_fuzz::keyring` for what it decodes and
//! the properties it checks. `scripts/fuzz keyring` runs it.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    privacy_pledge_fuzz::keyring::check(data);
});
