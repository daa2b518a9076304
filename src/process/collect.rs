//! [`Collect`]: a pool job whose items' results are gathered into one outcome, a `Vec<R>` for
//! `map` ([`All`]) or an `R` for `apply` ([`One`]), handed out through an
//! [`AsyncResult`](crate::process::AsyncResult).
//!
//! The results are decoded straight into where they stay: a `map`'s chunks come back as runs
//! of consecutive items, each decoded onto the end of its run, and a run that reaches the next
//! one is joined to it, so that the outcome is the first run once the last item is in. For a
//! plain type, joining is a copy of bytes; nothing is kept per item but its value.

use std::collections::BTreeMap;
use std::ops::Range;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::error::ProcessError;
use crate::process::entry::{Origin, read_record};
use crate::process::jobs::{Sink, Submit};
use crate::process::payload::Payload;

/// How many times a waiter looks for its result, spinning and then yielding, before it sleeps
/// (as the queues do before they park).
const SPIN_ROUNDS: u32 = 200;

pub(crate) type OnOk<T> = Box<dyn FnOnce(&T) + Send>;
pub(crate) type OnErr = Box<dyn FnOnce(&ProcessError) + Send>;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The first failed item of a job, by index: its error is the job's.
type Failure = Option<(usize, ProcessError)>;

fn note_failure(failure: &mut Failure, index: usize, err: ProcessError) {
    if failure.as_ref().is_none_or(|(i, _)| index < *i) {
        *failure = Some((index, err));
    }
}

/// Reads up to `count` records from `bytes` onto `run`, which item `first` extends, until the
/// bytes end or a record is not a value (whose failure it notes): how many it read, and `false`
/// if it stopped at bytes that are not a valid record.
#[inline]
fn read_run<R: Payload>(
    run: &mut Vec<R>,
    (first, count): (usize, usize),
    bytes: &mut &[u8],
    from: Origin<'_>,
    failure: &mut Failure,
) -> (usize, bool) {
    for i in 0..count {
        if bytes.is_empty() {
            return (i, true);
        }
        match read_record::<R>(bytes, from) {
            Some(Ok(v)) => run.push(v),
            Some(Err(e)) => {
                note_failure(failure, first + i, e);
                return (i + 1, true);
            }
            None => return (i, false),
        }
    }
    (count, true)
}

/// Where a [`Collect`] keeps its items' results until the last is in.
pub(crate) trait Gather: Send + 'static {
    /// The items' result type.
    type Item: Payload;
    /// The job's outcome.
    type Out: Send + 'static;

    /// Room for a job of `items` items.
    fn with_items(items: usize) -> Self;

    /// Reads up to `count` records from `bytes` for items `first..`, noting failed items in
    /// `failure`: how many it read, and whether the bytes were valid records to the end.
    fn read(
        &mut self,
        items: (usize, usize),
        bytes: &[u8],
        from: Origin<'_>,
        failure: &mut Failure,
    ) -> (usize, bool);

    /// The outcome, once every one of the `items` items came in with a value; `None` if they
    /// do not add up.
    fn finish(&mut self, items: usize) -> Option<Self::Out>;
}

/// The one result of an `apply`.
pub(crate) struct One<R>(Option<R>);

impl<R: Payload + Send + 'static> Gather for One<R> {
    type Item = R;
    type Out = R;

    fn with_items(_items: usize) -> Self {
        One(None)
    }

    fn read(
        &mut self,
        (first, count): (usize, usize),
        mut bytes: &[u8],
        from: Origin<'_>,
        failure: &mut Failure,
    ) -> (usize, bool) {
        if count == 0 || bytes.is_empty() {
            return (0, bytes.is_empty());
        }
        match read_record::<R>(&mut bytes, from) {
            Some(Ok(v)) => self.0 = Some(v),
            Some(Err(e)) => note_failure(failure, first, e),
            None => return (0, false),
        }
        (1, bytes.is_empty())
    }

    fn finish(&mut self, _items: usize) -> Option<R> {
        self.0.take()
    }
}

/// The results of a `map`, in runs of consecutive items.
pub(crate) struct All<R> {
    /// The results of items `0..head.len()`, with room for all of them.
    head: Vec<R>,
    /// Runs that start further on, by their first item.
    rest: BTreeMap<usize, Vec<R>>,
}

impl<R> All<R> {
    /// The run that item `at` goes onto, a new one (with room for `room` items) if none ends
    /// there.
    fn run_at(&mut self, at: usize, room: usize) -> &mut Vec<R> {
        if at == self.head.len() {
            return &mut self.head;
        }
        let start = match self.rest.range(..at).next_back() {
            Some((&s, run)) if s + run.len() == at => s,
            _ => at,
        };
        self.rest
            .entry(start)
            .or_insert_with(|| Vec::with_capacity(room))
    }

    /// Appends to the head every run that now follows it.
    fn join(&mut self) {
        while let Some(run) = self.rest.first_entry() {
            if *run.key() != self.head.len() {
                break;
            }
            let mut run = run.remove();
            self.head.append(&mut run);
        }
    }
}

impl<R: Payload + Send + 'static> Gather for All<R> {
    type Item = R;
    type Out = Vec<R>;

    fn with_items(items: usize) -> Self {
        All {
            head: Vec::with_capacity(items),
            rest: BTreeMap::new(),
        }
    }

    fn read(
        &mut self,
        (first, count): (usize, usize),
        mut bytes: &[u8],
        from: Origin<'_>,
        failure: &mut Failure,
    ) -> (usize, bool) {
        let mut n = 0;
        while n < count && !bytes.is_empty() {
            let at = first + n;
            let run = self.run_at(at, count - n);
            let (read, valid) = read_run(run, (at, count - n), &mut bytes, from, failure);
            n += read;
            if !valid {
                self.join();
                return (n, false);
            }
        }
        self.join();
        (n, bytes.is_empty())
    }

    fn finish(&mut self, items: usize) -> Option<Vec<R>> {
        self.join();
        if !self.rest.is_empty() || self.head.len() != items {
            return None;
        }
        Some(std::mem::take(&mut self.head))
    }
}

/// A job whose items are gathered into one outcome by `G`.
pub(crate) struct Collect<G: Gather> {
    st: Mutex<CollectState<G>>,
    cond: Condvar,
    /// `CollectState::ready`, readable without the lock, so that a waiter can spin on it.
    ready: AtomicBool,
}

struct CollectState<G: Gather> {
    gather: G,
    items: usize,
    failure: Failure,
    remaining: usize,
    /// Set when the last item is in; the callbacks then run, and only after them is the job
    /// `ready` (as Python calls the callback before the result is ready).
    outcome: Option<Result<G::Out, ProcessError>>,
    ready: bool,
    /// Whether the outcome was a value, set with it (and read once the job is `ready`); kept
    /// after the outcome is taken (Python's `successful()` answers after `get()`).
    succeeded: Option<bool>,
    taken: bool,
    waiters: usize,
    on_ok: Vec<OnOk<G::Out>>,
    on_err: Vec<OnErr>,
}

impl<G: Gather> Collect<G> {
    /// A job of `items` items.
    pub(crate) fn new(items: usize) -> Arc<Collect<G>> {
        let job = Arc::new(Collect {
            st: Mutex::new(CollectState {
                gather: G::with_items(items),
                items,
                failure: None,
                remaining: items,
                outcome: None,
                ready: false,
                succeeded: None,
                taken: false,
                waiters: 0,
                on_ok: Vec::new(),
                on_err: Vec::new(),
            }),
            cond: Condvar::new(),
            ready: AtomicBool::new(false),
        });
        if items == 0 {
            // Nothing to wait for, and no callback attached yet.
            let mut st = lock(&job.st);
            Self::complete(&mut st);
            st.ready = true;
            // Release: pairs with the Acquire load in `wait_until` and `ready`, as in `finish`.
            job.ready.store(true, Ordering::Release);
        }
        job
    }

    fn complete(st: &mut CollectState<G>) {
        // The first failed item, in order, fails the job.
        let outcome = match st.failure.take() {
            Some((_, e)) => Err(e),
            None => st.gather.finish(st.items).ok_or(ProcessError::Decode {
                what: "the results",
            }),
        };
        st.gather = G::with_items(0);
        st.succeeded = Some(outcome.is_ok());
        st.outcome = Some(outcome);
    }

    /// Counts `n` more items in; whether that was the last.
    fn count_in(st: &mut CollectState<G>, n: usize) -> bool {
        st.remaining = st.remaining.saturating_sub(n);
        if st.remaining == 0 && st.outcome.is_none() && !st.ready {
            Self::complete(st);
            return true;
        }
        false
    }
}

impl<G: Gather> Sink for Collect<G> {
    fn deliver(
        &self,
        first: usize,
        count: usize,
        bytes: &[u8],
        from: Origin<'_>,
    ) -> (usize, bool, bool) {
        let mut st = lock(&self.st);
        let st = &mut *st;
        // The pool hands each item over once, within the job.
        let count = count.min(st.items.saturating_sub(first));
        let (n, valid) = st.gather.read((first, count), bytes, from, &mut st.failure);
        let done = Self::count_in(st, n);
        (n, valid, done)
    }

    fn fail(&self, items: Range<usize>, err: &ProcessError) -> bool {
        let mut st = lock(&self.st);
        let items = items.start..items.end.min(st.items);
        if items.is_empty() {
            return false;
        }
        note_failure(&mut st.failure, items.start, err.duplicate());
        Self::count_in(&mut st, items.len())
    }

    fn finish(&self) {
        let mut st = lock(&self.st);
        if st.ready || st.outcome.is_none() {
            return;
        }
        let (on_ok, on_err) = (
            std::mem::take(&mut st.on_ok),
            std::mem::take(&mut st.on_err),
        );
        // A callback that panics must not stop the job from becoming ready, nor end the
        // thread that runs it (the pool's own, whose end would strand every other job): the
        // panic hook has reported it; the other callbacks still run.
        match &st.outcome {
            Some(Ok(v)) => {
                for f in on_ok {
                    let _ = catch_unwind(AssertUnwindSafe(|| f(v)));
                }
            }
            Some(Err(e)) => {
                for f in on_err {
                    let _ = catch_unwind(AssertUnwindSafe(|| f(e)));
                }
            }
            None => {}
        }
        st.ready = true;
        // Release: pairs with the Acquire load in `wait_until`, which then takes the lock
        // (so it sees the outcome in any case).
        self.ready.store(true, Ordering::Release);
        if st.waiters > 0 {
            self.cond.notify_all();
        }
    }
}

/// What an [`AsyncResult`](crate::process::AsyncResult) needs of its job.
pub(crate) trait Outcome<T>: Send + Sync {
    fn wait_until(&self, deadline: Option<Instant>, pool: Option<&dyn Submit>) -> bool;
    fn take(&self) -> Result<T, ProcessError>;
    fn ready(&self) -> bool;
    fn successful(&self) -> Option<bool>;
    fn on_ok(&self, f: OnOk<T>);
    fn on_err(&self, f: OnErr);
}

impl<G: Gather> Outcome<G::Out> for Collect<G> {
    fn wait_until(&self, deadline: Option<Instant>, pool: Option<&dyn Submit>) -> bool {
        // Acquire: pairs with the Release store in `finish`.
        let ready = || self.ready.load(Ordering::Acquire);
        // Results of short tasks follow each other within microseconds: look a while before
        // sleeping, since a sleep costs the pool's thread a wake-up call and this thread a
        // context switch for every result. Better still, file the outcomes here while waiting
        // (`Submit::help`), so that a stream of results needs no thread of the pool at all.
        if let Some(p) = pool.filter(|p| p.is_own_thread()) {
            // A callback on the pool's thread waits for another result: file the outcomes
            // here (once no other thread does) until it comes.
            let mut backoff = crate::wait::Backoff::new();
            loop {
                if ready() || p.help(&ready, deadline) == Some(true) {
                    return true;
                }
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    return false;
                }
                backoff.pause(Duration::from_micros(100));
            }
        }
        let mut backoff = crate::wait::Backoff::new();
        while backoff.steps() < SPIN_ROUNDS {
            if ready() {
                return true;
            }
            match pool.and_then(|p| p.help(&ready, deadline)) {
                Some(true) => return true,
                // It looked long enough: sleep.
                Some(false) => break,
                None => {}
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                break;
            }
            backoff.snooze();
        }
        let mut st = lock(&self.st);
        while !st.ready {
            st.waiters += 1;
            st = match deadline {
                None => self.cond.wait(st).unwrap_or_else(PoisonError::into_inner),
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        st.waiters -= 1;
                        return false;
                    }
                    self.cond
                        .wait_timeout(st, left)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0
                }
            };
            st.waiters -= 1;
        }
        true
    }

    fn take(&self) -> Result<G::Out, ProcessError> {
        let mut st = lock(&self.st);
        if st.taken {
            return Err(ProcessError::ResultTaken);
        }
        st.taken = true;
        st.outcome.take().unwrap_or(Err(ProcessError::ResultTaken))
    }

    fn ready(&self) -> bool {
        // Acquire: pairs with the Release store in `finish`, made after `st.ready` under the
        // lock, so `true` here means `st.ready` (and the outcome) for whoever locks next.
        self.ready.load(Ordering::Acquire)
    }

    fn successful(&self) -> Option<bool> {
        let st = lock(&self.st);
        if st.ready { st.succeeded } else { None }
    }

    fn on_ok(&self, f: OnOk<G::Out>) {
        let mut st = lock(&self.st);
        match (&st.outcome, st.ready) {
            (Some(Ok(v)), true) => f(v),
            (_, true) => {}
            _ => st.on_ok.push(f),
        }
    }

    fn on_err(&self, f: OnErr) {
        let mut st = lock(&self.st);
        match (&st.outcome, st.ready) {
            (Some(Err(e)), true) => f(e),
            (_, true) => {}
            _ => st.on_err.push(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::entry::status;

    fn from() -> Origin<'static> {
        Origin {
            pid: 1,
            max_message: 0,
            blobs: None,
        }
    }

    /// Records of values `range`, with a panic in place of `panic_at`.
    fn records(range: Range<u64>, panic_at: Option<u64>) -> Vec<u8> {
        let mut out = Vec::new();
        for v in range {
            if Some(v) == panic_at {
                out.push(status::PANICKED);
                format!("boom {v}").encode(&mut out).unwrap();
            } else {
                out.push(status::OK);
                v.encode(&mut out).unwrap();
            }
        }
        out
    }

    fn outcome(job: &Collect<All<u64>>) -> Result<Vec<u64>, ProcessError> {
        job.finish();
        assert!(Outcome::ready(job));
        Outcome::take(job)
    }

    #[test]
    fn runs_delivered_out_of_order_come_out_in_order() {
        let job = Collect::<All<u64>>::new(10);
        // Three tasks: 0..4, 4..7, 7..10, their parts in a scrambled order.
        let parts = [(7, 9), (4, 6), (9, 10), (0, 2), (6, 7), (2, 4)];
        for (k, &(a, b)) in parts.iter().enumerate() {
            let (n, valid, done) =
                job.deliver(a, b - a, &records(a as u64..b as u64, None), from());
            assert_eq!((n, valid, done), (b - a, true, k == parts.len() - 1));
        }
        assert_eq!(outcome(&job).unwrap(), (0..10).collect::<Vec<_>>());
    }

    #[test]
    fn the_first_failed_item_fails_the_job() {
        let job = Collect::<All<u64>>::new(10);
        assert_eq!(
            job.deliver(5, 5, &records(5..10, Some(8)), from()),
            (5, true, false)
        );
        assert!(!job.fail(3..4, &ProcessError::Terminated));
        assert_eq!(
            job.deliver(0, 3, &records(0..3, Some(6)), from()),
            (3, true, false)
        );
        assert!(job.deliver(4, 1, &records(4..5, Some(4)), from()).2);
        // Item 3 failed first in order, though item 8 failed before it in time.
        assert!(matches!(outcome(&job), Err(ProcessError::Terminated)));
    }

    #[test]
    fn bad_bytes_stop_a_delivery() {
        let job = Collect::<All<u64>>::new(4);
        let mut bytes = records(0..2, None);
        bytes.push(0xEE);
        assert_eq!(job.deliver(0, 4, &bytes, from()), (2, false, false));
        assert!(job.fail(2..4, &ProcessError::Decode { what: "a result" }));
        assert!(matches!(outcome(&job), Err(ProcessError::Decode { .. })));
    }

    #[test]
    fn one_result() {
        let job = Collect::<One<u64>>::new(1);
        assert_eq!(
            job.deliver(0, 1, &records(41..42, None), from()),
            (1, true, true)
        );
        job.finish();
        assert_eq!(Outcome::take(&*job).unwrap(), 41);
        assert!(matches!(
            Outcome::take(&*job),
            Err(ProcessError::ResultTaken)
        ));
    }
}
