//! The peer benchmark lives in `benches/peers.rs`; this library is empty.
