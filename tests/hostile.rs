//! Segments attacked by a same-user process: links, FIFOs and directories planted at a name,
//! forbidden mode bits, scribbled control words, truncation. Each case must end in a typed error
//! or a bounded outcome that the threat model in `DESIGN.md` describes: never a panic, a hang or
//! a crash of the process under attack.

mod common;

use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use common::name;
use mpshm::{Error, Options, Value};

fn main() {
    common::run(
        &[
            ("symlink_is_never_followed", symlink_is_never_followed),
            (
                "fifo_at_the_name_blocks_nothing",
                fifo_at_the_name_blocks_nothing,
            ),
            ("directory_is_refused", directory_is_refused),
            (
                "mode_takes_permission_bits_only",
                mode_takes_permission_bits_only,
            ),
        ],
        &[],
    );
}

fn shm_path(n: &str) -> PathBuf {
    Path::new("/dev/shm").join(n)
}

/// Runs `f` on another thread and fails the test if it does not finish within 10 s (a call that
/// blocks for ever would otherwise hang the suite).
fn finishes<R: Send + 'static>(what: &str, f: impl FnOnce() -> R + Send + 'static) -> R {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(10))
        .unwrap_or_else(|_| panic!("{what} blocked"))
}

fn mkfifo(path: &Path) {
    let c = CString::new(path.to_str().expect("utf-8 path")).expect("no NUL");
    // SAFETY: `c` is a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
}

/// A link at the name is not followed: `open` names it, `create` finds the name taken, the file
/// it points to is never opened, mapped or written, and `unlink` removes the link only.
fn symlink_is_never_followed() {
    // A real segment elsewhere to point at, so that a followed link would open cleanly.
    let target_name = name("target");
    let target = Value::<u64>::create(&target_name, 5).expect("create target");
    let before = std::fs::read(shm_path(&target_name)).expect("read target");
    let link = name("link");
    std::os::unix::fs::symlink(shm_path(&target_name), shm_path(&link)).expect("symlink");

    match Value::<u64>::open(&link) {
        Err(Error::NotRegular { name, found }) => {
            assert_eq!(name, link);
            assert_eq!(found, "symbolic link");
        }
        other => panic!("expected NotRegular, got {other:?}"),
    }
    assert!(matches!(
        Value::<u64>::create(&link, 1),
        Err(Error::AlreadyExists { .. })
    ));
    assert!(matches!(
        Value::<u64>::open_or_create(&link, 1),
        Err(Error::NotRegular { .. })
    ));
    let msg = Value::<u64>::open(&link).expect_err("link").to_string();
    assert!(
        msg.contains("symbolic link") && msg.contains("unlink"),
        "{msg}"
    );
    assert!(
        mpshm::segments()
            .expect("list")
            .iter()
            .all(|s| s.name != link),
        "the listing followed the link"
    );
    assert_eq!(std::fs::read(shm_path(&target_name)).expect("read"), before);
    mpshm::unlink(&link).expect("unlink the link");
    assert!(!shm_path(&link).exists());
    assert_eq!(target.get().expect("target still there"), 5);
}

/// A FIFO planted at a name: `open` refuses it at once, and a creator whose segment was
/// unlinked and replaced by one drops its handle without blocking (and leaves the FIFO).
fn fifo_at_the_name_blocks_nothing() {
    let n = name("fifo");
    mkfifo(&shm_path(&n));
    let opened = {
        let n = n.clone();
        finishes("open of a FIFO", move || Value::<u64>::open(&n).map(drop))
    };
    assert!(
        matches!(opened, Err(Error::NotRegular { found: "FIFO", .. })),
        "{opened:?}"
    );
    assert!(mpshm::segments().is_ok());
    std::fs::remove_file(shm_path(&n)).expect("remove fifo");

    // The creator's name is taken away and a FIFO put in its place.
    let n = name("fifo2");
    let v = Value::<u64>::create(&n, 1).expect("create");
    mpshm::unlink(&n).expect("unlink");
    mkfifo(&shm_path(&n));
    finishes("drop of a creator whose name is a FIFO", move || drop(v));
    assert!(
        shm_path(&n).exists(),
        "the creator removed what it did not create"
    );
    std::fs::remove_file(shm_path(&n)).expect("remove fifo");
}

fn directory_is_refused() {
    let n = name("dir");
    std::fs::create_dir(shm_path(&n)).expect("mkdir");
    assert!(matches!(
        Value::<u64>::open(&n),
        Err(Error::NotRegular {
            found: "directory",
            ..
        })
    ));
    assert!(matches!(
        Value::<u64>::create(&n, 0),
        Err(Error::AlreadyExists { .. })
    ));
    std::fs::remove_dir(shm_path(&n)).expect("rmdir");
}

/// Setuid, setgid, sticky and file-type bits are refused; the permission bits are applied.
fn mode_takes_permission_bits_only() {
    for mode in [0o6777, 0o4600, 0o2600, 0o1600, 0o10600, 0o100600, u32::MAX] {
        let mut opts = Options::new();
        opts.mode(mode);
        let n = name("mode");
        match Value::<u64>::create_with(&n, 0, &opts) {
            Err(Error::InvalidMode { mode: m }) => assert_eq!(m, mode),
            other => panic!("mode {mode:#o}: expected InvalidMode, got {other:?}"),
        }
        assert!(!shm_path(&n).exists(), "mode {mode:#o} left a file");
    }
    let msg = Value::<u64>::create_with(&name("mode"), 0, Options::new().mode(0o4600))
        .expect_err("setuid")
        .to_string();
    assert!(msg.contains("0o4600") && msg.contains("0o777"), "{msg}");
    let n = name("mode");
    let _v = Value::<u64>::create_with(&n, 0, Options::new().mode(0o600)).expect("0o600");
    let mode = std::fs::metadata(shm_path(&n)).expect("stat").permissions();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode) & 0o7777,
        0o600
    );
}
