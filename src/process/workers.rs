//! A pool's workers, and what they say to it: the worker loop, the messages, and the two kinds
//! of worker, [`Processes`] (child processes fed through shared-memory channels) and
//! [`Threads`] (threads fed through in-process queues). Both run the same loop on the same
//! messages, so that a [`Pool`](crate::process::Pool) and a
//! [`ThreadPool`](crate::process::ThreadPool) behave alike.
//!
//! Each worker has a task channel of its own, fed only by the pool, which therefore knows at
//! every moment which tasks each worker holds and in which order it will run them; all workers
//! put their results into one result channel. That is what lets a pool fail exactly the task
//! a dead worker was running (see `engine.rs`).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError, mpsc};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::error::{Exit, ProcessError};
use crate::process::channel::{self, Blob, Channel};
use crate::process::entry::{Entry, Origin, read_record, status};
use crate::process::payload::Payload;
use crate::process::process::Process;

/// The messages between a pool and its workers. Every message starts with its kind.
pub(crate) mod wire {
    /// Pool to worker: `[TASK][id u64][count u32][run u64][func u64][seal u64]`, then
    /// `count` arguments; the seal covers the kind, the entry, the id and the count.
    pub(crate) const TASK: u8 = 0x71;
    pub(crate) const TASK_HEADER: usize = 37;
    /// As [`TASK`], but the arguments are in a blob segment whose name follows the header.
    pub(crate) const TASK_BLOB: u8 = 0x75;
    /// Worker to pool: `[PART][id u64][first u32][last u8]`, then outcome records of the
    /// task's items from `first` on; `last` is 1 on the task's final part.
    pub(crate) const PART: u8 = 0x72;
    pub(crate) const PART_HEADER: usize = 14;
    /// Worker to pool: `[READY][slot u32]`: the initializer ran, tasks will be served.
    pub(crate) const READY: u8 = 0x73;
    /// Worker to pool: `[INIT_FAILED][slot u32][message]`: the initializer panicked.
    pub(crate) const INIT_FAILED: u8 = 0x74;

    pub(crate) fn u64_at(msg: &[u8], at: usize) -> Option<u64> {
        Some(u64::from_le_bytes(msg.get(at..at + 8)?.try_into().ok()?))
    }

    pub(crate) fn u32_at(msg: &[u8], at: usize) -> Option<u32> {
        Some(u32::from_le_bytes(msg.get(at..at + 4)?.try_into().ok()?))
    }

    /// Writes a task header of `kind` into the first [`TASK_HEADER`] bytes of `msg`.
    pub(crate) fn write_task_header(
        msg: &mut [u8],
        kind: u8,
        (id, count): (u64, u32),
        entry: super::Entry,
        key: [u64; 2],
    ) {
        let (run, func) = entry.parts();
        let seal = entry.seal(key, [id, u64::from(count) | u64::from(kind) << 32]);
        msg[0] = kind;
        msg[1..9].copy_from_slice(&id.to_le_bytes());
        msg[9..13].copy_from_slice(&count.to_le_bytes());
        for (k, w) in [run, func, seal].into_iter().enumerate() {
            msg[13 + 8 * k..21 + 8 * k].copy_from_slice(&w.to_le_bytes());
        }
    }

    /// Reads a task header: `(kind, id, count, entry)`, if the seal matches under `key`.
    pub(crate) fn read_task_header(
        msg: &[u8],
        key: [u64; 2],
    ) -> Option<(u8, u64, u32, super::Entry)> {
        let kind = *msg.first().filter(|&&k| k == TASK || k == TASK_BLOB)?;
        let (id, count) = (u64_at(msg, 1)?, u32_at(msg, 9)?);
        let (run, func, seal) = (u64_at(msg, 13)?, u64_at(msg, 21)?, u64_at(msg, 29)?);
        let extra = [id, u64::from(count) | u64::from(kind) << 32];
        let entry = super::Entry::unseal((run, func), extra, seal, key)?;
        Some((kind, id, count, entry))
    }

    pub(crate) fn part_header(id: u64, first: u32) -> Vec<u8> {
        let mut v = Vec::with_capacity(256);
        v.push(PART);
        v.extend_from_slice(&id.to_le_bytes());
        v.extend_from_slice(&first.to_le_bytes());
        v.push(0);
        v
    }
}

/// The environment variable that carries a process pool's key to its workers.
const KEY_ENV: &str = "MPSHM_POOL_KEY";

/// How many tasks a worker's channel holds: the most the pool hands a worker ahead of time.
pub(crate) const DEPTH: usize = 32;

/// What a worker is told when it starts.
#[derive(Debug, Clone, Default)]
pub struct Setup {
    /// Its slot in the pool.
    pub(crate) slot: u32,
    /// Its task channel and the pool's result channel (processes only).
    pub(crate) tasks: String,
    pub(crate) results: String,
    /// How many tasks it runs before it exits (0: no limit).
    pub(crate) max_tasks: u64,
    /// The longest message it may send.
    pub(crate) max_message: u64,
    /// The initializer as `(run, func, seal)` and its encoded argument.
    pub(crate) init: Option<((u64, u64, u64), Vec<u8>)>,
}

impl Payload for Setup {
    fn encode(&self, out: &mut Vec<u8>) -> Result<(), ProcessError> {
        (
            self.slot,
            self.tasks.clone(),
            self.results.clone(),
            self.max_tasks,
            self.max_message,
        )
            .encode(out)?;
        self.init.clone().encode(out)
    }

    fn decode(input: &mut &[u8]) -> Option<Self> {
        let (slot, tasks, results, max_tasks, max_message) = Payload::decode(input)?;
        Some(Setup {
            slot,
            tasks,
            results,
            max_tasks,
            max_message,
            init: Payload::decode(input)?,
        })
    }
}

/// Where a worker takes its tasks and puts its results.
trait Transport {
    /// The next task; `None` once the pool closed the worker's channel.
    fn get(&self) -> Option<Vec<u8>>;
    /// Puts a message to the pool; `false` if it cannot.
    fn put(&self, msg: Vec<u8>) -> bool;
    /// Hands `record`, too long for a message, to the pool in a blob segment; its name.
    fn stash(&self, record: Vec<u8>) -> Option<String>;
    /// Takes the arguments of a task out of the blob segment `name`.
    fn take(&self, name: &str) -> Option<Vec<u8>>;
}

/// The worker loop: runs the initializer, says it is ready, then serves tasks until its
/// channel is closed or it has run `max_tasks`.
fn serve(t: &impl Transport, setup: &Setup, key: [u64; 2]) {
    let pid = std::process::id();
    if let Some(((run, func, seal), arg)) = &setup.init {
        let failure = match Entry::unseal((*run, *func), [0, 0], *seal, key) {
            None => Some("the initializer's entry is damaged".to_owned()),
            Some(entry) => {
                let mut out = Vec::new();
                entry.call(&mut arg.as_slice(), &mut out);
                let from = Origin {
                    pid,
                    max_message: 0,
                    blobs: None,
                };
                match read_record::<()>(&mut out.as_slice(), from) {
                    Some(Ok(())) => None,
                    Some(Err(ProcessError::Panicked { message, .. })) => Some(message),
                    Some(Err(e)) => Some(e.to_string()),
                    None => Some("the initializer's outcome is damaged".to_owned()),
                }
            }
        };
        if let Some(message) = failure {
            let mut msg = vec![wire::INIT_FAILED];
            msg.extend_from_slice(&setup.slot.to_le_bytes());
            let _ = message.encode(&mut msg);
            t.put(msg);
            return;
        }
    }
    let mut ready = vec![wire::READY];
    ready.extend_from_slice(&setup.slot.to_le_bytes());
    if !t.put(ready) {
        return;
    }
    let max_message = usize::try_from(setup.max_message).unwrap_or(usize::MAX);
    let mut done = 0;
    while let Some(task) = t.get() {
        if !run_task(t, &task, key, max_message) {
            return;
        }
        done += 1;
        if setup.max_tasks != 0 && done >= setup.max_tasks {
            return;
        }
    }
}

/// Runs one task message and puts its outcomes, in parts that each fit in a message; `false`
/// if the pool can no longer be told.
fn run_task(t: &impl Transport, task: &[u8], key: [u64; 2], max_message: usize) -> bool {
    let Some(id) = wire::u64_at(task, 1) else {
        return true;
    };
    let mut out = wire::part_header(id, 0);
    // A task that does not carry the pool's seal gets an empty last part: the pool then fails
    // its items as undecodable, and nothing is called.
    if let Some((kind, _, count, entry)) = wire::read_task_header(task, key) {
        let mut input = &task[wire::TASK_HEADER..];
        let blob = if kind == wire::TASK_BLOB {
            String::decode(&mut input).and_then(|name| t.take(&name))
        } else {
            None
        };
        if let Some(bytes) = &blob {
            input = bytes;
        }
        // A blob that cannot be taken leaves the task's items unanswered: they fail.
        let runnable = kind == wire::TASK || blob.is_some();
        if runnable && !run_items(t, &mut out, (id, count), entry, input, max_message) {
            return false;
        }
    }
    out[wire::PART_HEADER - 1] = 1;
    t.put(out)
}

/// Runs the `count` items of task `id` read from `input`, putting every part but the last
/// (left in `out`); `false` if the pool can no longer be told.
fn run_items(
    t: &impl Transport,
    out: &mut Vec<u8>,
    (id, count): (u64, u32),
    entry: Entry,
    mut input: &[u8],
    max_message: usize,
) -> bool {
    for index in 0..count {
        let mark = out.len();
        let valid = entry.call(&mut input, out);
        if out.len() > max_message {
            let record = out.split_off(mark);
            if mark > wire::PART_HEADER {
                // Send what came before, and start the next part with this item.
                if !t.put(std::mem::replace(out, wire::part_header(id, index))) {
                    return false;
                }
            }
            if wire::PART_HEADER + record.len() <= max_message {
                out.extend_from_slice(&record);
            } else {
                let len = record.len();
                match t.stash(record) {
                    Some(name) => {
                        out.push(status::ELSEWHERE);
                        let _ = name.encode(out);
                    }
                    None => {
                        out.push(status::TOO_LARGE);
                        let _ = len.encode(out);
                    }
                }
            }
        }
        if !valid {
            break;
        }
    }
    true
}

/// How a worker ended.
#[derive(Debug)]
pub struct End {
    pub(crate) exit: Exit,
    /// What its handle reported, if it did not return normally.
    pub(crate) error: Option<ProcessError>,
}

/// A running worker, as the pool sees it.
pub trait Worker: Send {
    /// Its pid.
    fn pid(&self) -> u32;
    /// Hands it a task if its channel has room; the message back if not.
    fn send(&self, task: Vec<u8>) -> Result<(), Vec<u8>>;
    /// Tells it to exit once its channel is empty.
    fn close(&self);
    /// How it ended, once it has (reaping it).
    fn ended(&mut self) -> Option<End>;
    /// Ends it now.
    fn kill(&self);
    /// The tasks still in its channel, which it never took.
    fn recover(&self) -> Vec<Vec<u8>>;
    /// The prefix of the blob segments it hands long outcomes over in, if it may.
    fn blob_prefix(&self) -> Option<&str>;
}

pub(crate) mod sealed {
    /// What a pool needs of a kind of worker.
    pub trait Backend: Send + Sync + Sized + 'static {
        /// A worker of this kind.
        type Worker: super::Worker;
        /// Prepares for a pool whose messages are at most `max_message` bytes.
        fn new(processes: usize, max_message: usize) -> Result<Self, crate::ProcessError>;
        /// Starts a worker for `setup.slot`, `number` counting every worker the pool started.
        fn start(
            &self,
            setup: super::Setup,
            number: u64,
            key: [u64; 2],
        ) -> Result<Self::Worker, crate::ProcessError>;
        /// The next message from any worker, waiting at most `timeout`.
        fn recv(&self, timeout: std::time::Duration) -> Option<Vec<u8>>;
        /// The next message from any worker, if one is there now.
        fn try_recv(&self) -> Option<Vec<u8>>;
        /// How many messages wait (every message a worker that has ended put is among them).
        fn pending(&self) -> usize;
        /// Puts arguments too long for a message into a blob segment for a worker to take;
        /// `None` where messages have no limit.
        fn stash(
            &self,
            bytes: Vec<u8>,
        ) -> Option<Result<crate::process::channel::Blob, crate::ProcessError>>;
        /// The message limit for a pool that asked for `requested`.
        fn message_limit(requested: usize) -> usize;
    }
}

/// The kind of worker a pool runs: [`Processes`] or [`Threads`]. Sealed.
pub trait Workers: sealed::Backend {}

/// Workers that are child processes: the workers of a [`Pool`](crate::process::Pool).
#[derive(Debug)]
pub struct Processes {
    results: Channel,
    results_name: String,
    max_message: usize,
    /// Counts the argument blobs (`<results>a<n>`).
    blobs: AtomicU64,
}

impl Workers for Processes {}

impl sealed::Backend for Processes {
    type Worker = ProcessWorker;

    fn new(processes: usize, max_message: usize) -> Result<Self, ProcessError> {
        let capacity = (processes * DEPTH).clamp(16, 256);
        let (results, results_name) = Channel::create_fresh(capacity, max_message)?;
        Ok(Processes {
            results,
            results_name,
            max_message,
            blobs: AtomicU64::new(0),
        })
    }

    fn start(
        &self,
        mut setup: Setup,
        number: u64,
        key: [u64; 2],
    ) -> Result<ProcessWorker, ProcessError> {
        let (tasks, tasks_name) = Channel::create_fresh(DEPTH, self.max_message)?;
        let blob_prefix = format!("{tasks_name}b");
        setup.tasks = tasks_name;
        setup.results = self.results_name.clone();
        let mut process = Process::new(process_worker, setup);
        process
            .set_name(format!("PoolWorker-{number}"))
            .set_daemon(true)
            .set_env(KEY_ENV, &format!("{:x}:{:x}", key[0], key[1]));
        process.start()?;
        Ok(ProcessWorker {
            pid: process.pid().unwrap_or(0),
            process,
            tasks,
            blob_prefix,
        })
    }

    fn recv(&self, timeout: Duration) -> Option<Vec<u8>> {
        self.results.get_timeout(timeout).ok()
    }

    fn try_recv(&self) -> Option<Vec<u8>> {
        self.results.try_get().ok()
    }

    fn pending(&self) -> usize {
        self.results.len()
    }

    fn stash(&self, bytes: Vec<u8>) -> Option<Result<Blob, ProcessError>> {
        let n = self.blobs.fetch_add(1, Ordering::Relaxed);
        let name = format!("{}a{n}", self.results_name);
        Some(Blob::create(name, bytes).map_err(ProcessError::from))
    }

    fn message_limit(requested: usize) -> usize {
        requested
    }
}

/// A worker process's function: opens its channels and serves.
fn process_worker(setup: Setup) {
    let key = std::env::var(KEY_ENV).ok().and_then(|k| {
        let (a, b) = k.split_once(':')?;
        Some([
            u64::from_str_radix(a, 16).ok()?,
            u64::from_str_radix(b, 16).ok()?,
        ])
    });
    let (Some(key), Ok(tasks), Ok(results)) = (
        key,
        Channel::open(&setup.tasks),
        Channel::open(&setup.results),
    ) else {
        eprintln!("mpshm: a pool worker cannot find its key or its channels");
        return;
    };
    // Only this worker opens its task channel: without its name it cannot outlive the pool
    // and this worker. (The result channel keeps its name for the workers still to come.)
    channel::remove(&setup.tasks);
    let transport = ChannelTransport {
        blobs_in: format!("{}a", setup.results),
        blobs_out: format!("{}b", setup.tasks),
        stashed: std::cell::Cell::new(0),
        tasks,
        results,
    };
    serve(&transport, &setup, key);
}

struct ChannelTransport {
    tasks: Channel,
    results: Channel,
    /// The prefixes of the pool's argument blobs and of this worker's result blobs.
    blobs_in: String,
    blobs_out: String,
    stashed: std::cell::Cell<u64>,
}

impl Transport for ChannelTransport {
    fn get(&self) -> Option<Vec<u8>> {
        self.tasks.get()
    }

    fn put(&self, msg: Vec<u8>) -> bool {
        self.results.put(msg)
    }

    fn stash(&self, record: Vec<u8>) -> Option<String> {
        let n = self.stashed.get();
        self.stashed.set(n + 1);
        Blob::create(format!("{}{n}", self.blobs_out), record)
            .ok()
            .map(Blob::hand_over)
    }

    fn take(&self, name: &str) -> Option<Vec<u8>> {
        channel::take_blob(name, &self.blobs_in)
    }
}

/// A worker process, with its task channel.
#[derive(Debug)]
pub struct ProcessWorker {
    /// The process's pid, read once: the pool reads it for every outcome it files.
    pid: u32,
    process: Process<()>,
    tasks: Channel,
    blob_prefix: String,
}

impl Drop for ProcessWorker {
    fn drop(&mut self) {
        // Outcomes it handed over that were never taken (the pool was terminated, or the task
        // failed first).
        let _ = self.process.kill();
        let _ = self.process.join();
        channel::remove_all(&self.blob_prefix);
    }
}

impl Worker for ProcessWorker {
    fn pid(&self) -> u32 {
        self.pid
    }

    fn send(&self, task: Vec<u8>) -> Result<(), Vec<u8>> {
        self.tasks.try_put(task).map_err(|e| e.0)
    }

    fn close(&self) {
        self.tasks.close();
    }

    fn ended(&mut self) -> Option<End> {
        if self.process.is_alive() {
            return None;
        }
        let exit = Exit::from_exitcode(self.process.exitcode()?);
        Some(End {
            exit,
            error: self.process.join().err(),
        })
    }

    fn kill(&self) {
        let _ = self.process.kill();
    }

    fn recover(&self) -> Vec<Vec<u8>> {
        let mut left = Vec::new();
        while let Ok(m) = self.tasks.try_get() {
            left.push(m);
        }
        left
    }

    fn blob_prefix(&self) -> Option<&str> {
        Some(&self.blob_prefix)
    }
}

/// Workers that are threads of this process: the workers of a
/// [`ThreadPool`](crate::process::ThreadPool).
#[derive(Debug)]
pub struct Threads {
    tx: mpsc::Sender<Vec<u8>>,
    rx: Mutex<mpsc::Receiver<Vec<u8>>>,
}

impl Workers for Threads {}

impl sealed::Backend for Threads {
    type Worker = ThreadWorker;

    fn new(_processes: usize, _max_message: usize) -> Result<Self, ProcessError> {
        let (tx, rx) = mpsc::channel();
        Ok(Threads {
            tx,
            rx: Mutex::new(rx),
        })
    }

    fn start(
        &self,
        setup: Setup,
        number: u64,
        key: [u64; 2],
    ) -> Result<ThreadWorker, ProcessError> {
        let tasks = Arc::new(TaskQueue::default());
        let transport = ThreadTransport {
            tasks: Arc::clone(&tasks),
            results: self.tx.clone(),
        };
        let handle = std::thread::Builder::new()
            .name(format!("ThreadPoolWorker-{number}"))
            .spawn(move || serve(&transport, &setup, key))?;
        Ok(ThreadWorker {
            tasks,
            handle: Some(handle),
            abandoned: AtomicBool::new(false),
        })
    }

    fn recv(&self, timeout: Duration) -> Option<Vec<u8>> {
        let rx = self.rx.lock().unwrap_or_else(PoisonError::into_inner);
        rx.recv_timeout(timeout).ok()
    }

    fn try_recv(&self) -> Option<Vec<u8>> {
        let rx = self.rx.lock().unwrap_or_else(PoisonError::into_inner);
        rx.try_recv().ok()
    }

    fn pending(&self) -> usize {
        // A thread never dies with results in flight: `serve` catches panics. A thread given
        // up on (timed out) has its task failed already, and what it sends later is ignored.
        0
    }

    fn stash(&self, _bytes: Vec<u8>) -> Option<Result<Blob, ProcessError>> {
        None
    }

    fn message_limit(_requested: usize) -> usize {
        // In-process queues hold messages of any length.
        usize::MAX / 4
    }
}

/// A thread worker's task queue.
#[derive(Debug, Default)]
struct TaskQueue {
    q: Mutex<(VecDeque<Vec<u8>>, bool)>,
    cond: Condvar,
}

struct ThreadTransport {
    tasks: Arc<TaskQueue>,
    results: mpsc::Sender<Vec<u8>>,
}

impl Transport for ThreadTransport {
    fn get(&self) -> Option<Vec<u8>> {
        let mut g = self.tasks.q.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if let Some(m) = g.0.pop_front() {
                return Some(m);
            }
            if g.1 {
                return None;
            }
            g = self
                .tasks
                .cond
                .wait(g)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    fn put(&self, msg: Vec<u8>) -> bool {
        self.results.send(msg).is_ok()
    }

    fn stash(&self, _record: Vec<u8>) -> Option<String> {
        None
    }

    fn take(&self, _name: &str) -> Option<Vec<u8>> {
        None
    }
}

/// A worker thread, with its task queue.
#[derive(Debug)]
pub struct ThreadWorker {
    tasks: Arc<TaskQueue>,
    handle: Option<JoinHandle<()>>,
    /// Set by `kill`: a thread cannot be stopped, so it is given up on; it finishes its task,
    /// whose late outcome the pool ignores, and exits.
    abandoned: AtomicBool,
}

impl Worker for ThreadWorker {
    fn pid(&self) -> u32 {
        std::process::id()
    }

    fn send(&self, task: Vec<u8>) -> Result<(), Vec<u8>> {
        let mut g = self.tasks.q.lock().unwrap_or_else(PoisonError::into_inner);
        if g.1 || g.0.len() >= DEPTH {
            return Err(task);
        }
        g.0.push_back(task);
        self.tasks.cond.notify_one();
        Ok(())
    }

    fn close(&self) {
        let mut g = self.tasks.q.lock().unwrap_or_else(PoisonError::into_inner);
        g.1 = true;
        self.tasks.cond.notify_all();
    }

    fn ended(&mut self) -> Option<End> {
        if self.abandoned.load(Ordering::Relaxed) {
            // Detach it: it ends by itself once its task returns.
            self.handle = None;
            return Some(End {
                exit: Exit::Code(0),
                error: None,
            });
        }
        if !self.handle.as_ref().is_some_and(JoinHandle::is_finished) {
            return None;
        }
        let joined = self.handle.take().map(JoinHandle::join);
        Some(End {
            exit: Exit::Code(if matches!(joined, Some(Err(_))) {
                101
            } else {
                0
            }),
            error: None,
        })
    }

    fn kill(&self) {
        self.abandoned.store(true, Ordering::Relaxed);
        self.close();
    }

    fn recover(&self) -> Vec<Vec<u8>> {
        let mut g = self.tasks.q.lock().unwrap_or_else(PoisonError::into_inner);
        g.0.drain(..).collect()
    }

    fn blob_prefix(&self) -> Option<&str> {
        None
    }
}

impl Drop for ThreadWorker {
    fn drop(&mut self) {
        self.close();
    }
}

/// Waits for messages in tests of the wire format.
#[cfg(test)]
mod tests {
    use super::*;

    struct Loopback {
        tasks: Mutex<VecDeque<Vec<u8>>>,
        out: Mutex<Vec<Vec<u8>>>,
    }

    impl Transport for Loopback {
        fn get(&self) -> Option<Vec<u8>> {
            self.tasks.lock().unwrap().pop_front()
        }
        fn put(&self, msg: Vec<u8>) -> bool {
            self.out.lock().unwrap().push(msg);
            true
        }
        fn stash(&self, _record: Vec<u8>) -> Option<String> {
            None
        }
        fn take(&self, _name: &str) -> Option<Vec<u8>> {
            None
        }
    }

    fn echo_len(v: Vec<u8>) -> Vec<u8> {
        v
    }

    #[test]
    fn outcomes_are_split_into_parts_that_fit() {
        let key = crate::process::entry::new_key();
        let entry = Entry::of(echo_len).unwrap();
        let mut task = vec![0; wire::TASK_HEADER];
        wire::write_task_header(&mut task, wire::TASK, (7, 4), entry, key);
        // Three items of 40 bytes each, and one too large for any message.
        for len in [40, 40, 40, 500] {
            vec![1u8; len].encode(&mut task).unwrap();
        }
        let t = Loopback {
            tasks: Mutex::new(VecDeque::from([task])),
            out: Mutex::new(Vec::new()),
        };
        serve(
            &t,
            &Setup {
                max_message: 120,
                ..Setup::default()
            },
            key,
        );
        let out = t.out.into_inner().unwrap();
        assert_eq!(out[0][0], wire::READY);
        let parts = &out[1..];
        assert!(parts.iter().all(|p| p.len() <= 120));
        assert!(parts.len() >= 2);
        let last = parts.last().unwrap();
        assert_eq!(last[wire::PART_HEADER - 1], 1);
        assert!(
            parts[..parts.len() - 1]
                .iter()
                .all(|p| p[wire::PART_HEADER - 1] == 0)
        );
        // The last record says the fourth result was too large.
        assert_eq!(last[wire::PART_HEADER], status::TOO_LARGE);
        assert_eq!(wire::u32_at(last, 9), Some(3));
    }

    #[test]
    fn a_task_without_the_seal_runs_nothing() {
        let key = crate::process::entry::new_key();
        let entry = Entry::of(echo_len).unwrap();
        let mut task = vec![0; wire::TASK_HEADER];
        wire::write_task_header(&mut task, wire::TASK, (9, 1), entry, key);
        task[10] ^= 1;
        vec![1u8].encode(&mut task).unwrap();
        let t = Loopback {
            tasks: Mutex::new(VecDeque::from([task])),
            out: Mutex::new(Vec::new()),
        };
        serve(&t, &Setup::default(), key);
        let out = t.out.into_inner().unwrap();
        assert_eq!(out[1].len(), wire::PART_HEADER, "an empty last part");
        assert_eq!(out[1][wire::PART_HEADER - 1], 1);
    }
}
