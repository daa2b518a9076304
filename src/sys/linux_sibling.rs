//! The fork server's system calls (see `process/forkserver.rs`): a `fork` whose child is a
//! child of the caller's parent (`clone3` with `CLONE_PARENT`), and the environment and
//! standard-input plumbing around it. Split from `linux.rs` only for its size.
//!
//! glibc has no `fork` that takes clone flags, so the child comes from a raw `clone3`, and the
//! two things glibc's own `fork` repairs in its child are repaired here the same way:
//! - the thread's id in glibc's thread descriptor, which a robust mutex writes into its lock
//!   word as the owner: `CLONE_CHILD_SETTID` makes the kernel store the child's id there (what
//!   glibc's `fork` asks for too). Its place is glibc's ABI of x86_64 (offset 0x2d0 of the
//!   descriptor, glibc 2.26 and later), checked on the running process before the first fork:
//!   the word there must hold this thread's id, and the robust list head the kernel knows must
//!   sit 16 bytes after it, where glibc keeps it. Elsewhere, or if the check fails, there is no
//!   fork server and children are spawned.
//! - the robust list, which the kernel clears in a forked child: it is registered again with
//!   the head this process had, so a lock the child holds when it dies is handed over with
//!   `OwnerDied`, as in any other process.
//!
//! `pthread_atfork` handlers do not run; the fork server runs before `main`, where the only one
//! registered is this crate's fork counter, which the child bumps itself.

use std::ffi::OsString;
use std::io;
use std::os::fd::OwnedFd;

/// Where glibc keeps a thread's id inside its thread descriptor (`struct pthread`).
#[cfg(target_arch = "x86_64")]
const TID_OFFSET: usize = 0x2d0;
/// Where glibc keeps the robust list head, from the thread id.
#[cfg(target_arch = "x86_64")]
const ROBUST_FROM_TID: usize = 16;

/// What a sibling fork needs, read once in the single-threaded fork server.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SiblingFork {
    /// The address of glibc's thread id word.
    tid: u64,
    /// The robust list head and its length, as the kernel has them.
    robust: (usize, usize),
}

/// Checks that this process can make sibling forks: one thread, on x86_64, with glibc's thread
/// descriptor laid out as expected.
pub(crate) fn sibling_fork_setup() -> io::Result<SiblingFork> {
    if super::thread_count()? != 1 {
        return Err(io::Error::other(
            "the fork server runs more than one thread",
        ));
    }
    setup_here()
}

#[cfg(target_arch = "x86_64")]
fn setup_here() -> io::Result<SiblingFork> {
    let unsupported = || io::Error::from(io::ErrorKind::Unsupported);
    // SAFETY: `pthread_self` has no preconditions; on glibc it is the address of the calling
    // thread's descriptor.
    let me = unsafe { libc::pthread_self() } as usize;
    let tid_at = me.checked_add(TID_OFFSET).ok_or_else(unsupported)?;
    // SAFETY: glibc's descriptor is larger than `TID_OFFSET + 4` bytes (2,304 on x86_64) and
    // stays mapped while the thread lives; the word is only read, and compared below.
    let tid_there = unsafe { std::ptr::read_volatile(tid_at as *const i32) };
    let tid = rustix::thread::gettid().as_raw_nonzero().get();
    let mut head: usize = 0;
    let mut len: usize = 0;
    // SAFETY: `get_robust_list(0, ..)` writes the calling thread's head and its length into the
    // two words passed.
    let r = unsafe {
        libc::syscall(
            libc::SYS_get_robust_list,
            0,
            &mut head as *mut usize,
            &mut len as *mut usize,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    if tid_there != tid || head != tid_at + ROBUST_FROM_TID || len == 0 {
        return Err(unsupported());
    }
    Ok(SiblingFork {
        tid: tid_at as u64,
        robust: (head, len),
    })
}

#[cfg(not(target_arch = "x86_64"))]
fn setup_here() -> io::Result<SiblingFork> {
    Err(io::Error::from(io::ErrorKind::Unsupported))
}

/// `struct clone_args` up to `tls` (`CLONE_ARGS_SIZE_VER0`).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
}

/// Forks this single-threaded process into a child of its parent: `Some(pid)` here, `None` in
/// the child.
pub(crate) fn sibling_fork(s: &SiblingFork) -> io::Result<Option<u32>> {
    let args = CloneArgs {
        flags: (libc::CLONE_PARENT | libc::CLONE_CHILD_SETTID) as u64,
        child_tid: s.tid,
        // Zero, as `clone3` requires with `CLONE_PARENT`: the child takes this process's own
        // exit signal, `SIGCHLD`, with which our parent started us.
        ..CloneArgs::default()
    };
    // SAFETY: without `CLONE_VM` this is a fork: the child runs on a copy of this address
    // space, on the same stack, returning 0 from the call. `child_tid` is the thread id word
    // of this thread's glibc descriptor (checked in `sibling_fork_setup`), which the kernel
    // sets in the child's copy, as glibc's `fork` has it do. The process runs one thread
    // (checked in `sibling_fork_setup`, and the fork server starts none), so no lock is held
    // by a thread missing in the child.
    let r = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &args as *const CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    match r {
        -1 => Err(io::Error::last_os_error()),
        0 => {
            // SAFETY: registers the head this thread had before the fork (the kernel cleared
            // it in the child); it is the same address in the child's copy of the memory.
            let r = unsafe { libc::syscall(libc::SYS_set_robust_list, s.robust.0, s.robust.1) };
            if r != 0 {
                // Without it, a lock this child held at its death would stay held: it must
                // not run. 121 is the status of a child that could not set itself up
                // (`process::child::EXIT_SETUP`).
                super::exit_now(121);
            }
            super::count_fork_in_child();
            Ok(None)
        }
        pid => Ok(Some(pid as u32)),
    }
}

/// Takes this process's standard input (the fork server's socket) as a close-on-exec
/// descriptor, and puts `/dev/null` in its place for the children.
pub(crate) fn take_stdin() -> io::Result<OwnedFd> {
    let stdin = std::io::stdin();
    let sock = rustix::io::fcntl_dupfd_cloexec(std::os::fd::AsFd::as_fd(&stdin), 3)?;
    let null = rustix::fs::open(
        "/dev/null",
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )?;
    // SAFETY: `dup2` onto descriptor 0, which this process owns as its standard input;
    // nothing holds a reference to the descriptor it replaces (the socket was duplicated).
    if unsafe { libc::dup2(std::os::fd::AsRawFd::as_raw_fd(&null), 0) } == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(sock)
}

/// Makes `vars` this process's whole environment, if only one thread runs (else leaves it).
/// Whether it did.
pub(crate) fn env_replace(vars: &[(OsString, OsString)]) -> bool {
    if super::thread_count().ok() != Some(1) {
        return false;
    }
    for (k, _) in std::env::vars_os() {
        // SAFETY: this process runs this thread only (checked above; only this thread could
        // start another), so no other thread reads the environment while it changes.
        unsafe { std::env::remove_var(k) };
    }
    for (k, v) in vars {
        if k.is_empty() || k.as_encoded_bytes().contains(&b'=') {
            continue;
        }
        // SAFETY: as above.
        unsafe { std::env::set_var(k, v) };
    }
    true
}
