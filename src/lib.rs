//! Python's `multiprocessing` shared state for Rust, in named POSIX shared memory.
//!
//! The crate's guide, its requirements and its guarantees (what holds when a process dies,
//! what a process that scribbles on a segment can and cannot do) follow: they are the README's,
//! and every example in them is compiled and run as a test.
//!
//! The API in brief: every handle is created and opened the same way, through [`Shm`] (in
//! [`prelude`]), and what crosses between processes is plain data that names itself, a
//! [`SharedType`], or bytes or serde values through a [`Codec`]. Typed [`Value`]s and
//! one-dimensional [`Array`]s are guarded by robust cross-process locks ([`Lock`], [`RLock`]);
//! the rest of the lock family is [`Semaphore`], [`Event`], [`Condition`], [`Barrier`];
//! lock-free rings carry messages ([`Queue`], [`SpscQueue`], [`Pipe`]); [`wait`] sleeps on
//! several of them at once, [`process`] starts the processes that share them, and [`inspect`]
//! shows what a segment holds. The errors follow one convention, set out in [`Error`]'s docs.
//! A lock whose holder died, even by `SIGKILL`, is handed to the next acquirer inside
//! [`LockError::OwnerDied`]; [`death_notice`] and [`fence_mode`] say which of the kernel's fast
//! paths this process runs with.
//!
#![doc = include_str!("../README.md")]
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
mod kind;
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
mod spsc_queue;
mod sync;
mod sys;
mod value;
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
pub use kind::Kind;
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
pub use segment::{LAYOUT_VERSION, Options, SegmentInfo, segments, unlink};
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
pub use wait::{DeathNotice, PEER_POLL, Waitable, death_notice, fence_mode, wait};
pub use wait::{FenceMode, UNFENCED_POLL};

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
