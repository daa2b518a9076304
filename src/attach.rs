//! Who is attached to a shared object, and whether they still live: one record per attachment
//! (a pipe end, an `SpscQueue` role, a queue's producer or consumer, an open handle of a
//! semaphore, event, condition or barrier), in a table in the segment.
//!
//! **The record** is one word, `pid << 32 | (start time as u32)` (the start time from
//! `/proc/<pid>/stat`), 0 when free, claimed with a compare-and-swap: one word, so a claimant
//! never pairs one process's pid with another's start time. A record is taken over only from a
//! holder that is provably dead (its pid is gone, or names a process with another start time),
//! and released only by the process that claimed it: a forked child never releases, closes or
//! detaches what its parent claimed ([`Attachment`] remembers `sys::forks()`); a handle it
//! inherited attaches anew, under the child's pid, when the child first uses it. A table either
//! frees a dead holder's record as soon as someone finds it dead, or keeps the dead word until
//! a new holder takes the record or the object frees it ([`Table::free_dead`]): a pipe's, so
//! that the death stays visible, and a semaphore's or barrier's, whose per-record data must be
//! returned first.
//!
//! **Liveness.** Each record carries a robust process-shared mutex that a thread of the attached
//! process holds while attached (it *arms* the record), and the id of that thread. When the
//! thread dies, the kernel's walk of its robust list marks the mutex word `FUTEX_OWNER_DIED` and
//! wakes one sleeper if `FUTEX_WAITERS` is set; when the process detaches, the thread unlocks,
//! and glibc wakes one sleeper the same way. So a waiter sets `FUTEX_WAITERS` with a
//! compare-and-swap (what a contending `pthread_mutex_lock` does, so the protocol stays
//! glibc's) and sleeps with `futex_waitv` on its data word and the watched mutex words together
//! (see `wait::WaitSet`): a peer's death wakes it at once, where a pidfd would need a watcher
//! thread in every process. Since only one sleeper is woken, it wakes the others through the
//! object's eventcount.
//!
//! What it must allow for:
//! - The robust list is per *thread*: if the arming thread exits while its process lives, the
//!   mutex is marked dead too. A waiter that finds a record's mutex abandoned so confirms the
//!   process's death: it waits on a pidfd (readable once every thread has exited) in short
//!   slices, at most [`EXIT_CONFIRM`] in all, and if the process outlives that, marks the record
//!   unarmed. An unarmed record (its thread gone, or never armed) makes waiters look at that
//!   process again every [`PEER_POLL`](crate::PEER_POLL); its holder arms it again from the
//!   thread at hand on its next slow path (a blocking call about to sleep).
//! - A robust mutex can be unlocked only by the thread that locked it. A handle dropped on
//!   another thread frees its record and leaves the mutex held; the segment keeps its mapping
//!   while a thread of this process holds one (`Segment::register_robust`), since glibc writes
//!   through the robust list when that thread takes its next robust mutex and the kernel walks
//!   it when the thread exits. A free record whose mutex a live thread of another process still
//!   holds is never used for a new attachment while another record is free.
//! - The kernel walks at most 2048 entries of a thread's robust list, so one thread arms at most
//!   [`ARM_LIMIT`] records; beyond that its records stay unarmed (and are watched by polling).
//! - Liveness is judged by pid and thread id, so every process sharing an object must be in one
//!   pid namespace.
//!
//! **Layout** of a table of `n` records at a 64-aligned offset (see `table_size`):
//!
//! | offset | what |
//! |---|---|
//! | 0 | [`TableHead`] (64 B): `ever`, `untracked` |
//! | 64 | holders: `n` × `u64` record words |
//! | 64 + 8n | armed: `n` × `u32`, the thread whose hold of the mutex stands for the holder |
//! | 64 + 8n + 4n, up to a multiple of 8 | mutexes: `n` × glibc's `pthread_mutex_t` (40 B) |
//!
//! and the whole rounded up to 128 bytes.

use std::cell::Cell;
use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed, Release};
use std::sync::atomic::{AtomicU32, AtomicU64};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use crate::segment::{Segment, Shared};
use crate::sys::{self, FUTEX_OWNER_DIED, FUTEX_TID_MASK, FUTEX_WAITERS, LockFail, RobustMutex};
use crate::wait::{Bump, WaitSet};

/// The most records a table may have.
pub(crate) const MAX_ATTACHED: usize = 1024;
/// The most records one thread arms: the kernel walks at most 2048 entries of a thread's robust
/// list at its exit (`ROBUST_LIST_LIMIT`), and the thread's own `Lock` guards need room too.
const ARM_LIMIT: u32 = 1024;
/// How long, in all, waiters wait for a process whose arming thread was found dead to finish
/// exiting, before they take it for a thread that exited on its own.
const EXIT_CONFIRM: Duration = Duration::from_millis(100);
/// The slices of that wait, between which a waiter looks whether it has something else to do.
const CONFIRM_SLICE: Duration = Duration::from_millis(1);

/// The head of a table.
#[repr(C, align(64))]
pub(crate) struct TableHead {
    /// 1 once any record of the table was claimed (or an untracked attachment made): a queue
    /// side with no one attached is "gone" only if someone was.
    ever: AtomicU32,
    /// Attachments that found no free record: counted, never known dead.
    untracked: AtomicU32,
}

// SAFETY: atomics only: every bit pattern is valid and all mutation is atomic.
unsafe impl Shared for TableHead {}

const HEAD_SIZE: usize = std::mem::size_of::<TableHead>();
const MUTEX_SIZE: usize = std::mem::size_of::<RobustMutex>();
const _: () = assert!(HEAD_SIZE == 64 && MUTEX_SIZE.is_multiple_of(8));

/// Offsets in a table of `n` records: `(armed, mutexes, total)`; the holders start at
/// [`HEAD_SIZE`].
fn layout(n: usize) -> (usize, usize, usize) {
    let armed = HEAD_SIZE + 8 * n;
    let mutexes = (armed + 4 * n).next_multiple_of(8);
    let total = (mutexes + MUTEX_SIZE * n).next_multiple_of(128);
    (armed, mutexes, total)
}

/// Bytes of a table of `n` records.
pub(crate) fn table_size(n: usize) -> usize {
    layout(n).2
}

thread_local! {
    /// Liveness mutexes this thread holds. Read with `try_with`: a handle may attach or detach
    /// in a thread-local destructor, where thread-locals may be gone.
    static ARMED_HERE: Cell<u32> = const { Cell::new(0) };
}

/// This process's record word, read again after a `fork`.
pub(crate) fn my_word() -> u64 {
    static WORD: AtomicU64 = AtomicU64::new(0);
    /// `sys::forks() + 1` when `WORD` was computed.
    static AT: AtomicU32 = AtomicU32::new(0);
    // Registers the fork counter before it is read.
    let (pid, _) = sys::thread_ids();
    let forks = sys::forks().wrapping_add(1);
    // Acquire: pairs with the Release store below, after `WORD`.
    if AT.load(Acquire) == forks {
        return WORD.load(Relaxed);
    }
    let word = (u64::from(pid) << 32) | u64::from(sys::process_start_time(pid) as u32);
    WORD.store(word, Relaxed);
    // Release: pairs with the Acquire load above.
    AT.store(forks, Release);
    word
}

fn pid_of(word: u64) -> u32 {
    (word >> 32) as u32
}

/// Whether the process recorded in `word` still runs; `mine` is this process's own word.
fn holder_alive(word: u64, mine: u64) -> bool {
    if word == mine {
        return true;
    }
    let (pid, start) = (pid_of(word), word as u32);
    if pid == pid_of(mine) {
        // An earlier process that had our pid: it is gone.
        return false;
    }
    match sys::process_start_time(pid) {
        // No start time to compare, on either side: the pid alone decides.
        now if now == 0 || start == 0 => sys::process_alive(pid, 0),
        now => now as u32 == start && sys::process_alive(pid, now),
    }
}

/// What a record says of its holder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Holder {
    Free,
    Alive,
    /// Provably dead; the word it left.
    Dead(u64),
}

/// What a record's liveness mutex says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Arming {
    /// Held by the thread named in `armed`: the holder is alive, and the kernel wakes a sleeper
    /// on the word (whose value this is) when that thread dies.
    Armed(u32),
    /// The thread named in `armed` died holding it: the process died, or just that thread.
    Abandoned(u32),
    /// Nothing to sleep on: the holder's liveness is looked at by polling.
    Unarmed,
}

/// What a sleeper should do after watching a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Watch {
    Sleep,
    /// Something changed (a holder was found dead): look again instead of sleeping.
    Changed,
}

/// A view of a table of records in a segment.
#[derive(Clone, Copy)]
pub(crate) struct Table<'a> {
    seg: &'a Segment,
    off: usize,
    head: &'a TableHead,
    holders: &'a [AtomicU64],
    armed: &'a [AtomicU32],
    /// What whoever finds a holder dead does with its record.
    dead: DeadHolders,
}

/// What a [`Table`] does with the record of a holder found dead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DeadHolders {
    /// Whoever finds it dead frees the record (queue sides, SPSC roles, events, conditions).
    Free,
    /// The dead holder's word stays until a new holder takes the record, or the object frees
    /// it with [`free_dead`](Table::free_dead), so that the death stays visible (pipe ends;
    /// semaphores and barriers, until they have returned what the holder held).
    Keep,
}

impl<'a> Table<'a> {
    /// The table of `n` records at `off` in `seg` (bounds checked by the segment).
    pub(crate) fn at(seg: &'a Segment, off: usize, n: usize, dead: DeadHolders) -> Table<'a> {
        let (armed, _, _) = layout(n);
        Table {
            seg,
            off,
            head: seg.shared(off),
            holders: seg.shared_slice(off + HEAD_SIZE, n),
            armed: seg.shared_slice(off + armed, n),
            dead,
        }
    }

    /// Initialises the table's mutexes; by the creator, before it publishes the segment.
    pub(crate) fn init(&self) -> std::io::Result<()> {
        (0..self.len()).try_for_each(|i| self.seg.init_robust(self.mutex_offset(i)))
    }

    pub(crate) fn len(&self) -> usize {
        self.holders.len()
    }

    fn mutex_offset(&self, i: usize) -> usize {
        self.off + layout(self.len()).1 + i * MUTEX_SIZE
    }

    fn mutex(&self, i: usize) -> &'a RobustMutex {
        self.seg.shared(self.mutex_offset(i))
    }

    /// Records that someone attached to this table (see [`TableHead::ever`]).
    fn mark_ever(&self) {
        // Release: after the claim (or count) it follows; pairs with the Acquire load in
        // `none_alive`, so a reader that sees the mark sees that attachment too.
        self.head.ever.store(1, Release);
    }

    fn arming(&self, i: usize) -> Arming {
        // Acquire, both: pair with the Release store in `arm`, and with the kernel's update of
        // the word at the owner's death (a full barrier), so that what the holder wrote before
        // it died is seen by whoever sees it dead.
        let a = self.armed[i].load(Acquire);
        let m = self.mutex(i).word().load(Acquire);
        let tid = m & FUTEX_TID_MASK;
        if a != 0 && tid == a && m & FUTEX_OWNER_DIED == 0 {
            Arming::Armed(m)
        } else if a != 0 && tid == 0 && m & FUTEX_OWNER_DIED != 0 {
            Arming::Abandoned(a)
        } else {
            Arming::Unarmed
        }
    }

    /// Whether the holder `held` of record `i` is alive: an armed record says so at once, any
    /// other is looked up in `/proc`.
    fn alive(&self, i: usize, held: u64, mine: u64) -> bool {
        held == mine || matches!(self.arming(i), Arming::Armed(_)) || holder_alive(held, mine)
    }

    /// What record `i` says of its holder.
    pub(crate) fn holder(&self, i: usize) -> Holder {
        // Acquire: pairs with the claim's AcqRel compare-and-swap.
        match self.holders[i].load(Acquire) {
            0 => Holder::Free,
            w if self.alive(i, w, my_word()) => Holder::Alive,
            w => {
                self.dead_holder_found(i, w);
                Holder::Dead(w)
            }
        }
    }

    /// Frees record `i`, found held by the dead `w`, where this table frees dead holders.
    fn dead_holder_found(&self, i: usize, w: u64) {
        if self.dead == DeadHolders::Free {
            self.free_dead(i, w);
        }
    }

    /// Frees record `i`, found held by the dead `w` (see [`holder`](Self::holder)), unless a
    /// new holder took it meanwhile: for a table that keeps dead holders' words, once the
    /// object has returned what the dead one held.
    pub(crate) fn free_dead(&self, i: usize, w: u64) {
        let a = self.armed[i].load(Relaxed);
        // Release: as a release by the holder; pairs with the next claimant's Acquire.
        if self.holders[i]
            .compare_exchange(w, 0, Release, Relaxed)
            .is_ok()
        {
            // Unless a new holder armed the record in the meantime.
            let _ = self.armed[i].compare_exchange(a, 0, Relaxed, Relaxed);
        }
    }

    /// Whether someone attached to this table once and no one (alive) is now: a side of a
    /// queue is then gone. Untracked attachments count as alive for ever.
    pub(crate) fn none_alive(&self) -> bool {
        // Acquire: pairs with the Release store in `mark_ever`.
        if self.head.ever.load(Acquire) == 0 || self.head.untracked.load(Relaxed) != 0 {
            return false;
        }
        (0..self.len()).all(|i| self.holder(i) != Holder::Alive)
    }

    /// Claims record `i` for `mine` if it is free or its holder is dead.
    pub(crate) fn claim(&self, i: usize, mine: u64) -> bool {
        let word = &self.holders[i];
        let mut held = word.load(Relaxed);
        loop {
            if held != 0 && self.alive(i, held, mine) {
                return false;
            }
            // AcqRel: the new holder starts after whatever the previous one did (its Release in
            // `release`), and publishes itself to the next claimant and to watchers.
            match word.compare_exchange(held, mine, AcqRel, Relaxed) {
                Ok(_) => return true,
                Err(now) => held = now,
            }
        }
    }

    /// Moves record `i` from `from` (a claim this handle made in an ancestor process, before a
    /// `fork`) to `mine`.
    pub(crate) fn take_over(&self, i: usize, from: u64, mine: u64) -> bool {
        // AcqRel: as in `claim`.
        from != mine
            && self.holders[i]
                .compare_exchange(from, mine, AcqRel, Relaxed)
                .is_ok()
    }

    /// Claims any free record (or one whose holder died) for `mine`: its index, and the word
    /// it held (0 if it was free; else the dead holder's).
    pub(crate) fn claim_any(&self, mine: u64) -> Option<(usize, u64)> {
        (0..self.len()).find_map(|i| {
            let held = self.holders[i].load(Relaxed);
            ((held == 0 || !self.alive(i, held, mine))
                && !self.locked_elsewhere(i)
                // AcqRel: as in `claim`.
                && self.holders[i]
                    .compare_exchange(held, mine, AcqRel, Relaxed)
                    .is_ok())
            .then_some((i, held))
        })
    }

    /// Whether record `i` holds `word` and its holder is alive (see [`holder`](Self::holder)).
    pub(crate) fn holds_alive(&self, i: usize, word: u64) -> bool {
        // Read again after the liveness check: a word that was there before and after it was
        // there throughout (a dead holder's word is never claimed again), so the check was of
        // its holder.
        self.holds(i, word) && self.alive(i, word, my_word()) && self.holds(i, word)
    }

    /// Whether record `i`'s mutex is still held by a live thread of another process (its last
    /// holder detached on a thread other than the one that armed it): it cannot be armed.
    fn locked_elsewhere(&self, i: usize) -> bool {
        let m = self.mutex(i).word().load(Relaxed);
        let tid = m & FUTEX_TID_MASK;
        tid != 0 && m & FUTEX_OWNER_DIED == 0 && !sys::thread_of_this_process(tid)
    }

    /// Arms record `i`, which this process holds, from this thread: locks its mutex (or finds a
    /// thread of this process holding it). Returns the thread whose hold now stands for this
    /// process, or 0 if none could be had (the record stays unarmed).
    pub(crate) fn arm(&self, i: usize) -> u32 {
        let m = self.mutex(i);
        let me = sys::current_tid();
        // A thread whose thread-locals are gone is exiting: arming from it would only stage a
        // death; the record stays unarmed (polled).
        let full = ARMED_HERE
            .try_with(Cell::get)
            .map_or(true, |n| n >= ARM_LIMIT);
        let tid = match if full {
            Err(LockFail::Busy)
        } else {
            m.try_lock()
        } {
            Ok(_) => {
                let _ = ARMED_HERE.try_with(|n| n.set(n.get() + 1));
                me
            }
            // This thread holds it already: an earlier attachment of this process left it.
            Err(LockFail::Deadlock) => me,
            // Held: by a thread of this process (left the same way), which stands for us too.
            Err(LockFail::Busy) => {
                let t = m.word().load(Relaxed) & FUTEX_TID_MASK;
                if t != 0 && sys::thread_of_this_process(t) {
                    t
                } else {
                    0
                }
            }
            Err(LockFail::Os(_)) => 0,
        };
        if tid != 0 {
            self.seg.register_robust(self.mutex_offset(i));
        }
        // Release: pairs with the Acquire load in `arming`; the lock is taken before.
        self.armed[i].store(tid, Release);
        tid
    }

    /// Whether record `i` is armed: its holder is alive, and the kernel tells a sleeper when it
    /// dies.
    pub(crate) fn armed(&self, i: usize) -> bool {
        matches!(self.arming(i), Arming::Armed(_))
    }

    /// Whether record `i` was armed by a thread that died since: its holder may be dead, or
    /// dying.
    pub(crate) fn abandoned(&self, i: usize) -> bool {
        matches!(self.arming(i), Arming::Abandoned(_))
    }

    /// Whether record `i` is armed by `tid`, as its holder left it.
    pub(crate) fn armed_by(&self, i: usize, tid: u32) -> bool {
        tid != 0 && self.armed[i].load(Relaxed) == tid && matches!(self.arming(i), Arming::Armed(_))
    }

    /// Whether record `i` holds `word`.
    pub(crate) fn holds(&self, i: usize, word: u64) -> bool {
        self.holders[i].load(Relaxed) == word
    }

    /// Releases record `i`, claimed with `word` by this process: unlocks its mutex if this
    /// thread holds it (another thread's hold stays, see the module docs) and frees the record.
    pub(crate) fn release(&self, i: usize, word: u64) {
        if !self.holds(i, word) {
            // Taken over already (by a forked child this handle was handed to).
            return;
        }
        // Unarmed first, so that no watcher takes the unlock below for the holder's death.
        self.armed[i].store(0, Relaxed);
        let m = self.mutex(i);
        if m.word().load(Relaxed) & FUTEX_TID_MASK == sys::current_tid() && m.unlock().is_ok() {
            let _ = ARMED_HERE.try_with(|n| n.set(n.get().saturating_sub(1)));
        }
        // Release: pairs with the next claimant's AcqRel compare-and-swap.
        let _ = self.holders[i].compare_exchange(word, 0, Release, Relaxed);
    }

    /// Counts an attachment that found no free record.
    fn count_untracked(&self, by: i32) {
        if by > 0 {
            self.head.untracked.fetch_add(1, Relaxed);
        } else {
            self.head.untracked.fetch_sub(1, Relaxed);
        }
    }

    /// Adds to `set` what a sleeper waiting on record `i`'s holder watches (`bump`: the
    /// eventcounts to wake when the holder changes): the mutex word of an armed holder; a
    /// bound on the sleep for an unarmed one. An abandoned mutex (the arming thread died) is
    /// confirmed here first (see the module docs): [`Watch::Changed`] once the holder is
    /// found dead, or when `set`'s eventcounts move meanwhile.
    pub(crate) fn watch(&self, i: usize, set: &mut WaitSet<'a>, bump: Bump<'a>) -> Watch {
        // Acquire: as in `holder`.
        let w = self.holders[i].load(Acquire);
        if w == 0 || w == my_word() {
            return Watch::Sleep;
        }
        match self.arming(i) {
            Arming::Armed(m) if set.kernel() => {
                let want = m | FUTEX_WAITERS;
                // What a contending `pthread_mutex_lock` does: the owner's unlock, and the
                // kernel at the owner's death, then wake one sleeper on the word. Relaxed: the
                // futex call compares the value itself.
                if m != want
                    && self
                        .mutex(i)
                        .word()
                        .compare_exchange(m, want, Relaxed, Relaxed)
                        .is_err()
                {
                    return Watch::Changed;
                }
                set.liveness(self.mutex(i).word(), want, bump);
                Watch::Sleep
            }
            Arming::Abandoned(a) => self.confirm(i, w, a, set, bump),
            Arming::Armed(_) | Arming::Unarmed => {
                set.poll_within(crate::PEER_POLL);
                Watch::Sleep
            }
        }
    }

    /// [`watch`](Self::watch) for every record.
    pub(crate) fn watch_all(&self, set: &mut WaitSet<'a>, bump: Bump<'a>) -> Watch {
        for i in 0..self.len() {
            if self.watch(i, set, bump) == Watch::Changed {
                return Watch::Changed;
            }
        }
        Watch::Sleep
    }

    /// The thread `a` that armed record `i` for holder `w` died: waits for the process to
    /// finish exiting, in slices, at most [`EXIT_CONFIRM`] in all (summed over the calls of
    /// this process); if it outlives that, the record is marked unarmed. A slice ends early,
    /// and the confirmation with it, when `set`'s eventcounts move or its sleeper's wait is
    /// over.
    fn confirm(&self, i: usize, w: u64, a: u32, set: &mut WaitSet<'a>, bump: Bump<'a>) -> Watch {
        let pid = pid_of(w);
        let start = sys::process_start_time(pid);
        if start != 0 && start as u32 != w as u32 {
            // The pid names another process now.
            self.dead_holder_found(i, w);
            bump.wake();
            return Watch::Changed;
        }
        loop {
            let spent = confirming(w, a, Duration::ZERO);
            if spent >= EXIT_CONFIRM {
                // The process lives on: only the thread exited. Polling until it arms again.
                confirming_done(w, a);
                let _ = self.armed[i].compare_exchange(a, 0, Relaxed, Relaxed);
                set.poll_within(crate::PEER_POLL);
                return Watch::Sleep;
            }
            let slice = set.at_most(CONFIRM_SLICE);
            if sys::wait_for_exit(pid, start, slice) {
                confirming_done(w, a);
                self.dead_holder_found(i, w);
                bump.wake();
                return Watch::Changed;
            }
            confirming(w, a, slice);
            if set.changed()
                || set.expired()
                || !self.holds(i, w)
                || self.arming(i) != Arming::Abandoned(a)
            {
                return Watch::Changed;
            }
        }
    }
}

/// Confirmations in progress in this process: how long waiters have waited for the process of
/// a record `(word, armed thread)` to exit.
fn confirmations() -> MutexGuard<'static, Vec<((u64, u32), Duration)>> {
    static IN_PROGRESS: Mutex<Vec<((u64, u32), Duration)>> = Mutex::new(Vec::new());
    IN_PROGRESS.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Adds `more` to the time spent confirming `(w, a)`; the total.
fn confirming(w: u64, a: u32, more: Duration) -> Duration {
    let mut all = confirmations();
    match all.iter_mut().find(|(k, _)| *k == (w, a)) {
        Some((_, spent)) => {
            *spent += more;
            *spent
        }
        None => {
            // Bounded: an entry whose confirmation nobody finished (its record was taken over
            // meanwhile) goes first.
            if all.len() >= 64 {
                all.remove(0);
            }
            all.push(((w, a), more));
            more
        }
    }
}

fn confirming_done(w: u64, a: u32) {
    confirmations().retain(|(k, _)| *k != (w, a));
}

/// Where a handle's attachment is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    Record(usize),
    /// Counted in the table's `untracked`.
    Untracked,
}

/// What this process holds through a handle.
#[derive(Debug, Clone, Copy)]
struct Held {
    slot: Slot,
    /// The record word it claimed with (this process's, at the time).
    word: u64,
    /// The thread whose hold of the record's mutex stands for it (0: unarmed).
    tid: u32,
    /// `sys::forks()` when it attached: held by this process only while it still reads so.
    forks: u32,
}

/// What [`Attachment::attach_any`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Attached {
    /// The handle was attached in this process already.
    Already,
    /// It claimed record `index`, which held `prev`: 0 if it was free, else the word of the
    /// dead holder it was taken from.
    Record { index: usize, prev: u64 },
    /// No record was free: the attachment is counted in the table's `untracked`.
    Untracked,
}

/// A handle's attachment in one role (a producer, a consumer, a pipe end): process-local.
#[derive(Debug, Default)]
pub(crate) struct Attachment {
    /// `sys::forks() + 1` while attached in this process, 0 before: read on every operation.
    mark: AtomicU32,
    /// The record held (plus one; 0: none or untracked) and the thread that armed it, as in
    /// `held`, for `rearm`'s look without the lock.
    record: AtomicU32,
    armed_by: AtomicU32,
    held: Mutex<Option<Held>>,
}

impl Attachment {
    fn held(&self) -> MutexGuard<'_, Option<Held>> {
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether this handle is attached in this process (not only in an ancestor before a fork).
    #[inline]
    pub(crate) fn attached(&self) -> bool {
        self.mark.load(Relaxed) == sys::forks().wrapping_add(1)
    }

    fn set(&self, held: &mut Option<Held>, h: Held) {
        *held = Some(h);
        let record = match h.slot {
            Slot::Record(i) => i as u32 + 1,
            Slot::Untracked => 0,
        };
        self.record.store(record, Relaxed);
        self.armed_by.store(h.tid, Relaxed);
        self.mark.store(h.forks.wrapping_add(1), Relaxed);
    }

    /// The record this handle holds in this process, if it is attached here to one.
    #[inline]
    pub(crate) fn record(&self) -> Option<usize> {
        // Relaxed: set by this process's own `attach_any` (under `held`), before `mark`.
        let record = self.record.load(Relaxed);
        (self.attached() && record != 0).then(|| record as usize - 1)
    }

    /// Attaches to any free record of `table` (a queue's first put or get through this handle
    /// in this process); untracked when none is free.
    #[cold]
    pub(crate) fn attach_any(&self, table: &Table<'_>) -> Attached {
        let mut held = self.held();
        if self.attached() {
            return Attached::Already;
        }
        // Anything held before belongs to an ancestor process: left as it is.
        let (word, forks) = (my_word(), sys::forks());
        let (h, attached) = match table.claim_any(word) {
            Some((i, prev)) => (
                Held {
                    slot: Slot::Record(i),
                    word,
                    tid: table.arm(i),
                    forks,
                },
                Attached::Record { index: i, prev },
            ),
            None => {
                table.count_untracked(1);
                (
                    Held {
                        slot: Slot::Untracked,
                        word,
                        tid: 0,
                        forks,
                    },
                    Attached::Untracked,
                )
            }
        };
        table.mark_ever();
        self.set(&mut held, h);
        attached
    }

    /// Attaches to record `i` of `table` (a role), if it is free or its holder dead; or, in a
    /// forked child, takes over the record this handle held in its ancestor. Whether it is
    /// attached now.
    pub(crate) fn attach_at(&self, table: &Table<'_>, i: usize) -> bool {
        let mut held = self.held();
        if self.attached() {
            return true;
        }
        let (word, forks) = (my_word(), sys::forks());
        let inherited = held.map(|h| h.word);
        if !(inherited.is_some_and(|from| table.take_over(i, from, word)) || table.claim(i, word)) {
            return false;
        }
        let h = Held {
            slot: Slot::Record(i),
            word,
            tid: table.arm(i),
            forks,
        };
        table.mark_ever();
        self.set(&mut held, h);
        true
    }

    /// Whether this handle, attached in this process, still holds its record (a forked child
    /// it was handed to may have taken it over).
    pub(crate) fn holds(&self, table: &Table<'_>) -> bool {
        let held = self.held();
        match *held {
            Some(h) if self.attached() => match h.slot {
                Slot::Record(i) => table.holds(i, h.word),
                Slot::Untracked => true,
            },
            _ => false,
        }
    }

    /// Arms the record again if the thread that armed it is gone (or it never was armed): on a
    /// slow path of the holder.
    pub(crate) fn rearm(&self, table: &Table<'_>) {
        // Relaxed, all: a hint, looked at again under the lock before anything is done.
        let record = self.record.load(Relaxed);
        if !self.attached()
            || record == 0
            || table.armed_by(record as usize - 1, self.armed_by.load(Relaxed))
        {
            return;
        }
        let mut held = self.held();
        if let Some(h) = held.as_mut()
            && let Slot::Record(i) = h.slot
            && table.holds(i, h.word)
            && !table.armed_by(i, h.tid)
        {
            h.tid = table.arm(i);
            self.armed_by.store(h.tid, Relaxed);
        }
    }

    /// Detaches, if attached in this process; whether it was. Never touches what an ancestor
    /// process attached through this handle.
    pub(crate) fn detach(&self, table: &Table<'_>) -> bool {
        let mut held = self.held();
        if !self.attached() {
            return false;
        }
        let Some(h) = held.take() else {
            return false;
        };
        self.mark.store(0, Relaxed);
        self.record.store(0, Relaxed);
        match h.slot {
            Slot::Record(i) => table.release(i, h.word),
            Slot::Untracked => table.count_untracked(-1),
        }
        true
    }
}

#[cfg(all(test, not(miri)))]
mod tests {
    use super::*;

    #[test]
    fn layout_is_aligned_and_grows_with_n() {
        for n in [1, 2, 3, 32, MAX_ATTACHED] {
            let (armed, mutexes, total) = layout(n);
            assert_eq!(armed, 64 + 8 * n);
            assert_eq!(mutexes % 8, 0);
            assert!(mutexes >= armed + 4 * n);
            assert_eq!(total % 128, 0);
            assert!(total >= mutexes + 40 * n);
        }
    }

    #[test]
    fn my_word_names_this_process() {
        let w = my_word();
        assert_eq!(pid_of(w), std::process::id());
        assert!(holder_alive(w, w));
        // An earlier process with our pid and another start time is dead.
        assert!(!holder_alive(w ^ 1, w));
    }
}

/// One held record, as [`Table::peek`] reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Peeked {
    pub(crate) index: usize,
    pub(crate) pid: u32,
    /// Whether the holder lives (its record armed, or its pid and start time in `/proc`).
    pub(crate) alive: bool,
    /// Whether a live thread of the holder holds the record's liveness mutex, so that the
    /// kernel tells a sleeper of its death.
    pub(crate) armed: bool,
}

impl Table<'_> {
    /// Every held record, read without changing anything (for `mpshm::inspect`): a dead
    /// holder's record is reported dead, never freed here.
    pub(crate) fn peek(&self) -> Vec<Peeked> {
        let mine = my_word();
        (0..self.len())
            .filter_map(|i| {
                // Acquire: as in `holder`.
                let word = self.holders[i].load(Acquire);
                (word != 0).then(|| Peeked {
                    index: i,
                    pid: pid_of(word),
                    alive: self.alive(i, word, mine),
                    armed: self.armed(i),
                })
            })
            .collect()
    }

    /// Attachments counted without a record (the table was full), which are never found dead.
    pub(crate) fn untracked(&self) -> u32 {
        self.head.untracked.load(Relaxed)
    }
}

/// A table's layout, for the pinned layout (`src/layout.rs`).
#[cfg(test)]
pub(crate) fn shared_layout() -> Vec<String> {
    vec![
        crate::layout::pin!(TableHead { ever, untracked }),
        format!(
            "constants: record pid << 32 | start as u32; (armed, mutexes, total) of 2 records \
             {:?}, of 32 {:?}; at most {MAX_ATTACHED}",
            layout(2),
            layout(32)
        ),
    ]
}
