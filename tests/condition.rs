//! `Condition` across real processes: Python's notify counts, timeouts and `wait_for`, a
//! reentrant lock released at its full depth, user locks, and notifiers and waiters killed with
//! `SIGKILL`.

mod common;

use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{Child, name};
use mpshm::prelude::*;
use mpshm::{
    Condition, ConditionError, ConditionGuard, ConditionLock, Lock, LockError, RLock, RawValue,
};

/// The longest a wait "without timeout" may take in these tests: a lost wake-up fails the test
/// instead of hanging it.
const LIMIT: Duration = Duration::from_secs(30);

fn main() {
    common::run(
        tests![
            notify_wakes_one_at_a_time,
            notify_all_after_waiters_timed_out,
            notify_n_counts,
            wait_timeout_waits_at_least,
            wait_for_across_processes,
            wait_for_times_out,
            wait_result,
            untimed_waits,
            a_notify_before_the_wait_is_not_kept,
            a_later_waiter_does_not_take_an_earlier_notify,
            rlock_is_released_at_its_full_depth,
            user_locks,
            a_notify_cut_short_by_death_is_kept,
            a_dead_waiter_does_not_swallow_a_notify,
            kill_loop_ping_pong,
            kill_loop_notified_waiter
        ],
        routines![
            wait_then_count,
            wait_for_four,
            wait_for_four_briefly,
            notify_once,
            take_lock_and_notify,
            raw_notify_then_park,
            wait_forever,
            ping_pong,
            wait_and_mark,
            notify_all_at
        ],
    );
}

/// Takes the condition's lock, repairing it if a holder died.
fn lock(cond: &Condition) -> ConditionGuard<'_> {
    match cond.acquire() {
        Ok(g) => g,
        Err(LockError::OwnerDied(g)) => {
            g.mark_consistent();
            g
        }
        Err(e) => panic!("acquire: {e}"),
    }
}

/// Starts a thread that takes `cond`'s lock and sleeps in `wait_timeout(limit)`; the receiver
/// gets whether a notify came (a holder's death repaired and counted as what it says) and when.
fn timed_waiter<'s>(
    s: &'s std::thread::Scope<'s, '_>,
    cond: &'s Condition,
    limit: Duration,
) -> mpsc::Receiver<(bool, Instant)> {
    common::sync::sleeper(
        s,
        move || lock(cond),
        move |mut g| match g.wait_timeout(limit) {
            Ok(r) => r,
            Err(ConditionError::OwnerDied { notified }) => {
                g.mark_consistent();
                notified
            }
            Err(e) => panic!("{e}"),
        },
    )
}

/// Python's helper `f`: wait (with the timeout in `args[2]` ms, or none), then count the
/// wake-up in the shared counter `args[1]`.
fn wait_then_count(args: &[String]) {
    let cond = Condition::open(&args[0]).expect("open");
    let woken = RawValue::<u64>::open(&args[1]).expect("open");
    let timeout: Option<u64> = args.get(2).map(|t| t.parse().expect("timeout"));
    let mut g = lock(&cond);
    common::ready();
    match timeout {
        Some(ms) => {
            g.wait_timeout(Duration::from_millis(ms)).expect("wait");
        }
        None => assert!(g.wait_timeout(LIMIT).expect("wait"), "never notified"),
    }
    woken.fetch_add(1);
}

/// `n` waiters, half child processes and half threads of this one, all asleep on `c`; each
/// counts its wake-up in the counter `w`.
struct Waiters<'s> {
    kids: Vec<Child>,
    threads: Vec<std::thread::ScopedJoinHandle<'s, ()>>,
}

impl<'s> Waiters<'s> {
    fn start(
        s: &'s std::thread::Scope<'s, '_>,
        n: usize,
        c: &str,
        w: &str,
        timeout_ms: Option<u64>,
    ) -> Waiters<'s> {
        let t = timeout_ms.map(|t| t.to_string());
        let mut args = vec![c, w];
        if let Some(t) = &t {
            args.push(t);
        }
        let mut kids = Vec::new();
        let mut threads = Vec::new();
        for i in 0..n {
            if i % 2 == 0 {
                let mut k = Child::spawn("wait_then_count", &args);
                k.wait_ready();
                common::wait_until_process_sleeps(k.pid());
                kids.push(k);
            } else {
                let (tid_tx, tid_rx) = mpsc::channel();
                let (c, w) = (c.to_owned(), w.to_owned());
                threads.push(s.spawn(move || {
                    let cond = Condition::open(&c).expect("open");
                    let woken = RawValue::<u64>::open(&w).expect("open");
                    let mut g = lock(&cond);
                    tid_tx.send(common::thread_id()).expect("send");
                    match timeout_ms {
                        Some(ms) => {
                            g.wait_timeout(Duration::from_millis(ms)).expect("wait");
                        }
                        None => assert!(g.wait_timeout(LIMIT).expect("wait"), "never notified"),
                    }
                    woken.fetch_add(1);
                }));
                common::wait_until_sleeping(tid_rx.recv().expect("tid"));
            }
        }
        Waiters { kids, threads }
    }

    fn join(self) {
        for k in self.kids {
            k.join();
        }
        for t in self.threads {
            t.join().expect("waiter thread");
        }
    }
}

/// Waits (bounded) until the counter reaches `want`.
fn reaches(counter: &RawValue<u64>, want: u64) {
    let start = Instant::now();
    while counter.load() < want {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{} of {want} woke",
            counter.load()
        );
        std::thread::yield_now();
    }
    assert_eq!(counter.load(), want);
}

/// Python's `test_notify`: a process and a thread wait; each `notify()` wakes exactly one.
fn notify_wakes_one_at_a_time() {
    let (c, w) = (name("cn"), name("cnw"));
    let cond = Condition::create(&c, ConditionLock::Own).expect("create");
    let woken = RawValue::<u64>::create(&w, 0).expect("create");
    std::thread::scope(|s| {
        let waiters = Waiters::start(s, 2, &c, &w, None);
        assert_eq!(woken.load(), 0);
        assert_eq!(lock(&cond).notify(1), 1);
        reaches(&woken, 1);
        assert_eq!(lock(&cond).notify(1), 1);
        reaches(&woken, 2);
        assert_eq!(lock(&cond).notify(1), 0, "nobody is left waiting");
        waiters.join();
    });
}

/// Python's `test_notify_all`: six waiters time out (and wake on their own), then six more
/// wait; `notify_all` wakes those six.
fn notify_all_after_waiters_timed_out() {
    let (c, w) = (name("cna"), name("cnaw"));
    let cond = Condition::create(&c, ConditionLock::Own).expect("create");
    let woken = RawValue::<u64>::create(&w, 0).expect("create");
    std::thread::scope(|s| {
        let first = Waiters::start(s, 6, &c, &w, Some(300));
        reaches(&woken, 6);
        first.join();
        woken.store(0);
        let second = Waiters::start(s, 6, &c, &w, None);
        assert_eq!(woken.load(), 0);
        assert_eq!(
            lock(&cond).notify_all(),
            6,
            "the timed-out waiters left no slot"
        );
        reaches(&woken, 6);
        second.join();
    });
}

/// Python's `test_notify_n`: of six waiters, `notify(2)` wakes 2, `notify(4)` the other 4,
/// `notify(3)` none.
fn notify_n_counts() {
    let (c, w) = (name("cnn"), name("cnnw"));
    let cond = Condition::create(&c, ConditionLock::Own).expect("create");
    let woken = RawValue::<u64>::create(&w, 0).expect("create");
    std::thread::scope(|s| {
        let waiters = Waiters::start(s, 6, &c, &w, None);
        assert_eq!(lock(&cond).notify(2), 2);
        reaches(&woken, 2);
        assert_eq!(lock(&cond).notify(4), 4);
        reaches(&woken, 6);
        assert_eq!(lock(&cond).notify(3), 0);
        waiters.join();
        assert_eq!(woken.load(), 6);
    });
}

/// Python's `_TestCondition.test_timeout`.
fn wait_timeout_waits_at_least() {
    let c = name("cto");
    let cond = Condition::create(&c, ConditionLock::Own).expect("create");
    let mut g = lock(&cond);
    for asked in [Duration::ZERO, Duration::from_millis(100)] {
        let notified = common::timed(asked, || g.wait_timeout(asked)).expect("wait");
        assert!(!notified);
    }
    drop(g);
    // The lock was taken back: another thread cannot have it until the guard goes.
    let g = lock(&cond);
    std::thread::scope(|s| {
        s.spawn(|| assert!(cond.try_acquire().is_err()));
    });
    drop(g);
}

fn wait_for_four(args: &[String]) {
    let cond = Condition::open(&args[0]).expect("open");
    let state = RawValue::<i64>::open(&args[1]).expect("open");
    let mut g = lock(&cond);
    state.store(0);
    g.notify(1);
    let ok = g
        .wait_for(|| state.load() == 4, Some(LIMIT))
        .expect("wait_for");
    assert!(ok && state.load() == 4);
}

/// Python's `test_waitfor`.
fn wait_for_across_processes() {
    let (c, v) = (name("cwf"), name("cwfv"));
    let cond = Condition::create(&c, ConditionLock::Own).expect("create");
    let state = RawValue::<i64>::create(&v, -1).expect("create");
    let child = Child::spawn("wait_for_four", &[&c, &v]);
    {
        let mut g = lock(&cond);
        assert!(
            g.wait_for(|| state.load() == 0, Some(LIMIT))
                .expect("wait_for")
        );
        assert_eq!(state.load(), 0);
    }
    for _ in 0..4 {
        let g = lock(&cond);
        state.fetch_add(1);
        g.notify(1);
    }
    child.join();
}

fn wait_for_four_briefly(args: &[String]) {
    let cond = Condition::open(&args[0]).expect("open");
    let state = RawValue::<i64>::open(&args[1]).expect("open");
    common::ready();
    let mut g = lock(&cond);
    let asked = Duration::from_millis(100);
    let ok =
        common::timed(asked, || g.wait_for(|| state.load() == 4, Some(asked))).expect("wait_for");
    assert!(!ok, "the predicate never became true");
}

/// Python's `test_waitfor_timeout`: three notifies, the predicate never true, the wait ends
/// after its timeout with `false`.
fn wait_for_times_out() {
    let (c, v) = (name("cwt"), name("cwtv"));
    let cond = Condition::create(&c, ConditionLock::Own).expect("create");
    let state = RawValue::<i64>::create(&v, 0).expect("create");
    let mut child = Child::spawn("wait_for_four_briefly", &[&c, &v]);
    child.wait_ready();
    for _ in 0..3 {
        let g = lock(&cond);
        state.fetch_add(1);
        g.notify(1);
    }
    child.join();
}

fn notify_once(args: &[String]) {
    let cond = Condition::open(&args[0]).expect("open");
    assert_eq!(common::line_from_parent(), "go");
    let g = lock(&cond);
    assert_eq!(g.notify(1), 1);
}

/// Python's `test_wait_result`.
fn wait_result() {
    let c = name("cwr");
    let cond = Condition::create(&c, ConditionLock::Own).expect("create");
    let mut g = lock(&cond);
    assert!(!g.wait_timeout(Duration::ZERO).expect("wait"));
    assert!(!g.wait_timeout(Duration::from_millis(100)).expect("wait"));
    let mut child = Child::spawn("notify_once", &[&c]);
    child.tell("go"); // it needs the lock, which the wait below releases
    assert!(g.wait_timeout(Duration::from_secs(60)).expect("wait"));
    drop(g);
    child.join();
}

/// `wait`, `wait_while` and `wait_for` without a timeout, woken from another process. (The
/// waiting runs on a detached thread, so that a lost wake-up fails the test instead of
/// hanging it.)
fn untimed_waits() {
    let (c, v) = (name("cuw"), name("cuwv"));
    let cond = Condition::create(&c, ConditionLock::Own).expect("create");
    let _state = RawValue::<u64>::create(&v, 0).expect("create"); // the creator keeps it
    let (tx, rx) = mpsc::channel();
    let (tid_tx, tid_rx) = mpsc::channel();
    let (c2, v2) = (c.clone(), v.clone());
    std::thread::spawn(move || {
        let cond = Condition::open(&c2).expect("open");
        let state = RawValue::<u64>::open(&v2).expect("open");
        let mut g = lock(&cond);
        tid_tx.send(common::thread_id()).expect("send");
        g.wait().expect("wait");
        tx.send("woke").expect("send");
        g.wait_while(|| state.load() < 2).expect("wait_while");
        assert!(g.wait_for(|| state.load() == 3, None).expect("wait_for"));
        tx.send("done").expect("send");
    });
    common::wait_until_sleeping(tid_rx.recv().expect("tid"));
    for step in 1..=3 {
        let mut child = Child::spawn("notify_all_at", &[&c, &v, &step.to_string()]);
        child.tell("go");
        child.join();
        if step == 1 {
            assert_eq!(rx.recv_timeout(LIMIT).expect("woken"), "woke");
        }
    }
    assert_eq!(rx.recv_timeout(LIMIT).expect("woken"), "done");
    drop(cond);
}

fn notify_all_at(args: &[String]) {
    let cond = Condition::open(&args[0]).expect("open");
    let state = RawValue::<u64>::open(&args[1]).expect("open");
    assert_eq!(common::line_from_parent(), "go");
    let g = lock(&cond);
    state.store(args[2].parse().expect("step"));
    g.notify_all();
}

/// A notify with no one waiting is not remembered (a sleeping-waiters list, as Python's).
fn a_notify_before_the_wait_is_not_kept() {
    let c = name("cnb");
    let cond = Condition::create(&c, ConditionLock::Own).expect("create");
    let mut g = lock(&cond);
    assert_eq!(g.notify(1), 0);
    assert_eq!(g.notify_all(), 0);
    assert!(!g.wait_timeout(Duration::from_millis(50)).expect("wait"));
}

/// A waiter that begins after a notify (while the notified one has not yet taken the lock back)
/// does not take that notify: the first wakes, the second times out.
fn a_later_waiter_does_not_take_an_earlier_notify() {
    let c = name("cln");
    let cond = Condition::create(&c, ConditionLock::Own).expect("create");
    std::thread::scope(|s| {
        let first = timed_waiter(s, &cond, Duration::from_secs(10));
        let mut g = lock(&cond);
        assert_eq!(g.notify(1), 1);
        // Still holding the lock: the first waiter cannot have left yet. Now wait ourselves.
        let second = g.wait_timeout(Duration::from_millis(100)).expect("wait");
        drop(g);
        assert!(
            first.recv().expect("first waiter").0,
            "the first waiter got the notify"
        );
        assert!(!second, "the later waiter took an earlier notify");
    });
}

fn take_lock_and_notify(args: &[String]) {
    let cond = Condition::open(&args[0]).expect("open");
    assert_eq!(common::line_from_parent(), "go");
    // `try` first: the waiter must have released every level of its reentrant lock.
    let g = cond
        .acquire_timeout(Duration::from_secs(5))
        .expect("the waiter released the lock at its full depth");
    assert_eq!(g.notify(1), 1);
    drop(g);
    assert_eq!(common::line_from_parent(), "check");
    // The waiter holds its outer two levels again: the lock stays taken until it drops them.
    assert!(matches!(cond.try_acquire(), Err(LockError::WouldBlock)));
    common::say("held");
    assert_eq!(common::line_from_parent(), "check");
    drop(cond.try_acquire().expect("all levels were released"));
}

/// A thread holding the condition's own (reentrant) lock three times waits: another process can
/// take the lock and notify; the waiter holds it three times again afterwards.
fn rlock_is_released_at_its_full_depth() {
    let c = name("crl");
    let cond = Condition::create(&c, ConditionLock::Own).expect("create");
    let mut child = Child::spawn("take_lock_and_notify", &[&c]);
    let outer = lock(&cond);
    let middle = lock(&cond);
    let mut inner = lock(&cond);
    child.tell("go");
    assert!(inner.wait_timeout(Duration::from_secs(10)).expect("wait"));
    drop(inner);
    child.tell("check");
    assert_eq!(child.line(), "held");
    drop((middle, outer));
    child.tell("check");
    child.join();
}

/// A condition over a user's `Lock` and one over a user's `RLock`: the guard holds the user's
/// lock, and a process that opens the condition by name finds the lock by name.
fn user_locks() {
    let (l, c) = (name("ul"), name("ulc"));
    let user = Lock::create(&l, ()).expect("create lock");
    let cond = Condition::create(&c, ConditionLock::from(&user)).expect("create");
    assert_eq!(cond.lock_name(), Some(l.as_str()));
    {
        let mut g = lock(&cond);
        std::thread::scope(|s| {
            s.spawn(|| assert!(matches!(user.try_acquire(), Err(LockError::WouldBlock))));
        });
        let mut child = Child::spawn("notify_once", &[&c]);
        child.tell("go");
        assert!(g.wait_timeout(Duration::from_secs(10)).expect("wait"));
        drop(g);
        child.join();
    }
    drop(user.try_acquire().expect("released with the guard"));

    let (rl, rc) = (name("url"), name("urlc"));
    let user = RLock::create(&rl, ()).expect("create rlock");
    let cond = Condition::create(&rc, ConditionLock::from(&user)).expect("create");
    let outer = user.acquire().expect("lock"); // taken through the RLock itself
    let mut g = lock(&cond); // and again through the condition: depth 2
    let mut child = Child::spawn("take_lock_and_notify", &[&rc]);
    child.tell("go");
    assert!(g.wait_timeout(Duration::from_secs(10)).expect("wait"));
    drop(g);
    child.tell("check");
    assert_eq!(child.line(), "held");
    drop(outer);
    child.tell("check");
    child.join();

    // The condition cannot be opened once its lock's name is gone.
    let (gone, gc) = (name("gone"), name("gonec"));
    let temp = Lock::create(&gone, ()).expect("create");
    let cond = Condition::create(&gc, ConditionLock::from(&temp)).expect("create");
    drop(temp);
    assert!(matches!(
        Condition::open(&gc),
        Err(mpshm::Error::NotFound { .. })
    ));
    drop(cond);
}

/// Where the first waiter slot's state word lies in a condition's segment: the 256-byte
/// header and the 56-byte lock area rounded up to 64, then the 64 bytes of words.
const FIRST_SLOT_STATE: u64 = 320 + 64;

fn raw_notify_then_park(args: &[String]) {
    let _cond = Condition::open(&args[0]).expect("open"); // holds a record
    common::ready();
    assert_eq!(common::line_from_parent(), "go");
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(format!("/dev/shm/{}", args[0]))
        .expect("open the segment file");
    use std::os::unix::fs::FileExt;
    let mut word = [0u8; 4];
    file.read_exact_at(&mut word, FIRST_SLOT_STATE)
        .expect("read");
    assert_eq!(
        u32::from_ne_bytes(word),
        1,
        "the test's idea of the layout is wrong"
    );
    // What `notify` stores, without its wake: a notifier killed in between.
    file.write_all_at(&2u32.to_ne_bytes(), FIRST_SLOT_STATE)
        .expect("write");
    common::say("notified");
    common::park();
}

/// A notifier that marked a waiter notified but died before waking it: the waiter returns
/// notified, woken by the death, not by its timeout (nothing else wakes it: the mark was written
/// without a wake).
fn a_notify_cut_short_by_death_is_kept() {
    let c = name("ccut");
    let cond = Condition::create(&c, ConditionLock::Own).expect("create");
    let mut child = Child::spawn("raw_notify_then_park", &[&c]);
    child.wait_ready();
    let limit = Duration::from_secs(10);
    let before = Instant::now();
    std::thread::scope(|s| {
        let got = timed_waiter(s, &cond, limit);
        child.tell("go");
        assert_eq!(child.line(), "notified");
        child.kill();
        let (notified, woke) = got.recv().expect("waiter");
        assert!(notified, "the notify was kept");
        assert!(
            woke < before + limit,
            "the waiter slept until its timeout: the notifier's death did not wake it"
        );
    });
}

fn wait_forever(args: &[String]) {
    let cond = Condition::open(&args[0]).expect("open");
    let mut g = lock(&cond);
    common::ready();
    let _ = g.wait();
    common::say("woke");
    common::park();
}

/// A waiter process killed while waiting, then a notify meant for one waiter: it reaches the
/// live waiter, not the dead one's slot; and a notify that reached a waiter which then died
/// before taking it is passed on to a live waiter that was already waiting.
fn a_dead_waiter_does_not_swallow_a_notify() {
    let c = name("cdw");
    let cond = Condition::create(&c, ConditionLock::Own).expect("create");
    // The dead waiter waits first: the oldest, the first a notify would pick.
    let mut dead = Child::spawn("wait_forever", &[&c]);
    dead.wait_ready();
    common::wait_until_process_sleeps(dead.pid());
    std::thread::scope(|s| {
        let got = timed_waiter(s, &cond, Duration::from_secs(10));
        dead.kill();
        lock(&cond).notify(1);
        let (notified, _) = got.recv_timeout(Duration::from_secs(5)).expect("waiter");
        assert!(notified, "the live waiter got the notify");
    });

    // Now the notify lands on the child first (it is the oldest), and the child dies before it
    // can take it back: the live waiter, already waiting, gets it passed on.
    let mut victim = Child::spawn("wait_forever", &[&c]);
    victim.wait_ready();
    common::wait_until_process_sleeps(victim.pid());
    std::thread::scope(|s| {
        let got = timed_waiter(s, &cond, Duration::from_secs(10));
        // Hold the lock across the notify and the kill: the child is woken but cannot take
        // the lock back before it dies.
        let g = lock(&cond);
        assert_eq!(g.notify(1), 1);
        victim.kill();
        drop(g);
        let (notified, _) = got.recv_timeout(Duration::from_secs(5)).expect("waiter");
        assert!(
            notified,
            "the notify that reached the dead waiter was passed on"
        );
    });
}

/// Two parties take turns: with the lock, bump the shared counter and notify, then wait for
/// the other's turn (bounded).
fn ping_pong(args: &[String]) {
    let cond = Condition::open(&args[0]).expect("open");
    let turns = RawValue::<u64>::open(&args[1]).expect("open");
    common::ready();
    loop {
        let mut g = lock(&cond);
        turns.fetch_add(1);
        g.notify(1);
        match g.wait_timeout(Duration::from_millis(50)) {
            Ok(_) | Err(ConditionError::OwnerDied { .. }) => g.mark_consistent(),
            Err(e) => panic!("{e}"),
        }
    }
}

/// A child plays ping-pong with a thread of the parent and is killed at a random point: inside
/// its wait, between a notify and its wake, holding the lock. The parent's waits never outlast
/// their timeout, and afterwards the condition still works: a fresh waiter is reached by
/// `notify(1)`, no slot of the dead child swallows it. Reported: kill to the return of the
/// partner's last wait (its 5 ms timeout, when no notify of the child's was pending).
fn kill_loop_ping_pong() {
    let trials = common::sync::trials(300);
    let (c, t) = (name("ckl"), name("cklt"));
    let cond = Condition::create(&c, ConditionLock::Own).expect("create");
    let turns = RawValue::<u64>::create(&t, 0).expect("create");
    let mut rng = common::sync::Rng::new();
    let mut samples = Vec::new();
    for _ in 0..trials {
        let mut child = Child::spawn("ping_pong", &[&c, &t]);
        child.wait_ready();
        let start = turns.load();
        let stop = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|s| {
            let partner = s.spawn(|| {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let mut g = lock(&cond);
                    turns.fetch_add(1);
                    g.notify(1);
                    // Short: after the kill, the partner's last wait ends by its timeout.
                    let asked = Duration::from_millis(5);
                    let began = Instant::now();
                    match g.wait_timeout(asked) {
                        Ok(_) => {}
                        Err(ConditionError::OwnerDied { .. }) => g.mark_consistent(),
                        Err(e) => panic!("{e}"),
                    }
                    assert!(
                        began.elapsed() < asked + Duration::from_secs(2),
                        "a wait hung"
                    );
                }
            });
            while turns.load() < start + 20 {
                std::thread::yield_now();
            }
            common::sync::spin_for(rng.duration(Duration::from_millis(2)));
            let killed = Instant::now();
            child.kill();
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            partner.join().expect("partner");
            samples.push(killed.elapsed());
        });
        assert!(
            fresh_waiter_notified(&cond),
            "a dead waiter's slot swallowed the notify"
        );
    }
    common::sync::report(
        "condition, ping-pong partner killed: the survivor's last wait ends",
        &mut samples,
    );
}

/// Starts a waiter, notifies one, and says whether the waiter got it.
fn fresh_waiter_notified(cond: &Condition) -> bool {
    std::thread::scope(|s| {
        let got = timed_waiter(s, cond, Duration::from_secs(10));
        lock(cond).notify(1);
        got.recv().expect("fresh waiter").0
    })
}

/// The first free waiter slot of condition `c`: the one the next wait claims, if nobody else
/// waits first (read with the lock held).
fn first_free_slot(c: &str) -> u64 {
    (0..256)
        .map(|i| FIRST_SLOT_STATE + 32 * i)
        .find(|&at| common::sync::peek(c, at) == 0)
        .expect("a free slot")
}

fn wait_and_mark(args: &[String]) {
    let cond = Condition::open(&args[0]).expect("open");
    let consumed = RawValue::<u64>::open(&args[1]).expect("open");
    let mut g = lock(&cond);
    common::say(&first_free_slot(&args[0]).to_string());
    common::ready();
    match g.wait_timeout(Duration::from_secs(10)) {
        Ok(true) | Err(ConditionError::OwnerDied { notified: true }) => consumed.store(1),
        other => panic!("{other:?}"),
    }
    common::park();
}

/// The oldest waiter, a child, is notified and killed in a random order and at random moments
/// around the notify, while a younger waiter (a thread of the parent) sleeps. Unless the child
/// took the notify before it died, the younger waiter gets it (passed on from the dead one's
/// slot, or directly if the death was seen first). The child took it if it marked so, or if it
/// died holding the lock (so its wait had taken the lock back) with its slot freed while the
/// younger one's still waits: a wait frees its slot before it returns, so the child's own mark
/// can come too late. (A kill after the child took the lock back and before it freed its slot
/// leaves the notify to be passed on, which this cannot tell from a taken one.) Reported: kill
/// to the younger waiter's wake-up, when the notify came before the kill.
fn kill_loop_notified_waiter() {
    let trials = common::sync::trials(300);
    let (c, f) = (name("cknw"), name("cknwf"));
    let cond = Condition::create(&c, ConditionLock::Own).expect("create");
    let consumed = RawValue::<u64>::create(&f, 0).expect("create");
    let mut rng = common::sync::Rng::new();
    let mut samples = Vec::new();
    let mut taken_by_the_dead = 0;
    for _ in 0..trials {
        consumed.store(0);
        let mut child = Child::spawn("wait_and_mark", &[&c, &f]);
        let childs_slot: u64 = child.line().parse().expect("slot");
        child.wait_ready();
        common::wait_until_process_sleeps(child.pid());
        let younger_slot = first_free_slot(&c);
        std::thread::scope(|s| {
            let rx = timed_waiter(s, &cond, Duration::from_secs(10));
            let notify_first = rng.below(2) == 0;
            if !notify_first {
                child.kill();
            }
            common::sync::spin_for(rng.duration(Duration::from_micros(200)));
            lock(&cond).notify(1);
            common::sync::spin_for(rng.duration(Duration::from_micros(200)));
            let killed = Instant::now();
            if notify_first {
                child.kill();
            }
            let (g, died_holding) = match cond.acquire() {
                Ok(g) => (g, false),
                Err(LockError::OwnerDied(g)) => {
                    g.mark_consistent();
                    (g, true)
                }
                Err(e) => panic!("acquire: {e}"),
            };
            let slot = |at| common::sync::peek(&c, at);
            let taken = consumed.load() == 1
                || (died_holding && slot(childs_slot) == 0 && slot(younger_slot) == 1);
            if taken {
                // The child took the notify and died with it: release the younger one.
                taken_by_the_dead += 1;
                g.notify(1);
            }
            drop(g);
            let (notified, woke) = rx
                .recv_timeout(Duration::from_secs(5))
                .expect("the younger waiter was never woken");
            assert!(notified, "the notify was lost with the dead waiter");
            if notify_first && woke > killed {
                samples.push(woke - killed);
            }
        });
    }
    println!(
        "condition: the dead waiter had taken the notify in {taken_by_the_dead} of {trials} trials"
    );
    common::sync::report(
        "condition, notified waiter killed: notify passed on",
        &mut samples,
    );
}
