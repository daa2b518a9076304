//! The pool's engine: it hands tasks to workers, files their outcomes, and watches the
//! workers, replacing any that ends.
//!
//! Each worker has its own task channel (see `workers.rs`) and runs its tasks in the order it
//! got them, so the engine knows which tasks a worker holds (`Slot::held`, oldest first). When a
//! worker ends, the engine first files every outcome still waiting in the result channel (all
//! that the dead worker put are there: a worker that has exited puts nothing more), then takes
//! back the tasks still in the worker's channel (it never took them) and hands them to other
//! workers. What is left of what it held is the task it was running, and only that task fails,
//! with [`ProcessError::WorkerDied`]. Python's pool hangs here instead (CPython issue 96062).
//!
//! One thread per pool (the *manager*) receives the outcomes and watches the workers; it also
//! starts every worker, so that a daemon worker's `PR_SET_PDEATHSIG` is tied to a thread that
//! lives as long as the pool. Callers hand over work directly, under the engine's lock. A
//! caller waiting for a result (`AsyncResult::get`) files the outcomes itself meanwhile
//! (`Submit::help`): a stream of results then costs no hand-over to the manager and back, and
//! the manager keeps off the result channel so that the workers' puts wake nobody. Only one
//! thread takes outcomes at a time (`Engine::receiver`), so a task's parts are filed in order,
//! and one that is taken is filed before the lock is next free, which `drain` relies on.
//!
//! A worker whose tasks come back within [`QUICK`] may hold up to [`DEPTH`] tasks, so that it
//! rarely runs dry (and sleeps) while the thread that hands out work is off the processor;
//! otherwise it holds [`SHALLOW`], since a task queued behind a long one waits for it even when
//! another worker is free.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, TryLockError};
use std::thread::Thread;
use std::time::{Duration, Instant};

use crate::error::ProcessError;
use crate::process::channel::Blob;
use crate::process::entry::{Entry, Origin};
use crate::process::jobs::{Chunks, Sink, Submit};
use crate::process::payload::Payload;
use crate::process::workers::sealed::Backend;
use crate::process::workers::{DEPTH, End, Setup, Worker, wire};

/// How many tasks a worker holds at most while its tasks take longer than [`QUICK`]: a task
/// queued behind a long one waits for it even if another worker is free, so few are.
const SHALLOW: usize = 8;
/// A task that ran shorter than this lets its worker hold up to [`DEPTH`] tasks: for a stream
/// of short tasks a deeper queue means the worker rarely runs dry and sleeps while the pool's
/// thread is off the processor, and a task behind others waits at most about `DEPTH` times
/// this.
const QUICK: Duration = Duration::from_micros(50);

/// How often the manager looks at the workers and the task timeouts when no outcome arrives.
const TICK: Duration = Duration::from_millis(10);
/// How long the manager waits for one of the outcomes it knows are queued (a live worker may
/// be in the middle of putting one ahead of them).
const DRAIN_WAIT: Duration = Duration::from_millis(100);
/// How many outcomes the manager files per turn of its lock.
const BATCH: usize = 64;
/// How long the manager keeps off the result channel after a waiting caller filed outcomes
/// (see `Engine::help`), before it looks whether callers still do.
const LINGER: Duration = Duration::from_millis(1);
/// How long a helping caller goes without an outcome before it leaves the outcomes to the
/// manager and waits to be woken: outcomes further apart than this are not a stream, and a
/// caller that keeps looking only takes the processor from the workers.
const HELP_GAP: Duration = Duration::from_micros(50);
/// Rounds a helping caller spins (then yields) before it looks at the clock for [`HELP_GAP`].
const HELP_SPINS: u32 = 7;
/// How many steps a thread waiting for the engine's lock spins and yields (`Backoff::snooze`)
/// before it sleeps: seven spinning steps (127 `pause`s in all), then three yields.
const LOCK_SNOOZE: u32 = 10;
/// How many workers of a slot in a row may exit before they said they were ready before the
/// pool gives up (a program that cannot start its workers would otherwise start them forever).
const MAX_START_FAILURES: u32 = 3;

/// What a pool was built with.
#[derive(Debug)]
pub(crate) struct Settings {
    pub(crate) processes: usize,
    pub(crate) max_tasks: u64,
    pub(crate) task_timeout: Option<Duration>,
    pub(crate) max_message: usize,
    pub(crate) initializer: Option<(Entry, Vec<u8>)>,
}

enum Phase {
    Open,
    /// `close` was called: no new work; the workers exit once the work is done.
    Closed,
    /// `terminate` was called: the workers are killed.
    Terminated,
    /// The pool gave up (the initializer failed, or no worker can be started).
    Broken(ProcessError),
}

struct Slot<W> {
    worker: Option<W>,
    /// The ids of the tasks the worker holds, in the order it runs them.
    held: VecDeque<u64>,
    /// Tasks handed to this worker (for `max_tasks`).
    sent: u64,
    /// When the worker started its current task, as far as the engine can tell: when it got
    /// it while idle, or when the one before came back. Never later than the truth.
    busy_since: Instant,
    /// How many tasks it may hold: [`DEPTH`] while its tasks are [`QUICK`], else [`SHALLOW`].
    depth: usize,
    ready: bool,
    closed: bool,
    start_failures: u32,
}

struct Task {
    sink: Arc<dyn Sink>,
    /// Its first item's index in the job, and how many it has.
    first: usize,
    items: usize,
    /// How many outcomes came back.
    delivered: usize,
    /// The slot of the worker that holds it.
    slot: Option<usize>,
    timed_out: bool,
    /// The rest of its outcomes could not be read; they were failed.
    spoiled: bool,
    /// The blob segment holding its argument, removed with the task.
    _blob: Option<Box<Blob>>,
}

/// The tasks not finished yet, by id. Ids are handed out in order and tasks mostly finish in
/// about that order, so they sit in a deque indexed by `id - base`, the finished ones as `None`
/// until every older one is finished too: no hashing, and no table rebuilt as thousands of
/// `apply_async` tasks come and go.
#[derive(Default)]
struct Tasks {
    /// The id of `slots[0]`.
    base: u64,
    slots: VecDeque<Option<Task>>,
    live: usize,
}

impl Tasks {
    fn index(&self, id: u64) -> Option<usize> {
        usize::try_from(id.checked_sub(self.base)?)
            .ok()
            .filter(|&i| i < self.slots.len())
    }

    /// Files task `id`, which must be the next id (`base + len`); ids only grow.
    fn insert(&mut self, id: u64, task: Task) {
        debug_assert_eq!(id, self.base + self.slots.len() as u64);
        if self.slots.is_empty() {
            self.base = id;
        }
        self.slots.push_back(Some(task));
        self.live += 1;
    }

    fn get_mut(&mut self, id: u64) -> Option<&mut Task> {
        let i = self.index(id)?;
        self.slots[i].as_mut()
    }

    fn contains(&self, id: u64) -> bool {
        self.index(id).is_some_and(|i| self.slots[i].is_some())
    }

    fn remove(&mut self, id: u64) -> Option<Task> {
        let i = self.index(id)?;
        let t = self.slots[i].take()?;
        self.live -= 1;
        while let Some(None) = self.slots.front() {
            self.slots.pop_front();
            self.base += 1;
        }
        Some(t)
    }

    fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// Takes every task out.
    fn drain(&mut self) -> Vec<Task> {
        self.live = 0;
        self.base += self.slots.len() as u64;
        self.slots.drain(..).flatten().collect()
    }
}

struct State<W> {
    slots: Vec<Slot<W>>,
    /// Task messages not handed to a worker yet.
    backlog: VecDeque<Vec<u8>>,
    tasks: Tasks,
    next_task: u64,
    workers_started: u64,
    phase: Phase,
    /// Jobs completed under the lock, whose callbacks run once it is released.
    finished: Vec<Arc<dyn Sink>>,
}

pub(crate) struct Engine<B: Backend> {
    backend: B,
    settings: Settings,
    key: [u64; 2],
    state: Mutex<State<B::Worker>>,
    /// Held by the one thread that takes outcomes from the result channel outside the lock:
    /// the manager, or a caller waiting for a result (`help`). Outcomes are then filed in the
    /// order they were put, and the manager's `drain` (under the lock) sees every outcome not
    /// filed yet still in the channel.
    receiver: AtomicBool,
    /// Counts the times a caller stopped helping: while it moves, the manager keeps off the
    /// result channel, so that the workers' puts wake nobody.
    helped: AtomicU64,
    /// The manager thread, woken when a helping caller stops before its result came.
    manager: OnceLock<Thread>,
}

/// The receiver's part (`Engine::receiver`) as a caller holds it: let go when dropped, so that
/// a panic in the caller's thread (in a result's decoding) does not leave it held.
struct Receiving<'a> {
    flag: &'a AtomicBool,
    held: bool,
}

impl<'a> Receiving<'a> {
    /// Takes the part, if no other thread has it.
    fn take(flag: &'a AtomicBool) -> Option<Receiving<'a>> {
        let mut part = Receiving { flag, held: false };
        part.retake().then_some(part)
    }

    fn retake(&mut self) -> bool {
        // Acquire: pairs with the Release store in `release`, so that this thread sees the
        // outcomes the last receiver filed.
        self.held = self
            .flag
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_ok();
        self.held
    }

    fn release(&mut self) {
        if self.held {
            // Release: pairs with the Acquire exchange in `retake`.
            self.flag.store(false, Ordering::Release);
            self.held = false;
        }
    }
}

impl Drop for Receiving<'_> {
    fn drop(&mut self) {
        self.release();
    }
}

fn task_id(msg: &[u8]) -> Option<u64> {
    wire::u64_at(msg, 1)
}

impl<B: Backend> Engine<B> {
    pub(crate) fn new(mut settings: Settings) -> Result<Engine<B>, ProcessError> {
        settings.max_message = B::message_limit(settings.max_message);
        let backend = B::new(settings.processes, settings.max_message)?;
        let slots = (0..settings.processes)
            .map(|_| Slot {
                worker: None,
                held: VecDeque::new(),
                sent: 0,
                busy_since: Instant::now(),
                depth: SHALLOW,
                ready: false,
                closed: false,
                start_failures: 0,
            })
            .collect();
        Ok(Engine {
            backend,
            key: crate::process::entry::new_key(),
            settings,
            state: Mutex::new(State {
                slots,
                backlog: VecDeque::new(),
                tasks: Tasks::default(),
                next_task: 0,
                workers_started: 0,
                phase: Phase::Open,
                finished: Vec::new(),
            }),
            receiver: AtomicBool::new(false),
            helped: AtomicU64::new(0),
            manager: OnceLock::new(),
        })
    }

    fn wake_manager(&self) {
        if let Some(t) = self.manager.get() {
            t.unpark();
        }
    }

    /// Files up to [`BATCH`] outcomes waiting now (after a look at the workers, if `look`) and
    /// hands out the tasks that makes room for; how many it filed, or `None` if it let the
    /// receiver's part go and another thread took it.
    fn file_waiting(&self, part: &mut Receiving<'_>, look: bool) -> Option<usize> {
        let mut st = self.lock();
        if look {
            self.check_workers(&mut st);
        }
        let mut n = 0;
        let mut now = None;
        while n < BATCH {
            match self.backend.try_recv() {
                Some(m) => self.handle(&mut st, &m, *now.get_or_insert_with(Instant::now)),
                None => break,
            }
            n += 1;
        }
        if n > 0 {
            self.pump(&mut st);
        }
        let finished = std::mem::take(&mut st.finished);
        drop(st);
        if !finished.is_empty() {
            // The callbacks run without the receiver's part, so that one that waits for
            // another result does not stop the outcomes.
            part.release();
            for job in finished {
                job.finish();
            }
            if !part.retake() {
                return None;
            }
        }
        Some(n)
    }

    /// Takes the engine's lock. The caller and the manager take it in turn for a few
    /// microseconds each, hundreds of thousands of times a second in a stream of small tasks:
    /// a waiter snoozes ([`LOCK_SNOOZE`] steps) before it sleeps on the futex, which would cost
    /// it a context switch and the holder a wake-up call.
    fn lock(&self) -> MutexGuard<'_, State<B::Worker>> {
        let mut backoff = crate::wait::Backoff::new();
        while backoff.steps() < LOCK_SNOOZE {
            match self.state.try_lock() {
                Ok(st) => return st,
                Err(TryLockError::Poisoned(p)) => return p.into_inner(),
                Err(TryLockError::WouldBlock) => backoff.snooze(),
            }
        }
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Releases the lock, then runs the callbacks of the jobs completed under it.
    fn unlock(&self, mut st: MutexGuard<'_, State<B::Worker>>) {
        let finished = std::mem::take(&mut st.finished);
        drop(st);
        for job in finished {
            job.finish();
        }
    }

    fn setup(&self, slot: usize) -> Setup {
        Setup {
            slot: slot as u32,
            max_tasks: self.settings.max_tasks,
            max_message: self.settings.max_message as u64,
            init: self.settings.initializer.as_ref().map(|(entry, arg)| {
                let (run, func) = entry.parts();
                ((run, func, entry.seal(self.key, [0, 0])), arg.clone())
            }),
            ..Setup::default()
        }
    }

    fn start_worker(&self, st: &mut State<B::Worker>, i: usize) -> Result<(), ProcessError> {
        st.workers_started += 1;
        let worker = self
            .backend
            .start(self.setup(i), st.workers_started, self.key)?;
        let slot = &mut st.slots[i];
        slot.worker = Some(worker);
        slot.held.clear();
        slot.sent = 0;
        slot.ready = false;
        slot.closed = false;
        slot.busy_since = Instant::now();
        slot.depth = SHALLOW;
        Ok(())
    }

    /// Starts every worker (on the manager thread, before `manage`).
    pub(crate) fn start_workers(&self) -> Result<(), ProcessError> {
        let mut st = self.lock();
        for i in 0..st.slots.len() {
            if let Err(e) = self.start_worker(&mut st, i) {
                for slot in &mut st.slots {
                    if let Some(w) = &slot.worker {
                        w.kill();
                    }
                    slot.worker = None;
                }
                return Err(e);
            }
        }
        Ok(())
    }

    /// Why the pool takes no work, if it does not.
    fn refusal(st: &State<B::Worker>) -> Option<ProcessError> {
        match &st.phase {
            Phase::Open => None,
            Phase::Closed | Phase::Terminated => Some(ProcessError::Closed),
            Phase::Broken(e) => Some(e.duplicate()),
        }
    }

    fn fail(
        st: &mut State<B::Worker>,
        sink: &Arc<dyn Sink>,
        items: std::ops::Range<usize>,
        err: &ProcessError,
    ) {
        if sink.fail(items, err) {
            st.finished.push(Arc::clone(sink));
        }
    }

    /// Hands waiting tasks to the workers with room, the least busy first.
    fn pump(&self, st: &mut State<B::Worker>) {
        if !matches!(st.phase, Phase::Open | Phase::Closed) {
            return;
        }
        let max_tasks = self.settings.max_tasks;
        while !st.backlog.is_empty() {
            let pick = st
                .slots
                .iter()
                .enumerate()
                .filter(|(_, s)| {
                    s.worker.is_some()
                        && !s.closed
                        && s.held.len() < s.depth
                        && (max_tasks == 0 || s.sent < max_tasks)
                })
                .min_by_key(|(_, s)| s.held.len())
                .map(|(i, _)| i);
            let Some(i) = pick else { return };
            let Some(msg) = st.backlog.pop_front() else {
                return;
            };
            let Some(id) = task_id(&msg) else { continue };
            let slot = &mut st.slots[i];
            let Some(worker) = &slot.worker else { return };
            match worker.send(msg) {
                Ok(()) => {
                    if slot.held.is_empty() {
                        slot.busy_since = Instant::now();
                    }
                    slot.held.push_back(id);
                    slot.sent += 1;
                    if let Some(t) = st.tasks.get_mut(id) {
                        t.slot = Some(i);
                    }
                }
                Err(msg) => {
                    st.backlog.push_front(msg);
                    return;
                }
            }
        }
    }

    /// Files one message from a worker; `now` is the time of its batch (one clock reading for
    /// many messages: a task's timing only picks its worker's depth, see [`QUICK`]).
    fn handle(&self, st: &mut State<B::Worker>, msg: &[u8], now: Instant) {
        match msg.first() {
            Some(&wire::READY) => {
                if let Some(slot) = wire::u32_at(msg, 1).and_then(|i| st.slots.get_mut(i as usize))
                {
                    slot.ready = true;
                    slot.start_failures = 0;
                }
            }
            Some(&wire::INIT_FAILED) => {
                let message = msg
                    .get(5..)
                    .and_then(|mut b| String::decode(&mut b))
                    .unwrap_or_else(|| "(no message)".to_owned());
                self.give_up(st, ProcessError::InitializerFailed { message });
            }
            Some(&wire::PART) => self.file_part(st, msg, now),
            _ => {}
        }
    }

    fn file_part(&self, st: &mut State<B::Worker>, msg: &[u8], now: Instant) {
        let (Some(id), Some(first), Some(&last)) = (
            task_id(msg),
            wire::u32_at(msg, 9),
            msg.get(wire::PART_HEADER - 1),
        ) else {
            return;
        };
        let Some(task) = st.tasks.get_mut(id) else {
            // A task that failed already (timed out, or the pool was terminated).
            return;
        };
        let worker = task.slot.and_then(|i| st.slots[i].worker.as_ref());
        let blobs = worker.and_then(Worker::blob_prefix);
        let from = Origin {
            pid: worker.map_or(0, Worker::pid),
            max_message: self.settings.max_message,
            blobs,
        };
        let mut finished = None;
        if !task.spoiled && first as usize == task.delivered {
            let (n, valid, done) = task.sink.deliver(
                task.first + task.delivered,
                task.items - task.delivered,
                &msg[wire::PART_HEADER..],
                from,
            );
            task.delivered += n;
            if done {
                finished = Some(Arc::clone(&task.sink));
            }
            if !valid || (last == 1 && task.delivered < task.items) {
                task.spoiled = true;
                let rest = task.first + task.delivered..task.first + task.items;
                if task
                    .sink
                    .fail(rest, &ProcessError::Decode { what: "a result" })
                {
                    finished = Some(Arc::clone(&task.sink));
                }
            }
        }
        st.finished.extend(finished);
        if last == 1 {
            let slot = st.tasks.remove(id).and_then(|t| t.slot);
            if let Some(slot) = slot.and_then(|i| st.slots.get_mut(i)) {
                // Tasks mostly come back in the order the worker got them.
                if slot.held.front() == Some(&id) {
                    slot.held.pop_front();
                } else {
                    slot.held.retain(|&t| t != id);
                }
                slot.depth = if now.saturating_duration_since(slot.busy_since) < QUICK {
                    DEPTH
                } else {
                    SHALLOW
                };
                slot.busy_since = now;
            }
        }
    }

    /// Fails everything and stops taking work.
    fn give_up(&self, st: &mut State<B::Worker>, err: ProcessError) {
        if matches!(st.phase, Phase::Terminated | Phase::Broken(_)) {
            return;
        }
        self.fail_all(st, &err);
        st.phase = Phase::Broken(err);
        for slot in &st.slots {
            if let Some(w) = &slot.worker {
                w.kill();
            }
        }
    }

    fn fail_all(&self, st: &mut State<B::Worker>, err: &ProcessError) {
        st.backlog.clear();
        let tasks = st.tasks.drain();
        for t in tasks {
            if !t.spoiled {
                Self::fail(st, &t.sink, t.first + t.delivered..t.first + t.items, err);
            }
        }
        for slot in &mut st.slots {
            slot.held.clear();
        }
    }

    /// Looks at every worker: buries those that ended, kills those past the task timeout, and
    /// starts replacements.
    fn check_workers(&self, st: &mut State<B::Worker>) {
        for i in 0..st.slots.len() {
            let Some(worker) = st.slots[i].worker.as_mut() else {
                continue;
            };
            if let Some(end) = worker.ended() {
                self.drain(st);
                self.bury(st, i, end);
                continue;
            }
            let slot = &st.slots[i];
            let (Some(limit), Some(&id)) = (self.settings.task_timeout, slot.held.front()) else {
                continue;
            };
            if slot.busy_since.elapsed() < limit {
                continue;
            }
            if let Some(t) = st.tasks.get_mut(id).filter(|t| !t.timed_out) {
                t.timed_out = true;
                if let Some(w) = &st.slots[i].worker {
                    w.kill();
                }
            }
        }
        self.replace_workers(st);
    }

    /// Files the outcomes queued now: every one a worker that has ended put is among them.
    fn drain(&self, st: &mut State<B::Worker>) {
        for _ in 0..self.backend.pending() {
            match self.backend.recv(DRAIN_WAIT) {
                Some(m) => self.handle(st, &m, Instant::now()),
                None => break,
            }
        }
    }

    /// Deals with the worker of slot `i`, which ended: its untaken tasks go back to the
    /// backlog, the task it was running fails.
    fn bury(&self, st: &mut State<B::Worker>, i: usize, end: End) {
        let Some(worker) = st.slots[i].worker.take() else {
            return;
        };
        let pid = worker.pid();
        let untaken = worker.recover();
        let mut back: HashSet<u64> = HashSet::new();
        for msg in untaken.into_iter().rev() {
            if let Some(id) = task_id(&msg).filter(|&id| st.tasks.contains(id)) {
                back.insert(id);
                st.backlog.push_front(msg);
            }
        }
        let held: Vec<u64> = st.slots[i].held.drain(..).collect();
        for id in held {
            if back.contains(&id) {
                if let Some(t) = st.tasks.get_mut(id) {
                    t.slot = None;
                }
                continue;
            }
            let Some(t) = st.tasks.remove(id) else {
                continue;
            };
            if t.spoiled {
                continue;
            }
            let err = match self.settings.task_timeout {
                Some(after) if t.timed_out => ProcessError::TaskTimeout { pid, after },
                _ => ProcessError::WorkerDied {
                    pid,
                    exit: end.exit,
                },
            };
            Self::fail(st, &t.sink, t.first + t.delivered..t.first + t.items, &err);
        }
        // A worker that exits by itself before it said it was ready could not start (a signal
        // is someone else's doing). A child that ran `main` will not do better next time.
        let slot = &mut st.slots[i];
        if !slot.ready && matches!(end.exit, crate::error::Exit::Code(_)) {
            slot.start_failures += 1;
            let hopeless = matches!(end.error, Some(ProcessError::NotIntercepted { .. }));
            if hopeless || slot.start_failures >= MAX_START_FAILURES {
                let err = end.error.unwrap_or(ProcessError::Exited {
                    pid,
                    exit: end.exit,
                });
                self.give_up(st, err);
            }
        }
        drop(worker);
    }

    /// Whether work is queued or running.
    fn busy(st: &State<B::Worker>) -> bool {
        !st.tasks.is_empty() || !st.backlog.is_empty()
    }

    fn replace_workers(&self, st: &mut State<B::Worker>) {
        let wanted = match st.phase {
            Phase::Open => true,
            Phase::Closed => Self::busy(st),
            _ => false,
        };
        if !wanted {
            return;
        }
        for i in 0..st.slots.len() {
            if st.slots[i].worker.is_some() {
                continue;
            }
            if let Err(e) = self.start_worker(st, i) {
                // Try again at the next look, unless no worker is left to do the work.
                if st.slots.iter().all(|s| s.worker.is_none()) {
                    self.give_up(st, e);
                }
                return;
            }
        }
    }

    /// The manager thread's loop: until the pool is closed and done, or terminated.
    pub(crate) fn manage(&self) {
        let _ = self.manager.set(std::thread::current());
        let mut last_look = Instant::now();
        let mut helped = self.helped.load(Ordering::Relaxed);
        loop {
            let now_helped = self.helped.load(Ordering::Relaxed);
            let part = if now_helped == helped {
                Receiving::take(&self.receiver)
            } else {
                None
            };
            let receiving = part.is_some();
            let msg = if receiving {
                self.backend.recv(TICK)
            } else {
                // A caller waiting for a result files the outcomes itself (`help`): keep off
                // the result channel while callers do, and look again in a while.
                helped = now_helped;
                std::thread::park_timeout(LINGER);
                None
            };
            let mut st = self.lock();
            let got = msg.is_some();
            if let Some(m) = msg {
                let now = Instant::now();
                self.handle(&mut st, &m, now);
                for _ in 0..BATCH {
                    match self.backend.try_recv() {
                        Some(m) => self.handle(&mut st, &m, now),
                        None => break,
                    }
                }
            }
            drop(part);
            if (receiving && !got) || last_look.elapsed() >= TICK {
                self.check_workers(&mut st);
                last_look = Instant::now();
            }
            self.pump(&mut st);
            match st.phase {
                Phase::Terminated | Phase::Broken(_) => {
                    let workers: Vec<_> = st
                        .slots
                        .iter_mut()
                        .filter_map(|s| s.worker.take())
                        .collect();
                    self.unlock(st);
                    for w in &workers {
                        w.kill();
                    }
                    // Dropping a worker reaps it and removes its channel.
                    drop(workers);
                    return;
                }
                Phase::Closed if !Self::busy(&st) => {
                    for slot in &mut st.slots {
                        if let (Some(w), false) = (&slot.worker, slot.closed) {
                            w.close();
                            slot.closed = true;
                        }
                    }
                    if st.slots.iter().all(|s| s.worker.is_none()) {
                        self.unlock(st);
                        return;
                    }
                }
                _ => {}
            }
            self.unlock(st);
        }
    }

    /// Stops taking work; the workers exit once the work queued is done.
    pub(crate) fn close(&self) {
        let mut st = self.lock();
        if matches!(st.phase, Phase::Open) {
            st.phase = Phase::Closed;
        }
        drop(st);
        self.wake_manager();
    }

    /// Kills the workers now and fails the work not done with [`ProcessError::Terminated`].
    pub(crate) fn terminate(&self) {
        let mut st = self.lock();
        if !matches!(st.phase, Phase::Terminated | Phase::Broken(_)) {
            self.fail_all(&mut st, &ProcessError::Terminated);
            st.phase = Phase::Terminated;
        }
        for slot in &st.slots {
            if let Some(w) = &slot.worker {
                w.kill();
            }
        }
        self.unlock(st);
        self.wake_manager();
    }

    /// Whether `close` or `terminate` was called (or the pool gave up).
    pub(crate) fn is_stopping(&self) -> bool {
        !matches!(self.lock().phase, Phase::Open)
    }

    /// The pids of the workers now running.
    pub(crate) fn pids(&self) -> Vec<u32> {
        self.lock()
            .slots
            .iter()
            .filter_map(|s| s.worker.as_ref().map(Worker::pid))
            .collect()
    }

    /// Kills and reaps every worker left (after the manager thread ended early).
    pub(crate) fn kill_all(&self) {
        let mut st = self.lock();
        let workers: Vec<_> = st
            .slots
            .iter_mut()
            .filter_map(|s| s.worker.take())
            .collect();
        drop(st);
        for w in &workers {
            w.kill();
        }
    }
}

impl<B: Backend> Submit for Engine<B> {
    fn submit(
        &self,
        entry: &Result<Entry, ProcessError>,
        sink: Arc<dyn Sink>,
        chunks: Chunks,
        failed: Vec<(usize, ProcessError)>,
    ) {
        let mut st = self.lock();
        for (i, e) in failed {
            Self::fail(&mut st, &sink, i..i + 1, &e);
        }
        let refusal = match entry {
            Err(e) => Some(e.duplicate()),
            Ok(_) => Self::refusal(&st),
        };
        match (entry, refusal) {
            (_, Some(err)) => {
                for c in chunks.iter() {
                    Self::fail(&mut st, &sink, c.first..c.first + c.items, &err);
                }
            }
            (Ok(entry), None) => {
                for mut c in chunks {
                    let id = st.next_task;
                    st.next_task += 1;
                    // The chunker keeps a chunk under 2^32 items.
                    let count = u32::try_from(c.items).unwrap_or(u32::MAX);
                    let kind = if c.blob.is_some() {
                        wire::TASK_BLOB
                    } else {
                        wire::TASK
                    };
                    wire::write_task_header(&mut c.msg, kind, (id, count), *entry, self.key);
                    st.tasks.insert(
                        id,
                        Task {
                            sink: Arc::clone(&sink),
                            first: c.first,
                            items: c.items,
                            delivered: 0,
                            slot: None,
                            timed_out: false,
                            spoiled: false,
                            _blob: c.blob,
                        },
                    );
                    st.backlog.push_back(c.msg);
                }
                self.pump(&mut st);
            }
            (Err(_), None) => {}
        }
        self.unlock(st);
    }

    fn processes(&self) -> usize {
        self.settings.processes
    }

    fn max_message(&self) -> usize {
        self.settings.max_message
    }

    fn stash(&self, bytes: Vec<u8>) -> Option<Result<Blob, ProcessError>> {
        self.backend.stash(bytes)
    }

    fn is_own_thread(&self) -> bool {
        self.manager
            .get()
            .is_some_and(|t| t.id() == std::thread::current().id())
    }

    fn help(&self, ready: &dyn Fn() -> bool, deadline: Option<Instant>) -> Option<bool> {
        let mut part = Receiving::take(&self.receiver)?;
        // A callback that waits for another result runs on the manager thread itself: nobody
        // else would file the outcomes or look at the workers then.
        let on_manager = self.is_own_thread();
        let mut last_look = Instant::now();
        let mut last_got = last_look;
        let mut idle = 0;
        let done = loop {
            if ready() {
                break true;
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                break false;
            }
            let spent = idle >= HELP_SPINS && last_got.elapsed() >= HELP_GAP;
            let look = on_manager && spent && last_look.elapsed() >= TICK;
            if look {
                last_look = Instant::now();
            }
            match self.file_waiting(&mut part, look) {
                // The manager took over.
                None => return Some(ready()),
                Some(0) => {}
                Some(_) => {
                    idle = 0;
                    last_got = Instant::now();
                    continue;
                }
            }
            idle += 1;
            if spent {
                if !on_manager {
                    break ready();
                }
                std::thread::park_timeout(LINGER);
            } else if idle < HELP_SPINS {
                for _ in 0..(1u32 << idle) {
                    std::hint::spin_loop();
                }
            } else {
                std::thread::yield_now();
            }
        };
        drop(part);
        if done {
            self.helped.fetch_add(1, Ordering::Relaxed);
        } else {
            // Nothing came for a while: the manager takes the outcomes again at once (it sees
            // no new help), and this caller sleeps until its result is filed.
            self.wake_manager();
        }
        Some(done)
    }
}
