//! [`Value`] and [`RawValue`]: one plain-data value in a named segment, Python's
//! `multiprocessing.Value` and `RawValue`.
//!
//! `Value` carries a robust lock; `get`, `set` and `update` take it, and `lock` hands out a guard.
//! The guard works on a private copy that is written back when it drops, so no reference into
//! shared memory escapes. Every write to a `Value` takes its lock, so none can be lost: the
//! lock-free integer operations (`fetch_add` and friends) belong to `RawValue` alone, as Python's
//! `Value(lock=False)` is a raw value. (Beside a guard's write-back, a lock-free `fetch_add` on the
//! same value would be overwritten and lost.)

use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::time::Duration;

use crate::error::{AccessError, Error, LockError};
use crate::segment::{Identity, Kind, Options, Segment, Spec};
use crate::shared_type::SharedType;
use crate::shm::{Made, Shm};
use crate::sync::atomic::AtomicInt;
use crate::sync::{Acquired, Held, RawLock, with_lock};

/// The one `T` of a `Value` or `RawValue` segment (of `kind`): what both hand [`Shm`].
fn spec<T: SharedType>(kind: Kind, opts: &Options) -> Result<Spec, Error> {
    if std::mem::size_of::<T>() == 0 {
        return Err(Error::InvalidLength {
            len: 0,
            reason: "a zero-sized type cannot be shared",
        });
    }
    Ok(Spec::elements(kind, Identity::of::<T>(opts), 1))
}

/// Checks that an opened segment holds one element.
fn one(seg: Segment) -> Result<Segment, Error> {
    if seg.count() != 1 {
        return Err(Error::Corrupt {
            name: seg.name().to_owned(),
            reason: format!("a value segment holds {} elements", seg.count()),
        });
    }
    Ok(seg)
}

fn debug<T>(seg: &Segment, ty: &str, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    f.debug_struct(ty)
        .field("name", &seg.name())
        .field("type", &std::any::type_name::<T>())
        .field("owner", &seg.is_owner())
        .finish()
}

/// One `T` in a named segment, guarded by a robust cross-process lock.
///
/// Every read and write takes the lock, so no combination of calls, in any number of processes,
/// loses an update. There are no lock-free operations on a `Value`: for a counter that needs no
/// lock, use a [`RawValue`] of an integer type (Python's `Value(lock=False)`), whose
/// `fetch_add` and friends are one atomic instruction.
///
/// ```
/// use mpshm::prelude::*;
///
/// let name = format!("doc-value-{}", std::process::id());
/// let v = mpshm::Value::<u64>::create(&name, 0)?;
/// v.set(41).expect("lock");
/// v.update(|x| *x += 1).expect("lock");
/// assert_eq!(v.get().expect("lock"), 42);
/// # Ok::<(), mpshm::Error>(())
/// ```
///
/// A lock-free write beside the lock's does not compile:
///
/// ```compile_fail
/// # use mpshm::prelude::*;
/// # let name = format!("doc-value-cf-{}", std::process::id());
/// let v = mpshm::Value::<u64>::create(&name, 0)?;
/// v.fetch_add(1); // no such method: use a RawValue
/// # Ok::<(), mpshm::Error>(())
/// ```
pub struct Value<T> {
    seg: Segment,
    _t: PhantomData<fn() -> T>,
}

/// `Init` is the initial value. [`Error::InvalidLength`] for a zero-sized `T`.
impl<T: SharedType> Shm for Value<T> {
    type Init = T;

    fn spec(_: Option<&T>, opts: &Options) -> Result<Spec, Error> {
        spec::<T>(Kind::Value, opts)
    }

    fn init(seg: &Segment, init: &T) -> Result<(), Error> {
        seg.write(0, init);
        Ok(())
    }

    fn wrap(seg: Segment, _: Made, _: Option<&T>, _: &Options) -> Result<Self, Error> {
        Ok(Value {
            seg: one(seg)?,
            _t: PhantomData,
        })
    }

    fn segment(&self) -> &Segment {
        &self.seg
    }
}

impl<T> fmt::Debug for Value<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        debug::<T>(&self.seg, "Value", f)
    }
}

impl<T: SharedType> Value<T> {
    /// Reads the value under the lock.
    ///
    /// # Errors
    ///
    /// [`AccessError::OwnerDied`] with the value read, when a lock holder died; see
    /// [`lock`](Self::lock) to repair. [`AccessError::Deadlock`] when this thread holds a guard.
    pub fn get(&self) -> Result<T, AccessError<T>> {
        with_lock(&self.seg, |seg| seg.read(0))
    }

    /// Writes the value under the lock.
    ///
    /// # Errors
    ///
    /// As [`get`](Self::get); with `OwnerDied` the write has been done.
    pub fn set(&self, v: T) -> Result<(), AccessError<()>> {
        with_lock(&self.seg, |seg| seg.write(0, &v))
    }

    /// Runs `f` on the value under the lock, storing what it leaves. If `f` panics, nothing is
    /// stored and the lock is poisoned.
    ///
    /// # Errors
    ///
    /// As [`get`](Self::get), with `f`'s result inside `OwnerDied`.
    pub fn update<R>(&self, f: impl FnOnce(&mut T) -> R) -> Result<R, AccessError<R>> {
        with_lock(&self.seg, |seg| {
            let mut v: T = seg.read(0);
            let r = f(&mut v);
            seg.write(0, &v);
            r
        })
    }

    fn guard<'a>(
        &'a self,
        r: Acquired<'a>,
    ) -> Result<ValueGuard<'a, T>, LockError<ValueGuard<'a, T>>> {
        let wrap = |held| ValueGuard {
            value: self.seg.read(0),
            seg: &self.seg,
            held,
        };
        r.map(wrap).map_err(|e| e.map(wrap))
    }

    /// Takes the lock and returns a guard that derefs to the value while it is held.
    ///
    /// ```
    /// # use mpshm::prelude::*;
    /// # let name = format!("doc-vlock-{}", std::process::id());
    /// let v = mpshm::Value::<f64>::create(&name, 1.5)?;
    /// let mut g = match v.lock() {
    ///     Ok(g) => g,
    ///     Err(mpshm::LockError::OwnerDied(g)) => {
    ///         g.mark_consistent(); // after checking the value
    ///         g
    ///     }
    ///     Err(e) => panic!("{e}"),
    /// };
    /// *g *= 2.0;
    /// drop(g);
    /// assert_eq!(v.get().expect("lock"), 3.0);
    /// # Ok::<(), mpshm::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Lock::acquire`](crate::Lock::acquire).
    pub fn lock(&self) -> Result<ValueGuard<'_, T>, LockError<ValueGuard<'_, T>>> {
        self.guard(RawLock::of(&self.seg).acquire())
    }

    /// Takes the lock only if it is free.
    ///
    /// # Errors
    ///
    /// As [`Lock::try_acquire`](crate::Lock::try_acquire).
    pub fn try_lock(&self) -> Result<ValueGuard<'_, T>, LockError<ValueGuard<'_, T>>> {
        self.guard(RawLock::of(&self.seg).try_acquire())
    }

    /// Takes the lock, waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// As [`Lock::acquire_timeout`](crate::Lock::acquire_timeout).
    pub fn lock_timeout(
        &self,
        timeout: Duration,
    ) -> Result<ValueGuard<'_, T>, LockError<ValueGuard<'_, T>>> {
        self.guard(RawLock::of(&self.seg).acquire_timeout(timeout))
    }

    /// Whether a lock holder died and no one has marked the value consistent since.
    pub fn is_poisoned(&self) -> bool {
        RawLock::of(&self.seg).is_poisoned()
    }
}

/// The lock of a [`Value`], held; derefs to a private copy of the value, which is written back
/// when the guard drops.
///
/// Dropped while its thread panics, it writes nothing back (the change may be half-made, and the
/// shared value keeps what it held) and poisons the lock, as [`LockGuard`](crate::LockGuard)
/// does. In a process forked while it was held it guards nothing: dropping it there writes
/// nothing and releases nothing.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct ValueGuard<'a, T: SharedType> {
    value: T,
    seg: &'a Segment,
    held: Held<'a>,
}

impl<T: SharedType> ValueGuard<'_, T> {
    /// Declares the value sound again after `OwnerDied`.
    pub fn mark_consistent(&self) {
        self.held.mark_consistent();
    }
}

impl<T: SharedType> Deref for ValueGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

impl<T: SharedType> DerefMut for ValueGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.value
    }
}

impl<T: SharedType> Drop for ValueGuard<'_, T> {
    fn drop(&mut self) {
        // Written before `held` (a later field) drops and releases the lock. Not while the
        // thread panics (the change may be half-made: the shared value keeps what it held, and
        // `held` poisons the lock), nor in a process forked while the guard was held (the lock
        // and the value are its parent's).
        if !self.held.panicked() && self.held.here() {
            self.seg.write(0, &self.value);
        }
    }
}

impl<T: SharedType + fmt::Debug> fmt::Debug for ValueGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ValueGuard").field(&self.value).finish()
    }
}

/// One `T` in a named segment, with no lock (Python's `RawValue`, and `Value(lock=False)`).
/// Reads and writes are word-atomic copies: a racing writer can tear a multi-word `T`, never
/// corrupt memory. For the integer types ([`AtomicInt`]) it is also a lock-free counter:
/// `load`, `store`, `swap`, `fetch_add`, `fetch_sub` and `compare_exchange` are one atomic
/// instruction each, `SeqCst`.
///
/// ```
/// use mpshm::prelude::*;
///
/// let name = format!("doc-raw-{}", std::process::id());
/// let v = mpshm::RawValue::<u32>::create(&name, 7)?;
/// v.set(9);
/// assert_eq!(v.get(), 9);
/// assert_eq!(v.fetch_add(1), 9);
/// assert_eq!(v.load(), 10);
/// # Ok::<(), mpshm::Error>(())
/// ```
pub struct RawValue<T> {
    seg: Segment,
    _t: PhantomData<fn() -> T>,
}

/// `Init` is the initial value. [`Error::InvalidLength`] for a zero-sized `T`.
impl<T: SharedType> Shm for RawValue<T> {
    type Init = T;

    fn spec(_: Option<&T>, opts: &Options) -> Result<Spec, Error> {
        spec::<T>(Kind::RawValue, opts)
    }

    fn init(seg: &Segment, init: &T) -> Result<(), Error> {
        seg.write(0, init);
        Ok(())
    }

    fn wrap(seg: Segment, _: Made, _: Option<&T>, _: &Options) -> Result<Self, Error> {
        Ok(RawValue {
            seg: one(seg)?,
            _t: PhantomData,
        })
    }

    fn segment(&self) -> &Segment {
        &self.seg
    }
}

impl<T> fmt::Debug for RawValue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        debug::<T>(&self.seg, "RawValue", f)
    }
}

impl<T: SharedType> RawValue<T> {
    /// Reads the value.
    pub fn get(&self) -> T {
        self.seg.read(0)
    }

    /// Writes the value.
    pub fn set(&self, v: T) {
        self.seg.write(0, &v)
    }
}

impl<T: AtomicInt> RawValue<T> {
    fn atomic(&self) -> &T::Atomic {
        self.seg.shared(self.seg.payload_offset())
    }

    /// Reads the integer atomically.
    pub fn load(&self) -> T {
        T::load(self.atomic())
    }

    /// Writes the integer atomically.
    pub fn store(&self, v: T) {
        T::store(self.atomic(), v)
    }

    /// Replaces the integer atomically, returning the old one.
    pub fn swap(&self, v: T) -> T {
        T::swap(self.atomic(), v)
    }

    /// Adds `v` atomically (wrapping), returning the old value.
    pub fn fetch_add(&self, v: T) -> T {
        T::fetch_add(self.atomic(), v)
    }

    /// Subtracts `v` atomically (wrapping), returning the old value.
    pub fn fetch_sub(&self, v: T) -> T {
        T::fetch_sub(self.atomic(), v)
    }

    /// Stores `new` if the value is `current`.
    ///
    /// # Errors
    ///
    /// The value found, when it was not `current`.
    pub fn compare_exchange(&self, current: T, new: T) -> Result<T, T> {
        T::compare_exchange(self.atomic(), current, new)
    }
}
