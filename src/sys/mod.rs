//! Every operating-system call mpshm makes, one file per platform.
//!
//! The rest of the crate sees only the safe functions and types re-exported here. Linux is the tier-1
//! back end; a macOS back end follows the same shape (POSIX `shm_open`, `kill(pid, 0)`, and a lock
//! that is robust only where the platform offers robust mutexes).

#[cfg_attr(target_os = "linux", path = "linux.rs")]
mod imp;

pub(crate) use imp::*;
