//! The storage under both containers: the words of [`words`] (a control block, two copies of
//! an index, and a pool of fixed-size entries, and the algorithm on them) in the payload of one
//! locked segment; the entries' bytes, the writers' lock with its repair after a dead writer,
//! and the lock-free read path.

use std::hash::BuildHasher;
use std::ops::Deref;
use std::sync::atomic::{AtomicU64, Ordering};

use super::seqlock;
use super::words::{
    self, ENTRY_HEADER, FREE, FRESH, LEN, LOW, Layout, REPAIRS, STAMP, STATE, Shape, TOMBS, Words,
    corrupt,
};
use crate::codec::Codec;
use crate::error::{ContainerError, Error, LockError};
use crate::segment::{Identity, Kind, Segment, Spec};
use crate::sync::{Held, RawLock};

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

    pub(crate) fn seed(&self) -> u64 {
        self.seed
    }

    pub(crate) fn segment(&self) -> &Segment {
        &self.seg
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

    /// Entry `id`'s key and value lengths, checked against the room it has.
    #[inline]
    pub(crate) fn lens(&self, id: usize) -> Result<(usize, usize), ContainerError> {
        let meta = self.meta(id).load(Ordering::Relaxed);
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
        let start = self.entry_offset(id) + at;
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
        let start = self.entry_offset(id) + at;
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

impl Words for Store {
    #[inline]
    fn layout(&self) -> &Layout {
        &self.lay
    }

    #[inline]
    fn words(&self) -> &[AtomicU64] {
        // `wrap` checked that the payload holds exactly this many words.
        self.seg.shared_slice(self.base, self.seg.count())
    }
}

impl Store {
    /// The byte offset in the segment of entry `id`'s data.
    #[inline]
    fn entry_offset(&self, id: usize) -> usize {
        self.base + (self.entry_word(id) * 8) + ENTRY_HEADER
    }
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

    /// Takes an unreachable entry from the pool ([`words::alloc`]).
    pub(crate) fn alloc(&self) -> Result<usize, ContainerError> {
        words::alloc(self.store)
    }

    /// Returns entry `id`, no longer reachable, to the pool.
    pub(crate) fn free(&self, id: usize) {
        words::free(self.store, id);
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
        self.meta(id).store(meta, Ordering::Relaxed);
        self.aux(id).store(aux, Ordering::Relaxed);
        self.seg.copy_in(off, key);
        self.seg.copy_in(off + key.len(), value);
    }

    /// Declares the container sound after a dead owner's work was repaired.
    pub(crate) fn mark_consistent(&self) {
        self.held.mark_consistent();
    }

    /// Repairs what a writer that died left ([`words::repair`]) and declares the container
    /// sound again.
    #[cold]
    fn repair(&self) -> Result<(), ContainerError> {
        words::repair(self.store)?;
        self.mark_consistent();
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
    use super::words::{CTL_WORDS, EMPTY, ID_BASE, SEQ, TOMB};
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
