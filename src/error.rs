//! Every public error type, in one place, after the one convention [`Error`]'s docs set out.

use std::convert::Infallible;
use std::fmt;
use std::io;
use std::time::Duration;

use crate::kind::Kind;

/// Why a segment could not be created, opened, listed or removed.
///
/// # The error convention
///
/// Every error type of the crate follows one convention:
///
/// - **Setup** — creating, opening, listing and removing segments ([`Shm`](crate::Shm)'s
///   constructors, [`segments`](crate::segments), [`unlink`](crate::unlink)) — fails with
///   this type, which holds `io::Error` for what the OS reports.
/// - **Operations** each have a small error type holding only what that operation can fail
///   with, named after it: `get` → [`GetError`], `try_get` → [`TryGetError`] (adds `Empty`),
///   `get_timeout` → [`GetTimeoutError`] (adds `Timeout`); likewise `put`, a pipe's `send` and
///   `recv`, a lock's `acquire` ([`LockError`]). Whatever can only happen for some codecs or
///   message types is a type parameter `E` of the error, [`Infallible`] where it cannot
///   happen: a plain-data queue's `put` returns `PutError<T, Infallible>`, whose `Encode`
///   variant cannot be built. An error of a put or send hands the message back.
/// - **A lock whose holder died** hands the guard (or the operation's result) back inside
///   `OwnerDied`, the way std's `PoisonError` does ([`LockError`], [`AccessError`]).
/// - **An index** outside an array or list is an `Err` naming the index and the length
///   ([`OutOfBounds`], [`AccessError::OutOfBounds`],
///   [`ContainerError::IndexOutOfRange`]), never a `None`: `Option` means "nothing there",
///   which is not a failure (a dict's missing key).
/// - **Queries** (`len`, `is_empty`, `name`, …) never fail.
///
/// Every type is `#[non_exhaustive]` where more cases may come.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The name is not portable; `reason` says what is allowed.
    InvalidName {
        /// The name given.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// No segment has this name.
    NotFound {
        /// The name looked for.
        name: String,
    },
    /// `create` found the name already taken.
    AlreadyExists {
        /// The name taken.
        name: String,
    },
    /// The segment holds another kind of object (a lock where a value was expected, say).
    KindMismatch {
        /// The name opened.
        name: String,
        /// What the caller asked for.
        expected: Kind,
        /// What the segment holds.
        found: Kind,
    },
    /// The segment holds another type than the caller asked for: another name (type tag),
    /// or under the same name another size, alignment or field layout (see
    /// [`SharedType`](crate::SharedType)). `differs` says which.
    TypeMismatch {
        /// The name opened.
        name: String,
        /// The type asked for, e.g. `` `u64` (8 B, align 8) ``, or with its fields,
        /// `` `app::Sample` with fields seq@0+8 value@8+8 `` (`name@offset+size`).
        expected: String,
        /// The type the creator recorded, described the same way.
        found: String,
        /// What differs.
        differs: Difference,
    },
    /// The segment holds the right type but another shape than the caller asked for: another
    /// length, capacity, message size or codec.
    LayoutMismatch {
        /// The name opened.
        name: String,
        /// What the caller asked for, e.g. `capacity 8`.
        expected: String,
        /// What the creator made, e.g. `capacity 16`.
        found: String,
    },
    /// The segment was written by an mpshm with another layout version.
    IncompatibleVersion {
        /// The name opened.
        name: String,
        /// The version in the header.
        found: u32,
        /// The version this build understands.
        supported: u32,
    },
    /// The header or file is damaged or is not an mpshm segment.
    Corrupt {
        /// The name opened.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// The creator did not finish initialising the segment in time (it may have died doing so).
    NotReady {
        /// The name opened.
        name: String,
        /// How long `open` waited.
        waited: Duration,
    },
    /// A length of zero, or one too large to map.
    InvalidLength {
        /// The length asked for.
        len: usize,
        /// Why it is refused.
        reason: &'static str,
    },
    /// The object is held by other processes (both ends of a pipe are taken).
    InUse {
        /// The name opened.
        name: String,
        /// What is taken.
        reason: &'static str,
    },
    /// Something other than a shared-memory object sits at the name (a symbolic link, a FIFO, a
    /// directory): mpshm never follows or opens it.
    NotRegular {
        /// The name opened.
        name: String,
        /// What is there, e.g. "symbolic link".
        found: &'static str,
    },
    /// [`Options::mode`](crate::Options::mode) was given bits other than the permission bits
    /// `0o777` (setuid, setgid, sticky, or a file type).
    InvalidMode {
        /// The mode given.
        mode: u32,
    },
    /// The shared-memory filesystem has no room for the segment.
    NoSpace {
        /// The name being created.
        name: String,
        /// The bytes asked for.
        bytes: u64,
    },
    /// Any other operating-system error.
    Io(io::Error),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidName { name, reason } => write!(
                f,
                "invalid segment name {name:?}: {reason}; use 1 to 30 ASCII letters, digits, '_', '-' or '.'"
            ),
            Error::NotFound { name } => {
                write!(
                    f,
                    "no shared-memory segment named {name:?}; create it first or check the name"
                )
            }
            Error::AlreadyExists { name } => write!(
                f,
                "a shared-memory segment named {name:?} already exists; open it, or remove it if it is stale (`mpshm::unlink`)"
            ),
            Error::KindMismatch {
                name,
                expected,
                found,
            } => {
                write!(f, "segment {name:?} holds a {found}, not a {expected}")
            }
            Error::TypeMismatch {
                name,
                expected,
                found,
                differs: Difference::Name,
            } => write!(
                f,
                "segment {name:?} holds {found}, not {expected}; open it with the type its creator used, or give the type the same name on both sides (`SharedType::NAME`, or `Options::type_tag`)"
            ),
            Error::TypeMismatch {
                name,
                expected,
                found,
                differs: Difference::Size,
            } => write!(
                f,
                "segment {name:?} holds {found}, but this build's {expected} has another size or alignment under the same name: define the type the same way in both builds"
            ),
            Error::TypeMismatch {
                name,
                expected,
                found,
                differs: Difference::Fields,
            } => write!(
                f,
                "segment {name:?} holds {found}, but this build's is {expected}: the same name, size and alignment, but other fields; define the type the same way in both builds"
            ),
            Error::LayoutMismatch {
                name,
                expected,
                found,
            } => write!(
                f,
                "segment {name:?} holds {found}, but {expected} was asked for; open it as its creator made it"
            ),
            Error::IncompatibleVersion {
                name,
                found,
                supported,
            } => write!(
                f,
                "segment {name:?} has layout version {found}, this build of mpshm reads version {supported}; use the same mpshm version on both sides"
            ),
            Error::Corrupt { name, reason } => write!(
                f,
                "segment {name:?} is damaged or not an mpshm segment: {reason}; remove it and create it again"
            ),
            Error::NotReady { name, waited } => write!(
                f,
                "segment {name:?} was not initialised within {waited:?}; its creator may have died (see `mpshm::segments`), or raise the open timeout"
            ),
            Error::InvalidLength { len, reason } => write!(f, "invalid length {len}: {reason}"),
            Error::NoSpace { name, bytes } => write!(
                f,
                "no space in /dev/shm for segment {name:?} ({bytes} bytes); free space or remove stale segments"
            ),
            Error::InUse { name, reason } => write!(
                f,
                "segment {name:?} is in use: {reason}; release that end first"
            ),
            Error::NotRegular { name, found } => write!(
                f,
                "{name:?} in /dev/shm is a {found}, not a shared-memory segment, and is not followed or opened; someone else put it there: remove it (`mpshm::unlink`) if it should not be there"
            ),
            Error::InvalidMode { mode } => write!(
                f,
                "mode {mode:#o} has bits beyond the permission bits 0o777 (setuid, setgid, sticky or a file type); give permission bits only, e.g. 0o600"
            ),
            Error::Io(e) => write!(f, "shared-memory I/O error: {e}"),
        }
    }
}

/// What differs between the type a segment holds and the type asked for
/// ([`Error::TypeMismatch`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Difference {
    /// The names (type tags).
    Name,
    /// The sizes or alignments, under the same name.
    Size,
    /// The fields (their names, offsets, sizes or types), under the same name, size and
    /// alignment.
    Fields,
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Error::Io(e)
    }
}

/// Why acquiring a lock did not give a clean guard.
///
/// `acquire` can return `OwnerDied`, `Deadlock` and `Os`; `try_acquire` returns `WouldBlock`
/// instead of `Deadlock` (a lock this thread holds is not free); `acquire_timeout` adds
/// `Timeout`.
#[non_exhaustive]
pub enum LockError<G> {
    /// The lock *was* acquired, but a previous owner died or panicked holding it (or a later
    /// owner did not mark it consistent), so the data it guards may be half-updated. The guard is
    /// inside: inspect or repair the data, then call the guard's `mark_consistent`.
    OwnerDied(G),
    /// The lock is held, by another thread or by this one (`try_acquire`).
    WouldBlock,
    /// The lock was still held when the timeout passed (`acquire_timeout`).
    Timeout,
    /// This thread already holds this (non-reentrant) lock; use an `RLock` to re-enter.
    Deadlock,
    /// The lock word is not a valid lock (the segment was overwritten), or another OS error.
    Os(io::Error),
}

impl<G> LockError<G> {
    /// The guard inside `OwnerDied`, if that is what this is.
    pub fn into_guard(self) -> Option<G> {
        match self {
            LockError::OwnerDied(g) => Some(g),
            _ => None,
        }
    }

    /// Maps the guard inside `OwnerDied`.
    pub fn map<H>(self, f: impl FnOnce(G) -> H) -> LockError<H> {
        match self {
            LockError::OwnerDied(g) => LockError::OwnerDied(f(g)),
            LockError::WouldBlock => LockError::WouldBlock,
            LockError::Timeout => LockError::Timeout,
            LockError::Deadlock => LockError::Deadlock,
            LockError::Os(e) => LockError::Os(e),
        }
    }
}

impl<G> fmt::Debug for LockError<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LockError::OwnerDied(_) => f.write_str("OwnerDied(..)"),
            LockError::WouldBlock => f.write_str("WouldBlock"),
            LockError::Timeout => f.write_str("Timeout"),
            LockError::Deadlock => f.write_str("Deadlock"),
            LockError::Os(e) => f.debug_tuple("Os").field(e).finish(),
        }
    }
}

impl<G> fmt::Display for LockError<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LockError::OwnerDied(_) => f.write_str(
                "the lock's previous owner died holding it; check the data, then mark the guard consistent",
            ),
            LockError::WouldBlock => f.write_str("the lock is held by someone else"),
            LockError::Timeout => f.write_str("timed out waiting for the lock"),
            LockError::Deadlock => {
                f.write_str("this thread already holds the lock; use an RLock to re-enter it")
            }
            LockError::Os(e) => write!(f, "the lock is unusable (is the segment damaged?): {e}"),
        }
    }
}

impl<G> std::error::Error for LockError<G> {}

/// Why reading or writing a `Value` or `Array` did not simply succeed.
#[non_exhaustive]
pub enum AccessError<T> {
    /// The operation completed, but the lock's previous owner had died holding it, so the data
    /// may be half-updated; the result is inside. Take [`lock`](crate::Value::lock) to repair
    /// the data and mark it consistent.
    OwnerDied(T),
    /// The index is past the end.
    OutOfBounds {
        /// The index given.
        index: usize,
        /// The length of the array.
        len: usize,
    },
    /// A slice of the wrong length was given.
    LengthMismatch {
        /// The array's length.
        expected: usize,
        /// The slice's length.
        found: usize,
    },
    /// This thread already holds the lock (a guard is alive); use the guard instead.
    Deadlock,
    /// The lock is unusable (the segment was overwritten), or another OS error.
    Os(io::Error),
}

impl<T> AccessError<T> {
    /// The result inside `OwnerDied`, if that is what this is.
    pub fn into_inner(self) -> Option<T> {
        match self {
            AccessError::OwnerDied(v) => Some(v),
            _ => None,
        }
    }
}

impl<T> fmt::Debug for AccessError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AccessError::OwnerDied(_) => f.write_str("OwnerDied(..)"),
            AccessError::OutOfBounds { index, len } => f
                .debug_struct("OutOfBounds")
                .field("index", index)
                .field("len", len)
                .finish(),
            AccessError::LengthMismatch { expected, found } => f
                .debug_struct("LengthMismatch")
                .field("expected", expected)
                .field("found", found)
                .finish(),
            AccessError::Deadlock => f.write_str("Deadlock"),
            AccessError::Os(e) => f.debug_tuple("Os").field(e).finish(),
        }
    }
}

impl<T> fmt::Display for AccessError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AccessError::OwnerDied(_) => f.write_str(
                "the lock's previous owner died holding it; take the lock, check the data and mark it consistent",
            ),
            AccessError::OutOfBounds { index, len } => {
                write!(f, "index {index} is out of bounds for an array of length {len}")
            }
            AccessError::LengthMismatch { expected, found } => {
                write!(f, "slice of length {found} given for an array of length {expected}")
            }
            AccessError::Deadlock => {
                f.write_str("this thread already holds the lock; use the guard it holds")
            }
            AccessError::Os(e) => write!(f, "the lock is unusable (is the segment damaged?): {e}"),
        }
    }
}

impl<T> std::error::Error for AccessError<T> {}

/// An index past the end of a [`RawArray`](crate::RawArray).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutOfBounds {
    /// The index given.
    pub index: usize,
    /// The length of the array.
    pub len: usize,
}

impl fmt::Display for OutOfBounds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "index {} is out of bounds for an array of length {}",
            self.index, self.len
        )
    }
}

impl std::error::Error for OutOfBounds {}

/// A slice of another length than a [`RawArray`](crate::RawArray)'s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LengthMismatch {
    /// The array's length.
    pub expected: usize,
    /// The slice's length.
    pub found: usize,
}

impl fmt::Display for LengthMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "slice of length {} given for an array of length {}",
            self.found, self.expected
        )
    }
}

impl std::error::Error for LengthMismatch {}

// ---- Messages: what a codec or a message type adds to a channel's errors ---------------------

/// A message longer than the room it was to go into: a byte queue's slot, a pipe's
/// [`MAX_MESSAGE`](crate::MAX_MESSAGE).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooLarge {
    /// The message's length in bytes.
    pub len: usize,
    /// The most there is room for.
    pub max: usize,
}

impl fmt::Display for TooLarge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the message of {} bytes is longer than the {} bytes there is room for",
            self.len, self.max
        )
    }
}

impl std::error::Error for TooLarge {}

/// Why a serde value could not be sent or put ([`Postcard`](crate::Postcard)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum EncodeError {
    /// Encoded, it is longer than the room it was to go into.
    TooLarge(TooLarge),
    /// It could not be serialised (serde reported an error).
    Serialize,
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EncodeError::TooLarge(t) => write!(f, "encoded, {t}"),
            EncodeError::Serialize => f.write_str("the value could not be serialised"),
        }
    }
}

impl std::error::Error for EncodeError {}

/// The bytes of a message or entry are not a valid encoding of the type asked for
/// ([`Postcard`](crate::Postcard)); the message has been consumed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeError;

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the message is not a valid encoding of the type asked for")
    }
}

impl std::error::Error for DecodeError {}

/// The buffer given to a pipe's `recv_bytes_into` is shorter than the message, which stays in
/// the pipe for the next receive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BufferTooShort {
    /// The message's length.
    pub needed: usize,
}

impl fmt::Display for BufferTooShort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the buffer is too short for the message ({} bytes); it is kept for the next receive",
            self.needed
        )
    }
}

impl std::error::Error for BufferTooShort {}

/// A pipe message received as a type it was not sent as (`recv::<T>`); it has been consumed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrongType {
    /// The type asked for.
    pub expected: String,
    /// Its size in bytes.
    pub size: usize,
    /// The message's length in bytes.
    pub found_size: usize,
    /// Whether the message was sent as a value of some type (`send::<U>`) rather than as bytes
    /// (`send_bytes`, `send_serde`).
    pub typed: bool,
}

impl fmt::Display for WrongType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = if self.typed {
            "a value of another type"
        } else {
            "bytes (send_bytes or send_serde), not a typed value"
        };
        write!(
            f,
            "the message is not a `{}` ({} B): it is {} of {} B; receive it as what it was sent as",
            self.expected, self.size, what, self.found_size
        )
    }
}

impl std::error::Error for WrongType {}

// ---- Queues: put and get -------------------------------------------------------------------

/// Why a blocking `put` failed; the message is handed back.
///
/// `E` is what the queue's codec may refuse a message for ([`Codec::EncodeError`]):
/// [`TooLarge`] for a byte queue ([`ByteQueue`](crate::ByteQueue)), [`EncodeError`] for a
/// serde one. A queue of plain data (`Queue<u64>`, any [`SharedType`](crate::SharedType))
/// has `E` = [`Infallible`], the default: its `PutError<T>` has an
/// [`Encode`](Self::Encode) variant that cannot be made, so its put fails only with
/// [`Closed`](Self::Closed) or [`Disconnected`](Self::Disconnected).
///
/// [`Codec::EncodeError`]: crate::Codec::EncodeError
#[derive(PartialEq, Eq)]
#[non_exhaustive]
pub enum PutError<T, E = Infallible> {
    /// The queue is closed.
    Closed(T),
    /// The queue is full and no consumer is attached any more: consumers came, and every one
    /// has detached or died (see the crate's docs on peer death). A consumer that attaches
    /// later makes `put` wait again.
    Disconnected(T),
    /// The codec could not make the message into a slot's bytes; `E` says why. Never for a
    /// queue of plain data, whose `E` is [`Infallible`]: a value of this variant cannot exist.
    Encode(T, E),
}

/// Why `try_put` failed; the message is handed back. `E` as in [`PutError`].
#[derive(PartialEq, Eq)]
#[non_exhaustive]
pub enum TryPutError<T, E = Infallible> {
    /// Every slot is taken.
    Full(T),
    /// The queue is closed.
    Closed(T),
    /// Every slot is taken and no consumer is attached any more (as in
    /// [`PutError::Disconnected`]).
    Disconnected(T),
    /// The codec could not make the message into a slot's bytes; `E` says why. Never for a
    /// queue of plain data, whose `E` is [`Infallible`]: a value of this variant cannot exist.
    Encode(T, E),
}

/// Why `put_timeout` failed; the message is handed back. `E` as in [`PutError`].
#[derive(PartialEq, Eq)]
#[non_exhaustive]
pub enum PutTimeoutError<T, E = Infallible> {
    /// Still full when the timeout passed.
    Timeout(T),
    /// The queue is closed.
    Closed(T),
    /// The queue is full and no consumer is attached any more (as in
    /// [`PutError::Disconnected`]).
    Disconnected(T),
    /// The codec could not make the message into a slot's bytes; `E` says why. Never for a
    /// queue of plain data, whose `E` is [`Infallible`]: a value of this variant cannot exist.
    Encode(T, E),
}

/// Why a blocking `get` failed.
///
/// `E` is what the queue's codec may find wrong with a message ([`Codec::DecodeError`]):
/// [`DecodeError`] for a serde queue, [`Infallible`] for plain data and bytes, whose get never
/// fails with [`Decode`](Self::Decode).
///
/// [`Codec::DecodeError`]: crate::Codec::DecodeError
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum GetError<E = Infallible> {
    /// The queue is closed and every message has been taken.
    Closed,
    /// The queue is empty and no producer is attached any more: producers came, and every one
    /// has detached or died (see the crate's docs on peer death). A state, not an end: a
    /// producer that attaches later makes `get` wait again.
    Disconnected,
    /// The message taken is not a valid one of the type asked for (it has been consumed); `E`
    /// says why.
    Decode(E),
}

/// Why `try_get` failed. `E` as in [`GetError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TryGetError<E = Infallible> {
    /// No message is ready.
    Empty,
    /// The queue is closed and every message has been taken.
    Closed,
    /// The queue is empty and no producer is attached any more (as in
    /// [`GetError::Disconnected`]).
    Disconnected,
    /// The message taken is not a valid one of the type asked for (it has been consumed).
    Decode(E),
}

/// Why `get_timeout` failed. `E` as in [`GetError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum GetTimeoutError<E = Infallible> {
    /// Still empty when the timeout passed.
    Timeout,
    /// The queue is closed and every message has been taken.
    Closed,
    /// The queue is empty and no producer is attached any more (as in
    /// [`GetError::Disconnected`]).
    Disconnected,
    /// The message taken is not a valid one of the type asked for (it has been consumed).
    Decode(E),
}

/// Why `JoinableQueue::join_timeout` or `task_done` failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum JoinError {
    /// `task_done` was called more times than messages were taken.
    TooManyTaskDone,
    /// Messages were still unfinished when the timeout passed.
    Timeout,
}

const CLOSED: &str = "the queue is closed; nothing more can be put";
const NO_CONSUMER: &str = "the queue is full and every consumer has detached or died";
const DRAINED: &str = "the queue is closed and drained";
const NO_PRODUCER: &str = "the queue is empty and every producer has detached or died";

impl<T, E> PutError<T, E> {
    /// The message that could not be put.
    pub fn into_inner(self) -> T {
        match self {
            PutError::Closed(v) | PutError::Disconnected(v) | PutError::Encode(v, _) => v,
        }
    }
}

impl<T, E> TryPutError<T, E> {
    /// The message that could not be put.
    pub fn into_inner(self) -> T {
        match self {
            TryPutError::Full(v)
            | TryPutError::Closed(v)
            | TryPutError::Disconnected(v)
            | TryPutError::Encode(v, _) => v,
        }
    }
}

impl<T, E> PutTimeoutError<T, E> {
    /// The message that could not be put.
    pub fn into_inner(self) -> T {
        match self {
            PutTimeoutError::Timeout(v)
            | PutTimeoutError::Closed(v)
            | PutTimeoutError::Disconnected(v)
            | PutTimeoutError::Encode(v, _) => v,
        }
    }
}

impl<T, E: fmt::Debug> fmt::Debug for PutError<T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PutError::Closed(_) => f.write_str("Closed(..)"),
            PutError::Disconnected(_) => f.write_str("Disconnected(..)"),
            PutError::Encode(_, e) => write!(f, "Encode(.., {e:?})"),
        }
    }
}

impl<T, E: fmt::Debug> fmt::Debug for TryPutError<T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TryPutError::Full(_) => f.write_str("Full(..)"),
            TryPutError::Closed(_) => f.write_str("Closed(..)"),
            TryPutError::Disconnected(_) => f.write_str("Disconnected(..)"),
            TryPutError::Encode(_, e) => write!(f, "Encode(.., {e:?})"),
        }
    }
}

impl<T, E: fmt::Debug> fmt::Debug for PutTimeoutError<T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PutTimeoutError::Timeout(_) => f.write_str("Timeout(..)"),
            PutTimeoutError::Closed(_) => f.write_str("Closed(..)"),
            PutTimeoutError::Disconnected(_) => f.write_str("Disconnected(..)"),
            PutTimeoutError::Encode(_, e) => write!(f, "Encode(.., {e:?})"),
        }
    }
}

impl<T, E: fmt::Display> fmt::Display for PutError<T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PutError::Closed(_) => f.write_str(CLOSED),
            PutError::Disconnected(_) => f.write_str(NO_CONSUMER),
            PutError::Encode(_, e) => e.fmt(f),
        }
    }
}

impl<T, E: fmt::Display> fmt::Display for TryPutError<T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TryPutError::Full(_) => f.write_str("the queue is full; wait (put) or retry"),
            TryPutError::Closed(_) => f.write_str(CLOSED),
            TryPutError::Disconnected(_) => f.write_str(NO_CONSUMER),
            TryPutError::Encode(_, e) => e.fmt(f),
        }
    }
}

impl<T, E: fmt::Display> fmt::Display for PutTimeoutError<T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PutTimeoutError::Timeout(_) => f.write_str("the queue stayed full until the timeout"),
            PutTimeoutError::Closed(_) => f.write_str(CLOSED),
            PutTimeoutError::Disconnected(_) => f.write_str(NO_CONSUMER),
            PutTimeoutError::Encode(_, e) => e.fmt(f),
        }
    }
}

impl<T, E: fmt::Debug + fmt::Display> std::error::Error for PutError<T, E> {}
impl<T, E: fmt::Debug + fmt::Display> std::error::Error for TryPutError<T, E> {}
impl<T, E: fmt::Debug + fmt::Display> std::error::Error for PutTimeoutError<T, E> {}

impl<E: fmt::Display> fmt::Display for GetError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GetError::Closed => f.write_str(DRAINED),
            GetError::Disconnected => f.write_str(NO_PRODUCER),
            GetError::Decode(e) => e.fmt(f),
        }
    }
}

impl<E: fmt::Display> fmt::Display for TryGetError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TryGetError::Empty => f.write_str("the queue is empty"),
            TryGetError::Closed => f.write_str(DRAINED),
            TryGetError::Disconnected => f.write_str(NO_PRODUCER),
            TryGetError::Decode(e) => e.fmt(f),
        }
    }
}

impl<E: fmt::Display> fmt::Display for GetTimeoutError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GetTimeoutError::Timeout => f.write_str("the queue stayed empty until the timeout"),
            GetTimeoutError::Closed => f.write_str(DRAINED),
            GetTimeoutError::Disconnected => f.write_str(NO_PRODUCER),
            GetTimeoutError::Decode(e) => e.fmt(f),
        }
    }
}

impl<E: fmt::Debug + fmt::Display> std::error::Error for GetError<E> {}
impl<E: fmt::Debug + fmt::Display> std::error::Error for TryGetError<E> {}
impl<E: fmt::Debug + fmt::Display> std::error::Error for GetTimeoutError<E> {}

impl fmt::Display for JoinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            JoinError::TooManyTaskDone => "task_done() called more times than messages were taken",
            JoinError::Timeout => "messages were still unfinished at the timeout",
        })
    }
}

impl std::error::Error for JoinError {}

// ---- Pipes: send and receive ---------------------------------------------------------------

/// Why a blocking pipe send failed.
///
/// `E` is what the message itself may be refused for: [`TooLarge`] for `send_bytes` (longer
/// than [`MAX_MESSAGE`](crate::MAX_MESSAGE)), [`EncodeError`] for `send_serde`, and
/// [`Infallible`] for `send::<T>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SendError<E = Infallible> {
    /// The other end was closed, or its process died.
    Disconnected,
    /// The message was refused; `E` says why.
    Encode(E),
}

/// Why a pipe's `try_send` failed. `E` as in [`SendError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TrySendError<E = Infallible> {
    /// The pipe has no room for the whole message now.
    Full,
    /// The other end was closed, or its process died.
    Disconnected,
    /// The message was refused; `E` says why.
    Encode(E),
}

/// Why a pipe's `send_timeout` failed. `E` as in [`SendError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SendTimeoutError<E = Infallible> {
    /// The pipe had no room for the message's first chunk before the timeout passed; nothing
    /// was sent.
    Timeout,
    /// The other end was closed, or its process died.
    Disconnected,
    /// The message was refused; `E` says why.
    Encode(E),
}

/// Why a blocking pipe receive failed.
///
/// `E` is what may be wrong with the message for the receive asked for: [`WrongType`] for
/// `recv::<T>`, [`BufferTooShort`] for `recv_bytes_into` (the message stays), [`DecodeError`]
/// for `recv_serde`, [`Infallible`] for `recv_bytes`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RecvError<E = Infallible> {
    /// The other end was closed (or its process died) and everything it sent has been read.
    Disconnected,
    /// The message cannot be received as asked; `E` says why.
    Decode(E),
}

/// Why a pipe's `try_recv` failed. `E` as in [`RecvError`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TryRecvError<E = Infallible> {
    /// No message is ready.
    Empty,
    /// The other end was closed (or its process died) and everything it sent has been read.
    Disconnected,
    /// The message cannot be received as asked; `E` says why.
    Decode(E),
}

/// Why a pipe's `recv_timeout` failed. `E` as in [`RecvError`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RecvTimeoutError<E = Infallible> {
    /// No message began to arrive before the timeout passed.
    Timeout,
    /// The other end was closed (or its process died) and everything it sent has been read.
    Disconnected,
    /// The message cannot be received as asked; `E` says why.
    Decode(E),
}

const PEER_GONE: &str = "the other end of the pipe is closed or its process died";
const PEER_DONE: &str =
    "the other end of the pipe is closed (or died) and everything it sent was read";

impl<E: fmt::Display> fmt::Display for SendError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::Disconnected => f.write_str(PEER_GONE),
            SendError::Encode(e) => e.fmt(f),
        }
    }
}

impl<E: fmt::Display> fmt::Display for TrySendError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrySendError::Full => f.write_str("the pipe has no room for the message now"),
            TrySendError::Disconnected => f.write_str(PEER_GONE),
            TrySendError::Encode(e) => e.fmt(f),
        }
    }
}

impl<E: fmt::Display> fmt::Display for SendTimeoutError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendTimeoutError::Timeout => {
                f.write_str("the pipe had no room for the message before the timeout")
            }
            SendTimeoutError::Disconnected => f.write_str(PEER_GONE),
            SendTimeoutError::Encode(e) => e.fmt(f),
        }
    }
}

impl<E: fmt::Display> fmt::Display for RecvError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecvError::Disconnected => f.write_str(PEER_DONE),
            RecvError::Decode(e) => e.fmt(f),
        }
    }
}

impl<E: fmt::Display> fmt::Display for TryRecvError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TryRecvError::Empty => f.write_str("no message is ready"),
            TryRecvError::Disconnected => f.write_str(PEER_DONE),
            TryRecvError::Decode(e) => e.fmt(f),
        }
    }
}

impl<E: fmt::Display> fmt::Display for RecvTimeoutError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecvTimeoutError::Timeout => f.write_str("no message arrived before the timeout"),
            RecvTimeoutError::Disconnected => f.write_str(PEER_DONE),
            RecvTimeoutError::Decode(e) => e.fmt(f),
        }
    }
}

impl<E: fmt::Debug + fmt::Display> std::error::Error for SendError<E> {}
impl<E: fmt::Debug + fmt::Display> std::error::Error for TrySendError<E> {}
impl<E: fmt::Debug + fmt::Display> std::error::Error for SendTimeoutError<E> {}
impl<E: fmt::Debug + fmt::Display> std::error::Error for RecvError<E> {}
impl<E: fmt::Debug + fmt::Display> std::error::Error for TryRecvError<E> {}
impl<E: fmt::Debug + fmt::Display> std::error::Error for RecvTimeoutError<E> {}

// ---- Shared containers: SharedDict and SharedList ----------------------------------------------

/// Why an operation on a [`SharedDict`](crate::SharedDict) or [`SharedList`](crate::SharedList)
/// failed. Nothing was changed unless the variant says otherwise.
///
/// A container whose last writer died mid-operation is repaired by the next one to take its
/// lock, so there is no `OwnerDied` here: see the containers' consistency model.
#[derive(Debug)]
#[non_exhaustive]
pub enum ContainerError {
    /// Every entry is taken; the capacity was fixed at creation.
    Full {
        /// The number of entries the container holds at most.
        capacity: usize,
    },
    /// The encoded entry (key and value, or list item) is longer than the room each entry has,
    /// fixed at creation.
    TooLarge {
        /// The encoded length in bytes.
        len: usize,
        /// The room per entry in bytes.
        max: usize,
    },
    /// The index is outside the list (Python's `IndexError`).
    IndexOutOfRange {
        /// The index given (negative indices count from the end).
        index: i128,
        /// The list's length at the time.
        len: usize,
    },
    /// A key or value could not be serialised.
    Encode,
    /// Stored bytes are not a valid value of the type asked for.
    Decode,
    /// This thread already holds the container's lock: a container was written from inside the
    /// closure of its own `update`.
    Deadlock,
    /// The shared memory does not hold a valid container (it was overwritten from outside).
    /// [`clear`](crate::SharedDict::clear) resets it.
    Corrupt {
        /// What was found.
        reason: &'static str,
    },
    /// The lock is unusable (the segment was overwritten), or another OS error.
    Os(io::Error),
}

impl fmt::Display for ContainerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ContainerError::Full { capacity } => write!(
                f,
                "the container is full ({capacity} entries); remove some, or create it with a larger capacity"
            ),
            ContainerError::TooLarge { len, max } => write!(
                f,
                "the entry takes {len} bytes encoded, more than the {max} bytes each entry has; create the container with more bytes per entry"
            ),
            ContainerError::IndexOutOfRange { index, len } => {
                write!(f, "list index {index} out of range for a list of length {len}")
            }
            ContainerError::Encode => f.write_str("the key or value could not be serialised"),
            ContainerError::Decode => {
                f.write_str("the stored bytes are not a valid value of the type asked for")
            }
            ContainerError::Deadlock => f.write_str(
                "this thread already holds the container's lock; do not write to it from inside its own update",
            ),
            ContainerError::Corrupt { reason } => write!(
                f,
                "the container's shared memory is damaged ({reason}); clear it or create it again"
            ),
            ContainerError::Os(e) => {
                write!(f, "the container's lock is unusable (is the segment damaged?): {e}")
            }
        }
    }
}

impl std::error::Error for ContainerError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ContainerError::Os(e) => Some(e),
            _ => None,
        }
    }
}

// What the codecs report, as the containers report it.

impl From<Infallible> for ContainerError {
    fn from(never: Infallible) -> Self {
        match never {}
    }
}

impl From<TooLarge> for ContainerError {
    fn from(e: TooLarge) -> Self {
        ContainerError::TooLarge {
            len: e.len,
            max: e.max,
        }
    }
}

impl From<EncodeError> for ContainerError {
    fn from(e: EncodeError) -> Self {
        match e {
            EncodeError::TooLarge(t) => t.into(),
            EncodeError::Serialize => ContainerError::Encode,
        }
    }
}

impl From<DecodeError> for ContainerError {
    fn from(_: DecodeError) -> Self {
        ContainerError::Decode
    }
}

// ---------------------------------------------------------------------------------------------
// The synchronisation family: Semaphore, BoundedSemaphore, Event, Condition, Barrier.
// ---------------------------------------------------------------------------------------------

/// Why acquiring a [`Semaphore`](crate::Semaphore) permit failed.
///
/// `acquire` can return `TooManyProcesses` and `Os`; `try_acquire` adds `WouldBlock`;
/// `acquire_timeout` adds `Timeout`.
#[derive(Debug)]
#[non_exhaustive]
pub enum AcquireError {
    /// No permit was free (`try_acquire`).
    WouldBlock,
    /// No permit came free before the timeout (`acquire_timeout`).
    Timeout,
    /// This process has no record in the semaphore's table to count its permits in, and every
    /// record is taken (a child that inherited the handle through `fork` claims its own).
    TooManyProcesses {
        /// The number of records.
        max: usize,
    },
    /// The semaphore's lock is not a valid lock (the segment was overwritten).
    Os(io::Error),
}

impl fmt::Display for AcquireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AcquireError::WouldBlock => f.write_str("no permit is free"),
            AcquireError::Timeout => f.write_str("no permit came free before the timeout"),
            AcquireError::TooManyProcesses { max } => write!(
                f,
                "all {max} process records of the semaphore are taken; close some handles"
            ),
            AcquireError::Os(e) => {
                write!(
                    f,
                    "the semaphore is unusable (is the segment damaged?): {e}"
                )
            }
        }
    }
}

impl std::error::Error for AcquireError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            AcquireError::Os(e) => Some(e),
            _ => None,
        }
    }
}

/// Why a [`Semaphore::release`](crate::Semaphore::release) failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum ReleaseError {
    /// A [`BoundedSemaphore`](crate::BoundedSemaphore) would hold more permits than it was
    /// created with (Python's `ValueError`): free and held permits already add up to it.
    AboveInitial {
        /// The value it was created with.
        initial: u32,
    },
    /// The count would pass [`SEMAPHORE_MAX`](crate::SEMAPHORE_MAX).
    Overflow,
    /// The semaphore's lock is not a valid lock (the segment was overwritten).
    Os(io::Error),
}

impl fmt::Display for ReleaseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReleaseError::AboveInitial { initial } => write!(
                f,
                "semaphore released too many times: it was created with {initial} permits"
            ),
            ReleaseError::Overflow => f.write_str("the semaphore's count would overflow"),
            ReleaseError::Os(e) => {
                write!(
                    f,
                    "the semaphore is unusable (is the segment damaged?): {e}"
                )
            }
        }
    }
}

impl std::error::Error for ReleaseError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ReleaseError::Os(e) => Some(e),
            _ => None,
        }
    }
}

/// Why a [`Condition`](crate::Condition) wait did not simply return.
#[derive(Debug)]
#[non_exhaustive]
pub enum ConditionError {
    /// The wait is over and the lock is held again, but a holder of the lock died holding it
    /// (or a later holder did not mark it consistent): the data it guards may be half-updated.
    /// Check it, then call the guard's `mark_consistent`.
    OwnerDied {
        /// Whether a notify ended the wait (`false`: it timed out).
        notified: bool,
    },
    /// Every waiter slot of the condition is taken; the lock was not released.
    TooManyWaiters {
        /// The number of slots.
        max: usize,
    },
    /// This process has no record in the condition's table, by which its wait could be found
    /// dead, and every record is taken (a child that inherited the handle through `fork` claims
    /// its own); the lock was not released.
    TooManyProcesses {
        /// The number of records.
        max: usize,
    },
    /// The lock is not a valid lock (the segment was overwritten).
    Os(io::Error),
}

impl fmt::Display for ConditionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConditionError::OwnerDied { .. } => f.write_str(
                "a holder of the condition's lock died holding it; check the data, then mark the guard consistent",
            ),
            ConditionError::TooManyWaiters { max } => {
                write!(f, "all {max} waiter slots of the condition are taken")
            }
            ConditionError::TooManyProcesses { max } => write!(
                f,
                "all {max} process records of the condition are taken; close some handles"
            ),
            ConditionError::Os(e) => {
                write!(f, "the condition's lock is unusable (is the segment damaged?): {e}")
            }
        }
    }
}

impl std::error::Error for ConditionError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ConditionError::Os(e) => Some(e),
            _ => None,
        }
    }
}

/// What broke a [`Barrier`](crate::Barrier).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BreakCause {
    /// [`Barrier::abort`](crate::Barrier::abort) was called.
    Aborted,
    /// [`Barrier::reset`](crate::Barrier::reset) was called while this party waited.
    Reset,
    /// A party's `wait_timeout` ran out (Python's rule: a timeout breaks the barrier).
    Timeout,
    /// The action panicked in the party that ran it.
    ActionPanicked,
    /// A process that had taken part in the barrier died.
    PartyDied {
        /// Its pid.
        pid: u32,
    },
}

impl fmt::Display for BreakCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BreakCause::Aborted => f.write_str("it was aborted"),
            BreakCause::Reset => f.write_str("it was reset while this party waited"),
            BreakCause::Timeout => f.write_str("a party's wait timed out"),
            BreakCause::ActionPanicked => f.write_str("its action panicked"),
            BreakCause::PartyDied { pid } => write!(f, "party process {pid} died"),
        }
    }
}

/// Why a [`Barrier`](crate::Barrier) wait failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum BarrierError {
    /// The barrier is broken (Python's `BrokenBarrierError`); `reset` makes it usable again.
    Broken(BreakCause),
    /// This process has no record in the barrier's table to be known as a party by, and every
    /// record is taken (a child that inherited the handle through `fork` claims its own).
    TooManyProcesses {
        /// The number of records.
        max: usize,
    },
    /// The barrier's lock is not a valid lock (the segment was overwritten).
    Os(io::Error),
}

impl fmt::Display for BarrierError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BarrierError::Broken(cause) => {
                write!(
                    f,
                    "the barrier is broken: {cause}; reset it to use it again"
                )
            }
            BarrierError::TooManyProcesses { max } => write!(
                f,
                "all {max} process records of the barrier are taken; close some handles"
            ),
            BarrierError::Os(e) => {
                write!(f, "the barrier is unusable (is the segment damaged?): {e}")
            }
        }
    }
}

impl std::error::Error for BarrierError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            BarrierError::Os(e) => Some(e),
            _ => None,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Processes and pools (`crate::process`).
// ---------------------------------------------------------------------------------------------

/// How a process ended: its exit code, or the signal that killed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Exit {
    /// It exited with this code.
    Code(i32),
    /// It was killed by this signal.
    Signal(i32),
}

impl Exit {
    /// Python's `exitcode`: the exit code, or minus the signal number.
    ///
    /// ```
    /// use mpshm::process::Exit;
    /// assert_eq!(Exit::Code(3).exitcode(), 3);
    /// assert_eq!(Exit::Signal(9).exitcode(), -9);
    /// ```
    pub fn exitcode(self) -> i32 {
        match self {
            Exit::Code(c) => c,
            Exit::Signal(s) => -s,
        }
    }

    /// The inverse of [`exitcode`](Self::exitcode).
    pub(crate) fn from_exitcode(code: i32) -> Exit {
        if code < 0 {
            Exit::Signal(-code)
        } else {
            Exit::Code(code)
        }
    }
}

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Exit::Code(c) => write!(f, "exit code {c}"),
            Exit::Signal(s) => match signal_name(s) {
                Some(name) => write!(f, "signal {s} ({name})"),
                None => write!(f, "signal {s}"),
            },
        }
    }
}

fn signal_name(sig: i32) -> Option<&'static str> {
    Some(match sig {
        1 => "SIGHUP",
        2 => "SIGINT",
        3 => "SIGQUIT",
        4 => "SIGILL",
        6 => "SIGABRT",
        7 => "SIGBUS",
        8 => "SIGFPE",
        9 => "SIGKILL",
        11 => "SIGSEGV",
        13 => "SIGPIPE",
        14 => "SIGALRM",
        15 => "SIGTERM",
        _ => return None,
    })
}

/// Why starting, running or joining a [`Process`](crate::process::Process), or a task of a
/// [`Pool`](crate::process::Pool), failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum ProcessError {
    /// The function panicked in the child (or a pool task panicked); the panic's message.
    Panicked {
        /// The process it ran in.
        pid: u32,
        /// The panic payload, if it was a string.
        message: String,
    },
    /// The pool worker running the task died (killed by a signal, out of memory, or it exited)
    /// before it returned the result. The worker has been replaced.
    WorkerDied {
        /// The worker's pid.
        pid: u32,
        /// How it ended.
        exit: Exit,
    },
    /// The process ended without handing back a result: it was killed, or it exited (with
    /// `std::process::exit`, or a non-zero status for a launched command).
    Exited {
        /// Its pid.
        pid: u32,
        /// How it ended.
        exit: Exit,
    },
    /// The pool task ran past the pool's task timeout; its worker was killed and replaced.
    TaskTimeout {
        /// The killed worker's pid.
        pid: u32,
        /// The timeout.
        after: Duration,
    },
    /// A wait with a timeout (`get_timeout`) ended before the result was ready; it may still
    /// come.
    Timeout,
    /// The child ran the program's own `main` instead of the function: neither mpshm's start-up
    /// hook nor a call to [`child_main`](crate::process::child_main) took it over.
    NotIntercepted {
        /// The child's pid (0 when this process is itself such a child).
        pid: u32,
    },
    /// `fork` was refused because this process runs more than one thread.
    ForkWithThreads {
        /// How many threads it runs.
        threads: usize,
    },
    /// The function is not in the executable (it lives in another shared library), so a
    /// re-executed child cannot find it.
    NotInExecutable,
    /// The process was not started yet.
    NotStarted,
    /// `start` was called a second time.
    AlreadyStarted,
    /// The result was already taken by an earlier `join` or `get`.
    ResultTaken,
    /// [`Process::close`](crate::process::Process::close) was called while the child still
    /// runs (Python's `ValueError`): join or terminate it first.
    StillRunning {
        /// The child's pid.
        pid: u32,
    },
    /// The [`Process`](crate::process::Process) handle was closed; it no longer refers to a
    /// process (Python's `ValueError: process object is closed`).
    ProcessClosed,
    /// `start` was called in a daemon child: a daemon may not start children (Python's
    /// `daemonic processes are not allowed to have children`), since it is killed with its
    /// parent and would leave them orphaned.
    StartInDaemon,
    /// The pool was closed or terminated; it takes no more work.
    Closed,
    /// The pool was terminated before the task finished.
    Terminated,
    /// `join` was called on a pool that was neither closed nor terminated.
    PoolRunning,
    /// The pool's initializer failed in a worker; the pool takes no more work.
    InitializerFailed {
        /// The panic message.
        message: String,
    },
    /// An encoded argument or result could not be sent: it is longer than the message limit
    /// and no segment of its own could be made for it (`/dev/shm` is full).
    TooLarge {
        /// Its length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A value could not be encoded (a serde error).
    Encode {
        /// What went wrong.
        reason: String,
    },
    /// Bytes from another process are not a valid encoding of the expected type.
    Decode {
        /// What was being decoded.
        what: &'static str,
    },
    /// A shared-memory segment could not be created or opened.
    Segment(Error),
    /// An operating-system call failed.
    Io(io::Error),
}

impl ProcessError {
    /// A copy of this error, for the items of a chunk that failed together. `Segment` and `Io`
    /// keep their text but not their source.
    pub(crate) fn duplicate(&self) -> ProcessError {
        use ProcessError as E;
        match self {
            E::Panicked { pid, message } => E::Panicked {
                pid: *pid,
                message: message.clone(),
            },
            E::WorkerDied { pid, exit } => E::WorkerDied {
                pid: *pid,
                exit: *exit,
            },
            E::Exited { pid, exit } => E::Exited {
                pid: *pid,
                exit: *exit,
            },
            E::TaskTimeout { pid, after } => E::TaskTimeout {
                pid: *pid,
                after: *after,
            },
            E::Timeout => E::Timeout,
            E::NotIntercepted { pid } => E::NotIntercepted { pid: *pid },
            E::ForkWithThreads { threads } => E::ForkWithThreads { threads: *threads },
            E::NotInExecutable => E::NotInExecutable,
            E::NotStarted => E::NotStarted,
            E::AlreadyStarted => E::AlreadyStarted,
            E::ResultTaken => E::ResultTaken,
            E::StillRunning { pid } => E::StillRunning { pid: *pid },
            E::ProcessClosed => E::ProcessClosed,
            E::StartInDaemon => E::StartInDaemon,
            E::Closed => E::Closed,
            E::Terminated => E::Terminated,
            E::PoolRunning => E::PoolRunning,
            E::InitializerFailed { message } => E::InitializerFailed {
                message: message.clone(),
            },
            E::TooLarge { len, max } => E::TooLarge {
                len: *len,
                max: *max,
            },
            E::Encode { reason } => E::Encode {
                reason: reason.clone(),
            },
            E::Decode { what } => E::Decode { what },
            E::Segment(e) => E::Io(io::Error::other(e.to_string())),
            E::Io(e) => E::Io(io::Error::new(e.kind(), e.to_string())),
        }
    }
}

impl fmt::Display for ProcessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProcessError::Panicked { pid, message } => {
                write!(f, "the function panicked in process {pid}: {message}")
            }
            ProcessError::WorkerDied { pid, exit } => write!(
                f,
                "pool worker {pid} died ({exit}) while running the task; it has been replaced"
            ),
            ProcessError::Exited { pid, exit } => {
                write!(f, "process {pid} ended ({exit}) without returning a result")
            }
            ProcessError::TaskTimeout { pid, after } => write!(
                f,
                "the task ran longer than the pool's task timeout of {after:?}; worker {pid} was killed and replaced"
            ),
            ProcessError::Timeout => {
                f.write_str("timed out before the result was ready; it may still come")
            }
            ProcessError::NotIntercepted { pid } => write!(
                f,
                "child process {pid} ran the program's main instead of the function: the start-up hook did not run; add `mpshm::process::child_main();` as the first line of `main`"
            ),
            ProcessError::ForkWithThreads { threads } => write!(
                f,
                "cannot fork: this process runs {threads} threads, and a forked child of a multi-threaded process may only call async-signal-safe functions; use the spawn start method"
            ),
            ProcessError::NotInExecutable => f.write_str(
                "the function is not in the executable (it is in another shared library), so a re-executed child cannot find it; use a function defined in the program",
            ),
            ProcessError::NotStarted => f.write_str("the process has not been started"),
            ProcessError::AlreadyStarted => f.write_str("a process can be started only once"),
            ProcessError::ResultTaken => {
                f.write_str("the result was already taken by an earlier join or get")
            }
            ProcessError::StillRunning { pid } => write!(
                f,
                "cannot close the handle of process {pid} while it runs; join or terminate it first"
            ),
            ProcessError::ProcessClosed => {
                f.write_str("the process handle is closed and no longer refers to a process")
            }
            ProcessError::StartInDaemon => f.write_str(
                "a daemon process may not start children (it is killed with its parent, which would orphan them); make it a non-daemon",
            ),
            ProcessError::Closed => f.write_str("the pool is closed and takes no more work"),
            ProcessError::Terminated => {
                f.write_str("the pool was terminated before the task finished")
            }
            ProcessError::PoolRunning => {
                f.write_str("the pool is still running; call close or terminate before join")
            }
            ProcessError::InitializerFailed { message } => write!(
                f,
                "the pool's initializer panicked in a worker: {message}; the pool takes no more work"
            ),
            ProcessError::TooLarge { len, max } => write!(
                f,
                "an encoded argument or result of {len} bytes is longer than the message limit of {max}, and no segment of its own could be made for it; free space in /dev/shm"
            ),
            ProcessError::Encode { reason } => write!(f, "a value could not be encoded: {reason}"),
            ProcessError::Decode { what } => write!(
                f,
                "{what} from another process is not a valid encoding of the expected type"
            ),
            ProcessError::Segment(e) => write!(f, "shared-memory segment: {e}"),
            ProcessError::Io(e) => write!(f, "process I/O error: {e}"),
        }
    }
}

impl std::error::Error for ProcessError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ProcessError::Segment(e) => Some(e),
            ProcessError::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<Error> for ProcessError {
    fn from(e: Error) -> Self {
        ProcessError::Segment(e)
    }
}

impl From<io::Error> for ProcessError {
    fn from(e: io::Error) -> Self {
        ProcessError::Io(e)
    }
}
