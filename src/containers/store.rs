//! The storage under both containers: a control block, two copies of an index, and a pool of
//! fixed-size entries, in the payload of one locked segment; the writers' lock with its repair
//! after a dead writer, and the lock-free read path.
//!
//! ```text
//! control   8 words: seq, state, len, tombs, free, fresh, stamp, repairs
//! index 0   `slots` words
//! index 1   `slots` words
//! entries   capacity + 1 entries of [meta word | aux word | data_max bytes, rounded up to 8]
//! ```
//!
//! The *committed* state is the `state` word (which index copy is live, and the list's length),
//! the live index copy, and the entries it names. Every operation changes it with one aligned
//! word store ([`commit`]) from one valid state to the next: what is written before that store
//! (a new entry from the pool, the other index copy) is unreachable until it, and what is
//! written after (`len`, `tombs`, the free chain, `fresh`, `stamp`) is *derived*: it follows from
//! the committed state, and [`Writer::rebuild`] recomputes it. A writer killed at any
//! instruction therefore leaves the committed state with its operation done or not; the next
//! holder of the lock is told that the owner died and rebuilds the rest before it goes on.

use std::hash::BuildHasher;
use std::ops::Deref;
use std::sync::atomic::{AtomicU64, Ordering};

use super::seqlock;
use crate::codec::Codec;
use crate::error::{ContainerError, Error, LockError};
use crate::segment::{Identity, Kind, Segment, Spec};
use crate::sync::{Held, RawLock};

/// The sequence word of the read path ([`seqlock`]).
const SEQ: usize = 0;
/// Committed: the live index copy (the dict: the word; the list: its high half) and the list's
/// length (its low half).
const STATE: usize = 1;
/// The dict's live entries (derived).
const LEN: usize = 2;
/// Tombstones in the dict's live index copy (derived).
const TOMBS: usize = 3;
/// The first entry of the free chain plus one; 0 when the chain is empty (derived).
const FREE: usize = 4;
/// Entries from here on have not been handed out since the last clear (derived).
const FRESH: usize = 5;
/// The dict's next insertion stamp (derived).
const STAMP: usize = 6;
/// How many times the work of a writer that died was repaired.
const REPAIRS: usize = 7;
/// Words in the control block.
const CTL_WORDS: usize = 8;

/// Bytes before an entry's data: the meta word (key length, and value length << 32) and the aux
/// word (a live dict entry's insertion stamp; a free entry's successor in the free chain, plus
/// one).
const ENTRY_HEADER: usize = 16;

/// The most entries a container may have.
pub(crate) const MAX_CAPACITY: usize = 1 << 30;
/// The most data bytes an entry may have.
pub(crate) const MAX_ENTRY_BYTES: usize = 1 << 30;

/// How often a read copies before it gives up on the read path and takes the lock: point reads,
/// and whole-container snapshots (whose copies take longer, so more of them would be lost to a
/// busy writer).
pub(crate) const POINT_TRIES: u32 = 64;
pub(crate) const SNAPSHOT_TRIES: u32 = 4;

/// A dict index word's low half: empty, a tombstone, or an entry number plus [`ID_BASE`] (the
/// high half holds the low half of the key's hash).
pub(crate) const EMPTY: u64 = 0;
pub(crate) const TOMB: u64 = 1;
pub(crate) const ID_BASE: u64 = 2;
pub(crate) const LOW: u64 = 0xffff_ffff;

/// Which container a store holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Shape {
    Dict,
    List,
}

/// The sizes a store was created with, and what follows from them.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Layout {
    pub(crate) shape: Shape,
    /// The most live entries.
    pub(crate) capacity: usize,
    /// Data bytes per entry (key and value, or item).
    pub(crate) entry_bytes: usize,
    /// Words per index copy: a power of two with `capacity <= 3/4 slots` for the dict,
    /// `capacity` for the list.
    pub(crate) slots: usize,
    /// Bytes per entry, header included.
    stride: usize,
}

impl Layout {
    /// The layout for these sizes, or `None` past the limits.
    pub(crate) fn new(shape: Shape, capacity: u64, entry_bytes: u64) -> Option<Layout> {
        let capacity = usize::try_from(capacity).ok()?;
        let entry_bytes = usize::try_from(entry_bytes).ok()?;
        if capacity == 0 || capacity > MAX_CAPACITY || entry_bytes > MAX_ENTRY_BYTES {
            return None;
        }
        let slots = match shape {
            Shape::Dict => (capacity * 4).div_ceil(3).next_power_of_two().max(8),
            Shape::List => capacity,
        };
        Some(Layout {
            shape,
            capacity,
            entry_bytes,
            slots,
            stride: ENTRY_HEADER + entry_bytes.next_multiple_of(8),
        })
    }

    /// Entries in the pool: one more than the capacity, so that replacing a value of a full
    /// container has a spare entry to write the new one into.
    pub(crate) fn entries(&self) -> usize {
        self.capacity + 1
    }

    /// The payload's size in words, or `None` if it overflows.
    fn words(&self) -> Option<u64> {
        let index = 2u64.checked_mul(self.slots as u64)?;
        let pool = (self.entries() as u64).checked_mul(self.stride as u64 / 8)?;
        (CTL_WORDS as u64).checked_add(index)?.checked_add(pool)
    }

    /// The dict's live-plus-tombstone count above which an insert into an empty slot first
    /// rebuilds the index (7/8 of the slots): some slots always stay empty, so a probe ends.
    pub(crate) fn crowded(&self) -> usize {
        self.slots / 8 * 7
    }
}

/// The segment of a container of `shape` holding `ty`, whose entries the codec numbered
/// `codec` encodes: created with `(capacity, entry bytes)`, or opened (`None`).
pub(crate) fn spec(
    shape: Shape,
    sizes: Option<(usize, usize)>,
    codec: u64,
    ty: Identity,
) -> Result<Spec, Error> {
    let kind = shape.kind();
    let Some((capacity, entry_bytes)) = sizes else {
        return Ok(Spec::elements(kind, words_of(ty), 0));
    };
    let lay =
        Layout::new(shape, capacity as u64, entry_bytes as u64).ok_or(Error::InvalidLength {
            len: capacity,
            reason: "a container holds 1 to 2^30 entries of at most 2^30 bytes each",
        })?;
    let words = lay.words().and_then(|w| usize::try_from(w).ok());
    let words = words.ok_or(Error::InvalidLength {
        len: capacity,
        reason: "the container would not fit in memory",
    })?;
    let seed = std::collections::hash_map::RandomState::new().hash_one(capacity);
    let mut spec = Spec::elements(kind, words_of(ty), words);
    spec.params = [capacity as u64, entry_bytes as u64, seed, codec];
    Ok(spec)
}

/// `ty`, stored in a payload of words (the containers' elements are 8-byte words; the
/// identity's size and alignment are the words', its layout hash is the types').
fn words_of(ty: Identity) -> Identity {
    Identity {
        size: 8,
        align: 8,
        ..ty
    }
}

fn mismatch(name: &str, expected: String, found: String) -> Error {
    Error::LayoutMismatch {
        name: name.to_owned(),
        expected,
        found,
    }
}

impl Shape {
    fn kind(self) -> Kind {
        match self {
            Shape::Dict => Kind::Dict,
            Shape::List => Kind::List,
        }
    }

    fn noun(self) -> &'static str {
        match self {
            Shape::Dict => "dict",
            Shape::List => "list",
        }
    }
}

/// A container's segment, its validated layout and its hash seed.
pub(crate) struct Store {
    seg: Segment,
    lay: Layout,
    seed: u64,
    base: usize,
}

impl Store {
    /// The store in `seg`, after checking its parameters against its size, its codec against
    /// `codec`, its entries against `fixed` (a codec whose entries have one size) and against
    /// `asked` (`(capacity, entry bytes)` of an `open_or_create` that found it).
    pub(crate) fn wrap(
        seg: Segment,
        shape: Shape,
        codec: u64,
        fixed: Option<usize>,
        asked: Option<(usize, usize)>,
    ) -> Result<Store, Error> {
        // Every field below is read from the header the segment validated, but the header's
        // checks know nothing of containers: check the parameters against the size here.
        let [capacity, entry_bytes, seed, found_codec] = seg.params();
        let name = seg.name();
        let lay = Layout::new(shape, capacity, entry_bytes)
            .filter(|lay| lay.words() == Some(seg.count() as u64))
            .ok_or_else(|| Error::Corrupt {
                name: name.to_owned(),
                reason: format!(
                    "container parameters (capacity {capacity}, {entry_bytes} bytes per entry) do not match its size"
                ),
            })?;
        let codec_name = |id| match id {
            1 => "plain data",
            2 => "serde (postcard)",
            3 => "bytes",
            _ => "an unknown codec",
        };
        let noun = shape.noun();
        if found_codec != codec {
            return Err(mismatch(
                name,
                format!("a {noun} of {}", codec_name(codec)),
                format!("a {noun} of {}", codec_name(found_codec)),
            ));
        }
        if let Some(fixed) = fixed.filter(|&f| f != lay.entry_bytes) {
            return Err(mismatch(
                name,
                format!("a {noun} of {fixed} bytes per entry"),
                format!("a {noun} of {} bytes per entry", lay.entry_bytes),
            ));
        }
        if let Some((want_cap, want_bytes)) = asked {
            if want_cap != lay.capacity {
                return Err(mismatch(
                    name,
                    format!("a {noun} of capacity {want_cap}"),
                    format!("a {noun} of capacity {}", lay.capacity),
                ));
            }
            if want_bytes != lay.entry_bytes {
                return Err(mismatch(
                    name,
                    format!("a {noun} of {want_bytes} bytes per entry"),
                    format!("a {noun} of {} bytes per entry", lay.entry_bytes),
                ));
            }
        }
        let base = seg.payload_offset();
        Ok(Store {
            seg,
            lay,
            seed,
            base,
        })
    }

    pub(crate) fn layout(&self) -> &Layout {
        &self.lay
    }

    pub(crate) fn seed(&self) -> u64 {
        self.seed
    }

    pub(crate) fn segment(&self) -> &Segment {
        &self.seg
    }

    #[inline]
    fn ctl(&self, word: usize) -> &AtomicU64 {
        self.seg.shared(self.base + word * 8)
    }

    #[inline]
    fn seq(&self) -> &AtomicU64 {
        self.ctl(SEQ)
    }

    /// The committed state word.
    #[inline]
    pub(crate) fn state(&self) -> u64 {
        self.ctl(STATE).load(Ordering::Relaxed)
    }

    /// The dict's live entry count.
    #[inline]
    pub(crate) fn dict_len(&self) -> u64 {
        self.ctl(LEN).load(Ordering::Relaxed)
    }

    /// How many repairs after a dead writer this container has had.
    pub(crate) fn repairs(&self) -> u64 {
        self.ctl(REPAIRS).load(Ordering::Relaxed)
    }

    /// Index copy `copy` (0 or 1: callers take it from [`dict_copy`](Self::dict_copy) or
    /// [`list_state`](Self::list_state)).
    #[inline]
    pub(crate) fn index(&self, copy: usize) -> &[AtomicU64] {
        debug_assert!(copy < 2);
        let off = self.base + (CTL_WORDS + (copy & 1) * self.lay.slots) * 8;
        self.seg.shared_slice(off, self.lay.slots)
    }

    /// The dict's live index copy.
    #[inline]
    pub(crate) fn dict_copy(&self) -> Result<usize, ContainerError> {
        match self.state() {
            s @ (0 | 1) => Ok(s as usize),
            _ => Err(corrupt("the state word names no index copy")),
        }
    }

    /// The list's live index copy and length.
    #[inline]
    pub(crate) fn list_state(&self) -> Result<(usize, usize), ContainerError> {
        let s = self.state();
        let (copy, len) = ((s >> 32) as usize, (s & LOW) as usize);
        if copy > 1 || len > self.lay.capacity {
            return Err(corrupt("the state word is out of range"));
        }
        Ok((copy, len))
    }

    /// An entry number read from shared memory, checked.
    #[inline]
    pub(crate) fn entry_id(&self, raw: u64) -> Result<usize, ContainerError> {
        if raw < self.lay.entries() as u64 {
            Ok(raw as usize)
        } else {
            Err(corrupt("an index names an entry past the pool"))
        }
    }

    #[inline]
    fn entry_offset(&self, id: usize) -> usize {
        debug_assert!(id < self.lay.entries());
        self.base + (CTL_WORDS + 2 * self.lay.slots) * 8 + id * self.lay.stride
    }

    /// Entry `id`'s aux word (a valid entry number, from [`entry_id`](Self::entry_id)).
    #[inline]
    pub(crate) fn aux(&self, id: usize) -> &AtomicU64 {
        self.seg.shared(self.entry_offset(id) + 8)
    }

    /// Entry `id`'s key and value lengths, checked against the room it has.
    #[inline]
    pub(crate) fn lens(&self, id: usize) -> Result<(usize, usize), ContainerError> {
        let meta = self
            .seg
            .shared::<AtomicU64>(self.entry_offset(id))
            .load(Ordering::Relaxed);
        let (key, value) = ((meta & LOW) as usize, (meta >> 32) as usize);
        if key + value <= self.lay.entry_bytes {
            Ok((key, value))
        } else {
            Err(corrupt("an entry's lengths exceed its room"))
        }
    }

    /// Whether entry `id`'s data at `at` holds `want` (the range was checked with `lens`).
    #[inline]
    pub(crate) fn bytes_eq(&self, id: usize, at: usize, want: &[u8]) -> bool {
        let mut buf = [0u8; 64];
        let start = self.entry_offset(id) + ENTRY_HEADER + at;
        want.chunks(buf.len()).enumerate().all(|(i, chunk)| {
            let got = &mut buf[..chunk.len()];
            self.seg.copy_out(start + i * 64, got);
            got == chunk
        })
    }

    /// Copies `len` bytes of entry `id`'s data at `at` into room made by the codec `C`; `Decode`
    /// if no `T` has that length. (The range was checked with `lens`.)
    #[inline]
    pub(crate) fn read_raw<C: Codec<T>, T>(
        &self,
        id: usize,
        at: usize,
        len: usize,
    ) -> Result<C::Raw, ContainerError> {
        // A length no `T` has: only damage writes one.
        let mut raw = C::raw(len).ok_or(ContainerError::Decode)?;
        let start = self.entry_offset(id) + ENTRY_HEADER + at;
        self.seg.copy_out(start, C::raw_bytes(&mut raw));
        Ok(raw)
    }

    /// Reads through the lock-free path, at most `tries` copies, then under the lock. `read`
    /// may see a state in the middle of a write: it must check every number it loads and end.
    #[inline]
    pub(crate) fn read<R>(
        &self,
        tries: u32,
        mut read: impl FnMut(&Store) -> Result<R, ContainerError>,
    ) -> Result<R, ContainerError> {
        if let Some(r) = seqlock::read(self.seq(), tries, || read(self)) {
            return r;
        }
        self.read_locked(read)
    }

    #[cold]
    #[inline(never)]
    fn read_locked<R>(
        &self,
        read: impl FnOnce(&Store) -> Result<R, ContainerError>,
    ) -> Result<R, ContainerError> {
        let w = self.lock()?;
        read(&w)
    }

    /// Takes the writers' lock, repairing what a writer that died left (see the module docs).
    ///
    /// # Errors
    ///
    /// `Deadlock` when this thread holds it already, `Os` for a lock that is not one, `Corrupt`
    /// when the committed state is not a valid one (the repair refuses it).
    #[inline]
    pub(crate) fn lock(&self) -> Result<Writer<'_>, ContainerError> {
        let (w, died) = self.acquire()?;
        if died || seqlock::writing(self.seq()) {
            w.repair()?;
        }
        Ok(w)
    }

    /// Takes the lock for an operation that rewrites the whole state (`clear`): no repair first,
    /// so that it also resets a container whose state is damaged.
    pub(crate) fn lock_to_reset(&self) -> Result<Writer<'_>, ContainerError> {
        self.acquire().map(|(w, _)| w)
    }

    fn acquire(&self) -> Result<(Writer<'_>, bool), ContainerError> {
        let (held, died) = match RawLock::of(&self.seg).acquire() {
            Ok(held) => (held, false),
            Err(LockError::OwnerDied(held)) => (held, true),
            Err(LockError::Deadlock) => return Err(ContainerError::Deadlock),
            Err(LockError::Os(e)) => return Err(ContainerError::Os(e)),
            Err(LockError::WouldBlock | LockError::Timeout) => {
                unreachable!("acquire never gives up")
            }
        };
        Ok((Writer { store: self, held }, died))
    }
}

/// Makes `value` the word's committed content. Release: not for another thread (readers
/// validate with the sequence word) but for a crash: no store before this one in program order
/// (the entry it names, the index copy it switches to, an earlier commit) may be moved after
/// it, so a writer killed just after it has made them all.
#[inline]
pub(crate) fn commit(word: &AtomicU64, value: u64) {
    word.store(value, Ordering::Release);
}

pub(crate) fn corrupt(reason: &'static str) -> ContainerError {
    ContainerError::Corrupt { reason }
}

/// The writers' lock, held; derefs to the store.
pub(crate) struct Writer<'a> {
    store: &'a Store,
    held: Held<'a>,
}

impl Deref for Writer<'_> {
    type Target = Store;
    fn deref(&self) -> &Store {
        self.store
    }
}

impl Writer<'_> {
    /// Starts changing what readers see; returns the token for [`end`](Self::end). A writer
    /// that fails in between leaves the sequence odd, and the next one repairs.
    #[inline]
    pub(crate) fn begin(&self) -> u64 {
        seqlock::begin_write(self.seq())
    }

    #[inline]
    pub(crate) fn end(&self, token: u64) {
        seqlock::end_write(self.seq(), token)
    }

    /// The state word, for a commit.
    pub(crate) fn state_word(&self) -> &AtomicU64 {
        self.ctl(STATE)
    }

    pub(crate) fn set_dict_len(&self, len: u64) {
        self.ctl(LEN).store(len, Ordering::Relaxed);
    }

    pub(crate) fn tombs(&self) -> u64 {
        self.ctl(TOMBS).load(Ordering::Relaxed)
    }

    pub(crate) fn set_tombs(&self, tombs: u64) {
        self.ctl(TOMBS).store(tombs, Ordering::Relaxed);
    }

    /// The next insertion stamp, counted up.
    pub(crate) fn next_stamp(&self) -> u64 {
        let s = self.ctl(STAMP).load(Ordering::Relaxed);
        self.ctl(STAMP).store(s.wrapping_add(1), Ordering::Relaxed);
        s
    }

    /// Takes an unreachable entry from the pool.
    ///
    /// # Errors
    ///
    /// `Corrupt` if there is none: callers check the capacity first, and the pool has one more
    /// entry than that.
    pub(crate) fn alloc(&self) -> Result<usize, ContainerError> {
        let head = self.ctl(FREE).load(Ordering::Relaxed);
        if head != 0 {
            let id = self.entry_id(head - 1)?;
            let next = self.aux(id).load(Ordering::Relaxed);
            self.ctl(FREE).store(next, Ordering::Relaxed);
            return Ok(id);
        }
        let fresh = self.ctl(FRESH).load(Ordering::Relaxed);
        if fresh < self.lay.entries() as u64 {
            self.ctl(FRESH).store(fresh + 1, Ordering::Relaxed);
            return Ok(fresh as usize);
        }
        Err(corrupt("no free entry although the container is not full"))
    }

    /// Returns entry `id`, no longer reachable, to the pool.
    pub(crate) fn free(&self, id: usize) {
        let head = self.ctl(FREE).load(Ordering::Relaxed);
        self.aux(id).store(head, Ordering::Relaxed);
        self.ctl(FREE).store(id as u64 + 1, Ordering::Relaxed);
    }

    /// Forgets every entry (after a commit that leaves none reachable).
    pub(crate) fn reset_pool(&self) {
        for word in [FREE, FRESH, LEN, TOMBS, STAMP] {
            self.ctl(word).store(0, Ordering::Relaxed);
        }
    }

    /// Writes entry `id` (unreachable): `key` then `value`, and its aux word.
    pub(crate) fn write_entry(&self, id: usize, key: &[u8], value: &[u8], aux: u64) {
        let off = self.entry_offset(id);
        let meta = key.len() as u64 | (value.len() as u64) << 32;
        self.seg
            .shared::<AtomicU64>(off)
            .store(meta, Ordering::Relaxed);
        self.aux(id).store(aux, Ordering::Relaxed);
        self.seg.copy_in(off + ENTRY_HEADER, key);
        self.seg.copy_in(off + ENTRY_HEADER + key.len(), value);
    }

    /// Declares the container sound after a dead owner's work was repaired.
    pub(crate) fn mark_consistent(&self) {
        self.held.mark_consistent();
    }

    /// Recomputes the derived words from the committed state, as one more write, and counts a
    /// repair. A repair killed in turn is simply done again by the next holder.
    #[cold]
    fn repair(&self) -> Result<(), ContainerError> {
        let token = self.begin();
        // On failure the sequence stays odd: readers come to the lock, and get the error too.
        self.rebuild()?;
        let repairs = self.ctl(REPAIRS).load(Ordering::Relaxed);
        self.ctl(REPAIRS)
            .store(repairs.wrapping_add(1), Ordering::Relaxed);
        self.end(token);
        self.mark_consistent();
        Ok(())
    }

    /// Walks the committed state, checking that every reachable entry is in the pool and
    /// reached once, and rewrites the derived words from it.
    fn rebuild(&self) -> Result<(), ContainerError> {
        let entries = self.lay.entries();
        let mut used = vec![false; entries];
        let mut mark = |raw: u64| -> Result<usize, ContainerError> {
            let id = self.entry_id(raw)?;
            if std::mem::replace(&mut used[id], true) {
                return Err(corrupt("two index words name one entry"));
            }
            Ok(id)
        };
        let (mut live, mut tombs, mut stamp) = (0u64, 0u64, 0u64);
        match self.lay.shape {
            Shape::Dict => {
                let copy = self.dict_copy()?;
                for word in self.index(copy) {
                    let w = word.load(Ordering::Relaxed);
                    match w & LOW {
                        EMPTY => {}
                        TOMB => tombs += 1,
                        low => {
                            let id = mark(low - ID_BASE)?;
                            live += 1;
                            let s = self.aux(id).load(Ordering::Relaxed);
                            stamp = stamp.max(s.saturating_add(1));
                        }
                    }
                }
                if live > self.lay.capacity as u64 {
                    return Err(corrupt("the index holds more entries than the capacity"));
                }
            }
            Shape::List => {
                let (copy, len) = self.list_state()?;
                for word in &self.index(copy)[..len] {
                    mark(word.load(Ordering::Relaxed).wrapping_sub(1))?;
                }
            }
        }
        let fresh = used.iter().rposition(|&u| u).map_or(0, |i| i + 1);
        let mut head = 0u64;
        for id in (0..fresh).rev().filter(|&id| !used[id]) {
            self.aux(id).store(head, Ordering::Relaxed);
            head = id as u64 + 1;
        }
        self.ctl(FREE).store(head, Ordering::Relaxed);
        self.ctl(FRESH).store(fresh as u64, Ordering::Relaxed);
        self.ctl(LEN).store(live, Ordering::Relaxed);
        self.ctl(TOMBS).store(tombs, Ordering::Relaxed);
        self.ctl(STAMP).store(stamp, Ordering::Relaxed);
        Ok(())
    }
}

/// What [`inspect`](crate::inspect) shows of a dict or list, read without changing anything; an
/// error for parameters that do not match the segment's size (checked as `Store::attach`
/// does). The dict's count is derived state: after a writer died, it is what the next writer
/// will rebuild.
pub(crate) fn inspect(seg: &Segment) -> Result<crate::inspect::Found, String> {
    use crate::inspect::{Found, State};
    let shape = if seg.kind() == Kind::Dict {
        Shape::Dict
    } else {
        Shape::List
    };
    let [capacity, entry_bytes, ..] = seg.params();
    let lay = Layout::new(shape, capacity, entry_bytes)
        .filter(|lay| lay.words() == Some(seg.count() as u64))
        .ok_or_else(|| {
            format!(
                "container parameters (capacity {capacity}, {entry_bytes} bytes per entry) do \
                 not match its size"
            )
        })?;
    let word = |w: usize| {
        seg.shared::<AtomicU64>(seg.payload_offset() + w * 8)
            .load(Ordering::Relaxed)
    };
    let len = match shape {
        Shape::Dict => word(LEN),
        Shape::List => word(STATE) & LOW,
    };
    Ok(Found::plain(State::Container {
        len: len.min(lay.capacity as u64) as usize,
        capacity: lay.capacity,
        entry_bytes: lay.entry_bytes,
    }))
}

/// The words of a container's payload and what they hold, for the pinned layout
/// (`src/layout.rs`).
#[cfg(all(test, not(loom)))]
pub(crate) fn shared_layout() -> Vec<String> {
    let sizes = |shape, capacity, bytes| {
        let lay = Layout::new(shape, capacity, bytes).expect("in range");
        format!(
            "{shape:?} {capacity} x {bytes} B: slots {} stride {} words {:?}",
            lay.slots,
            lay.stride,
            lay.words()
        )
    };
    vec![
        format!(
            "control words: seq {SEQ} state {STATE} len {LEN} tombs {TOMBS} free {FREE} \
             fresh {FRESH} stamp {STAMP} repairs {REPAIRS} of {CTL_WORDS}; entry header \
             {ENTRY_HEADER} B; index word EMPTY {EMPTY} TOMB {TOMB} ID_BASE {ID_BASE} low \
             {LOW:#x}; params [capacity, entry bytes, seed, codec]; plain codec {}",
            <crate::Plain as Codec<u64>>::ID
        ),
        format!(
            "layouts: {}; {}",
            sizes(Shape::Dict, 100, 24),
            sizes(Shape::List, 100, 24)
        ),
    ]
}
