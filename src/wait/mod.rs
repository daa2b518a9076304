//! Waiting: everything a thread does between finding that it cannot go on and going on.
//!
//! - [`backoff`]: the one [`Backoff`] every waiting loop uses (spin, yield, sleep).
//! - [`deadline`]: how long an operation may wait ([`Deadline`]).
//! - [`eventcount`]: the [`EventCount`] a ring's blocked side parks on and the other side wakes,
//!   with a syscall only when someone sleeps, and [`block`], the spin-then-park loop of every
//!   blocking ring operation.
//! - [`fence`]: the asymmetric fences (`membarrier`) that let the waking side skip its fence.
//! - [`futex`]: the futex wait and wake (the kernel's, or loom's model of it).
//! - `set`: the futex words one sleeper watches at once (`futex_waitv`): eventcounts and the
//!   liveness words of peers, so that a peer's death wakes it (see `attach`).
//! - `waitable`: [`wait`] on several objects at once, and [`death_notice`].

pub(crate) mod backoff;
pub(crate) mod deadline;
pub(crate) mod eventcount;
pub(crate) mod fence;
pub(crate) mod futex;
#[cfg(not(loom))]
mod set;
#[cfg(not(loom))]
mod waitable;

pub(crate) use backoff::Backoff;
pub(crate) use deadline::Deadline;
#[cfg(not(loom))]
pub(crate) use deadline::deadline;
#[cfg(not(loom))]
pub(crate) use eventcount::DEFAULT_SPIN;
pub(crate) use eventcount::{EventCount, NoPeers, Peers, Progress, TimedOut, block, min_opt};
#[cfg(not(loom))]
pub use fence::fence_mode;
pub use fence::{FenceMode, UNFENCED_POLL};
#[cfg(not(loom))]
pub(crate) use set::{Bump, WaitSet};
#[cfg(not(loom))]
pub(crate) use waitable::sealed;
#[cfg(not(loom))]
pub use waitable::{DeathNotice, PEER_POLL, Waitable, death_notice, wait};
