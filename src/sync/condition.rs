//! [`Condition`]: Python's `Condition` in a named segment — wait for a notify while holding a
//! cross-process lock, which the wait releases and takes back.
//!
//! Waiting threads, of any process, take a slot in the segment's table while they hold the lock:
//! a ticket (the order they began waiting in), their process (its attachment record and word)
//! and a state word, which is the futex word the waiter sleeps on. `notify(n)` (lock held) marks the `n` oldest waiting slots
//! notified and wakes each; so it wakes at most `n` of the threads waiting when it was called,
//! never one that begins waiting after it, and exactly `n` when that many wait. A waiter whose
//! timeout runs out withdraws its slot with one compare-and-swap, so a notify cannot be spent on
//! it unless it comes first (and then the wait reports the notify). Slots are only claimed and
//! freed, and only marked notified, under the lock; each change is one word.
//!
//! The lock is the condition's own (a reentrant one, in its segment's lock area, as Python's
//! default `RLock`), or a [`Lock`] or [`RLock`] of the user's, named in the segment. A wait
//! releases it at the depth this thread holds it (read from the mutex) and takes it back as
//! deep.
//!
//! Each handle holds an attachment record; the kernel wakes a sleeper when a recorded process
//! dies (see `records`), and the sleepers take the lock and reclaim the slots of dead processes
//! (a slot whose record no longer holds its waiter's live process): a dead waiter's slot is
//! freed, and a notify that reached a dead waiter is passed to the oldest live one that was
//! already waiting when it was made. So a notifier killed between its mark and its wake loses
//! nothing, and a waiter killed in any state leaves no one blocked past their timeout.

use std::io;
use std::time::Instant;

use crate::error::ConditionError;
use crate::sync::atomic::{
    AtomicU32, AtomicU64,
    Ordering::{AcqRel, Acquire, Relaxed, Release},
};
use crate::sync::records::{Member, Records, Woke};
use crate::wait::futex::futex_wake;

/// The words of a condition, as stored after its lock area.
#[repr(C)]
#[derive(Debug, Default)]
pub(crate) struct CondCtl {
    /// The next waiter's ticket.
    pub(crate) tickets: AtomicU64,
    /// Slots at this index and above have never been used.
    pub(crate) high: AtomicU32,
    /// The records' eventcount: bumped when a recorded process dies or attaches (`records`).
    pub(crate) deaths: AtomicU32,
    /// The name of the user's lock, little-endian bytes (its length is in the header).
    pub(crate) name: [AtomicU64; 4],
    _reserved: [AtomicU64; 2],
}

/// One waiting thread.
#[repr(C)]
#[derive(Debug, Default)]
pub(crate) struct Slot {
    /// `FREE`, `WAITING`, `NOTIFIED` or `LEFT`: the futex word the waiter sleeps on.
    pub(crate) state: AtomicU32,
    /// The waiter's attachment record (an index into the condition's table).
    pub(crate) record: AtomicU32,
    /// When it began to wait (from `CondCtl::tickets`).
    pub(crate) ticket: AtomicU64,
    /// For a notified slot: the ticket counter when the notify was made (a notify passed on from
    /// a dead waiter may go only to a waiter with an earlier ticket).
    pub(crate) mark: AtomicU64,
    /// The waiter's process: its record word (`pid << 32 | start time`).
    pub(crate) owner: AtomicU64,
}

// SAFETY: `CondCtl` and `Slot` are atomics only: every bit pattern is valid and all mutation is
// atomic. (Not under loom, whose atomics are handles into the model rather than words in
// memory.)
#[cfg(not(loom))]
unsafe impl crate::segment::Shared for CondCtl {}
// SAFETY: as above.
#[cfg(not(loom))]
unsafe impl crate::segment::Shared for Slot {}

pub(crate) const CTL_SIZE: usize = std::mem::size_of::<CondCtl>();
pub(crate) const SLOT_SIZE: usize = std::mem::size_of::<Slot>();
#[cfg(not(loom))]
const _: () = assert!(CTL_SIZE == 64 && SLOT_SIZE == 32);

pub(crate) const FREE: u32 = 0;
pub(crate) const WAITING: u32 = 1;
pub(crate) const NOTIFIED: u32 = 2;
/// Its waiter timed out before any notify reached it, and has not yet freed the slot.
const LEFT: u32 = 3;

/// The lock a condition waits with: released at its full depth, and taken back.
pub(crate) trait CondLock {
    /// Releases the lock, which this thread holds, as many times as it holds it; that depth.
    fn release_all(&self) -> io::Result<u32>;
    /// Takes the lock `depth` times; whether it reported a holder's death (poisoned).
    fn retake(&self, depth: u32) -> io::Result<bool>;
}

/// The condition algorithm over its words, its slots and its records. Every method but the
/// sleeping part of `wait` runs with the condition's lock held, which orders these words for
/// every other holder: Relaxed suffices there.
pub(crate) struct CondCore<'a> {
    pub(crate) ctl: &'a CondCtl,
    pub(crate) slots: &'a [Slot],
    pub(crate) records: Records<'a>,
}

impl CondCore<'_> {
    /// The slots in use so far.
    fn used(&self) -> &[Slot] {
        let high = (self.ctl.high.load(Relaxed) as usize).min(self.slots.len());
        &self.slots[..high]
    }

    /// Claims a free slot for a waiter of the process that holds record `me`.
    fn claim(&self, me: Member) -> Option<&Slot> {
        let (index, slot) = self
            .slots
            .iter()
            .enumerate()
            .find(|(_, s)| s.state.load(Relaxed) == FREE)?;
        let ticket = self.ctl.tickets.load(Relaxed);
        self.ctl.tickets.store(ticket.wrapping_add(1), Relaxed);
        slot.owner.store(me.word, Relaxed);
        slot.record.store(me.index as u32, Relaxed);
        slot.ticket.store(ticket, Relaxed);
        slot.mark.store(0, Relaxed);
        // Release: pairs with the Acquire loads of the state in `wait`'s sleep loop (none of
        // the fields above is read there, but a notifier in another process reads them after
        // taking the lock, which orders them anyway).
        slot.state.store(WAITING, Release);
        if index >= self.ctl.high.load(Relaxed) as usize {
            self.ctl.high.store(index as u32 + 1, Relaxed);
        }
        Some(slot)
    }

    /// Marks `slot` notified by a notify made at ticket count `mark`, and wakes its waiter;
    /// whether the slot was still waiting.
    fn notify_slot(&self, slot: &Slot, mark: u64) -> bool {
        slot.mark.store(mark, Relaxed);
        // AcqRel: the Release half pairs with the Acquire load of the state in `wait`; the
        // Acquire half with the waiter's own withdrawal, which it races.
        let won = slot
            .state
            .compare_exchange(WAITING, NOTIFIED, AcqRel, Acquire)
            .is_ok();
        if won {
            futex_wake(&slot.state, 1);
        }
        won
    }

    /// Wakes at most `n` of the threads waiting now, oldest first; how many it woke.
    pub(crate) fn notify(&self, n: usize) -> usize {
        self.notify_before(n, u64::MAX)
    }

    /// Wakes at most `n` waiters whose ticket is below `limit`, oldest first.
    fn notify_before(&self, n: usize, limit: u64) -> usize {
        if n == 0 {
            return 0;
        }
        let now = self.ctl.tickets.load(Relaxed);
        let mut waiting: Vec<(u64, &Slot)> = self
            .used()
            .iter()
            .filter(|s| s.state.load(Relaxed) == WAITING)
            .map(|s| (s.ticket.load(Relaxed), s))
            .filter(|&(ticket, _)| ticket < limit)
            .collect();
        waiting.sort_unstable_by_key(|&(ticket, _)| ticket);
        let mut woken = 0;
        for (_, slot) in waiting {
            if woken == n {
                break;
            }
            if self.notify_slot(slot, now) {
                woken += 1;
            }
        }
        woken
    }

    /// Frees the slots of dead processes (whose record no longer holds their live process),
    /// passing on each notify that reached a dead waiter.
    pub(crate) fn reclaim_dead(&self) {
        for slot in self.used() {
            let st = slot.state.load(Relaxed);
            if st == FREE
                || self
                    .records
                    .holds_alive(slot.record.load(Relaxed) as usize, slot.owner.load(Relaxed))
            {
                continue;
            }
            slot.state.store(FREE, Relaxed);
            if st == NOTIFIED {
                let mark = slot.mark.load(Relaxed);
                // Only to a waiter that was already waiting when the notify was made.
                self.notify_before(1, mark);
            }
        }
    }

    /// Releases `lock` (held by this thread), sleeps until notified or `deadline`, and takes
    /// `lock` back; whether it was notified.
    pub(crate) fn wait(
        &self,
        me: Member,
        lock: &impl CondLock,
        deadline: Option<Instant>,
    ) -> Result<bool, ConditionError> {
        let slot = match self.claim(me) {
            Some(slot) => slot,
            None => {
                self.reclaim_dead();
                self.claim(me).ok_or(ConditionError::TooManyWaiters {
                    max: self.slots.len(),
                })?
            }
        };
        let depth = match lock.release_all() {
            Ok(depth) => depth,
            Err(e) => {
                slot.state.store(FREE, Relaxed);
                return Err(ConditionError::Os(e));
            }
        };
        let mut poisoned = false;
        let mut holding = false;
        let notified = loop {
            // Acquire: pairs with the AcqRel compare-and-swap in `notify_slot`.
            if slot.state.load(Acquire) != WAITING {
                break true;
            }
            match self.records.sleep(&slot.state, WAITING, deadline) {
                Woke::Changed => {}
                Woke::TimedOut => {
                    // Withdraw, unless a notify came first.
                    break slot
                        .state
                        .compare_exchange(WAITING, LEFT, AcqRel, Acquire)
                        .is_err();
                }
                Woke::Death => {
                    // Reclaiming needs the lock; it may pass this waiter a notify.
                    match lock.retake(depth) {
                        Ok(p) => poisoned |= p,
                        Err(e) => {
                            slot.state.store(FREE, Relaxed);
                            return Err(ConditionError::Os(e));
                        }
                    }
                    self.reclaim_dead();
                    if slot.state.load(Relaxed) != WAITING {
                        holding = true;
                        break true;
                    }
                    if let Err(e) = lock.release_all() {
                        slot.state.store(FREE, Relaxed);
                        return Err(ConditionError::Os(e));
                    }
                }
            }
        };
        if !holding {
            match lock.retake(depth) {
                Ok(p) => poisoned |= p,
                Err(e) => {
                    slot.state.store(FREE, Relaxed);
                    return Err(ConditionError::Os(e));
                }
            }
        }
        slot.state.store(FREE, Relaxed);
        if poisoned {
            Err(ConditionError::OwnerDied { notified })
        } else {
            Ok(notified)
        }
    }
}

#[cfg(loom)]
impl CondLock for crate::sync::park::ModelLock {
    fn release_all(&self) -> io::Result<u32> {
        crate::sync::park::StateLock::leave(self);
        Ok(1)
    }

    fn retake(&self, depth: u32) -> io::Result<bool> {
        for _ in 0..depth {
            let _ = crate::sync::park::StateLock::enter(self, crate::wait::Deadline::Never);
        }
        Ok(false)
    }
}

#[cfg(not(loom))]
pub(crate) use handle::inspect;
#[cfg(not(loom))]
pub use handle::{Condition, ConditionGuard, ConditionLock};

#[cfg(not(loom))]
mod handle {
    use std::fmt;
    use std::time::Duration;

    use super::*;
    use crate::attach::Attachment;
    use crate::error::{Error, LockError};
    use crate::segment::{Identity, Kind, Options, Segment, Spec, validate_name};
    use crate::shm::{Made, Shm};
    use crate::sync::lock::{LockKind, ProcessLock};
    use crate::sync::make::{self, entries_ok, records_ok, table_full};
    use crate::sync::records::{self, Claim, RecordData};
    use crate::sync::{Held, RawLock, lock_spec};

    /// The end of a wait of at most `timeout` from now; `None` (forever) if it cannot be
    /// represented.
    fn deadline(timeout: Duration) -> Option<Instant> {
        Instant::now().checked_add(timeout)
    }

    /// Waiter slots in a condition: how many threads may wait on it at once.
    pub(crate) const SLOTS: usize = 256;

    /// Which lock a condition waits with (stored in the header's parameters).
    const OWN: u64 = 0;
    const USER_LOCK: u64 = 1;
    const USER_RLOCK: u64 = 2;

    /// Where the records start in the payload: after the slots, 128-aligned.
    fn records_offset(slots: usize) -> usize {
        (CTL_SIZE + slots * SLOT_SIZE).next_multiple_of(128)
    }

    fn payload_bytes(slots: usize, n: usize) -> usize {
        records_offset(slots) + records::bytes(n, RecordData::Nothing)
    }

    /// The segment's size for parameters read from its header; `None` if they make no sense.
    fn bytes([slots, records, kind, len]: [u64; 4]) -> Option<usize> {
        (entries_ok(slots)
            && records_ok(records)
            && kind <= USER_RLOCK
            && len <= 32
            && (kind == OWN) == (len == 0))
            .then(|| payload_bytes(slots as usize, records as usize))
    }

    /// The first `len` bytes of the user's lock name stored in `ctl`.
    fn stored_lock_name(ctl: &CondCtl, len: u64) -> Vec<u8> {
        ctl.name
            .iter()
            .flat_map(|w| w.load(Relaxed).to_le_bytes())
            .take(len as usize)
            .collect()
    }

    /// What [`inspect`](crate::inspect) shows of a condition, read without changing anything;
    /// an error for parameters that do not match its size (checked as the opener does).
    pub(crate) fn inspect(seg: &Segment) -> Result<crate::inspect::Found, String> {
        use crate::inspect::{Found, Role, State, records};
        let [slots, n, kind, len] = seg.params();
        if bytes(seg.params()) != Some(seg.count()) {
            return Err(format!(
                "condition parameters {:?} do not match its size",
                seg.params()
            ));
        }
        let off = seg.payload_offset();
        let ctl: &CondCtl = seg.shared(off);
        let waiting = seg
            .shared_slice::<Slot>(off + CTL_SIZE, slots as usize)
            .iter()
            .filter(|s| matches!(s.state.load(Relaxed), WAITING | NOTIFIED))
            .count();
        let lock = (kind != OWN)
            .then(|| String::from_utf8_lossy(&stored_lock_name(ctl, len)).into_owned());
        let table = records::table(
            seg,
            off + records_offset(slots as usize),
            n as usize,
            RecordData::Nothing,
        );
        let mut found = Found::plain(State::Condition { waiting, lock });
        found.attached = records(&table, |_| Role::Handle);
        Ok(found)
    }

    /// A lock held through a guard: its mutex and the segment whose `RawLock` takes it back.
    struct UserLock<'a> {
        seg: &'a Segment,
    }

    impl CondLock for UserLock<'_> {
        fn release_all(&self) -> io::Result<u32> {
            let mutex = self.seg.mutex().expect("a lock segment has a lock");
            let depth = mutex.held_depth();
            if depth == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "the condition's lock does not name this thread as its holder: the segment is corrupt",
                ));
            }
            for _ in 0..depth {
                mutex.unlock()?;
            }
            Ok(depth)
        }

        fn retake(&self, depth: u32) -> io::Result<bool> {
            let mut poisoned = false;
            for _ in 0..depth {
                // Each level goes back to the guards that took it: forget this `Held`.
                match RawLock::of(self.seg).acquire() {
                    Ok(held) => std::mem::forget(held),
                    Err(LockError::OwnerDied(held)) => {
                        std::mem::forget(held);
                        poisoned = true;
                    }
                    Err(LockError::Os(e)) => return Err(e),
                    Err(e) => {
                        return Err(io::Error::other(format!(
                            "the condition's lock could not be taken back: {e}"
                        )));
                    }
                }
            }
            Ok(poisoned)
        }
    }

    /// Which lock a new [`Condition`] waits with: its `Init`.
    ///
    /// ```
    /// use mpshm::prelude::*;
    /// use mpshm::{Condition, ConditionLock, Lock};
    ///
    /// let pid = std::process::id();
    /// let lock = Lock::create(&format!("doc-cl-{pid}"), ())?;
    /// let cond = Condition::create(&format!("doc-cc-{pid}"), ConditionLock::from(&lock))?;
    /// let guard = cond.acquire().expect("lock");
    /// assert!(lock.try_acquire().is_err()); // the same lock
    /// # drop(guard);
    /// # Ok::<(), mpshm::Error>(())
    /// ```
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    #[non_exhaustive]
    pub enum ConditionLock {
        /// A reentrant lock of its own, as Python's default `RLock`.
        #[default]
        Own,
        /// The [`Lock`](crate::Lock) of this name, which must stay reachable by its name for as long as
        /// others open the condition.
        Lock(String),
        /// The [`RLock`](crate::RLock) of this name, likewise.
        RLock(String),
    }

    impl<K: LockKind> From<&ProcessLock<K>> for ConditionLock {
        fn from(lock: &ProcessLock<K>) -> ConditionLock {
            let name = lock.name().to_owned();
            if K::KIND == Kind::RLock {
                ConditionLock::RLock(name)
            } else {
                ConditionLock::Lock(name)
            }
        }
    }

    /// The lock choice's code in the header's parameters, and its name.
    fn lock_choice(lock: &ConditionLock) -> Result<(u64, &str), Error> {
        Ok(match lock {
            ConditionLock::Own => (OWN, ""),
            ConditionLock::Lock(name) => (USER_LOCK, validate_name(name)?),
            ConditionLock::RLock(name) => (USER_RLOCK, validate_name(name)?),
        })
    }

    /// A condition variable in a named segment (Python's `multiprocessing.Condition`): threads
    /// of any process wait on it while holding its lock, and are woken by a notify from any
    /// other.
    ///
    /// Its lock is its own reentrant lock ([`ConditionLock::Own`], like Python's default
    /// `RLock`), or a [`Lock`](crate::Lock) or [`RLock`](crate::RLock) the user names ([`ConditionLock::from`] the lock),
    /// whose name is stored in the segment and opened again by `open`. Take the lock with [`acquire`](Self::acquire); the
    /// guard waits and notifies. A wait releases the lock however many times this thread holds
    /// it, and takes it back as many times.
    ///
    /// At most 256 threads may wait at once ([`ConditionError::TooManyWaiters`]); each open
    /// handle holds one of 256 process records ([`Error::InUse`] when all are taken).
    ///
    /// ```
    /// use mpshm::prelude::*;
    /// use mpshm::ConditionLock;
    /// use std::time::Duration;
    ///
    /// let name = format!("doc-cond-{}", std::process::id());
    /// let cond = mpshm::Condition::create(&name, ConditionLock::Own)?;
    /// let mut guard = cond.acquire().expect("lock");
    /// // Nobody notifies: the wait times out, and the lock is held again.
    /// assert!(!guard.wait_timeout(Duration::from_millis(1)).expect("wait"));
    /// assert_eq!(guard.notify(1), 0); // nobody waits
    /// # drop(guard);
    /// # Ok::<(), mpshm::Error>(())
    /// ```
    pub struct Condition {
        seg: Segment,
        /// The user's lock segment; `None` for the condition's own lock.
        lock: Option<Segment>,
        attach: Attachment,
        slots: usize,
        records: usize,
    }

    /// `Init` is the [`ConditionLock`] it waits with (an existing condition that
    /// `open_or_create` opens keeps its own). The options' mode, open timeout (also for the
    /// user's lock it opens), type tag and `max_attached` (the records, default 256) apply.
    impl Shm for Condition {
        type Init = ConditionLock;

        fn spec(lock: Option<&ConditionLock>, opts: &Options) -> Result<Spec, Error> {
            let (code, name) = lock_choice(lock.unwrap_or(&ConditionLock::Own))?;
            let records = make::records(opts)?;
            let params = [SLOTS as u64, records as u64, code, name.len() as u64];
            let bytes = payload_bytes(SLOTS, records);
            Ok(make::spec(Kind::Condition, params, bytes, opts))
        }

        fn init(seg: &Segment, lock: &ConditionLock) -> Result<(), Error> {
            let (_, name) = lock_choice(lock)?;
            let mut name_words = [0u64; 4];
            for (i, b) in name.bytes().enumerate() {
                name_words[i / 8] |= u64::from(b) << (8 * (i % 8));
            }
            let off = seg.payload_offset();
            let ctl: &CondCtl = seg.shared(off);
            for (w, v) in ctl.name.iter().zip(name_words) {
                w.store(v, Relaxed);
            }
            let [slots, records, ..] = seg.params();
            let at = off + records_offset(slots as usize);
            Records::init(seg, at, records as usize, RecordData::Nothing)?;
            Ok(())
        }

        fn wrap(
            seg: Segment,
            _: Made,
            _: Option<&ConditionLock>,
            opts: &Options,
        ) -> Result<Self, Error> {
            let seg = make::checked(seg, bytes)?;
            let [slots, records, kind, len] = seg.params();
            let lock = if kind == OWN {
                None
            } else {
                let ctl: &CondCtl = seg.shared(seg.payload_offset());
                let lock_name =
                    String::from_utf8(stored_lock_name(ctl, len)).map_err(|_| Error::Corrupt {
                        name: seg.name().to_owned(),
                        reason: "the name of its lock is not UTF-8".to_owned(),
                    })?;
                let lock_kind = if kind == USER_RLOCK {
                    Kind::RLock
                } else {
                    Kind::Lock
                };
                // Whatever tag the user gave the lock: the condition does not know it.
                let any = Identity::named("", 0, 0, 0, "").any_tag();
                Some(Segment::open(&lock_name, &lock_spec(lock_kind, any), opts)?)
            };
            let cond = Condition {
                seg,
                lock,
                attach: Attachment::default(),
                slots: slots as usize,
                records: records as usize,
            };
            if cond.member().is_none() {
                return Err(table_full(&cond.seg, cond.records));
            }
            Ok(cond)
        }

        fn segment(&self) -> &Segment {
            &self.seg
        }
    }

    impl Condition {
        fn core(&self) -> CondCore<'_> {
            let off = self.seg.payload_offset();
            let ctl: &CondCtl = self.seg.shared(off);
            CondCore {
                ctl,
                slots: self.seg.shared_slice(off + CTL_SIZE, self.slots),
                records: Records::at(
                    &self.seg,
                    off + records_offset(self.slots),
                    self.records,
                    RecordData::Nothing,
                    &ctl.deaths,
                    &self.attach,
                ),
            }
        }

        /// This process's record (claimed again after `fork`): it makes this process's death
        /// wake the sleepers, and a wait's slot names it. A child that finds the table full
        /// cannot wait ([`ConditionError::TooManyProcesses`]); its notifies go on, but its
        /// death inside one then wakes no one (the waiter finds the notify at its timeout).
        fn member(&self) -> Option<Member> {
            match self.core().records.claim() {
                Claim::Held(me) | Claim::New { me, .. } => Some(me),
                Claim::Full => None,
            }
        }

        fn lock_segment(&self) -> &Segment {
            self.lock.as_ref().unwrap_or(&self.seg)
        }

        fn guard<'a>(
            &'a self,
            r: Result<Held<'a>, LockError<Held<'a>>>,
        ) -> Result<ConditionGuard<'a>, LockError<ConditionGuard<'a>>> {
            let wrap = |held| ConditionGuard { cond: self, held };
            r.map(wrap).map_err(|e| e.map(wrap))
        }

        /// Takes the lock (Python's `acquire`, or `with cond:`).
        ///
        /// # Errors
        ///
        /// As [`Lock::acquire`](crate::ProcessLock::acquire): [`LockError::OwnerDied`] with the guard inside when a holder
        /// died holding it; [`LockError::Deadlock`] re-taking a non-reentrant user `Lock`.
        pub fn acquire(&self) -> Result<ConditionGuard<'_>, LockError<ConditionGuard<'_>>> {
            self.guard(RawLock::of(self.lock_segment()).acquire())
        }

        /// Takes the lock only if it is free.
        ///
        /// # Errors
        ///
        /// [`LockError::WouldBlock`], or as [`acquire`](Self::acquire).
        pub fn try_acquire(&self) -> Result<ConditionGuard<'_>, LockError<ConditionGuard<'_>>> {
            self.guard(RawLock::of(self.lock_segment()).try_acquire())
        }

        /// Takes the lock, waiting at most `timeout`.
        ///
        /// # Errors
        ///
        /// [`LockError::Timeout`], or as [`acquire`](Self::acquire).
        pub fn acquire_timeout(
            &self,
            timeout: Duration,
        ) -> Result<ConditionGuard<'_>, LockError<ConditionGuard<'_>>> {
            self.guard(RawLock::of(self.lock_segment()).acquire_timeout(timeout))
        }

        /// The name of the user's lock it waits with; `None` for its own.
        pub fn lock_name(&self) -> Option<&str> {
            self.lock.as_ref().map(Segment::name)
        }
    }

    impl Drop for Condition {
        fn drop(&mut self) {
            self.core().records.leave();
        }
    }

    impl fmt::Debug for Condition {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("Condition")
                .field("name", &self.seg.name())
                .field("lock", &self.lock_name())
                .field("owner", &self.seg.is_owner())
                .finish()
        }
    }

    /// The lock of a [`Condition`], held; waits and notifies go through it. Released when
    /// dropped. Not `Send`: a pthread mutex is released by the thread that took it.
    #[must_use = "the lock is released as soon as the guard is dropped"]
    pub struct ConditionGuard<'a> {
        cond: &'a Condition,
        held: Held<'a>,
    }

    impl ConditionGuard<'_> {
        fn wait_until(&mut self, deadline: Option<Instant>) -> Result<bool, ConditionError> {
            let me = self.cond.member().ok_or(ConditionError::TooManyProcesses {
                max: self.cond.records,
            })?;
            let lock = UserLock {
                seg: self.cond.lock_segment(),
            };
            self.cond.core().wait(me, &lock, deadline)
        }

        /// Releases the lock, sleeps until a notify reaches this thread, and takes the lock back.
        ///
        /// # Errors
        ///
        /// [`ConditionError::OwnerDied`] (the lock is held again) when a holder died holding
        /// the lock; [`ConditionError::TooManyWaiters`] and, in a forked child that found no
        /// free record, [`ConditionError::TooManyProcesses`] (the lock was not released);
        /// [`ConditionError::Os`].
        pub fn wait(&mut self) -> Result<(), ConditionError> {
            self.wait_until(None).map(|_| ())
        }

        /// [`wait`](Self::wait) for at most `timeout` (on the monotonic clock); whether a notify
        /// came (`false`: it timed out). The lock is held again either way.
        ///
        /// # Errors
        ///
        /// As [`wait`](Self::wait).
        pub fn wait_timeout(&mut self, timeout: Duration) -> Result<bool, ConditionError> {
            self.wait_until(deadline(timeout))
        }

        /// Waits while `condition` holds (checked with the lock held, first before any wait):
        /// std's `Condvar::wait_while`.
        ///
        /// # Errors
        ///
        /// As [`wait`](Self::wait).
        pub fn wait_while(
            &mut self,
            mut condition: impl FnMut() -> bool,
        ) -> Result<(), ConditionError> {
            while condition() {
                self.wait_until(None)?;
            }
            Ok(())
        }

        /// Waits until `predicate` holds, or `timeout` has passed (`None`: no limit); the
        /// predicate's last value (Python's `wait_for`).
        ///
        /// # Errors
        ///
        /// As [`wait`](Self::wait).
        pub fn wait_for(
            &mut self,
            mut predicate: impl FnMut() -> bool,
            timeout: Option<Duration>,
        ) -> Result<bool, ConditionError> {
            let end = timeout.and_then(deadline);
            let forever = timeout.is_none() || end.is_none();
            loop {
                if predicate() {
                    return Ok(true);
                }
                if !forever && end.is_some_and(|t| Instant::now() >= t) {
                    return Ok(false);
                }
                self.wait_until(if forever { None } else { end })?;
            }
        }

        /// Wakes at most `n` of the threads waiting now, oldest first (Python's `notify(n)`);
        /// how many it woke.
        pub fn notify(&self, n: usize) -> usize {
            // Recorded, so that a death between a mark and its wake wakes the waiter.
            let _ = self.cond.member();
            self.cond.core().notify(n)
        }

        /// Wakes every thread waiting now; how many.
        pub fn notify_all(&self) -> usize {
            self.notify(usize::MAX)
        }

        /// Declares the data guarded by the lock sound again after `OwnerDied`.
        pub fn mark_consistent(&self) {
            self.held.mark_consistent();
        }
    }

    impl fmt::Debug for ConditionGuard<'_> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("ConditionGuard")
                .field("condition", &self.cond.name())
                .finish_non_exhaustive()
        }
    }
}

/// The shared structures of this module, for the pinned layout (`src/layout.rs`).
#[cfg(all(test, not(loom)))]
pub(crate) fn shared_layout() -> Vec<String> {
    vec![
        crate::layout::pin!(CondCtl {
            tickets,
            high,
            deaths,
            name,
            _reserved
        }),
        crate::layout::pin!(Slot {
            state,
            record,
            ticket,
            mark,
            owner
        }),
        format!(
            "constants: FREE {FREE} WAITING {WAITING} NOTIFIED {NOTIFIED} LEFT {LEFT}; slots at \
             {CTL_SIZE}, then the table"
        ),
    ]
}
