//! Python's `multiprocessing` shared state for Rust, in named POSIX shared memory.
//!
//! Typed [`Value`]s and one-dimensional [`Array`]s live in named segments guarded by robust
//! cross-process locks ([`Lock`], [`RLock`]); separately built binaries open them by name and the
//! header handshake checks that both sides agree on the type. A lock whose holder died — even by
//! `SIGKILL` — is handed to the next acquirer inside [`LockError::OwnerDied`].
//!
//! ```
//! use mpshm::prelude::*;
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
//! Every handle is created and opened the same way, through [`Shm`] (in [`prelude`]):
//! `create(name, init)`, `open(name)`, `open_or_create(name, init)`, `create_unique(init)`, each
//! also with [`Options`]. What crosses between processes is plain data that names itself, a
//! [`SharedType`] (the numbers and arrays, or a struct of yours through [`shared_type!`]):
//! `open` checks its name, size and fields, so two binaries built apart share a struct by name
//! and refuse one whose fields differ.
//!
//! ```
//! use mpshm::bytemuck::{Pod, Zeroable};
//! use mpshm::prelude::*;
//!
//! mpshm::shared_type! {
//!     #[name = "quickstart::Tick@1"]
//!     #[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
//!     #[bytemuck(crate = "mpshm::bytemuck")]
//!     #[repr(C)]
//!     struct Tick {
//!         seq: u64,
//!         price: f64,
//!     }
//! }
//!
//! let q = mpshm::Queue::<Tick>::create_unique(16)?;
//! let other = mpshm::Queue::<Tick>::open(q.name())?; // e.g. in another binary
//! q.put(Tick { seq: 1, price: 9.5 }).expect("room");
//! assert_eq!(other.get(), Ok(Tick { seq: 1, price: 9.5 }));
//! # Ok::<(), mpshm::Error>(())
//! ```
//!
//! Messages travel through lock-free rings in the same kind of segment: [`Queue`] (bounded,
//! many producers and consumers, Python's `put`/`get`, over a codec: plain data, bytes or
//! serde), its single-producer, single-consumer mode [`SpscQueue`], and [`Pipe`] (Python's
//! `Pipe` and `Connection`); every receiving handle iterates, and [`wait`] sleeps on several
//! of them at once. The errors follow one convention, set out in [`Error`]'s docs: each
//! operation's error holds only what it can fail with.
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
#[cfg(not(loom))]
mod codec;
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
mod shared_type;
mod shm;
#[cfg(not(loom))]
mod spsc;
#[cfg(not(loom))]
mod spsc_queue;
mod sync;
mod sys;
mod value;
#[cfg(not(loom))]
mod wait;

/// The `bytemuck` this crate is built with, for deriving `Pod` and `Zeroable` on the types
/// you share: `#[derive(mpshm::bytemuck::Pod, mpshm::bytemuck::Zeroable)]` with
/// `#[bytemuck(crate = "mpshm::bytemuck")]` (see [`SharedType`]).
pub use bytemuck;

pub use array::{Array, ArrayGuard, RawArray};
#[cfg(all(feature = "serde", not(loom)))]
pub use codec::Postcard;
#[cfg(not(loom))]
pub use codec::{Bytes, Codec, Plain};
#[cfg(not(loom))]
pub use containers::{ListIndex, SharedDict, SharedList};
#[cfg(all(feature = "serde", not(loom)))]
pub use containers::{SerdeDict, SerdeList};
pub use error::{
    AccessError, AcquireError, BarrierError, BreakCause, BufferTooShort, ConditionError,
    ContainerError, DecodeError, Difference, EncodeError, Error, GetError, GetTimeoutError,
    JoinError, LengthMismatch, LockError, OutOfBounds, PutError, PutTimeoutError, RecvError,
    RecvTimeoutError, ReleaseError, SendError, SendTimeoutError, TooLarge, TryGetError,
    TryPutError, TryRecvError, TrySendError, WrongType,
};
#[cfg(not(loom))]
pub use error::{Exit, ProcessError};
#[cfg(not(loom))]
pub use inspect::{Attached, Inspection, LockState, Role, State, inspect};
#[cfg(not(loom))]
pub use pipe::{
    Connection, MAX_MESSAGE, Pipe, PipeEnd, PipeIter, PipeReader, PipeTryIter, PipeWriter,
};
#[cfg(not(loom))]
pub use process::{
    AsyncResult, Payload, Pool, Process, ThreadPool, cpu_count, current_process, parent_process,
};
#[cfg(all(feature = "serde", not(loom)))]
pub use queue::SerdeQueue;
#[cfg(not(loom))]
pub use queue::{ByteQueue, Iter, JoinableQueue, Queue, SimpleQueue, TryIter};
pub use segment::{Kind, LAYOUT_VERSION, Options, SegmentInfo, segments, unlink};
pub use shared_type::{Field, SharedType};
pub use shm::{Shm, prelude};
#[cfg(not(loom))]
pub use spsc_queue::{SpscConsumer, SpscEnd, SpscIter, SpscProducer, SpscQueue, SpscTryIter};
pub use sync::atomic::AtomicInt;
pub use sync::{BARRIER_MAX_PARTIES, Lock, LockGuard, ProcessLock, RLock, SEMAPHORE_MAX};
#[cfg(not(loom))]
pub use sync::{
    Barrier, BoundedSemaphore, Condition, ConditionGuard, ConditionLock, Event, ProcessSemaphore,
    Semaphore, SemaphoreGuard,
};
pub use value::{RawValue, Value, ValueGuard};
#[cfg(not(loom))]
pub use wait::{DeathNotice, PEER_POLL, Waitable, death_notice, wait};

/// The marker types that pick a generic handle's kind, and the sealed traits over them: the
/// lock kinds of [`ProcessLock`] ([`Lock`], [`RLock`]), the kinds of [`ProcessSemaphore`]
/// ([`Semaphore`], [`BoundedSemaphore`]), the directions of [`PipeEnd`] ([`Connection`],
/// [`PipeReader`], [`PipeWriter`]) and the roles of [`SpscEnd`] ([`SpscProducer`],
/// [`SpscConsumer`]). Most code names the aliases and never these.
pub mod marker {
    #[cfg(not(loom))]
    pub use crate::pipe::{Direction, Duplex, ReadOnly, Receives, Sends, WriteOnly};
    #[cfg(not(loom))]
    pub use crate::spsc_queue::{Consumer, Producer, Role};
    #[cfg(not(loom))]
    pub use crate::sync::{Bounded, SemaphoreKind, Unbounded};
    pub use crate::sync::{Exclusive, LockKind, Reentrant};
}

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
