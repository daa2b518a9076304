//! loom models of the containers on heap memory: every interleaving of a writer and readers,
//! with the weak-memory behaviour of each atomic access and fence.
//!
//! `RUSTFLAGS="--cfg loom" cargo test --release --lib containers::loom`
//!
//! - The sequence lock alone ([`seqlock`]): the data are two words that every write sets to the
//!   same value, one after the other, with Relaxed stores, as the containers copy entries: a
//!   copy the protocol hands back with two different words is a torn read, and one older than
//!   a write the reader had already seen is a stale one.
//! - A list's words ([`words`]: the pool, the commit, the rebuild and repair after a dead
//!   writer, all the crate's own, on a `Vec` of loom atomics): a writer sets, inserts and
//!   removes items the way `SharedList` does, while a reader takes snapshots the way `to_vec`
//!   does; and a writer killed after each of its steps in turn, whose words the next holder of
//!   the lock repairs while a reader reads. A snapshot kept is always a whole state the writer
//!   committed; after the repair the list is the state before the killed operation or after it,
//!   and the pool hands out no reachable entry. (A kill stops the writer between two of its
//!   steps, a step being one store or one call to `alloc`/`free`: a kill inside `alloc` or
//!   `free` leaves only derived words half-written, which the rebuild rewrites whole.)

use std::cell::Cell as StdCell;

use loom::sync::Arc;
use loom::sync::atomic::{AtomicU64, Ordering};
use loom::thread;

use super::seqlock;
use super::words::{self, Layout, Shape, Words, commit};
use crate::error::ContainerError;

/// The sequence word and the two data words.
struct Cell {
    seq: AtomicU64,
    data: [AtomicU64; 2],
}

impl Cell {
    fn new() -> Cell {
        Cell {
            seq: AtomicU64::new(0),
            data: [AtomicU64::new(0), AtomicU64::new(0)],
        }
    }

    /// One write of `v` (the writers' lock is implied: one writer thread).
    fn write(&self, v: u64) {
        let token = seqlock::begin_write(&self.seq);
        for d in &self.data {
            d.store(v, Ordering::Relaxed);
        }
        seqlock::end_write(&self.seq, token);
    }

    /// One read, at most `tries` copies.
    fn read(&self, tries: u32) -> Option<[u64; 2]> {
        seqlock::read(&self.seq, tries, || {
            [
                self.data[0].load(Ordering::Relaxed),
                self.data[1].load(Ordering::Relaxed),
            ]
        })
    }
}

/// Runs `f` under loom, three preemptions deep unless `LOOM_MAX_PREEMPTIONS` says otherwise.
fn model(f: impl Fn() + Send + Sync + 'static) {
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(3);
    }
    builder.check(f);
}

/// A reader racing two writes keeps only whole copies, and two reads in a row never go back.
#[test]
fn a_reader_never_keeps_a_torn_or_stale_copy() {
    model(|| {
        let cell = Arc::new(Cell::new());
        let writer = {
            let cell = cell.clone();
            thread::spawn(move || {
                cell.write(1);
                cell.write(2);
            })
        };
        let mut last = 0;
        for _ in 0..2 {
            if let Some([a, b]) = cell.read(2) {
                assert_eq!(a, b, "torn copy");
                assert!(a >= last, "stale copy: {a} after {last}");
                last = a;
            }
        }
        writer.join().expect("writer");
        // With no writer left, a read succeeds at once and sees the last write.
        assert_eq!(cell.read(1), Some([2, 2]));
    });
}

/// A read that starts after a write has ended (the writer said so through a flag, as a lock
/// hand-over would) sees that write or a later one, never an older one.
#[test]
fn a_read_after_a_write_sees_it() {
    model(|| {
        let cell = Arc::new(Cell::new());
        let done = Arc::new(AtomicU64::new(0));
        let writer = {
            let (cell, done) = (cell.clone(), done.clone());
            thread::spawn(move || {
                cell.write(1);
                // Release: pairs with the Acquire load below.
                done.store(1, Ordering::Release);
                cell.write(2);
            })
        };
        if done.load(Ordering::Acquire) == 1 {
            if let Some([a, b]) = cell.read(2) {
                assert_eq!(a, b, "torn copy");
                assert!(a >= 1, "a read after the first write saw {a}");
            }
        }
        writer.join().expect("writer");
    });
}

/// A writer that died in the middle of a write (the sequence left odd) never lets a reader
/// keep a copy: every try fails, and the reader goes to the lock.
#[test]
fn a_dead_writer_keeps_readers_out() {
    model(|| {
        let cell = Arc::new(Cell::new());
        let writer = {
            let cell = cell.clone();
            thread::spawn(move || {
                seqlock::begin_write(&cell.seq);
                cell.data[0].store(9, Ordering::Relaxed);
                // ... and dies here.
            })
        };
        if let Some([a, b]) = cell.read(2) {
            assert_eq!([a, b], [0, 0], "a copy from inside the dead write");
        }
        writer.join().expect("writer");
        assert_eq!(cell.read(3), None);
    });
}

// ---- a list's words ------------------------------------------------------------------------

/// A list of one-word items on the heap: the payload words `SharedList` keeps in its segment.
struct HeapList {
    lay: Layout,
    words: Vec<AtomicU64>,
}

impl Words for HeapList {
    fn layout(&self) -> &Layout {
        &self.lay
    }

    fn words(&self) -> &[AtomicU64] {
        &self.words
    }
}

/// The list state word, as `list.rs` makes it.
fn list_state(copy: usize, len: usize) -> u64 {
    (copy as u64) << 32 | len as u64
}

/// The model's kill: a writer's steps left before it dies (`usize::MAX`: it lives).
struct Life(StdCell<usize>);

/// The writer was killed here.
#[derive(Debug)]
struct Killed;

impl Life {
    fn forever() -> Life {
        Life(StdCell::new(usize::MAX))
    }

    /// One more step, if the writer is still alive.
    fn step(&self) -> Result<(), Killed> {
        match self.0.get() {
            0 => Err(Killed),
            n => {
                self.0.set(n.saturating_sub(1));
                Ok(())
            }
        }
    }
}

fn alive<T>(r: Result<T, ContainerError>) -> Result<T, Killed> {
    Ok(r.expect("the model's words are never damaged"))
}

impl HeapList {
    /// A list of capacity `cap` holding `items`, its derived words as a rebuild makes them.
    fn new(cap: usize, items: &[u64]) -> HeapList {
        let lay = Layout::new(Shape::List, cap as u64, 8).expect("in range");
        let n = lay.words().expect("small") as usize;
        let l = HeapList {
            lay,
            words: (0..n).map(|_| AtomicU64::new(0)).collect(),
        };
        for (at, &v) in items.iter().enumerate() {
            l.data(at).store(v, Ordering::Relaxed);
            l.index(0)[at].store(at as u64 + 1, Ordering::Relaxed);
        }
        l.ctl(words::STATE)
            .store(list_state(0, items.len()), Ordering::Relaxed);
        words::rebuild(&l).expect("rebuild");
        l
    }

    /// Entry `id`'s item: its first data word.
    fn data(&self, id: usize) -> &AtomicU64 {
        &self.words()[self.entry_word(id) + 2]
    }

    /// An entry from the pool, the write begun, the entry written (as `list.rs` does before
    /// it commits): the entry and the write's token.
    fn new_entry(&self, v: u64, life: &Life) -> Result<(usize, u64), Killed> {
        life.step()?;
        let new = alive(words::alloc(self))?;
        life.step()?;
        let token = seqlock::begin_write(self.seq());
        life.step()?;
        self.data(new).store(v, Ordering::Relaxed);
        Ok((new, token))
    }

    /// `SharedList::set(at, v)`: a spare entry, committed in the item's index word.
    fn set(&self, at: usize, v: u64, life: &Life) -> Result<(), Killed> {
        let (copy, len) = alive(self.list_state())?;
        assert!(at < len);
        let old = alive(self.entry_id(self.index(copy)[at].load(Ordering::Relaxed) - 1))?;
        let (new, token) = self.new_entry(v, life)?;
        life.step()?;
        commit(&self.index(copy)[at], new as u64 + 1);
        life.step()?;
        words::free(self, old);
        life.step()?;
        seqlock::end_write(self.seq(), token);
        Ok(())
    }

    /// `SharedList::insert(0, v)`: a new entry and the other index copy, committed in the
    /// state word.
    fn push_front(&self, v: u64, life: &Life) -> Result<(), Killed> {
        let (copy, len) = alive(self.list_state())?;
        assert!(len < self.lay.capacity);
        let (new, token) = self.new_entry(v, life)?;
        let (from, to) = (self.index(copy), self.index(1 - copy));
        life.step()?;
        to[0].store(new as u64 + 1, Ordering::Relaxed);
        for j in 0..len {
            life.step()?;
            to[j + 1].store(from[j].load(Ordering::Relaxed), Ordering::Relaxed);
        }
        life.step()?;
        commit(self.ctl(words::STATE), list_state(1 - copy, len + 1));
        life.step()?;
        seqlock::end_write(self.seq(), token);
        Ok(())
    }

    /// `SharedList::remove(at)`: the other index copy without it, committed in the state
    /// word, then its entry back to the pool.
    fn remove(&self, at: usize, life: &Life) -> Result<(), Killed> {
        let (copy, len) = alive(self.list_state())?;
        let id = alive(self.entry_id(self.index(copy)[at].load(Ordering::Relaxed) - 1))?;
        life.step()?;
        let token = seqlock::begin_write(self.seq());
        let (from, to) = (self.index(copy), self.index(1 - copy));
        for j in (0..len).filter(|&j| j != at) {
            life.step()?;
            to[j - usize::from(j > at)].store(from[j].load(Ordering::Relaxed), Ordering::Relaxed);
        }
        life.step()?;
        commit(self.ctl(words::STATE), list_state(1 - copy, len - 1));
        life.step()?;
        words::free(self, id);
        life.step()?;
        seqlock::end_write(self.seq(), token);
        Ok(())
    }

    /// The items, as `to_vec` copies them (no check: a copy may overlap a write).
    fn copy(&self) -> Result<Vec<u64>, ContainerError> {
        let (copy, len) = self.list_state()?;
        (0..len)
            .map(|at| {
                let id =
                    self.entry_id(self.index(copy)[at].load(Ordering::Relaxed).wrapping_sub(1))?;
                Ok(self.data(id).load(Ordering::Relaxed))
            })
            .collect()
    }

    /// A snapshot through the read path, at most `tries` copies.
    fn snapshot(&self, tries: u32) -> Option<Vec<u64>> {
        seqlock::read(self.seq(), tries, || self.copy()).map(|r| r.expect("a kept copy is whole"))
    }

    /// The writer's operations: set the first item to 20, insert 30 in front, remove the
    /// second; how many it finished before it was killed.
    fn write(&self, life: &Life) -> usize {
        let mut done = 0;
        let _ = (|| {
            self.set(0, 20, life)?;
            done += 1;
            self.push_front(30, life)?;
            done += 1;
            self.remove(1, life)?;
            done += 1;
            Ok::<(), Killed>(())
        })();
        done
    }

    /// The derived words agree with the committed state: the free chain and the fresh mark
    /// name exactly the unreachable entries, so the pool hands out none that is reachable.
    fn check_pool(&self) {
        let (copy, len) = self.list_state().expect("state");
        let reachable: Vec<usize> = (0..len)
            .map(|at| self.index(copy)[at].load(Ordering::Relaxed) as usize - 1)
            .collect();
        let fresh = self.ctl(words::FRESH).load(Ordering::Relaxed) as usize;
        let mut free = Vec::new();
        let mut head = self.ctl(words::FREE).load(Ordering::Relaxed);
        while head != 0 {
            assert!(free.len() < self.lay.entries(), "the free chain loops");
            free.push(head as usize - 1);
            head = self.aux(head as usize - 1).load(Ordering::Relaxed);
        }
        for id in 0..self.lay.entries() {
            let expected_free = id < fresh && !reachable.contains(&id);
            assert_eq!(
                free.contains(&id),
                expected_free,
                "entry {id}: free {free:?}, reachable {reachable:?}"
            );
            assert!(
                !reachable.contains(&id) || id < fresh,
                "entry {id} reachable past fresh"
            );
        }
    }
}

/// The states the writer commits, one after the other.
const STATES: [&[u64]; 4] = [&[10], &[20], &[30, 20], &[30]];

/// A reader's snapshots during a writer's set, insert and remove: each kept one is a whole
/// committed state, never an older one than the last kept.
#[test]
fn a_list_snapshot_is_a_committed_state() {
    model(|| {
        let l = Arc::new(HeapList::new(2, &[10]));
        let writer = {
            let l = l.clone();
            thread::spawn(move || l.write(&Life::forever()))
        };
        let mut last = 0;
        for _ in 0..2 {
            if let Some(got) = l.snapshot(2) {
                let at = STATES.iter().position(|s| *s == got.as_slice());
                let at = at.unwrap_or_else(|| panic!("a snapshot no write committed: {got:?}"));
                assert!(at >= last, "a snapshot older than the last one: {got:?}");
                last = at;
            }
        }
        assert_eq!(writer.join().expect("writer"), 3);
        assert_eq!(l.snapshot(1).as_deref(), Some(STATES[3]));
        l.check_pool();
    });
}

/// A writer killed after each of its steps in turn; the next holder of the lock repairs its
/// words (as `Store::lock` does when told the owner died) while a reader reads. The list is
/// then the state before the killed operation or after it, a snapshot kept meanwhile is a
/// whole state, and the pool is sound: one more insert lands, nothing reachable overwritten.
#[test]
fn a_killed_list_writer_is_repaired() {
    // Steps of the three operations: 6, 7 and 5.
    const STEPS: usize = 18;
    for cut in 0..=STEPS {
        model(move || {
            let l = Arc::new(HeapList::new(2, &[10]));
            let done = {
                let l = l.clone();
                thread::spawn(move || l.write(&Life(StdCell::new(cut))))
            }
            .join()
            .expect("writer");
            assert_eq!(
                done == 3,
                cut == STEPS,
                "cut {cut}: the steps were miscounted"
            );
            let reader = {
                let l = l.clone();
                thread::spawn(move || l.snapshot(2))
            };
            if done < 3 || seqlock::writing(l.seq()) {
                words::repair(&*l).expect("repair");
            }
            if let Some(got) = reader.join().expect("reader") {
                assert!(
                    got == STATES[done] || got == STATES[(done + 1).min(3)],
                    "cut {cut}: a snapshot {got:?} after {done} operations"
                );
            }
            assert!(!seqlock::writing(l.seq()), "cut {cut}: the write left open");
            let got = l.snapshot(1).expect("no writer left");
            assert!(
                got == STATES[done] || got == STATES[(done + 1).min(3)],
                "cut {cut}: {got:?} after {done} operations"
            );
            l.check_pool();
            if got.len() < 2 {
                l.push_front(40, &Life::forever()).expect("alive");
                let mut want = vec![40];
                want.extend(&got);
                assert_eq!(l.snapshot(1), Some(want), "cut {cut}");
            }
        });
    }
}
