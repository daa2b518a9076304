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

use crate::error::{Difference, Error};
pub use crate::kind::Kind;
use crate::shared_type::SharedType;
use crate::sys;

/// The first eight bytes of every mpshm segment.
pub(crate) const MAGIC: u64 = u64::from_le_bytes(*b"mpshm\0\x01\xfe");
/// The layout version this build writes and accepts.
pub(crate) const VERSION: u32 = 10;
/// The layout version of the segments this build writes and opens: a segment whose header
/// names another one is refused by `open` ([`Error::IncompatibleVersion`]) and shown as such by
/// [`segments`] and [`inspect`](crate::inspect).
pub const LAYOUT_VERSION: u32 = VERSION;
/// The oldest layout version whose header is laid out as [`Header`] is. Every field up to the
/// tag has stayed where it is since version 1; version 6 appended the type identity after the
/// tag, in bytes an older creator left zero (the pinned layout in `layout.rs` guards both). A
/// header of a version from here to [`VERSION`] is read field by field; of any other, only its
/// magic and version, which stay where they are in every version.
const HEADER_SINCE: u32 = 1;
/// Bytes reserved for the header; the lock area or payload starts here.
pub(crate) const HEADER_SIZE: usize = 256;
/// Bytes reserved for an embedded lock: the mutex and the poison word. The payload starts on
/// the next cache line (see [`place`]).
pub(crate) const LOCK_AREA: usize = 56;
/// The value of `ready` once the creator has finished; 0 while it initialises.
const READY: u32 = 0x5EAD_1E55;
/// The longest type tag stored; longer tags are cut (the same way on both sides).
pub(crate) const TAG_LEN: usize = 64;
/// The longest field description stored (see [`Identity`]); longer ones are cut, and the
/// layout hash still covers every field.
pub(crate) const FIELDS_LEN: usize = 56;
/// The largest element alignment accepted.
const MAX_ALIGN: u64 = 4096;
/// The largest segment accepted (1 TiB): anything bigger in a header is garbage.
const MAX_SEGMENT: u64 = 1 << 40;
/// How long `open` waits for a creator to publish `ready`, unless told otherwise.
pub(crate) const DEFAULT_OPEN_TIMEOUT: Duration = Duration::from_secs(1);
/// The longest sleep between looks at a header whose creator has not published it yet.
const LONGEST_PAUSE: Duration = Duration::from_millis(2);

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
    /// The identity of the type the segment holds (see [`Identity`]): its size, alignment,
    /// layout hash and field description; zero for handles that hold no user type.
    type_size: u32,
    type_align: u32,
    layout: u64,
    fields: [u8; FIELDS_LEN],
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

/// What a constructor asks of a segment: its kind, its storage (elements of a size and
/// alignment, how many, and the kind's parameters) and the identity of the type it holds.
///
/// Public in a private module: the hidden methods of [`Shm`](crate::Shm) name it, and no one
/// outside the crate can.
#[derive(Debug, Clone)]
pub struct Spec {
    pub(crate) kind: Kind,
    pub(crate) elem_size: usize,
    pub(crate) elem_align: usize,
    /// Element count, for a segment being created; an opener takes the creator's (each handle
    /// checks it against what it asked for, if anything).
    pub(crate) count: usize,
    pub(crate) ty: Identity,
    /// Kind-specific parameters, stored verbatim (e.g. a queue's capacity).
    pub(crate) params: [u64; 4],
}

impl Spec {
    /// The spec for `count` elements of the type `ty` describes (its size and alignment are
    /// the elements').
    pub(crate) fn elements(kind: Kind, ty: Identity, count: usize) -> Spec {
        Spec {
            kind,
            elem_size: ty.size as usize,
            elem_align: ty.align.max(1) as usize,
            count,
            ty,
            params: [0; 4],
        }
    }

    /// The spec for a payload of `bytes` bytes on a fresh cache line pair, holding messages or
    /// entries of the type `ty` describes.
    pub(crate) fn bytes(kind: Kind, ty: Identity, bytes: usize, params: [u64; 4]) -> Spec {
        Spec {
            kind,
            elem_size: 1,
            elem_align: 128,
            count: bytes,
            ty,
            params,
        }
    }
}

/// The identity of the type a segment holds, written by its creator and checked by every
/// opener: a name (the type tag), the type's size and alignment, a hash of its field layout,
/// and a short description of the fields for error messages. Handles that hold no user type
/// (locks, pipes, the synchronisation family) have a fixed tag and no layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub(crate) tag: String,
    pub(crate) size: u32,
    pub(crate) align: u32,
    pub(crate) layout: u64,
    pub(crate) fields: String,
    /// Whether an opener compares the tag (not when it opens an object another segment names,
    /// whose tag it cannot know: a condition's lock).
    pub(crate) check_tag: bool,
}

impl Identity {
    /// A handle that holds no user type: the tag `default`, or the options' type tag.
    pub(crate) fn untyped(default: &str, opts: &Options) -> Identity {
        Identity::named(opts.type_tag.as_deref().unwrap_or(default), 0, 0, 0, "")
    }

    /// The identity of `T` (its [`SharedType`] name unless the options name it).
    pub(crate) fn of<T: SharedType>(opts: &Options) -> Identity {
        let tag = match opts.type_tag.as_deref() {
            Some(tag) => std::borrow::Cow::Borrowed(tag),
            None => T::tag(),
        };
        Identity::named(
            &tag,
            std::mem::size_of::<T>() as u32,
            std::mem::align_of::<T>() as u32,
            T::LAYOUT,
            &T::fields(),
        )
    }

    pub(crate) fn named(tag: &str, size: u32, align: u32, layout: u64, fields: &str) -> Identity {
        Identity {
            tag: cut(tag, TAG_LEN).to_owned(),
            size,
            align,
            layout,
            fields: cut(fields, FIELDS_LEN).to_owned(),
            check_tag: true,
        }
    }

    /// Accepts whatever tag the segment has (the kind and the rest are still checked).
    pub(crate) fn any_tag(mut self) -> Identity {
        self.check_tag = false;
        self
    }

    /// How an error message names it, for what `differs`.
    fn describe(&self, differs: Difference) -> String {
        match differs {
            Difference::Fields if self.fields.is_empty() => {
                format!(
                    "`{}` with a field layout hashed {:#018x}",
                    self.tag, self.layout
                )
            }
            Difference::Fields => format!("`{}` with fields {}", self.tag, self.fields),
            _ if self.size == 0 => format!("`{}`", self.tag),
            _ => format!("`{}` ({} B, align {})", self.tag, self.size, self.align),
        }
    }

    /// The identity the header `h` records.
    fn of_header(h: &Header) -> Option<Identity> {
        let tag_len = h.tag_len as usize;
        Some(Identity {
            tag: text(h.tag.get(..tag_len)?)?.to_owned(),
            size: h.type_size,
            align: h.type_align,
            layout: h.layout,
            fields: text(&h.fields)?.trim_end_matches('\0').to_owned(),
            check_tag: true,
        })
    }
}

fn text(bytes: &[u8]) -> Option<&str> {
    std::str::from_utf8(bytes).ok()
}

/// `s` cut to at most `max` bytes, at a character boundary (the same way in every process).
fn cut(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
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
    // Every payload starts on a cache line. A locked payload beside its lock would share the
    // lock word's line, which a waiting process's compare-and-swap and futex calls take from
    // the holder in the middle of its critical section: two processes incrementing a `Value`
    // ran as much slower as the C floor did with its counter moved onto the mutex's line.
    let align = elem_align.max(64);
    let payload = start.checked_add(align - 1)? & !(align - 1);
    let total = payload.checked_add(elem_size.checked_mul(count)?)?;
    (total <= MAX_SEGMENT).then_some((lock, payload, total))
}

/// Options shared by every constructor that creates or opens a segment: the `_with` forms of
/// [`Shm`](crate::Shm)'s constructors take them. Every setting reaches every handle that it
/// can mean something for; each says which.
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
    pub(crate) max_attached: Option<usize>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            mode: 0o600,
            open_timeout: DEFAULT_OPEN_TIMEOUT,
            type_tag: None,
            max_attached: None,
        }
    }
}

impl Options {
    /// The defaults: mode `0o600`, a 1 s open timeout, each handle's own type tag (a
    /// [`SharedType`]'s name, or the handle's kind), and each kind's own number of attachment
    /// records.
    pub fn new() -> Options {
        Options::default()
    }

    /// How many attachment records a segment this handle creates keeps, 1 to 1024 (opening
    /// takes the creator's number; this setting is ignored there):
    ///
    /// - a queue ([`Queue`](crate::Queue) and its kin): producers, and as many consumers
    ///   (default 32). A handle is recorded as a producer at its first put and as a consumer at
    ///   its first get, and a `get` on an empty queue returns `Disconnected` once producers
    ///   have come and every one has gone (and a `put` on a full one once every consumer has).
    ///   Handles beyond this many run untracked: they are counted, but not by process, so one
    ///   that dies without detaching is never found gone, and from then on the queue never says
    ///   `Disconnected` on that side (it waits, as if that peer lived).
    /// - a [`Semaphore`](crate::Semaphore), [`BoundedSemaphore`](crate::BoundedSemaphore),
    ///   [`Event`](crate::Event), [`Condition`](crate::Condition) or
    ///   [`Barrier`](crate::Barrier): handles open at once, across all processes (default
    ///   256); `open` fails with [`Error::InUse`] beyond.
    ///
    /// Pipes and SPSC queues have one record per end, values, arrays, locks and containers none:
    /// they ignore it.
    ///
    /// ```
    /// let mut opts = mpshm::Options::new();
    /// opts.max_attached(4);
    /// ```
    pub fn max_attached(&mut self, n: usize) -> &mut Self {
        self.max_attached = Some(n);
        self
    }

    /// Permission bits for a segment this handle creates (the process umask still applies):
    /// `0o777` at most. Any other bit (setuid, setgid, sticky) makes `create` fail with
    /// [`Error::InvalidMode`]. Every handle.
    pub fn mode(&mut self, mode: u32) -> &mut Self {
        self.mode = mode;
        self
    }

    /// How long `open` waits for a segment's creator to finish initialising it. Every handle
    /// (a [`Condition`](crate::Condition) waits as long for the user's lock it names).
    pub fn open_timeout(&mut self, timeout: Duration) -> &mut Self {
        self.open_timeout = timeout;
        self
    }

    /// The name of what the segment holds, written at creation and checked on open, in place
    /// of the handle's own: a [`SharedType`]'s [`NAME`](SharedType::NAME) for plain data,
    /// [`std::any::type_name`] for serde messages and items (neither stable across builds nor
    /// unique, so separately built binaries should set the same tag), `bytes` for byte
    /// messages, the kind for a lock, pipe or the synchronisation family. Every handle: both
    /// sides must agree. The size, alignment and field layout of a plain-data type are still
    /// checked. At most 64 bytes count.
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
    ) && let Some(found) = sys::shm_stat(name).ok().and_then(|st| st.irregular)
    {
        return not_regular(name, found);
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
pub struct Segment {
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
        // A system call rather than the cached `sys::thread_ids`: this runs once per drop.
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
    /// runs `init` to write the initial payload, then publishes it. If `init` fails, the
    /// segment is removed again.
    pub(crate) fn create(
        name: &str,
        spec: &Spec,
        opts: &Options,
        init: impl FnOnce(&Segment) -> Result<(), Error>,
    ) -> Result<Segment, Error> {
        let bare = validate_name(name)?;
        if opts.mode & !0o777 != 0 {
            return Err(Error::InvalidMode { mode: opts.mode });
        }
        let count = spec.count;
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
        // The error, and whether the name is already removed.
        let made = (|| -> Result<Segment, (Error, bool)> {
            let early = |e: io::Error| (Error::Io(e), false);
            sys::reserve(&file, total).map_err(|e| match e.raw_os_error() {
                Some(libc::ENOSPC) => (
                    Error::NoSpace {
                        name: bare.to_owned(),
                        bytes: total,
                    },
                    false,
                ),
                _ => early(e),
            })?;
            let id = sys::file_stat(&file).map_err(early)?.id;
            let map = MmapOptions::new()
                .len(total as usize)
                .map_raw(&file)
                .map_err(early)?;
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
                type_size: spec.ty.size,
                type_align: spec.ty.align,
                layout: spec.ty.layout,
                fields: [0; FIELDS_LEN],
            };
            let tag = cut(&spec.ty.tag, TAG_LEN);
            header.tag[..tag.len()].copy_from_slice(tag.as_bytes());
            header.tag_len = tag.len() as u32;
            let fields = cut(&spec.ty.fields, FIELDS_LEN);
            header.fields[..fields.len()].copy_from_slice(fields.as_bytes());
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
                unsafe { mutex.init(spec.kind.recursive_lock()) }.map_err(early)?;
            }
            // A failure from here on drops `seg`, which unlinks what it created (checking that
            // the name still names it).
            init(&seg).map_err(|e| (e, true))?;
            // Release: pairs with the Acquire load in `Segment::open`; everything written above
            // happens-before an opener's first use of the segment.
            seg.shared::<AtomicU32>(READY_OFFSET)
                .store(READY, Ordering::Release);
            Ok(seg)
        })();
        made.map_err(|(e, unlinked)| {
            if !unlinked {
                let _ = sys::shm_unlink(bare);
            }
            e
        })
    }

    /// Opens `name`, waiting up to `opts.open_timeout` for its creator, and checks it against
    /// `spec`: its kind and the identity of the type it holds (not its count or parameters:
    /// the handle checks those, knowing what they mean).
    pub(crate) fn open(name: &str, spec: &Spec, opts: &Options) -> Result<Segment, Error> {
        let bare = validate_name(name)?;
        let mut file = open_file(bare)?;
        let (header, len) = wait_ready(bare, &mut file, opts.open_timeout)?;
        validate(bare, &header, len, spec)?;
        let map = MmapOptions::new().len(len as usize).map_raw(&file)?;
        let seg = Segment::opened(bare, header, map);
        // Acquire: pairs with the Release store that ends `Segment::create`.
        if seg
            .shared::<AtomicU32>(READY_OFFSET)
            .load(Ordering::Acquire)
            != READY
        {
            return Err(corrupt(bare, "the ready word changed while opening"));
        }
        if let Some(mutex) = seg.mutex()
            && !mutex.kind_ok(seg.kind().recursive_lock())
        {
            return Err(corrupt(
                bare,
                "the lock's type word is not one mpshm writes",
            ));
        }
        Ok(seg)
    }

    /// Opens `name` read-only, whatever it holds, for [`inspect`](crate::inspect): the header
    /// is checked as `open` checks it (magic, version, a known kind, a layout that fits the
    /// file), but not against any expected kind or type, and without waiting for a creator that
    /// has not finished. The mapping is read-only: nothing done through this handle can change
    /// the segment (a write would fault rather than corrupt it).
    ///
    /// # Errors
    ///
    /// As [`open`](Self::open), and [`Error::NotReady`] at once for a segment whose creator has
    /// not published it.
    pub(crate) fn open_read_only(name: &str) -> Result<Segment, Error> {
        let bare = validate_name(name)?;
        let file = sys::shm_open(bare, false).map_err(|e| open_error(bare, e))?;
        if let Some(found) = sys::file_stat(&file)?.irregular {
            return Err(not_regular(bare, found));
        }
        let (header, len) = match read_header(&file)? {
            (Some(h), len) => (h, len),
            (None, len) => {
                return Err(corrupt(
                    bare,
                    format!("it is {len} bytes, smaller than the {HEADER_SIZE}-byte header"),
                ));
            }
        };
        if header.magic == MAGIC && header.version == VERSION && header.ready != READY {
            return Err(match header.ready {
                0 => Error::NotReady {
                    name: bare.to_owned(),
                    waited: Duration::ZERO,
                },
                word => corrupt(bare, format!("ready word is {word:#x}")),
            });
        }
        // The header checked against itself: every check of `validate` but the caller's
        // expectations.
        let spec = Spec {
            kind: Kind::from_code(header.kind).unwrap_or(Kind::Value),
            elem_size: header.elem_size as usize,
            elem_align: header.elem_align as usize,
            count: header.count as usize,
            ty: Identity::named("", 0, 0, 0, "").any_tag(),
            params: header.params,
        };
        validate(bare, &header, len, &spec)?;
        let map = MmapOptions::new()
            .len(len as usize)
            .map_raw_read_only(&file)?;
        Ok(Segment::opened(bare, header, map))
    }

    /// The handle of an opener (it never unlinks) over `map`, with the validated `header`.
    fn opened(name: &str, header: Header, map: MmapRaw) -> Segment {
        Segment {
            map: ManuallyDrop::new(map),
            robust: Mutex::new(Vec::new()),
            name: name.to_owned(),
            header,
            created: None,
            persist: AtomicBool::new(false),
        }
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
        if base.addr().is_multiple_of(8) {
            // The usual case (payloads start 8-aligned): whole words, then the bytes left. For
            // a small `T` of known size this is a few plain moves, no loop.
            let words = src.chunks_exact(8);
            let tail = words.remainder();
            let mut p = base;
            for word in words {
                let word = u64::from_ne_bytes(word.try_into().expect("8 bytes"));
                // SAFETY: `p..p+8` is inside the mapping (checked by `range`) and 8-aligned
                // (`base` is, and `p` moves in steps of 8); atomics tolerate concurrent access
                // by other threads and processes.
                unsafe { AtomicU64::from_ptr(p.cast()) }.store(word, Ordering::Relaxed);
                p = p.wrapping_add(8);
            }
            for &byte in tail {
                // SAFETY: `p` is inside the mapping (checked by `range`); a byte is always
                // aligned.
                unsafe { AtomicU8::from_ptr(p) }.store(byte, Ordering::Relaxed);
                p = p.wrapping_add(1);
            }
        } else {
            self.copy_in_unaligned(offset, src);
        }
    }

    /// [`copy_in`](Self::copy_in) at an offset that is not 8-aligned: bytes up to the first
    /// aligned address, words from there. Out of line, so that the aligned path stays a few
    /// moves.
    #[inline(never)]
    fn copy_in_unaligned(&self, offset: usize, src: &[u8]) {
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
        if base.addr().is_multiple_of(8) {
            // As in `copy_in`.
            let mut words = dst.chunks_exact_mut(8);
            let mut p = base;
            for word in words.by_ref() {
                // SAFETY: as in `copy_in`.
                let v = unsafe { AtomicU64::from_ptr(p.cast()) }.load(Ordering::Relaxed);
                word.copy_from_slice(&v.to_ne_bytes());
                p = p.wrapping_add(8);
            }
            for byte in words.into_remainder() {
                // SAFETY: as in `copy_in`.
                *byte = unsafe { AtomicU8::from_ptr(p) }.load(Ordering::Relaxed);
                p = p.wrapping_add(1);
            }
        } else {
            self.copy_out_unaligned(offset, dst);
        }
    }

    /// [`copy_out`](Self::copy_out) at an offset that is not 8-aligned, as
    /// [`copy_in_unaligned`](Self::copy_in_unaligned).
    #[inline(never)]
    fn copy_out_unaligned(&self, offset: usize, dst: &mut [u8]) {
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
            tag,
            type_size,
            type_align,
            layout,
            fields
        }),
        format!(
            "constants: magic {MAGIC:#x}, ready {READY:#x}, header {HEADER_SIZE} B, lock area \
             {LOCK_AREA} B (mutex {} B, poison word at {POISON_OFFSET}), tag {TAG_LEN} B, fields \
             {FIELDS_LEN} B; kinds{kinds}",
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
            // The creator gave up and removed the name; another may be creating it anew, so
            // the name is followed (and, while it is missing, waited for) until the deadline.
            match open_file(name) {
                Ok(f) => {
                    *file = f;
                    continue;
                }
                Err(Error::NotFound { .. }) if start.elapsed() < timeout => {}
                Err(e) => return Err(e),
            }
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
    let found = Identity::of_header(h)
        .ok_or_else(|| corrupt(name, "the type tag or field description is not valid"))?;
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
    let want = &spec.ty;
    let differs = if !want.check_tag {
        None
    } else if want.tag != found.tag {
        Some(Difference::Name)
    } else if (want.size, want.align) != (found.size, found.align) {
        Some(Difference::Size)
    } else if want.layout != found.layout {
        Some(Difference::Fields)
    } else {
        None
    };
    match differs {
        None => Ok(()),
        Some(differs) => Err(Error::TypeMismatch {
            name: name.to_owned(),
            expected: want.describe(differs),
            found: found.describe(differs),
            differs,
        }),
    }
}

/// What [`segments`] reports about one mpshm segment.
///
/// A segment of a layout version newer than this build's ([`version`](Self::version) above
/// [`LAYOUT_VERSION`]) may lay its header out differently: only `name`, `size`, `version` and
/// `created` are filled in, and the rest is left empty (`kind` `None`, `creator_pid` 0,
/// `creator_alive` false), never guessed. Treat such a segment as in use.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SegmentInfo {
    /// The name, without the leading `/`.
    pub name: String,
    /// The layout version in its header: [`LAYOUT_VERSION`] for a segment this build can open.
    pub version: u32,
    /// When the file was created (its status-change time, which mpshm sets only when it creates
    /// and sizes a segment); `None` where the file system does not say.
    pub created: Option<std::time::SystemTime>,
    /// What it holds; `None` if the header names a kind this build does not know.
    pub kind: Option<Kind>,
    /// The tag naming what it holds (see [`Options::type_tag`]).
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
/// # Ok::<(), mpshm::Error>(())
/// ```
///
/// # Errors
///
/// [`Error::Io`] if the shared-memory directory cannot be read.
pub fn segments() -> Result<Vec<SegmentInfo>, Error> {
    let mut out: Vec<SegmentInfo> = sys::shm_names()?
        .iter()
        .filter_map(|name| segment_info(name))
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// What [`segments`] says of `name`: `None` for a name mpshm would not make, a file this user
/// cannot read, or one without an mpshm header.
pub(crate) fn segment_info(name: &str) -> Option<SegmentInfo> {
    validate_name(name).ok()?;
    let file = sys::shm_open(name, false).ok()?;
    let (h, size) = read_header(&file).ok()?;
    let h = h.filter(|h| h.magic == MAGIC)?;
    let created = sys::file_stat(&file).ok().and_then(|st| st.changed);
    let mut info = SegmentInfo {
        name: name.to_owned(),
        version: h.version,
        created,
        kind: None,
        type_tag: String::new(),
        elem_size: 0,
        count: 0,
        size,
        creator_pid: 0,
        creator_alive: false,
        ready: false,
        intact: false,
    };
    if (HEADER_SINCE..=VERSION).contains(&h.version) {
        info.kind = Kind::from_code(h.kind);
        info.type_tag = Identity::of_header(&h).map(|id| id.tag).unwrap_or_default();
        info.elem_size = h.elem_size;
        info.count = h.count;
        info.creator_pid = h.creator_pid;
        info.creator_alive = sys::process_alive(h.creator_pid, h.creator_start);
        info.ready = h.ready == READY;
        info.intact = h.total_size == size;
    }
    Some(info)
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
