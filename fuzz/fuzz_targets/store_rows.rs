//! The `store_rows` target: see `privacy_pledge_fuzz::store_rows` for what it decodes and
//! the properties it checks. `scripts/fuzz store_rows` runs it.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    privacy_pledge_fuzz::store_rows::check(data);
});
