//! `Pipe` across real processes: echo, large and empty messages, EOF on close and on death,
//! and CPython's `test_connection` semantics.

mod common;

use std::time::{Duration, Instant};

use common::{Child, name};
use mpshm::prelude::*;
use mpshm::{
    BufferTooShort, Connection, Error, GetTimeoutError, Pipe, PipeReader, PipeWriter, RecvError,
    RecvTimeoutError, SendError, TryRecvError, WrongType,
};

fn main() {
    common::run(
        tests![
            echo_across_processes,
            messages_larger_than_the_ring,
            recv_bytes_into_short_buffer,
            zero_length_messages,
            eof_in_both_directions,
            killed_peer_ends_a_blocked_recv,
            killed_peer_ends_a_blocked_send,
            oneway_pipe_across_processes,
            values_and_byte_ranges,
            poll_with_and_without_timeout,
            ends_are_taken_once,
            a_persisted_pipe_outlives_its_ends,
            wait_returns_the_ready_ones,
            #[cfg(feature = "serde")]
            serde_values,
            try_calls_never_wait_behind_a_blocked_receive,
            poll_and_release_lose_nothing,
            a_restarted_peer_reopens_its_end,
            a_persisted_pipe_waits_for_later_processes,
            wait_wakes_for_a_message_and_for_a_death
        ],
        routines![echo, hold_and_block, oneway_write, send_later, rejoin, feed],
    );
}

/// Opens the free end of the pipe and sends back every message until the other end closes.
fn echo(args: &[String]) {
    let c = Connection::open(&args[0]).expect("open");
    common::ready();
    loop {
        match c.recv_bytes() {
            Ok(m) => c.send_bytes(&m).expect("send back"),
            Err(RecvError::Disconnected) => return,
            Err(e) => panic!("{e}"),
        }
    }
}

/// Creates a pipe, hands its second end to an `echo` child, and returns the first end.
fn with_echo(tag: &str) -> (mpshm::Connection, Child) {
    let n = name(tag);
    let (a, b) = Pipe::create(&n).expect("create");
    b.release();
    let mut child = Child::spawn("echo", &[&n]);
    child.wait_ready();
    (a, child)
}

fn echo_across_processes() {
    let (a, child) = with_echo("echo");
    for i in 0..1000u32 {
        a.send(&i).expect("send");
        // The echo sends back the bytes it received, untyped.
        assert_eq!(a.recv_bytes(), Ok(i.to_ne_bytes().to_vec()));
    }
    for len in [1, 7, 8, 100, 4096] {
        let msg: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
        a.send_bytes(&msg).expect("send");
        assert_eq!(a.recv_bytes().expect("recv"), msg);
    }
    drop(a);
    child.join();
}

fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

fn messages_larger_than_the_ring() {
    let (a, child) = with_echo("big");
    // The ring holds 512 chunks of 1008 bytes per direction: messages of one chunk, of exact
    // chunk multiples (which end with an empty chunk) and far larger than the ring.
    for len in [1008, 3 * 1008, 512 * 1008, 5 << 20, (5 << 20) + 3] {
        let msg: Vec<u8> = (0..len as u64)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 7) as u8)
            .collect();
        let want = fnv(&msg);
        // Send from another thread: the echo sends back while we are still sending.
        std::thread::scope(|s| {
            s.spawn(|| a.send_bytes(&msg).expect("send"));
            let got = a.recv_bytes().expect("recv");
            assert_eq!((got.len(), fnv(&got)), (len, want));
        });
    }
    drop(a);
    child.join();
}

fn recv_bytes_into_short_buffer() {
    let (a, b) = Pipe::create(&name("short")).expect("create");
    a.send_bytes(b"0123456789").expect("send");
    let mut small = [0u8; 4];
    assert_eq!(
        b.recv_bytes_into(&mut small),
        Err(RecvError::Decode(BufferTooShort { needed: 10 }))
    );
    let mut big = [0u8; 16];
    assert_eq!(b.recv_bytes_into(&mut big), Ok(10));
    assert_eq!(&big[..10], b"0123456789");
}

fn zero_length_messages() {
    let (a, child) = with_echo("zero");
    for _ in 0..3 {
        a.send_bytes(b"").expect("send");
        assert_eq!(a.recv_bytes().expect("recv"), b"");
    }
    a.send_bytes(b"x").expect("send");
    assert_eq!(a.recv_bytes().expect("recv"), b"x");
    drop(a);
    child.join();
}

fn eof_in_both_directions() {
    for close_first in [0, 1] {
        let (a, b) = Pipe::create(&name("eof")).expect("create");
        let (closer, other) = if close_first == 0 { (a, b) } else { (b, a) };
        closer.send_bytes(b"last words").expect("send");
        closer.close();
        // What was sent is still delivered, then EOF.
        assert_eq!(other.recv_bytes().expect("drain"), b"last words");
        assert_eq!(other.recv_bytes(), Err(RecvError::Disconnected));
        assert_eq!(other.try_recv::<u8>(), Err(TryRecvError::Disconnected));
        assert!(other.poll(Duration::ZERO), "EOF is ready");
        assert_eq!(other.send_bytes(b"anyone?"), Err(SendError::Disconnected));
    }
}

fn hold_and_block(args: &[String]) {
    let _held = Connection::open(&args[0]).expect("open");
    common::ready();
    common::park();
}

fn killed_peer_ends_a_blocked_recv() {
    let n = name("krecv");
    let (a, b) = Pipe::create(&n).expect("create");
    b.release();
    let mut child = Child::spawn("hold_and_block", &[&n]);
    child.wait_ready();
    std::thread::scope(|s| {
        let (tx, rx) = std::sync::mpsc::channel();
        let a = &a;
        let waiter = s.spawn(move || {
            tx.send(common::thread_id()).expect("send");
            let r = a.recv_bytes();
            (r, Instant::now())
        });
        common::wait_until_sleeping(rx.recv().expect("tid"));
        let killed = Instant::now();
        child.kill();
        let (r, when) = waiter.join().expect("join");
        assert_eq!(r, Err(RecvError::Disconnected));
        let took = when - killed;
        eprintln!("peer death noticed by a blocked recv after {took:?}");
        assert!(took < Duration::from_secs(1), "{took:?}");
    });
    // However short the timeout: a deadline that passes while the call spins, before it
    // looked at its peer, ends it with that look.
    for timeout in [Duration::ZERO, Duration::from_millis(1)] {
        assert_eq!(
            a.recv_timeout::<u8>(timeout),
            Err(RecvTimeoutError::Disconnected),
            "recv_timeout({timeout:?})"
        );
    }
}

fn killed_peer_ends_a_blocked_send() {
    let n = name("ksend");
    let (a, b) = Pipe::create(&n).expect("create");
    b.release();
    let mut child = Child::spawn("hold_and_block", &[&n]);
    child.wait_ready();
    std::thread::scope(|s| {
        let sender = s.spawn(|| a.send_bytes(&vec![7u8; 4 << 20]));
        // The child never reads: the ring fills and the send blocks until the child dies.
        child.kill();
        assert_eq!(sender.join().expect("join"), Err(SendError::Disconnected));
    });
}

fn oneway_write(args: &[String]) {
    let w = PipeWriter::open(&args[0]).expect("open writer");
    for i in 0..100u64 {
        w.send(&i).expect("send");
    }
}

fn oneway_pipe_across_processes() {
    let n = name("oneway");
    let (r, w) = Pipe::create_oneway(&n).expect("create");
    w.release();
    match Connection::open(&n) {
        Err(Error::LayoutMismatch {
            expected, found, ..
        }) => assert_eq!((&*expected, &*found), ("a duplex pipe", "a one-way pipe")),
        other => panic!("not a duplex pipe: {other:?}"),
    }
    assert!(
        matches!(PipeReader::open(&n), Err(Error::InUse { .. })),
        "reader is taken"
    );
    let child = Child::spawn("oneway_write", &[&n]);
    for i in 0..100u64 {
        assert_eq!(r.recv::<u64>(), Ok(i));
    }
    child.join();
    assert_eq!(r.recv::<u64>(), Err(RecvError::Disconnected));
}

fn values_and_byte_ranges() {
    let (a, b) = Pipe::create(&name("vals")).expect("create");
    a.send(&[1.5f64, -2.0]).expect("send");
    assert_eq!(b.recv::<[f64; 2]>(), Ok([1.5, -2.0]));
    // A message of another size is an error, not a reinterpretation.
    a.send(&1u32).expect("send");
    assert_eq!(
        b.recv::<u64>(),
        Err(RecvError::Decode(WrongType {
            expected: "u64".to_owned(),
            size: 8,
            found_size: 4,
            typed: true
        }))
    );
    a.send(&1u64).expect("send");
    a.send(&2u8).expect("send");
    assert!(matches!(
        b.recv::<u32>(),
        Err(RecvError::Decode(WrongType { found_size: 8, .. }))
    ));
    assert_eq!(
        b.recv::<u8>(),
        Ok(2),
        "the too-long message was consumed, the next is intact"
    );
    // A value of the same size but another type is refused too: `recv::<u32>` of an `i32`.
    a.send(&-1i32).expect("send");
    assert_eq!(
        b.recv::<u32>(),
        Err(RecvError::Decode(WrongType {
            expected: "u32".to_owned(),
            size: 4,
            found_size: 4,
            typed: true
        }))
    );
    // So are bytes of the right size: they carry no type.
    a.send_bytes(&7u32.to_ne_bytes()).expect("send");
    assert!(matches!(
        b.recv::<u32>(),
        Err(RecvError::Decode(WrongType { typed: false, .. }))
    ));
    // A typed message is still bytes to `recv_bytes`.
    a.send(&7u32).expect("send");
    assert_eq!(b.recv_bytes().expect("recv"), 7u32.to_ne_bytes());
    // Python's send_bytes(buf, offset, size) is a slice.
    let buf = b"abcdefghij";
    a.send_bytes(&buf[2..5]).expect("send");
    a.send_bytes(&buf[10..]).expect("empty tail");
    assert_eq!(b.recv_bytes().expect("recv"), b"cde");
    assert_eq!(b.recv_bytes().expect("recv"), b"");
}

fn poll_with_and_without_timeout() {
    let (a, b) = Pipe::create(&name("poll")).expect("create");
    assert!(!b.poll(Duration::ZERO));
    let start = Instant::now();
    assert!(!b.poll(Duration::from_millis(100)));
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(100) && waited < Duration::from_secs(3),
        "{waited:?}"
    );
    assert_eq!(
        b.recv_timeout::<u8>(Duration::from_millis(10)),
        Err(RecvTimeoutError::Timeout)
    );
    a.send(&5u8).expect("send");
    assert!(b.poll(Duration::ZERO));
    assert!(b.poll(Duration::ZERO), "poll does not consume");
    assert_eq!(b.try_recv::<u8>(), Ok(5));
    assert_eq!(b.try_recv::<u8>(), Err(TryRecvError::Empty));
}

fn ends_are_taken_once() {
    let n = name("taken");
    let (a, b) = Pipe::create(&n).expect("create");
    assert!(matches!(Connection::open(&n), Err(Error::InUse { .. })));
    b.release();
    let b2 = Connection::open(&n).expect("the released end");
    assert!(matches!(Connection::open(&n), Err(Error::InUse { .. })));
    a.send(&3u16).expect("send");
    assert_eq!(b2.recv::<u16>(), Ok(3));
    assert!(matches!(
        mpshm::Queue::<u8>::open(&n),
        Err(Error::KindMismatch { .. })
    ));
}

fn a_persisted_pipe_outlives_its_ends() {
    let n = name("persist");
    // Without `persist`, the creator's last end takes the name with it.
    let (a, b) = Pipe::create(&n).expect("create");
    a.release();
    b.release();
    assert!(!common::exists(&n));
    // With it, the creator can hand both ends on and open one again later.
    let (a, b) = Pipe::create(&n).expect("create again");
    a.persist();
    b.release();
    let mut child = Child::spawn("echo", &[&n]);
    child.wait_ready();
    a.release();
    assert!(common::exists(&n));
    let a = Connection::open(&n).expect("the released end");
    a.send_bytes(b"again").expect("send");
    assert_eq!(a.recv_bytes().expect("echo"), b"again");
    drop(a);
    child.join();
    assert!(common::exists(&n), "the name stays until it is unlinked");
    mpshm::unlink(&n).expect("unlink");
}

fn send_later(args: &[String]) {
    let c = Connection::open(&args[0]).expect("open");
    assert_eq!(common::line_from_parent(), "go");
    c.send(&99u32).expect("send");
    assert_eq!(common::line_from_parent(), "bye");
}

fn wait_returns_the_ready_ones() {
    let n = name("wait");
    let (a, b) = Pipe::create(&n).expect("create");
    b.release();
    let q = mpshm::Queue::<u8>::create(&name("waitq"), 2).expect("create");
    let mut child = Child::spawn("send_later", &[&n]);
    assert!(mpshm::wait(&[&a, &q], Some(Duration::from_millis(20))).is_empty());
    child.tell("go");
    assert_eq!(mpshm::wait(&[&q, &a], Some(Duration::from_secs(10))), [1]);
    assert_eq!(a.recv::<u32>(), Ok(99));
    q.put(1).expect("put");
    assert_eq!(mpshm::wait(&[&a, &q], None), [1]);
    child.tell("bye");
    child.join();
}

#[cfg(feature = "serde")]
fn serde_values() {
    let (a, b) = Pipe::create(&name("serde")).expect("create");
    let v = (String::from("hello"), vec![1u16, 2, 3], Some(-4i64));
    a.send_serde(&v).expect("send");
    assert_eq!(b.recv_serde::<(String, Vec<u16>, Option<i64>)>(), Ok(v));
    a.send_bytes(&[0xff; 3]).expect("send");
    assert_eq!(
        b.recv_serde::<String>(),
        Err(RecvError::Decode(mpshm::DecodeError))
    );
}

fn try_calls_never_wait_behind_a_blocked_receive() {
    let (a, b) = Pipe::create(&name("tryrecv")).expect("create");
    b.send(&1u32).expect("send");
    std::thread::scope(|s| {
        let (said, heard) = std::sync::mpsc::channel();
        let a = &a;
        let blocked = s.spawn(move || {
            // Takes the first message, then waits for a second inside its receive.
            assert_eq!(a.recv::<u32>(), Ok(1));
            said.send(common::thread_id()).expect("send");
            a.recv::<u32>()
        });
        common::wait_until_sleeping(heard.recv().expect("tid"));
        // That thread holds the receiving side while it waits; these must not wait for it.
        let start = Instant::now();
        assert_eq!(a.try_recv::<u32>(), Err(TryRecvError::Empty));
        assert!(!a.poll(Duration::ZERO));
        assert!(start.elapsed() < Duration::from_secs(1));
        let asked = Duration::from_millis(50);
        let r = common::timed(asked, || a.recv_timeout::<u32>(asked));
        assert_eq!(r, Err(RecvTimeoutError::Timeout));
        b.send(&2u32).expect("send");
        assert_eq!(blocked.join().expect("join"), Ok(2));
    });
}

/// A wait that should end long before this: a regression fails the test rather than hang it.
const LONG: Duration = Duration::from_secs(10);

fn poll_and_release_lose_nothing() {
    let n = name("pollrel");
    let (a, b) = Pipe::create(&n).expect("create");
    // A poll that has to wait for the message, then gives its end up.
    std::thread::scope(|s| {
        let polling = common::blocked(s, || b.poll(Duration::from_secs(10)));
        a.send(&1u32).expect("send");
        assert!(polling.join().expect("join"));
    });
    a.send(&2u32).expect("send");
    b.release();
    let b = Connection::open(&n).expect("the released end");
    assert_eq!(b.recv::<u32>(), Ok(1), "poll must not take the message");
    assert_eq!(b.recv::<u32>(), Ok(2));
    // A message too long for the buffer stays in the pipe, whole, for the next holder too.
    let long: Vec<u8> = (0..3000u32).map(|i| i as u8).collect();
    a.send_bytes(&long).expect("send");
    a.send_bytes(b"short").expect("send");
    let mut small = [0u8; 10];
    assert_eq!(
        b.recv_bytes_into(&mut small),
        Err(RecvError::Decode(BufferTooShort { needed: 3000 }))
    );
    b.release();
    let b = Connection::open(&n).expect("the released end");
    assert_eq!(b.recv_bytes().expect("recv"), long);
    assert_eq!(b.recv_bytes_into(&mut small), Ok(5));
    assert_eq!(&small[..5], b"short");
}

/// Opens the free end; receives `args[1]` unless it is "-"; sends `args[2]`; stays.
fn rejoin(args: &[String]) {
    let c = Connection::open(&args[0]).expect("open");
    if args[1] != "-" {
        assert_eq!(c.recv_bytes().expect("recv"), args[1].as_bytes());
    }
    c.send_bytes(args[2].as_bytes()).expect("send");
    common::ready();
    common::park();
}

fn a_restarted_peer_reopens_its_end() {
    let n = name("rejoin");
    let (a, b) = Pipe::create(&n).expect("create");
    b.release();
    let mut first = Child::spawn("rejoin", &[&n, "-", "one"]);
    first.wait_ready();
    assert_eq!(a.recv_bytes().expect("recv"), b"one");
    // Sent while the peer lives, never read by it.
    a.send_bytes(b"for whoever comes next").expect("send");
    first.kill();
    assert!(a.poll(LONG), "the death is noticed");
    assert_eq!(a.recv_bytes(), Err(RecvError::Disconnected));
    // A send looks at its peer's liveness every 64 sends (a few land before it notices, for
    // whoever holds the end next).
    assert!(
        (0..64).any(|_| a.send_bytes(b"x") == Err(SendError::Disconnected)),
        "sends to a dead peer go on"
    );
    assert!(
        a.poll(Duration::ZERO),
        "a dead peer is ready to receive from"
    );
    // The dead end is opened again, and gets what was sent to it.
    let mut second = Child::spawn("rejoin", &[&n, "for whoever comes next", "two"]);
    second.wait_ready();
    assert_eq!(a.recv_bytes().expect("recv"), b"two");
    a.send(&3u8).expect("the new peer is there");
    assert!(matches!(Connection::open(&n), Err(Error::InUse { .. })));
    second.kill();
    assert!(a.poll(LONG), "the death is noticed");
    assert_eq!(a.recv_bytes(), Err(RecvError::Disconnected));
    // A receive that went to sleep while the end had no holder watches the process that opens
    // it next, and learns of its death.
    Connection::open(&n).expect("the dead end").release();
    std::thread::scope(|s| {
        let waiter = common::blocked(s, || a.recv_timeout::<u8>(LONG));
        let mut third = Child::spawn("hold_and_block", &[&n]);
        third.wait_ready();
        let killed = Instant::now();
        third.kill();
        assert_eq!(
            waiter.join().expect("join"),
            Err(RecvTimeoutError::Disconnected)
        );
        // Woken by the death, not by the end of its wait.
        assert!(killed.elapsed() < LONG / 2, "{:?}", killed.elapsed());
    });
}

fn a_persisted_pipe_waits_for_later_processes() {
    let n = name("persist");
    let (a, b) = Pipe::create(&n).expect("create");
    a.persist();
    a.release();
    b.release();
    assert!(common::exists(&n));
    let a = Connection::open(&n).expect("open");
    let b = Connection::open(&n).expect("open");
    a.send(&4u16).expect("send");
    assert_eq!(b.recv::<u16>(), Ok(4));
    drop((a, b));
    mpshm::unlink(&n).expect("unlink");
}

/// Holds a pipe end, a byte queue and an SPSC queue's producing end; puts on the queue when
/// told "queue", on the SPSC queue when told "spsc"; stays until killed.
fn feed(args: &[String]) {
    let _end = Connection::open(&args[0]).expect("open");
    let q = mpshm::ByteQueue::open(&args[1]).expect("open");
    let tx = mpshm::SpscProducer::<u32>::open(&args[2]).expect("open");
    common::ready();
    assert_eq!(common::line_from_parent(), "queue");
    q.put(b"hi".to_vec()).expect("put");
    assert_eq!(common::line_from_parent(), "spsc");
    tx.put(5).expect("put");
    common::park();
}

fn wait_wakes_for_a_message_and_for_a_death() {
    let (pn, qn, sn) = (name("wpipe"), name("wq"), name("wspsc"));
    let (a, b) = Pipe::create(&pn).expect("create");
    b.release();
    let bq = mpshm::ByteQueue::create(&qn, (4, 16)).expect("create");
    let (tx, rx) = mpshm::SpscQueue::create::<u32>(&sn, 4).expect("create");
    tx.release();
    // Every receiving kind, at once.
    let q = mpshm::Queue::<u8>::create(&name("wq2"), 1).expect("create");
    let sq = mpshm::SimpleQueue::<u8>::create(&name("wq3"), 1).expect("create");
    let jq = mpshm::JoinableQueue::<u8>::create(&name("wq4"), 1).expect("create");
    let (r, _w) = Pipe::create_oneway(&name("wq5")).expect("create");
    let objects = || -> [&dyn mpshm::Waitable; 7] { [&a, &bq, &rx, &q, &sq, &jq, &r] };
    let all = objects();
    let mut child = Child::spawn("feed", &[&pn, &qn, &sn]);
    child.wait_ready();
    assert!(mpshm::wait(&all, Some(Duration::from_millis(20))).is_empty());
    // Woken by a message from another process.
    std::thread::scope(|s| {
        let waiting = common::blocked(s, || mpshm::wait(&objects(), Some(LONG)));
        child.tell("queue");
        assert_eq!(waiting.join().expect("join"), [1]);
    });
    assert_eq!(bq.get().expect("get"), b"hi");
    child.tell("spsc");
    assert_eq!(mpshm::wait(&all, Some(Duration::from_secs(10))), [2]);
    assert_eq!(rx.get(), Ok(5));
    // Woken by its death: the pipe's peer is gone, and so are the producers of the queues it
    // put on.
    std::thread::scope(|s| {
        let waiting = common::blocked(s, || mpshm::wait(&objects(), Some(LONG)));
        child.kill();
        let mut ready = waiting.join().expect("join");
        // A later look may find the others gone too.
        ready.extend(mpshm::wait(&all, Some(Duration::ZERO)));
        ready.sort_unstable();
        ready.dedup();
        assert_eq!(ready, [0, 1, 2]);
    });
    assert!(a.poll(LONG), "the death is noticed");
    assert_eq!(a.recv_bytes(), Err(RecvError::Disconnected));
    assert_eq!(bq.get_timeout(LONG), Err(GetTimeoutError::Disconnected));
    assert_eq!(rx.get_timeout(LONG), Err(GetTimeoutError::Disconnected));
    // A close counts too.
    sq.close();
    assert_eq!(mpshm::wait(&all, Some(LONG)), [0, 1, 2, 4]);
}
