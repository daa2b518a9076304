//! Waiting on several objects at once ([`wait`], Python's `multiprocessing.connection.wait`),
//! and how a blocked call learns of a peer's death ([`death_notice`]).
//!
//! [`wait`] counts itself a sleeper on every object's eventcount, looks once more whether any
//! is ready, and sleeps on all their words (and the liveness words of their peers) with one
//! `futex_waitv`: the first message, close or peer death wakes it, as fast as it wakes a
//! single blocked `get`.

use std::time::{Duration, Instant};

use super::backoff::Backoff;
use super::eventcount::{SPUN_AFTER, min_opt};
use super::fence::{self, UNFENCED_POLL};
use super::set::WaitSet;

/// How often a waiter looks at a peer it cannot be woken for: one whose liveness lock is not
/// held (see [`death_notice`] and the crate's docs on peer death), every peer where the kernel
/// has no `futex_waitv`, and the words beyond the 128 that one `futex_waitv` call takes.
pub const PEER_POLL: Duration = Duration::from_millis(10);

/// How a blocked call learns that the process on the other side died (see [`death_notice`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DeathNotice {
    /// The kernel wakes it: it sleeps with `futex_waitv` (Linux 5.16 and later) on its data
    /// word and on the robust futex that each peer holds while attached, which the kernel
    /// marks and wakes when the peer's thread dies. A blocked `recv` or `get` fails with
    /// `Disconnected` within about a millisecond of the peer's death.
    Kernel,
    /// It looks again every [`PEER_POLL`]: `futex_waitv` is missing (an older kernel) or
    /// refused (a seccomp filter).
    Polling,
}

/// Which way peer death is noticed in this process.
///
/// ```
/// match mpshm::death_notice() {
///     mpshm::DeathNotice::Kernel => println!("woken at once"),
///     mpshm::DeathNotice::Polling => println!("looked for every {:?}", mpshm::PEER_POLL),
///     _ => {}
/// }
/// ```
pub fn death_notice() -> DeathNotice {
    if crate::sys::futex_waitv_works() {
        DeathNotice::Kernel
    } else {
        DeathNotice::Polling
    }
}

pub(crate) mod sealed {
    /// What [`Waitable`](super::Waitable) objects tell [`wait`](super::wait) to sleep on.
    pub trait WaitOn {
        /// Counts the caller as a sleeper on this object's eventcount and adds the words to
        /// sleep on to `set`; `false` if something changed meanwhile (look again first).
        fn wait_on<'a>(&'a self, set: &mut super::WaitSet<'a>) -> bool;
    }
}

/// Something [`wait`] can wait on: [`Connection`](crate::Connection),
/// [`PipeReader`](crate::PipeReader), [`Queue`](crate::Queue),
/// [`JoinableQueue`](crate::JoinableQueue), [`SimpleQueue`](crate::SimpleQueue),
/// [`ByteQueue`](crate::ByteQueue), `SerdeQueue` and [`SpscConsumer`](crate::SpscConsumer).
pub trait Waitable: sealed::WaitOn {
    /// Whether a receive would not block now: a message is there, the object is closed, or
    /// the other side is gone (a pipe's peer closed or died; every producer of a queue that
    /// had one has detached or died). The receive then returns the message or the error.
    fn is_ready(&self) -> bool;
}

/// Waits until at least one of `objects` is ready to receive from (see
/// [`Waitable::is_ready`]: a message, a close or a peer's death), or `timeout` passes (forever
/// if `None`); returns the indices of the ready ones, like `multiprocessing.connection.wait`.
/// It spins briefly, then sleeps on every object's words at once (see [`death_notice`]).
///
/// ```
/// use mpshm::prelude::*;
/// let name = format!("doc-wait-{}", std::process::id());
/// let (a, b) = mpshm::Pipe::create(&name)?;
/// let q = mpshm::Queue::<u8>::create(&format!("{name}q"), 1)?;
/// b.send(&1u8).expect("open");
/// let ready = mpshm::wait(&[&a, &q], Some(std::time::Duration::from_secs(1)));
/// assert_eq!(ready, [0]);
/// # Ok::<(), mpshm::Error>(())
/// ```
pub fn wait(objects: &[&dyn Waitable], timeout: Option<Duration>) -> Vec<usize> {
    let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
    let ready = || -> Vec<usize> {
        (0..objects.len())
            .filter(|&i| objects[i].is_ready())
            .collect()
    };
    let mut backoff = Backoff::new();
    loop {
        let now = ready();
        if !now.is_empty() {
            return now;
        }
        let left = match deadline {
            None => None,
            Some(d) => match d.checked_duration_since(Instant::now()) {
                Some(left) if !left.is_zero() => Some(left),
                _ => return now,
            },
        };
        if backoff.steps() < SPUN_AFTER {
            backoff.snooze();
            continue;
        }
        let mut set = WaitSet::within(left);
        if !objects.iter().all(|o| o.wait_on(&mut set)) {
            continue;
        }
        // The heavy half of the fence pair, as in `EventCount::park`: either the look below sees a
        // change, or its maker sees this sleeper counted and wakes it.
        let reached = fence::heavy();
        if objects.iter().any(|o| o.is_ready()) {
            continue;
        }
        let left = if reached {
            left
        } else {
            min_opt(left, Some(UNFENCED_POLL))
        };
        set.sleep(left);
    }
}
