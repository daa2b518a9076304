//! `Lock` and `RLock` across real processes, including holders killed with `SIGKILL`.

mod common;

use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{Child, name};
use mpshm::prelude::*;
use mpshm::{Error, Lock, LockError, RLock, RawValue, Value};

fn main() {
    common::run(
        tests![
            mutual_exclusion_across_processes,
            killed_holder_gives_owner_died,
            blocked_waiter_is_woken_by_death,
            owner_died_persists_until_marked,
            killed_rlock_holder_gives_owner_died,
            acquire_timeout_waits_then_fails,
            try_acquire_never_waits,
            forgotten_guard_then_dropped_handle_gives_owner_died,
            forgotten_guard_then_relock_is_deadlock,
            panic_in_guard_poisons_the_lock,
            guard_taken_while_unwinding_does_not_poison,
            relock_on_one_thread_is_deadlock,
            rlock_is_reentrant_per_thread,
            lock_and_rlock_are_distinct_kinds,
            open_or_create_from_two_processes,
            rlock_guards_drop_in_thread_local_destructors,
            a_lost_wake_up_strands_no_waiter,
            a_lost_wake_up_strands_no_untimed_waiter,
            a_lost_wake_up_strands_neither_of_two_waiters
        ],
        routines![
            count_under_lock,
            hold,
            hold_rlock,
            open_or_create_lock,
            panic_holding_lock,
            forget_guard_and_drop,
            forget_guard_and_relock,
            rlock_in_a_thread_local
        ],
    );
}

const ROUNDS: u64 = 20_000;

/// Increments a plain (non-atomic) read-modify-write counter under the lock: lost updates
/// would show if the lock did not exclude the other process.
fn count_under_lock(args: &[String]) {
    let lock = Lock::open(&args[0]).expect("open lock");
    let counter = RawValue::<u64>::open(&args[1]).expect("open counter");
    common::ready();
    assert_eq!(common::line_from_parent(), "go");
    for _ in 0..ROUNDS {
        let _g = lock.acquire().expect("acquire");
        let v = counter.get();
        std::hint::black_box(());
        counter.set(v + 1);
    }
}

fn mutual_exclusion_across_processes() {
    let (l, c) = (name("mx"), name("mxc"));
    let _lock = Lock::create(&l, ()).expect("create lock");
    let counter = RawValue::<u64>::create(&c, 0).expect("create counter");
    let mut kids: Vec<Child> = (0..3)
        .map(|_| Child::spawn("count_under_lock", &[&l, &c]))
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
    assert_eq!(counter.get(), 3 * ROUNDS);
}

fn hold(args: &[String]) {
    let lock = Lock::open(&args[0]).expect("open");
    let _g = lock.acquire().expect("acquire");
    common::ready();
    common::park();
}

fn hold_rlock(args: &[String]) {
    let lock = RLock::open(&args[0]).expect("open");
    let _a = lock.acquire().expect("acquire");
    let _b = lock.acquire().expect("re-acquire");
    common::ready();
    common::park();
}

fn expect_owner_died<G>(r: Result<G, LockError<G>>) -> G {
    match r {
        Err(LockError::OwnerDied(g)) => g,
        Err(e) => panic!("expected OwnerDied, got {e:?}"),
        Ok(_) => panic!("expected OwnerDied, got a clean guard"),
    }
}

fn killed_holder_gives_owner_died() {
    let n = name("die");
    let lock = Lock::create(&n, ()).expect("create");
    let mut child = Child::spawn("hold", &[&n]);
    child.wait_ready();
    assert!(matches!(lock.try_acquire(), Err(LockError::WouldBlock)));
    child.kill();
    let start = Instant::now();
    let g = expect_owner_died(lock.acquire_timeout(Duration::from_secs(5)));
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "took {:?}",
        start.elapsed()
    );
    g.mark_consistent();
    drop(g);
    // Repaired: clean guards from now on, from this process and others.
    drop(lock.acquire().expect("clean after repair"));
    let mut child = Child::spawn("hold", &[&n]);
    child.wait_ready();
    child.kill();
    expect_owner_died(lock.acquire()).mark_consistent();
}

fn blocked_waiter_is_woken_by_death() {
    let n = name("wake");
    let lock = Lock::create(&n, ()).expect("create");
    let mut child = Child::spawn("hold", &[&n]);
    child.wait_ready();
    let (tx, rx) = mpsc::channel();
    std::thread::scope(|s| {
        s.spawn(|| {
            let lock = Lock::open(&n).expect("open");
            tx.send(common::thread_id()).expect("send");
            let r = lock.acquire();
            let died = matches!(&r, Err(LockError::OwnerDied(_)));
            if let Err(LockError::OwnerDied(g)) = &r {
                g.mark_consistent();
            }
            drop(r);
            tx.send(0).expect("send");
            assert!(died, "the blocked waiter should see OwnerDied");
        });
        let tid = rx.recv().expect("waiter started");
        // Wait until the waiter sleeps in the kernel, so the death must wake it.
        common::wait_until_sleeping(tid);
        assert!(rx.try_recv().is_err(), "waiter got through a held lock");
        let killed = Instant::now();
        child.kill();
        rx.recv_timeout(Duration::from_secs(5))
            .expect("waiter woken by the death");
        assert!(
            killed.elapsed() < Duration::from_secs(1),
            "took {:?}",
            killed.elapsed()
        );
    });
    drop(lock.acquire().expect("clean after the waiter repaired it"));
}

fn owner_died_persists_until_marked() {
    let n = name("poison");
    let lock = Lock::create(&n, ()).expect("create");
    let mut child = Child::spawn("hold", &[&n]);
    child.wait_ready();
    child.kill();
    drop(expect_owner_died(lock.acquire())); // looked, did not repair
    assert!(lock.is_poisoned());
    let other = Lock::open(&n).expect("open");
    drop(expect_owner_died(other.try_acquire()));
    let g = expect_owner_died(other.acquire_timeout(Duration::from_secs(1)));
    g.mark_consistent();
    drop(g);
    assert!(!lock.is_poisoned());
    drop(lock.try_acquire().expect("clean"));
}

fn killed_rlock_holder_gives_owner_died() {
    let n = name("rdie");
    let lock = RLock::create(&n, ()).expect("create");
    let mut child = Child::spawn("hold_rlock", &[&n]);
    child.wait_ready();
    assert!(matches!(lock.try_acquire(), Err(LockError::WouldBlock)));
    child.kill();
    let g = expect_owner_died(lock.acquire_timeout(Duration::from_secs(5)));
    g.mark_consistent();
    let again = lock.acquire().expect("re-enter after repair");
    drop((again, g));
}

fn acquire_timeout_waits_then_fails() {
    let n = name("tmo");
    let lock = Lock::create(&n, ()).expect("create");
    let mut child = Child::spawn("hold", &[&n]);
    child.wait_ready();
    for asked in [Duration::from_millis(1), Duration::from_millis(150)] {
        let start = Instant::now();
        assert!(matches!(
            lock.acquire_timeout(asked),
            Err(LockError::Timeout)
        ));
        let waited = start.elapsed();
        assert!(waited >= asked, "asked {asked:?}, waited {waited:?}");
        assert!(
            waited < asked + Duration::from_secs(2),
            "asked {asked:?}, waited {waited:?}"
        );
    }
    child.kill();
    expect_owner_died(lock.acquire()).mark_consistent();
}

fn try_acquire_never_waits() {
    let n = name("try");
    let lock = Lock::create(&n, ()).expect("create");
    let g = lock.try_acquire().expect("free");
    drop(g);
    let mut child = Child::spawn("hold", &[&n]);
    child.wait_ready();
    for _ in 0..100 {
        assert!(matches!(lock.try_acquire(), Err(LockError::WouldBlock)));
    }
    // A zero timeout is a try.
    assert!(matches!(
        lock.acquire_timeout(Duration::ZERO),
        Err(LockError::Timeout)
    ));
    child.kill();
    expect_owner_died(lock.acquire()).mark_consistent();
}

/// Panics with the lock held (an `RLock` held twice, with `rlock`); catches it and exits
/// normally.
fn panic_holding_lock(args: &[String]) {
    if args[1] == "rlock" {
        let lock = RLock::open(&args[0]).expect("open");
        common::unwinds(|| {
            let _outer = lock.acquire().expect("acquire");
            let _inner = lock.acquire().expect("re-enter");
            panic!("in the critical section");
        });
    } else {
        let lock = Lock::open(&args[0]).expect("open");
        common::unwinds(|| {
            let _g = lock.acquire().expect("acquire");
            panic!("in the critical section");
        });
    }
    common::say("unwound");
}

/// Leaks a guard with `mem::forget` (safe code), drops the handle, and exits normally: the
/// process ends holding the lock. `args[1]` says through which handle: a `Lock` or a `Value`.
fn forget_guard_and_drop(args: &[String]) {
    if args[1] == "value" {
        let v = Value::<u64>::open(&args[0]).expect("open");
        std::mem::forget(v.lock().expect("lock"));
        drop(v);
    } else {
        let lock = Lock::open(&args[0]).expect("open");
        std::mem::forget(lock.acquire().expect("acquire"));
        drop(lock);
    }
    common::say("forgot");
}

/// The mapping of a lock held by a leaked guard outlives its handle, so the kernel can still
/// tell the next acquirer that the holder died when its process ends: `OwnerDied`, not a wait
/// for ever.
fn forgotten_guard_then_dropped_handle_gives_owner_died() {
    let n = name("forget");
    let lock = Lock::create(&n, ()).expect("create");
    let mut child = Child::spawn("forget_guard_and_drop", &[&n, "lock"]);
    assert_eq!(child.line(), "forgot");
    child.join();
    let g = expect_owner_died(lock.acquire_timeout(Duration::from_secs(10)));
    drop(g);
    expect_owner_died(lock.acquire()).mark_consistent();

    let n = name("vforget");
    let v = Value::<u64>::create(&n, 3).expect("create");
    let mut child = Child::spawn("forget_guard_and_drop", &[&n, "value"]);
    assert_eq!(child.line(), "forgot");
    child.join();
    match v.lock_timeout(Duration::from_secs(10)) {
        Err(LockError::OwnerDied(g)) => assert_eq!(*g, 3),
        other => panic!("expected OwnerDied, got {other:?}"),
    }
}

/// In one process: a guard of one handle leaked, that handle dropped, the lock taken again
/// through another handle (the error-checking mutex says `Deadlock`), and another robust lock
/// taken and released: glibc then writes through the robust list, which still runs through the
/// leaked mutex's mapping (had it been unmapped, at an address nothing else took since, this
/// would crash). Then exits holding the leaked lock.
fn forget_guard_and_relock(args: &[String]) {
    let a = Lock::open(&args[0]).expect("open a");
    let other = Lock::open(&args[1]).expect("open other");
    let b = Lock::open(&args[0]).expect("open b");
    std::mem::forget(b.acquire().expect("acquire b"));
    drop(b);
    assert!(matches!(a.acquire(), Err(LockError::Deadlock)));
    assert!(matches!(a.try_acquire(), Err(LockError::WouldBlock)));
    for _ in 0..3 {
        drop(other.acquire().expect("acquire other"));
    }
    drop(other);
    common::say("ok");
}

fn forgotten_guard_then_relock_is_deadlock() {
    let n = name("relock");
    let other = name("other");
    let lock = Lock::create(&n, ()).expect("create");
    let _other = Lock::create(&other, ()).expect("create other");
    let mut child = Child::spawn("forget_guard_and_relock", &[&n, &other]);
    assert_eq!(child.line(), "ok");
    child.join();
    // The child ended holding the leaked lock: the kernel told us.
    drop(expect_owner_died(
        lock.acquire_timeout(Duration::from_secs(10)),
    ));
}

/// A holder that panics (and goes on running) poisons the lock for every later acquirer in any
/// process, as std's `Mutex` does, until one marks it consistent.
fn panic_in_guard_poisons_the_lock() {
    let n = name("lpanic");
    let lock = Lock::create(&n, ()).expect("create");
    let mut child = Child::spawn("panic_holding_lock", &[&n, "lock"]);
    assert_eq!(child.line(), "unwound");
    child.join();
    assert!(lock.is_poisoned());
    drop(expect_owner_died(lock.try_acquire()));
    drop(expect_owner_died(
        lock.acquire_timeout(Duration::from_secs(5)),
    ));
    expect_owner_died(lock.acquire()).mark_consistent();
    assert!(!lock.is_poisoned());
    drop(lock.acquire().expect("clean"));

    let n = name("rpanic");
    let rlock = RLock::create(&n, ()).expect("create");
    let mut child = Child::spawn("panic_holding_lock", &[&n, "rlock"]);
    assert_eq!(child.line(), "unwound");
    child.join();
    assert!(rlock.is_poisoned());
    expect_owner_died(rlock.acquire()).mark_consistent();
    drop(rlock.acquire().expect("clean"));
}

/// As in std, a guard taken by a destructor while the thread unwinds, and dropped before the
/// unwinding ends, poisons nothing: the panic began before it was taken.
fn guard_taken_while_unwinding_does_not_poison() {
    struct TakesTheLock<'a>(&'a Lock);
    impl Drop for TakesTheLock<'_> {
        fn drop(&mut self) {
            drop(self.0.acquire().expect("clean"));
        }
    }
    let lock = Lock::create(&name("unwind"), ()).expect("create");
    common::unwinds(|| {
        let _t = TakesTheLock(&lock);
        panic!("unwinding");
    });
    assert!(!lock.is_poisoned());
}

fn relock_on_one_thread_is_deadlock() {
    let n = name("relock");
    let lock = Lock::create(&n, ()).expect("create");
    let g = lock.acquire().expect("acquire");
    assert!(matches!(lock.acquire(), Err(LockError::Deadlock)));
    assert!(matches!(
        lock.acquire_timeout(Duration::from_millis(10)),
        Err(LockError::Deadlock)
    ));
    assert!(matches!(lock.try_acquire(), Err(LockError::WouldBlock)));
    // Another thread simply waits.
    std::thread::scope(|s| {
        s.spawn(|| assert!(matches!(lock.try_acquire(), Err(LockError::WouldBlock))));
    });
    drop(g);
}

fn rlock_is_reentrant_per_thread() {
    let n = name("rl");
    let lock = RLock::create(&n, ()).expect("create");
    let a = lock.acquire().expect("first");
    let b = lock.try_acquire().expect("second");
    let c = lock
        .acquire_timeout(Duration::from_millis(1))
        .expect("third");
    std::thread::scope(|s| {
        s.spawn(|| assert!(matches!(lock.try_acquire(), Err(LockError::WouldBlock))));
    });
    drop((c, b));
    std::thread::scope(|s| {
        s.spawn(|| assert!(matches!(lock.try_acquire(), Err(LockError::WouldBlock))));
    });
    drop(a);
    std::thread::scope(|s| {
        s.spawn(|| drop(lock.try_acquire().expect("free once fully released")));
    });
}

/// In a child: a thread takes the `RLock` twice and keeps both guards in a thread-local, which
/// drops them at the thread's exit, after other thread-locals may be gone; then this thread
/// takes it and says how that went.
fn rlock_in_a_thread_local(args: &[String]) {
    use std::cell::RefCell;
    thread_local! {
        static HELD: RefCell<Vec<mpshm::LockGuard<'static>>> = const { RefCell::new(Vec::new()) };
    }
    let lock: &'static RLock = Box::leak(Box::new(RLock::open(&args[0]).expect("open")));
    std::thread::spawn(move || {
        let guards = [
            lock.acquire().expect("first"),
            lock.acquire().expect("second"),
        ];
        HELD.with(|h| h.borrow_mut().extend(guards));
    })
    .join()
    .expect("the thread exits cleanly");
    match lock.try_acquire() {
        Ok(_) => common::say("free"),
        Err(e) => common::say(&format!("{e:?}")),
    }
}

/// RLock guards dropped by thread-local destructors unlock as at any other time: no panic
/// (which would abort the process there), and no lock left to the dead thread (`OwnerDied`).
fn rlock_guards_drop_in_thread_local_destructors() {
    let n = name("rltls");
    let lock = RLock::create(&n, ()).expect("create");
    let mut c = Child::spawn("rlock_in_a_thread_local", &[&n]);
    assert_eq!(c.line(), "free");
    c.join();
    drop(lock.try_acquire().expect("free"));
}

fn lock_and_rlock_are_distinct_kinds() {
    let n = name("kinds");
    let _l = Lock::create(&n, ()).expect("create");
    assert!(matches!(RLock::open(&n), Err(Error::KindMismatch { .. })));
    assert!(matches!(
        Lock::create(&n, ()),
        Err(Error::AlreadyExists { .. })
    ));
    assert!(matches!(
        mpshm::Value::<u8>::open(&n),
        Err(Error::KindMismatch { .. })
    ));
}

fn open_or_create_lock(args: &[String]) {
    assert_eq!(common::line_from_parent(), "go");
    let lock = Lock::open_or_create(&args[0], ()).expect("open_or_create");
    let counter = RawValue::<u64>::open_or_create(&args[1], 0).expect("counter");
    for _ in 0..1000 {
        let _g = lock.acquire().expect("acquire");
        counter.set(counter.get() + 1);
    }
    // Keep the segments alive until the parent has looked.
    common::ready();
    assert_eq!(common::line_from_parent(), "bye");
}

fn open_or_create_from_two_processes() {
    let (l, c) = (name("ooc"), name("oocc"));
    let mut kids = [
        Child::spawn("open_or_create_lock", &[&l, &c]),
        Child::spawn("open_or_create_lock", &[&l, &c]),
    ];
    for k in &mut kids {
        k.tell("go");
    }
    for k in &mut kids {
        k.wait_ready();
    }
    let counter = RawValue::<u64>::open(&c).expect("open counter");
    assert_eq!(
        counter.get(),
        2000,
        "both children used the same lock and counter"
    );
    drop(counter);
    for mut k in kids {
        k.tell("bye");
        k.join();
    }
    assert!(
        !common::exists(&l) && !common::exists(&c),
        "the creator removed them"
    );
}

/// Where the lock's word is: first in the lock area, after the 256-byte header (glibc's
/// `__lock`: the owner's thread id, and the waiters bit).
const LOCK_WORD: u64 = 256;

/// A robust mutex's lost wake-up (staged by `common::sync::lost_wake_up_strands_no_waiter`)
/// strands no waiter of a `Lock`: the lock watch wakes it, and it takes the lock long before
/// its timeout.
fn a_lost_wake_up_strands_no_waiter() {
    let n = name("locklw");
    let lock = Lock::create(&n, ()).expect("create");
    let waiter = Lock::open(&n).expect("open");
    common::sync::lost_wake_up_strands_no_waiter(&n, LOCK_WORD, Duration::from_secs(5), move |t| {
        waiter
            .acquire_timeout(t)
            .map(drop)
            .map_err(|e| e.to_string())
    });
    assert!(lock.try_acquire().is_ok(), "the waiter's guard was dropped");
}

/// Nor a waiter without a timeout: `acquire()` sleeps in one `pthread_mutex_lock`, and the lock
/// watch wakes it.
fn a_lost_wake_up_strands_no_untimed_waiter() {
    let n = name("locklu");
    let lock = Lock::create(&n, ()).expect("create");
    let waiter = Lock::open(&n).expect("open");
    common::sync::lost_wake_up_strands_no_waiter(
        &n,
        LOCK_WORD,
        Duration::from_secs(5),
        move |_| waiter.acquire().map(drop).map_err(|e| e.to_string()),
    );
    assert!(lock.try_acquire().is_ok(), "the waiter's guard was dropped");
}

/// Two waiters asleep when the wake-up is lost: the lock watch wakes one sleeper, which takes
/// the lock with the waiters bit set (it slept), so its release wakes the other.
fn a_lost_wake_up_strands_neither_of_two_waiters() {
    let n = name("locklw2");
    let lock = Lock::create(&n, ()).expect("create");
    let waiters = (0..2)
        .map(|_| {
            let waiter = Lock::open(&n).expect("open");
            Box::new(move |_| waiter.acquire().map(drop).map_err(|e| e.to_string()))
                as common::sync::Waiter<String>
        })
        .collect();
    common::sync::lost_wake_up_strands_no_waiters(&n, LOCK_WORD, Duration::from_secs(5), waiters);
    assert!(
        lock.try_acquire().is_ok(),
        "the waiters' guards were dropped"
    );
}
