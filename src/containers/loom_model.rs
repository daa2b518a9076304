//! loom models of the containers' sequence lock on heap memory: every interleaving of a writer
//! and a reader, with the weak-memory behaviour of each atomic access and fence.
//!
//! `RUSTFLAGS="--cfg loom" cargo test --release --lib containers::loom`
//!
//! The data are two words that every write sets to the same value, one after the other, with
//! Relaxed stores, as the containers copy entries: a copy the protocol hands back with two
//! different words is a torn read, and one older than a write the reader had already seen is a
//! stale one.

use loom::sync::Arc;
use loom::sync::atomic::{AtomicU64, Ordering};
use loom::thread;

use super::seqlock;

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
