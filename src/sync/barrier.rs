//! [`Barrier`]: Python's `Barrier` in a named segment — `parties` processes (or threads) wait
//! until all have arrived, then go on together; a party that dies breaks it for the others.
//!
//! The state is one word, guarded by the segment's robust mutex (the state lock, held for a few
//! stores, never while sleeping): the generation, how many have arrived in it, and a broken
//! flag. The last to arrive runs the action (outside the lock), then ends the generation:
//! `history` keeps one bit per generation (the last 64), set when it ended broken or reset
//! rather than released, so a waiter that wakes after its generation ended learns how, even
//! if later generations have come and gone. Each write that ends a generation or breaks the
//! barrier stores its details first and the state word last, so a process killed inside the
//! lock leaves nothing half-made that matters; the next holder (told by the robust mutex) only
//! wakes everyone.
//!
//! Every handle holds an attachment record; a process that has waited on the barrier is marked
//! a party in the record's data word. The kernel wakes a sleeper when a recorded process dies
//! (see `records`); whoever finds a dead party (holding the state lock) breaks the barrier with
//! [`BreakCause::PartyDied`], naming it, and frees its record. A handle that claims a dead
//! party's record (under the state lock too) breaks it the same way first.

use std::panic::AssertUnwindSafe;
use std::time::Instant;

use crate::error::{BarrierError, BreakCause};
use crate::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use crate::sync::park::{EnterError, Entered, Inside, StateLock};
use crate::sync::records::{Member, Records, Woke};
use crate::wait::Deadline;
use crate::wait::futex::futex_wake;

/// The largest number of parties.
pub const BARRIER_MAX_PARTIES: u32 = 1 << 30;

/// The words of a barrier, as stored after its lock area.
#[repr(C)]
#[derive(Debug, Default)]
pub(crate) struct BarrierCtl {
    /// The futex word waiters sleep on: bumped whenever a generation ends or the barrier breaks.
    pub(crate) seq: AtomicU32,
    /// The records' eventcount: bumped when a recorded process dies or attaches (`records`).
    pub(crate) deaths: AtomicU32,
    /// Generation (high half), broken flag (bit 31), arrivals in this generation (bits 0..31).
    pub(crate) state: AtomicU64,
    /// Bit `g % 64`: generation `g` ended broken or reset rather than released.
    pub(crate) history: AtomicU64,
    /// Why the barrier broke: a cause code (low half) and a pid (high half).
    pub(crate) cause: AtomicU64,
}

// SAFETY: `BarrierCtl` is atomics only: every bit pattern is valid and all mutation is atomic.
// (Not under loom, whose atomics are handles into the model rather than words in memory.)
#[cfg(not(loom))]
unsafe impl crate::segment::Shared for BarrierCtl {}

/// Bytes of the barrier's words, padded to a cache line before the records.
pub(crate) const CTL_SIZE: usize = 64;
#[cfg(not(loom))]
const _: () = assert!(std::mem::size_of::<BarrierCtl>() <= CTL_SIZE);

const BROKEN: u64 = 1 << 31;
const COUNT: u64 = BROKEN - 1;

/// A record's data bit: this process has waited on the barrier.
pub(crate) const PARTY: u64 = 1;

#[inline]
fn gen_of(st: u64) -> u32 {
    (st >> 32) as u32
}

#[inline]
fn count_of(st: u64) -> u32 {
    (st & COUNT) as u32
}

#[inline]
fn state(generation: u32, count: u32) -> u64 {
    (u64::from(generation) << 32) | (u64::from(count) & COUNT)
}

#[inline]
fn bit(generation: u32) -> u64 {
    1 << (generation % 64)
}

fn encode(cause: BreakCause) -> u64 {
    let (code, pid) = match cause {
        BreakCause::Aborted => (1, 0),
        BreakCause::Reset => (2, 0),
        BreakCause::Timeout => (3, 0),
        BreakCause::ActionPanicked => (4, 0),
        BreakCause::PartyDied { pid } => (5, pid),
    };
    code | (u64::from(pid) << 32)
}

fn decode(w: u64) -> BreakCause {
    match w as u32 {
        1 => BreakCause::Aborted,
        3 => BreakCause::Timeout,
        4 => BreakCause::ActionPanicked,
        5 => BreakCause::PartyDied {
            pid: (w >> 32) as u32,
        },
        // 2, or a word someone scribbled on.
        _ => BreakCause::Reset,
    }
}

fn enter_error(e: EnterError) -> BarrierError {
    match e {
        EnterError::Busy => unreachable!("an unbounded wait never gives up"),
        EnterError::Os(e) => BarrierError::Os(e),
    }
}

/// The barrier algorithm over its words, its state lock and its records.
pub(crate) struct BarrierCore<'a, L: StateLock> {
    pub(crate) ctl: &'a BarrierCtl,
    pub(crate) lock: &'a L,
    pub(crate) records: Records<'a>,
    pub(crate) parties: u32,
}

impl<'a, L: StateLock> BarrierCore<'a, L> {
    /// Enters the state lock. A holder that died inside left no half-made state that matters
    /// (see the module docs), but may have ended a generation without waking anyone.
    pub(crate) fn enter(&self, until: Deadline) -> Result<Inside<'a, L>, EnterError> {
        let (inside, how) = Inside::enter(self.lock, until)?;
        if how == Entered::Repair {
            self.bump();
        }
        Ok(inside)
    }

    /// Tells every sleeper that something changed.
    fn bump(&self) {
        self.ctl.seq.fetch_add(1, Relaxed);
        futex_wake(&self.ctl.seq, i32::MAX as u32);
    }

    /// Breaks the barrier for `cause`, unless it is broken already. State lock held; the lock
    /// orders these words for every other holder, so Relaxed suffices.
    fn break_with(&self, cause: BreakCause) {
        let st = self.ctl.state.load(Relaxed);
        if st & BROKEN != 0 {
            return;
        }
        self.ctl.cause.store(encode(cause), Relaxed);
        self.ctl.history.fetch_or(bit(gen_of(st)), Relaxed);
        self.ctl.state.store(st | BROKEN, Relaxed);
        self.bump();
    }

    /// How generation `g` ended, if it has: `Some(Ok)` released, `Some(Err)` broken or reset.
    /// State lock held.
    fn outcome(&self, g: u32) -> Option<Result<(), BarrierError>> {
        let st = self.ctl.state.load(Relaxed);
        let broken = || BarrierError::Broken(decode(self.ctl.cause.load(Relaxed)));
        if gen_of(st) == g {
            return (st & BROKEN != 0).then(|| Err(broken()));
        }
        // Beyond the 64 generations of history, it counts as released.
        let ago = gen_of(st).wrapping_sub(g);
        if ago <= 64 && self.ctl.history.load(Relaxed) & bit(g) != 0 {
            Some(Err(broken()))
        } else {
            Some(Ok(()))
        }
    }

    /// Waits until `parties` have arrived (running `action` in the last), or the barrier
    /// breaks, or `deadline` passes (which breaks it); the arrival index.
    pub(crate) fn wait(
        &self,
        me: Member,
        deadline: Option<Instant>,
        action: Option<&(dyn Fn() + Send + Sync)>,
    ) -> Result<u32, BarrierError> {
        // The state lock is held for a few stores at a time: wait for it whatever the deadline,
        // as Python waits for the condition's lock, so that a party that times out can break
        // the barrier rather than leave the others waiting for it.
        let mut inside = self.enter(Deadline::Never).map_err(enter_error)?;
        if let Some(d) = self.records.data(me.index) {
            d.fetch_or(PARTY, Relaxed);
        }
        // Wait for room: a generation whose action runs is full until it ends.
        let st = loop {
            let st = self.ctl.state.load(Relaxed);
            if st & BROKEN != 0 {
                return Err(BarrierError::Broken(decode(self.ctl.cause.load(Relaxed))));
            }
            if count_of(st) < self.parties {
                break st;
            }
            let seen = self.ctl.seq.load(Relaxed);
            drop(inside);
            let woke = self.records.sleep(&self.ctl.seq, seen, deadline);
            inside = self.enter(Deadline::Never).map_err(enter_error)?;
            match woke {
                Woke::Death => self.reclaim_dead(),
                Woke::TimedOut if self.ctl.state.load(Relaxed) == st => {
                    self.break_with(BreakCause::Timeout);
                    return Err(BarrierError::Broken(BreakCause::Timeout));
                }
                _ => {}
            }
        };
        let g = gen_of(st);
        let index = count_of(st);
        if index + 1 >= self.parties {
            self.ctl.state.store(state(g, self.parties), Relaxed);
            if let Some(action) = action {
                drop(inside);
                let ran = std::panic::catch_unwind(AssertUnwindSafe(action));
                inside = self.enter(Deadline::Never).map_err(enter_error)?;
                if let Err(panic) = ran {
                    if gen_of(self.ctl.state.load(Relaxed)) == g {
                        self.break_with(BreakCause::ActionPanicked);
                    }
                    drop(inside);
                    std::panic::resume_unwind(panic);
                }
                if let Some(end) = self.outcome(g) {
                    return end.and(Err(BarrierError::Broken(BreakCause::Reset)));
                }
            }
            // Release: the generation's history bit first, the state word (the commit) last.
            self.ctl.history.fetch_and(!bit(g), Relaxed);
            self.ctl.state.store(state(g.wrapping_add(1), 0), Relaxed);
            self.bump();
            drop(inside);
            return Ok(index);
        }
        self.ctl.state.store(state(g, index + 1), Relaxed);
        loop {
            let seen = self.ctl.seq.load(Relaxed);
            drop(inside);
            let woke = self.records.sleep(&self.ctl.seq, seen, deadline);
            inside = self.enter(Deadline::Never).map_err(enter_error)?;
            if woke == Woke::Death {
                self.reclaim_dead();
            }
            if let Some(end) = self.outcome(g) {
                return end.map(|()| index);
            }
            if woke == Woke::TimedOut {
                self.break_with(BreakCause::Timeout);
                return Err(BarrierError::Broken(BreakCause::Timeout));
            }
        }
    }

    /// Breaks the barrier (Python's `abort`).
    pub(crate) fn abort(&self) -> Result<(), BarrierError> {
        let _inside = self.enter(Deadline::Never).map_err(enter_error)?;
        self.break_with(BreakCause::Aborted);
        Ok(())
    }

    /// Makes the barrier whole and empty again; parties waiting in it fail with `Reset` (or
    /// with what broke it).
    pub(crate) fn reset(&self) -> Result<(), BarrierError> {
        let _inside = self.enter(Deadline::Never).map_err(enter_error)?;
        let st = self.ctl.state.load(Relaxed);
        let g = gen_of(st);
        if st & BROKEN == 0 {
            self.ctl.cause.store(encode(BreakCause::Reset), Relaxed);
        }
        self.ctl.history.fetch_or(bit(g), Relaxed);
        self.ctl.state.store(state(g.wrapping_add(1), 0), Relaxed);
        self.bump();
        Ok(())
    }

    /// Parties waiting in the current generation (0 when broken).
    pub(crate) fn n_waiting(&self) -> u32 {
        let st = self.ctl.state.load(Relaxed);
        if st & BROKEN != 0 {
            0
        } else {
            count_of(st).min(self.parties)
        }
    }

    pub(crate) fn is_broken(&self) -> bool {
        self.ctl.state.load(Relaxed) & BROKEN != 0
    }

    /// Frees the records of dead processes, breaking the barrier for each dead party. State
    /// lock held. The break is made before the record is cleared, so a reclaimer killed in
    /// between leaves the record for the next one to break on.
    pub(crate) fn reclaim_dead(&self) {
        for dead in self.records.dead() {
            self.clear_party(dead.index, dead.pid());
            self.records.free_dead(dead);
        }
    }

    /// Empties record `index`'s data word, breaking the barrier first if it marks a party
    /// (whose process, `pid`, died). State lock held.
    fn clear_party(&self, index: usize, pid: u32) {
        let Some(d) = self.records.data(index) else {
            return;
        };
        if d.load(Relaxed) & PARTY != 0 {
            self.break_with(BreakCause::PartyDied { pid });
        }
        d.store(0, Relaxed);
    }

    /// Breaks the barrier if record `me`, just claimed by this process from the dead holder
    /// `prev` (0: it was free), still marks that holder a party. Called with the state lock
    /// held, as the claim was.
    pub(crate) fn take_over(&self, me: Member, prev: u64) {
        if prev == 0 {
            // Free: whatever its data word says belongs to no one.
            if let Some(d) = self.records.data(me.index) {
                d.store(0, Relaxed);
            }
        } else {
            self.clear_party(me.index, (prev >> 32) as u32);
        }
    }

    /// Clears `me`'s data word before its record is given back: this process leaves without
    /// breaking the barrier.
    pub(crate) fn leave(&self, me: Member) {
        if let Some(d) = self.records.data(me.index) {
            d.store(0, Relaxed);
        }
    }
}

#[cfg(not(loom))]
pub use handle::Barrier;
#[cfg(not(loom))]
pub(crate) use handle::inspect;

#[cfg(not(loom))]
mod handle {
    use std::fmt;
    use std::time::Duration;

    use super::*;
    use crate::attach::Attachment;
    use crate::error::Error;
    use crate::segment::{Kind, Options, Segment, Spec};
    use crate::shm::{Made, Shm};
    use crate::sync::make::{self, records_ok, table_full};
    use crate::sync::records::{self, RecordData};
    use crate::sys::RobustMutex;

    fn payload_bytes(n: usize) -> usize {
        CTL_SIZE + records::bytes(n, RecordData::Words)
    }

    /// What [`inspect`](crate::inspect) shows of a barrier, read without changing anything; an
    /// error for parameters that do not match its size (checked as the opener does).
    pub(crate) fn inspect(seg: &Segment) -> Result<crate::inspect::Found, String> {
        use crate::inspect::{Found, Role, State, records};
        let [parties, n, ..] = seg.params();
        if !((1..=u64::from(BARRIER_MAX_PARTIES)).contains(&parties)
            && records_ok(n)
            && payload_bytes(n as usize) == seg.count())
        {
            return Err(format!(
                "barrier parameters {:?} do not match its size",
                seg.params()
            ));
        }
        let off = seg.payload_offset();
        let ctl: &BarrierCtl = seg.shared(off);
        let st = ctl.state.load(Relaxed);
        let broken = st & BROKEN != 0;
        let table = records::table(seg, off + CTL_SIZE, n as usize, RecordData::Words);
        let mut found = Found::plain(State::Barrier {
            parties,
            waiting: if broken {
                0
            } else {
                count_of(st).min(parties as u32)
            },
            broken,
        });
        found.attached = records(&table, |_| Role::Handle);
        Ok(found)
    }

    type Action = Box<dyn Fn() + Send + Sync>;

    /// A barrier for `parties` processes or threads in a named segment (Python's
    /// `multiprocessing.Barrier`).
    ///
    /// [`wait`](Self::wait) blocks until `parties` waits have arrived, then all return, each
    /// with its arrival index (0 for the first; one party can use that to do some housekeeping).
    /// The last to arrive first runs this handle's [action](Self::set_action), if it has one.
    /// A broken barrier fails every wait with [`BarrierError::Broken`] until
    /// [`reset`](Self::reset); it breaks on [`abort`](Self::abort), on a `wait_timeout` that
    /// runs out, on an action that panics, and when a process that has waited on it dies while
    /// it still has the barrier open (even by `SIGKILL`): the others wake at once with
    /// [`BreakCause::PartyDied`] naming its pid, instead of waiting forever. A process that is
    /// done with the barrier should drop its handle before it exits.
    ///
    /// ```
    /// use mpshm::prelude::*;
    ///
    /// let name = format!("doc-barrier-{}", std::process::id());
    /// let barrier = mpshm::Barrier::create(&name, 2)?;
    /// let index = std::thread::scope(|s| {
    ///     let other = s.spawn(|| barrier.wait().expect("wait"));
    ///     let mine = barrier.wait().expect("wait");
    ///     mine + other.join().unwrap()
    /// });
    /// assert_eq!(index, 0 + 1); // one got 0, the other 1
    /// # Ok::<(), mpshm::Error>(())
    /// ```
    pub struct Barrier {
        seg: Segment,
        attach: Attachment,
        records: usize,
        parties: u32,
        action: Option<Action>,
    }

    /// The segment's size for parameters read from its header; `None` if they make no sense.
    fn bytes([parties, records, ..]: [u64; 4]) -> Option<usize> {
        ((1..=u64::from(BARRIER_MAX_PARTIES)).contains(&parties) && records_ok(records))
            .then(|| payload_bytes(records as usize))
    }

    /// `Init` is the number of parties, 1 to [`BARRIER_MAX_PARTIES`] (else
    /// [`Error::InvalidLength`]); an existing barrier that `open_or_create` opens keeps its
    /// own. The options' mode, open timeout, type tag and `max_attached` (the records, default
    /// 256) apply.
    impl Shm for Barrier {
        type Init = u32;

        fn spec(parties: Option<&u32>, opts: &Options) -> Result<Spec, Error> {
            let parties = parties.copied().unwrap_or(1);
            if !(1..=BARRIER_MAX_PARTIES).contains(&parties) {
                return Err(Error::InvalidLength {
                    len: parties as usize,
                    reason: "a barrier needs 1 to 2^30 parties",
                });
            }
            let records = make::records(opts)?;
            let params = [u64::from(parties), records as u64, 0, 0];
            Ok(make::spec(
                Kind::Barrier,
                params,
                payload_bytes(records),
                opts,
            ))
        }

        fn init(seg: &Segment, _: &u32) -> Result<(), Error> {
            let off = seg.payload_offset() + CTL_SIZE;
            Records::init(seg, off, seg.params()[1] as usize, RecordData::Words)?;
            Ok(())
        }

        fn wrap(seg: Segment, _: Made, _: Option<&u32>, _: &Options) -> Result<Self, Error> {
            let seg = make::checked(seg, bytes)?;
            let [parties, records, ..] = seg.params();
            let barrier = Barrier {
                seg,
                attach: Attachment::default(),
                records: records as usize,
                parties: parties as u32,
                action: None,
            };
            if barrier.member().is_none() {
                return Err(table_full(&barrier.seg, barrier.records));
            }
            Ok(barrier)
        }

        fn segment(&self) -> &Segment {
            &self.seg
        }
    }

    impl Barrier {
        fn core(&self) -> BarrierCore<'_, RobustMutex> {
            let off = self.seg.payload_offset();
            let ctl: &BarrierCtl = self.seg.shared(off);
            BarrierCore {
                ctl,
                lock: self.seg.mutex().expect("a barrier has a lock"),
                records: Records::at(
                    &self.seg,
                    off + CTL_SIZE,
                    self.records,
                    RecordData::Words,
                    &ctl.deaths,
                    &self.attach,
                ),
                parties: self.parties,
            }
        }

        /// This process's record, claimed now if it has none (a child after `fork`), under the
        /// state lock: a record taken over from a dead party breaks the barrier first.
        fn member(&self) -> Option<Member> {
            let core = self.core();
            core.records.claim_locked(
                || core.enter(Deadline::Never).ok(),
                |me, prev| core.take_over(me, prev),
            )
        }

        /// Sets the action this handle runs when its wait is the last to arrive, before the
        /// others are released (Python's `action`, which each process sets on its own handle).
        /// If it panics, the barrier breaks ([`BreakCause::ActionPanicked`]) and the panic goes
        /// on in the party that ran it.
        pub fn set_action(&mut self, action: impl Fn() + Send + Sync + 'static) {
            self.action = Some(Box::new(action));
        }

        fn wait_until(&self, deadline: Option<Instant>) -> Result<u32, BarrierError> {
            let me = self
                .member()
                .ok_or(BarrierError::TooManyProcesses { max: self.records })?;
            self.core().wait(me, deadline, self.action.as_deref())
        }

        /// Waits until `parties` waits have arrived; this one's arrival index, `0..parties`.
        ///
        /// # Errors
        ///
        /// [`BarrierError::Broken`] when the barrier is or becomes broken;
        /// [`BarrierError::TooManyProcesses`] in a forked child that found no free record;
        /// [`BarrierError::Os`].
        pub fn wait(&self) -> Result<u32, BarrierError> {
            self.wait_until(None)
        }

        /// [`wait`](Self::wait) for at most `timeout` (on the monotonic clock). When it runs
        /// out, the barrier breaks (Python's rule) and every party's wait fails.
        ///
        /// # Errors
        ///
        /// [`BarrierError::Broken`] with [`BreakCause::Timeout`] when it ran out, or as
        /// [`wait`](Self::wait).
        pub fn wait_timeout(&self, timeout: Duration) -> Result<u32, BarrierError> {
            // A timeout too large to represent waits forever.
            self.wait_until(Instant::now().checked_add(timeout))
        }

        /// Breaks the barrier: waits in progress and to come fail until [`reset`](Self::reset).
        ///
        /// # Errors
        ///
        /// [`BarrierError::Os`] when the segment was overwritten.
        pub fn abort(&self) -> Result<(), BarrierError> {
            self.core().abort()
        }

        /// Returns the barrier to its empty, unbroken state; waits in progress fail.
        ///
        /// # Errors
        ///
        /// [`BarrierError::Os`] when the segment was overwritten.
        pub fn reset(&self) -> Result<(), BarrierError> {
            self.core().reset()
        }

        /// The number of parties.
        pub fn parties(&self) -> u32 {
            self.parties
        }

        /// How many parties wait in the current round (0 when broken).
        pub fn n_waiting(&self) -> u32 {
            self.core().n_waiting()
        }

        /// Whether the barrier is broken.
        pub fn broken(&self) -> bool {
            self.core().is_broken()
        }
    }

    impl Drop for Barrier {
        fn drop(&mut self) {
            let core = self.core();
            if let Some(me) = core.records.held() {
                core.leave(me);
                core.records.leave();
            }
        }
    }

    impl fmt::Debug for Barrier {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("Barrier")
                .field("name", &self.seg.name())
                .field("parties", &self.parties)
                .field("n_waiting", &self.n_waiting())
                .field("broken", &self.broken())
                .field("owner", &self.seg.is_owner())
                .finish()
        }
    }
}

/// The shared structures of this module, for the pinned layout (`src/layout.rs`).
#[cfg(all(test, not(loom)))]
pub(crate) fn shared_layout() -> Vec<String> {
    vec![
        crate::layout::pin!(BarrierCtl {
            seq,
            deaths,
            state,
            history,
            cause
        }),
        format!(
            "constants: BROKEN {BROKEN:#x} COUNT {COUNT:#x} PARTY {PARTY}; record words, then \
             the table, at {CTL_SIZE}"
        ),
    ]
}
