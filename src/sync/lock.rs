//! [`Lock`] and [`RLock`]: named cross-process locks, Python's `multiprocessing.Lock` and
//! `RLock`, robust against the death of their holder; one generic [`ProcessLock`] over the
//! lock's kind (lock_api's `Mutex<R, T>` over a raw mutex, here over a marker).

use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

use crate::error::{Error, LockError};
use crate::segment::{Identity, Kind, Options, Segment, Spec};
use crate::shm::{Made, Shm};
use crate::sync::{Acquired, Held, RawLock};

/// A guard of a [`Lock`] or [`RLock`]; the lock is released when it is dropped.
///
/// Dropped while its thread panics, it poisons the lock first, as std's `MutexGuard` does: every
/// later acquirer, in any process, gets [`LockError::OwnerDied`] until one calls
/// [`mark_consistent`](Self::mark_consistent). A copy inherited by a process forked while the
/// guard was held guards nothing there: dropping it in the child does nothing.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct LockGuard<'a> {
    held: Held<'a>,
}

impl LockGuard<'_> {
    /// Declares the state guarded by the lock sound again after `OwnerDied`; later acquirers get
    /// clean guards.
    pub fn mark_consistent(&self) {
        self.held.mark_consistent();
    }
}

impl fmt::Debug for LockGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockGuard").finish_non_exhaustive()
    }
}

#[inline]
fn wrap(r: Acquired<'_>) -> Result<LockGuard<'_>, LockError<LockGuard<'_>>> {
    r.map(|held| LockGuard { held })
        .map_err(|e| e.map(|held| LockGuard { held }))
}

mod sealed {
    pub trait Sealed {}
}

/// Which kind of lock a [`ProcessLock`] is: [`Exclusive`] ([`Lock`]) or [`Reentrant`]
/// ([`RLock`]). Sealed.
pub trait LockKind: sealed::Sealed {
    #[doc(hidden)]
    const KIND: Kind;
}

/// A lock that its holder cannot take again ([`Lock`]): a second `acquire` on the same thread
/// is [`LockError::Deadlock`], not a hang.
#[derive(Debug, Clone, Copy)]
pub enum Exclusive {}

/// A lock that its holder may take again, and must then release as often ([`RLock`]).
#[derive(Debug, Clone, Copy)]
pub enum Reentrant {}

impl sealed::Sealed for Exclusive {}
impl sealed::Sealed for Reentrant {}

impl LockKind for Exclusive {
    const KIND: Kind = Kind::Lock;
}

impl LockKind for Reentrant {
    const KIND: Kind = Kind::RLock;
}

/// A named cross-process lock in a segment of its own, robust against the death of its holder:
/// [`Lock`] (Python's `multiprocessing.Lock`) and [`RLock`] (`RLock`) are its two kinds.
///
/// When a holder dies (even by `SIGKILL`), the next acquirer gets the guard inside
/// [`LockError::OwnerDied`]; this is robust on Linux (glibc's robust mutexes) and is not on
/// platforms without robust process-shared mutexes.
pub struct ProcessLock<K: LockKind> {
    seg: Segment,
    _kind: PhantomData<K>,
}

/// A cross-process mutual-exclusion lock in a named segment of its own (Python's
/// `multiprocessing.Lock`). Not reentrant: acquiring it twice on one thread is
/// [`LockError::Deadlock`], not a hang.
///
/// ```
/// use mpshm::prelude::*;
///
/// let name = format!("doc-lock-{}", std::process::id());
/// let lock = mpshm::Lock::create(&name, ())?;
/// {
///     let _guard = lock.acquire().expect("lock");
///     // ... critical section ...
/// }
/// assert!(lock.try_acquire().is_ok());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub type Lock = ProcessLock<Exclusive>;

/// A reentrant cross-process lock (Python's `multiprocessing.RLock`): the thread that holds it
/// may acquire it again, and must release it as often. Robust like [`Lock`].
///
/// ```
/// use mpshm::prelude::*;
///
/// let name = format!("doc-rlock-{}", std::process::id());
/// let lock = mpshm::RLock::create(&name, ())?;
/// let outer = lock.acquire().expect("lock");
/// let inner = lock.acquire().expect("re-enter"); // same thread: fine
/// drop((inner, outer));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub type RLock = ProcessLock<Reentrant>;

/// The spec of a lock of `kind`.
pub(crate) fn lock_spec(kind: Kind, ty: Identity) -> Spec {
    Spec::elements(kind, ty, 0)
}

/// `Init` is `()`: a lock holds nothing. The options' mode, open timeout and type tag apply.
impl<K: LockKind> Shm for ProcessLock<K> {
    type Init = ();

    fn spec(_: Option<&()>, opts: &Options) -> Result<Spec, Error> {
        Ok(lock_spec(K::KIND, Identity::untyped("", opts)))
    }

    fn wrap(seg: Segment, _: Made, _: Option<&()>, _: &Options) -> Result<Self, Error> {
        Ok(ProcessLock {
            seg,
            _kind: PhantomData,
        })
    }

    fn segment(&self) -> &Segment {
        &self.seg
    }
}

impl<K: LockKind> ProcessLock<K> {
    fn raw(&self) -> RawLock<'_> {
        RawLock::of(&self.seg)
    }

    /// Blocks until the lock is held, asleep in the kernel while another thread holds it.
    ///
    /// # Errors
    ///
    /// [`LockError::OwnerDied`] (with the guard) when a previous holder died holding it;
    /// [`LockError::Deadlock`] when this thread already holds this (exclusive) lock;
    /// [`LockError::Os`] when the segment was overwritten.
    pub fn acquire(&self) -> Result<LockGuard<'_>, LockError<LockGuard<'_>>> {
        wrap(self.raw().acquire())
    }

    /// Takes the lock only if no one holds it; never waits.
    ///
    /// # Errors
    ///
    /// [`LockError::WouldBlock`] when it is held, by another thread or by this one (as std's
    /// `Mutex::try_lock` and Python's `acquire(False)`); otherwise as
    /// [`acquire`](Self::acquire).
    pub fn try_acquire(&self) -> Result<LockGuard<'_>, LockError<LockGuard<'_>>> {
        wrap(self.raw().try_acquire())
    }

    /// Blocks until the lock is held or `timeout` has passed (on the monotonic clock).
    ///
    /// # Errors
    ///
    /// [`LockError::Timeout`], or as [`acquire`](Self::acquire).
    pub fn acquire_timeout(
        &self,
        timeout: Duration,
    ) -> Result<LockGuard<'_>, LockError<LockGuard<'_>>> {
        wrap(self.raw().acquire_timeout(timeout))
    }

    /// Whether a holder died and no one has marked the lock consistent since.
    pub fn is_poisoned(&self) -> bool {
        self.raw().is_poisoned()
    }
}

impl<K: LockKind> fmt::Debug for ProcessLock<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct(if K::KIND == Kind::RLock {
            "RLock"
        } else {
            "Lock"
        })
        .field("name", &self.seg.name())
        .field("owner", &self.seg.is_owner())
        .finish()
    }
}
