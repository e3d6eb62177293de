//! The `checkpoint` target: see `privacy_pledge_fuzz::checkpoint` for what it decodes and
//! the properties it checks. `scripts/fuzz checkpoint` runs it.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    privacy_pledge_fuzz::checkpoint::check(data);
});
