//! How long an operation may wait: the one representation every blocking path shares.

use std::time::{Duration, Instant};

/// When an operation stops waiting for another thread (or process) to leave what it needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Deadline {
    /// At once: the `try_` operations must never wait.
    Now,
    /// At that instant.
    At(Instant),
    /// Never: wait as long as it takes.
    Never,
}

impl Deadline {
    /// At `deadline`, or never for `None`.
    #[inline]
    pub(crate) fn from_instant(deadline: Option<Instant>) -> Deadline {
        deadline.map_or(Deadline::Never, Deadline::At)
    }

    /// Whether it has passed (reads the clock only for [`Deadline::At`]).
    #[inline]
    pub(crate) fn passed(self) -> bool {
        match self {
            Deadline::Now => true,
            Deadline::At(t) => Instant::now() >= t,
            Deadline::Never => false,
        }
    }
}

/// The instant `timeout` from now; `None` (wait forever) for one too large to represent.
#[inline]
pub(crate) fn deadline(timeout: Duration) -> Option<Instant> {
    Instant::now().checked_add(timeout)
}
