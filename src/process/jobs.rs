//! The caller's side of pool work: a job's items are cut into chunks ([`Chunker`]), each chunk
//! is one task, and the outcomes come back into a [`Sink`]: a [`Collect`] for `map` and `apply`
//! (handed out through an [`AsyncResult`]), a [`Stream`] for `imap` (read through an
//! [`IMap`]).

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::ops::Range;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, Instant};

use crate::error::ProcessError;
use crate::process::channel::Blob;
use crate::process::collect::{Collect, Gather, Outcome};
use crate::process::entry::{Entry, Origin, read_record};
use crate::process::payload::Payload;
use crate::process::workers::wire;

/// Where the outcomes of a job's items go.
pub(crate) trait Sink: Send + Sync {
    /// Reads up to `count` outcome records from `bytes` for items `first..`: how many it read,
    /// and whether the bytes were valid to the end (if not, the task's remaining items cannot
    /// be read). `true` in the third place when this completed the job.
    fn deliver(
        &self,
        first: usize,
        count: usize,
        bytes: &[u8],
        from: Origin<'_>,
    ) -> (usize, bool, bool);

    /// Fails `items` with `err`; `true` when this completed the job.
    fn fail(&self, items: Range<usize>, err: &ProcessError) -> bool;

    /// Runs the callbacks of a completed job and wakes its waiters (called without the pool's
    /// lock held).
    fn finish(&self);
}

/// What a pool does with a job's chunks: the pool's side, seen from an [`IMap`].
pub(crate) trait Submit: Send + Sync {
    /// Queues `chunks` of `entry` for `sink`, and fails `failed` items (or everything, if the
    /// entry is an error or the pool takes no more work).
    fn submit(
        &self,
        entry: &Result<Entry, ProcessError>,
        sink: Arc<dyn Sink>,
        chunks: Chunks,
        failed: Vec<(usize, ProcessError)>,
    );
    /// How many workers the pool runs.
    fn processes(&self) -> usize;
    /// The longest message.
    fn max_message(&self) -> usize;
    /// Puts arguments too long for a message into a blob segment; `None` where messages have
    /// no limit.
    fn stash(&self, bytes: Vec<u8>) -> Option<Result<Blob, ProcessError>>;
    /// Files the workers' outcomes on this thread until `ready()` (or `deadline`), if no other
    /// thread is taking them: whether `ready()` held when it stopped, or `None` at once when
    /// another thread takes them. `Some(false)` after no outcome came for a while.
    fn help(&self, ready: &dyn Fn() -> bool, deadline: Option<Instant>) -> Option<bool>;
    /// Whether this is the pool's own thread (in a callback): it must not sleep until woken,
    /// since it is the one that would wake it.
    fn is_own_thread(&self) -> bool;
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One task's worth of items: `items` encoded arguments from item `first` on, behind room for
/// the task header; or, for one argument too long for a message, the name of the blob segment
/// that holds it.
#[derive(Debug)]
pub(crate) struct Chunk {
    pub(crate) first: usize,
    pub(crate) items: usize,
    pub(crate) msg: Vec<u8>,
    /// Boxed: a `Blob` holds a whole queue handle (over 500 bytes), and a chunk and the task it
    /// becomes are moved several times per `apply_async`.
    pub(crate) blob: Option<Box<Blob>>,
}

/// A job's chunks, the first kept apart so that a one-chunk job (every `apply`) allocates no
/// vector for it.
#[derive(Debug, Default)]
pub(crate) struct Chunks {
    first: Option<Chunk>,
    rest: Vec<Chunk>,
}

impl Chunks {
    fn push(&mut self, c: Chunk) {
        if self.first.is_none() {
            self.first = Some(c);
        } else {
            self.rest.push(c);
        }
    }

    /// The chunks in order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Chunk> {
        self.first.iter().chain(&self.rest)
    }

    /// The chunks in order, to change.
    pub(crate) fn iter_mut(&mut self) -> impl Iterator<Item = &mut Chunk> {
        self.first.iter_mut().chain(&mut self.rest)
    }
}

impl IntoIterator for Chunks {
    type Item = Chunk;
    type IntoIter = std::iter::Chain<std::option::IntoIter<Chunk>, std::vec::IntoIter<Chunk>>;

    fn into_iter(self) -> Self::IntoIter {
        self.first.into_iter().chain(self.rest)
    }
}

/// Reads up to `count` outcome records from `bytes`, handing each to `put` with its number:
/// how many it read, and whether the bytes were valid records to the end.
fn read_records<R: Payload>(
    mut bytes: &[u8],
    count: usize,
    from: Origin<'_>,
    mut put: impl FnMut(usize, Result<R, ProcessError>),
) -> (usize, bool) {
    let mut n = 0;
    while n < count && !bytes.is_empty() {
        match read_record::<R>(&mut bytes, from) {
            Some(r) => {
                put(n, r);
                n += 1;
            }
            None => return (n, false),
        }
    }
    (n, bytes.is_empty())
}

/// Cuts a stream of arguments into chunks of at most `chunksize` items whose message fits
/// `max_message` bytes. An item too long for any message goes alone, in a blob segment; one
/// that cannot be encoded (or put in a blob) is set aside as failed. A chunk never spans
/// either, so each chunk's items stay consecutive.
#[derive(Debug)]
pub(crate) struct Chunker {
    chunksize: usize,
    max_message: usize,
    next: usize,
    current: Option<Chunk>,
    pub(crate) chunks: Chunks,
    pub(crate) failed: Vec<(usize, ProcessError)>,
}

impl Chunker {
    pub(crate) fn new(chunksize: usize, max_message: usize) -> Chunker {
        Chunker {
            // A task message counts its items in 32 bits.
            chunksize: chunksize.clamp(1, u32::MAX as usize),
            max_message,
            next: 0,
            current: None,
            chunks: Chunks::default(),
            failed: Vec::new(),
        }
    }

    /// How many items it has taken.
    pub(crate) fn items(&self) -> usize {
        self.next
    }

    fn seal(&mut self) {
        if let Some(c) = self.current.take()
            && c.items > 0
        {
            self.chunks.push(c);
        }
    }

    pub(crate) fn push<A: Payload>(&mut self, arg: &A, pool: &dyn Submit) {
        let index = self.next;
        self.next += 1;
        let cur = self.current.get_or_insert_with(|| {
            // Room for the header and a small argument, so that one `apply` allocates once.
            let mut msg = Vec::with_capacity(wire::TASK_HEADER + 27);
            msg.resize(wire::TASK_HEADER, 0);
            Chunk {
                first: index,
                items: 0,
                msg,
                blob: None,
            }
        });
        let mark = cur.msg.len();
        if let Err(e) = arg.encode(&mut cur.msg) {
            cur.msg.truncate(mark);
            self.seal();
            self.failed.push((index, e));
            return;
        }
        if cur.msg.len() <= self.max_message {
            cur.items += 1;
        } else {
            let item = cur.msg.split_off(mark);
            self.seal();
            if wire::TASK_HEADER + item.len() <= self.max_message {
                let mut msg = Vec::with_capacity(wire::TASK_HEADER + item.len());
                msg.resize(wire::TASK_HEADER, 0);
                msg.extend_from_slice(&item);
                self.current = Some(Chunk {
                    first: index,
                    items: 1,
                    msg,
                    blob: None,
                });
            } else {
                let len = item.len();
                match pool.stash(item) {
                    Some(Ok(blob)) => {
                        let mut msg = vec![0; wire::TASK_HEADER];
                        let _ = blob.name.encode(&mut msg);
                        self.chunks.push(Chunk {
                            first: index,
                            items: 1,
                            msg,
                            blob: Some(Box::new(blob)),
                        });
                    }
                    Some(Err(e)) => self.failed.push((index, e)),
                    None => self.failed.push((
                        index,
                        ProcessError::TooLarge {
                            len,
                            max: self.max_message - wire::TASK_HEADER,
                        },
                    )),
                }
                return;
            }
        }
        if self
            .current
            .as_ref()
            .is_some_and(|c| c.items >= self.chunksize)
        {
            self.seal();
        }
    }

    /// Ends the last chunk.
    pub(crate) fn flush(&mut self) {
        self.seal();
    }
}

/// Python's default chunk size for `map`: about four chunks per worker.
pub(crate) fn default_chunksize(items: usize, processes: usize) -> usize {
    items.div_ceil(processes.max(1) * 4).max(1)
}

/// The result of an `apply_async` or `map_async` that may not be ready yet (Python's
/// `AsyncResult`).
///
/// ```
/// use mpshm::process::Pool;
///
/// fn add_one(x: i32) -> i32 {
///     x + 1
/// }
///
/// let pool = Pool::new(1)?;
/// let r = pool.apply_async(add_one, 41);
/// r.wait();
/// assert!(r.ready());
/// assert_eq!(r.successful(), Some(true));
/// assert_eq!(r.get()?, 42);
/// # Ok::<(), mpshm::ProcessError>(())
/// ```
pub struct AsyncResult<T> {
    job: Arc<dyn Outcome<T>>,
    /// The pool that runs the job, whose outcomes a waiter files itself (weak: a result kept
    /// after its pool was dropped must not keep the pool's segments).
    pool: Weak<dyn Submit>,
}

impl<T: Send + 'static> AsyncResult<T> {
    pub(crate) fn new<G: Gather<Out = T>>(
        job: Arc<Collect<G>>,
        pool: Weak<dyn Submit>,
    ) -> AsyncResult<T> {
        AsyncResult { job, pool }
    }

    fn wait_until(&self, deadline: Option<Instant>) -> bool {
        // An outcome filed already needs no look at the pool (upgrading the pool's handle and
        // asking whose thread this is cost more than the rest of a `get`).
        if self.job.ready() {
            return true;
        }
        self.job
            .wait_until(deadline, self.pool.upgrade().as_deref())
    }

    /// Waits for the outcome and takes it. It is handed out once: a second `get` returns
    /// [`ProcessError::ResultTaken`].
    ///
    /// # Errors
    ///
    /// The task's error: [`ProcessError::Panicked`], [`ProcessError::WorkerDied`],
    /// [`ProcessError::TaskTimeout`], [`ProcessError::Terminated`]... (for a `map`, the error
    /// of its first failed item).
    pub fn get(&self) -> Result<T, ProcessError> {
        self.wait_until(None);
        self.job.take()
    }

    /// [`get`](Self::get), waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`ProcessError::Timeout`] if the outcome is not ready by then (it can be taken later);
    /// otherwise as [`get`](Self::get).
    pub fn get_timeout(&self, timeout: Duration) -> Result<T, ProcessError> {
        if self.wait_until(Instant::now().checked_add(timeout)) {
            self.job.take()
        } else {
            Err(ProcessError::Timeout)
        }
    }

    /// Waits until the outcome is ready.
    pub fn wait(&self) {
        self.wait_until(None);
    }

    /// Waits at most `timeout` for the outcome; whether it is ready.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        self.wait_until(Instant::now().checked_add(timeout))
    }

    /// Whether the outcome is ready.
    pub fn ready(&self) -> bool {
        self.job.ready()
    }

    /// Whether the work succeeded; `None` while it is not ready (where Python raises
    /// `ValueError`). It still answers after the outcome was taken.
    pub fn successful(&self) -> Option<bool> {
        self.job.successful()
    }

    /// Calls `f` with the result when the work succeeds (Python's `callback`), before the
    /// result is [`ready`](Self::ready): from the pool's own thread, or from a thread waiting
    /// for another result of the pool (a waiter files the outcomes itself while it waits), or
    /// at once from this thread if the result is ready already. Keep it short: the thread that
    /// runs it handles no other result meanwhile. If it panics (other than at once on this
    /// thread), the panic is reported by the panic hook and ends there: the result is still
    /// ready and the pool carries on.
    pub fn callback(self, f: impl FnOnce(&T) + Send + 'static) -> Self {
        self.job.on_ok(Box::new(f));
        self
    }

    /// Calls `f` with the error when the work fails (Python's `error_callback`), as
    /// [`callback`](Self::callback) does.
    pub fn error_callback(self, f: impl FnOnce(&ProcessError) + Send + 'static) -> Self {
        self.job.on_err(Box::new(f));
        self
    }
}

impl<T> fmt::Debug for AsyncResult<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncResult")
            .field("ready", &self.job.ready())
            .finish()
    }
}

/// A job whose outcomes are read one by one, in order or as they come (`imap`).
pub(crate) struct Stream<R> {
    st: Mutex<StreamState<R>>,
    cond: Condvar,
}

struct StreamState<R> {
    by_index: BTreeMap<usize, Result<R, ProcessError>>,
    arrived: VecDeque<Result<R, ProcessError>>,
    ordered: bool,
    waiters: usize,
}

/// In which order an [`IMap`] yields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Order {
    /// The arguments' order (`imap`).
    Given,
    /// As the results come (`imap_unordered`).
    Finished,
}

impl<R> Stream<R> {
    fn new(order: Order) -> Stream<R> {
        let ordered = order == Order::Given;
        Stream {
            st: Mutex::new(StreamState {
                by_index: BTreeMap::new(),
                arrived: VecDeque::new(),
                ordered,
                waiters: 0,
            }),
            cond: Condvar::new(),
        }
    }

    fn push(&self, st: &mut StreamState<R>, index: usize, r: Result<R, ProcessError>) {
        if st.ordered {
            st.by_index.insert(index, r);
        } else {
            st.arrived.push_back(r);
        }
    }

    fn wake(&self, st: &StreamState<R>) {
        if st.waiters > 0 {
            self.cond.notify_all();
        }
    }
}

impl<R: Payload + Send> Sink for Stream<R> {
    fn deliver(
        &self,
        first: usize,
        count: usize,
        bytes: &[u8],
        from: Origin<'_>,
    ) -> (usize, bool, bool) {
        let mut st = lock(&self.st);
        let (n, valid) = read_records(bytes, count, from, |i, r| {
            self.push(&mut st, first + i, r);
        });
        self.wake(&st);
        (n, valid, false)
    }

    fn fail(&self, items: Range<usize>, err: &ProcessError) -> bool {
        let mut st = lock(&self.st);
        for i in items {
            self.push(&mut st, i, Err(err.duplicate()));
        }
        self.wake(&st);
        false
    }

    fn finish(&self) {}
}

/// The iterator of `imap` and `imap_unordered`: it hands the arguments to the pool a few
/// chunks ahead of what it has yielded, and yields each item's outcome, in the arguments' order
/// (`imap`) or as they finish (`imap_unordered`).
pub struct IMap<I, R> {
    items: Option<I>,
    pool: Arc<dyn Submit>,
    entry: Result<Entry, ProcessError>,
    chunksize: usize,
    job: Arc<Stream<R>>,
    submitted: usize,
    yielded: usize,
}

impl<I, A, R> IMap<I, R>
where
    I: Iterator<Item = A>,
    A: Payload,
    R: Payload + Send + 'static,
{
    pub(crate) fn new(
        pool: Arc<dyn Submit>,
        entry: Result<Entry, ProcessError>,
        items: I,
        chunksize: usize,
        order: Order,
    ) -> IMap<I, R> {
        IMap {
            items: Some(items),
            pool,
            entry,
            chunksize: chunksize.max(1),
            job: Arc::new(Stream::new(order)),
            submitted: 0,
            yielded: 0,
        }
    }

    /// Hands the pool arguments until it holds about two chunks per worker.
    fn top_up(&mut self) {
        let window = self.chunksize * 2 * self.pool.processes().max(1);
        while self.submitted - self.yielded < window {
            let Some(items) = &mut self.items else { return };
            let mut chunker = Chunker::new(self.chunksize, self.pool.max_message());
            for a in items.by_ref().take(self.chunksize) {
                chunker.push(&a, &*self.pool);
            }
            chunker.flush();
            let taken = chunker.items();
            if taken < self.chunksize {
                self.items = None;
            }
            if taken == 0 {
                return;
            }
            let offset = self.submitted;
            let mut chunks = chunker.chunks;
            for c in chunks.iter_mut() {
                c.first += offset;
            }
            let failed = chunker
                .failed
                .into_iter()
                .map(|(i, e)| (i + offset, e))
                .collect();
            self.submitted += taken;
            let sink: Arc<dyn Sink> = self.job.clone();
            self.pool.submit(&self.entry, sink, chunks, failed);
        }
    }
}

impl<I, A, R> Iterator for IMap<I, R>
where
    I: Iterator<Item = A>,
    A: Payload,
    R: Payload + Send + 'static,
{
    type Item = Result<R, ProcessError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            self.top_up();
            let mut st = lock(&self.job.st);
            let next = if st.ordered {
                st.by_index.remove(&self.yielded)
            } else {
                st.arrived.pop_front()
            };
            if let Some(r) = next {
                self.yielded += 1;
                return Some(r);
            }
            if self.items.is_none() && self.yielded == self.submitted {
                return None;
            }
            st.waiters += 1;
            let mut st = self
                .job
                .cond
                .wait(st)
                .unwrap_or_else(PoisonError::into_inner);
            st.waiters -= 1;
        }
    }
}

impl<I, R> fmt::Debug for IMap<I, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IMap")
            .field("chunksize", &self.chunksize)
            .field("submitted", &self.submitted)
            .field("yielded", &self.yielded)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pool that cannot stash (as a thread pool, but with a message limit).
    struct NoStash;

    impl Submit for NoStash {
        fn submit(
            &self,
            _: &Result<Entry, ProcessError>,
            _: Arc<dyn Sink>,
            _: Chunks,
            _: Vec<(usize, ProcessError)>,
        ) {
        }
        fn processes(&self) -> usize {
            1
        }
        fn max_message(&self) -> usize {
            0
        }
        fn stash(&self, _: Vec<u8>) -> Option<Result<Blob, ProcessError>> {
            None
        }
        fn help(&self, _: &dyn Fn() -> bool, _: Option<Instant>) -> Option<bool> {
            None
        }
        fn is_own_thread(&self) -> bool {
            false
        }
    }

    #[test]
    fn chunks_keep_items_consecutive_and_small() {
        let mut c = Chunker::new(3, wire::TASK_HEADER + 8 * 2);
        for i in 0..7u64 {
            c.push(&i, &NoStash);
        }
        c.push(&"x".repeat(100), &NoStash);
        c.push(&9u64, &NoStash);
        c.flush();
        let spans: Vec<(usize, usize)> = c.chunks.iter().map(|c| (c.first, c.items)).collect();
        assert_eq!(spans, [(0, 2), (2, 2), (4, 2), (6, 1), (8, 1)]);
        assert_eq!(c.failed.len(), 1);
        assert_eq!(c.failed[0].0, 7);
        assert!(matches!(c.failed[0].1, ProcessError::TooLarge { .. }));
    }

    #[test]
    fn default_chunksize_is_pythons() {
        assert_eq!(default_chunksize(200_000, 2), 25_000);
        assert_eq!(default_chunksize(10, 4), 1);
        assert_eq!(default_chunksize(0, 4), 1);
        assert_eq!(default_chunksize(17, 1), 5);
    }
}
