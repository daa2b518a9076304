//! Every operating-system call mpshm makes, one file per platform.
//!
//! The rest of the crate sees only the safe functions and types re-exported here. The one back
//! end is Linux with glibc on a 64-bit target (`linux.rs`); any other target stops the build
//! with an error that names the supported ones. A macOS back end would follow the same shape
//! (POSIX `shm_open`, `kill(pid, 0)`, and a lock that is robust only where the platform offers
//! robust mutexes).
//!
//! What the Linux back end assumes of its platform, and how each assumption is held to:
//! - glibc's `pthread_mutex_t` layout on 64-bit targets (the lock word at 0, the recursion
//!   count at 4, the type word at 16): checked at run time, on a mutex of its own, before the
//!   first segment with a lock is made or locked (`RobustMutex::init`, `checked`); a C library
//!   laid out otherwise gets `ErrorKind::Unsupported`, never a misread mutex.
//! - glibc 2.30 or later, for `pthread_mutex_clocklock`: the build links against that symbol
//!   version, so an older glibc fails at link or load time ("version `GLIBC_2.30' not found").
//! - Linux 4.16 (`membarrier`), 5.3 and 5.4 (`pidfd_open`, `waitid(P_PIDFD)`) and 5.16
//!   (`futex_waitv`): asked at run time; without the first and last, the crate falls back to
//!   slower modes (`fence_mode`, `death_notice`), and without pidfds `Process` and `Pool`
//!   fail to start a child with an I/O error.

#[cfg(not(all(target_os = "linux", target_env = "gnu", target_pointer_width = "64")))]
compile_error!(
    "mpshm supports Linux with glibc on 64-bit targets (x86_64-unknown-linux-gnu, \
     aarch64-unknown-linux-gnu and the other *-linux-gnu targets with 64-bit pointers): its \
     robust cross-process lock is glibc's robust, process-shared pthread mutex, whose layout it \
     relies on"
);

#[cfg(all(target_os = "linux", target_env = "gnu", target_pointer_width = "64"))]
#[path = "linux.rs"]
mod imp;

#[cfg(all(target_os = "linux", target_env = "gnu", target_pointer_width = "64"))]
pub(crate) use imp::*;

// The watch on robust-mutex waits, which `imp`'s locks wait under.
#[cfg(all(target_os = "linux", target_env = "gnu", target_pointer_width = "64"))]
#[path = "linux_watch.rs"]
mod watch;

// The fork server's clone, used by the process module only (not built for the loom models).
#[cfg(all(
    target_os = "linux",
    target_env = "gnu",
    target_pointer_width = "64",
    not(loom)
))]
#[path = "linux_sibling.rs"]
mod sibling;

#[cfg(all(
    target_os = "linux",
    target_env = "gnu",
    target_pointer_width = "64",
    not(loom)
))]
pub(crate) use sibling::*;

/// Tells the processor that this core is done with the cache line holding `p` for now
/// (`cldemote` on x86_64): it may move the line out of this core's caches into the shared
/// last-level cache, where the next core to read or write it finds it without a snoop of this
/// core. A hint, which processors without it run as a no-op; nothing on other architectures.
/// The rings demote a small message's slot lines once they have handed them to the other side
/// (see DESIGN.md, "Handing a slot's lines over").
#[inline(always)]
pub(crate) fn demote_line(p: *const u8) {
    #[cfg(all(target_arch = "x86_64", not(miri)))]
    // SAFETY: `cldemote` changes no architectural state (no memory, register or flag) and
    // raises no exception for any address: only a `lock` prefix, which this has not, makes it
    // `#UD`. Its encoding lies in the hint-NOP space, so processors without it run it as a NOP.
    unsafe {
        std::arch::asm!(
            "cldemote byte ptr [{0}]",
            in(reg) p,
            options(nostack, preserves_flags, readonly)
        );
    }
    #[cfg(not(all(target_arch = "x86_64", not(miri))))]
    let _ = p;
}
