//! One role of the MPMC ring (its producers, or its consumers) handed to a single thread while
//! that thread is the only one using it: a biased lock in shared memory, revoked with an
//! asymmetric fence. `sync::owner` is the in-process one, for a pipe's threads; both use the
//! vocabulary of DESIGN.md's "Biased locks" (seat, holder, enter and leave, grant, revoke).
//!
//! The shared protocol claims each slot with a compare-and-swap and moves the index on with
//! another, and on x86_64 every `lock`-prefixed instruction waits for the store buffer to drain;
//! a consumer also writes every slot it takes, so each slot's cache line crosses between the
//! cores in full twice a lap. But when only one thread puts, nothing can race its claim. So a
//! thread that has put [`GRANT_AFTER`] times in a row with no other producer in between is
//! granted the producers' role (the same for consumers), and while it is the holder:
//! - a producer writes the message and publishes it (`FULL`) with plain stores, and moves the
//!   tail on after that, without a claim: if it dies first, the ring shows nothing of that put;
//! - a consumer writes nothing into the slot: it copies the message out and then moves the head
//!   on, and a producer takes a previous lap's `FULL` slot behind the head as free. Its seat
//!   says which message it is taking, so that if it dies doing so, the next consumer skips that
//!   one message and counts it lost (the `on_dead_holder` repair): at most once, as in the
//!   shared protocol.
//!
//! Every state the ring passes through is one the shared protocol reads correctly, so a role
//! can change hands between any two operations, and a holder that dies leaves nothing that
//! wedges the others.
//!
//! The handshake is Dekker's, with the fences split unevenly (`wait::fence`). Every thread has
//! a [`Seat`] in the segment with an `inside` flag that only it writes. A thread enters an
//! operation by raising its flag, running the light fence (a compiler fence), and reading the
//! role's `bias` word:
//! - `HELD` by its own seat: it is the holder and goes ahead with plain stores;
//! - `UNBIASED`: it runs the shared protocol;
//! - held by another seat, or being granted to one: it revokes that first.
//!
//! A revoker marks the word `REVOKING`, runs the heavy fence (`membarrier`), and waits until the
//! holder's flag is down (or the holder is dead); the fences make sure that the holder either
//! saw the mark or had its flag up where the revoker looks. A grant is the mirror image: the
//! candidate marks the word `GRANTING`, runs the heavy fence, and takes the role only if no other
//! thread is inside a shared operation. So a change of hands costs one `membarrier`, and a
//! holder pays two plain stores of its own flag per operation.
//!
//! What it costs in progress: a holder that is descheduled or stopped (`SIGSTOP`) in the middle
//! of an operation holds up the other threads of its role until it runs again, where the shared
//! protocol would let them pass it; one that dies there is found dead and passed. A `try_`
//! operation spins for a holder to leave for tens of microseconds (an operation takes well
//! under one) and then says `Full` or `Empty`, as CPython's `get_nowait` says `Empty` while
//! another process holds the queue's read lock.
//!
//! A flag per thread rather than per role: a thread still reading itself as the holder (a stale
//! read) would otherwise lower a flag that the new holder had raised (see `sync::owner`).
//! Threads beyond [`SEATS`] count themselves in `seatless` with an atomic add, and while any is
//! inside, nothing is granted (one killed inside leaves the count up: that role then always
//! runs the shared protocol, which is slower, not wrong). A seat belongs to its thread until the
//! thread is dead; then the next thread without a seat may take it over (never while the bias
//! names it).
//!
//! Where a process cannot use `membarrier` (`fence::asymmetric` is false) its heavy fence does
//! not reach the light fences of other processes, so it grants nothing and marks the ring
//! `no_bias`, and a revocation it must still make waits [`UNFENCED_GRACE`] before it trusts a
//! holder's lowered flag: a store sits in a store buffer for nanoseconds, and a processor that
//! is interrupted or descheduled drains its buffer first.

use std::time::Duration;

use super::Padded;
use crate::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed, Release, SeqCst};
use crate::sync::atomic::{AtomicU32, AtomicU64};
use crate::wait::{Backoff, Deadline, fence};

/// Threads per role that can be its holder; more run the shared protocol only.
#[cfg(not(loom))]
pub(crate) const SEATS: usize = 16;
#[cfg(loom)]
pub(crate) const SEATS: usize = 2;

/// Operations in a row, with no other thread's in between, after which a thread asks to be
/// granted the role. A grant and its later revocation cost a `membarrier` each (microseconds), so a thread
/// must first show that it works alone.
#[cfg(not(any(test, loom)))]
const GRANT_AFTER: u32 = 64;
/// Small in tests, so that the tests hand roles over often (and in the models, after a thread's
/// second operation).
#[cfg(all(test, not(loom)))]
const GRANT_AFTER: u32 = 2;
#[cfg(loom)]
const GRANT_AFTER: u32 = 1;

/// Rounds of spinning (tens of microseconds in all, with no yield or sleep) for which a caller
/// that may not wait watches for a holder to leave.
const BRIEF: u32 = 64;

/// The longest sleep between looks at a holder's flag (see [`Backoff::pause`]). A holder lowers
/// its flag before it waits for room or messages, so it stays inside for long only if it is
/// descheduled, stopped, or dead.
const LONGEST_PAUSE: Duration = Duration::from_millis(1);

/// How long a revoker that could not run `membarrier` waits before it believes a lowered flag.
const UNFENCED_GRACE: Duration = Duration::from_millis(10);

/// The `bias` word: the state in the high half, the seat in the low.
const UNBIASED: u64 = 0;
const GRANTING: u64 = 1 << 32;
pub(super) const HELD: u64 = 2 << 32;
const REVOKING: u64 = 3 << 32;
const STATE: u64 = 3 << 32;

const SEAT: u64 = 0xffff;

/// The seat a `bias` word names, or `None` if it is not a word this protocol writes (a seat past
/// the last, or stray bits): another process scribbled on it. (`UNBIASED` names seat 0; callers
/// look at the state first.)
fn seat_of(bias: u64) -> Option<usize> {
    let seat = (bias & SEAT) as usize;
    (bias & !(STATE | SEAT) == 0 && seat < SEATS).then_some(seat)
}

/// A seat's `key` while a thread is taking the seat over (no pid is `u32::MAX`).
pub(super) const CLAIMING: u64 = u64::MAX;

/// What the role's `last` word holds after an operation by a thread without a seat.
const SEATLESS: u32 = u32::MAX;

/// One thread's place at a role.
#[repr(C)]
#[derive(Default)]
pub(crate) struct Seat {
    /// Whose: `pid << 32 | tid`, 0 for nobody, `CLAIMING` while a thread takes the seat over
    /// (see `my_seat`); never changed while the `bias` word names the seat.
    pub(super) key: AtomicU64,
    /// The owner's process start time (`sys::process_start_time`), so that a reused pid does
    /// not pass for the owner.
    start: AtomicU64,
    /// 1 while the owner is inside an operation on this role. Written by the owner only.
    pub(super) inside: AtomicU32,
    /// The owner's operations in a row with no other thread's in between. Owner only.
    streak: AtomicU32,
    /// A consumer holding its role: the position it is taking, plus one (see `Ring::get_in`).
    /// Owner only.
    pub(super) taking: AtomicU64,
    /// A producer: the head it last read (see `Ring::consumed`). Owner only.
    pub(super) seen: AtomicU64,
}

/// The shared state of one role.
#[repr(C)]
#[derive(Default)]
pub(crate) struct RoleBias {
    /// `UNBIASED`, or `GRANTING`, `HELD` or `REVOKING` with a seat. Every compare-and-swap on it
    /// is AcqRel (except the grant's first, SeqCst): Release, so that what a thread did before
    /// it (seeing the old holder's flag down, its own operations) happens-before the work of
    /// whoever reads the new word with Acquire (`enter_from`, `revoke_if_dead`, `my_seat`);
    /// Acquire, for the swap before it.
    pub(super) bias: Padded<AtomicU64>,
    /// Threads without a seat inside an operation.
    pub(super) seatless: Padded<AtomicU32>,
    pub(super) seats: [Padded<Seat>; SEATS],
}

/// How [`RoleBias::wait_out`] ended.
enum Waited {
    /// The `bias` word changed: someone else finished the job.
    Changed,
    /// Whoever it waited for is out (or dead).
    Out,
    /// Still inside when the caller's deadline passed.
    TimedOut,
}

/// A thread's part in one operation on a role; leaving is dropping it.
pub(crate) enum Entry<'a> {
    /// The thread is the role's holder: plain stores.
    Holder(&'a Seat),
    /// The shared protocol; `None` for a thread without a seat.
    Shared(&'a RoleBias, Option<(usize, &'a Seat)>),
}

impl Drop for Entry<'_> {
    #[inline(always)]
    fn drop(&mut self) {
        match *self {
            // Release: pairs with the Acquire loads of the flag by a revoker or a granter, so
            // that everything this operation did happens-before what they do next.
            Entry::Holder(seat) | Entry::Shared(_, Some((_, seat))) => {
                seat.inside.store(0, Release)
            }
            // Release: as above, with the granter's load of the count.
            Entry::Shared(role, None) => {
                role.seatless.0.fetch_sub(1, Release);
            }
        }
    }
}

impl<'a> Entry<'a> {
    /// Whether the thread entered as the role's holder.
    #[inline(always)]
    pub(crate) fn is_holder(&self) -> bool {
        matches!(self, Entry::Holder(_))
    }

    /// This thread's seat, if it has one.
    #[inline(always)]
    pub(crate) fn seat(&self) -> Option<&'a Seat> {
        match *self {
            Entry::Holder(seat) | Entry::Shared(_, Some((_, seat))) => Some(seat),
            Entry::Shared(_, None) => None,
        }
    }

    /// Notes an operation that went through (`last` is the role's word for whose operation was
    /// last); after [`GRANT_AFTER`] of this thread's in a row, asks to be granted the role.
    #[inline]
    pub(crate) fn done(&self, last: &AtomicU32, may_grant: bool) {
        match *self {
            Entry::Holder(_) => {}
            Entry::Shared(role, Some((s, seat))) => {
                // Plus one: a fresh role's `last` (0) names no one.
                let me = s as u32 + 1;
                // Relaxed: a hint; a wrong guess costs one grant that another thread revokes.
                if last.load(Relaxed) != me {
                    last.store(me, Relaxed);
                    seat.streak.store(0, Relaxed);
                    return;
                }
                let streak = seat.streak.load(Relaxed).saturating_add(1);
                if streak < GRANT_AFTER {
                    seat.streak.store(streak, Relaxed);
                    return;
                }
                seat.streak.store(0, Relaxed);
                if may_grant {
                    role.grant(s);
                }
            }
            Entry::Shared(_, None) => {
                if last.load(Relaxed) != SEATLESS {
                    last.store(SEATLESS, Relaxed);
                }
            }
        }
    }
}

impl RoleBias {
    /// The holder's seat, if the role has a holder.
    #[cfg(test)]
    pub(super) fn holder(&self) -> Option<usize> {
        let bias = self.bias.0.load(Relaxed);
        seat_of(bias).filter(|_| bias & STATE == HELD)
    }

    /// Enters an operation: finds this thread's seat, and takes whatever way in the `bias`
    /// word allows, revoking another thread's hold first if need be (and calling
    /// `on_dead_holder` with the seat of a holder that died inside an operation, to repair what
    /// it left half done). `None` if that thread is still inside when `deadline` passes.
    #[inline(always)]
    pub(crate) fn enter(
        &self,
        deadline: Deadline,
        on_dead_holder: impl Fn(&Seat),
    ) -> Option<Entry<'_>> {
        // The common case inline (a value handed back through memory from an outlined call
        // stalled every operation on store forwarding): a remembered seat, and a role that is
        // ours or no one's.
        if let Some(s) = cache::get(self)
            && self.seats[s].0.key.load(Relaxed) == my_key()
            && let Ok(entry) = self.enter_from(s)
        {
            return Some(entry);
        }
        self.enter_slow(deadline, &on_dead_holder)
    }

    /// Enters from seat `s`: raises its flag and reads the `bias` word; the way in, or (flag
    /// lowered again) the word that bars it.
    #[inline(always)]
    fn enter_from(&self, s: usize) -> Result<Entry<'_>, u64> {
        let seat = &self.seats[s].0;
        seat.inside.store(1, Relaxed);
        // The light half of the handshake with `revoke` and `grant`: either they see the flag
        // up, or the load below sees their mark.
        fence::light();
        // Acquire: pairs with the AcqRel compare-and-swap that granted the role or ended a
        // revocation, which happened after the previous users' flags were seen down (Acquire
        // after their Release): their operations happen-before ours.
        let bias = self.bias.0.load(Acquire);
        if bias == HELD | s as u64 {
            return Ok(Entry::Holder(seat));
        }
        if bias == UNBIASED {
            return Ok(Entry::Shared(self, Some((s, seat))));
        }
        // Release: as in `Entry::drop` (nothing was done, but a revoker may be waiting on it).
        seat.inside.store(0, Release);
        Err(bias)
    }

    #[inline(never)]
    fn enter_slow(&self, deadline: Deadline, on_dead_holder: &impl Fn(&Seat)) -> Option<Entry<'_>> {
        let mine = self.my_seat();
        loop {
            let bias = match mine {
                Some(s) => match self.enter_from(s) {
                    Ok(entry) => return Some(entry),
                    Err(bias) if bias == REVOKING | s as u64 => {
                        // Our own hold, being revoked: we are not inside it, so end it here.
                        let _ = self
                            .bias
                            .0
                            .compare_exchange(bias, UNBIASED, AcqRel, Relaxed);
                        continue;
                    }
                    Err(bias) => bias,
                },
                None => {
                    // SeqCst, both: Dekker's handshake with `grant` without the split fences.
                    self.seatless.0.fetch_add(1, SeqCst);
                    let bias = self.bias.0.load(SeqCst);
                    if bias == UNBIASED {
                        return Some(Entry::Shared(self, None));
                    }
                    // Release: as in `Entry::drop`.
                    self.seatless.0.fetch_sub(1, Release);
                    bias
                }
            };
            if !self.revoke(bias, deadline, on_dead_holder) {
                return None;
            }
        }
    }

    /// Takes the role away from the seat named in `bias`: waits for its owner to leave (or to
    /// be found dead). `false` if it is still inside when `deadline` passes; the mark stays,
    /// and the next caller finishes the job. A word that names no seat is reset instead.
    fn revoke(&self, bias: u64, deadline: Deadline, on_dead_holder: &impl Fn(&Seat)) -> bool {
        let Some(s) = seat_of(bias) else {
            return self.reset(bias, deadline, on_dead_holder);
        };
        let Some(marked) = self.mark(bias) else {
            return true;
        };
        // The heavy half: from here on, the holder either sees the mark or has its flag up.
        if !fence::heavy() {
            std::thread::sleep(UNFENCED_GRACE);
        }
        let seat = &self.seats[s].0;
        let mut died = false;
        let waited = self.wait_out(marked, deadline, |ask| {
            // Acquire: pairs with the Release store that lowered the flag.
            let left = seat.inside.load(Acquire) == 0;
            died = !left && ask && !seat.owner_alive();
            left || died
        });
        match waited {
            Waited::Out => {
                self.finish(marked, died.then_some(seat), on_dead_holder);
                true
            }
            Waited::Changed => true,
            Waited::TimedOut => false,
        }
    }

    /// The wait of a revocation or a reset: while the `bias` word still reads `word`, calls
    /// `out(ask)` until it says that whoever it waits for is out, or `deadline` passes.
    /// `ask` says whether to ask `/proc` whether an owner lives this time: that costs a read,
    /// so it is asked now and then, and before giving up. Even a caller that may not wait rides
    /// out one operation of a holder's ([`BRIEF`] rounds of spinning), rather than call a queue
    /// full or empty because another thread is putting or getting.
    fn wait_out(&self, word: u64, deadline: Deadline, mut out: impl FnMut(bool) -> bool) -> Waited {
        let mut backoff = Backoff::new();
        loop {
            if self.bias.0.load(Relaxed) != word {
                return Waited::Changed;
            }
            let round = backoff.steps();
            let passed = match deadline {
                Deadline::Now => round >= BRIEF,
                _ => deadline.passed(),
            };
            if out(passed || round % 64 == 63) {
                return Waited::Out;
            }
            if passed {
                return Waited::TimedOut;
            }
            match deadline {
                Deadline::Now => backoff.spin(),
                _ => backoff.pause(LONGEST_PAUSE),
            }
        }
    }

    /// The first step of a revocation: the `REVOKING` word to wait on, or `None` if there is
    /// nothing to wait for (a grant not yet made is called off at once; a word that changed
    /// meanwhile is to be looked at again).
    fn mark(&self, bias: u64) -> Option<u64> {
        let marked = REVOKING | (bias & !STATE);
        match bias & STATE {
            // The candidate checks the word before it takes the role.
            GRANTING => {
                let _ = self
                    .bias
                    .0
                    .compare_exchange(bias, UNBIASED, AcqRel, Relaxed);
                None
            }
            HELD => self
                .bias
                .0
                .compare_exchange(bias, marked, AcqRel, Relaxed)
                .ok()
                .map(|_| marked),
            _ => Some(marked),
        }
    }

    /// Ends a revocation whose holder left, or died inside (`dead`, its seat): then whatever it
    /// left half done is the ring's to repair (`on_dead_holder`) before the role is free.
    fn finish(&self, marked: u64, dead: Option<&Seat>, on_dead_holder: &impl Fn(&Seat)) {
        if let Some(seat) = dead {
            on_dead_holder(seat);
        }
        let _ = self
            .bias
            .0
            .compare_exchange(marked, UNBIASED, AcqRel, Relaxed);
    }

    /// If the role's holder died inside an operation, revokes its hold and calls
    /// `on_dead_holder` with its seat, without waiting for anyone (a `join` that must not wait
    /// for the next get to find it). Whether it did.
    pub(crate) fn revoke_if_dead(&self, on_dead_holder: impl Fn(&Seat)) -> bool {
        // Acquire: as in `enter_from`.
        let bias = self.bias.0.load(Acquire);
        if !matches!(bias & STATE, HELD | REVOKING) {
            return false;
        }
        let Some(s) = seat_of(bias) else {
            return self.reset(bias, Deadline::Now, &on_dead_holder);
        };
        let seat = &self.seats[s].0;
        // Acquire: pairs with the Release store that lowered the flag.
        if seat.inside.load(Acquire) == 0 || seat.owner_alive() {
            return false;
        }
        // Dead: it runs nothing more, so no fence and no wait are needed.
        let Some(marked) = self.mark(bias) else {
            return false;
        };
        self.finish(marked, Some(seat), &on_dead_holder);
        true
    }

    /// Puts `UNBIASED` back in place of a `bias` word that names no seat (another process
    /// scribbled on it). No thread enters as the holder under such a word (`enter_from`
    /// compares the whole word), but one that entered as the holder under the word it replaced
    /// may still be inside; which one is not known, so this waits, as a revocation waits for
    /// the holder, until every seat is out (or its owner dead, its work repaired). Whether it
    /// did before `deadline` passed; if not, the word stays and the next caller goes on.
    #[cold]
    fn reset(&self, bias: u64, deadline: Deadline, on_dead_holder: &impl Fn(&Seat)) -> bool {
        // The heavy half, as in `revoke`: a thread inside has its flag up where we look.
        if !fence::heavy() {
            std::thread::sleep(UNFENCED_GRACE);
        }
        let waited = self.wait_out(bias, deadline, |ask| {
            self.seats.iter().all(|t| {
                let t = &t.0;
                // Acquire: pairs with the Release store that lowered the flag.
                t.inside.load(Acquire) == 0
                    || (ask && !t.owner_alive() && {
                        on_dead_holder(t);
                        true
                    })
            })
        });
        match waited {
            Waited::Out => {
                let _ = self
                    .bias
                    .0
                    .compare_exchange(bias, UNBIASED, AcqRel, Relaxed);
                true
            }
            Waited::Changed => true,
            Waited::TimedOut => false,
        }
    }

    /// Grants the role to seat `s`, if no other thread is inside a shared operation on it.
    fn grant(&self, s: usize) {
        if self.seatless.0.load(Relaxed) != 0
            || self
                .bias
                .0
                // SeqCst: the store half of the handshake with a seatless `enter`, whose add and
                // load are SeqCst too (the seated ones meet the heavy fence below).
                .compare_exchange(UNBIASED, GRANTING | s as u64, SeqCst, Relaxed)
                .is_err()
        {
            return;
        }
        // The heavy half of the handshake in `enter`: a thread that raised its flag before this
        // is seen below; one that raises it after sees the mark. A heavy fence that did not
        // reach every process proves nothing, so then nothing is granted.
        let clear = fence::heavy()
            // Acquire, both: pair with the Release stores that ended the other operations.
            && self.seatless.0.load(Acquire) == 0
            && self
                .seats
                .iter()
                .enumerate()
                .all(|(i, t)| i == s || t.0.inside.load(Acquire) == 0 || t.0.retire_if_dead());
        let to = if clear { HELD | s as u64 } else { UNBIASED };
        let _ = self
            .bias
            .0
            .compare_exchange(GRANTING | s as u64, to, AcqRel, Relaxed);
    }

    /// This thread's seat at this role, taking a free one (or a dead thread's) if it has none.
    fn my_seat(&self) -> Option<usize> {
        let key = my_key();
        let cached = cache::get(self);
        if let Some(s) = cached
            && self.seats[s].0.key.load(Relaxed) == key
        {
            return Some(s);
        }
        if let Some(s) = self.seats.iter().position(|t| t.0.key.load(Relaxed) == key) {
            cache::put(self, s);
            return Some(s);
        }
        if !cache::may_look(self) {
            return None;
        }
        let start = my_start();
        // Acquire: a seat named by the bias word is not to be taken, even if its owner died:
        // a revoker may be reading it.
        let bias = self.bias.0.load(Acquire);
        for (s, t) in self.seats.iter().enumerate() {
            let t = &t.0;
            // Acquire: pairs with the Release store of a key below, as in `owner_alive`.
            let owner = t.key.load(Acquire);
            let named = bias != UNBIASED && seat_of(bias) == Some(s);
            // The seat is ours once the compare-and-swap puts `CLAIMING` in it; until the key
            // goes in, it counts as a live thread's. (Putting our key in at once would show
            // our key beside the dead owner's start time and raised flag: another thread would
            // take us for dead and free the seat under us.)
            if (owner == 0 || (!named && !t.owner_alive()))
                // Acquire: the dead owner's last stores to the seat are behind us.
                && t.key
                    .compare_exchange(owner, CLAIMING, Acquire, Relaxed)
                    .is_ok()
            {
                t.start.store(start, Relaxed);
                t.inside.store(0, Relaxed);
                t.streak.store(0, Relaxed);
                t.taking.store(0, Relaxed);
                t.seen.store(0, Relaxed);
                // Release: the fields above are set before anyone reads them under our key
                // (pairs with the Acquire loads of the key in `owner_alive`,
                // `retire_if_dead` and here).
                t.key.store(key, Release);
                cache::put(self, s);
                return Some(s);
            }
        }
        cache::none(self);
        None
    }
}

impl Seat {
    /// Frees the seat if its owner is dead (it died inside an operation, and its raised flag
    /// would otherwise cost every later grant a `/proc` read). Only for a seat the `bias` word
    /// does not name. Whether it was dead.
    fn retire_if_dead(&self) -> bool {
        // Acquire: pairs with the Release store of the key in `my_seat`, so `start` is the
        // owner's.
        let key = self.key.load(Acquire);
        if key != 0 && (key == CLAIMING || key_alive(key, self.start.load(Relaxed))) {
            return false;
        }
        let _ = self.key.compare_exchange(key, 0, Relaxed, Relaxed);
        true
    }

    /// Whether the thread that owns this seat still runs (a free seat's owner does not; one
    /// being taken over counts as alive).
    fn owner_alive(&self) -> bool {
        // Acquire: as in `retire_if_dead`.
        let key = self.key.load(Acquire);
        key != 0 && (key == CLAIMING || key_alive(key, self.start.load(Relaxed)))
    }
}

/// This thread's seat key: `pid << 32 | tid`.
#[cfg(not(any(loom, miri)))]
#[inline(always)]
pub(super) fn my_key() -> u64 {
    let (pid, tid) = crate::sys::thread_ids();
    u64::from(pid) << 32 | u64::from(tid)
}

#[cfg(not(any(loom, miri)))]
fn my_start() -> u64 {
    crate::sys::process_start_time(crate::sys::thread_ids().0)
}

#[cfg(not(any(loom, miri)))]
fn key_alive(key: u64, start: u64) -> bool {
    crate::sys::thread_alive((key >> 32) as u32, key as u32, start)
}

/// A seat key that no thread has: the tests write it into a seat to stage a dead owner. Its
/// pid is `MODEL_DEAD_PID`, which names no process; under loom and Miri, keys from here up
/// count as dead.
#[cfg(any(test, loom, miri))]
pub(crate) const MODEL_DEAD_KEY: u64 = (super::mpmc::MODEL_DEAD_PID as u64) << 32 | 1;

/// Models have no thread ids to read: each thread numbers itself.
#[cfg(any(loom, miri))]
pub(super) fn my_key() -> u64 {
    use std::sync::atomic::{AtomicU64 as StdU64, Ordering::Relaxed as StdRelaxed};
    static NEXT: StdU64 = StdU64::new(1);
    #[cfg(loom)]
    loom::thread_local! { static KEY: std::cell::Cell<u64> = std::cell::Cell::new(0); }
    #[cfg(not(loom))]
    std::thread_local! { static KEY: std::cell::Cell<u64> = const { std::cell::Cell::new(0) }; }
    KEY.with(|k| {
        if k.get() == 0 {
            k.set(NEXT.fetch_add(1, StdRelaxed));
        }
        k.get()
    })
}

#[cfg(any(loom, miri))]
fn my_start() -> u64 {
    0
}

#[cfg(any(loom, miri))]
fn key_alive(key: u64, _start: u64) -> bool {
    key < MODEL_DEAD_KEY
}

/// The seats this thread found lately, so that an operation costs one load to find its seat.
#[cfg(not(loom))]
mod cache {
    use std::cell::Cell;

    use super::RoleBias;

    /// Roles remembered per thread (a thread that puts to one queue and gets from another
    /// uses two).
    const WAYS: usize = 4;
    /// After finding every seat taken, a thread looks again only after this many operations
    /// (looking means reading `/proc` for every owner).
    const RETRY: u32 = 1024;

    std::thread_local! {
        /// `(role address, seat or NONE, operations left before looking again)`, per way.
        static SEEN: [Cell<(usize, u32, u32)>; WAYS] = const {
            [const { Cell::new((0, 0, 0)) }; WAYS]
        };
        static NEXT: Cell<usize> = const { Cell::new(0) };
    }

    const NONE: u32 = u32::MAX;

    fn addr(role: &RoleBias) -> usize {
        std::ptr::from_ref(role) as usize
    }

    /// The remembered seat (unchecked: the caller compares its key).
    #[inline(always)]
    pub(super) fn get(role: &RoleBias) -> Option<usize> {
        let a = addr(role);
        SEEN.with(|ways| {
            ways.iter().find_map(|w| {
                let (at, seat, _) = w.get();
                (at == a && seat != NONE).then_some(seat as usize)
            })
        })
    }

    fn set(role: &RoleBias, seat: u32, wait: u32) {
        let a = addr(role);
        SEEN.with(|ways| {
            let i = ways.iter().position(|w| w.get().0 == a).unwrap_or_else(|| {
                NEXT.with(|n| {
                    let i = n.get();
                    n.set((i + 1) % WAYS);
                    i
                })
            });
            ways[i].set((a, seat, wait));
        });
    }

    pub(super) fn put(role: &RoleBias, seat: usize) {
        set(role, seat as u32, 0);
    }

    pub(super) fn none(role: &RoleBias) {
        set(role, NONE, RETRY);
    }

    /// Whether to look for a free seat now (not too soon after finding none).
    pub(super) fn may_look(role: &RoleBias) -> bool {
        let a = addr(role);
        SEEN.with(|ways| {
            for w in ways {
                let (at, seat, wait) = w.get();
                if at == a && seat == NONE && wait > 0 {
                    w.set((at, seat, wait - 1));
                    return false;
                }
            }
            true
        })
    }
}

/// Under loom every operation scans the seats (there are two).
#[cfg(loom)]
mod cache {
    use super::RoleBias;

    pub(super) fn get(_: &RoleBias) -> Option<usize> {
        None
    }
    pub(super) fn put(_: &RoleBias, _: usize) {}
    pub(super) fn none(_: &RoleBias) {}
    pub(super) fn may_look(_: &RoleBias) -> bool {
        true
    }
}

/// The shared structures of a role's bias, for the pinned layout (`src/layout.rs`).
#[cfg(all(test, not(loom)))]
pub(super) fn shared_layout() -> Vec<String> {
    vec![
        crate::layout::pin!(RoleBias {
            bias,
            seatless,
            seats
        }),
        crate::layout::pin!(Seat {
            key,
            start,
            inside,
            streak,
            taking,
            seen
        }),
        format!(
            "constants: {SEATS} seats; UNBIASED {UNBIASED:#x} GRANTING {GRANTING:#x} HELD {HELD:#x} \
             REVOKING {REVOKING:#x} | seat; CLAIMING {CLAIMING:#x}; SEATLESS {SEATLESS:#x}"
        ),
    ]
}
