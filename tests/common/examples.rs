//! The example programs, as tests run them: `cargo test` builds every
//! example beside the test executables.

use std::path::PathBuf;
use std::process::Command;

/// The built example `name`.
pub fn example_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    let bin = dir
        .join("examples")
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.exists(),
        "{} is missing: run the whole suite with `cargo test` (it builds the examples)",
        bin.display()
    );
    bin
}

/// Runs example `name` with `args` to its end: its exit code and everything
/// it printed (stdout, then stderr).
pub fn run_example<S: AsRef<std::ffi::OsStr>>(name: &str, args: &[S]) -> (i32, String) {
    let out = Command::new(example_binary(name))
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}
