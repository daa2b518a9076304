//! One backoff for every loop that waits for another thread or process to take its next step,
//! after crossbeam-utils' `Backoff`: spin a growing number of `pause` instructions, then give the
//! processor up, then (for waits that may last) sleep, a growing while, up to a cap.
//!
//! Three policies cover every wait in the crate:
//! - [`Backoff::spin`]: spinning only. For a retry whose obstacle clears within nanoseconds (a
//!   `try_lock` on a lock held for a few stores, a sequence-lock read that overlapped a write),
//!   and for a caller that must not give the processor up (a `try_` call riding out another
//!   thread's operation).
//! - [`Backoff::snooze`]: spin, then yield. For a waiter that will sleep on a futex once its
//!   spin budget is spent: the rings' blocking calls, `wait`, a pool result.
//! - [`Backoff::pause`]: spin, yield, then sleep, up to a cap. For a wait on a thread that may be
//!   descheduled, stopped or dead and that nothing will wake the waiter for: a biased lock's
//!   holder leaving, a segment's creator publishing its header.
//!
//! Pure spinning longer than a few microseconds only starves a peer that shares the core; a
//! yield lets it run; a sleep stops a long wait from costing a core.
//!
//! Under loom every step is a `yield_now` of the model: a spin the model cannot see only adds
//! steps to explore, and a loop that never yields would never let the thread it waits for run.

use std::time::Duration;

/// The step from which a spin stops growing: 2^6 = 64 `pause` instructions (127 in all up to
/// there, a few microseconds).
const SPIN_LIMIT: u32 = 6;

/// The step from which [`Backoff::pause`] sleeps rather than yields.
const YIELD_LIMIT: u32 = 64;

/// The first sleep of [`Backoff::pause`]; each one after doubles, up to the cap.
const FIRST_SLEEP: Duration = Duration::from_micros(1);

/// The state of one waiting loop: how many steps it has waited.
#[derive(Debug, Default)]
pub(crate) struct Backoff {
    step: u32,
}

impl Backoff {
    /// A loop that has not waited yet.
    #[inline]
    pub(crate) const fn new() -> Backoff {
        Backoff { step: 0 }
    }

    /// Steps waited so far.
    #[inline]
    pub(crate) fn steps(&self) -> u32 {
        self.step
    }

    /// Spins 2^step `pause` instructions (at most 2^[`SPIN_LIMIT`]); never yields or sleeps.
    #[inline]
    pub(crate) fn spin(&mut self) {
        spin(self.step.min(SPIN_LIMIT));
        self.step = self.step.saturating_add(1);
    }

    /// Spins as [`spin`](Self::spin) does until the spinning is over, then yields the processor
    /// at every step.
    #[inline]
    pub(crate) fn snooze(&mut self) {
        if self.step <= SPIN_LIMIT {
            spin(self.step);
        } else {
            yield_now();
        }
        self.step = self.step.saturating_add(1);
    }

    /// Snoozes until [`YIELD_LIMIT`] steps, then sleeps, twice as long at each step from a
    /// microsecond, at most `cap`.
    pub(crate) fn pause(&mut self, cap: Duration) {
        if self.step < YIELD_LIMIT {
            self.snooze();
            return;
        }
        let doublings = (self.step - YIELD_LIMIT).min(31);
        sleep(FIRST_SLEEP.saturating_mul(1 << doublings).min(cap));
        self.step = self.step.saturating_add(1);
    }
}

#[cfg(not(loom))]
#[inline]
fn spin(step: u32) {
    for _ in 0..1u32 << step {
        std::hint::spin_loop();
    }
}

#[cfg(not(loom))]
fn yield_now() {
    std::thread::yield_now();
}

#[cfg(not(loom))]
fn sleep(d: Duration) {
    std::thread::sleep(d);
}

#[cfg(loom)]
fn spin(_step: u32) {
    loom::thread::yield_now();
}

#[cfg(loom)]
fn yield_now() {
    loom::thread::yield_now();
}

#[cfg(loom)]
fn sleep(_: Duration) {
    loom::thread::yield_now();
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn every_policy_counts_its_steps() {
        let mut b = Backoff::new();
        for _ in 0..=SPIN_LIMIT {
            b.spin();
        }
        b.snooze();
        b.pause(Duration::from_micros(1));
        assert_eq!(b.steps(), SPIN_LIMIT + 3);
    }

    #[test]
    fn pause_sleeps_at_most_its_cap() {
        let mut b = Backoff::new();
        for _ in 0..YIELD_LIMIT {
            b.pause(Duration::from_millis(1));
        }
        // From here on every step sleeps; 40 doublings would be far past the cap.
        let start = Instant::now();
        for _ in 0..40 {
            b.pause(Duration::from_micros(100));
        }
        // At most 40 × 100 µs of sleep, plus the scheduler's slack on each.
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "{:?}",
            start.elapsed()
        );
    }
}
