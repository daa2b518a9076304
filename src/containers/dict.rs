//! [`SharedDict`]: a hash map in a named segment, Python's `Manager().dict()` without the
//! server process.
//!
//! The index is a hash table with linear probing and tombstones (Knuth's Algorithm L, with
//! deletion by marking): inserting and removing each change one index word, which is what makes
//! every change a single committed store. Robin Hood hashing or backward-shift deletion would
//! move several words per operation. Tombstones are kept few: a removal whose next slot is
//! empty empties its slot and the tombstones just before it, and an insert that would leave
//! fewer than 1/8 of the slots empty first rebuilds the index into its other copy, without
//! tombstones, and switches copies with one store. Entries keep an insertion stamp, so
//! snapshots come out in insertion order, as Python's dicts do.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::hash::Hash;
use std::marker::PhantomData;
use std::sync::atomic::Ordering;

use super::store::{self, Store, Writer};
use super::words::{
    EMPTY, ID_BASE, LOW, POINT_TRIES, SNAPSHOT_TRIES, Shape, TOMB, Words, commit, corrupt,
};
use crate::codec::{self, Codec, Plain};
use crate::error::{ContainerError, Error};
use crate::segment::{Options, Segment, Spec};
use crate::shm::{Made, Shm};

/// A hash map from `K` to `V` in a named shared-memory segment, usable from any process that
/// opens it by name: the role of Python's `multiprocessing.Manager().dict()`, without a server
/// process.
///
/// `C` says how keys and values are stored: [`Plain`] (the default) for plain-data types, copied
/// as they are; `Postcard` for any serde types
/// (`SerdeDict`, feature `serde`). The number of entries, and for serde the
/// bytes per entry, are fixed at creation; an insert past them is [`ContainerError::Full`] or
/// [`ContainerError::TooLarge`].
///
/// **Consistency.** Writes (`insert`, `remove`, `update`, `clear`) take the segment's robust
/// lock and are linearizable. Reads (`get`, `contains_key`, `len`, the snapshots) take no lock:
/// they copy under a sequence lock and see the state some write left, never a write half done
/// or a torn entry; a reader kept out by a stream of writes takes the lock after a few tries.
/// A writer killed at any instruction leaves its operation done or not done; the next one to
/// take the lock repairs the rest (see [`repairs`](Self::repairs)), so no caller ever sees the
/// dead owner.
///
/// ```
/// use mpshm::prelude::*;
/// let name = format!("doc-dict-{}", std::process::id());
/// let scores = mpshm::SharedDict::<u32, f64>::create(&name, 100)?;
/// scores.insert(7, 0.5)?;
/// let other = mpshm::SharedDict::<u32, f64>::open(&name)?; // e.g. in another process
/// other.update(&7, |v| *v.get_or_insert(0.0) += 1.0)?;
/// assert_eq!(scores.get(&7)?, Some(1.5));
/// assert_eq!(scores.remove(&7)?, Some(1.5));
/// assert!(scores.is_empty());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct SharedDict<K, V, C = Plain> {
    store: Store,
    _t: Types<K, V, C>,
}

/// The types a dict holds, without holding any (so the handle is `Send` and `Sync` whatever
/// they are: the segment holds only bytes).
type Types<K, V, C> = PhantomData<fn() -> (K, V, C)>;

/// Where a key is in the index.
#[derive(Clone, Copy)]
enum Slot {
    /// In slot `slot`, as entry `id`.
    Present { slot: usize, id: usize },
    /// Not there; an insert would take `slot`, a tombstone if `tomb`.
    Absent { slot: usize, tomb: bool },
}

/// A fixed, seeded hash of a key's bytes: the same in every process (the seed is the
/// segment's), unlike std's `RandomState`.
#[inline]
fn hash(seed: u64, bytes: &[u8]) -> u64 {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut h = seed ^ (bytes.len() as u64).wrapping_mul(K);
    let mut mix = |word: u64| h = (h ^ word).wrapping_mul(K).rotate_left(31);
    let mut chunks = bytes.chunks_exact(8);
    for chunk in &mut chunks {
        mix(u64::from_le_bytes(chunk.try_into().expect("8 bytes")));
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut last = [0u8; 8];
        last[..rest.len()].copy_from_slice(rest);
        mix(u64::from_le_bytes(last));
    }
    // MurmurHash3's finaliser, so that every input bit reaches the low bits the index uses.
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// The index word of entry `id` for a key of hash `h`.
#[inline]
fn full(h: u64, id: usize) -> u64 {
    (h << 32) | (id as u64 + ID_BASE)
}

/// Looks `key` (of hash `h`) up in index copy `copy`. Bounded by the index size whatever the
/// words say.
fn find(s: &Store, copy: usize, h: u64, key: &[u8]) -> Result<Slot, ContainerError> {
    let index = s.index(copy);
    let mask = index.len() - 1;
    let tag = h & LOW;
    let mut pos = h as usize & mask;
    let mut tomb = None;
    for _ in 0..index.len() {
        let w = index[pos].load(Ordering::Relaxed);
        match w & LOW {
            EMPTY => {
                return Ok(match tomb {
                    Some(slot) => Slot::Absent { slot, tomb: true },
                    None => Slot::Absent {
                        slot: pos,
                        tomb: false,
                    },
                });
            }
            TOMB => {
                tomb.get_or_insert(pos);
            }
            low if w >> 32 == tag => {
                let id = s.entry_id(low - ID_BASE)?;
                let (klen, _) = s.lens(id)?;
                if klen == key.len() && s.bytes_eq(id, 0, key) {
                    return Ok(Slot::Present { slot: pos, id });
                }
            }
            _ => {}
        }
        pos = (pos + 1) & mask;
    }
    match tomb {
        Some(slot) => Ok(Slot::Absent { slot, tomb: true }),
        None => Err(corrupt("the hash index has no free slot")),
    }
}

/// The first empty slot for hash `h` in index copy `copy` (which has no tombstones).
fn first_empty(s: &Store, copy: usize, h: u64) -> Result<usize, ContainerError> {
    let index = s.index(copy);
    let mask = index.len() - 1;
    let mut pos = h as usize & mask;
    for _ in 0..index.len() {
        if index[pos].load(Ordering::Relaxed) & LOW == EMPTY {
            return Ok(pos);
        }
        pos = (pos + 1) & mask;
    }
    Err(corrupt("the hash index has no free slot"))
}

/// Rebuilds the live index into the other copy without tombstones and switches to it; returns
/// the new copy. Inside a write.
fn rehash(w: &Writer<'_>, copy: usize) -> Result<usize, ContainerError> {
    let other = 1 - copy;
    for word in w.index(other) {
        word.store(EMPTY, Ordering::Relaxed);
    }
    for word in w.index(copy) {
        let v = word.load(Ordering::Relaxed);
        if v & LOW >= ID_BASE {
            let slot = first_empty(w, other, v >> 32)?;
            w.index(other)[slot].store(v, Ordering::Relaxed);
        }
    }
    commit(w.state_word(), other as u64);
    w.set_tombs(0);
    Ok(other)
}

/// `Init` is the codec's: the capacity (`usize`, 1 to 2^30) for plain data, whose entries
/// are a key and a value as they are; `(capacity, entry_bytes)` for
/// [`Postcard`](crate::Postcard), whose entries (key and value together, encoded) have room
/// for `entry_bytes` bytes each (at most 2^30). [`Error::InvalidLength`] past those limits;
/// `open` checks the key and value types, `open_or_create` also the sizes
/// ([`Error::LayoutMismatch`]). The options' mode, open timeout and type tag apply.
impl<K, V, C: Codec<K> + Codec<V>> Shm for SharedDict<K, V, C> {
    type Init = <C as Codec<K>>::Init;

    fn spec(init: Option<&Self::Init>, opts: &Options) -> Result<Spec, Error> {
        let ty = super::identity(
            &format!("{}dict", <C as Codec<K>>::PREFIX),
            &[
                codec::identity::<K, C>(&Options::new()),
                codec::identity::<V, C>(&Options::new()),
            ],
            opts,
        );
        store::spec(Shape::Dict, init.map(Self::sizes), <C as Codec<K>>::ID, ty)
    }

    fn wrap(seg: Segment, _: Made, init: Option<&Self::Init>, _: &Options) -> Result<Self, Error> {
        let store = Store::wrap(
            seg,
            Shape::Dict,
            <C as Codec<K>>::ID,
            Self::fixed(),
            init.map(Self::sizes),
        )?;
        Ok(SharedDict {
            store,
            _t: PhantomData,
        })
    }

    fn segment(&self) -> &Segment {
        self.store.segment()
    }
}

impl<K, V, C: Codec<K> + Codec<V>> SharedDict<K, V, C> {
    /// The entry size every key and value pair has, for codecs where it is fixed.
    fn fixed() -> Option<usize> {
        let fixed = <C as Codec<K>>::fixed_len().zip(<C as Codec<V>>::fixed_len());
        fixed.map(|(k, v)| k + v)
    }

    /// `(capacity, entry bytes)` of `init`.
    fn sizes(init: &<C as Codec<K>>::Init) -> (usize, usize) {
        let (capacity, bytes) = <C as Codec<K>>::sizes(init);
        (capacity, Self::fixed().unwrap_or(bytes))
    }

    /// The key's bytes and hash.
    #[inline]
    fn key<'a>(
        &self,
        key: &'a K,
        scratch: &'a mut Vec<u8>,
    ) -> Result<(&'a [u8], u64), ContainerError> {
        let bytes = <C as Codec<K>>::encode(key, usize::MAX, scratch).map_err(Into::into)?;
        Ok((bytes, hash(self.store.seed(), bytes)))
    }

    fn fits(&self, len: usize) -> Result<(), ContainerError> {
        let max = self.store.layout().entry_bytes;
        if len > max {
            return Err(ContainerError::TooLarge { len, max });
        }
        Ok(())
    }

    #[inline]
    fn decode(raw: <C as Codec<V>>::Raw) -> Result<V, ContainerError> {
        <C as Codec<V>>::decode(raw).map_err(Into::into)
    }

    /// Entry `id`'s value, copied out.
    #[inline]
    fn value_raw(s: &Store, id: usize) -> Result<<C as Codec<V>>::Raw, ContainerError> {
        let (klen, vlen) = s.lens(id)?;
        s.read_raw::<C, V>(id, klen, vlen)
    }

    /// Sets `key` (its bytes and hash) to `value`'s bytes, under the lock; hands back the old
    /// value's bytes.
    fn put(
        &self,
        w: &Writer<'_>,
        h: u64,
        key: &[u8],
        value: &[u8],
    ) -> Result<Option<<C as Codec<V>>::Raw>, ContainerError> {
        let lay = *w.layout();
        let copy = w.dict_copy()?;
        match find(w, copy, h, key)? {
            Slot::Present { slot, id } => {
                let old = Self::value_raw(w, id)?;
                // The new value goes into a spare entry, and one store swaps it in.
                let new = w.alloc()?;
                let token = w.begin();
                w.write_entry(new, key, value, w.aux(id).load(Ordering::Relaxed));
                commit(&w.index(copy)[slot], full(h, new));
                w.free(id);
                w.end(token);
                Ok(Some(old))
            }
            Slot::Absent { slot, tomb } => {
                let len = w.dict_len();
                if len >= lay.capacity as u64 {
                    return Err(ContainerError::Full {
                        capacity: lay.capacity,
                    });
                }
                let new = w.alloc()?;
                let stamp = w.next_stamp();
                let token = w.begin();
                w.write_entry(new, key, value, stamp);
                let crowded = len.saturating_add(w.tombs()) >= lay.crowded() as u64;
                let (copy, slot) = if !tomb && crowded {
                    let copy = rehash(w, copy)?;
                    (copy, first_empty(w, copy, h)?)
                } else {
                    (copy, slot)
                };
                commit(&w.index(copy)[slot], full(h, new));
                w.set_dict_len(len + 1);
                if tomb {
                    w.set_tombs(w.tombs().saturating_sub(1));
                }
                w.end(token);
                Ok(None)
            }
        }
    }

    /// Removes the key found in `slot` as entry `id`, under the lock.
    fn take(w: &Writer<'_>, copy: usize, slot: usize, id: usize) {
        let index = w.index(copy);
        let mask = index.len() - 1;
        let token = w.begin();
        if index[(slot + 1) & mask].load(Ordering::Relaxed) & LOW == EMPTY {
            // Nothing probes past an empty slot, so this one can be empty too, and so can the
            // tombstones just before it: each store leaves a valid index.
            commit(&index[slot], EMPTY);
            let mut tombs = w.tombs();
            let mut pos = slot;
            for _ in 1..index.len() {
                pos = pos.wrapping_sub(1) & mask;
                if index[pos].load(Ordering::Relaxed) & LOW != TOMB {
                    break;
                }
                commit(&index[pos], EMPTY);
                tombs = tombs.saturating_sub(1);
            }
            w.set_tombs(tombs);
        } else {
            commit(&index[slot], TOMB);
            w.set_tombs(w.tombs().saturating_add(1));
        }
        w.set_dict_len(w.dict_len().saturating_sub(1));
        w.free(id);
        w.end(token);
    }

    /// Sets `key` to `value` (Python's `d[key] = value`), returning the value it replaces. A
    /// replaced key keeps its place in the insertion order.
    ///
    /// ```
    /// use mpshm::prelude::*;
    /// # let name = format!("doc-dinsert-{}", std::process::id());
    /// let d = mpshm::SharedDict::<u8, u8>::create(&name, 1)?;
    /// assert_eq!(d.insert(1, 10)?, None);
    /// assert_eq!(d.insert(1, 11)?, Some(10));
    /// assert!(matches!(d.insert(2, 20), Err(mpshm::ContainerError::Full { capacity: 1 })));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`ContainerError::Full`] when the key is new and every entry is taken;
    /// [`ContainerError::TooLarge`], [`ContainerError::Encode`] for serde entries that do not
    /// fit or do not serialise; [`ContainerError::Decode`] when the replaced value is not a
    /// valid `V` (the new one is stored); [`ContainerError::Deadlock`] from inside
    /// [`update`](Self::update); [`ContainerError::Corrupt`], [`ContainerError::Os`] for a
    /// damaged segment. The key and value are dropped on error.
    pub fn insert(&self, key: K, value: V) -> Result<Option<V>, ContainerError> {
        let (mut ks, mut vs) = (Vec::new(), Vec::new());
        let (kb, h) = self.key(&key, &mut ks)?;
        let vb = <C as Codec<V>>::encode(&value, usize::MAX, &mut vs).map_err(Into::into)?;
        self.fits(kb.len() + vb.len())?;
        let old = {
            let w = self.store.lock()?;
            self.put(&w, h, kb, vb)?
        };
        old.map(Self::decode).transpose()
    }

    /// The value of `key`, if it is there. Takes no lock (see the consistency model above).
    ///
    /// # Errors
    ///
    /// [`ContainerError::Decode`] when the stored value is not a valid `V`;
    /// [`ContainerError::Encode`] for a serde key that does not serialise; the errors of a
    /// damaged segment.
    #[inline]
    pub fn get(&self, key: &K) -> Result<Option<V>, ContainerError> {
        let mut ks = Vec::new();
        let (kb, h) = self.key(key, &mut ks)?;
        let raw = self
            .store
            .read(POINT_TRIES, |s| match find(s, s.dict_copy()?, h, kb)? {
                Slot::Present { id, .. } => Self::value_raw(s, id).map(Some),
                Slot::Absent { .. } => Ok(None),
            })?;
        raw.map(Self::decode).transpose()
    }

    /// Whether `key` is there (Python's `key in d`). Takes no lock.
    ///
    /// # Errors
    ///
    /// As [`get`](Self::get).
    pub fn contains_key(&self, key: &K) -> Result<bool, ContainerError> {
        let mut ks = Vec::new();
        let (kb, h) = self.key(key, &mut ks)?;
        self.store.read(POINT_TRIES, |s| {
            Ok(matches!(
                find(s, s.dict_copy()?, h, kb)?,
                Slot::Present { .. }
            ))
        })
    }

    /// Removes `key`, returning its value (Python's `d.pop(key, None)`).
    ///
    /// # Errors
    ///
    /// [`ContainerError::Decode`] when the removed value is not a valid `V` (it is removed);
    /// as [`insert`](Self::insert) otherwise.
    pub fn remove(&self, key: &K) -> Result<Option<V>, ContainerError> {
        let mut ks = Vec::new();
        let (kb, h) = self.key(key, &mut ks)?;
        let old = {
            let w = self.store.lock()?;
            let copy = w.dict_copy()?;
            match find(&w, copy, h, kb)? {
                Slot::Absent { .. } => None,
                Slot::Present { slot, id } => {
                    let old = Self::value_raw(&w, id)?;
                    Self::take(&w, copy, slot, id);
                    Some(old)
                }
            }
        };
        old.map(Self::decode).transpose()
    }

    /// Runs `f` on the value of `key` (`None` if absent) under the lock, and stores what it
    /// leaves: a value inserts or replaces, `None` removes. Returns what `f` returns. Other
    /// writers wait meanwhile, so concurrent updates never lose one another:
    ///
    /// ```
    /// use mpshm::prelude::*;
    /// # let name = format!("doc-dupdate-{}", std::process::id());
    /// let counts = mpshm::SharedDict::<u32, u64>::create(&name, 10)?;
    /// for _ in 0..3 {
    ///     counts.update(&7, |n| *n.get_or_insert(0) += 1)?;
    /// }
    /// assert_eq!(counts.get(&7)?, Some(3));
    /// counts.update(&7, |n| *n = None)?; // removes it
    /// assert_eq!(counts.len(), 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// `f` may read this dict (reads take no lock) but not write it: that is
    /// [`ContainerError::Deadlock`]. If `f` panics, nothing is changed.
    ///
    /// # Errors
    ///
    /// [`ContainerError::Decode`] when the stored value is not a valid `V` (`f` is not run);
    /// as [`insert`](Self::insert) for storing the result (`f` has run; its result is lost).
    pub fn update<R>(
        &self,
        key: &K,
        f: impl FnOnce(&mut Option<V>) -> R,
    ) -> Result<R, ContainerError> {
        let mut ks = Vec::new();
        let (kb, h) = self.key(key, &mut ks)?;
        let w = self.store.lock()?;
        let copy = w.dict_copy()?;
        let found = find(&w, copy, h, kb)?;
        let mut value = match found {
            Slot::Present { id, .. } => Some(Self::decode(Self::value_raw(&w, id)?)?),
            Slot::Absent { .. } => None,
        };
        let r = f(&mut value);
        match (found, value) {
            (_, Some(v)) => {
                let mut vs = Vec::new();
                let vb = <C as Codec<V>>::encode(&v, usize::MAX, &mut vs).map_err(Into::into)?;
                self.fits(kb.len() + vb.len())?;
                self.put(&w, h, kb, vb)?;
            }
            (Slot::Present { slot, id }, None) => Self::take(&w, copy, slot, id),
            (Slot::Absent { .. }, None) => {}
        }
        Ok(r)
    }

    /// The number of entries. Takes no lock.
    pub fn len(&self) -> usize {
        let cap = self.store.layout().capacity;
        let len = self
            .store
            .read(POINT_TRIES, |s| Ok(s.dict_len()))
            .unwrap_or_else(|_| self.store.dict_len());
        // Only a damaged segment says more than the capacity.
        len.min(cap as u64) as usize
    }

    /// Whether the dict is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The most entries it holds, fixed at creation.
    pub fn capacity(&self) -> usize {
        self.store.layout().capacity
    }

    /// The bytes each entry has for its key and value (their sizes, for plain data).
    pub fn entry_bytes(&self) -> usize {
        self.store.layout().entry_bytes
    }

    /// Removes every entry, in one step. It also resets a dict whose shared memory was damaged.
    ///
    /// # Errors
    ///
    /// [`ContainerError::Deadlock`] from inside [`update`](Self::update);
    /// [`ContainerError::Os`] when the lock itself is damaged.
    pub fn clear(&self) -> Result<(), ContainerError> {
        let w = self.store.lock_to_reset()?;
        let token = w.begin();
        let other = match w.dict_copy() {
            Ok(copy) => 1 - copy,
            Err(_) => 0,
        };
        for word in w.index(other) {
            word.store(EMPTY, Ordering::Relaxed);
        }
        commit(w.state_word(), other as u64);
        w.reset_pool();
        w.end(token);
        w.mark_consistent();
        Ok(())
    }

    /// A snapshot of every entry as raw bytes with its stamp, consistent (one state some write
    /// left), in insertion order.
    #[allow(
        clippy::type_complexity,
        reason = "a private helper's tuple of the codec's raw types"
    )]
    fn snapshot(
        &self,
    ) -> Result<Vec<(u64, <C as Codec<K>>::Raw, <C as Codec<V>>::Raw)>, ContainerError> {
        let cap = self.store.layout().capacity;
        let mut all = self.store.read(SNAPSHOT_TRIES, |s| {
            let mut out = Vec::with_capacity((s.dict_len() as usize).min(cap));
            for word in s.index(s.dict_copy()?) {
                let w = word.load(Ordering::Relaxed);
                if w & LOW < ID_BASE {
                    continue;
                }
                if out.len() == cap {
                    return Err(corrupt("the index holds more entries than the capacity"));
                }
                let id = s.entry_id((w & LOW) - ID_BASE)?;
                let (klen, vlen) = s.lens(id)?;
                let stamp = s.aux(id).load(Ordering::Relaxed);
                out.push((
                    stamp,
                    s.read_raw::<C, K>(id, 0, klen)?,
                    s.read_raw::<C, V>(id, klen, vlen)?,
                ));
            }
            Ok(out)
        })?;
        all.sort_unstable_by_key(|e| e.0);
        Ok(all)
    }

    /// Every entry, in insertion order, from one consistent snapshot (Python's `d.items()`).
    ///
    /// ```
    /// use mpshm::prelude::*;
    /// # let name = format!("doc-ditems-{}", std::process::id());
    /// let d = mpshm::SharedDict::<u8, u8>::create(&name, 8)?;
    /// d.insert(3, b'c')?;
    /// d.insert(1, b'a')?;
    /// d.insert(3, b'C')?; // keeps its place
    /// assert_eq!(d.items()?, [(3, b'C'), (1, b'a')]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`ContainerError::Decode`] when a stored key or value is not valid; the errors of a
    /// damaged segment.
    pub fn items(&self) -> Result<Vec<(K, V)>, ContainerError> {
        self.snapshot()?
            .into_iter()
            .map(|(_, k, v)| {
                let k = <C as Codec<K>>::decode(k).map_err(Into::into)?;
                Ok((k, Self::decode(v)?))
            })
            .collect()
    }

    /// An iterator over a consistent snapshot of the entries, in insertion order.
    ///
    /// # Errors
    ///
    /// As [`items`](Self::items).
    pub fn iter(&self) -> Result<std::vec::IntoIter<(K, V)>, ContainerError> {
        Ok(self.items()?.into_iter())
    }

    /// The keys of a consistent snapshot, in insertion order.
    ///
    /// # Errors
    ///
    /// As [`items`](Self::items).
    pub fn keys(&self) -> Result<Vec<K>, ContainerError> {
        self.snapshot()?
            .into_iter()
            .map(|(_, k, _)| <C as Codec<K>>::decode(k).map_err(Into::into))
            .collect()
    }

    /// The values of a consistent snapshot, in insertion order.
    ///
    /// # Errors
    ///
    /// As [`items`](Self::items).
    pub fn values(&self) -> Result<Vec<V>, ContainerError> {
        self.snapshot()?
            .into_iter()
            .map(|(_, _, v)| Self::decode(v))
            .collect()
    }

    /// A consistent snapshot as a `HashMap`.
    ///
    /// # Errors
    ///
    /// As [`items`](Self::items).
    pub fn to_map(&self) -> Result<HashMap<K, V>, ContainerError>
    where
        K: Hash + Eq,
    {
        Ok(self.items()?.into_iter().collect())
    }

    /// A consistent snapshot as a `BTreeMap`.
    ///
    /// # Errors
    ///
    /// As [`items`](Self::items).
    pub fn to_btree_map(&self) -> Result<BTreeMap<K, V>, ContainerError>
    where
        K: Ord,
    {
        Ok(self.items()?.into_iter().collect())
    }

    /// How many times a writer that died in the middle of an operation has had its work
    /// repaired by the next one to take the lock (over the dict's lifetime, by every process).
    pub fn repairs(&self) -> u64 {
        self.store.repairs()
    }
}

impl<K, V, C> fmt::Debug for SharedDict<K, V, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedDict")
            .field("name", &self.store.segment().name())
            .field("capacity", &self.store.layout().capacity)
            .field("owner", &self.store.segment().is_owner())
            .finish()
    }
}
