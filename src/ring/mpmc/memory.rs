//! What a handle remembers between its operations on a ring, in its own process: a consumer's
//! wait for a batch once it catches up with a streaming producer ([`CatchUp`]), and a
//! producer's look at the next slot before it needs it ([`PutAhead`]). See DESIGN.md, "The MPMC
//! stream".

use std::time::{Duration, Instant};

use super::Ring;
#[cfg(not(loom))]
use super::diff;
#[cfg(not(loom))]
use crate::sync::atomic::Ordering::Relaxed;

/// How far past the head a consumer that caught up with a streaming producer lets the producer
/// get before it looks at the head again (see [`CatchUp`]).
const CATCH_UP_BATCH: u64 = 16;

/// The longest such a wait lasts, so that the last messages of a burst are not held up for
/// longer than a round trip or two.
const CATCH_UP_WAIT: Duration = Duration::from_micros(2);

/// What a handle remembers between its operations on a ring, in its own process: hints that
/// spare the next operation a look at a line the other side is writing. Nothing in the ring
/// depends on them for being correct (see [`CatchUp`] and [`PutAhead`]).
#[derive(Debug, Default)]
pub(crate) struct Memory {
    pub(super) catch_up: CatchUp,
    pub(super) ahead: PutAhead,
}

/// A consumer's memory: how many of its last gets in a row took a message at their first look,
/// that is, whether it is taking a backlog off a producer that is streaming.
///
/// Such a consumer that then finds the ring empty has caught up with the producer, and the slot
/// at the head is the one the producer is filling. Looking at it again and again (as a consumer
/// waiting for a single message must) pulls its cache line away from the producer between its
/// stores into it, and every message then costs the producer a cache-line transfer or two
/// before its stores can leave it. So that consumer first waits for the producer to get a batch
/// ahead (`Ring::wait_for_batch`), and then takes the batch from lines the producer is done
/// with, as the textbook ring's consumer does when it caches the producer's index. A consumer
/// that waits for single messages (a round trip) finds its message at the first look at most
/// now and then (when it was held up between its put and its get), never twice in a row, and
/// never waits for a batch.
#[derive(Debug, Default)]
pub(super) struct CatchUp(std::sync::atomic::AtomicU32);

/// Gets in a row that took a message at their first look, from which a consumer counts as
/// taking a backlog.
const BACKLOG: u32 = 2;

impl CatchUp {
    /// Records that this get took a message at its first look.
    #[inline]
    pub(super) fn took_at_once(&self) {
        use std::sync::atomic::Ordering::Relaxed;
        // Relaxed, here and below: a hint about this handle's own last gets. Loads and stores
        // rather than read-modify-writes, whose `lock` would wait for every store before it to
        // leave the processor; a race between two threads sharing the handle only loses a count.
        let n = self.0.load(Relaxed);
        if n < BACKLOG {
            self.0.store(n + 1, Relaxed);
        }
    }

    /// Records that this get found the ring empty at its first look; whether the gets before
    /// it were taking a backlog.
    #[inline]
    pub(super) fn found_empty(&self) -> bool {
        use std::sync::atomic::Ordering::Relaxed;
        let n = self.0.load(Relaxed);
        if n != 0 {
            self.0.store(0, Relaxed);
        }
        n >= BACKLOG
    }
}

/// A producer's memory: the next position, plus one, whose slot a put of this handle found free
/// while it held the producers' role (0 for none), and the length word it found there.
///
/// A put that holds its role looks at the next slot before it copies its own message, so that
/// the next put need not: that look, on the next put's way in, was where every put waited (its
/// stores then wait behind it, and the caller's next message behind them); here it waits beside
/// the copy, which waits for the caller's stores of the message anyway. A slot found free for a
/// lap stays
/// free until a producer claims or fills it for that lap, and no other producer can while this
/// thread holds the role; if it lost the role in between, it has put at least once without it
/// (a role is granted only after puts), so the tail has passed the remembered position and the
/// memory is not used (see `put_in`).
#[derive(Debug, Default)]
pub(super) struct PutAhead {
    pos: std::sync::atomic::AtomicU64,
    len: std::sync::atomic::AtomicU64,
}

impl PutAhead {
    /// The length word of slot `pos`, if a put found that slot free (see above).
    #[inline]
    pub(super) fn free(&self, pos: u64) -> Option<u64> {
        use std::sync::atomic::Ordering::Relaxed;
        // Relaxed, here and in `remember`: written and read by the role's holder only; a thread
        // that takes the role over from another of this handle's threads does so through the
        // role's `bias` word (Acquire after the other thread's Release), which orders these.
        let remembered = self.pos.load(Relaxed);
        // Not 0, which names no position (and which a tail at the end of the number range,
        // scribbled there, would otherwise match).
        (remembered != 0 && remembered == pos.wrapping_add(1)).then(|| self.len.load(Relaxed))
    }

    /// Remembers that slot `pos` is free and holds the length word `len`, or forgets (`None`).
    #[inline]
    pub(super) fn remember(&self, free: Option<(u64, u64)>) {
        use std::sync::atomic::Ordering::Relaxed;
        match free {
            Some((pos, len)) => {
                self.len.store(len, Relaxed);
                self.pos.store(pos.wrapping_add(1), Relaxed);
            }
            None => self.pos.store(0, Relaxed),
        }
    }
}

impl Ring<'_> {
    /// The wait of a consumer that caught up with a streaming producer (see [`CatchUp`]): until
    /// the slot [`CATCH_UP_BATCH`] positions past the head has been reached by the producers
    /// (the slots before it are then published, or about to be), [`CATCH_UP_WAIT`] has passed,
    /// or `deadline` has. It reads no line a producer is writing but that one slot's, once.
    #[cfg(not(loom))]
    #[inline(never)]
    pub(super) fn wait_for_batch(&self, deadline: Option<Instant>) {
        let batch = CATCH_UP_BATCH.min(self.cap / 2);
        if batch == 0 {
            return;
        }
        let until = Instant::now() + CATCH_UP_WAIT;
        let until = deadline.map_or(until, |d| d.min(until));
        // Relaxed, both: they only say how long to wait; the get's own look at the head slot
        // (Acquire) decides what is published.
        let at = self.ctl.head.0.pos.load(Relaxed).wrapping_add(batch);
        let word = &self.slot(at)[0];
        loop {
            for _ in 0..8 {
                std::hint::spin_loop();
            }
            if diff(word.load(Relaxed), at) >= 0 || Instant::now() >= until {
                return;
            }
        }
    }

    /// Under loom the wait is left out: it changes nothing in the ring, and a spin the model
    /// cannot see only adds steps to explore.
    #[cfg(loom)]
    pub(super) fn wait_for_batch(&self, _deadline: Option<Instant>) {}
}
