//! loom models of the ring on heap memory: every interleaving of a few threads up to the
//! preemption bound, with the weak-memory behaviour of each atomic access.
//!
//! `RUSTFLAGS="--cfg loom" cargo test --release --lib ring::loom` (two preemptions deep unless
//! `LOOM_MAX_PREEMPTIONS` says otherwise; the largest model is `#[ignore]`d, run it with
//! `-- --ignored`).
//!
//! Under loom the futex is a model mutex and condition variable (see `wait/futex.rs`): a waiter
//! really blocks until its own word is woken, so a lost wake-up is a deadlock, which loom
//! reports. Message bytes are
//! copied word by word with Relaxed atomics, so a missing happens-before edge shows up as a
//! stale message. Every model thread uses the same pid, which counts as alive: nothing is
//! reclaimed.

use loom::sync::Arc;
use loom::thread;

use super::RingError;
use super::mpmc::{HeapRing, TryGet, read_data};
use crate::sync::atomic::Ordering::{Acquire, Release};
use crate::sync::atomic::{AtomicU32, AtomicU64};
use crate::wait::futex::futex_wait;
use crate::wait::{EventCount, Peers};

const ME: u32 = 1;

/// Runs `f` under loom, two preemptions deep unless `LOOM_MAX_PREEMPTIONS` says otherwise.
fn model(f: impl Fn() + Send + Sync + 'static) {
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(2);
    }
    builder.check(f);
}

fn read2(data: &[AtomicU64], len: usize) -> [u8; 2] {
    assert_eq!(len, 2);
    let mut b = [0; 2];
    read_data(data, &mut b);
    b
}

/// Two producers put `per[p]` messages each, `[producer, index]`, into a ring of `cap` slots,
/// waiting on the futex when full; one consumer takes them all, waiting when empty.
fn two_producers_one_consumer(cap: usize, per: [u8; 2]) {
    model(move || {
        let h = Arc::new(HeapRing::new(cap, 2));
        let producers: Vec<_> = (0..2u8)
            .map(|p| {
                let h = h.clone();
                thread::spawn(move || {
                    let r = h.ring(ME);
                    for i in 0..per[usize::from(p)] {
                        r.put(&[p, i], None, 0).expect("open");
                    }
                })
            })
            .collect();
        let r = h.ring(ME);
        let got: Vec<[u8; 2]> = (0..per[0] + per[1])
            .map(|_| r.get(&mut read2, None, 0).expect("open"))
            .collect();
        for t in producers {
            t.join().expect("producer");
        }
        // Nothing lost, nothing doubled, each producer's messages in its order.
        for p in 0..2u8 {
            let mine: Vec<u8> = got.iter().filter(|m| m[0] == p).map(|m| m[1]).collect();
            assert_eq!(
                mine,
                (0..per[usize::from(p)]).collect::<Vec<_>>(),
                "{got:?}"
            );
        }
        assert_eq!(r.try_get(&mut read2), TryGet::Empty { claimed: None });
        assert_eq!((r.len(), r.lost()), (0, 0));
    });
}

#[test]
fn two_producers_cap1_one_each() {
    two_producers_one_consumer(1, [1, 1]);
}

#[test]
fn two_producers_cap2_one_each() {
    two_producers_one_consumer(2, [1, 1]);
}

#[test]
fn two_producers_cap1_two_and_one() {
    two_producers_one_consumer(1, [2, 1]);
}

#[test]
fn two_producers_cap2_two_and_one() {
    two_producers_one_consumer(2, [2, 1]);
}

#[test]
fn two_producers_cap2_two_each() {
    two_producers_one_consumer(2, [2, 2]);
}

/// One producer puts `n` messages into a ring of `cap` slots, spinning `spin` rounds before it
/// sleeps; one consumer takes them all.
fn one_producer_one_consumer(cap: usize, n: u8, spin: u32) {
    model(move || {
        let h = Arc::new(HeapRing::new(cap, 2));
        let producer = {
            let h = h.clone();
            thread::spawn(move || {
                let r = h.ring(ME);
                for i in 0..n {
                    r.put(&[0, i], None, spin).expect("open");
                }
            })
        };
        let r = h.ring(ME);
        for i in 0..n {
            assert_eq!(r.get(&mut read2, None, 0), Ok([0, i]));
        }
        producer.join().expect("producer");
        assert_eq!((r.len(), r.lost()), (0, 0));
    });
}

/// One producer, handed its side after its second put, so that its later puts are plain-store
/// puts, against a consumer that is handed its side the same way; five messages through two
/// slots, so that puts reuse slots the consumer took alone (and left `FULL`).
#[test]
fn one_producer_alone_one_consumer_alone() {
    one_producer_one_consumer(2, 5, 0);
}

/// A producer that spins before it sleeps, so that a full ring of four makes it wait for a batch
/// of two (`BatchWait`) first: no message lost or stuck, whatever the interleaving.
#[test]
fn a_spinning_producer_refills_in_batches() {
    one_producer_one_consumer(4, 6, 2);
}

/// A producer that holds its side, revoked at any point by a second producer.
#[test]
fn two_producers_cap2_three_and_one() {
    two_producers_one_consumer(2, [3, 1]);
}

/// The largest model: about ten minutes at two preemptions.
#[test]
#[ignore = "slow: about ten minutes; run with --ignored"]
fn two_producers_cap1_two_each() {
    two_producers_one_consumer(1, [2, 2]);
}

/// A getter blocked on an empty ring wakes on close and fails.
#[test]
fn close_wakes_a_blocked_getter() {
    model(|| {
        let h = Arc::new(HeapRing::new(1, 2));
        let getter = {
            let h = h.clone();
            thread::spawn(move || h.ring(ME).get(&mut read2, None, 0))
        };
        h.ring(ME).close();
        assert_eq!(getter.join().expect("getter"), Err(RingError::Closed));
    });
}

/// Close after a put: the getter drains the message, then fails.
#[test]
fn close_drains_then_fails() {
    model(|| {
        let h = Arc::new(HeapRing::new(1, 2));
        let getter = {
            let h = h.clone();
            thread::spawn(move || {
                let r = h.ring(ME);
                (r.get(&mut read2, None, 0), r.get(&mut read2, None, 0))
            })
        };
        let r = h.ring(ME);
        r.put(&[7, 8], None, 0).expect("open");
        r.close();
        assert_eq!(
            getter.join().expect("getter"),
            (Ok([7, 8]), Err(RingError::Closed))
        );
    });
}

/// A putter blocked on a full ring wakes on close and fails.
#[test]
fn close_wakes_a_blocked_putter() {
    model(|| {
        let h = Arc::new(HeapRing::new(1, 2));
        h.ring(ME).put(&[1, 1], None, 0).expect("room");
        let putter = {
            let h = h.clone();
            thread::spawn(move || h.ring(ME).put(&[2, 2], None, 0))
        };
        h.ring(ME).close();
        assert_eq!(putter.join().expect("putter"), Err(RingError::Closed));
        assert_eq!(h.ring(ME).len(), 1);
    });
}

/// The other side of a model's blocked call: attached until it detaches, as a queue's
/// producers or consumers are (`queue::QueuePeers`), and its detaching wakes the sleepers on
/// `events`, as `RingSeg::detach` does.
#[derive(Default)]
struct Side {
    detached: AtomicU32,
}

impl Side {
    /// Detaches, then wakes the other side's sleepers on `events`.
    fn detach(&self, events: &EventCount) {
        // Release: pairs with the Acquire load in `gone` (as the attachment record's Release
        // in `attach::Table::release` pairs with `Table::holder`).
        self.detached.store(1, Release);
        events.wake();
    }
}

/// `Side`, seen from a blocked call on the other side.
struct Watching<'a>(&'a Side);

impl Peers for Watching<'_> {
    fn gone(&self) -> bool {
        // Acquire: pairs with the Release store in `Side::detach`.
        self.0.detached.load(Acquire) != 0
    }

    fn sleep(&self, epoch: &AtomicU32, seen: u32, timeout: Option<std::time::Duration>) {
        futex_wait(epoch, seen, timeout);
    }
}

/// The last producer closes the ring and then detaches while a getter is blocked on it, or
/// about to look: the getter must answer `Closed` (the cause the producer gave), never
/// `Disconnected`, whichever read of the getter's falls between the close and the detach.
#[test]
fn close_then_detach_is_closed_for_a_getter() {
    model(|| {
        let h = Arc::new(HeapRing::new(1, 2));
        let producers = Arc::new(Side::default());
        let getter = {
            let (h, producers) = (h.clone(), producers.clone());
            thread::spawn(move || {
                let r = h.ring(ME);
                r.get_watching(&mut read2, None, 0, &Watching(&producers))
            })
        };
        let r = h.ring(ME);
        r.close();
        producers.detach(r.get_events());
        assert_eq!(getter.join().expect("getter"), Err(RingError::Closed));
    });
}

/// The put side of `close_then_detach_is_closed_for_a_getter`: the last consumer closes the
/// full ring and then detaches while a putter is blocked on it.
#[test]
fn close_then_detach_is_closed_for_a_putter() {
    model(|| {
        let h = Arc::new(HeapRing::new(1, 2));
        h.ring(ME).put(&[1, 1], None, 0).expect("room");
        let consumers = Arc::new(Side::default());
        let putter = {
            let (h, consumers) = (h.clone(), consumers.clone());
            thread::spawn(move || {
                let r = h.ring(ME);
                r.put_watching(&[2, 2], None, 0, &Watching(&consumers))
            })
        };
        let r = h.ring(ME);
        r.close();
        consumers.detach(r.put_events());
        assert_eq!(putter.join().expect("putter"), Err(RingError::Closed));
        assert_eq!(r.len(), 1);
    });
}
