//! Python's `multiprocessing` shared state for Rust, in named POSIX shared memory.
//!
//! Typed [`Value`]s and one-dimensional [`Array`]s live in named segments guarded by robust
//! cross-process locks ([`Lock`], [`RLock`]); separately built binaries open them by name and the
//! header handshake checks that both sides agree on the type. A lock whose holder died — even by
//! `SIGKILL` — is handed to the next acquirer inside [`LockError::OwnerDied`].
//!
//! ```
//! use mpshm::{RawValue, Value};
//!
//! let name = format!("quickstart-{}", std::process::id());
//! let counter = Value::<u64>::create(&name, 0)?;       // the creator unlinks it on drop
//! let other = Value::<u64>::open(&name)?;              // e.g. in another process
//! other.update(|n| *n += 1).expect("lock");             // under the lock
//! counter.update(|n| *n += 1).expect("lock");
//! assert_eq!(counter.get().expect("lock"), 2);
//!
//! // A counter that needs no lock at all: a RawValue, one atomic instruction per add.
//! let hits = RawValue::<u64>::create(&format!("{name}-hits"), 0)?;
//! hits.fetch_add(1);
//! assert_eq!(hits.load(), 1);
//! # Ok::<(), mpshm::Error>(())
//! ```
//!
//! Messages travel through lock-free rings in the same kind of segment: [`Queue`] (bounded,
//! many producers and consumers, Python's `put`/`get`), its single-producer, single-consumer
//! mode [`SpscQueue`], and [`Pipe`] (Python's `Pipe` and `Connection`); [`wait`] sleeps on
//! several of them at once.
//!
//! Every process attached to a queue, a pipe end or an SPSC role, and every open [`Semaphore`],
//! [`Event`], [`Condition`] or [`Barrier`] handle, is recorded in the segment, and holds a
//! robust futex there that the kernel marks when the process dies: a `recv` or `get` blocked on
//! a peer that is killed fails with `Disconnected` about as soon as an OS pipe would report end
//! of file, and an `acquire` blocked on a killed holder's permit gets it as soon
//! ([`death_notice`] says whether this kernel does so, or whether peers are polled for). The
//! README's "What is guaranteed when a process dies" has the table of what `close`, drop and
//! process death do for each handle.
//!
//! Linux is the supported platform: the robust lock rests on glibc's robust process-shared
//! mutexes. Every OS call lives in one module per platform so that macOS can follow; there the
//! lock cannot be robust, and the docs will say so.

#![deny(unsafe_op_in_unsafe_fn)]
// Under `--cfg loom` only the ring (and what it stands on) is built, for its model tests.
#![cfg_attr(
    loom,
    allow(dead_code, reason = "only the ring's loom models are built")
)]
#![warn(
    clippy::undocumented_unsafe_blocks,
    missing_docs,
    missing_debug_implementations
)]

mod array;
#[cfg(not(loom))]
mod attach;
mod containers;
mod error;
#[cfg(not(loom))]
mod inspect;
#[cfg(all(test, not(loom)))]
mod layout;
#[cfg(not(loom))]
mod pipe;
#[cfg(not(loom))]
pub mod process;
#[cfg(not(loom))]
mod queue;
mod ring;
mod segment;
#[cfg(not(loom))]
mod spsc;
#[cfg(not(loom))]
mod spsc_queue;
mod sync;
mod sys;
mod value;
#[cfg(not(loom))]
mod wait;

pub use array::{Array, ArrayGuard, RawArray};
#[cfg(not(loom))]
pub use containers::{Codec, ListIndex, Plain, SharedDict, SharedList};
#[cfg(all(feature = "serde", not(loom)))]
pub use containers::{Postcard, SerdeDict, SerdeList};
pub use error::{
    AccessError, AcquireError, BarrierError, BreakCause, ConditionError, ContainerError, Error,
    GetError, GetTimeoutError, JoinError, LockError, PutError, PutTimeoutError, RecvError,
    ReleaseError, SendError, TryGetError, TryPutError,
};
#[cfg(not(loom))]
pub use error::{Exit, ProcessError};
#[cfg(not(loom))]
pub use inspect::{Attached, Inspection, LockState, Role, State, inspect};
#[cfg(not(loom))]
pub use pipe::{Connection, MAX_MESSAGE, Pipe, PipeReader, PipeWriter};
#[cfg(not(loom))]
pub use process::{
    AsyncResult, Payload, Pool, Process, ThreadPool, cpu_count, current_process, parent_process,
};
#[cfg(all(feature = "serde", not(loom)))]
pub use queue::SerdeQueue;
#[cfg(not(loom))]
pub use queue::{ByteQueue, JoinableQueue, Queue, SimpleQueue};
pub use segment::{Kind, LAYOUT_VERSION, Options, SegmentInfo, segments, unlink};
#[cfg(not(loom))]
pub use spsc_queue::{SpscConsumer, SpscProducer, SpscQueue};
pub use sync::atomic::AtomicInt;
pub use sync::{BARRIER_MAX_PARTIES, Lock, LockGuard, RLock, SEMAPHORE_MAX};
#[cfg(not(loom))]
pub use sync::{
    Barrier, BoundedSemaphore, Condition, ConditionGuard, Event, Semaphore, SemaphoreGuard,
};
pub use value::{RawValue, Value, ValueGuard};
#[cfg(not(loom))]
pub use wait::{DeathNotice, PEER_POLL, Waitable, death_notice, wait};

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
