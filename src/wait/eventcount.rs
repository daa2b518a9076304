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
//!
//! A `membarrier` costs microseconds, as much as the futex calls of a wake-up, so parking at
//! every message would double what a parked round trip costs. The eventcount therefore has a
//! second mode, *sleepy*, kept in the high bits of `waiters` as a credit ([`CREDIT`]): a sleeper
//! that finds no credit runs the `membarrier` and then sets the credit; one that finds credit
//! runs a plain full fence instead, and so does every waker that finds credit, before it looks
//! at the count again. A wake that finds credit but no sleeper spends all of it, so a stream
//! whose other side slept once goes back to running no fence (and writing nothing here) at its
//! next wake; the next sleeper enters through the `membarrier` again. Why that is enough (DESIGN.md, "The parked path"):
//! a waker that read the word without credit and without the sleeper's count read it before that
//! credit's first setter counted itself, so before that setter's `membarrier`, which therefore
//! fenced the waker after its change; and every change of the word is a read-modify-write, so a
//! sleeper that finds credit synchronises with the setter and sees that change.

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
    /// Sleepers counted on `epoch` (the bits of [`COUNT`]), and the sleepy credit (the bits of
    /// [`CREDIT`]). Only ever changed by read-modify-writes: the protocol needs every change
    /// after a setting of the credit to continue its release sequence.
    waiters: AtomicU32,
}

/// The bits of `EventCount::waiters` that count the sleepers.
pub(crate) const COUNT: u32 = (1 << 20) - 1;

/// The bits of `EventCount::waiters` that hold the sleepy credit: while it is not zero, sleepers
/// and wakers run full fences instead of the sleeper's `membarrier` (see the module's docs). A
/// sleeper that enters sets all of them; a wake that finds no sleeper clears all of them. (A
/// build of layout version 7 or 8 spends one unit, the lowest of these bits, per such wake
/// instead: any mix of the two is safe, since credit may run out at any time.)
pub(crate) const CREDIT: u32 = !COUNT;

/// The lowest bit of [`CREDIT`], for the models that start with some credit.
#[cfg(all(test, loom))]
const CREDIT_UNIT: u32 = COUNT + 1;

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
        let waiters = self.waiters.load(Relaxed);
        if waiters != 0 {
            self.wake_slow(waiters);
        }
    }

    /// The part of [`wake`](Self::wake) after it found a sleeper or credit: in sleepy mode a
    /// full fence and a second look, then the syscall if anyone sleeps.
    #[cold]
    fn wake_slow(&self, mut waiters: u32) {
        if waiters & CREDIT != 0 {
            // Sleepy: a sleeper may have run a plain full fence instead of the membarrier, so
            // this side runs one too. Pairs with the fence in `park`'s sleepy branch.
            fence::full();
            waiters = self.waiters.load(Relaxed);
            if waiters & COUNT == 0 && waiters & CREDIT != 0 {
                // A wake-up with no one to wake: the other side is not sleeping now, so this
                // side is streaming. The whole credit is spent at once (a CAS from the word
                // read, so that it never sets credit nobody fenced for), and the next wakes run
                // no fence and write nothing here; the next sleeper enters through the
                // membarrier again. Lost to a racing change, nothing is spent.
                let _ = self
                    .waiters
                    .compare_exchange(waiters, waiters & COUNT, Relaxed, Relaxed);
            }
        }
        if waiters & COUNT != 0 {
            // SeqCst: pairs with the SeqCst load of the epoch in `park` (and `WaitSet::count`).
            self.epoch.fetch_add(1, SeqCst);
            futex_wake(&self.epoch, i32::MAX as u32);
        }
    }

    /// How many sleepers are counted.
    #[cfg(test)]
    pub(crate) fn sleepers(&self) -> u32 {
        self.waiters.load(Relaxed) & COUNT
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
        // The increment also reads the credit; where it finds some, it synchronises with the
        // sleeper that set it (through the release sequence of the `fetch_or` below).
        let before = self.waiters.fetch_add(1, SeqCst);
        let seen = self.epoch.load(SeqCst);
        // The heavy half of the fence pair whose light half is in `wake`: either `blocked()`
        // below sees the other side's change, or the other side sees our count and moves the
        // epoch on (so the futex wait returns).
        let reached = if before & CREDIT != 0 {
            // Sleepy: every waker that may miss our count finds the credit and runs a full
            // fence, paired with this one (see the module's docs).
            fence::full();
            true
        } else {
            let reached = fence::heavy();
            if reached {
                // The membarrier fenced every waker after our count was added: from here the
                // wakers fence themselves while credit lasts. SeqCst: read by the increment
                // above in later sleepers, and by the waker's loads.
                self.waiters.fetch_or(CREDIT, SeqCst);
            }
            reached
        };
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
///
/// A deadline that passes while spinning ends the wait with one more `attempt(true)` (see
/// [`last_look`]): the attempts of the spin do not look at the peers (that may read `/proc`),
/// and on a loaded machine the spin's yields can outlast a short timeout, which would otherwise
/// end in [`TimedOut`] though the other side is long gone. A deadline that passes while parked
/// needs no such look: every park is followed by an `attempt(true)` before the deadline is read.
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
            if deadline.is_some() && remaining(deadline).is_err() {
                return last_look(&mut attempt);
            }
            continue;
        }
        // Here the attempt just made was `attempt(true)` (`rounds >= spin`): it looked at the
        // peers, and at whether the ring is closed.
        let wait = remaining(deadline)?;
        events.park(min_opt(wait, recheck), &blocked, peers);
    }
}

/// How many times [`last_look`] tries again after an attempt that freed a dead claimer's slot
/// ([`Progress::Again`]): each such attempt changed the ring, so the next may finish, but a
/// segment scribbled on could stage dead claimers without end, and the deadline has passed.
const LAST_LOOKS: u32 = 4;

/// The end of a wait whose deadline passed while it spun: one more attempt that looks at
/// everything (`spun`: the peers' liveness, a dead claimer in the way), so that a call whose
/// other side is gone, or whose ring is closed, says so rather than [`TimedOut`] however long
/// the spin took. An attempt that finds a message or room then takes it.
#[cold]
#[inline(never)]
fn last_look<T>(attempt: &mut impl FnMut(bool) -> Progress<T>) -> Result<T, TimedOut> {
    for _ in 0..LAST_LOOKS {
        match attempt(true) {
            Progress::Done(r) => return Ok(r),
            Progress::Again => {}
            Progress::Blocked { .. } => break,
        }
    }
    Err(TimedOut)
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
    format!(
        "{}; waiters: count {COUNT:#x} credit {CREDIT:#x} (sleepy mode)",
        crate::layout::pin!(EventCount { epoch, waiters })
    )
}

#[cfg(all(test, not(loom)))]
mod tests {
    use std::cell::Cell;
    use std::time::Instant;

    use super::{DEFAULT_SPIN, EventCount, NoPeers, Progress, TimedOut, block};

    /// A deadline that passes while the call spins ends it with one attempt that looks at
    /// everything (`spun`), whatever the spin budget: here the deadline has passed before the
    /// first attempt, which looks at nothing.
    #[test]
    fn a_deadline_passed_in_the_spin_ends_with_a_full_look() {
        let events = EventCount::default();
        for spin in [1, DEFAULT_SPIN, u32::MAX] {
            let looks = Cell::new(0);
            let attempt = |spun: bool| {
                looks.set(looks.get() + 1);
                if spun {
                    Progress::Done("gone")
                } else {
                    Progress::Blocked { recheck: None }
                }
            };
            let r = block(
                &events,
                Some(Instant::now()),
                spin,
                attempt,
                || true,
                &NoPeers,
            );
            assert_eq!((r, looks.get()), (Ok("gone"), 2), "spin {spin}");
        }
    }

    /// The last look that finds nothing to finish is a timeout; one that freed a dead
    /// claimer's slot (`Again`) tries again, a bounded number of times.
    #[test]
    fn the_last_look_is_bounded() {
        let events = EventCount::default();
        for (again, expect) in [(false, 2), (true, 1 + super::LAST_LOOKS)] {
            let looks = Cell::new(0);
            let attempt = |spun: bool| {
                looks.set(looks.get() + 1);
                if spun && again {
                    Progress::Again
                } else {
                    Progress::<()>::Blocked { recheck: None }
                }
            };
            let r = block(
                &events,
                Some(Instant::now()),
                DEFAULT_SPIN,
                attempt,
                || true,
                &NoPeers,
            );
            assert_eq!((r, looks.get()), (Err(TimedOut), expect), "again {again}");
        }
    }
}

/// loom models of the park/wake handshake, with the `membarrier` modelled (see `fence`): the
/// waker's light fence is no fence, so a missing fence or a wrong mode shows up as a lost
/// wake-up, which the model's futex turns into a deadlock that loom reports.
///
/// `RUSTFLAGS="--cfg loom" cargo test --release --lib wait::eventcount::loom`
#[cfg(all(test, loom))]
mod loom {
    use loom::sync::Arc;
    use loom::thread;

    use super::{CREDIT, CREDIT_UNIT, EventCount, NoPeers};
    use crate::sync::atomic::AtomicU32;
    use crate::sync::atomic::Ordering::{Acquire, Relaxed, Release};
    use crate::wait::fence;

    /// A counter of messages with the eventcount its readers park on.
    #[derive(Default)]
    struct Channel {
        sent: AtomicU32,
        events: EventCount,
    }

    impl Channel {
        /// A channel whose eventcount starts in sleepy mode with `credit` units (as if a
        /// sleeper had entered before the model's threads started).
        fn with_credit(credit: u32) -> Channel {
            let c = Channel::default();
            c.events.waiters.store(credit * CREDIT_UNIT, Relaxed);
            c
        }

        fn send(&self, n: u32) {
            // Release: pairs with the Acquire load in `recv`.
            self.sent.store(n, Release);
            self.events.wake();
        }

        /// Parks until message `n` was sent (no spinning: every wait parks).
        fn recv(&self, n: u32) {
            // Acquire: pairs with the Release store in `send`.
            while self.sent.load(Acquire) < n {
                self.events
                    .park(None, || self.sent.load(Acquire) < n, &NoPeers);
            }
        }
    }

    fn model(f: impl Fn() + Send + Sync + 'static) {
        fence::model_membarrier(true);
        let mut builder = loom::model::Builder::new();
        if builder.preemption_bound.is_none() {
            builder.preemption_bound = Some(3);
        }
        builder.check(f);
        fence::model_membarrier(false);
    }

    /// A parked ping-pong of two rounds: the first sleeper on each side enters sleepy mode
    /// through the membarrier, the later ones find the credit and fence plainly.
    #[test]
    fn parked_ping_pong_enters_sleepy_mode() {
        model(|| {
            let there = Arc::new(Channel::default());
            let back = Arc::new(Channel::default());
            let echo = {
                let (there, back) = (there.clone(), back.clone());
                thread::spawn(move || {
                    for i in 1..=2 {
                        there.recv(i);
                        back.send(i);
                    }
                })
            };
            for i in 1..=2 {
                there.send(i);
                back.recv(i);
            }
            echo.join().expect("echo");
            assert_eq!(there.events.waiters.load(Relaxed) & !CREDIT, 0);
        });
    }

    /// A thread that sends messages 1 and 2 on `c`.
    fn send_two(c: &Arc<Channel>) -> thread::JoinHandle<()> {
        let c = c.clone();
        thread::spawn(move || {
            c.send(1);
            c.send(2);
        })
    }

    /// The credit runs out: a wake with no sleeper spends the last unit, racing with a sleeper
    /// that counts itself; whichever way it goes, no wake-up is lost.
    #[test]
    fn credit_runs_out_under_a_sleeper() {
        model(|| {
            let c = Arc::new(Channel::with_credit(1));
            let sender = send_two(&c);
            c.recv(1);
            c.recv(2);
            sender.join().expect("sender");
        });
    }

    /// Two sleepers on one eventcount (a queue's consumers), one of them maybe entering
    /// through the membarrier while the waker spends the last unit of credit.
    #[test]
    fn two_sleepers_and_the_last_credit() {
        model(|| {
            let c = Arc::new(Channel::with_credit(1));
            let other = {
                let c = c.clone();
                thread::spawn(move || c.recv(2))
            };
            let sender = send_two(&c);
            c.recv(1);
            other.join().expect("sleeper");
            sender.join().expect("sender");
        });
    }
}
