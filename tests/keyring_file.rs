//! `Keyring::load_or_create` / `KeyringFile`: processes of a fleet starting
//! together on a new deployment (threat-model actor A5) create the keyring
//! file once, and all use that one keyring.

#[path = "common/tempdir.rs"]
mod tempdir;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use privacy_pledge::crypto::{KeyProvider, Keyring, KeyringFile, KeyringStore, Wrapped};

use tempdir::TempDir;

const CONTEXT: [u8; 36] = [5; 36];

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// Not a test of its own: the body of the child processes the test below
/// spawns. Without `PP_KEYRING_CHILD` it does nothing. Waits for the start
/// signal (a file), then loads or creates the keyring file and prints its
/// signing key and a data key wrapped under it.
#[test]
fn child_process_entry() {
    let Ok(path) = std::env::var("PP_KEYRING_CHILD") else {
        return;
    };
    println!();
    let path = PathBuf::from(path);
    let go = path.with_extension("go");
    while !go.exists() {
        std::thread::sleep(Duration::from_micros(200));
    }
    let keyring = Keyring::load_or_create(&path).unwrap();
    let wrapped = keyring.wrap(&[6; 32], &CONTEXT).unwrap();
    println!(
        "CHILD {} {}",
        keyring.checkpoint_signer().unwrap().public_key(),
        hex(&wrapped.bytes)
    );
}

fn spawn(path: &Path) -> std::process::Child {
    spawn_entry("child_process_entry", &[("PP_KEYRING_CHILD", path.into())])
}

/// This test binary again, running only the child entry `entry` with the
/// environment `env`.
fn spawn_entry(entry: &str, env: &[(&str, std::ffi::OsString)]) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", entry, "--nocapture", "--test-threads=1"])
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

/// A5: in each of five rounds, four processes are released at once on a
/// keyring file that does not exist yet. Every one reports the same
/// signing key, and what each wrapped unwraps with the keyring in the file:
/// one creator won and everyone uses its keyring. No candidate file is left
/// behind.
#[test]
fn a5_processes_starting_together_create_one_keyring_file() {
    let dir = TempDir::named("keyring-file", "together");
    for round in 0..5 {
        let path = dir.path(&format!("round{round}.key"));
        let children: Vec<_> = (0..4).map(|_| spawn(&path)).collect();
        // Let them all reach the wait, then release them together.
        std::thread::sleep(Duration::from_millis(300));
        std::fs::write(path.with_extension("go"), b"").unwrap();
        let lines: Vec<String> = children
            .into_iter()
            .map(|c| {
                let out = c.wait_with_output().unwrap();
                assert!(out.status.success(), "a child failed");
                String::from_utf8(out.stdout)
                    .unwrap()
                    .lines()
                    .find_map(|l| l.strip_prefix("CHILD "))
                    .unwrap()
                    .to_owned()
            })
            .collect();
        let keyring = KeyringFile::new(&path).load_or_create().unwrap();
        let public = keyring
            .checkpoint_signer()
            .unwrap()
            .public_key()
            .to_string();
        for line in &lines {
            let (key, wrapped) = line.split_once(' ').unwrap();
            assert_eq!(key, public, "round {round}: two keyrings");
            let wrapped = Wrapped {
                kek_version: 1,
                bytes: unhex(wrapped),
            };
            assert_eq!(*keyring.unwrap(&wrapped, &CONTEXT).unwrap(), [6; 32]);
        }
    }
    let mut left: Vec<String> = std::fs::read_dir(dir.path(""))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".new"))
        .collect();
    left.sort();
    assert!(left.is_empty(), "candidates left: {left:?}");
}

/// Saving replaces the file in one step and keeps it private; a second
/// `load_or_create` reads what was saved.
#[test]
fn save_replaces_the_file_and_keeps_it_private() {
    let dir = TempDir::named("keyring-file", "save");
    let file = KeyringFile::new(dir.path("k.key"));
    assert!(file.load().is_err());
    let keyring = file.load_or_create().unwrap();
    keyring.rotate().unwrap();
    keyring.retire(1).unwrap();
    file.save(&keyring.export()).unwrap();
    assert_eq!(file.load_or_create().unwrap().versions(), vec![2]);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(file.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "readable by others: {mode:o}");
    }
    // Garbage in the file is an error that does not echo it.
    std::fs::write(file.path(), "ppkr1.secret-looking-text").unwrap();
    let err = file.load_or_create().unwrap_err().to_string();
    assert!(!err.contains("secret-looking"), "{err}");
}

/// A5: `replace` writes only over the text the caller expected: a rotation
/// whose write arrives after another process saved a newer keyring leaves
/// that one in place (the stale text would bring retired versions back).
#[test]
fn a5_replace_writes_only_over_the_expected_keyring() {
    let dir = TempDir::named("keyring-file", "replace");
    let file = KeyringFile::new(dir.path("k.key"));
    let before = file.load_or_create().unwrap();
    let stale = before.export();
    let newer = Keyring::import(&stale).unwrap();
    newer.rotate().unwrap();
    newer.retire(1).unwrap();
    assert!(file.replace(&stale, &newer.export()).unwrap());
    assert_eq!(&*file.load().unwrap(), &*newer.export());
    // The stale writer's turn: its text is no longer the file's.
    before.rotate().unwrap();
    assert!(!file.replace(&stale, &before.export()).unwrap());
    assert_eq!(
        Keyring::import(&file.load().unwrap()).unwrap().versions(),
        [2]
    );
}

/// The names in `dir` other than the keyring file `key` and its lock.
fn beside(dir: &TempDir, key: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir.path(""))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| *n != key && *n != format!("{key}.lock"))
        .collect();
    names.sort();
    names
}

/// The files in `dir` holding a keyring that unwraps `wrapped`.
fn any_file_unwraps(dir: &Path, wrapped: &Wrapped) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            KeyringFile::new(p)
                .load()
                .ok()
                .and_then(|text| Keyring::import(&text).ok())
                .is_some_and(|k| k.unwrap(wrapped, &CONTEXT).is_ok())
        })
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect()
}

/// A new keyring file `k.key` in `dir`, its keyring, and a data key
/// wrapped under its first key-encryption key.
fn new_keyring_file(dir: &TempDir) -> (KeyringFile, Keyring, Wrapped) {
    let file = KeyringFile::new(dir.path("k.key"));
    let keyring = file.load_or_create().unwrap();
    let wrapped = keyring.wrap(&[6; 32], &CONTEXT).unwrap();
    (file, keyring, wrapped)
}

/// A5 then A3: writes killed part way leave what they wrote beside the
/// file — a save's candidate (a copy of an older text) and a creation's
/// second link to the file it made. A key-encryption key is then retired
/// (erasure by key destruction) and the keyring saved: nothing in the
/// directory, which a backup holder may copy, still unwraps what the
/// retired key wrapped.
#[test]
fn a3_a_write_killed_part_way_leaves_no_retired_key_behind_the_next_save() {
    let dir = TempDir::named("keyring-file", "killed-write");
    let (file, keyring, wrapped) = new_keyring_file(&dir);
    std::fs::copy(file.path(), dir.path("k.key.4242.0123456789abcdef.new")).unwrap();
    std::fs::hard_link(file.path(), dir.path("k.key.4343.fedcba9876543210.new")).unwrap();
    // Files of other names are not the keyring's to remove.
    std::fs::write(dir.path("k.key.bak"), b"the host's").unwrap();
    assert_eq!(any_file_unwraps(&dir.path(""), &wrapped).len(), 3);

    keyring.rotate().unwrap();
    keyring.retire(1).unwrap();
    file.save(&keyring.export()).unwrap();

    assert_eq!(beside(&dir, "k.key"), ["k.key.bak"]);
    assert_eq!(
        any_file_unwraps(&dir.path(""), &wrapped),
        Vec::<String>::new()
    );
    assert_eq!(file.load_or_create().unwrap().versions(), vec![2]);
}

/// Not a test of its own: the body of the saving child processes the
/// tests below spawn. Without `PP_KEYRING_SAVER` it does nothing. Saves
/// the keyring file's text back into it `PP_KEYRING_SAVES` times (without
/// end if 0), then prints `SAVED`.
#[test]
fn saver_child_entry() {
    let Ok(path) = std::env::var("PP_KEYRING_SAVER") else {
        return;
    };
    let saves: u64 = std::env::var("PP_KEYRING_SAVES").unwrap().parse().unwrap();
    let file = KeyringFile::new(path);
    let text = file.load().unwrap();
    let mut n = 0;
    while saves == 0 || n < saves {
        file.save(&text).unwrap();
        n += 1;
    }
    println!("SAVED");
}

fn spawn_saver(path: &Path, saves: u64) -> std::process::Child {
    spawn_entry(
        "saver_child_entry",
        &[
            ("PP_KEYRING_SAVER", path.into()),
            ("PP_KEYRING_SAVES", saves.to_string().into()),
        ],
    )
}

/// A5: processes killed while saving, again and again, at varying points;
/// then a key is retired and the keyring saved. No candidate is left, and
/// no file in the directory unwraps what the retired key wrapped.
#[test]
fn a5_savers_killed_mid_save_leave_nothing_after_the_next_save() {
    let dir = TempDir::named("keyring-file", "killed-savers");
    let (file, keyring, wrapped) = new_keyring_file(&dir);
    let mut left_by_kills = 0;
    for round in 0..20u64 {
        let mut child = spawn_saver(file.path(), 0);
        std::thread::sleep(Duration::from_millis(20 + round * 3));
        child.kill().unwrap();
        child.wait().unwrap();
        if beside(&dir, "k.key").iter().any(|n| n.ends_with(".new")) {
            left_by_kills += 1;
        }
    }
    eprintln!("rounds whose kill left a candidate: {left_by_kills} of 20");
    keyring.rotate().unwrap();
    keyring.retire(1).unwrap();
    file.save(&keyring.export()).unwrap();
    assert_eq!(beside(&dir, "k.key"), Vec::<String>::new());
    assert_eq!(
        any_file_unwraps(&dir.path(""), &wrapped),
        Vec::<String>::new()
    );
}

/// A5: two processes saving the same file at once, many times: each save
/// waits for the other's, so neither removes the other's candidate while
/// it is being written (which would fail the other's save), and both end.
#[test]
fn a5_processes_saving_at_once_both_succeed() {
    let dir = TempDir::named("keyring-file", "saving-together");
    let file = KeyringFile::new(dir.path("k.key"));
    file.load_or_create().unwrap();
    let children: Vec<_> = (0..2).map(|_| spawn_saver(file.path(), 150)).collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "a saver failed");
        assert!(String::from_utf8_lossy(&out.stdout).contains("SAVED"));
    }
    assert_eq!(beside(&dir, "k.key"), Vec::<String>::new());
    file.load_or_create().unwrap();
}

/// A3: the keyring file is reached through a symbolic link (a deployment
/// links `/etc/shop/shop.key` to where its secrets live). A save after a
/// key is retired replaces the file the link points to, and the link stays
/// a link: no file in either directory still unwraps what the retired key
/// wrapped. A process naming the file by its real path sees the save.
#[cfg(unix)]
#[test]
fn a3_a_save_through_a_symbolic_link_replaces_the_file_it_points_to() {
    let dir = TempDir::named("keyring-file", "symlink");
    std::fs::create_dir_all(dir.path("secrets")).unwrap();
    let real = KeyringFile::new(dir.path("secrets/k.key"));
    let keyring = real.load_or_create().unwrap();
    let wrapped = keyring.wrap(&[6; 32], &CONTEXT).unwrap();
    std::os::unix::fs::symlink(real.path(), dir.path("k.key")).unwrap();
    let linked = KeyringFile::new(dir.path("k.key"));
    assert_eq!(linked.load().unwrap(), real.load().unwrap());

    keyring.rotate().unwrap();
    keyring.retire(1).unwrap();
    linked.save(&keyring.export()).unwrap();

    let meta = std::fs::symlink_metadata(linked.path()).unwrap();
    assert!(meta.file_type().is_symlink(), "the link was replaced");
    assert_eq!(
        Keyring::import(&real.load().unwrap()).unwrap().versions(),
        [2]
    );
    assert_eq!(
        any_file_unwraps(&dir.path("secrets"), &wrapped),
        Vec::<String>::new()
    );
    assert_eq!(
        any_file_unwraps(&dir.path(""), &wrapped),
        Vec::<String>::new()
    );
}
