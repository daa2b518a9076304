//! The lock around a primitive's state, with the stand-in that the loom models run on.
//!
//! The semaphore and the barrier keep a few words of state under their segment's robust mutex
//! (the "state lock"): it is held for a handful of stores, never while sleeping, and a process
//! killed inside it hands the next holder a [`Entered::Repair`] instead of a deadlock. Waiting
//! is done outside it, on a futex word (`wait::futex`).
//!
//! Under `--cfg loom` the state lock is a small futex lock on loom's model of the futex, which
//! blocks a waiter until its own word is woken, so a lost wake-up is a deadlock, which loom
//! reports.

use std::io;

use crate::wait::Deadline;
#[cfg(loom)]
use crate::wait::futex::{futex_wait, futex_wake};

/// A full fence between a store and a load of two other words (a Dekker pair): loom checks
/// `SeqCst` fences, while it takes `SeqCst` loads and stores for acquire and release.
#[cfg(loom)]
pub(crate) use loom::sync::atomic::fence;
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::fence;

#[cfg(loom)]
use crate::sync::atomic::{AtomicU32, Ordering::SeqCst};

/// How a state lock was entered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Entered {
    /// Released normally by its last holder.
    Clean,
    /// Its last holder died inside: the state may hold a half-made update, which the caller
    /// finishes (or undoes) before anything else.
    Repair,
}

/// Why a state lock was not entered.
#[derive(Debug)]
pub(crate) enum EnterError {
    /// Still held when the caller's deadline passed.
    Busy,
    /// The lock is not a valid lock (the segment was overwritten).
    Os(io::Error),
}

/// The lock around a primitive's state words.
pub(crate) trait StateLock {
    /// Takes the lock, waiting for it until `until`.
    fn enter(&self, until: Deadline) -> Result<Entered, EnterError>;
    /// Releases the lock this thread holds.
    fn leave(&self);
}

/// How many `try_lock`s a state lock spins through before it sleeps: its holders stay for a
/// few stores.
const SPIN_TRIES: u32 = 64;

/// How long a `try_` operation waits for the state lock (not for what the lock guards): the
/// holder stays for a few stores, unless it was stopped or preempted there.
const TRY_PATIENCE: std::time::Duration = std::time::Duration::from_millis(1);

#[cfg(not(loom))]
impl StateLock for crate::sys::RobustMutex {
    fn enter(&self, until: Deadline) -> Result<Entered, EnterError> {
        use crate::sys::{LockFail, Locked};
        let mut r = self.try_lock();
        let mut backoff = crate::wait::Backoff::new();
        while matches!(r, Err(LockFail::Busy)) && backoff.steps() < SPIN_TRIES {
            backoff.spin();
            r = self.try_lock();
        }
        if matches!(r, Err(LockFail::Busy)) {
            r = match until {
                Deadline::Now => self.lock_timeout(TRY_PATIENCE),
                // Under the lock watch, so that a robust mutex's lost wake-up (a woken waiter
                // killed before it took the lock) strands no one (`RobustMutex::lock_waiting`).
                Deadline::Never => self.lock_until(None),
                Deadline::At(t) => self.lock_until(Some(t)),
            };
        }
        match r {
            Ok(Locked::Clean) => Ok(Entered::Clean),
            Ok(Locked::OwnerDied) => Ok(Entered::Repair),
            Err(LockFail::Busy) => Err(EnterError::Busy),
            // Never taken twice by one thread: no state lock is held across a call that could
            // take it again. A `Deadlock` here means the segment lies about its owner.
            Err(LockFail::Deadlock) => Err(EnterError::Os(io::Error::new(
                io::ErrorKind::InvalidData,
                "the state lock names this thread as its holder: the segment is corrupt",
            ))),
            Err(LockFail::Os(e)) => Err(EnterError::Os(e)),
        }
    }

    fn leave(&self) {
        // Cannot fail: this thread holds the mutex (robust mutexes check, and would say EPERM).
        let _ = self.unlock();
    }
}

/// A state lock for the loom models: a futex lock on a model atomic (0 free, 1 held). A model
/// may start it held by a process that died inside ([`ModelLock::left_by_the_dead`]): the
/// next holder enters it for a repair, as the robust mutex's next holder does.
#[cfg(loom)]
#[derive(Debug, Default)]
pub(crate) struct ModelLock {
    word: AtomicU32,
}

/// The model lock's word while its holder is dead.
#[cfg(loom)]
const DEAD_HOLDER: u32 = 2;

#[cfg(loom)]
impl ModelLock {
    /// A lock whose holder died inside it.
    pub(crate) fn left_by_the_dead() -> ModelLock {
        ModelLock {
            word: AtomicU32::new(DEAD_HOLDER),
        }
    }
}

#[cfg(loom)]
impl StateLock for ModelLock {
    fn enter(&self, until: Deadline) -> Result<Entered, EnterError> {
        loop {
            if self.word.compare_exchange(0, 1, SeqCst, SeqCst).is_ok() {
                return Ok(Entered::Clean);
            }
            if self
                .word
                .compare_exchange(DEAD_HOLDER, 1, SeqCst, SeqCst)
                .is_ok()
            {
                return Ok(Entered::Repair);
            }
            if !matches!(until, Deadline::Never) {
                return Err(EnterError::Busy);
            }
            futex_wait(&self.word, 1, None);
        }
    }

    fn leave(&self) {
        self.word.store(0, SeqCst);
        futex_wake(&self.word, 1);
    }
}

/// Proof that this thread holds a state lock; releases it on drop.
#[must_use = "the state lock is released as soon as this is dropped"]
pub(crate) struct Inside<'a, L: StateLock> {
    lock: &'a L,
}

impl<'a, L: StateLock> Inside<'a, L> {
    /// Takes `lock`, and says how.
    pub(crate) fn enter(lock: &'a L, until: Deadline) -> Result<(Self, Entered), EnterError> {
        let how = lock.enter(until)?;
        Ok((Inside { lock }, how))
    }
}

impl<L: StateLock> Drop for Inside<'_, L> {
    fn drop(&mut self) {
        self.lock.leave();
    }
}
