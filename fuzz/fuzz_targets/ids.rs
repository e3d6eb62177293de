//! The `ids` target: see `privacy_pledge_fuzz::ids` for what it decodes and
//! the properties it checks. `scripts/fuzz ids` runs it.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    privacy_pledge_fuzz::ids::check(data);
});
