//! Arbitrary bytes as sealed envelopes: parse as several kinds, as bytes and
//! as text, and open whatever parses. Any outcome but a panic is fine.
//!
//! ```text
//! cargo +nightly fuzz run envelope
//! ```
//!
//! The seed corpus is `fuzz/corpus/envelope/`; `tests/fuzz_corpus.rs` replays
//! it (and any saved crash in `fuzz/artifacts/envelope/`) on stable.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    privacy_pledge_fuzz::check(data);
});
