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

use bytemuck::Pod;

use crate::error::{AccessError, Error, LockError};
use crate::segment::{Kind, LockedSlice, Options, Segment, Spec};
use crate::sync::{Acquired, Held, RawLock, with_lock};

fn spec<T>(kind: Kind, len: Option<usize>, opts: &Options) -> Result<Spec, Error> {
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
    Ok(Spec::of::<T>(kind, len, opts.type_tag.as_deref()))
}

fn bounds<R>(index: usize, len: usize) -> Result<(), AccessError<R>> {
    if index < len {
        Ok(())
    } else {
        Err(AccessError::OutOfBounds { index, len })
    }
}

fn same_len<R>(src: usize, len: usize) -> Result<(), AccessError<R>> {
    if src == len {
        Ok(())
    } else {
        Err(AccessError::LengthMismatch {
            expected: len,
            found: src,
        })
    }
}

macro_rules! array_common {
    ($ty:ident, $kind:expr) => {
        impl<T: Pod> $ty<T> {
            /// Creates the segment `name` exclusively, holding `len` zeroed elements.
            ///
            /// # Errors
            ///
            /// [`Error::InvalidLength`] for a zero length or one too large to map;
            /// [`Error::InvalidName`], [`Error::AlreadyExists`], [`Error::NoSpace`],
            /// [`Error::InvalidMode`], [`Error::Io`].
            pub fn create(name: &str, len: usize) -> Result<Self, Error> {
                Self::create_with(name, len, &Options::new())
            }

            /// [`create`](Self::create) with options.
            ///
            /// # Errors
            ///
            /// As [`create`](Self::create).
            pub fn create_with(name: &str, len: usize, opts: &Options) -> Result<Self, Error> {
                let seg = Segment::create(name, &spec::<T>($kind, Some(len), opts)?, opts, |_| {})?;
                Ok($ty {
                    seg,
                    _t: PhantomData,
                })
            }

            /// Creates the segment `name` exclusively, holding a copy of `init`.
            ///
            /// # Errors
            ///
            /// As [`create`](Self::create).
            pub fn from_slice(name: &str, init: &[T]) -> Result<Self, Error> {
                Self::from_slice_with(name, init, &Options::new())
            }

            /// [`from_slice`](Self::from_slice) with options.
            ///
            /// # Errors
            ///
            /// As [`create`](Self::create).
            pub fn from_slice_with(name: &str, init: &[T], opts: &Options) -> Result<Self, Error> {
                let spec = spec::<T>($kind, Some(init.len()), opts)?;
                let seg = Segment::create(name, &spec, opts, |seg| seg.write_slice(init))?;
                Ok($ty {
                    seg,
                    _t: PhantomData,
                })
            }

            /// Opens the existing array `name`, whatever its length.
            ///
            /// # Errors
            ///
            /// [`Error::NotFound`]; [`Error::LayoutMismatch`] when its elements are not `T`;
            /// [`Error::KindMismatch`]; [`Error::Corrupt`]; [`Error::NotReady`];
            /// [`Error::NotRegular`]; [`Error::Io`].
            pub fn open(name: &str) -> Result<Self, Error> {
                Self::open_with(name, &Options::new())
            }

            /// [`open`](Self::open) with options.
            ///
            /// # Errors
            ///
            /// As [`open`](Self::open).
            pub fn open_with(name: &str, opts: &Options) -> Result<Self, Error> {
                let seg = Segment::open(name, &spec::<T>($kind, None, opts)?, opts)?;
                Ok($ty {
                    seg,
                    _t: PhantomData,
                })
            }

            /// Opens `name` if it exists (it must have `len` elements), or creates it zeroed.
            ///
            /// # Errors
            ///
            /// As [`create`](Self::create) and [`open`](Self::open).
            pub fn open_or_create(name: &str, len: usize) -> Result<Self, Error> {
                let opts = Options::new();
                let seg = Segment::open_or_create(
                    name,
                    &spec::<T>($kind, Some(len), &opts)?,
                    &opts,
                    |_| {},
                )?;
                Ok($ty {
                    seg,
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

            /// The segment name.
            pub fn name(&self) -> &str {
                self.seg.name()
            }

            /// Keeps the name when this creating handle is dropped; remove it later with
            /// [`unlink`](crate::unlink).
            pub fn persist(&self) {
                self.seg.persist();
            }
        }

        impl<T> fmt::Debug for $ty<T> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($ty))
                    .field("name", &self.seg.name())
                    .field("type", &std::any::type_name::<T>())
                    .field("len", &self.seg.count())
                    .field("owner", &self.seg.is_owner())
                    .finish()
            }
        }
    };
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
    _t: PhantomData<T>,
}

array_common!(Array, Kind::Array);

impl<T: Pod> Array<T> {
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

impl<T: Pod> Deref for ArrayGuard<'_, T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        &self.slice
    }
}

impl<T: Pod> DerefMut for ArrayGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut [T] {
        &mut self.slice
    }
}

impl<T: Pod + fmt::Debug> fmt::Debug for ArrayGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ArrayGuard").field(&&**self).finish()
    }
}

/// A fixed-length array of `T` in a named segment, with no lock (Python's `RawArray`).
///
/// ```
/// let name = format!("doc-rawarray-{}", std::process::id());
/// let a = mpshm::RawArray::<f64>::create(&name, 3)?;
/// a.set(2, 0.5).expect("in bounds");
/// assert_eq!(a.get(2), Some(0.5));
/// assert_eq!(a.get(3), None);
/// # Ok::<(), mpshm::Error>(())
/// ```
pub struct RawArray<T> {
    seg: Segment,
    _t: PhantomData<T>,
}

array_common!(RawArray, Kind::RawArray);

impl<T: Pod> RawArray<T> {
    /// Reads element `index`, or `None` past the end.
    pub fn get(&self, index: usize) -> Option<T> {
        (index < self.len()).then(|| self.seg.read(index))
    }

    /// Writes element `index`.
    ///
    /// # Errors
    ///
    /// [`AccessError::OutOfBounds`].
    pub fn set(&self, index: usize, v: T) -> Result<(), AccessError<()>> {
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
    /// [`AccessError::LengthMismatch`] unless `src.len() == self.len()`.
    pub fn copy_from_slice(&self, src: &[T]) -> Result<(), AccessError<()>> {
        same_len(src.len(), self.len())?;
        self.seg.write_slice(src);
        Ok(())
    }
}
