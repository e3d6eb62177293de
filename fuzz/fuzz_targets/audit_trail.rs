//! The `audit_trail` target: see `privacy_pledge_fuzz::audit_trail` for what it decodes and
//! the properties it checks. `scripts/fuzz audit_trail` runs it.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    privacy_pledge_fuzz::audit_trail::check(data);
});
