//! [`Pool`] and [`ThreadPool`]: Python's `multiprocessing.Pool` and `multiprocessing.dummy.Pool`
//! with one API, over the engine in `engine.rs`.

use std::fmt;
use std::marker::PhantomData;
use std::ops::Deref;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::error::ProcessError;
use crate::process::collect::{All, Collect, One};
use crate::process::engine::{Engine, Settings};
use crate::process::entry::Entry;
use crate::process::jobs::{AsyncResult, Chunker, IMap, Order, Sink, Submit, default_chunksize};
use crate::process::payload::Payload;
use crate::process::workers::{Processes, Threads, Workers};

/// The longest message between a pool and a worker by default: 64 KiB. A chunk of arguments,
/// or of results, is cut to fit; a single argument or result longer than this goes through a
/// shared-memory segment of its own, made for it and removed once it is read.
pub const DEFAULT_MAX_MESSAGE: usize = 64 << 10;

/// A pool of worker processes (Python's `multiprocessing.Pool`), or of threads
/// ([`ThreadPool`], with the same methods).
///
/// ```
/// use mpshm::process::Pool;
///
/// fn square(x: u64) -> u64 {
///     x * x
/// }
///
/// let pool = Pool::new(2)?;
/// assert_eq!(pool.map(square, 0..5)?, [0, 1, 4, 9, 16]);
/// assert_eq!(pool.apply(square, 9)?, 81);
/// let later = pool.apply_async(square, 3);
/// assert_eq!(later.get()?, 9);
/// pool.close();
/// pool.join()?;
/// # Ok::<(), mpshm::ProcessError>(())
/// ```
///
/// The functions are plain `fn`s, their arguments and results [`Payload`]s. Work goes to the
/// workers through shared-memory queues, one per worker, and comes back through one more.
///
/// A worker that dies while it runs a task (killed, out of memory, aborted) fails that task
/// alone, with [`ProcessError::WorkerDied`]; tasks it had not started go to the other workers,
/// a new worker takes its place and the pool carries on. A task that panics fails with
/// [`ProcessError::Panicked`] and its worker carries on. Dropping the pool terminates it.
pub struct Pool<W: Workers = Processes> {
    engine: Arc<Engine<W>>,
    manager: Mutex<Option<JoinHandle<()>>>,
}

/// A pool of threads with the same API as [`Pool`] (Python's `multiprocessing.dummy.Pool`), for
/// work that waits on I/O: switching between the two is one constructor.
///
/// ```
/// use mpshm::process::ThreadPool;
///
/// fn shout(s: String) -> String {
///     s.to_uppercase()
/// }
///
/// let pool = ThreadPool::new(4)?;
/// assert_eq!(pool.map(shout, ["a".to_owned(), "b".to_owned()])?, ["A", "B"]);
/// # Ok::<(), mpshm::ProcessError>(())
/// ```
///
/// Arguments and results are encoded as for a process pool, so code moves between the two
/// unchanged. A thread cannot be killed: a task past the [task
/// timeout](PoolBuilder::task_timeout) fails and its thread is replaced, but the old thread
/// runs on until the task returns (its result is dropped).
pub struct ThreadPool(Pool<Threads>);

impl Deref for ThreadPool {
    type Target = Pool<Threads>;

    fn deref(&self) -> &Pool<Threads> {
        &self.0
    }
}

/// Settings for a [`Pool`] or [`ThreadPool`] (Python's `Pool(processes, initializer,
/// initargs, maxtasksperchild)`).
///
/// ```
/// use mpshm::process::Pool;
/// use std::time::Duration;
///
/// fn setup(greeting: String) {
///     assert_eq!(greeting, "hello");
/// }
///
/// let pool = Pool::builder()
///     .processes(2)
///     .initializer(setup, "hello".to_owned())
///     .max_tasks_per_child(100)
///     .task_timeout(Duration::from_secs(60))
///     .build()?;
/// # Ok::<(), mpshm::ProcessError>(())
/// ```
pub struct PoolBuilder<W> {
    processes: Option<usize>,
    initializer: Option<Result<(Entry, Vec<u8>), ProcessError>>,
    max_tasks: u64,
    task_timeout: Option<Duration>,
    max_message: usize,
    _w: PhantomData<fn() -> W>,
}

impl<W> PoolBuilder<W> {
    fn new() -> PoolBuilder<W> {
        PoolBuilder::sized(None)
    }

    fn sized(processes: Option<usize>) -> PoolBuilder<W> {
        PoolBuilder {
            processes,
            initializer: None,
            max_tasks: 0,
            task_timeout: None,
            max_message: DEFAULT_MAX_MESSAGE,
            _w: PhantomData,
        }
    }

    /// How many workers (default: as many as this process can run at once,
    /// `std::thread::available_parallelism`).
    pub fn processes(&mut self, n: usize) -> &mut Self {
        self.processes = Some(n);
        self
    }

    /// Runs `f(arg)` in each worker as it starts. If it panics, the pool gives up: its work
    /// fails with [`ProcessError::InitializerFailed`].
    pub fn initializer<A: Payload>(&mut self, f: fn(A), arg: A) -> &mut Self {
        let mut bytes = Vec::new();
        self.initializer = Some(
            arg.encode(&mut bytes)
                .and_then(|()| Ok((Entry::of(f)?, bytes))),
        );
        self
    }

    /// Replaces each worker after it has run `n` tasks (a chunk of a `map` is one task);
    /// 0 (the default) never does.
    pub fn max_tasks_per_child(&mut self, n: u64) -> &mut Self {
        self.max_tasks = n;
        self
    }

    /// Fails a task that runs longer than `timeout` with [`ProcessError::TaskTimeout`], and
    /// kills and replaces its worker. The time is measured from when the pool saw the worker
    /// free for it, so a task may run a little longer before it is stopped, never shorter.
    pub fn task_timeout(&mut self, timeout: Duration) -> &mut Self {
        self.task_timeout = Some(timeout);
        self
    }

    /// The longest message between the pool and a worker (default [`DEFAULT_MAX_MESSAGE`]).
    /// Every worker's queue holds 32 messages of this size in shared memory; a longer
    /// argument or result travels in a segment of its own, which costs two segment calls.
    /// A thread pool has no limit.
    pub fn max_message(&mut self, bytes: usize) -> &mut Self {
        self.max_message = bytes;
        self
    }

    fn build_pool(&self) -> Result<Pool<W>, ProcessError>
    where
        W: Workers,
    {
        crate::process::child::refuse_if_not_intercepted()?;
        let processes = match self.processes {
            Some(0) => {
                return Err(ProcessError::Io(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "a pool needs at least one worker",
                )));
            }
            Some(n) => n,
            None => std::thread::available_parallelism().map_or(1, |n| n.get()),
        };
        let initializer = match &self.initializer {
            None => None,
            Some(Ok(init)) => Some(init.clone()),
            Some(Err(e)) => return Err(e.duplicate()),
        };
        let smallest = crate::process::workers::wire::TASK_HEADER + 64;
        let settings = Settings {
            processes,
            max_tasks: self.max_tasks,
            task_timeout: self.task_timeout,
            max_message: self.max_message.clamp(smallest, 64 << 20),
            initializer,
        };
        let engine = Arc::new(Engine::<W>::new(settings)?);
        let (tx, rx) = std::sync::mpsc::channel();
        let manager = Arc::clone(&engine);
        // The manager thread starts the workers, so that a worker's parent-death signal is
        // tied to a thread that lives as long as the pool.
        let handle = std::thread::Builder::new()
            .name("mpshm-pool".to_owned())
            .spawn(move || {
                let started = manager.start_workers();
                let ok = started.is_ok();
                let _ = tx.send(started);
                if ok {
                    manager.manage();
                }
            })?;
        match rx.recv() {
            Ok(Ok(())) => Ok(Pool {
                engine,
                manager: Mutex::new(Some(handle)),
            }),
            Ok(Err(e)) => {
                let _ = handle.join();
                Err(e)
            }
            Err(_) => {
                let _ = handle.join();
                Err(ProcessError::Io(std::io::Error::other(
                    "the pool's manager thread ended before it started the workers",
                )))
            }
        }
    }
}

impl PoolBuilder<Processes> {
    /// Starts the pool.
    ///
    /// # Errors
    ///
    /// [`ProcessError::Segment`] or [`ProcessError::Io`] when a queue or a worker cannot be
    /// made; [`ProcessError::NotInExecutable`] or [`ProcessError::Encode`] for the initializer.
    pub fn build(&self) -> Result<Pool, ProcessError> {
        self.build_pool()
    }
}

impl PoolBuilder<Threads> {
    /// Starts the pool.
    ///
    /// # Errors
    ///
    /// As [`PoolBuilder::<Processes>::build`](PoolBuilder::build).
    pub fn build(&self) -> Result<ThreadPool, ProcessError> {
        self.build_pool().map(ThreadPool)
    }
}

impl Pool<Processes> {
    /// A pool of `processes` worker processes; `None` for as many as this process can run at
    /// once.
    ///
    /// # Errors
    ///
    /// As [`PoolBuilder::build`].
    pub fn new(processes: impl Into<Option<usize>>) -> Result<Pool, ProcessError> {
        PoolBuilder::<Processes>::sized(processes.into()).build()
    }

    /// Settings for a pool.
    pub fn builder() -> PoolBuilder<Processes> {
        PoolBuilder::new()
    }
}

impl ThreadPool {
    /// A pool of `threads` worker threads; `None` for as many as this process can run at once.
    ///
    /// # Errors
    ///
    /// As [`PoolBuilder::build`].
    pub fn new(threads: impl Into<Option<usize>>) -> Result<ThreadPool, ProcessError> {
        PoolBuilder::<Threads>::sized(threads.into()).build()
    }

    /// Settings for a thread pool.
    pub fn builder() -> PoolBuilder<Threads> {
        PoolBuilder::new()
    }
}

impl<W: Workers> Pool<W> {
    fn submitter(&self) -> Arc<dyn Submit> {
        self.engine.clone()
    }

    fn helper(&self) -> Weak<dyn Submit> {
        let weak: Weak<Engine<W>> = Arc::downgrade(&self.engine);
        weak
    }

    /// Queues a job of the items `items` of `entry`, cut into chunks of `chunksize`; the
    /// result of each goes to `sink`.
    fn queue<A: Payload>(
        &self,
        entry: Result<Entry, ProcessError>,
        items: impl IntoIterator<Item = A>,
        chunksize: usize,
        sink: Arc<dyn Sink>,
    ) {
        let mut chunker = Chunker::new(chunksize, self.engine.max_message());
        for a in items {
            chunker.push(&a, &*self.engine);
        }
        chunker.flush();
        self.engine
            .submit(&entry, sink, chunker.chunks, chunker.failed);
    }

    /// Calls `f(arg)` in a worker and waits for the result (Python's `apply`).
    ///
    /// # Errors
    ///
    /// As [`AsyncResult::get`].
    pub fn apply<A: Payload, R: Payload + Send + 'static>(
        &self,
        f: fn(A) -> R,
        arg: A,
    ) -> Result<R, ProcessError> {
        self.apply_async(f, arg).get()
    }

    /// Calls `f(arg)` in a worker; the result comes later (Python's `apply_async`).
    pub fn apply_async<A: Payload, R: Payload + Send + 'static>(
        &self,
        f: fn(A) -> R,
        arg: A,
    ) -> AsyncResult<R> {
        let job = Collect::<One<R>>::new(1);
        self.queue(Entry::of(f), [arg], 1, job.clone());
        AsyncResult::new(job, self.helper())
    }

    /// Calls `f` on every item, in the workers, and returns the results in order (Python's
    /// `map`). The items are sent in chunks of about a quarter of an equal share per worker,
    /// as Python does.
    ///
    /// # Errors
    ///
    /// The error of the first item that failed.
    pub fn map<A: Payload, R: Payload + Send + 'static>(
        &self,
        f: fn(A) -> R,
        items: impl IntoIterator<Item = A>,
    ) -> Result<Vec<R>, ProcessError> {
        self.map_async(f, items).get()
    }

    /// [`map`](Self::map) with `chunksize` items per task.
    ///
    /// # Errors
    ///
    /// As [`map`](Self::map).
    pub fn map_chunked<A: Payload, R: Payload + Send + 'static>(
        &self,
        f: fn(A) -> R,
        items: impl IntoIterator<Item = A>,
        chunksize: usize,
    ) -> Result<Vec<R>, ProcessError> {
        let items: Vec<A> = items.into_iter().collect();
        let job = Collect::<All<R>>::new(items.len());
        self.queue(Entry::of(f), items, chunksize, job.clone());
        AsyncResult::new(job, self.helper()).get()
    }

    /// [`map`](Self::map), with the results coming later (Python's `map_async`).
    pub fn map_async<A: Payload, R: Payload + Send + 'static>(
        &self,
        f: fn(A) -> R,
        items: impl IntoIterator<Item = A>,
    ) -> AsyncResult<Vec<R>> {
        let items: Vec<A> = items.into_iter().collect();
        let chunksize = default_chunksize(items.len(), self.engine.processes());
        let job = Collect::<All<R>>::new(items.len());
        self.queue(Entry::of(f), items, chunksize, job.clone());
        AsyncResult::new(job, self.helper())
    }

    /// Calls the two-argument `f` on every pair (Python's `starmap`); for more arguments, take
    /// a tuple in [`map`](Self::map).
    ///
    /// # Errors
    ///
    /// As [`map`](Self::map).
    pub fn starmap<A: Payload, B: Payload, R: Payload + Send + 'static>(
        &self,
        f: fn(A, B) -> R,
        items: impl IntoIterator<Item = (A, B)>,
    ) -> Result<Vec<R>, ProcessError> {
        self.starmap_async(f, items).get()
    }

    /// [`starmap`](Self::starmap), with the results coming later (Python's `starmap_async`).
    pub fn starmap_async<A: Payload, B: Payload, R: Payload + Send + 'static>(
        &self,
        f: fn(A, B) -> R,
        items: impl IntoIterator<Item = (A, B)>,
    ) -> AsyncResult<Vec<R>> {
        let items: Vec<(A, B)> = items.into_iter().collect();
        let chunksize = default_chunksize(items.len(), self.engine.processes());
        let job = Collect::<All<R>>::new(items.len());
        self.queue(Entry::of_pair(f), items, chunksize, job.clone());
        AsyncResult::new(job, self.helper())
    }

    /// Calls `f` on every item and yields the results in order as they are ready (Python's
    /// `imap`). The items are taken from `items` as the work goes on, a few tasks ahead.
    ///
    /// Unlike Python's, which reads every item into the pool's queue at once, an item is sent
    /// only as the iteration reaches it: items not yet sent when the pool is closed or
    /// terminated come back as [`ProcessError::Closed`]. Iterate (or `collect`) before
    /// [`close`](Self::close), or use [`map`](Self::map), which sends everything at once.
    pub fn imap<A: Payload, R: Payload + Send + 'static, I: IntoIterator<Item = A>>(
        &self,
        f: fn(A) -> R,
        items: I,
    ) -> IMap<I::IntoIter, R> {
        self.imap_chunked(f, items, 1)
    }

    /// [`imap`](Self::imap) with `chunksize` items per task.
    pub fn imap_chunked<A: Payload, R: Payload + Send + 'static, I: IntoIterator<Item = A>>(
        &self,
        f: fn(A) -> R,
        items: I,
        chunksize: usize,
    ) -> IMap<I::IntoIter, R> {
        IMap::new(
            self.submitter(),
            Entry::of(f),
            items.into_iter(),
            chunksize,
            Order::Given,
        )
    }

    /// [`imap`](Self::imap), yielding each result as soon as it is ready, in any order
    /// (Python's `imap_unordered`).
    pub fn imap_unordered<A: Payload, R: Payload + Send + 'static, I: IntoIterator<Item = A>>(
        &self,
        f: fn(A) -> R,
        items: I,
    ) -> IMap<I::IntoIter, R> {
        self.imap_unordered_chunked(f, items, 1)
    }

    /// [`imap_unordered`](Self::imap_unordered) with `chunksize` items per task.
    pub fn imap_unordered_chunked<
        A: Payload,
        R: Payload + Send + 'static,
        I: IntoIterator<Item = A>,
    >(
        &self,
        f: fn(A) -> R,
        items: I,
        chunksize: usize,
    ) -> IMap<I::IntoIter, R> {
        IMap::new(
            self.submitter(),
            Entry::of(f),
            items.into_iter(),
            chunksize,
            Order::Finished,
        )
    }

    /// Takes no more work; the workers exit once the work queued is done (Python's `close`).
    pub fn close(&self) {
        self.engine.close();
    }

    /// Kills the workers now; work not done fails with [`ProcessError::Terminated`] (Python's
    /// `terminate`).
    pub fn terminate(&self) {
        self.engine.terminate();
        self.wait_manager();
    }

    /// Waits for the workers to exit, after [`close`](Self::close) or
    /// [`terminate`](Self::terminate) (Python's `join`).
    ///
    /// # Errors
    ///
    /// [`ProcessError::PoolRunning`] if neither was called.
    pub fn join(&self) -> Result<(), ProcessError> {
        if !self.engine.is_stopping() {
            return Err(ProcessError::PoolRunning);
        }
        self.wait_manager();
        Ok(())
    }

    fn wait_manager(&self) {
        let handle = self
            .manager
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(h) = handle
            && h.join().is_err()
        {
            self.engine.kill_all();
        }
    }

    /// How many workers the pool runs.
    pub fn processes(&self) -> usize {
        self.engine.processes()
    }

    /// The pids of the workers running now (the process's own pid for each thread of a
    /// [`ThreadPool`]).
    pub fn pids(&self) -> Vec<u32> {
        self.engine.pids()
    }
}

impl<W: Workers> Drop for Pool<W> {
    fn drop(&mut self) {
        self.terminate();
    }
}

impl<W: Workers> fmt::Debug for Pool<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("processes", &self.engine.processes())
            .field("kind", &std::any::type_name::<W>())
            .finish()
    }
}

impl fmt::Debug for ThreadPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ThreadPool").field(&self.0).finish()
    }
}

impl<W> fmt::Debug for PoolBuilder<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PoolBuilder")
            .field("processes", &self.processes)
            .field("max_tasks_per_child", &self.max_tasks)
            .field("task_timeout", &self.task_timeout)
            .field("max_message", &self.max_message)
            .finish()
    }
}
