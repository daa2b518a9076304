//! [`Array`] and [`RawArray`]: a fixed-length, one-dimensional array of plain data in a named
//! segment, Python's `multiprocessing.Array` and `RawArray`.
//!
//! `Array` carries a robust lock: element access takes it, and `lock` hands out a guard that
//! derefs to `[T]` in place (no copy) while the lock is held. `RawArray` has no lock; its element
//! reads and writes are word-atomic copies.

use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::time::Duration;

use crate::error::{AccessError, Error, LengthMismatch, LockError, OutOfBounds};
use crate::segment::{Identity, Kind, LockedSlice, Options, Segment, Spec};
use crate::shared_type::SharedType;
use crate::shm::{self, How, Made, Shm};
use crate::sync::{Acquired, Held, RawLock, with_lock};

/// The segment of `len` elements of `T` (of `kind`); an opener (`None`) takes any length.
fn spec<T: SharedType>(kind: Kind, len: Option<usize>, opts: &Options) -> Result<Spec, Error> {
    if std::mem::size_of::<T>() == 0 {
        return Err(Error::InvalidLength {
            len: 0,
            reason: "a zero-sized type cannot be shared",
        });
    }
    if len == Some(0) {
        return Err(Error::InvalidLength {
            len: 0,
            reason: "an array needs at least one element",
        });
    }
    Ok(Spec::elements(
        kind,
        Identity::of::<T>(opts),
        len.unwrap_or(0),
    ))
}

/// An opened array, checked against the length asked for, if any.
fn checked(seg: Segment, len: Option<&usize>) -> Result<Segment, Error> {
    match len {
        Some(&len) if len != seg.count() => Err(Error::LayoutMismatch {
            name: seg.name().to_owned(),
            expected: format!("an array of {len} elements"),
            found: format!("an array of {} elements", seg.count()),
        }),
        _ if seg.count() == 0 => Err(Error::Corrupt {
            name: seg.name().to_owned(),
            reason: "an array of no elements".to_owned(),
        }),
        _ => Ok(seg),
    }
}

/// Creates the array `name` of `kind` holding a copy of `init`: `from_slice`, through the same
/// path as [`Shm::create`].
fn from_slice<T: SharedType>(
    kind: Kind,
    name: &str,
    init: &[T],
    opts: &Options,
) -> Result<Segment, Error> {
    let spec = spec::<T>(kind, Some(init.len()), opts)?;
    shm::make(
        name,
        How::Create,
        &spec,
        opts,
        |seg| {
            seg.write_slice(init);
            Ok(())
        },
        |seg, _| Ok(seg),
    )
}

fn bounds(index: usize, len: usize) -> Result<(), OutOfBounds> {
    if index < len {
        Ok(())
    } else {
        Err(OutOfBounds { index, len })
    }
}

fn same_len(src: usize, len: usize) -> Result<(), LengthMismatch> {
    if src == len {
        Ok(())
    } else {
        Err(LengthMismatch {
            expected: len,
            found: src,
        })
    }
}

fn debug<T>(seg: &Segment, ty: &str, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    f.debug_struct(ty)
        .field("name", &seg.name())
        .field("type", &std::any::type_name::<T>())
        .field("len", &seg.count())
        .field("owner", &seg.is_owner())
        .finish()
}

impl<R> From<OutOfBounds> for AccessError<R> {
    fn from(e: OutOfBounds) -> Self {
        AccessError::OutOfBounds {
            index: e.index,
            len: e.len,
        }
    }
}

impl<R> From<LengthMismatch> for AccessError<R> {
    fn from(e: LengthMismatch) -> Self {
        AccessError::LengthMismatch {
            expected: e.expected,
            found: e.found,
        }
    }
}

/// A fixed-length array of `T` in a named segment, guarded by a robust cross-process lock.
///
/// ```
/// let name = format!("doc-array-{}", std::process::id());
/// let a = mpshm::Array::<i32>::from_slice(&name, &[0, 1, 2, 3])?;
/// a.set(1, 10).expect("lock");
/// for x in a.lock().expect("lock").iter_mut() {
///     *x = -*x;
/// }
/// assert_eq!(a.to_vec().expect("lock"), [0, -10, -2, -3]);
/// # Ok::<(), mpshm::Error>(())
/// ```
pub struct Array<T> {
    seg: Segment,
    _t: PhantomData<fn() -> T>,
}

/// `Init` is the length; the elements start zeroed ([`from_slice`](Array::from_slice) copies
/// them from a slice). [`Error::InvalidLength`] for a zero length, a zero-sized `T` or an
/// array too large to map; `open` takes any length, `open_or_create` fails with
/// [`Error::LayoutMismatch`] on an existing array of another length.
impl<T: SharedType> Shm for Array<T> {
    type Init = usize;

    fn spec(len: Option<&usize>, opts: &Options) -> Result<Spec, Error> {
        spec::<T>(Kind::Array, len.copied(), opts)
    }

    fn wrap(seg: Segment, _: Made, len: Option<&usize>, _: &Options) -> Result<Self, Error> {
        Ok(Array {
            seg: checked(seg, len)?,
            _t: PhantomData,
        })
    }

    fn segment(&self) -> &Segment {
        &self.seg
    }
}

impl<T> fmt::Debug for Array<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        debug::<T>(&self.seg, "Array", f)
    }
}

impl<T: SharedType> Array<T> {
    /// Creates the array `name` exclusively, holding a copy of `init` (Python's
    /// `Array('i', range(10))`).
    ///
    /// # Errors
    ///
    /// As [`Shm::create`].
    pub fn from_slice(name: &str, init: &[T]) -> Result<Self, Error> {
        Self::from_slice_with(name, init, &Options::new())
    }

    /// [`from_slice`](Self::from_slice) with options.
    ///
    /// # Errors
    ///
    /// As [`Shm::create`].
    pub fn from_slice_with(name: &str, init: &[T], opts: &Options) -> Result<Self, Error> {
        Ok(Array {
            seg: from_slice(Kind::Array, name, init, opts)?,
            _t: PhantomData,
        })
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        self.seg.count()
    }

    /// Always `false`: arrays have at least one element.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Reads element `index` under the lock.
    ///
    /// # Errors
    ///
    /// [`AccessError::OutOfBounds`]; [`AccessError::OwnerDied`] with the element read when a
    /// lock holder died; [`AccessError::Deadlock`] when this thread holds a guard.
    pub fn get(&self, index: usize) -> Result<T, AccessError<T>> {
        bounds(index, self.len())?;
        with_lock(&self.seg, |seg| seg.read(index))
    }

    /// Writes element `index` under the lock.
    ///
    /// # Errors
    ///
    /// As [`get`](Self::get); with `OwnerDied` the write has been done.
    pub fn set(&self, index: usize, v: T) -> Result<(), AccessError<()>> {
        bounds(index, self.len())?;
        with_lock(&self.seg, |seg| seg.write(index, &v))
    }

    /// Copies every element out under the lock.
    ///
    /// # Errors
    ///
    /// As [`get`](Self::get), without `OutOfBounds`.
    pub fn to_vec(&self) -> Result<Vec<T>, AccessError<Vec<T>>> {
        with_lock(&self.seg, |seg| {
            let mut v = vec![T::zeroed(); seg.count()];
            seg.read_slice(&mut v);
            v
        })
    }

    /// Overwrites every element from `src` under the lock.
    ///
    /// # Errors
    ///
    /// [`AccessError::LengthMismatch`] unless `src.len() == self.len()`; otherwise as
    /// [`set`](Self::set).
    pub fn copy_from_slice(&self, src: &[T]) -> Result<(), AccessError<()>> {
        same_len(src.len(), self.len())?;
        with_lock(&self.seg, |seg| seg.write_slice(src))
    }

    fn guard<'a>(
        &'a self,
        r: Acquired<'a>,
    ) -> Result<ArrayGuard<'a, T>, LockError<ArrayGuard<'a, T>>> {
        let wrap = |held| ArrayGuard {
            slice: self.seg.locked_slice(held),
        };
        r.map(wrap).map_err(|e| e.map(wrap))
    }

    /// Takes the lock and returns a guard that derefs to the elements, in place.
    ///
    /// # Errors
    ///
    /// As [`Lock::acquire`](crate::Lock::acquire).
    pub fn lock(&self) -> Result<ArrayGuard<'_, T>, LockError<ArrayGuard<'_, T>>> {
        self.guard(RawLock::of(&self.seg).acquire())
    }

    /// Takes the lock only if it is free.
    ///
    /// # Errors
    ///
    /// As [`Lock::try_acquire`](crate::Lock::try_acquire).
    pub fn try_lock(&self) -> Result<ArrayGuard<'_, T>, LockError<ArrayGuard<'_, T>>> {
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
    ) -> Result<ArrayGuard<'_, T>, LockError<ArrayGuard<'_, T>>> {
        self.guard(RawLock::of(&self.seg).acquire_timeout(timeout))
    }

    /// Whether a lock holder died and no one has marked the array consistent since.
    pub fn is_poisoned(&self) -> bool {
        RawLock::of(&self.seg).is_poisoned()
    }
}

/// The lock of an [`Array`], held; derefs to its elements in place.
///
/// Dropped while its thread panics, it poisons the lock (the changes made so far stay, since
/// they were made in place), as [`LockGuard`](crate::LockGuard) does. In a process forked while
/// it was held it guards nothing: dropping it there does nothing, and writing through it there
/// races with the parent.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct ArrayGuard<'a, T> {
    slice: LockedSlice<'a, T, Held<'a>>,
}

impl<T> ArrayGuard<'_, T> {
    /// Declares the array sound again after `OwnerDied`.
    pub fn mark_consistent(&self) {
        self.slice.proof().mark_consistent();
    }
}

impl<T: SharedType> Deref for ArrayGuard<'_, T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        &self.slice
    }
}

impl<T: SharedType> DerefMut for ArrayGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut [T] {
        &mut self.slice
    }
}

impl<T: SharedType + fmt::Debug> fmt::Debug for ArrayGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ArrayGuard").field(&&**self).finish()
    }
}

/// A fixed-length array of `T` in a named segment, with no lock (Python's `RawArray`).
///
/// ```
/// use mpshm::prelude::*;
///
/// let name = format!("doc-rawarray-{}", std::process::id());
/// let a = mpshm::RawArray::<f64>::create(&name, 3)?;
/// a.set(2, 0.5).expect("in bounds");
/// assert_eq!(a.get(2), Ok(0.5));
/// assert_eq!(a.get(3), Err(mpshm::OutOfBounds { index: 3, len: 3 }));
/// # Ok::<(), mpshm::Error>(())
/// ```
pub struct RawArray<T> {
    seg: Segment,
    _t: PhantomData<fn() -> T>,
}

/// `Init` is the length, as for [`Array`].
impl<T: SharedType> Shm for RawArray<T> {
    type Init = usize;

    fn spec(len: Option<&usize>, opts: &Options) -> Result<Spec, Error> {
        spec::<T>(Kind::RawArray, len.copied(), opts)
    }

    fn wrap(seg: Segment, _: Made, len: Option<&usize>, _: &Options) -> Result<Self, Error> {
        Ok(RawArray {
            seg: checked(seg, len)?,
            _t: PhantomData,
        })
    }

    fn segment(&self) -> &Segment {
        &self.seg
    }
}

impl<T> fmt::Debug for RawArray<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        debug::<T>(&self.seg, "RawArray", f)
    }
}

impl<T: SharedType> RawArray<T> {
    /// Creates the array `name` exclusively, holding a copy of `init`.
    ///
    /// # Errors
    ///
    /// As [`Shm::create`].
    pub fn from_slice(name: &str, init: &[T]) -> Result<Self, Error> {
        Self::from_slice_with(name, init, &Options::new())
    }

    /// [`from_slice`](Self::from_slice) with options.
    ///
    /// # Errors
    ///
    /// As [`Shm::create`].
    pub fn from_slice_with(name: &str, init: &[T], opts: &Options) -> Result<Self, Error> {
        Ok(RawArray {
            seg: from_slice(Kind::RawArray, name, init, opts)?,
            _t: PhantomData,
        })
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        self.seg.count()
    }

    /// Always `false`: arrays have at least one element.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Reads element `index`.
    ///
    /// # Errors
    ///
    /// [`OutOfBounds`] past the end.
    pub fn get(&self, index: usize) -> Result<T, OutOfBounds> {
        bounds(index, self.len())?;
        Ok(self.seg.read(index))
    }

    /// Writes element `index`.
    ///
    /// # Errors
    ///
    /// [`OutOfBounds`] past the end.
    pub fn set(&self, index: usize, v: T) -> Result<(), OutOfBounds> {
        bounds(index, self.len())?;
        self.seg.write(index, &v);
        Ok(())
    }

    /// Copies every element out.
    pub fn to_vec(&self) -> Vec<T> {
        let mut v = vec![T::zeroed(); self.len()];
        self.seg.read_slice(&mut v);
        v
    }

    /// Overwrites every element from `src`.
    ///
    /// # Errors
    ///
    /// [`LengthMismatch`] unless `src.len() == self.len()`.
    pub fn copy_from_slice(&self, src: &[T]) -> Result<(), LengthMismatch> {
        same_len(src.len(), self.len())?;
        self.seg.write_slice(src);
        Ok(())
    }
}
