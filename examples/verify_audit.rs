//! Checks an audit trail written by a `ChainedAuditLog`.
//!
//! ```text
//! cargo run --example verify_audit -- --db PATH    [--head SEQ:HEX] [--key-file PATH] [--export-jsonl OUT]
//! cargo run --example verify_audit -- --jsonl FILE [--head SEQ:HEX] [--key-file PATH]
//! ```
//!
//! Reads every entry (the `audit_log` table of an SQLite database, or a file
//! of JSON lines), recomputes the chain with the audit key, and reports the
//! first entry that was edited, deleted, reordered or inserted. With a
//! trusted checkpoint — `--head`, or the `<PATH>.checkpoint` file the
//! `checkout` example writes outside the database — it also detects entries
//! cut from the end; without one it says that it cannot.
//!
//! It never writes: the database is opened read-only, so a dropped table is
//! reported, not re-created. A missing table or an empty trail is a failure
//! (a trail that was wiped must not read as "intact").
//!
//! The audit key is derived from the keyring in `<PATH>.key` (as written by
//! the `checkout` example), or in `--key-file`. Whoever holds that key can
//! also re-chain an edited trail, so keep it away from the database's
//! operator.
//!
//! Exit status: 0 when the trail is intact (the head is printed), 1 when it
//! was tampered with, is missing or is empty (the first bad entry is
//! printed), 2 when it could not be checked (bad arguments, unreadable files).

#[path = "support/mod.rs"]
mod support;

use std::fs::{self, File};
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use privacy_pledge::audit::{
    read_jsonl, verify, AuditEvent, AuditKey, AuditSink, Checkpoint, JsonLinesSink, JsonlError,
    Tamper, VerifyError,
};

use support::{BoxError, Db};

const USAGE: &str = "usage: verify_audit (--db PATH | --jsonl FILE) [--head SEQ:HEX] \
                     [--key-file PATH] [--export-jsonl OUT]";

enum Source {
    Sqlite(PathBuf),
    Jsonl(PathBuf),
}

struct Args {
    source: Source,
    key_file: Option<PathBuf>,
    head: Option<Checkpoint>,
    export: Option<PathBuf>,
}

/// What the check found.
enum Verdict {
    Intact {
        head: Checkpoint,
        entries: usize,
    },
    Broken {
        error: VerifyError,
        /// Where the bad entry is in the storage, for a person to look at.
        location: String,
    },
    /// No trail to check: the table is gone or holds nothing.
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
    match check(&args) {
        Ok(Verdict::Intact { head, entries }) => {
            println!("audit trail intact: {entries} entries");
            match trusted(&args) {
                Some(trusted) => println!(
                    "matches the trusted checkpoint at seq {}; {} entries after it",
                    trusted.seq(),
                    head.seq() - trusted.seq()
                ),
                None => println!(
                    "cannot check truncation: no trusted checkpoint (give --head SEQ:HEX); entries cut from the end would not show"
                ),
            }
            println!("head: {head}");
            ExitCode::SUCCESS
        }
        Ok(Verdict::Missing(why)) => {
            eprintln!("audit trail MISSING: {why}");
            ExitCode::from(1)
        }
        Ok(Verdict::Broken { error, location }) => {
            eprintln!(
                "audit trail BROKEN at entry {} ({location}), expected seq {}: {}",
                error.index, error.expected_seq, error.reason
            );
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("verify_audit: {e}");
            ExitCode::from(2)
        }
    }
}

fn parse_args() -> Result<Args, BoxError> {
    let mut args = std::env::args_os().skip(1);
    let (mut source, mut key_file, mut head, mut export) = (None, None, None, None);
    while let Some(arg) = args.next() {
        let flag = arg.to_str().unwrap_or_default().to_owned();
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--db" => source = Some(Source::Sqlite(value()?.into())),
            "--jsonl" => source = Some(Source::Jsonl(value()?.into())),
            "--key-file" => key_file = Some(PathBuf::from(value()?)),
            "--export-jsonl" => export = Some(PathBuf::from(value()?)),
            "--head" => {
                let text = value()?;
                let text = text.to_str().ok_or("--head is not SEQ:HEX")?;
                head = Some(text.parse().map_err(|e| format!("--head: {e}"))?);
            }
            _ => return Err(format!("unknown argument {arg:?}").into()),
        }
    }
    let source = source.ok_or("give --db or --jsonl")?;
    if head.is_none() {
        if let Source::Sqlite(db) = &source {
            head = support::load_checkpoint(&support::checkpoint_file_for(db))?;
        }
    }
    if export.is_some() && !matches!(source, Source::Sqlite(_)) {
        return Err("--export-jsonl works with --db".into());
    }
    Ok(Args {
        source,
        key_file,
        head,
        export,
    })
}

fn audit_key(args: &Args) -> Result<AuditKey, BoxError> {
    let path = match (&args.key_file, &args.source) {
        (Some(k), _) => k.clone(),
        (None, Source::Sqlite(p) | Source::Jsonl(p)) => support::key_file_for(p),
    };
    Ok(support::read_keyring(&path)?.audit_key())
}

/// The trusted checkpoint: `--head`, else the `<db>.checkpoint` file if
/// there is one (read once in `parse_args`).
fn trusted(args: &Args) -> Option<&Checkpoint> {
    args.head.as_ref()
}

fn check(args: &Args) -> Result<Verdict, BoxError> {
    let key = audit_key(args)?;
    match &args.source {
        Source::Sqlite(path) => check_sqlite(path, &key, args),
        Source::Jsonl(path) => check_jsonl(path, &key, trusted(args)),
    }
}

fn check_sqlite(path: &Path, key: &AuditKey, args: &Args) -> Result<Verdict, BoxError> {
    if !path.exists() {
        return Err(format!("no database at {}", path.display()).into());
    }
    // Read-only: creates nothing, so a dropped table stays dropped.
    let db = Db::open_read_only(path)?;
    let has_table: bool = db.with(|c| {
        c.query_row(
            "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'audit_log')",
            [],
            |r| r.get(0),
        )
    })?;
    if !has_table {
        return Ok(Verdict::Missing(format!(
            "{} has no audit_log table",
            path.display()
        )));
    }
    let rows = support::load_audit_log(&db)?;
    if rows.is_empty() {
        return Ok(Verdict::Missing(format!(
            "the audit_log table of {} is empty",
            path.display()
        )));
    }
    match support::verify_rows(&rows, key, trusted(args)) {
        Ok(head) => {
            if let Some(out) = &args.export {
                let events: Vec<AuditEvent> = rows
                    .iter()
                    .filter_map(|r| r.event.as_ref().ok().cloned())
                    .collect();
                export_jsonl(out, &events)?;
                println!("exported {} entries to {}", events.len(), out.display());
            }
            Ok(Verdict::Intact {
                head,
                entries: rows.len(),
            })
        }
        Err(error) => {
            let location = match rows.get(error.index) {
                Some(row) => format!("audit_log row id {}", row.id),
                None => "after the last row".to_owned(),
            };
            Ok(Verdict::Broken { error, location })
        }
    }
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

/// Writes verified entries as JSON lines (an archive copy that this tool
/// can check again with `--jsonl`).
fn export_jsonl(out: &Path, events: &[AuditEvent]) -> Result<(), BoxError> {
    let file = File::options()
        .write(true)
        .create_new(true)
        .open(out)
        .map_err(|e| format!("cannot create {}: {e}", out.display()))?;
    // The events are already chained: write them as they are.
    let sink = JsonLinesSink::new(BufWriter::new(file));
    sink.record_batch(events)?;
    sink.into_inner()?
        .into_inner()
        .map_err(|e| e.into_error())?
        .sync_all()?;
    Ok(())
}
