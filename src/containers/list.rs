//! [`SharedList`]: a list in a named segment, Python's `Manager().list()` without the server
//! process.
//!
//! The index lists the items' entries in order. Appending writes the entry and the index word
//! past the end, then commits the new length; replacing an item writes a spare entry and swaps
//! its number in. Operations that move many items (`insert`, `remove`, `reverse`) write the new
//! order into the other index copy and commit the copy and the length together, in one store:
//! they cost O(n) word copies, as Python's do, and are never seen half done.

use std::fmt;
use std::marker::PhantomData;
use std::sync::atomic::Ordering;

use super::store::{self, Store, Writer};
use super::words::{POINT_TRIES, SNAPSHOT_TRIES, Shape, Words, commit};
use super::{ListIndex, insert_position, position};
use crate::codec::{self, Codec, Plain};
use crate::error::{ContainerError, Error};
use crate::segment::Options;
use crate::segment::{Segment, Spec};
use crate::shm::{Made, Shm};

/// A list of `T` in a named shared-memory segment, usable from any process that opens it by
/// name: the role of Python's `multiprocessing.Manager().list()`, without a server process.
///
/// `C` says how items are stored: [`Plain`] (the default) for plain-data types, copied as they
/// are; `Postcard` for any serde type (`SerdeList`,
/// feature `serde`). The number of items, and for serde the bytes per item, are fixed at
/// creation. Indices are any integer type; negative ones count from the end, as in Python.
///
/// **Consistency**, as for [`SharedDict`](super::SharedDict): writes take the segment's robust
/// lock and are linearizable; `get`, `len` and the snapshots take none and see a state some
/// write left; a writer killed at any instruction leaves its operation done or not done.
///
/// ```
/// use mpshm::prelude::*;
/// let name = format!("doc-list-{}", std::process::id());
/// let l = mpshm::SharedList::<i32>::create(&name, 16)?;
/// l.extend(0..10)?;                       // Python: manager.list(range(10))
/// l.reverse()?;
/// assert_eq!(l.get(0)?, 9);
/// assert_eq!(l.get(-1)?, 0);
/// assert_eq!(l.pop()?, Some(0));
/// assert_eq!(l.to_vec()?, [9, 8, 7, 6, 5, 4, 3, 2, 1]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct SharedList<T, C = Plain> {
    store: Store,
    _t: PhantomData<fn() -> (T, C)>,
}

/// The state word for index copy `copy` holding `len` items.
#[inline]
fn state(copy: usize, len: usize) -> u64 {
    (copy as u64) << 32 | len as u64
}

/// `Init` is the codec's: the capacity (`usize`, 1 to 2^30) for plain data;
/// `(capacity, item_bytes)` for [`Postcard`](crate::Postcard), whose items have room for
/// `item_bytes` encoded bytes each (at most 2^30). [`Error::InvalidLength`] past those limits;
/// `open` checks the item type, `open_or_create` also the sizes ([`Error::LayoutMismatch`]).
/// The options' mode, open timeout and type tag apply.
impl<T, C: Codec<T>> Shm for SharedList<T, C> {
    type Init = C::Init;

    fn spec(init: Option<&C::Init>, opts: &Options) -> Result<Spec, Error> {
        let noun = format!("{}list", C::PREFIX);
        let ty = super::identity(&noun, &[codec::identity::<T, C>(&Options::new())], opts);
        store::spec(Shape::List, init.map(Self::sizes), C::ID, ty)
    }

    fn wrap(seg: Segment, _: Made, init: Option<&C::Init>, _: &Options) -> Result<Self, Error> {
        let store = Store::wrap(
            seg,
            Shape::List,
            C::ID,
            C::fixed_len(),
            init.map(Self::sizes),
        )?;
        Ok(SharedList {
            store,
            _t: PhantomData,
        })
    }

    fn segment(&self) -> &Segment {
        self.store.segment()
    }
}

impl<T, C: Codec<T>> SharedList<T, C> {
    /// `(capacity, item bytes)` of `init`.
    fn sizes(init: &C::Init) -> (usize, usize) {
        let (capacity, bytes) = C::sizes(init);
        (capacity, C::fixed_len().unwrap_or(bytes))
    }

    /// `v`'s bytes, checked against the room an item has.
    fn encode<'a>(&self, v: &'a T, scratch: &'a mut Vec<u8>) -> Result<&'a [u8], ContainerError> {
        let bytes = C::encode(v, usize::MAX, scratch).map_err(Into::into)?;
        let max = self.store.layout().entry_bytes;
        if bytes.len() > max {
            return Err(ContainerError::TooLarge {
                len: bytes.len(),
                max,
            });
        }
        Ok(bytes)
    }

    fn full(&self) -> ContainerError {
        ContainerError::Full {
            capacity: self.store.layout().capacity,
        }
    }

    /// The entry of the item at position `at` (below the length) of index copy `copy`.
    #[inline]
    fn item(s: &Store, copy: usize, at: usize) -> Result<usize, ContainerError> {
        s.entry_id(s.index(copy)[at].load(Ordering::Relaxed).wrapping_sub(1))
    }

    /// Entry `id`'s item, copied out.
    #[inline]
    fn raw(s: &Store, id: usize) -> Result<C::Raw, ContainerError> {
        let (klen, vlen) = s.lens(id)?;
        s.read_raw::<C, T>(id, klen, vlen)
    }

    #[inline]
    fn decode(raw: C::Raw) -> Result<T, ContainerError> {
        C::decode(raw).map_err(Into::into)
    }

    /// Appends the entries of `items` (already checked to fit), under the lock.
    fn append(&self, w: &Writer<'_>, items: &[&[u8]]) -> Result<(), ContainerError> {
        let (copy, len) = w.list_state()?;
        if items.len() > w.layout().capacity - len {
            return Err(self.full());
        }
        let index = w.index(copy);
        // (An error inside a write leaves it unended: the next writer repairs.)
        let token = w.begin();
        for (k, bytes) in items.iter().enumerate() {
            let id = w.alloc()?;
            w.write_entry(id, &[], bytes, 0);
            // Past the length: unreachable until the commit.
            index[len + k].store(id as u64 + 1, Ordering::Relaxed);
        }
        commit(w.state_word(), state(copy, len + items.len()));
        w.end(token);
        Ok(())
    }

    /// Appends `v` (Python's `append`).
    ///
    /// # Errors
    ///
    /// [`ContainerError::Full`] when every item is taken; [`ContainerError::TooLarge`],
    /// [`ContainerError::Encode`] for serde items that do not fit or do not serialise;
    /// [`ContainerError::Corrupt`], [`ContainerError::Os`] for a damaged segment.
    pub fn push(&self, v: T) -> Result<(), ContainerError> {
        let mut scratch = Vec::new();
        let bytes = self.encode(&v, &mut scratch)?;
        let w = self.store.lock()?;
        self.append(&w, &[bytes])
    }

    /// Appends every item of `items`, all or none (Python's `extend`).
    ///
    /// # Errors
    ///
    /// As [`push`](Self::push); [`ContainerError::Full`] when they do not all fit (none is
    /// appended).
    pub fn extend(&self, items: impl IntoIterator<Item = T>) -> Result<(), ContainerError> {
        let items: Vec<T> = items.into_iter().collect();
        let mut scratch: Vec<Vec<u8>> = items.iter().map(|_| Vec::new()).collect();
        let bytes = items
            .iter()
            .zip(&mut scratch)
            .map(|(v, s)| self.encode(v, s))
            .collect::<Result<Vec<&[u8]>, _>>()?;
        let w = self.store.lock()?;
        self.append(&w, &bytes)
    }

    /// Removes and returns the last item; `None` when the list is empty.
    ///
    /// # Errors
    ///
    /// [`ContainerError::Decode`] when the item is not a valid `T` (it is removed); the errors
    /// of a damaged segment.
    pub fn pop(&self) -> Result<Option<T>, ContainerError> {
        let raw = {
            let w = self.store.lock()?;
            let (copy, len) = w.list_state()?;
            if len == 0 {
                return Ok(None);
            }
            let id = Self::item(&w, copy, len - 1)?;
            let raw = Self::raw(&w, id)?;
            let token = w.begin();
            commit(w.state_word(), state(copy, len - 1));
            w.free(id);
            w.end(token);
            raw
        };
        Self::decode(raw).map(Some)
    }

    /// The item at `index` (Python's `l[index]`). Takes no lock.
    ///
    /// # Errors
    ///
    /// [`ContainerError::IndexOutOfRange`]; [`ContainerError::Decode`] when the item is not a
    /// valid `T`; the errors of a damaged segment.
    #[inline]
    pub fn get(&self, index: impl ListIndex) -> Result<T, ContainerError> {
        let raw = self.store.read(POINT_TRIES, |s| {
            let (copy, len) = s.list_state()?;
            Self::raw(s, Self::item(s, copy, position(index, len)?)?)
        })?;
        Self::decode(raw)
    }

    /// Replaces the item at `index` (Python's `l[index] = v`).
    ///
    /// # Errors
    ///
    /// [`ContainerError::IndexOutOfRange`], or as [`push`](Self::push).
    pub fn set(&self, index: impl ListIndex, v: T) -> Result<(), ContainerError> {
        let mut scratch = Vec::new();
        let bytes = self.encode(&v, &mut scratch)?;
        let w = self.store.lock()?;
        let (copy, len) = w.list_state()?;
        let at = position(index, len)?;
        let old = Self::item(&w, copy, at)?;
        // The pool has a spare entry even when the list is full.
        let new = w.alloc()?;
        let token = w.begin();
        w.write_entry(new, &[], bytes, 0);
        commit(&w.index(copy)[at], new as u64 + 1);
        w.free(old);
        w.end(token);
        Ok(())
    }

    /// Inserts `v` before `index` (Python's `insert`: an index past either end means that end).
    ///
    /// # Errors
    ///
    /// As [`push`](Self::push).
    pub fn insert(&self, index: impl ListIndex, v: T) -> Result<(), ContainerError> {
        let mut scratch = Vec::new();
        let bytes = self.encode(&v, &mut scratch)?;
        let w = self.store.lock()?;
        let (copy, len) = w.list_state()?;
        let at = insert_position(index, len);
        if at == len {
            return self.append(&w, &[bytes]);
        }
        if len == w.layout().capacity {
            return Err(self.full());
        }
        let new = w.alloc()?;
        let token = w.begin();
        w.write_entry(new, &[], bytes, 0);
        let (from, to) = (w.index(copy), w.index(1 - copy));
        for j in 0..at {
            to[j].store(from[j].load(Ordering::Relaxed), Ordering::Relaxed);
        }
        to[at].store(new as u64 + 1, Ordering::Relaxed);
        for j in at..len {
            to[j + 1].store(from[j].load(Ordering::Relaxed), Ordering::Relaxed);
        }
        commit(w.state_word(), state(1 - copy, len + 1));
        w.end(token);
        Ok(())
    }

    /// Removes and returns the item at `index` (Python's `l.pop(index)`).
    ///
    /// # Errors
    ///
    /// [`ContainerError::IndexOutOfRange`]; as [`pop`](Self::pop).
    pub fn remove(&self, index: impl ListIndex) -> Result<T, ContainerError> {
        let raw = {
            let w = self.store.lock()?;
            let (copy, len) = w.list_state()?;
            let at = position(index, len)?;
            let id = Self::item(&w, copy, at)?;
            let raw = Self::raw(&w, id)?;
            let token = w.begin();
            let (from, to) = (w.index(copy), w.index(1 - copy));
            for j in (0..len).filter(|&j| j != at) {
                to[j - usize::from(j > at)]
                    .store(from[j].load(Ordering::Relaxed), Ordering::Relaxed);
            }
            commit(w.state_word(), state(1 - copy, len - 1));
            w.free(id);
            w.end(token);
            raw
        };
        Self::decode(raw)
    }

    /// Reverses the list in place, in one step.
    ///
    /// # Errors
    ///
    /// The errors of a damaged segment.
    pub fn reverse(&self) -> Result<(), ContainerError> {
        let w = self.store.lock()?;
        let (copy, len) = w.list_state()?;
        let token = w.begin();
        let (from, to) = (w.index(copy), w.index(1 - copy));
        for j in 0..len {
            to[len - 1 - j].store(from[j].load(Ordering::Relaxed), Ordering::Relaxed);
        }
        commit(w.state_word(), state(1 - copy, len));
        w.end(token);
        Ok(())
    }

    /// Removes every item, in one step. It also resets a list whose shared memory was damaged.
    ///
    /// # Errors
    ///
    /// [`ContainerError::Os`] when the lock itself is damaged.
    pub fn clear(&self) -> Result<(), ContainerError> {
        let w = self.store.lock_to_reset()?;
        let copy = w.list_state().map_or(0, |(copy, _)| copy);
        let token = w.begin();
        commit(w.state_word(), state(copy, 0));
        w.reset_pool();
        w.end(token);
        w.mark_consistent();
        Ok(())
    }

    /// Every item, from one consistent snapshot (Python's `l[:]`).
    ///
    /// # Errors
    ///
    /// [`ContainerError::Decode`] when an item is not a valid `T`; the errors of a damaged
    /// segment.
    pub fn to_vec(&self) -> Result<Vec<T>, ContainerError> {
        let raws = self.store.read(SNAPSHOT_TRIES, |s| {
            let (copy, len) = s.list_state()?;
            (0..len)
                .map(|at| Self::raw(s, Self::item(s, copy, at)?))
                .collect::<Result<Vec<_>, _>>()
        })?;
        raws.into_iter().map(Self::decode).collect()
    }

    /// An iterator over a consistent snapshot of the items.
    ///
    /// # Errors
    ///
    /// As [`to_vec`](Self::to_vec).
    pub fn iter(&self) -> Result<std::vec::IntoIter<T>, ContainerError> {
        Ok(self.to_vec()?.into_iter())
    }

    /// The number of items. Takes no lock: the length is part of one committed word.
    pub fn len(&self) -> usize {
        let s = self.store.state();
        ((s & super::words::LOW) as usize).min(self.store.layout().capacity)
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The most items it holds, fixed at creation.
    pub fn capacity(&self) -> usize {
        self.store.layout().capacity
    }

    /// The bytes each item has (its size, for plain data).
    pub fn item_bytes(&self) -> usize {
        self.store.layout().entry_bytes
    }

    /// How many times a writer that died in the middle of an operation has had its work
    /// repaired by the next one to take the lock (over the list's lifetime, by every process).
    pub fn repairs(&self) -> u64 {
        self.store.repairs()
    }
}

impl<T, C> fmt::Debug for SharedList<T, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedList")
            .field("name", &self.store.segment().name())
            .field("capacity", &self.store.layout().capacity)
            .field("owner", &self.store.segment().is_owner())
            .finish()
    }
}
