//! loom models of the synchronisation family on heap memory: the semaphore's count, waiters,
//! holder records and redo log, the event's flag and set count, the condition's slots and
//! notify, the barrier's generations — every interleaving of a few threads up to the
//! preemption bound.
//!
//! `RUSTFLAGS="--cfg loom" cargo test --release --lib sync::loom` (two preemptions deep unless
//! `LOOM_MAX_PREEMPTIONS` says otherwise).
//!
//! The futex is a model mutex and condition variable (`park.rs`), so a lost wake-up is a
//! deadlock, which loom reports; the state lock is a futex lock on it. A wait with a deadline
//! times out at once (a timeout may fire at any moment, so that is one of the real schedules);
//! one without sleeps until woken. The attachment records are the heap model of `records`:
//! records held by `MODEL_DEAD_PID` stand for dead processes; every other holder is alive. A
//! process killed inside the state lock is staged before the model's threads start: the lock
//! left held by the dead (`ModelLock::left_by_the_dead`) and its words as its stores up to the
//! kill left them, one model per kill point.

use loom::sync::Arc;
use loom::sync::atomic::AtomicBool;
use loom::thread;
use std::time::Instant;

use super::atomic::Ordering::{Relaxed, SeqCst};
use super::barrier::{BarrierCore, BarrierCtl, PARTY};
use super::condition::{CondCore, CondCtl, NOTIFIED, Slot};
use super::event::{EventCore, EventCtl};
use super::park::{Entered, Inside, ModelLock, StateLock};
use super::records::{MODEL_DEAD_PID, Member, ModelRecord, Records};
use super::semaphore::{SemCore, SemCtl, halves, word};
use crate::error::{AcquireError, BarrierError, BreakCause};
use crate::wait::Deadline;

/// Runs `f` under loom, two preemptions deep unless `LOOM_MAX_PREEMPTIONS` says otherwise.
fn model(f: impl Fn() + Send + Sync + 'static) {
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(2);
    }
    builder.check(f);
}

/// The owner word of model process `p`.
fn proc_word(p: u32) -> u64 {
    (u64::from(p) << 32) | 1
}

const DEAD: u64 = (MODEL_DEAD_PID as u64) << 32 | 1;

/// A table of `n` records, the first `owners.len()` of them claimed by `owners`.
fn records(n: usize, owners: &[u64]) -> Vec<ModelRecord> {
    (0..n)
        .map(|i| {
            let r = ModelRecord::default();
            if let Some(&w) = owners.get(i) {
                r.owner.store(w, Relaxed);
            }
            r
        })
        .collect()
}

fn member(records: &[ModelRecord], index: usize) -> Member {
    Member {
        index,
        word: records[index].owner.load(Relaxed),
    }
}

/// A semaphore on the heap.
struct HeapSem {
    ctl: SemCtl,
    lock: ModelLock,
    records: Vec<ModelRecord>,
    initial: u32,
}

impl HeapSem {
    fn new(value: u32, owners: &[u64]) -> HeapSem {
        let ctl = SemCtl::default();
        ctl.state.store(word(value, 0), Relaxed);
        HeapSem {
            ctl,
            lock: ModelLock::default(),
            records: records(owners.len(), owners),
            initial: value,
        }
    }

    fn core(&self) -> SemCore<'_, ModelLock> {
        SemCore {
            ctl: &self.ctl,
            lock: &self.lock,
            records: Records::new(&self.records),
            initial: self.initial,
            bounded: false,
        }
    }
}

/// Two threads share one permit: never both inside, nobody left asleep, everything back.
#[test]
fn semaphore_one_permit_two_threads() {
    model(|| {
        let sem = Arc::new(HeapSem::new(1, &[proc_word(1), proc_word(2)]));
        let inside = Arc::new(AtomicBool::new(false));
        let threads: Vec<_> = (0..2)
            .map(|i| {
                let (sem, inside) = (sem.clone(), inside.clone());
                thread::spawn(move || {
                    let me = member(&sem.records, i);
                    let core = sem.core();
                    core.acquire(me, Deadline::Never, None).expect("acquire");
                    assert!(!inside.swap(true, SeqCst), "two holders of one permit");
                    inside.store(false, SeqCst);
                    core.give_back(me);
                })
            })
            .collect();
        for t in threads {
            t.join().expect("thread");
        }
        assert_eq!(halves(sem.ctl.state.load(Relaxed)), (1, 0));
        assert_eq!(sem.ctl.held.load(Relaxed), 0);
    });
}

/// A timed acquire races a release: it gets the permit or gives up, and either way leaves no
/// waiter counted and no permit lost.
#[test]
fn semaphore_timeout_races_release() {
    model(|| {
        let sem = Arc::new(HeapSem::new(0, &[proc_word(1), proc_word(2)]));
        let waiter = {
            let sem = sem.clone();
            thread::spawn(move || {
                let me = member(&sem.records, 0);
                let now = Instant::now();
                let got = sem.core().acquire(me, Deadline::At(now), Some(now));
                assert!(matches!(got, Ok(()) | Err(AcquireError::Timeout)));
                got.is_ok()
            })
        };
        sem.core().release().expect("release");
        let got = waiter.join().expect("waiter");
        let (count, waiters) = halves(sem.ctl.state.load(Relaxed));
        assert_eq!((count, waiters), (u32::from(!got), 0));
        assert_eq!(
            halves(sem.records[0].data.load(Relaxed)),
            (u32::from(got), 0)
        );
    });
}

/// A dead process holds the only permit; two threads wait for permits, a third releases one:
/// the dead one's permit comes back, and both waiters get one.
#[test]
fn semaphore_dead_holders_permit_returns() {
    model(|| {
        let sem = Arc::new(HeapSem::new(0, &[proc_word(1), proc_word(2), DEAD]));
        sem.records[2].data.store(word(1, 0), Relaxed);
        sem.ctl.held.store(1, Relaxed);
        let waiters: Vec<_> = (0..2)
            .map(|i| {
                let sem = sem.clone();
                thread::spawn(move || {
                    let me = member(&sem.records, i);
                    sem.core()
                        .acquire(me, Deadline::Never, None)
                        .expect("acquire");
                })
            })
            .collect();
        sem.core().release().expect("release");
        for t in waiters {
            t.join().expect("waiter");
        }
        assert_eq!(halves(sem.ctl.state.load(Relaxed)), (0, 0));
        assert_eq!(sem.ctl.held.load(Relaxed), 2);
        assert_eq!(
            sem.records[2].owner.load(Relaxed),
            0,
            "the dead record was freed"
        );
    });
}

/// A process died inside the state lock in the middle of committing its acquire of the only
/// permit, after its first `cut` stores (every cut, in the order `SemCore::commit` makes them:
/// the log, its flag, the update, the flag cleared). Two threads then take and give back a
/// permit each: the first to enter replays the log if its flag is up, whoever finds the dead
/// record returns what it holds, and in the end the permit is back, nobody is counted asleep,
/// the log is closed and the dead record freed.
#[test]
fn semaphore_update_cut_short_by_death_is_replayed() {
    const STORES: usize = 9;
    for cut in 0..=STORES {
        model(move || {
            let mut sem = HeapSem::new(1, &[proc_word(1), proc_word(2), DEAD]);
            sem.lock = ModelLock::left_by_the_dead();
            let c = &sem.ctl;
            let (data, state, held) = (word(1, 0), word(0, 0), 1);
            let stores: [&dyn Fn(); STORES] = [
                &|| c.redo_record.store(2, Relaxed),
                &|| c.redo_data.store(data, Relaxed),
                &|| c.redo_state.store(state, Relaxed),
                &|| c.redo_held.store(held, Relaxed),
                &|| c.redo_valid.store(1, SeqCst),
                &|| sem.records[2].data.store(data, Relaxed),
                &|| c.state.store(state, Relaxed),
                &|| c.held.store(held, Relaxed),
                &|| c.redo_valid.store(0, SeqCst),
            ];
            for store in &stores[..cut] {
                store();
            }
            let sem = Arc::new(sem);
            let threads: Vec<_> = (0..2)
                .map(|i| {
                    let sem = sem.clone();
                    thread::spawn(move || {
                        let me = member(&sem.records, i);
                        let core = sem.core();
                        core.acquire(me, Deadline::Never, None).expect("acquire");
                        core.give_back(me);
                    })
                })
                .collect();
            for t in threads {
                t.join().expect("thread");
            }
            // The dead record may not have been found if nobody had to wait: whoever takes
            // the lock next finds it.
            let (inside, how) = Inside::enter(&sem.lock, Deadline::Never).expect("enter");
            assert_eq!(how, Entered::Clean);
            sem.core().reclaim_dead();
            drop(inside);
            assert_eq!(halves(sem.ctl.state.load(Relaxed)), (1, 0), "cut {cut}");
            assert_eq!(sem.ctl.held.load(Relaxed), 0, "cut {cut}");
            assert_eq!(sem.ctl.redo_valid.load(Relaxed), 0, "cut {cut}");
            assert_eq!(sem.records[2].owner.load(Relaxed), 0, "cut {cut}");
        });
    }
}

/// An event on the heap.
struct HeapEvent {
    ctl: EventCtl,
    records: Vec<ModelRecord>,
}

impl HeapEvent {
    fn new() -> HeapEvent {
        HeapEvent {
            ctl: EventCtl::default(),
            records: records(2, &[proc_word(1), proc_word(2)]),
        }
    }

    fn core(&self) -> EventCore<'_> {
        EventCore {
            ctl: &self.ctl,
            records: Records::new(&self.records),
        }
    }
}

/// Two waiters and a set: both wake, seeing it set.
#[test]
fn event_set_wakes_every_waiter() {
    model(|| {
        let ev = Arc::new(HeapEvent::new());
        let waiters: Vec<_> = (0..2)
            .map(|_| {
                let ev = ev.clone();
                thread::spawn(move || assert!(ev.core().wait(None)))
            })
            .collect();
        ev.core().set();
        for t in waiters {
            t.join().expect("waiter");
        }
        assert!(ev.core().is_set());
    });
}

/// A set cleared again at once still releases a waiter that was counted before it.
#[test]
fn event_set_then_clear_releases_a_waiter() {
    model(|| {
        let ev = Arc::new(HeapEvent::new());
        let waiter = {
            let ev = ev.clone();
            thread::spawn(move || assert!(ev.core().wait(None)))
        };
        while ev.ctl.waiters.load(SeqCst) == 0 {
            thread::yield_now();
        }
        ev.core().set();
        ev.core().clear();
        waiter.join().expect("waiter");
        assert!(!ev.core().is_set());
    });
}

/// A condition on the heap, with a model lock standing for the user's.
struct HeapCond {
    ctl: CondCtl,
    slots: Vec<Slot>,
    records: Vec<ModelRecord>,
    lock: ModelLock,
}

impl HeapCond {
    fn new(slots: usize, owners: &[u64]) -> HeapCond {
        HeapCond {
            ctl: CondCtl::default(),
            slots: (0..slots).map(|_| Slot::default()).collect(),
            records: records(owners.len(), owners),
            lock: ModelLock::default(),
        }
    }

    fn core(&self) -> CondCore<'_> {
        CondCore {
            ctl: &self.ctl,
            slots: &self.slots,
            records: Records::new(&self.records),
        }
    }

    fn lock(&self) {
        self.lock.enter(Deadline::Never).expect("model lock");
    }

    fn unlock(&self) {
        self.lock.leave();
    }
}

/// The classic: a waiter checks a flag under the lock and waits; a notifier sets it and
/// notifies. No interleaving loses the wake-up.
#[test]
fn condition_no_lost_wakeup() {
    model(|| {
        let c = Arc::new(HeapCond::new(2, &[proc_word(1), proc_word(2)]));
        let flag = Arc::new(AtomicBool::new(false));
        let waiter = {
            let (c, flag) = (c.clone(), flag.clone());
            thread::spawn(move || {
                c.lock();
                while !flag.load(Relaxed) {
                    let me = member(&c.records, 0);
                    c.core().wait(me, &c.lock, None).expect("wait");
                }
                c.unlock();
            })
        };
        c.lock();
        flag.store(true, Relaxed);
        c.core().notify(1);
        c.unlock();
        waiter.join().expect("waiter");
    });
}

/// A waiter whose timeout fires races a notify for one: the notify counts it as woken exactly
/// when its wait reports a notify, so no notify is spent on a waiter that timed out.
#[test]
fn condition_timed_waiter_races_notify() {
    model(|| {
        let c = Arc::new(HeapCond::new(2, &[proc_word(1), proc_word(2)]));
        let waiter = {
            let c = c.clone();
            thread::spawn(move || {
                c.lock();
                let me = member(&c.records, 0);
                let r = c
                    .core()
                    .wait(me, &c.lock, Some(Instant::now()))
                    .expect("wait");
                c.unlock();
                r
            })
        };
        c.lock();
        let woken = c.core().notify(1);
        c.unlock();
        let notified = waiter.join().expect("waiter");
        assert_eq!(woken, usize::from(notified));
    });
}

/// Two waiters and two notifies for one each (under a counted predicate): both wake.
#[test]
fn condition_two_notifies_wake_two_waiters() {
    model(|| {
        let c = Arc::new(HeapCond::new(2, &[proc_word(1), proc_word(2)]));
        let tokens = Arc::new(super::atomic::AtomicU32::new(0));
        let waiters: Vec<_> = (0..2u32)
            .map(|i| {
                let (c, tokens) = (c.clone(), tokens.clone());
                thread::spawn(move || {
                    c.lock();
                    while tokens.load(Relaxed) == 0 {
                        let me = member(&c.records, i as usize);
                        c.core().wait(me, &c.lock, None).expect("wait");
                    }
                    tokens.fetch_sub(1, Relaxed);
                    c.unlock();
                })
            })
            .collect();
        for _ in 0..2 {
            c.lock();
            tokens.fetch_add(1, Relaxed);
            c.core().notify(1);
            c.unlock();
        }
        for t in waiters {
            t.join().expect("waiter");
        }
    });
}

/// A dead process was notified and never took the notify; a live waiter that was waiting
/// before that notify is woken by the death and gets it, while another thread may notify too.
#[test]
fn condition_notify_of_a_dead_waiter_is_passed_on() {
    model(|| {
        let c = Arc::new(HeapCond::new(2, &[proc_word(1), DEAD]));
        // The dead waiter (record 1): slot 0, ticket 0, notified when the ticket count was 5.
        c.slots[0].owner.store(DEAD, Relaxed);
        c.slots[0].record.store(1, Relaxed);
        c.slots[0].mark.store(5, Relaxed);
        c.slots[0].state.store(NOTIFIED, Relaxed);
        c.ctl.tickets.store(1, Relaxed);
        c.ctl.high.store(1, Relaxed);
        let waiter = {
            let c = c.clone();
            thread::spawn(move || {
                c.lock();
                let me = member(&c.records, 0);
                let r = c.core().wait(me, &c.lock, None).expect("wait");
                c.unlock();
                assert!(r);
            })
        };
        waiter.join().expect("waiter");
        assert_eq!(
            c.slots[0].state.load(Relaxed),
            super::condition::FREE,
            "the dead waiter's slot was freed"
        );
    });
}

/// A barrier on the heap.
struct HeapBarrier {
    ctl: BarrierCtl,
    lock: ModelLock,
    records: Vec<ModelRecord>,
    parties: u32,
}

impl HeapBarrier {
    fn new(parties: u32, owners: &[u64]) -> HeapBarrier {
        HeapBarrier {
            ctl: BarrierCtl::default(),
            lock: ModelLock::default(),
            records: records(owners.len(), owners),
            parties,
        }
    }

    fn core(&self) -> BarrierCore<'_, ModelLock> {
        BarrierCore {
            ctl: &self.ctl,
            lock: &self.lock,
            records: Records::new(&self.records),
            parties: self.parties,
        }
    }

    fn wait(&self, i: usize, deadline: Option<Instant>) -> Result<u32, BarrierError> {
        self.core().wait(member(&self.records, i), deadline, None)
    }
}

/// Two parties pass two rounds: each round hands out indices 0 and 1.
#[test]
fn barrier_two_parties_two_rounds() {
    model(|| {
        let b = Arc::new(HeapBarrier::new(2, &[proc_word(1), proc_word(2)]));
        let other = {
            let b = b.clone();
            thread::spawn(move || {
                [
                    b.wait(1, None).expect("wait"),
                    b.wait(1, None).expect("wait"),
                ]
            })
        };
        let mine = [
            b.wait(0, None).expect("wait"),
            b.wait(0, None).expect("wait"),
        ];
        let theirs = other.join().expect("party");
        assert_eq!([mine[0] + theirs[0], mine[1] + theirs[1]], [1, 1]);
        assert_eq!(b.core().n_waiting(), 0);
    });
}

/// An abort while a party waits (or before it arrives) fails its wait.
#[test]
fn barrier_abort_fails_the_waiter() {
    model(|| {
        let b = Arc::new(HeapBarrier::new(2, &[proc_word(1), proc_word(2)]));
        let waiter = {
            let b = b.clone();
            thread::spawn(move || b.wait(0, None))
        };
        b.core().abort().expect("abort");
        let r = waiter.join().expect("party");
        assert!(
            matches!(r, Err(BarrierError::Broken(BreakCause::Aborted))),
            "{r:?}"
        );
    });
}

/// A reset while a party waits fails its wait with `Reset`, and leaves the barrier usable.
#[test]
fn barrier_reset_fails_the_waiter() {
    model(|| {
        let b = Arc::new(HeapBarrier::new(2, &[proc_word(1), proc_word(2)]));
        let waiter = {
            let b = b.clone();
            thread::spawn(move || b.wait(0, None))
        };
        while b.core().n_waiting() == 0 {
            thread::yield_now();
        }
        b.core().reset().expect("reset");
        let r = waiter.join().expect("party");
        assert!(
            matches!(r, Err(BarrierError::Broken(BreakCause::Reset))),
            "{r:?}"
        );
        assert!(!b.core().is_broken());
        assert_eq!(b.core().n_waiting(), 0);
    });
}

/// A timed wait races the other party's arrival: both pass, or both see it broken by the
/// timeout.
#[test]
fn barrier_timeout_races_arrival() {
    model(|| {
        let b = Arc::new(HeapBarrier::new(2, &[proc_word(1), proc_word(2)]));
        let timed = {
            let b = b.clone();
            thread::spawn(move || b.wait(0, Some(Instant::now())))
        };
        let mine = b.wait(1, None);
        let theirs = timed.join().expect("party");
        match (&mine, &theirs) {
            (Ok(a), Ok(b)) => assert_eq!(a + b, 1),
            (
                Err(BarrierError::Broken(BreakCause::Timeout)),
                Err(BarrierError::Broken(BreakCause::Timeout)),
            ) => {}
            _ => panic!("{mine:?} / {theirs:?}"),
        }
    });
}

/// A party that died breaks the barrier for one that waits: `PartyDied`, naming it.
#[test]
fn barrier_dead_party_breaks_it() {
    model(|| {
        let b = Arc::new(HeapBarrier::new(2, &[proc_word(1), DEAD]));
        b.records[1].data.store(PARTY, Relaxed);
        let waiter = {
            let b = b.clone();
            thread::spawn(move || b.wait(0, None))
        };
        let r = waiter.join().expect("party");
        assert!(
            matches!(
                r,
                Err(BarrierError::Broken(BreakCause::PartyDied {
                    pid: MODEL_DEAD_PID
                }))
            ),
            "{r:?}"
        );
        assert_eq!(
            b.records[1].owner.load(Relaxed),
            0,
            "the dead record was freed"
        );
    });
}
