//! Replays the fuzz corpus on stable: every file of `fuzz/corpus/envelope/`
//! (and any saved crash in `fuzz/artifacts/envelope/`) goes through the same
//! decode-and-open logic as the `envelope` fuzz target.
//!
//! The seed corpus is derived from the frozen vectors by [`write_seed_corpus`]
//! (`#[ignore]`d; run with `--ignored` only to refresh the seeds).

#[path = "../fuzz/src/lib.rs"]
mod fuzz_logic;

use std::path::{Path, PathBuf};

use fuzz_logic::{check, custodian, Outcome, VECTORS};

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

#[test]
fn seed_corpus_replays_without_panic() {
    let corpus = files("fuzz/corpus/envelope");
    assert!(corpus.len() >= 12, "only {} seed files", corpus.len());
    let mut total = Outcome::default();
    for path in &corpus {
        let data = std::fs::read(path).unwrap();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let o = check(&data);
        // Seeds named for what they are must do what their name says.
        if name.starts_with("valid-") {
            assert_eq!(o.opened, 1, "{name} should open exactly as its own kind");
        } else {
            assert_eq!(o.opened, 0, "{name} opened");
        }
        total.parsed += o.parsed;
        total.opened += o.opened;
    }
    // The corpus reaches every stage: parse failures, parses that do not
    // open, and real opens.
    assert!(total.opened >= 5, "{total:?}");
    assert!(total.parsed > total.opened, "{total:?}");
}

#[test]
fn saved_crashes_replay_without_panic() {
    for path in files("fuzz/artifacts/envelope") {
        check(&std::fs::read(path).unwrap());
    }
}

#[test]
fn the_logic_handles_edge_inputs() {
    for data in [&b""[..], b"\x01", &[0xff; 64], b"AQ", "é\u{0}".as_bytes()] {
        assert_eq!(check(data).opened, 0);
    }
    // The custodian holds the vectors' keys.
    let _ = custodian();
    assert!(VECTORS.contains("\"vectors\""));
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
        .collect()
}

/// Writes the seed corpus from the frozen vectors: valid envelopes as bytes
/// and as text, and the malformed shapes the parser must refuse.
#[test]
#[ignore = "rewrites fuzz/corpus/envelope; run with --ignored only to refresh the seeds"]
fn write_seed_corpus() {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;

    let file: serde_json::Value = serde_json::from_str(VECTORS).unwrap();
    let vectors = file["vectors"].as_array().unwrap();
    let bytes_of = |name: &str| -> Vec<u8> {
        let v = vectors.iter().find(|v| v["name"] == name).unwrap();
        URL_SAFE_NO_PAD
            .decode(v["envelope"].as_str().unwrap())
            .unwrap()
    };
    let out = dir("fuzz/corpus/envelope");
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
    for (name, data) in seeds {
        std::fs::write(out.join(name), data).unwrap();
    }
}
