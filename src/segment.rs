//! A named shared-memory segment and the header that opens it.
//!
//! Every mpshm object lives in one POSIX shared-memory object laid out as
//! `[ header | lock (optional) | payload ]`. The creator reserves the whole size, writes the header
//! and initialises the lock and payload, and publishes the `ready` word last with a Release store.
//! An opener reads the header with `pread` into a private copy (a file truncated under it gives a
//! short read, never `SIGBUS`), waits a bounded time for `ready`, validates every field as untrusted
//! input, and only then maps the file. Offsets used afterwards come from that validated copy.
//!
//! This module is the one place where the mapping's base pointer becomes typed references; every
//! other module goes through [`Segment`]'s safe accessors.

use std::fmt;
use std::fs::File;
use std::io;
use std::marker::PhantomData;
use std::mem::ManuallyDrop;
use std::ops::{Deref, DerefMut};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytemuck::{Pod, Zeroable};
use memmap2::{MmapOptions, MmapRaw};

use crate::error::Error;
use crate::sys;

/// The first eight bytes of every mpshm segment.
pub(crate) const MAGIC: u64 = u64::from_le_bytes(*b"mpshm\0\x01\xfe");
/// The layout version this build writes and accepts.
pub(crate) const VERSION: u32 = 6;
/// Bytes reserved for the header; the lock area or payload starts here.
pub(crate) const HEADER_SIZE: usize = 256;
/// Bytes reserved for an embedded lock: the mutex and the poison word. A small payload follows
/// on the same cache line, so a lock handed to another core brings the value with it.
pub(crate) const LOCK_AREA: usize = 56;
/// The value of `ready` once the creator has finished; 0 while it initialises.
const READY: u32 = 0x5EAD_1E55;
/// The longest type tag stored; longer tags are cut (the same way on both sides).
pub(crate) const TAG_LEN: usize = 64;
/// The largest element alignment accepted.
const MAX_ALIGN: u64 = 4096;
/// The largest segment accepted (1 TiB): anything bigger in a header is garbage.
const MAX_SEGMENT: u64 = 1 << 40;
/// How many producers (and consumers) a queue records unless `Options::max_attached` says
/// otherwise.
pub(crate) const DEFAULT_MAX_ATTACHED: usize = 32;
/// How long `open` waits for a creator to publish `ready`, unless told otherwise.
pub(crate) const DEFAULT_OPEN_TIMEOUT: Duration = Duration::from_secs(1);
/// The longest sleep between looks at a header whose creator has not published it yet.
const LONGEST_PAUSE: Duration = Duration::from_millis(2);

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
    fn code(self) -> u32 {
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

    fn from_code(code: u32) -> Option<Kind> {
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
    fn has_lock(self) -> bool {
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
    fn recursive_lock(self) -> bool {
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

/// The header image, as stored at offset 0. `ready` is read and written through an atomic view of
/// the mapping; this plain copy is what `open` validates.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Header {
    magic: u64,
    version: u32,
    kind: u32,
    ready: u32,
    header_size: u32,
    total_size: u64,
    lock_offset: u64,
    payload_offset: u64,
    elem_size: u64,
    elem_align: u64,
    count: u64,
    creator_pid: u32,
    tag_len: u32,
    creator_start: u64,
    params: [u64; 4],
    tag: [u8; TAG_LEN],
}

const READY_OFFSET: usize = std::mem::offset_of!(Header, ready);
const _: () = assert!(std::mem::size_of::<Header>() <= HEADER_SIZE);

/// Types that may be viewed in place inside a segment, shared with other processes.
///
/// # Safety
///
/// Every bit pattern must be a valid value, and all mutation must go through interior mutability
/// that is sound when other threads and processes access the same bytes concurrently (atomics, or
/// a process-shared OS primitive).
pub unsafe trait Shared: Sync {}

/// What a caller asks of a segment: its kind and payload.
#[derive(Debug, Clone)]
pub(crate) struct Spec {
    pub kind: Kind,
    pub elem_size: usize,
    pub elem_align: usize,
    /// Element count; on open, `None` accepts whatever the creator chose.
    pub count: Option<usize>,
    pub tag: String,
    /// Kind-specific parameters, stored verbatim (e.g. a queue's capacity).
    pub params: [u64; 4],
}

impl Spec {
    /// The spec for `count` elements of `T` with the type tag `tag` (default: its type name).
    pub(crate) fn of<T>(kind: Kind, count: Option<usize>, tag: Option<&str>) -> Spec {
        Spec {
            kind,
            elem_size: std::mem::size_of::<T>(),
            elem_align: std::mem::align_of::<T>(),
            count,
            tag: cut_tag(tag.unwrap_or(std::any::type_name::<T>())).to_owned(),
            params: [0; 4],
        }
    }
}

fn cut_tag(tag: &str) -> &str {
    let mut end = tag.len().min(TAG_LEN);
    while !tag.is_char_boundary(end) {
        end -= 1;
    }
    &tag[..end]
}

/// Where things sit in a segment: `(lock_offset, payload_offset, total_size)`.
fn place(kind: Kind, elem_size: u64, elem_align: u64, count: u64) -> Option<(u64, u64, u64)> {
    if !elem_align.is_power_of_two() || elem_align > MAX_ALIGN {
        return None;
    }
    let (lock, start) = if kind.has_lock() {
        (HEADER_SIZE as u64, (HEADER_SIZE + LOCK_AREA) as u64)
    } else {
        (0, HEADER_SIZE as u64)
    };
    // Locked payloads start right after the lock (8-aligned at least); others on a cache line.
    let align = if kind.has_lock() {
        elem_align.max(8)
    } else {
        elem_align.max(64)
    };
    let payload = start.checked_add(align - 1)? & !(align - 1);
    let total = payload.checked_add(elem_size.checked_mul(count)?)?;
    (total <= MAX_SEGMENT).then_some((lock, payload, total))
}

/// Options shared by every constructor that creates or opens a segment.
///
/// ```
/// use std::time::Duration;
/// let mut opts = mpshm::Options::new();
/// opts.mode(0o640).open_timeout(Duration::from_millis(200)).type_tag("my_app::Sample");
/// ```
#[derive(Debug, Clone)]
pub struct Options {
    pub(crate) mode: u32,
    pub(crate) open_timeout: Duration,
    pub(crate) type_tag: Option<String>,
    pub(crate) max_attached: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            mode: 0o600,
            open_timeout: DEFAULT_OPEN_TIMEOUT,
            type_tag: None,
            max_attached: DEFAULT_MAX_ATTACHED,
        }
    }
}

impl Options {
    /// The defaults: mode `0o600`, a 1 s open timeout, the Rust type name as the type tag, 32
    /// producers and 32 consumers tracked per queue.
    pub fn new() -> Options {
        Options::default()
    }

    /// How many producers, and how many consumers, a queue this handle creates keeps a record
    /// of (default 32, at most 1024): a handle is recorded as a producer at its first put and
    /// as a consumer at its first get, and a `get` on an empty queue returns `Disconnected`
    /// once producers have come and every one has gone (and a `put` on a full one once every
    /// consumer has). Handles beyond this many run untracked: they are counted, but not by
    /// process, so one that dies without detaching is never found gone, and from then on the
    /// queue never says `Disconnected` on that side (it waits, as if that peer lived). Opening
    /// takes the creator's value; this setting is ignored there.
    ///
    /// ```
    /// let mut opts = mpshm::Options::new();
    /// opts.max_attached(4);
    /// ```
    pub fn max_attached(&mut self, n: usize) -> &mut Self {
        self.max_attached = n;
        self
    }

    /// Permission bits for a segment this handle creates (the process umask still applies):
    /// `0o777` at most. Any other bit (setuid, setgid, sticky) makes `create` fail with
    /// [`Error::InvalidMode`].
    pub fn mode(&mut self, mode: u32) -> &mut Self {
        self.mode = mode;
        self
    }

    /// How long `open` waits for a segment's creator to finish initialising it.
    pub fn open_timeout(&mut self, timeout: Duration) -> &mut Self {
        self.open_timeout = timeout;
        self
    }

    /// The tag that names the element type, checked on open. Defaults to
    /// [`std::any::type_name`], which two separately built binaries agree on only when the type
    /// lives at the same path; set the same tag on both sides to be sure. At most 64 bytes count.
    pub fn type_tag(&mut self, tag: impl Into<String>) -> &mut Self {
        self.type_tag = Some(tag.into());
        self
    }
}

/// Checks that `name` is portable: 1 to 30 bytes of ASCII letters, digits, `_`, `-` and `.`, not
/// starting with `.`. One leading `/` is accepted and dropped.
pub(crate) fn validate_name(name: &str) -> Result<&str, Error> {
    let bare = name.strip_prefix('/').unwrap_or(name);
    let reason = if bare.is_empty() {
        Some("it is empty")
    } else if bare.len() > sys::MAX_NAME_LEN {
        Some("it is longer than 30 bytes (macOS allows 31 including the leading '/')")
    } else if bare.starts_with('.') {
        Some("it starts with '.'")
    } else if !bare
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
    {
        Some(
            "only ASCII letters, digits, '_', '-' and '.' are allowed (one leading '/' is dropped)",
        )
    } else {
        None
    };
    match reason {
        Some(reason) => Err(Error::InvalidName {
            name: name.to_owned(),
            reason,
        }),
        None => Ok(bare),
    }
}

fn open_error(name: &str, e: io::Error) -> Error {
    // What `O_NOFOLLOW` says of a link (`ELOOP`), and an open says of a directory opened for
    // writing or a socket: name what is there.
    if matches!(
        e.raw_os_error(),
        Some(libc::ELOOP | libc::EISDIR | libc::ENXIO)
    ) {
        if let Some(found) = sys::shm_stat(name).ok().and_then(|st| st.irregular) {
            return not_regular(name, found);
        }
    }
    match e.kind() {
        io::ErrorKind::NotFound => Error::NotFound {
            name: name.to_owned(),
        },
        io::ErrorKind::AlreadyExists => Error::AlreadyExists {
            name: name.to_owned(),
        },
        _ => Error::Io(e),
    }
}

fn not_regular(name: &str, found: &'static str) -> Error {
    Error::NotRegular {
        name: name.to_owned(),
        found,
    }
}

/// Opens the existing `name` read-write: a regular file, or a typed error.
fn open_file(name: &str) -> Result<File, Error> {
    let file = sys::shm_open(name, true).map_err(|e| open_error(name, e))?;
    match sys::file_stat(&file)?.irregular {
        None => Ok(file),
        Some(found) => Err(not_regular(name, found)),
    }
}

/// A mapped segment. Dropping the handle that created it unlinks the name, unless
/// [`persist`](Segment::persist) was called, and only in the process that created it: a copy of
/// the handle inherited through `fork` and dropped in the child leaves the name alone. Openers
/// never unlink.
///
/// The mapping is kept (never unmapped) when the handle is dropped while a robust mutex in it is
/// still held by a thread of this process (a guard leaked with `mem::forget`, or a liveness lock
/// held by another thread): that mutex is on the thread's robust list, which glibc writes through
/// when the thread takes its next robust mutex, and which the kernel walks when the thread exits
/// to tell other processes that the holder died. Unmapping it would crash the one and silence the
/// other.
pub(crate) struct Segment {
    map: ManuallyDrop<MmapRaw>,
    /// Offsets of robust mutexes besides the lock area's, checked on drop as above.
    robust: Mutex<Vec<usize>>,
    name: String,
    header: Header,
    /// The object this handle created, to unlink only that one, and only from there.
    created: Option<Creation>,
    persist: AtomicBool,
}

/// What a creating handle remembers of its creation.
#[derive(Debug, Clone, Copy)]
struct Creation {
    /// `(dev, inode)` of the object it created.
    id: sys::FileId,
    /// The process that created it.
    pid: u32,
}

impl Creation {
    /// Whether this process made the object: a forked child holds a copy of its parent's
    /// handle, and the parent's segment is not the child's to unlink.
    fn here(self) -> bool {
        // A system call rather than `sys::thread_ids`: a handle may be dropped by a thread-local
        // destructor, after the cached ids are gone.
        self.pid == sys::current_pid()
    }
}

impl fmt::Debug for Segment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Segment")
            .field("name", &self.name)
            .field("kind", &self.kind())
            .field("len", &self.map.len())
            .field("owner", &self.is_owner())
            .finish()
    }
}

impl Segment {
    /// Creates `name` exclusively, sized for `spec`, initialises its lock (if its kind has one),
    /// runs `init` to write the initial payload, then publishes it.
    pub(crate) fn create(
        name: &str,
        spec: &Spec,
        opts: &Options,
        init: impl FnOnce(&Segment),
    ) -> Result<Segment, Error> {
        let bare = validate_name(name)?;
        if opts.mode & !0o777 != 0 {
            return Err(Error::InvalidMode { mode: opts.mode });
        }
        let count = spec.count.unwrap_or(0);
        let (lock, payload, total) = place(
            spec.kind,
            spec.elem_size as u64,
            spec.elem_align as u64,
            count as u64,
        )
        .filter(|&(_, _, total)| total <= isize::MAX as u64)
        .ok_or(Error::InvalidLength {
            len: count,
            reason: "the segment would be larger than 1 TiB",
        })?;
        let file = sys::shm_create(bare, opts.mode).map_err(|e| open_error(bare, e))?;
        // From here on, a failure must remove the name we just took.
        let made = (|| {
            sys::reserve(&file, total).map_err(|e| match e.raw_os_error() {
                Some(libc::ENOSPC) => Error::NoSpace {
                    name: bare.to_owned(),
                    bytes: total,
                },
                _ => Error::Io(e),
            })?;
            let id = sys::file_stat(&file)?.id;
            let map = MmapOptions::new().len(total as usize).map_raw(&file)?;
            let pid = sys::current_pid();
            let mut header = Header {
                magic: MAGIC,
                version: VERSION,
                kind: spec.kind.code(),
                ready: 0,
                header_size: HEADER_SIZE as u32,
                total_size: total,
                lock_offset: lock,
                payload_offset: payload,
                elem_size: spec.elem_size as u64,
                elem_align: spec.elem_align as u64,
                count: count as u64,
                creator_pid: pid,
                tag_len: 0,
                creator_start: sys::process_start_time(pid),
                params: spec.params,
                tag: [0; TAG_LEN],
            };
            let tag = cut_tag(&spec.tag);
            header.tag[..tag.len()].copy_from_slice(tag.as_bytes());
            header.tag_len = tag.len() as u32;
            let seg = Segment {
                map: ManuallyDrop::new(map),
                robust: Mutex::new(Vec::new()),
                name: bare.to_owned(),
                header,
                created: Some(Creation { id, pid }),
                persist: AtomicBool::new(false),
            };
            seg.copy_in(0, bytemuck::bytes_of(&header));
            if let Some(mutex) = seg.mutex() {
                // SAFETY: the segment is not published yet (ready is 0, and openers wait for it),
                // so no one else can touch the mutex during its initialisation.
                unsafe { mutex.init(spec.kind.recursive_lock()) }?;
            }
            init(&seg);
            // Release: pairs with the Acquire load in `Segment::open`; everything written above
            // happens-before an opener's first use of the segment.
            seg.shared::<AtomicU32>(READY_OFFSET)
                .store(READY, Ordering::Release);
            Ok(seg)
        })();
        if made.is_err() {
            let _ = sys::shm_unlink(bare);
        }
        made
    }

    /// Opens `name`, waiting up to `opts.open_timeout` for its creator, and checks it against
    /// `spec`.
    pub(crate) fn open(name: &str, spec: &Spec, opts: &Options) -> Result<Segment, Error> {
        let bare = validate_name(name)?;
        let mut file = open_file(bare)?;
        let (header, len) = wait_ready(bare, &mut file, opts.open_timeout)?;
        validate(bare, &header, len, spec)?;
        let map = MmapOptions::new().len(len as usize).map_raw(&file)?;
        let seg = Segment {
            map: ManuallyDrop::new(map),
            robust: Mutex::new(Vec::new()),
            name: bare.to_owned(),
            header,
            created: None,
            persist: AtomicBool::new(false),
        };
        // Acquire: pairs with the Release store that ends `Segment::create`.
        if seg
            .shared::<AtomicU32>(READY_OFFSET)
            .load(Ordering::Acquire)
            != READY
        {
            return Err(corrupt(bare, "the ready word changed while opening"));
        }
        if let Some(mutex) = seg.mutex() {
            if !mutex.kind_ok(seg.kind().recursive_lock()) {
                return Err(corrupt(
                    bare,
                    "the lock's type word is not one mpshm writes",
                ));
            }
        }
        Ok(seg)
    }

    /// Opens `name` if it exists, or creates it. Either way the result is checked against `spec`.
    pub(crate) fn open_or_create(
        name: &str,
        spec: &Spec,
        opts: &Options,
        init: impl Fn(&Segment),
    ) -> Result<Segment, Error> {
        // The name can vanish between a failed create and the open (its creator dropped it);
        // then try again, a bounded number of times.
        let mut last = None;
        for _ in 0..16 {
            match Segment::create(name, spec, opts, &init) {
                Err(Error::AlreadyExists { .. }) => {}
                other => return other,
            }
            match Segment::open(name, spec, opts) {
                Err(e @ Error::NotFound { .. }) => last = Some(e),
                other => return other,
            }
        }
        Err(last.unwrap_or(Error::NotFound {
            name: name.to_owned(),
        }))
    }

    /// The segment's name, without a leading `/`.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    #[inline]
    pub(crate) fn kind(&self) -> Kind {
        Kind::from_code(self.header.kind).expect("validated at open")
    }

    /// The element count recorded at creation.
    pub(crate) fn count(&self) -> usize {
        self.header.count as usize
    }

    /// The kind-specific parameters recorded at creation.
    pub(crate) fn params(&self) -> [u64; 4] {
        self.header.params
    }

    #[inline]
    fn lock_offset(&self) -> Option<usize> {
        (self.header.lock_offset != 0).then_some(self.header.lock_offset as usize)
    }

    #[inline]
    pub(crate) fn payload_offset(&self) -> usize {
        self.header.payload_offset as usize
    }

    /// The embedded robust mutex, for kinds that have one.
    #[inline]
    pub(crate) fn mutex(&self) -> Option<&sys::RobustMutex> {
        self.lock_offset().map(|off| self.shared(off))
    }

    /// The word after the mutex in the lock area: set while the lock's data is in doubt.
    #[inline]
    pub(crate) fn poison_word(&self) -> Option<&AtomicU32> {
        self.lock_offset()
            .map(|off| self.shared(off + POISON_OFFSET))
    }

    /// Initialises the robust mutex at `offset` (error-checking, process-shared) while this
    /// handle is creating the segment, before it is published.
    ///
    /// # Panics
    ///
    /// If called on a segment this handle did not create, or after it was published: a bug in
    /// mpshm.
    pub(crate) fn init_robust(&self, offset: usize) -> io::Result<()> {
        // Acquire: pairs with nothing but our own store; only its value matters.
        let published = self
            .shared::<AtomicU32>(READY_OFFSET)
            .load(Ordering::Acquire)
            == READY;
        assert!(
            self.created.is_some() && !published,
            "a robust mutex is initialised only before its segment is published"
        );
        let mutex = self.shared::<sys::RobustMutex>(offset);
        // SAFETY: this handle created the segment and has not published it (checked above):
        // openers wait for `ready` before they touch anything in it, so no one else uses the
        // mutex while it is initialised.
        unsafe { mutex.init(false) }
    }

    /// Notes a robust mutex at `offset` (besides the lock area's) that threads of this process
    /// may hold, so that the mapping outlives the handle while one does (see [`Segment`]).
    pub(crate) fn register_robust(&self, offset: usize) {
        let _ = self.shared::<sys::RobustMutex>(offset);
        let mut robust = self
            .robust
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !robust.contains(&offset) {
            robust.push(offset);
        }
    }

    /// Whether a robust mutex of this mapping is held by a live thread of this process.
    fn held_here(&self) -> bool {
        let extra = self
            .robust
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        self.lock_offset()
            .into_iter()
            .chain(extra.iter().copied())
            .any(|off| self.shared::<sys::RobustMutex>(off).held_by_this_process())
    }

    /// Leaves the name in place when this (creating) handle is dropped.
    pub(crate) fn persist(&self) {
        self.persist.store(true, Ordering::Relaxed);
    }

    /// Whether this handle created the segment in this process (and will unlink it on drop
    /// unless persisted).
    pub(crate) fn is_owner(&self) -> bool {
        self.created.is_some_and(Creation::here) && !self.persist.load(Ordering::Relaxed)
    }

    /// A shared reference to an `S` at `offset`.
    ///
    /// # Panics
    ///
    /// If `S` would not lie wholly and aligned inside the mapping: offsets come from the
    /// validated header, so this is a bug in mpshm.
    #[inline]
    pub(crate) fn shared<S: Shared>(&self, offset: usize) -> &S {
        let size = std::mem::size_of::<S>();
        assert!(
            offset
                .checked_add(size)
                .is_some_and(|end| end <= self.map.len())
        );
        let ptr = self.map.as_ptr().wrapping_add(offset);
        assert!(ptr.align_offset(std::mem::align_of::<S>()) == 0);
        // SAFETY: the range is inside the mapping (checked above), aligned (checked above), and
        // lives as long as `self`. `S: Shared` accepts every bit pattern and is only mutated
        // through interior mutability that tolerates concurrent access from other processes.
        unsafe { &*ptr.cast::<S>() }
    }

    /// A shared slice of `len` values of `S` at `offset`.
    ///
    /// # Panics
    ///
    /// As [`shared`](Self::shared).
    #[inline]
    pub(crate) fn shared_slice<S: Shared>(&self, offset: usize, len: usize) -> &[S] {
        let bytes = len
            .checked_mul(std::mem::size_of::<S>())
            .expect("slice size");
        let ptr = self.range(offset, bytes);
        assert!(ptr.align_offset(std::mem::align_of::<S>()) == 0);
        // SAFETY: as in `shared`, for each of the `len` values: inside the mapping (checked by
        // `range`), aligned (checked above), valid for any bits, mutated only through interior
        // mutability that tolerates other processes.
        unsafe { std::slice::from_raw_parts(ptr.cast::<S>(), len) }
    }

    #[inline]
    fn range(&self, offset: usize, len: usize) -> *mut u8 {
        assert!(
            offset
                .checked_add(len)
                .is_some_and(|end| end <= self.map.len())
        );
        self.map.as_mut_ptr().wrapping_add(offset)
    }

    /// Copies `src` into the segment at `offset`, word by word with relaxed atomic stores, so
    /// that a racing reader sees torn data at worst, never undefined behaviour.
    #[inline]
    pub(crate) fn copy_in(&self, offset: usize, src: &[u8]) {
        let base = self.range(offset, src.len());
        let mut i = 0;
        while i < src.len() {
            let p = base.wrapping_add(i);
            if p.align_offset(8) == 0 && src.len() - i >= 8 {
                let word = u64::from_ne_bytes(src[i..i + 8].try_into().expect("8 bytes"));
                // SAFETY: `p..p+8` is inside the mapping (checked by `range`) and 8-aligned;
                // atomics tolerate concurrent access by other threads and processes.
                unsafe { AtomicU64::from_ptr(p.cast()) }.store(word, Ordering::Relaxed);
                i += 8;
            } else {
                // SAFETY: `p` is inside the mapping; a byte is always aligned.
                unsafe { AtomicU8::from_ptr(p) }.store(src[i], Ordering::Relaxed);
                i += 1;
            }
        }
    }

    /// Copies from the segment at `offset` into `dst`, the mirror of [`copy_in`](Self::copy_in).
    #[inline]
    pub(crate) fn copy_out(&self, offset: usize, dst: &mut [u8]) {
        let base = self.range(offset, dst.len());
        let mut i = 0;
        while i < dst.len() {
            let p = base.wrapping_add(i);
            if p.align_offset(8) == 0 && dst.len() - i >= 8 {
                // SAFETY: as in `copy_in`.
                let word = unsafe { AtomicU64::from_ptr(p.cast()) }.load(Ordering::Relaxed);
                dst[i..i + 8].copy_from_slice(&word.to_ne_bytes());
                i += 8;
            } else {
                // SAFETY: as in `copy_in`.
                dst[i] = unsafe { AtomicU8::from_ptr(p) }.load(Ordering::Relaxed);
                i += 1;
            }
        }
    }

    /// Reads element `index` of the payload.
    #[inline]
    pub(crate) fn read<T: Pod>(&self, index: usize) -> T {
        let mut v = T::zeroed();
        self.copy_out(self.elem_offset::<T>(index), bytemuck::bytes_of_mut(&mut v));
        v
    }

    /// Writes element `index` of the payload.
    #[inline]
    pub(crate) fn write<T: Pod>(&self, index: usize, v: &T) {
        self.copy_in(self.elem_offset::<T>(index), bytemuck::bytes_of(v));
    }

    /// Reads `out.len()` elements from the start of the payload.
    pub(crate) fn read_slice<T: Pod>(&self, out: &mut [T]) {
        self.copy_out(self.payload_offset(), bytemuck::cast_slice_mut(out));
    }

    /// Writes `src` at the start of the payload.
    pub(crate) fn write_slice<T: Pod>(&self, src: &[T]) {
        self.copy_in(self.payload_offset(), bytemuck::cast_slice(src));
    }

    #[inline]
    fn elem_offset<T>(&self, index: usize) -> usize {
        assert!(std::mem::size_of::<T>() as u64 == self.header.elem_size);
        self.payload_offset() + index * std::mem::size_of::<T>()
    }

    /// Borrows the whole payload as `[T]` for as long as `proof` (the held lock) lives.
    pub(crate) fn locked_slice<'a, T: Pod, P>(&'a self, proof: P) -> LockedSlice<'a, T, P> {
        assert!(std::mem::size_of::<T>() as u64 == self.header.elem_size);
        let len = self.count();
        let ptr = self.range(self.payload_offset(), len * std::mem::size_of::<T>());
        assert!(ptr.align_offset(std::mem::align_of::<T>()) == 0);
        LockedSlice {
            ptr: ptr.cast(),
            len,
            proof,
            _seg: PhantomData,
        }
    }
}

/// The header and the lock area, for the pinned layout (`src/layout.rs`).
#[cfg(all(test, not(loom)))]
pub(crate) fn shared_layout() -> Vec<String> {
    let kinds = (1..)
        .map_while(|c| Kind::from_code(c).map(|k| format!(" {c}={k:?}")))
        .collect::<String>();
    vec![
        crate::layout::pin!(Header {
            magic,
            version,
            kind,
            ready,
            header_size,
            total_size,
            lock_offset,
            payload_offset,
            elem_size,
            elem_align,
            count,
            creator_pid,
            tag_len,
            creator_start,
            params,
            tag
        }),
        format!(
            "constants: magic {MAGIC:#x}, ready {READY:#x}, header {HEADER_SIZE} B, lock area \
             {LOCK_AREA} B (mutex {} B, poison word at {POISON_OFFSET}), tag {TAG_LEN} B; kinds{kinds}",
            std::mem::size_of::<sys::RobustMutex>()
        ),
        format!(
            "placement: value u64 {:?}, array u32 x 3 {:?}, queue 1 B x 100 align 128 {:?}",
            place(Kind::Value, 8, 8, 1),
            place(Kind::Array, 4, 4, 3),
            place(Kind::Queue, 1, 128, 100)
        ),
    ]
}

/// Byte offset of the poison word inside the lock area.
const POISON_OFFSET: usize = 48;
const _: () = assert!(std::mem::size_of::<sys::RobustMutex>() <= POISON_OFFSET);
const _: () = assert!(POISON_OFFSET + 4 <= LOCK_AREA);

/// The payload of a locked segment, borrowed while its lock is held (`P` is the lock guard).
pub(crate) struct LockedSlice<'a, T, P> {
    ptr: *mut T,
    len: usize,
    proof: P,
    _seg: PhantomData<&'a Segment>,
}

impl<T, P> LockedSlice<'_, T, P> {
    /// The lock guard this borrow rests on.
    pub(crate) fn proof(&self) -> &P {
        &self.proof
    }
}

impl<T: Pod, P> Deref for LockedSlice<'_, T, P> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        // SAFETY: `ptr..ptr+len` lies in the mapping (checked by `locked_slice`), aligned for
        // `T`, and any bytes are a valid `T` (Pod). The segment's lock is held (`proof`), and
        // within mpshm every other access to a locked payload takes the same lock, so nothing
        // writes these bytes while the borrow lives.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

impl<T: Pod, P> DerefMut for LockedSlice<'_, T, P> {
    fn deref_mut(&mut self) -> &mut [T] {
        // SAFETY: as in `deref`; `&mut self` makes this borrow unique within the process, and
        // the held lock keeps cooperating processes out.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        if !self.held_here() {
            // SAFETY: `drop` runs once and nothing uses the mapping after it; no robust mutex in
            // it is on a robust list of this process (checked above), and every reference into
            // it borrowed from `self`, which is going away.
            unsafe { ManuallyDrop::drop(&mut self.map) };
        }
        if self.is_owner() {
            let id = self.created.map(|c| c.id);
            // Unlink only the object we created: after an external `unlink`, someone else may
            // have created a new object under the same name. Looked at without opening it, so
            // that a FIFO or device planted there cannot block or trigger anything.
            let same = sys::shm_stat(&self.name)
                .is_ok_and(|st| st.irregular.is_none() && Some(st.id) == id);
            if same {
                let _ = sys::shm_unlink(&self.name);
            }
        }
    }
}

fn corrupt(name: &str, reason: impl Into<String>) -> Error {
    Error::Corrupt {
        name: name.to_owned(),
        reason: reason.into(),
    }
}

fn read_header(file: &File) -> io::Result<(Option<Header>, u64)> {
    let st = sys::file_stat(file)?;
    let len = st.len;
    if st.irregular.is_some() || len < HEADER_SIZE as u64 {
        return Ok((None, len));
    }
    let mut buf = [0u8; std::mem::size_of::<Header>()];
    let n = sys::read_at(file, &mut buf, 0)?;
    let header = (n == buf.len()).then(|| bytemuck::pod_read_unaligned::<Header>(&buf));
    Ok((header, len))
}

/// Polls the header until the creator publishes it, or `timeout` passes. If the object is
/// unlinked meanwhile (its creator failed or dropped it), follows the name to its new object.
fn wait_ready(name: &str, file: &mut File, timeout: Duration) -> Result<(Header, u64), Error> {
    let start = Instant::now();
    let mut backoff = crate::wait::Backoff::new();
    loop {
        let (header, len) = read_header(file)?;
        match header {
            Some(h) if h.ready == READY => return Ok((h, len)),
            Some(h) if h.ready != 0 => {
                return Err(corrupt(name, format!("ready word is {:#x}", h.ready)));
            }
            _ => {}
        }
        if sys::is_unlinked(file)? {
            *file = open_file(name)?;
            continue;
        }
        if start.elapsed() >= timeout {
            return Err(match header {
                None => corrupt(
                    name,
                    format!("it is {len} bytes, smaller than the {HEADER_SIZE}-byte header"),
                ),
                Some(h) if h.magic != MAGIC => {
                    corrupt(name, "it is not an mpshm segment (bad magic)")
                }
                Some(_) => Error::NotReady {
                    name: name.to_owned(),
                    waited: timeout,
                },
            });
        }
        backoff.pause(LONGEST_PAUSE.min(timeout.saturating_sub(start.elapsed())));
    }
}

fn tag_of(h: &Header) -> Option<&str> {
    let len = h.tag_len as usize;
    (len <= TAG_LEN)
        .then(|| std::str::from_utf8(&h.tag[..len]).ok())
        .flatten()
}

fn describe(tag: &str, size: u64, align: u64, count: Option<u64>, sizes: bool) -> String {
    let mut s = tag.to_owned();
    if sizes {
        s += &format!(" ({size} B, align {align})");
    }
    match count {
        Some(n) => s + &format!(" × {n}"),
        None => s,
    }
}

/// Checks every header field against the file and against what the caller asked for.
fn validate(name: &str, h: &Header, len: u64, spec: &Spec) -> Result<(), Error> {
    if h.magic != MAGIC {
        return Err(corrupt(name, "it is not an mpshm segment (bad magic)"));
    }
    if h.version != VERSION {
        return Err(Error::IncompatibleVersion {
            name: name.to_owned(),
            found: h.version,
            supported: VERSION,
        });
    }
    if h.header_size as usize != HEADER_SIZE {
        return Err(corrupt(
            name,
            format!("header size {} (expected {HEADER_SIZE})", h.header_size),
        ));
    }
    let kind =
        Kind::from_code(h.kind).ok_or_else(|| corrupt(name, format!("unknown kind {}", h.kind)))?;
    let tag = tag_of(h).ok_or_else(|| corrupt(name, "the type tag is not valid"))?;
    match place(kind, h.elem_size, h.elem_align, h.count) {
        Some((lock, payload, total))
            if lock == h.lock_offset && payload == h.payload_offset && total == h.total_size => {}
        _ => {
            return Err(corrupt(
                name,
                format!(
                    "inconsistent layout: {} B elements, align {}, count {}, offsets {}/{}, total {}",
                    h.elem_size,
                    h.elem_align,
                    h.count,
                    h.lock_offset,
                    h.payload_offset,
                    h.total_size
                ),
            ));
        }
    }
    if h.total_size != len {
        return Err(corrupt(
            name,
            format!("header says {} bytes but the file has {len}", h.total_size),
        ));
    }
    if kind != spec.kind {
        return Err(Error::KindMismatch {
            name: name.to_owned(),
            expected: spec.kind,
            found: kind,
        });
    }
    let count_ok = spec.count.is_none_or(|c| c as u64 == h.count);
    let sizes_ok = spec.elem_size as u64 == h.elem_size && spec.elem_align as u64 == h.elem_align;
    if !(count_ok && sizes_ok && tag == spec.tag) {
        let show_sizes = tag == spec.tag && !sizes_ok;
        let (want, have) = (spec.count.map(|c| c as u64), Some(h.count));
        return Err(Error::LayoutMismatch {
            name: name.to_owned(),
            expected: describe(
                &spec.tag,
                spec.elem_size as u64,
                spec.elem_align as u64,
                want.or(have),
                show_sizes,
            ),
            found: describe(tag, h.elem_size, h.elem_align, have, show_sizes),
        });
    }
    Ok(())
}

/// What [`segments`] reports about one mpshm segment.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SegmentInfo {
    /// The name, without the leading `/`.
    pub name: String,
    /// What it holds; `None` if the header names a kind this build does not know.
    pub kind: Option<Kind>,
    /// The element type tag.
    pub type_tag: String,
    /// Size of one element in bytes.
    pub elem_size: u64,
    /// Number of elements.
    pub count: u64,
    /// Size of the whole segment in bytes.
    pub size: u64,
    /// The pid of the process that created it.
    pub creator_pid: u32,
    /// Whether that process is still running. A segment whose creator is gone and whose name is
    /// still present was persisted on purpose or is an orphan (its creator was killed).
    pub creator_alive: bool,
    /// Whether the creator finished initialising it.
    pub ready: bool,
    /// Whether the file is as long as its header says. A segment that another process truncated
    /// is not: `open` refuses it, and a process that still maps it dies with `SIGBUS` when it
    /// touches a page past the new end (see the threat model in `DESIGN.md`). Remove it.
    pub intact: bool,
}

/// Lists every mpshm segment in `/dev/shm` that this user can read. Other files are skipped.
///
/// ```
/// for seg in mpshm::segments()? {
///     println!("{} {:?} pid {} alive {}", seg.name, seg.kind, seg.creator_pid, seg.creator_alive);
/// }
/// # Ok::<(), std::io::Error>(())
/// ```
///
/// # Errors
///
/// If the shared-memory directory cannot be read.
pub fn segments() -> io::Result<Vec<SegmentInfo>> {
    let mut out = Vec::new();
    for name in sys::shm_names()? {
        if validate_name(&name).is_err() {
            continue;
        }
        let Ok(file) = sys::shm_open(&name, false) else {
            continue;
        };
        let Ok((Some(h), size)) = read_header(&file) else {
            continue;
        };
        if h.magic != MAGIC {
            continue;
        }
        out.push(SegmentInfo {
            kind: Kind::from_code(h.kind),
            type_tag: tag_of(&h).unwrap_or("").to_owned(),
            elem_size: h.elem_size,
            count: h.count,
            size,
            creator_pid: h.creator_pid,
            creator_alive: sys::process_alive(h.creator_pid, h.creator_start),
            ready: h.ready == READY,
            intact: h.total_size == size,
            name,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Removes the name `name` (for example an orphan found by [`segments`]). Processes that have it
/// open keep their mappings.
///
/// # Errors
///
/// [`Error::InvalidName`], [`Error::NotFound`], or [`Error::Io`].
pub fn unlink(name: &str) -> Result<(), Error> {
    let bare = validate_name(name)?;
    sys::shm_unlink(bare).map_err(|e| open_error(bare, e))
}
