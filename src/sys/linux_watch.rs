//! The watch on robust-mutex waits: what keeps a lost wake-up from stranding a waiter, without
//! a timer on every sleep.
//!
//! A robust mutex can lose a wake-up. An unlock clears the waiters bit and wakes one sleeper;
//! if that one is killed before it takes the mutex, and another thread takes it first without
//! contention (so without the bit), the kernel's exit handling wakes nobody (the dead thread
//! held nothing) and the new owner's unlock wakes nobody (no bit): the other sleepers sleep
//! until some later contended unlock, or for ever.
//!
//! The locks used to bound that by sleeping in 10 ms slices (`pthread_mutex_trylock`, then
//! `pthread_mutex_clocklock` with a deadline, again and again). Both halves cost: the failed
//! `trylock` pulls the mutex's line away from its holder once more per contended take, and a
//! sleep with a timeout arms and cancels a timer in the kernel (on a virtual machine, a trip to
//! the hypervisor each). Two processes incrementing a locked counter ran at 0.7 to 0.8 of the
//! rate of the same two taking the mutex with a plain `pthread_mutex_lock` (DESIGN.md, "The
//! locked counter").
//!
//! So a wait now announces itself instead: before it calls the C library, a thread writes the
//! address of the mutex's lock word into a record of its own (two plain stores, and one more
//! after), and one thread per process, the watcher, looks at every record each [`TICK`]. A
//! thread found inside the same wait at two looks in a row has its lock word woken
//! (`FUTEX_WAKE` of one sleeper on it, in whichever process the kernel picks). A wake that
//! finds the mutex still held costs the woken a look at the word and a sleep again (the C
//! library's wait loop: it sets the waiters bit once more, which heals a bit lost as above); one
//! that finds it free takes it, with the waiters bit set (as every thread that slept takes it),
//! so that its unlock wakes the next sleeper. Either way the chain of wake-ups that a lost one
//! broke starts again, and no waiter sleeps through a lost wake-up for more than about two
//! ticks plus its turn.
//!
//! The watcher is started by the first wait in each process that finds a lock busy (until then a
//! wait tries `trylock` first, which never sleeps; again in a forked child, which has no threads
//! but the one that forked), and stopped for a `fork` that needs the process to
//! run one thread ([`stop`]; the next wait starts it again). It never touches the memory it
//! watches: it hands the kernel an address, and a wake of an address that was unmapped
//! meanwhile fails with `EFAULT`, or, if something else is mapped there now, wakes that word's
//! sleepers once, which every futex sleeper tolerates. Where no thread can be started, waits go
//! back to the slices.

use std::cell::Cell;
use std::ptr;
use std::sync::Mutex;
use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed, Release};
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicU64};
use std::thread::JoinHandle;
use std::time::Duration;

/// How often the watcher looks while some thread waits: a stranded waiter is woken between one
/// and two ticks after it went to sleep.
const TICK: Duration = Duration::from_millis(10);

/// How often it looks while no thread waited at its last look. A wait that starts meanwhile is
/// seen at the next look; the cost is a later rescue, only ever for a lost wake-up.
const IDLE_TICK: Duration = Duration::from_millis(100);

/// One thread's record, in a list that only grows: records are leaked, and a thread that ends
/// gives its record back for the next new thread to take.
struct Record {
    next: *const Record,
    /// Whether a live thread owns this record.
    taken: AtomicBool,
    /// The lock word its owner is waiting on, or null.
    word: AtomicPtr<u32>,
    /// Counts its owner's waits, so that two looks can tell one long wait from two short ones.
    waits: AtomicU64,
    /// [`super::forks`] when its owner last started a wait: records of threads that did not
    /// come through a `fork` into this process are left alone.
    forks: AtomicU32,
}

// SAFETY: `next` is written once, before the record is published, and only read after; every
// other field is atomic.
unsafe impl Sync for Record {}

/// The newest record; each links to the one before.
static RECORDS: AtomicPtr<Record> = AtomicPtr::new(ptr::null_mut());

/// The watcher's state: `forks << 3 | state`, for the process [`super::forks`] names.
static WATCHER: AtomicU64 = AtomicU64::new(0);
const NONE: u64 = 0;
const STARTING: u64 = 1;
const RUNNING: u64 = 2;
const FAILED: u64 = 3;
const STOPPING: u64 = 4;
const STATE: u64 = 7;

/// What the watcher sleeps on between looks, and what [`stop`] rings.
static BELL: AtomicU32 = AtomicU32::new(0);

/// The watcher's thread, with the [`super::forks`] it was started under (a handle inherited
/// through a `fork` names a thread that is not in this process).
static HANDLE: Mutex<Option<(u32, JoinHandle<()>)>> = Mutex::new(None);

/// `state` for the process `forks` names, as [`WATCHER`] holds it.
fn watcher(forks: u32, state: u64) -> u64 {
    u64::from(forks) << 3 | state
}

/// This thread's record, given back when the thread ends.
struct Mine(Cell<*const Record>);

impl Drop for Mine {
    fn drop(&mut self) {
        let r = self.0.get();
        if !r.is_null() {
            // SAFETY: records are never freed.
            let r = unsafe { &*r };
            r.word.store(ptr::null_mut(), Relaxed);
            // Release: pairs with the Acquire of the next thread's claim; our last stores are
            // done before it writes.
            r.taken.store(false, Release);
        }
    }
}

thread_local! {
    static MINE: Mine = const { Mine(Cell::new(ptr::null())) };
}

/// Runs `wait` (a C library call that may sleep on the lock word at `word`) where the watcher
/// sees it. Until this process has a watcher, `take` runs first (a call that takes a free lock
/// and never sleeps: `Some` with its result, `None` if the lock is busy), so that a process
/// that never finds a lock busy never starts one. `None` (without running `wait`) where there
/// is no watcher and none could be started, or this thread is ending, so that the caller
/// waits in slices instead.
#[inline]
pub(super) fn watched(
    word: *mut u32,
    take: impl FnOnce() -> Option<i32>,
    wait: impl FnOnce() -> i32,
) -> Option<i32> {
    let forks = super::forks();
    // Acquire: pairs with `start`'s Release store of RUNNING.
    if WATCHER.load(Acquire) != watcher(forks, RUNNING) {
        if let Some(rc) = take() {
            return Some(rc);
        }
        if !start(forks) {
            return None;
        }
    }
    let record = MINE.try_with(|m| {
        let r = m.0.get();
        if r.is_null() {
            let r = claim();
            m.0.set(r);
            r
        } else {
            r
        }
    });
    let Ok(record) = record else {
        return None;
    };
    // SAFETY: records are never freed.
    let record = unsafe { &*record };
    // Relaxed, all: the watcher only needs to see them eventually; a look that misses one wait
    // sees it at the next tick, and one that mixes two waits up at worst wakes a word once.
    record
        .waits
        .store(record.waits.load(Relaxed).wrapping_add(1), Relaxed);
    record.forks.store(forks, Relaxed);
    record.word.store(word, Relaxed);
    let rc = wait();
    record.word.store(ptr::null_mut(), Relaxed);
    Some(rc)
}

/// A record for this thread: a free one, or a new one.
#[cold]
fn claim() -> *const Record {
    // Acquire: pairs with the Release push below, by whichever thread made each record.
    let mut r = RECORDS.load(Acquire);
    while !r.is_null() {
        // SAFETY: records are never freed.
        let rec = unsafe { &*r };
        // Acquire: pairs with the Release of the thread that gave it back.
        if !rec.taken.load(Relaxed)
            && rec
                .taken
                .compare_exchange(false, true, Acquire, Relaxed)
                .is_ok()
        {
            return r;
        }
        r = rec.next.cast_mut();
    }
    let mut head = RECORDS.load(Relaxed);
    let new = Box::leak(Box::new(Record {
        next: head,
        taken: AtomicBool::new(true),
        word: AtomicPtr::new(ptr::null_mut()),
        waits: AtomicU64::new(0),
        forks: AtomicU32::new(0),
    }));
    loop {
        // Release: publishes `next` and the fields with the record; pairs with the Acquire
        // loads of `RECORDS`.
        match RECORDS.compare_exchange_weak(head, new, Release, Relaxed) {
            Ok(_) => return new,
            Err(now) => {
                head = now;
                new.next = head;
            }
        }
    }
}

/// Starts the watcher for this process (`forks` names it) unless another thread is starting or
/// stopping it; whether one runs.
#[cold]
#[inline(never)]
fn start(forks: u32) -> bool {
    // Acquire: pairs with the Release stores of the state below and in `stop`.
    let now = WATCHER.load(Acquire);
    if now >> 3 == u64::from(forks) && now & STATE != NONE {
        return now == watcher(forks, RUNNING);
    }
    // Acquire/Release: one thread of this process wins the start; the others wait in slices
    // meanwhile.
    if WATCHER
        .compare_exchange(now, watcher(forks, STARTING), AcqRel, Relaxed)
        .is_err()
    {
        return WATCHER.load(Acquire) == watcher(forks, RUNNING);
    }
    let spawned = std::thread::Builder::new()
        .name("mpshm-lock-watch".into())
        .stack_size(64 << 10)
        .spawn(move || watch(forks));
    let running = match spawned {
        Ok(handle) => {
            // `try_lock`: a `fork` while another thread held it leaves it held for ever in the
            // child; the watcher then runs detached there, and `stop` leaves it running.
            if let Ok(mut slot) = HANDLE.try_lock()
                && let Some((was, old)) = slot.replace((forks, handle))
                && was != forks
            {
                // A thread of the parent's: joining or detaching it here would act on a
                // thread this process does not have.
                std::mem::forget(old);
            }
            true
        }
        Err(_) => false,
    };
    let state = if running { RUNNING } else { FAILED };
    // Release: pairs with the Acquire loads above.
    WATCHER.store(watcher(forks, state), Release);
    running
}

/// Stops this process's watcher, if it runs and can be joined, and waits until its thread has
/// ended: for a `fork` that needs this process to run one thread. The next watched wait starts
/// it again. Called only while no other thread of this process waits on a lock (the caller
/// counted one thread besides the watcher: itself). Whether it joined the watcher's thread.
pub(crate) fn stop() -> bool {
    let forks = super::forks();
    let Ok(mut slot) = HANDLE.try_lock() else {
        return false;
    };
    // AcqRel: pairs with `start`'s Release, and with the watcher's Acquire load of the state.
    if WATCHER
        .compare_exchange(
            watcher(forks, RUNNING),
            watcher(forks, STOPPING),
            AcqRel,
            Relaxed,
        )
        .is_err()
    {
        return false;
    }
    // Release: pairs with the watcher's Acquire load of the bell, so that it sees STOPPING.
    BELL.fetch_add(1, Release);
    super::futex_wake(&BELL, 1);
    let joined = match slot.take() {
        Some((was, handle)) if was == forks => handle.join().is_ok(),
        Some((_, handle)) => {
            std::mem::forget(handle);
            false
        }
        None => false,
    };
    // Release: pairs with `start`'s Acquire loads; the watcher's thread has ended.
    WATCHER.store(watcher(forks, NONE), Release);
    joined
}

/// Whether the watcher started under `forks` is to end: [`stop`] says so. (Not "whether the
/// state says running": the thread may look before its starter has stored that.)
fn stopping(forks: u32) -> bool {
    // Acquire: pairs with `stop`'s AcqRel exchange.
    let state = WATCHER.load(Acquire);
    state != watcher(forks, STARTING) && state != watcher(forks, RUNNING)
}

/// The watcher: every tick, wakes the lock word of each thread of this process found inside the
/// same wait as at the last look, until [`stop`] rings.
fn watch(forks: u32) {
    let mut last: Vec<(*const Record, u64, usize)> = Vec::new();
    let mut now: Vec<(*const Record, u64, usize)> = Vec::new();
    loop {
        // Acquire: pairs with `stop`'s Release increment.
        let bell = BELL.load(Acquire);
        if stopping(forks) {
            return;
        }
        let tick = if last.is_empty() { IDLE_TICK } else { TICK };
        super::futex_wait(&BELL, bell, Some(tick));
        if stopping(forks) {
            return;
        }
        now.clear();
        // Acquire: pairs with the Release push in `claim`.
        let mut r = RECORDS.load(Acquire).cast_const();
        while !r.is_null() {
            // SAFETY: records are never freed.
            let rec = unsafe { &*r };
            let word = rec.word.load(Relaxed);
            if !word.is_null() && rec.forks.load(Relaxed) == forks {
                let seen = (r, rec.waits.load(Relaxed), word as usize);
                if last.contains(&seen) {
                    super::futex_wake_one_at(word);
                }
                now.push(seen);
            }
            r = rec.next;
        }
        std::mem::swap(&mut last, &mut now);
    }
}
