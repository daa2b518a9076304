//! The futex wait and wake that every sleeper in the crate goes through: the kernel's
//! (`sys::futex_wait`, `sys::futex_wake`), or under `--cfg loom` a model of it.
//!
//! The model keeps, for each word (by address), how many wakes it has had, and one condition
//! variable that every waiter sleeps on. Like the kernel, a wait compares the word under the lock
//! that the wake takes, so a wake cannot fall between the comparison and the sleep; and a waiter
//! returns only once a wake of its own word came, so a missing wake is a deadlock, which loom
//! reports, even when other words are woken. (With yield loops instead, loom starves the one
//! thread that could wake two spinners: loom issue 53.) A timed wait is modelled as an untimed
//! one: in the models every claimer and holder is alive, so progress must never need a timeout.

#[cfg(not(loom))]
pub(crate) use crate::sys::{futex_wait, futex_wake};

#[cfg(loom)]
use crate::sync::atomic::{AtomicU32, Ordering::SeqCst};

#[cfg(loom)]
loom::lazy_static! {
    /// For each word (by address) how many wakes it has had, and the one condition variable
    /// that every waiter sleeps on.
    static ref FUTEX: (
        loom::sync::Mutex<std::collections::HashMap<usize, u64>>,
        loom::sync::Condvar,
    ) = (loom::sync::Mutex::new(std::collections::HashMap::new()), loom::sync::Condvar::new());
}

/// loom's futex wait: sleeps while `word` holds `expected`, until a wake of `word` (the timeout
/// is ignored; see the module's docs).
#[cfg(loom)]
pub(crate) fn futex_wait(word: &AtomicU32, expected: u32, _timeout: Option<std::time::Duration>) {
    let (lock, queue) = &*FUTEX;
    let addr = std::ptr::from_ref(word) as usize;
    let mut wakes = lock.lock().expect("model lock");
    // SeqCst: the kernel reads the word under the bucket lock; so does this.
    if word.load(SeqCst) != expected {
        return;
    }
    let seen = wakes.get(&addr).copied().unwrap_or(0);
    while wakes.get(&addr).copied().unwrap_or(0) == seen {
        wakes = queue.wait(wakes).expect("model lock");
    }
}

/// loom's futex wake: wakes every waiter of `word` (a wake of one may wake more; callers
/// re-check).
#[cfg(loom)]
pub(crate) fn futex_wake(word: &AtomicU32, _n: u32) {
    let (lock, queue) = &*FUTEX;
    let addr = std::ptr::from_ref(word) as usize;
    let mut wakes = lock.lock().expect("model lock");
    *wakes.entry(addr).or_insert(0) += 1;
    queue.notify_all();
}
