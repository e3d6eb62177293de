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
//!   nothing: `verify_public` reports it as bad.

use std::sync::OnceLock;

use privacy_pledge::audit::{
    verify_public, Checkpoint, CheckpointKey, CheckpointSigner, SignedCheckpoint,
};

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
}

/// The signer whose checkpoints the seeds hold.
pub fn signer() -> &'static CheckpointSigner {
    static S: OnceLock<CheckpointSigner> = OnceLock::new();
    S.get_or_init(|| CheckpointSigner::from_seed(&MASTER).expect("signer"))
}

/// Runs the checkpoint decoders on `data`. Panics only on a broken property.
pub fn check(data: &[u8]) -> Outcome {
    let mut out = Outcome::default();
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
