//! The futex words one thread sleeps on at once: the eventcounts ("epochs") of the objects it
//! waits for, and the liveness words of the processes on their other side (see `attach`).
//!
//! With `futex_waitv` (Linux 5.16) the thread sleeps on all of them in one call, and wakes as
//! soon as any is woken or changes. The kernel wakes only one sleeper when a robust futex's
//! owner dies, so a sleeper that finds a liveness word changed bumps the eventcounts that word
//! stands for and wakes everyone on them: the others then look again themselves. Without
//! `futex_waitv` (an older kernel, a filter) a thread sleeps on its first eventcount alone and
//! looks at the rest again every [`PEER_POLL`](crate::PEER_POLL) (every millisecond when it
//! waits on several objects).

use std::sync::atomic::AtomicU32;
use std::sync::atomic::Ordering::{Relaxed, SeqCst};
use std::time::{Duration, Instant};

use super::eventcount::{EventCount, min_opt};
use crate::sys;

/// How long a sleeper that waits on several objects sleeps at most where it cannot sleep on all
/// of their words at once.
const MANY_POLL: Duration = Duration::from_millis(1);

/// The eventcounts to wake when a liveness word changes: the ones whose sleepers watch it.
#[derive(Clone, Copy, Default)]
pub(crate) struct Bump<'a>(pub(crate) [Option<&'a AtomicU32>; 2]);

impl Bump<'_> {
    /// Moves every eventcount on and wakes all its sleepers, in any process.
    pub(crate) fn wake(&self) {
        for epoch in self.0.into_iter().flatten() {
            // SeqCst: as the waker's bump in `EventCount::wake`, which the sleepers' loads pair with.
            epoch.fetch_add(1, SeqCst);
            sys::futex_wake(epoch, i32::MAX as u32);
        }
    }
}

#[derive(Clone, Copy)]
struct Epoch<'a> {
    word: &'a AtomicU32,
    /// The sleeper count this set added itself to (and takes itself off again on drop).
    waiters: Option<&'a AtomicU32>,
    seen: u32,
}

#[derive(Clone, Copy)]
struct Liveness<'a> {
    word: &'a AtomicU32,
    expected: u32,
    bump: Bump<'a>,
}

/// A list kept inline up to `N` entries, so that a sleep on a few words allocates nothing.
struct Few<T, const N: usize> {
    inline: [Option<T>; N],
    more: Vec<T>,
}

impl<T: Copy, const N: usize> Few<T, N> {
    fn new() -> Few<T, N> {
        Few {
            inline: [None; N],
            more: Vec::new(),
        }
    }

    fn push(&mut self, v: T) {
        match self.inline.iter_mut().find(|slot| slot.is_none()) {
            Some(slot) => *slot = Some(v),
            None => self.more.push(v),
        }
    }

    fn iter(&self) -> impl Iterator<Item = &T> {
        self.inline.iter().flatten().chain(&self.more)
    }

    fn len(&self) -> usize {
        self.inline.iter().flatten().count() + self.more.len()
    }
}

/// What one sleeper watches (public in name only: the sealed `Waitable` trait takes it).
pub struct WaitSet<'a> {
    epochs: Few<Epoch<'a>, 4>,
    words: Few<Liveness<'a>, 4>,
    /// The longest sleep, set by what the sleeper must look at again rather than be woken for.
    poll: Option<Duration>,
    /// When the sleeper's own wait ends: a confirmation (`attach`) stops there too.
    until: Option<Instant>,
    kernel: bool,
}

impl<'a> WaitSet<'a> {
    pub(crate) fn new() -> WaitSet<'a> {
        WaitSet {
            epochs: Few::new(),
            words: Few::new(),
            poll: None,
            until: None,
            kernel: sys::futex_waitv_works(),
        }
    }

    /// A set for a sleeper that waits at most `timeout` (forever if `None`).
    pub(crate) fn within(timeout: Option<Duration>) -> WaitSet<'a> {
        let mut set = WaitSet::new();
        set.until = timeout.and_then(|t| Instant::now().checked_add(t));
        set
    }

    /// A set that sleeps as where the kernel has no `futex_waitv`.
    #[cfg(test)]
    fn polling() -> WaitSet<'a> {
        let mut set = WaitSet::new();
        set.kernel = false;
        set
    }

    /// Whether the kernel tells this sleeper of a liveness word's change (`futex_waitv`); if
    /// not, liveness is looked at again every [`PEER_POLL`](crate::PEER_POLL).
    pub(crate) fn kernel(&self) -> bool {
        self.kernel
    }

    /// Counts this thread as a sleeper of `events` and remembers the epoch seen; the count is
    /// taken back when the set drops. Before the sleeper's last look at its condition, and a
    /// heavy fence between (see `EventCount::park`).
    pub(crate) fn count(&mut self, events: &'a EventCount) {
        let waiters = events.waiters();
        // SeqCst: pairs with the waker's load of the count in `EventCount::wake` (through the
        // fences).
        waiters.fetch_add(1, SeqCst);
        // SeqCst: as in `EventCount::park`.
        let seen = events.epoch().load(SeqCst);
        self.epochs.push(Epoch {
            word: events.epoch(),
            waiters: Some(waiters),
            seen,
        });
    }

    /// An eventcount the caller is already counted on, seen holding `seen`.
    pub(crate) fn epoch(&mut self, epoch: &'a AtomicU32, seen: u32) {
        self.epochs.push(Epoch {
            word: epoch,
            waiters: None,
            seen,
        });
    }

    /// A liveness word expected to hold `expected`; when it changes, `bump` is woken.
    pub(crate) fn liveness(&mut self, word: &'a AtomicU32, expected: u32, bump: Bump<'a>) {
        self.words.push(Liveness {
            word,
            expected,
            bump,
        });
    }

    /// Sleeps at most `d`: something must be looked at again by then.
    pub(crate) fn poll_within(&mut self, d: Duration) {
        self.poll = Some(self.poll.map_or(d, |p| p.min(d)));
    }

    /// Whether the sleeper's wait is over (see [`within`](Self::within)).
    pub(crate) fn expired(&self) -> bool {
        self.until.is_some_and(|t| Instant::now() >= t)
    }

    /// `d`, or what is left of the sleeper's wait if that is less.
    pub(crate) fn at_most(&self, d: Duration) -> Duration {
        self.until
            .map_or(d, |t| t.saturating_duration_since(Instant::now()).min(d))
    }

    /// Whether an eventcount moved since it was counted.
    pub(crate) fn changed(&self) -> bool {
        // Relaxed: a hint to stop waiting for something else; the caller looks again.
        self.epochs.iter().any(|e| e.word.load(Relaxed) != e.seen)
    }

    /// Sleeps until an eventcount or liveness word moves, at most `timeout` (and the polls
    /// asked for). Returns early, without saying why: the caller looks again.
    pub(crate) fn sleep(&self, timeout: Option<Duration>) {
        let mut timeout = min_opt(timeout, self.poll);
        let (epochs, words) = (self.epochs.len(), self.words.len());
        if epochs + words == 0 {
            match timeout {
                Some(t) => std::thread::sleep(t),
                None => std::thread::park(),
            }
            return;
        }
        if self.kernel {
            let list = self
                .epochs
                .iter()
                .map(|e| (e.word, e.seen))
                .chain(self.words.iter().map(|l| (l.word, l.expected)));
            let count = (epochs + words).min(sys::WAITV_MAX);
            if epochs + words > sys::WAITV_MAX {
                // What does not fit is looked at again soon.
                let bound = if epochs > sys::WAITV_MAX {
                    MANY_POLL
                } else {
                    crate::PEER_POLL
                };
                timeout = min_opt(timeout, Some(bound));
            }
            if sys::futex_waitv(list.take(count), count, timeout) != sys::Waitv::Unsupported {
                self.wake_for_changed();
                return;
            }
        }
        let bound = if epochs > 1 {
            Some(MANY_POLL)
        } else if words > 0 {
            Some(crate::PEER_POLL)
        } else {
            None
        };
        match self.epochs.iter().next() {
            Some(e) => sys::futex_wait(e.word, e.seen, min_opt(timeout, bound)),
            None => std::thread::sleep(min_opt(timeout, bound).unwrap_or(crate::PEER_POLL)),
        }
    }

    /// After a sleep: every liveness word that changed wakes the sleepers of what it stands for
    /// (the kernel wakes one sleeper per death, maybe this one).
    fn wake_for_changed(&self) {
        for l in self.words.iter() {
            // Relaxed: any change is reported; the woken look again with their own orderings.
            if l.word.load(Relaxed) != l.expected {
                l.bump.wake();
            }
        }
    }
}

impl std::fmt::Debug for WaitSet<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WaitSet")
            .field("epochs", &self.epochs.len())
            .field("liveness", &self.words.len())
            .field("poll", &self.poll)
            .finish()
    }
}

impl Drop for WaitSet<'_> {
    fn drop(&mut self) {
        for e in self.epochs.iter() {
            if let Some(waiters) = e.waiters {
                // SeqCst: as the increment in `count`.
                waiters.fetch_sub(1, SeqCst);
            }
        }
    }
}

#[cfg(all(test, not(miri)))]
mod tests {
    use super::*;
    use std::time::Instant;

    /// Whether thread `tid` of this process sleeps in the kernel.
    fn sleeping(tid: u32) -> bool {
        std::fs::read_to_string(format!("/proc/self/task/{tid}/stat"))
            .ok()
            .and_then(|s| {
                s.rfind(')')
                    .map(|i| s[i + 1..].trim_start().starts_with('S'))
            })
            .unwrap_or(false)
    }

    #[test]
    fn a_changed_liveness_word_wakes_the_sleeper_and_its_eventcounts() {
        if !sys::futex_waitv_works() {
            return;
        }
        let (epoch, live, other) = (AtomicU32::new(0), AtomicU32::new(5), AtomicU32::new(0));
        let (epoch, live, other) = (&epoch, &live, &other);
        std::thread::scope(|s| {
            let (tx, rx) = std::sync::mpsc::channel();
            let sleeper = s.spawn(move || {
                tx.send(sys::current_tid()).expect("send");
                let mut set = WaitSet::new();
                set.epoch(epoch, 0);
                set.liveness(live, 5, Bump([Some(other), None]));
                let start = Instant::now();
                set.sleep(Some(Duration::from_secs(10)));
                start.elapsed()
            });
            let tid = rx.recv().expect("tid");
            while !sleeping(tid) {
                std::thread::yield_now();
            }
            // As the kernel does at an owner's death: change the word, wake one sleeper.
            live.store(6, Relaxed);
            sys::futex_wake(live, 1);
            assert!(sleeper.join().expect("join") < Duration::from_secs(5));
        });
        // The sleeper woke the others' eventcount.
        assert_eq!(other.load(Relaxed), 1);
    }

    #[test]
    fn without_futex_waitv_liveness_is_polled() {
        let (epoch, live) = (AtomicU32::new(0), AtomicU32::new(5));
        let mut set = WaitSet::polling();
        set.epoch(&epoch, 0);
        set.liveness(&live, 5, Bump::default());
        let start = Instant::now();
        set.sleep(None);
        let slept = start.elapsed();
        assert!(slept < Duration::from_secs(2), "{slept:?}");
        // A word that does not fit is looked at again soon, too.
        let mut set = WaitSet::new();
        set.epoch(&epoch, 0);
        set.poll_within(Duration::from_millis(5));
        let start = Instant::now();
        set.sleep(None);
        assert!(start.elapsed() < Duration::from_secs(2));
    }

    #[test]
    fn counted_sleepers_are_uncounted_on_drop() {
        let events = EventCount::default();
        events.epoch().store(3, Relaxed);
        let mut set = WaitSet::new();
        set.count(&events);
        assert_eq!(events.waiters().load(Relaxed), 1);
        assert!(!set.changed());
        events.epoch().store(4, Relaxed);
        assert!(set.changed());
        drop(set);
        assert_eq!(events.waiters().load(Relaxed), 0);
    }
}
