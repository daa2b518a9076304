//! `Semaphore` and `BoundedSemaphore` across real processes: Python's counts and timeouts, and
//! permits that come back when their holder is killed.

mod common;

use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{Child, name};
use mpshm::prelude::*;
use mpshm::{AcquireError, BoundedSemaphore, Error, RawValue, ReleaseError, Semaphore};

fn main() {
    common::run(
        tests![
            counts_like_python,
            bounded_refuses_release_above_initial,
            timeouts_wait_at_least_what_was_asked,
            release_in_another_process_wakes_a_waiter,
            release_wakes_one_waiter_per_permit,
            permits_bound_concurrency_across_processes,
            killed_holders_permits_come_back,
            a_dead_holders_record_returns_its_permit_to_its_next_holder,
            open_fails_when_every_record_is_taken,
            forgotten_permits_stay_taken,
            kinds_and_values_are_checked,
            handles_are_send_and_sync,
            a_release_cut_short_by_death_is_kept,
            a_lost_wake_up_of_the_state_lock_strands_nobody,
            kill_loop_hot_holders,
            kill_loop_blocked_waiter,
            guards_and_handles_drop_in_thread_local_destructors
        ],
        routines![
            hold,
            release_once,
            bounded_worker,
            churn,
            raw_release_then_park,
            drop_in_thread_local_destructors
        ],
    );
}

fn would_block<T: std::fmt::Debug>(r: Result<T, AcquireError>) {
    assert!(matches!(r, Err(AcquireError::WouldBlock)), "{r:?}");
}

/// Python's `_test_semaphore` and `test_semaphore`, with guards: `forget` is Python's bare
/// `acquire`.
fn counts_like_python() {
    let n = name("sem");
    let sem = Semaphore::create(&n, 2).expect("create");
    assert_eq!(sem.value(), 2);
    let a = sem.acquire().expect("acquire");
    assert_eq!(sem.value(), 1);
    let b = sem.try_acquire().expect("try_acquire");
    assert_eq!(sem.value(), 0);
    would_block(sem.try_acquire());
    assert_eq!(sem.value(), 0);
    drop(a);
    assert_eq!(sem.value(), 1);
    b.forget();
    assert_eq!(sem.value(), 1);
    sem.release().expect("release");
    assert_eq!(sem.value(), 2);
    sem.release().expect("release");
    sem.release().expect("release");
    assert_eq!(
        sem.value(),
        4,
        "a plain semaphore grows past its initial value"
    );
    let other = Semaphore::open(&n).expect("open");
    let c = other.acquire().expect("acquire through another handle");
    assert_eq!(sem.value(), 3);
    drop(c);
    assert_eq!(sem.value(), 4);
}

fn bounded_refuses_release_above_initial() {
    let n = name("bsem");
    let sem = BoundedSemaphore::create(&n, 2).expect("create");
    assert!(matches!(
        sem.release(),
        Err(ReleaseError::AboveInitial { initial: 2 })
    ));
    assert_eq!(sem.value(), 2);
    let a = sem.acquire().expect("acquire");
    // A permit held through a guard will come back: releasing one now would exceed the bound.
    assert!(matches!(
        sem.release(),
        Err(ReleaseError::AboveInitial { .. })
    ));
    a.forget();
    assert_eq!(sem.value(), 1);
    sem.release().expect("a forgotten permit may be released");
    assert_eq!(sem.value(), 2);
    assert!(sem.release().is_err());
    assert_eq!(sem.initial_value(), 2);
}

/// Python's `_TestSemaphore.test_timeout`.
fn timeouts_wait_at_least_what_was_asked() {
    let n = name("semto");
    let sem = Semaphore::create(&n, 0).expect("create");
    let start = Instant::now();
    would_block(sem.try_acquire());
    assert!(start.elapsed() < Duration::from_secs(1));
    for asked in [
        Duration::ZERO,
        Duration::from_millis(1),
        Duration::from_millis(120),
    ] {
        let r = common::timed(asked, || sem.acquire_timeout(asked));
        assert!(matches!(r, Err(AcquireError::Timeout)), "{r:?}");
    }
    assert_eq!(sem.value(), 0);
}

fn hold(args: &[String]) {
    let sem = Semaphore::open(&args[0]).expect("open");
    let count: usize = args[1].parse().expect("count");
    let guards: Vec<_> = (0..count)
        .map(|_| sem.acquire().expect("acquire"))
        .collect();
    common::ready();
    std::hint::black_box(&guards);
    common::park();
}

fn release_once(args: &[String]) {
    let sem = Semaphore::open(&args[0]).expect("open");
    assert_eq!(common::line_from_parent(), "go");
    sem.release().expect("release");
}

/// Starts a thread blocked in `acquire` on `sem`; the receiver gets the time it got a permit.
fn blocked_waiter<'s>(
    scope: &'s std::thread::Scope<'s, '_>,
    n: &str,
) -> mpsc::Receiver<((), Instant)> {
    let n = n.to_owned();
    common::sync::sleeper(
        scope,
        move || Semaphore::open(&n).expect("open"),
        // Bounded, so that a lost wake-up fails the test instead of hanging it.
        |sem| {
            drop(
                sem.acquire_timeout(Duration::from_secs(30))
                    .expect("acquire"),
            )
        },
    )
}

fn release_in_another_process_wakes_a_waiter() {
    let n = name("semx");
    let sem = Semaphore::create(&n, 0).expect("create");
    let mut child = Child::spawn("release_once", &[&n]);
    std::thread::scope(|s| {
        let got = blocked_waiter(s, &n);
        assert!(got.try_recv().is_err(), "got a permit from nothing");
        child.tell("go");
        got.recv_timeout(Duration::from_secs(5))
            .expect("woken by the other process's release");
    });
    child.join();
    assert_eq!(sem.value(), 1);
}

/// Three waiters asleep; two releases wake exactly two of them.
fn release_wakes_one_waiter_per_permit() {
    let n = name("semn");
    let sem = Semaphore::create(&n, 0).expect("create");
    std::thread::scope(|s| {
        let waiters: Vec<_> = (0..3)
            .map(|_| {
                let n = n.clone();
                common::sync::sleeper(
                    s,
                    move || Semaphore::open(&n).expect("open"),
                    |sem| match sem.acquire_timeout(Duration::from_secs(2)) {
                        Ok(g) => {
                            g.forget();
                            true
                        }
                        Err(AcquireError::Timeout) => false,
                        Err(e) => panic!("{e}"),
                    },
                )
            })
            .collect();
        sem.release().expect("release");
        sem.release().expect("release");
        let got: Vec<bool> = waiters
            .iter()
            .map(|rx| rx.recv().expect("result").0)
            .collect();
        assert_eq!(got.iter().filter(|&&g| g).count(), 2, "{got:?}");
    });
    assert_eq!(sem.value(), 0);
}

const ROUNDS: u32 = 2_000;

fn bounded_worker(args: &[String]) {
    let sem = BoundedSemaphore::open(&args[0]).expect("open");
    let inside = RawValue::<u64>::open(&args[1]).expect("open");
    let most = RawValue::<u64>::open(&args[2]).expect("open");
    common::ready();
    assert_eq!(common::line_from_parent(), "go");
    for i in 0..ROUNDS {
        let g = sem.acquire().expect("acquire");
        let now = inside.fetch_add(1) + 1;
        let mut seen = most.load();
        while now > seen {
            match most.compare_exchange(seen, now) {
                Ok(_) => break,
                Err(v) => seen = v,
            }
        }
        if i % 7 == 0 {
            std::thread::yield_now();
        }
        inside.fetch_sub(1);
        drop(g);
    }
}

/// A `BoundedSemaphore(2)` shared by four processes admits at most two at a time, and every
/// permit is back at the end.
fn permits_bound_concurrency_across_processes() {
    let (s, i, m) = (name("semc"), name("semci"), name("semcm"));
    let sem = BoundedSemaphore::create(&s, 2).expect("create");
    let _inside = RawValue::<u64>::create(&i, 0).expect("create");
    let most = RawValue::<u64>::create(&m, 0).expect("create");
    let mut kids: Vec<Child> = (0..4)
        .map(|_| Child::spawn("bounded_worker", &[&s, &i, &m]))
        .collect();
    for k in &mut kids {
        k.wait_ready();
    }
    for k in &mut kids {
        k.tell("go");
    }
    for k in kids {
        k.join();
    }
    assert!(most.load() <= 2, "{} inside at once", most.load());
    assert_eq!(most.load(), 2, "the two permits were never both used");
    assert_eq!(sem.value(), 2);
}

/// A child holds two of three permits and is killed: both come back, and a waiter blocked in
/// `acquire` gets one.
fn killed_holders_permits_come_back() {
    let n = name("semk");
    let sem = Semaphore::create(&n, 3).expect("create");
    let mut child = Child::spawn("hold", &[&n, "2"]);
    child.wait_ready();
    assert_eq!(sem.value(), 1);
    let mine = sem.acquire().expect("the last free permit");
    std::thread::scope(|s| {
        let got = blocked_waiter(s, &n);
        child.kill();
        got.recv_timeout(Duration::from_secs(5))
            .expect("the waiter got the dead holder's permit");
    });
    drop(mine);
    assert_eq!(
        sem.value(),
        3,
        "count plus live holders is the initial value"
    );
}

/// A child holding the only permit is killed while nobody waits, so nobody looks for the dead;
/// the next handle to open takes the dead child's record over, and returns its permit first
/// (once: not again when that handle is dropped).
fn a_dead_holders_record_returns_its_permit_to_its_next_holder() {
    let n = name("semt");
    let sem = Semaphore::create(&n, 1).expect("create");
    let mut child = Child::spawn("hold", &[&n, "1"]);
    child.wait_ready();
    child.kill();
    assert_eq!(sem.value(), 0, "nobody has looked for the dead yet");
    // Record 0 is the creator's; record 1, the dead child's, is the first one free.
    let next = Semaphore::open(&n).expect("open");
    assert_eq!(
        sem.value(),
        1,
        "the permit came back when its record was taken"
    );
    drop(next);
    assert_eq!(sem.value(), 1, "and only then");
}

/// Each open handle holds one of the semaphore's 256 records: the next open fails with
/// `InUse`, and a dropped handle makes room again.
fn open_fails_when_every_record_is_taken() {
    let n = name("semf");
    let sem = Semaphore::create(&n, 1).expect("create");
    let mut handles: Vec<_> = (1..256)
        .map(|_| Semaphore::open(&n).expect("open"))
        .collect();
    let r = Semaphore::open(&n);
    assert!(matches!(r, Err(Error::InUse { .. })), "{r:?}");
    handles.pop();
    let again = Semaphore::open(&n).expect("a record came free");
    drop(again.acquire().expect("acquire"));
    assert_eq!(sem.value(), 1);
}

/// A forgotten permit is nobody's: a holder that forgot it and died does not give it back.
fn forgotten_permits_stay_taken() {
    let n = name("semf");
    let sem = Semaphore::create(&n, 1).expect("create");
    sem.acquire().expect("acquire").forget();
    assert_eq!(sem.value(), 0);
    would_block(sem.try_acquire());
    // Dropping the handle that forgot it does not bring it back either.
    let other = Semaphore::open(&n).expect("open");
    other
        .acquire_timeout(Duration::ZERO)
        .expect_err("still taken");
    drop(other);
    assert_eq!(sem.value(), 0);
}

/// In a child: a thread keeps a permit's guard in a thread-local, and a handle (which took a
/// permit and leaked it) in another; both drop in the thread-local destructors when the thread
/// exits, in whichever order the runtime picks, after other thread-locals may be gone. Says the
/// semaphore's value once the thread has exited.
fn drop_in_thread_local_destructors(args: &[String]) {
    use std::cell::RefCell;
    thread_local! {
        static GUARD: RefCell<Option<mpshm::SemaphoreGuard<'static>>> =
            const { RefCell::new(None) };
        static HANDLE: RefCell<Option<Semaphore>> = const { RefCell::new(None) };
    }
    let sem: &'static Semaphore = Box::leak(Box::new(Semaphore::open(&args[0]).expect("open")));
    let name = args[0].clone();
    std::thread::spawn(move || {
        let guard = sem.acquire().expect("acquire");
        GUARD.with(|g| *g.borrow_mut() = Some(guard));
        let other = Semaphore::open(&name).expect("open");
        std::mem::forget(other.acquire().expect("acquire"));
        HANDLE.with(|h| *h.borrow_mut() = Some(other));
    })
    .join()
    .expect("the thread exits cleanly");
    common::say(&sem.value().to_string());
}

/// A guard or a handle dropped by a thread-local destructor at a thread's exit gives its
/// permits back like any other, without a panic (which there would abort the process).
fn guards_and_handles_drop_in_thread_local_destructors() {
    let n = name("semtls");
    let sem = Semaphore::create(&n, 2).expect("create");
    let mut c = Child::spawn("drop_in_thread_local_destructors", &[&n]);
    assert_eq!(c.line(), "2", "the permits came back at the thread's exit");
    c.join();
    assert_eq!(sem.value(), 2);
}

/// Every handle of the family moves between threads (checked when this compiles), and a
/// semaphore guard may be dropped on another thread than the one that took it.
fn handles_are_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Semaphore>();
    check::<BoundedSemaphore>();
    check::<mpshm::SemaphoreGuard<'static>>();
    check::<mpshm::Event>();
    check::<mpshm::Condition>();
    check::<mpshm::Barrier>();
    let sem = Semaphore::create(&name("semsend"), 1).expect("create");
    let g = sem.acquire().expect("acquire");
    std::thread::scope(|s| {
        s.spawn(move || drop(g));
    });
    assert_eq!(sem.value(), 1);
}

fn kinds_and_values_are_checked() {
    let n = name("semkind");
    let _bounded = BoundedSemaphore::create(&n, 1).expect("create");
    assert!(matches!(
        Semaphore::open(&n),
        Err(Error::KindMismatch { .. })
    ));
    assert!(matches!(
        mpshm::Lock::open(&n),
        Err(Error::KindMismatch { .. })
    ));
    assert!(matches!(
        Semaphore::create(&name("big"), u32::MAX),
        Err(Error::InvalidLength { .. })
    ));
    let same = BoundedSemaphore::open_or_create(&n, 7).expect("open_or_create");
    assert_eq!(same.initial_value(), 1, "the creator's value stands");
}

/// A hot loop: take `args[1]` permits, hold them up to `args[2]` µs, give them back, forever;
/// a kill lands anywhere in it (inside the state lock, holding some permits, or none).
fn churn(args: &[String]) {
    let sem = Semaphore::open(&args[0]).expect("open");
    let count: usize = args[1].parse().expect("count");
    let hold: u64 = args[2].parse().expect("hold");
    let mut rng = common::sync::Rng::new();
    common::ready();
    loop {
        let guards: Vec<_> = (0..count)
            .map(|_| sem.acquire().expect("acquire"))
            .collect();
        common::sync::spin_for(rng.duration(Duration::from_micros(hold)));
        drop(guards);
        common::sync::spin_for(rng.duration(Duration::from_micros(5)));
    }
}

/// A child churns on both permits of a semaphore of 2 and is killed at a random point of its
/// loop, each trial on the same semaphore; every other trial it holds them for no time at all,
/// so that most kills land inside the semaphore's own code (in its state lock, often). The parent then takes both permits without hanging:
/// nothing the dead child held or was updating is lost, and the free count is the initial
/// value again once the parent gives them back.
fn kill_loop_hot_holders() {
    let trials = common::sync::trials(300);
    let n = name("semkl");
    let sem = Semaphore::create(&n, 2).expect("create");
    let mut rng = common::sync::Rng::new();
    let mut samples = Vec::new();
    for trial in 0..trials {
        let hold = if trial % 2 == 0 { "40" } else { "0" };
        let mut victim = Child::spawn("churn", &[&n, "2", hold]);
        victim.wait_ready();
        common::sync::spin_for(rng.duration(Duration::from_millis(3)));
        let killed = Instant::now();
        victim.kill();
        let a = sem
            .acquire_timeout(Duration::from_secs(10))
            .expect("no hang after a kill");
        let b = sem
            .acquire_timeout(Duration::from_secs(10))
            .expect("no permit lost to the kill");
        samples.push(killed.elapsed());
        assert_eq!(sem.value(), 0);
        drop((a, b));
        assert_eq!(
            sem.value(),
            2,
            "count plus live holders is the initial value"
        );
    }
    common::sync::report(
        "semaphore, hot holder killed: parent holds both permits",
        &mut samples,
    );
}

/// A child holds the only permit while a thread of the parent sleeps in `acquire`; the child is
/// killed: the time from the kill to the waiter's wake-up with the permit.
fn kill_loop_blocked_waiter() {
    let trials = common::sync::trials(300);
    let n = name("semkw");
    let sem = Semaphore::create(&n, 1).expect("create");
    let mut rng = common::sync::Rng::new();
    let mut samples = Vec::new();
    for _ in 0..trials {
        let mut child = Child::spawn("hold", &[&n, "1"]);
        child.wait_ready();
        std::thread::scope(|s| {
            let got = blocked_waiter(s, &n);
            common::sync::spin_for(rng.duration(Duration::from_micros(500)));
            let killed = Instant::now();
            child.kill();
            let ((), woke) = got
                .recv_timeout(Duration::from_secs(10))
                .expect("the waiter got the dead holder's permit");
            samples.push(woke.saturating_duration_since(killed));
        });
        assert_eq!(sem.value(), 1);
    }
    common::sync::report("semaphore, holder killed, waiter asleep", &mut samples);
}

/// Where the free count lives in a semaphore's segment: the 256-byte header and the 56-byte
/// lock area, rounded up to 64, then `seq` and the redo flag (4 bytes each), then `state`
/// whose low half is the count.
const SEMAPHORE_COUNT: u64 = 320 + 8;

fn raw_release_then_park(args: &[String]) {
    let _sem = Semaphore::open(&args[0]).expect("open"); // holds a record: its death is noticed
    common::ready();
    assert_eq!(common::line_from_parent(), "go");
    // What a release commits, without the `seq` bump and the wake that follow it: a releaser
    // killed in between (its state lock long released).
    common::sync::poke(&args[0], SEMAPHORE_COUNT, 1);
    common::say("released");
    common::park();
}

/// Where the state lock's word is: first in the lock area, after the 256-byte header (glibc's
/// `__lock`: the owner's thread id, and the waiters bit).
const STATE_LOCK_WORD: u64 = 256;

/// A robust mutex's lost wake-up on the state lock (staged by
/// `common::sync::lost_wake_up_strands_no_waiter`; the kernel's exit handling wakes nobody,
/// since the lock has an owner) strands no waiter: it gets the permit, long before its
/// timeout. (The barrier's kill loop met this once in a CI run, its surviving party asleep on
/// the state lock for ten minutes.)
fn a_lost_wake_up_of_the_state_lock_strands_nobody() {
    let n = name("semlw");
    let sem = Semaphore::create(&n, 1).expect("create");
    let waiter = Semaphore::open(&n).expect("open");
    common::sync::lost_wake_up_strands_no_waiter(
        &n,
        STATE_LOCK_WORD,
        Duration::from_secs(5),
        move |t| waiter.acquire_timeout(t).map(drop),
    );
    assert_eq!(sem.value(), 1);
}

/// A releaser that made its permit free but died before waking anyone: the sleeper, which
/// sleeps on `seq` (unchanged), is woken by the death and takes the permit.
fn a_release_cut_short_by_death_is_kept() {
    let n = name("semcut");
    let sem = Semaphore::create(&n, 0).expect("create");
    let mut child = Child::spawn("raw_release_then_park", &[&n]);
    child.wait_ready();
    std::thread::scope(|s| {
        let got = blocked_waiter(s, &n);
        child.tell("go");
        assert_eq!(child.line(), "released");
        assert_eq!(sem.value(), 1, "the test's idea of the layout is wrong");
        child.kill();
        got.recv_timeout(Duration::from_secs(5))
            .expect("the sleeper took the permit after the death");
    });
    assert_eq!(sem.value(), 1);
}
