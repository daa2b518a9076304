//! The single-producer, single-consumer ring under each direction of a `Pipe` and under an
//! `SpscQueue`: Lamport's ring with each side caching the other's index, after rtrb.
//!
//! The producer writes a slot's bytes and then publishes it with one Release store of the slot's
//! first word, which holds the message's length and a stamp of its position; the consumer
//! polls that word, so it reads only the lines it needs anyway and never the producer's index.
//! The consumer frees a slot by advancing `head` (Release), which the producer re-reads only
//! when its cached copy says the ring is full. A stream of messages therefore moves the data
//! lines and, once a lap, the `head` line — with no atomic read-modify-write on either side,
//! where the MPMC ring must claim every slot with a CAS. The producer also advances `tail`, for
//! the consumer's slow path only: a slot behind `tail` without its stamp was scribbled on.
//!
//! A side killed mid-operation leaves nothing half-done: an unpublished message is simply not
//! there, and a message whose reader died before advancing `head` is read again by the next
//! reader.
//!
//! The caller guarantees one producer and one consumer at a time (the pipe and `SpscQueue`
//! attach one process per end and serialise each end's threads with `sync::owner`). A blocked
//! side parks on the ring's eventcounts (`wait::EventCount`).

use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use std::sync::atomic::{AtomicU32, AtomicU64};
use std::time::Instant;

/// Words per slot, as the MPMC ring's (whole cache lines, so that the producer filling one slot
/// never shares a line with the consumer reading the one before it). A slot here needs one
/// header word, the stamp; the second is spare.
pub(crate) use super::slot_words;
use super::{BatchWait, Padded, RingError, SEARCH_BUDGET, Side, demote_used};
use crate::segment::Shared;
#[cfg(test)]
use crate::wait::NoPeers;
use crate::wait::{EventCount, Peers, Progress, block};

/// The shared control block: each index on a line of its own, then the state both sides
/// share.
#[repr(C)]
#[derive(Default)]
pub(crate) struct SpscCtl {
    head: Padded<AtomicU64>,
    tail: Padded<AtomicU64>,
    state: Padded<State>,
}

/// The closed flag, the eventcounts the blocked sleep on, and the count of lost messages.
#[repr(C)]
#[derive(Default)]
struct State {
    closed: AtomicU32,
    /// The consumer waiting for a message.
    get: EventCount,
    /// The producer waiting for room.
    put: EventCount,
    _reserved: AtomicU32,
    /// Messages dropped because their slot was scribbled on.
    lost: AtomicU64,
}

// SAFETY: atomics only: every bit pattern is valid and all mutation is atomic.
unsafe impl Shared for SpscCtl {}

/// Bytes of the control block.
pub(crate) const SPSC_CTL_SIZE: usize = std::mem::size_of::<SpscCtl>();

/// What each side remembers of the other's index (process-local).
#[derive(Debug, Default)]
pub(crate) struct Cache {
    other: AtomicU64,
}

/// What a pop makes of a slot at `head` with no stamp: the ring is empty there, or the slot
/// may have been scribbled on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unstamped {
    /// Empty: the fast path, which leaves the producer's `tail` line alone.
    MeansEmpty,
    /// Compared with `tail`: an unstamped slot that `tail` has passed was scribbled on, and is
    /// dropped.
    CheckTail,
}

/// A view of one SPSC ring.
#[derive(Clone, Copy)]
pub(crate) struct Spsc<'a> {
    ctl: &'a SpscCtl,
    words: &'a [AtomicU64],
    cap: u64,
    stride: usize,
    max_len: usize,
}

impl<'a> Spsc<'a> {
    /// A view of `cap` slots of messages up to `max_len` bytes; `words` must hold
    /// `cap * slot_words(max_len)` words.
    #[inline]
    pub(crate) fn new(
        ctl: &'a SpscCtl,
        words: &'a [AtomicU64],
        cap: usize,
        max_len: usize,
    ) -> Spsc<'a> {
        let stride = slot_words(max_len).expect("validated size");
        assert!(cap >= 1 && words.len() == cap * stride && max_len < 1 << 32);
        Spsc {
            ctl,
            words,
            cap: cap as u64,
            stride,
            max_len,
        }
    }

    /// The first word of the slot at `pos` once the message of `len` bytes is published there.
    /// The stamp is the position plus one, so a zeroed slot, and the same slot a lap earlier,
    /// never look published.
    fn stamp(pos: u64, len: usize) -> u64 {
        (pos.wrapping_add(1) << 32) | len as u64
    }

    /// Whether `word`, the first word of the slot at `pos`, says its message is published.
    fn stamped(pos: u64, word: u64) -> bool {
        (word >> 32) == pos.wrapping_add(1) & 0xFFFF_FFFF
    }

    fn slot(&self, pos: u64) -> &'a [AtomicU64] {
        let i = (pos % self.cap) as usize * self.stride;
        &self.words[i..i + self.stride]
    }

    /// Messages pushed and not yet popped: exact when neither side is mid-operation.
    pub(crate) fn len(&self) -> usize {
        let head = self.ctl.head.0.load(Relaxed);
        let tail = self.ctl.tail.0.load(Relaxed);
        tail.wrapping_sub(head).min(self.cap) as usize
    }

    pub(crate) fn is_closed(&self) -> bool {
        // Acquire: pairs with the Release store in `close`.
        self.ctl.state.0.closed.load(Acquire) != 0
    }

    pub(crate) fn close(&self) {
        let m = &self.ctl.state.0;
        // Release: pairs with the Acquire load in `is_closed`.
        m.closed.store(1, Release);
        m.get.wake();
        m.put.wake();
    }

    /// Messages dropped because their slot held a length no producer wrote.
    pub(crate) fn lost(&self) -> u64 {
        self.ctl.state.0.lost.load(Relaxed)
    }

    /// Whether a message was ever pushed (`tail` moved).
    pub(crate) fn pushed_ever(&self) -> bool {
        self.ctl.tail.0.load(Relaxed) != 0
    }

    /// Whether a message was ever popped (`head` moved).
    pub(crate) fn popped_ever(&self) -> bool {
        self.ctl.head.0.load(Relaxed) != 0
    }

    /// The consumer's eventcount: woken by every push (and a close).
    pub(crate) fn get_events(&self) -> &'a EventCount {
        &self.ctl.state.0.get
    }

    /// The producer's eventcount: woken by every pop (and a close).
    pub(crate) fn put_events(&self) -> &'a EventCount {
        &self.ctl.state.0.put
    }

    /// Whether a message is published (or the ring is closed).
    pub(crate) fn readable(&self) -> bool {
        let head = self.ctl.head.0.load(Relaxed);
        // Acquire: pairs with the Release store of `tail` in `try_push` (and `recover_tail`).
        // A slot scribbled on reads as readable too, so that `try_pop` gets to drop it.
        let ahead = || self.ctl.tail.0.load(Acquire).wrapping_sub(head);
        // Acquire: pairs with the Release store of the stamp in `try_push`.
        Self::stamped(head, self.slot(head)[0].load(Acquire))
            || (1..=self.cap).contains(&ahead())
            || self.is_closed()
    }

    fn writable(&self) -> bool {
        // Acquire: pairs with the Release store of `head` in `try_pop`.
        self.ctl
            .tail
            .0
            .load(Relaxed)
            .wrapping_sub(self.ctl.head.0.load(Acquire))
            < self.cap
            || self.is_closed()
    }

    /// Brings `tail` up to date for a producer taking over from one that died between
    /// stamping a slot and advancing `tail`, so that the message it published is not
    /// overwritten. Producer side only.
    pub(crate) fn recover_tail(&self) {
        let mut tail = self.ctl.tail.0.load(Relaxed);
        for _ in 0..self.cap {
            // Acquire: pairs with the Release store of the stamp in `try_push`.
            if !Self::stamped(tail, self.slot(tail)[0].load(Acquire)) {
                break;
            }
            tail = tail.wrapping_add(1);
        }
        // Release: as the store in `try_push`.
        self.ctl.tail.0.store(tail, Release);
    }

    /// Publishes `msg` (at most `max_len` bytes) if there is room. Producer side only.
    #[inline]
    pub(crate) fn try_push(&self, msg: &[u8], cache: &Cache) -> bool {
        self.try_push_parts(msg, &[], cache)
    }

    /// Publishes one message made of `head` and then `body` (at most `max_len` bytes in all),
    /// if there is room. Producer side only.
    pub(crate) fn try_push_parts(&self, head: &[u8], body: &[u8], cache: &Cache) -> bool {
        let len = head.len() + body.len();
        debug_assert!(len <= self.max_len);
        let mut tail = self.ctl.tail.0.load(Relaxed); // only this side writes it
        // Wrapping: indices scribbled on must not panic.
        if tail.wrapping_sub(cache.other.load(Relaxed)) >= self.cap {
            // Acquire: pairs with the Release store of `head` in `try_pop`: the consumer's
            // reads of the slot we are about to reuse are done.
            let head = self.ctl.head.0.load(Acquire);
            cache.other.store(head, Relaxed);
            let used = tail.wrapping_sub(head);
            if used > self.cap {
                // `head` past `tail`, or either scribbled on: no working ring looks like this.
                // Carry on from the consumer's position rather than wait forever for room;
                // what lay between is lost (counted once).
                self.ctl.state.0.lost.fetch_add(1, Relaxed);
                tail = head;
            } else if used == self.cap {
                return false;
            }
        }
        let slot = self.slot(tail);
        let data = &slot[1..];
        assert!(len <= data.len() * 8);
        // SAFETY: the bytes lie inside the slot's data words (asserted), `head` first and `body`
        // right after it. Slot `tail` is ours: the consumer is done with it (the Acquire load of
        // `head` above, or an earlier one), and will not read it before our Release store of its
        // stamp below. The words are atomics (UnsafeCell), so writing through a pointer derived
        // from `&` is allowed.
        unsafe {
            let dst = data.as_ptr().cast::<u8>().cast_mut();
            std::ptr::copy_nonoverlapping(head.as_ptr(), dst, head.len());
            std::ptr::copy_nonoverlapping(body.as_ptr(), dst.add(head.len()), body.len());
        }
        // Release: pairs with the Acquire loads of the stamp in `try_pop`, `peek` and
        // `readable`.
        slot[0].store(Self::stamp(tail, len), Release);
        // Release: pairs with the Acquire loads of `tail` in `try_pop` and `readable`, which
        // look at it only when the slot at `head` shows no stamp.
        self.ctl.tail.0.store(tail.wrapping_add(1), Release);
        demote_used(self.ctl, Side::Put, slot, 1, len);
        let m = &self.ctl.state.0;
        m.get.wake();
        true
    }

    /// Takes the oldest message if one is published, handing `read` its bytes and length.
    /// Consumer side only. With [`Unstamped::CheckTail`], an unstamped slot is compared with
    /// `tail` to find scribbled ones; that reads the line the producer writes on every push, so a consumer
    /// polling an empty ring leaves it out until it is about to sleep. Drops at most
    /// [`SEARCH_BUDGET`] scribbled slots per call, so that a timed caller gets to look at its
    /// deadline (a `tail` scribbled ahead can leave a lap of them).
    pub(crate) fn try_pop<R>(
        &self,
        read: &mut impl FnMut(&[u8]) -> R,
        unstamped: Unstamped,
    ) -> Option<R> {
        let (head, slot, bytes) = self.head_message(unstamped)?;
        let len = bytes.len();
        let r = read(bytes);
        // Release: pairs with the Acquire loads of `head` in `try_push_parts` and `writable`;
        // our read of the slot is done before the producer may write it again.
        self.ctl.head.0.store(head.wrapping_add(1), Release);
        demote_used(self.ctl, Side::Get, slot, 1, len);
        let m = &self.ctl.state.0;
        m.put.wake();
        Some(r)
    }

    /// The message at the head, if one is published, handed to `read` without taking it: the
    /// next `try_pop` gets it. Consumer side only. Slots scribbled on are dropped first, as
    /// `try_pop` with [`Unstamped::CheckTail`] drops them.
    pub(crate) fn peek<R>(&self, read: impl FnOnce(&[u8]) -> R) -> Option<R> {
        self.head_message(Unstamped::CheckTail)
            .map(|(_, _, bytes)| read(bytes))
    }

    /// The position, slot and bytes of the message at the head, if one is published; slots
    /// scribbled on (see `try_pop`) are dropped on the way. Consumer side only: the bytes stay
    /// the message's until this side moves `head` past it.
    fn head_message(&self, unstamped: Unstamped) -> Option<(u64, &'a [AtomicU64], &'a [u8])> {
        let m = &self.ctl.state.0;
        for _ in 0..SEARCH_BUDGET {
            let head = self.ctl.head.0.load(Relaxed); // only this side writes it
            let slot = self.slot(head);
            // Acquire: pairs with the Release store of the stamp in `try_push_parts`.
            let mut word = slot[0].load(Acquire);
            if !Self::stamped(head, word) {
                if unstamped == Unstamped::MeansEmpty {
                    return None;
                }
                // Acquire: pairs with the Release store of `tail` in `try_push_parts`, which
                // follows the stamp's. A `tail` more than a ring ahead was scribbled on; trust
                // the stamps then.
                let ahead = self.ctl.tail.0.load(Acquire).wrapping_sub(head);
                if ahead == 0 || ahead > self.cap {
                    return None;
                }
                // The stamp may have landed since we looked; if it is still missing now that
                // `tail` is past it, the slot was scribbled on. (Acquire: as above.)
                word = slot[0].load(Acquire);
            }
            let len = (word & 0xFFFF_FFFF) as usize;
            if Self::stamped(head, word) && len <= self.max_len {
                let data = &slot[1..];
                // SAFETY: `len` bytes lie inside the data words (`len <= max_len`, which the
                // slot holds). The producer wrote them before its Release store of the stamp,
                // which our Acquire load read; it will not write the slot again before this
                // side's Release store of `head` past it. Reading through `&` of atomics is
                // allowed.
                let bytes = unsafe { std::slice::from_raw_parts(data.as_ptr().cast::<u8>(), len) };
                return Some((head, slot, bytes));
            }
            // No stamp, or a length no producer wrote: the slot was scribbled on. Drop it.
            // (Release: as in `try_pop`.)
            self.ctl.head.0.store(head.wrapping_add(1), Release);
            m.put.wake();
            m.lost.fetch_add(1, Relaxed);
        }
        None
    }

    /// Pushes `msg`, waiting while the ring is full (see `Ring::put`; a full ring is refilled in
    /// batches, see [`BatchWait`]).
    #[cfg(test)]
    pub(crate) fn push(
        &self,
        msg: &[u8],
        cache: &Cache,
        deadline: Option<Instant>,
        spin: u32,
    ) -> Result<(), RingError> {
        self.push_watching(msg, &[], cache, deadline, spin, &NoPeers)
    }

    /// Pushes the message `head` + `body` as [`push`](Self::push) does, giving up with
    /// [`RingError::Disconnected`] when the ring is full and the consumer is `gone`.
    pub(crate) fn push_watching(
        &self,
        head: &[u8],
        body: &[u8],
        cache: &Cache,
        deadline: Option<Instant>,
        spin: u32,
        peers: &impl Peers,
    ) -> Result<(), RingError> {
        let batch = BatchWait::new(&self.ctl.head.0, self.cap);
        let attempt = |spun| {
            if self.is_closed() {
                return Progress::Done(Err(RingError::Closed));
            }
            if batch.keep_waiting(spun) {
                return Progress::Blocked { recheck: None };
            }
            // Before the slot, as in `Ring::put_watching`.
            let gone = spun && peers.gone();
            if self.try_push_parts(head, body, cache) {
                Progress::Done(Ok(()))
            } else if gone {
                Progress::Done(Err(RingError::gone(self.is_closed())))
            } else {
                batch.found_full(spun);
                Progress::Blocked { recheck: None }
            }
        };
        let events = &self.ctl.state.0.put;
        block(events, deadline, spin, attempt, || !self.writable(), peers)
            .unwrap_or(Err(RingError::Timeout))
    }

    /// Pops a message, waiting while the ring is empty (see `Ring::get`).
    #[cfg(test)]
    pub(crate) fn pop<R>(
        &self,
        read: &mut impl FnMut(&[u8]) -> R,
        deadline: Option<Instant>,
        spin: u32,
    ) -> Result<R, RingError> {
        self.pop_watching(read, deadline, spin, &NoPeers)
    }

    /// [`pop`](Self::pop), giving up with [`RingError::Disconnected`] when the ring is empty and the
    /// producer is `gone`.
    pub(crate) fn pop_watching<R>(
        &self,
        read: &mut impl FnMut(&[u8]) -> R,
        deadline: Option<Instant>,
        spin: u32,
        peers: &impl Peers,
    ) -> Result<R, RingError> {
        self.block_reading(deadline, spin, peers, |spun| {
            // `closed` (and `gone`) first, so that closed-and-empty means drained (see
            // `Ring::get`).
            let closed = self.is_closed();
            let gone = spun && peers.gone();
            let unstamped = if spun || closed || gone {
                Unstamped::CheckTail
            } else {
                Unstamped::MeansEmpty
            };
            match self.try_pop(read, unstamped) {
                Some(r) => Progress::Done(Ok(r)),
                None if closed => Progress::Done(Err(RingError::Closed)),
                None if gone => Progress::Done(Err(RingError::gone(self.is_closed()))),
                None => Progress::Blocked { recheck: None },
            }
        })
    }

    /// Waits until a message is published or the ring is closed ([`RingError::Disconnected`] if the
    /// producer is `gone` first), taking nothing. Consumer side only.
    pub(crate) fn wait_readable(
        &self,
        deadline: Option<Instant>,
        spin: u32,
        peers: &impl Peers,
    ) -> Result<(), RingError> {
        self.block_reading(deadline, spin, peers, |spun| {
            let gone = spun && peers.gone();
            if self.readable() {
                Progress::Done(Ok(()))
            } else if gone {
                Progress::Done(Err(RingError::Disconnected))
            } else {
                Progress::Blocked { recheck: None }
            }
        })
    }

    /// The consumer's wait (`wait::block` on its eventcount, while nothing is readable).
    fn block_reading<T>(
        &self,
        deadline: Option<Instant>,
        spin: u32,
        peers: &impl Peers,
        attempt: impl FnMut(bool) -> Progress<Result<T, RingError>>,
    ) -> Result<T, RingError> {
        let events = &self.ctl.state.0.get;
        block(events, deadline, spin, attempt, || !self.readable(), peers)
            .unwrap_or(Err(RingError::Timeout))
    }
}

/// The shared structures of this module, for the pinned layout (`src/layout.rs`).
#[cfg(test)]
pub(crate) fn shared_layout() -> Vec<String> {
    vec![
        crate::layout::pin!(SpscCtl { head, tail, state }),
        crate::layout::pin!(State {
            closed,
            get,
            put,
            _reserved,
            lost
        }),
        format!("slot word 0 = stamp(pos 5, len 9) {:#x}", Spsc::stamp(5, 9)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn heap(cap: usize, max_len: usize) -> (Box<SpscCtl>, Vec<AtomicU64>) {
        let n = cap * slot_words(max_len).expect("size");
        (Box::default(), (0..n).map(|_| AtomicU64::new(0)).collect())
    }

    #[test]
    fn fifo_full_empty_and_close() {
        let (ctl, words) = heap(3, 20);
        let q = Spsc::new(&ctl, &words, 3, 20);
        let pc = Cache::default();
        let mut read = |b: &[u8]| b.to_vec();
        for round in 0..10u8 {
            for i in 0..3u8 {
                assert!(q.try_push(&vec![round ^ i; usize::from(i) * 9], &pc));
            }
            assert!(!q.try_push(b"x", &pc));
            for i in 0..3u8 {
                assert_eq!(
                    q.try_pop(&mut read, Unstamped::CheckTail),
                    Some(vec![round ^ i; usize::from(i) * 9])
                );
            }
            assert_eq!(q.try_pop(&mut read, Unstamped::CheckTail), None);
        }
        q.try_push(b"last", &pc);
        q.close();
        assert_eq!(q.push(b"no", &pc, None, 0), Err(RingError::Closed));
        assert_eq!(q.pop(&mut read, None, 0), Ok(b"last".to_vec()));
        assert_eq!(q.pop(&mut read, None, 0), Err(RingError::Closed));
    }

    #[test]
    fn peek_looks_without_taking_and_parts_make_one_message() {
        let (ctl, words) = heap(2, 16);
        let q = Spsc::new(&ctl, &words, 2, 16);
        let pc = Cache::default();
        let mut read = |b: &[u8]| b.to_vec();
        assert_eq!(q.peek(|b| b.to_vec()), None);
        assert!(q.try_push_parts(b"head", b"body", &pc));
        assert_eq!(q.peek(|b| b.to_vec()), Some(b"headbody".to_vec()));
        assert_eq!(q.peek(|b| b.len()), Some(8), "a peek takes nothing");
        assert_eq!(
            q.try_pop(&mut read, Unstamped::MeansEmpty),
            Some(b"headbody".to_vec())
        );
        assert_eq!(q.peek(|b| b.len()), None);
        // A slot scribbled on is dropped by a peek, as by a checked pop.
        assert!(q.try_push(b"one", &pc) && q.try_push(b"two", &pc));
        words[slot_words(16).expect("size")].store(0xdead_beef, Relaxed);
        assert_eq!(q.peek(|b| b.to_vec()), Some(b"two".to_vec()));
        assert_eq!(q.lost(), 1);
        assert_eq!(
            q.try_pop(&mut read, Unstamped::CheckTail),
            Some(b"two".to_vec())
        );
    }

    #[test]
    fn two_threads_stream_in_order() {
        let (ctl, words) = heap(4, 8);
        let q = Spsc::new(&ctl, &words, 4, 8);
        let n: u64 = if cfg!(miri) { 200 } else { 50_000 };
        std::thread::scope(|s| {
            s.spawn(|| {
                let c = Cache::default();
                for i in 0..n {
                    q.push(&i.to_ne_bytes(), &c, None, 100).expect("push");
                }
                q.close();
            });
            let mut next = 0;
            let mut read = |b: &[u8]| u64::from_ne_bytes(b.try_into().expect("8 bytes"));
            while let Ok(v) = q.pop(&mut read, None, 100) {
                assert_eq!(v, next);
                next += 1;
            }
            assert_eq!(next, n);
        });
    }

    #[test]
    fn scribbled_stamps_are_dropped_not_waited_for() {
        let (ctl, words) = heap(4, 16);
        let q = Spsc::new(&ctl, &words, 4, 16);
        let pc = Cache::default();
        let mut read = |b: &[u8]| b.to_vec();
        // An unstamped slot at `head` with nothing pushed is just empty, checked or not.
        words[0].store(0xdead_beef, Relaxed);
        assert_eq!(q.try_pop(&mut read, Unstamped::CheckTail), None);
        assert!(!q.readable());
        words[0].store(0, Relaxed);
        // Two messages; the first one's stamp is scribbled on.
        assert!(q.try_push(b"one", &pc) && q.try_push(b"two", &pc));
        words[0].store(0xdead_beef, Relaxed);
        // The unchecked fast path sees no message; the checked one drops the slot, counts
        // it, and delivers the next.
        assert_eq!(q.try_pop(&mut read, Unstamped::MeansEmpty), None);
        assert!(
            q.readable(),
            "a scribbled slot behind tail must wake the reader"
        );
        assert_eq!(
            q.try_pop(&mut read, Unstamped::CheckTail),
            Some(b"two".to_vec())
        );
        assert_eq!(q.lost(), 1);
        // A stamped length longer than a slot is dropped too.
        assert!(q.try_push(b"three", &pc));
        let slot = 2 * slot_words(16).expect("size");
        let stamp = words[slot].load(Relaxed);
        words[slot].store(stamp | 0xffff, Relaxed);
        assert_eq!(q.try_pop(&mut read, Unstamped::CheckTail), None);
        assert_eq!(q.lost(), 2);
        // The ring goes on.
        assert!(q.try_push(b"four", &pc));
        assert_eq!(q.pop(&mut read, None, 0), Ok(b"four".to_vec()));
        // A `head` scribbled past `tail` does not wedge the producer: it carries on from there.
        ctl.head.0.store(ctl.tail.0.load(Relaxed) + 2, Relaxed);
        let fresh = Cache::default();
        assert!(q.try_push(b"five", &fresh));
        assert_eq!(q.lost(), 3);
        assert_eq!(q.pop(&mut read, None, 0), Ok(b"five".to_vec()));
    }

    /// A `tail` scribbled a lap ahead over unstamped slots: each `try_pop` drops at most
    /// `SEARCH_BUDGET` of them, so that a timed caller gets to its deadline, and the ring goes
    /// on.
    #[cfg_attr(miri, ignore = "thousands of slots; too slow under Miri")]
    #[test]
    fn a_tail_scribbled_ahead_is_dropped_in_budgets() {
        let big = SEARCH_BUDGET as usize * 3;
        let (ctl, words) = heap(big, 8);
        let b = Spsc::new(&ctl, &words, big, 8);
        ctl.tail.0.store(big as u64, Relaxed);
        let mut read = |b: &[u8]| b.to_vec();
        for round in 1..=3 {
            assert_eq!(b.try_pop(&mut read, Unstamped::CheckTail), None);
            assert_eq!(b.lost(), round * u64::from(SEARCH_BUDGET));
        }
        assert!(b.try_push(b"six", &Cache::default()));
        assert_eq!(b.pop(&mut read, None, 0), Ok(b"six".to_vec()));
    }
}
