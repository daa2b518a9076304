//! The eventcount every ring sleeps on, and the blocking loop around it: spin a while, then
//! park on the eventcount until the other side wakes it, a peer dies, or the deadline passes.
//!
//! A blocked side counts itself in `waiters` and sleeps on the futex word `epoch`; the other
//! side, after every change a sleeper may wait for, issues the wake syscall only when that count
//! is non-zero, so the uncontended path makes no syscalls at all. The count and the change need a
//! store-then-load fence on each side (Dekker's handshake); the waking side's is a compiler fence
//! only, and the parking side pays for both with a `membarrier` (see [`fence`]), so a stream of
//! messages runs no fence at all. Where the `membarrier` is refused, a sleeper wakes every
//! [`UNFENCED_POLL`](super::UNFENCED_POLL) to look again, since a peer's wake-up may then be lost.

use std::time::{Duration, Instant};

use super::backoff::Backoff;
use super::fence::{self, UNFENCED_POLL};
use super::futex::{futex_wait, futex_wake};
use crate::sync::atomic::AtomicU32;
use crate::sync::atomic::Ordering::{Relaxed, SeqCst};

/// An eventcount in shared memory: the futex word sleepers wait on, and how many sleep.
#[repr(C)]
#[derive(Default)]
pub(crate) struct EventCount {
    /// Moved on by every wake that finds a sleeper: a sleeper sleeps while it holds what it
    /// read before its last look at its condition.
    epoch: AtomicU32,
    /// Sleepers counted on `epoch`.
    waiters: AtomicU32,
}

impl EventCount {
    /// The futex word sleepers wait on (for a [`WaitSet`](super::WaitSet) or a `Bump`).
    #[inline]
    pub(crate) fn epoch(&self) -> &AtomicU32 {
        &self.epoch
    }

    /// The count of sleepers on [`epoch`](Self::epoch).
    #[inline]
    pub(crate) fn waiters(&self) -> &AtomicU32 {
        &self.waiters
    }

    /// Wakes the sleepers, with a syscall only if any are counted. Called after the change
    /// they may wait for.
    #[inline]
    pub(crate) fn wake(&self) {
        // The light half of the fence pair whose heavy half is in `park`.
        fence::light();
        if self.waiters.load(Relaxed) > 0 {
            // SeqCst: pairs with the SeqCst load of the epoch in `park` (and `WaitSet::count`).
            self.epoch.fetch_add(1, SeqCst);
            futex_wake(&self.epoch, i32::MAX as u32);
        }
    }

    /// Sleeps on the epoch while `blocked()` holds, at most `timeout`, through `peers` (which
    /// may watch more words, so that a peer's death wakes it too).
    pub(crate) fn park(
        &self,
        timeout: Option<Duration>,
        blocked: impl Fn() -> bool,
        peers: &impl Peers,
    ) {
        // SeqCst, both: the count and the epoch are read by the waker after its light fence.
        self.waiters.fetch_add(1, SeqCst);
        let seen = self.epoch.load(SeqCst);
        // The heavy half of the fence pair whose light half is in `wake`: either `blocked()`
        // below sees the other side's change, or the other side sees our count and moves the
        // epoch on (so the futex wait returns).
        let reached = fence::heavy();
        if blocked() {
            // Without the membarrier a peer's light fence is out of our reach (see `fence`), so
            // its wake-up may be lost: look again now and then.
            let timeout = if reached {
                timeout
            } else {
                min_opt(timeout, Some(UNFENCED_POLL))
            };
            peers.sleep(&self.epoch, seen, timeout);
        }
        // SeqCst: as the increment.
        self.waiters.fetch_sub(1, SeqCst);
    }
}

/// Rounds of spinning after which a waiter does what one about to sleep does (looks whether a
/// claimer in its way died, stops waiting for a batch), even if it spins on.
pub(crate) const SPUN_AFTER: u32 = 200;

/// How many rounds a blocked call spins before it sleeps, unless its handle is told otherwise
/// (`set_spin`).
pub(crate) const DEFAULT_SPIN: u32 = SPUN_AFTER;

/// The processes on the other side of a blocked operation, as far as it cares: whether they are
/// gone, and how to sleep so that their death wakes it (`attach`, [`WaitSet`](super::WaitSet)).
pub(crate) trait Peers {
    /// Whether the other side is gone: a blocked operation that finds nothing to do gives up.
    /// Read before the operation looks at what it waits for, so that what a peer did before it
    /// went is seen.
    fn gone(&self) -> bool;

    /// Sleeps while `epoch` holds `seen` (the caller is counted on it), and while nothing about
    /// the peers changes, at most `timeout`.
    fn sleep(&self, epoch: &AtomicU32, seen: u32, timeout: Option<Duration>);
}

/// No one to watch: the other side is never gone, and a sleep is on the epoch alone.
pub(crate) struct NoPeers;

impl Peers for NoPeers {
    fn gone(&self) -> bool {
        false
    }

    fn sleep(&self, epoch: &AtomicU32, seen: u32, timeout: Option<Duration>) {
        futex_wait(epoch, seen, timeout);
    }
}

/// What one attempt of a blocking operation found.
pub(crate) enum Progress<T> {
    /// Finished: the outcome.
    Done(T),
    /// Something changed (a dead claimer's slot was freed): try again at once.
    Again,
    /// Must wait for the other side; `recheck` bounds the sleep, to look at something nothing
    /// will wake the sleeper for (a claimer's liveness).
    Blocked { recheck: Option<Duration> },
}

/// The deadline of a blocking operation passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TimedOut;

/// The wait every blocking ring operation shares: calls `attempt(spun)` until it is done;
/// between attempts spins `spin` rounds with a [`Backoff`], then parks on `events` (while
/// `blocked()` holds) until the other side wakes it, the `recheck` interval passes, or
/// `deadline`. `spun` tells `attempt` that the spin budget is spent, or [`SPUN_AFTER`] rounds
/// are. `deadline` holds while spinning too: a handle set to busy-poll (`set_spin(u32::MAX)`)
/// would otherwise spin past it, and past a dead claimer, for 2^32 rounds. The sleep is
/// `peers`'.
pub(crate) fn block<T>(
    events: &EventCount,
    deadline: Option<Instant>,
    spin: u32,
    mut attempt: impl FnMut(bool) -> Progress<T>,
    blocked: impl Fn() -> bool,
    peers: &impl Peers,
) -> Result<T, TimedOut> {
    let mut backoff = Backoff::new();
    loop {
        let rounds = backoff.steps();
        let recheck = match attempt(rounds >= spin.min(SPUN_AFTER)) {
            Progress::Done(r) => return Ok(r),
            Progress::Again => continue,
            Progress::Blocked { recheck } => recheck,
        };
        if rounds < spin {
            backoff.snooze();
            if deadline.is_some() {
                remaining(deadline)?;
            }
            continue;
        }
        let wait = remaining(deadline)?;
        events.park(min_opt(wait, recheck), &blocked, peers);
    }
}

/// What is left until `deadline` (`None`: forever), or [`TimedOut`] if nothing is.
#[inline]
pub(crate) fn remaining(deadline: Option<Instant>) -> Result<Option<Duration>, TimedOut> {
    match deadline {
        None => Ok(None),
        Some(d) => match d.checked_duration_since(Instant::now()) {
            Some(left) if !left.is_zero() => Ok(Some(left)),
            _ => Err(TimedOut),
        },
    }
}

/// The shorter of two optional durations (`None` is forever).
#[inline]
pub(crate) fn min_opt(a: Option<Duration>, b: Option<Duration>) -> Option<Duration> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    }
}

/// The eventcount's layout, for the pinned layout of the structures that hold one
/// (`src/layout.rs`).
#[cfg(all(test, not(loom)))]
pub(crate) fn shared_layout() -> String {
    crate::layout::pin!(EventCount { epoch, waiters })
}
