//! The bounded MPMC ring under `Queue`: Vyukov's per-slot sequence numbers, with the claim
//! moved into the slot so that a dead peer can be detected and its slot reclaimed.
//!
//! In Vyukov's design a producer claims position `pos` by a CAS on `tail`, then publishes by
//! storing `pos + 1` into the slot's sequence word. A producer killed between those two steps
//! leaves a slot that no one can ever tell apart from "still being written". Here every slot has
//! one 64-bit state word, `[pos mod 2^40 | state (2 bits) | pid (22 bits)]`, and both sides
//! *claim the slot itself* with a CAS that writes their pid: `FREE(pos) → WRITING(pos, pid) →
//! FULL(pos) → READING(pos, pid) → FREE(pos + cap)`. The `head`/`tail` indices are advanced
//! after the claim, by the claimer or by anyone who finds the slot already claimed (the helping
//! of Michael and Scott's queue), so a claimer that dies never blocks the index. A waiter stuck
//! behind a `WRITING` or `READING` slot looks up the pid it names; if that process is dead, it
//! frees the slot and counts one lost message ([`Ring::reclaim_dead_slot`]). The ring does this
//! itself, in its blocking and non-blocking calls alike: its callers never see a claimed slot.
//!
//! Guarantee: every message is delivered at most once, and each producer's messages come out in
//! the order it put them. A message whose producer died between claiming its slot and
//! publishing it, or whose consumer died while copying it out, is lost and counted in
//! [`Ring::lost`]. (A producer that holds its role alone claims nothing before it publishes: if
//! it dies in the middle, that put never happened, and nothing is counted.)
//!
//! Each role (the producers, the consumers) is handed to a single thread while that thread is
//! the only one using it, and that thread then works with plain stores only (a producer claims
//! nothing, a consumer writes nothing into the slot): a stream from one producer to one
//! consumer runs no `lock`-prefixed instruction at all. Another thread takes the role back with
//! a `membarrier`. See `ring/bias.rs`.
//!
//! A blocked side parks on the ring's eventcounts (`wait::EventCount`), one per direction of
//! waiting (for a message, for room, for a `join`). The one unsafe operation is the message
//! copy into and out of a claimed slot.
//!
//! The atomics come from `crate::sync::atomic`, which hands out loom's under `--cfg loom`; the
//! models in `ring/loom_model.rs` check the algorithm there
//! (`RUSTFLAGS="--cfg loom" cargo test --release --lib ring::loom`), and `ring/mpmc/tests.rs`
//! runs it under Miri and proptest. Under loom and Miri the OS is out of the picture: the futex
//! is a model (`wait::futex`), and `claimer_alive` decides liveness without asking the kernel.

use std::time::{Duration, Instant};

use super::bias::{RoleBias, Seat};
use super::{Padded, RingError, SEARCH_BUDGET, Side, TryRingError, demote_used, slot_words};
use crate::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed, Release};
use crate::sync::atomic::{AtomicU32, AtomicU64};
#[cfg(test)]
use crate::wait::NoPeers;
use crate::wait::{Deadline, EventCount, Peers, Progress, block};

mod join;
mod memory;

use memory::CatchUp;
pub(crate) use memory::Memory;

/// The ring's shared control block: indices on lines of their own, the state both roles share,
/// and each role's bias (see `ring/bias.rs`).
#[repr(C)]
#[derive(Default)]
pub(crate) struct RingCtl {
    head: Padded<Index>,
    tail: Padded<Index>,
    state: Padded<State>,
    producers: RoleBias,
    consumers: RoleBias,
}

/// A role's index, and whose operation moved it last (for `bias`).
#[repr(C)]
#[derive(Default)]
struct Index {
    pos: AtomicU64,
    last: AtomicU32,
}

/// What both roles read and write besides the indices: the closed flag, the eventcounts the
/// blocked sleep on, and the counters.
#[repr(C)]
#[derive(Default)]
struct State {
    closed: AtomicU32,
    /// Consumers waiting for a message.
    get: EventCount,
    /// Producers waiting for room.
    put: EventCount,
    /// `join` waiting for every message to be done.
    join: EventCount,
    /// Set by a process that cannot run `membarrier`: no role is handed to one thread.
    no_bias: AtomicU32,
    /// Messages lost to claimers that died, or to slots scribbled on.
    lost: AtomicU64,
    /// Messages taken, for `join` (joinable rings only).
    delivered: AtomicU64,
    /// Messages marked done (`task_done`).
    done: AtomicU64,
}

// SAFETY: `RingCtl` is atomics only: every bit pattern is valid and all mutation is atomic.
// (Not under loom, whose atomics are handles into the model rather than words in memory.)
#[cfg(not(loom))]
unsafe impl crate::segment::Shared for RingCtl {}

/// Bytes of the control block.
pub(crate) const CTL_SIZE: usize = std::mem::size_of::<RingCtl>();

const PID_BITS: u32 = 22;
const PID_MASK: u64 = (1 << PID_BITS) - 1;
const STATE_SHIFT: u32 = PID_BITS;
const POS_SHIFT: u32 = PID_BITS + 2;
const POS_MASK: u64 = (1 << (64 - POS_SHIFT)) - 1;

/// Words of a slot ahead of the message: the state word and the length word.
const HEADER_WORDS: usize = 2;

const FREE: u64 = 0;
const FULL: u64 = 1;
const WRITING: u64 = 2;
const READING: u64 = 3;

#[inline]
fn enc(pos: u64, state: u64, pid: u32) -> u64 {
    ((pos & POS_MASK) << POS_SHIFT) | (state << STATE_SHIFT) | (u64::from(pid) & PID_MASK)
}

#[inline]
fn state(w: u64) -> u64 {
    (w >> STATE_SHIFT) & 3
}

#[inline]
fn pid(w: u64) -> u32 {
    (w & PID_MASK) as u32
}

/// `tag(w) - pos`, as a signed 40-bit difference.
#[inline]
fn diff(w: u64, pos: u64) -> i64 {
    let d = ((w >> POS_SHIFT).wrapping_sub(pos) & POS_MASK) << POS_SHIFT;
    (d as i64) >> POS_SHIFT
}

/// How long a waiter stuck behind a claimed slot sleeps between checks that its claimer lives.
const LIVENESS_POLL: Duration = Duration::from_millis(10);

/// The pid that tests write into a slot to stage a claimer that died: above any pid Linux hands
/// out by default (`pid_max` is at most 2^22 = 4,194,304, and defaults to far less).
#[cfg(any(test, loom, miri))]
pub(super) const MODEL_DEAD_PID: u32 = 4_000_000;

/// Whether the process `pid` that claimed a slot is still running.
#[cfg(not(any(loom, miri)))]
fn claimer_alive(pid: u32) -> bool {
    crate::sys::process_alive(pid, 0)
}

/// Models have no processes to ask about (Miri cannot read `/proc` or call `kill` in isolation,
/// and loom threads all share one pid): every claimer counts as alive except the pid the tests
/// stage as dead.
#[cfg(any(loom, miri))]
fn claimer_alive(pid: u32) -> bool {
    pid != MODEL_DEAD_PID
}

/// Whether a look for a free slot may read the consumers' head (see `Ring::consumed`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Head {
    /// Read it if the head this producer saw last does not show the slot's message taken.
    Read,
    /// Go by the head this producer saw last only.
    Cached,
}

/// What one look for a free slot found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TryPut {
    Done,
    /// Another producer holds the producers' role and is inside a put (see `ring/bias.rs`).
    Busy,
    /// No free slot; `claimed` names a claimed slot of the previous lap `(pos, word)` if that is
    /// what blocks (its claimer may be dead: see [`Ring::reclaim_dead_slot`]).
    Full {
        claimed: Option<(u64, u64)>,
    },
}

/// What one look for a published message found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TryGet<R> {
    Got(R),
    /// Another consumer holds the consumers' role and is inside a get.
    Busy,
    /// Nothing published at the head; `claimed` names the head slot `(pos, word)` if a producer
    /// has claimed it, or a consumer of the previous lap is still copying out of it.
    Empty {
        claimed: Option<(u64, u64)>,
    },
}

/// A view of a ring: its control block and slot words, wherever they live.
#[derive(Clone, Copy)]
pub(crate) struct Ring<'a> {
    ctl: &'a RingCtl,
    words: &'a [AtomicU64],
    cap: u64,
    stride: usize,
    max_len: usize,
    pid: u32,
    joinable: bool,
    /// The handle's memory, if it keeps one (see [`Memory`]).
    memory: Option<&'a Memory>,
}

impl<'a> Ring<'a> {
    /// A view of `cap` slots of messages of up to `max_len` bytes, acting as process `pid`.
    /// `words` must hold `cap * slot_words(max_len)` words.
    #[inline]
    pub(crate) fn new(
        ctl: &'a RingCtl,
        words: &'a [AtomicU64],
        cap: usize,
        max_len: usize,
        pid: u32,
        joinable: bool,
    ) -> Ring<'a> {
        let stride = slot_words(max_len).expect("validated size");
        assert!(cap >= 1 && words.len() == cap * stride);
        Ring {
            ctl,
            words,
            cap: cap as u64,
            stride,
            max_len,
            pid,
            joinable,
            memory: None,
        }
    }

    /// This view, remembering between operations in `memory` (see [`Memory`]).
    #[inline]
    pub(crate) fn with_memory(self, memory: &'a Memory) -> Ring<'a> {
        Ring {
            memory: Some(memory),
            ..self
        }
    }

    /// Initialises a fresh ring: every slot free for its first lap.
    pub(crate) fn init(&self) {
        for i in 0..self.cap {
            self.slot(i)[0].store(enc(i, FREE, 0), Relaxed);
        }
    }

    #[inline]
    fn slot(&self, pos: u64) -> &'a [AtomicU64] {
        // A division costs tens of cycles, on every operation; a power of two needs none.
        let i = if self.cap.is_power_of_two() {
            pos & (self.cap - 1)
        } else {
            pos % self.cap
        };
        let i = i as usize * self.stride;
        &self.words[i..i + self.stride]
    }

    /// The pid this view claims slots under.
    #[cfg(test)]
    pub(crate) fn pid(&self) -> u32 {
        self.pid
    }

    #[inline]
    pub(crate) fn capacity(&self) -> usize {
        self.cap as usize
    }

    /// Messages put and not yet taken (exact when nothing is in flight).
    #[inline]
    pub(crate) fn len(&self) -> usize {
        let head = self.ctl.head.0.pos.load(Relaxed);
        let tail = self.ctl.tail.0.pos.load(Relaxed);
        tail.saturating_sub(head).min(self.cap) as usize
    }

    /// Messages lost to peers that died mid-operation, since creation.
    pub(crate) fn lost(&self) -> u64 {
        self.ctl.state.0.lost.load(Relaxed)
    }

    #[inline]
    pub(crate) fn is_closed(&self) -> bool {
        // Acquire: pairs with the Release store in `close`.
        self.ctl.state.0.closed.load(Acquire) != 0
    }

    /// Marks the ring closed and wakes every waiter.
    pub(crate) fn close(&self) {
        let m = &self.ctl.state.0;
        // Release: pairs with the Acquire load in `is_closed`.
        m.closed.store(1, Release);
        for events in [&m.get, &m.put, &m.join] {
            events.wake();
        }
    }

    /// Puts `msg` (at most `max_len` bytes) if a slot is free; never sleeps. Another producer
    /// that holds the role and is inside a put is spun on briefly, then `Busy`.
    pub(super) fn try_put(&self, msg: &[u8]) -> TryPut {
        self.put_within(msg, Deadline::Now)
    }

    /// One look for a free slot, waiting for another producer that holds the role to leave
    /// until `deadline`.
    #[inline]
    fn put_within(&self, msg: &[u8], deadline: Deadline) -> TryPut {
        debug_assert!(msg.len() <= self.max_len);
        let Some(entry) = self.ctl.producers.enter(deadline, |_| {}) else {
            return TryPut::Busy;
        };
        let seen = entry.seat().map(|s| &s.seen);
        let r = loop {
            let r = if entry.is_holder() {
                self.put_in::<true>(msg, seen)
            } else {
                self.put_in::<false>(msg, seen)
            };
            match r {
                Some(r) => break r,
                // The tail was far behind (see `SEARCH_BUDGET`): go on looking while there is
                // time.
                None if deadline.passed() => break TryPut::Full { claimed: None },
                None => {}
            }
        };
        if r == TryPut::Done {
            entry.done(&self.ctl.tail.0.last, self.may_bias());
        }
        r
    }

    /// `try_put`'s work, by a thread that holds the producers' role `ALONE` (see `ring/bias.rs`)
    /// or shares it. Alone, nothing needs a compare-and-swap: no other producer runs, and only a
    /// producer moves a slot on from `FREE` (or from a `FULL` that a consumer holding its role
    /// has taken: see `get_in`). `seen` caches the head (see `consumed`).
    /// `None` once it has looked at [`SEARCH_BUDGET`] slots without finishing.
    #[inline(always)]
    fn put_in<const ALONE: bool>(&self, msg: &[u8], seen: Option<&AtomicU64>) -> Option<TryPut> {
        let tail = &self.ctl.tail.0.pos;
        let ahead = self.memory.map(|m| &m.ahead);
        if !ALONE {
            // Not needed for correctness (see `PutAhead`), but nothing a put that shares the
            // role found is worth keeping.
            ahead.inspect(|a| a.remember(None));
        }
        for _ in 0..SEARCH_BUDGET {
            let pos = tail.load(Relaxed);
            let slot = self.slot(pos);
            if ALONE && let Some(len_word) = ahead.and_then(|a| a.free(pos)) {
                // The last put found this slot free (see `PutAhead`).
                self.publish_alone(pos, slot, msg, len_word, seen);
                return Some(TryPut::Done);
            }
            // Acquire: pairs with the Release store that freed this slot in `try_get` (or
            // `reclaim`), so the last reader's copy is done before we overwrite the data.
            let w = slot[0].load(Acquire);
            if self.slot_free(pos, w, seen) {
                // Relaxed: as in `write_data`.
                let len_word = slot[1].load(Relaxed);
                if ALONE {
                    self.publish_alone(pos, slot, msg, len_word, seen);
                    return Some(TryPut::Done);
                }
                if claim(&slot[0], w, enc(pos, WRITING, self.pid)) {
                    advance::<false>(tail, pos);
                    write_data(slot, msg, len_word);
                    // Release: pairs with the Acquire loads in `try_get`; the data written
                    // above is visible to whoever sees FULL.
                    slot[0].store(enc(pos, FULL, 0), Release);
                    self.ctl.state.0.get.wake();
                    return Some(TryPut::Done);
                }
            } else if diff(w, pos) >= 0 {
                // Claimed for `pos` already, or even reused for a later lap: help the tail on.
                self.catch_up::<ALONE>(tail, pos, diff(w, pos));
            } else if tail.load(Relaxed) == pos {
                // Still holding the previous lap: full, unless our tail was stale.
                let claimed = matches!(state(w), WRITING | READING)
                    .then_some((pos.wrapping_sub(self.cap), w));
                return Some(TryPut::Full { claimed });
            }
        }
        None
    }

    /// Fills slot `pos`, found free, whose length word holds `len_word`, and publishes it, by a
    /// thread that holds the producers' role. Alone, there is nothing to claim against other
    /// producers, and nothing to mark for a consumer to find if we die: until the FULL store
    /// below, and the tail after it, the ring shows nothing of this put. (A consumer polling the
    /// slot would otherwise pull its line away between a claim and the publication.) Then looks
    /// at the next slot for the next put (see `PutAhead`).
    #[inline(always)]
    fn publish_alone(
        &self,
        pos: u64,
        slot: &[AtomicU64],
        msg: &[u8],
        len_word: u64,
        seen: Option<&AtomicU64>,
    ) {
        // The next slot first: a look there that has to wait for the line then waits beside
        // the copy below (which often waits for the caller's stores of the message to leave),
        // not after it.
        let ahead = self.memory.map(|m| {
            let next = pos.wrapping_add(1);
            let slot = self.slot(next);
            // Acquire: as in `put_in`, for the put that will fill it.
            let w = slot[0].load(Acquire);
            // Only from the head this producer last read: a look at the head here, where the
            // ring is near full, would pull the consumer's line away once more per message.
            // Relaxed: as in `write_data`.
            let free = self
                .slot_free_by(next, w, seen, Head::Cached)
                .then(|| (next, slot[1].load(Relaxed)));
            (m, free)
        });
        write_data(slot, msg, len_word);
        // Release: pairs with the Acquire loads in `try_get`; the data written above is visible
        // to whoever sees FULL.
        slot[0].store(enc(pos, FULL, 0), Release);
        advance::<true>(&self.ctl.tail.0.pos, pos);
        // A held role only: a shared one means several producers or consumers, which on a busy
        // machine take turns on the cores, so that the next to touch the lines is as likely to
        // be on this core (measured slower; DESIGN.md, "Handing a slot's lines over").
        demote_used(self.ctl, Side::Put, slot, HEADER_WORDS, msg.len());
        if let Some((m, free)) = ahead {
            m.ahead.remember(free);
        }
        self.ctl.state.0.get.wake();
    }

    /// Moves an index on from `pos`, whose slot holds a lap `d` (≥ 0) positions on: by one
    /// position, as the helping in `put_in` and `get_in` does; or, when the slot is more than a
    /// lap ahead, which no working ring shows (the index was scribbled far behind), straight to
    /// the lap before the slot's. A slot holds lap `pos + d` only once position `pos + d - cap`
    /// was claimed, and positions are claimed in order, so every position before that is taken:
    /// the index skips nothing that is still to come.
    #[inline(always)]
    fn catch_up<const ALONE: bool>(&self, index: &AtomicU64, pos: u64, d: i64) {
        match (d as u64).checked_sub(self.cap) {
            Some(ahead) if ahead > 0 => {
                let to = pos.wrapping_add(ahead);
                // Release: as in `advance`.
                if ALONE {
                    index.store(to, Release);
                } else {
                    let _ = index.compare_exchange(pos, to, Release, Relaxed);
                }
            }
            _ => advance::<ALONE>(index, pos),
        }
    }

    /// Whether the slot of `pos`, whose state word was just read as `w`, is free for `pos`:
    /// freed by a consumer, or holding the previous lap's message taken by a consumer that held
    /// its role and so left the word `FULL` (see `consumed`).
    #[inline]
    fn slot_free(&self, pos: u64, w: u64, seen: Option<&AtomicU64>) -> bool {
        self.slot_free_by(pos, w, seen, Head::Read)
    }

    /// [`slot_free`](Self::slot_free), reading the head (if `seen` does not already show the
    /// message taken) only if `head` says so.
    #[inline]
    fn slot_free_by(&self, pos: u64, w: u64, seen: Option<&AtomicU64>, head: Head) -> bool {
        match diff(w, pos) {
            0 => state(w) == FREE,
            d => {
                d == -(self.cap as i64)
                    && state(w) == FULL
                    && self.consumed(pos, seen, &self.slot(pos)[0], w, head)
            }
        }
    }

    /// Takes the message at the head if one is published, handing `read` its bytes; never
    /// sleeps (another consumer holding the role: as in `try_put`).
    pub(super) fn try_get<R>(&self, read: &mut impl FnMut(&[AtomicU64], usize) -> R) -> TryGet<R> {
        self.get_within(read, Deadline::Now)
    }

    /// One look for a published message, waiting for another consumer that holds the role to
    /// leave until `deadline`.
    fn get_within<R>(
        &self,
        read: &mut impl FnMut(&[AtomicU64], usize) -> R,
        deadline: Deadline,
    ) -> TryGet<R> {
        let skip = |dead: &Seat| self.skip_message_taken_by(dead);
        let Some(entry) = self.ctl.consumers.enter(deadline, skip) else {
            return TryGet::Busy;
        };
        let r = loop {
            let r = if entry.is_holder() {
                self.get_in::<true, R>(read, entry.seat())
            } else {
                self.get_in::<false, R>(read, None)
            };
            match r {
                Some(r) => break r,
                // The head was far behind (see `SEARCH_BUDGET`): go on looking while there is
                // time.
                None if deadline.passed() => break TryGet::Empty { claimed: None },
                None => {}
            }
        };
        if matches!(r, TryGet::Got(_)) {
            entry.done(&self.ctl.head.0.last, self.may_bias());
        }
        r
    }

    /// `try_get`'s work, alone or shared. Alone, the consumer writes nothing into the slot: it
    /// reads the message and moves the head past it, and producers take a previous lap's `FULL`
    /// slot behind the head as free (see `put_in`). So the slot's cache line is written by the
    /// producer only, and crosses to the consumer and back without a full transfer each way.
    /// Its seat's `taking` says which message it is copying out, for
    /// `skip_message_taken_by`.
    /// `None` once it has looked at [`SEARCH_BUDGET`] slots without finishing.
    #[inline(always)]
    fn get_in<const ALONE: bool, R>(
        &self,
        read: &mut impl FnMut(&[AtomicU64], usize) -> R,
        seat: Option<&Seat>,
    ) -> Option<TryGet<R>> {
        let head = &self.ctl.head.0.pos;
        for _ in 0..SEARCH_BUDGET {
            let pos = head.load(Relaxed);
            let slot = self.slot(pos);
            // Acquire: pairs with the Release store of FULL in `try_put`.
            let w = slot[0].load(Acquire);
            match (diff(w, pos), state(w)) {
                (0, FULL) => {
                    if ALONE {
                        if let Some(seat) = seat {
                            seat.taking.store(pos.wrapping_add(1), Relaxed);
                        }
                    } else if claim(&slot[0], w, enc(pos, READING, self.pid)) {
                        advance::<false>(head, pos);
                    } else {
                        continue;
                    }
                    let len = slot[1].load(Relaxed) as usize;
                    let r = (len <= self.max_len).then(|| read(&slot[2..], len));
                    if ALONE {
                        // Release: pairs with the Acquire load of the head in `consumed`; our
                        // copy is done before a producer, seeing the head past the slot, may
                        // overwrite it.
                        head.store(pos.wrapping_add(1), Release);
                        // As in `publish_alone`, a held role only.
                        demote_used(self.ctl, Side::Get, slot, HEADER_WORDS, len);
                    } else {
                        // Release: pairs with the Acquire loads in `try_put`; our copy of the
                        // data is done before a producer may overwrite it.
                        slot[0].store(enc(pos.wrapping_add(self.cap), FREE, 0), Release);
                    }
                    let m = &self.ctl.state.0;
                    m.put.wake();
                    match r {
                        Some(r) => {
                            if self.joinable {
                                m.delivered.fetch_add(1, Relaxed);
                            }
                            return Some(TryGet::Got(r));
                        }
                        // A length no producer wrote: the slot was scribbled on. Drop it.
                        None => {
                            m.lost.fetch_add(1, Relaxed);
                        }
                    }
                }
                (0, WRITING) => {
                    return Some(TryGet::Empty {
                        claimed: Some((pos, w)),
                    });
                }
                (0, FREE) => return Some(TryGet::Empty { claimed: None }),
                // Being read by another consumer, or already gone: help the head on.
                (0, _) => advance::<ALONE>(head, pos),
                (d, _) if d > 0 => self.catch_up::<ALONE>(head, pos, d),
                // Still holding the previous lap: nothing is published at `pos`, unless our head
                // was stale. A consumer of that lap may still be copying out (`READING`); name
                // it, so that a waiter can reclaim the slot if that consumer died (looping here
                // until it frees the slot would spin forever behind a dead one).
                _ => {
                    if head.load(Relaxed) == pos {
                        let claimed = matches!(state(w), WRITING | READING)
                            .then_some((pos.wrapping_sub(self.cap), w));
                        return Some(TryGet::Empty { claimed });
                    }
                }
            }
        }
        None
    }

    /// Whether the message of the previous lap in the slot of `pos`, whose state word `word` was
    /// just read as `w` (`FULL`), has been taken by a consumer that held its role: the head has
    /// passed it. `seen` (a producer's seat) caches the head, so that a producer streaming
    /// behind a consumer reads the consumer's line once a lap rather than once a message.
    ///
    /// The head must be read before the state word: a shared consumer claims the slot
    /// (`READING`) and then moves the head, so a head read after `w` may be past a slot that is
    /// still being copied out, and a producer holding its role would then overwrite it with
    /// plain stores. A cached head was read before `w`; a fresh one is followed by a second look
    /// at the word.
    #[inline]
    fn consumed(
        &self,
        pos: u64,
        seen: Option<&AtomicU64>,
        word: &AtomicU64,
        w: u64,
        head: Head,
    ) -> bool {
        let prev = pos.wrapping_sub(self.cap);
        if let Some(seen) = seen {
            // Relaxed: the value came from an Acquire load below, by this thread, before `w`.
            if seen.load(Relaxed) > prev {
                return true;
            }
        }
        if head == Head::Cached {
            return false;
        }
        // Acquire: pairs with the Release store of the head by a consumer holding its role (its
        // copy is done) and with the Release advance of a shared consumer (its claim is then
        // visible to the second look below).
        let head = self.ctl.head.0.pos.load(Acquire);
        if let Some(seen) = seen {
            seen.store(head, Relaxed);
        }
        // Acquire: as the first look.
        head > prev && word.load(Acquire) == w
    }

    /// A consumer that held its role died inside a get (`bias` found it so, with its seat): if
    /// it was copying out the message at the head, that message counts as lost, and the head
    /// moves past it, so that no one gets it twice.
    fn skip_message_taken_by(&self, dead: &Seat) {
        // Relaxed: the dead thread stores nothing more, and `revoke` found it dead through
        // its flag and `/proc`, after its last stores had left its processor.
        let taking = dead.taking.load(Relaxed);
        let Some(pos) = taking.checked_sub(1) else {
            return;
        };
        if self
            .ctl
            .head
            .0
            .pos
            .compare_exchange(pos, taking, AcqRel, Relaxed)
            .is_ok()
        {
            let m = &self.ctl.state.0;
            m.lost.fetch_add(1, Relaxed);
            m.put.wake();
        }
    }

    /// Whether a role may be handed to one thread (nobody has called
    /// [`forbid_bias`](Self::forbid_bias) on this ring).
    #[inline]
    fn may_bias(&self) -> bool {
        self.ctl.state.0.no_bias.load(Relaxed) == 0
    }

    /// From now on no role of this ring is handed to one thread (see `ring/bias.rs`), for
    /// every process: set by a process that cannot run `membarrier`, and by the process
    /// module's channels, whose roles change hands by design.
    pub(crate) fn forbid_bias(&self) {
        self.ctl.state.0.no_bias.store(1, Relaxed);
    }

    /// Frees slot `pos`, found holding `w` (`WRITING` or `READING`), if the process named in
    /// `w` is dead, counting its message lost. Returns whether it did.
    pub(super) fn reclaim_dead_slot(&self, pos: u64, w: u64) -> bool {
        if claimer_alive(pid(w)) {
            return false;
        }
        let slot = self.slot(pos);
        // Release: pairs with the Acquire loads in `try_put`, like a consumer's free. Nothing
        // the dead claimer wrote is read, so no Acquire is needed.
        if slot[0]
            .compare_exchange(
                w,
                enc(pos.wrapping_add(self.cap), FREE, 0),
                Release,
                Relaxed,
            )
            .is_err()
        {
            return false;
        }
        let _ = self
            .ctl
            .tail
            .0
            .pos
            .compare_exchange(pos, pos.wrapping_add(1), Relaxed, Relaxed);
        let _ = self
            .ctl
            .head
            .0
            .pos
            .compare_exchange(pos, pos.wrapping_add(1), Relaxed, Relaxed);
        let m = &self.ctl.state.0;
        m.lost.fetch_add(1, Relaxed);
        m.put.wake();
        m.get.wake();
        m.join.wake();
        true
    }

    /// Whether the head slot holds a published message (or the ring is closed).
    #[inline]
    pub(crate) fn readable(&self) -> bool {
        let pos = self.ctl.head.0.pos.load(Relaxed);
        // Acquire: as in `try_get`.
        let w = self.slot(pos)[0].load(Acquire);
        (diff(w, pos) == 0 && state(w) == FULL) || self.is_closed()
    }

    #[inline]
    fn writable(&self) -> bool {
        let pos = self.ctl.tail.0.pos.load(Relaxed);
        // Acquire: as in `try_put`.
        let w = self.slot(pos)[0].load(Acquire);
        self.slot_free(pos, w, None) || self.is_closed()
    }

    /// Puts `msg` if a slot is free, never sleeping: Python's `put_nowait`. A slot whose
    /// claimer died is reclaimed on the way. Full (or another producer inside a put it must not
    /// wait for) is [`TryRingError::WouldBlock`], unless the consumers are `gone`; whether they are
    /// is looked at only once the ring is found full, and then before one more try, so that a
    /// consumer's last take before it went is seen.
    pub(crate) fn put_nowait(&self, msg: &[u8], peers: &impl Peers) -> Result<(), TryRingError> {
        let mut gone = None;
        loop {
            if self.is_closed() {
                return Err(TryRingError::Closed);
            }
            match self.try_put(msg) {
                TryPut::Done => return Ok(()),
                TryPut::Full {
                    claimed: Some((pos, w)),
                } if self.reclaim_dead_slot(pos, w) => {}
                TryPut::Full { .. } if gone.is_none() => gone = Some(peers.gone()),
                TryPut::Full { .. } if gone == Some(true) => {
                    return Err(TryRingError::Disconnected);
                }
                // Busy: another producer, holding the producers' role, was still inside a put
                // after a brief spin; a nonblocking put must not wait on it.
                TryPut::Full { .. } | TryPut::Busy => return Err(TryRingError::WouldBlock),
            }
        }
    }

    /// Takes a message if one is published, never sleeping (see [`put_nowait`](Self::put_nowait)):
    /// [`TryRingError::Closed`] once the ring is closed and drained, [`TryRingError::Disconnected`] once
    /// it is empty and the producers are `gone`.
    pub(crate) fn get_nowait<R>(
        &self,
        read: &mut impl FnMut(&[AtomicU64], usize) -> R,
        peers: &impl Peers,
    ) -> Result<R, TryRingError> {
        let mut gone = None;
        loop {
            // `closed` first, as in `get_watching`: "closed and empty" must mean drained.
            let closed = self.is_closed();
            match self.try_get(read) {
                TryGet::Got(r) => return Ok(r),
                TryGet::Empty {
                    claimed: Some((pos, w)),
                } if self.reclaim_dead_slot(pos, w) => {}
                TryGet::Empty { claimed: None } if closed => return Err(TryRingError::Closed),
                TryGet::Empty { claimed: None } if gone.is_none() => gone = Some(peers.gone()),
                TryGet::Empty { claimed: None } if gone == Some(true) => {
                    return Err(TryRingError::Disconnected);
                }
                // Busy: another consumer is inside a get (CPython's `get_nowait` says Empty when
                // another process holds the read lock, too).
                TryGet::Empty { .. } | TryGet::Busy => return Err(TryRingError::WouldBlock),
            }
        }
    }

    /// Puts `msg`, waiting while the ring is full: `spin` rounds of spinning, then sleeping,
    /// until `deadline` (forever if `None`). A full ring is refilled in batches (see
    /// [`BatchWait`](super::BatchWait)).
    #[cfg(test)]
    pub(crate) fn put(
        &self,
        msg: &[u8],
        deadline: Option<Instant>,
        spin: u32,
    ) -> Result<(), RingError> {
        self.put_watching(msg, deadline, spin, &NoPeers)
    }

    /// [`put`](Self::put), giving up with [`RingError::Disconnected`] when the ring is full and
    /// the consumers are `gone`, and sleeping so that their death wakes it.
    #[inline]
    pub(crate) fn put_watching(
        &self,
        msg: &[u8],
        deadline: Option<Instant>,
        spin: u32,
        peers: &impl Peers,
    ) -> Result<(), RingError> {
        // The common case first, outside the wait loop, whose closure and bookkeeping would
        // slow a stream of small messages: a slot free at once. A producer holding the role is
        // waited for with the put's own deadline, as in the loop.
        let within = Deadline::from_instant(deadline);
        if !self.is_closed() && self.put_within(msg, within) == TryPut::Done {
            return Ok(());
        }
        let m = &self.ctl.state.0;
        let batch = super::BatchWait::new(&self.ctl.head.0.pos, self.cap);
        let attempt = |spun| {
            if self.is_closed() {
                return Progress::Done(Err(RingError::Closed));
            }
            if batch.keep_waiting(spun) {
                return Progress::Blocked { recheck: None };
            }
            // Looked at once the spin is spent (it may read `/proc`), before the slot: a
            // consumer's last take before it went is then seen.
            let gone = spun && peers.gone();
            match self.put_within(msg, within) {
                TryPut::Done => Progress::Done(Ok(())),
                TryPut::Busy => Progress::Done(Err(RingError::Timeout)),
                TryPut::Full { .. } if gone => {
                    Progress::Done(Err(RingError::gone(self.is_closed())))
                }
                TryPut::Full { claimed } => {
                    if claimed.is_none() {
                        batch.found_full(spun);
                    }
                    self.reclaim_or_wait(claimed, spun)
                }
            }
        };
        block(&m.put, deadline, spin, attempt, || !self.writable(), peers)
            .unwrap_or(Err(RingError::Timeout))
    }

    /// Takes a message, waiting while the ring is empty (see [`put`](Self::put)).
    #[cfg(test)]
    pub(crate) fn get<R>(
        &self,
        read: &mut impl FnMut(&[AtomicU64], usize) -> R,
        deadline: Option<Instant>,
        spin: u32,
    ) -> Result<R, RingError> {
        self.get_watching(read, deadline, spin, &NoPeers)
    }

    /// [`get`](Self::get), giving up with [`RingError::Disconnected`] when the ring is empty and
    /// the producers are `gone`, and sleeping so that their death wakes it. A consumer that
    /// remembers taking a backlog and finds the ring empty first waits for a batch (see
    /// [`CatchUp`]).
    pub(crate) fn get_watching<R>(
        &self,
        read: &mut impl FnMut(&[AtomicU64], usize) -> R,
        deadline: Option<Instant>,
        spin: u32,
        peers: &impl Peers,
    ) -> Result<R, RingError> {
        // The common case first, as in `put_watching`: a message at once. (A closed ring still
        // hands out what it holds, so `closed` need not be read first here.)
        let within = Deadline::from_instant(deadline);
        let catch_up = self.memory.map(|m| &m.catch_up);
        if let TryGet::Got(r) = self.get_within(read, within) {
            catch_up.inspect(|c| c.took_at_once());
            return Ok(r);
        }
        // A handle told not to spin (`set_spin(0)`) does not spin for a batch either.
        if catch_up.is_some_and(CatchUp::found_empty) && spin > 0 {
            self.wait_for_batch(deadline);
            if let TryGet::Got(r) = self.get_within(read, within) {
                catch_up.inspect(|c| c.took_at_once());
                return Ok(r);
            }
        }
        let m = &self.ctl.state.0;
        let attempt = |spun| {
            // `closed` is read BEFORE looking for a message: a put that happened before the
            // close is then visible to the `try_get` below, so "closed and empty" really means
            // drained. (Read after, a consumer preempted between the two could see the close
            // but not the last puts, and drop them.)
            let closed = self.is_closed();
            // Likewise `gone`, once the spin is spent (it may read `/proc`): a message put
            // before the last producer went is then seen.
            let gone = spun && peers.gone();
            let claimed = match self.get_within(read, within) {
                TryGet::Got(r) => return Progress::Done(Ok(r)),
                TryGet::Busy => return Progress::Done(Err(RingError::Timeout)),
                TryGet::Empty { claimed } => claimed,
            };
            // Closed (or gone) and drained: nothing is published, and no producer holds the
            // head slot (a consumer still copying out the previous lap does not count).
            let drained = claimed.is_none_or(|(_, w)| state(w) == READING);
            if closed && drained {
                return Progress::Done(Err(RingError::Closed));
            }
            if gone && drained {
                return Progress::Done(Err(RingError::gone(self.is_closed())));
            }
            self.reclaim_or_wait(claimed, spun)
        };
        block(&m.get, deadline, spin, attempt, || !self.readable(), peers)
            .unwrap_or(Err(RingError::Timeout))
    }

    /// The consumers' eventcount: woken by every put (and a close).
    pub(crate) fn get_events(&self) -> &'a EventCount {
        &self.ctl.state.0.get
    }

    /// The producers' eventcount: woken by every get (and a close).
    pub(crate) fn put_events(&self) -> &'a EventCount {
        &self.ctl.state.0.put
    }

    /// What a blocked operation does about a claimed slot in its way: once the spin budget is
    /// spent (the claimer's liveness costs a `/proc` read), reclaim it if the claimer is dead
    /// and try again at once; otherwise wait, looking again every [`LIVENESS_POLL`].
    fn reclaim_or_wait<T>(&self, claimed: Option<(u64, u64)>, spun: bool) -> Progress<T> {
        match claimed {
            Some((pos, w)) if spun && self.reclaim_dead_slot(pos, w) => Progress::Again,
            Some(_) => Progress::Blocked {
                recheck: Some(LIVENESS_POLL),
            },
            None => Progress::Blocked { recheck: None },
        }
    }
}

/// Claims a slot (shared protocol) by moving its state word from `w` to `new`. Acquire on
/// success: pairs with the Release store that put the slot in state `w`.
#[inline(always)]
fn claim(word: &AtomicU64, w: u64, new: u64) -> bool {
    word.compare_exchange(w, new, Acquire, Relaxed).is_ok()
}

/// Moves an index on from `pos`, if no one has yet. Alone, a plain store does. The only other
/// writer then is `reclaim`, which may have moved it on already (past the next slot too, if
/// that one was a dead claimer's); the plain store then sets it back by a slot, which is safe
/// (an index only says where to start looking: the slot's word is the truth) and heals at the
/// next look, which finds that slot taken and moves on. Release, both: the claim (or the
/// claimed state the helper saw) is visible to whoever reads the index past it (see
/// `Ring::consumed`).
#[inline(always)]
fn advance<const ALONE: bool>(index: &AtomicU64, pos: u64) {
    if ALONE {
        index.store(pos.wrapping_add(1), Release);
    } else {
        let _ = index.compare_exchange(pos, pos.wrapping_add(1), Release, Relaxed);
    }
}

/// Writes `msg` and its length into a slot this thread has claimed (`WRITING`), or holds the
/// producers' role for, whose length word held `len_word`.
///
/// The message first, and nothing stored into the slot before it: the caller has usually just
/// made the message in smaller pieces than the copy's loads, and such a load waits until those
/// stores leave the processor, behind every older store; a store into the slot (whose line the
/// consumer may be polling) ahead of it would make every put wait for that line to come back.
/// The length word only if it changed: a queue of one message size then writes only the data
/// and the state word. (Callers read `len_word` before the data is stored, while the line is
/// still here for reading, not behind our own stores.)
#[inline]
fn write_data(slot: &[AtomicU64], msg: &[u8], len_word: u64) {
    let len_changed = len_word != msg.len() as u64;
    let data = &slot[2..];
    assert!(msg.len() <= data.len() * 8);
    // loom's atomics are handles, not memory: copy word by word, Relaxed, so that a missing
    // happens-before edge shows up in the model as a stale message.
    #[cfg(loom)]
    for (word, chunk) in data.iter().zip(msg.chunks(8)) {
        let mut bytes = [0; 8];
        bytes[..chunk.len()].copy_from_slice(chunk);
        word.store(u64::from_ne_bytes(bytes), Relaxed);
    }
    #[cfg(not(loom))]
    // SAFETY: the bytes lie inside `data` (asserted). The slot is claimed by our successful CAS
    // to WRITING, so until our Release store of FULL no one else reads or writes these words:
    // the previous reader's copy happened-before its Release store of FREE, which our Acquire
    // CAS read. `data` is atomics (UnsafeCell), so writing through a pointer from `&` is allowed.
    unsafe {
        std::ptr::copy_nonoverlapping(
            msg.as_ptr(),
            data.as_ptr().cast::<u8>().cast_mut(),
            msg.len(),
        );
    }
    if len_changed {
        // Relaxed, as every access to the length word: the slot is ours until the Release
        // store of its state word, which publishes this with the data.
        slot[1].store(msg.len() as u64, Relaxed);
    }
}

/// Copies `out.len()` bytes of a message out of the data words of a slot this thread has
/// claimed (`READING`), inside the `read` callback of [`Ring::try_get`].
#[inline]
pub(crate) fn read_data(data: &[AtomicU64], out: &mut [u8]) {
    assert!(out.len() <= data.len() * 8);
    // Word by word under loom, as in `write_data`.
    #[cfg(loom)]
    for (word, chunk) in data.iter().zip(out.chunks_mut(8)) {
        chunk.copy_from_slice(&word.load(Relaxed).to_ne_bytes()[..chunk.len()]);
    }
    #[cfg(not(loom))]
    // SAFETY: the bytes lie inside `data` (asserted). The caller's claim (a successful Acquire
    // CAS from FULL, pairing with the producer's Release store of FULL) orders the producer's
    // writes before this read, and no one writes the slot until our Release store of FREE.
    unsafe {
        std::ptr::copy_nonoverlapping(data.as_ptr().cast::<u8>(), out.as_mut_ptr(), out.len());
    }
}

/// Reads a `T` out of the data words of a slot this thread has claimed (as [`read_data`]), in one
/// piece, straight into the value handed back: not a zeroed buffer with the message copied over
/// it, which would cost the consumer two rounds of stores per message.
#[cfg(not(loom))]
#[inline]
pub(crate) fn read_pod<T: bytemuck::Pod>(data: &[AtomicU64]) -> T {
    assert!(std::mem::size_of::<T>() <= data.len() * 8);
    // SAFETY: the bytes lie inside `data` (asserted), and the claim orders the producer's writes
    // before this read, as in `read_data`. Unaligned, because the words are 8-aligned and `T`
    // may ask for more; any bytes are a valid `T: Pod`.
    unsafe { std::ptr::read_unaligned(data.as_ptr().cast::<T>()) }
}

/// A ring on the heap, for tests of the algorithm alone (Miri, property tests).
#[cfg(test)]
pub(crate) struct HeapRing {
    ctl: Box<RingCtl>,
    words: Vec<AtomicU64>,
    cap: usize,
    max_len: usize,
    memory: Memory,
}

#[cfg(test)]
impl HeapRing {
    pub(crate) fn new(cap: usize, max_len: usize) -> HeapRing {
        let n = cap * slot_words(max_len).expect("size");
        let ring = HeapRing {
            ctl: Box::default(),
            words: (0..n).map(|_| AtomicU64::new(0)).collect(),
            cap,
            max_len,
            memory: Memory::default(),
        };
        ring.ring(1).init();
        ring
    }

    /// A view acting as process `pid`, with the heap ring's one memory (as if every view were
    /// one handle shared by threads; see [`Memory`]).
    pub(crate) fn ring(&self, pid: u32) -> Ring<'_> {
        Ring::new(&self.ctl, &self.words, self.cap, self.max_len, pid, true)
            .with_memory(&self.memory)
    }
}

/// The shared structures of the ring and its roles, for the pinned layout (`src/layout.rs`).
#[cfg(all(test, not(loom)))]
pub(crate) fn shared_layout() -> Vec<String> {
    let mut v = vec![
        crate::layout::pin!(RingCtl {
            head,
            tail,
            state,
            producers,
            consumers
        }),
        crate::layout::pin!(Padded<Index> { 0 }),
        crate::layout::pin!(Index { pos, last }),
        crate::layout::pin!(State {
            closed,
            get,
            put,
            join,
            no_bias,
            lost,
            delivered,
            done
        }),
        crate::wait::eventcount::shared_layout(),
        format!(
            "slot word pos << {POS_SHIFT} | state << {STATE_SHIFT} | pid ({PID_BITS} bits); \
             FREE {FREE} FULL {FULL} WRITING {WRITING} READING {READING}; \
             slot_words(8) {:?}, slot_words(1024) {:?}",
            slot_words(8),
            slot_words(1024)
        ),
    ];
    v.extend(
        super::bias::shared_layout()
            .into_iter()
            .map(|l| format!("bias::{l}")),
    );
    v
}

#[cfg(all(test, not(loom)))]
mod tests;
