//! An in-process lock that costs the thread that usually takes it no atomic read-modify-write:
//! a biased lock, in the manner of the JVM's, with the revocation done by an asymmetric fence.
//!
//! Each direction of a pipe is a single-producer, single-consumer ring, so the threads of one
//! process must take turns at it; a `Mutex` would do, but its two `lock`-prefixed instructions
//! per message drain the store buffer, which costs a stream of small messages more than the
//! ring itself (in one run here: 24 M msgs/s with a mutex on each side, 70 M without). Here the
//! lock belongs to one thread at a time. The owner enters by raising its `inside` flag and
//! checking, after a light fence, that nobody asked for the lock back; any other thread takes
//! the slow path: it serialises on a `Mutex`, raises `revoke`, runs the heavy fence, waits for
//! the owner to lower its flag, and becomes the owner. A thread that sends (or receives) on its
//! own pays a few plain loads and stores; a change of thread costs one `membarrier`.
//!
//! Each thread that has owned the lock has a flag of its own ([`Seat`]), written by that thread
//! only. With one shared flag, a thread still seeing itself as the owner (a stale read, which
//! the memory model allows) would raise and lower the flag while the real owner was inside, and
//! a revoker could then walk in beside it; Miri found that.

use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize};
use std::sync::{Mutex, MutexGuard, PoisonError, TryLockError};
use std::time::{Duration, Instant};

use crate::sync::fence;

/// Threads that can own the lock in turn; more take the slow path every time.
const SEATS: usize = 8;

/// One thread's place at the lock: who sits there, and whether it is inside.
#[derive(Debug, Default)]
pub(crate) struct Seat {
    /// The [`token`] of the thread this seat belongs to (0: free); set once, under `slow`.
    token: AtomicU64,
    /// That thread is inside, as the owner. Written by that thread only.
    inside: AtomicBool,
}

/// The lock; it guards no data of its own.
#[derive(Debug, Default)]
pub(crate) struct OwnerLock {
    /// The owning thread's seat plus one; 0 for none.
    owner: AtomicUsize,
    /// Boxed, to keep the handles that hold two of these small.
    seats: Box<[Seat; SEATS]>,
    /// Another thread is taking the lock over.
    revoke: AtomicBool,
    /// Held by every thread that enters other than as the owner.
    slow: Mutex<()>,
}

pub(crate) use super::Patience;

/// Proof that the lock is held; releases it on drop.
#[must_use = "the lock is released at once if the guard is dropped"]
pub(crate) enum OwnerGuard<'a> {
    Owner(&'a Seat),
    Other(#[allow(dead_code, reason = "held for its drop")] MutexGuard<'a, ()>),
}

impl Drop for OwnerGuard<'_> {
    fn drop(&mut self) {
        if let OwnerGuard::Owner(seat) = self {
            // Release: pairs with the Acquire load of `inside` in `lock_slow`: what we did
            // inside happens before the next owner's turn.
            seat.inside.store(false, Release);
        }
    }
}

/// A number for this thread, never reused within the process; 0 (never the owner) for a thread
/// whose thread-locals are already gone (a destructor running at thread exit).
fn token() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    thread_local! {
        static TOKEN: u64 = NEXT.fetch_add(1, Relaxed);
    }
    TOKEN.try_with(|t| *t).unwrap_or(0)
}

impl OwnerLock {
    /// Takes the lock, waiting while another thread holds it.
    #[inline]
    pub(crate) fn lock(&self) -> OwnerGuard<'_> {
        match self.lock_within(Patience::Forever) {
            Some(guard) => guard,
            None => unreachable!("an unbounded wait never gives up"),
        }
    }

    /// Takes the lock, waiting at most until `deadline` (forever if `None`).
    #[inline]
    pub(crate) fn lock_until(&self, deadline: Option<Instant>) -> Option<OwnerGuard<'_>> {
        self.lock_within(Patience::until(deadline))
    }

    /// Takes the lock, or `None` if another thread holds it longer than `patience` allows.
    #[inline]
    pub(crate) fn lock_within(&self, patience: Patience) -> Option<OwnerGuard<'_>> {
        let me = token();
        let owner = self.owner.load(Relaxed);
        if let Some(seat) = owner.checked_sub(1).map(|i| &self.seats[i]) {
            // A stale `owner` can only name a seat that was ours: we write no one else's flag.
            if me != 0 && seat.token.load(Relaxed) == me {
                seat.inside.store(true, Relaxed);
                // The light half of a fence pair with `lock_slow`: either its load of our
                // `inside` sees this store, or our load of `revoke` below sees its store.
                fence::light();
                // Acquire: pairs with the Release store of `revoke` in `lock_slow`; a `false`
                // stored there after a takeover makes the load of `owner` below see the new
                // owner.
                if !self.revoke.load(Acquire) && self.owner.load(Relaxed) == owner {
                    return Some(OwnerGuard::Owner(seat));
                }
                // Release: pairs with the Acquire load of `inside` in `lock_slow`.
                seat.inside.store(false, Release);
            }
        }
        self.lock_slow(me, patience)
    }

    #[cold]
    fn lock_slow(&self, me: u64, patience: Patience) -> Option<OwnerGuard<'_>> {
        let guard = match patience {
            Patience::Forever => self.slow.lock().unwrap_or_else(PoisonError::into_inner),
            _ => {
                let mut pause = Pause::new();
                loop {
                    match self.slow.try_lock() {
                        Ok(guard) => break guard,
                        Err(TryLockError::Poisoned(p)) => break p.into_inner(),
                        Err(TryLockError::WouldBlock) if patience.spent() => return None,
                        Err(TryLockError::WouldBlock) => pause.next(),
                    }
                }
            }
        };
        // Under `slow`, `owner` and the seat tokens are current: only holders of `slow` write
        // them.
        let mine = self.seats.iter().position(|s| {
            me != 0
                && (s.token.load(Relaxed) == me
                    || s.token.compare_exchange(0, me, Relaxed, Relaxed).is_ok())
        });
        let owner = self.owner.load(Relaxed);
        if owner != 0 && Some(owner - 1) != mine {
            self.revoke.store(true, Relaxed);
            // The heavy half of the pair in `lock`. Within one process it always reaches the
            // owner (by membarrier, or its fallback), or both halves are full fences.
            fence::heavy();
            // Acquire: pairs with the Release stores of `inside` in `lock` and in the guard's
            // drop. The owner may be blocked inside (a put on a full queue): yield, then sleep.
            let inside = &self.seats[owner - 1].inside;
            let mut pause = Pause::new();
            while inside.load(Acquire) {
                if patience.spent() {
                    // Give up without taking over: the owner keeps the lock. Release: as below.
                    self.revoke.store(false, Release);
                    return None;
                }
                pause.next();
            }
        }
        // A thread without a seat leaves the lock unowned: everyone takes this path.
        self.owner.store(mine.map_or(0, |i| i + 1), Relaxed);
        // Release: pairs with the Acquire load of `revoke` in `lock`.
        self.revoke.store(false, Release);
        Some(OwnerGuard::Other(guard))
    }
}

/// The wait for a thread that may stay inside for long (blocked in a put on a full queue):
/// yield a while, then sleep, longer each time, up to a millisecond.
struct Pause {
    round: u32,
    nap: Duration,
}

impl Pause {
    fn new() -> Pause {
        Pause {
            round: 0,
            nap: Duration::from_micros(20),
        }
    }

    fn next(&mut self) {
        self.round = self.round.saturating_add(1);
        if self.round < 64 {
            std::thread::yield_now();
        } else {
            std::thread::sleep(self.nap);
            self.nap = (self.nap * 2).min(Duration::from_millis(1));
        }
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
        let lock = OwnerLock::default();
        let count = AtomicU64::new(0);
        let (threads, rounds) = (4u64, if cfg!(miri) { 200 } else { 20_000 });
        std::thread::scope(|s| {
            for t in 0..threads {
                let (lock, count) = (&lock, &count);
                s.spawn(move || {
                    let mine = Cell::new(0u64);
                    for i in 0..rounds {
                        let _g = lock.lock();
                        let v = count.load(Relaxed);
                        // Runs of one thread take the fast path; switches revoke.
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

    /// A `try` never waits for an owner that is inside, and gives the lock up untouched.
    #[test]
    fn impatient_callers_do_not_wait() {
        let lock = OwnerLock::default();
        let inside = lock.lock(); // this thread now owns it (through the slow path)
        drop(inside);
        let held = lock.lock(); // the owner's fast path: inside
        std::thread::scope(|s| {
            s.spawn(|| {
                assert!(lock.lock_within(Patience::None).is_none());
                let start = Instant::now();
                let soon = Patience::Until(start + Duration::from_millis(30));
                assert!(lock.lock_within(soon).is_none());
                assert!(start.elapsed() >= Duration::from_millis(30));
            });
        });
        drop(held);
        // Still ours, and free: the fast path works again; another thread can take it.
        assert!(matches!(lock.lock(), OwnerGuard::Owner(_)));
        std::thread::scope(|s| {
            s.spawn(|| assert!(lock.lock_within(Patience::None).is_some()));
        });
    }

    /// More threads than seats: the ones without a seat always take the slow path, and
    /// revoke whoever owns the lock each time.
    #[test]
    fn excludes_threads_without_a_seat() {
        let lock = OwnerLock::default();
        let count = AtomicU64::new(0);
        let (threads, rounds) = (SEATS as u64 + 3, if cfg!(miri) { 10 } else { 2_000 });
        std::thread::scope(|s| {
            for _ in 0..threads {
                let (lock, count) = (&lock, &count);
                s.spawn(move || {
                    for _ in 0..rounds {
                        let _g = lock.lock();
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
