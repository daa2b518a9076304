//! Waking a futex word that other processes sleep on (the sleep itself is `records`'), and the
//! lock around a primitive's state, with the stand-ins that the loom models run on.
//!
//! The semaphore and the barrier keep a few words of state under their segment's robust mutex
//! (the "state lock"): it is held for a handful of stores, never while sleeping, and a process
//! killed inside it hands the next holder a [`Entered::Repair`] instead of a deadlock. Waiting
//! is done outside it, on a futex word.
//!
//! Under `--cfg loom` the futex is a model mutex and condition variable, as in `ring.rs`, but
//! kept per word: a waiter really blocks until its own word is woken, so a lost wake-up is a
//! deadlock, which loom reports; the state lock is a small futex lock built on the same
//! stand-in.

use std::io;

use crate::sync::Patience;

#[cfg(not(loom))]
pub(crate) use crate::sys::futex_wake;

/// A full fence between a store and a load of two other words (a Dekker pair): loom checks
/// `SeqCst` fences, while it takes `SeqCst` loads and stores for acquire and release.
#[cfg(loom)]
pub(crate) use loom::sync::atomic::fence;
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::fence;

#[cfg(loom)]
use crate::sync::atomic::{AtomicU32, Ordering::SeqCst};

#[cfg(loom)]
loom::lazy_static! {
    /// loom's futex: for each word (by address) how many wakes it has had, and one condition
    /// variable that every waiter sleeps on.
    static ref FUTEX: (
        loom::sync::Mutex<std::collections::HashMap<usize, u64>>,
        loom::sync::Condvar,
    ) = (loom::sync::Mutex::new(std::collections::HashMap::new()), loom::sync::Condvar::new());
}

/// loom's futex wait: like the kernel, compares the word under the lock that the wake takes, so
/// a wake cannot fall between the comparison and the sleep; and returns only once a wake of
/// this word came, so that a missing wake is a deadlock even when other words are woken. The
/// timeout is ignored: a model waiter with a deadline never gets here (see `Records::sleep`).
#[cfg(loom)]
pub(crate) fn futex_wait(word: &AtomicU32, expected: u32, _timeout: Option<std::time::Duration>) {
    let (lock, queue) = &*FUTEX;
    let addr = std::ptr::from_ref(word) as usize;
    let mut wakes = lock.lock().expect("model lock");
    // SeqCst: the kernel reads the word under the bucket lock; so does this.
    if word.load(SeqCst) != expected {
        return;
    }
    let seen = wakes.get(&addr).copied().unwrap_or(0);
    while wakes.get(&addr).copied().unwrap_or(0) == seen {
        wakes = queue.wait(wakes).expect("model lock");
    }
}

/// loom's futex wake: wakes every waiter of `word` (a wake of one may wake more; callers
/// re-check).
#[cfg(loom)]
pub(crate) fn futex_wake(word: &AtomicU32, _n: u32) {
    let (lock, queue) = &*FUTEX;
    let addr = std::ptr::from_ref(word) as usize;
    let mut wakes = lock.lock().expect("model lock");
    *wakes.entry(addr).or_insert(0) += 1;
    queue.notify_all();
}

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
    /// Still held when the caller's patience ran out.
    Busy,
    /// The lock is not a valid lock (the segment was overwritten).
    Os(io::Error),
}

/// The lock around a primitive's state words.
pub(crate) trait StateLock {
    /// Takes the lock, waiting as `patience` allows.
    fn enter(&self, patience: Patience) -> Result<Entered, EnterError>;
    /// Releases the lock this thread holds.
    fn leave(&self);
}

/// How many `try_lock`s a state lock spins before it sleeps: its holders stay for a few stores.
const SPIN_TRIES: u32 = 64;

/// How long a `try_` operation waits for the state lock (not for what the lock guards): the
/// holder stays for a few stores, unless it was stopped or preempted there.
const TRY_PATIENCE: std::time::Duration = std::time::Duration::from_millis(1);

#[cfg(not(loom))]
impl StateLock for crate::sys::RobustMutex {
    fn enter(&self, patience: Patience) -> Result<Entered, EnterError> {
        use crate::sys::{LockFail, Locked};
        let mut r = self.try_lock();
        let mut i = 0;
        while matches!(r, Err(LockFail::Busy)) && i < SPIN_TRIES {
            for _ in 0..(1u32 << (i / 8).min(6)) {
                std::hint::spin_loop();
            }
            r = self.try_lock();
            i += 1;
        }
        if matches!(r, Err(LockFail::Busy)) {
            r = match patience {
                Patience::Forever => self.lock(),
                Patience::None => self.lock_timeout(TRY_PATIENCE),
                Patience::Until(t) => {
                    self.lock_timeout(t.saturating_duration_since(std::time::Instant::now()))
                }
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

/// A state lock for the loom models: a futex lock on a model atomic. No holder ever dies in a
/// model, so it is always entered clean.
#[cfg(loom)]
#[derive(Debug, Default)]
pub(crate) struct ModelLock {
    word: AtomicU32,
}

#[cfg(loom)]
impl StateLock for ModelLock {
    fn enter(&self, patience: Patience) -> Result<Entered, EnterError> {
        loop {
            if self.word.compare_exchange(0, 1, SeqCst, SeqCst).is_ok() {
                return Ok(Entered::Clean);
            }
            if !matches!(patience, Patience::Forever) {
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
    pub(crate) fn enter(lock: &'a L, patience: Patience) -> Result<(Self, Entered), EnterError> {
        let how = lock.enter(patience)?;
        Ok((Inside { lock }, how))
    }
}

impl<L: StateLock> Drop for Inside<'_, L> {
    fn drop(&mut self) {
        self.lock.leave();
    }
}
