//! The bounded MPMC ring under `Queue` and `Pipe`: Vyukov's per-slot sequence numbers, with the
//! claim moved into the slot so that a dead peer can be detected and its slot reclaimed.
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
//! frees the slot and counts one lost message.
//!
//! Guarantee: every message is delivered at most once, and each producer's messages come out in
//! the order it put them. A message whose producer died before publishing it, or whose consumer
//! died while copying it out, is lost and counted in [`Ring::lost`].
//!
//! Waiting is an eventcount: a blocked side bumps a waiter count and sleeps on a shared futex
//! word; the other side issues the wake syscall only when that count is non-zero, so the
//! uncontended path makes no syscalls at all.
//!
//! It works on a control block and a slice of `AtomicU64` slot words, wherever they live, so it
//! runs the same on heap memory under Miri and in property tests as on a mapped segment. The one
//! unsafe operation is the message copy into and out of a claimed slot.

use std::sync::atomic::Ordering::{Acquire, Relaxed, Release, SeqCst};
use std::sync::atomic::{AtomicU32, AtomicU64, fence};
use std::time::{Duration, Instant};

use crate::sys;

/// One cache-line pair (128 bytes: x86_64 prefetches lines in pairs).
#[repr(C, align(128))]
#[derive(Default)]
pub(crate) struct Padded<T>(pub T);

/// The ring's shared control block: indices on lines of their own, then the waiting state.
#[repr(C)]
#[derive(Default)]
pub(crate) struct RingCtl {
    head: Padded<AtomicU64>,
    tail: Padded<AtomicU64>,
    misc: Padded<Misc>,
}

#[repr(C)]
#[derive(Default)]
struct Misc {
    closed: AtomicU32,
    get_epoch: AtomicU32,
    get_waiters: AtomicU32,
    put_epoch: AtomicU32,
    put_waiters: AtomicU32,
    join_epoch: AtomicU32,
    join_waiters: AtomicU32,
    _reserved: AtomicU32,
    lost: AtomicU64,
    delivered: AtomicU64,
    done: AtomicU64,
}

// SAFETY: `RingCtl` is atomics only: every bit pattern is valid and all mutation is atomic.
unsafe impl crate::segment::Shared for RingCtl {}

/// Bytes of the control block.
pub(crate) const CTL_SIZE: usize = std::mem::size_of::<RingCtl>();

const PID_BITS: u32 = 22;
const PID_MASK: u64 = (1 << PID_BITS) - 1;
const STATE_SHIFT: u32 = PID_BITS;
const POS_SHIFT: u32 = PID_BITS + 2;
const POS_MASK: u64 = (1 << (64 - POS_SHIFT)) - 1;

const FREE: u64 = 0;
const FULL: u64 = 1;
const WRITING: u64 = 2;
const READING: u64 = 3;

fn enc(pos: u64, state: u64, pid: u32) -> u64 {
    ((pos & POS_MASK) << POS_SHIFT) | (state << STATE_SHIFT) | (u64::from(pid) & PID_MASK)
}

fn state(w: u64) -> u64 {
    (w >> STATE_SHIFT) & 3
}

fn pid(w: u64) -> u32 {
    (w & PID_MASK) as u32
}

/// `tag(w) - pos`, as a signed 40-bit difference.
fn diff(w: u64, pos: u64) -> i64 {
    let d = ((w >> POS_SHIFT).wrapping_sub(pos) & POS_MASK) << POS_SHIFT;
    (d as i64) >> POS_SHIFT
}

/// Words per slot for messages of up to `max_len` bytes: state, length, data, rounded up to a
/// cache line so neighbouring slots do not share one.
pub(crate) fn slot_words(max_len: usize) -> Option<usize> {
    let words = max_len.checked_add(7)? / 8 + 2;
    Some(words.checked_add(7)? / 8 * 8)
}

/// How long a waiter stuck behind a claimed slot sleeps between checks that its claimer lives.
const LIVENESS_POLL: Duration = Duration::from_millis(10);

/// What a non-blocking put found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TryPut {
    Done,
    /// No free slot; `stuck` names a claimed slot of the previous lap `(pos, word)` if that is
    /// what blocks.
    Full {
        stuck: Option<(u64, u64)>,
    },
}

/// What a non-blocking get found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TryGet<R> {
    Got(R),
    /// Nothing published at the head; `stuck` names the head slot `(pos, word)` if a producer
    /// has claimed it.
    Empty {
        stuck: Option<(u64, u64)>,
    },
}

/// Why a blocking operation gave up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fail {
    Timeout,
    Closed,
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
}

impl<'a> Ring<'a> {
    /// A view of `cap` slots of messages of up to `max_len` bytes, acting as process `pid`.
    /// `words` must hold `cap * slot_words(max_len)` words.
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
        }
    }

    /// Initialises a fresh ring: every slot free for its first lap.
    pub(crate) fn init(&self) {
        for i in 0..self.cap {
            self.slot(i)[0].store(enc(i, FREE, 0), Relaxed);
        }
    }

    fn slot(&self, pos: u64) -> &'a [AtomicU64] {
        let i = (pos % self.cap) as usize * self.stride;
        &self.words[i..i + self.stride]
    }

    pub(crate) fn capacity(&self) -> usize {
        self.cap as usize
    }

    /// Messages put and not yet taken (exact when nothing is in flight).
    pub(crate) fn len(&self) -> usize {
        let head = self.ctl.head.0.load(Relaxed);
        let tail = self.ctl.tail.0.load(Relaxed);
        tail.saturating_sub(head).min(self.cap) as usize
    }

    /// Messages lost to peers that died mid-operation, since creation.
    pub(crate) fn lost(&self) -> u64 {
        self.ctl.misc.0.lost.load(Relaxed)
    }

    pub(crate) fn is_closed(&self) -> bool {
        // Acquire: pairs with the Release store in `close`.
        self.ctl.misc.0.closed.load(Acquire) != 0
    }

    /// Marks the ring closed and wakes every waiter.
    pub(crate) fn close(&self) {
        let m = &self.ctl.misc.0;
        // Release: pairs with the Acquire load in `is_closed`.
        m.closed.store(1, Release);
        for (epoch, waiters) in [
            (&m.get_epoch, &m.get_waiters),
            (&m.put_epoch, &m.put_waiters),
            (&m.join_epoch, &m.join_waiters),
        ] {
            wake(epoch, waiters);
        }
    }

    /// Puts `msg` (at most `max_len` bytes) if a slot is free; never waits.
    pub(crate) fn try_put(&self, msg: &[u8]) -> TryPut {
        debug_assert!(msg.len() <= self.max_len);
        let tail = &self.ctl.tail.0;
        loop {
            let pos = tail.load(Relaxed);
            let slot = self.slot(pos);
            // Acquire: pairs with the Release store that freed this slot in `try_get` (or
            // `reclaim`), so the last reader's copy is done before we overwrite the data.
            let w = slot[0].load(Acquire);
            match diff(w, pos) {
                0 if state(w) == FREE => {
                    // Acquire on success, as above; on failure we reload.
                    if slot[0]
                        .compare_exchange(w, enc(pos, WRITING, self.pid), Acquire, Relaxed)
                        .is_ok()
                    {
                        let _ = tail.compare_exchange(pos, pos + 1, Relaxed, Relaxed);
                        write_data(slot, msg);
                        // Release: pairs with the Acquire loads in `try_get`; the data written
                        // above is visible to whoever sees FULL.
                        slot[0].store(enc(pos, FULL, 0), Release);
                        let m = &self.ctl.misc.0;
                        wake(&m.get_epoch, &m.get_waiters);
                        return TryPut::Done;
                    }
                }
                // Claimed for `pos` already, or even reused for a later lap: help the tail on.
                d if d >= 0 => {
                    let _ = tail.compare_exchange(pos, pos + 1, Relaxed, Relaxed);
                }
                // Still holding the previous lap: full, unless our tail was stale.
                _ => {
                    if tail.load(Relaxed) == pos {
                        let stuck =
                            matches!(state(w), WRITING | READING).then_some((pos - self.cap, w));
                        return TryPut::Full { stuck };
                    }
                }
            }
        }
    }

    /// Takes the message at the head if one is published, handing `read` its bytes; never
    /// waits.
    pub(crate) fn try_get<R>(&self, read: &mut impl FnMut(&[AtomicU64], usize) -> R) -> TryGet<R> {
        let head = &self.ctl.head.0;
        loop {
            let pos = head.load(Relaxed);
            let slot = self.slot(pos);
            // Acquire: pairs with the Release store of FULL in `try_put`.
            let w = slot[0].load(Acquire);
            match (diff(w, pos), state(w)) {
                (0, FULL) => {
                    // Acquire on success, as above; on failure we reload.
                    if slot[0]
                        .compare_exchange(w, enc(pos, READING, self.pid), Acquire, Relaxed)
                        .is_err()
                    {
                        continue;
                    }
                    let _ = head.compare_exchange(pos, pos + 1, Relaxed, Relaxed);
                    let len = slot[1].load(Relaxed) as usize;
                    let r = (len <= self.max_len).then(|| read(&slot[2..], len));
                    // Release: pairs with the Acquire loads in `try_put`; our copy of the data
                    // is done before a producer may overwrite it.
                    slot[0].store(enc(pos + self.cap, FREE, 0), Release);
                    let m = &self.ctl.misc.0;
                    wake(&m.put_epoch, &m.put_waiters);
                    match r {
                        Some(r) => {
                            if self.joinable {
                                m.delivered.fetch_add(1, Relaxed);
                            }
                            return TryGet::Got(r);
                        }
                        // A length no producer wrote: the slot was scribbled on. Drop it.
                        None => {
                            m.lost.fetch_add(1, Relaxed);
                        }
                    }
                }
                (0, WRITING) => {
                    return TryGet::Empty {
                        stuck: Some((pos, w)),
                    };
                }
                (0, FREE) => return TryGet::Empty { stuck: None },
                // Being read by another consumer, or already gone: help the head on.
                (0, _) => {
                    let _ = head.compare_exchange(pos, pos + 1, Relaxed, Relaxed);
                }
                (d, _) if d > 0 => {
                    let _ = head.compare_exchange(pos, pos + 1, Relaxed, Relaxed);
                }
                _ => {} // a stale head: reload
            }
        }
    }

    /// Frees slot `pos`, found holding `w` (`WRITING` or `READING`), if the process named in
    /// `w` is dead. Returns whether it did.
    pub(crate) fn reclaim(&self, pos: u64, w: u64) -> bool {
        if sys::process_alive(pid(w), 0) {
            return false;
        }
        let slot = self.slot(pos);
        // Release: pairs with the Acquire loads in `try_put`, like a consumer's free. Nothing
        // the dead claimer wrote is read, so no Acquire is needed.
        if slot[0]
            .compare_exchange(w, enc(pos + self.cap, FREE, 0), Release, Relaxed)
            .is_err()
        {
            return false;
        }
        let _ = self
            .ctl
            .tail
            .0
            .compare_exchange(pos, pos + 1, Relaxed, Relaxed);
        let _ = self
            .ctl
            .head
            .0
            .compare_exchange(pos, pos + 1, Relaxed, Relaxed);
        let m = &self.ctl.misc.0;
        m.lost.fetch_add(1, Relaxed);
        wake(&m.put_epoch, &m.put_waiters);
        wake(&m.get_epoch, &m.get_waiters);
        wake(&m.join_epoch, &m.join_waiters);
        true
    }

    /// Whether the head slot holds a published message (or the ring is closed).
    pub(crate) fn readable(&self) -> bool {
        let pos = self.ctl.head.0.load(Relaxed);
        // Acquire: as in `try_get`.
        let w = self.slot(pos)[0].load(Acquire);
        (diff(w, pos) == 0 && state(w) == FULL) || self.is_closed()
    }

    fn writable(&self) -> bool {
        let pos = self.ctl.tail.0.load(Relaxed);
        // Acquire: as in `try_put`.
        let w = self.slot(pos)[0].load(Acquire);
        (diff(w, pos) == 0 && state(w) == FREE) || self.is_closed()
    }

    /// Puts `msg`, waiting while the ring is full: `spin` rounds of spinning, then sleeping,
    /// until `deadline` (forever if `None`).
    pub(crate) fn put(&self, msg: &[u8], deadline: Option<Instant>, spin: u32) -> Result<(), Fail> {
        let mut rounds = 0;
        loop {
            if self.is_closed() {
                return Err(Fail::Closed);
            }
            let stuck = match self.try_put(msg) {
                TryPut::Done => return Ok(()),
                TryPut::Full { stuck } => stuck,
            };
            if rounds < spin {
                rounds += 1;
                backoff(rounds);
                continue;
            }
            if let Some((pos, w)) = stuck {
                if self.reclaim(pos, w) {
                    continue;
                }
            }
            let wait = remaining(deadline)?;
            let m = &self.ctl.misc.0;
            let poll = stuck.map(|_| LIVENESS_POLL);
            park(&m.put_epoch, &m.put_waiters, min_opt(wait, poll), || {
                !self.writable()
            });
        }
    }

    /// Takes a message, waiting while the ring is empty (see [`put`](Self::put)).
    pub(crate) fn get<R>(
        &self,
        read: &mut impl FnMut(&[AtomicU64], usize) -> R,
        deadline: Option<Instant>,
        spin: u32,
    ) -> Result<R, Fail> {
        let mut rounds = 0;
        loop {
            let stuck = match self.try_get(read) {
                TryGet::Got(r) => return Ok(r),
                TryGet::Empty { stuck } => stuck,
            };
            if stuck.is_none() && self.is_closed() {
                return Err(Fail::Closed);
            }
            if rounds < spin {
                rounds += 1;
                backoff(rounds);
                continue;
            }
            if let Some((pos, w)) = stuck {
                if self.reclaim(pos, w) {
                    continue;
                }
            }
            let wait = remaining(deadline)?;
            let m = &self.ctl.misc.0;
            let poll = stuck.map(|_| LIVENESS_POLL);
            park(&m.get_epoch, &m.get_waiters, min_opt(wait, poll), || {
                !self.readable()
            });
        }
    }

    /// Counts one delivered message as done (`JoinableQueue::task_done`). Fails when every
    /// delivered message is already done.
    pub(crate) fn task_done(&self) -> Result<(), ()> {
        let m = &self.ctl.misc.0;
        let mut done = m.done.load(Relaxed);
        loop {
            if done >= m.delivered.load(Relaxed) {
                return Err(());
            }
            match m
                .done
                .compare_exchange_weak(done, done + 1, Relaxed, Relaxed)
            {
                Ok(_) => break,
                Err(d) => done = d,
            }
        }
        wake(&m.join_epoch, &m.join_waiters);
        Ok(())
    }

    /// Whether every message put has been taken and marked done.
    fn joined(&self) -> bool {
        let m = &self.ctl.misc.0;
        let (head, tail) = (self.ctl.head.0.load(Relaxed), self.ctl.tail.0.load(Relaxed));
        head == tail && m.done.load(Relaxed) == m.delivered.load(Relaxed)
    }

    /// Waits until every message put has been taken and marked done, or `deadline`.
    pub(crate) fn join(&self, deadline: Option<Instant>) -> Result<(), Fail> {
        loop {
            if self.joined() {
                return Ok(());
            }
            // A dead producer's claimed slot at the head would hold `head < tail` forever.
            let pos = self.ctl.head.0.load(Relaxed);
            // Acquire: as in `try_get`.
            let w = self.slot(pos)[0].load(Acquire);
            if diff(w, pos) == 0 && state(w) == WRITING && self.reclaim(pos, w) {
                continue;
            }
            let wait = remaining(deadline)?;
            let m = &self.ctl.misc.0;
            park(
                &m.join_epoch,
                &m.join_waiters,
                min_opt(wait, Some(LIVENESS_POLL)),
                || !self.joined(),
            );
        }
    }
}

/// Writes `msg` and its length into a slot this thread has claimed (`WRITING`).
fn write_data(slot: &[AtomicU64], msg: &[u8]) {
    slot[1].store(msg.len() as u64, Relaxed);
    let data = &slot[2..];
    assert!(msg.len() <= data.len() * 8);
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
}

/// Copies `out.len()` bytes of a message out of the data words of a slot this thread has
/// claimed (`READING`), inside the `read` callback of [`Ring::try_get`].
pub(crate) fn read_data(data: &[AtomicU64], out: &mut [u8]) {
    assert!(out.len() <= data.len() * 8);
    // SAFETY: the bytes lie inside `data` (asserted). The caller's claim (a successful Acquire
    // CAS from FULL, pairing with the producer's Release store of FULL) orders the producer's
    // writes before this read, and no one writes the slot until our Release store of FREE.
    unsafe {
        std::ptr::copy_nonoverlapping(data.as_ptr().cast::<u8>(), out.as_mut_ptr(), out.len());
    }
}

fn backoff(round: u32) {
    if round < 64 {
        for _ in 0..(1u32 << (round / 8).min(6)) {
            std::hint::spin_loop();
        }
    } else {
        std::thread::yield_now();
    }
}

fn remaining(deadline: Option<Instant>) -> Result<Option<Duration>, Fail> {
    match deadline {
        None => Ok(None),
        Some(d) => match d.checked_duration_since(Instant::now()) {
            Some(left) if !left.is_zero() => Ok(Some(left)),
            _ => Err(Fail::Timeout),
        },
    }
}

fn min_opt(a: Option<Duration>, b: Option<Duration>) -> Option<Duration> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    }
}

/// Sleeps on `epoch` while `blocked()` holds, at most `timeout`.
fn park(
    epoch: &AtomicU32,
    waiters: &AtomicU32,
    timeout: Option<Duration>,
    blocked: impl Fn() -> bool,
) {
    waiters.fetch_add(1, SeqCst);
    // SeqCst: with the fence in `wake`, either `blocked()` below sees the other side's update,
    // or the other side sees our waiter count and bumps the epoch (so the futex wait returns).
    let seen = epoch.load(SeqCst);
    fence(SeqCst);
    if blocked() {
        sys::futex_wait(epoch, seen, timeout);
    }
    waiters.fetch_sub(1, SeqCst);
}

/// Wakes the sleepers on `epoch`, with a syscall only if any are counted.
fn wake(epoch: &AtomicU32, waiters: &AtomicU32) {
    // SeqCst: pairs with the fence in `park` (see there).
    fence(SeqCst);
    if waiters.load(Relaxed) > 0 {
        epoch.fetch_add(1, SeqCst);
        sys::futex_wake(epoch, i32::MAX as u32);
    }
}

/// A ring on the heap, for tests of the algorithm alone (Miri, property tests).
#[cfg(test)]
pub(crate) struct HeapRing {
    ctl: Box<RingCtl>,
    words: Vec<AtomicU64>,
    cap: usize,
    max_len: usize,
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
        };
        ring.ring(1).init();
        ring
    }

    pub(crate) fn ring(&self, pid: u32) -> Ring<'_> {
        Ring::new(&self.ctl, &self.words, self.cap, self.max_len, pid, true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    fn get_vec(r: &Ring<'_>) -> TryGet<Vec<u8>> {
        r.try_get(&mut |data, len| {
            let mut v = vec![0; len];
            read_data(data, &mut v);
            v
        })
    }

    #[test]
    fn encoding_round_trips() {
        for pos in [0, 1, POS_MASK, POS_MASK + 5, u64::MAX] {
            let w = enc(pos, READING, 4_194_303);
            assert_eq!(state(w), READING);
            assert_eq!(pid(w), 4_194_303);
            assert_eq!(diff(w, pos), 0);
            assert_eq!(diff(w, pos.wrapping_sub(3)), 3);
            assert_eq!(diff(w, pos.wrapping_add(3)), -3);
        }
    }

    #[test]
    fn fifo_wraps_and_reports_full_and_empty() {
        let h = HeapRing::new(3, 13);
        let r = h.ring(1);
        assert_eq!(get_vec(&r), TryGet::Empty { stuck: None });
        for round in 0..10u8 {
            for i in 0..3u8 {
                let msg = vec![round ^ i; (i as usize * 6) % 14];
                assert_eq!(r.try_put(&msg), TryPut::Done);
            }
            assert_eq!(r.try_put(b"x"), TryPut::Full { stuck: None });
            assert_eq!(r.len(), 3);
            for i in 0..3u8 {
                assert_eq!(
                    get_vec(&r),
                    TryGet::Got(vec![round ^ i; (i as usize * 6) % 14])
                );
            }
            assert_eq!(get_vec(&r), TryGet::Empty { stuck: None });
        }
    }

    #[test]
    fn capacity_one_works() {
        let h = HeapRing::new(1, 8);
        let r = h.ring(1);
        for i in 0..5u8 {
            assert_eq!(r.try_put(&[i]), TryPut::Done);
            assert!(matches!(r.try_put(&[i]), TryPut::Full { .. }));
            assert_eq!(get_vec(&r), TryGet::Got(vec![i]));
        }
    }

    #[test]
    fn dead_claimers_are_reclaimed() {
        let h = HeapRing::new(2, 8);
        let dead = 4_000_000; // above any pid this test machine hands out
        let r = h.ring(1);
        // A producer that died after claiming slot 0.
        let w = enc(0, WRITING, dead);
        h.words[0].store(w, Relaxed);
        h.ctl.tail.0.store(1, Relaxed);
        assert_eq!(
            get_vec(&r),
            TryGet::Empty {
                stuck: Some((0, w))
            }
        );
        assert!(r.reclaim(0, w));
        assert_eq!(r.lost(), 1);
        assert_eq!(r.try_put(b"a"), TryPut::Done);
        assert_eq!(get_vec(&r), TryGet::Got(b"a".to_vec()));
        assert!(r.joined() || r.task_done().is_ok());
    }

    #[test]
    fn threads_lose_and_duplicate_nothing() {
        let h = HeapRing::new(4, 16);
        let per = if cfg!(miri) { 50 } else { 20_000 };
        let producers = 3u64;
        let seen = std::sync::Mutex::new(Vec::new());
        std::thread::scope(|s| {
            for p in 0..producers {
                let r = h.ring(10 + p as u32);
                s.spawn(move || {
                    for i in 0..per {
                        let msg = (p << 32 | i).to_ne_bytes();
                        r.put(&msg, None, 100).expect("put");
                    }
                });
            }
            for c in 0..2 {
                let r = h.ring(20 + c);
                let seen = &seen;
                s.spawn(move || {
                    let mut mine = Vec::new();
                    let mut read = |d: &[AtomicU64], len: usize| {
                        let mut b = [0u8; 8];
                        read_data(d, &mut b[..len]);
                        u64::from_ne_bytes(b)
                    };
                    while let Ok(v) = r.get(&mut read, None, 100) {
                        mine.push(v);
                    }
                    seen.lock().expect("lock").push(mine);
                });
            }
            // Close once everything is in; consumers drain and stop.
            s.spawn(|| {
                let r = h.ring(30);
                while r.ctl.tail.0.load(Relaxed) < producers * per {
                    std::thread::yield_now();
                }
                r.close();
            });
        });
        let seen = seen.into_inner().expect("lock");
        // Per consumer, each producer's messages arrive in order.
        for mine in &seen {
            for p in 0..producers {
                let idx: Vec<u64> = mine
                    .iter()
                    .filter(|v| *v >> 32 == p)
                    .map(|v| v & 0xffff_ffff)
                    .collect();
                assert!(idx.windows(2).all(|w| w[0] < w[1]));
            }
        }
        let mut all: Vec<u64> = seen.concat();
        all.sort_unstable();
        let want: Vec<u64> = (0..producers)
            .flat_map(|p| (0..per).map(move |i| p << 32 | i))
            .collect();
        assert_eq!(all, want);
    }

    #[test]
    fn matches_a_vecdeque_model() {
        // A deterministic op sequence (proptest drives a wider one in tests/).
        let h = HeapRing::new(5, 24);
        let r = h.ring(1);
        let mut model = VecDeque::new();
        let mut x = 0x9e37_79b9_u32;
        for _ in 0..if cfg!(miri) { 200 } else { 20_000 } {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            if x % 3 != 0 {
                let msg = vec![x as u8; (x as usize >> 8) % 25];
                match r.try_put(&msg) {
                    TryPut::Done => model.push_back(msg),
                    TryPut::Full { .. } => assert_eq!(model.len(), 5),
                }
            } else {
                match get_vec(&r) {
                    TryGet::Got(m) => assert_eq!(Some(m), model.pop_front()),
                    TryGet::Empty { .. } => assert!(model.is_empty()),
                }
            }
            assert_eq!(r.len(), model.len());
        }
    }
}
