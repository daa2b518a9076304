//! The ring on heap memory: unit tests, threads, and property tests against a model. All of it
//! runs under Miri too (`cargo +nightly miri test --lib ring::`), with fewer rounds.

use std::collections::{BTreeMap, VecDeque};

use proptest::prelude::*;

use super::*;
use crate::ring::{BatchWait, bias};

fn read_vec(data: &[AtomicU64], len: usize) -> Vec<u8> {
    let mut v = vec![0; len];
    read_data(data, &mut v);
    v
}

fn get_vec(r: &Ring<'_>) -> TryGet<Vec<u8>> {
    r.try_get(&mut read_vec)
}

/// A pid that is alive for as long as the test runs: ours. (A made-up small pid may name no
/// process, and then a waiter would rightly reclaim a slot that a test thread is still filling.)
fn me() -> u32 {
    std::process::id()
}

#[test]
fn encoding_round_trips() {
    for pos in [0, 1, POS_MASK, POS_MASK + 5, u64::MAX] {
        let w = enc(pos, READING, 4_194_303);
        assert_eq!(state(w), READING);
        assert_eq!(pid(w), 4_194_303);
        assert_eq!(diff(w, pos), 0);
        assert_eq!(diff(w, pos.wrapping_sub(3)), 3);
        assert_eq!(diff(w, pos.wrapping_add(3)), -3);
    }
}

#[test]
fn fifo_wraps_and_reports_full_and_empty() {
    let h = HeapRing::new(3, 13);
    let r = h.ring(me());
    assert_eq!(get_vec(&r), TryGet::Empty { claimed: None });
    for round in 0..10u8 {
        for i in 0..3u8 {
            let msg = vec![round ^ i; (i as usize * 6) % 14];
            assert_eq!(r.try_put(&msg), TryPut::Done);
        }
        assert_eq!(r.try_put(b"x"), TryPut::Full { claimed: None });
        assert_eq!(r.len(), 3);
        for i in 0..3u8 {
            assert_eq!(
                get_vec(&r),
                TryGet::Got(vec![round ^ i; (i as usize * 6) % 14])
            );
        }
        assert_eq!(get_vec(&r), TryGet::Empty { claimed: None });
    }
}

/// A put writes a slot's length word only when it changed (`write_data`): each slot here gets a
/// length other than its last one's in some laps and the same in others, first through the
/// shared protocol and then (after `GRANT_AFTER` puts) as the producers' holder.
#[test]
fn a_slot_reused_with_another_length_reads_back_that_length() {
    let lens = [5usize, 5, 3, 0, 8, 8, 1, 5];
    let h = HeapRing::new(2, 8);
    let r = h.ring(me());
    for (lap, &len) in lens.iter().enumerate() {
        let msgs = [vec![lap as u8; len], vec![!(lap as u8); 8 - len]];
        for msg in &msgs {
            assert_eq!(r.try_put(msg), TryPut::Done);
        }
        for msg in &msgs {
            assert_eq!(get_vec(&r), TryGet::Got(msg.clone()));
        }
    }
    assert!(h.ctl.producers.holder().is_some());
}

#[test]
fn capacity_one_works() {
    let h = HeapRing::new(1, 8);
    let r = h.ring(me());
    for i in 0..5u8 {
        assert_eq!(r.try_put(&[i]), TryPut::Done);
        assert!(matches!(r.try_put(&[i]), TryPut::Full { .. }));
        assert_eq!(get_vec(&r), TryGet::Got(vec![i]));
    }
}

#[test]
fn dead_claimers_are_reclaimed() {
    let h = HeapRing::new(2, 8);
    let r = h.ring(me());
    // A producer that claimed slot 0 and is alive: not reclaimed.
    let live = enc(0, WRITING, me());
    h.words[0].store(live, Relaxed);
    h.ctl.tail.0.pos.store(1, Relaxed);
    assert!(!r.reclaim_dead_slot(0, live));
    assert_eq!(h.words[0].load(Relaxed), live);
    // The same producer, dead.
    let w = enc(0, WRITING, MODEL_DEAD_PID);
    h.words[0].store(w, Relaxed);
    assert_eq!(
        get_vec(&r),
        TryGet::Empty {
            claimed: Some((0, w))
        }
    );
    assert!(r.reclaim_dead_slot(0, w));
    assert_eq!(r.lost(), 1);
    assert_eq!(r.try_put(b"a"), TryPut::Done);
    assert_eq!(get_vec(&r), TryGet::Got(b"a".to_vec()));
    assert!(r.joined() || r.task_done().is_ok());
}

/// Runs `f` on a thread of its own and hands back its result, failing the test if that takes
/// longer than a generous bound (rather than hanging the suite: the thread is left behind).
fn within_seconds<R: Send + 'static>(secs: u64, f: impl FnOnce() -> R + Send + 'static) -> R {
    let (tx, rx) = std::sync::mpsc::channel();
    let thread = std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    let r = rx
        .recv_timeout(Duration::from_secs(secs))
        .expect("still waiting: the call ignored what should have ended it");
    thread.join().expect("the call's thread");
    r
}

/// A handle that busy-polls (`set_spin(u32::MAX)`) never stops spinning: it must still reclaim a
/// dead claimer's slot in its way (it spun 2^32 rounds first, before), and give up at its
/// deadline.
#[test]
fn a_busy_polling_waiter_reclaims_dead_claimers_and_keeps_its_deadline() {
    let h = std::sync::Arc::new(HeapRing::new(2, 8));
    let w = enc(0, WRITING, MODEL_DEAD_PID);
    h.words[0].store(w, Relaxed);
    h.ctl.tail.0.pos.store(1, Relaxed);
    assert_eq!(h.ring(me()).try_put(b"a"), TryPut::Done);
    let hh = h.clone();
    let got = within_seconds(60, move || hh.ring(me()).get(&mut read_vec, None, u32::MAX));
    assert_eq!(got, Ok(b"a".to_vec()));
    assert_eq!(h.ring(me()).lost(), 1);
    let asked = Duration::from_millis(20);
    let start = Instant::now();
    let hh = h.clone();
    let got = within_seconds(60, move || {
        hh.ring(me())
            .get(&mut read_vec, Some(start + asked), u32::MAX)
    });
    assert_eq!(got, Err(RingError::Timeout));
    assert!(start.elapsed() >= asked);
}

/// A consumer that died copying out the previous lap of the head slot, in an empty ring: `try_get`
/// must report it rather than spin until the slot is freed (it spun forever before).
#[test]
fn dead_reader_of_the_previous_lap_is_reported() {
    let h = HeapRing::new(1, 8);
    let r = h.ring(me());
    assert_eq!(r.try_put(b"a"), TryPut::Done);
    let w = enc(0, READING, MODEL_DEAD_PID);
    h.words[0].store(w, Relaxed);
    h.ctl.head.0.pos.store(1, Relaxed);
    assert_eq!(
        get_vec(&r),
        TryGet::Empty {
            claimed: Some((0, w))
        }
    );
    // Closed: a blocking get says so at once; the dead reader does not hold it up.
    r.close();
    let mut read = |_: &[AtomicU64], _: usize| ();
    assert_eq!(r.get(&mut read, None, 0), Err(RingError::Closed));
    assert!(r.reclaim_dead_slot(0, w));
    assert_eq!(r.lost(), 1);
    assert_eq!(get_vec(&r), TryGet::Empty { claimed: None });
    assert_eq!(r.try_put(b"b"), TryPut::Done);
    assert_eq!(get_vec(&r), TryGet::Got(b"b".to_vec()));
}

/// Stages thread `key` as the holder of `role` at seat `s`, inside an operation.
fn stage_holder(role: &bias::RoleBias, s: usize, key: u64) -> &bias::Seat {
    let seat = &role.seats[s].0;
    seat.key.store(key, Relaxed);
    seat.inside.store(1, Relaxed);
    role.bias.0.store(bias::HELD | s as u64, Relaxed);
    seat
}

#[test]
fn a_lone_thread_is_handed_each_side_and_another_takes_it_back() {
    let h = HeapRing::new(8, 8);
    let r = h.ring(me());
    assert_eq!(h.ctl.producers.holder(), None);
    for i in 0..10u8 {
        assert_eq!(r.try_put(&[i]), TryPut::Done);
        assert_eq!(get_vec(&r), TryGet::Got(vec![i]));
    }
    let mine = h
        .ctl
        .producers
        .holder()
        .expect("the producers' role is ours");
    assert!(h.ctl.consumers.holder().is_some());
    // Another thread puts: it revokes our hold, and after a few puts holds the role itself.
    std::thread::scope(|s| {
        s.spawn(|| {
            for i in 0..5u8 {
                assert_eq!(r.try_put(&[100 + i]), TryPut::Done);
            }
            assert_ne!(h.ctl.producers.holder(), Some(mine));
            assert!(h.ctl.producers.holder().is_some());
        });
    });
    // And we take it back.
    assert_eq!(r.try_put(&[7]), TryPut::Done);
    assert_eq!(h.ctl.producers.holder(), None);
    for want in [100, 101, 102, 103, 104, 7] {
        assert_eq!(get_vec(&r), TryGet::Got(vec![want]));
    }
    assert_eq!((r.len(), r.lost()), (0, 0));
}

/// A put holding its role remembers the next slot as free (`PutAhead`); a producer that then
/// takes the role away and dies in the middle of its claim on that very slot leaves the role
/// shared, so the next put looks at the slot again and passes the dead claim (which a consumer
/// then reclaims and counts lost), rather than writing over it on the strength of what it
/// remembered.
#[test]
fn a_remembered_free_slot_is_looked_at_again_after_the_role_changed_hands() {
    let h = HeapRing::new(8, 8);
    let r = h.ring(me());
    for i in 0..4u8 {
        assert_eq!(r.try_put(&[i]), TryPut::Done);
    }
    assert!(h.ctl.producers.holder().is_some());
    let pos = h.ctl.tail.0.pos.load(Relaxed);
    assert_eq!(
        h.memory.ahead.free(pos),
        Some(0),
        "the last put looked ahead"
    );
    // What a producer that revoked our hold, claimed `pos` and died there leaves behind.
    h.ctl.producers.bias.0.store(0, Relaxed);
    r.slot(pos)[0].store(enc(pos, WRITING, MODEL_DEAD_PID), Relaxed);
    assert_eq!(r.put_nowait(&[9], &NoPeers), Ok(()));
    for want in [0, 1, 2, 3, 9] {
        assert_eq!(r.get_nowait(&mut read_vec, &NoPeers), Ok(vec![want]));
    }
    assert_eq!(r.lost(), 1);
}

/// A consumer that was taking a backlog and finds the ring empty waits a moment for a batch
/// (`CatchUp`), but not past its deadline, and takes what is put meanwhile.
#[test]
fn a_consumer_that_caught_up_keeps_its_deadline_and_takes_what_comes() {
    let h = HeapRing::new(64, 8);
    let r = h.ring(me());
    let backlog = || {
        for i in 0..4u8 {
            assert_eq!(r.try_put(&[i]), TryPut::Done);
        }
        for i in 0..4u8 {
            assert_eq!(r.get(&mut read_vec, None, 0), Ok(vec![i]));
        }
    };
    // A spinning get (a get set not to spin does not wait for a batch).
    let spin = 200;
    backlog();
    assert_eq!(
        r.get(&mut read_vec, Some(Instant::now()), spin),
        Err(RingError::Timeout)
    );
    backlog();
    std::thread::scope(|s| {
        s.spawn(|| assert_eq!(r.try_put(&[9]), TryPut::Done));
        let deadline = Some(Instant::now() + Duration::from_secs(60));
        assert_eq!(r.get(&mut read_vec, deadline, spin), Ok(vec![9]));
    });
}

#[test]
fn a_holder_that_died_inside_is_revoked() {
    let h = HeapRing::new(4, 8);
    let r = h.ring(me());
    let role = &h.ctl.producers;
    stage_holder(role, 3, bias::MODEL_DEAD_KEY);
    // Even a put that may not wait finds the holder dead, rather than saying Busy for ever.
    assert_eq!(r.try_put(b"a"), TryPut::Done);
    assert_ne!(role.holder(), Some(3));
    assert_eq!(get_vec(&r), TryGet::Got(b"a".to_vec()));
}

#[test]
fn a_consumer_that_died_taking_alone_loses_that_message_only() {
    let h = HeapRing::new(4, 8);
    let r = h.ring(me());
    for i in 0..3u8 {
        assert_eq!(r.try_put(&[i]), TryPut::Done);
    }
    // A consumer holding its role died copying out the message at the head.
    let dead = stage_holder(&h.ctl.consumers, 7, bias::MODEL_DEAD_KEY);
    dead.taking.store(1, Relaxed); // position 0, plus one
    assert_eq!(get_vec(&r), TryGet::Got(vec![1]));
    assert_eq!(r.lost(), 1);
    assert_eq!(get_vec(&r), TryGet::Got(vec![2]));
    // The slot it left is free for the next lap.
    for i in 3..7u8 {
        assert_eq!(r.try_put(&[i]), TryPut::Done);
    }
    assert!(matches!(r.try_put(&[9]), TryPut::Full { .. }));
}

#[test]
fn join_passes_a_consumer_that_died_taking_alone() {
    let h = HeapRing::new(4, 8);
    let r = h.ring(me());
    assert_eq!(r.try_put(&[1]), TryPut::Done);
    let dead = stage_holder(&h.ctl.consumers, 2, bias::MODEL_DEAD_KEY);
    dead.taking.store(1, Relaxed);
    assert_eq!(
        r.join(Some(Instant::now() + Duration::from_secs(5))),
        Ok(())
    );
    assert_eq!((r.lost(), r.len()), (1, 0));
}

/// A seat in the middle of being taken over (its key `CLAIMING`, its flag still raised by the
/// dead owner) belongs to the thread taking it: no one frees it or takes it, and nothing is
/// granted past its raised flag.
#[test]
fn a_seat_being_taken_over_is_left_to_its_taker() {
    let h = HeapRing::new(4, 8);
    let r = h.ring(me());
    let role = &h.ctl.producers;
    let taken = &role.seats[0].0;
    taken.key.store(bias::CLAIMING, Relaxed);
    taken.inside.store(1, Relaxed);
    for i in 0..10u8 {
        assert_eq!(r.try_put(&[i]), TryPut::Done);
        assert_eq!(get_vec(&r), TryGet::Got(vec![i]));
    }
    assert_eq!(taken.key.load(Relaxed), bias::CLAIMING);
    assert_eq!(role.holder(), None);
    assert!(h.ctl.consumers.holder().is_some());
}

/// Threads that exited leave their seats behind; a thread that needs one takes theirs over.
#[cfg(not(miri))] // Miri's model threads never count as dead
#[test]
fn seats_of_finished_threads_are_taken_over() {
    let h = HeapRing::new(4, 8);
    for i in 0..bias::SEATS as u8 + 4 {
        std::thread::scope(|s| {
            s.spawn(|| {
                let r = h.ring(me());
                assert_eq!(r.try_put(&[i]), TryPut::Done);
                assert_eq!(get_vec(&r), TryGet::Got(vec![i]));
            });
        });
    }
    // Threads found earlier ones dead and took their seats. (Not always the one before: a
    // thread that has been joined may still be in the kernel's list for a moment.)
    for role in [&h.ctl.producers, &h.ctl.consumers] {
        let taken = role.seats.iter().filter(|t| t.0.key.load(Relaxed) != 0);
        assert!(taken.count() < bias::SEATS);
    }
}

/// Runs `f` with the seat key of another thread, which stays alive until `f` returns (or
/// panics: `done_tx`, moved into the scope, is dropped then, and the thread ends).
fn with_another_live_thread(f: impl FnOnce(u64)) {
    let (key_tx, key_rx) = std::sync::mpsc::channel();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    std::thread::scope(move |s| {
        s.spawn(move || {
            key_tx.send(bias::my_key()).expect("send");
            let _ = done_rx.recv();
        });
        f(key_rx.recv().expect("key"));
        done_tx.send(()).expect("send");
    });
}

#[test]
fn a_holder_inside_makes_others_wait_or_say_busy() {
    let h = HeapRing::new(4, 8);
    let r = h.ring(me());
    with_another_live_thread(|key| {
        // That thread, staged as the holder, inside a put.
        let role = &h.ctl.producers;
        let seat = stage_holder(role, 5, key);
        assert_eq!(r.try_put(b"a"), TryPut::Busy);
        let asked = Duration::from_millis(20);
        let start = Instant::now();
        assert_eq!(r.put(b"a", Some(start + asked), 0), Err(RingError::Timeout));
        assert!(start.elapsed() >= asked);
        // It leaves: the role is ours to take.
        seat.inside.store(0, Release);
        assert_eq!(r.try_put(b"b"), TryPut::Done);
        assert_ne!(role.holder(), Some(5));
    });
    assert_eq!(get_vec(&r), TryGet::Got(b"b".to_vec()));
}

#[test]
fn threads_without_a_seat_still_work() {
    let h = HeapRing::new(4, 8);
    let r = h.ring(me());
    with_another_live_thread(|live| {
        // Every seat taken by a live thread that is not us.
        for role in [&h.ctl.producers, &h.ctl.consumers] {
            for t in &role.seats {
                t.0.key.store(live, Relaxed);
            }
        }
        for i in 0..10u8 {
            assert_eq!(r.try_put(&[i]), TryPut::Done);
            assert_eq!(get_vec(&r), TryGet::Got(vec![i]));
        }
    });
    assert_eq!(
        (h.ctl.producers.holder(), h.ctl.consumers.holder()),
        (None, None)
    );
    assert_eq!(h.ctl.producers.seatless.0.load(Relaxed), 0);
}

/// While a thread without a seat is inside an operation, a role is handed to no one.
#[test]
fn a_thread_without_a_seat_inside_blocks_grants() {
    let h = HeapRing::new(4, 8);
    let r = h.ring(me());
    h.ctl.producers.seatless.0.store(1, Relaxed);
    for i in 0..10u8 {
        assert_eq!(r.try_put(&[i]), TryPut::Done);
        assert_eq!(get_vec(&r), TryGet::Got(vec![i]));
    }
    assert_eq!(h.ctl.producers.holder(), None);
    assert!(h.ctl.consumers.holder().is_some());
    // It leaves: the next run of puts is handed the role.
    h.ctl.producers.seatless.0.store(0, Relaxed);
    for i in 0..10u8 {
        assert_eq!(r.try_put(&[i]), TryPut::Done);
        assert_eq!(get_vec(&r), TryGet::Got(vec![i]));
    }
    assert!(h.ctl.producers.holder().is_some());
}

#[test]
fn a_full_ring_is_refilled_in_batches_while_consumers_take() {
    let head = AtomicU64::new(10);
    let r = BatchWait::new(&head, 8);
    assert!(!r.keep_waiting(false), "the ring was not found full");
    r.found_full(false);
    for taken in [11, 12, 13] {
        head.store(taken, Relaxed);
        assert!(
            r.keep_waiting(false),
            "half the ring (4) is not yet taken at {taken}"
        );
    }
    head.store(14, Relaxed);
    assert!(!r.keep_waiting(false));
    assert!(!r.keep_waiting(false), "the wait is over");
    // Consumers that stop taking end the wait at the next look.
    r.found_full(false);
    head.store(15, Relaxed);
    assert!(r.keep_waiting(false));
    assert!(!r.keep_waiting(false));
    // Once the spinning is over, a put never waits for a batch.
    r.found_full(true);
    assert!(!r.keep_waiting(false));
    r.found_full(false);
    head.store(16, Relaxed);
    assert!(!r.keep_waiting(true));
}

#[test]
fn threads_lose_and_duplicate_nothing() {
    let h = HeapRing::new(4, 16);
    let per = if cfg!(miri) { 50 } else { 20_000 };
    let producers = 3u64;
    let seen = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for p in 0..producers {
            let r = h.ring(me());
            s.spawn(move || {
                for i in 0..per {
                    let msg = (p << 32 | i).to_ne_bytes();
                    r.put(&msg, None, 100).expect("put");
                }
            });
        }
        for _ in 0..2 {
            let r = h.ring(me());
            let seen = &seen;
            s.spawn(move || {
                let mut mine = Vec::new();
                let mut read = |d: &[AtomicU64], len: usize| {
                    let mut b = [0u8; 8];
                    read_data(d, &mut b[..len]);
                    u64::from_ne_bytes(b)
                };
                while let Ok(v) = r.get(&mut read, None, 100) {
                    mine.push(v);
                }
                seen.lock().expect("lock").push(mine);
            });
        }
        // Close once everything is in; consumers drain and stop.
        s.spawn(|| {
            let r = h.ring(me());
            while r.ctl.tail.0.pos.load(Relaxed) < producers * per {
                std::thread::yield_now();
            }
            r.close();
        });
    });
    let seen = seen.into_inner().expect("lock");
    // Per consumer, each producer's messages arrive in order.
    for mine in &seen {
        for p in 0..producers {
            let idx: Vec<u64> = mine
                .iter()
                .filter(|v| *v >> 32 == p)
                .map(|v| v & 0xffff_ffff)
                .collect();
            assert!(idx.windows(2).all(|w| w[0] < w[1]));
        }
    }
    let mut all: Vec<u64> = seen.concat();
    all.sort_unstable();
    let want: Vec<u64> = (0..producers)
        .flat_map(|p| (0..per).map(move |i| p << 32 | i))
        .collect();
    assert_eq!(all, want);
    assert_eq!(h.ring(me()).lost(), 0);
}

/// No spinning: every wait parks on the futex, so the eventcount (and, under Miri, the futex
/// calls themselves) carry the whole exchange.
#[test]
fn ping_pong_through_the_futex() {
    let h = HeapRing::new(1, 8);
    let rounds = if cfg!(miri) { 20 } else { 2_000 };
    let mut read = |d: &[AtomicU64], len: usize| {
        let mut b = [0u8; 8];
        read_data(d, &mut b[..len]);
        u64::from_ne_bytes(b)
    };
    std::thread::scope(|s| {
        s.spawn(|| {
            let r = h.ring(me());
            for i in 0..rounds {
                r.put(&u64::to_ne_bytes(i), None, 0).expect("open");
            }
        });
        let r = h.ring(me());
        for i in 0..rounds {
            assert_eq!(r.get(&mut read, None, 0), Ok(i));
        }
    });
    // A getter parked on an empty ring is woken by close.
    std::thread::scope(|s| {
        s.spawn(|| {
            let r = h.ring(me());
            assert_eq!(r.get(&mut read, None, 0), Err(RingError::Closed));
        });
        let r = h.ring(me());
        while r.ctl.state.0.get.sleepers() == 0 {
            std::thread::yield_now();
        }
        r.close();
    });
}

/// `bias` words that name no seat, or carry stray bits: what another process may scribble.
const CORRUPT_BIAS: [u64; 6] = [
    bias::HELD | 20,
    3 << 32 | 20, // REVOKING
    1 << 32 | 20, // GRANTING
    bias::HELD | 1 << 40,
    bias::HELD | 0xffff,
    u64::MAX,
];

/// A `bias` word that names no seat is reset to the shared protocol, not used as an index.
#[test]
fn a_bias_word_naming_no_seat_is_reset() {
    let h = HeapRing::new(4, 8);
    let r = h.ring(me());
    for (i, word) in CORRUPT_BIAS.into_iter().enumerate() {
        h.ctl.producers.bias.0.store(word, Relaxed);
        h.ctl.consumers.bias.0.store(word, Relaxed);
        let i = i as u8;
        assert_eq!(r.try_put(&[i]), TryPut::Done, "{word:#x}");
        assert_eq!(get_vec(&r), TryGet::Got(vec![i]), "{word:#x}");
        assert_eq!(r.task_done(), Ok(()));
        for role in [&h.ctl.producers, &h.ctl.consumers] {
            assert_ne!(role.bias.0.load(Relaxed), word);
        }
        // A `join` waiting on a message at the head looks for a dead holder of the consumers'
        // role (`revoke_if_dead`): a word that names a holder (held or being revoked) is reset there
        // too; a grant in progress is left to the next get.
        assert_eq!(r.try_put(&[i]), TryPut::Done);
        h.ctl.consumers.bias.0.store(word, Relaxed);
        let soon = Some(Instant::now() + Duration::from_millis(30));
        assert_eq!(r.join(soon), Err(RingError::Timeout));
        if word & (3 << 32) >= bias::HELD {
            assert_eq!(h.ctl.consumers.bias.0.load(Relaxed), 0, "{word:#x}");
        }
        assert_eq!(get_vec(&r), TryGet::Got(vec![i]));
        assert_eq!(r.task_done(), Ok(()));
    }
}

/// The thread that held a role may still be inside when the word is scribbled over: the reset
/// waits for it, as a revocation does (a try gives up and says so).
#[test]
fn a_bias_reset_waits_for_a_thread_inside() {
    let h = HeapRing::new(4, 8);
    let r = h.ring(me());
    with_another_live_thread(|key| {
        let seat = stage_holder(&h.ctl.producers, 5, key);
        h.ctl.producers.bias.0.store(bias::HELD | 20, Relaxed);
        assert_eq!(r.try_put(b"a"), TryPut::Busy);
        seat.inside.store(0, Release);
        assert_eq!(r.try_put(b"b"), TryPut::Done);
    });
    assert_eq!(get_vec(&r), TryGet::Got(b"b".to_vec()));
}

/// An index scribbled far behind (2^36 positions) is caught up in a few steps, not one per
/// position, and nothing is lost or repeated.
#[test]
fn an_index_scribbled_far_behind_catches_up_at_once() {
    let h = HeapRing::new(4, 8);
    let r = h.ring(me());
    for i in 0..3u8 {
        assert_eq!(r.try_put(&[i]), TryPut::Done);
    }
    assert_eq!(get_vec(&r), TryGet::Got(vec![0]));
    let head = &h.ctl.head.0.pos;
    head.store(head.load(Relaxed).wrapping_sub(1 << 36), Relaxed);
    assert_eq!(get_vec(&r), TryGet::Got(vec![1]));
    let tail = &h.ctl.tail.0.pos;
    tail.store(tail.load(Relaxed).wrapping_sub(1 << 36), Relaxed);
    assert_eq!(r.try_put(&[3]), TryPut::Done);
    assert_eq!(get_vec(&r), TryGet::Got(vec![2]));
    assert_eq!(get_vec(&r), TryGet::Got(vec![3]));
    assert_eq!(get_vec(&r), TryGet::Empty { claimed: None });
    // Even an index at the very end of the number range moves on without overflow.
    head.store(u64::MAX, Relaxed);
    tail.store(u64::MAX, Relaxed);
    let _ = r.try_put(&[4]);
    let _ = get_vec(&r);
}

/// An index scribbled behind within a lap is caught up one slot at a time: a call looks at
/// `SEARCH_BUDGET` slots before it looks at its deadline, so a `try` says `Empty` and a later
/// call goes on where it stopped, and a blocking call with time left carries on.
#[cfg_attr(miri, ignore = "thousands of operations; too slow under Miri")]
#[test]
fn a_long_catch_up_is_done_in_budgets() {
    let cap = SEARCH_BUDGET as usize * 3;
    let h = HeapRing::new(cap, 0);
    let r = h.ring(me());
    // Shared protocol only, so that each slot taken is marked free for the next lap (a
    // consumer holding its role leaves it `FULL`, and a head moved back onto it would take
    // that message again: a scribbler can have a message delivered twice).
    r.forbid_bias();
    for _ in 0..cap {
        assert_eq!(r.try_put(&[]), TryPut::Done);
        assert_eq!(get_vec(&r), TryGet::Got(vec![]));
    }
    assert_eq!(r.try_put(&[]), TryPut::Done);
    let head = &h.ctl.head.0.pos;
    head.store(head.load(Relaxed) - (cap as u64 - 1), Relaxed);
    assert_eq!(get_vec(&r), TryGet::Empty { claimed: None });
    let deadline = Some(Instant::now() + Duration::from_secs(60));
    assert_eq!(r.get(&mut read_vec, deadline, 0), Ok(vec![]));
}

#[test]
fn matches_a_vecdeque_model() {
    // A deterministic op sequence; the property tests below drive wider ones.
    let h = HeapRing::new(5, 24);
    let r = h.ring(me());
    let mut model = VecDeque::new();
    let mut x = 0x9e37_79b9_u32;
    for _ in 0..if cfg!(miri) { 200 } else { 20_000 } {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        if !x.is_multiple_of(3) {
            let msg = vec![x as u8; (x as usize >> 8) % 25];
            match r.try_put(&msg) {
                TryPut::Done => model.push_back(msg),
                r => assert_eq!((r, model.len()), (TryPut::Full { claimed: None }, 5)),
            }
        } else {
            match get_vec(&r) {
                TryGet::Got(m) => assert_eq!(Some(m), model.pop_front()),
                r => assert!(r == TryGet::Empty { claimed: None } && model.is_empty()),
            }
        }
        assert_eq!(r.len(), model.len());
    }
}

/// One step of a property test.
#[derive(Debug, Clone)]
enum Op {
    /// `try_put` of these bytes, cut to the ring's `max_len`.
    TryPut(Vec<u8>),
    TryGet,
    /// `put` with a deadline of now: succeeds, times out, or fails closed at once.
    Put(Vec<u8>),
    /// `get` with a deadline of now.
    Get,
    Close,
    TaskDone,
    /// A producer claims the tail slot and dies; `advance`: after moving the tail on.
    DeadWriter {
        advance: bool,
    },
    /// A consumer claims the head message and dies; `advance`: after moving the head on.
    DeadReader {
        advance: bool,
    },
}

#[derive(Debug, Clone, PartialEq)]
enum Entry {
    Msg(Vec<u8>),
    DeadWriting,
    DeadReading,
}

/// What the ring should hold, by position: a `VecDeque` of messages with the holes that dead
/// claimers leave, and the indices the ring should show (which may trail by the step a dead
/// claimer never took).
struct Model {
    cap: u64,
    max_len: usize,
    /// Every held position, all in `tail - cap .. tail`: messages and dead writers from `head`
    /// on, dead readers before it.
    entries: BTreeMap<u64, Entry>,
    head: u64,
    tail: u64,
    ring_head: u64,
    ring_tail: u64,
    closed: bool,
    lost: u64,
    delivered: u64,
    done: u64,
}

impl Model {
    fn new(cap: usize, max_len: usize) -> Model {
        Model {
            cap: cap as u64,
            max_len,
            entries: BTreeMap::new(),
            head: 0,
            tail: 0,
            ring_head: 0,
            ring_tail: 0,
            closed: false,
            lost: 0,
            delivered: 0,
            done: 0,
        }
    }

    fn word(pos: u64, e: &Entry) -> u64 {
        match e {
            Entry::Msg(_) => enc(pos, FULL, 0),
            Entry::DeadWriting => enc(pos, WRITING, MODEL_DEAD_PID),
            Entry::DeadReading => enc(pos, READING, MODEL_DEAD_PID),
        }
    }

    /// The claimed slot a claim word names, if `pos` holds a dead claimer.
    fn claimed(&self, pos: u64) -> Option<(u64, u64)> {
        match self.entries.get(&pos)? {
            Entry::Msg(_) => None,
            e => Some((pos, Model::word(pos, e))),
        }
    }

    /// What `try_put` should find blocking the tail slot: `None` if it is free.
    fn put_blocker(&self) -> Option<Option<(u64, u64)>> {
        let prev = self.tail.checked_sub(self.cap)?;
        self.entries.contains_key(&prev).then(|| self.claimed(prev))
    }

    /// What `try_get` should return.
    fn expect_get(&self) -> TryGet<Vec<u8>> {
        if self.head < self.tail {
            match &self.entries[&self.head] {
                Entry::Msg(m) => TryGet::Got(m.clone()),
                _ => TryGet::Empty {
                    claimed: self.claimed(self.head),
                },
            }
        } else {
            let claimed = self
                .head
                .checked_sub(self.cap)
                .and_then(|p| self.claimed(p));
            TryGet::Empty { claimed }
        }
    }

    /// `reclaim` freed `pos`.
    fn reclaimed(&mut self, pos: u64) {
        let e = self.entries.remove(&pos).expect("a held slot");
        assert!(
            !matches!(e, Entry::Msg(_)),
            "only dead claimers are reclaimed"
        );
        if e == Entry::DeadWriting {
            assert_eq!(pos, self.head, "a dead writer is reclaimed at the head");
            self.head += 1;
        }
        self.lost += 1;
        for ix in [&mut self.ring_head, &mut self.ring_tail] {
            if *ix == pos {
                *ix += 1;
            }
        }
    }

    fn put_done(&mut self, msg: &[u8]) {
        self.entries.insert(self.tail, Entry::Msg(msg.to_vec()));
        self.tail += 1;
        self.ring_tail = self.tail;
    }

    fn got(&mut self) {
        self.entries.remove(&self.head);
        self.head += 1;
        self.ring_head = self.head;
        self.delivered += 1;
    }
}

/// Calls `reclaim` on a slot the model says a dead claimer holds, and checks that it frees that
/// slot alone and counts one lost message.
fn checked_reclaim(h: &HeapRing, r: &Ring<'_>, m: &mut Model, pos: u64, w: u64) {
    let words = |h: &HeapRing| -> Vec<u64> {
        (0..h.cap)
            .map(|i| h.words[i * r.stride].load(Relaxed))
            .collect()
    };
    let before = words(h);
    let lost = r.lost();
    assert!(r.reclaim_dead_slot(pos, w));
    let after = words(h);
    let i = (pos % m.cap) as usize;
    for (j, (b, a)) in before.iter().zip(&after).enumerate() {
        if j == i {
            assert_eq!(*b, w);
            assert_eq!(
                *a,
                enc(pos + m.cap, FREE, 0),
                "slot {j} freed for the next lap"
            );
        } else {
            assert_eq!(a, b, "slot {j} untouched");
        }
    }
    assert_eq!(r.lost(), lost + 1);
    // Once freed, the same claim word is gone: nothing more to reclaim.
    assert!(!r.reclaim_dead_slot(pos, w));
    assert_eq!(r.lost(), lost + 1);
    m.reclaimed(pos);
}

fn step(h: &HeapRing, r: &Ring<'_>, m: &mut Model, op: &Op) {
    let mut read = |data: &[AtomicU64], len: usize| {
        let mut v = vec![0; len];
        read_data(data, &mut v);
        v
    };
    match op {
        Op::TryPut(msg) => {
            let msg = &msg[..msg.len().min(m.max_len)];
            let want = m.put_blocker();
            let got = r.try_put(msg);
            // Any try_put first helps a trailing tail on.
            m.ring_tail = m.tail;
            match (got, want) {
                (TryPut::Done, None) => m.put_done(msg),
                (TryPut::Full { claimed }, Some(want)) => {
                    assert_eq!(claimed, want);
                    if let Some((pos, w)) = claimed {
                        checked_reclaim(h, r, m, pos, w);
                    }
                }
                (got, want) => panic!("try_put gave {got:?}, model blocker {want:?}"),
            }
        }
        Op::TryGet => {
            let want = m.expect_get();
            let got = r.try_get(&mut read);
            // Any try_get first helps a trailing head on.
            m.ring_head = m.head;
            assert_eq!(got, want);
            match got {
                TryGet::Got(_) => m.got(),
                TryGet::Empty {
                    claimed: Some((pos, w)),
                } => checked_reclaim(h, r, m, pos, w),
                TryGet::Empty { claimed: None } => {}
                TryGet::Busy => unreachable!("the model never says Busy"),
            }
        }
        Op::Put(msg) => {
            let msg = &msg[..msg.len().min(m.max_len)];
            let got = r.put(msg, Some(Instant::now()), 0);
            if m.closed {
                assert_eq!(got, Err(RingError::Closed));
                return;
            }
            m.ring_tail = m.tail;
            // `put` reclaims a dead claimer in its way, then tries again.
            while let Some(Some((pos, _))) = m.put_blocker() {
                m.reclaimed(pos);
            }
            match m.put_blocker() {
                None => {
                    assert_eq!(got, Ok(()));
                    m.put_done(msg);
                }
                Some(_) => assert_eq!(got, Err(RingError::Timeout)),
            }
        }
        Op::Get => {
            let got = r.get(&mut read, Some(Instant::now()), 0);
            m.ring_head = m.head;
            let want = loop {
                match m.expect_get() {
                    TryGet::Got(v) => {
                        m.got();
                        break Ok(v);
                    }
                    TryGet::Busy => unreachable!("the model never says Busy"),
                    TryGet::Empty { claimed } => {
                        if m.closed && claimed.is_none_or(|(_, w)| state(w) == READING) {
                            break Err(RingError::Closed);
                        }
                        match claimed {
                            Some((pos, _)) => m.reclaimed(pos),
                            None => break Err(RingError::Timeout),
                        }
                    }
                }
            };
            assert_eq!(got, want);
        }
        Op::Close => {
            r.close();
            m.closed = true;
        }
        Op::TaskDone => {
            let ok = m.done < m.delivered;
            assert_eq!(r.task_done().is_ok(), ok);
            m.done += u64::from(ok);
        }
        Op::DeadWriter { advance } => {
            if (m.ring_head, m.ring_tail) != (m.head, m.tail) || m.put_blocker().is_some() {
                return; // only from a settled ring with a free tail slot
            }
            let pos = m.tail;
            let slot = &r.slot(pos)[0];
            assert_eq!(slot.load(Relaxed), enc(pos, FREE, 0));
            slot.store(enc(pos, WRITING, MODEL_DEAD_PID), Relaxed);
            m.entries.insert(pos, Entry::DeadWriting);
            m.tail += 1;
            if *advance {
                h.ctl.tail.0.pos.store(pos + 1, Relaxed);
                m.ring_tail = pos + 1;
            }
        }
        Op::DeadReader { advance } => {
            let pos = m.head;
            let settled = (m.ring_head, m.ring_tail) == (m.head, m.tail);
            if !settled || !matches!(m.entries.get(&pos), Some(Entry::Msg(_))) {
                return; // only from a settled ring with a message at the head
            }
            let slot = &r.slot(pos)[0];
            assert_eq!(slot.load(Relaxed), enc(pos, FULL, 0));
            slot.store(enc(pos, READING, MODEL_DEAD_PID), Relaxed);
            m.entries.insert(pos, Entry::DeadReading);
            m.head += 1;
            if *advance {
                h.ctl.head.0.pos.store(pos + 1, Relaxed);
                m.ring_head = pos + 1;
            }
        }
    }
}

/// What every step must leave true.
fn check(r: &Ring<'_>, m: &Model) {
    let (head, tail) = (
        r.ctl.head.0.pos.load(Relaxed),
        r.ctl.tail.0.pos.load(Relaxed),
    );
    assert_eq!((head, tail), (m.ring_head, m.ring_tail), "ring indices");
    let len = tail.checked_sub(head).expect("head <= tail");
    assert_eq!(r.len() as u64, len.min(m.cap));
    assert_eq!(r.lost(), m.lost);
    assert_eq!(r.is_closed(), m.closed);
    let at_head = head == m.head && matches!(m.entries.get(&head), Some(Entry::Msg(_)));
    assert_eq!(r.readable(), m.closed || at_head);
    let tail_free = tail == m.tail && m.put_blocker().is_none();
    assert_eq!(r.writable(), m.closed || tail_free);
    assert_eq!(r.joined(), head == tail && m.done == m.delivered);
}

fn run(cap: usize, max_len: usize, ops: &[Op]) {
    let h = HeapRing::new(cap, max_len);
    let r = h.ring(me());
    // The model is of the shared protocol's slot states (a consumer holding its role leaves
    // taken slots `FULL`); the other tests cover the sides held alone.
    r.forbid_bias();
    let mut m = Model::new(cap, max_len);
    for op in ops {
        step(&h, &r, &mut m, op);
        check(&r, &m);
        if m.entries.values().all(|e| matches!(e, Entry::Msg(_))) {
            // No dead claimer holds a slot: the plain FIFO picture holds exactly.
            assert_eq!(r.len(), m.entries.len());
        }
    }
}

fn bytes() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..=40)
}

fn plain_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => bytes().prop_map(Op::TryPut),
        6 => Just(Op::TryGet),
        2 => bytes().prop_map(Op::Put),
        2 => Just(Op::Get),
        2 => Just(Op::TaskDone),
        1 => Just(Op::Close),
    ]
}

fn any_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        12 => plain_op(),
        1 => any::<bool>().prop_map(|advance| Op::DeadWriter { advance }),
        1 => any::<bool>().prop_map(|advance| Op::DeadReader { advance }),
    ]
}

fn config() -> ProptestConfig {
    if cfg!(miri) {
        // Miri cannot read the regression file in isolation, and each case is slow there.
        ProptestConfig {
            cases: 4,
            failure_persistence: None,
            ..ProptestConfig::default()
        }
    } else {
        ProptestConfig::with_cases(512)
    }
}

proptest! {
    #![proptest_config(config())]

    /// try_put, try_get, put/get with an expired deadline, task_done and close against the
    /// model, checking len, readable/writable and joined after every step.
    #[test]
    fn behaves_like_a_vecdeque(
        cap in 1usize..8,
        max_len in 0usize..=40,
        ops in prop::collection::vec(plain_op(), 0..200),
    ) {
        run(cap, max_len, &ops);
    }

    /// As above, with producers and consumers that die holding a slot: each is found by the
    /// role it blocks, and reclaiming it frees exactly its slot and counts one lost message.
    #[test]
    fn reclaims_dead_claimers(
        cap in 1usize..8,
        max_len in 0usize..=40,
        ops in prop::collection::vec(any_op(), 0..200),
    ) {
        run(cap, max_len, &ops);
    }
}
