//! An in-process lock that costs the thread that usually takes it no atomic read-modify-write:
//! a biased lock, in the manner of the JVM's, with the revocation done by an asymmetric fence.
//! `ring::bias` is the one in shared memory, for a queue's producers or consumers; both use the
//! vocabulary of DESIGN.md's "Biased locks" (seat, holder, enter and leave, grant, revoke).
//!
//! Each direction of a pipe is a single-producer, single-consumer ring, so the threads of one
//! process must take turns at it; a `Mutex` would do, but its two `lock`-prefixed instructions
//! per message drain the store buffer, which costs a stream of small messages more than the
//! ring itself. Here the lock is biased towards one thread at a time, its holder. The holder
//! enters by raising its seat's `inside` flag and checking, after a light fence, that nobody is
//! revoking its hold; any other thread takes the shared path: it serialises on a `Mutex`,
//! raises `revoking`, runs the heavy fence, waits for the holder to lower its flag, and is then
//! granted the lock (it becomes the holder). A thread that sends (or receives) on its own pays
//! a few plain loads and stores; a change of holder costs one `membarrier`.
//!
//! Each thread that has held the lock has a seat of its own ([`Seat`]), with a flag written by
//! that thread only. With one shared flag, a thread still seeing itself as the holder (a stale
//! read, which the memory model allows) would raise and lower the flag while the real holder
//! was inside, and a revoker could then walk in beside it.

use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize};
use std::sync::{Mutex, MutexGuard, PoisonError, TryLockError};
use std::time::{Duration, Instant};

use crate::wait::{Backoff, Deadline, fence};

/// Threads that can hold the lock in turn; more take the shared path every time.
const SEATS: usize = 8;

/// The longest sleep while waiting for a holder that stays inside (blocked in a put on a full
/// queue) to leave.
const LONGEST_PAUSE: Duration = Duration::from_millis(1);

/// One thread's place at the lock: whose it is, and whether that thread is inside as the
/// holder.
#[derive(Debug, Default)]
pub(crate) struct Seat {
    /// The [`key`] of the thread this seat belongs to (0: free); set once, under `shared`.
    key: AtomicU64,
    /// That thread is inside, as the holder. Written by that thread only.
    inside: AtomicBool,
}

/// The lock; it guards no data of its own.
#[derive(Debug, Default)]
pub(crate) struct BiasedLock {
    /// The holder's seat plus one; 0 for none.
    holder: AtomicUsize,
    /// Boxed, to keep the handles that hold two of these small.
    seats: Box<[Seat; SEATS]>,
    /// Another thread is revoking the holder's hold.
    revoking: AtomicBool,
    /// Held by every thread that enters other than as the holder.
    shared: Mutex<()>,
}

/// Proof that the lock is held; leaving is dropping it.
#[must_use = "the lock is released at once if the entry is dropped"]
pub(crate) enum Entry<'a> {
    /// Entered as the holder: its seat's flag is up.
    Holder(&'a Seat),
    /// Entered by the shared path.
    Shared(#[allow(dead_code, reason = "held for its drop")] MutexGuard<'a, ()>),
}

impl Drop for Entry<'_> {
    fn drop(&mut self) {
        if let Entry::Holder(seat) = self {
            // Release: pairs with the Acquire load of `inside` in `enter_shared`: what we did
            // inside happens before the next holder's turn.
            seat.inside.store(false, Release);
        }
    }
}

/// A number for this thread, never reused within the process; 0 (never the holder) for a
/// thread whose thread-locals are already gone (a destructor running at thread exit).
fn key() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    thread_local! {
        static KEY: u64 = NEXT.fetch_add(1, Relaxed);
    }
    KEY.try_with(|t| *t).unwrap_or(0)
}

impl BiasedLock {
    /// Enters, waiting while another thread is inside.
    #[inline]
    pub(crate) fn enter(&self) -> Entry<'_> {
        match self.enter_within(Deadline::Never) {
            Some(entry) => entry,
            None => unreachable!("an unbounded wait never gives up"),
        }
    }

    /// Enters, waiting at most until `deadline` (forever if `None`).
    #[inline]
    pub(crate) fn enter_until(&self, deadline: Option<Instant>) -> Option<Entry<'_>> {
        self.enter_within(Deadline::from_instant(deadline))
    }

    /// Enters, or `None` if another thread stays inside past `deadline`.
    #[inline]
    pub(crate) fn enter_within(&self, deadline: Deadline) -> Option<Entry<'_>> {
        let me = key();
        let holder = self.holder.load(Relaxed);
        if let Some(seat) = holder.checked_sub(1).map(|i| &self.seats[i]) {
            // A stale `holder` can only name a seat that was ours: we write no one else's flag.
            if me != 0 && seat.key.load(Relaxed) == me {
                seat.inside.store(true, Relaxed);
                // The light half of a fence pair with `enter_shared`: either its load of our
                // `inside` sees this store, or our load of `revoking` below sees its store.
                fence::light();
                // Acquire: pairs with the Release store of `revoking` in `enter_shared`; a
                // `false` stored there after a grant makes the load of `holder` below see the
                // new holder.
                if !self.revoking.load(Acquire) && self.holder.load(Relaxed) == holder {
                    return Some(Entry::Holder(seat));
                }
                // Release: pairs with the Acquire load of `inside` in `enter_shared`.
                seat.inside.store(false, Release);
            }
        }
        self.enter_shared(me, deadline)
    }

    /// The shared path: takes the mutex, revokes the holder's hold, and grants the lock to this
    /// thread's seat (if it has one).
    #[cold]
    fn enter_shared(&self, me: u64, deadline: Deadline) -> Option<Entry<'_>> {
        let guard = match deadline {
            Deadline::Never => self.shared.lock().unwrap_or_else(PoisonError::into_inner),
            _ => {
                let mut backoff = Backoff::new();
                loop {
                    match self.shared.try_lock() {
                        Ok(guard) => break guard,
                        Err(TryLockError::Poisoned(p)) => break p.into_inner(),
                        Err(TryLockError::WouldBlock) if deadline.passed() => return None,
                        Err(TryLockError::WouldBlock) => backoff.pause(LONGEST_PAUSE),
                    }
                }
            }
        };
        // Under `shared`, `holder` and the seat keys are current: only its holders write them.
        let mine = self.seats.iter().position(|s| {
            me != 0
                && (s.key.load(Relaxed) == me
                    || s.key.compare_exchange(0, me, Relaxed, Relaxed).is_ok())
        });
        let holder = self.holder.load(Relaxed);
        if holder != 0 && Some(holder - 1) != mine {
            self.revoking.store(true, Relaxed);
            // The heavy half of the pair in `enter_within`. Within one process it always
            // reaches the holder (by membarrier, or its fallback), or both halves are full
            // fences.
            fence::heavy();
            // Acquire: pairs with the Release stores of `inside` in `enter_within` and in the
            // entry's drop. The holder may be blocked inside (a put on a full queue): yield,
            // then sleep.
            let inside = &self.seats[holder - 1].inside;
            let mut backoff = Backoff::new();
            while inside.load(Acquire) {
                if deadline.passed() {
                    // Give up without revoking: the holder keeps the lock. Release: as below.
                    self.revoking.store(false, Release);
                    return None;
                }
                backoff.pause(LONGEST_PAUSE);
            }
        }
        // The grant. A thread without a seat leaves the lock without a holder: everyone takes
        // this path.
        self.holder.store(mine.map_or(0, |i| i + 1), Relaxed);
        // Release: pairs with the Acquire load of `revoking` in `enter_within`.
        self.revoking.store(false, Release);
        Some(Entry::Shared(guard))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    /// A counter bumped with a non-atomic read-then-write under the lock: any overlap of two
    /// threads inside loses increments.
    #[test]
    fn excludes_while_threads_take_turns() {
        let lock = BiasedLock::default();
        let count = AtomicU64::new(0);
        let (threads, rounds) = (4u64, if cfg!(miri) { 200 } else { 20_000 });
        std::thread::scope(|s| {
            for t in 0..threads {
                let (lock, count) = (&lock, &count);
                s.spawn(move || {
                    let mine = Cell::new(0u64);
                    for i in 0..rounds {
                        let _g = lock.enter();
                        let v = count.load(Relaxed);
                        // Runs of one thread take the holder's path; switches revoke.
                        if (i + t) % 97 == 0 {
                            std::thread::yield_now();
                        }
                        count.store(v + 1, Relaxed);
                        mine.set(mine.get() + 1);
                    }
                    assert_eq!(mine.get(), rounds);
                });
            }
        });
        assert_eq!(count.load(Relaxed), threads * rounds);
    }

    /// A `try` never waits for a holder that is inside, and leaves its hold untouched.
    #[test]
    fn impatient_callers_do_not_wait() {
        let lock = BiasedLock::default();
        let inside = lock.enter(); // this thread is now the holder (through the shared path)
        drop(inside);
        let held = lock.enter(); // the holder's fast path: inside
        std::thread::scope(|s| {
            s.spawn(|| {
                assert!(lock.enter_within(Deadline::Now).is_none());
                let start = Instant::now();
                let soon = Deadline::At(start + Duration::from_millis(30));
                assert!(lock.enter_within(soon).is_none());
                assert!(start.elapsed() >= Duration::from_millis(30));
            });
        });
        drop(held);
        // Still ours, and free: the fast path works again; another thread can enter.
        assert!(matches!(lock.enter(), Entry::Holder(_)));
        std::thread::scope(|s| {
            s.spawn(|| assert!(lock.enter_within(Deadline::Now).is_some()));
        });
    }

    /// More threads than seats: the ones without a seat always take the shared path, and
    /// revoke whoever holds the lock each time.
    #[test]
    fn excludes_threads_without_a_seat() {
        let lock = BiasedLock::default();
        let count = AtomicU64::new(0);
        let (threads, rounds) = (SEATS as u64 + 3, if cfg!(miri) { 10 } else { 2_000 });
        std::thread::scope(|s| {
            for _ in 0..threads {
                let (lock, count) = (&lock, &count);
                s.spawn(move || {
                    for _ in 0..rounds {
                        let _g = lock.enter();
                        let v = count.load(Relaxed);
                        std::thread::yield_now();
                        count.store(v + 1, Relaxed);
                    }
                });
            }
        });
        assert_eq!(count.load(Relaxed), threads * rounds);
    }
}
