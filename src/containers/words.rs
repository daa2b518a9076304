//! The containers' words and the algorithm on them, over any slice of atomic words: in a
//! segment ([`Store`](super::store::Store)), or on the heap for the loom models
//! (`loom_model.rs`).
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
//! the committed state, and [`rebuild`] recomputes it. A writer killed at any instruction
//! therefore leaves the committed state with its operation done or not; the next holder of the
//! lock is told that the owner died and [`repair`]s the rest before it goes on.

use super::seqlock;
use crate::error::ContainerError;
use crate::sync::atomic::{AtomicU64, Ordering};

/// The sequence word of the read path ([`seqlock`]).
pub(crate) const SEQ: usize = 0;
/// Committed: the live index copy (the dict: the word; the list: its high half) and the list's
/// length (its low half).
pub(crate) const STATE: usize = 1;
/// The dict's live entries (derived).
pub(crate) const LEN: usize = 2;
/// Tombstones in the dict's live index copy (derived).
pub(crate) const TOMBS: usize = 3;
/// The first entry of the free chain plus one; 0 when the chain is empty (derived).
pub(crate) const FREE: usize = 4;
/// Entries from here on have not been handed out since the last clear (derived).
pub(crate) const FRESH: usize = 5;
/// The dict's next insertion stamp (derived).
pub(crate) const STAMP: usize = 6;
/// How many times the work of a writer that died was repaired.
pub(crate) const REPAIRS: usize = 7;
/// Words in the control block.
pub(crate) const CTL_WORDS: usize = 8;

/// Bytes before an entry's data: the meta word (key length, and value length << 32) and the aux
/// word (a live dict entry's insertion stamp; a free entry's successor in the free chain, plus
/// one).
pub(crate) const ENTRY_HEADER: usize = 16;

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
    pub(crate) stride: usize,
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
    pub(crate) fn words(&self) -> Option<u64> {
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

/// The payload of a container as words, and what its layout makes of them. Offsets come from
/// the layout alone; every entry number read from the words is checked before use.
pub(crate) trait Words {
    /// The layout the words were made for.
    fn layout(&self) -> &Layout;

    /// The whole payload, `layout().words()` words.
    fn words(&self) -> &[AtomicU64];

    /// Control word `word` (`SEQ` to `REPAIRS`).
    #[inline]
    fn ctl(&self, word: usize) -> &AtomicU64 {
        &self.words()[word]
    }

    /// The sequence word of the read path ([`seqlock`]).
    #[inline]
    fn seq(&self) -> &AtomicU64 {
        self.ctl(SEQ)
    }

    /// The committed state word.
    #[inline]
    fn state(&self) -> u64 {
        self.ctl(STATE).load(Ordering::Relaxed)
    }

    /// Index copy `copy` (0 or 1: callers take it from [`dict_copy`](Self::dict_copy) or
    /// [`list_state`](Self::list_state)).
    #[inline]
    fn index(&self, copy: usize) -> &[AtomicU64] {
        debug_assert!(copy < 2);
        let slots = self.layout().slots;
        let start = CTL_WORDS + (copy & 1) * slots;
        &self.words()[start..start + slots]
    }

    /// The dict's live index copy.
    #[inline]
    fn dict_copy(&self) -> Result<usize, ContainerError> {
        match self.state() {
            s @ (0 | 1) => Ok(s as usize),
            _ => Err(corrupt("the state word names no index copy")),
        }
    }

    /// The list's live index copy and length.
    #[inline]
    fn list_state(&self) -> Result<(usize, usize), ContainerError> {
        let s = self.state();
        let (copy, len) = ((s >> 32) as usize, (s & LOW) as usize);
        if copy > 1 || len > self.layout().capacity {
            return Err(corrupt("the state word is out of range"));
        }
        Ok((copy, len))
    }

    /// An entry number read from shared memory, checked.
    #[inline]
    fn entry_id(&self, raw: u64) -> Result<usize, ContainerError> {
        if raw < self.layout().entries() as u64 {
            Ok(raw as usize)
        } else {
            Err(corrupt("an index names an entry past the pool"))
        }
    }

    /// The word where entry `id` (a valid entry number) starts: its meta word, then its aux
    /// word, then its data.
    #[inline]
    fn entry_word(&self, id: usize) -> usize {
        let lay = self.layout();
        debug_assert!(id < lay.entries());
        CTL_WORDS + 2 * lay.slots + id * (lay.stride / 8)
    }

    /// Entry `id`'s meta word (key length, and value length << 32).
    #[inline]
    fn meta(&self, id: usize) -> &AtomicU64 {
        &self.words()[self.entry_word(id)]
    }

    /// Entry `id`'s aux word (a valid entry number, from [`entry_id`](Self::entry_id)).
    #[inline]
    fn aux(&self, id: usize) -> &AtomicU64 {
        &self.words()[self.entry_word(id) + 1]
    }
}

/// Takes an unreachable entry from the pool (writers' lock held).
///
/// # Errors
///
/// `Corrupt` if there is none: callers check the capacity first, and the pool has one more
/// entry than that.
pub(crate) fn alloc(w: &impl Words) -> Result<usize, ContainerError> {
    let head = w.ctl(FREE).load(Ordering::Relaxed);
    if head != 0 {
        let id = w.entry_id(head - 1)?;
        let next = w.aux(id).load(Ordering::Relaxed);
        w.ctl(FREE).store(next, Ordering::Relaxed);
        return Ok(id);
    }
    let fresh = w.ctl(FRESH).load(Ordering::Relaxed);
    if fresh < w.layout().entries() as u64 {
        w.ctl(FRESH).store(fresh + 1, Ordering::Relaxed);
        return Ok(fresh as usize);
    }
    Err(corrupt("no free entry although the container is not full"))
}

/// Returns entry `id`, no longer reachable, to the pool (writers' lock held).
pub(crate) fn free(w: &impl Words, id: usize) {
    let head = w.ctl(FREE).load(Ordering::Relaxed);
    w.aux(id).store(head, Ordering::Relaxed);
    w.ctl(FREE).store(id as u64 + 1, Ordering::Relaxed);
}

/// Recomputes the derived words from the committed state, as one more write, and counts a
/// repair (writers' lock held, its last holder dead or its write unended). A repair killed in
/// turn is simply done again by the next holder.
pub(crate) fn repair(w: &impl Words) -> Result<(), ContainerError> {
    let token = seqlock::begin_write(w.seq());
    // On failure the sequence stays odd: readers come to the lock, and get the error too.
    rebuild(w)?;
    let repairs = w.ctl(REPAIRS).load(Ordering::Relaxed);
    w.ctl(REPAIRS)
        .store(repairs.wrapping_add(1), Ordering::Relaxed);
    seqlock::end_write(w.seq(), token);
    Ok(())
}

/// Walks the committed state, checking that every reachable entry is in the pool and reached
/// once, and rewrites the derived words from it.
pub(crate) fn rebuild(w: &impl Words) -> Result<(), ContainerError> {
    let lay = *w.layout();
    let entries = lay.entries();
    let mut used = vec![false; entries];
    let mut mark = |raw: u64| -> Result<usize, ContainerError> {
        let id = w.entry_id(raw)?;
        if std::mem::replace(&mut used[id], true) {
            return Err(corrupt("two index words name one entry"));
        }
        Ok(id)
    };
    let (mut live, mut tombs, mut stamp) = (0u64, 0u64, 0u64);
    match lay.shape {
        Shape::Dict => {
            let copy = w.dict_copy()?;
            for word in w.index(copy) {
                let v = word.load(Ordering::Relaxed);
                match v & LOW {
                    EMPTY => {}
                    TOMB => tombs += 1,
                    low => {
                        let id = mark(low - ID_BASE)?;
                        live += 1;
                        let s = w.aux(id).load(Ordering::Relaxed);
                        stamp = stamp.max(s.saturating_add(1));
                    }
                }
            }
            if live > lay.capacity as u64 {
                return Err(corrupt("the index holds more entries than the capacity"));
            }
        }
        Shape::List => {
            let (copy, len) = w.list_state()?;
            for word in &w.index(copy)[..len] {
                mark(word.load(Ordering::Relaxed).wrapping_sub(1))?;
            }
        }
    }
    let fresh = used.iter().rposition(|&u| u).map_or(0, |i| i + 1);
    let mut head = 0u64;
    for id in (0..fresh).rev().filter(|&id| !used[id]) {
        w.aux(id).store(head, Ordering::Relaxed);
        head = id as u64 + 1;
    }
    w.ctl(FREE).store(head, Ordering::Relaxed);
    w.ctl(FRESH).store(fresh as u64, Ordering::Relaxed);
    w.ctl(LEN).store(live, Ordering::Relaxed);
    w.ctl(TOMBS).store(tombs, Ordering::Relaxed);
    w.ctl(STAMP).store(stamp, Ordering::Relaxed);
    Ok(())
}
