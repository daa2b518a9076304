//! `Queue`, `JoinableQueue` and `SimpleQueue` across real processes: Python's semantics,
//! many-to-many traffic without loss or duplication, and peers killed at random points.

mod common;

use std::time::{Duration, Instant};

use common::{Child, Msg, name};
use mpshm::prelude::*;
use mpshm::{
    Error, GetError, GetTimeoutError, JoinError, JoinableQueue, Options, PutError, PutTimeoutError,
    Queue, SimpleQueue, TooLarge, TryGetError, TryPutError,
};

fn main() {
    common::run(
        tests![
            nonblocking_calls_never_wait,
            timed_calls_wait_then_fail,
            qsize_follows_puts_and_gets,
            one_producers_order_is_kept,
            close_fails_puts_and_drains_gets,
            close_wakes_a_blocked_get_elsewhere,
            blocked_put_wakes_when_room_is_made,
            wrong_type_or_kind_is_refused,
            bad_capacities_are_refused,
            joinable_queue_joins_across_processes,
            simple_queue_basics,
            byte_messages_across_processes,
            #[cfg(feature = "serde")]
            serde_messages_across_processes,
            many_to_many_loses_nothing,
            killed_peers_never_wedge_the_queue,
            killed_lone_peers_never_wedge_the_queue,
            get_is_disconnected_once_every_producer_went,
            put_is_disconnected_once_every_consumer_went,
            a_short_timeout_still_sees_the_other_side_gone,
            untracked_producers_keep_the_queue_connected,
            an_exited_arming_thread_is_not_a_dead_process,
            a_handle_dropped_on_another_thread_detaches,
            a_forked_child_releases_nothing_of_its_parents,
            a_handle_dropped_in_a_thread_local_destructor_detaches,
            a_held_queue_waits_for_workers_still_to_come,
            a_held_queue_waits_for_consumers_still_to_come,
            simple_queue_holds_and_tries,
            a_sleeping_get_sees_an_attached_producer_die
        ],
        routines![
            put_once,
            get_once,
            attach_then_park,
            get_until_closed,
            fill,
            produce,
            consume,
            produce_forever,
            consume_forever,
            work_joinable,
            echo_bytes,
            #[cfg(feature = "serde")]
            echo_serde,
            put_then_park,
            put_then_leave,
            get_then_park,
            get_then_leave,
            arm_on_a_thread,
            drop_on_another_thread,
            fork_and_drop,
            put_from_a_thread_local
        ],
    );
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A wait that should end long before this: a regression fails the test rather than hang it.
const LONG: Duration = Duration::from_secs(10);

fn nonblocking_calls_never_wait() {
    let q = Queue::<u32>::create(&name("nb"), 2).expect("create");
    let start = Instant::now();
    assert_eq!(q.try_get(), Err(TryGetError::Empty));
    q.try_put(1).expect("room");
    q.try_put(2).expect("room");
    assert!(matches!(q.try_put(3), Err(TryPutError::Full(3))));
    assert!(q.is_full());
    assert!(start.elapsed() < Duration::from_secs(1));
}

fn timed_calls_wait_then_fail() {
    let q = Queue::<u32>::create(&name("timed"), 1).expect("create");
    // The default spin, and a handle that busy-polls (it never sleeps, and must still keep its
    // deadline).
    for spin in [None, Some(u32::MAX)] {
        if let Some(rounds) = spin {
            q.set_spin(rounds);
        }
        for asked in [ms(1), ms(120)] {
            let r = common::timed(asked, || q.get_timeout(asked));
            assert_eq!(r, Err(GetTimeoutError::Timeout));
        }
        q.put(1).expect("put");
        for asked in [ms(1), ms(120)] {
            let r = common::timed(asked, || q.put_timeout(9, asked));
            assert!(matches!(r, Err(PutTimeoutError::Timeout(9))));
        }
        // A timeout too large to represent waits forever (here: returns at once, there is data).
        assert_eq!(q.get_timeout(Duration::MAX), Ok(1));
    }
}

fn qsize_follows_puts_and_gets() {
    let q = Queue::<u64>::create(&name("qsize"), 5).expect("create");
    assert_eq!((q.len(), q.capacity()), (0, 5));
    assert!(q.is_empty() && !q.is_full());
    for i in 0..5 {
        q.put(i).expect("put");
        assert_eq!(q.len(), i as usize + 1);
    }
    assert!(q.is_full());
    let other = Queue::<u64>::open(q.name()).expect("open");
    assert_eq!(other.len(), 5);
    for i in 0..5 {
        assert_eq!(other.get(), Ok(i));
        assert_eq!(q.len(), 4 - i as usize);
    }
}

fn fill(args: &[String]) {
    let q = Queue::<u32>::open(&args[0]).expect("open");
    let n: u32 = args[1].parse().expect("count");
    for i in 0..n {
        q.put(i).expect("put");
    }
}

fn one_producers_order_is_kept() {
    let n = name("order");
    let q = Queue::<u32>::create(&n, 7).expect("create");
    let child = Child::spawn("fill", &[&n, "10000"]);
    for i in 0..10_000 {
        assert_eq!(q.get_timeout(Duration::from_secs(10)), Ok(i));
    }
    child.join();
}

fn close_fails_puts_and_drains_gets() {
    let q = Queue::<u8>::create(&name("close"), 4).expect("create");
    q.put(1).expect("put");
    q.put(2).expect("put");
    q.close();
    assert!(q.is_closed());
    assert_eq!(q.put(3), Err(PutError::Closed(3)));
    assert!(matches!(q.try_put(3), Err(TryPutError::Closed(3))));
    assert!(matches!(
        q.put_timeout(3, ms(10)),
        Err(PutTimeoutError::Closed(3))
    ));
    assert_eq!(q.get(), Ok(1));
    assert_eq!(q.try_get(), Ok(2));
    assert_eq!(q.get(), Err(GetError::Closed));
    assert_eq!(q.try_get(), Err(TryGetError::Closed));
    assert_eq!(q.get_timeout(ms(10)), Err(GetTimeoutError::Closed));
}

fn get_until_closed(args: &[String]) {
    let q = Queue::<u32>::open(&args[0]).expect("open");
    q.set_spin(0);
    common::ready();
    assert_eq!(q.get(), Err(GetError::Closed));
    common::say("closed");
}

fn close_wakes_a_blocked_get_elsewhere() {
    let n = name("wakec");
    let q = Queue::<u32>::create(&n, 4).expect("create");
    let mut child = Child::spawn("get_until_closed", &[&n]);
    child.wait_ready();
    q.close();
    assert_eq!(child.line(), "closed");
    child.join();
}

fn blocked_put_wakes_when_room_is_made() {
    let n = name("room");
    let q = Queue::<u32>::create(&n, 3).expect("create");
    let child = Child::spawn("fill", &[&n, "1000"]);
    // The child blocks on a full queue over and over; each get must let it go on.
    for i in 0..1000 {
        assert_eq!(q.get_timeout(Duration::from_secs(10)), Ok(i));
    }
    child.join();
}

fn wrong_type_or_kind_is_refused() {
    let n = name("qtype");
    let _q = Queue::<u64>::create(&n, 4).expect("create");
    // The bug this replaces: the ring's byte count printed as an element count ("× 9088" on
    // both sides) and advice to set the same tag.
    match Queue::<f64>::open(&n) {
        Err(e @ Error::TypeMismatch { .. }) => assert_eq!(
            e.to_string(),
            format!(
                "segment {n:?} holds `u64` (8 B, align 8), not `f64` (8 B, align 8); open it \
                 with the type its creator used, or give the type the same name on both sides \
                 (`SharedType::NAME`, or `Options::type_tag`)"
            )
        ),
        other => panic!("expected TypeMismatch, got {other:?}"),
    }
    assert!(matches!(
        Queue::<u32>::open(&n),
        Err(Error::TypeMismatch { .. })
    ));
    // Same type, another capacity: the shape is named, not the type.
    match Queue::<u64>::open_or_create(&n, 8) {
        Err(Error::LayoutMismatch {
            expected, found, ..
        }) => {
            assert_eq!(expected, "a queue of capacity 8");
            assert_eq!(found, "a queue of capacity 4");
        }
        other => panic!("expected LayoutMismatch, got {other:?}"),
    }
    assert!(matches!(
        JoinableQueue::<u64>::open(&n),
        Err(Error::KindMismatch { .. })
    ));
    assert!(matches!(
        mpshm::Value::<u64>::open(&n),
        Err(Error::KindMismatch { .. })
    ));
    assert!(matches!(
        Queue::<u64>::create(&n, 4),
        Err(Error::AlreadyExists { .. })
    ));
    Queue::<u64>::open(&n).expect("same type opens");
}

fn bad_capacities_are_refused() {
    let n = name("qcap");
    assert!(matches!(
        Queue::<u8>::create(&n, 0),
        Err(Error::InvalidLength { .. })
    ));
    assert!(matches!(
        Queue::<u8>::create(&n, usize::MAX),
        Err(Error::InvalidLength { .. })
    ));
    assert!(matches!(
        Queue::<[u8; 4096]>::create(&n, 1 << 30),
        Err(Error::InvalidLength { .. })
    ));
    assert!(!common::exists(&n));
}

fn work_joinable(args: &[String]) {
    let q = JoinableQueue::<u32>::open(&args[0]).expect("open");
    while let Ok(job) = q.get() {
        std::hint::black_box(job);
        q.task_done().expect("task_done");
    }
}

fn joinable_queue_joins_across_processes() {
    let n = name("join");
    let q = JoinableQueue::<u32>::create(&n, 8).expect("create");
    assert_eq!(q.task_done(), Err(JoinError::TooManyTaskDone));
    q.join().expect("nothing put: joined at once");
    q.put(1).expect("put");
    assert_eq!(q.join_timeout(ms(30)), Err(JoinError::Timeout));
    let workers = [
        Child::spawn("work_joinable", &[&n]),
        Child::spawn("work_joinable", &[&n]),
    ];
    for i in 0..500 {
        q.put(i).expect("put");
    }
    q.join_timeout(Duration::from_secs(30))
        .expect("workers finish");
    assert!(q.is_empty());
    q.close();
    for w in workers {
        w.join();
    }
    assert_eq!(q.task_done(), Err(JoinError::TooManyTaskDone));
}

fn simple_queue_basics() {
    let n = name("simple");
    let q = SimpleQueue::<[u8; 3]>::create(&n, 2).expect("create");
    assert!(q.is_empty());
    q.put([1, 2, 3]).expect("put");
    let other = SimpleQueue::<[u8; 3]>::open(&n).expect("open");
    assert_eq!(other.get(), Ok([1, 2, 3]));
    other.close();
    assert_eq!(q.get(), Err(GetError::Closed));
}

/// Messages per producer in the many-to-many test (`MPSHM_STRESS_MESSAGES` raises it).
fn per_producer() -> u32 {
    common::env_or("MPSHM_STRESS_MESSAGES", 50_000)
}

/// Puts its first message (which attaches it as a producer), says so, and puts the rest once
/// told to go: until every producer has attached, none may finish, or the consumers would find
/// the queue without producers (`Disconnected`) and stop early.
fn produce(args: &[String]) {
    let q = Queue::<Msg>::open(&args[0]).expect("open");
    let me: u32 = args[1].parse().expect("producer id");
    q.put(Msg::new(me, 0)).expect("put");
    common::ready();
    assert_eq!(common::line_from_parent(), "go");
    for seq in 1..per_producer() {
        q.put(Msg::new(me, seq)).expect("put");
    }
}

const PRODUCERS: u32 = 4;

fn consume(args: &[String]) {
    let q = Queue::<Msg>::open(&args[0]).expect("open");
    // Per producer: count, sum and sum of squares of seqs, and the last seq (order check).
    let mut stats = [(0u64, 0u64, 0u64, -1i64); PRODUCERS as usize];
    while let Ok(m) = q.get() {
        m.check();
        let s = &mut stats[m.producer as usize];
        assert!(
            i64::from(m.seq) > s.3,
            "producer {} out of order: {} after {}",
            m.producer,
            m.seq,
            s.3
        );
        let seq = u64::from(m.seq);
        *s = (
            s.0 + 1,
            s.1 + seq,
            s.2.wrapping_add(seq * seq),
            i64::from(m.seq),
        );
    }
    for (p, s) in stats.iter().enumerate() {
        common::say(&format!("{p} {} {} {}", s.0, s.1, s.2));
    }
}

fn many_to_many_loses_nothing() {
    let n = name("m2m");
    let q = Queue::<Msg>::create(&n, 256).expect("create");
    let mut consumers: Vec<Child> = (0..4).map(|_| Child::spawn("consume", &[&n])).collect();
    let mut producers: Vec<Child> = (0..PRODUCERS)
        .map(|p| Child::spawn("produce", &[&n, &p.to_string()]))
        .collect();
    for p in &mut producers {
        p.wait_ready();
    }
    for p in &mut producers {
        p.tell("go");
    }
    for p in producers {
        p.join();
    }
    // The consumers end at `Disconnected` (every producer gone, the queue drained), or at the
    // close if they get there first.
    q.close();
    let mut totals = [(0u64, 0u64, 0u64); PRODUCERS as usize];
    for c in &mut consumers {
        for _ in 0..PRODUCERS {
            let line = c.line();
            let f: Vec<u64> = line
                .split(' ')
                .map(|x| x.parse().expect("number"))
                .collect();
            let t = &mut totals[f[0] as usize];
            *t = (t.0 + f[1], t.1 + f[2], t.2.wrapping_add(f[3]));
        }
    }
    for c in consumers {
        c.join();
    }
    let per = u64::from(per_producer());
    let sum: u64 = (0..per).sum();
    let squares = (0..per).fold(0u64, |a, s| a.wrapping_add(s * s));
    for (p, t) in totals.iter().enumerate() {
        assert_eq!(
            *t,
            (per, sum, squares),
            "producer {p}: lost or duplicated messages"
        );
    }
    assert_eq!(q.lost(), 0);
}

fn produce_forever(args: &[String]) {
    let q = Queue::<Msg>::open(&args[0]).expect("open");
    let me: u32 = args[1].parse().expect("producer id");
    common::ready();
    let mut seq = 0;
    loop {
        if q.put_timeout(Msg::new(me, seq), Duration::from_secs(30))
            .is_ok()
        {
            seq += 1;
        }
    }
}

fn consume_forever(args: &[String]) {
    let q = Queue::<Msg>::open(&args[0]).expect("open");
    common::ready();
    loop {
        if let Ok(m) = q.get_timeout(Duration::from_secs(30)) {
            m.check();
        }
    }
}

/// Trials of the kill loop (`MPSHM_KILL_TRIALS` raises it).
fn trials() -> u32 {
    common::env_or("MPSHM_KILL_TRIALS", 100)
}

/// A xorshift generator: the kill loops' random points, the same in every run.
fn xorshift(mut state: u64) -> impl FnMut() -> u64 {
    move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    }
}

/// After a kill loop's trial, with every other process dead: what is left drains without
/// waiting (stuck slots reclaimed), through `take`, the queue says its producers are gone, and
/// then works at full capacity.
fn drain_then_fill(q: &Queue<Msg>, trial: u32, mut take: impl FnMut(Msg)) {
    let start = Instant::now();
    loop {
        match q.try_get() {
            Ok(m) => take(m),
            Err(TryGetError::Disconnected) if q.is_empty() => break,
            Err(TryGetError::Empty | TryGetError::Disconnected) => {}
            Err(e) => panic!("trial {trial}: {e}"),
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "trial {trial}: drain wedged"
        );
    }
    for i in 0..q.capacity() as u32 {
        q.put_timeout(Msg::new(9, i), Duration::from_secs(5))
            .expect("put after kills");
    }
    for i in 0..q.capacity() as u32 {
        assert_eq!(q.get_timeout(Duration::from_secs(5)), Ok(Msg::new(9, i)));
    }
}

fn killed_peers_never_wedge_the_queue() {
    let mut next = xorshift(0x2545_f491_4f6c_dd1d);
    let (mut received, mut lost) = (0u64, 0u64);
    for trial in 0..trials() {
        let n = name("kill");
        let q = Queue::<Msg>::create(&n, 4).expect("create");
        let mut kids = vec![
            Child::spawn("produce_forever", &[&n, "0"]),
            Child::spawn("produce_forever", &[&n, "1"]),
            Child::spawn("consume_forever", &[&n]),
        ];
        for k in &mut kids {
            k.wait_ready();
        }
        let mut last = [-1i64; 2];
        let mut take = |m: Msg| {
            m.check();
            assert!(i64::from(m.seq) > last[m.producer as usize], "out of order");
            last[m.producer as usize] = i64::from(m.seq);
        };
        // Kill the three in a random order, each after a random amount of traffic.
        while !kids.is_empty() {
            // (With both producers dead, nothing more comes: stop at the first timeout.)
            for _ in 0..next() % 50 {
                match q.get_timeout(ms(100)) {
                    Ok(m) => {
                        take(m);
                        received += 1;
                    }
                    Err(_) => break,
                }
            }
            let victim = (next() % kids.len() as u64) as usize;
            kids.swap_remove(victim).kill();
        }
        drain_then_fill(&q, trial, take);
        lost += q.lost();
    }
    eprintln!(
        "kill loop: {} trials, {received} messages checked, {lost} lost to killed peers",
        trials()
    );
}

/// One producer and one consumer, each the only one on its side, so each is soon handed its
/// side and puts or gets with plain stores (see `ring/bias.rs`); both killed at random points,
/// the consumer first, and then this process takes over the getting.
fn killed_lone_peers_never_wedge_the_queue() {
    let mut next = xorshift(0x9e37_79b9_7f4a_7c15);
    let (mut received, mut lost) = (0u64, 0u64);
    for trial in 0..trials().div_ceil(2) {
        let n = name("lone");
        let q = Queue::<Msg>::create(&n, 8).expect("create");
        let mut producer = Child::spawn("produce_forever", &[&n, "0"]);
        let mut consumer = Child::spawn("consume_forever", &[&n]);
        producer.wait_ready();
        consumer.wait_ready();
        // Let the stream run (and the sides be handed over), then kill the consumer, wherever
        // it is: between messages, or copying one out.
        let until = Instant::now() + Duration::from_micros(500 + next() % 20_000);
        while Instant::now() < until {
            std::hint::spin_loop();
        }
        consumer.kill();
        // The stream goes on to us, in order and untorn, with at most the message the consumer
        // was copying lost.
        let mut last = -1i64;
        let mut take = |m: Msg| {
            m.check();
            assert!(i64::from(m.seq) > last, "trial {trial}: out of order");
            last = i64::from(m.seq);
        };
        for _ in 0..100 + next() % 400 {
            let m = q.get_timeout(Duration::from_secs(5)).unwrap_or_else(|e| {
                panic!("trial {trial}: stream wedged after the consumer died: {e}")
            });
            take(m);
            received += 1;
        }
        producer.kill();
        drain_then_fill(&q, trial, take);
        assert!(q.lost() <= 2, "trial {trial}: {} lost", q.lost());
        lost += q.lost();
    }
    eprintln!(
        "lone kill loop: {} trials, {received} messages checked, {lost} lost to killed peers",
        trials().div_ceil(2)
    );
}

fn echo_bytes(args: &[String]) {
    let inbox = mpshm::ByteQueue::open(&args[0]).expect("open");
    let outbox = mpshm::ByteQueue::open(&args[1]).expect("open");
    while let Ok(m) = inbox.get() {
        outbox.put(m).expect("put back");
    }
}

fn byte_messages_across_processes() {
    let (a, b) = (name("bq"), name("bqb"));
    let inbox = mpshm::ByteQueue::create(&a, (4, 1000)).expect("create");
    let outbox = mpshm::ByteQueue::create(&b, (4, 1000)).expect("create");
    assert_eq!(inbox.max_message(), 1000);
    let child = Child::spawn("echo_bytes", &[&a, &b]);
    for len in [0, 1, 7, 8, 9, 999, 1000] {
        let m: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
        inbox.put(m.clone()).expect("put");
        assert_eq!(outbox.get_timeout(Duration::from_secs(10)), Ok(m));
    }
    // Too long for a slot: refused at put, handed back, never truncated.
    match inbox.try_put(vec![1; 1001]) {
        Err(TryPutError::Encode(v, TooLarge { len: 1001, .. })) => assert_eq!(v.len(), 1001),
        other => panic!("expected TooLarge, got {other:?}"),
    }
    assert!(matches!(
        inbox.put(vec![1; 5000]),
        Err(PutError::Encode(_, TooLarge { .. }))
    ));
    // A byte queue is not a queue of u64s, nor the other way round.
    assert!(matches!(
        Queue::<u64>::open(&a),
        Err(Error::TypeMismatch { .. })
    ));
    inbox.close();
    child.join();
}

#[cfg(feature = "serde")]
#[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
enum Job {
    Square(u64),
    Greet { name: String, times: u8 },
}

#[cfg(feature = "serde")]
fn echo_serde(args: &[String]) {
    let inbox = mpshm::SerdeQueue::<Job>::open(&args[0]).expect("open");
    let outbox = mpshm::SerdeQueue::<Job>::open(&args[1]).expect("open");
    while let Ok(job) = inbox.get() {
        let reply = match job {
            Job::Square(n) => Job::Square(n * n),
            Job::Greet { name, times } => Job::Greet {
                name: name.repeat(times.into()),
                times: 1,
            },
        };
        outbox.put(reply).expect("put back");
    }
}

#[cfg(feature = "serde")]
fn serde_messages_across_processes() {
    let (a, b) = (name("sq"), name("sqb"));
    let inbox = mpshm::SerdeQueue::<Job>::create(&a, (4, 64)).expect("create");
    let outbox = mpshm::SerdeQueue::<Job>::create(&b, (4, 64)).expect("create");
    let child = Child::spawn("echo_serde", &[&a, &b]);
    inbox.put(Job::Square(12)).expect("put");
    assert_eq!(outbox.get(), Ok(Job::Square(144)));
    inbox
        .put(Job::Greet {
            name: "ab".into(),
            times: 3,
        })
        .expect("put");
    assert_eq!(
        outbox.get(),
        Ok(Job::Greet {
            name: "ababab".into(),
            times: 1
        })
    );
    let long = Job::Greet {
        name: "x".repeat(100),
        times: 1,
    };
    assert!(matches!(
        inbox.put(long),
        Err(PutError::Encode(_, mpshm::EncodeError::TooLarge(_)))
    ));
    // Another type's queue is refused by its tag.
    assert!(matches!(
        mpshm::SerdeQueue::<u64>::open(&a),
        Err(Error::TypeMismatch { .. })
    ));
    // The type tag reaches a serde queue too: under a tag of its own, it must be given.
    let tagged = name("sqtag");
    let mut opts = mpshm::Options::new();
    opts.type_tag("jobs@1");
    let t = mpshm::SerdeQueue::<Job>::create_with(&tagged, (2, 64), &opts).expect("create");
    assert!(matches!(
        mpshm::SerdeQueue::<Job>::open(&tagged),
        Err(Error::TypeMismatch { .. })
    ));
    mpshm::SerdeQueue::<Job>::open_with(&tagged, &opts).expect("the tag agrees");
    drop(t);
    inbox.close();
    child.join();
}

/// Opens the queue, puts `args[1]`, says so, and stays (attached as a producer) until killed.
fn put_then_park(args: &[String]) {
    let q = Queue::<u32>::open(&args[0]).expect("open");
    q.put(args[1].parse().expect("value")).expect("put");
    common::ready();
    common::park();
}

/// Opens the queue, puts `args[1]`, says so, and leaves (dropping the handle) when told.
fn put_then_leave(args: &[String]) {
    let q = Queue::<u32>::open(&args[0]).expect("open");
    q.put(args[1].parse().expect("value")).expect("put");
    common::ready();
    assert_eq!(common::line_from_parent(), "bye");
}

/// Opens the queue, takes one message, says so, and stays (attached as a consumer).
fn get_then_park(args: &[String]) {
    let q = Queue::<u32>::open(&args[0]).expect("open");
    q.get().expect("get");
    common::ready();
    common::park();
}

/// Opens the queue, takes one message, and leaves.
fn get_then_leave(args: &[String]) {
    let q = Queue::<u32>::open(&args[0]).expect("open");
    q.get().expect("get");
}

fn get_is_disconnected_once_every_producer_went() {
    let n = name("gdisc");
    let q = Queue::<u32>::create(&n, 4).expect("create");
    // No producer ever attached: a get waits.
    assert_eq!(q.get_timeout(ms(20)), Err(GetTimeoutError::Timeout));
    // One attaches (its first put) and dies while a get is blocked: the get wakes.
    let mut p = Child::spawn("put_then_park", &[&n, "1"]);
    p.wait_ready();
    assert_eq!(q.get_timeout(LONG), Ok(1));
    std::thread::scope(|s| {
        let waiter = common::blocked(s, || q.get_timeout(LONG));
        p.kill();
        assert_eq!(
            waiter.join().expect("join"),
            Err(GetTimeoutError::Disconnected)
        );
    });
    assert_eq!(q.try_get(), Err(TryGetError::Disconnected));
    // The answer comes at once, whatever the timeout (see
    // `a_short_timeout_still_sees_the_other_side_gone`).
    assert_eq!(q.get_timeout(LONG), Err(GetTimeoutError::Disconnected));
    // A state, not an end: a producer that attaches later makes a get wait again; what it
    // leaves behind is drained before the queue says so again, here after a normal exit.
    let mut p = Child::spawn("put_then_leave", &[&n, "2"]);
    p.wait_ready();
    // The message is there: it comes at once, however long the timeout.
    assert_eq!(q.get_timeout(LONG), Ok(2));
    assert_eq!(q.get_timeout(ms(20)), Err(GetTimeoutError::Timeout));
    q.put(3).expect("this handle is a producer now");
    p.tell("bye");
    p.join();
    // This handle itself is attached as a producer: it is not gone.
    assert_eq!(q.get_timeout(LONG), Ok(3));
    assert_eq!(q.get_timeout(ms(20)), Err(GetTimeoutError::Timeout));
    let other = Queue::<u32>::open(&n).expect("open");
    drop(q);
    assert_eq!(other.get_timeout(LONG), Err(GetTimeoutError::Disconnected));
}

fn put_is_disconnected_once_every_consumer_went() {
    let n = name("pdisc");
    let q = Queue::<u32>::create(&n, 1).expect("create");
    // A consumer that takes one message and dies while a put is blocked on the full queue.
    let mut c = Child::spawn("get_then_park", &[&n]);
    q.put(7).expect("put");
    c.wait_ready();
    q.put(8).expect("room");
    std::thread::scope(|s| {
        let waiter = common::blocked(s, || q.put_timeout(9, LONG));
        c.kill();
        assert!(matches!(
            waiter.join().expect("join"),
            Err(PutTimeoutError::Disconnected(9))
        ));
    });
    assert!(matches!(q.try_put(9), Err(TryPutError::Disconnected(9))));
    // The answer comes at once, whatever the timeout (see
    // `a_short_timeout_still_sees_the_other_side_gone`).
    assert!(matches!(
        q.put_timeout(9, LONG),
        Err(PutTimeoutError::Disconnected(9))
    ));
    // A consumer that takes one and leaves normally: the same.
    let c = Child::spawn("get_then_leave", &[&n]);
    c.join();
    q.put(10).expect("room again");
    assert_eq!(q.put(11), Err(PutError::Disconnected(11)));
}

/// However short the timeout, a get on an empty queue whose producers are all gone (here one
/// killed), and a put on a full queue whose consumers are all gone (here one that left), say
/// so. A blocked call spins before it looks at its peers (that may read `/proc`); a deadline
/// that passes during the spin (at once for a zero timeout; on a loaded machine the spin's
/// yields can outlast a millisecond) ends it with that look, not with `Timeout`.
fn a_short_timeout_still_sees_the_other_side_gone() {
    let short = [Duration::ZERO, Duration::from_millis(1)];
    let n = name("gshort");
    let q = Queue::<u32>::create(&n, 4).expect("create");
    let mut p = Child::spawn("put_then_park", &[&n, "1"]);
    p.wait_ready();
    assert_eq!(q.get_timeout(LONG), Ok(1));
    p.kill();
    for timeout in short {
        assert_eq!(
            q.get_timeout(timeout),
            Err(GetTimeoutError::Disconnected),
            "get_timeout({timeout:?})"
        );
    }
    let n = name("pshort");
    let q = Queue::<u32>::create(&n, 1).expect("create");
    let c = Child::spawn("get_then_leave", &[&n]);
    q.put(7).expect("put");
    c.join();
    q.put(8).expect("room");
    for timeout in short {
        let r = q.put_timeout(9, timeout);
        assert!(
            matches!(r, Err(PutTimeoutError::Disconnected(9))),
            "put_timeout({timeout:?}): {r:?}"
        );
    }
}

fn untracked_producers_keep_the_queue_connected() {
    let n = name("untracked");
    let mut opts = Options::new();
    opts.max_attached(1);
    let q = Queue::<u32>::create_with(&n, 4, &opts).expect("create");
    // The first producer takes the one record; the second runs untracked.
    let mut tracked = Child::spawn("put_then_park", &[&n, "1"]);
    tracked.wait_ready();
    let mut untracked = Child::spawn("put_then_leave", &[&n, "2"]);
    untracked.wait_ready();
    let mut got = [
        q.get_timeout(LONG).expect("get"),
        q.get_timeout(LONG).expect("get"),
    ];
    got.sort_unstable();
    assert_eq!(got, [1, 2]);
    // The tracked one dies: the untracked one still counts.
    tracked.kill();
    assert_eq!(q.get_timeout(ms(50)), Err(GetTimeoutError::Timeout));
    // It leaves normally, and is no longer counted.
    untracked.tell("bye");
    untracked.join();
    assert_eq!(q.get_timeout(LONG), Err(GetTimeoutError::Disconnected));
    // An untracked producer that dies is never found dead: the queue stays connected, for
    // ever, rather than say so wrongly.
    let mut tracked = Child::spawn("put_then_park", &[&n, "3"]);
    tracked.wait_ready();
    let mut untracked = Child::spawn("put_then_park", &[&n, "4"]);
    untracked.wait_ready();
    tracked.kill();
    untracked.kill();
    let mut got = [
        q.get_timeout(LONG).expect("get"),
        q.get_timeout(LONG).expect("get"),
    ];
    got.sort_unstable();
    assert_eq!(got, [3, 4]);
    assert_eq!(q.get_timeout(ms(50)), Err(GetTimeoutError::Timeout));
}

/// Puts its first message from a thread that then exits (that thread armed the record), then
/// goes on living; puts again from the main thread when told.
fn arm_on_a_thread(args: &[String]) {
    let q = Queue::<u32>::open(&args[0]).expect("open");
    std::thread::scope(|s| {
        s.spawn(|| q.put(1).expect("put"));
    });
    common::ready();
    assert_eq!(common::line_from_parent(), "put");
    q.put(2).expect("put");
    common::park();
}

fn an_exited_arming_thread_is_not_a_dead_process() {
    let n = name("armthr");
    let q = Queue::<u32>::create(&n, 4).expect("create");
    let mut p = Child::spawn("arm_on_a_thread", &[&n]);
    p.wait_ready();
    assert_eq!(q.get_timeout(LONG), Ok(1));
    // The arming thread is gone, the process is not: no Disconnected, however long we wait,
    // and a get blocked meanwhile gets the next message.
    assert_eq!(q.try_get(), Err(TryGetError::Empty));
    assert_eq!(q.get_timeout(ms(300)), Err(GetTimeoutError::Timeout));
    std::thread::scope(|s| {
        let waiter = common::blocked(s, || q.get_timeout(LONG));
        p.tell("put");
        assert_eq!(waiter.join().expect("join"), Ok(2));
    });
    // And its death is still noticed.
    p.kill();
    assert_eq!(q.get_timeout(LONG), Err(GetTimeoutError::Disconnected));
}

/// Attaches as a producer on the main thread, drops the handle on another thread, then
/// attaches again through a new handle (the record's mutex is still held by the main thread)
/// and drops that one here.
fn drop_on_another_thread(args: &[String]) {
    let q = Queue::<u32>::open(&args[0]).expect("open");
    q.put(1).expect("put");
    std::thread::spawn(move || drop(q)).join().expect("join");
    common::say("dropped");
    assert_eq!(common::line_from_parent(), "again");
    let q = Queue::<u32>::open(&args[0]).expect("open");
    q.put(2).expect("put");
    common::say("put");
    assert_eq!(common::line_from_parent(), "bye");
}

/// In a child: a thread puts through a handle (attaching, and arming its record, on that
/// thread) that it keeps in a thread-local, which drops it at the thread's exit, after other
/// thread-locals may be gone; then says so and stays.
fn put_from_a_thread_local(args: &[String]) {
    use std::cell::RefCell;
    thread_local! {
        static HANDLE: RefCell<Option<Queue<u32>>> = const { RefCell::new(None) };
    }
    let name = args[0].clone();
    std::thread::spawn(move || {
        let q = Queue::<u32>::open(&name).expect("open");
        q.put(1).expect("put");
        HANDLE.with(|h| *h.borrow_mut() = Some(q));
    })
    .join()
    .expect("the thread exits cleanly");
    common::ready();
    common::park();
}

/// A handle dropped by a thread-local destructor detaches as at any other time, without a panic
/// (which would abort the process there): its process lives on, and the queue has no producer.
fn a_handle_dropped_in_a_thread_local_destructor_detaches() {
    let n = name("qtls");
    let q = Queue::<u32>::create(&n, 4).expect("create");
    let mut p = Child::spawn("put_from_a_thread_local", &[&n]);
    p.wait_ready();
    assert_eq!(q.get_timeout(LONG), Ok(1));
    assert_eq!(q.get_timeout(LONG), Err(GetTimeoutError::Disconnected));
    p.kill();
}

fn a_handle_dropped_on_another_thread_detaches() {
    let n = name("dropthr");
    let q = Queue::<u32>::create(&n, 4).expect("create");
    let mut p = Child::spawn("drop_on_another_thread", &[&n]);
    assert_eq!(p.line(), "dropped");
    assert_eq!(q.get_timeout(LONG), Ok(1));
    assert_eq!(q.get_timeout(LONG), Err(GetTimeoutError::Disconnected));
    p.tell("again");
    assert_eq!(p.line(), "put");
    assert_eq!(q.get_timeout(LONG), Ok(2));
    assert_eq!(q.get_timeout(ms(20)), Err(GetTimeoutError::Timeout));
    p.tell("bye");
    p.join();
    assert_eq!(q.get_timeout(LONG), Err(GetTimeoutError::Disconnected));
}

/// In a child of the test (single-threaded, so it may fork): attaches to a queue, both ends of
/// a pipe and both roles of an SPSC queue (all opened, not created: whether a forked child's
/// drop of a creating handle unlinks the name is `Segment`'s business), forks, and in the
/// grandchild drops every handle, after using one of the queue's (which attaches the
/// grandchild anew); then checks that all of its own attachments stand.
fn fork_and_drop(args: &[String]) {
    let (qn, pn, sn) = (&args[0], &args[1], &args[2]);
    let q = Queue::<u32>::open(qn).expect("open");
    q.put(1).expect("put");
    assert_eq!(q.get_timeout(LONG), Ok(1));
    let a = mpshm::Connection::open(pn).expect("open an end");
    let b = mpshm::Connection::open(pn).expect("open the other");
    let tx = mpshm::SpscProducer::<u32>::open(sn).expect("open producer");
    let rx = mpshm::SpscConsumer::<u32>::open(sn).expect("open consumer");
    tx.put(1).expect("put");
    assert_eq!(rx.get(), Ok(1));
    // SAFETY (test): this process has one thread; the grandchild exits through `exit`.
    match unsafe { libc::fork() } {
        0 => {
            // The grandchild: uses the queue (it attaches as itself), then drops everything.
            q.put(2).expect("put in the grandchild");
            drop((q, a, b, tx, rx));
            std::process::exit(0);
        }
        pid => {
            assert!(pid > 0, "fork failed");
            let mut status = 0;
            // SAFETY (test): waits for our own child.
            assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
            assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
        }
    }
    // The grandchild's put arrived; its producer record went with its drop, ours stands: a
    // get on the empty queue from another handle waits rather than say Disconnected.
    assert_eq!(q.get_timeout(LONG), Ok(2));
    let other = Queue::<u32>::open(qn).expect("open");
    assert_eq!(other.get_timeout(ms(20)), Err(GetTimeoutError::Timeout));
    // The pipe's ends are still ours and open.
    a.send(&5u8).expect("b is not closed");
    assert_eq!(b.recv::<u8>(), Ok(5));
    assert!(matches!(
        mpshm::Connection::open(pn),
        Err(Error::InUse { .. })
    ));
    // And so are the SPSC roles.
    assert!(matches!(
        mpshm::SpscProducer::<u32>::open(sn),
        Err(Error::InUse { .. })
    ));
    tx.put(3).expect("put");
    assert_eq!(rx.get(), Ok(3));
    common::say("ok");
}

fn a_forked_child_releases_nothing_of_its_parents() {
    let (qn, pn, sn) = (name("forkq"), name("forkp"), name("forks"));
    let q = Queue::<u32>::create(&qn, 4).expect("create");
    let (a, b) = mpshm::Pipe::create(&pn).expect("create pipe");
    let (tx, rx) = mpshm::SpscQueue::create::<u32>(&sn, 4).expect("create spsc");
    a.persist();
    tx.persist();
    a.release();
    b.release();
    tx.release();
    rx.release();
    let mut c = Child::spawn("fork_and_drop", &[&qn, &pn, &sn]);
    assert_eq!(c.line(), "ok");
    c.join();
    // The child's handles dropped normally at its exit: its producer record is gone too.
    assert_eq!(q.get_timeout(LONG), Err(GetTimeoutError::Disconnected));
    mpshm::unlink(&pn).expect("unlink");
    mpshm::unlink(&sn).expect("unlink");
}

/// Opens the queue, puts `args[1]` and exits: a worker of Python's "each puts once" idiom.
fn put_once(args: &[String]) {
    let q = Queue::<u32>::open(&args[0]).expect("open");
    q.put(args[1].parse().expect("value")).expect("put");
}

/// Opens the queue, takes one message and exits.
fn get_once(args: &[String]) {
    let q = Queue::<u32>::open(&args[0]).expect("open");
    q.get_timeout(LONG).expect("get");
}

/// Attaches as a producer without putting, says so, and stays until killed.
fn attach_then_park(args: &[String]) {
    let q = Queue::<u32>::open(&args[0]).expect("open");
    q.attach_producer();
    common::ready();
    common::park();
}

/// Python's idiom: the parent makes a queue, starts workers that each put once and exit, and
/// takes one result per worker. Here every worker exits before the next one starts, the
/// worst order: without the parent's hold, its get between two workers says `Disconnected`.
fn a_held_queue_waits_for_workers_still_to_come() {
    let n = name("hold");
    let q = Queue::<u32>::create(&n, 4).expect("create");
    q.attach_producer();
    for i in 0..4u32 {
        // The last worker has gone and the next has not started: empty, not disconnected.
        assert_eq!(q.try_get(), Err(TryGetError::Empty), "before worker {i}");
        std::thread::scope(|s| {
            let waiter = common::blocked(s, || q.get_timeout(LONG));
            Child::spawn("put_once", &[&n, &i.to_string()]).join();
            assert_eq!(waiter.join().expect("join"), Ok(i));
        });
    }
    // Every worker has gone; the parent still holds: a get waits.
    assert_eq!(q.get_timeout(ms(20)), Err(GetTimeoutError::Timeout));
    // Let go while a get is blocked: it wakes to say so.
    std::thread::scope(|s| {
        let waiter = common::blocked(s, || q.get_timeout(LONG));
        q.detach_producer();
        assert_eq!(
            waiter.join().expect("join"),
            Err(GetTimeoutError::Disconnected)
        );
    });
    // Held again, with workers all started at once (the usual case): nothing lost, and what
    // is left after the release is drained before `Disconnected`.
    q.attach_producer();
    let workers: Vec<Child> = (0..8u32)
        .map(|i| Child::spawn("put_once", &[&n, &(10 + i).to_string()]))
        .collect();
    let mut got: Vec<u32> = (0..4)
        .map(|_| q.get_timeout(LONG).expect("held: a result"))
        .collect();
    workers.into_iter().for_each(Child::join);
    q.detach_producer();
    got.extend(q.iter());
    got.sort_unstable();
    assert_eq!(got, (10..18).collect::<Vec<_>>());
    assert_eq!(q.try_get(), Err(TryGetError::Disconnected));
    // A put through a released handle attaches it again, until its drop.
    q.put(1).expect("put");
    let other = Queue::<u32>::open(&n).expect("open");
    assert_eq!(other.get_timeout(LONG), Ok(1));
    assert_eq!(other.get_timeout(ms(20)), Err(GetTimeoutError::Timeout));
    drop(q);
    assert_eq!(other.get_timeout(LONG), Err(GetTimeoutError::Disconnected));
}

/// The same idiom on the other side: a parent fills a queue of one slot for workers that each
/// take one message and exit; its put on the full queue waits for the next while it holds.
fn a_held_queue_waits_for_consumers_still_to_come() {
    let n = name("holdc");
    let q = Queue::<u32>::create(&n, 1).expect("create");
    q.attach_consumer();
    q.put(0).expect("room");
    for i in 1..4u32 {
        assert!(
            matches!(q.try_put(i), Err(TryPutError::Full(_))),
            "before consumer {i}"
        );
        std::thread::scope(|s| {
            let waiter = common::blocked(s, || q.put_timeout(i, LONG));
            Child::spawn("get_once", &[&n]).join();
            assert_eq!(waiter.join().expect("join"), Ok(()));
        });
    }
    q.detach_consumer();
    assert!(matches!(
        q.put_timeout(9, LONG),
        Err(PutTimeoutError::Disconnected(9))
    ));
}

/// A `SimpleQueue` holds the same way, and has `try_get` and `try_iter`.
fn simple_queue_holds_and_tries() {
    let n = name("simhold");
    let q = SimpleQueue::<u32>::create(&n, 4).expect("create");
    assert_eq!(q.try_get(), Err(TryGetError::Empty));
    q.attach_producer();
    for i in 0..2u32 {
        Child::spawn("put_once", &[&n, &i.to_string()]).join();
        assert_eq!(q.get(), Ok(i));
        assert_eq!(q.try_get(), Err(TryGetError::Empty));
    }
    Child::spawn("put_once", &[&n, "5"]).join();
    Child::spawn("put_once", &[&n, "6"]).join();
    assert_eq!(q.try_iter().collect::<Vec<_>>(), [5, 6]);
    assert_eq!(q.try_get(), Err(TryGetError::Empty));
    q.detach_producer();
    assert_eq!(q.try_get(), Err(TryGetError::Disconnected));
    assert_eq!(q.get(), Err(GetError::Disconnected));
    // The consumer's side, through a `JoinableQueue` (a `Queue` underneath).
    let jn = name("jqhold");
    let jq = JoinableQueue::<u32>::create(&jn, 1).expect("create");
    jq.attach_consumer();
    jq.put(1).expect("room");
    jq.detach_consumer();
    assert!(matches!(jq.try_put(2), Err(TryPutError::Disconnected(2))));
    q.close();
    assert_eq!(q.try_get(), Err(TryGetError::Closed));
}

/// A get that went to sleep before any producer attached watches one that attaches without
/// putting, and wakes when it dies.
fn a_sleeping_get_sees_an_attached_producer_die() {
    let n = name("attdie");
    let q = Queue::<u32>::create(&n, 4).expect("create");
    std::thread::scope(|s| {
        let waiter = common::blocked(s, || (q.get_timeout(LONG), Instant::now()));
        let mut p = Child::spawn("attach_then_park", &[&n]);
        p.wait_ready();
        let killed = Instant::now();
        p.kill();
        let (got, at) = waiter.join().expect("join");
        assert_eq!(got, Err(GetTimeoutError::Disconnected));
        // Woken by the death, not by its deadline (which also reports the death).
        assert!(
            at - killed < LONG / 2,
            "woke {:?} after the kill",
            at - killed
        );
    });
}
