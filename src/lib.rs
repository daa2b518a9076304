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
//! paths this process runs with. A process that has found a lock busy runs one thread of the
//! crate's, `mpshm-lock-watch`: it looks every 10 ms (every 100 ms while no thread waits) for a
//! waiter that a peer's death at the wrong instant left asleep on a free lock, and wakes it. It
//! stops by itself for [`StartMethod::Fork`](process::StartMethod::Fork), which needs a process
//! of one thread.
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

// Every module but `sys`, and every re-export of them, is built on the supported targets only
// (the condition is `sys`'s): elsewhere the `compile_error!` in `sys` that names those targets is
// the build's one error, not the first of a cascade of unresolved names
// (`cargo check --target x86_64-apple-darwin` shows it).
#[cfg(all(target_os = "linux", target_env = "gnu", target_pointer_width = "64"))]
mod array;
#[cfg(all(target_os = "linux", target_env = "gnu", target_pointer_width = "64"))]
#[cfg(not(loom))]
mod attach;
#[cfg(all(target_os = "linux", target_env = "gnu", target_pointer_width = "64"))]
#[cfg(not(loom))]
mod codec;
#[cfg(all(target_os = "linux", target_env = "gnu", target_pointer_width = "64"))]
mod containers;
#[cfg(all(target_os = "linux", target_env = "gnu", target_pointer_width = "64"))]
mod error;
#[cfg(all(target_os = "linux", target_env = "gnu", target_pointer_width = "64"))]
#[cfg(not(loom))]
mod inspect;
#[cfg(all(target_os = "linux", target_env = "gnu", target_pointer_width = "64"))]
mod kind;
#[cfg(all(target_os = "linux", target_env = "gnu", target_pointer_width = "64"))]
#[cfg(all(test, not(loom)))]
mod layout;
#[cfg(all(target_os = "linux", target_env = "gnu", target_pointer_width = "64"))]
#[cfg(not(loom))]
mod pipe;
#[cfg(all(target_os = "linux", target_env = "gnu", target_pointer_width = "64"))]
#[cfg(not(loom))]
pub mod process;
#[cfg(all(target_os = "linux", target_env = "gnu", target_pointer_width = "64"))]
#[cfg(not(loom))]
mod queue;
#[cfg(all(target_os = "linux", target_env = "gnu", target_pointer_width = "64"))]
mod ring;
#[cfg(all(target_os = "linux", target_env = "gnu", target_pointer_width = "64"))]
mod segment;
#[cfg(all(target_os = "linux", target_env = "gnu", target_pointer_width = "64"))]
mod shared_type;
#[cfg(all(target_os = "linux", target_env = "gnu", target_pointer_width = "64"))]
mod shm;
#[cfg(all(target_os = "linux", target_env = "gnu", target_pointer_width = "64"))]
#[cfg(not(loom))]
mod spsc_queue;
#[cfg(all(target_os = "linux", target_env = "gnu", target_pointer_width = "64"))]
mod sync;
mod sys;
#[cfg(all(target_os = "linux", target_env = "gnu", target_pointer_width = "64"))]
mod value;
#[cfg(all(target_os = "linux", target_env = "gnu", target_pointer_width = "64"))]
mod wait;

/// The `bytemuck` this crate is built with, for deriving `Pod` and `Zeroable` on the types
/// you share: `#[derive(mpshm::bytemuck::Pod, mpshm::bytemuck::Zeroable)]` with
/// `#[bytemuck(crate = "mpshm::bytemuck")]` (see [`SharedType`]).
pub use bytemuck;

#[cfg(all(target_os = "linux", target_env = "gnu", target_pointer_width = "64"))]
pub use array::{Array, ArrayGuard, RawArray};
#[cfg(all(target_os = "linux", target_env = "gnu", target_pointer_width = "64"))]
#[cfg(all(feature = "serde", not(loom)))]
pub use codec::Postcard;
#[cfg(all(target_os = "linux", target_env = "gnu", target_pointer_width = "64"))]
#[cfg(not(loom))]
pub use codec::{Bytes, Codec, Plain};
#[cfg(all(target_os = "linux", target_env = "gnu", target_pointer_width = "64"))]
#[cfg(not(loom))]
pub use containers::{ListIndex, SharedDict, SharedList};
#[cfg(all(target_os = "linux", target_env = "gnu", target_pointer_width = "64"))]
#[cfg(all(feature = "serde", not(loom)))]
pub use containers::{SerdeDict, SerdeList};
#[cfg(all(target_os = "linux", target_env = "gnu", target_pointer_width = "64"))]
pub use error::{
    AccessError, AcquireError, BarrierError, BreakCause, BufferTooShort, ConditionError,
    ContainerError, DecodeError, Difference, EncodeError, Error, GetError, GetTimeoutError,
    JoinError, LengthMismatch, LockError, OutOfBounds, PutError, PutTimeoutError, RecvError,
    RecvTimeoutError, ReleaseError, SendError, SendTimeoutError, TooLarge, TryGetError,
    TryPutError, TryRecvError, TrySendError, WrongType,
};
#[cfg(all(target_os = "linux", target_env = "gnu", target_pointer_width = "64"))]
#[cfg(not(loom))]
pub use error::{Exit, ProcessError};
#[cfg(all(target_os = "linux", target_env = "gnu", target_pointer_width = "64"))]
#[cfg(not(loom))]
pub use inspect::{Attached, Inspection, LockState, Role, State, inspect};
#[cfg(all(target_os = "linux", target_env = "gnu", target_pointer_width = "64"))]
pub use kind::Kind;
#[cfg(all(target_os = "linux", target_env = "gnu", target_pointer_width = "64"))]
#[cfg(not(loom))]
pub use pipe::{
    Connection, MAX_MESSAGE, Pipe, PipeEnd, PipeIter, PipeReader, PipeTryIter, PipeWriter,
};
#[cfg(all(target_os = "linux", target_env = "gnu", target_pointer_width = "64"))]
#[cfg(not(loom))]
pub use process::{
    AsyncResult, Payload, Pool, Process, ThreadPool, active_children, cpu_count, current_process,
    parent_process,
};
#[cfg(all(target_os = "linux", target_env = "gnu", target_pointer_width = "64"))]
#[cfg(all(feature = "serde", not(loom)))]
pub use queue::SerdeQueue;
#[cfg(all(target_os = "linux", target_env = "gnu", target_pointer_width = "64"))]
#[cfg(not(loom))]
pub use queue::{ByteQueue, Iter, JoinableQueue, Queue, SimpleQueue, TryIter};
#[cfg(all(target_os = "linux", target_env = "gnu", target_pointer_width = "64"))]
pub use segment::{LAYOUT_VERSION, Options, SegmentInfo, segments, unlink};
#[cfg(all(target_os = "linux", target_env = "gnu", target_pointer_width = "64"))]
pub use shared_type::{Field, SharedType};
#[cfg(all(target_os = "linux", target_env = "gnu", target_pointer_width = "64"))]
pub use shm::{Shm, prelude};
#[cfg(all(target_os = "linux", target_env = "gnu", target_pointer_width = "64"))]
#[cfg(not(loom))]
pub use spsc_queue::{SpscConsumer, SpscEnd, SpscIter, SpscProducer, SpscQueue, SpscTryIter};
#[cfg(all(target_os = "linux", target_env = "gnu", target_pointer_width = "64"))]
pub use sync::atomic::AtomicInt;
#[cfg(all(target_os = "linux", target_env = "gnu", target_pointer_width = "64"))]
pub use sync::{BARRIER_MAX_PARTIES, Lock, LockGuard, ProcessLock, RLock, SEMAPHORE_MAX};
#[cfg(all(target_os = "linux", target_env = "gnu", target_pointer_width = "64"))]
#[cfg(not(loom))]
pub use sync::{
    Barrier, BoundedSemaphore, Condition, ConditionGuard, ConditionLock, Event, ProcessSemaphore,
    Semaphore, SemaphoreGuard,
};
#[cfg(all(target_os = "linux", target_env = "gnu", target_pointer_width = "64"))]
pub use value::{RawValue, Value, ValueGuard};
#[cfg(all(target_os = "linux", target_env = "gnu", target_pointer_width = "64"))]
#[cfg(not(loom))]
pub use wait::{DeathNotice, PEER_POLL, Waitable, death_notice, fence_mode, wait};
#[cfg(all(target_os = "linux", target_env = "gnu", target_pointer_width = "64"))]
pub use wait::{FenceMode, UNFENCED_POLL};

/// The marker types that pick a generic handle's kind, and the sealed traits over them: the
/// lock kinds of [`ProcessLock`] ([`Lock`], [`RLock`]), the kinds of [`ProcessSemaphore`]
/// ([`Semaphore`], [`BoundedSemaphore`]), the directions of [`PipeEnd`] ([`Connection`],
/// [`PipeReader`], [`PipeWriter`]) and the roles of [`SpscEnd`] ([`SpscProducer`],
/// [`SpscConsumer`]). Most code names the aliases and never these.
#[cfg(all(target_os = "linux", target_env = "gnu", target_pointer_width = "64"))]
pub mod marker {
    #[cfg(not(loom))]
    pub use crate::pipe::{Direction, Duplex, ReadOnly, Receives, Sends, WriteOnly};
    #[cfg(not(loom))]
    pub use crate::spsc_queue::{Consumer, Producer, Role};
    #[cfg(not(loom))]
    pub use crate::sync::{Bounded, SemaphoreKind, Unbounded};
    pub use crate::sync::{Exclusive, LockKind, Reentrant};
}
