//! The shape of the API across every handle: one way to create and open (`Shm`), options that
//! reach every handle, channels that iterate and never allocate per plain-data message,
//! handles that move between threads.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::Duration;

use common::{Child, name};
use mpshm::prelude::*;
use mpshm::{
    Array, Barrier, BoundedSemaphore, ByteQueue, Condition, ConditionLock, Connection, Error,
    Event, JoinableQueue, Lock, Options, Pipe, PipeReader, PipeWriter, Queue, RLock, RawArray,
    RawValue, RecvTimeoutError, Semaphore, SendTimeoutError, SharedDict, SharedList, SimpleQueue,
    SpscConsumer, SpscProducer, SpscQueue, TrySendError, Value,
};

fn main() {
    common::run(
        tests![
            handles_are_send_and_sync,
            guards_are_not_send,
            every_handle_opens_or_creates,
            create_unique_makes_a_fresh_name,
            options_reach_every_handle,
            max_attached_reaches_the_family,
            receivers_iterate,
            pipe_try_send_and_send_timeout,
            no_allocation_per_plain_message
        ],
        routines![send_five_then_close],
    );
}

/// Counts this thread's allocations, so that tests running beside each other do not count each
/// other's.
struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: every call is passed on to `System` unchanged; the count is a thread-local `Cell`
// with a constant initialiser and no destructor, which allocates nothing.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        // SAFETY: the caller's contract, passed on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract, passed on.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        // SAFETY: the caller's contract, passed on.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static COUNTING: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

/// Every handle moves between threads and is shared by them: checked when this compiles.
fn handles_are_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Value<u64>>();
    check::<RawValue<u64>>();
    check::<Array<u64>>();
    check::<RawArray<u64>>();
    check::<Lock>();
    check::<RLock>();
    check::<Semaphore>();
    check::<BoundedSemaphore>();
    check::<Event>();
    check::<Condition>();
    check::<Barrier>();
    check::<Queue<u64>>();
    check::<ByteQueue>();
    check::<JoinableQueue<u64>>();
    check::<SimpleQueue<u64>>();
    check::<SpscProducer<u64>>();
    check::<SpscConsumer<u64>>();
    check::<Connection>();
    check::<PipeReader>();
    check::<PipeWriter>();
    check::<SharedDict<u64, u64>>();
    check::<SharedList<u64>>();
    #[cfg(feature = "serde")]
    {
        check::<mpshm::SerdeQueue<String>>();
        check::<mpshm::SerdeDict<String, String>>();
        check::<mpshm::SerdeList<String>>();
    }
    check::<mpshm::Process<u64>>();
    check::<mpshm::Pool>();
    check::<mpshm::ThreadPool>();
    check::<mpshm::AsyncResult<u64>>();
    // A semaphore's permit is the process's, not the thread's: its guard may move.
    check::<mpshm::SemaphoreGuard<'static>>();
}

/// Implemented for every type; the second implementation only for `Send` ones, so that naming
/// the item is ambiguous (and does not compile) for a `Send` type.
trait AmbiguousIfSend<A> {
    fn some_item() {}
}
impl<T: ?Sized> AmbiguousIfSend<()> for T {}
#[allow(
    dead_code,
    reason = "only there to make the call ambiguous for Send types"
)]
struct IsSend;
impl<T: ?Sized + Send> AmbiguousIfSend<IsSend> for T {}

/// A lock's guard must be dropped on the thread that took it (a robust pthread mutex is
/// unlocked by its owner only): checked when this compiles. Each line stops compiling if its
/// type becomes `Send`.
fn guards_are_not_send() {
    <mpshm::LockGuard<'static> as AmbiguousIfSend<_>>::some_item();
    <mpshm::ValueGuard<'static, u64> as AmbiguousIfSend<_>>::some_item();
    <mpshm::ArrayGuard<'static, u64> as AmbiguousIfSend<_>>::some_item();
    <mpshm::ConditionGuard<'static> as AmbiguousIfSend<_>>::some_item();
}

/// `open_or_create` creates, then opens what it created, for every handle.
fn every_handle_opens_or_creates() {
    fn twice<H: Shm>(tag: &str, init: impl Fn() -> H::Init) -> (H, H) {
        let n = name(tag);
        let first = H::open_or_create(&n, init()).expect("creates");
        let second = H::open_or_create(&n, init()).expect("opens");
        assert_eq!(first.name(), second.name());
        (first, second)
    }
    let (a, b) = twice::<Value<u32>>("v", || 7);
    b.set(8).expect("set");
    assert_eq!(a.get().expect("get"), 8);
    twice::<RawValue<u32>>("rv", || 7);
    let (a, b) = twice::<Array<u8>>("a", || 4);
    b.set(3, 1).expect("set");
    assert_eq!(a.to_vec().expect("to_vec"), [0, 0, 0, 1]);
    twice::<RawArray<u8>>("ra", || 4);
    twice::<Lock>("l", || ());
    twice::<RLock>("rl", || ());
    let (a, b) = twice::<Semaphore>("s", || 2);
    drop(b.acquire().expect("acquire"));
    assert_eq!(a.value(), 2);
    twice::<BoundedSemaphore>("bs", || 2);
    let (a, b) = twice::<Event>("e", || ());
    b.set();
    assert!(a.is_set());
    twice::<Condition>("c", ConditionLock::default);
    twice::<Barrier>("b", || 2);
    let (a, b) = twice::<Queue<u64>>("q", || 4);
    a.put(5).expect("put");
    assert_eq!(b.get(), Ok(5));
    twice::<ByteQueue>("bq", || (4, 16));
    twice::<JoinableQueue<u64>>("jq", || 4);
    twice::<SimpleQueue<u64>>("sq", || 4);
    twice::<SharedDict<u32, u32>>("d", || 4);
    twice::<SharedList<u32>>("li", || 4);
    // The ends of two-ended things: the first takes one end and the second the other.
    let tx = SpscProducer::<u64>::open_or_create(&name("spsc"), 4).expect("creates");
    let rx = SpscConsumer::<u64>::open_or_create(tx.name(), 4).expect("opens");
    tx.put(9).expect("put");
    assert_eq!(rx.get(), Ok(9));
    let (a, b) = twice::<Connection>("p", || ());
    a.send(&1u8).expect("send");
    assert_eq!(b.recv::<u8>(), Ok(1));
    let r = PipeReader::open_or_create(&name("ow"), ()).expect("creates");
    let w = PipeWriter::open_or_create(r.name(), ()).expect("opens");
    w.send(&2u8).expect("send");
    assert_eq!(r.recv::<u8>(), Ok(2));
}

fn create_unique_makes_a_fresh_name() {
    let a = Value::<u64>::create_unique(1).expect("create");
    let b = Value::<u64>::create_unique(2).expect("create");
    assert_ne!(a.name(), b.name());
    assert!(a.name().starts_with("mpu") && a.name().len() <= 30, "{a:?}");
    // Another process (here, handle) opens it by the name it was given.
    let other = Value::<u64>::open(a.name()).expect("open by its name");
    assert_eq!(other.get().expect("get"), 1);
    let (qa, qb) = (a.name().to_owned(), b.name().to_owned());
    drop((a, b, other));
    assert!(
        !common::exists(&qa) && !common::exists(&qb),
        "removed on drop"
    );
    // Every handle has it, the two-ended ones too.
    let tx = SpscProducer::<u8>::create_unique(2).expect("create");
    let rx = SpscConsumer::<u8>::open(tx.name()).expect("open");
    tx.put(1).expect("put");
    assert_eq!(rx.get(), Ok(1));
    let q = ByteQueue::create_unique((2, 8)).expect("create");
    assert!(q.name().starts_with("mpu"));
}

/// The permission bits and the type tag reach every handle: each is created under a mode and a
/// tag of its own, and opened without the tag (refused) and with it.
fn options_reach_every_handle() {
    let mut opts = Options::new();
    opts.mode(0o640).type_tag("app::thing");
    /// Creates an `H` with the options and opens it as an `O` (its other end, for a two-ended
    /// thing) without them and with them.
    fn check_as<H: Shm, O: Shm>(tag: &str, init: H::Init, opts: &Options) {
        use std::os::unix::fs::PermissionsExt;
        let n = name(tag);
        let h = H::create_with(&n, init, opts).expect("create");
        let meta = std::fs::metadata(std::path::Path::new("/dev/shm").join(&n)).expect("stat");
        // The umask may take bits away, never add them.
        assert_eq!(meta.permissions().mode() & 0o777 & !0o640, 0, "{tag}");
        match O::open(&n) {
            Err(Error::TypeMismatch { .. }) => {}
            Err(e) => panic!("{tag}: expected TypeMismatch, got {e}"),
            Ok(_) => panic!("{tag}: opened without the tag"),
        }
        O::open_with(&n, opts).expect("open with the tag");
        drop(h);
    }
    fn check<H: Shm>(tag: &str, init: H::Init, opts: &Options) {
        check_as::<H, H>(tag, init, opts);
    }
    check::<Value<u64>>("v", 1, &opts);
    check::<RawValue<u64>>("rv", 1, &opts);
    check::<Array<u64>>("a", 2, &opts);
    check::<RawArray<u64>>("ra", 2, &opts);
    check::<Lock>("l", (), &opts);
    check::<RLock>("rl", (), &opts);
    check::<Semaphore>("s", 1, &opts);
    check::<BoundedSemaphore>("bs", 1, &opts);
    check::<Event>("e", (), &opts);
    check::<Condition>("c", ConditionLock::Own, &opts);
    check::<Barrier>("b", 2, &opts);
    check::<Queue<u64>>("q", 2, &opts);
    check::<ByteQueue>("bq", (2, 8), &opts);
    check::<JoinableQueue<u64>>("jq", 2, &opts);
    check::<SimpleQueue<u64>>("sq", 2, &opts);
    #[cfg(feature = "serde")]
    check::<mpshm::SerdeQueue<String>>("sdq", (2, 8), &opts);
    check_as::<SpscConsumer<u64>, SpscProducer<u64>>("spsc", 2, &opts);
    check::<Connection>("p", (), &opts);
    check_as::<PipeReader, PipeWriter>("pr", (), &opts);
    check::<SharedDict<u32, u32>>("d", 2, &opts);
    check::<SharedList<u32>>("li", 2, &opts);
    // The pair constructors take them too.
    let (a, _b) = Pipe::create_with(&name("pair"), &opts).expect("create");
    assert!(matches!(
        Connection::open(a.name()),
        Err(Error::TypeMismatch { .. })
    ));
    let (tx, _rx) = SpscQueue::create_with::<u64>(&name("spair"), 2, &opts).expect("create");
    assert!(matches!(
        SpscProducer::<u64>::open(tx.name()),
        Err(Error::TypeMismatch { .. })
    ));
}

/// `max_attached` sets how many handles a primitive of the synchronisation family keeps open.
fn max_attached_reaches_the_family() {
    let mut opts = Options::new();
    opts.max_attached(2);
    let n = name("ev");
    let a = Event::create_with(&n, (), &opts).expect("create");
    let b = Event::open(&n).expect("the second record");
    assert!(matches!(Event::open(&n), Err(Error::InUse { .. })));
    drop(b);
    let _c = Event::open(&n).expect("a record is free again");
    let n = name("sem");
    let _s = Semaphore::create_with(&n, 1, &opts).expect("create");
    let _t = Semaphore::open(&n).expect("the second record");
    assert!(matches!(Semaphore::open(&n), Err(Error::InUse { .. })));
    opts.max_attached(0);
    assert!(matches!(
        Barrier::create_with(&name("bad"), 2, &opts),
        Err(Error::InvalidLength { .. })
    ));
    drop(a);
}

fn send_five_then_close(args: &[String]) {
    let w = PipeWriter::open(&args[0]).expect("open");
    for i in 0..5u32 {
        w.send_bytes(&i.to_le_bytes()).expect("send");
    }
}

/// Every receiving handle iterates: `iter` until the other side is done, `try_iter` over what
/// is there now, and `for x in &receiver`.
fn receivers_iterate() {
    let q = Queue::<u32>::create(&name("qi"), 8).expect("create");
    for i in 0..5 {
        q.put(i).expect("put");
    }
    assert_eq!(q.try_iter().take(2).collect::<Vec<_>>(), [0, 1]);
    assert_eq!(q.try_iter().collect::<Vec<_>>(), [2, 3, 4]);
    q.put(5).expect("put");
    q.close();
    let mut got = Vec::new();
    for x in &q {
        got.push(x);
    }
    assert_eq!(got, [5]);

    let (tx, rx) = SpscQueue::create::<u16>(&name("si"), 8).expect("create");
    for i in 0..4 {
        tx.put(i).expect("put");
    }
    assert_eq!(rx.try_iter().collect::<Vec<_>>(), [0, 1, 2, 3]);
    tx.put(9).expect("put");
    tx.close();
    assert_eq!((&rx).into_iter().collect::<Vec<_>>(), [9]);

    let jq = JoinableQueue::<u8>::create(&name("ji"), 4).expect("create");
    jq.put(1).expect("put");
    jq.close();
    assert_eq!((&jq).into_iter().collect::<Vec<_>>(), [1]);

    // A pipe's reader iterates until its writer (here, in another process) has closed.
    let n = name("pi");
    let (r, w) = Pipe::create_oneway(&n).expect("create");
    w.release();
    let child = Child::spawn("send_five_then_close", &[&n]);
    let got: Vec<u32> = r
        .iter()
        .map(|m| u32::from_le_bytes(m.try_into().expect("4 bytes")))
        .collect();
    assert_eq!(got, [0, 1, 2, 3, 4]);
    child.join();
    assert_eq!(r.try_iter().count(), 0);
}

/// `try_send` never waits, `send_timeout` waits as long as asked, and neither leaves part of a
/// message behind.
fn pipe_try_send_and_send_timeout() {
    let (a, b) = Pipe::create(&name("ts")).expect("create");
    let big = [7u8; 1000];
    let mut sent = 0;
    loop {
        match a.try_send(&big) {
            Ok(()) => sent += 1,
            Err(TrySendError::Full) => break,
            Err(e) => panic!("{e}"),
        }
    }
    assert!(sent > 100, "the ring holds {sent} messages of 1000 B");
    common::timed(Duration::from_millis(50), || {
        assert_eq!(
            a.send_timeout(&big, Duration::from_millis(50)),
            Err(SendTimeoutError::Timeout)
        );
    });
    // Every message sent whole, and only those: the timed-out one left nothing.
    for _ in 0..sent {
        assert_eq!(b.try_recv::<[u8; 1000]>(), Ok(big));
    }
    assert_eq!(
        b.recv_timeout::<[u8; 1000]>(Duration::from_millis(10)),
        Err(RecvTimeoutError::Timeout)
    );
    a.send_timeout(&1u64, Duration::from_secs(1)).expect("room");
    assert_eq!(b.recv::<u64>(), Ok(1));
    drop(b);
    assert_eq!(a.try_send(&1u64), Err(TrySendError::Disconnected));
    assert_eq!(
        a.send_timeout(&1u64, Duration::from_secs(1)),
        Err(SendTimeoutError::Disconnected)
    );
}

/// The `try_` and `_timeout` receives (and the puts and sends before them) of plain data
/// allocate nothing per message, once a handle has been used.
fn no_allocation_per_plain_message() {
    let q = Queue::<[u64; 8]>::create(&name("aq"), 16).expect("create");
    let (tx, rx) = SpscQueue::create::<[u64; 8]>(&name("as"), 16).expect("create");
    let (a, b) = Pipe::create(&name("ap")).expect("create");
    let msg = [3u64; 8];
    let round = || {
        q.try_put(msg).expect("room");
        assert_eq!(q.try_get(), Ok(msg));
        q.put_timeout(msg, Duration::from_secs(1)).expect("room");
        assert_eq!(q.get_timeout(Duration::from_secs(1)), Ok(msg));
        tx.try_put(msg).expect("room");
        assert_eq!(rx.try_get(), Ok(msg));
        tx.put_timeout(msg, Duration::from_secs(1)).expect("room");
        assert_eq!(rx.get_timeout(Duration::from_secs(1)), Ok(msg));
        a.try_send(&msg).expect("room");
        assert_eq!(b.try_recv::<[u64; 8]>(), Ok(msg));
        a.send_timeout(&msg, Duration::from_secs(1)).expect("room");
        assert_eq!(b.recv_timeout::<[u64; 8]>(Duration::from_secs(1)), Ok(msg));
    };
    // The first uses set up this thread's state (fence registration, thread ids).
    for _ in 0..10 {
        round();
    }
    let before = allocations();
    for _ in 0..1000 {
        round();
    }
    assert_eq!(allocations() - before, 0, "allocations in 1000 rounds");
}
