//! `SpscQueue` across real processes: a stream in order and intact, Python's put/get semantics,
//! one process per role, and roles taken over from killed holders.

mod common;

use std::time::{Duration, Instant};

use common::{Child, Msg, name};
use mpshm::prelude::*;
use mpshm::{
    Error, GetError, GetTimeoutError, PutError, PutTimeoutError, Queue, SpscQueue, TryGetError,
    TryPutError,
};

fn main() {
    common::run(
        tests![
            stream_arrives_in_order_intact,
            python_semantics,
            close_wakes_a_blocked_get_elsewhere,
            roles_are_one_process_each,
            killed_producers_are_replaced_mid_stream,
            a_killed_consumer_is_replaced,
            wrong_type_or_kind_is_refused,
            threads_take_turns_at_one_end,
            try_calls_never_wait_behind_a_blocked_thread,
            a_peers_death_wakes_a_blocked_call
        ],
        routines![
            produce,
            produce_forever,
            hold_producer,
            get_until_closed,
            consume_forever,
            put_one_and_park,
            get_one_and_park
        ],
    );
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A wait that should end long before this: a regression fails the test rather than hang it.
const LONG: Duration = Duration::from_secs(10);

/// Messages streamed (`MPSHM_STRESS_MESSAGES` raises it).
fn messages() -> u32 {
    common::env_or("MPSHM_STRESS_MESSAGES", 200_000)
}

fn produce(args: &[String]) {
    let tx = mpshm::SpscProducer::<Msg>::open(&args[0]).expect("open producer");
    for seq in 0..messages() {
        tx.put(Msg::new(1, seq)).expect("put");
    }
    tx.close();
}

fn stream_arrives_in_order_intact() {
    let n = name("stream");
    let (tx, rx) = SpscQueue::create::<Msg>(&n, 64).expect("create");
    tx.release();
    let child = Child::spawn("produce", &[&n]);
    let mut next = 0;
    loop {
        match rx.get() {
            Ok(m) => {
                m.check();
                assert_eq!(m.seq, next, "lost, duplicated or reordered");
                next += 1;
            }
            Err(GetError::Closed) => break,
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(next, messages());
    assert_eq!(rx.lost(), 0);
    child.join();
}

fn python_semantics() {
    let (tx, rx) = SpscQueue::create::<u32>(&name("sem"), 2).expect("create");
    assert_eq!((tx.capacity(), rx.len()), (2, 0));
    // Nonblocking calls never wait.
    let start = Instant::now();
    assert_eq!(rx.try_get(), Err(TryGetError::Empty));
    tx.try_put(1).expect("room");
    tx.try_put(2).expect("room");
    assert!(matches!(tx.try_put(3), Err(TryPutError::Full(3))));
    assert!(tx.is_full() && rx.is_full() && rx.len() == 2);
    assert!(start.elapsed() < Duration::from_secs(1));
    // Timed calls wait at least what was asked, then fail.
    for asked in [ms(1), ms(120)] {
        let r = common::timed(asked, || tx.put_timeout(9, asked));
        assert!(matches!(r, Err(PutTimeoutError::Timeout(9))));
    }
    assert_eq!(rx.get(), Ok(1));
    assert_eq!(rx.get_timeout(LONG), Ok(2));
    assert!(rx.is_empty());
    for asked in [ms(1), ms(120)] {
        let r = common::timed(asked, || rx.get_timeout(asked));
        assert_eq!(r, Err(GetTimeoutError::Timeout));
    }
    // Closing: puts fail, gets drain, then fail; either end may close.
    tx.put(5).expect("put");
    rx.close();
    assert!(tx.is_closed());
    assert!(matches!(tx.put(6), Err(PutError::Closed(6))));
    assert!(matches!(tx.try_put(6), Err(TryPutError::Closed(6))));
    assert_eq!(rx.try_get(), Ok(5));
    assert_eq!(rx.try_get(), Err(TryGetError::Closed));
    assert_eq!(rx.get(), Err(GetError::Closed));
    assert_eq!(rx.get_timeout(ms(1)), Err(GetTimeoutError::Closed));
}

fn get_until_closed(args: &[String]) {
    let rx = mpshm::SpscConsumer::<u64>::open(&args[0]).expect("open consumer");
    assert_eq!(rx.get(), Ok(1));
    common::ready();
    assert_eq!(rx.get(), Err(GetError::Closed));
}

fn close_wakes_a_blocked_get_elsewhere() {
    let n = name("wake");
    let (tx, rx) = SpscQueue::create::<u64>(&n, 4).expect("create");
    rx.release();
    tx.put(1).expect("put");
    let mut child = Child::spawn("get_until_closed", &[&n]);
    child.wait_ready();
    // Close only once the child sleeps in its second get: closing must wake it.
    common::wait_until_process_sleeps(child.pid());
    tx.close();
    child.join();
}

fn hold_producer(args: &[String]) {
    let _tx = mpshm::SpscProducer::<u64>::open(&args[0]).expect("open producer");
    common::ready();
    common::park();
}

fn roles_are_one_process_each() {
    let n = name("roles");
    let (tx, rx) = SpscQueue::create::<u64>(&n, 4).expect("create");
    // Another handle in this process is refused too: the roles are claimed per handle.
    assert!(matches!(
        mpshm::SpscProducer::<u64>::open(&n),
        Err(Error::InUse { .. })
    ));
    assert!(matches!(
        mpshm::SpscConsumer::<u64>::open(&n),
        Err(Error::InUse { .. })
    ));
    tx.release();
    let mut holder = Child::spawn("hold_producer", &[&n]);
    holder.wait_ready();
    assert!(matches!(
        mpshm::SpscProducer::<u64>::open(&n),
        Err(Error::InUse { .. })
    ));
    // A dead holder's role is free to take.
    holder.kill();
    let tx = mpshm::SpscProducer::<u64>::open(&n).expect("take over from the dead");
    tx.put(3).expect("put");
    assert_eq!(rx.get(), Ok(3));
}

fn produce_forever(args: &[String]) {
    let tx = mpshm::SpscProducer::<Msg>::open(&args[0]).expect("open producer");
    let me: u32 = args[1].parse().expect("producer id");
    common::ready();
    let mut seq = 0;
    loop {
        if tx
            .put_timeout(Msg::new(me, seq), Duration::from_secs(30))
            .is_ok()
        {
            seq += 1;
        }
    }
}

/// Trials of the kill loops (`MPSHM_KILL_TRIALS` raises it).
fn trials() -> u32 {
    common::env_or("MPSHM_KILL_TRIALS", 30)
}

fn killed_producers_are_replaced_mid_stream() {
    let n = name("kprod");
    let (tx, rx) = SpscQueue::create::<Msg>(&n, 8).expect("create");
    tx.release();
    let mut got = 0u64;
    for trial in 0..trials() {
        let mut child = Child::spawn("produce_forever", &[&n, &trial.to_string()]);
        child.wait_ready();
        // Whatever this producer published arrives intact and in order; then it is killed at
        // some point of its stream, and the next one takes its role over.
        let mut next = 0;
        for _ in 0..(trial * 37) % 200 {
            let m = rx.get_timeout(Duration::from_secs(10)).expect("get");
            m.check();
            assert_eq!((m.producer, m.seq), (trial, next));
            next += 1;
            got += 1;
        }
        child.kill();
        // Drain what it finished before it died.
        while let Ok(m) = rx.try_get() {
            m.check();
            assert_eq!((m.producer, m.seq), (trial, next));
            next += 1;
        }
    }
    assert_eq!(rx.lost(), 0);
    eprintln!(
        "{} producers killed mid-stream, {got} messages checked",
        trials()
    );
}

fn consume_forever(args: &[String]) {
    let rx = mpshm::SpscConsumer::<u64>::open(&args[0]).expect("open consumer");
    common::ready();
    loop {
        if let Ok(v) = rx.get_timeout(Duration::from_secs(30)) {
            std::hint::black_box(v);
        }
    }
}

fn a_killed_consumer_is_replaced() {
    let n = name("kcons");
    let (tx, rx) = SpscQueue::create::<u64>(&n, 16).expect("create");
    rx.release();
    let mut sent = 0u64;
    for _ in 0..trials().min(10) {
        let mut child = Child::spawn("consume_forever", &[&n]);
        child.wait_ready();
        for _ in 0..1000 {
            tx.put_timeout(sent, Duration::from_secs(10)).expect("put");
            sent += 1;
        }
        child.kill();
    }
    // The last consumer is dead too: this process takes the role and finds the stream going
    // on, in order, from where the dead one stopped (a message it was taking may come again).
    let rx = mpshm::SpscConsumer::<u64>::open(&n).expect("take over from the dead");
    let mut last = None;
    while let Ok(v) = rx.try_get() {
        assert!(
            last.is_none_or(|l| v == l + 1 || v == l),
            "{v} after {last:?}"
        );
        last = Some(v);
    }
    assert_eq!(last.map_or(sent, |l| l + 1), sent, "messages lost");
    tx.put(sent).expect("put");
    assert_eq!(rx.get(), Ok(sent));
}

fn wrong_type_or_kind_is_refused() {
    let n = name("stype");
    let (tx, _rx) = SpscQueue::create::<u64>(&n, 4).expect("create");
    tx.release();
    assert!(matches!(
        mpshm::SpscProducer::<f64>::open(&n),
        Err(Error::TypeMismatch { .. })
    ));
    assert!(matches!(
        mpshm::SpscProducer::<u32>::open(&n),
        Err(Error::TypeMismatch { .. })
    ));
    assert!(matches!(
        mpshm::SpscProducer::<u64>::open_or_create(&n, 8),
        Err(Error::LayoutMismatch { .. })
    ));
    assert!(matches!(
        Queue::<u64>::open(&n),
        Err(Error::KindMismatch { .. })
    ));
    assert!(matches!(
        SpscQueue::create::<u64>(&n, 4),
        Err(Error::AlreadyExists { .. })
    ));
    assert!(matches!(
        SpscQueue::create::<u64>(&name("zero"), 0),
        Err(Error::InvalidLength { .. })
    ));
    mpshm::SpscProducer::<u64>::open(&n).expect("same type opens");
}

fn threads_take_turns_at_one_end() {
    let (tx, rx) = SpscQueue::create::<u64>(&name("threads"), 8).expect("create");
    let (threads, each) = (4u64, 20_000u64);
    std::thread::scope(|s| {
        for t in 0..threads {
            let tx = &tx;
            s.spawn(move || {
                for i in 0..each {
                    tx.put(t << 32 | i).expect("put");
                }
            });
        }
        // One consumer thread; per producing thread, order is kept.
        let mut last = vec![None; threads as usize];
        for _ in 0..threads * each {
            let v = rx.get().expect("get");
            let (t, i) = ((v >> 32) as usize, v & 0xffff_ffff);
            assert!(
                last[t].is_none_or(|l| i == l + 1),
                "thread {t}: {i} after {:?}",
                last[t]
            );
            last[t] = Some(i);
        }
    });
    assert!(rx.is_empty());
}

fn try_calls_never_wait_behind_a_blocked_thread() {
    let (tx, rx) = SpscQueue::create::<u32>(&name("tryblk"), 1).expect("create");
    tx.put(1).expect("room");
    std::thread::scope(|s| {
        let (said, heard) = std::sync::mpsc::channel();
        let tx = &tx;
        let blocked = s.spawn(move || {
            said.send(common::thread_id()).expect("send");
            tx.put(2) // the queue is full: waits for the get below
        });
        common::wait_until_sleeping(heard.recv().expect("tid"));
        // That thread holds the producing end while it waits; these must not wait for it.
        let start = Instant::now();
        assert!(matches!(tx.try_put(3), Err(TryPutError::Full(3))));
        assert!(start.elapsed() < Duration::from_secs(1));
        let r = common::timed(ms(50), || tx.put_timeout(4, ms(50)));
        assert!(matches!(r, Err(PutTimeoutError::Timeout(4))));
        // A get on the other end is free to run, and lets the blocked put through.
        assert_eq!(rx.get(), Ok(1));
        blocked.join().expect("join").expect("put");
    });
    assert_eq!(rx.try_get(), Ok(2));
}

/// Opens the producing end, puts 1, says so and stays.
fn put_one_and_park(args: &[String]) {
    let tx = mpshm::SpscProducer::<u32>::open(&args[0]).expect("open producer");
    tx.put(1).expect("put");
    common::ready();
    common::park();
}

/// Opens the consuming end, takes one, says so and stays.
fn get_one_and_park(args: &[String]) {
    let rx = mpshm::SpscConsumer::<u32>::open(&args[0]).expect("open consumer");
    rx.get().expect("get");
    common::ready();
    common::park();
}

fn a_peers_death_wakes_a_blocked_call() {
    let n = name("death");
    let (tx, rx) = SpscQueue::create::<u32>(&n, 1).expect("create");
    // Both creating handles are released below; the name is removed at the end.
    tx.persist();
    tx.release();
    // Nothing was ever put: a get with no producer waits for one to come.
    assert_eq!(rx.get_timeout(ms(20)), Err(GetTimeoutError::Timeout));
    let mut p = Child::spawn("put_one_and_park", &[&n]);
    p.wait_ready();
    assert_eq!(rx.get(), Ok(1));
    std::thread::scope(|s| {
        let waiter = common::blocked(s, || rx.get_timeout(LONG));
        p.kill();
        assert_eq!(
            waiter.join().expect("join"),
            Err(GetTimeoutError::Disconnected)
        );
    });
    assert_eq!(rx.try_get(), Err(TryGetError::Disconnected));
    // However short the timeout: a deadline that passes while the call spins, before it
    // looked at its peer, ends it with that look.
    for timeout in [Duration::ZERO, ms(1)] {
        assert_eq!(
            rx.get_timeout(timeout),
            Err(GetTimeoutError::Disconnected),
            "get_timeout({timeout:?})"
        );
    }
    // The dead producer's role is taken again, and the consumer waits for it.
    let tx = mpshm::SpscProducer::<u32>::open(&n).expect("take the dead one's role");
    assert_eq!(rx.get_timeout(ms(20)), Err(GetTimeoutError::Timeout));
    // The same the other way round: a consumer dies while a put waits on the full queue.
    rx.release();
    let mut c = Child::spawn("get_one_and_park", &[&n]);
    tx.put(2).expect("put");
    c.wait_ready();
    tx.put(3).expect("room");
    std::thread::scope(|s| {
        let waiter = common::blocked(s, || tx.put_timeout(4, LONG));
        c.kill();
        assert!(matches!(
            waiter.join().expect("join"),
            Err(PutTimeoutError::Disconnected(4))
        ));
    });
    assert!(matches!(tx.try_put(4), Err(TryPutError::Disconnected(4))));
    for timeout in [Duration::ZERO, ms(1)] {
        let r = tx.put_timeout(4, timeout);
        assert!(
            matches!(r, Err(PutTimeoutError::Disconnected(4))),
            "put_timeout({timeout:?}): {r:?}"
        );
    }
    mpshm::unlink(&n).expect("unlink");
}
