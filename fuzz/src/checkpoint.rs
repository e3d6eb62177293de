//! `checkpoint`: checkpoints as the crate reads them back: the text form
//! `SEQ:HEX` of a [`Checkpoint`], its JSON, and [`SignedCheckpoint`]s as
//! JSON, the form a `CheckpointStore` (`DirCheckpointStore`) and the
//! stores' `pp_checkpoints` rows keep them in.
//!
//! Properties, beyond "no panic":
//! - the text form is canonical once parsed: `parse(display(parse(x)))`
//!   equals `parse(x)`, and differs from `x` only by leading zeros of the
//!   sequence number;
//! - JSON round-trips (same value, same bytes);
//! - a signed checkpoint that verifies under the fixed signer's public key
//!   was made by that signer: signing its stream, head and time again gives
//!   the same signature (Ed25519 is deterministic), and it names the stream
//!   and head `verify` returns. One that does not verify vouches for
//!   nothing: `verify_public` reports it as bad;
//! - as a `DirCheckpointStore` slot file of stream [`STREAM`], the input is
//!   read (never an error: a lone slot that is not whole is a first save
//!   cut short) only if it is, up to its padding, the slot a save of the
//!   checkpoint read writes.

use std::sync::OnceLock;

use privacy_pledge::audit::{
    verify_public, Checkpoint, CheckpointKey, CheckpointSigner, CheckpointStore,
    DirCheckpointStore, SignedCheckpoint,
};

use super::audit_event::STREAM;
use super::common::{json_round_trip, MASTER};

/// What one input did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// The text form parsed.
    pub text: bool,
    /// A signed checkpoint parsed.
    pub signed: bool,
    /// It verified under the fixed signer's key.
    pub verified: bool,
    /// As a slot file, it was read as a whole checkpoint.
    pub slot: bool,
}

/// The signer whose checkpoints the seeds hold.
pub fn signer() -> &'static CheckpointSigner {
    static S: OnceLock<CheckpointSigner> = OnceLock::new();
    S.get_or_init(|| CheckpointSigner::from_seed(&MASTER).expect("signer"))
}

/// Runs the checkpoint decoders on `data`. Panics only on a broken property.
pub fn check(data: &[u8]) -> Outcome {
    let mut out = Outcome {
        slot: slot(data),
        ..Outcome::default()
    };
    let text = String::from_utf8_lossy(data);
    if let Ok(c) = text.parse::<Checkpoint>() {
        out.text = true;
        let shown = c.to_string();
        assert_eq!(
            shown.parse::<Checkpoint>(),
            Ok(c),
            "text does not round-trip"
        );
        let (seq, head) = text.split_once(':').expect("a colon");
        assert_eq!(
            seq.trim_start_matches('0'),
            c.seq().to_string().trim_start_matches('0')
        );
        assert_eq!(shown.split_once(':').map(|p| p.1), Some(head));
    }
    json_round_trip::<Checkpoint>(data);
    if let Ok(k) = text.parse::<CheckpointKey>() {
        assert_eq!(k.to_string(), text, "a second spelling of a key");
    }
    let Some(signed) = json_round_trip::<SignedCheckpoint>(data) else {
        return out;
    };
    out.signed = true;
    let key = signer().public_key();
    match signed.verify(&key) {
        Ok((stream, head)) => {
            out.verified = true;
            assert_eq!((stream, head), (signed.stream(), signed.checkpoint()));
            let again = signer().sign(stream, head, signed.time());
            assert_eq!(again, signed, "a checkpoint the signer never made verified");
        }
        Err(_) => {
            // It vouches for nothing: a trail checked against it alone
            // reports the checkpoint as bad.
            let report = verify_public(&[], &key, &[signed]);
            assert_eq!(report.bad_checkpoints, vec![signed]);
            assert!(report.streams.is_empty());
        }
    }
    out
}

/// Two checkpoint directories of this process: one the input is read from
/// as a slot, one a save of what was read is written to.
fn dirs() -> &'static (DirCheckpointStore, DirCheckpointStore) {
    static D: OnceLock<(DirCheckpointStore, DirCheckpointStore)> = OnceLock::new();
    D.get_or_init(|| {
        let base = std::env::temp_dir().join(format!("pp-fuzz-slots-{}", std::process::id()));
        let open = |name: &str| DirCheckpointStore::new(base.join(name)).expect("directory");
        (open("read"), open("write"))
    })
}

/// Reads `data` as slot 0 of [`STREAM`]: whether it was read.
fn slot(data: &[u8]) -> bool {
    let (read, write) = dirs();
    let name = format!("{STREAM}.0.ckpt");
    std::fs::write(read.path().join(&name), data).expect("write the slot");
    let kept = read.load().expect("a lone slot is never an error");
    let Some(c) = kept.first().copied() else {
        return false;
    };
    assert_eq!(kept, [c], "one slot, one checkpoint");
    assert_eq!(c.stream(), STREAM, "a slot read for another stream");
    assert!(!c.is_base(), "an archive base read from a slot");
    for file in std::fs::read_dir(write.path()).expect("list") {
        std::fs::remove_file(file.expect("entry").path()).expect("remove");
    }
    write.save(&c).expect("save");
    let saved = std::fs::read(write.path().join(&name)).expect("the saved slot");
    // The JSON, its newline, 64 hex digits and theirs: all but the padding.
    let content = saved.iter().position(|&b| b == b'\n').expect("a line") + 66;
    assert_eq!(
        data.get(..content),
        Some(&saved[..content]),
        "a slot read that no save writes"
    );
    true
}
