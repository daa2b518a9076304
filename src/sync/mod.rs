//! The cross-process lock: a raw layer over the robust mutex in a segment's lock area, and the
//! public wrappers built on it.
//!
//! Following lock_api's split, [`RawLock`] holds only the lock's state (the robust mutex and a
//! poison word) and [`Held`] is the RAII proof of holding it; [`Lock`], [`RLock`] and the guards
//! of `Value`/`Array` wrap those. The poison word makes an owner's death sticky the way std's
//! poisoning is: the kernel reports `EOWNERDEAD` once, we make the mutex consistent at once (so it
//! can never become `ENOTRECOVERABLE`), set the poison word, and report `OwnerDied` to every
//! acquirer until one of them calls `mark_consistent`. A guard dropped while its thread panics
//! sets the poison word too, as std's `MutexGuard` does, so that the next acquirer in any process
//! is told that the data may be half-made.
//!
//! A guard is a thread's proof of holding the lock, and a process forked while a guard was held
//! holds a copy of it but not the lock (that stays with the parent's thread): [`Held`] remembers
//! [`sys::forks`] and, in a child, neither marks, poisons nor unlocks anything.

pub(crate) mod atomic;
mod barrier;
mod condition;
mod event;
mod lock;
#[cfg(all(test, loom))]
mod loom_model;
#[cfg(not(loom))]
mod make;
#[cfg(not(loom))]
pub(crate) mod owner;
mod park;
mod records;
mod semaphore;

use std::marker::PhantomData;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

pub use barrier::BARRIER_MAX_PARTIES;
#[cfg(not(loom))]
pub use barrier::Barrier;
#[cfg(not(loom))]
pub use condition::{Condition, ConditionGuard, ConditionLock};
#[cfg(not(loom))]
pub use event::Event;
#[cfg(not(loom))]
pub(crate) use lock::lock_spec;
pub use lock::{Exclusive, Lock, LockGuard, LockKind, ProcessLock, RLock, Reentrant};
pub use semaphore::SEMAPHORE_MAX;
#[cfg(not(loom))]
pub use semaphore::{
    Bounded, BoundedSemaphore, ProcessSemaphore, Semaphore, SemaphoreGuard, SemaphoreKind,
    Unbounded,
};

use crate::error::{AccessError, LockError};
use crate::segment::Segment;
use crate::sys::{self, LockFail, Locked, RobustMutex, Unsettled};

/// The shared structures of the synchronisation family, for the pinned layout
/// (`src/layout.rs`).
#[cfg(all(test, not(loom)))]
pub(crate) fn shared_layout() -> Vec<String> {
    [
        ("semaphore", semaphore::shared_layout()),
        ("event", event::shared_layout()),
        ("barrier", barrier::shared_layout()),
        ("condition", condition::shared_layout()),
    ]
    .into_iter()
    .flat_map(|(module, lines)| lines.into_iter().map(move |l| format!("{module}::{l}")))
    .collect()
}

/// What [`inspect`](crate::inspect) shows of a semaphore, event, condition or barrier.
#[cfg(not(loom))]
pub(crate) fn inspect(seg: &Segment) -> Result<crate::inspect::Found, String> {
    use crate::segment::Kind;
    match seg.kind() {
        Kind::Semaphore | Kind::BoundedSemaphore => semaphore::inspect(seg),
        Kind::Event => event::inspect(seg),
        Kind::Condition => condition::inspect(seg),
        Kind::Barrier => barrier::inspect(seg),
        other => Err(format!("a {other} is not of the synchronisation family")),
    }
}

/// What acquiring a [`RawLock`] gives.
pub(crate) type Acquired<'a> = Result<Held<'a>, LockError<Held<'a>>>;

/// The state of a lock inside a segment.
#[derive(Clone, Copy)]
pub(crate) struct RawLock<'a> {
    mutex: &'a RobustMutex,
    poison: &'a AtomicU32,
}

impl<'a> RawLock<'a> {
    /// The lock of `seg`.
    ///
    /// # Panics
    ///
    /// If `seg` is of a kind without a lock; callers only pass kinds that have one.
    #[inline]
    pub(crate) fn of(seg: &'a Segment) -> RawLock<'a> {
        RawLock {
            mutex: seg.mutex().expect("segment kind has a lock"),
            poison: seg.poison_word().expect("segment kind has a lock"),
        }
    }

    /// The mutex is this thread's: the guard, told of a death or a panic that the poison word
    /// records.
    #[inline]
    fn held(self) -> Acquired<'a> {
        let held = Held {
            lock: self,
            forks: sys::forks(),
            panicking: std::thread::panicking(),
            _not_send: PhantomData,
        };
        // The poison word is only touched while the mutex is held, so the mutex orders these
        // accesses and Relaxed suffices.
        if self.poison.load(Ordering::Relaxed) != 0 {
            Err(LockError::OwnerDied(held))
        } else {
            Ok(held)
        }
    }

    #[inline]
    fn finish(self, r: Result<Locked, LockFail>) -> Acquired<'a> {
        match r {
            Ok(how) => {
                if how == Locked::OwnerDied {
                    // Relaxed: as in `held`.
                    self.poison.store(1, Ordering::Relaxed);
                }
                self.held()
            }
            Err(LockFail::Busy) => Err(LockError::WouldBlock),
            Err(LockFail::Deadlock) => Err(LockError::Deadlock),
            Err(LockFail::Os(e)) => Err(LockError::Os(e)),
        }
    }

    /// The fast path is the C library's lock call finding the mutex free, and the poison word
    /// read; an owner's death, a refused mutex and errors are out of line.
    ///
    /// A busy mutex is waited for as `pthread_mutex_lock` waits: at once in the kernel, with no
    /// spinning first. A spinner that catches the lock as its holder lets go hands it back and
    /// forth between processes, each handover a cache miss on both sides, while a sleeper
    /// leaves the holder to run on undisturbed (measured in DESIGN.md, "The locked counter").
    #[inline]
    pub(crate) fn acquire(self) -> Acquired<'a> {
        match self.mutex.lock_clean() {
            Ok(()) => self.held(),
            Err(how) => self.acquire_unclean(how),
        }
    }

    /// An owner's death, a refused mutex or an error: one out-of-line function, with `settle`
    /// inlined into it (see there).
    #[cold]
    #[inline(never)]
    fn acquire_unclean(self, how: Unsettled) -> Acquired<'a> {
        self.finish(self.mutex.settle(how))
    }

    /// Takes the lock only if it is free. A lock this thread holds is not free: `WouldBlock`,
    /// as std's `Mutex::try_lock` and Python's `acquire(False)` answer, not `Deadlock` (which
    /// the blocking calls return rather than wait for ever).
    pub(crate) fn try_acquire(self) -> Acquired<'a> {
        match self.finish(self.mutex.try_lock()) {
            Err(LockError::Deadlock) => Err(LockError::WouldBlock),
            other => other,
        }
    }

    /// As [`acquire`](Self::acquire), giving up after `timeout`.
    pub(crate) fn acquire_timeout(self, timeout: Duration) -> Acquired<'a> {
        match self.finish(self.mutex.lock_timeout(timeout)) {
            Err(LockError::WouldBlock) => Err(LockError::Timeout),
            other => other,
        }
    }

    pub(crate) fn is_poisoned(self) -> bool {
        self.poison.load(Ordering::Relaxed) != 0
    }
}

/// Proof that this thread holds a [`RawLock`]; releases it on drop, and poisons it first if the
/// thread is panicking. Not `Send`: a pthread mutex must be unlocked by the thread that locked it.
#[must_use = "the lock is released as soon as this is dropped"]
pub(crate) struct Held<'a> {
    lock: RawLock<'a>,
    /// [`sys::forks`] when the lock was taken: a copy in a forked child holds nothing.
    forks: u32,
    /// Whether the thread was already panicking when it took the lock (a guard taken in a
    /// destructor during unwinding poisons nothing by being dropped, as in std).
    panicking: bool,
    _not_send: PhantomData<*const ()>,
}

impl Held<'_> {
    /// Whether this process holds the lock: `false` in a child forked while it was held.
    #[inline]
    pub(crate) fn here(&self) -> bool {
        sys::forks() == self.forks
    }

    /// Whether the thread began to panic after it took the lock: the guarded data may be
    /// half-made.
    #[inline]
    pub(crate) fn panicked(&self) -> bool {
        !self.panicking && std::thread::panicking()
    }

    /// Declares the guarded data sound again after an owner's death.
    pub(crate) fn mark_consistent(&self) {
        if self.here() {
            // Relaxed: written while the mutex is held; the unlock publishes it.
            self.lock.poison.store(0, Ordering::Relaxed);
        }
    }
}

impl Drop for Held<'_> {
    #[inline]
    fn drop(&mut self) {
        if !self.here() {
            // The parent's thread holds the mutex and its data; the child has nothing to give.
            return;
        }
        if self.panicked() {
            // The guarded data may be half-made. Relaxed: written while the mutex is held; the
            // unlock publishes it.
            self.lock.poison.store(1, Ordering::Relaxed);
        }
        // Cannot fail: this thread holds the mutex (robust mutexes check, and would say EPERM).
        let _ = self.lock.mutex.unlock();
    }
}

/// Runs `f` on `seg` with its lock held, reporting an owner's death with `f`'s result inside.
#[inline]
pub(crate) fn with_lock<R>(
    seg: &Segment,
    f: impl FnOnce(&Segment) -> R,
) -> Result<R, AccessError<R>> {
    match RawLock::of(seg).acquire() {
        Ok(_held) => Ok(f(seg)),
        Err(LockError::OwnerDied(_held)) => Err(AccessError::OwnerDied(f(seg))),
        Err(LockError::Deadlock) => Err(AccessError::Deadlock),
        Err(LockError::Os(e)) => Err(AccessError::Os(e)),
        Err(LockError::WouldBlock | LockError::Timeout) => unreachable!("acquire never gives up"),
    }
}
