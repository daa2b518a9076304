//! Processes and pools, as Python's `multiprocessing` has them: [`Process`] runs a function of
//! this program in a child process, [`Pool`] spreads calls over worker processes, and
//! [`ThreadPool`] is the same pool on threads (Python's `multiprocessing.dummy`).
//!
//! ```
//! use mpshm::process::{Pool, Process};
//!
//! fn square(x: u64) -> u64 {
//!     x * x
//! }
//!
//! let p = Process::new(square, 7);
//! p.start()?;
//! assert_eq!(p.join()?, 49);
//!
//! let pool = Pool::new(2)?;
//! assert_eq!(pool.map(square, 1..=4)?, [1, 4, 9, 16]);
//! # Ok::<(), mpshm::ProcessError>(())
//! ```
//!
//! A child is an ordinary OS process: this executable started again (it runs only the
//! function: mpshm takes it over before `main`), or a fork. Arguments and results are
//! [`Payload`]s, copied through shared memory (a process's own mailbox segment, a pool's
//! queues). If the program's start-up hook cannot run
//! (an unusual linker setup), `start` fails with [`NotIntercepted`](crate::ProcessError::NotIntercepted)
//! and the error says to call [`child_main`] first thing in `main`.
//!
//! Python's rules hold for the rest: [`current_process`], [`parent_process`] and
//! [`active_children`] say who is who (default names nest as Python's, `Process-3:1` for the
//! first process made in `Process-3`); a daemon child may not start children
//! ([`StartInDaemon`](crate::ProcessError::StartInDaemon)); and [`Process::close`] lets go of
//! an ended child, after which the handle answers
//! [`ProcessClosed`](crate::ProcessError::ProcessClosed).

mod channel;
mod child;
mod children;
mod collect;
mod engine;
mod entry;
mod forkserver;
mod jobs;
mod payload;
mod pool;
#[allow(
    clippy::module_inception,
    reason = "the Process type lives in process/process.rs, beside Pool in process/pool.rs"
)]
mod process;
mod workers;

pub use crate::error::{Exit, ProcessError};
#[cfg(all(test, not(loom)))]
pub(crate) use channel::shared_layout;
#[doc(hidden)]
pub use forkserver::fork_server_pid;
pub use forkserver::stop_fork_server;
pub use jobs::{AsyncResult, IMap};
pub use payload::Payload;
pub use pool::{DEFAULT_MAX_MESSAGE, Pool, PoolBuilder, ThreadPool};
pub use process::{Process, StartMethod};
pub use workers::{Processes, Threads};

use crate::sys;

/// Takes this process over if it is a spawned child, running its function and exiting; returns
/// at once in any other process.
///
/// mpshm does this by itself before `main` starts (from an ELF constructor), so a program needs
/// this call only where that hook cannot run; then a child's `start` fails with
/// [`NotIntercepted`](crate::ProcessError::NotIntercepted), whose message says to add it. A
/// program whose own start-up code must run in its children first (the hook runs before
/// `main`, and before constructors linked after mpshm's) sets `MPSHM_PROCESS_HOOK=main` in its
/// environment and calls this. Make it the first line of `main`:
///
/// ```
/// # #[allow(clippy::needless_doctest_main, reason = "the point is where the call goes")]
/// fn main() {
///     mpshm::process::child_main();
///     // ... the program ...
/// }
/// ```
pub fn child_main() {
    child::intercept();
}

/// Who a process is: Python's `current_process()`, `parent_process()` and the entries of
/// `active_children()`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProcessInfo {
    /// Its name: `MainProcess` for a program started otherwise than by mpshm, the name its
    /// parent gave it for a child.
    pub name: String,
    /// Its process id.
    pub pid: u32,
    /// Its parent's process id (0 if unknown).
    pub ppid: u32,
    /// Which process this is to the one that asked, for [`is_alive`](Self::is_alive).
    relation: Relation,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Relation {
    /// The process that asked.
    Itself,
    /// The parent of the process that asked.
    Parent,
    /// A child the process that asked started (from [`active_children`]).
    Child(ChildFd),
}

/// The pidfd held by a child's [`Process`] handle, as long as the handle lives.
#[derive(Clone)]
struct ChildFd(std::sync::Weak<std::os::fd::OwnedFd>);

impl PartialEq for ChildFd {
    fn eq(&self, other: &Self) -> bool {
        self.0.ptr_eq(&other.0)
    }
}

impl Eq for ChildFd {}

impl std::fmt::Debug for ChildFd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ChildFd")
    }
}

impl ProcessInfo {
    /// Whether the process still runs (Python's `parent_process().is_alive()`): always for
    /// [`current_process`]; for [`parent_process`], whether this process is still its child
    /// (a process whose parent ended is adopted by another, so a reused pid cannot fool it);
    /// for a child from [`active_children`], whether it has not exited, asked through its
    /// handle's pidfd (false once the handle is dropped or closed).
    ///
    /// ```
    /// assert!(mpshm::process::current_process().is_alive());
    /// ```
    pub fn is_alive(&self) -> bool {
        match &self.relation {
            Relation::Itself => true,
            Relation::Parent => sys::parent_pid() == self.pid,
            Relation::Child(ChildFd(pidfd)) => children::runs(pidfd),
        }
    }
}

/// This process: its name, pid and parent's pid.
///
/// ```
/// let me = mpshm::process::current_process();
/// assert_eq!(me.pid, std::process::id());
/// assert_eq!(me.name, "MainProcess");
/// ```
pub fn current_process() -> ProcessInfo {
    ProcessInfo {
        name: child::identity().map_or_else(|| "MainProcess".to_owned(), |i| i.name),
        pid: std::process::id(),
        ppid: sys::parent_pid(),
        relation: Relation::Itself,
    }
}

/// The process that started this one through mpshm, or `None` in a main process. Its `pid`
/// is the one it had when it started this process, also after it ended (as Python's); ask
/// [`ProcessInfo::is_alive`] whether it still runs.
///
/// ```
/// assert!(mpshm::process::parent_process().is_none());
/// ```
pub fn parent_process() -> Option<ProcessInfo> {
    let me = child::identity()?;
    let ppid = if me.parent == sys::parent_pid() {
        sys::parent_of(me.parent).unwrap_or(0)
    } else {
        // It ended: its pid may name another process now.
        0
    };
    Some(ProcessInfo {
        name: me.parent_name,
        pid: me.parent,
        ppid,
        relation: Relation::Parent,
    })
}

/// The children of this process that still run (Python's `active_children()`): every
/// [`Process`] started here, from any thread, whose child has not exited and whose handle has
/// not been dropped or closed, in the order they were started. [`Pool`] workers count, as in
/// Python (each is a `Process` named `PoolWorker-<n>`); a fork server does not.
///
/// Each is a [`ProcessInfo`]: its name, its pid, this process's pid as `ppid`; its
/// [`is_alive`](ProcessInfo::is_alive) asks again, through the handle's pidfd, so a reused pid
/// cannot fool it. A child that has exited leaves the list; its handle reaps it, and keeps its
/// exit code and result, at its next `join`, `is_alive`, `exitcode` or drop. A forked child
/// does not see its parent's children.
///
/// ```
/// use mpshm::process::{Process, active_children};
///
/// fn nothing(_: ()) {}
///
/// let p = Process::new(nothing, ());
/// p.start()?;
/// let pid = p.pid().expect("started");
/// // It may have ended already; if it is listed, it is by its pid and name.
/// if let Some(c) = active_children().iter().find(|c| c.pid == pid) {
///     assert_eq!(c.name, p.name());
/// }
/// p.join()?;
/// assert!(active_children().iter().all(|c| c.pid != pid));
/// # Ok::<(), mpshm::ProcessError>(())
/// ```
pub fn active_children() -> Vec<ProcessInfo> {
    children::active()
}

/// The number of CPUs online (Python's `cpu_count()`). A [`Pool`] starts as many workers as
/// this process may run on at once, which can be fewer (`std::thread::available_parallelism`).
///
/// ```
/// assert!(mpshm::process::cpu_count() >= 1);
/// ```
pub fn cpu_count() -> usize {
    sys::online_cpus()
}

/// The segment name a parent handed this process under `key` with
/// [`Process::set_segment`], if any.
///
/// ```
/// assert_eq!(mpshm::process::segment_name("NO_SUCH_KEY"), None);
/// ```
pub fn segment_name(key: &str) -> Option<String> {
    std::env::var(format!("{}{key}", child::SEGMENT_ENV_PREFIX)).ok()
}
