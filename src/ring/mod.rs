//! The ring algorithms under the queues and pipes, and nothing else: how a message gets into a
//! slot and out again, across processes that may die at any instruction.
//!
//! - [`mpmc`]: the bounded many-producer, many-consumer ring under `Queue` (Vyukov's, with the
//!   claim moved into the slot so that a dead claimer can be found and its slot reclaimed), and
//!   its joinable accounting.
//! - [`bias`]: one role of that ring (its producers, or its consumers) handed to a single thread
//!   while that thread is the only one using it, so that it runs no atomic read-modify-write.
//! - [`spsc`]: the single-producer, single-consumer ring under each direction of a `Pipe` and
//!   under `SpscQueue` (Lamport's, each side caching the other's index, after rtrb).
//! - `loom_model`: the MPMC ring under loom, on heap memory.
//!
//! Both rings work on a control block and a slice of `AtomicU64` slot words, wherever they live,
//! so they run the same on heap memory under Miri, loom and proptest as on a mapped segment.
//! How a blocked side sleeps and is woken (the eventcount, the spin budget, the fences) is
//! `crate::wait`'s; what a ring adds to it is [`BatchWait`]. Both rings hand a short message's
//! slot lines to the other side once done with them ([`demote_used`]).

pub(crate) mod bias;
#[cfg(all(test, loom))]
mod loom_model;
pub(crate) mod mpmc;
#[cfg(not(loom))]
pub(crate) mod spsc;

use std::cell::Cell;

use crate::sync::atomic::AtomicU64;
use crate::sync::atomic::Ordering::Relaxed;

/// One cache-line pair (128 bytes: x86_64 prefetches lines in pairs).
#[repr(C, align(128))]
#[derive(Default)]
pub(crate) struct Padded<T>(pub T);

/// Words per slot for messages of up to `max_len` bytes: two header words and the data, rounded
/// up to whole cache lines so that neighbouring slots do not share one (the SPSC ring uses one
/// header word; its second is spare).
#[inline]
pub(crate) fn slot_words(max_len: usize) -> Option<usize> {
    let words = max_len.checked_add(7)? / 8 + 2;
    Some(words.checked_add(7)? / 8 * 8)
}

/// The most cache lines a slot's message (with its header words) may span for the ring to
/// demote them once it is done with them ([`demote_used`]): a 64-byte message does. Longer
/// messages stream faster without: the processor's prefetchers fetch their lines ahead of the
/// copy, and demoted lines would then come one at a time from the farther cache (DESIGN.md,
/// "Handing a slot's lines over").
const DEMOTE_MAX_LINES: usize = 2;

/// Which side of a ring a call works on, for [`demote_used`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    Put = 0,
    Get = 1,
}

#[cfg(not(any(loom, miri)))]
std::thread_local! {
    /// The ring (its control block's address) of this thread's last put, and of its last get.
    static LAST_RING: [Cell<usize>; 2] = const { [Cell::new(0), Cell::new(0)] };
}

/// Demotes the lines of `slot` that `header` words and a message of `len` bytes after them
/// take (see `sys::demote_line`), if they are at most [`DEMOTE_MAX_LINES`]: called by a producer
/// after it published the slot and by a consumer after it freed it, on the ring whose control
/// block is `ctl`, since the other side is the next to touch those lines. Unless this thread's
/// last call of the other side was on the same ring: a thread that puts and gets on one ring
/// (in turn, or a batch of each) is that other side itself, and would only fetch the lines
/// back from the farther cache.
#[inline(always)]
pub(crate) fn demote_used<C>(ctl: &C, side: Side, slot: &[AtomicU64], header: usize, len: usize) {
    #[cfg(not(any(loom, miri)))]
    {
        let ring = std::ptr::from_ref(ctl) as usize;
        let other_here = LAST_RING.with(|last| {
            last[side as usize].set(ring);
            last[1 - side as usize].get() == ring
        });
        let lines = (header + len.div_ceil(8)).div_ceil(8);
        if lines <= DEMOTE_MAX_LINES && !other_here {
            for word in slot.iter().step_by(8).take(lines) {
                crate::sys::demote_line(std::ptr::from_ref(word).cast());
            }
        }
    }
    #[cfg(any(loom, miri))]
    let _ = (ctl, side, slot, header, len);
}

/// Slots a put or a get looks at before it checks its deadline. A healthy ring needs one or a
/// few (a stale index, a lost race); an index that another process scribbled far behind needs
/// one per position it is behind, up to a lap (beyond that, the MPMC ring jumps), so a large
/// ring could otherwise keep a timed call past its deadline.
pub(crate) const SEARCH_BUDGET: u32 = 1024;

/// Why a blocking operation on a ring gave up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RingError {
    /// The deadline passed.
    Timeout,
    /// The ring is closed (and, for a get, drained).
    Closed,
    /// The other side is gone (see `wait::Peers::gone`) and there is nothing to do.
    Disconnected,
}

/// Why a non-blocking operation on a ring did not happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TryRingError {
    /// The ring is full (a put) or empty (a get), or another thread of the role is inside an
    /// operation that a non-blocking one must not wait for.
    WouldBlock,
    /// The ring is closed (and, for a get, drained).
    Closed,
    /// The other side is gone and there is nothing to do.
    Disconnected,
}

impl RingError {
    /// What a blocked call that found the other side gone (and nothing to do) answers:
    /// [`Closed`](RingError::Closed) if `closed_now`, a read of the closed flag made *after*
    /// `Peers::gone` said yes, else [`Disconnected`](RingError::Disconnected). The call read
    /// `closed` before `gone` too (so that closed-and-empty means drained), but a peer may close
    /// the ring and then go between those two reads: its close happened before its going, which
    /// `gone` saw (Acquire on the attachment word, pairing with the Release of the detach), so
    /// this second read sees the close, and the caller learns the cause the peer gave rather
    /// than only its absence.
    #[cold]
    pub(crate) fn gone(closed_now: bool) -> RingError {
        if closed_now {
            RingError::Closed
        } else {
            RingError::Disconnected
        }
    }
}

impl From<crate::wait::TimedOut> for RingError {
    fn from(_: crate::wait::TimedOut) -> RingError {
        RingError::Timeout
    }
}

/// A blocked put's wait, while it spins, for the consumers to take half of a full ring rather
/// than one message, as long as they keep taking. A producer that writes each slot the moment
/// it is freed works right behind the consumer and reads the head on every put, taking away the
/// lines the consumer writes next; waiting for a batch leaves the consumer alone while it takes
/// it. A consumer that stops taking ends the wait at the next look, and so does the end of the
/// spinning: a put that sleeps is woken for the first free slot.
pub(crate) struct BatchWait<'a> {
    head: &'a AtomicU64,
    batch: u64,
    /// Once the ring was found full: the head to wait for, and the head seen last.
    wait: Cell<Option<(u64, u64)>>,
}

impl<'a> BatchWait<'a> {
    /// For a ring of `cap` slots whose consumers move `head`.
    #[inline]
    pub(crate) fn new(head: &'a AtomicU64, cap: u64) -> BatchWait<'a> {
        BatchWait {
            head,
            batch: (cap / 2).max(1),
            wait: Cell::new(None),
        }
    }

    /// The put found the ring full: while it spins, it waits for a batch.
    #[inline]
    pub(crate) fn found_full(&self, spun: bool) {
        if !spun {
            // Relaxed: it only says when to look at the slot again; the put's own check of the
            // slot (with Acquire) decides whether it is free.
            let now = self.head.load(Relaxed);
            self.wait.set(Some((now.saturating_add(self.batch), now)));
        }
    }

    /// Whether the put is to keep waiting rather than look at the slot: it spins, the batch is
    /// not yet taken, and the head has moved since the last look.
    #[inline]
    pub(crate) fn keep_waiting(&self, spun: bool) -> bool {
        let Some((until, last)) = self.wait.take() else {
            return false;
        };
        // Relaxed: as in `found_full`.
        let now = self.head.load(Relaxed);
        let wait = !spun && now < until && now != last;
        if wait {
            self.wait.set(Some((until, now)));
        }
        wait
    }
}
