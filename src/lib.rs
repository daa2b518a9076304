//! Python's `multiprocessing` shared state for Rust, in named POSIX shared memory.
//!
//! The crate's guide, its requirements and its guarantees (what holds when a process dies,
//! what a process that scribbles on a segment can and cannot do) follow: they are the README's,
//! and every example in them is compiled and run as a test.
//!
//! The API in brief: typed [`Value`]s and one-dimensional [`Array`]s guarded by robust
//! cross-process locks ([`Lock`], [`RLock`]), the rest of the lock family ([`Semaphore`],
//! [`Event`], [`Condition`], [`Barrier`]), lock-free rings ([`Queue`], [`SpscQueue`], [`Pipe`]),
//! [`wait`] on several of them at once, and [`process`] to start the processes that share them.
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
mod containers;
mod error;
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
#[cfg(not(loom))]
mod spsc_queue;
mod sync;
mod sys;
mod value;
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
pub use kind::Kind;
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
pub use segment::{Options, SegmentInfo, segments, unlink};
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
pub use wait::{DeathNotice, PEER_POLL, Waitable, death_notice, fence_mode, wait};
pub use wait::{FenceMode, UNFENCED_POLL};
