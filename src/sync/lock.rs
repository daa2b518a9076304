//! [`Lock`] and [`RLock`]: named cross-process locks, Python's `multiprocessing.Lock` and
//! `RLock`, robust against the death of their holder.

use std::fmt;
use std::time::Duration;

use crate::error::{Error, LockError};
use crate::segment::{Kind, Options, Segment, Spec};
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

macro_rules! lock_type {
    ($(#[$doc:meta])* $name:ident, $kind:expr, $example:literal) => {
        $(#[$doc])*
        pub struct $name {
            seg: Segment,
        }

        impl $name {
            /// Creates the lock `name` exclusively.
            ///
            /// ```
            #[doc = $example]
            /// ```
            ///
            /// # Errors
            ///
            /// [`Error::InvalidName`], [`Error::AlreadyExists`], [`Error::NoSpace`],
            /// [`Error::InvalidMode`], [`Error::Io`].
            pub fn create(name: &str) -> Result<Self, Error> {
                Self::create_with(name, &Options::new())
            }

            /// [`create`](Self::create) with options.
            ///
            /// # Errors
            ///
            /// As [`create`](Self::create).
            pub fn create_with(name: &str, opts: &Options) -> Result<Self, Error> {
                let seg = Segment::create(name, &Self::spec(), opts, |_| {})?;
                Ok($name { seg })
            }

            /// Opens the existing lock `name`.
            ///
            /// # Errors
            ///
            /// [`Error::NotFound`], [`Error::KindMismatch`] if `name` is not this kind of lock,
            /// [`Error::Corrupt`], [`Error::NotReady`], [`Error::NotRegular`], [`Error::Io`].
            pub fn open(name: &str) -> Result<Self, Error> {
                Self::open_with(name, &Options::new())
            }

            /// [`open`](Self::open) with options.
            ///
            /// # Errors
            ///
            /// As [`open`](Self::open).
            pub fn open_with(name: &str, opts: &Options) -> Result<Self, Error> {
                Ok($name { seg: Segment::open(name, &Self::spec(), opts)? })
            }

            /// Opens `name`, creating it if it does not exist.
            ///
            /// # Errors
            ///
            /// As [`create`](Self::create) and [`open`](Self::open).
            pub fn open_or_create(name: &str) -> Result<Self, Error> {
                let seg = Segment::open_or_create(name, &Self::spec(), &Options::new(), |_| {})?;
                Ok($name { seg })
            }

            fn spec() -> Spec {
                Spec::of::<()>($kind, None, Some(""))
            }

            fn raw(&self) -> RawLock<'_> {
                RawLock::of(&self.seg)
            }

            /// Blocks until the lock is held. Spins briefly, then sleeps in the kernel.
            ///
            /// # Errors
            ///
            /// [`LockError::OwnerDied`] (with the guard) when a previous holder died holding
            /// it; [`LockError::Deadlock`] when this thread already holds a `Lock`;
            /// [`LockError::Os`] when the segment was overwritten.
            pub fn acquire(&self) -> Result<LockGuard<'_>, LockError<LockGuard<'_>>> {
                wrap(self.raw().acquire())
            }

            /// Takes the lock only if no one holds it; never waits.
            ///
            /// # Errors
            ///
            /// [`LockError::WouldBlock`] when it is held, or as [`acquire`](Self::acquire).
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

            /// The segment name.
            pub fn name(&self) -> &str {
                self.seg.name()
            }

            /// Keeps the name when this creating handle is dropped, so that others can still open
            /// it; remove it later with [`unlink`](crate::unlink).
            pub fn persist(&self) {
                self.seg.persist();
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($name))
                    .field("name", &self.seg.name())
                    .field("owner", &self.seg.is_owner())
                    .finish()
            }
        }
    };
}

lock_type!(
    /// A cross-process mutual-exclusion lock in a named segment of its own (Python's
    /// `multiprocessing.Lock`). Not reentrant: acquiring it twice on one thread is
    /// [`LockError::Deadlock`], not a hang.
    ///
    /// When a holder dies (even by `SIGKILL`), the next acquirer gets the guard inside
    /// [`LockError::OwnerDied`]; this is robust on Linux (glibc's robust mutexes) and is not on
    /// platforms without robust process-shared mutexes.
    Lock,
    Kind::Lock,
    "let name = format!(\"doc-lock-{}\", std::process::id());\nlet lock = mpshm::Lock::create(&name)?;\n{\n    let _guard = lock.acquire().expect(\"lock\");\n    // ... critical section ...\n}\nassert!(lock.try_acquire().is_ok());\ndrop(lock);\n# Ok::<(), Box<dyn std::error::Error>>(())"
);

lock_type!(
    /// A reentrant cross-process lock (Python's `multiprocessing.RLock`): the thread that holds it
    /// may acquire it again, and must release it as often. Robust like [`Lock`].
    RLock,
    Kind::RLock,
    "let name = format!(\"doc-rlock-{}\", std::process::id());\nlet lock = mpshm::RLock::create(&name)?;\nlet outer = lock.acquire().expect(\"lock\");\nlet inner = lock.acquire().expect(\"re-enter\"); // same thread: fine\ndrop((inner, outer));\n# Ok::<(), Box<dyn std::error::Error>>(())"
);
