//! A sequence lock's protocol (Lamport's "concurrent reading and writing", with the fences of
//! Boehm, "Can seqlocks get along with programming language memory models?", MSPC 2012): the
//! containers' lock-free read path.
//!
//! Writers are serialised by another lock (the segment's robust mutex); each one makes the
//! sequence word odd before it changes anything and even again, one higher, after. A reader
//! notes an even sequence, copies what it needs with Relaxed atomic loads, and keeps the copy
//! only if the sequence is still the same afterwards; otherwise a writer ran meanwhile and it
//! tries again, a bounded number of times, so a reader never loops forever whatever the shared
//! word says (the caller then takes the lock). A writer that dies leaves the word odd; readers
//! give up on it and the lock's next holder, told that the owner died, repairs the data and
//! ends the write.
//!
//! Data words must be read and written through atomics (Relaxed is enough): a reader may race
//! with a writer and must see a torn word at worst, never undefined behaviour. The protocol is
//! model checked on heap memory under loom (`loom_model.rs`).

use crate::sync::atomic::{AtomicU64, Ordering};

#[cfg(loom)]
use loom::sync::atomic::fence;
#[cfg(not(loom))]
use std::sync::atomic::fence;

use crate::wait::Backoff;

/// Starts a write; the caller holds the writers' lock. Returns the odd sequence to hand to
/// [`end_write`]. A sequence left odd by a writer that died stays odd (the repair that follows
/// is one more write).
#[inline]
pub(crate) fn begin_write(seq: &AtomicU64) -> u64 {
    // Relaxed: only lock holders write the word, and the lock orders them.
    let odd = seq.load(Ordering::Relaxed) | 1;
    seq.store(odd, Ordering::Relaxed);
    // Release fence: pairs with the Acquire fence in `read`. A reader whose data loads see any
    // store made after this fence then sees this odd sequence (or later) on its second load.
    fence(Ordering::Release);
    odd
}

/// Ends the write begun with `odd`.
#[inline]
pub(crate) fn end_write(seq: &AtomicU64, odd: u64) {
    // Release: pairs with the Acquire load at the top of `read`; a reader that sees the new
    // even sequence sees every store of this write.
    seq.store(odd.wrapping_add(1), Ordering::Release);
}

/// Whether a write is in progress (or a writer died in one).
#[inline]
pub(crate) fn writing(seq: &AtomicU64) -> bool {
    seq.load(Ordering::Relaxed) & 1 == 1
}

/// Runs `read` until it completes with no write in progress or in between, at most `tries`
/// times; `None` if every try overlapped a write. `read` must only load (atomically), must
/// finish whatever it finds (bounded loops, checked indices), and must not act on what it
/// found before this returns it: a copy that overlapped a write is thrown away.
#[inline]
pub(crate) fn read<T>(seq: &AtomicU64, tries: u32, mut read: impl FnMut() -> T) -> Option<T> {
    let mut backoff = Backoff::new();
    while backoff.steps() < tries {
        // Acquire: pairs with the Release store in `end_write`.
        let before = seq.load(Ordering::Acquire);
        if before & 1 == 0 {
            let v = read();
            // Acquire fence: pairs with the Release fence in `begin_write`, so that the load
            // below sees a write whose stores `read` saw any of.
            fence(Ordering::Acquire);
            if seq.load(Ordering::Relaxed) == before {
                return Some(v);
            }
        }
        backoff.spin();
    }
    None
}
