//! Checks an audit trail.
//!
//! ```text
//! cargo run --example verify_audit -- --db PATH (--public-key HEX | --public-key-file FILE)
//!                                      [--checkpoints DIR] [--archive FILE]...
//! cargo run --example verify_audit -- --database-url URL (--public-key HEX | --public-key-file FILE)
//!                                      [--checkpoints DIR] [--archive FILE]...
//! cargo run --example verify_audit -- --jsonl FILE [--head SEQ:HEX] [--key-file PATH]
//! ```
//!
//! `--db` / `--database-url`: the streams of an SQLite or PostgreSQL
//! database written by the crate's store (the `checkout` example), checked
//! with the **public** checkpoint key only, given from outside the
//! database's reach (`--public-key HEX` or `--public-key-file FILE`; nothing
//! beside the database is read unless asked), against the signed
//! checkpoints kept outside the database (`--checkpoints DIR`, which must
//! exist). It needs no secret, so whoever runs it can check the trail but
//! can forge nothing. Every stream is reported: intact and vouched for up
//! to which entry (and how many entries after it are not), or the first bad
//! entry; streams a checkpoint names but the database lacks; checkpoints
//! whose signature fails. A stream starts at seq 1 or right after an
//! archive base; every `--archive FILE` given is checked against the base
//! that names its digest. Then every consent row is cross-checked against
//! the trail and the archives given: a row rolled back to an older state, a
//! row deleted while the trail says granted, or a row with no event behind
//! it is reported; with an archive not given, the rows cannot be checked
//! against the whole history (exit 3). The
//! database is opened read-only (a read-only SQLite connection; on
//! PostgreSQL a session whose transactions are all read-only): a dropped
//! table is reported, never re-created, and an empty trail is a failure.
//!
//! `--jsonl`: a file of JSON lines written by a single-chain
//! `ChainedAuditLog`, checked with the audit key derived from the keyring in
//! `<FILE>.key` or `--key-file` (whose holder could also re-chain an edited
//! trail); entries after `--head` (all of them without it) are not vouched
//! for.
//!
//! Exit status: 0 only when the trail is intact **and** every entry of
//! every stream is vouched for by a checkpoint that verified under the key
//! given (and, for a database, every archive is given and the consent rows
//! agree with the trail and the archives); 1 when it
//! was tampered with, is missing or is empty, or an archive or a consent
//! row does not match; 3 when it is intact as far as it could be checked
//! but some entries are not vouched for (their number is printed per
//! stream: no checkpoint, or entries after the newest one) or an archive
//! was not given; 2 when it could
//! not be checked (bad arguments, no public key, a checkpoint directory
//! that does not exist, unreadable files).

#[path = "support/mod.rs"]
mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use privacy_pledge::audit::{
    read_jsonl, verify, verify_archive, verify_public, Action, AuditKey, Checkpoint, CheckpointKey,
    CheckpointStore, DirCheckpointStore, JsonlError, Tamper, VerifyError,
};
use privacy_pledge::store::postgres::PgStore;
use privacy_pledge::store::sqlite::SqliteStore;

use privacy_pledge::store::Database as Db;
use support::{BoxError, Database};

const USAGE: &str = "\
usage: verify_audit --db PATH (--public-key HEX | --public-key-file FILE)
                    [--checkpoints DIR] [--archive FILE]...
       verify_audit --database-url URL (--public-key HEX | --public-key-file FILE)
                    [--checkpoints DIR] [--archive FILE]...
       verify_audit --jsonl FILE [--head SEQ:HEX] [--key-file PATH]";

const HELP: &str = "\
  --public-key HEX       the checkpoint public key, from outside the
                         database's reach (required for a database)
  --public-key-file FILE the same, read from FILE (64 hex digits)
  --checkpoints DIR      the signed checkpoints kept outside the database
                         (must exist; without it nothing is vouched for)
  --archive FILE         an archived segment (repeatable): checked against
                         the archive base that names its digest
  --jsonl FILE           a single-chain trail of JSON lines instead, checked
                         with the audit key of FILE.key or --key-file
  --head SEQ:HEX         with --jsonl: a trusted head, to detect a cut end
  --key-file PATH        with --jsonl: the keyring file

exit status: 0 intact and every entry vouched for, 1 tampered with,
missing or empty, 3 intact as far as checked but entries not vouched for
(counted per stream) or an archive not given, 2 not checked (bad arguments, no public key, a
missing checkpoint directory, unreadable files)";

enum Args {
    Store {
        db: Database,
        public_key: Option<CheckpointKey>,
        checkpoints: Option<PathBuf>,
        archives: Vec<PathBuf>,
    },
    Jsonl {
        file: PathBuf,
        key_file: Option<PathBuf>,
        head: Option<Checkpoint>,
    },
}

/// What the check of a single chain found.
enum Verdict {
    Intact {
        head: Checkpoint,
        entries: usize,
    },
    Broken {
        error: VerifyError,
        location: String,
    },
    Missing(String),
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("verify_audit: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let outcome = match &args {
        Args::Store {
            db,
            public_key,
            checkpoints,
            archives,
        } => check_store(db, *public_key, checkpoints.as_deref(), archives),
        Args::Jsonl {
            file,
            key_file,
            head,
        } => check_jsonl_file(file, key_file.as_deref(), head.as_ref()),
    };
    match outcome {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("verify_audit: {e}");
            ExitCode::from(2)
        }
    }
}

fn parse_args() -> Result<Args, BoxError> {
    use lexopt::Arg::{Long, Short};
    let mut parser = lexopt::Parser::from_env();
    let mut database = support::DatabaseArgs::default();
    let (mut jsonl, mut public_key, mut checkpoints, mut key_file, mut head) =
        (None, None, None, None, None);
    let mut archives = Vec::new();
    while let Some(arg) = parser.next()? {
        match arg {
            Short('h') | Long("help") => support::print_help_and_exit(&format!(
                "verify_audit: checks an audit trail\n\n{USAGE}\n\noptions:\n{}\n{HELP}",
                support::DATABASE_HELP
            )),
            Long("jsonl") => jsonl = Some(PathBuf::from(parser.value()?)),
            Long("checkpoints") => checkpoints = Some(PathBuf::from(parser.value()?)),
            Long("key-file") => key_file = Some(PathBuf::from(parser.value()?)),
            Long("archive") => archives.push(PathBuf::from(parser.value()?)),
            Long("public-key") => {
                let text = parser.value()?;
                let text = text.to_str().ok_or("--public-key is not hex")?;
                public_key = Some(text.parse().map_err(|e| format!("--public-key: {e}"))?);
            }
            Long("public-key-file") => {
                let file = PathBuf::from(parser.value()?);
                let text = fs::read_to_string(&file)
                    .map_err(|e| format!("--public-key-file {}: {e}", file.display()))?;
                public_key = Some(
                    text.trim_end()
                        .parse()
                        .map_err(|e| format!("--public-key-file {}: {e}", file.display()))?,
                );
            }
            Long("head") => {
                let text = parser.value()?;
                let text = text.to_str().ok_or("--head is not SEQ:HEX")?;
                head = Some(text.parse().map_err(|e| format!("--head: {e}"))?);
            }
            Long(flag) => {
                let flag = flag.to_owned();
                database.take(&flag, &mut parser)?;
            }
            other => return Err(other.unexpected().into()),
        }
    }
    match (database.database_alone(), jsonl) {
        (Ok(db), None) => Ok(Args::Store {
            db,
            public_key,
            checkpoints,
            archives,
        }),
        (Err(_), Some(file)) => Ok(Args::Jsonl {
            file,
            key_file,
            head,
        }),
        (Ok(_), Some(_)) => Err("give a database or --jsonl, not both".into()),
        (Err(e), None) => Err(e),
    }
}

/// Checks every stream of a store's database with the public key only.
/// Returns 0, 1 or 3 (see the module docs); `Err` for 2.
fn check_store(
    db: &Database,
    public_key: Option<CheckpointKey>,
    checkpoints: Option<&Path>,
    archives: &[PathBuf],
) -> Result<u8, BoxError> {
    if let Database::Sqlite(path) = db {
        if !path.exists() {
            return Err(format!("no database at {}", path.display()).into());
        }
    }
    // The key comes from the caller, never from beside the database: an
    // operator who can write there could put their own key and re-sign.
    let public_key =
        public_key.ok_or("no public key: give --public-key HEX or --public-key-file FILE")?;
    let signed = match checkpoints {
        Some(dir) if dir.is_dir() => DirCheckpointStore::new(dir)?.load()?,
        Some(dir) => {
            return Err(format!("no checkpoint directory at {}", dir.display()).into());
        }
        None => {
            println!("no --checkpoints given: no entry can be vouched for");
            Vec::new()
        }
    };
    // Read-only: a dropped table stays dropped, and nothing is created.
    let store = match db {
        Database::Sqlite(path) => SqliteStore::open_read_only(path).map(Db::Sqlite),
        Database::Postgres { url, .. } => PgStore::connect_read_only(url).map(Db::Postgres),
    };
    let store = match store {
        Ok(s) => s,
        Err(e) => {
            eprintln!("audit trail MISSING: {e}");
            return Ok(1);
        }
    };
    let trail = match store.trail() {
        Ok(t) => t,
        Err(e) => {
            eprintln!("audit trail BROKEN: {e}");
            return Ok(1);
        }
    };
    if trail.is_empty() {
        eprintln!("audit trail MISSING: {} holds no entries", db.describe());
        return Ok(1);
    }
    let report = verify_public(&trail, &public_key, &signed);
    for c in &report.bad_checkpoints {
        eprintln!(
            "checkpoint of stream {} does NOT verify under the public key: it vouches for nothing",
            c.stream()
        );
    }
    for s in &report.streams {
        let name = s
            .stream
            .map_or("(unstreamed)".to_owned(), |s| s.to_string());
        match (&s.result, s.vouched_through) {
            (Ok(head), Some(v)) if v == head.seq() => {
                println!("stream {name}: intact, {} entries, all vouched for by its signed checkpoint", s.entries)
            }
            (Ok(_), Some(v)) => println!(
                "stream {name}: intact, {} entries; vouched for up to seq {v}, {} UNVOUCHED after it (cannot check truncation past it)",
                s.entries,
                s.unvouched()
            ),
            (Ok(_), None) => println!(
                "stream {name}: linked, {} entries, {} UNVOUCHED: no signed checkpoint, so it cannot check truncation or content without the audit key",
                s.entries,
                s.unvouched()
            ),
            (Err(e), _) if s.entries == 0 => {
                eprintln!("stream {name}: MISSING (a signed checkpoint names it up to seq {:?}): {}", s.vouched_through, e.reason)
            }
            (Err(e), _) => eprintln!(
                "stream {name}: BROKEN at entry {} of the trail (expected seq {}): {}",
                e.index, e.expected_seq, e.reason
            ),
        }
    }
    // A stream that starts after an archive base: the base's signature
    // vouches for the archived entries' digest, but only `--archive` shows
    // the archive still exists and matches it.
    let mut archives_missing = false;
    for c in signed
        .iter()
        .filter(|c| c.is_base() && c.verify(&public_key).is_ok())
    {
        let digest = c.archive_digest().unwrap_or_default();
        let given = archives.iter().any(|f| {
            fs::read(f).is_ok_and(|b| privacy_pledge::audit::archive_digest(&b) == digest)
        });
        if !given {
            archives_missing = true;
            println!(
                "stream {}: entries up to seq {} are archived behind a signed base; give the archive (--archive FILE) to check it",
                c.stream(),
                c.checkpoint().seq()
            );
        }
    }
    let mut archives_ok = true;
    // The archives' entries join the trail for the consent cross-check: a
    // withdrawal archived away still counts.
    let mut archived = Vec::new();
    for file in archives {
        let bytes = fs::read(file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
        match verify_archive(&bytes, &public_key, &signed) {
            Ok(r) if r.is_fully_vouched() => {
                println!(
                    "archive {}: intact, {} entries, vouched for by its archive base",
                    file.display(),
                    r.streams.iter().map(|s| s.entries).sum::<usize>()
                );
                archived.extend(read_jsonl(&bytes[..])?);
            }
            Ok(r) => {
                archives_ok = false;
                let why = r
                    .streams
                    .iter()
                    .find_map(|s| s.result.err())
                    .map_or("not vouched for".to_owned(), |e| e.reason.to_string());
                eprintln!("archive {}: BROKEN: {why}", file.display());
            }
            Err(e) => {
                archives_ok = false;
                eprintln!("archive {}: BROKEN: {e}", file.display());
            }
        }
    }
    if !report.is_intact() || !archives_ok {
        return Ok(1);
    }
    println!(
        "audit trail intact: {} entries in {} streams",
        trail.len(),
        report.streams.len()
    );
    // The consent rows must say what the verified trail says.
    let rows = match store.consents() {
        Ok(rows) => rows,
        Err(e) => {
            eprintln!("consent rows UNREADABLE: {e}");
            return Ok(1);
        }
    };
    let history: Vec<_> = archived.iter().chain(&trail).cloned().collect();
    let mismatches = privacy_pledge::consent::cross_check(&rows, &history);
    let word = |g: Option<bool>| match g {
        Some(true) => "granted",
        Some(false) => "withdrawn",
        None => "nothing",
    };
    // The verifier holds no key to tag a subject with, and a subject id is
    // an identifier: a row is named by the trail entry it disagrees with
    // (stream and sequence number), or by its place in `pp_consents`.
    let whose = |m: &privacy_pledge::consent::ConsentMismatch| {
        let consent = [Action::ConsentGranted, Action::ConsentWithdrawn];
        let event = trail.iter().rev().find(|e| {
            e.subject() == m.subject
                && e.purpose() == Some(m.purpose)
                && consent.contains(&e.action())
        });
        match (
            event,
            rows.iter()
                .position(|r| (r.subject, r.purpose) == (m.subject, m.purpose)),
        ) {
            (Some(e), _) => format!(
                "of the subject of entry {} of stream {}",
                e.seq(),
                e.stream().map_or("(none)".to_owned(), |s| s.to_string())
            ),
            (None, Some(i)) => {
                format!("number {} of pp_consents (by subject, then purpose)", i + 1)
            }
            (None, None) => "of a subject".to_owned(),
        }
    };
    for m in &mismatches {
        eprintln!(
            "consent row {} for {:?} DISAGREES with the trail: the row says {}, the trail says {}",
            whose(m),
            m.purpose,
            word(m.row_granted),
            word(m.trail_granted)
        );
    }
    if archives_missing {
        // What an archive not given holds (a withdrawal, a grant, in any
        // stream) is not in the history the rows were checked against: an
        // agreement proves nothing, and a disagreement may be its doing.
        println!(
            "consent rows checked against the entries in the database only ({} disagree): entries archived behind a base were not given; give every archive (--archive FILE) to check the rows against the whole history",
            mismatches.len()
        );
        return Ok(3);
    }
    if !mismatches.is_empty() {
        return Ok(1);
    }
    println!("consent rows agree with the trail: {} rows", rows.len());
    match report.unvouched() {
        0 => {
            println!("every entry is vouched for by a signed checkpoint");
            Ok(0)
        }
        n => {
            println!("{n} entries are NOT vouched for by any signed checkpoint: intact as far as checked, but they could have been cut or rewritten");
            Ok(3)
        }
    }
}

fn check_jsonl_file(
    file: &Path,
    key_file: Option<&Path>,
    head: Option<&Checkpoint>,
) -> Result<u8, BoxError> {
    let key_path = key_file
        .map(Path::to_path_buf)
        .unwrap_or_else(|| support::key_file_for(file));
    let key = support::read_keyring(&key_path)?.audit_key();
    Ok(match check_jsonl(file, &key, head)? {
        Verdict::Intact { head: h, entries } => {
            println!("audit trail intact: {entries} entries");
            let unvouched = match head {
                Some(t) => {
                    println!(
                        "matches the trusted checkpoint at seq {}; {} entries after it",
                        t.seq(),
                        h.seq() - t.seq()
                    );
                    h.seq() - t.seq()
                }
                None => {
                    println!(
                        "cannot check truncation: no trusted checkpoint (give --head SEQ:HEX)"
                    );
                    h.seq()
                }
            };
            println!("head: {h}");
            if unvouched == 0 {
                0
            } else {
                println!("{unvouched} entries are NOT vouched for by the trusted checkpoint");
                3
            }
        }
        Verdict::Broken { error, location } => {
            eprintln!(
                "audit trail BROKEN at entry {} ({location}), expected seq {}: {}",
                error.index, error.expected_seq, error.reason
            );
            1
        }
        Verdict::Missing(why) => {
            eprintln!("audit trail MISSING: {why}");
            1
        }
    })
}

fn check_jsonl(
    path: &Path,
    key: &AuditKey,
    trusted: Option<&Checkpoint>,
) -> Result<Verdict, BoxError> {
    let bytes = fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    // A line that is not an event was edited or damaged: the trail is broken
    // there, unless the lines before it already show where it broke.
    let (events, bad_line) = match read_jsonl(&bytes[..]) {
        Ok(events) => (events, None),
        Err(e @ JsonlError::Malformed { .. }) => {
            let good = &bytes[..start_of_line(&bytes, e.line())];
            (read_jsonl(good)?, Some(e))
        }
        Err(e) => return Err(e.into()),
    };
    if events.is_empty() && bad_line.is_none() {
        return Ok(Verdict::Missing(format!(
            "{} holds no entries",
            path.display()
        )));
    }
    let trusted = if bad_line.is_none() { trusted } else { None };
    let location = |index: usize| match events.len() {
        n if index < n => format!("line {}", index + 1),
        _ => "after the last line".to_owned(),
    };
    Ok(match (verify(&events, key, trusted), bad_line) {
        (Err(error), _) => Verdict::Broken {
            location: location(error.index),
            error,
        },
        (Ok(head), Some(bad)) => Verdict::Broken {
            error: VerifyError {
                index: bad.line() - 1,
                expected_seq: head.seq() + 1,
                reason: Tamper::Modified,
            },
            location: bad.to_string(),
        },
        (Ok(head), None) => Verdict::Intact {
            head,
            entries: events.len(),
        },
    })
}

/// The byte offset where line `line` (from 1) starts.
fn start_of_line(bytes: &[u8], line: usize) -> usize {
    if line <= 1 {
        return 0;
    }
    bytes
        .iter()
        .enumerate()
        .filter(|(_, b)| **b == b'\n')
        .nth(line - 2)
        .map_or(bytes.len(), |(i, _)| i + 1)
}
