//! What the process and pool tests need besides: each test runs alone and is followed by checks
//! that it left no child process (running or unreaped) and no segment of this process behind.

use std::os::fd::OwnedFd;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

static SERIAL: Mutex<()> = Mutex::new(());

/// When the test now running began (a second early: file times come from a coarse clock): a
/// segment named after a pid but older than that is another process's that had the same pid
/// (`/dev/shm` is shared, and a process killed by `SIGKILL` leaves its pools' channels).
static SINCE: Mutex<Option<SystemTime>> = Mutex::new(None);

/// Runs `f` alone, then checks that no child process and no segment of this process is left.
pub fn checked(f: impl FnOnce()) {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    *SINCE.lock().unwrap_or_else(|e| e.into_inner()) =
        Some(SystemTime::now() - Duration::from_secs(1));
    f();
    assert_no_children();
    assert_no_segments();
}

pub fn assert_no_children() {
    assert!(
        std::path::Path::new("/proc/thread-self/children").exists(),
        "this kernel does not list children in /proc (CONFIG_PROC_CHILDREN)"
    );
    let mut kids = String::new();
    for task in std::fs::read_dir("/proc/self/task").expect("tasks") {
        let path = task.expect("task").path().join("children");
        match std::fs::read_to_string(&path) {
            Ok(k) => kids += &k,
            // A thread that ended since the listing.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => panic!("{}: {e}", path.display()),
        }
    }
    assert!(
        kids.trim().is_empty(),
        "child processes left (running or unreaped): {kids}"
    );
}

pub fn assert_no_segments() {
    assert_no_segments_of(std::process::id());
}

/// Checks that no segment made by process `pid` during this test is in `/dev/shm`.
pub fn assert_no_segments_of(pid: u32) {
    let prefix = format!("mpx{pid}-");
    let since = SINCE
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let left: Vec<String> = std::fs::read_dir("/dev/shm")
        .expect("/dev/shm")
        .filter_map(|e| {
            let e = e.ok()?;
            let changed = e.metadata().ok()?.modified().ok()?;
            let name = e.file_name().into_string().ok()?;
            (changed >= since).then_some(name)
        })
        .filter(|n| n.starts_with(&prefix))
        .collect();
    assert!(left.is_empty(), "segments left: {left:?}");
}

/// A pidfd for a process that is not our child; it is killed when this is dropped, so that a
/// failing test leaves no process behind.
pub struct Pidfd(pub OwnedFd);

impl Drop for Pidfd {
    fn drop(&mut self) {
        let _ = rustix::process::pidfd_send_signal(&self.0, rustix::process::Signal::KILL);
    }
}

pub fn pidfd(pid: u32) -> Pidfd {
    let pid = rustix::process::Pid::from_raw(pid as i32).expect("pid");
    Pidfd(
        rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()).expect("pidfd_open"),
    )
}

/// Whether the process behind `fd` ends within `timeout`.
pub fn ends_within(fd: &Pidfd, timeout: Duration) -> bool {
    use std::os::fd::AsRawFd;
    let mut p = libc::pollfd {
        fd: fd.0.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd on the stack.
    unsafe { libc::poll(&mut p, 1, timeout.as_millis() as libc::c_int) == 1 }
}
