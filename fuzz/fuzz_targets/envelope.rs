//! The `envelope` target: see `privacy_pledge_fuzz::envelope` for what it
//! decodes and the properties it checks. `scripts/fuzz envelope` runs it.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    privacy_pledge_fuzz::envelope::check(data);
});
