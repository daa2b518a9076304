//! Handles and guards inherited through `fork`: whatever a forked child drops, the parent's
//! segments, locks and data stay the parent's.
//!
//! The test binary runs tests on several threads, and a child forked from a threaded process may
//! only do async-signal-safe work; so each case runs in a child process of its own (single
//! threaded), which creates the segments, forks, lets its forked child drop everything, and then
//! goes on using them itself.

mod common;

use std::panic::AssertUnwindSafe;

use common::{Child, name};
use mpshm::prelude::*;
use mpshm::process::{Process, StartMethod};
use mpshm::{
    Array, ByteQueue, JoinableQueue, Lock, Queue, RLock, RawArray, RawValue, SharedDict, Value,
};

fn main() {
    common::run(
        tests![
            child_drops_nothing_of_the_parent,
            a_forked_child_watches_its_own_lock_waits,
            a_process_that_waited_on_a_lock_still_forks,
            locks_never_found_busy_start_no_thread
        ],
        routines![
            create_fork_and_use,
            wait_for_a_lock_after_fork,
            lock_then_fork_a_process,
            take_free_locks_and_count_threads
        ],
    );
}

/// Forks: `None` in the forked child, its pid in the parent.
fn fork() -> Option<libc::pid_t> {
    // SAFETY: called from a single-threaded child process of the test binary, so the forked
    // child inherits no lock held by another thread.
    match unsafe { libc::fork() } {
        -1 => panic!("fork: {}", std::io::Error::last_os_error()),
        0 => None,
        pid => Some(pid),
    }
}

/// In a forked child: ends it at once, without the parent's exit handlers, with status 0 if `ok`.
fn exit_child(ok: bool) -> ! {
    // SAFETY: `_exit` ends the process; nothing runs after it.
    unsafe { libc::_exit(i32::from(!ok)) }
}

/// Waits for the forked child `pid`; whether it exited with status 0.
fn child_succeeded(pid: libc::pid_t) -> bool {
    let mut status = 0;
    // SAFETY: waits for our own child, writing its status into a local.
    let r = unsafe { libc::waitpid(pid, &mut status, 0) };
    r == pid && libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0
}

/// The payload of a `Value<u64>` as the file holds it, where the header's `payload_offset`
/// (bytes 40 to 48) says.
fn value_in_file(n: &str) -> u64 {
    let bytes = std::fs::read(std::path::Path::new("/dev/shm").join(n)).expect("read segment");
    let at = u64::from_ne_bytes(bytes[40..48].try_into().expect("8 bytes")) as usize;
    u64::from_ne_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
}

/// In a child process of the test: creates one of each handle, holds a guard of each lock,
/// forks, and has the forked child change what its copy of the value's guard shows and drop it,
/// drop the other guards while panicking, drop every handle and exit. Then checks that the names are there, the locks are
/// still held here and not poisoned, the value was not written back, and everything works, and
/// finally that dropping the handles here removes the names.
fn create_fork_and_use(args: &[String]) {
    let names: Vec<&str> = args.iter().map(String::as_str).collect();
    let value = Value::<u64>::create(names[0], 7).expect("value");
    let array = Array::<u32>::from_slice(names[1], &[1, 2, 3]).expect("array");
    let lock = Lock::create(names[2], ()).expect("lock");
    let rlock = RLock::create(names[3], ()).expect("rlock");
    let queue = Queue::<u64>::create(names[4], 4).expect("queue");
    let raw = RawValue::<u64>::create(names[5], 1).expect("raw value");
    let raw_array = RawArray::<u8>::create(names[6], 2).expect("raw array");
    let bytes = ByteQueue::create(names[7], (4, 16)).expect("byte queue");
    let joinable = JoinableQueue::<u32>::create(names[8], 4).expect("joinable queue");
    let dict = SharedDict::<u64, u64>::create(names[9], 4).expect("dict");
    queue.put(1).expect("put");
    dict.insert(1, 2).expect("insert");

    let mut vg = value.lock().expect("value lock");
    let ag = array.lock().expect("array lock");
    let lg = lock.acquire().expect("lock");
    let rg = rlock.acquire().expect("rlock");
    assert_eq!(*vg, 7);

    let Some(pid) = fork() else {
        // The forked child: its copy of the value's guard, changed and dropped; its copies of
        // the lock guards, dropped while panicking; then its copies of the handles.
        *vg = 99;
        drop(vg);
        std::panic::set_hook(Box::new(|_| {}));
        let unwound = std::panic::catch_unwind(AssertUnwindSafe(move || {
            let _held = (ag, lg, rg);
            panic!("dropping the inherited guards while unwinding");
        }));
        drop((
            value, array, lock, rlock, queue, raw, raw_array, bytes, joinable,
        ));
        drop(dict);
        exit_child(unwound.is_err());
    };
    assert!(child_succeeded(pid), "the forked child failed");

    // Nothing of ours was unlinked.
    for n in &names {
        assert!(common::exists(n), "{n} was unlinked by the forked child");
    }
    // The value's guard (the child's copy) wrote nothing back, and no lock was poisoned or
    // released: this process still holds them all.
    assert_eq!(value_in_file(names[0]), 7, "the child's guard wrote back");
    for (what, poisoned) in [
        ("value", value.is_poisoned()),
        ("array", array.is_poisoned()),
        ("lock", lock.is_poisoned()),
        ("rlock", rlock.is_poisoned()),
    ] {
        assert!(!poisoned, "the child poisoned the {what}");
    }
    assert!(matches!(lock.acquire(), Err(mpshm::LockError::Deadlock)));
    drop((vg, ag, lg, rg));
    // Everything works here as before.
    value.set(8).expect("value set");
    assert_eq!(value.get().expect("value get"), 8);
    array.set(0, 5).expect("array set");
    assert_eq!(array.to_vec().expect("to_vec"), [5, 2, 3]);
    drop(lock.acquire().expect("lock again"));
    drop(rlock.acquire().expect("rlock again"));
    assert_eq!(queue.get(), Ok(1));
    queue.put(2).expect("put");
    assert_eq!(queue.get(), Ok(2));
    raw.set(3);
    assert_eq!(raw.get(), 3);
    raw_array.set(1, 4).expect("raw array set");
    bytes.put(b"x".to_vec()).expect("byte put");
    assert_eq!(bytes.get().expect("byte get"), b"x");
    joinable.put(1).expect("joinable put");
    assert_eq!(joinable.get(), Ok(1));
    joinable.task_done().expect("task done");

    assert_eq!(dict.get(&1).expect("dict get"), Some(2));
    dict.insert(3, 4).expect("insert");
    drop((
        value, array, lock, rlock, queue, raw, raw_array, bytes, joinable,
    ));
    drop(dict);
    for n in &names {
        assert!(!common::exists(n), "{n} was not removed by its creator");
    }
    common::say("ok");
}

/// `Segment::drop` must unlink only in the process that created the segment, and a guard's
/// drop must neither write back, poison nor unlock in a child forked while it was held.
fn child_drops_nothing_of_the_parent() {
    let names: Vec<String> = [
        "fvalue", "farray", "flock", "frlock", "fqueue", "fraw", "frawarr", "fbytes", "fjoin",
        "fdict",
    ]
    .iter()
    .map(|t| name(t))
    .collect();
    let args: Vec<&str> = names.iter().map(String::as_str).collect();
    says_ok("create_fork_and_use", &args);
}

/// Runs `routine` in a child process of the test and checks that it says `ok`.
fn says_ok(routine: &str, args: &[&str]) {
    let mut child = Child::spawn(routine, args);
    assert_eq!(child.line(), "ok");
    child.join();
}

/// Where a `Lock`'s lock word is: first in the lock area, after the 256-byte header.
const LOCK_WORD: u64 = 256;

/// Takes `lock` once while another thread holds it, until this thread sleeps waiting: a wait
/// that finds the lock busy, which starts this process's lock watch. The other thread has
/// ended when this returns.
fn wait_once(lock: &Lock) {
    let me = common::thread_id();
    let holder = std::thread::scope(|s| {
        let (held_tx, held_rx) = std::sync::mpsc::channel();
        s.spawn(move || {
            let guard = lock.acquire().expect("the holder's acquire");
            held_tx.send(common::thread_id()).expect("send");
            common::wait_until_sleeping(me);
            drop(guard);
        });
        let holder = held_rx.recv().expect("held");
        drop(lock.acquire().expect("acquire"));
        holder
    });
    // Joined, the thread may still be listed for a moment while the kernel finishes its exit.
    let task = format!("/proc/self/task/{holder}");
    let start = std::time::Instant::now();
    while std::path::Path::new(&task).exists() {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(10),
            "{task} stays"
        );
        std::thread::yield_now();
    }
}

/// In a child process of the test: waits for a lock (which starts this process's lock watch),
/// forks, and in the forked child (which has no thread but the one that forked) stages a lost
/// wake-up under a waiter with a 5-second timeout: the child's own watch must wake it.
fn wait_for_a_lock_after_fork(args: &[String]) {
    let n = &args[0];
    let lock = Lock::create(n, ()).expect("lock");
    wait_once(&lock);
    let Some(pid) = fork() else {
        let waiter = Lock::open(n).expect("open");
        let rescued = std::panic::catch_unwind(AssertUnwindSafe(|| {
            common::sync::lost_wake_up_strands_no_waiter(
                n,
                LOCK_WORD,
                std::time::Duration::from_secs(5),
                move |t| {
                    waiter
                        .acquire_timeout(t)
                        .map(drop)
                        .map_err(|e| e.to_string())
                },
            );
        }));
        exit_child(rescued.is_ok());
    };
    assert!(
        child_succeeded(pid),
        "the forked child's waiter was stranded"
    );
    drop(lock);
    common::say("ok");
}

/// The lock watch runs in a forked child too: a thread of the child stranded by a robust
/// mutex's lost wake-up is woken there, though the parent's watch thread did not come through
/// the `fork`.
fn a_forked_child_watches_its_own_lock_waits() {
    says_ok("wait_for_a_lock_after_fork", &[name("fwatch").as_str()]);
}

/// A forked `Process`'s work: takes the lock `name` and says whether it could.
fn take_the_lock(name: String) -> bool {
    Lock::open(&name).is_ok_and(|lock| lock.acquire().is_ok())
}

/// In a child process of the test: waits for a lock (starting the lock watch, a second thread),
/// then starts a `Process` by `fork`, which needs this process to run one thread, and has it
/// take the lock; then takes it again here.
fn lock_then_fork_a_process(args: &[String]) {
    let n = &args[0];
    let lock = Lock::create(n, ()).expect("lock");
    wait_once(&lock);
    let mut p = Process::new(take_the_lock, n.clone());
    p.set_start_method(StartMethod::Fork);
    p.start().expect("fork, with the lock watch stopped for it");
    assert!(
        p.join().expect("join"),
        "the forked process could not take the lock"
    );
    drop(lock.acquire().expect("acquire again"));
    drop(lock);
    common::say("ok");
}

/// The lock watch's thread does not keep a process from forking a `Process`
/// (`StartMethod::Fork` needs a process of one thread): it stops for the fork and starts again
/// at the next wait, in the parent and in the child.
fn a_process_that_waited_on_a_lock_still_forks() {
    says_ok("lock_then_fork_a_process", &[name("fpwatch").as_str()]);
}

/// In a child process of the test: takes a `Lock`, a `Value`'s lock and a timed `Lock` acquire,
/// none of them busy, and says how many threads this process runs.
fn take_free_locks_and_count_threads(args: &[String]) {
    let lock = Lock::create(&args[0], ()).expect("lock");
    let value = Value::<u64>::create(&args[1], 0).expect("value");
    for _ in 0..3 {
        drop(lock.acquire().expect("acquire"));
        value.update(|v| *v += 1).expect("update");
        drop(
            lock.acquire_timeout(std::time::Duration::from_secs(1))
                .expect("acquire_timeout"),
        );
    }
    let threads = std::fs::read_dir("/proc/self/task").expect("tasks").count();
    drop((lock, value));
    common::say(&threads.to_string());
}

/// A process whose locks were never busy runs no lock watch: the thread starts at the first
/// wait that finds a lock taken, so a program that never contends keeps one thread (and
/// `StartMethod::Fork` needs nothing stopped).
fn locks_never_found_busy_start_no_thread() {
    let (l, v) = (name("fnolock"), name("fnoval"));
    let mut child = Child::spawn(
        "take_free_locks_and_count_threads",
        &[l.as_str(), v.as_str()],
    );
    assert_eq!(child.line(), "1");
    child.join();
}
