//! [`inspect`]: what a segment holds and who uses it, read without changing anything: the
//! header, the embedded lock, the attachment records (`attach`), and each kind's own state (a
//! queue's depth, a pipe's ends, a semaphore's value, ...). The `mpshm` command's `ls`,
//! `inspect` and `gc` are built on it.
//!
//! The segment is opened read-only through the same header checks `open` makes
//! (`Segment::open_read_only`), and each kind's module reads its own state
//! (`queue::inspect`, `pipe::inspect`, ..., as each lists its layout for `layout.rs`), checking
//! the geometry in the header's parameters against the segment's size first, as its opener
//! does. Everything read is untrusted input: a value that makes no sense is reported as found
//! (a count is capped at the capacity), never used to index anything unchecked.

use crate::error::Error;
use crate::segment::{Kind, Segment, SegmentInfo, segment_info};
use crate::sys::{self, FUTEX_OWNER_DIED, FUTEX_TID_MASK, FUTEX_WAITERS};

/// What [`inspect`] finds in a segment.
///
/// ```
/// use mpshm::prelude::*;
///
/// let name = format!("doc-inspect-{}", std::process::id());
/// let q = mpshm::Queue::<u64>::create(&name, 8)?;
/// q.put(1).expect("room");
/// let found = mpshm::inspect(&name)?;
/// assert_eq!(found.info.kind, Some(mpshm::Kind::Queue));
/// match found.state {
///     mpshm::State::Queue { len, capacity, .. } => assert_eq!((len, capacity), (1, 8)),
///     other => panic!("a queue, not {other:?}"),
/// }
/// // This process put a message: it is attached as a producer.
/// assert!(found.attached.iter().any(|a| a.pid == std::process::id()
///     && a.role == mpshm::Role::Producer
///     && a.alive));
/// # Ok::<(), mpshm::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Inspection {
    /// The header's fields, as [`segments`](crate::segments) reports them.
    pub info: SegmentInfo,
    /// The kind-specific parameters stored in the header (a queue's capacity, ...).
    pub params: [u64; 4],
    /// The lock before the payload, for the kinds that have one (`Value`, `Array`, the locks,
    /// the containers, and the state lock of a semaphore, condition or barrier).
    pub lock: Option<LockState>,
    /// Every held attachment record: the processes attached to a queue, a pipe end, an SPSC
    /// role or a synchronisation primitive, alive or found dead. Kinds without records (values,
    /// arrays, locks, containers) have none: who maps those is not recorded in the segment.
    pub attached: Vec<Attached>,
    /// What the kind's own words say.
    pub state: State,
}

/// The state of a segment's lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct LockState {
    /// The thread holding it; `None` when it is free.
    pub owner_tid: Option<u32>,
    /// The process of that thread, if it still runs.
    pub owner_pid: Option<u32>,
    /// The kernel marked it: its owner died holding it, and no one has taken it since (the next
    /// acquirer gets `OwnerDied`).
    pub owner_died: bool,
    /// Its data is in doubt: a holder died or panicked, and no one has called
    /// `mark_consistent` since (every acquirer is told, as std's poisoning does).
    pub poisoned: bool,
    /// A thread sleeps waiting for it.
    pub waiters: bool,
}

/// One attachment record in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Attached {
    /// What the process is attached as.
    pub role: Role,
    /// Its pid.
    pub pid: u32,
    /// Whether it still runs (a record left by a dead process is freed by the next one that
    /// needs it, or kept to show the death: a pipe end).
    pub alive: bool,
    /// Whether the kernel tells waiters of its death at once (its record is armed, see
    /// [`death_notice`](crate::death_notice)); otherwise they look for it by polling.
    pub armed: bool,
}

/// What an attached process is to the object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Role {
    /// A queue's producer (from its first put), or an SPSC queue's producing end.
    Producer,
    /// A queue's consumer (from its first get), or an SPSC queue's consuming end.
    Consumer,
    /// End 0 or 1 of a pipe (the first and second of what `Pipe::create` returns).
    End(u8),
    /// An open handle of a semaphore, event, condition or barrier.
    Handle,
}

/// What a segment's own words say, by kind. Counts read while other processes work are a
/// snapshot: exact when nothing is in flight.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum State {
    /// A value, array or lock: the header and [`Inspection::lock`] say it all.
    Plain,
    /// A [`Queue`](crate::Queue) (any of its forms) or [`JoinableQueue`](crate::JoinableQueue).
    Queue {
        /// Messages in it.
        len: usize,
        /// How many fit.
        capacity: usize,
        /// The longest message a slot holds, in bytes.
        max_message: usize,
        /// Whether it was closed.
        closed: bool,
        /// Messages lost to peers that died mid-operation.
        lost: u64,
        /// Producers and consumers beyond the tables, counted but not by process.
        untracked: [u32; 2],
    },
    /// An [`SpscQueue`](crate::SpscQueue).
    SpscQueue {
        /// Messages in it.
        len: usize,
        /// How many fit.
        capacity: usize,
        /// The size of a message, in bytes.
        message: usize,
        /// Whether it was closed.
        closed: bool,
        /// Messages dropped as damaged.
        lost: u64,
    },
    /// A [`Pipe`](crate::Pipe).
    Pipe {
        /// Whether it was made one-way (`Pipe::create_oneway`: end 0 reads, end 1 writes).
        one_way: bool,
        /// Whether end 0 and end 1 were closed for good.
        closed: [bool; 2],
        /// Chunks (up to about 1 KiB each) sent by end 0 and end 1 and not yet received.
        queued: [usize; 2],
    },
    /// A [`Semaphore`](crate::Semaphore) or [`BoundedSemaphore`](crate::BoundedSemaphore).
    Semaphore {
        /// Free permits.
        value: u32,
        /// Permits held through guards, every process together.
        held: u64,
        /// Threads asleep waiting for a permit.
        sleepers: u32,
        /// The value it was created with.
        initial: u64,
    },
    /// An [`Event`](crate::Event).
    Event {
        /// Whether the flag is set.
        set: bool,
        /// Threads asleep in `wait`.
        waiters: u32,
    },
    /// A [`Condition`](crate::Condition).
    Condition {
        /// Threads waiting (or notified and not yet gone).
        waiting: usize,
        /// The name of the `Lock` or `RLock` it waits with, when not its own.
        lock: Option<String>,
    },
    /// A [`Barrier`](crate::Barrier).
    Barrier {
        /// Parties it waits for.
        parties: u64,
        /// Parties waiting in the current generation.
        waiting: u32,
        /// Whether it is broken.
        broken: bool,
    },
    /// A [`SharedDict`](crate::SharedDict) or [`SharedList`](crate::SharedList).
    Container {
        /// Entries in it.
        len: usize,
        /// The most it holds.
        capacity: usize,
        /// Data bytes per entry.
        entry_bytes: usize,
    },
}

/// What a kind's module reads of its segment for [`inspect`].
pub(crate) struct Found {
    pub(crate) state: State,
    pub(crate) attached: Vec<Attached>,
}

impl Found {
    /// A state and no records.
    pub(crate) fn plain(state: State) -> Found {
        Found {
            state,
            attached: Vec::new(),
        }
    }
}

/// The records of `table`, each as `role(index)`.
pub(crate) fn records(
    table: &crate::attach::Table<'_>,
    role: impl Fn(usize) -> Role,
) -> Vec<Attached> {
    table
        .peek()
        .into_iter()
        .map(|p| Attached {
            role: role(p.index),
            pid: p.pid,
            alive: p.alive,
            armed: p.armed,
        })
        .collect()
}

/// Reads what the segment `name` holds and who uses it, without changing anything in it, and
/// without opening it the way a handle does (no record is taken, no lock touched).
///
/// See [`Inspection`] for an example.
///
/// # Errors
///
/// [`Error::InvalidName`], [`Error::NotFound`], [`Error::NotRegular`];
/// [`Error::IncompatibleVersion`] for a segment of another layout version (its header is not
/// read past the version: [`segments`](crate::segments) lists it); [`Error::NotReady`] while
/// its creator has not finished it (or died before it did); [`Error::Corrupt`] for a header or
/// geometry that does not hold together (or a file without an mpshm header); [`Error::Io`].
pub fn inspect(name: &str) -> Result<Inspection, Error> {
    let seg = Segment::open_read_only(name)?;
    let corrupt = |reason: String| Error::Corrupt {
        name: seg.name().to_owned(),
        reason,
    };
    let info = segment_info(seg.name()).ok_or_else(|| corrupt("its header vanished".into()))?;
    let found = match seg.kind() {
        Kind::Value | Kind::RawValue | Kind::Array | Kind::RawArray | Kind::Lock | Kind::RLock => {
            Ok(Found::plain(State::Plain))
        }
        Kind::Queue | Kind::JoinableQueue => crate::queue::inspect(&seg),
        Kind::SpscQueue => crate::spsc_queue::inspect(&seg),
        Kind::Pipe => crate::pipe::inspect(&seg),
        Kind::Dict | Kind::List => crate::containers::store::inspect(&seg),
        Kind::Semaphore
        | Kind::BoundedSemaphore
        | Kind::Event
        | Kind::Condition
        | Kind::Barrier => crate::sync::inspect(&seg),
    }
    .map_err(corrupt)?;
    Ok(Inspection {
        info,
        params: seg.params(),
        lock: seg.mutex().map(|m| {
            // Relaxed: a snapshot; nothing else is read through it.
            let word = m.word().load(std::sync::atomic::Ordering::Relaxed);
            let tid = word & FUTEX_TID_MASK;
            let poison = seg
                .poison_word()
                .is_some_and(|p| p.load(std::sync::atomic::Ordering::Relaxed) != 0);
            LockState {
                owner_tid: (tid != 0).then_some(tid),
                owner_pid: sys::process_of_thread(tid),
                owner_died: word & FUTEX_OWNER_DIED != 0,
                poisoned: poison,
                waiters: word & FUTEX_WAITERS != 0,
            }
        }),
        attached: found.attached,
        state: found.state,
    })
}
