//! `Barrier` across real processes: Python's `_TestBarrier` cases, and parties killed with
//! `SIGKILL` breaking it for the others.

mod common;

use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{Child, name};
use mpshm::prelude::*;
use mpshm::{Barrier, BarrierError, BreakCause, Error, RawValue};

/// Parties in Python's barrier tests.
const N: u32 = 5;

/// The longest any wait in these tests may take: a party that never comes (a child that failed)
/// breaks the barrier for the others instead of hanging the test.
const LIMIT: Duration = Duration::from_secs(30);

fn main() {
    common::run(
        tests![
            passes_in_lockstep,
            one_party_gets_each_index,
            the_action_runs_once,
            abort_breaks_it,
            reset_frees_the_waiters,
            abort_then_reset,
            a_timeout_breaks_it,
            a_single_party,
            a_panicking_action_breaks_it,
            parameters_are_checked,
            a_dead_party_breaks_it,
            a_dead_partys_record_breaks_it_for_its_next_holder,
            a_party_that_leaves_does_not_break_it,
            kill_loop_party
        ],
        routines![
            multipass_child,
            report_index,
            action_party,
            abort_party,
            reset_party,
            abort_reset_party,
            timeout_party,
            one_round_then_park,
            arrive,
            one_round_then_leave,
            loop_party
        ],
    );
}

/// Runs `routine` in `N - 1` child processes with `args`, and `here` in this one; joins them.
fn run_parties(routine: &str, args: &[&str], here: impl FnOnce()) {
    let kids: Vec<Child> = (1..N).map(|_| Child::spawn(routine, args)).collect();
    here();
    for k in kids {
        k.join();
    }
}

fn counter(n: &str) -> RawValue<u64> {
    RawValue::<u64>::open(n).expect("open counter")
}

fn broken<T: std::fmt::Debug>(r: Result<T, BarrierError>) -> BreakCause {
    match r {
        Err(BarrierError::Broken(cause)) => cause,
        other => panic!("expected a broken barrier, got {other:?}"),
    }
}

/// Python's `multipass`: parties count in and out of each round; no one runs ahead.
fn multipass(b: &Barrier, r0: &RawValue<u64>, r1: &RawValue<u64>, passes: u64) {
    let m = u64::from(b.parties());
    for i in 0..passes {
        r0.fetch_add(1);
        assert_eq!(r1.load(), i * m);
        b.wait_timeout(LIMIT).expect("wait");
        r1.fetch_add(1);
        assert_eq!(r0.load(), (i + 1) * m);
        b.wait_timeout(LIMIT).expect("wait");
    }
    assert_eq!(b.n_waiting(), 0);
    assert!(!b.broken());
}

fn multipass_child(args: &[String]) {
    let b = Barrier::open(&args[0]).expect("open");
    let passes: u64 = args[3].parse().expect("passes");
    multipass(&b, &counter(&args[1]), &counter(&args[2]), passes);
}

/// Python's `test_barrier_10`, and `test_thousand`'s many rounds (here 200), across processes.
fn passes_in_lockstep() {
    for passes in [10u64, 200] {
        let (b, r0, r1) = (name("bl"), name("bl0"), name("bl1"));
        let barrier = Barrier::create(&b, N).expect("create");
        let c0 = RawValue::<u64>::create(&r0, 0).expect("create");
        let c1 = RawValue::<u64>::create(&r1, 0).expect("create");
        let p = passes.to_string();
        run_parties("multipass_child", &[&b, &r0, &r1, &p], || {
            multipass(&barrier, &c0, &c1, passes);
        });
    }
}

fn report_index(args: &[String]) {
    let b = Barrier::open(&args[0]).expect("open");
    let i = b.wait_timeout(LIMIT).expect("wait");
    common::say(&i.to_string());
}

/// Python's `test_wait_return`: the indices are `0..N`, each once.
fn one_party_gets_each_index() {
    let b = name("bi");
    let barrier = Barrier::create(&b, N).expect("create");
    let mut kids: Vec<Child> = (1..N)
        .map(|_| Child::spawn("report_index", &[&b]))
        .collect();
    let mut got = vec![barrier.wait_timeout(LIMIT).expect("wait")];
    for k in &mut kids {
        got.push(k.line().parse().expect("index"));
    }
    for k in kids {
        k.join();
    }
    got.sort_unstable();
    assert_eq!(got, (0..N).collect::<Vec<_>>());
}

fn action_party(args: &[String]) {
    let mut b = Barrier::open(&args[0]).expect("open");
    let ran = args[1].clone();
    b.set_action(move || {
        counter(&ran).fetch_add(1);
    });
    b.wait_timeout(LIMIT).expect("wait");
    assert_eq!(
        counter(&args[1]).load(),
        1,
        "the action ran once, before the release"
    );
}

/// Python's `test_action`: every process sets the action on its handle; it runs once.
fn the_action_runs_once() {
    let (b, r) = (name("ba"), name("bar"));
    let ran = RawValue::<u64>::create(&r, 0).expect("create");
    let _barrier = Barrier::create(&b, N).expect("create");
    let kids: Vec<Child> = (0..N)
        .map(|_| Child::spawn("action_party", &[&b, &r]))
        .collect();
    for k in kids {
        k.join();
    }
    assert_eq!(ran.load(), 1);
}

fn abort_party(args: &[String]) {
    let b = Barrier::open(&args[0]).expect("open");
    let (passed, failed) = (counter(&args[1]), counter(&args[2]));
    let i = b.wait_timeout(LIMIT).expect("wait");
    if i == N / 2 {
        b.abort().expect("abort");
        return;
    }
    match b.wait_timeout(LIMIT) {
        Ok(_) => {
            passed.fetch_add(1);
        }
        Err(BarrierError::Broken(BreakCause::Aborted)) => {
            failed.fetch_add(1);
        }
        Err(e) => panic!("{e}"),
    }
}

/// Python's `test_abort`.
fn abort_breaks_it() {
    let (b, p, f) = (name("bab"), name("babp"), name("babf"));
    let barrier = Barrier::create(&b, N).expect("create");
    let passed = RawValue::<u64>::create(&p, 0).expect("create");
    let failed = RawValue::<u64>::create(&f, 0).expect("create");
    let kids: Vec<Child> = (0..N)
        .map(|_| Child::spawn("abort_party", &[&b, &p, &f]))
        .collect();
    for k in kids {
        k.join();
    }
    assert_eq!(passed.load(), 0);
    assert_eq!(failed.load(), u64::from(N - 1));
    assert!(barrier.broken());
    assert_eq!(barrier.n_waiting(), 0);
    assert_eq!(broken(barrier.wait_timeout(LIMIT)), BreakCause::Aborted);
}

fn reset_party(args: &[String]) {
    let b = Barrier::open(&args[0]).expect("open");
    let (passed, failed, again) = (counter(&args[1]), counter(&args[2]), counter(&args[3]));
    let i = b.wait_timeout(LIMIT).expect("wait");
    if i == N / 2 {
        let start = Instant::now();
        while b.n_waiting() < N - 1 {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "the others never came"
            );
            std::thread::yield_now();
        }
        b.reset().expect("reset");
    } else {
        match b.wait_timeout(LIMIT) {
            Ok(_) => {
                passed.fetch_add(1);
            }
            Err(BarrierError::Broken(BreakCause::Reset)) => {
                failed.fetch_add(1);
            }
            Err(e) => panic!("{e}"),
        }
    }
    b.wait_timeout(LIMIT).expect("the reset barrier works");
    again.fetch_add(1);
}

/// Python's `test_reset`.
fn reset_frees_the_waiters() {
    let (b, p, f, a) = (name("br"), name("brp"), name("brf"), name("bra"));
    let _barrier = Barrier::create(&b, N).expect("create");
    let passed = RawValue::<u64>::create(&p, 0).expect("create");
    let failed = RawValue::<u64>::create(&f, 0).expect("create");
    let again = RawValue::<u64>::create(&a, 0).expect("create");
    let kids: Vec<Child> = (0..N)
        .map(|_| Child::spawn("reset_party", &[&b, &p, &f, &a]))
        .collect();
    for k in kids {
        k.join();
    }
    assert_eq!(passed.load(), 0);
    assert_eq!(failed.load(), u64::from(N - 1));
    assert_eq!(again.load(), u64::from(N));
}

fn abort_reset_party(args: &[String]) {
    let b = Barrier::open(&args[0]).expect("open");
    let b2 = Barrier::open(&args[1]).expect("open");
    let (passed, failed, again) = (counter(&args[2]), counter(&args[3]), counter(&args[4]));
    let i = b.wait_timeout(LIMIT).expect("wait");
    if i == N / 2 {
        b.abort().expect("abort");
    } else {
        match b.wait_timeout(LIMIT) {
            Ok(_) => {
                passed.fetch_add(1);
            }
            Err(BarrierError::Broken(_)) => {
                failed.fetch_add(1);
            }
            Err(e) => panic!("{e}"),
        }
    }
    // Everyone has left `b` once `b2` is passed; reset it then, and pass `b2` again so that no
    // one enters `b` before the reset.
    if b2.wait_timeout(LIMIT).expect("wait") == N / 2 {
        b.reset().expect("reset");
    }
    b2.wait_timeout(LIMIT).expect("wait");
    b.wait_timeout(LIMIT).expect("the reset barrier works");
    again.fetch_add(1);
}

/// Python's `test_abort_and_reset`.
fn abort_then_reset() {
    let (b, b2) = (name("bar1"), name("bar2"));
    let (p, f, a) = (name("barp"), name("barf"), name("bara"));
    let _barrier = Barrier::create(&b, N).expect("create");
    let _barrier2 = Barrier::create(&b2, N).expect("create");
    let passed = RawValue::<u64>::create(&p, 0).expect("create");
    let failed = RawValue::<u64>::create(&f, 0).expect("create");
    let again = RawValue::<u64>::create(&a, 0).expect("create");
    let kids: Vec<Child> = (0..N)
        .map(|_| Child::spawn("abort_reset_party", &[&b, &b2, &p, &f, &a]))
        .collect();
    for k in kids {
        k.join();
    }
    assert_eq!(passed.load(), 0);
    assert_eq!(failed.load(), u64::from(N - 1));
    assert_eq!(again.load(), u64::from(N));
}

fn timeout_party(args: &[String]) {
    let b = Barrier::open(&args[0]).expect("open");
    let failed = counter(&args[1]);
    let i = b.wait_timeout(LIMIT).expect("wait");
    if i == N / 2 {
        // One party is late: the others' timeouts run out first.
        std::thread::sleep(Duration::from_millis(400));
    }
    let asked = Duration::from_millis(100);
    let start = Instant::now();
    match b.wait_timeout(asked) {
        Err(BarrierError::Broken(cause)) => {
            if i != N / 2 {
                assert!(start.elapsed() >= asked || cause == BreakCause::Timeout);
            }
            failed.fetch_add(1);
        }
        other => panic!("{other:?}"),
    }
}

/// Python's `test_timeout`: a late party makes the others' `wait_timeout` run out, which breaks
/// the barrier for every party, the late one included.
fn a_timeout_breaks_it() {
    let (b, f) = (name("bt"), name("btf"));
    let barrier = Barrier::create(&b, N).expect("create");
    let failed = RawValue::<u64>::create(&f, 0).expect("create");
    let kids: Vec<Child> = (0..N)
        .map(|_| Child::spawn("timeout_party", &[&b, &f]))
        .collect();
    for k in kids {
        k.join();
    }
    assert_eq!(failed.load(), u64::from(N));
    assert_eq!(broken(barrier.wait_timeout(LIMIT)), BreakCause::Timeout);
    let asked = Duration::from_millis(50);
    barrier.reset().expect("reset");
    let cause = broken(common::timed(asked, || barrier.wait_timeout(asked)));
    assert_eq!(cause, BreakCause::Timeout);
}

/// Python's `test_single_thread`.
fn a_single_party() {
    let b = Barrier::create(&name("b1"), 1).expect("create");
    assert_eq!(b.wait().expect("wait"), 0);
    assert_eq!(b.wait().expect("wait"), 0);
}

/// An action that panics breaks the barrier for the others, and the panic goes on in the party
/// that ran it.
fn a_panicking_action_breaks_it() {
    let b = name("bpa");
    let mut barrier = Barrier::create(&b, 2).expect("create");
    barrier.set_action(|| panic!("the action fails"));
    let other = Barrier::open(&b).expect("open");
    std::thread::scope(|s| {
        let waiter = s.spawn(|| other.wait_timeout(LIMIT));
        let ran =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| barrier.wait_timeout(LIMIT)));
        let waited = waiter.join().expect("thread");
        match ran {
            // This thread arrived last: it ran the action, which panicked.
            Err(_) => assert_eq!(broken(waited), BreakCause::ActionPanicked),
            // The other thread (no action on its handle) arrived last: no action ran.
            Ok(r) => {
                r.expect("wait");
                waited.expect("wait");
            }
        }
    });
}

fn parameters_are_checked() {
    assert!(matches!(
        Barrier::create(&name("b0"), 0),
        Err(Error::InvalidLength { .. })
    ));
    let n = name("bp");
    let b = Barrier::create(&n, 3).expect("create");
    assert_eq!(Barrier::open_or_create(&n, 9).expect("open").parties(), 3);
    assert!(matches!(
        mpshm::Event::open(&n),
        Err(Error::KindMismatch { .. })
    ));
    assert_eq!((b.n_waiting(), b.broken()), (0, false));
    b.abort().expect("abort");
    assert!(b.broken());
    b.reset().expect("reset");
    assert!(!b.broken());
}

fn one_round_then_park(args: &[String]) {
    let b = Barrier::open(&args[0]).expect("open");
    b.wait_timeout(LIMIT).expect("wait");
    common::ready();
    common::park();
}

fn one_round_then_leave(args: &[String]) {
    let b = Barrier::open(&args[0]).expect("open");
    b.wait_timeout(LIMIT).expect("wait");
    drop(b);
    common::ready();
}

/// Starts a thread waiting on barrier `b`; the receiver gets its result and when.
fn waiting_thread<'s>(
    s: &'s std::thread::Scope<'s, '_>,
    b: &str,
) -> mpsc::Receiver<(Result<u32, BarrierError>, Instant)> {
    let b = b.to_owned();
    common::sync::sleeper(
        s,
        move || Barrier::open(&b).expect("open"),
        |barrier| barrier.wait_timeout(LIMIT),
    )
}

/// A party killed while two others wait: they wake at once with `PartyDied`, naming it.
fn a_dead_party_breaks_it() {
    let b = name("bd");
    let barrier = Barrier::create(&b, 3).expect("create");
    let mut victim = Child::spawn("one_round_then_park", &[&b]);
    let other = Barrier::open(&b).expect("open");
    std::thread::scope(|s| {
        let a = s.spawn(|| barrier.wait_timeout(LIMIT).expect("round one"));
        other.wait_timeout(LIMIT).expect("round one");
        a.join().expect("thread");
    });
    victim.wait_ready();
    let pid = victim.pid();
    std::thread::scope(|s| {
        let got = [waiting_thread(s, &b), waiting_thread(s, &b)];
        victim.kill();
        for rx in got {
            let (r, _) = rx
                .recv_timeout(Duration::from_secs(5))
                .expect("woken by the death");
            assert_eq!(broken(r), BreakCause::PartyDied { pid });
        }
    });
    assert!(barrier.broken());
    barrier.reset().expect("reset");
    // Usable again, by the survivors alone once a third comes.
    std::thread::scope(|s| {
        let a = s.spawn(|| barrier.wait_timeout(LIMIT));
        let c = s.spawn(|| other.wait_timeout(LIMIT));
        let third = Barrier::open(&b).expect("open");
        third
            .wait_timeout(LIMIT)
            .expect("a full round after the reset");
        a.join().expect("thread").expect("wait");
        c.join().expect("thread").expect("wait");
    });
}

fn arrive(args: &[String]) {
    let b = Barrier::open(&args[0]).expect("open");
    common::ready();
    let _ = b.wait_timeout(LIMIT);
}

/// A party killed while it waits alone, so nobody looks for the dead: the next handle to open
/// takes its record over, and breaks the barrier for its death first.
fn a_dead_partys_record_breaks_it_for_its_next_holder() {
    let b = name("bt");
    let barrier = Barrier::create(&b, 3).expect("create");
    let mut victim = Child::spawn("arrive", &[&b]);
    victim.wait_ready();
    common::wait_until_process_sleeps(victim.pid());
    assert_eq!(barrier.n_waiting(), 1);
    let pid = victim.pid();
    victim.kill();
    assert!(!barrier.broken(), "nobody has looked for the dead yet");
    // Record 0 is the creator's; record 1, the dead party's, is the first one free.
    let next = Barrier::open(&b).expect("open");
    assert!(barrier.broken(), "broken when the record was taken");
    assert_eq!(
        broken(next.wait_timeout(LIMIT)),
        BreakCause::PartyDied { pid }
    );
}

/// A party that drops its handle and exits does not break the barrier: only a death does.
fn a_party_that_leaves_does_not_break_it() {
    let b = name("bv");
    let barrier = Barrier::create(&b, 2).expect("create");
    let mut leaver = Child::spawn("one_round_then_leave", &[&b]);
    barrier.wait_timeout(LIMIT).expect("round one");
    leaver.wait_ready();
    leaver.join();
    let asked = Duration::from_millis(100);
    // Nobody else comes: the wait times out (and that breaks it), but no death was seen.
    assert_eq!(broken(barrier.wait_timeout(asked)), BreakCause::Timeout);
}

fn loop_party(args: &[String]) {
    let b = Barrier::open(&args[0]).expect("open");
    let mut said = false;
    loop {
        match b.wait_timeout(LIMIT) {
            Ok(_) if !said => {
                common::ready();
                said = true;
            }
            Ok(_) => {}
            Err(BarrierError::Broken(cause)) => {
                common::say(&format!("{cause:?}"));
                assert_eq!(common::line_from_parent(), "go");
            }
            Err(e) => panic!("{e}"),
        }
    }
}

/// Three parties loop on a barrier: a thread of the parent, a surviving child and a victim
/// killed at a random point of its loop, each trial. The other two get `PartyDied` naming the
/// victim; after `reset` (and a new victim) the barrier passes rounds again. Reported: kill to
/// the parent party's wake-up with the error.
fn kill_loop_party() {
    let trials = common::sync::trials(300);
    let b = name("bkl");
    let barrier = Barrier::create(&b, 3).expect("create");
    let mut rng = common::sync::Rng::new();
    let mut samples = Vec::new();
    let (err_tx, err_rx) = mpsc::channel();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    std::thread::scope(|s| {
        let barrier = &barrier;
        s.spawn(move || {
            loop {
                match barrier.wait_timeout(LIMIT) {
                    Ok(_) => {}
                    Err(BarrierError::Broken(cause)) => {
                        err_tx.send((cause, Instant::now())).expect("send");
                        if go_rx.recv().is_err() {
                            return;
                        }
                    }
                    Err(e) => panic!("{e}"),
                }
            }
        });
        let mut survivor = Child::spawn("loop_party", &[&b]);
        for trial in 0..trials {
            let mut victim = Child::spawn("loop_party", &[&b]);
            victim.wait_ready();
            if trial == 0 {
                survivor.wait_ready();
            }
            let pid = victim.pid();
            common::sync::spin_for(rng.duration(Duration::from_millis(2)));
            let killed = Instant::now();
            victim.kill();
            let (cause, woke) = err_rx
                .recv_timeout(Duration::from_secs(10))
                .expect("the parent's party was never woken");
            assert_eq!(cause, BreakCause::PartyDied { pid });
            assert_eq!(
                survivor.line(),
                format!("{:?}", BreakCause::PartyDied { pid })
            );
            samples.push(woke.saturating_duration_since(killed));
            barrier.reset().expect("reset");
            go_tx.send(()).expect("send");
            survivor.tell("go");
        }
        survivor.kill();
        barrier.abort().expect("abort");
        drop(go_tx);
        let _ = err_rx.recv();
    });
    common::sync::report("barrier, party killed", &mut samples);
}
