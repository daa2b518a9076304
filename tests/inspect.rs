//! `mpshm::inspect`: what it reads of every kind, that it changes nothing, and that a damaged,
//! unfinished or foreign segment is a typed error, never a panic or a guess.

mod common;

use std::io::{Seek, SeekFrom, Write};
use std::time::Duration;

use common::{Child, name};
use mpshm::prelude::*;
use mpshm::{Error, Kind, Role, State};

fn main() {
    common::run(
        tests![
            queue_depth_and_sides,
            spsc_and_pipe_ends,
            lock_owner_and_poison,
            sync_family_state,
            containers_and_plain_kinds,
            a_dead_holder_is_shown_not_freed,
            scribbled_geometry_is_corrupt,
            other_versions_are_not_misread,
            unready_and_foreign_files
        ],
        routines![attach_as_producer, take_lock_and_wait],
    );
}

fn shm_path(n: &str) -> std::path::PathBuf {
    std::path::Path::new("/dev/shm").join(n)
}

/// Overwrites `bytes` at `offset` of the file behind segment `n`.
fn scribble(n: &str, offset: u64, bytes: &[u8]) {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(shm_path(n))
        .expect("open file");
    f.seek(SeekFrom::Start(offset)).expect("seek");
    f.write_all(bytes).expect("scribble");
}

/// The header's `params` (four u64) start here; `version` is at 8.
const PARAMS: u64 = 88;
const VERSION: u64 = 8;

fn me() -> u32 {
    std::process::id()
}

fn queue_depth_and_sides() {
    let n = name("iq");
    let q = mpshm::Queue::<u32>::create(&n, 8).expect("create");
    let found = mpshm::inspect(&n).expect("inspect");
    assert_eq!(found.info.kind, Some(Kind::Queue));
    assert_eq!(found.info.version, mpshm::LAYOUT_VERSION);
    assert!(found.attached.is_empty(), "no put or get yet");
    assert!(found.lock.is_none());
    q.put(1).expect("put");
    q.put(2).expect("put");
    q.get().expect("get");
    let found = mpshm::inspect(&n).expect("inspect");
    match found.state {
        State::Queue {
            len,
            capacity,
            max_message,
            closed,
            lost,
            untracked,
        } => {
            assert_eq!((len, capacity, max_message), (1, 8, 4));
            assert!(!closed);
            assert_eq!((lost, untracked), (0, [0, 0]));
        }
        other => panic!("not a queue: {other:?}"),
    }
    let roles: Vec<(Role, u32, bool)> = found
        .attached
        .iter()
        .map(|a| (a.role, a.pid, a.alive))
        .collect();
    assert_eq!(
        roles,
        [(Role::Producer, me(), true), (Role::Consumer, me(), true)]
    );
    q.close();
    assert!(matches!(
        mpshm::inspect(&n).expect("inspect").state,
        State::Queue { closed: true, .. }
    ));
}

fn spsc_and_pipe_ends() {
    let n = name("isp");
    let (tx, rx) = mpshm::SpscQueue::create::<u64>(&n, 4).expect("create");
    tx.put(7).expect("put");
    let found = mpshm::inspect(&n).expect("inspect");
    assert!(matches!(
        found.state,
        State::SpscQueue {
            len: 1,
            capacity: 4,
            message: 8,
            closed: false,
            ..
        }
    ));
    assert_eq!(found.attached.len(), 2);
    rx.release();
    let found = mpshm::inspect(&n).expect("inspect");
    assert_eq!(
        found.attached.iter().map(|a| a.role).collect::<Vec<_>>(),
        [Role::Producer],
        "the released consumer's record is free"
    );
    drop(tx);

    let p = name("ipipe");
    let (a, b) = mpshm::Pipe::create(&p).expect("create");
    a.send_bytes(b"hello").expect("send");
    drop(b);
    let found = mpshm::inspect(&p).expect("inspect");
    match found.state {
        State::Pipe {
            one_way,
            closed,
            queued,
        } => {
            assert!(!one_way);
            assert_eq!(closed, [false, true]);
            assert_eq!(queued, [1, 0], "one chunk from end 0, not yet received");
        }
        other => panic!("not a pipe: {other:?}"),
    }
    assert_eq!(
        found
            .attached
            .iter()
            .map(|a| (a.role, a.pid))
            .collect::<Vec<_>>(),
        [(Role::End(0), me())]
    );
    drop(a);
}

fn lock_owner_and_poison() {
    let n = name("ilock");
    let lock = mpshm::Lock::create(&n, ()).expect("create");
    let free = mpshm::inspect(&n).expect("inspect").lock.expect("a lock");
    assert_eq!((free.owner_tid, free.owner_pid), (None, None));
    assert!(!free.owner_died && !free.poisoned);
    let guard = lock.acquire().expect("acquire");
    let held = mpshm::inspect(&n).expect("inspect").lock.expect("a lock");
    assert_eq!(held.owner_tid, Some(common::thread_id()));
    assert_eq!(held.owner_pid, Some(me()));
    drop(guard);

    // Another process dies holding it: the kernel marks it, and the next acquirer is told.
    let mut child = Child::spawn("take_lock_and_wait", &[&n]);
    child.wait_ready();
    child.kill();
    let dead = mpshm::inspect(&n).expect("inspect").lock.expect("a lock");
    assert!(dead.owner_died, "{dead:?}");
    assert_eq!(dead.owner_pid, None);
    match lock.acquire() {
        Err(mpshm::LockError::OwnerDied(g)) => drop(g),
        other => panic!("expected OwnerDied, got {:?}", other.map(|_| ())),
    }
    let poisoned = mpshm::inspect(&n).expect("inspect").lock.expect("a lock");
    assert!(poisoned.poisoned && !poisoned.owner_died, "{poisoned:?}");
}

fn take_lock_and_wait(args: &[String]) {
    let lock = mpshm::Lock::open(&args[0]).expect("open");
    let _guard = lock.acquire().expect("acquire");
    common::ready();
    common::park();
}

fn sync_family_state() {
    let s = name("isem");
    let sem = mpshm::Semaphore::create(&s, 3).expect("create");
    let g = sem.acquire().expect("acquire");
    let found = mpshm::inspect(&s).expect("inspect");
    assert!(
        matches!(
            found.state,
            State::Semaphore {
                value: 2,
                held: 1,
                sleepers: 0,
                initial: 3
            }
        ),
        "{:?}",
        found.state
    );
    assert!(found.lock.is_some(), "its state lock");
    assert_eq!(found.attached.len(), 1);
    assert_eq!(found.attached[0].role, Role::Handle);
    drop(g);

    let e = name("iev");
    let ev = mpshm::Event::create(&e, ()).expect("create");
    assert!(matches!(
        mpshm::inspect(&e).expect("inspect").state,
        State::Event { set: false, .. }
    ));
    ev.set();
    assert!(matches!(
        mpshm::inspect(&e).expect("inspect").state,
        State::Event { set: true, .. }
    ));

    let b = name("ibar");
    let _bar = mpshm::Barrier::create(&b, 3).expect("create");
    assert!(matches!(
        mpshm::inspect(&b).expect("inspect").state,
        State::Barrier {
            parties: 3,
            waiting: 0,
            broken: false
        }
    ));

    let c = name("icond");
    let cond = mpshm::Condition::create(&c, mpshm::ConditionLock::Own).expect("create");
    std::thread::scope(|sc| {
        let waiter = common::blocked(sc, || {
            let mut g = cond.acquire().expect("acquire");
            assert!(
                g.wait_timeout(Duration::from_secs(20)).expect("wait"),
                "notified"
            );
        });
        let found = mpshm::inspect(&c).expect("inspect");
        assert!(
            matches!(
                found.state,
                State::Condition {
                    waiting: 1,
                    lock: None
                }
            ),
            "{:?}",
            found.state
        );
        cond.acquire().expect("acquire").notify_all();
        waiter.join().expect("waiter");
    });
}

fn containers_and_plain_kinds() {
    let d = name("idict");
    let dict = mpshm::SharedDict::<u64, u64>::create(&d, 10).expect("create");
    dict.insert(1, 2).expect("insert");
    dict.insert(3, 4).expect("insert");
    let found = mpshm::inspect(&d).expect("inspect");
    assert!(
        matches!(
            found.state,
            State::Container {
                len: 2,
                capacity: 10,
                ..
            }
        ),
        "{:?}",
        found.state
    );

    let v = name("ival");
    let _value = mpshm::Value::<u64>::create(&v, 5).expect("create");
    let found = mpshm::inspect(&v).expect("inspect");
    assert_eq!(found.state, State::Plain);
    assert_eq!(found.info.kind, Some(Kind::Value));
    assert_eq!(found.info.type_tag, "u64");
    assert!(found.lock.is_some());
    let r = name("iraw");
    let _raw = mpshm::RawArray::<u16>::create(&r, 3).expect("create");
    let found = mpshm::inspect(&r).expect("inspect");
    assert_eq!((found.state, found.lock), (State::Plain, None));
    assert!(found.info.created.is_some());
}

fn attach_as_producer(args: &[String]) {
    let q = mpshm::Queue::<u64>::open(&args[0]).expect("open");
    q.put(1).expect("put");
    common::ready();
    common::park();
}

/// Inspecting never frees a record: a dead producer stays listed, dead, until the queue itself
/// finds it dead.
fn a_dead_holder_is_shown_not_freed() {
    let n = name("idead");
    let q = mpshm::Queue::<u64>::create(&n, 4).expect("create");
    let mut child = Child::spawn("attach_as_producer", &[&n]);
    child.wait_ready();
    let pid = child.pid();
    let producer = |found: &mpshm::Inspection| {
        found
            .attached
            .iter()
            .find(|a| a.pid == pid && a.role == Role::Producer)
            .map(|a| a.alive)
    };
    assert_eq!(producer(&mpshm::inspect(&n).expect("inspect")), Some(true));
    child.kill();
    for _ in 0..2 {
        assert_eq!(
            producer(&mpshm::inspect(&n).expect("inspect")),
            Some(false),
            "shown dead, and left in place"
        );
    }
    assert_eq!(q.get(), Ok(1));
    assert_eq!(q.try_get(), Err(mpshm::TryGetError::Disconnected));
    assert_eq!(
        producer(&mpshm::inspect(&n).expect("inspect")),
        None,
        "freed by the queue that found it dead"
    );
}

fn expect_corrupt(r: Result<mpshm::Inspection, Error>, what: &str) {
    assert!(
        matches!(r, Err(Error::Corrupt { .. })),
        "{what}: expected Corrupt, got {r:?}"
    );
}

/// Makes a segment of some kind under a name; the handle keeps it.
type Maker = Box<dyn Fn(&str) -> Box<dyn std::any::Any>>;

/// Parameters no opener would accept: `inspect` checks them as the opener does, and says so.
fn scribbled_geometry_is_corrupt() {
    let huge = u64::MAX.to_le_bytes();
    let one = 1u64.to_le_bytes();
    let cases: Vec<(&str, Maker, u64, [u8; 8])> = vec![
        (
            "queue capacity",
            Box::new(|n| Box::new(mpshm::Queue::<u64>::create(n, 4).expect("create"))),
            PARAMS,
            huge,
        ),
        (
            "queue attached",
            Box::new(|n| Box::new(mpshm::Queue::<u64>::create(n, 4).expect("create"))),
            PARAMS + 16,
            huge,
        ),
        (
            "spsc message size",
            Box::new(|n| Box::new(mpshm::SpscQueue::create::<u64>(n, 4).expect("create"))),
            PARAMS + 8,
            huge,
        ),
        (
            "pipe slots",
            Box::new(|n| Box::new(mpshm::Pipe::create(n).expect("create"))),
            PARAMS,
            huge,
        ),
        (
            "semaphore records",
            Box::new(|n| Box::new(mpshm::Semaphore::create(n, 1).expect("create"))),
            PARAMS + 8,
            huge,
        ),
        (
            "event records",
            Box::new(|n| Box::new(mpshm::Event::create(n, ()).expect("create"))),
            PARAMS + 8,
            one,
        ),
        (
            "barrier parties",
            Box::new(|n| Box::new(mpshm::Barrier::create(n, 2).expect("create"))),
            PARAMS,
            [0; 8],
        ),
        (
            "condition slots",
            Box::new(|n| {
                Box::new(mpshm::Condition::create(n, mpshm::ConditionLock::Own).expect("create"))
            }),
            PARAMS,
            huge,
        ),
        (
            "dict capacity",
            Box::new(|n| Box::new(mpshm::SharedDict::<u64, u64>::create(n, 4).expect("create"))),
            PARAMS,
            huge,
        ),
    ];
    for (what, make, offset, bytes) in cases {
        let n = name("igeo");
        let handle = make(&n);
        scribble(&n, offset, &bytes);
        expect_corrupt(mpshm::inspect(&n), what);
        drop(handle);
    }
    // A header field `open` checks: the same error from `inspect`.
    let n = name("igeo");
    let v = mpshm::Value::<u64>::create(&n, 1).expect("create");
    scribble(&n, 24, &huge); // total size
    expect_corrupt(mpshm::inspect(&n), "total size");
    drop(v);
}

/// A segment of another layout version: `inspect` refuses it by its version alone, and
/// `segments` reads the header of an older one (its header is this one's) but nothing of a
/// newer one.
fn other_versions_are_not_misread() {
    let n = name("iver");
    let v = mpshm::Value::<u64>::create(&n, 1).expect("create");
    let listed = |n: &str| {
        mpshm::segments()
            .expect("list")
            .into_iter()
            .find(|s| s.name == n)
            .expect("listed")
    };
    let newer = mpshm::LAYOUT_VERSION + 1;
    scribble(&n, VERSION, &newer.to_le_bytes());
    match mpshm::inspect(&n) {
        Err(Error::IncompatibleVersion {
            found, supported, ..
        }) => assert_eq!((found, supported), (newer, mpshm::LAYOUT_VERSION)),
        other => panic!("expected IncompatibleVersion, got {other:?}"),
    }
    let info = listed(&n);
    assert_eq!(info.version, newer);
    assert_eq!((info.kind, info.creator_pid, info.elem_size), (None, 0, 0));
    assert!(!info.creator_alive && info.type_tag.is_empty());

    let older = mpshm::LAYOUT_VERSION - 1;
    scribble(&n, VERSION, &older.to_le_bytes());
    assert!(matches!(
        mpshm::inspect(&n),
        Err(Error::IncompatibleVersion { found, .. }) if found == older
    ));
    let info = listed(&n);
    assert_eq!(info.version, older);
    assert_eq!(info.kind, Some(Kind::Value));
    assert_eq!((info.creator_pid, info.creator_alive), (me(), true));
    drop(v);
}

fn unready_and_foreign_files() {
    let n = name("ifor");
    std::fs::write(shm_path(&n), b"hello, not a segment").expect("write");
    expect_corrupt(mpshm::inspect(&n), "a short foreign file");
    std::fs::write(shm_path(&n), vec![7u8; 4096]).expect("write");
    expect_corrupt(mpshm::inspect(&n), "a foreign file");
    assert!(mpshm::segments().expect("list").iter().all(|s| s.name != n));
    std::fs::remove_file(shm_path(&n)).expect("remove");
    assert!(matches!(mpshm::inspect(&n), Err(Error::NotFound { .. })));
    assert!(matches!(
        mpshm::inspect("no/slash"),
        Err(Error::InvalidName { .. })
    ));

    // A creator that has not published it yet (here: its ready word scribbled back to 0).
    let v = mpshm::Value::<u64>::create(&n, 1).expect("create");
    scribble(&n, 16, &[0; 4]);
    assert!(matches!(mpshm::inspect(&n), Err(Error::NotReady { .. })));
    drop(v);
}
