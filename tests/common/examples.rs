//! The example programs, as tests run them: `cargo test` builds every
//! example beside the test executables.

#![allow(dead_code)]

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

/// Runs `n` processes of example `name` with `args` at once, waits for all,
/// asserts that each succeeded, and returns what each printed on stdout.
pub fn run_at_once<S: AsRef<std::ffi::OsStr>>(name: &str, args: &[S], n: usize) -> Vec<String> {
    let children: Vec<_> = (0..n)
        .map(|_| {
            Command::new(example_binary(name))
                .args(args)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    children
        .into_iter()
        .map(|c| {
            let out = c.wait_with_output().unwrap();
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            assert!(
                out.status.success(),
                "{name}: {text}{}",
                String::from_utf8_lossy(&out.stderr)
            );
            text
        })
        .collect()
}
