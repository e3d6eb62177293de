//! Replays the fuzz corpora on stable: every file of `fuzz/seeds/<target>/`
//! (named seeds), `fuzz/corpus/<target>/` (the minimised corpus the fuzzer
//! grew) and `fuzz/artifacts/<target>/` (any saved crash) goes through the
//! same checks as the fuzz target (`fuzz/src/`, included here), for every
//! target. `scripts/fuzz` runs the targets themselves.
//!
//! The seeds are derived from the frozen vectors and from the crate's own
//! output under a fixed keyring by [`write_seeds`] (`#[ignore]`d; run with
//! `--ignored` only to refresh them).

#[path = "../fuzz/src/lib.rs"]
mod fuzz_logic;

use std::path::{Path, PathBuf};

use fuzz_logic::{
    audit_event, audit_trail, checkpoint, data_kinds, envelope, ids, keyring, seeds, store_rows,
    TARGETS,
};

fn dir(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn files(rel: &str) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir(rel)) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = entries
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    out.sort();
    out
}

/// The named seeds of `target`, as `(file name, bytes)`.
fn seeds_of(target: &str) -> Vec<(String, Vec<u8>)> {
    files(&format!("fuzz/seeds/{target}"))
        .into_iter()
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&p).unwrap())
        })
        .collect()
}

fn seed<'a>(seeds: &'a [(String, Vec<u8>)], name: &str) -> &'a [u8] {
    &seeds
        .iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no seed {name}"))
        .1
}

#[test]
fn every_corpus_and_saved_crash_replays() {
    for (target, check) in TARGETS {
        let seeds = files(&format!("fuzz/seeds/{target}"));
        assert!(seeds.len() >= 4, "{target}: only {} seeds", seeds.len());
        let corpus = files(&format!("fuzz/corpus/{target}"));
        assert!(!corpus.is_empty(), "{target}: no corpus");
        let crashes = files(&format!("fuzz/artifacts/{target}"));
        for path in seeds.iter().chain(&corpus).chain(&crashes) {
            check(&std::fs::read(path).unwrap());
        }
    }
}

#[test]
fn envelope_seeds_do_what_their_names_say() {
    let mut total = envelope::Outcome::default();
    for (name, data) in seeds_of("envelope") {
        let o = envelope::check(&data);
        if name.starts_with("valid-") {
            assert_eq!(o.opened, 1, "{name} should open exactly as its own kind");
        } else {
            assert_eq!(o.opened, 0, "{name} opened");
        }
        total.parsed += o.parsed;
        total.opened += o.opened;
    }
    // The seeds reach every stage: parse failures, parses that do not
    // open, and real opens.
    assert!(total.opened >= 15, "{total:?}");
    assert!(total.parsed > total.opened, "{total:?}");
    for data in [&b""[..], b"\x01", &[0xff; 64], b"AQ", "é\u{0}".as_bytes()] {
        assert_eq!(envelope::check(data).opened, 0);
    }
}

#[test]
fn data_kind_seeds_reach_every_parser() {
    let seeds = seeds_of("data_kinds");
    let accepted: Vec<&str> = seeds
        .iter()
        .filter(|(_, d)| data_kinds::check(d))
        .map(|(n, _)| n.as_str())
        .collect();
    for name in [
        "seed-email",
        "seed-name",
        "seed-phone",
        "seed-postal",
        "seed-token",
        "seed-amount",
        "seed-date",
        "seed-purchase",
    ] {
        assert!(accepted.contains(&name), "{name} was refused");
    }
    assert!(!accepted.contains(&"seed-email-bad"));
    // Every selector byte maps to a parser; none panics on empty input.
    for which in 0..=255u8 {
        data_kinds::check(&[which]);
    }
}

#[test]
fn id_seeds_parse() {
    for (name, data) in seeds_of("ids") {
        let o = ids::check(&data);
        assert!(o.text + o.json > 0, "{name}: nothing accepted {o:?}");
    }
}

#[test]
fn audit_seeds_chain_and_verify() {
    let seeds = seeds_of("audit_event");
    for (name, data) in &seeds {
        let o = audit_event::check(data);
        let want = if name.ends_with("-pair") { 2 } else { 1 };
        assert_eq!(o.events, want, "{name}");
    }
    let seeds = seeds_of("audit_trail");
    let v1 = audit_trail::check(seed(&seeds, "seed-v1"));
    assert!(v1.verified && v1.events > 5, "{v1:?}");
    let st = audit_trail::check(seed(&seeds, "seed-stream"));
    assert!(
        st.streams_verified && st.verified && st.events > 5,
        "{st:?}"
    );
    let cut = audit_trail::check(seed(&seeds, "seed-v1-cut"));
    assert_eq!(cut.events, 0, "a partial last line reads: {cut:?}");
    let mixed = audit_trail::check(seed(&seeds, "seed-mixed"));
    assert_eq!(mixed.events, v1.events + st.events);
    assert!(!mixed.verified && mixed.streams_verified, "{mixed:?}");
}

#[test]
fn checkpoint_seeds_parse_and_verify() {
    let seeds = seeds_of("checkpoint");
    assert!(checkpoint::check(seed(&seeds, "seed-text")).text);
    assert!(checkpoint::check(seed(&seeds, "seed-text-zeros")).text);
    let signed = checkpoint::check(seed(&seeds, "seed-signed"));
    assert!(signed.signed && signed.verified, "{signed:?}");
    // One signature bit flipped: parses, does not verify.
    let mut bad = seed(&seeds, "seed-signed").to_vec();
    let at = bad.len() - 3;
    bad[at] = if bad[at] == b'0' { b'1' } else { b'0' };
    let o = checkpoint::check(&bad);
    assert!(o.signed && !o.verified, "{o:?}");
    assert!(checkpoint::check(seed(&seeds, "seed-slot")).slot);
    // The slot's JSON alone, or a byte of its digest changed: not read.
    let slot = seed(&seeds, "seed-slot");
    assert!(!checkpoint::check(seed(&seeds, "seed-signed")).slot);
    let mut torn = slot.to_vec();
    let at = torn.iter().position(|&b| b == b'\n').unwrap() + 5;
    torn[at] = if torn[at] == b'0' { b'1' } else { b'0' };
    assert!(!checkpoint::check(&torn).slot);
}

#[test]
fn keyring_seeds_import() {
    let seeds = seeds_of("keyring");
    for name in ["seed-derived", "seed-rotated", "seed-raw"] {
        assert!(keyring::check(seed(&seeds, name)), "{name}");
    }
    assert!(!keyring::check(seed(&seeds, "seed-wrong-prefix")));
}

#[test]
fn store_row_seeds_reach_every_read() {
    let seeds = seeds_of("store_rows");
    let consents = store_rows::check(seed(&seeds, "seed-consents"));
    assert_eq!(consents.live_consents, 1, "{consents:?}");
    let moved = store_rows::check(seed(&seeds, "seed-consent-moved"));
    assert_eq!(moved.live_consents, 0, "{moved:?}");
    let other = store_rows::check(seed(&seeds, "seed-consent-other-purpose"));
    assert_eq!(other.live_consents, 0, "{other:?}");
    let key = store_rows::check(seed(&seeds, "seed-fixture-key"));
    assert!(key.opened && key.sealed, "{key:?}");
    let wrong = store_rows::check(seed(&seeds, "seed-key-row"));
    assert!(!wrong.opened, "{wrong:?}");
    let erased = store_rows::check(seed(&seeds, "seed-erased"));
    assert!(!erased.opened && !erased.sealed, "{erased:?}");
    let audit = store_rows::check(seed(&seeds, "seed-audit"));
    assert_eq!(audit.audit_rows, 3, "{audit:?}");
    let c = store_rows::check(seed(&seeds, "seed-checkpoint"));
    assert_eq!(c.checkpoints, 1, "{c:?}");
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
        .collect()
}

/// Writes the named seeds: for `envelope`, valid envelopes from the frozen
/// vectors (format versions 1 and 2) as bytes and as text and the malformed
/// shapes the parser must refuse; for the other targets, [`seeds::all`].
#[test]
#[ignore = "rewrites fuzz/seeds; run with --ignored only to refresh the seeds"]
fn write_seeds() {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;

    for (target, list) in seeds::all() {
        let out = dir(&format!("fuzz/seeds/{target}"));
        std::fs::create_dir_all(&out).unwrap();
        for (name, data) in list {
            std::fs::write(out.join(name), data).unwrap();
        }
    }

    let file: serde_json::Value = serde_json::from_str(envelope::VECTORS).unwrap();
    let vectors = file["vectors"].as_array().unwrap();
    let bytes_of = |name: &str| -> Vec<u8> {
        let v = vectors.iter().find(|v| v["name"] == name).unwrap();
        URL_SAFE_NO_PAD
            .decode(v["envelope"].as_str().unwrap())
            .unwrap()
    };
    let out = dir("fuzz/seeds/envelope");
    std::fs::create_dir_all(&out).unwrap();
    let mut seeds: Vec<(String, Vec<u8>)> = Vec::new();
    for name in [
        "email-transaction-aes",
        "name-support-aes-padded",
        "postal-correspondence-chacha",
        "phone-servicenotice-chacha-padded",
        "purchase-newsletter-aes",
        "phone-support-aes-gen1",
    ] {
        seeds.push((format!("valid-{name}.bin"), bytes_of(name)));
    }
    let email = bytes_of("email-transaction-aes");
    let text = vectors[0]["envelope"].as_str().unwrap();
    seeds.push((
        "valid-email-transaction-aes.txt".into(),
        text.as_bytes().to_vec(),
    ));
    let edit = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut b = email.clone();
        f(&mut b);
        b
    };
    seeds.push(("empty.bin".into(), Vec::new()));
    seeds.push(("one-byte.bin".into(), vec![1]));
    seeds.push(("truncated-header.bin".into(), email[..47].to_vec()));
    seeds.push((
        "truncated-by-one.bin".into(),
        email[..email.len() - 1].to_vec(),
    ));
    seeds.push(("extended-by-one.bin".into(), edit(&|b| b.push(0))));
    seeds.push(("unknown-version.bin".into(), edit(&|b| b[0] = 2)));
    seeds.push(("unknown-algorithm.bin".into(), edit(&|b| b[1] = 3)));
    seeds.push(("unknown-flags.bin".into(), edit(&|b| b[2] = 0x80)));
    seeds.push((
        "unknown-key-id.bin".into(),
        edit(&|b| b[19..23].copy_from_slice(&9u32.to_be_bytes())),
    ));
    seeds.push((
        "huge-length.bin".into(),
        edit(&|b| b[31..35].copy_from_slice(&u32::MAX.to_be_bytes())),
    ));
    seeds.push((
        "flipped-tag.bin".into(),
        edit(&|b| {
            let n = b.len();
            b[n - 1] ^= 1
        }),
    ));
    seeds.push(("text-padded.txt".into(), format!("{text}==").into_bytes()));
    // The wrapped key of another vector, as bytes: not an envelope.
    seeds.push((
        "wrapped-key-not-envelope.bin".into(),
        unhex(vectors[0]["stored_key"]["wrapped"].as_str().unwrap()),
    ));
    // Every envelope of format version 2, each of which opens.
    let file: serde_json::Value = serde_json::from_str(envelope::VECTORS_V2).unwrap();
    for v in file["vectors"].as_array().unwrap() {
        let name = v["name"].as_str().unwrap();
        let bytes = URL_SAFE_NO_PAD
            .decode(v["envelope"].as_str().unwrap())
            .unwrap();
        seeds.push((format!("valid-v2-{name}.bin"), bytes));
    }
    for (name, data) in seeds {
        std::fs::write(out.join(name), data).unwrap();
    }
}
