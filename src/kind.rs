//! What a segment holds: the kind its header names, which an opener must ask for.
//!
//! Its own module, below both `segment` (which writes and checks it) and `error` (whose
//! `KindMismatch` names two of them), so that neither of those needs the other for it.

use std::fmt;

/// What a segment holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Kind {
    /// A [`Value`](crate::Value): one element guarded by a lock.
    Value,
    /// A [`RawValue`](crate::RawValue): one element, no lock.
    RawValue,
    /// An [`Array`](crate::Array): elements guarded by a lock.
    Array,
    /// A [`RawArray`](crate::RawArray): elements, no lock.
    RawArray,
    /// A [`Lock`](crate::Lock).
    Lock,
    /// An [`RLock`](crate::RLock).
    RLock,
    /// A [`Queue`](crate::Queue) (or [`SimpleQueue`](crate::SimpleQueue)).
    Queue,
    /// A [`JoinableQueue`](crate::JoinableQueue).
    JoinableQueue,
    /// A [`Pipe`](crate::Pipe), duplex or one-way.
    Pipe,
    /// An [`SpscQueue`](crate::SpscQueue).
    SpscQueue,
    /// A [`SharedDict`](crate::SharedDict).
    Dict,
    /// A [`SharedList`](crate::SharedList).
    List,
    /// A [`Semaphore`](crate::Semaphore).
    Semaphore,
    /// A [`BoundedSemaphore`](crate::BoundedSemaphore).
    BoundedSemaphore,
    /// An [`Event`](crate::Event).
    Event,
    /// A [`Condition`](crate::Condition).
    Condition,
    /// A [`Barrier`](crate::Barrier).
    Barrier,
}

impl Kind {
    /// The number stored in a header for this kind.
    pub(crate) fn code(self) -> u32 {
        match self {
            Kind::Value => 1,
            Kind::RawValue => 2,
            Kind::Array => 3,
            Kind::RawArray => 4,
            Kind::Lock => 5,
            Kind::RLock => 6,
            Kind::Queue => 7,
            Kind::Pipe => 8,
            Kind::JoinableQueue => 9,
            Kind::SpscQueue => 10,
            Kind::Dict => 11,
            Kind::List => 12,
            Kind::Semaphore => 13,
            Kind::BoundedSemaphore => 14,
            Kind::Event => 15,
            Kind::Condition => 16,
            Kind::Barrier => 17,
        }
    }

    /// The kind a header's number stands for; `None` for a number no kind has.
    pub(crate) fn from_code(code: u32) -> Option<Kind> {
        Some(match code {
            1 => Kind::Value,
            2 => Kind::RawValue,
            3 => Kind::Array,
            4 => Kind::RawArray,
            5 => Kind::Lock,
            6 => Kind::RLock,
            7 => Kind::Queue,
            8 => Kind::Pipe,
            9 => Kind::JoinableQueue,
            10 => Kind::SpscQueue,
            11 => Kind::Dict,
            12 => Kind::List,
            13 => Kind::Semaphore,
            14 => Kind::BoundedSemaphore,
            15 => Kind::Event,
            16 => Kind::Condition,
            17 => Kind::Barrier,
            _ => return None,
        })
    }

    /// Whether segments of this kind carry a lock before the payload.
    pub(crate) fn has_lock(self) -> bool {
        matches!(
            self,
            Kind::Value
                | Kind::Array
                | Kind::Lock
                | Kind::RLock
                | Kind::Dict
                | Kind::List
                | Kind::Semaphore
                | Kind::BoundedSemaphore
                | Kind::Condition
                | Kind::Barrier
        )
    }

    /// Whether the lock of segments of this kind is reentrant (a condition's own lock is an
    /// `RLock`, as Python's is).
    pub(crate) fn recursive_lock(self) -> bool {
        matches!(self, Kind::RLock | Kind::Condition)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            Kind::Value => "value",
            Kind::RawValue => "raw value",
            Kind::Array => "array",
            Kind::RawArray => "raw array",
            Kind::Lock => "lock",
            Kind::RLock => "rlock",
            Kind::Queue => "queue",
            Kind::Pipe => "pipe",
            Kind::JoinableQueue => "joinable queue",
            Kind::SpscQueue => "spsc queue",
            Kind::Dict => "dict",
            Kind::List => "list",
            Kind::Semaphore => "semaphore",
            Kind::BoundedSemaphore => "bounded semaphore",
            Kind::Event => "event",
            Kind::Condition => "condition",
            Kind::Barrier => "barrier",
        };
        f.write_str(s)
    }
}
