//! `Event` across real processes: Python's set/clear/wait, set-clear races, and setters killed
//! with `SIGKILL`.

mod common;

use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{Child, name};
use mpshm::prelude::*;
use mpshm::{Error, Event};

fn main() {
    common::run(
        tests![
            event_like_python,
            set_wakes_waiters_in_other_processes,
            a_set_cleared_at_once_still_releases_waiters,
            set_clear_race_across_processes,
            a_set_cut_short_by_death_is_kept,
            a_setter_that_opened_after_the_waiter_slept_is_watched,
            kinds_are_checked,
            kill_loop_setter
        ],
        routines![
            wait_and_report,
            set_once,
            set_then_clear,
            toggle,
            raw_set_then_park,
            set_after_a_while
        ],
    );
}

/// Starts a thread sleeping in `wait_timeout(limit)` on event `n`; the receiver gets its result
/// and the time it returned.
fn sleeping_waiter<'s>(
    scope: &'s std::thread::Scope<'s, '_>,
    n: &str,
    limit: Duration,
) -> mpsc::Receiver<(bool, Instant)> {
    let n = n.to_owned();
    common::sync::sleeper(
        scope,
        move || Event::open(&n).expect("open"),
        move |ev| ev.wait_timeout(limit),
    )
}

/// Python's `_TestEvent.test_event`.
fn event_like_python() {
    let n = name("ev");
    let ev = Event::create(&n, ()).expect("create");
    assert!(!ev.is_set());
    assert!(!common::timed(Duration::ZERO, || ev.wait_timeout(Duration::ZERO)));
    let asked = Duration::from_millis(100);
    assert!(!common::timed(asked, || ev.wait_timeout(asked)));
    ev.set();
    assert!(ev.is_set());
    let start = Instant::now();
    ev.wait();
    assert!(ev.wait_timeout(asked));
    assert!(start.elapsed() < asked, "a set event waits for nothing");
    ev.clear();
    assert!(!ev.is_set());
    let mut child = Child::spawn("set_once", &[&n]);
    std::thread::scope(|s| {
        let got = sleeping_waiter(s, &n, Duration::from_secs(10));
        child.tell("go");
        let (set, _) = got.recv().expect("waiter");
        assert!(set, "woken by the other process's set");
    });
    child.join();
    assert!(ev.is_set());
}

fn set_once(args: &[String]) {
    let ev = Event::open(&args[0]).expect("open");
    assert_eq!(common::line_from_parent(), "go");
    ev.set();
}

fn set_then_clear(args: &[String]) {
    let ev = Event::open(&args[0]).expect("open");
    assert_eq!(common::line_from_parent(), "go");
    ev.set();
    ev.clear();
}

fn wait_and_report(args: &[String]) {
    let ev = Event::open(&args[0]).expect("open");
    common::ready();
    let set = ev.wait_timeout(Duration::from_secs(10));
    common::say(if set { "set" } else { "timeout" });
}

fn set_wakes_waiters_in_other_processes() {
    let n = name("evx");
    let ev = Event::create(&n, ()).expect("create");
    let mut kids: Vec<Child> = (0..2)
        .map(|_| Child::spawn("wait_and_report", &[&n]))
        .collect();
    for k in &mut kids {
        k.wait_ready();
        common::wait_until_process_sleeps(k.pid());
    }
    std::thread::scope(|s| {
        let got = sleeping_waiter(s, &n, Duration::from_secs(10));
        ev.set();
        assert!(got.recv().expect("waiter").0);
    });
    for mut k in kids {
        assert_eq!(k.line(), "set");
        k.join();
    }
}

/// A set followed at once by a clear, in another process, releases everyone who was waiting
/// (as `threading.Event` does), and leaves the flag down.
fn a_set_cleared_at_once_still_releases_waiters() {
    let n = name("evsc");
    let ev = Event::create(&n, ()).expect("create");
    let mut waiter = Child::spawn("wait_and_report", &[&n]);
    waiter.wait_ready();
    common::wait_until_process_sleeps(waiter.pid());
    let mut setter = Child::spawn("set_then_clear", &[&n]);
    std::thread::scope(|s| {
        let got: Vec<_> = (0..3)
            .map(|_| sleeping_waiter(s, &n, Duration::from_secs(10)))
            .collect();
        setter.tell("go");
        for rx in got {
            assert!(rx.recv().expect("waiter").0, "a waiter missed the set");
        }
    });
    setter.join();
    assert_eq!(waiter.line(), "set");
    waiter.join();
    assert!(!ev.is_set());
}

const TOGGLES: u32 = 20_000;

fn toggle(args: &[String]) {
    let ev = Event::open(&args[0]).expect("open");
    common::ready();
    for i in 0..TOGGLES {
        ev.set();
        if i % 64 == 0 {
            std::thread::yield_now();
        }
        ev.clear();
    }
    ev.set();
}

/// One process sets and clears the event as fast as it can while threads of another wait on it
/// over and over: every wait ends in a set, none hangs, and the last set is seen.
fn set_clear_race_across_processes() {
    let n = name("evr");
    let ev = Event::create(&n, ()).expect("create");
    let mut child = Child::spawn("toggle", &[&n]);
    child.wait_ready();
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                let ev = Event::open(&n).expect("open");
                let mut waits = 0u32;
                while !(ev.is_set() && waits > 0) {
                    assert!(
                        ev.wait_timeout(Duration::from_secs(10)),
                        "a wait hung while another process kept setting"
                    );
                    waits += 1;
                }
            });
        }
    });
    child.join();
    assert!(ev.is_set());
}

/// The event's state word: the payload starts at the 256-byte header (an event has no lock).
const EVENT_STATE: u64 = 256;

fn raw_set_then_park(args: &[String]) {
    let _ev = Event::open(&args[0]).expect("open"); // holds a record: its death is noticed
    common::ready();
    assert_eq!(common::line_from_parent(), "go");
    // What `set` stores, without the wake that follows it: a setter killed in between. (The
    // event is cleared, and no one else sets it: its state word is its set count, doubled.)
    let before = common::sync::peek(&args[0], EVENT_STATE);
    common::sync::poke(&args[0], EVENT_STATE, (before & !1).wrapping_add(2) | 1);
    common::say("raised");
    common::park();
}

/// Has `child` (a ready `raw_set_then_park`) raise the flag of event `n` without a wake, and
/// kills it: the sleeper `got`, started at `before` with `limit`, must return `true`, woken by
/// the death, not by its timeout (nothing else wakes it).
fn kill_a_raising_setter(
    n: &str,
    mut child: Child,
    got: mpsc::Receiver<(bool, Instant)>,
    before: Instant,
    limit: Duration,
) {
    child.tell("go");
    assert_eq!(child.line(), "raised");
    assert!(
        Event::open(n).expect("open").is_set(),
        "the test's idea of the layout is wrong"
    );
    child.kill();
    let (set, woke) = got.recv().expect("waiter");
    assert!(set);
    assert!(
        woke < before + limit,
        "the waiter slept until its timeout: the setter's death did not wake it"
    );
}

/// A setter that raised the flag but died before its wake: the sleeper is woken by the death.
fn a_set_cut_short_by_death_is_kept() {
    let n = name("evd");
    let _ev = Event::create(&n, ()).expect("create");
    let mut child = Child::spawn("raw_set_then_park", &[&n]);
    child.wait_ready();
    let (before, limit) = (Instant::now(), Duration::from_secs(10));
    std::thread::scope(|s| {
        let got = sleeping_waiter(s, &n, limit);
        kill_a_raising_setter(&n, child, got, before, limit);
    });
}

/// As [`a_set_cut_short_by_death_is_kept`], with a setter that opens the event only once the
/// waiter sleeps: its attaching wakes the waiter, which then watches it too.
fn a_setter_that_opened_after_the_waiter_slept_is_watched() {
    let n = name("evl");
    let _ev = Event::create(&n, ()).expect("create");
    let (before, limit) = (Instant::now(), Duration::from_secs(10));
    std::thread::scope(|s| {
        let got = sleeping_waiter(s, &n, limit);
        let mut child = Child::spawn("raw_set_then_park", &[&n]);
        child.wait_ready();
        kill_a_raising_setter(&n, child, got, before, limit);
    });
}

fn kinds_are_checked() {
    let n = name("evk");
    let _ev = Event::create(&n, ()).expect("create");
    assert!(matches!(
        mpshm::Semaphore::open(&n),
        Err(Error::KindMismatch { .. })
    ));
    assert!(matches!(
        Event::create(&n, ()),
        Err(Error::AlreadyExists { .. })
    ));
    let again = Event::open_or_create(&n, ()).expect("open_or_create");
    again.set();
    assert!(Event::open(&n).expect("open").is_set());
}

fn set_after_a_while(args: &[String]) {
    let ev = Event::open(&args[0]).expect("open");
    let delay: u64 = args[1].parse().expect("delay");
    common::ready();
    assert_eq!(common::line_from_parent(), "go");
    common::sync::spin_for(Duration::from_nanos(delay));
    ev.set();
    common::park();
}

/// A child sets the event after a random delay and is killed at a random moment around it,
/// while a thread of the parent sleeps in `wait`. Whenever the flag is up after the kill, the
/// waiter returns `true` on its own; when the kill came first, a set by the parent releases it.
/// Reported: kill to wake-up, for the waiters still asleep at the kill with the flag up.
fn kill_loop_setter() {
    let trials = common::sync::trials(300);
    let n = name("evkl");
    let ev = Event::create(&n, ()).expect("create");
    let mut rng = common::sync::Rng::new();
    let mut samples = Vec::new();
    let mut cut_short = 0;
    for _ in 0..trials {
        ev.clear();
        let delay = rng.below(300_000).to_string();
        let mut child = Child::spawn("set_after_a_while", &[&n, &delay]);
        child.wait_ready();
        std::thread::scope(|s| {
            let got = sleeping_waiter(s, &n, Duration::from_secs(10));
            child.tell("go");
            common::sync::spin_for(rng.duration(Duration::from_micros(300)));
            let killed = Instant::now();
            child.kill();
            let by_child = ev.is_set();
            let (set, woke) = if by_child {
                got.recv_timeout(Duration::from_secs(5))
                    .expect("a set made before the kill is never lost")
            } else {
                ev.set();
                got.recv().expect("waiter")
            };
            assert!(set);
            if by_child && woke > killed {
                cut_short += 1;
                samples.push(woke - killed);
            }
        });
    }
    println!("event: {cut_short} of {trials} waiters were still asleep at the kill");
    common::sync::report("event, setter killed", &mut samples);
}
