//! The `data_kinds` target: see `privacy_pledge_fuzz::data_kinds` for what it decodes and
//! the properties it checks. `scripts/fuzz data_kinds` runs it.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    privacy_pledge_fuzz::data_kinds::check(data);
});
