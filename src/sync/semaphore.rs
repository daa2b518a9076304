//! [`Semaphore`] and [`BoundedSemaphore`]: Python's `multiprocessing.Semaphore` and
//! `BoundedSemaphore` in a named segment, whose permits come back when a process that holds them
//! dies.
//!
//! The free count and the number of sleeping waiters share one word, guarded by the segment's
//! robust mutex (the state lock, held for a few stores and never while sleeping). Each handle
//! holds an attachment record (see `records`), whose data word counts the permits its process
//! holds through guards and the threads it has asleep. Every update touches the state words and
//! at most one data word; it is written first to a one-entry redo log, then applied, so a
//! process killed inside the state lock leaves either nothing or a complete update, which the
//! next holder (told by the robust mutex) applies again. When a recorded process dies, whoever
//! finds it (holding the state lock) returns its permits to the count and uncounts its
//! sleepers, then frees the record; a handle that claims a dead process's record (under the
//! state lock too) does the same first.
//!
//! Waiters sleep on `seq`, which a release bumps (and wakes one sleeper) only when someone
//! sleeps; the kernel also wakes a sleeper when a recorded process dies (see `records`), since
//! that may return permits or take a wake-up with it.

use std::time::Instant;

use crate::error::{AcquireError, ReleaseError};
use crate::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed, Ordering::Release};
use crate::sync::park::{EnterError, Entered, Inside, StateLock};
use crate::sync::records::{Member, Records, Woke};
use crate::wait::Deadline;
use crate::wait::futex::futex_wake;

/// The largest count a semaphore holds (`SEM_VALUE_MAX` on Linux).
pub const SEMAPHORE_MAX: u32 = i32::MAX as u32;

/// The record index in the redo log of an update that touches no record.
const NO_RECORD: u64 = u64::MAX;

/// The state words of a semaphore, as stored after its lock area.
#[repr(C)]
#[derive(Debug, Default)]
pub(crate) struct SemCtl {
    /// The futex word waiters sleep on: bumped when a permit comes back while someone sleeps.
    pub(crate) seq: AtomicU32,
    /// 1 while the redo log holds an update being applied.
    pub(crate) redo_valid: AtomicU32,
    /// Free permits (low half) and threads asleep waiting for one (high half).
    pub(crate) state: AtomicU64,
    /// Permits held through guards, every process together.
    pub(crate) held: AtomicU64,
    /// The redo log: the record the update touches (`NO_RECORD`: none) and its new data, and the
    /// new `state` and `held`.
    pub(crate) redo_record: AtomicU64,
    pub(crate) redo_data: AtomicU64,
    pub(crate) redo_state: AtomicU64,
    pub(crate) redo_held: AtomicU64,
    /// The records' eventcount: bumped when a recorded process dies or attaches (`records`).
    pub(crate) deaths: AtomicU32,
    _pad: AtomicU32,
}

// SAFETY: `SemCtl` is atomics only: every bit pattern is valid and all mutation is atomic. (Not
// under loom, whose atomics are handles into the model rather than words in memory.)
#[cfg(not(loom))]
unsafe impl crate::segment::Shared for SemCtl {}

/// Bytes of the state words.
pub(crate) const CTL_SIZE: usize = std::mem::size_of::<SemCtl>();
#[cfg(not(loom))]
const _: () = assert!(CTL_SIZE == 64);

/// `(low, high)` halves of a state or record word: `(count, waiters)` or `(held, waiting)`.
#[inline]
pub(crate) fn halves(w: u64) -> (u32, u32) {
    (w as u32, (w >> 32) as u32)
}

#[inline]
pub(crate) fn word(low: u32, high: u32) -> u64 {
    u64::from(low) | (u64::from(high) << 32)
}

/// What an operation writes: the new state words and, if any, one record's new data.
struct Update {
    record: Option<(usize, u64)>,
    state: u64,
    held: u64,
}

/// The semaphore algorithm over its state words, its state lock and its records.
pub(crate) struct SemCore<'a, L: StateLock> {
    pub(crate) ctl: &'a SemCtl,
    pub(crate) lock: &'a L,
    pub(crate) records: Records<'a>,
    pub(crate) initial: u32,
    pub(crate) bounded: bool,
}

impl<'a, L: StateLock> SemCore<'a, L> {
    /// Enters the state lock, first finishing the update of a holder that died inside.
    fn enter(&self, until: Deadline) -> Result<Inside<'a, L>, EnterError> {
        let (inside, how) = Inside::enter(self.lock, until)?;
        if how == Entered::Repair {
            self.repair();
        }
        Ok(inside)
    }

    /// Applies a logged update again (it may have been cut short), and wakes every sleeper: the
    /// dead holder may have bumped `seq` without waking anyone.
    fn repair(&self) {
        // Acquire: pairs with the Release store of `redo_valid` in `commit`, made by the holder
        // that died; the log's words are visible if the flag is.
        if self
            .ctl
            .redo_valid
            .load(crate::sync::atomic::Ordering::Acquire)
            == 1
        {
            self.apply();
        }
        self.ctl.seq.fetch_add(1, Relaxed);
        futex_wake(&self.ctl.seq, i32::MAX as u32);
    }

    /// Logs `u`, applies it, and clears the log. Called with the state lock held; the lock
    /// orders these words for every other holder, so Relaxed suffices but for the log flag.
    fn commit(&self, u: Update) {
        let c = self.ctl;
        let (index, data) = u.record.map_or((NO_RECORD, 0), |(i, d)| (i as u64, d));
        c.redo_record.store(index, Relaxed);
        c.redo_data.store(data, Relaxed);
        c.redo_state.store(u.state, Relaxed);
        c.redo_held.store(u.held, Relaxed);
        // Release: pairs with the Acquire load in `repair`.
        c.redo_valid.store(1, Release);
        self.apply();
        c.redo_valid.store(0, Release);
    }

    /// Writes the logged update to its words.
    fn apply(&self) {
        let c = self.ctl;
        let index = c.redo_record.load(Relaxed);
        if let Some(d) = usize::try_from(index)
            .ok()
            .and_then(|i| self.records.data(i))
        {
            d.store(c.redo_data.load(Relaxed), Relaxed);
        }
        c.state.store(c.redo_state.load(Relaxed), Relaxed);
        c.held.store(c.redo_held.load(Relaxed), Relaxed);
    }

    /// The data word of `me`'s record (0 if the index is out of range).
    fn data(&self, me: Member) -> u64 {
        self.records.data(me.index).map_or(0, |d| d.load(Relaxed))
    }

    /// The free permits.
    pub(crate) fn value(&self) -> u32 {
        halves(self.ctl.state.load(Relaxed)).0
    }

    /// Takes a permit for `me`, waiting for it until `until` (at `deadline`, if any).
    pub(crate) fn acquire(
        &self,
        me: Member,
        until: Deadline,
        deadline: Option<Instant>,
    ) -> Result<(), AcquireError> {
        let gave_up = || match until {
            Deadline::Now => AcquireError::WouldBlock,
            _ => AcquireError::Timeout,
        };
        // Whether this thread is counted among the waiters (in `state` and in its record).
        let mut counted = false;
        let mut reclaim = false;
        loop {
            // A counted waiter must get back in to uncount itself, deadline or not.
            let inside = match self.enter(if counted { Deadline::Never } else { until }) {
                Ok(inside) => inside,
                Err(EnterError::Busy) => return Err(gave_up()),
                Err(EnterError::Os(e)) => return Err(AcquireError::Os(e)),
            };
            if reclaim {
                self.reclaim_dead();
                reclaim = false;
            }
            let (count, waiters) = halves(self.ctl.state.load(Relaxed));
            let held = self.ctl.held.load(Relaxed);
            let (mine, sleeping) = halves(self.data(me));
            let less = u32::from(counted);
            if count > 0 {
                self.commit(Update {
                    record: Some((
                        me.index,
                        word(mine.saturating_add(1), sleeping.saturating_sub(less)),
                    )),
                    state: word(count - 1, waiters.saturating_sub(less)),
                    held: held.saturating_add(1),
                });
                return Ok(());
            }
            if until.passed() {
                if counted {
                    self.commit(Update {
                        record: Some((me.index, word(mine, sleeping.saturating_sub(1)))),
                        state: word(count, waiters.saturating_sub(1)),
                        held,
                    });
                }
                return Err(gave_up());
            }
            if !counted {
                self.commit(Update {
                    record: Some((me.index, word(mine, sleeping.saturating_add(1)))),
                    state: word(count, waiters.saturating_add(1)),
                    held,
                });
                counted = true;
            }
            let seen = self.ctl.seq.load(Relaxed);
            drop(inside);
            if self.records.sleep(&self.ctl.seq, seen, deadline) == Woke::Death {
                reclaim = true;
            }
        }
    }

    /// Wakes one sleeper after a permit came back, if anyone sleeps. Called with the state lock
    /// held; the wake itself is issued by [`wake_one`] once it is left.
    fn bump_if_waiting(&self, waiters: u32) -> bool {
        if waiters > 0 {
            self.ctl.seq.fetch_add(1, Relaxed);
        }
        waiters > 0
    }

    fn wake_one(&self) {
        futex_wake(&self.ctl.seq, 1);
    }

    /// Returns a permit `me` holds through a guard.
    pub(crate) fn give_back(&self, me: Member) {
        let Ok(inside) = self.enter(Deadline::Never) else {
            return; // The lock is corrupt: nothing can be returned to it.
        };
        let (mine, sleeping) = halves(self.data(me));
        if mine == 0 {
            return; // Already returned (a corrupt record): create no permit from nothing.
        }
        let (count, waiters) = halves(self.ctl.state.load(Relaxed));
        self.commit(Update {
            record: Some((me.index, word(mine - 1, sleeping))),
            state: word(count.saturating_add(1), waiters),
            held: self.ctl.held.load(Relaxed).saturating_sub(1),
        });
        let wake = self.bump_if_waiting(waiters);
        drop(inside);
        if wake {
            self.wake_one();
        }
    }

    /// Drops a permit `me` holds from the books: it is neither returned nor recovered.
    pub(crate) fn forget(&self, me: Member) {
        let Ok(_inside) = self.enter(Deadline::Never) else {
            return;
        };
        let (mine, sleeping) = halves(self.data(me));
        if mine == 0 {
            return;
        }
        self.commit(Update {
            record: Some((me.index, word(mine - 1, sleeping))),
            state: self.ctl.state.load(Relaxed),
            held: self.ctl.held.load(Relaxed).saturating_sub(1),
        });
    }

    /// Adds a permit that no guard held (Python's `release`).
    pub(crate) fn release(&self) -> Result<(), ReleaseError> {
        let inside = self.enter(Deadline::Never).map_err(|e| match e {
            EnterError::Os(e) => ReleaseError::Os(e),
            EnterError::Busy => unreachable!("an unbounded wait never gives up"),
        })?;
        let (count, waiters) = halves(self.ctl.state.load(Relaxed));
        let held = self.ctl.held.load(Relaxed);
        if self.bounded && u64::from(count).saturating_add(held) >= u64::from(self.initial) {
            return Err(ReleaseError::AboveInitial {
                initial: self.initial,
            });
        }
        if count >= SEMAPHORE_MAX {
            return Err(ReleaseError::Overflow);
        }
        self.commit(Update {
            record: None,
            state: word(count + 1, waiters),
            held,
        });
        let wake = self.bump_if_waiting(waiters);
        drop(inside);
        if wake {
            self.wake_one();
        }
        Ok(())
    }

    /// Empties record `m`'s data word: its permits go back to the count and its sleepers
    /// leave the waiter count. State lock held. Whether permits came back.
    fn return_data(&self, m: Member) -> bool {
        let (mine, sleeping) = halves(self.data(m));
        if mine == 0 && sleeping == 0 {
            return false;
        }
        let (count, waiters) = halves(self.ctl.state.load(Relaxed));
        self.commit(Update {
            record: Some((m.index, 0)),
            state: word(
                count.saturating_add(mine).min(SEMAPHORE_MAX),
                waiters.saturating_sub(sleeping),
            ),
            held: self.ctl.held.load(Relaxed).saturating_sub(u64::from(mine)),
        });
        mine > 0
    }

    /// Wakes every sleeper once permits came back, if anyone sleeps. State lock held.
    fn wake_all_if_waiting(&self, returned: bool) {
        if returned && self.bump_if_waiting(halves(self.ctl.state.load(Relaxed)).1) {
            futex_wake(&self.ctl.seq, i32::MAX as u32);
        }
    }

    /// Returns the permits of every dead record to the count, uncounts its sleepers, and frees
    /// it. Called with the state lock held.
    pub(crate) fn reclaim_dead(&self) {
        let mut returned = false;
        for dead in self.records.dead() {
            returned |= self.return_data(dead);
            self.records.free_dead(dead);
        }
        self.wake_all_if_waiting(returned);
    }

    /// Returns what record `me`, just claimed by this process, still holds of its dead
    /// previous holder. Called with the state lock held, as the claim was.
    pub(crate) fn take_over(&self, me: Member) {
        let returned = self.return_data(me);
        self.wake_all_if_waiting(returned);
    }

    /// Returns the permits of guards that were leaked through `me` (as a death would), before
    /// its record is given back.
    pub(crate) fn leave(&self, me: Member) {
        if let Ok(_inside) = self.enter(Deadline::Never) {
            let returned = self.return_data(me);
            self.wake_all_if_waiting(returned);
        }
    }
}

#[cfg(not(loom))]
pub(crate) use handle::inspect;
#[cfg(not(loom))]
pub use handle::{
    Bounded, BoundedSemaphore, ProcessSemaphore, Semaphore, SemaphoreGuard, SemaphoreKind,
    Unbounded,
};

#[cfg(not(loom))]
mod handle {
    use std::fmt;
    use std::marker::PhantomData;
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

    /// The segment's size for parameters read from its header; `None` if they make no sense.
    fn bytes([initial, records, ..]: [u64; 4]) -> Option<usize> {
        (initial <= u64::from(SEMAPHORE_MAX) && records_ok(records))
            .then(|| payload_bytes(records as usize))
    }

    /// What [`inspect`](crate::inspect) shows of a semaphore, read without changing anything;
    /// an error for parameters that do not match its size (checked as the opener does).
    pub(crate) fn inspect(seg: &Segment) -> Result<crate::inspect::Found, String> {
        use crate::inspect::{Found, Role, State, records};
        let [initial, n, ..] = seg.params();
        if bytes(seg.params()) != Some(seg.count()) {
            return Err(format!(
                "semaphore parameters {:?} do not match its size",
                seg.params()
            ));
        }
        let off = seg.payload_offset();
        let ctl: &SemCtl = seg.shared(off);
        let (value, sleepers) = halves(ctl.state.load(Relaxed));
        let table = records::table(seg, off + CTL_SIZE, n as usize, RecordData::Words);
        let mut found = Found::plain(State::Semaphore {
            value,
            held: ctl.held.load(Relaxed),
            sleepers,
            initial,
        });
        found.attached = records(&table, |_| Role::Handle);
        Ok(found)
    }

    mod sealed {
        pub trait Sealed {}
    }

    /// Whether a [`ProcessSemaphore`] is bounded by its initial value ([`Bounded`],
    /// [`BoundedSemaphore`]) or not ([`Unbounded`], [`Semaphore`]). Sealed.
    pub trait SemaphoreKind: sealed::Sealed {
        #[doc(hidden)]
        const BOUNDED: bool;
        #[doc(hidden)]
        const KIND: Kind;
    }

    /// A semaphore that `release` may raise without bound ([`Semaphore`]).
    #[derive(Debug, Clone, Copy)]
    pub enum Unbounded {}

    /// A semaphore that `release` never raises above its initial value ([`BoundedSemaphore`]).
    #[derive(Debug, Clone, Copy)]
    pub enum Bounded {}

    impl sealed::Sealed for Unbounded {}
    impl sealed::Sealed for Bounded {}

    impl SemaphoreKind for Unbounded {
        const BOUNDED: bool = false;
        const KIND: Kind = Kind::Semaphore;
    }

    impl SemaphoreKind for Bounded {
        const BOUNDED: bool = true;
        const KIND: Kind = Kind::BoundedSemaphore;
    }

    /// A counting semaphore in a named segment: [`Semaphore`] and [`BoundedSemaphore`] are its
    /// two kinds.
    ///
    /// [`acquire`](Self::acquire) hands out a guard that returns the permit when dropped.
    /// Permits held through guards are recorded per process, and come back to the count when
    /// the process dies (even by `SIGKILL`): a waiter blocked in `acquire` gets such a permit. A
    /// permit kept with [`SemaphoreGuard::forget`] is nobody's: [`release`](Self::release) adds
    /// one, from any process, as Python's `release` does.
    ///
    /// Each open handle holds one of the segment's process records (256 unless
    /// [`Options::max_attached`] says otherwise); `open` fails with [`Error::InUse`] when all
    /// are taken.
    pub struct ProcessSemaphore<B: SemaphoreKind> {
        inner: SemHandle,
        _kind: PhantomData<B>,
    }

    /// What every kind of semaphore handle holds: the segment and this handle's record.
    pub(super) struct SemHandle {
        seg: Segment,
        attach: Attachment,
        initial: u32,
        records: usize,
        bounded: bool,
    }

    /// A counting semaphore in a named segment (Python's `multiprocessing.Semaphore`); see
    /// [`ProcessSemaphore`].
    ///
    /// ```
    /// use mpshm::prelude::*;
    ///
    /// let name = format!("doc-sem-{}", std::process::id());
    /// let sem = mpshm::Semaphore::create(&name, 2)?;
    /// let a = sem.acquire()?;
    /// let b = sem.acquire()?;
    /// assert!(sem.try_acquire().is_err()); // both permits are out
    /// drop(a);
    /// assert_eq!(sem.value(), 1);
    /// # drop(b);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub type Semaphore = ProcessSemaphore<Unbounded>;

    /// A semaphore that refuses to be released above the value it was created with (Python's
    /// `multiprocessing.BoundedSemaphore`): [`release`](ProcessSemaphore::release) fails with
    /// [`ReleaseError::AboveInitial`] when the free permits and those held through guards
    /// already make that value. Otherwise as [`Semaphore`].
    ///
    /// ```
    /// use mpshm::prelude::*;
    /// use mpshm::{BoundedSemaphore, ReleaseError};
    ///
    /// let name = format!("doc-bsem-{}", std::process::id());
    /// let sem = BoundedSemaphore::create(&name, 1)?;
    /// assert!(matches!(sem.release(), Err(ReleaseError::AboveInitial { initial: 1 })));
    /// sem.acquire()?.forget();
    /// sem.release()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub type BoundedSemaphore = ProcessSemaphore<Bounded>;

    /// `Init` is the initial number of free permits, at most [`SEMAPHORE_MAX`] (else
    /// [`Error::InvalidLength`]), which is also a [`BoundedSemaphore`]'s bound. An existing
    /// semaphore that `open_or_create` opens keeps its own count. The options' mode, open
    /// timeout, type tag and `max_attached` (the records, default 256) apply.
    impl<B: SemaphoreKind> Shm for ProcessSemaphore<B> {
        type Init = u32;

        fn spec(value: Option<&u32>, opts: &Options) -> Result<Spec, Error> {
            let value = value.copied().unwrap_or(0);
            if value > SEMAPHORE_MAX {
                return Err(Error::InvalidLength {
                    len: value as usize,
                    reason: "a semaphore's value must be at most SEMAPHORE_MAX (2^31 - 1)",
                });
            }
            let records = make::records(opts)?;
            let params = [u64::from(value), records as u64, 0, 0];
            Ok(make::spec(B::KIND, params, payload_bytes(records), opts))
        }

        fn init(seg: &Segment, &value: &u32) -> Result<(), Error> {
            let off = seg.payload_offset();
            let ctl: &SemCtl = seg.shared(off);
            ctl.state.store(word(value, 0), Relaxed);
            let records = seg.params()[1] as usize;
            Records::init(seg, off + CTL_SIZE, records, RecordData::Words)?;
            Ok(())
        }

        fn wrap(seg: Segment, _: Made, _: Option<&u32>, _: &Options) -> Result<Self, Error> {
            let seg = make::checked(seg, bytes)?;
            let [initial, records, ..] = seg.params();
            let inner = SemHandle {
                seg,
                attach: Attachment::default(),
                initial: initial as u32,
                records: records as usize,
                bounded: B::BOUNDED,
            };
            if inner.member().is_none() {
                return Err(table_full(&inner.seg, inner.records));
            }
            Ok(ProcessSemaphore {
                inner,
                _kind: PhantomData,
            })
        }

        fn segment(&self) -> &Segment {
            &self.inner.seg
        }
    }

    impl SemHandle {
        pub(super) fn core(&self) -> SemCore<'_, RobustMutex> {
            let off = self.seg.payload_offset();
            let ctl: &SemCtl = self.seg.shared(off);
            SemCore {
                ctl,
                lock: self.seg.mutex().expect("a semaphore has a lock"),
                records: Records::at(
                    &self.seg,
                    off + CTL_SIZE,
                    self.records,
                    RecordData::Words,
                    &ctl.deaths,
                    &self.attach,
                ),
                initial: self.initial,
                bounded: self.bounded,
            }
        }

        /// This process's record, claimed now if it has none (a child after `fork`), under the
        /// state lock: a record taken over from a dead process still counts its permits, which
        /// go back first.
        fn member(&self) -> Option<Member> {
            let core = self.core();
            core.records.claim_locked(
                || core.enter(Deadline::Never).ok(),
                |me, _| core.take_over(me),
            )
        }

        fn acquire_within(
            &self,
            until: Deadline,
            deadline: Option<Instant>,
        ) -> Result<SemaphoreGuard<'_>, AcquireError> {
            let me = self
                .member()
                .ok_or(AcquireError::TooManyProcesses { max: self.records })?;
            self.core().acquire(me, until, deadline)?;
            Ok(SemaphoreGuard {
                handle: self,
                me,
                pid: crate::sys::thread_ids().0,
            })
        }
    }

    impl<B: SemaphoreKind> ProcessSemaphore<B> {
        /// Takes a permit, sleeping in the kernel until one is free.
        ///
        /// # Errors
        ///
        /// [`AcquireError::TooManyProcesses`] in a forked child that found no free record,
        /// [`AcquireError::Os`] when the segment was overwritten.
        pub fn acquire(&self) -> Result<SemaphoreGuard<'_>, AcquireError> {
            self.inner.acquire_within(Deadline::Never, None)
        }

        /// Takes a permit only if one is free now.
        ///
        /// # Errors
        ///
        /// [`AcquireError::WouldBlock`], or as [`acquire`](Self::acquire).
        pub fn try_acquire(&self) -> Result<SemaphoreGuard<'_>, AcquireError> {
            self.inner.acquire_within(Deadline::Now, None)
        }

        /// Takes a permit, waiting at most `timeout` (on the monotonic clock).
        ///
        /// # Errors
        ///
        /// [`AcquireError::Timeout`], or as [`acquire`](Self::acquire).
        pub fn acquire_timeout(
            &self,
            timeout: Duration,
        ) -> Result<SemaphoreGuard<'_>, AcquireError> {
            match Instant::now().checked_add(timeout) {
                Some(t) => self.inner.acquire_within(Deadline::At(t), Some(t)),
                None => self.inner.acquire_within(Deadline::Never, None),
            }
        }

        /// Adds a permit (Python's `release`), waking one waiter. A [`BoundedSemaphore`] first
        /// checks that the free permits and those held through guards do not already make its
        /// initial value.
        ///
        /// # Errors
        ///
        /// [`ReleaseError::Overflow`] above [`SEMAPHORE_MAX`] (a [`Semaphore`]);
        /// [`ReleaseError::AboveInitial`] (a [`BoundedSemaphore`]); [`ReleaseError::Os`].
        pub fn release(&self) -> Result<(), ReleaseError> {
            self.inner.core().release()
        }

        /// The free permits (Python's `get_value`).
        pub fn value(&self) -> u32 {
            self.inner.core().value()
        }

        /// The value it was created with: a [`BoundedSemaphore`]'s bound.
        pub fn initial_value(&self) -> u32 {
            self.inner.initial
        }
    }

    impl Drop for SemHandle {
        fn drop(&mut self) {
            let core = self.core();
            if let Some(me) = core.records.held() {
                core.leave(me);
                core.records.leave();
            }
        }
    }

    impl<B: SemaphoreKind> fmt::Debug for ProcessSemaphore<B> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct(if B::BOUNDED {
                "BoundedSemaphore"
            } else {
                "Semaphore"
            })
            .field("name", &self.inner.seg.name())
            .field("value", &self.value())
            .field("owner", &self.inner.seg.is_owner())
            .finish()
        }
    }

    /// A permit taken from a [`Semaphore`] or [`BoundedSemaphore`]; it goes back when this is
    /// dropped, and also when the process holding it dies.
    #[must_use = "the permit goes back as soon as the guard is dropped"]
    pub struct SemaphoreGuard<'a> {
        handle: &'a SemHandle,
        me: Member,
        /// The process that took it: a copy in a child made by `fork` does not give it back.
        pid: u32,
    }

    impl SemaphoreGuard<'_> {
        /// Keeps the permit taken for good (tokio's `forget`): it does not go back on drop, and
        /// not when this process dies either. Python's split use — `acquire` here, `release`
        /// somewhere else, perhaps in another process — is `acquire()?.forget()` followed by
        /// [`ProcessSemaphore::release`].
        ///
        /// ```
        /// use mpshm::prelude::*;
        ///
        /// let name = format!("doc-forget-{}", std::process::id());
        /// let sem = mpshm::Semaphore::create(&name, 1)?;
        /// sem.acquire()?.forget();
        /// assert_eq!(sem.value(), 0);
        /// sem.release()?; // from anywhere
        /// assert_eq!(sem.value(), 1);
        /// # Ok::<(), Box<dyn std::error::Error>>(())
        /// ```
        pub fn forget(self) {
            let this = std::mem::ManuallyDrop::new(self);
            if crate::sys::thread_ids().0 == this.pid {
                this.handle.core().forget(this.me);
            }
        }
    }

    impl Drop for SemaphoreGuard<'_> {
        fn drop(&mut self) {
            if crate::sys::thread_ids().0 == self.pid {
                self.handle.core().give_back(self.me);
            }
        }
    }

    impl fmt::Debug for SemaphoreGuard<'_> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("SemaphoreGuard")
                .field("semaphore", &self.handle.seg.name())
                .finish()
        }
    }
}

/// The shared structures of this module, for the pinned layout (`src/layout.rs`).
#[cfg(all(test, not(loom)))]
pub(crate) fn shared_layout() -> Vec<String> {
    vec![
        crate::layout::pin!(SemCtl {
            seq,
            redo_valid,
            state,
            held,
            redo_record,
            redo_data,
            redo_state,
            redo_held,
            deaths,
            _pad
        }),
        format!("constants: NO_RECORD {NO_RECORD:#x}; record words, then the table, at {CTL_SIZE}"),
    ]
}
