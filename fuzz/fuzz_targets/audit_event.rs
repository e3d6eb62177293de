//! The `audit_event` target: see `privacy_pledge_fuzz::audit_event` for what it decodes and
//! the properties it checks. `scripts/fuzz audit_event` runs it.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    privacy_pledge_fuzz::audit_event::check(data);
});
